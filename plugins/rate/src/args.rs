//! Reading array inputs: JSON parameters (f64, preferred for exact work) with named f32
//! input tensors as the fallback, and the result record built before it crosses the ABI.
//! Scalar parameters are typed fields of each metric's `Params` (`tokit_sdk::params!`).
//!
//! Keeping these as plain Rust values (no host tensors) lets the unit tests drive every
//! metric end to end without an engine; [`Record::into_output`] converts at the boundary.

use crate::util::{SUM_TOL_F32, SUM_TOL_F64};
use serde_json::{Map, Value};
use std::collections::BTreeMap;
use tokit_sdk::{Error, MetricOutput, Result, Unit};

/// A numeric array from a parameter or a tensor.
#[derive(Clone, Debug)]
pub struct Array {
    pub data: Vec<f64>,
    /// `[]` for a scalar, `[n]`, `[rows, cols]`, ...
    pub shape: Vec<usize>,
    /// Came from an f32 tensor (looser tolerance on sums).
    pub from_tensor: bool,
}

impl Array {
    /// Tolerance on `Σ p = 1` suited to where the numbers came from.
    pub fn sum_tol(&self) -> f64 {
        if self.from_tensor {
            SUM_TOL_F32 * (1.0 + self.data.len() as f64).sqrt()
        } else {
            SUM_TOL_F64
        }
    }
}

/// Everything a metric reads: its name, JSON parameters and input tensors (`f32`, as the
/// host holds them; [`Args::array`] widens one to `f64` when it is read, so a large
/// matrix is converted once and never copied as `f64`).
pub struct Args<'a> {
    pub metric: &'a str,
    pub params: &'a Map<String, Value>,
    pub tensors: Vec<(String, Vec<f32>, Vec<usize>)>,
}

impl<'a> Args<'a> {
    /// Parameters only (no tensors).
    pub fn new(metric: &'a str, params: &'a Map<String, Value>) -> Args<'a> {
        Args {
            metric,
            params,
            tensors: Vec::new(),
        }
    }

    fn get(&self, name: &str) -> Option<&Value> {
        self.params.get(name).filter(|v| !v.is_null())
    }

    /// True if the parameter or a tensor of that name was given.
    pub fn has(&self, name: &str) -> bool {
        self.get(name).is_some() || self.tensors.iter().any(|(n, _, _)| n == name)
    }

    /// An error about parameter `name`.
    pub fn err(&self, name: &str, msg: impl std::fmt::Display) -> Error {
        Error::msg(format!("{}: parameter `{name}`: {msg}", self.metric))
    }

    fn bad(&self, name: &str, expected: &str, v: &Value) -> Error {
        let mut shown = v.to_string();
        if shown.len() > 80 {
            shown.truncate(77);
            shown.push_str("...");
        }
        self.err(name, format!("expected {expected}, found {shown}"))
    }

    /// A numeric array: the parameter (a number, an array of numbers, or a rectangular array of
    /// arrays), else the input tensor of the same name.
    pub fn array(&self, name: &str) -> Result<Option<Array>> {
        if let Some(v) = self.get(name) {
            let (data, shape) = self.json_array(name, v)?;
            return Ok(Some(Array {
                data,
                shape,
                from_tensor: false,
            }));
        }
        Ok(self
            .tensors
            .iter()
            .find(|(n, _, _)| n == name)
            .map(|(_, d, s)| Array {
                data: crate::util::widen(d),
                shape: s.clone(),
                from_tensor: true,
            }))
    }

    fn json_array(&self, name: &str, v: &Value) -> Result<(Vec<f64>, Vec<usize>)> {
        let num = |x: &Value| x.as_f64().ok_or_else(|| self.bad(name, "numbers", x));
        match v {
            Value::Number(_) => Ok((vec![num(v)?], vec![])),
            Value::Array(rows) if rows.iter().all(|r| r.is_array()) && !rows.is_empty() => {
                let cols = rows[0].as_array().map_or(0, Vec::len);
                let mut data = Vec::with_capacity(rows.len() * cols);
                for (i, r) in rows.iter().enumerate() {
                    let r = r
                        .as_array()
                        .ok_or_else(|| self.bad(name, "an array of arrays", v))?;
                    if r.len() != cols {
                        return Err(self.err(
                            name,
                            format!("row {i} has {} entries, row 0 has {cols} (expected a rectangular matrix)", r.len()),
                        ));
                    }
                    for x in r {
                        data.push(num(x)?);
                    }
                }
                Ok((data, vec![rows.len(), cols]))
            }
            Value::Array(xs) => Ok((
                xs.iter().map(num).collect::<Result<Vec<f64>>>()?,
                vec![xs.len()],
            )),
            _ => Err(self.bad(name, "a number or an array of numbers", v)),
        }
    }

    /// A 1-D array (a scalar counts as length 1).
    pub fn vector(&self, name: &str) -> Result<Option<Array>> {
        match self.array(name)? {
            None => Ok(None),
            Some(a) if a.shape.len() <= 1 => Ok(Some(Array {
                shape: vec![a.data.len()],
                ..a
            })),
            Some(a) => Err(self.err(
                name,
                format!("expected a 1-D array, found shape {:?}", a.shape),
            )),
        }
    }

    /// A required 1-D array.
    pub fn vector_req(&self, name: &str, what: &str) -> Result<Array> {
        self.vector(name)?.ok_or_else(|| {
            self.err(
                name,
                format!("required ({what}), as a parameter array or an input tensor"),
            )
        })
    }

    /// A 2-D array; `(array, rows, cols)`.
    pub fn matrix(&self, name: &str) -> Result<Option<(Array, usize, usize)>> {
        match self.array(name)? {
            None => Ok(None),
            Some(a) if a.shape.len() == 2 => {
                let (r, c) = (a.shape[0], a.shape[1]);
                Ok(Some((a, r, c)))
            }
            Some(a) => Err(self.err(
                name,
                format!(
                    "expected a 2-D matrix (array of rows), found shape {:?}",
                    a.shape
                ),
            )),
        }
    }

    /// At most one of `names` may be given; returns the one given.
    pub fn one_of(&self, names: &[&'static str]) -> Result<Option<&'static str>> {
        let given: Vec<&'static str> = names.iter().copied().filter(|n| self.has(n)).collect();
        match given.len() {
            0 => Ok(None),
            1 => Ok(Some(given[0])),
            _ => Err(Error::msg(format!(
                "{}: give only one of {} (found {})",
                self.metric,
                names.join(", "),
                given.join(" and ")
            ))),
        }
    }
}

/// A metric result before it becomes a `MetricOutput` (plain data, no host tensors).
#[derive(Clone, Debug, Default)]
pub struct Record {
    pub value: Option<f64>,
    pub unit: String,
    pub estimator: String,
    pub scalars: BTreeMap<String, f64>,
    /// `(name, data, shape)`, f32 as the ABI wants.
    pub tensors: Vec<(String, Vec<f32>, Vec<usize>)>,
    pub params: Map<String, Value>,
    pub notes: Vec<String>,
    /// How `Result.plot` draws it (engine `report/plot.rs`).
    pub plot: Option<Value>,
}

impl Record {
    /// Add a scalar; a non-finite one is left out with a note (results never hold NaN).
    pub fn scalar(&mut self, name: &str, v: f64) {
        if v.is_finite() {
            self.scalars.insert(name.to_string(), v);
        } else {
            self.notes
                .push(format!("{name} is {v} (left out of the scalars)"));
        }
    }

    pub fn flag(&mut self, name: &str, b: bool) {
        self.scalar(name, if b { 1.0 } else { 0.0 });
    }

    /// Add a tensor from f64 data (non-finite entries become NaN, shown as `-`).
    pub fn tensor(&mut self, name: &str, data: &[f64], shape: &[usize]) {
        let d = crate::util::narrow(data);
        self.tensors.push((name.to_string(), d, shape.to_vec()));
    }

    /// Plot curve columns `y` against column `x` (labels carry units).
    pub fn plot_lines(&mut self, x: &str, y: &[&str], x_label: &str, y_label: &str) {
        self.plot = Some(serde_json::json!({
            "kind": "lines", "x": x, "y": y, "x_label": x_label, "y_label": y_label,
        }));
    }

    /// A 1-D column of a curve table.
    pub fn column(&mut self, name: &str, data: &[f64]) {
        self.tensor(name, data, &[data.len()]);
    }

    /// The record as the host's result.
    pub fn into_output(self) -> Result<MetricOutput> {
        let mut out = MetricOutput {
            value: self.value,
            unit: Unit::from(self.unit),
            estimator: self.estimator,
            scalars: self.scalars,
            params: self.params,
            notes: self.notes,
            plot: self.plot,
            ..Default::default()
        };
        for (name, data, shape) in &self.tensors {
            out = out.tensor(name, data, shape)?;
        }
        Ok(out)
    }

    /// Look up a scalar (tests).
    pub fn get(&self, name: &str) -> f64 {
        self.scalars.get(name).copied().unwrap_or(f64::NAN)
    }

    /// Look up a tensor's data (tests).
    pub fn tensor_data(&self, name: &str) -> Option<&[f32]> {
        self.tensors
            .iter()
            .find(|(n, _, _)| n == name)
            .map(|(_, d, _)| d.as_slice())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn map(v: Value) -> Map<String, Value> {
        v.as_object().cloned().unwrap()
    }

    #[test]
    fn arrays_from_json_and_tensors() {
        let p = map(
            json!({ "a": [1, 2.5], "m": [[1, 2], [3, 4], [5, 6]], "s": 3, "bad": [[1], [2, 3]], "str": "x" }),
        );
        let mut args = Args::new("m", &p);
        args.tensors.push(("t".into(), vec![0.25, 0.75], vec![2]));
        let a = args.vector("a").unwrap().unwrap();
        assert_eq!(
            (a.data, a.shape, a.from_tensor),
            (vec![1.0, 2.5], vec![2], false)
        );
        let (m, r, c) = args.matrix("m").unwrap().unwrap();
        assert_eq!((m.data.len(), r, c), (6, 3, 2));
        assert_eq!(args.vector("s").unwrap().unwrap().data, vec![3.0]);
        assert!(args.matrix("bad").is_err());
        assert!(args.vector("m").is_err());
        assert!(args.vector("str").is_err());
        let t = args.vector("t").unwrap().unwrap();
        assert!(t.from_tensor && t.sum_tol() > SUM_TOL_F64);
        assert!(args.vector("missing").unwrap().is_none());
        assert!(args.vector_req("missing", "a law").is_err());
        assert!(args.one_of(&["a", "s"]).is_err());
        assert_eq!(args.one_of(&["a", "zz"]).unwrap(), Some("a"));
    }

    #[test]
    fn record_never_holds_nan_scalars() {
        let mut r = Record::default();
        r.scalar("x", f64::NAN);
        r.scalar("y", 1.0);
        assert!(!r.scalars.contains_key("x") && r.notes.len() == 1);
        r.tensor("t", &[1.0, f64::INFINITY], &[2]);
        assert!(r.tensor_data("t").unwrap()[1].is_nan());
    }
}
