//! `mdm_likelihood`: the exact likelihood of a response under a masked-diffusion model
//! (LLaDA) sampled with a deterministic unmasking policy (DUEL: Turok, De Sa & Kuleshov,
//! arXiv 2603.01367).
//!
//! The sampler (`generate` on a masked-diffusion model) starts from the prompt followed by
//! L mask tokens, cuts the response into blocks of `block_length` filled left to right,
//! spreads `steps` over the blocks and, within a block, a number of tokens per step (the
//! first `n mod s` steps take one more). When the positions a step unmasks are a
//! deterministic function of the current partially masked sequence, and the tokens at
//! them are drawn from the denoiser's laws at those positions, every response has exactly
//! one path, so its probability is the product over steps of the denoiser's probabilities
//! of the tokens revealed at the chosen positions:
//! `−ln p(r | prompt) = Σ_steps Σ_{i ∈ S_t} −ln p_θ(r_i | x_t)`, one forward per step, and
//! the values over all responses sum to 1.
//!
//! Policy `low_confidence` is the sampler's low-confidence remasking: a step keeps the
//! still-masked positions of the current block whose most likely token has the highest
//! probability (ties: the lower position), the other positions stay masked. That is the
//! sampler's rule at temperature 0, where its confidence is the probability of the argmax;
//! here the revealed tokens follow the model's law (temperature 1). `random` remasking picks
//! positions at random: its likelihood is a sum over orders and is refused.

use serde_json::json;
use tokit_sdk::{bail, InfoUnit, Metric, MetricInput, MetricOutput, Result};

/// Tokens unmasked at each step of a block: `n` spread evenly over `steps` (the sampler's
/// schedule).
pub fn per_step(n: usize, steps: usize) -> Vec<usize> {
    (0..steps)
        .map(|i| n / steps + usize::from(i < n % steps))
        .collect()
}

/// The unmasking schedule of a response of `len` tokens: for each step, the block range
/// (relative to the response) and how many positions it unmasks.
pub fn schedule(
    len: usize,
    steps: usize,
    block_length: usize,
) -> Result<Vec<(usize, usize, usize)>> {
    let block = if block_length == 0 { len } else { block_length };
    let steps = if steps == 0 { len } else { steps };
    if len == 0 {
        return Ok(vec![]);
    }
    if block == 0 || !len.is_multiple_of(block) {
        bail!(
            "mdm_likelihood: the response length {len} is not a multiple of block_length {block}"
        );
    }
    let blocks = len / block;
    if !steps.is_multiple_of(blocks) {
        bail!("mdm_likelihood: steps {steps} is not a multiple of the number of blocks {blocks} (response {len} / block_length {block})");
    }
    let mut out = vec![];
    for b in 0..blocks {
        for k in per_step(block, steps / blocks) {
            out.push((b * block, (b + 1) * block, k));
        }
    }
    Ok(out)
}

/// Deterministic position-selection policies.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Policy {
    /// The sampler's `low_confidence` remasking (highest max-probability first).
    LowConfidence,
}

impl Policy {
    pub fn parse(name: &str) -> Result<Policy> {
        match name {
            "low_confidence" => Ok(Policy::LowConfidence),
            "random" => bail!("mdm_likelihood: policy \"random\" picks positions at random, so a response has many unmasking paths and no one-pass likelihood; use \"low_confidence\" (or `elbo` for a bound)"),
            other => bail!("mdm_likelihood: policy must be \"low_confidence\" (the sampler's deterministic remasking), got \"{other}\""),
        }
    }
}

/// A response's exact negative log-likelihood and its unmasking path.
#[derive(Clone, Debug)]
pub struct Duel {
    /// `−ln p(response | prompt)`, nats.
    pub nll: f64,
    /// `−ln p` of each response token when it was revealed.
    pub token_nll: Vec<f64>,
    /// Response positions in the order they were unmasked.
    pub order: Vec<usize>,
    /// Step at which each response position was unmasked.
    pub step: Vec<usize>,
    /// Denoiser calls made (steps that unmask at least one token).
    pub forwards: usize,
}

/// `ln softmax(row)` in f64, and the sampler's confidence `softmax(row)[argmax]`.
fn law(row: &[f32]) -> Result<(Vec<f64>, f64)> {
    let max = row.iter().fold(f32::NEG_INFINITY, |a, &b| a.max(b)) as f64;
    if !max.is_finite() || row.iter().any(|x| x.is_nan()) {
        bail!("mdm_likelihood: a logits row is not finite");
    }
    let z: f64 = row.iter().map(|&x| (x as f64 - max).exp()).sum();
    let lz = z.ln();
    Ok((row.iter().map(|&x| x as f64 - max - lz).collect(), 1.0 / z))
}

/// The exact likelihood (module doc). `denoise(x)` returns the logits `[x.len(), vocab]` of
/// the partially masked sequence `x`.
pub fn duel(
    prompt: &[u32],
    response: &[u32],
    mask: u32,
    vocab: usize,
    sched: &[(usize, usize, usize)],
    policy: Policy,
    mut denoise: impl FnMut(&[u32]) -> Result<Vec<f32>>,
) -> Result<Duel> {
    let (p, n) = (prompt.len(), response.len());
    if let Some(i) = response.iter().position(|&t| t == mask) {
        bail!("mdm_likelihood: response token {i} is the mask token");
    }
    if let Some(i) = response.iter().position(|&t| t as usize >= vocab) {
        bail!(
            "mdm_likelihood: response token {i} ({}) is outside the vocabulary of {vocab}",
            response[i]
        );
    }
    let mut x = prompt.to_vec();
    x.resize(p + n, mask);
    let mut out = Duel {
        nll: 0.0,
        token_nll: vec![f64::NAN; n],
        order: Vec::with_capacity(n),
        step: vec![0; n],
        forwards: 0,
    };
    for (s, &(lo, hi, k)) in sched.iter().enumerate() {
        if k == 0 {
            continue;
        }
        tokit_sdk::check_cancelled()?;
        let logits = denoise(&x)?;
        out.forwards += 1;
        if logits.len() != x.len() * vocab {
            bail!(
                "mdm_likelihood: the model returned {} logits for [{}, {vocab}]",
                logits.len(),
                x.len()
            );
        }
        let mut cands = Vec::new();
        for i in (lo..hi).filter(|&i| x[p + i] == mask) {
            let (lp, conf) = law(&logits[(p + i) * vocab..(p + i + 1) * vocab])?;
            cands.push((i, conf, -lp[response[i] as usize]));
        }
        match policy {
            Policy::LowConfidence => cands.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0))),
        }
        for &(i, _, nll) in cands.iter().take(k) {
            x[p + i] = response[i];
            out.nll += nll;
            out.token_nll[i] = nll;
            out.order.push(i);
            out.step[i] = s;
        }
    }
    if out.order.len() != n {
        bail!(
            "mdm_likelihood: the schedule unmasked {} of {n} positions",
            out.order.len()
        );
    }
    Ok(out)
}

/// The `mdm_likelihood` metric.
pub struct MdmLikelihood;

tokit_sdk::params! {
    pub struct Params {
        /// leading tokens that are conditioned on and never masked
        prompt_tokens: usize = 1,
        /// position-selection policy: `low_confidence` (the sampler's remasking)
        policy: String = "low_confidence".into(),
        /// denoising steps (0: one per response token), as the sampler's `steps`
        steps: usize = 0,
        /// block length (0: the whole response), as the sampler's `block_length`
        block_length: usize = 0,
        /// `nats` or `bits`
        unit: InfoUnit = InfoUnit::Nats,
    }
}

impl Metric for MdmLikelihood {
    const NAME: &'static str = "mdm_likelihood";
    const DESCRIPTION: &'static str = "exact negative log-likelihood of the response (tokens after `prompt_tokens`) under a masked-diffusion model sampled with a deterministic unmasking policy (DUEL, arXiv 2603.01367): the product over the sampler's steps of the denoiser's probabilities of the tokens revealed at the positions the policy picks (policy low_confidence, steps and block_length as the sampler's); one forward per step; compare with `elbo`";
    const NEEDS_MODEL: bool = true;
    type Params = Params;

    fn compute(input: &MetricInput, p: Params) -> Result<MetricOutput> {
        let policy = Policy::parse(&p.policy)?;
        let tokens = input.tokens_at_least(p.prompt_tokens + 1)?;
        let model = input.model()?;
        let info = model.info()?;
        if info.causal {
            bail!("mdm_likelihood: the {} model is autoregressive; its exact likelihood is `elbo` (the chain rule)", info.arch);
        }
        let Some(mask) = info.extra["mask_token_id"].as_u64() else {
            bail!(
                "mdm_likelihood: the {} model has no mask token (not a masked-diffusion model)",
                info.arch
            );
        };
        let (prompt, response) = tokens.split_at(p.prompt_tokens);
        let sched = schedule(response.len(), p.steps, p.block_length)?;
        let v = info.vocab_size;
        let total = sched.iter().filter(|s| s.2 > 0).count() as u64;
        let r = duel(prompt, response, mask as u32, v, &sched, policy, |x| {
            model.logits(x)?.to_vec()
        })?;
        tokit_sdk::progress(total, total, "mdm_likelihood");
        let s = p.unit.scale();
        let n = response.len();
        let mut params = input.params.clone();
        for (k, val) in [
            ("prompt_tokens", json!(p.prompt_tokens)),
            ("policy", json!(p.policy)),
            ("steps", json!(if p.steps == 0 { n } else { p.steps })),
            (
                "block_length",
                json!(if p.block_length == 0 {
                    n
                } else {
                    p.block_length
                }),
            ),
            ("unit", json!(p.unit.name())),
        ] {
            params.insert(k.into(), val);
        }
        let mut out = MetricOutput {
            value: Some(r.nll * s),
            unit: p.unit.into(),
            estimator: "exact (deterministic unmasking path, DUEL)".into(),
            params,
            ..Default::default()
        }
        .scalar("per_token", r.nll * s / n as f64)
        .scalar("response_tokens", n as f64)
        .scalar("forwards", r.forwards as f64);
        out.notes.push("−ln p(response | prompt) of the sampler's process with low-confidence position selection (the sampler's rule at temperature 0) and tokens drawn from the model's law; token_nll[i]: −ln p of response token i when revealed; order: response positions in unmasking order".into());
        let tn: Vec<f32> = r.token_nll.iter().map(|&x| (x * s) as f32).collect();
        let order: Vec<f32> = r.order.iter().map(|&i| i as f32).collect();
        let step: Vec<f32> = r.step.iter().map(|&i| i as f32).collect();
        out.tensor("token_nll", &tn, &[n])?
            .tensor("order", &order, &[n])?
            .tensor("step", &step, &[n])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::streams::rng::Rng;
    use std::collections::BTreeMap;

    const MASK: u32 = 99;

    /// A toy denoiser: logits at every position are a pseudo-random function of the whole
    /// partially masked sequence (so revealing one token changes every law). Its vocabulary
    /// has `v` ids; the mask id lies outside it.
    fn toy(v: usize, seed: u64) -> impl Fn(&[u32]) -> Vec<f32> {
        move |x: &[u32]| {
            let mut h = seed;
            for &t in x {
                h = h.wrapping_mul(0x100_0000_01b3).wrapping_add(t as u64 + 1);
            }
            let mut rng = Rng::new(h);
            (0..x.len() * v)
                .map(|_| (2.0 * rng.normal()) as f32)
                .collect()
        }
    }

    /// Brute force: run the generative process over every possible draw, summing the
    /// probability of each final response (an implementation independent of `duel`).
    #[allow(clippy::too_many_arguments)]
    fn enumerate(
        x: &mut Vec<u32>,
        p: usize,
        v: usize,
        sched: &[(usize, usize, usize)],
        step: usize,
        prob: f64,
        f: &impl Fn(&[u32]) -> Vec<f32>,
        out: &mut BTreeMap<Vec<u32>, f64>,
    ) {
        let Some(&(lo, hi, k)) = sched.get(step) else {
            *out.entry(x[p..].to_vec()).or_default() += prob;
            return;
        };
        if k == 0 {
            return enumerate(x, p, v, sched, step + 1, prob, f, out);
        }
        let z = f(x);
        let laws: BTreeMap<usize, Vec<f64>> = (lo..hi)
            .filter(|&i| x[p + i] == MASK)
            .map(|i| {
                let row = &z[(p + i) * v..(p + i + 1) * v];
                let m = row
                    .iter()
                    .cloned()
                    .fold(f64::NEG_INFINITY, |a, b| a.max(b as f64));
                let e: Vec<f64> = row.iter().map(|&r| (r as f64 - m).exp()).collect();
                let s: f64 = e.iter().sum();
                (i, e.iter().map(|x| x / s).collect())
            })
            .collect();
        // Positions: the k whose largest probability is highest (lower position on ties).
        let mut pos: Vec<usize> = laws.keys().copied().collect();
        let top = |i: &usize| laws[i].iter().cloned().fold(0.0, f64::max);
        pos.sort_by(|a, b| top(b).total_cmp(&top(a)).then(a.cmp(b)));
        pos.truncate(k);
        // Every assignment of tokens to the chosen positions.
        for code in 0..v.pow(pos.len() as u32) {
            let mut c = code;
            let mut pr = prob;
            for &i in &pos {
                let t = c % v;
                c /= v;
                x[p + i] = t as u32;
                pr *= laws[&i][t];
            }
            enumerate(x, p, v, sched, step + 1, pr, f, out);
            for &i in &pos {
                x[p + i] = MASK;
            }
        }
    }

    fn all_texts(v: usize, n: usize) -> Vec<Vec<u32>> {
        (0..v.pow(n as u32))
            .map(|mut c| {
                (0..n)
                    .map(|_| {
                        let t = c % v;
                        c /= v;
                        t as u32
                    })
                    .collect()
            })
            .collect()
    }

    /// The likelihood equals the enumerated probability of every text (to 1e-12) and sums
    /// to 1 over all texts, for several schedules (one token per step, several per step,
    /// steps with none, blocks).
    #[test]
    fn matches_brute_force_enumeration_and_sums_to_one() {
        for (v, n, steps, block, seed) in [
            (2, 3, 0, 0, 1),
            (3, 3, 0, 0, 2),
            (2, 4, 2, 0, 3),
            (3, 4, 4, 2, 4),
            (2, 4, 6, 2, 5),
            (3, 4, 2, 4, 6),
        ] {
            let f = toy(v, seed);
            let prompt = [1u32, 0];
            let sched = schedule(n, steps, block).unwrap();
            let mut x: Vec<u32> = prompt.to_vec();
            x.resize(prompt.len() + n, MASK);
            let mut brute = BTreeMap::new();
            enumerate(&mut x, prompt.len(), v, &sched, 0, 1.0, &f, &mut brute);
            let mut total = 0.0;
            for text in all_texts(v, n) {
                let r = duel(
                    &prompt,
                    &text,
                    MASK,
                    v,
                    &sched,
                    Policy::LowConfidence,
                    |x| Ok(f(x)),
                )
                .unwrap();
                let lik = (-r.nll).exp();
                let want = brute.get(&text).copied().unwrap_or(0.0);
                assert!(
                    (lik - want).abs() < 1e-12,
                    "v {v} n {n} steps {steps} block {block}: {text:?} {lik} vs {want}"
                );
                assert!((r.token_nll.iter().sum::<f64>() - r.nll).abs() < 1e-12);
                let mut o = r.order.clone();
                o.sort_unstable();
                assert_eq!(o, (0..n).collect::<Vec<_>>());
                total += lik;
            }
            assert!((total - 1.0).abs() < 1e-12, "sum {total}");
        }
    }

    /// One response token: the likelihood is the denoiser's law at that position.
    #[test]
    fn one_token_is_one_law_and_blocks_go_left_to_right() {
        let f = toy(3, 9);
        let r = duel(
            &[2],
            &[1],
            MASK,
            3,
            &schedule(1, 0, 0).unwrap(),
            Policy::LowConfidence,
            |x| Ok(f(x)),
        )
        .unwrap();
        let z = f(&[2, MASK]);
        let (lp, _) = law(&z[3..6]).unwrap();
        assert!((r.nll + lp[1]).abs() < 1e-12);
        assert_eq!(r.forwards, 1);
        // Blocks of 1: the order is left to right whatever the confidences.
        let r = duel(
            &[0],
            &[1, 0, 2, 1],
            MASK,
            3,
            &schedule(4, 4, 1).unwrap(),
            Policy::LowConfidence,
            |x| Ok(f(x)),
        )
        .unwrap();
        assert_eq!(r.order, vec![0, 1, 2, 3]);
    }

    #[test]
    fn schedule_matches_the_sampler_and_refuses_bad_shapes() {
        assert_eq!(per_step(10, 4), vec![3, 3, 2, 2]);
        assert_eq!(schedule(4, 2, 2).unwrap(), vec![(0, 2, 2), (2, 4, 2)]);
        assert_eq!(
            schedule(4, 6, 2).unwrap(),
            vec![
                (0, 2, 1),
                (0, 2, 1),
                (0, 2, 0),
                (2, 4, 1),
                (2, 4, 1),
                (2, 4, 0)
            ]
        );
        assert!(schedule(5, 0, 2).is_err());
        assert!(schedule(4, 3, 2).is_err());
        assert!(Policy::parse("random")
            .unwrap_err()
            .to_string()
            .contains("random"));
        assert!(Policy::parse("greedy").is_err());
        let f = toy(2, 1);
        assert!(duel(
            &[],
            &[0, MASK],
            MASK,
            2,
            &schedule(2, 0, 0).unwrap(),
            Policy::LowConfidence,
            |x| Ok(f(x))
        )
        .is_err());
    }
}
