//! `rate_distortion_closed_form`: R(D) in closed form, the test oracles of
//! `docs/measures.md` M3 (Cover & Thomas, ch. 10): a binary source with Hamming
//! distortion h(p) − h(D), a Gaussian ½ ln(σ²/D), log-loss max(H − D, 0).

use super::{list, output, record, required, RateMetric};
use crate::args::{Args, Record};
use serde_json::json;
use tokit_sdk::{Array, InfoUnit, Metric, MetricInput, MetricOutput, Result};

pub struct RateDistortionClosedForm;

tokit_sdk::params! {
    pub struct Params {
        /// `binary` (Bernoulli p, Hamming), `gaussian` (variance, squared error) or `log_loss` (source law or entropy)
        family: String = "binary".into(),
        /// binary: P(X = 1)
        p: f64 = 0.5,
        /// gaussian: σ²
        variance: f64 = 1.0,
        /// log_loss: the source law (its entropy is used)
        source: Array = Array::NONE,
        /// log_loss: H(X) in `unit` (instead of `source`)
        entropy: Option<f64> = None,
        /// R(D) at this D (log_loss: D in `unit`)
        target_distortion: Option<f64> = None,
        /// R(D) at each of these D
        distortions: Array = Array::NONE,
        /// `nats` or `bits` for information quantities
        unit: InfoUnit = InfoUnit::Nats,
    }
}

impl Metric for RateDistortionClosedForm {
    const NAME: &'static str = "rate_distortion_closed_form";
    const DESCRIPTION: &'static str = "closed-form R(D): binary source with Hamming distortion h(p) − h(D), Gaussian ½ ln(σ²/D), log-loss max(H − D, 0) (M3 test oracles)";
    type Params = Params;

    fn compute(input: &MetricInput, p: Params) -> Result<MetricOutput> {
        output::<Self>(input, p)
    }
}

impl RateMetric for RateDistortionClosedForm {
    fn record(args: &Args, p: Params) -> Result<Record> {
        run(args, p)
    }
}

fn run(args: &Args, p: Params) -> Result<Record> {
    let unit = p.unit;
    let mut rec = record(args, unit, "closed form");
    let family = p.family;
    rec.params.insert("family".into(), json!(family));
    let targets = match args.one_of(&["target_distortion", "distortions"])? {
        Some("distortions") => list(args, "distortions")?,
        Some(_) => vec![required(p.target_distortion, args, "target_distortion")?],
        None => return Err(args.err("target_distortion", "required (or `distortions`)")),
    };
    let f: Box<dyn Fn(f64) -> Result<f64>> = match family.as_str() {
        "binary" => {
            let pp = p.p;
            rec.params.insert("p".into(), json!(pp));
            Box::new(move |d| Ok(unit.from_nats(crate::blahut_arimoto::binary_hamming_rd(pp, d)?)))
        }
        "gaussian" => {
            let var = p.variance;
            rec.params.insert("variance".into(), json!(var));
            Box::new(move |d| Ok(unit.from_nats(crate::blahut_arimoto::gaussian_rd(var, d)?)))
        }
        "log_loss" => {
            let h = match args.one_of(&["entropy", "source"])? {
                Some("entropy") => required(p.entropy, args, "entropy")?,
                Some(_) => {
                    let src = args.vector_req("source", "the source law")?;
                    unit.from_nats(crate::util::entropy(&crate::util::check_pmf(
                        "source",
                        &src.data,
                        src.sum_tol(),
                    )?))
                }
                None => {
                    return Err(args.err("source", "log_loss needs `source` (a law) or `entropy`"))
                }
            };
            rec.scalar("entropy", h);
            rec.notes.push(format!(
                "log-loss: distortion and rate are both in {}",
                unit.name()
            ));
            Box::new(move |d| crate::blahut_arimoto::log_loss_rd(h, d))
        }
        other => {
            return Err(args.err(
                "family",
                format!("expected binary, gaussian or log_loss, found \"{other}\""),
            ))
        }
    };
    let rates = targets
        .iter()
        .map(|&d| f(d))
        .collect::<Result<Vec<f64>>>()?;
    if args.has("distortions") {
        rec.column("distortion", &targets);
        rec.column("rate", &rates);
        rec.plot_lines(
            "distortion",
            &["rate"],
            "distortion D",
            &format!("rate R ({})", unit.name()),
        );
    } else {
        rec.value = Some(rates[0]);
        rec.scalar("rate", rates[0]);
        rec.scalar("distortion", targets[0]);
    }
    Ok(rec)
}
