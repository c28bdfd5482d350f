//! `matmul`: shape checking and batch broadcasting on top of the GEMM kernel.
//!
//! Transposes never copy: they only swap the strides the kernel reads with. When `b`
//! has no (or only size-1) batch dimensions and `a` is not transposed, all of `a`'s
//! batches are folded into one tall matrix, so `x [B, T, d] @ W^T` is a single large
//! GEMM rather than B small ones.

use anyhow::Result;

use super::gemm::{gemm_new, GemmJob, HalfRef, MatRef, PackedB};
use super::half::HalfWeights;
use crate::shape::{matmul_dims, strides, MatmulDims};
use crate::Tensor;

/// `bh`: `b`'s half-precision copy, read instead of its f32 data (see `half.rs`); `bp`:
/// `b` (a 2-D `[n, k]` weight with `trans_b`) already packed for the GEMM kernel.
pub(crate) fn matmul(
    a: &Tensor,
    b: &Tensor,
    trans_a: bool,
    trans_b: bool,
    bh: Option<&HalfWeights>,
    bp: Option<&PackedB>,
) -> Result<Tensor> {
    let (sa, sb) = (a.shape(), b.shape());
    let MatmulDims { m, k, n, batch } = matmul_dims(sa, sb, trans_a, trans_b)?;
    let (ba, bb) = (&sa[..sa.len() - 2], &sb[..sb.len() - 2]);
    let nbatch: usize = batch.iter().product();
    let mut out_shape = batch.clone();
    out_shape.extend([m, n]);
    let len = nbatch * m * n;
    if len == 0 {
        return Tensor::new(out_shape, Vec::new());
    }

    let a_view = |off: usize, rows: usize| {
        let data = &a.data()[off..off + rows * k];
        if trans_a {
            MatRef {
                data,
                rows,
                cols: k,
                rs: 1,
                cs: rows,
            }
        } else {
            MatRef {
                data,
                rows,
                cols: k,
                rs: k,
                cs: 1,
            }
        }
    };
    let b_view = |off: usize| {
        let data = &b.data()[off..off + k * n];
        if trans_b {
            MatRef {
                data,
                rows: k,
                cols: n,
                rs: 1,
                cs: k,
            }
        } else {
            MatRef {
                data,
                rows: k,
                cols: n,
                rs: n,
                cs: 1,
            }
        }
    };

    let bh_view = |off: usize| {
        bh.map(|h| HalfRef {
            kind: h.kind,
            data: &h.values()[off..off + k * n],
        })
    };

    let b_batches: usize = bb.iter().product();
    if b_batches == 1 && !trans_a {
        // One shared right operand: fold every batch of a into the row dimension.
        let rows = nbatch * m;
        let a_batches: usize = ba.iter().product();
        if a_batches == nbatch {
            let job = GemmJob {
                a: a_view(0, rows),
                b: b_view(0),
                bh: bh_view(0),
                bp: if trans_b && sb.len() == 2 { bp } else { None },
                c_offset: 0,
            };
            // The output is written, not accumulated into: no zeroing first.
            return Tensor::new(out_shape, gemm_new(&[job], rows, n, k, len));
        }
    }

    // General case: one job per output batch, each operand's batch offset found by
    // broadcasting (a size-1 dimension contributes stride 0).
    let bstrides = |dims: &[usize]| -> Vec<usize> {
        let own = strides(dims);
        let pad = batch.len() - dims.len();
        (0..batch.len())
            .map(|d| {
                if d < pad || dims[d - pad] == 1 {
                    0
                } else {
                    own[d - pad]
                }
            })
            .collect()
    };
    let (sta, stb) = (bstrides(ba), bstrides(bb));
    let out_strides = strides(&batch);
    let jobs: Vec<GemmJob> = (0..nbatch)
        .map(|bi| {
            let (mut oa, mut ob) = (0, 0);
            for d in 0..batch.len() {
                let idx = (bi / out_strides[d]) % batch[d];
                oa += idx * sta[d];
                ob += idx * stb[d];
            }
            GemmJob {
                a: a_view(oa * m * k, m),
                b: b_view(ob * k * n),
                bh: bh_view(ob * k * n),
                bp: None,
                c_offset: bi * m * n,
            }
        })
        .collect();
    Tensor::new(out_shape, gemm_new(&jobs, m, n, k, len))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::shape::broadcast_shape;
    use crate::testutil::{assert_close, Rng};

    /// Reference: explicit loops over broadcast batches with f64 accumulation.
    fn naive(a: &Tensor, b: &Tensor, ta: bool, tb: bool) -> Tensor {
        let (sa, sb) = (a.shape(), b.shape());
        let (ra, ca) = (sa[sa.len() - 2], sa[sa.len() - 1]);
        let (rb, cb) = (sb[sb.len() - 2], sb[sb.len() - 1]);
        let (m, k) = if ta { (ca, ra) } else { (ra, ca) };
        let n = if tb { rb } else { cb };
        let batch = broadcast_shape(&sa[..sa.len() - 2], &sb[..sb.len() - 2]).unwrap();
        let nb: usize = batch.iter().product();
        let mut out = Vec::new();
        for bi in 0..nb {
            // Decompose the batch index and map it onto each operand.
            let mut rem = bi;
            let mut idx = vec![0; batch.len()];
            for d in (0..batch.len()).rev() {
                idx[d] = rem % batch[d];
                rem /= batch[d];
            }
            let off = |s: &[usize]| {
                let dims = &s[..s.len() - 2];
                let pad = batch.len() - dims.len();
                let mut o = 0;
                for (d, &sz) in dims.iter().enumerate() {
                    o = o * sz + if sz == 1 { 0 } else { idx[d + pad] };
                }
                o
            };
            let (oa, ob) = (off(sa) * m * k, off(sb) * k * n);
            for i in 0..m {
                for j in 0..n {
                    let mut s = 0f64;
                    for p in 0..k {
                        let av = if ta {
                            a.data()[oa + p * m + i]
                        } else {
                            a.data()[oa + i * k + p]
                        };
                        let bv = if tb {
                            b.data()[ob + j * k + p]
                        } else {
                            b.data()[ob + p * n + j]
                        };
                        s += av as f64 * bv as f64;
                    }
                    out.push(s as f32);
                }
            }
        }
        let mut shape = batch;
        shape.extend([m, n]);
        Tensor::new(shape, out).unwrap()
    }

    #[test]
    fn hand_computed_2x2() {
        let a = Tensor::new(vec![2, 2], vec![1., 2., 3., 4.]).unwrap();
        let b = Tensor::new(vec![2, 2], vec![5., 6., 7., 8.]).unwrap();
        assert_eq!(
            matmul(&a, &b, false, false, None, None).unwrap().data(),
            &[19., 22., 43., 50.]
        );
        assert_eq!(
            matmul(&a, &b, false, true, None, None).unwrap().data(),
            &[17., 23., 39., 53.]
        );
        assert_eq!(
            matmul(&a, &b, true, false, None, None).unwrap().data(),
            &[26., 30., 38., 44.]
        );
    }

    #[test]
    fn random_shapes_match_naive() {
        let mut rng = Rng::new(3);
        // (batch dims of a, batch dims of b, m, k, n).
        type Case = (&'static [usize], &'static [usize], usize, usize, usize);
        let cases: &[Case] = &[
            (&[], &[], 1, 1, 1),
            (&[], &[], 7, 13, 5),
            (&[], &[], 37, 300, 70),
            (&[3], &[], 5, 8, 9),
            (&[2, 3], &[], 17, 40, 33),
            (&[2, 3], &[3], 4, 6, 7),
            (&[2, 1], &[1, 4], 9, 5, 3),
            (&[1], &[5], 20, 16, 12),
            (&[4], &[4], 2, 64, 80),
            (&[], &[3], 11, 10, 19),
        ];
        for &(ba, bb, m, k, n) in cases {
            for ta in [false, true] {
                for tb in [false, true] {
                    let mut sa = ba.to_vec();
                    sa.extend(if ta { [k, m] } else { [m, k] });
                    let mut sb = bb.to_vec();
                    sb.extend(if tb { [n, k] } else { [k, n] });
                    let a = rng.tensor(&sa);
                    let b = rng.tensor(&sb);
                    let got = matmul(&a, &b, ta, tb, None, None).unwrap();
                    let want = naive(&a, &b, ta, tb);
                    assert_eq!(got.shape(), want.shape(), "{sa:?} {sb:?} {ta} {tb}");
                    assert_close(got.data(), want.data(), 1e-4);
                }
            }
        }
    }

    #[test]
    fn wide_pool_splits_tiles_and_batches() {
        // More threads than batches: batches run one after another, each split into
        // tiles across the pool.
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(8)
            .build()
            .unwrap();
        let mut rng = Rng::new(8);
        let a = rng.tensor(&[3, 130, 70]);
        let b = rng.tensor(&[3, 90, 70]);
        let got = pool
            .install(|| matmul(&a, &b, false, true, None, None))
            .unwrap();
        assert_close(got.data(), naive(&a, &b, false, true).data(), 1e-4);
        let w = rng.tensor(&[300, 70]);
        let got = pool
            .install(|| matmul(&a, &w, false, true, None, None))
            .unwrap();
        assert_eq!(got.shape(), &[3, 130, 300]);
        assert_close(got.data(), naive(&a, &w, false, true).data(), 1e-4);
    }

    #[test]
    fn empty_operands() {
        let a = Tensor::zeros(vec![0, 4]);
        let b = Tensor::zeros(vec![4, 3]);
        assert_eq!(
            matmul(&a, &b, false, false, None, None).unwrap().shape(),
            &[0, 3]
        );
        let a = Tensor::zeros(vec![2, 0]);
        let b = Tensor::zeros(vec![0, 3]);
        let c = matmul(&a, &b, false, false, None, None).unwrap();
        assert_eq!((c.shape(), c.data()), (&[2usize, 3][..], &[0f32; 6][..]));
    }

    #[test]
    fn shape_errors() {
        let a = Tensor::zeros(vec![2, 3, 4]);
        let b = Tensor::zeros(vec![5, 6]);
        let err = matmul(&a, &b, false, false, None, None)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("matmul: inner dimensions differ: a [2, 3, 4] vs b [5, 6] (k = 4 vs 5"),
            "{err}"
        );
        let err = matmul(&Tensor::zeros(vec![4]), &b, false, false, None, None)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("at least 2 dimensions") && err.contains("[4]"),
            "{err}"
        );
        let a = Tensor::zeros(vec![2, 3, 4]);
        let b = Tensor::zeros(vec![3, 4, 5]);
        let err = matmul(&a, &b, false, false, None, None)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("batch dimensions [2]") && err.contains("[3]"),
            "{err}"
        );
    }
}
