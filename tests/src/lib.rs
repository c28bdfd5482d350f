//! Shared helpers for the integration tests: build the plugin libraries once, make an
//! engine that finds them, and write small model directories.

mod fixtures;
pub use fixtures::{
    fixture, load_fixture, logits, max_diff, nan_max, reference, word_llama, Reference, GENESIS,
};

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use tokit_engine::{Config, Engine};

/// A test's prerequisite is missing (no GPU adapter, the SmolLM2 file not fetched). Locally
/// the test prints why and passes; under CI (`CI` set, as every CI service does) it fails,
/// so a green CI run means the test really ran.
pub fn missing_prerequisite(test: &str, why: impl std::fmt::Display) {
    if in_ci() {
        panic!("{test}: prerequisite missing under CI: {why}");
    }
    eprintln!("{test}: SKIPPED, {why}");
}

/// Whether this runs under CI (`CI` set to anything but empty, `0` or `false`).
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| !matches!(v.as_str(), "" | "0" | "false"))
}

/// `target/<profile>`, where cargo puts the plugin libraries of this build.
pub fn target_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    let deps = exe.parent().expect("deps dir");
    deps.parent().expect("profile dir").to_path_buf()
}

/// Build every plugin library (cargo builds cdylibs only on request), once per process.
pub fn ensure_built() {
    static BUILT: OnceLock<()> = OnceLock::new();
    BUILT.get_or_init(|| {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let mut cmd = std::process::Command::new(cargo);
        cmd.current_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join(".."));
        cmd.args(["build", "--quiet", "--lib", "--bin", "tokit"]);
        for p in [
            "tokit-plugin-arllm",
            "tokit-plugin-info",
            "tokit-plugin-rate",
            "tokit-plugin-transformer",
            "tokit-plugin-mamba2",
            "tokit-testplugin-toylm",
            "tokit-testplugin-abi2",
            "tokit-engine",
        ] {
            cmd.args(["-p", p]);
        }
        if target_dir().file_name().is_some_and(|n| n == "release") {
            cmd.arg("--release");
        }
        let status = cmd.status().expect("running cargo build for the plugins");
        assert!(status.success(), "building the plugins failed");
    });
}

/// Path of a plugin library built in this profile (`name` as in `tokit_plugin_info`).
pub fn plugin_file(name: &str) -> PathBuf {
    let file = format!(
        "{}{name}{}",
        std::env::consts::DLL_PREFIX,
        std::env::consts::DLL_SUFFIX
    );
    target_dir().join(file)
}

/// An engine over the workspace's plugins (plus the toylm test plugin).
pub fn engine() -> Arc<Engine> {
    ensure_built();
    let mut e = Engine::new(Config::default()).expect("engine");
    e.add_plugin(&plugin_file("tokit_testplugin_toylm"))
        .expect("toylm test plugin");
    Arc::new(e)
}

/// Write a toylm model (`vocab` × `d`, deterministic weights) into `dir`.
pub fn write_toylm(dir: &Path, vocab: usize, d: usize, extra_config: serde_json::Value) {
    let mut config = serde_json::json!({ "model_type": "toylm", "vocab_size": vocab, "hidden_size": d, "tokenizer": "bytes" });
    if let (Some(c), Some(e)) = (config.as_object_mut(), extra_config.as_object()) {
        c.extend(e.clone());
    }
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join("config.json"), config.to_string()).unwrap();
    let embed: Vec<f32> = (0..vocab * d)
        .map(|i| ((i * 7 % 13) as f32 - 6.0) / 10.0)
        .collect();
    let head: Vec<f32> = (0..vocab * d)
        .map(|i| ((i * 5 % 11) as f32 - 5.0) / 10.0)
        .collect();
    tokit_model::save_f32(
        &dir.join("model.safetensors"),
        &[
            ("embed.weight", &[vocab, d], &embed),
            ("head.weight", &[vocab, d], &head),
        ],
        None,
    )
    .unwrap();
}

/// A command running the `tokit` binary of this build (built first) from the workspace
/// root, for tests that set its environment, directory or input themselves.
pub fn tokit_command() -> std::process::Command {
    ensure_built();
    let mut cmd = std::process::Command::new(
        target_dir().join(format!("tokit{}", std::env::consts::EXE_SUFFIX)),
    );
    cmd.current_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join(".."))
        .env("RUST_BACKTRACE", "0");
    cmd
}

/// The `tokit` binary of this build, run from the workspace root.
pub fn tokit(args: &[&str]) -> std::process::Output {
    tokit_command().args(args).output().expect("running tokit")
}

/// The SmolLM2 GGUF, where `tools/get-smollm2.sh` puts it (`$TOKIT_CACHE/smollm2`, default
/// `~/.cache/tokit/smollm2`), or the file `TOKIT_SMOLLM2_GGUF` names.
pub fn smollm2_gguf() -> Option<PathBuf> {
    if let Ok(p) = std::env::var("TOKIT_SMOLLM2_GGUF") {
        return Some(p.into());
    }
    let cache = std::env::var("TOKIT_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|_| {
            PathBuf::from(std::env::var("HOME").unwrap_or_default()).join(".cache/tokit")
        });
    std::fs::read_dir(cache.join("smollm2"))
        .ok()?
        .flatten()
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|e| e == "gguf"))
}

/// A little-endian int64 `.npy` file.
pub fn write_npy_i64(path: &Path, v: &[u32]) {
    let mut h = format!(
        "{{'descr': '<i8', 'fortran_order': False, 'shape': ({},), }}",
        v.len()
    );
    let total = 10 + h.len() + 1;
    h.push_str(&" ".repeat(total.next_multiple_of(64) - total));
    h.push('\n');
    let mut b = b"\x93NUMPY\x01\x00".to_vec();
    b.extend_from_slice(&(h.len() as u16).to_le_bytes());
    b.extend_from_slice(h.as_bytes());
    for &x in v {
        b.extend_from_slice(&(x as i64).to_le_bytes());
    }
    std::fs::write(path, b).unwrap();
}
