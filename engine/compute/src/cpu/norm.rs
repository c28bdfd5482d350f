//! Normalisations over the last axis: LayerNorm, RMSNorm and Mamba2's gated RMSNorm.
//!
//! Row statistics accumulate in f64, so results are at least as accurate as torch's
//! float32 kernels. Gemma-style `(1 + w)` weights are the caller's business: pass the
//! already-offset weight.

use anyhow::{bail, Result};
use multiversion::multiversion;

use super::elementwise::{silu, PAR_CHUNK};
use crate::Tensor;

/// The length of the normalised (last) axis, or an error for 0-d input.
fn last_dim(op: &str, x: &Tensor) -> Result<usize> {
    match x.shape().last() {
        Some(&d) => Ok(d),
        None => bail!("{op}: x must have at least 1 dimension, got shape [] (expected [..., d])"),
    }
}

/// Checks that an optional per-feature parameter is `[d]`.
fn check_param(op: &str, what: &str, p: Option<&Tensor>, x: &Tensor, d: usize) -> Result<()> {
    if let Some(p) = p {
        if p.shape() != [d] {
            bail!(
                "{op}: {what} {:?} does not match the last dimension of x {:?} (expected [{d}])",
                p.shape(),
                x.shape()
            );
        }
    }
    Ok(())
}

/// `f(r, row_in, row_out)` compiled for AVX-512 and AVX2 too and picked at run time (the
/// output loops vectorise wider; no fused multiply-adds are formed, so the bits are the
/// same).
#[multiversion(targets("x86_64+avx512f+avx512vl+avx2+fma", "x86_64+avx2+fma"))]
fn row<F: Fn(usize, &[f32], &mut [f32])>(f: &F, r: usize, xi: &[f32], o: &mut [f32]) {
    f(r, xi, o)
}

/// Applies `f(row_in, row_out)` to every length-`d` row, in parallel when large.
fn per_row(x: &[f32], d: usize, f: impl Fn(usize, &[f32], &mut [f32]) + Sync) -> Vec<f32> {
    let mut out = vec![0f32; x.len()];
    if d == 0 {
        return out;
    }
    if x.len() <= PAR_CHUNK {
        for (r, (xi, o)) in x.chunks(d).zip(out.chunks_mut(d)).enumerate() {
            row(&f, r, xi, o);
        }
    } else {
        super::spin::rows_mut(&mut out, d, |first, o| {
            for (i, (xi, o)) in x[first * d..].chunks(d).zip(o.chunks_mut(d)).enumerate() {
                row(&f, first + i, xi, o);
            }
        });
    }
    out
}

pub(crate) fn layer_norm(
    x: &Tensor,
    weight: Option<&Tensor>,
    bias: Option<&Tensor>,
    eps: f32,
) -> Result<Tensor> {
    let d = last_dim("layer_norm", x)?;
    check_param("layer_norm", "weight", weight, x, d)?;
    check_param("layer_norm", "bias", bias, x, d)?;
    let (w, b) = (weight.map(Tensor::data), bias.map(Tensor::data));
    let out = per_row(x.data(), d, |_, xi, o| {
        let mean = xi.iter().map(|&v| v as f64).sum::<f64>() / d as f64;
        // Biased variance, like torch.
        let var = xi.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / d as f64;
        let inv = 1.0 / (var + eps as f64).sqrt();
        for (j, (o, &v)) in o.iter_mut().zip(xi).enumerate() {
            let mut y = ((v as f64 - mean) * inv) as f32;
            if let Some(w) = w {
                y *= w[j];
            }
            if let Some(b) = b {
                y += b[j];
            }
            *o = y;
        }
    });
    Tensor::new(x.shape().to_vec(), out)
}

/// `1 / sqrt(mean(x^2) + eps)` of one row.
fn inv_rms(xi: &[f32], eps: f32) -> f64 {
    let ms = xi.iter().map(|&v| (v as f64) * (v as f64)).sum::<f64>() / xi.len() as f64;
    1.0 / (ms + eps as f64).sqrt()
}

pub(crate) fn rms_norm(x: &Tensor, weight: Option<&Tensor>, eps: f32) -> Result<Tensor> {
    let d = last_dim("rms_norm", x)?;
    check_param("rms_norm", "weight", weight, x, d)?;
    let w = weight.map(Tensor::data);
    let out = per_row(x.data(), d, |_, xi, o| {
        let inv = inv_rms(xi, eps);
        for (j, (o, &v)) in o.iter_mut().zip(xi).enumerate() {
            let y = (v as f64 * inv) as f32;
            *o = w.map_or(y, |w| y * w[j]);
        }
    });
    Tensor::new(x.shape().to_vec(), out)
}

pub(crate) fn rms_norm_gated(
    x: &Tensor,
    gate: &Tensor,
    weight: Option<&Tensor>,
    eps: f32,
    norm_before_gate: bool,
) -> Result<Tensor> {
    let d = last_dim("rms_norm_gated", x)?;
    if gate.shape() != x.shape() {
        bail!(
            "rms_norm_gated: gate {:?} does not match x {:?} (expected the same shape)",
            gate.shape(),
            x.shape()
        );
    }
    check_param("rms_norm_gated", "weight", weight, x, d)?;
    let w = weight.map(Tensor::data);
    let g = gate.data();
    let out = per_row(x.data(), d, |r, xi, o| {
        let gi = &g[r * d..(r + 1) * d];
        if norm_before_gate {
            let inv = inv_rms(xi, eps);
            for (j, o) in o.iter_mut().enumerate() {
                let mut y = (xi[j] as f64 * inv) as f32;
                if let Some(w) = w {
                    y *= w[j];
                }
                *o = y * silu(gi[j]);
            }
        } else {
            // Gate first (in f32, as HF's MambaRMSNormGated), then normalise.
            for (o, (&v, &gv)) in o.iter_mut().zip(xi.iter().zip(gi)) {
                *o = v * silu(gv);
            }
            let inv = inv_rms(o, eps);
            for (j, o) in o.iter_mut().enumerate() {
                let y = (*o as f64 * inv) as f32;
                *o = w.map_or(y, |w| y * w[j]);
            }
        }
    });
    Tensor::new(x.shape().to_vec(), out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::assert_close;

    fn t(shape: &[usize], data: &[f32]) -> Tensor {
        Tensor::new(shape.to_vec(), data.to_vec()).unwrap()
    }

    #[test]
    fn layer_norm_hand_values() {
        // [1, 2, 3]: mean 2, biased variance 2/3.
        let x = t(&[1, 3], &[1., 2., 3.]);
        let s = (1.5f64).sqrt() as f32;
        let out = layer_norm(&x, None, None, 0.0).unwrap();
        assert_close(out.data(), &[-s, 0.0, s], 1e-6);
        let w = t(&[3], &[2., 1., 0.5]);
        let b = t(&[3], &[0., 1., -1.]);
        let out = layer_norm(&x, Some(&w), Some(&b), 0.0).unwrap();
        assert_close(out.data(), &[-2. * s, 1.0, 0.5 * s - 1.0], 1e-6);
        // eps matters for a constant row: (x - mean) = 0 everywhere.
        let c = layer_norm(&t(&[2], &[5., 5.]), None, None, 1e-5).unwrap();
        assert_eq!(c.data(), &[0.0, 0.0]);
    }

    #[test]
    fn rms_norm_hand_values() {
        // [3, 4]: mean square 12.5.
        let x = t(&[2], &[3., 4.]);
        let r = 12.5f32.sqrt();
        assert_close(
            rms_norm(&x, None, 0.0).unwrap().data(),
            &[3. / r, 4. / r],
            1e-6,
        );
        let w = t(&[2], &[2., -1.]);
        assert_close(
            rms_norm(&x, Some(&w), 0.0).unwrap().data(),
            &[6. / r, -4. / r],
            1e-6,
        );
        let eps = 1.0;
        let r = 13.5f32.sqrt();
        assert_close(
            rms_norm(&x, None, eps).unwrap().data(),
            &[3. / r, 4. / r],
            1e-6,
        );
    }

    #[test]
    fn gated_rms_norm_both_orders() {
        let x = t(&[1, 2], &[3., 4.]);
        let g = t(&[1, 2], &[1., -2.]);
        let w = t(&[2], &[1.5, 0.5]);
        let (s0, s1) = (silu(1.0), silu(-2.0));
        // Gate then norm.
        let y = [3. * s0, 4. * s1];
        let r = ((y[0] * y[0] + y[1] * y[1]) / 2.0).sqrt();
        let got = rms_norm_gated(&x, &g, Some(&w), 0.0, false).unwrap();
        assert_close(got.data(), &[y[0] / r * 1.5, y[1] / r * 0.5], 1e-6);
        // Norm then gate.
        let r = 12.5f32.sqrt();
        let got = rms_norm_gated(&x, &g, Some(&w), 0.0, true).unwrap();
        assert_close(got.data(), &[3. / r * 1.5 * s0, 4. / r * 0.5 * s1], 1e-6);
    }

    #[test]
    fn norm_errors() {
        let x = t(&[2, 4], &[0.0; 8]);
        let w = t(&[5], &[0.0; 5]);
        let err = layer_norm(&x, Some(&w), None, 1e-5)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("layer_norm: weight [5]") && err.contains("[2, 4]") && err.contains("[4]"),
            "{err}"
        );
        let err = rms_norm(&Tensor::scalar(1.0), None, 1e-5)
            .unwrap_err()
            .to_string();
        assert!(err.contains("rms_norm"), "{err}");
        let err = rms_norm_gated(&x, &t(&[4], &[0.0; 4]), None, 1e-5, false)
            .unwrap_err()
            .to_string();
        assert!(err.contains("gate [4]") && err.contains("[2, 4]"), "{err}");
        let err = layer_norm(&x, None, Some(&w), 1e-5)
            .unwrap_err()
            .to_string();
        assert!(err.contains("bias [5]"), "{err}");
    }
}
