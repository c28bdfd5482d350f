//! `mutual_info`: the mutual information I(source_{t−lag}; target_t), or the conditional
//! MI given `condition`, plug-in with local values and a permutation test.

use super::super::mutual::mutual_info;
use super::{plug_in, source_target, Estimation, Record, StreamMetric, Test, STREAM_DOC};
use tokit_sdk::{Array, MetricInput, Result};

pub struct MutualInfo;

tokit_sdk::params! {
    pub struct Params {
        #[doc = STREAM_DOC]
        source: Array = Array::NONE,
        #[doc = STREAM_DOC]
        target: Array = Array::NONE,
        /// optional stream to condition on (conditional MI)
        condition: Array = Array::NONE,
        /// pairs source_{t−lag} with target_t
        lag: usize = 0,
        /// pairs condition_{t−cond_lag} with target_t
        cond_lag: usize = 0,
        #[flatten]
        est: Estimation,
        #[flatten]
        test: Test,
    }
}

stream_metric!(
    MutualInfo,
    "mutual_info",
    "mutual information I(source_{t−lag}; target_t), or conditional MI given `condition`, plug-in with local values and a permutation test"
);

impl StreamMetric for MutualInfo {
    fn record(input: &MetricInput, p: Params) -> Result<Record> {
        plug_in(input, &p, &p.est, Some(&p.test), |opts, rec| {
            let (source, target, condition) =
                source_target(input, rec, &p.source, &p.target, Some(&p.condition))?;
            mutual_info(
                &source,
                &target,
                p.lag,
                condition.as_ref().map(|c| (c, p.cond_lag)),
                opts,
            )
            .map_err(super::err(&input.metric))
        })
    }
}
