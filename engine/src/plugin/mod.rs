//! Plugins: find plugin libraries, load a private copy of each (never unloaded), check
//! the ABI, `init` with the host table, and call into them with poisoning on panic.

pub mod host;
mod ops;

use anyhow::{anyhow, bail, Context, Result};
use serde::Deserialize;
use serde_json::Value;
use std::collections::HashMap;
use std::ffi::c_void;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use tokit_sdk::abi::{self, PluginEntry, PluginVTable, Status, Str, TextSink};
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
pub(crate) struct Text(pub String);

unsafe extern "C" fn write_text(ctx: *mut c_void, s: Str) {
    // SAFETY: ctx is a `Text` owned by the caller for the duration of the call.
    let t = unsafe { &mut *(ctx as *mut Text) };
    t.0.push_str(unsafe { s.to_str() }.unwrap_or("<invalid UTF-8>"));
}

impl Text {
    pub fn new() -> Text {
        Text(String::new())
    }
    pub fn sink(&mut self) -> TextSink {
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
        let entry: *const PluginEntry = unsafe {
            *lib.get::<*const PluginEntry>(abi::ENTRY_SYMBOL.as_bytes())
                .with_context(|| {
                    format!(
                        "plugin {shown}: no `{}` symbol (not a tokit plugin?)",
                        abi::ENTRY_SYMBOL
                    )
                })?
        };
        // SAFETY: for a data symbol libloading yields its address; the entry is static.
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
        let mut vt: *const PluginVTable = std::ptr::null();
        let st = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| unsafe {
            (entry.init)(host::api(), &mut vt)
        }))
        .map_err(|_| anyhow!("plugin {shown}: init panicked"))?;
        if st != Status::OK || vt.is_null() {
            bail!("plugin {shown}: init failed (status {})", st.0);
        }
        let vtable: &'static PluginVTable = unsafe { &*vt };
        if (vtable.struct_size as usize) < std::mem::size_of::<PluginVTable>() {
            bail!(
                "plugin {shown}: function table is {} bytes, ABI 1.0 needs {}",
                vtable.struct_size,
                std::mem::size_of::<PluginVTable>()
            );
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
        let mut out = Text::new();
        p.call("describe", |vt, err| unsafe {
            (vt.describe)(&out.sink(), err)
        })?;
        p.desc = serde_json::from_str(&out.0)
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
    pub(crate) fn call(
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

    /// Run a plugin-specific action (JSON in, JSON out).
    pub fn action(&self, name: &str, args: &Value) -> Result<Value> {
        let args = args.to_string();
        let mut out = Text::new();
        self.call(name, |vt, err| unsafe {
            (vt.action)(Str::new(name), Str::new(&args), &out.sink(), err)
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

    pub(crate) fn vtable(&self) -> &'static PluginVTable {
        self.vtable
    }
}

/// The plugins an engine uses.
#[derive(Clone, Default)]
pub struct PluginSet {
    pub plugins: Vec<Arc<Plugin>>,
    /// Files that failed to load, with the reason.
    pub failures: Vec<(PathBuf, String)>,
}

impl PluginSet {
    /// Load every plugin file in `dirs` (first one wins for duplicate names).
    pub fn discover(dirs: &[PathBuf]) -> PluginSet {
        let mut set = PluginSet::default();
        for dir in dirs {
            let Ok(entries) = std::fs::read_dir(dir) else {
                tracing::debug!(dir = %dir.display(), "plugin directory not readable; skipped");
                continue;
            };
            let mut files: Vec<PathBuf> = entries
                .flatten()
                .map(|e| e.path())
                .filter(|p| is_plugin_file(p))
                .collect();
            files.sort();
            for f in files {
                if let Err(e) = set.add_file(&f) {
                    tracing::warn!("{e:#}");
                    set.failures.push((f, format!("{e:#}")));
                }
            }
        }
        set
    }

    /// Load one plugin file into the set.
    pub fn add_file(&mut self, path: &Path) -> Result<Arc<Plugin>> {
        let p = Plugin::load(path)?;
        if let Some(other) = self.plugins.iter().find(|q| q.name() == p.name()) {
            if other.path != p.path {
                tracing::warn!(
                    "plugin {} at {} shadowed by {}",
                    p.name(),
                    p.path.display(),
                    other.path.display()
                );
            }
            return Ok(other.clone());
        }
        self.plugins.push(p.clone());
        Ok(p)
    }

    /// Swap in a fresh copy of the plugin loaded from `path` (rebuilt on disk): returns
    /// the old and the new version. Work that holds the old one keeps it (models made
    /// through it keep calling it until re-created); on failure the set is unchanged.
    pub fn reload(&mut self, path: &Path) -> Result<(Arc<Plugin>, Arc<Plugin>)> {
        let canonical = path
            .canonicalize()
            .with_context(|| format!("plugin {}: cannot open", path.display()))?;
        let i = self
            .plugins
            .iter()
            .position(|p| p.path == canonical)
            .ok_or_else(|| anyhow!("no plugin is loaded from {}", path.display()))?;
        let new = Plugin::reload(&canonical)?;
        if new.name() != self.plugins[i].name() {
            tracing::warn!(
                "plugin {} now calls itself {}",
                self.plugins[i].name(),
                new.name()
            );
        }
        let old = std::mem::replace(&mut self.plugins[i], new.clone());
        Ok((old, new))
    }

    pub fn get(&self, name: &str) -> Result<Arc<Plugin>> {
        self.plugins
            .iter()
            .find(|p| p.name() == name)
            .cloned()
            .ok_or_else(|| {
                anyhow!(
                    "no plugin named `{name}` is loaded (loaded: {})",
                    self.names().join(", ")
                )
            })
    }

    pub fn names(&self) -> Vec<String> {
        self.plugins.iter().map(|p| p.name().to_string()).collect()
    }

    /// The plugin and architecture name serving `key` (an architecture name or a
    /// config.json `model_type`).
    pub fn find_arch(&self, key: &str) -> Option<(Arc<Plugin>, String)> {
        let by_name = self.plugins.iter().find_map(|p| {
            p.desc
                .architectures
                .iter()
                .find(|a| a.name == key)
                .map(|a| (p.clone(), a.name.clone()))
        });
        by_name.or_else(|| {
            self.plugins.iter().find_map(|p| {
                p.desc
                    .architectures
                    .iter()
                    .find(|a| a.model_types.iter().any(|m| m == key))
                    .map(|a| (p.clone(), a.name.clone()))
            })
        })
    }

    /// Every architecture as `name (model_types...)`, for error messages.
    pub fn arch_list(&self) -> String {
        let v: Vec<String> = self
            .plugins
            .iter()
            .flat_map(|p| p.desc.architectures.iter())
            .map(|a| format!("{} ({})", a.name, a.model_types.join(", ")))
            .collect();
        if v.is_empty() {
            "none: no architecture plugin is loaded".into()
        } else {
            v.join("; ")
        }
    }

    pub fn find_metric(&self, name: &str) -> Result<(Arc<Plugin>, MetricSpec)> {
        self.plugins
            .iter()
            .find_map(|p| {
                p.desc
                    .metrics
                    .iter()
                    .find(|m| m.name == name)
                    .map(|m| (p.clone(), m.clone()))
            })
            .ok_or_else(|| {
                let known: Vec<String> = self
                    .plugins
                    .iter()
                    .flat_map(|p| p.desc.metrics.iter().map(|m| m.name.clone()))
                    .collect();
                anyhow!(
                    "unknown metric `{name}` (known: {})",
                    if known.is_empty() {
                        "none".into()
                    } else {
                        known.join(", ")
                    }
                )
            })
    }
}
