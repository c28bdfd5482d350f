//! tokit's functions and types in Rhai (README.md, "Rhai"):
//! `load_model`, `Model.info/encode/decode/forward/hooks`, `analyze`, `Result.value/unit/
//! scalars/tensors/table/save/plot`, `metrics()`, `plugins()`, `call_plugin`, `Tensor`.

use super::convert::*;
use crate::engine::{AnalyzeInput, Engine};
use crate::hooks::{Action, Intervention};
use crate::model::{ForwardSpec, LoadOptions, Model};
use crate::report::Report;
use rhai::{Array, Dynamic, Map};
use serde_json::Value;
use std::sync::Arc;
use tokit_compute::Tensor;
use tokit_sdk::Variant;

/// A result as scripts see it.
#[derive(Clone)]
pub struct ScriptReport(pub Arc<Report>);

pub fn register(rhai: &mut rhai::Engine, tokit: Arc<Engine>) {
    register_model(rhai, tokit.clone());
    register_tensor(rhai);
    register_report(rhai);

    let t = tokit.clone();
    rhai.register_fn(
        "analyze",
        move |metric: &str, args: Map| -> RhaiResult<ScriptReport> {
            let input = analyze_input(&args)?;
            Ok(ScriptReport(Arc::new(anyhow_rt(
                t.analyze(metric, &input),
            )?)))
        },
    );
    let t = tokit.clone();
    rhai.register_fn("metrics", move || -> RhaiResult<Array> {
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
    });
    let t = tokit.clone();
    rhai.register_fn("plugins", move || -> RhaiResult<Array> {
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
    });
    let t = tokit.clone();
    rhai.register_fn(
        "call_plugin",
        move |plugin: &str, action: &str, args: Map| -> RhaiResult<Dynamic> {
            let v = to_json(&Dynamic::from_map(args))?;
            from_json(&anyhow_rt(t.action(plugin, action, &v))?)
        },
    );
    rhai.register_fn("read_file", |path: &str| -> RhaiResult<String> {
        rt(std::fs::read_to_string(path).map_err(|e| format!("read_file {path}: {e}")))
    });
    let t = tokit;
    rhai.register_fn("out_dir", move || -> String {
        t.config
            .output_dir
            .clone()
            .unwrap_or_else(|| "out".into())
            .display()
            .to_string()
    });
    rhai.register_fn("tensor", |a: Array| tensor_from_array(&a));
}

fn analyze_input(args: &Map) -> RhaiResult<AnalyzeInput> {
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
            "inputs" => match v.clone().try_cast::<Map>() {
                Some(m) => {
                    for (name, t) in m {
                        match t.clone().try_cast::<Tensor>() {
                            Some(t) => input.tensors.push((name.to_string(), t)),
                            None => return err(format!("analyze: inputs.{name} must be a Tensor")),
                        }
                    }
                }
                None => return err("analyze: `inputs` must be a map of tensors"),
            },
            _ => {
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

fn forward_spec(opts: &Map) -> RhaiResult<(ForwardSpec, bool)> {
    let mut spec = ForwardSpec::default();
    let mut many = false;
    for (k, v) in opts {
        match k.as_str() {
            "capture" => spec.capture = strings(v, "forward: capture")?,
            "ablate" => {
                let method = opts.get("method").and_then(|m| m.clone().into_string().ok());
                spec.variants = vec![Variant { ablate: int_list(v, "forward: ablate")?, method, replace_with: None }];
            }
            "method" | "replace_with" => {}
            "variants" => {
                many = true;
                let a = v.clone().try_cast::<Array>().ok_or("forward: `variants` must be an array of maps")?;
                spec.variants = a
                    .iter()
                    .map(|d| rt(rhai::serde::from_dynamic::<Variant>(d).map_err(|e| format!("forward: variant: {e}"))))
                    .collect::<RhaiResult<_>>()?;
            }
            "interventions" => {
                let a = v.clone().try_cast::<Array>().ok_or("forward: `interventions` must be an array of maps")?;
                spec.interventions = a.iter().map(intervention).collect::<RhaiResult<_>>()?;
            }
            other => return err(format!("forward: unknown option `{other}` (capture, ablate, method, variants, interventions)")),
        }
    }
    if let Some(r) = opts.get("replace_with") {
        let tok = r
            .as_int()
            .map_err(|_| "forward: replace_with must be a token id")?;
        for v in &mut spec.variants {
            v.replace_with = Some(tok as u32);
        }
    }
    Ok((spec, many))
}

fn intervention(d: &Dynamic) -> RhaiResult<Intervention> {
    let m = d
        .clone()
        .try_cast::<Map>()
        .ok_or("forward: each intervention is a map #{hook, op, value}")?;
    let pattern = map_get(&m, "hook")
        .ok_or("intervention: missing `hook`")?
        .clone()
        .into_string()
        .map_err(|_| "intervention: `hook` must be a string")?;
    let op = map_get(&m, "op")
        .ok_or("intervention: missing `op`")?
        .clone()
        .into_string()
        .map_err(|_| "intervention: `op` must be a string")?;
    let value = map_get(&m, "value");
    let tensor = |what: &str| -> RhaiResult<Tensor> {
        let v = value.ok_or_else(|| format!("intervention {what}: missing `value` (a Tensor)"))?;
        v.clone()
            .try_cast::<Tensor>()
            .ok_or_else(|| format!("intervention {what}: `value` must be a Tensor").into())
    };
    let action = match op.as_str() {
        "zero" => Action::Zero,
        "scale" => Action::Scale(number(
            value.ok_or("intervention scale: missing `value`")?,
            "intervention scale",
        )? as f32),
        "add" => Action::Add(tensor("add")?),
        "replace" => Action::Replace(tensor("replace")?),
        "knockout" => Action::Knockout {
            keys: int_list(
                map_get(&m, "keys")
                    .ok_or("intervention knockout: missing `keys` (key positions)")?,
                "intervention knockout: keys",
            )?,
            heads: match map_get(&m, "heads") {
                Some(h) => int_list(h, "intervention knockout: heads")?,
                None => vec![],
            },
        },
        other => {
            return err(format!(
                "intervention: unknown op `{other}` (zero, scale, add, replace, knockout)"
            ))
        }
    };
    let variants = match map_get(&m, "variants") {
        Some(v) => Some(int_list(v, "intervention: variants")?),
        None => None,
    };
    Ok(Intervention {
        pattern,
        action,
        variants,
    })
}

fn outputs_map(o: std::collections::BTreeMap<String, Tensor>) -> Map {
    o.into_iter()
        .map(|(k, t)| (k.into(), Dynamic::from(t)))
        .collect()
}

fn register_model(rhai: &mut rhai::Engine, tokit: Arc<Engine>) {
    rhai.register_type_with_name::<Model>("Model");
    let t = tokit.clone();
    rhai.register_fn("load_model", move |path: &str| -> RhaiResult<Model> {
        anyhow_rt(t.load_model(path, &LoadOptions::default()))
    });
    let t = tokit;
    rhai.register_fn(
        "load_model",
        move |path: &str, opts: Map| -> RhaiResult<Model> {
            let mut lo = LoadOptions::default();
            for (k, v) in opts {
                if k == "arch" {
                    lo.arch = Some(
                        v.into_string()
                            .map_err(|_| "load_model: `arch` must be a string")?,
                    );
                } else {
                    lo.options.insert(k.to_string(), to_json(&v)?);
                }
            }
            anyhow_rt(t.load_model(path, &lo))
        },
    );
    rhai.register_fn("info", |m: &mut Model| model_info_map(m));
    rhai.register_fn("hooks", |m: &mut Model| -> Array {
        m.info()
            .hooks
            .iter()
            .map(|h| Dynamic::from(h.clone()))
            .collect()
    });
    rhai.register_fn("encode", |m: &mut Model, text: &str| -> RhaiResult<Array> {
        Ok(ids_to_array(&anyhow_rt(m.encode(text))?))
    });
    rhai.register_fn(
        "decode",
        |m: &mut Model, ids: Array| -> RhaiResult<String> {
            anyhow_rt(m.decode(&token_ids(&ids, "decode")?))
        },
    );
    rhai.register_fn("token_str", |m: &mut Model, id: i64| -> String {
        u32::try_from(id)
            .map(|i| m.token_str(i))
            .unwrap_or_default()
    });
    rhai.register_fn("forward", |m: &mut Model, ids: Array| -> RhaiResult<Map> {
        let out = anyhow_rt(m.forward(&token_ids(&ids, "forward")?, &ForwardSpec::default()))?;
        Ok(outputs_map(out.into_iter().next().unwrap_or_default()))
    });
    rhai.register_fn(
        "forward",
        |m: &mut Model, ids: Array, opts: Map| -> RhaiResult<Dynamic> {
            let (spec, many) = forward_spec(&opts)?;
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
    rhai.register_fn(
        "generate",
        |m: &mut Model, ids: Array, opts: Map| -> RhaiResult<Array> {
            let opts: crate::GenerateOptions =
                rt(rhai::serde::from_dynamic(&Dynamic::from_map(opts))
                    .map_err(|e| format!("generate: options: {e}")))?;
            Ok(ids_to_array(&anyhow_rt(crate::generate::generate(
                m,
                &token_ids(&ids, "generate")?,
                &opts,
            ))?))
        },
    );
    rhai.register_fn(
        "generate_trace",
        |m: &mut Model, ids: Array, opts: Map| -> RhaiResult<Map> {
            let opts: crate::GenerateOptions =
                rt(rhai::serde::from_dynamic(&Dynamic::from_map(opts))
                    .map_err(|e| format!("generate_trace: options: {e}")))?;
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
    rhai.register_fn("to_string", |m: &mut Model| {
        format!("Model({}, {})", m.arch, m.path.display())
    });
}

fn register_tensor(rhai: &mut rhai::Engine) {
    use tokit_compute::ReduceOp;
    rhai.register_type_with_name::<Tensor>("Tensor");
    rhai.register_fn("shape", |t: &mut Tensor| -> Array {
        t.shape()
            .iter()
            .map(|&d| Dynamic::from_int(d as i64))
            .collect()
    });
    rhai.register_fn("len", |t: &mut Tensor| {
        t.shape().first().copied().unwrap_or(1) as i64
    });
    rhai.register_fn("numel", |t: &mut Tensor| t.numel() as i64);
    rhai.register_fn("to_array", |t: &mut Tensor| tensor_to_array(t));
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
    rhai.register_fn("sum", all(ReduceOp::Sum));
    rhai.register_fn("mean", all(ReduceOp::Mean));
    rhai.register_fn("max", all(ReduceOp::Max));
    rhai.register_fn("min", all(ReduceOp::Min));
    rhai.register_fn("argmax", |t: &mut Tensor| -> i64 {
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
    });
    rhai.register_fn("to_string", |t: &mut Tensor| {
        format!("Tensor{:?}", t.shape())
    });
}

fn register_report(rhai: &mut rhai::Engine) {
    rhai.register_type_with_name::<ScriptReport>("Result");
    rhai.register_get("value", |r: &mut ScriptReport| {
        r.0.value.map_or(Dynamic::UNIT, Dynamic::from_float)
    });
    rhai.register_get("unit", |r: &mut ScriptReport| r.0.unit.clone());
    rhai.register_get("metric", |r: &mut ScriptReport| r.0.metric.clone());
    rhai.register_get("estimator", |r: &mut ScriptReport| r.0.estimator.clone());
    rhai.register_get("scalars", |r: &mut ScriptReport| -> Map {
        r.0.scalars
            .iter()
            .map(|(k, &v)| (k.into(), Dynamic::from_float(v)))
            .collect()
    });
    rhai.register_get("tensors", |r: &mut ScriptReport| -> Map {
        r.0.tensors
            .iter()
            .map(|(k, t)| (k.into(), Dynamic::from(t.clone())))
            .collect()
    });
    rhai.register_get("params", |r: &mut ScriptReport| -> RhaiResult<Dynamic> {
        from_json(&Value::Object(r.0.params.clone()))
    });
    rhai.register_get("tokens", |r: &mut ScriptReport| -> Array {
        r.0.tokens
            .iter()
            .map(|s| Dynamic::from(s.clone()))
            .collect()
    });
    rhai.register_fn("table", |r: &mut ScriptReport| {
        r.0.table_text(&[], usize::MAX)
    });
    rhai.register_fn("table", |r: &mut ScriptReport, max_rows: i64| {
        r.0.table_text(&[], max_rows.max(0) as usize)
    });
    rhai.register_fn(
        "table",
        |r: &mut ScriptReport, columns: Array, max_rows: i64| -> RhaiResult<String> {
            let cols = strings(&Dynamic::from_array(columns), "table: columns")?;
            Ok(r.0.table_text(&cols, max_rows.max(0) as usize))
        },
    );
    rhai.register_fn("to_json", |r: &mut ScriptReport| -> RhaiResult<String> {
        rt(serde_json::to_string_pretty(&r.0.to_json()))
    });
    rhai.register_fn(
        "save",
        |r: &mut ScriptReport, path: &str| -> RhaiResult<()> {
            anyhow_rt(r.0.save(std::path::Path::new(path)))
        },
    );
    rhai.register_fn(
        "plot",
        |r: &mut ScriptReport, path: &str| -> RhaiResult<()> {
            anyhow_rt(crate::report::plot::plot(
                &r.0,
                std::path::Path::new(path),
                &Default::default(),
            ))
        },
    );
    rhai.register_fn(
        "plot",
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
    rhai.register_fn("to_string", |r: &mut ScriptReport| {
        let v = r.0.value.map_or("-".to_string(), |v| format!("{v:.6}"));
        format!("Result({} = {v} {})", r.0.metric, r.0.unit)
    });
}
