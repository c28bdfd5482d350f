//! tokit's functions and types in Rhai (README.md, "Rhai"): `load_model`, the `Model`
//! methods, `analyze` and its `Result`, `metrics()`, `plugins()`, `call_plugin`, `Tensor`,
//! and HTML reports (`html_report`, `Quantity`, `derived`, `na`).
//!
//! Every function is registered with its documentation (`def!`), which Rhai keeps as
//! metadata: `:help name` in the REPL prints it.

use super::convert::*;
use super::options::{forward_spec, options};
use crate::engine::{AnalyzeInput, Engine};
use crate::model::{ForwardSpec, LoadOptions, Model};
use crate::report::html::{Cell, HtmlReport, Line, Quantity};
use crate::report::Report;
use rhai::{Array, Dynamic, FuncRegistration, Map};
use serde_json::Value;
use std::sync::Arc;
use tokit_compute::Tensor;

/// A result as scripts see it.
#[derive(Clone)]
pub struct ScriptReport(pub Arc<Report>);

/// `doc` as Rhai doc-comment lines (`/// ...`).
fn comments(doc: &str) -> String {
    doc.trim()
        .lines()
        .map(|l| format!("/// {}", l.trim_end()).trim_end().to_string())
        .collect::<Vec<_>>()
        .join("\n")
}

/// Register `$f` as the function `$name` with its documentation (a macro because rhai's
/// bound on return types is not nameable outside it).
macro_rules! def {
    ($rhai:expr, $name:expr, $doc:expr, $f:expr $(,)?) => {
        FuncRegistration::new($name)
            .with_comments([comments($doc)])
            .register_into_engine($rhai, $f)
    };
}

/// Register `$f` as the property getter `$name` with its documentation.
macro_rules! get {
    ($rhai:expr, $name:expr, $doc:expr, $f:expr $(,)?) => {
        FuncRegistration::new_getter($name)
            .with_comments([comments($doc)])
            .register_into_engine($rhai, $f)
    };
}

pub fn register(rhai: &mut rhai::Engine, tokit: Arc<Engine>) {
    register_model(rhai, tokit.clone());
    register_tensor(rhai);
    register_report(rhai);
    register_html(rhai);

    let t = tokit.clone();
    def!(
        rhai,
        "analyze",
        "Compute a metric and return its Result.
`args` holds the inputs: `model` (a Model), `text` or `tokens` (token ids), `inputs`
(a map of Tensors or arrays); every other key is a parameter of the metric (`:help METRIC`
lists them; an unknown one is an error).
Bulk data goes to the metric as a tensor, without JSON: an array parameter (streams,
series, matrices, laws) given as a Tensor, or as an array of at least 1024 numbers that
f32 holds exactly (integers up to 2^24: symbol streams); other arrays go as JSON. Wrap an
array in `tensor(..)` to send floats rounded to f32.
Example: let r = analyze(\"surprisal\", #{ model: m, text: \"Let there be light\", unit: \"bits\" });
         print(r.value);
         let te = analyze(\"transfer_entropy\", #{ source: load_tensor(\"x.npy\"), target: ys });",
        move |metric: &str, args: Map| -> RhaiResult<ScriptReport> {
            // The metric's array parameters (None when it is unknown: analyze says so).
            let arrays: Option<Vec<String>> = t.plugins.find_metric(metric).ok().map(|(_, spec)| {
                spec.params
                    .iter()
                    .filter(|p| p.kind == "array")
                    .map(|p| p.name.clone())
                    .collect()
            });
            let input = analyze_input(metric, &args, arrays.as_deref())?;
            Ok(ScriptReport(Arc::new(anyhow_rt(
                t.analyze(metric, &input),
            )?)))
        },
    );
    let t = tokit.clone();
    def!(
        rhai,
        "analyze_corpus",
        "Run a metric over every document of a corpus (docs/corpus.md); returns a map with
`output`, `summary`, `complete`, `documents`, `tokens`, `computed`, `tokens_per_s`.
`args`: `model`, `corpus` (.txt, .jsonl, .parquet or a directory of .txt), `output`
(.parquet, .csv or .jsonl), optional `text_field`, `max_docs`, `window`, `overlap`;
every other key is a parameter of the metric.
Example: analyze_corpus(\"token_stats\", #{ model: m, corpus: \"kjv.txt\", output: \"out/kjv.parquet\" });",
        move |metric: &str, mut args: Map| -> RhaiResult<Dynamic> {
            let model = match args.remove("model").map(|m| m.try_cast::<Model>()) {
                Some(Some(m)) => m,
                _ => return err("analyze_corpus: `model` must be a Model (from load_model)"),
            };
            let opts = anyhow_rt(crate::corpus::CorpusOptions::from_json(
                match to_json(&Dynamic::from_map(args))? {
                    Value::Object(m) => m,
                    _ => serde_json::Map::new(),
                },
            ))?;
            let run = anyhow_rt(crate::corpus::analyze_corpus(&t, metric, &model, &opts))?;
            from_json(&serde_json::to_value(&run).unwrap_or(Value::Null))
        },
    );
    let t = tokit.clone();
    def!(
        rhai,
        "metrics",
        "Every metric of the loaded plugins: an array of maps with `name`, `plugin`,
`description`, `unit`, `needs_model`, `reconstruction` and `params`.
Example: for m in metrics() { print(m.name); }",
        move || -> RhaiResult<Array> {
            t.metrics()
                .into_iter()
                .map(|(plugin, spec)| {
                    let mut v = serde_json::to_value(&spec).unwrap_or(Value::Null);
                    if let Value::Object(m) = &mut v {
                        m.insert("plugin".into(), Value::String(plugin));
                    }
                    from_json(&v)
                })
                .collect()
        },
    );
    let t = tokit.clone();
    def!(
        rhai,
        "plugins",
        "The loaded plugins: an array of maps with `name`, `version`, `kind`, `abi`, `file`,
`architectures` and `metrics`.
Example: print(plugins().map(|p| p.name));",
        move || -> RhaiResult<Array> {
            t.plugins
                .plugins
                .iter()
                .map(|p| {
                    from_json(&serde_json::json!({
                        "name": p.desc.name, "version": p.desc.version, "kind": p.desc.kind,
                        "abi": format!("{}.{}", p.abi.0, p.abi.1), "file": p.path.display().to_string(),
                        "architectures": p.desc.architectures.iter().map(|a| a.name.clone()).collect::<Vec<_>>(),
                        "metrics": p.desc.metrics.iter().map(|m| m.name.clone()).collect::<Vec<_>>(),
                    }))
                })
                .collect()
        },
    );
    let t = tokit.clone();
    def!(
        rhai,
        "call_plugin",
        "Run a plugin's own action with a map of arguments; returns what it returns.
Example: call_plugin(\"arllm\", \"fit\", #{ text_file: \"corpus.txt\", order: 3, out: \"out/my-model\" });",
        move |plugin: &str, action: &str, args: Map| -> RhaiResult<Dynamic> {
            let v = to_json(&Dynamic::from_map(args))?;
            from_json(&anyhow_rt(t.action(plugin, action, &v))?)
        },
    );
    def!(
        rhai,
        "read_file",
        "The text of a file.
Example: let text = read_file(\"scripts/data/genesis-1-11.txt\");",
        |path: &str| -> RhaiResult<String> {
            rt(std::fs::read_to_string(path).map_err(|e| format!("read_file {path}: {e}")))
        },
    );
    let t = tokit;
    def!(
        rhai,
        "out_dir",
        "The output directory (`output_dir` in tokit.ron, else `out`).
Example: r.save(out_dir() + \"/r.json\");",
        move || -> String {
            t.config
                .output_dir
                .clone()
                .unwrap_or_else(|| "out".into())
                .display()
                .to_string()
        },
    );
    def!(
        rhai,
        "tensor",
        "A Tensor from a (nested) array of numbers; the nesting gives the shape. Tensors
are f32: floats are rounded, integers beyond ±2^24 lose digits.
Example: let t = tensor([[1.0, 2.0], [3.0, 4.0]]);   // shape [2, 2]",
        |a: Array| tensor_from_array(&a),
    );
    def!(
        rhai,
        "load_tensor",
        "A Tensor from a `.npy` file (bool, int8–64, uint8–64, float16/32/64; C order), the
only tensor of a `.safetensors` file, or a `.csv` file (numbers, optional header row) as
[rows, cols]. Values are f32: integers must be exact in f32 (|v| ≤ 2^24, else an error
naming the element), float64 is rounded.
Example: let x = load_tensor(\"data/x.npy\"); print(x.shape());",
        |path: &str| -> RhaiResult<Tensor> {
            anyhow_rt(tokit_model::tensor_io::load(
                std::path::Path::new(path),
                None,
            ))
        },
    );
    def!(
        rhai,
        "load_tensor",
        "The tensor `name` of a `.safetensors` file, or the column `name` (header name or
0-based index) of a `.csv` file as [rows].
Example: let w = load_tensor(\"out/forward.safetensors\", \"logits\");
         let src = load_tensor(\"data/streams.csv\", \"source\");",
        |path: &str, name: &str| -> RhaiResult<Tensor> {
            anyhow_rt(tokit_model::tensor_io::load(
                std::path::Path::new(path),
                Some(name),
            ))
        },
    );
    def!(
        rhai,
        "save_tensor",
        "Write a Tensor (or an array of numbers) as f32 to `.npy` or `.safetensors` (under the
name `tensor`), atomically: a temporary file, then a rename.
Example: save_tensor(out.logits, \"out/logits.npy\");",
        |t: Dynamic, path: &str| -> RhaiResult<()> {
            let t = tensor_arg(&t, "save_tensor")?;
            anyhow_rt(tokit_model::tensor_io::save(
                std::path::Path::new(path),
                &[("tensor", &t)],
            ))
        },
    );
    def!(
        rhai,
        "save_tensor",
        "Write a map of Tensors (or arrays) to one `.safetensors` file, each under its key.
Example: save_tensor(#{ source: xs, target: ys }, \"out/streams.safetensors\");",
        |tensors: Map, path: &str| -> RhaiResult<()> {
            let owned = tensors
                .iter()
                .map(|(k, v)| {
                    Ok((
                        k.to_string(),
                        tensor_arg(v, &format!("save_tensor: `{k}`"))?,
                    ))
                })
                .collect::<RhaiResult<Vec<_>>>()?;
            let named: Vec<(&str, &Tensor)> = owned.iter().map(|(k, t)| (k.as_str(), t)).collect();
            anyhow_rt(tokit_model::tensor_io::save(
                std::path::Path::new(path),
                &named,
            ))
        },
    );
}

/// A Tensor, or an array of numbers made one.
fn tensor_arg(d: &Dynamic, what: &str) -> RhaiResult<Tensor> {
    if let Some(t) = d.read_lock::<Tensor>() {
        return Ok(t.clone());
    }
    match d.as_array_ref() {
        Ok(a) => tensor_from_array(&a),
        Err(_) => err(format!(
            "{what}: expected a Tensor or an array of numbers, found {}",
            d.type_name()
        )),
    }
}

/// The inputs of `analyze(metric, args)`: model, text, tokens, tensors and the metric's
/// parameters; `arrays` are the metric's array parameters when it declares them.
pub fn analyze_input(
    metric: &str,
    args: &Map,
    arrays: Option<&[String]>,
) -> RhaiResult<AnalyzeInput> {
    let is_array_param = |k: &str| arrays.is_some_and(|a| a.iter().any(|n| n == k));
    let mut input = AnalyzeInput::default();
    for (k, v) in args {
        match k.as_str() {
            "model" => match v.clone().try_cast::<Model>() {
                Some(m) => input.model = Some(m),
                None => {
                    return err(format!(
                        "analyze: `model` must be a Model (from load_model), found {}",
                        v.type_name()
                    ))
                }
            },
            "text" => {
                input.text = Some(
                    v.clone()
                        .into_string()
                        .or_else(|t| err(format!("analyze: `text` must be a string, found {t}")))?,
                )
            }
            "tokens" => match v.clone().try_cast::<Array>() {
                Some(a) => input.tokens = Some(token_ids(&a, "analyze: tokens")?),
                None => return err("analyze: `tokens` must be an array of token ids"),
            },
            "inputs" => match v.read_lock::<Map>() {
                Some(m) => {
                    for (name, t) in m.iter() {
                        let t = if let Some(t) = t.read_lock::<Tensor>() {
                            t.clone()
                        } else if let Ok(a) = t.as_array_ref() {
                            tensor_from_array(&a)
                                .map_err(|e| format!("analyze: inputs.{name}: {e}"))?
                        } else {
                            return err(format!(
                                "analyze: inputs.{name} must be a Tensor or an array of numbers, found {}",
                                t.type_name()
                            ));
                        };
                        input.tensors.push((name.to_string(), t));
                    }
                }
                None => return err("analyze: `inputs` must be a map of tensors"),
            },
            // A metric's parameters: checked against its declaration by the engine. Tensors
            // and bulk arrays of array parameters go as input tensors of that name.
            _ => {
                if let Some(t) = v.read_lock::<Tensor>() {
                    if arrays.is_some() && !is_array_param(k) {
                        return err(format!(
                            "analyze: `{k}` is a Tensor, but `{metric}` has no array parameter `{k}` \
                             (its array parameters: {})",
                            arrays.unwrap_or_default().join(", ")
                        ));
                    }
                    input.tensors.push((k.to_string(), t.clone()));
                    continue;
                }
                if is_array_param(k) {
                    if let Some(t) = v.as_array_ref().ok().and_then(|a| bulk_tensor(&a)) {
                        input.tensors.push((k.to_string(), t));
                        continue;
                    }
                }
                input.params.insert(k.to_string(), to_json(v)?);
            }
        }
    }
    Ok(input)
}

fn model_info_map(m: &Model) -> RhaiResult<Dynamic> {
    let mut v = rt(serde_json::to_value(m.info()))?;
    if let Value::Object(o) = &mut v {
        o.insert("path".into(), Value::String(m.path.display().to_string()));
        o.insert("plugin".into(), Value::String(m.plugin.name().to_string()));
        o.insert("fingerprint".into(), Value::String(m.fingerprint.clone()));
        o.insert(
            "tokenizer_vocab".into(),
            m.tokenizer
                .as_ref()
                .map_or(Value::Null, |t| Value::from(t.vocab_size())),
        );
    }
    from_json(&v)
}

fn outputs_map(o: std::collections::BTreeMap<String, Tensor>) -> Map {
    o.into_iter()
        .map(|(k, t)| (k.into(), Dynamic::from(t)))
        .collect()
}

/// Generation options from a map (unknown keys are errors).
fn generate_options(opts: Map, what: &str) -> RhaiResult<crate::GenerateOptions> {
    options(opts, &format!("{what}: options"))
}

fn register_model(rhai: &mut rhai::Engine, tokit: Arc<Engine>) {
    rhai.register_type_with_name::<Model>("Model");
    let t = tokit.clone();
    def!(
        rhai,
        "load_model",
        "Load a model: a directory in Hugging Face layout (config.json, *.safetensors,
tokenizer.json), a .gguf file, or a name from `models` in tokit.ron. The plugin is chosen
by the config's `model_type`.
Example: let m = load_model(\"out/quickstart/arllm-genesis-o2\");",
        move |path: &str| -> RhaiResult<Model> {
            anyhow_rt(t.load_model(path, &LoadOptions::default()))
        },
    );
    let t = tokit;
    def!(
        rhai,
        "load_model",
        "Load a model with options: `arch` names the architecture to use instead of the
config's; `allow_nonfinite: true` loads weights holding NaN or infinities (refused
otherwise); every other key goes to the plugin as a load option.
Example: let m = load_model(\"models/llada\", #{ arch: \"llada\", mask_token_id: 118 });",
        move |path: &str, opts: Map| -> RhaiResult<Model> {
            let mut lo = LoadOptions::default();
            for (k, v) in opts {
                if k == "arch" {
                    lo.arch = Some(
                        v.into_string()
                            .map_err(|_| "load_model: `arch` must be a string")?,
                    );
                } else if k == "allow_nonfinite" {
                    lo.allow_nonfinite = v
                        .as_bool()
                        .map_err(|_| "load_model: `allow_nonfinite` must be true or false")?;
                } else {
                    lo.options.insert(k.to_string(), to_json(&v)?);
                }
            }
            anyhow_rt(t.load_model(path, &lo))
        },
    );
    def!(
        rhai,
        "info",
        "The model's description: architecture, vocabulary size, context length, hook
points, ablation methods, path, plugin, fingerprint.
Example: print(m.info().vocab_size);",
        |m: &mut Model| model_info_map(m),
    );
    def!(
        rhai,
        "hooks",
        "The model's hook point names (patterns in `capture` and interventions match them).
Example: print(m.hooks());",
        |m: &mut Model| -> Array {
            m.info()
                .hooks
                .iter()
                .map(|h| Dynamic::from(h.clone()))
                .collect()
        },
    );
    def!(
        rhai,
        "encode",
        "Token ids of a text, with the model's tokenizer.
Example: let ids = m.encode(\"In the beginning\");",
        |m: &mut Model, text: &str| -> RhaiResult<Array> {
            Ok(ids_to_array(&anyhow_rt(m.encode(text))?))
        },
    );
    def!(
        rhai,
        "decode",
        "The text of token ids, with the model's tokenizer.
Example: print(m.decode(ids));",
        |m: &mut Model, ids: Array| -> RhaiResult<String> {
            anyhow_rt(m.decode(&token_ids(&ids, "decode")?))
        },
    );
    def!(
        rhai,
        "token_str",
        "The readable text of one token id (the id itself without a tokenizer).
Example: print(m.token_str(42));",
        |m: &mut Model, id: i64| -> String {
            u32::try_from(id)
                .map(|i| m.token_str(i))
                .unwrap_or_default()
        },
    );
    def!(
        rhai,
        "forward",
        "Run the model on token ids: a map with `logits` (a Tensor [T, V]).
Example: let out = m.forward(ids); print(out.logits.shape());",
        |m: &mut Model, ids: Array| -> RhaiResult<Map> {
            let out = anyhow_rt(m.forward(&token_ids(&ids, "forward")?, &ForwardSpec::default()))?;
            Ok(outputs_map(out.into_iter().next().unwrap_or_default()))
        },
    );
    def!(
        rhai,
        "forward",
        "Run the model with options (an unknown key is an error):
`capture`: hook patterns to return (`*` matches any run of characters);
`ablate`: positions to remove from what later positions condition on, with `method`
(the model's default when absent) and `replace_with` (the token of method `replace`);
`variants`: an array of `#{ ablate, method, replace_with }`, computed in one call (the
result is then an array of maps, one per variant);
`interventions`: an array of `#{ hook, op, value }` with op `zero`, `scale` (value a
number), `add` or `replace` (value a Tensor or an array of numbers), or `#{ hook, op: \"knockout\", keys, heads }`
at pre-softmax attention scores; `variants: [..]` limits one to those variants.
Example: let out = m.forward(ids, #{ capture: [\"blocks.*.hook_resid_post\"] });
         let v = m.forward(ids, #{ variants: [#{}, #{ ablate: [3] }] });",
        |m: &mut Model, ids: Array, opts: Map| -> RhaiResult<Dynamic> {
            let (spec, many) = forward_spec(opts)?;
            let out = anyhow_rt(m.forward(&token_ids(&ids, "forward")?, &spec))?;
            if many {
                Ok(Dynamic::from_array(
                    out.into_iter()
                        .map(|o| Dynamic::from_map(outputs_map(o)))
                        .collect(),
                ))
            } else {
                Ok(Dynamic::from_map(outputs_map(
                    out.into_iter().next().unwrap_or_default(),
                )))
            }
        },
    );
    def!(
        rhai,
        "generate",
        "Generate new token ids after `ids` (an unknown option is an error): `max_tokens`
(alias `gen_length`), `temperature` (0 = greedy), `top_k`, `top_p`, `seed`, `stop` (token
ids); masked-diffusion models also `steps`, `block_length`, `cfg_scale`, `remasking`
(`low_confidence` or `random`).
Example: print(m.decode(m.generate(ids, #{ max_tokens: 20, temperature: 0.8, top_k: 40, seed: 1 })));",
        |m: &mut Model, ids: Array, opts: Map| -> RhaiResult<Array> {
            let opts = generate_options(opts, "generate")?;
            Ok(ids_to_array(&anyhow_rt(crate::generate::generate(
                m,
                &token_ids(&ids, "generate")?,
                &opts,
            ))?))
        },
    );
    def!(
        rhai,
        "generate_trace",
        "Like `generate`, and also when each token was chosen: a map with `tokens`, `order`
(indices into `tokens` in the order they were fixed: the unmasking order of a
masked-diffusion model) and `step` (the sampling step that fixed each token).
Example: let g = llada.generate_trace(ids, #{ gen_length: 32, steps: 16, block_length: 8 });
         print(g.order);",
        |m: &mut Model, ids: Array, opts: Map| -> RhaiResult<Map> {
            let opts = generate_options(opts, "generate_trace")?;
            let g = anyhow_rt(crate::generate::generate_traced(
                m,
                &token_ids(&ids, "generate_trace")?,
                &opts,
            ))?;
            let ints =
                |v: &[usize]| -> Array { v.iter().map(|&i| Dynamic::from_int(i as i64)).collect() };
            let mut out = Map::new();
            out.insert("tokens".into(), ids_to_array(&g.tokens).into());
            out.insert("order".into(), ints(&g.order).into());
            out.insert("step".into(), ints(&g.step).into());
            Ok(out)
        },
    );
    def!(
        rhai,
        "to_string",
        "`Model(arch, path)`.",
        |m: &mut Model| format!("Model({}, {})", m.arch, m.path.display()),
    );
}

fn register_tensor(rhai: &mut rhai::Engine) {
    use tokit_compute::ReduceOp;
    rhai.register_type_with_name::<Tensor>("Tensor");
    def!(
        rhai,
        "shape",
        "The tensor's shape, an array of integers.
Example: print(out.logits.shape());   // [T, V]",
        |t: &mut Tensor| -> Array {
            t.shape()
                .iter()
                .map(|&d| Dynamic::from_int(d as i64))
                .collect()
        },
    );
    def!(
        rhai,
        "len",
        "The length of the first dimension (1 for a scalar).
Example: for i in 0..t.len() { print(t[i]); }",
        |t: &mut Tensor| t.shape().first().copied().unwrap_or(1) as i64,
    );
    def!(
        rhai,
        "numel",
        "The number of elements.
Example: print(t.numel());",
        |t: &mut Tensor| t.numel() as i64,
    );
    def!(
        rhai,
        "to_array",
        "The tensor as nested arrays of floats.
Example: print(r.tensors.surprisal.to_array());",
        |t: &mut Tensor| tensor_to_array(t),
    );
    rhai.register_indexer_get(|t: &mut Tensor, i: i64| -> RhaiResult<Dynamic> {
        let n = t.shape().first().copied().unwrap_or(0);
        let idx = if i < 0 { i + n as i64 } else { i };
        if idx < 0 || idx as usize >= n {
            return err(format!(
                "tensor index {i} out of range for shape {:?}",
                t.shape()
            ));
        }
        let idx = idx as usize;
        if t.ndim() == 1 {
            return Ok(Dynamic::from_float(t.data()[idx] as f64));
        }
        let rest: Vec<usize> = t.shape()[1..].to_vec();
        let step: usize = rest.iter().product();
        Ok(Dynamic::from(rt(Tensor::new(
            rest,
            t.data()[idx * step..(idx + 1) * step].to_vec(),
        ))?))
    });
    let all = |op: ReduceOp| {
        move |t: &mut Tensor| -> RhaiResult<f64> {
            if t.numel() == 0 {
                return err("reduction of an empty tensor");
            }
            let flat = rt(t.with_shape(vec![t.numel()]))?; // a view, no copy
            Ok(anyhow_rt(
                crate::plugin::host::host()
                    .backend()
                    .reduce(op, &flat, 0, false),
            )?
            .data()[0] as f64)
        }
    };
    def!(
        rhai,
        "sum",
        "The sum of all elements.
Example: print(t.sum());",
        all(ReduceOp::Sum),
    );
    def!(
        rhai,
        "mean",
        "The mean of all elements.
Example: print(t.mean());",
        all(ReduceOp::Mean),
    );
    def!(
        rhai,
        "max",
        "The largest element.
Example: print(t.max());",
        all(ReduceOp::Max),
    );
    def!(
        rhai,
        "min",
        "The smallest element.
Example: print(t.min());",
        all(ReduceOp::Min),
    );
    def!(
        rhai,
        "argmax",
        "The flat index of the largest element (the first one on ties).
Example: let next = out.logits[-1].argmax();",
        |t: &mut Tensor| -> i64 {
            t.data()
                .iter()
                .enumerate()
                .fold((0usize, f32::NEG_INFINITY), |b, (i, &x)| {
                    if x > b.1 {
                        (i, x)
                    } else {
                        b
                    }
                })
                .0 as i64
        },
    );
    def!(rhai, "to_string", "`Tensor[shape]`.", |t: &mut Tensor| {
        format!("Tensor{:?}", t.shape())
    });
}

fn register_report(rhai: &mut rhai::Engine) {
    rhai.register_type_with_name::<ScriptReport>("Result");
    get!(
        rhai,
        "value",
        "The result's value, when the measure is one number (else `()`).",
        |r: &mut ScriptReport| r.0.value.map_or(Dynamic::UNIT, Dynamic::from_float),
    );
    get!(
        rhai,
        "unit",
        "The unit of the value and the local values.",
        |r: &mut ScriptReport| r.0.unit.clone(),
    );
    get!(
        rhai,
        "metric",
        "The metric's name.",
        |r: &mut ScriptReport| r.0.metric.clone(),
    );
    get!(
        rhai,
        "estimator",
        "How the value was obtained (`exact`, `plug-in`, `monte-carlo`, ...).",
        |r: &mut ScriptReport| r.0.estimator.clone(),
    );
    get!(
        rhai,
        "scalars",
        "Named scalars: standard error (`se`), p-value, ...",
        |r: &mut ScriptReport| -> Map {
            r.0.scalars
                .iter()
                .map(|(k, &v)| (k.into(), Dynamic::from_float(v)))
                .collect()
        },
    );
    get!(
        rhai,
        "tensors",
        "Named tensors: per-token values (entry 0 empty, NaN), matrices.",
        |r: &mut ScriptReport| -> Map {
            r.0.tensors
                .iter()
                .map(|(k, t)| (k.into(), Dynamic::from(t.clone())))
                .collect()
        },
    );
    get!(
        rhai,
        "params",
        "The parameters the metric used (defaults filled in).",
        |r: &mut ScriptReport| -> RhaiResult<Dynamic> {
            from_json(&Value::Object(r.0.params.clone()))
        },
    );
    get!(
        rhai,
        "tokens",
        "The text of each token, when the input was text.",
        |r: &mut ScriptReport| -> Array {
            r.0.tokens
                .iter()
                .map(|s| Dynamic::from(s.clone()))
                .collect()
        },
    );
    def!(
        rhai,
        "table",
        "The per-token tensors as a text table.
Example: print(r.table());",
        |r: &mut ScriptReport| r.0.table_text(&[], usize::MAX),
    );
    def!(
        rhai,
        "table",
        "The per-token tensors as a text table of at most `max_rows` rows.
Example: print(r.table(20));",
        |r: &mut ScriptReport, max_rows: i64| r.0.table_text(&[], max_rows.max(0) as usize),
    );
    def!(
        rhai,
        "table",
        "The named per-token tensors as a text table of at most `max_rows` rows.
Example: print(r.table([\"surprisal\", \"entropy\"], 20));",
        |r: &mut ScriptReport, columns: Array, max_rows: i64| -> RhaiResult<String> {
            let cols = strings(&Dynamic::from_array(columns), "table: columns")?;
            Ok(r.0.table_text(&cols, max_rows.max(0) as usize))
        },
    );
    def!(
        rhai,
        "to_json",
        "The result's canonical JSON (value, unit, scalars, tensors, provenance, ...).
Example: print(r.to_json());",
        |r: &mut ScriptReport| -> RhaiResult<String> {
            rt(serde_json::to_string_pretty(&r.0.to_json()))
        },
    );
    def!(
        rhai,
        "save",
        "Write the result to `.json` or `.csv` (atomically: a temporary file, then a rename).
Example: r.save(\"out/r.json\"); r.save(\"out/r.csv\");",
        |r: &mut ScriptReport, path: &str| -> RhaiResult<()> {
            anyhow_rt(r.0.save(std::path::Path::new(path)))
        },
    );
    def!(
        rhai,
        "plot",
        "Draw the result to `.svg` or `.png` with the metric's plot spec (or one chosen by
the tensors' shapes).
Example: r.plot(\"out/r.svg\");",
        |r: &mut ScriptReport, path: &str| -> RhaiResult<()> {
            anyhow_rt(crate::report::plot::plot(
                &r.0,
                std::path::Path::new(path),
                &Default::default(),
            ))
        },
    );
    def!(
        rhai,
        "plot",
        "Draw the result with a plot spec that overrides the metric's key by key: `kind`
(`heatmap` or `lines`), `z` / `x` / `y` (tensor names), `index`, `log_y`, `x_label`,
`y_label`, `z_label`, `title`, `point: #{ x, y, label }`.
Example: r.plot(\"out/r.png\", #{ kind: \"lines\", y: \"entropy\" });",
        |r: &mut ScriptReport, path: &str, spec: Map| -> RhaiResult<()> {
            let spec = match to_json(&Dynamic::from_map(spec))? {
                Value::Object(m) => m,
                _ => return err("plot: the spec must be a map"),
            };
            anyhow_rt(crate::report::plot::plot(
                &r.0,
                std::path::Path::new(path),
                &spec,
            ))
        },
    );
    def!(
        rhai,
        "to_string",
        "`Result(metric = value unit)`.",
        |r: &mut ScriptReport| {
            let v = r.0.value.map_or("-".to_string(), |v| format!("{v:.6}"));
            format!("Result({} = {v} {})", r.0.metric, r.0.unit)
        },
    );
}

/// A table cell from a script value: a string, an integer, a `Quantity`, a `Result` (its
/// value), or `na(reason)`. A bare float is refused: it would be a number without
/// provenance.
fn html_cell(v: &Dynamic) -> RhaiResult<Cell> {
    if v.is_string() {
        return Ok(Cell::Text(v.clone().into_string().unwrap_or_default()));
    }
    if let Ok(i) = v.as_int() {
        return Ok(Cell::Int(i));
    }
    if let Some(q) = v.clone().try_cast::<Quantity>() {
        return Ok(Cell::Num(q));
    }
    if let Some(r) = v.clone().try_cast::<ScriptReport>() {
        return Ok(Cell::Num(anyhow_rt(Quantity::of(&r.0, None, None))?));
    }
    if let Some(c) = v.clone().try_cast::<Cell>() {
        return Ok(c);
    }
    if v.is_float() {
        return err(
            "table: a bare number has no provenance; use r.quantity(..) or derived(#{ value, unit, how, from })",
        );
    }
    err(format!(
        "table: a cell must be a string, an integer, a Quantity, a Result or na(reason), found {}",
        v.type_name()
    ))
}

/// The results named by `from`: one Result or an array of them.
fn html_sources(v: &Dynamic, what: &str) -> RhaiResult<Vec<Arc<Report>>> {
    if let Some(r) = v.clone().try_cast::<ScriptReport>() {
        return Ok(vec![r.0]);
    }
    match v.clone().try_cast::<Array>() {
        Some(a) => a
            .iter()
            .map(|x| {
                x.clone()
                    .try_cast::<ScriptReport>()
                    .map(|r| r.0)
                    .ok_or_else(|| {
                        format!("{what}: `from` holds a {}, not a Result", x.type_name()).into()
                    })
            })
            .collect(),
        None => err(format!(
            "{what}: `from` must be a Result or an array of Results, found {}",
            v.type_name()
        )),
    }
}

/// Values of a line: a tensor name of its one result (1-D), a Tensor, or an array of
/// numbers.
fn html_values(v: &Dynamic, from: &[Arc<Report>], what: &str) -> RhaiResult<Vec<f64>> {
    let t = if v.is_string() {
        let name = v.clone().into_string().unwrap_or_default();
        let [r] = from else {
            return err(format!(
                "{what}: a tensor name needs exactly one result in `from` ({} given)",
                from.len()
            ));
        };
        match r.tensors.get(&name) {
            Some(t) => t.clone(),
            None => {
                return err(format!(
                    "{what}: result `{}` has no tensor `{name}` (tensors: {})",
                    r.metric,
                    r.tensors.keys().cloned().collect::<Vec<_>>().join(", ")
                ))
            }
        }
    } else if let Some(t) = v.clone().try_cast::<Tensor>() {
        t
    } else if let Some(a) = v.clone().try_cast::<Array>() {
        return a.iter().map(|x| number(x, what)).collect();
    } else {
        return err(format!(
            "{what}: expected a tensor name, a Tensor or an array of numbers, found {}",
            v.type_name()
        ));
    };
    if t.ndim() != 1 {
        return err(format!(
            "{what}: a line needs a 1-D tensor, got shape {:?}",
            t.shape()
        ));
    }
    Ok(t.data().iter().map(|&x| x as f64).collect())
}

fn take_str(m: &mut Map, key: &str, what: &str) -> RhaiResult<Option<String>> {
    match m.remove(key) {
        None => Ok(None),
        Some(v) => v
            .into_string()
            .map(Some)
            .map_err(|t| format!("{what}: `{key}` must be a string, found {t}").into()),
    }
}

fn no_more_keys(m: &Map, what: &str, known: &str) -> RhaiResult<()> {
    match m.keys().next() {
        Some(k) => err(format!("{what}: unknown key `{k}` (known: {known})")),
        None => Ok(()),
    }
}

fn register_html(rhai: &mut rhai::Engine) {
    rhai.register_type_with_name::<HtmlReport>("HtmlReport");
    rhai.register_type_with_name::<Quantity>("Quantity");
    rhai.register_type_with_name::<Cell>("Cell");
    def!(
        rhai,
        "html_report",
        "A new HTML report: one self-contained file (inline SVG figures, tables, no network)
in which every number links to its provenance (metric, plugin version, parameters, model).
Example: let rep = html_report(\"Three architectures\"); rep.section(\"Likelihood\");
         rep.table([\"model\", \"NLL\"], [[\"transformer\", r.quantity(\"per_token\")]]);
         rep.save(\"out/compare/report.html\");",
        |title: &str| HtmlReport::new(title),
    );
    def!(
        rhai,
        "section",
        "Start a section with a heading.",
        |rep: &mut HtmlReport, heading: &str| rep.section(heading),
    );
    def!(
        rhai,
        "text",
        "A paragraph (`code` in backticks). Put numbers in tables, where they carry provenance.",
        |rep: &mut HtmlReport, paragraph: &str| rep.text(paragraph),
    );
    let table = |rep: &mut HtmlReport,
                 caption: Option<&str>,
                 header: Array,
                 rows: Array|
     -> RhaiResult<()> {
        let header = strings(&Dynamic::from_array(header), "table: header")?;
        let rows = rows
            .iter()
            .map(|r| match r.clone().try_cast::<Array>() {
                Some(cells) => cells.iter().map(html_cell).collect::<RhaiResult<Vec<_>>>(),
                None => err("table: each row must be an array of cells"),
            })
            .collect::<RhaiResult<Vec<_>>>()?;
        anyhow_rt(rep.table(caption, header, rows))
    };
    def!(
        rhai,
        "table",
        "A table: a header (strings) and rows of cells: strings, integers, Quantities
(`r.quantity(..)`, `derived(..)`), Results (their value) or `na(reason)`.
Example: rep.table([\"model\", \"H\"], [[\"llama\", r.quantity(\"entropy_mean\")]]);",
        move |rep: &mut HtmlReport, header: Array, rows: Array| table(rep, None, header, rows),
    );
    def!(
        rhai,
        "table",
        "A table with a caption.
Example: rep.table(\"Cross-entropy\", [\"model\", \"H\"], rows);",
        move |rep: &mut HtmlReport, caption: &str, header: Array, rows: Array| {
            table(rep, Some(caption), header, rows)
        },
    );
    let plot = |rep: &mut HtmlReport, r: ScriptReport, spec: Map| -> RhaiResult<()> {
        let mut spec = match to_json(&Dynamic::from_map(spec))? {
            Value::Object(m) => m,
            _ => return err("plot: the spec must be a map"),
        };
        let caption = match spec.remove("caption") {
            None => r.0.description.clone(),
            Some(Value::String(s)) => s,
            Some(v) => return err(format!("plot: `caption` must be a string, found {v}")),
        };
        anyhow_rt(rep.plot(&r.0, &spec, &caption))
    };
    def!(
        rhai,
        "plot",
        "A figure of a result, drawn as `r.plot` would (its metric's plot spec).
Example: rep.plot(r);",
        move |rep: &mut HtmlReport, r: ScriptReport| plot(rep, r, Map::new()),
    );
    def!(
        rhai,
        "plot",
        "A figure of a result with a plot spec (as `r.plot`'s) and a `caption`.
Example: rep.plot(g, #{ kind: \"heatmap\", z: \"granger_kl\", caption: \"Granger map\" });",
        plot,
    );
    def!(
        rhai,
        "lines",
        "A figure of lines from several results: `series` is an array of
`#{ name, from, y, x }` where `from` is the Result (or array of Results) the line comes
from and `y` (and the optional `x`, default 0, 1, ...) a tensor name of `from`, a Tensor
or an array of numbers; also `title`, `x_label`,
`y_label`, `log_y`, `caption`.
Example: rep.lines(#{ title: \"lag profiles\", x_label: \"lag\", y_label: \"KL (nats)\",
           series: [#{ name: \"llama\", from: g1, y: \"lag_profile\" }, #{ name: \"mamba2\", from: g2, y: \"lag_profile\" }] });",
        |rep: &mut HtmlReport, spec: Map| -> RhaiResult<()> {
            let what = "lines";
            let mut spec = spec;
            let title = take_str(&mut spec, "title", what)?.unwrap_or_default();
            let x_label = take_str(&mut spec, "x_label", what)?.unwrap_or_else(|| "x".into());
            let y_label = take_str(&mut spec, "y_label", what)?.unwrap_or_else(|| "y".into());
            let caption = take_str(&mut spec, "caption", what)?.unwrap_or_default();
            let log_y = match spec.remove("log_y") {
                None => false,
                Some(v) => v
                    .as_bool()
                    .map_err(|t| format!("lines: `log_y` must be true or false, found {t}"))?,
            };
            let series = match spec.remove("series").and_then(|v| v.try_cast::<Array>()) {
                Some(a) => a,
                None => return err("lines: `series` must be an array of #{ name, from, y, x }"),
            };
            no_more_keys(&spec, what, "title, x_label, y_label, log_y, caption, series")?;
            let mut lines = Vec::new();
            for s in series {
                let mut m = s
                    .try_cast::<Map>()
                    .ok_or("lines: each series must be a map #{ name, from, y, x }")?;
                let name = take_str(&mut m, "name", what)?.ok_or("lines: a series needs a `name`")?;
                let from = m
                    .remove("from")
                    .ok_or_else(|| format!("lines: series `{name}` needs `from` (the Result it comes from)"))?;
                let sources = html_sources(&from, &format!("lines: series `{name}`"))?;
                let y = m
                    .remove("y")
                    .ok_or_else(|| format!("lines: series `{name}` needs `y`"))?;
                let y = html_values(&y, &sources, &format!("lines: series `{name}`: y"))?;
                let x = match m.remove("x") {
                    Some(x) => html_values(&x, &sources, &format!("lines: series `{name}`: x"))?,
                    None => (0..y.len()).map(|i| i as f64).collect(),
                };
                no_more_keys(&m, &format!("lines: series `{name}`"), "name, from, y, x")?;
                lines.push(Line {
                    name,
                    x,
                    y,
                    sources,
                });
            }
            anyhow_rt(rep.lines(&title, lines, [x_label, y_label], log_y, &caption))
        },
    );
    def!(
        rhai,
        "save",
        "Write the report as one self-contained HTML file (atomically). Refused when a NaN
would be printed.
Example: rep.save(\"out/compare/report.html\");",
        |rep: &mut HtmlReport, path: &str| -> RhaiResult<()> {
            anyhow_rt(rep.save(std::path::Path::new(path)))
        },
    );
    def!(
        rhai,
        "figures",
        "The number of figures in the report so far.",
        |rep: &mut HtmlReport| rep.figures() as i64,
    );
    def!(
        rhai,
        "to_string",
        "`HtmlReport(title)`.",
        |rep: &mut HtmlReport| { format!("HtmlReport({})", rep.title) }
    );
    def!(
        rhai,
        "quantity",
        "The result's value as a Quantity for a report table: the number with its unit, its
standard error (scalar `se`) and its provenance.
Example: rep.table([\"H\"], [[r.quantity()]]);",
        |r: &mut ScriptReport| anyhow_rt(Quantity::of(&r.0, None, None)),
    );
    def!(
        rhai,
        "quantity",
        "One of the result's scalars as a Quantity (standard error: scalar `KEY_se`, if any),
in the result's unit.
Example: r.quantity(\"per_token\")",
        |r: &mut ScriptReport, key: &str| anyhow_rt(Quantity::of(&r.0, Some(key), None)),
    );
    def!(
        rhai,
        "quantity",
        "One of the result's scalars as a Quantity with the unit given.
Example: s.quantity(\"memory_length_layer0\", \"tokens\")",
        |r: &mut ScriptReport, key: &str, unit: &str| {
            anyhow_rt(Quantity::of(&r.0, Some(key), Some(unit)))
        },
    );
    def!(
        rhai,
        "derived",
        "A number computed from results, for a report table: `#{ value, se, unit, how, from }`
(`se` optional; `how` says how it follows from `from`, a Result or an array of Results).
A value that is not finite shows as n/a with `how` as the reason.
Example: derived(#{ value: nll / n, unit: \"nats/token\", how: \"Σ NLL / Σ tokens\", from: results })",
        |spec: Map| -> RhaiResult<Quantity> {
            let what = "derived";
            let mut spec = spec;
            let value = number(
                &spec.remove("value").ok_or("derived: needs `value`")?,
                "derived: value",
            )?;
            let se = match spec.remove("se") {
                None => None,
                Some(v) if v.is_unit() => None,
                Some(v) => Some(number(&v, "derived: se")?),
            };
            let unit = take_str(&mut spec, "unit", what)?.unwrap_or_default();
            let how = take_str(&mut spec, "how", what)?.ok_or("derived: needs `how`")?;
            let from = html_sources(&spec.remove("from").ok_or("derived: needs `from`")?, what)?;
            no_more_keys(&spec, what, "value, se, unit, how, from")?;
            anyhow_rt(Quantity::derived(value, se, &unit, &how, from))
        },
    );
    def!(
        rhai,
        "na",
        "A table cell with no value, and the reason shown beside \"n/a\".
Example: na(\"LLaDA is not causal: no next-token law\")",
        |reason: &str| Cell::Na(reason.to_string()),
    );
    def!(
        rhai,
        "to_string",
        "The quantity as text.",
        |q: &mut Quantity| {
            match &q.missing {
                Some(why) => format!("n/a ({why})"),
                None => format!("{} {}", crate::report::html::fmt_num(q.value), q.unit),
            }
        }
    );
}
