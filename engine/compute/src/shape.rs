//! Backend-neutral shape arithmetic: numpy broadcasting, axis normalisation and
//! row-major strides. Every backend validates shapes with these helpers so that all of
//! them accept and reject exactly the same inputs, with the same messages.

use anyhow::{bail, Result};

/// The numpy broadcast of two shapes: aligned from the right, each pair of dimensions
/// must be equal or one of them must be 1.
pub fn broadcast_shape(a: &[usize], b: &[usize]) -> Result<Vec<usize>> {
    let n = a.len().max(b.len());
    let mut out = vec![0; n];
    for (i, o) in out.iter_mut().enumerate() {
        // Missing leading dimensions behave like 1.
        let da = dim_from_right(a, n - 1 - i);
        let db = dim_from_right(b, n - 1 - i);
        *o = match (da, db) {
            (x, y) if x == y => x,
            (1, y) => y,
            (x, 1) => x,
            _ => bail!(
                "broadcast: shapes {a:?} and {b:?} are incompatible (dimension {da} vs {db}; \
                 expected equal sizes or 1)"
            ),
        };
    }
    Ok(out)
}

/// `shape[len - 1 - k]`, or 1 where the shape is shorter than that.
fn dim_from_right(shape: &[usize], k: usize) -> usize {
    if k < shape.len() {
        shape[shape.len() - 1 - k]
    } else {
        1
    }
}

/// Resolves a possibly negative axis (counting from the end) against `ndim` dimensions.
pub fn normalize_axis(op: &str, axis: isize, shape: &[usize]) -> Result<usize> {
    let ndim = shape.len() as isize;
    let resolved = if axis < 0 { axis + ndim } else { axis };
    if resolved < 0 || resolved >= ndim {
        bail!("{op}: axis {axis} is out of range for shape {shape:?} (expected -{ndim}..{ndim})");
    }
    Ok(resolved as usize)
}

/// Row-major (C-order) element strides of a shape.
pub fn strides(shape: &[usize]) -> Vec<usize> {
    let mut s = vec![1; shape.len()];
    for i in (0..shape.len().saturating_sub(1)).rev() {
        s[i] = s[i + 1] * shape[i + 1];
    }
    s
}

/// Splits a shape around `axis` into (product before, size of axis, product after).
pub fn split_at_axis(shape: &[usize], axis: usize) -> (usize, usize, usize) {
    let outer = shape[..axis].iter().product();
    let inner = shape[axis + 1..].iter().product();
    (outer, shape[axis], inner)
}

/// The shapes of a matmul (see `Backend::matmul`): `[batch..., m, n]` from `a [..., m, k]`
/// and `b [..., k, n]` (either transposed), checked.
pub struct MatmulDims {
    pub m: usize,
    pub k: usize,
    pub n: usize,
    /// The broadcast batch dimensions.
    pub batch: Vec<usize>,
}

pub fn matmul_dims(sa: &[usize], sb: &[usize], trans_a: bool, trans_b: bool) -> Result<MatmulDims> {
    if sa.len() < 2 || sb.len() < 2 {
        bail!(
            "matmul: both operands need at least 2 dimensions, got a {sa:?} and b {sb:?} \
             (expected a [..., m, k] and b [..., k, n])"
        );
    }
    let (ra, ca) = (sa[sa.len() - 2], sa[sa.len() - 1]);
    let (rb, cb) = (sb[sb.len() - 2], sb[sb.len() - 1]);
    let (m, k) = if trans_a { (ca, ra) } else { (ra, ca) };
    let (kb, n) = if trans_b { (cb, rb) } else { (rb, cb) };
    if k != kb {
        bail!(
            "matmul: inner dimensions differ: a {sa:?} vs b {sb:?} (k = {k} vs {kb}; \
             trans_a = {trans_a}, trans_b = {trans_b})"
        );
    }
    let (ba, bb) = (&sa[..sa.len() - 2], &sb[..sb.len() - 2]);
    let batch = broadcast_shape(ba, bb).map_err(|_| {
        anyhow::anyhow!(
            "matmul: batch dimensions {ba:?} of a {sa:?} and {bb:?} of b {sb:?} do not \
             broadcast (expected equal sizes or 1)"
        )
    })?;
    Ok(MatmulDims { m, k, n, batch })
}

/// Checks that `axes` permutes the axes of `shape`; true when it is the identity.
pub fn check_permutation(shape: &[usize], axes: &[usize]) -> Result<bool> {
    let mut seen = vec![false; shape.len()];
    let valid = axes.len() == shape.len()
        && axes
            .iter()
            .all(|&ax| ax < shape.len() && !std::mem::replace(&mut seen[ax], true));
    if !valid {
        bail!(
            "permute: axes {axes:?} are not a permutation of 0..{} for shape {shape:?}",
            shape.len()
        );
    }
    Ok(axes.iter().enumerate().all(|(i, &ax)| i == ax))
}

/// `(T, dh, half)` of a rotary embedding of `x [..., T, dh]`, checked against the
/// positions and the `half` inverse frequencies.
pub fn rope_dims(
    s: &[usize],
    positions: &[usize],
    inv_freq: &[f32],
) -> Result<(usize, usize, usize)> {
    if s.len() < 2 {
        bail!("rope: x must be [..., T, dh] (normally [H, T, dh]), got shape {s:?}");
    }
    let (t, dh) = (s[s.len() - 2], s[s.len() - 1]);
    if positions.len() != t {
        bail!(
            "rope: {} positions given for x {s:?} (expected one per token, T = {t})",
            positions.len()
        );
    }
    let half = inv_freq.len();
    if 2 * half > dh {
        bail!(
            "rope: rotary width 2 * {half} = {} exceeds the head dimension of x {s:?} \
             (expected 2 * inv_freq.len() <= {dh})",
            2 * half
        );
    }
    Ok((t, dh, half))
}

/// The rotary cos/sin tables `[T, half]`: the f32 angle `p * f`, its cos/sin evaluated in
/// f64 and rounded once (every backend uses these, so they agree bit for bit).
pub fn rope_tables(positions: &[usize], inv_freq: &[f32]) -> (Vec<f32>, Vec<f32>) {
    positions
        .iter()
        .flat_map(|&p| inv_freq.iter().map(move |&f| (p as f32 * f) as f64))
        .map(|theta| (theta.cos() as f32, theta.sin() as f32))
        .unzip()
}

/// The axis and result shape of `slice(axis, start..end)` on `shape`, checked.
pub fn slice_shape(
    shape: &[usize],
    axis: isize,
    start: usize,
    end: usize,
) -> Result<(usize, Vec<usize>)> {
    let ax = normalize_axis("slice", axis, shape)?;
    let n = shape[ax];
    if start > end || end > n {
        bail!(
            "slice: range {start}..{end} is out of bounds for axis {axis} of shape {shape:?} \
             (expected start <= end <= {n})"
        );
    }
    let mut out = shape.to_vec();
    out[ax] = end - start;
    Ok((ax, out))
}

/// The axis and result shape of concatenating `shapes` along `axis`, checked.
pub fn concat_shape(shapes: &[&[usize]], axis: isize) -> Result<(usize, Vec<usize>)> {
    let Some(first) = shapes.first() else {
        bail!("concat: no tensors given (expected at least one)");
    };
    let ax = normalize_axis("concat", axis, first)?;
    for s in shapes {
        if s.len() != first.len() || (0..s.len()).any(|d| d != ax && s[d] != first[d]) {
            bail!(
                "concat: shapes {shapes:?} differ outside axis {axis} (expected all \
                 dimensions except {ax} to match)"
            );
        }
    }
    let mut out = first.to_vec();
    out[ax] = shapes.iter().map(|s| s[ax]).sum();
    Ok((ax, out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn broadcasting_follows_numpy() {
        assert_eq!(broadcast_shape(&[2, 3], &[3]).unwrap(), vec![2, 3]);
        assert_eq!(broadcast_shape(&[4, 1, 5], &[3, 1]).unwrap(), vec![4, 3, 5]);
        assert_eq!(broadcast_shape(&[], &[2, 2]).unwrap(), vec![2, 2]);
        assert_eq!(broadcast_shape(&[0, 1], &[1, 3]).unwrap(), vec![0, 3]);
        let err = broadcast_shape(&[2, 3], &[4]).unwrap_err().to_string();
        assert!(err.contains("[2, 3]") && err.contains("[4]"), "{err}");
    }

    #[test]
    fn axes_and_strides() {
        assert_eq!(normalize_axis("t", -1, &[2, 3]).unwrap(), 1);
        assert_eq!(normalize_axis("t", 0, &[2, 3]).unwrap(), 0);
        assert!(normalize_axis("t", 2, &[2, 3]).is_err());
        assert!(normalize_axis("t", -3, &[2, 3]).is_err());
        assert!(normalize_axis("t", 0, &[]).is_err());
        assert_eq!(strides(&[2, 3, 4]), vec![12, 4, 1]);
        assert_eq!(strides(&[]), Vec::<usize>::new());
        assert_eq!(split_at_axis(&[2, 3, 4], 1), (2, 3, 4));
    }
}
