//! Conversions between Rhai values and tokit's (JSON, token ids, tensors).

use rhai::{Array, Dynamic, EvalAltResult};
use serde_json::Value;
use tokit_compute::Tensor;

pub type RhaiResult<T> = Result<T, Box<EvalAltResult>>;

/// A runtime error for scripts.
pub fn err<T>(msg: impl std::fmt::Display) -> RhaiResult<T> {
    Err(msg.to_string().into())
}

/// Any error (anyhow chains included) as a script error.
pub fn rt<T, E: std::fmt::Display>(r: Result<T, E>) -> RhaiResult<T> {
    r.map_err(|e| format!("{e:#}").into())
}

pub fn anyhow_rt<T>(r: anyhow::Result<T>) -> RhaiResult<T> {
    r.map_err(|e| format!("{e:#}").into())
}

pub fn to_json(d: &Dynamic) -> RhaiResult<Value> {
    rt(rhai::serde::from_dynamic::<Value>(d))
}

pub fn from_json(v: &Value) -> RhaiResult<Dynamic> {
    rt(rhai::serde::to_dynamic(v))
}

/// A Rhai array of integers as token ids.
pub fn token_ids(a: &Array, what: &str) -> RhaiResult<Vec<u32>> {
    a.iter()
        .enumerate()
        .map(|(i, d)| match d.as_int() {
            Ok(v) if (0..=u32::MAX as i64).contains(&v) => Ok(v as u32),
            _ => err(format!(
                "{what}: element {i} must be a token id (non-negative integer), found {d}"
            )),
        })
        .collect()
}

pub fn ids_to_array(ids: &[u32]) -> Array {
    ids.iter().map(|&i| Dynamic::from_int(i as i64)).collect()
}

/// Strings from an array.
pub fn strings(d: &Dynamic, what: &str) -> RhaiResult<Vec<String>> {
    match d.clone().try_cast::<Array>() {
        Some(a) => a
            .iter()
            .map(|x| {
                x.clone()
                    .into_string()
                    .or_else(|t| err(format!("{what}: expected strings, found {t}")))
            })
            .collect(),
        None if d.is_string() => Ok(vec![d.clone().into_string().unwrap_or_default()]),
        None => err(format!(
            "{what}: expected an array of strings, found {}",
            d.type_name()
        )),
    }
}

/// A number (int or float) as f64.
pub fn number(d: &Dynamic, what: &str) -> RhaiResult<f64> {
    if let Ok(f) = d.as_float() {
        return Ok(f);
    }
    match d.as_int() {
        Ok(i) => Ok(i as f64),
        Err(_) => err(format!(
            "{what}: expected a number, found {}",
            d.type_name()
        )),
    }
}

/// A (possibly nested) array of numbers as a tensor.
pub fn tensor_from_array(a: &Array) -> RhaiResult<Tensor> {
    fn walk(
        d: &Dynamic,
        depth: usize,
        shape: &mut Vec<usize>,
        data: &mut Vec<f32>,
    ) -> RhaiResult<()> {
        match d.clone().try_cast::<Array>() {
            Some(a) => {
                if shape.len() == depth {
                    shape.push(a.len());
                } else if shape[depth] != a.len() {
                    return err(format!(
                        "tensor: ragged array (length {} vs {} at depth {depth})",
                        a.len(),
                        shape[depth]
                    ));
                }
                a.iter().try_for_each(|x| walk(x, depth + 1, shape, data))
            }
            None => {
                if shape.len() != depth {
                    return err("tensor: ragged array (numbers and arrays mixed)");
                }
                data.push(number(d, "tensor")? as f32);
                Ok(())
            }
        }
    }
    let mut shape = Vec::new();
    let mut data = Vec::new();
    walk(&Dynamic::from_array(a.clone()), 0, &mut shape, &mut data)?;
    rt(Tensor::new(shape, data))
}

/// A tensor as nested Rhai arrays of floats.
pub fn tensor_to_array(t: &Tensor) -> Dynamic {
    fn build(data: &[f32], shape: &[usize]) -> Dynamic {
        match shape.split_first() {
            None => Dynamic::from_float(data.first().copied().unwrap_or(0.0) as f64),
            Some((&n, rest)) => {
                let step: usize = rest.iter().product();
                let a: Array = (0..n)
                    .map(|i| build(&data[i * step..(i + 1) * step], rest))
                    .collect();
                Dynamic::from_array(a)
            }
        }
    }
    build(t.data(), t.shape())
}
