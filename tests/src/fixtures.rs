//! The committed model fixtures (`tests/fixtures/<family>/<name>`) and their references
//! from PyTorch (`reference.json`, written by `tools/make_fixtures.py`).

use serde_json::Value;
use std::path::{Path, PathBuf};
use tokit_engine::{ForwardSpec, LoadOptions, Model, Tensor};

/// `tests/fixtures/<path>`, e.g. `fixture("transformer/gpt2")`.
pub fn fixture(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures")
        .join(path)
}

/// A fixture's `reference.json`; fields a family does not write are empty.
pub struct Reference {
    pub tokens: Vec<u32>,
    /// Row-major `[T, V]`.
    pub logits: Vec<f32>,
    /// The greedy continuation of `tokens`.
    pub greedy: Vec<u32>,
    /// Masked positions (masked-diffusion fixtures).
    pub masked: Vec<usize>,
    /// (ablated positions, logits) with the `attention` method.
    pub ablations: Vec<(Vec<usize>, Vec<f32>)>,
}

fn flat(v: &Value) -> Vec<f32> {
    v.as_array()
        .map(|rows| {
            rows.iter()
                .flat_map(|r| r.as_array().unwrap().iter())
                .map(|x| x.as_f64().unwrap() as f32)
                .collect()
        })
        .unwrap_or_default()
}

fn ints(v: &Value) -> Vec<usize> {
    v.as_array()
        .map(|a| a.iter().map(|x| x.as_u64().unwrap() as usize).collect())
        .unwrap_or_default()
}

pub fn reference(path: &str) -> Reference {
    let file = fixture(path).join("reference.json");
    let text = std::fs::read_to_string(&file)
        .unwrap_or_else(|e| panic!("reading {}: {e}", file.display()));
    let r: Value = serde_json::from_str(&text).unwrap();
    let ids = |v: &Value| ints(v).into_iter().map(|t| t as u32).collect();
    Reference {
        tokens: ids(&r["tokens"]),
        logits: flat(&r["logits"]),
        greedy: ids(&r["greedy"]),
        masked: ints(&r["masked"]),
        ablations: r["ablations"]
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|x| (ints(&x["ablate"]), flat(&x["logits"])))
                    .collect()
            })
            .unwrap_or_default(),
    }
}

/// Load a fixture with default options (panics naming it).
pub fn load_fixture(path: &str) -> Model {
    crate::engine()
        .load_model(fixture(path).to_str().unwrap(), &LoadOptions::default())
        .unwrap_or_else(|e| panic!("loading {path}: {e:#}"))
}

/// Largest absolute difference of two equally long slices; NaN when either side holds a
/// NaN, so `max_diff(..) < tol` fails then (`f32::max` would drop the NaN and let an
/// all-NaN output pass). Equal entries differ by 0, infinities of one sign included (masked
/// attention scores are −∞ on both sides).
pub fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| if x == y { 0.0 } else { (x - y).abs() })
        .fold(0.0, nan_max)
}

/// The larger of two numbers, NaN when either is NaN (unlike `f32::max`, which drops it):
/// the fold for "worst error so far".
pub fn nan_max(a: f32, b: f32) -> f32 {
    if a.is_nan() || b.is_nan() {
        f32::NAN
    } else {
        a.max(b)
    }
}

/// The logits of every variant of one forward call.
pub fn logits(m: &Model, tokens: &[u32], spec: &ForwardSpec) -> Vec<Tensor> {
    m.forward(tokens, spec)
        .unwrap()
        .into_iter()
        .map(|mut o| o.remove("logits").unwrap())
        .collect()
}

/// Genesis 1–11 (KJV), one verse a line.
pub const GENESIS: &str = include_str!("../../scripts/data/genesis-1-11.txt");

/// The llama fixture (packs documents, context 64) with a WordLevel tokenizer over the
/// 127 most frequent words of the Genesis text (others are `<unk>`).
pub fn word_llama(dir: &Path) -> PathBuf {
    let src = fixture("transformer/llama_gqa_tied");
    let model = dir.join("llama-words");
    std::fs::create_dir_all(&model).unwrap();
    std::fs::copy(
        src.join("model.safetensors"),
        model.join("model.safetensors"),
    )
    .unwrap();
    let mut config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(src.join("config.json")).unwrap()).unwrap();
    config.as_object_mut().unwrap().remove("tokenizer");
    std::fs::write(model.join("config.json"), config.to_string()).unwrap();
    let mut counts: std::collections::BTreeMap<&str, usize> = Default::default();
    for w in GENESIS.split_whitespace() {
        *counts.entry(w).or_default() += 1;
    }
    let mut words: Vec<(&str, usize)> = counts.into_iter().collect();
    words.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
    let mut vocab = serde_json::Map::new();
    vocab.insert("<unk>".into(), 0.into());
    for (i, (w, _)) in words.iter().take(127).enumerate() {
        vocab.insert(w.to_string(), (i + 1).into());
    }
    let tok = serde_json::json!({
        "version": "1.0", "truncation": null, "padding": null, "added_tokens": [],
        "normalizer": null, "pre_tokenizer": {"type": "WhitespaceSplit"},
        "post_processor": null, "decoder": null,
        "model": {"type": "WordLevel", "vocab": vocab, "unk_token": "<unk>"}
    });
    std::fs::write(model.join("tokenizer.json"), tok.to_string()).unwrap();
    model
}
