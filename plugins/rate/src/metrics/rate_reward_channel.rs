//! `rate_reward_channel`: a reconstruction of the paper's rate–reward function
//! (`docs/measures.md` M4) in its channel form R(ρ) = min I(X;Y) s.t. E r ≥ ρ, by
//! Blahut–Arimoto with the distortion max r − r.

use super::{
    ba_options, list, output, rd_curve_record, rd_point_record, record, required, Ba, RateMetric,
};
use crate::args::{Args, Record};
use crate::blahut_arimoto::RdPoint;
use serde_json::json;
use tokit_sdk::{Array, Metric, MetricInput, MetricOutput, Result};

pub struct RateRewardChannel;

tokit_sdk::params! {
    pub struct Params {
        /// law of the inputs X (prompts)
        source: Array = Array::NONE,
        /// reward matrix r(x, y), one row per input
        reward: Array = Array::NONE,
        /// slope λ > 0 (BA with distortion max r − r)
        lambda: Option<f64> = None,
        /// several slopes: the curve
        lambdas: Array = Array::NONE,
        /// R(ρ) at this expected reward
        target_reward: Option<f64> = None,
        /// size of the default λ grid
        num_points: usize = 41,
        /// random-simplex restarts besides the uniform start (deterministic)
        restarts: usize = 3,
        #[flatten]
        ba: Ba,
    }
}

impl Metric for RateRewardChannel {
    const NAME: &'static str = "rate_reward_channel";
    const DESCRIPTION: &'static str = "reconstruction of the paper's rate–reward function (M4), channel form R(ρ) = min I(X;Y) s.t. E r ≥ ρ by Blahut–Arimoto with distortion max r − r; value = rate";
    const RECONSTRUCTION: bool = true;
    type Params = Params;

    fn compute(input: &MetricInput, p: Params) -> Result<MetricOutput> {
        output::<Self>(input, p)
    }
}

impl RateMetric for RateRewardChannel {
    fn record(args: &Args, p: Params) -> Result<Record> {
        run(args, p)
    }
}

fn run(args: &Args, p: Params) -> Result<Record> {
    let unit = p.ba.unit;
    let mut rec = record(
        args,
        unit,
        "Blahut–Arimoto with distortion max r − r (log domain, exact)",
    );
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
    let (prob, rmax) = crate::reward::channel_problem(&src.data, &w.data, c, src.sum_tol())?;
    let opts = ba_options(&mut rec, &p.ba, p.restarts)?;
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
            &prob.solve(required(p.lambda, args, "lambda")?, None, &opts)?,
        ),
        Some("target_reward") => {
            let target = required(p.target_reward, args, "target_reward")?;
            single(&mut rec, &prob.at_distortion(rmax - target, &opts)?);
            rec.scalar("target_reward", target);
        }
        _ => {
            let lambdas = match args.has("lambdas") {
                true => list(args, "lambdas")?,
                false => {
                    let k = p.num_points.max(1);
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
