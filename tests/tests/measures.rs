//! Model-based measures on the Transformer fixtures (docs/measures.md M7, M11, M13): the
//! logit lens against PyTorch, attention energetics, and their errors on models that
//! cannot offer them.

use serde_json::Value;
use std::path::{Path, PathBuf};
use tokit_engine::{AnalyzeInput, LoadOptions, Model, Report};
use tokit_tests::*;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures/transformer")
        .join(name)
}

fn json(path: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn load(name: &str) -> Model {
    engine()
        .load_model(fixture(name).to_str().unwrap(), &LoadOptions::default())
        .unwrap_or_else(|e| panic!("loading {name}: {e:#}"))
}

fn tokens(name: &str) -> Vec<u32> {
    json(&fixture(name).join("reference.json"))["tokens"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap() as u32)
        .collect()
}

fn analyze(metric: &str, m: &Model, tokens: &[u32], params: Value) -> anyhow::Result<Report> {
    engine().analyze(
        metric,
        &AnalyzeInput {
            model: Some(m.clone()),
            tokens: Some(tokens.to_vec()),
            params: params.as_object().cloned().unwrap_or_default(),
            ..Default::default()
        },
    )
}

fn data(r: &Report, name: &str) -> Vec<f32> {
    r.tensors[name].data().to_vec()
}

#[test]
fn logit_lens_matches_pytorch_per_layer() {
    for name in ["gpt2", "llama_gqa_tied"] {
        let m = load(name);
        let r = analyze("logit_lens", &m, &tokens(name), serde_json::json!({})).unwrap();
        let want = json(&fixture(name).join("lens.json"));
        let layers = want["layers"].as_array().unwrap();
        let (h, kl, rank) = (
            data(&r, "entropy_by_layer"),
            data(&r, "kl_by_layer"),
            data(&r, "rank_by_layer"),
        );
        assert_eq!(h.len(), layers.len(), "{name}");
        for (l, w) in layers.iter().enumerate() {
            let f = |k: &str| w[k].as_f64().unwrap();
            assert!(
                (h[l] as f64 - f("entropy")).abs() < 1e-5,
                "{name} layer {l}: entropy {} vs {}",
                h[l],
                f("entropy")
            );
            assert!(
                (kl[l] as f64 - f("kl")).abs() < 1e-5,
                "{name} layer {l}: KL {} vs {}",
                kl[l],
                f("kl")
            );
            assert!(
                (rank[l] as f64 - f("rank")).abs() < 1e-4,
                "{name} layer {l}: rank {} vs {}",
                rank[l],
                f("rank")
            );
        }
        // The last layer's lens is the output law: KL exactly 0 at every scored token.
        let t = r.tensors["lens_kl"].shape()[1];
        let last = &data(&r, "lens_kl")[(layers.len() - 1) * t..];
        assert!(
            last[1..].iter().all(|&x| x.abs() < 1e-6),
            "{name}: {last:?}"
        );
    }
}

#[test]
fn logit_lens_on_a_model_without_one_names_the_model() {
    let dir = tempfile::tempdir().unwrap();
    write_toylm(dir.path(), 256, 8, serde_json::json!({}));
    let m = engine()
        .load_model(dir.path().to_str().unwrap(), &LoadOptions::default())
        .unwrap();
    let e = format!(
        "{:#}",
        analyze("logit_lens", &m, &[1, 2, 3], serde_json::json!({})).unwrap_err()
    );
    assert!(
        e.contains("toylm") && e.contains("offers no logit lens"),
        "{e}"
    );
}

#[test]
fn attention_energetics_on_a_fixture_agree_with_the_captured_pattern() {
    use tokit_engine::ForwardSpec;
    let name = "llama_gqa_tied";
    let m = load(name);
    let toks = tokens(name);
    let r = analyze("attention_energetics", &m, &toks, serde_json::json!({})).unwrap();
    let out = m
        .forward(
            &toks,
            &ForwardSpec {
                capture: vec!["blocks.*.attn.hook_pattern".into()],
                ..Default::default()
            },
        )
        .unwrap()
        .remove(0);
    let (layers, heads) = (
        r.tensors["entropy"].shape()[0],
        r.tensors["entropy"].shape()[1],
    );
    let t = toks.len();
    let h = data(&r, "entropy");
    for l in 0..layers {
        let p = out[&format!("blocks.{l}.attn.hook_pattern")]
            .data()
            .to_vec();
        for hd in 0..heads {
            // Mean over query rows of −Σ α ln α, from the pattern the model itself computed.
            let want: f64 = (0..t)
                .map(|i| {
                    p[(hd * t + i) * t..(hd * t + i + 1) * t]
                        .iter()
                        .filter(|&&a| a > 0.0)
                        .map(|&a| -(a as f64) * (a as f64).ln())
                        .sum::<f64>()
                })
                .sum::<f64>()
                / t as f64;
            let got = h[l * heads + hd] as f64;
            assert!(
                (got - want).abs() < 1e-5,
                "layer {l} head {hd}: {got} vs {want}"
            );
        }
    }
    // A causal model: no mass above the diagonal; lag profile entries are probabilities.
    assert!(data(&r, "above_diagonal").iter().all(|&x| x == 0.0));
    assert!(data(&r, "lag_profile")
        .iter()
        .all(|&x| (0.0..=1.0).contains(&x)));
    let k90 = data(&r, "k90");
    assert!(k90.iter().all(|&k| k >= 1.0 && k <= t as f32));
}

#[test]
fn attention_energetics_on_a_model_without_scores_names_the_model() {
    let dir = tempfile::tempdir().unwrap();
    write_toylm(dir.path(), 256, 8, serde_json::json!({}));
    let m = engine()
        .load_model(dir.path().to_str().unwrap(), &LoadOptions::default())
        .unwrap();
    let e = format!(
        "{:#}",
        analyze(
            "attention_energetics",
            &m,
            &[1, 2, 3],
            serde_json::json!({})
        )
        .unwrap_err()
    );
    assert!(e.contains("toylm") && e.contains("hook_scores"), "{e}");
}

fn log_softmax(z: &[f32]) -> Vec<f64> {
    let m = z.iter().fold(f32::NEG_INFINITY, |a, &b| a.max(b)) as f64;
    let lse = m + z.iter().map(|&x| (x as f64 - m).exp()).sum::<f64>().ln();
    z.iter().map(|&x| x as f64 - lse).collect()
}

/// Issue 7: the rate-reward frontier estimated by importance sampling from a Transformer's
/// own samples agrees with the exact tilt over every two-token response (128² of them).
#[test]
fn importance_sampled_rate_reward_matches_the_exact_tilt_on_a_transformer() {
    use tokit_engine::{ForwardSpec, GenerateOptions};
    let name = "llama_gqa_tied";
    let m = load(name);
    let prompt: Vec<u32> = tokens(name)[..4].to_vec();
    let v = m.info().vocab_size;
    let reward = |y: &[u32]| y.iter().filter(|&&t| t % 3 == 0).count() as f64;
    // Exact law of (y1, y2): p(y1 | prompt) p(y2 | prompt, y1), one forward per y1.
    let last = |seq: &[u32]| -> Vec<f64> {
        let out = m.forward(seq, &ForwardSpec::default()).unwrap().remove(0);
        let l = out["logits"].data();
        log_softmax(&l[(seq.len() - 1) * v..seq.len() * v])
    };
    let first = last(&prompt);
    let (mut law, mut rewards) = (Vec::with_capacity(v * v), Vec::with_capacity(v * v));
    for y1 in 0..v as u32 {
        let mut seq = prompt.clone();
        seq.push(y1);
        let second = last(&seq);
        for y2 in 0..v as u32 {
            law.push((first[y1 as usize] + second[y2 as usize]).exp());
            rewards.push(reward(&[y1, y2]));
        }
    }
    let total: f64 = law.iter().sum();
    assert!((total - 1.0).abs() < 1e-9, "{total}");
    let lambda = 1.0;
    let run = |metric: &str, params: Value| {
        engine()
            .analyze(
                metric,
                &AnalyzeInput {
                    params: params.as_object().cloned().unwrap(),
                    ..Default::default()
                },
            )
            .unwrap()
    };
    let exact = run(
        "rate_reward",
        serde_json::json!({ "reference": law, "reward": rewards, "lambda": lambda }),
    );
    // Importance sampling from the model's own samples (the engine's sampler).
    let n = 3000;
    let sampled: Vec<f64> = (0..n)
        .map(|s| {
            let opts = GenerateOptions {
                max_tokens: 2,
                temperature: 1.0,
                seed: s,
                ..Default::default()
            };
            reward(&tokit_engine::generate::generate(&m, &prompt, &opts).unwrap())
        })
        .collect();
    let is = run(
        "rate_reward_is",
        serde_json::json!({ "rewards": sampled, "lambda": lambda }),
    );
    let (kl, kl_is, se) = (
        exact.value.unwrap(),
        is.value.unwrap(),
        is.scalars["se_rate"],
    );
    let (rho, rho_is, se_rho) = (
        exact.scalars["reward"],
        is.scalars["reward"],
        is.scalars["se_reward"],
    );
    eprintln!("exact KL {kl:.6}, IS {kl_is:.6} ± {se:.6}; exact E r {rho:.6}, IS {rho_is:.6} ± {se_rho:.6}; ESS {}", is.scalars["ess"]);
    assert!(
        (kl - kl_is).abs() < 4.0 * se,
        "KL exact {kl} vs IS {kl_is} ± {se}"
    );
    assert!(
        (rho - rho_is).abs() < 4.0 * se_rho,
        "E r exact {rho} vs IS {rho_is} ± {se_rho}"
    );
}

/// Issue 6: the information flow from a prompt is a sub-martingale on a Transformer too:
/// the mean increment is non-negative at every step within Monte Carlo error, and the
/// realised flow matches its predictable part (E M_N = 0).
#[test]
fn information_flow_is_a_submartingale_on_a_transformer_fixture() {
    let name = "llama_gqa_tied";
    let m = load(name);
    let toks = tokens(name);
    let r = analyze(
        "information_flow",
        &m,
        &toks[..3],
        serde_json::json!({
            "prompt_tokens": 3, "alternatives": [toks[3..6].to_vec(), toks[6..9].to_vec()],
            "samples": 200, "response_tokens": 4, "seed": 3,
        }),
    )
    .unwrap();
    let (lam, se, a) = (
        r.value.unwrap(),
        r.scalars["se"],
        r.scalars["predictable_A_mean"],
    );
    eprintln!(
        "Λ_N {lam:.6} ± {se:.6}, A_N {a:.6}, violations {}",
        r.scalars["submartingale_violations"]
    );
    assert_eq!(r.scalars["submartingale_violations"], 0.0);
    assert!((lam - a).abs() < 4.0 * se, "Λ {lam} ± {se} vs A {a}");
    assert!(r.tensors["mean_step_kl"].data().iter().all(|&k| k >= 0.0));
}

/// Issue 7: token-semantic R(D) on a Transformer: the distortion is 1 − cos between the
/// GPT-2 fixture's own embedding rows (read back from its safetensors file), the BA curve
/// is non-increasing and starts at H(top-k law), and the corpus operating point's D is the
/// model's cross-entropy.
#[test]
fn token_semantic_rate_distortion_uses_the_embedding_rows_and_the_cross_entropy() {
    let name = "gpt2";
    let m = load(name);
    let toks = tokens(name)[..16].to_vec();
    let r = analyze(
        "token_semantic_rd",
        &m,
        &toks,
        serde_json::json!({ "top_k": 8 }),
    )
    .unwrap();
    let w = tokit_model::Weights::open(fixture(name).join("model.safetensors")).unwrap();
    let (shape, wte) = w.read_f32("transformer.wte.weight").unwrap();
    let d = shape[1];
    let top: Vec<usize> = data(&r, "tokens").iter().map(|&t| t as usize).collect();
    let dist = data(&r, "distortion_matrix");
    let row = |i: usize| {
        wte[top[i] * d..(top[i] + 1) * d]
            .iter()
            .map(|&x| x as f64)
            .collect::<Vec<f64>>()
    };
    for x in 0..8 {
        for y in 0..8 {
            let (a, b) = (row(x), row(y));
            let dot: f64 = a.iter().zip(&b).map(|(p, q)| p * q).sum();
            let n = |v: &[f64]| v.iter().map(|p| p * p).sum::<f64>().sqrt();
            let want = if x == y {
                0.0
            } else {
                1.0 - dot / (n(&a) * n(&b))
            };
            assert!(
                (dist[x * 8 + y] as f64 - want).abs() < 1e-6,
                "d[{x},{y}] {} vs {want}",
                dist[x * 8 + y]
            );
        }
    }
    let law = data(&r, "source_law");
    let h: f64 = -law.iter().map(|&p| p as f64 * (p as f64).ln()).sum::<f64>();
    assert!((r.value.unwrap() - h).abs() < 1e-6);
    let (dd, rr) = (data(&r, "distortion"), data(&r, "rate"));
    let mut pts: Vec<(f32, f32)> = dd
        .iter()
        .copied()
        .zip(rr.iter().copied())
        .filter(|p| p.0.is_finite())
        .collect();
    pts.sort_by(|a, b| a.0.total_cmp(&b.0));
    assert!(pts.windows(2).all(|w| w[1].1 <= w[0].1 + 1e-6), "{pts:?}");
    assert!(pts.iter().all(|p| p.1 as f64 <= h + 1e-6));
    let ce = analyze("cross_entropy", &m, &toks, serde_json::json!({}))
        .unwrap()
        .value
        .unwrap();
    assert!(
        (r.scalars["corpus_distortion"] - ce).abs() < 1e-6,
        "{} vs {ce}",
        r.scalars["corpus_distortion"]
    );
}

/// Issue 6, bad input: a model-based measure asked of a model without the ablation it
/// needs names the model and the missing method.
#[test]
fn ablation_measures_on_a_model_without_ablation_are_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    write_toylm(dir.path(), 256, 8, serde_json::json!({}));
    let m = engine()
        .load_model(dir.path().to_str().unwrap(), &LoadOptions::default())
        .unwrap();
    assert!(m.info().ablation_methods.is_empty());
    let e = format!(
        "{:#}",
        analyze("granger_map", &m, &[1, 2, 3], serde_json::json!({})).unwrap_err()
    );
    assert!(
        e.contains("toylm") && e.contains("ablation method") && e.contains("none"),
        "{e}"
    );
    let e = format!(
        "{:#}",
        analyze(
            "granger_map",
            &m,
            &[1, 2, 3],
            serde_json::json!({ "method": "attention" })
        )
        .unwrap_err()
    );
    assert!(e.contains("`attention`"), "{e}");
    let e = format!(
        "{:#}",
        analyze(
            "information_flow",
            &m,
            &[1, 2, 3, 4],
            serde_json::json!({ "prompt_tokens": 2 })
        )
        .unwrap_err()
    );
    assert!(e.contains("toylm") && e.contains("support none"), "{e}");
}

/// `sequence_kl` (the rate a model spends against a reference): 0 against itself, and
/// against a uniform reference the per-step KL is ln V − H(p_t) and the log-ratio is
/// Σ (ln V − surprisal), closed forms checked against `token_stats`.
#[test]
fn sequence_kl_closed_forms() {
    let name = "llama_gqa_tied";
    let m = load(name);
    let toks = tokens(name);
    let (t, v) = (toks.len(), m.info().vocab_size);
    let own = m
        .forward(&toks, &Default::default())
        .unwrap()
        .remove(0)
        .remove("logits")
        .unwrap();
    let run = |reference: tokit_engine::Tensor| {
        engine()
            .analyze(
                "sequence_kl",
                &AnalyzeInput {
                    model: Some(m.clone()),
                    tokens: Some(toks.clone()),
                    tensors: vec![("reference_logits".into(), reference)],
                    ..Default::default()
                },
            )
            .unwrap()
    };
    let zero = run(own);
    assert_eq!(zero.value, Some(0.0));
    assert_eq!(zero.scalars["log_ratio"], 0.0);

    let uniform = run(tokit_engine::Tensor::zeros(vec![t, v]));
    let stats = analyze("token_stats", &m, &toks, serde_json::json!({})).unwrap();
    let (h, s) = (data(&stats, "entropy"), data(&stats, "surprisal"));
    let ln_v = (v as f64).ln();
    let step = data(&uniform, "step_kl");
    let (mut total, mut ratio) = (0.0, 0.0);
    for i in 1..t {
        let want = ln_v - h[i] as f64;
        assert!(
            (step[i] as f64 - want).abs() < 1e-5,
            "step {i}: {} vs {want}",
            step[i]
        );
        total += want;
        ratio += ln_v - s[i] as f64;
    }
    assert!((uniform.value.unwrap() - total).abs() < 1e-4);
    assert!((uniform.scalars["log_ratio"] - ratio).abs() < 1e-4);
}
