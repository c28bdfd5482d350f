//! `rate_distortion`: the rate–distortion function R(D) of a discrete source by
//! log-domain Blahut–Arimoto (`docs/measures.md` M3; Blahut 1972, Arimoto 1972): a point
//! at slope β, a curve over β (or a default grid), or R at a target distortion.

use super::{
    ba_options, distortion_matrix, list, output, rd_curve_record, rd_point_record, record,
    required, Ba, RateMetric,
};
use crate::args::{Args, Record};
use crate::blahut_arimoto::RdProblem;
use serde_json::json;
use tokit_sdk::{Array, Metric, MetricInput, MetricOutput, Result};

pub struct RateDistortion;

tokit_sdk::params! {
    pub struct Params {
        /// source law p(x) (or an input tensor `source`)
        source: Array = Array::NONE,
        /// distortion matrix d(x, y), one row per source letter (or a tensor `distortion`); `hamming` = square Hamming
        distortion: Array = Array::of(json!("hamming")),
        /// slope β > 0 (nats per unit distortion): one point
        beta: Option<f64> = None,
        /// slopes: the curve at each
        betas: Array = Array::NONE,
        /// R(D) at this distortion (bisection on β)
        target_distortion: Option<f64> = None,
        /// R(D) at each of these distortions
        distortions: Array = Array::NONE,
        /// size of the default β grid (geometric, 0.01…100 / spread) when no slope or target is given
        num_points: usize = 41,
        /// random-simplex restarts besides the uniform start (deterministic)
        restarts: usize = 3,
        /// `squarem`: squared extrapolation (SQUAREM) of the BA steps on large problems (at least 65536 matrix cells, finite β; same fixed point, fewer steps); `none`: the plain iteration. Small problems always run plain in the log domain
        acceleration: String = "squarem".into(),
        #[flatten]
        ba: Ba,
    }
}

impl Metric for RateDistortion {
    const NAME: &'static str = "rate_distortion";
    const DESCRIPTION: &'static str = "rate–distortion function R(D) of a discrete source by log-domain Blahut–Arimoto (M3): a point at slope β, a curve over β, or R at a target distortion; value = rate";
    type Params = Params;

    fn compute(input: &MetricInput, p: Params) -> Result<MetricOutput> {
        output::<Self>(input, p)
    }
}

impl RateMetric for RateDistortion {
    fn record(args: &Args, p: Params) -> Result<Record> {
        run(args, p)
    }
}

fn run(args: &Args, p: Params) -> Result<Record> {
    let unit = p.ba.unit;
    let mut rec = record(args, unit, "Blahut–Arimoto (log domain, exact)");
    let src = args.vector_req("source", "the source law p(x)")?;
    let (d, ny) = distortion_matrix(args, "distortion", src.data.len())?;
    let prob = RdProblem::new(&src.data, d, ny, src.sum_tol())?;
    let mut opts = ba_options(&mut rec, &p.ba, p.restarts)?;
    opts.accelerate = match p.acceleration.as_str() {
        "squarem" => true,
        "none" => false,
        other => {
            return Err(args.err(
                "acceleration",
                format!("expected \"squarem\" or \"none\", found \"{other}\""),
            ))
        }
    };
    rec.params
        .insert("acceleration".into(), json!(p.acceleration.as_str()));
    if args.has("acceleration") && !prob.is_dense() {
        rec.notes.push(
            "`acceleration` has no effect here: small problems run the plain log-domain iteration"
                .into(),
        );
    }
    match args.one_of(&["beta", "betas", "target_distortion", "distortions"])? {
        Some("beta") => {
            let beta = required(p.beta, args, "beta")?;
            let pt = prob.solve(beta, None, &opts)?;
            rd_point_record(&mut rec, &pt, &prob, unit);
        }
        Some("target_distortion") => {
            let target = required(p.target_distortion, args, "target_distortion")?;
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
                    let k = p.num_points.max(1);
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
