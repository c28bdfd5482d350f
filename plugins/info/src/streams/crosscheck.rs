//! Cross-checks against pyinform and statsmodels on committed random sequences.
//!
//! `tools/crosscheck.py` drew the sequences in `tests/fixtures/crosscheck/inputs.json`
//! (seeded) and wrote what pyinform 0.2.0 (Inform 1.0.0) and statsmodels compute on them
//! into `expected.json` (information in bits). Here tokit must reproduce them: transfer
//! entropy, conditional TE, active information, entropy rate, block entropy, mutual
//! information and local values to 1e-9 bits; Granger F, χ², LR statistics and their
//! p-values to 1e-6. (Conditional TE over several trials is checked against a plain-Python
//! plug-in, not pyinform: the Inform 1.0.0 library in pyinform 0.2.0 misindexes the
//! condition of every trial but the first, ELIFE-ASU/Inform#78.)

use super::ais::active_info;
use super::entropy::{block_entropy, entropy_rate};
use super::granger::granger;
use super::measure::Options;
use super::mutual::mutual_info;
use super::series::{Reals, Symbols};
use super::transfer::{transfer_entropy, TeSpec};
use serde_json::Value;
use std::f64::consts::LN_2;

const INPUTS: &str = include_str!("../../../../tests/fixtures/crosscheck/inputs.json");
const EXPECTED: &str = include_str!("../../../../tests/fixtures/crosscheck/expected.json");

fn load() -> (Value, Value) {
    (
        serde_json::from_str(INPUTS).expect("inputs.json"),
        serde_json::from_str(EXPECTED).expect("expected.json"),
    )
}

fn check(what: &str, got_nats: f64, want_bits: &Value, tol: f64) {
    let want = want_bits
        .as_f64()
        .unwrap_or_else(|| panic!("{what}: no expected value"));
    let got = got_nats / LN_2;
    assert!(
        (got - want).abs() <= tol,
        "{what}: tokit {got:.15} bits, reference {want:.15} (diff {:.3e})",
        got - want
    );
}

#[test]
fn pyinform_stream_measures() {
    let (inputs, expected) = load();
    let o = Options {
        local: true,
        ..Options::default()
    };
    let mut checked = 0;
    for (name, case) in inputs["streams"].as_object().unwrap() {
        let sym = |k: &str| Symbols::from_json(k, &case[k]).unwrap();
        let (src, dst, cond) = (sym("source"), sym("target"), sym("condition"));
        let e = &expected["streams"][name];
        for k in 1..=3 {
            let spec = TeSpec::with_k(k);
            check(
                &format!("{name} te_k{k}"),
                transfer_entropy(&src, &dst, None, &spec, &o)
                    .unwrap()
                    .value(),
                &e[format!("te_k{k}")],
                1e-9,
            );
            check(
                &format!("{name} te_reverse_k{k}"),
                transfer_entropy(&dst, &src, None, &spec, &o)
                    .unwrap()
                    .value(),
                &e[format!("te_reverse_k{k}")],
                1e-9,
            );
            check(
                &format!("{name} ais_k{k}"),
                active_info(&dst, k, &o).unwrap().value(),
                &e[format!("ais_k{k}")],
                1e-9,
            );
            check(
                &format!("{name} entropy_rate_k{k}"),
                entropy_rate(&dst, k, &o).unwrap().value(),
                &e[format!("entropy_rate_k{k}")],
                1e-9,
            );
            check(
                &format!("{name} block_entropy_k{k}"),
                block_entropy(&dst, k, &o).unwrap().value(),
                &e[format!("block_entropy_k{k}")],
                1e-9,
            );
            checked += 5;
        }
        for k in 1..=2 {
            let c = transfer_entropy(&src, &dst, Some(&cond), &TeSpec::with_k(k), &o)
                .unwrap()
                .value();
            check(
                &format!("{name} cte_k{k}"),
                c,
                &e[format!("cte_k{k}")],
                1e-9,
            );
            checked += 1;
        }
        if let Some(mi) = e.get("mi") {
            check(
                &format!("{name} mi"),
                mutual_info(&src, &dst, 0, None, &o).unwrap().value(),
                mi,
                1e-9,
            );
            for (key, m) in [
                (
                    "local_te_k2",
                    transfer_entropy(&src, &dst, None, &TeSpec::with_k(2), &o).unwrap(),
                ),
                ("local_ais_k2", active_info(&dst, 2, &o).unwrap()),
            ] {
                let want = e[key].as_array().unwrap();
                assert!(want.len() >= 50);
                for (i, w) in want.iter().enumerate() {
                    check(&format!("{name} {key}[{i}]"), m.estimate.local[i], w, 1e-9);
                }
            }
            checked += 3;
        }
    }
    assert!(checked >= 4 * 17, "only {checked} values checked");
}

#[test]
fn statsmodels_granger() {
    let (inputs, expected) = load();
    let mut checked = 0;
    for (name, case) in inputs["real"].as_object().unwrap() {
        let src = Reals::from_json("source", &case["source"]).unwrap();
        let dst = Reals::from_json("target", &case["target"]).unwrap();
        for (lag, e) in expected["granger"][name].as_object().unwrap() {
            let p: usize = lag.parse().unwrap();
            let g = granger(&src, &dst, p).unwrap();
            let num = |k: &str| e[k].as_f64().unwrap();
            for (what, got, want) in [
                ("F", g.f_stat, num("f")),
                ("F p-value", g.f_p_value, num("f_p")),
                ("chi2", g.chi2_stat, num("chi2")),
                ("chi2 p-value", g.chi2_p_value, num("chi2_p")),
                ("LR", g.lr_stat, num("lr")),
                ("LR p-value", g.lr_p_value, num("lr_p")),
            ] {
                assert!(
                    (got - want).abs() <= 1e-6,
                    "{name} lag {p} {what}: tokit {got:e}, statsmodels {want:e}"
                );
                // Relative agreement too (tiny p-values included).
                assert!(
                    (got - want).abs() <= 1e-7 * want.abs().max(1e-300),
                    "{name} lag {p} {what}: tokit {got:e}, statsmodels {want:e}"
                );
                checked += 1;
            }
            assert_eq!(g.df_den as f64, num("df_den"));
            assert_eq!(g.df_num as f64, num("df_num"));
        }
    }
    assert_eq!(checked, 3 * 3 * 6);
}
