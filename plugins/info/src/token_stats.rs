//! Per-token (local) Boltzmann quantities of a teacher-forced pass, and their corpus
//! aggregates: cross-entropy, perplexity, bits per token, mean entropy (`docs/measures.md` M1).
//!
//! # Alignment convention
//!
//! The input is a `[T, V]` row-major logits buffer from one forward pass over the
//! tokens `x_0 .. x_{T−1}`. Row `t` is the model's law for the **next** token given the
//! prefix `x_0..x_t`, so it is scored against `x_{t+1}`:
//!
//! ```text
//! row 0 → x_1,  row 1 → x_2,  …,  row T−2 → x_{T−1};   row T−1 is not used
//! ```
//!
//! `T` tokens give `T − 1` scored positions; the first token `x_0` is never scored
//! (nothing predicts it) and the last row is never read (it predicts a token beyond the
//! sequence). Local values are indexed by the predicting row `t = 0..T−2`.
//!
//! All values are in nats (bits per token divide by ln 2).
//!
//! # Uncertainty
//!
//! A corpus mean carries the standard error `s / √n` (`s` the sample standard deviation,
//! denominator `n − 1`). Positions of one text are not independent, so this SE is the
//! i.i.d. approximation; it is reported as such. Perplexity's SE is the delta-method
//! `exp(CE) · SE(CE)`.

use std::fmt;
use std::ops::Range;

use crate::thermo::{check_temperature, Scan, ThermoError};
use std::f64::consts::LN_2;

/// Why token statistics could not be computed.
#[derive(Debug, Clone, PartialEq)]
pub enum TokenStatsError {
    /// The vocabulary size was 0.
    EmptyVocabulary,
    /// The vocabulary had more entries than u32 token ids can name.
    VocabularyTooLarge { vocab: usize },
    /// `logits.len()` was not `tokens.len() · vocab`.
    ShapeMismatch {
        logits_len: usize,
        tokens: usize,
        vocab: usize,
    },
    /// Fewer than 2 tokens: nothing to score.
    NoScoredPositions { tokens: usize },
    /// A token id was not inside the vocabulary.
    TokenOutOfRange {
        /// Index of the token in the sequence.
        index: usize,
        token: u32,
        vocab: usize,
    },
    /// The law at a row could not be formed (bad logit, bad temperature).
    Row { row: usize, source: ThermoError },
}

impl fmt::Display for TokenStatsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::EmptyVocabulary => write!(f, "vocabulary size must be > 0"),
            Self::VocabularyTooLarge { vocab } => write!(
                f,
                "vocabulary of {vocab} entries is larger than u32 token ids can name"
            ),
            Self::ShapeMismatch {
                logits_len,
                tokens,
                vocab,
            } => write!(
                f,
                "logits have {logits_len} values, expected [T, V] = [{tokens}, {vocab}] = {}",
                tokens.saturating_mul(*vocab)
            ),
            Self::NoScoredPositions { tokens } => write!(
                f,
                "need at least 2 tokens to score a next-token prediction, got {tokens}"
            ),
            Self::TokenOutOfRange {
                index,
                token,
                vocab,
            } => write!(
                f,
                "token {index} has id {token}, outside the vocabulary (size {vocab})"
            ),
            Self::Row { row, source } => write!(f, "logits row {row}: {source}"),
        }
    }
}

impl std::error::Error for TokenStatsError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Row { source, .. } => Some(source),
            _ => None,
        }
    }
}

/// Options of [`token_stats`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TokenStatsOptions {
    /// Temperature of the Boltzmann law (1 = the model's own law). Finite, > 0.
    pub temperature: f64,
    /// Worker threads for the per-row loop: 0 = automatic (available cores, fewer for
    /// small inputs), 1 = serial. Threads are scoped: none outlives the call. The
    /// results do not depend on the number of threads.
    pub threads: usize,
}

impl Default for TokenStatsOptions {
    fn default() -> Self {
        Self {
            temperature: 1.0,
            threads: 0,
        }
    }
}

/// Local values at one scored position: row `position` predicting `x_{position+1}`.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct PositionStats {
    /// The predicting row `t` (0-based); the observed token is `x_{t+1}`.
    pub position: usize,
    /// The observed next token `x_{t+1}`.
    pub target: u32,
    /// `−ln p(x_{t+1} | x_0..x_t)`, nats (`+inf` if the target is masked).
    pub surprisal: f64,
    /// Entropy `H` of the law, nats.
    pub entropy: f64,
    /// Free energy `F = −T ln Z`.
    pub free_energy: f64,
    /// Internal energy `U = E_p[−z]`.
    pub internal_energy: f64,
    /// Heat capacity `C = Var_p(E)/T²`.
    pub heat_capacity: f64,
    /// Rank of the target, 1 = highest logit: `1 + #{v : z(v) > z(target)}` (tied
    /// entries share the best rank).
    pub rank: usize,
    /// The top-1 token (highest logit; the lowest id on ties): the greedy prediction.
    pub top1: u32,
}

/// A value with its standard error (`None` where undefined: fewer than 2 samples, or a
/// non-finite mean).
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct Estimate {
    pub value: f64,
    pub se: Option<f64>,
}

impl Estimate {
    /// Sample mean and its standard error `s/√n` (`s` with denominator `n − 1`).
    /// The mean of an empty slice is NaN.
    pub fn mean_of(values: &[f64]) -> Self {
        let n = values.len();
        let mean = values.iter().sum::<f64>() / n as f64;
        let se = if n >= 2 && mean.is_finite() {
            let ss: f64 = values.iter().map(|x| (x - mean) * (x - mean)).sum();
            Some((ss / (n - 1) as f64).sqrt() / (n as f64).sqrt())
        } else {
            None
        };
        Self { value: mean, se }
    }

    /// Applies a linear unit change (value and SE scale alike).
    pub fn map_linear(self, f: impl Fn(f64) -> f64) -> Self {
        Self {
            value: f(self.value),
            se: self.se.map(f),
        }
    }
}

/// Corpus aggregates over the scored positions.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct CorpusStats {
    /// Number of scored positions (`T − 1` for one sequence).
    pub n: usize,
    /// Temperature the laws were taken at.
    pub temperature: f64,
    /// Cross-entropy = mean surprisal, nats per token.
    pub cross_entropy: Estimate,
    /// `exp(cross_entropy)`, SE by the delta method `exp(CE) · SE(CE)`.
    pub perplexity: Estimate,
    /// Cross-entropy in bits per token.
    pub bits_per_token: Estimate,
    /// Mean entropy of the predicted laws, nats.
    pub entropy: Estimate,
    /// Mean free energy.
    pub free_energy: Estimate,
    /// Mean internal energy.
    pub internal_energy: Estimate,
    /// Mean heat capacity.
    pub heat_capacity: Estimate,
    /// Fraction of positions whose observed token is the top-1 token (greedy accuracy).
    pub top1_accuracy: Estimate,
}

impl CorpusStats {
    /// Aggregates local values (any subset of positions, e.g. only a continuation after
    /// a prompt, or several sequences concatenated). Errors on an empty slice.
    pub fn from_local(local: &[PositionStats], temperature: f64) -> Result<Self, TokenStatsError> {
        if local.is_empty() {
            return Err(TokenStatsError::NoScoredPositions { tokens: 0 });
        }
        let column = |f: fn(&PositionStats) -> f64| -> Estimate {
            let v: Vec<f64> = local.iter().map(f).collect();
            Estimate::mean_of(&v)
        };
        let cross_entropy = column(|p| p.surprisal);
        let ppl = cross_entropy.value.exp();
        Ok(Self {
            n: local.len(),
            temperature,
            cross_entropy,
            perplexity: Estimate {
                value: ppl,
                se: cross_entropy.se.map(|se| ppl * se),
            },
            bits_per_token: cross_entropy.map_linear(|x| x / LN_2),
            entropy: column(|p| p.entropy),
            free_energy: column(|p| p.free_energy),
            internal_energy: column(|p| p.internal_energy),
            heat_capacity: column(|p| p.heat_capacity),
            top1_accuracy: column(|p| f64::from(u8::from(p.top1 == p.target))),
        })
    }
}

/// Local values for every scored position, and their corpus aggregates.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct TokenStats {
    /// One entry per scored position `t = 0..T−2`, in order.
    pub local: Vec<PositionStats>,
    pub corpus: CorpusStats,
}

impl TokenStats {
    /// One local quantity as a column (for a per-token tensor in a result).
    pub fn column(&self, f: impl Fn(&PositionStats) -> f64) -> Vec<f64> {
        self.local.iter().map(f).collect()
    }
}

/// Local values of one law `row` scored against the observed token `target`.
pub fn position_stats<L: Copy + Into<f64>>(
    row: &[L],
    target: u32,
    temperature: f64,
) -> Result<PositionStats, ThermoError> {
    let index = target as usize;
    let scan = Scan::new(row, temperature, Some(index))?;
    let b = scan.boltzmann();
    Ok(PositionStats {
        position: 0,
        target,
        surprisal: scan.surprisal(row[index].into()),
        entropy: b.entropy,
        free_energy: b.free_energy,
        internal_energy: b.internal_energy,
        heat_capacity: b.heat_capacity,
        rank: scan.rank(),
        // The row length is the vocabulary, whose ids are u32 (checked by the callers).
        top1: scan.argmax() as u32,
    })
}

/// Below this many logits per thread, threading costs more than it saves.
const MIN_LOGITS_PER_THREAD: usize = 1 << 18;

fn thread_count(requested: usize, rows: usize, vocab: usize) -> usize {
    let want = if requested == 0 {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        cores.min(rows.saturating_mul(vocab) / MIN_LOGITS_PER_THREAD)
    } else {
        requested
    };
    want.clamp(1, rows.max(1))
}

/// Per-position local values (see the module docs for the alignment): `logits` is
/// `[tokens.len(), vocab]` row-major, row `t` scored against `tokens[t + 1]`.
pub fn local_stats<L: Copy + Into<f64> + Sync>(
    logits: &[L],
    vocab: usize,
    tokens: &[u32],
    options: &TokenStatsOptions,
) -> Result<Vec<PositionStats>, TokenStatsError> {
    if vocab == 0 {
        return Err(TokenStatsError::EmptyVocabulary);
    }
    if tokens.len().checked_mul(vocab) != Some(logits.len()) {
        return Err(TokenStatsError::ShapeMismatch {
            logits_len: logits.len(),
            tokens: tokens.len(),
            vocab,
        });
    }
    if tokens.len() < 2 {
        return Err(TokenStatsError::NoScoredPositions {
            tokens: tokens.len(),
        });
    }
    if let Some((index, &token)) = tokens
        .iter()
        .enumerate()
        .find(|(_, &x)| x as usize >= vocab)
    {
        return Err(TokenStatsError::TokenOutOfRange {
            index,
            token,
            vocab,
        });
    }
    let temperature = options.temperature;
    check_temperature(temperature).map_err(|source| TokenStatsError::Row { row: 0, source })?;
    // Top-1 ids are reported as u32; a vocabulary beyond that cannot hold u32 tokens.
    if u32::try_from(vocab - 1).is_err() {
        return Err(TokenStatsError::VocabularyTooLarge { vocab });
    }

    let rows = tokens.len() - 1;
    let score = |range: Range<usize>| -> Result<Vec<PositionStats>, TokenStatsError> {
        range
            .map(|t| {
                let row = &logits[t * vocab..(t + 1) * vocab];
                position_stats(row, tokens[t + 1], temperature)
                    .map(|p| PositionStats { position: t, ..p })
                    .map_err(|source| TokenStatsError::Row { row: t, source })
            })
            .collect()
    };

    let threads = thread_count(options.threads, rows, vocab);
    if threads == 1 {
        return score(0..rows);
    }
    let chunk = rows.div_ceil(threads);
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..rows)
            .step_by(chunk)
            .map(|start| {
                let score = &score;
                scope.spawn(move || score(start..(start + chunk).min(rows)))
            })
            .collect();
        let mut out = Vec::with_capacity(rows);
        // Chunks are joined in order, so the first error reported is the earliest row's.
        let mut first_error = None;
        for handle in handles {
            match handle.join() {
                Ok(Ok(part)) => out.extend(part),
                Ok(Err(e)) => {
                    first_error.get_or_insert(e);
                }
                Err(panic) => std::panic::resume_unwind(panic),
            }
        }
        match first_error {
            Some(e) => Err(e),
            None => Ok(out),
        }
    })
}

/// Local values and corpus aggregates of a teacher-forced pass: `logits` is
/// `[tokens.len(), vocab]` row-major, row `t` scored against `tokens[t + 1]` (so
/// `tokens.len() − 1` positions; see the module docs).
pub fn token_stats<L: Copy + Into<f64> + Sync>(
    logits: &[L],
    vocab: usize,
    tokens: &[u32],
    options: &TokenStatsOptions,
) -> Result<TokenStats, TokenStatsError> {
    let local = local_stats(logits, vocab, tokens, options)?;
    let corpus = CorpusStats::from_local(&local, options.temperature)?;
    Ok(TokenStats { local, corpus })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::f64::consts::LN_2;

    fn close(got: f64, want: f64, tol: f64) {
        assert!(
            (got - want).abs() <= tol,
            "got {got}, want {want} (|diff| = {} > {tol})",
            (got - want).abs()
        );
    }

    /// Three tokens of vocabulary, four tokens of text, three scored positions:
    /// row 0 = (0, ln2, ln4) → p = (1,2,4)/7, next token 1: −ln(2/7) = ln 3.5;
    /// row 1 = (0, 0, 0)     → uniform,        next token 2: ln 3;
    /// row 2 = (ln4, 0, −inf) → p = (4/5, 1/5, 0), next token 0: ln 1.25;
    /// row 3 is never read (NaN on purpose).
    fn tiny() -> (Vec<f32>, Vec<u32>) {
        let l2 = LN_2 as f32;
        let l4 = 4f64.ln() as f32;
        let logits = vec![
            0.0,
            l2,
            l4,
            0.0,
            0.0,
            0.0,
            l4,
            0.0,
            f32::NEG_INFINITY,
            f32::NAN,
            f32::NAN,
            f32::NAN,
        ];
        (logits, vec![2, 1, 2, 0])
    }

    #[test]
    fn tiny_vocabulary_by_hand() {
        let (logits, tokens) = tiny();
        let st = token_stats(&logits, 3, &tokens, &TokenStatsOptions::default()).unwrap();
        assert_eq!(st.local.len(), 3);
        let tol = 1e-7; // f32 logits

        let s = [3.5f64.ln(), 3f64.ln(), 1.25f64.ln()];
        let h = [
            7f64.ln() - (10.0 / 7.0) * LN_2,
            3f64.ln(),
            -(0.8 * 0.8f64.ln() + 0.2 * 0.2f64.ln()),
        ];
        let f = [-(7f64.ln()), -(3f64.ln()), -(5f64.ln())];
        for (t, p) in st.local.iter().enumerate() {
            assert_eq!(p.position, t);
            assert_eq!(p.target, tokens[t + 1]);
            close(p.surprisal, s[t], tol);
            close(p.entropy, h[t], tol);
            close(p.free_energy, f[t], tol);
            close(p.entropy, p.internal_energy - p.free_energy, 1e-12);
        }
        // Ranks and greedy predictions.
        assert_eq!(
            st.local
                .iter()
                .map(|p| (p.rank, p.top1))
                .collect::<Vec<_>>(),
            vec![(2, 2), (1, 0), (1, 0)]
        );
        // Heat capacity: 26/49 ln²2; 0 (uniform); 0.8·0.2·ln²4.
        close(st.local[0].heat_capacity, 26.0 / 49.0 * LN_2 * LN_2, tol);
        assert_eq!(st.local[1].heat_capacity, 0.0);
        close(st.local[2].heat_capacity, 0.16 * 4f64.ln().powi(2), tol);

        // Corpus: CE = ln(3.5 · 3 · 1.25)/3, perplexity = 13.125^(1/3).
        let c = &st.corpus;
        assert_eq!(c.n, 3);
        close(c.cross_entropy.value, 13.125f64.ln() / 3.0, tol);
        close(c.cross_entropy.value, 0.858_172_936_2, tol);
        close(c.cross_entropy.se.unwrap(), 0.320_617_813_9, tol);
        close(c.perplexity.value, 13.125f64.cbrt(), tol);
        close(c.perplexity.value, 2.358_846_990_2, tol);
        close(c.perplexity.se.unwrap(), 0.756_288_365_3, tol);
        close(c.bits_per_token.value, 1.238_081_839_2, tol);
        close(c.bits_per_token.se.unwrap(), 0.462_553_730_1, tol);
        close(c.entropy.value, 0.851_571_534_4, tol);
        close(c.entropy.se.unwrap(), 0.180_366_106_1, tol);
        close(c.free_energy.value, -1.551_320_116_7, tol);
        close(c.free_energy.se.unwrap(), 0.246_313_942_4, tol);
        // Greedy hits: only row 2 (row 1's tie goes to id 0, the target is 2).
        close(c.top1_accuracy.value, 1.0 / 3.0, 1e-15);

        // SE by its definition, from the local column.
        let col = st.column(|p| p.surprisal);
        let m = col.iter().sum::<f64>() / 3.0;
        let sd = (col.iter().map(|x| (x - m).powi(2)).sum::<f64>() / 2.0).sqrt();
        close(c.cross_entropy.se.unwrap(), sd / 3f64.sqrt(), 1e-15);
    }

    #[test]
    fn results_serialize_to_json() {
        let (logits, tokens) = tiny();
        let st = token_stats(&logits, 3, &tokens, &TokenStatsOptions::default()).unwrap();
        let json = serde_json::to_value(&st).unwrap();
        assert_eq!(json["local"].as_array().unwrap().len(), 3);
        assert_eq!(json["corpus"]["n"], 3);
        assert!(json["corpus"]["cross_entropy"]["se"].is_number());
    }

    #[test]
    fn temperature_applies_to_every_row() {
        let (logits, tokens) = tiny();
        let t = 0.5;
        let opts = TokenStatsOptions {
            temperature: t,
            threads: 1,
        };
        let st = token_stats(&logits, 3, &tokens, &opts).unwrap();
        // Row 0 at T = 1/2 is softmax(0, 2 ln2, 2 ln4) = (1, 4, 16)/21.
        close(st.local[0].surprisal, (21.0f64 / 4.0).ln(), 1e-6);
        assert_eq!(st.corpus.temperature, t);
    }

    #[test]
    fn masked_target_and_short_inputs() {
        // The observed token is masked: surprisal +inf, CE +inf, SE undefined.
        let logits = [0.0f32, f32::NEG_INFINITY, 0.0, 0.0];
        let st = token_stats(&logits, 2, &[0, 1], &TokenStatsOptions::default()).unwrap();
        assert_eq!(st.local[0].surprisal, f64::INFINITY);
        assert_eq!(st.local[0].rank, 2);
        assert_eq!(st.corpus.cross_entropy.value, f64::INFINITY);
        assert_eq!(st.corpus.cross_entropy.se, None);
        // Two tokens: one position, no SE.
        let st = token_stats(&[0.0f32, 0.0, 9.0, 9.0], 2, &[0, 1], &Default::default()).unwrap();
        close(st.corpus.cross_entropy.value, LN_2, 1e-15);
        assert_eq!(st.corpus.cross_entropy.se, None);
        assert_eq!(st.corpus.perplexity.se, None);
        close(st.corpus.perplexity.value, 2.0, 1e-15);
    }

    #[test]
    fn bad_inputs() {
        let (logits, tokens) = tiny();
        let opts = TokenStatsOptions::default();
        assert!(matches!(
            token_stats(&logits, 4, &tokens, &opts),
            Err(TokenStatsError::ShapeMismatch { .. })
        ));
        assert_eq!(
            token_stats(&logits[..0], 0, &[], &opts),
            Err(TokenStatsError::EmptyVocabulary)
        );
        assert_eq!(
            token_stats(&logits[..3], 3, &[1], &opts),
            Err(TokenStatsError::NoScoredPositions { tokens: 1 })
        );
        assert_eq!(
            token_stats(&logits, 3, &[0, 1, 3, 0], &opts),
            Err(TokenStatsError::TokenOutOfRange {
                index: 2,
                token: 3,
                vocab: 3
            })
        );
        // A NaN in a scored row is an error that names the row.
        let mut bad = logits.clone();
        bad[4] = f32::NAN;
        assert_eq!(
            token_stats(&bad, 3, &tokens, &opts),
            Err(TokenStatsError::Row {
                row: 1,
                source: ThermoError::NanLogit { index: 1 }
            })
        );
        let cold = TokenStatsOptions {
            temperature: 0.0,
            threads: 1,
        };
        assert!(matches!(
            token_stats(&logits, 3, &tokens, &cold),
            Err(TokenStatsError::Row {
                source: ThermoError::InvalidTemperature(_),
                ..
            })
        ));
        assert!(CorpusStats::from_local(&[], 1.0).is_err());
        let msg = token_stats(&bad, 3, &tokens, &opts)
            .unwrap_err()
            .to_string();
        assert!(msg.contains("row 1") && msg.contains("NaN"), "{msg}");
    }

    #[test]
    fn threads_do_not_change_results() {
        // 97 tokens over a 601-entry vocabulary, pseudo-random logits.
        let (t, v) = (97usize, 601usize);
        let mut x = 0x2545_F491_4F6C_DD1Du64;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let logits: Vec<f32> = (0..t * v)
            .map(|_| ((next() >> 40) as f32 / (1u32 << 24) as f32 - 0.5) * 12.0)
            .collect();
        let tokens: Vec<u32> = (0..t).map(|_| (next() % v as u64) as u32).collect();
        let serial = token_stats(
            &logits,
            v,
            &tokens,
            &TokenStatsOptions {
                temperature: 1.0,
                threads: 1,
            },
        )
        .unwrap();
        for threads in [0, 2, 3, 8, 200] {
            let par = token_stats(
                &logits,
                v,
                &tokens,
                &TokenStatsOptions {
                    temperature: 1.0,
                    threads,
                },
            )
            .unwrap();
            assert_eq!(par, serial, "threads = {threads}");
        }
        // Each local value agrees with the single-row functions.
        for p in &serial.local {
            let row = &logits[p.position * v..(p.position + 1) * v];
            let s = crate::thermo::surprisal(row, p.target as usize, 1.0).unwrap();
            assert_eq!(p.surprisal, s);
            let b = crate::thermo::boltzmann(row, 1.0).unwrap();
            assert_eq!(p.entropy, b.entropy);
            let greater = row.iter().filter(|&&z| z > row[p.target as usize]).count();
            assert_eq!(p.rank, greater + 1);
        }
        // A thread's error is reported as the earliest bad row.
        let mut bad = logits.clone();
        bad[80 * v + 5] = f32::NAN;
        bad[20 * v + 7] = f32::INFINITY;
        let err = local_stats(
            &bad,
            v,
            &tokens,
            &TokenStatsOptions {
                temperature: 1.0,
                threads: 4,
            },
        )
        .unwrap_err();
        assert_eq!(
            err,
            TokenStatsError::Row {
                row: 20,
                source: ThermoError::InfiniteLogit { index: 7 }
            }
        );
    }
}
