//! The host op catalogue: names and attribute layouts shared by the SDK and the engine.
//!
//! An op call is `op(name, inputs, ints, floats)`. Adding an op never changes the ABI; an
//! older host answers an unknown name with an error naming it. Layouts (inputs | ints |
//! floats):

/// `[a, b] | [trans_a, trans_b] | []` — batched matmul over the last two axes.
pub const MATMUL: &str = "matmul";
/// Binary, numpy broadcasting: `[a, b] | [] | []`.
pub const ADD: &str = "add";
pub const SUB: &str = "sub";
pub const MUL: &str = "mul";
pub const DIV: &str = "div";
pub const MAXIMUM: &str = "maximum";
pub const MINIMUM: &str = "minimum";
pub const BINARY: [&str; 6] = [ADD, SUB, MUL, DIV, MAXIMUM, MINIMUM];
/// `[a] | [] | [scale, shift]` — `a * scale + shift`.
pub const AFFINE: &str = "affine";
/// Unary: `[a] | [] | []`.
pub const NEG: &str = "neg";
pub const EXP: &str = "exp";
pub const LOG: &str = "log";
pub const SQRT: &str = "sqrt";
pub const RSQRT: &str = "rsqrt";
pub const ABS: &str = "abs";
pub const TANH: &str = "tanh";
pub const SIGMOID: &str = "sigmoid";
pub const RELU: &str = "relu";
pub const SILU: &str = "silu";
pub const GELU: &str = "gelu";
pub const GELU_TANH: &str = "gelu_tanh";
pub const SOFTPLUS: &str = "softplus";
pub const UNARY: [&str; 13] = [
    NEG, EXP, LOG, SQRT, RSQRT, ABS, TANH, SIGMOID, RELU, SILU, GELU, GELU_TANH, SOFTPLUS,
];
/// `[a] | [axis] | []`.
pub const SOFTMAX: &str = "softmax";
pub const LOG_SOFTMAX: &str = "log_softmax";
/// `[a] | [axis, keepdim] | []`.
pub const REDUCE_SUM: &str = "reduce_sum";
pub const REDUCE_MEAN: &str = "reduce_mean";
pub const REDUCE_MAX: &str = "reduce_max";
pub const REDUCE_MIN: &str = "reduce_min";
pub const REDUCE: [&str; 4] = [REDUCE_SUM, REDUCE_MEAN, REDUCE_MAX, REDUCE_MIN];
/// `[x, weight?, bias?] | [has_weight, has_bias] | [eps]` over the last axis.
pub const LAYER_NORM: &str = "layer_norm";
/// `[x, weight?] | [has_weight] | [eps]`.
pub const RMS_NORM: &str = "rms_norm";
/// `[x, gate, weight?] | [has_weight, norm_before_gate] | [eps]`.
pub const RMS_NORM_GATED: &str = "rms_norm_gated";
/// `[table] | ids | []` → `[n, d]`.
pub const EMBEDDING: &str = "embedding";
/// `[x (H,T,dh)] | [interleaved, positions..] | inv_freq`.
pub const ROPE: &str = "rope";
/// `[q, k, v] | [causal, q_offset, window or -1, has_keep, keep..] | [scale]`.
pub const ATTENTION: &str = "attention";
/// `[q, k] | same ints | [scale]` → masked scores `[H, Tq, Tk]`.
pub const ATTENTION_SCORES: &str = "attention_scores";
/// `[a] | shape (one -1 allowed) | []`.
pub const RESHAPE: &str = "reshape";
/// `[a] | axes | []`.
pub const PERMUTE: &str = "permute";
/// `[a] | [axis, start, end] | []`.
pub const SLICE: &str = "slice";
/// `[parts..] | [axis] | []`.
pub const CONCAT: &str = "concat";
/// `[a] | [axis, indices..] | []`.
pub const INDEX_SELECT: &str = "index_select";
/// `[x (T,C), weight (C,K), bias?, prefix? (K-1,C)] | [has_bias, has_prefix] | []` →
/// `[T, C]`: depthwise causal convolution over time.
pub const CONV1D_CAUSAL: &str = "conv1d_causal";
/// `[x (T,H,P), a (T,H), B (T,G,N), C (T,G,N), h0? (H,P,N)] | [chunk, has_h0] | []` →
/// `y [T, H, P]`: the chunked SSD scan.
pub const SSD_SCAN: &str = "ssd_scan";
/// `[x, a, B, h0?] | [has_h0, positions..] | []` → states `[K, H, P, N]` after `positions`.
pub const SSM_STATES: &str = "ssm_states";
