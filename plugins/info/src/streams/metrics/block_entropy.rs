//! `block_entropy`: the entropy H(X^k) of the length-k windows of a symbol stream.

use super::super::entropy::block_entropy;
use super::{need_symbols, plug_in, Estimation, Record, StreamMetric, STREAM_DOC};
use tokit_sdk::{Array, MetricInput, Result};

pub struct BlockEntropy;

tokit_sdk::params! {
    pub struct Params {
        #[doc = STREAM_DOC]
        series: Array = Array::NONE,
        /// block length
        k: usize = 1,
        #[flatten]
        est: Estimation,
    }
}

stream_metric!(
    BlockEntropy,
    "block_entropy",
    "block entropy H(X^k) of the length-k windows of a symbol stream; local −ln p(window)"
);

impl StreamMetric for BlockEntropy {
    fn record(input: &MetricInput, p: Params) -> Result<Record> {
        plug_in(input, &p, &p.est, None, |opts, rec| {
            let s = need_symbols(input, rec, "series", &p.series)?;
            block_entropy(&s, p.k, opts).map_err(super::err(&input.metric))
        })
    }
}
