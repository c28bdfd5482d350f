//! The set of plugins an engine uses: discovery on the search path, lookup of
//! architectures and metrics by name, and hot reload of one library.

use super::Plugin;
use anyhow::{anyhow, Context, Result};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tokit_sdk::MetricSpec;

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
                .filter(|p| super::is_plugin_file(p))
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
