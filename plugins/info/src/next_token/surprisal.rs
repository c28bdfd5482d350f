//! `surprisal`: −ln p(x_t | x_<t) of each token (`docs/measures.md` M1).

use super::{cross_entropy_out, score};
use crate::common::LawParams;
use tokit_sdk::{CorpusMode, Metric, MetricInput, MetricOutput, Result};

pub struct Surprisal;

impl Metric for Surprisal {
    const NAME: &'static str = "surprisal";
    const DESCRIPTION: &'static str =
        "surprisal −ln p(x_t | x_<t) of each token; value = its mean (cross-entropy)";
    const NEEDS_MODEL: bool = true;
    const CORPUS: CorpusMode = CorpusMode::Packable;
    const CORPUS_COLUMNS: &'static [&'static str] = &["surprisal"];
    type Params = LawParams;

    fn compute(input: &MetricInput, p: LawParams) -> Result<MetricOutput> {
        let (sc, out) = score(input, &p)?;
        let s = p.unit.scale();
        cross_entropy_out(&sc, &p, out).tensor("surprisal", &sc.local(&|q| q.surprisal, s), &[sc.n])
    }
}
