//! The f32 matrix-multiply kernel behind `matmul` and `attention`.
//!
//! On x86-64 with AVX2+FMA this is a GotoBLAS/BLIS-style blocked GEMM: for each
//! NC-wide column block, B is packed into NR-wide panels, each holding its whole depth as
//! KC x NR micro-panels (in parallel), then the output tiles are spread over the
//! threads; each task packs its own block of A for as much depth as fits in L2, walks B
//! panel by panel (so its C tiles stay in cache over the depth), and a register-blocked
//! microkernel (AVX-512 12 x 32 or AVX2+FMA 6 x 16, picked at run time) computes
//! MR x NR tiles while hinting the next B micro-panel into L2.
//! Weight matrices used as `x @ W^T` are packed once and kept with the tensor
//! ([`packed_weight`]), so their GEMMs pack only A. Parallel parts go through
//! `spin::for_each` (the backend's spinning pool, or rayon where the caller does not
//! hold it), so they scale to every thread the backend has (matrixmultiply's own
//! threading stops at 4 threads and would fight the pool for the cores when nested).
//! Packing buffers are kept per thread and reused, so steady-state calls allocate
//! nothing but their output.
//!
//! Elsewhere (aarch64, old x86) each product goes to ndarray's `general_mat_mul`
//! (matrixmultiply's NEON/SSE kernels), in parallel over the batch.
//!
//! On CPUs with AMX, one product at a time of more than `GEMV_MAX_M` rows runs on AMX
//! tiles instead, at f32 accuracy (`amx.rs`); weights are then packed once in its
//! layout.
//!
//! Very short left operands (m <= `GEMV_MAX_M`, e.g. single-token decoding) skip
//! packing: with AVX-512, `x @ W^T` streams four weight rows at a time against every row
//! of x (memory-bound, so each weight is read once); otherwise dot products or axpys.
//! B may be stored as halves (see `half.rs`): the kernels widen it as they read it.

use std::cell::Cell;

use rayon::prelude::*;

use super::half::{from_half, widen, Half};
use super::spin;

/// A read-only strided matrix: element (i, j) is `data[i * rs + j * cs]`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct MatRef<'a> {
    pub data: &'a [f32],
    pub rows: usize,
    pub cols: usize,
    pub rs: usize,
    pub cs: usize,
}

impl MatRef<'_> {
    #[inline(always)]
    pub(crate) fn at(&self, i: usize, j: usize) -> f32 {
        self.data[i * self.rs + j * self.cs]
    }
}

/// One product `c = a @ b`, written row-major (ldc = n) at `c_offset` in the output.
#[derive(Clone, Copy, Debug)]
pub(crate) struct GemmJob<'a> {
    pub a: MatRef<'a>,
    pub b: MatRef<'a>,
    /// B's elements stored as halves (same strides as `b`), read instead of `b.data`.
    pub bh: Option<HalfRef<'a>>,
    /// B already packed (a weight, packed once; see [`PackedB`]), used when its panel
    /// width is the kernel's.
    pub bp: Option<&'a PackedB>,
    pub c_offset: usize,
}

/// A whole `k x n` B packed as [`gemm_one`] packs each column block: NR-wide panel
/// after panel, each holding its whole depth (`k * nr` values, zero-padded columns), so
/// a task walking a panel's depth blocks reads memory in order. Weights are constant, so the CPU backend packs each weight matrix once,
/// on its first GEMM, and keeps it with the tensor (see [`packed_weight`]).
#[derive(Debug)]
pub(crate) enum PackedB {
    /// NR-wide f32 panels for the FMA microkernels.
    Panels { nr: usize, data: Vec<f32> },
    /// bf16 parts in AMX tiles (see `amx.rs`).
    #[cfg(target_arch = "x86_64")]
    Amx(super::amx::PackedB),
}

impl PackedB {
    /// The f32 panels, if packed for panels `nr` wide holding `len` values.
    fn panels(&self, nr: usize, len: usize) -> Option<&[f32]> {
        match self {
            PackedB::Panels { nr: w, data } if *w == nr && data.len() == len => Some(data),
            _ => None,
        }
    }
}

/// The packed form of weight `w` `[n, k]` as the B operand `W^T` of `x @ W^T`: of its
/// f32 values, or with `h` of its half copy widened (the values the half mode computes
/// with). Made on first use and kept with the tensor (or its half copy); `None` where
/// there is no microkernel.
pub(crate) fn packed_weight(
    w: &crate::Tensor,
    h: Option<&super::half::HalfWeights>,
) -> Option<std::sync::Arc<PackedB>> {
    let isa = detect_isa();
    let kernel = kernel_for(isa)?;
    let &[n, k] = w.shape() else { return None };
    let pack = || {
        let job = GemmJob {
            a: MatRef {
                data: &[],
                rows: 0,
                cols: k,
                rs: k,
                cs: 1,
            },
            b: MatRef {
                data: w.data(),
                rows: k,
                cols: n,
                rs: 1,
                cs: k,
            },
            bh: h.map(|h| HalfRef {
                kind: h.kind,
                data: h.values(),
            }),
            bp: None,
            c_offset: 0,
        };
        #[cfg(target_arch = "x86_64")]
        if isa == Isa::Amx {
            return PackedB::Amx(super::amx::pack_weight(&job, k, n));
        }
        let nr = kernel.nr;
        let panels = n.div_ceil(nr);
        let mut data = vec![0f32; panels * nr * k];
        let dst = OutPtr(data.as_mut_ptr());
        let kcb = depth_block(k);
        (0..k.div_ceil(kcb) * panels).into_par_iter().for_each(|t| {
            let (kb, jp) = (t / panels, t % panels);
            let pc = kb * kcb;
            let kc = kcb.min(k - pc);
            // SAFETY: panel (kb, jp) owns these `kc * nr` values of `data`.
            let d = unsafe {
                std::slice::from_raw_parts_mut(dst.ptr().add((jp * k + pc) * nr), kc * nr)
            };
            pack_b(&job, jp * nr, nr.min(n - jp * nr), pc, kc, nr, d);
        });
        PackedB::Panels { nr, data }
    };
    Some(match h {
        None => w.derived(pack)?,
        Some(h) => h.packed(pack),
    })
}

/// A weight's half-precision copy (see `half.rs`), laid out like the f32 data.
#[derive(Clone, Copy, Debug)]
pub(crate) struct HalfRef<'a> {
    pub kind: Half,
    pub data: &'a [u16],
}

/// Most depth of one packed block: a KC x NR micro-panel of B (16-32 KiB) stays in L1
/// while the task's A panels stream past it.
const KC: usize = 256;
/// Fewest rows of A per task (when the depth is large; see [`A_BLOCK`]).
const MC: usize = 96;
/// Most f32 values of a task's packed A block (768 KiB, well inside a 2 MiB L2): a task
/// packs A for as much depth as fits, so each output micro-column stays in cache over
/// all of it and is written once rather than once per depth block.
const A_BLOCK: usize = 192 * 1024;
/// Columns of B packed per block: a KC x NC block (2 MiB) stays in L3.
const NC: usize = 2048;
/// Depth of each packed block for a product of depth `k`: at most KC, and all equal but
/// the last (576 = 3 x 192, not 256 + 256 + 64: a short block pays a whole C update for
/// little work). Packed weights and the GEMM agree on it.
fn depth_block(k: usize) -> usize {
    k.div_ceil(k.div_ceil(KC).max(1)).max(1)
}

/// Left operands with at most this many rows use the unpacked vector path.
pub(crate) const GEMV_MAX_M: usize = 4;
/// Most columns per task of the short-A path.
const GEMV_CHUNK: usize = 256;

/// `(kc, a panel, b panel, prefetch, c, ldc, accumulate, mr, nr)`: `prefetch` is an
/// address whose next `kc` cache lines the kernel hints into L2 while it runs (the next
/// B micro-panel; a hint only, never dereferenced).
type KernelFn =
    unsafe fn(usize, *const f32, *const f32, *const f32, *mut f32, usize, bool, usize, usize);

/// A microkernel and its register-tile shape.
#[derive(Clone, Copy)]
struct Kernel {
    mr: usize,
    nr: usize,
    func: KernelFn,
}

/// Which implementation to use; tests force each one in turn.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[allow(dead_code)] // the SIMD variants are only constructed on x86_64
pub(crate) enum Isa {
    /// No kernel of our own for this CPU: ndarray's `general_mat_mul` (matrixmultiply,
    /// which has NEON/SSE kernels and its own threading) per product.
    Portable,
    Avx2,
    Avx512,
    /// AVX-512, with products of more than `GEMV_MAX_M` rows on AMX tiles (`amx.rs`;
    /// the calling thread's pool only, one product at a time).
    Amx,
}

impl Isa {
    /// Whether the AVX-512 kernels run (also under AMX, for what AMX does not take).
    fn avx512(self) -> bool {
        matches!(self, Isa::Avx512 | Isa::Amx)
    }
}

/// The best implementation for this machine.
pub(crate) fn detect_isa() -> Isa {
    #[cfg(target_arch = "x86_64")]
    {
        let avx2 = std::arch::is_x86_feature_detected!("avx2")
            && std::arch::is_x86_feature_detected!("fma");
        if avx2 && std::arch::is_x86_feature_detected!("avx512f") {
            return match super::amx::available() {
                true => Isa::Amx,
                false => Isa::Avx512,
            };
        }
        if avx2 {
            return Isa::Avx2;
        }
    }
    Isa::Portable
}

fn kernel_for(isa: Isa) -> Option<Kernel> {
    match isa {
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512 | Isa::Amx => Some(Kernel {
            mr: x86::AVX512_MR,
            nr: x86::AVX512_NR,
            func: x86::kernel_avx512,
        }),
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 => Some(Kernel {
            mr: x86::AVX2_MR,
            nr: x86::AVX2_NR,
            func: x86::kernel_avx2,
        }),
        _ => None,
    }
}

/// A raw output pointer shared by tasks that write disjoint tiles.
#[derive(Clone, Copy)]
pub(crate) struct OutPtr(pub(crate) *mut f32);
// SAFETY: every task writes a disjoint rectangle of the output; see `gemm`.
unsafe impl Send for OutPtr {}
unsafe impl Sync for OutPtr {}

impl OutPtr {
    /// Accessed through a method so closures capture the whole `Send + Sync` wrapper
    /// rather than (by precise capture) the bare pointer field.
    #[inline(always)]
    pub(crate) fn ptr(self) -> *mut f32 {
        self.0
    }
}

thread_local! {
    /// Packing buffers owned by the thread that calls `gemm`; taken out while in use
    /// (so a nested call on the same thread just allocates) and put back afterwards, so
    /// repeated products of similar size touch no fresh pages.
    static PACK_BUFS: Cell<(Vec<f32>, Vec<f32>)> = const { Cell::new((Vec::new(), Vec::new())) };
    /// Widened columns of a half-precision B while they are packed.
    static HALF_SCRATCH: Cell<Vec<f32>> = const { Cell::new(Vec::new()) };
    /// A worker's buffer for the A blocks of the tiles it runs, and which block it holds.
    static TASK_ABUF: Cell<ABuf> = const { Cell::new(ABuf { data: Vec::new(), key: None }) };
}

/// A packed block of A and what it holds: (product, first row, rows, first depth
/// block). A worker that runs several tiles of the same row block in a row (tasks are
/// ordered row block first) packs that block once rather than once per tile.
#[derive(Default)]
struct ABuf {
    data: Vec<f32>,
    key: Option<(u64, usize, usize, usize)>,
}

/// Numbers the products, so an [`ABuf`] key never matches a block of another product.
static PRODUCT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// Runs every job, all sharing the same (m, n, k), in parallel (`spin::for_each`). `c`
/// must hold `c_offset + m * n` elements for every job, and jobs must write
/// disjoint ranges. Shapes are validated by the caller (`matmul`).
pub(crate) fn gemm(jobs: &[GemmJob], m: usize, n: usize, k: usize, c: &mut [f32]) {
    gemm_with(detect_isa(), true, jobs, m, n, k, c)
}

/// [`gemm`] into a fresh output of `len` values that it initialises: every job's
/// `m x n` block is written (no zeroing first), and the caller must cover `len` with
/// its jobs' blocks. Returns the output.
pub(crate) fn gemm_new(jobs: &[GemmJob], m: usize, n: usize, k: usize, len: usize) -> Vec<f32> {
    let mn = m * n;
    let offsets: std::collections::BTreeSet<usize> = jobs.iter().map(|j| j.c_offset).collect();
    let tiles = mn > 0
        && offsets.len() * mn == len
        && offsets
            .iter()
            .all(|&o| o.is_multiple_of(mn) && o + mn <= len);
    if !tiles {
        // Not a tiling of the output: zero it, then write the jobs' blocks.
        let mut c = vec![0f32; len];
        gemm(jobs, m, n, k, &mut c);
        return c;
    }
    let mut c = Vec::<f32>::with_capacity(len);
    // SAFETY: the jobs' blocks are distinct aligned `m * n` ranges that together cover
    // `[0, len)` (checked above), and `gemm_ptr` writes each of their values (the first
    // depth block overwrites, `k == 0` fills zeros) before anything reads them.
    unsafe {
        gemm_ptr(detect_isa(), true, jobs, m, n, k, c.as_mut_ptr(), len);
        c.set_len(len);
    }
    c
}

/// [`gemm`] on the calling thread only, for callers that already parallelise at a
/// coarser grain (attention runs one of these per head and query block).
pub(crate) fn gemm_serial(jobs: &[GemmJob], m: usize, n: usize, k: usize, c: &mut [f32]) {
    gemm_with(detect_isa(), false, jobs, m, n, k, c)
}

pub(crate) fn gemm_with(
    isa: Isa,
    parallel: bool,
    jobs: &[GemmJob],
    m: usize,
    n: usize,
    k: usize,
    c: &mut [f32],
) {
    // SAFETY: `c` is a live, initialised slice of `c.len()` values.
    unsafe { gemm_ptr(isa, parallel, jobs, m, n, k, c.as_mut_ptr(), c.len()) }
}

/// [`gemm_with`] on raw output memory: only written, never read before it is written.
///
/// # Safety
/// `c` must be valid for writes of `len` values, not accessed by anyone else meanwhile.
#[allow(clippy::too_many_arguments)]
unsafe fn gemm_ptr(
    isa: Isa,
    parallel: bool,
    jobs: &[GemmJob],
    m: usize,
    n: usize,
    k: usize,
    c: *mut f32,
    len: usize,
) {
    if m == 0 || n == 0 || jobs.is_empty() {
        return;
    }
    for job in jobs {
        assert!(job.a.rows == m && job.a.cols == k && job.b.rows == k && job.b.cols == n);
        assert!(job.c_offset + m * n <= len);
    }
    if k == 0 {
        for job in jobs {
            std::ptr::write_bytes(c.add(job.c_offset), 0, m * n);
        }
        return;
    }
    let out = OutPtr(c);
    if m <= GEMV_MAX_M {
        gemv_path(isa, parallel, jobs, m, n, k, out);
        return;
    }
    let Some(kernel) = kernel_for(isa) else {
        if jobs.iter().any(|j| j.bh.is_some()) {
            // No kernel reads halves here: widen B once per call.
            let wide: Vec<Vec<f32>> = jobs
                .iter()
                .map(|j| match j.bh {
                    Some(h) => h.data.iter().map(|&v| from_half(h.kind, v)).collect(),
                    None => Vec::new(),
                })
                .collect();
            let jobs: Vec<GemmJob> = jobs
                .iter()
                .zip(&wide)
                .map(|(j, w)| match j.bh {
                    Some(_) => GemmJob {
                        b: MatRef { data: w, ..j.b },
                        bh: None,
                        bp: None,
                        ..*j
                    },
                    None => *j,
                })
                .collect();
            portable_gemm(parallel, &jobs, m, n, k, out);
            return;
        }
        portable_gemm(parallel, jobs, m, n, k, out);
        return;
    };
    let threads = if parallel { spin::threads() } else { 1 };
    // SAFETY (all three calls): each job owns `c[c_offset .. c_offset + m*n]`, checked
    // in bounds above, and jobs write disjoint ranges.
    if threads > 1 && jobs.len() >= threads {
        // Plenty of independent products: one whole product per task.
        spin::for_each(jobs.len(), |t| unsafe {
            let job = &jobs[t];
            gemm_one(kernel, 1, job, m, n, k, out.ptr().add(job.c_offset))
        });
    } else {
        for job in jobs {
            let c = unsafe { out.ptr().add(job.c_offset) };
            #[cfg(target_arch = "x86_64")]
            if isa == Isa::Amx && parallel {
                let packed = match job.bp {
                    Some(PackedB::Amx(p)) => Some(p),
                    _ => None,
                };
                // SAFETY: `Isa::Amx` is only detected where `amx::available()`.
                if unsafe { super::amx::gemm(job, packed, m, n, k, c) } {
                    continue;
                }
            }
            unsafe { gemm_one(kernel, threads, job, m, n, k, c) };
        }
    }
}

/// One product. For each NC-wide column block: pack all of B's depth for that block
/// (in parallel; NR-wide panels, each KC x NR micro-panel of a panel's depth after the
/// other), then run the output tiles in parallel. Each task packs its own block of A for
/// as much depth as fits in L2 (usually all of it), then walks its B panels: for each,
/// every depth block's micro-panel (in L1) against all of the task's A panels, so the
/// task's C micro-column stays in cache over the depth. Two fork-joins per column
/// block, whatever the depth.
///
/// # Safety
/// `c` must be valid for writes of the `m x n` row-major output (ldc = n), and no other
/// thread may access that range meanwhile.
unsafe fn gemm_one(
    kernel: Kernel,
    threads: usize,
    job: &GemmJob,
    m: usize,
    n: usize,
    k: usize,
    c: *mut f32,
) {
    let (mr, nr) = (kernel.mr, kernel.nr);
    let nc_max = NC.min(n);
    let (abuf, mut bbuf) = PACK_BUFS.with(Cell::take);
    let mut abuf = ABuf {
        data: abuf,
        key: None,
    };
    let product = PRODUCT.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
    let prepacked = job.bp.and_then(|p| p.panels(nr, n.div_ceil(nr) * nr * k));
    let b_need = if prepacked.is_some() {
        0
    } else {
        nc_max.div_ceil(nr) * nr * k
    };
    if bbuf.len() < b_need {
        bbuf.resize(b_need, 0.0);
    }
    let out = OutPtr(c);
    let parallel = threads > 1;
    let kcb = depth_block(k);
    let kblocks = k.div_ceil(kcb);
    let mut jc = 0;
    while jc < n {
        // A packed weight needs no buffer, so its columns are one block: A is then packed
        // once per task rather than once per column block.
        let nc = if prepacked.is_some() {
            n
        } else {
            NC.min(n - jc)
        };
        let b_panels = nc.div_ceil(nr);
        // Packed B: panel `jp` starts at `jp * k * nr`; within it, the depth block at `pc`
        // at `pc * nr` (`kc * nr` values).
        let bpack = &mut bbuf[..b_need.min(b_panels * nr * k)];
        let bptr = OutPtr(bpack.as_mut_ptr());
        let pack_b_block = |t: usize| {
            let (kb, jp) = (t / b_panels, t % b_panels);
            let pc = kb * kcb;
            let kc = kcb.min(k - pc);
            // SAFETY: panel (kb, jp) owns `kc * nr` values at this offset, inside `bpack`.
            let dst = unsafe {
                std::slice::from_raw_parts_mut(bptr.ptr().add((jp * k + pc) * nr), kc * nr)
            };
            pack_b(job, jc + jp * nr, nr.min(nc - jp * nr), pc, kc, nr, dst);
        };
        if prepacked.is_some() {
            // Nothing to pack: the panels are read from the weight's packed copy.
        } else if parallel {
            spin::for_each(kblocks * b_panels, pack_b_block);
        } else {
            (0..kblocks * b_panels).for_each(pack_b_block);
        }
        // Where this block's panels start: in the packed weight (all of n's panels) or
        // in this block's buffer.
        let (bsrc, first_panel): (&[f32], usize) = match prepacked {
            Some(p) => (p, jc / nr),
            None => (&*bpack, 0),
        };
        let (mt, nt) = task_tiles(m, nc, k, kernel, threads);
        let (m_tiles, n_tiles) = (m.div_ceil(mt), nc.div_ceil(nt));
        let run = |t: usize, abuf: &mut ABuf| {
            let (i0, j0) = ((t / n_tiles) * mt, (t % n_tiles) * nt);
            let (mb, nb) = (mt.min(m - i0), nt.min(nc - j0));
            let a_panels = mb.div_ceil(mr);
            // Depth blocks whose A fits in the task's A block, packed together.
            let span = (A_BLOCK / (a_panels * mr * kcb)).clamp(1, kblocks);
            let a_need = a_panels * mr * (span * kcb).min(k);
            if abuf.data.len() < a_need {
                abuf.data.resize(a_need, 0.0);
                abuf.key = None;
            }
            let mut kb0 = 0;
            while kb0 < kblocks {
                let kb1 = (kb0 + span).min(kblocks);
                // Depth block kb of A starts at `(kb - kb0) * kcb * a_panels * mr`; within
                // it, panel ip holds `kc * mr` values.
                let a_at = |kb: usize, ip: usize| {
                    let kc = kcb.min(k - kb * kcb);
                    ((kb - kb0) * kcb * a_panels + ip * kc) * mr
                };
                let key = Some((product, i0, mb, kb0));
                if abuf.key != key {
                    for kb in kb0..kb1 {
                        let (pc, kc) = (kb * kcb, kcb.min(k - kb * kcb));
                        for ip in 0..a_panels {
                            let r0 = i0 + ip * mr;
                            let at = a_at(kb, ip);
                            let dst = &mut abuf.data[at..at + mr * kc];
                            pack_a(job.a, r0, mr.min(i0 + mb - r0), pc, kc, mr, dst);
                        }
                    }
                    abuf.key = key;
                }
                let apack = &*abuf.data;
                // Micro-column by micro-column: its C tiles stay in cache over the depth.
                for jp in 0..nb.div_ceil(nr) {
                    let nr_eff = nr.min(nb - jp * nr);
                    for kb in kb0..kb1 {
                        let (pc, kc) = (kb * kcb, kcb.min(k - kb * kcb));
                        let bp = bsrc[((first_panel + j0 / nr + jp) * k + pc) * nr..].as_ptr();
                        // Panels lie in order, so the next micro-panel (maybe in memory, for
                        // a weight read once per task) follows this one; the first calls
                        // hint it into L2, a line per depth step.
                        let next_b = bp.wrapping_add(kc * nr);
                        // The first depth block overwrites C, later ones accumulate into it.
                        let accumulate = kb > 0;
                        for ip in 0..a_panels {
                            let mr_eff = mr.min(mb - ip * mr);
                            let ap = apack[a_at(kb, ip)..].as_ptr();
                            // SAFETY: the tile (rows i0.., columns jc+j0..) belongs to this
                            // task; panels hold kc * MR / kc * NR values (zero-padded).
                            unsafe {
                                let cp = out.ptr().add((i0 + ip * mr) * n + jc + j0 + jp * nr);
                                let pf = if ip * 16 < nr {
                                    next_b.wrapping_add(ip * 16 * kc)
                                } else {
                                    bp
                                };
                                (kernel.func)(kc, ap, bp, pf, cp, n, accumulate, mr_eff, nr_eff);
                            }
                        }
                    }
                }
                kb0 = kb1;
            }
        };
        if parallel {
            spin::for_each(m_tiles * n_tiles, |t| {
                // Each worker packs A into its own buffer (kept between calls).
                let mut buf = TASK_ABUF.with(Cell::take);
                run(t, &mut buf);
                TASK_ABUF.with(|cell| cell.set(buf));
            });
        } else {
            (0..m_tiles * n_tiles).for_each(|t| run(t, &mut abuf));
        }
        jc += nc;
    }
    PACK_BUFS.with(|cell| cell.set((abuf.data, bbuf)));
}

/// Splits an `m x nc` block into task tiles: as many rows as fit one A block in L2, and
/// the whole block's width, narrowed and then shortened until every thread has a few
/// tasks.
fn task_tiles(m: usize, nc: usize, k: usize, kernel: Kernel, threads: usize) -> (usize, usize) {
    let round_up = |v: usize, q: usize| v.div_ceil(q) * q;
    // As many rows as keep A's whole depth within A_BLOCK (each row block reads all of
    // B once), at least MC, split evenly (128 rows: 72 + 56, not 96 + 32).
    let mc = (A_BLOCK / k.max(1)).max(MC);
    let mut mt = round_up(m.div_ceil(m.div_ceil(mc)), kernel.mr);
    let mut nt = round_up(nc, kernel.nr);
    if threads <= 1 {
        return (mt, nt);
    }
    let count = |mt: usize, nt: usize| m.div_ceil(mt) * nc.div_ceil(nt);
    let want = 3 * threads;
    while count(mt, nt) < want && nt > 8 * kernel.nr {
        nt = round_up(nt / 2, kernel.nr);
    }
    while count(mt, nt) < want && mt > 2 * kernel.mr {
        mt = round_up(mt / 2, kernel.mr);
    }
    // Few tasks that do not divide among the threads leave one idle at the end (11
    // row blocks of a 1024-row product on 2 threads): split the columns once more.
    while count(mt, nt) % threads != 0 && count(mt, nt) < 8 * threads && nt > 4 * kernel.nr {
        nt = round_up(nt / 2, kernel.nr);
    }
    (mt, nt)
}

/// Packs rows `[i0, i0+rows)` x depth `[p0, p0+kc)` of A into one panel laid out
/// `[p][r]` (`mr` values per depth step), zero-filling rows past `rows`.
fn pack_a(a: MatRef, i0: usize, rows: usize, p0: usize, kc: usize, mr: usize, dst: &mut [f32]) {
    if rows < mr {
        dst.fill(0.0); // the buffer is reused: padding must be cleared
    }
    if a.cs == 1 {
        // Row-contiguous A (the usual case): packing is a transpose; use 8 x 8
        // in-register transposes when the CPU has AVX.
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("avx") {
            // SAFETY: AVX was detected; the function bounds-checks its slices.
            unsafe { x86::pack_a_rows_avx(a, i0, rows, p0, kc, mr, dst) };
            return;
        }
        for r in 0..rows {
            let start = (i0 + r) * a.rs + p0;
            for (p, &v) in a.data[start..start + kc].iter().enumerate() {
                dst[p * mr + r] = v;
            }
        }
    } else if a.rs == 1 {
        // Column-contiguous A (trans_a): each depth step is a contiguous run of rows.
        for p in 0..kc {
            let start = (p0 + p) * a.cs + i0;
            dst[p * mr..p * mr + rows].copy_from_slice(&a.data[start..start + rows]);
        }
    } else {
        for r in 0..rows {
            for p in 0..kc {
                dst[p * mr + r] = a.at(i0 + r, p0 + p);
            }
        }
    }
}

/// Packs depth `[p0, p0+kc)` x columns `[j0, j0+cols)` of a job's B, widening it first
/// when it is stored as halves.
fn pack_b(job: &GemmJob, j0: usize, cols: usize, p0: usize, kc: usize, nr: usize, dst: &mut [f32]) {
    let b = job.b;
    let Some(h) = job.bh else {
        return pack_b_f32(b, j0, cols, p0, kc, nr, dst);
    };
    if b.rs == 1 {
        // Transposed weight W [n, k]: widen each column's depth run (contiguous) into a
        // scratch [cols, kc] matrix, then pack that as usual.
        let mut scratch = HALF_SCRATCH.with(Cell::take);
        scratch.resize(cols * kc, 0.0);
        for j in 0..cols {
            let start = (j0 + j) * b.cs + p0;
            widen(
                h.kind,
                &h.data[start..start + kc],
                &mut scratch[j * kc..(j + 1) * kc],
            );
        }
        let view = MatRef {
            data: &scratch,
            rows: kc,
            cols,
            rs: 1,
            cs: kc,
        };
        pack_b_f32(view, 0, cols, 0, kc, nr, dst);
        HALF_SCRATCH.with(|cell| cell.set(scratch));
    } else {
        if cols < nr {
            dst.fill(0.0);
        }
        for p in 0..kc {
            for j in 0..cols {
                dst[p * nr + j] = from_half(h.kind, h.data[(p0 + p) * b.rs + (j0 + j) * b.cs]);
            }
        }
    }
}

/// Packs depth `[p0, p0+kc)` x columns `[j0, j0+cols)` of B into one panel laid out
/// `[p][j]` (`nr` values per depth step), zero-filling columns past `cols`.
fn pack_b_f32(b: MatRef, j0: usize, cols: usize, p0: usize, kc: usize, nr: usize, dst: &mut [f32]) {
    if cols < nr {
        dst.fill(0.0); // the buffer is reused: padding must be cleared
    }
    if b.cs == 1 {
        // Row-major B [k, n]: each depth step is a contiguous run of columns.
        for p in 0..kc {
            let start = (p0 + p) * b.rs + j0;
            let (d, src) = (
                &mut dst[p * nr..p * nr + cols],
                &b.data[start..start + cols],
            );
            // Fixed 8-wide pieces compile to plain vector moves, not a memcpy call.
            let mut dc = d.chunks_exact_mut(8);
            let mut sc = src.chunks_exact(8);
            for (d8, s8) in (&mut dc).zip(&mut sc) {
                d8.copy_from_slice(s8);
            }
            dc.into_remainder().copy_from_slice(sc.remainder());
        }
    } else if b.rs == 1 {
        // Transposed weight W [n, k] (x @ W^T): each column is contiguous in depth, so
        // packing is a transpose; 8 x 8 register transposes when the CPU has AVX.
        #[cfg(target_arch = "x86_64")]
        if cols == nr && nr.is_multiple_of(8) && std::arch::is_x86_feature_detected!("avx") {
            // SAFETY: AVX was detected; the function bounds-checks its slices.
            unsafe { x86::pack_b_transposed_avx(b, j0, p0, kc, nr, dst) };
            return;
        }
        for j in 0..cols {
            let start = (j0 + j) * b.cs + p0;
            for (p, &v) in b.data[start..start + kc].iter().enumerate() {
                dst[p * nr + j] = v;
            }
        }
    } else {
        for p in 0..kc {
            for j in 0..cols {
                dst[p * nr + j] = b.at(p0 + p, j0 + j);
            }
        }
    }
}

/// Runs each job through ndarray's `general_mat_mul` (used where we have no kernel).
fn portable_gemm(parallel: bool, jobs: &[GemmJob], m: usize, n: usize, k: usize, out: OutPtr) {
    use ndarray::{linalg::general_mat_mul, ArrayView2, ArrayViewMut2, ShapeBuilder};
    let run = |job: &GemmJob| {
        fn view<'a>(x: MatRef<'a>) -> ArrayView2<'a, f32> {
            ArrayView2::from_shape((x.rows, x.cols).strides((x.rs, x.cs)), x.data)
                .expect("gemm: operand view out of bounds")
        }
        let (a, b) = (view(job.a), view(job.b));
        debug_assert_eq!((a.dim(), b.dim()), ((m, k), (k, n)));
        // SAFETY: each job owns `m * n` elements at its `c_offset` (checked by the
        // caller), and jobs do not overlap.
        // (Zeroed first: the output may be fresh memory, and beta = 0 need not mean
        // that C is never read.)
        let c = unsafe {
            std::ptr::write_bytes(out.ptr().add(job.c_offset), 0, m * n);
            std::slice::from_raw_parts_mut(out.ptr().add(job.c_offset), m * n)
        };
        let mut c = ArrayViewMut2::from_shape((m, n), c).expect("gemm: output view");
        general_mat_mul(1.0, &a, &b, 0.0, &mut c);
    };
    if parallel && jobs.len() > 1 {
        spin::for_each(jobs.len(), |t| run(&jobs[t]));
    } else {
        jobs.iter().for_each(run);
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    //! AVX2+FMA and AVX-512 microkernels. Accumulators live in registers for the whole
    //! depth loop; each step broadcasts one value of A per row and FMAs it with the
    //! NR-wide row of B.

    use std::arch::x86_64::*;

    pub(super) const AVX2_MR: usize = 6;
    pub(super) const AVX2_NR: usize = 16;
    pub(super) const AVX512_MR: usize = 12;
    pub(super) const AVX512_NR: usize = 32;

    /// 6 x 16 tile: 12 ymm accumulators + 2 B vectors + 1 broadcast.
    ///
    /// # Safety
    /// Requires AVX2 and FMA; the packed panels must hold `kc * MR` / `kc * NR` values and `c` must be
    /// valid for the `mr x nr` tile with row stride `ldc`.
    #[target_feature(enable = "avx2,fma")]
    #[allow(clippy::too_many_arguments)]
    pub(super) unsafe fn kernel_avx2(
        kc: usize,
        a: *const f32,
        b: *const f32,
        _prefetch: *const f32,
        c: *mut f32,
        ldc: usize,
        accumulate: bool,
        mr: usize,
        nr: usize,
    ) {
        const MR: usize = AVX2_MR;
        let mut acc = [[_mm256_setzero_ps(); 2]; MR];
        let (mut a, mut b) = (a, b);
        for _ in 0..kc {
            let b0 = _mm256_loadu_ps(b);
            let b1 = _mm256_loadu_ps(b.add(8));
            for (r, row) in acc.iter_mut().enumerate() {
                let av = _mm256_broadcast_ss(&*a.add(r));
                row[0] = _mm256_fmadd_ps(av, b0, row[0]);
                row[1] = _mm256_fmadd_ps(av, b1, row[1]);
            }
            a = a.add(MR);
            b = b.add(AVX2_NR);
        }
        if mr == MR && nr == AVX2_NR {
            for (r, row) in acc.iter().enumerate() {
                let cp = c.add(r * ldc);
                let (mut v0, mut v1) = (row[0], row[1]);
                if accumulate {
                    v0 = _mm256_add_ps(v0, _mm256_loadu_ps(cp));
                    v1 = _mm256_add_ps(v1, _mm256_loadu_ps(cp.add(8)));
                }
                _mm256_storeu_ps(cp, v0);
                _mm256_storeu_ps(cp.add(8), v1);
            }
        } else {
            let mut tile = [[0f32; AVX2_NR]; MR];
            for (r, row) in acc.iter().enumerate() {
                _mm256_storeu_ps(tile[r].as_mut_ptr(), row[0]);
                _mm256_storeu_ps(tile[r].as_mut_ptr().add(8), row[1]);
            }
            super::store_partial(&tile, c, ldc, accumulate, mr, nr);
        }
    }

    /// 12 x 32 tile: 24 zmm accumulators + 2 B vectors + 1 broadcast (of 32 registers).
    ///
    /// # Safety
    /// Requires AVX-512F; the packed panels must hold `kc * MR` / `kc * NR` values and `c` must be
    /// valid for the `mr x nr` tile with row stride `ldc`.
    #[target_feature(enable = "avx512f")]
    #[allow(clippy::too_many_arguments)]
    pub(super) unsafe fn kernel_avx512(
        kc: usize,
        a: *const f32,
        b: *const f32,
        prefetch: *const f32,
        c: *mut f32,
        ldc: usize,
        accumulate: bool,
        mr: usize,
        nr: usize,
    ) {
        const MR: usize = AVX512_MR;
        let mut acc = [[_mm512_setzero_ps(); 2]; MR];
        let (mut a, mut b) = (a, b);
        for p in 0..kc {
            _mm_prefetch::<_MM_HINT_T1>(prefetch.wrapping_add(16 * p).cast());
            let b0 = _mm512_loadu_ps(b);
            let b1 = _mm512_loadu_ps(b.add(16));
            for (r, row) in acc.iter_mut().enumerate() {
                let av = _mm512_set1_ps(*a.add(r));
                row[0] = _mm512_fmadd_ps(av, b0, row[0]);
                row[1] = _mm512_fmadd_ps(av, b1, row[1]);
            }
            a = a.add(MR);
            b = b.add(AVX512_NR);
        }
        if mr == MR && nr == AVX512_NR {
            for (r, row) in acc.iter().enumerate() {
                let cp = c.add(r * ldc);
                let (mut v0, mut v1) = (row[0], row[1]);
                if accumulate {
                    v0 = _mm512_add_ps(v0, _mm512_loadu_ps(cp));
                    v1 = _mm512_add_ps(v1, _mm512_loadu_ps(cp.add(16)));
                }
                _mm512_storeu_ps(cp, v0);
                _mm512_storeu_ps(cp.add(16), v1);
            }
        } else {
            let mut tile = [[0f32; AVX512_NR]; MR];
            for (r, row) in acc.iter().enumerate() {
                _mm512_storeu_ps(tile[r].as_mut_ptr(), row[0]);
                _mm512_storeu_ps(tile[r].as_mut_ptr().add(16), row[1]);
            }
            super::store_partial(&tile, c, ldc, accumulate, mr, nr);
        }
    }

    /// Packs a full panel of `nr` (a multiple of 8) columns of a depth-contiguous B
    /// (`b.rs == 1`) into `[p][j]` layout with 8 x 8 in-register transposes.
    ///
    /// # Safety
    /// Requires AVX.
    #[target_feature(enable = "avx")]
    pub(super) unsafe fn pack_b_transposed_avx(
        b: super::MatRef,
        j0: usize,
        p0: usize,
        kc: usize,
        nr: usize,
        dst: &mut [f32],
    ) {
        let full = kc / 8 * 8;
        // Bounds for the unchecked loads and stores below.
        assert!(dst.len() >= kc * nr);
        assert!(nr.is_multiple_of(8) && (j0 + nr - 1) * b.cs + p0 + kc <= b.data.len());
        let src = b.data.as_ptr();
        let out = dst.as_mut_ptr();
        for g in 0..nr / 8 {
            let col0 = j0 + 8 * g;
            let mut p = 0;
            while p < full {
                let mut r = [_mm256_setzero_ps(); 8];
                for (i, reg) in r.iter_mut().enumerate() {
                    *reg = _mm256_loadu_ps(src.add((col0 + i) * b.cs + p0 + p));
                }
                let r = transpose8(r);
                for (q, reg) in r.iter().enumerate() {
                    _mm256_storeu_ps(out.add((p + q) * nr + 8 * g), *reg);
                }
                p += 8;
            }
            for p in full..kc {
                for i in 0..8 {
                    *out.add(p * nr + 8 * g + i) = *src.add((col0 + i) * b.cs + p0 + p);
                }
            }
        }
    }

    /// Packs `rows <= mr <= 16` row-contiguous rows of A (`a.cs == 1`) into `[p][r]`
    /// layout (`mr` values per depth step) with 8 x 8 in-register transposes.
    ///
    /// Each transposed row is written with a full 8-lane store even when fewer lanes
    /// belong to the slot (masked stores are microcoded and slow on AMD): the extra
    /// lanes hold zeros (rows past `rows` load as zero) and land either in padding
    /// slots, which must be zero anyway, or in the next depth step's slots, which are
    /// written afterwards. Only the panel's very last depth step is stored exactly.
    ///
    /// # Safety
    /// Requires AVX.
    #[target_feature(enable = "avx")]
    pub(super) unsafe fn pack_a_rows_avx(
        a: super::MatRef,
        i0: usize,
        rows: usize,
        p0: usize,
        kc: usize,
        mr: usize,
        dst: &mut [f32],
    ) {
        let full = kc / 8 * 8;
        assert!(rows <= mr && mr <= 16 && dst.len() >= kc * mr);
        assert!(rows == 0 || (i0 + rows - 1) * a.rs + p0 + kc <= a.data.len());
        let src = a.data.as_ptr();
        let out = dst.as_mut_ptr();
        let groups = rows.div_ceil(8);
        let mut p = 0;
        while p < full {
            let mut t = [[_mm256_setzero_ps(); 8]; 2];
            for (g, tg) in t.iter_mut().enumerate().take(groups) {
                let mut r = [_mm256_setzero_ps(); 8];
                for (i, reg) in r.iter_mut().enumerate().take((rows - 8 * g).min(8)) {
                    *reg = _mm256_loadu_ps(src.add((i0 + 8 * g + i) * a.rs + p0 + p));
                }
                *tg = transpose8(r);
            }
            for q in 0..8 {
                let row = p + q;
                for (g, tg) in t.iter().enumerate().take(groups) {
                    let at = row * mr + 8 * g;
                    if at + 8 <= kc * mr {
                        _mm256_storeu_ps(out.add(at), tg[q]);
                    } else {
                        let mut lanes = [0f32; 8];
                        _mm256_storeu_ps(lanes.as_mut_ptr(), tg[q]);
                        for (i, &v) in lanes.iter().enumerate().take(mr - 8 * g) {
                            *out.add(at + i) = v;
                        }
                    }
                }
            }
            p += 8;
        }
        for p in full..kc {
            for r in 0..rows {
                *out.add(p * mr + r) = *src.add((i0 + r) * a.rs + p0 + p);
            }
            for r in rows..mr {
                *out.add(p * mr + r) = 0.0; // may hold a spilled lane from above
            }
        }
    }

    /// Transposes an 8 x 8 block held as 8 row registers.
    #[inline]
    #[target_feature(enable = "avx")]
    fn transpose8(r: [__m256; 8]) -> [__m256; 8] {
        let t0 = _mm256_unpacklo_ps(r[0], r[1]);
        let t1 = _mm256_unpackhi_ps(r[0], r[1]);
        let t2 = _mm256_unpacklo_ps(r[2], r[3]);
        let t3 = _mm256_unpackhi_ps(r[2], r[3]);
        let t4 = _mm256_unpacklo_ps(r[4], r[5]);
        let t5 = _mm256_unpackhi_ps(r[4], r[5]);
        let t6 = _mm256_unpacklo_ps(r[6], r[7]);
        let t7 = _mm256_unpackhi_ps(r[6], r[7]);
        let s0 = _mm256_shuffle_ps::<0x44>(t0, t2);
        let s1 = _mm256_shuffle_ps::<0xEE>(t0, t2);
        let s2 = _mm256_shuffle_ps::<0x44>(t1, t3);
        let s3 = _mm256_shuffle_ps::<0xEE>(t1, t3);
        let s4 = _mm256_shuffle_ps::<0x44>(t4, t6);
        let s5 = _mm256_shuffle_ps::<0xEE>(t4, t6);
        let s6 = _mm256_shuffle_ps::<0x44>(t5, t7);
        let s7 = _mm256_shuffle_ps::<0xEE>(t5, t7);
        [
            _mm256_permute2f128_ps::<0x20>(s0, s4),
            _mm256_permute2f128_ps::<0x20>(s1, s5),
            _mm256_permute2f128_ps::<0x20>(s2, s6),
            _mm256_permute2f128_ps::<0x20>(s3, s7),
            _mm256_permute2f128_ps::<0x31>(s0, s4),
            _mm256_permute2f128_ps::<0x31>(s1, s5),
            _mm256_permute2f128_ps::<0x31>(s2, s6),
            _mm256_permute2f128_ps::<0x31>(s3, s7),
        ]
    }

    /// Runs `iters` steps of 24 independent 16-lane FMA chains (the microkernel's
    /// register tile, no memory traffic); returns a value so nothing is optimised away.
    ///
    /// # Safety
    /// Requires AVX-512F.
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn fma_loop_avx512(iters: usize) -> f32 {
        let mut acc = [_mm512_setzero_ps(); 24];
        let (x, y) = (_mm512_set1_ps(0.999_999), _mm512_set1_ps(1e-7));
        for _ in 0..iters {
            for a in acc.iter_mut() {
                *a = _mm512_fmadd_ps(*a, x, y);
            }
        }
        let mut s = _mm512_setzero_ps();
        for a in acc {
            s = _mm512_add_ps(s, a);
        }
        _mm512_reduce_add_ps(s)
    }

    /// Sixteen B values from `p` (f32, or halves widened to f32).
    #[inline]
    #[target_feature(enable = "avx512f")]
    unsafe fn load16<const FMT: u8>(base: *const u8, p: usize) -> __m512 {
        match FMT {
            0 => _mm512_loadu_ps(base.cast::<f32>().add(p)),
            1 => _mm512_cvtph_ps(_mm256_loadu_si256(base.cast::<u16>().add(p).cast())),
            _ => _mm512_castsi512_ps(_mm512_slli_epi32::<16>(_mm512_cvtepu16_epi32(
                _mm256_loadu_si256(base.cast::<u16>().add(p).cast()),
            ))),
        }
    }

    /// Thirty-two halves of B from `p` (one 64-byte load) as two vectors of f32, in the
    /// order [`pair_order`] gives x: f16 as positions `p..p + 16` and `p + 16..p + 32`,
    /// bf16 as the even and the odd positions (the low and the high half of each 32-bit
    /// pair: a shift and a mask, no lane crossing).
    #[inline]
    #[target_feature(enable = "avx512f")]
    unsafe fn load32<const FMT: u8>(base: *const u8, p: usize) -> [__m512; 2] {
        let v = _mm512_loadu_si512(base.cast::<u16>().add(p).cast());
        match FMT {
            1 => [
                _mm512_cvtph_ps(_mm512_castsi512_si256(v)),
                _mm512_cvtph_ps(_mm512_extracti64x4_epi64::<1>(v)),
            ],
            _ => [
                _mm512_castsi512_ps(_mm512_slli_epi32::<16>(v)),
                _mm512_castsi512_ps(_mm512_and_si512(v, _mm512_set1_epi32(-65536))),
            ],
        }
    }

    /// Reorders a row of A to pair with bf16 columns in [`load32`]: each whole block of
    /// 32 becomes its 16 even positions, then its 16 odd ones (a tail stays in place).
    pub(super) fn pair_order(x: &mut [f32]) {
        for block in x.chunks_exact_mut(32) {
            let b: [f32; 32] = block.try_into().expect("a block of 32");
            for i in 0..16 {
                block[i] = b[2 * i];
                block[16 + i] = b[2 * i + 1];
            }
        }
    }

    /// One B value at `p` as f32.
    #[inline]
    unsafe fn load1<const FMT: u8>(base: *const u8, p: usize) -> f32 {
        match FMT {
            0 => *base.cast::<f32>().add(p),
            1 => super::from_half(super::Half::F16, *base.cast::<u16>().add(p)),
            _ => super::from_half(super::Half::Bf16, *base.cast::<u16>().add(p)),
        }
    }

    /// `out[r][c] = a_r · column c` for `M` rows of A and `C` columns of B whose depth
    /// runs start at `cols[c]` (stored as format `FMT`: 0 f32, 1 f16, 2 bf16).
    #[inline]
    #[target_feature(enable = "avx512f")]
    unsafe fn gemv_tile<const M: usize, const C: usize, const FMT: u8>(
        a: &[&[f32]],
        k: usize,
        cols: [*const u8; C],
        ahead: usize,
        out: &mut [[f32; C]; M],
    ) {
        let mut acc = [[_mm512_setzero_ps(); C]; M];
        let elem = if FMT == 0 { 4 } else { 2 };
        let mut p = 0;
        if FMT != 0 {
            // Halves: a whole cache line of each column per step, one load and one hint.
            while p + 32 <= k {
                for &col in &cols {
                    _mm_prefetch::<_MM_HINT_T0>(col.wrapping_add(ahead + p * elem).cast());
                }
                let mut wv = [[_mm512_setzero_ps(); 2]; C];
                for (v, &col) in wv.iter_mut().zip(&cols) {
                    *v = load32::<FMT>(col, p);
                }
                for (r, row) in acc.iter_mut().enumerate() {
                    let x0 = _mm512_loadu_ps(a[r].as_ptr().add(p));
                    let x1 = _mm512_loadu_ps(a[r].as_ptr().add(p + 16));
                    for (c, v) in row.iter_mut().enumerate() {
                        *v = _mm512_fmadd_ps(x1, wv[c][1], _mm512_fmadd_ps(x0, wv[c][0], *v));
                    }
                }
                p += 32;
            }
        }
        while p + 16 <= k {
            // The next tile's columns, `ahead` bytes on: each column's run is short
            // (k values), too short for the hardware prefetcher to ramp up on its own.
            // A hint only: it never faults, so running past B's end is harmless.
            for &col in &cols {
                _mm_prefetch::<_MM_HINT_T0>(col.wrapping_add(ahead + p * elem).cast());
            }
            let mut wv = [_mm512_setzero_ps(); C];
            for (v, &col) in wv.iter_mut().zip(&cols) {
                *v = load16::<FMT>(col, p);
            }
            for (r, row) in acc.iter_mut().enumerate() {
                let x = _mm512_loadu_ps(a[r].as_ptr().add(p));
                for (c, v) in row.iter_mut().enumerate() {
                    *v = _mm512_fmadd_ps(x, wv[c], *v);
                }
            }
            p += 16;
        }
        for (r, row) in acc.iter().enumerate() {
            for (c, v) in row.iter().enumerate() {
                let mut s = _mm512_reduce_add_ps(*v);
                for (q, &x) in a[r][..k].iter().enumerate().skip(p) {
                    s += x * load1::<FMT>(cols[c], q);
                }
                out[r][c] = s;
            }
        }
    }

    /// Columns `[j0, j0 + w)` of `a @ B` for a depth-contiguous B (`b.rs == 1`, the
    /// linear layer's `W^T`), f32 or halves, into `vals`. With bf16 B the rows of `a`
    /// come in [`pair_order`].
    ///
    /// # Safety
    /// Requires AVX-512F; every column run `[(j0 + jj) * b.cs, + k)` must lie inside B's
    /// data (or its half copy), and every row of `a` must hold `k` values.
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn gemv_avx512(
        a: &[&[f32]],
        k: usize,
        b: super::MatRef,
        bh: Option<super::HalfRef>,
        j0: usize,
        w: usize,
        vals: &mut [[f32; super::GEMV_CHUNK]; super::GEMV_MAX_M],
    ) {
        assert!(w <= super::GEMV_CHUNK && a.len() <= super::GEMV_MAX_M);
        assert!(a.iter().all(|r| r.len() >= k));
        let (base, elem, len) = match bh {
            None => (b.data.as_ptr().cast::<u8>(), 4, b.data.len()),
            Some(h) => (h.data.as_ptr().cast::<u8>(), 2, h.data.len()),
        };
        assert!(w == 0 || (j0 + w - 1) * b.cs + k <= len);
        let fmt = match bh.map(|h| h.kind) {
            None => 0,
            Some(super::Half::F16) => 1,
            Some(super::Half::Bf16) => 2,
        };
        macro_rules! go {
            ($m:literal, $fmt:literal) => {{
                let col = |j: usize| base.add((j0 + j) * b.cs * elem);
                let ahead = 4 * b.cs * elem;
                let mut jj = 0;
                while jj + 4 <= w {
                    let mut o = [[0f32; 4]; $m];
                    gemv_tile::<$m, 4, $fmt>(
                        a,
                        k,
                        [col(jj), col(jj + 1), col(jj + 2), col(jj + 3)],
                        ahead,
                        &mut o,
                    );
                    for r in 0..$m {
                        vals[r][jj..jj + 4].copy_from_slice(&o[r]);
                    }
                    jj += 4;
                }
                while jj < w {
                    let mut o = [[0f32; 1]; $m];
                    gemv_tile::<$m, 1, $fmt>(a, k, [col(jj)], ahead, &mut o);
                    for r in 0..$m {
                        vals[r][jj] = o[r][0];
                    }
                    jj += 1;
                }
            }};
        }
        macro_rules! by_fmt {
            ($m:literal) => {
                match fmt {
                    0 => go!($m, 0),
                    1 => go!($m, 1),
                    _ => go!($m, 2),
                }
            };
        }
        match a.len() {
            0 => {}
            1 => by_fmt!(1),
            2 => by_fmt!(2),
            3 => by_fmt!(3),
            _ => by_fmt!(4),
        }
    }

    /// Dot product of two equally long slices with 4 x 8 lanes of FMA accumulators.
    ///
    /// # Safety
    /// Requires AVX2 and FMA.
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn dot_avx2(x: &[f32], y: &[f32]) -> f32 {
        let n = x.len().min(y.len());
        let (xp, yp) = (x.as_ptr(), y.as_ptr());
        let mut acc = [_mm256_setzero_ps(); 4];
        let mut i = 0;
        while i + 32 <= n {
            for (l, a) in acc.iter_mut().enumerate() {
                let o = i + 8 * l;
                *a = _mm256_fmadd_ps(_mm256_loadu_ps(xp.add(o)), _mm256_loadu_ps(yp.add(o)), *a);
            }
            i += 32;
        }
        while i + 8 <= n {
            acc[0] = _mm256_fmadd_ps(
                _mm256_loadu_ps(xp.add(i)),
                _mm256_loadu_ps(yp.add(i)),
                acc[0],
            );
            i += 8;
        }
        let s = _mm256_add_ps(_mm256_add_ps(acc[0], acc[1]), _mm256_add_ps(acc[2], acc[3]));
        let mut lanes = [0f32; 8];
        _mm256_storeu_ps(lanes.as_mut_ptr(), s);
        let mut total = lanes.iter().sum::<f32>();
        while i < n {
            total += x[i] * y[i];
            i += 1;
        }
        total
    }

    /// `y += alpha * x`, compiled with AVX2+FMA so the loop vectorises 8-wide.
    ///
    /// # Safety
    /// Requires AVX2 and FMA.
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn axpy_avx2(alpha: f32, x: &[f32], y: &mut [f32]) {
        for (yv, &xv) in y.iter_mut().zip(x) {
            *yv = alpha.mul_add(xv, *yv);
        }
    }
}

/// Writes the valid `mr x nr` corner of a full register tile to C.
///
/// # Safety
/// `c` must be valid for the `mr x nr` tile with row stride `ldc`.
#[cfg(target_arch = "x86_64")]
unsafe fn store_partial<const NR: usize>(
    tile: &[[f32; NR]],
    c: *mut f32,
    ldc: usize,
    accumulate: bool,
    mr: usize,
    nr: usize,
) {
    for (r, row) in tile.iter().enumerate().take(mr) {
        let crow = c.add(r * ldc);
        for (j, &v) in row.iter().enumerate().take(nr) {
            let dst = crow.add(j);
            *dst = if accumulate { *dst + v } else { v };
        }
    }
}

/// Short-A path: each output row is either n dot products (when B's columns are
/// contiguous, i.e. `x @ W^T`) or a sum of k scaled rows of B (row-major B). Tasks are
/// (job, column chunk) pairs, a few per thread. With AVX-512 the `x @ W^T` case runs
/// [`x86::gemv_avx512`]: every row of A against four columns of B at once, so each
/// weight is loaded once per call (decoding is bound by reading the weights).
fn gemv_path(
    isa: Isa,
    parallel: bool,
    jobs: &[GemmJob],
    m: usize,
    n: usize,
    k: usize,
    out: OutPtr,
) {
    let threads = if parallel { spin::threads() } else { 1 };
    // Equal chunks, the same number for every thread and no wider than GEMV_CHUNK: a
    // chunk streams its weight rows with each tile prefetching the next, so fewer and
    // longer chunks lose less to cold starts and no thread waits on a last short one
    // (four chunks a thread cost 10-25 % on the 192- and 576-row shapes of decoding).
    // Each output value's arithmetic is the same for any chunking.
    let chunk = if threads == 1 {
        GEMV_CHUNK
    } else {
        let per_thread = n.div_ceil(threads * GEMV_CHUNK).max(1);
        n.div_ceil(threads * per_thread).next_multiple_of(8)
    };
    let chunks = n.div_ceil(chunk);
    let avx512 = cfg!(target_arch = "x86_64") && isa.avx512();
    // A's rows as contiguous slices, made once per call: copied only when A is strided
    // or the kernel pairs them with bf16 weights.
    let owned: Vec<Vec<Vec<f32>>> = jobs
        .iter()
        .map(|job| {
            let a = job.a;
            let pairs = avx512 && job.b.rs == 1 && job.bh.is_some_and(|h| h.kind == Half::Bf16);
            if a.cs == 1 && !pairs {
                return Vec::new();
            }
            (0..m)
                .map(|i| {
                    let mut row: Vec<f32> = (0..k).map(|p| a.at(i, p)).collect();
                    #[cfg(target_arch = "x86_64")]
                    if pairs {
                        x86::pair_order(&mut row);
                    }
                    row
                })
                .collect()
        })
        .collect();
    let rows: Vec<Vec<&[f32]>> = jobs
        .iter()
        .zip(&owned)
        .map(|(job, own)| match own.is_empty() {
            true => (0..m)
                .map(|i| &job.a.data[i * job.a.rs..i * job.a.rs + k])
                .collect(),
            false => own.iter().map(Vec::as_slice).collect(),
        })
        .collect();
    let run = |t: usize| {
        let job = &jobs[t / chunks];
        let arows = &rows[t / chunks];
        let j0 = (t % chunks) * chunk;
        let w = (j0 + chunk).min(n) - j0;
        let b = job.b;
        let mut vals = [[0f32; GEMV_CHUNK]; GEMV_MAX_M];
        #[cfg(target_arch = "x86_64")]
        if b.rs == 1 && avx512 {
            // SAFETY: Avx512 is only selected when AVX-512F was detected; the column
            // runs [(j0 + jj) * cs, + k) lie inside B (checked by the caller's shapes).
            unsafe { x86::gemv_avx512(arows, k, b, job.bh, j0, w, &mut vals) };
            store_rows(job, &vals, m, n, j0, w, out);
            return;
        }
        let mut scratch = Vec::new();
        if b.rs == 1 {
            // Each column of B (a row of W) is read once, for every row of A.
            #[allow(clippy::needless_range_loop)] // jj indexes both B and the outputs
            for jj in 0..w {
                let start = (j0 + jj) * b.cs;
                let col = match job.bh {
                    None => &b.data[start..start + k],
                    Some(h) => {
                        scratch.resize(k, 0.0);
                        widen(h.kind, &h.data[start..start + k], &mut scratch);
                        &scratch[..]
                    }
                };
                for (i, arow) in arows.iter().enumerate() {
                    vals[i][jj] = dot(isa, arow, col);
                }
            }
        } else if b.cs == 1 {
            for p in 0..k {
                let start = p * b.rs + j0;
                let brow = match job.bh {
                    None => &b.data[start..start + w],
                    Some(h) => {
                        scratch.resize(w, 0.0);
                        widen(h.kind, &h.data[start..start + w], &mut scratch);
                        &scratch[..]
                    }
                };
                for (i, arow) in arows.iter().enumerate() {
                    axpy(isa, arow[p], brow, &mut vals[i][..w]);
                }
            }
        } else {
            let bat = |p: usize, j: usize| match job.bh {
                None => b.at(p, j),
                Some(h) => from_half(h.kind, h.data[p * b.rs + j * b.cs]),
            };
            for (i, arow) in arows.iter().enumerate() {
                for (jj, v) in vals[i][..w].iter_mut().enumerate() {
                    *v = (0..k).map(|p| arow[p] * bat(p, j0 + jj)).sum();
                }
            }
        }
        store_rows(job, &vals, m, n, j0, w, out);
    };
    if parallel {
        spin::for_each(jobs.len() * chunks, run);
    } else {
        (0..jobs.len() * chunks).for_each(run);
    }
}

/// Columns `[j0, j0 + w)` of the first `m` rows of `vals` into the job's output.
fn store_rows(
    job: &GemmJob,
    vals: &[[f32; GEMV_CHUNK]; GEMV_MAX_M],
    m: usize,
    n: usize,
    j0: usize,
    w: usize,
    out: OutPtr,
) {
    for (i, row) in vals.iter().enumerate().take(m) {
        // SAFETY: row i, columns [j0, j0 + w) of this job's output belong to the calling
        // task alone.
        unsafe {
            let dst = out.ptr().add(job.c_offset + i * n + j0);
            std::ptr::copy_nonoverlapping(row.as_ptr(), dst, w);
        }
    }
}

/// Flops of the FMA throughput loop per iteration: 24 FMAs of 16 lanes, 2 flops each.
const PEAK_FLOPS_PER_ITER: f64 = 24.0 * 16.0 * 2.0;

/// The f32 FMA throughput this machine gives now on every thread of the current pool,
/// in GFLOP/s (best of a few 20 ms runs of a register-only FMA loop); `None` without
/// AVX-512. Benchmarks divide a GEMM's speed by it: the fraction of f32 peak, measured
/// under the same load and clock as the GEMM itself.
pub(crate) fn fma_peak_gflops() -> Option<f64> {
    #[cfg(target_arch = "x86_64")]
    if detect_isa().avx512() {
        let iters = 200_000;
        let mut best = 0f64;
        for _ in 0..5 {
            let t = std::time::Instant::now();
            let sums = rayon::broadcast(|_| {
                // SAFETY: AVX-512F was detected.
                unsafe { x86::fma_loop_avx512(iters) }
            });
            let secs = t.elapsed().as_secs_f64();
            std::hint::black_box(sums);
            let flops = PEAK_FLOPS_PER_ITER * iters as f64 * rayon::current_num_threads() as f64;
            best = best.max(flops / secs / 1e9);
        }
        return Some(best);
    }
    None
}

pub(crate) fn dot(isa: Isa, x: &[f32], y: &[f32]) -> f32 {
    #[cfg(target_arch = "x86_64")]
    if isa != Isa::Portable {
        // SAFETY: Avx2/Avx512 are only selected when AVX2+FMA (implied by the
        // AVX-512 machines we target) were detected.
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
        {
            return unsafe { x86::dot_avx2(x, y) };
        }
    }
    let _ = isa;
    // Eight independent partial sums let the compiler vectorise the reduction.
    let mut acc = [0f32; 8];
    let xc = x.chunks_exact(8);
    let yc = y.chunks_exact(8);
    let tail: f32 = xc
        .remainder()
        .iter()
        .zip(yc.remainder())
        .map(|(a, b)| a * b)
        .sum();
    for (xs, ys) in xc.zip(yc) {
        for l in 0..8 {
            acc[l] += xs[l] * ys[l];
        }
    }
    acc.iter().sum::<f32>() + tail
}

fn axpy(isa: Isa, alpha: f32, x: &[f32], y: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if isa != Isa::Portable
        && std::arch::is_x86_feature_detected!("avx2")
        && std::arch::is_x86_feature_detected!("fma")
    {
        // SAFETY: features checked just above.
        unsafe { x86::axpy_avx2(alpha, x, y) };
        return;
    }
    let _ = isa;
    for (yv, &xv) in y.iter_mut().zip(x) {
        *yv += alpha * xv;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::Rng;

    fn naive(a: MatRef, b: MatRef) -> Vec<f32> {
        let mut c = vec![0f32; a.rows * b.cols];
        for i in 0..a.rows {
            for j in 0..b.cols {
                let mut s = 0f64;
                for p in 0..a.cols {
                    s += a.at(i, p) as f64 * b.at(p, j) as f64;
                }
                c[i * b.cols + j] = s as f32;
            }
        }
        c
    }

    fn isas() -> Vec<Isa> {
        #[cfg_attr(not(target_arch = "x86_64"), allow(unused_mut))]
        let mut v = vec![Isa::Portable];
        #[cfg(target_arch = "x86_64")]
        {
            if std::arch::is_x86_feature_detected!("avx2")
                && std::arch::is_x86_feature_detected!("fma")
            {
                v.push(Isa::Avx2);
            }
            if std::arch::is_x86_feature_detected!("avx512f") {
                v.push(Isa::Avx512);
            }
            if super::super::amx::available() {
                v.push(Isa::Amx);
            }
        }
        v
    }

    #[test]
    fn all_kernels_match_naive_for_all_layouts() {
        let mut rng = Rng::new(7);
        let shapes = [
            (1, 1, 1),
            (3, 5, 7),
            (5, 300, 17),
            (7, 33, 40),
            (13, 257, 49),
            (64, 64, 64),
            (100, 530, 70),
            (2, 100, 300),
            // A deeper than one A block (two depth spans), and many tiles per row block.
            (100, 2000, 40),
            (300, 64, 700),
        ];
        for isa in isas() {
            for &(m, k, n) in &shapes {
                for ta in [false, true] {
                    for tb in [false, true] {
                        let ad = rng.vec(m * k);
                        let bd = rng.vec(k * n);
                        // Storage order decides the strides; the logical matrix is the same.
                        let a = if ta {
                            MatRef {
                                data: &ad,
                                rows: m,
                                cols: k,
                                rs: 1,
                                cs: m,
                            }
                        } else {
                            MatRef {
                                data: &ad,
                                rows: m,
                                cols: k,
                                rs: k,
                                cs: 1,
                            }
                        };
                        let b = if tb {
                            MatRef {
                                data: &bd,
                                rows: k,
                                cols: n,
                                rs: 1,
                                cs: k,
                            }
                        } else {
                            MatRef {
                                data: &bd,
                                rows: k,
                                cols: n,
                                rs: n,
                                cs: 1,
                            }
                        };
                        let mut c = vec![f32::NAN; m * n + 3];
                        let job = GemmJob {
                            a,
                            b,
                            bh: None,
                            bp: None,
                            c_offset: 3,
                        };
                        let want = naive(a, b);
                        for par in [false, true] {
                            gemm_with(isa, par, &[job], m, n, k, &mut c);
                            for (idx, (&got, &w)) in c[3..].iter().zip(&want).enumerate() {
                                assert!(
                                    (got - w).abs() <= 1e-4 * (1.0 + w.abs()),
                                    "{isa:?} par{par} m{m} k{k} n{n} ta{ta} tb{tb} at {idx}: \
                                     {got} vs {w}"
                                );
                            }
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn batched_jobs_with_a_shared_operand() {
        let mut rng = Rng::new(21);
        let (m, k, n) = (20, 70, 50);
        let a: Vec<Vec<f32>> = (0..3).map(|_| rng.vec(m * k)).collect();
        let bd = rng.vec(n * k);
        // b is W^T for a shared W [n, k], as in a broadcast batched matmul.
        let b = MatRef {
            data: &bd,
            rows: k,
            cols: n,
            rs: 1,
            cs: k,
        };
        let jobs: Vec<GemmJob> = a
            .iter()
            .enumerate()
            .map(|(i, ad)| GemmJob {
                bh: None,
                bp: None,
                a: MatRef {
                    data: ad,
                    rows: m,
                    cols: k,
                    rs: k,
                    cs: 1,
                },
                b,
                c_offset: i * m * n,
            })
            .collect();
        for isa in isas() {
            for par in [false, true] {
                let mut c = vec![f32::NAN; 3 * m * n];
                gemm_with(isa, par, &jobs, m, n, k, &mut c);
                for (i, job) in jobs.iter().enumerate() {
                    let want = naive(job.a, job.b);
                    let got = &c[i * m * n..(i + 1) * m * n];
                    for (&g, &w) in got.iter().zip(&want) {
                        assert!(
                            (g - w).abs() <= 1e-4 * (1.0 + w.abs()),
                            "{isa:?} {par}: {g} vs {w}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn half_weights_match_naive_on_the_widened_values() {
        use crate::cpu::half::to_half;
        let mut rng = Rng::new(33);
        // Short A (the vector path, with and without tails of 16) and tall A (packed).
        let shapes = [
            (1, 1, 1),
            (1, 576, 37),
            (2, 33, 9),
            (3, 17, 70),
            (4, 300, 5),
            (5, 40, 33),
            (13, 257, 49),
            (40, 70, 130),
        ];
        for isa in isas() {
            for kind in [Half::F16, Half::Bf16] {
                for &(m, k, n) in &shapes {
                    for tb in [true, false] {
                        let ad = rng.vec(m * k);
                        let bd: Vec<u16> =
                            rng.vec(k * n).iter().map(|&v| to_half(kind, v)).collect();
                        let wide: Vec<f32> = bd.iter().map(|&h| from_half(kind, h)).collect();
                        // The f32 data B claims to have is never read: NaN proves it.
                        let nan = vec![f32::NAN; k * n];
                        let (rs, cs) = if tb { (1, k) } else { (n, 1) };
                        let a = MatRef {
                            data: &ad,
                            rows: m,
                            cols: k,
                            rs: k,
                            cs: 1,
                        };
                        let b = |data| MatRef {
                            data,
                            rows: k,
                            cols: n,
                            rs,
                            cs,
                        };
                        let want = naive(a, b(&wide));
                        let job = GemmJob {
                            a,
                            b: b(&nan),
                            bh: Some(HalfRef { kind, data: &bd }),
                            bp: None,
                            c_offset: 0,
                        };
                        for par in [false, true] {
                            let mut c = vec![f32::NAN; m * n];
                            gemm_with(isa, par, &[job], m, n, k, &mut c);
                            for (idx, (&got, &w)) in c.iter().zip(&want).enumerate() {
                                assert!(
                                    (got - w).abs() <= 1e-4 * (1.0 + w.abs()),
                                    "{isa:?} {kind:?} par{par} m{m} k{k} n{n} tb{tb} at {idx}: \
                                     {got} vs {w}"
                                );
                            }
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn fresh_outputs_are_fully_written() {
        let mut rng = Rng::new(5);
        let (m, k, n) = (30, 50, 40);
        let ad: Vec<Vec<f32>> = (0..3).map(|_| rng.vec(m * k)).collect();
        let bd = rng.vec(k * n);
        let b = MatRef {
            data: &bd,
            rows: k,
            cols: n,
            rs: n,
            cs: 1,
        };
        let job = |i: usize, at: usize| GemmJob {
            a: MatRef {
                data: &ad[i],
                rows: m,
                cols: k,
                rs: k,
                cs: 1,
            },
            b,
            bh: None,
            bp: None,
            c_offset: at * m * n,
        };
        // Jobs tiling the output (any order), and jobs leaving a block out: that block
        // must come back zero.
        for (jobs, len) in [
            (vec![job(0, 2), job(1, 0), job(2, 1)], 3 * m * n),
            (vec![job(0, 0), job(2, 2)], 3 * m * n),
        ] {
            let got = gemm_new(&jobs, m, n, k, len);
            let mut want = vec![0f32; len];
            gemm(&jobs, m, n, k, &mut want);
            assert_eq!(got.len(), len);
            for (g, w) in got.iter().zip(&want) {
                assert_eq!(g.to_bits(), w.to_bits());
            }
        }
        let got = gemm_new(&[job(0, 0), job(2, 2)], m, n, k, 3 * m * n);
        assert!(got[m * n..2 * m * n].iter().all(|&v| v == 0.0));
    }

    #[test]
    fn zero_depth_gives_zeros() {
        let data: [f32; 0] = [];
        let a = MatRef {
            data: &data,
            rows: 2,
            cols: 0,
            rs: 0,
            cs: 1,
        };
        let b = MatRef {
            data: &data,
            rows: 0,
            cols: 3,
            rs: 3,
            cs: 1,
        };
        let mut c = vec![5.0; 6];
        gemm(
            &[GemmJob {
                a,
                b,
                bh: None,
                bp: None,
                c_offset: 0,
            }],
            2,
            3,
            0,
            &mut c,
        );
        assert_eq!(c, vec![0.0; 6]);
    }
}
