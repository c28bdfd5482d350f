//! The real pretrained model: SmolLM2-135M-Instruct (Q4_1 GGUF) against transformers
//! loading the same file (`tools/smollm2_reference.py`). Skips with a message when the
//! model has not been fetched (`tools/get-smollm2.sh`; `.ci/run` does it).

use tokit_engine::{AnalyzeInput, LoadOptions};
use tokit_tests::*;

fn gguf() -> Option<std::path::PathBuf> {
    if let Ok(p) = std::env::var("TOKIT_SMOLLM2_GGUF") {
        return Some(p.into());
    }
    let cache = std::env::var("TOKIT_CACHE")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|_| {
            std::path::PathBuf::from(std::env::var("HOME").unwrap_or_default()).join(".cache/tokit")
        });
    std::fs::read_dir(cache.join("smollm2"))
        .ok()?
        .flatten()
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|e| e == "gguf"))
}

#[test]
fn token_ids_and_mean_cross_entropy_match_transformers() {
    let Some(path) = gguf() else {
        eprintln!("SKIPPED: SmolLM2 GGUF not found; run tools/get-smollm2.sh");
        return;
    };
    let reference: serde_json::Value =
        serde_json::from_str(include_str!("../fixtures/smollm2/reference.json")).unwrap();
    let engine = engine();
    let m = engine
        .load_model(path.to_str().unwrap(), &LoadOptions::default())
        .unwrap();
    let text = reference["text"].as_str().unwrap();
    let ids = m.encode(text).unwrap();
    let want: Vec<u32> = serde_json::from_value(reference["ids"].clone()).unwrap();
    assert_eq!(ids, want, "token ids differ from transformers'");
    let r = engine
        .analyze(
            "cross_entropy",
            &AnalyzeInput {
                model: Some(m),
                tokens: Some(ids),
                ..Default::default()
            },
        )
        .unwrap();
    let ce = r.value.unwrap();
    let want = reference["mean_cross_entropy_nats"].as_f64().unwrap();
    assert!(
        (ce - want).abs() < 1e-3,
        "mean cross-entropy {ce} vs transformers {want}"
    );
}
