//! The `transformer` plugin against PyTorch + transformers (fixtures written by
//! tools/make_fixtures.py), plus its ablation, hook and error behaviour.

use serde_json::Value;
use std::path::{Path, PathBuf};
use tokit_engine::{
    Action, ForwardSpec, GenerateOptions, Intervention, LoadOptions, Model, Tensor,
};
use tokit_sdk::Variant;
use tokit_tests::*;

const FIXTURES: [&str; 6] = [
    "gpt2",
    "llama_gqa_tied",
    "llama_untied_llama3",
    "qwen2",
    "mistral_window",
    "llama_old_layout",
];

fn fixture(name: &str) -> PathBuf {
    tokit_tests::fixture(&format!("transformer/{name}"))
}

fn reference(name: &str) -> Reference {
    tokit_tests::reference(&format!("transformer/{name}"))
}

fn load(name: &str) -> Model {
    load_with(name, &LoadOptions::default())
}

fn load_with(name: &str, opts: &LoadOptions) -> Model {
    engine()
        .load_model(fixture(name).to_str().unwrap(), opts)
        .unwrap_or_else(|e| panic!("loading {name}: {e:#}"))
}

fn clean(m: &Model, tokens: &[u32]) -> Tensor {
    logits(m, tokens, &ForwardSpec::default()).remove(0)
}

fn ablate(pos: &[usize]) -> Variant {
    Variant {
        ablate: pos.to_vec(),
        ..Default::default()
    }
}

fn replace(pos: &[usize], with: u32) -> Variant {
    Variant {
        ablate: pos.to_vec(),
        method: Some("replace".into()),
        replace_with: Some(with),
    }
}

fn variants(vs: Vec<Variant>) -> ForwardSpec {
    ForwardSpec {
        variants: vs,
        ..Default::default()
    }
}

fn intervene(pattern: &str, action: Action, variants: Option<Vec<usize>>) -> Intervention {
    Intervention {
        hook: pattern.into(),
        action,
        variants,
    }
}

#[test]
fn logits_match_transformers_within_1e4() {
    let mut report = Vec::new();
    for name in FIXTURES {
        let r = reference(name);
        let m = load(name);
        let out = clean(&m, &r.tokens);
        assert_eq!(
            out.shape(),
            &[r.tokens.len(), m.info().vocab_size],
            "{name}"
        );
        let d = max_diff(out.data(), &r.logits);
        report.push(format!("{name}: max |Δlogit| = {d:.2e}"));
        assert!(d <= 1e-4, "{name}: max |Δlogit| = {d}");
    }
    eprintln!("{}", report.join("\n"));
}

#[test]
fn attention_ablation_matches_transformers_attention_mask() {
    for name in FIXTURES {
        let r = reference(name);
        let m = load(name);
        for (pos, want) in &r.ablations {
            let out = logits(&m, &r.tokens, &variants(vec![ablate(pos)])).remove(0);
            let d = max_diff(out.data(), want);
            assert!(d <= 1e-4, "{name} ablate {pos:?}: max |Δlogit| = {d}");
        }
    }
}

#[test]
fn greedy_continuation_matches_transformers() {
    for name in FIXTURES {
        let r = reference(name);
        let m = load(name);
        let v = m.info().vocab_size;
        let mut seq = r.tokens.clone();
        for _ in 0..r.greedy.len() {
            let l = clean(&m, &seq);
            let last = &l.data()[(seq.len() - 1) * v..];
            let next = (0..v).max_by(|&a, &b| last[a].total_cmp(&last[b])).unwrap();
            seq.push(next as u32);
        }
        assert_eq!(&seq[r.tokens.len()..], &r.greedy[..], "{name}");
    }
}

/// `generate` asks for the last position only, so steps after the first extend the KV cache.
#[test]
fn generation_with_the_kv_cache_matches_transformers_greedy() {
    for name in FIXTURES {
        let r = reference(name);
        let m = load(name);
        let opts = GenerateOptions {
            max_tokens: r.greedy.len(),
            temperature: 0.0,
            ..Default::default()
        };
        assert_eq!(
            tokit_engine::generate::generate(&m, &r.tokens, &opts).unwrap(),
            r.greedy,
            "{name}"
        );
    }
}

/// `last_only` logits equal the last row of a full pass whatever the cache holds: an
/// extension, the same tokens again, a shorter sequence, a divergent one.
#[test]
fn last_only_equals_the_last_row_of_a_full_pass() {
    for name in ["gpt2", "llama_untied_llama3", "mistral_window"] {
        let r = reference(name);
        let m = load(name);
        let v = m.info().vocab_size;
        let last = ForwardSpec {
            last_only: true,
            ..Default::default()
        };
        let t = &r.tokens;
        let mut diverged = t[..30].to_vec();
        diverged[25] = (diverged[25] + 1) % v as u32;
        for seq in [
            &t[..20],
            &t[..21],
            &t[..26],
            &t[..26],
            &t[..10],
            &diverged[..],
            &t[..40],
            &t[..1],
            &t[..2],
        ] {
            let got = logits(&m, seq, &last).remove(0);
            assert_eq!(got.shape(), &[1, v], "{name}");
            let full = clean(&m, seq);
            let d = max_diff(got.data(), &full.data()[(seq.len() - 1) * v..]);
            assert!(
                d <= 1e-5,
                "{name} len {}: cached vs full differ by {d}",
                seq.len()
            );
        }
        // Hooks of a cached step see the new positions only: proof that the cache was used.
        logits(&m, &t[..30], &last);
        let spec = ForwardSpec {
            last_only: true,
            capture: vec!["blocks.0.hook_resid_pre".into()],
            ..Default::default()
        };
        let out = m.forward(&t[..32], &spec).unwrap().remove(0);
        assert_eq!(
            out["blocks.0.hook_resid_pre"].shape(),
            &[2, m.info().d_model],
            "{name}"
        );
        // An intervention during a cached step applies (the step is recomputed in full).
        logits(&m, &t[..30], &last);
        let zero = ForwardSpec {
            last_only: true,
            interventions: vec![intervene("blocks.0.hook_attn_out", Action::Zero, None)],
            ..Default::default()
        };
        let got = logits(&m, &t[..31], &zero).remove(0);
        let want = logits(
            &m,
            &t[..31],
            &ForwardSpec {
                last_only: false,
                ..zero.clone()
            },
        )
        .remove(0);
        assert!(
            max_diff(got.data(), &want.data()[30 * v..]) <= 1e-5,
            "{name}"
        );
        // Variants with last_only: one row each.
        let spec = ForwardSpec {
            last_only: true,
            variants: vec![
                Variant::default(),
                ablate(&[3]),
                ablate(&[10]),
                ablate(&[0]),
            ],
            ..Default::default()
        };
        let out = logits(&m, &t[..31], &spec);
        let full = logits(
            &m,
            &t[..31],
            &ForwardSpec {
                last_only: false,
                ..spec.clone()
            },
        );
        for (a, b) in out.iter().zip(&full) {
            assert!(max_diff(a.data(), &b.data()[30 * v..]) <= 1e-5, "{name}");
        }
    }
}

#[test]
fn both_config_layouts_are_read() {
    let new = load("llama_untied_llama3");
    let rope = &new.info().extra["rope"];
    assert_eq!(rope["config_layout"], "rope_parameters");
    assert_eq!(rope["rope_theta"], 50000.0);
    assert_eq!(rope["rope_scaling"]["rope_type"], "llama3");
    let old = load("llama_old_layout");
    let rope = &old.info().extra["rope"];
    assert_eq!(rope["config_layout"], "rope_theta/rope_scaling");
    assert_eq!(rope["rope_theta"], 500000.0);
    assert_eq!(rope["rope_scaling"]["rope_type"], "linear");
    assert_eq!(
        load("mistral_window").info().extra["sliding_windows"],
        serde_json::json!([8, 8])
    );
}

/// Every variant of a batched call equals the same variant computed alone, and its logits
/// before the first ablated position are the clean ones, bit for bit.
#[test]
fn batched_ablation_variants_equal_separate_runs() {
    for name in ["gpt2", "llama_gqa_tied", "mistral_window"] {
        let r = reference(name);
        let m = load(name);
        let v = m.info().vocab_size;
        let base = clean(&m, &r.tokens);
        let vs = vec![
            ablate(&[5]),
            Variant::default(),
            ablate(&[17, 30]),
            ablate(&[0]),
            ablate(&[39]),
            replace(&[10], 3),
            replace(&[33, 34], 0),
        ];
        let batched = logits(&m, &r.tokens, &variants(vs.clone()));
        assert_eq!(batched.len(), vs.len());
        for (var, got) in vs.iter().zip(&batched) {
            let alone = logits(&m, &r.tokens, &variants(vec![var.clone()])).remove(0);
            let d = max_diff(got.data(), alone.data());
            assert!(d <= 1e-5, "{name} {var:?}: batched vs alone differ by {d}");
            let j = var.ablate.iter().copied().min().unwrap_or(r.tokens.len());
            assert_eq!(
                &got.data()[..j * v],
                &base.data()[..j * v],
                "{name} {var:?}: rows before {j} changed"
            );
            if j + 1 < r.tokens.len() {
                assert!(
                    max_diff(&got.data()[j * v..], &base.data()[j * v..]) > 1e-3,
                    "{name} {var:?}: no effect"
                );
            }
        }
        // `replace` equals a clean run of the edited sequence.
        let mut edited = r.tokens.clone();
        edited[10] = 3;
        assert!(
            max_diff(batched[5].data(), clean(&m, &edited).data()) <= 1e-5,
            "{name}"
        );
    }
}

#[test]
fn hooks_have_documented_shapes() {
    for (name, pos_embed) in [
        ("gpt2", true),
        ("llama_gqa_tied", false),
        ("llama_untied_llama3", false),
    ] {
        let r = reference(name);
        let m = load(name);
        let info = m.info().clone();
        let (t, d, vocab) = (r.tokens.len(), info.d_model, info.vocab_size);
        let x = &info.extra;
        let (h, hkv, dh, dm) = (
            x["n_heads"].as_u64().unwrap() as usize,
            x["n_kv_heads"].as_u64().unwrap() as usize,
            x["head_dim"].as_u64().unwrap() as usize,
            x["d_mlp"].as_u64().unwrap() as usize,
        );
        assert_eq!(
            info.hooks.len(),
            3 + pos_embed as usize + 11 * info.n_layers,
            "{name}: {:?}",
            info.hooks
        );
        let out = m
            .forward(
                &r.tokens,
                &ForwardSpec {
                    capture: vec!["*".into()],
                    ..Default::default()
                },
            )
            .unwrap()
            .remove(0);
        for hook in &info.hooks {
            let want: Vec<usize> = match hook.rsplit('.').next().unwrap() {
                "hook_q" => vec![h, t, dh],
                "hook_k" | "hook_v" => vec![hkv, t, dh],
                "hook_scores" | "hook_pattern" => vec![h, t, t],
                "hook_post" => vec![t, dm],
                "hook_logits" | "hook_lens_logits" => vec![t, vocab],
                _ => vec![t, d],
            };
            assert_eq!(out[hook].shape(), &want[..], "{name} {hook}");
        }
        assert_eq!(out["hook_logits"].data(), out["logits"].data());
        // Scores: −inf above the diagonal; pattern rows sum to 1.
        let (scores, pattern) = (
            &out["blocks.1.attn.hook_scores"],
            &out["blocks.1.attn.hook_pattern"],
        );
        for (row, chunk) in pattern.data().chunks(t).enumerate() {
            let i = row % t;
            assert!((chunk.iter().sum::<f32>() - 1.0).abs() < 1e-5);
            assert!(chunk[i + 1..].iter().all(|&p| p == 0.0));
            assert!(scores.data()[row * t + i + 1..(row + 1) * t]
                .iter()
                .all(|&s| s == f32::NEG_INFINITY));
            assert!(scores.data()[row * t..row * t + i + 1]
                .iter()
                .all(|s| s.is_finite()));
        }
    }
}

#[test]
fn replacing_with_the_captured_activation_reproduces_the_logits_exactly() {
    for name in ["gpt2", "qwen2"] {
        let r = reference(name);
        let m = load(name);
        let cap = m
            .forward(
                &r.tokens,
                &ForwardSpec {
                    capture: vec!["*".into()],
                    ..Default::default()
                },
            )
            .unwrap()
            .remove(0);
        let base = cap["logits"].data().to_vec();
        for hook in &m.info().hooks {
            let spec = ForwardSpec {
                interventions: vec![intervene(
                    hook,
                    Action::Replace {
                        value: cap[hook].clone(),
                    },
                    None,
                )],
                ..Default::default()
            };
            assert_eq!(
                clean_with(&m, &r.tokens, &spec),
                base,
                "{name}: replace at {hook}"
            );
        }
        // Zeroing the embedding changes everything.
        let spec = ForwardSpec {
            interventions: vec![intervene("hook_embed", Action::Zero, None)],
            ..Default::default()
        };
        let zeroed = clean_with(&m, &r.tokens, &spec);
        assert!(max_diff(&zeroed, &base) > 1e-2, "{name}");
        // Scaling the pattern by 0 leaves the MLP path only: logits change.
        let spec = ForwardSpec {
            interventions: vec![intervene(
                "blocks.*.attn.hook_pattern",
                Action::Scale { factor: 0.0 },
                None,
            )],
            ..Default::default()
        };
        assert!(
            max_diff(&clean_with(&m, &r.tokens, &spec), &base) > 1e-2,
            "{name}"
        );
    }
}

fn clean_with(m: &Model, tokens: &[u32], spec: &ForwardSpec) -> Vec<f32> {
    logits(m, tokens, spec).remove(0).data().to_vec()
}

/// Interventions in a batched call apply to the variants they name, and only to those.
#[test]
fn interventions_in_batched_calls_match_separate_runs() {
    let r = reference("llama_gqa_tied");
    let m = load("llama_gqa_tied");
    let steer = Tensor::new(
        vec![32],
        (0..32).map(|i| (i as f32 - 16.0) / 20.0).collect(),
    )
    .unwrap();
    let ivs = [
        intervene("hook_embed", Action::Zero, Some(vec![1])),
        intervene(
            "blocks.1.hook_resid_pre",
            Action::Add {
                value: steer.clone(),
            },
            Some(vec![0, 2]),
        ),
        intervene(
            "blocks.0.attn.hook_pattern",
            Action::Scale { factor: 0.5 },
            Some(vec![3]),
        ),
    ];
    let vs = vec![
        Variant::default(),
        ablate(&[12]),
        ablate(&[20]),
        replace(&[25], 9),
        ablate(&[30]),
    ];
    let spec = ForwardSpec {
        variants: vs.clone(),
        interventions: ivs.to_vec(),
        capture: vec!["blocks.1.*".into()],
        ..Default::default()
    };
    let batched = m.forward(&r.tokens, &spec).unwrap();
    for (i, var) in vs.iter().enumerate() {
        let mine: Vec<Intervention> = ivs
            .iter()
            .filter(|iv| iv.variants.as_ref().unwrap().contains(&i))
            .map(|iv| Intervention {
                variants: None,
                ..iv.clone()
            })
            .collect();
        let alone = m
            .forward(
                &r.tokens,
                &ForwardSpec {
                    variants: vec![var.clone()],
                    interventions: mine,
                    capture: vec!["blocks.1.*".into()],
                    ..Default::default()
                },
            )
            .unwrap()
            .remove(0);
        assert_eq!(batched[i].len(), alone.len(), "variant {i}");
        for (k, t) in &alone {
            assert_eq!(batched[i][k].shape(), t.shape(), "variant {i} {k}");
            let d = max_diff(batched[i][k].data(), t.data());
            assert!(d <= 1e-5, "variant {i} {k}: batched vs alone differ by {d}");
        }
    }
}

/// Listening to a layer's pattern switches it to the unfused path; logits do not move.
#[test]
fn fused_and_unfused_attention_agree() {
    for name in ["qwen2", "mistral_window"] {
        let r = reference(name);
        let m = load(name);
        let fused = clean(&m, &r.tokens);
        for pattern in ["blocks.0.attn.hook_pattern", "blocks.*.attn.hook_scores"] {
            let spec = ForwardSpec {
                capture: vec![pattern.into()],
                ..Default::default()
            };
            let unfused = logits(&m, &r.tokens, &spec).remove(0);
            assert!(
                max_diff(fused.data(), unfused.data()) <= 1e-5,
                "{name} {pattern}"
            );
        }
    }
}

/// Copy a fixture into a temporary directory, editing its config.
fn edited_fixture(name: &str, edit: impl FnOnce(&mut Value)) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for f in ["config.json", "model.safetensors"] {
        std::fs::copy(fixture(name).join(f), dir.path().join(f)).unwrap();
    }
    let path = dir.path().join("config.json");
    let mut cfg: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    edit(&mut cfg);
    std::fs::write(&path, cfg.to_string()).unwrap();
    dir
}

fn load_error(dir: &Path) -> String {
    match engine().load_model(dir.to_str().unwrap(), &LoadOptions::default()) {
        Ok(_) => panic!("{} loaded", dir.display()),
        Err(e) => format!("{e:#}"),
    }
}

#[test]
fn head_count_not_dividing_the_hidden_size_is_a_clear_error() {
    let dir = edited_fixture("gpt2", |c| c["n_head"] = 5.into());
    let err = load_error(dir.path());
    assert!(
        err.contains("`n_head` = 5 does not divide `n_embd` = 32"),
        "{err}"
    );
    let dir = edited_fixture("llama_gqa_tied", |c| {
        c["num_attention_heads"] = 5.into();
        c.as_object_mut().unwrap().remove("head_dim");
    });
    let err = load_error(dir.path());
    assert!(
        err.contains("`num_attention_heads` = 5 does not divide `hidden_size` = 32"),
        "{err}"
    );
    let dir = edited_fixture("llama_gqa_tied", |c| c["num_key_value_heads"] = 3.into());
    let err = load_error(dir.path());
    assert!(
        err.contains("not a multiple of `num_key_value_heads` = 3"),
        "{err}"
    );
}

#[test]
fn a_weight_of_the_wrong_shape_is_a_clear_error() {
    // The config says 60 MLP units; the checkpoint has 64.
    let dir = edited_fixture("llama_gqa_tied", |c| c["intermediate_size"] = 60.into());
    let err = load_error(dir.path());
    assert!(
        err.contains(
            "weight `model.layers.0.mlp.gate_proj.weight` has shape [64, 32], expected [60, 32]"
        ),
        "{err}"
    );
    // A checkpoint whose tensor itself is off: rewrite one weight with a wrong shape.
    let dir = edited_fixture("gpt2", |_| {});
    let w = tokit_model::Weights::open(dir.path()).unwrap();
    let mut tensors: Vec<(String, Vec<usize>, Vec<f32>)> = w
        .names()
        .into_iter()
        .map(|n| {
            let t = w.tensor(&n).unwrap();
            (n, t.shape().to_vec(), t.data().to_vec())
        })
        .collect();
    drop(w);
    let bad = tensors
        .iter_mut()
        .find(|t| t.0 == "transformer.h.1.attn.c_attn.weight")
        .unwrap();
    bad.1 = vec![96, 32]; // stored [out, in] instead of Conv1D's [in, out]
    let refs: Vec<(&str, &[usize], &[f32])> = tensors
        .iter()
        .map(|(n, s, d)| (n.as_str(), &s[..], &d[..]))
        .collect();
    tokit_model::save_f32(&dir.path().join("model.safetensors"), &refs, None).unwrap();
    let err = load_error(dir.path());
    assert!(
        err.contains(
            "weight `transformer.h.1.attn.c_attn.weight` has shape [96, 32], expected [32, 96]"
        ),
        "{err}"
    );
    // A missing tensor is named too.
    let dir = edited_fixture("llama_gqa_tied", |c| {
        c["tie_word_embeddings"] = false.into()
    });
    let err = load_error(dir.path());
    assert!(err.contains("lm_head.weight"), "{err}");
}

#[test]
fn unsupported_settings_are_clear_errors() {
    let dir = edited_fixture("llama_gqa_tied", |c| {
        c["rope_parameters"] =
            serde_json::json!({"rope_type": "yarn", "rope_theta": 10000.0, "factor": 4.0});
    });
    let err = load_error(dir.path());
    assert!(
        err.contains("rope type `yarn`") && err.contains("supported: default, linear, llama3"),
        "{err}"
    );
    let dir = edited_fixture("llama_gqa_tied", |c| c["hidden_act"] = "tanhshrink".into());
    let err = load_error(dir.path());
    assert!(
        err.contains("hidden_act") && err.contains("tanhshrink"),
        "{err}"
    );
    let dir = edited_fixture("llama_gqa_tied", |c| c["model_type"] = "gemma".into());
    let err = load_error(dir.path());
    assert!(err.contains("gemma"), "{err}");
}

/// Cost of the unfused attention path (scores, softmax, pattern @ v, all hookable) against
/// the fused op, on a random Llama-shaped model. Run with `--ignored --nocapture`.
#[test]
#[ignore]
fn bench_unfused_attention_cost() {
    let (d, layers, heads, kv, mlp, vocab) = (256usize, 4usize, 8usize, 2usize, 688usize, 512usize);
    let dir = tempfile::tempdir().unwrap();
    let cfg = serde_json::json!({
        "model_type": "llama", "tokenizer": "ids", "vocab_size": vocab, "hidden_size": d,
        "intermediate_size": mlp, "num_hidden_layers": layers, "num_attention_heads": heads,
        "num_key_value_heads": kv, "max_position_embeddings": 4096, "tie_word_embeddings": true,
    });
    std::fs::write(dir.path().join("config.json"), cfg.to_string()).unwrap();
    let mut seed = 1u64;
    let mut rand = |n: usize| -> Vec<f32> {
        (0..n)
            .map(|_| {
                seed = seed
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                ((seed >> 33) as f32 / (1u64 << 31) as f32 - 0.5) * 0.2
            })
            .collect()
    };
    let dh = d / heads;
    let mut ts: Vec<(String, Vec<usize>, Vec<f32>)> = vec![(
        "model.embed_tokens.weight".into(),
        vec![vocab, d],
        rand(vocab * d),
    )];
    ts.push(("model.norm.weight".into(), vec![d], vec![1.0; d]));
    for i in 0..layers {
        let p = format!("model.layers.{i}");
        for (n, s) in [
            ("self_attn.q_proj.weight", vec![d, d]),
            ("self_attn.k_proj.weight", vec![kv * dh, d]),
            ("self_attn.v_proj.weight", vec![kv * dh, d]),
            ("self_attn.o_proj.weight", vec![d, d]),
            ("mlp.gate_proj.weight", vec![mlp, d]),
            ("mlp.up_proj.weight", vec![mlp, d]),
            ("mlp.down_proj.weight", vec![d, mlp]),
        ] {
            let n_el = s.iter().product();
            ts.push((format!("{p}.{n}"), s, rand(n_el)));
        }
        ts.push((format!("{p}.input_layernorm.weight"), vec![d], vec![1.0; d]));
        ts.push((
            format!("{p}.post_attention_layernorm.weight"),
            vec![d],
            vec![1.0; d],
        ));
    }
    let refs: Vec<(&str, &[usize], &[f32])> = ts
        .iter()
        .map(|(n, s, x)| (n.as_str(), &s[..], &x[..]))
        .collect();
    tokit_model::save_f32(&dir.path().join("model.safetensors"), &refs, None).unwrap();
    let m = engine()
        .load_model(dir.path().to_str().unwrap(), &LoadOptions::default())
        .unwrap();
    let plain = ForwardSpec::default();
    // Capturing every pattern forces the unfused path in every layer (and keeps the tensors).
    let patterns = ForwardSpec {
        capture: vec!["blocks.*.attn.hook_pattern".into()],
        ..Default::default()
    };
    // A do-nothing intervention on the scores: unfused, nothing kept.
    let scores = ForwardSpec {
        interventions: vec![intervene(
            "blocks.*.attn.hook_scores",
            Action::Scale { factor: 1.0 },
            None,
        )],
        ..Default::default()
    };
    for t in [128usize, 512, 2048] {
        let tokens: Vec<u32> = (0..t).map(|i| (i * 7 % vocab) as u32).collect();
        let time = |spec: &ForwardSpec| {
            m.forward(&tokens, spec).unwrap();
            let start = std::time::Instant::now();
            let n = 3;
            for _ in 0..n {
                m.forward(&tokens, spec).unwrap();
            }
            start.elapsed().as_secs_f64() / n as f64 * 1e3
        };
        let (a, b, c) = (time(&plain), time(&scores), time(&patterns));
        eprintln!(
            "T = {t}: fused {a:.1} ms; unfused (scale 1 at scores) {b:.1} ms = {:.2}x; \
             unfused capturing every pattern {c:.1} ms = {:.2}x",
            b / a,
            c / a
        );
    }
    // An ablation sweep (clean + 32 positions) in one call against one call per variant.
    let t = 256;
    let tokens: Vec<u32> = (0..t).map(|i| (i * 7 % vocab) as u32).collect();
    let mut vs = vec![Variant::default()];
    vs.extend((0..t).step_by(t / 32).map(|j| ablate(&[j])));
    let capture = ForwardSpec {
        capture: vec!["blocks.*.hook_resid_post".into()],
        ..Default::default()
    };
    for (label, spec) in [("no hooks", &plain), ("capturing resid_post", &capture)] {
        let start = std::time::Instant::now();
        m.forward(
            &tokens,
            &ForwardSpec {
                variants: vs.clone(),
                ..spec.clone()
            },
        )
        .unwrap();
        let batched = start.elapsed().as_secs_f64();
        let start = std::time::Instant::now();
        for v in &vs {
            m.forward(
                &tokens,
                &ForwardSpec {
                    variants: vec![v.clone()],
                    ..spec.clone()
                },
            )
            .unwrap();
        }
        let separate = start.elapsed().as_secs_f64();
        eprintln!(
            "sweep of {} variants, T = {t}, {label}: batched {:.0} ms, separate {:.0} ms",
            vs.len(),
            batched * 1e3,
            separate * 1e3
        );
    }
}
