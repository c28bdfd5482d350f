//! Interventions: what the host does to an activation at a hook point. One type serves
//! every side: a metric plugin sends it as JSON in a forward request, the engine applies
//! it (with its own tensors for `add` and `replace`), and Rhai scripts write it as a map
//! (`#{ hook: "hook_embed", op: "scale", value: 0.5 }`).

use serde::{Deserialize, Serialize};

/// A change at every hook point matching `hook` (`*` matches any run of characters), in
/// the listed variants (all when `None`). `T` is the tensor type of `add` and `replace`:
/// [`Values`] on the wire, the host's tensor in the engine.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Intervention<T = Values> {
    pub hook: String,
    #[serde(flatten)]
    pub action: InterventionAction<T>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variants: Option<Vec<usize>>,
}

/// An intervention as a metric plugin sends it (JSON, tensors as [`Values`]).
pub type InterventionRequest = Intervention<Values>;

/// What an [`Intervention`] does (JSON: `{"op": "knockout", "keys": [..], ..}`).
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum InterventionAction<T = Values> {
    /// Set the activation to zero.
    Zero,
    /// Multiply the activation by `factor` (a script may write it `value`).
    Scale {
        #[serde(alias = "value")]
        factor: f32,
    },
    /// Add `value` (steering), broadcast against the activation.
    Add { value: T },
    /// Replace the activation by `value`, of the same shape (patching from a cache).
    Replace { value: T },
    /// Attention knockout on pre-softmax scores `[H, Tq, Tk]` (`blocks.{i}.attn.hook_scores`):
    /// the key columns `keys` (absolute positions) of the heads `heads` (every head when
    /// empty) become −∞, so those heads' softmax renormalises over the other keys.
    Knockout {
        keys: Vec<usize>,
        #[serde(default)]
        heads: Vec<usize>,
    },
}

/// A tensor as plain data (row-major `data` of `shape`), for `add` and `replace` in JSON.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Values {
    pub shape: Vec<usize>,
    pub data: Vec<f32>,
}

impl<T> Intervention<T> {
    /// The same intervention with its tensor (if any) converted by `f`.
    pub fn try_map<U, E>(self, f: impl FnOnce(T) -> Result<U, E>) -> Result<Intervention<U>, E> {
        Ok(Intervention {
            hook: self.hook,
            action: self.action.try_map(f)?,
            variants: self.variants,
        })
    }
}

impl<T> InterventionAction<T> {
    /// The same action with its tensor (if any) converted by `f`.
    pub fn try_map<U, E>(
        self,
        f: impl FnOnce(T) -> Result<U, E>,
    ) -> Result<InterventionAction<U>, E> {
        Ok(match self {
            InterventionAction::Zero => InterventionAction::Zero,
            InterventionAction::Scale { factor } => InterventionAction::Scale { factor },
            InterventionAction::Add { value } => InterventionAction::Add { value: f(value)? },
            InterventionAction::Replace { value } => {
                InterventionAction::Replace { value: f(value)? }
            }
            InterventionAction::Knockout { keys, heads } => {
                InterventionAction::Knockout { keys, heads }
            }
        })
    }

    /// The op's name as scripts and JSON write it.
    pub fn op(&self) -> &'static str {
        match self {
            InterventionAction::Zero => "zero",
            InterventionAction::Scale { .. } => "scale",
            InterventionAction::Add { .. } => "add",
            InterventionAction::Replace { .. } => "replace",
            InterventionAction::Knockout { .. } => "knockout",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_form_round_trips() {
        let r: InterventionRequest = serde_json::from_str(
            r#"{"hook": "blocks.1.attn.hook_scores", "op": "knockout", "keys": [4], "variants": [1]}"#,
        )
        .unwrap();
        assert!(
            matches!(&r.action, InterventionAction::Knockout { keys, heads } if keys == &[4] && heads.is_empty())
        );
        assert_eq!(r.variants, Some(vec![1]));
        let s: InterventionRequest =
            serde_json::from_str(r#"{"hook": "hook_embed", "op": "scale", "value": 0.5}"#).unwrap();
        assert!(matches!(s.action, InterventionAction::Scale { factor } if factor == 0.5));
        let back: InterventionRequest =
            serde_json::from_str(&serde_json::to_string(&s).unwrap()).unwrap();
        assert!(matches!(back.action, InterventionAction::Scale { factor } if factor == 0.5));
        let a: InterventionRequest = serde_json::from_str(
            r#"{"hook": "hook_embed", "op": "add", "value": {"shape": [2], "data": [1, 2]}}"#,
        )
        .unwrap();
        let a = a.try_map(|v| Ok::<_, ()>(v.data)).unwrap();
        assert!(matches!(a.action, InterventionAction::Add { value } if value == [1.0, 2.0]));
        assert!(
            serde_json::from_str::<InterventionRequest>(r#"{"hook": "h", "op": "shift"}"#).is_err()
        );
    }
}
