//! Exact semantic information flow of a toy "prompt → generation" process
//! (`docs/measures.md` M5, a **reconstruction** [P~] of the paper's sub-martingale
//! account), by enumerating every output sequence.
//!
//! A prompt `X` with prior `π` over `K` values; outputs `Y_1, Y_2, …` drawn i.i.d. from a
//! channel row `p(y | x)` given the prompt (default: `X` a uniform bit and a BSC(ε),
//! `Y_i = X ⊕ Z_i`). The information-density process
//! `Λ_n = Σ_{i≤n} ln [ p(y_i | y^{i−1}, x) / p(y_i | y^{i−1}) ]`, with the exact marginal
//! predictive `p(y_i | y^{i−1}) = Σ_x' w(x' | y^{i−1}) p(y_i | x')`, `w ∝ π · likelihood`.
//!
//! Computed for `n = 1..N`:
//! * `E Λ_n` literally (the sum over `(x, y^n)` of `p(x, y^n) Λ_n`), and, as a check,
//!   `I(X; Y^n) = H(Y^n) − H(Y^n | X)` from entropies (the two must agree);
//! * the conditional expected increment `E[Λ_n − Λ_{n−1} | x, y^{n−1}]` at every reachable
//!   `(x, y^{n−1})`, summed literally over `y_n` (it equals a KL divergence, so it must be
//!   ≥ 0: the sub-martingale property); its minimum per step, and its mean (= `E Λ_n −
//!   E Λ_{n−1}`);
//! * the probability that the *realised* increment is negative (it can be: only its
//!   conditional mean is non-negative).
//!
//! Cost `O(K |Y|^N)`; `|Y|^N` is capped at 2²².

/// Prompt prior and channel.
#[derive(Clone, Debug)]
pub struct FlowSpec {
    pub prior: Vec<f64>,
    /// `channel[x][y] = p(y | x)`.
    pub channel: Vec<Vec<f64>>,
    pub steps: usize,
}

impl FlowSpec {
    /// Uniform bit through a BSC(ε).
    pub fn bsc(eps: f64, steps: usize) -> FlowSpec {
        FlowSpec {
            prior: vec![0.5, 0.5],
            channel: vec![vec![1.0 - eps, eps], vec![eps, 1.0 - eps]],
            steps,
        }
    }

    fn check(&self) -> Result<(), String> {
        let ok = |v: &[f64]| {
            v.iter().all(|p| p.is_finite() && *p >= 0.0)
                && (v.iter().sum::<f64>() - 1.0).abs() < 1e-9
        };
        if self.prior.is_empty() || !ok(&self.prior) {
            return Err(
                "info_flow: `prior` must be a probability vector (non-negative, sums to 1)".into(),
            );
        }
        if self.channel.len() != self.prior.len() {
            return Err(format!(
                "info_flow: `channel` needs one row per prompt value ({}), has {}",
                self.prior.len(),
                self.channel.len()
            ));
        }
        let ny = self.channel[0].len();
        if ny == 0 || self.channel.iter().any(|r| r.len() != ny || !ok(r)) {
            return Err(
                "info_flow: every `channel` row must be a probability vector over the same outputs"
                    .into(),
            );
        }
        if self.steps == 0 {
            return Err("info_flow: `n` must be ≥ 1".into());
        }
        if (ny as f64).powi(self.steps as i32) > (1u64 << 22) as f64 {
            return Err(format!(
                "info_flow: |Y|^n = {ny}^{} is too many sequences to enumerate (limit 2^22)",
                self.steps
            ));
        }
        Ok(())
    }
}

/// Per-step results (index `n − 1` for step `n`), nats.
#[derive(Clone, Debug)]
pub struct Flow {
    pub expected_lambda: Vec<f64>,
    pub mutual_info: Vec<f64>,
    pub expected_increment: Vec<f64>,
    pub min_conditional_increment: Vec<f64>,
    pub p_negative_increment: Vec<f64>,
    /// `H(X)`, the ceiling of the flow.
    pub h_x: f64,
}

struct Walk<'a> {
    spec: &'a FlowSpec,
    ln_prior: Vec<f64>,
    ln_ch: Vec<Vec<f64>>,
    out: Flow,
    h_y: Vec<f64>,
}

impl Walk<'_> {
    /// Node `y^n` (`n = depth`), `loglik[x] = ln p(y^n | x)`.
    fn visit(&mut self, depth: usize, loglik: &[f64]) {
        let k = self.spec.prior.len();
        let joint: Vec<f64> = (0..k).map(|x| self.ln_prior[x] + loglik[x]).collect();
        let top = joint.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        if top == f64::NEG_INFINITY {
            return;
        }
        let ln_marg = top + joint.iter().map(|j| (j - top).exp()).sum::<f64>().ln();
        if depth >= 1 {
            let pm = ln_marg.exp();
            self.h_y[depth - 1] -= pm * ln_marg;
            for x in 0..k {
                if joint[x] > f64::NEG_INFINITY {
                    self.out.expected_lambda[depth - 1] += joint[x].exp() * (loglik[x] - ln_marg);
                }
            }
        }
        if depth == self.spec.steps {
            return;
        }
        let ny = self.spec.channel[0].len();
        let post: Vec<f64> = joint.iter().map(|j| (j - ln_marg).exp()).collect();
        let pred: Vec<f64> = (0..ny)
            .map(|y| (0..k).map(|x| post[x] * self.spec.channel[x][y]).sum())
            .collect();
        for (&j, row) in joint.iter().zip(&self.spec.channel) {
            if j == f64::NEG_INFINITY {
                continue;
            }
            let w = j.exp();
            let mut cond = 0.0;
            for (&c, &pr) in row.iter().zip(&pred) {
                if c > 0.0 {
                    let inc = (c / pr).ln();
                    cond += c * inc;
                    // Below −1e-12: rounding of a zero increment does not count.
                    if inc < -1e-12 {
                        self.out.p_negative_increment[depth] += w * c;
                    }
                }
            }
            let m = &mut self.out.min_conditional_increment[depth];
            *m = m.min(cond);
            self.out.expected_increment[depth] += w * cond;
        }
        let mut next = vec![0.0; k];
        for y in 0..ny {
            for ((n, l), ch) in next.iter_mut().zip(loglik).zip(&self.ln_ch) {
                *n = l + ch[y];
            }
            self.visit(depth + 1, &next);
        }
    }
}

pub fn info_flow(spec: &FlowSpec) -> Result<Flow, String> {
    spec.check()?;
    let n = spec.steps;
    let ln = |p: f64| if p > 0.0 { p.ln() } else { f64::NEG_INFINITY };
    let h_x = -spec
        .prior
        .iter()
        .filter(|&&p| p > 0.0)
        .map(|&p| p * p.ln())
        .sum::<f64>();
    let mut walk = Walk {
        spec,
        ln_prior: spec.prior.iter().map(|&p| ln(p)).collect(),
        ln_ch: spec
            .channel
            .iter()
            .map(|r| r.iter().map(|&p| ln(p)).collect())
            .collect(),
        out: Flow {
            expected_lambda: vec![0.0; n],
            mutual_info: vec![0.0; n],
            expected_increment: vec![0.0; n],
            min_conditional_increment: vec![f64::INFINITY; n],
            p_negative_increment: vec![0.0; n],
            h_x,
        },
        h_y: vec![0.0; n],
    };
    walk.visit(0, &vec![0.0; spec.prior.len()]);
    // H(Y^n | X) = n Σ_x π(x) H(p(· | x)).
    let h_row = |r: &Vec<f64>| {
        -r.iter()
            .filter(|&&p| p > 0.0)
            .map(|&p| p * p.ln())
            .sum::<f64>()
    };
    let h_y_given_x: f64 = spec
        .prior
        .iter()
        .zip(&spec.channel)
        .map(|(p, r)| p * h_row(r))
        .sum();
    let mut out = walk.out;
    for i in 0..n {
        out.mutual_info[i] = walk.h_y[i] - (i + 1) as f64 * h_y_given_x;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::f64::consts::LN_2;

    /// T16: BSC(0.1) prompt bit: E Λ_n = 0.5310044, 0.7420859, 0.8624177, 0.9973072 bits
    /// for n = 1, 2, 3, 10; every conditional expected increment ≥ 0.
    #[test]
    fn t16_bsc_information_flow() {
        let f = info_flow(&FlowSpec::bsc(0.1, 10)).unwrap();
        let bits: Vec<f64> = f.expected_lambda.iter().map(|v| v / LN_2).collect();
        for (n, want) in [
            (1, 0.531_004_4),
            (2, 0.742_085_9),
            (3, 0.862_417_7),
            (10, 0.997_307_2),
        ] {
            assert!(
                (bits[n - 1] - want).abs() < 5e-8,
                "E Λ_{n} = {} bits, want {want}",
                bits[n - 1]
            );
        }
        for n in 0..10 {
            assert!(
                (f.expected_lambda[n] - f.mutual_info[n]).abs() < 1e-12,
                "E Λ vs I(X;Y^n) at n={}",
                n + 1
            );
            assert!(
                f.min_conditional_increment[n] >= 0.0,
                "step {}: {}",
                n + 1,
                f.min_conditional_increment[n]
            );
            let prev = if n == 0 {
                0.0
            } else {
                f.expected_lambda[n - 1]
            };
            assert!((f.expected_increment[n] - (f.expected_lambda[n] - prev)).abs() < 1e-12);
            assert!(f.expected_lambda[n] < f.h_x);
        }
        assert!(bits.windows(2).all(|w| w[1] > w[0]));
        // Realised increments do go negative (a flip against the current posterior).
        assert!(f.p_negative_increment[1] > 0.0);
        // Closed forms: E Λ_1 = 1 − h(0.1), E Λ_2 = 1 + h(0.82) − 2 h(0.1).
        let h = |p: f64| -(p * p.log2() + (1.0 - p) * (1.0 - p).log2());
        assert!((bits[0] - (1.0 - h(0.1))).abs() < 1e-12);
        assert!((bits[1] - (1.0 + h(0.82) - 2.0 * h(0.1))).abs() < 1e-12);
    }

    #[test]
    fn independent_output_carries_nothing_and_general_channels_work() {
        let f = info_flow(&FlowSpec {
            prior: vec![0.3, 0.7],
            channel: vec![vec![0.2, 0.8], vec![0.2, 0.8]],
            steps: 5,
        })
        .unwrap();
        assert!(f.expected_lambda.iter().all(|v| v.abs() < 1e-15));
        assert!(f.p_negative_increment.iter().all(|&p| p == 0.0));
        // Three prompts, ternary outputs with a zero: the sub-martingale still holds.
        let spec = FlowSpec {
            prior: vec![0.5, 0.3, 0.2],
            channel: vec![
                vec![0.7, 0.3, 0.0],
                vec![0.1, 0.6, 0.3],
                vec![0.2, 0.2, 0.6],
            ],
            steps: 6,
        };
        let f = info_flow(&spec).unwrap();
        for n in 0..6 {
            assert!(f.min_conditional_increment[n] >= -1e-15);
            assert!((f.expected_lambda[n] - f.mutual_info[n]).abs() < 1e-12);
        }
        assert!(f.expected_lambda[5] < f.h_x);
        assert!(info_flow(&FlowSpec::bsc(0.1, 30))
            .unwrap_err()
            .contains("too many"));
        assert!(info_flow(&FlowSpec {
            prior: vec![0.5, 0.6],
            ..FlowSpec::bsc(0.1, 2)
        })
        .is_err());
    }
}
