//! The `StreamInfo` metric type: the stream estimators and the exact toy oracles as tokit
//! metrics (no model needed).
//!
//! Inputs: symbol streams as parameters (`source: [0, 1, 1, …]`, or an array of arrays for
//! several trials) or as f32 tensor inputs of the same name (`[T]` or `[trials, T]`);
//! real-valued series (Granger) likewise. Every information value is computed in nats and
//! converted on output (`unit`). Local values come back as the tensor `local`, aligned
//! with the input's time axis (`[T]`, or `[trials, T]` for several trials), NaN at times
//! that have no sample (before the largest lag); their mean over the non-NaN entries is
//! the value. Permutation tests return the surrogate values as the tensor `surrogates`.
//!
//! [`run`] does everything but the host tensors, so it is testable without a host.

use super::ais::active_info;
use super::directed::directed_info;
use super::entropy::{block_entropy, block_entropy_difference, entropy_rate, stream_entropy};
use super::estimate::Bias;
use super::flow::{info_flow, FlowSpec};
use super::granger::granger;
use super::joint::{report, Joint};
use super::measure::{Measured, Options};
use super::mutual::mutual_info;
use super::series::{Reals, Symbols};
use super::significance::{Permutations, Surrogate};
use super::transfer::{transfer_entropy, TeSpec};
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;
use std::f64::consts::LN_2;
use tokit_sdk::{Error, Metric, MetricInput, MetricOutput, MetricSpec, ParamSpec, Result};

/// Information measures of symbol streams and real series, and exact toy oracles.
pub struct StreamInfo;

/// A metric result without host tensors.
#[derive(Debug, Default)]
pub struct Record {
    pub value: f64,
    pub unit: String,
    pub estimator: String,
    pub scalars: BTreeMap<String, f64>,
    pub tensors: Vec<(String, Vec<f32>, Vec<usize>)>,
    pub params: Map<String, Value>,
    pub notes: Vec<String>,
}

impl Record {
    fn scalar(&mut self, name: &str, v: f64) {
        self.scalars.insert(name.into(), v);
    }

    /// The named tensor (tests).
    pub fn tensor(&self, name: &str) -> Option<&(String, Vec<f32>, Vec<usize>)> {
        self.tensors.iter().find(|t| t.0 == name)
    }
}

const NAMES: [(&str, &str, bool); 11] = [
    ("stream_entropy", "entropy H(X) of a symbol stream (plug-in; trials pooled); local −ln p(x_t)", false),
    ("block_entropy", "block entropy H(X^k) of the length-k windows of a symbol stream; local −ln p(window)", false),
    ("entropy_rate", "entropy rate estimate h_k = H(X_t | k past symbols) = H(X^{k+1}) − H(X^k) on matched windows (pyinform's entropy_rate); scalar block_entropy_difference uses all windows of each block", false),
    ("active_info", "active information storage I(X_{t−k}^{t−1}; X_t) (pyinform's active_info), with a permutation test", false),
    ("transfer_entropy", "transfer entropy TE(source→target) = I(Y_t; X-window | Y-history [, condition-window]) (Schreiber; conditional TE with `condition`), plug-in with local values and a permutation test; defaults reproduce pyinform's transfer_entropy", false),
    ("mutual_info", "mutual information I(source_{t−lag}; target_t), or conditional MI given `condition`, plug-in with local values and a permutation test", false),
    ("directed_info", "directed information rate I(X^n → Y^n)/n between symbol streams (Massey), plug-in under a Markov-order-`memory` assumption; also the feedback term I(0·Y^{n−1} → X^n)/n", false),
    ("granger", "linear-Gaussian Granger causality source→target with p lags: value = Geweke F = ln(σ²_r/σ²_f); statsmodels' ssr F-test (F, p-value), χ² and LR tests; Gaussian TE = F/2", false),
    ("gaussian_te", "Gaussian transfer entropy source→target = Geweke F / 2 (Barnett et al. 2009), with local values and the Granger tests", false),
    ("exact_directed_info", "exact directed information I(X^{n−d} → Y^n) of an explicit joint pmf over (x^n, y^n), with MI, the feedback term and the Massey conservation-law residual (M2 oracle)", false),
    ("info_flow", "exact information flow E Λ_n = I(X; Y^n), n = 1..N, of a prompt X and outputs Y_i i.i.d. from a channel given X (default BSC(ε)), with per-step conditional expected increments (sub-martingale check); M5 oracle, a reconstruction of the paper (MEASURES.md M5 [P~])", true),
];

fn p(name: &str, kind: &str, default: Value, doc: &str) -> ParamSpec {
    ParamSpec::new(name, kind, default, doc)
}

fn common(out: &mut Vec<ParamSpec>, significance: bool) {
    out.push(p("unit", "string", json!("nats"), "`nats` or `bits`"));
    out.push(p("bias_correction", "string", json!("none"), "`none` (plug-in) or `miller_madow`: each entropy term + (occupied bins − 1)/(2N); local values shift alike"));
    out.push(p(
        "local",
        "bool",
        json!(true),
        "return the local (per-time-step) values as the tensor `local`",
    ));
    if significance {
        out.push(p(
            "permutations",
            "integer",
            json!(200),
            "number of permutation surrogates for the significance test (0: no test)",
        ));
        out.push(p("surrogate", "string", json!("shuffle"), "`shuffle` (random permutation of samples), `circular` (random rotation within each trial) or `block` (blocks in random order within each trial)"));
        out.push(p(
            "block_size",
            "integer",
            json!(0),
            "block length in samples for `surrogate: \"block\"` (0: a tenth of the trial)",
        ));
        out.push(p(
            "seed",
            "integer",
            json!(0),
            "seed of the surrogates (results are reproducible and thread-count independent)",
        ));
    }
}

const STREAM_DOC: &str = "array of non-negative integer symbols, or an array of arrays (trials, pooled); or a tensor input of that name ([T] or [trials, T])";

fn params_of(metric: &str) -> Vec<ParamSpec> {
    let mut v = Vec::new();
    let k = |default: usize, doc: &str| p("k", "integer", json!(default), doc);
    match metric {
        "stream_entropy" => {
            v.push(p("series", "array", Value::Null, STREAM_DOC));
            common(&mut v, false);
        }
        "block_entropy" | "entropy_rate" | "active_info" => {
            v.push(p("series", "array", Value::Null, STREAM_DOC));
            v.push(k(
                1,
                if metric == "block_entropy" {
                    "block length"
                } else {
                    "history length"
                },
            ));
            common(&mut v, metric == "active_info");
        }
        "transfer_entropy" => {
            v.push(p("source", "array", Value::Null, STREAM_DOC));
            v.push(p("target", "array", Value::Null, STREAM_DOC));
            v.push(p(
                "condition",
                "array",
                Value::Null,
                "optional third stream to condition on (conditional TE); same layout as the target",
            ));
            v.push(k(
                1,
                "target history length (0: none, TE becomes lagged MI)",
            ));
            v.push(p(
                "k_tau",
                "integer",
                json!(1),
                "spacing of the target history",
            ));
            v.push(p("l", "integer", json!(1), "source window length"));
            v.push(p(
                "l_tau",
                "integer",
                json!(1),
                "spacing of the source window",
            ));
            v.push(p("delay", "integer", json!(1), "source delay u: the window ends at x_{t−u} (1: previous symbol, pyinform's convention)"));
            v.push(p("cond_l", "integer", json!(1), "condition window length"));
            v.push(p(
                "cond_tau",
                "integer",
                json!(1),
                "spacing of the condition window",
            ));
            v.push(p(
                "cond_delay",
                "integer",
                json!(1),
                "condition delay (1: pyinform's convention)",
            ));
            common(&mut v, true);
        }
        "mutual_info" => {
            v.push(p("source", "array", Value::Null, STREAM_DOC));
            v.push(p("target", "array", Value::Null, STREAM_DOC));
            v.push(p(
                "condition",
                "array",
                Value::Null,
                "optional stream to condition on (conditional MI)",
            ));
            v.push(p(
                "lag",
                "integer",
                json!(0),
                "pairs source_{t−lag} with target_t",
            ));
            v.push(p(
                "cond_lag",
                "integer",
                json!(0),
                "pairs condition_{t−cond_lag} with target_t",
            ));
            common(&mut v, true);
        }
        "directed_info" => {
            v.push(p(
                "source",
                "array",
                Value::Null,
                "input stream X (see `series` forms)",
            ));
            v.push(p("target", "array", Value::Null, "output stream Y"));
            v.push(p(
                "memory",
                "integer",
                json!(1),
                "Markov order m assumed for p(y_t | past): m past symbols of each stream",
            ));
            v.push(p("delay", "integer", json!(0), "0: Massey's I(X^n → Y^n) (y_t sees x_t); 1: I(X^{n−1} → Y^n) (next-token situation)"));
            common(&mut v, true);
        }
        "granger" | "gaussian_te" => {
            v.push(p(
                "source",
                "array",
                Value::Null,
                "real series (array of numbers, or array of arrays for trials; or a tensor input)",
            ));
            v.push(p(
                "target",
                "array",
                Value::Null,
                "real series, same layout as `source`",
            ));
            v.push(p(
                "p",
                "integer",
                json!(1),
                "number of lags of each series in the regressions",
            ));
            v.push(p(
                "unit",
                "string",
                json!("nats"),
                "`nats` or `bits` (Geweke F and TE; test statistics are unitless)",
            ));
            v.push(p(
                "local",
                "bool",
                json!(true),
                "return the local Gaussian TE values as the tensor `local`",
            ));
        }
        "exact_directed_info" => {
            v.push(p("joint", "array", Value::Null, "joint pmf: array of {x: [..], y: [..], p} (or [x, y, p]) over equal-length sequences"));
            v.push(p(
                "delay",
                "integer",
                json!(0),
                "d in I(X^{n−d} → Y^n): 0 Massey, 1 next-token",
            ));
            v.push(p("unit", "string", json!("nats"), "`nats` or `bits`"));
        }
        "info_flow" => {
            v.push(p(
                "epsilon",
                "number",
                json!(0.1),
                "crossover probability of the default BSC channel",
            ));
            v.push(p("n", "integer", json!(10), "number of output steps N"));
            v.push(p(
                "prior",
                "array",
                json!([0.5, 0.5]),
                "prior over the prompt values",
            ));
            v.push(p(
                "channel",
                "array",
                Value::Null,
                "rows p(y | x), one per prompt value (default: BSC(epsilon))",
            ));
            v.push(p("unit", "string", json!("nats"), "`nats` or `bits`"));
        }
        _ => {}
    }
    v
}

impl Metric for StreamInfo {
    fn specs() -> Vec<MetricSpec> {
        NAMES
            .iter()
            .map(|(name, doc, reconstruction)| MetricSpec {
                name: name.to_string(),
                description: doc.to_string(),
                unit: "nats".into(),
                needs_model: false,
                reconstruction: *reconstruction,
                params: params_of(name),
            })
            .collect()
    }

    fn compute(input: &MetricInput) -> Result<MetricOutput> {
        let rec = run(input)?;
        let mut out = MetricOutput {
            value: Some(rec.value),
            unit: rec.unit,
            estimator: rec.estimator,
            scalars: rec.scalars,
            params: rec.params,
            notes: rec.notes,
            ..Default::default()
        };
        for (name, data, shape) in &rec.tensors {
            out = out.tensor(name, data, shape)?;
        }
        Ok(out)
    }
}

fn err(metric: &str) -> impl Fn(String) -> Error + '_ {
    move |e| Error::msg(format!("{metric}: {e}"))
}

type FromJson<T> = fn(&str, &Value) -> std::result::Result<T, String>;
type FromF32<T> = fn(&str, &[f32], &[usize]) -> std::result::Result<T, String>;

/// The stream `name`: a parameter or a tensor input (not both).
fn stream<T>(
    input: &MetricInput,
    name: &str,
    from_json: FromJson<T>,
    from_f32: FromF32<T>,
) -> Result<Option<T>> {
    let e = err(&input.metric);
    let param = input.params.get(name).filter(|v| !v.is_null());
    let tensor = input
        .tensors
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, t)| t);
    match (param, tensor) {
        (Some(_), Some(_)) => Err(e(format!(
            "`{name}` given both as a parameter and as a tensor input"
        ))),
        (Some(v), None) => from_json(name, v).map(Some).map_err(e),
        (None, Some(t)) => t
            .with_data(|d, s| from_f32(name, d, s))?
            .map(Some)
            .map_err(e),
        (None, None) => Ok(None),
    }
}

fn required<T>(v: Option<T>, metric: &str, name: &str) -> Result<T> {
    v.ok_or_else(|| {
        Error::msg(format!(
            "{metric}: needs `{name}` (a parameter or a tensor input)"
        ))
    })
}

fn describe(lens: &[usize]) -> Value {
    if lens.len() == 1 {
        json!(format!("{} values", lens[0]))
    } else {
        json!(format!(
            "{} trials, {} values",
            lens.len(),
            lens.iter().sum::<usize>()
        ))
    }
}

/// Compute `input.metric` (everything but host tensors).
pub fn run(input: &MetricInput) -> Result<Record> {
    let metric = input.metric.as_str();
    let e = err(metric);
    let unit = input.str_or("unit", "nats")?;
    let scale = match unit.as_str() {
        "nats" => 1.0,
        "bits" => 1.0 / LN_2,
        other => {
            return Err(e(format!(
                "parameter `unit`: expected \"nats\" or \"bits\", found \"{other}\""
            )))
        }
    };
    // Effective parameters: every declared one with its default filled in; arrays summarised.
    let mut params = Map::new();
    for spec in params_of(metric) {
        let v = input
            .params
            .get(&spec.name)
            .filter(|v| !v.is_null())
            .cloned()
            .unwrap_or(spec.default);
        if !(spec.kind == "array" && spec.name != "prior") {
            params.insert(spec.name, v);
        }
    }
    let mut rec = Record {
        unit: unit.clone(),
        ..Default::default()
    };
    let local = input.bool_or("local", true)?;
    match metric {
        "stream_entropy" | "block_entropy" | "entropy_rate" | "active_info"
        | "transfer_entropy" | "mutual_info" | "directed_info" => {
            let bias = Bias::parse(&input.str_or("bias_correction", "none")?).map_err(&e)?;
            let count = if matches!(
                metric,
                "active_info" | "transfer_entropy" | "mutual_info" | "directed_info"
            ) {
                input.usize_or("permutations", 200)?
            } else {
                0
            };
            let kind = Surrogate::parse(
                &input.str_or("surrogate", "shuffle")?,
                input.usize_or("block_size", 0)?,
            )
            .map_err(&e)?;
            let seed = input.usize_or("seed", 0)? as u64;
            let opts = Options {
                bias,
                permutations: Permutations { kind, count, seed },
                local,
            };
            let sym = |name: &str| stream(input, name, Symbols::from_json, Symbols::from_f32);
            let k = input.usize_or("k", 1)?;
            let m = match metric {
                "stream_entropy" | "block_entropy" | "entropy_rate" | "active_info" => {
                    let s = required(sym("series")?, metric, "series")?;
                    params.insert("series".into(), describe(&s.lens()));
                    match metric {
                        "stream_entropy" => stream_entropy(&s, &opts),
                        "block_entropy" => block_entropy(&s, k, &opts),
                        "entropy_rate" => {
                            let d = block_entropy_difference(&s, k, &opts).map_err(&e)?;
                            rec.scalar("block_entropy_difference", d * scale);
                            entropy_rate(&s, k, &opts)
                        }
                        _ => active_info(&s, k, &opts),
                    }
                    .map_err(&e)?
                }
                _ => {
                    let source = required(sym("source")?, metric, "source")?;
                    let target = required(sym("target")?, metric, "target")?;
                    params.insert("source".into(), describe(&source.lens()));
                    params.insert("target".into(), describe(&target.lens()));
                    let condition = if metric == "directed_info" {
                        None
                    } else {
                        sym("condition")?
                    };
                    if let Some(c) = &condition {
                        params.insert("condition".into(), describe(&c.lens()));
                    }
                    match metric {
                        "transfer_entropy" => {
                            let spec = TeSpec {
                                k,
                                k_tau: input.usize_or("k_tau", 1)?,
                                l: input.usize_or("l", 1)?,
                                l_tau: input.usize_or("l_tau", 1)?,
                                delay: input.usize_or("delay", 1)?,
                                cond_l: input.usize_or("cond_l", 1)?,
                                cond_tau: input.usize_or("cond_tau", 1)?,
                                cond_delay: input.usize_or("cond_delay", 1)?,
                            };
                            transfer_entropy(&source, &target, condition.as_ref(), &spec, &opts)
                                .map_err(&e)?
                        }
                        "mutual_info" => {
                            let cond_lag = input.usize_or("cond_lag", 0)?;
                            mutual_info(
                                &source,
                                &target,
                                input.usize_or("lag", 0)?,
                                condition.as_ref().map(|c| (c, cond_lag)),
                                &opts,
                            )
                            .map_err(&e)?
                        }
                        _ => {
                            let memory = input.usize_or("memory", 1)?;
                            let d = directed_info(
                                &source,
                                &target,
                                memory,
                                input.usize_or("delay", 0)?,
                                &opts,
                            )
                            .map_err(&e)?;
                            rec.scalar("feedback_rate", d.reverse.value * scale);
                            rec.scalar(
                                "length_mean",
                                target.lens().iter().sum::<usize>() as f64 / target.0.len() as f64,
                            );
                            rec.notes.push(format!(
                                "rate per symbol under a Markov-order-{memory} assumption on both p(y_t | y-past, x-past) and p(y_t | y-past); I(X^n → Y^n) ≈ n × value; feedback_rate = I(0·Y^(n−1) → X^n)/n"
                            ));
                            d.forward
                        }
                    }
                }
            };
            stream_record(&mut rec, &m, scale, bias);
        }
        "granger" | "gaussian_te" => {
            let real = |name: &str| stream(input, name, Reals::from_json, Reals::from_f32);
            let source = required(real("source")?, metric, "source")?;
            let target = required(real("target")?, metric, "target")?;
            params.insert("source".into(), describe(&source.lens()));
            params.insert("target".into(), describe(&target.lens()));
            let g = granger(&source, &target, input.usize_or("p", 1)?).map_err(&e)?;
            rec.value = if metric == "granger" {
                g.geweke
            } else {
                g.te()
            } * scale;
            rec.estimator =
                "OLS, linear-Gaussian (with constant, as statsmodels grangercausalitytests)".into();
            for (name, v) in [
                ("geweke_f", g.geweke * scale),
                ("te", g.te() * scale),
                ("te_se", g.te_se() * scale),
                ("f_stat", g.f_stat),
                ("p_value", g.f_p_value),
                ("df_num", g.df_num as f64),
                ("df_den", g.df_den as f64),
                ("chi2_stat", g.chi2_stat),
                ("chi2_p_value", g.chi2_p_value),
                ("lr_stat", g.lr_stat),
                ("lr_p_value", g.lr_p_value),
                ("rss_restricted", g.rss_restricted),
                ("rss_full", g.rss_full),
                ("n_obs", g.n_obs as f64),
            ] {
                rec.scalar(name, v);
            }
            if local {
                let (data, shape) = g.layout.to_time_axis(&g.local_te, scale);
                rec.tensors.push(("local".into(), data, shape));
            }
            rec.notes.push("p_value is the ssr F-test ((RSS_r − RSS_f)/p)/(RSS_f/(n − 2p − 1)); local values are local Gaussian TE (mean = te)".into());
        }
        "exact_directed_info" => {
            let joint = Joint::from_json(
                input
                    .params
                    .get("joint")
                    .filter(|v| !v.is_null())
                    .ok_or_else(|| e("needs `joint`".into()))?,
            )
            .map_err(&e)?;
            params.insert(
                "joint".into(),
                json!(format!(
                    "{} outcomes, n = {}",
                    joint.outcomes.len(),
                    joint.n
                )),
            );
            let r = report(&joint, input.usize_or("delay", 0)?);
            rec.value = r.directed * scale;
            rec.estimator = "exact (enumeration)".into();
            rec.scalar("mutual_info", r.mutual_info * scale);
            rec.scalar("directed_info_delay0", r.directed_delay0 * scale);
            rec.scalar("feedback", r.feedback * scale);
            rec.scalar("conservation_residual", r.conservation_residual * scale);
            rec.scalar("causal_conditioning", r.causal_conditioning * scale);
            let f = |v: &[f64]| v.iter().map(|x| (x * scale) as f32).collect::<Vec<f32>>();
            rec.tensors
                .push(("per_step".into(), f(&r.directed_terms), vec![joint.n]));
            rec.tensors.push((
                "feedback_per_step".into(),
                f(&r.feedback_terms),
                vec![joint.n],
            ));
            rec.notes.push("conservation law (Massey & Massey 2005): mutual_info = directed_info_delay0 + feedback; residual reported".into());
        }
        "info_flow" => {
            let steps = input.usize_or("n", 10)?;
            let eps = input.f64_or("epsilon", 0.1)?;
            let mut spec = FlowSpec::bsc(eps, steps);
            let probs = |v: &Value, what: &str| -> Result<Vec<f64>> {
                v.as_array()
                    .and_then(|a| a.iter().map(Value::as_f64).collect::<Option<Vec<f64>>>())
                    .ok_or_else(|| e(format!("`{what}` must be an array of numbers")))
            };
            if let Some(v) = input.params.get("prior").filter(|v| !v.is_null()) {
                spec.prior = probs(v, "prior")?;
            }
            if let Some(v) = input.params.get("channel").filter(|v| !v.is_null()) {
                let rows = v
                    .as_array()
                    .ok_or_else(|| e("`channel` must be an array of rows".into()))?;
                spec.channel = rows
                    .iter()
                    .map(|r| probs(r, "channel"))
                    .collect::<Result<_>>()?;
                params.insert("channel".into(), v.clone());
            } else if !(0.0..=1.0).contains(&eps) {
                return Err(e(format!("`epsilon` must lie in [0, 1], found {eps}")));
            }
            let f = info_flow(&spec).map_err(&e)?;
            rec.value = f.expected_lambda[steps - 1] * scale;
            rec.estimator = "exact (enumeration)".into();
            let min_inc = f
                .min_conditional_increment
                .iter()
                .copied()
                .fold(f64::INFINITY, f64::min);
            rec.scalar("h_x", f.h_x * scale);
            rec.scalar("min_conditional_increment", min_inc * scale);
            rec.scalar("submartingale", if min_inc >= -1e-12 { 1.0 } else { 0.0 });
            let t = |v: &[f64], s: f64| v.iter().map(|x| (x * s) as f32).collect::<Vec<f32>>();
            for (name, v, s) in [
                ("expected_lambda", &f.expected_lambda, scale),
                ("mutual_info", &f.mutual_info, scale),
                ("expected_increment", &f.expected_increment, scale),
                (
                    "min_conditional_increment",
                    &f.min_conditional_increment,
                    scale,
                ),
                ("p_negative_increment", &f.p_negative_increment, 1.0),
            ] {
                rec.tensors.push((name.into(), t(v, s), vec![steps]));
            }
            rec.notes.push("reconstruction (MEASURES.md M5 [P~]): Λ_n = Σ ln p(y_i|y^{i−1},x)/p(y_i|y^{i−1}) with the exact marginal; entry n−1 of each tensor is step n".into());
        }
        other => return Err(Error::msg(format!("info: unknown metric `{other}`"))),
    }
    rec.params = params;
    Ok(rec)
}

fn stream_record(rec: &mut Record, m: &Measured, scale: f64, bias: Bias) {
    let est = &m.estimate;
    rec.value = est.value * scale;
    rec.estimator = bias.name().into();
    rec.scalar("samples", est.samples as f64);
    rec.scalar("states", est.states as f64);
    rec.scalar("plugin", est.plugin * scale);
    rec.scalar("t0", m.layout.t0 as f64);
    if bias == Bias::MillerMadow {
        rec.scalar("miller_madow_correction", est.correction * scale);
    }
    if !est.local.is_empty() {
        rec.scalar("se", est.se() * scale);
        let (data, shape) = m.layout.to_time_axis(&est.local, scale);
        rec.tensors.push(("local".into(), data, shape));
        rec.notes
            .push("se treats samples as independent (optimistic under serial dependence)".into());
    }
    if let Some(s) = &m.significance {
        rec.scalar("p_value", s.p_value);
        rec.scalar("surrogate_mean", s.surrogate_mean * scale);
        rec.scalar("surrogate_std", s.surrogate_std * scale);
        rec.scalar("effective", s.effective * scale);
        rec.scalar("permutations", s.values.len() as f64);
        rec.tensors.push((
            "surrogates".into(),
            s.values.iter().map(|v| (v * scale) as f32).collect(),
            vec![s.values.len()],
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
    fn specs_are_complete_and_unique() {
        let specs = StreamInfo::specs();
        assert_eq!(specs.len(), NAMES.len());
        let token: Vec<String> = crate::TokenInfo::specs()
            .into_iter()
            .map(|s| s.name)
            .collect();
        for s in &specs {
            assert!(!s.params.is_empty(), "{}", s.name);
            assert!(
                !token.contains(&s.name),
                "{} clashes with TokenInfo",
                s.name
            );
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
}
