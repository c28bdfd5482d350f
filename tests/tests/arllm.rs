//! The arllm plugin through the engine: fit, load, exact ablation, closed forms.

use tokit_engine::{AnalyzeInput, ForwardSpec, GenerateOptions, LoadOptions};
use tokit_sdk::Variant;
use tokit_tests::*;

/// The 2-state chain p(1|0) = 1/4, p(0|1) = 1/2 as an exact cycle (0 0 0 0 1 1)^n 0.
fn chain(n: usize) -> Vec<u32> {
    let mut s: Vec<u32> = (0..n).flat_map(|_| [0, 0, 0, 0, 1, 1]).collect();
    s.push(0);
    s
}

/// An arllm model of the given order fitted on the committed Genesis text.
fn fit_genesis(
    engine: &tokit_engine::Engine,
    dir: &std::path::Path,
    order: usize,
) -> tokit_engine::Model {
    let text = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../scripts/data/genesis-1-11.txt"
    );
    let args =
        serde_json::json!({ "text_file": text, "order": order, "out": dir.to_str().unwrap() });
    engine.action("arllm", "fit", &args).unwrap();
    engine
        .load_model(dir.to_str().unwrap(), &LoadOptions::default())
        .unwrap()
}

fn fit_chain(engine: &tokit_engine::Engine, dir: &std::path::Path) -> serde_json::Value {
    engine
        .action(
            "arllm",
            "fit",
            &serde_json::json!({
                "tokens": [chain(50)], "vocab_size": 2, "order": 1, "smoothing": "add_k", "k": 0.0,
                "out": dir.to_str().unwrap(),
            }),
        )
        .unwrap()
}

#[test]
fn two_state_chain_surprisals_and_entropy_rate_match_closed_forms() {
    let engine = engine();
    let dir = tempfile::tempdir().unwrap();
    fit_chain(&engine, dir.path());
    let m = engine
        .load_model(dir.path().to_str().unwrap(), &LoadOptions::default())
        .unwrap();
    assert_eq!(m.info().vocab_size, 2);
    let text = [0u32, 0, 1, 1, 0, 1, 0, 0];
    let r = engine
        .analyze(
            "surprisal",
            &AnalyzeInput {
                model: Some(m.clone()),
                tokens: Some(text.to_vec()),
                ..Default::default()
            },
        )
        .unwrap();
    let p = |a: u32, b: u32| match (a, b) {
        (0, 1) => 0.25f64,
        (0, 0) => 0.75,
        (1, 0) => 0.5,
        _ => 0.5,
    };
    let s = r.tensors["surprisal"].data();
    assert!(s[0].is_nan(), "the first token has no prediction");
    for t in 1..text.len() {
        let want = -p(text[t - 1], text[t]).ln();
        // f32 logits cross the ABI: 1e-6 here; the plugin's own f64 path is tested to 1e-9.
        assert!(
            (s[t] as f64 - want).abs() < 1e-6,
            "t={t}: {} vs {want}",
            s[t]
        );
    }
    let h = engine
        .action(
            "arllm",
            "entropy_rate",
            &serde_json::json!({ "model": dir.path().to_str().unwrap() }),
        )
        .unwrap();
    let hb = |q: f64| -(q * q.ln() + (1.0 - q) * (1.0 - q).ln());
    let want = 2.0 / 3.0 * hb(0.25) + 1.0 / 3.0 * hb(0.5);
    assert!((h["entropy_rate"].as_f64().unwrap() - want).abs() < 1e-9);
}

#[test]
fn ablating_a_position_older_than_the_order_leaves_the_law_bit_identical() {
    let engine = engine();
    let dir = tempfile::tempdir().unwrap();
    let m = fit_genesis(&engine, dir.path(), 3);
    let tokens = m.encode("And God called the light Day").unwrap();
    let j = 5;
    let variants = vec![
        Variant::default(),
        Variant {
            ablate: vec![j],
            ..Default::default()
        },
    ];
    let out = m
        .forward(
            &tokens,
            &ForwardSpec {
                variants,
                ..Default::default()
            },
        )
        .unwrap();
    let (clean, abl) = (out[0]["logits"].data(), out[1]["logits"].data());
    let v = m.info().vocab_size;
    for t in 0..tokens.len() {
        // Row t predicts token t + 1 from tokens ..= t; order 3 sees t-2..=t.
        let same = clean[t * v..(t + 1) * v] == abl[t * v..(t + 1) * v];
        let in_window = j <= t && t < j + 3;
        assert_eq!(
            same, !in_window,
            "row {t}: identical = {same}, ablated position in window = {in_window}"
        );
    }
    // Batched variants equal a separate run of each variant.
    let alone = m
        .forward(
            &tokens,
            &ForwardSpec {
                variants: vec![Variant {
                    ablate: vec![j],
                    ..Default::default()
                }],
                ..Default::default()
            },
        )
        .unwrap();
    assert_eq!(alone[0]["logits"].data(), abl);
    // An unsupported method is a clear error.
    let bad = vec![Variant {
        ablate: vec![1],
        method: Some("zero_input".into()),
        ..Default::default()
    }];
    let err = format!(
        "{:#}",
        m.forward(
            &tokens,
            &ForwardSpec {
                variants: bad,
                ..Default::default()
            }
        )
        .unwrap_err()
    );
    assert!(err.contains("zero_input") && err.contains("exact"), "{err}");
}

#[test]
fn generation_is_reproducible_and_respects_the_seed() {
    let engine = engine();
    let dir = tempfile::tempdir().unwrap();
    engine
        .action("arllm", "fit", &serde_json::json!({ "text": "abracadabra ".repeat(20), "order": 2, "out": dir.path().to_str().unwrap() }))
        .unwrap();
    let m = engine
        .load_model(dir.path().to_str().unwrap(), &LoadOptions::default())
        .unwrap();
    let prompt = m.encode("abra").unwrap();
    let opts = GenerateOptions {
        max_tokens: 40,
        seed: 11,
        ..Default::default()
    };
    let a = tokit_engine::generate::generate(&m, &prompt, &opts).unwrap();
    let b = tokit_engine::generate::generate(&m, &prompt, &opts).unwrap();
    assert_eq!(a, b);
    assert_eq!(a.len(), 40);
    // Greedy: after "abrac" every order-2 context has one most likely successor.
    let greedy = GenerateOptions {
        max_tokens: 6,
        temperature: 0.0,
        ..Default::default()
    };
    let g = tokit_engine::generate::generate(&m, &m.encode("abrac").unwrap(), &greedy).unwrap();
    assert_eq!(m.decode(&g).unwrap(), "adabra");
}

#[test]
fn granger_map_of_an_order_n_model_is_zero_exactly_beyond_the_order() {
    let engine = engine();
    let dir = tempfile::tempdir().unwrap();
    let order = 3;
    let m = fit_genesis(&engine, dir.path(), order);
    let r = engine
        .analyze(
            "granger_map",
            &AnalyzeInput {
                model: Some(m),
                text: Some("And God made the firmament".into()),
                ..Default::default()
            },
        )
        .unwrap();
    assert_eq!(r.provenance.ablation.as_deref(), Some("exact"));
    let g = &r.tensors["granger_kl"];
    let t_len = g.shape()[0];
    for t in 1..t_len {
        for j in 0..t {
            let x = g.data()[t * t_len + j];
            // Token t is predicted from tokens t-order..t-1.
            if j + order < t {
                assert_eq!(x, 0.0, "G[{t}, {j}] must be exactly 0 beyond the order");
                assert_eq!(r.tensors["granger_logprob_drop"].data()[t * t_len + j], 0.0);
            } else {
                assert!(
                    x > 0.0,
                    "G[{t}, {j}] = {x} must be positive inside the window"
                );
            }
        }
        assert!(g.data()[t * t_len + t].is_nan());
    }
}

#[test]
fn information_flow_is_a_submartingale_whose_mean_matches_its_predictable_part() {
    let engine = engine();
    let dir = tempfile::tempdir().unwrap();
    let m = fit_genesis(&engine, dir.path(), 2);
    let alt: Vec<Vec<u32>> = vec![m.encode("the ").unwrap(), m.encode("LORD").unwrap()];
    let mut params = serde_json::Map::new();
    params.insert("prompt_tokens".into(), serde_json::json!(4));
    params.insert("alternatives".into(), serde_json::json!(alt));
    params.insert("samples".into(), serde_json::json!(300));
    params.insert("response_tokens".into(), serde_json::json!(4));
    params.insert("seed".into(), serde_json::json!(5));
    let input = AnalyzeInput {
        model: Some(m.clone()),
        text: Some("And ".into()),
        params,
        ..Default::default()
    };
    let r = engine.analyze("information_flow", &input).unwrap();
    let (lam, se) = (r.value.unwrap(), r.scalars["se"]);
    let a = r.scalars["predictable_A_mean"];
    // E M_n = 0: the realised flow and its predictable part agree within Monte Carlo error.
    assert!(
        (lam - a).abs() < 4.0 * se.max(1e-6),
        "Λ {lam} ± {se} vs A {a}"
    );
    assert!(a > 0.0);
    assert_eq!(r.scalars["submartingale_violations"], 0.0);
    assert!(r.tensors["mean_step_kl"].data().iter().all(|&k| k >= 0.0));

    // One given response: Λ = A + M at every step; null-context reference by exact ablation.
    let mut params = serde_json::Map::new();
    params.insert("prompt_tokens".into(), serde_json::json!(4));
    let input = AnalyzeInput {
        model: Some(m),
        text: Some("And God said".into()),
        params,
        ..Default::default()
    };
    let r = engine.analyze("information_flow", &input).unwrap();
    assert_eq!(r.provenance.ablation.as_deref(), Some("exact"));
    let (l, a, mm) = (
        r.tensors["lambda"].data(),
        r.tensors["A"].data(),
        r.tensors["M"].data(),
    );
    for i in 0..l.len() {
        assert!((l[i] - a[i] - mm[i]).abs() < 1e-5);
    }
    assert!(r.tensors["step_kl"].data().iter().all(|&k| k >= 0.0));
}
