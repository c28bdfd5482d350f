//! Plugins: find plugin libraries, load a private copy of each (never unloaded), check
//! the ABI, `init` with the host table, and call into them with poisoning on panic.
//!
//! [`Plugin`] is the one safe face of a loaded library: every call through its function
//! table (`describe`, `action`, `model_load`, `model_info`, `model_forward`, `model_free`,
//! `metric_compute`) is made here and nowhere else, and a model a plugin created is a
//! [`PluginModel`] that frees itself. The ABI rules are in docs/architecture.md.

pub mod host;
mod ops;
mod set;

pub use set::PluginSet;

use crate::hooks::HookCtx;
use anyhow::{anyhow, bail, Context, Result};
use serde::Deserialize;
use serde_json::Value;
use std::collections::HashMap;
use std::ffi::c_void;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use tokit_compute::Tensor;
use tokit_sdk::abi::{
    self, ForwardArgs, LoadArgs, MetricArgs, ModelId, NamedTensor, PluginEntry, PluginVTable,
    ResultSink, SourceId, Status, Str, TensorId, TensorSink, TextSink,
};
use tokit_sdk::{ArchSpec, MetricSpec};

/// A plugin's self-description (`describe()`).
#[derive(Clone, Debug, Deserialize)]
pub struct Description {
    pub name: String,
    pub version: String,
    #[serde(default)]
    pub description: String,
    pub kind: String,
    pub sdk_version: String,
    #[serde(default)]
    pub architectures: Vec<ArchSpec>,
    #[serde(default)]
    pub metrics: Vec<MetricSpec>,
    #[serde(default)]
    pub actions: Vec<String>,
}

/// A loaded plugin library.
pub struct Plugin {
    /// The file the user built or installed.
    pub path: PathBuf,
    /// The private copy actually mapped.
    pub loaded_from: PathBuf,
    pub abi: (u32, u32),
    pub desc: Description,
    vtable: &'static PluginVTable,
    poisoned: Mutex<Option<String>>,
}

/// Collects text a plugin writes into a sink.
struct Text(String);

unsafe extern "C" fn write_text(ctx: *mut c_void, s: Str) {
    // SAFETY: ctx is the `Text` whose `sink()` made this sink; it outlives the call the
    // sink is passed to, and `s` is valid during this callback (ABI rule for `Str`).
    let t = unsafe { &mut *(ctx as *mut Text) };
    t.0.push_str(unsafe { s.to_str() }.unwrap_or("<invalid UTF-8>"));
}

impl Text {
    fn new() -> Text {
        Text(String::new())
    }
    /// A sink writing into `self`; valid while `self` is neither moved nor dropped.
    fn sink(&mut self) -> TextSink {
        TextSink {
            ctx: self as *mut Text as *mut c_void,
            write: write_text,
        }
    }
}

/// Every library ever loaded in this process, by original path (never unloaded: Rust
/// thread-local destructors make `dlclose` unsafe; a reload costs one mapping).
fn loaded() -> &'static Mutex<HashMap<PathBuf, Arc<Plugin>>> {
    static LOADED: OnceLock<Mutex<HashMap<PathBuf, Arc<Plugin>>>> = OnceLock::new();
    LOADED.get_or_init(Default::default)
}

/// True for file names of the form `[lib]tokit_plugin_*.{so,dylib,dll}`.
pub fn is_plugin_file(path: &Path) -> bool {
    let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
        return false;
    };
    let stem = name.strip_prefix("lib").unwrap_or(name);
    stem.starts_with("tokit_plugin_") && name.ends_with(std::env::consts::DLL_SUFFIX)
}

impl Plugin {
    /// Load `path` once per process (later calls return the same plugin).
    pub fn load(path: &Path) -> Result<Arc<Plugin>> {
        let canonical = path
            .canonicalize()
            .with_context(|| format!("plugin {}: cannot open", path.display()))?;
        let mut map = loaded().lock().unwrap_or_else(|e| e.into_inner());
        if let Some(p) = map.get(&canonical) {
            return Ok(p.clone());
        }
        let p = Arc::new(Plugin::load_fresh(&canonical)?);
        map.insert(canonical, p.clone());
        Ok(p)
    }

    /// Load a private copy of `path`, check its entry, and `init` it.
    pub fn load_fresh(path: &Path) -> Result<Plugin> {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let shown = path.display();
        let file_name = path
            .file_name()
            .ok_or_else(|| anyhow!("plugin {shown}: not a file"))?;
        let copy = std::env::temp_dir().join(format!(
            "tokit-plugin-{}-{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed),
            file_name.to_string_lossy()
        ));
        std::fs::copy(path, &copy)
            .with_context(|| format!("plugin {shown}: copying to {}", copy.display()))?;

        // SAFETY: loading runs the library's initialisers; plugins are trusted code the
        // user chose to load. The library is leaked: never unloaded.
        let lib = unsafe { libloading::Library::new(&copy) };
        // The mapping keeps the copy alive on Unix; its directory entry is not needed.
        #[cfg(unix)]
        let _ = std::fs::remove_file(&copy);
        let lib = lib.with_context(|| format!("plugin {shown}: not a loadable library"))?;
        let lib: &'static libloading::Library = Box::leak(Box::new(lib));
        // SAFETY: the symbol is a `static PluginEntry` exported by `export_plugin!`; we read
        // its address only (the type `*const PluginEntry` is what the SDK declares).
        let entry: *const PluginEntry = unsafe {
            *lib.get::<*const PluginEntry>(abi::ENTRY_SYMBOL.as_bytes())
                .with_context(|| {
                    format!(
                        "plugin {shown}: no `{}` symbol (not a tokit plugin?)",
                        abi::ENTRY_SYMBOL
                    )
                })?
        };
        // SAFETY: for a data symbol libloading yields its address; the entry is static and
        // the library is never unloaded.
        let entry: &'static PluginEntry = unsafe { &*entry };
        // Only `abi_major` is guaranteed readable in every ABI; check it first.
        if entry.abi_major != abi::ABI_MAJOR {
            bail!(
                "plugin {shown}: built for tokit plugin ABI {}.{}, but this tokit speaks ABI {}.{}; \
                 rebuild the plugin against tokit-sdk {}",
                entry.abi_major,
                entry.abi_minor,
                abi::ABI_MAJOR,
                abi::ABI_MINOR,
                tokit_sdk::SDK_VERSION
            );
        }
        if (entry.struct_size as usize) < std::mem::size_of::<PluginEntry>() {
            bail!(
                "plugin {shown}: entry is {} bytes, ABI 1 needs {}",
                entry.struct_size,
                std::mem::size_of::<PluginEntry>()
            );
        }
        if entry.abi_minor == abi::ABI_MINOR && entry.layout_hash != abi::LAYOUT_HASH {
            bail!(
                "plugin {shown}: ABI {}.{} layout hash {:#x} differs from the host's {:#x} \
                 (a modified SDK?); rebuild it against tokit-sdk {}",
                entry.abi_major,
                entry.abi_minor,
                entry.layout_hash,
                abi::LAYOUT_HASH,
                tokit_sdk::SDK_VERSION
            );
        }
        // A bogus library can hold a null where the ABI has a function: check the raw
        // pointer before the call (calling it would be a segfault, not an error).
        // SAFETY: the entry is at least `size_of::<PluginEntry>()` bytes (checked above), so
        // its `init` field is readable; it is read as a plain address.
        let init_addr = unsafe { std::ptr::read(std::ptr::addr_of!(entry.init).cast::<usize>()) };
        if init_addr == 0 {
            bail!("plugin {shown}: its entry's `init` is null (a broken or foreign library)");
        }
        let mut vt: *const PluginVTable = std::ptr::null();
        // SAFETY: `init` is the ABI-checked entry's function; the host table is a static and
        // `vt` a live out-pointer.
        let st = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| unsafe {
            (entry.init)(host::api(), &mut vt)
        }))
        .map_err(|_| anyhow!("plugin {shown}: init panicked"))?;
        if st != Status::OK || vt.is_null() {
            bail!("plugin {shown}: init failed (status {})", st.0);
        }
        // SAFETY: non-null, returned by `init`; plugins return a static table, and the
        // library is never unloaded. Its size is checked before any field is read.
        let vtable: &'static PluginVTable = unsafe { &*vt };
        if (vtable.struct_size as usize) < std::mem::size_of::<PluginVTable>() {
            bail!(
                "plugin {shown}: function table is {} bytes, ABI 1.0 needs {}",
                vtable.struct_size,
                std::mem::size_of::<PluginVTable>()
            );
        }
        // Every slot after `struct_size` is a function pointer: none may be null.
        let first = std::mem::offset_of!(PluginVTable, describe);
        let slots = (std::mem::size_of::<PluginVTable>() - first) / std::mem::size_of::<usize>();
        // SAFETY: the table is at least `size_of::<PluginVTable>()` bytes (checked above);
        // its function-pointer slots are read as plain addresses.
        let null_slot = (0..slots).find(|i| unsafe {
            std::ptr::read(
                vt.cast::<u8>()
                    .add(first + i * std::mem::size_of::<usize>())
                    .cast::<usize>(),
            ) == 0
        });
        if let Some(i) = null_slot {
            bail!("plugin {shown}: function table slot {i} is null (a broken library)");
        }
        let mut p = Plugin {
            path: path.to_path_buf(),
            loaded_from: copy,
            abi: (entry.abi_major, entry.abi_minor),
            desc: Description {
                name: String::new(),
                version: String::new(),
                description: String::new(),
                kind: String::new(),
                sdk_version: String::new(),
                architectures: vec![],
                metrics: vec![],
                actions: vec![],
            },
            vtable,
            poisoned: Mutex::new(None),
        };
        let json = p.describe()?;
        p.desc = serde_json::from_str(&json)
            .with_context(|| format!("plugin {shown}: invalid describe() JSON"))?;
        tracing::debug!(plugin = %p.desc.name, file = %shown, "loaded plugin");
        Ok(p)
    }

    /// Load a fresh copy of the rebuilt library at `path` (ABI check, `init`) and make it
    /// the version [`Plugin::load`] returns from now on. On failure nothing changes.
    pub fn reload(path: &Path) -> Result<Arc<Plugin>> {
        let canonical = path
            .canonicalize()
            .with_context(|| format!("plugin {}: cannot open", path.display()))?;
        let p = Arc::new(Plugin::load_fresh(&canonical)?);
        loaded()
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(canonical, p.clone());
        Ok(p)
    }

    pub fn name(&self) -> &str {
        &self.desc.name
    }

    /// Why this plugin is refused, if it panicked before.
    pub fn poisoned(&self) -> Option<String> {
        self.poisoned
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Call into the plugin: refuse if poisoned, poison on panic, turn statuses into errors.
    /// The only way to reach the function table; `f` gets it and the error sink.
    fn call(
        &self,
        what: &str,
        f: impl FnOnce(&'static PluginVTable, *const TextSink) -> Status,
    ) -> Result<()> {
        if let Some(why) = self.poisoned() {
            bail!(
                "plugin {} is disabled after an earlier panic ({why}); reload or restart",
                self.desc.name
            );
        }
        let mut err = Text::new();
        let sink = err.sink();
        let st = f(self.vtable, &sink);
        match st {
            Status::OK => Ok(()),
            Status::CANCELLED => Err(host::Cancelled.into()),
            Status::PANICKED => {
                let msg = if err.0.is_empty() {
                    "panic".to_string()
                } else {
                    err.0
                };
                *self.poisoned.lock().unwrap_or_else(|e| e.into_inner()) = Some(msg.clone());
                tracing::error!(plugin = %self.desc.name, "{msg}");
                Err(anyhow!(
                    "plugin {} {msg}; the plugin is disabled",
                    self.desc.name
                ))
            }
            _ => Err(anyhow!(if err.0.is_empty() {
                format!("plugin {}: {what} failed", self.desc.name)
            } else {
                err.0
            })),
        }
    }

    /// The plugin's self-description, as JSON.
    fn describe(&self) -> Result<String> {
        let mut out = Text::new();
        let sink = out.sink();
        // SAFETY: both sinks point at locals that outlive the call.
        self.call("describe", |vt, err| unsafe { (vt.describe)(&sink, err) })?;
        Ok(out.0)
    }

    /// Run a plugin-specific action (JSON in, JSON out).
    pub fn action(&self, name: &str, args: &Value) -> Result<Value> {
        let args = args.to_string();
        let mut out = Text::new();
        let sink = out.sink();
        // SAFETY: the strings and sinks point at locals that outlive the call.
        self.call(name, |vt, err| unsafe {
            (vt.action)(Str::new(name), Str::new(&args), &sink, err)
        })?;
        if out.0.trim().is_empty() {
            return Ok(Value::Null);
        }
        serde_json::from_str(&out.0).with_context(|| {
            format!(
                "plugin {}: action {name} returned invalid JSON",
                self.desc.name
            )
        })
    }

    /// Build a model of architecture `arch` (`model_load`); the plugin reads its weights
    /// from the host's weight source `weights` during the call.
    pub(crate) fn load_model(
        self: &Arc<Plugin>,
        load: &ModelLoad<'_>,
        weights: SourceId,
    ) -> Result<PluginModel> {
        let args = LoadArgs {
            struct_size: std::mem::size_of::<LoadArgs>() as u32,
            arch: Str::new(load.arch),
            path: Str::new(load.path),
            config: Str::new(load.config),
            options: Str::new(load.options),
            weights,
        };
        let mut raw: *mut c_void = std::ptr::null_mut();
        // SAFETY: `args` borrows strings that outlive the call; `raw` is a live out-pointer.
        self.call("model_load", |vt, err| unsafe {
            (vt.model_load)(&args, &mut raw, err)
        })?;
        if raw.is_null() {
            bail!("plugin {}: model_load returned no model", self.name());
        }
        Ok(PluginModel {
            plugin: self.clone(),
            raw: Mutex::new(RawModel(raw)),
        })
    }

    /// Compute a metric (`metric_compute`). The inputs are lent to the plugin for the
    /// call; the returned tensors are owned by the caller, also when the call failed (it
    /// then gets the error, after every emitted reference was taken over).
    pub(crate) fn compute_metric(&self, call: &MetricCall<'_>) -> Result<MetricReturn> {
        let h = host::host();
        let ids: Vec<(&str, TensorId)> = call
            .inputs
            .iter()
            .map(|(n, t)| (n.as_str(), h.insert(t.clone())))
            .collect();
        let named: Vec<NamedTensor> = ids
            .iter()
            .map(|(n, id)| NamedTensor {
                name: Str::new(n),
                tensor: *id,
            })
            .collect();
        let args = MetricArgs {
            struct_size: std::mem::size_of::<MetricArgs>() as u32,
            metric: Str::new(call.metric),
            params: Str::new(call.params),
            model: call.model,
            tokens: call.tokens.as_ptr(),
            n_tokens: call.tokens.len(),
            inputs: named.as_ptr(),
            n_inputs: named.len(),
        };
        struct Collect {
            record: String,
            tensors: Vec<(String, TensorId)>,
        }
        unsafe extern "C" fn record(ctx: *mut c_void, json: Str) {
            // SAFETY: ctx is the `Collect` below, alive for the whole call; `json` is valid
            // during this callback.
            let c = unsafe { &mut *(ctx as *mut Collect) };
            c.record.push_str(unsafe { json.to_str() }.unwrap_or(""));
        }
        unsafe extern "C" fn tensor(ctx: *mut c_void, name: Str, t: TensorId) {
            // SAFETY: as in `record`; the plugin hands over one reference to `t`.
            let c = unsafe { &mut *(ctx as *mut Collect) };
            c.tensors
                .push((unsafe { name.to_str() }.unwrap_or("?").to_string(), t));
        }
        let mut collect = Collect {
            record: String::new(),
            tensors: Vec::new(),
        };
        let sink = ResultSink {
            ctx: &mut collect as *mut Collect as *mut c_void,
            record,
            tensor,
        };
        // SAFETY: `args` points at `tokens`, `named` and strings alive through the call;
        // `sink` at `collect`, which is not touched until the call returns.
        let status = self.call(call.metric, |vt, err| unsafe {
            (vt.metric_compute)(&args, &sink, err)
        });
        crate::progress::finish();
        for (_, id) in &ids {
            h.release(*id);
        }
        let mut tensors = Vec::with_capacity(collect.tensors.len());
        for (name, id) in collect.tensors {
            tensors.push((name, h.take(id)?));
        }
        status?;
        Ok(MetricReturn {
            record: collect.record,
            tensors,
        })
    }
}

/// What [`Plugin::load_model`] passes to `model_load` (strings as the ABI's `LoadArgs`).
pub(crate) struct ModelLoad<'a> {
    pub arch: &'a str,
    pub path: &'a str,
    /// Normalised config.json.
    pub config: &'a str,
    /// The user's load options, a JSON object.
    pub options: &'a str,
}

/// What [`Plugin::compute_metric`] passes to `metric_compute`.
pub(crate) struct MetricCall<'a> {
    pub metric: &'a str,
    /// Parameters, a JSON object.
    pub params: &'a str,
    /// The model to measure, or 0.
    pub model: ModelId,
    pub tokens: &'a [u32],
    pub inputs: &'a [(String, Tensor)],
}

/// What a metric returned: its record (JSON) and its named tensors.
pub(crate) struct MetricReturn {
    pub record: String,
    pub tensors: Vec<(String, Tensor)>,
}

/// The pointer `model_load` returned.
struct RawModel(*mut c_void);
// SAFETY: plugin models are `Send` (the SDK requires `Architecture: Send`); every use goes
// through the Mutex in `PluginModel`, so no two threads touch one at a time.
unsafe impl Send for RawModel {}

/// A model instance a plugin created: calls into it go through its plugin, and it is
/// freed (`model_free`) when dropped.
pub struct PluginModel {
    plugin: Arc<Plugin>,
    raw: Mutex<RawModel>,
}

impl PluginModel {
    pub fn plugin(&self) -> &Arc<Plugin> {
        &self.plugin
    }

    /// The model's description (`model_info`), as JSON.
    pub(crate) fn info_json(&self) -> Result<String> {
        let raw = self.raw.lock().unwrap_or_else(|e| e.into_inner());
        let mut out = Text::new();
        let sink = out.sink();
        // SAFETY: `raw` is this plugin's live model (freed only in Drop), held locked;
        // the sinks point at locals that outlive the call.
        self.plugin.call("model_info", |vt, err| unsafe {
            (vt.model_info)(raw.0, &sink, err)
        })?;
        Ok(out.0)
    }

    /// One forward call (`model_forward`) with `options` (JSON, `ForwardArgs::options`);
    /// activations pass through `hooks`. Returns every emitted `(variant, name, tensor)`;
    /// emitted references are taken over even when the call fails.
    pub(crate) fn forward(
        &self,
        tokens: &[u32],
        options: &str,
        hooks: &mut HookCtx,
    ) -> Result<Vec<(u32, String, Tensor)>> {
        let args = ForwardArgs {
            struct_size: std::mem::size_of::<ForwardArgs>() as u32,
            tokens: tokens.as_ptr(),
            n_tokens: tokens.len(),
            options: Str::new(options),
            hooks: hooks as *mut HookCtx as *mut c_void,
        };
        struct Collect(Vec<(u32, String, TensorId)>);
        unsafe extern "C" fn put(ctx: *mut c_void, variant: u32, name: Str, t: TensorId) {
            // SAFETY: ctx is the `Collect` below, alive for the whole call; `name` is valid
            // during this callback.
            let c = unsafe { &mut *(ctx as *mut Collect) };
            c.0.push((
                variant,
                unsafe { name.to_str() }.unwrap_or("?").to_string(),
                t,
            ));
        }
        let mut collect = Collect(Vec::new());
        let sink = TensorSink {
            ctx: &mut collect as *mut Collect as *mut c_void,
            put,
        };
        let status = {
            let raw = self.raw.lock().unwrap_or_else(|e| e.into_inner());
            // SAFETY: `raw` is this plugin's live model, held locked for the call; `args`
            // points at `tokens`, `options` and `hooks`, all alive through the call, and the
            // host reaches `hooks` only during it (`host_hook`).
            self.plugin.call("forward", |vt, err| unsafe {
                (vt.model_forward)(raw.0, &args, &sink, err)
            })
        };
        let h = host::host();
        let mut out = Vec::with_capacity(collect.0.len());
        for (v, name, id) in collect.0 {
            out.push((v, name, h.take(id)?));
        }
        status?;
        Ok(out)
    }
}

impl Drop for PluginModel {
    fn drop(&mut self) {
        let raw = self.raw.get_mut().unwrap_or_else(|e| e.into_inner()).0;
        // A poisoned plugin is not called again, not even to free.
        if !raw.is_null() && self.plugin.poisoned().is_none() {
            // SAFETY: created by this plugin's `model_load`, freed once, here.
            unsafe { (self.plugin.vtable.model_free)(raw) };
        }
    }
}
