//! The stable C ABI between the tokit engine (the host) and its plugins, major version 1.
//!
//! Rules every change must keep (docs/architecture.md, "The ABI"):
//! - Only `#[repr(C)]` structs of plain C types cross the boundary: no Rust enums, `String`,
//!   `Vec`, `Box`, trait objects or generics. Status codes and dtypes are integers so an
//!   unknown value from a newer peer is data, not undefined behaviour.
//! - One exported data symbol, [`ENTRY_SYMBOL`], holds a [`PluginEntry`].
//! - Tables are append-only within a major version and start with `struct_size`; a reader
//!   uses only the prefix it knows. Adding a field = bumping [`ABI_MINOR`].
//! - Whoever allocates memory frees it. Strings are borrowed `(ptr, len)` views valid for the
//!   duration of the call; anything a plugin returns travels through a host-provided sink.
//! - Tensors live in the host: plugins hold `u64` handles, compute with host ops, and read
//!   data through a borrowed DLPack-shaped [`TensorView`].
//! - Every function is `extern "C"`; the SDK wraps each plugin export in `catch_unwind`.
//!
//! Plugin authors never touch this module: the safe layer in the crate root hides it.

use core::ffi::c_void;

/// Major version: a plugin with another major is refused.
pub const ABI_MAJOR: u32 = 1;
/// Minor version: compatible both ways (append-only tables).
pub const ABI_MINOR: u32 = 0;
/// The one symbol a plugin library exports.
pub const ENTRY_SYMBOL: &str = "TOKIT_PLUGIN_ENTRY";

/// A borrowed UTF-8 string: valid only during the call it is passed to.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct Str {
    pub ptr: *const u8,
    pub len: usize,
}

// SAFETY: a `Str` is a plain view; statics built from `&'static str` are immutable.
unsafe impl Sync for Str {}
unsafe impl Send for Str {}

impl Str {
    pub const fn from_static(s: &'static str) -> Str {
        Str {
            ptr: s.as_ptr(),
            len: s.len(),
        }
    }

    pub fn new(s: &str) -> Str {
        Str {
            ptr: s.as_ptr(),
            len: s.len(),
        }
    }

    /// # Safety
    /// `ptr` must point to `len` readable bytes that outlive `'a`.
    pub unsafe fn to_str<'a>(self) -> Result<&'a str, core::str::Utf8Error> {
        if self.len == 0 {
            return Ok("");
        }
        core::str::from_utf8(core::slice::from_raw_parts(self.ptr, self.len))
    }
}

/// Result code of every fallible call. Details travel through the error sink.
#[repr(transparent)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Status(pub i32);

impl Status {
    pub const OK: Status = Status(0);
    pub const ERROR: Status = Status(1);
    /// The callee panicked; the host poisons the plugin.
    pub const PANICKED: Status = Status(2);
    /// The user cancelled (Ctrl-C); not an error of the plugin.
    pub const CANCELLED: Status = Status(3);
    /// The callee does not provide this capability.
    pub const UNSUPPORTED: Status = Status(4);
}

/// Handle to a host-owned tensor. 0 is never a valid handle.
pub type TensorId = u64;
/// Handle to a model loaded in the host (for metric plugins that run models).
pub type ModelId = u64;
/// Handle to a model's weight files in the host (given to architecture plugins at load).
pub type SourceId = u64;

/// DLPack type codes.
pub const DTYPE_INT: u8 = 0;
pub const DTYPE_UINT: u8 = 1;
pub const DTYPE_FLOAT: u8 = 2;

/// A borrowed, read-only view of a tensor's data, shaped like DLPack's `DLTensor`.
/// Valid until the handle is released or the current call returns, whichever is first.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct TensorView {
    pub data: *const c_void,
    pub dtype_code: u8,
    pub dtype_bits: u8,
    pub dtype_lanes: u16,
    pub ndim: i32,
    pub shape: *const i64,
    /// In elements; null means compact row-major.
    pub strides: *const i64,
    pub byte_offset: u64,
}

/// Numeric attributes of a host op (axes, flags, epsilons); meaning per op, see `ops`.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct OpAttrs {
    pub ints: *const i64,
    pub n_ints: usize,
    pub floats: *const f64,
    pub n_floats: usize,
}

/// Host-provided sink for text (JSON descriptions, error messages).
#[repr(C)]
#[derive(Clone, Copy)]
pub struct TextSink {
    pub ctx: *mut c_void,
    pub write: unsafe extern "C" fn(ctx: *mut c_void, text: Str),
}

/// Sink for tensors produced by a forward pass. The receiver takes over the reference.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct TensorSink {
    pub ctx: *mut c_void,
    pub put: unsafe extern "C" fn(ctx: *mut c_void, variant: u32, name: Str, tensor: TensorId),
}

/// Sink for token ids.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct IdSink {
    pub ctx: *mut c_void,
    pub put: unsafe extern "C" fn(ctx: *mut c_void, ids: *const u32, n: usize),
}

/// Sink for a metric's result: one JSON record plus named tensors (local values, matrices).
#[repr(C)]
#[derive(Clone, Copy)]
pub struct ResultSink {
    pub ctx: *mut c_void,
    pub record: unsafe extern "C" fn(ctx: *mut c_void, json: Str),
    /// The receiver takes over the reference.
    pub tensor: unsafe extern "C" fn(ctx: *mut c_void, name: Str, tensor: TensorId),
}

/// Log levels for [`HostApi::log`].
pub const LOG_ERROR: u32 = 1;
pub const LOG_WARN: u32 = 2;
pub const LOG_INFO: u32 = 3;
pub const LOG_DEBUG: u32 = 4;
pub const LOG_TRACE: u32 = 5;

/// Services the host offers a plugin. Passed to `init`; valid for the life of the process.
#[repr(C)]
pub struct HostApi {
    pub struct_size: u32,
    pub abi_minor: u32,
    pub ctx: *mut c_void,
    /// Log into the host's `tracing` subscriber.
    pub log: unsafe extern "C" fn(ctx: *mut c_void, level: u32, target: Str, msg: Str),
    /// True once the user asked to cancel the running analysis; poll it in long loops.
    pub is_cancelled: unsafe extern "C" fn(ctx: *mut c_void) -> bool,
    /// Report progress of the current call (`total` 0 = unknown).
    pub progress: unsafe extern "C" fn(ctx: *mut c_void, done: u64, total: u64, label: Str),
    /// New f32 tensor copied from `data` (`len` elements, row-major `shape`).
    pub tensor_new: unsafe extern "C" fn(
        ctx: *mut c_void,
        data: *const f32,
        len: usize,
        shape: *const i64,
        ndim: usize,
        out: *mut TensorId,
        err: *const TextSink,
    ) -> Status,
    /// One more reference to a tensor.
    pub tensor_retain: unsafe extern "C" fn(ctx: *mut c_void, t: TensorId) -> Status,
    /// Drop one reference; the host frees the tensor with the last one.
    pub tensor_release: unsafe extern "C" fn(ctx: *mut c_void, t: TensorId),
    /// Borrowed read view of a tensor (data on the host; device tensors are copied once).
    pub tensor_read: unsafe extern "C" fn(
        ctx: *mut c_void,
        t: TensorId,
        out: *mut TensorView,
        err: *const TextSink,
    ) -> Status,
    /// Run the host op `name` on `inputs` (borrowed); `out` receives a new reference.
    pub op: unsafe extern "C" fn(
        ctx: *mut c_void,
        name: Str,
        inputs: *const TensorId,
        n_inputs: usize,
        attrs: *const OpAttrs,
        out: *mut TensorId,
        err: *const TextSink,
    ) -> Status,
    /// A weight of the model being loaded, as f32 (converted from f16/bf16/quantised).
    pub weight: unsafe extern "C" fn(
        ctx: *mut c_void,
        source: SourceId,
        name: Str,
        out: *mut TensorId,
        err: *const TextSink,
    ) -> Status,
    /// JSON object `{name: {"dtype": "F32", "shape": [..]}}` of every weight in the source.
    pub weight_index: unsafe extern "C" fn(
        ctx: *mut c_void,
        source: SourceId,
        out: *const TextSink,
        err: *const TextSink,
    ) -> Status,
    /// Encode text with a tokenizer: a `tokenizer.json` path or `"bytes"`.
    pub tokenize: unsafe extern "C" fn(
        ctx: *mut c_void,
        tokenizer: Str,
        text: Str,
        out: *const IdSink,
        err: *const TextSink,
    ) -> Status,
    /// Pass `tensor` (borrowed) through hook point `name` of the forward call `hooks`:
    /// the host captures it and/or applies interventions; `out` gets the tensor to continue
    /// with (a new reference). When nothing changed the activation, `out` is the same
    /// handle as `tensor`; a different handle means an intervention applied.
    pub hook: unsafe extern "C" fn(
        hooks: *mut c_void,
        variant: u32,
        name: Str,
        tensor: TensorId,
        out: *mut TensorId,
        err: *const TextSink,
    ) -> Status,
    /// JSON description of a loaded model (architecture info plus host facts).
    pub model_info: unsafe extern "C" fn(
        ctx: *mut c_void,
        model: ModelId,
        out: *const TextSink,
        err: *const TextSink,
    ) -> Status,
    /// Run a forward pass of a loaded model for a metric plugin.
    pub model_forward: unsafe extern "C" fn(
        ctx: *mut c_void,
        model: ModelId,
        args: *const ForwardArgs,
        out: *const TensorSink,
        err: *const TextSink,
    ) -> Status,
}

/// What an architecture plugin gets to build a model.
#[repr(C)]
pub struct LoadArgs {
    pub struct_size: u32,
    /// Architecture name the host chose (from `model_type` or the user's `arch`).
    pub arch: Str,
    /// Model directory or file.
    pub path: Str,
    /// `config.json`, normalised JSON (infinities as the strings "Infinity"/"-Infinity").
    pub config: Str,
    /// User load options, a JSON object.
    pub options: Str,
    /// Weights, read through [`HostApi::weight`].
    pub weights: SourceId,
}

/// One forward call: tokens plus the variants to compute.
#[repr(C)]
pub struct ForwardArgs {
    pub struct_size: u32,
    pub tokens: *const u32,
    pub n_tokens: usize,
    /// JSON: `{"variants": [{"ablate": [j, ..], "method": "attention", "replace_with": id}, ..]}`.
    /// Variant 0 is listed too (usually clean, `{}`). Each variant emits `"logits"` `[T, V]`.
    pub options: Str,
    /// Host hook context for [`HostApi::hook`] (null when a metric plugin calls the host).
    pub hooks: *mut c_void,
}

/// A named input tensor of a metric.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct NamedTensor {
    pub name: Str,
    pub tensor: TensorId,
}

/// What a metric plugin gets.
#[repr(C)]
pub struct MetricArgs {
    pub struct_size: u32,
    pub metric: Str,
    /// Parameters, a JSON object.
    pub params: Str,
    /// The model to measure, or 0.
    pub model: ModelId,
    /// Tokenised input text (may be empty).
    pub tokens: *const u32,
    pub n_tokens: usize,
    pub inputs: *const NamedTensor,
    pub n_inputs: usize,
}

/// The plugin's table of functions, returned by `init`.
#[repr(C)]
pub struct PluginVTable {
    pub struct_size: u32,
    /// JSON description: name, version, architectures, metrics, parameters.
    pub describe: unsafe extern "C" fn(out: *const TextSink, err: *const TextSink) -> Status,
    /// Plugin-specific action (e.g. `fit`), JSON in and out.
    pub action: unsafe extern "C" fn(
        name: Str,
        args: Str,
        out: *const TextSink,
        err: *const TextSink,
    ) -> Status,
    pub model_load: unsafe extern "C" fn(
        args: *const LoadArgs,
        out: *mut *mut c_void,
        err: *const TextSink,
    ) -> Status,
    /// JSON: vocab size, hook names, ablation methods, sizes.
    pub model_info: unsafe extern "C" fn(
        model: *mut c_void,
        out: *const TextSink,
        err: *const TextSink,
    ) -> Status,
    pub model_forward: unsafe extern "C" fn(
        model: *mut c_void,
        args: *const ForwardArgs,
        out: *const TensorSink,
        err: *const TextSink,
    ) -> Status,
    pub model_free: unsafe extern "C" fn(model: *mut c_void),
    pub metric_compute: unsafe extern "C" fn(
        args: *const MetricArgs,
        out: *const ResultSink,
        err: *const TextSink,
    ) -> Status,
}

/// `init` hands the plugin the host table and receives the plugin's table.
pub type InitFn =
    unsafe extern "C" fn(host: *const HostApi, out: *mut *const PluginVTable) -> Status;

/// The data behind [`ENTRY_SYMBOL`].
#[repr(C)]
pub struct PluginEntry {
    pub abi_major: u32,
    pub abi_minor: u32,
    pub struct_size: u32,
    /// [`layout_hash`] of the SDK the plugin was built with.
    pub layout_hash: u64,
    /// Version of `tokit-sdk` the plugin was built with.
    pub sdk_version: Str,
    pub init: InitFn,
}

// SAFETY: the entry is immutable static data.
unsafe impl Sync for PluginEntry {}

macro_rules! layout_of {
    ($($ty:ident { $($field:ident),* $(,)? })*) => {
        /// Sizes, alignments and field offsets of every ABI struct, as `(path, value)` rows.
        /// The layout snapshot test compares this with a committed file.
        pub fn layout_table() -> Vec<(String, usize)> {
            let mut rows = Vec::new();
            $(
                rows.push((concat!(stringify!($ty), ".size").to_string(), core::mem::size_of::<$ty>()));
                rows.push((concat!(stringify!($ty), ".align").to_string(), core::mem::align_of::<$ty>()));
                $( rows.push((concat!(stringify!($ty), ".", stringify!($field)).to_string(), core::mem::offset_of!($ty, $field))); )*
            )*
            rows
        }
    };
}

layout_of! {
    Str { ptr, len }
    TensorView { data, dtype_code, dtype_bits, dtype_lanes, ndim, shape, strides, byte_offset }
    OpAttrs { ints, n_ints, floats, n_floats }
    TextSink { ctx, write }
    TensorSink { ctx, put }
    IdSink { ctx, put }
    ResultSink { ctx, record, tensor }
    HostApi { struct_size, abi_minor, ctx, log, is_cancelled, progress, tensor_new, tensor_retain,
              tensor_release, tensor_read, op, weight, weight_index, tokenize, hook, model_info,
              model_forward }
    LoadArgs { struct_size, arch, path, config, options, weights }
    ForwardArgs { struct_size, tokens, n_tokens, options, hooks }
    NamedTensor { name, tensor }
    MetricArgs { struct_size, metric, params, model, tokens, n_tokens, inputs, n_inputs }
    PluginVTable { struct_size, describe, action, model_load, model_info, model_forward, model_free,
                   metric_compute }
    PluginEntry { abi_major, abi_minor, struct_size, layout_hash, sdk_version, init }
}

/// FNV-1a over the layout table: equal hashes mean both sides agree on every struct.
/// (A host compares a plugin's hash with its own only when their minors match.)
pub const fn fnv1a(bytes: &[u8], mut h: u64) -> u64 {
    let mut i = 0;
    while i < bytes.len() {
        h ^= bytes[i] as u64;
        h = h.wrapping_mul(0x100_0000_01b3);
        i += 1;
    }
    h
}

/// The layout hash of this build of the SDK (computed at compile time).
pub const LAYOUT_HASH: u64 = {
    use core::mem::{align_of, offset_of, size_of};
    let words: [usize; 24] = [
        size_of::<Str>(),
        size_of::<TensorView>(),
        offset_of!(TensorView, shape),
        offset_of!(TensorView, byte_offset),
        size_of::<OpAttrs>(),
        size_of::<TextSink>(),
        size_of::<TensorSink>(),
        size_of::<IdSink>(),
        size_of::<ResultSink>(),
        size_of::<HostApi>(),
        offset_of!(HostApi, op),
        offset_of!(HostApi, hook),
        offset_of!(HostApi, model_forward),
        size_of::<LoadArgs>(),
        size_of::<ForwardArgs>(),
        offset_of!(ForwardArgs, hooks),
        size_of::<NamedTensor>(),
        size_of::<MetricArgs>(),
        offset_of!(MetricArgs, inputs),
        size_of::<PluginVTable>(),
        offset_of!(PluginVTable, metric_compute),
        size_of::<PluginEntry>(),
        offset_of!(PluginEntry, init),
        align_of::<HostApi>(),
    ];
    let mut h = 0xcbf2_9ce4_8422_2325u64;
    let mut i = 0;
    while i < words.len() {
        h = fnv1a(&(words[i] as u64).to_le_bytes(), h);
        i += 1;
    }
    h ^ ((ABI_MAJOR as u64) << 32 | ABI_MINOR as u64)
};
