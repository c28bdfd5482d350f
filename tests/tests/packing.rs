//! Packed documents (the `segments` forward option, `docs/architecture.md`): the engine's
//! validation of the lengths, and for every architecture that packs, that a packed forward
//! equals running each document alone (logits and a captured hook).

use std::ops::Range;
use tokit_engine::plugin::host::ForwardTarget;
use tokit_engine::{ForwardSpec, LoadOptions, Model, Tensor};
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
/// or `*hook_scores` are `[H, T, T]`; the others hold positions on axis `axis_of(hook)`.
fn check_packing(m: &Model, docs: &[Vec<u32>], hooks: &[&str]) {
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
            assert!(
                worst <= TOL,
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
    check_packing(&m, &docs, &["blocks.0.hook_resid_post"]);
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
        );
    }
}
