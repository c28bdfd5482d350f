//! Elementwise ops: unary activations, broadcast binary ops and `affine`.
//!
//! Activations stay within a few float32 ulps of torch: the exp-based ones (sigmoid,
//! silu, gelu_tanh) run in f32 on the vectorisable `fastmath::exp`, exact GELU and
//! softplus in f64, rounded once. Large tensors are split into chunks processed in
//! parallel.

use std::sync::OnceLock;

use anyhow::{anyhow, Result};
use multiversion::multiversion;

use super::fastmath::exp as fast_exp;
use crate::shape::{broadcast_shape, strides};
use crate::{BinaryOp, Tensor, UnaryOp};

/// Elements per parallel chunk; below this a tensor is processed on one thread.
pub(crate) const PAR_CHUNK: usize = 1 << 14;

/// `o[i] = f(s[i])`, compiled for AVX-512 and AVX2 too and picked at run time, so the
/// activations' branch-free `exp` runs 16 or 8 lanes wide (the baseline build has
/// SSE2's 4). No fused multiply-adds are formed, so every version gives the same bits.
#[multiversion(targets("x86_64+avx512f+avx512vl+avx2+fma", "x86_64+avx2+fma"))]
fn apply<F: Fn(f32) -> f32>(o: &mut [f32], s: &[f32], f: &F) {
    for (o, &s) in o.iter_mut().zip(s) {
        *o = f(s);
    }
}

/// `o[i] = f(x[i], y[i])`, multiversioned like [`apply`].
#[multiversion(targets("x86_64+avx512f+avx512vl+avx2+fma", "x86_64+avx2+fma"))]
fn apply2<F: Fn(f32, f32) -> f32>(o: &mut [f32], x: &[f32], y: &[f32], f: &F) {
    for ((o, &x), &y) in o.iter_mut().zip(x).zip(y) {
        *o = f(x, y);
    }
}

/// `out[i] = f(src[i])`, parallel over chunks for large inputs.
pub(crate) fn map(src: &[f32], f: impl Fn(f32) -> f32 + Sync) -> Vec<f32> {
    let mut out = vec![0f32; src.len()];
    let body = |(o, s): (&mut [f32], &[f32])| apply(o, s, &f);
    if src.len() <= PAR_CHUNK {
        body((&mut out, src));
    } else {
        super::spin::rows_mut(&mut out, 1, |i, o| {
            let n = o.len();
            body((o, &src[i..i + n]))
        });
    }
    out
}

pub(crate) fn unary(op: UnaryOp, a: &Tensor) -> Result<Tensor> {
    let data = match op {
        UnaryOp::Neg => map(a.data(), |x| -x),
        UnaryOp::Exp => map(a.data(), f32::exp),
        UnaryOp::Log => map(a.data(), f32::ln),
        UnaryOp::Sqrt => map(a.data(), f32::sqrt),
        UnaryOp::Rsqrt => map(a.data(), |x| (1.0 / (x as f64).sqrt()) as f32),
        UnaryOp::Abs => map(a.data(), f32::abs),
        UnaryOp::Tanh => map(a.data(), f32::tanh),
        UnaryOp::Sigmoid => map(a.data(), sigmoid),
        UnaryOp::Relu => map(a.data(), relu),
        UnaryOp::Silu => map(a.data(), silu),
        UnaryOp::GeluErf => {
            let table = erf_table();
            map(a.data(), |x| gelu_erf(table, x))
        }
        UnaryOp::GeluTanh => map(a.data(), gelu_tanh),
        UnaryOp::Softplus => map(a.data(), softplus),
    };
    Tensor::new(a.shape().to_vec(), data)
}

pub(crate) fn affine(a: &Tensor, scale: f32, shift: f32) -> Result<Tensor> {
    Tensor::new(a.shape().to_vec(), map(a.data(), |x| x * scale + shift))
}

fn relu(x: f32) -> f32 {
    // NaN passes through like torch.relu.
    if x > 0.0 || x.is_nan() {
        x
    } else {
        0.0
    }
}

/// Logistic function `1 / (1 + e^-x)` in f32 (a few ulp): e^-x overflowing to +inf
/// correctly gives 0, so no branch is needed.
pub(crate) fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + fast_exp(-x))
}

/// `x * sigmoid(x)`, as `x / (1 + e^-x)` (one rounding fewer).
pub(crate) fn silu(x: f32) -> f32 {
    x / (1.0 + fast_exp(-x))
}

/// torch `softplus` with beta = 1, threshold = 20.
fn softplus(x: f32) -> f32 {
    if x > 20.0 {
        x
    } else {
        (x as f64).exp().ln_1p() as f32
    }
}

/// Exact GELU `x/2 * (1 + erf(x / sqrt 2))`, in f64 (`table` is [`erf_table`]).
fn gelu_erf(table: &[(f64, f64)], x: f32) -> f32 {
    let x = x as f64;
    (0.5 * x * (1.0 + erf_with(table, x * std::f64::consts::FRAC_1_SQRT_2))) as f32
}

/// GPT-2's `gelu_new`, `x/2 * (1 + tanh(u))` with `u = sqrt(2/pi) (x + 0.044715 x^3)`,
/// evaluated as the identical `x / (1 + e^{-2u})`: no cancellation for negative x and
/// no tanh call.
fn gelu_tanh(x: f32) -> f32 {
    const C: f32 = 0.797_884_6; // sqrt(2 / pi)
    let u = C * (x + 0.044_715 * x * x * x);
    x / (1.0 + fast_exp(-2.0 * u))
}

/// Grid spacing of the erf table (1/64) and its extent; erf(6) = 1 - 2e-17.
const ERF_STEPS_PER_UNIT: f64 = 64.0;
const ERF_MAX: f64 = 6.0;

/// Nodes `(erf(x_i), erf'(x_i))` on `[0, 6]`, built once from the all-positive series
/// `erf x = 2/sqrt(pi) e^{-x^2} sum_n 2^n x^{2n+1} / (2n+1)!!` (no cancellation).
fn erf_table() -> &'static [(f64, f64)] {
    static TABLE: OnceLock<Vec<(f64, f64)>> = OnceLock::new();
    TABLE.get_or_init(|| {
        let two_over_sqrt_pi = 2.0 / std::f64::consts::PI.sqrt();
        let nodes = (ERF_MAX * ERF_STEPS_PER_UNIT) as usize + 1;
        (0..nodes)
            .map(|i| {
                let x = i as f64 / ERF_STEPS_PER_UNIT;
                let (mut term, mut sum, mut n) = (x, x, 0.0);
                while term > 1e-18 * sum {
                    n += 1.0;
                    term *= 2.0 * x * x / (2.0 * n + 1.0);
                    sum += term;
                }
                let g = two_over_sqrt_pi * (-x * x).exp();
                ((g * sum).min(1.0), g)
            })
            .collect()
    })
}

/// `erf` for tests, which do not want to thread the table through.
#[cfg(test)]
fn erf(z: f64) -> f64 {
    erf_with(erf_table(), z)
}

/// The error function to about 1e-9 absolute: cubic Hermite interpolation of
/// [`erf_table`] (the derivative is known exactly, so the interpolation error is
/// h^4/384 * |erf''''|). The table is passed in so loops fetch it once.
#[inline]
fn erf_with(table: &[(f64, f64)], z: f64) -> f64 {
    if z.is_nan() {
        return z;
    }
    let a = z.abs();
    if a >= ERF_MAX {
        return z.signum();
    }
    let s = a * ERF_STEPS_PER_UNIT;
    let i = s as usize;
    let t = s - i as f64;
    let h = 1.0 / ERF_STEPS_PER_UNIT;
    let ((y0, d0), (y1, d1)) = (table[i], table[i + 1]);
    let (t2, t3) = (t * t, t * t * t);
    let v = (2.0 * t3 - 3.0 * t2 + 1.0) * y0
        + (t3 - 2.0 * t2 + t) * h * d0
        + (-2.0 * t3 + 3.0 * t2) * y1
        + (t3 - t2) * h * d1;
    v.copysign(z)
}

/// `max(x, y)`, NaN when either is NaN (like torch.maximum; `f32::max` would drop it).
#[inline(always)]
fn maximum(x: f32, y: f32) -> f32 {
    if x.is_nan() || y.is_nan() {
        f32::NAN
    } else {
        x.max(y)
    }
}

/// `min(x, y)`, NaN when either is NaN (like torch.minimum).
#[inline(always)]
fn minimum(x: f32, y: f32) -> f32 {
    if x.is_nan() || y.is_nan() {
        f32::NAN
    } else {
        x.min(y)
    }
}

/// Evaluates `$body` with `$f` bound to `$op`'s function as a closure, so a loop in
/// `$body` inlines (and vectorises) it.
macro_rules! with_binary {
    ($op:expr, $f:ident => $body:expr) => {
        match $op {
            BinaryOp::Add => {
                let $f = |x: f32, y: f32| x + y;
                $body
            }
            BinaryOp::Sub => {
                let $f = |x: f32, y: f32| x - y;
                $body
            }
            BinaryOp::Mul => {
                let $f = |x: f32, y: f32| x * y;
                $body
            }
            BinaryOp::Div => {
                let $f = |x: f32, y: f32| x / y;
                $body
            }
            BinaryOp::Max => {
                let $f = maximum;
                $body
            }
            BinaryOp::Min => {
                let $f = minimum;
                $body
            }
        }
    };
}

pub(crate) fn binary(op: BinaryOp, a: &Tensor, b: &Tensor) -> Result<Tensor> {
    let shape = broadcast_shape(a.shape(), b.shape()).map_err(|_| {
        anyhow!(
            "{}: shapes {:?} and {:?} do not broadcast (expected trailing dimensions to be \
             equal or 1)",
            op.name(),
            a.shape(),
            b.shape()
        )
    })?;
    let (ad, bd) = (a.data(), b.data());
    if a.shape() == b.shape() {
        let mut out = vec![0f32; ad.len()];
        let body = |((o, x), y): ((&mut [f32], &[f32]), &[f32])| with_binary!(op, f => apply2(o, x, y, &f));
        if out.len() <= PAR_CHUNK {
            body(((&mut out, ad), bd));
        } else {
            super::spin::rows_mut(&mut out, 1, |i, o| {
                let r = i..i + o.len();
                body(((o, &ad[r.clone()]), &bd[r]))
            });
        }
        return Tensor::new(shape, out);
    }
    let n: usize = shape.iter().product();
    if b.numel() == 1 && n == a.numel() {
        let y = bd[0];
        return Tensor::new(shape, with_binary!(op, f => map(ad, |x| f(x, y))));
    }
    if a.numel() == 1 && n == b.numel() {
        let x = ad[0];
        return Tensor::new(shape, with_binary!(op, f => map(bd, |y| f(x, y))));
    }
    let out = with_binary!(op, f => broadcast_general(f, a, b, &shape));
    Tensor::new(shape, out)
}

/// Broadcast loop: per-dimension strides (0 along broadcast dimensions), merged where
/// memory allows, then the last merged dimension runs as the inner loop.
fn broadcast_general(
    f: impl Fn(f32, f32) -> f32 + Sync,
    a: &Tensor,
    b: &Tensor,
    shape: &[usize],
) -> Vec<f32> {
    let n: usize = shape.iter().product();
    let mut out = vec![0f32; n];
    if n == 0 {
        return out;
    }
    let bstrides = |s: &[usize]| -> Vec<usize> {
        let own = strides(s);
        let pad = shape.len() - s.len();
        (0..shape.len())
            .map(|d| {
                if d < pad || s[d - pad] == 1 {
                    0
                } else {
                    own[d - pad]
                }
            })
            .collect()
    };
    let (sa, sb) = (bstrides(a.shape()), bstrides(b.shape()));
    // Merge dimension d into d+1 when both operands step through them as one run.
    let mut dims: Vec<(usize, usize, usize)> = Vec::new();
    for d in 0..shape.len() {
        if shape[d] == 1 {
            continue;
        }
        let cur = (shape[d], sa[d], sb[d]);
        if let Some(last) = dims.last_mut() {
            if last.1 == cur.1 * cur.0 && last.2 == cur.2 * cur.0 {
                *last = (last.0 * cur.0, cur.1, cur.2);
                continue;
            }
        }
        dims.push(cur);
    }
    let (inner, ia, ib) = dims.pop().unwrap_or((1, 0, 0));
    let (ad, bd) = (a.data(), b.data());
    let row = |r: usize, o: &mut [f32]| {
        // Offsets of this row's start in each operand.
        let (mut oa, mut ob, mut rem) = (0, 0, r);
        for &(size, sa, sb) in dims.iter().rev() {
            let idx = rem % size;
            rem /= size;
            oa += idx * sa;
            ob += idx * sb;
        }
        for (j, o) in o.iter_mut().enumerate() {
            *o = f(ad[oa + j * ia], bd[ob + j * ib]);
        }
    };
    if n <= PAR_CHUNK {
        out.chunks_mut(inner)
            .enumerate()
            .for_each(|(r, o)| row(r, o));
    } else {
        super::spin::rows_mut(&mut out, inner, |first, chunk| {
            for (r, o) in chunk.chunks_mut(inner).enumerate() {
                row(first + r, o);
            }
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::{assert_close, Rng};

    fn t(shape: &[usize], data: &[f32]) -> Tensor {
        Tensor::new(shape.to_vec(), data.to_vec()).unwrap()
    }

    fn un(op: UnaryOp, xs: &[f32]) -> Vec<f32> {
        unary(op, &t(&[xs.len()], xs)).unwrap().to_vec()
    }

    #[test]
    fn erf_matches_reference_values() {
        let cases = [
            (0.0, 0.0),
            (0.5, 0.5204998778130465),
            (1.0, 0.8427007929497149),
            (2.0, 0.9953222650189527),
            (3.0, 0.9999779095030014),
            (-0.3, -0.3286267594591274),
            (0.01, 0.011283415555849616),
        ];
        for (x, want) in cases {
            assert!(
                (erf(x) - want).abs() < 2e-9,
                "erf({x}) = {} vs {want}",
                erf(x)
            );
        }
        assert_eq!(erf(10.0), 1.0);
        assert_eq!(erf(-7.0), -1.0);
        // Monotone across table nodes (up to f64 rounding where erf saturates).
        let mut prev = -1.0;
        for i in 0..4000 {
            let v = erf(-6.5 + i as f64 * 0.00325);
            assert!(
                v >= prev - 1e-15,
                "erf not monotone at step {i}: {v} < {prev}"
            );
            prev = v;
        }
    }

    #[test]
    fn activations_match_torch_values() {
        assert_close(&un(UnaryOp::GeluErf, &[1.0]), &[0.841_344_7], 1e-7);
        assert_close(&un(UnaryOp::GeluTanh, &[1.0]), &[0.841_192], 1e-7);
        assert_close(
            &un(UnaryOp::GeluErf, &[-1.0, 0.0, 3.0]),
            &[-0.158_655_26, 0.0, 2.995_950_5],
            1e-7,
        );
        assert_close(
            &un(UnaryOp::GeluTanh, &[-1.0, 2.0]),
            &[-0.158_808, 1.954_597_7],
            1e-7,
        );
        assert_close(
            &un(UnaryOp::Softplus, &[0.0]),
            &[std::f32::consts::LN_2],
            1e-7,
        );
        assert_eq!(un(UnaryOp::Softplus, &[25.0, 1000.0]), vec![25.0, 1000.0]);
        assert_close(
            &un(UnaryOp::Softplus, &[-30.0, 1.0]),
            &[9.357_623e-14, 1.313_261_7],
            1e-7,
        );
        assert_close(
            &un(UnaryOp::Sigmoid, &[0.0, 2.0, -1000.0, 1000.0]),
            &[0.5, 0.880_797, 0.0, 1.0],
            1e-7,
        );
        assert_close(
            &un(UnaryOp::Silu, &[1.0, -2.0]),
            &[0.731_058_6, -0.238_405_84],
            1e-7,
        );
        assert_eq!(un(UnaryOp::Relu, &[-1.0, 0.0, 2.0]), vec![0.0, 0.0, 2.0]);
        assert!(un(UnaryOp::Relu, &[f32::NAN])[0].is_nan());
        assert_close(&un(UnaryOp::Tanh, &[0.5]), &[0.462_117_16], 1e-7);
    }

    #[test]
    fn f32_activations_track_f64_references() {
        let xs: Vec<f32> = (0..8001).map(|i| (i as f32 - 4000.0) * 0.005).collect();
        type Reference = fn(f64) -> f64;
        let refs: [(UnaryOp, Reference); 3] = [
            (UnaryOp::Sigmoid, |x| 1.0 / (1.0 + (-x).exp())),
            (UnaryOp::Silu, |x| x / (1.0 + (-x).exp())),
            // x/2 (1 + tanh u) = x / (1 + e^{-2u}); the latter keeps relative accuracy
            // where the tanh form cancels to 0 even in f64.
            (UnaryOp::GeluTanh, |x| {
                let c = (2.0 / std::f64::consts::PI).sqrt();
                x / (1.0 + (-2.0 * c * (x + 0.044715 * x * x * x)).exp())
            }),
        ];
        for (op, reference) in refs {
            for (x, got) in xs.iter().zip(un(op, &xs)) {
                let want = reference(*x as f64);
                let err = (got as f64 - want).abs();
                assert!(
                    // Small outputs (where f32 rounding of the exponent argument is
                    // amplified, and torch's own float32 formula returns 0) only
                    // need absolute accuracy.
                    err <= 4e-7 * want.abs() + 1e-8,
                    "{}({x}) = {got}, want {want}",
                    op.name()
                );
            }
        }
    }

    #[test]
    fn simple_unary_ops() {
        assert_eq!(un(UnaryOp::Neg, &[1.0, -2.0]), vec![-1.0, 2.0]);
        assert_eq!(un(UnaryOp::Abs, &[-3.0, 2.0]), vec![3.0, 2.0]);
        assert_eq!(un(UnaryOp::Sqrt, &[4.0, 9.0]), vec![2.0, 3.0]);
        assert_eq!(un(UnaryOp::Rsqrt, &[4.0, 0.25]), vec![0.5, 2.0]);
        assert_close(
            &un(UnaryOp::Exp, &[0.0, 1.0]),
            &[1.0, std::f32::consts::E],
            1e-7,
        );
        assert_close(
            &un(UnaryOp::Log, &[1.0, std::f32::consts::E]),
            &[0.0, 1.0],
            1e-7,
        );
        assert_eq!(un(UnaryOp::Log, &[0.0]), vec![f32::NEG_INFINITY]);
        let big: Vec<f32> = (0..100_000).map(|i| i as f32).collect();
        let out = un(UnaryOp::Neg, &big);
        assert!(out.iter().enumerate().all(|(i, &v)| v == -(i as f32)));
        let a = affine(&t(&[3], &[1.0, 2.0, 3.0]), 2.0, -1.0).unwrap();
        assert_eq!(a.data(), &[1.0, 3.0, 5.0]);
    }

    #[test]
    fn binary_ops_and_broadcasting() {
        let a = t(&[2, 3], &[1., 2., 3., 4., 5., 6.]);
        let row = t(&[3], &[10., 20., 30.]);
        let col = t(&[2, 1], &[100., 200.]);
        let add = |x: &Tensor, y: &Tensor| binary(BinaryOp::Add, x, y).unwrap();
        assert_eq!(add(&a, &row).data(), &[11., 22., 33., 14., 25., 36.]);
        assert_eq!(add(&a, &col).data(), &[101., 102., 103., 204., 205., 206.]);
        let outer = add(&col, &row);
        assert_eq!(outer.shape(), &[2, 3]);
        assert_eq!(outer.data(), &[110., 120., 130., 210., 220., 230.]);
        let s = Tensor::scalar(2.0);
        assert_eq!(binary(BinaryOp::Div, &s, &a).unwrap().data()[1], 1.0);
        assert_eq!(binary(BinaryOp::Sub, &a, &s).unwrap().data()[0], -1.0);
        assert_eq!(binary(BinaryOp::Mul, &a, &a).unwrap().data()[5], 36.0);
        let m = binary(
            BinaryOp::Max,
            &t(&[3], &[1., f32::NAN, 5.]),
            &t(&[3], &[2., 0., 4.]),
        )
        .unwrap();
        assert_eq!(m.data()[0], 2.0);
        assert!(m.data()[1].is_nan());
        assert_eq!(m.data()[2], 5.0);
        let m = binary(BinaryOp::Min, &t(&[2], &[1., 7.]), &t(&[2], &[2., 0.])).unwrap();
        assert_eq!(m.data(), &[1.0, 0.0]);
        let err = binary(BinaryOp::Add, &a, &t(&[2], &[1., 2.]))
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("add:") && err.contains("[2, 3]") && err.contains("[2]"),
            "{err}"
        );
    }

    #[test]
    fn general_broadcast_matches_index_arithmetic() {
        let mut rng = Rng::new(11);
        let cases: &[(&[usize], &[usize])] = &[
            (&[4, 1, 6], &[5, 1]),
            (&[2, 3, 1, 5], &[3, 4, 1]),
            (&[64, 1, 300], &[1, 7, 300]),
            (&[1, 1], &[3, 1, 2]),
        ];
        for &(sa, sb) in cases {
            let a = rng.tensor(sa);
            let b = rng.tensor(sb);
            let out = binary(BinaryOp::Sub, &a, &b).unwrap();
            let shape = broadcast_shape(sa, sb).unwrap();
            assert_eq!(out.shape(), &shape[..]);
            let st = strides(&shape);
            for (i, &v) in out.data().iter().enumerate() {
                let idx: Vec<usize> = (0..shape.len()).map(|d| (i / st[d]) % shape[d]).collect();
                let pick = |x: &Tensor| {
                    let s = x.shape();
                    let pad = shape.len() - s.len();
                    let mut off = 0;
                    for (d, &sz) in s.iter().enumerate() {
                        off = off * sz + if sz == 1 { 0 } else { idx[d + pad] };
                    }
                    x.data()[off]
                };
                assert_eq!(v, pick(&a) - pick(&b));
            }
        }
    }
}
