//! `information_flow`: semantic information flow at inference (`docs/measures.md` M5, a
//! reconstruction [P~]) and the
//! the directed information from a prompt to a response (M2, log-loss form).
//!
//! With X the prompt and Y the response, the information-density process is
//! `Λ_n = Σ_{i≤n} ln p(y_i | y^{i−1}, x) − ln p(y_i | y^{i−1})`. The reference law
//! `p(y_i | y^{i−1})` is either the exact mixture over a finite prompt prior
//! (`alternatives`, posterior weights `w_k ∝ π_k p(y^{i−1} | x_k)`) or the null-context
//! approximation (the prompt removed by the model's ablation method). Doob: `Λ_n = A_n +
//! M_n` with `A_n = Σ KL(p(·|y^{i−1}, x) || p(·|y^{i−1}))` predictable and non-decreasing;
//! under decoding from `p(·|x)` the expected increment is that KL, so Λ is a
//! sub-martingale and `E Λ_n = E A_n` (= I(X; Y^n) for the exact mixture).
//!
//! With `samples > 0` responses are drawn from the model given the prompt and the
//! Monte Carlo means of Λ_N and A_N are reported with standard errors, plus per-step
//! evidence of the sub-martingale property (mean increment and mean KL per step).

use crate::common::{require_causal, UnitParams};
use crate::streams::rng::Rng;
use crate::thermo;
use serde_json::{json, Value};
use tokit_sdk::{
    Array, Error, ForwardRequest, Metric, MetricInput, MetricOutput, ModelRef, Result, Variant,
};

pub struct InformationFlow;

tokit_sdk::params! {
    pub struct Params {
        #[flatten]
        common: UnitParams,
        /// how many leading tokens are the prompt X
        prompt_tokens: Option<usize> = None,
        /// other prompts (token arrays) for the exact mixture
        alternatives: Array = Array::NONE,
        /// prior over [prompt, alternatives...] (default uniform)
        prior: Array = Array::NONE,
        /// ablation method for the null-context reference
        method: Option<String> = None,
        /// 0: measure the given response; n: sample n responses
        samples: usize = 0,
        /// length of sampled responses
        response_tokens: usize = 16,
        /// sampling seed
        seed: u64 = 0,
    }
}

impl Metric for InformationFlow {
    const NAME: &'static str = "information_flow";
    const DESCRIPTION: &'static str = "semantic information flow from a prompt (the first `prompt_tokens` tokens) to a response (M5, reconstruction): Λ_n, its Doob decomposition A_n + M_n, share of negative increments; exact mixture over `alternatives` with `prior`, or null-context by ablating the prompt; `samples` > 0 draws responses and estimates the directed information E Λ_N with its standard error";
    const NEEDS_MODEL: bool = true;
    const RECONSTRUCTION: bool = true;
    type Params = Params;

    fn compute(input: &MetricInput, p: Params) -> Result<MetricOutput> {
        p.common.refuse_temperature(Self::NAME)?;
        require_causal(input)?;
        flow(input, &p)
    }
}

fn err(e: impl std::fmt::Display) -> Error {
    Error::msg(format!("information_flow: {e}"))
}

/// Per-step log-softmax rows predicting each response token (row i predicts y_i).
fn response_rows(
    model: &ModelRef,
    prompt: &[u32],
    response: &[u32],
    ablate_prompt: Option<&str>,
) -> Result<Vec<Vec<f64>>> {
    let seq: Vec<u32> = prompt.iter().chain(response).copied().collect();
    let request = match ablate_prompt {
        None => ForwardRequest::default(),
        Some(method) => ForwardRequest {
            variants: vec![Variant {
                ablate: (0..prompt.len()).collect(),
                method: Some(method.into()),
                replace_with: None,
            }],
            ..Default::default()
        },
    };
    let out = model.forward(&seq, &request)?;
    let logits = out
        .first()
        .and_then(|o| o.get("logits"))
        .ok_or_else(|| err("the model returned no logits"))?;
    logits.with_data(|data, shape| {
        let v = shape[1];
        (0..response.len())
            .map(|i| {
                let r = prompt.len() + i - 1;
                thermo::log_softmax(&data[r * v..(r + 1) * v], 1.0).map_err(err)
            })
            .collect::<Result<Vec<_>>>()
    })?
}

fn kl(p: &[f64], q: &[f64]) -> f64 {
    p.iter()
        .zip(q)
        .filter(|(a, _)| a.is_finite())
        .map(|(&a, &b)| a.exp() * (a - b))
        .sum::<f64>()
        .max(0.0)
}

fn logsumexp(xs: &[f64]) -> f64 {
    let m = xs.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
    if m == f64::NEG_INFINITY {
        return m;
    }
    m + xs.iter().map(|x| (x - m).exp()).sum::<f64>().ln()
}

/// One response: increments, per-step KL.
struct Trace {
    increments: Vec<f64>,
    kls: Vec<f64>,
}

fn trace(
    model: &ModelRef,
    prompts: &[Vec<u32>],
    log_prior: &[f64],
    response: &[u32],
    null_method: Option<&str>,
) -> Result<Trace> {
    let own = response_rows(model, &prompts[0], response, None)?;
    // Reference rows: the exact mixture over the prompt prior, or the prompt ablated.
    let reference: Vec<Vec<f64>> = match null_method {
        Some(m) => response_rows(model, &prompts[0], response, Some(m))?,
        None => {
            let per_prompt: Vec<Vec<Vec<f64>>> = std::iter::once(Ok(own.clone()))
                .chain(
                    prompts[1..]
                        .iter()
                        .map(|x| response_rows(model, x, response, None)),
                )
                .collect::<Result<_>>()?;
            let mut log_w: Vec<f64> = log_prior.to_vec();
            let mut rows = Vec::with_capacity(response.len());
            for (i, &y) in response.iter().enumerate() {
                let z = logsumexp(&log_w);
                let v = own[i].len();
                let mix: Vec<f64> = (0..v)
                    .map(|u| {
                        logsumexp(
                            &log_w
                                .iter()
                                .zip(&per_prompt)
                                .map(|(w, r)| w - z + r[i][u])
                                .collect::<Vec<_>>(),
                        )
                    })
                    .collect();
                for (w, r) in log_w.iter_mut().zip(&per_prompt) {
                    *w += r[i][y as usize];
                }
                rows.push(mix);
            }
            rows
        }
    };
    let increments = response
        .iter()
        .enumerate()
        .map(|(i, &y)| own[i][y as usize] - reference[i][y as usize])
        .collect();
    let kls = own.iter().zip(&reference).map(|(p, q)| kl(p, q)).collect();
    Ok(Trace { increments, kls })
}

/// Sample a response of `n` tokens from the model given `prompt`.
fn sample(model: &ModelRef, prompt: &[u32], n: usize, rng: &mut Rng) -> Result<Vec<u32>> {
    let mut seq = prompt.to_vec();
    for _ in 0..n {
        let logits = model.logits(&seq)?;
        let next = logits.with_data(|data, shape| -> Result<u32> {
            let v = shape[1];
            let lp = thermo::log_softmax(&data[data.len() - v..], 1.0).map_err(err)?;
            let u = rng.uniform();
            let mut acc = 0.0;
            for (k, l) in lp.iter().enumerate() {
                acc += l.exp();
                if u < acc {
                    return Ok(k as u32);
                }
            }
            Ok(lp
                .iter()
                .enumerate()
                .fold(
                    (0, f64::NEG_INFINITY),
                    |b, (k, &l)| if l > b.1 { (k, l) } else { b },
                )
                .0 as u32)
        })??;
        seq.push(next);
    }
    Ok(seq[prompt.len()..].to_vec())
}

fn mean_se(xs: &[f64]) -> (f64, f64) {
    let n = xs.len() as f64;
    let m = xs.iter().sum::<f64>() / n;
    if xs.len() < 2 {
        return (m, f64::NAN);
    }
    let var = xs.iter().map(|x| (x - m).powi(2)).sum::<f64>() / (n - 1.0);
    (m, (var / n).sqrt())
}

fn flow(input: &MetricInput, p: &Params) -> Result<MetricOutput> {
    let (scale, unit) = (p.common.unit.scale(), p.common.unit.name());
    let model = input.model()?;
    let info = model.info()?;
    let tokens = input.tokens_at_least(1)?;
    let samples = p.samples;
    // No default: a missing prompt length is refused like a zero one.
    let n_x = p.prompt_tokens.unwrap_or(0);
    if n_x == 0 || n_x > tokens.len() || (samples == 0 && n_x == tokens.len()) {
        return Err(err(format!(
            "`prompt_tokens` must be between 1 and the number of tokens ({}), leaving a response unless `samples` > 0",
            tokens.len()
        )));
    }
    let prompt = tokens[..n_x].to_vec();
    // Array parameters may also come as input tensors of the same name (the host sends
    // bulk arrays that way): `alternatives` [k, T] (or [T], one), `prior` [k].
    let tensor = |name: &str| -> Result<Option<(Vec<f32>, Vec<usize>)>> {
        match input.tensors.iter().find(|(n, _)| n == name) {
            Some((_, t)) => Ok(Some(t.with_data(|d, s| (d.to_vec(), s.to_vec()))?)),
            None => Ok(None),
        }
    };
    for (name, param) in [("alternatives", &p.alternatives), ("prior", &p.prior)] {
        if param.get().is_some_and(|v| !v.is_null()) && tensor(name)?.is_some() {
            return Err(err(format!(
                "`{name}` given both as a parameter and as a tensor input"
            )));
        }
    }
    let alternatives: Vec<Vec<u32>> = match (p.alternatives.get(), tensor("alternatives")?) {
        (_, Some((d, s))) => {
            let cols = match s.as_slice() {
                [_] => d.len(),
                [_, t] => *t,
                _ => return Err(err("`alternatives` must be [k, T] (or [T]) token ids")),
            };
            if d.iter().any(|&x| !(x >= 0.0 && x.fract() == 0.0)) {
                return Err(err("`alternatives` must be arrays of token ids"));
            }
            d.chunks(cols.max(1))
                .map(|r| r.iter().map(|&x| x as u32).collect())
                .collect()
        }
        (None | Some(Value::Null), None) => vec![],
        (Some(v), None) => serde_json::from_value(v.clone())
            .map_err(|e| err(format!("`alternatives` must be arrays of token ids: {e}")))?,
    };
    let mut prompts = vec![prompt.clone()];
    prompts.extend(alternatives.iter().cloned());
    if let Some(bad) = prompts
        .iter()
        .flatten()
        .find(|&&t| t as usize >= info.vocab_size)
    {
        return Err(err(format!(
            "token {bad} is outside the vocabulary ({})",
            info.vocab_size
        )));
    }
    let prior: Vec<f64> = match (p.prior.get(), tensor("prior")?) {
        (_, Some((d, _))) => d.iter().map(|&x| x as f64).collect(),
        (None | Some(Value::Null), None) => vec![1.0 / prompts.len() as f64; prompts.len()],
        (Some(v), None) => serde_json::from_value(v.clone())
            .map_err(|e| err(format!("`prior` must be numbers: {e}")))?,
    };
    if prior.len() != prompts.len()
        || prior.iter().any(|&p| p.is_nan() || p <= 0.0)
        || (prior.iter().sum::<f64>() - 1.0).abs() > 1e-9
    {
        return Err(err(format!(
            "`prior` needs {} positive weights summing to 1 (the prompt first, then each alternative)",
            prompts.len()
        )));
    }
    let log_prior: Vec<f64> = prior.iter().map(|p| p.ln()).collect();
    let null_method = if alternatives.is_empty() {
        let m = p.method.clone().unwrap_or(info.default_ablation.clone());
        if !info.ablation_methods.contains(&m) {
            return Err(err(format!(
                "the null-context reference removes the prompt by ablation, but {} models support none (`{m}`); pass `alternatives`",
                info.arch
            )));
        }
        Some(m)
    } else {
        // With alternatives the reference is the exact mixture: no ablation to choose.
        if let Some(m) = &p.method {
            return Err(err(format!(
                "`method` (`{m}`) chooses the ablation of the null-context reference; with `alternatives` the reference is the exact mixture, so leave it out"
            )));
        }
        None
    };
    let estimator = if null_method.is_some() {
        "null-context (prompt ablated)"
    } else {
        "exact mixture over the prompt prior"
    };
    let mut params = input.params.clone();
    params.insert("prompt_tokens".into(), json!(n_x));
    let mut out = MetricOutput {
        unit: p.common.unit.into(),
        estimator: estimator.into(),
        params,
        ablation: null_method.clone(),
        ..Default::default()
    };
    out.notes.push(
        "reconstruction of the paper's sub-martingale information flow (docs/measures.md M5)"
            .into(),
    );

    if samples == 0 {
        let response = &tokens[n_x..];
        let tr = trace(
            model,
            &prompts,
            &log_prior,
            response,
            null_method.as_deref(),
        )?;
        let n = response.len();
        let cum = |v: &[f64]| -> Vec<f32> {
            v.iter()
                .scan(0.0, |s, x| {
                    *s += x;
                    Some((*s * scale) as f32)
                })
                .collect()
        };
        let lambda = cum(&tr.increments);
        let a = cum(&tr.kls);
        let m: Vec<f32> = lambda.iter().zip(&a).map(|(l, a)| l - a).collect();
        let neg = tr.increments.iter().filter(|&&x| x < 0.0).count();
        out.value = Some(lambda[n - 1] as f64);
        out.plot = Some(json!({
            "kind": "lines", "y": ["lambda", "A", "M"], "title": "semantic information flow Λ_n = A_n + M_n",
            "x_label": "response step n", "y_label": format!("information ({unit})"),
        }));
        out = out
            .scalar("predictable_A", a[n - 1] as f64)
            .scalar("martingale_M", m[n - 1] as f64)
            .scalar("share_negative_increments", neg as f64 / n as f64)
            .scalar(
                "min_step_kl",
                tr.kls.iter().cloned().fold(f64::INFINITY, f64::min) * scale,
            )
            .tensor(
                "increment",
                &tr.increments
                    .iter()
                    .map(|x| (x * scale) as f32)
                    .collect::<Vec<_>>(),
                &[n],
            )?
            .tensor(
                "step_kl",
                &tr.kls
                    .iter()
                    .map(|x| (x * scale) as f32)
                    .collect::<Vec<_>>(),
                &[n],
            )?
            .tensor("lambda", &lambda, &[n])?
            .tensor("A", &a, &[n])?
            .tensor("M", &m, &[n])?;
        return Ok(out);
    }

    // Monte Carlo over responses drawn from p(· | x).
    let n = p.response_tokens;
    if n == 0 {
        return Err(err("`response_tokens` must be ≥ 1"));
    }
    let mut rng = Rng::new(p.seed);
    let mut lam_end = Vec::with_capacity(samples);
    let mut a_end = Vec::with_capacity(samples);
    let mut step_inc = vec![Vec::with_capacity(samples); n];
    let mut step_kl = vec![Vec::with_capacity(samples); n];
    for s in 0..samples {
        tokit_sdk::check_cancelled()?;
        tokit_sdk::progress(s as u64, samples as u64, "information_flow");
        let response = sample(model, &prompt, n, &mut rng)?;
        let tr = trace(
            model,
            &prompts,
            &log_prior,
            &response,
            null_method.as_deref(),
        )?;
        lam_end.push(tr.increments.iter().sum::<f64>());
        a_end.push(tr.kls.iter().sum::<f64>());
        for i in 0..n {
            step_inc[i].push(tr.increments[i]);
            step_kl[i].push(tr.kls[i]);
        }
    }
    let (lm, lse) = mean_se(&lam_end);
    let (am, ase) = mean_se(&a_end);
    let inc: Vec<(f64, f64)> = step_inc.iter().map(|v| mean_se(v)).collect();
    let kls: Vec<f64> = step_kl.iter().map(|v| mean_se(v).0).collect();
    // Evidence: the mean realised increment at each step is within 3 s.e. of a value ≥ 0
    // (1e-9 absorbs rounding where the prompt no longer matters and every increment is 0).
    let violations = inc
        .iter()
        .filter(|(m, se)| *m + 3.0 * se.max(0.0) < -1e-9)
        .count();
    out.value = Some(lm * scale);
    out.plot = Some(json!({
        "kind": "lines", "y": ["mean_increment", "mean_step_kl"], "title": "mean information increment per step",
        "x_label": "response step n", "y_label": format!("information ({unit})"),
    }));
    out.estimator = format!("monte-carlo over {samples} sampled responses; {estimator}");
    out = out
        .scalar("se", lse * scale)
        .scalar("predictable_A_mean", am * scale)
        .scalar("predictable_A_se", ase * scale)
        .scalar("samples", samples as f64)
        .scalar("submartingale_violations", violations as f64)
        .tensor(
            "mean_increment",
            &inc.iter()
                .map(|(m, _)| (m * scale) as f32)
                .collect::<Vec<_>>(),
            &[n],
        )?
        .tensor(
            "mean_increment_se",
            &inc.iter()
                .map(|(_, s)| (s * scale) as f32)
                .collect::<Vec<_>>(),
            &[n],
        )?
        .tensor(
            "mean_step_kl",
            &kls.iter().map(|k| (k * scale) as f32).collect::<Vec<_>>(),
            &[n],
        )?;
    out.notes.push("value = mean Λ_N (the directed information estimate); with the exact mixture E Λ_N = E A_N = I(X; Y^N)".into());
    Ok(out)
}
