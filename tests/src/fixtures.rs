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
