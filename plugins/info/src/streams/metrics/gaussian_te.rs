//! `gaussian_te`: the Gaussian transfer entropy source→target = Geweke F / 2 (Barnett,
//! Barrett & Seth 2009), with local values and the Granger tests (see [`super::granger`]).

use super::granger::{granger_record, Params};
use super::{Record, StreamMetric};
use tokit_sdk::{MetricInput, Result};

pub struct GaussianTe;

stream_metric!(
    GaussianTe,
    "gaussian_te",
    "Gaussian transfer entropy source→target = Geweke F / 2 (Barnett et al. 2009), with local values and the Granger tests"
);

impl StreamMetric for GaussianTe {
    fn record(input: &MetricInput, p: Params) -> Result<Record> {
        granger_record(input, &p, true)
    }
}
