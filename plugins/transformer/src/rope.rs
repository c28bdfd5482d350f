//! Rotary position embedding settings, read from either config layout:
//!
//! - older checkpoints: top-level `rope_theta` and `rope_scaling: {type | rope_type, factor, ..}`;
//! - transformers 5: `rope_parameters: {rope_theta, rope_type, factor, ..}` (or, per layer
//!   type, `rope_parameters.full_attention`).
//!
//! The frequencies follow transformers' `ROPE_INIT_FUNCTIONS`, computed in f32 as torch does:
//! `inv_freq[i] = 1 / theta^(2i / dim)`, then `linear` divides them by `factor` and `llama3`
//! divides the low frequencies by `factor`, keeps the high ones and blends in between.

use serde_json::{json, Value};
use tokit_sdk::{bail, ModelSource, Result};

#[derive(Clone, Debug, PartialEq)]
pub enum Scaling {
    None,
    Linear {
        factor: f64,
    },
    Llama3 {
        factor: f64,
        low_freq_factor: f64,
        high_freq_factor: f64,
        original_max_position_embeddings: f64,
    },
}

#[derive(Clone, Debug)]
pub struct Rope {
    pub theta: f64,
    pub scaling: Scaling,
    /// Rotated dimensions per head (`head_dim * partial_rotary_factor`).
    pub dim: usize,
    /// Where the settings came from: `rope_parameters` or `rope_theta/rope_scaling`.
    pub layout: &'static str,
    pub inv_freq: Vec<f64>,
}

impl Rope {
    pub fn from_config(src: &ModelSource, head_dim: usize) -> Result<Rope> {
        let has_object = |f: &str| src.config.get(f).is_some_and(Value::is_object);
        // The object holding rope_type and its parameters, in either layout.
        let params = if has_object("rope_scaling") {
            Some("rope_scaling".to_string())
        } else if has_object("rope_parameters") {
            let p = &src.config["rope_parameters"];
            if p.get("rope_type").is_some() || p.get("rope_theta").is_some() {
                Some("rope_parameters".to_string())
            } else if p.get("full_attention").is_some_and(Value::is_object) {
                Some("rope_parameters.full_attention".to_string())
            } else {
                None
            }
        } else {
            None
        };
        let in_params = |key: &str| params.as_ref().map(|p| format!("{p}.{key}"));
        let (theta, layout) = match src.opt_config_f64("rope_theta")? {
            Some(t) => (t, "rope_theta/rope_scaling"),
            None => match in_params("rope_theta") {
                Some(f) => (
                    src.opt_config_f64(&f)?.unwrap_or(10000.0),
                    "rope_parameters",
                ),
                None => (10000.0, "default"),
            },
        };
        if !(theta.is_finite() && theta > 1.0) {
            bail!(
                "{}/config.json: rope theta {theta} is not a number > 1",
                src.path
            );
        }
        let kind = match in_params("rope_type") {
            Some(f) => match src.opt_config_str(&f)? {
                Some(k) => Some(k),
                None => src.opt_config_str(&in_params("type").unwrap_or_default())?,
            },
            None => None,
        };
        // Every scaling number is a factor or a length: finite and > 0, or the frequencies
        // become NaN or negative.
        let need = |key: &str| -> Result<f64> {
            let f = in_params(key).unwrap_or_else(|| key.to_string());
            src.config_f64(&f)?;
            Ok(src.opt_config_positive(&f)?.unwrap_or_default())
        };
        let scaling = match kind.as_deref() {
            None | Some("default") => Scaling::None,
            Some("linear") => Scaling::Linear {
                factor: need("factor")?,
            },
            Some("llama3") => {
                let (low, high) = (need("low_freq_factor")?, need("high_freq_factor")?);
                // The smooth band divides by high - low (and is empty unless low < high).
                if low >= high {
                    bail!(
                        "{}/config.json: llama3 rope scaling needs low_freq_factor < \
                         high_freq_factor, found {low} and {high}",
                        src.path
                    );
                }
                Scaling::Llama3 {
                    factor: need("factor")?,
                    low_freq_factor: low,
                    high_freq_factor: high,
                    original_max_position_embeddings: need("original_max_position_embeddings")?,
                }
            }
            Some(other) => bail!(
                "{}/config.json: rope type `{other}` ({}) is not supported by the transformer \
                 plugin (supported: default, linear, llama3)",
                src.path,
                params.unwrap_or_default()
            ),
        };
        let partial = match in_params("partial_rotary_factor") {
            Some(f) => src.opt_config_f64(&f)?,
            None => None,
        }
        .or(src.opt_config_f64("partial_rotary_factor")?)
        .unwrap_or(1.0);
        let dim = (head_dim as f64 * partial) as usize;
        if dim == 0 || dim % 2 != 0 || dim > head_dim {
            bail!(
                "{}/config.json: rotary dimension {dim} (head_dim {head_dim} x partial_rotary_factor \
                 {partial}) must be even, positive and at most head_dim",
                src.path
            );
        }
        let inv_freq = inv_freq(theta, dim, &scaling);
        Ok(Rope {
            theta,
            scaling,
            dim,
            layout,
            inv_freq,
        })
    }

    pub fn describe(&self) -> Value {
        let scaling = match &self.scaling {
            Scaling::None => json!(null),
            Scaling::Linear { factor } => json!({"rope_type": "linear", "factor": factor}),
            Scaling::Llama3 {
                factor,
                low_freq_factor,
                high_freq_factor,
                original_max_position_embeddings,
            } => json!({
                "rope_type": "llama3",
                "factor": factor,
                "low_freq_factor": low_freq_factor,
                "high_freq_factor": high_freq_factor,
                "original_max_position_embeddings": original_max_position_embeddings,
            }),
        };
        json!({"rope_theta": self.theta, "rope_scaling": scaling, "rotary_dim": self.dim, "config_layout": self.layout})
    }
}

/// The per-pair frequencies, in f32 arithmetic like torch (returned widened to f64).
pub fn inv_freq(theta: f64, dim: usize, scaling: &Scaling) -> Vec<f64> {
    let base: Vec<f32> = (0..dim)
        .step_by(2)
        .map(|i| 1.0f32 / (theta as f32).powf(i as f32 / dim as f32))
        .collect();
    let scaled: Vec<f32> = match *scaling {
        Scaling::None => base,
        Scaling::Linear { factor } => base.iter().map(|f| f / factor as f32).collect(),
        Scaling::Llama3 {
            factor,
            low_freq_factor,
            high_freq_factor,
            original_max_position_embeddings,
        } => {
            let (factor, low, high, old) = (
                factor as f32,
                low_freq_factor as f32,
                high_freq_factor as f32,
                original_max_position_embeddings as f32,
            );
            let low_freq_wavelen = old / low;
            let high_freq_wavelen = old / high;
            base.iter()
                .map(|&f| {
                    let wavelen = 2.0 * std::f32::consts::PI / f;
                    let llama = if wavelen > low_freq_wavelen {
                        f / factor
                    } else {
                        f
                    };
                    let medium = wavelen >= high_freq_wavelen && wavelen <= low_freq_wavelen;
                    if medium {
                        let smooth = (old / wavelen - low) / (high - low);
                        (1.0 - smooth) * llama / factor + smooth * llama
                    } else {
                        llama
                    }
                })
                .collect()
        }
    };
    scaled.into_iter().map(f64::from).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_frequencies() {
        let f = inv_freq(10000.0, 8, &Scaling::None);
        let want = [1.0, 0.1, 0.01, 0.001];
        for (a, b) in f.iter().zip(want) {
            assert!((a - b).abs() < 1e-6 * b.max(1e-3), "{a} vs {b}");
        }
    }

    #[test]
    fn linear_divides_by_factor() {
        let a = inv_freq(500000.0, 8, &Scaling::None);
        let b = inv_freq(500000.0, 8, &Scaling::Linear { factor: 2.0 });
        for (x, y) in a.iter().zip(&b) {
            assert!((x / 2.0 - y).abs() < 1e-9);
        }
    }

    #[test]
    fn llama3_keeps_high_scales_low_blends_middle() {
        let s = Scaling::Llama3 {
            factor: 8.0,
            low_freq_factor: 1.0,
            high_freq_factor: 4.0,
            original_max_position_embeddings: 64.0,
        };
        let a = inv_freq(50000.0, 16, &Scaling::None);
        let b = inv_freq(50000.0, 16, &s);
        // Wavelength 2π/f: < 64/4 keeps f, > 64/1 divides by 8, in between blends.
        let (mut kept, mut divided, mut blended) = (0, 0, 0);
        for (x, y) in a.iter().zip(&b) {
            let w = 2.0 * std::f64::consts::PI / x;
            if w < 16.0 {
                assert_eq!(x, y);
                kept += 1;
            } else if w > 64.0 {
                assert!((x / 8.0 - y).abs() < 1e-7 * x);
                divided += 1;
            } else {
                assert!(*y < *x && *y > x / 8.0);
                blended += 1;
            }
        }
        assert!(
            kept > 0 && divided > 0 && blended > 0,
            "{kept} {divided} {blended}"
        );
    }
}
