//! The f32 matrix-multiply kernel behind `matmul` and `attention`.
//!
//! On x86-64 with AVX2+FMA this is a GotoBLAS/BLIS-style blocked GEMM: for each
//! NC-wide column block and KC-deep depth block, the operands are packed into panels
//! (in parallel) and a register-blocked microkernel (AVX-512 or AVX2+FMA, picked at
//! run time) computes MR x NR output tiles, with the tiles spread over the rayon pool. Parallelism comes
//! from rayon alone, so it scales to every core of the pool (matrixmultiply's own
//! threading stops at 4 threads and would fight rayon for the cores when nested).
//! Packing buffers are kept per thread and reused, so steady-state calls allocate
//! nothing but their output.
//!
//! Elsewhere (aarch64, old x86) each product goes to ndarray's `general_mat_mul`
//! (matrixmultiply's NEON/SSE kernels), with rayon over the batch.
//!
//! Very short left operands (m <= `GEMV_MAX_M`, e.g. single-token decoding) skip
//! packing and run as dot products or axpys, since they are memory-bound anyway.

use std::cell::Cell;

use rayon::prelude::*;

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
    fn at(&self, i: usize, j: usize) -> f32 {
        self.data[i * self.rs + j * self.cs]
    }
}

/// One product `c = a @ b`, written row-major (ldc = n) at `c_offset` in the output.
#[derive(Clone, Copy, Debug)]
pub(crate) struct GemmJob<'a> {
    pub a: MatRef<'a>,
    pub b: MatRef<'a>,
    pub c_offset: usize,
}

/// Depth of one packed block: a KC x NR panel of B (16-32 KiB) stays in L1.
const KC: usize = 256;
/// Most rows of A per task: an MC x KC block (96 KiB) stays in L2.
const MC: usize = 96;
/// Columns of B packed per block: a KC x NC block (2 MiB) stays in L3.
const NC: usize = 2048;
/// Left operands with at most this many rows use the unpacked vector path.
const GEMV_MAX_M: usize = 4;

type KernelFn = unsafe fn(usize, *const f32, *const f32, *mut f32, usize, bool, usize, usize);

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
}

/// The best implementation for this machine.
pub(crate) fn detect_isa() -> Isa {
    #[cfg(target_arch = "x86_64")]
    {
        let avx2 = std::arch::is_x86_feature_detected!("avx2")
            && std::arch::is_x86_feature_detected!("fma");
        if avx2 && std::arch::is_x86_feature_detected!("avx512f") {
            return Isa::Avx512;
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
        Isa::Avx512 => Some(Kernel {
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
struct OutPtr(*mut f32);
// SAFETY: every task writes a disjoint rectangle of the output; see `gemm`.
unsafe impl Send for OutPtr {}
unsafe impl Sync for OutPtr {}

impl OutPtr {
    /// Accessed through a method so closures capture the whole `Send + Sync` wrapper
    /// rather than (by precise capture) the bare pointer field.
    #[inline(always)]
    fn ptr(self) -> *mut f32 {
        self.0
    }
}

thread_local! {
    /// Packing buffers owned by the thread that calls `gemm`; taken out while in use
    /// (so a nested call on the same thread just allocates) and put back afterwards, so
    /// repeated products of similar size touch no fresh pages.
    static PACK_BUFS: Cell<(Vec<f32>, Vec<f32>)> = const { Cell::new((Vec::new(), Vec::new())) };
}

/// Runs every job, all sharing the same (m, n, k), in parallel on the current rayon
/// pool. `c` must hold `c_offset + m * n` elements for every job, and jobs must write
/// disjoint ranges. Shapes are validated by the caller (`matmul`).
pub(crate) fn gemm(jobs: &[GemmJob], m: usize, n: usize, k: usize, c: &mut [f32]) {
    gemm_with(detect_isa(), true, jobs, m, n, k, c)
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
    if m == 0 || n == 0 || jobs.is_empty() {
        return;
    }
    for job in jobs {
        assert!(job.a.rows == m && job.a.cols == k && job.b.rows == k && job.b.cols == n);
        assert!(job.c_offset + m * n <= c.len());
    }
    if k == 0 {
        for job in jobs {
            c[job.c_offset..job.c_offset + m * n].fill(0.0);
        }
        return;
    }
    let out = OutPtr(c.as_mut_ptr());
    if m <= GEMV_MAX_M {
        gemv_path(isa, parallel, jobs, m, n, k, out);
        return;
    }
    let Some(kernel) = kernel_for(isa) else {
        portable_gemm(parallel, jobs, m, n, k, out);
        return;
    };
    let threads = if parallel {
        rayon::current_num_threads()
    } else {
        1
    };
    // SAFETY (all three calls): each job owns `c[c_offset .. c_offset + m*n]`, checked
    // in bounds above, and jobs write disjoint ranges.
    if threads > 1 && jobs.len() >= threads {
        // Plenty of independent products: one whole product per task.
        jobs.par_iter().for_each(|job| unsafe {
            gemm_one(kernel, 1, job, m, n, k, out.ptr().add(job.c_offset))
        });
    } else {
        for job in jobs {
            unsafe { gemm_one(kernel, threads, job, m, n, k, out.ptr().add(job.c_offset)) };
        }
    }
}

/// One product with the classic loop nest: for each NC-wide column block and KC-deep
/// depth block, pack that block of B and the matching column block of A (in parallel),
/// then compute the output tiles (in parallel). B's block (KC x NC) lives in L3, each
/// task's A block (MC x KC) in L2, and each KC x NR micro-panel of B in L1.
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
    let a_panels = m.div_ceil(mr);
    let nc_max = NC.min(n);
    let kc_max = KC.min(k);
    let (mut abuf, mut bbuf) = PACK_BUFS.with(Cell::take);
    let (a_need, b_need) = (a_panels * mr * kc_max, nc_max.div_ceil(nr) * nr * kc_max);
    if abuf.len() < a_need {
        abuf.resize(a_need, 0.0);
    }
    if bbuf.len() < b_need {
        bbuf.resize(b_need, 0.0);
    }
    let out = OutPtr(c);
    let parallel = threads > 1;
    let mut jc = 0;
    while jc < n {
        let nc = NC.min(n - jc);
        let b_panels = nc.div_ceil(nr);
        let (mt, nt) = task_tiles(m, nc, kernel, threads);
        let (m_tiles, n_tiles) = (m.div_ceil(mt), nc.div_ceil(nt));
        let mut pc = 0;
        while pc < k {
            let kc = KC.min(k - pc);
            let apack = &mut abuf[..a_panels * mr * kc];
            let bpack = &mut bbuf[..b_panels * nr * kc];
            let pack_a_panel = |ip: usize, dst: &mut [f32]| {
                pack_a(job.a, ip * mr, mr.min(m - ip * mr), pc, kc, mr, dst)
            };
            let pack_b_panel = |jp: usize, dst: &mut [f32]| {
                pack_b(job.b, jc + jp * nr, nr.min(nc - jp * nr), pc, kc, nr, dst)
            };
            if parallel {
                apack
                    .par_chunks_mut(mr * kc)
                    .enumerate()
                    .for_each(|(i, d)| pack_a_panel(i, d));
                bpack
                    .par_chunks_mut(nr * kc)
                    .enumerate()
                    .for_each(|(i, d)| pack_b_panel(i, d));
            } else {
                apack
                    .chunks_mut(mr * kc)
                    .enumerate()
                    .for_each(|(i, d)| pack_a_panel(i, d));
                bpack
                    .chunks_mut(nr * kc)
                    .enumerate()
                    .for_each(|(i, d)| pack_b_panel(i, d));
            }
            let (apack, bpack) = (&*apack, &*bpack);
            // The first depth block overwrites C, later ones accumulate into it.
            let accumulate = pc > 0;
            let run = |t: usize| {
                let (i0, j0) = ((t / n_tiles) * mt, (t % n_tiles) * nt);
                let (mb, nb) = (mt.min(m - i0), nt.min(nc - j0));
                for jp in 0..nb.div_ceil(nr) {
                    let nr_eff = nr.min(nb - jp * nr);
                    let bp = bpack[(j0 / nr + jp) * nr * kc..].as_ptr();
                    for ip in 0..mb.div_ceil(mr) {
                        let mr_eff = mr.min(mb - ip * mr);
                        let ap = apack[(i0 / mr + ip) * mr * kc..].as_ptr();
                        // SAFETY: the tile (rows i0.., columns jc+j0..) belongs to this
                        // task; panels hold kc * MR / kc * NR values (zero-padded).
                        unsafe {
                            let cp = out.ptr().add((i0 + ip * mr) * n + jc + j0 + jp * nr);
                            (kernel.func)(kc, ap, bp, cp, n, accumulate, mr_eff, nr_eff);
                        }
                    }
                }
            };
            if parallel {
                (0..m_tiles * n_tiles).into_par_iter().for_each(run);
            } else {
                (0..m_tiles * n_tiles).for_each(run);
            }
            pc += kc;
        }
        jc += nc;
    }
    PACK_BUFS.with(|cell| cell.set((abuf, bbuf)));
}

/// Splits an `m x nc` block into task tiles: at most MC rows (one A block in L2) and
/// the whole block's width, narrowed and then shortened until every thread has a few
/// tasks.
fn task_tiles(m: usize, nc: usize, kernel: Kernel, threads: usize) -> (usize, usize) {
    let round_up = |v: usize, q: usize| v.div_ceil(q) * q;
    let mut mt = round_up(m.min(MC), kernel.mr);
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

/// Packs depth `[p0, p0+kc)` x columns `[j0, j0+cols)` of B into one panel laid out
/// `[p][j]` (`nr` values per depth step), zero-filling columns past `cols`.
fn pack_b(b: MatRef, j0: usize, cols: usize, p0: usize, kc: usize, nr: usize, dst: &mut [f32]) {
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
        let c = unsafe { std::slice::from_raw_parts_mut(out.ptr().add(job.c_offset), m * n) };
        let mut c = ArrayViewMut2::from_shape((m, n), c).expect("gemm: output view");
        general_mat_mul(1.0, &a, &b, 0.0, &mut c);
    };
    if parallel && jobs.len() > 1 {
        jobs.par_iter().for_each(run);
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
        c: *mut f32,
        ldc: usize,
        accumulate: bool,
        mr: usize,
        nr: usize,
    ) {
        const MR: usize = AVX512_MR;
        let mut acc = [[_mm512_setzero_ps(); 2]; MR];
        let (mut a, mut b) = (a, b);
        for _ in 0..kc {
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
/// (job, column chunk) pairs.
fn gemv_path(
    isa: Isa,
    parallel: bool,
    jobs: &[GemmJob],
    m: usize,
    n: usize,
    k: usize,
    out: OutPtr,
) {
    const CHUNK: usize = 64;
    let chunks = n.div_ceil(CHUNK);
    let run = |t: usize| {
        let job = &jobs[t / chunks];
        let j0 = (t % chunks) * CHUNK;
        let w = (j0 + CHUNK).min(n) - j0;
        let (a, b) = (job.a, job.b);
        // A's rows as contiguous slices (copied only when A is strided).
        let owned: Vec<Vec<f32>>;
        let arows: Vec<&[f32]> = if a.cs == 1 {
            (0..m).map(|i| &a.data[i * a.rs..i * a.rs + k]).collect()
        } else {
            owned = (0..m)
                .map(|i| (0..k).map(|p| a.at(i, p)).collect())
                .collect();
            owned.iter().map(Vec::as_slice).collect()
        };
        let mut vals = [[0f32; CHUNK]; GEMV_MAX_M];
        if b.rs == 1 {
            // Each column of B (a row of W) is read once, for every row of A.
            #[allow(clippy::needless_range_loop)] // jj indexes both B and the outputs
            for jj in 0..w {
                let start = (j0 + jj) * b.cs;
                let col = &b.data[start..start + k];
                for (i, arow) in arows.iter().enumerate() {
                    vals[i][jj] = dot(isa, arow, col);
                }
            }
        } else if b.cs == 1 {
            for p in 0..k {
                let start = p * b.rs + j0;
                let brow = &b.data[start..start + w];
                for (i, arow) in arows.iter().enumerate() {
                    axpy(isa, arow[p], brow, &mut vals[i][..w]);
                }
            }
        } else {
            for (i, arow) in arows.iter().enumerate() {
                for (jj, v) in vals[i][..w].iter_mut().enumerate() {
                    *v = (0..k).map(|p| arow[p] * b.at(p, j0 + jj)).sum();
                }
            }
        }
        for (i, row) in vals.iter().enumerate().take(m) {
            // SAFETY: row i, columns [j0, j0 + w) of this job's output belong to this
            // task alone.
            unsafe {
                let dst = out.ptr().add(job.c_offset + i * n + j0);
                std::ptr::copy_nonoverlapping(row.as_ptr(), dst, w);
            }
        }
    };
    if parallel {
        (0..jobs.len() * chunks).into_par_iter().for_each(run);
    } else {
        (0..jobs.len() * chunks).for_each(run);
    }
}

fn dot(isa: Isa, x: &[f32], y: &[f32]) -> f32 {
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
                        let job = GemmJob { a, b, c_offset: 3 };
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
        gemm(&[GemmJob { a, b, c_offset: 0 }], 2, 3, 0, &mut c);
        assert_eq!(c, vec![0.0; 6]);
    }
}
