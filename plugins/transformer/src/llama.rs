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

use crate::family::{head_dim, Decoder, FamilyInfo};
use crate::pass::{Attn, Pass};
use crate::rope::Rope;
use crate::METHODS;
use serde_json::json;
use tokit_sdk::nn::{
    block_hook, merge_heads, split_heads, Act, Linear, RmsNorm, Weights, HOOK_EMBED,
};
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

/// The family's loader: `model_type` picks the flavor.
pub fn load(src: &ModelSource, model_type: &str) -> Result<Box<dyn Decoder>> {
    let flavor = match model_type {
        "qwen2" => Flavor::Qwen2,
        "mistral" => Flavor::Mistral,
        _ => Flavor::Llama,
    };
    Ok(Box::new(Llama::load(src, flavor)?))
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
        let d = src.config_dim("hidden_size")?;
        let heads = src.config_dim("num_attention_heads")?;
        let kv_heads = src.opt_config_dim("num_key_value_heads")?.unwrap_or(heads);
        let head_dim = match src.opt_config_dim("head_dim")? {
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
        let layers = src.config_layers("num_hidden_layers")?;
        let attention_bias = src.opt_config_bool("attention_bias")?.unwrap_or(false);
        Ok(Config {
            flavor,
            vocab: src.config_dim("vocab_size")?,
            d,
            d_mlp: src.config_dim("intermediate_size")?,
            layers,
            heads,
            kv_heads,
            head_dim,
            eps: src.opt_config_positive("rms_norm_eps")?.unwrap_or(1e-6),
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
    let window = src.opt_config_dim("sliding_window")?;
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

/// One block's layers. LLaDA loads its blocks into this too (its own tensor names).
pub struct Block {
    pub input_norm: RmsNorm,
    pub q: Linear,
    pub k: Linear,
    pub v: Linear,
    pub o: Linear,
    pub post_attention_norm: RmsNorm,
    pub gate: Linear,
    pub up: Linear,
    pub down: Linear,
}

impl Block {
    fn load(w: &Weights, c: &Config) -> Result<Block> {
        let (d, m) = (c.d, c.d_mlp);
        let (qd, kvd) = (c.heads * c.head_dim, c.kv_heads * c.head_dim);
        let (a, mlp) = (w.pp("self_attn"), w.pp("mlp"));
        Ok(Block {
            input_norm: RmsNorm::load(&w.pp("input_layernorm"), d, c.eps)?,
            q: Linear::load(&a.pp("q_proj"), d, qd, c.qkv_bias)?,
            k: Linear::load(&a.pp("k_proj"), d, kvd, c.qkv_bias)?,
            v: Linear::load(&a.pp("v_proj"), d, kvd, c.qkv_bias)?,
            o: Linear::load(&a.pp("o_proj"), qd, d, c.o_bias)?,
            post_attention_norm: RmsNorm::load(&w.pp("post_attention_layernorm"), d, c.eps)?,
            gate: Linear::load(&mlp.pp("gate_proj"), d, m, c.mlp_bias)?,
            up: Linear::load(&mlp.pp("up_proj"), d, m, c.mlp_bias)?,
            down: Linear::load(&mlp.pp("down_proj"), m, d, c.mlp_bias)?,
        })
    }

    /// Block `i` on the residual stream `x [n, d]`: attention `a` with rotary frequencies
    /// `inv_freq`, then the gated MLP with activation `act`.
    pub fn forward(
        &self,
        i: usize,
        x: Tensor,
        pass: &mut Pass,
        a: &Attn,
        inv_freq: &[f64],
        act: Act,
    ) -> Result<Tensor> {
        let name = |s: &str| block_hook(i, s);
        let x = pass.rows(&name("hook_resid_pre"), x)?;

        // Attention with rotary positions and grouped-query heads.
        let h = self.input_norm.forward(&x)?;
        let positions = pass.positions();
        let rope = |t: Tensor| t.rope(&positions, inv_freq, false);
        let q = rope(split_heads(&self.q.forward(&h)?, a.heads, a.head_dim)?)?;
        let k = rope(split_heads(&self.k.forward(&h)?, a.kv_heads, a.head_dim)?)?;
        let v = split_heads(&self.v.forward(&h)?, a.kv_heads, a.head_dim)?;
        let z = pass.attention(i, q, k, v, a)?;
        let attn_out = pass.rows(
            &name("hook_attn_out"),
            self.o.forward(&merge_heads(&z, a.heads, a.head_dim)?)?,
        )?;
        let x = x.add(&attn_out)?;

        // Gated MLP: act(h W_gateᵀ) ⊙ h W_upᵀ, then W_down (SwiGLU when act is silu).
        let h = self.post_attention_norm.forward(&x)?;
        let post = pass.rows(
            &name("mlp.hook_post"),
            act.forward(&self.gate.forward(&h)?)?
                .mul(&self.up.forward(&h)?)?,
        )?;
        let mlp_out = pass.rows(&name("hook_mlp_out"), self.down.forward(&post)?)?;
        let x = x.add(&mlp_out)?;
        pass.rows(&name("hook_resid_post"), x)
    }
}

pub struct Llama {
    pub cfg: Config,
    embed: Tensor,
    blocks: Vec<Block>,
    norm: RmsNorm,
    /// `lm_head`, or the embedding when tied.
    head: Linear,
}

impl Llama {
    pub fn load(src: &ModelSource, flavor: Flavor) -> Result<Llama> {
        let cfg = Config::read(src, flavor)?;
        let (d, v) = (cfg.d, cfg.vocab);
        let dims = format!(
            "hidden_size {d}, intermediate_size {}, num_attention_heads {}, num_key_value_heads {}, \
             head_dim {}, vocab_size {v}",
            cfg.d_mlp, cfg.heads, cfg.kv_heads, cfg.head_dim
        );
        let w = Weights::open(src, &["model.", ""], "embed_tokens.weight", dims)?;
        let blocks = (0..cfg.layers)
            .map(|i| Block::load(&w.pp("layers").pp(i), &cfg))
            .collect::<Result<Vec<_>>>()?;
        let embed = w.get("embed_tokens.weight", &[v, d])?;
        // The head lives outside the `model.` prefix.
        let head = Linear::tied_or_load(cfg.tied, &embed, &w.root().pp("lm_head"), d, v, false)
            .map_err(|e| {
                e.context("the head is not tied (`tie_word_embeddings` is false or absent), so it needs `lm_head.weight`")
            })?;
        Ok(Llama {
            norm: RmsNorm::load(&w.pp("norm"), d, cfg.eps)?,
            embed,
            blocks,
            head,
            cfg,
        })
    }

    fn attn(&self, i: usize) -> Attn {
        let c = &self.cfg;
        Attn {
            heads: c.heads,
            kv_heads: c.kv_heads,
            head_dim: c.head_dim,
            scale: 1.0 / (c.head_dim as f64).sqrt(),
            window: c.windows[i],
            causal: true,
        }
    }
}

impl Decoder for Llama {
    fn info(&self) -> FamilyInfo {
        let c = &self.cfg;
        FamilyInfo {
            embed_hooks: &[HOOK_EMBED],
            ablations: &METHODS,
            causal: true,
            vocab: c.vocab,
            d_model: c.d,
            context_length: c.max_positions,
            extra: json!({
                "family": c.flavor.name(),
                "n_heads": c.heads,
                "n_kv_heads": c.kv_heads,
                "head_dim": c.head_dim,
                "d_mlp": c.d_mlp,
                "activation": c.act.name(),
                "positions": "rope",
                "rope": c.rope.describe(),
                "sliding_windows": c.windows,
                "tied_head": c.tied,
                "qkv_bias": c.qkv_bias,
            }),
        }
    }

    fn n_layers(&self) -> usize {
        self.cfg.layers
    }

    fn embed(&self, pass: &mut Pass, tokens: &[u32]) -> Result<Tensor> {
        pass.rows(HOOK_EMBED, Tensor::embedding(&self.embed, tokens)?)
    }

    fn block(&self, i: usize, x: Tensor, pass: &mut Pass) -> Result<Tensor> {
        let c = &self.cfg;
        self.blocks[i].forward(i, x, pass, &self.attn(i), &c.rope.inv_freq, c.act)
    }

    fn final_norm(&self, x: &Tensor) -> Result<Tensor> {
        self.norm.forward(x)
    }

    fn unembed(&self, h: &Tensor) -> Result<Tensor> {
        self.head.forward(h)
    }
}
