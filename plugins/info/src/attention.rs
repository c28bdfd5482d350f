//! `attention_energetics` (`docs/measures.md` M7) and token-mixing summaries (M13), per layer and
//! head, from pre-softmax attention scores.
//!
//! Each query row i of a head is a Boltzmann law over keys with energy `−s_ij`:
//! `α_ij = softmax_j(s_ij)`, free energy `F_i = −ln Σ_j e^{s_ij}`, mean energy
//! `U_i = −Σ_j α_ij s_ij`, entropy `H_i = U_i − F_i`, and `k90_i`, the fewest keys holding
//! 90 % of the mass. Masked keys (`−inf` scores) are not part of the law. Read as a
//! time-varying VAR (M13), `α` is the coefficient matrix: the lag profile is the mean
//! `α_ij` over pairs with `i − j = lag`, locality the mass within `window` tokens
//! (`|i − j| < window`), and the mass above the diagonal (`j > i`) is exactly 0 in a causal
//! model and measures non-causality in a bidirectional one (LLaDA).
//!
//! Scores come from the model's `blocks.{i}.attn.hook_scores` `[H, T, T]` (any
//! architecture that offers the hook), or from an explicit `scores` tensor whose last axis
//! is the keys (`[..., T_q, T_k]`; a 2-D tensor is one head of one layer).

use crate::common::UnitParams;
use crate::thermo;
use serde_json::json;
use tokit_sdk::{Error, ForwardRequest, Metric, MetricInput, MetricOutput, Result, Variant};

pub struct AttentionEnergetics;

tokit_sdk::params! {
    pub struct Params {
        #[flatten]
        common: UnitParams,
        /// locality: share of attention mass on keys with |i − j| < window
        window: usize = 4,
    }
}

impl Metric for AttentionEnergetics {
    const NAME: &'static str = "attention_energetics";
    const DESCRIPTION: &'static str = "attention as a Boltzmann law per layer and head (M7): free energy, mean energy, entropy, k90; token-mixing summaries (M13): lag profile, locality within `window`, mass above the diagonal; from a model's blocks.*.attn.hook_scores or a `scores` tensor [.., T_q, T_k]; value = mean attention entropy";
    type Params = Params;

    fn compute(input: &MetricInput, p: Params) -> Result<MetricOutput> {
        p.common.refuse_temperature(Self::NAME)?;
        let u = p.common.unit;
        energetics(input, p.window, u.scale(), u.name())
    }
}

/// Summaries of one query row.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Row {
    pub free_energy: f64,
    pub mean_energy: f64,
    pub entropy: f64,
    pub k90: usize,
}

/// Energetics of one row of scores (nats). Errors: no finite score.
pub fn row(scores: &[f32]) -> std::result::Result<Row, thermo::ThermoError> {
    let b = thermo::boltzmann(scores, 1.0)?;
    // α sorted descending: keys needed for 90 % of the mass (a hair of slack for rounding).
    let mut alpha: Vec<f64> = scores
        .iter()
        .filter(|s| s.is_finite())
        .map(|&s| (s as f64 - b.log_z).exp())
        .collect();
    alpha.sort_by(|a, b| b.total_cmp(a));
    let mut mass = 0.0;
    let mut k90 = alpha.len();
    for (k, a) in alpha.iter().enumerate() {
        mass += a;
        if mass >= 0.9 - 1e-12 {
            k90 = k + 1;
            break;
        }
    }
    // Energies are −scores: F = −ln Z, U = E_α[−s].
    Ok(Row {
        free_energy: b.free_energy,
        mean_energy: b.internal_energy,
        entropy: b.entropy,
        k90,
    })
}

/// Per-head summaries of a `[T_q, T_k]` block of scores, plus its lag sums.
struct Head {
    f: f64,
    u: f64,
    h: f64,
    k90: f64,
    local: f64,
    above: f64,
}

fn head(
    scores: &[f32],
    tq: usize,
    tk: usize,
    window: usize,
    lag: &mut [(f64, usize)],
) -> Result<Head> {
    let fail = |e: thermo::ThermoError| Error::msg(format!("attention_energetics: {e}"));
    let mut acc = Head {
        f: 0.0,
        u: 0.0,
        h: 0.0,
        k90: 0.0,
        local: 0.0,
        above: 0.0,
    };
    // Query i sits at key position i + (tk − tq) (queries are the last tq positions).
    let off = tk - tq;
    for i in 0..tq {
        let s = &scores[i * tk..(i + 1) * tk];
        let r = row(s).map_err(fail)?;
        acc.f += r.free_energy;
        acc.u += r.mean_energy;
        acc.h += r.entropy;
        acc.k90 += r.k90 as f64;
        let log_z = -r.free_energy;
        let q = i + off;
        for (j, &x) in s.iter().enumerate() {
            if !x.is_finite() {
                continue;
            }
            let a = (x as f64 - log_z).exp();
            if j > q {
                acc.above += a;
            } else {
                lag[q - j].0 += a;
            }
            if q.abs_diff(j) < window {
                acc.local += a;
            }
        }
        for slot in lag.iter_mut().take(q + 1) {
            slot.1 += 1;
        }
    }
    let n = tq as f64;
    Ok(Head {
        f: acc.f / n,
        u: acc.u / n,
        h: acc.h / n,
        k90: acc.k90 / n,
        local: acc.local / n,
        above: acc.above / n,
    })
}

fn energetics(input: &MetricInput, window: usize, scale: f64, unit: &str) -> Result<MetricOutput> {
    let window = window.max(1);
    // One entry per layer: ([H, T_q, T_k] scores, H, T_q, T_k).
    let mut blocks: Vec<(Vec<f32>, usize, usize, usize)> = Vec::new();
    let source: String = if input.model.is_some() {
        let tokens = input.tokens_at_least(1)?;
        let model = input.model()?;
        let info = model.info()?;
        let hook = |l: usize| format!("blocks.{l}.attn.hook_scores");
        if info.n_layers == 0 || !(0..info.n_layers).all(|l| info.hooks.contains(&hook(l))) {
            return Err(Error::msg(format!(
                "attention_energetics: the `{}` model has no attention scores (no `blocks.{{i}}.attn.hook_scores` hook); pass a `scores` tensor instead",
                info.arch
            )));
        }
        let out = model.forward(
            tokens,
            &ForwardRequest {
                variants: vec![Variant::default()],
                capture: vec!["blocks.*.attn.hook_scores".into()],
                ..Default::default()
            },
        )?;
        let out = out
            .first()
            .ok_or_else(|| Error::msg("attention_energetics: no output"))?;
        for l in 0..info.n_layers {
            let t = out.get(&hook(l)).ok_or_else(|| {
                Error::msg(format!(
                    "attention_energetics: the model did not return `{}`",
                    hook(l)
                ))
            })?;
            let shape = t.shape()?;
            let [h, tq, tk] = shape[..] else {
                return Err(Error::msg(format!(
                    "attention_energetics: `{}` has shape {shape:?}, expected [H, T, T]",
                    hook(l)
                )));
            };
            blocks.push((t.to_vec()?, h, tq, tk));
        }
        format!("model {} (blocks.*.attn.hook_scores)", info.arch)
    } else {
        let t = input.tensor("scores")?;
        let shape = t.shape()?;
        let (l, h, tq, tk) = match shape[..] {
            [tq, tk] => (1, 1, tq, tk),
            [h, tq, tk] => (1, h, tq, tk),
            [l, h, tq, tk] => (l, h, tq, tk),
            _ => {
                return Err(Error::msg(format!(
                    "attention_energetics: `scores` must be [T_q, T_k], [H, T_q, T_k] or [L, H, T_q, T_k], got {shape:?}"
                )))
            }
        };
        let data = t.to_vec()?;
        let per = h * tq * tk;
        for i in 0..l {
            blocks.push((data[i * per..(i + 1) * per].to_vec(), h, tq, tk));
        }
        "scores tensor".into()
    };
    let (layers, heads, tk) = (blocks.len(), blocks[0].1, blocks[0].3);
    if blocks
        .iter()
        .any(|b| b.1 != heads || b.2 == 0 || b.2 > b.3 || b.3 != tk)
    {
        return Err(Error::msg(
            "attention_energetics: every layer needs the same heads and keys, and 1 ≤ T_q ≤ T_k",
        ));
    }
    let n = layers * heads;
    let (mut f, mut u, mut h, mut k90, mut local, mut above) = (
        vec![0f32; n],
        vec![0f32; n],
        vec![0f32; n],
        vec![0f32; n],
        vec![0f32; n],
        vec![0f32; n],
    );
    let mut lag_layer = vec![f32::NAN; layers * tk];
    for (l, (data, nh, tq, tk)) in blocks.iter().enumerate() {
        tokit_sdk::check_cancelled()?;
        let mut lag = vec![(0.0f64, 0usize); *tk];
        for hd in 0..*nh {
            let s = &data[hd * tq * tk..(hd + 1) * tq * tk];
            let r = head(s, *tq, *tk, window, &mut lag)?;
            let i = l * heads + hd;
            f[i] = (r.f * scale) as f32;
            u[i] = (r.u * scale) as f32;
            h[i] = (r.h * scale) as f32;
            k90[i] = r.k90 as f32;
            local[i] = r.local as f32;
            above[i] = r.above as f32;
        }
        for (k, (s, c)) in lag.iter().enumerate() {
            if *c > 0 {
                lag_layer[l * tk + k] = (s / *c as f64) as f32;
            }
        }
    }
    let lag_profile: Vec<f32> = (0..tk)
        .map(|k| {
            (lag_layer
                .iter()
                .skip(k)
                .step_by(tk)
                .map(|&x| x as f64)
                .sum::<f64>()
                / layers as f64) as f32
        })
        .collect();
    let mean = |v: &[f32]| v.iter().map(|&x| x as f64).sum::<f64>() / v.len() as f64;
    let mut params = input.params.clone();
    params.insert("window".into(), json!(window));
    params.insert("unit".into(), json!(unit));
    let mut out = MetricOutput {
        value: Some(mean(&h)),
        unit: unit.to_string().into(),
        estimator: "exact".into(),
        params,
        plot: Some(json!({
            "kind": "heatmap", "z": "entropy", "x_label": "head", "y_label": "layer",
            "z_label": format!("attention entropy ({unit})"), "title": "attention entropy per layer and head",
        })),
        ..Default::default()
    };
    out.notes.push(format!(
        "from {source}; [layer, head] tensors are means over query rows; energies are −scores; lag_profile[l] = mean α over pairs with i − j = l (rows of lag_profile_by_layer: layers); locality = mass with |i − j| < window; above_diagonal = mass with j > i (0 in a causal model); value = mean attention entropy"
    ));
    out = out
        .scalar("free_energy_mean", mean(&f))
        .scalar("mean_energy_mean", mean(&u))
        .scalar("entropy_mean", mean(&h))
        .scalar("k90_mean", mean(&k90))
        .scalar("locality_mean", mean(&local))
        .scalar("above_diagonal_mean", mean(&above))
        .tensor("free_energy", &f, &[layers, heads])?
        .tensor("mean_energy", &u, &[layers, heads])?
        .tensor("entropy", &h, &[layers, heads])?
        .tensor("k90", &k90, &[layers, heads])?
        .tensor("locality", &local, &[layers, heads])?
        .tensor("above_diagonal", &above, &[layers, heads])?
        .tensor("lag_profile", &lag_profile, &[tk])?
        .tensor("lag_profile_by_layer", &lag_layer, &[layers, tk])?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn t17_three_level_scores() {
        let r = row(&[0.0, 2f32.ln(), 4f32.ln()]).unwrap();
        assert!((r.free_energy + 1.9459101).abs() < 1e-6, "{r:?}");
        assert!((r.mean_energy + 0.9902103).abs() < 1e-6, "{r:?}");
        assert!((r.entropy - 0.9556999).abs() < 1e-6, "{r:?}");
        // α = (1, 2, 4)/7: the top two keys hold 6/7 < 0.9, all three are needed.
        assert_eq!(r.k90, 3);
    }

    #[test]
    fn equal_scores_have_entropy_ln_n_and_masked_keys_are_left_out() {
        let r = row(&[1.5; 5]).unwrap();
        assert!((r.entropy - 5f64.ln()).abs() < 1e-12 && r.k90 == 5);
        let r = row(&[0.0, f32::NEG_INFINITY, 0.0]).unwrap();
        assert!((r.entropy - 2f64.ln()).abs() < 1e-12 && r.k90 == 2);
        let r = row(&[10.0, -10.0, -10.0]).unwrap();
        assert_eq!(r.k90, 1);
    }

    #[test]
    fn causal_rows_put_no_mass_above_the_diagonal_and_lags_average_per_pair() {
        let ninf = f32::NEG_INFINITY;
        // Row 0 attends to itself; row 1 equally to 0 and 1.
        let s = [0.0, ninf, 0.0, 0.0];
        let mut lag = vec![(0.0, 0); 2];
        let h = head(&s, 2, 2, 1, &mut lag).unwrap();
        assert_eq!(h.above, 0.0);
        // Lag 0: α_00 = 1, α_11 = ½ → mean ¾; lag 1: α_10 = ½.
        assert!((lag[0].0 / lag[0].1 as f64 - 0.75).abs() < 1e-12);
        assert!((lag[1].0 / lag[1].1 as f64 - 0.5).abs() < 1e-12);
        // Window 1 keeps only the diagonal: (1 + ½)/2.
        assert!((h.local - 0.75).abs() < 1e-12);
        // Bidirectional: row 0 splits evenly with key 1 above the diagonal.
        let s = [0.0, 0.0, 0.0, 0.0];
        let mut lag = vec![(0.0, 0); 2];
        let h = head(&s, 2, 2, 1, &mut lag).unwrap();
        assert!((h.above - 0.25).abs() < 1e-12);
    }
}
