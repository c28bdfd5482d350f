//! Directed (feed-forward) rate–distortion on the `n`-fold extension of a small source, by
//! the directed Blahut–Arimoto iteration of Naiss & Permuter (2013) — MEASURES.md M3,
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
use std::collections::HashMap;
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
        })
    }

    /// Uniform start plus `restarts` random channels; keeps the smallest `rate + β D`.
    pub fn solve(&self, beta: f64, opts: &DirectedOptions) -> Result<DirectedPoint> {
        let (nx, ny) = (self.nx, self.ny);
        let mut best = self.run_from(beta, &vec![-(ny as f64).ln(); nx * ny], opts)?;
        let mut rng = SplitMix64::new(opts.ba.seed);
        for _ in 0..opts.ba.restarts {
            let start: Vec<f64> = (0..nx)
                .flat_map(|_| rng.simplex(ny))
                .map(|v| v.ln())
                .collect();
            let pt = self.run_from(beta, &start, opts)?;
            if pt.objective() < best.objective() - 1e-15 {
                best = pt;
            }
        }
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
    let mut m: HashMap<(Vec<usize>, Vec<usize>), f64> = HashMap::new();
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
mod tests {
    use super::*;
    use crate::blahut_arimoto::RdProblem;
    use crate::util::{h2, hamming, LN2, SUM_TOL_F64};

    fn bits(x: f64) -> f64 {
        x / LN2
    }

    fn problem(px: &[f64], n: usize) -> DirectedProblem {
        DirectedProblem::new(px, 2, n, &hamming(2), 2, SUM_TOL_F64).unwrap()
    }

    /// Massey's form `Σ_i I(X_i; Y^i | X^{i−1})` (delay 1, y → x), with
    /// `I(A;B|C) = H(A,C) + H(B,C) − H(A,B,C) − H(C)`.
    fn massey_y_to_x(joint: &[f64], n: usize) -> f64 {
        let h = |xs: &[usize], ys: &[usize]| marginal_entropy(joint, n, 2, 2, xs, ys);
        let all: Vec<usize> = (0..n).collect();
        (1..=n)
            .map(|i| {
                let (x_i, x_prev, y_i) = (&all[..i], &all[..i - 1], &all[..i]);
                h(x_i, &[]) + h(x_prev, y_i) - h(x_i, y_i) - h(x_prev, &[])
            })
            .sum()
    }

    #[test]
    fn t6_iid_uniform_n2_equals_memoryless() {
        let px = iid_joint(&[0.5, 0.5], 2).unwrap();
        let prob = problem(&px, 2);
        let pt = prob.solve(9f64.ln(), &DirectedOptions::default()).unwrap();
        assert!(pt.converged);
        assert!((pt.distortion - 0.1).abs() < 1e-9);
        assert!(
            (bits(pt.rate) - 0.531_004_4).abs() < 1e-6,
            "R2 = {}",
            bits(pt.rate)
        );
        let joint = prob.joint(&pt.channel);
        let di = directed_information(&joint, 2, 2, 2, Direction::YToX, 1) / 2.0;
        assert!((di - pt.rate).abs() < 1e-10);
        assert!((massey_y_to_x(&joint, 2) / 2.0 - pt.rate).abs() < 1e-10);
    }

    #[test]
    fn iid_nonuniform_matches_classic_ba_for_every_n() {
        let p = [0.7, 0.3];
        let classic = RdProblem::new(&p, &hamming(2), 2, SUM_TOL_F64).unwrap();
        for beta in [0.5, 9f64.ln(), 4.0] {
            let c = classic.solve(beta, None, &BaOptions::default()).unwrap();
            for n in 1..=3 {
                let prob = problem(&iid_joint(&p, n).unwrap(), n);
                for delay in [1, n] {
                    let opts = DirectedOptions {
                        delay,
                        ..Default::default()
                    };
                    let pt = prob.solve(beta, &opts).unwrap();
                    assert!(
                        (pt.rate - c.rate).abs() < 1e-8,
                        "n {n} delay {delay} β {beta}: {} vs {}",
                        pt.rate,
                        c.rate
                    );
                    assert!((pt.distortion - c.distortion).abs() < 1e-8);
                }
            }
        }
    }

    #[test]
    fn t7_markov_source_n2() {
        let q = 0.2;
        let prob = problem(&binary_symmetric_markov(q, 2).unwrap(), 2);
        for (beta, d, r) in [
            (9f64.ln(), 0.1, 0.391_968_5),
            (19f64.ln(), 0.05, 0.574_567_1),
        ] {
            let pt = prob.solve(beta, &DirectedOptions::default()).unwrap();
            assert!(pt.converged, "iterations {}", pt.iterations);
            assert!((pt.distortion - d).abs() < 1e-8, "D = {}", pt.distortion);
            assert!((bits(pt.rate) - r).abs() < 1e-6, "R2 = {}", bits(pt.rate));
            let closed = 0.5 * ((LN2 - h2(d)) + (h2(q) - h2(d)));
            assert!((pt.rate - closed).abs() < 1e-8);
            let joint = prob.joint(&pt.channel);
            assert!(
                (directed_information(&joint, 2, 2, 2, Direction::YToX, 1) / 2.0 - pt.rate).abs()
                    < 1e-10
            );
            assert!((massey_y_to_x(&joint, 2) / 2.0 - pt.rate).abs() < 1e-10);
            // The distortion re-evaluated from the joint, letter by letter.
            let dd: f64 = (0..16)
                .map(|k| {
                    let (x, y) = (digits(k / 4, 2, 2), digits(k % 4, 2, 2));
                    joint[k] * (0..2).filter(|&j| x[j] != y[j]).count() as f64 / 2.0
                })
                .sum();
            assert!((dd - pt.distortion).abs() < 1e-9);
        }
    }

    #[test]
    fn markov_rate_is_non_increasing_in_n() {
        let q = 0.2;
        let beta = 9f64.ln();
        let mut last = f64::INFINITY;
        for n in 1..=3 {
            let prob = problem(&binary_symmetric_markov(q, n).unwrap(), n);
            let pt = prob.solve(beta, &DirectedOptions::default()).unwrap();
            // Closed form: (1/n)[(1 − h(D)) + (n − 1)(h(q) − h(D))] in bits, D = 0.1.
            let closed = ((LN2 - h2(0.1)) + (n as f64 - 1.0) * (h2(q) - h2(0.1))) / n as f64;
            assert!(
                (pt.rate - closed).abs() < 1e-8,
                "n = {n}: {} vs {closed}",
                pt.rate
            );
            assert!(pt.rate <= last + 1e-12);
            last = pt.rate;
            let joint = prob.joint(&pt.channel);
            let di = directed_information(&joint, n, 2, 2, Direction::YToX, 1) / n as f64;
            assert!((di - pt.rate).abs() < 1e-10);
            assert!((massey_y_to_x(&joint, n) / n as f64 - pt.rate).abs() < 1e-10);
        }
    }

    #[test]
    fn block_rate_without_feed_forward_is_larger() {
        // Delay ≥ n: the ordinary block rate (1/n) R_n(D), above the feed-forward rate.
        let prob = problem(&binary_symmetric_markov(0.2, 2).unwrap(), 2);
        let ff = prob.solve(9f64.ln(), &DirectedOptions::default()).unwrap();
        let opts = DirectedOptions {
            delay: 2,
            ..Default::default()
        };
        let block = prob.solve(9f64.ln(), &opts).unwrap();
        let joint = prob.joint(&block.channel);
        let mi = marginal_entropy(&joint, 2, 2, 2, &[0, 1], &[])
            + marginal_entropy(&joint, 2, 2, 2, &[], &[0, 1])
            - marginal_entropy(&joint, 2, 2, 2, &[0, 1], &[0, 1]);
        assert!((mi / 2.0 - block.rate).abs() < 1e-10);
        // I(X^n; Y^n) ≥ I(Y^n → X^n); at D = 0.1 the Shannon lower bound H(X^2)/2 − h(D) is
        // tight for both, so they coincide here.
        assert!(block.objective() >= ff.objective() - 1e-10);
        assert!((block.rate - ff.rate).abs() < 1e-8);
        // At a larger distortion (β = 1) feed-forward strictly helps.
        let ff = prob.solve(1.0, &DirectedOptions::default()).unwrap();
        let block = prob.solve(1.0, &opts).unwrap();
        assert!(
            block.objective() > ff.objective() + 1e-2,
            "{} vs {}",
            block.objective(),
            ff.objective()
        );
        // Delay 0 (the decoder sees the current letter): free reproduction.
        let opts = DirectedOptions {
            delay: 0,
            ..Default::default()
        };
        let zero = prob.solve(9f64.ln(), &opts).unwrap();
        assert!(zero.rate < 1e-6 && zero.distortion < 1e-6, "{zero:?}");
    }

    #[test]
    fn x_to_y_direction_matches_brute_force_and_conservation() {
        let prob = problem(&binary_symmetric_markov(0.2, 2).unwrap(), 2);
        for delay in [0, 1, 2] {
            let opts = DirectedOptions {
                direction: Direction::XToY,
                delay,
                ..Default::default()
            };
            let pt = prob.solve(2.0, &opts).unwrap();
            let joint = prob.joint(&pt.channel);
            let di = directed_information(&joint, 2, 2, 2, Direction::XToY, delay) / 2.0;
            assert!(
                (di - pt.rate).abs() < 1e-9,
                "delay {delay}: {di} vs {}",
                pt.rate
            );
        }
        // Conservation law on an arbitrary joint: I(X;Y) = I(X^n → Y^n) + I(0·Y^{n−1} → X^n).
        let mut rng = SplitMix64::new(3);
        let joint = rng.simplex(64);
        let (n, all) = (3, [0usize, 1, 2]);
        let mi = marginal_entropy(&joint, n, 2, 2, &all, &[])
            + marginal_entropy(&joint, n, 2, 2, &[], &all)
            - marginal_entropy(&joint, n, 2, 2, &all, &all);
        let fwd = directed_information(&joint, n, 2, 2, Direction::XToY, 1);
        let back = directed_information(&joint, n, 2, 2, Direction::YToX, 0);
        assert!((fwd + back - mi).abs() < 1e-12);
        let fwd0 = directed_information(&joint, n, 2, 2, Direction::XToY, 0);
        let back1 = directed_information(&joint, n, 2, 2, Direction::YToX, 1);
        assert!((fwd0 + back1 - mi).abs() < 1e-12);
    }

    #[test]
    fn memoryless_channel_directed_information_equals_mutual_information() {
        // BSC(0.1) without feedback, uniform inputs, n = 3: DI = MI = 3(1 − h(0.1)) bits
        // (MEASURES.md M2); the reproductions play the channel outputs here.
        let n = 3;
        let px = iid_joint(&[0.5, 0.5], n).unwrap();
        let mut joint = vec![0.0; 64];
        for xi in 0..8 {
            for yi in 0..8 {
                let (dx, dy) = (digits(xi, 2, n), digits(yi, 2, n));
                let flips = (0..n).filter(|&j| dx[j] != dy[j]).count() as i32;
                joint[xi * 8 + yi] = px[xi] * 0.1f64.powi(flips) * 0.9f64.powi(n as i32 - flips);
            }
        }
        let di = directed_information(&joint, n, 2, 2, Direction::XToY, 1);
        assert!((bits(di) - 1.593_013_2).abs() < 1e-6);
    }

    #[test]
    fn bad_input_is_an_error() {
        let h = hamming(2);
        assert!(DirectedProblem::new(&[0.25; 4], 2, 0, &h, 2, SUM_TOL_F64).is_err());
        assert!(DirectedProblem::new(&[0.25; 3], 2, 2, &h, 2, SUM_TOL_F64).is_err());
        assert!(DirectedProblem::new(&[0.3; 4], 2, 2, &h, 2, SUM_TOL_F64).is_err());
        assert!(DirectedProblem::new(&[0.25; 4], 2, 2, &h[..3], 2, SUM_TOL_F64).is_err());
        assert!(
            DirectedProblem::new(&[0.25; 4], 2, 2, &[0.0, -1.0, 1.0, 0.0], 2, SUM_TOL_F64).is_err()
        );
        assert!(DirectedProblem::new(
            &iid_joint(&[0.5, 0.5], 12).unwrap(),
            2,
            12,
            &h,
            2,
            SUM_TOL_F64
        )
        .is_err());
        assert!(binary_symmetric_markov(1.5, 2).is_err());
        assert!(Direction::parse("sideways").is_err());
        let prob = problem(&[0.25; 4], 2);
        let o = DirectedOptions::default();
        for beta in [0.0, -1.0, f64::NAN, f64::INFINITY] {
            assert!(prob.solve(beta, &o).is_err());
        }
    }

    #[test]
    fn zero_probability_sequences_stay_finite() {
        // q = 0: the chain never flips; half of the sequences have probability 0.
        let prob = problem(&binary_symmetric_markov(0.0, 2).unwrap(), 2);
        for dir in [Direction::YToX, Direction::XToY] {
            let pt = prob
                .solve(
                    2.0,
                    &DirectedOptions {
                        direction: dir,
                        ..Default::default()
                    },
                )
                .unwrap();
            assert!(pt.rate.is_finite() && pt.distortion.is_finite());
            assert!(pt.channel.iter().all(|c| c.is_finite()));
        }
    }
}
