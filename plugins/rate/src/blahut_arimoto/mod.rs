//! The classic Blahut–Arimoto algorithm for the rate–distortion function of a discrete
//! memoryless source (`docs/measures.md` M3, estimator 1), plus the closed forms used as test
//! oracles (binary/Hamming, Gaussian/squared error, log-loss).
//!
//! At slope `β > 0` BA minimises the Lagrangian `I(X;Y) + β E d(X,Y)` over test channels
//! `Q(y|x)` by alternating
//!
//! * `Q(y|x) ∝ q(y) e^{−β d(x,y)}` and
//! * `q(y) = Σ_x p(x) Q(y|x)`,
//!
//! all in the **log domain** (`ln Q`, `ln q`), with the distortion shifted per source letter
//! by its row minimum (`d'(x,y) = d(x,y) − min_y d(x,y)`, which leaves `Q` unchanged) so that
//! `e^{−β d'}` is 1 for at least one output of every row and nothing underflows to an empty
//! row however large `β` is. `β = +∞` is allowed: it solves the support-restricted problem
//! whose value is `R(D_min)`.
//!
//! Stopping rule: both the rate and the distortion change by less than `tol` (default
//! 1e-12) between iterations, or `max_iter`. Every run also reports Blahut's lower bound on
//! `R(D)` at the returned distortion (a certificate: `R(D) ∈ [lower_bound, rate]`).
//!
//! Restarts: the uniform output law plus `restarts` random points of the simplex from a
//! seeded SplitMix64; the run with the smallest `R + βD` is kept. (The problem is convex in
//! `Q`, so restarts only guard against slow or stalled runs; how far apart the starts ended
//! is reported as `restarts_spread`.)
//!
//! `R(D)` at a target `D` is found by bisection on `ln β` (`D(β)` is non-increasing); when the
//! curve has a straight segment (a jump of `D(β)` at one slope) the two end channels are
//! time-shared, which is optimal on a straight segment.
//!
//! Rates are in nats; distortions are in the units of the distortion matrix.

mod aligned;
mod dense;
mod log_domain;
#[cfg(test)]
mod tests;

use crate::util::{check_matrix, check_pmf, ln0, SplitMix64};
use tokit_sdk::{bail, Result};

/// Iteration controls shared by the BA-type solvers.
#[derive(Clone, Debug)]
pub struct BaOptions {
    /// Stop when rate and distortion both change by less than this.
    pub tol: f64,
    /// Iteration cap per run (the result says whether it converged).
    pub max_iter: usize,
    /// Random-simplex restarts besides the uniform start.
    pub restarts: usize,
    /// Seed of the restarts.
    pub seed: u64,
    /// SQUAREM extrapolation in the dense kernel (problems of at least
    /// `dense::DENSE_MIN` cells at finite β); the log-domain runs are plain.
    pub accelerate: bool,
}

impl Default for BaOptions {
    fn default() -> BaOptions {
        BaOptions {
            tol: 1e-12,
            max_iter: 100_000,
            restarts: 3,
            seed: 0,
            accelerate: false,
        }
    }
}

impl BaOptions {
    /// Reject nonsense before iterating.
    pub fn check(&self) -> Result<()> {
        if !(self.tol > 0.0 && self.tol.is_finite()) {
            bail!(
                "parameter `tol`: expected a positive number, found {}",
                self.tol
            );
        }
        if self.max_iter == 0 {
            bail!("parameter `max_iter`: expected at least 1");
        }
        Ok(())
    }
}

/// A discrete source with a distortion matrix.
#[derive(Clone, Debug)]
pub struct RdProblem {
    /// Source law `p(x)` (normalised).
    pub p: Vec<f64>,
    /// Distortion `d(x, y)`, row-major `nx × ny`.
    pub d: Vec<f64>,
    pub nx: usize,
    pub ny: usize,
    lp: Vec<f64>,
    /// `min_y d(x,y)`: the iterations use `d'(x,y) = d(x,y) − min_y d(x,y)`.
    row_min: Vec<f64>,
    /// `D_min = Σ_x p(x) min_y d(x,y)`: the smallest achievable distortion.
    pub d_min: f64,
    /// `D_max = min_y Σ_x p(x) d(x,y)`: the distortion of the best constant output (rate 0).
    pub d_max: f64,
    /// Output letter achieving `D_max`.
    pub y_star: usize,
    /// Largest spread `max_y d − min_y d` over source letters with `p(x) > 0` (sets the
    /// scale of `β`).
    pub spread: f64,
}

/// `(min, max)` of finite numbers, in 8 lanes so that it vectorizes (min and max do not
/// depend on the order).
fn min_max(v: &[f64]) -> (f64, f64) {
    let (chunks, tail) = v.as_chunks::<8>();
    let (mut lo, mut hi) = ([f64::INFINITY; 8], [f64::NEG_INFINITY; 8]);
    for c in chunks {
        for k in 0..8 {
            lo[k] = lo[k].min(c[k]);
            hi[k] = hi[k].max(c[k]);
        }
    }
    let lo = tail
        .iter()
        .chain(&lo)
        .copied()
        .fold(f64::INFINITY, f64::min);
    let hi = tail
        .iter()
        .chain(&hi)
        .copied()
        .fold(f64::NEG_INFINITY, f64::max);
    (lo, hi)
}

/// One point of the rate–distortion curve with its test channel.
#[derive(Clone, Debug)]
pub struct RdPoint {
    /// Slope parameter (`+∞` at `D_min`, `0` where the distortion constraint is inactive).
    pub beta: f64,
    /// `E d(X, Y)` of the returned channel.
    pub distortion: f64,
    /// `I(X; Y)` of the returned channel (nats).
    pub rate: f64,
    /// Test channel `Q(y|x)`, row-major `nx × ny`.
    pub channel: Vec<f64>,
    /// Output law `q(y) = Σ_x p(x) Q(y|x)`.
    pub output: Vec<f64>,
    /// Iterations of the kept run.
    pub iterations: usize,
    pub converged: bool,
    /// Blahut's lower bound on `R(distortion)` (nats).
    pub lower_bound: f64,
    /// The point time-shares two channels (a straight segment of the curve).
    pub time_shared: bool,
    /// How far apart the starts ended: the largest minus the smallest `R + βD` over the
    /// uniform start and the `restarts` random ones (0 for one start). The problem is
    /// convex, so this measures convergence, not local optima.
    pub starts_spread: f64,
    /// The kept run started from one of the random restarts (not the uniform or warm start).
    pub from_restart: bool,
    /// Runs made (uniform, warm and random starts; 1 for a point not found by `solve`).
    pub starts: usize,
}

impl RdPoint {
    /// `R + β D` (just `R` when `β` is 0 or infinite).
    pub fn objective(&self) -> f64 {
        if self.beta.is_finite() && self.beta > 0.0 {
            self.rate + self.beta * self.distortion
        } else {
            self.rate
        }
    }
}

/// `(D, I(X;Y), q)` of a channel, computed directly in the linear domain. Used for
/// time-shared channels and as an independent check.
pub fn evaluate(p: &[f64], d: &[f64], channel: &[f64], ny: usize) -> (f64, f64, Vec<f64>) {
    let mut q = vec![0.0; ny];
    for (x, &px) in p.iter().enumerate() {
        for y in 0..ny {
            q[y] += px * channel[x * ny + y];
        }
    }
    let (mut dist, mut rate) = (0.0, 0.0);
    for (x, &px) in p.iter().enumerate() {
        if px == 0.0 {
            continue;
        }
        for y in 0..ny {
            let c = channel[x * ny + y];
            if c > 0.0 {
                dist += px * c * d[x * ny + y];
                rate += px * c * (c / q[y]).ln();
            }
        }
    }
    (dist, rate.max(0.0), q)
}

impl RdProblem {
    /// A problem from a source law (checked against `sum_tol`) and a row-major
    /// `p.len() × ny` distortion matrix (finite, non-negative; taken without a copy when
    /// passed as a `Vec`).
    pub fn new(p: &[f64], d: impl Into<Vec<f64>>, ny: usize, sum_tol: f64) -> Result<RdProblem> {
        let d = d.into();
        let p = check_pmf("source", p, sum_tol)?;
        let nx = p.len();
        if ny == 0 || d.len() != nx * ny {
            bail!(
                "distortion: expected a {nx} × {ny} matrix (one row per source letter), found {} entries",
                d.len()
            );
        }
        // On large matrices the check runs on a second thread beside the pass that takes
        // the row minima and the column sums `Σ_x p(x) d(x, y)` (each reads the whole
        // matrix once; that pass's results are used only when the check passes). The
        // column sums go row by row: the same additions, in the same order, as summing
        // each column down, without the strided reads.
        let check = || check_matrix("distortion", &d, nx, ny, true);
        let beside = d.len() >= dense::DENSE_MIN;
        if !beside {
            check()?;
        }
        let mut row_min = Vec::with_capacity(nx);
        let (mut d_min, mut spread) = (0.0, 0.0f64);
        let mut col = vec![0.0; ny];
        std::thread::scope(|s| {
            let check = beside.then(|| s.spawn(check));
            for (row, &px) in d.chunks_exact(ny).zip(&p) {
                let (lo, hi) = min_max(row);
                row_min.push(lo);
                d_min += px * lo;
                if px > 0.0 {
                    spread = spread.max(hi - lo);
                }
                for (e, &v) in col.iter_mut().zip(row) {
                    *e += px * v;
                }
            }
            check.map_or(Ok(()), |c| c.join().expect("distortion check"))
        })?;
        let (mut d_max, mut y_star) = (f64::INFINITY, 0);
        for (y, &e) in col.iter().enumerate() {
            if e < d_max {
                d_max = e;
                y_star = y;
            }
        }
        let lp = p.iter().map(|&v| ln0(v)).collect();
        Ok(RdProblem {
            p,
            d,
            nx,
            ny,
            lp,
            row_min,
            d_min,
            d_max,
            y_star,
            spread,
        })
    }

    fn check_beta(beta: f64) -> Result<()> {
        if beta.is_nan() || beta <= 0.0 {
            bail!("beta: expected a positive slope, found {beta}");
        }
        Ok(())
    }

    /// True when the zero-rate point (constant output `y_star`) is optimal at slope `β`:
    /// Blahut's bound with `q = δ_{y*}` certifies it iff
    /// `max_y Σ_x p(x) e^{β(d(x,y*) − d(x,y))} ≤ 1`. BA converges only slowly to such points
    /// (the unused outputs decay like `(1 − cβ)^k`), so they are answered directly.
    pub fn zero_rate_optimal(&self, beta: f64) -> bool {
        if !(beta.is_finite() && beta > 0.0) {
            return false;
        }
        let ny = self.ny;
        (0..ny).all(|y| {
            let c: f64 = (0..self.nx)
                .filter(|&x| self.p[x] > 0.0)
                .map(|x| {
                    self.p[x] * (beta * (self.d[x * ny + self.y_star] - self.d[x * ny + y])).exp()
                })
                .sum();
            c <= 1.0 + 1e-15
        })
    }

    /// Whether finite-β runs take the dense kernel (`dense.rs`, where `acceleration`
    /// applies): problems of at least `DENSE_MIN` cells.
    pub fn is_dense(&self) -> bool {
        self.nx * self.ny >= dense::DENSE_MIN
    }

    /// One BA run from the log output law `lq0`: the dense exponential-domain kernel
    /// (`dense.rs`) for large problems at finite β, else the log domain.
    pub fn run_from(&self, beta: f64, lq0: &[f64], opts: &BaOptions) -> Result<RdPoint> {
        Self::check_beta(beta)?;
        opts.check()?;
        if self.zero_rate_optimal(beta) {
            return Ok(RdPoint {
                beta,
                ..self.zero_rate_point()
            });
        }
        if beta.is_finite() && self.is_dense() {
            self.run_dense(beta, lq0, opts)
        } else {
            self.run_log(beta, lq0, opts)
        }
    }

    /// The uniform start plus `opts.restarts` random-simplex starts (and `warm`, if any);
    /// keeps the run with the smallest `R + βD`.
    pub fn solve(&self, beta: f64, warm: Option<&[f64]>, opts: &BaOptions) -> Result<RdPoint> {
        let mut starts: Vec<Vec<f64>> = vec![vec![-(self.ny as f64).ln(); self.ny]];
        if let Some(w) = warm {
            if w.len() == self.ny && w.iter().all(|&v| v > 0.0) {
                starts.push(w.iter().map(|v| v.ln()).collect());
            }
        }
        let fixed = starts.len();
        let mut rng = SplitMix64::new(opts.seed);
        for _ in 0..opts.restarts {
            starts.push(rng.simplex(self.ny).iter().map(|v| v.ln()).collect());
        }
        let mut best: Option<RdPoint> = None;
        let (mut lo, mut hi) = (f64::INFINITY, f64::NEG_INFINITY);
        for (i, s) in starts.iter().enumerate() {
            let mut pt = self.run_from(beta, s, opts)?;
            pt.from_restart = i >= fixed;
            lo = lo.min(pt.objective());
            hi = hi.max(pt.objective());
            if best
                .as_ref()
                .is_none_or(|b| pt.objective() < b.objective() - 1e-15)
            {
                best = Some(pt);
            }
        }
        let mut best = best.ok_or_else(|| tokit_sdk::Error::msg("no start"))?;
        best.starts_spread = hi - lo;
        best.starts = starts.len();
        Ok(best)
    }

    /// BA at each slope of `betas` (warm-starting each from the previous point).
    pub fn sweep(&self, betas: &[f64], opts: &BaOptions) -> Result<Vec<RdPoint>> {
        let mut out: Vec<RdPoint> = Vec::with_capacity(betas.len());
        for &b in betas {
            let warm = out.last().map(|p| p.output.clone());
            out.push(self.solve(b, warm.as_deref(), opts)?);
        }
        Ok(out)
    }

    /// A default slope grid: `num` points geometric in `[0.01, 100] / spread`.
    pub fn default_betas(&self, num: usize) -> Vec<f64> {
        let s = if self.spread > 0.0 { self.spread } else { 1.0 };
        if num <= 1 {
            return vec![1.0 / s];
        }
        (0..num)
            .map(|k| 10f64.powf(-2.0 + 4.0 * k as f64 / (num - 1) as f64) / s)
            .collect()
    }

    /// The zero-rate point: every source letter mapped to `y_star` (distortion `D_max`).
    pub fn zero_rate_point(&self) -> RdPoint {
        let mut channel = vec![0.0; self.nx * self.ny];
        for x in 0..self.nx {
            channel[x * self.ny + self.y_star] = 1.0;
        }
        let (distortion, rate, output) = evaluate(&self.p, &self.d, &channel, self.ny);
        RdPoint {
            beta: 0.0,
            distortion,
            rate,
            channel,
            output,
            iterations: 0,
            converged: true,
            lower_bound: 0.0,
            time_shared: false,
            starts_spread: 0.0,
            from_restart: false,
            starts: 1,
        }
    }

    /// Time-share two channels so that the distortion equals `target`
    /// (`lo.distortion ≥ target ≥ hi.distortion`).
    fn time_share(&self, lo: &RdPoint, hi: &RdPoint, target: f64) -> RdPoint {
        let span = lo.distortion - hi.distortion;
        let theta = if span > 0.0 {
            ((target - hi.distortion) / span).clamp(0.0, 1.0)
        } else {
            0.5
        };
        let channel: Vec<f64> = lo
            .channel
            .iter()
            .zip(&hi.channel)
            .map(|(a, b)| theta * a + (1.0 - theta) * b)
            .collect();
        let (distortion, rate, output) = evaluate(&self.p, &self.d, &channel, self.ny);
        let beta = match (lo.beta > 0.0, hi.beta.is_finite()) {
            (true, true) => (lo.beta * hi.beta).sqrt(),
            (true, false) => lo.beta,
            (false, _) => hi.beta,
        };
        let lq: Vec<f64> = output.iter().map(|&v| ln0(v)).collect();
        let lower_bound = if beta > 0.0 {
            self.lower_bound(beta, &lq, distortion).min(rate)
        } else {
            0.0
        };
        RdPoint {
            beta,
            distortion,
            rate,
            channel,
            output,
            iterations: lo.iterations + hi.iterations,
            converged: lo.converged && hi.converged,
            lower_bound,
            time_shared: true,
            starts_spread: lo.starts_spread.max(hi.starts_spread),
            from_restart: lo.from_restart || hi.from_restart,
            starts: lo.starts + hi.starts,
        }
    }

    /// `R(target)` with its test channel, by bisection on `ln β`.
    pub fn at_distortion(&self, target: f64, opts: &BaOptions) -> Result<RdPoint> {
        if !target.is_finite() {
            bail!("target_distortion: expected a finite number, found {target}");
        }
        opts.check()?;
        let eps = 1e-12 * (1.0 + self.d_max.abs());
        if target < self.d_min - eps {
            bail!(
                "target_distortion {target} is below the smallest achievable distortion D_min = {} (infeasible)",
                self.d_min
            );
        }
        if target >= self.d_max {
            return Ok(self.zero_rate_point());
        }
        if target <= self.d_min + eps {
            return self.solve(f64::INFINITY, None, opts);
        }
        // Here D_min < target < D_max, so spread > 0.
        let s = self.spread;
        let quick = BaOptions {
            restarts: 0,
            ..opts.clone()
        };
        let dtol = 1e-10 * s.max(1.0);
        let step = |beta: f64, warm: Option<&RdPoint>| {
            self.solve(beta, warm.map(|w| w.output.as_slice()), &quick)
        };
        // Bracket: lo has D ≥ target, hi has D ≤ target.
        let mut b = 1.0 / s;
        let first = step(b, None)?;
        let (mut lo, mut hi);
        if first.distortion > target {
            lo = first;
            loop {
                b *= 4.0;
                if b > 1e12 / s {
                    hi = self.solve(f64::INFINITY, None, opts)?;
                    return Ok(self.time_share(&lo, &hi, target));
                }
                let pt = step(b, Some(&lo))?;
                if pt.distortion <= target {
                    hi = pt;
                    break;
                }
                lo = pt;
            }
        } else {
            hi = first;
            loop {
                b /= 4.0;
                if b < 1e-12 / s {
                    lo = self.zero_rate_point();
                    return Ok(self.time_share(&lo, &hi, target));
                }
                let pt = step(b, Some(&hi))?;
                if pt.distortion >= target {
                    lo = pt;
                    break;
                }
                hi = pt;
            }
        }
        for _ in 0..200 {
            for p in [&lo, &hi] {
                if (p.distortion - target).abs() <= dtol {
                    return self.refine(p, opts);
                }
            }
            if hi.beta / lo.beta - 1.0 < 1e-14 {
                break;
            }
            let mid = (lo.beta * hi.beta).sqrt();
            let warm = if target - hi.distortion < lo.distortion - target {
                &hi
            } else {
                &lo
            };
            let pt = step(mid, Some(warm))?;
            if pt.distortion > target {
                lo = pt;
            } else {
                hi = pt;
            }
        }
        Ok(self.time_share(&lo, &hi, target))
    }

    /// Re-solve at `p.beta` with every restart (and `p` as a warm start); keep the best.
    fn refine(&self, p: &RdPoint, opts: &BaOptions) -> Result<RdPoint> {
        if opts.restarts == 0 {
            return Ok(p.clone());
        }
        let r = self.solve(p.beta, Some(&p.output), opts)?;
        Ok(if r.objective() < p.objective() {
            r
        } else {
            p.clone()
        })
    }
}

/// `R(D)` of a Bernoulli(`p`) source with Hamming distortion (nats):
/// `h(p) − h(D)` for `D < min(p, 1 − p)`, else 0.
pub fn binary_hamming_rd(p: f64, d: f64) -> Result<f64> {
    if !(0.0..=1.0).contains(&p) {
        bail!("p: expected a probability in [0, 1], found {p}");
    }
    if !(d >= 0.0 && d.is_finite()) {
        bail!("distortion: expected a number ≥ 0, found {d}");
    }
    let m = p.min(1.0 - p);
    Ok(if d >= m {
        0.0
    } else {
        crate::util::h2(p) - crate::util::h2(d)
    })
}

/// `R(D)` of a Gaussian source of variance `var` under squared error (nats):
/// `max(½ ln(σ²/D), 0)`.
pub fn gaussian_rd(var: f64, d: f64) -> Result<f64> {
    if !(var > 0.0 && var.is_finite()) {
        bail!("variance: expected a positive number, found {var}");
    }
    if !(d > 0.0 && d.is_finite()) {
        bail!(
            "distortion: expected a positive number (R(0) is infinite for a Gaussian), found {d}"
        );
    }
    Ok((0.5 * (var / d).ln()).max(0.0))
}

/// `R(D)` under log-loss distortion (Courtade & Weissman): `max(H − D, 0)`, with `H` and
/// `D` in the same unit.
pub fn log_loss_rd(entropy: f64, d: f64) -> Result<f64> {
    if !(entropy >= 0.0 && entropy.is_finite()) {
        bail!("entropy: expected a number ≥ 0, found {entropy}");
    }
    if !(d >= 0.0 && d.is_finite()) {
        bail!("distortion: expected a number ≥ 0, found {d}");
    }
    Ok((entropy - d).max(0.0))
}
