//! The `transformer` architecture plugin: decoder-only Transformers in Hugging Face layout.
//!
//! One file per family, each reading top-down like its equations (candle style):
//! [`gpt2`] (GPT-2), [`llama`] (Llama 2/3, SmolLM2, Qwen2, Mistral) and [`llada`] (LLaDA,
//! the masked-diffusion mask predictor: Llama blocks, bidirectional attention). What they share:
//! [`cx`], the pass they compute against (rows, hooks, attention), and [`runner`]: variants
//! (position ablation), reuse of the clean prefix across variants and the KV cache. [`rope`]
//! reads rotary settings from either config layout; [`weights`] checks every tensor's shape
//! against the config.
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
//! # Position ablation
//!
//! `attention` (default): the ablated positions are removed from every query's keys; all
//! positions keep their ids and the ablated rows still compute. `replace`: the token at the
//! ablated positions becomes `replace_with`. `mask_token` (LLaDA's default): the token
//! becomes the mask token, what the model was trained to read as "unknown". In a call with several variants the clean
//! pass runs once and each variant recomputes only the positions from its first ablated
//! one on (see [`runner`]).

pub mod cx;
pub mod gpt2;
pub mod llada;
pub mod llama;
pub mod rope;
pub mod runner;
pub mod weights;

use serde_json::json;
use tokit_sdk::{
    bail, ArchSpec, Architecture, ForwardCall, ModelInfo, ModelSource, Result, Tensor,
};

/// Ablation methods, the default first.
const METHODS: [&str; 2] = ["attention", "replace"];
/// A mask predictor's: masking a position is its natural ablation.
const LLADA_METHODS: [&str; 3] = ["mask_token", "attention", "replace"];

/// An MLP activation, named as in transformers' `ACT2FN`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Act {
    Silu,
    Gelu,
    GeluTanh,
    Relu,
}

impl Act {
    pub fn from_config(src: &ModelSource, field: &str, default: &str) -> Result<Act> {
        let name = src
            .opt_config_str(field)?
            .unwrap_or_else(|| default.to_string());
        Ok(match name.as_str() {
            "silu" | "swish" => Act::Silu,
            "gelu" => Act::Gelu,
            "gelu_new" | "gelu_pytorch_tanh" | "gelu_fast" => Act::GeluTanh,
            "relu" => Act::Relu,
            other => bail!(
                "{}/config.json: `{field}` = \"{other}\" is not supported \
                 (silu, swish, gelu, gelu_new, gelu_pytorch_tanh, gelu_fast, relu)",
                src.path
            ),
        })
    }

    pub fn apply(self, x: &Tensor) -> Result<Tensor> {
        match self {
            Act::Silu => x.silu(),
            Act::Gelu => x.gelu(),
            Act::GeluTanh => x.gelu_tanh(),
            Act::Relu => x.unary(tokit_sdk::ops::RELU),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Act::Silu => "silu",
            Act::Gelu => "gelu",
            Act::GeluTanh => "gelu_tanh",
            Act::Relu => "relu",
        }
    }
}

enum Family {
    Gpt2(gpt2::Gpt2),
    Llama(llama::Llama),
    Llada(llada::Llada),
}

pub struct Transformer {
    family: Family,
    info: ModelInfo,
    cache: Option<runner::KvCache>,
}

impl Transformer {
    fn decoder(&self) -> &dyn cx::Decoder {
        match &self.family {
            Family::Gpt2(m) => m,
            Family::Llama(m) => m,
            Family::Llada(m) => m,
        }
    }
}

/// Hook point names in forward order.
pub fn hook_names(n_layers: usize, pos_embed: bool) -> Vec<String> {
    let mut hooks = vec!["hook_embed".to_string()];
    if pos_embed {
        hooks.push("hook_pos_embed".into());
    }
    for i in 0..n_layers {
        for h in [
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
        ] {
            hooks.push(format!("blocks.{i}.{h}"));
        }
    }
    hooks.push("ln_final.hook_normalized".into());
    hooks.push("hook_logits".into());
    hooks
}

/// `model_type` values served, and the `architectures` class names that map to them.
const MODEL_TYPES: [(&str, &str); 5] = [
    ("gpt2", "GPT2LMHeadModel"),
    ("llama", "LlamaForCausalLM"),
    ("qwen2", "Qwen2ForCausalLM"),
    ("mistral", "MistralForCausalLM"),
    ("llada", "LLaDAModelLM"),
];

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
        if let Some((t, _)) = MODEL_TYPES.iter().find(|(_, c)| c == a) {
            return Ok(t.to_string());
        }
    }
    bail!("{}/config.json: no `model_type`, and `architectures` {archs:?} names no class this plugin knows", src.path)
}

impl Architecture for Transformer {
    fn spec() -> ArchSpec {
        ArchSpec {
            name: "transformer".into(),
            model_types: MODEL_TYPES
                .iter()
                .flat_map(|(t, c)| [t.to_string(), c.to_string()])
                .collect(),
            description:
                "decoder-only Transformers: GPT-2, Llama 2/3 (SmolLM2), Qwen2, Mistral; LLaDA (masked diffusion, bidirectional)"
                    .into(),
        }
    }

    fn load(src: &ModelSource) -> Result<Self> {
        let mt = model_type(src)?;
        let (family, n_layers, d, vocab, ctx, extra) = match mt.as_str() {
            "gpt2" => {
                let m = gpt2::Gpt2::load(src)?;
                let c = &m.cfg;
                let (l, d, v, n) = (c.layers, c.d, c.vocab, c.n_positions);
                let extra = m.describe();
                (Family::Gpt2(m), l, d, v, Some(n), extra)
            }
            "llama" | "qwen2" | "mistral" => {
                let flavor = match mt.as_str() {
                    "llama" => llama::Flavor::Llama,
                    "qwen2" => llama::Flavor::Qwen2,
                    _ => llama::Flavor::Mistral,
                };
                let m = llama::Llama::load(src, flavor)?;
                let c = &m.cfg;
                let (l, d, v, n) = (c.layers, c.d, c.vocab, c.max_positions);
                let extra = m.describe();
                (Family::Llama(m), l, d, v, n, extra)
            }
            "llada" => {
                let m = llada::Llada::load(src)?;
                let c = &m.cfg;
                let (l, d, v, n) = (c.layers, c.d, c.vocab, c.max_positions);
                let extra = m.describe();
                (Family::Llada(m), l, d, v, n, extra)
            }
            other => bail!(
                "{}/config.json: model_type `{other}` is not served by the transformer plugin (served: {})",
                src.path,
                MODEL_TYPES.iter().map(|(t, _)| *t).collect::<Vec<_>>().join(", ")
            ),
        };
        let mut extra = extra;
        extra["model_type"] = json!(mt);
        extra["attention_path"] = json!(
            "fused, except in layers whose hook_scores or hook_pattern the host listens to \
             (scores, softmax, pattern @ v)"
        );
        let llada = matches!(family, Family::Llada(_));
        let mut hooks = hook_names(n_layers, matches!(family, Family::Gpt2(_)));
        if llada {
            hooks.insert(0, "diffusion.hook_mask".into());
        }
        let methods: &[&str] = if llada { &LLADA_METHODS } else { &METHODS };
        let info = ModelInfo {
            arch: "transformer".into(),
            vocab_size: vocab,
            n_layers,
            d_model: d,
            context_length: ctx,
            hooks,
            ablation_methods: methods.iter().map(|s| s.to_string()).collect(),
            default_ablation: methods[0].into(),
            causal: !llada,
            extra,
        };
        Ok(Transformer {
            family,
            info,
            cache: None,
        })
    }

    fn info(&self) -> ModelInfo {
        self.info.clone()
    }

    fn forward(&mut self, call: &mut ForwardCall) -> Result<()> {
        let mut cache = self.cache.take();
        let r = runner::forward(self.decoder(), call, &self.info, &mut cache);
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
