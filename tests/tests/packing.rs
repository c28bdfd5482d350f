//! Packed documents (the `segments` forward option, `docs/architecture.md`): the engine's
//! validation of the lengths, and for every architecture that packs, that a packed forward
//! equals running each document alone (logits and a captured hook).

use tokit_engine::plugin::host::ForwardTarget;
use tokit_engine::{ForwardSpec, LoadOptions, Model};
use tokit_tests::*;

fn packed(segments: &[usize]) -> ForwardSpec {
    ForwardSpec {
        segments: segments.to_vec(),
        ..Default::default()
    }
}

fn forward_err(m: &Model, tokens: &[u32], spec: &ForwardSpec) -> String {
    match m.forward(tokens, spec) {
        Ok(_) => panic!("forward with segments {:?} should fail", spec.segments),
        Err(e) => format!("{e:#}"),
    }
}

/// A toylm model: its plugin does not declare `packing`.
fn toylm(dir: &std::path::Path) -> Model {
    write_toylm(dir, 256, 8, serde_json::json!({}));
    engine()
        .load_model(dir.to_str().unwrap(), &LoadOptions::default())
        .unwrap()
}

#[test]
fn malformed_segments_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let m = toylm(dir.path());
    let tokens = [1u32, 2, 3, 4, 5];
    let e = forward_err(&m, &tokens, &packed(&[2, 2]));
    assert!(e.contains("sum to 4") && e.contains("5 tokens"), "{e}");
    let e = forward_err(&m, &tokens, &packed(&[2, 0, 3]));
    assert!(e.contains("document 1 has length 0"), "{e}");
    let e = forward_err(&m, &tokens, &packed(&[usize::MAX, 6]));
    assert!(e.contains("sum to more than"), "{e}");
    // One entry is one document: no packing needed.
    assert!(m.forward(&tokens, &packed(&[5])).is_ok());
    assert!(m.forward(&tokens, &packed(&[])).is_ok());
}

#[test]
fn a_model_that_cannot_pack_refuses_several_documents() {
    let dir = tempfile::tempdir().unwrap();
    let m = toylm(dir.path());
    assert!(!m.info().packing);
    let e = forward_err(&m, &[1, 2, 3, 4, 5], &packed(&[2, 3]));
    assert!(
        e.contains("toylm cannot pack documents; run them one by one"),
        "{e}"
    );
    // The forward metric plugins call (the host's JSON request) is checked the same way.
    let e = m
        .forward_json(&[1, 2, 3, 4, 5], r#"{"segments": [2, 3]}"#)
        .err()
        .map(|e| format!("{e:#}"))
        .expect("packing refused through forward_json");
    assert!(e.contains("cannot pack documents"), "{e}");
    let e = m
        .forward_json(&[1, 2, 3], r#"{"segments": [2, 2]}"#)
        .err()
        .map(|e| format!("{e:#}"))
        .expect("bad lengths refused through forward_json");
    assert!(e.contains("sum to 4"), "{e}");
}
