//! `tokit bench`: throughput of whole forward passes and of host ops, measured the same
//! way as `tools/bench_torch.py` so the two can be compared as a ratio; the Granger map
//! against separate forwards; Blahut-Arimoto against `tools/ba_numpy.py`; any metric on
//! inputs loaded once (`bench metric`).

use crate::engine::Engine;
use crate::model::{ForwardSpec, LoadOptions};
use anyhow::{ensure, Result};
use std::time::{Duration, Instant};
use tokit_compute::Tensor;

/// Best wall time of `repeat` runs of `f` (after one warm-up run), as
/// `tools/bench_torch.py` times the PyTorch side.
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

/// Largest token count a benchmark takes: sizes are checked before anything is allocated
/// (a mistyped 10^12 would otherwise abort on a terabyte allocation).
const MAX_TOKENS: usize = 1 << 20;
/// Largest matrix side of `bench matmul` and `bench ba` (three 16384² f32 matrices: 3 GiB).
const MAX_SIZE: usize = 1 << 14;

/// Full-sequence forward of `n` tokens, then `steps` incremental decoding steps (each
/// step one token, against the KV cache of the ones before, as transformers' `generate`).
pub fn forward(
    engine: &Engine,
    model: &str,
    n: usize,
    steps: usize,
    repeat: usize,
) -> Result<String> {
    ensure!(
        (2..=MAX_TOKENS).contains(&n) && steps <= MAX_TOKENS,
        "bench forward: --tokens must be between 2 and {MAX_TOKENS} and --decode-steps at most \
         {MAX_TOKENS} (got {n} and {steps})"
    );
    let m = engine.load_model(model, &LoadOptions::default())?;
    let vocab = m.info().vocab_size as u32;
    // A fixed pseudo-random token sequence (same as tools/bench_torch.py: 7919·i mod V).
    let tokens: Vec<u32> = (0..n.max(steps) as u64)
        .map(|i| ((i * 7919 + 1) % vocab as u64) as u32)
        .collect();
    let backend = crate::plugin::host::host().backend();
    let full = best(repeat, || {
        m.forward(&tokens[..n], &ForwardSpec::default())?;
        backend.sync()
    })?;
    let mut out = format!(
        "model {} ({}), backend {}, gemm path {}\nforward  {n} tokens: {:.1} ms, {:.1} tokens/s",
        m.path.display(),
        m.arch,
        engine.backend_name(),
        tokit_compute::CpuBackend::isa(),
        full.as_secs_f64() * 1e3,
        n as f64 / full.as_secs_f64(),
    );
    if steps > 0 {
        let step = ForwardSpec {
            last_only: true,
            ..Default::default()
        };
        let decode = best(repeat, || {
            for t in 1..=steps {
                m.forward(&tokens[..t], &step)?;
            }
            backend.sync()
        })?;
        out += &format!(
            "\ndecode   {steps} steps:  {:.1} ms, {:.1} tokens/s",
            decode.as_secs_f64() * 1e3,
            steps as f64 / decode.as_secs_f64(),
        );
    }
    Ok(out)
}

/// `[n, n] @ [n, n]` on the active backend; on the CPU also as a fraction of the f32
/// FMA peak measured right before (same threads, same load, same clock).
pub fn matmul(engine: &Engine, n: usize, repeat: usize) -> Result<String> {
    ensure!(
        (1..=MAX_SIZE).contains(&n),
        "bench matmul: --size must be between 1 and {MAX_SIZE} (got {n}: three {n}×{n} f32 \
         matrices)"
    );
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
    // The FMA peak is measured before and after the product and the better kept: a
    // burst of other load during one measurement would otherwise shrink the peak.
    let cpu = if engine.backend_name().starts_with("cpu") {
        Some(tokit_compute::CpuBackend::try_new(engine.config.threads)?)
    } else {
        None
    };
    let peak_before = cpu.as_ref().and_then(|c| c.fma_peak_gflops());
    let t = best(repeat, || {
        backend.matmul(&a, &b, false, true)?;
        backend.sync()
    })?;
    let peak_after = cpu.as_ref().and_then(|c| c.fma_peak_gflops());
    let flops = 2.0 * (n as f64).powi(3);
    let gflops = flops / t.as_secs_f64() / 1e9;
    let mut out = format!(
        "matmul {n}x{n}x{n} on {}: {:.2} ms, {gflops:.1} GFLOP/s",
        engine.backend_name(),
        t.as_secs_f64() * 1e3,
    );
    if let (Some(cpu), Some(before), Some(after)) = (&cpu, peak_before, peak_after) {
        let peak = before.max(after);
        let isa = tokit_compute::CpuBackend::isa();
        let note = match isa.starts_with("amx") {
            true => ", which AMX's bf16 tiles can pass",
            false => "",
        };
        out += &format!(
            " ({:.0} % of the {peak:.0} GFLOP/s f32 FMA peak of {} threads now{note}; gemm \
             path {isa})",
            100.0 * gflops / peak,
            cpu.threads(),
        );
    }
    Ok(out)
}

/// The Granger map of `n` tokens (one call, the variants batched with shared-prefix reuse)
/// against what it replaces: `n` separate forward calls, the clean one and one per
/// ablated source position.
pub fn granger(engine: &Engine, model: &str, n: usize, repeat: usize) -> Result<String> {
    ensure!(
        (2..=MAX_TOKENS).contains(&n),
        "bench granger: --tokens must be between 2 and {MAX_TOKENS} (got {n})"
    );
    let m = engine.load_model(model, &LoadOptions::default())?;
    let vocab = m.info().vocab_size as u64;
    let tokens: Vec<u32> = (0..n as u64)
        .map(|i| ((i * 7919 + 1) % vocab) as u32)
        .collect();
    let input = crate::engine::AnalyzeInput {
        model: Some(m.clone()),
        tokens: Some(tokens.clone()),
        ..Default::default()
    };
    let map = best(repeat, || engine.analyze("granger_map", &input).map(|_| ()))?;
    let method = m.info().default_ablation.clone();
    let variant = |j: usize| tokit_sdk::Variant {
        ablate: vec![j],
        method: Some(method.clone()),
        replace_with: None,
    };
    let all = ForwardSpec {
        variants: (0..n - 1).map(variant).collect(),
        ..Default::default()
    };
    let batched = best(repeat, || m.forward(&tokens, &all).map(|_| ()))?;
    let separate = best(repeat, || {
        m.forward(&tokens, &ForwardSpec::default())?;
        for j in 0..n - 1 {
            let spec = ForwardSpec {
                variants: vec![variant(j)],
                ..Default::default()
            };
            m.forward(&tokens, &spec)?;
        }
        Ok(())
    })?;
    Ok(format!(
        "model {} ({}), {n} tokens, ablation {method}\ngranger_map (one batched call): {:.1} ms (its forward call alone: {:.1} ms)\n{n} separate forwards:          {:.1} ms\nratio: {:.3} (forward call alone: {:.3})",
        m.path.display(),
        m.arch,
        map.as_secs_f64() * 1e3,
        batched.as_secs_f64() * 1e3,
        separate.as_secs_f64() * 1e3,
        map.as_secs_f64() / separate.as_secs_f64(),
        batched.as_secs_f64() / separate.as_secs_f64(),
    ))
}

/// Blahut-Arimoto (`rate_distortion` at slope `beta`, no restarts) on the problem
/// tools/ba_numpy.py builds: `p(x) ∝ x mod 7 + 1`,
/// `d(x, y) = ((31x + 17y) mod 64 + |x − y| mod 64) / 64` (exact in f32 and f64).
pub fn ba(engine: &Engine, n: usize, beta: f64, tol: f64, repeat: usize) -> Result<String> {
    ensure!(
        (2..=MAX_SIZE).contains(&n),
        "bench ba: --size must be between 2 and {MAX_SIZE} (got {n})"
    );
    let total: f64 = (0..n).map(|x| (x % 7 + 1) as f64).sum();
    let d: Vec<f32> = (0..n * n)
        .map(|k| {
            let (x, y) = (k / n, k % n);
            ((x * 31 + y * 17) % 64 + x.abs_diff(y) % 64) as f32 / 64.0
        })
        .collect();
    // The law goes as JSON (f64, exact weights); the matrix as a tensor.
    let law: Vec<f64> = (0..n).map(|x| (x % 7 + 1) as f64 / total).collect();
    let mut params = serde_json::Map::new();
    params.insert("source".into(), serde_json::json!(law));
    params.insert("beta".into(), serde_json::json!(beta));
    params.insert("tol".into(), serde_json::json!(tol));
    params.insert("restarts".into(), serde_json::json!(0));
    params.insert("max_iter".into(), serde_json::json!(1_000_000));
    let input = crate::engine::AnalyzeInput {
        tensors: vec![("distortion".into(), Tensor::new(vec![n, n], d)?)],
        params,
        ..Default::default()
    };
    let mut last = None;
    let t = best(repeat, || {
        last = Some(engine.analyze("rate_distortion", &input)?);
        Ok(())
    })?;
    let r = last.expect("ran");
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    Ok(format!(
        "ba {n}x{n} beta {beta} tol {tol:e}: {:.1} ms, {} iterations, converged {}, threads {threads}\nrate {:.15} nats\ndistortion {:.15}",
        t.as_secs_f64() * 1e3,
        r.scalars.get("iterations").copied().unwrap_or(f64::NAN),
        r.scalars.get("converged").copied().unwrap_or(0.0) == 1.0,
        r.scalars.get("rate").copied().unwrap_or(f64::NAN),
        r.scalars.get("distortion").copied().unwrap_or(f64::NAN),
    ))
}

/// Largest `--repeat`/`--warmup` of `bench metric`.
const MAX_REPEAT: usize = 1_000_000;

/// `repeat` timed calls of `metric` on `input` after `warmup` untimed ones, as one JSON
/// object: `metric`, `repeat`, `warmup`, `best_ms`, `median_ms`, `value` (full precision),
/// `record` (the last result's JSON) and `threads`. Loading the inputs is not timed: the
/// caller loads them once.
pub fn metric(
    engine: &Engine,
    metric: &str,
    input: &crate::engine::AnalyzeInput,
    repeat: usize,
    warmup: usize,
) -> Result<serde_json::Value> {
    ensure!(
        (1..=MAX_REPEAT).contains(&repeat) && warmup <= MAX_REPEAT,
        "bench metric: --repeat must be between 1 and {MAX_REPEAT} and --warmup at most \
         {MAX_REPEAT} (got {repeat} and {warmup})"
    );
    for _ in 0..warmup {
        engine.analyze(metric, input)?;
    }
    let mut times = Vec::with_capacity(repeat);
    let mut last = None;
    for _ in 0..repeat {
        let t = Instant::now();
        let r = engine.analyze(metric, input)?;
        times.push(t.elapsed().as_secs_f64() * 1e3);
        last = Some(r);
    }
    times.sort_by(f64::total_cmp);
    let median = if repeat % 2 == 1 {
        times[repeat / 2]
    } else {
        (times[repeat / 2 - 1] + times[repeat / 2]) / 2.0
    };
    let r = last.expect("repeat >= 1");
    let threads = engine
        .config
        .threads
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    Ok(serde_json::json!({
        "metric": metric,
        "repeat": repeat,
        "warmup": warmup,
        "best_ms": times[0],
        "median_ms": median,
        "value": r.value,
        "record": r.to_json(),
        "threads": threads,
    }))
}
