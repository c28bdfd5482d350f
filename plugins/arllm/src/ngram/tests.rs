use super::*;

fn lcg_tokens(seed: u64, n: usize, modulo: u32) -> Vec<u32> {
    let mut x = seed;
    (0..n)
        .map(|_| {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((x >> 33) % modulo as u64) as u32
        })
        .collect()
}

fn h2(p: f64) -> f64 {
    -(p * p.ln() + (1.0 - p) * (1.0 - p).ln())
}

fn bits(v: &[f64]) -> Vec<u64> {
    v.iter().map(|x| x.to_bits()).collect()
}

/// (a) Two-state chain p(1|0) = 1/4, p(0|1) = 1/2 fitted exactly by maximum likelihood.
#[test]
fn two_state_chain_closed_form() {
    let n = 50;
    let mut seq: Vec<u32> = Vec::new();
    for _ in 0..n {
        seq.extend_from_slice(&[0, 0, 0, 0, 1, 1]);
    }
    seq.push(0);
    // Transition counts: 0->0 3n, 0->1 n, 1->1 n, 1->0 n.
    let m = fit(
        std::slice::from_ref(&seq),
        1,
        2,
        Smoothing::AddK { k: 0.0 },
        1.0,
    )
    .unwrap();
    assert_eq!(m.count(&[0], 0), 3 * n as u64);
    assert_eq!(m.count(&[0], 1), n as u64);
    assert_eq!(m.count(&[1], 0), n as u64);
    assert_eq!(m.count(&[1], 1), n as u64);
    let p = |prev: u32, next: u32| match (prev, next) {
        (0, 0) => 0.75f64,
        (0, _) => 0.25,
        (_, 0) => 0.5,
        _ => 0.5,
    };
    let s = m.surprisals(&seq);
    for t in 1..seq.len() {
        let want = -p(seq[t - 1], seq[t]).ln();
        assert!((s[t] - want).abs() < 1e-9, "t={t}: {} vs {want}", s[t]);
    }
    // Position 0 has no previous token: the unigram law (4n+1 zeros in 6n+1 tokens).
    let p0 = (4 * n + 1) as f64 / (6 * n + 1) as f64;
    assert!((s[0] + p0.ln()).abs() < 1e-12);

    let pi = m.stationary().unwrap();
    assert!(
        (pi[0] - 2.0 / 3.0).abs() < 1e-9 && (pi[1] - 1.0 / 3.0).abs() < 1e-9,
        "{pi:?}"
    );
    let h = 2.0 / 3.0 * h2(0.25) + 1.0 / 3.0 * h2(0.5);
    let got = m.entropy_rate().unwrap();
    assert!((got - h).abs() < 1e-9, "{got} vs {h}");
    // Independent value (Python, f64): 2/3 * h(1/4) + 1/3 * ln 2.
    assert!((h - 0.605_939_156_599_187_3).abs() < 1e-15, "{h}");
}

/// (b) Ablating a position older than t - k leaves the law bit-identical.
#[test]
fn ablation_outside_window_is_exact() {
    let data = vec![lcg_tokens(1, 400, 5), lcg_tokens(2, 300, 5)];
    // Hand-made sequence whose window tokens differ from their neighbours.
    let tokens: Vec<u32> = vec![0, 1, 2, 3, 4, 0, 2, 4, 1, 3, 0, 2, 1, 4, 3];
    let t = 12;
    for smoothing in [
        Smoothing::KneserNey { discount: 0.75 },
        Smoothing::AddK { k: 0.5 },
    ] {
        let m = fit(&data, 2, 6, smoothing, 0.8).unwrap();
        let full = m.log_probs(&tokens[..t]);
        assert_eq!(context_without(&tokens, t, &[]), tokens[..t].to_vec());
        for j in 0..t - 2 {
            let ctx = context_without(&tokens, t, &[j]);
            assert_eq!(ctx.len(), t - 1);
            assert_eq!(bits(&m.log_probs(&ctx)), bits(&full), "j={j}");
        }
        assert_eq!(
            bits(&m.log_probs(&context_without(&tokens, t, &[0, 3, 7]))),
            bits(&full)
        );
        // Future positions are ignored.
        assert_eq!(
            context_without(&tokens, t, &[t, t + 1]),
            tokens[..t].to_vec()
        );
        for j in [t - 2, t - 1] {
            let ctx = context_without(&tokens, t, &[j]);
            assert_ne!(bits(&m.log_probs(&ctx)), bits(&full), "j={j}");
        }
    }
    // Removal slides older tokens in.
    assert_eq!(context_without(&[10, 11, 12, 13], 3, &[1]), vec![10, 12]);
    assert_eq!(context_without(&[10, 11], 9, &[0]), vec![11]);
}

fn assert_normalized(m: &NgramModel, ctx: &[u32]) {
    let lp = m.log_probs(ctx);
    assert_eq!(lp.len(), m.vocab_size());
    let s: f64 = lp.iter().map(|x| x.exp()).sum();
    assert!((s - 1.0).abs() < 1e-12, "ctx {ctx:?}: sum {s}");
    assert!(
        lp.iter().all(|&x| x.is_finite()),
        "ctx {ctx:?}: a zero probability"
    );
    let p = m.probs(ctx);
    let s: f64 = p.iter().sum();
    assert!((s - 1.0).abs() < 1e-12 && p.iter().all(|&x| x > 0.0));
}

/// (c) Kneser-Ney laws are normalized and positive everywhere.
#[test]
fn kneser_ney_normalized_and_positive() {
    let data = vec![lcg_tokens(3, 2000, 20), lcg_tokens(4, 50, 20), vec![7]];
    let seen = &data[0][100..103];
    for bos in [None, Some(49)] {
        for (d, t) in [(0.75, 1.0), (1.0, 1.0), (0.1, 0.6), (0.5, 3.0)] {
            let m =
                fit_with_bos(&data, 3, 50, Smoothing::KneserNey { discount: d }, t, bos).unwrap();
            for ctx in [
                seen,
                &[][..],
                &[5],
                &[5, 6],
                &[30, 31, 32],
                &[1, 30, 2],
                &[10_000, 3, 4],
                &[1, 2, 3, 4, 5, 6, 7],
            ] {
                assert_normalized(&m, ctx);
            }
        }
    }
    // A large vocabulary.
    let big: Vec<u32> = lcg_tokens(5, 5000, 49152);
    let m = fit(
        std::slice::from_ref(&big),
        2,
        49152,
        Smoothing::KneserNey { discount: 0.75 },
        1.0,
    )
    .unwrap();
    assert_normalized(&m, &big[10..12]);
    assert_normalized(&m, &[1, 2]);
}

/// Interpolated Kneser-Ney against values computed by hand.
#[test]
fn kneser_ney_hand_values() {
    // Data 0 1 0 1 2, V = 4, D = 1/2, order 1.
    // Level 0 continuation counts: N1+(• 0) = N1+(• 1) = N1+(• 2) = 1 (of 3),
    // p0(v) = 0.5·3/3 · 1/4 + (1 − 0.5)/3 = 0.125 + 1/6 for v in {0,1,2}; p0(3) = 0.125.
    let m = fit(
        &[vec![0, 1, 0, 1, 2]],
        1,
        4,
        Smoothing::KneserNey { discount: 0.5 },
        1.0,
    )
    .unwrap();
    let p0 = [
        0.125 + 1.0 / 6.0,
        0.125 + 1.0 / 6.0,
        0.125 + 1.0 / 6.0,
        0.125,
    ];
    // Context [1]: c = {0: 1, 2: 1}, γ = 0.5·2/2.
    let want1 = [
        0.25 + 0.5 * p0[0],
        0.5 * p0[1],
        0.25 + 0.5 * p0[2],
        0.5 * p0[3],
    ];
    // Context [0]: c = {1: 2}, γ = 0.5·1/2.
    let want0 = [
        0.25 * p0[0],
        1.5 / 2.0 + 0.25 * p0[1],
        0.25 * p0[2],
        0.25 * p0[3],
    ];
    // Empty context (position 0): raw unigram counts {0: 2, 1: 2, 2: 1} over uniform.
    let want_empty = [0.3 + 0.075, 0.3 + 0.075, 0.1 + 0.075, 0.075];
    for (ctx, want) in [
        (&[1u32][..], want1),
        (&[0], want0),
        (&[3], p0),
        (&[], want_empty),
    ] {
        let p = m.probs(ctx);
        for v in 0..4 {
            assert!(
                (p[v] - want[v]).abs() < 1e-15,
                "ctx {ctx:?} v {v}: {} vs {}",
                p[v],
                want[v]
            );
        }
    }
}

/// AddK with k = 0 is maximum likelihood; unseen contexts back off to their longest seen
/// suffix; short start-of-sequence contexts use the lower order.
#[test]
fn add_k_backoff_and_short_contexts() {
    let m = fit(
        &[vec![0, 1, 0, 1, 1]],
        2,
        4,
        Smoothing::AddK { k: 0.0 },
        1.0,
    )
    .unwrap();
    // Position 1: context [0] (length 1 < order 2): raw counts of 0 -> {1: 2}.
    assert_eq!(m.log_prob(&[0], 1), 0.0);
    assert_eq!(m.log_prob(&[0], 0), f64::NEG_INFINITY);
    // Position 0: unigram 2/5.
    assert!((m.log_prob(&[], 0) - 0.4f64.ln()).abs() < 1e-15);
    // Unseen [3, 3] -> unseen [3] -> unigram {0: 2/5, 1: 3/5}.
    let p = m.probs(&[3, 3]);
    assert_eq!(p, vec![0.4, 0.6, 0.0, 0.0]);
    // Unseen [3, 0] backs off to [0].
    assert_eq!(m.probs(&[3, 0]), vec![0.0, 1.0, 0.0, 0.0]);
    // Seen [1, 0]: {1: 1}.
    assert_eq!(m.probs(&[1, 0]), vec![0.0, 1.0, 0.0, 0.0]);
    // Seen [0, 1]: {0: 1, 1: 1}.
    assert_eq!(m.probs(&[0, 1]), vec![0.5, 0.5, 0.0, 0.0]);
    // k = 1 on a seen context: (c + 1) / (2 + 4).
    let m1 = fit(
        &[vec![0, 1, 0, 1, 1]],
        2,
        4,
        Smoothing::AddK { k: 1.0 },
        1.0,
    )
    .unwrap();
    let p = m1.probs(&[0, 1]);
    for (v, want) in [2.0 / 6.0, 2.0 / 6.0, 1.0 / 6.0, 1.0 / 6.0]
        .iter()
        .enumerate()
    {
        assert!((p[v] - want).abs() < 1e-15);
    }

    // With a bos token every context is padded to order k.
    let b = fit_with_bos(
        &[vec![0, 1], vec![0, 2]],
        2,
        4,
        Smoothing::AddK { k: 0.0 },
        1.0,
        Some(3),
    )
    .unwrap();
    assert_eq!(b.window(&[]), vec![3, 3]);
    assert_eq!(b.window(&[0]), vec![3, 0]);
    assert_eq!(b.probs(&[]), vec![1.0, 0.0, 0.0, 0.0]);
    assert_eq!(b.probs(&[0]), vec![0.0, 0.5, 0.5, 0.0]);
    assert_eq!(b.count(&[3, 3], 0), 2);
    assert_eq!(b.count(&[], 3), 0, "bos is never a target");
}

/// (d) Temperature: T = 1 is the fitted law; larger T flattens it; logits = ln p / T.
#[test]
fn temperature_behaviour() {
    let data = vec![vec![0, 0, 0, 0, 0, 0, 1, 1, 2, 0, 0, 1, 0, 0, 3]];
    let base = fit(&data, 0, 5, Smoothing::AddK { k: 1.0 }, 1.0).unwrap();
    // Unigram counts {0: 10, 1: 3, 2: 1, 3: 1}, total 15, V = 5: p = (c + 1)/20.
    let p1 = [11.0 / 20.0, 4.0 / 20.0, 2.0 / 20.0, 2.0 / 20.0, 1.0 / 20.0];
    let lp = base.log_probs(&[]);
    for v in 0..5 {
        assert!((lp[v] - f64::ln(p1[v])).abs() < 1e-15);
    }
    // T = 2: p_T ∝ sqrt(p).
    let z: f64 = p1.iter().map(|p| p.sqrt()).sum();
    let mut hot = base.clone();
    hot.set_temperature(2.0).unwrap();
    let lp2 = hot.log_probs(&[]);
    for v in 0..5 {
        assert!((lp2[v].exp() - p1[v].sqrt() / z).abs() < 1e-14);
        assert_eq!(hot.log_prob(&[], v as u32).to_bits(), lp2[v].to_bits());
    }
    // Entropy grows with T towards ln V and falls towards 0 as T -> 0.
    let mut last = 0.0;
    for t in [0.05, 0.5, 1.0, 2.0, 10.0] {
        let h = entropy_of_log_probs(&base.log_probs_at(&[], t));
        assert!(h > last, "T={t}: {h} <= {last}");
        last = h;
    }
    assert!((entropy_of_log_probs(&base.log_probs_at(&[], 1e9)) - 5f64.ln()).abs() < 1e-8);
    assert!(entropy_of_log_probs(&base.log_probs_at(&[], 0.01)) < 1e-10);
    // Logits: ln p / T in f32, softmax(logits) = law at T.
    let logits = hot.logits(&[]);
    let lse = log_sum_exp(&logits.iter().map(|&x| x as f64).collect::<Vec<_>>());
    for v in 0..5 {
        assert_eq!(logits[v], (p1[v].ln() / 2.0) as f32);
        assert!(((logits[v] as f64 - lse) - lp2[v]).abs() < 1e-6);
        assert!((logits[v] as f64 * 2.0 - lp[v]).abs() < 1e-6);
    }
    assert!(hot.set_temperature(0.0).is_err());
    assert!(hot.set_temperature(f64::INFINITY).is_err());
    assert!(hot.set_temperature(f64::NAN).is_err());
}

#[test]
fn log_prob_matches_log_probs_bitwise() {
    let data = vec![lcg_tokens(9, 500, 7)];
    for smoothing in [
        Smoothing::KneserNey { discount: 0.6 },
        Smoothing::AddK { k: 0.0 },
    ] {
        for t in [1.0, 0.7] {
            let m = fit(&data, 2, 8, smoothing, t).unwrap();
            for ctx in [&[][..], &[1], &[1, 2], &[7, 7], &[0, 0, 3]] {
                let lp = m.log_probs(ctx);
                for v in 0..8u32 {
                    assert_eq!(m.log_prob(ctx, v).to_bits(), lp[v as usize].to_bits());
                }
                assert_eq!(m.log_prob(ctx, 8), f64::NEG_INFINITY);
            }
        }
    }
}

#[test]
fn sample_is_inverse_cdf() {
    // p = (0, 3/4, 1/4, 0).
    let m = fit(&[vec![1, 1, 1, 2]], 0, 4, Smoothing::AddK { k: 0.0 }, 1.0).unwrap();
    assert_eq!(m.sample(&[], 0.0), 1);
    assert_eq!(m.sample(&[], 0.7499), 1);
    assert_eq!(m.sample(&[], 0.7501), 2);
    assert_eq!(m.sample(&[], 0.999_999_999), 2);
    assert_eq!(m.sample(&[], 1.0), 2);
    assert_eq!(m.sample(&[], 7.0), 2);
    assert_eq!(m.sample(&[], -1.0), 1);
    assert_eq!(m.sample(&[], f64::NAN), 1);
    // Frequencies of generated tokens follow the law.
    let g = m.generate(&[], 20_000, 11);
    let ones = g.iter().filter(|&&x| x == 1).count() as f64 / g.len() as f64;
    assert!((ones - 0.75).abs() < 0.02, "{ones}");
    assert!(g.iter().all(|&x| x == 1 || x == 2));
}

/// (f) Generation is deterministic in the seed.
#[test]
fn generate_is_deterministic() {
    let m = fit(
        &[lcg_tokens(6, 1000, 9)],
        2,
        10,
        Smoothing::KneserNey { discount: 0.75 },
        1.2,
    )
    .unwrap();
    let a = m.generate(&[1, 2, 3], 200, 42);
    let b = m.generate(&[1, 2, 3], 200, 42);
    let c = m.generate(&[1, 2, 3], 200, 43);
    assert_eq!(a.len(), 200);
    assert_eq!(a, b);
    assert_ne!(a, c);
    assert!(a.iter().all(|&x| x < 10));
    assert!(m.generate(&[], 0, 1).is_empty());
}

#[test]
fn fit_errors() {
    let kn = Smoothing::KneserNey { discount: 0.75 };
    let e = fit(&[vec![0, 1], vec![2, 3, 7]], 1, 5, kn, 1.0).unwrap_err();
    assert!(
        e.contains("token 7") && e.contains("sequence 1, position 2"),
        "{e}"
    );
    let e = fit(&[vec![0, 1, 2]], 3, 5, kn, 1.0).unwrap_err();
    assert!(e.contains("order 3 is too large"), "{e}");
    // The same data is fine with a bos token.
    assert!(fit_with_bos(&[vec![0, 1, 2]], 3, 5, kn, 1.0, Some(4)).is_ok());
    assert!(fit_with_bos(&[vec![0]], 1, 5, kn, 1.0, Some(5))
        .unwrap_err()
        .contains("bos"));
    assert!(fit(&[vec![], vec![]], 0, 5, kn, 1.0)
        .unwrap_err()
        .contains("no tokens"));
    assert!(fit(&[], 0, 5, kn, 1.0).is_err());
    for d in [0.0, -0.5, 1.5, f64::NAN] {
        let e = fit(
            &[vec![0, 1]],
            1,
            5,
            Smoothing::KneserNey { discount: d },
            1.0,
        )
        .unwrap_err();
        assert!(e.contains("discount"), "{e}");
    }
    for k in [-1.0, f64::INFINITY, f64::NAN] {
        assert!(fit(&[vec![0, 1]], 1, 5, Smoothing::AddK { k }, 1.0).is_err());
    }
    for t in [0.0, -1.0, f64::INFINITY, f64::NAN] {
        let e = fit(&[vec![0, 1]], 1, 5, kn, t).unwrap_err();
        assert!(e.contains("temperature"), "{e}");
    }
    assert!(fit(&[vec![0]], 0, 0, kn, 1.0)
        .unwrap_err()
        .contains("vocab_size"));
}

#[test]
fn smoothing_can_change_without_refit() {
    let data = vec![lcg_tokens(8, 300, 4)];
    let mut m = fit(&data, 1, 4, Smoothing::KneserNey { discount: 0.75 }, 1.0).unwrap();
    m.set_smoothing(Smoothing::AddK { k: 0.0 }).unwrap();
    let direct = fit(&data, 1, 4, Smoothing::AddK { k: 0.0 }, 1.0).unwrap();
    assert_eq!(m, direct);
    assert!(m
        .set_smoothing(Smoothing::KneserNey { discount: 2.0 })
        .is_err());
    assert_eq!(m.num_contexts(1), 4);
    assert_eq!(m.num_contexts(5), 0);
    assert!(m.num_ngrams(1) <= 16);
}
