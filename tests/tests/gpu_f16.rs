//! Transformer fixtures through the GPU backend with half-precision weights
//! (`gpu_weights: F16`): logits within a documented tolerance of the reference, the
//! weights' device bytes about halved against `gpu_weights: F32`, and the backend name
//! saying so. Software adapters included; without any adapter the test prints why and
//! passes.

use std::sync::Arc;

use tokit_compute::gpu::total_stats;
use tokit_engine::{BackendChoice, Config, Engine, ForwardSpec, GpuWeights, LoadOptions};
use tokit_tests::*;

/// Logit tolerance with half weights, relative to the reference's largest |logit|.
/// Rounding each weight to 11 significant bits perturbs every matmul output by about
/// 2^-11 / sqrt(k) of its scale (independent roundings add in quadrature), and the
/// layers compound it; the fixtures measure 7e-4 to 1.1e-3 (printed; 5e-7 with f32
/// weights), so 1e-2 leaves a margin of nine while still failing on a wrong half (a
/// lost sign or exponent bit moves logits by O(1)).
const F16_TOLERANCE: f32 = 1e-2;

const FIXTURES: [&str; 3] = [
    "transformer/gpt2",
    "transformer/llama_gqa_tied",
    "transformer/llama_untied_llama3",
];

fn engine(weights: GpuWeights) -> anyhow::Result<Arc<Engine>> {
    ensure_built();
    let config = Config {
        backend: BackendChoice::Gpu,
        gpu_weights: weights,
        threads: Some(2),
        ..Config::default()
    };
    Ok(Arc::new(Engine::new(config)?))
}

/// Logits of one forward on `e`, and the bytes uploaded to the device meanwhile (the
/// weights, on a fresh load).
fn forward(e: &Engine, name: &str, tokens: &[u32]) -> (Vec<f32>, u64) {
    let m = e
        .load_model(fixture(name).to_str().unwrap(), &LoadOptions::default())
        .unwrap_or_else(|err| panic!("loading {name}: {err:#}"));
    let before = total_stats();
    let out = m
        .forward(tokens, &ForwardSpec::default())
        .unwrap()
        .remove(0);
    let logits = out["logits"].to_vec();
    (logits, total_stats().upload_bytes - before.upload_bytes)
}

/// The reference's tokens and logits (rows concatenated).
fn reference(name: &str) -> (Vec<u32>, Vec<f32>) {
    let r = tokit_tests::reference(name);
    (r.tokens, r.logits)
}

#[test]
fn transformer_fixtures_with_half_weights_stay_close_and_halve_weight_memory() {
    let f32_engine = match engine(GpuWeights::F32) {
        Ok(e) => e,
        Err(e) => {
            missing_prerequisite("gpu_f16", format!("{e:#}"));
            return;
        }
    };
    let runs: Vec<_> = FIXTURES
        .iter()
        .map(|name| {
            let (tokens, want) = reference(name);
            let (logits, bytes) = forward(&f32_engine, name, &tokens);
            (tokens, want, logits, bytes)
        })
        .collect();
    drop(f32_engine);

    let e = engine(GpuWeights::F16).unwrap();
    assert!(
        e.backend_name().ends_with(", f16 weights"),
        "{}",
        e.backend_name()
    );
    let mut report = Vec::new();
    for (name, (tokens, want, full, full_bytes)) in FIXTURES.iter().zip(runs) {
        let (logits, bytes) = forward(&e, name, &tokens);
        let scale = want.iter().fold(0f32, |m, v| m.max(v.abs()));
        let err = |got: &[f32]| {
            got.iter()
                .zip(&want)
                .fold(0f32, |m, (a, b)| tokit_tests::nan_max(m, (a - b).abs()))
                / scale
        };
        let (e16, e32) = (err(&logits), err(&full));
        report.push(format!(
            "{name}: max |Δlogit| / max |logit| = {e16:.1e} with f16 weights ({e32:.1e} with \
             f32); device bytes uploaded {bytes} vs {full_bytes} ({:.3})",
            bytes as f64 / full_bytes as f64
        ));
        assert!(e16 <= F16_TOLERANCE, "{name}: {e16}");
        // Matrices halve; norm gains and biases (a small share) stay f32.
        assert!(
            bytes * 100 <= full_bytes * 55 && bytes * 2 >= full_bytes,
            "{name}: {bytes} vs {full_bytes}"
        );
    }
    eprintln!("{}", report.join("\n"));
}
