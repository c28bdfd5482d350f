//! `capacity_probe` (`docs/measures.md` M9): an empirical memory-capacity probe. A prompt
//! stores n random key→value token pairs in the context, `k₁ v₁ k₂ v₂ … kₙ vₙ`, then repeats
//! one key `k_q`; the model is right when its most likely next token is `v_q`. Accuracy
//! (and the mean probability of `v_q`) against n, over seeded trials, and the count at
//! which accuracy falls through 50 % (linear interpolation between the tested counts).
//!
//! Keys are distinct, values are distinct, both drawn from the ids `token_min..token_max`.
//! A masked-diffusion model reads the answer at a mask token appended to the prompt.

use crate::streams::rng::Rng;
use serde_json::{json, Value};
use tokit_sdk::{bail, Array, Error, Metric, MetricInput, MetricOutput, Result, Unit};

/// Accuracy and probability of the stored value at each tested count.
#[derive(Clone, Debug, PartialEq)]
pub struct Probe {
    pub counts: Vec<usize>,
    pub accuracy: Vec<f64>,
    /// Standard error of the accuracy over trials, `sqrt(a(1−a)/(trials−1))`.
    pub accuracy_se: Vec<f64>,
    pub mean_prob: Vec<f64>,
    pub prob_se: Vec<f64>,
}

/// One probe prompt: the pairs, the query key and the value it should retrieve.
pub struct Prompt {
    pub tokens: Vec<u32>,
    pub answer: u32,
}

/// Optional separator tokens: after each key (`k : v`) and after each pair (`k v ,`).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Separators {
    pub key_value: Option<u32>,
    pub pair: Option<u32>,
}

impl Separators {
    /// Prompt length for n pairs.
    pub fn len(&self, n: usize) -> usize {
        let (a, b) = (
            self.key_value.is_some() as usize,
            self.pair.is_some() as usize,
        );
        n * (2 + a + b) + 1 + a
    }
}

/// The prompt of trial `trial` with `n` pairs over ids `lo..hi` (needs `hi − lo ≥ 2n`).
pub fn prompt(n: usize, lo: u32, hi: u32, seed: u64, trial: u64) -> Prompt {
    prompt_with(n, lo, hi, seed, trial, Separators::default())
}

/// [`prompt`] with separator tokens: `k₁ s v₁ p k₂ s v₂ p … k_q s`.
pub fn prompt_with(n: usize, lo: u32, hi: u32, seed: u64, trial: u64, sep: Separators) -> Prompt {
    let mut rng = Rng::for_stream(seed, (n as u64) << 32 | trial);
    let mut ids: Vec<u32> = (lo..hi).collect();
    // Partial Fisher–Yates: the first 2n ids are a uniform sample without replacement.
    for i in 0..2 * n {
        let j = i + rng.below(ids.len() - i);
        ids.swap(i, j);
    }
    let (keys, values) = (&ids[..n], &ids[n..2 * n]);
    let q = rng.below(n);
    let mut tokens = Vec::with_capacity(sep.len(n));
    for (k, v) in keys.iter().zip(values) {
        tokens.push(*k);
        tokens.extend(sep.key_value);
        tokens.push(*v);
        tokens.extend(sep.pair);
    }
    tokens.push(keys[q]);
    tokens.extend(sep.key_value);
    Prompt {
        tokens,
        answer: values[q],
    }
}

/// Mean and standard error of the mean (0 for one value).
fn mean_se(v: &[f64]) -> (f64, f64) {
    let n = v.len() as f64;
    let m = v.iter().sum::<f64>() / n;
    if v.len() < 2 {
        return (m, 0.0);
    }
    let var = v.iter().map(|x| (x - m).powi(2)).sum::<f64>() / (n - 1.0);
    (m, (var / n).sqrt())
}

/// Run the probe. `answer(tokens)` returns the next-token logits after `tokens`.
pub fn run(
    counts: &[usize],
    trials: usize,
    (lo, hi): (u32, u32),
    seed: u64,
    sep: Separators,
    mut answer: impl FnMut(&[u32]) -> Result<Vec<f32>>,
) -> Result<Probe> {
    let mut out = Probe {
        counts: counts.to_vec(),
        accuracy: vec![],
        accuracy_se: vec![],
        mean_prob: vec![],
        prob_se: vec![],
    };
    for &n in counts {
        let (mut hits, mut probs) = (Vec::with_capacity(trials), Vec::with_capacity(trials));
        for t in 0..trials {
            tokit_sdk::check_cancelled()?;
            let p = prompt_with(n, lo, hi, seed, t as u64, sep);
            let z = answer(&p.tokens)?;
            let lp = crate::thermo::log_softmax(&z, 1.0)
                .map_err(|e| Error::msg(format!("capacity_probe: {e}")))?;
            let a = p.answer as usize;
            if a >= lp.len() {
                bail!(
                    "capacity_probe: token {a} is outside the model's {} logits",
                    lp.len()
                );
            }
            // Right when the value is the strict argmax (a tie is not a retrieval).
            let best = lp.iter().enumerate().all(|(i, &x)| i == a || x < lp[a]);
            hits.push(f64::from(u8::from(best)));
            probs.push(lp[a].exp());
        }
        let (acc, se) = mean_se(&hits);
        let (mp, pse) = mean_se(&probs);
        out.accuracy.push(acc);
        out.accuracy_se.push(se);
        out.mean_prob.push(mp);
        out.prob_se.push(pse);
    }
    Ok(out)
}

/// The count at which `acc` first falls from ≥ `level` to below it, linearly interpolated
/// between the tested counts; `None` when it never does (always above, or below at the
/// first count).
pub fn count_at(counts: &[usize], acc: &[f64], level: f64) -> Option<f64> {
    if acc.first().is_none_or(|&a| a < level) {
        return None;
    }
    for i in 1..counts.len() {
        let (a0, a1) = (acc[i - 1], acc[i]);
        if a0 >= level && a1 < level {
            let (c0, c1) = (counts[i - 1] as f64, counts[i] as f64);
            return Some(c0 + (a0 - level) / (a0 - a1) * (c1 - c0));
        }
    }
    None
}

/// The `capacity_probe` metric.
pub struct CapacityProbe;

tokit_sdk::params! {
    pub struct Params {
        /// numbers of stored key→value pairs to test, increasing
        counts: Array = Array::of(json!([1, 2, 4, 8, 16, 32])),
        /// prompts per count
        trials: usize = 16,
        /// seed of the pairs
        seed: u64 = 0,
        /// smallest token id used for keys and values
        token_min: usize = 0,
        /// one past the largest id used (default: the vocabulary size)
        token_max: Option<usize> = None,
        /// token id placed between each key and its value, and after the query key (none by default)
        kv_separator: Option<usize> = None,
        /// token id placed after each pair (none by default)
        pair_separator: Option<usize> = None,
    }
}

impl Metric for CapacityProbe {
    const NAME: &'static str = "capacity_probe";
    const DESCRIPTION: &'static str = "empirical memory capacity (M9): n random key→value token pairs in the context, then a key; accuracy of the model's argmax for its value (and its mean probability) against n over seeded trials, with standard errors; value = the count at 50 % accuracy (interpolated; NaN when accuracy never crosses it)";
    const UNIT: Unit = Unit::Dimensionless;
    const NEEDS_MODEL: bool = true;
    type Params = Params;

    fn compute(input: &MetricInput, p: Params) -> Result<MetricOutput> {
        let model = input.model()?;
        let info = model.info()?;
        let counts: Vec<usize> = match p.counts.get() {
            Some(Value::Array(a)) => a
                .iter()
                .map(|x| {
                    x.as_u64()
                        .filter(|&n| n > 0)
                        .map(|n| n as usize)
                        .ok_or_else(|| {
                            Error::msg(format!(
                                "capacity_probe: `counts` must hold positive integers, found {x}"
                            ))
                        })
                })
                .collect::<Result<_>>()?,
            other => bail!(
                "capacity_probe: `counts` must be an array of positive integers, found {other:?}"
            ),
        };
        if counts.is_empty() || counts.windows(2).any(|w| w[0] >= w[1]) {
            bail!("capacity_probe: `counts` must be a non-empty increasing list, got {counts:?}");
        }
        if p.trials == 0 {
            bail!("capacity_probe: `trials` must be positive");
        }
        let v = info.vocab_size;
        let hi = p.token_max.unwrap_or(v);
        let lo = p.token_min;
        let max_n = *counts.last().unwrap_or(&0);
        if hi > v || lo >= hi || hi - lo < 2 * max_n {
            bail!(
                "capacity_probe: ids {lo}..{hi} must lie in the vocabulary (0..{v}) and hold 2 × {max_n} distinct keys and values"
            );
        }
        let mask = if info.causal {
            None
        } else {
            match info.extra["mask_token_id"].as_u64() {
                Some(m) => Some(m as u32),
                None => bail!("capacity_probe: the {} model is neither causal nor a masked-diffusion model with a mask token", info.arch),
            }
        };
        if let Some(m) = mask {
            if (lo as u32..hi as u32).contains(&m) {
                bail!("capacity_probe: the id range {lo}..{hi} holds the mask token {m}; set token_max");
            }
        }
        let id = |x: Option<usize>, name: &str| -> Result<Option<u32>> {
            match x {
                Some(t) if t >= v => {
                    bail!("capacity_probe: `{name}` {t} is outside the vocabulary (0..{v})")
                }
                Some(t) if (lo..hi).contains(&t) => {
                    bail!("capacity_probe: `{name}` {t} lies in the key/value range {lo}..{hi}")
                }
                other => Ok(other.map(|t| t as u32)),
            }
        };
        let sep = Separators {
            key_value: id(p.kv_separator, "kv_separator")?,
            pair: id(p.pair_separator, "pair_separator")?,
        };
        let len = sep.len(max_n) + usize::from(mask.is_some());
        if info.context_length.is_some_and(|c| len > c) {
            bail!("capacity_probe: {max_n} pairs need {len} tokens, beyond the model's context");
        }
        let total = (counts.len() * p.trials) as u64;
        let mut done = 0u64;
        let probe = run(
            &counts,
            p.trials,
            (lo as u32, hi as u32),
            p.seed,
            sep,
            |tokens: &[u32]| {
                let mut x = tokens.to_vec();
                x.extend(mask);
                let z = model.logits(&x)?.to_vec()?;
                if z.len() != x.len() * v {
                    bail!(
                        "capacity_probe: the model returned {} logits for [{}, {v}]",
                        z.len(),
                        x.len()
                    );
                }
                done += 1;
                tokit_sdk::progress(done, total, "capacity_probe");
                let row = x.len() - 1;
                Ok(z[row * v..(row + 1) * v].to_vec())
            },
        )?;
        let at50 = count_at(&probe.counts, &probe.accuracy, 0.5);
        let mut params = input.params.clone();
        params.insert("counts".into(), json!(counts));
        params.insert("trials".into(), json!(p.trials));
        params.insert("seed".into(), json!(p.seed));
        params.insert("token_min".into(), json!(lo));
        params.insert("token_max".into(), json!(hi));
        params.insert("kv_separator".into(), json!(p.kv_separator));
        params.insert("pair_separator".into(), json!(p.pair_separator));
        let mut out = MetricOutput {
            value: Some(at50.unwrap_or(f64::NAN)),
            unit: Unit::Dimensionless,
            estimator: "monte-carlo (seeded random key–value prompts)".into(),
            params,
            ..Default::default()
        }
        .scalar("trials", p.trials as f64);
        if at50.is_none() {
            let why = if probe.accuracy[0] < 0.5 {
                "accuracy is below 50 % already at the smallest count"
            } else {
                "accuracy stays at or above 50 % up to the largest count"
            };
            out.notes.push(format!("count at 50 %: NaN, {why}"));
        }
        out.notes.push(
            "accuracy: the stored value is the model's strict argmax; standard errors over trials"
                .into(),
        );
        out.plot = Some(json!({
            "kind": "lines", "x": "counts", "y": ["accuracy", "mean_prob"],
            "x_label": "stored key–value pairs", "y_label": "retrieval accuracy",
        }));
        let f = |v: &[f64]| v.iter().map(|&x| x as f32).collect::<Vec<f32>>();
        let c: Vec<f32> = counts.iter().map(|&n| n as f32).collect();
        let k = [counts.len()];
        out.tensor("counts", &c, &k)?
            .tensor("accuracy", &f(&probe.accuracy), &k)?
            .tensor("accuracy_se", &f(&probe.accuracy_se), &k)?
            .tensor("mean_prob", &f(&probe.mean_prob), &k)?
            .tensor("prob_se", &f(&probe.prob_se), &k)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An oracle with a memory of the last `m` pairs: it copies the value of the queried key
    /// when that pair is among them, else it puts all mass on token 0 (never a value here).
    fn limited(m: usize, v: usize) -> impl FnMut(&[u32]) -> Result<Vec<f32>> {
        move |t: &[u32]| {
            let q = *t.last().unwrap();
            let pairs = &t[..t.len() - 1];
            let n = pairs.len() / 2;
            let mut z = vec![0.0f32; v];
            match (n.saturating_sub(m)..n).find(|&i| pairs[2 * i] == q) {
                Some(i) => z[pairs[2 * i + 1] as usize] = 20.0,
                None => z[0] = 20.0,
            }
            Ok(z)
        }
    }

    #[test]
    fn prompts_are_reproducible_distinct_and_answerable() {
        for n in [1, 5, 30] {
            let p = prompt(n, 3, 100, 7, 2);
            assert_eq!(p.tokens.len(), 2 * n + 1);
            let q = p.tokens[2 * n];
            let i = (0..n).find(|&i| p.tokens[2 * i] == q).unwrap();
            assert_eq!(p.tokens[2 * i + 1], p.answer);
            let mut all = p.tokens[..2 * n].to_vec();
            all.sort_unstable();
            all.dedup();
            assert_eq!(all.len(), 2 * n, "keys and values distinct");
            assert!(all.iter().all(|&x| (3..100).contains(&x)));
            assert_eq!(prompt(n, 3, 100, 7, 2).tokens, p.tokens);
        }
        assert_ne!(
            prompt(8, 0, 100, 7, 2).tokens,
            prompt(8, 0, 100, 7, 3).tokens
        );
    }

    #[test]
    fn a_perfect_copier_is_always_right_and_a_limited_memory_falls_at_twice_its_size() {
        let counts = [1, 2, 4, 8, 16, 32];
        let perfect = run(
            &counts,
            40,
            (1, 200),
            3,
            Separators::default(),
            limited(usize::MAX, 200),
        )
        .unwrap();
        assert!(perfect.accuracy.iter().all(|&a| a == 1.0));
        assert!(perfect.accuracy_se.iter().all(|&s| s == 0.0));
        assert!(perfect.mean_prob.iter().all(|&p| p > 0.999));
        assert_eq!(count_at(&counts, &perfect.accuracy, 0.5), None);
        // Memory of 8 pairs: accuracy min(1, 8/n), so 50 % at n = 16 in expectation.
        let r = run(
            &counts,
            400,
            (1, 200),
            3,
            Separators::default(),
            limited(8, 200),
        )
        .unwrap();
        for (i, &n) in counts.iter().enumerate() {
            let want = (8.0 / n as f64).min(1.0);
            let tol = 4.0 * r.accuracy_se[i] + 1e-12;
            assert!(
                (r.accuracy[i] - want).abs() <= tol,
                "n = {n}: {} vs {want}",
                r.accuracy[i]
            );
        }
        let c = count_at(&counts, &r.accuracy, 0.5).unwrap();
        assert!((12.0..24.0).contains(&c), "count at 50 %: {c}");
    }

    #[test]
    fn separators_sit_between_keys_values_and_pairs() {
        let plain = prompt(3, 10, 50, 1, 0);
        let sep = Separators {
            key_value: Some(7),
            pair: Some(8),
        };
        let p = prompt_with(3, 10, 50, 1, 0, sep);
        assert_eq!(p.tokens.len(), sep.len(3));
        assert_eq!(p.answer, plain.answer);
        let (k, v) = (plain.tokens[0], plain.tokens[1]);
        assert_eq!(&p.tokens[..4], &[k, 7, v, 8]);
        assert_eq!(&p.tokens[p.tokens.len() - 2..], &[plain.tokens[6], 7]);
        assert_eq!(Separators::default().len(3), 7);
    }

    #[test]
    fn count_at_interpolates_and_reports_no_crossing() {
        let counts = [1, 2, 4, 8];
        assert_eq!(count_at(&counts, &[1.0, 0.75, 0.25, 0.0], 0.5), Some(3.0));
        assert_eq!(count_at(&counts, &[0.4, 0.3, 0.2, 0.1], 0.5), None);
        assert_eq!(count_at(&counts, &[0.9, 0.8, 0.7, 0.6], 0.5), None);
        assert_eq!(count_at(&counts, &[f64::NAN; 4], 0.5), None);
    }
}
