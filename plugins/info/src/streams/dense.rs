//! Dense plug-in counting for small alphabets: the fast path of every estimator that
//! [`super::counting`] serves sparsely.
//!
//! A variable is a list of *parts*, "the symbol of stream `s` at lag `l` before the sample
//! time". When every stream's alphabet (its largest symbol + 1) is small enough that the
//! joint table of `(A, B, C)` has at most [`cells_limit`] cells, each sample gets the
//! mixed-radix code `a + |A| (b + |B| c)` of its joint state, computed block-wise from the
//! streams (one multiply-add pass per part over a cache-sized block, reading the streams'
//! narrow storage directly; no per-sample allocation, no hashing) and counted straight
//! into the table; the marginal tables `(A, C)`, `(B, C)` and `C` are sums over the joint
//! one. Codes are u16 when the table is small (twice the lanes per vector step), and the
//! counting loop is compiled for AVX2 when the CPU has it. Samples are split into
//! contiguous ranges over scoped threads (none outlives the call), each with its own table, summed
//! afterwards: counts are integers, so every result is bit-identical whatever the number
//! of threads.
//!
//! Values use the formulas of [`super::estimate`] on the same counts (local values are
//! bit-identical; global values are the same sums in another order, equal to rounding).
//! Permutation surrogates reorder the per-sample codes of `B` exactly as
//! [`super::significance::surrogate`] reorders its ids (the same generator per surrogate,
//! the same permutation), and reuse the fixed `(A, C)` and `C` tables.

use super::counting::Layout;
use super::estimate::{Bias, Estimate};
use super::measure::{Measured, Options};
use super::rng::Rng;
use super::series::{Symbols, Trial};
use super::significance::{run_surrogates, summarise, surrogate};
use std::ops::Range;

/// One part of a variable: the symbol of a stream at a lag before the sample time.
pub type Part<'a> = (&'a Symbols, usize);

/// Samples per block of the code computation (fits in L1 with its source slices).
const BLOCK: usize = 2048;
/// Samples per thread below which another thread costs more than it saves.
const PER_THREAD: usize = 1 << 17;

/// Largest dense joint table for `samples` samples: a table much larger than the sample
/// count costs more to clear and scan than hashing would.
pub fn cells_limit(samples: usize) -> u64 {
    (4 * samples as u64).clamp(1 << 16, 1 << 24)
}

/// A part with its place value in the joint code.
struct Coded<'a> {
    stream: &'a Symbols,
    lag: usize,
    radix: u32,
}

/// The joint code layout of `(A, B, C)`.
struct Plan<'a> {
    parts: Vec<Coded<'a>>,
    na: usize,
    nb: usize,
    nc: usize,
}

impl<'a> Plan<'a> {
    /// The plan, or `None` when the joint table would exceed [`cells_limit`].
    fn new(vars: [&[Part<'a>]; 3], samples: usize) -> Option<Plan<'a>> {
        let limit = cells_limit(samples);
        let mut seen: Vec<(*const Symbols, u64)> = Vec::new();
        let mut radix = 1u64;
        let mut sizes = [1usize; 3];
        let mut parts = Vec::new();
        for (v, var) in vars.iter().enumerate() {
            let start = radix;
            for &(s, lag) in var.iter() {
                let base = match seen.iter().find(|(p, _)| std::ptr::eq(*p, s)) {
                    Some(&(_, b)) => b,
                    None => {
                        let b = s.alphabet();
                        seen.push((s, b));
                        b
                    }
                };
                parts.push(Coded {
                    stream: s,
                    lag,
                    radix: radix as u32,
                });
                radix = radix.checked_mul(base.max(1))?;
                if radix > limit {
                    return None;
                }
            }
            sizes[v] = (radix / start) as usize;
        }
        Some(Plan {
            parts,
            na: sizes[0],
            nb: sizes[1],
            nc: sizes[2],
        })
    }

    fn cells(&self) -> usize {
        self.na * self.nb * self.nc
    }
}

/// The integer type of the per-sample codes: u16 when the joint table is small enough
/// ([`Worker::run`]; twice the lanes per vector step), else u32.
trait Code: Copy + Default + Into<u32> + std::ops::Mul<Output = Self> + std::ops::AddAssign {
    /// `v`, which the caller knows to fit.
    fn of(v: u32) -> Self;
}

impl Code for u16 {
    #[inline(always)]
    fn of(v: u32) -> u16 {
        debug_assert!(v <= u16::MAX as u32);
        v as u16
    }
}

impl Code for u32 {
    #[inline(always)]
    fn of(v: u32) -> u32 {
        v
    }
}

/// `out[i] (+)= x[i] · radix` (`set`: assign), widening the narrow storage on the fly.
#[inline(always)]
fn mul_add<T: Copy + Into<u32>, C: Code>(out: &mut [C], x: &[T], radix: C, set: bool) {
    if set {
        for (o, &v) in out.iter_mut().zip(x) {
            *o = C::of(v.into()) * radix;
        }
    } else {
        for (o, &v) in out.iter_mut().zip(x) {
            *o += C::of(v.into()) * radix;
        }
    }
}

/// Codes of `parts` at the times `t0 + i` of one trial, for `i` in `range`, into `out`.
/// With u16 codes every part's symbols and place values are below 2¹⁶ (the table is
/// small), so the narrowing in [`Code::of`] is exact.
#[inline(always)]
fn codes_into<C: Code>(
    parts: &[Coded],
    trial: usize,
    t0: usize,
    range: Range<usize>,
    out: &mut [C],
) {
    debug_assert_eq!(out.len(), range.len());
    let (lo, hi) = (t0 + range.start, t0 + range.end);
    if parts.is_empty() {
        out.fill(C::default());
    }
    for (i, p) in parts.iter().enumerate() {
        let r = lo - p.lag..hi - p.lag;
        let radix = C::of(p.radix);
        match p.stream.trial(trial) {
            Trial::U8(x) => mul_add(out, &x[r], radix, i == 0),
            Trial::U16(x) => mul_add(out, &x[r], radix, i == 0),
            Trial::U32(x) => mul_add(out, &x[r], radix, i == 0),
        }
    }
}

/// What a counting worker needs: the parts, the trials' sample ranges, and the table size.
struct Worker<'p, 'a> {
    parts: &'p [Coded<'a>],
    segments: &'p [Range<usize>],
    t0: usize,
    cells: usize,
}

impl Worker<'_, '_> {
    /// The counts of samples `g0..g1` (global order), their codes into `out` when kept.
    /// Small tables are counted in four interleaved copies, so runs of equal codes do not
    /// serialise on one counter.
    #[inline(always)]
    fn count<C: Code>(&self, g0: usize, g1: usize, mut out: Option<&mut [u32]>) -> Vec<u32> {
        let cells = self.cells;
        let lanes = if cells <= 1 << 12 { 4 } else { 1 };
        let mut hist = vec![0u32; cells * lanes];
        let mut buf = [C::default(); BLOCK];
        for (trial, seg) in self.segments.iter().enumerate() {
            let (s, e) = (seg.start.max(g0), seg.end.min(g1));
            let mut at = s;
            while at < e {
                let end = (at + BLOCK).min(e);
                let b = &mut buf[..end - at];
                codes_into(
                    self.parts,
                    trial,
                    self.t0,
                    at - seg.start..end - seg.start,
                    b,
                );
                if cells > 0 && lanes == 4 {
                    let (h0, rest) = hist.split_at_mut(cells);
                    let (h1, rest) = rest.split_at_mut(cells);
                    let (h2, h3) = rest.split_at_mut(cells);
                    let mut quads = b.chunks_exact(4);
                    for q in &mut quads {
                        h0[q[0].into() as usize] += 1;
                        h1[q[1].into() as usize] += 1;
                        h2[q[2].into() as usize] += 1;
                        h3[q[3].into() as usize] += 1;
                    }
                    for &c in quads.remainder() {
                        h0[c.into() as usize] += 1;
                    }
                } else if cells > 0 {
                    for &c in b.iter() {
                        hist[c.into() as usize] += 1;
                    }
                }
                if let Some(o) = out.as_deref_mut() {
                    for (o, &c) in o[at - g0..end - g0].iter_mut().zip(b.iter()) {
                        *o = c.into();
                    }
                }
                at = end;
            }
        }
        let (first, rest) = hist.split_at_mut(cells);
        for lane in rest.chunks_exact(cells.max(1)) {
            for (a, b) in first.iter_mut().zip(lane) {
                *a += b;
            }
        }
        hist.truncate(cells);
        hist
    }

    /// [`Worker::count`] compiled for AVX2 (the code pass widens and multiplies eight
    /// samples at a time).
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2")]
    unsafe fn count_avx2<C: Code>(
        &self,
        g0: usize,
        g1: usize,
        out: Option<&mut [u32]>,
    ) -> Vec<u32> {
        self.count::<C>(g0, g1, out)
    }

    /// [`Worker::count`] with the narrowest codes the table allows, for AVX2 when the CPU
    /// has it.
    fn run(&self, g0: usize, g1: usize, out: Option<&mut [u32]>) -> Vec<u32> {
        // At most 2¹⁵ cells: every symbol, place value and code fits in u16 (a place
        // value can equal the cell count when a stream's alphabet is 1).
        let narrow = self.cells > 0 && self.cells <= 1 << 15;
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU has AVX2 (checked just above).
            return unsafe {
                if narrow {
                    self.count_avx2::<u16>(g0, g1, out)
                } else {
                    self.count_avx2::<u32>(g0, g1, out)
                }
            };
        }
        if narrow {
            self.count::<u16>(g0, g1, out)
        } else {
            self.count::<u32>(g0, g1, out)
        }
    }
}

/// Per-sample codes of `parts` over the whole layout (trials after each other) when
/// `keep`, and their counts in a table of `cells` cells (0: no counts). Threads over
/// contiguous sample ranges.
fn count(parts: &[Coded], layout: &Layout, cells: usize, keep: bool) -> (Vec<u32>, Vec<u32>) {
    let n = layout.samples();
    let cores = std::thread::available_parallelism().map_or(1, |c| c.get());
    count_on(
        parts,
        layout,
        cells,
        keep,
        cores.min(8).min(1 + n / PER_THREAD),
    )
}

/// [`count`] on `threads` threads.
fn count_on(
    parts: &[Coded],
    layout: &Layout,
    cells: usize,
    keep: bool,
    threads: usize,
) -> (Vec<u32>, Vec<u32>) {
    let segments = layout.segments();
    let n = layout.samples();
    let threads = threads.clamp(1, n.max(1));
    let chunk = n.div_ceil(threads).max(1);
    let mut all = if keep { vec![0u32; n] } else { Vec::new() };
    let t0 = layout.t0;
    let segments = &segments[..];
    let work = |g0: usize, g1: usize, out: Option<&mut [u32]>| -> Vec<u32> {
        Worker {
            parts,
            segments,
            t0,
            cells,
        }
        .run(g0, g1, out)
    };
    let hists: Vec<Vec<u32>> = if threads == 1 {
        vec![work(0, n, keep.then_some(&mut all[..]))]
    } else {
        let outs: Vec<Option<&mut [u32]>> = if keep {
            all.chunks_mut(chunk).map(Some).collect()
        } else {
            (0..n).step_by(chunk).map(|_| None).collect()
        };
        // Scoped threads: a plugin starts no thread that outlives a call
        // (docs/architecture.md).
        std::thread::scope(|s| {
            let work = &work;
            let range = |i: usize| (i * chunk, ((i + 1) * chunk).min(n));
            let mut outs = outs.into_iter();
            let first = outs.next().expect("a non-empty input has a first part");
            let others: Vec<_> = outs
                .enumerate()
                .map(|(i, out)| {
                    let (g0, g1) = range(i + 1);
                    s.spawn(move || work(g0, g1, out))
                })
                .collect();
            let (g0, g1) = range(0);
            let mut hists = vec![work(g0, g1, first)];
            hists.extend(
                others
                    .into_iter()
                    .map(|h| h.join().unwrap_or_else(|e| std::panic::resume_unwind(e))),
            );
            hists
        })
    };
    let mut hists = hists.into_iter();
    let mut hist = hists.next().unwrap_or_else(|| vec![0; cells]);
    for h in hists {
        for (a, b) in hist.iter_mut().zip(&h) {
            *a += b;
        }
    }
    (all, hist)
}

fn mm(bias: Bias, bins: i64, n: usize) -> f64 {
    match bias {
        Bias::None => 0.0,
        Bias::MillerMadow => bins as f64 / (2.0 * n as f64),
    }
}

fn occupied(h: &[u32]) -> i64 {
    h.iter().filter(|&&c| c > 0).count() as i64
}

/// The joint table of `(A, B, C)` and its marginals.
struct Tables {
    na: usize,
    nb: usize,
    nc: usize,
    abc: Vec<u32>,
    ac: Vec<u32>,
    bc: Vec<u32>,
    c: Vec<u32>,
}

impl Tables {
    fn new(plan: &Plan, abc: Vec<u32>) -> Tables {
        let (na, nb, nc) = (plan.na, plan.nb, plan.nc);
        let mut ac = vec![0u32; na * nc];
        let mut bc = vec![0u32; nb * nc];
        let mut c = vec![0u32; nc];
        for ci in 0..nc {
            for bi in 0..nb {
                let row = &abc[(ci * nb + bi) * na..(ci * nb + bi + 1) * na];
                let mut s = 0;
                for (ai, &h) in row.iter().enumerate() {
                    ac[ci * na + ai] += h;
                    s += h;
                }
                bc[ci * nb + bi] = s;
                c[ci] += s;
            }
        }
        Tables {
            na,
            nb,
            nc,
            abc,
            ac,
            bc,
            c,
        }
    }

    fn view(&self) -> View<'_> {
        View {
            na: self.na,
            nb: self.nb,
            nc: self.nc,
            abc: &self.abc,
            ac: &self.ac,
            bc: &self.bc,
            c: &self.c,
        }
    }
}

/// Borrowed joint and marginal tables (a surrogate brings its own `abc` and `bc`).
struct View<'t> {
    na: usize,
    nb: usize,
    nc: usize,
    abc: &'t [u32],
    ac: &'t [u32],
    bc: &'t [u32],
    c: &'t [u32],
}

impl View<'_> {
    /// Plug-in `I(A; B | C)` and the per-cell local values `ln` of the ratio (NaN where
    /// unoccupied), with the formula of [`super::estimate::Cmi::estimate`].
    fn cmi(&self, n: usize, cell_locals: bool) -> (f64, Vec<f64>) {
        let (na, nb) = (self.na, self.nb);
        let mut plugin = 0.0;
        let mut locals = if cell_locals {
            vec![f64::NAN; self.abc.len()]
        } else {
            Vec::new()
        };
        for ci in 0..self.nc {
            for bi in 0..nb {
                let j0 = (ci * nb + bi) * na;
                for ai in 0..na {
                    let h = self.abc[j0 + ai];
                    if h == 0 {
                        continue;
                    }
                    let ratio = (h as f64 * self.c[ci] as f64)
                        / (self.ac[ci * na + ai] as f64 * self.bc[ci * nb + bi] as f64);
                    let l = ratio.ln();
                    plugin += h as f64 / n as f64 * l;
                    if cell_locals {
                        locals[j0 + ai] = l;
                    }
                }
            }
        }
        (plugin, locals)
    }

    /// Miller–Madow bins of a CMI: `m_AC + m_BC − m_ABC − m_C`.
    fn cmi_bins(&self) -> i64 {
        occupied(self.ac) + occupied(self.bc) - occupied(self.abc) - occupied(self.c)
    }
}

/// Per-sample local values from per-cell ones.
fn spread(codes: &[u32], cell: &[f64], correction: f64) -> Vec<f64> {
    codes
        .iter()
        .map(|&c| cell[c as usize] + correction)
        .collect()
}

/// `H(A | C)` (`c` empty: `H(A)`) with the formulas of [`super::estimate::cond_entropy`]
/// and [`super::estimate::entropy`], or `None` when the alphabets are too large.
pub fn cond_entropy(
    a: &[Part],
    c: &[Part],
    layout: &Layout,
    bias: Bias,
    local: bool,
) -> Option<Estimate> {
    cond_entropy_tables(a, c, layout, bias, local).map(|(e, _, _)| e)
}

/// Plug-in entropy of a table of counts over `n` samples, with its Miller–Madow term
/// (the formula of [`super::estimate::entropy`]).
fn table_entropy(h: impl Iterator<Item = u32>, n: usize, bias: Bias) -> f64 {
    let nf = n as f64;
    let (mut plugin, mut bins) = (0.0, 0i64);
    for c in h.filter(|&c| c > 0) {
        plugin += -(c as f64 / nf) * (c as f64 / nf).ln();
        bins += 1;
    }
    plugin + mm(bias, bins - 1, n)
}

/// The entropy rate `H(X_t | X_{t−k}^{t−1})` of `s` over `layout` (`t0 = k`) and, from
/// the same counts, `H(X^{k+1}) − H(X^k)` with each block entropy over all of its own
/// windows ([`super::entropy::block_entropy_difference`]): the `(k+1)`-windows are the
/// joint states of the rate's samples, the `k`-windows its histories plus the last
/// window of each trial.
pub fn entropy_rate_and_difference(
    s: &Symbols,
    k: usize,
    layout: &Layout,
    bias: Bias,
    local: bool,
) -> Option<(Estimate, f64)> {
    let past: Vec<Part> = (1..=k).map(|l| (s, l)).collect();
    let (e, t, plan) = cond_entropy_tables(&[(s, 0)], &past, layout, bias, local)?;
    let upper = table_entropy(t.abc.iter().copied(), e.samples, bias);
    if k == 0 {
        return Some((e, upper));
    }
    let mut hist = t.c.clone();
    let mut windows = e.samples;
    for r in 0..s.n_trials() {
        let trial = s.trial(r);
        let len = trial.len();
        if len >= k {
            // The history part of a sample at time `len` (one past the end).
            let code: u32 = plan.parts[1..]
                .iter()
                .map(|p| trial.get(len - p.lag) * p.radix)
                .sum::<u32>()
                / plan.na as u32;
            hist[code as usize] += 1;
            windows += 1;
        }
    }
    let lower = table_entropy(hist.into_iter(), windows, bias);
    Some((e, upper - lower))
}

/// [`cond_entropy`] with its tables and plan.
fn cond_entropy_tables<'a>(
    a: &[Part<'a>],
    c: &[Part<'a>],
    layout: &Layout,
    bias: Bias,
    local: bool,
) -> Option<(Estimate, Tables, Plan<'a>)> {
    let n = layout.samples();
    let plan = Plan::new([a, &[], c], n)?;
    let (codes, h) = count(&plan.parts, layout, plan.cells(), local);
    let t = Tables::new(&plan, h);
    let na = t.na;
    let mut plugin = 0.0;
    let mut cell = if local {
        vec![f64::NAN; t.abc.len()]
    } else {
        Vec::new()
    };
    for ci in 0..t.nc {
        for ai in 0..na {
            let h = t.abc[ci * na + ai];
            if h == 0 {
                continue;
            }
            let (n_ac, n_c) = (h as f64, t.c[ci] as f64);
            let l = (n_ac / n_c).ln();
            plugin -= n_ac / n as f64 * l;
            if local {
                cell[ci * na + ai] = -l;
            }
        }
    }
    let states = occupied(&t.abc);
    let correction = mm(bias, states - occupied(&t.c), n);
    let e = Estimate {
        value: plugin + correction,
        plugin,
        correction,
        local: if local {
            spread(&codes, &cell, correction)
        } else {
            Vec::new()
        },
        samples: n,
        states: states as usize,
    };
    Some((e, t, plan))
}

/// `I(A; B | C)` with local values and the permutation test of `opts` (surrogates
/// reorder `B`), or `None` when the alphabets are too large.
pub fn measure_cmi(
    a: &[Part],
    b: &[Part],
    c: &[Part],
    layout: Layout,
    opts: &Options,
) -> Option<Measured> {
    let n = layout.samples();
    let plan = Plan::new([a, b, c], n)?;
    let (codes, h) = count(&plan.parts, &layout, plan.cells(), opts.local);
    let t = Tables::new(&plan, h);
    let (plugin, cell) = t.view().cmi(n, opts.local);
    let correction = mm(opts.bias, t.view().cmi_bins(), n);
    let estimate = Estimate {
        value: plugin + correction,
        plugin,
        correction,
        local: if opts.local {
            spread(&codes, &cell, correction)
        } else {
            Vec::new()
        },
        samples: n,
        states: occupied(&t.abc) as usize,
    };
    drop(codes);
    let significance = (opts.permutations.count > 0).then(|| {
        let (na, nb) = (plan.na, plan.nb);
        // Fixed per-sample parts of the joint codes; only B moves.
        let part = |range: Range<usize>| -> Vec<u32> {
            let sub: Vec<Coded> = plan.parts[range]
                .iter()
                .map(|p| Coded {
                    stream: p.stream,
                    lag: p.lag,
                    radix: p.radix,
                })
                .collect();
            count(&sub, &layout, 0, true).0
        };
        let (ka, kb) = (a.len(), a.len() + b.len());
        let a_codes = part(0..ka);
        // B's codes relative to its own radix (place value na).
        let b_codes: Vec<u32> = part(ka..kb).iter().map(|&v| v / na as u32).collect();
        let c_codes: Vec<u32> = part(kb..plan.parts.len())
            .iter()
            .map(|&v| v / (na * nb) as u32)
            .collect();
        let segments = layout.segments();
        let spec = opts.permutations;
        let bias = opts.bias;
        let one = |i: usize| -> f64 {
            let mut rng = Rng::for_stream(spec.seed, i as u64);
            let bs = surrogate(&b_codes, &segments, spec.kind, &mut rng);
            let mut abc = vec![0u32; t.abc.len()];
            let mut bc = vec![0u32; t.bc.len()];
            for ((&ai, &ci), &bi) in a_codes.iter().zip(&c_codes).zip(&bs) {
                let (ai, bi, ci) = (ai as usize, bi as usize, ci as usize);
                abc[(ci * nb + bi) * na + ai] += 1;
                bc[ci * nb + bi] += 1;
            }
            let s = View {
                abc: &abc,
                bc: &bc,
                ..t.view()
            };
            s.cmi(n, false).0 + mm(bias, s.cmi_bins(), n)
        };
        let values = run_surrogates(spec.first, spec.count, n, one);
        summarise(estimate.value, values)
    });
    Some(Measured {
        estimate,
        layout,
        significance,
    })
}

/// `I(A; B | C)` without locals or test (an [`Estimate`] only).
pub fn cmi_estimate(
    a: &[Part],
    b: &[Part],
    c: &[Part],
    layout: &Layout,
    bias: Bias,
) -> Option<Estimate> {
    let opts = Options {
        bias,
        local: false,
        ..Options::default()
    };
    measure_cmi(a, b, c, layout.clone(), &opts).map(|m| m.estimate)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::streams::ais::active_info;
    use crate::streams::directed::directed_info;
    use crate::streams::entropy::{
        block_entropy, block_entropy_difference, entropy_rate, stream_entropy,
    };
    use crate::streams::mutual::mutual_info;
    use crate::streams::significance::{Permutations, Surrogate};
    use crate::streams::transfer::{transfer_entropy, TeSpec};

    /// Two trials of a 3-symbol source driving a 3-symbol target, and a condition.
    fn streams(seed: u64) -> [Symbols; 3] {
        let mut r = Rng::new(seed);
        let mut out = [Vec::new(), Vec::new(), Vec::new()];
        for len in [3000, 2500] {
            let x: Vec<u32> = (0..len).map(|_| r.below(3) as u32).collect();
            let z: Vec<u32> = (0..len).map(|_| r.below(2) as u32).collect();
            let y: Vec<u32> = (0..len)
                .map(|t| {
                    if t > 0 && r.uniform() < 0.7 {
                        (x[t - 1] + z[t - 1]) % 3
                    } else {
                        r.below(3) as u32
                    }
                })
                .collect();
            out[0].push(x);
            out[1].push(y);
            out[2].push(z);
        }
        out.map(Symbols::new)
    }

    /// The same streams relabelled into an alphabet too large for a dense table.
    fn wide(s: &Symbols) -> Symbols {
        Symbols::new(
            (0..s.n_trials())
                .map(|r| s.trial_u32(r).iter().map(|&v| v * 100_003 + 11).collect())
                .collect(),
        )
    }

    fn same(what: &str, d: &Measured, s: &Measured) {
        let (a, b) = (&d.estimate, &s.estimate);
        let tol = 1e-12 * (1.0 + b.value.abs());
        assert!(
            (a.value - b.value).abs() <= tol,
            "{what}: {} vs {}",
            a.value,
            b.value
        );
        assert!((a.plugin - b.plugin).abs() <= tol, "{what}");
        assert_eq!(a.correction.to_bits(), b.correction.to_bits(), "{what}");
        assert_eq!((a.samples, a.states), (b.samples, b.states), "{what}");
        // Same formula on the same counts: bit-identical local values.
        assert_eq!(a.local.len(), b.local.len(), "{what}");
        assert!(
            a.local
                .iter()
                .zip(&b.local)
                .all(|(x, y)| x.to_bits() == y.to_bits()),
            "{what}: local values differ"
        );
        assert_eq!(d.layout, s.layout, "{what}");
        match (&d.significance, &s.significance) {
            (None, None) => {}
            (Some(x), Some(y)) => {
                assert_eq!(x.p_value, y.p_value, "{what}");
                assert_eq!(x.values.len(), y.values.len());
                for (u, v) in x.values.iter().zip(&y.values) {
                    assert!((u - v).abs() <= 1e-12, "{what}: surrogate {u} vs {v}");
                }
            }
            _ => panic!("{what}: significance on one path only"),
        }
    }

    #[test]
    fn dense_and_sparse_paths_agree() {
        let [x, y, z] = streams(21);
        let [wx, wy, wz] = [wide(&x), wide(&y), wide(&z)];
        // The relabelled streams really take the sparse path, the originals the dense one.
        let l = Layout {
            t0: 1,
            lens: y.lens(),
        };
        assert!(Plan::new([&[(&y, 0)], &[(&x, 1)], &[(&y, 1)]], l.samples()).is_some());
        assert!(Plan::new([&[(&wy, 0)], &[(&wx, 1)], &[(&wy, 1)]], l.samples()).is_none());
        for (kind, bias) in [
            (Surrogate::Shuffle, Bias::None),
            (Surrogate::Circular, Bias::MillerMadow),
            (Surrogate::Block(0), Bias::None),
        ] {
            let o = Options {
                bias,
                permutations: Permutations {
                    kind,
                    count: 20,
                    first: 0,
                    seed: 5,
                },
                local: true,
            };
            for k in [0, 1, 3] {
                let spec = TeSpec::with_k(k);
                same(
                    "te",
                    &transfer_entropy(&x, &y, None, &spec, &o).unwrap(),
                    &transfer_entropy(&wx, &wy, None, &spec, &o).unwrap(),
                );
                let spec = TeSpec {
                    l: 2,
                    delay: 0,
                    ..spec
                };
                same(
                    "conditional te",
                    &transfer_entropy(&x, &y, Some(&z), &spec, &o).unwrap(),
                    &transfer_entropy(&wx, &wy, Some(&wz), &spec, &o).unwrap(),
                );
            }
            same(
                "ais",
                &active_info(&y, 3, &o).unwrap(),
                &active_info(&wy, 3, &o).unwrap(),
            );
            same(
                "mi",
                &mutual_info(&x, &y, 1, Some((&z, 1)), &o).unwrap(),
                &mutual_info(&wx, &wy, 1, Some((&wz, 1)), &o).unwrap(),
            );
            let (d, s) = (
                directed_info(&x, &y, 2, 1, &o).unwrap(),
                directed_info(&wx, &wy, 2, 1, &o).unwrap(),
            );
            same("directed", &d.forward, &s.forward);
            assert!((d.reverse.value - s.reverse.value).abs() < 1e-12);
            assert_eq!(d.reverse.states, s.reverse.states);
            same(
                "entropy",
                &stream_entropy(&y, &o).unwrap(),
                &stream_entropy(&wy, &o).unwrap(),
            );
            same(
                "block entropy",
                &block_entropy(&y, 3, &o).unwrap(),
                &block_entropy(&wy, 3, &o).unwrap(),
            );
            for k in [0, 2] {
                same(
                    "entropy rate",
                    &entropy_rate(&y, k, &o).unwrap(),
                    &entropy_rate(&wy, k, &o).unwrap(),
                );
                // The one-table block-entropy difference against the sparse block entropies.
                let l = Layout {
                    t0: k,
                    lens: y.lens(),
                };
                let (e, diff) = entropy_rate_and_difference(&y, k, &l, bias, true).unwrap();
                assert_eq!(e.value, entropy_rate(&y, k, &o).unwrap().value());
                let want = block_entropy_difference(&wy, k, &o).unwrap();
                assert!((diff - want).abs() < 1e-12, "k {k}: {diff} vs {want}");
            }
        }
    }

    #[test]
    fn counts_do_not_depend_on_the_thread_count() {
        let [x, y, _] = streams(3);
        let layout = Layout {
            t0: 2,
            lens: y.lens(),
        };
        let plan = Plan::new(
            [&[(&y, 0)], &[(&x, 1), (&x, 2)], &[(&y, 1), (&y, 2)]],
            layout.samples(),
        )
        .unwrap();
        let one = count_on(&plan.parts, &layout, plan.cells(), true, 1);
        assert_eq!(one.0.len(), layout.samples());
        assert_eq!(one.1.iter().sum::<u32>() as usize, layout.samples());
        for threads in [2, 3, 7, 64] {
            assert_eq!(
                count_on(&plan.parts, &layout, plan.cells(), true, threads),
                one
            );
            assert_eq!(
                count_on(&plan.parts, &layout, plan.cells(), false, threads).1,
                one.1
            );
        }
        // The code of a sample is its joint state: y_t + 3 (x_{t−1} + 3 x_{t−2}) + …
        let t = 7;
        let (x0, y0) = (x.trial_u32(0), y.trial_u32(0));
        let want = y0[t] + 3 * (x0[t - 1] + 3 * (x0[t - 2] + 3 * (y0[t - 1] + 3 * y0[t - 2])));
        assert_eq!(one.0[t - 2], want);
    }

    /// Streams stored as u16 and tables past the u16 codes (u32 codes): the dense path
    /// still equals the sparse one, and its counts do not depend on the thread count.
    #[test]
    fn wide_storage_and_wide_codes_agree_with_the_sparse_path() {
        let mut r = Rng::new(8);
        let n = 40_000;
        // Alphabet 300 (stored as u16), mostly small symbols; and alphabet 20 (u8).
        let x: Vec<u32> = (0..n)
            .map(|_| {
                if r.uniform() < 0.05 {
                    299
                } else {
                    r.below(4) as u32
                }
            })
            .collect();
        let y: Vec<u32> = (0..n)
            .map(|t| {
                if t > 0 && r.uniform() < 0.6 {
                    x[t - 1] % 20
                } else {
                    r.below(20) as u32
                }
            })
            .collect();
        let (x, y) = (Symbols::one(x), Symbols::one(y));
        assert_eq!((x.alphabet(), y.alphabet()), (300, 20));
        assert!(matches!(x.trial(0), Trial::U16(_)));
        assert!(matches!(y.trial(0), Trial::U8(_)));
        let (wx, wy) = (wide(&x), wide(&y));
        let o = Options {
            bias: Bias::MillerMadow,
            permutations: Permutations {
                kind: Surrogate::Shuffle,
                count: 5,
                first: 0,
                seed: 2,
            },
            local: true,
        };
        // MI(x_{t−1}; y_t): 300 · 20 cells, u16 codes from u16 and u8 storage.
        let l = Layout {
            t0: 1,
            lens: y.lens(),
        };
        let plan = Plan::new([&[(&y, 0)], &[(&x, 1)], &[]], l.samples()).unwrap();
        assert!(plan.cells() <= 1 << 15);
        same(
            "mi u16",
            &mutual_info(&x, &y, 1, None, &o).unwrap(),
            &mutual_info(&wx, &wy, 1, None, &o).unwrap(),
        );
        // TE x → y, k = 1: 20 · 300 · 20 cells > 2¹⁵, u32 codes.
        let spec = TeSpec::with_k(1);
        let l = Layout {
            t0: 1,
            lens: y.lens(),
        };
        let plan = Plan::new([&[(&y, 0)], &[(&x, 1)], &[(&y, 1)]], l.samples());
        let plan = plan.expect("dense");
        assert!(plan.cells() > 1 << 15);
        same(
            "te u32 codes",
            &transfer_entropy(&x, &y, None, &spec, &o).unwrap(),
            &transfer_entropy(&wx, &wy, None, &spec, &o).unwrap(),
        );
        let one = count_on(&plan.parts, &l, plan.cells(), true, 1);
        for threads in [2, 5] {
            assert_eq!(count_on(&plan.parts, &l, plan.cells(), true, threads), one);
        }
        same(
            "entropy u16 storage",
            &stream_entropy(&x, &o).unwrap(),
            &stream_entropy(&wx, &o).unwrap(),
        );
    }

    /// Wall-clock of the estimators on 10⁶-symbol streams (`cargo test --release -p
    /// tokit-plugin-info -- --ignored --nocapture million`); prints, asserts nothing
    /// about speed.
    #[test]
    #[ignore]
    fn million_symbol_timings() {
        let n = 1_000_000;
        for base in [2u32, 4] {
            let mut r = Rng::new(1);
            let x: Vec<u32> = (0..n).map(|_| r.below(base as usize) as u32).collect();
            let y: Vec<u32> = (0..n)
                .map(|t| {
                    if t > 0 && r.uniform() < 0.8 {
                        x[t - 1]
                    } else {
                        r.below(base as usize) as u32
                    }
                })
                .collect();
            let xf: Vec<f32> = x.iter().map(|&v| v as f32).collect();
            let time = |what: &str, f: &mut dyn FnMut() -> f64| {
                f();
                let mut best = f64::INFINITY;
                let mut v = 0.0;
                for _ in 0..5 {
                    let t = std::time::Instant::now();
                    v = f();
                    best = best.min(t.elapsed().as_secs_f64() * 1e3);
                }
                println!("base {base} {what}: {best:.2} ms (value {v})");
            };
            time("from_f32", &mut || {
                Symbols::from_f32("x", &xf, &[n]).unwrap().lens()[0] as f64
            });
            let (xs, ys) = (Symbols::one(x.clone()), Symbols::one(y.clone()));
            for local in [false, true] {
                let o = Options {
                    local,
                    ..Options::default()
                };
                for k in [1, 3] {
                    time(&format!("te k={k} local={local}"), &mut || {
                        transfer_entropy(&xs, &ys, None, &TeSpec::with_k(k), &o)
                            .unwrap()
                            .value()
                    });
                }
                time(&format!("ais k=3 local={local}"), &mut || {
                    active_info(&ys, 3, &o).unwrap().value()
                });
                time(&format!("entropy rate k=3 local={local}"), &mut || {
                    entropy_rate(&ys, 3, &o).unwrap().value()
                });
            }
            let o = Options {
                local: false,
                permutations: Permutations {
                    kind: Surrogate::Shuffle,
                    count: 20,
                    first: 0,
                    seed: 1,
                },
                ..Options::default()
            };
            time("te k=1 + 20 shuffles", &mut || {
                transfer_entropy(&xs, &ys, None, &TeSpec::with_k(1), &o)
                    .unwrap()
                    .value()
            });
            let (wx, wy) = (wide(&xs), wide(&ys));
            let o = Options {
                local: false,
                ..Options::default()
            };
            time("sparse path te k=3", &mut || {
                transfer_entropy(&wx, &wy, None, &TeSpec::with_k(3), &o)
                    .unwrap()
                    .value()
            });
        }
    }
}
