//! tokit-sdk: write tokit plugins in safe Rust.
//!
//! A plugin is a `cdylib` that calls [`export_plugin!`] once. It provides
//! [`Architecture`]s (a model's forward pass, written with host ops on [`Tensor`]s and
//! passing activations through named hook points) and/or [`Metric`]s (measures computed
//! from tokens, tensors and forward passes the host runs for them). Everything crosses a
//! plain C ABI ([`abi`]) so plugins built by another compiler or opt-level keep working for
//! the whole ABI major version; plugin authors never write `unsafe`.

pub mod abi;
mod arch;
mod error;
mod export;
mod host;
mod intervention;
mod metric;
pub mod nn;
pub mod ops;
mod params;
mod record;
mod tensor;

pub use arch::{
    check_segments, segment_ranges, Ablation, ArchSpec, Architecture, ForwardCall, ModelInfo,
    ModelSource, Variant,
};
pub use error::{Error, Result, ResultExt};
pub use host::{check_cancelled, is_cancelled, log, progress, tokenize, Level};
pub use intervention::{Intervention, InterventionAction, InterventionRequest, Values};
pub use metric::{
    compute_metric, spec_of, CorpusMode, ForwardOutput, ForwardRequest, Metric, MetricInput,
    MetricOutput, MetricSpec, ModelRef, ParamSpec,
};
pub use params::{Array, InfoUnit, ParamValue, Params, RawParams, Unit};
pub use record::MetricRecord;
pub use serde_json;
pub use tensor::{AttnMask, Tensor};

/// Version of this SDK, recorded in every plugin's entry.
pub const SDK_VERSION: &str = env!("CARGO_PKG_VERSION");

#[doc(hidden)]
pub mod __private {
    pub use crate::export::{init, load_erased, ActionFn, ArchEntry, MetricEntry, Registry};
    pub use crate::params::doc_text;
}
