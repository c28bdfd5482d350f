//! The log-domain Blahut–Arimoto iteration (`ln Q`, `ln q`): exact for `β = ∞`, and the
//! evaluation every run ends with, the channel's `(D, R)` and Blahut's (1972) lower bound.

use super::{BaOptions, RdPoint, RdProblem};
use crate::util::lse;
use tokit_sdk::{bail, check_cancelled, Result};

impl RdProblem {
    /// Log-weight `−β d'(x,y)` (exact for `β = ∞`: 0 on the row minimum, `−∞` elsewhere).
    pub(super) fn penalty(&self, beta: f64, x: usize, y: usize) -> f64 {
        let ds = self.d[x * self.ny + y] - self.row_min[x];
        if ds == 0.0 {
            0.0
        } else {
            -(beta * ds)
        }
    }

    /// `ln Q(y|x) = ln q(y) − β d'(x,y) − L(x)`; returns `L(x)` per row.
    pub(super) fn channel_from(&self, lq: &[f64], beta: f64, lqq: &mut [f64]) -> Result<Vec<f64>> {
        let ny = self.ny;
        let mut norms = vec![0.0; self.nx];
        let mut w = vec![0.0; ny];
        for x in 0..self.nx {
            for y in 0..ny {
                w[y] = lq[y] + self.penalty(beta, x, y);
            }
            let l = lse(&w);
            if !l.is_finite() {
                bail!(
                    "Blahut–Arimoto degenerate at β = {beta}: every output has zero weight for source letter {x} \
                     (exp(−β d) underflows); use a smaller β"
                );
            }
            norms[x] = l;
            for y in 0..ny {
                lqq[x * ny + y] = w[y] - l;
            }
        }
        Ok(norms)
    }

    /// `ln q(y) = ln Σ_x p(x) Q(y|x)`.
    pub(super) fn output_law(&self, lqq: &[f64]) -> Vec<f64> {
        let mut col = Vec::with_capacity(self.nx);
        (0..self.ny)
            .map(|y| {
                col.clear();
                col.extend(
                    (0..self.nx)
                        .filter(|&x| self.p[x] > 0.0)
                        .map(|x| self.lp[x] + lqq[x * self.ny + y]),
                );
                lse(&col)
            })
            .collect()
    }

    /// `(D, I)` of a log-domain channel with its output law.
    pub(super) fn eval_log(&self, lqq: &[f64], lq: &[f64]) -> (f64, f64) {
        let (mut dist, mut rate) = (0.0, 0.0);
        for x in 0..self.nx {
            if self.p[x] == 0.0 {
                continue;
            }
            for y in 0..self.ny {
                let l = lqq[x * self.ny + y];
                if l > f64::NEG_INFINITY {
                    let c = l.exp();
                    dist += self.p[x] * c * self.d[x * self.ny + y];
                    rate += self.p[x] * c * (l - lq[y]);
                }
            }
        }
        (dist, rate.max(0.0))
    }

    /// Blahut's lower bound on `R(dist)` from any output law `q` (log) and slope `β`:
    /// `R(D) ≥ −β(D − D_min) − Σ_x p(x) L(x) − max_y ln c(y)` with
    /// `L(x) = ln Σ_y q(y) e^{−β d'(x,y)}` and `c(y) = Σ_x p(x) e^{−L(x) − β d'(x,y)}`.
    pub fn lower_bound(&self, beta: f64, lq: &[f64], dist: f64) -> f64 {
        let ny = self.ny;
        let mut w = vec![0.0; ny];
        let norms: Vec<f64> = (0..self.nx)
            .map(|x| {
                for (y, wy) in w.iter_mut().enumerate() {
                    *wy = lq[y] + self.penalty(beta, x, y);
                }
                lse(&w)
            })
            .collect();
        let mut col = Vec::with_capacity(self.nx);
        let mut max_c = f64::NEG_INFINITY;
        for y in 0..ny {
            col.clear();
            col.extend(
                (0..self.nx)
                    .filter(|&x| self.p[x] > 0.0)
                    .map(|x| self.lp[x] - norms[x] + self.penalty(beta, x, y)),
            );
            max_c = max_c.max(lse(&col));
        }
        let sum_pl: f64 = (0..self.nx)
            .filter(|&x| self.p[x] > 0.0)
            .map(|x| self.p[x] * norms[x])
            .sum();
        let lin = if beta.is_finite() {
            -beta * (dist - self.d_min)
        } else {
            0.0
        };
        let b = lin - sum_pl - max_c;
        if b.is_finite() {
            b
        } else {
            0.0
        }
    }
    /// [`Self::run_from`] in the log domain.
    pub fn run_log(&self, beta: f64, lq0: &[f64], opts: &BaOptions) -> Result<RdPoint> {
        let mut lq = lq0.to_vec();
        let mut lqq = vec![0.0; self.nx * self.ny];
        let mut prev: Option<(f64, f64)> = None;
        let (mut converged, mut iterations) = (false, 0);
        for it in 1..=opts.max_iter {
            iterations = it;
            if it % 1024 == 0 {
                check_cancelled()?;
            }
            self.channel_from(&lq, beta, &mut lqq)?;
            lq = self.output_law(&lqq);
            let cur = self.eval_log(&lqq, &lq);
            if let Some((d0, r0)) = prev {
                if (cur.0 - d0).abs() < opts.tol && (cur.1 - r0).abs() < opts.tol {
                    converged = true;
                    break;
                }
            }
            prev = Some(cur);
        }
        self.finish(beta, lqq, lq, iterations, converged)
    }

    /// The point of a finished run: `(D, R)` of the log channel, Blahut's bound.
    pub(super) fn finish(
        &self,
        beta: f64,
        lqq: Vec<f64>,
        lq: Vec<f64>,
        iterations: usize,
        converged: bool,
    ) -> Result<RdPoint> {
        let (distortion, rate) = self.eval_log(&lqq, &lq);
        if !distortion.is_finite() || !rate.is_finite() {
            bail!("Blahut–Arimoto produced a non-finite result at β = {beta} (distortion {distortion}, rate {rate})");
        }
        let lower_bound = self.lower_bound(beta, &lq, distortion).min(rate);
        Ok(RdPoint {
            beta,
            distortion,
            rate,
            channel: lqq.iter().map(|l| l.exp()).collect(),
            output: lq.iter().map(|l| l.exp()).collect(),
            iterations,
            converged,
            lower_bound,
            time_shared: false,
            starts_spread: 0.0,
            from_restart: false,
            starts: 1,
        })
    }
}
