//! f32 matrix products on Intel AMX (Advanced Matrix Extensions), at f32 accuracy.
//!
//! AMX multiplies bf16 tiles into f32 accumulator tiles: one `tdpbf16ps` does 16 x 16 x
//! 32 multiply-adds, about sixteen times the f32 FMA rate of AVX-512 on the same core.
//! To compute f32 products with it, each f32 is split exactly into three bf16 parts,
//! `x = x0 + x1 + x2` (x rounded to 8 significant bits, the remainder rounded likewise,
//! and the last 8 bits), and the six part products of relative size 2^-16 and above are
//! summed:
//! `x0 y0 + x0 y1 + x1 y0 + x0 y2 + x1 y1 + x2 y0` ("bf16x6": G. Henry, P. T. P. Tang,
//! A. Heinecke, "Leveraging the bfloat16 Artificial Intelligence Datatype For
//! Higher-Precision Computations", IEEE ARITH 2019). The three dropped products are
//! together below about 2^-23 relative, two f32 roundings; every part product is exact
//! and the sums are f32, so the result is as accurate as f32 arithmetic (the tests hold
//! every product within four roundings of a sequential f32 dot product's error). Six
//! bf16 products still cost less than half of one f32 product at the FMA rate.
//!
//! Where it differs from IEEE f32 arithmetic: AMX reads bf16 subnormals as zero and
//! flushes subnormal results, so the low parts of values below about 1e-33 in magnitude
//! are dropped. A product with inf or NaN in an operand goes to the FMA kernels
//! instead (the parts would turn `inf * 0` into NaN).
//!
//! Layout, in tiles of 16 rows x 64 bytes: A is packed per call as [row tile][depth
//! block of 32][part][16 rows x 32 depths]; B as [column tile][depth block][part][16
//! depth pairs x 16 columns x 2] (the pair layout `tdpbf16ps` reads). A weight's B is
//! packed once and kept with the tensor (`gemm::packed_weight`). A weight stored as
//! halves (`half.rs`) is exact in fewer parts, one for bf16 and two for f16: only
//! those are stored, and the products with the others, exact zeros, are skipped (3 or
//! 5 products rather than 6; the same numbers). The kernel holds a 32 x 32 block of C in
//! four accumulator tiles over the whole depth; a task keeps each of its column tile
//! pairs of B in L2 while its rows of A stream past it.
//!
//! Linux grants AMX's 8 KiB of tile state only on request (`arch_prctl`
//! `ARCH_REQ_XCOMP_PERM`); [`available`] asks once per process. `TOKIT_AMX=0` in the
//! environment turns this path off, so AVX-512 FMAs compute every product.

use std::arch::asm;
use std::arch::x86_64::*;
use std::cell::Cell;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::OnceLock;

use super::gemm::{GemmJob, MatRef, OutPtr};
use super::half::{from_half, Half};
use super::spin;

/// Depth of one tile (32 bf16 = 64 bytes per row).
const DEPTH: usize = 32;
/// Rows of an A tile, columns of a B or C tile.
const EDGE: usize = 16;
/// bf16 values in one tile.
const TILE: usize = EDGE * DEPTH;
/// bf16 parts per f32.
const PARTS: usize = 3;
/// Most A values (f32 count, as bf16 parts 6 bytes each) a task's row blocks keep in
/// L2 between column tiles: row pairs beyond it are split into more blocks.
const A_BLOCK_VALUES: usize = 192 * 1024;

/// Whether this process can run AMX bf16 tiles (CPU support, and Linux granted the tile
/// state), unless `TOKIT_AMX` is `0`, `off`, `false` or `no`. Decided once.
pub(crate) fn available() -> bool {
    static OK: OnceLock<bool> = OnceLock::new();
    *OK.get_or_init(|| !switched_off() && cpu_has_amx() && request_tile_state())
}

/// Whether `TOKIT_AMX` turns the path off.
fn switched_off() -> bool {
    let off = |v: String| ["0", "off", "false", "no"].contains(&v.trim().to_lowercase().as_str());
    std::env::var("TOKIT_AMX").is_ok_and(off)
}

/// Whether the CPU has AMX bf16 tiles (CPUID leaf 7: EDX bit 22 is AMX-BF16, bit 24
/// AMX-TILE) and AVX-512F, which the packing uses.
fn cpu_has_amx() -> bool {
    let edx = __cpuid_count(7, 0).edx;
    edx & (1 << 22) != 0 && edx & (1 << 24) != 0 && std::arch::is_x86_feature_detected!("avx512f")
}

/// Asks Linux for permission to use the tile data state (`XFEATURE_XTILEDATA`).
#[cfg(target_os = "linux")]
fn request_tile_state() -> bool {
    const ARCH_REQ_XCOMP_PERM: libc::c_long = 0x1023;
    const XFEATURE_XTILEDATA: libc::c_long = 18;
    // SAFETY: a plain system call with integer arguments.
    unsafe {
        libc::syscall(
            libc::SYS_arch_prctl,
            ARCH_REQ_XCOMP_PERM,
            XFEATURE_XTILEDATA,
        ) == 0
    }
}

#[cfg(not(target_os = "linux"))]
fn request_tile_state() -> bool {
    false
}

/// A 64-byte-aligned buffer of bf16 values (tile loads that cross cache lines cost two).
#[derive(Default)]
struct Tiles {
    data: Vec<u16>,
    start: usize,
}

impl Tiles {
    /// Room for `len` values (contents unspecified: packing writes every value).
    fn reserve(&mut self, len: usize) {
        if self.data.len() < self.start + len {
            self.data = vec![0; len + 32];
            self.start = self.data.as_ptr().align_offset(64).min(32);
        }
    }

    fn ptr(&self) -> *const u16 {
        self.data[self.start..].as_ptr()
    }

    fn ptr_mut(&mut self) -> *mut u16 {
        self.data[self.start..].as_mut_ptr()
    }
}

/// A weight's B operand (`k x n`) as bf16 parts in AMX tiles; see the module docs.
pub(crate) struct PackedB {
    k: usize,
    n: usize,
    /// Parts per value (see [`b_parts`]).
    parts: usize,
    tiles: Tiles,
    /// Whether every value is finite (else the FMA kernels compute its products).
    finite: bool,
}

impl std::fmt::Debug for PackedB {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "amx::PackedB({} x {})", self.k, self.n)
    }
}

/// Where tile (`t`, depth block `kb`, `part`) starts, for `kbs` depth blocks of
/// `parts` parts each.
fn tile_at(t: usize, kb: usize, part: usize, kbs: usize, parts: usize) -> usize {
    ((t * kbs + kb) * parts + part) * TILE
}

/// How many parts B needs: a half copy's widened values are exact in fewer (a bf16 in
/// one, an f16's 11 significant bits in two), and the products with the zero parts,
/// exact zeros, are skipped rather than summed.
fn b_parts(job: &GemmJob) -> usize {
    match job.bh.map(|h| h.kind) {
        None => PARTS,
        Some(Half::Bf16) => 1,
        Some(Half::F16) => 2,
    }
}

/// Packs a job's B (`k x n`: f32 with any strides, or its half copy) in parallel.
pub(crate) fn pack_weight(job: &GemmJob, k: usize, n: usize) -> PackedB {
    let (mut tiles, parts) = (Tiles::default(), b_parts(job));
    let finite = pack_b(job, k, n, parts, &mut tiles);
    PackedB {
        k,
        n,
        parts,
        tiles,
        finite,
    }
}

/// `c = a @ b` for one `m x k` by `k x n` product (`m` above the vector path's rows),
/// written row-major at `c` (every value; nothing is read). B comes from `packed` when
/// it is that product's weight, else it is packed here. Runs on `spin::for_each`.
/// Returns false, having written nothing, when an operand holds inf or NaN: the part
/// products would turn `inf * 0` (a zero low part) into NaN where IEEE f32 gives inf,
/// so the caller computes such a product with FMAs.
///
/// # Safety
/// [`available`] must be true; `c` must be valid for writes of `m * n` values that no one
/// else accesses meanwhile.
pub(crate) unsafe fn gemm(
    job: &GemmJob,
    packed: Option<&PackedB>,
    m: usize,
    n: usize,
    k: usize,
    c: *mut f32,
) -> bool {
    thread_local! {
        /// The calling thread's packing buffers for A and B, kept between calls.
        static BUFS: Cell<(Tiles, Tiles)> = Cell::new(Default::default());
    }
    let (mut abuf, mut bbuf) = BUFS.with(Cell::take);
    let (b, parts, b_finite) = match packed.filter(|p| p.k == k && p.n == n) {
        Some(p) => (&p.tiles, p.parts, p.finite),
        None => {
            let parts = b_parts(job);
            let finite = pack_b(job, k, n, parts, &mut bbuf);
            (&bbuf, parts, finite)
        }
    };
    let finite = b_finite && pack_a(job.a, m, k, &mut abuf);
    if finite {
        // SAFETY: both operands were packed for this (m, n, k); the caller vouches for `c`.
        unsafe { multiply(&abuf, b, parts, m, n, k, OutPtr(c)) };
    }
    BUFS.with(|cell| cell.set((abuf, bbuf)));
    finite
}

/// Packs A (`m x k`) into row tiles, zero rows and depths past the edges. Returns
/// whether every value is finite.
fn pack_a(a: MatRef, m: usize, k: usize, dst: &mut Tiles) -> bool {
    let (kbs, row_tiles) = (k.div_ceil(DEPTH), m.div_ceil(2 * EDGE) * 2);
    dst.reserve(row_tiles * kbs * PARTS * TILE);
    let out = OutPtr(dst.ptr_mut().cast());
    let finite = AtomicBool::new(true);
    spin::for_each(row_tiles, |t| {
        // SAFETY: AVX-512F comes with AMX (`available`); row tile `t` lies inside the
        // buffer reserved above and belongs to this task alone.
        if !unsafe { pack_a_tile(a, m, k, t, out.ptr().cast()) } {
            finite.store(false, Relaxed);
        }
    });
    finite.into_inner()
}

/// Packs row tile `t` of A (all depth blocks) at `base`; returns whether its values are
/// all finite.
///
/// # Safety
/// AVX-512F; `base` must hold the packed A buffer of this (m, k).
#[target_feature(enable = "avx512f")]
unsafe fn pack_a_tile(a: MatRef, m: usize, k: usize, t: usize, base: *mut u16) -> bool {
    let kbs = k.div_ceil(DEPTH);
    let mut ok = true;
    let mut row = [0f32; DEPTH];
    for kb in 0..kbs {
        let p0 = kb * DEPTH;
        let depth = DEPTH.min(k - p0);
        for r in 0..EDGE {
            let i = t * EDGE + r;
            // SAFETY: the row's three 64-byte pieces lie in tile `t`, inside `base`'s buffer.
            let dst = |part| unsafe { base.add(tile_at(t, kb, part, kbs, PARTS) + r * DEPTH) };
            // SAFETY: reads stay inside A's rows (`load32` reads `depth` values).
            ok &= unsafe {
                if i >= m {
                    write_parts([_mm512_setzero_ps(); 2], dst)
                } else if a.cs == 1 {
                    let src = a.data[i * a.rs + p0..][..depth].as_ptr();
                    write_parts(load32(src, depth), dst)
                } else {
                    for (d, v) in row.iter_mut().enumerate() {
                        *v = if d < depth { a.at(i, p0 + d) } else { 0.0 };
                    }
                    write_parts(load32(row.as_ptr(), DEPTH), dst)
                }
            };
        }
    }
    ok
}

/// Packs B (`k x n`) into column tiles of depth pairs, its first `parts` parts, zero
/// past the edges. Returns whether every value is finite.
fn pack_b(job: &GemmJob, k: usize, n: usize, parts: usize, dst: &mut Tiles) -> bool {
    let (kbs, col_tiles) = (k.div_ceil(DEPTH), n.div_ceil(2 * EDGE) * 2);
    dst.reserve(col_tiles * kbs * parts * TILE);
    let out = OutPtr(dst.ptr_mut().cast());
    let finite = AtomicBool::new(true);
    spin::for_each(col_tiles * kbs, |task| {
        let (t, kb) = (task / kbs, task % kbs);
        // SAFETY: AVX-512F comes with AMX; this task writes its own tiles (one a part), inside
        // the buffer reserved above.
        if !unsafe { pack_b_tile(job, k, n, (t, kb), parts, out.ptr().cast()) } {
            finite.store(false, Relaxed);
        }
    });
    finite.into_inner()
}

/// Packs depth block `kb` of column tile `t` of B (a tile for each of its `parts`) at
/// `base`; returns whether its values are all finite.
///
/// # Safety
/// AVX-512F; `base` must hold the packed B buffer of this (k, n, parts).
#[target_feature(enable = "avx512f")]
unsafe fn pack_b_tile(
    job: &GemmJob,
    k: usize,
    n: usize,
    (t, kb): (usize, usize),
    parts: usize,
    base: *mut u16,
) -> bool {
    let (b, kbs) = (job.b, k.div_ceil(DEPTH));
    let (p0, j0) = (kb * DEPTH, t * EDGE);
    // SAFETY: the tiles lie inside `base`'s buffer.
    let tile = |part| unsafe { base.add(tile_at(t, kb, part, kbs, parts)) };
    let mut ok = true;
    if job.bh.is_none() && b.rs == 1 {
        // Depth is contiguous (a weight used as `W^T`): one column of B at a time.
        let depth = DEPTH.min(k - p0);
        for c in 0..EDGE {
            let j = j0 + c;
            // SAFETY: the column's `depth` values lie inside B.
            let x = match j < n {
                true => unsafe { load32(b.data[j * b.cs + p0..][..depth].as_ptr(), depth) },
                false => [_mm512_setzero_ps(); 2],
            };
            // SAFETY: the tiles are 16 x 16 words.
            ok &= unsafe { scatter_column(x, c, parts, tile) };
        }
        return ok;
    }
    // Else one row pair at a time, loaded whole where B's rows are contiguous f32.
    let cols = EDGE.min(n.saturating_sub(j0));
    let value = |p: usize, j: usize| match (p < k && j < n, job.bh) {
        (false, _) => 0.0,
        (true, None) => b.at(p, j),
        (true, Some(h)) => from_half(h.kind, h.data[p * b.rs + j * b.cs]),
    };
    let mut pair = [[0f32; EDGE]; 2];
    for r in 0..EDGE {
        let p = p0 + 2 * r;
        let x = if b.cs == 1 && job.bh.is_none() {
            [p, p + 1].map(|p| match p < k && cols > 0 {
                // SAFETY: the row's `cols` values lie inside B.
                true => unsafe { load16(b.data[p * b.rs + j0..][..cols].as_ptr(), cols) },
                false => _mm512_setzero_ps(),
            })
        } else {
            for (e, row) in pair.iter_mut().enumerate() {
                for (c, v) in row.iter_mut().enumerate() {
                    *v = value(p + e, j0 + c);
                }
            }
            // SAFETY: 16 values each.
            pair.map(|row| unsafe { load16(row.as_ptr(), EDGE) })
        };
        // SAFETY: row `r` of each tile is 64 bytes inside it.
        ok &= unsafe { write_pair_row(x, parts, |part| tile(part).add(r * DEPTH)) };
    }
    ok
}

/// `len <= 16` f32 from `src`, zeros after them.
#[target_feature(enable = "avx512f")]
unsafe fn load16(src: *const f32, len: usize) -> __m512 {
    let mask = if len >= 16 { !0 } else { (1u16 << len) - 1 };
    // SAFETY: the caller vouches for `len` values at `src`; masked lanes are not read.
    unsafe { _mm512_maskz_loadu_ps(mask, src) }
}

/// `len <= 32` f32 from `src` in two vectors, zeros after them.
#[target_feature(enable = "avx512f")]
unsafe fn load32(src: *const f32, len: usize) -> [__m512; 2] {
    // SAFETY: as `load16`; the second load reads only values past the 16th.
    unsafe {
        [
            load16(src, len.min(16)),
            load16(src.wrapping_add(16), len.saturating_sub(16)),
        ]
    }
}

/// The three bf16 parts of 16 values, each in the top half of a 32-bit lane (the bottom
/// half zero), and which lanes are finite. Each part is its remainder rounded to 8
/// significant bits (nearest, ties to even), so `x = x0 + x1 + x2` exactly for normal
/// values (`x - x0` has at most 16 significant bits and `x - x0 - x1` at most 8), with
/// `|x1| <= 2^-8 |x|` and `|x2| <= 2^-16 |x|`. A value that would round up past the f32
/// range is truncated instead. Non-finite lanes carry `x` in `x0` (NaN made quiet).
#[target_feature(enable = "avx512f")]
fn split(x: __m512) -> ([__m512i; PARTS], __mmask16) {
    let top = _mm512_set1_epi32(0xffff_0000u32 as i32);
    let exponent = _mm512_set1_epi32(0x7f80_0000);
    let round = |bits: __m512i| {
        let odd = _mm512_and_si512(_mm512_srli_epi32::<16>(bits), _mm512_set1_epi32(1));
        let half = _mm512_add_epi32(_mm512_set1_epi32(0x7fff), odd);
        _mm512_and_si512(_mm512_add_epi32(bits, half), top)
    };
    let is_finite =
        |bits: __m512i| _mm512_cmpneq_epi32_mask(_mm512_and_si512(bits, exponent), exponent);
    let bits = _mm512_castps_si512(x);
    let finite = is_finite(bits);
    let nan = _mm512_cmp_ps_mask::<_CMP_UNORD_Q>(x, x);
    let rounded = round(bits);
    let x0 = _mm512_mask_mov_epi32(_mm512_and_si512(bits, top), is_finite(rounded), rounded);
    let x0 = _mm512_mask_mov_epi32(x0, nan, _mm512_set1_epi32(0x7fc0_0000));
    let r1 = _mm512_sub_ps(x, _mm512_castsi512_ps(x0));
    let x1 = round(_mm512_castps_si512(r1));
    let r2 = _mm512_sub_ps(r1, _mm512_castsi512_ps(x1));
    let x2 = _mm512_and_si512(_mm512_castps_si512(r2), top);
    let parts = [
        x0,
        _mm512_maskz_mov_epi32(finite, x1),
        _mm512_maskz_mov_epi32(finite, x2),
    ];
    (parts, finite)
}

/// The bf16 patterns of a part's 32 values `[lo, hi]`, in order: 64 bytes.
#[target_feature(enable = "avx512f")]
fn narrow(lo: __m512i, hi: __m512i) -> __m512i {
    let lo = _mm512_cvtepi32_epi16(_mm512_srli_epi32::<16>(lo));
    let hi = _mm512_cvtepi32_epi16(_mm512_srli_epi32::<16>(hi));
    _mm512_inserti64x4::<1>(_mm512_castsi256_si512(lo), hi)
}

/// Writes 32 values' parts as one 64-byte row of each part's tile (`dst(part)`).
/// Returns whether all were finite.
#[target_feature(enable = "avx512f")]
unsafe fn write_parts(x: [__m512; 2], dst: impl Fn(usize) -> *mut u16) -> bool {
    let ((lo, f0), (hi, f1)) = (split(x[0]), split(x[1]));
    for part in 0..PARTS {
        // SAFETY: the caller vouches for 64 writable bytes at `dst(part)`.
        unsafe { _mm512_storeu_si512(dst(part).cast(), narrow(lo[part], hi[part])) };
    }
    f0 & f1 == !0
}

/// Writes two depth rows of 16 columns (`x[0]` at depth `2r`, `x[1]` at `2r + 1`) as
/// row `r` of a B tile: column `c`'s pair at bf16 `2c` and `2c + 1`. Returns whether
/// all were finite.
#[target_feature(enable = "avx512f")]
unsafe fn write_pair_row(x: [__m512; 2], parts: usize, dst: impl Fn(usize) -> *mut u16) -> bool {
    let ((even, f0), (odd, f1)) = (split(x[0]), split(x[1]));
    for part in 0..parts {
        // The odd depth's bf16 is already in the top half of each lane.
        let row = _mm512_or_si512(_mm512_srli_epi32::<16>(even[part]), odd[part]);
        // SAFETY: the caller vouches for 64 writable bytes at `dst(part)`.
        unsafe { _mm512_storeu_si512(dst(part).cast(), row) };
    }
    f0 & f1 == !0
}

/// Writes one column's 32 depths (`x`) as column `c` of a B tile: depth pair `r` to the
/// 32-bit word at row `r`, column `c`. Returns whether all were finite.
#[target_feature(enable = "avx512f")]
unsafe fn scatter_column(
    x: [__m512; 2],
    c: usize,
    parts: usize,
    dst: impl Fn(usize) -> *mut u16,
) -> bool {
    let ((lo, f0), (hi, f1)) = (split(x[0]), split(x[1]));
    let rows = _mm512_mullo_epi32(
        _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15),
        _mm512_set1_epi32(EDGE as i32),
    );
    let index = _mm512_add_epi32(rows, _mm512_set1_epi32(c as i32));
    for part in 0..parts {
        // 32 bf16 in depth order are 16 words, each one depth pair.
        let pairs = narrow(lo[part], hi[part]);
        // SAFETY: the caller vouches for the tile (16 x 16 words) at `dst(part)`.
        unsafe { _mm512_i32scatter_epi32::<4>(dst(part).cast(), index, pairs) };
    }
    f0 & f1 == !0
}

/// Rows and columns of C per task, in pairs of tiles (32): all the rows whose packed A
/// fits [`A_BLOCK_VALUES`], and enough column blocks that every thread has a few tasks.
fn task_grid(m: usize, n: usize, k: usize, threads: usize) -> (usize, usize) {
    let (row_pairs, col_pairs) = (m.div_ceil(2 * EDGE), n.div_ceil(2 * EDGE));
    let per_block = (A_BLOCK_VALUES / (2 * EDGE * k.max(1))).max(1);
    let rows = row_pairs.div_ceil(row_pairs.div_ceil(per_block));
    let row_blocks = row_pairs.div_ceil(rows);
    let want = (4 * threads).div_ceil(row_blocks).min(col_pairs);
    let cols = col_pairs.div_ceil(want.max(1));
    (rows, cols)
}

/// Multiplies packed A by packed B (`b_parts` parts) into C (`m x n`, row-major).
///
/// # Safety
/// As [`gemm`]; `a` and `b` packed for this (m, n, k).
unsafe fn multiply(a: &Tiles, b: &Tiles, b_parts: usize, m: usize, n: usize, k: usize, c: OutPtr) {
    let kbs = k.div_ceil(DEPTH);
    let (row_pairs, col_pairs) = (m.div_ceil(2 * EDGE), n.div_ceil(2 * EDGE));
    let (rows, cols) = task_grid(m, n, k, spin::threads());
    let row_blocks = row_pairs.div_ceil(rows);
    let (ap, bp) = (
        OutPtr(a.ptr().cast_mut().cast()),
        OutPtr(b.ptr().cast_mut().cast()),
    );
    // Tasks run column block by column block, so the B tiles a task holds are shared
    // by the row blocks of A that stream past them.
    spin::for_each(row_blocks * col_pairs.div_ceil(cols), |task| {
        let (rb, cb) = (task % row_blocks, task / row_blocks);
        let ip = rb * rows..((rb + 1) * rows).min(row_pairs);
        let jp = cb * cols..((cb + 1) * cols).min(col_pairs);
        let mut spill = [0f32; 4 * EDGE * EDGE];
        // SAFETY: AMX is available; the tiles read lie in the packed buffers; each task
        // writes its own block of C.
        unsafe {
            configure_tiles();
            for j in jp {
                let bt = bp
                    .ptr()
                    .cast::<u16>()
                    .add(tile_at(2 * j, 0, 0, kbs, b_parts));
                for i in ip.clone() {
                    let at = ap.ptr().cast::<u16>().add(tile_at(2 * i, 0, 0, kbs, PARTS));
                    let (r0, c0) = (i * 2 * EDGE, j * 2 * EDGE);
                    let full = r0 + 2 * EDGE <= m && c0 + 2 * EDGE <= n;
                    let (dst, ld) = match full {
                        true => (c.ptr().add(r0 * n + c0), n),
                        false => (spill.as_mut_ptr(), 2 * EDGE),
                    };
                    block(kbs, b_parts, at, bt, dst, ld);
                    if !full {
                        for r in 0..(2 * EDGE).min(m - r0) {
                            let w = (2 * EDGE).min(n - c0);
                            let row = &spill[r * 2 * EDGE..][..w];
                            std::ptr::copy_nonoverlapping(
                                row.as_ptr(),
                                c.ptr().add((r0 + r) * n + c0),
                                w,
                            );
                        }
                    }
                }
            }
            asm!("tilerelease", options(nostack));
        }
    });
}

/// Sets every tile register to 16 rows of 64 bytes (palette 1).
///
/// # Safety
/// AMX must be available.
unsafe fn configure_tiles() {
    #[repr(C, align(64))]
    struct Config([u8; 64]);
    let mut cfg = Config([0; 64]);
    cfg.0[0] = 1;
    for t in 0..8 {
        cfg.0[16 + 2 * t] = 64; // bytes per row, u16 little-endian
        cfg.0[48 + t] = EDGE as u8;
    }
    // SAFETY: a valid palette-1 configuration.
    unsafe { asm!("ldtilecfg [{}]", in(reg) cfg.0.as_ptr(), options(nostack)) };
}

/// Runs the tile loads given (64-byte rows, `{s}`), then the four products of the 2 x 2
/// block: C tile (r, c) += A tile r (tmm4-5) x B tile c (tmm6-7).
macro_rules! products {
    ($($load:literal),+ ; $($operand:tt)*) => {
        asm!(
            $($load,)+
            "tdpbf16ps tmm0, tmm4, tmm6",
            "tdpbf16ps tmm1, tmm4, tmm7",
            "tdpbf16ps tmm2, tmm5, tmm6",
            "tdpbf16ps tmm3, tmm5, tmm7",
            $($operand)*,
            s = in(reg) 64usize,
            options(nostack),
        )
    };
}

/// One 32 x 32 block of C over the whole depth: `a` at its first row tile (the second
/// follows `kbs` depth blocks later), `b` likewise at its first column tile, B with
/// `b_parts` parts. Tiles: tmm0-3 accumulate C, tmm4-5 hold A's two row tiles, tmm6-7
/// B's two column tiles. Per depth block the part products (i, j), i + j <= 2, run as
/// (0,0) (0,1) (0,2) | (1,1) (1,0) | (2,0), so each tile load serves the next product
/// where it can (16 loads for 24 products; with fewer B parts, those with j beyond them
/// are left out). Between them, the next depth block's tiles are fetched into L1: a
/// tile register is reloaded only after the products reading it are done, so a load
/// from L2 would stall the unit (+8 to +17 % on the model's shapes, one thread).
///
/// # Safety
/// Tiles configured; the packed tiles read exist; `c` valid for the 32 x 32 block with
/// row stride `ldc`.
unsafe fn block(kbs: usize, b_parts: usize, a: *const u16, b: *const u16, c: *mut f32, ldc: usize) {
    let (a_second, b_second) = (kbs * PARTS * TILE, kbs * b_parts * TILE);
    let groups = [0, 3, 5, 6][b_parts];
    // Prefetches line group `g` (of `groups`) of the next depth block's four runs, and
    // moves on to the next group.
    let fetch_next = |a0: *const u16, b0: *const u16, g: &mut usize| {
        let runs = [(a0, a_second, PARTS), (b0, b_second, b_parts)];
        for (first, second, parts) in runs {
            let lines = parts * TILE * 2 / 64;
            for run in [first, first.wrapping_add(second)] {
                let next = run.wrapping_add(parts * TILE).cast::<i8>();
                for line in *g * lines / groups..(*g + 1) * lines / groups {
                    // A hint only: never faults, even past the end of the buffer.
                    _mm_prefetch::<_MM_HINT_T0>(next.wrapping_add(line * 64));
                }
            }
        }
        *g += 1;
    };
    // SAFETY: the caller's contract; tile rows are 64 bytes apart, parts 1 KiB apart.
    unsafe {
        asm!(
            "tilezero tmm0",
            "tilezero tmm1",
            "tilezero tmm2",
            "tilezero tmm3",
            options(nostack)
        );
        for kb in 0..kbs {
            let a0 = a.add(kb * PARTS * TILE);
            let b0 = b.add(kb * b_parts * TILE);
            let (a1, b1) = (a0.add(a_second), b0.add(b_second));
            let mut g = 0;
            // (0,0)
            products!(
                "tileloadd tmm4, [{a0} + {s}]",
                "tileloadd tmm5, [{a1} + {s}]",
                "tileloadd tmm6, [{b0} + {s}]",
                "tileloadd tmm7, [{b1} + {s}]";
                a0 = in(reg) a0, a1 = in(reg) a1, b0 = in(reg) b0, b1 = in(reg) b1
            );
            fetch_next(a0, b0, &mut g);
            if b_parts > 1 {
                // (0,1)
                products!(
                    "tileloadd tmm6, [{b0} + {s} + 1024]",
                    "tileloadd tmm7, [{b1} + {s} + 1024]";
                    b0 = in(reg) b0, b1 = in(reg) b1
                );
                fetch_next(a0, b0, &mut g);
            }
            if b_parts > 2 {
                // (0,2)
                products!(
                    "tileloadd tmm6, [{b0} + {s} + 2048]",
                    "tileloadd tmm7, [{b1} + {s} + 2048]";
                    b0 = in(reg) b0, b1 = in(reg) b1
                );
                fetch_next(a0, b0, &mut g);
            }
            if b_parts > 1 {
                // (1,1), then (1,0)
                products!(
                    "tileloadd tmm4, [{a0} + {s} + 1024]",
                    "tileloadd tmm5, [{a1} + {s} + 1024]",
                    "tileloadd tmm6, [{b0} + {s} + 1024]",
                    "tileloadd tmm7, [{b1} + {s} + 1024]";
                    a0 = in(reg) a0, a1 = in(reg) a1, b0 = in(reg) b0, b1 = in(reg) b1
                );
                fetch_next(a0, b0, &mut g);
                products!(
                    "tileloadd tmm6, [{b0} + {s}]",
                    "tileloadd tmm7, [{b1} + {s}]";
                    b0 = in(reg) b0, b1 = in(reg) b1
                );
            } else {
                // (1,0): B's part 0 is still in tmm6-7.
                products!(
                    "tileloadd tmm4, [{a0} + {s} + 1024]",
                    "tileloadd tmm5, [{a1} + {s} + 1024]";
                    a0 = in(reg) a0, a1 = in(reg) a1
                );
            }
            fetch_next(a0, b0, &mut g);
            // (2,0)
            products!(
                "tileloadd tmm4, [{a0} + {s} + 2048]",
                "tileloadd tmm5, [{a1} + {s} + 2048]";
                a0 = in(reg) a0, a1 = in(reg) a1
            );
            fetch_next(a0, b0, &mut g);
        }
        asm!(
            "tilestored [{c} + {s}], tmm0",
            "tilestored [{c1} + {s}], tmm1",
            "tilestored [{c2} + {s}], tmm2",
            "tilestored [{c3} + {s}], tmm3",
            c = in(reg) c,
            c1 = in(reg) c.add(EDGE),
            c2 = in(reg) c.add(EDGE * ldc),
            c3 = in(reg) c.add(EDGE * ldc + EDGE),
            s = in(reg) ldc * 4,
            options(nostack),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::super::gemm::{gemm_with, GemmJob, Isa, MatRef};
    use super::*;
    use crate::testutil::Rng;

    /// The parts of `x`, as f32.
    fn parts(x: f32) -> [f32; PARTS] {
        // SAFETY: only called where AMX (so AVX-512F) is available.
        unsafe { split(_mm512_set1_ps(x)) }
            .0
            .map(|p| f32::from_bits(unsafe { _mm512_cvtsi512_si32(p) } as u32))
    }

    /// Random values with full significands over a wide range of magnitudes.
    fn wide_values(rng: &mut Rng, n: usize) -> Vec<f32> {
        (0..n)
            .map(|_| rng.f32() * 2f32.powi((rng.next_u64() % 41) as i32 - 20))
            .collect()
    }

    /// A `rows x cols` matrix stored row by row, or column by column.
    fn mat(data: &[f32], rows: usize, cols: usize, by_column: bool) -> MatRef<'_> {
        let (rs, cs) = if by_column { (1, rows) } else { (cols, 1) };
        MatRef {
            data,
            rows,
            cols,
            rs,
            cs,
        }
    }

    fn job<'a>(a: MatRef<'a>, b: MatRef<'a>) -> GemmJob<'a> {
        GemmJob {
            a,
            b,
            bh: None,
            bp: None,
            c_offset: 0,
        }
    }

    /// The larger error, NaN winning (`f64::max` would drop it and pass a NaN result).
    fn worse(a: f64, b: f64) -> f64 {
        if b.is_nan() || b > a {
            b
        } else {
            a
        }
    }

    /// Tests need the hardware; a machine without it has nothing to test here. Under CI,
    /// a CPU that has AMX but did not get it (Linux refused the tile state) fails.
    fn skip() -> bool {
        if !available() {
            let refused = cpu_has_amx() && !switched_off();
            assert!(
                !(refused && std::env::var("CI").is_ok_and(|v| v == "true")),
                "the CPU has AMX-BF16 and AMX-TILE, but Linux refused the tile state"
            );
            eprintln!("skipped: no AMX on this CPU (or TOKIT_AMX=0, or tile state refused)");
        }
        !available()
    }

    #[test]
    fn parts_are_bf16_and_add_up_exactly() {
        if skip() {
            return;
        }
        let mut rng = Rng::new(5);
        let mut xs = wide_values(&mut rng, 20_000);
        xs.extend([0.0, -0.0, 1.0, f32::MAX, f32::MIN, 2f32.powi(-100), -3e-30]);
        xs.extend([1.0 + f32::EPSILON, 16_777_215.0, -0.1, std::f32::consts::PI]);
        for x in xs {
            let p = parts(x);
            assert!(p.iter().all(|v| v.to_bits() & 0xffff == 0), "{x}: {p:?}");
            let sum = p.iter().map(|&v| v as f64).sum::<f64>();
            assert_eq!(sum, x as f64, "{x:e}: {p:?}");
        }
        // The low parts of tiny values are subnormal and lost (AMX would drop them).
        for x in [f32::MIN_POSITIVE, 1e-40, -3e-39] {
            let sum = parts(x).iter().map(|&v| v as f64).sum::<f64>();
            assert!((sum - x as f64).abs() <= 2f64.powi(-133), "{x:e}");
        }
        let inf = parts(f32::INFINITY);
        assert_eq!(inf, [f32::INFINITY, 0.0, 0.0]);
        assert_eq!(parts(f32::NEG_INFINITY), [f32::NEG_INFINITY, 0.0, 0.0]);
        // A NaN whose payload lies only in the low bits stays NaN, not infinity.
        assert!(parts(f32::from_bits(0x7f80_0001))[0].is_nan());
        assert!(parts(f32::NAN)[0].is_nan());
    }

    /// Every product, with tails in all three dimensions and every operand layout, is
    /// as accurate as f32 arithmetic: its worst error (against f64 sums, relative to the
    /// sum of |a_ip b_pj|) is within four roundings of a sequential f32 dot product's.
    /// (Measured here: 0.9-1.1 times the sequential error from depth 64 up, 0.7-2.2
    /// times the blocked AVX-512 kernel's.)
    #[test]
    fn products_are_as_accurate_as_f32_dot_products() {
        if skip() {
            return;
        }
        let mut rng = Rng::new(11);
        let shapes = [
            (5, 1, 1),
            (5, 33, 17),
            (31, 64, 32),
            (37, 70, 50),
            (64, 576, 96),
            (100, 1000, 33),
            (130, 31, 190),
        ];
        for &(m, k, n) in &shapes {
            for (ta, tb) in [(false, false), (false, true), (true, false), (true, true)] {
                let (ad, bd) = (wide_values(&mut rng, m * k), wide_values(&mut rng, k * n));
                let (a, b) = (mat(&ad, m, k, ta), mat(&bd, k, n, tb));
                let job = job(a, b);
                let run = |isa| {
                    let mut c = vec![f32::NAN; m * n];
                    gemm_with(isa, true, &[job], m, n, k, &mut c);
                    c
                };
                let (amx, fma) = (run(Isa::Amx), run(Isa::Avx512));
                let (mut worst_amx, mut worst_fma, mut worst_seq) = (0f64, 0f64, 0f64);
                for i in 0..m {
                    for j in 0..n {
                        let (mut sum, mut scale) = (0f64, 0f64);
                        for p in 0..k {
                            let t = a.at(i, p) as f64 * b.at(p, j) as f64;
                            sum += t;
                            scale += t.abs();
                        }
                        let err = |c: &[f32]| (c[i * n + j] as f64 - sum).abs() / scale.max(1e-300);
                        worst_amx = worse(worst_amx, err(&amx));
                        worst_fma = worse(worst_fma, err(&fma));
                        let mut seq = 0f32;
                        for p in 0..k {
                            seq = a.at(i, p).mul_add(b.at(p, j), seq);
                        }
                        worst_seq = worse(worst_seq, (seq as f64 - sum).abs() / scale.max(1e-300));
                    }
                }
                // Within four roundings of a sequential f32 dot product on every shape.
                let u = 2f64.powi(-24);
                assert!(
                    worst_amx <= worst_seq + 4.0 * u,
                    "m{m} k{k} n{n} ta{ta} tb{tb}: AMX error {worst_amx:e}, sequential f32 \
                     {worst_seq:e}, FMA kernel {worst_fma:e}"
                );
            }
        }
    }

    /// A weight packed once gives the very numbers of packing B per call, and the
    /// packed copy answers only for its own shape.
    #[test]
    fn packed_weights_give_the_same_numbers() {
        if skip() {
            return;
        }
        let mut rng = Rng::new(3);
        let (m, k, n) = (40, 100, 70);
        let (ad, wd) = (rng.vec(m * k), rng.vec(n * k));
        let job = job(mat(&ad, m, k, false), mat(&wd, k, n, true));
        let packed = pack_weight(&job, k, n);
        let (mut once, mut per_call) = (vec![0f32; m * n], vec![0f32; m * n]);
        // SAFETY: AMX is available; the outputs hold m * n values.
        unsafe {
            gemm(&job, Some(&packed), m, n, k, once.as_mut_ptr());
            gemm(&job, None, m, n, k, per_call.as_mut_ptr());
        }
        assert_eq!(once, per_call);
    }

    /// With a half copy of B, the parts that are zero for every value (two for bf16,
    /// one for f16) are not multiplied: exact zeros, so the numbers are those of the
    /// same widened values given as f32.
    #[test]
    fn half_weights_skip_only_zero_products() {
        use crate::cpu::gemm::HalfRef;
        use crate::cpu::half::to_half;
        if skip() {
            return;
        }
        let mut rng = Rng::new(9);
        let (m, k, n) = (45, 200, 70);
        let ad = wide_values(&mut rng, m * k);
        for kind in [Half::Bf16, Half::F16] {
            let halves: Vec<u16> = rng.vec(n * k).iter().map(|&v| to_half(kind, v)).collect();
            let wide: Vec<f32> = halves.iter().map(|&h| from_half(kind, h)).collect();
            let a = mat(&ad, m, k, false);
            let plain = job(a, mat(&wide, k, n, true));
            let half = GemmJob {
                bh: Some(HalfRef {
                    kind,
                    data: &halves,
                }),
                ..plain
            };
            assert_eq!(b_parts(&half), [1, 2][(kind == Half::F16) as usize]);
            let (mut got, mut want) = (vec![0f32; m * n], vec![0f32; m * n]);
            // SAFETY: AMX is available; the outputs hold m * n values.
            unsafe {
                assert!(gemm(
                    &half,
                    Some(&pack_weight(&half, k, n)),
                    m,
                    n,
                    k,
                    got.as_mut_ptr()
                ));
                assert!(gemm(&plain, None, m, n, k, want.as_mut_ptr()));
            }
            assert_eq!(got, want, "{kind:?}");
        }
    }

    /// NaN and infinities reach the outputs they touch, and only those, as in IEEE f32
    /// (such products go to the FMA kernels).
    #[test]
    fn non_finite_values_propagate() {
        if skip() {
            return;
        }
        let (m, k, n) = (33, 40, 20);
        let mut ad = vec![0.5f32; m * k];
        ad[3 * k + 7] = f32::NAN;
        ad[20 * k + 39] = f32::INFINITY;
        let bd = vec![0.25f32; k * n];
        let job = job(mat(&ad, m, k, false), mat(&bd, k, n, false));
        let mut c = vec![0f32; m * n];
        gemm_with(Isa::Amx, true, &[job], m, n, k, &mut c);
        for (i, row) in c.chunks(n).enumerate() {
            for &v in row {
                match i {
                    3 => assert!(v.is_nan()),
                    20 => assert_eq!(v, f32::INFINITY),
                    _ => assert_eq!(v, 0.5 * 0.25 * k as f32),
                }
            }
        }
    }
}
