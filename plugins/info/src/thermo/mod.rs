//! Boltzmann ("thermodynamic") view of one next-token law (`docs/measures.md` M1), and the
//! per-row logit norms that feed the generalization bound (`docs/measures.md` M10).
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
//! The identities are standard \[S\]; reading the LLM as a Boltzmann distribution is the
//! paper's \[P\] (`docs/measures.md` M1).

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
mod tests;
