//! `perplexity`: exp(cross-entropy), a pure number (`docs/measures.md` M1).

use super::{score, se};
use crate::common::LawParams;
use tokit_sdk::{Metric, MetricInput, MetricOutput, Result, Unit};

pub struct Perplexity;

impl Metric for Perplexity {
    const NAME: &'static str = "perplexity";
    const DESCRIPTION: &'static str = "exp(cross-entropy), with a delta-method standard error";
    const UNIT: Unit = Unit::Dimensionless;
    const NEEDS_MODEL: bool = true;
    type Params = LawParams;

    fn compute(input: &MetricInput, p: LawParams) -> Result<MetricOutput> {
        let (sc, mut out) = score(input, &p)?;
        let c = &sc.stats.corpus;
        out.unit = Unit::Dimensionless;
        out.value = Some(c.perplexity.value);
        Ok(out
            .scalar("se", se(&c.perplexity, 1.0))
            .scalar("cross_entropy", c.cross_entropy.value * p.unit.scale()))
    }
}
