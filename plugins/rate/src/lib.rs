//! The `rate` metric plugin: rate functions of MEASURES.md M3 (rate–distortion, directed
//! rate–distortion with feed-forward) and M4 (rate–reward), plus channel capacity — the
//! exact math core for small alphabets (issue 7). Model-based estimators come later.
//!
//! Metrics (all information quantities in nats unless `unit: "bits"`):
//!
//! * `rate_distortion` — classic Blahut–Arimoto: a point at slope `beta`, a curve over
//!   `betas` (or a default grid), or `R(D)` at `target_distortion` / `distortions`;
//! * `rate_distortion_closed_form` — binary/Hamming, Gaussian/squared error, log-loss;
//! * `channel_capacity` — dual Blahut–Arimoto with the optimal input law;
//! * `directed_rate_distortion` — Naiss–Permuter directed BA on `n`-blocks (reconstruction);
//! * `rate_reward` — the exact KL-tilted optimum `π_λ ∝ π_ref e^{λ r}` (reconstruction);
//! * `rate_reward_channel` — `R(ρ) = min I(X;Y)` s.t. `E r ≥ ρ` by BA (reconstruction);
//! * `best_of_n_kl` — best-of-n KL, continuous and exact with ties;
//! * `rate_reward_is` — the frontier from reward samples by self-normalised importance
//!   sampling, with effective sample size and standard errors (reconstruction).
//!
//! * `token_semantic_rd` — on a model: R(D) of the top-k next-token law with distortion
//!   1 − cos between embedding (or unembedding) rows, and the corpus operating point.
//!
//! Inputs that are laws or matrices are JSON parameters (f64) or, failing that, input
//! tensors of the same name (f32). All math is f64; result tensors are f32.

pub mod args;
pub mod ba_dense;
pub mod blahut_arimoto;
pub mod capacity;
pub mod directed;
pub mod reward;
pub mod semantic;
pub mod util;

use args::{Args, Record};
use blahut_arimoto::{BaOptions, RdPoint, RdProblem};
use directed::{DirectedOptions, DirectedProblem, Direction};
use serde_json::{json, Value};
use tokit_sdk::{bail, Error, Metric, MetricInput, MetricOutput, MetricSpec, ParamSpec, Result};
use util::{hamming, Unit};

/// The plugin's metrics.
pub struct RateMetrics;

struct Def {
    name: &'static str,
    unit: &'static str,
    reconstruction: bool,
    doc: &'static str,
    params: fn() -> Vec<ParamSpec>,
}

fn p(name: &str, kind: &str, default: Value, doc: &str) -> ParamSpec {
    ParamSpec::new(name, kind, default, doc)
}

fn ba_params(max_iter: usize, restarts: usize) -> Vec<ParamSpec> {
    vec![
        p(
            "tol",
            "number",
            json!(1e-12),
            "stop when rate and distortion both change by less than this (f64)",
        ),
        p(
            "max_iter",
            "integer",
            json!(max_iter),
            "iteration cap per run (the result says whether it converged)",
        ),
        p(
            "restarts",
            "integer",
            json!(restarts),
            "random-simplex restarts besides the uniform start (deterministic)",
        ),
        p("seed", "integer", json!(0), "seed of the restarts"),
        unit_param(),
    ]
}

fn unit_param() -> ParamSpec {
    p(
        "unit",
        "string",
        json!("nats"),
        "`nats` or `bits` for information quantities",
    )
}

fn rd_params() -> Vec<ParamSpec> {
    let mut v = vec![
        p("source", "array", Value::Null, "source law p(x) (or an input tensor `source`)"),
        p(
            "distortion",
            "array",
            json!("hamming"),
            "distortion matrix d(x, y), one row per source letter (or a tensor `distortion`); `hamming` = square Hamming",
        ),
        p("beta", "number", Value::Null, "slope β > 0 (nats per unit distortion): one point"),
        p("betas", "array", Value::Null, "slopes: the curve at each"),
        p("target_distortion", "number", Value::Null, "R(D) at this distortion (bisection on β)"),
        p("distortions", "array", Value::Null, "R(D) at each of these distortions"),
        p("num_points", "integer", json!(41), "size of the default β grid (geometric, 0.01…100 / spread) when no slope or target is given"),
    ];
    v.extend(ba_params(100_000, 3));
    v
}

fn closed_params() -> Vec<ParamSpec> {
    vec![
        p("family", "string", json!("binary"), "`binary` (Bernoulli p, Hamming), `gaussian` (variance, squared error) or `log_loss` (source law or entropy)"),
        p("p", "number", json!(0.5), "binary: P(X = 1)"),
        p("variance", "number", json!(1.0), "gaussian: σ²"),
        p("source", "array", Value::Null, "log_loss: the source law (its entropy is used)"),
        p("entropy", "number", Value::Null, "log_loss: H(X) in `unit` (instead of `source`)"),
        p("target_distortion", "number", Value::Null, "R(D) at this D (log_loss: D in `unit`)"),
        p("distortions", "array", Value::Null, "R(D) at each of these D"),
        unit_param(),
    ]
}

fn capacity_params() -> Vec<ParamSpec> {
    vec![
        p(
            "channel",
            "array",
            Value::Null,
            "channel matrix W(y|x), one row per input letter (or a tensor `channel`)",
        ),
        p(
            "tol",
            "number",
            json!(1e-12),
            "stop when the certified gap max_x D_x − I(p) is below this",
        ),
        p("max_iter", "integer", json!(100_000), "iteration cap"),
        unit_param(),
    ]
}

fn directed_params() -> Vec<ParamSpec> {
    let mut v = vec![
        p("n", "integer", json!(2), "block length n (cost |X|^n |Y|^n per iteration)"),
        p("source_kind", "string", Value::Null, "`iid`, `markov` or `joint` (default: inferred from the parameters given)"),
        p("source", "array", Value::Null, "iid: the letter law (default uniform over `x_alphabet`)"),
        p("x_alphabet", "integer", json!(2), "|X| when no law fixes it"),
        p("q", "number", Value::Null, "markov: flip probability of a binary symmetric Markov source (uniform start)"),
        p("transition", "array", Value::Null, "markov: transition matrix (row = current letter)"),
        p("initial", "array", Value::Null, "markov: law of the first letter (default uniform)"),
        p("joint", "array", Value::Null, "joint: a pmf over x^n (length |X|^n, first letter most significant)"),
        p("distortion", "array", json!("hamming"), "per-letter distortion d(x, y); the block distortion is the sum, reported per letter"),
        p("beta", "number", Value::Null, "per-letter slope β > 0: one point"),
        p("betas", "array", Value::Null, "slopes: the curve at each"),
        p("num_points", "integer", json!(21), "size of the default β grid when neither `beta` nor `betas` is given"),
        p("direction", "string", json!("y_to_x"), "`y_to_x`: I(Y^n → X^n), feed-forward rate–distortion; `x_to_y`: I(X^n → Y^n)"),
        p("delay", "integer", json!(1), "delay k of the causal conditioning: y_i sees x^{i−k} (1 = next-token prediction; ≥ n = block mutual information)"),
    ];
    v.extend(ba_params(100_000, 1));
    v
}

fn reward_params() -> Vec<ParamSpec> {
    vec![
        p("reference", "array", Value::Null, "reference policy π_ref: a law over outcomes, or a matrix with one row per context (or a tensor)"),
        p("reward", "array", Value::Null, "rewards r, same shape as `reference`"),
        p("context", "array", Value::Null, "law of the contexts (rows); default uniform"),
        p("lambda", "number", Value::Null, "inverse temperature λ of the tilt (λ = 1/β in DPO notation)"),
        p("lambdas", "array", Value::Null, "several λ: the frontier curve"),
        p("target_reward", "number", Value::Null, "R_ref(ρ) at this expected reward (bisection on λ)"),
        p("num_points", "integer", json!(21), "size of the default λ grid (0…10 / reward spread)"),
        unit_param(),
    ]
}

fn reward_channel_params() -> Vec<ParamSpec> {
    let mut v = vec![
        p(
            "source",
            "array",
            Value::Null,
            "law of the inputs X (prompts)",
        ),
        p(
            "reward",
            "array",
            Value::Null,
            "reward matrix r(x, y), one row per input",
        ),
        p(
            "lambda",
            "number",
            Value::Null,
            "slope λ > 0 (BA with distortion max r − r)",
        ),
        p("lambdas", "array", Value::Null, "several slopes: the curve"),
        p(
            "target_reward",
            "number",
            Value::Null,
            "R(ρ) at this expected reward",
        ),
        p(
            "num_points",
            "integer",
            json!(41),
            "size of the default λ grid",
        ),
    ];
    v.extend(ba_params(100_000, 3));
    v
}

fn bon_params() -> Vec<ParamSpec> {
    vec![
        p(
            "n",
            "integer",
            json!(4),
            "number of samples the best is chosen from",
        ),
        p("ns", "array", Value::Null, "several n: a table"),
        p(
            "reference",
            "array",
            Value::Null,
            "finite outcome set: reference law (with `reward`, gives the exact KL)",
        ),
        p(
            "reward",
            "array",
            Value::Null,
            "finite outcome set: rewards (ties allowed)",
        ),
        unit_param(),
    ]
}

fn is_params() -> Vec<ParamSpec> {
    vec![
        p(
            "rewards",
            "array",
            Value::Null,
            "rewards of N samples drawn from the reference (or a tensor `rewards`)",
        ),
        p("lambda", "number", json!(1.0), "tilt λ (weights e^{λ r})"),
        p(
            "lambdas",
            "array",
            Value::Null,
            "several λ: the estimated frontier",
        ),
        p(
            "bootstrap",
            "integer",
            json!(0),
            "bootstrap resamples for standard errors (0 = delta method only)",
        ),
        p("seed", "integer", json!(0), "bootstrap seed"),
        unit_param(),
    ]
}

const DEFS: [Def; 9] = [
    Def {
        name: "rate_distortion",
        unit: "nats",
        reconstruction: false,
        doc: "rate–distortion function R(D) of a discrete source by log-domain Blahut–Arimoto (M3): a point at slope β, a curve over β, or R at a target distortion; value = rate",
        params: rd_params,
    },
    Def {
        name: "rate_distortion_closed_form",
        unit: "nats",
        reconstruction: false,
        doc: "closed-form R(D): binary source with Hamming distortion h(p) − h(D), Gaussian ½ ln(σ²/D), log-loss max(H − D, 0) (M3 test oracles)",
        params: closed_params,
    },
    Def {
        name: "channel_capacity",
        unit: "nats",
        reconstruction: false,
        doc: "capacity of a discrete memoryless channel by the dual Blahut–Arimoto iteration, with the optimal input law and certified bounds; value = capacity",
        params: capacity_params,
    },
    Def {
        name: "directed_rate_distortion",
        unit: "nats",
        reconstruction: true,
        doc: "reconstruction of the paper's directed rate–distortion function (M3): (1/n) min I(Y^n → X^n) + β E d by the directed Blahut–Arimoto of Naiss & Permuter on n-blocks of an i.i.d., Markov or explicit source; direction and delay are parameters; value = per-letter rate",
        params: directed_params,
    },
    Def {
        name: "rate_reward",
        unit: "nats",
        reconstruction: true,
        doc: "reconstruction of the paper's rate–reward function (M4), KL-to-reference form: exact tilt π_λ ∝ π_ref e^{λ r}, R_ref = λρ − E ln Z; value = KL",
        params: reward_params,
    },
    Def {
        name: "rate_reward_channel",
        unit: "nats",
        reconstruction: true,
        doc: "reconstruction of the paper's rate–reward function (M4), channel form R(ρ) = min I(X;Y) s.t. E r ≥ ρ by Blahut–Arimoto with distortion max r − r; value = rate",
        params: reward_channel_params,
    },
    Def {
        name: "best_of_n_kl",
        unit: "nats",
        reconstruction: false,
        doc: "KL of the best-of-n policy to the reference: ln n − (n−1)/n for a continuous reward, exact law and KL for a finite outcome set with ties (Beirami et al.); value = KL",
        params: bon_params,
    },
    Def {
        name: "rate_reward_is",
        unit: "nats",
        reconstruction: true,
        doc: "reconstruction (M4): the KL-tilt frontier (ρ, R) estimated from reward samples of the reference by self-normalised importance sampling, with effective sample size and standard errors; value = rate",
        params: is_params,
    },
    Def {
        name: "token_semantic_rd",
        unit: "nats",
        reconstruction: false,
        doc: "token-semantic R(D) on a model: the next-token law at `position` over its top_k tokens, distortion 1 − cos between the tokens' embedding rows (or an `unembedding` tensor [V, d] with rows: \"unembedding\"), the Blahut–Arimoto curve; and the corpus operating point D = cross-entropy, R = H(mean law) − cross-entropy; value = H of the top-k law",
        params: semantic_params,
    },
];

fn semantic_params() -> Vec<ParamSpec> {
    let mut v = vec![
        p(
            "top_k",
            "integer",
            json!(16),
            "tokens of the next-token law kept (renormalised)",
        ),
        p(
            "position",
            "integer",
            Value::Null,
            "row whose law is the source (default: the last, predicting the token after the text)",
        ),
        p(
            "rows",
            "string",
            json!("embedding"),
            "`embedding` (hook_embed) or `unembedding` (input tensor `unembedding` [V, d])",
        ),
        p("num_points", "integer", json!(31), "points of the β grid"),
    ];
    v.extend(ba_params(100_000, 1));
    v
}

impl Metric for RateMetrics {
    fn specs() -> Vec<MetricSpec> {
        DEFS.iter()
            .map(|d| MetricSpec {
                name: d.name.to_string(),
                description: d.doc.to_string(),
                unit: d.unit.to_string(),
                needs_model: d.name == "token_semantic_rd",
                reconstruction: d.reconstruction,
                params: (d.params)(),
            })
            .collect()
    }

    fn compute(input: &MetricInput) -> Result<MetricOutput> {
        let mut args = Args::new(&input.metric, &input.params);
        for (name, t) in &input.tensors {
            let (data, shape) = t.with_data(|d, s| {
                (
                    d.iter().map(|&v| v as f64).collect::<Vec<f64>>(),
                    s.to_vec(),
                )
            })?;
            args.tensors.push((name.clone(), data, shape));
        }
        let rec = if input.metric == "token_semantic_rd" {
            semantic::compute(input, &args)?
        } else {
            evaluate(&args)?
        };
        let mut out = MetricOutput {
            value: rec.value,
            unit: rec.unit,
            estimator: rec.estimator,
            scalars: rec.scalars,
            params: rec.params,
            notes: rec.notes,
            plot: rec.plot,
            ..Default::default()
        };
        for (name, data, shape) in &rec.tensors {
            out = out.tensor(name, data, shape)?;
        }
        Ok(out)
    }
}

/// Compute `args.metric` into a plain record (what `compute` sends through the ABI).
pub fn evaluate(args: &Args) -> Result<Record> {
    let r = match args.metric {
        "rate_distortion" => rate_distortion(args),
        "rate_distortion_closed_form" => closed_form(args),
        "channel_capacity" => channel_capacity(args),
        "directed_rate_distortion" => directed_rd(args),
        "rate_reward" => rate_reward(args),
        "rate_reward_channel" => rate_reward_channel(args),
        "best_of_n_kl" => best_of_n(args),
        "rate_reward_is" => rate_reward_is(args),
        other => bail!("rate: unknown metric `{other}`"),
    };
    r.map_err(|e| {
        if e.message().starts_with(args.metric) {
            e
        } else {
            e.context(args.metric)
        }
    })
}

/// A record with the unit and the effective parameters filled in.
pub(crate) fn record(args: &Args, estimator: &str) -> Result<(Record, Unit)> {
    let unit = Unit::parse(&args.str_or("unit", "nats")?)?;
    let mut rec = Record {
        unit: unit.name().into(),
        estimator: estimator.into(),
        ..Default::default()
    };
    rec.params = args.params.clone();
    rec.params.insert("unit".into(), json!(unit.name()));
    Ok((rec, unit))
}

pub(crate) fn ba_options(
    args: &Args,
    rec: &mut Record,
    max_iter: usize,
    restarts: usize,
) -> Result<BaOptions> {
    let o = BaOptions {
        tol: args.f64_or("tol", 1e-12)?,
        max_iter: args.usize_or("max_iter", max_iter)?,
        restarts: args.usize_or("restarts", restarts)?,
        seed: args.usize_or("seed", 0)? as u64,
    };
    o.check()?;
    rec.params.insert("tol".into(), json!(o.tol));
    rec.params.insert("max_iter".into(), json!(o.max_iter));
    rec.params.insert("restarts".into(), json!(o.restarts));
    rec.params.insert("seed".into(), json!(o.seed));
    Ok(o)
}

/// The distortion matrix for `nx` source letters: a matrix parameter/tensor or `"hamming"`.
fn distortion_matrix(args: &Args, name: &str, nx: usize) -> Result<(Vec<f64>, usize)> {
    if let Some(Value::String(s)) = args.params.get(name) {
        return match s.as_str() {
            "hamming" => Ok((hamming(nx), nx)),
            other => Err(args.err(
                name,
                format!("expected a matrix or \"hamming\", found \"{other}\""),
            )),
        };
    }
    match args.matrix(name)? {
        None => Ok((hamming(nx), nx)),
        Some((a, r, c)) => {
            if r != nx {
                return Err(args.err(
                    name,
                    format!("expected {nx} rows (one per source letter), found {r} × {c}"),
                ));
            }
            Ok((a.data, c))
        }
    }
}

/// A list of finite numbers from a parameter/tensor.
fn list(args: &Args, name: &str) -> Result<Vec<f64>> {
    let a = args
        .vector(name)?
        .ok_or_else(|| args.err(name, "missing"))?;
    if a.data.is_empty() {
        return Err(args.err(name, "expected at least one value"));
    }
    if let Some(v) = a.data.iter().find(|v| !v.is_finite()) {
        return Err(args.err(name, format!("{v} is not a finite number")));
    }
    Ok(a.data)
}

/// One BA point: value, scalars, test channel and output law.
fn rd_point_record(rec: &mut Record, pt: &RdPoint, prob: &RdProblem, unit: Unit) {
    let s = unit.scale();
    rec.value = Some(pt.rate * s);
    rec.scalar("rate", pt.rate * s);
    rec.scalar("distortion", pt.distortion);
    if pt.beta.is_finite() {
        rec.scalar("beta", pt.beta);
        rec.scalar("objective", (pt.rate + pt.beta * pt.distortion) * s);
    } else {
        rec.notes
            .push("β = ∞: the point at the smallest achievable distortion D_min".into());
    }
    rec.scalar("lower_bound", pt.lower_bound * s);
    rec.scalar("gap", (pt.rate - pt.lower_bound).max(0.0) * s);
    rec.scalar("iterations", pt.iterations as f64);
    rec.flag("converged", pt.converged);
    rec.flag("time_shared", pt.time_shared);
    rec.scalar("d_min", prob.d_min);
    rec.scalar("d_max", prob.d_max);
    if pt.time_shared {
        rec.notes.push(
            "straight segment of the curve: the test channel time-shares the two end points".into(),
        );
    }
    if !pt.converged {
        rec.notes.push(format!(
            "not converged within max_iter ({} iterations); see `gap`",
            pt.iterations
        ));
    }
    rec.tensor("test_channel", &pt.channel, &[prob.nx, prob.ny]);
    rec.tensor("output_law", &pt.output, &[prob.ny]);
}

/// A curve of BA points as equal-length columns. `x_name`/`x` relabel the distortion axis
/// (the channel form reports reward = shift − distortion).
pub(crate) fn rd_curve_record(
    rec: &mut Record,
    pts: &[RdPoint],
    prob: &RdProblem,
    unit: Unit,
    reward_shift: Option<f64>,
) {
    let s = unit.scale();
    let col = |f: &dyn Fn(&RdPoint) -> f64| pts.iter().map(f).collect::<Vec<f64>>();
    rec.column(
        if reward_shift.is_some() {
            "lambda"
        } else {
            "beta"
        },
        &col(&|p| p.beta),
    );
    match reward_shift {
        Some(m) => rec.column("reward", &col(&|p| m - p.distortion)),
        None => rec.column("distortion", &col(&|p| p.distortion)),
    }
    rec.column("rate", &col(&|p| p.rate * s));
    rec.column("lower_bound", &col(&|p| p.lower_bound * s));
    let u = unit.name();
    match reward_shift {
        Some(_) => rec.plot_lines(
            "reward",
            &["rate"],
            "expected reward ρ",
            &format!("rate R ({u})"),
        ),
        None => rec.plot_lines(
            "distortion",
            &["rate"],
            "distortion D",
            &format!("rate R ({u})"),
        ),
    }
    rec.column("converged", &col(&|p| if p.converged { 1.0 } else { 0.0 }));
    rec.scalar("points", pts.len() as f64);
    rec.flag("all_converged", pts.iter().all(|p| p.converged));
    rec.scalar(
        "max_gap",
        pts.iter()
            .map(|p| (p.rate - p.lower_bound).max(0.0))
            .fold(0.0, f64::max)
            * s,
    );
    rec.scalar("d_min", prob.d_min);
    rec.scalar("d_max", prob.d_max);
    if pts.iter().any(|p| p.beta.is_infinite()) {
        rec.notes
            .push("β = ∞ (the point at D_min) is shown as `-`".into());
    }
}

fn rate_distortion(args: &Args) -> Result<Record> {
    let (mut rec, unit) = record(args, "Blahut–Arimoto (log domain, exact)")?;
    let src = args.vector_req("source", "the source law p(x)")?;
    let (d, ny) = distortion_matrix(args, "distortion", src.data.len())?;
    let prob = RdProblem::new(&src.data, &d, ny, src.sum_tol())?;
    let opts = ba_options(args, &mut rec, 100_000, 3)?;
    match args.one_of(&["beta", "betas", "target_distortion", "distortions"])? {
        Some("beta") => {
            let beta = args.f64_or("beta", 1.0)?;
            let pt = prob.solve(beta, None, &opts)?;
            rd_point_record(&mut rec, &pt, &prob, unit);
        }
        Some("target_distortion") => {
            let target = args.f64_or("target_distortion", 0.0)?;
            let pt = prob.at_distortion(target, &opts)?;
            rd_point_record(&mut rec, &pt, &prob, unit);
            rec.scalar("target_distortion", target);
            if pt.beta == 0.0 {
                rec.notes
                    .push("target ≥ D_max: the distortion constraint is inactive and R = 0".into());
            }
        }
        Some("distortions") => {
            let targets = list(args, "distortions")?;
            let pts = targets
                .iter()
                .map(|&t| prob.at_distortion(t, &opts))
                .collect::<Result<Vec<_>>>()?;
            rd_curve_record(&mut rec, &pts, &prob, unit, None);
            rec.column("target_distortion", &targets);
        }
        _ => {
            let betas = match args.has("betas") {
                true => list(args, "betas")?,
                false => {
                    let k = args.usize_or("num_points", 41)?.max(1);
                    rec.params.insert("num_points".into(), json!(k));
                    prob.default_betas(k)
                }
            };
            let pts = prob.sweep(&betas, &opts)?;
            rd_curve_record(&mut rec, &pts, &prob, unit, None);
        }
    }
    rec.notes.push("beta is the slope in nats per unit of distortion; distortions are in the units of the matrix".into());
    Ok(rec)
}

fn closed_form(args: &Args) -> Result<Record> {
    let (mut rec, unit) = record(args, "closed form")?;
    let family = args.str_or("family", "binary")?;
    rec.params.insert("family".into(), json!(family));
    let targets = match args.one_of(&["target_distortion", "distortions"])? {
        Some("distortions") => list(args, "distortions")?,
        Some(_) => vec![args.f64_or("target_distortion", 0.0)?],
        None => return Err(args.err("target_distortion", "required (or `distortions`)")),
    };
    let f: Box<dyn Fn(f64) -> Result<f64>> = match family.as_str() {
        "binary" => {
            let pp = args.f64_or("p", 0.5)?;
            rec.params.insert("p".into(), json!(pp));
            Box::new(move |d| Ok(unit.from_nats(blahut_arimoto::binary_hamming_rd(pp, d)?)))
        }
        "gaussian" => {
            let var = args.f64_or("variance", 1.0)?;
            rec.params.insert("variance".into(), json!(var));
            Box::new(move |d| Ok(unit.from_nats(blahut_arimoto::gaussian_rd(var, d)?)))
        }
        "log_loss" => {
            let h = match args.one_of(&["entropy", "source"])? {
                Some("entropy") => args.f64_or("entropy", 0.0)?,
                Some(_) => {
                    let src = args.vector_req("source", "the source law")?;
                    unit.from_nats(util::entropy(&util::check_pmf(
                        "source",
                        &src.data,
                        src.sum_tol(),
                    )?))
                }
                None => {
                    return Err(args.err("source", "log_loss needs `source` (a law) or `entropy`"))
                }
            };
            rec.scalar("entropy", h);
            rec.notes.push(format!(
                "log-loss: distortion and rate are both in {}",
                unit.name()
            ));
            Box::new(move |d| blahut_arimoto::log_loss_rd(h, d))
        }
        other => {
            return Err(args.err(
                "family",
                format!("expected binary, gaussian or log_loss, found \"{other}\""),
            ))
        }
    };
    let rates = targets
        .iter()
        .map(|&d| f(d))
        .collect::<Result<Vec<f64>>>()?;
    if args.has("distortions") {
        rec.column("distortion", &targets);
        rec.column("rate", &rates);
        rec.plot_lines(
            "distortion",
            &["rate"],
            "distortion D",
            &format!("rate R ({})", unit.name()),
        );
    } else {
        rec.value = Some(rates[0]);
        rec.scalar("rate", rates[0]);
        rec.scalar("distortion", targets[0]);
    }
    Ok(rec)
}

fn channel_capacity(args: &Args) -> Result<Record> {
    let (mut rec, unit) = record(args, "dual Blahut–Arimoto (Arimoto), certified bounds")?;
    let (w, nx, ny) = args
        .matrix("channel")?
        .ok_or_else(|| args.err("channel", "required: a matrix W(y|x), one row per input"))?;
    let tol = args.f64_or("tol", 1e-12)?;
    let max_iter = args.usize_or("max_iter", 100_000)?;
    rec.params.insert("tol".into(), json!(tol));
    rec.params.insert("max_iter".into(), json!(max_iter));
    let wn = capacity::check_channel(&w.data, nx, ny, w.sum_tol())?;
    let c = capacity::capacity(&wn, nx, ny, tol, max_iter)?;
    let s = unit.scale();
    rec.value = Some(c.capacity * s);
    rec.scalar("capacity", c.capacity * s);
    rec.scalar("lower_bound", c.lower_bound * s);
    rec.scalar("upper_bound", c.upper_bound * s);
    rec.scalar("gap", c.gap() * s);
    rec.scalar("iterations", c.iterations as f64);
    rec.flag("converged", c.converged);
    if !c.converged {
        rec.notes.push(format!(
            "not converged within max_iter: C is within `gap` of `capacity` ({})",
            c.gap() * s
        ));
    }
    rec.tensor("input_law", &c.input, &[nx]);
    rec.tensor(
        "divergence",
        &c.divergences.iter().map(|d| d * s).collect::<Vec<f64>>(),
        &[nx],
    );
    rec.tensor("output_law", &c.output, &[ny]);
    Ok(rec)
}

/// The source law over `x^n` and `|X|` from the directed-RD parameters.
fn directed_source(args: &Args, rec: &mut Record, n: usize) -> Result<(Vec<f64>, usize, f64)> {
    let kind = match args.str_opt("source_kind")? {
        Some(k) => k,
        None if args.has("joint") => "joint".into(),
        None if args.has("q") || args.has("transition") => "markov".into(),
        None => "iid".into(),
    };
    rec.params.insert("source_kind".into(), json!(kind));
    let ax_param = args.usize_opt("x_alphabet")?;
    match kind.as_str() {
        "iid" => {
            let (p, tol) = match args.vector("source")? {
                Some(a) => {
                    let tol = a.sum_tol();
                    (util::check_pmf("source", &a.data, tol)?, tol)
                }
                None => {
                    let a = ax_param.unwrap_or(2);
                    if a == 0 {
                        return Err(args.err("x_alphabet", "expected at least 1"));
                    }
                    (vec![1.0 / a as f64; a], util::SUM_TOL_F64)
                }
            };
            Ok((directed::iid_joint(&p, n)?, p.len(), tol))
        }
        "markov" => {
            if let Some(q) = args.f64_opt("q")? {
                if args.has("transition") {
                    return Err(args.err("q", "give `q` or `transition`, not both"));
                }
                return Ok((
                    directed::binary_symmetric_markov(q, n)?,
                    2,
                    util::SUM_TOL_F64,
                ));
            }
            let (t, r, c) = args.matrix("transition")?.ok_or_else(|| {
                args.err(
                    "transition",
                    "markov needs `q` (binary symmetric) or `transition`",
                )
            })?;
            if r != c {
                return Err(args.err(
                    "transition",
                    format!("expected a square matrix, found {r} × {c}"),
                ));
            }
            let tol = t.sum_tol();
            let tn = capacity::check_channel(&t.data, r, c, tol)
                .map_err(|e| args.err("transition", e.message()))?;
            let init = match args.vector("initial")? {
                Some(a) => util::check_pmf("initial", &a.data, a.sum_tol())?,
                None => vec![1.0 / r as f64; r],
            };
            if init.len() != r {
                return Err(args.err(
                    "initial",
                    format!("expected a law over {r} letters, found {}", init.len()),
                ));
            }
            Ok((directed::markov_joint(&init, &tn, n)?, r, tol))
        }
        "joint" => {
            let a = args.vector_req("joint", "a pmf over x^n")?;
            let ax = ax_param.unwrap_or(2);
            Ok((a.data.clone(), ax, a.sum_tol()))
        }
        other => Err(args.err(
            "source_kind",
            format!("expected iid, markov or joint, found \"{other}\""),
        )),
    }
}

fn directed_rd(args: &Args) -> Result<Record> {
    let (mut rec, unit) = record(
        args,
        "directed Blahut–Arimoto (Naiss–Permuter), exact enumeration of n-blocks",
    )?;
    let n = args.usize_or("n", 2)?;
    rec.params.insert("n".into(), json!(n));
    if n == 0 {
        return Err(args.err("n", "expected a block length ≥ 1"));
    }
    let (px, ax, tol) = directed_source(args, &mut rec, n)?;
    let (d, ay) = distortion_matrix(args, "distortion", ax)?;
    let prob = DirectedProblem::new(&px, ax, n, &d, ay, tol)?;
    let direction = Direction::parse(&args.str_or("direction", "y_to_x")?)?;
    let delay = args.usize_or("delay", 1)?;
    rec.params
        .insert("direction".into(), json!(direction.name()));
    rec.params.insert("delay".into(), json!(delay));
    let ba = ba_options(args, &mut rec, 100_000, 1)?;
    let opts = DirectedOptions {
        direction,
        delay,
        ba,
    };
    let s = unit.scale();
    let di = |pt: &directed::DirectedPoint| {
        directed::directed_information(&prob.joint(&pt.channel), n, ax, ay, direction, delay)
            / n as f64
    };
    let arrow = match (direction, delay) {
        (Direction::YToX, 1) => "I(Y^n → X^n)".to_string(),
        (Direction::XToY, 1) => "I(X^n → Y^n)".to_string(),
        (Direction::YToX, k) => format!("Σ H(Y_i | Y^(i−1), X^(i−{k})) − H(Y^n | X^n)"),
        (Direction::XToY, k) => format!("Σ H(X_i | X^(i−1), Y^(i−{k})) − H(X^n | Y^n)"),
    };
    rec.notes.push(format!(
        "rate = (1/n) {arrow} of the final joint; distortion per letter; beta per letter in nats"
    ));
    match args.one_of(&["beta", "betas"])? {
        Some("beta") => {
            let pt = prob.solve(args.f64_or("beta", 1.0)?, &opts)?;
            let brute = di(&pt);
            rec.value = Some(pt.rate * s);
            rec.scalar("rate", pt.rate * s);
            rec.scalar("distortion", pt.distortion);
            rec.scalar("beta", pt.beta);
            rec.scalar("objective", pt.objective() * s);
            rec.scalar("directed_information", brute * s);
            rec.scalar("check_abs_diff", (brute - pt.rate).abs() * s);
            rec.scalar("iterations", pt.iterations as f64);
            rec.flag("converged", pt.converged);
            rec.scalar("n", n as f64);
            rec.scalar("delay", delay as f64);
            if !pt.converged {
                rec.notes.push(format!(
                    "not converged within max_iter ({} iterations)",
                    pt.iterations
                ));
            }
            rec.tensor("test_channel", &pt.channel, &[prob.nx, prob.ny]);
            rec.tensor("source_law", &prob.px, &[prob.nx]);
        }
        _ => {
            let betas = match args.has("betas") {
                true => list(args, "betas")?,
                false => {
                    let k = args.usize_or("num_points", 21)?.max(1);
                    rec.params.insert("num_points".into(), json!(k));
                    let spread = d.iter().copied().fold(0.0, f64::max);
                    let sc = if spread > 0.0 { spread } else { 1.0 };
                    (0..k)
                        .map(|i| 10f64.powf(-2.0 + 4.0 * i as f64 / (k.max(2) - 1) as f64) / sc)
                        .collect()
                }
            };
            let pts = betas
                .iter()
                .map(|&b| prob.solve(b, &opts))
                .collect::<Result<Vec<_>>>()?;
            let col = |f: &dyn Fn(&directed::DirectedPoint) -> f64| {
                pts.iter().map(f).collect::<Vec<f64>>()
            };
            rec.column("beta", &col(&|p| p.beta));
            rec.column("distortion", &col(&|p| p.distortion));
            rec.column("rate", &col(&|p| p.rate * s));
            rec.column("directed_information", &col(&|p| di(p) * s));
            rec.plot_lines(
                "distortion",
                &["rate"],
                "distortion D per letter",
                &format!("rate R ({} per letter)", unit.name()),
            );
            rec.column("converged", &col(&|p| if p.converged { 1.0 } else { 0.0 }));
            rec.flag("all_converged", pts.iter().all(|p| p.converged));
            rec.scalar(
                "max_check_abs_diff",
                pts.iter()
                    .map(|p| (di(p) - p.rate).abs())
                    .fold(0.0, f64::max)
                    * s,
            );
            rec.scalar("n", n as f64);
        }
    }
    Ok(rec)
}

/// Reference and reward (same shape: `[ny]` or `[nx, ny]`) with the context law.
fn tilt_problem(args: &Args) -> Result<reward::TiltProblem> {
    let r = args
        .array("reference")?
        .ok_or_else(|| args.err("reference", "required: the reference policy"))?;
    let w = args
        .array("reward")?
        .ok_or_else(|| args.err("reward", "required: the rewards"))?;
    let (nx, ny) = match r.shape.as_slice() {
        [n] => (1, *n),
        [a, b] => (*a, *b),
        s => {
            return Err(args.err(
                "reference",
                format!("expected a law or a matrix of laws, found shape {s:?}"),
            ))
        }
    };
    if w.data.len() != r.data.len() || (w.shape.len() == 2 && w.shape != r.shape) {
        return Err(args.err(
            "reward",
            format!(
                "expected the shape of `reference` {:?}, found {:?}",
                r.shape, w.shape
            ),
        ));
    }
    let tol = r.sum_tol().max(w.sum_tol());
    let context = match args.vector("context")? {
        Some(c) => c.data,
        None => vec![1.0 / nx as f64; nx],
    };
    if context.len() != nx {
        return Err(args.err(
            "context",
            format!(
                "expected a law over the {nx} rows of `reference`, found {}",
                context.len()
            ),
        ));
    }
    reward::TiltProblem::new(&context, &r.data, &w.data, ny, tol)
}

fn rate_reward(args: &Args) -> Result<Record> {
    let (mut rec, unit) = record(args, "exact (KL-tilted optimum)")?;
    let prob = tilt_problem(args)?;
    let s = unit.scale();
    rec.scalar("reward_ref", prob.reward_ref());
    rec.scalar("reward_max", prob.reward_max());
    let single = |rec: &mut Record, t: &reward::Tilt| {
        rec.value = Some(t.kl * s);
        rec.scalar("kl", t.kl * s);
        rec.scalar("reward", t.reward);
        rec.scalar("lambda", t.lambda);
        rec.scalar("log_z", t.log_z);
        rec.scalar("kl_identity", t.kl_identity * s);
        let shape = if prob.nx == 1 {
            vec![prob.ny]
        } else {
            vec![prob.nx, prob.ny]
        };
        rec.tensor("policy", &t.policy, &shape);
    };
    match args.one_of(&["lambda", "lambdas", "target_reward"])? {
        Some("lambda") => single(&mut rec, &prob.tilt(args.f64_or("lambda", 1.0)?)?),
        Some("target_reward") => {
            let target = args.f64_or("target_reward", 0.0)?;
            let t = prob.at_reward(target)?;
            single(&mut rec, &t);
            rec.scalar("target_reward", target);
            if t.lambda.is_infinite() {
                rec.notes.push("target = the largest achievable reward: λ = ∞ (the reference restricted to the best outcomes)".into());
            } else if t.lambda == 0.0 {
                rec.notes
                    .push("the reference already reaches the target: λ = 0, KL = 0".into());
            }
        }
        _ => {
            let lambdas = match args.has("lambdas") {
                true => list(args, "lambdas")?,
                false => {
                    let k = args.usize_or("num_points", 21)?.max(2);
                    rec.params.insert("num_points".into(), json!(k));
                    let (lo, hi) = prob
                        .reward
                        .iter()
                        .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), &v| {
                            (a.min(v), b.max(v))
                        });
                    let spread = if hi > lo { hi - lo } else { 1.0 };
                    (0..k)
                        .map(|i| 10.0 / spread * i as f64 / (k - 1) as f64)
                        .collect()
                }
            };
            let ts = lambdas
                .iter()
                .map(|&l| prob.tilt(l))
                .collect::<Result<Vec<_>>>()?;
            rec.column("lambda", &lambdas);
            rec.column("reward", &ts.iter().map(|t| t.reward).collect::<Vec<f64>>());
            rec.column("kl", &ts.iter().map(|t| t.kl * s).collect::<Vec<f64>>());
            rec.plot_lines(
                "reward",
                &["kl"],
                "expected reward ρ",
                &format!("KL to the reference ({})", unit.name()),
            );
            rec.column("log_z", &ts.iter().map(|t| t.log_z).collect::<Vec<f64>>());
        }
    }
    rec.notes
        .push("rewards and ln Z are in reward units; the KL is in the chosen unit".into());
    Ok(rec)
}

fn rate_reward_channel(args: &Args) -> Result<Record> {
    let (mut rec, unit) = record(
        args,
        "Blahut–Arimoto with distortion max r − r (log domain, exact)",
    )?;
    let src = args.vector_req("source", "the input law p(x)")?;
    let (w, r, c) = args
        .matrix("reward")?
        .ok_or_else(|| args.err("reward", "required: a matrix r(x, y)"))?;
    if r != src.data.len() {
        return Err(args.err(
            "reward",
            format!(
                "expected {} rows (one per input letter), found {r} × {c}",
                src.data.len()
            ),
        ));
    }
    let (prob, rmax) = reward::channel_problem(&src.data, &w.data, c, src.sum_tol())?;
    let opts = ba_options(args, &mut rec, 100_000, 3)?;
    let s = unit.scale();
    let single = |rec: &mut Record, pt: &RdPoint| {
        rd_point_record(rec, pt, &prob, unit);
        rec.scalars.remove("distortion");
        rec.scalars.remove("d_min");
        rec.scalars.remove("d_max");
        rec.scalars.remove("beta");
        rec.scalars.remove("objective");
        rec.scalar("reward", rmax - pt.distortion);
        rec.scalar("reward_max", rmax - prob.d_min);
        rec.scalar("reward_zero_rate", rmax - prob.d_max);
        if pt.beta.is_finite() {
            rec.scalar("lambda", pt.beta);
            rec.scalar(
                "objective",
                (pt.rate - pt.beta * (rmax - pt.distortion)) * s,
            );
        }
    };
    match args.one_of(&["lambda", "lambdas", "target_reward"])? {
        Some("lambda") => single(
            &mut rec,
            &prob.solve(args.f64_or("lambda", 1.0)?, None, &opts)?,
        ),
        Some("target_reward") => {
            let target = args.f64_or("target_reward", 0.0)?;
            single(&mut rec, &prob.at_distortion(rmax - target, &opts)?);
            rec.scalar("target_reward", target);
        }
        _ => {
            let lambdas = match args.has("lambdas") {
                true => list(args, "lambdas")?,
                false => {
                    let k = args.usize_or("num_points", 41)?.max(1);
                    rec.params.insert("num_points".into(), json!(k));
                    prob.default_betas(k)
                }
            };
            let pts = prob.sweep(&lambdas, &opts)?;
            rd_curve_record(&mut rec, &pts, &prob, unit, Some(rmax));
            rec.scalars.remove("d_min");
            rec.scalars.remove("d_max");
            rec.scalar("reward_max", rmax - prob.d_min);
            rec.scalar("reward_zero_rate", rmax - prob.d_max);
        }
    }
    rec.notes
        .push("objective = R − λ E r; rewards are in reward units".into());
    Ok(rec)
}

fn best_of_n(args: &Args) -> Result<Record> {
    let (mut rec, unit) = record(args, "exact")?;
    let s = unit.scale();
    let finite = match (args.vector("reference")?, args.vector("reward")?) {
        (Some(r), Some(w)) => Some((r, w)),
        (None, None) => None,
        _ => {
            return Err(args.err(
                "reference",
                "give both `reference` and `reward` for a finite outcome set, or neither",
            ))
        }
    };
    let ns: Vec<usize> = match args.has("ns") {
        true => list(args, "ns")?
            .iter()
            .map(|&v| {
                if v >= 1.0 && v.fract() == 0.0 {
                    Ok(v as usize)
                } else {
                    Err(args.err("ns", format!("{v} is not an integer ≥ 1")))
                }
            })
            .collect::<Result<Vec<usize>>>()?,
        false => {
            let n = args.usize_or("n", 4)?;
            rec.params.insert("n".into(), json!(n));
            vec![n]
        }
    };
    let cont = ns
        .iter()
        .map(|&n| reward::best_of_n_continuous_kl(n))
        .collect::<Result<Vec<f64>>>()?;
    let exact = match &finite {
        Some((r, w)) => Some(
            ns.iter()
                .map(|&n| reward::best_of_n_exact(&r.data, &w.data, n, r.sum_tol()))
                .collect::<Result<Vec<_>>>()?,
        ),
        None => None,
    };
    if args.has("ns") {
        rec.column("n", &ns.iter().map(|&n| n as f64).collect::<Vec<f64>>());
        rec.column(
            "kl_continuous",
            &cont.iter().map(|v| v * s).collect::<Vec<f64>>(),
        );
        if let Some(ex) = &exact {
            rec.column(
                "kl_exact",
                &ex.iter().map(|b| b.kl * s).collect::<Vec<f64>>(),
            );
            rec.column(
                "reward_bon",
                &ex.iter().map(|b| b.reward_bon).collect::<Vec<f64>>(),
            );
        }
    } else {
        rec.scalar("kl_continuous", cont[0] * s);
        rec.scalar("n", ns[0] as f64);
        match &exact {
            Some(ex) => {
                let b = &ex[0];
                rec.value = Some(b.kl * s);
                rec.scalar("kl_exact", b.kl * s);
                rec.scalar("reward_bon", b.reward_bon);
                rec.scalar("reward_ref", b.reward_ref);
                rec.scalar("levels", b.levels as f64);
                rec.tensor("policy", &b.policy, &[b.policy.len()]);
            }
            None => {
                rec.value = Some(cont[0] * s);
                rec.estimator = "closed form (continuous reward)".into();
            }
        }
    }
    Ok(rec)
}

fn rate_reward_is(args: &Args) -> Result<Record> {
    let (mut rec, unit) = record(
        args,
        "self-normalised importance sampling from the reference",
    )?;
    let samples = args
        .vector_req("rewards", "reward samples of the reference")?
        .data;
    let bootstrap = args.usize_or("bootstrap", 0)?;
    let seed = args.usize_or("seed", 0)? as u64;
    rec.params.insert("bootstrap".into(), json!(bootstrap));
    rec.params.insert("seed".into(), json!(seed));
    let s = unit.scale();
    let lambdas = match args.has("lambdas") {
        true => list(args, "lambdas")?,
        false => {
            let l = args.f64_or("lambda", 1.0)?;
            rec.params.insert("lambda".into(), json!(l));
            vec![l]
        }
    };
    if args.has("lambdas") && args.f64_opt("lambda")?.is_some() {
        return Err(Error::msg(format!(
            "{}: give only one of lambda, lambdas",
            args.metric
        )));
    }
    let es = lambdas
        .iter()
        .map(|&l| reward::importance_estimate(&samples, l, bootstrap, seed))
        .collect::<Result<Vec<_>>>()?;
    rec.scalar("samples", samples.len() as f64);
    if args.has("lambdas") {
        let col = |f: &dyn Fn(&reward::IsEstimate) -> f64| es.iter().map(f).collect::<Vec<f64>>();
        rec.column("lambda", &lambdas);
        rec.column("reward", &col(&|e| e.reward));
        rec.column("rate", &col(&|e| e.rate * s));
        rec.column("ess", &col(&|e| e.ess));
        rec.column(
            "se_reward",
            &col(&|e| e.boot_se_reward.unwrap_or(e.se_reward)),
        );
        rec.column(
            "se_rate",
            &col(&|e| e.boot_se_rate.unwrap_or(e.se_rate) * s),
        );
        rec.plot_lines(
            "reward",
            &["rate"],
            "expected reward ρ (IS estimate)",
            &format!("KL to the reference ({})", unit.name()),
        );
    } else {
        let e = &es[0];
        rec.value = Some(e.rate * s);
        rec.scalar("rate", e.rate * s);
        rec.scalar("reward", e.reward);
        rec.scalar("lambda", e.lambda);
        rec.scalar("ess", e.ess);
        rec.scalar("se_rate", e.se_rate * s);
        rec.scalar("se_reward", e.se_reward);
        if let (Some(a), Some(b)) = (e.boot_se_reward, e.boot_se_rate) {
            rec.scalar("bootstrap_se_reward", a);
            rec.scalar("bootstrap_se_rate", b * s);
        }
        rec.scalar("max_weight", e.max_weight);
    }
    let n = samples.len() as f64;
    if let Some(e) = es.iter().find(|e| e.ess < 0.1 * n) {
        rec.notes.push(format!(
            "heavy importance weights at λ = {}: effective sample size {:.1} of {n}; the estimate is unreliable",
            e.lambda, e.ess
        ));
    }
    rec.notes.push(if bootstrap > 0 {
        "standard errors: bootstrap (seeded) in columns; delta method in scalars `se_*`".into()
    } else {
        "standard errors: delta method".into()
    });
    Ok(rec)
}

tokit_sdk::export_plugin! {
    name: "rate",
    version: env!("CARGO_PKG_VERSION"),
    description: "rate functions: rate–distortion (Blahut–Arimoto), channel capacity, directed rate–distortion with feed-forward, rate–reward (MEASURES.md M3, M4)",
    architectures: [],
    metrics: [RateMetrics],
}

#[cfg(test)]
mod tests;
