//! `tokit bench`: throughput of whole forward passes and of host ops, measured the same
//! way as `tools/bench_torch.py` so the two can be compared as a ratio.

use crate::engine::Engine;
use crate::session::{ForwardSpec, LoadOptions};
use anyhow::{ensure, Result};
use std::time::{Duration, Instant};
use tokit_compute::Tensor;

/// Best wall time of `repeat` runs of `f` (after one warm-up run).
fn best(repeat: usize, mut f: impl FnMut() -> Result<()>) -> Result<Duration> {
    f()?;
    let mut best = Duration::MAX;
    for _ in 0..repeat.max(1) {
        let t = Instant::now();
        f()?;
        best = best.min(t.elapsed());
    }
    Ok(best)
}

/// Full-sequence forward of `n` tokens, then `n` incremental decoding steps.
pub fn forward(engine: &Engine, model: &str, n: usize, repeat: usize) -> Result<String> {
    ensure!(n >= 2, "bench forward: --tokens must be at least 2");
    let m = engine.load_model(model, &LoadOptions::default())?;
    let vocab = m.info().vocab_size as u32;
    // A fixed pseudo-random token sequence (same as tools/bench_torch.py: 7919·i mod V).
    let tokens: Vec<u32> = (0..n as u64)
        .map(|i| ((i * 7919 + 1) % vocab as u64) as u32)
        .collect();
    let backend = crate::plugin::host::host().backend();
    let full = best(repeat, || {
        m.forward(&tokens, &ForwardSpec::default())?;
        backend.sync()
    })?;
    let step = ForwardSpec {
        last_only: true,
        ..Default::default()
    };
    let decode = best(repeat, || {
        for t in 1..=n {
            m.forward(&tokens[..t], &step)?;
        }
        backend.sync()
    })?;
    Ok(format!(
        "model {} ({}), backend {}\nforward  {n} tokens: {:.1} ms, {:.1} tokens/s\ndecode   {n} steps:  {:.1} ms, {:.1} tokens/s",
        m.path.display(),
        m.arch,
        engine.backend_name(),
        full.as_secs_f64() * 1e3,
        n as f64 / full.as_secs_f64(),
        decode.as_secs_f64() * 1e3,
        n as f64 / decode.as_secs_f64(),
    ))
}

/// `[n, n] @ [n, n]` on the active backend.
pub fn matmul(n: usize, repeat: usize) -> Result<String> {
    let backend = crate::plugin::host::host().backend();
    let a = Tensor::new(
        vec![n, n],
        (0..n * n)
            .map(|i| ((i % 97) as f32 - 48.0) / 97.0)
            .collect(),
    )?;
    let b = Tensor::new(
        vec![n, n],
        (0..n * n)
            .map(|i| ((i % 89) as f32 - 44.0) / 89.0)
            .collect(),
    )?;
    let t = best(repeat, || {
        backend.matmul(&a, &b, false, true)?;
        backend.sync()
    })?;
    let flops = 2.0 * (n as f64).powi(3);
    Ok(format!(
        "matmul {n}x{n}x{n} on {}: {:.2} ms, {:.1} GFLOP/s",
        backend.name(),
        t.as_secs_f64() * 1e3,
        flops / t.as_secs_f64() / 1e9
    ))
}
