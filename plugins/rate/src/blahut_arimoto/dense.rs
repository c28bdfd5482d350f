//! The Blahut–Arimoto iteration for large alphabets: exponential domain, shaped as
//! matrix–vector products over a precomputed kernel, rows split over threads.
//!
//! With `A[x, y] = e^{−β d'(x, y)}` (`d'` the distortion minus its row minimum, so every
//! row holds a 1 and nothing overflows) and `B = A ⊙ d'`, one iteration from the output
//! law `q` is
//!
//! ```text
//! c = A q,  b = B q                      (the channel Q(y|x) = A[x, y] q(y) / c(x))
//! q'(y) = q(y) Σ_x p(x) A[x, y] / c(x)   (q' = q ⊙ Aᵀ (p / c))
//! D = D_min + Σ_x p(x) b(x) / c(x)
//! R = −β (D − D_min) − Σ_x p(x) ln c(x) + Σ_y q'(y) ln(q(y) / q'(y))
//! R + βD = β D_min − Σ_x p(x) ln c(x) + Σ_y q'(y) ln(q(y) / q'(y))
//! ```
//!
//! the same update as the log-domain solver ([`super::log_domain`]), with `(D, R)` of
//! the channel against its new output law, as there. The reported point (channel,
//! `(D, R)`, Blahut's lower bound) is evaluated on the same kernel in the linear domain
//! ([`Kernel::finish`]: two more steps and one pass for the channel, where the log
//! domain takes an exponential per cell in five passes). Entries of `A` that underflow
//! (β d' > 745) are below 1e-323 of a row's largest and do not change any reported digit.
//!
//! **One pass per step.** [`Pool::step`] is the only step, for the plain iteration and
//! for SQUAREM alike. Each row of `A` (and of `d'`) is read from memory once per step:
//! the dot products for `c(x)` and `b(x)` (`B = A ⊙ d'` is formed in the product, with
//! `d' = d − min_y d` and the products rounded as stored `d'` and `B` would be, so neither
//! is built; `d` is read from an `f32` copy when that holds every entry exactly, as for
//! distortions read from `f32` tensors, which gives the same bits from 12 bytes a cell
//! instead of 16), then, while the row is in L1, the axpy of `p(x) / c(x)` times it into
//! `Aᵀ (p / c)`. The dot products keep 16 (`f32`: 32) independent partial sums (lane `k`
//! takes the columns `≡ k` mod 16 or 32) so that the compiler vectorizes them;
//! [`rows_f64`] and [`rows_f32`] are compiled for AVX-512, AVX2+FMA and the baseline and
//! chosen at run time (crate `multiversion`). The `f64` pass multiplies and adds (no
//! fused multiply–add) and gives the same bits on each. The `f32` pass fuses them where
//! the CPU has FMA (the conversion from `f32` and the FMA then fill the two vector ports,
//! where a separate multiply and add took one more slot: the 1000 × 1000 SQUAREM run
//! 7 % faster); the baseline build rounds twice, so its `f32` phase can end a step or two
//! apart. That phase only finds the starting point of the `f64` one (below).
//!
//! **Set-up.** [`Kernel::new`] builds `A`, `A₃₂` and the `f32` copy of `d` in one pass
//! over the distortion, rows split over the threads, with an exponential in plain
//! arithmetic that vectorizes ([`exp_poly`], within 2 ulp of `f64::exp`); the problem
//! itself keeps the distortion matrix it was given and its row minima, no shifted copy.
//!
//! **Threads.** The rows are cut into `min(16, nx)` fixed blocks; each block sums into its
//! own partial of `Aᵀ (p / c)`, `Σ p b / c` and `Σ p ln c`; the scalars are added in block
//! order and the vectors along a fixed tree ([`tree_levels`]), so the result does not
//! depend on how many threads there are (tested to the bit). A run ([`Kernel::solve`]) starts its worker threads once (scoped: none outlives the call,
//! `docs/architecture.md`); each step hands every worker its input law and its blocks'
//! buffers through a channel and takes them back, so a step spawns nothing and allocates
//! only two short lists of references to the blocks;
//! a thread waiting for the next message polls for a while before it sleeps ([`SPIN`]).
//! The logarithms of a step (`ln c` per row, the cross term per output) use [`ln_poly`],
//! which vectorizes.
//!
//! **Precision.** With SQUAREM (`acceleration: "squarem"`), the run starts on an `f32`
//! copy of `A` (sums still in `f64`) and finishes on the `f64` kernel. Error analysis:
//! rounding gives `A₃₂ = A (1 + δ)` with `|δ| ≤ 2⁻²⁴`, and with `f64` sums a step on
//! `A₃₂` is an exact BA step (to `f64` rounding) for the distortion `d' − ln(1 + δ)/β`,
//! a change of at most `6e-8 / β` in every entry. That moves the fixed point by about
//! 1e-8 (on the 1000 × 1000 problem of `tools/ba_numpy.py` at β = 8: 5e-9 in R, 2e-10 in
//! D), more than the 1e-10 the solver is asked for, so `f32` cannot finish the run: it
//! only finds the starting point. The `f32` phase stops when two consecutive BA steps
//! move `q` by less than `max(1e-7, tol)` in ℓ¹ (near the scale at which the two fixed points
//! separate), and SQUAREM continues on `A` and `d'` in `f64` with the stopping rule of the
//! plain iteration, so the fixed point and every reported digit are those of the `f64`
//! kernel; on that problem the `f64` phase takes 8 of 138 BA steps at tol 1e-10 (a
//! looser exit, 1e-6, leaves more steps to the `f64` phase: 8 of 136 at tol 1e-10 but 18
//! of 146 at 1e-11). The
//! `f32` phase computes no distortion (it reads no `d'`): SQUAREM needs only `R + βD`,
//! which needs only `c` (formula above), so an `f32` step reads 4 bytes per cell where
//! an `f64` step reads 12 or 16 (and at 1000 × 1000 each core's half of `A₃₂`, 1.9 MiB, stays
//! in a 2 MiB L2). Entries of `A₃₂` below `f32`'s smallest normal
//! (β d' > 87) are set to 0; when that would leave an output with no positive entry
//! where `A` has one, the run is `f64` throughout. The plain iteration is `f64`
//! throughout. `tools/ba_numpy.py` runs the identical iterations in NumPy (the `f32`
//! phase on an `f64` copy of the rounded kernel, NumPy having no `f32`-storage,
//! `f64`-sum product) for the benchmark.

use super::aligned::Aligned;
use super::{BaOptions, RdPoint, RdProblem};
use multiversion::multiversion;
use multiversion::target::target_cfg_f;
use std::mem::MaybeUninit;
use std::sync::mpsc::{sync_channel, Receiver, RecvError, SyncSender, TryRecvError};
use std::time::{Duration, Instant};
use tokit_sdk::{bail, check_cancelled, Error, Result};

/// Problems at least this large (`nx · ny`) take this path.
pub const DENSE_MIN: usize = 1 << 16;

/// Row blocks per kernel (fewer when there are fewer rows); fixes the summation order.
const BLOCKS: usize = 16;

/// Partial sums per dot product (a multiple of every vector width used): `f64` kernel.
const LANES: usize = 16;

/// Partial sums of the `f32` kernel's dot product.
const LANES32: usize = 32;

/// The `f32` phase ends when two consecutive BA steps move `q` by less than this in ℓ¹
/// (or by less than `tol`, when that is larger).
const F32_EXIT: f64 = 1e-7;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Precision {
    /// `A₃₂`; no distortion is computed.
    F32,
    /// `A` and `d'`.
    F64,
}

/// The kernel of one slope.
pub struct Kernel<'p> {
    prob: &'p RdProblem,
    beta: f64,
    a: Aligned<f64>,
    /// The distortion `d` in `f32`, when that holds every entry exactly (distortions read
    /// from `f32` tensors, or small rationals): the same products from fewer bytes. `d'`
    /// (and `B = A ⊙ d'`) is formed in the dot product, `d − min_y d` in `f64` as a stored
    /// `d'` would be, so neither is ever built.
    d32: Option<Aligned<f32>>,
    /// `A` rounded to `f32` (entries below the smallest normal set to 0), when that
    /// keeps every output that `A` reaches.
    a32: Option<Aligned<f32>>,
    /// Row ranges of the blocks.
    blocks: Vec<(usize, usize)>,
    threads: usize,
}

/// One block's share of a step.
struct Part {
    /// Its rows' share of `Aᵀ (p / c)`.
    v: Aligned<f64>,
    /// `c(x)` of its rows.
    c: Vec<f64>,
    /// `Σ p b / c` over its rows (0 in the `f32` phase).
    dsum: f64,
    /// `Σ p ln c` over its rows.
    lsum: f64,
}

/// A worker's share of a step: the input law and its blocks' buffers, sent to the worker
/// and back.
struct Job {
    q: Aligned<f64>,
    prec: Precision,
    /// Index of its first block.
    first: usize,
    parts: Vec<Part>,
}

/// One step's scalars (the output law goes to a buffer).
#[derive(Clone, Copy, Debug)]
struct Stats {
    /// `D` (NaN in the `f32` phase).
    distortion: f64,
    /// `R` (NaN in the `f32` phase).
    rate: f64,
    /// `R + βD`.
    objective: f64,
    /// `Σ_x p(x) ln c(x)`.
    lsum: f64,
}

/// The sum of `N` (a power of 2) partial sums, in a fixed order.
#[inline(always)]
fn hsum<const N: usize>(mut s: [f64; N]) -> f64 {
    let mut w = N / 2;
    while w > 0 {
        for k in 0..w {
            s[k] += s[k + w];
        }
        w /= 2;
    }
    s[0]
}

/// `(a · q, (a ⊙ (d − lo)) · q)` with 16 partial sums each (`a ⊙ (d − lo)` rounded as a
/// stored `B` would be; `d` in `f64`, or in `f32` where that holds it exactly).
#[inline(always)]
fn dot2<D: Copy + Into<f64>>(a: &[f64], d: &[D], lo: f64, q: &[f64]) -> (f64, f64) {
    let (ac, at) = a.as_chunks::<LANES>();
    let (dc, dt) = d.as_chunks::<LANES>();
    let (qc, qt) = q.as_chunks::<LANES>();
    let (mut sa, mut sb) = ([0.0; LANES], [0.0; LANES]);
    for ((a, d), q) in ac.iter().zip(dc).zip(qc) {
        for k in 0..LANES {
            sa[k] += a[k] * q[k];
            sb[k] += (a[k] * (d[k].into() - lo)) * q[k];
        }
    }
    for (k, ((a, &d), q)) in at.iter().zip(dt).zip(qt).enumerate() {
        sa[k] += a * q;
        sb[k] += (a * (d.into() - lo)) * q;
    }
    (hsum(sa), hsum(sb))
}

/// `a b + c`, fused (one rounding) when `fused`, else rounded twice. The `f32` phase
/// passes whether its compiled version has FMA instructions (`mul_add` without them is a
/// library call, far slower than the two roundings).
#[inline(always)]
fn madd(a: f64, b: f64, c: f64, fused: bool) -> f64 {
    if fused {
        a.mul_add(b, c)
    } else {
        a * b + c
    }
}

/// `a · q` (`a` in `f32`, summed in `f64`) with 32 partial sums (one product per lane
/// and step, so twice the lanes of [`dot2`] keep as many additions in flight).
#[inline(always)]
fn dot32(a: &[f32], q: &[f64], fused: bool) -> f64 {
    let (ac, at) = a.as_chunks::<LANES32>();
    let (qc, qt) = q.as_chunks::<LANES32>();
    let mut s = [0.0; LANES32];
    for (a, q) in ac.iter().zip(qc) {
        for k in 0..LANES32 {
            s[k] = madd(f64::from(a[k]), q[k], s[k], fused);
        }
    }
    for (k, (&a, &q)) in at.iter().zip(qt).enumerate() {
        s[k] = madd(f64::from(a), q, s[k], fused);
    }
    hsum(s)
}

/// A block of rows on the `f64` kernel: adds `p(x)/c(x) A[x, ·]` into `v`, writes `c(x)`
/// into `cs` (1 where `p(x) = 0`) and returns `Σ p b / c`. `a`, `d`: the block's rows of
/// `A` and `d` (in `f64`, or exactly in `f32`: the same bits from 12 bytes a cell instead
/// of 16); `lo`: their row minima; `p`: their source weights.
#[multiversion(targets("x86_64+avx512f+avx512vl+avx2+fma", "x86_64+avx2+fma"))]
fn rows_f64<D: Copy + Into<f64>>(
    a: &[f64],
    d: &[D],
    lo: &[f64],
    p: &[f64],
    q: &[f64],
    v: &mut [f64],
    cs: &mut [f64],
) -> f64 {
    let ny = q.len();
    let mut dsum = 0.0;
    let rows = a.chunks_exact(ny).zip(d.chunks_exact(ny)).zip(lo);
    for ((((ra, rd), &lo), &px), cx) in rows.zip(p).zip(cs) {
        *cx = 1.0;
        if px == 0.0 {
            continue;
        }
        let (c, bq) = dot2(ra, rd, lo, q);
        *cx = c;
        dsum += px * bq / c;
        let w = px / c;
        for (vy, &ay) in v.iter_mut().zip(ra) {
            *vy += w * ay;
        }
    }
    dsum
}

/// [`rows_f64`] on `A₃₂`, without the distortion.
#[multiversion(targets("x86_64+avx512f+avx512vl+avx2+fma", "x86_64+avx2+fma"))]
fn rows_f32(a: &[f32], p: &[f64], q: &[f64], v: &mut [f64], cs: &mut [f64]) {
    let fused = target_cfg_f!(target_feature = "fma");
    let ny = q.len();
    for ((ra, &px), cx) in a.chunks_exact(ny).zip(p).zip(cs) {
        *cx = 1.0;
        if px == 0.0 {
            continue;
        }
        let c = dot32(ra, q, fused);
        *cx = c;
        let w = px / c;
        for (vy, &ay) in v.iter_mut().zip(ra) {
            *vy = madd(w, f64::from(ay), *vy, fused);
        }
    }
}

/// `Σ_i w_i ln x_i` over the terms with `w_i ≠ 0` (`0 ln x = 0`, the convention of
/// `0 ln 0`), in 8 partial sums, with [`ln_poly`] where every such `x_i` is a positive
/// normal number, else with `f64::ln` (so that `x_i = 0` gives −∞ and a negative or NaN
/// `x_i` gives NaN, as before, which the step reports as degenerate).
#[multiversion(targets("x86_64+avx512f+avx512vl+avx2+fma", "x86_64+avx2+fma"))]
fn sum_w_ln(w: &[f64], x: &[f64]) -> f64 {
    let (wc, wt) = w.as_chunks::<8>();
    let (xc, xt) = x.as_chunks::<8>();
    let (mut s, mut normal) = ([0.0; 8], true);
    let normal_at = |w: f64, x: f64| w == 0.0 || (f64::MIN_POSITIVE..=f64::MAX).contains(&x);
    for (w, x) in wc.iter().zip(xc) {
        for k in 0..8 {
            normal &= normal_at(w[k], x[k]);
            s[k] += if w[k] != 0.0 {
                w[k] * ln_poly(x[k])
            } else {
                0.0
            };
        }
    }
    if !normal || !wt.iter().zip(xt).all(|(&w, &x)| normal_at(w, x)) {
        return w
            .iter()
            .zip(x)
            .filter(|(&w, _)| w != 0.0)
            .map(|(&w, &x)| w * x.ln())
            .sum();
    }
    for (k, (&w, &x)) in wt.iter().zip(xt).enumerate() {
        s[k] += if w != 0.0 { w * ln_poly(x) } else { 0.0 };
    }
    hsum(s)
}

/// `ln x` for a positive normal `x` in plain arithmetic, no call, so that a loop over it
/// vectorizes: `x = m 2^e` with `m ∈ [√½, √2)`, `ln m = 2 atanh s` with
/// `s = (m − 1)/(m + 1)`, `|s| < 0.172`, by its series to `s^23` (remainder below 1e-19),
/// and `e ln 2` added in two parts. Within 2 ulp of `f64::ln` (tested).
#[inline(always)]
fn ln_poly(x: f64) -> f64 {
    const LN2_HI: f64 = f64::from_bits(0x3fe6_2e42_fee0_0000);
    const LN2_LO: f64 = f64::from_bits(0x3dea_39ef_3579_3c76);
    const MANTISSA: u64 = (1 << 52) - 1;
    let bits = x.to_bits();
    let m = f64::from_bits((bits & MANTISSA) | (1023 << 52));
    let big = m > std::f64::consts::SQRT_2;
    let m = if big { m * 0.5 } else { m };
    let e = ((bits >> 52) as i64 - 1023 + i64::from(big)) as f64;
    let s = (m - 1.0) / (m + 1.0);
    let s2 = s * s;
    // 2/(2k+1), k = 11 down to 1.
    let mut p = 2.0 / 23.0;
    for k in (1..11).rev() {
        p = p * s2 + 2.0 / (2 * k + 1) as f64;
    }
    let lm = 2.0 * s + s * s2 * p;
    e * LN2_HI + (e * LN2_LO + lm)
}

/// `f(k, item)` for the `k`-th item, the first on the calling thread and each other on a
/// scoped thread of its own (none outlives the call); the results in item order. A
/// panic in `f` is raised again here.
fn on_threads<T: Send, R: Send>(
    items: impl Iterator<Item = T>,
    f: impl Fn(usize, T) -> R + Sync,
) -> Vec<R> {
    std::thread::scope(|s| {
        let f = &f;
        let mut items = items.enumerate();
        let first = items.next();
        let others: Vec<_> = items.map(|(k, t)| s.spawn(move || f(k, t))).collect();
        let first = first.map(|(k, t)| f(k, t));
        first
            .into_iter()
            .chain(
                others
                    .into_iter()
                    .map(|h| h.join().expect("BA worker thread")),
            )
            .collect()
    })
}

/// Rows written once, before anything reads them.
type Out<'a, T> = &'a mut [MaybeUninit<T>];

/// One row of the kernel from the distortion row `d` with row minimum `lo`: writes
/// `A = e^{−β (d − lo)}` (exactly 1 where `d = lo`), `A₃₂` and `d` in `f32` into `out`,
/// raises `top` to the row of `A` where given, and returns whether `d` is exact in `f32`.
#[multiversion(targets("x86_64+avx512f+avx512vl+avx2+fma", "x86_64+avx2+fma"))]
fn kernel_row(
    d: &[f64],
    lo: f64,
    beta: f64,
    out: (Out<f64>, Out<f32>, Out<f32>),
    top: Option<&mut [f64]>,
) -> bool {
    let (a, a32, d32) = out;
    let mut exact = true;
    for (((oa, o32), od), &v) in a.iter_mut().zip(a32.iter_mut()).zip(d32.iter_mut()).zip(d) {
        let e = exp_poly(-(beta * (v - lo)));
        oa.write(e);
        let e32 = e as f32;
        o32.write(if e32 < f32::MIN_POSITIVE { 0.0 } else { e32 });
        let w = v as f32;
        od.write(w);
        exact &= f64::from(w) == v;
    }
    if let Some(top) = top {
        // SAFETY: the loop above wrote every entry of `a`.
        let a = unsafe { &*(a as *const [MaybeUninit<f64>] as *const [f64]) };
        for (t, &e) in top.iter_mut().zip(a) {
            *t = t.max(e);
        }
    }
    exact
}

/// `e^x` for `x ≤ 0` (−∞ and anything below −746 give 0) in plain arithmetic, no branch
/// and no call, so that a loop over it vectorizes: `x = n ln 2 + r` with `|r| ≤ ln 2 / 2`
/// (Cody–Waite, fdlibm's split of ln 2), `e^r` by its Taylor polynomial of degree 13
/// (remainder below 5e-18), and `2^n` applied in two halves so that subnormal results
/// round once. Within 2 ulp of `f64::exp` (tested); `e^0 = 1` exactly.
#[inline(always)]
fn exp_poly(x: f64) -> f64 {
    // ln 2 = LN2_HI + LN2_LO, LN2_HI with 32 trailing zero bits (n · LN2_HI is exact).
    const LN2_HI: f64 = f64::from_bits(0x3fe6_2e42_fee0_0000);
    const LN2_LO: f64 = f64::from_bits(0x3dea_39ef_3579_3c76);
    // 1.5 · 2^52: adding it rounds to an integer, which lands in the low mantissa bits.
    const SHIFT: f64 = 6_755_399_441_055_744.0;
    // 1/k!, k = 13 down to 2.
    const C: [f64; 12] = [
        1.0 / 6_227_020_800.0,
        1.0 / 479_001_600.0,
        1.0 / 39_916_800.0,
        1.0 / 3_628_800.0,
        1.0 / 362_880.0,
        1.0 / 40_320.0,
        1.0 / 5_040.0,
        1.0 / 720.0,
        1.0 / 120.0,
        1.0 / 24.0,
        1.0 / 6.0,
        0.5,
    ];
    let x = x.max(-746.0);
    let t = x * std::f64::consts::LOG2_E + SHIFT;
    let nf = t - SHIFT;
    let r = (x - nf * LN2_HI) - nf * LN2_LO;
    let mut p = C[0];
    for c in &C[1..] {
        p = p * r + c;
    }
    p = p * r + 1.0;
    p = p * r + 1.0;
    let n = t.to_bits() as i64 - SHIFT.to_bits() as i64;
    let (n1, n2) = (n >> 1, n - (n >> 1));
    let pow2 = |k: i64| f64::from_bits(((k + 1023) as u64) << 52);
    p * pow2(n1) * pow2(n2)
}

impl<'p> Kernel<'p> {
    pub fn new(prob: &'p RdProblem, beta: f64) -> Kernel<'p> {
        let (nx, ny) = (prob.nx, prob.ny);
        let nb = BLOCKS.min(nx).max(1);
        let threads = std::thread::available_parallelism()
            .map_or(1, |n| n.get())
            .min(nb);
        let n = nx * ny;
        let (mut a, mut a32, mut d32) = (
            Aligned::<f64>::uninit(n),
            Aligned::<f32>::uninit(n),
            Aligned::<f32>::uninit(n),
        );
        // One pass, rows split over the threads (entrywise, so the split changes nothing):
        // `A`, `A₃₂`, `d` in `f32`, whether that is exact, and the largest entry of `A` per
        // output over the source letters in use.
        let per = nx.div_ceil(threads) * ny;
        let fill = |x0: usize, a: Out<f64>, a32: Out<f32>, d32: Out<f32>| -> (Vec<f64>, bool) {
            let mut top = vec![0.0f64; ny];
            let mut exact = true;
            let rows = a.chunks_exact_mut(ny).zip(a32.chunks_exact_mut(ny));
            for (x, ((ra, ra32), rd32)) in (x0..).zip(rows.zip(d32.chunks_exact_mut(ny))) {
                let rd = &prob.d[x * ny..(x + 1) * ny];
                let top = (prob.p[x] > 0.0).then_some(&mut top[..]);
                exact &= kernel_row(rd, prob.row_min[x], beta, (ra, ra32, rd32), top);
            }
            (top, exact)
        };
        let chunks = a
            .slots()
            .chunks_mut(per)
            .zip(a32.slots().chunks_mut(per))
            .zip(d32.slots().chunks_mut(per));
        let parts = on_threads(chunks, |k, ((ca, c32), cd)| fill(k * per / ny, ca, c32, cd));
        // SAFETY: the chunks cover `0..n` and `kernel_row` wrote every entry.
        let (a, a32, d32) = unsafe { (a.assume_init(), a32.assume_init(), d32.assume_init()) };
        // Every output that a source letter reaches in `A` must stay reachable in `A₃₂`
        // (BA's multiplicative update never revives an output at 0): rounding is
        // monotone, so an output is lost exactly when its largest entry rounds below
        // f32's smallest normal.
        let lost = (0..ny).any(|y| {
            let top = parts.iter().map(|t| t.0[y]).fold(0.0, f64::max);
            top > 0.0 && (top as f32) < f32::MIN_POSITIVE
        });
        let a32 = (!lost).then_some(a32);
        let d32 = parts.iter().all(|t| t.1).then_some(d32);
        let blocks = (0..nb).map(|k| (k * nx / nb, (k + 1) * nx / nb)).collect();
        Kernel {
            prob,
            beta,
            a,
            d32,
            a32,
            blocks,
            threads,
        }
    }

    /// Fills the partials of blocks `first..first + parts.len()` for input law `q`.
    fn fill(&self, prec: Precision, q: &[f64], first: usize, parts: &mut [Part]) {
        let ny = self.prob.ny;
        for (part, &(x0, x1)) in parts.iter_mut().zip(&self.blocks[first..]) {
            part.v.fill(0.0);
            part.c.resize(x1 - x0, 1.0);
            let rows = x0 * ny..x1 * ny;
            let p = &self.prob.p[x0..x1];
            match (prec, &self.a32) {
                (Precision::F32, Some(a32)) => {
                    rows_f32(&a32[rows], p, q, &mut part.v, &mut part.c);
                    part.dsum = 0.0;
                }
                _ => {
                    let a = &self.a[rows.clone()];
                    let lo = &self.prob.row_min[x0..x1];
                    let (v, c) = (&mut part.v, &mut part.c);
                    part.dsum = match &self.d32 {
                        Some(d32) => rows_f64(a, &d32[rows], lo, p, q, v, c),
                        None => rows_f64(a, &self.prob.d[rows], lo, p, q, v, c),
                    };
                }
            }
            part.lsum = sum_w_ln(p, &part.c);
        }
        if is_node(first, first + parts.len()) {
            // This thread's share of the tree (`Pool::step`), on its own blocks.
            let mut vs: Vec<&mut [f64]> = parts.iter_mut().map(|p| &mut p.v[..]).collect();
            tree_levels(&mut vs, |_, _| false);
        }
    }

    /// Iterate from `q0` until rate and distortion change by less than `tol` between two
    /// consecutive BA steps (or `max_iter` BA steps), then evaluate the channel of the
    /// final output law ([`Kernel::finish`]). `accelerate`: SQUAREM extrapolation between
    /// pairs of steps ([`Kernel::squarem`]), starting on `A₃₂` where it is kept.
    pub fn solve(
        &self,
        q0: Vec<f64>,
        tol: f64,
        max_iter: usize,
        accelerate: bool,
    ) -> Result<RdPoint> {
        std::thread::scope(|s| {
            let mut pool = Pool::new(self, s);
            let (q, iterations, converged) = if accelerate {
                self.squarem(&mut pool, q0, tol, max_iter)?
            } else {
                self.plain(&mut pool, q0, tol, max_iter)?
            };
            self.finish(&mut pool, &q, iterations, converged)
        })
    }

    /// The reported point of output law `q`, in the linear domain on the `f64` kernel:
    /// the channel `Q(y|x) = A[x, y] q(y) / c(x)`, its output law, `(D, R)` (one more BA
    /// step from `q`; the formulas of the module doc are those of this channel against
    /// its output law) and Blahut's lower bound at that output law `q'`,
    /// `−β (D − D_min) − Σ_x p(x) ln c'(x) − ln max_y Σ_x p(x) A[x, y] / c'(x)` with
    /// `c' = A q'` (a further step's sums; the same bound as
    /// [`RdProblem::lower_bound`], without a logarithm or exponential per cell).
    fn finish(
        &self,
        pool: &mut Pool,
        q: &[f64],
        iterations: usize,
        converged: bool,
    ) -> Result<RdPoint> {
        let (ny, beta) = (self.prob.ny, self.beta);
        let mut output = vec![0.0; ny];
        let s = pool.step(Precision::F64, q, &mut output)?;
        if !(s.distortion.is_finite() && s.rate.is_finite()) {
            bail!(
                "Blahut–Arimoto produced a non-finite result at β = {beta} (distortion {}, rate {})",
                s.distortion,
                s.rate
            );
        }
        let channel = self.channel(q, &pool.c());
        let mut next = vec![0.0; ny];
        let bound = pool.step(Precision::F64, &output, &mut next)?;
        let max_v = pool.v.iter().copied().fold(0.0, f64::max);
        let lower_bound = -beta * (s.distortion - self.prob.d_min) - bound.lsum - max_v.ln();
        let lower_bound = if lower_bound.is_finite() {
            lower_bound
        } else {
            0.0
        };
        Ok(RdPoint {
            beta,
            distortion: s.distortion,
            rate: s.rate,
            channel,
            output,
            iterations,
            converged,
            lower_bound: lower_bound.min(s.rate),
            time_shared: false,
            starts_spread: 0.0,
            from_restart: false,
            starts: 1,
        })
    }

    /// The channel `Q(y|x) = A[x, y] q(y) / c(x)` of output law `q`, rows split over the
    /// threads; `c = A q` as the step from `q` computed it (rows with `p(x) = 0`, which
    /// the step skips, get theirs here).
    fn channel(&self, q: &[f64], c: &[f64]) -> Vec<f64> {
        let (n, ny) = (self.a.len(), self.prob.ny);
        let mut channel = Vec::<f64>::with_capacity(n);
        let per = self.prob.nx.div_ceil(self.threads);
        let fill = |x0: usize, out: Out<f64>| {
            let rows = out
                .chunks_exact_mut(ny)
                .zip(self.a[x0 * ny..].chunks_exact(ny));
            for (x, (row, ra)) in (x0..).zip(rows) {
                let c = match self.prob.p[x] > 0.0 {
                    true => c[x],
                    false => dot2(ra, ra, 0.0, q).0,
                };
                for ((o, &a), &qy) in row.iter_mut().zip(ra).zip(q) {
                    o.write(a * qy / c);
                }
            }
        };
        let chunks = channel.spare_capacity_mut()[..n].chunks_mut(per * ny);
        on_threads(chunks, |k, out| fill(k * per, out));
        // SAFETY: the chunks cover `0..n` and every entry was written.
        unsafe { channel.set_len(n) };
        channel
    }

    /// The plain iteration (`f64` throughout).
    fn plain(
        &self,
        pool: &mut Pool,
        q0: Vec<f64>,
        tol: f64,
        max_iter: usize,
    ) -> Result<(Vec<f64>, usize, bool)> {
        let mut q = q0;
        let mut next = vec![0.0; q.len()];
        let mut prev: Option<(f64, f64)> = None;
        for it in 1..=max_iter {
            if it % 64 == 0 {
                check_cancelled()?;
            }
            let s = pool.step(Precision::F64, &q, &mut next)?;
            std::mem::swap(&mut q, &mut next);
            if let Some((d0, r0)) = prev {
                if (s.distortion - d0).abs() < tol && (s.rate - r0).abs() < tol {
                    return Ok((q, it, true));
                }
            }
            prev = Some((s.distortion, s.rate));
        }
        Ok((q, max_iter, false))
    }

    /// BA accelerated by squared extrapolation (SQUAREM, scheme S3 of Varadhan & Roland,
    /// Scand. J. Statist. 35, 2008): from `q0`, two BA steps `q1 = F(q0)`, `q2 = F(q1)`,
    /// `r = q1 − q0`, `v = q2 − 2 q1 + q0`, `α = −‖r‖ / ‖v‖` (at most −1), and the next
    /// point `q0 − 2α r + α² v` (`α = −1` gives `q2`, the plain double step). The step is
    /// halved towards `α = −1` while the point leaves the simplex, and a point whose next
    /// BA step has a larger objective `R + βD` than `q2`'s is replaced by `q2`, so the
    /// iteration keeps the plain one's fixed point and never does worse per pair of steps.
    /// Convergence is judged as in the plain run, between the two consecutive BA steps of
    /// a pair; the count returned is of BA steps (each costs one plain iteration). The
    /// steps are on `A₃₂` until a pair moves `q` by less than `max(F32_EXIT, tol)` in ℓ¹,
    /// then on the `f64` kernel from that pair's `q2` (module doc).
    fn squarem(
        &self,
        pool: &mut Pool,
        q0: Vec<f64>,
        tol: f64,
        max_iter: usize,
    ) -> Result<(Vec<f64>, usize, bool)> {
        let n = q0.len();
        let mut q = q0;
        let (mut q1, mut q2, mut next) = (vec![0.0; n], vec![0.0; n], vec![0.0; n]);
        // The plain double step of the last extrapolation and its objective.
        let mut fallback = vec![0.0; n];
        let mut fallback_objective: Option<f64> = None;
        let mut prec = if self.a32.is_some() {
            Precision::F32
        } else {
            Precision::F64
        };
        let mut it = 0;
        loop {
            if it + 2 > max_iter {
                if it < max_iter {
                    pool.step(prec, &q, &mut q1)?;
                    std::mem::swap(&mut q, &mut q1);
                    it += 1;
                }
                return Ok((q, it, false));
            }
            if it % 64 < 2 {
                check_cancelled()?;
            }
            let mut s1 = pool.step(prec, &q, &mut q1)?;
            it += 1;
            if let Some(l2) = fallback_objective.take() {
                if s1.objective > l2 + 1e-13 * l2.abs() {
                    // The extrapolation overshot: continue from the plain double step.
                    std::mem::swap(&mut q, &mut fallback);
                    if it + 2 > max_iter {
                        continue;
                    }
                    s1 = pool.step(prec, &q, &mut q1)?;
                    it += 1;
                }
            }
            let s2 = pool.step(prec, &q1, &mut q2)?;
            it += 1;
            match prec {
                Precision::F64 => {
                    if (s2.distortion - s1.distortion).abs() < tol
                        && (s2.rate - s1.rate).abs() < tol
                    {
                        return Ok((q2, it, true));
                    }
                }
                Precision::F32 => {
                    let moved: f64 = q1.iter().zip(&q2).map(|(a, b)| (a - b).abs()).sum();
                    if moved < F32_EXIT.max(tol) {
                        // Finish on the f64 kernel from the last BA step.
                        prec = Precision::F64;
                        std::mem::swap(&mut q, &mut q2);
                        continue;
                    }
                }
            }
            let (mut rr, mut vv) = (0.0, 0.0);
            for ((&a, &b), &c) in q.iter().zip(&q1).zip(&q2) {
                let (r, v) = (b - a, c - 2.0 * b + a);
                rr += r * r;
                vv += v * v;
            }
            let mut alpha = if vv > 0.0 { -(rr / vv).sqrt() } else { -1.0 };
            alpha = alpha.min(-1.0);
            loop {
                let mut ok = true;
                for (((n, &a), &b), &c) in next.iter_mut().zip(&q).zip(&q1).zip(&q2) {
                    let (r, v) = (b - a, c - 2.0 * b + a);
                    *n = a - 2.0 * alpha * r + alpha * alpha * v;
                    ok &= *n >= 0.0;
                }
                if ok || alpha >= -1.0 {
                    break;
                }
                alpha = ((alpha - 1.0) / 2.0).min(-1.0);
                if alpha > -1.0 - 1e-3 {
                    alpha = -1.0;
                }
            }
            if alpha == -1.0 {
                std::mem::swap(&mut q, &mut q2);
            } else {
                let total: f64 = next.iter().sum();
                for n in next.iter_mut() {
                    *n /= total;
                }
                std::mem::swap(&mut q, &mut next);
                fallback.copy_from_slice(&q2);
                fallback_objective = Some(s2.objective);
            }
        }
    }
}

/// How long a thread of a run polls for its next message before it sleeps: longer than
/// the serial work between two steps (about 10 µs at 1000 × 1000), so that a step hands
/// over without waking a sleeping thread. That wake-up is slow on virtual machines, whose
/// idle virtual CPUs halt: on the 2-core VM of `tools/ba_numpy.py`, polling took the
/// 1000 × 1000 SQUAREM run from about 55 to 32 ms. Polling yields the core between
/// checks, so that on a busy machine the thread it waits for can run.
const SPIN: Duration = Duration::from_micros(100);

/// `rx.recv()`, polling for up to [`SPIN`] first.
fn recv_soon<T>(rx: &Receiver<T>) -> Result<T, RecvError> {
    let start = Instant::now();
    loop {
        match rx.try_recv() {
            Ok(v) => return Ok(v),
            Err(TryRecvError::Disconnected) => return Err(RecvError),
            // Lets a thread this one waits for run on this core, on a busy machine.
            Err(TryRecvError::Empty) => std::thread::yield_now(),
        }
        if start.elapsed() > SPIN {
            return rx.recv();
        }
    }
}

/// Whether blocks `first..end` form a node of the summation tree of [`tree_levels`] (an
/// aligned run of a power of two of them), which the thread that holds them sums itself.
fn is_node(first: usize, end: usize) -> bool {
    let n = end - first;
    n.is_power_of_two() && first.is_multiple_of(n)
}

/// Sums the blocks' partial vectors into `vs[0]` along a fixed tree, in place, level by
/// level: `vs[i] += vs[i + w]` for `w = 1, 2, 4, …` and every `i` a multiple of `2w`,
/// skipping the pairs `done(i, w)`. The tree does not depend on the threads, so neither
/// do the bits; a thread whose blocks form a node ([`is_node`]) sums them as it finishes
/// its rows, and the calling thread reads one vector from it instead of each block's.
fn tree_levels(vs: &mut [&mut [f64]], done: impl Fn(usize, usize) -> bool) {
    let n = vs.len();
    let mut w = 1;
    while w < n {
        for i in (0..n - w).step_by(2 * w) {
            if !done(i, w) {
                let (lo, hi) = vs.split_at_mut(i + w);
                for (a, &b) in lo[i].iter_mut().zip(hi[0].iter()) {
                    *a += b;
                }
            }
        }
        w *= 2;
    }
}

/// The threads of one run: the calling thread takes the first group of blocks, each
/// worker one further group.
struct Pool<'k, 'p> {
    kernel: &'k Kernel<'p>,
    /// The calling thread's blocks.
    own: Vec<Part>,
    /// Per worker: its channels and, between steps, its job.
    workers: Vec<(SyncSender<Job>, Receiver<Job>, Option<Job>)>,
    /// `Aᵀ (p / c)`.
    v: Vec<f64>,
    /// The calling thread's copy of the step's input law.
    q: Aligned<f64>,
    /// Each thread's blocks, the calling thread's first.
    groups: Vec<(usize, usize)>,
}

impl<'k, 'p> Pool<'k, 'p> {
    fn new<'s>(kernel: &'k Kernel<'p>, scope: &'s std::thread::Scope<'s, '_>) -> Pool<'k, 'p>
    where
        'k: 's,
    {
        let (nb, ny, t) = (kernel.blocks.len(), kernel.prob.ny, kernel.threads);
        let parts = |k: usize| -> Vec<Part> {
            (0..k)
                .map(|_| Part {
                    v: Aligned::zeroed(ny),
                    c: Vec::new(),
                    dsum: 0.0,
                    lsum: 0.0,
                })
                .collect()
        };
        let group = |i: usize| (i * nb / t, (i + 1) * nb / t);
        let (g0, g1) = group(0);
        let mut workers = Vec::new();
        for i in 1..t {
            let (first, end) = group(i);
            let (to_worker, jobs) = sync_channel::<Job>(1);
            let (done, from_worker) = sync_channel::<Job>(1);
            scope.spawn(move || {
                while let Ok(mut job) = recv_soon(&jobs) {
                    kernel.fill(job.prec, &job.q, job.first, &mut job.parts);
                    if done.send(job).is_err() {
                        break;
                    }
                }
            });
            let job = Job {
                q: Aligned::zeroed(ny),
                prec: Precision::F64,
                first,
                parts: parts(end - first),
            };
            workers.push((to_worker, from_worker, Some(job)));
        }
        Pool {
            kernel,
            own: parts(g1 - g0),
            workers,
            v: vec![0.0; ny],
            q: Aligned::zeroed(ny),
            groups: (0..t).map(group).collect(),
        }
    }

    /// Every block's part, in block order, from the calling thread's and the workers'
    /// (between steps, when the workers' jobs are back).
    fn parts<'a>(
        own: &'a mut [Part],
        workers: &'a mut [(SyncSender<Job>, Receiver<Job>, Option<Job>)],
    ) -> impl Iterator<Item = &'a mut Part> {
        let worker_parts = workers
            .iter_mut()
            .flat_map(|(_, _, job)| job.iter_mut().flat_map(|j| &mut j.parts));
        own.iter_mut().chain(worker_parts)
    }

    /// `c(x) = (A q)(x)` of the last step, per row (1 where `p(x) = 0`).
    fn c(&mut self) -> Vec<f64> {
        Self::parts(&mut self.own, &mut self.workers)
            .flat_map(|part| part.c.iter().copied())
            .collect()
    }

    /// One BA step from output law `q` (linear domain) into `out`.
    fn step(&mut self, prec: Precision, q: &[f64], out: &mut [f64]) -> Result<Stats> {
        let kernel = self.kernel;
        let lost = || Error::msg("Blahut–Arimoto: a worker thread stopped");
        for (to_worker, _, job) in &mut self.workers {
            let mut job = job.take().ok_or_else(lost)?;
            job.q.copy_from_slice(q);
            job.prec = prec;
            to_worker.send(job).map_err(|_| lost())?;
        }
        self.q.copy_from_slice(q);
        kernel.fill(prec, &self.q, 0, &mut self.own);
        for (_, from_worker, job) in &mut self.workers {
            *job = Some(recv_soon(from_worker).map_err(|_| lost())?);
        }
        // The scalars in block order, the vectors along the tree.
        let parts: Vec<&mut Part> = Self::parts(&mut self.own, &mut self.workers).collect();
        let (dsum, lsum) = parts
            .iter()
            .fold((0.0, 0.0), |(d, l), p| (d + p.dsum, l + p.lsum));
        let mut vs: Vec<&mut [f64]> = parts.into_iter().map(|p| &mut p.v[..]).collect();
        let groups = &self.groups;
        tree_levels(&mut vs, |i, w| {
            groups
                .iter()
                .any(|&(a, b)| (a..b).contains(&i) && is_node(a, b) && i + w < b)
        });
        self.v.copy_from_slice(vs[0]);
        let beta = kernel.beta;
        if !(dsum.is_finite() && lsum.is_finite()) {
            bail!("Blahut–Arimoto degenerate at β = {beta}: a source letter lost every output (use a smaller β)");
        }
        for ((o, &q), &v) in out.iter_mut().zip(q).zip(&self.v) {
            *o = q * v;
        }
        // Σ q' ln(q / q') = −Σ q' ln v (q' = q v; outputs with q' = 0 add nothing).
        let cross = -sum_w_ln(out, &self.v);
        let d_min = kernel.prob.d_min;
        Ok(match prec {
            Precision::F64 => {
                let distortion = d_min + dsum;
                let rate = (-beta * dsum - lsum + cross).max(0.0);
                Stats {
                    distortion,
                    rate,
                    objective: rate + beta * distortion,
                    lsum,
                }
            }
            Precision::F32 => Stats {
                distortion: f64::NAN,
                rate: f64::NAN,
                objective: beta * d_min - lsum + cross,
                lsum,
            },
        })
    }
}

impl RdProblem {
    /// [`Self::run_from`] on the dense kernel.
    pub fn run_dense(&self, beta: f64, lq0: &[f64], opts: &BaOptions) -> Result<RdPoint> {
        let kernel = Kernel::new(self, beta);
        let q0 = lq0.iter().map(|l| l.exp()).collect();
        kernel.solve(q0, opts.tol, opts.max_iter, opts.accelerate)
    }
}

#[cfg(test)]
mod tests {
    use super::Kernel;
    use crate::blahut_arimoto::{BaOptions, RdProblem};

    /// The dense kernel and the log-domain iteration agree on a 120 × 120 problem.
    #[test]
    fn dense_and_log_domain_iterations_agree() {
        let n: usize = 120;
        let prob = bench_problem(n);
        let opts = BaOptions {
            tol: 1e-11,
            max_iter: 20_000,
            restarts: 0,
            ..Default::default()
        };
        let lq0 = vec![-(n as f64).ln(); n];
        for beta in [4.0, 16.0] {
            let dense = prob.run_dense(beta, &lq0, &opts).unwrap();
            let log = prob.run_log(beta, &lq0, &opts).unwrap();
            assert!(
                dense.converged && log.converged,
                "β {beta}: {} / {} iterations",
                dense.iterations,
                log.iterations
            );
            assert!(
                (dense.rate - log.rate).abs() < 1e-9,
                "β {beta}: R {} vs {}",
                dense.rate,
                log.rate
            );
            assert!(
                (dense.distortion - log.distortion).abs() < 1e-9,
                "β {beta}: D {} vs {}",
                dense.distortion,
                log.distortion
            );
            // The same iteration: the counts agree to within the last step's rounding.
            assert!(
                dense.iterations.abs_diff(log.iterations) <= 1,
                "{} vs {}",
                dense.iterations,
                log.iterations
            );
        }
    }

    /// The `tools/ba_numpy.py` problem of side `n`.
    fn bench_problem(n: usize) -> RdProblem {
        let p: Vec<f64> = (0..n).map(|x| (x % 7 + 1) as f64).collect();
        let s: f64 = p.iter().sum();
        let p: Vec<f64> = p.iter().map(|v| v / s).collect();
        let d: Vec<f64> = (0..n * n)
            .map(|k| {
                (((k / n) * 31 + (k % n) * 17) % 64 + (k / n).abs_diff(k % n) % 64) as f64 / 64.0
            })
            .collect();
        RdProblem::new(&p, d, n, 1e-9).unwrap()
    }

    /// SQUAREM converges to the plain iteration's fixed point in fewer BA steps.
    #[test]
    fn squarem_keeps_the_fixed_point_with_fewer_steps() {
        let cases = [
            (bench_problem(120), 4.0),
            (bench_problem(120), 16.0),
            (bench_problem(300), 8.0),
            (bench_problem(1000), 8.0),
        ];
        for (prob, beta) in cases {
            let lq0 = vec![-(prob.ny as f64).ln(); prob.ny];
            let tight = BaOptions {
                tol: 1e-13,
                max_iter: 20_000,
                restarts: 0,
                ..Default::default()
            };
            let plain = prob.run_dense(beta, &lq0, &tight).unwrap();
            let fast = prob
                .run_dense(
                    beta,
                    &lq0,
                    &BaOptions {
                        accelerate: true,
                        ..tight.clone()
                    },
                )
                .unwrap();
            let what = format!("{}x{} β {beta}", prob.nx, prob.ny);
            assert!(plain.converged && fast.converged, "{what}");
            assert!(
                (fast.rate - plain.rate).abs() < 1e-10,
                "{what}: R {} vs {}",
                fast.rate,
                plain.rate
            );
            assert!(
                (fast.distortion - plain.distortion).abs() < 1e-10,
                "{what}: D {} vs {}",
                fast.distortion,
                plain.distortion
            );
            assert!(
                fast.iterations < plain.iterations,
                "{what}: {} vs {} steps",
                fast.iterations,
                plain.iterations
            );
            // The stopping rule and the cap are honoured.
            let capped = prob
                .run_dense(
                    beta,
                    &lq0,
                    &BaOptions {
                        max_iter: 7,
                        accelerate: true,
                        ..tight.clone()
                    },
                )
                .unwrap();
            assert_eq!((capped.iterations, capped.converged), (7, false), "{what}");
        }
    }

    /// The reported channel is a channel of the reported output law: rows sum to 1 (the
    /// row of a source letter with p(x) = 0 too, whose `c(x)` the steps skip) and
    /// `Σ_x p(x) Q(y|x)` is the output law.
    #[test]
    fn channel_rows_are_laws_of_the_output() {
        let n = 300;
        let base = bench_problem(n);
        let mut p = base.p.clone();
        p[5] = 0.0;
        let total: f64 = p.iter().sum();
        p.iter_mut().for_each(|v| *v /= total);
        let prob = RdProblem::new(&p, base.d.clone(), n, 1e-9).unwrap();
        for accelerate in [false, true] {
            let pt = Kernel::new(&prob, 8.0)
                .solve(vec![1.0 / n as f64; n], 1e-12, 5000, accelerate)
                .unwrap();
            for (x, row) in pt.channel.chunks_exact(n).enumerate() {
                let sum: f64 = row.iter().sum();
                assert!((sum - 1.0).abs() < 1e-12, "row {x} sums to {sum}");
            }
            for y in 0..n {
                let q: f64 = (0..n).map(|x| p[x] * pt.channel[x * n + y]).sum();
                assert!(
                    (q - pt.output[y]).abs() < 1e-12,
                    "output {y}: {q} vs {}",
                    pt.output[y]
                );
            }
        }
    }

    /// The vectorizable logarithm is within 2 ulp of the standard one over the normal
    /// numbers; `sum_w_ln` skips non-positive entries and falls back to `f64::ln` on
    /// subnormal ones.
    #[test]
    fn ln_poly_matches_std() {
        let mut worst: f64 = 0.0;
        let mut check = |x: f64| {
            let (l, r) = (super::ln_poly(x), x.ln());
            let ulp = f64::from_bits(r.abs().to_bits() + 1) - r.abs();
            let err = (l - r).abs() / ulp;
            assert!(err <= 2.0, "ln({x:e}): {l:e} vs {r:e} ({err} ulp)");
            worst = worst.max(err);
        };
        let mut x = f64::MIN_POSITIVE;
        while x < 1e300 {
            check(x);
            x *= 1.000_731_3;
        }
        let mut x = 0.5;
        while x < 2.0 {
            check(x);
            x += 0.000_013_7;
        }
        for x in [
            1.0,
            1.0 + f64::EPSILON,
            1.0 - f64::EPSILON / 2.0,
            std::f64::consts::SQRT_2,
            f64::MAX,
        ] {
            check(x);
        }
        assert_eq!(super::ln_poly(1.0), 0.0);
        assert!(worst > 0.0, "the sweep compared something");
        // Terms with w = 0 add nothing, whatever x is; with a subnormal x (the f64::ln
        // fallback) and with normal ones only.
        let w: [f64; 10] = [0.5, 0.0, 2.0, 1.0, 0.0, 0.5, 0.5, 0.5, 0.5, 7.0];
        for tiny in [1e-310, 1e-300] {
            let x: [f64; 10] = [2.0, 0.0, tiny, 3.0, -1.0, 4.0, 5.0, 6.0, 7.0, 8.0];
            let want: f64 = w
                .iter()
                .zip(&x)
                .filter(|(&w, _)| w != 0.0)
                .map(|(w, x)| w * x.ln())
                .sum();
            assert!((super::sum_w_ln(&w, &x) - want).abs() < 1e-14 * want.abs());
        }
        // A used term at x = 0 is −∞, at a negative x NaN (a degenerate step).
        let mut x = [1.0; 10];
        x[3] = 0.0;
        assert_eq!(super::sum_w_ln(&w, &x), f64::NEG_INFINITY);
        x[3] = -1.0;
        assert!(super::sum_w_ln(&w, &x).is_nan());
    }

    /// The vectorizable exponential is within 2 ulp of the standard one over the whole
    /// range a kernel uses, subnormal results and underflow to 0 included.
    #[test]
    fn exp_poly_matches_std() {
        let mut worst: f64 = 0.0;
        let mut x = 0.0f64;
        let mut check = |x: f64| {
            let (e, r) = (super::exp_poly(x), x.exp());
            let ulp = if r > 0.0 {
                f64::from_bits(r.to_bits() + 1) - r
            } else {
                f64::from_bits(1)
            };
            let err = (e - r).abs() / ulp;
            assert!(err <= 2.0, "exp({x}): {e:e} vs {r:e} ({err} ulp)");
            worst = worst.max(err);
        };
        // A dense sweep of [−750, 0], then the edges.
        while x > -750.0 {
            check(x);
            x -= 0.000_731_3;
        }
        for x in [
            0.0,
            -0.0,
            -1e-300,
            -0.5 * std::f64::consts::LN_2,
            -708.39,
            -709.0,
            -744.4,
            -745.13,
            -745.2,
            -800.0,
            f64::NEG_INFINITY,
        ] {
            check(x);
        }
        assert_eq!(super::exp_poly(-0.0), 1.0);
        assert!(worst > 0.0, "the sweep compared something");
    }

    /// The result does not depend on the number of threads (fixed blocks, summed in
    /// block order): the same bits with 1, 2 and 3 threads, plain and SQUAREM.
    #[test]
    fn thread_count_does_not_change_a_bit() {
        let prob = bench_problem(300);
        let q0 = vec![1.0 / 300.0; 300];
        for accelerate in [false, true] {
            let runs: Vec<_> = [1, 2, 3]
                .iter()
                .map(|&t| {
                    let mut k = Kernel::new(&prob, 8.0);
                    k.threads = t;
                    k.solve(q0.clone(), 1e-12, 5000, accelerate).unwrap()
                })
                .collect();
            // `d` held in f32 (exact here: multiples of 1/64) changes no bit either.
            let mut k = Kernel::new(&prob, 8.0);
            assert!(k.d32.is_some());
            k.d32 = None;
            let wide = k.solve(q0.clone(), 1e-12, 5000, accelerate).unwrap();
            assert_eq!(wide.rate.to_bits(), runs[0].rate.to_bits());
            assert_eq!(wide.distortion.to_bits(), runs[0].distortion.to_bits());
            for r in &runs[1..] {
                assert_eq!(r.iterations, runs[0].iterations);
                assert_eq!(r.rate.to_bits(), runs[0].rate.to_bits());
                assert_eq!(r.distortion.to_bits(), runs[0].distortion.to_bits());
                assert!(r
                    .output
                    .iter()
                    .zip(&runs[0].output)
                    .all(|(a, b)| a.to_bits() == b.to_bits()));
            }
        }
    }

    /// SQUAREM starts on the f32 kernel and finishes on the f64 one: the f32 fixed point
    /// alone is off by more than 1e-10 (so the f64 phase is needed), the mixed run is not.
    /// Where f32 would lose an output (β d' > 87 on a whole column), the run is f64 only
    /// and still agrees.
    #[test]
    fn f32_phase_then_f64_keeps_the_f64_fixed_point() {
        let prob = bench_problem(300);
        let q0 = vec![1.0 / 300.0; 300];
        let k = Kernel::new(&prob, 8.0);
        assert!(k.a32.is_some());
        let plain = k.solve(q0.clone(), 1e-14, 50_000, false).unwrap();
        let mixed = k.solve(q0.clone(), 1e-12, 50_000, true).unwrap();
        assert!(plain.converged && mixed.converged);
        assert!(
            (mixed.rate - plain.rate).abs() < 1e-10,
            "{} vs {}",
            mixed.rate,
            plain.rate
        );
        assert!((mixed.distortion - plain.distortion).abs() < 1e-10);
        // The f32 kernel's own fixed point (SQUAREM on it, never switching) is further off.
        let f32_only = {
            std::thread::scope(|s| {
                let mut pool = super::Pool::new(&k, s);
                let mut q = q0.clone();
                let mut next = vec![0.0; 300];
                for _ in 0..3000 {
                    pool.step(super::Precision::F32, &q, &mut next).unwrap();
                    std::mem::swap(&mut q, &mut next);
                }
                k.finish(&mut pool, &q, 0, false).unwrap()
            })
        };
        let off = (f32_only.rate - plain.rate)
            .abs()
            .max((f32_only.distortion - plain.distortion).abs());
        assert!(off > 1e-10 && off < 1e-6, "f32 fixed point off by {off}");

        // A column that only underflowing entries reach: f64 throughout.
        let n = 300;
        let mut d = prob.d.clone();
        for x in 0..n {
            d[x * n + 7] = 20.0;
        }
        let wide = RdProblem::new(&prob.p, d, n, 1e-9).unwrap();
        let k = Kernel::new(&wide, 8.0);
        assert!(k.a32.is_none());
        let plain = k.solve(q0.clone(), 1e-14, 50_000, false).unwrap();
        let fast = k.solve(q0, 1e-12, 50_000, true).unwrap();
        assert!((fast.rate - plain.rate).abs() < 1e-10);
        assert!((fast.distortion - plain.distortion).abs() < 1e-10);
        assert!(fast.iterations < plain.iterations);
    }
}
