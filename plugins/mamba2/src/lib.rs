//! The `mamba2` architecture plugin: Hugging Face `Mamba2ForCausalLM` checkpoints, with the
//! recurrent state as a first-class object (hooks, caches, the `ssm_memory` metric).
//!
//! One block, top-down (per layer, `n` rows, `I = num_heads · head_dim`):
//!
//! ```text
//! u        = rms_norm(resid)                                       (norm)
//! z | xBC | dt_raw = u W_inᵀ                                        (in_proj)
//! x | B | C = silu(causal_depthwise_conv(xBC))                     (conv1d, kernel K)
//! Δ_t      = clamp(softplus(dt_raw + dt_bias), time_step_limit)
//! a_t      = exp(Δ_t A),  A = −exp(A_log)                           (decay, per head)
//! S_t      = a_t S_{t−1} + (Δ_t x_t) B_tᵀ,  y_t = S_t C_t + D x_t   (SSD, state [P, N])
//! out      = out_proj(gated_rms_norm(y, z))                          (norm groups = n_groups)
//! resid   += out
//! ```
//!
//! then `norm_f` and the (tied or untied) `lm_head`. The scan runs chunked (`chunk_size`,
//! any sequence length) through the host op `ssd_scan`; states come from `ssm_states`.
//!
//! Config quirks: `time_step_limit` may hold `{"__float__": "Infinity"}` (the host reads it
//! as infinity); `time_step_floor`/`time_step_min`/`time_step_max` only shape
//! initialisation and are ignored. Like transformers, the gated norm always gates before
//! normalising and always runs: the `norm_before_gate` and `rms_norm` fields that older
//! transformers wrote into configs (`true` by default, e.g. Mamba-Codestral) were never
//! read by its Mamba2, whose checkpoints were trained gate-first; `info().extra` records
//! them as ignored.
//!
//! # Hook points
//!
//! | hook | shape |
//! |---|---|
//! | `hook_embed` | `[T, d]` |
//! | `blocks.{i}.hook_resid_pre`, `blocks.{i}.hook_resid_post` | `[T, d]` |
//! | `blocks.{i}.ssm.hook_x` (conv output, before Δ) | `[T, H, P]` |
//! | `blocks.{i}.ssm.hook_B`, `blocks.{i}.ssm.hook_C` | `[T, G, N]` |
//! | `blocks.{i}.ssm.hook_dt` (Δ_t), `blocks.{i}.ssm.hook_decay` (a_t) | `[T, H]` |
//! | `blocks.{i}.ssm.hook_state` (S_t after each position; computed only when listened to) | `[T, H, P, N]` |
//! | `blocks.{i}.ssm.hook_y` (scan output with the D skip, before the gated norm) | `[T, H, P]` |
//! | `blocks.{i}.hook_lens_logits` (logit lens: `norm_f` and the head on `hook_resid_post`; only when captured) | `[T, V]` |
//! | `ln_final.hook_normalized` | `[T, d]` |
//! | `hook_logits` | `[T, V]` |
//!
//! Interventions take effect where they happen; one at `hook_state` changes the readout
//! `y_t = S_t C_t + D x_t` at each position (the recurrence has already run).
//!
//! # Position ablation
//!
//! `zero_input` (default): in every layer the ablated token's contribution is removed, its
//! row of the convolution input and its write `Δ_j x_j B_jᵀ` into the state are zero; the
//! state still decays by its `a_j`. `replace`: the token becomes `replace_with`. Positions
//! before the first ablated one are unchanged, bit for bit.
//!
//! # Packed documents
//!
//! With the forward option `segments` each document starts from an empty memory: the
//! convolution runs per document, and the decay `a_t` the scans use is 0 at each
//! document's first row, so the state before it is forgotten exactly inside one chunked
//! scan (`hook_decay` shows the model's own `a_t`). Every variant then runs in full.
//!
//! # Reuse
//!
//! A layer's memory after position `t` is its last `K − 1` convolution inputs and its SSM
//! state ([`LayerState`]). Batched variants that nobody hooks run the clean sequence once,
//! keep each layer's state just before every variant's first ablated position, and compute
//! each variant from there on (memory: every layer's state at every distinct cut, held
//! through the pass). Generation steps (`last_only`) keep the state after the last
//! token and compute only the new tokens when the call extends the previous one; hooks then
//! see the new positions only. Calls whose hooks are listened to run each variant in full.

mod config;
mod forward;
pub mod memory;
mod model;
mod pass;

use config::Config;
use model::Layer;
pub use model::LayerState;
use serde_json::json;
use tokit_sdk::nn::{hook_names, Linear, RmsNorm, Weights, HOOK_EMBED};
use tokit_sdk::{
    Ablation, ArchSpec, Architecture, ForwardCall, ModelInfo, ModelSource, Result, Tensor,
};

/// Ablation methods, the default first.
const METHODS: [Ablation; 2] = [Ablation::ZeroInput, Ablation::Replace];

/// Hooks of every block, in forward order.
const BLOCK_HOOKS: [&str; 10] = [
    "hook_resid_pre",
    "ssm.hook_x",
    "ssm.hook_B",
    "ssm.hook_C",
    "ssm.hook_dt",
    "ssm.hook_decay",
    "ssm.hook_state",
    "ssm.hook_y",
    "hook_resid_post",
    "hook_lens_logits",
];

pub struct Mamba2 {
    cfg: Config,
    embed: Tensor,
    layers: Vec<Layer>,
    norm_f: RmsNorm,
    /// `lm_head`, or the embedding when tied.
    head: Linear,
    /// Group of each head, for reading `C` per head.
    head_group: Vec<usize>,
    info: ModelInfo,
    cache: Option<forward::Cache>,
}

impl Architecture for Mamba2 {
    fn spec() -> ArchSpec {
        ArchSpec {
            name: "mamba2".into(),
            model_types: vec!["mamba2".into(), "Mamba2ForCausalLM".into()],
            description: "Mamba2 state-space models (SSD), Hugging Face Mamba2ForCausalLM".into(),
        }
    }

    fn load(src: &ModelSource) -> Result<Self> {
        let c = Config::read(src)?;
        let w = Weights::new(src, c.describe())?;
        let bb = w.pp("backbone");
        let embed_name = bb
            .first_stored(&["embeddings.weight", "embedding.weight"])
            .unwrap_or("embeddings.weight");
        let embed = bb.get(embed_name, &[c.vocab, c.d])?;
        let use_bias = src.opt_config_bool("use_bias")?.unwrap_or(false);
        let conv_bias = src.opt_config_bool("use_conv_bias")?.unwrap_or(true);
        let layers = (0..c.layers)
            .map(|i| Layer::load(&bb.pp("layers").pp(i), &c, use_bias, conv_bias))
            .collect::<Result<Vec<_>>>()?;
        let norm_f = RmsNorm::load(&bb.pp("norm_f"), c.d, c.eps)?;
        let tied = src.opt_config_bool("tie_word_embeddings")?.unwrap_or(false);
        let head = Linear::tied_or_load(tied, &embed, &w.pp("lm_head"), c.d, c.vocab, false)?;
        let ignored: Vec<String> = ["norm_before_gate", "rms_norm"]
            .iter()
            .filter(|f| src.config.get(**f).is_some())
            .map(|f| format!("{f} = {}", src.config[*f]))
            .collect();
        let extra = json!({
            "model_type": "mamba2",
            "n_heads": c.heads,
            "head_dim": c.head_dim,
            "state_size": c.state,
            "n_groups": c.groups,
            "conv_kernel": c.kernel,
            "chunk_size": c.chunk,
            "d_inner": c.inner,
            "time_step_limit": [c.dt_limit.0, if c.dt_limit.1.is_finite() { json!(c.dt_limit.1) } else { json!("Infinity") }],
            "tied_head": tied,
            "gated_norm": "gate before norm, per group (as transformers)",
            "ignored_config": ignored,
        });
        let info = ModelInfo {
            arch: "mamba2".into(),
            vocab_size: c.vocab,
            n_layers: c.layers,
            d_model: c.d,
            context_length: None,
            hooks: hook_names(&[HOOK_EMBED], &BLOCK_HOOKS, c.layers),
            causal: true,
            packing: true,
            extra,
            ..Default::default()
        }
        .with_ablations(&METHODS);
        let head_group = (0..c.heads).map(|h| h / (c.heads / c.groups)).collect();
        Ok(Mamba2 {
            cfg: c,
            embed,
            layers,
            norm_f,
            head,
            head_group,
            info,
            cache: None,
        })
    }

    fn info(&self) -> ModelInfo {
        self.info.clone()
    }

    fn forward(&mut self, call: &mut ForwardCall) -> Result<()> {
        self.forward_call(call)
    }
}

tokit_sdk::export_plugin! {
    name: "mamba2",
    version: env!("CARGO_PKG_VERSION"),
    description: "Mamba2 state-space models (Hugging Face Mamba2ForCausalLM) with state hooks, zero_input ablation and the ssm_memory metric (M12)",
    architectures: [Mamba2],
    metrics: [memory::SsmMemory],
}
