//! Directed information between two symbol streams (Massey 1990), plug-in under a
//! finite-memory (Markov-order) assumption.
//!
//! Massey: `I(X^n → Y^n) = Σ_{i=1}^n I(X^i ; Y_i | Y^{i−1})`; the delayed version
//! (next-token situation, `docs/measures.md` M2) `I(X^{n−1} → Y^n) = Σ_i I(X^{i−1} ; Y_i | Y^{i−1})`.
//! Each term conditions on the whole past, which no finite sample can estimate. **Assumption
//! (documented in every result):** the pair is stationary and `Y_i` depends on the past
//! only through the last `m` (`memory`) symbols of each stream, in both the causal law
//! `p(y_i | y^{i−1}, x^{i−d})` and the marginal law `p(y_i | y^{i−1})`. Then every term
//! equals the same conditional mutual information, and the estimated **rate** (nats per
//! symbol) is
//!
//! `Î = I(Y_t ; X_{t−m}^{t−d} | Y_{t−m}^{t−1})`, `d = delay ∈ {0, 1}`,
//!
//! counted over the times `t ≥ m` of every trial (with `d = 1` this is the transfer
//! entropy with `k = l = m`). `I(X^n → Y^n) ≈ n·Î`. The second half of the assumption
//! is the strong one: the marginal of `Y` is in general not Markov even when the pair is,
//! so `Î` is the directed information *of the order-`m` approximation*; increase `m`
//! until the estimate settles (and watch the bias grow with the number of states).
//!
//! Also reported: the feedback term of Massey & Massey's conservation law,
//! `I(0·Y^{n−1} → X^n)` per symbol, `I(X_t ; Y_{t−m}^{t−1} | X_{t−m}^{t−1})`; the
//! delay-0 rate plus this term estimates the mutual-information rate.
//! Local value `ln p(y_t | y-past, x-window) / p(y_t | y-past)`.

use super::counting::embed;
use super::dense;
use super::estimate::{Cmi, Estimate};
use super::measure::{layout, measure_cmi, Measured, Options};
use super::series::{same_layout, Symbols};

/// Directed information rate and the feedback (reverse, delayed) rate, in nats/symbol.
pub struct Directed {
    pub forward: Measured,
    pub reverse: Estimate,
}

pub fn directed_info(
    x: &Symbols,
    y: &Symbols,
    memory: usize,
    delay: usize,
    opts: &Options,
) -> Result<Directed, String> {
    if delay > 1 {
        return Err(format!(
            "directed information: `delay` must be 0 or 1, found {delay}"
        ));
    }
    if delay > memory {
        return Err("directed information with delay 1 needs memory ≥ 1".into());
    }
    same_layout(&["source", "target"], &[x.lens(), y.lens()])?;
    let layout = layout(y.lens(), memory, "directed information")?;
    let past: Vec<usize> = (1..=memory).collect();
    let window: Vec<usize> = (delay..=memory).collect();
    let parts = |s, lags: &[usize]| lags.iter().map(|&l| (s, l)).collect::<Vec<_>>();
    let forward = match dense::measure_cmi(
        &[(y, 0)],
        &parts(x, &window),
        &parts(y, &past),
        layout.clone(),
        opts,
    ) {
        Some(m) => m,
        None => {
            let a = embed(y, &[0], &layout);
            let b = embed(x, &window, &layout);
            let c = (memory > 0).then(|| embed(y, &past, &layout));
            measure_cmi(a, b, c, layout.clone(), opts)
        }
    };
    let reverse = if memory == 0 {
        Estimate {
            samples: layout.samples(),
            ..Default::default()
        }
    } else if let Some(e) = dense::cmi_estimate(
        &[(x, 0)],
        &parts(y, &past),
        &parts(x, &past),
        &layout,
        opts.bias,
    ) {
        e
    } else {
        let xa = embed(x, &[0], &layout);
        let yb = embed(y, &past, &layout);
        let xc = embed(x, &past, &layout);
        Cmi::new(xa, Some(xc)).estimate(&yb, opts.bias, false)
    };
    Ok(Directed { forward, reverse })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::streams::rng::Rng;
    use std::f64::consts::LN_2;

    fn h2(p: f64) -> f64 {
        -(p * p.log2() + (1.0 - p) * (1.0 - p).log2())
    }

    #[test]
    fn bsc_without_feedback_and_pure_feedback() {
        let mut r = Rng::new(8);
        let n = 50_000;
        let o = Options::default();
        // Memoryless BSC(0.1), i.i.d. uniform input: DI rate = 1 − h(0.1) bits at delay 0,
        // nothing at delay 1, no feedback.
        let x: Vec<u32> = (0..n).map(|_| r.below(2) as u32).collect();
        let y: Vec<u32> = x
            .iter()
            .map(|&b| b ^ u32::from(r.uniform() < 0.1))
            .collect();
        let (xs, ys) = (Symbols::one(x), Symbols::one(y));
        let d0 = directed_info(&xs, &ys, 1, 0, &o).unwrap();
        assert!(
            (d0.forward.value() / LN_2 - (1.0 - h2(0.1))).abs() < 0.01,
            "{}",
            d0.forward.value() / LN_2
        );
        assert!(d0.reverse.value / LN_2 < 0.001);
        assert!(directed_info(&xs, &ys, 1, 1, &o).unwrap().forward.value() / LN_2 < 0.001);
        let m0 = directed_info(&xs, &ys, 0, 0, &o).unwrap();
        assert!((m0.forward.value() - d0.forward.value()).abs() < 0.002);
        assert_eq!(m0.reverse.value, 0.0);
        // Pure feedback X_t = Y_{t−1}, Y i.i.d.: DI = 0 both delays, feedback = 1 bit/symbol.
        let y: Vec<u32> = (0..n).map(|_| r.below(2) as u32).collect();
        let x: Vec<u32> = (0..n).map(|t| if t == 0 { 0 } else { y[t - 1] }).collect();
        let (xs, ys) = (Symbols::one(x), Symbols::one(y));
        let f = directed_info(&xs, &ys, 1, 0, &o).unwrap();
        assert!(f.forward.value() / LN_2 < 0.001, "{}", f.forward.value());
        assert!(
            (f.reverse.value / LN_2 - 1.0).abs() < 0.001,
            "{}",
            f.reverse.value / LN_2
        );
        assert!(directed_info(&xs, &ys, 0, 1, &o).is_err());
        assert!(directed_info(&xs, &ys, 1, 2, &o).is_err());
    }
}
