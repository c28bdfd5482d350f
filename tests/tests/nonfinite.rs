//! Non-finite numbers are refused, not passed on: a forward whose logits hold NaN or an
//! infinity is an error naming the first hook point where they appeared (unless asked for),
//! and a NaN weight is refused at load unless the load allows it.

use tokit_engine::{ForwardSpec, Intervention, LoadOptions};
use tokit_sdk::InterventionAction;
use tokit_tests::*;

#[test]
fn nonfinite_logits_name_the_first_hook_where_they_appear() {
    let m = load_fixture("transformer/llama_gqa_tied");
    let tokens = reference("transformer/llama_gqa_tied").tokens;
    let spec = ForwardSpec {
        interventions: vec![Intervention {
            hook: "blocks.1.hook_mlp_out".into(),
            action: InterventionAction::Scale {
                factor: f32::INFINITY,
            },
            variants: None,
        }],
        ..Default::default()
    };
    let e = format!("{:#}", m.forward(&tokens, &spec).unwrap_err());
    assert!(
        e.contains("not finite") && e.contains("`blocks.1.hook_mlp_out`"),
        "{e}"
    );
    // Asked for, the same forward returns them.
    let out = m
        .forward(
            &tokens,
            &ForwardSpec {
                allow_nonfinite: true,
                ..spec
            },
        )
        .unwrap();
    assert!(out[0]["logits"].data().iter().any(|x| !x.is_finite()));
}

#[test]
fn a_nan_weight_is_refused_at_load_unless_allowed() {
    let dir = tempfile::tempdir().unwrap();
    let src = fixture("transformer/llama_gqa_tied");
    std::fs::copy(src.join("config.json"), dir.path().join("config.json")).unwrap();
    let w = tokit_model::Weights::open(&src).unwrap();
    let names = w.names();
    let tensors: Vec<(String, Vec<usize>, Vec<f32>)> = names
        .iter()
        .map(|n| {
            let (shape, mut data) = w.read_f32(n).unwrap();
            if n == "model.norm.weight" {
                data[3] = f32::NAN;
            }
            (n.clone(), shape, data)
        })
        .collect();
    let views: Vec<(&str, &[usize], &[f32])> = tensors
        .iter()
        .map(|(n, s, d)| (n.as_str(), s.as_slice(), d.as_slice()))
        .collect();
    tokit_model::save_f32(&dir.path().join("model.safetensors"), &views, None).unwrap();
    let e = engine();
    let path = dir.path().to_str().unwrap();
    let Err(err) = e.load_model(path, &LoadOptions::default()) else {
        panic!("a NaN weight loaded");
    };
    let err = format!("{err:#}");
    assert!(
        err.contains("`model.norm.weight`") && err.contains("non-finite"),
        "{err}"
    );
    let allowed = LoadOptions {
        allow_nonfinite: true,
        ..Default::default()
    };
    let m = e.load_model(path, &allowed).unwrap();
    let out = m.forward(&[1, 2, 3], &ForwardSpec::default()).unwrap();
    assert!(out[0]["logits"].data().iter().any(|x| x.is_nan()));
}
