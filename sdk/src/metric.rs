//! What a metric plugin implements: measures computed from named inputs, possibly by
//! asking the host to run a model, returned as one result record.

use crate::abi::{ForwardArgs, ModelId, Str, TensorSink};
use crate::arch::{ModelInfo, Variant};
use crate::error::{Error, Result};
use crate::host::{api, check, TextBuf};
use crate::intervention::InterventionRequest;
use crate::params::{Params, RawParams, Unit};
use crate::record::MetricRecord;
use crate::tensor::Tensor;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::collections::BTreeMap;
use std::ffi::c_void;

/// One metric: its name, description, unit, typed parameters and computation. A plugin
/// lists each metric type once in `export_plugin!`; the SDK finds it by [`Metric::NAME`],
/// parses its [`Params`](crate::Params) and calls [`Metric::compute`].
///
/// A whole metric, as one file of a plugin (the example of `WRITING_A_METRIC.md`):
///
/// ```
/// //! `token_entropy`: the plug-in entropy of the text's token frequencies.
/// use std::collections::BTreeMap;
/// use tokit_sdk::{InfoUnit, Metric, MetricInput, MetricOutput, Result};
///
/// pub struct TokenEntropy;
///
/// tokit_sdk::params! {
///     pub struct Params {
///         /// `nats` or `bits`
///         unit: InfoUnit = InfoUnit::Nats,
///         /// leading tokens left out (a prompt)
///         skip: usize = 0,
///     }
/// }
///
/// impl Metric for TokenEntropy {
///     const NAME: &'static str = "token_entropy";
///     const DESCRIPTION: &'static str = "plug-in entropy of the text's token frequencies";
///     type Params = Params;
///
///     fn compute(input: &MetricInput, p: Params) -> Result<MetricOutput> {
///         let tokens = &input.tokens_at_least(p.skip + 1)?[p.skip..];
///         let mut counts = BTreeMap::new();
///         for t in tokens {
///             *counts.entry(t).or_insert(0usize) += 1;
///         }
///         let n = tokens.len() as f64;
///         let h: f64 = counts.values().map(|&c| c as f64 / n).map(|q| -q * q.ln()).sum();
///         let out = MetricOutput {
///             value: Some(p.unit.from_nats(h)),
///             unit: p.unit.into(),
///             estimator: "plug-in".into(),
///             ..Default::default()
///         };
///         Ok(out.scalar("distinct", counts.len() as f64))
///     }
/// }
///
/// // The plugin's table: one line per metric.
/// tokit_sdk::export_plugin! {
///     name: "example",
///     version: "0.1.0",
///     description: "a worked example",
///     architectures: [],
///     metrics: [TokenEntropy],
/// }
///
/// # fn main() {
/// // What the host sees and what a call computes (no host needed for this metric).
/// let spec = tokit_sdk::spec_of::<TokenEntropy>();
/// let names: Vec<&str> = spec.params.iter().map(|p| p.name.as_str()).collect();
/// assert_eq!(names, ["unit", "skip"]);
/// let input = MetricInput {
///     metric: "token_entropy".into(),
///     params: serde_json::json!({ "unit": "bits" }).as_object().unwrap().clone(),
///     tokens: vec![7, 8, 7, 8],
///     model: None,
///     tensors: Vec::new(),
/// };
/// let out = tokit_sdk::compute_metric::<TokenEntropy>(&input).unwrap();
/// assert!((out.value.unwrap() - 1.0).abs() < 1e-12);
/// assert_eq!(out.scalars["distinct"], 2.0);
/// # }
/// ```
pub trait Metric: 'static {
    /// The name scripts call it by (`analyze("surprisal", ...)`).
    const NAME: &'static str;
    const DESCRIPTION: &'static str;
    /// Unit of the value and of the local values.
    const UNIT: Unit = Unit::Nats;
    /// Needs a `model` input (the host refuses a call without one).
    const NEEDS_MODEL: bool = false;
    /// The formula is a reconstruction of the paper (`docs/measures.md` marks it [P~]).
    const RECONSTRUCTION: bool = false;
    /// How the metric runs over a corpus (`tokit analyze --corpus`, `docs/corpus.md`).
    const CORPUS: CorpusMode = CorpusMode::No;
    /// On a corpus: the result tensors that are per-token series (`[T]`, or `[k, T]` for k
    /// columns `name_i`), written as columns of the per-token table.
    const CORPUS_COLUMNS: &'static [&'static str] = &[];
    /// On a corpus: 1-D result tensors kept per document in the summary (a lag profile).
    const CORPUS_SERIES: &'static [&'static str] = &[];
    /// The parameters, declared with [`params!`](crate::params).
    type Params: Params;
    /// Compute the metric on `input` with the parsed parameters.
    fn compute(input: &MetricInput, params: Self::Params) -> Result<MetricOutput>;
}

/// The [`MetricSpec`] of `M`, as the host sees it.
pub fn spec_of<M: Metric>() -> MetricSpec {
    MetricSpec {
        name: M::NAME.into(),
        description: M::DESCRIPTION.into(),
        unit: M::UNIT,
        needs_model: M::NEEDS_MODEL,
        reconstruction: M::RECONSTRUCTION,
        params: M::Params::specs(),
        corpus: M::CORPUS,
        corpus_columns: M::CORPUS_COLUMNS.iter().map(|s| s.to_string()).collect(),
        corpus_series: M::CORPUS_SERIES.iter().map(|s| s.to_string()).collect(),
    }
}

/// How a metric runs over a corpus of documents (`docs/corpus.md`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CorpusMode {
    /// Not on a corpus: the engine refuses it there.
    #[default]
    No,
    /// Called once per document (or window): its [`Metric::CORPUS_COLUMNS`] become
    /// columns, its value and scalars per-document summary entries.
    PerDocument,
    /// Called on several documents packed into one sequence, with an input tensor
    /// `segments` of their lengths; its [`Metric::CORPUS_COLUMNS`] span the whole pack,
    /// each document computed as if it ran alone (its first token has no prediction:
    /// NaN). Scalars of a packed call describe the pack and are not kept.
    Packable,
}

/// Parse `input`'s parameters for `M` and compute it (what the host's call runs).
pub fn compute_metric<M: Metric>(input: &MetricInput) -> Result<MetricOutput> {
    let params = M::Params::parse(&input.raw_params())?;
    M::compute(input, params)
}

/// Static description of one metric.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct MetricSpec {
    pub name: String,
    pub description: String,
    /// Unit of the value and of the local values.
    pub unit: Unit,
    /// Needs a `model` input.
    pub needs_model: bool,
    /// The formula is a reconstruction of the paper (`docs/measures.md` marks it [P~]).
    #[serde(default)]
    pub reconstruction: bool,
    #[serde(default)]
    pub params: Vec<ParamSpec>,
    /// How it runs over a corpus, and which tensors become columns and per-document series.
    #[serde(default)]
    pub corpus: CorpusMode,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub corpus_columns: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub corpus_series: Vec<String>,
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
    /// The call's parameters, for [`Params::parse`].
    pub fn raw_params(&self) -> RawParams<'_> {
        RawParams {
            metric: &self.metric,
            params: &self.params,
            tensors: self.tensors.iter().map(|(n, _)| n.as_str()).collect(),
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
    /// Lengths of documents packed into this forward (empty: one document). The model
    /// must declare `ModelInfo::packing`; every output row is then its document's alone.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub segments: Vec<usize>,
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
    pub unit: Unit,
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
            unit: self.unit.to_string(),
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
