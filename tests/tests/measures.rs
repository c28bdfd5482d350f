//! Model-based measures on the Transformer fixtures (issues 6 and 7): the logit lens
//! against PyTorch, attention energetics, and their errors on models that cannot offer them.

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
