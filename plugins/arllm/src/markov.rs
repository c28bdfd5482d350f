//! The n-gram model as a Markov chain on k-tuples: stationary law and exact entropy rate.
//!
//! State `s = (s_1, …, s_k)` (oldest first) has index `Σ s_i V^{k-i}` (oldest token most
//! significant); from `s`, token `v` (law `p_T(v | s)`) leads to `(s_2, …, s_k, v)`.
//! Only full-length contexts are states: the shorter start-of-sequence contexts are
//! transient and do not enter the entropy rate.

use crate::ngram::{entropy_of_log_probs, NgramModel};

/// Most states (`vocab_size^order`) the exact chain is built for.
pub const MAX_STATES: u64 = 2_000_000;
/// Most transition entries (`vocab_size^(order+1)`, stored dense in f64: 128 MiB).
pub const MAX_TRANSITIONS: u64 = 1 << 24;

struct Chain {
    states: usize,
    vocab: usize,
    /// Row-major `states × vocab` transition probabilities at temperature T.
    probs: Vec<f64>,
    /// Entropy (nats) of each row.
    row_entropy: Vec<f64>,
}

impl NgramModel {
    /// Number of chain states, `vocab_size^order`, or an error when it exceeds
    /// [`MAX_STATES`] or the transitions exceed [`MAX_TRANSITIONS`].
    pub fn num_states(&self) -> Result<usize, String> {
        let v = self.vocab_size as u64;
        let too_big = || {
            format!(
                "the exact chain on {}-tuples of a {}-token vocabulary is too large: the limit \
                 is {MAX_STATES} states (vocab_size^order) and {MAX_TRANSITIONS} transitions \
                 (vocab_size^(order+1))",
                self.order, self.vocab_size
            )
        };
        let order = u32::try_from(self.order).map_err(|_| too_big())?;
        let states = v
            .checked_pow(order)
            .filter(|&s| s <= MAX_STATES)
            .ok_or_else(too_big)?;
        states
            .checked_mul(v)
            .filter(|&e| e <= MAX_TRANSITIONS)
            .ok_or_else(too_big)?;
        Ok(states as usize)
    }

    /// The tokens (oldest first) of chain state `index`.
    pub fn state_tokens(&self, index: usize) -> Vec<u32> {
        let v = self.vocab_size;
        let mut out = vec![0u32; self.order];
        let mut i = index;
        for slot in out.iter_mut().rev() {
            *slot = (i % v) as u32;
            i /= v;
        }
        out
    }

    fn chain(&self) -> Result<Chain, String> {
        let states = self.num_states()?;
        let v = self.vocab_size;
        let mut probs = Vec::with_capacity(states * v);
        let mut row_entropy = Vec::with_capacity(states);
        for s in 0..states {
            let lp = self.log_probs(&self.state_tokens(s));
            row_entropy.push(entropy_of_log_probs(&lp));
            probs.extend(lp.into_iter().map(f64::exp));
        }
        Ok(Chain {
            states,
            vocab: v,
            probs,
            row_entropy,
        })
    }

    /// The stationary law `π` of the chain on k-tuples (indexed as in [`Self::state_tokens`])
    /// at the model's temperature, by power iteration on the lazy chain `(I + P)/2` (same
    /// stationary law, aperiodic, so periodic chains converge too), until the L1 change per
    /// step is below 1e-13. The iteration starts from the training frequencies of the
    /// k-token contexts, so a reducible chain (possible only with AddK k = 0) gets the
    /// stationary law reached from the data. `[1.0]` for order 0.
    pub fn stationary(&self) -> Result<Vec<f64>, String> {
        let chain = self.chain()?;
        self.power_iteration(&chain)
    }

    /// Exact entropy rate in nats per token: `H = Σ_s π(s) H(p_T(· | s))`.
    pub fn entropy_rate(&self) -> Result<f64, String> {
        let chain = self.chain()?;
        let pi = self.power_iteration(&chain)?;
        Ok(pi.iter().zip(&chain.row_entropy).map(|(p, h)| p * h).sum())
    }

    fn power_iteration(&self, chain: &Chain) -> Result<Vec<f64>, String> {
        let (n, v) = (chain.states, chain.vocab);
        if self.order == 0 {
            return Ok(vec![1.0]);
        }
        let mut pi = vec![0.0; n];
        let mut mass = 0.0;
        if let Some(level) = self.raw.get(self.order) {
            for (ctx, row) in level.iter() {
                let idx = ctx.iter().fold(0usize, |a, &t| a * v + t as usize);
                pi[idx] += row.total as f64;
                mass += row.total as f64;
            }
        }
        if mass > 0.0 {
            pi.iter_mut().for_each(|x| *x /= mass);
        } else {
            pi.iter_mut().for_each(|x| *x = 1.0 / n as f64);
        }
        let low = n / v; // V^(k-1)
        let entries = (n * v) as u64;
        let max_iter = (4_000_000_000 / entries).clamp(1_000, 1_000_000);
        let tol = 1e-13;
        let mut next = vec![0.0; n];
        let mut diff = f64::INFINITY;
        for _ in 0..max_iter {
            next.iter_mut().for_each(|x| *x = 0.0);
            for (i, &w) in pi.iter().enumerate() {
                if w == 0.0 {
                    continue;
                }
                let base = (i % low) * v;
                let row = &chain.probs[i * v..(i + 1) * v];
                for (dst, &p) in next[base..base + v].iter_mut().zip(row) {
                    *dst += w * p;
                }
            }
            let mut sum = 0.0;
            for (x, &old) in next.iter_mut().zip(&pi) {
                *x = 0.5 * (*x + old);
                sum += *x;
            }
            diff = 0.0;
            for (x, old) in next.iter_mut().zip(pi.iter()) {
                *x /= sum;
                diff += (*x - old).abs();
            }
            std::mem::swap(&mut pi, &mut next);
            if diff < tol {
                return Ok(pi);
            }
        }
        Err(format!(
            "stationary distribution did not converge after {max_iter} power iterations \
             (L1 change per step {diff:e}); the chain mixes too slowly for power iteration"
        ))
    }
}

#[cfg(test)]
mod tests {
    use crate::ngram::{fit, Smoothing};

    #[test]
    fn periodic_chain_converges_with_zero_entropy() {
        // 0 1 0 1 ...: deterministic period-2 chain; plain power iteration would oscillate.
        let seq: Vec<u32> = (0..40).map(|i| i % 2).collect();
        let m = fit(&[seq], 1, 2, Smoothing::AddK { k: 0.0 }, 1.0).unwrap();
        let pi = m.stationary().unwrap();
        assert!(
            (pi[0] - 0.5).abs() < 1e-12 && (pi[1] - 0.5).abs() < 1e-12,
            "{pi:?}"
        );
        assert_eq!(m.entropy_rate().unwrap(), 0.0);
    }

    #[test]
    fn order2_stationary_satisfies_balance() {
        let mut x = 12345u64;
        let seq: Vec<u32> = (0..500)
            .map(|_| {
                x = x
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                ((x >> 33) % 3) as u32
            })
            .collect();
        let m = fit(&[seq], 2, 4, Smoothing::KneserNey { discount: 0.75 }, 1.3).unwrap();
        let pi = m.stationary().unwrap();
        assert_eq!(pi.len(), 16);
        assert!((pi.iter().sum::<f64>() - 1.0).abs() < 1e-12);
        // π P = π, checked with freshly computed rows.
        let mut next = [0.0; 16];
        for (s, &w) in pi.iter().enumerate() {
            let p = m.probs(&m.state_tokens(s));
            for (v, &pv) in p.iter().enumerate() {
                next[(s % 4) * 4 + v] += w * pv;
            }
        }
        for (a, b) in next.iter().zip(&pi) {
            assert!((a - b).abs() < 1e-12, "{a} vs {b}");
        }
        // Entropy rate lies between 0 and ln V and matches Σ π H.
        let h = m.entropy_rate().unwrap();
        let direct: f64 = pi
            .iter()
            .enumerate()
            .map(|(s, w)| w * m.conditional_entropy(&m.state_tokens(s)))
            .sum();
        assert!((h - direct).abs() < 1e-12);
        assert!(h > 0.0 && h < 4f64.ln());
    }

    #[test]
    fn unigram_entropy_rate_is_entropy() {
        let m = fit(&[vec![0, 0, 0, 1]], 0, 2, Smoothing::AddK { k: 0.0 }, 1.0).unwrap();
        let h = -(0.75f64 * 0.75f64.ln() + 0.25 * 0.25f64.ln());
        assert!((m.entropy_rate().unwrap() - h).abs() < 1e-15);
        assert_eq!(m.stationary().unwrap(), vec![1.0]);
    }

    #[test]
    fn refuses_huge_chains() {
        let seq: Vec<u32> = (0..100).collect();
        let m = fit(&[seq], 4, 100, Smoothing::AddK { k: 1.0 }, 1.0).unwrap();
        let e = m.entropy_rate().unwrap_err();
        assert!(e.contains("too large"), "{e}");
    }
}
