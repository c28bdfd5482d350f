//! The `arllm` architecture plugin: the paper's general autoregressive LLM in its exact
//! finite-order form (Bai 2025, arXiv 2511.01202, "general definition of an autoregressive
//! LLM"; see `docs/measures.md`). The next-token law is a Boltzmann distribution
//! `p_T(v | x^t) ∝ exp(ln p(v | x_{t-k+1..t}) / T)` over an order-k token Markov model
//! (n-gram with Kneser-Ney or add-k smoothing), fitted from text.
//!
//! It is the ground truth for testing measures: its entropy rate is computable exactly
//! (`entropy_rate` action) and position ablation is exact (the ablated token leaves the
//! context, so ablating a position older than k leaves the law bit-identical).
//!
//! Packed documents (the `segments` forward option): a position's context is its own
//! document's tokens only, as if the document ran alone.
//!
//! This file is also the walkthrough for writing an architecture plugin (see README):
//! implement [`Architecture`] (`spec`, `load`, `info`, `forward`), pass activations
//! through `call.hook(..)`, `emit` each variant's logits, and declare everything with
//! `export_plugin!`.

pub mod markov;
pub mod ngram;
pub mod rng;
pub mod store;

use ngram::{context_without, NgramModel, Smoothing};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use tokit_sdk::nn::{plan_variants, HOOK_LOGITS};
use tokit_sdk::{
    bail, Ablation, ArchSpec, Architecture, Error, ForwardCall, ModelInfo, ModelSource, Result,
    Tensor,
};

/// Ablation methods: `exact` removes the token from the context; `replace` substitutes
/// `replace_with` for it.
const METHODS: [Ablation; 2] = [Ablation::Exact, Ablation::Replace];

pub struct Arllm {
    model: NgramModel,
}

impl Architecture for Arllm {
    fn spec() -> ArchSpec {
        ArchSpec {
            name: "arllm".into(),
            model_types: vec![store::MODEL_TYPE.into()],
            description: "exact order-k Markov (n-gram) autoregressive LLM with a Boltzmann head"
                .into(),
        }
    }

    fn load(source: &ModelSource) -> Result<Self> {
        let model = NgramModel::load(&source.path).map_err(Error::msg)?;
        Ok(Arllm { model })
    }

    fn info(&self) -> ModelInfo {
        let m = &self.model;
        ModelInfo {
            arch: "arllm".into(),
            vocab_size: m.vocab_size(),
            n_layers: 0,
            d_model: 0,
            context_length: None,
            hooks: vec![HOOK_LOGITS.into()],
            causal: true,
            packing: true,
            extra: json!({
                "order": m.order(),
                "smoothing": m.smoothing(),
                "temperature": m.temperature(),
                "bos_token_id": m.bos(),
                "contexts": (0..=m.order()).map(|l| m.num_contexts(l)).collect::<Vec<_>>(),
            }),
            ..Default::default()
        }
        .with_ablations(&METHODS)
    }

    fn forward(&mut self, call: &mut ForwardCall) -> Result<()> {
        let plans = plan_variants(call, &self.info())?;
        let len = call.tokens().len();
        let vocab = self.model.vocab_size();
        // Row t is the law of token t + 1 given tokens ..= t.
        let first = if call.last_only() { len - 1 } else { 0 };
        // Packed documents: a position's context is its own document's tokens only.
        let docs = call.segment_ranges();
        for (v, plan) in plans.iter().enumerate() {
            // `replace` reads other tokens; `exact` drops positions from the context.
            let removed = plan.removed();
            let mut logits = Vec::with_capacity((len - first) * vocab);
            for doc in &docs {
                let seq = &plan.seq[doc.clone()];
                let removed: Vec<usize> = removed
                    .iter()
                    .filter(|&&j| doc.contains(&j))
                    .map(|&j| j - doc.start)
                    .collect();
                for t in first.max(doc.start)..doc.end {
                    if t % 256 == 0 {
                        tokit_sdk::check_cancelled()?;
                    }
                    let context = context_without(seq, t + 1 - doc.start, &removed);
                    logits.extend(self.model.logits(&context));
                }
            }
            let logits = Tensor::from_slice(&logits, &[len - first, vocab])?;
            let logits = call.hook(v, HOOK_LOGITS, logits)?;
            call.emit(v, "logits", logits);
        }
        Ok(())
    }
}

fn str_arg<'a>(args: &'a Value, name: &str) -> Result<Option<&'a str>> {
    match args.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(v) => bail!("arllm: `{name}` must be a string, found {v}"),
    }
}

fn num_arg(args: &Value, name: &str, default: f64) -> Result<f64> {
    match args.get(name) {
        None | Some(Value::Null) => Ok(default),
        Some(v) => v
            .as_f64()
            .ok_or_else(|| Error::msg(format!("arllm: `{name}` must be a number, found {v}"))),
    }
}

/// `fit`: fit a model on text and save it as a model directory.
///
/// Arguments: `text` or `text_file`; `tokenizer` (`"bytes"`, default, or a path to a
/// `tokenizer.json`, which then needs `vocab_size`); or `tokens` (an array of id
/// sequences) with `vocab_size`; `order` (default 2); `smoothing` (`"kneser_ney"`,
/// default, or `"add_k"`); `discount` (0.75); `k` (1.0); `temperature` (1.0); `out`.
fn fit(args: &Value) -> Result<Value> {
    let out = str_arg(args, "out")?
        .ok_or_else(|| Error::msg("arllm fit: `out` (model directory) is required"))?;
    let order = num_arg(args, "order", 2.0)? as usize;
    let temperature = num_arg(args, "temperature", 1.0)?;
    let smoothing = match str_arg(args, "smoothing")?.unwrap_or("kneser_ney") {
        "kneser_ney" | "kn" => Smoothing::KneserNey {
            discount: num_arg(args, "discount", 0.75)?,
        },
        "add_k" => Smoothing::AddK {
            k: num_arg(args, "k", 1.0)?,
        },
        other => bail!("arllm fit: unknown smoothing `{other}` (kneser_ney, add_k)"),
    };
    let tokenizer = str_arg(args, "tokenizer")?.unwrap_or("bytes");
    let (seqs, vocab, kind): (Vec<Vec<u32>>, usize, ngram::Tokenizer) = if let Some(t) =
        args.get("tokens")
    {
        let seqs: Vec<Vec<u32>> = serde_json::from_value(t.clone()).map_err(|e| {
            Error::msg(format!(
                "arllm fit: `tokens` must be an array of arrays of token ids: {e}"
            ))
        })?;
        let vocab = num_arg(args, "vocab_size", 0.0)? as usize;
        if vocab == 0 {
            bail!("arllm fit: `tokens` needs `vocab_size`");
        }
        (seqs, vocab, ngram::Tokenizer::Ids)
    } else {
        let text = match (str_arg(args, "text")?, str_arg(args, "text_file")?) {
            (Some(t), None) => t.to_string(),
            (None, Some(f)) => std::fs::read_to_string(f)
                .map_err(|e| Error::msg(format!("arllm fit: {f}: {e}")))?,
            _ => bail!("arllm fit: give exactly one of `text`, `text_file` or `tokens`"),
        };
        let ids = tokit_sdk::tokenize(tokenizer, &text)?;
        if tokenizer == "bytes" {
            (vec![ids], 256, ngram::Tokenizer::Bytes)
        } else {
            let vocab = num_arg(args, "vocab_size", 0.0)? as usize;
            if vocab == 0 {
                bail!("arllm fit: a tokenizer.json needs `vocab_size` (the tokenizer's vocabulary size)");
            }
            (vec![ids], vocab, ngram::Tokenizer::TokenizerJson)
        }
    };
    let n_tokens: usize = seqs.iter().map(Vec::len).sum();
    let mut model = ngram::fit(&seqs, order, vocab, smoothing, temperature)
        .map_err(|e| Error::msg(format!("arllm fit: {e}")))?;
    model.set_tokenizer(kind).map_err(Error::msg)?;
    model.save(out).map_err(Error::msg)?;
    if kind == ngram::Tokenizer::TokenizerJson {
        let dest = Path::new(out).join("tokenizer.json");
        std::fs::copy(tokenizer, &dest)
            .map_err(|e| Error::msg(format!("arllm fit: copying {tokenizer}: {e}")))?;
    }
    Ok(json!({
        "path": PathBuf::from(out).display().to_string(),
        "order": order,
        "vocab_size": vocab,
        "n_tokens": n_tokens,
        "contexts": (0..=order).map(|l| model.num_contexts(l)).collect::<Vec<_>>(),
    }))
}

/// `entropy_rate`: the exact entropy rate (nats/token) of a saved model's Markov chain.
fn entropy_rate(args: &Value) -> Result<Value> {
    let dir = str_arg(args, "model")?
        .ok_or_else(|| Error::msg("arllm entropy_rate: `model` (directory) is required"))?;
    let model = NgramModel::load(dir).map_err(Error::msg)?;
    let h = model
        .entropy_rate()
        .map_err(|e| Error::msg(format!("arllm entropy_rate: {e}")))?;
    Ok(
        json!({ "entropy_rate": h, "unit": "nats", "bits": h / std::f64::consts::LN_2, "states": model.num_states().ok() }),
    )
}

tokit_sdk::export_plugin! {
    name: "arllm",
    version: env!("CARGO_PKG_VERSION"),
    description: "the paper's general autoregressive LLM in exact finite-order form (n-gram, Boltzmann head)",
    architectures: [Arllm],
    metrics: [],
    actions: [("fit", fit), ("entropy_rate", entropy_rate)],
}
