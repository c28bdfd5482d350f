//! `entropy_rate`: the entropy rate estimate h_k = H(X_t | k past symbols)
//! = H(X^{k+1}) − H(X^k) on matched windows (pyinform's `entropy_rate`).

use super::super::entropy::entropy_rate_and_difference;
use super::{need_symbols, plug_in, Estimation, Record, StreamMetric, STREAM_DOC};
use tokit_sdk::{Array, MetricInput, Result};

pub struct EntropyRate;

tokit_sdk::params! {
    pub struct Params {
        #[doc = STREAM_DOC]
        series: Array = Array::NONE,
        /// history length
        k: usize = 1,
        #[flatten]
        est: Estimation,
    }
}

stream_metric!(
    EntropyRate,
    "entropy_rate",
    "entropy rate estimate h_k = H(X_t | k past symbols) = H(X^{k+1}) − H(X^k) on matched windows (pyinform's entropy_rate); scalar block_entropy_difference uses all windows of each block"
);

impl StreamMetric for EntropyRate {
    fn record(input: &MetricInput, p: Params) -> Result<Record> {
        let scale = p.est.unit.scale();
        plug_in(input, &p, &p.est, None, |opts, rec| {
            let e = super::err(&input.metric);
            let s = need_symbols(input, rec, "series", &p.series)?;
            let (m, d) = entropy_rate_and_difference(&s, p.k, opts).map_err(&e)?;
            rec.scalar("block_entropy_difference", d * scale);
            Ok(m)
        })
    }
}
