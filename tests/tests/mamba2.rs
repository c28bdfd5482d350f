//! The `mamba2` plugin against PyTorch + transformers (fixtures written by
//! `tools/make_fixtures.py mamba2`), plus decoding with the state caches, position
//! ablation, hooks, the `ssm_memory` metric (M12) and load errors.

use serde_json::Value;
use std::path::{Path, PathBuf};
use tokit_engine::{
    Action, AnalyzeInput, ForwardSpec, GenerateOptions, Intervention, LoadOptions, Model, Tensor,
};
use tokit_sdk::Variant;
use tokit_tests::*;

/// `n_groups` 1 with a chunk size (7) that does not divide T = 40; `n_groups` 2 with
/// chunks of 8, projection biases and a clamping time-step limit.
const FIXTURES: [&str; 2] = ["g1_chunk7_tied", "g2_chunk8_untied"];

fn fixture(name: &str) -> PathBuf {
    tokit_tests::fixture(&format!("mamba2/{name}"))
}

fn reference(name: &str) -> Reference {
    tokit_tests::reference(&format!("mamba2/{name}"))
}

fn load(name: &str) -> Model {
    load_fixture(&format!("mamba2/{name}"))
}

fn clean(m: &Model, tokens: &[u32]) -> Tensor {
    logits(m, tokens, &ForwardSpec::default()).remove(0)
}

fn last_only() -> ForwardSpec {
    ForwardSpec {
        last_only: true,
        ..Default::default()
    }
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

/// `generate` asks for the last position only: every step after the first continues from
/// the cached conv and SSM states.
#[test]
fn generation_with_the_state_cache_matches_transformers_greedy() {
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

/// Prefill of T tokens then one decoding step gives the logits of a prefill of T + 1, and
/// `last_only` equals the last row of a full pass whatever the cache holds.
#[test]
fn decoding_steps_equal_full_prefills() {
    for name in FIXTURES {
        let r = reference(name);
        let m = load(name);
        let v = m.info().vocab_size;
        let t = &r.tokens;
        let mut diverged = t[..30].to_vec();
        diverged[25] = (diverged[25] + 1) % v as u32;
        for seq in [
            &t[..20],
            &t[..21],
            &t[..22],
            &t[..26],
            &t[..26],
            &t[..10],
            &diverged[..],
            &t[..40],
            &t[..1],
            &t[..2],
        ] {
            let got = logits(&m, seq, &last_only()).remove(0);
            assert_eq!(got.shape(), &[1, v], "{name}");
            let full = clean(&m, seq);
            let d = max_diff(got.data(), &full.data()[(seq.len() - 1) * v..]);
            assert!(
                d <= 1e-5,
                "{name} len {}: step vs full differ by {d}",
                seq.len()
            );
        }
        // A step's hooks see the new position only: proof that the cache was used.
        logits(&m, &t[..30], &last_only());
        let spec = ForwardSpec {
            last_only: true,
            capture: vec![
                "blocks.1.hook_resid_pre".into(),
                "blocks.0.ssm.hook_state".into(),
            ],
            ..Default::default()
        };
        let out = m.forward(&t[..31], &spec).unwrap().remove(0);
        assert_eq!(
            out["blocks.1.hook_resid_pre"].shape(),
            &[1, m.info().d_model],
            "{name}"
        );
        // The state after position 30 equals the full pass's.
        let full = m
            .forward(
                &t[..31],
                &ForwardSpec {
                    capture: vec!["blocks.0.ssm.hook_state".into()],
                    ..Default::default()
                },
            )
            .unwrap()
            .remove(0);
        let (step, whole) = (
            &out["blocks.0.ssm.hook_state"],
            &full["blocks.0.ssm.hook_state"],
        );
        let n = step.numel();
        assert!(
            max_diff(step.data(), &whole.data()[30 * n..]) <= 1e-5,
            "{name}"
        );
        // An intervention during a step applies (the step is recomputed in full).
        logits(&m, &t[..30], &last_only());
        let zero = ForwardSpec {
            last_only: true,
            interventions: vec![Intervention {
                hook: "blocks.0.ssm.hook_y".into(),
                action: Action::Zero,
                variants: None,
            }],
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
        assert!(
            max_diff(got.data(), &clean(&m, &t[..31]).data()[30 * v..]) > 1e-3,
            "{name}"
        );
    }
}

/// Every variant of a batched call equals the same variant alone; rows before the first
/// ablated position are the clean ones, bit for bit.
#[test]
fn batched_ablation_variants_equal_separate_runs() {
    for name in FIXTURES {
        let r = reference(name);
        let m = load(name);
        let v = m.info().vocab_size;
        let len = r.tokens.len();
        let base = clean(&m, &r.tokens);
        let vs = vec![
            ablate(&[5]),
            Variant::default(),
            ablate(&[17, 30]),
            ablate(&[0]),
            ablate(&[39]),
            ablate(&[6, 5]),
            replace(&[10], 3),
            replace(&[33, 34], 0),
        ];
        let batched = logits(
            &m,
            &r.tokens,
            &ForwardSpec {
                variants: vs.clone(),
                ..Default::default()
            },
        );
        assert_eq!(batched.len(), vs.len());
        for (var, got) in vs.iter().zip(&batched) {
            let alone = logits(
                &m,
                &r.tokens,
                &ForwardSpec {
                    variants: vec![var.clone()],
                    ..Default::default()
                },
            )
            .remove(0);
            let d = max_diff(got.data(), alone.data());
            assert!(d <= 1e-5, "{name} {var:?}: batched vs alone differ by {d}");
            let j = var.ablate.iter().copied().min().unwrap_or(len);
            assert_eq!(
                &got.data()[..j * v],
                &base.data()[..j * v],
                "{name} {var:?}: rows before {j} changed"
            );
            assert_eq!(
                &alone.data()[..j * v],
                &base.data()[..j * v],
                "{name} {var:?}"
            );
            if j < len {
                assert!(
                    max_diff(&got.data()[j * v..], &base.data()[j * v..]) > 1e-3,
                    "{name} {var:?}: no effect"
                );
            }
        }
        let mut edited = r.tokens.clone();
        edited[10] = 3;
        assert!(
            max_diff(batched[6].data(), clean(&m, &edited).data()) <= 1e-5,
            "{name}"
        );
        // With last_only, each variant gives its last row.
        let spec = ForwardSpec {
            last_only: true,
            variants: vs.clone(),
            ..Default::default()
        };
        for (got, full) in logits(&m, &r.tokens, &spec).iter().zip(&batched) {
            assert!(
                max_diff(got.data(), &full.data()[(len - 1) * v..]) <= 1e-5,
                "{name}"
            );
        }
    }
}

/// `zero_input` removes the token's conv-input row and its state write. Ablating every
/// position leaves no mixing between positions at all: the logits at t are a function of
/// token t only (through its residual stream and its own decay).
#[test]
fn zero_input_of_every_position_leaves_no_mixing() {
    let r = reference("g1_chunk7_tied");
    let m = load("g1_chunk7_tied");
    let v = m.info().vocab_size;
    let all: Vec<usize> = (0..r.tokens.len()).collect();
    let spec = ForwardSpec {
        variants: vec![ablate(&all)],
        ..Default::default()
    };
    let out = logits(&m, &r.tokens, &spec).remove(0);
    // The same token at two positions gives the same logits there.
    let (i, j) = (0..r.tokens.len())
        .flat_map(|i| (i + 1..r.tokens.len()).map(move |j| (i, j)))
        .find(|&(i, j)| r.tokens[i] == r.tokens[j])
        .expect("a repeated token in the fixture");
    let row = |k: usize| &out.data()[k * v..(k + 1) * v];
    assert!(max_diff(row(i), row(j)) <= 1e-5, "positions {i} and {j}");
    // And so does the one-token sequence with its token's input removed, but not the clean
    // one: there the token's own conv row and state write count.
    let alone = ForwardSpec {
        variants: vec![ablate(&[0])],
        ..Default::default()
    };
    let single = logits(&m, &[r.tokens[j]], &alone).remove(0);
    assert!(max_diff(single.data(), row(j)) <= 1e-5);
    assert!(max_diff(clean(&m, &[r.tokens[j]]).data(), row(j)) > 1e-3);
}

#[test]
fn hooks_have_documented_shapes_and_the_state_path_agrees() {
    for name in FIXTURES {
        let r = reference(name);
        let m = load(name);
        let info = m.info().clone();
        let x = &info.extra;
        let u = |k: &str| x[k].as_u64().unwrap() as usize;
        let (t, d, vocab) = (r.tokens.len(), info.d_model, info.vocab_size);
        let (h, p, n, g) = (u("n_heads"), u("head_dim"), u("state_size"), u("n_groups"));
        assert_eq!(info.hooks.len(), 3 + 10 * info.n_layers);
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
                "hook_x" | "hook_y" => vec![t, h, p],
                "hook_B" | "hook_C" => vec![t, g, n],
                "hook_dt" | "hook_decay" => vec![t, h],
                "hook_state" => vec![t, h, p, n],
                "hook_logits" | "hook_lens_logits" => vec![t, vocab],
                _ => vec![t, d],
            };
            assert_eq!(out[hook].shape(), &want[..], "{name} {hook}");
        }
        assert!(out["blocks.0.ssm.hook_decay"]
            .data()
            .iter()
            .all(|&a| a > 0.0 && a < 1.0));
        // The logit lens of the last layer is the output; the first layer's differs.
        let last = format!("blocks.{}.hook_lens_logits", info.n_layers - 1);
        assert_eq!(out[last.as_str()].data(), out["logits"].data(), "{name}");
        assert!(
            max_diff(
                out["blocks.0.hook_lens_logits"].data(),
                out["logits"].data()
            ) > 1e-3
        );
        // Listening to the state runs the recurrent form; the chunked scan agrees.
        let chunked = clean(&m, &r.tokens);
        assert!(
            max_diff(out["logits"].data(), chunked.data()) <= 1e-5,
            "{name}"
        );
        // Replacing any hook with its captured value reproduces the logits exactly.
        for hook in &info.hooks {
            let spec = ForwardSpec {
                capture: vec!["blocks.*.ssm.hook_state".into()],
                interventions: vec![Intervention {
                    hook: hook.clone(),
                    action: Action::Replace {
                        value: out[hook].clone(),
                    },
                    variants: None,
                }],
                ..Default::default()
            };
            let got = logits(&m, &r.tokens, &spec).remove(0);
            assert_eq!(
                got.data(),
                out["logits"].data(),
                "{name}: replace at {hook}"
            );
        }
    }
}

/// docs/measures.md M12 on a real layer: the SSD mixing matrix from `ssm_memory` reproduces the
/// layer's scan output `y − D x = M x`, the kernel is the product of decays, and the
/// memory length is `1 / mean(−ln a)`.
#[test]
fn ssm_memory_matrix_form_reproduces_the_layer_output() {
    let name = "g2_chunk8_untied";
    let r = reference(name);
    let m = load(name);
    let t = r.tokens.len();
    let mut params = serde_json::Map::new();
    params.insert("layer".into(), 1.into());
    params.insert("window".into(), t.into());
    let rep = engine()
        .analyze(
            "ssm_memory",
            &AnalyzeInput {
                model: Some(m.clone()),
                tokens: Some(r.tokens.clone()),
                params,
                ..Default::default()
            },
        )
        .unwrap();
    let cap = m
        .forward(
            &r.tokens,
            &ForwardSpec {
                capture: vec!["blocks.1.ssm.*".into()],
                ..Default::default()
            },
        )
        .unwrap()
        .remove(0);
    let w = tokit_model::Weights::open(fixture(name)).unwrap();
    let dskip = w.tensor("backbone.layers.1.mixer.D").unwrap();
    let (x, y, a) = (
        &cap["blocks.1.ssm.hook_x"],
        &cap["blocks.1.ssm.hook_y"],
        &cap["blocks.1.ssm.hook_decay"],
    );
    let (h, p) = (x.shape()[1], x.shape()[2]);
    let mix = &rep.tensors["mixing"];
    let kappa = &rep.tensors["kernel"];
    assert_eq!(mix.shape(), &[h, t, t]);
    for hd in 0..h {
        for ti in 0..t {
            for pi in 0..p {
                let at = |u: &Tensor, s: usize| u.data()[(s * h + hd) * p + pi] as f64;
                let want = at(y, ti) - dskip.data()[hd] as f64 * at(x, ti);
                let got: f64 = (0..t)
                    .map(|s| mix.data()[(hd * t + ti) * t + s] as f64 * at(x, s))
                    .sum();
                assert!(
                    (got - want).abs() <= 1e-4 * (1.0 + want.abs()),
                    "head {hd} t {ti}: {got} vs {want}"
                );
            }
            // κ(t, t−1) = a_t, zero above the diagonal.
            if ti > 0 {
                let k = kappa.data()[(hd * t + ti) * t + ti - 1];
                assert!((k - a.data()[ti * h + hd]).abs() < 1e-6);
            }
            assert!(
                kappa.data()[(hd * t + ti) * t + ti..(hd * t + ti + 1) * t][1..]
                    .iter()
                    .all(|&k| k == 0.0)
            );
        }
    }
    let mean_neg_log: f64 =
        a.data().iter().map(|&v| -(v as f64).ln()).sum::<f64>() / a.numel() as f64;
    assert!((rep.value.unwrap() - 1.0 / mean_neg_log).abs() < 1e-6 * rep.value.unwrap());
    for k in ["state_norm", "state_effective_rank", "decay_mean"] {
        assert_eq!(rep.tensors[k].shape(), &[t], "{k}");
    }
    let rank = &rep.tensors["state_effective_rank"];
    assert!(
        rank.data()
            .iter()
            .all(|&r| r >= 1.0 && r <= p.min(8) as f32 + 1e-4),
        "{:?}",
        rank.data()
    );
    assert_eq!(rep.tensors["memory_length"].shape(), &[2, h]);
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
fn inconsistent_configs_and_missing_tensors_are_clear_errors() {
    let dir = edited_fixture("g1_chunk7_tied", |c| c["head_dim"] = 12.into());
    let err = load_error(dir.path());
    assert!(
        err.contains("`num_heads` * `head_dim` = 4 * 12 = 48 does not equal `expand` * `hidden_size` = 2 * 32 = 64"),
        "{err}"
    );
    let dir = edited_fixture("g2_chunk8_untied", |c| c["n_groups"] = 3.into());
    let err = load_error(dir.path());
    assert!(
        err.contains("`n_groups` = 3 does not divide `num_heads` = 4"),
        "{err}"
    );
    let dir = edited_fixture("g1_chunk7_tied", |c| {
        c["time_step_limit"] = serde_json::json!([1.0, 0.5])
    });
    let err = load_error(dir.path());
    assert!(err.contains("time_step_limit"), "{err}");
    // A checkpoint without a mixer tensor.
    let dir = edited_fixture("g2_chunk8_untied", |_| {});
    let w = tokit_model::Weights::open(dir.path()).unwrap();
    let tensors: Vec<(String, Vec<usize>, Vec<f32>)> = w
        .names()
        .into_iter()
        .filter(|n| n != "backbone.layers.1.mixer.dt_bias")
        .map(|n| {
            let t = w.tensor(&n).unwrap();
            (n, t.shape().to_vec(), t.data().to_vec())
        })
        .collect();
    drop(w);
    let refs: Vec<(&str, &[usize], &[f32])> = tensors
        .iter()
        .map(|(n, s, d)| (n.as_str(), &s[..], &d[..]))
        .collect();
    tokit_model::save_f32(&dir.path().join("model.safetensors"), &refs, None).unwrap();
    let err = load_error(dir.path());
    assert!(
        err.contains("missing weight `backbone.layers.1.mixer.dt_bias` (expected shape [4]"),
        "{err}"
    );
    // The config promises biases the checkpoint lacks.
    let dir = edited_fixture("g1_chunk7_tied", |c| c["use_bias"] = true.into());
    let err = load_error(dir.path());
    assert!(
        err.contains("missing weight `backbone.layers.0.mixer.in_proj.bias`"),
        "{err}"
    );
    // A state size that disagrees with the stored in_proj.
    let dir = edited_fixture("g1_chunk7_tied", |c| c["state_size"] = 6.into());
    let err = load_error(dir.path());
    assert!(
        err.contains("weight `backbone.layers.0.mixer.in_proj.weight` has shape [148, 32], expected [144, 32]"),
        "{err}"
    );
}

#[test]
fn config_quirks_are_read_and_recorded() {
    let m = load("g1_chunk7_tied");
    let x = &m.info().extra;
    assert_eq!(x["time_step_limit"], serde_json::json!([0.0, "Infinity"]));
    assert_eq!(x["chunk_size"], 7);
    let m = load("g2_chunk8_untied");
    let x = &m.info().extra;
    assert_eq!(x["time_step_limit"], serde_json::json!([0.05, 0.5]));
    assert_eq!(
        x["ignored_config"],
        serde_json::json!(["norm_before_gate = true", "rms_norm = true"])
    );
    assert_eq!(m.info().ablation_methods, ["zero_input", "replace"]);
}
