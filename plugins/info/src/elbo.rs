//! `elbo`: the likelihood of a response given a prompt, one metric for every architecture
//! (`docs/measures.md` M8b).
//!
//! - A masked-diffusion model (not causal, with an ablation method `mask_token`: LLaDA)
//!   gets the low-variance **l-form** of its variational bound, as LLaDA's own likelihood
//!   code: draw a mask count l uniformly from 1..L (L response tokens), mask exactly l of
//!   them uniformly without replacement (prompt tokens never), and score
//!   `(L/l) Σ_masked −ln p(x_i | masked input)`. Its expectation bounds the negative
//!   log-likelihood from above, with equality for exact conditionals. The mask counts of
//!   the draws in one forward call (`batch`) are stratified: evenly spaced over 1..L from a
//!   random start, each still uniform on its own. The value is the mean over `draws` with
//!   its standard error `se` (the i.i.d. formula over draws; stratification usually makes
//!   it conservative) and `se_batches` (from the means of the batches, which are i.i.d.,
//!   so exactly valid, but noisier with few batches). The 1/t form (each token masked with probability t, weight 1/t) has
//!   infinite variance and is not offered.
//! - An autoregressive (causal) model gets the exact negative log-likelihood, the sum of
//!   the response tokens' surprisals (chain rule), standard error 0.
//!
//! So one script compares architectures on the same number: nats (or bits) for the whole
//! response, plus `per_token`.

use crate::streams::rng::Rng;
use crate::thermo;
use serde_json::json;
use tokit_sdk::{
    bail, CorpusMode, Error, ForwardRequest, InfoUnit, Metric, MetricInput, MetricOutput, Result,
    Variant,
};

/// The `elbo` metric.
pub struct Elbo;

/// Logits buffers kept in memory at once (bytes).
const CHUNK_BYTES: usize = 256 << 20;

/// An estimate from Monte Carlo draws: mean, standard error and every draw's value.
#[derive(Clone, Debug)]
pub struct LForm {
    pub mean: f64,
    pub se: f64,
    /// Standard error from the batch means (NaN with fewer than two full batches).
    pub se_batches: f64,
    pub values: Vec<f64>,
    /// Mask count l of each draw.
    pub counts: Vec<usize>,
}

/// Mask sets for `n` draws over response positions `prompt..len`, in batches of `batch`
/// whose mask counts are stratified over 1..L (L = len − prompt).
pub fn mask_sets(
    prompt: usize,
    len: usize,
    n: usize,
    batch: usize,
    rng: &mut Rng,
) -> Vec<Vec<Vec<usize>>> {
    let big_l = len - prompt;
    let mut out = Vec::new();
    let mut left = n;
    while left > 0 {
        let b = batch.min(left);
        left -= b;
        // Counts k, k + L/b, k + 2L/b, ... (rounded, wrapped into 1..L): a random start
        // makes each one uniform on 1..L, the spacing spreads the batch over the range.
        let k = 1 + rng.below(big_l);
        let sets = (0..b)
            .map(|j| {
                let x = (k as f64 + j as f64 * big_l as f64 / b as f64).round() as usize;
                let l = (x - 1) % big_l + 1;
                let mut pos: Vec<usize> = (prompt..len).collect();
                rng.shuffle(&mut pos);
                pos.truncate(l);
                pos.sort_unstable();
                pos
            })
            .collect();
        out.push(sets);
    }
    out
}

/// Mean and standard error (i.i.d. formula; 0 for a single value).
fn mean_se(v: &[f64]) -> (f64, f64) {
    let n = v.len() as f64;
    let mean = v.iter().sum::<f64>() / n;
    if v.len() < 2 {
        return (mean, 0.0);
    }
    let var = v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0);
    (mean, (var / n).sqrt())
}

/// The l-form estimate over `draws` draws. `score(sets)` returns, for each mask set, the sum
/// over its positions i of `−ln p(x_i | x with the set masked)`.
pub fn l_form(
    prompt: usize,
    len: usize,
    draws: usize,
    batch: usize,
    seed: u64,
    mut score: impl FnMut(&[Vec<usize>]) -> Result<Vec<f64>>,
) -> Result<LForm> {
    if prompt >= len {
        bail!("elbo: no response tokens to score ({len} tokens, prompt_tokens = {prompt})");
    }
    if draws == 0 || batch == 0 {
        bail!("elbo: `draws` and `batch` must be positive");
    }
    let big_l = (len - prompt) as f64;
    let mut rng = Rng::new(seed);
    let (mut values, mut counts) = (Vec::with_capacity(draws), Vec::with_capacity(draws));
    let mut batch_means = Vec::new();
    for sets in mask_sets(prompt, len, draws, batch, &mut rng) {
        tokit_sdk::check_cancelled()?;
        let sums = score(&sets)?;
        let start = values.len();
        for (set, s) in sets.iter().zip(sums) {
            values.push(big_l / set.len() as f64 * s);
            counts.push(set.len());
        }
        if sets.len() == batch {
            batch_means.push(mean_se(&values[start..]).0);
        }
        tokit_sdk::progress(values.len() as u64, draws as u64, "elbo");
    }
    let (mean, se) = mean_se(&values);
    let se_batches = if batch_means.len() < 2 {
        f64::NAN
    } else {
        mean_se(&batch_means).1
    };
    Ok(LForm {
        mean,
        se,
        se_batches,
        values,
        counts,
    })
}

tokit_sdk::params! {
    pub struct Params {
        /// leading tokens that are conditioned on and never masked (≥ 1 for autoregressive models)
        prompt_tokens: usize = 1,
        /// Monte Carlo draws (masked-diffusion models)
        draws: usize = 128,
        /// draws per forward call, their mask counts stratified over 1..L
        batch: usize = 16,
        /// seed of the mask draws
        seed: u64 = 0,
        /// `nats` or `bits`
        unit: InfoUnit = InfoUnit::Nats,
    }
}

impl Metric for Elbo {
    const NAME: &'static str = "elbo";
    const DESCRIPTION: &'static str = "negative log-likelihood of the response (tokens after `prompt_tokens`) given the prompt, comparable across architectures (M8b): exact for autoregressive models (sum of surprisals); for masked-diffusion models (LLaDA) the l-form of the variational bound, an upper bound on it, as a Monte Carlo mean with standard error; value in nats for the whole response";
    const NEEDS_MODEL: bool = true;
    const CORPUS: CorpusMode = CorpusMode::PerDocument;
    type Params = Params;

    fn compute(input: &MetricInput, p: Params) -> Result<MetricOutput> {
        let (unit, scale) = (p.unit.name(), p.unit.scale());
        let (prompt, draws, batch, seed) = (p.prompt_tokens, p.draws, p.batch, p.seed);
        let tokens = input.tokens_at_least(prompt + 1)?;
        let model = input.model()?;
        let info = model.info()?;
        let v = info.vocab_size;
        let fail = |e: thermo::ThermoError| Error::msg(format!("elbo: {e}"));
        let response = tokens.len() - prompt;
        let mut params = input.params.clone();
        for (k, val) in [("prompt_tokens", json!(prompt)), ("unit", json!(unit))] {
            params.insert(k.into(), val);
        }
        let mut out = MetricOutput {
            unit: p.unit.into(),
            params,
            ..Default::default()
        };

        if info.causal {
            if prompt == 0 {
                bail!("elbo: an autoregressive model cannot score the first token; `prompt_tokens` must be ≥ 1");
            }
            let logits = model.logits(tokens)?.to_vec()?;
            let nll = (prompt..tokens.len())
                .map(|t| thermo::surprisal(&logits[(t - 1) * v..t * v], tokens[t] as usize, 1.0))
                .sum::<std::result::Result<f64, _>>()
                .map_err(fail)?;
            out.value = Some(nll * scale);
            out.estimator = "exact (chain rule)".into();
            out = out
                .scalar("se", 0.0)
                .scalar("per_token", nll * scale / response as f64)
                .scalar("response_tokens", response as f64);
            return Ok(out);
        }

        if !info.ablation_methods.iter().any(|m| m == "mask_token") {
            bail!(
                "elbo: this {} model is not causal and has no `mask_token` ablation: neither an autoregressive likelihood nor a masked-diffusion bound applies",
                info.arch
            );
        }
        let mask = info.extra["mask_token_id"].as_u64();
        if let Some(i) = (prompt..tokens.len()).find(|&i| Some(tokens[i] as u64) == mask) {
            bail!("elbo: response token {i} is the mask token; the bound scores a fully observed response");
        }
        // Variants per forward call, so a batch's logits stay within CHUNK_BYTES.
        let per_call = (CHUNK_BYTES / (tokens.len() * v * 4).max(1)).max(1);
        let est = l_form(prompt, tokens.len(), draws, batch, seed, |sets| {
            let mut sums = Vec::with_capacity(sets.len());
            for chunk in sets.chunks(per_call) {
                let variants = chunk
                    .iter()
                    .map(|s| Variant {
                        ablate: s.clone(),
                        method: Some("mask_token".into()),
                        replace_with: None,
                    })
                    .collect();
                let request = ForwardRequest {
                    variants,
                    capture: vec![],
                    ..Default::default()
                };
                let outs = model.forward(tokens, &request)?;
                if outs.len() != chunk.len() {
                    bail!(
                        "elbo: the model returned {} outputs for {} variants",
                        outs.len(),
                        chunk.len()
                    );
                }
                for (set, o) in chunk.iter().zip(outs) {
                    let logits = o
                        .get("logits")
                        .ok_or_else(|| Error::msg("elbo: the model returned no logits"))?
                        .to_vec()?;
                    let row = |i: usize| &logits[i * v..(i + 1) * v];
                    let s = set
                        .iter()
                        .map(|&i| thermo::surprisal(row(i), tokens[i] as usize, 1.0))
                        .sum::<std::result::Result<f64, _>>()
                        .map_err(fail)?;
                    sums.push(s);
                }
            }
            Ok(sums)
        })?;
        out.value = Some(est.mean * scale);
        out.estimator = "monte-carlo (LLaDA l-form bound, stratified mask counts)".into();
        out.notes.push(
            "an upper bound on −ln p(response | prompt), tight for exact conditionals; se: i.i.d. formula over draws (usually conservative under stratification), se_batches: from the batch means (exact, noisier); running_mean / running_se[n − 1]: the estimate from the first n draws".into(),
        );
        let values: Vec<f32> = est.values.iter().map(|x| (x * scale) as f32).collect();
        let counts: Vec<f32> = est.counts.iter().map(|&l| l as f32).collect();
        // The estimate from the first n draws, n = 1..draws: convergence at a glance.
        let (running_mean, running_se): (Vec<f32>, Vec<f32>) = (1..=draws)
            .map(|n| {
                let (m, se) = mean_se(&est.values[..n]);
                let se = if n < 2 { f64::NAN } else { se };
                ((m * scale) as f32, (se * scale) as f32)
            })
            .unzip();
        out = out
            .scalar("se", est.se * scale)
            .scalar("se_batches", est.se_batches * scale)
            .scalar("per_token", est.mean * scale / response as f64)
            .scalar("per_token_se", est.se * scale / response as f64)
            .scalar("draws", draws as f64)
            .scalar("response_tokens", response as f64)
            .tensor("draw_values", &values, &[draws])?
            .tensor("mask_counts", &counts, &[draws])?
            .tensor("running_mean", &running_mean, &[draws])?
            .tensor("running_se", &running_se, &[draws])?;
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A joint law over `n` binary tokens and its exact conditionals: the predictor a
    /// perfect mask predictor would be.
    struct Joint {
        n: usize,
        p: Vec<f64>,
    }

    impl Joint {
        fn random(n: usize, seed: u64) -> Joint {
            let mut rng = Rng::new(seed);
            let w: Vec<f64> = (0..1 << n).map(|_| 0.05 + rng.uniform()).collect();
            let z: f64 = w.iter().sum();
            Joint {
                n,
                p: w.iter().map(|x| x / z).collect(),
            }
        }

        fn bit(s: usize, i: usize) -> usize {
            (s >> i) & 1
        }

        /// −ln p(x_i | x outside `masked`), summed over i in `masked`.
        fn score(&self, x: usize, masked: &[usize]) -> f64 {
            let agrees = |s: usize, skip: Option<usize>| {
                (0..self.n)
                    .filter(|j| !masked.contains(j) || Some(*j) == skip)
                    .all(|j| Self::bit(s, j) == Self::bit(x, j))
            };
            masked
                .iter()
                .map(|&i| {
                    let num: f64 = (0..1 << self.n)
                        .filter(|&s| agrees(s, Some(i)))
                        .map(|s| self.p[s])
                        .sum();
                    let den: f64 = (0..1 << self.n)
                        .filter(|&s| agrees(s, None))
                        .map(|s| self.p[s])
                        .sum();
                    -(num / den).ln()
                })
                .sum()
        }
    }

    /// The l-form expectation computed exactly: every l, every subset of size l.
    fn exact_expectation(big_l: usize, score: impl Fn(&[usize]) -> f64) -> f64 {
        let mut total = 0.0;
        for l in 1..=big_l {
            let subsets: Vec<Vec<usize>> = (0usize..1 << big_l)
                .filter(|s| s.count_ones() as usize == l)
                .map(|s| (0..big_l).filter(|i| (s >> i) & 1 == 1).collect())
                .collect();
            let mean: f64 = subsets.iter().map(|m| score(m)).sum::<f64>() / subsets.len() as f64;
            total += big_l as f64 / l as f64 * mean / big_l as f64;
        }
        total
    }

    fn estimate(len: usize, draws: usize, seed: u64, score: impl Fn(&[usize]) -> f64) -> LForm {
        l_form(0, len, draws, 16, seed, |sets| {
            Ok(sets.iter().map(|s| score(s)).collect())
        })
        .unwrap()
    }

    /// T20: with exact conditionals of a joint law the l-form expectation is the exact NLL,
    /// and the Monte Carlo estimate converges to it.
    #[test]
    fn t20_exact_oracle_equals_the_exact_nll() {
        let j = Joint::random(3, 7);
        for x in 0..8 {
            let nll = -j.p[x].ln();
            let exact = exact_expectation(3, |m| j.score(x, m));
            assert!((exact - nll).abs() < 1e-12, "x = {x}: {exact} vs {nll}");
        }
        let x = 0b101; // x = (1, 0, 1)
        let nll = -j.p[x].ln();
        let e = estimate(3, 4096, 1, |m| j.score(x, m));
        assert!(
            (e.mean - nll).abs() < 3.0 * e.se,
            "{} ± {} vs {nll}",
            e.mean,
            e.se
        );
    }

    /// T21: factorised oracle p = (.5, .3, .2), x = (0, 2, 1, 1, 0): NLL 5.4036779 nats.
    #[test]
    fn t21_factorised_oracle_and_se_shrinks_as_one_over_sqrt_draws() {
        let p = [0.5f64, 0.3, 0.2];
        let x = [0usize, 2, 1, 1, 0];
        let s = |m: &[usize]| m.iter().map(|&i| -p[x[i]].ln()).sum::<f64>();
        let nll: f64 = (0..5).map(|i| -p[x[i]].ln()).sum();
        assert!((nll - 5.4036779).abs() < 1e-7);
        assert!((exact_expectation(5, s) - 5.4036779).abs() < 1e-7);
        let small = estimate(5, 256, 3, s);
        let big = estimate(5, 256 * 16, 3, s);
        for e in [&small, &big] {
            assert!(
                (e.mean - nll).abs() < 3.0 * e.se,
                "{} ± {} vs {nll}",
                e.mean,
                e.se
            );
        }
        let ratio = small.se / big.se;
        assert!(
            (3.0..5.3).contains(&ratio),
            "SE ratio {ratio}, expected about 4 = sqrt(16)"
        );
        // The batch-mean SE estimates the same quantity; with stratified counts it comes out
        // no larger than the i.i.d. formula's, up to its own noise (256 batches here).
        let b = big.se_batches;
        assert!(
            b.is_finite() && b < 1.3 * big.se,
            "se_batches {b} vs se {}",
            big.se
        );
    }

    /// L = 1: every draw masks the one response token with weight 1: the exact NLL, SE 0.
    #[test]
    fn one_response_token_is_exact() {
        let j = Joint::random(3, 11);
        let x = 0b110;
        // Prompt = tokens 0 and 1; the response is token 2 given both.
        let e = l_form(2, 3, 32, 8, 5, |sets| {
            Ok(sets.iter().map(|m| j.score(x, m)).collect())
        })
        .unwrap();
        let marg01: f64 = (0..8)
            .filter(|s| s & 0b011 == x & 0b011)
            .map(|s| j.p[s])
            .sum();
        let want = -(j.p[x] / marg01).ln();
        assert!(e.values.iter().all(|v| (v - want).abs() < 1e-12));
        assert!((e.mean - want).abs() < 1e-12 && e.se < 1e-12);
    }

    #[test]
    fn mask_counts_are_stratified_uniform_and_prompt_is_never_masked() {
        let mut rng = Rng::new(9);
        let batches = mask_sets(3, 11, 8 * 400, 8, &mut rng);
        let mut hist = [0usize; 9];
        for b in &batches {
            let mut ls: Vec<usize> = b.iter().map(Vec::len).collect();
            ls.sort_unstable();
            // Eight draws over L = 8: each count exactly once per batch.
            assert_eq!(ls, (1..=8).collect::<Vec<_>>());
            for s in b {
                hist[s.len()] += 1;
                assert!(s.iter().all(|&i| (3..11).contains(&i)));
                assert!(s.windows(2).all(|w| w[0] < w[1]), "distinct positions");
            }
        }
        assert!(hist[1..].iter().all(|&c| c == 400));
        // Reproducible from the seed.
        assert_eq!(batches, mask_sets(3, 11, 8 * 400, 8, &mut Rng::new(9)));
    }

    #[test]
    fn bad_arguments_are_errors() {
        let ok = |_: &[Vec<usize>]| Ok(vec![]);
        assert!(l_form(3, 3, 8, 8, 0, ok)
            .unwrap_err()
            .to_string()
            .contains("no response tokens"));
        assert!(l_form(0, 3, 0, 8, 0, ok).is_err());
    }
}
