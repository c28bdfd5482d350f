//! Every input that once crashed a fuzz target (`fuzz/crashes/TARGET/`, see fuzz/README.md)
//! goes through the same reader here and must give a result or an error, never a panic.

use std::path::{Path, PathBuf};

fn crashes(target: &str) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../fuzz/crashes")
        .join(target);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    files.sort();
    files
}

/// Copies `input` to `name` in a fresh directory and returns both.
fn as_file(input: &Path, name: &str) -> (tempfile::TempDir, PathBuf) {
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join(name);
    std::fs::copy(input, &p).unwrap();
    (d, p)
}

#[test]
fn tokenizer_crashes_are_errors() {
    for f in crashes("tokenizer") {
        let (_d, p) = as_file(&f, "tokenizer.json");
        let r = std::panic::catch_unwind(|| tokit_model::Tokenizer::from_file(&p).map(|_| ()));
        let e = r.unwrap_or_else(|_| panic!("{}: panicked", f.display()));
        assert!(e.is_err(), "{}: loaded", f.display());
    }
}

#[test]
fn gguf_crashes_are_errors() {
    for f in crashes("gguf") {
        let (_d, p) = as_file(&f, "model.gguf");
        let r = std::panic::catch_unwind(|| {
            if let Ok(g) = tokit_model::Gguf::open(&p) {
                let _ = tokit_model::gguf_config(&g);
                let _ = tokit_model::Tokenizer::from_gguf(&g);
                for t in g.tensors().iter().filter(|t| t.numel() <= 1 << 20) {
                    let _ = g.read_f32(&t.name);
                }
            }
        });
        assert!(r.is_ok(), "{}: panicked", f.display());
    }
}

#[test]
fn safetensors_crashes_are_errors() {
    for f in crashes("safetensors") {
        let (d, _p) = as_file(&f, "model.safetensors");
        let r = std::panic::catch_unwind(|| {
            if let Ok(w) = tokit_model::Weights::open(d.path()) {
                for n in w.names() {
                    let _ = w.read_f32(&n);
                }
            }
        });
        assert!(r.is_ok(), "{}: panicked", f.display());
    }
}
