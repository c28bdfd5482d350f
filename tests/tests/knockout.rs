//! Attention knockout (the `knockout` intervention at `blocks.{i}.attn.hook_scores`) and the
//! per-head Granger map built on it.

use serde_json::json;

use tokit_engine::{Action, ForwardSpec, Intervention};
use tokit_engine::{AnalyzeInput, Model};
use tokit_sdk::Variant;
use tokit_tests::*;

const TOKENS: [u32; 10] = [5, 17, 3, 9, 42, 7, 64, 23, 11, 80];

fn logits(m: &Model, spec: &ForwardSpec) -> Vec<f32> {
    tokit_tests::logits(m, &TOKENS, spec)
        .remove(0)
        .data()
        .to_vec()
}

fn knockout(pattern: &str, keys: Vec<usize>, heads: Vec<usize>) -> ForwardSpec {
    ForwardSpec {
        interventions: vec![Intervention {
            hook: pattern.into(),
            action: Action::Knockout { keys, heads },
            variants: None,
        }],
        ..Default::default()
    }
}

/// Knocking key j out of every head of every layer is the `attention` ablation of j.
#[test]
fn knockout_everywhere_is_attention_ablation() {
    for name in ["transformer/gpt2", "transformer/llama_gqa_tied"] {
        let m = load_fixture(name);
        for j in [0, 4] {
            let ko = logits(&m, &knockout("blocks.*.attn.hook_scores", vec![j], vec![]));
            let ablated = logits(
                &m,
                &ForwardSpec {
                    variants: vec![Variant {
                        ablate: vec![j],
                        method: Some("attention".into()),
                        replace_with: None,
                    }],
                    ..Default::default()
                },
            );
            let d = max_diff(&ko, &ablated);
            assert!(d <= 1e-5, "{name} j={j}: {d}");
        }
        // One head of one layer changes less than all of them, but something.
        let clean = logits(&m, &ForwardSpec::default());
        let one = logits(&m, &knockout("blocks.0.attn.hook_scores", vec![4], vec![1]));
        assert!(max_diff(&one, &clean) > 1e-6, "{name}");
        // Positions before the knocked-out key cannot see it: their rows are unchanged
        // (up to the rounding of the unfused attention path the intervention takes).
        let v = m.info().vocab_size;
        assert!(max_diff(&one[..4 * v], &clean[..4 * v]) <= 1e-5, "{name}");
    }
}

#[test]
fn knockout_errors_name_the_hook_and_the_bound() {
    let m = load_fixture("transformer/gpt2");
    let err = |spec: ForwardSpec| format!("{:#}", m.forward(&TOKENS, &spec).unwrap_err());
    let e = err(knockout("blocks.0.attn.hook_scores", vec![10], vec![]));
    assert!(
        e.contains("blocks.0.attn.hook_scores") && e.contains("key 10"),
        "{e}"
    );
    let e = err(knockout("blocks.0.attn.hook_scores", vec![1], vec![4]));
    assert!(e.contains("head 4 is beyond the 4 heads"), "{e}");
    let e = err(knockout("blocks.0.hook_resid_post", vec![1], vec![]));
    assert!(e.contains("expected attention scores"), "{e}");
}

fn granger(m: &Model, params: serde_json::Value) -> anyhow::Result<tokit_engine::Report> {
    engine().analyze(
        "granger_map",
        &AnalyzeInput {
            model: Some(m.clone()),
            tokens: Some(TOKENS.to_vec()),
            params: params.as_object().cloned().unwrap(),
            ..Default::default()
        },
    )
}

/// The per-head map: each entry is the KL between the clean law and the law with that
/// head knocked out of key j, as a direct forward computes it.
#[test]
fn per_head_granger_map_matches_direct_knockouts() {
    let m = load_fixture("transformer/llama_gqa_tied");
    let r = granger(&m, json!({ "layer": 1, "head": 2 })).unwrap();
    assert_eq!(
        r.provenance.ablation.as_deref(),
        Some("attention_knockout(layer 1, head 2)")
    );
    let g = r.tensors["granger_kl"].data().to_vec();
    let t = TOKENS.len();
    let v = m.info().vocab_size;
    let clean = logits(&m, &ForwardSpec::default());
    let kl = |p: &[f32], q: &[f32]| -> f64 {
        let ls = |x: &[f32]| {
            let mx = x.iter().fold(f32::NEG_INFINITY, |a, &b| a.max(b)) as f64;
            let z: f64 = x.iter().map(|&y| (y as f64 - mx).exp()).sum();
            x.iter()
                .map(|&y| y as f64 - mx - z.ln())
                .collect::<Vec<f64>>()
        };
        let (lp, lq) = (ls(p), ls(q));
        lp.iter().zip(&lq).map(|(a, b)| a.exp() * (a - b)).sum()
    };
    for j in [0, 3, 7] {
        let ko = logits(&m, &knockout("blocks.1.attn.hook_scores", vec![j], vec![2]));
        for tt in j + 1..t {
            let want = kl(&clean[(tt - 1) * v..tt * v], &ko[(tt - 1) * v..tt * v]);
            let got = g[tt * t + j] as f64;
            assert!(
                (got - want).abs() <= 1e-5 + 1e-4 * want,
                "G[{tt}, {j}] {got} vs {want}"
            );
        }
        assert!(g[j * t + j].is_nan());
    }
    // The map is not the whole-position map: one head carries less than every head.
    let full = granger(&m, json!({})).unwrap();
    let sum = |r: &tokit_engine::Report| -> f64 {
        r.tensors["granger_kl"]
            .data()
            .iter()
            .filter(|x| !x.is_nan())
            .map(|&x| x as f64)
            .sum()
    };
    assert!(sum(&r) < sum(&full));
}

#[test]
fn per_head_granger_map_errors() {
    let m = load_fixture("transformer/gpt2");
    let e = format!("{:#}", granger(&m, json!({ "layer": 0 })).unwrap_err());
    assert!(e.contains("both `layer` and `head`"), "{e}");
    let e = format!(
        "{:#}",
        granger(&m, json!({ "layer": 9, "head": 0 })).unwrap_err()
    );
    assert!(
        e.contains("blocks.9.attn.hook_scores") && e.contains("2 layers"),
        "{e}"
    );
    let e = format!(
        "{:#}",
        granger(&m, json!({ "layer": 0, "head": 0, "method": "attention" })).unwrap_err()
    );
    assert!(e.contains("exclude each other"), "{e}");
    let mamba = load_fixture("mamba2/g1_chunk7_tied");
    let e = format!(
        "{:#}",
        granger(&mamba, json!({ "layer": 0, "head": 0 })).unwrap_err()
    );
    assert!(e.contains("do not offer"), "{e}");
}
