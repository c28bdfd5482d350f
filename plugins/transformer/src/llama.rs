//! Llama-family decoders: Llama 2/3 (and SmolLM2, which is `model_type: llama`), Qwen2,
//! Mistral. As `LlamaForCausalLM` in transformers:
//!
//! ```text
//! x₀ = E[tokens]
//! for each block:  h = RMSNorm₁(x)
//!                  q, k, v = h W_qᵀ (+b_q), h W_kᵀ (+b_k), h W_vᵀ (+b_v)    (biases: Qwen2)
//!                  q, k = RoPE(q, k)                            (rope_theta, rope scaling)
//!                  x += attn(q, k, v) W_oᵀ                      (grouped-query: H ≥ Hkv)
//!                  h = RMSNorm₂(x)
//!                  x += (silu(h W_gateᵀ) ⊙ h W_upᵀ) W_downᵀ     (SwiGLU)
//! logits = RMSNorm_f(x) W_headᵀ                                  (W_head = E when tied)
//! ```
//!
//! Mistral's `sliding_window` and Qwen2's per-layer sliding windows (`layer_types`, or
//! `use_sliding_window` with `max_window_layers`) limit each query to the last `window`
//! keys, its own included.

use crate::cx::{linear, merge_heads, split_heads, Attn, Cx, Decoder};
use crate::rope::Rope;
use crate::weights::{head_dim, Weights};
use crate::Act;
use serde_json::{json, Value};
use tokit_sdk::{bail, ModelSource, Result, Tensor};

/// Which member of the family: they differ only in defaults and optional parts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flavor {
    Llama,
    Qwen2,
    Mistral,
}

impl Flavor {
    pub fn name(self) -> &'static str {
        match self {
            Flavor::Llama => "llama",
            Flavor::Qwen2 => "qwen2",
            Flavor::Mistral => "mistral",
        }
    }
}

pub struct Config {
    pub flavor: Flavor,
    pub vocab: usize,
    pub d: usize,
    pub d_mlp: usize,
    pub layers: usize,
    pub heads: usize,
    pub kv_heads: usize,
    pub head_dim: usize,
    pub eps: f64,
    pub act: Act,
    pub max_positions: Option<usize>,
    pub tied: bool,
    pub qkv_bias: bool,
    pub o_bias: bool,
    pub mlp_bias: bool,
    /// Sliding window of each layer (`None`: full attention).
    pub windows: Vec<Option<usize>>,
    pub rope: Rope,
}

impl Config {
    pub fn read(src: &ModelSource, flavor: Flavor) -> Result<Config> {
        let d = src.config_usize("hidden_size")?;
        let heads = src.config_usize("num_attention_heads")?;
        let kv_heads = src
            .opt_config_usize("num_key_value_heads")?
            .unwrap_or(heads);
        let head_dim = match src.opt_config_usize("head_dim")? {
            Some(h) if h > 0 => h,
            _ => head_dim(src, d, "hidden_size", heads, "num_attention_heads")?,
        };
        if kv_heads == 0 || heads % kv_heads != 0 {
            bail!(
                "{}/config.json: `num_attention_heads` = {heads} is not a multiple of \
                 `num_key_value_heads` = {kv_heads} (each kv head serves a whole group of query heads)",
                src.path
            );
        }
        let layers = src.config_usize("num_hidden_layers")?;
        let attention_bias = src.opt_config_bool("attention_bias")?.unwrap_or(false);
        Ok(Config {
            flavor,
            vocab: src.config_usize("vocab_size")?,
            d,
            d_mlp: src.config_usize("intermediate_size")?,
            layers,
            heads,
            kv_heads,
            head_dim,
            eps: src.opt_config_f64("rms_norm_eps")?.unwrap_or(1e-6),
            act: Act::from_config(src, "hidden_act", "silu")?,
            max_positions: src.opt_config_usize("max_position_embeddings")?,
            tied: src.opt_config_bool("tie_word_embeddings")?.unwrap_or(false),
            qkv_bias: flavor == Flavor::Qwen2 || attention_bias,
            o_bias: attention_bias,
            mlp_bias: src.opt_config_bool("mlp_bias")?.unwrap_or(false),
            windows: windows(src, flavor, layers)?,
            rope: Rope::from_config(src, head_dim)?,
        })
    }
}

/// Per-layer sliding windows from `layer_types` (transformers 5), else the flavor's rule.
fn windows(src: &ModelSource, flavor: Flavor, layers: usize) -> Result<Vec<Option<usize>>> {
    let window = src.opt_config_usize("sliding_window")?;
    if let Some(types) = src.config.get("layer_types").filter(|v| !v.is_null()) {
        let Some(types) = types.as_array().filter(|a| a.len() == layers) else {
            bail!("{}/config.json: `layer_types` must list one type per layer ({layers}), found {types}", src.path);
        };
        return types
            .iter()
            .map(|t| match t.as_str() {
                Some("full_attention") => Ok(None),
                Some("sliding_attention") => match window {
                    Some(w) if w > 0 => Ok(Some(w)),
                    _ => bail!("{}/config.json: a `sliding_attention` layer needs a positive `sliding_window`", src.path),
                },
                _ => bail!(
                    "{}/config.json: layer type {t} is not supported (full_attention, sliding_attention)",
                    src.path
                ),
            })
            .collect();
    }
    Ok(match flavor {
        Flavor::Mistral => vec![window.filter(|&w| w > 0); layers],
        Flavor::Qwen2 if src.opt_config_bool("use_sliding_window")?.unwrap_or(false) => {
            let from = src.opt_config_usize("max_window_layers")?.unwrap_or(layers);
            (0..layers)
                .map(|i| {
                    if i >= from {
                        window.filter(|&w| w > 0)
                    } else {
                        None
                    }
                })
                .collect()
        }
        _ => vec![None; layers],
    })
}

struct Linear {
    w: Tensor,
    b: Option<Tensor>,
}

impl Linear {
    fn load(w: &Weights, name: &str, n_in: usize, n_out: usize, bias: bool) -> Result<Linear> {
        let b = if bias {
            Some(w.get(&format!("{name}.bias"), &[n_out])?)
        } else {
            None
        };
        Ok(Linear {
            w: w.get(&format!("{name}.weight"), &[n_out, n_in])?,
            b,
        })
    }
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        linear(x, &self.w, self.b.as_ref())
    }
}

struct Block {
    input_norm: Tensor,
    q: Linear,
    k: Linear,
    v: Linear,
    o: Linear,
    post_attention_norm: Tensor,
    gate: Linear,
    up: Linear,
    down: Linear,
}

pub struct Llama {
    pub cfg: Config,
    embed: Tensor,
    blocks: Vec<Block>,
    norm: Tensor,
    /// `None` when the head is tied to the embedding.
    lm_head: Option<Tensor>,
}

impl Llama {
    pub fn load(src: &ModelSource, flavor: Flavor) -> Result<Llama> {
        let cfg = Config::read(src, flavor)?;
        let (d, m, dh) = (cfg.d, cfg.d_mlp, cfg.head_dim);
        let (qd, kvd) = (cfg.heads * dh, cfg.kv_heads * dh);
        let dims = format!(
            "hidden_size {d}, intermediate_size {m}, num_attention_heads {}, num_key_value_heads {}, \
             head_dim {dh}, vocab_size {}",
            cfg.heads, cfg.kv_heads, cfg.vocab
        );
        let w = Weights::open(src, &["model.", ""], "embed_tokens.weight", dims.clone())?;
        let blocks = (0..cfg.layers)
            .map(|i| {
                let p = format!("layers.{i}");
                let lin = |n: &str, a, b, bias| Linear::load(&w, &format!("{p}.{n}"), a, b, bias);
                Ok(Block {
                    input_norm: w.get(&format!("{p}.input_layernorm.weight"), &[d])?,
                    q: lin("self_attn.q_proj", d, qd, cfg.qkv_bias)?,
                    k: lin("self_attn.k_proj", d, kvd, cfg.qkv_bias)?,
                    v: lin("self_attn.v_proj", d, kvd, cfg.qkv_bias)?,
                    o: lin("self_attn.o_proj", qd, d, cfg.o_bias)?,
                    post_attention_norm: w
                        .get(&format!("{p}.post_attention_layernorm.weight"), &[d])?,
                    gate: lin("mlp.gate_proj", d, m, cfg.mlp_bias)?,
                    up: lin("mlp.up_proj", d, m, cfg.mlp_bias)?,
                    down: lin("mlp.down_proj", m, d, cfg.mlp_bias)?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let lm_head = if cfg.tied {
            None
        } else {
            let head = Weights::open(src, &[""], "lm_head.weight", dims).map_err(|e| {
                e.context("the head is not tied (`tie_word_embeddings` is false or absent), so it needs `lm_head.weight`")
            })?;
            Some(head.get("lm_head.weight", &[cfg.vocab, d])?)
        };
        Ok(Llama {
            embed: w.get("embed_tokens.weight", &[cfg.vocab, d])?,
            norm: w.get("norm.weight", &[d])?,
            blocks,
            lm_head,
            cfg,
        })
    }

    pub fn describe(&self) -> Value {
        let c = &self.cfg;
        json!({
            "family": c.flavor.name(),
            "n_heads": c.heads,
            "n_kv_heads": c.kv_heads,
            "head_dim": c.head_dim,
            "d_mlp": c.d_mlp,
            "activation": c.act.name(),
            "positions": "rope",
            "rope": c.rope.describe(),
            "sliding_windows": c.windows,
            "tied_head": self.lm_head.is_none(),
            "qkv_bias": c.qkv_bias,
        })
    }
}

impl Decoder for Llama {
    fn n_layers(&self) -> usize {
        self.cfg.layers
    }

    fn embed(&self, cx: &mut Cx, tokens: &[u32]) -> Result<Tensor> {
        cx.rows("hook_embed", Tensor::embedding(&self.embed, tokens)?)
    }

    fn block(&self, i: usize, x: Tensor, cx: &mut Cx) -> Result<Tensor> {
        let (c, b) = (&self.cfg, &self.blocks[i]);
        let name = |s: &str| format!("blocks.{i}.{s}");
        let x = cx.rows(&name("hook_resid_pre"), x)?;

        // Attention with rotary positions and grouped-query heads.
        let h = x.rms_norm(Some(&b.input_norm), c.eps)?;
        let positions = cx.positions();
        let q = split_heads(&b.q.forward(&h)?, c.heads, c.head_dim)?.rope(
            &positions,
            &c.rope.inv_freq,
            false,
        )?;
        let k = split_heads(&b.k.forward(&h)?, c.kv_heads, c.head_dim)?.rope(
            &positions,
            &c.rope.inv_freq,
            false,
        )?;
        let v = split_heads(&b.v.forward(&h)?, c.kv_heads, c.head_dim)?;
        let scale = 1.0 / (c.head_dim as f64).sqrt();
        let attn = Attn {
            heads: c.heads,
            kv_heads: c.kv_heads,
            head_dim: c.head_dim,
            scale,
            window: c.windows[i],
            causal: true,
        };
        let z = cx.attention(i, q, k, v, &attn)?;
        let attn_out = cx.rows(
            &name("hook_attn_out"),
            b.o.forward(&merge_heads(&z, c.heads, c.head_dim)?)?,
        )?;
        let x = x.add(&attn_out)?;

        // SwiGLU MLP.
        let h = x.rms_norm(Some(&b.post_attention_norm), c.eps)?;
        let post = cx.rows(
            &name("mlp.hook_post"),
            c.act.apply(&b.gate.forward(&h)?)?.mul(&b.up.forward(&h)?)?,
        )?;
        let mlp_out = cx.rows(&name("hook_mlp_out"), b.down.forward(&post)?)?;
        let x = x.add(&mlp_out)?;
        cx.rows(&name("hook_resid_post"), x)
    }

    fn head(&self, x: Tensor, cx: &mut Cx) -> Result<Tensor> {
        let h = cx.rows(
            "ln_final.hook_normalized",
            x.rms_norm(Some(&self.norm), self.cfg.eps)?,
        )?;
        h.matmul_t(self.lm_head.as_ref().unwrap_or(&self.embed))
    }

    fn lens(&self, x: &Tensor) -> Result<Tensor> {
        x.rms_norm(Some(&self.norm), self.cfg.eps)?
            .matmul_t(self.lm_head.as_ref().unwrap_or(&self.embed))
    }
}
