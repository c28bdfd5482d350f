//! The Blahut–Arimoto iteration for large alphabets: exponential domain, shaped as
//! matrix–vector products over a precomputed kernel, rows split over threads.
//!
//! With `A[x, y] = e^{−β d'(x, y)}` (`d'` the distortion minus its row minimum, so every
//! row holds a 1 and nothing overflows) and `B = A ⊙ d'`, one iteration from the output
//! law `q` is
//!
//! ```text
//! c = A q,  b = B q                      (the channel Q(y|x) = A[x, y] q(y) / c(x))
//! q'(y) = q(y) Σ_x p(x) A[x, y] / c(x)   (q' = q ⊙ Aᵀ (p / c))
//! D = D_min + Σ_x p(x) b(x) / c(x)
//! R = −β (D − D_min) − Σ_x p(x) ln c(x) + Σ_y q'(y) ln(q(y) / q'(y))
//! ```
//!
//! the same update as the log-domain solver ([`super::log_domain`]), with `(D, R)` of
//! the channel against its new output law, as there. Each thread takes a block of rows and
//! reads each row of `A` twice while it is in cache (the dot product for `c`, then the
//! axpy into its share of `Aᵀ (p / c)`), so the whole iteration is three streaming passes
//! over memory. `tools/ba_numpy.py` runs the identical iteration in NumPy for the benchmark.
//! Entries of `A` that underflow (β d' > 745) are below 1e-323 of a row's largest and do
//! not change any reported digit.

use super::{BaOptions, RdPoint, RdProblem};
use crate::util::ln0;
use tokit_sdk::{bail, check_cancelled, Result};

/// Problems at least this large (`nx · ny`) take this path.
pub const DENSE_MIN: usize = 1 << 16;

/// The kernel of one slope.
pub struct Kernel<'p> {
    prob: &'p RdProblem,
    beta: f64,
    a: Vec<f64>,
    b: Vec<f64>,
    threads: usize,
}

/// One iteration's results.
struct Step {
    q: Vec<f64>,
    distortion: f64,
    rate: f64,
}

impl<'p> Kernel<'p> {
    pub fn new(prob: &'p RdProblem, beta: f64, dshift: &[f64]) -> Kernel<'p> {
        let a: Vec<f64> = dshift
            .iter()
            .map(|&d| if d == 0.0 { 1.0 } else { (-beta * d).exp() })
            .collect();
        let b = a.iter().zip(dshift).map(|(a, d)| a * d).collect();
        let threads = std::thread::available_parallelism()
            .map_or(1, |n| n.get())
            .min(prob.nx.max(1));
        Kernel {
            prob,
            beta,
            a,
            b,
            threads,
        }
    }

    /// One BA step from output law `q` (linear domain).
    fn step(&self, q: &[f64]) -> Result<Step> {
        let (nx, ny) = (self.prob.nx, self.prob.ny);
        let p = &self.prob.p;
        let rows = nx.div_ceil(self.threads);
        // Per thread: Σ p b / c, Σ p ln c, and its share of Aᵀ (p / c).
        let parts: Vec<(f64, f64, Vec<f64>)> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..nx)
                .step_by(rows)
                .map(|x0| {
                    s.spawn(move || {
                        let (mut dsum, mut lsum) = (0.0, 0.0);
                        let mut v = vec![0.0; ny];
                        let x1 = (x0 + rows).min(nx);
                        for (x, &px) in p.iter().enumerate().take(x1).skip(x0) {
                            if px == 0.0 {
                                continue;
                            }
                            let ra = &self.a[x * ny..(x + 1) * ny];
                            let rb = &self.b[x * ny..(x + 1) * ny];
                            let (mut c, mut bq) = (0.0, 0.0);
                            for y in 0..ny {
                                c += ra[y] * q[y];
                                bq += rb[y] * q[y];
                            }
                            dsum += px * bq / c;
                            lsum += px * c.ln();
                            let w = px / c;
                            for (vy, &ay) in v.iter_mut().zip(ra) {
                                *vy += w * ay;
                            }
                        }
                        (dsum, lsum, v)
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().expect("BA worker"))
                .collect()
        });
        let (mut dsum, mut lsum) = (0.0, 0.0);
        let mut v = vec![0.0; ny];
        for (d, l, part) in parts {
            dsum += d;
            lsum += l;
            for (a, b) in v.iter_mut().zip(&part) {
                *a += b;
            }
        }
        if !(dsum.is_finite() && lsum.is_finite()) {
            bail!("Blahut–Arimoto degenerate at β = {}: a source letter lost every output (use a smaller β)", self.beta);
        }
        let qn: Vec<f64> = q.iter().zip(&v).map(|(q, v)| q * v).collect();
        let cross: f64 = q
            .iter()
            .zip(&qn)
            .filter(|(_, &n)| n > 0.0)
            .map(|(&o, &n)| n * (o / n).ln())
            .sum();
        Ok(Step {
            q: qn,
            distortion: self.prob.d_min + dsum,
            rate: (-self.beta * dsum - lsum + cross).max(0.0),
        })
    }

    /// Iterate from `q0` until rate and distortion change by less than `tol`; returns the
    /// final output law (linear), the iteration count and whether it converged.
    pub fn run(&self, q0: Vec<f64>, tol: f64, max_iter: usize) -> Result<(Vec<f64>, usize, bool)> {
        let mut q = q0;
        let mut prev: Option<(f64, f64)> = None;
        for it in 1..=max_iter {
            if it % 64 == 0 {
                check_cancelled()?;
            }
            let s = self.step(&q)?;
            q = s.q;
            if let Some((d0, r0)) = prev {
                if (s.distortion - d0).abs() < tol && (s.rate - r0).abs() < tol {
                    return Ok((q, it, true));
                }
            }
            prev = Some((s.distortion, s.rate));
        }
        Ok((q, max_iter, false))
    }
}

impl RdProblem {
    /// [`Self::run_from`] on the dense kernel.
    pub fn run_dense(&self, beta: f64, lq0: &[f64], opts: &BaOptions) -> Result<RdPoint> {
        let kernel = Kernel::new(self, beta, &self.dshift);
        let q0 = lq0.iter().map(|l| l.exp()).collect();
        let (q, iterations, converged) = kernel.run(q0, opts.tol, opts.max_iter)?;
        let lq: Vec<f64> = q.iter().map(|&v| ln0(v)).collect();
        // The reported channel, (D, R) and bound come from the log-domain evaluation of
        // the final output law, as in the log-domain run.
        let mut lqq = vec![0.0; self.nx * self.ny];
        self.channel_from(&lq, beta, &mut lqq)?;
        let lq = self.output_law(&lqq);
        self.finish(beta, lqq, lq, iterations, converged)
    }
}

#[cfg(test)]
mod tests {
    use crate::blahut_arimoto::{BaOptions, RdProblem};

    /// The dense kernel and the log-domain iteration agree on a 120 × 120 problem.
    #[test]
    fn dense_and_log_domain_iterations_agree() {
        let n: usize = 120;
        let p: Vec<f64> = (0..n).map(|x| (x % 7 + 1) as f64).collect();
        let s: f64 = p.iter().sum();
        let p: Vec<f64> = p.iter().map(|v| v / s).collect();
        let d: Vec<f64> = (0..n * n)
            .map(|k| {
                (((k / n) * 31 + (k % n) * 17) % 64 + (k / n).abs_diff(k % n) % 64) as f64 / 64.0
            })
            .collect();
        let prob = RdProblem::new(&p, &d, n, 1e-9).unwrap();
        let opts = BaOptions {
            tol: 1e-11,
            max_iter: 20_000,
            restarts: 0,
            ..Default::default()
        };
        let lq0 = vec![-(n as f64).ln(); n];
        for beta in [4.0, 16.0] {
            let dense = prob.run_dense(beta, &lq0, &opts).unwrap();
            let log = prob.run_log(beta, &lq0, &opts).unwrap();
            assert!(
                dense.converged && log.converged,
                "β {beta}: {} / {} iterations",
                dense.iterations,
                log.iterations
            );
            assert!(
                (dense.rate - log.rate).abs() < 1e-9,
                "β {beta}: R {} vs {}",
                dense.rate,
                log.rate
            );
            assert!(
                (dense.distortion - log.distortion).abs() < 1e-9,
                "β {beta}: D {} vs {}",
                dense.distortion,
                log.distortion
            );
            // The same iteration: the counts agree to within the last step's rounding.
            assert!(
                dense.iterations.abs_diff(log.iterations) <= 1,
                "{} vs {}",
                dense.iterations,
                log.iterations
            );
        }
    }
}
