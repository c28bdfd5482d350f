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

/// Limits that stop runaway scripts. Rhai's array, map and string size limits are not set:
/// with them Rhai re-measures a whole array after every operation, so every loop that
/// builds data is quadratic; `max_memory` bounds what a script can hold instead.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ScriptLimits {
    /// Rhai operations per script run (0 = unlimited).
    pub max_operations: u64,
    pub max_call_levels: usize,
    /// Heap held by the tokit process at which a running script is stopped: bytes, or a
    /// string with a unit (`"8 GiB"`, `"512 MiB"`); 0 turns the guard off. Absent: three
    /// quarters of the physical memory (8 GiB where the system does not say). Written
    /// without `Some(...)`: `max_memory: "8 GiB"`.
    #[serde(deserialize_with = "some_mem_size")]
    pub max_memory: Option<MemSize>,
    /// Removed (see [`ScriptLimits`]); an old file naming it loads with a warning.
    #[serde(
        rename = "max_string_size",
        skip_serializing,
        deserialize_with = "some_ignored"
    )]
    pub removed_max_string_size: Option<serde::de::IgnoredAny>,
    /// Removed, as `max_string_size`.
    #[serde(
        rename = "max_array_size",
        skip_serializing,
        deserialize_with = "some_ignored"
    )]
    pub removed_max_array_size: Option<serde::de::IgnoredAny>,
}

impl Default for ScriptLimits {
    fn default() -> Self {
        ScriptLimits {
            max_operations: 500_000_000,
            max_call_levels: 64,
            max_memory: None,
            removed_max_string_size: None,
            removed_max_array_size: None,
        }
    }
}

impl ScriptLimits {
    /// The memory guard's limit in bytes (`None`: off).
    pub fn memory_limit(&self) -> Option<u64> {
        match self.max_memory {
            Some(MemSize(0)) => None,
            Some(MemSize(n)) => Some(n),
            None => Some(crate::memory::physical_memory().map_or(8 << 30, |total| total / 4 * 3)),
        }
    }

    /// Warnings about settings that are accepted but no longer do anything.
    pub fn warnings(&self) -> Vec<String> {
        let mut removed = Vec::new();
        if self.removed_max_string_size.is_some() {
            removed.push("script.max_string_size");
        }
        if self.removed_max_array_size.is_some() {
            removed.push("script.max_array_size");
        }
        if removed.is_empty() {
            return Vec::new();
        }
        vec![format!(
            "{} no longer exist{} and {} ignored: Rhai's size limits made every loop that \
             builds an array or a string quadratic; `script.max_memory` bounds a script's \
             memory instead. Remove {} from tokit.ron.",
            removed.join(" and "),
            if removed.len() == 1 { "s" } else { "" },
            if removed.len() == 1 { "is" } else { "are" },
            if removed.len() == 1 { "it" } else { "them" },
        )]
    }
}

/// A memory size in bytes; in tokit.ron an integer (bytes) or a string with a unit:
/// `"8 GiB"`, `"512MiB"`, `"2 GB"` (KiB/MiB/GiB/TiB are powers of 1024, KB/MB/GB/TB of
/// 1000, `B` or none bytes).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "MemSizeRepr", into = "u64")]
pub struct MemSize(pub u64);

fn some_ignored<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Option<serde::de::IgnoredAny>, D::Error> {
    serde::de::IgnoredAny::deserialize(d).map(Some)
}

fn some_mem_size<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<MemSize>, D::Error> {
    MemSize::deserialize(d).map(Some)
}

#[derive(Deserialize)]
#[serde(untagged)]
enum MemSizeRepr {
    Bytes(u64),
    Text(String),
}

impl From<MemSize> for u64 {
    fn from(m: MemSize) -> u64 {
        m.0
    }
}

impl TryFrom<MemSizeRepr> for MemSize {
    type Error = String;
    fn try_from(r: MemSizeRepr) -> Result<MemSize, String> {
        match r {
            MemSizeRepr::Bytes(n) => Ok(MemSize(n)),
            MemSizeRepr::Text(s) => s.parse(),
        }
    }
}

impl std::str::FromStr for MemSize {
    type Err = String;
    fn from_str(s: &str) -> Result<MemSize, String> {
        let t = s.trim();
        let split = t
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(t.len());
        let (num, unit) = t.split_at(split);
        let scale: u64 = match unit.trim().to_ascii_lowercase().as_str() {
            "" | "b" => 1,
            "kib" => 1 << 10,
            "mib" => 1 << 20,
            "gib" => 1 << 30,
            "tib" => 1 << 40,
            "kb" => 1_000,
            "mb" => 1_000_000,
            "gb" => 1_000_000_000,
            "tb" => 1_000_000_000_000,
            _ => {
                return Err(format!(
                    "memory size `{s}`: unknown unit (use B, KiB, MiB, GiB, TiB, KB, MB, GB or TB)"
                ))
            }
        };
        let n: f64 = num.parse().map_err(|_| {
            format!("memory size `{s}`: expected a number and a unit, e.g. \"8 GiB\"")
        })?;
        let bytes = n * scale as f64;
        if !(bytes.is_finite() && bytes < u64::MAX as f64) {
            return Err(format!("memory size `{s}` is out of range"));
        }
        Ok(MemSize(bytes.round() as u64))
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
        Config::parse(&text, &path.display().to_string())
    }

    /// Parse and check the text of a RON file (`origin` names it in errors and warnings).
    pub fn parse(text: &str, origin: &str) -> Result<Config> {
        let config: Config = ron::from_str(text).map_err(|e| anyhow::anyhow!("{origin}: {e}"))?;
        config.check().with_context(|| origin.to_string())?;
        for w in config.script.warnings() {
            tracing::warn!("{origin}: {w}");
        }
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
    fn max_memory_takes_bytes_or_units_and_old_size_limits_warn() {
        let c: Config = ron::from_str("(script: (max_memory: \"512 MiB\"))").unwrap();
        assert_eq!(c.script.memory_limit(), Some(512 << 20));
        let c: Config = ron::from_str("(script: (max_memory: 1000))").unwrap();
        assert_eq!(c.script.memory_limit(), Some(1000));
        let c: Config = ron::from_str("(script: (max_memory: \"0\"))").unwrap();
        assert_eq!(c.script.memory_limit(), None);
        assert_eq!("1.5GiB".parse(), Ok(MemSize(3 << 29)));
        assert_eq!("2 GB".parse(), Ok(MemSize(2_000_000_000)));
        assert!("8 GiBs".parse::<MemSize>().unwrap_err().contains("unit"));
        assert!("lots".parse::<MemSize>().is_err());
        let e = ron::from_str::<Config>("(script: (max_memory: \"8 parsecs\"))").unwrap_err();
        assert!(e.to_string().contains("unit"), "{e}");
        assert!(Config::default().script.memory_limit().unwrap() > 0);
        assert!(Config::default().script.warnings().is_empty());
        // Files written for older versions still load, with a warning that says why.
        let c: Config =
            ron::from_str("(script: (max_array_size: 100, max_string_size: 10))").unwrap();
        let w = c.script.warnings();
        assert_eq!(w.len(), 1);
        assert!(
            w[0].contains("max_array_size")
                && w[0].contains("quadratic")
                && w[0].contains("max_memory"),
            "{}",
            w[0]
        );
        // Other unknown fields are still errors.
        assert!(ron::from_str::<Config>("(script: (max_arrays: 1))").is_err());
    }

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
