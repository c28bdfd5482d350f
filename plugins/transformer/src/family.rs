//! What a Transformer family provides: a loader and a [`Decoder`], registered with one
//! line in [`crate::FAMILIES`].
//!
//! A family file reads the config, loads its layers through [`tokit_sdk::nn::Weights`] and
//! writes its forward pass as `embed`, `block(i)`, `final_norm` and `unembed` over a
//! [`Pass`] (which decides what the hooks see and where keys and values of earlier positions
//! come from; see [`crate::pass`]). The runner ([`crate::runner`]) does the rest: variants,
//! the shared clean prefix, stacking, the KV cache, the logit lens and the hooks
//! `ln_final.hook_normalized` and `hook_logits`.
//!
//! # Example: a whole family
//!
//! An MLP-only language model (`x += W_down silu(W_up RMSNorm(x))` per block, tied head),
//! as a file `mlp_lm.rs` would hold it; registering it is the line
//! `Family { model_types: &[("mlp_lm", "MlpLmForCausalLM")], load: mlp_lm::load },`
//! in [`crate::FAMILIES`].
//!
//! ```no_run
//! use serde_json::json;
//! use tokit_plugin_transformer::family::{Decoder, Family, FamilyInfo};
//! use tokit_plugin_transformer::pass::Pass;
//! use tokit_sdk::nn::{block_hook, Act, Linear, RmsNorm, Weights, HOOK_EMBED};
//! use tokit_sdk::{Ablation, ModelSource, Result, Tensor};
//!
//! struct Block {
//!     norm: RmsNorm,
//!     up: Linear,
//!     down: Linear,
//! }
//!
//! pub struct MlpLm {
//!     vocab: usize,
//!     d: usize,
//!     embed: Tensor,
//!     blocks: Vec<Block>,
//!     norm: RmsNorm,
//!     head: Linear,
//! }
//!
//! pub fn load(src: &ModelSource, _model_type: &str) -> Result<Box<dyn Decoder>> {
//!     let (d, m, v) = (
//!         src.config_dim("hidden_size")?,
//!         src.config_dim("intermediate_size")?,
//!         src.config_dim("vocab_size")?,
//!     );
//!     let eps = src.opt_config_positive("rms_norm_eps")?.unwrap_or(1e-6);
//!     let w = Weights::open(src, &["model.", ""], "embed_tokens.weight", format!("hidden_size {d}"))?;
//!     let blocks = (0..src.config_layers("num_hidden_layers")?)
//!         .map(|i| {
//!             let w = w.pp("layers").pp(i);
//!             Ok(Block {
//!                 norm: RmsNorm::load(&w.pp("norm"), d, eps)?,
//!                 up: Linear::load(&w.pp("up_proj"), d, m, false)?,
//!                 down: Linear::load(&w.pp("down_proj"), m, d, false)?,
//!             })
//!         })
//!         .collect::<Result<Vec<_>>>()?;
//!     let embed = w.get("embed_tokens.weight", &[v, d])?;
//!     Ok(Box::new(MlpLm {
//!         vocab: v,
//!         d,
//!         head: Linear::new(embed.clone(), None),
//!         embed,
//!         blocks,
//!         norm: RmsNorm::load(&w.pp("norm"), d, eps)?,
//!     }))
//! }
//!
//! impl Decoder for MlpLm {
//!     fn info(&self) -> FamilyInfo {
//!         FamilyInfo {
//!             embed_hooks: &[HOOK_EMBED],
//!             // No attention: only the token itself can be ablated.
//!             ablations: &[Ablation::Replace],
//!             causal: true,
//!             vocab: self.vocab,
//!             d_model: self.d,
//!             context_length: None,
//!             extra: json!({"family": "mlp_lm"}),
//!         }
//!     }
//!     fn n_layers(&self) -> usize {
//!         self.blocks.len()
//!     }
//!     fn embed(&self, pass: &mut Pass, tokens: &[u32]) -> Result<Tensor> {
//!         pass.rows(HOOK_EMBED, Tensor::embedding(&self.embed, tokens)?)
//!     }
//!     fn block(&self, i: usize, x: Tensor, pass: &mut Pass) -> Result<Tensor> {
//!         let b = &self.blocks[i];
//!         let x = pass.rows(&block_hook(i, "hook_resid_pre"), x)?;
//!         let post = pass.rows(
//!             &block_hook(i, "mlp.hook_post"),
//!             Act::Silu.forward(&b.up.forward(&b.norm.forward(&x)?)?)?,
//!         )?;
//!         let mlp_out = pass.rows(&block_hook(i, "hook_mlp_out"), b.down.forward(&post)?)?;
//!         pass.rows(&block_hook(i, "hook_resid_post"), x.add(&mlp_out)?)
//!     }
//!     fn final_norm(&self, x: &Tensor) -> Result<Tensor> {
//!         self.norm.forward(x)
//!     }
//!     fn unembed(&self, h: &Tensor) -> Result<Tensor> {
//!         self.head.forward(h)
//!     }
//! }
//!
//! // The line in FAMILIES:
//! const _: Family = Family { model_types: &[("mlp_lm", "MlpLmForCausalLM")], load };
//! ```

use crate::pass::Pass;
use serde_json::Value;
use tokit_sdk::{bail, Ablation, ModelSource, Result, Tensor};

/// A family's forward pass, written over a [`Pass`].
pub trait Decoder: Send {
    /// Hooks, ablation methods, sizes and the facts the host and metrics read.
    fn info(&self) -> FamilyInfo;
    fn n_layers(&self) -> usize;
    /// Embeddings `[n, d]` of `tokens`, which sit at positions `pass.positions()`.
    fn embed(&self, pass: &mut Pass, tokens: &[u32]) -> Result<Tensor>;
    /// Block `i`: `[n, d]` residual stream in, `[n, d]` out.
    fn block(&self, i: usize, x: Tensor, pass: &mut Pass) -> Result<Tensor>;
    /// The final norm `[n, d]` → `[n, d]` (the runner hooks `ln_final.hook_normalized`).
    fn final_norm(&self, x: &Tensor) -> Result<Tensor>;
    /// The unembedding `[n, d]` → logits `[n, V]`.
    fn unembed(&self, h: &Tensor) -> Result<Tensor>;
}

/// What a loaded family tells the host besides its layer count.
pub struct FamilyInfo {
    /// Hook points before the first block, in forward order (`hook_embed`, ...).
    pub embed_hooks: &'static [&'static str],
    /// Position-ablation methods, the default first.
    pub ablations: &'static [Ablation],
    /// Whether position t's logits depend only on tokens ≤ t.
    pub causal: bool,
    /// Rows of the logits.
    pub vocab: usize,
    pub d_model: usize,
    pub context_length: Option<usize>,
    /// Family facts (`info().extra`): heads, rope, windows, ...
    pub extra: Value,
}

/// Builds a family's model; gets the config's `model_type` (one of the family's).
pub type Loader = fn(&ModelSource, &str) -> Result<Box<dyn Decoder>>;

/// One entry of [`crate::FAMILIES`].
pub struct Family {
    /// `model_type` values served, each with the `architectures` class name that maps to it.
    pub model_types: &'static [(&'static str, &'static str)],
    pub load: Loader,
}

/// Head size `width / heads`; `heads` must divide `width` when the config does not give it.
pub fn head_dim(
    src: &ModelSource,
    width: usize,
    width_field: &str,
    heads: usize,
    heads_field: &str,
) -> Result<usize> {
    if heads == 0 || width % heads != 0 {
        bail!(
            "{}/config.json: `{heads_field}` = {heads} does not divide `{width_field}` = {width} \
             (each attention head needs {width_field} / {heads_field} dimensions)",
            src.path
        );
    }
    Ok(width / heads)
}
