//! LLaDA (Nie et al. 2025, "Large Language Diffusion Models"): a masked-diffusion mask
//! predictor. A Llama-style Transformer whose attention is **bidirectional** (no causal
//! mask), read from the released checkpoint layout (`model_type: "llada"`, OLMo-style
//! config names, tensors under `model.transformer.`):
//!
//! ```text
//! x₀ = wte[tokens]                          (some tokens are the mask token)
//! for each block:  h = RMSNorm_attn(x)
//!                  q, k, v = h W_qᵀ, h W_kᵀ, h W_vᵀ          (grouped-query: H ≥ Hkv)
//!                  q, k = RoPE(q, k)                        (rope_theta, rotate-half)
//!                  x += attn(q, k, v) W_attn_outᵀ           (every query sees every key)
//!                  h = RMSNorm_ff(x)
//!                  x += (silu(h W_ff_projᵀ) ⊙ h W_up_projᵀ) W_ff_outᵀ
//! logits = RMSNorm_f(x) W_headᵀ       (W_head = transformer.ff_out, or wte when tied)
//! ```
//!
//! Logits cover `embedding_size` tokens (the embedding table, which may be padded beyond
//! `vocab_size`), as the reference computes its loss over them. `include_bias` adds a bias
//! to every linear map and norm, `include_qkv_bias` to q, k and v. The mask token id comes
//! from the load option `mask_token_id`, else config.json (126336 in the released models).
//! Options of the OLMo code base the released models do not use (ALiBi, learned positions,
//! q/k norms, `sequential` blocks, ...) are refused by name.

use crate::cx::{linear, merge_heads, split_heads, Attn, Cx, Decoder};
use crate::rope::Rope;
use crate::weights::{head_dim, Weights};
use serde_json::{json, Value};
use tokit_sdk::{bail, ModelSource, Result, Tensor};

pub struct Config {
    /// Rows of the embedding table (`embedding_size`, else `vocab_size`): the logits' width.
    pub vocab: usize,
    /// `vocab_size`: the tokenizer's vocabulary.
    pub text_vocab: usize,
    pub d: usize,
    pub d_mlp: usize,
    pub layers: usize,
    pub heads: usize,
    pub kv_heads: usize,
    pub head_dim: usize,
    pub eps: f64,
    pub tied: bool,
    pub bias: bool,
    pub qkv_bias: bool,
    pub mask_token: u32,
    pub max_positions: Option<usize>,
    pub rope: Rope,
}

impl Config {
    pub fn read(src: &ModelSource) -> Result<Config> {
        let path = &src.path;
        match src.opt_config_str("block_type")?.as_deref() {
            Some("llama") => {}
            other => bail!(
                "{path}/config.json: `block_type` is {}; only \"llama\" blocks (the released LLaDA models) are supported",
                other.map_or("missing".to_string(), |b| format!("\"{b}\""))
            ),
        }
        // OLMo options that change the computation; the released models leave them off.
        for (field, off) in [
            ("alibi", false),
            ("attention_layer_norm", false),
            ("input_emb_norm", false),
            ("scale_logits", false),
            ("rope", true),
        ] {
            if src.opt_config_bool(field)?.is_some_and(|v| v != off) {
                bail!(
                    "{path}/config.json: `{field}` = {} is not supported (LLaDA uses {off})",
                    !off
                );
            }
        }
        for (field, want) in [("layer_norm_type", "rms"), ("activation_type", "silu")] {
            if let Some(v) = src.opt_config_str(field)?.filter(|v| v != want) {
                bail!("{path}/config.json: `{field}` = \"{v}\" is not supported (\"{want}\")");
            }
        }
        if let Some(g) = src
            .opt_config_usize("block_group_size")?
            .filter(|&g| g != 1)
        {
            bail!("{path}/config.json: `block_group_size` = {g} is not supported (1: tensors under `blocks.N`)");
        }
        let d = src.config_usize("d_model")?;
        let heads = src.config_usize("n_heads")?;
        let kv_heads = src.opt_config_usize("n_kv_heads")?.unwrap_or(heads);
        let head_dim = head_dim(src, d, "d_model", heads, "n_heads")?;
        if kv_heads == 0 || heads % kv_heads != 0 {
            bail!(
                "{path}/config.json: `n_heads` = {heads} is not a multiple of `n_kv_heads` = {kv_heads}"
            );
        }
        let text_vocab = src.config_usize("vocab_size")?;
        let vocab = src
            .opt_config_usize("embedding_size")?
            .unwrap_or(text_vocab);
        if vocab < text_vocab {
            bail!("{path}/config.json: `embedding_size` = {vocab} is smaller than `vocab_size` = {text_vocab}");
        }
        let mask_token = match src.options.get("mask_token_id").filter(|v| !v.is_null()) {
            Some(v) => v.as_u64().ok_or_else(|| {
                tokit_sdk::Error::msg(format!(
                    "{path}: load option `mask_token_id` must be a token id, found {v}"
                ))
            })?,
            None => src.opt_config_usize("mask_token_id")?.ok_or_else(|| {
                tokit_sdk::Error::msg(format!(
                    "{path}/config.json: no `mask_token_id`; give it as the load option \
                     `mask_token_id` (126336 in the released LLaDA models)"
                ))
            })? as u64,
        };
        if mask_token as usize >= vocab {
            bail!(
                "{path}: mask token id {mask_token} is outside the embedding table ({vocab} rows)"
            );
        }
        let bias = src.opt_config_bool("include_bias")?.unwrap_or(false);
        Ok(Config {
            vocab,
            text_vocab,
            d,
            d_mlp: src.config_usize("mlp_hidden_size")?,
            layers: src.config_usize("n_layers")?,
            heads,
            kv_heads,
            head_dim,
            eps: src.opt_config_f64("rms_norm_eps")?.unwrap_or(1e-5),
            tied: src.opt_config_bool("weight_tying")?.unwrap_or(false),
            bias,
            qkv_bias: bias || src.opt_config_bool("include_qkv_bias")?.unwrap_or(false),
            mask_token: mask_token as u32,
            max_positions: src.opt_config_usize("max_sequence_length")?,
            rope: Rope::from_config(src, head_dim)?,
        })
    }
}

/// A weight matrix `[out, in]` and its optional bias.
struct Linear(Tensor, Option<Tensor>);

impl Linear {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        linear(x, &self.0, self.1.as_ref())
    }
}

/// RMSNorm weight and its optional bias (`include_bias`).
struct Norm(Tensor, Option<Tensor>);

impl Norm {
    fn forward(&self, x: &Tensor, eps: f64) -> Result<Tensor> {
        let y = x.rms_norm(Some(&self.0), eps)?;
        match &self.1 {
            Some(b) => y.add(b),
            None => Ok(y),
        }
    }
}

struct Block {
    attn_norm: Norm,
    q: Linear,
    k: Linear,
    v: Linear,
    attn_out: Linear,
    ff_norm: Norm,
    ff_proj: Linear,
    up_proj: Linear,
    ff_out: Linear,
}

pub struct Llada {
    pub cfg: Config,
    wte: Tensor,
    blocks: Vec<Block>,
    ln_f: Norm,
    /// `None` when the head is tied to the embedding (`weight_tying`).
    ff_out: Option<Linear>,
}

impl Llada {
    /// The output projection, `ff_out` or the tied embedding.
    fn unembed(&self, h: &Tensor) -> Result<Tensor> {
        match &self.ff_out {
            Some(head) => head.forward(h),
            None => h.matmul_t(&self.wte),
        }
    }

    pub fn load(src: &ModelSource) -> Result<Llada> {
        let cfg = Config::read(src)?;
        let (d, m, dh, v) = (cfg.d, cfg.d_mlp, cfg.head_dim, cfg.vocab);
        let kvd = cfg.kv_heads * dh;
        let dims = format!(
            "d_model {d}, mlp_hidden_size {m}, n_heads {}, n_kv_heads {}, embedding_size {v}",
            cfg.heads, cfg.kv_heads
        );
        let w = Weights::open(
            src,
            &["model.transformer.", "transformer."],
            "wte.weight",
            dims,
        )?;
        let lin = |name: &str, n_in: usize, n_out: usize, bias: bool| -> Result<Linear> {
            Ok(Linear(
                w.get(&format!("{name}.weight"), &[n_out, n_in])?,
                if bias {
                    Some(w.get(&format!("{name}.bias"), &[n_out])?)
                } else {
                    None
                },
            ))
        };
        let norm = |name: &str| -> Result<Norm> {
            Ok(Norm(
                w.get(&format!("{name}.weight"), &[d])?,
                if cfg.bias {
                    Some(w.get(&format!("{name}.bias"), &[d])?)
                } else {
                    None
                },
            ))
        };
        let blocks = (0..cfg.layers)
            .map(|i| {
                let p = |n: &str| format!("blocks.{i}.{n}");
                Ok(Block {
                    attn_norm: norm(&p("attn_norm"))?,
                    q: lin(&p("q_proj"), d, cfg.heads * dh, cfg.qkv_bias)?,
                    k: lin(&p("k_proj"), d, kvd, cfg.qkv_bias)?,
                    v: lin(&p("v_proj"), d, kvd, cfg.qkv_bias)?,
                    attn_out: lin(&p("attn_out"), d, d, cfg.bias)?,
                    ff_norm: norm(&p("ff_norm"))?,
                    ff_proj: lin(&p("ff_proj"), d, m, cfg.bias)?,
                    up_proj: lin(&p("up_proj"), d, m, cfg.bias)?,
                    ff_out: lin(&p("ff_out"), m, d, cfg.bias)?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let ff_out = if cfg.tied {
            None
        } else {
            Some(lin("ff_out", d, v, cfg.bias).map_err(|e| {
                e.context(
                    "the head is not tied (`weight_tying` is false), so it needs `ff_out.weight`",
                )
            })?)
        };
        Ok(Llada {
            wte: w.get("wte.weight", &[v, d])?,
            ln_f: norm("ln_f")?,
            blocks,
            ff_out,
            cfg,
        })
    }

    pub fn describe(&self) -> Value {
        let c = &self.cfg;
        json!({
            "family": "llada",
            "mask_token_id": c.mask_token,
            "vocab_size": c.text_vocab,
            "embedding_size": c.vocab,
            "n_heads": c.heads,
            "n_kv_heads": c.kv_heads,
            "head_dim": c.head_dim,
            "d_mlp": c.d_mlp,
            "activation": "silu",
            "positions": "rope",
            "rope": c.rope.describe(),
            "attention": "bidirectional",
            "tied_head": self.ff_out.is_none(),
            "bias": c.bias,
            "qkv_bias": c.qkv_bias,
        })
    }
}

impl Decoder for Llada {
    fn n_layers(&self) -> usize {
        self.cfg.layers
    }

    fn embed(&self, cx: &mut Cx, tokens: &[u32]) -> Result<Tensor> {
        let masked: Vec<f32> = tokens
            .iter()
            .map(|&t| (t == self.cfg.mask_token) as u8 as f32)
            .collect();
        cx.rows(
            "diffusion.hook_mask",
            Tensor::from_slice(&masked, &[tokens.len()])?,
        )?;
        cx.rows("hook_embed", Tensor::embedding(&self.wte, tokens)?)
    }

    fn block(&self, i: usize, x: Tensor, cx: &mut Cx) -> Result<Tensor> {
        let (c, b) = (&self.cfg, &self.blocks[i]);
        let name = |s: &str| format!("blocks.{i}.{s}");
        let x = cx.rows(&name("hook_resid_pre"), x)?;

        // Bidirectional attention with rotary positions and grouped-query heads.
        let h = b.attn_norm.forward(&x, c.eps)?;
        let positions = cx.positions();
        let rope = |t: Tensor| t.rope(&positions, &c.rope.inv_freq, false);
        let q = rope(split_heads(&b.q.forward(&h)?, c.heads, c.head_dim)?)?;
        let k = rope(split_heads(&b.k.forward(&h)?, c.kv_heads, c.head_dim)?)?;
        let v = split_heads(&b.v.forward(&h)?, c.kv_heads, c.head_dim)?;
        let attn = Attn {
            heads: c.heads,
            kv_heads: c.kv_heads,
            head_dim: c.head_dim,
            scale: 1.0 / (c.head_dim as f64).sqrt(),
            window: None,
            causal: false,
        };
        let z = cx.attention(i, q, k, v, &attn)?;
        let attn_out = cx.rows(
            &name("hook_attn_out"),
            b.attn_out.forward(&merge_heads(&z, c.heads, c.head_dim)?)?,
        )?;
        let x = x.add(&attn_out)?;

        // SwiGLU MLP: `ff_proj` is the gated branch, `up_proj` the linear one.
        let h = b.ff_norm.forward(&x, c.eps)?;
        let post = cx.rows(
            &name("mlp.hook_post"),
            b.ff_proj
                .forward(&h)?
                .silu()?
                .mul(&b.up_proj.forward(&h)?)?,
        )?;
        let mlp_out = cx.rows(&name("hook_mlp_out"), b.ff_out.forward(&post)?)?;
        let x = x.add(&mlp_out)?;
        cx.rows(&name("hook_resid_post"), x)
    }

    fn head(&self, x: Tensor, cx: &mut Cx) -> Result<Tensor> {
        let h = cx.rows(
            "ln_final.hook_normalized",
            self.ln_f.forward(&x, self.cfg.eps)?,
        )?;
        self.unembed(&h)
    }

    fn lens(&self, x: &Tensor) -> Result<Tensor> {
        self.unembed(&self.ln_f.forward(x, self.cfg.eps)?)
    }
}
