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

use crate::family::{head_dim, Decoder, FamilyInfo};
use crate::pass::{Attn, Pass};
use crate::METHODS;
use serde_json::json;
use tokit_sdk::nn::{
    block_hook, merge_heads, split_heads, Act, LayerNorm, Linear, Weights, HOOK_EMBED,
};
use tokit_sdk::{ModelSource, Result, Tensor};

/// The family's loader.
pub fn load(src: &ModelSource, _model_type: &str) -> Result<Box<dyn Decoder>> {
    Ok(Box::new(Gpt2::load(src)?))
}

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
        let d = src.config_dim("n_embd")?;
        let heads = src.config_dim("n_head")?;
        Ok(Config {
            vocab: src.config_dim("vocab_size")?,
            d,
            heads,
            head_dim: head_dim(src, d, "n_embd", heads, "n_head")?,
            layers: src.config_layers("n_layer")?,
            n_positions: src.config_dim("n_positions")?,
            d_mlp: src.opt_config_dim("n_inner")?.unwrap_or(4 * d),
            eps: src
                .opt_config_positive("layer_norm_epsilon")?
                .unwrap_or(1e-5),
            act: Act::from_config(src, "activation_function", "gelu_new")?,
            scale_attn_weights: src.opt_config_bool("scale_attn_weights")?.unwrap_or(true),
            scale_attn_by_inverse_layer_idx: src
                .opt_config_bool("scale_attn_by_inverse_layer_idx")?
                .unwrap_or(false),
        })
    }
}

struct Block {
    ln_1: LayerNorm,
    c_attn: Linear,
    c_proj: Linear,
    ln_2: LayerNorm,
    c_fc: Linear,
    mlp_proj: Linear,
}

impl Block {
    fn load(w: &Weights, c: &Config) -> Result<Block> {
        let (d, m) = (c.d, c.d_mlp);
        let (attn, mlp) = (w.pp("attn"), w.pp("mlp"));
        Ok(Block {
            ln_1: LayerNorm::load(&w.pp("ln_1"), d, c.eps)?,
            c_attn: Linear::load_conv1d(&attn.pp("c_attn"), d, 3 * d)?,
            c_proj: Linear::load_conv1d(&attn.pp("c_proj"), d, d)?,
            ln_2: LayerNorm::load(&w.pp("ln_2"), d, c.eps)?,
            c_fc: Linear::load_conv1d(&mlp.pp("c_fc"), d, m)?,
            mlp_proj: Linear::load_conv1d(&mlp.pp("c_proj"), m, d)?,
        })
    }
}

pub struct Gpt2 {
    pub cfg: Config,
    wte: Tensor,
    wpe: Tensor,
    blocks: Vec<Block>,
    ln_f: LayerNorm,
    /// `lm_head` when the head is not tied (`tie_word_embeddings: false`), else `wte`.
    head: Linear,
    tied: bool,
}

impl Gpt2 {
    pub fn load(src: &ModelSource) -> Result<Gpt2> {
        let cfg = Config::read(src)?;
        let (d, v) = (cfg.d, cfg.vocab);
        let dims = format!(
            "n_embd {d}, n_head {}, n_layer {}, n_positions {}, n_inner {}, vocab_size {v}",
            cfg.heads, cfg.layers, cfg.n_positions, cfg.d_mlp
        );
        let w = Weights::open(src, &["transformer.", ""], "wte.weight", dims)?;
        let blocks = (0..cfg.layers)
            .map(|i| Block::load(&w.pp("h").pp(i), &cfg))
            .collect::<Result<Vec<_>>>()?;
        let tied = src.opt_config_bool("tie_word_embeddings")?.unwrap_or(true);
        let wte = w.get("wte.weight", &[v, d])?;
        // The head lives outside the `transformer.` prefix.
        let head = Linear::tied_or_load(tied, &wte, &w.root().pp("lm_head"), d, v, false)?;
        Ok(Gpt2 {
            wpe: w.get("wpe.weight", &[cfg.n_positions, d])?,
            ln_f: LayerNorm::load(&w.pp("ln_f"), d, cfg.eps)?,
            wte,
            blocks,
            head,
            tied,
            cfg,
        })
    }
}

impl Decoder for Gpt2 {
    fn info(&self) -> FamilyInfo {
        let c = &self.cfg;
        FamilyInfo {
            embed_hooks: &[HOOK_EMBED, "hook_pos_embed"],
            ablations: &METHODS,
            causal: true,
            vocab: c.vocab,
            d_model: c.d,
            context_length: Some(c.n_positions),
            extra: json!({
                "family": "gpt2",
                "n_heads": c.heads,
                "n_kv_heads": c.heads,
                "head_dim": c.head_dim,
                "d_mlp": c.d_mlp,
                "activation": c.act.name(),
                "positions": "learned",
                "tied_head": self.tied,
            }),
        }
    }

    fn n_layers(&self) -> usize {
        self.cfg.layers
    }

    fn embed(&self, pass: &mut Pass, tokens: &[u32]) -> Result<Tensor> {
        let positions: Vec<u32> = pass.positions().iter().map(|&p| p as u32).collect();
        let tok = pass.rows(HOOK_EMBED, Tensor::embedding(&self.wte, tokens)?)?;
        let pos = pass.rows("hook_pos_embed", Tensor::embedding(&self.wpe, &positions)?)?;
        tok.add(&pos)
    }

    fn block(&self, i: usize, x: Tensor, pass: &mut Pass) -> Result<Tensor> {
        let (c, b) = (&self.cfg, &self.blocks[i]);
        let name = |s: &str| block_hook(i, s);
        let x = pass.rows(&name("hook_resid_pre"), x)?;

        // Attention: one [d, 3d] projection gives q, k, v.
        let qkv = b.c_attn.forward(&b.ln_1.forward(&x)?)?;
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
        let z = pass.attention(i, heads(0)?, heads(1)?, heads(2)?, &attn)?;
        let attn_out = pass.rows(
            &name("hook_attn_out"),
            b.c_proj.forward(&merge_heads(&z, c.heads, c.head_dim)?)?,
        )?;
        let x = x.add(&attn_out)?;

        // MLP.
        let post = pass.rows(
            &name("mlp.hook_post"),
            c.act.forward(&b.c_fc.forward(&b.ln_2.forward(&x)?)?)?,
        )?;
        let mlp_out = pass.rows(&name("hook_mlp_out"), b.mlp_proj.forward(&post)?)?;
        let x = x.add(&mlp_out)?;
        pass.rows(&name("hook_resid_post"), x)
    }

    fn final_norm(&self, x: &Tensor) -> Result<Tensor> {
        self.ln_f.forward(x)
    }

    fn unembed(&self, h: &Tensor) -> Result<Tensor> {
        self.head.forward(h)
    }
}
