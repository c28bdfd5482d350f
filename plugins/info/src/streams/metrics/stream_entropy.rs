//! `stream_entropy`: the plug-in entropy H(X) of a symbol stream.

use super::super::entropy::stream_entropy;
use super::{need_symbols, plug_in, Estimation, Record, StreamMetric, STREAM_DOC};
use tokit_sdk::{Array, MetricInput, Result};

pub struct StreamEntropy;

tokit_sdk::params! {
    pub struct Params {
        #[doc = STREAM_DOC]
        series: Array = Array::NONE,
        #[flatten]
        est: Estimation,
    }
}

stream_metric!(
    StreamEntropy,
    "stream_entropy",
    "entropy H(X) of a symbol stream (plug-in; trials pooled); local −ln p(x_t)"
);

impl StreamMetric for StreamEntropy {
    fn record(input: &MetricInput, p: Params) -> Result<Record> {
        plug_in(input, &p, &p.est, None, |opts, rec| {
            let s = need_symbols(input, rec, "series", &p.series)?;
            stream_entropy(&s, opts).map_err(super::err(&input.metric))
        })
    }
}
