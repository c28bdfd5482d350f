//! GPT-2 (Radford et al. 2019), as `GPT2LMHeadModel` in transformers:
//!
//! ```text
//! x₀ = W_te[tokens] + W_pe[positions]
//! for each block:  x += c_proj(attn(c_attn(LN₁(x))))      (Conv1D: weights stored [in, out])
//!                  x += proj(gelu_new(fc(LN₂(x))))
//! logits = LN_f(x) W_teᵀ                                    (tied head)
//! ```
//!
//! Conv1D layers multiply `x @ W` (no transpose). `n_positions` bounds the context: the
//! learned position table has that many rows.

use crate::cx::{merge_heads, split_heads, Attn, Cx, Decoder};
use crate::weights::{head_dim, Weights};
use crate::Act;
use serde_json::{json, Value};
use tokit_sdk::{ModelSource, Result, Tensor};

pub struct Config {
    pub vocab: usize,
    pub d: usize,
    pub heads: usize,
    pub head_dim: usize,
    pub layers: usize,
    pub n_positions: usize,
    pub d_mlp: usize,
    pub eps: f64,
    pub act: Act,
    pub scale_attn_weights: bool,
    pub scale_attn_by_inverse_layer_idx: bool,
}

impl Config {
    pub fn read(src: &ModelSource) -> Result<Config> {
        let d = src.config_usize("n_embd")?;
        let heads = src.config_usize("n_head")?;
        Ok(Config {
            vocab: src.config_usize("vocab_size")?,
            d,
            heads,
            head_dim: head_dim(src, d, "n_embd", heads, "n_head")?,
            layers: src.config_usize("n_layer")?,
            n_positions: src.config_usize("n_positions")?,
            d_mlp: src.opt_config_usize("n_inner")?.unwrap_or(4 * d),
            eps: src.opt_config_f64("layer_norm_epsilon")?.unwrap_or(1e-5),
            act: Act::from_config(src, "activation_function", "gelu_new")?,
            scale_attn_weights: src.opt_config_bool("scale_attn_weights")?.unwrap_or(true),
            scale_attn_by_inverse_layer_idx: src
                .opt_config_bool("scale_attn_by_inverse_layer_idx")?
                .unwrap_or(false),
        })
    }
}

struct LayerNorm {
    w: Tensor,
    b: Tensor,
}

impl LayerNorm {
    fn load(w: &Weights, name: &str, d: usize) -> Result<LayerNorm> {
        Ok(LayerNorm {
            w: w.get(&format!("{name}.weight"), &[d])?,
            b: w.get(&format!("{name}.bias"), &[d])?,
        })
    }
    fn forward(&self, x: &Tensor, eps: f64) -> Result<Tensor> {
        x.layer_norm(Some(&self.w), Some(&self.b), eps)
    }
}

/// A Conv1D layer: `x @ W + b` with `W` stored `[in, out]`.
struct Conv1D {
    w: Tensor,
    b: Tensor,
}

impl Conv1D {
    fn load(w: &Weights, name: &str, n_in: usize, n_out: usize) -> Result<Conv1D> {
        Ok(Conv1D {
            w: w.get(&format!("{name}.weight"), &[n_in, n_out])?,
            b: w.get(&format!("{name}.bias"), &[n_out])?,
        })
    }
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        x.matmul(&self.w)?.add(&self.b)
    }
}

struct Block {
    ln_1: LayerNorm,
    c_attn: Conv1D,
    c_proj: Conv1D,
    ln_2: LayerNorm,
    c_fc: Conv1D,
    mlp_proj: Conv1D,
}

pub struct Gpt2 {
    pub cfg: Config,
    wte: Tensor,
    wpe: Tensor,
    blocks: Vec<Block>,
    ln_f: LayerNorm,
    /// `lm_head.weight` when the head is not tied (`tie_word_embeddings: false`).
    lm_head: Option<Tensor>,
}

impl Gpt2 {
    pub fn load(src: &ModelSource) -> Result<Gpt2> {
        let cfg = Config::read(src)?;
        let (d, m) = (cfg.d, cfg.d_mlp);
        let dims = format!(
            "n_embd {d}, n_head {}, n_layer {}, n_positions {}, n_inner {m}, vocab_size {}",
            cfg.heads, cfg.layers, cfg.n_positions, cfg.vocab
        );
        let w = Weights::open(src, &["transformer.", ""], "wte.weight", dims)?;
        let blocks = (0..cfg.layers)
            .map(|i| {
                let p = format!("h.{i}");
                Ok(Block {
                    ln_1: LayerNorm::load(&w, &format!("{p}.ln_1"), d)?,
                    c_attn: Conv1D::load(&w, &format!("{p}.attn.c_attn"), d, 3 * d)?,
                    c_proj: Conv1D::load(&w, &format!("{p}.attn.c_proj"), d, d)?,
                    ln_2: LayerNorm::load(&w, &format!("{p}.ln_2"), d)?,
                    c_fc: Conv1D::load(&w, &format!("{p}.mlp.c_fc"), d, m)?,
                    mlp_proj: Conv1D::load(&w, &format!("{p}.mlp.c_proj"), m, d)?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let tied = src.opt_config_bool("tie_word_embeddings")?.unwrap_or(true);
        // The head lives outside the `transformer.` prefix.
        let lm_head = if tied {
            None
        } else {
            let head = Weights::open(
                src,
                &[""],
                "lm_head.weight",
                format!("n_embd {d}, vocab_size {}", cfg.vocab),
            )?;
            Some(head.get("lm_head.weight", &[cfg.vocab, d])?)
        };
        Ok(Gpt2 {
            wte: w.get("wte.weight", &[cfg.vocab, d])?,
            wpe: w.get("wpe.weight", &[cfg.n_positions, d])?,
            ln_f: LayerNorm::load(&w, "ln_f", d)?,
            blocks,
            lm_head,
            cfg,
        })
    }

    pub fn describe(&self) -> Value {
        let c = &self.cfg;
        json!({
            "family": "gpt2",
            "n_heads": c.heads,
            "n_kv_heads": c.heads,
            "head_dim": c.head_dim,
            "d_mlp": c.d_mlp,
            "activation": c.act.name(),
            "positions": "learned",
            "tied_head": self.lm_head.is_none(),
        })
    }
}

impl Decoder for Gpt2 {
    fn n_layers(&self) -> usize {
        self.cfg.layers
    }

    fn embed(&self, cx: &mut Cx, tokens: &[u32]) -> Result<Tensor> {
        let positions: Vec<u32> = cx.positions().iter().map(|&p| p as u32).collect();
        let tok = cx.rows("hook_embed", Tensor::embedding(&self.wte, tokens)?)?;
        let pos = cx.rows("hook_pos_embed", Tensor::embedding(&self.wpe, &positions)?)?;
        tok.add(&pos)
    }

    fn block(&self, i: usize, x: Tensor, cx: &mut Cx) -> Result<Tensor> {
        let (c, b) = (&self.cfg, &self.blocks[i]);
        let name = |s: &str| format!("blocks.{i}.{s}");
        let x = cx.rows(&name("hook_resid_pre"), x)?;

        // Attention: one [d, 3d] projection gives q, k, v.
        let qkv = b.c_attn.forward(&b.ln_1.forward(&x, c.eps)?)?;
        let heads = |part: usize| {
            split_heads(
                &qkv.slice(-1, part * c.d, (part + 1) * c.d)?,
                c.heads,
                c.head_dim,
            )
        };
        let mut scale = if c.scale_attn_weights {
            1.0 / (c.head_dim as f64).sqrt()
        } else {
            1.0
        };
        if c.scale_attn_by_inverse_layer_idx {
            scale /= (i + 1) as f64;
        }
        let attn = Attn {
            heads: c.heads,
            kv_heads: c.heads,
            head_dim: c.head_dim,
            scale,
            window: None,
            causal: true,
        };
        let z = cx.attention(i, heads(0)?, heads(1)?, heads(2)?, &attn)?;
        let attn_out = cx.rows(
            &name("hook_attn_out"),
            b.c_proj.forward(&merge_heads(&z, c.heads, c.head_dim)?)?,
        )?;
        let x = x.add(&attn_out)?;

        // MLP.
        let post = cx.rows(
            &name("mlp.hook_post"),
            c.act.apply(&b.c_fc.forward(&b.ln_2.forward(&x, c.eps)?)?)?,
        )?;
        let mlp_out = cx.rows(&name("hook_mlp_out"), b.mlp_proj.forward(&post)?)?;
        let x = x.add(&mlp_out)?;
        cx.rows(&name("hook_resid_post"), x)
    }

    fn head(&self, x: Tensor, cx: &mut Cx) -> Result<Tensor> {
        let h = cx.rows(
            "ln_final.hook_normalized",
            self.ln_f.forward(&x, self.cfg.eps)?,
        )?;
        h.matmul_t(self.lm_head.as_ref().unwrap_or(&self.wte))
    }

    fn lens(&self, x: &Tensor) -> Result<Tensor> {
        self.ln_f
            .forward(x, self.cfg.eps)?
            .matmul_t(self.lm_head.as_ref().unwrap_or(&self.wte))
    }
}
