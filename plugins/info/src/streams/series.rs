//! Symbol streams and real-valued series as the estimators see them: one or more *trials*
//! (independent sequences, pyinform's "initial conditions"), each a `Vec`.
//!
//! A parameter holding a flat array (`[0, 1, 1, 0]`) is one trial; an array of arrays
//! (`[[0, 1], [1, 1]]`) is several trials, which are pooled: every estimator counts the
//! samples of all trials together, but no history ever reaches across a trial boundary.
//! Trials may have different lengths. Streams that are used together (source, target,
//! condition) must have the same trial layout.
//!
//! Symbols are non-negative integers below 2³² (token ids, discretised states); the
//! alphabet need not be contiguous and its size does not matter (counting is dense for
//! small alphabets, sparse otherwise).

use serde_json::Value;

/// Trials of a symbol stream.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Symbols(pub Vec<Vec<u32>>);

/// Trials of a real-valued series.
#[derive(Clone, Debug, PartialEq)]
pub struct Reals(pub Vec<Vec<f64>>);

impl Symbols {
    /// One trial.
    pub fn one(s: Vec<u32>) -> Symbols {
        Symbols(vec![s])
    }

    pub fn lens(&self) -> Vec<usize> {
        self.0.iter().map(Vec::len).collect()
    }

    /// Parse a JSON array (one trial) or an array of arrays (several trials).
    pub fn from_json(name: &str, v: &Value) -> Result<Symbols, String> {
        let rows = rows(name, v)?;
        let mut out = Vec::with_capacity(rows.len());
        for (r, row) in rows.iter().enumerate() {
            let mut s = Vec::with_capacity(row.len());
            for (i, x) in row.iter().enumerate() {
                // Integral floats (1.0) are accepted: scripts often build streams by arithmetic.
                let u = x.as_u64().or_else(|| {
                    x.as_f64()
                        .filter(|f| *f >= 0.0 && f.fract() == 0.0 && *f <= u32::MAX as f64)
                        .map(|f| f as u64)
                });
                match u {
                    Some(u) if u <= u32::MAX as u64 => s.push(u as u32),
                    _ => return Err(format!("`{name}`: element {} must be a non-negative integer symbol below 2^32, found {x}", at(&rows, r, i))),
                }
            }
            out.push(s);
        }
        Ok(Symbols(out))
    }

    /// From tensor data (`[T]` one trial, `[n, T]` trials); values must be integral.
    pub fn from_f32(name: &str, data: &[f32], shape: &[usize]) -> Result<Symbols, String> {
        let (n, t) = tensor_layout(name, shape)?;
        let mut out = Vec::with_capacity(n);
        for r in 0..n {
            let row = &data[r * t..(r + 1) * t];
            // Symbols below 2^23: adding 2^23 rounds to an integer and puts it in the
            // mantissa bits, one branch-free vector pass for check and conversion.
            const M: f32 = 8_388_608.0;
            let mut small = true;
            let mut s: Vec<u32> = row
                .iter()
                .map(|&x| {
                    let y = x + M;
                    small &= (0.0..M).contains(&x) & (y - M == x);
                    y.to_bits().wrapping_sub(M.to_bits())
                })
                .collect();
            let mut ok = small;
            if !small {
                // `x as u32` saturates (NaN to 0), so the round trip holds exactly for the
                // integers in [0, 2^32).
                s = row.iter().map(|&x| x as u32).collect();
                ok = row.iter().zip(&s).fold(true, |ok, (&x, &u)| {
                    ok & (u as f32 == x) & (x < 4_294_967_296.0)
                });
            }
            if !ok {
                let i = row
                    .iter()
                    .position(|&x| !(x >= 0.0 && x.fract() == 0.0 && (x as f64) <= u32::MAX as f64))
                    .unwrap_or(0);
                let x = row[i];
                return Err(format!("`{name}`: tensor element [{r}, {i}] must be a non-negative integer symbol, found {x}"));
            }
            out.push(s);
        }
        Ok(Symbols(out))
    }
}

impl Reals {
    pub fn lens(&self) -> Vec<usize> {
        self.0.iter().map(Vec::len).collect()
    }

    pub fn from_json(name: &str, v: &Value) -> Result<Reals, String> {
        let rows = rows(name, v)?;
        let mut out = Vec::with_capacity(rows.len());
        for (r, row) in rows.iter().enumerate() {
            let mut s = Vec::with_capacity(row.len());
            for (i, x) in row.iter().enumerate() {
                match x.as_f64() {
                    Some(f) if f.is_finite() => s.push(f),
                    _ => {
                        return Err(format!(
                            "`{name}`: element {} must be a finite number, found {x}",
                            at(&rows, r, i)
                        ))
                    }
                }
            }
            out.push(s);
        }
        Ok(Reals(out))
    }

    pub fn from_f32(name: &str, data: &[f32], shape: &[usize]) -> Result<Reals, String> {
        let (n, t) = tensor_layout(name, shape)?;
        if let Some(i) = data.iter().position(|x| !x.is_finite()) {
            return Err(format!(
                "`{name}`: tensor element {i} is not finite ({})",
                data[i]
            ));
        }
        Ok(Reals(
            (0..n)
                .map(|r| data[r * t..(r + 1) * t].iter().map(|&x| x as f64).collect())
                .collect(),
        ))
    }
}

/// The trials of a JSON value: a flat array is one trial.
fn rows<'a>(name: &str, v: &'a Value) -> Result<Vec<&'a [Value]>, String> {
    let a = v.as_array().ok_or_else(|| {
        format!(
            "`{name}`: expected an array (one trial) or an array of arrays (trials), found {}",
            kind(v)
        )
    })?;
    if a.is_empty() {
        return Err(format!("`{name}`: empty array"));
    }
    if a.iter().all(Value::is_array) {
        let rows: Vec<&[Value]> = a
            .iter()
            .map(|r| r.as_array().map(Vec::as_slice).unwrap_or_default())
            .collect();
        if let Some(i) = rows.iter().position(|r| r.iter().any(Value::is_array)) {
            return Err(format!(
                "`{name}`: trial {i} is nested deeper than an array of arrays"
            ));
        }
        Ok(rows)
    } else if a.iter().any(Value::is_array) {
        Err(format!(
            "`{name}`: mixes numbers and arrays; give one array of symbols or an array of trials"
        ))
    } else {
        Ok(vec![a.as_slice()])
    }
}

fn at(rows: &[&[Value]], r: usize, i: usize) -> String {
    if rows.len() == 1 {
        format!("{i}")
    } else {
        format!("[{r}][{i}]")
    }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "a map",
    }
}

fn tensor_layout(name: &str, shape: &[usize]) -> Result<(usize, usize), String> {
    match shape {
        [t] if *t > 0 => Ok((1, *t)),
        [n, t] if *n > 0 && *t > 0 => Ok((*n, *t)),
        _ => Err(format!(
            "`{name}`: tensor must be [T] (one trial) or [trials, T], got {shape:?}"
        )),
    }
}

/// Check that streams used together have the same trial layout.
pub fn same_layout(names: &[&str], lens: &[Vec<usize>]) -> Result<(), String> {
    for (name, l) in names.iter().zip(lens).skip(1) {
        if *l != lens[0] {
            let show = |v: &Vec<usize>| {
                if v.len() == 1 {
                    format!("length {}", v[0])
                } else {
                    format!("{} trials of lengths {v:?}", v.len())
                }
            };
            return Err(format!(
                "`{}` ({}) and `{name}` ({}) must have the same trial layout",
                names[0],
                show(&lens[0]),
                show(l)
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn parses_trials_and_rejects_bad_symbols() {
        assert_eq!(
            Symbols::from_json("s", &json!([0, 1, 2])).unwrap(),
            Symbols(vec![vec![0, 1, 2]])
        );
        assert_eq!(
            Symbols::from_json("s", &json!([[0, 1], [2]])).unwrap(),
            Symbols(vec![vec![0, 1], vec![2]])
        );
        for bad in [
            json!([0, -1]),
            json!([0.5]),
            json!([[0], 1]),
            json!([]),
            json!("x"),
            json!([[[0]]]),
        ] {
            assert!(Symbols::from_json("s", &bad).is_err(), "{bad}");
        }
        let e = Symbols::from_json("source", &json!([0, 1, -2])).unwrap_err();
        assert!(e.contains("`source`") && e.contains("element 2"), "{e}");
        assert_eq!(
            Symbols::from_f32("s", &[0.0, 3.0, 1.0, 2.0], &[2, 2]).unwrap(),
            Symbols(vec![vec![0, 3], vec![1, 2]])
        );
        assert!(Symbols::from_f32("s", &[0.5], &[1]).is_err());
        assert!(Symbols::from_f32("s", &[-1.0], &[1]).is_err());
        assert_eq!(
            Reals::from_json("r", &json!([1, 2.5])).unwrap(),
            Reals(vec![vec![1.0, 2.5]])
        );
        assert!(same_layout(&["a", "b"], &[vec![3], vec![3]]).is_ok());
        assert!(same_layout(&["a", "b"], &[vec![3], vec![4]])
            .unwrap_err()
            .contains("same trial layout"));
    }

    #[test]
    fn tensor_symbols_are_exact_integers_below_2_32() {
        let ok = [0.0f32, -0.0, 1.0, 16_777_216.0, 4_294_967_040.0];
        let s = Symbols::from_f32("s", &ok, &[5]).unwrap();
        assert_eq!(s.0[0], vec![0, 0, 1, 16_777_216, 4_294_967_040]);
        let small = [0.0f32, 3.0, 8_388_607.0, 5.0];
        let s = Symbols::from_f32("s", &small, &[2, 2]).unwrap();
        assert_eq!(s.0, vec![vec![0, 3], vec![8_388_607, 5]]);
        for bad in [
            f32::NAN,
            f32::INFINITY,
            -1.0,
            0.5,
            2.5,
            8_388_607.5,
            4_294_967_296.0,
            1e10,
        ] {
            let e = Symbols::from_f32("s", &[1.0, bad], &[2]).unwrap_err();
            assert!(e.contains("[0, 1]"), "{bad}: {e}");
        }
    }
}
