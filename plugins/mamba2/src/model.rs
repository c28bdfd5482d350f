//! One Mamba2 block and the whole model over a [`Pass`], top-down as in the equations of
//! the crate docs: embed, blocks (norm, in_proj, convolution, discretisation, scan, gated
//! norm, out_proj), final norm and head.

use crate::config::Config;
use crate::pass::Pass;
use crate::Mamba2;
use tokit_sdk::nn::{
    block_hook, Linear, RmsNorm, Weights, HOOK_EMBED, HOOK_LENS_LOGITS, HOOK_LOGITS, LN_FINAL,
};
use tokit_sdk::{Result, Tensor};

/// One Mamba2 block's layers (`A` and `D` stored ready to broadcast).
pub(crate) struct Layer {
    norm: RmsNorm,
    in_proj: Linear,
    conv_w: Tensor,
    conv_b: Option<Tensor>,
    dt_bias: Tensor,
    /// `A = −exp(A_log)`, `[H]`.
    a: Tensor,
    /// `D`, `[H, 1]`.
    d: Tensor,
    gate_norm: Tensor,
    out_proj: Linear,
}

impl Layer {
    /// Layer `backbone.layers.{i}` (`w` points there): its `norm` and its `mixer`.
    pub(crate) fn load(w: &Weights, c: &Config, use_bias: bool, conv_bias: bool) -> Result<Layer> {
        let m = w.pp("mixer");
        let proj = c.inner + c.conv_dim + c.heads;
        let a_log = m.get("A_log", &[c.heads])?;
        Ok(Layer {
            norm: RmsNorm::load(&w.pp("norm"), c.d, c.eps)?,
            in_proj: Linear::load(&m.pp("in_proj"), c.d, proj, use_bias)?,
            conv_w: m
                .get("conv1d.weight", &[c.conv_dim, 1, c.kernel])?
                .reshape(&[c.conv_dim as isize, c.kernel as isize])?,
            conv_b: m.get_if(conv_bias, "conv1d.bias", &[c.conv_dim])?,
            dt_bias: m.get("dt_bias", &[c.heads])?,
            a: a_log.exp()?.scale(-1.0)?,
            d: m.get("D", &[c.heads])?.reshape(&[c.heads as isize, 1])?,
            gate_norm: m.get("norm.weight", &[c.inner])?,
            out_proj: Linear::load(&m.pp("out_proj"), c.inner, c.d, use_bias)?,
        })
    }
}

/// One layer's memory after some position: the last `K − 1` convolution inputs
/// `[K−1, conv_dim]` and the SSM state `[H, P, N]`.
#[derive(Clone)]
pub struct LayerState {
    pub(crate) conv: Tensor,
    pub(crate) ssm: Tensor,
}

impl Mamba2 {
    /// Token embeddings → blocks → final norm → logits, for `tokens` at the pass's rows.
    pub(crate) fn run(&self, p: &mut Pass, tokens: &[u32]) -> Result<Tensor> {
        let mut x = p.hook(HOOK_EMBED, Tensor::embedding(&self.embed, tokens)?)?;
        for i in 0..self.cfg.layers {
            tokit_sdk::check_cancelled()?;
            x = self.block(i, x, p)?;
            // The logit lens: this layer's residual stream through the final norm and the
            // head. Capture only (the forward goes on from `x`), computed only when captured.
            let lens = block_hook(i, HOOK_LENS_LOGITS);
            if p.active(&lens) {
                p.hook(&lens, self.head.forward(&self.norm_f.forward(&x)?)?)?;
            }
        }
        if p.last_only {
            let n = tokens.len();
            x = x.slice(0, n - 1, n)?;
        }
        let x = p.hook(LN_FINAL, self.norm_f.forward(&x)?)?;
        p.hook(HOOK_LOGITS, self.head.forward(&x)?)
    }

    fn block(&self, i: usize, resid: Tensor, p: &mut Pass) -> Result<Tensor> {
        let (c, l) = (&self.cfg, &self.layers[i]);
        let name = |h: &str| block_hook(i, h);
        let (heads, pd, gn) = (
            c.heads as isize,
            c.head_dim as isize,
            (c.groups * c.state) as isize,
        );
        let resid = p.hook(&name("hook_resid_pre"), resid)?;
        let n = resid.shape()?[0];
        let u = l.norm.forward(&resid)?;

        // in_proj: gate z, conv input xBC, time step.
        let zxbcdt = l.in_proj.forward(&u)?;
        let z = zxbcdt.slice(1, 0, c.inner)?;
        let mut xbc = zxbcdt.slice(1, c.inner, c.inner + c.conv_dim)?;
        let dt = zxbcdt.slice(1, c.inner + c.conv_dim, c.inner + c.conv_dim + c.heads)?;
        if let Some(keep) = &p.keep {
            xbc = xbc.mul(keep)?;
        }

        // Depthwise causal convolution, continuing from the memory before this pass; packed
        // documents each from zeros (per document, so none reads its predecessor's rows).
        let init = p.init.map(|s| &s[i]);
        let conv = match &p.packed {
            None => xbc.conv1d_causal(&l.conv_w, l.conv_b.as_ref(), init.map(|s| &s.conv))?,
            Some((segments, _)) => {
                let docs = tokit_sdk::segment_ranges(segments)
                    .into_iter()
                    .map(|r| {
                        xbc.slice(0, r.start, r.end)?.conv1d_causal(
                            &l.conv_w,
                            l.conv_b.as_ref(),
                            None,
                        )
                    })
                    .collect::<Result<Vec<_>>>()?;
                Tensor::concat(&docs.iter().collect::<Vec<_>>(), 0)?
            }
        }
        .silu()?;
        let x = p.hook(
            &name("ssm.hook_x"),
            conv.slice(1, 0, c.inner)?.reshape(&[-1, heads, pd])?,
        )?;
        let groups = [-1, c.groups as isize, c.state as isize];
        let b = p.hook(
            &name("ssm.hook_B"),
            conv.slice(1, c.inner, c.inner + gn as usize)?
                .reshape(&groups)?,
        )?;
        let cm = p.hook(
            &name("ssm.hook_C"),
            conv.slice(1, c.inner + gn as usize, c.conv_dim)?
                .reshape(&groups)?,
        )?;

        // Discretisation: Δ_t and the decay a_t = exp(Δ_t A).
        let mut dt = dt.add(&l.dt_bias)?.softplus()?;
        let (lo, hi) = c.dt_limit;
        if lo > 0.0 {
            dt = dt.maximum(&Tensor::full(&[1], lo as f32)?)?;
        }
        if hi.is_finite() {
            dt = dt.minimum(&Tensor::full(&[1], hi as f32)?)?;
        }
        let dt = p.hook(&name("ssm.hook_dt"), dt)?;
        let a = p.hook(&name("ssm.hook_decay"), dt.mul(&l.a)?.exp()?)?;

        // The scan input Δ_t x_t; an ablated row writes nothing into the state.
        let mut xdt = x.mul(&dt.reshape(&[-1, heads, 1])?)?;
        if let Some(keep) = &p.keep {
            xdt = xdt.mul(&keep.reshape(&[-1, 1, 1])?)?;
        }
        let h0 = init.map(|s| &s.ssm);
        // Packed documents: a zero decay at each document's first row forgets the state
        // before it exactly (the scans multiply decays, `a_t = 0` is a memoryless step).
        // The hooks above see the model's own decay.
        let a = match &p.packed {
            Some((_, reset)) => a.mul(reset)?,
            None => a,
        };
        if !p.checkpoints.is_empty() {
            let states = Tensor::ssm_states(&xdt, &a, &b, h0, &p.checkpoints)?;
            // Convolution inputs: the memory before this pass, then this pass's rows.
            let k1 = c.kernel - 1;
            let padded = match init {
                Some(s) => Tensor::concat(&[&s.conv, &xbc], 0)?,
                None => Tensor::concat(&[&Tensor::full(&[k1, c.conv_dim], 0.0)?, &xbc], 0)?,
            };
            for (k, (&r, saved)) in p.checkpoints.iter().zip(&mut p.saved).enumerate() {
                let ssm = states
                    .slice(0, k, k + 1)?
                    .reshape(&[heads, pd, c.state as isize])?;
                // Inputs r + 1 − (K − 1) ..= r, in `padded` coordinates (shifted by K − 1).
                let conv = padded.slice(0, r + 1, r + 1 + k1)?;
                saved.push(LayerState { conv, ssm });
            }
        }
        let state_hook = name("ssm.hook_state");
        let y = if p.active(&state_hook) {
            let all: Vec<usize> = (0..n).collect();
            let states = p.hook(&state_hook, Tensor::ssm_states(&xdt, &a, &b, h0, &all)?)?;
            let ch =
                cm.index_select(1, &self.head_group)?
                    .reshape(&[-1, heads, c.state as isize, 1])?;
            states.matmul(&ch)?.reshape(&[-1, heads, pd])?
        } else {
            Tensor::ssd_scan(&xdt, &a, &b, &cm, h0, c.chunk)?
        };
        let y = p.hook(&name("ssm.hook_y"), y.add(&x.mul(&l.d)?)?)?;

        // Gated RMSNorm per group (gate first, as transformers), then out_proj.
        let y = y.reshape(&[-1, c.inner as isize])?;
        let normed = if c.groups == 1 {
            y.rms_norm_gated(&z, Some(&l.gate_norm), c.eps, false)?
        } else {
            let g = [-1, c.groups as isize, (c.inner / c.groups) as isize];
            y.reshape(&g)?
                .rms_norm_gated(&z.reshape(&g)?, None, c.eps, false)?
                .reshape(&[-1, c.inner as isize])?
                .mul(&l.gate_norm)?
        };
        let out = l.out_proj.forward(&normed)?;
        p.hook(&name("hook_resid_post"), resid.add(&out)?)
    }
}
