//! `sequence_kl`: the rate a model spends against a reference on one sequence
//! (`docs/measures.md` M4): the sum
//! over response steps of the exact per-step `KL(p_model(· | x_<t) ‖ p_ref(· | x_<t))`,
//! from both models' logits on the same tokens. Averaged over responses sampled from the
//! model, this is `KL(π ‖ π_ref)` of the response law (chain rule), with far less variance
//! than the sampled log-ratio `ln π(y)/π_ref(y)`, also reported.
//!
//! The reference's logits arrive as the input tensor `reference_logits` `[T, V]` (from the
//! reference model's forward pass on the same tokens), so the two models may come from
//! different architecture plugins as long as they share the vocabulary.

use crate::common::{require_causal, LawParams};
use crate::thermo;
use serde_json::json;
use tokit_sdk::{Error, Metric, MetricInput, MetricOutput, Result};

pub struct SequenceKl;

tokit_sdk::params! {
    pub struct Params {
        #[flatten]
        law: LawParams,
        /// the response starts here: steps t ≥ prompt_tokens are summed
        prompt_tokens: usize = 1,
    }
}

impl Metric for SequenceKl {
    const NAME: &'static str = "sequence_kl";
    const DESCRIPTION: &'static str = "rate a model spends against a reference on a sequence (M4): Σ over response steps (t ≥ prompt_tokens) of the exact KL(p_model ‖ p_ref) per step, the reference given as an input tensor `reference_logits` [T, V] on the same tokens; also the sampled log-ratio; value = the sum";
    const NEEDS_MODEL: bool = true;
    type Params = Params;

    fn compute(input: &MetricInput, p: Params) -> Result<MetricOutput> {
        require_causal(input)?;
        let u = p.law.unit;
        run(
            input,
            p.prompt_tokens,
            p.law.temperature,
            u.scale(),
            u.name(),
        )
    }
}

fn run(
    input: &MetricInput,
    prompt: usize,
    temperature: f64,
    scale: f64,
    unit: &str,
) -> Result<MetricOutput> {
    let tokens = input.tokens_at_least(2)?;
    let t_len = tokens.len();
    let prompt = prompt.max(1);
    if prompt >= t_len {
        return Err(Error::msg(format!(
            "sequence_kl: prompt_tokens = {prompt} leaves no response among the {t_len} tokens"
        )));
    }
    let reference = input.tensor("reference_logits")?;
    let model = input.model()?;
    let logits = model.logits(tokens)?;
    let (shape, rshape) = (logits.shape()?, reference.shape()?);
    if rshape != shape {
        return Err(Error::msg(format!(
            "sequence_kl: `reference_logits` has shape {rshape:?}, but the model's logits on the same {t_len} tokens are {shape:?} (same tokens and vocabulary needed)"
        )));
    }
    let v = shape[1];
    let (p, q) = (logits.to_vec()?, reference.to_vec()?);
    let fail = |e: thermo::ThermoError| Error::msg(format!("sequence_kl: {e}"));
    let mut step = vec![f32::NAN; t_len];
    let (mut total, mut log_ratio) = (0.0f64, 0.0f64);
    for t in prompt..t_len {
        let row = (t - 1) * v..t * v;
        let (pr, qr) = (&p[row.clone()], &q[row]);
        let kl = thermo::kl_with_temperature(pr, qr, temperature).map_err(fail)?;
        step[t] = (kl * scale) as f32;
        total += kl;
        let x = tokens[t] as usize;
        log_ratio += thermo::surprisal(qr, x, temperature).map_err(fail)?
            - thermo::surprisal(pr, x, temperature).map_err(fail)?;
    }
    let mut params = input.params.clone();
    params.insert("prompt_tokens".into(), json!(prompt));
    params.insert("temperature".into(), json!(temperature));
    params.insert("unit".into(), json!(unit));
    let mut out = MetricOutput {
        value: Some(total * scale),
        unit: unit.to_string().into(),
        estimator: "exact per step (teacher forcing)".into(),
        params,
        plot: Some(json!({
            "kind": "lines", "y": "step_kl", "x_label": "position t",
            "y_label": format!("KL(p_model ‖ p_ref) ({unit})"), "title": "rate spent per step",
        })),
        ..Default::default()
    };
    out.notes.push("value = Σ_t KL(p_model(·|x_<t) ‖ p_ref(·|x_<t)) over t ≥ prompt_tokens; log_ratio = ln p_model(x) − ln p_ref(x) over the same steps".into());
    out = out
        .scalar("log_ratio", log_ratio * scale)
        .scalar("steps", (t_len - prompt) as f64)
        .tensor("step_kl", &step, &[t_len])?;
    Ok(out)
}
