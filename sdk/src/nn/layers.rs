//! Layers with their weights: [`Linear`], [`RmsNorm`], [`LayerNorm`], the MLP activations
//! ([`Act`]) and the head reshapes of multi-head attention.
//!
//! Each layer loads from a [`Weights`] view pointing at it (`w.pp("q_proj")`) and reads
//! `weight` / `bias` there, as Hugging Face checkpoints name them.

use super::Weights;
use crate::arch::ModelSource;
use crate::error::{Error, Result};
use crate::ops;
use crate::tensor::Tensor;

/// `y = x Wᵀ + b`, `W` stored `[out, in]` (`nn.Linear`); or `y = x W + b` with `W` stored
/// `[in, out]` (GPT-2's `Conv1D`).
#[derive(Clone, Debug)]
pub struct Linear {
    w: Tensor,
    b: Option<Tensor>,
    /// `W` is stored `[in, out]`.
    in_out: bool,
}

impl Linear {
    /// A map from weights already loaded: `w [out, in]`, `b [out]`.
    pub fn new(w: Tensor, b: Option<Tensor>) -> Linear {
        Linear {
            w,
            b,
            in_out: false,
        }
    }

    /// `weight [n_out, n_in]` and, when `bias`, `bias [n_out]`.
    pub fn load(w: &Weights, n_in: usize, n_out: usize, bias: bool) -> Result<Linear> {
        let b = w.get_if(bias, "bias", &[n_out])?;
        Ok(Linear::new(w.get("weight", &[n_out, n_in])?, b))
    }

    /// GPT-2's `Conv1D`: `weight [n_in, n_out]` and `bias [n_out]`.
    pub fn load_conv1d(w: &Weights, n_in: usize, n_out: usize) -> Result<Linear> {
        Ok(Linear {
            w: w.get("weight", &[n_in, n_out])?,
            b: Some(w.get("bias", &[n_out])?),
            in_out: true,
        })
    }

    /// The unembedding: the embedding table when the head is `tied`, else loaded like
    /// [`Linear::load`] (`n_in` = d, `n_out` = vocab).
    pub fn tied_or_load(
        tied: bool,
        embed: &Tensor,
        w: &Weights,
        n_in: usize,
        n_out: usize,
        bias: bool,
    ) -> Result<Linear> {
        if tied {
            Ok(Linear::new(embed.clone(), None))
        } else {
            Linear::load(w, n_in, n_out, bias)
        }
    }

    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let y = if self.in_out {
            x.matmul(&self.w)?
        } else {
            x.matmul_t(&self.w)?
        };
        match &self.b {
            Some(b) => y.add(b),
            None => Ok(y),
        }
    }

    pub fn weight(&self) -> &Tensor {
        &self.w
    }
}

/// RMSNorm over the last axis with a weight and, in some checkpoints, a bias added after.
#[derive(Clone, Debug)]
pub struct RmsNorm {
    w: Tensor,
    b: Option<Tensor>,
    eps: f64,
}

impl RmsNorm {
    /// `weight [d]`.
    pub fn load(w: &Weights, d: usize, eps: f64) -> Result<RmsNorm> {
        RmsNorm::load_biased(w, d, eps, false)
    }

    /// `weight [d]` and, when `bias`, `bias [d]`.
    pub fn load_biased(w: &Weights, d: usize, eps: f64, bias: bool) -> Result<RmsNorm> {
        Ok(RmsNorm {
            w: w.get("weight", &[d])?,
            b: w.get_if(bias, "bias", &[d])?,
            eps,
        })
    }

    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let y = x.rms_norm(Some(&self.w), self.eps)?;
        match &self.b {
            Some(b) => y.add(b),
            None => Ok(y),
        }
    }
}

/// LayerNorm over the last axis: `weight [d]`, `bias [d]`.
#[derive(Clone, Debug)]
pub struct LayerNorm {
    w: Tensor,
    b: Tensor,
    eps: f64,
}

impl LayerNorm {
    pub fn load(w: &Weights, d: usize, eps: f64) -> Result<LayerNorm> {
        Ok(LayerNorm {
            w: w.get("weight", &[d])?,
            b: w.get("bias", &[d])?,
            eps,
        })
    }

    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        x.layer_norm(Some(&self.w), Some(&self.b), self.eps)
    }
}

/// An MLP activation, named as in transformers' `ACT2FN`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Act {
    Silu,
    Gelu,
    GeluTanh,
    Relu,
}

impl Act {
    /// The activation config.json names in `field` (`default` when absent).
    pub fn from_config(src: &ModelSource, field: &str, default: &str) -> Result<Act> {
        let name = src
            .opt_config_str(field)?
            .unwrap_or_else(|| default.to_string());
        Ok(match name.as_str() {
            "silu" | "swish" => Act::Silu,
            "gelu" => Act::Gelu,
            "gelu_new" | "gelu_pytorch_tanh" | "gelu_fast" => Act::GeluTanh,
            "relu" => Act::Relu,
            other => {
                return Err(Error::msg(format!(
                    "{}/config.json: `{field}` = \"{other}\" is not supported \
                     (silu, swish, gelu, gelu_new, gelu_pytorch_tanh, gelu_fast, relu)",
                    src.path
                )))
            }
        })
    }

    pub fn forward(self, x: &Tensor) -> Result<Tensor> {
        match self {
            Act::Silu => x.silu(),
            Act::Gelu => x.gelu(),
            Act::GeluTanh => x.gelu_tanh(),
            Act::Relu => x.unary(ops::RELU),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Act::Silu => "silu",
            Act::Gelu => "gelu",
            Act::GeluTanh => "gelu_tanh",
            Act::Relu => "relu",
        }
    }
}

/// `[n, H · dh]` → `[H, n, dh]`.
pub fn split_heads(x: &Tensor, heads: usize, head_dim: usize) -> Result<Tensor> {
    x.reshape(&[-1, heads as isize, head_dim as isize])?
        .permute(&[1, 0, 2])
}

/// `[H, n, dh]` → `[n, H · dh]`.
pub fn merge_heads(z: &Tensor, heads: usize, head_dim: usize) -> Result<Tensor> {
    z.permute(&[1, 0, 2])?
        .reshape(&[-1, (heads * head_dim) as isize])
}
