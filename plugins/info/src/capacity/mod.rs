//! `memory_capacity` (`docs/measures.md` M9): how many patterns a model's readouts and
//! attention heads can store, from the standard capacity results and the model's config.
//!
//! - Gardner (1988): a spherical perceptron with N inputs stores P = α N random ±1
//!   dichotomies at margin κ up to `α_c(κ) = 1 / [(1 + κ²) Φ(κ) + κ φ(κ)]` (α_c(0) = 2).
//! - Cover (1965): N-input linear threshold units realise `C(P, N) = 2 Σ_{k<N} binom(P−1, k)`
//!   of the 2^P dichotomies of P points in general position; the fraction is ½ at P = 2N.
//! - Classical Hopfield network (Amit, Gutfreund & Sompolinsky 1985): 0.138 patterns per
//!   neuron.
//! - Exponential (softmax) energy, the attention case (Demircigil et al. 2017; Ramsauer et
//!   al. 2020): `exp(α d)` patterns with `α = I(1 − 2ρ)/2`, `I(x) = ½[(1+x)ln(1+x) +
//!   (1−x)ln(1−x)]`, ρ the fraction of corrupted components retrieval must correct; at
//!   ρ = 0 that is `2^{d/2}` per head of dimension d.
//!
//! The paper states that a Transformer's capacity grows exponentially with its size; its
//! exact formula was not visible, so this metric is a reconstruction from these results.
//! The empirical probe is [`probe`] (`capacity_probe`).

pub mod probe;

use serde_json::json;
use statrs::function::beta::beta_reg;
use statrs::function::erf::erfc;
use tokit_sdk::{bail, Metric, MetricInput, MetricOutput, Result, Unit};

/// Standard normal CDF Φ.
pub fn normal_cdf(x: f64) -> f64 {
    0.5 * erfc(-x / std::f64::consts::SQRT_2)
}

/// Standard normal density φ.
pub fn normal_pdf(x: f64) -> f64 {
    (-0.5 * x * x).exp() / (2.0 * std::f64::consts::PI).sqrt()
}

/// Gardner's critical load `α_c(κ) = [∫_{−κ}^∞ Dt (t + κ)²]⁻¹` in closed form.
pub fn gardner_alpha_c(kappa: f64) -> f64 {
    1.0 / ((1.0 + kappa * kappa) * normal_cdf(kappa) + kappa * normal_pdf(kappa))
}

/// Cover's count `C(P, N) = 2 Σ_{k=0}^{N−1} binom(P−1, k)`, summed in f64 (exact while the
/// terms stay below 2^53, e.g. P ≤ 50).
pub fn cover_count(p: u64, n: u64) -> f64 {
    if p == 0 {
        return 1.0;
    }
    let mut sum = 0.0;
    let mut b = 1.0; // binom(P−1, k)
    for k in 0..n.min(p) {
        sum += b;
        b = b * (p - 1 - k) as f64 / (k + 1) as f64;
    }
    2.0 * sum
}

/// The fraction `C(P, N) / 2^P` of dichotomies an N-input threshold unit realises:
/// `P(Bin(P−1, ½) ≤ N−1)`, through the regularised incomplete beta function, so it holds
/// for any size.
pub fn cover_fraction(p: u64, n: u64) -> f64 {
    if p == 0 || n >= p {
        return 1.0;
    }
    if n == 0 {
        return 0.0;
    }
    // P(Bin(m, ½) ≤ k) = I_{1/2}(m − k, k + 1) for k < m.
    let (m, k) = ((p - 1) as f64, (n - 1) as f64);
    beta_reg(m - k, k + 1.0, 0.5)
}

/// Hopfield's load limit for the classical (quadratic-energy) network, patterns per neuron.
pub const HOPFIELD_ALPHA: f64 = 0.138;

/// The exponent α of the exponential-energy capacity `exp(α d)`: `I(1 − 2ρ)/2` with
/// `I(x) = ½[(1+x) ln(1+x) + (1−x) ln(1−x)]` (Demircigil et al. 2017); `ln 2 / 2` at ρ = 0.
pub fn exponential_rate(rho: f64) -> f64 {
    let x = 1.0 - 2.0 * rho;
    let xlx = |y: f64| if y == 0.0 { 0.0 } else { y * y.ln() };
    0.5 * (0.5 * (xlx(1.0 + x) + xlx(1.0 - x)))
}

/// The `memory_capacity` metric.
pub struct MemoryCapacity;

tokit_sdk::params! {
    pub struct Params {
        /// Gardner margin κ ≥ 0
        kappa: f64 = 0.0,
        /// fraction ρ in [0, ½) of corrupted components the exponential (attention) memory must correct
        rho: f64 = 0.0,
        /// input dimension N of the Cover curve and the estimates when no model is given
        dim: usize = 100,
        /// points of the Cover curve, over P/N in (0, 4]
        num_points: usize = 80,
    }
}

impl Metric for MemoryCapacity {
    const NAME: &'static str = "memory_capacity";
    const DESCRIPTION: &'static str = "memory capacity (M9, reconstruction): Gardner's α_c(κ) (value and scalar gardner_alpha_c), Cover's counting curve, and from a model's config (or `dim`) the linear (α_c(κ)·d per readout), Hopfield (0.138·d) and exponential per-head (exp(α d_head), α = I(1−2ρ)/2) capacity estimates";
    const UNIT: Unit = Unit::Dimensionless;
    const RECONSTRUCTION: bool = true;
    type Params = Params;

    fn compute(input: &MetricInput, p: Params) -> Result<MetricOutput> {
        if !(p.kappa.is_finite() && p.kappa >= 0.0) {
            bail!(
                "memory_capacity: `kappa` must be a finite number ≥ 0, got {}",
                p.kappa
            );
        }
        if !(0.0..0.5).contains(&p.rho) {
            bail!("memory_capacity: `rho` must be in [0, 0.5), got {}", p.rho);
        }
        if p.num_points < 2 {
            bail!("memory_capacity: `num_points` must be at least 2");
        }
        let alpha = gardner_alpha_c(p.kappa);
        if input.model.is_some() && input.params.contains_key("dim") {
            bail!("memory_capacity: `dim` applies without a model; with one the dimension is its d_model");
        }
        let info = match &input.model {
            Some(m) => Some(m.info()?),
            None => None,
        };
        let d = info.as_ref().map_or(p.dim, |i| i.d_model);
        if d == 0 {
            bail!("memory_capacity: the dimension must be positive");
        }
        let mut params = input.params.clone();
        for (k, v) in [
            ("kappa", json!(p.kappa)),
            ("rho", json!(p.rho)),
            ("dim", json!(d)),
            ("num_points", json!(p.num_points)),
        ] {
            params.insert(k.into(), v);
        }
        let mut out = MetricOutput {
            value: Some(alpha),
            unit: Unit::Dimensionless,
            estimator: "closed form (Gardner, Cover, Hopfield, dense associative memory)".into(),
            params,
            ..Default::default()
        }
        .scalar("gardner_alpha_c", alpha)
        .scalar("dimension", d as f64)
        .scalar("linear_capacity", alpha * d as f64)
        .scalar(
            "cover_fraction_at_2n",
            cover_fraction(2 * d as u64, d as u64),
        )
        .scalar("hopfield_capacity", HOPFIELD_ALPHA * d as f64);
        let rate = exponential_rate(p.rho);
        out = out.scalar("exponential_rate", rate);
        // Per-head capacity of a softmax attention memory, when the config has heads.
        let heads = info.as_ref().and_then(|i| {
            let (h, dh) = (i.extra["n_heads"].as_u64()?, i.extra["head_dim"].as_u64()?);
            let attention = i.extra["model_type"].as_str() != Some("mamba2");
            attention.then_some((h as f64, dh as f64, i.n_layers as f64))
        });
        match heads {
            Some((h, dh, layers)) => {
                out = out
                    .scalar("head_dim", dh)
                    .scalar("attention_heads", h * layers)
                    .scalar("exp_capacity_per_head", (rate * dh).exp())
                    .scalar("exp_capacity_log2_per_head", rate * dh / std::f64::consts::LN_2);
            }
            None => out.notes.push(
                "no softmax-attention heads in the config (or no model): the exponential per-head estimate is left out".into(),
            ),
        }
        out.notes.push(
            "capacities in patterns: linear = α_c(κ)·d_model random dichotomies per linear readout (Gardner), hopfield = 0.138·d_model, exp_capacity_per_head = exp(α·head_dim) (dense associative memory with softmax energy); reconstruction of the paper's capacity claim from these standard results".into(),
        );
        // Cover's fraction against the load P/N, and Gardner's α_c against κ.
        let n = p.num_points;
        let loads: Vec<f32> = (1..=n)
            .map(|i| (4.0 * i as f64 / n as f64) as f32)
            .collect();
        let frac: Vec<f32> = loads
            .iter()
            .map(|&a| cover_fraction((a as f64 * d as f64).round() as u64, d as u64) as f32)
            .collect();
        let kappas: Vec<f32> = (0..n)
            .map(|i| (3.0 * i as f64 / (n - 1) as f64) as f32)
            .collect();
        let alphas: Vec<f32> = kappas
            .iter()
            .map(|&k| gardner_alpha_c(k as f64) as f32)
            .collect();
        out.plot = Some(json!({
            "kind": "lines", "x": "load", "y": ["cover_fraction"],
            "x_label": "load P/N", "y_label": "fraction of dichotomies realised",
        }));
        out.tensor("load", &loads, &[n])?
            .tensor("cover_fraction", &frac, &[n])?
            .tensor("kappa_grid", &kappas, &[n])?
            .tensor("gardner_curve", &alphas, &[n])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// T22.
    #[test]
    fn t22_gardner_alpha_c() {
        for (k, want) in [
            (0.0, 2.0),
            (0.5, 0.9612051),
            (1.0, 0.5195722),
            (2.0, 0.2002310),
        ] {
            let a = gardner_alpha_c(k);
            assert!((a - want).abs() < 5e-8, "α_c({k}) = {a}, want {want}");
        }
        // The closed form is the integral's inverse: midpoint rule on [−κ, 12].
        for k in [0.0, 0.3, 1.7] {
            let (lo, hi, steps) = (-k, 12.0, 200_000);
            let h = (hi - lo) / steps as f64;
            let integral: f64 = (0..steps)
                .map(|i| {
                    let t = lo + (i as f64 + 0.5) * h;
                    normal_pdf(t) * (t + k) * (t + k) * h
                })
                .sum();
            assert!((1.0 / integral - gardner_alpha_c(k)).abs() < 1e-8);
        }
    }

    /// T23: C(2N, N)/2^{2N} = ½ and C(N, N) = 2^N.
    #[test]
    fn t23_cover_counting() {
        for n in [5u64, 10, 20] {
            let exact = cover_count(2 * n, n) / 2f64.powi(2 * n as i32);
            assert_eq!(exact, 0.5, "N = {n}");
            assert!(
                (cover_fraction(2 * n, n) - 0.5).abs() < 1e-12,
                "{}",
                cover_fraction(2 * n, n) - 0.5
            );
            assert_eq!(cover_count(n, n), 2f64.powi(n as i32));
            assert_eq!(cover_fraction(n, n), 1.0);
        }
        // The beta-function form agrees with the sum wherever the sum is exact.
        for p in 1..=40u64 {
            for n in 1..=20u64 {
                let a = cover_count(p, n) / 2f64.powi(p as i32);
                assert!((a - cover_fraction(p, n)).abs() < 1e-12, "P = {p}, N = {n}");
            }
        }
        // Far above 2N almost no dichotomy is realisable, for a large N too.
        assert!((cover_fraction(2 * 576, 576) - 0.5).abs() < 1e-12);
        assert!(cover_fraction(4 * 576, 576) < 1e-30);
    }

    #[test]
    fn exponential_rate_is_half_ln2_without_noise_and_falls_with_rho() {
        assert!((exponential_rate(0.0) - std::f64::consts::LN_2 / 2.0).abs() < 1e-15);
        assert!(exponential_rate(0.1) < exponential_rate(0.0));
        assert!(exponential_rate(0.49) > 0.0 && exponential_rate(0.49) < 1e-3);
    }
}
