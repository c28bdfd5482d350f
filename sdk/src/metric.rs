//! What a metric plugin implements: measures computed from named inputs, possibly by
//! asking the host to run a model, returned as one result record.

use crate::abi::{ForwardArgs, ModelId, Str, TensorSink};
use crate::arch::{ModelInfo, Variant};
use crate::error::{Error, Result};
use crate::host::{api, check, TextBuf};
use crate::intervention::InterventionRequest;
use crate::record::MetricRecord;
use crate::tensor::Tensor;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::collections::BTreeMap;
use std::ffi::c_void;

/// A family of measures (one plugin may export several metric types).
pub trait Metric: 'static {
    /// The metrics this type computes, with their parameters.
    fn specs() -> Vec<MetricSpec>
    where
        Self: Sized;
    /// Compute `input.metric`.
    fn compute(input: &MetricInput) -> Result<MetricOutput>
    where
        Self: Sized;
}

/// Static description of one metric.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct MetricSpec {
    pub name: String,
    pub description: String,
    /// Unit of the value and of the local values (`nats` unless said otherwise).
    pub unit: String,
    /// Needs a `model` input.
    pub needs_model: bool,
    /// MEASURES.md marks the formula a reconstruction of the paper ([P~]).
    #[serde(default)]
    pub reconstruction: bool,
    #[serde(default)]
    pub params: Vec<ParamSpec>,
}

/// One parameter of a metric.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ParamSpec {
    pub name: String,
    /// `number`, `integer`, `string`, `bool`, `array`.
    pub kind: String,
    pub default: Value,
    pub doc: String,
}

impl ParamSpec {
    pub fn new(name: &str, kind: &str, default: Value, doc: &str) -> ParamSpec {
        ParamSpec {
            name: name.into(),
            kind: kind.into(),
            default,
            doc: doc.into(),
        }
    }
}

/// Everything a metric receives.
pub struct MetricInput {
    pub metric: String,
    pub params: Map<String, Value>,
    /// The tokenised text, if any.
    pub tokens: Vec<u32>,
    pub model: Option<ModelRef>,
    pub tensors: Vec<(String, Tensor)>,
}

impl MetricInput {
    fn param(&self, name: &str) -> Option<&Value> {
        self.params.get(name).filter(|v| !v.is_null())
    }

    fn bad(&self, name: &str, expected: &str, v: &Value) -> Error {
        Error::msg(format!(
            "{}: parameter `{name}`: expected {expected}, found {v}",
            self.metric
        ))
    }

    pub fn f64_or(&self, name: &str, default: f64) -> Result<f64> {
        match self.param(name) {
            None => Ok(default),
            Some(v) => v.as_f64().ok_or_else(|| self.bad(name, "a number", v)),
        }
    }

    pub fn usize_or(&self, name: &str, default: usize) -> Result<usize> {
        match self.param(name) {
            None => Ok(default),
            Some(v) => v
                .as_u64()
                .map(|n| n as usize)
                .ok_or_else(|| self.bad(name, "a non-negative integer", v)),
        }
    }

    pub fn str_or(&self, name: &str, default: &str) -> Result<String> {
        match self.param(name) {
            None => Ok(default.to_string()),
            Some(v) => v
                .as_str()
                .map(str::to_string)
                .ok_or_else(|| self.bad(name, "a string", v)),
        }
    }

    pub fn bool_or(&self, name: &str, default: bool) -> Result<bool> {
        match self.param(name) {
            None => Ok(default),
            Some(v) => v
                .as_bool()
                .ok_or_else(|| self.bad(name, "true or false", v)),
        }
    }

    /// The model input, or an error saying the metric needs one.
    pub fn model(&self) -> Result<&ModelRef> {
        self.model
            .as_ref()
            .ok_or_else(|| Error::msg(format!("{}: needs a `model` input", self.metric)))
    }

    pub fn tensor(&self, name: &str) -> Result<&Tensor> {
        self.tensors
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, t)| t)
            .ok_or_else(|| Error::msg(format!("{}: needs a tensor input `{name}`", self.metric)))
    }

    /// The token input, or an error when it has fewer than `n` tokens.
    pub fn tokens_at_least(&self, n: usize) -> Result<&[u32]> {
        if self.tokens.len() < n {
            return Err(Error::msg(format!(
                "{}: needs at least {n} tokens of text, got {}",
                self.metric,
                self.tokens.len()
            )));
        }
        Ok(&self.tokens)
    }
}

/// A model loaded in the host, as a metric sees it.
pub struct ModelRef {
    pub(crate) id: ModelId,
}

/// What to compute in [`ModelRef::forward`].
#[derive(Clone, Debug, Default, Serialize)]
pub struct ForwardRequest {
    pub variants: Vec<Variant>,
    /// Hook-name patterns to capture (`blocks.*.hook_resid_post`).
    pub capture: Vec<String>,
    /// Changes the host makes at hook points (applied before capture).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub interventions: Vec<InterventionRequest>,
}

/// Outputs of [`ModelRef::forward`], per variant: `"logits"` and captured hooks.
pub type ForwardOutput = Vec<BTreeMap<String, Tensor>>;

impl ModelRef {
    pub fn info(&self) -> Result<ModelInfo> {
        let api = api()?;
        let mut out = TextBuf::new();
        let o = out.sink();
        let mut err = TextBuf::new();
        let e = err.sink();
        // SAFETY: pointers valid through the call.
        let st = unsafe { (api.model_info)(api.ctx, self.id, &o, &e) };
        check(st, err, "model_info")?;
        Ok(serde_json::from_str(&out.0)?)
    }

    /// Run the model on `tokens` for every variant of `request`.
    pub fn forward(&self, tokens: &[u32], request: &ForwardRequest) -> Result<ForwardOutput> {
        unsafe extern "C" fn put(
            ctx: *mut c_void,
            variant: u32,
            name: Str,
            t: crate::abi::TensorId,
        ) {
            // SAFETY: ctx is the Vec below; we take over the reference.
            let out = unsafe { &mut *(ctx as *mut ForwardOutput) };
            let tensor = Tensor::from_id(t);
            let v = variant as usize;
            if out.len() <= v {
                out.resize_with(v + 1, BTreeMap::new);
            }
            if let Ok(name) = unsafe { name.to_str() } {
                out[v].insert(name.to_string(), tensor);
            }
        }
        let api = api()?;
        let options = serde_json::to_string(request)?;
        let args = ForwardArgs {
            struct_size: std::mem::size_of::<ForwardArgs>() as u32,
            tokens: tokens.as_ptr(),
            n_tokens: tokens.len(),
            options: Str::new(&options),
            hooks: std::ptr::null_mut(),
        };
        let mut out: ForwardOutput = Vec::new();
        let sink = TensorSink {
            ctx: &mut out as *mut ForwardOutput as *mut c_void,
            put,
        };
        let mut err = TextBuf::new();
        let e = err.sink();
        // SAFETY: pointers valid through the call.
        let st = unsafe { (api.model_forward)(api.ctx, self.id, &args, &sink, &e) };
        check(st, err, "model_forward")?;
        Ok(out)
    }

    /// Clean logits `[T, V]` of `tokens`.
    pub fn logits(&self, tokens: &[u32]) -> Result<Tensor> {
        let mut out = self.forward(tokens, &ForwardRequest::default())?;
        out.first_mut()
            .and_then(|v| v.remove("logits"))
            .ok_or_else(|| Error::msg("model_forward returned no logits"))
    }
}

/// A metric's result: its [`MetricRecord`] plus named tensors (the host adds the
/// metric name, plugin, version and provenance).
#[derive(Debug, Default)]
pub struct MetricOutput {
    pub value: Option<f64>,
    pub unit: String,
    /// How the value was obtained (`exact`, `plug-in`, `monte-carlo`, ...).
    pub estimator: String,
    /// Named scalars: standard error, p-value, bias-corrected value, ...
    pub scalars: BTreeMap<String, f64>,
    /// Named tensors: local (per-token) values, matrices.
    pub tensors: Vec<(String, Tensor)>,
    /// Effective parameters (defaults filled in).
    pub params: Map<String, Value>,
    /// Ablation method used, for measures that ablate.
    pub ablation: Option<String>,
    pub notes: Vec<String>,
    /// How `Result.plot` draws this result (engine `report/plot.rs` documents the keys:
    /// `kind` `heatmap` or `lines`, tensor names, axis labels with units, a marked
    /// point); `None` lets the engine pick by the tensors' shapes.
    pub plot: Option<Value>,
}

impl MetricOutput {
    pub fn scalar(mut self, name: &str, v: f64) -> MetricOutput {
        self.scalars.insert(name.to_string(), v);
        self
    }

    /// Add a tensor built from plain data.
    pub fn tensor(mut self, name: &str, data: &[f32], shape: &[usize]) -> Result<MetricOutput> {
        self.tensors
            .push((name.to_string(), Tensor::from_slice(data, shape)?));
        Ok(self)
    }

    /// The record this output sends through the ABI (everything but the tensors).
    pub fn record(&self) -> MetricRecord {
        MetricRecord {
            value: self.value,
            unit: self.unit.clone(),
            estimator: self.estimator.clone(),
            scalars: self.scalars.clone(),
            params: self.params.clone(),
            ablation: self.ablation.clone(),
            notes: self.notes.clone(),
            plot: self.plot.clone(),
        }
    }

    pub(crate) fn record_json(&self) -> Result<String> {
        Ok(serde_json::to_string(&self.record())?)
    }
}
