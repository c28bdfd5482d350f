//! Option maps of the Rhai API read by serde into typed structs: a key the struct does not
//! declare is an error that names it. Values serde cannot carry (a `Tensor`, a `Model`)
//! are set aside before and put back after.

use super::convert::*;
use crate::hooks::Intervention;
use crate::model::ForwardSpec;
use rhai::{Array, Dynamic, Map};
use serde::de::{DeserializeOwned, IgnoredAny};
use serde::Deserialize;
use tokit_compute::Tensor;
use tokit_sdk::Variant;

/// Read an option map into `T`; errors start with `what`.
pub fn options<T: DeserializeOwned>(map: Map, what: &str) -> RhaiResult<T> {
    rhai::serde::from_dynamic(&Dynamic::from_map(map)).map_err(|e| {
        // Rhai appends the (meaningless) position of the map value; drop it.
        let msg = e.to_string();
        let msg = msg.split(" (line ").next().unwrap_or(&msg).to_string();
        format!("{what}: {msg}").into()
    })
}

/// One value or an array of them (`capture: "hook_embed"` or `capture: ["hook_*"]`).
#[derive(Deserialize)]
#[serde(untagged)]
pub enum OneOrMany<T> {
    One(T),
    Many(Vec<T>),
}

impl<T> OneOrMany<T> {
    pub fn into_vec(self) -> Vec<T> {
        match self {
            OneOrMany::One(x) => vec![x],
            OneOrMany::Many(v) => v,
        }
    }
}

/// The options of `Model.forward(ids, opts)`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ForwardOptions {
    /// Hook patterns to capture.
    capture: Option<OneOrMany<String>>,
    /// Positions to ablate (one variant).
    ablate: Option<OneOrMany<usize>>,
    /// Ablation method of `ablate` (the model's default when absent).
    method: Option<String>,
    /// Token the `replace` method puts in, for every variant.
    replace_with: Option<u32>,
    /// Several variants in one call (the result is then an array of maps).
    variants: Option<Vec<Variant>>,
    /// Return non-finite logits instead of an error.
    allow_nonfinite: Option<bool>,
    /// Read separately by [`intervention`] (they may hold tensors); declared so the key is
    /// known.
    #[allow(dead_code)]
    interventions: Option<IgnoredAny>,
}

/// A forward request from `forward`'s option map, and whether several variants were asked
/// for (`variants`), so the result is an array.
pub fn forward_spec(mut opts: Map) -> RhaiResult<(ForwardSpec, bool)> {
    let interventions = opts.remove("interventions");
    let o: ForwardOptions = options(opts, "forward")?;
    let mut spec = ForwardSpec {
        allow_nonfinite: o.allow_nonfinite.unwrap_or(false),
        ..Default::default()
    };
    if let Some(c) = o.capture {
        spec.capture = c.into_vec();
    }
    let many = o.variants.is_some();
    if let Some(v) = o.variants {
        spec.variants = v;
    }
    if let Some(a) = o.ablate {
        spec.variants = vec![Variant {
            ablate: a.into_vec(),
            method: o.method,
            replace_with: None,
        }];
    }
    if let Some(tok) = o.replace_with {
        for v in &mut spec.variants {
            v.replace_with = Some(tok);
        }
    }
    if let Some(ivs) = interventions {
        let a = ivs
            .try_cast::<Array>()
            .ok_or("forward: `interventions` must be an array of maps")?;
        spec.interventions = a.iter().map(intervention).collect::<RhaiResult<_>>()?;
    }
    Ok((spec, many))
}

/// Keys an intervention map may hold (`value` is the scale factor or the tensor to add or
/// put in place; `factor` is the SDK's name for the former).
const INTERVENTION_KEYS: &[&str] = &["hook", "op", "value", "factor", "keys", "heads", "variants"];

/// An intervention map (`#{ hook, op, value, keys, heads, variants }`) read by serde into
/// the one intervention type.
pub fn intervention(d: &Dynamic) -> RhaiResult<Intervention> {
    let mut m = d
        .clone()
        .try_cast::<Map>()
        .ok_or("forward: each intervention is a map #{hook, op, value}")?;
    if let Some(k) = m.keys().find(|k| !INTERVENTION_KEYS.contains(&k.as_str())) {
        return err(format!(
            "intervention: unknown key `{k}` (keys: {})",
            INTERVENTION_KEYS.join(", ")
        ));
    }
    // Scripts may write one position as a bare integer and a scale factor as an integer.
    for key in ["keys", "heads", "variants"] {
        if let Some(v) = m.get_mut(key) {
            if v.is_int() {
                *v = Dynamic::from_array(vec![v.clone()]);
            }
        }
    }
    for key in ["value", "factor"] {
        if let Some(v) = m.get_mut(key) {
            if let Ok(i) = v.as_int() {
                *v = Dynamic::from_float(i as f64);
            }
        }
    }
    // A Tensor cannot pass through serde: set it aside and put it back after. An array of
    // numbers becomes one.
    let mut tensor = match m.get("value") {
        Some(v) if v.is_array() => Some(tensor_from_array(
            &*v.as_array_ref().map_err(|e| format!("intervention: {e}"))?,
        )?),
        Some(v) => v.read_lock::<Tensor>().map(|t| t.clone()),
        None => None,
    };
    if tensor.is_some() {
        m.insert("value".into(), Dynamic::UNIT);
    }
    let parsed: tokit_sdk::Intervention<IgnoredAny> = options(m, "intervention")?;
    let op = parsed.action.op();
    rt(parsed.try_map(|_| {
        tensor
            .take()
            .ok_or_else(|| format!("intervention {op}: `value` must be a Tensor"))
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hooks::Action;
    use tokit_compute::Tensor;

    fn map(pairs: &[(&str, Dynamic)]) -> Dynamic {
        Dynamic::from_map(
            pairs
                .iter()
                .map(|(k, v)| ((*k).into(), v.clone()))
                .collect(),
        )
    }

    #[test]
    fn intervention_maps_become_the_one_type() {
        let s = |v: &str| Dynamic::from(v.to_string());
        let iv = intervention(&map(&[
            ("hook", s("hook_embed")),
            ("op", s("scale")),
            ("value", Dynamic::from_int(2)),
        ]))
        .unwrap();
        assert_eq!(iv.hook, "hook_embed");
        assert!(matches!(iv.action, Action::Scale { factor } if factor == 2.0));
        let t = Tensor::new(vec![2], vec![1.0, 2.0]).unwrap();
        let iv = intervention(&map(&[
            ("hook", s("h")),
            ("op", s("add")),
            ("value", Dynamic::from(t)),
        ]))
        .unwrap();
        assert!(matches!(&iv.action, Action::Add { value } if value.data() == [1.0, 2.0]));
        // An array of numbers is taken as the tensor.
        let iv = intervention(&map(&[
            ("hook", s("h")),
            ("op", s("replace")),
            (
                "value",
                Dynamic::from_array(vec![Dynamic::from_float(0.5), Dynamic::from_int(3)]),
            ),
        ]))
        .unwrap();
        assert!(matches!(&iv.action, Action::Replace { value } if value.data() == [0.5, 3.0]));
        let iv = intervention(&map(&[
            ("hook", s("blocks.0.attn.hook_scores")),
            ("op", s("knockout")),
            ("keys", Dynamic::from_int(3)),
            ("variants", Dynamic::from_array(vec![Dynamic::from_int(1)])),
        ]))
        .unwrap();
        assert!(
            matches!(&iv.action, Action::Knockout { keys, heads } if keys == &[3] && heads.is_empty())
        );
        assert_eq!(iv.variants, Some(vec![1]));

        let e = |m: Dynamic| intervention(&m).unwrap_err().to_string();
        assert!(e(map(&[
            ("hook", s("h")),
            ("op", s("zero")),
            ("scale", Dynamic::from_int(1))
        ]))
        .contains("unknown key `scale`"));
        assert!(e(map(&[
            ("hook", s("h")),
            ("op", s("add")),
            ("value", Dynamic::from_int(1))
        ]))
        .contains("`value` must be a Tensor"));
        assert!(e(map(&[("hook", s("h")), ("op", s("shift"))])).contains("shift"));
        assert!(e(map(&[("op", s("zero"))])).contains("hook"));
    }

    #[test]
    fn forward_options_are_typed() {
        let s = |v: &str| Dynamic::from(v.to_string());
        let m = |pairs: &[(&str, Dynamic)]| -> Map {
            pairs
                .iter()
                .map(|(k, v)| ((*k).into(), v.clone()))
                .collect()
        };
        let (spec, many) = forward_spec(m(&[
            ("capture", s("hook_embed")),
            ("ablate", Dynamic::from_int(2)),
            ("method", s("attention")),
            ("replace_with", Dynamic::from_int(7)),
        ]))
        .unwrap();
        assert!(!many);
        assert_eq!(spec.capture, ["hook_embed"]);
        assert_eq!(spec.variants.len(), 1);
        assert_eq!(spec.variants[0].ablate, [2]);
        assert_eq!(spec.variants[0].method.as_deref(), Some("attention"));
        assert_eq!(spec.variants[0].replace_with, Some(7));
        let e = forward_spec(m(&[("captures", s("x"))]))
            .unwrap_err()
            .to_string();
        assert!(e.contains("forward") && e.contains("captures"), "{e}");
        let (_, many) = forward_spec(m(&[(
            "variants",
            Dynamic::from_array(vec![Dynamic::from_map(Map::new())]),
        )]))
        .unwrap();
        assert!(many);
    }
}
