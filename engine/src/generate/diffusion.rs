//! Sampling from a masked-diffusion model (LLaDA, Nie et al. 2025): iterative unmasking with
//! low-confidence remasking.
//!
//! The response starts as `max_tokens` (`gen_length`) mask tokens after the prompt. It is
//! cut into blocks of `block_length` filled left to right (semi-autoregressive; one block
//! when 0), and `steps` denoising steps are split evenly over the blocks. Within a block
//! the number of tokens unmasked per step is spread evenly (the first `n mod s` steps take
//! one more), as LLaDA's linear noise schedule implies. Each step runs the model on the
//! whole sequence, draws a candidate for every still-masked position of the current block
//! (argmax of the logits plus `temperature` × Gumbel noise: a draw from softmax(z / T),
//! greedy at T = 0), and commits the candidates with the highest confidence — the model's
//! probability of the candidate (`low_confidence`: the others are "remasked", i.e. stay
//! masked) or a uniform draw (`random`). Committed tokens never change. With a guidance
//! scale w > 0 each step also runs the prompt masked (as a second variant of the same
//! call, ablation method `mask_token`) and uses `z_u + (w + 1)(z − z_u)`.
//!
//! The result records the order in which positions were unmasked (and the step of each),
//! the ordering that directed-information measures use for this model.

use super::{GenerateOptions, Generation};
use crate::model::{ForwardSpec, Model};
use anyhow::{bail, ensure, Result};
use rand_chacha::rand_core::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;
use tokit_sdk::Variant;

/// The mask token of a masked-diffusion model: not causal, `mask_token_id` in its facts.
pub fn mask_token(model: &Model) -> Option<u32> {
    let info = model.info();
    if info.causal {
        return None;
    }
    info.extra["mask_token_id"].as_u64().map(|m| m as u32)
}

/// Tokens committed at each step of a block: `n` spread evenly over `steps`.
fn per_step(n: usize, steps: usize) -> Vec<usize> {
    (0..steps)
        .map(|i| n / steps + usize::from(i < n % steps))
        .collect()
}

/// Uniform in (0, 1), never 0 (for logarithms).
fn uniform(rng: &mut ChaCha8Rng) -> f64 {
    ((rng.next_u64() >> 11) as f64 + 0.5) / (1u64 << 53) as f64
}

/// The candidate at one position and its confidence.
fn candidate(row: &[f32], opts: &GenerateOptions, rng: &mut ChaCha8Rng) -> (u32, f64) {
    let mut best = (0usize, f64::NEG_INFINITY);
    for (v, &z) in row.iter().enumerate() {
        // Gumbel-max: argmax z_v + T g_v with g = −ln(−ln u) samples softmax(z / T).
        let s = if opts.temperature > 0.0 {
            z as f64 - opts.temperature * (-uniform(rng).ln()).ln()
        } else {
            z as f64
        };
        if s > best.1 {
            best = (v, s);
        }
    }
    let confidence = if opts.remasking == "random" {
        uniform(rng)
    } else {
        // softmax(z)[candidate], in f64.
        let max = row.iter().fold(f32::NEG_INFINITY, |a, &b| a.max(b)) as f64;
        let z: f64 = row.iter().map(|&x| (x as f64 - max).exp()).sum();
        (row[best.0] as f64 - max).exp() / z
    };
    (best.0 as u32, confidence)
}

pub fn generate(
    model: &Model,
    prompt: &[u32],
    opts: &GenerateOptions,
    mask: u32,
) -> Result<Generation> {
    let n = opts.max_tokens;
    let block = if opts.block_length == 0 {
        n
    } else {
        opts.block_length
    };
    let steps = if opts.steps == 0 { n } else { opts.steps };
    ensure!(
        opts.top_k == 0 && opts.top_p == 1.0 && opts.stop.is_empty(),
        "generate: top_k, top_p and stop do not apply to a masked-diffusion model (its sampler takes steps, block_length, temperature, cfg_scale, remasking)"
    );
    ensure!(
        matches!(opts.remasking.as_str(), "low_confidence" | "random"),
        "generate: remasking must be \"low_confidence\" or \"random\", got \"{}\"",
        opts.remasking
    );
    ensure!(
        opts.cfg_scale.is_finite() && opts.cfg_scale >= 0.0,
        "generate: cfg_scale must be ≥ 0, got {}",
        opts.cfg_scale
    );
    if n == 0 {
        return Ok(Generation::default());
    }
    if block == 0 || !n.is_multiple_of(block) {
        bail!("generate: gen_length (max_tokens) {n} is not a multiple of block_length {block}");
    }
    let blocks = n / block;
    if !steps.is_multiple_of(blocks) {
        bail!("generate: steps {steps} is not a multiple of the number of blocks {blocks} (gen_length {n} / block_length {block})");
    }
    let steps_per_block = steps / blocks;
    let p = prompt.len();
    let mut x: Vec<u32> = prompt.to_vec();
    x.resize(p + n, mask);
    let vocab = model.info().vocab_size;
    let mut rng = ChaCha8Rng::seed_from_u64(opts.seed);
    let spec = if opts.cfg_scale > 0.0 {
        ForwardSpec {
            variants: vec![
                Variant::default(),
                Variant {
                    ablate: (0..p).collect(),
                    method: Some("mask_token".into()),
                    replace_with: None,
                },
            ],
            ..Default::default()
        }
    } else {
        ForwardSpec::default()
    };
    let mut out = Generation {
        tokens: vec![],
        order: Vec::with_capacity(n),
        step: vec![0; n],
    };
    let mut step = 0;
    for b in 0..blocks {
        let range = p + b * block..p + (b + 1) * block;
        for k in per_step(block, steps_per_block) {
            crate::progress::report(step as u64, steps as u64, "generate (diffusion)");
            if crate::plugin::host::host().is_cancelled() {
                return Err(crate::plugin::host::Cancelled.into());
            }
            let res = model.forward(&x, &spec)?;
            let logits = res[0]["logits"].data();
            let guided: Vec<f32>;
            let logits = match res.get(1) {
                Some(u) => {
                    let (w, un) = (opts.cfg_scale as f32, u["logits"].data());
                    guided = logits
                        .iter()
                        .zip(un)
                        .map(|(&c, &u)| u + (w + 1.0) * (c - u))
                        .collect();
                    &guided[..]
                }
                None => logits,
            };
            // Candidates at the still-masked positions of this block, most confident first.
            let mut cands: Vec<(usize, u32, f64)> = range
                .clone()
                .filter(|&i| x[i] == mask)
                .map(|i| {
                    let (t, c) = candidate(&logits[i * vocab..(i + 1) * vocab], opts, &mut rng);
                    (i, t, c)
                })
                .collect();
            cands.sort_by(|a, b| b.2.total_cmp(&a.2).then(a.0.cmp(&b.0)));
            for &(i, t, _) in cands.iter().take(k) {
                x[i] = t;
                out.order.push(i - p);
                out.step[i - p] = step;
            }
            step += 1;
        }
    }
    crate::progress::finish();
    out.tokens = x[p..].to_vec();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_per_step_are_spread_evenly() {
        assert_eq!(per_step(10, 4), vec![3, 3, 2, 2]);
        assert_eq!(per_step(4, 4), vec![1, 1, 1, 1]);
        assert_eq!(per_step(2, 4), vec![1, 1, 0, 0]);
        for (n, s) in [(7, 3), (32, 5), (1, 1)] {
            assert_eq!(per_step(n, s).iter().sum::<usize>(), n);
        }
    }

    #[test]
    fn gumbel_candidates_follow_the_softmax_and_greedy_is_argmax() {
        let row = [0.0f32, 1.0, 2.0];
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let greedy = GenerateOptions {
            temperature: 0.0,
            ..Default::default()
        };
        let (t, c) = candidate(&row, &greedy, &mut rng);
        let z: f64 = row.iter().map(|&x| (x as f64).exp()).sum();
        assert_eq!(t, 2);
        assert!((c - 2f64.exp() / z).abs() < 1e-12);
        let opts = GenerateOptions::default();
        let mut counts = [0usize; 3];
        for _ in 0..30000 {
            counts[candidate(&row, &opts, &mut rng).0 as usize] += 1;
        }
        for (v, &c) in counts.iter().enumerate() {
            let p = (row[v] as f64).exp() / z;
            assert!((c as f64 / 30000.0 - p).abs() < 0.01, "{v}: {c}");
        }
    }
}
