//! The stream estimators and the exact toy oracles as tokit metrics (no model needed):
//! one file per metric, each with its parameters and its computation.
//!
//! Inputs: symbol streams as parameters (`source: [0, 1, 1, …]`, or an array of arrays for
//! several trials) or as f32 tensor inputs of the same name (`[T]` or `[trials, T]`);
//! real-valued series (Granger) likewise. Every information value is computed in nats and
//! converted on output (`unit`). Local values come back as the tensor `local`, aligned
//! with the input's time axis (`[T]`, or `[trials, T]` for several trials), NaN at times
//! that have no sample (before the largest lag); their mean over the non-NaN entries is
//! the value. Permutation tests return the surrogate values as the tensor `surrogates`;
//! with `surrogate_range` only a range of them, plus the range's mergeable statistics (one
//! shard of a test split over a cluster, `docs/corpus.md`, "Sharding a permutation test").
//!
//! [`StreamMetric::record`] does everything but the host tensors, so every metric is
//! testable without a host.

/// `impl Metric` for a [`StreamMetric`] of this module: its `NAME`, `DESCRIPTION`, the
/// `Params` of its file, and `compute` = [`output`]`::<Self>`.
macro_rules! stream_metric {
    ($metric:ident, $name:expr, $description:expr $(,)?) => {
        impl tokit_sdk::Metric for $metric {
            const NAME: &'static str = $name;
            const DESCRIPTION: &'static str = $description;
            type Params = Params;

            fn compute(
                input: &tokit_sdk::MetricInput,
                p: Params,
            ) -> tokit_sdk::Result<tokit_sdk::MetricOutput> {
                super::output::<Self>(input, p)
            }
        }
    };
}

mod active_info;
mod block_entropy;
mod directed_info;
mod entropy_rate;
mod exact_directed_info;
mod gaussian_te;
mod granger;
mod info_flow;
mod mutual_info;
mod stream_entropy;
#[cfg(test)]
mod tests;
mod transfer_entropy;

pub use active_info::ActiveInfo;
pub use block_entropy::BlockEntropy;
pub use directed_info::DirectedInfo;
pub use entropy_rate::EntropyRate;
pub use exact_directed_info::ExactDirectedInfo;
pub use gaussian_te::GaussianTe;
pub use granger::Granger;
pub use info_flow::InfoFlow;
pub use mutual_info::MutualInfo;
pub use stream_entropy::StreamEntropy;
pub use transfer_entropy::TransferEntropy;

use super::estimate::Bias;
use super::measure::{Measured, Options};
use super::series::Symbols;
use super::significance::{Permutations, Significance, Surrogate};
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;
use tokit_sdk::{Array, Error, InfoUnit, Metric, MetricInput, MetricOutput, Params, Result, Unit};

/// A metric result without host tensors.
#[derive(Debug, Default)]
pub struct Record {
    pub value: f64,
    pub unit: String,
    pub estimator: String,
    pub scalars: BTreeMap<String, f64>,
    pub tensors: Vec<(String, Vec<f32>, Vec<usize>)>,
    pub params: Map<String, Value>,
    pub notes: Vec<String>,
}

impl Record {
    /// An empty record in `unit` that records `params`.
    fn new(unit: InfoUnit, params: Map<String, Value>) -> Record {
        Record {
            unit: unit.name().into(),
            params,
            ..Default::default()
        }
    }

    fn scalar(&mut self, name: &str, v: f64) {
        self.scalars.insert(name.into(), v);
    }

    /// The named tensor (tests).
    pub fn tensor(&self, name: &str) -> Option<&(String, Vec<f32>, Vec<usize>)> {
        self.tensors.iter().find(|t| t.0 == name)
    }

    /// The record as the host's result.
    fn output(self) -> Result<MetricOutput> {
        let mut out = MetricOutput {
            value: Some(self.value),
            unit: Unit::from(self.unit),
            estimator: self.estimator,
            scalars: self.scalars,
            params: self.params,
            notes: self.notes,
            ..Default::default()
        };
        for (name, data, shape) in &self.tensors {
            out = out.tensor(name, data, shape)?;
        }
        Ok(out)
    }
}

/// A stream metric computed without host tensors; its [`Metric::compute`] is
/// [`output`]`::<Self>`.
pub trait StreamMetric: Metric {
    fn record(input: &MetricInput, p: Self::Params) -> Result<Record>;
}

/// [`StreamMetric::record`] as the host's result.
pub fn output<M: StreamMetric>(input: &MetricInput, p: M::Params) -> Result<MetricOutput> {
    M::record(input, p)?.output()
}

tokit_sdk::params! {
    /// `unit`, `bias_correction` and `local`: every plug-in estimator on symbol streams.
    pub struct Estimation {
        /// `nats` or `bits`
        unit: InfoUnit = InfoUnit::Nats,
        /// `none` (plug-in) or `miller_madow`: each entropy term + (occupied bins − 1)/(2N); local values shift alike
        bias_correction: String = "none".into(),
        /// return the local (per-time-step) values as the tensor `local`
        local: bool = true,
    }
}

tokit_sdk::params! {
    /// The permutation test of the estimators that have one.
    pub struct Test {
        /// number of permutation surrogates for the significance test (0: no test)
        permutations: usize = 200,
        /// `shuffle` (random permutation of samples), `circular` (random rotation within each trial) or `block` (blocks in random order within each trial)
        surrogate: String = "shuffle".into(),
        /// block length in samples for `surrogate: "block"` (0: a tenth of the trial)
        block_size: usize = 0,
        /// seed of the surrogates (results are reproducible and thread-count independent)
        seed: u64 = 0,
        /// `[first, end]`: compute only surrogates first..end of the `permutations` (one shard of a test split over a cluster, docs/corpus.md); the result adds the range's mergeable statistics `surrogates_n`, `surrogates_exceeding`, `surrogates_sum` and `surrogates_m2`
        surrogate_range: Array = Array::NONE,
    }
}

/// Doc of every symbol-stream parameter.
const STREAM_DOC: &str = "array of non-negative integer symbols, or an array of arrays (trials, pooled); or a tensor input of that name ([T] or [trials, T])";

fn err(metric: &str) -> impl Fn(String) -> Error + '_ {
    move |e| Error::msg(format!("{metric}: {e}"))
}

/// A plug-in estimate on symbol streams: the record echoes the parameters `p`, the
/// options come from `est` and `test` (no test: none), `measure` fills in the estimate,
/// the record gets its value, locals and test.
fn plug_in<P: Params>(
    input: &MetricInput,
    p: &P,
    est: &Estimation,
    test: Option<&Test>,
    measure: impl FnOnce(&Options, &mut Record) -> Result<Measured>,
) -> Result<Record> {
    let e = err(&input.metric);
    let mut opts = Options {
        bias: Bias::parse(&est.bias_correction).map_err(&e)?,
        local: est.local,
        ..Options::default()
    };
    let mut range = None;
    if let Some(t) = test {
        range = surrogate_range(input, t)?;
        opts.permutations = Permutations {
            kind: Surrogate::parse(&t.surrogate, t.block_size).map_err(&e)?,
            count: range.as_ref().map_or(t.permutations, |r| r.len()),
            first: range.as_ref().map_or(0, |r| r.start),
            seed: t.seed,
        };
    }
    let mut rec = Record::new(est.unit, echo(input, p));
    let m = measure(&opts, &mut rec)?;
    let scale = est.unit.scale();
    stream_record(&mut rec, &m, scale, opts.bias);
    if range.is_some() {
        range_record(&mut rec, m.significance.as_ref(), scale);
    }
    Ok(rec)
}

/// The `surrogate_range` of `t` (a parameter or a tensor input): `first..end` within the
/// `permutations`, or `None` for all of them.
fn surrogate_range(input: &MetricInput, t: &Test) -> Result<Option<std::ops::Range<usize>>> {
    let name = "surrogate_range";
    let bad = |found: String| {
        Error::msg(format!(
            "{}: parameter `{name}`: expected [first, end] with first ≤ end ≤ permutations ({}), found {found}",
            input.metric, t.permutations
        ))
    };
    let pair = |v: Vec<f64>| -> Result<std::ops::Range<usize>> {
        let whole = |x: f64| x >= 0.0 && x.fract() == 0.0 && x <= t.permutations as f64;
        match v[..] {
            [a, b] if whole(a) && whole(b) && a <= b => Ok(a as usize..b as usize),
            _ => Err(bad(format!("{v:?}"))),
        }
    };
    let from_json = |_: &str, v: &Value| -> std::result::Result<Value, String> { Ok(v.clone()) };
    let from_f32 =
        |_: &str, d: &[f32], _: &[usize]| -> std::result::Result<Value, String> { Ok(json!(d)) };
    let Some(v) = stream(input, name, &t.surrogate_range, from_json, from_f32)? else {
        return Ok(None);
    };
    let nums: Option<Vec<f64>> = v
        .as_array()
        .and_then(|a| a.iter().map(Value::as_f64).collect());
    nums.ok_or_else(|| bad(v.to_string()))
        .and_then(pair)
        .map(Some)
}

/// A sharded test's mergeable statistics of its surrogate range, in the result's unit:
/// the count, the count at least as large as the observed value, Σx and Σ(x − x̄)² (the
/// merge combines these as Chan, Golub & LeVeque 1979 do; an empty range gives zeros).
fn range_record(rec: &mut Record, s: Option<&Significance>, scale: f64) {
    let (n, exceeding, sum, m2) = match s {
        Some(s) if !s.values.is_empty() => {
            let x: Vec<f64> = s.values.iter().map(|v| v * scale).collect();
            let sum: f64 = x.iter().sum();
            let mean = sum / x.len() as f64;
            let m2: f64 = x.iter().map(|v| (v - mean) * (v - mean)).sum();
            (x.len(), s.exceeding, sum, m2)
        }
        _ => (0, 0, 0.0, 0.0),
    };
    rec.scalar("surrogates_n", n as f64);
    rec.scalar("surrogates_exceeding", exceeding as f64);
    rec.scalar("surrogates_sum", sum);
    rec.scalar("surrogates_m2", m2);
}

/// What a stream result records: every declared parameter as given or defaulted, but no
/// arrays (each metric summarises its streams with [`describe`]).
fn echo<P: Params>(input: &MetricInput, p: &P) -> Map<String, Value> {
    let mut effective = Map::new();
    p.effective(&mut effective);
    P::specs()
        .into_iter()
        .filter(|s| s.kind != "array")
        .map(|s| {
            let given = input.params.get(&s.name).filter(|v| !v.is_null()).cloned();
            let v = given
                .or_else(|| effective.remove(&s.name))
                .unwrap_or(Value::Null);
            (s.name, v)
        })
        .collect()
}

type FromJson<T> = fn(&str, &Value) -> std::result::Result<T, String>;
type FromF32<T> = fn(&str, &[f32], &[usize]) -> std::result::Result<T, String>;

/// The stream `name`: the parameter's value or a tensor input (not both).
fn stream<T>(
    input: &MetricInput,
    name: &str,
    param: &Array,
    from_json: FromJson<T>,
    from_f32: FromF32<T>,
) -> Result<Option<T>> {
    let e = err(&input.metric);
    let tensor = input
        .tensors
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, t)| t);
    match (param.get(), tensor) {
        (Some(_), Some(_)) => Err(e(format!(
            "`{name}` given both as a parameter and as a tensor input"
        ))),
        (Some(v), None) => from_json(name, v).map(Some).map_err(e),
        (None, Some(t)) => t
            .with_data(|d, s| from_f32(name, d, s))?
            .map(Some)
            .map_err(e),
        (None, None) => Ok(None),
    }
}

/// An optional symbol stream, summarised into `rec.params` when given.
fn symbols(
    input: &MetricInput,
    rec: &mut Record,
    name: &str,
    param: &Array,
) -> Result<Option<Symbols>> {
    let s = stream(input, name, param, Symbols::from_json, Symbols::from_f32)?;
    if let Some(s) = &s {
        rec.params.insert(name.into(), describe(&s.lens()));
    }
    Ok(s)
}

fn required<T>(v: Option<T>, metric: &str, name: &str) -> Result<T> {
    v.ok_or_else(|| {
        Error::msg(format!(
            "{metric}: needs `{name}` (a parameter or a tensor input)"
        ))
    })
}

/// A required symbol stream, summarised into `rec.params`.
fn need_symbols(
    input: &MetricInput,
    rec: &mut Record,
    name: &str,
    param: &Array,
) -> Result<Symbols> {
    required(symbols(input, rec, name, param)?, &input.metric, name)
}

/// The streams of a pairwise estimator (transfer entropy, mutual and directed
/// information): `source` and `target`, required, and `condition` when the metric has one
/// and it is given; each summarised into `rec.params`.
fn source_target(
    input: &MetricInput,
    rec: &mut Record,
    source: &Array,
    target: &Array,
    condition: Option<&Array>,
) -> Result<(Symbols, Symbols, Option<Symbols>)> {
    let s = need_symbols(input, rec, "source", source)?;
    let t = need_symbols(input, rec, "target", target)?;
    let c = match condition {
        Some(c) => symbols(input, rec, "condition", c)?,
        None => None,
    };
    Ok((s, t, c))
}

fn describe(lens: &[usize]) -> Value {
    if lens.len() == 1 {
        json!(format!("{} values", lens[0]))
    } else {
        json!(format!(
            "{} trials, {} values",
            lens.len(),
            lens.iter().sum::<usize>()
        ))
    }
}

fn stream_record(rec: &mut Record, m: &Measured, scale: f64, bias: Bias) {
    let est = &m.estimate;
    rec.value = est.value * scale;
    rec.estimator = bias.name().into();
    rec.scalar("samples", est.samples as f64);
    rec.scalar("states", est.states as f64);
    rec.scalar("plugin", est.plugin * scale);
    rec.scalar("t0", m.layout.t0 as f64);
    if bias == Bias::MillerMadow {
        rec.scalar("miller_madow_correction", est.correction * scale);
    }
    if !est.local.is_empty() {
        rec.scalar("se", est.se() * scale);
        let (data, shape) = m.layout.to_time_axis(&est.local, scale);
        rec.tensors.push(("local".into(), data, shape));
        rec.notes
            .push("se treats samples as independent (optimistic under serial dependence)".into());
    }
    if let Some(s) = &m.significance {
        rec.scalar("p_value", s.p_value);
        rec.scalar("surrogate_mean", s.surrogate_mean * scale);
        rec.scalar("surrogate_std", s.surrogate_std * scale);
        rec.scalar("effective", s.effective * scale);
        rec.scalar("permutations", s.values.len() as f64);
        rec.tensors.push((
            "surrogates".into(),
            s.values.iter().map(|v| (v * scale) as f32).collect(),
            vec![s.values.len()],
        ));
    }
}
