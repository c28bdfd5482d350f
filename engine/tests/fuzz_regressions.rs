//! The committed inputs of the engine's fuzz targets (`fuzz/corpus/TARGET/`, and
//! `fuzz/crashes/TARGET/` for inputs that once crashed one; see fuzz/README.md) go through
//! the same readers here: `tokit.ron` parsing and the Rhai option maps. Each must give a
//! value or an error, never a panic.

use rhai::{Dynamic, Map};
use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};
use tokit_engine::config::Config;
use tokit_engine::script::{analyze_input, options};

/// The committed inputs of a fuzz target; there must be some, or the test proves nothing.
fn inputs(target: &str) -> Vec<PathBuf> {
    let fuzz = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz");
    let mut files: Vec<PathBuf> = ["corpus", "crashes"]
        .iter()
        .filter_map(|d| std::fs::read_dir(fuzz.join(d).join(target)).ok())
        .flat_map(|d| d.flatten().map(|e| e.path()))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no committed fuzz inputs for {target}");
    files
}

#[test]
fn tokit_ron_inputs_never_panic() {
    let mut loaded = 0;
    for f in inputs("tokit_ron") {
        let bytes = std::fs::read(&f).unwrap();
        let r = std::panic::catch_unwind(AssertUnwindSafe(|| {
            let text = std::str::from_utf8(&bytes).ok()?;
            let c = Config::parse(text, "tokit.ron").ok()?;
            let _ = (c.script.memory_limit(), c.script.warnings());
            Some(c.plugin_search_path())
        }));
        loaded += r
            .unwrap_or_else(|_| panic!("{}: panicked", f.display()))
            .is_some() as usize;
    }
    // The corpus holds valid configs as well as broken ones.
    assert!(loaded > 0, "no committed tokit.ron input parses");
}

#[test]
fn rhai_option_inputs_never_panic() {
    let arrays = vec!["xs".to_string(), "ys".to_string()];
    let mut maps = 0;
    for f in inputs("rhai_options") {
        let bytes = std::fs::read(&f).unwrap();
        let Ok(v) = serde_json::from_slice::<serde_json::Value>(&bytes) else {
            continue;
        };
        let Some(map) = rhai::serde::to_dynamic(&v)
            .ok()
            .and_then(|d| d.try_cast::<Map>())
        else {
            continue;
        };
        maps += 1;
        let r = std::panic::catch_unwind(AssertUnwindSafe(|| {
            let _ = options::forward_spec(map.clone());
            let _ = options::intervention(&Dynamic::from_map(map.clone()));
            let _ = options::options::<tokit_engine::GenerateOptions>(map.clone(), "generate");
            let _ = analyze_input("metric", &map, None);
            let _ = analyze_input("metric", &map, Some(&arrays));
        }));
        assert!(r.is_ok(), "{}: panicked", f.display());
    }
    assert!(maps > 0, "no committed Rhai option input is a map");
}
