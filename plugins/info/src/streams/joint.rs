//! Exact directed and mutual information of an explicitly enumerated joint law of two
//! finite sequences `(x^n, y^n)` (`docs/measures.md` M2; the unit-test oracle for every
//! directed-information estimator), by summing over its support:
//!
//! * `I(X^{n−d} → Y^n) = Σ_{i=1}^n I(X^{i−d} ; Y_i | Y^{i−1})` for a delay `d ≥ 0`
//!   (`d = 0`: Massey's definition; `d = 1`: the next-token situation, output `i` sees
//!   inputs up to `i − 1`); the per-step terms are kept (the "local" values of the oracle);
//! * `I(X^n ; Y^n)`;
//! * the feedback term `I(0·Y^{n−1} → X^n) = Σ_i I(Y^{i−1} ; X_i | X^{i−1})`;
//! * Massey & Massey's conservation law `I(X^n; Y^n) = I(X^n → Y^n) + I(0·Y^{n−1} → X^n)`,
//!   reported as the residual `MI − DI₀ − feedback` (zero up to rounding);
//! * as an independent check, Kramer's causal-conditioning form
//!   `E ln [ p(Y^n ‖ X^{n−d}) / p(Y^n) ]`, `p(y^n ‖ x^{n−d}) = Π_i p(y_i | y^{i−1}, x^{i−d})`.
//!
//! Cost `O(|support| · n)` hash operations; the joint is sparse (only listed outcomes).

use serde_json::Value;
use std::collections::HashMap;

/// A joint pmf over pairs of equal-length sequences.
#[derive(Clone, Debug)]
pub struct Joint {
    pub n: usize,
    /// `(x^n, y^n, p)`, positive `p`, distinct outcomes, total 1.
    pub outcomes: Vec<(Vec<u32>, Vec<u32>, f64)>,
}

type Key = Vec<u32>;

impl Joint {
    /// Validate and merge duplicates; the total must be 1 within 1e-9 (then renormalised).
    pub fn new(outcomes: Vec<(Vec<u32>, Vec<u32>, f64)>) -> Result<Joint, String> {
        let Some(first) = outcomes.first() else {
            return Err("joint: no outcomes".into());
        };
        let n = first.0.len();
        if n == 0 {
            return Err("joint: sequences must be non-empty".into());
        }
        let mut merged: HashMap<(Key, Key), f64> = HashMap::new();
        let mut order = Vec::new();
        for (i, (x, y, p)) in outcomes.into_iter().enumerate() {
            if x.len() != n || y.len() != n {
                return Err(format!(
                    "joint: outcome {i} has lengths ({}, {}), expected ({n}, {n})",
                    x.len(),
                    y.len()
                ));
            }
            if !(p.is_finite() && p >= 0.0) {
                return Err(format!("joint: outcome {i} has probability {p}"));
            }
            if p > 0.0 {
                let key = (x, y);
                if !merged.contains_key(&key) {
                    order.push(key.clone());
                }
                *merged.entry(key).or_insert(0.0) += p;
            }
        }
        let total: f64 = merged.values().sum();
        if (total - 1.0).abs() > 1e-9 {
            return Err(format!("joint: probabilities sum to {total}, not 1"));
        }
        let outcomes = order
            .into_iter()
            .map(|k| {
                let p = merged[&k] / total;
                (k.0, k.1, p)
            })
            .collect();
        Ok(Joint { n, outcomes })
    }

    /// From JSON: an array of `{x: [..], y: [..], p: number}` or `[[x..], [y..], p]`.
    pub fn from_json(v: &Value) -> Result<Joint, String> {
        let arr = v
            .as_array()
            .ok_or("`joint`: expected an array of outcomes {x, y, p}")?;
        let seq = |v: Option<&Value>, i: usize, what: &str| -> Result<Vec<u32>, String> {
            v.and_then(Value::as_array)
                .ok_or_else(|| {
                    format!("`joint`: outcome {i}: `{what}` must be an array of symbols")
                })?
                .iter()
                .map(|s| {
                    s.as_u64()
                        .filter(|&u| u <= u32::MAX as u64)
                        .map(|u| u as u32)
                        .ok_or_else(|| format!("`joint`: outcome {i}: bad symbol {s} in `{what}`"))
                })
                .collect()
        };
        let mut out = Vec::with_capacity(arr.len());
        for (i, o) in arr.iter().enumerate() {
            let (x, y, p) = match o {
                Value::Object(m) => (m.get("x"), m.get("y"), m.get("p")),
                Value::Array(a) if a.len() == 3 => (a.first(), a.get(1), a.get(2)),
                _ => {
                    return Err(format!(
                        "`joint`: outcome {i} must be {{x, y, p}} or [x, y, p], found {o}"
                    ))
                }
            };
            let p = p
                .and_then(Value::as_f64)
                .ok_or_else(|| format!("`joint`: outcome {i}: `p` must be a number"))?;
            out.push((seq(x, i, "x")?, seq(y, i, "y")?, p));
        }
        Joint::new(out)
    }

    /// `I(A; B | C)` with `A, B, C` functions of the outcome.
    pub fn cmi(&self, f: impl Fn(&[u32], &[u32]) -> (Key, Key, Key)) -> f64 {
        let mut abc: HashMap<(Key, Key, Key), f64> = HashMap::new();
        let mut ac: HashMap<(Key, Key), f64> = HashMap::new();
        let mut bc: HashMap<(Key, Key), f64> = HashMap::new();
        let mut c: HashMap<Key, f64> = HashMap::new();
        for (x, y, p) in &self.outcomes {
            let (ka, kb, kc) = f(x, y);
            *ac.entry((ka.clone(), kc.clone())).or_default() += p;
            *bc.entry((kb.clone(), kc.clone())).or_default() += p;
            *c.entry(kc.clone()).or_default() += p;
            *abc.entry((ka, kb, kc)).or_default() += p;
        }
        abc.iter()
            .map(|((ka, kb, kc), &p)| {
                let (pac, pbc, pc) = (
                    ac[&(ka.clone(), kc.clone())],
                    bc[&(kb.clone(), kc.clone())],
                    c[kc],
                );
                p * (p * pc / (pac * pbc)).ln()
            })
            .sum()
    }

    /// Per-step terms `I(X^{i−d} ; Y_i | Y^{i−1})`, `i = 1..n` (zero while `i ≤ d`).
    pub fn directed_terms(&self, delay: usize) -> Vec<f64> {
        (1..=self.n)
            .map(|i| {
                if i <= delay {
                    0.0
                } else {
                    self.cmi(|x, y| (x[..i - delay].to_vec(), vec![y[i - 1]], y[..i - 1].to_vec()))
                }
            })
            .collect()
    }

    pub fn directed_info(&self, delay: usize) -> f64 {
        self.directed_terms(delay).iter().sum()
    }

    /// Per-step terms of the feedback flow `I(Y^{i−1} ; X_i | X^{i−1})`.
    pub fn feedback_terms(&self) -> Vec<f64> {
        (1..=self.n)
            .map(|i| self.cmi(|x, y| (vec![x[i - 1]], y[..i - 1].to_vec(), x[..i - 1].to_vec())))
            .collect()
    }

    /// `I(X^n ; Y^n)`.
    pub fn mutual_info(&self) -> f64 {
        self.cmi(|x, y| (x.to_vec(), y.to_vec(), Vec::new()))
    }

    /// `E ln p(Y^n ‖ X^{n−d}) / p(Y^n)` (Kramer's causal conditioning).
    pub fn causal_conditioning_di(&self, delay: usize) -> f64 {
        // Marginals p(x^{i−d}, y^i), p(x^{i−d}, y^{i−1}) (keyed by i) and p(y^i).
        let mut num: HashMap<(usize, Key, Key), f64> = HashMap::new();
        let mut den: HashMap<(usize, Key, Key), f64> = HashMap::new();
        let mut ym: HashMap<Key, f64> = HashMap::new();
        let xi = |x: &[u32], i: usize| x[..i.saturating_sub(delay)].to_vec();
        for (x, y, p) in &self.outcomes {
            *ym.entry(Vec::new()).or_default() += p;
            for i in 1..=self.n {
                *num.entry((i, xi(x, i), y[..i].to_vec())).or_default() += p;
                *den.entry((i, xi(x, i), y[..i - 1].to_vec())).or_default() += p;
                *ym.entry(y[..i].to_vec()).or_default() += p;
            }
        }
        let mut total = 0.0;
        for (x, y, p) in &self.outcomes {
            let mut l = 0.0;
            for i in 1..=self.n {
                let causal =
                    num[&(i, xi(x, i), y[..i].to_vec())] / den[&(i, xi(x, i), y[..i - 1].to_vec())];
                let plain = ym[&y[..i].to_vec()] / ym[&y[..i - 1].to_vec()];
                l += (causal / plain).ln();
            }
            total += p * l;
        }
        total
    }
}

/// Everything the `exact_directed_info` metric reports (nats).
#[derive(Clone, Debug)]
pub struct JointReport {
    pub directed: f64,
    pub directed_terms: Vec<f64>,
    pub directed_delay0: f64,
    pub mutual_info: f64,
    pub feedback: f64,
    pub feedback_terms: Vec<f64>,
    /// `MI − DI₀ − feedback`.
    pub conservation_residual: f64,
    pub causal_conditioning: f64,
}

pub fn report(j: &Joint, delay: usize) -> JointReport {
    let directed_terms = j.directed_terms(delay);
    let directed = directed_terms.iter().sum();
    let directed_delay0 = if delay == 0 {
        directed
    } else {
        j.directed_info(0)
    };
    let feedback_terms = j.feedback_terms();
    let feedback: f64 = feedback_terms.iter().sum();
    let mutual_info = j.mutual_info();
    JointReport {
        directed,
        directed_terms,
        directed_delay0,
        mutual_info,
        feedback,
        feedback_terms,
        conservation_residual: mutual_info - directed_delay0 - feedback,
        causal_conditioning: j.causal_conditioning_di(delay),
    }
}

/// Joint of a memoryless BSC(ε) with i.i.d. uniform inputs and no feedback.
pub fn bsc_joint(eps: f64, n: usize) -> Joint {
    let mut out = Vec::new();
    for xb in 0..1u32 << n {
        for zb in 0..1u32 << n {
            let x: Vec<u32> = (0..n).map(|i| (xb >> i) & 1).collect();
            let z: Vec<u32> = (0..n).map(|i| (zb >> i) & 1).collect();
            let y = x.iter().zip(&z).map(|(a, b)| a ^ b).collect();
            let flips = zb.count_ones() as i32;
            let p = 0.5f64.powi(n as i32) * eps.powi(flips) * (1.0 - eps).powi(n as i32 - flips);
            out.push((x, y, p));
        }
    }
    Joint::new(out).expect("valid BSC joint")
}

/// Pure feedback: `X_1 = 0`, `X_i = Y_{i−1}`, `Y_i` i.i.d. uniform bits.
pub fn feedback_joint(n: usize) -> Joint {
    let out = (0..1u32 << n)
        .map(|yb| {
            let y: Vec<u32> = (0..n).map(|i| (yb >> i) & 1).collect();
            let x = std::iter::once(0)
                .chain(y[..n - 1].iter().copied())
                .collect();
            (x, y, 0.5f64.powi(n as i32))
        })
        .collect();
    Joint::new(out).expect("valid feedback joint")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::f64::consts::LN_2;

    fn h2(p: f64) -> f64 {
        -(p * p.log2() + (1.0 - p) * (1.0 - p).log2())
    }

    /// T8: pure feedback — DI = 0, MI = n − 1 bits, conservation with feedback = n − 1.
    #[test]
    fn t8_feedback() {
        for n in 1..=6 {
            let r = report(&feedback_joint(n), 0);
            let want = (n - 1) as f64;
            assert!(r.directed.abs() < 1e-12, "n={n}: DI = {}", r.directed);
            assert!(
                (r.mutual_info / LN_2 - want).abs() < 1e-12,
                "n={n}: MI = {}",
                r.mutual_info / LN_2
            );
            assert!((r.feedback / LN_2 - want).abs() < 1e-12);
            assert!(r.conservation_residual.abs() < 1e-12);
            assert!(r.causal_conditioning.abs() < 1e-12);
        }
    }

    /// T9: BSC(0.1), n = 3, no feedback: DI = MI = 3 (1 − h(0.1)) = 1.5930132 bits.
    #[test]
    fn t9_bsc() {
        let j = bsc_joint(0.1, 3);
        let r = report(&j, 0);
        assert!(
            (r.directed / LN_2 - 1.593_013_2).abs() < 5e-8,
            "{}",
            r.directed / LN_2
        );
        assert!((r.directed / LN_2 - 3.0 * (1.0 - h2(0.1))).abs() < 1e-12);
        assert!((r.mutual_info - r.directed).abs() < 1e-12);
        assert!(r.feedback.abs() < 1e-12 && r.conservation_residual.abs() < 1e-12);
        assert!((r.causal_conditioning - r.directed).abs() < 1e-12);
        for t in &r.directed_terms {
            assert!((t / LN_2 - (1.0 - h2(0.1))).abs() < 1e-12);
        }
        // With delay 1 the output never sees its own input: nothing flows.
        let d1 = report(&j, 1);
        assert!(d1.directed.abs() < 1e-12 && d1.causal_conditioning.abs() < 1e-12);
        assert!((d1.directed_delay0 - r.directed).abs() < 1e-15);
    }

    #[test]
    fn conservation_on_a_random_joint_and_independence() {
        // A random full-support joint over (x^3, y^3) with ternary x and binary y.
        let mut rng = crate::streams::rng::Rng::new(77);
        let mut out = Vec::new();
        for xb in 0..27u32 {
            for yb in 0..8u32 {
                let x = vec![xb % 3, (xb / 3) % 3, xb / 9];
                let y = vec![yb & 1, (yb >> 1) & 1, yb >> 2];
                out.push((x, y, rng.uniform() + 0.01));
            }
        }
        let total: f64 = out.iter().map(|o| o.2).sum();
        for o in &mut out {
            o.2 /= total;
        }
        let j = Joint::new(out).unwrap();
        for d in [0, 1] {
            let r = report(&j, d);
            assert!(
                r.conservation_residual.abs() < 1e-12,
                "{}",
                r.conservation_residual
            );
            assert!(
                (r.causal_conditioning - r.directed).abs() < 1e-12,
                "d={d}: {} vs {}",
                r.causal_conditioning,
                r.directed
            );
            assert!(r.directed > 0.0 && r.directed <= r.mutual_info + 1e-15);
        }
        // Independent X and Y: DI = 0 both ways.
        let mut out = Vec::new();
        for xb in 0..4u32 {
            for yb in 0..4u32 {
                let px = [0.1, 0.2, 0.3, 0.4][xb as usize];
                let py = [0.25, 0.25, 0.4, 0.1][yb as usize];
                out.push((vec![xb & 1, xb >> 1], vec![yb & 1, yb >> 1], px * py));
            }
        }
        let r = report(&Joint::new(out).unwrap(), 0);
        assert!(
            r.directed.abs() < 1e-15 && r.feedback.abs() < 1e-15 && r.mutual_info.abs() < 1e-15
        );
    }

    #[test]
    fn json_forms_and_validation() {
        let v = serde_json::json!([{ "x": [0], "y": [0], "p": 0.5 }, [[1], [1], 0.25], [[1], [1], 0.25]]);
        let j = Joint::from_json(&v).unwrap();
        assert_eq!(j.outcomes.len(), 2);
        assert!((j.mutual_info() - LN_2).abs() < 1e-15);
        assert!(Joint::from_json(&serde_json::json!([[[0], [0], 0.5]]))
            .unwrap_err()
            .contains("sum to"));
        assert!(Joint::from_json(&serde_json::json!([[[0], [0, 1], 1.0]]))
            .unwrap_err()
            .contains("lengths"));
        assert!(Joint::from_json(&serde_json::json!([[[0], [0], -1.0], [[1], [1], 2.0]])).is_err());
    }
}
