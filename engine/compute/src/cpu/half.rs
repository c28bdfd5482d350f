//! Reduced-precision storage of weight matrices on the CPU (opt-in, off by default
//! because it changes the numbers).
//!
//! Single-token decoding reads every weight once per token and does two flops per
//! element read, so it runs at memory bandwidth: storing weights as 16-bit values halves
//! the bytes and nearly doubles the speed. Model weights ([`Tensor::is_weight`], 2-D or
//! more) used as matmul's B operand (the linear layer `x @ W^T`) or as an embedding table
//! get a half copy the first time they are used, kept with the tensor
//! ([`Tensor::derived`]); kernels widen it to f32 as they load it, so all arithmetic
//! stays f32 and only the weights are rounded. The f32 copy stays untouched.
//!
//! - `bf16`: the top half of the f32 bit pattern, rounded to nearest even (8 bits of
//!   mantissa, f32's range). Widening is a shift.
//! - `f16`: IEEE half (11 bits of mantissa, largest finite 65504), widened with
//!   `vcvtph2ps` (AVX-512F / F16C). A weight matrix with a value outside the half range
//!   stays f32 rather than turning into infinities.

use std::sync::{Arc, OnceLock};

use super::gemm::PackedB;
use crate::Tensor;

/// How the CPU backend stores model weight matrices.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum CpuWeights {
    /// As loaded (the default; bit-for-bit the reference numbers).
    #[default]
    F32,
    /// IEEE binary16.
    F16,
    /// bfloat16.
    Bf16,
}

impl CpuWeights {
    /// `"f32"`, `"f16"` or `"bf16"`.
    pub fn name(self) -> &'static str {
        match self {
            CpuWeights::F32 => "f32",
            CpuWeights::F16 => "f16",
            CpuWeights::Bf16 => "bf16",
        }
    }
}

/// A 16-bit format.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Half {
    F16,
    Bf16,
}

/// A weight tensor's elements in a 16-bit format, same layout as the f32 data (`None`:
/// the tensor cannot be stored in that format and stays f32).
pub(crate) struct HalfWeights {
    pub kind: Half,
    /// The values start at `data[start]`, on a 64-byte boundary.
    data: Option<Vec<u16>>,
    start: usize,
    /// The widened values packed for the GEMM (`gemm::packed_weight`), made on the
    /// first product with more rows than the vector path takes.
    packed: OnceLock<Arc<PackedB>>,
}

impl HalfWeights {
    /// The 16-bit values (only handed out by [`half_weights`] when they exist).
    pub fn values(&self) -> &[u16] {
        self.data.as_deref().map_or(&[], |d| &d[self.start..])
    }

    /// The packed GEMM operand, made by `pack` on the first call and kept.
    pub fn packed(&self, pack: impl FnOnce() -> PackedB) -> Arc<PackedB> {
        Arc::clone(self.packed.get_or_init(|| Arc::new(pack())))
    }
}

/// `len` halves starting on a cache line: the GEMV kernels load whole 64-byte lines, and
/// a load across two lines costs two (large buffers from the allocator start 16 bytes
/// past a page boundary). Returns the buffer and where the values start.
fn line_aligned(values: impl ExactSizeIterator<Item = u16>) -> (Vec<u16>, usize) {
    const LINE: usize = 64 / std::mem::size_of::<u16>();
    let mut data: Vec<u16> = Vec::with_capacity(values.len() + LINE);
    let start = data.as_ptr().align_offset(64).min(LINE);
    data.resize(start, 0);
    data.extend(values);
    (data, start)
}

/// Rounds to the nearest 16-bit value (ties to even); NaN stays NaN.
pub(crate) fn to_half(kind: Half, v: f32) -> u16 {
    match kind {
        Half::F16 => half::f16::from_f32(v).to_bits(),
        Half::Bf16 => half::bf16::from_f32(v).to_bits(),
    }
}

/// The exact f32 value of a 16-bit pattern.
#[inline]
pub(crate) fn from_half(kind: Half, h: u16) -> f32 {
    match kind {
        Half::F16 => half::f16::from_bits(h).to_f32(),
        Half::Bf16 => f32::from_bits((h as u32) << 16),
    }
}

/// `dst[i] = from_half(src[i])`, vectorised where the CPU allows.
pub(crate) fn widen(kind: Half, src: &[u16], dst: &mut [f32]) {
    assert_eq!(src.len(), dst.len());
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx512f") {
        // SAFETY: AVX-512F was detected; lengths are equal (checked above).
        unsafe { widen_avx512(kind, src, dst) };
        return;
    }
    for (d, &s) in dst.iter_mut().zip(src) {
        *d = from_half(kind, s);
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn widen_avx512(kind: Half, src: &[u16], dst: &mut [f32]) {
    use std::arch::x86_64::*;
    let n = src.len();
    let mut i = 0;
    while i + 16 <= n {
        let h = _mm256_loadu_si256(src.as_ptr().add(i).cast());
        let v = match kind {
            Half::F16 => _mm512_cvtph_ps(h),
            Half::Bf16 => _mm512_castsi512_ps(_mm512_slli_epi32::<16>(_mm512_cvtepu16_epi32(h))),
        };
        _mm512_storeu_ps(dst.as_mut_ptr().add(i), v);
        i += 16;
    }
    for j in i..n {
        dst[j] = from_half(kind, src[j]);
    }
}

/// The format `w` is stored in under `mode`, or `None` for f32.
fn format(mode: CpuWeights) -> Option<Half> {
    match mode {
        CpuWeights::F32 => None,
        CpuWeights::F16 => Some(Half::F16),
        CpuWeights::Bf16 => Some(Half::Bf16),
    }
}

/// The half copy of weight `w` under `mode` (made on first use and kept with the
/// tensor), or `None` when `w` stays f32: f32 mode, not a weight matrix, or (f16) a value
/// outside the half range.
pub(crate) fn half_weights(mode: CpuWeights, w: &Tensor) -> Option<Arc<HalfWeights>> {
    let kind = format(mode)?;
    if !w.is_weight() || w.ndim() < 2 {
        return None;
    }
    let copy = w.derived(|| {
        let data = w.data();
        let fits = kind == Half::Bf16 || data.iter().all(|v| v.abs() <= 65504.0 || !v.is_finite());
        let (data, start) = match fits {
            true => {
                let (d, s) = line_aligned(data.iter().map(|&v| to_half(kind, v)));
                (Some(d), s)
            }
            false => (None, 0),
        };
        HalfWeights {
            kind,
            data,
            start,
            packed: OnceLock::new(),
        }
    })?;
    // A copy made in another format (only when two backends share a tensor) is not used.
    (copy.kind == kind && copy.data.is_some()).then_some(copy)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Backend, CpuBackend};

    #[test]
    fn rounding_and_widening_round_trip_and_keep_nan() {
        for kind in [Half::F16, Half::Bf16] {
            let vals: Vec<f32> = (0..37).map(|i| (i as f32 - 18.0) * 0.37).collect();
            let h: Vec<u16> = vals.iter().map(|&v| to_half(kind, v)).collect();
            let mut wide = vec![0f32; h.len()];
            widen(kind, &h, &mut wide);
            for (i, (&w, &v)) in wide.iter().zip(&vals).enumerate() {
                assert_eq!(w, from_half(kind, h[i]), "{kind:?} widen vs scalar at {i}");
                let rel = if kind == Half::F16 {
                    1.0 / 2048.0
                } else {
                    1.0 / 256.0
                };
                assert!((w - v).abs() <= rel * v.abs(), "{kind:?} {v} -> {w}");
                assert_eq!(
                    to_half(kind, w),
                    h[i],
                    "an exact half value rounds to itself"
                );
            }
            assert!(from_half(kind, to_half(kind, f32::NAN)).is_nan());
        }
        assert_eq!(
            from_half(Half::Bf16, to_half(Half::Bf16, 1.0 + 1.0 / 512.0)),
            1.0
        );
    }

    #[test]
    fn the_backend_rounds_weight_matrices_only_and_names_the_mode() {
        let be = CpuBackend::new(Some(2)).with_weights(CpuWeights::Bf16);
        assert_eq!(be.name(), "cpu, bf16 weights");
        assert_eq!(CpuBackend::new(Some(1)).name(), "cpu");
        // 1 + 2^-9 is not a bf16 value: it rounds to 1 when stored as a weight.
        let v = 1.0 + 1.0 / 512.0;
        let x = Tensor::new(vec![1, 2], vec![1.0, 0.0]).unwrap();
        let w = Tensor::new(vec![3, 2], vec![v; 6]).unwrap();
        let plain = be.matmul(&x, &w, false, true).unwrap();
        assert_eq!(
            plain.data(),
            &[v; 3],
            "a tensor that is not a weight stays f32"
        );
        let w = w.into_weight();
        for rows in [1, 9] {
            let x = Tensor::new(vec![rows, 2], [1.0, 0.0].repeat(rows)).unwrap();
            let y = be.matmul(&x, &w, false, true).unwrap();
            assert_eq!(y.data(), &vec![1.0; 3 * rows][..], "{rows} rows");
        }
        assert_eq!(be.embedding(&w, &[2]).unwrap().data(), &[1.0, 1.0]);
        // As matmul's A operand a weight is read as f32, like on the GPU backend.
        let col = Tensor::new(vec![2, 1], vec![1.0, 0.0]).unwrap();
        let a = be.matmul(&w, &col, false, false).unwrap();
        assert_eq!(a.data(), &[v; 3]);
        // f16 keeps a matrix beyond its range in f32.
        let big = Tensor::new(vec![1, 2], vec![1e6, v]).unwrap().into_weight();
        let be16 = CpuBackend::new(Some(1)).with_weights(CpuWeights::F16);
        assert!(half_weights(CpuWeights::F16, &big).is_none());
        let y = be16.matmul(&x, &big, false, true).unwrap();
        assert_eq!(y.data(), &[1e6]);
    }
}
