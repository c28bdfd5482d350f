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

/// Why an array is not a tensor.
#[derive(Debug)]
pub enum NotTensor {
    /// Rows of different lengths, or numbers and arrays mixed.
    Ragged(String),
    /// An element that is not a number.
    NotNumber(String),
    /// A number f32 cannot hold exactly (only when exactness is asked for).
    Inexact,
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

/// The shape and values of a rectangular, possibly nested array of numbers, in one pass
/// over it (no copy of the array). With `exact`, a number f32 cannot hold exactly (an
/// integer beyond ±2^24, a float with more digits than f32) stops the walk.
pub fn numbers(a: &Array, exact: bool) -> Result<(Vec<usize>, Vec<f32>), NotTensor> {
    struct Walk {
        shape: Vec<usize>,
        data: Vec<f32>,
        /// The depth of the arrays that hold numbers, once one was seen.
        leaf: Option<usize>,
        exact: bool,
    }
    let mixed = || NotTensor::Ragged("numbers and arrays mixed".into());
    impl Walk {
        fn number(&mut self, depth: usize, f: f32) -> Result<(), NotTensor> {
            match self.leaf {
                None if self.shape.len() == depth + 1 => self.leaf = Some(depth),
                Some(l) if l == depth => {}
                _ => return Err(NotTensor::Ragged("numbers and arrays mixed".into())),
            }
            self.data.push(f);
            Ok(())
        }
    }
    fn walk(
        w: &mut Walk,
        a: &Array,
        depth: usize,
        mixed: &dyn Fn() -> NotTensor,
    ) -> Result<(), NotTensor> {
        if w.shape.len() == depth {
            w.shape.push(a.len());
        } else if w.shape[depth] != a.len() {
            return Err(NotTensor::Ragged(format!(
                "length {} vs {} at depth {depth}",
                a.len(),
                w.shape[depth]
            )));
        }
        for d in a {
            if let Ok(i) = d.as_int() {
                let f = i as f32;
                if w.exact && f as i128 != i as i128 {
                    return Err(NotTensor::Inexact);
                }
                w.number(depth, f)?;
            } else if let Ok(x) = d.as_float() {
                let f = x as f32;
                if w.exact && f as f64 != x && !x.is_nan() {
                    return Err(NotTensor::Inexact);
                }
                w.number(depth, f)?;
            } else if let Ok(inner) = d.as_array_ref() {
                if w.leaf.is_some_and(|l| l <= depth) {
                    return Err(mixed());
                }
                walk(w, &inner, depth + 1, mixed)?;
            } else {
                return Err(NotTensor::NotNumber(d.type_name().to_string()));
            }
        }
        Ok(())
    }
    let mut w = Walk {
        shape: Vec::new(),
        // Exact for a flat array; nested ones grow from the first row's worth.
        data: Vec::with_capacity(a.len()),
        leaf: None,
        exact,
    };
    walk(&mut w, a, 0, &mixed)?;
    Ok((w.shape, w.data))
}

/// A (possibly nested) array of numbers as a tensor (floats rounded to f32).
pub fn tensor_from_array(a: &Array) -> RhaiResult<Tensor> {
    match numbers(a, false) {
        Ok((shape, data)) => rt(Tensor::new(shape, data)),
        Err(NotTensor::Ragged(why)) => err(format!("tensor: ragged array ({why})")),
        Err(NotTensor::NotNumber(t)) => err(format!("tensor: expected a number, found {t}")),
        Err(NotTensor::Inexact) => unreachable!("only with exact"),
    }
}

/// Arrays with fewer numbers than this go to metrics as JSON: the tensor path pays off for
/// bulk data, and small parameters keep their f64 values as written.
pub const BULK_MIN: usize = 1024;

/// A bulk array as a tensor, when the conversion loses nothing: rectangular, numeric, every
/// number exactly an f32, at least [`BULK_MIN`] of them. `None` otherwise (it then goes as
/// JSON, and the metric's own checks report what is wrong with it).
pub fn bulk_tensor(a: &Array) -> Option<Tensor> {
    // A cheap look at the size first: counting needs no walk for flat arrays.
    let first_len = a
        .first()
        .and_then(|d| d.as_array_ref().ok().map(|r| r.len()));
    if a.len() * first_len.unwrap_or(1).max(1) < BULK_MIN {
        return None;
    }
    let (shape, data) = numbers(a, true).ok()?;
    if data.len() < BULK_MIN || shape.contains(&0) {
        return None;
    }
    Tensor::new(shape, data).ok()
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

#[cfg(test)]
mod tests {
    use super::*;

    fn arr(v: Vec<Dynamic>) -> Array {
        v
    }
    fn ints(v: impl IntoIterator<Item = i64>) -> Dynamic {
        Dynamic::from_array(v.into_iter().map(Dynamic::from_int).collect())
    }

    #[test]
    fn nested_arrays_become_tensors_in_one_pass() {
        let a = arr(vec![ints([1, 2, 3]), ints([4, 5, 6])]);
        let t = tensor_from_array(&a).unwrap();
        assert_eq!(
            (t.shape(), t.data()),
            (&[2, 3][..], &[1., 2., 3., 4., 5., 6.][..])
        );
        let e = |a: Array| tensor_from_array(&a).unwrap_err().to_string();
        assert!(e(arr(vec![ints([1, 2]), ints([3])])).contains("ragged"));
        assert!(e(arr(vec![ints([1, 2]), Dynamic::from_int(3)])).contains("mixed"));
        assert!(e(arr(vec![Dynamic::from_int(3), ints([1])])).contains("mixed"));
        assert!(e(arr(vec![Dynamic::from("x".to_string())])).contains("string"));
        let t = tensor_from_array(&arr(vec![ints([]), ints([])])).unwrap();
        assert_eq!(t.shape(), [2, 0]);
        // Explicit conversion rounds; the exact walk refuses what f32 cannot hold.
        let big = arr(vec![Dynamic::from_int((1 << 24) + 1)]);
        assert_eq!(tensor_from_array(&big).unwrap().data(), [16_777_216.0]);
        assert!(matches!(numbers(&big, true), Err(NotTensor::Inexact)));
        let max = arr(vec![Dynamic::from_int(i64::MAX)]);
        assert!(matches!(numbers(&max, true), Err(NotTensor::Inexact)));
        let tenth = arr(vec![Dynamic::from_float(0.1)]);
        assert!(matches!(numbers(&tenth, true), Err(NotTensor::Inexact)));
        let ok = arr(vec![
            Dynamic::from_float(0.5),
            Dynamic::from_float(f64::NAN),
        ]);
        assert!(numbers(&ok, true).is_ok());
    }

    #[test]
    fn only_bulk_exact_arrays_go_as_tensors() {
        let stream: Array = (0..BULK_MIN as i64 * 2)
            .map(|i| Dynamic::from_int(i % 3))
            .collect();
        let t = bulk_tensor(&stream).expect("a long integer stream is bulk data");
        assert_eq!(t.shape(), [2 * BULK_MIN]);
        assert_eq!(t.data()[..4], [0.0, 1.0, 2.0, 0.0]);
        assert!(
            bulk_tensor(&stream[..BULK_MIN - 1].to_vec()).is_none(),
            "small: JSON"
        );
        let trials = arr(vec![
            Dynamic::from_array(stream[..600].to_vec()),
            Dynamic::from_array(stream[600..1200].to_vec()),
        ]);
        assert_eq!(bulk_tensor(&trials).unwrap().shape(), [2, 600]);
        let ragged = arr(vec![
            Dynamic::from_array(stream[..600].to_vec()),
            Dynamic::from_array(stream[..700].to_vec()),
        ]);
        assert!(bulk_tensor(&ragged).is_none());
        let mut inexact = stream.clone();
        inexact[500] = Dynamic::from_float(0.1);
        assert!(bulk_tensor(&inexact).is_none());
    }
}
