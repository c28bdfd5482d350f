//! A model's files on disk: config, tokenizer and weights from a model directory
//! (safetensors) or one GGUF file, exposed to the loading plugin as a weight source.

use crate::plugin::host::WeightSource;
use anyhow::{bail, Context, Result};
use serde_json::Value;
use std::path::{Path, PathBuf};
use tokit_compute::Tensor;
use tokit_model::gguf::Gguf;
use tokit_model::{HfConfig, Tokenizer, Weights};

/// Weights exposed to the plugin during `model_load`, with Hugging Face tensor names.
pub(super) enum FileWeights {
    /// A model directory; None when it has no safetensors (models that keep their
    /// parameters in their own format).
    Dir(Option<Weights>, PathBuf),
    /// A single GGUF file (dequantised on read, names mapped to Hugging Face's).
    Gguf(Gguf),
}

/// The weights as plugins read them at load: each tensor is scanned once for NaN and
/// infinities (cheap next to reading it), which are refused unless the load allows them.
pub struct CheckedWeights {
    pub weights: FileWeights,
    pub allow_nonfinite: bool,
}

impl WeightSource for CheckedWeights {
    fn tensor(&self, name: &str) -> Result<Tensor> {
        let t = self.weights.tensor(name)?;
        if !self.allow_nonfinite {
            if let Some(i) = super::first_nonfinite(t.data()) {
                let v = t.data()[i];
                bail!(
                    "weight `{name}` has a non-finite value ({v} at flat index {i}); the \
                     checkpoint is broken (load with allow_nonfinite: true to study it anyway)"
                );
            }
        }
        Ok(t)
    }
    fn index_json(&self) -> String {
        self.weights.index_json()
    }
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
pub(super) struct ModelFiles {
    pub config: HfConfig,
    pub weights: FileWeights,
    /// The model directory, or the GGUF file.
    pub location: PathBuf,
    pub fingerprint: String,
}

impl ModelFiles {
    pub fn open(path: &Path) -> Result<ModelFiles> {
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
    /// The tokenizer: GGUF-embedded, `tokenizer.json`, bytes, or none. A model without one
    /// is normal (`save_pretrained` of a model writes no tokenizer): it works on token ids,
    /// and only encoding or decoding text is an error.
    pub fn tokenizer(&self) -> Result<Option<Tokenizer>> {
        match &self.weights {
            FileWeights::Gguf(g) if g.get("tokenizer.ggml.model").is_none() => Ok(None),
            FileWeights::Gguf(g) => Ok(Some(Tokenizer::from_gguf(g)?)),
            FileWeights::Dir(_, dir) => match self.config.opt_str("tokenizer")? {
                Some("ids") => Ok(None),
                None if !dir.join(tokit_model::tokenizer::TOKENIZER_FILE).exists() => Ok(None),
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
