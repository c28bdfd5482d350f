//! `info_flow`: the exact information flow E Λ_n = I(X; Y^n), n = 1..N, of a prompt X
//! and outputs Y_i i.i.d. from a channel given X (default BSC(ε)), with per-step
//! conditional expected increments (the sub-martingale check); the `docs/measures.md` M5
//! oracle, a reconstruction of the paper [P~].

use super::super::flow::{info_flow, FlowSpec};
use super::{echo, output, Record, StreamMetric};
use serde_json::{json, Value};
use tokit_sdk::{Array, InfoUnit, Metric, MetricInput, MetricOutput, Result};

pub struct InfoFlow;

tokit_sdk::params! {
    pub struct Params {
        /// crossover probability of the default BSC channel
        epsilon: f64 = 0.1,
        /// number of output steps N
        n: usize = 10,
        /// prior over the prompt values
        prior: Array = Array::of(json!([0.5, 0.5])),
        /// rows p(y | x), one per prompt value (default: BSC(epsilon))
        channel: Array = Array::NONE,
        /// `nats` or `bits`
        unit: InfoUnit = InfoUnit::Nats,
    }
}

impl Metric for InfoFlow {
    const NAME: &'static str = "info_flow";
    const DESCRIPTION: &'static str = "exact information flow E Λ_n = I(X; Y^n), n = 1..N, of a prompt X and outputs Y_i i.i.d. from a channel given X (default BSC(ε)), with per-step conditional expected increments (sub-martingale check); M5 oracle, a reconstruction of the paper (docs/measures.md M5 [P~])";
    const RECONSTRUCTION: bool = true;
    type Params = Params;

    fn compute(input: &MetricInput, p: Params) -> Result<MetricOutput> {
        output::<Self>(input, p)
    }
}

impl StreamMetric for InfoFlow {
    fn record(input: &MetricInput, p: Params) -> Result<Record> {
        let e = super::err(&input.metric);
        let scale = p.unit.scale();
        let mut rec = Record::new(p.unit, echo(input, &p));
        let (steps, eps) = (p.n, p.epsilon);
        let mut spec = FlowSpec::bsc(eps, steps);
        let probs = |v: &Value, what: &str| -> Result<Vec<f64>> {
            v.as_array()
                .and_then(|a| a.iter().map(Value::as_f64).collect::<Option<Vec<f64>>>())
                .ok_or_else(|| e(format!("`{what}` must be an array of numbers")))
        };
        if let Some(v) = p.prior.get() {
            spec.prior = probs(v, "prior")?;
            rec.params.insert("prior".into(), v.clone());
        }
        if let Some(v) = p.channel.get() {
            let rows = v
                .as_array()
                .ok_or_else(|| e("`channel` must be an array of rows".into()))?;
            spec.channel = rows
                .iter()
                .map(|r| probs(r, "channel"))
                .collect::<Result<_>>()?;
            rec.params.insert("channel".into(), v.clone());
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
        rec.notes.push("reconstruction (docs/measures.md M5 [P~]): Λ_n = Σ ln p(y_i|y^{i−1},x)/p(y_i|y^{i−1}) with the exact marginal; entry n−1 of each tensor is step n".into());
        Ok(rec)
    }
}
