//! Vectorisable `exp` for the softmax family.
//!
//! Softmax over a vocabulary or an attention row spends most of its time in `exp`;
//! libm's `expf` is a scalar call per element. This is the classic Cephes `expf`
//! (range reduction by ln 2 and a degree-6 polynomial, about 1 ulp) written without
//! calls or branches so the compiler vectorises the loops, plus an AVX2+FMA build of
//! the hot loop chosen at run time.

const LOG2E: f32 = std::f32::consts::LOG2_E;
/// ln 2 split in two so `n * C1` is exact.
const C1: f32 = 0.693_359_4;
const C2: f32 = -2.121_944_4e-4;
/// exp overflows above this and is below f32's normal range under `MIN_X`.
const MAX_X: f32 = 88.722_83;
const MIN_X: f32 = -87.336_55;
/// Adding then subtracting 1.5 * 2^23 rounds to the nearest integer without a call.
const ROUND: f32 = 12_582_912.0;

/// `e^x` to about 1 ulp; exactly 0 below -87.3 (including -inf), +inf above 88.7, NaN
/// for NaN.
#[inline(always)]
pub(crate) fn exp(x: f32) -> f32 {
    let xc = x.clamp(MIN_X, MAX_X);
    let n = (xc * LOG2E + ROUND) - ROUND;
    let r = xc - n * C1 - n * C2;
    let mut p = 1.987_569_1e-4;
    p = p * r + 1.398_199_9e-3;
    p = p * r + 8.333_452e-3;
    p = p * r + 4.166_579_6e-2;
    p = p * r + 1.666_666_5e-1;
    p = p * r + 5.000_000_1e-1;
    let y = p * r * r + r + 1.0;
    // 2^n through the exponent bits, in two halves because n spans [-126, 128] after
    // clamping and 2^128 itself is not representable.
    let n = n as i32;
    let (n1, n2) = (n >> 1, n - (n >> 1));
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
    if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
        // SAFETY: the features were just detected.
        return unsafe { exp_shift_sum_avx2(xs, shift) };
    }
    exp_shift_sum_generic(xs, shift)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn exp_shift_sum_avx2(xs: &mut [f32], shift: f32) -> f64 {
    exp_shift_sum_generic(xs, shift)
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

    #[test]
    fn shifted_sum() {
        let mut xs: Vec<f32> = (0..37).map(|i| i as f32 * 0.1).collect();
        let want: f64 = xs.iter().map(|&x| ((x - 3.0) as f64).exp()).sum();
        let got = exp_shift_sum(&mut xs, 3.0);
        assert!((got - want).abs() < 1e-6 * want, "{got} vs {want}");
        assert!((xs[30] - 1.0).abs() < 1e-7);
    }
}
