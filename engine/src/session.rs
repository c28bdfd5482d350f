//! A loaded model: the plugin's model instance plus the host-side facts around it
//! (config, tokenizer, provenance), forward passes with captures and interventions.

use crate::plugin::host::{host, ForwardTarget, WeightSource};
use crate::plugin::{Plugin, Text};
use anyhow::{anyhow, bail, ensure, Context, Result};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;
use std::ffi::c_void;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use tokit_compute::Tensor;
use tokit_model::gguf::Gguf;
use tokit_model::{HfConfig, Tokenizer, Weights};
use tokit_sdk::abi::{ForwardArgs, LoadArgs, ModelId, Str, TensorId, TensorSink};
use tokit_sdk::{InterventionAction, InterventionRequest, ModelInfo, Variant};

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
}

/// Outputs per variant: `"logits"` `[T, V]` and captured hooks by name.
pub type ForwardResult = Vec<BTreeMap<String, Tensor>>;

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
    pub(crate) captured: Vec<BTreeMap<String, Tensor>>,
}

impl HookCtx {
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
            let b = host().backend();
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

/// Weights exposed to the plugin during `model_load`, with Hugging Face tensor names.
enum FileWeights {
    /// A model directory; None when it has no safetensors (models that keep their
    /// parameters in their own format).
    Dir(Option<Weights>, PathBuf),
    /// A single GGUF file (dequantised on read, names mapped to Hugging Face's).
    Gguf(Gguf),
}

impl WeightSource for FileWeights {
    fn tensor(&self, name: &str) -> Result<Tensor> {
        match self {
            FileWeights::Dir(Some(w), _) => w.tensor(name),
            FileWeights::Dir(None, dir) => {
                bail!(
                    "{}: no *.safetensors weights (looking for tensor `{name}`)",
                    dir.display()
                )
            }
            FileWeights::Gguf(g) => g.tensor_hf(name),
        }
    }
    fn index_json(&self) -> String {
        let entries: Vec<(String, Value)> = match self {
            FileWeights::Dir(None, _) => vec![],
            FileWeights::Dir(Some(w), _) => w
                .names()
                .into_iter()
                .filter_map(|n| {
                    let (dt, shape) = w.info(&n)?;
                    Some((
                        n,
                        serde_json::json!({"dtype": format!("{dt:?}"), "shape": shape}),
                    ))
                })
                .collect(),
            FileWeights::Gguf(g) => g
                .names_hf()
                .into_iter()
                .filter_map(|n| {
                    let dtype = format!("{:?}", g.tensor_info(g.gguf_name_of(&n)?)?.ggml_type);
                    let shape = g.shape_hf(&n)?;
                    Some((n, serde_json::json!({"dtype": dtype, "shape": shape})))
                })
                .collect(),
        };
        Value::Object(entries.into_iter().collect()).to_string()
    }
}

/// A model's files, read: config, tokenizer, weights, and where they live.
struct ModelFiles {
    config: HfConfig,
    weights: FileWeights,
    /// The model directory, or the GGUF file.
    location: PathBuf,
    fingerprint: String,
}

impl ModelFiles {
    fn open(path: &Path) -> Result<ModelFiles> {
        if !path.exists() {
            bail!("model {}: no such file or directory", path.display());
        }
        if path.extension().is_some_and(|e| e == "gguf") {
            let g = Gguf::open(path)?;
            g.check_supported()?;
            let config = HfConfig::from_value(tokit_model::gguf_config(&g)?, path)?;
            return Ok(ModelFiles {
                config,
                fingerprint: gguf_fingerprint(&g),
                weights: FileWeights::Gguf(g),
                location: path.to_path_buf(),
            });
        }
        let config = HfConfig::load(path)?;
        let dir = if path.is_dir() {
            path.to_path_buf()
        } else {
            path.parent().map(Path::to_path_buf).unwrap_or_default()
        };
        let has_weights = std::fs::read_dir(&dir)
            .with_context(|| format!("model directory {}", dir.display()))?
            .flatten()
            .any(|e| {
                let name = e.file_name().to_string_lossy().to_string();
                name.ends_with(".safetensors") || name.ends_with(".safetensors.index.json")
            });
        let weights = if has_weights {
            Some(Weights::open(&dir)?)
        } else {
            None
        };
        Ok(ModelFiles {
            config,
            weights: FileWeights::Dir(weights, dir.clone()),
            fingerprint: tokit_model::fingerprint(&dir),
            location: dir,
        })
    }
}

impl ModelFiles {
    /// The tokenizer: GGUF-embedded, `tokenizer.json`, bytes, or none for bare ids.
    fn tokenizer(&self) -> Result<Option<Tokenizer>> {
        match &self.weights {
            FileWeights::Gguf(g) => Ok(Some(Tokenizer::from_gguf(g)?)),
            FileWeights::Dir(_, dir) => match self.config.opt_str("tokenizer") {
                Ok(Some("ids")) => Ok(None),
                _ => Ok(Some(Tokenizer::load(dir, &self.config)?)),
            },
        }
    }
}

/// FNV-1a over the GGUF's size, metadata and tensor table: cheap and stable.
fn gguf_fingerprint(g: &Gguf) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let mut eat = |b: &[u8]| {
        for &x in b {
            h = (h ^ x as u64).wrapping_mul(0x100_0000_01b3);
        }
    };
    eat(&g.file_len().to_le_bytes());
    for (k, v) in g.metadata() {
        eat(k.as_bytes());
        eat(v.to_json().to_string().as_bytes());
    }
    for t in g.tensors() {
        eat(t.name.as_bytes());
        eat(format!("{:?}", t.shape()).as_bytes());
    }
    format!("{h:016x}")
}

struct Handle(*mut c_void);
// SAFETY: the plugin's model is `Send`; access is serialised by the Mutex around it.
unsafe impl Send for Handle {}

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
    handle: Mutex<Handle>,
}

impl Drop for ModelInner {
    fn drop(&mut self) {
        host().remove_model(self.id);
        let h = self
            .handle
            .get_mut()
            .map(|h| h.0)
            .unwrap_or_else(|e| e.into_inner().0);
        if !h.is_null() && self.plugin.poisoned().is_none() {
            // SAFETY: created by this plugin's model_load, freed once.
            unsafe { (self.plugin.vtable().model_free)(h) };
        }
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
}

impl std::ops::Deref for Model {
    type Target = ModelInner;
    fn deref(&self) -> &ModelInner {
        &self.0
    }
}

impl Model {
    /// Load the model directory `path` with the plugin that serves its architecture.
    pub fn load(
        plugins: &crate::plugin::PluginSet,
        path: &Path,
        opts: &LoadOptions,
    ) -> Result<Model> {
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
        let source = host().add_source(Arc::new(weights));
        let config_json = config.to_json();
        let options_json = Value::Object(opts.options.clone()).to_string();
        let path_str = dir.to_string_lossy().to_string();
        let args = LoadArgs {
            struct_size: std::mem::size_of::<LoadArgs>() as u32,
            arch: Str::new(&arch),
            path: Str::new(&path_str),
            config: Str::new(&config_json),
            options: Str::new(&options_json),
            weights: source,
        };
        let mut raw: *mut c_void = std::ptr::null_mut();
        let loaded = plugin.call("model_load", |vt, err| unsafe {
            (vt.model_load)(&args, &mut raw, err)
        });
        host().remove_source(source);
        loaded
            .with_context(|| format!("loading {} with plugin {}", dir.display(), plugin.name()))?;

        let mut out = Text::new();
        let info = plugin
            .call("model_info", |vt, err| unsafe {
                (vt.model_info)(raw, &out.sink(), err)
            })
            .and_then(|()| {
                serde_json::from_str::<ModelInfo>(&out.0)
                    .with_context(|| format!("plugin {}: invalid model_info JSON", plugin.name()))
            })
            .and_then(|info| {
                if let Some(t) = &tokenizer {
                    t.check_vocab(info.vocab_size)
                        .with_context(|| format!("model {}", dir.display()))?;
                }
                Ok(info)
            });
        let info = match info {
            Ok(i) => i,
            Err(e) => {
                if plugin.poisoned().is_none() {
                    // SAFETY: created by model_load above and not shared.
                    unsafe { (plugin.vtable().model_free)(raw) };
                }
                return Err(e);
            }
        };
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
                handle: Mutex::new(Handle(raw)),
            }
        });
        Ok(Model(inner))
    }
}

impl Model {
    /// Load this model again, from the same path with the same options, through the
    /// plugins in `plugins` (after its plugin was reloaded: the new code makes a new model).
    pub fn reload(&self, plugins: &crate::plugin::PluginSet) -> Result<Model> {
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
                "model {} has no tokenizer (config.json: \"tokenizer\": \"ids\"); pass token ids",
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
        if let Some(n) = info.context_length {
            ensure!(
                tokens.len() <= n,
                "forward: {} tokens exceed the model's context of {n}",
                tokens.len()
            );
        }
        for p in spec
            .capture
            .iter()
            .chain(spec.interventions.iter().map(|i| &i.pattern))
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

    /// Run the model on `tokens`.
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
                    .chain(spec.interventions.iter().map(|i| &i.pattern))
                    .any(|p| glob_match(p, h))
            })
            .collect();
        let options =
            serde_json::json!({ "variants": variants, "last_only": spec.last_only, "active_hooks": active }).to_string();
        let mut hooks = HookCtx {
            capture: spec.capture.clone(),
            interventions: spec.interventions.clone(),
            captured: vec![],
        };
        let args = ForwardArgs {
            struct_size: std::mem::size_of::<ForwardArgs>() as u32,
            tokens: tokens.as_ptr(),
            n_tokens: tokens.len(),
            options: Str::new(&options),
            hooks: &mut hooks as *mut HookCtx as *mut c_void,
        };
        struct Collect(Vec<(u32, String, TensorId)>);
        unsafe extern "C" fn put(ctx: *mut c_void, variant: u32, name: Str, t: TensorId) {
            let c = unsafe { &mut *(ctx as *mut Collect) };
            c.0.push((
                variant,
                unsafe { name.to_str() }.unwrap_or("?").to_string(),
                t,
            ));
        }
        let mut collect = Collect(Vec::new());
        let sink = TensorSink {
            ctx: &mut collect as *mut Collect as *mut c_void,
            put,
        };
        let status = {
            let handle = self.handle.lock().unwrap_or_else(|e| e.into_inner());
            let raw = handle.0;
            self.plugin.call("forward", |vt, err| unsafe {
                (vt.model_forward)(raw, &args, &sink, err)
            })
        };
        // Take over every emitted reference, even when the call failed.
        let mut out: ForwardResult = vec![BTreeMap::new(); variants.len()];
        for (v, name, id) in collect.0 {
            let t = host().take(id)?;
            if let Some(slot) = out.get_mut(v as usize) {
                slot.insert(name, t);
            }
        }
        status?;
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
            interventions: req.interventions.into_iter().map(Into::into).collect(),
            ..Default::default()
        };
        Ok(self
            .forward(tokens, &spec)?
            .into_iter()
            .map(|m| m.into_iter().collect())
            .collect())
    }
}
