//! The real pretrained model: SmolLM2-135M-Instruct (Q4_1 GGUF) against transformers
//! loading the same file (`tools/smollm2_reference.py`). Skips with a message when the
//! model has not been fetched (`tools/get-smollm2.sh`; `.ci/run` does it), and fails under
//! CI instead.

use tokit_engine::{AnalyzeInput, LoadOptions};
use tokit_tests::*;

#[test]
fn token_ids_and_mean_cross_entropy_match_transformers() {
    let Some(path) = smollm2_gguf() else {
        missing_prerequisite(
            "smollm2",
            "SmolLM2 GGUF not found; run tools/get-smollm2.sh",
        );
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
    eprintln!("smollm2: mean cross-entropy {ce} vs transformers {want}");
    assert!(
        (ce - want).abs() < 1e-5,
        "mean cross-entropy {ce} vs transformers {want} (bound 1e-5 nats)"
    );
}

/// Logits, not only their mean: max |Δlogit| against transformers' float32 logits of the
/// dequantised model, at every position, over the committed vocabulary ids (a stride
/// through the vocabulary plus each position's 16 largest).
#[test]
fn logits_match_transformers_at_every_position() {
    let Some(path) = smollm2_gguf() else {
        missing_prerequisite(
            "smollm2",
            "SmolLM2 GGUF not found; run tools/get-smollm2.sh",
        );
        return;
    };
    let reference: serde_json::Value =
        serde_json::from_str(include_str!("../fixtures/smollm2/reference.json")).unwrap();
    let ids: Vec<u32> = serde_json::from_value(reference["ids"].clone()).unwrap();
    let cols: Vec<usize> = serde_json::from_value(reference["logit_ids"].clone()).unwrap();
    let want: Vec<Vec<f32>> = serde_json::from_value(reference["logits"].clone()).unwrap();
    assert_eq!(want.len(), ids.len(), "one reference row per position");
    let m = engine()
        .load_model(path.to_str().unwrap(), &LoadOptions::default())
        .unwrap();
    let logits = &tokit_tests::logits(&m, &ids, &Default::default())[0];
    let v = logits.shape()[1];
    let got: Vec<f32> = (0..ids.len())
        .flat_map(|t| cols.iter().map(move |&c| (t, c)))
        .map(|(t, c)| logits.data()[t * v + c])
        .collect();
    let d = max_diff(&got, &want.concat());
    eprintln!(
        "smollm2: max |Δlogit| = {d:.2e} over {} positions × {} ids",
        ids.len(),
        cols.len()
    );
    assert!(d <= 2e-4, "max |Δlogit| {d} vs transformers (bound 2e-4)");
}
