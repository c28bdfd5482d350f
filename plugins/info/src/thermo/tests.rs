//! Tests of the Boltzmann quantities against closed forms (`docs/measures.md` T17, T19).

use super::*;
use std::f64::consts::LN_2;

fn close(got: f64, want: f64, tol: f64) {
    assert!(
        (got - want).abs() <= tol,
        "got {got}, want {want} (|diff| = {} > {tol})",
        (got - want).abs()
    );
}

/// Deterministic pseudo-random logits (xorshift), roughly in [−scale, scale].
fn pseudo_logits(n: usize, seed: u64, scale: f64) -> Vec<f64> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            ((x >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0) * scale
        })
        .collect()
}

/// Naive reference: explicit probabilities, definitions as written in M1.
fn reference(z: &[f64], t: f64) -> Boltzmann {
    let zmax = z.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
    let zsum: f64 = z.iter().map(|&v| ((v - zmax) / t).exp()).sum();
    let log_z = zmax / t + zsum.ln();
    let p: Vec<f64> = z.iter().map(|&v| (v / t - log_z).exp()).collect();
    let f = -t * log_z;
    let u: f64 = p.iter().zip(z).map(|(p, v)| p * -v).sum();
    let h: f64 = -p
        .iter()
        .filter(|&&p| p > 0.0)
        .map(|p| p * p.ln())
        .sum::<f64>();
    let var: f64 = p.iter().zip(z).map(|(p, v)| p * (-v - u).powi(2)).sum();
    Boltzmann {
        log_z,
        free_energy: f,
        internal_energy: u,
        entropy: h,
        heat_capacity: var / (t * t),
    }
}

#[test]
fn t17_three_level_f32_and_f64() {
    // `docs/measures.md` T17 / M1: logits (0, ln 2, ln 4), Z = 7, p = (1, 2, 4)/7.
    let z64 = [0.0, LN_2, 4f64.ln()];
    let z32 = [0.0f32, LN_2 as f32, 4f64.ln() as f32];
    for (b, tol) in [
        (boltzmann(&z64, 1.0).unwrap(), 1e-12),
        (boltzmann(&z32, 1.0).unwrap(), 1e-7),
    ] {
        close(b.log_z, 7f64.ln(), tol);
        close(b.free_energy, -1.945_910_1, 1e-7);
        close(b.free_energy, -(7f64.ln()), tol);
        close(b.internal_energy, -0.990_210_3, 1e-7);
        close(b.internal_energy, -(10.0 / 7.0) * LN_2, tol);
        close(b.entropy, 0.955_699_9, 1e-7);
        close(b.entropy, 7f64.ln() - (10.0 / 7.0) * LN_2, tol);
        // Var_p(E) = (26/49) ln²2.
        close(b.heat_capacity, 26.0 / 49.0 * LN_2 * LN_2, tol);
        // H = (U − F)/T holds.
        close(b.entropy, b.internal_energy - b.free_energy, 1e-12);
    }
    let lp = log_softmax(&z64, 1.0).unwrap();
    for (l, p) in lp.iter().zip([1.0, 2.0, 4.0]) {
        close(*l, (p / 7.0f64).ln(), 1e-14);
    }
}

#[test]
fn t19_two_level() {
    // `docs/measures.md` T19: logits (0, 1), T = 1: C = σ(1)(1 − σ(1)), H = h(σ(1)).
    let b = boltzmann(&[0.0f32, 1.0], 1.0).unwrap();
    close(b.heat_capacity, 0.196_611_9, 1e-7);
    close(b.entropy, 0.582_203_1, 1e-7);
    let s = 1.0 / (1.0 + (-1f64).exp());
    close(b.heat_capacity, s * (1.0 - s), 1e-14);
    close(b.entropy, -(s * s.ln() + (1.0 - s) * (1.0 - s).ln()), 1e-14);
    // General Δ: C = Δ² σ(Δ)(1 − σ(Δ)).
    for delta in [0.5f64, 2.0, 7.0] {
        let s = 1.0 / (1.0 + (-delta).exp());
        let b = boltzmann(&[0.0, delta], 1.0).unwrap();
        close(b.heat_capacity, delta * delta * s * (1.0 - s), 1e-13);
    }
}

#[test]
fn uniform_law() {
    let v = 50_257usize;
    let z = vec![3.25f32; v];
    let b = boltzmann(&z, 1.0).unwrap();
    close(b.entropy, 10.8249, 1e-4);
    close(b.entropy, (v as f64).ln(), 1e-9);
    assert_eq!(b.heat_capacity, 0.0);
    // Every token has surprisal ln|V| (M10: constant logits give ℓ = ln|V|).
    close(surprisal(&z, 12_345, 1.0).unwrap(), (v as f64).ln(), 1e-9);
    // At any temperature.
    let b = boltzmann(&z, 0.37).unwrap();
    close(b.entropy, (v as f64).ln(), 1e-9);
    assert_eq!(b.heat_capacity, 0.0);
    for v in [1usize, 2, 3, 1000] {
        let b = boltzmann(&vec![-1.5f64; v], 1.0).unwrap();
        close(b.entropy, (v as f64).ln(), 1e-12);
        assert_eq!(b.heat_capacity, 0.0);
    }
}

#[test]
fn matches_naive_reference() {
    for (seed, t) in [(1u64, 1.0), (2, 0.5), (3, 2.0), (4, 0.1)] {
        let z = pseudo_logits(257, seed, 8.0);
        let got = boltzmann(&z, t).unwrap();
        let want = reference(&z, t);
        close(got.log_z, want.log_z, 1e-10);
        close(got.free_energy, want.free_energy, 1e-10);
        close(got.internal_energy, want.internal_energy, 1e-10);
        close(got.entropy, want.entropy, 1e-10);
        close(got.heat_capacity, want.heat_capacity, 1e-9);
        close(
            got.entropy,
            (got.internal_energy - got.free_energy) / t,
            1e-10,
        );
    }
}

#[test]
fn temperature_scaling() {
    // The law of z at temperature T is the law of z/T at temperature 1.
    let z = pseudo_logits(1000, 7, 6.0);
    for t in [0.25, 0.7, 1.0, 1.9, 10.0] {
        let zt: Vec<f64> = z.iter().map(|v| v / t).collect();
        let a = boltzmann(&z, t).unwrap();
        let b = boltzmann(&zt, 1.0).unwrap();
        close(a.entropy, b.entropy, 1e-10);
        close(a.heat_capacity, b.heat_capacity, 1e-9);
        close(a.log_z, b.log_z, 1e-10);
        // Energies carry the temperature: F_T(z) = T F_1(z/T), U likewise.
        close(a.free_energy, t * b.free_energy, 1e-9);
        close(a.internal_energy, t * b.internal_energy, 1e-9);
        close(
            surprisal(&z, 17, t).unwrap(),
            surprisal(&zt, 17, 1.0).unwrap(),
            1e-10,
        );
    }
    // Higher temperature, higher entropy (for a non-uniform law).
    let h: Vec<f64> = [0.5, 1.0, 2.0]
        .iter()
        .map(|&t| boltzmann(&z, t).unwrap().entropy)
        .collect();
    assert!(h[0] < h[1] && h[1] < h[2], "{h:?}");
}

#[test]
fn surprisal_is_minus_log_p() {
    let z = pseudo_logits(300, 11, 5.0);
    let zmax = z.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
    let zsum: f64 = z.iter().map(|&v| (v - zmax).exp()).sum();
    let b = boltzmann(&z, 1.0).unwrap();
    for x in [0usize, 1, 150, 299] {
        let p = (z[x] - zmax).exp() / zsum;
        let s = surprisal(&z, x, 1.0).unwrap();
        close(s, -p.ln(), 1e-12);
        // (E(x) − F)/T.
        close(s, -z[x] - b.free_energy, 1e-12);
    }
    // T17: −ln(4/7) for the top token.
    close(
        surprisal(&[0.0, LN_2, 4f64.ln()], 2, 1.0).unwrap(),
        (7.0f64 / 4.0).ln(),
        1e-14,
    );
    // A nearly certain token keeps full relative precision (ln_1p path).
    let s = surprisal(&[0.0f64, -40.0], 0, 1.0).unwrap();
    close(s / (-40f64).exp(), 1.0, 1e-12);
    // Entropy = expected surprisal.
    let p = log_softmax(&z, 1.0).unwrap();
    let h: f64 = (0..z.len())
        .map(|x| p[x].exp() * surprisal(&z, x, 1.0).unwrap())
        .sum();
    close(h, b.entropy, 1e-12);
}

#[test]
fn masked_logits() {
    let ninf = f32::NEG_INFINITY;
    // Masking entries must equal dropping them.
    let full = [0.0f32, ninf, LN_2 as f32, ninf, 4f64.ln() as f32];
    let kept = [0.0f32, LN_2 as f32, 4f64.ln() as f32];
    let a = boltzmann(&full, 1.0).unwrap();
    let b = boltzmann(&kept, 1.0).unwrap();
    for (x, y) in [
        (a.log_z, b.log_z),
        (a.free_energy, b.free_energy),
        (a.internal_energy, b.internal_energy),
        (a.entropy, b.entropy),
        (a.heat_capacity, b.heat_capacity),
    ] {
        assert!(x.is_finite());
        close(x, y, 1e-15);
    }
    assert_eq!(surprisal(&full, 1, 1.0).unwrap(), f64::INFINITY);
    close(surprisal(&full, 4, 1.0).unwrap(), (7.0f64 / 4.0).ln(), 1e-7);
    let lp = log_softmax(&full, 1.0).unwrap();
    assert_eq!(lp[1], f64::NEG_INFINITY);
    assert_eq!(lp[3], f64::NEG_INFINITY);
    assert!(lp.iter().all(|l| !l.is_nan()));
    // Only one entry left: a certain law.
    let one = boltzmann(&[ninf, 2.5, ninf], 1.0).unwrap();
    assert_eq!(one.entropy, 0.0);
    assert_eq!(one.heat_capacity, 0.0);
    close(one.free_energy, -2.5, 1e-15);
    close(one.internal_energy, -2.5, 1e-15);
    // Tiny temperatures drive the law to the argmax without NaN.
    let cold = boltzmann(&[1.0f32, 2.0, ninf], 1e-300).unwrap();
    assert_eq!(cold.entropy, 0.0);
    close(cold.free_energy, -2.0, 1e-12);
    assert!(!cold.heat_capacity.is_nan());
    // Large finite negative logits (not masked) underflow to p = 0 gracefully.
    let b = boltzmann(&[0.0f64, -1e6, -f64::MAX], 1.0).unwrap();
    assert_eq!(b.entropy, 0.0);
}

#[test]
fn errors() {
    let z = [0.0f32, 1.0];
    for t in [0.0, -1.0, f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
        assert!(matches!(
            boltzmann(&z, t),
            Err(ThermoError::InvalidTemperature(_))
        ));
    }
    let empty: [f32; 0] = [];
    assert_eq!(boltzmann(&empty, 1.0), Err(ThermoError::EmptyLogits));
    assert_eq!(
        boltzmann(&[f32::NEG_INFINITY; 3], 1.0),
        Err(ThermoError::AllMasked)
    );
    assert_eq!(
        boltzmann(&[0.0, f32::NAN], 1.0),
        Err(ThermoError::NanLogit { index: 1 })
    );
    assert_eq!(
        boltzmann(&[f32::INFINITY, 0.0], 1.0),
        Err(ThermoError::InfiniteLogit { index: 0 })
    );
    assert_eq!(
        surprisal(&z, 2, 1.0),
        Err(ThermoError::TokenOutOfRange { token: 2, vocab: 2 })
    );
    assert_eq!(
        kl(&[0.0f32, 1.0], &[0.0f32]),
        Err(ThermoError::LengthMismatch { left: 2, right: 1 })
    );
    assert!(logit_stats(&[1.0f32, f32::NAN]).is_err());
    // Messages are readable.
    let msg = ThermoError::InvalidTemperature(-1.0).to_string();
    assert!(msg.contains("temperature") && msg.contains("-1"), "{msg}");
}

#[test]
fn kl_divergence() {
    let z = pseudo_logits(500, 5, 4.0);
    assert_eq!(kl(&z, &z).unwrap(), 0.0);
    // Shifting every logit leaves the law unchanged.
    let shifted: Vec<f64> = z.iter().map(|v| v + 123.0).collect();
    close(kl(&z, &shifted).unwrap(), 0.0, 1e-12);
    // T12: p = (1, 2, 4)/7 against uniform q: ln 3 − H(p) = 0.1429124.
    let p = [0.0, LN_2, 4f64.ln()];
    let q = [0.0, 0.0, 0.0];
    close(kl(&p, &q).unwrap(), 0.142_912_4, 1e-7);
    close(
        kl(&p, &q).unwrap(),
        3f64.ln() - boltzmann(&p, 1.0).unwrap().entropy,
        1e-14,
    );
    // Reverse direction by hand: Σ (1/3) ln((1/3)/p_i).
    let rev = [1.0, 2.0, 4.0]
        .iter()
        .map(|n: &f64| (1.0 / 3.0) * ((1.0 / 3.0) / (n / 7.0)).ln())
        .sum::<f64>();
    close(kl(&q, &p).unwrap(), rev, 1e-14);
    // Two Bernoulli laws: p = σ(1), q = 1/2.
    let s = 1.0 / (1.0 + (-1f64).exp());
    let want = s * (2.0 * s).ln() + (1.0 - s) * (2.0 * (1.0 - s)).ln();
    close(kl(&[0.0f32, 1.0], &[0.0f32, 0.0]).unwrap(), want, 1e-12);
    // Zeros: p masked where q is not → finite; q masked where p is not → +inf.
    let ninf = f64::NEG_INFINITY;
    close(kl(&[0.0, ninf], &[0.0, 0.0]).unwrap(), LN_2, 1e-15);
    assert_eq!(kl(&[0.0, 0.0], &[0.0, ninf]).unwrap(), f64::INFINITY);
    assert_eq!(kl(&[0.0, ninf], &[0.0, ninf]).unwrap(), 0.0);
    // Against the naive sum on random laws; never negative.
    for seed in 20..30u64 {
        let a = pseudo_logits(64, seed, 3.0);
        let b = pseudo_logits(64, seed + 100, 3.0);
        let la = log_softmax(&a, 1.0).unwrap();
        let lb = log_softmax(&b, 1.0).unwrap();
        let want: f64 = la.iter().zip(&lb).map(|(x, y)| x.exp() * (x - y)).sum();
        let got = kl(&a, &b).unwrap();
        assert!(got >= 0.0);
        close(got, want, 1e-12);
    }
    // Temperature: KL_T(z, w) = KL_1(z/T, w/T).
    let a = pseudo_logits(64, 40, 3.0);
    let b = pseudo_logits(64, 41, 3.0);
    let t = 2.5;
    let at: Vec<f64> = a.iter().map(|v| v / t).collect();
    let bt: Vec<f64> = b.iter().map(|v| v / t).collect();
    close(
        kl_with_temperature(&a, &b, t).unwrap(),
        kl(&at, &bt).unwrap(),
        1e-12,
    );
}

#[test]
fn logit_norms() {
    let s = logit_stats(&[1.0f32, -3.0, 2.0, f32::NEG_INFINITY]).unwrap();
    assert_eq!(s.l1, 6.0);
    assert_eq!(s.linf, 3.0);
    assert_eq!(s.range, 5.0);
    let c = logit_stats(&[0.5f32; 10]).unwrap();
    assert_eq!((c.l1, c.linf, c.range), (5.0, 0.5, 0.0));
    assert_eq!(
        logit_stats(&[f32::NEG_INFINITY]),
        Err(ThermoError::AllMasked)
    );
    // M10: the loss never exceeds ln|V| + range(z).
    for seed in 50..60u64 {
        let z = pseudo_logits(1000, seed, 10.0);
        let st = logit_stats(&z).unwrap();
        let bound = (z.len() as f64).ln() + st.range;
        for x in 0..z.len() {
            let l = surprisal(&z, x, 1.0).unwrap();
            assert!(l >= 0.0 && l <= bound, "loss {l} > bound {bound}");
        }
        assert!(st.range <= 2.0 * st.linf && st.linf <= st.l1);
    }
}
