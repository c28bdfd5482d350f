//! tokit-engine: the host of tokit. It loads architecture and metric plugins through a
//! stable C ABI, owns weights, tensors and the compute backend, runs forward passes with
//! hooks and interventions, and exposes all of it to Rhai scripts and the command line.

pub mod config;
pub mod corpus;
pub mod engine;
pub mod generate;
pub mod hooks;
pub mod memory;
pub mod model;
pub mod plugin;
pub mod progress;
pub mod repl;
pub mod report;

pub use config::{BackendChoice, Config, GpuWeights};
pub use engine::{AnalyzeInput, Engine};
pub use generate::GenerateOptions;
pub use hooks::{Action, Intervention};
pub use model::{ForwardSpec, LoadOptions, Model};
pub use report::Report;
pub use tokit_compute::Tensor;
pub mod bench;
pub mod cli;
pub mod script;
pub mod shard;
pub mod surrogates;
