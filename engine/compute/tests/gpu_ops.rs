//! Every GPU op against the CPU backend on small shapes (relative error <= 1e-4 of the
//! largest magnitude), plus device residency: results stay on the device, are read back
//! once, pipelines are compiled once and buffers are reused.
//!
//! Runs on any adapter, software ones included (lavapipe in CI); with none at all each
//! test prints why and passes, except under CI, where it fails.
#![cfg(feature = "gpu")]

mod common;

use std::sync::OnceLock;

use tokit_compute::{
    AttnMask, Backend, BinaryOp, CpuBackend, GpuBackend, ReduceOp, Tensor, UnaryOp,
};

fn gpu() -> Option<&'static GpuBackend> {
    static GPU: OnceLock<Option<GpuBackend>> = OnceLock::new();
    GPU.get_or_init(|| match GpuBackend::new(true, Some(1)) {
        Ok(g) => {
            eprintln!("gpu_ops: running on {}", g.adapter());
            Some(g)
        }
        Err(e) => {
            common::no_adapter("gpu_ops", format!("{e:#}"));
            None
        }
    })
    .as_ref()
}

fn cpu() -> &'static CpuBackend {
    static CPU: OnceLock<CpuBackend> = OnceLock::new();
    CPU.get_or_init(|| CpuBackend::new(Some(1)))
}

/// Deterministic values in [-scale, scale).
fn rand(shape: &[usize], seed: u64, scale: f32) -> Tensor {
    let n = shape.iter().product();
    let mut s = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    let data = (0..n)
        .map(|_| {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((s >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0) * scale
        })
        .collect();
    Tensor::new(shape.to_vec(), data).unwrap()
}

/// Same shape, same non-finite entries, finite ones within 1e-4 of the largest.
fn assert_close(what: &str, g: &Tensor, c: &Tensor) {
    assert_eq!(g.shape(), c.shape(), "{what}: shapes");
    let scale = c
        .data()
        .iter()
        .filter(|v| v.is_finite())
        .fold(0f32, |m, v| m.max(v.abs()))
        .max(1e-30);
    for (i, (&x, &y)) in g.data().iter().zip(c.data()).enumerate() {
        if !y.is_finite() {
            assert!(
                x == y || (x.is_nan() && y.is_nan()),
                "{what}[{i}]: gpu {x} vs cpu {y}"
            );
            continue;
        }
        let rel = (x - y).abs() / scale;
        assert!(
            rel <= 1e-4,
            "{what}[{i}]: gpu {x} vs cpu {y} (relative error {rel:e})"
        );
    }
}

macro_rules! both {
    ($what:expr, |$b:ident| $e:expr) => {{
        let Some(g) = gpu() else { return };
        let gr = {
            let $b: &dyn Backend = g;
            $e
        };
        let cr = {
            let $b: &dyn Backend = cpu();
            $e
        };
        assert_close(&$what, &gr.unwrap(), &cr.unwrap());
    }};
}

#[test]
fn matmul_plain_transposed_batched() {
    for (sa, sb, ta, tb) in [
        (vec![5, 7], vec![7, 3], false, false),
        (vec![7, 5], vec![7, 3], true, false),
        (vec![5, 7], vec![3, 7], false, true),
        (vec![7, 5], vec![3, 7], true, true),
        (vec![70, 130], vec![65, 130], false, true),
        (vec![2, 1, 5, 7], vec![3, 7, 4], false, false),
        (vec![3, 4, 6], vec![6, 2], false, false),
        (vec![2, 6, 4], vec![2, 5, 6], true, true),
    ] {
        let (a, b) = (rand(&sa, 1, 1.0), rand(&sb, 2, 1.0));
        both!(format!("matmul {sa:?} {sb:?} {ta} {tb}"), |be| be
            .matmul(&a, &b, ta, tb));
    }
}

#[test]
fn binary_ops_broadcast() {
    let a = rand(&[2, 3, 4], 3, 2.0);
    let b = rand(&[3, 1], 4, 2.0);
    let s = Tensor::scalar(0.5);
    for &op in BinaryOp::ALL {
        both!(format!("{op:?} broadcast"), |be| be.binary(op, &a, &b));
        both!(format!("{op:?} scalar"), |be| be.binary(op, &s, &a));
        both!(format!("{op:?} same"), |be| be.binary(op, &a, &a));
    }
}

#[test]
fn unary_ops_and_affine() {
    let x = rand(&[3, 50], 5, 6.0);
    let pos = cpu().unary(UnaryOp::Abs, &x).unwrap();
    let wide = rand(&[64], 6, 40.0);
    for &op in UnaryOp::ALL {
        let input = if matches!(op, UnaryOp::Log | UnaryOp::Sqrt | UnaryOp::Rsqrt) {
            &pos
        } else {
            &x
        };
        both!(format!("{op:?}"), |be| be.unary(op, input));
        if !matches!(
            op,
            UnaryOp::Log | UnaryOp::Sqrt | UnaryOp::Rsqrt | UnaryOp::Exp
        ) {
            both!(format!("{op:?} wide"), |be| be.unary(op, &wide));
        }
    }
    both!("affine", |be| be.affine(&x, -1.5, 0.25));
}

#[test]
fn softmax_and_log_softmax_with_masked_rows() {
    let mut d = rand(&[4, 9], 7, 5.0).to_vec();
    for v in &mut d[9..18] {
        *v = f32::NEG_INFINITY;
    }
    d[20] = f32::NEG_INFINITY;
    let x = Tensor::new(vec![4, 9], d).unwrap();
    let big = rand(&[2, 300], 8, 10.0);
    for axis in [-1, 0] {
        both!(format!("softmax {axis}"), |be| be.softmax(&x, axis));
        both!(format!("log_softmax {axis}"), |be| be.log_softmax(&x, axis));
    }
    both!("softmax wide", |be| be.softmax(&big, 1));
    both!("log_softmax wide", |be| be.log_softmax(&big, -1));
}

#[test]
fn reductions_every_axis() {
    let x = rand(&[3, 4, 5], 9, 3.0);
    let long = rand(&[2, 700], 10, 3.0);
    for &op in ReduceOp::ALL {
        for axis in [0, 1, -1] {
            for keep in [false, true] {
                both!(format!("{op:?} {axis} {keep}"), |be| be
                    .reduce(op, &x, axis, keep));
            }
        }
        both!(format!("{op:?} long"), |be| be.reduce(op, &long, 1, false));
    }
    let g = gpu();
    if let Some(g) = g {
        assert!(g
            .reduce(ReduceOp::Max, &Tensor::zeros(vec![2, 0]), 1, false)
            .is_err());
    }
}

#[test]
fn norms() {
    let x = rand(&[3, 2, 40], 11, 2.0);
    let gate = rand(&[3, 2, 40], 12, 2.0);
    let w = rand(&[40], 13, 1.0);
    let b = rand(&[40], 14, 1.0);
    both!("layer_norm", |be| be.layer_norm(
        &x,
        Some(&w),
        Some(&b),
        1e-5
    ));
    both!("layer_norm bare", |be| be.layer_norm(&x, None, None, 1e-5));
    both!("layer_norm w", |be| be.layer_norm(&x, Some(&w), None, 1e-5));
    both!("rms_norm", |be| be.rms_norm(&x, Some(&w), 1e-6));
    both!("rms_norm bare", |be| be.rms_norm(&x, None, 1e-6));
    for before in [false, true] {
        both!(format!("gated {before}"), |be| be.rms_norm_gated(
            &x,
            &gate,
            Some(&w),
            1e-6,
            before
        ));
        both!(format!("gated bare {before}"), |be| be
            .rms_norm_gated(&x, &gate, None, 1e-6, before));
    }
    if let Some(g) = gpu() {
        assert!(g
            .rms_norm(&x, Some(&b.with_shape(vec![40, 1]).unwrap()), 1e-6)
            .is_err());
    }
}

#[test]
fn embedding_and_index_select() {
    let table = rand(&[11, 6], 15, 1.0);
    both!("embedding", |be| be.embedding(&table, &[3, 0, 10, 3]));
    let x = rand(&[3, 4, 5], 16, 1.0);
    for axis in [0, 1, 2] {
        both!(format!("index_select {axis}"), |be| be.index_select(
            &x,
            axis,
            &[2, 0, 2]
        ));
    }
    if let Some(g) = gpu() {
        let err = g.embedding(&table, &[11]).unwrap_err().to_string();
        assert!(err.contains("out of range"), "{err}");
    }
}

#[test]
fn rope_layouts_and_partial_rotary() {
    let x = rand(&[2, 5, 8], 17, 1.0);
    let positions = [0, 1, 2, 700, 4096];
    let full: Vec<f32> = (0..4).map(|i| 10000f32.powf(-(i as f32) / 4.0)).collect();
    for interleaved in [false, true] {
        both!(format!("rope {interleaved}"), |be| be.rope(
            &x,
            &positions,
            &full,
            interleaved
        ));
        both!(format!("rope partial {interleaved}"), |be| be.rope(
            &x,
            &positions,
            &full[..2],
            interleaved
        ));
    }
}

#[test]
fn attention_masks_and_gqa() {
    let q = rand(&[4, 5, 8], 18, 1.0);
    let k = rand(&[2, 7, 8], 19, 1.0);
    let v = rand(&[2, 7, 6], 20, 1.0);
    let masks = [
        AttnMask::none(),
        AttnMask {
            causal: true,
            q_offset: 2,
            ..AttnMask::default()
        },
        AttnMask {
            causal: true,
            q_offset: 2,
            window: Some(3),
            ..AttnMask::default()
        },
        AttnMask {
            causal: true,
            q_offset: 2,
            key_keep: Some(vec![true, false, true, true, false, true, true]),
            window: None,
        },
        // Query 0 sees only key 0, which is removed: an all-masked row.
        AttnMask {
            causal: true,
            q_offset: 0,
            key_keep: Some(vec![false, true, true, true, true, true, true]),
            window: None,
        },
    ];
    for (i, m) in masks.iter().enumerate() {
        both!(format!("attention {i}"), |be| be
            .attention(&q, &k, &v, m, 0.35));
        let Some(g) = gpu() else { return };
        let (go, gs, gp) = g.attention_with_probs(&q, &k, &v, m, 0.35).unwrap();
        let (co, cs, cp) = cpu().attention_with_probs(&q, &k, &v, m, 0.35).unwrap();
        assert_close(&format!("attention {i} out"), &go, &co);
        assert_close(&format!("attention {i} scores"), &gs, &cs);
        assert_close(&format!("attention {i} pattern"), &gp, &cp);
    }
}

#[test]
fn layout_ops() {
    let x = rand(&[2, 3, 4], 21, 1.0);
    let y = rand(&[2, 5, 4], 22, 1.0);
    both!("reshape", |be| be.reshape(&x, &[-1, 4]));
    both!("permute", |be| be.permute(&x, &[2, 0, 1]));
    both!("permute id", |be| be.permute(&x, &[0, 1, 2]));
    both!("slice", |be| be.slice(&x, 1, 1, 3));
    both!("slice last", |be| be.slice(&x, -1, 2, 4));
    both!("concat", |be| be.concat(&[&x, &y, &x], 1));
    both!("concat 0", |be| be.concat(&[&x, &x], 0));
    both!("empty slice", |be| be.slice(&x, 0, 1, 1));
}

#[test]
fn conv1d_causal_with_and_without_bias_and_prefix() {
    for (t, c, k) in [(7, 5, 4), (1, 6, 4), (9, 3, 1), (300, 3, 2)] {
        let x = rand(&[t, c], 26, 1.0);
        let w = rand(&[c, k], 27, 1.0);
        let bias = rand(&[c], 28, 1.0);
        let prefix = rand(&[k - 1, c], 29, 1.0);
        for (bi, pre) in [
            (None, None),
            (Some(&bias), None),
            (None, Some(&prefix)),
            (Some(&bias), Some(&prefix)),
        ] {
            both!(
                format!(
                    "conv1d_causal {t}x{c} K {k} {} {}",
                    bi.is_some(),
                    pre.is_some()
                ),
                |be| be.conv1d_causal(&x, &w, bi, pre)
            );
        }
    }
}

/// A scan's inputs `(x, a, B, C, h0)`; decays in [0.5, 1) with some exactly 0.
fn scan_case(t: usize, h: usize, p: usize, g: usize, n: usize, seed: u64) -> [Tensor; 5] {
    let a: Vec<f32> = rand(&[t, h], seed, 1.0)
        .data()
        .iter()
        .enumerate()
        .map(|(i, v)| if i % 7 == 3 { 0.0 } else { 0.75 + 0.25 * v })
        .collect();
    [
        rand(&[t, h, p], seed + 1, 1.0),
        Tensor::new(vec![t, h], a).unwrap(),
        rand(&[t, g, n], seed + 2, 1.0),
        rand(&[t, g, n], seed + 3, 1.0),
        rand(&[h, p, n], seed + 4, 1.0),
    ]
}

#[test]
fn ssd_scan_matches_the_chunked_cpu_scan() {
    for (t, h, p, g, n, chunk) in [
        (13, 4, 3, 2, 5, 4),
        (40, 4, 16, 1, 8, 7),
        (40, 4, 16, 2, 8, 8),
        (9, 3, 2, 3, 4, 1),
        (1, 2, 3, 1, 4, 8),
        (200, 2, 4, 1, 16, 64),
    ] {
        let [x, a, b, c, h0] = scan_case(t, h, p, g, n, 30);
        for init in [None, Some(&h0)] {
            both!(
                format!(
                    "ssd_scan T {t} H {h} P {p} G {g} N {n} chunk {chunk} h0 {}",
                    init.is_some()
                ),
                |be| be.ssd_scan(&x, &a, &b, &c, init, chunk)
            );
        }
    }
}

#[test]
fn ssm_states_at_chosen_positions() {
    let (t, h, p, g, n) = (20, 4, 3, 2, 5);
    let [x, a, b, _, h0] = scan_case(t, h, p, g, n, 40);
    let all: Vec<usize> = (0..t).collect();
    for positions in [&all[..], &[19, 0, 7, 7, 3], &[0], &[5, 2], &[]] {
        for init in [None, Some(&h0)] {
            both!(
                format!("ssm_states at {positions:?} h0 {}", init.is_some()),
                |be| be.ssm_states(&x, &a, &b, init, positions)
            );
        }
    }
    // One decoding step from a carried state.
    let [x, a, b, _, h0] = scan_case(1, h, p, g, n, 41);
    both!("ssm_states step", |be| be.ssm_states(
        &x,
        &a,
        &b,
        Some(&h0),
        &[0]
    ));
}

#[test]
fn ssm_ops_stay_on_the_device_and_reject_bad_shapes_like_the_cpu() {
    // Its own device, so the counters see only this test.
    let g = match GpuBackend::new(true, Some(1)) {
        Ok(g) => g,
        Err(e) => return common::no_adapter("gpu_ops", format!("{e:#}")),
    };
    let [x, a, b, c, h0] = scan_case(8, 2, 3, 1, 4, 50);
    let (u, w) = (rand(&[8, 6], 51, 1.0), rand(&[6, 4], 52, 1.0));
    let conv = g.conv1d_causal(&u, &w, None, None).unwrap();
    let y = g.ssd_scan(&x, &a, &b, &c, Some(&h0), 4).unwrap();
    let states = g.ssm_states(&x, &a, &b, None, &[7]).unwrap();
    assert!(!conv.on_host() && !y.on_host() && !states.on_host());
    let s = g.stats();
    assert_eq!((s.readbacks, s.cpu_fallbacks), (0, 0), "{s:?}");

    let bad = Tensor::zeros(vec![8, 3]);
    type Op<'a> = &'a dyn Fn(&dyn Backend) -> anyhow::Result<Tensor>;
    let cases: [(&str, Op); 4] = [
        ("conv weight", &|be| be.conv1d_causal(&u, &bad, None, None)),
        ("scan decay", &|be| be.ssd_scan(&x, &bad, &b, &c, None, 4)),
        ("scan chunk", &|be| be.ssd_scan(&x, &a, &b, &c, None, 0)),
        ("states position", &|be| {
            be.ssm_states(&x, &a, &b, None, &[8])
        }),
    ];
    for (what, f) in cases {
        let (ge, ce) = (f(&g).unwrap_err(), f(cpu()).unwrap_err());
        assert_eq!(ge.to_string(), ce.to_string(), "{what}");
    }
}

#[test]
fn results_stay_on_the_device_and_read_back_once() {
    // Its own device, so the counters see only this test.
    let g = match GpuBackend::new(true, Some(1)) {
        Ok(g) => g,
        Err(e) => return common::no_adapter("gpu_ops", format!("{e:#}")),
    };
    let x = rand(&[4, 16], 23, 1.0);
    let w = rand(&[16, 16], 24, 1.0);
    let h = g.matmul(&x, &w, false, true).unwrap();
    let s0 = g.stats();
    assert_eq!(s0.uploads, 2, "inputs uploaded once each: {s0:?}");
    let a = g.unary(UnaryOp::Silu, &h).unwrap();
    let out = g.rms_norm(&a, None, 1e-6).unwrap();
    let out2 = g.matmul(&out, &w, false, true).unwrap();
    let s1 = g.stats();
    assert_eq!(s1.readbacks, 0, "nothing read back yet: {s1:?}");
    assert_eq!(s1.submits, 0, "work is batched until a readback: {s1:?}");
    assert_eq!(s1.uploads, 2, "w's device copy is reused: {s1:?}");
    assert!(!out2.on_host());

    // A captured intermediate costs exactly one copy, however often it is read.
    let captured = a.clone();
    let first = captured.to_vec();
    let again = a.data().to_vec();
    assert_eq!(first, again);
    assert_eq!(g.stats().readbacks, 1);
    assert_close("chain", &out2, &{
        let c = cpu();
        let h = c.matmul(&x, &w, false, true).unwrap();
        let a = c.unary(UnaryOp::Silu, &h).unwrap();
        let o = c.rms_norm(&a, None, 1e-6).unwrap();
        c.matmul(&o, &w, false, true).unwrap()
    });
    assert_eq!(g.stats().readbacks, 2);

    // Same kernels again: no new pipelines; dropped buffers come back from the pool.
    let pipelines = g.stats().pipelines;
    drop((h, a, out, out2, captured));
    let h = g.matmul(&x, &w, false, true).unwrap();
    let _ = g.unary(UnaryOp::Silu, &h).unwrap().to_vec();
    let s2 = g.stats();
    assert_eq!(s2.pipelines, pipelines, "{s2:?}");
    assert!(s2.pool_hits >= 2, "{s2:?}");
}

#[test]
fn transitional_cpu_path_gives_the_cpu_result() {
    let Some(g) = gpu() else { return };
    let x = rand(&[3, 5], 25, 1.0);
    let on_device = g.unary(UnaryOp::Exp, &x).unwrap();
    let before = tokit_compute::gpu::total_stats().cpu_fallbacks;
    let via_cpu = g
        .on_cpu("test_exp", |c| c.unary(UnaryOp::Exp, &on_device))
        .unwrap();
    assert!(via_cpu.on_host());
    assert!(tokit_compute::gpu::total_stats().cpu_fallbacks > before);
    let direct = cpu().unary(UnaryOp::Exp, &on_device).unwrap();
    assert_eq!(via_cpu.data(), direct.data());
    // Its result feeds the next GPU op like any host tensor.
    let next = g.unary(UnaryOp::Neg, &via_cpu).unwrap();
    assert_close(
        "after fallback",
        &next,
        &cpu().unary(UnaryOp::Neg, &direct).unwrap(),
    );
}
