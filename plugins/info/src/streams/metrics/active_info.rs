//! `active_info`: active information storage I(X_{t−k}^{t−1}; X_t) (pyinform's
//! `active_info`), with a permutation test.

use super::super::ais::active_info;
use super::{need_symbols, plug_in, Estimation, Record, StreamMetric, Test, STREAM_DOC};
use tokit_sdk::{Array, MetricInput, Result};

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

stream_metric!(
    ActiveInfo,
    "active_info",
    "active information storage I(X_{t−k}^{t−1}; X_t) (pyinform's active_info), with a permutation test"
);

impl StreamMetric for ActiveInfo {
    fn record(input: &MetricInput, p: Params) -> Result<Record> {
        plug_in(input, &p, &p.est, Some(&p.test), |opts, rec| {
            let s = need_symbols(input, rec, "series", &p.series)?;
            active_info(&s, p.k, opts).map_err(super::err(&input.metric))
        })
    }
}
