//! Small numeric helpers shared by the rate modules: log-sum-exp, entropies,
//! validation of laws and matrices, the f32 ↔ f64 conversions of tensors, and a tiny
//! seeded random number generator (the deterministic restarts and bootstraps must give
//! the same numbers on every machine).
//!
//! Everything is f64 and in **nats**; conversion to bits happens only on output
//! ([`tokit_sdk::InfoUnit`]).

use multiversion::multiversion;
use tokit_sdk::{bail, Result};

/// `ln 2`.
pub const LN2: f64 = std::f64::consts::LN_2;

/// Tolerance on `Σ p = 1` for laws given as JSON numbers (f64).
pub const SUM_TOL_F64: f64 = 1e-9;
/// Tolerance on `Σ p = 1` for laws given as f32 tensors (rounding of each entry to f32).
pub const SUM_TOL_F32: f64 = 1e-6;

/// A host tensor's `f32` values as `f64` (exact), vectorized: a 1000 × 1000 matrix is
/// converted in a fraction of a millisecond, not a millisecond.
#[multiversion(targets("x86_64+avx512f+avx512vl+avx2+fma", "x86_64+avx2+fma"))]
pub fn widen(v: &[f32]) -> Vec<f64> {
    v.iter().map(|&x| f64::from(x)).collect()
}

/// `f64` values as a result tensor's `f32` (rounded; non-finite values become NaN, shown as
/// `-`), vectorized as [`widen`].
#[multiversion(targets("x86_64+avx512f+avx512vl+avx2+fma", "x86_64+avx2+fma"))]
pub fn narrow(v: &[f64]) -> Vec<f32> {
    v.iter()
        .map(|&x| if x.is_finite() { x as f32 } else { f32::NAN })
        .collect()
}

/// `ln Σ exp(x_i)`, exact for `-inf` entries; `-inf` when all are `-inf` (or empty).
pub fn lse(xs: &[f64]) -> f64 {
    let m = xs.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    if m == f64::NEG_INFINITY {
        return f64::NEG_INFINITY;
    }
    let s: f64 = xs.iter().map(|&x| (x - m).exp()).sum();
    m + s.ln()
}

/// `ln` that maps 0 to `-inf` (and never yields NaN for valid probabilities).
pub fn ln0(p: f64) -> f64 {
    if p > 0.0 {
        p.ln()
    } else {
        f64::NEG_INFINITY
    }
}

/// `−Σ p ln p` in nats, with `0 ln 0 = 0`.
pub fn entropy(p: &[f64]) -> f64 {
    -p.iter()
        .filter(|&&x| x > 0.0)
        .map(|&x| x * x.ln())
        .sum::<f64>()
}

/// Binary entropy `h(p)` in nats.
pub fn h2(p: f64) -> f64 {
    entropy(&[p, 1.0 - p])
}

/// Check that `p` is a law (finite, non-negative, summing to 1 within `tol`) and return it
/// renormalised to sum exactly to 1 (up to rounding).
pub fn check_pmf(what: &str, p: &[f64], tol: f64) -> Result<Vec<f64>> {
    if p.is_empty() {
        bail!("{what}: empty law");
    }
    for (i, &x) in p.iter().enumerate() {
        if !x.is_finite() {
            bail!("{what}: entry {i} is {x}, expected a finite probability");
        }
        if x < 0.0 {
            bail!("{what}: entry {i} is negative ({x})");
        }
    }
    let s: f64 = p.iter().sum();
    if (s - 1.0).abs() > tol {
        bail!("{what}: probabilities sum to {s}, expected 1 (tolerance {tol:e})");
    }
    Ok(p.iter().map(|&x| x / s).collect())
}

/// Check a row-major `rows × cols` matrix of finite numbers (and non-negative ones when
/// `nonneg`).
pub fn check_matrix(what: &str, m: &[f64], rows: usize, cols: usize, nonneg: bool) -> Result<()> {
    if rows == 0 || cols == 0 {
        bail!("{what}: empty matrix ({rows} × {cols})");
    }
    if m.len() != rows * cols {
        bail!(
            "{what}: expected {rows} × {cols} = {} entries, found {}",
            rows * cols,
            m.len()
        );
    }
    // A branch-free scan first (it vectorizes); the entry is located only on failure.
    let ok = m.chunks(4096).all(|c| {
        c.iter()
            .fold(true, |ok, &v| ok & v.is_finite() & (!nonneg | (v >= 0.0)))
    });
    if ok {
        return Ok(());
    }
    for (k, &v) in m.iter().enumerate() {
        if !v.is_finite() {
            bail!(
                "{what}: entry ({}, {}) is {v}, expected a finite number",
                k / cols,
                k % cols
            );
        }
        if nonneg && v < 0.0 {
            bail!(
                "{what}: entry ({}, {}) is negative ({v})",
                k / cols,
                k % cols
            );
        }
    }
    Ok(())
}

/// Hamming distortion on an alphabet of size `n` (`n × n`, 0 on the diagonal, 1 off it).
pub fn hamming(n: usize) -> Vec<f64> {
    (0..n * n)
        .map(|k| if k / n == k % n { 0.0 } else { 1.0 })
        .collect()
}

/// SplitMix64: a tiny, fast, seeded generator (Steele, Lea & Flood 2014). Not
/// cryptographic; used for deterministic restarts and bootstrap resampling.
#[derive(Clone, Debug)]
pub struct SplitMix64(u64);

impl SplitMix64 {
    pub fn new(seed: u64) -> SplitMix64 {
        SplitMix64(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in the open interval (0, 1).
    pub fn uniform(&mut self) -> f64 {
        ((self.next_u64() >> 11) as f64 + 0.5) / (1u64 << 53) as f64
    }

    /// Uniform index in `0..n` (`n > 0`).
    pub fn below(&mut self, n: usize) -> usize {
        ((self.uniform() * n as f64) as usize).min(n - 1)
    }

    /// A uniformly random point of the simplex (Dirichlet(1, …, 1)), every entry > 0.
    pub fn simplex(&mut self, n: usize) -> Vec<f64> {
        let e: Vec<f64> = (0..n).map(|_| -self.uniform().ln()).collect();
        let s: f64 = e.iter().sum();
        e.iter().map(|x| x / s).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokit_sdk::{InfoUnit, ParamValue};

    #[test]
    fn lse_handles_infinities() {
        assert_eq!(lse(&[]), f64::NEG_INFINITY);
        assert_eq!(
            lse(&[f64::NEG_INFINITY, f64::NEG_INFINITY]),
            f64::NEG_INFINITY
        );
        assert!((lse(&[0.0, f64::NEG_INFINITY]) - 0.0).abs() < 1e-15);
        assert!((lse(&[1000.0, 1000.0]) - (1000.0 + LN2)).abs() < 1e-12);
        assert!((lse(&[-1000.0, -1000.0]) - (-1000.0 + LN2)).abs() < 1e-12);
    }

    #[test]
    fn entropies_and_units() {
        assert!((InfoUnit::Bits.from_nats(h2(0.5)) - 1.0).abs() < 1e-15);
        assert!((InfoUnit::Bits.from_nats(h2(0.1)) - 0.468_995_593_589_281_2).abs() < 1e-12);
        assert_eq!(h2(0.0), 0.0);
        assert!((InfoUnit::Bits.to_nats(1.0) - LN2).abs() < 1e-15);
        assert!(<InfoUnit as ParamValue>::from_json(&serde_json::json!("furlongs")).is_err());
    }

    #[test]
    fn pmf_validation() {
        assert!(check_pmf("p", &[0.5, 0.5], SUM_TOL_F64).is_ok());
        assert!(check_pmf("p", &[0.5, 0.6], SUM_TOL_F64).is_err());
        assert!(check_pmf("p", &[1.5, -0.5], SUM_TOL_F64).is_err());
        assert!(check_pmf("p", &[f64::NAN, 1.0], SUM_TOL_F64).is_err());
        assert!(check_pmf("p", &[], SUM_TOL_F64).is_err());
        assert!(check_matrix("d", &[0.0, 1.0, 1.0], 2, 2, true).is_err());
        assert!(check_matrix("d", &[0.0, -1.0, 1.0, 0.0], 2, 2, true).is_err());
        assert!(check_matrix("d", &[0.0, f64::INFINITY, 1.0, 0.0], 2, 2, false).is_err());
    }

    #[test]
    fn rng_is_deterministic_and_in_range() {
        let mut a = SplitMix64::new(7);
        let mut b = SplitMix64::new(7);
        for _ in 0..1000 {
            let u = a.uniform();
            assert_eq!(u, b.uniform());
            assert!(u > 0.0 && u < 1.0);
        }
        let s = a.simplex(5);
        assert!((s.iter().sum::<f64>() - 1.0).abs() < 1e-14);
        assert!(s.iter().all(|&x| x > 0.0));
        assert!((0..1000).all(|_| a.below(3) < 3));
    }
}
