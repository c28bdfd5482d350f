//! Metrics of the model's next-token law at every position of a text (`docs/measures.md`
//! M1): one file per metric, all built on one teacher-forced pass (`score`).
//!
//! Local values are per token: entry t scores token t given x_<t; token 0 has none (NaN).
//!
//! A call may carry several documents packed into one sequence: an input tensor `segments`
//! of their lengths (what `tokit analyze --corpus` sends, `docs/corpus.md`). Each document
//! is then scored as if it ran alone: its first token has no value (NaN), and the
//! aggregates pool the scored tokens of all documents.

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
use tokit_sdk::{
    bail, segment_ranges, Error, ForwardRequest, MetricInput, MetricOutput, ModelRef, Result,
    Tensor,
};

/// One teacher-forced pass: the per-token and corpus statistics of the text.
pub(crate) struct Scored {
    pub stats: stats::TokenStats,
    /// Number of tokens (local tensors have this length).
    pub n: usize,
    /// Lengths of the documents packed into the call (one entry when not packed).
    pub segments: Vec<usize>,
}

impl Scored {
    /// A local tensor: `f` of every scored position, times `scale`, after a NaN for the
    /// first token of each document.
    pub fn local(&self, f: &dyn Fn(&PositionStats) -> f64, scale: f64) -> Vec<f32> {
        let mut out = Vec::with_capacity(self.n);
        let mut scored = self.stats.local.iter();
        for &len in &self.segments {
            out.push(f32::NAN);
            out.extend(scored.by_ref().take(len - 1).map(|p| (f(p) * scale) as f32));
        }
        out
    }
}

/// The document lengths of a packed call (input tensor `segments`), or one document.
fn segments(input: &MetricInput, n: usize) -> Result<Vec<usize>> {
    let Some((_, t)) = input.tensors.iter().find(|(name, _)| name == "segments") else {
        return Ok(vec![n]);
    };
    let lens = t.with_data(|data, _| {
        data.iter()
            .map(|&x| (x >= 1.0 && x.fract() == 0.0).then_some(x as usize))
            .collect::<Option<Vec<usize>>>()
    })?;
    match lens {
        Some(l) if l.iter().sum::<usize>() == n => Ok(l),
        _ => bail!(
            "{}: `segments` must hold positive whole document lengths summing to the {n} tokens",
            input.metric
        ),
    }
}

/// Logits of packed documents: one packed forward `[T, V]` when the model packs, else
/// one forward per document (the same rows: a document's logits do not depend on the
/// others). Each tensor comes with the documents it covers.
fn packed_logits(
    model: &ModelRef,
    tokens: &[u32],
    segments: &[usize],
) -> Result<Vec<(Tensor, Vec<std::ops::Range<usize>>)>> {
    let logits = |tokens: &[u32], segments: Vec<usize>| -> Result<Tensor> {
        let request = ForwardRequest {
            segments,
            ..Default::default()
        };
        model
            .forward(tokens, &request)?
            .first_mut()
            .and_then(|v| v.remove("logits"))
            .ok_or_else(|| Error::msg("model_forward returned no logits"))
    };
    if model.info()?.packing {
        return Ok(vec![(
            logits(tokens, segments.to_vec())?,
            segment_ranges(segments),
        )]);
    }
    segment_ranges(segments)
        .into_iter()
        .map(|r| Ok((logits(&tokens[r.clone()], Vec::new())?, vec![r])))
        .collect()
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
    let segments = segments(input, tokens.len())?;
    let model = input.model()?;
    let opts = TokenStatsOptions {
        temperature: law.temperature,
        ..Default::default()
    };
    let fail = |e: stats::TokenStatsError| Error::msg(format!("{}: {e}", input.metric));
    let stats = if segments.len() == 1 {
        model
            .logits(tokens)?
            .with_data(|data, shape| stats::token_stats(data, shape[1], tokens, &opts))?
            .map_err(fail)?
    } else {
        let mut local = Vec::with_capacity(tokens.len());
        for (logits, docs) in packed_logits(model, tokens, &segments)? {
            // Rows of `logits` start at the first of its documents.
            let first = docs.first().map_or(0, |r| r.start);
            logits.with_data(|data, shape| -> Result<()> {
                let vocab = shape[1];
                for r in docs.iter().filter(|r| r.len() > 1) {
                    // A one-token document has nothing scored (its only value is the NaN).
                    let rows = &data[(r.start - first) * vocab..(r.end - first) * vocab];
                    local.extend(
                        stats::local_stats(rows, vocab, &tokens[r.clone()], &opts).map_err(fail)?,
                    );
                }
                Ok(())
            })??;
        }
        let corpus = stats::CorpusStats::from_local(&local, law.temperature).map_err(fail)?;
        stats::TokenStats { local, corpus }
    };
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
            segments,
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
