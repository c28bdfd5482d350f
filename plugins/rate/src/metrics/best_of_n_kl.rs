//! `best_of_n_kl`: the KL of the best-of-n policy to the reference (Beirami et al. 2024):
//! ln n − (n−1)/n for a continuous reward, the exact law and KL for a finite outcome set
//! with ties.

use super::{list, output, record, RateMetric};
use crate::args::{Args, Record};
use serde_json::json;
use tokit_sdk::{Array, InfoUnit, Metric, MetricInput, MetricOutput, Result};

pub struct BestOfNKl;

tokit_sdk::params! {
    pub struct Params {
        /// number of samples the best is chosen from
        n: usize = 4,
        /// several n: a table
        ns: Array = Array::NONE,
        /// finite outcome set: reference law (with `reward`, gives the exact KL)
        reference: Array = Array::NONE,
        /// finite outcome set: rewards (ties allowed)
        reward: Array = Array::NONE,
        /// `nats` or `bits` for information quantities
        unit: InfoUnit = InfoUnit::Nats,
    }
}

impl Metric for BestOfNKl {
    const NAME: &'static str = "best_of_n_kl";
    const DESCRIPTION: &'static str = "KL of the best-of-n policy to the reference: ln n − (n−1)/n for a continuous reward, exact law and KL for a finite outcome set with ties (Beirami et al.); value = KL";
    type Params = Params;

    fn compute(input: &MetricInput, p: Params) -> Result<MetricOutput> {
        output::<Self>(input, p)
    }
}

impl RateMetric for BestOfNKl {
    fn record(args: &Args, p: Params) -> Result<Record> {
        run(args, p)
    }
}

fn run(args: &Args, p: Params) -> Result<Record> {
    let unit = p.unit;
    let mut rec = record(args, unit, "exact");
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
            let n = p.n;
            rec.params.insert("n".into(), json!(n));
            vec![n]
        }
    };
    let cont = ns
        .iter()
        .map(|&n| crate::reward::best_of_n_continuous_kl(n))
        .collect::<Result<Vec<f64>>>()?;
    let exact = match &finite {
        Some((r, w)) => Some(
            ns.iter()
                .map(|&n| crate::reward::best_of_n_exact(&r.data, &w.data, n, r.sum_tol()))
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
