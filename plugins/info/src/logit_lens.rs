//! `logit_lens`: the next-token law read off every layer's residual stream through
//! the model's own final norm and unembedding, compared with the model's output law.
//!
//! The architecture owns its head (tied or untied unembedding, RMSNorm or LayerNorm, GGUF
//! names), so the lens is a hook the architecture plugin offers:
//! `blocks.{i}.hook_lens_logits` `[T, V]`, computed only when captured. This metric
//! captures it for every layer and, per layer ℓ and scored token t (row t − 1 predicts
//! token t; entry 0 is empty), reports the entropy of the lens law, `KL(p_out ‖ p_ℓ)`
//! from the model's output law, and the rank of the observed token (1 = top). At the last
//! layer the lens is the output law, so its KL is 0.

use crate::common::{require_causal, LawParams};
use crate::thermo;
use serde_json::json;
use tokit_sdk::{
    CorpusMode, Error, ForwardRequest, Metric, MetricInput, MetricOutput, Result, Variant,
};

pub struct LogitLens;

impl Metric for LogitLens {
    const NAME: &'static str = "logit_lens";
    const DESCRIPTION: &'static str = "logit lens: every layer's residual stream through the model's final norm and unembedding (hook blocks.{i}.hook_lens_logits); per layer and token the lens law's entropy, KL(p_out ‖ p_layer) and the observed token's rank; value = mean KL";
    const NEEDS_MODEL: bool = true;
    const CORPUS: CorpusMode = CorpusMode::PerDocument;
    const CORPUS_COLUMNS: &'static [&'static str] = &["lens_entropy", "lens_kl", "lens_rank"];
    const CORPUS_SERIES: &'static [&'static str] = &[
        "entropy_by_layer",
        "kl_by_layer",
        "rank_by_layer",
        "top1_by_layer",
    ];
    type Params = LawParams;

    fn compute(input: &MetricInput, p: LawParams) -> Result<MetricOutput> {
        require_causal(input)?;
        lens(input, p.temperature, p.unit.scale(), p.unit.name())
    }
}

/// Captured lens logits kept in memory at once (bytes); more layers take more forwards.
const CHUNK_BYTES: usize = 256 << 20;

fn lens(input: &MetricInput, temperature: f64, scale: f64, unit: &str) -> Result<MetricOutput> {
    let tokens = input.tokens_at_least(2)?;
    let model = input.model()?;
    let info = model.info()?;
    let layers = info.n_layers;
    let hook = |l: usize| format!("blocks.{l}.hook_lens_logits");
    if layers == 0 || !(0..layers).all(|l| info.hooks.contains(&hook(l))) {
        return Err(Error::msg(format!(
            "logit_lens: the `{}` model offers no logit lens (it has no `blocks.{{i}}.hook_lens_logits` hook for each of its {layers} layers; an architecture adds it by applying its final norm and unembedding to each layer's residual stream)",
            info.arch
        )));
    }
    let (t_len, v) = (tokens.len(), info.vocab_size);
    let fail = |e: thermo::ThermoError| Error::msg(format!("logit_lens: {e}"));
    let out_logits = model.logits(tokens)?.to_vec()?;

    let n = layers * t_len;
    let (mut entropy, mut kl, mut rank) = (vec![f32::NAN; n], vec![f32::NAN; n], vec![f32::NAN; n]);
    let per_call = (CHUNK_BYTES / (t_len * v * 4).max(1)).clamp(1, layers);
    for first in (0..layers).step_by(per_call) {
        tokit_sdk::check_cancelled()?;
        tokit_sdk::progress(first as u64, layers as u64, "logit_lens");
        let chunk: Vec<usize> = (first..(first + per_call).min(layers)).collect();
        let out = model.forward(
            tokens,
            &ForwardRequest {
                variants: vec![Variant::default()],
                capture: chunk.iter().map(|&l| hook(l)).collect(),
                ..Default::default()
            },
        )?;
        let out = out
            .first()
            .ok_or_else(|| Error::msg("logit_lens: no output"))?;
        for &l in &chunk {
            let lens = out
                .get(&hook(l))
                .ok_or_else(|| {
                    Error::msg(format!(
                        "logit_lens: the model did not return `{}`",
                        hook(l)
                    ))
                })?
                .to_vec()?;
            if lens.len() != t_len * v {
                return Err(Error::msg(format!(
                    "logit_lens: `{}` has {} values, expected [T, V] = [{t_len}, {v}]",
                    hook(l),
                    lens.len()
                )));
            }
            for t in 1..t_len {
                let row = (t - 1) * v..t * v;
                let (q, p) = (&lens[row.clone()], &out_logits[row]);
                let target = q[tokens[t] as usize];
                let i = l * t_len + t;
                let h = thermo::boltzmann(q, temperature).map_err(fail)?.entropy;
                entropy[i] = (h * scale) as f32;
                kl[i] =
                    (thermo::kl_with_temperature(p, q, temperature).map_err(fail)? * scale) as f32;
                rank[i] = (1 + q.iter().filter(|&&x| x > target).count()) as f32;
            }
        }
    }
    let by_layer = |m: &[f32]| -> Vec<f32> {
        m.chunks(t_len)
            .map(|row| {
                (row[1..].iter().map(|&x| x as f64).sum::<f64>() / (t_len - 1) as f64) as f32
            })
            .collect()
    };
    let top1: Vec<f32> = rank
        .chunks(t_len)
        .map(|row| row[1..].iter().filter(|&&r| r == 1.0).count() as f32 / (t_len - 1) as f32)
        .collect();
    let kl_layer = by_layer(&kl);
    let layer: Vec<f32> = (0..layers).map(|l| l as f32).collect();
    let mut params = input.params.clone();
    params.insert("temperature".into(), json!(temperature));
    params.insert("unit".into(), json!(unit));
    let mut out = MetricOutput {
        value: Some(kl_layer.iter().map(|&x| x as f64).sum::<f64>() / layers as f64),
        unit: unit.to_string().into(),
        estimator: "exact (teacher forcing)".into(),
        params,
        plot: Some(json!({
            "kind": "lines", "x": "layer", "y": ["entropy_by_layer", "kl_by_layer"],
            "x_label": "layer", "y_label": format!("mean over tokens ({unit})"),
            "title": "logit lens",
        })),
        ..Default::default()
    };
    out.notes.push(
        "rows: layers (lens after block ℓ); columns: scored token t (row t − 1 predicts t; column 0 empty); kl = KL(p_out ‖ p_ℓ); rank 1 = top; value = mean KL over layers and tokens".into(),
    );
    out = out
        .scalar("layers", layers as f64)
        .scalar("n_scored", (t_len - 1) as f64)
        .tensor("layer", &layer, &[layers])?
        .tensor("entropy_by_layer", &by_layer(&entropy), &[layers])?
        .tensor("kl_by_layer", &kl_layer, &[layers])?
        .tensor("rank_by_layer", &by_layer(&rank), &[layers])?
        .tensor("top1_by_layer", &top1, &[layers])?
        .tensor("lens_entropy", &entropy, &[layers, t_len])?
        .tensor("lens_kl", &kl, &[layers, t_len])?
        .tensor("lens_rank", &rank, &[layers, t_len])?;
    Ok(out)
}
