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
//! small alphabets, sparse otherwise). A stream is stored in the narrowest of u8, u16
//! and u32 that holds its largest symbol; tensor inputs are checked, narrowed and
//! measured (their alphabet) in one pass.

use serde_json::Value;

/// Trials of a symbol stream, stored in the narrowest unsigned width that holds the
/// largest symbol (u8, u16 or u32), with its alphabet size (largest symbol + 1) known
/// from construction. The dense counters read the narrow storage directly; the sparse
/// path reads it widened ([`Symbols::trial_u32`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Symbols {
    trials: Trials,
    alphabet: u64,
}

/// The storage of [`Symbols`]: always the narrowest width, so equal streams compare equal.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Trials {
    U8(Vec<Vec<u8>>),
    U16(Vec<Vec<u16>>),
    U32(Vec<Vec<u32>>),
}

/// One trial's symbols, borrowed in their storage width.
#[derive(Clone, Copy, Debug)]
pub enum Trial<'a> {
    U8(&'a [u8]),
    U16(&'a [u16]),
    U32(&'a [u32]),
}

impl Trial<'_> {
    pub fn len(&self) -> usize {
        match self {
            Trial::U8(s) => s.len(),
            Trial::U16(s) => s.len(),
            Trial::U32(s) => s.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The symbol at `i`.
    pub fn get(&self, i: usize) -> u32 {
        match self {
            Trial::U8(s) => s[i] as u32,
            Trial::U16(s) => s[i] as u32,
            Trial::U32(s) => s[i],
        }
    }
}

/// Narrowest storage of `trials` whose largest symbol is `max`.
fn narrow(trials: Vec<Vec<u32>>, max: u32) -> Trials {
    if max <= u8::MAX as u32 {
        Trials::U8(
            trials
                .into_iter()
                .map(|t| t.into_iter().map(|v| v as u8).collect())
                .collect(),
        )
    } else if max <= u16::MAX as u32 {
        Trials::U16(
            trials
                .into_iter()
                .map(|t| t.into_iter().map(|v| v as u16).collect())
                .collect(),
        )
    } else {
        Trials::U32(trials)
    }
}

/// Elements per thread below which converting a tensor on another thread costs more than
/// it saves.
const CONVERT_PER_THREAD: usize = 1 << 18;

/// `2^23`: adding it to a float in `[0, 2^23)` rounds to an integer and puts the integer in
/// the mantissa bits.
const M: f32 = 8_388_608.0;

/// Symbols below 256 from `src` into `dst` in one branch-free pass: `v = bits(x + 2^23) −
/// bits(2^23)`, whether every `x` equals its `v`, and the largest `v`. When that largest
/// `v` is below 256 and every `x` equals its `v`, every value is that integer and the
/// narrowed values are exact; any `x` outside `[0, 2^23)` (or NaN, ±∞) gives a `v` of
/// 2^23 or more (wrapping for negatives) or a mismatch, and the caller falls back to the
/// general conversion.
fn convert_small(src: &[f32], dst: &mut [u8]) -> (bool, u32) {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU has AVX2 (checked just above).
        return unsafe { convert_small_avx2(src, dst) };
    }
    convert_small_body(src, dst)
}

/// [`convert_small`] compiled for AVX2 (eight values per step).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn convert_small_avx2(src: &[f32], dst: &mut [u8]) -> (bool, u32) {
    convert_small_body(src, dst)
}

#[inline(always)]
fn convert_small_body(src: &[f32], dst: &mut [u8]) -> (bool, u32) {
    let mut ok = true;
    let mut max = 0u32;
    for (o, &x) in dst.iter_mut().zip(src) {
        let v = (x + M).to_bits().wrapping_sub(M.to_bits());
        // `as i32`: exact for the `v` below 256 that matter, and a single vector convert.
        ok &= (v as i32) as f32 == x;
        max = max.max(v);
        *o = v as u8;
    }
    (ok, max)
}

impl Symbols {
    /// From trials of symbols (stored narrow).
    pub fn new(trials: Vec<Vec<u32>>) -> Symbols {
        let max = trials.iter().flatten().copied().max();
        let alphabet = max.map_or(0, |m| m as u64 + 1);
        Symbols {
            trials: narrow(trials, max.unwrap_or(0)),
            alphabet,
        }
    }

    /// One trial.
    pub fn one(s: Vec<u32>) -> Symbols {
        Symbols::new(vec![s])
    }

    /// Number of trials.
    pub fn n_trials(&self) -> usize {
        match &self.trials {
            Trials::U8(t) => t.len(),
            Trials::U16(t) => t.len(),
            Trials::U32(t) => t.len(),
        }
    }

    pub fn lens(&self) -> Vec<usize> {
        (0..self.n_trials()).map(|r| self.trial(r).len()).collect()
    }

    /// Alphabet size: largest symbol + 1 (0 when there is no symbol).
    pub fn alphabet(&self) -> u64 {
        self.alphabet
    }

    /// Trial `r` in its storage width.
    pub fn trial(&self, r: usize) -> Trial<'_> {
        match &self.trials {
            Trials::U8(t) => Trial::U8(&t[r]),
            Trials::U16(t) => Trial::U16(&t[r]),
            Trials::U32(t) => Trial::U32(&t[r]),
        }
    }

    /// Trial `r` as u32 symbols (borrowed when stored as u32).
    pub fn trial_u32(&self, r: usize) -> std::borrow::Cow<'_, [u32]> {
        match self.trial(r) {
            Trial::U8(s) => s.iter().map(|&v| v as u32).collect(),
            Trial::U16(s) => s.iter().map(|&v| v as u32).collect(),
            Trial::U32(s) => s.into(),
        }
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
        Ok(Symbols::new(out))
    }

    /// From tensor data (`[T]` one trial, `[n, T]` trials); values must be integral.
    ///
    /// Symbols below 256 (the common case: discretised states, small alphabets) take one
    /// pass that checks, converts to u8 and finds the largest symbol together, split over
    /// threads for long streams; anything else takes the general conversion.
    pub fn from_f32(name: &str, data: &[f32], shape: &[usize]) -> Result<Symbols, String> {
        let (n, t) = tensor_layout(name, shape)?;
        let data = &data[..n * t];
        let mut flat = vec![0u8; data.len()];
        let cores = std::thread::available_parallelism().map_or(1, |c| c.get());
        let threads = cores.min(8).min(1 + data.len() / CONVERT_PER_THREAD);
        let chunk = data.len().div_ceil(threads).max(1);
        let (ok, max) = if threads <= 1 {
            convert_small(data, &mut flat)
        } else {
            // Scoped threads: a plugin starts no thread that outlives a call
            // (docs/architecture.md).
            std::thread::scope(|s| {
                let mut parts = data.chunks(chunk).zip(flat.chunks_mut(chunk));
                let (src0, dst0) = parts.next().expect("a non-empty input has a first part");
                let others: Vec<_> = parts
                    .map(|(src, dst)| s.spawn(move || convert_small(src, dst)))
                    .collect();
                others
                    .into_iter()
                    .map(|h| h.join().unwrap_or_else(|e| std::panic::resume_unwind(e)))
                    .fold(convert_small(src0, dst0), |(a, m), (b, n)| {
                        (a & b, m.max(n))
                    })
            })
        };
        if ok && max <= u8::MAX as u32 {
            let trials = if n == 1 {
                vec![flat]
            } else {
                flat.chunks(t).map(<[u8]>::to_vec).collect()
            };
            return Ok(Symbols {
                trials: Trials::U8(trials),
                alphabet: max as u64 + 1,
            });
        }
        drop(flat);
        Self::from_f32_general(name, data, n, t)
    }

    /// [`Symbols::from_f32`] for any symbol below 2^32, or the error naming the first bad
    /// element.
    fn from_f32_general(name: &str, data: &[f32], n: usize, t: usize) -> Result<Symbols, String> {
        let mut out = Vec::with_capacity(n);
        for r in 0..n {
            let row = &data[r * t..(r + 1) * t];
            // Symbols below 2^23: adding 2^23 rounds to an integer and puts it in the
            // mantissa bits, one branch-free vector pass for check and conversion.
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
        Ok(Symbols::new(out))
    }
}

/// Trials of a real-valued series.
#[derive(Clone, Debug, PartialEq)]
pub struct Reals(pub Vec<Vec<f64>>);

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
            Symbols::new(vec![vec![0, 1, 2]])
        );
        assert_eq!(
            Symbols::from_json("s", &json!([[0, 1], [2]])).unwrap(),
            Symbols::new(vec![vec![0, 1], vec![2]])
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
            Symbols::new(vec![vec![0, 3], vec![1, 2]])
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

    /// The one-pass u8 conversion (split over threads for long tensors) against the
    /// general one, with wider symbols and bad values in a late chunk.
    #[test]
    fn long_tensors_convert_like_short_ones() {
        let n = 3 * CONVERT_PER_THREAD + 77;
        let mut state = 12345u64;
        let mut next = || {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (state >> 33) as u32
        };
        let small: Vec<u32> = (0..n).map(|_| next() % 7).collect();
        let data: Vec<f32> = small.iter().map(|&v| v as f32).collect();
        let s = Symbols::from_f32("s", &data, &[n]).unwrap();
        assert!(matches!(s.trial(0), Trial::U8(_)));
        assert_eq!(s, Symbols::one(small.clone()));
        assert_eq!(s.alphabet(), 7);
        // Trials: [rows, T].
        let rows = Symbols::from_f32("s", &data[..n - 77], &[3, CONVERT_PER_THREAD]).unwrap();
        let want: Vec<Vec<u32>> = small[..n - 77]
            .chunks(CONVERT_PER_THREAD)
            .map(<[u32]>::to_vec)
            .collect();
        assert_eq!(rows, Symbols::new(want));
        // A symbol past u8 in the last chunk: stored as u16, same values.
        let mut wide = data.clone();
        wide[n - 3] = 300.0;
        let s = Symbols::from_f32("s", &wide, &[n]).unwrap();
        assert!(matches!(s.trial(0), Trial::U16(_)));
        assert_eq!(s.alphabet(), 301);
        assert_eq!(s.trial(0).get(n - 3), 300);
        assert_eq!(s.trial(0).get(5), small[5]);
        // A bad value late in the tensor is named by its index.
        for x in [
            2.5,
            255.5,
            -0.5,
            -1.0,
            -300.0,
            f32::NAN,
            f32::NEG_INFINITY,
            1e10,
        ] {
            let mut bad = data.clone();
            bad[n - 10] = x;
            let e = Symbols::from_f32("s", &bad, &[n]).unwrap_err();
            assert!(e.contains(&format!("[0, {}]", n - 10)), "{x}: {e}");
        }
        // −0 is the symbol 0, on the fast path as on the general one.
        let mut zero = data;
        zero[1] = -0.0;
        assert_eq!(
            Symbols::from_f32("s", &zero, &[n]).unwrap().trial(0).get(1),
            0
        );
    }

    #[test]
    fn tensor_symbols_are_exact_integers_below_2_32() {
        let ok = [0.0f32, -0.0, 1.0, 16_777_216.0, 4_294_967_040.0];
        let s = Symbols::from_f32("s", &ok, &[5]).unwrap();
        assert_eq!(*s.trial_u32(0), [0, 0, 1, 16_777_216, 4_294_967_040]);
        let small = [0.0f32, 3.0, 8_388_607.0, 5.0];
        let s = Symbols::from_f32("s", &small, &[2, 2]).unwrap();
        assert_eq!(s, Symbols::new(vec![vec![0, 3], vec![8_388_607, 5]]));
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
