//! `gromov_wasserstein` (`docs/measures.md` M11): the Gromov–Wasserstein discrepancy
//! between two embedding clouds, which need not share a dimension or a vocabulary.
//!
//! Each cloud is a seeded subsample of m points (uniform weights); the cost within a cloud
//! is the cosine distance `1 − cos`. The value is the square-loss GW objective
//! `min_T Σ_{i,j,k,l} (C1_ik − C2_jl)² T_ij T_kl` over couplings T of the two uniform laws,
//! found by the exact conditional-gradient solver of Peyré, Cuturi & Solomon (2016) as POT's
//! `ot.gromov.gromov_wasserstein2` runs it: start from the product coupling, solve the
//! linearised problem exactly (with equal sizes and uniform weights the optimal transport
//! plan is a permutation, found by the Hungarian method), take the exact line-search step
//! of the quadratic objective, and stop when the objective changes by less than 1e-9
//! (relative or absolute). GW is not convex: this is a local optimum from the product
//! start, the same one POT reaches. Cost per iteration O(m³).

use super::linalg::assignment;
use super::rows::{cloud_rows, Cloud};
use crate::streams::rng::Rng;
use serde_json::json;
use tokit_sdk::{bail, Metric, MetricInput, MetricOutput, Result, Unit};

/// Cosine-distance matrix `1 − cos(x_i, x_j)` of `n` rows of length `d`.
pub fn cosine_cost(rows: &[f64], n: usize, d: usize) -> Result<Vec<f64>> {
    let norms: Vec<f64> = rows
        .chunks(d)
        .map(|r| r.iter().map(|x| x * x).sum::<f64>().sqrt())
        .collect();
    if let Some(i) = norms.iter().position(|&x| !(x > 0.0 && x.is_finite())) {
        bail!("gromov_wasserstein: point {i} has norm {}", norms[i]);
    }
    let mut c = vec![0.0; n * n];
    for i in 0..n {
        for j in i + 1..n {
            let dot: f64 = rows[i * d..(i + 1) * d]
                .iter()
                .zip(&rows[j * d..(j + 1) * d])
                .map(|(a, b)| a * b)
                .sum();
            let v = 1.0 - dot / (norms[i] * norms[j]);
            c[i * n + j] = v;
            c[j * n + i] = v;
        }
    }
    Ok(c)
}

/// `A B` for n × n row-major matrices.
fn matmul(a: &[f64], b: &[f64], n: usize) -> Vec<f64> {
    let mut c = vec![0.0; n * n];
    for i in 0..n {
        let ci = &mut c[i * n..(i + 1) * n];
        for k in 0..n {
            let aik = a[i * n + k];
            if aik == 0.0 {
                continue;
            }
            for (x, &y) in ci.iter_mut().zip(&b[k * n..(k + 1) * n]) {
                *x += aik * y;
            }
        }
    }
    c
}

fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// The solver's result: objective, coupling and iterations.
pub struct Gw {
    pub value: f64,
    /// n × n coupling, rows summing to 1/n.
    pub coupling: Vec<f64>,
    pub iterations: usize,
}

/// Square-loss GW between symmetric n × n cost matrices with uniform weights (the
/// conditional-gradient solver described in the module doc).
pub fn gromov_wasserstein(c1: &[f64], c2: &[f64], n: usize, max_iter: usize) -> Gw {
    let w = 1.0 / n as f64;
    // constC_ij = Σ_k C1_ik² p_k + Σ_l C2_jl² q_l.
    let s1: Vec<f64> = (0..n)
        .map(|i| c1[i * n..(i + 1) * n].iter().map(|x| x * x * w).sum())
        .collect();
    let s2: Vec<f64> = (0..n)
        .map(|j| c2[j * n..(j + 1) * n].iter().map(|x| x * x * w).sum())
        .collect();
    let const_c: Vec<f64> = (0..n * n).map(|ij| s1[ij / n] + s2[ij % n]).collect();
    // C2ᵀ = C2 (symmetric). CT = C1 T C2ᵀ, kept up to date along the iterations.
    let r1: Vec<f64> = (0..n)
        .map(|i| c1[i * n..(i + 1) * n].iter().sum())
        .collect();
    let r2: Vec<f64> = (0..n)
        .map(|j| c2[j * n..(j + 1) * n].iter().sum())
        .collect();
    let mut t = vec![w * w; n * n];
    let mut ct: Vec<f64> = (0..n * n)
        .map(|ij| r1[ij / n] * r2[ij % n] * w * w)
        .collect();
    let loss = |t: &[f64], ct: &[f64]| dot(&const_c, t) - 2.0 * dot(ct, t);
    let mut cost = loss(&t, &ct);
    let mut it = 0;
    while it < max_iter {
        it += 1;
        let old = cost;
        // Gradient 2 (constC − 2 CT); constants per row and column do not move the optimum.
        let grad: Vec<f64> = const_c
            .iter()
            .zip(&ct)
            .map(|(c, x)| 2.0 * (c - 2.0 * x))
            .collect();
        let perm = assignment(&grad, n);
        // CP = C1 P C2ᵀ with P_{k, perm[k]} = 1/n: (C1 P)_{i, perm[k]} = C1_ik / n.
        let mut c1p = vec![0.0; n * n];
        for i in 0..n {
            for (k, &pk) in perm.iter().enumerate() {
                c1p[i * n + pk] = c1[i * n + k] * w;
            }
        }
        let cp = matmul(&c1p, c2, n);
        let mut delta = vec![0.0; n * n];
        for (k, &pk) in perm.iter().enumerate() {
            delta[k * n + pk] = w;
        }
        delta.iter_mut().zip(&t).for_each(|(d, x)| *d -= x);
        let cd: Vec<f64> = cp.iter().zip(&ct).map(|(p, x)| p - x).collect();
        // f(T + αΔ) = f(T) + bα + aα² (POT's solve_gromov_linesearch with hC2 = 2 C2).
        let a = -2.0 * dot(&cd, &delta);
        let b = dot(&const_c, &delta) - 4.0 * dot(&cd, &t);
        let alpha = if a > 0.0 {
            (-b / (2.0 * a)).clamp(0.0, 1.0)
        } else if a + b < 0.0 {
            1.0
        } else {
            0.0
        };
        t.iter_mut().zip(&delta).for_each(|(x, d)| *x += alpha * d);
        ct.iter_mut().zip(&cd).for_each(|(x, d)| *x += alpha * d);
        cost += a * alpha * alpha + b * alpha;
        let abs = (cost - old).abs();
        if abs < 1e-9 || (cost != 0.0 && abs / cost.abs() < 1e-9) {
            break;
        }
    }
    // The objective recomputed from T (the running value accumulates rounding).
    let value = loss(&t, &ct).max(0.0);
    Gw {
        value,
        coupling: t,
        iterations: it,
    }
}

/// `m` distinct indices of `0..n` (all of them, in order, when m ≥ n), seeded.
pub fn subsample(n: usize, m: usize, rng: &mut Rng) -> Vec<usize> {
    if m >= n {
        return (0..n).collect();
    }
    let mut ids: Vec<usize> = (0..n).collect();
    for i in 0..m {
        let j = i + rng.below(n - i);
        ids.swap(i, j);
    }
    let mut out = ids[..m].to_vec();
    out.sort_unstable();
    out
}

/// The `gromov_wasserstein` metric.
pub struct GromovWasserstein;

/// Largest subsample: the solver is O(m³) per iteration with m² memory.
pub const MAX_POINTS: usize = 2000;

tokit_sdk::params! {
    pub struct Params {
        /// points drawn from each cloud (≤ 2000)
        m: usize = 500,
        /// seed of the subsamples
        seed: u64 = 0,
        /// conditional-gradient iterations at most
        max_iter: usize = 1000,
    }
}

impl Metric for GromovWasserstein {
    const NAME: &'static str = "gromov_wasserstein";
    const DESCRIPTION: &'static str = "Gromov–Wasserstein discrepancy (M11) between two embedding clouds with cosine-distance costs: the model's embedding rows (or an input tensor `cloud` [n, d]) against an input tensor `other` [n', d'] (e.g. another model's hook_embed rows); m points of each drawn with `seed`, uniform weights, square loss, exact conditional-gradient solver (as POT's gromov_wasserstein2)";
    const UNIT: Unit = Unit::Dimensionless;
    type Params = Params;

    fn compute(input: &MetricInput, p: Params) -> Result<MetricOutput> {
        if p.m < 2 || p.m > MAX_POINTS {
            bail!(
                "gromov_wasserstein: `m` must be in 2..={MAX_POINTS}, got {}",
                p.m
            );
        }
        if p.max_iter == 0 {
            bail!("gromov_wasserstein: `max_iter` must be positive");
        }
        let mut rng = Rng::new(p.seed);
        let other = Cloud::from_tensor(input.tensor("other")?, "other")?;
        let (n1, from) = match (&input.model, input.tensors.iter().find(|(n, _)| n == "cloud")) {
            (Some(_), Some(_)) => bail!("gromov_wasserstein: give either a `model` or an input tensor `cloud`, not both"),
            (None, Some((_, t))) => {
                let c = Cloud::from_tensor(t, "cloud")?;
                (c.n, Some(c))
            }
            (Some(m), None) => (m.info()?.vocab_size, None),
            (None, None) => bail!("gromov_wasserstein: needs a `model` or an input tensor `cloud` [n, d], and an input tensor `other`"),
        };
        let m = p.m.min(n1).min(other.n);
        if m < 2 {
            bail!("gromov_wasserstein: each cloud needs at least 2 points");
        }
        let ids1 = subsample(n1, m, &mut rng);
        let ids2 = subsample(other.n, m, &mut rng);
        let a = match from {
            Some(c) => c.select(&ids1),
            None => cloud_rows(input.model()?, &ids1, "gromov_wasserstein")?,
        };
        let b = other.select(&ids2);
        let c1 = cosine_cost(&a.data, m, a.d)?;
        let c2 = cosine_cost(&b.data, m, b.d)?;
        let gw = gromov_wasserstein(&c1, &c2, m, p.max_iter);
        let mut params = input.params.clone();
        params.insert("m".into(), json!(m));
        params.insert("seed".into(), json!(p.seed));
        params.insert("max_iter".into(), json!(p.max_iter));
        let mut out = MetricOutput {
            value: Some(gw.value),
            unit: Unit::Dimensionless,
            estimator: "exact conditional gradient (square loss, uniform weights), local optimum from the product coupling".into(),
            params,
            ..Default::default()
        }
        .scalar("points", m as f64)
        .scalar("iterations", gw.iterations as f64)
        .scalar("dim_a", a.d as f64)
        .scalar("dim_b", b.d as f64);
        if gw.iterations == p.max_iter {
            out.notes.push(format!(
                "stopped at max_iter = {} before the 1e-9 tolerance",
                p.max_iter
            ));
        }
        out.notes.push("cost 1 − cos within each cloud; value = Σ (C1_ik − C2_jl)² T_ij T_kl at the solver's coupling (POT gromov_wasserstein2 convention, not its square root)".into());
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cloud(n: usize, d: usize, seed: u64) -> Vec<f64> {
        let mut rng = Rng::new(seed);
        (0..n * d).map(|_| rng.normal()).collect()
    }

    /// M11: GW between a cloud and a rotated copy is 0 (cosine costs are rotation-invariant).
    #[test]
    fn rotated_copy_has_zero_distance() {
        let (n, d) = (60, 5);
        let x = cloud(n, d, 1);
        // A rotation in each of the planes (0, 1) and (2, 4).
        let (c, s) = (0.6f64, 0.8f64);
        let mut y = x.clone();
        for r in y.chunks_mut(d) {
            let (a, b) = (r[0], r[1]);
            r[0] = c * a - s * b;
            r[1] = s * a + c * b;
            let (a, b) = (r[2], r[4]);
            r[2] = c * a + s * b;
            r[4] = -s * a + c * b;
        }
        let gw = gromov_wasserstein(
            &cosine_cost(&x, n, d).unwrap(),
            &cosine_cost(&y, n, d).unwrap(),
            n,
            1000,
        );
        assert!(gw.value < 1e-12, "{}", gw.value);
        // A permuted copy too: the coupling then is that permutation.
        let perm: Vec<usize> = (0..n).map(|i| (i * 7 + 3) % n).collect();
        let z: Vec<f64> = perm
            .iter()
            .flat_map(|&i| x[i * d..(i + 1) * d].to_vec())
            .collect();
        let gw = gromov_wasserstein(
            &cosine_cost(&x, n, d).unwrap(),
            &cosine_cost(&z, n, d).unwrap(),
            n,
            1000,
        );
        assert!(gw.value < 1e-12, "{}", gw.value);
        // Two unrelated clouds are not at distance 0, and the coupling has uniform marginals.
        let w = cloud(n, d, 2);
        let gw = gromov_wasserstein(
            &cosine_cost(&x, n, d).unwrap(),
            &cosine_cost(&w, n, d).unwrap(),
            n,
            1000,
        );
        assert!(gw.value > 1e-3);
        for i in 0..n {
            let row: f64 = gw.coupling[i * n..(i + 1) * n].iter().sum();
            let col: f64 = (0..n).map(|k| gw.coupling[k * n + i]).sum();
            assert!((row - 1.0 / n as f64).abs() < 1e-12 && (col - 1.0 / n as f64).abs() < 1e-12);
        }
    }

    #[test]
    fn subsample_is_seeded_sorted_and_distinct() {
        let a = subsample(100, 10, &mut Rng::new(3));
        assert_eq!(a, subsample(100, 10, &mut Rng::new(3)));
        assert!(a.windows(2).all(|w| w[0] < w[1]) && a.len() == 10 && a[9] < 100);
        assert_eq!(subsample(5, 10, &mut Rng::new(3)), vec![0, 1, 2, 3, 4]);
    }
}
