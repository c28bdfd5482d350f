//! What an architecture plugin implements: load a model from host-held weights and run
//! forward passes with host ops, passing activations through named hook points.

use crate::abi::{ForwardArgs, SourceId, Str, TensorSink};
use crate::error::{Error, Result};
use crate::host::{api, check, TextBuf};
use crate::tensor::Tensor;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::ffi::c_void;

/// A model architecture (Transformer, Mamba2, an n-gram model, ...).
pub trait Architecture: Send + 'static {
    /// Static description, shown by `tokit plugins`.
    fn spec() -> ArchSpec
    where
        Self: Sized;
    /// Build a model from its files (config, weights) through the host.
    fn load(source: &ModelSource) -> Result<Self>
    where
        Self: Sized;
    /// Sizes, hook points and ablation methods of the loaded model.
    fn info(&self) -> ModelInfo;
    /// Compute every variant of `call` and `emit` each variant's `"logits"` `[T, V]`.
    fn forward(&mut self, call: &mut ForwardCall) -> Result<()>;
}

/// Static description of an architecture.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ArchSpec {
    pub name: String,
    /// `model_type` values (config.json) this architecture accepts.
    pub model_types: Vec<String>,
    pub description: String,
}

/// What the host and metrics need to know about a loaded model.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct ModelInfo {
    pub arch: String,
    pub vocab_size: usize,
    pub n_layers: usize,
    pub d_model: usize,
    /// Longest context the model accepts, if bounded.
    pub context_length: Option<usize>,
    /// Every hook point name, in forward order.
    pub hooks: Vec<String>,
    /// Position-ablation methods the model supports (`attention`, `zero_input`, ...).
    pub ablation_methods: Vec<String>,
    pub default_ablation: String,
    /// Whether position t's logits depend only on tokens ≤ t.
    pub causal: bool,
    /// Whether the model accepts several documents packed into one forward (the
    /// `segments` forward option, [`ForwardCall::segments`]); false when absent.
    #[serde(default)]
    pub packing: bool,
    /// Architecture-specific facts (order, smoothing, rope settings, ...).
    #[serde(default)]
    pub extra: Value,
}

/// A model's files as the host offers them at load time.
pub struct ModelSource {
    pub arch: String,
    pub path: String,
    pub config: Value,
    pub options: Value,
    pub(crate) weights: SourceId,
}

impl ModelSource {
    /// A weight as f32, converted by the host from its stored dtype.
    pub fn weight(&self, name: &str) -> Result<Tensor> {
        let api = api()?;
        let mut out = 0;
        let mut err = TextBuf::new();
        let e = err.sink();
        // SAFETY: pointers valid through the call.
        let st = unsafe { (api.weight)(api.ctx, self.weights, Str::new(name), &mut out, &e) };
        check(st, err, "weight")?;
        Ok(Tensor::from_id(out))
    }

    /// Every stored weight: name → `{"dtype": .., "shape": [..]}`.
    pub fn weight_index(&self) -> Result<serde_json::Map<String, Value>> {
        let api = api()?;
        let mut out = TextBuf::new();
        let o = out.sink();
        let mut err = TextBuf::new();
        let e = err.sink();
        // SAFETY: pointers valid through the call.
        let st = unsafe { (api.weight_index)(api.ctx, self.weights, &o, &e) };
        check(st, err, "weight_index")?;
        Ok(serde_json::from_str(&out.0)?)
    }

    fn field(&self, field: &str) -> Option<&Value> {
        let mut v = &self.config;
        for part in field.split('.') {
            v = v.get(part)?;
        }
        (!v.is_null()).then_some(v)
    }

    fn bad(&self, field: &str, expected: &str, found: &Value) -> Error {
        Error::msg(format!(
            "{}/config.json: field `{field}`: expected {expected}, found {found}",
            self.path
        ))
    }

    /// A required non-negative integer from config.json (dotted paths reach nested fields).
    pub fn config_usize(&self, field: &str) -> Result<usize> {
        self.opt_config_usize(field)?.ok_or_else(|| {
            Error::msg(format!(
                "{}/config.json: missing field `{field}`",
                self.path
            ))
        })
    }

    pub fn opt_config_usize(&self, field: &str) -> Result<Option<usize>> {
        match self.field(field) {
            None => Ok(None),
            Some(v) => v
                .as_u64()
                .map(|n| Some(n as usize))
                .ok_or_else(|| self.bad(field, "a non-negative integer", v)),
        }
    }

    /// A number; the strings "Infinity" and "-Infinity" are read as such. NaN is refused:
    /// no config field means "not a number", and one would poison every result.
    pub fn opt_config_f64(&self, field: &str) -> Result<Option<f64>> {
        match self.field(field) {
            None => Ok(None),
            Some(Value::String(s)) if s == "Infinity" => Ok(Some(f64::INFINITY)),
            Some(Value::String(s)) if s == "-Infinity" => Ok(Some(f64::NEG_INFINITY)),
            Some(v) => v
                .as_f64()
                .map(Some)
                .ok_or_else(|| self.bad(field, "a number (not NaN)", v)),
        }
    }

    /// A number that must be finite and > 0 (epsilons, rope theta, scaling factors).
    pub fn opt_config_positive(&self, field: &str) -> Result<Option<f64>> {
        match self.opt_config_f64(field)? {
            Some(x) if !(x.is_finite() && x > 0.0) => {
                Err(self.bad(field, "a finite number > 0", &self.config_value(field)))
            }
            x => Ok(x),
        }
    }

    /// A size or count that must be at least 1 (heads, widths, windows).
    pub fn opt_config_dim(&self, field: &str) -> Result<Option<usize>> {
        match self.opt_config_usize(field)? {
            Some(0) => Err(self.bad(field, "an integer >= 1", &Value::from(0))),
            n => Ok(n),
        }
    }

    /// A required size or count of at least 1.
    pub fn config_dim(&self, field: &str) -> Result<usize> {
        self.config_usize(field)?;
        Ok(self.opt_config_dim(field)?.unwrap_or_default())
    }

    /// The number of layers: at least 1, and no more than the checkpoint's tensors (every
    /// layer has weights), checked before anything is sized by it, so a corrupt count
    /// (2^31) is an error rather than a multi-gigabyte allocation.
    pub fn config_layers(&self, field: &str) -> Result<usize> {
        let n = self.config_dim(field)?;
        let stored = self.weight_index()?.len();
        if n > stored {
            return Err(Error::msg(format!(
                "{}/config.json: field `{field}` is {n}, but the checkpoint holds only {stored} \
                 tensors (each layer has weights of its own)",
                self.path
            )));
        }
        Ok(n)
    }

    fn config_value(&self, field: &str) -> Value {
        self.field(field).cloned().unwrap_or(Value::Null)
    }

    pub fn config_f64(&self, field: &str) -> Result<f64> {
        self.opt_config_f64(field)?.ok_or_else(|| {
            Error::msg(format!(
                "{}/config.json: missing field `{field}`",
                self.path
            ))
        })
    }

    pub fn opt_config_str(&self, field: &str) -> Result<Option<String>> {
        match self.field(field) {
            None => Ok(None),
            Some(v) => v
                .as_str()
                .map(|s| Some(s.to_string()))
                .ok_or_else(|| self.bad(field, "a string", v)),
        }
    }

    pub fn opt_config_bool(&self, field: &str) -> Result<Option<bool>> {
        match self.field(field) {
            None => Ok(None),
            Some(v) => v
                .as_bool()
                .map(Some)
                .ok_or_else(|| self.bad(field, "true or false", v)),
        }
    }
}

/// A position-ablation method. On the wire (forward options, [`ModelInfo`]) each is its
/// snake_case name, as [`Ablation::as_str`] spells it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Ablation {
    /// Remove the position from every query's keys (attention models).
    Attention,
    /// Remove the position's input: its convolution row and its write into the state
    /// (state-space models).
    ZeroInput,
    /// The token becomes the mask token, read as "unknown" (masked-diffusion models).
    MaskToken,
    /// The token becomes `replace_with`.
    Replace,
    /// The token leaves the context exactly (finite-order Markov models).
    Exact,
}

impl Ablation {
    pub const ALL: [Ablation; 5] = [
        Ablation::Attention,
        Ablation::ZeroInput,
        Ablation::MaskToken,
        Ablation::Replace,
        Ablation::Exact,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Ablation::Attention => "attention",
            Ablation::ZeroInput => "zero_input",
            Ablation::MaskToken => "mask_token",
            Ablation::Replace => "replace",
            Ablation::Exact => "exact",
        }
    }

    /// The method named `name`, if any.
    pub fn parse(name: &str) -> Option<Ablation> {
        Ablation::ALL.into_iter().find(|a| a.as_str() == name)
    }
}

impl std::fmt::Display for Ablation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl ModelInfo {
    /// Declare the ablation methods the model supports, its default first.
    pub fn with_ablations(mut self, methods: &[Ablation]) -> ModelInfo {
        self.ablation_methods = methods.iter().map(|m| m.as_str().to_string()).collect();
        self.default_ablation = methods.first().map_or("", |m| m.as_str()).to_string();
        self
    }
}

/// One variant of a forward call: which positions to ablate, and how.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct Variant {
    /// Positions removed from what later positions condition on.
    #[serde(default)]
    pub ablate: Vec<usize>,
    /// Ablation method; `None` means the model's default.
    #[serde(default)]
    pub method: Option<String>,
    /// Token used by the `replace` method.
    #[serde(default)]
    pub replace_with: Option<u32>,
}

impl Variant {
    pub fn is_clean(&self) -> bool {
        self.ablate.is_empty()
    }

    /// The method to use, checked against what the model supports.
    pub fn method_for(&self, info: &ModelInfo) -> Result<String> {
        let m = self
            .method
            .clone()
            .unwrap_or_else(|| info.default_ablation.clone());
        if self.is_clean() || info.ablation_methods.contains(&m) {
            Ok(m)
        } else {
            Err(Error::msg(format!(
                "{} models do not support ablation method `{m}` (supported: {})",
                info.arch,
                info.ablation_methods.join(", ")
            )))
        }
    }

    /// [`Variant::method_for`] as an [`Ablation`].
    pub fn ablation(&self, info: &ModelInfo) -> Result<Ablation> {
        let m = self.method_for(info)?;
        Ablation::parse(&m).ok_or_else(|| {
            Error::msg(format!(
                "{}: unknown ablation method `{m}` (known: {})",
                info.arch,
                Ablation::ALL.map(Ablation::as_str).join(", ")
            ))
        })
    }
}

/// The position ranges `start..end` of documents of lengths `segments`, one after another.
pub fn segment_ranges(segments: &[usize]) -> Vec<std::ops::Range<usize>> {
    let mut start = 0;
    segments
        .iter()
        .map(|&n| {
            start += n;
            start - n..start
        })
        .collect()
}

/// The `segments` option checked against `n_tokens`: every length ≥ 1, summing to
/// `n_tokens`; absent (empty) is one document `[n_tokens]`.
pub fn check_segments(segments: Vec<usize>, n_tokens: usize) -> Result<Vec<usize>> {
    if segments.is_empty() {
        return Ok(vec![n_tokens]);
    }
    if let Some(i) = segments.iter().position(|&n| n == 0) {
        return Err(Error::msg(format!(
            "forward option `segments`: document {i} has length 0 (every packed document needs at least one token)"
        )));
    }
    let total = segments.iter().try_fold(0usize, |a, &n| a.checked_add(n));
    if total != Some(n_tokens) {
        return Err(Error::msg(format!(
            "forward option `segments`: the {} document lengths sum to {}, but the call has {n_tokens} tokens",
            segments.len(),
            total.map_or("more than usize::MAX".to_string(), |t| t.to_string())
        )));
    }
    Ok(segments)
}

#[derive(Deserialize, Default)]
struct ForwardOptions {
    #[serde(default)]
    variants: Vec<Variant>,
    /// Emit logits of the last position only (`[1, V]`): generation steps.
    #[serde(default)]
    last_only: bool,
    /// Lengths of the documents packed into the call (absent: one document).
    #[serde(default)]
    segments: Vec<usize>,
    #[serde(flatten)]
    rest: serde_json::Map<String, Value>,
}

/// One forward call as the architecture sees it.
pub struct ForwardCall<'a> {
    tokens: &'a [u32],
    variants: Vec<Variant>,
    last_only: bool,
    segments: Vec<usize>,
    options: serde_json::Map<String, Value>,
    hooks: *mut c_void,
    out: &'a TensorSink,
}

impl<'a> ForwardCall<'a> {
    pub(crate) fn from_abi(args: &'a ForwardArgs, out: &'a TensorSink) -> Result<ForwardCall<'a>> {
        // SAFETY: the host passes valid pointers for the duration of the call.
        let tokens = if args.n_tokens == 0 {
            &[][..]
        } else {
            unsafe { std::slice::from_raw_parts(args.tokens, args.n_tokens) }
        };
        let opts = unsafe { args.options.to_str() }.map_err(|e| Error::msg(e.to_string()))?;
        let mut opts: ForwardOptions = if opts.trim().is_empty() {
            ForwardOptions::default()
        } else {
            serde_json::from_str(opts)?
        };
        if opts.variants.is_empty() {
            opts.variants.push(Variant::default());
        }
        let segments = check_segments(opts.segments, tokens.len())?;
        Ok(ForwardCall {
            tokens,
            variants: opts.variants,
            last_only: opts.last_only,
            segments,
            options: opts.rest,
            hooks: args.hooks,
            out,
        })
    }

    pub fn tokens(&self) -> &[u32] {
        self.tokens
    }

    pub fn variants(&self) -> &[Variant] {
        &self.variants
    }

    /// Only the last position's logits are wanted (`[1, V]`); the rest of the sequence is
    /// context. Models with a cache may reuse it when `tokens` extends the previous call.
    pub fn last_only(&self) -> bool {
        self.last_only
    }

    /// Lengths of the documents packed into this call, in order, summing to the number of
    /// tokens (`[n_tokens]` for one document). Each document's positions start at 0, it
    /// sees only itself (recurrent state starts fresh at its start), and every output row
    /// is what running the document alone gives (`docs/plugins.md`, "Packed documents").
    pub fn segments(&self) -> &[usize] {
        &self.segments
    }

    /// Whether several documents are packed into this call.
    pub fn packed(&self) -> bool {
        self.segments.len() > 1
    }

    /// The documents' position ranges `start..end` in the packed sequence.
    pub fn segment_ranges(&self) -> Vec<std::ops::Range<usize>> {
        segment_ranges(&self.segments)
    }

    /// Whether the host captures or intervenes at hook point `name` in this call. Plugins
    /// may take a fused path past hooks nobody listens to. A host that does not say
    /// (`active_hooks` absent) is assumed to listen everywhere.
    pub fn hook_active(&self, name: &str) -> bool {
        match self.options.get("active_hooks").and_then(Value::as_array) {
            Some(list) => list.iter().any(|h| h.as_str() == Some(name)),
            None => !self.hooks.is_null(),
        }
    }

    /// Any other forward option the host passed (forward-compatible extension point).
    pub fn option(&self, name: &str) -> Option<&Value> {
        self.options.get(name)
    }

    /// Pass `t` through hook point `name` of `variant`: the host may capture it or apply an
    /// intervention; continue with the tensor returned. The returned tensor has the same
    /// handle (`id()`) as `t` exactly when no intervention changed it.
    pub fn hook(&mut self, variant: usize, name: &str, t: Tensor) -> Result<Tensor> {
        if self.hooks.is_null() {
            return Ok(t);
        }
        let api = api()?;
        let mut out = 0;
        let mut err = TextBuf::new();
        let e = err.sink();
        // SAFETY: hooks is the host's context for this call; t stays alive through it.
        let st = unsafe {
            (api.hook)(
                self.hooks,
                variant as u32,
                Str::new(name),
                t.id(),
                &mut out,
                &e,
            )
        };
        check(st, err, name)?;
        Ok(Tensor::from_id(out))
    }

    /// [`ForwardCall::hook`], setting `*changed` when the host hands back another tensor
    /// (an intervention). Callers check [`ForwardCall::hook_active`] first.
    pub fn hook_tracked(
        &mut self,
        variant: usize,
        name: &str,
        t: Tensor,
        changed: &mut bool,
    ) -> Result<Tensor> {
        let out = self.hook(variant, name, t.clone())?;
        if out.id() != t.id() {
            *changed = true;
        }
        Ok(out)
    }

    /// Hand an output of `variant` to the host (`"logits"` is required).
    pub fn emit(&mut self, variant: usize, name: &str, t: Tensor) {
        // SAFETY: the sink is valid during the call; the host takes over the reference.
        unsafe { (self.out.put)(self.out.ctx, variant as u32, Str::new(name), t.into_id()) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segments_are_checked_and_split_into_ranges() {
        assert_eq!(check_segments(vec![], 5).unwrap(), [5]);
        assert_eq!(check_segments(vec![1, 4], 5).unwrap(), [1, 4]);
        let e = check_segments(vec![1, 3], 5).unwrap_err().to_string();
        assert!(e.contains("sum to 4") && e.contains("5 tokens"), "{e}");
        let e = check_segments(vec![5, 0], 5).unwrap_err().to_string();
        assert!(e.contains("document 1 has length 0"), "{e}");
        assert!(check_segments(vec![usize::MAX, 2], 1).is_err());
        assert_eq!(segment_ranges(&[2, 1, 3]), [0..2, 2..3, 3..6]);
        let info: ModelInfo = serde_json::from_str(
            r#"{"arch": "x", "vocab_size": 2, "n_layers": 0, "d_model": 1, "context_length": null,
                "hooks": [], "ablation_methods": [], "default_ablation": "", "causal": true}"#,
        )
        .unwrap();
        assert!(!info.packing, "packing is false when a plugin does not say");
    }
}
