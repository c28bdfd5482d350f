//! `stream_entropy`: the plug-in entropy H(X) of a symbol stream.

use super::super::entropy::stream_entropy;
use super::{echo, need_symbols, output, plug_in, Estimation, Record, StreamMetric, STREAM_DOC};
use tokit_sdk::{Array, Metric, MetricInput, MetricOutput, Result};

pub struct StreamEntropy;

tokit_sdk::params! {
    pub struct Params {
        #[doc = STREAM_DOC]
        series: Array = Array::NONE,
        #[flatten]
        est: Estimation,
    }
}

impl Metric for StreamEntropy {
    const NAME: &'static str = "stream_entropy";
    const DESCRIPTION: &'static str =
        "entropy H(X) of a symbol stream (plug-in; trials pooled); local −ln p(x_t)";
    type Params = Params;

    fn compute(input: &MetricInput, p: Params) -> Result<MetricOutput> {
        output::<Self>(input, p)
    }
}

impl StreamMetric for StreamEntropy {
    fn record(input: &MetricInput, p: Params) -> Result<Record> {
        plug_in(input, echo(input, &p), &p.est, None, |opts, rec| {
            let s = need_symbols(input, rec, "series", &p.series)?;
            stream_entropy(&s, opts).map_err(super::err(&input.metric))
        })
    }
}
