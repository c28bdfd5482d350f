//! Hook points of one forward pass: what to capture and which interventions to apply.
//! The plugin passes every activation through `HostApi::hook`; the host hands it to the
//! [`HookCtx`] of the running call. This module knows nothing of plugins or the host
//! (docs/architecture.md, "Layers inside the engine").

use anyhow::{bail, ensure, Context, Result};
use std::collections::BTreeMap;
use std::sync::Arc;
use tokit_compute::{Backend, Tensor};
use tokit_sdk::{InterventionAction, InterventionRequest};

/// What to do to an activation at a hook point.
#[derive(Clone, Debug)]
pub enum Action {
    Zero,
    Scale(f32),
    /// Add a vector (steering), broadcast against the activation.
    Add(Tensor),
    /// Replace with a tensor of the same shape (patching from a cache).
    Replace(Tensor),
    /// Attention knockout on pre-softmax scores `[H, Tq, Tk]`: key columns `keys` of the
    /// heads `heads` (every head when empty) become −∞.
    Knockout {
        keys: Vec<usize>,
        heads: Vec<usize>,
    },
}

impl Action {
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
}

/// An intervention: `action` at every hook matching `pattern`, in the listed variants
/// (all when `None`).
#[derive(Clone, Debug)]
pub struct Intervention {
    pub pattern: String,
    pub action: Action,
    pub variants: Option<Vec<usize>>,
}

/// Glob match where `*` matches any run of characters (`blocks.*.hook_resid_post`).
pub fn glob_match(pattern: &str, name: &str) -> bool {
    fn rec(p: &[u8], n: &[u8]) -> bool {
        match p.split_first() {
            None => n.is_empty(),
            Some((b'*', rest)) => (0..=n.len()).any(|i| rec(rest, &n[i..])),
            Some((c, rest)) => n.first() == Some(c) && rec(rest, &n[1..]),
        }
    }
    rec(pattern.as_bytes(), name.as_bytes())
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
            if !glob_match(&iv.pattern, name)
                || iv.variants.as_ref().is_some_and(|v| !v.contains(&variant))
            {
                continue;
            }
            let x = current.as_ref().unwrap_or(&t);
            let b = &self.backend;
            let y = match &iv.action {
                Action::Zero => Tensor::zeros(x.shape().to_vec()),
                Action::Scale(s) => b.affine(x, *s, 0.0)?,
                Action::Add(v) => b
                    .binary(tokit_compute::BinaryOp::Add, x, v)
                    .with_context(|| format!("intervention add at {name}"))?,
                Action::Replace(r) => {
                    ensure!(
                        r.shape() == x.shape(),
                        "intervention replace at {name}: replacement has shape {:?}, the activation {:?}",
                        r.shape(),
                        x.shape()
                    );
                    r.clone()
                }
                Action::Knockout { keys, heads } => Action::knockout(x, keys, heads, name)?,
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

/// A metric's intervention, as the SDK sends it.
impl From<InterventionRequest> for Intervention {
    fn from(r: InterventionRequest) -> Intervention {
        let action = match r.action {
            InterventionAction::Zero => Action::Zero,
            InterventionAction::Scale { factor } => Action::Scale(factor),
            InterventionAction::Knockout { keys, heads } => Action::Knockout { keys, heads },
        };
        Intervention {
            pattern: r.hook,
            action,
            variants: r.variants,
        }
    }
}
