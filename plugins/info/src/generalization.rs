//! `generalization_bound` (`docs/measures.md` M10): how the size of a model's logits bounds
//! its loss and the gap between its loss on two samples.
//!
//! Per scored position t (logits row t − 1, observed token y = x_t): `‖z‖₁`, `‖z‖∞`,
//! `range(z) = max z − min z`, and the loss `ℓ = lse(z) − z_y`, which lies in
//! `[0, ln|V| + range(z)]`. For a fixed model whose per-token loss lies in [0, M], the
//! hold-out (Hoeffding) bound says that the mean loss over n i.i.d. tokens is within
//! `M √(ln(2/δ)/(2n))` of its expectation with probability 1 − δ; here
//! `M = ln|V| + max range(z)` over the text. The gradient of ℓ in z (softmax − one-hot) has
//! L1 norm ≤ 2, so `|ℓ(z) − ℓ(z')| ≤ 2‖z − z'‖∞`: given the logits of a compressed copy of
//! the model (input tensor `reference`), the metric reports that bound and the actual loss
//! change. The paper ties its bound to the logits' absolute values; its exact form was not
//! visible, so this is a reconstruction from these standard ingredients.

use crate::common::require_causal;
use serde_json::json;
use tokit_sdk::{bail, Error, InfoUnit, Metric, MetricInput, MetricOutput, Result};

/// Logit statistics and loss at one position.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct PositionStats {
    pub l1: f64,
    pub linf: f64,
    pub range: f64,
    /// `lse(z) − z_y`, nats.
    pub loss: f64,
}

/// The statistics of logits `z` with observed token `y`.
pub fn position_stats(z: &[f32], y: usize) -> Result<PositionStats> {
    if y >= z.len() {
        bail!(
            "generalization_bound: token {y} is outside the {} logits",
            z.len()
        );
    }
    let (mut l1, mut linf, mut lo, mut hi) = (0.0f64, 0.0f64, f64::INFINITY, f64::NEG_INFINITY);
    for &x in z {
        let x = x as f64;
        if !x.is_finite() {
            bail!("generalization_bound: a logit is {x}; the bound needs finite logits");
        }
        l1 += x.abs();
        linf = linf.max(x.abs());
        lo = lo.min(x);
        hi = hi.max(x);
    }
    let lse = hi + z.iter().map(|&x| (x as f64 - hi).exp()).sum::<f64>().ln();
    Ok(PositionStats {
        l1,
        linf,
        range: hi - lo,
        loss: lse - z[y] as f64,
    })
}

/// Hoeffding's two-sided width `M √(ln(2/δ) / (2n))` for losses in [0, M].
pub fn hoeffding_width(m: f64, n: f64, delta: f64) -> f64 {
    m * ((2.0 / delta).ln() / (2.0 * n)).sqrt()
}

/// The `generalization_bound` metric.
pub struct GeneralizationBound;

tokit_sdk::params! {
    pub struct Params {
        /// sample size n of the hold-out bound (default: the number of scored tokens)
        n: Option<usize> = None,
        /// failure probability δ of the bound
        delta: f64 = 0.05,
        /// `nats` or `bits`
        unit: InfoUnit = InfoUnit::Nats,
    }
}

impl Metric for GeneralizationBound {
    const NAME: &'static str = "generalization_bound";
    const DESCRIPTION: &'static str = "generalization bound from the logits' size (M10, reconstruction): per position ‖z‖₁, ‖z‖∞, range(z) and the loss lse(z) − z_y ≤ ln|V| + range(z); their means; value = the Hoeffding hold-out width M √(ln(2/δ)/(2n)) with M = ln|V| + max range(z); with an input tensor `reference` (the logits [T, V] of a compressed copy) the Lipschitz bound 2‖z − z'‖∞ on the loss change and the actual change";
    const NEEDS_MODEL: bool = true;
    const RECONSTRUCTION: bool = true;
    type Params = Params;

    fn compute(input: &MetricInput, p: Params) -> Result<MetricOutput> {
        require_causal(input)?;
        if !(p.delta > 0.0 && p.delta < 1.0) {
            bail!(
                "generalization_bound: `delta` must be in (0, 1), got {}",
                p.delta
            );
        }
        let tokens = input.tokens_at_least(2)?;
        let model = input.model()?;
        let v = model.info()?.vocab_size;
        let t_len = tokens.len();
        let logits = model.logits(tokens)?.to_vec()?;
        if logits.len() != t_len * v {
            bail!(
                "generalization_bound: the model returned {} logits for [{t_len}, {v}]",
                logits.len()
            );
        }
        let reference = match input.tensors.iter().find(|(n, _)| n == "reference") {
            Some((_, t)) => {
                let r = t.to_vec()?;
                if r.len() != logits.len() {
                    bail!("generalization_bound: `reference` has {} values, the model's logits are [{t_len}, {v}]", r.len());
                }
                Some(r)
            }
            None => None,
        };
        let row = |z: &[f32], t: usize| z[(t - 1) * v..t * v].to_vec();
        let scored = t_len - 1;
        let n = p.n.unwrap_or(scored);
        if n == 0 {
            bail!("generalization_bound: `n` must be positive");
        }
        let s = p.unit.scale();
        let nan = f32::NAN;
        let (mut l1, mut linf, mut range, mut loss) = (
            vec![nan; t_len],
            vec![nan; t_len],
            vec![nan; t_len],
            vec![nan; t_len],
        );
        let (mut lip, mut dloss) = (vec![nan; t_len], vec![nan; t_len]);
        let mut sums = [0.0f64; 4];
        let (mut max_range, mut max_l1, mut max_linf) = (0.0f64, 0.0f64, 0.0f64);
        let (mut max_diff, mut mean_diff, mut mean_dloss, mut max_dloss) =
            (0.0f64, 0.0, 0.0, 0.0f64);
        let ln_v = (v as f64).ln();
        for t in 1..t_len {
            let z = row(&logits, t);
            let st = position_stats(&z, tokens[t] as usize)?;
            if st.loss > ln_v + st.range + 1e-9 * (1.0 + ln_v + st.range) {
                return Err(Error::msg(format!(
                    "generalization_bound: loss {} exceeds ln|V| + range = {} at position {t}",
                    st.loss,
                    ln_v + st.range
                )));
            }
            (l1[t], linf[t], range[t], loss[t]) = (
                st.l1 as f32,
                st.linf as f32,
                st.range as f32,
                (st.loss * s) as f32,
            );
            for (a, b) in sums.iter_mut().zip([st.l1, st.linf, st.range, st.loss]) {
                *a += b;
            }
            max_range = max_range.max(st.range);
            max_l1 = max_l1.max(st.l1);
            max_linf = max_linf.max(st.linf);
            if let Some(r) = &reference {
                let zr = row(r, t);
                let rs = position_stats(&zr, tokens[t] as usize)?;
                let d = z
                    .iter()
                    .zip(&zr)
                    .fold(0.0f64, |m, (&a, &b)| m.max((a as f64 - b as f64).abs()));
                let dl = (st.loss - rs.loss).abs();
                lip[t] = (2.0 * d * s) as f32;
                dloss[t] = (dl * s) as f32;
                max_diff = max_diff.max(d);
                mean_diff += d / scored as f64;
                mean_dloss += dl / scored as f64;
                max_dloss = max_dloss.max(dl);
            }
        }
        let mean = |i: usize| sums[i] / scored as f64;
        let m_max = ln_v + max_range;
        let m_mean = ln_v + mean(2);
        let width = hoeffding_width(m_max, n as f64, p.delta);
        let mut params = input.params.clone();
        params.insert("n".into(), json!(n));
        params.insert("delta".into(), json!(p.delta));
        params.insert("unit".into(), json!(p.unit.name()));
        let mut out = MetricOutput {
            value: Some(width * s),
            unit: p.unit.into(),
            estimator: "exact (logit statistics); Hoeffding hold-out bound".into(),
            params,
            ..Default::default()
        }
        .scalar("mean_l1", mean(0))
        .scalar("mean_linf", mean(1))
        .scalar("mean_range", mean(2))
        .scalar("max_l1", max_l1)
        .scalar("max_linf", max_linf)
        .scalar("max_range", max_range)
        .scalar("cross_entropy", mean(3) * s)
        .scalar("ln_vocab", ln_v * s)
        .scalar("loss_bound_m", m_max * s)
        .scalar("loss_bound_m_mean_range", m_mean * s)
        .scalar("hoeffding_width", width * s)
        .scalar(
            "hoeffding_width_mean_range",
            hoeffding_width(m_mean, n as f64, p.delta) * s,
        )
        .scalar("n", n as f64)
        .scalar("scored_tokens", scored as f64);
        out.notes.push("logit norms are in logit units; losses and bounds in the result's unit; hoeffding_width uses M = ln|V| + max range over the text (the loss of every scored token lies in [0, M]), the _mean_range variant the mean range (a heuristic, not a bound)".into());
        if reference.is_some() {
            out = out
                .scalar("reference_max_linf_diff", max_diff)
                .scalar("reference_mean_linf_diff", mean_diff)
                .scalar("lipschitz_bound_max", 2.0 * max_diff * s)
                .scalar("loss_change_max", max_dloss * s)
                .scalar("loss_change_mean", mean_dloss * s);
        }
        let k = [t_len];
        out = out
            .tensor("l1", &l1, &k)?
            .tensor("linf", &linf, &k)?
            .tensor("range", &range, &k)?
            .tensor("loss", &loss, &k)?;
        if reference.is_some() {
            out = out
                .tensor("lipschitz_bound", &lip, &k)?
                .tensor("loss_change", &dloss, &k)?;
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::streams::rng::Rng;

    /// M10: constant logits give ℓ = ln|V| exactly (10.8249 nats for |V| = 50257).
    #[test]
    fn constant_logits_give_ln_v() {
        let z = vec![3.25f32; 50257];
        let s = position_stats(&z, 17).unwrap();
        assert!((s.loss - 50257f64.ln()).abs() < 1e-9);
        assert!((s.loss - 10.8249).abs() < 5e-5);
        assert_eq!((s.range, s.linf), (0.0, 3.25));
        assert!((s.l1 - 3.25 * 50257.0).abs() < 1e-6);
    }

    #[test]
    fn hoeffding_width_test_vector() {
        // sqrt(ln 40 / 20000) = 0.0135810
        let w = hoeffding_width(1.0, 10000.0, 0.05);
        assert!((w - 0.0135810).abs() < 5e-8, "{w}");
        assert!((w - (40f64.ln() / 20000.0).sqrt()).abs() < 1e-15);
    }

    /// The loss never exceeds ln|V| + range(z), and the loss change is at most 2‖z − z'‖∞.
    #[test]
    fn random_logits_respect_both_bounds() {
        let mut rng = Rng::new(4);
        for _ in 0..500 {
            let v = 2 + rng.below(60);
            let scale = 0.1 + 10.0 * rng.uniform();
            let z: Vec<f32> = (0..v).map(|_| (scale * rng.normal()) as f32).collect();
            let zp: Vec<f32> = z.iter().map(|&x| x + (0.3 * rng.normal()) as f32).collect();
            let y = rng.below(v);
            let (a, b) = (
                position_stats(&z, y).unwrap(),
                position_stats(&zp, y).unwrap(),
            );
            assert!(a.loss >= 0.0 && a.loss <= (v as f64).ln() + a.range + 1e-9);
            let d = z
                .iter()
                .zip(&zp)
                .fold(0.0f64, |m, (&p, &q)| m.max((p as f64 - q as f64).abs()));
            assert!((a.loss - b.loss).abs() <= 2.0 * d + 1e-9);
        }
        assert!(position_stats(&[0.0, f32::NAN], 0).is_err());
        assert!(position_stats(&[0.0, 1.0], 2).is_err());
    }
}
