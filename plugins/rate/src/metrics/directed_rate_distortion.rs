//! `directed_rate_distortion`: a reconstruction of the paper's directed rate–distortion
//! function (`docs/measures.md` M3): (1/n) min I(Y^n → X^n) + β E d by the directed
//! Blahut–Arimoto iteration of Naiss & Permuter (2013) on n-blocks of an i.i.d., Markov
//! or explicit source.

use super::{ba_options, distortion_matrix, list, output, record, required, Ba, RateMetric};
use crate::args::{Args, Record};
use crate::directed::{DirectedOptions, DirectedProblem, Direction};
use serde_json::json;
use tokit_sdk::{Array, Metric, MetricInput, MetricOutput, Result};

pub struct DirectedRateDistortion;

tokit_sdk::params! {
    pub struct Params {
        /// block length n (cost |X|^n |Y|^n per iteration)
        n: usize = 2,
        /// `iid`, `markov` or `joint` (default: inferred from the parameters given)
        source_kind: Option<String> = None,
        /// iid: the letter law (default uniform over `x_alphabet`)
        source: Array = Array::NONE,
        /// |X| when no law fixes it
        x_alphabet: usize = 2,
        /// markov: flip probability of a binary symmetric Markov source (uniform start)
        q: Option<f64> = None,
        /// markov: transition matrix (row = current letter)
        transition: Array = Array::NONE,
        /// markov: law of the first letter (default uniform)
        initial: Array = Array::NONE,
        /// joint: a pmf over x^n (length |X|^n, first letter most significant)
        joint: Array = Array::NONE,
        /// per-letter distortion d(x, y); the block distortion is the sum, reported per letter
        distortion: Array = Array::of(json!("hamming")),
        /// per-letter slope β > 0: one point
        beta: Option<f64> = None,
        /// slopes: the curve at each
        betas: Array = Array::NONE,
        /// size of the default β grid when neither `beta` nor `betas` is given
        num_points: usize = 21,
        /// `y_to_x`: I(Y^n → X^n), feed-forward rate–distortion; `x_to_y`: I(X^n → Y^n)
        direction: String = "y_to_x".into(),
        /// delay k of the causal conditioning: y_i sees x^{i−k} (1 = next-token prediction; ≥ n = block mutual information)
        delay: usize = 1,
        /// random-simplex restarts besides the uniform start (deterministic)
        restarts: usize = 1,
        #[flatten]
        ba: Ba,
    }
}

impl Metric for DirectedRateDistortion {
    const NAME: &'static str = "directed_rate_distortion";
    const DESCRIPTION: &'static str = "reconstruction of the paper's directed rate–distortion function (M3): (1/n) min I(Y^n → X^n) + β E d by the directed Blahut–Arimoto of Naiss & Permuter on n-blocks of an i.i.d., Markov or explicit source; direction and delay are parameters; value = per-letter rate";
    const RECONSTRUCTION: bool = true;
    type Params = Params;

    fn compute(input: &MetricInput, p: Params) -> Result<MetricOutput> {
        output::<Self>(input, p)
    }
}

impl RateMetric for DirectedRateDistortion {
    fn record(args: &Args, p: Params) -> Result<Record> {
        run(args, p)
    }
}

/// The source law over `x^n` and `|X|` from the directed-RD parameters.
fn directed_source(
    args: &Args,
    p: &Params,
    rec: &mut Record,
    n: usize,
) -> Result<(Vec<f64>, usize, f64)> {
    let kind = match p.source_kind.clone() {
        Some(k) => k,
        None if args.has("joint") => "joint".into(),
        None if args.has("q") || args.has("transition") => "markov".into(),
        None => "iid".into(),
    };
    rec.params.insert("source_kind".into(), json!(kind));
    match kind.as_str() {
        "iid" => {
            let (p, tol) = match args.vector("source")? {
                Some(a) => {
                    if args.has("x_alphabet") && p.x_alphabet != a.data.len() {
                        return Err(args.err(
                            "x_alphabet",
                            format!(
                                "{} does not match the {} letters of `source` (give one of them)",
                                p.x_alphabet,
                                a.data.len()
                            ),
                        ));
                    }
                    let tol = a.sum_tol();
                    (crate::util::check_pmf("source", &a.data, tol)?, tol)
                }
                None => {
                    let a = p.x_alphabet;
                    if a == 0 {
                        return Err(args.err("x_alphabet", "expected at least 1"));
                    }
                    (vec![1.0 / a as f64; a], crate::util::SUM_TOL_F64)
                }
            };
            Ok((crate::directed::iid_joint(&p, n)?, p.len(), tol))
        }
        "markov" => {
            if let Some(q) = p.q {
                if args.has("transition") {
                    return Err(args.err("q", "give `q` or `transition`, not both"));
                }
                return Ok((
                    crate::directed::binary_symmetric_markov(q, n)?,
                    2,
                    crate::util::SUM_TOL_F64,
                ));
            }
            let (t, r, c) = args.matrix("transition")?.ok_or_else(|| {
                args.err(
                    "transition",
                    "markov needs `q` (binary symmetric) or `transition`",
                )
            })?;
            if r != c {
                return Err(args.err(
                    "transition",
                    format!("expected a square matrix, found {r} × {c}"),
                ));
            }
            let tol = t.sum_tol();
            let tn = crate::capacity::check_channel(&t.data, r, c, tol)
                .map_err(|e| args.err("transition", e.message()))?;
            let init = match args.vector("initial")? {
                Some(a) => crate::util::check_pmf("initial", &a.data, a.sum_tol())?,
                None => vec![1.0 / r as f64; r],
            };
            if init.len() != r {
                return Err(args.err(
                    "initial",
                    format!("expected a law over {r} letters, found {}", init.len()),
                ));
            }
            Ok((crate::directed::markov_joint(&init, &tn, n)?, r, tol))
        }
        "joint" => {
            let a = args.vector_req("joint", "a pmf over x^n")?;
            let ax = p.x_alphabet;
            Ok((a.data.clone(), ax, a.sum_tol()))
        }
        other => Err(args.err(
            "source_kind",
            format!("expected iid, markov or joint, found \"{other}\""),
        )),
    }
}

fn run(args: &Args, p: Params) -> Result<Record> {
    let unit = p.ba.unit;
    let mut rec = record(
        args,
        unit,
        "directed Blahut–Arimoto (Naiss–Permuter), exact enumeration of n-blocks",
    );
    let n = p.n;
    rec.params.insert("n".into(), json!(n));
    if n == 0 {
        return Err(args.err("n", "expected a block length ≥ 1"));
    }
    let (px, ax, tol) = directed_source(args, &p, &mut rec, n)?;
    let (d, ay) = distortion_matrix(args, "distortion", ax)?;
    let prob = DirectedProblem::new(&px, ax, n, &d, ay, tol)?;
    let direction = Direction::parse(&p.direction)?;
    let delay = p.delay;
    rec.params
        .insert("direction".into(), json!(direction.name()));
    rec.params.insert("delay".into(), json!(delay));
    let ba = ba_options(&mut rec, &p.ba, p.restarts)?;
    let opts = DirectedOptions {
        direction,
        delay,
        ba,
    };
    let s = unit.scale();
    let di = |pt: &crate::directed::DirectedPoint| {
        crate::directed::directed_information(&prob.joint(&pt.channel), n, ax, ay, direction, delay)
            / n as f64
    };
    let arrow = match (direction, delay) {
        (Direction::YToX, 1) => "I(Y^n → X^n)".to_string(),
        (Direction::XToY, 1) => "I(X^n → Y^n)".to_string(),
        (Direction::YToX, k) => format!("Σ H(Y_i | Y^(i−1), X^(i−{k})) − H(Y^n | X^n)"),
        (Direction::XToY, k) => format!("Σ H(X_i | X^(i−1), Y^(i−{k})) − H(X^n | Y^n)"),
    };
    rec.notes.push(format!(
        "rate = (1/n) {arrow} of the final joint; distortion per letter; beta per letter in nats"
    ));
    match args.one_of(&["beta", "betas"])? {
        Some("beta") => {
            let pt = prob.solve(required(p.beta, args, "beta")?, &opts)?;
            let brute = di(&pt);
            rec.value = Some(pt.rate * s);
            rec.scalar("rate", pt.rate * s);
            rec.scalar("distortion", pt.distortion);
            rec.scalar("beta", pt.beta);
            rec.scalar("objective", pt.objective() * s);
            rec.scalar("directed_information", brute * s);
            rec.scalar("check_abs_diff", (brute - pt.rate).abs() * s);
            rec.scalar("iterations", pt.iterations as f64);
            rec.scalar("restarts_spread", pt.starts_spread * s);
            super::note_restarts(&mut rec, pt.from_restart);
            rec.flag("converged", pt.converged);
            rec.scalar("n", n as f64);
            rec.scalar("delay", delay as f64);
            if !pt.converged {
                rec.notes.push(format!(
                    "not converged within max_iter ({} iterations)",
                    pt.iterations
                ));
            }
            rec.tensor("test_channel", &pt.channel, &[prob.nx, prob.ny]);
            rec.tensor("source_law", &prob.px, &[prob.nx]);
        }
        _ => {
            let betas = match args.has("betas") {
                true => list(args, "betas")?,
                false => {
                    let k = p.num_points.max(1);
                    rec.params.insert("num_points".into(), json!(k));
                    let spread = d.iter().copied().fold(0.0, f64::max);
                    let sc = if spread > 0.0 { spread } else { 1.0 };
                    (0..k)
                        .map(|i| 10f64.powf(-2.0 + 4.0 * i as f64 / (k.max(2) - 1) as f64) / sc)
                        .collect()
                }
            };
            let pts = betas
                .iter()
                .map(|&b| prob.solve(b, &opts))
                .collect::<Result<Vec<_>>>()?;
            let col = |f: &dyn Fn(&crate::directed::DirectedPoint) -> f64| {
                pts.iter().map(f).collect::<Vec<f64>>()
            };
            rec.column("beta", &col(&|p| p.beta));
            rec.column("distortion", &col(&|p| p.distortion));
            rec.column("rate", &col(&|p| p.rate * s));
            rec.column("directed_information", &col(&|p| di(p) * s));
            let spread = pts.iter().map(|p| p.starts_spread).fold(0.0, f64::max);
            rec.scalar("max_restarts_spread", spread * s);
            super::note_restarts(&mut rec, pts.iter().any(|p| p.from_restart));
            rec.plot_lines(
                "distortion",
                &["rate"],
                "distortion D per letter",
                &format!("rate R ({} per letter)", unit.name()),
            );
            rec.column("converged", &col(&|p| if p.converged { 1.0 } else { 0.0 }));
            rec.flag("all_converged", pts.iter().all(|p| p.converged));
            rec.scalar(
                "max_check_abs_diff",
                pts.iter()
                    .map(|p| (di(p) - p.rate).abs())
                    .fold(0.0, f64::max)
                    * s,
            );
            rec.scalar("n", n as f64);
        }
    }
    Ok(rec)
}
