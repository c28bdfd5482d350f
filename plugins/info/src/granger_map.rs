//! `granger_map`: the model-based Granger map (`docs/measures.md` M6, an engine proposal
//! consistent with the paper):
//! how much the next-token law at position t depends on the token at an earlier
//! position j, measured by ablating j.
//!
//! `G[t, j] = KL(p(· | x_<t) || p(· | x_<t with x_j ablated))` and the log-probability
//! drop of the observed token, `ln p(x_t | x_<t) − ln p(x_t | x_<t, x_j ablated)`, for
//! 0 ≤ j < t < T; entries with j ≥ t are empty (NaN). The ablations go to the model as
//! variants of one forward call (in chunks bounded by memory), so architectures can reuse
//! the shared prefix. The ablation method is the model's default unless given, and is
//! recorded in the result, because values from different methods are not comparable.
//!
//! Cost per pair: one scan of the ablated row (its log-sum-exp) and one pass for the KL
//! against the clean row's probabilities, computed once per row. Both log-probabilities
//! come from the same `thermo::Scan` arithmetic, so an ablation that leaves a row unchanged gives
//! exactly 0 (KL and drop).

use crate::common::{require_causal, UnitParams};
use crate::thermo::{self, Scan, ThermoError};
use serde_json::json;
use tokit_sdk::{
    CorpusMode, Error, ForwardRequest, InterventionAction, InterventionRequest, Metric,
    MetricInput, MetricOutput, ModelInfo, Result, Variant,
};

pub struct GrangerMap;

tokit_sdk::params! {
    pub struct Params {
        #[flatten]
        common: UnitParams,
        /// ablation method (default: the model's)
        method: Option<String> = None,
        /// token for the `replace` method
        replace_with: Option<u64> = None,
        /// refuse longer texts (T forward variants)
        max_tokens: usize = 512,
        /// with `head`: the per-head map, knocking out that head's attention to j
        layer: Option<usize> = None,
        /// head of `layer` (see `layer`)
        head: Option<usize> = None,
    }
}

impl Metric for GrangerMap {
    const NAME: &'static str = "granger_map";
    const DESCRIPTION: &'static str = "model-based Granger map (M6): G[t, j] = KL(p(·|x_<t) || p(·|x_<t, x_j ablated)) and the log-prob drop of x_t, for every j < t, by batched position ablation; lag profile; value = mean G. Params: method (ablation method, default the model's), replace_with, max_tokens; layer + head: the per-head map by attention knockout";
    const NEEDS_MODEL: bool = true;
    const CORPUS: CorpusMode = CorpusMode::PerDocument;
    const CORPUS_SERIES: &'static [&'static str] = &["lag_profile"];
    type Params = Params;

    fn compute(input: &MetricInput, p: Params) -> Result<MetricOutput> {
        p.common.refuse_temperature(Self::NAME)?;
        require_causal(input)?;
        map(input, &p)
    }
}

/// Logits buffers kept in memory at once (bytes).
const CHUNK_BYTES: usize = 256 << 20;

fn map(input: &MetricInput, p: &Params) -> Result<MetricOutput> {
    let (scale, unit) = (p.common.unit.scale(), p.common.unit.name());
    let tokens = input.tokens_at_least(2)?;
    let model = input.model()?;
    let info = model.info()?;
    let t_len = tokens.len();
    let max_tokens = p.max_tokens;
    if t_len > max_tokens {
        return Err(Error::msg(format!(
            "granger_map: {t_len} tokens exceed max_tokens = {max_tokens} (the map needs T forward variants; raise it deliberately)"
        )));
    }
    let knockout = head_knockout(p, &info)?;
    let method = match (&knockout, p.method.as_deref()) {
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
    let replace_with = p.replace_with.map(|v| v as u32);
    let v = info.vocab_size;
    let fail = |e: thermo::ThermoError| Error::msg(format!("granger_map: {e}"));
    let logits = |o: &std::collections::BTreeMap<String, tokit_sdk::Tensor>| {
        o.get("logits")
            .ok_or_else(|| Error::msg("granger_map: the model returned no logits"))?
            .to_vec()
    };
    // The clean pass rides along as a variant of the first call (the runner's shared
    // reference); each of its rows is scanned once.
    let mut clean: Option<Clean> = None;

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
            clean = Some(Clean::new(c, v).map_err(fail)?);
        }
        let clean = clean
            .as_ref()
            .ok_or_else(|| Error::msg("granger_map: no clean pass"))?;
        let abls = outs.map(logits).collect::<Result<Vec<_>>>()?;
        // The sources of the chunk are independent: spread them over the cores, every
        // `threads`-th to each (earlier sources have more targets).
        let threads = std::thread::available_parallelism()
            .map_or(1, |n| n.get())
            .min(chunk.len());
        let columns = std::thread::scope(|sc| {
            let workers: Vec<_> = (0..threads)
                .map(|k| {
                    let abls = &abls;
                    sc.spawn(move || {
                        (k..chunk.len())
                            .step_by(threads)
                            .map(|i| (i, clean.column(chunk[i], &abls[i], tokens)))
                            .collect::<Vec<_>>()
                    })
                })
                .collect();
            workers
                .into_iter()
                .map(|w| {
                    w.join()
                        .map_err(|_| Error::msg("granger_map: a worker thread panicked"))
                })
                .collect::<Result<Vec<_>>>()
        })?;
        for (i, column) in columns.into_iter().flatten() {
            let j = chunk[i];
            for (t, (d, dr)) in (j + 1..t_len).zip(column.map_err(fail)?) {
                kl[t * t_len + j] = (d * scale) as f32;
                drop[t * t_len + j] = (dr * scale) as f32;
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
        unit: p.common.unit.into(),
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
fn head_knockout(p: &Params, info: &ModelInfo) -> Result<Option<(usize, usize, String)>> {
    let (layer, head) = match (p.layer, p.head) {
        (None, None) => return Ok(None),
        (Some(l), Some(h)) => (l, h),
        _ => {
            return Err(Error::msg(
                "granger_map: the per-head map needs both `layer` and `head`",
            ))
        }
    };
    if p.method.is_some() {
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

/// The clean pass: its logits `[T, V]`, the scan of each row and its probabilities in f64.
struct Clean {
    logits: Vec<f32>,
    vocab: usize,
    scans: Vec<Scan>,
    probs: Vec<f64>,
}

impl Clean {
    fn new(logits: Vec<f32>, vocab: usize) -> Result<Clean, ThermoError> {
        let scans = logits
            .chunks(vocab)
            .map(|r| Scan::new(r, 1.0, None))
            .collect::<Result<Vec<_>, _>>()?;
        let probs = logits
            .chunks(vocab)
            .zip(&scans)
            .flat_map(|(r, s)| r.iter().map(|&z| s.log_prob(z as f64).exp()))
            .collect();
        Ok(Clean {
            logits,
            vocab,
            scans,
            probs,
        })
    }

    /// Column `j` of the map from the logits `abl` `[T, V]` of the run with `j` ablated:
    /// the KL and the log-probability drop of every target `t > j` (predicted by row
    /// `t − 1`), in nats.
    fn column(
        &self,
        j: usize,
        abl: &[f32],
        tokens: &[u32],
    ) -> Result<Vec<(f64, f64)>, ThermoError> {
        (j + 1..tokens.len())
            .map(|t| {
                let r = t - 1;
                self.pair(
                    r,
                    &abl[r * self.vocab..(r + 1) * self.vocab],
                    tokens[t] as usize,
                )
            })
            .collect()
    }

    /// `KL(p_r ‖ q)` and `ln p_r(x) − ln q(x)` for clean row `r` and the ablated row `q`
    /// (logits): one scan of `q`, one pass for the KL. The same arithmetic as [`thermo::kl`] and
    /// [`thermo::surprisal`] (masked entries of `p` contribute 0, an entry masked in `q`
    /// only makes the KL `+inf`), with `p`'s scan and probabilities computed once per row.
    fn pair(&self, r: usize, q: &[f32], x: usize) -> Result<(f64, f64), ThermoError> {
        let span = r * self.vocab..(r + 1) * self.vocab;
        let (zp, p, sp) = (
            &self.logits[span.clone()],
            &self.probs[span],
            &self.scans[r],
        );
        if x >= self.vocab {
            return Err(ThermoError::TokenOutOfRange {
                token: x,
                vocab: self.vocab,
            });
        }
        let sq = Scan::new(q, 1.0, None)?;
        // ln p(x) − ln q(x) = s_q(x) − s_p(x).
        let drop = sq.surprisal(q[x] as f64) - sp.surprisal(zp[x] as f64);
        let mut sum = 0.0f64;
        for ((&zp, &zq), &pv) in zp.iter().zip(q).zip(p) {
            let lp = sp.log_prob(zp as f64);
            if lp == f64::NEG_INFINITY {
                continue;
            }
            let lq = sq.log_prob(zq as f64);
            if lq == f64::NEG_INFINITY {
                return Ok((f64::INFINITY, drop));
            }
            if pv > 0.0 {
                sum += pv * (lp - lq);
            }
        }
        Ok((sum.max(0.0), drop))
    }
}
