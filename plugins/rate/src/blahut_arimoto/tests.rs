//! Tests of the Blahut–Arimoto solver: `docs/measures.md` T1–T5, the shape of the curve,
//! straight segments, extreme slopes, bad input.

use super::*;
use crate::util::{entropy, h2, hamming, LN2, SUM_TOL_F64};

fn bits(n: f64) -> f64 {
    n / LN2
}

/// `(D, I(X;Y))` recomputed from scratch: joint, marginals, entropies.
fn reevaluate(p: &[f64], d: &[f64], q: &[f64], ny: usize) -> (f64, f64) {
    let nx = p.len();
    let joint: Vec<f64> = (0..nx * ny).map(|k| p[k / ny] * q[k]).collect();
    let py: Vec<f64> = (0..ny)
        .map(|y| (0..nx).map(|x| joint[x * ny + y]).sum())
        .collect();
    let dist: f64 = joint.iter().zip(d).map(|(j, dd)| j * dd).sum();
    let mi = entropy(p) + entropy(&py) - entropy(&joint);
    (dist, mi)
}

fn bss() -> RdProblem {
    RdProblem::new(&[0.5, 0.5], hamming(2), 2, SUM_TOL_F64).unwrap()
}

#[test]
fn t2_binary_symmetric_source_at_ln9() {
    let pt = bss().solve(9f64.ln(), None, &BaOptions::default()).unwrap();
    assert!(pt.converged);
    assert!((pt.distortion - 0.1).abs() < 1e-9, "D = {}", pt.distortion);
    assert!(
        (bits(pt.rate) - 0.531_004_4).abs() < 1e-6,
        "R = {}",
        bits(pt.rate)
    );
    assert!((pt.rate - (LN2 - h2(0.1))).abs() < 1e-9);
    assert!(pt.rate - pt.lower_bound < 1e-9);
}

#[test]
fn t1_bss_at_target_distortion() {
    let pt = bss().at_distortion(0.1, &BaOptions::default()).unwrap();
    assert!((pt.distortion - 0.1).abs() < 1e-9);
    assert!((bits(pt.rate) - 0.531_004_4).abs() < 1e-6);
    assert!((pt.beta - 9f64.ln()).abs() < 1e-6, "β = {}", pt.beta);
    assert!((bits(binary_hamming_rd(0.5, 0.1).unwrap()) - 0.531_004_4).abs() < 1e-6);
}

#[test]
fn t3_bernoulli_point_three() {
    let prob = RdProblem::new(&[0.7, 0.3], hamming(2), 2, SUM_TOL_F64).unwrap();
    let pt = prob.solve(9f64.ln(), None, &BaOptions::default()).unwrap();
    assert!(pt.converged, "iterations {}", pt.iterations);
    assert!((pt.distortion - 0.1).abs() < 1e-9, "D = {}", pt.distortion);
    assert!(
        (bits(pt.rate) - 0.412_295_3).abs() < 1e-6,
        "R = {}",
        bits(pt.rate)
    );
    assert!((bits(binary_hamming_rd(0.3, 0.1).unwrap()) - 0.412_295_3).abs() < 1e-6);
    let at = prob.at_distortion(0.1, &BaOptions::default()).unwrap();
    assert!((bits(at.rate) - 0.412_295_3).abs() < 1e-6);
}

#[test]
fn t4_gaussian_closed_form_and_discretised_ba() {
    assert!((bits(gaussian_rd(1.0, 0.25).unwrap()) - 1.0).abs() < 1e-12);
    assert_eq!(gaussian_rd(1.0, 2.0).unwrap(), 0.0);
    assert!(gaussian_rd(1.0, 0.0).is_err());
    // A fine discretisation of N(0,1) with squared error comes close to 1 bit.
    let k = 81;
    let xs: Vec<f64> = (0..k)
        .map(|i| -6.0 + 12.0 * i as f64 / (k - 1) as f64)
        .collect();
    let w: Vec<f64> = xs.iter().map(|x| (-x * x / 2.0).exp()).collect();
    let s: f64 = w.iter().sum();
    let p: Vec<f64> = w.iter().map(|v| v / s).collect();
    let d: Vec<f64> = (0..k * k)
        .map(|m| (xs[m / k] - xs[m % k]).powi(2))
        .collect();
    let prob = RdProblem::new(&p, &d[..], k, SUM_TOL_F64).unwrap();
    let opts = BaOptions {
        tol: 1e-10,
        max_iter: 20_000,
        restarts: 0,
        seed: 0,
        accelerate: false,
    };
    let pt = prob.at_distortion(0.25, &opts).unwrap();
    assert!((bits(pt.rate) - 1.0).abs() < 1e-5, "R = {}", bits(pt.rate));
    assert!((pt.distortion - 0.25).abs() < 1e-7);
}

#[test]
fn t5_log_loss() {
    // Uniform over 4 symbols: H = 2 bits; R(0.5 bit) = 1.5 bits.
    let h = bits(entropy(&[0.25; 4]));
    assert!((log_loss_rd(h, 0.5).unwrap() - 1.5).abs() < 1e-12);
    assert_eq!(log_loss_rd(h, 3.0).unwrap(), 0.0);
    assert!(log_loss_rd(h, -1.0).is_err());
}

#[test]
fn curve_is_convex_and_non_increasing_and_channels_reproduce_points() {
    // A 3-letter source with an asymmetric distortion matrix.
    let p = [0.5, 0.3, 0.2];
    let d = [0.0, 1.0, 3.0, 2.0, 0.0, 1.0, 1.5, 2.0, 0.0, 0.5, 0.7, 0.4];
    let prob = RdProblem::new(&p, d, 4, SUM_TOL_F64).unwrap();
    let betas = prob.default_betas(41);
    let pts = prob.sweep(&betas, &BaOptions::default()).unwrap();
    for w in pts.windows(2) {
        assert!(
            w[1].distortion <= w[0].distortion + 1e-10,
            "D must fall as β grows"
        );
        assert!(w[1].rate >= w[0].rate - 1e-10, "R must rise as β grows");
    }
    // Convexity: slopes between consecutive (distinct) points increase along D.
    let mut pts_d: Vec<(f64, f64)> = pts.iter().map(|p| (p.distortion, p.rate)).collect();
    pts_d.sort_by(|a, b| a.0.total_cmp(&b.0));
    pts_d.dedup_by(|a, b| (a.0 - b.0).abs() < 1e-6);
    for w in pts_d.windows(3) {
        let s1 = (w[1].1 - w[0].1) / (w[1].0 - w[0].0);
        let s2 = (w[2].1 - w[1].1) / (w[2].0 - w[1].0);
        assert!(s2 >= s1 - 1e-7, "not convex: {s1} then {s2} at {:?}", w);
    }
    for pt in &pts {
        assert!(pt.converged);
        let (dd, rr) = reevaluate(&p, &d, &pt.channel, 4);
        assert!((dd - pt.distortion).abs() < 1e-9 && (rr - pt.rate).abs() < 1e-9);
        assert!(pt.lower_bound <= pt.rate + 1e-12 && pt.rate - pt.lower_bound < 1e-8);
        // Every channel row is a law.
        for x in 0..3 {
            let s: f64 = pt.channel[x * 4..x * 4 + 4].iter().sum();
            assert!((s - 1.0).abs() < 1e-12);
        }
    }
    // Target-distortion points reproduce too and sit on the curve.
    for target in [prob.d_min, 0.05, 0.2, 0.4, prob.d_max, prob.d_max + 1.0] {
        let pt = prob.at_distortion(target, &BaOptions::default()).unwrap();
        let (dd, rr) = reevaluate(&p, &d, &pt.channel, 4);
        assert!((dd - pt.distortion).abs() < 1e-9 && (rr - pt.rate).abs() < 1e-9);
        assert!(pt.distortion <= target + 1e-9);
        assert!(pt.rate.is_finite() && pt.rate >= 0.0);
    }
}

#[test]
fn r_at_d_min_for_hamming_is_the_entropy() {
    let p = [0.5, 0.25, 0.25];
    let prob = RdProblem::new(&p, hamming(3), 3, SUM_TOL_F64).unwrap();
    let pt = prob.at_distortion(0.0, &BaOptions::default()).unwrap();
    assert!((pt.rate - entropy(&p)).abs() < 1e-9);
    assert_eq!(pt.distortion, 0.0);
    assert!(pt.beta.is_infinite());
}

#[test]
fn straight_segment_is_time_shared() {
    // Erasure distortion: a binary uniform source, outputs {0, 1, e} with d(x, x) = 0,
    // d(x, e) = 1 and a prohibitive d(x, 1 − x). R(D) = (1 − D) ln 2 is a straight line:
    // at β = ln 2 every erasure channel is optimal and D(β) jumps from 1 to 0.
    let d = [0.0, 100.0, 1.0, 100.0, 0.0, 1.0];
    let prob = RdProblem::new(&[0.5, 0.5], d, 3, SUM_TOL_F64).unwrap();
    assert!((prob.d_max - 1.0).abs() < 1e-15);
    let pt = prob.at_distortion(0.3, &BaOptions::default()).unwrap();
    assert!(pt.time_shared);
    assert!((pt.distortion - 0.3).abs() < 1e-8, "{pt:?}");
    assert!((pt.rate - 0.7 * LN2).abs() < 1e-8, "R = {}", pt.rate);
    assert!((pt.beta - LN2).abs() < 1e-4, "β = {}", pt.beta);
    let (dd, rr) = reevaluate(&[0.5, 0.5], &d, &pt.channel, 3);
    assert!((dd - pt.distortion).abs() < 1e-12 && (rr - pt.rate).abs() < 1e-12);
}

#[test]
fn huge_beta_does_not_underflow() {
    let prob = bss();
    for beta in [1e3, 1e6, 1e300] {
        let pt = prob.solve(beta, None, &BaOptions::default()).unwrap();
        assert!(
            (pt.rate - LN2).abs() < 1e-9 && pt.distortion < 1e-9,
            "β = {beta}: {pt:?}"
        );
    }
    // Rows without a zero distortion are shifted, so nothing degenerates either.
    let d = [5.0, 6.0, 6.0, 5.0];
    let pt = RdProblem::new(&[0.5, 0.5], d, 2, SUM_TOL_F64)
        .unwrap()
        .solve(1e308, None, &BaOptions::default());
    let pt = pt.unwrap();
    assert!((pt.distortion - 5.0).abs() < 1e-9);
}

#[test]
fn bad_input_is_an_error() {
    let h = hamming(2);
    assert!(RdProblem::new(&[0.5, 0.6], &h[..], 2, SUM_TOL_F64).is_err());
    assert!(RdProblem::new(&[1.5, -0.5], &h[..], 2, SUM_TOL_F64).is_err());
    assert!(RdProblem::new(&[0.5, 0.5], &h[..3], 2, SUM_TOL_F64).is_err());
    assert!(RdProblem::new(&[0.5, 0.5], [0.0, -1.0, 1.0, 0.0], 2, SUM_TOL_F64).is_err());
    assert!(RdProblem::new(&[0.5, 0.5], [0.0, f64::NAN, 1.0, 0.0], 2, SUM_TOL_F64).is_err());
    // A matrix large enough to be checked on a second thread: the entry is named.
    let n = 300;
    let p = vec![1.0 / n as f64; n];
    for (bad, what) in [
        (f64::NAN, "NaN"),
        (-0.5, "negative"),
        (f64::INFINITY, "inf"),
    ] {
        let mut d = hamming(n);
        d[7 * n + 250] = bad;
        let e = RdProblem::new(&p, d, n, SUM_TOL_F64)
            .unwrap_err()
            .to_string();
        assert!(e.contains("entry (7, 250)") && e.contains(what), "{e}");
    }
    let prob = bss();
    let o = BaOptions::default();
    assert!(prob.solve(0.0, None, &o).is_err());
    assert!(prob.solve(-1.0, None, &o).is_err());
    assert!(prob.solve(f64::NAN, None, &o).is_err());
    assert!(prob.at_distortion(-0.1, &o).is_err());
    assert!(prob.at_distortion(f64::NAN, &o).is_err());
    assert!(prob
        .solve(
            1.0,
            None,
            &BaOptions {
                tol: 0.0,
                ..o.clone()
            }
        )
        .is_err());
    assert!(prob
        .solve(1.0, None, &BaOptions { max_iter: 0, ..o })
        .is_err());
}
