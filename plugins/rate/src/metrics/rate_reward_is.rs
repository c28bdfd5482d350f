//! `rate_reward_is`: a reconstruction (`docs/measures.md` M4): the KL-tilt frontier
//! (ρ, R) estimated from reward samples of the reference by self-normalised importance
//! sampling, with the effective sample size and standard errors.

use super::{list, output, record, RateMetric};
use crate::args::{Args, Record};
use serde_json::json;
use tokit_sdk::{Array, Error, InfoUnit, Metric, MetricInput, MetricOutput, Result};

pub struct RateRewardIs;

tokit_sdk::params! {
    pub struct Params {
        /// rewards of N samples drawn from the reference (or a tensor `rewards`)
        rewards: Array = Array::NONE,
        /// tilt λ (weights e^{λ r})
        lambda: f64 = 1.0,
        /// several λ: the estimated frontier
        lambdas: Array = Array::NONE,
        /// bootstrap resamples for standard errors (0 = delta method only)
        bootstrap: usize = 0,
        /// bootstrap seed
        seed: u64 = 0,
        /// `nats` or `bits` for information quantities
        unit: InfoUnit = InfoUnit::Nats,
    }
}

impl Metric for RateRewardIs {
    const NAME: &'static str = "rate_reward_is";
    const DESCRIPTION: &'static str = "reconstruction (M4): the KL-tilt frontier (ρ, R) estimated from reward samples of the reference by self-normalised importance sampling, with effective sample size and standard errors; value = rate";
    const RECONSTRUCTION: bool = true;
    type Params = Params;

    fn compute(input: &MetricInput, p: Params) -> Result<MetricOutput> {
        output::<Self>(input, p)
    }
}

impl RateMetric for RateRewardIs {
    fn record(args: &Args, p: Params) -> Result<Record> {
        run(args, p)
    }
}

fn run(args: &Args, p: Params) -> Result<Record> {
    let unit = p.unit;
    let mut rec = record(
        args,
        unit,
        "self-normalised importance sampling from the reference",
    );
    let samples = args
        .vector_req("rewards", "reward samples of the reference")?
        .data;
    let (bootstrap, seed) = (p.bootstrap, p.seed);
    rec.params.insert("bootstrap".into(), json!(bootstrap));
    rec.params.insert("seed".into(), json!(seed));
    let s = unit.scale();
    let lambdas = match args.has("lambdas") {
        true => list(args, "lambdas")?,
        false => {
            let l = p.lambda;
            rec.params.insert("lambda".into(), json!(l));
            vec![l]
        }
    };
    if args.has("lambdas") && args.params.get("lambda").is_some_and(|v| !v.is_null()) {
        return Err(Error::msg(format!(
            "{}: give only one of lambda, lambdas",
            args.metric
        )));
    }
    let es = lambdas
        .iter()
        .map(|&l| crate::reward::importance_estimate(&samples, l, bootstrap, seed))
        .collect::<Result<Vec<_>>>()?;
    rec.scalar("samples", samples.len() as f64);
    if args.has("lambdas") {
        let col =
            |f: &dyn Fn(&crate::reward::IsEstimate) -> f64| es.iter().map(f).collect::<Vec<f64>>();
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
