//! `granger`: linear-Gaussian Granger causality source→target with p lags (Geweke 1982):
//! value = Geweke F = ln(σ²_r/σ²_f), with statsmodels' ssr F-test, χ² and LR tests and the
//! Gaussian TE = F/2 (Barnett et al. 2009). `gaussian_te` reports the same with TE as
//! its value ([`granger_record`]).

use super::super::granger::granger;
use super::super::series::Reals;
use super::{describe, echo, required, stream, Record, StreamMetric};
use tokit_sdk::{Array, InfoUnit, MetricInput, Result};

pub struct Granger;

tokit_sdk::params! {
    /// Parameters of `granger` and `gaussian_te`.
    pub struct Params {
        /// real series (array of numbers, or array of arrays for trials; or a tensor input)
        source: Array = Array::NONE,
        /// real series, same layout as `source`
        target: Array = Array::NONE,
        /// number of lags of each series in the regressions
        p: usize = 1,
        /// `nats` or `bits` (Geweke F and TE; test statistics are unitless)
        unit: InfoUnit = InfoUnit::Nats,
        /// return the local Gaussian TE values as the tensor `local`
        local: bool = true,
    }
}

stream_metric!(
    Granger,
    "granger",
    "linear-Gaussian Granger causality source→target with p lags: value = Geweke F = ln(σ²_r/σ²_f); statsmodels' ssr F-test (F, p-value), χ² and LR tests; Gaussian TE = F/2"
);

impl StreamMetric for Granger {
    fn record(input: &MetricInput, p: Params) -> Result<Record> {
        granger_record(input, &p, false)
    }
}

/// The Granger regressions and tests; value = Geweke F, or the Gaussian TE if `te`.
pub(super) fn granger_record(input: &MetricInput, p: &Params, te: bool) -> Result<Record> {
    let metric = input.metric.as_str();
    let scale = p.unit.scale();
    let mut rec = Record::new(p.unit, echo(input, p));
    let real = |name: &str, a: &Array| stream(input, name, a, Reals::from_json, Reals::from_f32);
    let source = required(real("source", &p.source)?, metric, "source")?;
    let target = required(real("target", &p.target)?, metric, "target")?;
    rec.params.insert("source".into(), describe(&source.lens()));
    rec.params.insert("target".into(), describe(&target.lens()));
    let g = granger(&source, &target, p.p).map_err(super::err(metric))?;
    rec.value = if te { g.te() } else { g.geweke } * scale;
    rec.estimator =
        "OLS, linear-Gaussian (with constant, as statsmodels grangercausalitytests)".into();
    for (name, v) in [
        ("geweke_f", g.geweke * scale),
        ("te", g.te() * scale),
        ("te_se", g.te_se() * scale),
        ("f_stat", g.f_stat),
        ("p_value", g.f_p_value),
        ("df_num", g.df_num as f64),
        ("df_den", g.df_den as f64),
        ("chi2_stat", g.chi2_stat),
        ("chi2_p_value", g.chi2_p_value),
        ("lr_stat", g.lr_stat),
        ("lr_p_value", g.lr_p_value),
        ("rss_restricted", g.rss_restricted),
        ("rss_full", g.rss_full),
        ("n_obs", g.n_obs as f64),
    ] {
        rec.scalar(name, v);
    }
    if p.local {
        let (data, shape) = g.layout.to_time_axis(&g.local_te, scale);
        rec.tensors.push(("local".into(), data, shape));
    }
    rec.notes.push("p_value is the ssr F-test ((RSS_r − RSS_f)/p)/(RSS_f/(n − 2p − 1)); local values are local Gaussian TE (mean = te)".into());
    Ok(rec)
}
