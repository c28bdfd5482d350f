//! `rate_reward`: a reconstruction of the paper's rate–reward function
//! (`docs/measures.md` M4) in its KL-to-reference form: the exact tilt
//! π_λ ∝ π_ref e^{λ r}, with R_ref = λρ − E ln Z.

use super::{list, output, record, required, RateMetric};
use crate::args::{Args, Record};
use serde_json::json;
use tokit_sdk::{Array, InfoUnit, Metric, MetricInput, MetricOutput, Result};

pub struct RateReward;

tokit_sdk::params! {
    pub struct Params {
        /// reference policy π_ref: a law over outcomes, or a matrix with one row per context (or a tensor)
        reference: Array = Array::NONE,
        /// rewards r, same shape as `reference`
        reward: Array = Array::NONE,
        /// law of the contexts (rows); default uniform
        context: Array = Array::NONE,
        /// inverse temperature λ of the tilt (λ = 1/β in DPO notation)
        lambda: Option<f64> = None,
        /// several λ: the frontier curve
        lambdas: Array = Array::NONE,
        /// R_ref(ρ) at this expected reward (bisection on λ)
        target_reward: Option<f64> = None,
        /// size of the default λ grid (0…10 / reward spread)
        num_points: usize = 21,
        /// `nats` or `bits` for information quantities
        unit: InfoUnit = InfoUnit::Nats,
    }
}

impl Metric for RateReward {
    const NAME: &'static str = "rate_reward";
    const DESCRIPTION: &'static str = "reconstruction of the paper's rate–reward function (M4), KL-to-reference form: exact tilt π_λ ∝ π_ref e^{λ r}, R_ref = λρ − E ln Z; value = KL";
    const RECONSTRUCTION: bool = true;
    type Params = Params;

    fn compute(input: &MetricInput, p: Params) -> Result<MetricOutput> {
        output::<Self>(input, p)
    }
}

impl RateMetric for RateReward {
    fn record(args: &Args, p: Params) -> Result<Record> {
        run(args, p)
    }
}

/// Reference and reward (same shape: `[ny]` or `[nx, ny]`) with the context law.
fn tilt_problem(args: &Args) -> Result<crate::reward::TiltProblem> {
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
    crate::reward::TiltProblem::new(&context, &r.data, &w.data, ny, tol)
}

fn run(args: &Args, p: Params) -> Result<Record> {
    let unit = p.unit;
    let mut rec = record(args, unit, "exact (KL-tilted optimum)");
    let prob = tilt_problem(args)?;
    let s = unit.scale();
    rec.scalar("reward_ref", prob.reward_ref());
    rec.scalar("reward_max", prob.reward_max());
    let single = |rec: &mut Record, t: &crate::reward::Tilt| {
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
        Some("lambda") => single(&mut rec, &prob.tilt(required(p.lambda, args, "lambda")?)?),
        Some("target_reward") => {
            let target = required(p.target_reward, args, "target_reward")?;
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
                    let k = p.num_points.max(2);
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
