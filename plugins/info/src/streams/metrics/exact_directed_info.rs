//! `exact_directed_info`: the exact directed information I(X^{n−d} → Y^n) of an explicit
//! joint pmf over (x^n, y^n), with the mutual information, the feedback term and the
//! residual of Massey & Massey's (2005) conservation law (the `docs/measures.md` M2 oracle).

use super::super::joint::{report, Joint};
use super::{echo, Record, StreamMetric};
use serde_json::json;
use tokit_sdk::{Array, InfoUnit, MetricInput, Result};

pub struct ExactDirectedInfo;

tokit_sdk::params! {
    pub struct Params {
        /// joint pmf: array of {x: [..], y: [..], p} (or [x, y, p]) over equal-length sequences
        joint: Array = Array::NONE,
        /// d in I(X^{n−d} → Y^n): 0 Massey, 1 next-token
        delay: usize = 0,
        /// `nats` or `bits`
        unit: InfoUnit = InfoUnit::Nats,
    }
}

stream_metric!(
    ExactDirectedInfo,
    "exact_directed_info",
    "exact directed information I(X^{n−d} → Y^n) of an explicit joint pmf over (x^n, y^n), with MI, the feedback term and the Massey conservation-law residual (M2 oracle)"
);

impl StreamMetric for ExactDirectedInfo {
    fn record(input: &MetricInput, p: Params) -> Result<Record> {
        let e = super::err(&input.metric);
        let scale = p.unit.scale();
        let mut rec = Record::new(p.unit, echo(input, &p));
        let joint = Joint::from_json(p.joint.get().ok_or_else(|| e("needs `joint`".into()))?)
            .map_err(&e)?;
        rec.params.insert(
            "joint".into(),
            json!(format!(
                "{} outcomes, n = {}",
                joint.outcomes.len(),
                joint.n
            )),
        );
        let r = report(&joint, p.delay);
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
        Ok(rec)
    }
}
