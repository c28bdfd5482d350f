//! Layout ops: reshape (free), permute, slice, concat and index_select (copies).
//!
//! Copies are organised as `[outer, axis, inner]` runs so the inner loops are plain
//! `copy_from_slice` calls; large outputs are filled in parallel.

use anyhow::{bail, Result};

use super::elementwise::PAR_CHUNK;
use crate::shape::{
    check_permutation, concat_shape, normalize_axis, slice_shape, split_at_axis, strides,
};
use crate::Tensor;

pub(crate) fn reshape(a: &Tensor, shape: &[isize]) -> Result<Tensor> {
    let mut infer = None;
    let mut known = 1usize;
    for (i, &d) in shape.iter().enumerate() {
        match d {
            -1 if infer.is_none() => infer = Some(i),
            -1 => bail!(
                "reshape: shape {shape:?} has more than one -1 (input {:?})",
                a.shape()
            ),
            d if d < 0 => bail!(
                "reshape: dimension {d} in {shape:?} is negative (expected sizes >= 0 or one -1)"
            ),
            d => known = known.saturating_mul(d as usize),
        }
    }
    let mut out: Vec<usize> = shape.iter().map(|&d| d.max(0) as usize).collect();
    if let Some(i) = infer {
        if known == 0 || !a.numel().is_multiple_of(known) {
            bail!(
                "reshape: cannot infer the -1 in {shape:?} for input {:?} with {} elements",
                a.shape(),
                a.numel()
            );
        }
        out[i] = a.numel() / known;
    } else if known != a.numel() {
        bail!(
            "reshape: input {:?} has {} elements but shape {shape:?} holds {known}",
            a.shape(),
            a.numel()
        );
    }
    a.with_shape(out)
}

/// Fills `out` in chunks of `row` elements via `f(row_index, chunk)`, in parallel when
/// the output is large.
/// Pure copies (slice, concat) of at most this many values run serially on the calling
/// thread: a megabyte copies in tens of microseconds, less than a hand-off to the pool.
pub(crate) const COPY_SERIAL: usize = 1 << 18;

fn fill_rows(out: &mut [f32], row: usize, f: impl Fn(usize, &mut [f32]) + Sync) {
    if row == 0 {
        return;
    }
    if out.len() <= PAR_CHUNK {
        out.chunks_mut(row).enumerate().for_each(|(r, o)| f(r, o));
    } else {
        super::spin::rows_mut(out, row, |first, o| {
            for (i, o) in o.chunks_mut(row).enumerate() {
                f(first + i, o);
            }
        });
    }
}

pub(crate) fn permute(a: &Tensor, axes: &[usize]) -> Result<Tensor> {
    let s = a.shape();
    if check_permutation(s, axes)? {
        return Ok(a.clone());
    }
    let out_shape: Vec<usize> = axes.iter().map(|&ax| s[ax]).collect();
    let in_strides = strides(s);
    // Input stride of each output dimension.
    let st: Vec<usize> = axes.iter().map(|&ax| in_strides[ax]).collect();
    let mut out = vec![0f32; a.numel()];
    let nd = out_shape.len();
    let inner = out_shape[nd - 1];
    let inner_stride = st[nd - 1];
    let src = a.data();
    fill_rows(&mut out, inner, |r, o| {
        let (mut off, mut rem) = (0, r);
        for d in (0..nd - 1).rev() {
            off += (rem % out_shape[d]) * st[d];
            rem /= out_shape[d];
        }
        if inner_stride == 1 {
            o.copy_from_slice(&src[off..off + inner]);
        } else {
            for (j, o) in o.iter_mut().enumerate() {
                *o = src[off + j * inner_stride];
            }
        }
    });
    Tensor::new(out_shape, out)
}

pub(crate) fn slice(a: &Tensor, axis: isize, start: usize, end: usize) -> Result<Tensor> {
    let (ax, shape) = slice_shape(a.shape(), axis, start, end)?;
    let (outer, n, inner) = split_at_axis(a.shape(), ax);
    if start == 0 && end == n {
        return Ok(a.clone());
    }
    let len = (end - start) * inner;
    let src = a.data();
    if outer * len <= COPY_SERIAL {
        let mut out = Vec::with_capacity(outer * len);
        for r in 0..outer {
            let base = r * n * inner + start * inner;
            out.extend_from_slice(&src[base..base + len]);
        }
        return Tensor::new(shape, out);
    }
    let mut out = vec![0f32; outer * len];
    fill_rows(&mut out, len, |r, o| {
        let base = r * n * inner + start * inner;
        o.copy_from_slice(&src[base..base + len]);
    });
    Tensor::new(shape, out)
}

pub(crate) fn concat(parts: &[&Tensor], axis: isize) -> Result<Tensor> {
    let shapes: Vec<&[usize]> = parts.iter().map(|p| p.shape()).collect();
    let (ax, shape) = concat_shape(&shapes, axis)?;
    let (outer, _, inner) = split_at_axis(&shape, ax);
    let total = shape[ax];
    let row = total * inner;
    if outer * row <= COPY_SERIAL {
        // A decoding step's KV cache append: written once, not zeroed first.
        let mut out = Vec::with_capacity(outer * row);
        for r in 0..outer {
            for p in parts {
                let len = p.shape()[ax] * inner;
                out.extend_from_slice(&p.data()[r * len..(r + 1) * len]);
            }
        }
        return Tensor::new(shape, out);
    }
    let mut out = vec![0f32; outer * row];
    fill_rows(&mut out, row, |r, o| {
        let mut at = 0;
        for p in parts {
            let len = p.shape()[ax] * inner;
            o[at..at + len].copy_from_slice(&p.data()[r * len..(r + 1) * len]);
            at += len;
        }
    });
    Tensor::new(shape, out)
}

pub(crate) fn index_select(a: &Tensor, axis: isize, indices: &[usize]) -> Result<Tensor> {
    let ax = normalize_axis("index_select", axis, a.shape())?;
    let (outer, n, inner) = split_at_axis(a.shape(), ax);
    if let Some(&bad) = indices.iter().find(|&&i| i >= n) {
        bail!(
            "index_select: index {bad} is out of range for axis {axis} of shape {:?} \
             (expected < {n})",
            a.shape()
        );
    }
    let mut shape = a.shape().to_vec();
    shape[ax] = indices.len();
    let row = indices.len() * inner;
    let mut out = vec![0f32; outer * row];
    let src = a.data();
    fill_rows(&mut out, row, |r, o| {
        for (slot, &i) in o.chunks_mut(inner.max(1)).zip(indices) {
            let base = (r * n + i) * inner;
            slot.copy_from_slice(&src[base..base + inner]);
        }
    });
    Tensor::new(shape, out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn iota(shape: &[usize]) -> Tensor {
        let n = shape.iter().product();
        Tensor::new(shape.to_vec(), (0..n).map(|v| v as f32).collect()).unwrap()
    }

    #[test]
    fn reshape_infers_and_shares() {
        let a = iota(&[2, 3, 4]);
        let r = reshape(&a, &[-1, 4]).unwrap();
        assert_eq!(r.shape(), &[6, 4]);
        assert!(std::sync::Arc::ptr_eq(a.arc(), r.arc()));
        assert_eq!(reshape(&a, &[24]).unwrap().shape(), &[24]);
        assert_eq!(
            reshape(&Tensor::scalar(1.0), &[]).unwrap().shape(),
            &[] as &[usize]
        );
        let err = reshape(&a, &[5, -1]).unwrap_err().to_string();
        assert!(
            err.contains("reshape") && err.contains("[2, 3, 4]"),
            "{err}"
        );
        assert!(reshape(&a, &[-1, -1]).is_err());
        assert!(reshape(&a, &[2, 3, 3]).is_err());
        assert!(reshape(&a, &[-2, 12]).is_err());
        assert!(reshape(&Tensor::zeros(vec![0]), &[0, -1]).is_err());
    }

    #[test]
    fn permute_moves_elements() {
        let a = iota(&[2, 3]);
        let t = permute(&a, &[1, 0]).unwrap();
        assert_eq!(t.shape(), &[3, 2]);
        assert_eq!(t.data(), &[0., 3., 1., 4., 2., 5.]);
        let b = iota(&[2, 3, 4]);
        let p = permute(&b, &[1, 0, 2]).unwrap();
        assert_eq!(p.shape(), &[3, 2, 4]);
        // p[i, j, k] = b[j, i, k]
        for i in 0..3 {
            for j in 0..2 {
                for k in 0..4 {
                    assert_eq!(p.data()[i * 8 + j * 4 + k], b.data()[j * 12 + i * 4 + k]);
                }
            }
        }
        let q = permute(&b, &[2, 0, 1]).unwrap();
        assert_eq!(q.shape(), &[4, 2, 3]);
        // q[1, 1, 2] = b[1, 2, 1]
        assert_eq!(q.data()[6 + 3 + 2], b.data()[12 + 8 + 1]);
        assert_eq!(permute(&b, &[0, 1, 2]).unwrap().data(), b.data());
        let err = permute(&b, &[0, 0, 1]).unwrap_err().to_string();
        assert!(
            err.contains("permute: axes [0, 0, 1]") && err.contains("[2, 3, 4]"),
            "{err}"
        );
        assert!(permute(&b, &[0, 1]).is_err());
        // Large enough to take the parallel path.
        let big = iota(&[300, 200]);
        let bt = permute(&big, &[1, 0]).unwrap();
        assert_eq!(bt.data()[5 * 300 + 7], big.data()[7 * 200 + 5]);
    }

    #[test]
    fn slice_concat_index_select() {
        let a = iota(&[2, 3, 2]);
        let s = slice(&a, 1, 1, 3).unwrap();
        assert_eq!(s.shape(), &[2, 2, 2]);
        assert_eq!(s.data(), &[2., 3., 4., 5., 8., 9., 10., 11.]);
        assert_eq!(
            slice(&a, -1, 1, 2).unwrap().data(),
            &[1., 3., 5., 7., 9., 11.]
        );
        assert_eq!(slice(&a, 0, 1, 1).unwrap().shape(), &[0, 3, 2]);
        let err = slice(&a, 1, 2, 4).unwrap_err().to_string();
        assert!(
            err.contains("slice: range 2..4") && err.contains("[2, 3, 2]"),
            "{err}"
        );

        let b = iota(&[2, 1, 2]);
        let c = concat(&[&a, &b], 1).unwrap();
        assert_eq!(c.shape(), &[2, 4, 2]);
        assert_eq!(&c.data()[..8], &[0., 1., 2., 3., 4., 5., 0., 1.]);
        assert_eq!(&c.data()[8..], &[6., 7., 8., 9., 10., 11., 2., 3.]);
        assert_eq!(concat(&[&a, &a], 0).unwrap().shape(), &[4, 3, 2]);
        let err = concat(&[&a, &b], 0).unwrap_err().to_string();
        assert!(
            err.contains("concat") && err.contains("[2, 3, 2]") && err.contains("[2, 1, 2]"),
            "{err}"
        );
        assert!(concat(&[], 0).is_err());

        let x = index_select(&a, 1, &[2, 0, 2]).unwrap();
        assert_eq!(x.shape(), &[2, 3, 2]);
        assert_eq!(
            x.data(),
            &[4., 5., 0., 1., 4., 5., 10., 11., 6., 7., 10., 11.]
        );
        assert_eq!(index_select(&a, 0, &[]).unwrap().shape(), &[0, 3, 2]);
        let err = index_select(&a, 1, &[3]).unwrap_err().to_string();
        assert!(
            err.contains("index 3") && err.contains("[2, 3, 2]"),
            "{err}"
        );
    }
}
