//! Scaled dot-product attention with grouped-query heads and flexible masking.
//!
//! Work is split into (head, block of queries) tasks run in parallel. Each task only
//! touches the span of keys that some query in its block can see (causal and window
//! masks bound it), computes the block's scores with the GEMM kernel, masks, softmaxes
//! row by row and multiplies by V. Every task writes a disjoint, contiguous range of
//! each output.

use std::cell::Cell;

use anyhow::{bail, Result};

use super::fastmath::exp_shift_sum;
use super::gemm::{gemm_serial, GemmJob, MatRef};
use crate::{AttnMask, Tensor};

/// Queries per task.
const Q_BLOCK: usize = 64;

thread_local! {
    /// A task's score block, kept between tasks and calls.
    static SCORES: Cell<Vec<f32>> = const { Cell::new(Vec::new()) };
}

/// Raw output pointer shared by tasks writing disjoint ranges.
#[derive(Clone, Copy)]
struct OutPtr(*mut f32);
// SAFETY: each task writes only the rows of its own (head, query block).
unsafe impl Send for OutPtr {}
unsafe impl Sync for OutPtr {}

impl OutPtr {
    /// Accessed through a method so closures capture the whole `Send + Sync` wrapper
    /// rather than (by precise capture) the bare pointer field.
    #[inline(always)]
    fn ptr(self) -> *mut f32 {
        self.0
    }
}

pub(crate) struct Dims {
    pub h: usize,
    pub hkv: usize,
    pub tq: usize,
    pub tk: usize,
    pub dh: usize,
    pub dv: usize,
}

pub(crate) fn check(q: &Tensor, k: &Tensor, v: &Tensor, mask: &AttnMask) -> Result<Dims> {
    let (sq, sk, sv) = (q.shape(), k.shape(), v.shape());
    let (&[h, tq, dh], &[hkv, tk, dhk], &[hkv_v, tk_v, dv]) = (sq, sk, sv) else {
        bail!(
            "attention: expected q [H, Tq, dh], k [Hkv, Tk, dh], v [Hkv, Tk, dv], got q {sq:?}, \
             k {sk:?}, v {sv:?}"
        );
    };
    if dh != dhk {
        bail!("attention: head dimension differs: q {sq:?} vs k {sk:?} (dh = {dh} vs {dhk})");
    }
    if hkv != hkv_v || tk != tk_v {
        bail!("attention: k {sk:?} and v {sv:?} disagree (expected the same [Hkv, Tk, _])");
    }
    if hkv == 0 || h % hkv != 0 {
        bail!(
            "attention: {h} query heads cannot share {hkv} kv heads: q {sq:?}, k {sk:?} \
             (expected H to be a positive multiple of Hkv)"
        );
    }
    if let Some(keep) = &mask.key_keep {
        if keep.len() != tk {
            bail!(
                "attention: key_keep has {} entries for k {sk:?} (expected Tk = {tk})",
                keep.len()
            );
        }
    }
    Ok(Dims {
        h,
        hkv,
        tq,
        tk,
        dh,
        dv,
    })
}

pub(crate) fn attention(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    mask: &AttnMask,
    scale: f32,
    with_probs: bool,
) -> Result<(Tensor, Option<(Tensor, Tensor)>)> {
    let d = check(q, k, v, mask)?;
    let Dims {
        h,
        hkv,
        tq,
        tk,
        dh,
        dv,
    } = d;
    let mut out = vec![0f32; h * tq * dv];
    let probs_len = if with_probs { h * tq * tk } else { 0 };
    let mut scores = vec![f32::NEG_INFINITY; probs_len];
    let mut pattern = vec![0f32; probs_len];
    let blocks = tq.div_ceil(Q_BLOCK);
    let (po, ps, pp) = (
        OutPtr(out.as_mut_ptr()),
        OutPtr(scores.as_mut_ptr()),
        OutPtr(pattern.as_mut_ptr()),
    );
    let group = h / hkv;

    super::spin::for_each(h * blocks, |task| {
        let (head, blk) = (task / blocks, task % blocks);
        let kvh = head / group;
        let i0 = blk * Q_BLOCK;
        let i1 = (i0 + Q_BLOCK).min(tq);
        let nq = i1 - i0;
        // Keys any query of this block may see: [klo, khi).
        let last_pos = mask.q_offset + i1 - 1;
        let khi = if mask.causal {
            (last_pos + 1).min(tk)
        } else {
            tk
        };
        let klo = match mask.window {
            Some(w) => (mask.q_offset + i0 + 1).saturating_sub(w).min(khi),
            None => 0,
        };
        let nk = khi - klo;
        if nk == 0 {
            return; // no visible key: output stays zero, scores -inf, pattern 0
        }
        let qm = MatRef {
            data: &q.data()[(head * tq + i0) * dh..(head * tq + i1) * dh],
            rows: nq,
            cols: dh,
            rs: dh,
            cs: 1,
        };
        let kt = MatRef {
            data: &k.data()[(kvh * tk + klo) * dh..(kvh * tk + khi) * dh],
            rows: dh,
            cols: nk,
            rs: 1,
            cs: dh,
        };
        // The block's scores, in a buffer each thread keeps (the product writes all of
        // it, so it is not cleared).
        let mut s = SCORES.with(Cell::take);
        s.resize(nq * nk, 0.0);
        gemm_serial(
            &[GemmJob {
                bh: None,
                bp: None,
                a: qm,
                b: kt,
                c_offset: 0,
            }],
            nq,
            nk,
            dh,
            &mut s,
        );
        for (r, row) in s.chunks_mut(nk).enumerate() {
            // Causal and window masks leave one visible run [lo, hi) of keys per query;
            // key_keep then removes individual keys inside it.
            let qpos = mask.q_offset + i0 + r;
            let hi = if mask.causal {
                (qpos + 1).clamp(klo, khi)
            } else {
                khi
            } - klo;
            let lo = match mask.window {
                Some(w) => (qpos + 1).saturating_sub(w).clamp(klo, khi) - klo,
                None => 0,
            }
            .min(hi);
            row[..lo].fill(f32::NEG_INFINITY);
            row[hi..].fill(f32::NEG_INFINITY);
            match &mask.key_keep {
                Some(keep) => {
                    for (x, &kept) in row[lo..hi].iter_mut().zip(&keep[klo + lo..klo + hi]) {
                        *x = if kept { *x * scale } else { f32::NEG_INFINITY };
                    }
                }
                None => row[lo..hi].iter_mut().for_each(|x| *x *= scale),
            }
        }
        if with_probs {
            // SAFETY: rows [i0, i1) of this head belong to this task alone.
            unsafe {
                for r in 0..nq {
                    let dst = ps.ptr().add((head * tq + i0 + r) * tk + klo);
                    std::ptr::copy_nonoverlapping(s[r * nk..].as_ptr(), dst, nk);
                }
            }
        }
        for row in s.chunks_mut(nk) {
            softmax_in_place(row);
        }
        if with_probs {
            // SAFETY: as above.
            unsafe {
                for r in 0..nq {
                    let dst = pp.ptr().add((head * tq + i0 + r) * tk + klo);
                    std::ptr::copy_nonoverlapping(s[r * nk..].as_ptr(), dst, nk);
                }
            }
        }
        let pm = MatRef {
            data: &s,
            rows: nq,
            cols: nk,
            rs: nk,
            cs: 1,
        };
        let vm = MatRef {
            data: &v.data()[(kvh * tk + klo) * dv..(kvh * tk + khi) * dv],
            rows: nk,
            cols: dv,
            rs: dv,
            cs: 1,
        };
        // SAFETY: as above; this block's output rows are one contiguous range.
        let o =
            unsafe { std::slice::from_raw_parts_mut(po.ptr().add((head * tq + i0) * dv), nq * dv) };
        gemm_serial(
            &[GemmJob {
                bh: None,
                bp: None,
                a: pm,
                b: vm,
                c_offset: 0,
            }],
            nq,
            dv,
            nk,
            o,
        );
        SCORES.with(|cell| cell.set(s));
    });

    let out = Tensor::new(vec![h, tq, dv], out)?;
    let probs = if with_probs {
        Some((
            Tensor::new(vec![h, tq, tk], scores)?,
            Tensor::new(vec![h, tq, tk], pattern)?,
        ))
    } else {
        None
    };
    Ok((out, probs))
}

/// Row softmax in place; a row whose keys are all masked becomes zeros, and a NaN score
/// makes the row NaN (never silently hidden).
fn softmax_in_place(row: &mut [f32]) {
    // f32::max skips NaN; a NaN still reaches every output through the sum below.
    let mx = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    if mx == f32::NEG_INFINITY {
        let nan = row.iter().any(|x| x.is_nan());
        row.fill(if nan { f32::NAN } else { 0.0 });
        return;
    }
    let inv = (1.0 / exp_shift_sum(row, mx)) as f32;
    row.iter_mut().for_each(|x| *x *= inv);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::{assert_close, Rng};

    /// Straightforward per-(head, query) reference in f64.
    fn naive(
        q: &Tensor,
        k: &Tensor,
        v: &Tensor,
        mask: &AttnMask,
        scale: f32,
    ) -> (Vec<f32>, Vec<f32>) {
        let (&[h, tq, dh], &[hkv, tk, _], &[_, _, dv]) = (q.shape(), k.shape(), v.shape()) else {
            unreachable!()
        };
        let mut out = vec![0f32; h * tq * dv];
        let mut pat = vec![0f32; h * tq * tk];
        for hh in 0..h {
            let kv = hh / (h / hkv);
            for i in 0..tq {
                let sc: Vec<Option<f64>> = (0..tk)
                    .map(|j| {
                        mask.visible(i, j).then(|| {
                            let dot: f64 = (0..dh)
                                .map(|d| {
                                    q.data()[(hh * tq + i) * dh + d] as f64
                                        * k.data()[(kv * tk + j) * dh + d] as f64
                                })
                                .sum();
                            dot * scale as f64
                        })
                    })
                    .collect();
                let mx = sc
                    .iter()
                    .flatten()
                    .copied()
                    .fold(f64::NEG_INFINITY, f64::max);
                if mx == f64::NEG_INFINITY {
                    continue;
                }
                let e: Vec<f64> = sc
                    .iter()
                    .map(|s| s.map_or(0.0, |s| (s - mx).exp()))
                    .collect();
                let z: f64 = e.iter().sum();
                for j in 0..tk {
                    let p = e[j] / z;
                    pat[(hh * tq + i) * tk + j] = p as f32;
                    for d in 0..dv {
                        out[(hh * tq + i) * dv + d] +=
                            (p * v.data()[(kv * tk + j) * dv + d] as f64) as f32;
                    }
                }
            }
        }
        (out, pat)
    }

    fn run_case(h: usize, hkv: usize, tq: usize, tk: usize, dh: usize, dv: usize, mask: AttnMask) {
        let mut rng = Rng::new((h * 31 + tq * 7 + tk) as u64);
        let q = rng.tensor(&[h, tq, dh]);
        let k = rng.tensor(&[hkv, tk, dh]);
        let v = rng.tensor(&[hkv, tk, dv]);
        let scale = 1.0 / (dh as f32).sqrt();
        let (out, probs) = attention(&q, &k, &v, &mask, scale, true).unwrap();
        let (want_out, want_pat) = naive(&q, &k, &v, &mask, scale);
        assert_eq!(out.shape(), &[h, tq, dv]);
        assert_close(out.data(), &want_out, 1e-5);
        let (scores, pattern) = probs.unwrap();
        assert_close(pattern.data(), &want_pat, 1e-5);
        for (idx, (&s, &p)) in scores.data().iter().zip(pattern.data()).enumerate() {
            let (i, j) = ((idx / tk) % tq, idx % tk);
            assert_eq!(
                s == f32::NEG_INFINITY,
                !mask.visible(i, j),
                "score at {idx}"
            );
            if s == f32::NEG_INFINITY {
                assert_eq!(p, 0.0);
            }
        }
        let (plain, none) = attention(&q, &k, &v, &mask, scale, false).unwrap();
        assert!(none.is_none());
        assert_eq!(plain.data(), out.data());
    }

    #[test]
    fn matches_naive_reference() {
        run_case(2, 2, 5, 5, 8, 8, AttnMask::none());
        run_case(4, 2, 7, 7, 16, 12, AttnMask::causal());
        run_case(6, 2, 70, 70, 8, 8, AttnMask::causal()); // GQA, several query blocks
        run_case(
            4,
            1,
            40,
            40,
            16,
            16,
            AttnMask {
                causal: true,
                window: Some(5),
                ..AttnMask::default()
            },
        );
    }

    #[test]
    fn causal_with_offset_and_key_keep() {
        // Decoding 3 new tokens after a 10-token prefix.
        run_case(
            2,
            1,
            3,
            13,
            8,
            4,
            AttnMask {
                causal: true,
                q_offset: 10,
                ..AttnMask::default()
            },
        );
        let mut keep = vec![true; 13];
        keep[0] = false;
        keep[11] = false;
        run_case(
            4,
            2,
            3,
            13,
            8,
            4,
            AttnMask {
                causal: true,
                q_offset: 10,
                key_keep: Some(keep),
                window: None,
            },
        );
        let keep: Vec<bool> = (0..50).map(|j| j % 3 != 1).collect();
        run_case(
            2,
            2,
            50,
            50,
            8,
            8,
            AttnMask {
                key_keep: Some(keep),
                ..AttnMask::default()
            },
        );
    }

    #[test]
    fn fully_masked_rows_are_zero() {
        let mut rng = Rng::new(1);
        let q = rng.tensor(&[1, 3, 4]);
        let k = rng.tensor(&[1, 3, 4]);
        let v = rng.tensor(&[1, 3, 2]);
        // Key 0 removed: query 0 (causal) sees nothing.
        let mask = AttnMask {
            causal: true,
            key_keep: Some(vec![false, true, true]),
            ..AttnMask::default()
        };
        let (out, probs) = attention(&q, &k, &v, &mask, 0.5, true).unwrap();
        assert_eq!(&out.data()[..2], &[0.0, 0.0]);
        assert!(out.data().iter().all(|x| x.is_finite()));
        let (scores, pattern) = probs.unwrap();
        assert_eq!(&pattern.data()[..3], &[0.0; 3]);
        assert!(scores.data()[..3].iter().all(|&s| s == f32::NEG_INFINITY));
        // Every key removed.
        let mask = AttnMask {
            key_keep: Some(vec![false; 3]),
            ..AttnMask::default()
        };
        let (out, _) = attention(&q, &k, &v, &mask, 0.5, false).unwrap();
        assert!(out.data().iter().all(|&x| x == 0.0));
    }

    #[test]
    fn nan_inputs_are_not_hidden() {
        let q = Tensor::new(vec![1, 1, 2], vec![f32::NAN, 0.0]).unwrap();
        let k = Tensor::zeros(vec![1, 2, 2]);
        let v = Tensor::zeros(vec![1, 2, 2]);
        let (out, _) = attention(&q, &k, &v, &AttnMask::none(), 1.0, false).unwrap();
        assert!(out.data().iter().all(|x| x.is_nan()));
    }

    #[test]
    fn hand_computed_uniform_attention() {
        // Equal scores => output is the mean of the visible values.
        let q = Tensor::zeros(vec![1, 2, 2]);
        let k = Tensor::zeros(vec![1, 2, 2]);
        let v = Tensor::new(vec![1, 2, 1], vec![2.0, 4.0]).unwrap();
        let (out, _) = attention(&q, &k, &v, &AttnMask::causal(), 1.0, false).unwrap();
        assert_eq!(out.data(), &[2.0, 3.0]);
    }

    #[test]
    fn attention_errors() {
        let z = |s: &[usize]| Tensor::zeros(s.to_vec());
        let m = AttnMask::none();
        let err = attention(
            &z(&[3, 2, 4]),
            &z(&[2, 2, 4]),
            &z(&[2, 2, 4]),
            &m,
            1.0,
            false,
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("3 query heads") && err.contains("2 kv heads"),
            "{err}"
        );
        let err = attention(
            &z(&[2, 2, 4]),
            &z(&[2, 2, 5]),
            &z(&[2, 2, 4]),
            &m,
            1.0,
            false,
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("dh = 4 vs 5"), "{err}");
        let err = attention(
            &z(&[2, 2, 4]),
            &z(&[2, 3, 4]),
            &z(&[2, 2, 4]),
            &m,
            1.0,
            false,
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("disagree"), "{err}");
        assert!(attention(&z(&[2, 4]), &z(&[2, 2, 4]), &z(&[2, 2, 4]), &m, 1.0, false).is_err());
        let bad = AttnMask {
            key_keep: Some(vec![true]),
            ..AttnMask::default()
        };
        let err = attention(
            &z(&[2, 2, 4]),
            &z(&[2, 2, 4]),
            &z(&[2, 2, 4]),
            &bad,
            1.0,
            false,
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("key_keep has 1") && err.contains("Tk = 2"),
            "{err}"
        );
    }
}
