//! The `transformer` architecture plugin: decoder-only Transformers in Hugging Face layout.
//!
//! One file per family, each reading top-down like its equations (candle style):
//! [`gpt2`] (GPT-2), [`llama`] (Llama 2/3, SmolLM2, Qwen2, Mistral) and [`llada`] (LLaDA,
//! the masked-diffusion mask predictor: Llama blocks, bidirectional attention), each
//! registered with one line in [`FAMILIES`] (see [`family`] for what a family provides).
//! What they share: the SDK's `nn` toolkit (weights, layers, variants), [`pass`], the pass
//! they compute in (rows, hooks, attention), and [`runner`]: reuse of the clean prefix
//! across variants, stacking and the KV cache. [`rope`] reads rotary settings from either
//! config layout.
//!
//! # Hook points (TransformerLens names) and their shapes
//!
//! | hook | shape |
//! |---|---|
//! | `hook_embed` (token embedding) | `[T, d]` |
//! | `hook_pos_embed` (GPT-2 only: learned position embedding) | `[T, d]` |
//! | `blocks.{i}.hook_resid_pre` | `[T, d]` |
//! | `blocks.{i}.attn.hook_q` (after RoPE) | `[H, T, dh]` |
//! | `blocks.{i}.attn.hook_k` (after RoPE), `blocks.{i}.attn.hook_v` | `[Hkv, T, dh]` |
//! | `blocks.{i}.attn.hook_scores` (scaled, pre-softmax, masked −inf) | `[H, T, T]` |
//! | `blocks.{i}.attn.hook_pattern` (softmax; masked 0) | `[H, T, T]` |
//! | `blocks.{i}.hook_attn_out` (after the output projection) | `[T, d]` |
//! | `blocks.{i}.mlp.hook_post` (input of the down projection) | `[T, d_mlp]` |
//! | `blocks.{i}.hook_mlp_out` | `[T, d]` |
//! | `blocks.{i}.hook_resid_post` | `[T, d]` |
//! | `blocks.{i}.hook_lens_logits` (logit lens: final norm and unembedding of `hook_resid_post`; computed only when captured; capture only) | `[T, V]` |
//! | `ln_final.hook_normalized` | `[T, d]` |
//! | `hook_logits` | `[T, V]` |
//! | `diffusion.hook_mask` (LLaDA only: 1 where the token is the mask token, else 0) | `[T]` |
//!
//! With the forward option `last_only` (generation steps), hooks see only the positions the
//! call computes (those after the prefix found in the KV cache), and `ln_final` /
//! `hook_logits` the last position only.
//!
//! # Attention path
//!
//! Attention runs as one fused op, except in a layer whose `attn.hook_scores` or
//! `attn.hook_pattern` the host listens to (`ForwardCall::hook_active`): there it runs
//! unfused (scores → hook → softmax → hook → pattern @ v) so captures and interventions
//! take effect. Hooks nobody listens to cost nothing.
//!
//! # Packed documents
//!
//! Every family packs (`ModelInfo::packing`): with the forward option `segments`, each
//! document's positions start at 0 (learned or rotary) and attention stays inside each
//! document (causal within it; the whole document for LLaDA), so every row equals running
//! its document alone. Such a call runs each variant in one pass from position 0 (see
//! [`runner`]); score and pattern hooks are block-diagonal `[H, T, T]`.
//!
//! # Position ablation
//!
//! `attention` (default): the ablated positions are removed from every query's keys; all
//! positions keep their ids and the ablated rows still compute. `replace`: the token at the
//! ablated positions becomes `replace_with`. `mask_token` (LLaDA's default): the token
//! becomes the mask token, what the model was trained to read as "unknown". In a call with several variants the clean
//! pass runs once and each variant recomputes only the positions from its first ablated
//! one on (see [`runner`]).

pub mod family;
pub mod gpt2;
pub mod llada;
pub mod llama;
pub mod pass;
pub mod rope;
pub mod runner;

use family::{Decoder, Family};
use serde_json::json;
use tokit_sdk::nn::hook_names;
use tokit_sdk::{
    bail, Ablation, ArchSpec, Architecture, ForwardCall, ModelInfo, ModelSource, Result,
};

/// Every family: the `model_type` values it serves (with their `architectures` class
/// names) and its loader. A new family is a new file and one line here.
#[rustfmt::skip] // one line a family
pub const FAMILIES: &[Family] = &[
    Family { model_types: &[("gpt2", "GPT2LMHeadModel")], load: gpt2::load },
    Family { model_types: &[("llama", "LlamaForCausalLM"), ("qwen2", "Qwen2ForCausalLM"), ("mistral", "MistralForCausalLM")], load: llama::load },
    Family { model_types: &[("llada", "LLaDAModelLM")], load: llada::load },
];

/// A decoder's ablation methods, the default first.
pub const METHODS: [Ablation; 2] = [Ablation::Attention, Ablation::Replace];

/// Hooks of every block, in forward order (TransformerLens names).
pub const BLOCK_HOOKS: [&str; 11] = [
    "hook_resid_pre",
    "attn.hook_q",
    "attn.hook_k",
    "attn.hook_v",
    "attn.hook_scores",
    "attn.hook_pattern",
    "hook_attn_out",
    "mlp.hook_post",
    "hook_mlp_out",
    "hook_resid_post",
    "hook_lens_logits",
];

fn model_types() -> impl Iterator<Item = &'static (&'static str, &'static str)> {
    FAMILIES.iter().flat_map(|f| f.model_types)
}

fn model_type(src: &ModelSource) -> Result<String> {
    if let Some(t) = src.opt_config_str("model_type")? {
        return Ok(t);
    }
    let archs: Vec<String> = match src.config.get("architectures") {
        Some(serde_json::Value::Array(a)) => a
            .iter()
            .filter_map(|v| v.as_str().map(str::to_string))
            .collect(),
        _ => vec![],
    };
    for a in &archs {
        if let Some((t, _)) = model_types().find(|(_, c)| c == a) {
            return Ok(t.to_string());
        }
    }
    bail!("{}/config.json: no `model_type`, and `architectures` {archs:?} names no class this plugin knows", src.path)
}

pub struct Transformer {
    model: Box<dyn Decoder>,
    info: ModelInfo,
    cache: Option<runner::KvCache>,
}

impl Architecture for Transformer {
    fn spec() -> ArchSpec {
        ArchSpec {
            name: "transformer".into(),
            model_types: model_types()
                .flat_map(|(t, c)| [t.to_string(), c.to_string()])
                .collect(),
            description:
                "decoder-only Transformers: GPT-2, Llama 2/3 (SmolLM2), Qwen2, Mistral; LLaDA (masked diffusion, bidirectional)"
                    .into(),
        }
    }

    fn load(src: &ModelSource) -> Result<Self> {
        let mt = model_type(src)?;
        let Some(family) = FAMILIES
            .iter()
            .find(|f| f.model_types.iter().any(|(t, _)| *t == mt))
        else {
            bail!(
                "{}/config.json: model_type `{mt}` is not served by the transformer plugin (served: {})",
                src.path,
                model_types().map(|(t, _)| *t).collect::<Vec<_>>().join(", ")
            )
        };
        let model = (family.load)(src, &mt)?;
        let f = model.info();
        let mut extra = f.extra;
        extra["model_type"] = json!(mt);
        extra["attention_path"] = json!(
            "fused, except in layers whose hook_scores or hook_pattern the host listens to \
             (scores, softmax, pattern @ v)"
        );
        let info = ModelInfo {
            arch: "transformer".into(),
            vocab_size: f.vocab,
            n_layers: model.n_layers(),
            d_model: f.d_model,
            context_length: f.context_length,
            hooks: hook_names(f.embed_hooks, &BLOCK_HOOKS, model.n_layers()),
            causal: f.causal,
            packing: true,
            extra,
            ..Default::default()
        }
        .with_ablations(f.ablations);
        Ok(Transformer {
            model,
            info,
            cache: None,
        })
    }

    fn info(&self) -> ModelInfo {
        self.info.clone()
    }

    fn forward(&mut self, call: &mut ForwardCall) -> Result<()> {
        let mut cache = self.cache.take();
        let r = runner::forward(self.model.as_ref(), call, &self.info, &mut cache);
        self.cache = cache;
        r
    }
}

tokit_sdk::export_plugin! {
    name: "transformer",
    version: env!("CARGO_PKG_VERSION"),
    description: "decoder-only Transformers (GPT-2, Llama 2/3, SmolLM2, Qwen2, Mistral) and LLaDA (masked diffusion) with TransformerLens hook points",
    architectures: [Transformer],
    metrics: [],
}
