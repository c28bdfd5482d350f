//! The host side of the ABI: the `HostApi` table every plugin receives, backed by one
//! process-wide [`Host`] that owns tensors (reference-counted handles), weight sources,
//! the models metric plugins may run, the compute backend and the cancellation flag.

use super::ops;
use crate::hooks::HookCtx;
use anyhow::{anyhow, Result};
use std::collections::HashMap;
use std::ffi::c_void;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, RwLock, Weak};
use tokit_compute::{Backend, CpuBackend, Tensor};
use tokit_sdk::abi::{
    self, ForwardArgs, HostApi, IdSink, ModelId, OpAttrs, SourceId, Status, Str, TensorId,
    TensorSink, TensorView, TextSink,
};

/// Something the host can run a forward pass on for a metric plugin.
pub trait ForwardTarget: Send + Sync {
    fn info_json(&self) -> Result<String>;
    /// Per variant, named output tensors (`logits` plus captures).
    fn forward_json(&self, tokens: &[u32], options: &str) -> Result<Vec<Vec<(String, Tensor)>>>;
}

/// Where an architecture plugin reads weights from during `model_load`.
pub trait WeightSource: Send + Sync {
    fn tensor(&self, name: &str) -> Result<Tensor>;
    fn index_json(&self) -> String;
}

struct Slot {
    tensor: Tensor,
    refs: u32,
    shape: Vec<i64>,
}

/// Process-wide host state (plugin libraries are process-wide too).
pub struct Host {
    tensors: Mutex<HashMap<TensorId, Slot>>,
    next_id: AtomicU64,
    backend: RwLock<Arc<dyn Backend>>,
    sources: Mutex<HashMap<SourceId, Arc<dyn WeightSource>>>,
    models: Mutex<HashMap<ModelId, Weak<dyn ForwardTarget>>>,
    cancel: AtomicBool,
}

static HOST: OnceLock<Host> = OnceLock::new();
static API: OnceLock<HostApiBox> = OnceLock::new();

struct HostApiBox(HostApi);
// SAFETY: the table holds function pointers and a pointer to the static `HOST`, whose
// state is behind locks and atomics.
unsafe impl Send for HostApiBox {}
// SAFETY: as for `Send`: nothing in the table is mutated after it is built.
unsafe impl Sync for HostApiBox {}

/// The process's host.
pub fn host() -> &'static Host {
    HOST.get_or_init(|| Host {
        tensors: Mutex::new(HashMap::new()),
        next_id: AtomicU64::new(1),
        backend: RwLock::new(Arc::new(CpuBackend::new(None))),
        sources: Mutex::new(HashMap::new()),
        models: Mutex::new(HashMap::new()),
        cancel: AtomicBool::new(false),
    })
}

/// The table handed to every plugin's `init`.
pub fn api() -> *const HostApi {
    let h = host();
    &API.get_or_init(|| {
        HostApiBox(HostApi {
            struct_size: std::mem::size_of::<HostApi>() as u32,
            abi_minor: abi::ABI_MINOR,
            ctx: h as *const Host as *mut c_void,
            log: host_log,
            is_cancelled: host_is_cancelled,
            progress: host_progress,
            tensor_new: host_tensor_new,
            tensor_retain: host_tensor_retain,
            tensor_release: host_tensor_release,
            tensor_read: host_tensor_read,
            op: host_op,
            weight: host_weight,
            weight_index: host_weight_index,
            tokenize: host_tokenize,
            hook: host_hook,
            model_info: host_model_info,
            model_forward: host_model_forward,
        })
    })
    .0
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A poisoned lock only means another thread panicked mid-update of plain maps.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Host {
    pub fn backend(&self) -> Arc<dyn Backend> {
        self.backend
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    pub fn set_backend(&self, backend: Arc<dyn Backend>) {
        *self.backend.write().unwrap_or_else(|e| e.into_inner()) = backend;
    }

    pub fn cancel_flag(&self) -> &AtomicBool {
        &self.cancel
    }

    pub fn is_cancelled(&self) -> bool {
        self.cancel.load(Ordering::Relaxed)
    }

    /// Register a tensor; the caller owns one reference to the returned id.
    pub fn insert(&self, tensor: Tensor) -> TensorId {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let shape = tensor.shape().iter().map(|&d| d as i64).collect();
        lock(&self.tensors).insert(
            id,
            Slot {
                tensor,
                refs: 1,
                shape,
            },
        );
        id
    }

    /// The tensor behind a handle (the handle stays as it is).
    pub fn get(&self, id: TensorId) -> Result<Tensor> {
        lock(&self.tensors)
            .get(&id)
            .map(|s| s.tensor.clone())
            .ok_or_else(|| anyhow!("unknown tensor handle {id} (released already?)"))
    }

    /// Take over one reference: returns the tensor and drops the reference.
    pub fn take(&self, id: TensorId) -> Result<Tensor> {
        let t = self.get(id)?;
        self.release(id);
        Ok(t)
    }

    pub fn retain(&self, id: TensorId) -> bool {
        match lock(&self.tensors).get_mut(&id) {
            Some(s) => {
                s.refs += 1;
                true
            }
            None => false,
        }
    }

    pub fn release(&self, id: TensorId) {
        let mut map = lock(&self.tensors);
        if let Some(s) = map.get_mut(&id) {
            s.refs -= 1;
            if s.refs == 0 {
                map.remove(&id);
            }
        }
    }

    /// Number of live tensor handles (leak checks in tests).
    pub fn live_tensors(&self) -> usize {
        lock(&self.tensors).len()
    }

    pub fn add_source(&self, source: Arc<dyn WeightSource>) -> SourceId {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        lock(&self.sources).insert(id, source);
        id
    }

    pub fn remove_source(&self, id: SourceId) {
        lock(&self.sources).remove(&id);
    }

    fn source(&self, id: SourceId) -> Result<Arc<dyn WeightSource>> {
        lock(&self.sources)
            .get(&id)
            .cloned()
            .ok_or_else(|| anyhow!("weights are only readable while the model loads"))
    }

    pub fn add_model(&self, target: Weak<dyn ForwardTarget>) -> ModelId {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        lock(&self.models).insert(id, target);
        id
    }

    pub fn remove_model(&self, id: ModelId) {
        lock(&self.models).remove(&id);
    }

    fn model(&self, id: ModelId) -> Result<Arc<dyn ForwardTarget>> {
        lock(&self.models)
            .get(&id)
            .and_then(Weak::upgrade)
            .ok_or_else(|| anyhow!("unknown or unloaded model handle {id}"))
    }
}

// ---- the extern "C" functions of the table ------------------------------------------

// The functions below are called by plugins, which keep the ABI's rules (docs/architecture.md,
// "The ABI"): a `Str`, an input array or a sink is valid for the duration of the call, an
// array pointer points at as many elements as its length says, and an out-pointer is
// writable. `HostApi::ctx` is the process's static `Host`, so `host()` is used instead of
// dereferencing it.

/// # Safety
/// `s` points at `len` bytes valid for `'a` (a `Str` a plugin passes for one call).
unsafe fn text<'a>(s: Str) -> Result<&'a str> {
    // SAFETY: the caller's contract.
    unsafe { s.to_str() }.map_err(|e| anyhow!("invalid UTF-8 from plugin: {e}"))
}

/// # Safety
/// When `len > 0`, `ptr` points at `len` initialised elements valid for `'a`.
unsafe fn slice<'a, T>(ptr: *const T, len: usize) -> &'a [T] {
    if len == 0 || ptr.is_null() {
        &[]
    } else {
        // SAFETY: the caller's contract.
        unsafe { std::slice::from_raw_parts(ptr, len) }
    }
}

pub(crate) fn write_sink(sink: *const TextSink, text: &str) {
    if !sink.is_null() {
        // SAFETY: a plugin-provided sink, valid during the call.
        unsafe { ((*sink).write)((*sink).ctx, Str::new(text)) }
    }
}

/// Run `f`, turning errors (and our own panics) into a status and an error message.
fn status(err: *const TextSink, f: impl FnOnce() -> Result<()>) -> Status {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)) {
        Ok(Ok(())) => Status::OK,
        Ok(Err(e)) => {
            if e.downcast_ref::<Cancelled>().is_some() {
                write_sink(err, "cancelled");
                return Status::CANCELLED;
            }
            write_sink(err, &format!("{e:#}"));
            Status::ERROR
        }
        Err(_) => {
            write_sink(
                err,
                "tokit host panicked (a bug in tokit; please report it)",
            );
            Status::ERROR
        }
    }
}

/// Error marker for a cancelled call.
#[derive(Debug)]
pub struct Cancelled;
impl std::fmt::Display for Cancelled {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("cancelled")
    }
}
impl std::error::Error for Cancelled {}

unsafe extern "C" fn host_log(_ctx: *mut c_void, level: u32, target: Str, msg: Str) {
    // SAFETY: both strings are borrowed for this call.
    let (target, msg) = unsafe { (text(target), text(msg)) };
    let (target, msg) = (target.unwrap_or("plugin"), msg.unwrap_or("<invalid UTF-8>"));
    match level {
        abi::LOG_ERROR => tracing::error!(plugin = target, "{msg}"),
        abi::LOG_WARN => tracing::warn!(plugin = target, "{msg}"),
        abi::LOG_INFO => tracing::info!(plugin = target, "{msg}"),
        abi::LOG_DEBUG => tracing::debug!(plugin = target, "{msg}"),
        _ => tracing::trace!(plugin = target, "{msg}"),
    }
}

unsafe extern "C" fn host_is_cancelled(_ctx: *mut c_void) -> bool {
    host().is_cancelled()
}

unsafe extern "C" fn host_progress(_ctx: *mut c_void, done: u64, total: u64, label: Str) {
    // SAFETY: borrowed for this call.
    let label = unsafe { text(label) }.unwrap_or("");
    crate::progress::report(done, total, label);
}

unsafe extern "C" fn host_tensor_new(
    _ctx: *mut c_void,
    data: *const f32,
    len: usize,
    shape: *const i64,
    ndim: usize,
    out: *mut TensorId,
    err: *const TextSink,
) -> Status {
    status(err, || {
        let h = host();
        // SAFETY: `shape` holds `ndim` and `data` holds `len` elements for this call.
        let (dims, values) = unsafe { (slice(shape, ndim), slice(data, len)) };
        let shape: Vec<usize> = dims
            .iter()
            .map(|&d| usize::try_from(d).map_err(|_| anyhow!("tensor_new: negative dimension {d}")))
            .collect::<Result<_>>()?;
        let t = Tensor::new(shape, values.to_vec())?;
        // SAFETY: `out` is the caller's writable out-pointer.
        unsafe { *out = h.insert(t) };
        Ok(())
    })
}

unsafe extern "C" fn host_tensor_retain(_ctx: *mut c_void, t: TensorId) -> Status {
    if host().retain(t) {
        Status::OK
    } else {
        Status::ERROR
    }
}

unsafe extern "C" fn host_tensor_release(_ctx: *mut c_void, t: TensorId) {
    host().release(t)
}

unsafe extern "C" fn host_tensor_read(
    _ctx: *mut c_void,
    t: TensorId,
    out: *mut TensorView,
    err: *const TextSink,
) -> Status {
    status(err, || {
        let h = host();
        let map = lock(&h.tensors);
        let slot = map
            .get(&t)
            .ok_or_else(|| anyhow!("tensor_read: unknown tensor handle {t}"))?;
        // A device result is read back here; a lost device is an error, not a panic.
        let data = slot.tensor.try_data()?.as_ptr();
        // The data and shape buffers live on the heap with the slot, so the view stays
        // valid while the plugin holds its reference.
        // SAFETY: `out` is the caller's writable out-pointer.
        unsafe {
            *out = TensorView {
                data: data as *const c_void,
                dtype_code: abi::DTYPE_FLOAT,
                dtype_bits: 32,
                dtype_lanes: 1,
                ndim: slot.shape.len() as i32,
                shape: slot.shape.as_ptr(),
                strides: std::ptr::null(),
                byte_offset: 0,
            }
        };
        Ok(())
    })
}

unsafe extern "C" fn host_op(
    _ctx: *mut c_void,
    name: Str,
    inputs: *const TensorId,
    n_inputs: usize,
    attrs: *const OpAttrs,
    out: *mut TensorId,
    err: *const TextSink,
) -> Status {
    status(err, || {
        let h = host();
        if attrs.is_null() {
            anyhow::bail!("op: no attributes (null OpAttrs)");
        }
        // SAFETY: the name, the `n_inputs` input ids and the attribute struct with its
        // `n_ints` and `n_floats` arrays are borrowed for this call.
        let (name, ids, attrs) = unsafe { (text(name)?, slice(inputs, n_inputs), &*attrs) };
        // SAFETY: as above.
        let (ints, floats) = unsafe {
            (
                slice(attrs.ints, attrs.n_ints),
                slice(attrs.floats, attrs.n_floats),
            )
        };
        let tensors: Vec<Tensor> = ids.iter().map(|&id| h.get(id)).collect::<Result<_>>()?;
        let result = ops::run(h.backend().as_ref(), name, &tensors, ints, floats)?;
        // SAFETY: `out` is the caller's writable out-pointer.
        unsafe { *out = h.insert(result) };
        Ok(())
    })
}

unsafe extern "C" fn host_weight(
    _ctx: *mut c_void,
    source: SourceId,
    name: Str,
    out: *mut TensorId,
    err: *const TextSink,
) -> Status {
    status(err, || {
        let h = host();
        // SAFETY: borrowed for this call.
        let name = unsafe { text(name)? };
        let t = h.source(source)?.tensor(name)?;
        // SAFETY: `out` is the caller's writable out-pointer.
        unsafe { *out = h.insert(t.into_weight()) };
        Ok(())
    })
}

unsafe extern "C" fn host_weight_index(
    _ctx: *mut c_void,
    source: SourceId,
    out: *const TextSink,
    err: *const TextSink,
) -> Status {
    status(err, || {
        let h = host();
        write_sink(out, &h.source(source)?.index_json());
        Ok(())
    })
}

unsafe extern "C" fn host_tokenize(
    _ctx: *mut c_void,
    tokenizer: Str,
    text_: Str,
    out: *const IdSink,
    err: *const TextSink,
) -> Status {
    status(err, || {
        // SAFETY: both strings are borrowed for this call.
        let (which, input) = unsafe { (text(tokenizer)?, text(text_)?) };
        let tok = if which == "bytes" {
            tokit_model::Tokenizer::Bytes
        } else {
            tokit_model::Tokenizer::from_file(which)?
        };
        let ids = tok.encode(input)?;
        // SAFETY: `out` is the caller's sink, valid for this call.
        unsafe { ((*out).put)((*out).ctx, ids.as_ptr(), ids.len()) };
        Ok(())
    })
}

unsafe extern "C" fn host_hook(
    hooks: *mut c_void,
    variant: u32,
    name: Str,
    tensor: TensorId,
    out: *mut TensorId,
    err: *const TextSink,
) -> Status {
    status(err, || {
        let h = host();
        // SAFETY: borrowed for this call.
        let name = unsafe { text(name)? };
        if hooks.is_null() {
            anyhow::bail!("hook `{name}`: no hook context (ForwardArgs::hooks is null)");
        }
        // SAFETY: `hooks` is the HookCtx `PluginModel::forward` put in ForwardArgs; the
        // plugin passes it back only during that forward call, while it is alive.
        let ctx = unsafe { &mut *(hooks as *mut HookCtx) };
        let t = h.get(tensor)?;
        match ctx.apply(variant as usize, name, t)? {
            None => {
                h.retain(tensor);
                // SAFETY: `out` is the caller's writable out-pointer.
                unsafe { *out = tensor };
            }
            // SAFETY: as above.
            Some(new) => unsafe { *out = h.insert(new) },
        }
        Ok(())
    })
}

unsafe extern "C" fn host_model_info(
    _ctx: *mut c_void,
    model: ModelId,
    out: *const TextSink,
    err: *const TextSink,
) -> Status {
    status(err, || {
        let h = host();
        write_sink(out, &h.model(model)?.info_json()?);
        Ok(())
    })
}

unsafe extern "C" fn host_model_forward(
    _ctx: *mut c_void,
    model: ModelId,
    args: *const ForwardArgs,
    out: *const TensorSink,
    err: *const TextSink,
) -> Status {
    status(err, || {
        let h = host();
        if args.is_null() {
            anyhow::bail!("model_forward: no arguments (null ForwardArgs)");
        }
        // SAFETY: the arguments, their `n_tokens` tokens and options are borrowed for this
        // call.
        let (tokens, options) = unsafe {
            let args = &*args;
            (slice(args.tokens, args.n_tokens), text(args.options)?)
        };
        if h.is_cancelled() {
            return Err(Cancelled.into());
        }
        let variants = h.model(model)?.forward_json(tokens, options)?;
        for (v, outputs) in variants.into_iter().enumerate() {
            for (name, t) in outputs {
                let id = h.insert(t);
                // SAFETY: `out` is the caller's sink, valid for this call; it takes over `id`.
                unsafe { ((*out).put)((*out).ctx, v as u32, Str::new(&name), id) };
            }
        }
        Ok(())
    })
}
