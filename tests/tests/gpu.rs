//! Whole models through the GPU backend (`backend: Gpu`, software adapters included):
//! the Transformer, Mamba2 and LLaDA fixtures' logits against their references to 1e-4
//! with no op falling back to the CPU, captured hooks against the CPU backend with one
//! readback per captured tensor, and backend selection.
//!
//! The host backend is process-wide, so the tests of this file take turns ([`LOCK`]).
//! Without any adapter each test prints why and passes.

use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};

use serde_json::Value;
use tokit_compute::gpu::total_stats;
use tokit_engine::{BackendChoice, Config, Engine, ForwardSpec, LoadOptions};
use tokit_tests::*;

static LOCK: Mutex<()> = Mutex::new(());

fn turn() -> MutexGuard<'static, ()> {
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

fn engine_on(backend: BackendChoice) -> anyhow::Result<Arc<Engine>> {
    ensure_built();
    let config = Config {
        backend,
        threads: Some(2),
        ..Config::default()
    };
    Ok(Arc::new(Engine::new(config)?))
}

/// The GPU engine, or `None` (with the reason printed) when no adapter exists.
fn gpu_engine() -> Option<Arc<Engine>> {
    match engine_on(BackendChoice::Gpu) {
        Ok(e) => {
            eprintln!("gpu: running on {}", e.backend_name());
            Some(e)
        }
        Err(e) => {
            missing_prerequisite("gpu", format!("{e:#}"));
            None
        }
    }
}

fn read_reference(name: &str) -> Value {
    let text = std::fs::read_to_string(fixture(name).join("reference.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

/// The reference's tokens and logits (rows concatenated).
fn reference(name: &str) -> (Vec<u32>, Vec<f32>) {
    let r = tokit_tests::reference(name);
    (r.tokens, r.logits)
}

#[test]
fn transformer_fixtures_match_transformers_on_the_gpu() {
    let _turn = turn();
    let Some(e) = gpu_engine() else { return };
    assert!(
        e.backend_name().starts_with("gpu: "),
        "{}",
        e.backend_name()
    );
    let mut report = Vec::new();
    for name in [
        "transformer/gpt2",
        "transformer/llama_gqa_tied",
        "transformer/llama_untied_llama3",
        "transformer/qwen2",
        "transformer/mistral_window",
        "transformer/llama_old_layout",
    ] {
        let (tokens, want) = reference(name);
        let m = e
            .load_model(fixture(name).to_str().unwrap(), &LoadOptions::default())
            .unwrap_or_else(|err| panic!("loading {name}: {err:#}"));
        let before = total_stats();
        let out = m
            .forward(&tokens, &ForwardSpec::default())
            .unwrap()
            .remove(0);
        let logits = &out["logits"];
        let d = max_diff(logits.data(), &want);
        let after = total_stats();
        // Again: the weights' device copies are kept, so only the token ids go up.
        let again = m
            .forward(&tokens, &ForwardSpec::default())
            .unwrap()
            .remove(0);
        assert_eq!(
            again["logits"].data(),
            logits.data(),
            "{name}: deterministic"
        );
        let second = total_stats();
        report.push(format!(
            "{name}: max |Δlogit| = {d:.2e}, {} dispatches, {} readbacks, {} uploads \
             (second forward: {} uploads, {} readbacks)",
            after.dispatches - before.dispatches,
            after.readbacks - before.readbacks,
            after.uploads - before.uploads,
            second.uploads - after.uploads,
            second.readbacks - after.readbacks,
        ));
        assert!(d <= 1e-4, "{name}: max |Δlogit| = {d}");
        assert_eq!(
            second.readbacks - after.readbacks,
            1,
            "{name}: only the logits"
        );
        assert_eq!(second.cpu_fallbacks, before.cpu_fallbacks, "{name}");
    }
    eprintln!("{}", report.join("\n"));
}

/// Mamba2 (the conv and SSD scan kernels: full pass, the state path through
/// `ssm_states`, and greedy decoding from the cached conv and SSM states) and LLaDA
/// (bidirectional attention, plus its attention-ablation references) on the GPU.
#[test]
fn mamba2_and_llada_fixtures_match_their_references_on_the_gpu() {
    let _turn = turn();
    let Some(e) = gpu_engine() else { return };
    let load = |name: &str| {
        e.load_model(fixture(name).to_str().unwrap(), &LoadOptions::default())
            .unwrap_or_else(|err| panic!("loading {name}: {err:#}"))
    };
    let logits = |m: &tokit_engine::Model, tokens: &[u32], spec: &ForwardSpec| {
        m.forward(tokens, spec)
            .unwrap()
            .remove(0)
            .remove("logits")
            .unwrap()
    };
    let mut report = Vec::new();
    for name in ["mamba2/g1_chunk7_tied", "mamba2/g2_chunk8_untied"] {
        let (tokens, want) = reference(name);
        let r = read_reference(name);
        let m = load(name);
        let before = total_stats();
        let d = max_diff(logits(&m, &tokens, &ForwardSpec::default()).data(), &want);
        let after = total_stats();
        // The state path: every position's state, then y = S C.
        let states = ForwardSpec {
            capture: vec!["blocks.*.ssm.hook_state".into()],
            ..Default::default()
        };
        let ds = max_diff(logits(&m, &tokens, &states).data(), &want);
        let opts = tokit_engine::GenerateOptions {
            max_tokens: r["greedy"].as_array().unwrap().len(),
            temperature: 0.0,
            ..Default::default()
        };
        let greedy = tokit_engine::generate::generate(&m, &tokens, &opts).unwrap();
        let want_greedy: Vec<u32> = r["greedy"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_u64().unwrap() as u32)
            .collect();
        report.push(format!(
            "{name}: max |Δlogit| = {d:.2e} (state path {ds:.2e}), {} dispatches, {} \
             readbacks; greedy decoding matches",
            after.dispatches - before.dispatches,
            after.readbacks - before.readbacks,
        ));
        assert!(d <= 1e-4, "{name}: max |Δlogit| = {d}");
        assert!(ds <= 1e-4, "{name} state path: max |Δlogit| = {ds}");
        assert_eq!(greedy, want_greedy, "{name}: greedy decoding");
        assert_eq!(
            total_stats().cpu_fallbacks,
            before.cpu_fallbacks,
            "{name}: an op ran on the CPU"
        );
    }
    for name in ["llada/llada", "llada/llada_tied_bias"] {
        let (tokens, want) = reference(name);
        let r = read_reference(name);
        let m = load(name);
        let before = total_stats();
        let d = max_diff(logits(&m, &tokens, &ForwardSpec::default()).data(), &want);
        let mut worst = d;
        for a in r["ablations"].as_array().unwrap() {
            let spec = ForwardSpec {
                variants: vec![tokit_sdk::Variant {
                    ablate: serde_json::from_value(a["ablate"].clone()).unwrap(),
                    method: Some("attention".into()),
                    ..Default::default()
                }],
                ..Default::default()
            };
            let want: Vec<f32> = serde_json::from_value::<Vec<Vec<f32>>>(a["logits"].clone())
                .unwrap()
                .concat();
            worst = nan_max(worst, max_diff(logits(&m, &tokens, &spec).data(), &want));
        }
        report.push(format!(
            "{name}: max |Δlogit| = {d:.2e} (with attention ablations {worst:.2e})"
        ));
        assert!(worst <= 1e-4, "{name}: max |Δlogit| = {worst}");
        assert_eq!(
            total_stats().cpu_fallbacks,
            before.cpu_fallbacks,
            "{name}: an op ran on the CPU"
        );
    }
    eprintln!("{}", report.join("\n"));
}

#[test]
fn captured_hooks_read_back_once_and_match_the_cpu() {
    let _turn = turn();
    let name = "transformer/llama_gqa_tied";
    let (tokens, _) = reference(name);
    let spec = ForwardSpec {
        capture: vec!["*".into()],
        ..Default::default()
    };
    let cpu = {
        let e = engine_on(BackendChoice::Cpu).unwrap();
        let m = e
            .load_model(fixture(name).to_str().unwrap(), &LoadOptions::default())
            .unwrap();
        m.forward(&tokens, &spec).unwrap().remove(0)
    };
    let Some(e) = gpu_engine() else { return };
    let m = e
        .load_model(fixture(name).to_str().unwrap(), &LoadOptions::default())
        .unwrap();
    let out = m.forward(&tokens, &spec).unwrap().remove(0);
    let hooks: Vec<&String> = out.keys().filter(|k| *k != "logits").collect();
    assert_eq!(hooks.len(), cpu.len() - 1);
    let pending = hooks.iter().filter(|h| !out[h.as_str()].on_host()).count();
    let before = total_stats().readbacks;
    for h in &hooks {
        let (g, c) = (&out[h.as_str()], &cpu[h.as_str()]);
        assert_eq!(g.shape(), c.shape(), "{h}");
        let d = max_diff(g.data(), c.data());
        assert!(d <= 1e-4, "{h}: max |Δ| = {d}");
        // A second read is free.
        let _ = g.data();
    }
    let copies = total_stats().readbacks - before;
    eprintln!(
        "gpu: {} hooks captured, {pending} still on the device after the forward, {copies} \
         readbacks to read them all twice",
        hooks.len()
    );
    assert!(
        pending > 0,
        "captured hooks should stay on the device until read"
    );
    assert!(
        copies <= pending as u64,
        "one copy per captured tensor at most"
    );
}

#[test]
fn selection_names_the_backend_and_adapter() {
    let _turn = turn();
    let cpu = engine_on(BackendChoice::Cpu).unwrap();
    let note = tokit_compute::CpuBackend::gemm_note();
    assert_eq!(cpu.backend_name(), format!("cpu (2 threads{note})"));
    // Auto takes only a real GPU: on a machine with just a software adapter (CI's
    // lavapipe) or none, it runs on the CPU and says why.
    let auto = engine_on(BackendChoice::Auto).unwrap();
    let hardware = tokit_compute::gpu::list_adapters()
        .first()
        .is_some_and(|a| a.hardware);
    if hardware {
        assert!(
            auto.backend_name().starts_with("gpu: "),
            "{}",
            auto.backend_name()
        );
    } else {
        let n = auto.backend_name();
        assert!(
            n.starts_with(&format!("cpu (2 threads{note}; auto: ")),
            "{n}"
        );
        assert!(
            n.contains("software") || n.contains("no GPU adapter"),
            "{n}"
        );
    }
    match gpu_engine() {
        Some(e) => {
            let adapter = &tokit_compute::gpu::list_adapters()[0];
            assert!(
                e.backend_name().contains(&adapter.name),
                "{}",
                e.backend_name()
            );
        }
        None => {
            let err = engine_on(BackendChoice::Gpu).err().unwrap().to_string();
            assert!(err.contains("no GPU adapter"), "{err}");
        }
    }
}

/// With the Vulkan loader pointed at no driver (no adapter at all, on Linux): `auto` runs
/// on the CPU and says why, `gpu` fails with a clear error, and nothing else is printed.
#[test]
#[cfg(target_os = "linux")]
fn without_any_adapter_auto_uses_the_cpu_and_gpu_fails_clearly() {
    ensure_built();
    let run = |backend: &str| {
        std::process::Command::new(target_dir().join("tokit"))
            .current_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join(".."))
            .args([
                "--backend",
                backend,
                "info",
                "tests/fixtures/transformer/gpt2",
            ])
            .env("VK_ICD_FILENAMES", "/nonexistent/icd.json")
            .env("VK_DRIVER_FILES", "/nonexistent/icd.json")
            .output()
            .expect("running tokit")
    };
    let auto = run("auto");
    let (out, err) = (
        String::from_utf8_lossy(&auto.stdout),
        String::from_utf8_lossy(&auto.stderr),
    );
    assert!(auto.status.success(), "{out}\n{err}");
    assert!(
        out.contains("backend:      cpu (") && out.contains("auto: no GPU adapter found"),
        "{out}"
    );
    assert!(!err.contains("ERROR"), "{err}");
    let gpu = run("gpu");
    let err = String::from_utf8_lossy(&gpu.stderr);
    assert!(!gpu.status.success());
    assert!(
        err.trim()
            == "error: backend gpu: no GPU adapter found (wgpu found no Vulkan, Metal or \
                       DX12 device; on Linux install a Vulkan driver, e.g. mesa-vulkan-drivers)",
        "{err}"
    );
}

/// Packed documents on the GPU (`docs/architecture.md`, "Packed documents"): the
/// per-document attention, the per-document convolution and the reset decay of Mamba2 run
/// on the device, no op falling back, and each document's logits equal running it alone.
#[test]
fn packed_documents_equal_their_documents_alone_on_the_gpu() {
    let _turn = turn();
    let Some(e) = gpu_engine() else { return };
    for name in [
        "transformer/gpt2",
        "transformer/llama_gqa_tied",
        "transformer/mistral_window",
        "llada/llada",
        "mamba2/g1_chunk7_tied",
    ] {
        let m = e
            .load_model(fixture(name).to_str().unwrap(), &LoadOptions::default())
            .unwrap_or_else(|err| panic!("loading {name}: {err:#}"));
        let (tokens, _) = reference(name);
        let lens = [9, 1, 6, tokens.len().min(24) - 16];
        let tokens = &tokens[..lens.iter().sum::<usize>()];
        let before = total_stats();
        let spec = ForwardSpec {
            segments: lens.to_vec(),
            ..Default::default()
        };
        let packed = m.forward(tokens, &spec).unwrap().remove(0);
        assert_eq!(total_stats().cpu_fallbacks, before.cpu_fallbacks, "{name}");
        let packed = packed["logits"].data();
        let vocab = m.info().vocab_size;
        let mut start = 0;
        for n in lens {
            let alone = m
                .forward(&tokens[start..start + n], &ForwardSpec::default())
                .unwrap()
                .remove(0);
            let d = max_diff(
                &packed[start * vocab..(start + n) * vocab],
                alone["logits"].data(),
            );
            assert!(
                d <= 1e-5,
                "{name}: packed document at {start} differs by {d}"
            );
            start += n;
        }
    }
}
