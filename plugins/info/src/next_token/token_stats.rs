//! `token_stats`: every per-token value of the next-token law at once (`docs/measures.md`
//! M1): surprisal, entropy, rank, free and internal energy, heat capacity.

use super::{cross_entropy_out, score, se};
use crate::common::LawParams;
use tokit_sdk::{CorpusMode, Metric, MetricInput, MetricOutput, Result};

pub struct TokenStats;

impl Metric for TokenStats {
    const NAME: &'static str = "token_stats";
    const DESCRIPTION: &'static str = "all per-token values (surprisal, entropy, rank, free/internal energy, heat capacity); value = cross-entropy";
    const NEEDS_MODEL: bool = true;
    const CORPUS: CorpusMode = CorpusMode::Packable;
    const CORPUS_COLUMNS: &'static [&'static str] = &[
        "surprisal",
        "entropy",
        "rank",
        "free_energy",
        "internal_energy",
        "heat_capacity",
    ];
    type Params = LawParams;

    fn compute(input: &MetricInput, p: LawParams) -> Result<MetricOutput> {
        let (sc, out) = score(input, &p)?;
        let (c, s, n) = (&sc.stats.corpus, p.unit.scale(), [sc.n]);
        cross_entropy_out(&sc, &p, out)
            .tensor("surprisal", &sc.local(&|q| q.surprisal, s), &n)?
            .scalar("entropy_mean", c.entropy.value * s)
            .scalar("entropy_mean_se", se(&c.entropy, s))
            .scalar("heat_capacity_mean", c.heat_capacity.value)
            .scalar("top1_accuracy", c.top1_accuracy.value)
            .tensor("entropy", &sc.local(&|q| q.entropy, s), &n)?
            .tensor("rank", &sc.local(&|q| q.rank as f64, 1.0), &n)?
            .tensor("free_energy", &sc.local(&|q| q.free_energy, s), &n)?
            .tensor("internal_energy", &sc.local(&|q| q.internal_energy, s), &n)?
            .tensor("heat_capacity", &sc.local(&|q| q.heat_capacity, 1.0), &n)
    }
}
