//! `active_info`: active information storage I(X_{t−k}^{t−1}; X_t) (pyinform's
//! `active_info`), with a permutation test.

use super::super::ais::active_info;
use super::{
    echo, need_symbols, output, plug_in, Estimation, Record, StreamMetric, Test, STREAM_DOC,
};
use tokit_sdk::{Array, Metric, MetricInput, MetricOutput, Result};

pub struct ActiveInfo;

tokit_sdk::params! {
    pub struct Params {
        #[doc = STREAM_DOC]
        series: Array = Array::NONE,
        /// history length
        k: usize = 1,
        #[flatten]
        est: Estimation,
        #[flatten]
        test: Test,
    }
}

impl Metric for ActiveInfo {
    const NAME: &'static str = "active_info";
    const DESCRIPTION: &'static str = "active information storage I(X_{t−k}^{t−1}; X_t) (pyinform's active_info), with a permutation test";
    type Params = Params;

    fn compute(input: &MetricInput, p: Params) -> Result<MetricOutput> {
        output::<Self>(input, p)
    }
}

impl StreamMetric for ActiveInfo {
    fn record(input: &MetricInput, p: Params) -> Result<Record> {
        plug_in(
            input,
            echo(input, &p),
            &p.est,
            Some(&p.test),
            |opts, rec| {
                let s = need_symbols(input, rec, "series", &p.series)?;
                active_info(&s, p.k, opts).map_err(super::err(&input.metric))
            },
        )
    }
}
