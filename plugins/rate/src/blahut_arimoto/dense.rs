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

    /// Iterate from `q0` until rate and distortion change by less than `tol` between two
    /// consecutive BA steps; returns the final output law (linear), the number of BA steps
    /// and whether it converged. `accelerate`: SQUAREM extrapolation between pairs of steps
    /// ([`Kernel::squarem`]).
    pub fn run(
        &self,
        q0: Vec<f64>,
        tol: f64,
        max_iter: usize,
        accelerate: bool,
    ) -> Result<(Vec<f64>, usize, bool)> {
        if accelerate {
            return self.squarem(q0, tol, max_iter);
        }
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

    /// BA accelerated by squared extrapolation (SQUAREM, scheme S3 of Varadhan & Roland,
    /// Scand. J. Statist. 35, 2008): from `q0`, two BA steps `q1 = F(q0)`, `q2 = F(q1)`,
    /// `r = q1 − q0`, `v = q2 − 2 q1 + q0`, `α = −‖r‖ / ‖v‖` (at most −1), and the next
    /// point `q0 − 2α r + α² v` (`α = −1` gives `q2`, the plain double step). The step is
    /// halved towards `α = −1` while the point leaves the simplex, and a point whose next
    /// BA step has a larger objective `R + βD` than `q2`'s is replaced by `q2`, so the
    /// iteration keeps the plain one's fixed point and never does worse per pair of steps.
    /// Convergence is judged as in the plain run, between the two consecutive BA steps of
    /// a pair; the count returned is of BA steps (each costs one plain iteration).
    fn squarem(&self, q0: Vec<f64>, tol: f64, max_iter: usize) -> Result<(Vec<f64>, usize, bool)> {
        let objective = |s: &Step| s.rate + self.beta * s.distortion;
        let mut q = q0;
        let mut it = 0;
        // The plain double step of the last extrapolation and its objective.
        let mut fallback: Option<(Vec<f64>, f64)> = None;
        loop {
            if it + 2 > max_iter {
                let (q, it) = if it < max_iter {
                    (self.step(&q)?.q, it + 1)
                } else {
                    (q, it)
                };
                return Ok((q, it, false));
            }
            if it % 64 < 2 {
                check_cancelled()?;
            }
            let mut s1 = self.step(&q)?;
            it += 1;
            if let Some((q2, l2)) = fallback.take() {
                if objective(&s1) > l2 + 1e-13 * l2.abs() {
                    // The extrapolation overshot: continue from the plain double step.
                    q = q2;
                    if it + 2 > max_iter {
                        continue;
                    }
                    s1 = self.step(&q)?;
                    it += 1;
                }
            }
            let s2 = self.step(&s1.q)?;
            it += 1;
            if (s2.distortion - s1.distortion).abs() < tol && (s2.rate - s1.rate).abs() < tol {
                return Ok((s2.q, it, true));
            }
            let (mut rr, mut vv) = (0.0, 0.0);
            for ((&a, &b), &c) in q.iter().zip(&s1.q).zip(&s2.q) {
                let (r, v) = (b - a, c - 2.0 * b + a);
                rr += r * r;
                vv += v * v;
            }
            let mut alpha = if vv > 0.0 { -(rr / vv).sqrt() } else { -1.0 };
            alpha = alpha.min(-1.0);
            let mut next = vec![0.0; q.len()];
            loop {
                let mut ok = true;
                for (((n, &a), &b), &c) in next.iter_mut().zip(&q).zip(&s1.q).zip(&s2.q) {
                    let (r, v) = (b - a, c - 2.0 * b + a);
                    *n = a - 2.0 * alpha * r + alpha * alpha * v;
                    ok &= *n >= 0.0;
                }
                if ok || alpha >= -1.0 {
                    break;
                }
                alpha = ((alpha - 1.0) / 2.0).min(-1.0);
                if alpha > -1.0 - 1e-3 {
                    alpha = -1.0;
                }
            }
            if alpha == -1.0 {
                next.copy_from_slice(&s2.q);
            } else {
                let total: f64 = next.iter().sum();
                for n in next.iter_mut() {
                    *n /= total;
                }
                fallback = Some((s2.q.clone(), objective(&s2)));
            }
            q = next;
        }
    }
}

impl RdProblem {
    /// [`Self::run_from`] on the dense kernel.
    pub fn run_dense(&self, beta: f64, lq0: &[f64], opts: &BaOptions) -> Result<RdPoint> {
        let kernel = Kernel::new(self, beta, &self.dshift);
        let q0 = lq0.iter().map(|l| l.exp()).collect();
        let (q, iterations, converged) =
            kernel.run(q0, opts.tol, opts.max_iter, opts.accelerate)?;
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

    /// The `tools/ba_numpy.py` problem of side `n`.
    fn bench_problem(n: usize) -> RdProblem {
        let p: Vec<f64> = (0..n).map(|x| (x % 7 + 1) as f64).collect();
        let s: f64 = p.iter().sum();
        let p: Vec<f64> = p.iter().map(|v| v / s).collect();
        let d: Vec<f64> = (0..n * n)
            .map(|k| {
                (((k / n) * 31 + (k % n) * 17) % 64 + (k / n).abs_diff(k % n) % 64) as f64 / 64.0
            })
            .collect();
        RdProblem::new(&p, &d, n, 1e-9).unwrap()
    }

    /// SQUAREM converges to the plain iteration's fixed point in fewer BA steps.
    #[test]
    fn squarem_keeps_the_fixed_point_with_fewer_steps() {
        let cases = [
            (bench_problem(120), 4.0),
            (bench_problem(120), 16.0),
            (bench_problem(300), 8.0),
            (bench_problem(1000), 8.0),
        ];
        for (prob, beta) in cases {
            let lq0 = vec![-(prob.ny as f64).ln(); prob.ny];
            let tight = BaOptions {
                tol: 1e-13,
                max_iter: 20_000,
                restarts: 0,
                ..Default::default()
            };
            let plain = prob.run_dense(beta, &lq0, &tight).unwrap();
            let fast = prob
                .run_dense(
                    beta,
                    &lq0,
                    &BaOptions {
                        accelerate: true,
                        ..tight.clone()
                    },
                )
                .unwrap();
            let what = format!("{}x{} β {beta}", prob.nx, prob.ny);
            assert!(plain.converged && fast.converged, "{what}");
            assert!(
                (fast.rate - plain.rate).abs() < 1e-10,
                "{what}: R {} vs {}",
                fast.rate,
                plain.rate
            );
            assert!(
                (fast.distortion - plain.distortion).abs() < 1e-10,
                "{what}: D {} vs {}",
                fast.distortion,
                plain.distortion
            );
            assert!(
                fast.iterations < plain.iterations,
                "{what}: {} vs {} steps",
                fast.iterations,
                plain.iterations
            );
            // The stopping rule and the cap are honoured.
            let capped = prob
                .run_dense(
                    beta,
                    &lq0,
                    &BaOptions {
                        max_iter: 7,
                        accelerate: true,
                        ..tight.clone()
                    },
                )
                .unwrap();
            assert_eq!((capped.iterations, capped.converged), (7, false), "{what}");
        }
    }
}
