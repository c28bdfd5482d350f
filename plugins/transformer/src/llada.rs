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

use crate::family::{head_dim, Decoder, FamilyInfo};
use crate::llama::Block;
use crate::pass::{Attn, Pass};
use crate::rope::Rope;
use serde_json::json;
use tokit_sdk::nn::{Act, Linear, RmsNorm, Weights, HOOK_EMBED};
use tokit_sdk::{bail, Ablation, ModelSource, Result, Tensor};

/// A mask predictor's ablation methods: masking a position is its natural one.
const METHODS: [Ablation; 3] = [Ablation::MaskToken, Ablation::Attention, Ablation::Replace];

/// The family's loader.
pub fn load(src: &ModelSource, _model_type: &str) -> Result<Box<dyn Decoder>> {
    Ok(Box::new(Llada::load(src)?))
}

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
        let d = src.config_dim("d_model")?;
        let heads = src.config_dim("n_heads")?;
        let kv_heads = src.opt_config_dim("n_kv_heads")?.unwrap_or(heads);
        let head_dim = head_dim(src, d, "d_model", heads, "n_heads")?;
        if kv_heads == 0 || heads % kv_heads != 0 {
            bail!(
                "{path}/config.json: `n_heads` = {heads} is not a multiple of `n_kv_heads` = {kv_heads}"
            );
        }
        let text_vocab = src.config_dim("vocab_size")?;
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
            d_mlp: src.config_dim("mlp_hidden_size")?,
            layers: src.config_layers("n_layers")?,
            heads,
            kv_heads,
            head_dim,
            eps: src.opt_config_positive("rms_norm_eps")?.unwrap_or(1e-5),
            tied: src.opt_config_bool("weight_tying")?.unwrap_or(false),
            bias,
            qkv_bias: bias || src.opt_config_bool("include_qkv_bias")?.unwrap_or(false),
            mask_token: mask_token as u32,
            max_positions: src.opt_config_usize("max_sequence_length")?,
            rope: Rope::from_config(src, head_dim)?,
        })
    }
}

pub struct Llada {
    pub cfg: Config,
    wte: Tensor,
    /// Llama blocks under LLaDA's tensor names.
    blocks: Vec<Block>,
    ln_f: RmsNorm,
    /// `ff_out`, or the embedding when tied (`weight_tying`).
    head: Linear,
}

impl Llada {
    pub fn load(src: &ModelSource) -> Result<Llada> {
        let c = Config::read(src)?;
        let (d, m, v) = (c.d, c.d_mlp, c.vocab);
        let (qd, kvd) = (c.heads * c.head_dim, c.kv_heads * c.head_dim);
        let dims = format!(
            "d_model {d}, mlp_hidden_size {m}, n_heads {}, n_kv_heads {}, embedding_size {v}",
            c.heads, c.kv_heads
        );
        let w = Weights::open(
            src,
            &["model.transformer.", "transformer."],
            "wte.weight",
            dims,
        )?;
        let norm = |w: &Weights| RmsNorm::load_biased(w, d, c.eps, c.bias);
        let blocks = (0..c.layers)
            .map(|i| {
                let w = w.pp("blocks").pp(i);
                let lin =
                    |name: &str, n_in, n_out, bias| Linear::load(&w.pp(name), n_in, n_out, bias);
                Ok(Block {
                    input_norm: norm(&w.pp("attn_norm"))?,
                    q: lin("q_proj", d, qd, c.qkv_bias)?,
                    k: lin("k_proj", d, kvd, c.qkv_bias)?,
                    v: lin("v_proj", d, kvd, c.qkv_bias)?,
                    o: lin("attn_out", d, d, c.bias)?,
                    post_attention_norm: norm(&w.pp("ff_norm"))?,
                    // `ff_proj` is the gated branch, `up_proj` the linear one.
                    gate: lin("ff_proj", d, m, c.bias)?,
                    up: lin("up_proj", d, m, c.bias)?,
                    down: lin("ff_out", m, d, c.bias)?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let wte = w.get("wte.weight", &[v, d])?;
        let head =
            Linear::tied_or_load(c.tied, &wte, &w.pp("ff_out"), d, v, c.bias).map_err(|e| {
                e.context(
                    "the head is not tied (`weight_tying` is false), so it needs `ff_out.weight`",
                )
            })?;
        Ok(Llada {
            ln_f: norm(&w.pp("ln_f"))?,
            wte,
            blocks,
            head,
            cfg: c,
        })
    }
}

impl Decoder for Llada {
    fn info(&self) -> FamilyInfo {
        let c = &self.cfg;
        FamilyInfo {
            embed_hooks: &["diffusion.hook_mask", HOOK_EMBED],
            ablations: &METHODS,
            causal: false,
            vocab: c.vocab,
            d_model: c.d,
            context_length: c.max_positions,
            extra: json!({
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
                "tied_head": c.tied,
                "bias": c.bias,
                "qkv_bias": c.qkv_bias,
            }),
        }
    }

    fn n_layers(&self) -> usize {
        self.cfg.layers
    }

    fn embed(&self, pass: &mut Pass, tokens: &[u32]) -> Result<Tensor> {
        let masked: Vec<f32> = tokens
            .iter()
            .map(|&t| (t == self.cfg.mask_token) as u8 as f32)
            .collect();
        pass.rows(
            "diffusion.hook_mask",
            Tensor::from_slice(&masked, &[tokens.len()])?,
        )?;
        pass.rows(HOOK_EMBED, Tensor::embedding(&self.wte, tokens)?)
    }

    /// A Llama block whose attention is bidirectional: every query sees every key.
    fn block(&self, i: usize, x: Tensor, pass: &mut Pass) -> Result<Tensor> {
        let c = &self.cfg;
        let attn = Attn {
            heads: c.heads,
            kv_heads: c.kv_heads,
            head_dim: c.head_dim,
            scale: 1.0 / (c.head_dim as f64).sqrt(),
            window: None,
            causal: false,
        };
        self.blocks[i].forward(i, x, pass, &attn, &c.rope.inv_freq, Act::Silu)
    }

    fn final_norm(&self, x: &Tensor) -> Result<Tensor> {
        self.ln_f.forward(x)
    }

    fn unembed(&self, h: &Tensor) -> Result<Tensor> {
        self.head.forward(h)
    }
}
