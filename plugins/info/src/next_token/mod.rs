//! Metrics of the model's next-token law at every position of a text (`docs/measures.md`
//! M1): one file per metric, all built on one teacher-forced pass (`score`).
//!
//! Local values are per token: entry t scores token t given x_<t; token 0 has none (NaN).

mod boltzmann;
mod cross_entropy;
mod entropy;
mod perplexity;
mod surprisal;
mod token_stats;

pub use boltzmann::Boltzmann;
pub use cross_entropy::CrossEntropy;
pub use entropy::Entropy;
pub use perplexity::Perplexity;
pub use surprisal::Surprisal;
pub use token_stats::TokenStats;

use crate::common::{require_causal, LawParams};
use crate::token_stats::{self as stats, Estimate, PositionStats, TokenStatsOptions};
use tokit_sdk::{Error, MetricInput, MetricOutput, Result};

/// One teacher-forced pass: the per-token and corpus statistics of the text.
pub(crate) struct Scored {
    pub stats: stats::TokenStats,
    /// Number of tokens (local tensors have this length).
    pub n: usize,
}

impl Scored {
    /// A local tensor: `f` of every scored position, times `scale`, after a NaN for token 0.
    pub fn local(&self, f: &dyn Fn(&PositionStats) -> f64, scale: f64) -> Vec<f32> {
        std::iter::once(f32::NAN)
            .chain(self.stats.local.iter().map(|p| (f(p) * scale) as f32))
            .collect()
    }
}

/// Standard error of `e` times `s` (NaN when there is none).
pub(crate) fn se(e: &Estimate, s: f64) -> f64 {
    e.se.map_or(f64::NAN, |x| x * s)
}

/// Run the model on the text (at least 2 tokens) and compute every statistic at
/// `law.temperature`; also the result skeleton (unit, estimator, parameters, `n_scored`).
pub(crate) fn score(input: &MetricInput, law: &LawParams) -> Result<(Scored, MetricOutput)> {
    require_causal(input)?;
    let tokens = input.tokens_at_least(2)?;
    let logits = input.model()?.logits(tokens)?;
    let opts = TokenStatsOptions {
        temperature: law.temperature,
        ..Default::default()
    };
    let stats = logits
        .with_data(|data, shape| stats::token_stats(data, shape[1], tokens, &opts))?
        .map_err(|e| Error::msg(format!("{}: {e}", input.metric)))?;
    let out = MetricOutput {
        unit: law.unit.into(),
        estimator: "exact (teacher forcing)".into(),
        params: law.echo(input),
        ..Default::default()
    }
    .scalar("n_scored", stats.corpus.n as f64);
    Ok((
        Scored {
            stats,
            n: tokens.len(),
        },
        out,
    ))
}

/// The cross-entropy scalars shared by `surprisal`, `cross_entropy` and `token_stats`:
/// value = cross-entropy, with `se`, perplexity and bits per token.
pub(crate) fn cross_entropy_out(
    sc: &Scored,
    law: &LawParams,
    mut out: MetricOutput,
) -> MetricOutput {
    let c = &sc.stats.corpus;
    let s = law.unit.scale();
    out.value = Some(c.cross_entropy.value * s);
    out.scalar("se", se(&c.cross_entropy, s))
        .scalar("perplexity", c.perplexity.value)
        .scalar("perplexity_se", se(&c.perplexity, 1.0))
        .scalar("bits_per_token", c.bits_per_token.value)
}
