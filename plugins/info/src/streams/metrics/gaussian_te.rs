//! `gaussian_te`: the Gaussian transfer entropy source→target = Geweke F / 2 (Barnett,
//! Barrett & Seth 2009), with local values and the Granger tests (see [`super::granger`]).

use super::granger::{granger_record, Params};
use super::{output, Record, StreamMetric};
use tokit_sdk::{Metric, MetricInput, MetricOutput, Result};

pub struct GaussianTe;

impl Metric for GaussianTe {
    const NAME: &'static str = "gaussian_te";
    const DESCRIPTION: &'static str = "Gaussian transfer entropy source→target = Geweke F / 2 (Barnett et al. 2009), with local values and the Granger tests";
    type Params = Params;

    fn compute(input: &MetricInput, p: Params) -> Result<MetricOutput> {
        output::<Self>(input, p)
    }
}

impl StreamMetric for GaussianTe {
    fn record(input: &MetricInput, p: Params) -> Result<Record> {
        granger_record(input, &p, true)
    }
}
