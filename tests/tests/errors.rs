//! Bad input gets a clear error naming the file, the field and the expectation.

use tokit_engine::script::ScriptHost;
use tokit_engine::LoadOptions;
use tokit_tests::*;

fn load_err(path: &std::path::Path) -> String {
    let engine = engine();
    match engine.load_model(path.to_str().unwrap(), &LoadOptions::default()) {
        Ok(_) => panic!("loading {} succeeded", path.display()),
        Err(e) => format!("{e:#}"),
    }
}

#[test]
fn missing_config_json() {
    let dir = tempfile::tempdir().unwrap();
    let err = load_err(dir.path());
    assert!(err.contains("config.json"), "{err}");
    assert!(err.contains(&dir.path().display().to_string()), "{err}");
}

#[test]
fn truncated_safetensors() {
    let dir = tempfile::tempdir().unwrap();
    write_toylm(dir.path(), 256, 8, serde_json::json!({}));
    let f = dir.path().join("model.safetensors");
    let bytes = std::fs::read(&f).unwrap();
    std::fs::write(&f, &bytes[..bytes.len() - 100]).unwrap();
    let err = load_err(dir.path());
    assert!(
        err.contains("model.safetensors") && err.contains("truncated"),
        "{err}"
    );
}

#[test]
fn tensor_shape_that_disagrees_with_the_config() {
    let dir = tempfile::tempdir().unwrap();
    write_toylm(dir.path(), 256, 8, serde_json::json!({}));
    let cfg = dir.path().join("config.json");
    let text = std::fs::read_to_string(&cfg)
        .unwrap()
        .replace("\"hidden_size\":8", "\"hidden_size\":16");
    std::fs::write(&cfg, text).unwrap();
    let err = load_err(dir.path());
    assert!(
        err.contains("embed.weight") && err.contains("[256, 8]") && err.contains("[256, 16]"),
        "{err}"
    );
}

#[test]
fn unknown_model_type() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("config.json"),
        r#"{"model_type": "perceiver-9000"}"#,
    )
    .unwrap();
    let err = load_err(dir.path());
    assert!(
        err.contains("unknown model_type `perceiver-9000`") && err.contains("config.json"),
        "{err}"
    );
    assert!(
        err.contains("toylm"),
        "lists the known architectures: {err}"
    );
}

#[test]
fn tokenizer_larger_than_the_embedding() {
    let dir = tempfile::tempdir().unwrap();
    write_toylm(dir.path(), 100, 4, serde_json::json!({}));
    let err = load_err(dir.path());
    assert!(err.contains("256") && err.contains("100"), "{err}");
}

#[test]
fn script_syntax_error_reports_file_line_col() {
    let mut host = ScriptHost::new(engine());
    let err = format!(
        "{:#}",
        host.eval_named("let a = 1;\nlet b = (2 + ;\n", "broken.rhai")
            .unwrap_err()
    );
    assert!(err.starts_with("broken.rhai:2:"), "{err}");
    assert!(err.contains("syntax error"), "{err}");
}

#[test]
fn script_runtime_error_reports_the_position_of_the_failing_call() {
    let mut host = ScriptHost::new(engine());
    let err = format!(
        "{:#}",
        host.eval_named("let x = 1;\n  load_model(\"/no/such/model\");", "s.rhai")
            .unwrap_err()
    );
    assert!(err.starts_with("s.rhai:2:3"), "{err}");
    assert!(err.contains("/no/such/model"), "{err}");
}

#[test]
fn endless_script_is_stopped_by_the_operation_limit() {
    ensure_built();
    let mut config = tokit_engine::Config::default();
    config.script.max_operations = 50_000;
    let mut host = ScriptHost::new(std::sync::Arc::new(
        tokit_engine::Engine::new(config).unwrap(),
    ));
    let err = format!(
        "{:#}",
        host.eval_named("let i = 0;\nloop { i += 1; }", "loop.rhai")
            .unwrap_err()
    );
    assert!(
        err.contains("loop.rhai:") && err.contains("50000 operations"),
        "{err}"
    );
}
