//! The `info` metric plugin: per-token information of a model's next-token law
//! (MEASURES.md M1: surprisal, entropy, cross-entropy, perplexity, and the Boltzmann
//! quantities free energy, internal energy, heat capacity), as local (per-token) values
//! and corpus aggregates with standard errors; and information measures of symbol streams
//! and real series with no model (transfer entropy, active information, directed
//! information, Granger causality, exact M2/M5 toy oracles: [`streams`]).

pub mod attention;
pub mod elbo;
pub mod granger_map;
pub mod information_flow;
pub mod logit_lens;
pub mod sequence_kl;
pub mod streams;
pub mod thermo;
pub mod token_stats;
pub mod units;

use serde_json::json;
pub use streams::StreamInfo;
use token_stats::{PositionStats, TokenStatsOptions};
use tokit_sdk::{
    bail, ensure, Error, Metric, MetricInput, MetricOutput, MetricSpec, ParamSpec, Result, Tensor,
};

/// Metrics of the next-token law at every position.
pub struct TokenInfo;

const METRICS: [(&str, &str, &str); 11] = [
    ("token_stats", "nats", "all per-token values (surprisal, entropy, rank, free/internal energy, heat capacity); value = cross-entropy"),
    ("surprisal", "nats", "surprisal −ln p(x_t | x_<t) of each token; value = its mean (cross-entropy)"),
    ("entropy", "nats", "entropy of the next-token law at each position; value = its mean"),
    ("cross_entropy", "nats", "mean surprisal over the scored tokens, with standard error and perplexity"),
    ("perplexity", "", "exp(cross-entropy), with a delta-method standard error"),
    ("granger_map", "nats", "model-based Granger map (M6): G[t, j] = KL(p(·|x_<t) || p(·|x_<t, x_j ablated)) and the log-prob drop of x_t, for every j < t, by batched position ablation; lag profile; value = mean G. Params: method (ablation method, default the model's), replace_with, max_tokens; layer + head: the per-head map by attention knockout"),
    ("information_flow", "nats", "semantic information flow from a prompt (the first `prompt_tokens` tokens) to a response (M5, reconstruction): Λ_n, its Doob decomposition A_n + M_n, share of negative increments; exact mixture over `alternatives` with `prior`, or null-context by ablating the prompt; `samples` > 0 draws responses and estimates the directed information E Λ_N with its standard error"),
    ("logit_lens", "nats", "logit lens: every layer's residual stream through the model's final norm and unembedding (hook blocks.{i}.hook_lens_logits); per layer and token the lens law's entropy, KL(p_out ‖ p_layer) and the observed token's rank; value = mean KL"),
    ("attention_energetics", "nats", "attention as a Boltzmann law per layer and head (M7): free energy, mean energy, entropy, k90; token-mixing summaries (M13): lag profile, locality within `window`, mass above the diagonal; from a model's blocks.*.attn.hook_scores or a `scores` tensor [.., T_q, T_k]; value = mean attention entropy"),
    ("sequence_kl", "nats", "rate a model spends against a reference on a sequence (M4): Σ over response steps (t ≥ prompt_tokens) of the exact KL(p_model ‖ p_ref) per step, the reference given as an input tensor `reference_logits` [T, V] on the same tokens; also the sampled log-ratio; value = the sum"),
    ("boltzmann", "nats", "Boltzmann view of each next-token law (M1): free energy F = −T ln Z, internal energy U, entropy H = (U − F)/T, heat capacity C = Var(E)/T²; value = mean C. Takes a model and text, or a `logits` tensor [N, V] whose rows are laws"),
];

fn params(metric: &str) -> Vec<ParamSpec> {
    let mut p = vec![
        ParamSpec::new(
            "temperature",
            "number",
            json!(1.0),
            "temperature T of the Boltzmann law softmax(z / T)",
        ),
        ParamSpec::new(
            "unit",
            "string",
            json!("nats"),
            "`nats` or `bits` for information quantities (heat capacity is dimensionless)",
        ),
    ];
    if metric == "information_flow" {
        p.extend([
            ParamSpec::new(
                "prompt_tokens",
                "integer",
                json!(null),
                "how many leading tokens are the prompt X",
            ),
            ParamSpec::new(
                "alternatives",
                "array",
                json!(null),
                "other prompts (token arrays) for the exact mixture",
            ),
            ParamSpec::new(
                "prior",
                "array",
                json!(null),
                "prior over [prompt, alternatives...] (default uniform)",
            ),
            ParamSpec::new(
                "method",
                "string",
                json!(null),
                "ablation method for the null-context reference",
            ),
            ParamSpec::new(
                "samples",
                "integer",
                json!(0),
                "0: measure the given response; n: sample n responses",
            ),
            ParamSpec::new(
                "response_tokens",
                "integer",
                json!(16),
                "length of sampled responses",
            ),
            ParamSpec::new("seed", "integer", json!(0), "sampling seed"),
        ]);
    }
    if metric == "sequence_kl" {
        p.push(ParamSpec::new(
            "prompt_tokens",
            "integer",
            json!(1),
            "the response starts here: steps t ≥ prompt_tokens are summed",
        ));
    }
    if metric == "attention_energetics" {
        p.push(ParamSpec::new(
            "window",
            "integer",
            json!(4),
            "locality: share of attention mass on keys with |i − j| < window",
        ));
    }
    if metric == "granger_map" {
        p.extend([
            ParamSpec::new(
                "method",
                "string",
                json!(null),
                "ablation method (default: the model's)",
            ),
            ParamSpec::new(
                "replace_with",
                "integer",
                json!(null),
                "token for the `replace` method",
            ),
            ParamSpec::new(
                "max_tokens",
                "integer",
                json!(512),
                "refuse longer texts (T forward variants)",
            ),
            ParamSpec::new(
                "layer",
                "integer",
                json!(null),
                "with `head`: the per-head map, knocking out that head's attention to j",
            ),
            ParamSpec::new(
                "head",
                "integer",
                json!(null),
                "head of `layer` (see `layer`)",
            ),
        ]);
    }
    p
}

/// Metrics that read logits row t − 1 as the law of token t. On a bidirectional model
/// (a masked-diffusion mask predictor) that row is no next-token law, so they refuse it.
const NEXT_TOKEN_METRICS: &[&str] = &[
    "surprisal",
    "cross_entropy",
    "token_stats",
    "entropy",
    "perplexity",
    "boltzmann",
    "granger_map",
    "information_flow",
    "sequence_kl",
    "logit_lens",
];

fn refuse_non_causal(input: &MetricInput) -> Result<()> {
    let (Some(model), true) = (
        &input.model,
        NEXT_TOKEN_METRICS.contains(&input.metric.as_str()),
    ) else {
        return Ok(());
    };
    let info = model.info()?;
    ensure!(
        info.causal,
        "{}: model `{}` is not causal (its logits at position t are a law of the masked token t \
         given the whole sequence, not of the next token); this metric needs next-token laws. \
         For a masked-diffusion model use `elbo` (its likelihood bound) or `attention_energetics`",
        input.metric,
        info.arch
    );
    Ok(())
}

impl Metric for TokenInfo {
    fn specs() -> Vec<MetricSpec> {
        METRICS
            .iter()
            .map(|(name, unit, doc)| MetricSpec {
                name: name.to_string(),
                description: doc.to_string(),
                unit: unit.to_string(),
                needs_model: !matches!(*name, "boltzmann" | "attention_energetics"),
                reconstruction: *name == "information_flow",
                params: params(name),
            })
            .collect()
    }

    fn compute(input: &MetricInput) -> Result<MetricOutput> {
        let temperature = input.f64_or("temperature", 1.0)?;
        let unit = input.str_or("unit", "nats")?;
        let scale = match unit.as_str() {
            "nats" => 1.0,
            "bits" => 1.0 / std::f64::consts::LN_2,
            other => bail!(
                "{}: parameter `unit`: expected \"nats\" or \"bits\", found \"{other}\"",
                input.metric
            ),
        };
        let mut params = input.params.clone();
        params.insert("temperature".into(), json!(temperature));
        params.insert("unit".into(), json!(unit));

        refuse_non_causal(input)?;
        if input.metric == "information_flow" {
            return information_flow::compute(input, scale, &unit);
        }
        if input.metric == "granger_map" {
            return granger_map::compute(input, scale, &unit);
        }
        if input.metric == "attention_energetics" {
            return attention::compute(input, scale, &unit);
        }
        if input.metric == "sequence_kl" {
            return sequence_kl::compute(input, temperature, scale, &unit);
        }
        if input.metric == "logit_lens" {
            return logit_lens::compute(input, temperature, scale, &unit);
        }
        if input.metric == "boltzmann" && input.model.is_none() {
            return boltzmann_rows(input, temperature, scale, &unit, params);
        }
        let tokens = input.tokens_at_least(2)?;
        let logits = input.model()?.logits(tokens)?;
        let opts = TokenStatsOptions {
            temperature,
            ..Default::default()
        };
        let stats = logits
            .with_data(|data, shape| token_stats::token_stats(data, shape[1], tokens, &opts))?
            .map_err(|e| Error::msg(format!("{}: {e}", input.metric)))?;
        let c = &stats.corpus;
        // Local values are per token: entry t scores token t given x_<t; token 0 has none.
        let local = |f: &dyn Fn(&PositionStats) -> f64, s: f64| -> Vec<f32> {
            std::iter::once(f32::NAN)
                .chain(stats.local.iter().map(|p| (f(p) * s) as f32))
                .collect()
        };
        let n = tokens.len();
        let se = |e: &token_stats::Estimate, s: f64| e.se.map_or(f64::NAN, |x| x * s);
        let mut out = MetricOutput {
            unit: unit.clone(),
            estimator: "exact (teacher forcing)".into(),
            params,
            ..Default::default()
        };
        out.scalars.insert("n_scored".into(), c.n as f64);
        match input.metric.as_str() {
            "surprisal" | "cross_entropy" | "token_stats" => {
                out.value = Some(c.cross_entropy.value * scale);
                out = out
                    .scalar("se", se(&c.cross_entropy, scale))
                    .scalar("perplexity", c.perplexity.value)
                    .scalar("perplexity_se", se(&c.perplexity, 1.0))
                    .scalar("bits_per_token", c.bits_per_token.value);
                if input.metric != "cross_entropy" {
                    out = out.tensor("surprisal", &local(&|p| p.surprisal, scale), &[n])?;
                }
                if input.metric == "token_stats" {
                    out = out
                        .scalar("entropy_mean", c.entropy.value * scale)
                        .scalar("entropy_mean_se", se(&c.entropy, scale))
                        .scalar("heat_capacity_mean", c.heat_capacity.value)
                        .scalar("top1_accuracy", c.top1_accuracy.value)
                        .tensor("entropy", &local(&|p| p.entropy, scale), &[n])?
                        .tensor("rank", &local(&|p| p.rank as f64, 1.0), &[n])?
                        .tensor("free_energy", &local(&|p| p.free_energy, scale), &[n])?
                        .tensor(
                            "internal_energy",
                            &local(&|p| p.internal_energy, scale),
                            &[n],
                        )?
                        .tensor("heat_capacity", &local(&|p| p.heat_capacity, 1.0), &[n])?;
                }
            }
            "entropy" => {
                out.value = Some(c.entropy.value * scale);
                out = out.scalar("se", se(&c.entropy, scale)).tensor(
                    "entropy",
                    &local(&|p| p.entropy, scale),
                    &[n],
                )?;
            }
            "perplexity" => {
                out.unit = String::new();
                out.value = Some(c.perplexity.value);
                out = out
                    .scalar("se", se(&c.perplexity, 1.0))
                    .scalar("cross_entropy", c.cross_entropy.value * scale);
            }
            "boltzmann" => {
                out.value = Some(c.heat_capacity.value);
                out = out
                    .scalar("se", se(&c.heat_capacity, 1.0))
                    .scalar("free_energy_mean", c.free_energy.value * scale)
                    .scalar("internal_energy_mean", c.internal_energy.value * scale)
                    .scalar("entropy_mean", c.entropy.value * scale)
                    .tensor("free_energy", &local(&|p| p.free_energy, scale), &[n])?
                    .tensor(
                        "internal_energy",
                        &local(&|p| p.internal_energy, scale),
                        &[n],
                    )?
                    .tensor("entropy", &local(&|p| p.entropy, scale), &[n])?
                    .tensor("heat_capacity", &local(&|p| p.heat_capacity, 1.0), &[n])?;
                out.notes.push(
                    "heat capacity is dimensionless (Var of the energy in units of T²)".into(),
                );
            }
            other => bail!("info: unknown metric `{other}`"),
        }
        Ok(out)
    }
}

/// `boltzmann` on explicit logits: each row of `[N, V]` is a law.
fn boltzmann_rows(
    input: &MetricInput,
    temperature: f64,
    scale: f64,
    unit: &str,
    params: serde_json::Map<String, serde_json::Value>,
) -> Result<MetricOutput> {
    let logits: &Tensor = input.tensor("logits")?;
    let rows = logits.with_data(|data, shape| -> Result<Vec<thermo::Boltzmann>> {
        let v = *shape.last().unwrap_or(&0);
        if shape.len() > 2 || v == 0 {
            bail!("boltzmann: `logits` must be [N, V] or [V] with V > 0, got {shape:?}");
        }
        data.chunks(v)
            .map(|row| {
                thermo::boltzmann(row, temperature)
                    .map_err(|e| Error::msg(format!("boltzmann: {e}")))
            })
            .collect()
    })??;
    let n = rows.len();
    let col = |f: fn(&thermo::Boltzmann) -> f64, s: f64| -> Vec<f32> {
        rows.iter().map(|b| (f(b) * s) as f32).collect()
    };
    let mean = |f: fn(&thermo::Boltzmann) -> f64| rows.iter().map(f).sum::<f64>() / n as f64;
    let mut out = MetricOutput {
        value: Some(mean(|b| b.heat_capacity)),
        unit: unit.to_string(),
        estimator: "exact".into(),
        params,
        ..Default::default()
    };
    out = out
        .scalar("free_energy_mean", mean(|b| b.free_energy) * scale)
        .scalar("internal_energy_mean", mean(|b| b.internal_energy) * scale)
        .scalar("entropy_mean", mean(|b| b.entropy) * scale)
        .scalar("log_z_mean", mean(|b| b.log_z))
        .tensor("free_energy", &col(|b| b.free_energy, scale), &[n])?
        .tensor("internal_energy", &col(|b| b.internal_energy, scale), &[n])?
        .tensor("entropy", &col(|b| b.entropy, scale), &[n])?
        .tensor("heat_capacity", &col(|b| b.heat_capacity, 1.0), &[n])?;
    out.notes
        .push("heat capacity is dimensionless (Var of the energy in units of T²)".into());
    Ok(out)
}

tokit_sdk::export_plugin! {
    name: "info",
    version: env!("CARGO_PKG_VERSION"),
    description: "information of next-token laws: surprisal, entropy, cross-entropy, perplexity, Boltzmann quantities (MEASURES.md M1); information of symbol streams and series: entropy rate, active information, transfer entropy, directed information, Granger causality, exact toy oracles (M2, M5, M6)",
    architectures: [],
    metrics: [TokenInfo, StreamInfo, elbo::Elbo],
}
