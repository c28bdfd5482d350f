//! Rate–reward functions (`docs/measures.md` M4, post-training). **Reconstruction** ([P~]) of the
//! paper's "directed rate-reward function": distortion replaced by negative reward.
//!
//! * KL-to-reference form (the one RLHF optimises):
//!   `R_ref(ρ) = min_{π : E_π r ≥ ρ} E_x KL(π(·|x) || π_ref(·|x))`, solved exactly by the
//!   tilt `π_λ = π_ref e^{λ r} / Z_λ`, with `ρ(λ) = E_{π_λ} r` and `R_ref = λρ − E_x ln Z_λ`
//!   ([`TiltProblem`]).
//! * Channel form `R(ρ) = min_{p(y|x) : E r ≥ ρ} I(X;Y)`: Blahut–Arimoto with distortion
//!   `max r − r` (see [`channel_problem`]).
//! * Best-of-n: `KL(π_bon || π_ref) = ln n − (n−1)/n` for a continuous reward, and the exact
//!   law and KL for a finite outcome set with ties (Beirami et al. 2024), which never exceed
//!   the continuous value ([`best_of_n_exact`]).
//! * The frontier estimated from reward samples of the reference by self-normalised
//!   importance sampling, with its effective sample size and standard errors (delta method,
//!   and optionally a seeded bootstrap) ([`importance_estimate`]).
//!
//! Nats throughout.

use crate::blahut_arimoto::RdProblem;
use crate::util::{check_matrix, check_pmf, ln0, lse, SplitMix64};
use tokit_sdk::{bail, Result};

/// The reference policy over `nx` contexts and `ny` outcomes, with rewards.
#[derive(Clone, Debug)]
pub struct TiltProblem {
    /// Law of the contexts `p(x)`.
    pub context: Vec<f64>,
    /// `π_ref(y|x)`, row-major `nx × ny`.
    pub reference: Vec<f64>,
    /// `r(x, y)`, row-major `nx × ny`.
    pub reward: Vec<f64>,
    pub nx: usize,
    pub ny: usize,
    lref: Vec<f64>,
}

/// The tilted policy at one `λ`.
#[derive(Clone, Debug)]
pub struct Tilt {
    pub lambda: f64,
    /// `π_λ(y|x)`, row-major `nx × ny`.
    pub policy: Vec<f64>,
    /// `E_x ln Z_λ(x)`.
    pub log_z: f64,
    /// `ρ = E_x E_{π_λ} r`.
    pub reward: f64,
    /// `R_ref = E_x KL(π_λ || π_ref)` (nats), summed directly (robust for large `λ`).
    pub kl: f64,
    /// The same from the identity `λρ − E_x ln Z_λ` (a check of `kl`).
    pub kl_identity: f64,
}

impl TiltProblem {
    /// Contexts `context` (law over `nx` rows), reference rows (laws) and finite rewards.
    pub fn new(
        context: &[f64],
        reference: &[f64],
        reward: &[f64],
        ny: usize,
        sum_tol: f64,
    ) -> Result<TiltProblem> {
        let context = check_pmf("context", context, sum_tol)?;
        let nx = context.len();
        if reference.len() != nx * ny || ny == 0 {
            bail!(
                "reference: expected {nx} × {ny} entries, found {}",
                reference.len()
            );
        }
        if reward.len() != nx * ny {
            bail!(
                "reward: expected the shape of the reference ({nx} × {ny}), found {} entries",
                reward.len()
            );
        }
        check_matrix("reward", reward, nx, ny, false)?;
        let mut refn = Vec::with_capacity(nx * ny);
        for x in 0..nx {
            let what = if nx == 1 {
                "reference".to_string()
            } else {
                format!("reference row {x}")
            };
            refn.extend(check_pmf(&what, &reference[x * ny..(x + 1) * ny], sum_tol)?);
        }
        let lref = refn.iter().map(|&v| ln0(v)).collect();
        Ok(TiltProblem {
            context,
            reference: refn,
            reward: reward.to_vec(),
            nx,
            ny,
            lref,
        })
    }

    /// Expected reward under the reference.
    pub fn reward_ref(&self) -> f64 {
        (0..self.nx * self.ny)
            .map(|k| self.context[k / self.ny] * self.reference[k] * self.reward[k])
            .sum()
    }

    /// `E_x max_{y : π_ref(y|x) > 0} r(x, y)`: the largest achievable expected reward.
    pub fn reward_max(&self) -> f64 {
        (0..self.nx)
            .map(|x| self.context[x] * self.row_max(x))
            .sum()
    }

    fn row_max(&self, x: usize) -> f64 {
        (0..self.ny)
            .filter(|&y| self.reference[x * self.ny + y] > 0.0)
            .map(|y| self.reward[x * self.ny + y])
            .fold(f64::NEG_INFINITY, f64::max)
    }

    /// The tilt `π_λ ∝ π_ref e^{λ r}` (any finite `λ`).
    pub fn tilt(&self, lambda: f64) -> Result<Tilt> {
        if !lambda.is_finite() {
            bail!("lambda: expected a finite number, found {lambda}");
        }
        let ny = self.ny;
        let mut policy = vec![0.0; self.nx * ny];
        let (mut log_z, mut reward, mut kl_direct) = (0.0, 0.0, 0.0);
        let mut w = vec![0.0; ny];
        for x in 0..self.nx {
            for (y, wy) in w.iter_mut().enumerate() {
                let k = x * ny + y;
                *wy = if self.lref[k] == f64::NEG_INFINITY {
                    f64::NEG_INFINITY
                } else {
                    self.lref[k] + lambda * self.reward[k]
                };
            }
            let lz = lse(&w);
            if !lz.is_finite() {
                bail!("lambda = {lambda}: the normaliser Z overflows for context {x}; use a smaller |lambda|");
            }
            let (mut ex, mut klx) = (0.0, 0.0);
            for (y, &wy) in w.iter().enumerate() {
                let k = x * ny + y;
                if wy > f64::NEG_INFINITY {
                    let lp = wy - lz;
                    let p = lp.exp();
                    policy[k] = p;
                    ex += p * self.reward[k];
                    klx += p * (lp - self.lref[k]);
                }
            }
            log_z += self.context[x] * lz;
            reward += self.context[x] * ex;
            kl_direct += self.context[x] * klx;
        }
        let kl_identity = lambda * reward - log_z;
        Ok(Tilt {
            lambda,
            policy,
            log_z,
            reward,
            kl: kl_direct.max(0.0),
            kl_identity,
        })
    }

    /// The `λ = +∞` limit: the reference restricted to the best outcomes of each context.
    fn tilt_infinite(&self) -> Tilt {
        let ny = self.ny;
        let mut policy = vec![0.0; self.nx * ny];
        let (mut reward, mut kl) = (0.0, 0.0);
        for x in 0..self.nx {
            let m = self.row_max(x);
            let best: Vec<usize> = (0..ny)
                .filter(|&y| self.reference[x * ny + y] > 0.0 && self.reward[x * ny + y] == m)
                .collect();
            let mass: f64 = best.iter().map(|&y| self.reference[x * ny + y]).sum();
            for &y in &best {
                policy[x * ny + y] = self.reference[x * ny + y] / mass;
            }
            reward += self.context[x] * m;
            kl -= self.context[x] * mass.ln();
        }
        Tilt {
            lambda: f64::INFINITY,
            policy,
            log_z: f64::INFINITY,
            reward,
            kl,
            kl_identity: kl,
        }
    }

    /// `R_ref(target)`: the smallest KL reaching expected reward `target` (bisection on
    /// `λ ≥ 0`; `ρ(λ)` is non-decreasing). `λ = 0` when the reference already reaches it.
    pub fn at_reward(&self, target: f64) -> Result<Tilt> {
        if !target.is_finite() {
            bail!("target_reward: expected a finite number, found {target}");
        }
        let (r0, rmax) = (self.reward_ref(), self.reward_max());
        let eps = 1e-12 * (1.0 + rmax.abs());
        if target <= r0 {
            return self.tilt(0.0);
        }
        if target > rmax + eps {
            bail!("target_reward {target} exceeds the largest achievable expected reward {rmax} (infeasible)");
        }
        if target >= rmax - eps {
            return Ok(self.tilt_infinite());
        }
        let spread = self
            .reward
            .iter()
            .copied()
            .fold(f64::NEG_INFINITY, f64::max)
            - self.reward.iter().copied().fold(f64::INFINITY, f64::min);
        let mut hi = 1.0 / spread;
        let mut lo = 0.0;
        loop {
            let t = self.tilt(hi)?;
            if t.reward >= target {
                break;
            }
            lo = hi;
            hi *= 2.0;
            if hi > 1e300 {
                return Ok(self.tilt_infinite());
            }
        }
        let tol = 1e-14 * (1.0 + target.abs());
        for _ in 0..300 {
            let mid = 0.5 * (lo + hi);
            if mid <= lo || mid >= hi {
                break;
            }
            let t = self.tilt(mid)?;
            if (t.reward - target).abs() <= tol {
                return Ok(t);
            }
            if t.reward < target {
                lo = mid;
            } else {
                hi = mid;
            }
        }
        self.tilt(hi)
    }
}

/// The channel form as a rate–distortion problem: source `p(x)`, distortion
/// `d(x,y) = max r − r(x,y)`. Returns the problem and `max r` (so `ρ = max r − D`).
pub fn channel_problem(
    source: &[f64],
    reward: &[f64],
    ny: usize,
    sum_tol: f64,
) -> Result<(RdProblem, f64)> {
    let nx = source.len();
    if ny == 0 || reward.len() != nx * ny {
        bail!(
            "reward: expected a {nx} × {ny} matrix (one row per source letter), found {} entries",
            reward.len()
        );
    }
    check_matrix("reward", reward, nx, ny, false)?;
    let rmax = reward.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let d: Vec<f64> = reward.iter().map(|r| rmax - r).collect();
    Ok((RdProblem::new(source, d, ny, sum_tol)?, rmax))
}

/// `KL(π_bon || π_ref) = ln n − (n−1)/n` for a continuous reward (no ties), nats.
pub fn best_of_n_continuous_kl(n: usize) -> Result<f64> {
    if n == 0 {
        bail!("parameter `n`: expected at least 1 sample");
    }
    let nf = n as f64;
    Ok(nf.ln() - (nf - 1.0) / nf)
}

/// The exact best-of-n policy on a finite outcome set.
#[derive(Clone, Debug)]
pub struct BestOfN {
    pub n: usize,
    /// `π_bon(y)`.
    pub policy: Vec<f64>,
    /// `KL(π_bon || π_ref)` (nats).
    pub kl: f64,
    pub reward_bon: f64,
    pub reward_ref: f64,
    /// Number of distinct reward levels with positive reference mass.
    pub levels: usize,
}

/// Exact best-of-n on outcomes with reference law `reference` and rewards `reward` (ties
/// allowed; the best of the `n` draws is chosen uniformly among tied draws). With
/// `F = P(r ≤ v)`, `G = P(r < v)` for a reward level `v` of mass `m = F − G`, the level gets
/// probability `F^n − G^n`, shared among its outcomes in proportion to the reference, and
/// `KL = Σ_levels (F^n − G^n) ln[(F^n − G^n)/m]`.
pub fn best_of_n_exact(
    reference: &[f64],
    reward: &[f64],
    n: usize,
    sum_tol: f64,
) -> Result<BestOfN> {
    if n == 0 {
        bail!("parameter `n`: expected at least 1 sample");
    }
    let p = check_pmf("reference", reference, sum_tol)?;
    if reward.len() != p.len() {
        bail!(
            "reward: expected {} entries (one per outcome), found {}",
            p.len(),
            reward.len()
        );
    }
    check_matrix("reward", reward, 1, p.len(), false)?;
    let mut order: Vec<usize> = (0..p.len()).filter(|&i| p[i] > 0.0).collect();
    order.sort_by(|&a, &b| reward[a].total_cmp(&reward[b]));
    let nf = n as f64;
    let mut policy = vec![0.0; p.len()];
    let (mut kl, mut below, mut levels) = (0.0, 0.0, 0);
    let mut i = 0;
    while i < order.len() {
        let mut j = i;
        let mut m = 0.0;
        while j < order.len() && reward[order[j]] == reward[order[i]] {
            m += p[order[j]];
            j += 1;
        }
        let f = below + m;
        // ln[(F^n − G^n)/m], stable for G close to F and for G = 0.
        let ln_ratio = nf * f.ln() + (-(nf * (-(m / f)).ln_1p()).exp_m1()).ln() - m.ln();
        let level_p = m * ln_ratio.exp();
        kl += level_p * ln_ratio;
        for &k in &order[i..j] {
            policy[k] = p[k] * ln_ratio.exp();
        }
        below = f;
        levels += 1;
        i = j;
    }
    let reward_bon = policy.iter().zip(reward).map(|(a, b)| a * b).sum();
    let reward_ref = p.iter().zip(reward).map(|(a, b)| a * b).sum();
    if !kl.is_finite() {
        bail!("best-of-n: non-finite KL for n = {n}");
    }
    Ok(BestOfN {
        n,
        policy,
        kl: kl.max(0.0),
        reward_bon,
        reward_ref,
        levels,
    })
}

/// Self-normalised importance-sampling estimate of one frontier point.
#[derive(Clone, Debug)]
pub struct IsEstimate {
    pub lambda: f64,
    pub samples: usize,
    /// `ρ̂ = Σ w_i r_i / Σ w_i`, `w_i = e^{λ r_i}`.
    pub reward: f64,
    /// `R̂ = λρ̂ − ln((1/N) Σ w_i)` (nats).
    pub rate: f64,
    /// Effective sample size `(Σ w)² / Σ w²`.
    pub ess: f64,
    /// Delta-method standard errors.
    pub se_reward: f64,
    pub se_rate: f64,
    /// Bootstrap standard errors (when resamples were asked for).
    pub boot_se_reward: Option<f64>,
    pub boot_se_rate: Option<f64>,
    /// Largest normalised weight (a degeneracy warning when close to 1).
    pub max_weight: f64,
}

/// `(ρ̂, R̂, normalised weights)` of the samples `r` (indices `idx`) at `λ`.
fn snis(r: &[f64], idx: impl Iterator<Item = usize> + Clone, lambda: f64) -> (f64, f64, Vec<f64>) {
    let lw: Vec<f64> = idx.clone().map(|i| lambda * r[i]).collect();
    let l = lse(&lw);
    let w: Vec<f64> = lw.iter().map(|v| (v - l).exp()).collect();
    let rho: f64 = idx.zip(&w).map(|(i, wi)| wi * r[i]).sum();
    // λρ̂ − ln((1/N) Σ w) = Σ w̃ ln(N w̃) = KL(w̃ || uniform): no cancellation at large λ.
    let nf = lw.len() as f64;
    let rate = w
        .iter()
        .filter(|&&v| v > 0.0)
        .map(|&v| v * (nf * v).ln())
        .sum();
    (rho, rate, w)
}

/// The frontier point at `λ` estimated from reward samples `r_i ~ π_ref`, with delta-method
/// standard errors and, if `bootstrap > 0`, bootstrap standard errors (seeded).
pub fn importance_estimate(
    samples: &[f64],
    lambda: f64,
    bootstrap: usize,
    seed: u64,
) -> Result<IsEstimate> {
    let n = samples.len();
    if n < 2 {
        bail!("rewards: need at least 2 reward samples, found {n}");
    }
    if let Some((i, v)) = samples.iter().enumerate().find(|(_, v)| !v.is_finite()) {
        bail!("rewards: sample {i} is {v}, expected a finite reward");
    }
    if !lambda.is_finite() {
        bail!("lambda: expected a finite number, found {lambda}");
    }
    let (rho, rate, w) = snis(samples, 0..n, lambda);
    let nf = n as f64;
    let sum_w2: f64 = w.iter().map(|v| v * v).sum();
    let ess = 1.0 / sum_w2;
    // Linearisations: ρ̂ ≈ ρ + mean(u), R̂ ≈ R + mean(z) − E z, with u_i = N w̃_i (r_i − ρ̂)
    // and z_i = N w̃_i (λ(r_i − ρ̂) − 1) (mean −1).
    let var_u: f64 = w
        .iter()
        .zip(samples)
        .map(|(wi, ri)| (nf * wi * (ri - rho)).powi(2))
        .sum::<f64>()
        / (nf - 1.0);
    let var_z: f64 = w
        .iter()
        .zip(samples)
        .map(|(wi, ri)| (nf * wi * (lambda * (ri - rho) - 1.0) + 1.0).powi(2))
        .sum::<f64>()
        / (nf - 1.0);
    let (se_reward, se_rate) = ((var_u / nf).sqrt(), (var_z / nf).sqrt());
    let (mut boot_se_reward, mut boot_se_rate) = (None, None);
    if bootstrap > 0 {
        let mut rng = SplitMix64::new(seed);
        let (mut s1, mut s2, mut t1, mut t2) = (0.0, 0.0, 0.0, 0.0);
        let mut idx = vec![0usize; n];
        for _ in 0..bootstrap {
            for v in idx.iter_mut() {
                *v = rng.below(n);
            }
            let (a, b, _) = snis(samples, idx.iter().copied(), lambda);
            s1 += a;
            s2 += a * a;
            t1 += b;
            t2 += b * b;
        }
        let bf = bootstrap as f64;
        let sd = |s: f64, ss: f64| {
            if bootstrap > 1 {
                ((ss - s * s / bf) / (bf - 1.0)).max(0.0).sqrt()
            } else {
                0.0
            }
        };
        boot_se_reward = Some(sd(s1, s2));
        boot_se_rate = Some(sd(t1, t2));
    }
    let max_weight = w.iter().copied().fold(0.0, f64::max);
    Ok(IsEstimate {
        lambda,
        samples: n,
        reward: rho,
        rate: rate.max(0.0),
        ess,
        se_reward,
        se_rate,
        boot_se_reward,
        boot_se_rate,
        max_weight,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::blahut_arimoto::BaOptions;
    use crate::util::{h2, LN2, SUM_TOL_F64};

    fn single(reference: &[f64], reward: &[f64]) -> TiltProblem {
        TiltProblem::new(&[1.0], reference, reward, reference.len(), SUM_TOL_F64).unwrap()
    }

    #[test]
    fn t12_uniform_reference() {
        let prob = single(&[1.0 / 3.0; 3], &[0.0, 2f64.ln(), 4f64.ln()]);
        let t = prob.tilt(1.0).unwrap();
        for (a, b) in t.policy.iter().zip([1.0 / 7.0, 2.0 / 7.0, 4.0 / 7.0]) {
            assert!((a - b).abs() < 1e-15);
        }
        assert!((t.log_z - (7f64 / 3.0).ln()).abs() < 1e-15);
        assert!(
            (t.reward - 0.990_210_3).abs() < 1e-6 && (t.reward - 10.0 / 7.0 * LN2).abs() < 1e-14
        );
        assert!((t.kl - 0.142_912_4).abs() < 1e-6);
        assert!((t.kl - t.kl_identity).abs() < 1e-14);
    }

    #[test]
    fn t13_nonuniform_reference() {
        let prob = single(&[0.5, 0.25, 0.25], &[1.0, 0.0, 2.0]);
        let t = prob.tilt(0.5).unwrap();
        for (a, b) in t.policy.iter().zip([0.470_007_4, 0.142_537_0, 0.387_455_6]) {
            assert!((a - b).abs() < 1e-6);
        }
        assert!((t.log_z.exp() - 1.753_931_1).abs() < 1e-6);
        assert!((t.reward - 1.244_918_7).abs() < 1e-6);
        assert!((t.kl - 0.060_599_7).abs() < 1e-6);
        assert!((t.kl - t.kl_identity).abs() < 1e-14);
        // Inverting the curve recovers λ = 0.5.
        let back = prob.at_reward(t.reward).unwrap();
        assert!((back.lambda - 0.5).abs() < 1e-9 && (back.kl - t.kl).abs() < 1e-12);
    }

    #[test]
    fn tilt_curve_edges_and_contexts() {
        let prob = single(&[0.5, 0.25, 0.25], &[1.0, 0.0, 2.0]);
        // Below the reference's reward: λ = 0, KL = 0. At the maximum: −ln π_ref(best).
        let t = prob.at_reward(0.5).unwrap();
        assert_eq!(t.kl, 0.0);
        let t = prob.at_reward(2.0).unwrap();
        assert!((t.kl - 4f64.ln()).abs() < 1e-15 && t.lambda.is_infinite());
        assert!(prob.at_reward(2.5).is_err());
        // The curve (ρ, KL) is increasing and convex along λ ≥ 0, with slope λ.
        let pts: Vec<Tilt> = (0..40)
            .map(|k| prob.tilt(k as f64 * 0.25).unwrap())
            .collect();
        for w in pts.windows(2) {
            assert!(w[1].reward >= w[0].reward && w[1].kl >= w[0].kl);
            let slope = (w[1].kl - w[0].kl) / (w[1].reward - w[0].reward);
            assert!(slope >= w[0].lambda - 1e-9 && slope <= w[1].lambda + 1e-9);
        }
        // Two contexts: the averages of the single-context answers.
        let two = TiltProblem::new(
            &[0.25, 0.75],
            &[1.0 / 3.0, 1.0 / 3.0, 1.0 / 3.0, 0.5, 0.25, 0.25],
            &[0.0, 2f64.ln(), 4f64.ln(), 1.0, 0.0, 2.0],
            3,
            SUM_TOL_F64,
        )
        .unwrap();
        let a = single(&[1.0 / 3.0; 3], &[0.0, 2f64.ln(), 4f64.ln()])
            .tilt(0.7)
            .unwrap();
        let b = prob.tilt(0.7).unwrap();
        let t = two.tilt(0.7).unwrap();
        assert!((t.kl - (0.25 * a.kl + 0.75 * b.kl)).abs() < 1e-14);
        assert!((t.reward - (0.25 * a.reward + 0.75 * b.reward)).abs() < 1e-14);
    }

    #[test]
    fn t14_channel_form() {
        // X uniform bit, r = 1[x = y]: R(ρ) = 1 − h(ρ) bits.
        let (prob, rmax) =
            channel_problem(&[0.5, 0.5], &[1.0, 0.0, 0.0, 1.0], 2, SUM_TOL_F64).unwrap();
        let pt = prob
            .at_distortion(rmax - 0.9, &BaOptions::default())
            .unwrap();
        assert!((rmax - pt.distortion - 0.9).abs() < 1e-9);
        assert!((pt.rate / LN2 - 0.531_004_4).abs() < 1e-6);
        assert!((pt.rate - (LN2 - h2(0.9))).abs() < 1e-9);
        // At slope λ = ln 9 directly.
        let pt = prob.solve(9f64.ln(), None, &BaOptions::default()).unwrap();
        assert!((rmax - pt.distortion - 0.9).abs() < 1e-9);
    }

    #[test]
    fn t15_best_of_n() {
        let c = best_of_n_continuous_kl(4).unwrap();
        assert!((c - 0.636_294_4).abs() < 1e-6);
        assert_eq!(best_of_n_continuous_kl(1).unwrap(), 0.0);
        assert!(best_of_n_continuous_kl(0).is_err());
        // Finite outcome sets (with and without ties) stay below the continuous value.
        let cases: [(&[f64], &[f64]); 4] = [
            (&[0.25, 0.25, 0.25, 0.25], &[1.0, 2.0, 3.0, 4.0]),
            (&[0.25, 0.25, 0.25, 0.25], &[1.0, 2.0, 2.0, 4.0]),
            (&[0.5, 0.25, 0.25], &[1.0, 0.0, 2.0]),
            (&[0.1, 0.2, 0.3, 0.4], &[5.0, 5.0, 5.0, 5.0]),
        ];
        for (p, r) in cases {
            for n in [1, 2, 4, 16, 1000] {
                let b = best_of_n_exact(p, r, n, SUM_TOL_F64).unwrap();
                assert!(
                    b.kl <= best_of_n_continuous_kl(n).unwrap() + 1e-12,
                    "{p:?} {r:?} n={n}"
                );
                assert!((b.policy.iter().sum::<f64>() - 1.0).abs() < 1e-12);
                let direct: f64 = b
                    .policy
                    .iter()
                    .zip(p)
                    .filter(|(a, _)| **a > 0.0)
                    .map(|(a, q)| a * (a / q).ln())
                    .sum();
                assert!((direct - b.kl).abs() < 1e-12);
                assert!(b.reward_bon >= b.reward_ref - 1e-12);
            }
        }
        // All tied: best-of-n is the reference.
        assert!(
            best_of_n_exact(&[0.1, 0.2, 0.3, 0.4], &[5.0; 4], 8, SUM_TOL_F64)
                .unwrap()
                .kl
                .abs()
                < 1e-15
        );
        // Ties lower the KL.
        let distinct = best_of_n_exact(&[0.25; 4], &[1.0, 2.0, 3.0, 4.0], 4, SUM_TOL_F64)
            .unwrap()
            .kl;
        let tied = best_of_n_exact(&[0.25; 4], &[1.0, 2.0, 2.0, 4.0], 4, SUM_TOL_F64)
            .unwrap()
            .kl;
        assert!(tied < distinct);
        // Many equiprobable distinct outcomes approach the continuous formula from below.
        let k = 100_000;
        let p = vec![1.0 / k as f64; k];
        let r: Vec<f64> = (0..k).map(|i| i as f64).collect();
        let b = best_of_n_exact(&p, &r, 4, SUM_TOL_F64).unwrap();
        assert!(b.kl < c && c - b.kl < 1e-3, "{} vs {c}", b.kl);
    }

    #[test]
    fn importance_sampling_exact_population_and_calibration() {
        // Samples in exact reference proportions reproduce the exact tilt (T12).
        let r = [0.0, 2f64.ln(), 4f64.ln()];
        let e = importance_estimate(&r, 1.0, 0, 0).unwrap();
        assert!((e.reward - 10.0 / 7.0 * LN2).abs() < 1e-14);
        assert!((e.rate - 0.142_912_4).abs() < 1e-6);
        assert!((e.ess - 49.0 / 21.0).abs() < 1e-12);
        // Random samples from the T13 reference: estimates within a few standard errors, and the
        // delta-method standard error matches the spread over replicates.
        let exact = single(&[0.5, 0.25, 0.25], &[1.0, 0.0, 2.0])
            .tilt(0.5)
            .unwrap();
        let mut rng = SplitMix64::new(11);
        let (reps, n) = (400, 2000);
        let (mut m1, mut m2, mut se_mean) = (0.0, 0.0, 0.0);
        for rep in 0..reps {
            let s: Vec<f64> = (0..n)
                .map(|_| {
                    let u = rng.uniform();
                    if u < 0.5 {
                        1.0
                    } else if u < 0.75 {
                        0.0
                    } else {
                        2.0
                    }
                })
                .collect();
            let e = importance_estimate(&s, 0.5, if rep == 0 { 200 } else { 0 }, 5).unwrap();
            if rep == 0 {
                let (b1, b2) = (e.boot_se_reward.unwrap(), e.boot_se_rate.unwrap());
                assert!(
                    (b1 / e.se_reward - 1.0).abs() < 0.25,
                    "{b1} vs {}",
                    e.se_reward
                );
                assert!((b2 / e.se_rate - 1.0).abs() < 0.25, "{b2} vs {}", e.se_rate);
            }
            m1 += e.rate;
            m2 += e.rate * e.rate;
            se_mean += e.se_rate;
            assert!((e.reward - exact.reward).abs() < 5.0 * e.se_reward);
        }
        let mean = m1 / reps as f64;
        let sd = (m2 / reps as f64 - mean * mean).sqrt();
        se_mean /= reps as f64;
        assert!(
            (mean - exact.kl).abs() < 4.0 * sd / (reps as f64).sqrt() + 1e-3,
            "{mean} vs {}",
            exact.kl
        );
        assert!(
            (se_mean / sd - 1.0).abs() < 0.2,
            "delta SE {se_mean} vs replicate sd {sd}"
        );
    }

    #[test]
    fn bad_input_is_an_error() {
        assert!(TiltProblem::new(&[1.0], &[0.5, 0.6], &[0.0, 1.0], 2, SUM_TOL_F64).is_err());
        assert!(TiltProblem::new(&[1.0], &[0.5, 0.5], &[0.0], 2, SUM_TOL_F64).is_err());
        assert!(TiltProblem::new(&[1.0], &[0.5, 0.5], &[0.0, f64::NAN], 2, SUM_TOL_F64).is_err());
        let prob = single(&[0.5, 0.5], &[0.0, 1.0]);
        assert!(prob.tilt(f64::INFINITY).is_err());
        let t = prob.tilt(1e300).unwrap();
        assert!((t.kl - LN2).abs() < 1e-12 && t.reward == 1.0);
        assert!(single(&[0.5, 0.5], &[0.0, 10.0]).tilt(1e308).is_err());
        assert!(prob.at_reward(f64::NAN).is_err());
        assert!(channel_problem(&[0.5, 0.5], &[1.0, 0.0, 0.0], 2, SUM_TOL_F64).is_err());
        assert!(best_of_n_exact(&[0.5, 0.5], &[1.0], 2, SUM_TOL_F64).is_err());
        assert!(best_of_n_exact(&[0.5, 0.5], &[1.0, 2.0], 0, SUM_TOL_F64).is_err());
        assert!(importance_estimate(&[1.0], 1.0, 0, 0).is_err());
        assert!(importance_estimate(&[1.0, f64::INFINITY], 1.0, 0, 0).is_err());
        assert!(importance_estimate(&[1.0, 2.0], f64::NAN, 0, 0).is_err());
        // Extreme λ stays finite.
        let e = importance_estimate(&[0.0, 1.0, 2.0], 1e6, 10, 0).unwrap();
        assert!(e.rate.is_finite() && e.reward == 2.0 && (e.ess - 1.0).abs() < 1e-12);
    }
}
