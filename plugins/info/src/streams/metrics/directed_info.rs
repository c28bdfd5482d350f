//! `directed_info`: the directed information rate I(X^n → Y^n)/n between symbol streams
//! (Massey 1990), plug-in under a Markov-order-`memory` assumption; also the feedback
//! term I(0·Y^{n−1} → X^n)/n.

use super::super::directed::directed_info;
use super::{plug_in, source_target, Estimation, Record, StreamMetric, Test};
use tokit_sdk::{Array, MetricInput, Result};

pub struct DirectedInfo;

tokit_sdk::params! {
    pub struct Params {
        /// input stream X (see `series` forms)
        source: Array = Array::NONE,
        /// output stream Y
        target: Array = Array::NONE,
        /// Markov order m assumed for p(y_t | past): m past symbols of each stream
        memory: usize = 1,
        /// 0: Massey's I(X^n → Y^n) (y_t sees x_t); 1: I(X^{n−1} → Y^n) (next-token situation)
        delay: usize = 0,
        #[flatten]
        est: Estimation,
        #[flatten]
        test: Test,
    }
}

stream_metric!(
    DirectedInfo,
    "directed_info",
    "directed information rate I(X^n → Y^n)/n between symbol streams (Massey), plug-in under a Markov-order-`memory` assumption; also the feedback term I(0·Y^{n−1} → X^n)/n"
);

impl StreamMetric for DirectedInfo {
    fn record(input: &MetricInput, p: Params) -> Result<Record> {
        let scale = p.est.unit.scale();
        plug_in(input, &p, &p.est, Some(&p.test), |opts, rec| {
            let (source, target, _) = source_target(input, rec, &p.source, &p.target, None)?;
            let memory = p.memory;
            let d = directed_info(&source, &target, memory, p.delay, opts)
                .map_err(super::err(&input.metric))?;
            rec.scalar("feedback_rate", d.reverse.value * scale);
            rec.scalar(
                "length_mean",
                target.lens().iter().sum::<usize>() as f64 / target.n_trials() as f64,
            );
            rec.notes.push(format!(
                "rate per symbol under a Markov-order-{memory} assumption on both p(y_t | y-past, x-past) and p(y_t | y-past); I(X^n → Y^n) ≈ n × value; feedback_rate = I(0·Y^(n−1) → X^n)/n"
            ));
            Ok(d.forward)
        })
    }
}
