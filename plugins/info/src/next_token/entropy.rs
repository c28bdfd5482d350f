//! `entropy`: the entropy of the next-token law at each position (`docs/measures.md` M1).

use super::{score, se};
use crate::common::LawParams;
use tokit_sdk::{Metric, MetricInput, MetricOutput, Result};

pub struct Entropy;

impl Metric for Entropy {
    const NAME: &'static str = "entropy";
    const DESCRIPTION: &'static str =
        "entropy of the next-token law at each position; value = its mean";
    const NEEDS_MODEL: bool = true;
    type Params = LawParams;

    fn compute(input: &MetricInput, p: LawParams) -> Result<MetricOutput> {
        let (sc, mut out) = score(input, &p)?;
        let (c, s) = (&sc.stats.corpus, p.unit.scale());
        out.value = Some(c.entropy.value * s);
        out.scalar("se", se(&c.entropy, s))
            .tensor("entropy", &sc.local(&|q| q.entropy, s), &[sc.n])
    }
}
