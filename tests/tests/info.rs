//! docs/measures.md M1 test values through the whole stack (Rhai → engine → info plugin).

use tokit_engine::script::ScriptHost;
use tokit_tests::*;

fn eval(src: &str) -> rhai::Dynamic {
    let mut host = ScriptHost::new(engine());
    host.eval_named(src, "test.rhai").unwrap()
}

#[test]
fn t17_three_level_and_uniform_logits() {
    let src = r#"
        let r = analyze("boltzmann", #{ inputs: #{ logits: tensor([
            [0.0, 0.6931471805599453, 1.3862943611198906],
            [2.0, 2.0, 2.0]
        ]) } });
        [r.tensors.free_energy.to_array(), r.tensors.internal_energy.to_array(),
         r.tensors.entropy.to_array(), r.tensors.heat_capacity.to_array()]
    "#;
    let a: Vec<Vec<f64>> = eval(src)
        .into_typed_array::<rhai::Dynamic>()
        .unwrap()
        .into_iter()
        .map(|row| row.into_typed_array::<f64>().unwrap())
        .collect();
    let (f, u, h, c) = (&a[0], &a[1], &a[2], &a[3]);
    // T17: logits (0, ln 2, ln 4).
    assert!(
        (f[0] + 1.9459101).abs() < 1e-6
            && (u[0] + 0.9902103).abs() < 1e-6
            && (h[0] - 0.9556999).abs() < 1e-6
    );
    // Uniform over 3: H = ln 3, C = 0.
    assert!((h[1] - 3f64.ln()).abs() < 1e-6 && c[1].abs() < 1e-6);
}

#[test]
fn t19_two_level_system() {
    let v = eval(r#"analyze("boltzmann", #{ inputs: #{ logits: tensor([[0.0, 1.0]]) } }).value"#);
    assert!((v.as_float().unwrap() - 0.1966119).abs() < 1e-6);
    let h = eval(
        r#"analyze("boltzmann", #{ inputs: #{ logits: tensor([[0.0, 1.0]]) } }).scalars.entropy_mean"#,
    );
    assert!((h.as_float().unwrap() - 0.5822031).abs() < 1e-6);
}

#[test]
fn unit_bits_and_bad_parameters() {
    let h = eval(
        r#"analyze("boltzmann", #{ inputs: #{ logits: tensor([[0.0, 0.0]]) }, unit: "bits" }).scalars.entropy_mean"#,
    );
    assert!((h.as_float().unwrap() - 1.0).abs() < 1e-9);
    let mut host = ScriptHost::new(engine());
    let err = format!(
        "{:#}",
        host.eval_named(
            r#"analyze("boltzmann", #{ inputs: #{ logits: tensor([[0.0]]) }, unit: "trits" })"#,
            "u.rhai"
        )
        .unwrap_err()
    );
    assert!(err.contains("unit") && err.contains("trits"), "{err}");
    let err = format!(
        "{:#}",
        host.eval_named(
            r#"analyze("boltzmann", #{ inputs: #{ logits: tensor([[0.0]]) }, temprature: 2 })"#,
            "u.rhai"
        )
        .unwrap_err()
    );
    assert!(err.contains("no parameter `temprature`"), "{err}");
    let err = format!(
        "{:#}",
        host.eval_named(r#"analyze("surprisal", #{ text: "x" })"#, "u.rhai")
            .unwrap_err()
    );
    assert!(err.contains("needs a model"), "{err}");
}
