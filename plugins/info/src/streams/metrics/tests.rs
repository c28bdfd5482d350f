//! The stream metrics end to end through [`StreamMetric::record`] (no host): the T10
//! values of `docs/measures.md` through the metric, locals averaging to the value, the
//! oracles, and bad input.

use super::*;
use serde_json::json;
use tokit_sdk::Params;

/// Every stream metric by name, as the host finds it in the plugin's table (checked
/// against it by `the_table_lists_every_stream_metric`).
type Run = fn(&MetricInput) -> Result<Record>;

const ALL: [(&str, Run); 11] = [
    (StreamEntropy::NAME, record::<StreamEntropy>),
    (BlockEntropy::NAME, record::<BlockEntropy>),
    (EntropyRate::NAME, record::<EntropyRate>),
    (ActiveInfo::NAME, record::<ActiveInfo>),
    (TransferEntropy::NAME, record::<TransferEntropy>),
    (MutualInfo::NAME, record::<MutualInfo>),
    (DirectedInfo::NAME, record::<DirectedInfo>),
    (Granger::NAME, record::<Granger>),
    (GaussianTe::NAME, record::<GaussianTe>),
    (ExactDirectedInfo::NAME, record::<ExactDirectedInfo>),
    (InfoFlow::NAME, record::<InfoFlow>),
];

fn record<M: StreamMetric>(input: &MetricInput) -> Result<Record> {
    M::record(input, M::Params::parse(&input.raw_params())?)
}

/// Parse the parameters and compute, as the host's call does.
fn run(input: &MetricInput) -> Result<Record> {
    let (_, f) = ALL
        .iter()
        .find(|(n, _)| *n == input.metric)
        .unwrap_or_else(|| panic!("no stream metric `{}`", input.metric));
    f(input)
}

#[test]
fn the_table_lists_every_stream_metric() {
    let table: Vec<&str> = crate::__TOKIT_REGISTRY
        .metrics
        .iter()
        .map(|m| m.name)
        .collect();
    for (name, _) in ALL {
        assert!(table.contains(&name), "{name}");
    }
}

pub(crate) fn input(metric: &str, params: Value) -> MetricInput {
    MetricInput {
        metric: metric.into(),
        params: params.as_object().cloned().unwrap_or_default(),
        tokens: Vec::new(),
        model: None,
        tensors: Vec::new(),
    }
}

fn close(a: f64, b: f64, tol: f64) {
    assert!((a - b).abs() <= tol, "{a} vs {b} (tol {tol})");
}

#[test]
fn specs_are_complete() {
    for (name, _) in ALL {
        let entry = crate::__TOKIT_REGISTRY
            .metrics
            .iter()
            .find(|m| m.name == name)
            .unwrap();
        let s = (entry.spec)();
        assert!(!s.params.is_empty(), "{}", s.name);
        assert!(!s.needs_model);
    }
}

#[test]
fn t10_through_the_metric_in_bits_with_locals() {
    let xs = json!([0, 0, 1, 1, 1, 1, 0, 0, 0]);
    let ys = json!([0, 1, 1, 1, 1, 0, 0, 0, 1]);
    for (src, dst, k, want) in [
        (&ys, &xs, 1, 0.8112781),
        (&ys, &xs, 2, 0.6792696),
        (&xs, &ys, 1, 0.2169172),
        (&xs, &ys, 2, 0.0),
    ] {
        let r = run(&input(
            "transfer_entropy",
            json!({ "source": src, "target": dst, "k": k, "unit": "bits", "permutations": 0 }),
        ))
        .unwrap();
        close(r.value, want, 5e-8);
        assert_eq!(r.unit, "bits");
        let (_, local, shape) = r.tensor("local").unwrap();
        assert_eq!(shape, &vec![9]);
        assert!(local[..k].iter().all(|v| v.is_nan()));
        let mean = local[k..].iter().map(|&v| v as f64).sum::<f64>() / (9 - k) as f64;
        close(mean, want, 1e-6);
        assert!(r.params.get("source").is_some_and(Value::is_string));
        assert_eq!(r.params["k"], json!(k));
    }
}

#[test]
fn every_stream_metric_runs_and_locals_average_to_the_value() {
    let mut rng = crate::streams::rng::Rng::new(5);
    let x: Vec<u32> = (0..400).map(|_| rng.below(3) as u32).collect();
    let y: Vec<u32> = (0..400)
        .map(|t| {
            if t == 0 {
                0
            } else {
                (x[t - 1] + u32::from(rng.uniform() < 0.2)) % 3
            }
        })
        .collect();
    let trials = json!([x[..200], x[200..]]);
    let trials_y = json!([y[..200], y[200..]]);
    for (metric, params) in [
        ("stream_entropy", json!({ "series": x })),
        ("block_entropy", json!({ "series": trials, "k": 2 })),
        (
            "entropy_rate",
            json!({ "series": x, "k": 2, "bias_correction": "miller_madow" }),
        ),
        (
            "active_info",
            json!({ "series": x, "k": 1, "permutations": 20 }),
        ),
        (
            "transfer_entropy",
            json!({ "source": trials, "target": trials_y, "k": 1, "surrogate": "block", "permutations": 20 }),
        ),
        (
            "transfer_entropy",
            json!({ "source": x, "target": y, "condition": x, "permutations": 20, "surrogate": "circular" }),
        ),
        (
            "mutual_info",
            json!({ "source": x, "target": y, "lag": 1, "permutations": 20 }),
        ),
        (
            "directed_info",
            json!({ "source": x, "target": y, "memory": 1, "delay": 1, "permutations": 20 }),
        ),
    ] {
        let r = run(&input(metric, params.clone())).unwrap_or_else(|e| panic!("{metric}: {e}"));
        let (_, local, _) = r.tensor("local").unwrap();
        let vals: Vec<f64> = local
            .iter()
            .filter(|v| !v.is_nan())
            .map(|&v| v as f64)
            .collect();
        assert_eq!(vals.len() as f64, r.scalars["samples"], "{metric}");
        close(vals.iter().sum::<f64>() / vals.len() as f64, r.value, 1e-6);
        if params.get("permutations").is_some() {
            let p = r.scalars["p_value"];
            assert!(p > 0.0 && p <= 1.0);
            close(
                r.scalars["effective"],
                r.value - r.scalars["surrogate_mean"],
                1e-12,
            );
            assert_eq!(r.tensor("surrogates").unwrap().2, vec![20]);
        }
    }
    // The coupled pair is detected; the condition on the source itself removes it.
    let te = run(&input(
        "transfer_entropy",
        json!({ "source": x, "target": y, "permutations": 50 }),
    ))
    .unwrap();
    assert!(
        te.value > 0.5 && te.scalars["p_value"] < 0.03,
        "{:?}",
        te.scalars
    );
    let cte = run(&input(
        "transfer_entropy",
        json!({ "source": x, "target": y, "condition": x, "permutations": 0 }),
    ))
    .unwrap();
    close(cte.value, 0.0, 1e-12);
}

#[test]
fn granger_and_oracles_through_the_metric() {
    let r = run(&input("exact_directed_info", json!({ "joint": [[[0, 0], [0, 0], 0.25], [[0, 0], [0, 1], 0.25], [[0, 1], [1, 0], 0.25], [[0, 1], [1, 1], 0.25]], "unit": "bits" }))).unwrap();
    // Pure feedback with n = 2: DI = 0, MI = 1 bit, feedback = 1 bit.
    close(r.value, 0.0, 1e-12);
    close(r.scalars["mutual_info"], 1.0, 1e-12);
    close(r.scalars["feedback"], 1.0, 1e-12);
    close(r.scalars["conservation_residual"], 0.0, 1e-12);
    let f = run(&input(
        "info_flow",
        json!({ "epsilon": 0.1, "n": 3, "unit": "bits" }),
    ))
    .unwrap();
    close(f.value, 0.8624177, 5e-8);
    assert_eq!(f.scalars["submartingale"], 1.0);
    assert_eq!(f.tensor("expected_lambda").unwrap().2, vec![3]);
    let g = run(&input("granger", json!({ "source": [0.1, -0.3, 0.5, 0.9, -1.2, 0.4, 0.0, 0.7, -0.6, 0.2, 1.1, -0.8], "target": [0.0, 0.2, -0.1, 0.6, 0.8, -1.0, 0.5, 0.1, 0.6, -0.4, 0.3, 1.0], "p": 2 }))).unwrap();
    close(g.value, g.scalars["geweke_f"], 0.0);
    close(g.scalars["te"], g.value / 2.0, 1e-15);
    assert_eq!(g.scalars["df_den"], 10.0 - 5.0);
}

#[test]
fn bad_input_errors_name_the_metric_and_parameter() {
    let e = run(&input(
        "transfer_entropy",
        json!({ "source": [0, 1], "target": [0, 1, 1] }),
    ))
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("transfer_entropy") && e.contains("same trial layout"),
        "{e}"
    );
    let e = run(&input("transfer_entropy", json!({ "target": [0, 1, 1] })))
        .unwrap_err()
        .to_string();
    assert!(e.contains("needs `source`"), "{e}");
    let e = run(&input(
        "stream_entropy",
        json!({ "series": [0, 1], "unit": "hartley" }),
    ))
    .unwrap_err()
    .to_string();
    assert!(e.contains("`unit`"), "{e}");
    let e = run(&input(
        "active_info",
        json!({ "series": [0, 1], "surrogate": "magic" }),
    ))
    .unwrap_err()
    .to_string();
    assert!(e.contains("surrogate"), "{e}");
    let e = run(&input("stream_entropy", json!({ "series": [0, -1] })))
        .unwrap_err()
        .to_string();
    assert!(e.contains("`series`") && e.contains("element 1"), "{e}");
    // A history longer than the series.
    let e = run(&input(
        "transfer_entropy",
        json!({ "source": [0, 1, 0], "target": [1, 0, 1], "k": 5 }),
    ))
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("transfer_entropy") && e.contains("longer than"),
        "{e}"
    );
    let e = run(&input("active_info", json!({ "series": [0, 1], "k": 4 })))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("active_info") && e.contains("longer than"),
        "{e}"
    );
    let e = run(&input("info_flow", json!({ "n": 40 })))
        .unwrap_err()
        .to_string();
    assert!(e.contains("too many"), "{e}");
}

/// A test split into surrogate ranges (`surrogate_range`, one shard each) gives the whole
/// test's surrogates in order and counts that sum to its p-value, on the dense tables and
/// on the sparse estimator (a source alphabet beyond the dense limit) alike.
#[test]
fn surrogate_ranges_split_the_test_exactly() {
    let mut rng = crate::streams::rng::Rng::new(9);
    let x: Vec<u32> = (0..300).map(|_| rng.below(2) as u32).collect();
    let y: Vec<u32> = (0..300)
        .map(|t| match t {
            0 => 0,
            _ if rng.uniform() < 0.15 => x[t - 1],
            _ => rng.below(2) as u32,
        })
        .collect();
    // The same stream over the symbols 0 and 99 999: too large an alphabet for dense tables.
    let wide: Vec<u32> = x.iter().map(|&v| v * 99_999).collect();
    for (metric, base) in [
        ("transfer_entropy", json!({ "source": x, "target": y })),
        ("transfer_entropy", json!({ "source": wide, "target": y })),
        ("mutual_info", json!({ "source": x, "target": y, "lag": 1 })),
        ("directed_info", json!({ "source": x, "target": y })),
        ("active_info", json!({ "series": y, "k": 2 })),
    ] {
        let with = |extra: Value| {
            let mut p = base.clone();
            p["permutations"] = json!(30);
            p["unit"] = json!("bits");
            for (k, v) in extra.as_object().unwrap() {
                p[k] = v.clone();
            }
            run(&input(metric, p))
        };
        let whole = with(json!({})).unwrap();
        let all = &whole.tensor("surrogates").unwrap().1;
        let (mut values, mut exceeding, mut n) = (Vec::new(), 0.0, 0.0);
        for r in [[0, 11], [11, 11], [11, 30]] {
            let part = with(json!({ "surrogate_range": r })).unwrap();
            assert_eq!(part.value.to_bits(), whole.value.to_bits(), "{metric}");
            // An empty range has no test and so no `surrogates`.
            let got = part.tensor("surrogates").map_or(&[][..], |t| &t.1[..]);
            values.extend_from_slice(got);
            exceeding += part.scalars["surrogates_exceeding"];
            n += part.scalars["surrogates_n"];
            assert_eq!(part.scalars["surrogates_n"], (r[1] - r[0]) as f64);
            let sum: f64 = got.iter().map(|&v| v as f64).sum();
            close(part.scalars["surrogates_sum"], sum, 1e-6);
        }
        assert_eq!(&values, all, "{metric} {base}");
        assert_eq!(
            (1.0 + exceeding) / (1.0 + n),
            whole.scalars["p_value"],
            "{metric}"
        );
        for bad in [json!([5, 31]), json!([6, 5]), json!([1.5, 3]), json!("all")] {
            let e = with(json!({ "surrogate_range": bad }))
                .unwrap_err()
                .to_string();
            assert!(e.contains("`surrogate_range`"), "{metric}: {e}");
        }
    }
}
