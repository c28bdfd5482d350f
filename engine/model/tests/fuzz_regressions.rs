//! Every committed fuzz input (`fuzz/corpus/TARGET/`, and `fuzz/crashes/TARGET/` for the
//! inputs that once crashed a target; see fuzz/README.md) goes through the same reader
//! here and must give a result or an error, never a panic.

use std::path::{Path, PathBuf};

/// The committed inputs of a fuzz target: its corpus and its past crashes. There must be
/// some, or the test proves nothing.
fn inputs(target: &str, dirs: &[&str]) -> Vec<PathBuf> {
    let fuzz = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz");
    let mut files: Vec<PathBuf> = dirs
        .iter()
        .filter_map(|d| std::fs::read_dir(fuzz.join(d).join(target)).ok())
        .flat_map(|d| d.flatten().map(|e| e.path()))
        .collect();
    files.sort();
    assert!(
        !files.is_empty(),
        "no committed fuzz inputs for {target} in {dirs:?}"
    );
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
fn tokenizer_inputs_never_panic_and_past_crashes_are_errors() {
    let load = |f: &Path| {
        let (_d, p) = as_file(f, "tokenizer.json");
        std::panic::catch_unwind(|| tokit_model::Tokenizer::from_file(&p).map(|_| ()))
            .unwrap_or_else(|_| panic!("{}: panicked", f.display()))
    };
    for f in inputs("tokenizer", &["corpus"]) {
        let _ = load(&f);
    }
    for f in inputs("tokenizer", &["crashes"]) {
        assert!(load(&f).is_err(), "{}: loaded", f.display());
    }
}

#[test]
fn gguf_inputs_never_panic() {
    for f in inputs("gguf", &["corpus", "crashes"]) {
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
fn safetensors_inputs_never_panic() {
    for f in inputs("safetensors", &["corpus", "crashes"]) {
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

#[test]
fn tensor_io_inputs_never_panic() {
    // The fuzz target's framing: the first byte picks the file type and the tensor name.
    const EXTS: [&str; 3] = ["npy", "csv", "safetensors"];
    const NAMES: [Option<&str>; 4] = [None, Some("x"), Some("0"), Some("b")];
    let mut loaded = 0;
    for f in inputs("tensor_io", &["corpus", "crashes"]) {
        let bytes = std::fs::read(&f).unwrap();
        let Some((&sel, file)) = bytes.split_first() else {
            continue;
        };
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join(format!("t.{}", EXTS[sel as usize % 3]));
        std::fs::write(&p, file).unwrap();
        let name = NAMES[(sel as usize / 3) % 4];
        let r = std::panic::catch_unwind(|| {
            tokit_model::tensor_io::load(&p, name).map(|t| {
                // What loads survives a save and a reload, bit for bit.
                let back = d.path().join("back.npy");
                tokit_model::tensor_io::save(&back, &[("", &t)]).unwrap();
                let r = tokit_model::tensor_io::load(&back, None).unwrap();
                assert_eq!(r.shape(), t.shape());
                let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
                assert_eq!(bits(r.data()), bits(t.data()));
            })
        });
        let r = r.unwrap_or_else(|_| panic!("{}: panicked", f.display()));
        loaded += r.is_ok() as usize;
    }
    // The corpus holds valid files of each type as well as broken ones.
    assert!(loaded > 0, "no committed tensor_io input loads");
}
