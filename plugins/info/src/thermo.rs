//! Boltzmann ("thermodynamic") view of one next-token law (MEASURES.md M1), and the
//! per-row logit norms that feed the generalization bound (MEASURES.md M10).
//!
//! A logit row `z ∈ R^|V|` at temperature `T > 0` defines the Boltzmann law
//!
//! ```text
//! E(v) = −z(v)                 energy
//! Z    = Σ_v exp(−E(v)/T)      partition function
//! p(v) = exp(−E(v)/T) / Z
//! F    = −T ln Z               free energy
//! U    = Σ_v p(v) E(v)         internal energy
//! H    = (U − F)/T             entropy (nats) = −Σ p ln p
//! C    = Var_p(E) / T²         heat capacity
//! −ln p(x) = (E(x) − F)/T      surprisal
//! ```
//!
//! `T = 1` is the model's own law. All arithmetic is f64 on the (usually f32) logits;
//! `ln Z` is a log-sum-exp shifted by the row maximum, so nothing overflows.
//!
//! Masked vocabulary entries are logits equal to `−inf`: they get probability 0 and
//! contribute nothing (never `0 · ∞ = NaN`). A NaN or `+inf` logit, an empty row, a
//! row that is entirely masked, and a temperature that is not finite and > 0 are errors.
//!
//! The identities are standard [S]; reading the LLM as a Boltzmann distribution is the
//! paper's [P] (MEASURES.md §4, M1).

use std::fmt;

/// Why a Boltzmann quantity could not be computed.
#[derive(Debug, Clone, PartialEq)]
pub enum ThermoError {
    /// The temperature was not a finite number greater than 0.
    InvalidTemperature(f64),
    /// The logit row had no entries.
    EmptyLogits,
    /// Every logit was `−inf` (all of the vocabulary masked): there is no law.
    AllMasked,
    /// A logit was NaN.
    NanLogit { index: usize },
    /// A logit was `+inf`: the law would not normalise.
    InfiniteLogit { index: usize },
    /// A token id was not inside the vocabulary of the row.
    TokenOutOfRange { token: usize, vocab: usize },
    /// Two rows that must describe laws on the same vocabulary had different lengths.
    LengthMismatch { left: usize, right: usize },
}

impl fmt::Display for ThermoError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::InvalidTemperature(t) => {
                write!(f, "temperature must be finite and > 0, got {t}")
            }
            Self::EmptyLogits => write!(f, "logit row is empty (vocabulary of size 0)"),
            Self::AllMasked => {
                write!(
                    f,
                    "every logit is -inf (whole vocabulary masked): no distribution"
                )
            }
            Self::NanLogit { index } => write!(f, "logit at vocabulary index {index} is NaN"),
            Self::InfiniteLogit { index } => write!(
                f,
                "logit at vocabulary index {index} is +inf; the softmax does not normalise"
            ),
            Self::TokenOutOfRange { token, vocab } => write!(
                f,
                "token id {token} is outside the vocabulary (size {vocab}, ids 0..{vocab})"
            ),
            Self::LengthMismatch { left, right } => write!(
                f,
                "logit rows have different vocabulary sizes: {left} vs {right}"
            ),
        }
    }
}

impl std::error::Error for ThermoError {}

/// Boltzmann quantities of one logit row at one temperature (all in nats, energies in
/// logit units).
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct Boltzmann {
    /// `ln Z = ln Σ_v exp(z(v)/T)`.
    pub log_z: f64,
    /// `F = −T ln Z`.
    pub free_energy: f64,
    /// `U = Σ_v p(v) E(v) = −Σ_v p(v) z(v)`.
    pub internal_energy: f64,
    /// `H = (U − F)/T = −Σ_v p(v) ln p(v)`, nats.
    pub entropy: f64,
    /// `C = Var_p(E)/T² = Var_p(z/T)`.
    pub heat_capacity: f64,
}

/// Per-row M10 inputs. Masked (`−inf`) entries are left out: they are not logits the
/// model produced.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct LogitStats {
    /// `‖z‖_1 = Σ_v |z(v)|`.
    pub l1: f64,
    /// `‖z‖_∞ = max_v |z(v)|`.
    pub linf: f64,
    /// `max_v z(v) − min_v z(v)`.
    pub range: f64,
}

pub(crate) fn check_temperature(temperature: f64) -> Result<(), ThermoError> {
    if temperature.is_finite() && temperature > 0.0 {
        Ok(())
    } else {
        Err(ThermoError::InvalidTemperature(temperature))
    }
}

/// One pass over a row gives everything M1 needs. With `b(v) = (z(v) − z_max)/T ≤ 0`
/// and `e(v) = exp(b(v))`: `Z = exp(z_max/T) · s` where `s = Σ e = 1 + s_rest`
/// (`s_rest` leaves out the argmax, whose `e` is exactly 1, so that `ln s = ln_1p(s_rest)`
/// keeps full precision when the law is nearly deterministic).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Scan {
    temperature: f64,
    /// Largest logit (finite).
    z_max: f64,
    /// Index of the largest logit (the first one on ties).
    argmax: usize,
    /// `Σ_{v ≠ argmax} e(v)`.
    s_rest: f64,
    /// `Σ_v e(v) b(v)`.
    s1: f64,
    /// `Σ_v e(v) b(v)²`.
    s2: f64,
    /// `#{v : z(v) > z(target)}` when a target was given, 0 otherwise.
    greater: usize,
}

impl Scan {
    /// Scans `logits` at `temperature`; with a `target`, also counts the entries
    /// strictly above the target's logit (for its rank).
    pub(crate) fn new<L: Copy + Into<f64>>(
        logits: &[L],
        temperature: f64,
        target: Option<usize>,
    ) -> Result<Self, ThermoError> {
        check_temperature(temperature)?;
        if logits.is_empty() {
            return Err(ThermoError::EmptyLogits);
        }
        // +inf never compares greater, so without a target `greater` stays 0.
        let z_target = match target {
            Some(t) if t >= logits.len() => {
                return Err(ThermoError::TokenOutOfRange {
                    token: t,
                    vocab: logits.len(),
                })
            }
            Some(t) => logits[t].into(),
            None => f64::INFINITY,
        };

        // Pass 1: validate, maximum, rank count.
        let mut z_max = f64::NEG_INFINITY;
        let mut argmax = usize::MAX;
        let mut greater = 0usize;
        for (index, &z) in logits.iter().enumerate() {
            let z: f64 = z.into();
            if z.is_nan() {
                return Err(ThermoError::NanLogit { index });
            }
            if z == f64::INFINITY {
                return Err(ThermoError::InfiniteLogit { index });
            }
            if z > z_max {
                z_max = z;
                argmax = index;
            }
            greater += usize::from(z > z_target);
        }
        if z_max == f64::NEG_INFINITY {
            return Err(ThermoError::AllMasked);
        }

        // Pass 2: shifted exponentials and their first two moments.
        let mut s_rest = 0.0f64;
        let mut s1 = 0.0f64;
        let mut s2 = 0.0f64;
        for (index, &z) in logits.iter().enumerate() {
            let b = (z.into() - z_max) / temperature;
            let e = b.exp();
            // e == 0 covers masked entries (b = −inf) and underflow: they contribute
            // exactly nothing, and skipping them avoids 0 · ∞.
            if e == 0.0 {
                continue;
            }
            if index != argmax {
                s_rest += e;
            }
            s1 += e * b;
            s2 += e * b * b;
        }
        Ok(Self {
            temperature,
            z_max,
            argmax,
            s_rest,
            s1,
            s2,
            greater,
        })
    }

    /// `ln s = ln Z − z_max/T ≥ 0`.
    fn log_s(&self) -> f64 {
        self.s_rest.ln_1p()
    }

    /// `b(v)` for a raw logit.
    fn shifted(&self, z: f64) -> f64 {
        (z - self.z_max) / self.temperature
    }

    /// `ln p(v)` for a raw logit `z = z(v)` of this row (`−inf` when masked).
    pub(crate) fn log_prob(&self, z: f64) -> f64 {
        self.shifted(z) - self.log_s()
    }

    /// `−ln p(v) = (E(v) − F)/T` for a raw logit `z = z(v)` of this row.
    pub(crate) fn surprisal(&self, z: f64) -> f64 {
        self.log_s() - self.shifted(z)
    }

    pub(crate) fn argmax(&self) -> usize {
        self.argmax
    }

    /// 1-based rank of the target given to [`Scan::new`]: `1 + #{v : z(v) > z(target)}`
    /// (tied entries share the best rank).
    pub(crate) fn rank(&self) -> usize {
        self.greater + 1
    }

    pub(crate) fn boltzmann(&self) -> Boltzmann {
        let t = self.temperature;
        let log_s = self.log_s();
        let s = 1.0 + self.s_rest;
        // E_p[b] ≤ 0 and E_p[b²].
        let mean_b = self.s1 / s;
        let mean_b2 = self.s2 / s;
        // H = ln s − E_p[b]: a sum of two non-negative terms, no cancellation.
        let entropy = log_s - mean_b;
        let heat_capacity = (mean_b2 - mean_b * mean_b).max(0.0);
        // F = −T(z_max/T + ln s) and U = −T E_p[z/T] = −(z_max + T E_p[b]), written so
        // that a tiny T does not overflow z_max/T.
        let free_energy = -(self.z_max + t * log_s);
        let internal_energy = -(self.z_max + t * mean_b);
        Boltzmann {
            log_z: self.z_max / t + log_s,
            free_energy,
            internal_energy,
            entropy,
            heat_capacity,
        }
    }
}

/// Boltzmann quantities of the law `softmax(logits / temperature)`.
///
/// Errors: temperature not finite and > 0, empty row, NaN or `+inf` logit, every logit
/// `−inf`.
pub fn boltzmann<L: Copy + Into<f64>>(
    logits: &[L],
    temperature: f64,
) -> Result<Boltzmann, ThermoError> {
    Ok(Scan::new(logits, temperature, None)?.boltzmann())
}

/// Surprisal of `token` under `softmax(logits / temperature)`:
/// `(E(x) − F)/T = −ln p(x)`, in nats. `+inf` when the token is masked (`−inf` logit).
pub fn surprisal<L: Copy + Into<f64>>(
    logits: &[L],
    token: usize,
    temperature: f64,
) -> Result<f64, ThermoError> {
    let scan = Scan::new(logits, temperature, None)?;
    let z = match logits.get(token) {
        Some(&z) => z.into(),
        None => {
            return Err(ThermoError::TokenOutOfRange {
                token,
                vocab: logits.len(),
            })
        }
    };
    Ok(scan.surprisal(z))
}

/// `ln softmax(logits / temperature)` in f64; masked entries give `−inf`.
pub fn log_softmax<L: Copy + Into<f64>>(
    logits: &[L],
    temperature: f64,
) -> Result<Vec<f64>, ThermoError> {
    let scan = Scan::new(logits, temperature, None)?;
    Ok(logits.iter().map(|&z| scan.log_prob(z.into())).collect())
}

/// `KL(p ‖ q)` in nats between `p = softmax(p_logits)` and `q = softmax(q_logits)`
/// (temperature 1). See [`kl_with_temperature`].
pub fn kl<L: Copy + Into<f64>>(p_logits: &[L], q_logits: &[L]) -> Result<f64, ThermoError> {
    kl_with_temperature(p_logits, q_logits, 1.0)
}

/// `KL(p ‖ q) = Σ_v p(v) (ln p(v) − ln q(v))` in nats, both laws the softmax of their
/// logits divided by `temperature`. Exact in f64 (no sampling). Entries with `p(v) = 0`
/// (masked in `p`) contribute 0; an entry with `p(v) > 0` and `q(v) = 0` (masked in `q`
/// only) makes the divergence `+inf`. The result is never negative.
pub fn kl_with_temperature<L: Copy + Into<f64>>(
    p_logits: &[L],
    q_logits: &[L],
    temperature: f64,
) -> Result<f64, ThermoError> {
    if p_logits.len() != q_logits.len() {
        return Err(ThermoError::LengthMismatch {
            left: p_logits.len(),
            right: q_logits.len(),
        });
    }
    let p = Scan::new(p_logits, temperature, None)?;
    let q = Scan::new(q_logits, temperature, None)?;
    let mut sum = 0.0f64;
    for (&zp, &zq) in p_logits.iter().zip(q_logits) {
        let lp = p.log_prob(zp.into());
        if lp == f64::NEG_INFINITY {
            continue;
        }
        let lq = q.log_prob(zq.into());
        if lq == f64::NEG_INFINITY {
            return Ok(f64::INFINITY);
        }
        let pv = lp.exp();
        if pv > 0.0 {
            sum += pv * (lp - lq);
        }
    }
    Ok(sum.max(0.0))
}

/// `‖z‖_1`, `‖z‖_∞` and `max z − min z` of a logit row (M10 inputs), over its finite
/// entries (masked `−inf` entries are left out).
///
/// Errors: empty row, NaN or `+inf` logit, every logit `−inf`.
pub fn logit_stats<L: Copy + Into<f64>>(logits: &[L]) -> Result<LogitStats, ThermoError> {
    if logits.is_empty() {
        return Err(ThermoError::EmptyLogits);
    }
    let mut l1 = 0.0f64;
    let mut linf = 0.0f64;
    let mut max = f64::NEG_INFINITY;
    let mut min = f64::INFINITY;
    for (index, &z) in logits.iter().enumerate() {
        let z: f64 = z.into();
        if z.is_nan() {
            return Err(ThermoError::NanLogit { index });
        }
        if z == f64::INFINITY {
            return Err(ThermoError::InfiniteLogit { index });
        }
        if z == f64::NEG_INFINITY {
            continue;
        }
        l1 += z.abs();
        linf = linf.max(z.abs());
        max = max.max(z);
        min = min.min(z);
    }
    if max == f64::NEG_INFINITY {
        return Err(ThermoError::AllMasked);
    }
    Ok(LogitStats {
        l1,
        linf,
        range: max - min,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::f64::consts::LN_2;

    fn close(got: f64, want: f64, tol: f64) {
        assert!(
            (got - want).abs() <= tol,
            "got {got}, want {want} (|diff| = {} > {tol})",
            (got - want).abs()
        );
    }

    /// Deterministic pseudo-random logits (xorshift), roughly in [−scale, scale].
    fn pseudo_logits(n: usize, seed: u64, scale: f64) -> Vec<f64> {
        let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        (0..n)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                ((x >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0) * scale
            })
            .collect()
    }

    /// Naive reference: explicit probabilities, definitions as written in M1.
    fn reference(z: &[f64], t: f64) -> Boltzmann {
        let zmax = z.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
        let zsum: f64 = z.iter().map(|&v| ((v - zmax) / t).exp()).sum();
        let log_z = zmax / t + zsum.ln();
        let p: Vec<f64> = z.iter().map(|&v| (v / t - log_z).exp()).collect();
        let f = -t * log_z;
        let u: f64 = p.iter().zip(z).map(|(p, v)| p * -v).sum();
        let h: f64 = -p
            .iter()
            .filter(|&&p| p > 0.0)
            .map(|p| p * p.ln())
            .sum::<f64>();
        let var: f64 = p.iter().zip(z).map(|(p, v)| p * (-v - u).powi(2)).sum();
        Boltzmann {
            log_z,
            free_energy: f,
            internal_energy: u,
            entropy: h,
            heat_capacity: var / (t * t),
        }
    }

    #[test]
    fn t17_three_level_f32_and_f64() {
        // MEASURES.md T17 / M1: logits (0, ln 2, ln 4), Z = 7, p = (1, 2, 4)/7.
        let z64 = [0.0, LN_2, 4f64.ln()];
        let z32 = [0.0f32, LN_2 as f32, 4f64.ln() as f32];
        for (b, tol) in [
            (boltzmann(&z64, 1.0).unwrap(), 1e-12),
            (boltzmann(&z32, 1.0).unwrap(), 1e-7),
        ] {
            close(b.log_z, 7f64.ln(), tol);
            close(b.free_energy, -1.945_910_1, 1e-7);
            close(b.free_energy, -(7f64.ln()), tol);
            close(b.internal_energy, -0.990_210_3, 1e-7);
            close(b.internal_energy, -(10.0 / 7.0) * LN_2, tol);
            close(b.entropy, 0.955_699_9, 1e-7);
            close(b.entropy, 7f64.ln() - (10.0 / 7.0) * LN_2, tol);
            // Var_p(E) = (26/49) ln²2.
            close(b.heat_capacity, 26.0 / 49.0 * LN_2 * LN_2, tol);
            // H = (U − F)/T holds.
            close(b.entropy, b.internal_energy - b.free_energy, 1e-12);
        }
        let lp = log_softmax(&z64, 1.0).unwrap();
        for (l, p) in lp.iter().zip([1.0, 2.0, 4.0]) {
            close(*l, (p / 7.0f64).ln(), 1e-14);
        }
    }

    #[test]
    fn t19_two_level() {
        // MEASURES.md T19: logits (0, 1), T = 1: C = σ(1)(1 − σ(1)), H = h(σ(1)).
        let b = boltzmann(&[0.0f32, 1.0], 1.0).unwrap();
        close(b.heat_capacity, 0.196_611_9, 1e-7);
        close(b.entropy, 0.582_203_1, 1e-7);
        let s = 1.0 / (1.0 + (-1f64).exp());
        close(b.heat_capacity, s * (1.0 - s), 1e-14);
        close(b.entropy, -(s * s.ln() + (1.0 - s) * (1.0 - s).ln()), 1e-14);
        // General Δ: C = Δ² σ(Δ)(1 − σ(Δ)).
        for delta in [0.5f64, 2.0, 7.0] {
            let s = 1.0 / (1.0 + (-delta).exp());
            let b = boltzmann(&[0.0, delta], 1.0).unwrap();
            close(b.heat_capacity, delta * delta * s * (1.0 - s), 1e-13);
        }
    }

    #[test]
    fn uniform_law() {
        let v = 50_257usize;
        let z = vec![3.25f32; v];
        let b = boltzmann(&z, 1.0).unwrap();
        close(b.entropy, 10.8249, 1e-4);
        close(b.entropy, (v as f64).ln(), 1e-9);
        assert_eq!(b.heat_capacity, 0.0);
        // Every token has surprisal ln|V| (M10: constant logits give ℓ = ln|V|).
        close(surprisal(&z, 12_345, 1.0).unwrap(), (v as f64).ln(), 1e-9);
        // At any temperature.
        let b = boltzmann(&z, 0.37).unwrap();
        close(b.entropy, (v as f64).ln(), 1e-9);
        assert_eq!(b.heat_capacity, 0.0);
        for v in [1usize, 2, 3, 1000] {
            let b = boltzmann(&vec![-1.5f64; v], 1.0).unwrap();
            close(b.entropy, (v as f64).ln(), 1e-12);
            assert_eq!(b.heat_capacity, 0.0);
        }
    }

    #[test]
    fn matches_naive_reference() {
        for (seed, t) in [(1u64, 1.0), (2, 0.5), (3, 2.0), (4, 0.1)] {
            let z = pseudo_logits(257, seed, 8.0);
            let got = boltzmann(&z, t).unwrap();
            let want = reference(&z, t);
            close(got.log_z, want.log_z, 1e-10);
            close(got.free_energy, want.free_energy, 1e-10);
            close(got.internal_energy, want.internal_energy, 1e-10);
            close(got.entropy, want.entropy, 1e-10);
            close(got.heat_capacity, want.heat_capacity, 1e-9);
            close(
                got.entropy,
                (got.internal_energy - got.free_energy) / t,
                1e-10,
            );
        }
    }

    #[test]
    fn temperature_scaling() {
        // The law of z at temperature T is the law of z/T at temperature 1.
        let z = pseudo_logits(1000, 7, 6.0);
        for t in [0.25, 0.7, 1.0, 1.9, 10.0] {
            let zt: Vec<f64> = z.iter().map(|v| v / t).collect();
            let a = boltzmann(&z, t).unwrap();
            let b = boltzmann(&zt, 1.0).unwrap();
            close(a.entropy, b.entropy, 1e-10);
            close(a.heat_capacity, b.heat_capacity, 1e-9);
            close(a.log_z, b.log_z, 1e-10);
            // Energies carry the temperature: F_T(z) = T F_1(z/T), U likewise.
            close(a.free_energy, t * b.free_energy, 1e-9);
            close(a.internal_energy, t * b.internal_energy, 1e-9);
            close(
                surprisal(&z, 17, t).unwrap(),
                surprisal(&zt, 17, 1.0).unwrap(),
                1e-10,
            );
        }
        // Higher temperature, higher entropy (for a non-uniform law).
        let h: Vec<f64> = [0.5, 1.0, 2.0]
            .iter()
            .map(|&t| boltzmann(&z, t).unwrap().entropy)
            .collect();
        assert!(h[0] < h[1] && h[1] < h[2], "{h:?}");
    }

    #[test]
    fn surprisal_is_minus_log_p() {
        let z = pseudo_logits(300, 11, 5.0);
        let zmax = z.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
        let zsum: f64 = z.iter().map(|&v| (v - zmax).exp()).sum();
        let b = boltzmann(&z, 1.0).unwrap();
        for x in [0usize, 1, 150, 299] {
            let p = (z[x] - zmax).exp() / zsum;
            let s = surprisal(&z, x, 1.0).unwrap();
            close(s, -p.ln(), 1e-12);
            // (E(x) − F)/T.
            close(s, -z[x] - b.free_energy, 1e-12);
        }
        // T17: −ln(4/7) for the top token.
        close(
            surprisal(&[0.0, LN_2, 4f64.ln()], 2, 1.0).unwrap(),
            (7.0f64 / 4.0).ln(),
            1e-14,
        );
        // A nearly certain token keeps full relative precision (ln_1p path).
        let s = surprisal(&[0.0f64, -40.0], 0, 1.0).unwrap();
        close(s / (-40f64).exp(), 1.0, 1e-12);
        // Entropy = expected surprisal.
        let p = log_softmax(&z, 1.0).unwrap();
        let h: f64 = (0..z.len())
            .map(|x| p[x].exp() * surprisal(&z, x, 1.0).unwrap())
            .sum();
        close(h, b.entropy, 1e-12);
    }

    #[test]
    fn masked_logits() {
        let ninf = f32::NEG_INFINITY;
        // Masking entries must equal dropping them.
        let full = [0.0f32, ninf, LN_2 as f32, ninf, 4f64.ln() as f32];
        let kept = [0.0f32, LN_2 as f32, 4f64.ln() as f32];
        let a = boltzmann(&full, 1.0).unwrap();
        let b = boltzmann(&kept, 1.0).unwrap();
        for (x, y) in [
            (a.log_z, b.log_z),
            (a.free_energy, b.free_energy),
            (a.internal_energy, b.internal_energy),
            (a.entropy, b.entropy),
            (a.heat_capacity, b.heat_capacity),
        ] {
            assert!(x.is_finite());
            close(x, y, 1e-15);
        }
        assert_eq!(surprisal(&full, 1, 1.0).unwrap(), f64::INFINITY);
        close(surprisal(&full, 4, 1.0).unwrap(), (7.0f64 / 4.0).ln(), 1e-7);
        let lp = log_softmax(&full, 1.0).unwrap();
        assert_eq!(lp[1], f64::NEG_INFINITY);
        assert_eq!(lp[3], f64::NEG_INFINITY);
        assert!(lp.iter().all(|l| !l.is_nan()));
        // Only one entry left: a certain law.
        let one = boltzmann(&[ninf, 2.5, ninf], 1.0).unwrap();
        assert_eq!(one.entropy, 0.0);
        assert_eq!(one.heat_capacity, 0.0);
        close(one.free_energy, -2.5, 1e-15);
        close(one.internal_energy, -2.5, 1e-15);
        // Tiny temperatures drive the law to the argmax without NaN.
        let cold = boltzmann(&[1.0f32, 2.0, ninf], 1e-300).unwrap();
        assert_eq!(cold.entropy, 0.0);
        close(cold.free_energy, -2.0, 1e-12);
        assert!(!cold.heat_capacity.is_nan());
        // Large finite negative logits (not masked) underflow to p = 0 gracefully.
        let b = boltzmann(&[0.0f64, -1e6, -f64::MAX], 1.0).unwrap();
        assert_eq!(b.entropy, 0.0);
    }

    #[test]
    fn errors() {
        let z = [0.0f32, 1.0];
        for t in [0.0, -1.0, f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
            assert!(matches!(
                boltzmann(&z, t),
                Err(ThermoError::InvalidTemperature(_))
            ));
        }
        let empty: [f32; 0] = [];
        assert_eq!(boltzmann(&empty, 1.0), Err(ThermoError::EmptyLogits));
        assert_eq!(
            boltzmann(&[f32::NEG_INFINITY; 3], 1.0),
            Err(ThermoError::AllMasked)
        );
        assert_eq!(
            boltzmann(&[0.0, f32::NAN], 1.0),
            Err(ThermoError::NanLogit { index: 1 })
        );
        assert_eq!(
            boltzmann(&[f32::INFINITY, 0.0], 1.0),
            Err(ThermoError::InfiniteLogit { index: 0 })
        );
        assert_eq!(
            surprisal(&z, 2, 1.0),
            Err(ThermoError::TokenOutOfRange { token: 2, vocab: 2 })
        );
        assert_eq!(
            kl(&[0.0f32, 1.0], &[0.0f32]),
            Err(ThermoError::LengthMismatch { left: 2, right: 1 })
        );
        assert!(logit_stats(&[1.0f32, f32::NAN]).is_err());
        // Messages are readable.
        let msg = ThermoError::InvalidTemperature(-1.0).to_string();
        assert!(msg.contains("temperature") && msg.contains("-1"), "{msg}");
    }

    #[test]
    fn kl_divergence() {
        let z = pseudo_logits(500, 5, 4.0);
        assert_eq!(kl(&z, &z).unwrap(), 0.0);
        // Shifting every logit leaves the law unchanged.
        let shifted: Vec<f64> = z.iter().map(|v| v + 123.0).collect();
        close(kl(&z, &shifted).unwrap(), 0.0, 1e-12);
        // T12: p = (1, 2, 4)/7 against uniform q: ln 3 − H(p) = 0.1429124.
        let p = [0.0, LN_2, 4f64.ln()];
        let q = [0.0, 0.0, 0.0];
        close(kl(&p, &q).unwrap(), 0.142_912_4, 1e-7);
        close(
            kl(&p, &q).unwrap(),
            3f64.ln() - boltzmann(&p, 1.0).unwrap().entropy,
            1e-14,
        );
        // Reverse direction by hand: Σ (1/3) ln((1/3)/p_i).
        let rev = [1.0, 2.0, 4.0]
            .iter()
            .map(|n: &f64| (1.0 / 3.0) * ((1.0 / 3.0) / (n / 7.0)).ln())
            .sum::<f64>();
        close(kl(&q, &p).unwrap(), rev, 1e-14);
        // Two Bernoulli laws: p = σ(1), q = 1/2.
        let s = 1.0 / (1.0 + (-1f64).exp());
        let want = s * (2.0 * s).ln() + (1.0 - s) * (2.0 * (1.0 - s)).ln();
        close(kl(&[0.0f32, 1.0], &[0.0f32, 0.0]).unwrap(), want, 1e-12);
        // Zeros: p masked where q is not → finite; q masked where p is not → +inf.
        let ninf = f64::NEG_INFINITY;
        close(kl(&[0.0, ninf], &[0.0, 0.0]).unwrap(), LN_2, 1e-15);
        assert_eq!(kl(&[0.0, 0.0], &[0.0, ninf]).unwrap(), f64::INFINITY);
        assert_eq!(kl(&[0.0, ninf], &[0.0, ninf]).unwrap(), 0.0);
        // Against the naive sum on random laws; never negative.
        for seed in 20..30u64 {
            let a = pseudo_logits(64, seed, 3.0);
            let b = pseudo_logits(64, seed + 100, 3.0);
            let la = log_softmax(&a, 1.0).unwrap();
            let lb = log_softmax(&b, 1.0).unwrap();
            let want: f64 = la.iter().zip(&lb).map(|(x, y)| x.exp() * (x - y)).sum();
            let got = kl(&a, &b).unwrap();
            assert!(got >= 0.0);
            close(got, want, 1e-12);
        }
        // Temperature: KL_T(z, w) = KL_1(z/T, w/T).
        let a = pseudo_logits(64, 40, 3.0);
        let b = pseudo_logits(64, 41, 3.0);
        let t = 2.5;
        let at: Vec<f64> = a.iter().map(|v| v / t).collect();
        let bt: Vec<f64> = b.iter().map(|v| v / t).collect();
        close(
            kl_with_temperature(&a, &b, t).unwrap(),
            kl(&at, &bt).unwrap(),
            1e-12,
        );
    }

    #[test]
    fn logit_norms() {
        let s = logit_stats(&[1.0f32, -3.0, 2.0, f32::NEG_INFINITY]).unwrap();
        assert_eq!(s.l1, 6.0);
        assert_eq!(s.linf, 3.0);
        assert_eq!(s.range, 5.0);
        let c = logit_stats(&[0.5f32; 10]).unwrap();
        assert_eq!((c.l1, c.linf, c.range), (5.0, 0.5, 0.0));
        assert_eq!(
            logit_stats(&[f32::NEG_INFINITY]),
            Err(ThermoError::AllMasked)
        );
        // M10: the loss never exceeds ln|V| + range(z).
        for seed in 50..60u64 {
            let z = pseudo_logits(1000, seed, 10.0);
            let st = logit_stats(&z).unwrap();
            let bound = (z.len() as f64).ln() + st.range;
            for x in 0..z.len() {
                let l = surprisal(&z, x, 1.0).unwrap();
                assert!(l >= 0.0 && l <= bound, "loss {l} > bound {bound}");
            }
            assert!(st.range <= 2.0 * st.linf && st.linf <= st.l1);
        }
    }
}
