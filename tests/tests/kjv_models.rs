//! The trained King James models of `models/` (tools/train_tiny.py) against the held-out
//! numbers PyTorch measured on them (`models/kjv-*/heldout.json`, also in each
//! MODEL_CARD.md), over every held-out verse (`models/kjv-heldout.txt`, each line one
//! document `<|endoftext|>verse`): the causal models' cross-entropy to 1e-4 nats, and
//! LLaDA's l-form ELBO within 3 standard errors (two Monte Carlo estimates).

use serde_json::Value;
use std::path::{Path, PathBuf};
use tokit_tests::*;

fn models() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../models")
}

fn json(path: &Path) -> Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap()
}

/// Runs `analyze METRIC --corpus` over the held-out verses; returns the summary.
fn corpus_summary(model: &str, metric: &str, params: &[&str]) -> Value {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out.jsonl");
    let model = models().join(model);
    let corpus = models().join("kjv-heldout.txt");
    let mut args = vec![
        "analyze",
        metric,
        "--model",
        model.to_str().unwrap(),
        "--corpus",
        corpus.to_str().unwrap(),
        "--output",
        out.to_str().unwrap(),
    ];
    for p in params {
        args.extend(["--param", p]);
    }
    let o = tokit(&args);
    assert!(
        o.status.success(),
        "tokit {args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    json(&dir.path().join("out.summary.json"))
}

#[test]
fn transformer_held_out_cross_entropy_equals_pytorch() {
    causal_held_out_cross_entropy_equals_pytorch("kjv-transformer");
}

#[test]
fn mamba2_held_out_cross_entropy_equals_pytorch() {
    causal_held_out_cross_entropy_equals_pytorch("kjv-mamba2");
}

fn causal_held_out_cross_entropy_equals_pytorch(model: &str) {
    let card = json(&models().join(model).join("heldout.json"));
    let s = corpus_summary(model, "surprisal", &[]);
    let col = &s["corpus"]["columns"]["surprisal"];
    assert_eq!(col["tokens"], card["tokens"], "scored tokens");
    let (ours, torch) = (
        col["mean"].as_f64().unwrap(),
        card["cross_entropy_per_token"].as_f64().unwrap(),
    );
    assert!(
        (ours - torch).abs() < 1e-4,
        "{model}: held-out cross-entropy: tokit {ours}, PyTorch {torch}"
    );
}

#[test]
fn llada_held_out_elbo_agrees_with_pytorch_within_three_standard_errors() {
    let card = json(&models().join("kjv-llada/heldout.json"));
    let s = corpus_summary("kjv-llada", "elbo", &["draws=8"]);
    let per_token = &s["corpus"]["scalars"]["per_token"];
    assert_eq!(per_token["documents"], card["verses"]);
    let (ours, se) = (
        per_token["mean"].as_f64().unwrap(),
        per_token["se"].as_f64().unwrap(),
    );
    let (torch, torch_se) = (
        card["elbo_per_token"].as_f64().unwrap(),
        card["se"].as_f64().unwrap(),
    );
    let both = (se * se + torch_se * torch_se).sqrt();
    assert!(
        (ours - torch).abs() < 3.0 * both,
        "held-out ELBO per token: tokit {ours} ± {se}, PyTorch {torch} ± {torch_se}"
    );
}
