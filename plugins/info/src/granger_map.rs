//! Model-based Granger map (MEASURES.md M6, engine proposal consistent with the paper):
//! how much the next-token law at position t depends on the token at an earlier
//! position j, measured by ablating j.
//!
//! `G[t, j] = KL(p(· | x_<t) || p(· | x_<t with x_j ablated))` and the log-probability
//! drop of the observed token, `ln p(x_t | x_<t) − ln p(x_t | x_<t, x_j ablated)`, for
//! 0 ≤ j < t < T; entries with j ≥ t are empty (NaN). The ablations go to the model as
//! variants of one forward call (in chunks bounded by memory), so architectures can reuse
//! the shared prefix. The ablation method is the model's default unless given, and is
//! recorded in the result, because values from different methods are not comparable.

use crate::thermo;
use serde_json::json;
use tokit_sdk::{
    Error, ForwardRequest, InterventionAction, InterventionRequest, MetricInput, MetricOutput,
    ModelInfo, Result, Variant,
};

/// Logits buffers kept in memory at once (bytes).
const CHUNK_BYTES: usize = 256 << 20;

pub fn compute(input: &MetricInput, scale: f64, unit: &str) -> Result<MetricOutput> {
    let tokens = input.tokens_at_least(2)?;
    let model = input.model()?;
    let info = model.info()?;
    let t_len = tokens.len();
    let max_tokens = input.usize_or("max_tokens", 512)?;
    if t_len > max_tokens {
        return Err(Error::msg(format!(
            "granger_map: {t_len} tokens exceed max_tokens = {max_tokens} (the map needs T forward variants; raise it deliberately)"
        )));
    }
    let knockout = head_knockout(input, &info)?;
    let method = match (
        &knockout,
        input.params.get("method").and_then(|m| m.as_str()),
    ) {
        (Some((layer, head, _)), _) => format!("attention_knockout(layer {layer}, head {head})"),
        (None, Some(m)) => m.to_string(),
        (None, None) => info.default_ablation.clone(),
    };
    if knockout.is_none() && !info.ablation_methods.contains(&method) {
        return Err(Error::msg(format!(
            "granger_map: {} models do not support ablation method `{method}` (supported: {})",
            info.arch,
            if info.ablation_methods.is_empty() {
                "none".into()
            } else {
                info.ablation_methods.join(", ")
            }
        )));
    }
    let replace_with = input
        .params
        .get("replace_with")
        .and_then(|v| v.as_u64())
        .map(|v| v as u32);
    let v = info.vocab_size;
    let fail = |e: thermo::ThermoError| Error::msg(format!("granger_map: {e}"));
    let row = |t: usize| t * v..(t + 1) * v;
    let logits = |o: &std::collections::BTreeMap<String, tokit_sdk::Tensor>| {
        o.get("logits")
            .ok_or_else(|| Error::msg("granger_map: the model returned no logits"))?
            .to_vec()
    };
    // The clean pass rides along as a variant of the first call (the runner's shared
    // reference), with −ln p(x_t | x_<t) once per position (index t; t = 0 unused).
    let mut clean: Option<(Vec<f32>, Vec<f64>)> = None;

    let mut kl = vec![f32::NAN; t_len * t_len];
    let mut drop = vec![f32::NAN; t_len * t_len];
    let per_chunk = (CHUNK_BYTES / (t_len * v * 4).max(1)).max(1);
    let sources: Vec<usize> = (0..t_len - 1).collect();
    for (c, chunk) in sources.chunks(per_chunk).enumerate() {
        tokit_sdk::check_cancelled()?;
        tokit_sdk::progress((c * per_chunk) as u64, sources.len() as u64, "granger_map");
        let first = clean.is_none();
        let mut variants: Vec<Variant> = chunk
            .iter()
            .map(|&j| match knockout {
                // Every position stays; the intervention removes j from one head.
                Some(_) => Variant::default(),
                None => Variant {
                    ablate: vec![j],
                    method: Some(method.clone()),
                    replace_with,
                },
            })
            .collect();
        if first {
            variants.insert(0, Variant::default());
        }
        let interventions = match &knockout {
            Some((_, head, hook)) => chunk
                .iter()
                .enumerate()
                .map(|(i, &j)| InterventionRequest {
                    hook: hook.clone(),
                    action: InterventionAction::Knockout {
                        keys: vec![j],
                        heads: vec![*head],
                    },
                    variants: Some(vec![i + usize::from(first)]),
                })
                .collect(),
            None => vec![],
        };
        let out = model.forward(
            tokens,
            &ForwardRequest {
                variants,
                interventions,
                ..Default::default()
            },
        )?;
        let mut outs = out.iter();
        if first {
            let c = logits(
                outs.next()
                    .ok_or_else(|| Error::msg("granger_map: no output"))?,
            )?;
            let s: Vec<f64> = (0..t_len)
                .map(|t| match t {
                    0 => Ok(f64::NAN),
                    _ => thermo::surprisal(&c[row(t - 1)], tokens[t] as usize, 1.0),
                })
                .collect::<std::result::Result<_, _>>()
                .map_err(fail)?;
            clean = Some((c, s));
        }
        let (clean, clean_surprisal) = clean
            .as_ref()
            .ok_or_else(|| Error::msg("granger_map: no clean pass"))?;
        for (&j, o) in chunk.iter().zip(outs) {
            let abl = logits(o)?;
            // Target t (the token predicted by row t − 1) for every t > j.
            for t in j + 1..t_len {
                let (p, q) = (&clean[row(t - 1)], &abl[row(t - 1)]);
                let d = thermo::kl(p, q).map_err(fail)?;
                let s_abl = thermo::surprisal(q, tokens[t] as usize, 1.0).map_err(fail)?;
                kl[t * t_len + j] = (d * scale) as f32;
                // ln p(x_t | clean) − ln p(x_t | ablated) = s_ablated − s_clean.
                drop[t * t_len + j] = ((s_abl - clean_surprisal[t]) * scale) as f32;
            }
        }
    }
    // Lag profile: mean KL over pairs with t − j = lag.
    let mut lag_sum = vec![0.0f64; t_len];
    let mut lag_n = vec![0usize; t_len];
    for t in 1..t_len {
        for j in 0..t {
            lag_sum[t - j] += kl[t * t_len + j] as f64;
            lag_n[t - j] += 1;
        }
    }
    let lag: Vec<f32> = (0..t_len)
        .map(|l| {
            if lag_n[l] == 0 {
                f32::NAN
            } else {
                (lag_sum[l] / lag_n[l] as f64) as f32
            }
        })
        .collect();
    let total: f64 = kl.iter().filter(|x| !x.is_nan()).map(|&x| x as f64).sum();
    let n_pairs = t_len * (t_len - 1) / 2;
    let mut params = input.params.clone();
    params.insert("method".into(), json!(method));
    let mut out = MetricOutput {
        value: Some(total / n_pairs as f64),
        unit: unit.to_string(),
        estimator: "exact per pair (ablation)".into(),
        params,
        ablation: Some(method),
        plot: Some(json!({
            "kind": "heatmap", "z": "granger_kl", "title": "Granger map G[t, j]",
            "x_label": "ablated source position j", "y_label": "predicted position t",
            "z_label": format!("KL ({unit})"),
        })),
        ..Default::default()
    };
    out.notes.push(
        "G[t, j]: row t is the predicted token, column j the ablated source (j < t); value = mean over pairs; lag_profile[l] = mean G over t − j = l".into(),
    );
    out = out
        .scalar("pairs", n_pairs as f64)
        .scalar("forward_variants", (t_len - 1) as f64)
        .tensor("granger_kl", &kl, &[t_len, t_len])?
        .tensor("granger_logprob_drop", &drop, &[t_len, t_len])?
        .tensor("lag_profile", &lag, &[t_len])?;
    Ok(out)
}

/// `layer` and `head` given: the per-head map, by attention knockout at that layer's
/// pre-softmax scores (the head stops attending to j; every other head and layer still
/// sees it). Returns the layer, the head and the hook name.
fn head_knockout(input: &MetricInput, info: &ModelInfo) -> Result<Option<(usize, usize, String)>> {
    let get = |k: &str| input.params.get(k).filter(|v| !v.is_null());
    let (layer, head) = match (get("layer"), get("head")) {
        (None, None) => return Ok(None),
        (Some(l), Some(h)) => (
            l.as_u64()
                .ok_or_else(|| Error::msg("granger_map: `layer` must be a non-negative integer"))?
                as usize,
            h.as_u64()
                .ok_or_else(|| Error::msg("granger_map: `head` must be a non-negative integer"))?
                as usize,
        ),
        _ => {
            return Err(Error::msg(
                "granger_map: the per-head map needs both `layer` and `head`",
            ))
        }
    };
    if input.params.get("method").is_some_and(|m| !m.is_null()) {
        return Err(Error::msg(
            "granger_map: `method` and `layer`/`head` exclude each other (the per-head map knocks out attention)",
        ));
    }
    let hook = format!("blocks.{layer}.attn.hook_scores");
    if !info.hooks.contains(&hook) {
        return Err(Error::msg(format!(
            "granger_map: the per-head map knocks out attention at `{hook}`, which {} models do not offer{}",
            info.arch,
            if layer >= info.n_layers { format!(" (they have {} layers)", info.n_layers) } else { String::new() }
        )));
    }
    Ok(Some((layer, head, hook)))
}
