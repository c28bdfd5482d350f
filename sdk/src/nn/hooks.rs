//! Hook-point names: the ones every architecture shares (TransformerLens spelling) and
//! the table of a model's hooks in forward order.

/// Token embedding `[T, d]`.
pub const HOOK_EMBED: &str = "hook_embed";
/// A block's residual stream in and out (`blocks.{i}.`), `[T, d]`.
pub const HOOK_RESID_PRE: &str = "hook_resid_pre";
pub const HOOK_RESID_POST: &str = "hook_resid_post";
/// The logit lens of a block (`blocks.{i}.`): the final norm and the head applied to its
/// `hook_resid_post`, `[T, V]`; computed only when captured, capture only.
pub const HOOK_LENS_LOGITS: &str = "hook_lens_logits";
/// The final norm's output `[T, d]`.
pub const LN_FINAL: &str = "ln_final.hook_normalized";
/// The logits `[T, V]`.
pub const HOOK_LOGITS: &str = "hook_logits";

/// `blocks.{i}.{name}`.
pub fn block_hook(i: usize, name: &str) -> String {
    format!("blocks.{i}.{name}")
}

/// A model's hook points in forward order: `before` the blocks, each block's `block`
/// hooks under `blocks.{i}.`, then [`LN_FINAL`] and [`HOOK_LOGITS`].
pub fn hook_names(before: &[&str], block: &[&str], n_layers: usize) -> Vec<String> {
    let mut hooks: Vec<String> = before.iter().map(|h| h.to_string()).collect();
    for i in 0..n_layers {
        hooks.extend(block.iter().map(|h| block_hook(i, h)));
    }
    hooks.push(LN_FINAL.into());
    hooks.push(HOOK_LOGITS.into());
    hooks
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_in_forward_order() {
        let h = hook_names(&["a", HOOK_EMBED], &[HOOK_RESID_PRE, HOOK_RESID_POST], 2);
        assert_eq!(
            h,
            [
                "a",
                "hook_embed",
                "blocks.0.hook_resid_pre",
                "blocks.0.hook_resid_post",
                "blocks.1.hook_resid_pre",
                "blocks.1.hook_resid_post",
                "ln_final.hook_normalized",
                "hook_logits"
            ]
        );
    }
}
