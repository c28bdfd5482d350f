//! Memory capacity, generalization bound, embedding geometry and the exact masked-diffusion
//! likelihood (docs/measures.md M9, M10, M11, M8b) through the whole stack, on fixture
//! models: Rhai scripts for `memory_capacity`, `embedding_geometry` and
//! `gromov_wasserstein`, the engine API for the rest.

use rhai::Dynamic;
use std::collections::BTreeMap;
use tokit_engine::script::ScriptHost;
use tokit_engine::{AnalyzeInput, Engine, ForwardSpec, LoadOptions, Model};
use tokit_tests::*;

const LLAMA: &str = "transformer/llama_gqa_tied";

fn eval(src: &str) -> Dynamic {
    let mut host = ScriptHost::new(engine());
    host.eval_named(src, "test.rhai")
        .unwrap_or_else(|e| panic!("{e:#}"))
}

fn floats(d: Dynamic) -> Vec<f64> {
    d.into_typed_array::<f64>().unwrap()
}

fn path(f: &str) -> String {
    fixture(f).to_str().unwrap().replace('\\', "/")
}

#[test]
fn memory_capacity_on_a_fixture_and_without_a_model() {
    // llama_gqa_tied: d_model 32, 4 heads of dimension 8, 2 layers.
    let src = format!(
        r#"
        let m = load_model("{}");
        let r0 = analyze("memory_capacity", #{{ model: m }});
        let r1 = analyze("memory_capacity", #{{ model: m, kappa: 1.0 }});
        let r2 = analyze("memory_capacity", #{{ kappa: 2.0, dim: 10 }});
        [r0.value, r0.scalars.linear_capacity, r0.scalars.hopfield_capacity,
         r0.scalars.exp_capacity_log2_per_head, r0.scalars.attention_heads,
         r1.scalars.gardner_alpha_c, r1.scalars.linear_capacity,
         r2.value, r2.scalars.linear_capacity, r0.scalars.cover_fraction_at_2n]
        "#,
        path(LLAMA)
    );
    let v = floats(eval(&src));
    let close = |a: f64, b: f64| (a - b).abs() < 1e-6;
    assert!(close(v[0], 2.0) && close(v[1], 64.0), "{v:?}");
    assert!(close(v[2], 0.138 * 32.0));
    assert!(
        close(v[3], 4.0),
        "2^(8/2) patterns per head: log2 = 4, got {}",
        v[3]
    );
    assert!(close(v[4], 8.0));
    assert!(close(v[5], 0.5195722) && close(v[6], 0.5195722 * 32.0));
    assert!(close(v[7], 0.2002310) && close(v[8], 2.002310));
    assert!(close(v[9], 0.5));
    let mut host = ScriptHost::new(engine());
    let e = format!(
        "{:#}",
        host.eval_named(r#"analyze("memory_capacity", #{ kappa: -1.0 })"#, "k.rhai")
            .unwrap_err()
    );
    assert!(e.contains("kappa"), "{e}");
    let src = format!(
        r#"analyze("memory_capacity", #{{ model: load_model("{}"), dim: 10 }})"#,
        path(LLAMA)
    );
    let e = format!("{:#}", host.eval_named(&src, "d.rhai").unwrap_err());
    assert!(e.contains("`dim` applies without a model"), "{e}");
}

#[test]
fn embedding_geometry_on_a_fixture_agrees_with_its_embedding_tensor() {
    let src = format!(
        r#"
        let m = load_model("{}");
        let ids = []; for i in 0..64 {{ ids.push(i); }}
        let e1 = m.forward(ids, #{{ capture: ["hook_embed"] }}).hook_embed;
        let ids2 = []; for i in 64..128 {{ ids2.push(i); }}
        let e2 = m.forward(ids2, #{{ capture: ["hook_embed"] }}).hook_embed;
        let rows = [];
        for r in e1.to_array() {{ rows.push(r); }}
        for r in e2.to_array() {{ rows.push(r); }}
        let e = tensor(rows);
        let toks = [0, 115, 78, 114, 114, 111, 66, 107, 73, 72, 45, 72, 73, 79, 7, 4];
        let a = analyze("embedding_geometry", #{{ model: m, tokens: toks, eps: 0.5 }});
        let b = analyze("embedding_geometry", #{{ inputs: #{{ embedding: e }}, tokens: toks, eps: 0.5 }});
        let g = analyze("gromov_wasserstein", #{{ model: m, inputs: #{{ other: e }} }});
        let h = analyze("gromov_wasserstein", #{{ model: m, inputs: #{{ other: e }}, m: 40, seed: 3 }});
        [a.value, b.value, a.scalars.anisotropy, b.scalars.anisotropy, a.scalars.jl_min_dim,
         a.scalars.vectorization_efficiency, a.scalars.cross_entropy, a.scalars.unigram_entropy,
         a.scalars.pmi_pairs, a.scalars.pmi_correlation, b.scalars.pmi_correlation,
         g.value, h.value, h.scalars.points, a.scalars.dimension]
        "#,
        path(LLAMA)
    );
    let v = floats(eval(&src));
    // The model path (hook_embed in chunks of the context length) and the tensor path agree.
    assert!(
        (v[0] - v[1]).abs() < 1e-9 && v[0] > 1.0 && v[0] <= 32.0,
        "{v:?}"
    );
    assert!((v[2] - v[3]).abs() < 1e-9 && v[2].abs() < 1.0);
    // JL for n = 128, ε = 0.5: ⌊4 ln 128 / (1/8 − 1/24)⌋ = 232.
    assert_eq!(v[4], 232.0);
    // Barber–Agakov: efficiency = (H − CE)/H with the reported parts.
    assert!(((v[7] - v[6]) / v[7] - v[5]).abs() < 1e-9 && v[6] > 0.0);
    assert!(v[8] >= 2.0 && v[9].is_finite() && (v[9] - v[10]).abs() < 1e-9);
    // GW between a cloud and itself: every row in both (m ≥ |V|), distance 0; two different
    // subsamples of 40 rows are not identical clouds.
    assert!(v[11].abs() < 1e-12, "GW(self) = {}", v[11]);
    assert!(v[12] > 0.0 && v[13] == 40.0, "{v:?}");
    assert_eq!(v[14], 32.0);
}

fn analyze(
    e: &Engine,
    metric: &str,
    m: &Model,
    tokens: &[u32],
    params: serde_json::Value,
    tensors: Vec<(String, tokit_engine::Tensor)>,
) -> tokit_engine::Report {
    e.analyze(
        metric,
        &AnalyzeInput {
            model: Some(m.clone()),
            tokens: Some(tokens.to_vec()),
            params: params.as_object().cloned().unwrap_or_default(),
            tensors,
            ..Default::default()
        },
    )
    .unwrap_or_else(|err| panic!("{metric}: {err:#}"))
}

/// A copy of a fixture whose f32 weights are rounded to bf16 (round to nearest even), the
/// compression case of M10, as a checkpoint (the engine's `cpu_weights` switch is global to
/// the process, so the test does not flip it under the other tests).
fn bf16_copy(name: &str) -> tempfile::TempDir {
    let src = fixture(name);
    let dir = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(&src).unwrap() {
        let p = entry.unwrap().path();
        if p.extension().is_some_and(|e| e == "json") {
            std::fs::copy(&p, dir.path().join(p.file_name().unwrap())).unwrap();
        }
    }
    let bytes = std::fs::read(src.join("model.safetensors")).unwrap();
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let header: serde_json::Value = serde_json::from_slice(&bytes[8..8 + n]).unwrap();
    let mut out = bytes.clone();
    for (k, t) in header.as_object().unwrap() {
        if k == "__metadata__" {
            continue;
        }
        assert_eq!(t["dtype"], "F32", "{k}");
        let (a, b) = (
            t["data_offsets"][0].as_u64().unwrap() as usize,
            t["data_offsets"][1].as_u64().unwrap() as usize,
        );
        for c in out[8 + n + a..8 + n + b].chunks_mut(4) {
            let bits = u32::from_le_bytes(c.try_into().unwrap());
            let r = (bits.wrapping_add(0x7fff + ((bits >> 16) & 1))) & 0xffff_0000;
            c.copy_from_slice(&r.to_le_bytes());
        }
    }
    std::fs::write(dir.path().join("model.safetensors"), out).unwrap();
    dir
}

/// M10 on a model and its bf16-weight copy: the loss change at every position stays within
/// the Lipschitz bound 2‖z − z'‖∞, and the Hoeffding width follows from the reported M.
#[test]
fn generalization_bound_for_a_model_and_its_bf16_copy() {
    let toks: Vec<u32> = vec![
        0, 115, 78, 114, 114, 111, 66, 107, 73, 72, 45, 72, 73, 79, 7, 4, 119, 112,
    ];
    let e = engine();
    let m = load_fixture(LLAMA);
    let copy = bf16_copy(LLAMA);
    let m16 = e
        .load_model(copy.path().to_str().unwrap(), &LoadOptions::default())
        .unwrap();
    let z16 = logits(&m16, &toks, &ForwardSpec::default()).remove(0);
    let r = analyze(
        &e,
        "generalization_bound",
        &m,
        &toks,
        serde_json::json!({ "n": 10000, "delta": 0.05 }),
        vec![("reference".into(), z16)],
    );
    let s = |k: &str| r.scalars[k];
    let width = s("loss_bound_m") * (40f64.ln() / 20000.0).sqrt();
    assert!((r.value.unwrap() - width).abs() < 1e-12);
    assert!((s("loss_bound_m") - (128f64.ln() + s("max_range"))).abs() < 1e-9);
    assert!(
        s("reference_max_linf_diff") > 0.0,
        "bf16 weights change the logits"
    );
    assert!(s("loss_change_max") <= s("lipschitz_bound_max") + 1e-9);
    let (bound, change) = (
        r.tensors["lipschitz_bound"].data(),
        r.tensors["loss_change"].data(),
    );
    assert!(bound[0].is_nan() && change[0].is_nan());
    for t in 1..toks.len() {
        assert!(
            change[t] <= bound[t] + 1e-6,
            "position {t}: {} > {}",
            change[t],
            bound[t]
        );
    }
    let loss = r.tensors["loss"].data();
    let range = r.tensors["range"].data();
    for t in 1..toks.len() {
        assert!(loss[t] >= 0.0 && (loss[t] as f64) <= 128f64.ln() + range[t] as f64 + 1e-5);
    }
    // The same metric on the bf16 copy alone.
    let r16 = analyze(
        &e,
        "generalization_bound",
        &m16,
        &toks,
        serde_json::json!({}),
        vec![],
    );
    assert!(
        (r16.scalars["cross_entropy"] - s("cross_entropy")).abs() <= s("loss_change_mean") + 1e-6
    );
}

/// `mdm_likelihood` on the LLaDA fixture equals the product of the denoiser's
/// probabilities along the low-confidence path, computed here from plain forwards.
#[test]
fn mdm_likelihood_on_the_llada_fixture_follows_the_low_confidence_path() {
    let e = engine();
    let m = load_fixture("llada/llada");
    let (mask, v) = (118u32, m.info().vocab_size);
    let prompt = [20u32, 52, 28];
    let response = [22u32, 67, 106];
    let mut toks = prompt.to_vec();
    toks.extend(response);
    let r = analyze(
        &e,
        "mdm_likelihood",
        &m,
        &toks,
        serde_json::json!({ "prompt_tokens": 3 }),
        vec![],
    );
    // By hand: three steps, each revealing the masked position whose top probability is highest.
    let mut x: Vec<u32> = prompt.to_vec();
    x.extend([mask; 3]);
    let mut nll = 0.0f64;
    let mut order = vec![];
    for _ in 0..3 {
        let z = logits(&m, &x, &ForwardSpec::default()).remove(0);
        let z = z.data();
        let mut best: Option<(usize, f64, f64)> = None;
        for i in 3..6 {
            if x[i] != mask {
                continue;
            }
            let row: Vec<f64> = z[i * v..(i + 1) * v].iter().map(|&a| a as f64).collect();
            let mx = row.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
            let lse = mx + row.iter().map(|a| (a - mx).exp()).sum::<f64>().ln();
            let top = (mx - lse).exp();
            let lp = row[response[i - 3] as usize] - lse;
            if best.is_none_or(|b| top > b.1) {
                best = Some((i, top, lp));
            }
        }
        let (i, _, lp) = best.unwrap();
        x[i] = response[i - 3];
        nll -= lp;
        order.push((i - 3) as f32);
    }
    assert!(
        (r.value.unwrap() - nll).abs() < 1e-9,
        "{} vs {nll}",
        r.value.unwrap()
    );
    assert_eq!(r.tensors["order"].data(), &order[..]);
    assert_eq!(r.scalars["forwards"], 3.0);
    // One step for all three tokens: the product of the first forward's laws.
    let r1 = analyze(
        &e,
        "mdm_likelihood",
        &m,
        &toks,
        serde_json::json!({ "prompt_tokens": 3, "steps": 1 }),
        vec![],
    );
    let mut x: Vec<u32> = prompt.to_vec();
    x.extend([mask; 3]);
    let z = logits(&m, &x, &ForwardSpec::default()).remove(0);
    let z = z.data();
    let one: f64 = (3..6)
        .map(|i| {
            let row: Vec<f64> = z[i * v..(i + 1) * v].iter().map(|&a| a as f64).collect();
            let mx = row.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
            let lse = mx + row.iter().map(|a| (a - mx).exp()).sum::<f64>().ln();
            lse - row[response[i - 3] as usize]
        })
        .sum();
    assert!((r1.value.unwrap() - one).abs() < 1e-9);
    // Refusals: the random policy, an autoregressive model.
    let err = e
        .analyze(
            "mdm_likelihood",
            &AnalyzeInput {
                model: Some(m.clone()),
                tokens: Some(toks.clone()),
                params: serde_json::json!({ "policy": "random" })
                    .as_object()
                    .cloned()
                    .unwrap(),
                ..Default::default()
            },
        )
        .unwrap_err();
    assert!(format!("{err:#}").contains("random"));
    let ar = load_fixture(LLAMA);
    let err = e
        .analyze(
            "mdm_likelihood",
            &AnalyzeInput {
                model: Some(ar),
                tokens: Some(toks.clone()),
                ..Default::default()
            },
        )
        .unwrap_err();
    assert!(format!("{err:#}").contains("autoregressive"), "{err:#}");
}

/// The capacity probe's machinery on a fixture: counts, accuracies in [0, 1] with standard
/// errors, reproducible from the seed.
#[test]
fn capacity_probe_runs_on_a_fixture_and_is_reproducible() {
    let e = engine();
    let m = load_fixture(LLAMA);
    let p = serde_json::json!({ "counts": [1, 2, 4, 8], "trials": 6, "seed": 5, "token_min": 3 });
    let a = analyze(&e, "capacity_probe", &m, &[], p.clone(), vec![]);
    let b = analyze(&e, "capacity_probe", &m, &[], p, vec![]);
    let acc = a.tensors["accuracy"].data().to_vec();
    assert_eq!(acc, b.tensors["accuracy"].data().to_vec());
    assert_eq!(a.tensors["counts"].data(), &[1.0, 2.0, 4.0, 8.0]);
    assert!(acc.iter().all(|&x| (0.0..=1.0).contains(&x)));
    let probs: BTreeMap<usize, f32> = a.tensors["mean_prob"]
        .data()
        .iter()
        .copied()
        .enumerate()
        .collect();
    assert!(probs.values().all(|&x| x > 0.0 && x < 1.0));
    // A range too small for the pairs is refused.
    let err = e
        .analyze(
            "capacity_probe",
            &AnalyzeInput {
                model: Some(m),
                params: serde_json::json!({ "counts": [40], "token_min": 100 })
                    .as_object()
                    .cloned()
                    .unwrap(),
                ..Default::default()
            },
        )
        .unwrap_err();
    assert!(format!("{err:#}").contains("distinct keys"), "{err:#}");
}
