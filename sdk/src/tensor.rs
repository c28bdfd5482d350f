//! `Tensor`: a reference to a host-owned f32 tensor, with the host ops as methods.
//!
//! Every op is one call into the host, which runs it on its backend (CPU or GPU), so a
//! plugin written against these methods runs on every backend unchanged. Op names and
//! attribute layouts are the contract in [`crate::ops`].

use crate::abi::{OpAttrs, Str, TensorId, TensorView, DTYPE_FLOAT};
use crate::error::{Error, Result};
use crate::host::{api, check, TextBuf};
use crate::ops;

/// One reference to a host tensor; dropping it releases the reference.
#[derive(Debug)]
pub struct Tensor {
    id: TensorId,
}

impl Drop for Tensor {
    fn drop(&mut self) {
        if let Ok(api) = api() {
            // SAFETY: we own one reference to `id`.
            unsafe { (api.tensor_release)(api.ctx, self.id) }
        }
    }
}

impl Clone for Tensor {
    fn clone(&self) -> Tensor {
        if let Ok(api) = api() {
            // SAFETY: we hold a reference, so the id is live.
            unsafe { (api.tensor_retain)(api.ctx, self.id) };
        }
        Tensor { id: self.id }
    }
}

/// Key mask and causality for [`Tensor::attention`].
#[derive(Clone, Debug, Default)]
pub struct AttnMask {
    /// Query i (at absolute position `q_offset + i`) sees keys `0..=q_offset + i` only.
    pub causal: bool,
    pub q_offset: usize,
    /// `false` removes that key from every query (position ablation by attention mask).
    pub key_keep: Option<Vec<bool>>,
    /// Sliding window: keys older than `window` positions are not seen.
    pub window: Option<usize>,
}

impl Tensor {
    /// Take ownership of a reference the host just handed out.
    pub(crate) fn from_id(id: TensorId) -> Tensor {
        Tensor { id }
    }

    /// The raw handle (borrowed: the `Tensor` keeps the reference).
    pub fn id(&self) -> TensorId {
        self.id
    }

    /// Give up ownership without releasing (the receiver takes over the reference).
    pub(crate) fn into_id(self) -> TensorId {
        let id = self.id;
        std::mem::forget(self);
        id
    }

    /// A new host tensor holding a copy of `data` with row-major `shape`.
    pub fn from_slice(data: &[f32], shape: &[usize]) -> Result<Tensor> {
        let n: usize = shape.iter().product();
        if n != data.len() {
            return Err(Error::msg(format!(
                "tensor shape {shape:?} needs {n} values, got {}",
                data.len()
            )));
        }
        let api = api()?;
        let shape64: Vec<i64> = shape.iter().map(|&d| d as i64).collect();
        let mut out = 0;
        let mut err = TextBuf::new();
        let e = err.sink();
        // SAFETY: pointers valid through the call.
        let st = unsafe {
            (api.tensor_new)(
                api.ctx,
                data.as_ptr(),
                data.len(),
                shape64.as_ptr(),
                shape64.len(),
                &mut out,
                &e,
            )
        };
        check(st, err, "tensor_new")?;
        Ok(Tensor::from_id(out))
    }

    /// A scalar-filled tensor.
    pub fn full(shape: &[usize], value: f32) -> Result<Tensor> {
        Tensor::from_slice(&vec![value; shape.iter().product()], shape)
    }

    /// Read the data: `f` gets the values (row-major) and the shape.
    pub fn with_data<R>(&self, f: impl FnOnce(&[f32], &[usize]) -> R) -> Result<R> {
        let api = api()?;
        let mut view = TensorView {
            data: std::ptr::null(),
            dtype_code: 0,
            dtype_bits: 0,
            dtype_lanes: 0,
            ndim: 0,
            shape: std::ptr::null(),
            strides: std::ptr::null(),
            byte_offset: 0,
        };
        let mut err = TextBuf::new();
        let e = err.sink();
        // SAFETY: we hold a reference; `view` is written by the host.
        let st = unsafe { (api.tensor_read)(api.ctx, self.id, &mut view, &e) };
        check(st, err, "tensor_read")?;
        if view.dtype_code != DTYPE_FLOAT || view.dtype_bits != 32 || !view.strides.is_null() {
            return Err(Error::msg("tensor_read: expected a compact f32 tensor"));
        }
        // SAFETY: the host guarantees ndim shape entries and a compact f32 buffer that stay
        // valid while we hold the reference and this call runs.
        let shape: Vec<usize> =
            unsafe { std::slice::from_raw_parts(view.shape, view.ndim as usize) }
                .iter()
                .map(|&d| d as usize)
                .collect();
        let n: usize = shape.iter().product();
        let data: &[f32] = if n == 0 {
            &[]
        } else {
            unsafe {
                std::slice::from_raw_parts(
                    (view.data as *const u8).add(view.byte_offset as usize) as *const f32,
                    n,
                )
            }
        };
        Ok(f(data, &shape))
    }

    pub fn shape(&self) -> Result<Vec<usize>> {
        self.with_data(|_, s| s.to_vec())
    }

    pub fn to_vec(&self) -> Result<Vec<f32>> {
        self.with_data(|d, _| d.to_vec())
    }

    /// Run host op `name` (see [`crate::ops`]) on `inputs`.
    pub fn op(name: &str, inputs: &[&Tensor], ints: &[i64], floats: &[f64]) -> Result<Tensor> {
        let api = api()?;
        let ids: Vec<TensorId> = inputs.iter().map(|t| t.id).collect();
        let attrs = OpAttrs {
            ints: ints.as_ptr(),
            n_ints: ints.len(),
            floats: floats.as_ptr(),
            n_floats: floats.len(),
        };
        let mut out = 0;
        let mut err = TextBuf::new();
        let e = err.sink();
        // SAFETY: pointers valid through the call; inputs are borrowed by the host.
        let st = unsafe {
            (api.op)(
                api.ctx,
                Str::new(name),
                ids.as_ptr(),
                ids.len(),
                &attrs,
                &mut out,
                &e,
            )
        };
        check(st, err, name)?;
        Ok(Tensor::from_id(out))
    }

    // ---- linear algebra -------------------------------------------------------------

    /// `self @ other` over the last two axes, batch axes broadcast.
    pub fn matmul(&self, other: &Tensor) -> Result<Tensor> {
        Tensor::op(ops::MATMUL, &[self, other], &[0, 0], &[])
    }

    /// `self @ otherᵀ`: the usual `x W^T` with `W` stored `[out, in]`.
    pub fn matmul_t(&self, other: &Tensor) -> Result<Tensor> {
        Tensor::op(ops::MATMUL, &[self, other], &[0, 1], &[])
    }

    pub fn matmul_ex(&self, other: &Tensor, trans_a: bool, trans_b: bool) -> Result<Tensor> {
        Tensor::op(
            ops::MATMUL,
            &[self, other],
            &[trans_a as i64, trans_b as i64],
            &[],
        )
    }

    // ---- elementwise ----------------------------------------------------------------

    pub fn add(&self, o: &Tensor) -> Result<Tensor> {
        Tensor::op(ops::ADD, &[self, o], &[], &[])
    }
    pub fn sub(&self, o: &Tensor) -> Result<Tensor> {
        Tensor::op(ops::SUB, &[self, o], &[], &[])
    }
    pub fn mul(&self, o: &Tensor) -> Result<Tensor> {
        Tensor::op(ops::MUL, &[self, o], &[], &[])
    }
    pub fn div(&self, o: &Tensor) -> Result<Tensor> {
        Tensor::op(ops::DIV, &[self, o], &[], &[])
    }
    pub fn maximum(&self, o: &Tensor) -> Result<Tensor> {
        Tensor::op(ops::MAXIMUM, &[self, o], &[], &[])
    }
    pub fn minimum(&self, o: &Tensor) -> Result<Tensor> {
        Tensor::op(ops::MINIMUM, &[self, o], &[], &[])
    }
    /// `self * scale + shift`.
    pub fn affine(&self, scale: f64, shift: f64) -> Result<Tensor> {
        Tensor::op(ops::AFFINE, &[self], &[], &[scale, shift])
    }
    pub fn scale(&self, s: f64) -> Result<Tensor> {
        self.affine(s, 0.0)
    }
    /// Apply a unary op by name (`ops::UNARY`: "exp", "silu", "gelu", ...).
    pub fn unary(&self, name: &str) -> Result<Tensor> {
        Tensor::op(name, &[self], &[], &[])
    }
    pub fn exp(&self) -> Result<Tensor> {
        self.unary(ops::EXP)
    }
    pub fn silu(&self) -> Result<Tensor> {
        self.unary(ops::SILU)
    }
    /// Exact (erf) GELU.
    pub fn gelu(&self) -> Result<Tensor> {
        self.unary(ops::GELU)
    }
    /// tanh-approximated GELU (GPT-2's `gelu_new`).
    pub fn gelu_tanh(&self) -> Result<Tensor> {
        self.unary(ops::GELU_TANH)
    }
    pub fn softplus(&self) -> Result<Tensor> {
        self.unary(ops::SOFTPLUS)
    }
    pub fn sigmoid(&self) -> Result<Tensor> {
        self.unary(ops::SIGMOID)
    }

    // ---- reductions and normalisation ------------------------------------------------

    pub fn softmax(&self, axis: isize) -> Result<Tensor> {
        Tensor::op(ops::SOFTMAX, &[self], &[axis as i64], &[])
    }
    pub fn log_softmax(&self, axis: isize) -> Result<Tensor> {
        Tensor::op(ops::LOG_SOFTMAX, &[self], &[axis as i64], &[])
    }
    /// `name` one of `ops::REDUCE_SUM`, `REDUCE_MEAN`, `REDUCE_MAX`, `REDUCE_MIN`.
    pub fn reduce(&self, name: &str, axis: isize, keepdim: bool) -> Result<Tensor> {
        Tensor::op(name, &[self], &[axis as i64, keepdim as i64], &[])
    }
    pub fn layer_norm(
        &self,
        weight: Option<&Tensor>,
        bias: Option<&Tensor>,
        eps: f64,
    ) -> Result<Tensor> {
        let mut inputs = vec![self];
        inputs.extend(weight);
        inputs.extend(bias);
        Tensor::op(
            ops::LAYER_NORM,
            &inputs,
            &[weight.is_some() as i64, bias.is_some() as i64],
            &[eps],
        )
    }
    pub fn rms_norm(&self, weight: Option<&Tensor>, eps: f64) -> Result<Tensor> {
        let mut inputs = vec![self];
        inputs.extend(weight);
        Tensor::op(ops::RMS_NORM, &inputs, &[weight.is_some() as i64], &[eps])
    }
    pub fn rms_norm_gated(
        &self,
        gate: &Tensor,
        weight: Option<&Tensor>,
        eps: f64,
        norm_before_gate: bool,
    ) -> Result<Tensor> {
        let mut inputs = vec![self, gate];
        inputs.extend(weight);
        Tensor::op(
            ops::RMS_NORM_GATED,
            &inputs,
            &[weight.is_some() as i64, norm_before_gate as i64],
            &[eps],
        )
    }

    // ---- indexing and shape ----------------------------------------------------------

    /// Rows `ids` of the table `[V, d]` → `[n, d]`.
    pub fn embedding(table: &Tensor, ids: &[u32]) -> Result<Tensor> {
        let ints: Vec<i64> = ids.iter().map(|&i| i as i64).collect();
        Tensor::op(ops::EMBEDDING, &[table], &ints, &[])
    }
    /// Rotary embedding of `[H, T, dh]` at `positions` with frequencies `inv_freq`.
    pub fn rope(&self, positions: &[usize], inv_freq: &[f64], interleaved: bool) -> Result<Tensor> {
        let mut ints = vec![interleaved as i64];
        ints.extend(positions.iter().map(|&p| p as i64));
        Tensor::op(ops::ROPE, &[self], &ints, inv_freq)
    }
    /// Scaled dot-product attention; `q [H,Tq,dh]`, `k [Hkv,Tk,dh]`, `v [Hkv,Tk,dv]`.
    pub fn attention(
        q: &Tensor,
        k: &Tensor,
        v: &Tensor,
        mask: &AttnMask,
        scale: f64,
    ) -> Result<Tensor> {
        Tensor::op(ops::ATTENTION, &[q, k, v], &mask_ints(mask), &[scale])
    }
    /// Masked pre-softmax scores `[H, Tq, Tk]` (−inf where masked), for hooks on scores.
    pub fn attention_scores(q: &Tensor, k: &Tensor, mask: &AttnMask, scale: f64) -> Result<Tensor> {
        Tensor::op(ops::ATTENTION_SCORES, &[q, k], &mask_ints(mask), &[scale])
    }
    /// New shape; one entry may be −1.
    pub fn reshape(&self, shape: &[isize]) -> Result<Tensor> {
        let ints: Vec<i64> = shape.iter().map(|&d| d as i64).collect();
        Tensor::op(ops::RESHAPE, &[self], &ints, &[])
    }
    pub fn permute(&self, axes: &[usize]) -> Result<Tensor> {
        let ints: Vec<i64> = axes.iter().map(|&d| d as i64).collect();
        Tensor::op(ops::PERMUTE, &[self], &ints, &[])
    }
    pub fn slice(&self, axis: isize, start: usize, end: usize) -> Result<Tensor> {
        Tensor::op(
            ops::SLICE,
            &[self],
            &[axis as i64, start as i64, end as i64],
            &[],
        )
    }
    pub fn concat(parts: &[&Tensor], axis: isize) -> Result<Tensor> {
        Tensor::op(ops::CONCAT, parts, &[axis as i64], &[])
    }
    pub fn index_select(&self, axis: isize, indices: &[usize]) -> Result<Tensor> {
        let mut ints = vec![axis as i64];
        ints.extend(indices.iter().map(|&i| i as i64));
        Tensor::op(ops::INDEX_SELECT, &[self], &ints, &[])
    }

    // ---- state-space models (Mamba2) -------------------------------------------------

    /// Depthwise causal convolution of `self [T, C]` with `weight [C, K]`, after the
    /// inputs `prefix [K-1, C]` (zeros when `None`).
    pub fn conv1d_causal(
        &self,
        weight: &Tensor,
        bias: Option<&Tensor>,
        prefix: Option<&Tensor>,
    ) -> Result<Tensor> {
        let mut inputs = vec![self, weight];
        inputs.extend(bias);
        inputs.extend(prefix);
        Tensor::op(
            ops::CONV1D_CAUSAL,
            &inputs,
            &[bias.is_some() as i64, prefix.is_some() as i64],
            &[],
        )
    }
    /// Chunked SSD scan: `y [T, H, P]` of `S_t = a_t S_{t-1} + x_t B_tᵀ`, `y_t = S_t C_t`
    /// per head, from `x [T, H, P]`, `a [T, H]`, `b`, `c [T, G, N]`, `h0 [H, P, N]`.
    pub fn ssd_scan(
        x: &Tensor,
        a: &Tensor,
        b: &Tensor,
        c: &Tensor,
        h0: Option<&Tensor>,
        chunk: usize,
    ) -> Result<Tensor> {
        let mut inputs = vec![x, a, b, c];
        inputs.extend(h0);
        Tensor::op(
            ops::SSD_SCAN,
            &inputs,
            &[chunk as i64, h0.is_some() as i64],
            &[],
        )
    }
    /// The recurrence of [`Tensor::ssd_scan`]: states `[K, H, P, N]` after `positions`.
    pub fn ssm_states(
        x: &Tensor,
        a: &Tensor,
        b: &Tensor,
        h0: Option<&Tensor>,
        positions: &[usize],
    ) -> Result<Tensor> {
        let mut inputs = vec![x, a, b];
        inputs.extend(h0);
        let mut ints = vec![h0.is_some() as i64];
        ints.extend(positions.iter().map(|&p| p as i64));
        Tensor::op(ops::SSM_STATES, &inputs, &ints, &[])
    }
}

fn mask_ints(mask: &AttnMask) -> Vec<i64> {
    let mut ints = vec![
        mask.causal as i64,
        mask.q_offset as i64,
        mask.window.map_or(-1, |w| w as i64),
        mask.key_keep.is_some() as i64,
    ];
    if let Some(keep) = &mask.key_keep {
        ints.extend(keep.iter().map(|&k| k as i64));
    }
    ints
}
