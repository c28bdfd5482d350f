//! The engine facade: configuration, backend, plugins, models and analyses in one place.
//! The CLI, the Rhai API and the REPL all go through it.

use crate::config::{BackendChoice, Config};
use crate::model::{LoadOptions, Model};
use crate::plugin::host::host;
use crate::plugin::{MetricCall, Plugin, PluginSet};
use crate::report::{Provenance, Report};
use anyhow::{bail, Context, Result};
use serde_json::{Map, Value};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tokit_compute::{CpuBackend, Tensor};
use tokit_sdk::MetricRecord;

/// What an analysis gets.
#[derive(Clone, Default)]
pub struct AnalyzeInput {
    pub model: Option<Model>,
    pub text: Option<String>,
    pub tokens: Option<Vec<u32>>,
    pub params: Map<String, Value>,
    pub tensors: Vec<(String, Tensor)>,
}

/// The engine: one per CLI run, script or REPL.
pub struct Engine {
    pub config: Config,
    pub plugins: PluginSet,
    backend_name: String,
}

impl Engine {
    /// Set up the backend and load every plugin found on the search path (plus `extra`).
    pub fn new(config: Config) -> Result<Engine> {
        config.check()?;
        let backend_name = select_backend(&config)?;
        let plugins = PluginSet::discover(&config.plugin_search_path());
        if plugins.plugins.is_empty() {
            tracing::warn!(
                "no plugins found (searched: {}); build them with `cargo build --workspace` or set plugin_dirs in tokit.ron",
                config.plugin_search_path().iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", ")
            );
        }
        Ok(Engine {
            config,
            plugins,
            backend_name,
        })
    }

    /// Load one more plugin file explicitly.
    pub fn add_plugin(&mut self, path: &Path) -> Result<Arc<Plugin>> {
        self.plugins.add_file(path)
    }

    /// The same engine over another plugin set (after a plugin reload).
    pub fn with_plugins(&self, plugins: PluginSet) -> Engine {
        Engine {
            config: self.config.clone(),
            plugins,
            backend_name: self.backend_name.clone(),
        }
    }

    pub fn backend_name(&self) -> &str {
        &self.backend_name
    }

    /// Resolve a model name from `tokit.ron` or take the path as is.
    pub fn model_path(&self, name: &str) -> PathBuf {
        self.config
            .models
            .get(name)
            .cloned()
            .unwrap_or_else(|| PathBuf::from(name))
    }

    pub fn load_model(&self, path: &str, opts: &LoadOptions) -> Result<Model> {
        Model::load(&self.plugins, &self.model_path(path), opts)
    }

    /// Run a plugin action (`call_plugin("arllm", "fit", ...)`).
    pub fn action(&self, plugin: &str, name: &str, args: &Value) -> Result<Value> {
        self.plugins.get(plugin)?.action(name, args)
    }

    /// Compute `metric` and return its report.
    pub fn analyze(&self, metric: &str, input: &AnalyzeInput) -> Result<Report> {
        let (plugin, spec) = self.plugins.find_metric(metric)?;
        if spec.needs_model && input.model.is_none() {
            bail!("metric `{metric}` needs a model (pass `model`)");
        }
        let tokens: Vec<u32> = match (&input.tokens, &input.text) {
            (Some(t), _) => t.clone(),
            (None, Some(text)) => match &input.model {
                Some(m) => m.encode(text)?,
                None => bail!("metric `{metric}`: text given without a model to tokenise it; pass `tokens` or `model`"),
            },
            (None, None) => Vec::new(),
        };
        let known: Vec<&str> = spec.params.iter().map(|p| p.name.as_str()).collect();
        if let Some(k) = input.params.keys().find(|k| !known.contains(&k.as_str())) {
            bail!(
                "metric `{metric}` has no parameter `{k}` (parameters: {})",
                known.join(", ")
            );
        }
        let params = Value::Object(input.params.clone()).to_string();
        let ret = plugin
            .compute_metric(&MetricCall {
                metric,
                params: &params,
                model: input.model.as_ref().map_or(0, |m| m.id),
                tokens: &tokens,
                inputs: &input.tensors,
            })
            .with_context(|| format!("metric `{metric}`"))?;
        let tensors: BTreeMap<String, Tensor> = ret.tensors.into_iter().collect();
        let rec: MetricRecord = serde_json::from_str(&ret.record).with_context(|| {
            format!(
                "plugin {}: metric `{metric}` returned an invalid record",
                plugin.name()
            )
        })?;
        let token_text = match &input.model {
            Some(m) => tokens.iter().map(|&t| m.token_str(t)).collect(),
            None => Vec::new(),
        };
        Ok(Report {
            metric: metric.to_string(),
            plugin: plugin.name().to_string(),
            plugin_version: plugin.desc.version.clone(),
            description: spec.description.clone(),
            reconstruction: spec.reconstruction,
            value: rec.value,
            unit: rec.unit,
            estimator: rec.estimator,
            scalars: rec.scalars,
            params: rec.params,
            notes: rec.notes,
            tensors,
            tokens: token_text,
            plot: rec.plot.filter(|v| v.is_object()),
            provenance: Provenance {
                model_path: input.model.as_ref().map(|m| m.path.display().to_string()),
                model_hash: input.model.as_ref().map(|m| m.fingerprint.clone()),
                arch: input.model.as_ref().map(|m| m.arch.clone()),
                ablation: rec.ablation,
                backend: self.backend_name.clone(),
                tokit_version: env!("CARGO_PKG_VERSION").to_string(),
                created_unix: std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_secs())
                    .unwrap_or(0),
            },
        })
    }

    /// Every metric with its plugin.
    pub fn metrics(&self) -> Vec<(String, tokit_sdk::MetricSpec)> {
        self.plugins
            .plugins
            .iter()
            .flat_map(|p| {
                p.desc
                    .metrics
                    .iter()
                    .map(|m| (p.name().to_string(), m.clone()))
            })
            .collect()
    }
}

/// Install the chosen backend in the host; returns its display name (with the adapter
/// for the GPU, and why `auto` chose the CPU when it did).
fn select_backend(config: &Config) -> Result<String> {
    let cpu = |why: Option<String>| {
        let weights = match config.cpu_weights {
            crate::config::CpuWeights::F32 => tokit_compute::CpuWeights::F32,
            crate::config::CpuWeights::F16 => tokit_compute::CpuWeights::F16,
            crate::config::CpuWeights::Bf16 => tokit_compute::CpuWeights::Bf16,
        };
        host().set_backend(Arc::new(
            CpuBackend::try_new(config.threads)?.with_weights(weights),
        ));
        let threads = config
            .threads
            .filter(|&t| t > 0)
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
        // Reduced-precision weights change the numbers, so they are named; so is the
        // AMX path (f32-accurate, but its sums are ordered differently).
        let weights = match weights {
            tokit_compute::CpuWeights::F32 => String::new(),
            w => format!(", {} weights", w.name()),
        } + CpuBackend::gemm_note();
        Ok(match why {
            Some(why) => format!("cpu ({threads} threads{weights}; auto: {why})"),
            None => format!("cpu ({threads} threads{weights})"),
        })
    };
    match config.backend {
        BackendChoice::Cpu => cpu(None),
        #[cfg(feature = "gpu")]
        BackendChoice::Gpu | BackendChoice::Auto => {
            // Auto wants a real GPU; an explicit `gpu` also takes a software adapter.
            let auto = config.backend == BackendChoice::Auto;
            match tokit_compute::GpuBackend::new(!auto, config.threads) {
                Ok(gpu) => {
                    let f16 = config.gpu_weights == crate::config::GpuWeights::F16;
                    let gpu = gpu.with_f16_weights(f16);
                    let name = tokit_compute::Backend::name(&gpu);
                    tracing::info!("backend: {name}");
                    host().set_backend(Arc::new(gpu));
                    Ok(name)
                }
                Err(e) if auto => {
                    let why = format!("{e:#}").replace("backend gpu: ", "");
                    tracing::info!("backend auto: using the CPU ({why})");
                    cpu(Some(why))
                }
                Err(e) => Err(e),
            }
        }
        #[cfg(not(feature = "gpu"))]
        BackendChoice::Gpu => Err(anyhow::anyhow!(
            "backend gpu: this build of tokit has no GPU backend (built without the `gpu` \
             feature); use --backend cpu or auto"
        )),
        #[cfg(not(feature = "gpu"))]
        BackendChoice::Auto => cpu(Some("built without the `gpu` feature".into())),
    }
}
