//! The plugin ABI's promises (docs/architecture.md, "The ABI").

use tokit_engine::{AnalyzeInput, ForwardSpec, LoadOptions};
use tokit_tests::*;

#[test]
fn plugin_built_in_another_target_dir_and_opt_level_loads_and_works() {
    ensure_built();
    let alt = tempfile::tempdir().unwrap();
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = std::process::Command::new(cargo)
        .current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
        .args([
            "build",
            "--quiet",
            "--release",
            "-p",
            "tokit-testplugin-toylm",
            "--target-dir",
        ])
        .arg(alt.path())
        .env("CARGO_PROFILE_RELEASE_OPT_LEVEL", "s")
        .status()
        .unwrap();
    assert!(status.success());
    let lib = alt
        .path()
        .join("release")
        .join(plugin_file("tokit_testplugin_toylm").file_name().unwrap());
    let mut engine = tokit_engine::Engine::new(tokit_engine::Config {
        no_default_plugins: true,
        ..Default::default()
    })
    .unwrap();
    let p = engine.add_plugin(&lib).unwrap();
    assert_eq!(p.abi, (1, 0));
    let dir = tempfile::tempdir().unwrap();
    write_toylm(dir.path(), 256, 8, serde_json::json!({}));
    let m = engine
        .load_model(dir.path().to_str().unwrap(), &LoadOptions::default())
        .unwrap();
    let out = m.forward(&[1, 2, 3], &ForwardSpec::default()).unwrap();
    assert_eq!(out[0]["logits"].shape(), &[3, 256]);
}

#[test]
fn plugin_of_another_abi_major_is_refused_naming_both_versions_and_the_file() {
    ensure_built();
    let file = plugin_file("tokit_testplugin_abi2");
    let err = match tokit_engine::plugin::Plugin::load(&file) {
        Ok(_) => panic!("an ABI 2 plugin was accepted"),
        Err(e) => format!("{e:#}"),
    };
    assert!(err.contains("ABI 2.0"), "{err}");
    assert!(err.contains("ABI 1.0"), "{err}");
    assert!(
        err.contains("libtokit_testplugin_abi2") || err.contains("tokit_testplugin_abi2"),
        "{err}"
    );
}

#[test]
fn panic_in_forward_is_an_error_poisons_the_plugin_and_others_keep_working() {
    let engine = engine();
    let dir = tempfile::tempdir().unwrap();
    write_toylm(
        dir.path(),
        256,
        8,
        serde_json::json!({ "panic_on_token": 13 }),
    );
    let m = engine
        .load_model(dir.path().to_str().unwrap(), &LoadOptions::default())
        .unwrap();
    assert!(m.forward(&[1, 2], &ForwardSpec::default()).is_ok());
    let err = format!(
        "{:#}",
        m.forward(&[1, 13], &ForwardSpec::default()).unwrap_err()
    );
    assert!(
        err.contains("panicked") && err.contains("told to panic on token 13"),
        "{err}"
    );
    let err = format!(
        "{:#}",
        m.forward(&[1, 2], &ForwardSpec::default()).unwrap_err()
    );
    assert!(err.contains("disabled"), "{err}");
    // Another plugin still serves.
    let logits = tokit_engine::Tensor::new(vec![1, 3], vec![0.0, 2f32.ln(), 4f32.ln()]).unwrap();
    let r = engine
        .analyze(
            "boltzmann",
            &AnalyzeInput {
                tensors: vec![("logits".into(), logits)],
                ..Default::default()
            },
        )
        .unwrap();
    assert!((r.scalars["entropy_mean"] - 0.9556999).abs() < 1e-6);
}

#[test]
fn hooks_capture_and_interventions_cross_the_abi() {
    let engine = engine();
    let dir = tempfile::tempdir().unwrap();
    write_toylm(dir.path(), 256, 8, serde_json::json!({}));
    let m = engine
        .load_model(dir.path().to_str().unwrap(), &LoadOptions::default())
        .unwrap();
    let spec = ForwardSpec {
        capture: vec!["hook_*".into()],
        ..Default::default()
    };
    let clean = m.forward(&[5, 6, 7], &spec).unwrap().remove(0);
    assert_eq!(clean["hook_embed"].shape(), &[3, 8]);
    assert_eq!(clean["hook_logits"].data(), clean["logits"].data());
    let zeroed = m
        .forward(
            &[5, 6, 7],
            &ForwardSpec {
                interventions: vec![tokit_engine::Intervention {
                    hook: "hook_embed".into(),
                    action: tokit_engine::Action::Zero,
                    variants: None,
                }],
                ..Default::default()
            },
        )
        .unwrap()
        .remove(0);
    assert!(zeroed["logits"].data().iter().all(|&x| x == 0.0));
    let replaced = m
        .forward(
            &[5, 6, 7],
            &ForwardSpec {
                interventions: vec![tokit_engine::Intervention {
                    hook: "hook_embed".into(),
                    action: tokit_engine::Action::Replace {
                        value: clean["hook_embed"].clone(),
                    },
                    variants: None,
                }],
                ..Default::default()
            },
        )
        .unwrap()
        .remove(0);
    assert_eq!(replaced["logits"].data(), clean["logits"].data());
    let err = format!(
        "{:#}",
        m.forward(
            &[1],
            &ForwardSpec {
                capture: vec!["blocks.*".into()],
                ..Default::default()
            }
        )
        .unwrap_err()
    );
    assert!(err.contains("matches no hook point"), "{err}");
}

#[test]
fn no_tensor_handles_leak_across_calls() {
    let engine = engine();
    let dir = tempfile::tempdir().unwrap();
    write_toylm(dir.path(), 256, 8, serde_json::json!({}));
    let m = engine
        .load_model(dir.path().to_str().unwrap(), &LoadOptions::default())
        .unwrap();
    let host = tokit_engine::plugin::host::host();
    m.forward(&[1, 2, 3], &ForwardSpec::default()).unwrap();
    let before = host.live_tensors();
    for _ in 0..10 {
        m.forward(
            &[1, 2, 3],
            &ForwardSpec {
                capture: vec!["*".into()],
                ..Default::default()
            },
        )
        .unwrap();
    }
    // Other tests run in parallel threads of this process; allow their handles, but
    // ten forwards must not leave ten sets behind.
    assert!(
        host.live_tensors() <= before + 4,
        "{} live handles after, {before} before",
        host.live_tensors()
    );
}
