//! tokit's compute layer: f32 tensors (on the host or a device) and the `Backend` trait
//! with its CPU implementation and, behind the `gpu` feature, its wgpu implementation.
//! Architecture plugins never see this crate; they reach it through the host ops of the
//! plugin ABI.
//!
//! The trait is backend-neutral: it speaks only in [`Tensor`]s, shapes and plain
//! parameters, so a GPU backend can implement the same surface. Shape validation lives
//! in [`shape`] so every backend rejects the same inputs with the same messages.
//!
//! Conventions shared by all ops:
//! - tensors are contiguous row-major `f32`; ops return new tensors;
//! - a negative `axis` counts from the end;
//! - bad shapes are reported as errors naming the op, the shapes and what was
//!   expected; no op panics on user input.

mod cpu;
#[cfg(feature = "gpu")]
pub mod gpu;
mod ops;
pub mod shape;
mod tensor;
#[cfg(test)]
mod testutil;

use anyhow::Result;

pub use cpu::{CpuBackend, CpuWeights};
#[cfg(feature = "gpu")]
pub use gpu::GpuBackend;
pub use ops::{AttnMask, BinaryOp, ReduceOp, UnaryOp};
pub use shape::broadcast_shape;
pub use tensor::{DeviceData, Tensor};

/// The op surface every compute backend implements.
pub trait Backend: Send + Sync {
    /// Short backend name, e.g. `"cpu"`.
    fn name(&self) -> String;

    /// Batched matrix product. `a` is `[..., m, k]` (`[..., k, m]` when `trans_a`), `b`
    /// is `[..., k, n]` (`[..., n, k]` when `trans_b`); leading batch dimensions
    /// broadcast numpy-style and the result is `[batch..., m, n]`. Both operands need at
    /// least 2 dimensions. `matmul(x, w, false, true)` is the linear layer `x @ W^T`.
    fn matmul(&self, a: &Tensor, b: &Tensor, trans_a: bool, trans_b: bool) -> Result<Tensor>;

    /// Elementwise binary op with numpy broadcasting.
    fn binary(&self, op: BinaryOp, a: &Tensor, b: &Tensor) -> Result<Tensor>;

    /// Elementwise unary op.
    fn unary(&self, op: UnaryOp, a: &Tensor) -> Result<Tensor>;

    /// `a * scale + shift`, elementwise.
    fn affine(&self, a: &Tensor, scale: f32, shift: f32) -> Result<Tensor>;

    /// Numerically stable softmax along `axis`; a slice that is entirely `-inf` becomes
    /// all zeros.
    fn softmax(&self, a: &Tensor, axis: isize) -> Result<Tensor>;

    /// `log(softmax(a))` computed stably; a slice that is entirely `-inf` stays `-inf`.
    fn log_softmax(&self, a: &Tensor, axis: isize) -> Result<Tensor>;

    /// Sum/mean/max/min along `axis` (max/min propagate NaN; max/min of an empty axis is
    /// an error, the mean of one is NaN).
    fn reduce(&self, op: ReduceOp, a: &Tensor, axis: isize, keepdim: bool) -> Result<Tensor>;

    /// Layer norm over the last axis with biased variance (as torch); `weight` and
    /// `bias` are `[d]`.
    fn layer_norm(
        &self,
        x: &Tensor,
        weight: Option<&Tensor>,
        bias: Option<&Tensor>,
        eps: f32,
    ) -> Result<Tensor>;

    /// `x / sqrt(mean(x^2) + eps) * weight` over the last axis; `weight` is `[d]`.
    fn rms_norm(&self, x: &Tensor, weight: Option<&Tensor>, eps: f32) -> Result<Tensor>;

    /// Mamba2's gated RMSNorm over the last axis. `norm_before_gate == false`:
    /// `rms_norm(x * silu(gate)) * weight`; `true`: `rms_norm(x) * weight * silu(gate)`.
    /// `gate` has `x`'s shape. For grouped normalisation (n_groups > 1) reshape `x` and
    /// `gate` to `[..., groups, d / groups]`, pass `weight = None`, reshape back and
    /// multiply by the weight.
    fn rms_norm_gated(
        &self,
        x: &Tensor,
        gate: &Tensor,
        weight: Option<&Tensor>,
        eps: f32,
        norm_before_gate: bool,
    ) -> Result<Tensor>;

    /// Rows of `table [V, d]` for each id: `[ids.len(), d]`.
    fn embedding(&self, table: &Tensor, ids: &[u32]) -> Result<Tensor>;

    /// Rotary position embedding on `x [..., T, dh]` (normally `[H, T, dh]`).
    ///
    /// The rotary width is `2 * inv_freq.len() <= dh`; dimensions beyond it pass through
    /// (partial rotary). Pair `i` rotates by `positions[t] * inv_freq[i]`. Half-split
    /// layout (Llama/NeoX, `interleaved == false`) pairs dims `(i, i + rot/2)`;
    /// interleaved (GPT-J) pairs `(2i, 2i + 1)`. Like torch, the angle is the `f32`
    /// product `(position as f32) * inv_freq[i]`.
    fn rope(
        &self,
        x: &Tensor,
        positions: &[usize],
        inv_freq: &[f32],
        interleaved: bool,
    ) -> Result<Tensor>;

    /// Scaled dot-product attention. `q [H, Tq, dh]`, `k [Hkv, Tk, dh]`,
    /// `v [Hkv, Tk, dv]` with `H % Hkv == 0` (query head `h` uses kv head
    /// `h / (H / Hkv)`); returns `[H, Tq, dv]`. See [`AttnMask`] for masking; a query
    /// with no visible key outputs zeros.
    fn attention(
        &self,
        q: &Tensor,
        k: &Tensor,
        v: &Tensor,
        mask: &AttnMask,
        scale: f32,
    ) -> Result<Tensor>;

    /// [`Backend::attention`] that also returns, for hooks, the scaled scores
    /// `[H, Tq, Tk]` (masked entries set to `-inf`) and the softmax pattern
    /// `[H, Tq, Tk]` (masked entries 0): `(out, scores, pattern)`.
    fn attention_with_probs(
        &self,
        q: &Tensor,
        k: &Tensor,
        v: &Tensor,
        mask: &AttnMask,
        scale: f32,
    ) -> Result<(Tensor, Tensor, Tensor)>;

    /// Same data, new shape; at most one `-1` (inferred) dimension.
    fn reshape(&self, a: &Tensor, shape: &[isize]) -> Result<Tensor>;

    /// Reorders dimensions: output dimension `i` is input dimension `axes[i]`.
    fn permute(&self, a: &Tensor, axes: &[usize]) -> Result<Tensor>;

    /// Elements `start..end` along `axis`.
    fn slice(&self, a: &Tensor, axis: isize, start: usize, end: usize) -> Result<Tensor>;

    /// Joins tensors that agree on every dimension except `axis`.
    fn concat(&self, parts: &[&Tensor], axis: isize) -> Result<Tensor>;

    /// Picks `indices` (repeats allowed) along `axis`.
    fn index_select(&self, a: &Tensor, axis: isize, indices: &[usize]) -> Result<Tensor>;

    /// Depthwise causal convolution over time (Mamba2's `conv1d`): `x [T, C]`,
    /// `weight [C, K]`, optional `bias [C]` and `prefix [K-1, C]`, the inputs just before
    /// `x` (zeros when absent; a decoding step passes the cached rows). Returns `[T, C]`
    /// with `y[t, c] = bias[c] + Σ_k weight[c, k] · in[t + k - (K - 1), c]` where `in` is
    /// `prefix` followed by `x` (torch `conv1d`, `groups = C`, `padding = K - 1`, first `T`
    /// outputs). No activation.
    fn conv1d_causal(
        &self,
        x: &Tensor,
        weight: &Tensor,
        bias: Option<&Tensor>,
        prefix: Option<&Tensor>,
    ) -> Result<Tensor>;

    /// Chunked SSD scan (Mamba2). Per head `h` of `H`, group `g = h / (H / G)`:
    /// `S_t = a[t, h] S_{t-1} + x[t, h] B[t, g]ᵀ` (state `[P, N]`, `S_{-1} = h0[h]` or zero),
    /// output `y[t, h] = S_t C[t, g]`. Inputs `x [T, H, P]`, decay `a [T, H]` (any finite
    /// value; exactly 0 must give a memoryless step, so use products of `a`, not `exp` of
    /// differences of log-cumulative sums), `B, C [T, G, N]`, `h0 [H, P, N]`. Returns
    /// `y [T, H, P]`. Evaluated in chunks of `chunk` positions (the last may be shorter):
    /// the matrix form `y_t = Σ_s (C_t·B_s) Π_{k=s+1}^{t} a_k x_s` inside a chunk plus the
    /// state entering it. Must agree with [`Backend::ssm_states`] to float rounding.
    fn ssd_scan(
        &self,
        x: &Tensor,
        a: &Tensor,
        b: &Tensor,
        c: &Tensor,
        h0: Option<&Tensor>,
        chunk: usize,
    ) -> Result<Tensor>;

    /// The recurrent form of [`Backend::ssd_scan`]: the states `S_t` after each of
    /// `positions` (any order, repeats allowed, each `< T`) as `[K, H, P, N]`. With `T = 1`,
    /// `positions = [0]` it is one decoding step `S = a S_prev + x Bᵀ`.
    fn ssm_states(
        &self,
        x: &Tensor,
        a: &Tensor,
        b: &Tensor,
        h0: Option<&Tensor>,
        positions: &[usize],
    ) -> Result<Tensor>;

    /// Waits until every op issued so far has finished (device backends queue work;
    /// the CPU backend finishes each op before returning). For timing.
    fn sync(&self) -> Result<()> {
        Ok(())
    }
}
