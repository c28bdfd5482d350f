//! End-to-end tests of every metric through [`crate::metrics::evaluate`] with JSON
//! parameters, as the engine would call them (minus the host tensors): `docs/measures.md`
//! T1–T7 and T12–T15, the shape of the result records, and bad input.

use crate::args::{Args, Record};
use crate::metrics::*;
use serde_json::{json, Value};
use tokit_sdk::{Metric, MetricSpec};

type Eval = fn(&Args) -> tokit_sdk::Result<Record>;

/// The metrics that need no host, by name (checked against the plugin's table by
/// `specs_are_consistent`).
const HOST_FREE: [(&str, Eval); 8] = [
    (RateDistortion::NAME, evaluate::<RateDistortion>),
    (
        RateDistortionClosedForm::NAME,
        evaluate::<RateDistortionClosedForm>,
    ),
    (ChannelCapacity::NAME, evaluate::<ChannelCapacity>),
    (
        DirectedRateDistortion::NAME,
        evaluate::<DirectedRateDistortion>,
    ),
    (RateReward::NAME, evaluate::<RateReward>),
    (RateRewardChannel::NAME, evaluate::<RateRewardChannel>),
    (BestOfNKl::NAME, evaluate::<BestOfNKl>),
    (RateRewardIs::NAME, evaluate::<RateRewardIs>),
];

/// `args.metric` computed from `args`, as the host would find it by name.
fn by_name(args: &Args) -> tokit_sdk::Result<Record> {
    match HOST_FREE.iter().find(|(n, _)| *n == args.metric) {
        Some((_, f)) => f(args),
        None => tokit_sdk::bail!("{}: no such rate metric", args.metric),
    }
}

fn run(metric: &str, params: Value) -> tokit_sdk::Result<Record> {
    let map = params.as_object().cloned().unwrap_or_default();
    by_name(&Args::new(metric, &map))
}

/// Every metric's spec, as the plugin describes them.
fn specs() -> Vec<MetricSpec> {
    crate::__TOKIT_REGISTRY
        .metrics
        .iter()
        .map(|m| (m.spec)())
        .collect()
}

fn ok(metric: &str, params: Value) -> Record {
    match run(metric, params) {
        Ok(r) => r,
        Err(e) => panic!("{metric}: {e}"),
    }
}

fn close(a: f64, b: f64, tol: f64) {
    assert!((a - b).abs() <= tol, "{a} vs {b} (tol {tol})");
}

/// No NaN or infinity in a record's value and scalars; every tensor matches its shape.
fn sane(r: &Record) {
    if let Some(v) = r.value {
        assert!(v.is_finite());
    }
    assert!(r.scalars.values().all(|v| v.is_finite()), "{:?}", r.scalars);
    for (name, d, shape) in &r.tensors {
        assert_eq!(d.len(), shape.iter().product::<usize>(), "{name}");
    }
}

#[test]
fn specs_are_consistent() {
    let specs = specs();
    assert_eq!(specs.len(), 9);
    for (name, _) in HOST_FREE {
        assert!(specs.iter().any(|s| s.name == name), "{name}");
    }
    for s in &specs {
        assert_eq!(s.needs_model, s.name == "token_semantic_rd");
        let mut names: Vec<&str> = s.params.iter().map(|p| p.name.as_str()).collect();
        names.sort();
        names.dedup();
        assert_eq!(
            names.len(),
            s.params.len(),
            "duplicate parameter in {}",
            s.name
        );
        if s.reconstruction {
            assert!(s.description.contains("reconstruction"), "{}", s.name);
        }
    }
    let recon: Vec<&str> = specs
        .iter()
        .filter(|s| s.reconstruction)
        .map(|s| s.name.as_str())
        .collect();
    assert_eq!(
        recon,
        [
            "directed_rate_distortion",
            "rate_reward",
            "rate_reward_channel",
            "rate_reward_is"
        ]
    );
}

#[test]
fn t1_t2_t3_rate_distortion_metric() {
    let hamming = json!([[0, 1], [1, 0]]);
    // T2: BA at β = ln 9 on the uniform bit.
    let r = ok(
        "rate_distortion",
        json!({ "source": [0.5, 0.5], "distortion": hamming, "beta": 9f64.ln(), "unit": "bits" }),
    );
    sane(&r);
    close(r.get("distortion"), 0.1, 1e-9);
    close(r.value.unwrap(), 0.531_004_4, 1e-6);
    assert_eq!(r.get("converged"), 1.0);
    assert_eq!(r.unit, "bits");
    // T1: R(0.1) by bisection, default Hamming distortion.
    let r = ok(
        "rate_distortion",
        json!({ "source": [0.5, 0.5], "target_distortion": 0.1, "unit": "bits" }),
    );
    close(r.value.unwrap(), 0.531_004_4, 1e-6);
    close(r.get("beta"), 9f64.ln(), 1e-6);
    // T3: Bernoulli(0.3).
    let r = ok(
        "rate_distortion",
        json!({ "source": [0.7, 0.3], "beta": 9f64.ln(), "unit": "bits" }),
    );
    close(r.value.unwrap(), 0.412_295_3, 1e-6);
    close(r.get("distortion"), 0.1, 1e-9);
    let ch = r.tensor_data("test_channel").unwrap();
    assert_eq!(ch.len(), 4);
}

#[test]
fn rate_distortion_curves_are_tables() {
    let r = ok(
        "rate_distortion",
        json!({ "source": [0.5, 0.3, 0.2], "num_points": 15 }),
    );
    sane(&r);
    let lens: Vec<usize> = r.tensors.iter().map(|t| t.1.len()).collect();
    assert!(lens.iter().all(|&l| l == 15), "{lens:?}");
    assert!(r.value.is_none());
    assert_eq!(r.get("all_converged"), 1.0);
    let d = r.tensor_data("distortion").unwrap();
    let rate = r.tensor_data("rate").unwrap();
    for i in 1..15 {
        assert!(d[i] <= d[i - 1] + 1e-6 && rate[i] >= rate[i - 1] - 1e-6);
    }
    let r = ok(
        "rate_distortion",
        json!({ "source": [0.5, 0.5], "distortions": [0.0, 0.1, 0.25, 0.5, 0.7], "unit": "bits" }),
    );
    sane(&r);
    let rate = r.tensor_data("rate").unwrap();
    close(rate[0] as f64, 1.0, 1e-6);
    close(rate[1] as f64, 0.531_004_4, 1e-6);
    close(rate[3] as f64, 0.0, 1e-9);
    close(rate[4] as f64, 0.0, 1e-9);
    assert!(r.tensor_data("beta").unwrap()[0].is_nan());
    let r = ok(
        "rate_distortion",
        json!({ "source": [0.5, 0.5], "betas": [0.5, 1.0, 2.0] }),
    );
    assert_eq!(r.tensor_data("rate").unwrap().len(), 3);
}

#[test]
fn t4_t5_closed_forms() {
    let r = ok(
        "rate_distortion_closed_form",
        json!({ "family": "gaussian", "variance": 1.0, "target_distortion": 0.25, "unit": "bits" }),
    );
    close(r.value.unwrap(), 1.0, 1e-12);
    let r = ok(
        "rate_distortion_closed_form",
        json!({ "family": "log_loss", "source": [0.25, 0.25, 0.25, 0.25], "target_distortion": 0.5, "unit": "bits" }),
    );
    close(r.value.unwrap(), 1.5, 1e-12);
    let r = ok(
        "rate_distortion_closed_form",
        json!({ "family": "binary", "p": 0.5, "target_distortion": 0.1, "unit": "bits" }),
    );
    close(r.value.unwrap(), 0.531_004_4, 1e-6);
    let r = ok(
        "rate_distortion_closed_form",
        json!({ "family": "binary", "p": 0.3, "distortions": [0.0, 0.1, 0.3, 0.5], "unit": "bits" }),
    );
    let rate = r.tensor_data("rate").unwrap();
    close(rate[1] as f64, 0.412_295_3, 1e-6);
    assert_eq!(rate[2], 0.0);
}

#[test]
fn channel_capacity_metric() {
    let r = ok(
        "channel_capacity",
        json!({ "channel": [[0.9, 0.1], [0.1, 0.9]], "unit": "bits" }),
    );
    sane(&r);
    close(r.value.unwrap(), 0.531_004_4, 1e-6);
    assert!(r.get("gap") < 1e-12 && r.get("converged") == 1.0);
    close(r.tensor_data("input_law").unwrap()[0] as f64, 0.5, 1e-6);
}

#[test]
fn t6_t7_directed_metric() {
    // T6: i.i.d. uniform bits, n = 2.
    let r = ok(
        "directed_rate_distortion",
        json!({ "n": 2, "beta": 9f64.ln(), "unit": "bits" }),
    );
    sane(&r);
    close(r.value.unwrap(), 0.531_004_4, 1e-6);
    close(r.get("distortion"), 0.1, 1e-9);
    assert!(r.get("check_abs_diff") < 1e-10);
    assert_eq!(r.params["source_kind"], json!("iid"));
    // T7: binary symmetric Markov, q = 0.2.
    for (beta, d, rate) in [
        (9f64.ln(), 0.1, 0.391_968_5),
        (19f64.ln(), 0.05, 0.574_567_1),
    ] {
        let r = ok(
            "directed_rate_distortion",
            json!({ "n": 2, "q": 0.2, "beta": beta, "unit": "bits" }),
        );
        sane(&r);
        close(r.value.unwrap(), rate, 1e-6);
        close(r.get("distortion"), d, 1e-8);
        close(r.get("directed_information"), r.value.unwrap(), 1e-10);
        assert_eq!(r.params["source_kind"], json!("markov"));
    }
    // The same source as an explicit transition matrix and as an explicit joint.
    let a = ok(
        "directed_rate_distortion",
        json!({ "n": 2, "transition": [[0.8, 0.2], [0.2, 0.8]], "beta": 9f64.ln(), "unit": "bits" }),
    );
    close(a.value.unwrap(), 0.391_968_5, 1e-6);
    let b = ok(
        "directed_rate_distortion",
        json!({ "n": 2, "joint": [0.4, 0.1, 0.1, 0.4], "beta": 9f64.ln(), "unit": "bits" }),
    );
    close(b.value.unwrap(), 0.391_968_5, 1e-6);
    // Non-increasing in n.
    let rates: Vec<f64> = (1..=3)
        .map(|n| {
            ok(
                "directed_rate_distortion",
                json!({ "n": n, "q": 0.2, "beta": 9f64.ln() }),
            )
            .value
            .unwrap()
        })
        .collect();
    assert!(rates[1] <= rates[0] && rates[2] <= rates[1], "{rates:?}");
    // A curve.
    let r = ok(
        "directed_rate_distortion",
        json!({ "n": 2, "q": 0.2, "betas": [1.0, 2.0, 3.0] }),
    );
    sane(&r);
    assert_eq!(r.tensor_data("rate").unwrap().len(), 3);
    assert!(r.get("max_check_abs_diff") < 1e-9);
}

#[test]
fn t12_t13_rate_reward_metric() {
    let r = ok(
        "rate_reward",
        json!({ "reference": [1.0/3.0, 1.0/3.0, 1.0/3.0], "reward": [0.0, 2f64.ln(), 4f64.ln()], "lambda": 1.0 }),
    );
    sane(&r);
    close(r.value.unwrap(), 0.142_912_4, 1e-6);
    close(r.get("reward"), 0.990_210_3, 1e-6);
    let r = ok(
        "rate_reward",
        json!({ "reference": [0.5, 0.25, 0.25], "reward": [1, 0, 2], "lambda": 0.5 }),
    );
    close(r.value.unwrap(), 0.060_599_7, 1e-6);
    close(r.get("reward"), 1.244_918_7, 1e-6);
    close(r.get("log_z").exp(), 1.753_931_1, 1e-6);
    let pol = r.tensor_data("policy").unwrap();
    close(pol[0] as f64, 0.470_007_4, 1e-6);
    // Inverse: the KL needed for a target reward.
    let r = ok(
        "rate_reward",
        json!({ "reference": [0.5, 0.25, 0.25], "reward": [1, 0, 2], "target_reward": 1.244_918_7 }),
    );
    close(r.get("lambda"), 0.5, 1e-6);
    let r = ok(
        "rate_reward",
        json!({ "reference": [0.5, 0.25, 0.25], "reward": [1, 0, 2], "target_reward": 2.0 }),
    );
    sane(&r);
    close(r.value.unwrap(), 4f64.ln(), 1e-12);
    // The default curve.
    let r = ok(
        "rate_reward",
        json!({ "reference": [[0.5, 0.25, 0.25], [0.2, 0.2, 0.6]], "reward": [[1, 0, 2], [0, 1, 0]] }),
    );
    sane(&r);
    assert_eq!(r.tensor_data("kl").unwrap().len(), 21);
}

#[test]
fn t14_rate_reward_channel_metric() {
    let r = ok(
        "rate_reward_channel",
        json!({ "source": [0.5, 0.5], "reward": [[1, 0], [0, 1]], "target_reward": 0.9, "unit": "bits" }),
    );
    sane(&r);
    close(r.value.unwrap(), 0.531_004_4, 1e-6);
    close(r.get("reward"), 0.9, 1e-9);
    let r = ok(
        "rate_reward_channel",
        json!({ "source": [0.5, 0.5], "reward": [[1, 0], [0, 1]], "lambda": 9f64.ln() }),
    );
    close(r.get("reward"), 0.9, 1e-9);
    let r = ok(
        "rate_reward_channel",
        json!({ "source": [0.5, 0.5], "reward": [[1, 0], [0, 1]], "lambdas": [1, 2, 3] }),
    );
    sane(&r);
    assert_eq!(r.tensor_data("reward").unwrap().len(), 3);
}

#[test]
fn t15_best_of_n_metric() {
    let r = ok("best_of_n_kl", json!({ "n": 4 }));
    close(r.value.unwrap(), 0.636_294_4, 1e-6);
    let r = ok(
        "best_of_n_kl",
        json!({ "n": 4, "reference": [0.25, 0.25, 0.25, 0.25], "reward": [1, 2, 2, 3] }),
    );
    sane(&r);
    assert!(r.value.unwrap() <= r.get("kl_continuous"));
    let r = ok(
        "best_of_n_kl",
        json!({ "ns": [1, 2, 4, 8], "reference": [0.5, 0.5], "reward": [0, 1] }),
    );
    let (e, c) = (
        r.tensor_data("kl_exact").unwrap(),
        r.tensor_data("kl_continuous").unwrap(),
    );
    assert!(e.iter().zip(c).all(|(a, b)| a <= b));
}

#[test]
fn rate_reward_is_metric() {
    let r = ok(
        "rate_reward_is",
        json!({ "rewards": [0.0, 2f64.ln(), 4f64.ln()], "lambda": 1.0 }),
    );
    sane(&r);
    close(r.value.unwrap(), 0.142_912_4, 1e-6);
    let r = ok(
        "rate_reward_is",
        json!({ "rewards": [0, 1, 2, 1, 0, 2, 1, 1], "lambdas": [0, 0.5, 1], "bootstrap": 50, "seed": 3 }),
    );
    sane(&r);
    assert_eq!(r.tensor_data("ess").unwrap().len(), 3);
    close(r.tensor_data("rate").unwrap()[0] as f64, 0.0, 1e-12);
    let r = ok(
        "rate_reward_is",
        json!({ "rewards": [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 10], "lambda": 5.0 }),
    );
    assert!(r
        .notes
        .iter()
        .any(|n| n.contains("heavy importance weights")));
}

#[test]
fn bad_input_is_an_error_not_nan() {
    let cases = [
        ("rate_distortion", json!({})),
        ("rate_distortion", json!({ "source": [0.5, 0.6] })),
        ("rate_distortion", json!({ "source": [1.5, -0.5] })),
        (
            "rate_distortion",
            json!({ "source": [0.5, 0.5], "distortion": [[0, 1], [1]] }),
        ),
        (
            "rate_distortion",
            json!({ "source": [0.5, 0.5], "distortion": [[0, 1, 2]] }),
        ),
        (
            "rate_distortion",
            json!({ "source": [0.5, 0.5], "distortion": [[0, -1], [1, 0]] }),
        ),
        (
            "rate_distortion",
            json!({ "source": [0.5, 0.5], "distortion": "euclid" }),
        ),
        (
            "rate_distortion",
            json!({ "source": [0.5, 0.5], "beta": 0 }),
        ),
        (
            "rate_distortion",
            json!({ "source": [0.5, 0.5], "beta": -2 }),
        ),
        (
            "rate_distortion",
            json!({ "source": [0.5, 0.5], "beta": 1, "betas": [1, 2] }),
        ),
        (
            "rate_distortion",
            json!({ "source": [0.5, 0.5], "target_distortion": -0.5 }),
        ),
        (
            "rate_distortion",
            json!({ "source": [0.5, 0.5], "beta": "one" }),
        ),
        (
            "rate_distortion",
            json!({ "source": [0.5, 0.5], "beta": 1, "unit": "hartleys" }),
        ),
        (
            "rate_distortion",
            json!({ "source": [0.5, 0.5], "beta": 1, "tol": 0 }),
        ),
        (
            "rate_distortion_closed_form",
            json!({ "family": "gaussian", "target_distortion": 0 }),
        ),
        (
            "rate_distortion_closed_form",
            json!({ "family": "cauchy", "target_distortion": 1 }),
        ),
        (
            "rate_distortion_closed_form",
            json!({ "family": "log_loss", "target_distortion": 1 }),
        ),
        (
            "channel_capacity",
            json!({ "channel": [[0.5, 0.6], [0.5, 0.5]] }),
        ),
        ("channel_capacity", json!({ "channel": [0.5, 0.5] })),
        ("directed_rate_distortion", json!({ "n": 0, "beta": 1 })),
        (
            "directed_rate_distortion",
            json!({ "n": 2, "q": 1.5, "beta": 1 }),
        ),
        (
            "directed_rate_distortion",
            json!({ "n": 2, "joint": [0.5, 0.5], "beta": 1 }),
        ),
        (
            "directed_rate_distortion",
            json!({ "n": 2, "beta": 1, "direction": "up" }),
        ),
        ("directed_rate_distortion", json!({ "n": 2, "beta": -1 })),
        ("directed_rate_distortion", json!({ "n": 30, "beta": 1 })),
        (
            "directed_rate_distortion",
            json!({ "n": 2, "source_kind": "gaussian", "beta": 1 }),
        ),
        (
            "directed_rate_distortion",
            json!({ "n": 2, "transition": [[0.5, 0.5]], "beta": 1 }),
        ),
        (
            "rate_reward",
            json!({ "reference": [0.5, 0.5], "reward": [1, 2, 3], "lambda": 1 }),
        ),
        (
            "rate_reward",
            json!({ "reference": [0.5, 0.6], "reward": [1, 2], "lambda": 1 }),
        ),
        (
            "rate_reward",
            json!({ "reference": [0.5, 0.5], "reward": [1, 2], "target_reward": 3 }),
        ),
        (
            "rate_reward",
            json!({ "reference": [0.5, 0.5], "reward": [1, 2], "lambda": 1e308, "unit": "bits" }),
        ),
        (
            "rate_reward_channel",
            json!({ "source": [0.5, 0.5], "reward": [[1, 0]], "lambda": 1 }),
        ),
        (
            "rate_reward_channel",
            json!({ "source": [0.5, 0.5], "reward": [[1, 0], [0, 1]], "target_reward": 2 }),
        ),
        ("best_of_n_kl", json!({ "n": 0 })),
        ("best_of_n_kl", json!({ "n": 4, "reference": [0.5, 0.5] })),
        ("best_of_n_kl", json!({ "ns": [1, 2.5] })),
        ("rate_reward_is", json!({ "rewards": [1.0] })),
        ("rate_reward_is", json!({})),
        ("no_such_metric", json!({})),
    ];
    for (metric, params) in cases {
        match run(metric, params.clone()) {
            Ok(r) => panic!(
                "{metric} {params}: expected an error, got {:?} {:?}",
                r.value, r.scalars
            ),
            Err(e) => {
                assert!(!e.message().is_empty());
                assert!(
                    e.message().contains(metric),
                    "error should name the metric: {e}"
                );
            }
        }
    }
}

#[test]
fn tensor_inputs_are_the_fallback() {
    // Laws as f32 tensors (rounded): accepted with the f32 tolerance.
    let map = json!({ "beta": 9f64.ln(), "unit": "bits" })
        .as_object()
        .cloned()
        .unwrap();
    let mut args = Args::new("rate_distortion", &map);
    let third = 1.0f32 / 3.0;
    args.tensors
        .push(("source".into(), vec![third; 3], vec![3]));
    let d: Vec<f32> = (0..9)
        .map(|k| if k / 3 == k % 3 { 0.0 } else { 1.0 })
        .collect();
    args.tensors.push(("distortion".into(), d, vec![3, 3]));
    let r = by_name(&args).unwrap();
    sane(&r);
    assert!(r.value.unwrap() > 0.0);
    // The JSON parameter wins over a tensor of the same name.
    let map = json!({ "source": [0.5, 0.5], "beta": 9f64.ln(), "unit": "bits" })
        .as_object()
        .cloned()
        .unwrap();
    let mut args = Args::new("rate_distortion", &map);
    args.tensors
        .push(("source".into(), vec![0.1, 0.9], vec![2]));
    close(by_name(&args).unwrap().value.unwrap(), 0.531_004_4, 1e-6);
}

/// dit's rate-distortion points (tools/crosscheck.py --dit): tokit's R(D) at each of dit's
/// distortions equals dit's rate: to 1e-6 bit for dit's scipy optimiser; dit's own BA stops
/// loosely (when the distortion is `np.isclose` to the last one, at most 100 steps), so
/// its points sit above the curve by up to 2e-3 bit. No dit point may lie below tokit's.
#[test]
fn rate_distortion_matches_dit() {
    let file: Value = serde_json::from_str(include_str!(
        "../../../tests/fixtures/crosscheck/rd_dit.json"
    ))
    .unwrap();
    let source = file["source"].clone();
    for case in file["cases"].as_array().unwrap() {
        let distortion = match case["distortion"].as_str().unwrap() {
            "hamming" => json!("hamming"),
            _ => file["matrix"].clone(),
        };
        let pts = case["points"].as_array().unwrap();
        let ds: Vec<f64> = pts.iter().map(|p| p[1].as_f64().unwrap()).collect();
        let r = ok(
            "rate_distortion",
            json!({ "source": source, "distortion": distortion, "distortions": ds, "unit": "bits" }),
        );
        let rates = r.tensor_data("rate").unwrap();
        let mut worst = 0.0f64;
        for (p, &ours) in pts.iter().zip(rates) {
            let theirs = p[2].as_f64().unwrap();
            worst = worst.max((ours as f64 - theirs).abs());
            assert!(
                theirs >= ours as f64 - 1e-6,
                "{case:?}: dit below the curve at {p:?}: {ours}"
            );
        }
        eprintln!(
            "dit {} {}: max |ΔR| = {worst:.2e} bit",
            case["distortion"], case["method"]
        );
        let tol = if case["method"] == "sp" { 1e-6 } else { 2e-3 };
        assert!(worst < tol, "{}: max |ΔR| {worst}", case["method"]);
    }
}

#[test]
fn rate_distortion_acceleration_is_honoured_or_refused() {
    // A 256 × 256 problem takes the dense kernel, where `acceleration` applies.
    let n = 256usize;
    let w: Vec<f64> = (0..n).map(|x| (x % 7 + 1) as f64).collect();
    let total: f64 = w.iter().sum();
    let p: Vec<f64> = w.iter().map(|v| v / total).collect();
    let d: Vec<Vec<f64>> = (0..n)
        .map(|x| {
            (0..n)
                .map(|y| ((x * 31 + y * 17) % 64 + x.abs_diff(y) % 64) as f64 / 64.0)
                .collect()
        })
        .collect();
    let call = |accel: &str| {
        run(
            "rate_distortion",
            json!({ "source": p, "distortion": d, "beta": 8.0, "tol": 1e-13, "restarts": 0,
                    "acceleration": accel }),
        )
    };
    let (fast, plain) = (call("squarem").unwrap(), call("none").unwrap());
    assert_eq!(fast.params["acceleration"], json!("squarem"));
    assert_eq!(plain.params["acceleration"], json!("none"));
    assert!(
        fast.get("iterations") < plain.get("iterations"),
        "{} vs {}",
        fast.get("iterations"),
        plain.get("iterations")
    );
    close(fast.get("rate"), plain.get("rate"), 1e-10);
    close(fast.get("distortion"), plain.get("distortion"), 1e-10);
    let e = call("anderson").unwrap_err().to_string();
    assert!(e.contains("acceleration") && e.contains("anderson"), "{e}");
}
