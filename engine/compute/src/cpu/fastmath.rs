//! Vectorisable `exp` for the softmax family.
//!
//! Softmax over a vocabulary or an attention row spends most of its time in `exp`;
//! libm's `expf` is a scalar call per element. This is the classic Cephes `expf`
//! (range reduction by ln 2 and a degree-6 polynomial, about 1 ulp) written without
//! calls or branches, plus 16-lane AVX-512 and 8-lane AVX2+FMA versions of the hot loop
//! chosen at run time.

const LOG2E: f32 = std::f32::consts::LOG2_E;
/// ln 2 split in two so `n * C1` is exact.
const C1: f32 = 0.693_359_4;
const C2: f32 = -2.121_944_4e-4;
/// exp overflows above this and is below f32's normal range under `MIN_X`.
const MAX_X: f32 = 88.722_83;
const MIN_X: f32 = -87.336_55;
/// Adding then subtracting 1.5 * 2^23 rounds to the nearest integer without a call.
const ROUND: f32 = 12_582_912.0;
/// Cephes' polynomial for `(e^r - 1 - r) / r^2`, highest degree first (its last
/// coefficient, 5.0000001201e-1, rounds to 0.5 in f32). Every version evaluates it by
/// Horner's rule in this order.
const POLY: [f32; 6] = [
    1.987_569_1e-4,
    1.398_199_9e-3,
    8.333_452e-3,
    4.166_579_6e-2,
    1.666_666_5e-1,
    0.5,
];

/// `e^x` to about 1 ulp; exactly 0 below -87.3 (including -inf), +inf above 88.7, NaN
/// for NaN.
#[inline(always)]
pub(crate) fn exp(x: f32) -> f32 {
    // NaN stays NaN through the arithmetic and is passed through at the end.
    let xc = x.clamp(MIN_X, MAX_X);
    let t = xc * LOG2E + ROUND;
    // t's low mantissa bits now hold n = round(xc * log2 e) as an integer; reading it
    // from the bits (instead of a saturating `as` cast) keeps the loop vectorisable.
    let ni = (t.to_bits() as i32).wrapping_sub(ROUND.to_bits() as i32);
    let n = t - ROUND;
    let r = xc - n * C1 - n * C2;
    let mut p = POLY[0];
    for c in &POLY[1..] {
        p = p * r + c;
    }
    let y = p * r * r + r + 1.0;
    // 2^n through the exponent bits, in two halves because n spans [-126, 128] after
    // clamping and 2^128 itself is not representable.
    let (n1, n2) = (ni >> 1, ni - (ni >> 1));
    let pow2 = |e: i32| f32::from_bits(((e + 127) as u32) << 23);
    let v = y * pow2(n1) * pow2(n2);
    let v = if x > MAX_X { f32::INFINITY } else { v };
    let v = if x < MIN_X { 0.0 } else { v };
    if x.is_nan() {
        x
    } else {
        v
    }
}

/// Replaces each `x` by `exp(x - shift)` and returns the sum of the results in f64.
pub(crate) fn exp_shift_sum(xs: &mut [f32], shift: f32) -> f64 {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx512f") {
        // SAFETY: the feature was just detected.
        return unsafe { exp_shift_sum_avx512(xs, shift) };
    }
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
        // SAFETY: the features were just detected.
        return unsafe { exp_shift_sum_avx2(xs, shift) };
    }
    exp_shift_sum_generic(xs, shift)
}

/// The same computation as [`exp`], eight lanes at a time (bit-identical apart from
/// FMA contraction in the polynomial).
#[cfg(target_arch = "x86_64")]
#[inline]
#[target_feature(enable = "avx2,fma")]
fn exp8(x: std::arch::x86_64::__m256) -> std::arch::x86_64::__m256 {
    use std::arch::x86_64::*;
    let xc = _mm256_min_ps(
        _mm256_max_ps(x, _mm256_set1_ps(MIN_X)),
        _mm256_set1_ps(MAX_X),
    );
    let t = _mm256_fmadd_ps(xc, _mm256_set1_ps(LOG2E), _mm256_set1_ps(ROUND));
    let ni = _mm256_sub_epi32(
        _mm256_castps_si256(t),
        _mm256_set1_epi32(ROUND.to_bits() as i32),
    );
    let n = _mm256_sub_ps(t, _mm256_set1_ps(ROUND));
    let r = _mm256_fnmadd_ps(n, _mm256_set1_ps(C1), xc);
    let r = _mm256_fnmadd_ps(n, _mm256_set1_ps(C2), r);
    let mut p = _mm256_set1_ps(POLY[0]);
    for c in POLY[1..].iter().copied() {
        p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(c));
    }
    let y = _mm256_add_ps(
        _mm256_fmadd_ps(p, _mm256_mul_ps(r, r), r),
        _mm256_set1_ps(1.0),
    );
    let n1 = _mm256_srai_epi32::<1>(ni);
    let n2 = _mm256_sub_epi32(ni, n1);
    let bias = _mm256_set1_epi32(127);
    let p1 = _mm256_castsi256_ps(_mm256_slli_epi32::<23>(_mm256_add_epi32(n1, bias)));
    let p2 = _mm256_castsi256_ps(_mm256_slli_epi32::<23>(_mm256_add_epi32(n2, bias)));
    let v = _mm256_mul_ps(_mm256_mul_ps(y, p1), p2);
    // Overflow to +inf, underflow (and -inf) to 0, NaN passes through.
    let over = _mm256_cmp_ps::<_CMP_GT_OQ>(x, _mm256_set1_ps(MAX_X));
    let v = _mm256_blendv_ps(v, _mm256_set1_ps(f32::INFINITY), over);
    let under = _mm256_cmp_ps::<_CMP_LT_OQ>(x, _mm256_set1_ps(MIN_X));
    let v = _mm256_blendv_ps(v, _mm256_setzero_ps(), under);
    let nan = _mm256_cmp_ps::<_CMP_UNORD_Q>(x, x);
    _mm256_blendv_ps(v, x, nan)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn exp_shift_sum_avx2(xs: &mut [f32], shift: f32) -> f64 {
    use std::arch::x86_64::*;
    let sh = _mm256_set1_ps(shift);
    // Two f64 accumulators of four lanes each.
    let (mut lo, mut hi) = (_mm256_setzero_pd(), _mm256_setzero_pd());
    let mut chunks = xs.chunks_exact_mut(8);
    for c in &mut chunks {
        // SAFETY: `c` holds exactly 8 floats.
        unsafe {
            let e = exp8(_mm256_sub_ps(_mm256_loadu_ps(c.as_ptr()), sh));
            _mm256_storeu_ps(c.as_mut_ptr(), e);
            lo = _mm256_add_pd(lo, _mm256_cvtps_pd(_mm256_castps256_ps128(e)));
            hi = _mm256_add_pd(hi, _mm256_cvtps_pd(_mm256_extractf128_ps::<1>(e)));
        }
    }
    let mut lanes = [0f64; 4];
    // SAFETY: `lanes` holds 4 doubles.
    unsafe { _mm256_storeu_pd(lanes.as_mut_ptr(), _mm256_add_pd(lo, hi)) };
    let mut total: f64 = lanes.iter().sum();
    for x in chunks.into_remainder() {
        *x = exp(*x - shift);
        total += *x as f64;
    }
    total
}

/// [`exp8`] on sixteen lanes: the same operations, so the same bits lane by lane.
#[cfg(target_arch = "x86_64")]
#[inline]
#[target_feature(enable = "avx512f")]
fn exp16(x: std::arch::x86_64::__m512) -> std::arch::x86_64::__m512 {
    use std::arch::x86_64::*;
    let xc = _mm512_min_ps(
        _mm512_max_ps(x, _mm512_set1_ps(MIN_X)),
        _mm512_set1_ps(MAX_X),
    );
    let t = _mm512_fmadd_ps(xc, _mm512_set1_ps(LOG2E), _mm512_set1_ps(ROUND));
    let ni = _mm512_sub_epi32(
        _mm512_castps_si512(t),
        _mm512_set1_epi32(ROUND.to_bits() as i32),
    );
    let n = _mm512_sub_ps(t, _mm512_set1_ps(ROUND));
    let r = _mm512_fnmadd_ps(n, _mm512_set1_ps(C1), xc);
    let r = _mm512_fnmadd_ps(n, _mm512_set1_ps(C2), r);
    let mut p = _mm512_set1_ps(POLY[0]);
    for c in POLY[1..].iter().copied() {
        p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(c));
    }
    let y = _mm512_add_ps(
        _mm512_fmadd_ps(p, _mm512_mul_ps(r, r), r),
        _mm512_set1_ps(1.0),
    );
    let n1 = _mm512_srai_epi32::<1>(ni);
    let n2 = _mm512_sub_epi32(ni, n1);
    let bias = _mm512_set1_epi32(127);
    let p1 = _mm512_castsi512_ps(_mm512_slli_epi32::<23>(_mm512_add_epi32(n1, bias)));
    let p2 = _mm512_castsi512_ps(_mm512_slli_epi32::<23>(_mm512_add_epi32(n2, bias)));
    let v = _mm512_mul_ps(_mm512_mul_ps(y, p1), p2);
    // Overflow to +inf, underflow (and -inf) to 0, NaN passes through.
    let over = _mm512_cmp_ps_mask::<_CMP_GT_OQ>(x, _mm512_set1_ps(MAX_X));
    let v = _mm512_mask_blend_ps(over, v, _mm512_set1_ps(f32::INFINITY));
    let under = _mm512_cmp_ps_mask::<_CMP_LT_OQ>(x, _mm512_set1_ps(MIN_X));
    let v = _mm512_mask_blend_ps(under, v, _mm512_setzero_ps());
    let nan = _mm512_cmp_ps_mask::<_CMP_UNORD_Q>(x, x);
    _mm512_mask_blend_ps(nan, v, x)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
fn exp_shift_sum_avx512(xs: &mut [f32], shift: f32) -> f64 {
    use std::arch::x86_64::*;
    let sh = _mm512_set1_ps(shift);
    // Two f64 accumulators of eight lanes each.
    let (mut lo, mut hi) = (_mm512_setzero_pd(), _mm512_setzero_pd());
    let mut chunks = xs.chunks_exact_mut(16);
    for c in &mut chunks {
        // SAFETY: `c` holds exactly 16 floats.
        unsafe {
            let e = exp16(_mm512_sub_ps(_mm512_loadu_ps(c.as_ptr()), sh));
            _mm512_storeu_ps(c.as_mut_ptr(), e);
            lo = _mm512_add_pd(lo, _mm512_cvtps_pd(_mm512_castps512_ps256(e)));
            hi = _mm512_add_pd(
                hi,
                _mm512_cvtps_pd(_mm256_castpd_ps(_mm512_extractf64x4_pd::<1>(
                    _mm512_castps_pd(e),
                ))),
            );
        }
    }
    let mut total = _mm512_reduce_add_pd(_mm512_add_pd(lo, hi));
    for x in chunks.into_remainder() {
        *x = exp(*x - shift);
        total += *x as f64;
    }
    total
}

#[inline(always)]
fn exp_shift_sum_generic(xs: &mut [f32], shift: f32) -> f64 {
    // Eight explicit f64 lanes: exact enough, and independent so they vectorise.
    let mut lanes = [0f64; 8];
    let mut chunks = xs.chunks_exact_mut(8);
    for c in &mut chunks {
        for (l, x) in lanes.iter_mut().zip(c.iter_mut()) {
            *x = exp(*x - shift);
            *l += *x as f64;
        }
    }
    let mut tail = 0f64;
    for x in chunks.into_remainder() {
        *x = exp(*x - shift);
        tail += *x as f64;
    }
    lanes.iter().sum::<f64>() + tail
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exp_is_accurate_to_about_an_ulp() {
        let mut worst = 0f64;
        let mut x = -87.0f32;
        while x < 88.5 {
            let want = (x as f64).exp();
            let got = exp(x) as f64;
            worst = worst.max(((got - want) / want).abs());
            x += 0.0137;
        }
        assert!(worst < 2.5e-7, "worst relative error {worst}");
        assert_eq!(exp(0.0), 1.0);
        assert_eq!(exp(f32::NEG_INFINITY), 0.0);
        assert_eq!(exp(-100.0), 0.0);
        assert_eq!(exp(100.0), f32::INFINITY);
        assert_eq!(exp(f32::INFINITY), f32::INFINITY);
        assert!(exp(f32::NAN).is_nan());
    }

    /// Both vector versions give the same bits element by element (and both are checked
    /// against f64 here, whichever the dispatcher picks on this machine).
    #[test]
    #[cfg(target_arch = "x86_64")]
    fn vector_versions_agree() {
        use std::arch::is_x86_feature_detected as has;
        let mut xs: Vec<f32> = (0..1003).map(|i| (i as f32 - 500.0) * 0.19).collect();
        xs[7] = f32::NEG_INFINITY;
        xs[8] = f32::NAN;
        let want: Vec<f64> = xs.iter().map(|&x| ((x - 2.0) as f64).exp()).collect();
        let mut runs: Vec<(&str, Vec<f32>, f64)> = Vec::new();
        if has!("avx2") && has!("fma") {
            let mut v = xs.clone();
            // SAFETY: the features were just detected.
            let sum = unsafe { exp_shift_sum_avx2(&mut v, 2.0) };
            runs.push(("avx2", v, sum));
        }
        if has!("avx512f") {
            let mut v = xs.clone();
            // SAFETY: the feature was just detected.
            let sum = unsafe { exp_shift_sum_avx512(&mut v, 2.0) };
            runs.push(("avx512", v, sum));
        }
        for (name, got, _) in &runs {
            for (i, (&g, &w)) in got.iter().zip(&want).enumerate() {
                let ok = if w.is_nan() {
                    g.is_nan()
                } else if w > f32::MAX as f64 {
                    g == f32::INFINITY
                } else if w < 1.2e-38 {
                    g == 0.0 || (g as f64 - w).abs() < 1e-38
                } else {
                    ((g as f64 - w) / w).abs() < 2.5e-7
                };
                assert!(ok, "{name} element {i}: exp({}) = {g}, want {w}", xs[i]);
            }
        }
        if let [(_, a, _), (_, b, _)] = &runs[..] {
            let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
            assert_eq!(bits(a), bits(b), "avx2 and avx512 elements differ");
        }
    }

    #[test]
    fn shifted_sum() {
        // Long enough for the vector path, with a tail, covering both exp extremes.
        let mut xs: Vec<f32> = (0..1003).map(|i| (i as f32 - 500.0) * 0.19).collect();
        xs[7] = f32::NEG_INFINITY;
        let want: Vec<f64> = xs.iter().map(|&x| ((x - 2.0) as f64).exp()).collect();
        let got = exp_shift_sum(&mut xs, 2.0);
        let total: f64 = want.iter().filter(|w| w.is_finite()).sum();
        assert!(got.is_infinite() || (got - total).abs() < 1e-6 * total);
        for (i, (&g, &w)) in xs.iter().zip(&want).enumerate() {
            let ok = if w > f32::MAX as f64 {
                g == f32::INFINITY
            } else if w < 1.2e-38 {
                g == 0.0 || (g as f64 - w).abs() < 1e-38
            } else {
                ((g as f64 - w) / w).abs() < 2.5e-7
            };
            assert!(ok, "element {i}: exp({}) = {g}, want {w}", xs[i]);
        }

        let mut xs: Vec<f32> = (0..37).map(|i| i as f32 * 0.1).collect();
        let want: f64 = xs.iter().map(|&x| ((x - 3.0) as f64).exp()).sum();
        let got = exp_shift_sum(&mut xs, 3.0);
        assert!((got - want).abs() < 1e-6 * want, "{got} vs {want}");
        assert!((xs[30] - 1.0).abs() < 1e-7);
    }
}
