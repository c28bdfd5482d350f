//! The `tokit` command line and the shipped scripts, run as a user would.

use tokit_tests::*;

fn ok(out: &std::process::Output) -> String {
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "tokit failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

fn fit_byte_model(dir: &std::path::Path) {
    let script = dir.join("fit.rhai");
    let model = dir.join("model");
    std::fs::write(
        &script,
        format!(
            r#"call_plugin("arllm", "fit", #{{ text_file: "scripts/data/genesis-1-11.txt", order: 2, out: "{}" }});"#,
            model.display()
        ),
    )
    .unwrap();
    ok(&tokit(&["run", script.to_str().unwrap()]));
}

#[test]
fn plugins_lists_name_kind_version_abi_file_and_what_each_provides() {
    let out = ok(&tokit(&["plugins"]));
    assert!(out.contains("arllm 0.1.0 (architecture, ABI 1.0"), "{out}");
    assert!(
        out.contains("architecture arllm (model_type: arllm)"),
        "{out}"
    );
    assert!(out.contains("info 0.1.0 (metric, ABI 1.0"), "{out}");
    assert!(out.contains("metric surprisal"), "{out}");
    assert!(out.contains("libtokit_plugin_info"), "{out}");
}

#[test]
fn forward_writes_logits_and_hooks_to_safetensors() {
    let dir = tempfile::tempdir().unwrap();
    fit_byte_model(dir.path());
    let model = dir.path().join("model");
    let file = dir.path().join("fwd.safetensors");
    ok(&tokit(&[
        "forward",
        model.to_str().unwrap(),
        "--text",
        "In the beginning",
        "--capture",
        "hook_logits",
        "--output",
        file.to_str().unwrap(),
    ]));
    let w = tokit_model::Weights::open(&file).unwrap();
    assert_eq!(w.shape("logits"), Some(vec![16, 256]));
    assert_eq!(w.shape("hook_logits"), Some(vec![16, 256]));
    assert_eq!(w.info("logits").unwrap().0, tokit_model::Dtype::F32);
}

#[test]
fn analyze_writes_the_result_json_and_info_describes_the_model() {
    let dir = tempfile::tempdir().unwrap();
    fit_byte_model(dir.path());
    let model = dir.path().join("model");
    let file = dir.path().join("r.json");
    let out = ok(&tokit(&[
        "analyze",
        "cross_entropy",
        "--model",
        model.to_str().unwrap(),
        "--text",
        "And God saw the light, that it was good",
        "--param",
        "unit=bits",
        "--output",
        file.to_str().unwrap(),
    ]));
    assert!(out.contains("cross_entropy = "), "{out}");
    let r: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
    assert_eq!(r["metric"], "cross_entropy");
    assert_eq!(r["unit"], "bits");
    assert_eq!(r["plugin"], "info");
    assert!(r["value"].as_f64().unwrap() > 0.0);
    assert!(r["scalars"]["se"].as_f64().unwrap() > 0.0);
    assert_eq!(r["provenance"]["arch"], "arllm");
    assert!(r["provenance"]["backend"]
        .as_str()
        .unwrap()
        .starts_with("cpu"));
    let info = ok(&tokit(&["info", model.to_str().unwrap()]));
    assert!(
        info.contains("architecture: arllm") && info.contains("ablation:     exact, replace"),
        "{info}"
    );
}

#[test]
fn bad_input_on_the_command_line_is_a_clear_error_not_a_panic() {
    let out = tokit(&["info", "/nonexistent/model"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("error: model /nonexistent/model: no such file or directory"),
        "{err}"
    );
    assert!(!err.contains("panicked"), "{err}");
    // `--backend gpu` without an adapter: tests/gpu.rs (it hides the Vulkan drivers).
}

#[test]
fn every_script_in_scripts_runs() {
    let scripts = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts");
    let mut n = 0;
    for entry in std::fs::read_dir(&scripts).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "rhai") {
            let out = ok(&tokit(&["run", path.to_str().unwrap()]));
            assert!(!out.is_empty(), "{} printed nothing", path.display());
            n += 1;
        }
    }
    assert!(n >= 1);
}
