//! State-space (Mamba2 / SSD) kernels: the depthwise causal convolution, the chunked SSD
//! scan and the recurrent state update.
//!
//! Per head h (group g = h / (H / G)), with decay `a_t`, input `x_t ∈ R^P` and
//! `B_t, C_t ∈ R^N`:
//!
//! ```text
//! H_t = a_t H_{t-1} + x_t B_tᵀ            (state, P × N)
//! y_t = H_t C_t = Σ_{s ≤ t} M_ts x_s + (Π_{k ≤ t} a_k) H_0 C_t,
//! M_ts = (C_t · B_s) Π_{k=s+1}^{t} a_k    (the 1-semiseparable SSD matrix)
//! ```
//!
//! [`ssd_scan`] evaluates `y` chunk by chunk: the matrix form inside a chunk, the state
//! passed between chunks, each as GEMMs on the calling thread (heads run in parallel). [`ssm_states`] runs the recurrence and returns the states at
//! chosen positions. Both take the decay itself (not its log), so `a_t = 0` (a memoryless
//! step) is exact: decay products are running products in f64, never `exp` of differences
//! of cumulative sums. Written by hand: no crate offers these scans.

use anyhow::{bail, Result};
use rayon::prelude::*;

use super::gemm::{gemm_serial, GemmJob, MatRef};
use crate::Tensor;

/// Positions up to which the convolution runs serially on the calling thread (decoding).
pub(crate) const SHORT: usize = 4;

fn dims<const N: usize>(op: &str, what: &str, t: &Tensor, layout: &str) -> Result<[usize; N]> {
    match <[usize; N]>::try_from(t.shape()) {
        Ok(d) => Ok(d),
        Err(_) => bail!("{op}: {what} must be {layout}, got {:?}", t.shape()),
    }
}

/// Checked shapes of a causal convolution: `(T, C, K)`.
pub(crate) fn conv_dims(
    x: &Tensor,
    w: &Tensor,
    bias: Option<&Tensor>,
    prefix: Option<&Tensor>,
) -> Result<(usize, usize, usize)> {
    const OP: &str = "conv1d_causal";
    let [t, c] = dims(OP, "x", x, "[T, C]")?;
    let [wc, k] = dims(OP, "weight", w, "[C, K]")?;
    if wc != c || k == 0 {
        bail!(
            "{OP}: weight {:?} does not match x {:?} (expected [{c}, K ≥ 1])",
            w.shape(),
            x.shape()
        );
    }
    if let Some(b) = bias {
        if b.shape() != [c] {
            bail!(
                "{OP}: bias {:?} does not match x {:?} (expected [{c}])",
                b.shape(),
                x.shape()
            );
        }
    }
    if let Some(p) = prefix {
        if p.shape() != [k - 1, c] {
            bail!(
                "{OP}: prefix {:?} does not match (expected [{}, {c}])",
                p.shape(),
                k - 1
            );
        }
    }
    Ok((t, c, k))
}

/// Depthwise causal 1-D convolution over time: `x [T, C]`, `w [C, K]`, optional `bias [C]`
/// and `prefix [K-1, C]` (the inputs just before `x`; zeros when absent). Returns `[T, C]`:
/// `y[t, c] = bias[c] + Σ_k w[c, k] · in[t + k - (K - 1), c]` (torch `conv1d` with
/// `groups = C`, `padding = K - 1`, first `T` outputs).
pub(crate) fn conv1d_causal(
    x: &Tensor,
    w: &Tensor,
    bias: Option<&Tensor>,
    prefix: Option<&Tensor>,
) -> Result<Tensor> {
    let (t, c, k) = conv_dims(x, w, bias, prefix)?;
    // Padded input [K-1 + T, C].
    let mut input = prefix.map_or_else(|| vec![0f32; (k - 1) * c], |p| p.to_vec());
    input.extend_from_slice(x.data());
    let (wd, bd) = (w.data(), bias.map(Tensor::data));
    let mut out = vec![0f32; t * c];
    let row = |r: usize, o: &mut [f32]| {
        for (ch, o) in o.iter_mut().enumerate() {
            let mut acc = bd.map_or(0.0, |b| b[ch]);
            for j in 0..k {
                acc += wd[ch * k + j] * input[(r + j) * c + ch];
            }
            *o = acc;
        }
    };
    if c == 0 {
        return Tensor::new(vec![t, c], out);
    }
    if t <= SHORT {
        // A decoding step: a few thousand multiply-adds, less than a hand-off.
        out.chunks_mut(c).enumerate().for_each(|(r, o)| row(r, o));
        return Tensor::new(vec![t, c], out);
    }
    out.par_chunks_mut(c)
        .enumerate()
        .for_each(|(r, o)| row(r, o));
    Tensor::new(vec![t, c], out)
}

/// Checked shapes of a scan: `(T, H, P, G, N)`.
pub(crate) fn scan_dims(
    op: &str,
    x: &Tensor,
    a: &Tensor,
    b: &Tensor,
    c: Option<&Tensor>,
    h0: Option<&Tensor>,
) -> Result<(usize, usize, usize, usize, usize)> {
    let [t, h, p] = dims(op, "x", x, "[T, H, P]")?;
    if a.shape() != [t, h] {
        bail!(
            "{op}: decay {:?} does not match x {:?} (expected [{t}, {h}])",
            a.shape(),
            x.shape()
        );
    }
    let [bt, g, n] = dims(op, "B", b, "[T, G, N]")?;
    if bt != t || g == 0 || h % g != 0 {
        bail!(
            "{op}: B {:?} does not match x {:?} (expected [{t}, G, N] with G dividing {h} heads)",
            b.shape(),
            x.shape()
        );
    }
    if let Some(c) = c {
        if c.shape() != b.shape() {
            bail!("{op}: C {:?} does not match B {:?}", c.shape(), b.shape());
        }
    }
    if let Some(s) = h0 {
        if s.shape() != [h, p, n] {
            bail!(
                "{op}: initial state {:?} does not match (expected [{h}, {p}, {n}])",
                s.shape()
            );
        }
    }
    Ok((t, h, p, g, n))
}

/// Row `t` of head `hd` of a `[T, H, D]` buffer.
fn at(buf: &[f32], t: usize, hd: usize, heads: usize, d: usize) -> &[f32] {
    let o = (t * heads + hd) * d;
    &buf[o..o + d]
}

#[cfg(test)]
fn dot(u: &[f32], v: &[f32]) -> f32 {
    u.iter().zip(v).map(|(a, b)| a * b).sum()
}

/// The single product `a @ b` of one of the SSD scan's GEMMs.
fn job<'a>(a: MatRef<'a>, b: MatRef<'a>) -> [GemmJob<'a>; 1] {
    [GemmJob {
        a,
        b,
        bh: None,
        bp: None,
        c_offset: 0,
    }]
}

/// Chunked SSD scan: `y [T, H, P]` of the recurrence above, from `x [T, H, P]`, decay
/// `a [T, H]`, `B, C [T, G, N]` and an optional initial state `h0 [H, P, N]` (zero when
/// absent). Chunks of `chunk` positions; the last one may be shorter.
pub(crate) fn ssd_scan(
    x: &Tensor,
    a: &Tensor,
    b: &Tensor,
    c: &Tensor,
    h0: Option<&Tensor>,
    chunk: usize,
) -> Result<Tensor> {
    let (t, h, p, g, n) = scan_dims("ssd_scan", x, a, b, Some(c), h0)?;
    if chunk == 0 {
        bail!("ssd_scan: chunk size must be at least 1");
    }
    let (xd, ad, bd, cd) = (x.data(), a.data(), b.data(), c.data());
    if t == 1 {
        return ssd_step(x, a, b, c, h0, (h, p, g, n));
    }
    let starts: Vec<usize> = (0..t).step_by(chunk).collect();
    let nch = starts.len();
    // C_t · B_s of every group and chunk (one q x q GEMM; only s ≤ t is used), shared
    // by the group's heads.
    let cb: Vec<Vec<f32>> = (0..g * nch)
        .into_par_iter()
        .map(|i| {
            let (gr, c0) = (i / nch, starts[i % nch]);
            let q = chunk.min(t - c0);
            let mut m = vec![0f32; q * q];
            let from = (c0 * g + gr) * n;
            let cm = MatRef {
                data: &cd[from..],
                rows: q,
                cols: n,
                rs: g * n,
                cs: 1,
            };
            let bt = MatRef {
                data: &bd[from..],
                rows: n,
                cols: q,
                rs: 1,
                cs: g * n,
            };
            gemm_serial(&job(cm, bt), q, q, n, &mut m);
            m
        })
        .collect();
    let per_head: Vec<Vec<f32>> = (0..h)
        .into_par_iter()
        .map(|hd| {
            let gr = hd / (h / g);
            let mut y = vec![0f32; t * p];
            // Running state at the start of the chunk, transposed: [N, P].
            let mut state_t = vec![0f32; n * p];
            if let Some(s) = h0 {
                let s = &s.data()[hd * p * n..(hd + 1) * p * n];
                for pi in 0..p {
                    for j in 0..n {
                        state_t[j * p + pi] = s[pi * n + j];
                    }
                }
            }
            let q_max = chunk.min(t);
            // Per chunk, y = [W | diag(prefix) C] [X ; Hᵀ]: the weights M_ls of the chunk
            // and the readout of the entering state, one GEMM of depth q + N.
            let mut wa = vec![0f32; q_max * (q_max + n)];
            let mut xs = vec![0f32; (q_max + n) * p];
            // suffix_s B_s, and the state's increment (suffix ∘ B)ᵀ X.
            let mut sb = vec![0f32; q_max * n];
            let mut upd = vec![0f32; n * p];
            for (ci, &c0) in starts.iter().enumerate() {
                let q = chunk.min(t - c0);
                let kq = q + n;
                let cbm = &cb[gr * nch + ci];
                let decay = |l: usize| ad[(c0 + l) * h + hd] as f64;
                let mut prefix = 1f64; // Π_{k=c0}^{c0+l} a_k
                for l in 0..q {
                    prefix *= decay(l);
                    let row = &mut wa[l * kq..(l + 1) * kq];
                    // Weights M_ls / CB_ls = Π_{k=s+1}^{l} a_k, by a running product.
                    let mut d = 1f64;
                    for s in (0..=l).rev() {
                        row[s] = (d as f32) * cbm[l * q + s];
                        d *= decay(s);
                    }
                    row[l + 1..q].fill(0.0);
                    let pf = prefix as f32;
                    for (o, &cv) in row[q..].iter_mut().zip(at(cd, c0 + l, gr, g, n)) {
                        *o = pf * cv;
                    }
                }
                for s in 0..q {
                    xs[s * p..(s + 1) * p].copy_from_slice(at(xd, c0 + s, hd, h, p));
                }
                xs[q * p..kq * p].copy_from_slice(&state_t);
                let wm = MatRef {
                    data: &wa[..q * kq],
                    rows: q,
                    cols: kq,
                    rs: kq,
                    cs: 1,
                };
                let xm = |rows: usize| MatRef {
                    data: &xs[..rows * p],
                    rows,
                    cols: p,
                    rs: p,
                    cs: 1,
                };
                gemm_serial(&job(wm, xm(kq)), q, p, kq, &mut y[c0 * p..(c0 + q) * p]);
                // State at the end of the chunk: total · H + Σ_s suffix_s x_s B_sᵀ.
                let mut suffix = 1f64; // Π_{k=s+1}^{c0+q-1} a_k
                for s in (0..q).rev() {
                    let sf = suffix as f32;
                    for (o, &bv) in sb[s * n..(s + 1) * n]
                        .iter_mut()
                        .zip(at(bd, c0 + s, gr, g, n))
                    {
                        *o = sf * bv;
                    }
                    suffix *= decay(s);
                }
                let sbt = MatRef {
                    data: &sb[..q * n],
                    rows: n,
                    cols: q,
                    rs: 1,
                    cs: n,
                };
                gemm_serial(&job(sbt, xm(q)), n, p, q, &mut upd);
                let total = prefix as f32;
                for (o, &u) in state_t.iter_mut().zip(&upd) {
                    *o = total * *o + u;
                }
            }
            y
        })
        .collect();
    let mut out = vec![0f32; t * h * p];
    for (hd, y) in per_head.iter().enumerate() {
        for ti in 0..t {
            out[(ti * h + hd) * p..(ti * h + hd + 1) * p].copy_from_slice(&y[ti * p..(ti + 1) * p]);
        }
    }
    Tensor::new(vec![t, h, p], out)
}

/// [`ssd_scan`] of one position (a decoding step): `y = (C · B) x + a H_0 C` per head,
/// reading each head's entering state once, heads spread over the threads
/// (`spin::for_each`). The same terms as the chunked form with `q = 1`, summed in a
/// different order (vector dot products rather than a row-by-row axpy), so it agrees with
/// it to f32 rounding.
fn ssd_step(
    x: &Tensor,
    a: &Tensor,
    b: &Tensor,
    c: &Tensor,
    h0: Option<&Tensor>,
    (h, p, g, n): (usize, usize, usize, usize),
) -> Result<Tensor> {
    let (xd, ad, bd, cd) = (x.data(), a.data(), b.data(), c.data());
    let mut out = vec![0f32; h * p];
    let dst = super::gemm::OutPtr(out.as_mut_ptr());
    super::spin::for_each(h, |hd| {
        let gr = hd / (h / g);
        let (bs, cs) = (at(bd, 0, gr, g, n), at(cd, 0, gr, g, n));
        let cb = dot_f32(cs, bs);
        let decay = ad[hd];
        // a C: the chunked form's readout row (its prefix product is a_0 itself).
        let ac: Vec<f32> = cs.iter().map(|&v| decay * v).collect();
        let xs = at(xd, 0, hd, h, p);
        // SAFETY: head `hd` owns out[hd * p .. (hd + 1) * p].
        let y = unsafe { std::slice::from_raw_parts_mut(dst.ptr().add(hd * p), p) };
        match h0 {
            Some(s) => {
                let s = &s.data()[hd * p * n..(hd + 1) * p * n];
                for (pi, (yo, &xv)) in y.iter_mut().zip(xs).enumerate() {
                    *yo = cb * xv + dot_f32(&s[pi * n..(pi + 1) * n], &ac);
                }
            }
            None => y.iter_mut().zip(xs).for_each(|(yo, &xv)| *yo = cb * xv),
        }
    });
    Tensor::new(vec![1, h, p], out)
}

/// `u · v` on the GEMM's vector dot product (AVX2+FMA where present).
fn dot_f32(u: &[f32], v: &[f32]) -> f32 {
    super::gemm::dot(super::gemm::detect_isa(), u, v)
}

/// One row of a state update, `out = a h + x b` (`h` zero when absent), compiled for
/// AVX2 where the CPU has it; separate multiplies and add, as [`ssm_states`]' loop.
fn state_row(av: f32, xv: f32, h: Option<&[f32]>, b: &[f32], out: &mut [f32]) {
    #[inline(always)]
    fn body(av: f32, xv: f32, h: Option<&[f32]>, b: &[f32], out: &mut [f32]) {
        match h {
            Some(h) => {
                for ((o, &hv), &bv) in out.iter_mut().zip(h).zip(b) {
                    *o = av * hv + xv * bv;
                }
            }
            None => {
                for (o, &bv) in out.iter_mut().zip(b) {
                    *o = av * 0.0 + xv * bv;
                }
            }
        }
    }
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        #[target_feature(enable = "avx2")]
        unsafe fn wide(av: f32, xv: f32, h: Option<&[f32]>, b: &[f32], out: &mut [f32]) {
            body(av, xv, h, b, out)
        }
        // SAFETY: AVX2 was detected just above.
        unsafe { wide(av, xv, h, b, out) };
        return;
    }
    body(av, xv, h, b, out)
}

/// The recurrence `H_t = a_t H_{t-1} + x_t B_tᵀ` from `h0` (zero when absent); returns the
/// states after each of `positions` (ascending or not, repeats allowed) as `[K, H, P, N]`.
/// With `T = 1` and `positions = [0]` this is one decoding step.
pub(crate) fn ssm_states(
    x: &Tensor,
    a: &Tensor,
    b: &Tensor,
    h0: Option<&Tensor>,
    positions: &[usize],
) -> Result<Tensor> {
    let (t, h, p, g, n) = scan_dims("ssm_states", x, a, b, None, h0)?;
    if let Some(&bad) = positions.iter().find(|&&q| q >= t) {
        bail!("ssm_states: position {bad} is beyond the {t} positions of x");
    }
    let last = positions.iter().copied().max().map_or(0, |m| m + 1);
    let (xd, ad, bd) = (x.data(), a.data(), b.data());
    let step = |hd: usize, ti: usize, state: &mut [f32]| {
        let (av, gr) = (ad[ti * h + hd], hd / (h / g));
        let (xs, bs) = (at(xd, ti, hd, h, p), at(bd, ti, gr, g, n));
        for (pi, &xv) in xs.iter().enumerate() {
            for (o, &bv) in state[pi * n..(pi + 1) * n].iter_mut().zip(bs) {
                *o = av * *o + xv * bv;
            }
        }
    };
    if let &[q] = positions {
        // One snapshot, after the last step (each decoding step): run each head's
        // recurrence in place in the output, with no per-head copies.
        let sz = p * n;
        let mut out = Vec::<f32>::with_capacity(h * sz);
        let dst = super::gemm::OutPtr(out.as_mut_ptr());
        super::spin::for_each(h, |hd| {
            // SAFETY: head `hd` owns out[hd * sz .. (hd + 1) * sz], inside the capacity;
            // the first step below writes every value of it before anything reads it
            // (as `MaybeUninit` would, `f32` has no invalid bit patterns).
            let state = unsafe { std::slice::from_raw_parts_mut(dst.ptr().add(hd * sz), sz) };
            let from = h0.map(|s| &s.data()[hd * sz..(hd + 1) * sz]);
            // The first step reads the entering state straight from `h0` (the same
            // arithmetic as copying it first), so the state is read and written once.
            let (av, gr) = (ad[hd], hd / (h / g));
            let (xs, bs) = (at(xd, 0, hd, h, p), at(bd, 0, gr, g, n));
            for (pi, &xv) in xs.iter().enumerate() {
                let row = &mut state[pi * n..(pi + 1) * n];
                state_row(av, xv, from.map(|f| &f[pi * n..(pi + 1) * n]), bs, row);
            }
            (1..=q).for_each(|ti| step(hd, ti, state));
        });
        // SAFETY: every head wrote its `sz` values (above).
        unsafe { out.set_len(h * sz) };
        return Tensor::new(vec![1, h, p, n], out);
    }
    let per_head: Vec<Vec<f32>> = (0..h)
        .into_par_iter()
        .map(|hd| {
            let mut state = h0.map_or_else(
                || vec![0f32; p * n],
                |s| s.data()[hd * p * n..(hd + 1) * p * n].to_vec(),
            );
            let mut snaps = vec![0f32; positions.len() * p * n];
            for ti in 0..last {
                step(hd, ti, &mut state);
                for (k, _) in positions.iter().enumerate().filter(|(_, &q)| q == ti) {
                    snaps[k * p * n..(k + 1) * p * n].copy_from_slice(&state);
                }
            }
            snaps
        })
        .collect();
    let mut out = vec![0f32; positions.len() * h * p * n];
    let sz = p * n;
    for (hd, snaps) in per_head.iter().enumerate() {
        for k in 0..positions.len() {
            out[(k * h + hd) * sz..(k * h + hd + 1) * sz]
                .copy_from_slice(&snaps[k * sz..(k + 1) * sz]);
        }
    }
    Tensor::new(vec![positions.len(), h, p, n], out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::{assert_close, Rng};

    /// `y_t = H_t C_t` from the states of every position.
    fn readout(states: &Tensor, c: &Tensor, h: usize, g: usize) -> Vec<f32> {
        let [t, _, p, n] = <[usize; 4]>::try_from(states.shape()).unwrap();
        let mut y = vec![0f32; t * h * p];
        for ti in 0..t {
            for hd in 0..h {
                let ct = at(c.data(), ti, hd / (h / g), g, n);
                for pi in 0..p {
                    let o = ((ti * h + hd) * p + pi) * n;
                    y[(ti * h + hd) * p + pi] = dot(&states.data()[o..o + n], ct);
                }
            }
        }
        y
    }

    fn random_case(rng: &mut Rng, t: usize, h: usize, p: usize, g: usize, n: usize) -> [Tensor; 4] {
        let a: Vec<f32> = (0..t * h).map(|_| 0.5 + 0.5 * rng.f32().abs()).collect();
        [
            rng.tensor(&[t, h, p]),
            Tensor::new(vec![t, h], a).unwrap(),
            rng.tensor(&[t, g, n]),
            rng.tensor(&[t, g, n]),
        ]
    }

    #[test]
    fn chunked_and_recurrent_forms_agree() {
        let mut rng = Rng::new(7);
        for (t, h, p, g, n, chunk) in [
            (13, 4, 3, 2, 5, 4),
            (13, 4, 3, 1, 5, 13),
            (16, 2, 4, 2, 3, 8),
            (9, 3, 2, 3, 4, 1),
            (20, 4, 8, 1, 16, 64),
            // One position (a decoding step, `ssd_step`), N past one vector.
            (1, 4, 3, 2, 5, 4),
            (1, 6, 24, 2, 40, 256),
        ] {
            let [x, a, b, c] = random_case(&mut rng, t, h, p, g, n);
            let h0 = rng.tensor(&[h, p, n]);
            for init in [None, Some(&h0)] {
                let y = ssd_scan(&x, &a, &b, &c, init, chunk).unwrap();
                let all: Vec<usize> = (0..t).collect();
                let states = ssm_states(&x, &a, &b, init, &all).unwrap();
                assert_close(y.data(), &readout(&states, &c, h, g), 1e-5);
                // The one-snapshot path (decoding) gives the same last state, bit for bit.
                let last = ssm_states(&x, &a, &b, init, &[t - 1]).unwrap();
                let sz = h * p * n;
                assert!(last
                    .data()
                    .iter()
                    .zip(&states.data()[(t - 1) * sz..])
                    .all(|(u, v)| u.to_bits() == v.to_bits()));
            }
        }
    }

    /// Splitting a sequence and carrying the state over reproduces the whole scan.
    #[test]
    fn the_state_carries_a_prefix_exactly() {
        let mut rng = Rng::new(11);
        let (t, h, p, g, n) = (12, 2, 3, 1, 4);
        let [x, a, b, c] = random_case(&mut rng, t, h, p, g, n);
        let whole = ssd_scan(&x, &a, &b, &c, None, 5).unwrap();
        let sl = |u: &Tensor, r: std::ops::Range<usize>| {
            crate::cpu::layout::slice(u, 0, r.start, r.end).unwrap()
        };
        let k = 7;
        let mid = ssm_states(&sl(&x, 0..k), &sl(&a, 0..k), &sl(&b, 0..k), None, &[k - 1]).unwrap();
        let mid = mid.with_shape(vec![h, p, n]).unwrap();
        let tail = ssd_scan(
            &sl(&x, k..t),
            &sl(&a, k..t),
            &sl(&b, k..t),
            &sl(&c, k..t),
            Some(&mid),
            3,
        )
        .unwrap();
        assert_close(tail.data(), &whole.data()[k * h * p..], 1e-5);
    }

    /// docs/measures.md M12: the matrix form `y = M x` with `M_ts = C_tᵀ B_s Π a_k` reproduces the
    /// layer output, and `a_t = 0` makes M diagonal.
    #[test]
    fn the_ssd_matrix_form_reproduces_the_output() {
        let mut rng = Rng::new(3);
        let (t, h, p, g, n) = (10, 2, 3, 1, 4);
        let [x, a, b, c] = random_case(&mut rng, t, h, p, g, n);
        let y = ssd_scan(&x, &a, &b, &c, None, 4).unwrap();
        let (xd, ad, bd, cd) = (x.data(), a.data(), b.data(), c.data());
        for hd in 0..h {
            for ti in 0..t {
                for pi in 0..p {
                    let mut want = 0f64;
                    for s in 0..=ti {
                        let kernel: f64 = (s + 1..=ti).map(|k| ad[k * h + hd] as f64).product();
                        let cb = dot(at(cd, ti, 0, g, n), at(bd, s, 0, g, n)) as f64;
                        want += cb * kernel * xd[(s * h + hd) * p + pi] as f64;
                    }
                    let got = y.data()[(ti * h + hd) * p + pi] as f64;
                    assert!(
                        (got - want).abs() < 1e-5 * (1.0 + want.abs()),
                        "{got} vs {want}"
                    );
                }
            }
        }
        // Memoryless: a = 0 leaves only the diagonal, y_t = (C_t · B_t) x_t.
        let zero = Tensor::zeros(vec![t, h]);
        let y = ssd_scan(&x, &zero, &b, &c, None, 4).unwrap();
        for ti in 0..t {
            let cb = dot(at(cd, ti, 0, g, n), at(bd, ti, 0, g, n));
            let want: Vec<f32> = at(xd, ti, 0, h, p).iter().map(|v| v * cb).collect();
            assert_close(at(y.data(), ti, 0, h, p), &want, 1e-6);
        }
    }

    #[test]
    fn conv_matches_hand_values_and_carries_its_prefix() {
        // One channel, kernel [1, 2, 3]: y_t = 1·x_{t-2} + 2·x_{t-1} + 3·x_t + bias.
        let x = Tensor::new(vec![4, 1], vec![1., 2., 3., 4.]).unwrap();
        let w = Tensor::new(vec![1, 3], vec![1., 2., 3.]).unwrap();
        let b = Tensor::new(vec![1], vec![0.5]).unwrap();
        let y = conv1d_causal(&x, &w, Some(&b), None).unwrap();
        assert_eq!(y.data(), &[3.5, 8.5, 14.5, 20.5]);
        let prefix = Tensor::new(vec![2, 1], vec![1., 2.]).unwrap();
        let tail = Tensor::new(vec![2, 1], vec![3., 4.]).unwrap();
        let y2 = conv1d_causal(&tail, &w, Some(&b), Some(&prefix)).unwrap();
        assert_eq!(y2.data(), &y.data()[2..]);
    }

    #[test]
    fn bad_shapes_are_errors() {
        let x = Tensor::zeros(vec![4, 3, 2]);
        let a = Tensor::zeros(vec![4, 2]);
        let b = Tensor::zeros(vec![4, 1, 5]);
        let err = ssd_scan(&x, &a, &b, &b, None, 2).unwrap_err().to_string();
        assert!(
            err.contains("decay [4, 2]") && err.contains("[4, 3]"),
            "{err}"
        );
        let a = Tensor::zeros(vec![4, 3]);
        let b2 = Tensor::zeros(vec![4, 2, 5]);
        let err = ssd_scan(&x, &a, &b2, &b2, None, 2).unwrap_err().to_string();
        assert!(err.contains("G dividing 3 heads"), "{err}");
        let err = ssm_states(&x, &a, &b, None, &[4]).unwrap_err().to_string();
        assert!(err.contains("position 4"), "{err}");
        let err = conv1d_causal(
            &Tensor::zeros(vec![3, 2]),
            &Tensor::zeros(vec![3, 4]),
            None,
            None,
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("conv1d_causal: weight [3, 4]"), "{err}");
    }
}
