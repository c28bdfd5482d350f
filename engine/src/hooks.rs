//! Hook points of one forward pass: what to capture and which interventions to apply.
//! The plugin passes every activation through `HostApi::hook`; the host hands it to the
//! [`HookCtx`] of the running call. This module knows nothing of plugins or the host
//! (docs/architecture.md, "Layers inside the engine").

use anyhow::{bail, ensure, Context, Result};
use std::collections::BTreeMap;
use std::sync::Arc;
use tokit_compute::{Backend, Tensor};
use tokit_sdk::{InterventionAction, InterventionRequest};

/// An intervention at hook points: the SDK's one intervention type, with the host's
/// tensors for `add` and `replace`.
pub type Intervention = tokit_sdk::Intervention<Tensor>;

/// What an [`Intervention`] does to an activation.
pub type Action = InterventionAction<Tensor>;

/// A metric plugin's intervention (tensors as plain values) on the host's tensors.
pub fn from_request(r: InterventionRequest) -> Result<Intervention> {
    let hook = r.hook.clone();
    r.try_map(|v| {
        Tensor::new(v.shape, v.data).with_context(|| format!("intervention at {hook}: value"))
    })
}

/// Attention knockout on pre-softmax scores `[H, Tq, Tk]`: key columns `keys` of the heads
/// `heads` (every head when empty) become −∞.
fn knockout(x: &Tensor, keys: &[usize], heads: &[usize], name: &str) -> Result<Tensor> {
    let &[h, tq, tk] = x.shape() else {
        bail!(
            "intervention knockout at {name}: expected attention scores [heads, queries, keys], found shape {:?}",
            x.shape()
        );
    };
    if let Some(&j) = keys.iter().find(|&&j| j >= tk) {
        bail!("intervention knockout at {name}: key {j} is beyond the {tk} keys");
    }
    if let Some(&i) = heads.iter().find(|&&i| i >= h) {
        bail!("intervention knockout at {name}: head {i} is beyond the {h} heads");
    }
    let mut d = x.data().to_vec();
    let all: Vec<usize> = (0..h).collect();
    for &hd in if heads.is_empty() { &all } else { heads } {
        for row in d[hd * tq * tk..(hd + 1) * tq * tk].chunks_mut(tk) {
            for &j in keys {
                row[j] = f32::NEG_INFINITY;
            }
        }
    }
    Tensor::new(x.shape().to_vec(), d)
}

/// Glob match where `*` matches any run of characters (`blocks.*.hook_resid_post`).
///
/// Iterative, with backtracking only to the last `*` seen: at most
/// O(|pattern| · |name|) steps and constant stack, whatever the pattern (a recursive
/// matcher is exponential in the number of stars, e.g. `********************x`).
pub fn glob_match(pattern: &str, name: &str) -> bool {
    let (p, n) = (pattern.as_bytes(), name.as_bytes());
    let (mut i, mut j) = (0, 0);
    // Where the last star was, and where in `name` its match currently ends.
    let mut star: Option<(usize, usize)> = None;
    while j < n.len() {
        if i < p.len() && p[i] == b'*' {
            star = Some((i, j));
            i += 1;
        } else if i < p.len() && p[i] == n[j] {
            i += 1;
            j += 1;
        } else if let Some((si, sj)) = star {
            // Let the last star swallow one more character and retry after it.
            star = Some((si, sj + 1));
            i = si + 1;
            j = sj + 1;
        } else {
            return false;
        }
    }
    p[i..].iter().all(|&c| c == b'*')
}

/// Host state of one forward call, reached by plugins through `HostApi::hook`.
pub struct HookCtx {
    capture: Vec<String>,
    interventions: Vec<Intervention>,
    backend: Arc<dyn Backend>,
    /// Captured activations per variant, by hook name.
    pub(crate) captured: Vec<BTreeMap<String, Tensor>>,
}

impl HookCtx {
    /// The hooks of one forward call; `backend` runs the interventions' arithmetic.
    pub fn new(
        capture: Vec<String>,
        interventions: Vec<Intervention>,
        backend: Arc<dyn Backend>,
    ) -> HookCtx {
        HookCtx {
            capture,
            interventions,
            backend,
            captured: vec![],
        }
    }

    /// Captures and applies interventions; `Some` when the activation changed.
    pub fn apply(&mut self, variant: usize, name: &str, t: Tensor) -> Result<Option<Tensor>> {
        let mut current: Option<Tensor> = None;
        for iv in &self.interventions {
            if !glob_match(&iv.hook, name)
                || iv.variants.as_ref().is_some_and(|v| !v.contains(&variant))
            {
                continue;
            }
            let x = current.as_ref().unwrap_or(&t);
            let b = &self.backend;
            let y = match &iv.action {
                Action::Zero => Tensor::zeros(x.shape().to_vec()),
                Action::Scale { factor } => b.affine(x, *factor, 0.0)?,
                Action::Add { value: v } => b
                    .binary(tokit_compute::BinaryOp::Add, x, v)
                    .with_context(|| format!("intervention add at {name}"))?,
                Action::Replace { value: r } => {
                    ensure!(
                        r.shape() == x.shape(),
                        "intervention replace at {name}: replacement has shape {:?}, the activation {:?}",
                        r.shape(),
                        x.shape()
                    );
                    r.clone()
                }
                Action::Knockout { keys, heads } => knockout(x, keys, heads, name)?,
            };
            current = Some(y);
        }
        if self.capture.iter().any(|p| glob_match(p, name)) {
            if self.captured.len() <= variant {
                self.captured.resize_with(variant + 1, BTreeMap::new);
            }
            self.captured[variant].insert(
                name.to_string(),
                current.clone().unwrap_or_else(|| t.clone()),
            );
        }
        Ok(current)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokit_compute::CpuBackend;

    fn request(json: &str) -> InterventionRequest {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn metric_interventions_apply_with_host_tensors() {
        let add = from_request(request(
            r#"{"hook": "blocks.*.hook_resid_post", "op": "add", "value": {"shape": [2], "data": [1, -1]}}"#,
        ))
        .unwrap();
        let scale = from_request(request(
            r#"{"hook": "blocks.0.*", "op": "scale", "factor": 2, "variants": [1]}"#,
        ))
        .unwrap();
        let mut ctx = HookCtx::new(
            vec!["blocks.0.hook_resid_post".into()],
            vec![add, scale],
            Arc::new(CpuBackend::new(None)),
        );
        let x = Tensor::new(vec![2, 2], vec![1.0, 2.0, 3.0, 4.0]).unwrap();
        // Variant 0: the add only; variant 1: add, then scale.
        let y0 = ctx
            .apply(0, "blocks.0.hook_resid_post", x.clone())
            .unwrap()
            .unwrap();
        assert_eq!(y0.data(), [2.0, 1.0, 4.0, 3.0]);
        let y1 = ctx
            .apply(1, "blocks.0.hook_resid_post", x.clone())
            .unwrap()
            .unwrap();
        assert_eq!(y1.data(), [4.0, 2.0, 8.0, 6.0]);
        assert_eq!(
            ctx.captured[1]["blocks.0.hook_resid_post"].data(),
            y1.data()
        );
        // A hook no pattern matches is left alone.
        assert!(ctx.apply(0, "hook_embed", x).unwrap().is_none());
        // Values whose shape does not hold their data are refused.
        let bad =
            request(r#"{"hook": "h", "op": "replace", "value": {"shape": [3], "data": [1, 2]}}"#);
        assert!(from_request(bad).is_err());
    }
}

#[cfg(test)]
mod glob_tests {
    use super::glob_match;

    #[test]
    fn glob_matches_like_the_recursive_definition_and_stays_fast() {
        for (p, n, want) in [
            ("blocks.*.hook_resid_post", "blocks.3.hook_resid_post", true),
            ("blocks.*.hook_resid_post", "blocks.3.attn.hook_q", false),
            ("*", "", true),
            ("", "", true),
            ("", "a", false),
            ("a*", "a", true),
            ("*a", "ba", true),
            ("*a", "ab", false),
            ("a*b*c", "axxbyyc", true),
            ("a*b*c", "axxbyy", false),
            ("**x", "abx", true),
            ("hook_*", "hook_embed", true),
            ("blocks.*.attn.*", "blocks.10.attn.hook_scores", true),
        ] {
            assert_eq!(glob_match(p, n), want, "{p} ~ {n}");
        }
        // Exponential for a backtracking matcher; immediate here.
        let name = "a".repeat(200);
        assert!(!glob_match(&format!("{}x", "*".repeat(40)), &name));
        assert!(glob_match(&format!("{}a", "*".repeat(40)), &name));
    }
}
