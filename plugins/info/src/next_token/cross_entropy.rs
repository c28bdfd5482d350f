//! `cross_entropy`: the mean surprisal of the scored tokens (`docs/measures.md` M1).

use super::{cross_entropy_out, score};
use crate::common::LawParams;
use tokit_sdk::{Metric, MetricInput, MetricOutput, Result};

pub struct CrossEntropy;

impl Metric for CrossEntropy {
    const NAME: &'static str = "cross_entropy";
    const DESCRIPTION: &'static str =
        "mean surprisal over the scored tokens, with standard error and perplexity";
    const NEEDS_MODEL: bool = true;
    type Params = LawParams;

    fn compute(input: &MetricInput, p: LawParams) -> Result<MetricOutput> {
        let (sc, out) = score(input, &p)?;
        Ok(cross_entropy_out(&sc, &p, out))
    }
}
