//! Token embedding lookup and rotary position embedding (RoPE).

use std::cell::RefCell;
use std::sync::Arc;

use anyhow::{bail, Result};

use super::elementwise::PAR_CHUNK;
use super::half::{widen, HalfWeights};
use crate::shape::{rope_dims, rope_tables};
use crate::Tensor;

/// `half`: the table's half-precision copy, whose rows are looked up instead.
pub(crate) fn embedding(table: &Tensor, ids: &[u32], half: Option<&HalfWeights>) -> Result<Tensor> {
    let &[vocab, d] = table.shape() else {
        bail!(
            "embedding: table must be [V, d], got shape {:?}",
            table.shape()
        );
    };
    if let Some(&bad) = ids.iter().find(|&&id| id as usize >= vocab) {
        bail!(
            "embedding: id {bad} is out of range for a table of {vocab} rows (table {:?}; \
             expected ids < {vocab})",
            table.shape()
        );
    }
    let mut out = vec![0f32; ids.len() * d];
    let src = table.data();
    let row = |(o, &id): (&mut [f32], &u32)| {
        let start = id as usize * d;
        match half {
            None => o.copy_from_slice(&src[start..start + d]),
            Some(h) => widen(h.kind, &h.values()[start..start + d], o),
        }
    };
    if d > 0 && out.len() <= PAR_CHUNK {
        out.chunks_mut(d).zip(ids).for_each(row);
    } else if d > 0 {
        super::spin::rows_mut(&mut out, d, |first, o| {
            o.chunks_mut(d).zip(&ids[first..]).for_each(row)
        });
    }
    Tensor::new(vec![ids.len(), d], out)
}

thread_local! {
    /// The last RoPE tables this thread made and their inputs (positions, the bits of
    /// `inv_freq`): every layer's queries and keys in a forward share one set.
    static TABLES: RefCell<Option<RopeTables>> = const { RefCell::new(None) };
}

type RopeTables = (Vec<usize>, Vec<u32>, Arc<(Vec<f32>, Vec<f32>)>);

/// [`rope_tables`] for these inputs, reused while they stay the same (sin and cos in f64
/// for every position had been about 1 % of a forward).
fn cached_tables(positions: &[usize], inv_freq: &[f32]) -> Arc<(Vec<f32>, Vec<f32>)> {
    let bits: Vec<u32> = inv_freq.iter().map(|f| f.to_bits()).collect();
    TABLES.with(|cell| {
        let mut last = cell.borrow_mut();
        if let Some((p, f, t)) = &*last {
            if p.as_slice() == positions && *f == bits {
                return Arc::clone(t);
            }
        }
        let t = Arc::new(rope_tables(positions, inv_freq));
        *last = Some((positions.to_vec(), bits, Arc::clone(&t)));
        t
    })
}

/// Rotary embedding on `[..., T, dh]`.
///
/// Angles follow torch/HF exactly in how they are rounded: `theta = (pos as f32) *
/// inv_freq[i]` is an f32 product (HF computes `inv_freq @ position_ids` in float32).
/// cos/sin of that f32 angle are evaluated in f64 and rounded once, i.e. the correctly
/// rounded float32 value, which torch's float32 cos/sin approximate to within an ulp.
/// The rotation itself is `x1*cos - x2*sin`, `x2*cos + x1*sin` in f32 without fused
/// multiply-adds, matching torch's `q*cos + rotate_half(q)*sin`.
pub(crate) fn rope(
    x: &Tensor,
    positions: &[usize],
    inv_freq: &[f32],
    interleaved: bool,
) -> Result<Tensor> {
    let s = x.shape();
    let (t, dh, half) = rope_dims(s, positions, inv_freq)?;
    // cos/sin tables [T, half].
    let tables = cached_tables(positions, inv_freq);
    let (cos, sin) = (&tables.0, &tables.1);
    let mut out = x.to_vec();
    if dh == 0 || half == 0 || out.is_empty() {
        return Tensor::new(s.to_vec(), out);
    }
    let rotate = |row_index: usize, row: &mut [f32]| {
        let ti = row_index % t;
        let (c, sn) = (
            &cos[ti * half..(ti + 1) * half],
            &sin[ti * half..(ti + 1) * half],
        );
        for i in 0..half {
            let (a, b) = if interleaved {
                (2 * i, 2 * i + 1)
            } else {
                (i, i + half)
            };
            let (x1, x2) = (row[a], row[b]);
            row[a] = x1 * c[i] - x2 * sn[i];
            row[b] = x2 * c[i] + x1 * sn[i];
        }
    };
    if out.len() <= PAR_CHUNK {
        out.chunks_mut(dh)
            .enumerate()
            .for_each(|(r, row)| rotate(r, row));
    } else {
        super::spin::rows_mut(&mut out, dh, |first, o| {
            for (i, row) in o.chunks_mut(dh).enumerate() {
                rotate(first + i, row);
            }
        });
    }
    Tensor::new(s.to_vec(), out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::{assert_close, Rng};

    /// The cached cos/sin tables follow their inputs: each call agrees with a thread that
    /// has no cache yet, whatever came before it.
    #[test]
    fn rope_tables_follow_positions_and_frequencies() {
        let x = Tensor::new(
            vec![2, 3, 4],
            (0..24).map(|i| i as f32 * 0.3 - 2.0).collect(),
        )
        .unwrap();
        let calls: [(Vec<usize>, Vec<f32>); 4] = [
            (vec![0, 1, 2], vec![1.0, 0.1]),
            (vec![5, 6, 7], vec![1.0, 0.1]),
            (vec![5, 6, 7], vec![1.0, 0.01]),
            (vec![0, 1, 2], vec![1.0, 0.1]),
        ];
        for (pos, freq) in &calls {
            let got = rope(&x, pos, freq, false).unwrap();
            let (x2, pos2, freq2) = (x.clone(), pos.clone(), freq.clone());
            let fresh = std::thread::spawn(move || rope(&x2, &pos2, &freq2, false).unwrap())
                .join()
                .unwrap();
            assert_eq!(
                got.data(),
                fresh.data(),
                "positions {pos:?}, inv_freq {freq:?}"
            );
        }
    }

    #[test]
    fn embedding_lookup_and_errors() {
        let table = Tensor::new(vec![3, 2], vec![0., 1., 10., 11., 20., 21.]).unwrap();
        let e = embedding(&table, &[2, 0, 2], None).unwrap();
        assert_eq!(e.shape(), &[3, 2]);
        assert_eq!(e.data(), &[20., 21., 0., 1., 20., 21.]);
        assert_eq!(embedding(&table, &[], None).unwrap().shape(), &[0, 2]);
        let err = embedding(&table, &[1, 3], None).unwrap_err().to_string();
        assert!(err.contains("id 3") && err.contains("3 rows"), "{err}");
        assert!(embedding(&Tensor::zeros(vec![3]), &[0], None).is_err());
    }

    #[test]
    fn rope_hand_computed_2d() {
        // One pair rotated by pos * freq = 2 * 0.5 = 1 radian.
        let x = Tensor::new(vec![1, 1, 2], vec![1.0, 2.0]).unwrap();
        let (c, s) = (1f32.cos(), 1f32.sin());
        let want = [1.0 * c - 2.0 * s, 2.0 * c + 1.0 * s];
        for interleaved in [false, true] {
            let out = rope(&x, &[2], &[0.5], interleaved).unwrap();
            assert_close(out.data(), &want, 1e-6);
        }
    }

    #[test]
    fn rope_layouts_pair_the_right_dims() {
        // dh = 4, half = 2, position 1, freqs (pi/2, 0): only pair 0 turns by 90 degrees.
        let x = Tensor::new(vec![1, 1, 4], vec![1., 2., 3., 4.]).unwrap();
        let f = [std::f32::consts::FRAC_PI_2, 0.0];
        // Half-split pairs (0, 2) and (1, 3): (1, 3) -> (-3, 1).
        assert_close(
            rope(&x, &[1], &f, false).unwrap().data(),
            &[-3., 2., 1., 4.],
            1e-6,
        );
        // Interleaved pairs (0, 1) and (2, 3): (1, 2) -> (-2, 1).
        assert_close(
            rope(&x, &[1], &f, true).unwrap().data(),
            &[-2., 1., 3., 4.],
            1e-6,
        );
    }

    #[test]
    fn rope_identity_at_zero_norm_preserving_and_partial() {
        let mut rng = Rng::new(9);
        let x = rng.tensor(&[3, 5, 10]);
        let inv: Vec<f32> = (0..4)
            .map(|i| 10000f32.powf(-(2 * i) as f32 / 8.0))
            .collect();
        let same = rope(&x, &[0; 5], &inv, false).unwrap();
        assert_eq!(same.data(), x.data());
        for interleaved in [false, true] {
            let out = rope(&x, &[0, 1, 7, 100, 4096], &inv, interleaved).unwrap();
            for (a, b) in x.data().chunks(10).zip(out.data().chunks(10)) {
                let na: f32 = a[..8].iter().map(|v| v * v).sum();
                let nb: f32 = b[..8].iter().map(|v| v * v).sum();
                assert!((na - nb).abs() < 1e-5 * (1.0 + na), "{na} vs {nb}");
                // Dims past the rotary width pass through untouched.
                assert_eq!(&a[8..], &b[8..]);
            }
        }
    }

    #[test]
    fn rope_errors() {
        let x = Tensor::zeros(vec![2, 3, 4]);
        let err = rope(&x, &[0, 1], &[1.0], false).unwrap_err().to_string();
        assert!(
            err.contains("2 positions") && err.contains("T = 3"),
            "{err}"
        );
        let err = rope(&x, &[0, 1, 2], &[1.0; 3], false)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("rotary width") && err.contains("[2, 3, 4]"),
            "{err}"
        );
        assert!(rope(&Tensor::zeros(vec![4]), &[0], &[1.0], false).is_err());
    }
}
