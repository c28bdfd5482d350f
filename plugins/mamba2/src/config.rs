//! Mamba2's sizes, read from config.json and checked against each other.

use serde_json::Value;
use tokit_sdk::{bail, ModelSource, Result};

/// Sizes read from config.json.
#[derive(Clone, Debug)]
pub struct Config {
    pub d: usize,
    pub layers: usize,
    pub vocab: usize,
    pub heads: usize,
    pub head_dim: usize,
    pub state: usize,
    pub groups: usize,
    pub kernel: usize,
    pub chunk: usize,
    pub eps: f64,
    /// `(min, max)` of Δ.
    pub dt_limit: (f64, f64),
    pub inner: usize,
    pub conv_dim: usize,
}

fn number(v: &Value) -> Option<f64> {
    match v {
        Value::String(s) if s == "Infinity" => Some(f64::INFINITY),
        Value::String(s) if s == "-Infinity" => Some(f64::NEG_INFINITY),
        v => v.as_f64(),
    }
}

impl Config {
    pub fn read(src: &ModelSource) -> Result<Config> {
        let p = &src.path;
        let d = src.config_dim("hidden_size")?;
        let heads = src.config_dim("num_heads")?;
        let head_dim = src.config_dim("head_dim")?;
        let expand = src.opt_config_positive("expand")?.unwrap_or(2.0);
        let inner = heads * head_dim;
        if (expand * d as f64) != inner as f64 {
            bail!(
                "{p}/config.json: `num_heads` * `head_dim` = {heads} * {head_dim} = {inner} does not \
                 equal `expand` * `hidden_size` = {expand} * {d} = {} (the SSM heads must tile the \
                 expanded width)",
                expand * d as f64
            );
        }
        let groups = src.opt_config_dim("n_groups")?.unwrap_or(1);
        if groups == 0 || heads % groups != 0 {
            bail!("{p}/config.json: `n_groups` = {groups} does not divide `num_heads` = {heads}");
        }
        let act = src
            .opt_config_str("hidden_act")?
            .unwrap_or_else(|| "silu".into());
        if act != "silu" && act != "swish" {
            bail!("{p}/config.json: `hidden_act` = \"{act}\" is not supported (silu)");
        }
        let chunk = src.opt_config_dim("chunk_size")?.unwrap_or(256);
        if chunk == 0 {
            bail!("{p}/config.json: `chunk_size` must be at least 1");
        }
        let kernel = src.opt_config_dim("conv_kernel")?.unwrap_or(4);
        if kernel == 0 {
            bail!("{p}/config.json: `conv_kernel` must be at least 1");
        }
        let dt_limit = match src.config.get("time_step_limit") {
            None | Some(Value::Null) => (0.0, f64::INFINITY),
            Some(Value::Array(a)) if a.len() == 2 => match (number(&a[0]), number(&a[1])) {
                (Some(lo), Some(hi)) if lo <= hi => (lo, hi),
                _ => bail!("{p}/config.json: `time_step_limit` = {a:?}: expected [min, max] numbers with min ≤ max"),
            },
            Some(v) => bail!("{p}/config.json: `time_step_limit` = {v}: expected [min, max]"),
        };
        let state = src.opt_config_dim("state_size")?.unwrap_or(128);
        Ok(Config {
            d,
            layers: src.config_layers("num_hidden_layers")?,
            vocab: src.config_dim("vocab_size")?,
            heads,
            head_dim,
            state,
            groups,
            kernel,
            chunk,
            eps: src
                .opt_config_positive("layer_norm_epsilon")?
                .unwrap_or(1e-5),
            dt_limit,
            inner,
            conv_dim: inner + 2 * groups * state,
        })
    }

    pub fn describe(&self) -> String {
        format!(
            "hidden_size {}, num_heads {}, head_dim {}, state_size {}, n_groups {}, conv_kernel {}",
            self.d, self.heads, self.head_dim, self.state, self.groups, self.kernel
        )
    }
}
