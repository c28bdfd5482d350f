//! `transfer_entropy`: TE(source→target) = I(Y_t; X-window | Y-history [, condition
//! window]) (Schreiber 2000; conditional TE with `condition`), plug-in with local values
//! and a permutation test; the defaults reproduce pyinform's `transfer_entropy`.

use super::super::transfer::{transfer_entropy, TeSpec};
use super::{plug_in, source_target, Estimation, Record, StreamMetric, Test, STREAM_DOC};
use tokit_sdk::{Array, MetricInput, Result};

pub struct TransferEntropy;

tokit_sdk::params! {
    pub struct Params {
        #[doc = STREAM_DOC]
        source: Array = Array::NONE,
        #[doc = STREAM_DOC]
        target: Array = Array::NONE,
        /// optional third stream to condition on (conditional TE); same layout as the target
        condition: Array = Array::NONE,
        /// target history length (0: none, TE becomes lagged MI)
        k: usize = 1,
        /// spacing of the target history
        k_tau: usize = 1,
        /// source window length
        l: usize = 1,
        /// spacing of the source window
        l_tau: usize = 1,
        /// source delay u: the window ends at x_{t−u} (1: previous symbol, pyinform's convention)
        delay: usize = 1,
        /// condition window length
        cond_l: usize = 1,
        /// spacing of the condition window
        cond_tau: usize = 1,
        /// condition delay (1: pyinform's convention)
        cond_delay: usize = 1,
        #[flatten]
        est: Estimation,
        #[flatten]
        test: Test,
    }
}

stream_metric!(
    TransferEntropy,
    "transfer_entropy",
    "transfer entropy TE(source→target) = I(Y_t; X-window | Y-history [, condition-window]) (Schreiber; conditional TE with `condition`), plug-in with local values and a permutation test; defaults reproduce pyinform's transfer_entropy"
);

impl StreamMetric for TransferEntropy {
    fn record(input: &MetricInput, p: Params) -> Result<Record> {
        plug_in(input, &p, &p.est, Some(&p.test), |opts, rec| {
            let (source, target, condition) =
                source_target(input, rec, &p.source, &p.target, Some(&p.condition))?;
            let spec = TeSpec {
                k: p.k,
                k_tau: p.k_tau,
                l: p.l,
                l_tau: p.l_tau,
                delay: p.delay,
                cond_l: p.cond_l,
                cond_tau: p.cond_tau,
                cond_delay: p.cond_delay,
            };
            transfer_entropy(&source, &target, condition.as_ref(), &spec, opts)
                .map_err(super::err(&input.metric))
        })
    }
}
