//! `nn`: what every architecture plugin builds its model from, on the safe [`Tensor`] API.
//!
//! - [`Weights`]: a checkpoint's tensors under a name prefix (`w.pp("self_attn")`, like
//!   candle's `VarBuilder`), each checked against the shape the config implies;
//! - layers: [`Linear`], [`RmsNorm`], [`LayerNorm`], [`Act`], [`split_heads`] /
//!   [`merge_heads`];
//! - hook-name tables ([`hook_names`]) and the names every model shares ([`HOOK_EMBED`], ...);
//! - variants and generation steps: [`plan_variants`] reads the call's position ablations
//!   into [`Plan`]s, [`StepCache`] holds a model's memory between generation steps.
//!
//! An architecture file then reads top-down like the model's equations: load the layers
//! by their checkpoint names, and write the forward pass with them.
//!
//! [`Tensor`]: crate::Tensor

mod hooks;
mod layers;
mod plan;
mod weights;

pub use hooks::{
    block_hook, hook_names, HOOK_EMBED, HOOK_LENS_LOGITS, HOOK_LOGITS, HOOK_RESID_POST,
    HOOK_RESID_PRE, LN_FINAL,
};
pub use layers::{merge_heads, split_heads, Act, LayerNorm, Linear, RmsNorm};
pub use plan::{is_step, plan_variants, Plan, StepCache};
pub use weights::Weights;
