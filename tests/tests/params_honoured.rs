//! Every declared parameter of every metric is honoured or refused: changing it from its
//! default changes the result, or the metric refuses the value with an error naming the
//! parameter, or the result's notes say the parameter had no effect (docs/plugins.md,
//! "Metrics: parameters, units and tests"). A metric or parameter missing from the table
//! below fails the test, so a new parameter comes with a case that shows it does something.

use serde_json::{json, Map, Value};
use std::path::{Path, PathBuf};
use tokit_compute::Tensor;
use tokit_engine::{AnalyzeInput, LoadOptions, Model, Report};
use tokit_tests::*;

fn fixture(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures")
        .join(rel)
}

fn load(rel: &str) -> Model {
    engine()
        .load_model(fixture(rel).to_str().unwrap(), &LoadOptions::default())
        .unwrap_or_else(|e| panic!("loading {rel}: {e:#}"))
}

/// The fixture's reference tokens, the first `n`, with a masked-diffusion model's mask
/// token replaced (its likelihood scores fully observed text).
fn tokens(rel: &str, n: usize) -> Vec<u32> {
    let read = |f: &str| -> Value {
        serde_json::from_str(&std::fs::read_to_string(fixture(rel).join(f)).unwrap()).unwrap()
    };
    let mask = read("config.json")["mask_token_id"].as_u64();
    read("reference.json")["tokens"].as_array().unwrap()[..n]
        .iter()
        .map(|x| x.as_u64().unwrap())
        .map(|t| if Some(t) == mask { 5 } else { t as u32 })
        .collect()
}

/// A deterministic pseudo-random symbol stream over `k` symbols (an LCG from `seed`).
fn stream(n: usize, k: u64, seed: u64) -> Vec<u64> {
    let mut x = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    (0..n)
        .map(|_| {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (x >> 33) % k
        })
        .collect()
}

/// `src` one step late with a little of `noise` added: a target the source drives (TE, MI
/// and DI are not zero).
fn lagged(src: &[u64], noise: &[u64], k: u64) -> Vec<u64> {
    (0..src.len())
        .map(|t| {
            if t == 0 {
                0
            } else {
                (src[t - 1] + noise[t] / 3) % k
            }
        })
        .collect()
}

fn reals(n: usize, seed: u64) -> Vec<f64> {
    stream(n, 1000, seed)
        .into_iter()
        .map(|v| v as f64 / 1000.0 - 0.5)
        .collect()
}

/// One metric's baseline input and, per parameter, how to change it.
struct Case {
    metric: &'static str,
    model: Option<&'static str>,
    tokens: usize,
    base: Value,
    tensors: Vec<(&'static str, Tensor)>,
    /// `(param, params set in the changed run, params set in both runs)`; parameters not
    /// listed get an automatic change (integers +1, numbers halved, booleans flipped,
    /// `unit` to bits), and a parameter with neither fails the test.
    changes: Vec<(&'static str, Value, Value)>,
}

fn case(metric: &'static str, model: Option<&'static str>, tokens: usize, base: Value) -> Case {
    Case {
        metric,
        model,
        tokens,
        base,
        tensors: vec![],
        changes: vec![],
    }
}

impl Case {
    fn change(mut self, param: &'static str, alt: Value) -> Case {
        self.changes.push((param, alt, json!({})));
        self
    }

    fn change_with(mut self, param: &'static str, alt: Value, both: Value) -> Case {
        self.changes.push((param, alt, both));
        self
    }

    fn tensor(mut self, name: &'static str, t: Tensor) -> Case {
        self.tensors.push((name, t));
        self
    }
}

const GPT2: &str = "transformer/gpt2";
const LLADA: &str = "llada/llada";
const MAMBA2: &str = "mamba2/g1_chunk7_tied";

fn cases() -> Vec<Case> {
    let x = stream(400, 2, 1);
    let y = lagged(&x, &stream(400, 2, 2), 2);
    let z = stream(400, 2, 3);
    let (xr, er) = (reals(300, 4), reals(300, 5));
    let yr: Vec<f64> = (0..300)
        .map(|t| {
            if t == 0 {
                er[0]
            } else {
                0.8 * xr[t - 1] + er[t]
            }
        })
        .collect();
    let zr = reals(300, 6);
    let cond = json!({ "condition": z });
    let block = json!({ "surrogate": "block" });
    // Surrogates 5..12 of the 20: one shard of a test split over a cluster.
    let range = json!({ "surrogate_range": [5, 12] });
    let vocab = 128;
    let ref_logits: Vec<f32> = (0..12 * vocab)
        .map(|i| ((i * 37 % 101) as f32) / 50.0)
        .collect();
    let mut all = vec![];
    for m in [
        "token_stats",
        "surprisal",
        "entropy",
        "cross_entropy",
        "perplexity",
        "boltzmann",
        "logit_lens",
        "attention_energetics",
    ] {
        all.push(case(m, Some(GPT2), 12, json!({})));
    }
    let replace = json!({ "method": "replace", "replace_with": 0 });
    let head = json!({ "layer": 0, "head": 0 });
    all.push(
        case("granger_map", Some(GPT2), 8, json!({}))
            .change("method", replace.clone())
            .change_with("replace_with", json!({ "replace_with": 5 }), replace)
            .change("max_tokens", json!({ "max_tokens": 4 }))
            .change("layer", json!({ "layer": 1, "head": 0 }))
            .change_with("head", json!({ "head": 1 }), head),
    );
    let alternatives = json!({ "alternatives": [[1, 2, 3, 4]] });
    let sampled = json!({ "samples": 2, "response_tokens": 3 });
    all.push(
        case(
            "information_flow",
            Some(GPT2),
            10,
            json!({ "prompt_tokens": 4 }),
        )
        .change("prompt_tokens", json!({ "prompt_tokens": 3 }))
        .change("alternatives", alternatives.clone())
        .change_with("prior", json!({ "prior": [0.2, 0.8] }), alternatives)
        .change("method", json!({ "method": "replace" }))
        .change("samples", sampled.clone())
        .change_with(
            "response_tokens",
            json!({ "response_tokens": 4 }),
            sampled.clone(),
        )
        .change_with("seed", json!({ "seed": 1 }), sampled),
    );
    let reference_logits = Tensor::new(vec![12, vocab], ref_logits).unwrap();
    all.push(
        case("sequence_kl", Some(GPT2), 12, json!({})).tensor("reference_logits", reference_logits),
    );
    for m in ["stream_entropy", "block_entropy", "entropy_rate"] {
        all.push(
            case(m, None, 0, json!({ "series": x }))
                .change("series", json!({ "series": stream(400, 3, 7) }))
                .change(
                    "bias_correction",
                    json!({ "bias_correction": "miller_madow" }),
                ),
        );
    }
    // The estimators of pairs of streams share the estimation and test parameters.
    let pair = |c: Case| -> Case {
        c.change("source", json!({ "source": z }))
            .change("target", json!({ "target": x }))
            .change(
                "bias_correction",
                json!({ "bias_correction": "miller_madow" }),
            )
            .change("surrogate", json!({ "surrogate": "circular" }))
            .change_with("block_size", json!({ "block_size": 7 }), block.clone())
            .change("surrogate_range", range.clone())
    };
    all.push(
        case(
            "active_info",
            None,
            0,
            json!({ "series": y, "permutations": 20 }),
        )
        .change("series", json!({ "series": x }))
        .change(
            "bias_correction",
            json!({ "bias_correction": "miller_madow" }),
        )
        .change("surrogate", json!({ "surrogate": "circular" }))
        .change_with("block_size", json!({ "block_size": 7 }), block.clone())
        .change("surrogate_range", range.clone()),
    );
    let te = json!({ "source": x, "target": y, "permutations": 20 });
    let cond2 = json!({ "condition": z, "cond_l": 2 });
    all.push(
        pair(case("transfer_entropy", None, 0, te.clone()))
            .change("condition", cond.clone())
            .change_with("k_tau", json!({ "k_tau": 2 }), json!({ "k": 2 }))
            .change_with("l_tau", json!({ "l_tau": 2 }), json!({ "l": 2 }))
            .change_with("cond_l", json!({ "cond_l": 2 }), cond.clone())
            .change_with("cond_tau", json!({ "cond_tau": 2 }), cond2)
            .change_with("cond_delay", json!({ "cond_delay": 2 }), cond.clone()),
    );
    let mi = json!({ "source": x, "target": y, "lag": 1, "permutations": 20 });
    all.push(
        pair(case("mutual_info", None, 0, mi))
            .change("lag", json!({ "lag": 0 }))
            .change("condition", cond.clone())
            .change_with("cond_lag", json!({ "cond_lag": 1 }), cond),
    );
    all.push(pair(case("directed_info", None, 0, te)));
    for m in ["granger", "gaussian_te"] {
        all.push(
            case(m, None, 0, json!({ "source": xr, "target": yr }))
                .change("source", json!({ "source": zr }))
                .change("target", json!({ "target": zr })),
        );
    }
    let joint = |p: [f64; 4]| {
        json!({ "joint": [[[0, 0], [0, 0], p[0]], [[0, 0], [0, 1], p[1]],
                          [[0, 1], [1, 0], p[2]], [[1, 1], [1, 1], p[3]]] })
    };
    all.push(
        case("exact_directed_info", None, 0, joint([0.4, 0.1, 0.2, 0.3]))
            .change("joint", joint([0.25; 4])),
    );
    all.push(
        case("info_flow", None, 0, json!({}))
            .change("prior", json!({ "prior": [0.3, 0.7] }))
            .change("channel", json!({ "channel": [[0.8, 0.2], [0.3, 0.7]] })),
    );
    all.push(case(
        "elbo",
        Some(LLADA),
        12,
        json!({ "draws": 16, "batch": 4 }),
    ));
    all.push(case("ssm_memory", Some(MAMBA2), 12, json!({ "window": 8 })));
    // The Blahut–Arimoto metrics: a point at a slope, or a curve when `beta` is dropped.
    let curve = json!({ "beta": null });
    let solver = |c: Case| -> Case {
        c.change("tol", json!({ "tol": 1e-2 }))
            .change("max_iter", json!({ "max_iter": 2 }))
    };
    let skewed = json!([[0, 2], [1, 0]]);
    all.push(
        solver(case(
            "rate_distortion",
            None,
            0,
            json!({ "source": [0.3, 0.7], "beta": 2.0, "tol": 1e-9 }),
        ))
        .change("source", json!({ "source": [0.6, 0.4] }))
        .change("distortion", json!({ "distortion": skewed }))
        .change("beta", json!({ "beta": 3.0 }))
        .change("acceleration", json!({ "acceleration": "none" }))
        .change("betas", json!({ "beta": null, "betas": [1.0, 2.0] }))
        .change(
            "target_distortion",
            json!({ "beta": null, "target_distortion": 0.1 }),
        )
        .change(
            "distortions",
            json!({ "beta": null, "distortions": [0.1, 0.2] }),
        )
        .change_with("num_points", json!({ "num_points": 5 }), curve.clone()),
    );
    let log_loss = json!({ "family": "log_loss", "source": [0.25, 0.25, 0.25, 0.25] });
    all.push(
        case(
            "rate_distortion_closed_form",
            None,
            0,
            json!({ "target_distortion": 0.1 }),
        )
        .change("target_distortion", json!({ "target_distortion": 0.2 }))
        .change("family", json!({ "family": "gaussian" }))
        .change_with(
            "variance",
            json!({ "variance": 2.0 }),
            json!({ "family": "gaussian" }),
        )
        .change_with(
            "source",
            json!({ "source": [0.5, 0.25, 0.25] }),
            log_loss.clone(),
        )
        .change_with(
            "entropy",
            json!({ "source": null, "entropy": 1.0 }),
            log_loss,
        )
        .change(
            "distortions",
            json!({ "target_distortion": null, "distortions": [0.1, 0.2] }),
        ),
    );
    all.push(
        solver(case(
            "channel_capacity",
            None,
            0,
            json!({ "channel": [[0.9, 0.1], [0.2, 0.8]], "tol": 1e-9 }),
        ))
        .change("channel", json!({ "channel": [[0.8, 0.2], [0.2, 0.8]] })),
    );
    let markov = json!({ "transition": [[0.8, 0.2], [0.3, 0.7]] });
    all.push(
        solver(case(
            "directed_rate_distortion",
            None,
            0,
            json!({ "n": 2, "source": [0.3, 0.7], "beta": 2.0, "tol": 1e-9 }),
        ))
        .change("beta", json!({ "beta": 3.0 }))
        .change("source_kind", json!({ "source_kind": "markov", "q": 0.2 }))
        .change("source", json!({ "source": [0.6, 0.4] }))
        .change("x_alphabet", json!({ "x_alphabet": 3 }))
        .change("q", json!({ "q": 0.2 }))
        .change("transition", markov.clone())
        .change_with("initial", json!({ "initial": [0.2, 0.8] }), markov)
        .change("joint", json!({ "joint": [0.4, 0.1, 0.1, 0.4] }))
        .change("distortion", json!({ "distortion": skewed }))
        .change("betas", json!({ "beta": null, "betas": [1.0, 2.0] }))
        .change_with("num_points", json!({ "num_points": 5 }), curve.clone())
        .change("direction", json!({ "direction": "x_to_y" })),
    );
    let tilt = json!({ "reference": [0.5, 0.25, 0.25], "reward": [1, 0, 2], "lambda": 0.5 });
    let contexts = json!({ "reference": [[0.5, 0.25, 0.25], [0.2, 0.2, 0.6]],
                           "reward": [[1, 0, 2], [0, 1, 0]], "context": [0.3, 0.7] });
    all.push(
        case("rate_reward", None, 0, tilt)
            .change("reference", json!({ "reference": [0.2, 0.4, 0.4] }))
            .change("reward", json!({ "reward": [0, 1, 2] }))
            .change("context", contexts)
            .change("lambda", json!({ "lambda": 1.5 }))
            .change("lambdas", json!({ "lambda": null, "lambdas": [0.5, 1.0] }))
            .change(
                "target_reward",
                json!({ "lambda": null, "target_reward": 1.2 }),
            )
            .change_with(
                "num_points",
                json!({ "num_points": 5 }),
                json!({ "lambda": null }),
            ),
    );
    let channel =
        json!({ "source": [0.3, 0.7], "reward": [[1, 0.2], [0, 1]], "lambda": 2.0, "tol": 1e-9 });
    all.push(
        solver(case("rate_reward_channel", None, 0, channel))
            .change("source", json!({ "source": [0.6, 0.4] }))
            .change("reward", json!({ "reward": [[1, 0], [0.5, 1]] }))
            .change("lambda", json!({ "lambda": 3.0 }))
            .change("lambdas", json!({ "lambda": null, "lambdas": [1.0, 2.0] }))
            .change(
                "target_reward",
                json!({ "lambda": null, "target_reward": 0.9 }),
            )
            .change_with(
                "num_points",
                json!({ "num_points": 5 }),
                json!({ "lambda": null }),
            ),
    );
    let outcomes = json!({ "reference": [0.6, 0.4], "reward": [0, 1] });
    all.push(
        case("best_of_n_kl", None, 0, json!({}))
            .change("ns", json!({ "ns": [2, 8] }))
            .change(
                "reference",
                json!({ "reference": [0.5, 0.5], "reward": [0, 1] }),
            )
            .change_with("reward", json!({ "reward": [1, 0] }), outcomes),
    );
    all.push(
        case(
            "rate_reward_is",
            None,
            0,
            json!({ "rewards": [0, 1, 2, 1, 0, 2, 1, 1] }),
        )
        .change("rewards", json!({ "rewards": [0, 1, 3, 1, 0, 2, 1, 1] }))
        .change("lambdas", json!({ "lambdas": [0.5, 1.0] }))
        .change("bootstrap", json!({ "bootstrap": 20 }))
        .change_with("seed", json!({ "seed": 1 }), json!({ "bootstrap": 20 })),
    );
    all.push(
        solver(case(
            "token_semantic_rd",
            Some(GPT2),
            12,
            json!({ "top_k": 8, "num_points": 5 }),
        ))
        .change("position", json!({ "position": 3 }))
        .change("rows", json!({ "rows": "unembedding" })),
    );
    all.push(case("memory_capacity", None, 0, json!({})));
    all.push(
        case(
            "capacity_probe",
            Some(GPT2),
            0,
            json!({ "counts": [1, 2, 4], "trials": 4 }),
        )
        .change("counts", json!({ "counts": [1, 2] }))
        .change("token_max", json!({ "token_max": 50 }))
        .change("kv_separator", json!({ "kv_separator": 3 }))
        .change("pair_separator", json!({ "pair_separator": 4 })),
    );
    all.push(
        case("generalization_bound", Some(GPT2), 12, json!({})).change("n", json!({ "n": 1000 })),
    );
    all.push(
        case("embedding_geometry", Some(GPT2), 12, json!({})).change_with(
            "seed",
            json!({ "seed": 1 }),
            json!({ "max_rows": 50 }),
        ),
    );
    let cloud: Vec<f32> = (0..64 * 16)
        .map(|i| ((i * 29 % 97) as f32) / 40.0 - 1.2)
        .collect();
    all.push(
        case("gromov_wasserstein", Some(GPT2), 0, json!({ "m": 30 }))
            .tensor("other", Tensor::new(vec![64, 16], cloud).unwrap())
            .change("m", json!({ "m": 20 }))
            .change("max_iter", json!({ "max_iter": 1 })),
    );
    all.push(
        case("mdm_likelihood", Some(LLADA), 12, json!({}))
            .change("policy", json!({ "policy": "random" }))
            .change("steps", json!({ "steps": 4 }))
            .change_with(
                "block_length",
                json!({ "block_length": 4 }),
                json!({ "steps": 4 }),
            ),
    );
    all
}

enum Outcome {
    Changed,
    Refused(String),
    NoteSaysNoEffect,
    Unchanged,
}

fn run(c: &Case, model: &Option<Model>, params: &Map<String, Value>) -> anyhow::Result<Report> {
    let n = c.tokens;
    engine().analyze(
        c.metric,
        &AnalyzeInput {
            model: model.clone(),
            tokens: c.model.filter(|_| n > 0).map(|m| tokens(m, n)),
            params: params.clone(),
            tensors: c
                .tensors
                .iter()
                .map(|(n, t)| (n.to_string(), t.clone()))
                .collect(),
            ..Default::default()
        },
    )
}

/// Bitwise equality of everything a result says (its echo of the parameters aside).
fn same(a: &Report, b: &Report) -> bool {
    let bits = |v: Option<f64>| v.map(f64::to_bits);
    let scal = |r: &Report| -> Vec<(String, u64)> {
        r.scalars
            .iter()
            .map(|(k, v)| (k.clone(), v.to_bits()))
            .collect()
    };
    let tens = |r: &Report| -> Vec<(String, Vec<usize>, Vec<u32>)> {
        r.tensors
            .iter()
            .map(|(k, t)| {
                (
                    k.clone(),
                    t.shape().to_vec(),
                    t.data().iter().map(|x| x.to_bits()).collect(),
                )
            })
            .collect()
    };
    bits(a.value) == bits(b.value) && scal(a) == scal(b) && tens(a) == tens(b) && a.unit == b.unit
}

fn merged(base: &Value, extra: &Value) -> Map<String, Value> {
    let mut m = base.as_object().cloned().unwrap_or_default();
    for (k, v) in extra.as_object().into_iter().flatten() {
        if v.is_null() {
            m.remove(k);
        } else {
            m.insert(k.clone(), v.clone());
        }
    }
    m
}

/// A parameter map for a message, long arrays cut.
fn short(v: &Map<String, Value>) -> String {
    let s = serde_json::to_string(v).unwrap_or_default();
    if s.chars().count() > 160 {
        s.chars().take(157).collect::<String>() + "..."
    } else {
        s
    }
}

/// The automatic change of a parameter from its declared default, if there is one.
fn automatic(name: &str, kind: &str, default: &Value) -> Option<Value> {
    Some(match (kind, default) {
        (_, _) if name == "unit" => json!("bits"),
        ("integer", Value::Number(n)) => json!(n.as_u64()? + 1),
        ("number", Value::Number(n)) if n.as_f64()? != 0.0 => json!(n.as_f64()? * 0.5),
        ("number", Value::Number(_)) => json!(0.5),
        ("bool", Value::Bool(b)) => json!(!b),
        _ => return None,
    })
}

#[test]
fn every_declared_parameter_changes_the_result_or_is_refused() {
    let specs = engine().metrics();
    let cases = cases();
    let mut failures = vec![];
    for (plugin, spec) in &specs {
        if plugin == "toylm" {
            continue;
        }
        let Some(c) = cases.iter().find(|c| c.metric == spec.name) else {
            failures.push(format!("{}: no case in the table", spec.name));
            continue;
        };
        let model = c.model.map(load);
        for p in &spec.params {
            let (alt, both) = match c.changes.iter().find(|(n, _, _)| *n == p.name) {
                Some((_, alt, both)) => (alt.clone(), both.clone()),
                None => match automatic(&p.name, &p.kind, &p.default) {
                    Some(v) => (json!({ p.name.clone(): v }), json!({})),
                    None => {
                        failures.push(format!("{}.{}: no change in the table", spec.name, p.name));
                        continue;
                    }
                },
            };
            let base = merged(&c.base, &both);
            let changed = merged(&Value::Object(base.clone()), &alt);
            let before = match run(c, &model, &base) {
                Ok(r) => r,
                Err(e) => {
                    failures.push(format!(
                        "{}.{}: the baseline {} fails: {e:#}",
                        spec.name,
                        p.name,
                        short(&base)
                    ));
                    continue;
                }
            };
            let outcome = match run(c, &model, &changed) {
                Err(e) => Outcome::Refused(format!("{e:#}")),
                Ok(after) if !same(&before, &after) => Outcome::Changed,
                Ok(after)
                    if after.notes.iter().any(|n| {
                        n.contains(&format!("`{}`", p.name)) && n.contains("no effect")
                    }) =>
                {
                    Outcome::NoteSaysNoEffect
                }
                Ok(_) => Outcome::Unchanged,
            };
            match outcome {
                Outcome::Changed | Outcome::NoteSaysNoEffect => {}
                Outcome::Refused(msg) if msg.contains(&p.name) => {}
                Outcome::Refused(msg) => failures.push(format!(
                    "{}.{}: {} is refused without naming the parameter: {msg}",
                    spec.name,
                    p.name,
                    short(alt.as_object().unwrap())
                )),
                Outcome::Unchanged => failures.push(format!(
                    "{}.{}: {} gives the same result as without it, and no note says it has no effect",
                    spec.name,
                    p.name,
                    short(alt.as_object().unwrap())
                )),
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} parameter(s) neither honoured nor refused:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
