//! Throughput check for the CPU backend's hot paths: `x [T, d] @ W^T` (W [d_out, d])
//! against ndarray's `general_mat_mul` (matrixmultiply), then a few activations,
//! log_softmax and causal GQA attention. Run with
//! `cargo run --release -p tokit-compute --example bench_matmul [threads]`.
//!
//! - `TOKIT_BENCH_CPU=1`: report process CPU time instead of wall time (steadier on a
//!   busy machine; meaningful for single-threaded runs, e.g. `1` thread together with
//!   `MATMUL_NUM_THREADS=1` for matrixmultiply);
//! - `TOKIT_BENCH_ONLY=i`: run only matmul shape `i` (an index past the list runs only
//!   the non-matmul cases).

use std::time::Instant;

use ndarray::{linalg::general_mat_mul, Array2};
use tokit_compute::{AttnMask, Backend, CpuBackend, Tensor, UnaryOp};

fn rand_vec(n: usize, seed: u64) -> Vec<f32> {
    let mut s = seed | 1;
    (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            (s >> 40) as f32 / (1u64 << 24) as f32 - 0.5
        })
        .collect()
}

/// Process CPU seconds (user + system) from /proc, if available.
fn cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    let fields: Vec<&str> = stat.rsplit(')').next()?.split_whitespace().collect();
    let ticks: f64 = fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
    Some(ticks / 100.0)
}

/// Seconds per call of `f`. With `TOKIT_BENCH_CPU=1` (meant for single-threaded runs on
/// a busy machine) this is process CPU time averaged over >= 2 s of calls, which
/// ignores time spent descheduled; otherwise the best wall time of `reps` calls.
fn time(reps: usize, mut f: impl FnMut()) -> f64 {
    f();
    if std::env::var("TOKIT_BENCH_CPU").is_ok() {
        if let Some(start) = cpu_seconds() {
            let mut calls = 0;
            loop {
                f();
                calls += 1;
                let used = cpu_seconds().unwrap_or(start) - start;
                if used >= 2.0 {
                    return used / calls as f64;
                }
            }
        }
    }
    (0..reps)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed().as_secs_f64()
        })
        .fold(f64::INFINITY, f64::min)
}

fn main() {
    let threads = std::env::args().nth(1).and_then(|s| s.parse().ok());
    let be = CpuBackend::new(threads);
    println!("threads: {}", be.threads());
    let only: Option<usize> = std::env::var("TOKIT_BENCH_ONLY")
        .ok()
        .and_then(|v| v.parse().ok());
    let shapes = [
        (1, 2048, 2048),
        (16, 2048, 2048),
        (512, 576, 576),
        (512, 576, 1536),
        (512, 1536, 576),
        (512, 2048, 2048),
        (512, 2048, 8192),
        (2048, 2048, 2048),
        (512, 576, 49152),
    ];
    for (idx, &(t, d, dout)) in shapes.iter().enumerate() {
        if only.is_some_and(|o| o != idx) {
            continue;
        }
        let x = Tensor::new(vec![t, d], rand_vec(t * d, 1)).unwrap();
        let w = Tensor::new(vec![dout, d], rand_vec(dout * d, 2)).unwrap();
        let flops = 2.0 * (t * d * dout) as f64;
        let reps = ((2e10 / flops) as usize).clamp(2, 50);
        let ours = time(reps, || {
            std::hint::black_box(be.matmul(&x, &w, false, true).unwrap());
        });
        let xa = Array2::from_shape_vec((t, d), x.to_vec()).unwrap();
        let wa = Array2::from_shape_vec((dout, d), w.to_vec()).unwrap();
        let theirs = time(reps, || {
            // Allocate the output each time, as `matmul` must.
            let mut c = Array2::<f32>::zeros((t, dout));
            general_mat_mul(1.0, &xa, &wa.t(), 0.0, &mut c);
            std::hint::black_box(&c);
        });
        println!(
            "[{t:5}, {d:5}] x [{dout:5}, {d:5}]^T  tokit {:8.2} ms {:7.1} GFLOP/s | ndarray {:8.2} ms {:7.1} GFLOP/s",
            ours * 1e3,
            flops / ours / 1e9,
            theirs * 1e3,
            flops / theirs / 1e9
        );
    }
    // TOKIT_BENCH_ONLY=<index> runs one matmul shape; any index past the list runs
    // only the attention cases.
    if only.is_some_and(|o| o < shapes.len()) {
        return;
    }
    let x = Tensor::new(vec![2048, 4096], rand_vec(2048 * 4096, 6)).unwrap();
    for op in [
        UnaryOp::Silu,
        UnaryOp::GeluErf,
        UnaryOp::GeluTanh,
        UnaryOp::Exp,
    ] {
        let secs = time(5, || {
            std::hint::black_box(be.unary(op, &x).unwrap());
        });
        println!("unary {} on [2048, 4096]: {:.2} ms", op.name(), secs * 1e3);
    }
    let secs = time(5, || {
        std::hint::black_box(be.log_softmax(&x, -1).unwrap());
    });
    println!("log_softmax on [2048, 4096]: {:.2} ms", secs * 1e3);
    for (h, hkv, t, dh) in [(9, 3, 512, 64), (32, 8, 2048, 64)] {
        let q = Tensor::new(vec![h, t, dh], rand_vec(h * t * dh, 3)).unwrap();
        let k = Tensor::new(vec![hkv, t, dh], rand_vec(hkv * t * dh, 4)).unwrap();
        let v = Tensor::new(vec![hkv, t, dh], rand_vec(hkv * t * dh, 5)).unwrap();
        let secs = time(3, || {
            std::hint::black_box(
                be.attention(&q, &k, &v, &AttnMask::causal(), 0.125)
                    .unwrap(),
            );
        });
        println!(
            "attention causal H={h} Hkv={hkv} T={t} dh={dh}: {:.2} ms",
            secs * 1e3
        );
    }
}
