//! Sampling from a model, for every architecture: greedy, temperature, top-k, top-p, with
//! a seed that makes the output reproducible. Each step asks the plugin for the last
//! position's logits only (`last_only`), so architectures with a cache pay O(1) per token.
//! Masked-diffusion models (not causal, with a mask token: LLaDA) are sampled by iterative
//! unmasking instead ([`diffusion`]).

mod diffusion;

use crate::model::{ForwardSpec, Model};
use anyhow::{ensure, Result};
use rand_chacha::rand_core::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

/// How to sample.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GenerateOptions {
    /// New tokens (`gen_length` of a masked-diffusion model).
    #[serde(alias = "gen_length")]
    pub max_tokens: usize,
    /// 0 = greedy (argmax).
    pub temperature: f64,
    /// Keep the k most likely tokens (0 = all).
    pub top_k: usize,
    /// Keep the smallest set of tokens with probability ≥ p (1 = all).
    pub top_p: f64,
    pub seed: u64,
    /// Stop after emitting any of these tokens.
    pub stop: Vec<u32>,
    /// Masked diffusion: denoising steps over the whole response (0 = one per token).
    pub steps: usize,
    /// Masked diffusion: semi-autoregressive block length (0 = one block).
    pub block_length: usize,
    /// Masked diffusion: classifier-free guidance scale (0 = none).
    pub cfg_scale: f64,
    /// Masked diffusion: which masked positions to commit each step, `low_confidence`
    /// (the most probable candidates) or `random`.
    pub remasking: String,
}

/// What `generate_traced` returns: the new tokens and, for each, when it was chosen.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Generation {
    pub tokens: Vec<u32>,
    /// Indices into `tokens` in the order they were fixed (left to right for autoregressive
    /// models; the unmasking order for masked-diffusion ones).
    pub order: Vec<usize>,
    /// The sampling step at which each token was fixed.
    pub step: Vec<usize>,
}

impl Default for GenerateOptions {
    fn default() -> Self {
        GenerateOptions {
            max_tokens: 32,
            temperature: 1.0,
            top_k: 0,
            top_p: 1.0,
            seed: 0,
            stop: vec![],
            steps: 0,
            block_length: 0,
            cfg_scale: 0.0,
            remasking: "low_confidence".into(),
        }
    }
}

/// Pick the next token from one row of logits.
pub fn sample(logits: &[f32], opts: &GenerateOptions, rng: &mut ChaCha8Rng) -> u32 {
    let argmax = || {
        logits
            .iter()
            .enumerate()
            .fold(
                (0, f32::NEG_INFINITY),
                |b, (i, &x)| if x > b.1 { (i, x) } else { b },
            )
            .0
    };
    if opts.temperature <= 0.0 {
        return argmax() as u32;
    }
    // Candidates sorted by logit, cut by top-k, then softmax at the temperature in f64.
    let mut idx: Vec<usize> = (0..logits.len())
        .filter(|&i| logits[i].is_finite())
        .collect();
    idx.sort_by(|&a, &b| logits[b].total_cmp(&logits[a]).then(a.cmp(&b)));
    if opts.top_k > 0 {
        idx.truncate(opts.top_k);
    }
    if idx.is_empty() {
        return argmax() as u32;
    }
    let top = logits[idx[0]] as f64;
    let mut p: Vec<f64> = idx
        .iter()
        .map(|&i| ((logits[i] as f64 - top) / opts.temperature).exp())
        .collect();
    let z: f64 = p.iter().sum();
    p.iter_mut().for_each(|x| *x /= z);
    if opts.top_p < 1.0 {
        let mut mass = 0.0;
        let keep = p.iter().position(|&x| {
            mass += x;
            mass >= opts.top_p
        });
        let n = keep.map_or(p.len(), |k| k + 1);
        idx.truncate(n);
        p.truncate(n);
        let z: f64 = p.iter().sum();
        p.iter_mut().for_each(|x| *x /= z);
    }
    // Inverse CDF with a 53-bit uniform.
    let u = (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
    let mut acc = 0.0;
    for (k, &pi) in p.iter().enumerate() {
        acc += pi;
        if u < acc {
            return idx[k] as u32;
        }
    }
    idx[idx.len() - 1] as u32
}

/// Continue `prompt`; returns the new tokens only.
pub fn generate(model: &Model, prompt: &[u32], opts: &GenerateOptions) -> Result<Vec<u32>> {
    Ok(generate_traced(model, prompt, opts)?.tokens)
}

/// Continue `prompt`, recording the order in which the new tokens were chosen.
pub fn generate_traced(
    model: &Model,
    prompt: &[u32],
    opts: &GenerateOptions,
) -> Result<Generation> {
    ensure!(
        opts.top_p > 0.0 && opts.top_p <= 1.0,
        "generate: top_p must be in (0, 1], got {}",
        opts.top_p
    );
    ensure!(
        opts.temperature.is_finite() && opts.temperature >= 0.0,
        "generate: temperature must be ≥ 0, got {}",
        opts.temperature
    );
    // A masked-diffusion model may start from nothing (all masks).
    if let Some(mask) = diffusion::mask_token(model) {
        return diffusion::generate(model, prompt, opts, mask);
    }
    ensure!(!prompt.is_empty(), "generate: the prompt has no tokens");
    ensure!(
        opts.steps == 0
            && opts.block_length == 0
            && opts.cfg_scale == 0.0
            && opts.remasking == "low_confidence",
        "generate: steps, block_length, cfg_scale and remasking apply to masked-diffusion models only (this {} model is autoregressive)",
        model.info().arch
    );
    let mut rng = ChaCha8Rng::seed_from_u64(opts.seed);
    let mut seq = prompt.to_vec();
    let spec = ForwardSpec {
        last_only: true,
        ..Default::default()
    };
    for step in 0..opts.max_tokens {
        crate::progress::report(step as u64, opts.max_tokens as u64, "generate");
        if crate::plugin::host::host().is_cancelled() {
            return Err(crate::plugin::host::Cancelled.into());
        }
        let out = model.forward(&seq, &spec)?;
        let next = sample(out[0]["logits"].data(), opts, &mut rng);
        seq.push(next);
        if opts.stop.contains(&next) {
            break;
        }
    }
    crate::progress::finish();
    let n = seq.len() - prompt.len();
    Ok(Generation {
        tokens: seq[prompt.len()..].to_vec(),
        order: (0..n).collect(),
        step: (0..n).collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn greedy_top_k_top_p_and_seeds() {
        let logits = [0.0f32, 3.0, 1.0, 2.0];
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let greedy = GenerateOptions {
            temperature: 0.0,
            ..Default::default()
        };
        assert_eq!(sample(&logits, &greedy, &mut rng), 1);
        let top1 = GenerateOptions {
            top_k: 1,
            ..Default::default()
        };
        assert!((0..50).all(|_| sample(&logits, &top1, &mut rng) == 1));
        let top2 = GenerateOptions {
            top_k: 2,
            ..Default::default()
        };
        assert!((0..200).all(|_| matches!(sample(&logits, &top2, &mut rng), 1 | 3)));
        // p(1) = e^3 / (e^0 + e^3 + e^1 + e^2) ≈ 0.644 < 0.6 fails; top_p 0.5 keeps token 1 only.
        let nucleus = GenerateOptions {
            top_p: 0.5,
            ..Default::default()
        };
        assert!((0..50).all(|_| sample(&logits, &nucleus, &mut rng) == 1));
        // Frequencies follow the softmax.
        let opts = GenerateOptions::default();
        let mut counts = [0usize; 4];
        for _ in 0..20000 {
            counts[sample(&logits, &opts, &mut rng) as usize] += 1;
        }
        let z: f64 = logits.iter().map(|&x| (x as f64).exp()).sum();
        for (i, &c) in counts.iter().enumerate() {
            let p = (logits[i] as f64).exp() / z;
            assert!(
                (c as f64 / 20000.0 - p).abs() < 0.02,
                "token {i}: {c} vs p {p}"
            );
        }
        let draw = |seed| {
            let mut r = ChaCha8Rng::seed_from_u64(seed);
            (0..20)
                .map(|_| sample(&logits, &opts, &mut r))
                .collect::<Vec<_>>()
        };
        assert_eq!(draw(7), draw(7));
        assert_ne!(draw(7), draw(8));
    }
}
