//! The paper's general autoregressive LLM in exact finite-order form (Bai 2025, arXiv
//! 2511.01202, its "general definition of an autoregressive LLM", as reconstructed in
//! `docs/measures.md`): an order-k token Markov model (n-gram) with a Boltzmann output
//!
//! ```text
//! p_T(v | x_{<t}) = exp(ln p(v | x_{t-k..t}) / T) / Z_t,     logits z_t(v) = ln p(v | ·) / T
//! ```
//!
//! where `p` is the smoothed n-gram law fitted to token sequences. It is the ground truth
//! the information measures are tested against: every probability is exact (computed in
//! f64 from integer counts), deterministic, and causal.
//!
//! # Contexts
//!
//! * Only the last `order` tokens of a context matter ([`NgramModel::window`]).
//! * Start of a sequence, without a BOS token (`bos = None`, the default): a position
//!   `t < k` has only `t` previous tokens, and the model conditions on exactly those: it
//!   uses the order-`t` law (raw counts of `t`-token contexts, smoothed the same way).
//!   This keeps the model exact and causal; it is the law of the data's order-`t`
//!   conditional, not a padded order-k one.
//! * With a BOS token (`bos = Some(b)`), every sequence is left-padded with `k` copies of
//!   `b` when fitting, and every context shorter than `k` is left-padded the same way when
//!   predicting, so every position uses an order-k context. `b` is an ordinary vocabulary
//!   id; it is never a training target (only padding), so its probability is small
//!   (Kneser-Ney) or zero (AddK with k = 0).
//!
//! # Smoothing
//!
//! * [`Smoothing::KneserNey`]: interpolated Kneser-Ney with one absolute discount
//!   `D ∈ (0, 1]` at every level (Chen & Goodman 1999, eq. for interpolated KN). The top
//!   level uses raw counts, lower levels continuation counts `N1+(• ctx v)`, and the
//!   recursion ends in the uniform law over the vocabulary, so every token has `p > 0`:
//!   `p_n(v|c) = max(c(c v) − D, 0)/c(c) + D·N1+(c •)/c(c) · p_{n−1}(v|c')`, with `c'` the
//!   context less its oldest token. A context never seen at a level passes the lower law
//!   through unchanged (interpolation weight 1).
//! * [`Smoothing::AddK`]: `p(v|c) = (c(c v) + k) / (c(c) + k·V)`; `k = 0` is maximum
//!   likelihood (unseen successors of a seen context get `p = 0`, log-prob `-inf`). For any
//!   `k`, an unseen context backs off to its longest suffix seen in training (dropping the
//!   oldest tokens), down to the unigram law; the uniform law is used only if no token at
//!   all was seen (impossible for a fitted model).
//!
//! # Storage
//!
//! Counts are sparse: per context length, the distinct contexts sorted in one flat array
//! with their successors in CSR layout, found by binary search (`table.rs`). Memory is a
//! few bytes per distinct n-gram for any vocabulary size; fitting is one sort per level;
//! every float sum runs in a fixed order, so results are deterministic bit for bit.
//! Only raw counts are kept as data; Kneser-Ney continuation counts are derived from them.
//!
//! # Position ablation
//!
//! [`context_without`] deletes positions from a context: the token leaves the context and
//! older tokens slide into the window. Deleting a position older than `t − k` therefore
//! leaves the law bit-identical; deleting one inside the window changes it.

use serde::{Deserialize, Serialize};

use crate::rng::SplitMix64;
use table::{Row, Table};

pub(crate) mod table;

/// How the n-gram counts are turned into a next-token law.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Smoothing {
    /// Interpolated Kneser-Ney with absolute discount `0 < discount <= 1` at every level.
    KneserNey { discount: f64 },
    /// Add-k (Lidstone) smoothing, `k >= 0`; `k = 0` is maximum likelihood.
    AddK { k: f64 },
}

impl Smoothing {
    /// Checks the parameter range.
    pub fn validate(&self) -> Result<(), String> {
        match *self {
            Smoothing::KneserNey { discount } => {
                if !(discount > 0.0 && discount <= 1.0) {
                    return Err(format!(
                        "Kneser-Ney discount must be in (0, 1], got {discount} \
                         (counts are integers >= 1, so a larger discount breaks normalization)"
                    ));
                }
            }
            Smoothing::AddK { k } => {
                if !(k >= 0.0 && k.is_finite()) {
                    return Err(format!("add-k smoothing needs a finite k >= 0, got {k}"));
                }
            }
        }
        Ok(())
    }
}

/// What token ids mean as text (written to `config.json` as `"tokenizer"`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Tokenizer {
    /// Token id = byte value (needs `vocab_size >= 256`).
    #[serde(rename = "bytes")]
    Bytes,
    /// A Hugging Face `tokenizer.json` lies beside `config.json` (not written by `save`).
    #[serde(rename = "tokenizer.json")]
    TokenizerJson,
    /// Bare ids with no text mapping (toy alphabets).
    #[serde(rename = "ids")]
    Ids,
}

/// Continuation counts `N1+(• c v)` for levels `0..order`, derived from the raw counts of
/// the level above (integer arithmetic, so they are reconstructed exactly on load).
fn continuation(raw: &[Table], order: usize) -> Result<Vec<Table>, String> {
    (0..order)
        .map(|m| {
            let upper = &raw[m + 1];
            let mut buf = Vec::with_capacity(upper.num_ngrams() * (m + 1));
            for (ctx, row) in upper.iter() {
                for &v in row.tokens {
                    buf.extend_from_slice(&ctx[1..]);
                    buf.push(v);
                }
            }
            let starts = (0..upper.num_ngrams()).map(|i| i * (m + 1)).collect();
            Table::from_grams(m, &buf, starts)
        })
        .collect()
}

fn check_temperature(t: f64) -> Result<(), String> {
    if !(t > 0.0 && t.is_finite()) {
        return Err(format!("temperature must be finite and > 0, got {t}"));
    }
    Ok(())
}

/// `ln Σ exp(x)` in f64, stable; `-inf` entries are skipped.
pub fn log_sum_exp(xs: &[f64]) -> f64 {
    let m = xs.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    if m == f64::NEG_INFINITY || !m.is_finite() {
        return m;
    }
    let s: f64 = xs.iter().map(|&x| (x - m).exp()).sum();
    m + s.ln()
}

/// The context for predicting position `t` of `tokens` (i.e. `tokens[..t]`) with the
/// positions in `removed` deleted: each removed token leaves the context and older tokens
/// slide into the window. Positions `>= t` in `removed` are ignored, duplicates are
/// harmless, and `t` is clamped to `tokens.len()`.
pub fn context_without(tokens: &[u32], t: usize, removed: &[usize]) -> Vec<u32> {
    let t = t.min(tokens.len());
    tokens[..t]
        .iter()
        .enumerate()
        .filter(|(i, _)| !removed.contains(i))
        .map(|(_, &x)| x)
        .collect()
}

/// An order-k token n-gram model with a Boltzmann (temperature) output law.
#[derive(Clone, Debug, PartialEq)]
pub struct NgramModel {
    pub(crate) order: usize,
    pub(crate) vocab_size: usize,
    pub(crate) smoothing: Smoothing,
    pub(crate) temperature: f64,
    pub(crate) bos: Option<u32>,
    pub(crate) tokenizer: Tokenizer,
    /// `raw[n]`: contexts of length `n` (n = 0..=order) -> successor counts.
    pub(crate) raw: Vec<Table>,
    /// `cont[n]`: Kneser-Ney continuation counts for contexts of length `n` (n < order).
    pub(crate) cont: Vec<Table>,
}

/// Fits an order-`order` model without a BOS token (see the module docs for how the first
/// `order` positions of a sequence are handled).
pub fn fit(
    sequences: &[Vec<u32>],
    order: usize,
    vocab_size: usize,
    smoothing: Smoothing,
    temperature: f64,
) -> Result<NgramModel, String> {
    fit_with_bos(sequences, order, vocab_size, smoothing, temperature, None)
}

/// Fits an order-`order` model; with `bos = Some(b)` every sequence is left-padded with
/// `order` copies of `b` (context only, never a target).
pub fn fit_with_bos(
    sequences: &[Vec<u32>],
    order: usize,
    vocab_size: usize,
    smoothing: Smoothing,
    temperature: f64,
    bos: Option<u32>,
) -> Result<NgramModel, String> {
    check_vocab(vocab_size)?;
    smoothing.validate()?;
    check_temperature(temperature)?;
    if let Some(b) = bos {
        if b as usize >= vocab_size {
            return Err(format!(
                "bos token {b} is out of range for vocab_size {vocab_size}"
            ));
        }
    }
    // All sequences, padded, in one buffer; `spans` = (start in buf, first target offset).
    let mut buf: Vec<u32> = Vec::new();
    let mut spans: Vec<(usize, usize, usize)> = Vec::new();
    let mut n_tokens = 0usize;
    let mut longest = 0usize;
    for (si, seq) in sequences.iter().enumerate() {
        for (pi, &tok) in seq.iter().enumerate() {
            if tok as usize >= vocab_size {
                return Err(format!(
                    "token {tok} at sequence {si}, position {pi} is out of range for \
                     vocab_size {vocab_size}"
                ));
            }
        }
        n_tokens += seq.len();
        longest = longest.max(seq.len());
        if seq.is_empty() {
            continue;
        }
        let begin = buf.len();
        let first = match bos {
            Some(b) => {
                buf.resize(begin + order, b);
                order
            }
            None => 0,
        };
        buf.extend_from_slice(seq);
        spans.push((begin, first, buf.len() - begin));
    }
    if n_tokens == 0 {
        return Err("no tokens to fit: every sequence is empty".to_string());
    }
    // Level n counts every target at local offset i >= n with its n previous tokens.
    let mut raw = Vec::with_capacity(order + 1);
    for n in 0..=order {
        let starts: Vec<usize> = spans
            .iter()
            .flat_map(|&(begin, first, len)| (first.max(n)..len).map(move |i| begin + i - n))
            .collect();
        raw.push(Table::from_grams(n, &buf, starts)?);
    }
    if raw[order].is_empty() {
        return Err(format!(
            "order {order} is too large for the data: the longest sequence has {longest} \
             tokens, and an order-{order} model needs a sequence of at least {} tokens \
             (or a bos token)",
            order + 1
        ));
    }
    let tokenizer = if vocab_size == 256 {
        Tokenizer::Bytes
    } else {
        Tokenizer::Ids
    };
    NgramModel::from_parts(
        order,
        vocab_size,
        smoothing,
        temperature,
        bos,
        tokenizer,
        raw,
    )
}

fn check_vocab(vocab_size: usize) -> Result<(), String> {
    if vocab_size == 0 || vocab_size as u64 > u32::MAX as u64 + 1 {
        return Err(format!("vocab_size must be in 1..=2^32, got {vocab_size}"));
    }
    Ok(())
}

impl NgramModel {
    /// Builds a model from raw counts (validated), deriving the continuation counts.
    pub(crate) fn from_parts(
        order: usize,
        vocab_size: usize,
        smoothing: Smoothing,
        temperature: f64,
        bos: Option<u32>,
        tokenizer: Tokenizer,
        raw: Vec<Table>,
    ) -> Result<Self, String> {
        check_vocab(vocab_size)?;
        smoothing.validate()?;
        check_temperature(temperature)?;
        if raw.len() != order + 1 {
            return Err(format!(
                "expected {} count levels, got {}",
                order + 1,
                raw.len()
            ));
        }
        let cont = continuation(&raw, order)?;
        let mut m = NgramModel {
            order,
            vocab_size,
            smoothing,
            temperature,
            bos,
            tokenizer: Tokenizer::Ids,
            raw,
            cont,
        };
        m.set_tokenizer(tokenizer)?;
        Ok(m)
    }

    /// k: the number of previous tokens the next token depends on (0 = unigram).
    pub fn order(&self) -> usize {
        self.order
    }
    pub fn vocab_size(&self) -> usize {
        self.vocab_size
    }
    pub fn smoothing(&self) -> Smoothing {
        self.smoothing
    }
    pub fn temperature(&self) -> f64 {
        self.temperature
    }
    pub fn bos(&self) -> Option<u32> {
        self.bos
    }
    pub fn tokenizer(&self) -> Tokenizer {
        self.tokenizer
    }

    /// Changes the Boltzmann temperature (no refit needed).
    pub fn set_temperature(&mut self, temperature: f64) -> Result<(), String> {
        check_temperature(temperature)?;
        self.temperature = temperature;
        Ok(())
    }

    /// Changes the smoothing (no refit needed: all smoothings derive from the raw counts).
    pub fn set_smoothing(&mut self, smoothing: Smoothing) -> Result<(), String> {
        smoothing.validate()?;
        self.smoothing = smoothing;
        Ok(())
    }

    /// Sets what the ids mean as text; `Bytes` needs `vocab_size >= 256`.
    pub fn set_tokenizer(&mut self, tokenizer: Tokenizer) -> Result<(), String> {
        if tokenizer == Tokenizer::Bytes && self.vocab_size < 256 {
            return Err(format!(
                "tokenizer \"bytes\" needs vocab_size >= 256, got {}",
                self.vocab_size
            ));
        }
        self.tokenizer = tokenizer;
        Ok(())
    }

    /// Number of distinct contexts of length `level` seen in training (0 if level > order).
    pub fn num_contexts(&self, level: usize) -> usize {
        self.raw.get(level).map_or(0, |t| t.len())
    }

    /// Number of distinct `(level + 1)`-grams (context of length `level`, then a token).
    pub fn num_ngrams(&self, level: usize) -> usize {
        self.raw.get(level).map_or(0, |t| t.num_ngrams())
    }

    /// Raw training count of `token` after exactly `context` (`context.len() <= order`).
    pub fn count(&self, context: &[u32], token: u32) -> u64 {
        self.raw
            .get(context.len())
            .and_then(|t| t.get(context))
            .map_or(0, |r| r.count(token))
    }

    /// The part of `context` the law depends on: its last `order` tokens, left-padded with
    /// the bos token to exactly `order` tokens when there is one.
    pub fn window(&self, context: &[u32]) -> Vec<u32> {
        let k = self.order;
        let tail = &context[context.len().saturating_sub(k)..];
        match self.bos {
            Some(b) if tail.len() < k => {
                let mut w = vec![b; k - tail.len()];
                w.extend_from_slice(tail);
                w
            }
            _ => tail.to_vec(),
        }
    }

    /// AddK: the longest suffix of `w` seen as a context, and its row.
    fn addk_row(&self, w: &[u32]) -> Option<Row<'_>> {
        (0..=w.len()).find_map(|skip| {
            let ctx = &w[skip..];
            self.raw[ctx.len()].get(ctx)
        })
    }

    /// The fitted law at T = 1 for a window (`w.len() <= order`), as probabilities.
    fn base_probs(&self, w: &[u32]) -> Vec<f64> {
        let v = self.vocab_size;
        match self.smoothing {
            Smoothing::KneserNey { discount: d } => {
                let mut p = vec![1.0 / v as f64; v];
                let n = w.len();
                let rows = (0..n)
                    .map(|m| self.cont[m].get(&w[n - m..]))
                    .chain(std::iter::once(self.raw[n].get(w)));
                for row in rows.flatten() {
                    if row.total == 0 {
                        continue;
                    }
                    let total = row.total as f64;
                    let gamma = d * row.types() as f64 / total;
                    for x in p.iter_mut() {
                        *x *= gamma;
                    }
                    for (t, c) in row.iter() {
                        p[t as usize] += (c as f64 - d) / total;
                    }
                }
                p
            }
            Smoothing::AddK { k } => match self.addk_row(w) {
                Some(row) if row.total > 0 => {
                    let denom = row.total as f64 + k * v as f64;
                    let mut p = vec![(0.0 + k) / denom; v];
                    for (t, c) in row.iter() {
                        p[t as usize] = (c as f64 + k) / denom;
                    }
                    p
                }
                _ => vec![1.0 / v as f64; v],
            },
        }
    }

    /// The fitted law at T = 1 of one token; bit-identical to `base_probs(w)[token]`.
    fn base_prob(&self, w: &[u32], token: u32) -> f64 {
        let v = self.vocab_size;
        match self.smoothing {
            Smoothing::KneserNey { discount: d } => {
                let mut p = 1.0 / v as f64;
                let n = w.len();
                let rows = (0..n)
                    .map(|m| self.cont[m].get(&w[n - m..]))
                    .chain(std::iter::once(self.raw[n].get(w)));
                for row in rows.flatten() {
                    if row.total == 0 {
                        continue;
                    }
                    let total = row.total as f64;
                    let gamma = d * row.types() as f64 / total;
                    p *= gamma;
                    let c = row.count(token);
                    if c > 0 {
                        p += (c as f64 - d) / total;
                    }
                }
                p
            }
            Smoothing::AddK { k } => match self.addk_row(w) {
                Some(row) if row.total > 0 => {
                    let denom = row.total as f64 + k * v as f64;
                    (row.count(token) as f64 + k) / denom
                }
                _ => 1.0 / v as f64,
            },
        }
    }

    /// Natural-log next-token law at the model's temperature, length `vocab_size`,
    /// normalized in f64 (log-sum-exp). At T = 1 it is `ln p` of the fitted law as is
    /// (normalized by construction). Only the last `order` tokens of `context` matter.
    pub fn log_probs(&self, context: &[u32]) -> Vec<f64> {
        self.log_probs_at(context, self.temperature)
    }

    /// [`Self::log_probs`] at an explicit temperature `t > 0`.
    pub fn log_probs_at(&self, context: &[u32], t: f64) -> Vec<f64> {
        let w = self.window(context);
        let mut lp: Vec<f64> = self.base_probs(&w).into_iter().map(f64::ln).collect();
        if t != 1.0 {
            for x in lp.iter_mut() {
                *x /= t;
            }
            let lse = log_sum_exp(&lp);
            for x in lp.iter_mut() {
                *x -= lse;
            }
        }
        lp
    }

    /// Next-token probabilities at the model's temperature (exactly the fitted law at T = 1).
    pub fn probs(&self, context: &[u32]) -> Vec<f64> {
        if self.temperature == 1.0 {
            self.base_probs(&self.window(context))
        } else {
            self.log_probs(context).into_iter().map(f64::exp).collect()
        }
    }

    /// Logits `ln p / T` in f32 (`p` the fitted law), so `softmax(logits)` is the law at
    /// temperature T. Impossible tokens (AddK with k = 0) get `-inf`.
    pub fn logits(&self, context: &[u32]) -> Vec<f32> {
        let t = self.temperature;
        self.base_probs(&self.window(context))
            .into_iter()
            .map(|p| (p.ln() / t) as f32)
            .collect()
    }

    /// `ln p_T(token | context)`; equals `log_probs(context)[token]` bit for bit.
    /// A token `>= vocab_size` has probability 0 (returns `-inf`).
    pub fn log_prob(&self, context: &[u32], token: u32) -> f64 {
        if token as usize >= self.vocab_size {
            return f64::NEG_INFINITY;
        }
        if self.temperature == 1.0 {
            self.base_prob(&self.window(context), token).ln()
        } else {
            self.log_probs(context)[token as usize]
        }
    }

    /// Surprisals `-ln p_T(x_t | x_{<t})` of every position of `tokens` (position 0 is
    /// predicted from the empty context).
    pub fn surprisals(&self, tokens: &[u32]) -> Vec<f64> {
        (0..tokens.len())
            .map(|t| -self.log_prob(&tokens[..t], tokens[t]))
            .collect()
    }

    /// Entropy (nats) of the next-token law at the model's temperature.
    pub fn conditional_entropy(&self, context: &[u32]) -> f64 {
        entropy_of_log_probs(&self.log_probs(context))
    }

    /// Inverse-CDF sampling: the first token (in id order) whose cumulative probability
    /// exceeds `rng_u · Σp`. `rng_u` is clamped into `[0, 1)` (NaN counts as 0); a token
    /// of probability 0 is never returned.
    pub fn sample(&self, context: &[u32], rng_u: f64) -> u32 {
        let p = self.probs(context);
        let u = if rng_u >= 0.0 {
            rng_u.min(1.0 - f64::EPSILON / 2.0)
        } else {
            0.0
        };
        let total: f64 = p.iter().sum();
        let target = u * total;
        let mut acc = 0.0;
        let mut last = 0u32;
        for (i, &x) in p.iter().enumerate() {
            if x > 0.0 {
                acc += x;
                last = i as u32;
                if acc > target {
                    return i as u32;
                }
            }
        }
        last
    }

    /// Generates `n` tokens after `prompt` (returns only the new tokens), drawing one
    /// SplitMix64 uniform per token from `seed`: the same seed gives the same tokens.
    pub fn generate(&self, prompt: &[u32], n: usize, seed: u64) -> Vec<u32> {
        let mut rng = SplitMix64::new(seed);
        let mut seq = prompt.to_vec();
        for _ in 0..n {
            let start = seq.len().saturating_sub(self.order);
            let tok = self.sample(&seq[start..], rng.next_f64());
            seq.push(tok);
        }
        seq.split_off(prompt.len())
    }
}

/// `-Σ p ln p` from log-probabilities (terms with p = 0 are 0).
pub(crate) fn entropy_of_log_probs(lp: &[f64]) -> f64 {
    -lp.iter()
        .filter(|&&x| x > f64::NEG_INFINITY)
        .map(|&x| x.exp() * x)
        .sum::<f64>()
}

#[cfg(test)]
mod tests;
