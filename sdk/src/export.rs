//! The machinery behind `export_plugin!`: the entry, `init`, and one `extern "C"` shim per
//! vtable slot, each running the plugin's Rust code inside `catch_unwind`.

use crate::abi::{
    self, ForwardArgs, HostApi, LoadArgs, MetricArgs, PluginVTable, ResultSink, Status, Str,
    TensorSink, TextSink,
};
use crate::arch::{ArchSpec, Architecture, ForwardCall, ModelInfo, ModelSource};
use crate::error::{Error, ErrorKind, Result};
use crate::metric::{MetricInput, MetricOutput, MetricSpec, ModelRef};
use crate::tensor::Tensor;
use serde_json::{json, Value};
use std::ffi::c_void;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicPtr, Ordering};

/// A model behind the ABI, whatever its architecture.
pub trait ErasedModel: Send {
    fn info(&self) -> ModelInfo;
    fn forward(&mut self, call: &mut ForwardCall) -> Result<()>;
}

impl<A: Architecture> ErasedModel for A {
    fn info(&self) -> ModelInfo {
        Architecture::info(self)
    }
    fn forward(&mut self, call: &mut ForwardCall) -> Result<()> {
        Architecture::forward(self, call)
    }
}

pub struct ArchEntry {
    pub spec: fn() -> ArchSpec,
    pub load: fn(&ModelSource) -> Result<Box<dyn ErasedModel>>,
}

pub fn load_erased<A: Architecture>(src: &ModelSource) -> Result<Box<dyn ErasedModel>> {
    Ok(Box::new(A::load(src)?))
}

/// One metric of the table: looked up by `name`.
pub struct MetricEntry {
    pub name: &'static str,
    pub spec: fn() -> MetricSpec,
    pub compute: fn(&MetricInput) -> Result<MetricOutput>,
}

/// Plugin-specific actions: `(name, handler)`.
pub type ActionFn = fn(&Value) -> Result<Value>;

/// Everything `export_plugin!` declares.
pub struct Registry {
    pub name: &'static str,
    pub version: &'static str,
    pub description: &'static str,
    pub architectures: &'static [ArchEntry],
    pub metrics: &'static [MetricEntry],
    pub actions: &'static [(&'static str, ActionFn)],
}

static REGISTRY: AtomicPtr<Registry> = AtomicPtr::new(std::ptr::null_mut());

fn registry() -> Result<&'static Registry> {
    let p = REGISTRY.load(Ordering::Acquire);
    if p.is_null() {
        return Err(Error::msg("plugin not initialised"));
    }
    // SAFETY: set once in `init` from a `&'static Registry`.
    Ok(unsafe { &*p })
}

static VTABLE: PluginVTable = PluginVTable {
    struct_size: std::mem::size_of::<PluginVTable>() as u32,
    describe,
    action,
    model_load,
    model_info,
    model_forward,
    model_free,
    metric_compute,
};

/// The body of the generated `init`.
///
/// # Safety
/// `host` and `out` must be valid pointers (the host guarantees it).
pub unsafe fn init(
    reg: &'static Registry,
    host: *const HostApi,
    out: *mut *const PluginVTable,
) -> Status {
    if host.is_null() || out.is_null() {
        return Status::ERROR;
    }
    crate::host::install(host);
    REGISTRY.store(reg as *const Registry as *mut Registry, Ordering::Release);
    // SAFETY: checked non-null above.
    unsafe { *out = &VTABLE };
    Status::OK
}

fn write(sink: *const TextSink, text: &str) {
    if !sink.is_null() {
        // SAFETY: host-provided sink, valid during the call.
        unsafe { ((*sink).write)((*sink).ctx, Str::new(text)) }
    }
}

fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        s.to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "unknown panic payload".to_string()
    }
}

/// Run `f`, turning errors and panics into a status plus text in `err`.
fn guard(err: *const TextSink, what: &str, f: impl FnOnce() -> Result<()>) -> Status {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(Ok(())) => Status::OK,
        Ok(Err(e)) => {
            write(err, &e.message);
            match e.kind {
                ErrorKind::Failed => Status::ERROR,
                ErrorKind::Cancelled => Status::CANCELLED,
                ErrorKind::Unsupported => Status::UNSUPPORTED,
            }
        }
        Err(payload) => {
            write(
                err,
                &format!("panicked in {what}: {}", panic_message(payload.as_ref())),
            );
            Status::PANICKED
        }
    }
}

unsafe fn text<'a>(s: Str, what: &str) -> Result<&'a str> {
    // SAFETY: the host passes valid UTF-8 views for the duration of the call.
    unsafe { s.to_str() }.map_err(|e| Error::msg(format!("{what}: invalid UTF-8: {e}")))
}

fn describe_json(reg: &Registry) -> Value {
    let archs: Vec<ArchSpec> = reg.architectures.iter().map(|a| (a.spec)()).collect();
    let metrics: Vec<MetricSpec> = reg.metrics.iter().map(|m| (m.spec)()).collect();
    let actions: Vec<&str> = reg.actions.iter().map(|(n, _)| *n).collect();
    let kind = match (archs.is_empty(), metrics.is_empty()) {
        (false, true) => "architecture",
        (true, false) => "metric",
        (false, false) => "architecture+metric",
        (true, true) => "empty",
    };
    json!({
        "name": reg.name,
        "version": reg.version,
        "description": reg.description,
        "kind": kind,
        "sdk_version": crate::SDK_VERSION,
        "abi": [abi::ABI_MAJOR, abi::ABI_MINOR],
        "architectures": archs,
        "metrics": metrics,
        "actions": actions,
    })
}

unsafe extern "C" fn describe(out: *const TextSink, err: *const TextSink) -> Status {
    guard(err, "describe", || {
        let d = describe_json(registry()?);
        write(out, &d.to_string());
        Ok(())
    })
}

unsafe extern "C" fn action(
    name: Str,
    args: Str,
    out: *const TextSink,
    err: *const TextSink,
) -> Status {
    guard(err, "action", || {
        let reg = registry()?;
        let name = unsafe { text(name, "action name")? };
        let args = unsafe { text(args, "action arguments")? };
        let args: Value = if args.trim().is_empty() {
            Value::Null
        } else {
            serde_json::from_str(args)?
        };
        let f = reg
            .actions
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, f)| f)
            .ok_or_else(|| {
                let known: Vec<&str> = reg.actions.iter().map(|(n, _)| *n).collect();
                Error::unsupported(format!(
                    "plugin {} has no action `{name}` (actions: {})",
                    reg.name,
                    if known.is_empty() {
                        "none".to_string()
                    } else {
                        known.join(", ")
                    }
                ))
            })?;
        let result = f(&args)?;
        write(out, &result.to_string());
        Ok(())
    })
}

unsafe extern "C" fn model_load(
    args: *const LoadArgs,
    out: *mut *mut c_void,
    err: *const TextSink,
) -> Status {
    guard(err, "model_load", || {
        let reg = registry()?;
        // SAFETY: host-provided, valid during the call.
        let args = unsafe { &*args };
        let arch = unsafe { text(args.arch, "arch")? };
        let entry = reg
            .architectures
            .iter()
            .find(|a| (a.spec)().name == arch)
            .ok_or_else(|| {
                Error::unsupported(format!("plugin {} has no architecture `{arch}`", reg.name))
            })?;
        let parse = |s: Str, what: &str| -> Result<Value> {
            let t = unsafe { text(s, what)? };
            if t.trim().is_empty() {
                Ok(Value::Object(Default::default()))
            } else {
                serde_json::from_str(t).map_err(|e| Error::msg(format!("{what}: {e}")))
            }
        };
        let source = ModelSource {
            arch: arch.to_string(),
            path: unsafe { text(args.path, "path")? }.to_string(),
            config: parse(args.config, "config.json")?,
            options: parse(args.options, "load options")?,
            weights: args.weights,
        };
        let model: Box<dyn ErasedModel> = (entry.load)(&source)?;
        // SAFETY: out is valid; the host hands the pointer back to model_* and model_free.
        unsafe { *out = Box::into_raw(Box::new(model)) as *mut c_void };
        Ok(())
    })
}

/// # Safety
/// `model` must come from `model_load` and not be freed.
unsafe fn model_ref<'a>(model: *mut c_void) -> Result<&'a mut Box<dyn ErasedModel>> {
    if model.is_null() {
        return Err(Error::msg("null model"));
    }
    Ok(unsafe { &mut *(model as *mut Box<dyn ErasedModel>) })
}

unsafe extern "C" fn model_info(
    model: *mut c_void,
    out: *const TextSink,
    err: *const TextSink,
) -> Status {
    guard(err, "model_info", || {
        let m = unsafe { model_ref(model)? };
        write(out, &serde_json::to_string(&m.info())?);
        Ok(())
    })
}

unsafe extern "C" fn model_forward(
    model: *mut c_void,
    args: *const ForwardArgs,
    out: *const TensorSink,
    err: *const TextSink,
) -> Status {
    guard(err, "forward", || {
        let m = unsafe { model_ref(model)? };
        // SAFETY: host-provided, valid during the call.
        let (args, out) = unsafe { (&*args, &*out) };
        let mut call = ForwardCall::from_abi(args, out)?;
        m.forward(&mut call)
    })
}

unsafe extern "C" fn model_free(model: *mut c_void) {
    if !model.is_null() {
        let _ = catch_unwind(AssertUnwindSafe(|| {
            // SAFETY: created by Box::into_raw in model_load; the host frees once.
            drop(unsafe { Box::from_raw(model as *mut Box<dyn ErasedModel>) });
        }));
    }
}

unsafe extern "C" fn metric_compute(
    args: *const MetricArgs,
    out: *const ResultSink,
    err: *const TextSink,
) -> Status {
    guard(err, "metric", || {
        let reg = registry()?;
        // SAFETY: host-provided, valid during the call.
        let (args, out) = unsafe { (&*args, &*out) };
        let metric = unsafe { text(args.metric, "metric")? }.to_string();
        let entry = reg
            .metrics
            .iter()
            .find(|m| m.name == metric)
            .ok_or_else(|| {
                Error::unsupported(format!("plugin {} has no metric `{metric}`", reg.name))
            })?;
        let params = unsafe { text(args.params, "params")? };
        let params = if params.trim().is_empty() {
            Default::default()
        } else {
            match serde_json::from_str::<Value>(params)? {
                Value::Object(m) => m,
                other => {
                    return Err(Error::msg(format!(
                        "params: expected a JSON object, found {other}"
                    )))
                }
            }
        };
        let tokens = if args.n_tokens == 0 {
            Vec::new()
        } else {
            unsafe { std::slice::from_raw_parts(args.tokens, args.n_tokens) }.to_vec()
        };
        let mut tensors = Vec::new();
        if args.n_inputs > 0 {
            for nt in unsafe { std::slice::from_raw_parts(args.inputs, args.n_inputs) } {
                // Inputs are borrowed: take our own reference.
                let api = crate::host::api()?;
                unsafe { (api.tensor_retain)(api.ctx, nt.tensor) };
                tensors.push((
                    unsafe { text(nt.name, "input name")? }.to_string(),
                    Tensor::from_id(nt.tensor),
                ));
            }
        }
        let input = MetricInput {
            metric,
            params,
            tokens,
            model: (args.model != 0).then_some(ModelRef { id: args.model }),
            tensors,
        };
        let output = (entry.compute)(&input)?;
        let record = output.record_json()?;
        unsafe { (out.record)(out.ctx, Str::new(&record)) };
        for (name, t) in output.tensors {
            unsafe { (out.tensor)(out.ctx, Str::new(&name), t.into_id()) };
        }
        Ok(())
    })
}

/// Declare a plugin: its name, version, description, and the architectures, metrics and
/// actions it provides. Generates the one exported entry symbol. `metrics` lists one
/// [`Metric`](crate::Metric) type per metric; the SDK finds a call's metric by its
/// [`NAME`](crate::Metric::NAME) (two entries with one name: the first wins, and a unit
/// test of the plugin should check names are unique).
///
/// ```ignore
/// tokit_sdk::export_plugin! {
///     name: "arllm",
///     version: env!("CARGO_PKG_VERSION"),
///     description: "exact n-gram autoregressive LLM",
///     architectures: [Arllm],
///     metrics: [],
///     actions: [("fit", fit)],
/// }
/// ```
#[macro_export]
macro_rules! export_plugin {
    (
        name: $name:expr,
        version: $version:expr,
        description: $description:expr,
        architectures: [$($arch:ty),* $(,)?],
        metrics: [$($metric:ty),* $(,)?]
        $(, actions: [$(($aname:expr, $afn:path)),* $(,)?])?
        $(,)?
    ) => {
        static __TOKIT_REGISTRY: $crate::__private::Registry = $crate::__private::Registry {
            name: $name,
            version: $version,
            description: $description,
            architectures: &[$($crate::__private::ArchEntry {
                spec: <$arch as $crate::Architecture>::spec,
                load: $crate::__private::load_erased::<$arch>,
            }),*],
            metrics: &[$($crate::__private::MetricEntry {
                name: <$metric as $crate::Metric>::NAME,
                spec: $crate::spec_of::<$metric>,
                compute: $crate::compute_metric::<$metric>,
            }),*],
            actions: &[$($(($aname, $afn as $crate::__private::ActionFn)),*)?],
        };

        unsafe extern "C" fn __tokit_init(
            host: *const $crate::abi::HostApi,
            out: *mut *const $crate::abi::PluginVTable,
        ) -> $crate::abi::Status {
            // SAFETY: the host passes valid pointers.
            unsafe { $crate::__private::init(&__TOKIT_REGISTRY, host, out) }
        }

        #[no_mangle]
        pub static TOKIT_PLUGIN_ENTRY: $crate::abi::PluginEntry = $crate::abi::PluginEntry {
            abi_major: $crate::abi::ABI_MAJOR,
            abi_minor: $crate::abi::ABI_MINOR,
            struct_size: ::core::mem::size_of::<$crate::abi::PluginEntry>() as u32,
            layout_hash: $crate::abi::LAYOUT_HASH,
            sdk_version: $crate::abi::Str::from_static($crate::SDK_VERSION),
            init: __tokit_init,
        };
    };
}
