//! The rate metrics, one file per metric, and what they share: the evaluation without
//! host tensors ([`RateMetric`]), the Blahut–Arimoto parameters ([`Ba`]), and the records
//! of a rate–distortion point or curve.

mod best_of_n_kl;
mod channel_capacity;
mod directed_rate_distortion;
mod rate_distortion;
mod rate_distortion_closed_form;
mod rate_reward;
mod rate_reward_channel;
mod rate_reward_is;
mod token_semantic_rd;

pub use best_of_n_kl::BestOfNKl;
pub use channel_capacity::ChannelCapacity;
pub use directed_rate_distortion::DirectedRateDistortion;
pub use rate_distortion::RateDistortion;
pub use rate_distortion_closed_form::RateDistortionClosedForm;
pub use rate_reward::RateReward;
pub use rate_reward_channel::RateRewardChannel;
pub use rate_reward_is::RateRewardIs;
pub use token_semantic_rd::TokenSemanticRd;

use crate::args::{Args, Record};
use crate::blahut_arimoto::{BaOptions, RdPoint, RdProblem};
use crate::util::hamming;
use serde_json::{json, Value};
use tokit_sdk::{Error, InfoUnit, Metric, MetricInput, MetricOutput, Params, RawParams, Result};

/// A rate metric computed from [`Args`] (JSON parameters and input tensors), so tests need
/// no host; its [`Metric::compute`] is [`output`]`::<Self>`.
pub trait RateMetric: Metric {
    fn record(args: &Args, p: Self::Params) -> Result<Record>;
}

/// Parse `args`' parameters for `M` and compute it (the host-free path of a call).
pub fn evaluate<M: RateMetric>(args: &Args) -> Result<Record> {
    let raw = RawParams {
        metric: args.metric,
        params: args.params,
        tensors: args.tensors.iter().map(|(n, _, _)| n.as_str()).collect(),
    };
    let p = M::Params::parse(&raw)?;
    M::record(args, p).map_err(|e| name_metric(args.metric, e))
}

/// The host's call: the input tensors as f64, [`RateMetric::record`], the result.
pub fn output<M: RateMetric>(input: &MetricInput, p: M::Params) -> Result<MetricOutput> {
    let args = args_of(input)?;
    M::record(&args, p)
        .map_err(|e| name_metric(args.metric, e))?
        .into_output()
}

/// The input as [`Args`]: parameters and tensors.
fn args_of(input: &MetricInput) -> Result<Args<'_>> {
    let mut args = Args::new(&input.metric, &input.params);
    for (name, t) in &input.tensors {
        let (data, shape) = t.with_data(|d, s| (d.to_vec(), s.to_vec()))?;
        args.tensors.push((name.clone(), data, shape));
    }
    Ok(args)
}

/// Errors name the metric.
fn name_metric(metric: &str, e: Error) -> Error {
    if e.message().starts_with(metric) {
        e
    } else {
        e.context(metric)
    }
}

tokit_sdk::params! {
    /// The Blahut–Arimoto stopping rule, the seed of the restarts and the unit. Each metric
    /// declares `restarts` itself: their defaults differ.
    pub struct Ba {
        /// stop when rate and distortion both change by less than this (f64)
        tol: f64 = 1e-12,
        /// iteration cap per run (the result says whether it converged)
        max_iter: usize = 100_000,
        /// seed of the restarts
        seed: u64 = 0,
        /// `nats` or `bits` for information quantities
        unit: InfoUnit = InfoUnit::Nats,
    }
}

/// A record in `unit` with the call's parameters (and the unit) recorded.
pub(crate) fn record(args: &Args, unit: InfoUnit, estimator: &str) -> Record {
    let mut rec = Record {
        unit: unit.name().into(),
        estimator: estimator.into(),
        ..Default::default()
    };
    rec.params = args.params.clone();
    rec.params.insert("unit".into(), json!(unit.name()));
    rec
}

/// The solver options from `ba` and `restarts` (checked), recorded in `rec`.
pub(crate) fn ba_options(rec: &mut Record, ba: &Ba, restarts: usize) -> Result<BaOptions> {
    let o = BaOptions {
        tol: ba.tol,
        max_iter: ba.max_iter,
        restarts,
        seed: ba.seed,
        accelerate: false,
    };
    o.check()?;
    rec.params.insert("tol".into(), json!(o.tol));
    rec.params.insert("max_iter".into(), json!(o.max_iter));
    rec.params.insert("restarts".into(), json!(o.restarts));
    rec.params.insert("seed".into(), json!(o.seed));
    Ok(o)
}

/// The distortion matrix for `nx` source letters: a matrix parameter/tensor or `"hamming"`.
pub(crate) fn distortion_matrix(args: &Args, name: &str, nx: usize) -> Result<(Vec<f64>, usize)> {
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
pub(crate) fn list(args: &Args, name: &str) -> Result<Vec<f64>> {
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

/// Says so when no kept point came from a random restart: the restarts (and their seed)
/// then had no effect on the result (the problem is convex; `restarts_spread` says how far
/// apart the starts ended).
pub(crate) fn note_restarts(rec: &mut Record, any_from_restart: bool) {
    let restarts = rec
        .params
        .get("restarts")
        .and_then(Value::as_u64)
        .unwrap_or(0);
    if restarts > 0 && !any_from_restart {
        rec.notes.push(format!(
            "`restarts` and `seed` had no effect on the result: the uniform (or warm) start's \
             run was kept over {restarts} random restarts"
        ));
    }
}

/// One BA point: value, scalars, test channel and output law.
pub(crate) fn rd_point_record(rec: &mut Record, pt: &RdPoint, prob: &RdProblem, unit: InfoUnit) {
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
    rec.scalar("restarts_spread", pt.starts_spread * s);
    rec.scalar("starts", pt.starts as f64);
    note_restarts(rec, pt.from_restart);
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
    unit: InfoUnit,
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
    let spread = pts.iter().map(|p| p.starts_spread).fold(0.0, f64::max);
    rec.scalar("max_restarts_spread", spread * s);
    rec.scalar("starts", pts.iter().map(|p| p.starts).sum::<usize>() as f64);
    note_restarts(rec, pts.iter().any(|p| p.from_restart));
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

/// The value of a number parameter that [`Args::one_of`] found given; `None` means it came
/// as a tensor input, which a number parameter cannot.
pub(crate) fn required<T>(v: Option<T>, args: &Args, name: &str) -> Result<T> {
    v.ok_or_else(|| args.err(name, "expected a number parameter, found a tensor input"))
}
