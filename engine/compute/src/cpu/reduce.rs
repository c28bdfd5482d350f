//! Reductions along one axis: `softmax`, `log_softmax` and `reduce`.
//!
//! A tensor is viewed as `[outer, n, inner]` around the axis. With `inner == 1` (the
//! last axis, by far the common case) each slice is a contiguous row; otherwise a whole
//! `[n, inner]` block is processed row by row so memory is still read in order. Sums
//! accumulate in f64.

use anyhow::{bail, Result};
use rayon::prelude::*;

use super::fastmath::{exp, exp_shift_sum};
use crate::shape::{normalize_axis, split_at_axis};
use crate::{ReduceOp, Tensor};

/// Runs `f(block_in, block_out)` on every `[n * inner]` block, in parallel when large.
fn per_block(src: &[f32], block: usize, out: &mut [f32], f: impl Fn(&[f32], &mut [f32]) + Sync) {
    if block == 0 {
        return;
    }
    if src.len() <= super::elementwise::PAR_CHUNK {
        src.chunks(block)
            .zip(out.chunks_mut(block))
            .for_each(|(s, o)| f(s, o));
    } else {
        src.par_chunks(block)
            .zip(out.par_chunks_mut(block))
            .for_each(|(s, o)| f(s, o));
    }
}

pub(crate) fn softmax(a: &Tensor, axis: isize, log: bool) -> Result<Tensor> {
    let op = if log { "log_softmax" } else { "softmax" };
    let ax = normalize_axis(op, axis, a.shape())?;
    let (_, n, inner) = split_at_axis(a.shape(), ax);
    let mut out = vec![0f32; a.numel()];
    let block = n * inner;
    if inner == 1 {
        per_block(a.data(), block, &mut out, |x, o| softmax_row(x, o, log));
    } else {
        per_block(a.data(), block, &mut out, |x, o| {
            softmax_strided(x, o, inner, log)
        });
    }
    Tensor::new(a.shape().to_vec(), out)
}

/// Max-subtracted softmax of one contiguous row. An all `-inf` row has no defined
/// distribution: softmax gives zeros and log_softmax `-inf`, never NaN. NaN anywhere in
/// a row makes the whole row NaN, as in torch.
pub(crate) fn softmax_row(x: &[f32], o: &mut [f32], log: bool) {
    // f32::max skips NaN; a NaN still reaches every output through the sum below.
    let mx = x.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    if mx == f32::NEG_INFINITY {
        let fill = if x.iter().any(|v| v.is_nan()) {
            f32::NAN
        } else if log {
            f32::NEG_INFINITY
        } else {
            0.0
        };
        o.fill(fill);
        return;
    }
    o.copy_from_slice(x);
    let sum = exp_shift_sum(o, mx);
    if log {
        let lse = sum.ln() as f32;
        for (o, &v) in o.iter_mut().zip(x) {
            *o = (v - mx) - lse;
        }
    } else {
        let inv = (1.0 / sum) as f32;
        o.iter_mut().for_each(|o| *o *= inv);
    }
}

/// Softmax down the columns of an `[n, inner]` block.
fn softmax_strided(x: &[f32], o: &mut [f32], inner: usize, log: bool) {
    let mut mx = vec![f32::NEG_INFINITY; inner];
    for row in x.chunks(inner) {
        for (m, &v) in mx.iter_mut().zip(row) {
            *m = nan_max(*m, v);
        }
    }
    let mut sum = vec![0f64; inner];
    for (orow, row) in o.chunks_mut(inner).zip(x.chunks(inner)) {
        for j in 0..inner {
            let e = if mx[j] == f32::NEG_INFINITY {
                0.0
            } else {
                exp(row[j] - mx[j])
            };
            sum[j] += e as f64;
            orow[j] = e;
        }
    }
    for (orow, row) in o.chunks_mut(inner).zip(x.chunks(inner)) {
        for j in 0..inner {
            orow[j] = match (log, mx[j] == f32::NEG_INFINITY) {
                (true, true) => f32::NEG_INFINITY,
                (false, true) => 0.0,
                (true, false) => (row[j] - mx[j]) - sum[j].ln() as f32,
                (false, false) => orow[j] * (1.0 / sum[j]) as f32,
            };
        }
    }
}

/// Max that propagates NaN (`f32::max` would drop it).
fn nan_max(a: f32, b: f32) -> f32 {
    if a.is_nan() || b.is_nan() {
        f32::NAN
    } else {
        a.max(b)
    }
}

fn nan_min(a: f32, b: f32) -> f32 {
    if a.is_nan() || b.is_nan() {
        f32::NAN
    } else {
        a.min(b)
    }
}

pub(crate) fn reduce(op: ReduceOp, a: &Tensor, axis: isize, keepdim: bool) -> Result<Tensor> {
    let name = format!("reduce {}", op.name());
    let ax = normalize_axis(&name, axis, a.shape())?;
    let (outer, n, inner) = split_at_axis(a.shape(), ax);
    if n == 0 && matches!(op, ReduceOp::Max | ReduceOp::Min) {
        bail!(
            "{name}: axis {axis} of shape {:?} is empty (expected at least one element)",
            a.shape()
        );
    }
    let mut shape = a.shape().to_vec();
    if keepdim {
        shape[ax] = 1;
    } else {
        shape.remove(ax);
    }
    let mut out = vec![0f32; outer * inner];
    if out.is_empty() {
        return Tensor::new(shape, out);
    }
    // Each output block of `inner` values comes from one `[n, inner]` input block.
    let body = |x: &[f32], o: &mut [f32]| match op {
        ReduceOp::Sum | ReduceOp::Mean => {
            let mut acc = vec![0f64; inner];
            for row in x.chunks(inner) {
                for (s, &v) in acc.iter_mut().zip(row) {
                    *s += v as f64;
                }
            }
            let div = if op == ReduceOp::Mean { n as f64 } else { 1.0 };
            for (o, s) in o.iter_mut().zip(acc) {
                *o = (s / div) as f32;
            }
        }
        ReduceOp::Max | ReduceOp::Min => {
            let f = if op == ReduceOp::Max {
                nan_max
            } else {
                nan_min
            };
            o.copy_from_slice(&x[..inner]);
            for row in x.chunks(inner).skip(1) {
                for (o, &v) in o.iter_mut().zip(row) {
                    *o = f(*o, v);
                }
            }
        }
    };
    if n == 0 {
        // Empty sum is 0, empty mean is 0/0.
        out.fill(if op == ReduceOp::Mean { f32::NAN } else { 0.0 });
    } else if a.numel() <= super::elementwise::PAR_CHUNK {
        a.data()
            .chunks(n * inner)
            .zip(out.chunks_mut(inner))
            .for_each(|(x, o)| body(x, o));
    } else {
        a.data()
            .par_chunks(n * inner)
            .zip(out.par_chunks_mut(inner))
            .for_each(|(x, o)| body(x, o));
    }
    Tensor::new(shape, out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::{assert_close, Rng};

    fn t(shape: &[usize], data: &[f32]) -> Tensor {
        Tensor::new(shape.to_vec(), data.to_vec()).unwrap()
    }

    #[test]
    fn softmax_hand_values() {
        let x = t(&[3], &[0.0, 2f32.ln(), 4f32.ln()]);
        assert_close(
            softmax(&x, -1, false).unwrap().data(),
            &[1. / 7., 2. / 7., 4. / 7.],
            1e-6,
        );
        let ls = softmax(&x, 0, true).unwrap();
        assert_close(
            ls.data(),
            &[-(7f32.ln()), (2f32 / 7.).ln(), (4f32 / 7.).ln()],
            1e-6,
        );
        let nan = t(&[3], &[0.0, f32::NAN, 1.0]);
        assert!(softmax(&nan, 0, false)
            .unwrap()
            .data()
            .iter()
            .all(|v| v.is_nan()));
        let nan = t(&[2], &[f32::NAN, f32::NAN]);
        assert!(softmax(&nan, 0, true)
            .unwrap()
            .data()
            .iter()
            .all(|v| v.is_nan()));
        // Huge logits stay finite thanks to max subtraction.
        let big = t(&[2], &[1000.0, 1000.0]);
        assert_eq!(softmax(&big, 0, false).unwrap().data(), &[0.5, 0.5]);
    }

    #[test]
    fn all_neg_inf_rows() {
        let inf = f32::NEG_INFINITY;
        let x = t(&[2, 2], &[inf, inf, 0.0, inf]);
        assert_eq!(
            softmax(&x, -1, false).unwrap().data(),
            &[0.0, 0.0, 1.0, 0.0]
        );
        assert_eq!(softmax(&x, -1, true).unwrap().data(), &[inf, inf, 0.0, inf]);
        // Same along a non-last axis: column 1 is all -inf.
        assert_eq!(softmax(&x, 0, false).unwrap().data(), &[0.0, 0.0, 1.0, 0.0]);
    }

    #[test]
    fn softmax_any_axis_matches_last_axis() {
        let mut rng = Rng::new(5);
        let x = rng.tensor(&[3, 4, 5]);
        for log in [false, true] {
            let along1 = softmax(&x, 1, log).unwrap();
            // Move axis 1 last by hand, softmax, and compare.
            for i in 0..3 {
                for k in 0..5 {
                    let col: Vec<f32> = (0..4).map(|j| x.data()[i * 20 + j * 5 + k]).collect();
                    let r = softmax(&t(&[4], &col), 0, log).unwrap();
                    let got: Vec<f32> = (0..4).map(|j| along1.data()[i * 20 + j * 5 + k]).collect();
                    assert_close(&got, r.data(), 1e-6);
                }
            }
        }
        assert!(softmax(&x, 3, false)
            .unwrap_err()
            .to_string()
            .contains("softmax: axis 3"));
    }

    #[test]
    fn reductions() {
        let x = t(&[2, 3], &[1., 5., 3., -4., 2., 0.]);
        let r = |op, axis, keep| reduce(op, &x, axis, keep).unwrap();
        assert_eq!(r(ReduceOp::Sum, -1, false).data(), &[9., -2.]);
        assert_eq!(r(ReduceOp::Sum, 0, false).data(), &[-3., 7., 3.]);
        assert_eq!(r(ReduceOp::Mean, 1, true).shape(), &[2, 1]);
        assert_close(r(ReduceOp::Mean, 1, true).data(), &[3., -2. / 3.], 1e-7);
        assert_eq!(r(ReduceOp::Max, 0, false).data(), &[1., 5., 3.]);
        assert_eq!(r(ReduceOp::Min, 1, false).data(), &[1., -4.]);
        assert_eq!(r(ReduceOp::Max, 0, true).shape(), &[1, 3]);
        let nan = t(&[2], &[f32::NAN, 1.0]);
        assert!(reduce(ReduceOp::Max, &nan, 0, false).unwrap().data()[0].is_nan());
        let empty = Tensor::zeros(vec![2, 0]);
        assert_eq!(
            reduce(ReduceOp::Sum, &empty, 1, false).unwrap().data(),
            &[0., 0.]
        );
        assert!(reduce(ReduceOp::Mean, &empty, 1, false).unwrap().data()[0].is_nan());
        let err = reduce(ReduceOp::Max, &empty, 1, false)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("reduce max") && err.contains("[2, 0]"),
            "{err}"
        );
        let big = Tensor::full(vec![100, 1000], 0.5);
        assert_eq!(
            reduce(ReduceOp::Sum, &big, -1, false).unwrap().data(),
            &[500.0; 100][..]
        );
    }
}
