//! Transfer entropy (Schreiber 2000) and conditional transfer entropy, plug-in, with the
//! embedding parameters of JIDT's `TransferEntropyCalculatorDiscrete`:
//!
//! `TE_{X→Y} = I(Y_t ; X_{t−u}^{(l, τ_l)} | Y_{t−1}^{(k, τ_k)} [, Z_{t−v}^{(m, τ_m)}])`
//!
//! * target history `Y^{(k,τ_k)}_{t−1} = (y_{t−1}, y_{t−1−τ_k}, …)`, `k` values (`k = 0`: no
//!   history, TE becomes the lagged mutual information);
//! * source window `X^{(l,τ_l)}_{t−u} = (x_{t−u}, x_{t−u−τ_l}, …)`, `l ≥ 1` values, source
//!   delay `u ≥ 0` (`u = 1`: the source's previous symbol, Schreiber's and pyinform's
//!   convention; `u = 0` also sees the simultaneous source symbol);
//! * optional condition stream `Z` with its own window (`cond_l`, `cond_tau`, `cond_delay`;
//!   pyinform's `condition=` uses `cond_l = 1`, `cond_delay = 1`), giving the conditional
//!   TE `I(Y_t ; X | Y-past, Z-window)`.
//!
//! Samples are the times `t ≥ t0` of every trial, `t0` the largest lag used. With the
//! defaults `l = 1`, `u = 1` this reproduces `pyinform.transfer_entropy(source, target, k)`
//! (and its `condition=` form), including the local values
//! `ln p(y_t | y-past, x-window) / p(y_t | y-past)`.

use super::counting::{embed, lags, pair};
use super::dense;
use super::measure::{layout, measure_cmi, Measured, Options};
use super::series::{same_layout, Symbols};

/// Embedding of a transfer entropy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TeSpec {
    pub k: usize,
    pub k_tau: usize,
    pub l: usize,
    pub l_tau: usize,
    pub delay: usize,
    pub cond_l: usize,
    pub cond_tau: usize,
    pub cond_delay: usize,
}

impl Default for TeSpec {
    fn default() -> TeSpec {
        TeSpec {
            k: 1,
            k_tau: 1,
            l: 1,
            l_tau: 1,
            delay: 1,
            cond_l: 1,
            cond_tau: 1,
            cond_delay: 1,
        }
    }
}

impl TeSpec {
    pub fn with_k(k: usize) -> TeSpec {
        TeSpec {
            k,
            ..TeSpec::default()
        }
    }

    fn check(&self) -> Result<(), String> {
        if self.l == 0 {
            return Err("transfer entropy needs a source window l ≥ 1".into());
        }
        if self.k_tau == 0 || self.l_tau == 0 || self.cond_tau == 0 {
            return Err("embedding spacings (k_tau, l_tau, cond_tau) must be ≥ 1".into());
        }
        Ok(())
    }

    fn history_lags(&self) -> Vec<usize> {
        lags(1, self.k, self.k_tau)
    }

    fn source_lags(&self) -> Vec<usize> {
        lags(self.delay, self.l, self.l_tau)
    }

    fn cond_lags(&self) -> Vec<usize> {
        lags(self.cond_delay, self.cond_l, self.cond_tau)
    }
}

/// `TE_{source → target}` (conditional on `condition` when given).
pub fn transfer_entropy(
    source: &Symbols,
    target: &Symbols,
    condition: Option<&Symbols>,
    spec: &TeSpec,
    opts: &Options,
) -> Result<Measured, String> {
    spec.check()?;
    let mut names = vec!["source", "target"];
    let mut all_lens = vec![source.lens(), target.lens()];
    if let Some(c) = condition {
        names.push("condition");
        all_lens.push(c.lens());
        if spec.cond_l == 0 {
            return Err("a condition stream needs a window cond_l ≥ 1".into());
        }
    }
    same_layout(&names, &all_lens)?;
    let (hl, sl, cl) = (spec.history_lags(), spec.source_lags(), spec.cond_lags());
    let mut t0 = hl.iter().chain(&sl).copied().max().unwrap_or(0);
    if condition.is_some() {
        t0 = t0.max(cl.iter().copied().max().unwrap_or(0));
    }
    let layout = layout(target.lens(), t0, "transfer entropy")?;
    // Small alphabets: dense counts straight from the streams.
    let a = [(target, 0)];
    let b: Vec<_> = sl.iter().map(|&l| (source, l)).collect();
    let mut c: Vec<_> = hl.iter().map(|&l| (target, l)).collect();
    if let Some(z) = condition {
        c.extend(cl.iter().map(|&l| (z, l)));
    }
    if let Some(m) = dense::measure_cmi(&a, &b, &c, layout.clone(), opts) {
        return Ok(m);
    }
    let future = embed(target, &[0], &layout);
    let src = embed(source, &sl, &layout);
    let mut given = (spec.k > 0).then(|| embed(target, &hl, &layout));
    if let Some(c) = condition {
        let z = embed(c, &cl, &layout);
        given = Some(match given {
            Some(h) => pair(&h, &z),
            None => z,
        });
    }
    Ok(measure_cmi(future, src, given, layout, opts))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::streams::rng::Rng;
    use crate::streams::significance::{Permutations, Surrogate};
    use std::f64::consts::LN_2;

    fn bits(source: &[u32], target: &[u32], k: usize) -> f64 {
        let (s, t) = (Symbols::one(source.to_vec()), Symbols::one(target.to_vec()));
        transfer_entropy(&s, &t, None, &TeSpec::with_k(k), &Options::default())
            .unwrap()
            .value()
            / LN_2
    }

    /// T10 (`docs/measures.md`): the inform library's example.
    #[test]
    fn t10_inform_example() {
        let xs = [0, 0, 1, 1, 1, 1, 0, 0, 0];
        let ys = [0, 1, 1, 1, 1, 0, 0, 0, 1];
        let cases = [
            (&ys, &xs, 1, 0.8112781),
            (&ys, &xs, 2, 0.6792696),
            (&xs, &ys, 1, 0.2169172),
            (&xs, &ys, 2, 0.0),
        ];
        for (src, dst, k, want) in cases {
            let got = bits(src, dst, k);
            assert!((got - want).abs() < 5e-8, "TE(k={k}) = {got}, want {want}");
        }
        // Exact values from pyinform 0.2.0.
        assert!((bits(&ys, &xs, 1) - 0.8112781244591329).abs() < 1e-12);
        assert!((bits(&xs, &ys, 1) - 0.21691718668869922).abs() < 1e-12);
    }

    #[test]
    fn conditional_te_and_locals_match_pyinform() {
        // pyinform 0.2.0: transfer_entropy(xs, ys, k=2, condition=ws) = 0.2857142857142857,
        // local = [1, 0, 0, 0, 0, 0, 1]; without the condition 0.6792696431662097.
        let xs = Symbols::one(vec![1, 0, 0, 0, 0, 1, 1, 1, 1]);
        let ys = Symbols::one(vec![0, 0, 1, 1, 1, 1, 0, 0, 0]);
        let ws = Symbols::one(vec![0, 1, 1, 1, 1, 0, 1, 1, 1]);
        let o = Options::default();
        let c = transfer_entropy(&xs, &ys, Some(&ws), &TeSpec::with_k(2), &o).unwrap();
        assert!(
            (c.value() / LN_2 - 0.2857142857142857).abs() < 1e-12,
            "{}",
            c.value() / LN_2
        );
        let local: Vec<f64> = c.estimate.local.iter().map(|v| v / LN_2).collect();
        for (g, w) in local.iter().zip([1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0]) {
            assert!((g - w).abs() < 1e-12, "{local:?}");
        }
        assert_eq!(c.layout.t0, 2);
        let u = transfer_entropy(&xs, &ys, None, &TeSpec::with_k(2), &o).unwrap();
        assert!((u.value() / LN_2 - 0.6792696431662097).abs() < 1e-12);
        assert!(
            transfer_entropy(&xs, &Symbols::one(vec![0, 1]), None, &TeSpec::default(), &o)
                .unwrap_err()
                .contains("same trial layout")
        );
    }

    /// A coupled pair: `Y_t = X_{t−2}` flipped with probability 0.1, X i.i.d. uniform bits.
    fn coupled(n: usize, seed: u64) -> (Symbols, Symbols) {
        let mut r = Rng::new(seed);
        let x: Vec<u32> = (0..n).map(|_| r.below(2) as u32).collect();
        let y: Vec<u32> = (0..n)
            .map(|t| {
                if t < 2 {
                    0
                } else {
                    x[t - 2] ^ u32::from(r.uniform() < 0.1)
                }
            })
            .collect();
        (Symbols::one(x), Symbols::one(y))
    }

    #[test]
    fn embedding_delay_and_miller_madow() {
        let (x, y) = coupled(20_000, 1);
        let o = Options::default();
        let want = (1.0 - h2(0.1)) * LN_2;
        // The coupling acts at delay 2: delay 1 sees nothing, delay 2 sees 1 − h(0.1) bits.
        let d1 = transfer_entropy(&x, &y, None, &TeSpec::default(), &o)
            .unwrap()
            .value();
        let d2 = transfer_entropy(
            &x,
            &y,
            None,
            &TeSpec {
                delay: 2,
                ..TeSpec::default()
            },
            &o,
        )
        .unwrap()
        .value();
        assert!(d1 < 0.002, "{d1}");
        assert!((d2 - want).abs() < 0.01, "{d2} vs {want}");
        // A source window of 2 (lags 1, 2) contains it as well.
        let w = transfer_entropy(
            &x,
            &y,
            None,
            &TeSpec {
                l: 2,
                ..TeSpec::default()
            },
            &o,
        )
        .unwrap()
        .value();
        assert!((w - want).abs() < 0.01, "{w}");
        // Miller–Madow: correction (m_AC + m_BC − m_ABC − m_C) / 2N, locals shifted alike.
        let mm = Options {
            bias: crate::streams::estimate::Bias::MillerMadow,
            ..o
        };
        let p = transfer_entropy(&x, &y, None, &TeSpec::default(), &o).unwrap();
        let m = transfer_entropy(&x, &y, None, &TeSpec::default(), &mm).unwrap();
        let n = p.estimate.samples as f64;
        // Binary Y, X, Y-past all occupied: m_AC = 4, m_BC = 4, m_ABC = 8, m_C = 2 → −2/(2N).
        assert!((m.value() - (p.value() - 2.0 / (2.0 * n))).abs() < 1e-15);
        assert!((m.estimate.local.iter().sum::<f64>() / n - m.value()).abs() < 1e-12);
    }

    #[test]
    fn permutation_p_values() {
        // Coupled: every surrogate falls below the observed TE.
        let (x, y) = coupled(500, 3);
        let spec = TeSpec {
            delay: 2,
            ..TeSpec::default()
        };
        for kind in [Surrogate::Shuffle, Surrogate::Circular, Surrogate::Block(0)] {
            let o = Options {
                permutations: Permutations {
                    kind,
                    count: 199,
                    first: 0,
                    seed: 11,
                },
                ..Options::default()
            };
            let m = transfer_entropy(&x, &y, None, &spec, &o).unwrap();
            let s = m.significance.unwrap();
            assert_eq!(s.p_value, 1.0 / 200.0, "{kind:?}");
            assert!((s.effective - (m.estimate.value - s.surrogate_mean)).abs() < 1e-15);
            assert!(s.surrogate_mean < 0.01 && s.effective > 0.3, "{s:?}");
            // Same seed, same answer.
            let again = transfer_entropy(&x, &y, None, &spec, &o)
                .unwrap()
                .significance
                .unwrap();
            assert_eq!(again.values, s.values);
        }
        // Independent streams: p-values roughly uniform.
        let mut ps = Vec::new();
        for rep in 0..300u64 {
            let mut r = Rng::new(1000 + rep);
            let x = Symbols::one((0..200).map(|_| r.below(2) as u32).collect());
            let y = Symbols::one((0..200).map(|_| r.below(2) as u32).collect());
            let o = Options {
                permutations: Permutations {
                    kind: Surrogate::Shuffle,
                    count: 99,
                    first: 0,
                    seed: rep,
                },
                local: false,
                ..Options::default()
            };
            ps.push(
                transfer_entropy(&x, &y, None, &TeSpec::default(), &o)
                    .unwrap()
                    .significance
                    .unwrap()
                    .p_value,
            );
        }
        let mean = ps.iter().sum::<f64>() / ps.len() as f64;
        let below = |a: f64| ps.iter().filter(|&&p| p <= a).count() as f64 / ps.len() as f64;
        assert!((mean - 0.5).abs() < 0.06, "mean p = {mean}");
        assert!(
            (below(0.05) - 0.05).abs() < 0.04,
            "P(p ≤ 0.05) = {}",
            below(0.05)
        );
        assert!(
            (below(0.5) - 0.5).abs() < 0.08,
            "P(p ≤ 0.5) = {}",
            below(0.5)
        );
        // Kolmogorov–Smirnov distance to U(0, 1) (p-values live on the grid j/100).
        ps.sort_by(f64::total_cmp);
        let ks = ps
            .iter()
            .enumerate()
            .map(|(i, &p)| {
                ((i + 1) as f64 / ps.len() as f64 - p)
                    .abs()
                    .max((i as f64 / ps.len() as f64 - p).abs())
            })
            .fold(0.0, f64::max);
        assert!(ks < 0.1, "KS distance {ks}");
    }

    fn h2(p: f64) -> f64 {
        -(p * p.log2() + (1.0 - p) * (1.0 - p).log2())
    }
}
