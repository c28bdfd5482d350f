//! Reading a checkpoint's tensors by name, each checked against the shape the config implies.

use serde_json::Value;
use tokit_sdk::{bail, Error, ModelSource, Result, Tensor};

/// The weights of one checkpoint, with the name prefix it uses (`transformer.`, `model.`,
/// or none) and a one-line account of the config sizes for error messages.
pub struct Weights<'a> {
    src: &'a ModelSource,
    index: serde_json::Map<String, Value>,
    prefix: String,
    /// e.g. `hidden_size 32, num_attention_heads 4, head_dim 8`.
    dims: String,
}

impl<'a> Weights<'a> {
    /// Pick the first of `prefixes` under which `probe` (e.g. `wte.weight`) is stored.
    pub fn open(
        src: &'a ModelSource,
        prefixes: &[&str],
        probe: &str,
        dims: String,
    ) -> Result<Weights<'a>> {
        let index = src.weight_index()?;
        let Some(prefix) = prefixes
            .iter()
            .find(|p| index.contains_key(&format!("{p}{probe}")))
        else {
            let tried: Vec<String> = prefixes.iter().map(|p| format!("`{p}{probe}`")).collect();
            let mut names: Vec<&String> = index.keys().collect();
            names.sort();
            let shown: Vec<&str> = names.iter().take(8).map(|s| s.as_str()).collect();
            bail!(
                "{}: no weight {} (is this a {} checkpoint? stored: {}{})",
                src.path,
                tried.join(" or "),
                src.opt_config_str("model_type")?
                    .unwrap_or_else(|| "?".into()),
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
            );
        };
        Ok(Weights {
            src,
            index,
            prefix: prefix.to_string(),
            dims,
        })
    }

    pub fn has(&self, name: &str) -> bool {
        self.index.contains_key(&self.full(name))
    }

    fn full(&self, name: &str) -> String {
        format!("{}{name}", self.prefix)
    }

    /// The tensor `name` (after the prefix), which must have `shape`.
    pub fn get(&self, name: &str, shape: &[usize]) -> Result<Tensor> {
        let full = self.full(name);
        let Some(entry) = self.index.get(&full) else {
            bail!(
                "{}: missing weight `{full}` (expected shape {shape:?} from config.json: {})",
                self.src.path,
                self.dims
            );
        };
        let stored: Option<Vec<usize>> = entry
            .get("shape")
            .and_then(Value::as_array)
            .and_then(|a| a.iter().map(|d| d.as_u64().map(|d| d as usize)).collect());
        if let Some(s) = &stored {
            self.check(&full, s, shape)?;
        }
        let t = self
            .src
            .weight(&full)
            .map_err(|e| e.context(format!("{}: weight `{full}`", self.src.path)))?;
        self.check(&full, &t.shape()?, shape)?;
        Ok(t)
    }

    /// `get` when the tensor is stored, `None` otherwise.
    pub fn opt(&self, name: &str, shape: &[usize]) -> Result<Option<Tensor>> {
        if self.has(name) {
            self.get(name, shape).map(Some)
        } else {
            Ok(None)
        }
    }

    fn check(&self, full: &str, found: &[usize], want: &[usize]) -> Result<()> {
        if found != want {
            return Err(Error::msg(format!(
                "{}: weight `{full}` has shape {found:?}, expected {want:?} from config.json ({})",
                self.src.path, self.dims
            )));
        }
        Ok(())
    }
}

/// `num_heads` must divide `width` (hidden size) when the head size is implied.
pub fn head_dim(
    src: &ModelSource,
    width: usize,
    width_field: &str,
    heads: usize,
    heads_field: &str,
) -> Result<usize> {
    if heads == 0 || width % heads != 0 {
        bail!(
            "{}/config.json: `{heads_field}` = {heads} does not divide `{width_field}` = {width} \
             (each attention head needs {width_field} / {heads_field} dimensions)",
            src.path
        );
    }
    Ok(width / heads)
}
