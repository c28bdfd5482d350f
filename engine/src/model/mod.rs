//! A loaded model: the plugin's model instance plus the host-side facts around it
//! (config, tokenizer, provenance), forward passes with captures and interventions.

mod files;

use crate::hooks::{glob_match, HookCtx, Intervention};
use crate::plugin::host::{host, ForwardTarget};
use crate::plugin::{ModelLoad, Plugin, PluginModel, PluginSet};
use anyhow::{anyhow, bail, ensure, Context, Result};
use files::ModelFiles;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tokit_compute::Tensor;
use tokit_model::{HfConfig, Tokenizer};
use tokit_sdk::abi::ModelId;
use tokit_sdk::{InterventionRequest, ModelInfo, Variant};

/// A forward request.
#[derive(Clone, Debug, Default)]
pub struct ForwardSpec {
    /// Variants to compute; empty = one clean variant.
    pub variants: Vec<Variant>,
    /// Hook patterns to capture (in every variant).
    pub capture: Vec<String>,
    pub interventions: Vec<Intervention>,
    /// Only the last position's logits (`[1, V]`), for generation steps.
    pub last_only: bool,
    /// Lengths of documents packed into this forward, summing to the number of tokens;
    /// empty (or one entry) = one document. Each document's positions start at 0 and it
    /// sees only itself: every output row equals running its document alone. Needs a
    /// model whose `info.packing` is true (`docs/architecture.md`, "Packed documents").
    pub segments: Vec<usize>,
    /// Return non-finite logits instead of refusing them (to study what an intervention or
    /// a broken checkpoint does); the model's `allow_nonfinite` load option does the same.
    pub allow_nonfinite: bool,
}

/// Outputs per variant: `"logits"` `[T, V]` and captured hooks by name.
pub type ForwardResult = Vec<BTreeMap<String, Tensor>>;

/// The shared part of a [`Model`].
pub struct ModelInner {
    pub id: ModelId,
    pub plugin: Arc<Plugin>,
    pub arch: String,
    pub path: PathBuf,
    pub config: HfConfig,
    /// None for models over bare ids (`"tokenizer": "ids"` in config.json).
    pub tokenizer: Option<Tokenizer>,
    pub info: ModelInfo,
    pub fingerprint: String,
    /// What the model was loaded from and how, so it can be loaded again (reload).
    pub source: PathBuf,
    pub options: LoadOptions,
    /// The plugin's instance (freed when the last clone of the [`Model`] goes).
    instance: PluginModel,
}

impl Drop for ModelInner {
    fn drop(&mut self) {
        // Metric plugins can no longer reach it; `instance` frees the plugin's model next.
        host().remove_model(self.id);
    }
}

/// A model loaded through an architecture plugin. Cheap to clone.
#[derive(Clone)]
pub struct Model(pub Arc<ModelInner>);

/// Options for loading.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct LoadOptions {
    /// Architecture to use instead of the one config.json names.
    pub arch: Option<String>,
    /// Passed to the plugin as JSON.
    #[serde(default)]
    pub options: serde_json::Map<String, Value>,
    /// Load weights holding NaN or infinities (to study a broken checkpoint); otherwise such
    /// a weight is an error naming the tensor.
    #[serde(default)]
    pub allow_nonfinite: bool,
}

impl std::ops::Deref for Model {
    type Target = ModelInner;
    fn deref(&self) -> &ModelInner {
        &self.0
    }
}

impl Model {
    /// Load the model directory `path` with the plugin that serves its architecture.
    pub fn load(plugins: &PluginSet, path: &Path, opts: &LoadOptions) -> Result<Model> {
        let files = ModelFiles::open(path)?;
        let config = &files.config;
        let key = match &opts.arch {
            Some(a) => a.clone(),
            None => config
                .model_type()
                .map(str::to_string)
                .or_else(|_| config.architectures().and_then(|a| a.first().cloned().ok_or_else(|| anyhow!("empty"))))
                .map_err(|_| {
                    anyhow!(
                        "{}: neither `model_type` nor `architectures` is set; pass `arch` explicitly",
                        config.path().display()
                    )
                })?,
        };
        let (plugin, arch) = plugins
            .find_arch(&key)
            .or_else(|| config.architectures().ok().into_iter().flatten().find_map(|a| plugins.find_arch(&a)))
            .ok_or_else(|| {
                anyhow!(
                    "{}: unknown model_type `{key}`: no loaded plugin provides it (architectures: {})",
                    config.path().display(),
                    plugins.arch_list()
                )
            })?;
        let tokenizer = files.tokenizer()?;
        let ModelFiles {
            config,
            weights,
            location: dir,
            fingerprint,
        } = files;
        let source = host().add_source(Arc::new(files::CheckedWeights {
            weights,
            allow_nonfinite: opts.allow_nonfinite,
        }));
        let config_json = config.to_json();
        let options_json = Value::Object(opts.options.clone()).to_string();
        let path_str = dir.to_string_lossy().to_string();
        let load = ModelLoad {
            arch: &arch,
            path: &path_str,
            config: &config_json,
            options: &options_json,
        };
        let loaded = plugin.load_model(&load, source);
        host().remove_source(source);
        let instance = loaded
            .with_context(|| format!("loading {} with plugin {}", dir.display(), plugin.name()))?;
        // On error `instance` is dropped here, which frees the plugin's model.
        let info = instance
            .info_json()
            .and_then(|json| {
                serde_json::from_str::<ModelInfo>(&json)
                    .with_context(|| format!("plugin {}: invalid model_info JSON", plugin.name()))
            })
            .and_then(|info| {
                if let Some(t) = &tokenizer {
                    t.check_vocab(info.vocab_size)
                        .with_context(|| format!("model {}", dir.display()))?;
                }
                Ok(info)
            })?;
        let inner = Arc::new_cyclic(|weak: &std::sync::Weak<ModelInner>| {
            let target: std::sync::Weak<dyn ForwardTarget> = weak.clone();
            ModelInner {
                id: host().add_model(target),
                plugin: plugin.clone(),
                arch,
                path: dir,
                config,
                tokenizer,
                info,
                fingerprint,
                source: path.to_path_buf(),
                options: opts.clone(),
                instance,
            }
        });
        Ok(Model(inner))
    }
}

impl Model {
    /// Load this model again, from the same path with the same options, through the
    /// plugins in `plugins` (after its plugin was reloaded: the new code makes a new model).
    pub fn reload(&self, plugins: &PluginSet) -> Result<Model> {
        Model::load(plugins, &self.source, &self.options)
    }
}

impl ModelInner {
    pub fn info(&self) -> &ModelInfo {
        &self.info
    }

    fn tokenizer(&self) -> Result<&Tokenizer> {
        self.tokenizer.as_ref().ok_or_else(|| {
            anyhow!(
                "model {} has no tokenizer, so it takes token ids, not text: add its \
                 tokenizer.json to the model directory (or \"tokenizer\": \"bytes\" to \
                 config.json for a byte-level model), or pass token ids (--tokens, or ids in a script)",
                self.path.display()
            )
        })
    }

    pub fn encode(&self, text: &str) -> Result<Vec<u32>> {
        self.tokenizer()?.encode(text)
    }

    pub fn decode(&self, ids: &[u32]) -> Result<String> {
        self.tokenizer()?.decode(ids)
    }

    /// Readable text of one token (the id itself when there is no tokenizer).
    pub fn token_str(&self, id: u32) -> String {
        self.tokenizer
            .as_ref()
            .and_then(|t| t.token_str(id))
            .unwrap_or_else(|| id.to_string())
    }

    /// Check tokens and hook patterns against the model.
    fn validate(&self, tokens: &[u32], spec: &ForwardSpec) -> Result<()> {
        let info = &self.info;
        ensure!(!tokens.is_empty(), "forward: no tokens");
        if let Some((i, &t)) = tokens
            .iter()
            .enumerate()
            .find(|(_, &t)| t as usize >= info.vocab_size)
        {
            bail!(
                "forward: token {t} at position {i} is outside the vocabulary ({} tokens)",
                info.vocab_size
            );
        }
        let segments = tokit_sdk::check_segments(spec.segments.clone(), tokens.len())
            .map_err(|e| anyhow!("{e}"))?;
        ensure!(
            segments.len() == 1 || info.packing,
            "{} cannot pack documents; run them one by one",
            info.arch
        );
        if let Some(n) = info.context_length {
            // Packed documents each start at position 0: the context bounds each one.
            if let Some((i, &len)) = segments.iter().enumerate().find(|(_, &len)| len > n) {
                if segments.len() == 1 {
                    bail!("forward: {len} tokens exceed the model's context of {n}");
                }
                bail!("forward: packed document {i} has {len} tokens, more than the model's context of {n}");
            }
        }
        for p in spec
            .capture
            .iter()
            .chain(spec.interventions.iter().map(|i| &i.hook))
        {
            ensure!(
                info.hooks.iter().any(|h| glob_match(p, h)),
                "hook pattern `{p}` matches no hook point of this {} model (hooks: {})",
                info.arch,
                info.hooks.join(", ")
            );
        }
        for v in &spec.variants {
            v.method_for(info).map_err(|e| anyhow!("{e}"))?;
            if let Some(&j) = v.ablate.iter().find(|&&j| j >= tokens.len()) {
                bail!("ablate: position {j} is beyond the {} tokens", tokens.len());
            }
        }
        Ok(())
    }

    /// The first hook point, in the model's order, whose activation of `variant` holds a
    /// NaN or an infinity: where a non-finite forward went wrong.
    fn first_nonfinite_hook(
        &self,
        tokens: &[u32],
        variant: &Variant,
        spec: &ForwardSpec,
    ) -> Option<String> {
        let spec = ForwardSpec {
            variants: vec![variant.clone()],
            capture: vec!["*".into()],
            interventions: spec.interventions.clone(),
            segments: spec.segments.clone(),
            allow_nonfinite: true,
            ..Default::default()
        };
        let out = self.forward(tokens, &spec).ok()?.into_iter().next()?;
        self.info
            .hooks
            .iter()
            .find(|h| {
                // Pre-softmax scores are −∞ where the mask hides a key, by design.
                let masked_ok = h.ends_with("hook_scores");
                out.get(*h).is_some_and(|t| {
                    t.data().iter().any(|&x| {
                        x.is_nan() || x == f32::INFINITY || (x == f32::NEG_INFINITY && !masked_ok)
                    })
                })
            })
            .cloned()
    }

    /// Run the model on `tokens`. Non-finite logits are an error naming the first hook
    /// point where non-finite values appear, unless `spec` or the load allows them.
    pub fn forward(&self, tokens: &[u32], spec: &ForwardSpec) -> Result<ForwardResult> {
        self.validate(tokens, spec)?;
        let variants = if spec.variants.is_empty() {
            vec![Variant::default()]
        } else {
            spec.variants.clone()
        };
        // Hook points something listens to, so plugins may take fused paths elsewhere.
        let active: Vec<&String> = self
            .info
            .hooks
            .iter()
            .filter(|h| {
                spec.capture
                    .iter()
                    .chain(spec.interventions.iter().map(|i| &i.hook))
                    .any(|p| glob_match(p, h))
            })
            .collect();
        let mut options = serde_json::json!({ "variants": variants, "last_only": spec.last_only, "active_hooks": active });
        if spec.segments.len() > 1 {
            options["segments"] = serde_json::json!(spec.segments);
        }
        let options = options.to_string();
        let mut hooks = HookCtx::new(
            spec.capture.clone(),
            spec.interventions.clone(),
            host().backend(),
        );
        let emitted = self.instance.forward(tokens, &options, &mut hooks)?;
        let mut out: ForwardResult = vec![BTreeMap::new(); variants.len()];
        for (v, name, t) in emitted {
            if let Some(slot) = out.get_mut(v as usize) {
                slot.insert(name, t);
            }
        }
        for (v, caps) in hooks.captured.into_iter().enumerate() {
            if let Some(slot) = out.get_mut(v) {
                slot.extend(caps);
            }
        }
        let vocab = self.info.vocab_size;
        let rows = if spec.last_only { 1 } else { tokens.len() };
        for (v, o) in out.iter_mut().enumerate() {
            let logits = o.get_mut("logits").ok_or_else(|| {
                anyhow!(
                    "plugin {}: forward emitted no logits for variant {v}",
                    self.plugin.name()
                )
            })?;
            // A plugin that ignores `last_only` returns every row; keep the last.
            if spec.last_only && logits.shape() == [tokens.len(), vocab] {
                *logits = host()
                    .backend()
                    .slice(logits, 0, tokens.len() - 1, tokens.len())?;
            }
            ensure!(
                logits.shape() == [rows, vocab],
                "plugin {}: logits of variant {v} have shape {:?}, expected [{rows}, {vocab}]",
                self.plugin.name(),
                logits.shape(),
            );
        }
        if !(self.options.allow_nonfinite || spec.allow_nonfinite) {
            for (v, o) in out.iter().enumerate() {
                // The first read of the logits: a failed device readback is an error here.
                let logits = o["logits"].try_data()?;
                if let Some(i) = first_nonfinite(logits) {
                    let (row, col) = (i / vocab, i % vocab);
                    let origin = if spec.last_only {
                        String::new()
                    } else {
                        self.first_nonfinite_hook(tokens, &variants[v], spec)
                            .map(|h| format!("; the first non-finite values appear at hook `{h}`"))
                            .unwrap_or_default()
                    };
                    bail!(
                        "{}: the logits of variant {v} are not finite (row {row}, token {col}){origin} \
                         (load with allow_nonfinite: true to study them anyway)",
                        self.path.display()
                    );
                }
            }
        }
        Ok(out)
    }
}

#[derive(Deserialize, Default)]
struct JsonForward {
    #[serde(default)]
    variants: Vec<Variant>,
    #[serde(default)]
    capture: Vec<String>,
    #[serde(default)]
    interventions: Vec<InterventionRequest>,
    #[serde(default)]
    segments: Vec<usize>,
}

impl ForwardTarget for ModelInner {
    fn info_json(&self) -> Result<String> {
        Ok(serde_json::to_string(&self.info)?)
    }

    fn forward_json(&self, tokens: &[u32], options: &str) -> Result<Vec<Vec<(String, Tensor)>>> {
        let req: JsonForward = if options.trim().is_empty() {
            JsonForward::default()
        } else {
            serde_json::from_str(options).context("model_forward options")?
        };
        let spec = ForwardSpec {
            variants: req.variants,
            capture: req.capture,
            interventions: req
                .interventions
                .into_iter()
                .map(crate::hooks::from_request)
                .collect::<Result<_>>()?,
            segments: req.segments,
            ..Default::default()
        };
        Ok(self
            .forward(tokens, &spec)?
            .into_iter()
            .map(|m| m.into_iter().collect())
            .collect())
    }
}

/// Index of the first NaN or infinity in `x`. Every forward's logits and every weight pass
/// through here, so the common all-finite case runs as a branch-free (vectorised) pass
/// over blocks, and only a block that fails is searched.
pub(crate) fn first_nonfinite(x: &[f32]) -> Option<usize> {
    const BLOCK: usize = 256;
    x.chunks(BLOCK)
        .position(|c| !c.iter().fold(true, |ok, v| ok & v.is_finite()))
        .and_then(|b| {
            let c = &x[b * BLOCK..(b * BLOCK + BLOCK).min(x.len())];
            c.iter().position(|v| !v.is_finite()).map(|i| b * BLOCK + i)
        })
}

#[cfg(test)]
mod tests {
    use super::first_nonfinite;

    #[test]
    fn first_nonfinite_finds_the_first_bad_value_in_any_block() {
        let mut x = vec![1.0f32; 1000];
        assert_eq!(first_nonfinite(&x), None);
        assert_eq!(first_nonfinite(&[]), None);
        x[999] = f32::NEG_INFINITY;
        assert_eq!(first_nonfinite(&x), Some(999));
        x[300] = f32::NAN;
        assert_eq!(first_nonfinite(&x), Some(300));
        x[3] = f32::INFINITY;
        assert_eq!(first_nonfinite(&x), Some(3));
    }
}
