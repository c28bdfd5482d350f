//! `channel_capacity`: the capacity of a discrete memoryless channel by the dual
//! Blahut–Arimoto iteration (Arimoto 1972), with the optimal input law and certified
//! bounds.

use super::{output, record, RateMetric};
use crate::args::{Args, Record};
use serde_json::json;
use tokit_sdk::{Array, InfoUnit, Metric, MetricInput, MetricOutput, Result};

pub struct ChannelCapacity;

tokit_sdk::params! {
    pub struct Params {
        /// channel matrix W(y|x), one row per input letter (or a tensor `channel`)
        channel: Array = Array::NONE,
        /// stop when the certified gap max_x D_x − I(p) is below this
        tol: f64 = 1e-12,
        /// iteration cap
        max_iter: usize = 100_000,
        /// `nats` or `bits` for information quantities
        unit: InfoUnit = InfoUnit::Nats,
    }
}

impl Metric for ChannelCapacity {
    const NAME: &'static str = "channel_capacity";
    const DESCRIPTION: &'static str = "capacity of a discrete memoryless channel by the dual Blahut–Arimoto iteration, with the optimal input law and certified bounds; value = capacity";
    type Params = Params;

    fn compute(input: &MetricInput, p: Params) -> Result<MetricOutput> {
        output::<Self>(input, p)
    }
}

impl RateMetric for ChannelCapacity {
    fn record(args: &Args, p: Params) -> Result<Record> {
        run(args, p)
    }
}

fn run(args: &Args, p: Params) -> Result<Record> {
    let unit = p.unit;
    let mut rec = record(
        args,
        unit,
        "dual Blahut–Arimoto (Arimoto), certified bounds",
    );
    let (w, nx, ny) = args
        .matrix("channel")?
        .ok_or_else(|| args.err("channel", "required: a matrix W(y|x), one row per input"))?;
    let (tol, max_iter) = (p.tol, p.max_iter);
    rec.params.insert("tol".into(), json!(tol));
    rec.params.insert("max_iter".into(), json!(max_iter));
    let wn = crate::capacity::check_channel(&w.data, nx, ny, w.sum_tol())?;
    let c = crate::capacity::capacity(&wn, nx, ny, tol, max_iter)?;
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
