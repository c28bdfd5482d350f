//! `tokit.ron`: plugin directories, backend, threads, script limits, named models,
//! output directory. Found in the working directory, then the user config directory.

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Which compute backend to use.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum BackendChoice {
    /// A real GPU if one is there, else the CPU (with the reason logged).
    #[default]
    Auto,
    Cpu,
    Gpu,
}

impl std::str::FromStr for BackendChoice {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "auto" => Ok(BackendChoice::Auto),
            "cpu" => Ok(BackendChoice::Cpu),
            "gpu" => Ok(BackendChoice::Gpu),
            _ => Err(format!("unknown backend `{s}` (expected auto, cpu or gpu)")),
        }
    }
}

/// How the GPU backend stores model weights (compute is f32 either way).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum GpuWeights {
    /// Weights as uploaded: the same numbers as the CPU backend.
    #[default]
    F32,
    /// Weight matrices rounded to half precision: half the device memory, logits
    /// change (opt-in; see the README's "GPU backend").
    F16,
}

impl std::str::FromStr for GpuWeights {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "f32" => Ok(GpuWeights::F32),
            "f16" => Ok(GpuWeights::F16),
            _ => Err(format!(
                "unknown gpu weight storage `{s}` (expected f32 or f16)"
            )),
        }
    }
}

/// How the CPU backend stores model weight matrices (compute is f32 either way).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum CpuWeights {
    /// Weights as loaded: the reference numbers.
    #[default]
    F32,
    /// Weight matrices rounded to IEEE half: decoding reads half the bytes, logits
    /// change (opt-in; see the README's "Performance").
    F16,
    /// Weight matrices rounded to bfloat16 (as `F16`, with f32's range and 3 fewer bits).
    Bf16,
}

impl std::str::FromStr for CpuWeights {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "f32" => Ok(CpuWeights::F32),
            "f16" => Ok(CpuWeights::F16),
            "bf16" => Ok(CpuWeights::Bf16),
            _ => Err(format!(
                "unknown cpu weight storage `{s}` (expected f32, f16 or bf16)"
            )),
        }
    }
}

/// Limits that stop runaway scripts.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ScriptLimits {
    /// Rhai operations per script run (0 = unlimited).
    pub max_operations: u64,
    pub max_call_levels: usize,
    pub max_string_size: usize,
    pub max_array_size: usize,
}

impl Default for ScriptLimits {
    fn default() -> Self {
        ScriptLimits {
            max_operations: 500_000_000,
            max_call_levels: 64,
            max_string_size: 64 << 20,
            max_array_size: 16 << 20,
        }
    }
}

/// The whole configuration. Unknown fields are errors, so a typo is not silently ignored.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Extra plugin directories, searched before the built-in ones.
    pub plugin_dirs: Vec<PathBuf>,
    pub backend: BackendChoice,
    /// Weight storage on the GPU backend (ignored on the CPU).
    pub gpu_weights: GpuWeights,
    /// Weight storage on the CPU backend (ignored on the GPU).
    pub cpu_weights: CpuWeights,
    /// Compute threads (None = all cores).
    pub threads: Option<usize>,
    pub script: ScriptLimits,
    /// Short names for model paths: `load_model("smollm2")`.
    pub models: BTreeMap<String, PathBuf>,
    /// Where scripts write results by default.
    pub output_dir: Option<PathBuf>,
    /// Skip the plugins next to the `tokit` binary / in the workspace build output.
    pub no_default_plugins: bool,
}

impl Config {
    /// Parse and check a RON file; errors name the file and the position or field.
    pub fn load(path: &Path) -> Result<Config> {
        let text = tokit_model::read::read_text_bounded(path, "config", 1 << 20)?;
        let config: Config =
            ron::from_str(&text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
        config
            .check()
            .with_context(|| format!("{}", path.display()))?;
        Ok(config)
    }

    /// Most compute threads accepted: far more than any machine's cores, far fewer than
    /// would exhaust the system creating them.
    pub const MAX_THREADS: usize = 1024;

    /// Checks values the types allow but the engine cannot honour.
    pub fn check(&self) -> Result<()> {
        if let Some(n) = self.threads {
            anyhow::ensure!(
                (1..=Self::MAX_THREADS).contains(&n),
                "threads: {n} is not between 1 and {} (None uses every core)",
                Self::MAX_THREADS
            );
        }
        Ok(())
    }

    /// `./tokit.ron`, else `$XDG_CONFIG_HOME/tokit/tokit.ron` (or `~/.config/...`), else
    /// defaults.
    pub fn discover() -> Result<(Config, Option<PathBuf>)> {
        let mut candidates = vec![PathBuf::from("tokit.ron")];
        let base = std::env::var_os("XDG_CONFIG_HOME")
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config")));
        if let Some(b) = base {
            candidates.push(b.join("tokit").join("tokit.ron"));
        }
        for c in candidates {
            if c.is_file() {
                return Ok((Config::load(&c)?, Some(c)));
            }
        }
        Ok((Config::default(), None))
    }

    /// Directories searched for plugins: configured ones, then the directory of the
    /// running binary (the workspace's `target/<profile>` during development).
    pub fn plugin_search_path(&self) -> Vec<PathBuf> {
        let mut dirs = self.plugin_dirs.clone();
        if !self.no_default_plugins {
            if let Some(exe_dir) = std::env::current_exe()
                .ok()
                .and_then(|e| e.parent().map(Path::to_path_buf))
            {
                // Test binaries live in target/<profile>/deps.
                if exe_dir.file_name().is_some_and(|n| n == "deps") {
                    if let Some(p) = exe_dir.parent() {
                        dirs.push(p.to_path_buf());
                    }
                }
                dirs.push(exe_dir);
            }
        }
        dirs
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_weights_default_to_f32_and_parse_from_ron_and_the_cli() {
        assert_eq!(Config::default().cpu_weights, CpuWeights::F32);
        let c: Config = ron::from_str("(cpu_weights: Bf16)").unwrap();
        assert_eq!(c.cpu_weights, CpuWeights::Bf16);
        assert_eq!("BF16".parse::<CpuWeights>(), Ok(CpuWeights::Bf16));
        assert_eq!("f16".parse::<CpuWeights>(), Ok(CpuWeights::F16));
        let err = "int8".parse::<CpuWeights>().unwrap_err();
        assert!(err.contains("f32, f16 or bf16"), "{err}");
    }

    #[test]
    fn gpu_weights_default_to_f32_and_parse_from_ron_and_the_cli() {
        assert_eq!(Config::default().gpu_weights, GpuWeights::F32);
        let c: Config = ron::from_str("(gpu_weights: F16)").unwrap();
        assert_eq!(c.gpu_weights, GpuWeights::F16);
        assert_eq!("F16".parse::<GpuWeights>(), Ok(GpuWeights::F16));
        let err = "bf16".parse::<GpuWeights>().unwrap_err();
        assert!(
            err.contains("`bf16`") && err.contains("f32 or f16"),
            "{err}"
        );
    }
}
