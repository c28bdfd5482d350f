//! Tests of the directed Blahut–Arimoto iteration (`docs/measures.md` T6, T7).

use super::*;
use crate::blahut_arimoto::RdProblem;
use crate::util::{h2, hamming, LN2, SUM_TOL_F64};

fn bits(x: f64) -> f64 {
    x / LN2
}

fn problem(px: &[f64], n: usize) -> DirectedProblem {
    DirectedProblem::new(px, 2, n, &hamming(2), 2, SUM_TOL_F64).unwrap()
}

/// Massey's form `Σ_i I(X_i; Y^i | X^{i−1})` (delay 1, y → x), with
/// `I(A;B|C) = H(A,C) + H(B,C) − H(A,B,C) − H(C)`.
fn massey_y_to_x(joint: &[f64], n: usize) -> f64 {
    let h = |xs: &[usize], ys: &[usize]| marginal_entropy(joint, n, 2, 2, xs, ys);
    let all: Vec<usize> = (0..n).collect();
    (1..=n)
        .map(|i| {
            let (x_i, x_prev, y_i) = (&all[..i], &all[..i - 1], &all[..i]);
            h(x_i, &[]) + h(x_prev, y_i) - h(x_i, y_i) - h(x_prev, &[])
        })
        .sum()
}

#[test]
fn t6_iid_uniform_n2_equals_memoryless() {
    let px = iid_joint(&[0.5, 0.5], 2).unwrap();
    let prob = problem(&px, 2);
    let pt = prob.solve(9f64.ln(), &DirectedOptions::default()).unwrap();
    assert!(pt.converged);
    assert!((pt.distortion - 0.1).abs() < 1e-9);
    assert!(
        (bits(pt.rate) - 0.531_004_4).abs() < 1e-6,
        "R2 = {}",
        bits(pt.rate)
    );
    let joint = prob.joint(&pt.channel);
    let di = directed_information(&joint, 2, 2, 2, Direction::YToX, 1) / 2.0;
    assert!((di - pt.rate).abs() < 1e-10);
    assert!((massey_y_to_x(&joint, 2) / 2.0 - pt.rate).abs() < 1e-10);
}

#[test]
fn iid_nonuniform_matches_classic_ba_for_every_n() {
    let p = [0.7, 0.3];
    let classic = RdProblem::new(&p, hamming(2), 2, SUM_TOL_F64).unwrap();
    for beta in [0.5, 9f64.ln(), 4.0] {
        let c = classic.solve(beta, None, &BaOptions::default()).unwrap();
        for n in 1..=3 {
            let prob = problem(&iid_joint(&p, n).unwrap(), n);
            for delay in [1, n] {
                let opts = DirectedOptions {
                    delay,
                    ..Default::default()
                };
                let pt = prob.solve(beta, &opts).unwrap();
                assert!(
                    (pt.rate - c.rate).abs() < 1e-8,
                    "n {n} delay {delay} β {beta}: {} vs {}",
                    pt.rate,
                    c.rate
                );
                assert!((pt.distortion - c.distortion).abs() < 1e-8);
            }
        }
    }
}

#[test]
fn t7_markov_source_n2() {
    let q = 0.2;
    let prob = problem(&binary_symmetric_markov(q, 2).unwrap(), 2);
    for (beta, d, r) in [
        (9f64.ln(), 0.1, 0.391_968_5),
        (19f64.ln(), 0.05, 0.574_567_1),
    ] {
        let pt = prob.solve(beta, &DirectedOptions::default()).unwrap();
        assert!(pt.converged, "iterations {}", pt.iterations);
        assert!((pt.distortion - d).abs() < 1e-8, "D = {}", pt.distortion);
        assert!((bits(pt.rate) - r).abs() < 1e-6, "R2 = {}", bits(pt.rate));
        let closed = 0.5 * ((LN2 - h2(d)) + (h2(q) - h2(d)));
        assert!((pt.rate - closed).abs() < 1e-8);
        let joint = prob.joint(&pt.channel);
        assert!(
            (directed_information(&joint, 2, 2, 2, Direction::YToX, 1) / 2.0 - pt.rate).abs()
                < 1e-10
        );
        assert!((massey_y_to_x(&joint, 2) / 2.0 - pt.rate).abs() < 1e-10);
        // The distortion re-evaluated from the joint, letter by letter.
        let dd: f64 = (0..16)
            .map(|k| {
                let (x, y) = (digits(k / 4, 2, 2), digits(k % 4, 2, 2));
                joint[k] * (0..2).filter(|&j| x[j] != y[j]).count() as f64 / 2.0
            })
            .sum();
        assert!((dd - pt.distortion).abs() < 1e-9);
    }
}

#[test]
fn markov_rate_is_non_increasing_in_n() {
    let q = 0.2;
    let beta = 9f64.ln();
    let mut last = f64::INFINITY;
    for n in 1..=3 {
        let prob = problem(&binary_symmetric_markov(q, n).unwrap(), n);
        let pt = prob.solve(beta, &DirectedOptions::default()).unwrap();
        // Closed form: (1/n)[(1 − h(D)) + (n − 1)(h(q) − h(D))] in bits, D = 0.1.
        let closed = ((LN2 - h2(0.1)) + (n as f64 - 1.0) * (h2(q) - h2(0.1))) / n as f64;
        assert!(
            (pt.rate - closed).abs() < 1e-8,
            "n = {n}: {} vs {closed}",
            pt.rate
        );
        assert!(pt.rate <= last + 1e-12);
        last = pt.rate;
        let joint = prob.joint(&pt.channel);
        let di = directed_information(&joint, n, 2, 2, Direction::YToX, 1) / n as f64;
        assert!((di - pt.rate).abs() < 1e-10);
        assert!((massey_y_to_x(&joint, n) / n as f64 - pt.rate).abs() < 1e-10);
    }
}

#[test]
fn block_rate_without_feed_forward_is_larger() {
    // Delay ≥ n: the ordinary block rate (1/n) R_n(D), above the feed-forward rate.
    let prob = problem(&binary_symmetric_markov(0.2, 2).unwrap(), 2);
    let ff = prob.solve(9f64.ln(), &DirectedOptions::default()).unwrap();
    let opts = DirectedOptions {
        delay: 2,
        ..Default::default()
    };
    let block = prob.solve(9f64.ln(), &opts).unwrap();
    let joint = prob.joint(&block.channel);
    let mi = marginal_entropy(&joint, 2, 2, 2, &[0, 1], &[])
        + marginal_entropy(&joint, 2, 2, 2, &[], &[0, 1])
        - marginal_entropy(&joint, 2, 2, 2, &[0, 1], &[0, 1]);
    assert!((mi / 2.0 - block.rate).abs() < 1e-10);
    // I(X^n; Y^n) ≥ I(Y^n → X^n); at D = 0.1 the Shannon lower bound H(X^2)/2 − h(D) is
    // tight for both, so they coincide here.
    assert!(block.objective() >= ff.objective() - 1e-10);
    assert!((block.rate - ff.rate).abs() < 1e-8);
    // At a larger distortion (β = 1) feed-forward strictly helps.
    let ff = prob.solve(1.0, &DirectedOptions::default()).unwrap();
    let block = prob.solve(1.0, &opts).unwrap();
    assert!(
        block.objective() > ff.objective() + 1e-2,
        "{} vs {}",
        block.objective(),
        ff.objective()
    );
    // Delay 0 (the decoder sees the current letter): free reproduction.
    let opts = DirectedOptions {
        delay: 0,
        ..Default::default()
    };
    let zero = prob.solve(9f64.ln(), &opts).unwrap();
    assert!(zero.rate < 1e-6 && zero.distortion < 1e-6, "{zero:?}");
}

#[test]
fn x_to_y_direction_matches_brute_force_and_conservation() {
    let prob = problem(&binary_symmetric_markov(0.2, 2).unwrap(), 2);
    for delay in [0, 1, 2] {
        let opts = DirectedOptions {
            direction: Direction::XToY,
            delay,
            ..Default::default()
        };
        let pt = prob.solve(2.0, &opts).unwrap();
        let joint = prob.joint(&pt.channel);
        let di = directed_information(&joint, 2, 2, 2, Direction::XToY, delay) / 2.0;
        assert!(
            (di - pt.rate).abs() < 1e-9,
            "delay {delay}: {di} vs {}",
            pt.rate
        );
    }
    // Conservation law on an arbitrary joint: I(X;Y) = I(X^n → Y^n) + I(0·Y^{n−1} → X^n).
    let mut rng = SplitMix64::new(3);
    let joint = rng.simplex(64);
    let (n, all) = (3, [0usize, 1, 2]);
    let mi = marginal_entropy(&joint, n, 2, 2, &all, &[])
        + marginal_entropy(&joint, n, 2, 2, &[], &all)
        - marginal_entropy(&joint, n, 2, 2, &all, &all);
    let fwd = directed_information(&joint, n, 2, 2, Direction::XToY, 1);
    let back = directed_information(&joint, n, 2, 2, Direction::YToX, 0);
    assert!((fwd + back - mi).abs() < 1e-12);
    let fwd0 = directed_information(&joint, n, 2, 2, Direction::XToY, 0);
    let back1 = directed_information(&joint, n, 2, 2, Direction::YToX, 1);
    assert!((fwd0 + back1 - mi).abs() < 1e-12);
}

#[test]
fn memoryless_channel_directed_information_equals_mutual_information() {
    // BSC(0.1) without feedback, uniform inputs, n = 3: DI = MI = 3(1 − h(0.1)) bits
    // (`docs/measures.md` M2); the reproductions play the channel outputs here.
    let n = 3;
    let px = iid_joint(&[0.5, 0.5], n).unwrap();
    let mut joint = vec![0.0; 64];
    for xi in 0..8 {
        for yi in 0..8 {
            let (dx, dy) = (digits(xi, 2, n), digits(yi, 2, n));
            let flips = (0..n).filter(|&j| dx[j] != dy[j]).count() as i32;
            joint[xi * 8 + yi] = px[xi] * 0.1f64.powi(flips) * 0.9f64.powi(n as i32 - flips);
        }
    }
    let di = directed_information(&joint, n, 2, 2, Direction::XToY, 1);
    assert!((bits(di) - 1.593_013_2).abs() < 1e-6);
}

#[test]
fn bad_input_is_an_error() {
    let h = hamming(2);
    assert!(DirectedProblem::new(&[0.25; 4], 2, 0, &h, 2, SUM_TOL_F64).is_err());
    assert!(DirectedProblem::new(&[0.25; 3], 2, 2, &h, 2, SUM_TOL_F64).is_err());
    assert!(DirectedProblem::new(&[0.3; 4], 2, 2, &h, 2, SUM_TOL_F64).is_err());
    assert!(DirectedProblem::new(&[0.25; 4], 2, 2, &h[..3], 2, SUM_TOL_F64).is_err());
    assert!(
        DirectedProblem::new(&[0.25; 4], 2, 2, &[0.0, -1.0, 1.0, 0.0], 2, SUM_TOL_F64).is_err()
    );
    assert!(DirectedProblem::new(
        &iid_joint(&[0.5, 0.5], 12).unwrap(),
        2,
        12,
        &h,
        2,
        SUM_TOL_F64
    )
    .is_err());
    assert!(binary_symmetric_markov(1.5, 2).is_err());
    assert!(Direction::parse("sideways").is_err());
    let prob = problem(&[0.25; 4], 2);
    let o = DirectedOptions::default();
    for beta in [0.0, -1.0, f64::NAN, f64::INFINITY] {
        assert!(prob.solve(beta, &o).is_err());
    }
}

#[test]
fn zero_probability_sequences_stay_finite() {
    // q = 0: the chain never flips; half of the sequences have probability 0.
    let prob = problem(&binary_symmetric_markov(0.0, 2).unwrap(), 2);
    for dir in [Direction::YToX, Direction::XToY] {
        let pt = prob
            .solve(
                2.0,
                &DirectedOptions {
                    direction: dir,
                    ..Default::default()
                },
            )
            .unwrap();
        assert!(pt.rate.is_finite() && pt.distortion.is_finite());
        assert!(pt.channel.iter().all(|c| c.is_finite()));
    }
}
