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
            // Scripts announce each plot they draw as `plot: PATH`; open every one.
            for plot in out.lines().filter_map(|l| l.strip_prefix("plot: ")) {
                check_plot(
                    &std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                        .join("..")
                        .join(plot),
                );
            }
            n += 1;
        }
    }
    assert!(n >= 1);
}

/// A plot file is a valid SVG (XML with an `<svg>` root and non-numeric `<text>` labels,
/// the axis descriptions) or PNG (decodes, has pixels, is not blank).
fn check_plot(path: &std::path::Path) {
    match path.extension().and_then(|e| e.to_str()) {
        Some("svg") => {
            let s =
                std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            let doc = roxmltree::Document::parse(&s)
                .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            assert_eq!(
                doc.root_element().tag_name().name(),
                "svg",
                "{}",
                path.display()
            );
            let labels: Vec<&str> = doc
                .descendants()
                .filter(|n| n.has_tag_name("text"))
                .filter_map(|n| n.text().map(str::trim))
                .filter(|t| t.parse::<f64>().is_err() && !t.is_empty())
                .collect();
            // Title and two axis descriptions at least.
            assert!(labels.len() >= 3, "{}: labels {labels:?}", path.display());
        }
        Some("png") => {
            let file =
                std::fs::File::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            let mut reader = png::Decoder::new(std::io::BufReader::new(file))
                .read_info()
                .unwrap();
            let mut buf = vec![0; reader.output_buffer_size()];
            let info = reader.next_frame(&mut buf).unwrap();
            assert!(
                info.width >= 200 && info.height >= 200,
                "{}",
                path.display()
            );
            let px = &buf[..info.buffer_size()];
            assert!(
                px.iter().any(|&b| b < 100),
                "{}: blank image",
                path.display()
            );
        }
        _ => panic!("{}: not a plot file", path.display()),
    }
}

/// On a headless machine the GPU probe must not print Mesa's Wayland noise
/// ("XDG_RUNTIME_DIR is invalid") for CPU-only work; with -v the layer stays on.
#[test]
fn quiet_on_a_headless_machine() {
    let out = tokit_command()
        .args(["info", "tests/fixtures/transformer/gpt2"])
        .env_remove("NODEVICE_SELECT")
        .env_remove("XDG_RUNTIME_DIR")
        .env_remove("WAYLAND_DISPLAY")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.trim().is_empty(), "stderr not empty:\n{stderr}");
}

/// `output_dir` in tokit.ron is where the CLI writes when no --output is given.
#[test]
fn output_dir_of_tokit_ron_is_the_default_output() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("tokit.ron"),
        "(output_dir: Some(\"results\"))",
    )
    .unwrap();
    let model = fixture("transformer/llama_gqa_tied");
    let out = tokit_command()
        .current_dir(dir.path())
        .args(["forward", model.to_str().unwrap(), "--tokens", "1,2,3"])
        .output()
        .unwrap();
    ok(&out);
    assert!(dir.path().join("results/forward.safetensors").is_file());
    assert!(!dir.path().join("out").exists());
}
