//! Directed (feed-forward) rate–distortion on the `n`-fold extension of a small source, by
//! the directed Blahut–Arimoto iteration of Naiss & Permuter (2013) — `docs/measures.md` M3,
//! estimator 2. **Reconstruction** ([P~]): the paper's exact arrow and delay are unknown, so
//! both are parameters.
//!
//! The source is an explicit law over `x^n ∈ X^n` (i.i.d., Markov or any joint pmf); the
//! reproduction is `y^n ∈ Y^n`; the distortion is per letter, summed over the block, and
//! reported per letter. At slope `β` (per letter) the algorithm alternates
//!
//! * (a) `p(y^n|x^n) ∝ r(y^n|x^n) e^{−β d(x^n,y^n)}`, and
//! * (b) `r` = the reference model induced by the current joint `P = p(x^n) p(y^n|x^n)`.
//!
//! Direction `y_to_x` (default; rate–distortion with feed-forward, Venkataramanan &
//! Pradhan): `r(y^n|x^n) = Π_i P(y_i | y^{i−1}, x^{i−k})` (delay `k`: the decoder has seen
//! `x^{i−k}` when it emits `y_i`), and the objective
//! `E ln[p(y^n|x^n) / r] = Σ_i H(Y_i | Y^{i−1}, X^{i−k}) − H(Y^n | X^n)` is, for `k = 1`,
//! Massey's `I(Y^n → X^n)`. Delay 0 (decoder sees the current letter) gives the delayed
//! `I(0·Y^{n−1} → X^n)`; delay `≥ n` gives `I(X^n; Y^n)`, the ordinary block rate.
//!
//! Direction `x_to_y`: the reference is `q(y^n) Π_i P(x_i | x^{i−1}, y^{i−k}) / p(x^n)`
//! (three-way alternation, `q` = the output marginal), and the objective
//! `Σ_i H(X_i | X^{i−1}, Y^{i−k}) − H(X^n | Y^n)` is `I(X^n → Y^n)` for `k = 1`.
//!
//! Step (b) minimises the Lagrangian over the reference exactly (it is a cross-entropy), step
//! (a) minimises it over the channel exactly, so `objective + β·n·D` never increases. The
//! objective is reported per letter (`/ n`), in nats. [`directed_information`] computes the
//! same quantity from the final joint by brute-force entropies, as a check.
//!
//! Cost `O(n |X|^n |Y|^n)` per iteration: toy alphabets only.

use crate::blahut_arimoto::BaOptions;
use crate::util::{check_matrix, check_pmf, ln0, lse, SplitMix64};
use std::collections::BTreeMap;
use tokit_sdk::{bail, check_cancelled, Result};

/// Largest `|X|^n · |Y|^n` accepted.
pub const MAX_CELLS: usize = 1 << 22;

/// Which way the information is counted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    /// From reproductions to source: `I(Y^n → X^n)` (feed-forward rate–distortion).
    YToX,
    /// From source to reproductions: `I(X^n → Y^n)`.
    XToY,
}

impl Direction {
    pub fn parse(s: &str) -> Result<Direction> {
        match s {
            "y_to_x" => Ok(Direction::YToX),
            "x_to_y" => Ok(Direction::XToY),
            other => {
                bail!("parameter `direction`: expected \"y_to_x\" or \"x_to_y\", found \"{other}\"")
            }
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Direction::YToX => "y_to_x",
            Direction::XToY => "x_to_y",
        }
    }
}

/// `base^exp`, checked.
fn pow(base: usize, exp: usize) -> Result<usize> {
    base.checked_pow(exp as u32).ok_or_else(|| {
        tokit_sdk::Error::msg(format!("alphabet size {base} to the power {exp} overflows"))
    })
}

/// The law of `x^n` for i.i.d. letters with law `p` (letter 1 is the most significant digit of
/// the index).
pub fn iid_joint(p: &[f64], n: usize) -> Result<Vec<f64>> {
    let a = p.len();
    let nx = pow(a, n)?;
    if nx > MAX_CELLS {
        bail!("source: |X|^n = {nx} sequences is too many (at most {MAX_CELLS})");
    }
    Ok((0..nx)
        .map(|xi| digits(xi, a, n).iter().map(|&s| p[s]).product())
        .collect())
}

/// The law of `x^n` for a Markov chain with initial law `init` and row-stochastic
/// `transition` (`a × a`, row = current letter).
pub fn markov_joint(init: &[f64], transition: &[f64], n: usize) -> Result<Vec<f64>> {
    let a = init.len();
    if transition.len() != a * a {
        bail!(
            "transition: expected a {a} × {a} matrix, found {} entries",
            transition.len()
        );
    }
    let nx = pow(a, n)?;
    if nx > MAX_CELLS {
        bail!("source: |X|^n = {nx} sequences is too many (at most {MAX_CELLS})");
    }
    Ok((0..nx)
        .map(|xi| {
            let s = digits(xi, a, n);
            let mut p = init[s[0]];
            for w in s.windows(2) {
                p *= transition[w[0] * a + w[1]];
            }
            p
        })
        .collect())
}

/// Binary symmetric Markov source: flip probability `q`, uniform start.
pub fn binary_symmetric_markov(q: f64, n: usize) -> Result<Vec<f64>> {
    if !(0.0..=1.0).contains(&q) {
        bail!("parameter `q`: expected a flip probability in [0, 1], found {q}");
    }
    markov_joint(&[0.5, 0.5], &[1.0 - q, q, q, 1.0 - q], n)
}

/// The `n` letters of sequence index `i` over an alphabet of size `a` (first letter first).
pub fn digits(mut i: usize, a: usize, n: usize) -> Vec<usize> {
    let mut d = vec![0; n];
    for j in (0..n).rev() {
        d[j] = i % a;
        i /= a;
    }
    d
}

/// A directed rate–distortion problem on blocks of length `n`.
#[derive(Clone, Debug)]
pub struct DirectedProblem {
    pub n: usize,
    /// `|X|`, `|Y|`.
    pub ax: usize,
    pub ay: usize,
    /// `|X|^n`, `|Y|^n`.
    pub nx: usize,
    pub ny: usize,
    /// Law of `x^n`.
    pub px: Vec<f64>,
    lpx: Vec<f64>,
    /// Block distortion `Σ_i d(x_i, y_i)`, row-major `nx × ny`.
    pub dist: Vec<f64>,
    dshift: Vec<f64>,
}

/// Options of the directed iteration.
#[derive(Clone, Debug)]
pub struct DirectedOptions {
    pub direction: Direction,
    /// Delay `k ≥ 0` of the causal conditioning (1 = the next-token situation).
    pub delay: usize,
    pub ba: BaOptions,
}

impl Default for DirectedOptions {
    fn default() -> DirectedOptions {
        DirectedOptions {
            direction: Direction::YToX,
            delay: 1,
            ba: BaOptions::default(),
        }
    }
}

/// A converged (or capped) point of the directed iteration.
#[derive(Clone, Debug)]
pub struct DirectedPoint {
    pub beta: f64,
    /// Per-letter distortion `E d(X^n, Y^n) / n`.
    pub distortion: f64,
    /// Per-letter objective (nats): the directed information of the final joint over `n`.
    pub rate: f64,
    /// Test channel `p(y^n|x^n)`, row-major `nx × ny`.
    pub channel: Vec<f64>,
    pub iterations: usize,
    pub converged: bool,
    /// The largest minus the smallest objective over the starts (0 for one start).
    pub starts_spread: f64,
    /// The kept run started from one of the random restarts.
    pub from_restart: bool,
}

impl DirectedPoint {
    pub fn objective(&self) -> f64 {
        self.rate + self.beta * self.distortion
    }
}

/// `ln Σ exp` of `lj` grouped by `key(xi, yi)` into `size` cells.
fn log_marginal(
    lj: &[f64],
    ny: usize,
    size: usize,
    key: impl Fn(usize, usize) -> usize,
) -> Vec<f64> {
    let mut mx = vec![f64::NEG_INFINITY; size];
    for (k, &l) in lj.iter().enumerate() {
        let c = key(k / ny, k % ny);
        if l > mx[c] {
            mx[c] = l;
        }
    }
    let mut s = vec![0.0; size];
    for (k, &l) in lj.iter().enumerate() {
        if l > f64::NEG_INFINITY {
            let c = key(k / ny, k % ny);
            s[c] += (l - mx[c]).exp();
        }
    }
    mx.iter()
        .zip(&s)
        .map(|(&m, &v)| {
            if m == f64::NEG_INFINITY {
                m
            } else {
                m + v.ln()
            }
        })
        .collect()
}

impl DirectedProblem {
    /// `px` is the law of `x^n` (length `ax^n`, checked against `sum_tol`), `letter_d` the
    /// per-letter distortion `ax × ay` (finite, non-negative).
    pub fn new(
        px: &[f64],
        ax: usize,
        n: usize,
        letter_d: &[f64],
        ay: usize,
        sum_tol: f64,
    ) -> Result<Self> {
        if n == 0 {
            bail!("parameter `n`: expected a block length ≥ 1");
        }
        if ax == 0 || ay == 0 {
            bail!("alphabets must be non-empty (|X| = {ax}, |Y| = {ay})");
        }
        let nx = pow(ax, n)?;
        let ny = pow(ay, n)?;
        if nx.checked_mul(ny).is_none_or(|c| c > MAX_CELLS) {
            bail!("|X|^n · |Y|^n = {ax}^{n} · {ay}^{n} is too large (at most {MAX_CELLS} cells); use a smaller n");
        }
        if px.len() != nx {
            bail!(
                "source: expected a law over {ax}^{n} = {nx} sequences, found {} entries",
                px.len()
            );
        }
        let px = check_pmf("source", px, sum_tol)?;
        check_matrix("distortion", letter_d, ax, ay, true)?;
        let xd: Vec<Vec<usize>> = (0..nx).map(|i| digits(i, ax, n)).collect();
        let yd: Vec<Vec<usize>> = (0..ny).map(|i| digits(i, ay, n)).collect();
        let mut dist = vec![0.0; nx * ny];
        let mut dshift = vec![0.0; nx * ny];
        for xi in 0..nx {
            for yi in 0..ny {
                dist[xi * ny + yi] = (0..n).map(|j| letter_d[xd[xi][j] * ay + yd[yi][j]]).sum();
            }
            let row = &dist[xi * ny..(xi + 1) * ny];
            let lo = row.iter().copied().fold(f64::INFINITY, f64::min);
            for yi in 0..ny {
                dshift[xi * ny + yi] = dist[xi * ny + yi] - lo;
            }
        }
        let lpx = px.iter().map(|&v| ln0(v)).collect();
        Ok(DirectedProblem {
            n,
            ax,
            ay,
            nx,
            ny,
            px,
            lpx,
            dist,
            dshift,
        })
    }

    /// The reference model (log, conditional on `x^n`) induced by the joint `lj` (log).
    fn reference(&self, lj: &[f64], dir: Direction, delay: usize) -> Vec<f64> {
        let (n, ax, ay, nx, ny) = (self.n, self.ax, self.ay, self.nx, self.ny);
        let xpre = |xi: usize, len: usize| xi / ax.pow((n - len) as u32);
        let ypre = |yi: usize, len: usize| yi / ay.pow((n - len) as u32);
        let mut lr = vec![0.0; nx * ny];
        match dir {
            Direction::YToX => {
                for i in 1..=n {
                    let cx = i.saturating_sub(delay);
                    let (sx, sa, sb) = (ax.pow(cx as u32), ay.pow(i as u32), ay.pow(i as u32 - 1));
                    let a = log_marginal(lj, ny, sx * sa, |x, y| xpre(x, cx) * sa + ypre(y, i));
                    let b = log_marginal(lj, ny, sx * sb, |x, y| xpre(x, cx) * sb + ypre(y, i - 1));
                    let fallback = -(ay as f64).ln();
                    for xi in 0..nx {
                        for yi in 0..ny {
                            let lb = b[xpre(xi, cx) * sb + ypre(yi, i - 1)];
                            let c = if lb == f64::NEG_INFINITY {
                                fallback
                            } else {
                                a[xpre(xi, cx) * sa + ypre(yi, i)] - lb
                            };
                            lr[xi * ny + yi] += c;
                        }
                    }
                }
            }
            Direction::XToY => {
                let q = log_marginal(lj, ny, ny, |_, y| y);
                for i in 1..=n {
                    let cy = i.saturating_sub(delay);
                    let (sy, sa, sb) = (ay.pow(cy as u32), ax.pow(i as u32), ax.pow(i as u32 - 1));
                    let a = log_marginal(lj, ny, sa * sy, |x, y| xpre(x, i) * sy + ypre(y, cy));
                    let b = log_marginal(lj, ny, sb * sy, |x, y| xpre(x, i - 1) * sy + ypre(y, cy));
                    let fallback = -(ax as f64).ln();
                    for xi in 0..nx {
                        for yi in 0..ny {
                            let lb = b[xpre(xi, i - 1) * sy + ypre(yi, cy)];
                            let c = if lb == f64::NEG_INFINITY {
                                fallback
                            } else {
                                a[xpre(xi, i) * sy + ypre(yi, cy)] - lb
                            };
                            lr[xi * ny + yi] += c;
                        }
                    }
                }
                for (k, l) in lr.iter_mut().enumerate() {
                    let (lpx, lq) = (self.lpx[k / ny], q[k % ny]);
                    *l = if lpx == f64::NEG_INFINITY || lq == f64::NEG_INFINITY {
                        // p(x^n) = 0: the row never matters; keep it finite.
                        lq.max(-1e300)
                    } else {
                        lq + *l - lpx
                    };
                }
            }
        }
        lr
    }

    /// One run of the directed iteration from the log channel `lch0`.
    pub fn run_from(
        &self,
        beta: f64,
        lch0: &[f64],
        opts: &DirectedOptions,
    ) -> Result<DirectedPoint> {
        if beta.is_nan() || beta <= 0.0 || beta.is_infinite() {
            bail!("beta: expected a positive finite slope, found {beta}");
        }
        opts.ba.check()?;
        let (nx, ny) = (self.nx, self.ny);
        let nf = self.n as f64;
        let mut lch = lch0.to_vec();
        let mut lj = vec![0.0; nx * ny];
        let mut prev: Option<(f64, f64)> = None;
        let (mut converged, mut iterations) = (false, 0);
        let mut cur;
        let mut w = vec![0.0; ny];
        loop {
            iterations += 1;
            if iterations % 256 == 0 {
                check_cancelled()?;
            }
            for k in 0..nx * ny {
                lj[k] = self.lpx[k / ny] + lch[k];
            }
            let lr = self.reference(&lj, opts.direction, opts.delay);
            let (mut obj, mut dist) = (0.0, 0.0);
            for k in 0..nx * ny {
                if lj[k] > f64::NEG_INFINITY {
                    let pj = lj[k].exp();
                    obj += pj * (lch[k] - lr[k]);
                    dist += pj * self.dist[k];
                }
            }
            cur = ((dist / nf), (obj / nf).max(0.0));
            if !(cur.0.is_finite() && cur.1.is_finite()) {
                bail!("directed Blahut–Arimoto: non-finite objective at β = {beta}");
            }
            if let Some((d0, r0)) = prev {
                if (cur.0 - d0).abs() < opts.ba.tol && (cur.1 - r0).abs() < opts.ba.tol {
                    converged = true;
                    break;
                }
            }
            if iterations >= opts.ba.max_iter {
                break;
            }
            prev = Some(cur);
            // (a) the channel for the current reference.
            for xi in 0..nx {
                for yi in 0..ny {
                    let ds = self.dshift[xi * ny + yi];
                    w[yi] = lr[xi * ny + yi] - if ds == 0.0 { 0.0 } else { beta * ds };
                }
                let l = lse(&w);
                if !l.is_finite() {
                    bail!("directed Blahut–Arimoto degenerate at β = {beta} for source sequence {xi}; use a smaller β");
                }
                for yi in 0..ny {
                    lch[xi * ny + yi] = w[yi] - l;
                }
            }
        }
        Ok(DirectedPoint {
            beta,
            distortion: cur.0,
            rate: cur.1,
            channel: lch.iter().map(|l| l.exp()).collect(),
            iterations,
            converged,
            starts_spread: 0.0,
            from_restart: false,
        })
    }

    /// Uniform start plus `restarts` random channels; keeps the smallest `rate + β D`.
    pub fn solve(&self, beta: f64, opts: &DirectedOptions) -> Result<DirectedPoint> {
        let (nx, ny) = (self.nx, self.ny);
        let mut best = self.run_from(beta, &vec![-(ny as f64).ln(); nx * ny], opts)?;
        let (mut lo, mut hi) = (best.objective(), best.objective());
        let mut rng = SplitMix64::new(opts.ba.seed);
        for _ in 0..opts.ba.restarts {
            let start: Vec<f64> = (0..nx)
                .flat_map(|_| rng.simplex(ny))
                .map(|v| v.ln())
                .collect();
            let mut pt = self.run_from(beta, &start, opts)?;
            pt.from_restart = true;
            lo = lo.min(pt.objective());
            hi = hi.max(pt.objective());
            if pt.objective() < best.objective() - 1e-15 {
                best = pt;
            }
        }
        best.starts_spread = hi - lo;
        Ok(best)
    }

    /// The joint `p(x^n) p(y^n|x^n)` of a channel.
    pub fn joint(&self, channel: &[f64]) -> Vec<f64> {
        channel
            .iter()
            .enumerate()
            .map(|(k, c)| self.px[k / self.ny] * c)
            .collect()
    }
}

/// Entropy (nats) of the marginal of `joint` (`ax^n × ay^n`, row-major) on the x positions
/// `xs` and y positions `ys` (0-based letter positions).
pub fn marginal_entropy(
    joint: &[f64],
    n: usize,
    ax: usize,
    ay: usize,
    xs: &[usize],
    ys: &[usize],
) -> f64 {
    let ny = ay.pow(n as u32);
    // Ordered, so the sum (and the reported brute-force check) is the same on every run.
    let mut m: BTreeMap<(Vec<usize>, Vec<usize>), f64> = BTreeMap::new();
    for (k, &p) in joint.iter().enumerate() {
        if p > 0.0 {
            let (dx, dy) = (digits(k / ny, ax, n), digits(k % ny, ay, n));
            let key = (
                xs.iter().map(|&j| dx[j]).collect(),
                ys.iter().map(|&j| dy[j]).collect(),
            );
            *m.entry(key).or_insert(0.0) += p;
        }
    }
    -m.values()
        .filter(|&&p| p > 0.0)
        .map(|&p| p * p.ln())
        .sum::<f64>()
}

/// Brute-force directed information (total, nats) of a joint law over `(x^n, y^n)`:
/// `y_to_x`: `Σ_i H(Y_i | Y^{i−1}, X^{i−k}) − H(Y^n | X^n)` (Massey's `I(Y^n → X^n)` at
/// `k = 1`); `x_to_y`: `Σ_i H(X_i | X^{i−1}, Y^{i−k}) − H(X^n | Y^n)`.
pub fn directed_information(
    joint: &[f64],
    n: usize,
    ax: usize,
    ay: usize,
    dir: Direction,
    delay: usize,
) -> f64 {
    let h = |xs: &[usize], ys: &[usize]| marginal_entropy(joint, n, ax, ay, xs, ys);
    let all: Vec<usize> = (0..n).collect();
    let mut total = 0.0;
    for i in 1..=n {
        let c = i.saturating_sub(delay);
        let (own, own_prev, other) = (&all[..i], &all[..i - 1], &all[..c]);
        total += match dir {
            Direction::YToX => h(other, own) - h(other, own_prev),
            Direction::XToY => h(own, other) - h(own_prev, other),
        };
    }
    let hxy = h(&all, &all);
    total
        - match dir {
            Direction::YToX => hxy - h(&all, &[]),
            Direction::XToY => hxy - h(&[], &all),
        }
}

#[cfg(test)]
mod tests;
