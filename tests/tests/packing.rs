//! Packed documents (the `segments` forward option, `docs/architecture.md`): the engine's
//! validation of the lengths, and for every architecture that packs, that a packed forward
//! equals running each document alone (logits and a captured hook).

use std::ops::Range;
use tokit_engine::plugin::host::ForwardTarget;
use tokit_engine::{ForwardSpec, LoadOptions, Model, Tensor};
use tokit_sdk::Variant;
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

/// Split `tokens` into documents of `lens` (taken from the front, in order).
fn split(tokens: &[u32], lens: &[usize]) -> Vec<Vec<u32>> {
    let mut rest = tokens;
    lens.iter()
        .map(|&n| {
            let (doc, r) = rest.split_at(n);
            rest = r;
            doc.to_vec()
        })
        .collect()
}

const TOL: f32 = 1e-5;

/// How close packed and alone must be: absolutely, or relative to the largest magnitude
/// of the output alone (at least 1).
#[derive(Clone, Copy)]
enum Tol {
    Abs(f32),
    Rel(f32),
}

/// The entries of row-major `data` of `shape` whose index on each axis lies in its range
/// (`None`: the whole axis), in order.
fn sub(data: &[f32], shape: &[usize], ranges: &[Option<Range<usize>>]) -> Vec<f32> {
    let mut out = Vec::new();
    for (i, &x) in data.iter().enumerate() {
        let mut rest = i;
        let mut inside = true;
        for (ax, &n) in shape.iter().enumerate().rev() {
            let idx = rest % n;
            rest /= n;
            if let Some(r) = &ranges[ax] {
                inside &= r.contains(&idx);
            }
        }
        if inside {
            out.push(x);
        }
    }
    out
}

/// Worst difference between the packed output's rows of each document (positions on
/// `axis`; with `square`, also on the last axis: a `[H, T, T]` pattern's diagonal block)
/// and the same output of the document run alone. With `square`, the packed tensor must
/// hold that value everywhere outside the documents' blocks.
fn compare(
    name: &str,
    packed: &Tensor,
    alone: &[Tensor],
    lens: &[usize],
    axis: usize,
    square: Option<f32>,
) -> f32 {
    let shape = packed.shape().to_vec();
    let data = packed.data();
    let last = shape.len() - 1;
    let mut worst = 0f32;
    let mut start = 0;
    for (d, (a, &n)) in alone.iter().zip(lens).enumerate() {
        let mut ranges = vec![None; shape.len()];
        ranges[axis] = Some(start..start + n);
        if square.is_some() {
            ranges[last] = Some(start..start + n);
        }
        let block = sub(data, &shape, &ranges);
        assert_eq!(block.len(), a.data().len(), "{name}: document {d}");
        worst = nan_max(worst, max_diff(&block, a.data()));
        if let Some(off) = square {
            let t = shape[last];
            for outside in [0..start, start + n..t] {
                ranges[last] = Some(outside);
                assert!(
                    sub(data, &shape, &ranges).iter().all(|&x| x == off),
                    "{name}: document {d} sees outside its block"
                );
            }
        }
        start += n;
    }
    assert_eq!(start, shape[axis], "{name}: rows");
    worst
}

/// Pack `docs` into one forward (with and without capturing `hooks`) and check the logits
/// and the captured hooks equal running each document alone. Hooks named `*hook_pattern`
/// or `*hook_scores` are `[H, T, T]`, other attention hooks `[H, T, ..]`, the rest `[T, ..]`.
/// Within `tol`: rows of the same length compute bit for bit alike, but a one-token
/// document alone goes through the one-row matmul kernel, which sums in another order.
fn check_packing(m: &Model, docs: &[Vec<u32>], hooks: &[&str], tol: Tol) {
    let arch = m.info().arch.clone();
    assert!(m.info().packing, "{arch} declares packing");
    let lens: Vec<usize> = docs.iter().map(Vec::len).collect();
    let tokens: Vec<u32> = docs.concat();
    for capture in [vec![], hooks.iter().map(|h| h.to_string()).collect()] {
        let spec = ForwardSpec {
            capture: capture.clone(),
            segments: lens.clone(),
            ..Default::default()
        };
        let mut out = m.forward(&tokens, &spec).unwrap().remove(0);
        let alone: Vec<_> = docs
            .iter()
            .map(|d| {
                let spec = ForwardSpec {
                    capture: capture.clone(),
                    ..Default::default()
                };
                m.forward(d, &spec).unwrap().remove(0)
            })
            .collect();
        let mut names = vec!["logits".to_string()];
        names.extend(capture);
        for name in names {
            let p = out
                .remove(&name)
                .unwrap_or_else(|| panic!("{arch}: no {name}"));
            let a: Vec<Tensor> = alone.iter().map(|o| o[&name].clone()).collect();
            let (axis, square) = if name.ends_with("hook_pattern") {
                (1, Some(0.0))
            } else if name.ends_with("hook_scores") {
                (1, Some(f32::NEG_INFINITY))
            } else if name.contains(".attn.hook_") {
                (1, None)
            } else {
                (0, None)
            };
            let worst = compare(&name, &p, &a, &lens, axis, square);
            let bound = match tol {
                Tol::Abs(t) => t,
                Tol::Rel(t) => {
                    let largest = a.iter().flat_map(|x| x.data()).filter(|x| x.is_finite());
                    t * largest.fold(1f32, |m, x| m.max(x.abs()))
                }
            };
            assert!(
                worst <= bound,
                "{arch}: {name} of packed documents {lens:?} differs from running them alone by {worst}"
            );
        }
    }
}

const TRANSFORMERS: [&str; 6] = [
    "gpt2",
    "llama_gqa_tied",
    "llama_untied_llama3",
    "qwen2",
    "mistral_window",
    "llama_old_layout",
];

#[test]
fn packed_transformers_equal_their_documents_alone() {
    for name in TRANSFORMERS {
        let path = format!("transformer/{name}");
        let m = load_fixture(&path);
        let tokens = reference(&path).tokens;
        // Lengths longer than mistral_window's window (8), and one of a single token.
        let docs = split(&tokens, &[13, 1, 9, 17]);
        check_packing(
            &m,
            &docs,
            &[
                "blocks.0.hook_resid_post",
                "blocks.1.attn.hook_q",
                "blocks.1.attn.hook_pattern",
                "blocks.1.attn.hook_scores",
                "ln_final.hook_normalized",
            ],
            Tol::Abs(TOL),
        );
    }
}

#[test]
fn packed_llada_equals_its_documents_alone() {
    for name in ["llada", "llada_tied_bias"] {
        let path = format!("llada/{name}");
        let m = load_fixture(&path);
        assert!(!m.info().causal);
        let tokens = reference(&path).tokens;
        let docs = split(&tokens, &[9, 1, 6, 8]);
        check_packing(
            &m,
            &docs,
            &[
                "diffusion.hook_mask",
                "blocks.0.attn.hook_pattern",
                "blocks.1.hook_resid_post",
            ],
            Tol::Abs(TOL),
        );
    }
}

#[test]
fn packed_documents_are_each_bounded_by_the_context() {
    let m = load_fixture("transformer/gpt2");
    let context = m.info().context_length.unwrap();
    let tokens = reference("transformer/gpt2").tokens;
    // Three documents of 40 tokens: 120 in all, more than the context of 64, each within it.
    let docs = vec![tokens.clone(), tokens.clone(), tokens.clone()];
    assert!(3 * tokens.len() > context);
    check_packing(&m, &docs, &["blocks.0.hook_resid_post"], Tol::Abs(TOL));
    let long: Vec<u32> = tokens.iter().cycle().take(context + 1).copied().collect();
    let all = [&tokens[..], &long[..]].concat();
    let e = forward_err(&m, &all, &packed(&[tokens.len(), context + 1]));
    assert!(
        e.contains("packed document 1 has 65 tokens, more than the model's context of 64"),
        "{e}"
    );
}

#[test]
fn packed_mamba2_equals_its_documents_alone() {
    // Chunks of 7 and 8: document boundaries fall inside chunks.
    for name in ["g1_chunk7_tied", "g2_chunk8_untied"] {
        let path = format!("mamba2/{name}");
        let m = load_fixture(&path);
        let tokens = reference(&path).tokens;
        let docs = split(&tokens, &[13, 1, 9, 17]);
        check_packing(
            &m,
            &docs,
            &[
                "blocks.0.ssm.hook_x",
                "blocks.0.ssm.hook_decay",
                "blocks.1.ssm.hook_state",
                "blocks.1.ssm.hook_y",
                "blocks.1.hook_resid_post",
            ],
            Tol::Abs(TOL),
        );
    }
}

#[test]
fn packed_arllm_equals_its_documents_alone() {
    let engine = engine();
    let dir = tempfile::tempdir().unwrap();
    let text = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../scripts/data/genesis-1-11.txt"
    );
    let args =
        serde_json::json!({ "text_file": text, "order": 3, "out": dir.path().to_str().unwrap() });
    engine.action("arllm", "fit", &args).unwrap();
    let m = engine
        .load_model(dir.path().to_str().unwrap(), &LoadOptions::default())
        .unwrap();
    let tokens = m
        .encode("In the beginning God created the heaven and the earth.")
        .unwrap();
    // Order 3: documents shorter and longer than the context window, one of one token.
    let docs = split(&tokens, &[2, 1, 20, tokens.len() - 23]);
    check_packing(&m, &docs, &["hook_logits"], Tol::Abs(TOL));
    check_packed_variants(&m, &docs, 2, 1);
}

/// Position ablation and `last_only` in a packed call: ablating position `j` of document
/// `d` changes only that document, as ablating `j` in it alone does; `last_only` gives the
/// last document's last row.
fn check_packed_variants(m: &Model, docs: &[Vec<u32>], d: usize, j: usize) {
    let arch = m.info().arch.clone();
    let lens: Vec<usize> = docs.iter().map(Vec::len).collect();
    let start: usize = lens[..d].iter().sum();
    let tokens = docs.concat();
    let methods = m.info().ablation_methods.clone();
    for method in &methods {
        let variant = |pos: usize| Variant {
            ablate: vec![pos],
            method: Some(method.clone()),
            replace_with: Some(1),
        };
        let spec = ForwardSpec {
            variants: vec![Variant::default(), variant(start + j)],
            segments: lens.clone(),
            ..Default::default()
        };
        let out = logits(m, &tokens, &spec);
        let clean: Vec<Tensor> = docs
            .iter()
            .map(|doc| logits(m, doc, &ForwardSpec::default()).remove(0))
            .collect();
        let mut ablated = clean.clone();
        ablated[d] = logits(
            m,
            &docs[d],
            &ForwardSpec {
                variants: vec![variant(j)],
                ..Default::default()
            },
        )
        .remove(0);
        for (v, alone) in [clean, ablated].iter().enumerate() {
            let worst = compare("logits", &out[v], alone, &lens, 0, None);
            assert!(
                worst <= TOL,
                "{arch}: variant {v} ({method} at {j} of document {d}) of packed {lens:?} differs from alone by {worst}"
            );
        }
    }
    let spec = ForwardSpec {
        last_only: true,
        segments: lens.clone(),
        ..Default::default()
    };
    let last = logits(m, &tokens, &spec).remove(0);
    let doc = docs.last().unwrap();
    let alone = logits(m, doc, &ForwardSpec::default()).remove(0);
    let v = alone.shape()[1];
    let worst = max_diff(last.data(), &alone.data()[(doc.len() - 1) * v..]);
    assert!(worst <= TOL, "{arch}: packed last_only differs by {worst}");
}

#[test]
fn packed_calls_take_variants_and_last_only() {
    for path in [
        "transformer/gpt2",
        "transformer/llama_gqa_tied",
        "transformer/mistral_window",
        "llada/llada",
        "mamba2/g1_chunk7_tied",
    ] {
        let m = load_fixture(path);
        let tokens = reference(path).tokens;
        let docs = split(&tokens, &[7, 1, 12]);
        check_packed_variants(&m, &docs, 2, 4);
        check_packed_variants(&m, &docs, 0, 0);
    }
}

#[test]
fn packed_smollm2_equals_its_documents_alone() {
    let Some(path) = smollm2_gguf() else {
        missing_prerequisite(
            "packing smollm2",
            "SmolLM2 GGUF not found; run tools/get-smollm2.sh",
        );
        return;
    };
    let m = engine()
        .load_model(path.to_str().unwrap(), &LoadOptions::default())
        .unwrap();
    let docs: Vec<Vec<u32>> = [
        "The quick brown fox jumps over the lazy dog.",
        "Hello",
        "In the beginning God created the heaven and the earth. And the earth was without form, and void.",
        "Packing several short documents into one forward pass saves time.",
    ]
    .iter()
    .map(|t| m.encode(t).unwrap())
    .collect();
    assert_eq!(docs[1].len(), 1, "a one-token document");
    check_packing(
        &m,
        &docs,
        &["blocks.3.hook_resid_post", "blocks.5.attn.hook_pattern"],
        // The one-token document alone takes the one-row matmul kernel (another summation
        // order); with residual streams up to 2.5e3 (f32 spacing 2.4e-4 there) its logits
        // differ from the packed rows by ~5e-5, logits up to ~31. Longer documents agree
        // bit for bit.
        Tol::Rel(TOL),
    );
}

#[test]
fn metric_plugins_can_pack_through_the_hosts_forward() {
    let m = load_fixture("transformer/llama_gqa_tied");
    let tokens = reference("transformer/llama_gqa_tied").tokens;
    let lens = [5, 1, 10];
    let tokens = &tokens[..16];
    let want = logits(&m, tokens, &packed(&lens)).remove(0);
    // What `ModelRef::forward` sends for `ForwardRequest { segments, .. }`.
    let request = tokit_sdk::ForwardRequest {
        segments: lens.to_vec(),
        capture: vec!["blocks.0.hook_resid_post".into()],
        ..Default::default()
    };
    let json = serde_json::to_string(&request).unwrap();
    assert!(json.contains(r#""segments":[5,1,10]"#), "{json}");
    let out = m.forward_json(tokens, &json).unwrap().remove(0);
    let got = &out.iter().find(|(n, _)| n == "logits").unwrap().1;
    assert_eq!(got.data(), want.data());
    // Without segments the same tokens run as one document: other logits.
    let one = logits(&m, tokens, &ForwardSpec::default()).remove(0);
    assert!(max_diff(one.data(), want.data()) > 1e-3);
}
