//! `token_semantic_rd`: rate–distortion on a real model (`docs/measures.md` M3): for one
//! context, the model's next-token law over its top-k tokens is the source; the distortion
//! between tokens x and y is `1 − cos(e_x, e_y)` of their embedding rows (or unembedding
//! rows, given as a tensor); Blahut–Arimoto traces R(D): how many nats a channel must keep
//! to reproduce the next token up to a given semantic distortion.
//!
//! Also the corpus operating point of the model on the whole text, so architectures can
//! be placed side by side: `D = cross-entropy` (mean surprisal of the observed tokens) and
//! `R = H(p̄) − cross-entropy`, where `p̄` is the mean of the model's next-token laws over
//! the scored positions. It is the point `(D, H − D)` of the log-loss R(D) of a source with
//! entropy `H(p̄)`, and `H(p̄) − CE` is a lower estimate of `I(context; next token)`.

use super::{args_of, ba_options, name_metric, rd_curve_record, record, Ba};
use crate::args::{Args, Record};
use crate::blahut_arimoto::RdProblem;
use serde_json::json;
use tokit_sdk::{Error, ForwardRequest, Metric, MetricInput, MetricOutput, Result, Variant};

pub struct TokenSemanticRd;

tokit_sdk::params! {
    pub struct Params {
        /// tokens of the next-token law kept (renormalised)
        top_k: usize = 16,
        /// row whose law is the source (default: the last, predicting the token after the text)
        position: Option<usize> = None,
        /// `embedding` (hook_embed) or `unembedding` (input tensor `unembedding` [V, d])
        rows: String = "embedding".into(),
        /// points of the β grid
        num_points: usize = 31,
        /// random-simplex restarts besides the uniform start (deterministic)
        restarts: usize = 1,
        #[flatten]
        ba: Ba,
    }
}

impl Metric for TokenSemanticRd {
    const NAME: &'static str = "token_semantic_rd";
    const DESCRIPTION: &'static str = "token-semantic R(D) on a model: the next-token law at `position` over its top_k tokens, distortion 1 − cos between the tokens' embedding rows (or an `unembedding` tensor [V, d] with rows: \"unembedding\"), the Blahut–Arimoto curve; and the corpus operating point D = cross-entropy, R = H(mean law) − cross-entropy; value = H of the top-k law";
    const NEEDS_MODEL: bool = true;
    type Params = Params;

    fn compute(input: &MetricInput, p: Params) -> Result<MetricOutput> {
        let args = args_of(input)?;
        run(input, &args, p)
            .map_err(|e| name_metric(Self::NAME, e))?
            .into_output()
    }
}

fn log_softmax(z: &[f32]) -> Vec<f64> {
    let m = z.iter().fold(f64::NEG_INFINITY, |a, &b| a.max(b as f64));
    let lse = m + z.iter().map(|&x| (x as f64 - m).exp()).sum::<f64>().ln();
    z.iter().map(|&x| x as f64 - lse).collect()
}

fn run(input: &MetricInput, args: &Args, prm: Params) -> Result<Record> {
    let unit = prm.ba.unit;
    let mut rec = record(
        args,
        unit,
        "Blahut–Arimoto on the model's top-k next-token law",
    );
    let s = unit.scale();
    let err = |m: String| Error::msg(format!("token_semantic_rd: {m}"));
    let tokens = input.tokens_at_least(1)?;
    let model = input.model()?;
    let info = model.info()?;
    let t_len = tokens.len();
    let k = prm.top_k;
    if k < 2 || k > info.vocab_size {
        return Err(err(format!(
            "top_k must be in 2..={}, got {k}",
            info.vocab_size
        )));
    }
    // No default value: the last row depends on the text.
    let position = prm.position.unwrap_or(t_len - 1);
    if position >= t_len {
        return Err(err(format!(
            "position {position} is beyond the {t_len} tokens"
        )));
    }
    let v = info.vocab_size;
    let logits = model.logits(tokens)?.to_vec()?;
    if logits.len() != t_len * v {
        return Err(err(format!(
            "the model returned {} logits, expected [{t_len}, {v}]",
            logits.len()
        )));
    }
    // Source: the law at `position` over its k most likely tokens, renormalised.
    let lp = log_softmax(&logits[position * v..(position + 1) * v]);
    let mut order: Vec<usize> = (0..v).collect();
    order.sort_by(|&a, &b| lp[b].total_cmp(&lp[a]));
    let top: Vec<usize> = order[..k].to_vec();
    let mass: f64 = top.iter().map(|&i| lp[i].exp()).sum();
    let p: Vec<f64> = top.iter().map(|&i| lp[i].exp() / mass).collect();
    // Rows: an `unembedding` tensor [V, d] if given, else the embedding rows via hook_embed.
    let rows_kind = prm.rows;
    let rows: Vec<Vec<f64>> = match rows_kind.as_str() {
        "unembedding" => {
            let m = args
                .matrix("unembedding")?
                .ok_or_else(|| err("rows = \"unembedding\" needs an input tensor `unembedding` [V, d] (e.g. the logits of a forward pass that replaces ln_final.hook_normalized by the identity, transposed)".into()))?;
            let (a, r, c) = m;
            if r != v {
                return Err(err(format!(
                    "`unembedding` has {r} rows, the vocabulary has {v}"
                )));
            }
            top.iter()
                .map(|&i| a.data[i * c..(i + 1) * c].to_vec())
                .collect()
        }
        "embedding" => {
            if !info.hooks.iter().any(|h| h == "hook_embed") {
                return Err(err(format!(
                    "the `{}` model exposes no embedding rows (no `hook_embed` hook); pass rows: \"unembedding\" with an `unembedding` tensor",
                    info.arch
                )));
            }
            let ids: Vec<u32> = top.iter().map(|&i| i as u32).collect();
            let out = model.forward(
                &ids,
                &ForwardRequest {
                    variants: vec![Variant::default()],
                    capture: vec!["hook_embed".into()],
                    ..Default::default()
                },
            )?;
            let e = out
                .first()
                .and_then(|o| o.get("hook_embed"))
                .ok_or_else(|| err("the model did not return `hook_embed`".into()))?
                .to_vec()?;
            let d = e.len() / k;
            (0..k)
                .map(|i| e[i * d..(i + 1) * d].iter().map(|&x| x as f64).collect())
                .collect()
        }
        other => {
            return Err(err(format!(
                "rows: expected \"embedding\" or \"unembedding\", found \"{other}\""
            )))
        }
    };
    let norm: Vec<f64> = rows
        .iter()
        .map(|r| r.iter().map(|x| x * x).sum::<f64>().sqrt())
        .collect();
    if let Some(i) = norm.iter().position(|&n| n == 0.0 || !n.is_finite()) {
        return Err(err(format!(
            "the {rows_kind} row of token {} has norm {}",
            top[i], norm[i]
        )));
    }
    let mut dist = vec![0.0; k * k];
    for x in 0..k {
        for y in 0..k {
            if x != y {
                let dot: f64 = rows[x].iter().zip(&rows[y]).map(|(a, b)| a * b).sum();
                // Rounding can push cos a hair past 1; distortions must not be negative.
                dist[x * k + y] = (1.0 - dot / (norm[x] * norm[y])).max(0.0);
            }
        }
    }
    let prob = RdProblem::new(&p, dist, k, 1e-9)?;
    let opts = ba_options(&mut rec, &prm.ba, prm.restarts)?;
    let betas = prob.default_betas(prm.num_points.max(2));
    let pts = prob.sweep(&betas, &opts)?;
    rd_curve_record(&mut rec, &pts, &prob, unit, None);
    rec.plot_lines(
        "distortion",
        &["rate"],
        "expected semantic distortion 1 − cos",
        &format!("rate R ({})", unit.name()),
    );
    let h: f64 = -p.iter().map(|&q| q * q.ln()).sum::<f64>();
    rec.value = Some(h * s);
    rec.scalar("source_entropy", h * s);
    rec.scalar("top_k_mass", mass);
    rec.tensor(
        "tokens",
        &top.iter().map(|&i| i as f64).collect::<Vec<_>>(),
        &[k],
    );
    rec.tensor("source_law", &p, &[k]);
    rec.tensor("distortion_matrix", &prob.d, &[k, k]);
    // Corpus operating point over the scored positions 1..T.
    if t_len >= 2 {
        let mut bar = vec![0.0f64; v];
        let mut ce = 0.0;
        for t in 1..t_len {
            let l = log_softmax(&logits[(t - 1) * v..t * v]);
            ce -= l[tokens[t] as usize];
            for (b, x) in bar.iter_mut().zip(&l) {
                *b += x.exp();
            }
        }
        let n = (t_len - 1) as f64;
        ce /= n;
        let h_bar: f64 = -bar
            .iter()
            .map(|&b| b / n)
            .filter(|&q| q > 0.0)
            .map(|q| q * q.ln())
            .sum::<f64>();
        rec.scalar("corpus_distortion", ce * s);
        rec.scalar("corpus_rate", (h_bar - ce) * s);
        rec.scalar("corpus_marginal_entropy", h_bar * s);
    }
    rec.params.insert("top_k".into(), json!(k));
    rec.params.insert("position".into(), json!(position));
    rec.params.insert("rows".into(), json!(rows_kind));
    rec.notes.push("value = H of the top-k law (the rate at D = 0); distortion 1 − cos is dimensionless; corpus point: D = cross-entropy, R = H(mean next-token law) − cross-entropy, in the rate unit".into());
    Ok(rec)
}
