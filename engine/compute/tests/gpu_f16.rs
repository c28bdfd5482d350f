//! Half-precision weight storage on the GPU backend (`with_f16_weights`): matmul and
//! embedding against the CPU on the same weights rounded to half (to 1e-4, float
//! summation order only), and against full f32 within the bound the rounding implies;
//! device bytes halve; non-weights, the default backend and out-of-range weights stay
//! f32; other ops reading a half copy get it widened.
//!
//! With no adapter each test prints why and passes (under CI it fails).
#![cfg(feature = "gpu")]

mod common;

use tokit_compute::{Backend, BinaryOp, CpuBackend, GpuBackend, Tensor};

/// Unit roundoff of half precision (11 significant bits): a normal half rounds with
/// relative error at most 2^-11.
const HALF_EPS: f32 = 1.0 / 2048.0;
/// Largest absolute rounding error of a subnormal half (half its spacing, 2^-24).
const HALF_SUB: f32 = 1.0 / (1u32 << 25) as f32;

/// A fresh device per test, so its counters see only that test.
fn gpu(f16: bool) -> Option<GpuBackend> {
    match GpuBackend::new(true, Some(1)) {
        Ok(g) => Some(g.with_f16_weights(f16)),
        Err(e) => {
            common::no_adapter("gpu_f16", format!("{e:#}"));
            None
        }
    }
}

fn cpu() -> CpuBackend {
    CpuBackend::new(Some(1))
}

/// Deterministic values in [-scale, scale) (same generator as `gpu_ops`).
fn rand(shape: &[usize], seed: u64, scale: f32) -> Tensor {
    let n = shape.iter().product();
    let mut s = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    let data = (0..n)
        .map(|_| {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((s >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0) * scale
        })
        .collect();
    Tensor::new(shape.to_vec(), data).unwrap()
}

/// `t` with every element rounded to the nearest half (ties to even).
fn to_half(t: &Tensor) -> Tensor {
    let data = t
        .data()
        .iter()
        .map(|&x| half::f16::from_f32(x).to_f32())
        .collect();
    Tensor::new(t.shape().to_vec(), data).unwrap()
}

/// Largest |g - c| relative to the largest |c|.
fn rel_err(g: &Tensor, c: &Tensor) -> f32 {
    assert_eq!(g.shape(), c.shape());
    let scale = c.data().iter().fold(0f32, |m, v| m.max(v.abs())).max(1e-30);
    g.data().iter().zip(c.data()).fold(0f32, |m, (x, y)| {
        let e = (x - y).abs() / scale;
        // NaN-safe: `f32::max` would drop a NaN error.
        if m.is_nan() || e.is_nan() {
            f32::NAN
        } else {
            m.max(e)
        }
    })
}

#[test]
fn matmul_with_half_weights_matches_the_cpu_on_rounded_weights() {
    let Some(g) = gpu(true) else { return };
    let c = cpu();
    let x = rand(&[5, 48], 1, 1.0);
    // Weights spanning magnitudes down into the half subnormals (< 6.1e-5).
    let mut wd = rand(&[40, 48], 2, 1.0).to_vec();
    for (i, v) in wd.iter_mut().enumerate() {
        *v *= [1.0, 1e-2, 1e-4, 1e-6][i % 4];
    }
    let w = Tensor::new(vec![40, 48], wd).unwrap().into_weight();
    // Odd element count: the last packed word holds one half.
    let wn = rand(&[48, 7], 3, 1.0).into_weight();

    let y = g.matmul(&x, &w, false, true).unwrap();
    let yn = g.matmul(&x, &wn, false, false).unwrap();
    let s = g.stats();
    // x once as f32 (its copy is kept), the weights as halves in whole words.
    assert_eq!(
        s.upload_bytes,
        4 * x.numel() as u64 + 2 * w.numel() as u64 + 4 * wn.numel().div_ceil(2) as u64,
        "{s:?}"
    );

    // Same rounded weights on the CPU: only the summation order differs.
    let e_t = rel_err(&y, &c.matmul(&x, &to_half(&w), false, true).unwrap());
    let e_n = rel_err(&yn, &c.matmul(&x, &to_half(&wn), false, false).unwrap());
    assert!(e_t <= 1e-4 && e_n <= 1e-4, "{e_t:e} {e_n:e}");

    // Against full f32: |Δy_ij| <= Σ_k |x_ik| (2^-11 |w_jk| + 2^-25), plus 1e-4 of the
    // largest |y| for summation order.
    let full = c.matmul(&x, &w, false, true).unwrap();
    let ax = x.data().iter().map(|v| v.abs()).collect::<Vec<_>>();
    let bound = c
        .matmul(
            &Tensor::new(vec![5, 48], ax).unwrap(),
            &Tensor::new(
                vec![40, 48],
                w.data()
                    .iter()
                    .map(|v| HALF_EPS * v.abs() + HALF_SUB)
                    .collect(),
            )
            .unwrap(),
            false,
            true,
        )
        .unwrap();
    let scale = full.data().iter().fold(0f32, |m, v| m.max(v.abs()));
    let mut worst = 0f32;
    for (i, ((a, b), lim)) in y
        .data()
        .iter()
        .zip(full.data())
        .zip(bound.data())
        .enumerate()
    {
        let d = (a - b).abs();
        assert!(
            d <= lim + 1e-4 * scale,
            "y[{i}]: {a} vs f32 {b} (bound {lim})"
        );
        worst = worst.max(d / scale);
    }
    eprintln!(
        "gpu_f16 matmul: vs rounded weights {e_t:.1e}/{e_n:.1e}, vs f32 {worst:.1e} \
         (relative to max |y|), weights {} bytes instead of {}",
        s.upload_bytes - 4 * x.numel() as u64,
        4 * (w.numel() + wn.numel())
    );
}

#[test]
fn embedding_from_a_half_table_is_the_rounded_rows() {
    let Some(g) = gpu(true) else { return };
    let table = rand(&[11, 6], 4, 3.0).into_weight();
    let ids = [3, 0, 10, 3];
    let got = g.embedding(&table, &ids).unwrap();
    let want = cpu().embedding(&to_half(&table), &ids).unwrap();
    assert_eq!(got.data(), want.data(), "gathering copies halves exactly");
    assert_eq!(g.stats().upload_bytes, 2 * 66);
    // The device copy reads back as the rounded weights.
    assert_eq!(
        table.device().unwrap().read().unwrap(),
        to_half(&table).to_vec()
    );
}

#[test]
fn other_ops_reading_a_half_copy_get_it_widened() {
    let Some(g) = gpu(true) else { return };
    let w = rand(&[4, 8], 5, 1.0).into_weight();
    let x = rand(&[2, 8], 6, 1.0);
    g.matmul(&x, &w, false, true).unwrap();
    let b = rand(&[4, 8], 7, 1.0);
    let sum = g.binary(BinaryOp::Add, &w, &b).unwrap();
    let want = cpu().binary(BinaryOp::Add, &to_half(&w), &b).unwrap();
    assert_eq!(sum.data(), want.data());
    assert_eq!(g.stats().widenings, 1);
}

#[test]
fn only_weight_matrices_in_range_are_stored_as_halves() {
    let Some(g) = gpu(true) else { return };
    let c = cpu();
    let x = rand(&[3, 8], 8, 1.0);
    // Not marked as weights: an activation stays f32 (and exact to 1e-4).
    let act = rand(&[8, 8], 9, 1.0);
    let y = g.matmul(&x, &act, false, false).unwrap();
    assert!(rel_err(&y, &c.matmul(&x, &act, false, false).unwrap()) <= 1e-4);
    // Beyond the half range (65504): kept as f32 rather than turned into infinities.
    let big = rand(&[8, 8], 10, 1e5).into_weight();
    let yb = g.matmul(&x, &big, false, false).unwrap();
    assert!(rel_err(&yb, &c.matmul(&x, &big, false, false).unwrap()) <= 1e-4);
    assert_eq!(g.stats().upload_bytes, 4 * (24 + 64 + 64));
}

#[test]
fn the_default_backend_keeps_weights_in_f32() {
    let Some(g) = gpu(false) else { return };
    let x = rand(&[3, 8], 11, 1.0);
    let w = rand(&[5, 8], 12, 1.0).into_weight();
    let y = g.matmul(&x, &w, false, true).unwrap();
    assert!(rel_err(&y, &cpu().matmul(&x, &w, false, true).unwrap()) <= 1e-4);
    assert_eq!(g.stats().upload_bytes, 4 * (24 + 40));
    assert!(!g.name().contains("f16 weights"), "{}", g.name());
    let half = g.with_f16_weights(true).name();
    assert!(half.ends_with(", f16 weights"), "{half}");
}
