//! A checkpoint's tensors by name, each checked against the shape the config implies.
//!
//! [`Weights`] works like candle's `VarBuilder`: `w.pp("self_attn")` is a view whose names
//! start with `self_attn.`, so a layer loads its tensors by their short names and the path
//! to it is spelled once. Every [`Weights::get`] checks the stored shape (from the weight
//! index, before any data is read) and the shape of the tensor the host hands back.

use crate::arch::ModelSource;
use crate::error::{Error, Result};
use crate::tensor::Tensor;
use serde_json::Value;
use std::fmt::Display;
use std::rc::Rc;

/// What every view of one checkpoint shares.
struct Store<'a> {
    src: &'a ModelSource,
    index: serde_json::Map<String, Value>,
    /// The config sizes in one line for error messages, e.g. `hidden_size 32, ...`.
    dims: String,
}

/// A view of a checkpoint's tensors under a name prefix.
#[derive(Clone)]
pub struct Weights<'a> {
    store: Rc<Store<'a>>,
    /// Empty, or ending in `.`.
    prefix: String,
}

impl<'a> Weights<'a> {
    /// Every stored tensor, under its stored name. `dims` (the config sizes in one line)
    /// goes into error messages.
    pub fn new(src: &'a ModelSource, dims: impl Into<String>) -> Result<Weights<'a>> {
        Ok(Weights {
            store: Rc::new(Store {
                src,
                index: src.weight_index()?,
                dims: dims.into(),
            }),
            prefix: String::new(),
        })
    }

    /// The view under the first of `prefixes` (each empty or ending in `.`) where `probe`
    /// is stored: checkpoints of one family differ in the prefix they store under
    /// (`model.`, `transformer.`, none).
    pub fn open(
        src: &'a ModelSource,
        prefixes: &[&str],
        probe: &str,
        dims: impl Into<String>,
    ) -> Result<Weights<'a>> {
        let root = Weights::new(src, dims)?;
        let index = &root.store.index;
        match prefixes
            .iter()
            .find(|p| index.contains_key(&format!("{p}{probe}")))
        {
            Some(p) => Ok(root.pp_raw(p)),
            None => Err(root.not_found(prefixes, probe)),
        }
    }

    fn not_found(&self, prefixes: &[&str], probe: &str) -> Error {
        let src = self.store.src;
        let tried: Vec<String> = prefixes.iter().map(|p| format!("`{p}{probe}`")).collect();
        let mut names: Vec<&String> = self.store.index.keys().collect();
        names.sort();
        let shown: Vec<&str> = names.iter().take(8).map(|s| s.as_str()).collect();
        let model_type = match src.opt_config_str("model_type") {
            Ok(Some(t)) => t,
            _ => "?".into(),
        };
        Error::msg(format!(
            "{}: no weight {} (is this a {model_type} checkpoint? stored: {}{})",
            src.path,
            tried.join(" or "),
            if shown.is_empty() {
                "none".to_string()
            } else {
                shown.join(", ")
            },
            if names.len() > shown.len() {
                ", ..."
            } else {
                ""
            }
        ))
    }

    /// The view of the names under `name.` (`w.pp("layers").pp(3)` reads `layers.3.*`).
    pub fn pp(&self, name: impl Display) -> Weights<'a> {
        self.pp_raw(&format!("{name}."))
    }

    fn pp_raw(&self, p: &str) -> Weights<'a> {
        Weights {
            store: self.store.clone(),
            prefix: format!("{}{p}", self.prefix),
        }
    }

    /// The same checkpoint with no prefix (tensors stored outside the model's prefix, such
    /// as an untied `lm_head.weight`).
    pub fn root(&self) -> Weights<'a> {
        Weights {
            store: self.store.clone(),
            prefix: String::new(),
        }
    }

    /// The model files this view reads.
    pub fn source(&self) -> &'a ModelSource {
        self.store.src
    }

    fn full(&self, name: &str) -> String {
        format!("{}{name}", self.prefix)
    }

    /// Whether `name` is stored under this view.
    pub fn has(&self, name: &str) -> bool {
        self.store.index.contains_key(&self.full(name))
    }

    /// The first of `names` stored under this view.
    pub fn first_stored<'n>(&self, names: &[&'n str]) -> Option<&'n str> {
        names.iter().copied().find(|n| self.has(n))
    }

    /// The tensor `name`, which must be stored with `shape`.
    pub fn get(&self, name: &str, shape: &[usize]) -> Result<Tensor> {
        let full = self.full(name);
        let store = &self.store;
        let Some(entry) = store.index.get(&full) else {
            return Err(Error::msg(format!(
                "{}: missing weight `{full}` (expected shape {shape:?} from config.json: {})",
                store.src.path, store.dims
            )));
        };
        let stored: Option<Vec<usize>> = entry
            .get("shape")
            .and_then(Value::as_array)
            .and_then(|a| a.iter().map(|d| d.as_u64().map(|d| d as usize)).collect());
        if let Some(s) = &stored {
            self.check(&full, s, shape)?;
        }
        let t = store
            .src
            .weight(&full)
            .map_err(|e| e.context(format!("{}: weight `{full}`", store.src.path)))?;
        self.check(&full, &t.shape()?, shape)?;
        Ok(t)
    }

    /// [`Weights::get`] when `name` is stored, `None` otherwise.
    pub fn opt(&self, name: &str, shape: &[usize]) -> Result<Option<Tensor>> {
        if self.has(name) {
            self.get(name, shape).map(Some)
        } else {
            Ok(None)
        }
    }

    /// [`Weights::get`] when the config says the tensor exists (`wanted`), else `None`.
    pub fn get_if(&self, wanted: bool, name: &str, shape: &[usize]) -> Result<Option<Tensor>> {
        if wanted {
            self.get(name, shape).map(Some)
        } else {
            Ok(None)
        }
    }

    fn check(&self, full: &str, found: &[usize], want: &[usize]) -> Result<()> {
        if found != want {
            return Err(Error::msg(format!(
                "{}: weight `{full}` has shape {found:?}, expected {want:?} from config.json ({})",
                self.store.src.path, self.store.dims
            )));
        }
        Ok(())
    }
}
