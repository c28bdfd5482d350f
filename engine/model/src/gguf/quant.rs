//! ggml tensor types and their conversion to f32.
//!
//! The block layouts follow ggml's `ggml-common.h` and the reference (scalar) dequantisation
//! in `ggml-quants.c`; every block is little-endian and packed without padding. Types ggml
//! knows but tokit cannot convert are still described (block size and bytes per block), so
//! that a file holding them can be opened, listed and size-checked; reading such a tensor is
//! an error that names the type.

use half::{bf16, f16};

/// The type of a tensor's data, as ggml numbers it (`enum ggml_type`).
#[allow(non_camel_case_types)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum GgmlType {
    F32,
    F16,
    Q4_0,
    Q4_1,
    Q5_0,
    Q5_1,
    Q8_0,
    Q8_1,
    Q2_K,
    Q3_K,
    Q4_K,
    Q5_K,
    Q6_K,
    Q8_K,
    IQ2_XXS,
    IQ2_XS,
    IQ3_XXS,
    IQ1_S,
    IQ4_NL,
    IQ3_S,
    IQ2_S,
    IQ4_XS,
    I8,
    I16,
    I32,
    I64,
    F64,
    IQ1_M,
    BF16,
    TQ1_0,
    TQ2_0,
    MXFP4,
    NVFP4,
    Q1_0,
    Q2_0,
}

/// (type, ggml id, name, values per block, bytes per block)
const TABLE: &[(GgmlType, u32, &str, usize, usize)] = &[
    (GgmlType::F32, 0, "F32", 1, 4),
    (GgmlType::F16, 1, "F16", 1, 2),
    (GgmlType::Q4_0, 2, "Q4_0", 32, 18),
    (GgmlType::Q4_1, 3, "Q4_1", 32, 20),
    (GgmlType::Q5_0, 6, "Q5_0", 32, 22),
    (GgmlType::Q5_1, 7, "Q5_1", 32, 24),
    (GgmlType::Q8_0, 8, "Q8_0", 32, 34),
    (GgmlType::Q8_1, 9, "Q8_1", 32, 36),
    (GgmlType::Q2_K, 10, "Q2_K", 256, 84),
    (GgmlType::Q3_K, 11, "Q3_K", 256, 110),
    (GgmlType::Q4_K, 12, "Q4_K", 256, 144),
    (GgmlType::Q5_K, 13, "Q5_K", 256, 176),
    (GgmlType::Q6_K, 14, "Q6_K", 256, 210),
    (GgmlType::Q8_K, 15, "Q8_K", 256, 292),
    (GgmlType::IQ2_XXS, 16, "IQ2_XXS", 256, 66),
    (GgmlType::IQ2_XS, 17, "IQ2_XS", 256, 74),
    (GgmlType::IQ3_XXS, 18, "IQ3_XXS", 256, 98),
    (GgmlType::IQ1_S, 19, "IQ1_S", 256, 50),
    (GgmlType::IQ4_NL, 20, "IQ4_NL", 32, 18),
    (GgmlType::IQ3_S, 21, "IQ3_S", 256, 110),
    (GgmlType::IQ2_S, 22, "IQ2_S", 256, 82),
    (GgmlType::IQ4_XS, 23, "IQ4_XS", 256, 136),
    (GgmlType::I8, 24, "I8", 1, 1),
    (GgmlType::I16, 25, "I16", 1, 2),
    (GgmlType::I32, 26, "I32", 1, 4),
    (GgmlType::I64, 27, "I64", 1, 8),
    (GgmlType::F64, 28, "F64", 1, 8),
    (GgmlType::IQ1_M, 29, "IQ1_M", 256, 56),
    (GgmlType::BF16, 30, "BF16", 1, 2),
    (GgmlType::TQ1_0, 34, "TQ1_0", 256, 54),
    (GgmlType::TQ2_0, 35, "TQ2_0", 256, 66),
    (GgmlType::MXFP4, 39, "MXFP4", 32, 17),
    (GgmlType::NVFP4, 40, "NVFP4", 64, 36),
    (GgmlType::Q1_0, 41, "Q1_0", 128, 18),
    (GgmlType::Q2_0, 42, "Q2_0", 64, 18),
];

/// The types [`dequantize`] converts, in the order they are listed in messages.
pub const SUPPORTED: &[GgmlType] = &[
    GgmlType::F32,
    GgmlType::F16,
    GgmlType::BF16,
    GgmlType::Q8_0,
    GgmlType::Q4_0,
    GgmlType::Q4_1,
    GgmlType::Q5_0,
    GgmlType::Q5_1,
    GgmlType::Q4_K,
    GgmlType::Q5_K,
    GgmlType::Q6_K,
];

impl GgmlType {
    fn row(self) -> &'static (GgmlType, u32, &'static str, usize, usize) {
        TABLE
            .iter()
            .find(|r| r.0 == self)
            .expect("every GgmlType is in TABLE")
    }

    /// The type with ggml's id `id`, if ggml (as of this code) has one.
    pub fn from_id(id: u32) -> Option<GgmlType> {
        TABLE.iter().find(|r| r.1 == id).map(|r| r.0)
    }

    /// ggml's id of the type.
    pub fn id(self) -> u32 {
        self.row().1
    }

    /// ggml's name of the type (`"Q4_K"`).
    pub fn name(self) -> &'static str {
        self.row().2
    }

    /// The number of values in one block (1 for plain types).
    pub fn block_size(self) -> usize {
        self.row().3
    }

    /// The number of bytes one block takes.
    pub fn block_bytes(self) -> usize {
        self.row().4
    }

    /// Whether [`dequantize`] converts this type.
    pub fn is_supported(self) -> bool {
        SUPPORTED.contains(&self)
    }

    /// The names of the supported types, for messages: `"F32, F16, ..."`.
    pub fn supported_list() -> String {
        SUPPORTED
            .iter()
            .map(|t| t.name())
            .collect::<Vec<_>>()
            .join(", ")
    }
}

impl std::fmt::Display for GgmlType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Converts `bytes`, holding whole blocks of type `ty`, to f32 values (`block_size` values per
/// block). The caller checks that `bytes` is a whole number of blocks; a type that is not
/// [supported](GgmlType::is_supported) gives `None`.
pub fn dequantize(ty: GgmlType, bytes: &[u8]) -> Option<Vec<f32>> {
    let bb = ty.block_bytes();
    debug_assert_eq!(bytes.len() % bb, 0);
    let n = bytes.len() / bb * ty.block_size();
    let mut out = vec![0f32; n];
    let step: fn(&[u8], &mut [f32]) = match ty {
        GgmlType::F32 => |b, y| y[0] = f32::from_le_bytes([b[0], b[1], b[2], b[3]]),
        GgmlType::F16 => |b, y| y[0] = half16(b, 0),
        GgmlType::BF16 => |b, y| y[0] = bf16::from_bits(u16::from_le_bytes([b[0], b[1]])).to_f32(),
        GgmlType::Q8_0 => block_q8_0,
        GgmlType::Q4_0 => block_q4_0,
        GgmlType::Q4_1 => block_q4_1,
        GgmlType::Q5_0 => block_q5_0,
        GgmlType::Q5_1 => block_q5_1,
        GgmlType::Q4_K => block_q4_k,
        GgmlType::Q5_K => block_q5_k,
        GgmlType::Q6_K => block_q6_k,
        _ => return None,
    };
    for (b, y) in bytes
        .chunks_exact(bb)
        .zip(out.chunks_exact_mut(ty.block_size()))
    {
        step(b, y);
    }
    Some(out)
}

/// The f16 at byte `at`, as f32.
fn half16(b: &[u8], at: usize) -> f32 {
    f16::from_bits(u16::from_le_bytes([b[at], b[at + 1]])).to_f32()
}

/// Q8_0: `d: f16`, then 32 signed bytes; value = q * d.
fn block_q8_0(b: &[u8], y: &mut [f32]) {
    let d = half16(b, 0);
    for (v, &q) in y.iter_mut().zip(&b[2..34]) {
        *v = f32::from(q as i8) * d;
    }
}

/// Q4_0: `d: f16`, then 16 bytes of nibbles. Byte j holds value j (low nibble) and value
/// j + 16 (high nibble); value = (nibble - 8) * d.
fn block_q4_0(b: &[u8], y: &mut [f32]) {
    let d = half16(b, 0);
    let qs = &b[2..18];
    for j in 0..16 {
        y[j] = f32::from(i16::from(qs[j] & 0x0f) - 8) * d;
        y[j + 16] = f32::from(i16::from(qs[j] >> 4) - 8) * d;
    }
}

/// Q4_1: `d: f16, m: f16`, then 16 bytes of nibbles laid out as in Q4_0;
/// value = nibble * d + m.
fn block_q4_1(b: &[u8], y: &mut [f32]) {
    let d = half16(b, 0);
    let m = half16(b, 2);
    let qs = &b[4..20];
    for j in 0..16 {
        y[j] = f32::from(qs[j] & 0x0f) * d + m;
        y[j + 16] = f32::from(qs[j] >> 4) * d + m;
    }
}

/// Q5_0: `d: f16`, `qh: u32` (bit j is the fifth bit of value j), then 16 bytes of nibbles as in
/// Q4_0; value = (nibble | fifth bit << 4) - 16, times d.
fn block_q5_0(b: &[u8], y: &mut [f32]) {
    let d = half16(b, 0);
    let qh = u32::from_le_bytes([b[2], b[3], b[4], b[5]]);
    let qs = &b[6..22];
    for j in 0..16 {
        let h0 = ((qh >> j) & 1) as u8;
        let h1 = ((qh >> (j + 16)) & 1) as u8;
        y[j] = f32::from(i16::from((qs[j] & 0x0f) | (h0 << 4)) - 16) * d;
        y[j + 16] = f32::from(i16::from((qs[j] >> 4) | (h1 << 4)) - 16) * d;
    }
}

/// Q5_1: `d: f16, m: f16`, `qh: u32`, then 16 bytes of nibbles as in Q5_0 (unsigned);
/// value = q * d + m.
fn block_q5_1(b: &[u8], y: &mut [f32]) {
    let d = half16(b, 0);
    let m = half16(b, 2);
    let qh = u32::from_le_bytes([b[4], b[5], b[6], b[7]]);
    let qs = &b[8..24];
    for j in 0..16 {
        let h0 = ((qh >> j) & 1) as u8;
        let h1 = ((qh >> (j + 16)) & 1) as u8;
        y[j] = f32::from((qs[j] & 0x0f) | (h0 << 4)) * d + m;
        y[j + 16] = f32::from((qs[j] >> 4) | (h1 << 4)) * d + m;
    }
}

/// The 6-bit scale and min of sub-block `j` (0..8) of a Q4_K/Q5_K super-block, packed in 12
/// bytes: sub-blocks 0-3 keep theirs in the low 6 bits of bytes j (scale) and j + 4 (min);
/// sub-blocks 4-7 keep the low 4 bits in byte j + 4 (scale low nibble, min high nibble) and
/// the top 2 bits in the top bits of bytes j - 4 (scale) and j (min).
fn scale_min_k4(j: usize, q: &[u8]) -> (u8, u8) {
    if j < 4 {
        (q[j] & 63, q[j + 4] & 63)
    } else {
        (
            (q[j + 4] & 0x0f) | ((q[j - 4] >> 6) << 4),
            (q[j + 4] >> 4) | ((q[j] >> 6) << 4),
        )
    }
}

/// Q4_K: `d: f16, dmin: f16`, 12 bytes of packed 6-bit scales and mins (8 sub-blocks of 32),
/// then 128 bytes of nibbles. Each 64 values take 32 bytes: the low nibbles are the first
/// sub-block, the high nibbles the second; value = d * scale * q - dmin * min.
fn block_q4_k(b: &[u8], y: &mut [f32]) {
    let d = half16(b, 0);
    let dmin = half16(b, 2);
    let scales = &b[4..16];
    let qs = &b[16..144];
    for c in 0..4 {
        let (s1, m1) = scale_min_k4(2 * c, scales);
        let (s2, m2) = scale_min_k4(2 * c + 1, scales);
        let (d1, m1) = (d * f32::from(s1), dmin * f32::from(m1));
        let (d2, m2) = (d * f32::from(s2), dmin * f32::from(m2));
        let q = &qs[32 * c..32 * c + 32];
        let out = &mut y[64 * c..64 * c + 64];
        for l in 0..32 {
            out[l] = d1 * f32::from(q[l] & 0x0f) - m1;
            out[l + 32] = d2 * f32::from(q[l] >> 4) - m2;
        }
    }
}

/// Q5_K: as Q4_K, with 32 bytes `qh` of fifth bits between the scales and the nibbles: for
/// the c-th 64 values, bit 2c of `qh[l]` belongs to value l (low nibbles) and bit 2c + 1 to
/// value l + 32 (high nibbles).
fn block_q5_k(b: &[u8], y: &mut [f32]) {
    let d = half16(b, 0);
    let dmin = half16(b, 2);
    let scales = &b[4..16];
    let qh = &b[16..48];
    let qs = &b[48..176];
    for c in 0..4 {
        let (s1, m1) = scale_min_k4(2 * c, scales);
        let (s2, m2) = scale_min_k4(2 * c + 1, scales);
        let (d1, m1) = (d * f32::from(s1), dmin * f32::from(m1));
        let (d2, m2) = (d * f32::from(s2), dmin * f32::from(m2));
        let (u1, u2) = (1u8 << (2 * c), 2u8 << (2 * c));
        let q = &qs[32 * c..32 * c + 32];
        let out = &mut y[64 * c..64 * c + 64];
        for l in 0..32 {
            let h1 = if qh[l] & u1 != 0 { 16 } else { 0 };
            let h2 = if qh[l] & u2 != 0 { 16 } else { 0 };
            out[l] = d1 * f32::from((q[l] & 0x0f) + h1) - m1;
            out[l + 32] = d2 * f32::from((q[l] >> 4) + h2) - m2;
        }
    }
}

/// Q6_K: 128 bytes `ql` (low 4 bits), 64 bytes `qh` (high 2 bits), 16 signed 8-bit scales (one
/// per 16 values), then `d: f16`. Each half of 128 values uses 64 bytes of `ql`, 32 of `qh` and
/// 8 scales: for l in 0..32, values l, l + 32, l + 64, l + 96 take the low nibbles of
/// `ql[l]`, `ql[l + 32]`, then their high nibbles, with bit pairs 0-1, 2-3, 4-5, 6-7 of
/// `qh[l]` on top; value = d * scale * (q - 32), scale index = l / 16 + 0, 2, 4, 6.
fn block_q6_k(b: &[u8], y: &mut [f32]) {
    let d = half16(b, 208);
    for half in 0..2 {
        let ql = &b[64 * half..64 * half + 64];
        let qh = &b[128 + 32 * half..128 + 32 * half + 32];
        let sc = &b[192 + 8 * half..192 + 8 * half + 8];
        let out = &mut y[128 * half..128 * half + 128];
        for l in 0..32 {
            let is = l / 16;
            let q1 = ((ql[l] & 0x0f) | ((qh[l] & 3) << 4)) as i8 - 32;
            let q2 = ((ql[l + 32] & 0x0f) | (((qh[l] >> 2) & 3) << 4)) as i8 - 32;
            let q3 = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) as i8 - 32;
            let q4 = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) as i8 - 32;
            let s = |k: usize| d * f32::from(sc[is + k] as i8);
            out[l] = s(0) * f32::from(q1);
            out[l + 32] = s(2) * f32::from(q2);
            out[l + 64] = s(4) * f32::from(q3);
            out[l + 96] = s(6) * f32::from(q4);
        }
    }
}

#[cfg(test)]
mod tests {
    //! Hand-made blocks with values worked out by hand from the layouts above. Scales are
    //! chosen exactly representable in f16 (0.5 = 0x3800, 0.25 = 0x3400, 1.0 = 0x3c00,
    //! 2.0 = 0x4000, -1.0 = 0xbc00) so every expected value is exact.
    use super::*;

    const H_HALF: [u8; 2] = 0x3800u16.to_le_bytes();
    const H_QUARTER: [u8; 2] = 0x3400u16.to_le_bytes();
    const H_ONE: [u8; 2] = 0x3c00u16.to_le_bytes();
    const H_TWO: [u8; 2] = 0x4000u16.to_le_bytes();
    const H_MINUS_ONE: [u8; 2] = 0xbc00u16.to_le_bytes();

    fn deq(ty: GgmlType, bytes: &[u8]) -> Vec<f32> {
        assert_eq!(bytes.len() % ty.block_bytes(), 0, "{ty}: whole blocks");
        dequantize(ty, bytes).unwrap()
    }

    #[test]
    fn table_is_consistent() {
        for &(ty, id, name, bs, bb) in TABLE {
            assert_eq!(GgmlType::from_id(id), Some(ty));
            assert_eq!(ty.id(), id);
            assert_eq!(ty.name(), name);
            assert_eq!(ty.to_string(), name);
            assert!(bs >= 1 && bb >= 1);
        }
        assert_eq!(GgmlType::from_id(4), None); // Q4_2, removed
        assert_eq!(GgmlType::from_id(31), None); // Q4_0_4_4, removed from files
        assert_eq!(GgmlType::from_id(1000), None);
        assert!(GgmlType::Q6_K.is_supported());
        assert!(!GgmlType::Q3_K.is_supported());
        assert_eq!(dequantize(GgmlType::Q3_K, &[0; 110]), None);
        assert!(GgmlType::supported_list().starts_with("F32, F16, BF16, Q8_0"));
    }

    #[test]
    fn plain_floats() {
        let mut b = Vec::new();
        for v in [1.5f32, -2.25, 0.0] {
            b.extend_from_slice(&v.to_le_bytes());
        }
        assert_eq!(deq(GgmlType::F32, &b), vec![1.5, -2.25, 0.0]);
        // f16: 0x3e00 = 1.5, 0xc080 = -2.25, 0x0001 = 2^-24 (subnormal)
        let b: Vec<u8> = [0x3e00u16, 0xc080, 0x0001]
            .iter()
            .flat_map(|h| h.to_le_bytes())
            .collect();
        assert_eq!(deq(GgmlType::F16, &b), vec![1.5, -2.25, 2f32.powi(-24)]);
        // bf16 is the top half of an f32: 0x3fc0 = 1.5, 0xc010 = -2.25
        let b: Vec<u8> = [0x3fc0u16, 0xc010]
            .iter()
            .flat_map(|h| h.to_le_bytes())
            .collect();
        assert_eq!(deq(GgmlType::BF16, &b), vec![1.5, -2.25]);
    }

    #[test]
    fn q8_0() {
        let mut b = H_HALF.to_vec();
        // q_j = j - 16 for j in 0..32: -16 .. 15
        b.extend((0..32).map(|j: i32| (j - 16) as i8 as u8));
        let y = deq(GgmlType::Q8_0, &b);
        let want: Vec<f32> = (0..32).map(|j| (j - 16) as f32 * 0.5).collect();
        assert_eq!(y, want);
        assert_eq!(y[0], -8.0);
        assert_eq!(y[31], 7.5);
        // two blocks, the second with d = -1 and q = 127 everywhere
        let mut b2 = b.clone();
        b2.extend_from_slice(&H_MINUS_ONE);
        b2.extend([127u8; 32]);
        let y2 = deq(GgmlType::Q8_0, &b2);
        assert_eq!(y2.len(), 64);
        assert_eq!(&y2[..32], &want[..]);
        assert!(y2[32..].iter().all(|&v| v == -127.0));
    }

    #[test]
    fn q4_0() {
        let mut b = H_TWO.to_vec();
        // byte j: low nibble j (value j), high nibble 15 - j (value j + 16)
        b.extend((0..16u8).map(|j| j | ((15 - j) << 4)));
        let y = deq(GgmlType::Q4_0, &b);
        for j in 0..16 {
            assert_eq!(y[j], (j as f32 - 8.0) * 2.0, "value {j}");
            assert_eq!(y[j + 16], ((15 - j) as f32 - 8.0) * 2.0, "value {}", j + 16);
        }
        assert_eq!(y[0], -16.0);
        assert_eq!(y[15], 14.0);
        assert_eq!(y[16], 14.0);
        assert_eq!(y[31], -16.0);
    }

    #[test]
    fn q4_1() {
        let mut b = H_HALF.to_vec();
        b.extend_from_slice(&H_MINUS_ONE); // m = -1
        b.extend((0..16u8).map(|j| j | ((15 - j) << 4)));
        let y = deq(GgmlType::Q4_1, &b);
        for j in 0..16 {
            assert_eq!(y[j], j as f32 * 0.5 - 1.0);
            assert_eq!(y[j + 16], (15 - j) as f32 * 0.5 - 1.0);
        }
        assert_eq!(y[0], -1.0);
        assert_eq!(y[15], 6.5);
        assert_eq!(y[16], 6.5);
    }

    #[test]
    fn q5_0() {
        let mut b = H_ONE.to_vec();
        // fifth bits: value 1 (bit 1) and value 17 (bit 17) and value 31 (bit 31)
        let qh: u32 = (1 << 1) | (1 << 17) | (1 << 31);
        b.extend_from_slice(&qh.to_le_bytes());
        b.extend([3u8 | (5 << 4); 16]);
        let y = deq(GgmlType::Q5_0, &b);
        // low values: 3 - 16 = -13, or with the fifth bit 19 - 16 = 3
        // high values: 5 - 16 = -11, or 21 - 16 = 5
        for j in 0..16 {
            let lo = if j == 1 { 3.0 } else { -13.0 };
            let hi = if j == 1 || j == 15 { 5.0 } else { -11.0 };
            assert_eq!(y[j], lo, "value {j}");
            assert_eq!(y[j + 16], hi, "value {}", j + 16);
        }
    }

    #[test]
    fn q5_1() {
        let mut b = H_QUARTER.to_vec();
        b.extend_from_slice(&H_TWO); // m = 2
        let qh: u32 = 1 | (1 << 16);
        b.extend_from_slice(&qh.to_le_bytes());
        b.extend([0xf0u8; 16]); // low nibble 0, high nibble 15
        let y = deq(GgmlType::Q5_1, &b);
        assert_eq!(y[0], 16.0 * 0.25 + 2.0); // 0 | 16
        assert_eq!(y[1], 2.0);
        assert_eq!(y[16], 31.0 * 0.25 + 2.0); // 15 | 16
        assert_eq!(y[17], 15.0 * 0.25 + 2.0);
    }

    /// 12 bytes packing 8 six-bit scales and mins the way `scale_min_k4` unpacks them.
    fn pack_k4(sc: [u8; 8], mn: [u8; 8]) -> [u8; 12] {
        let mut q = [0u8; 12];
        for j in 0..4 {
            q[j] = sc[j] | ((sc[j + 4] >> 4) << 6);
            q[j + 4] = mn[j] | ((mn[j + 4] >> 4) << 6);
            q[j + 8] = (sc[j + 4] & 0x0f) | ((mn[j + 4] & 0x0f) << 4);
        }
        q
    }

    #[test]
    fn k4_scale_packing() {
        let sc = [1, 2, 63, 0, 17, 33, 48, 63];
        let mn = [5, 0, 7, 62, 60, 1, 31, 16];
        let q = pack_k4(sc, mn);
        for j in 0..8 {
            assert_eq!(scale_min_k4(j, &q), (sc[j], mn[j]), "sub-block {j}");
        }
        // one case worked out bit by bit: sub-block 4 has scale 17 = 0b01_0001 and min
        // 60 = 0b11_1100: byte 8 = 0b1100_0001, byte 0 top bits 01, byte 4 top bits 11
        assert_eq!(q[8], 0b1100_0001);
        assert_eq!(q[0] >> 6, 0b01);
        assert_eq!(q[4] >> 6, 0b11);
    }

    #[test]
    fn q4_k() {
        // d = 0.5, dmin = 0.25; sub-block s has scale s + 1 and min 2 * s
        let sc = [1, 2, 3, 4, 5, 6, 7, 8];
        let mn = [0, 2, 4, 6, 8, 10, 12, 14];
        let mut b = H_HALF.to_vec();
        b.extend_from_slice(&H_QUARTER);
        b.extend_from_slice(&pack_k4(sc, mn));
        // 128 bytes of nibbles: byte 32c + l has low nibble l % 16 and high nibble 15 - l % 16
        for _c in 0..4 {
            b.extend((0..32u8).map(|l| (l % 16) | ((15 - l % 16) << 4)));
        }
        assert_eq!(b.len(), 144);
        let y = deq(GgmlType::Q4_K, &b);
        assert_eq!(y.len(), 256);
        for c in 0..4 {
            for l in 0..32 {
                let (s1, m1) = (sc[2 * c] as f32, mn[2 * c] as f32);
                let (s2, m2) = (sc[2 * c + 1] as f32, mn[2 * c + 1] as f32);
                let q_lo = (l % 16) as f32;
                let q_hi = (15 - l % 16) as f32;
                assert_eq!(y[64 * c + l], 0.5 * s1 * q_lo - 0.25 * m1);
                assert_eq!(y[64 * c + 32 + l], 0.5 * s2 * q_hi - 0.25 * m2);
            }
        }
        // spot values: value 0 = 0.5*1*0 - 0 = 0; value 47 (sub-block 1, l = 15, q = 0) =
        // -0.25*2 = -0.5; value 255 (sub-block 7, l = 31, q = 0) = -0.25*14 = -3.5;
        // value 207 (sub-block 6, l = 15, q = 15) = 0.5*7*15 - 0.25*12 = 49.5
        assert_eq!(y[0], 0.0);
        assert_eq!(y[47], -0.5);
        assert_eq!(y[255], -3.5);
        assert_eq!(y[207], 49.5);
    }

    #[test]
    fn q5_k() {
        // d = 1, dmin = 0.5; every sub-block scale 1, min 2 (so value = q - 1)
        let mut b = H_ONE.to_vec();
        b.extend_from_slice(&H_HALF);
        b.extend_from_slice(&pack_k4([1; 8], [2; 8]));
        // qh[l]: bit 0 for l == 0 (value 0), bit 3 for l == 5 (value 64 + 32 + 5 = 101),
        // bit 7 for l == 31 (value 192 + 32 + 31 = 255)
        let mut qh = [0u8; 32];
        qh[0] = 1;
        qh[5] = 1 << 3;
        qh[31] = 1 << 7;
        b.extend_from_slice(&qh);
        b.extend([0x72u8; 128]); // low nibble 2, high nibble 7
        let y = deq(GgmlType::Q5_K, &b);
        for (i, &v) in y.iter().enumerate() {
            let high = (i % 64) >= 32;
            let mut q = if high { 7.0 } else { 2.0 };
            if i == 0 || i == 101 || i == 255 {
                q += 16.0;
            }
            assert_eq!(v, q - 1.0, "value {i}");
        }
    }

    #[test]
    fn q6_k() {
        // d = 0.5; scales[k] = k - 8 (signed); every ql byte 0x31 (low 1, high 3); qh[l] = 0b10_01_00_11
        // so the four values at l get high bits 3, 0, 1, 2: q1 = 1 | 3<<4 = 49, q2 = 1,
        // q3 = 3 | 1<<4 = 19, q4 = 3 | 2<<4 = 35; minus 32: 17, -31, -13, 3.
        let mut b = vec![0x31u8; 128];
        b.extend([0b1001_0011u8; 64]);
        b.extend((0..16).map(|k: i32| (k - 8) as i8 as u8));
        b.extend_from_slice(&H_HALF);
        assert_eq!(b.len(), 210);
        let y = deq(GgmlType::Q6_K, &b);
        let qs = [17.0f32, -31.0, -13.0, 3.0];
        for half in 0..2 {
            for l in 0..32 {
                for (k, &q) in qs.iter().enumerate() {
                    let scale = (8 * half + l / 16 + 2 * k) as f32 - 8.0;
                    assert_eq!(y[128 * half + 32 * k + l], 0.5 * scale * q);
                }
            }
        }
        // spot values: value 0 = 0.5 * (0 - 8) * 17 = -68; value 255 (half 1, k = 3, l = 31,
        // scale index 8 + 1 + 6 = 15 -> 7) = 0.5 * 7 * 3 = 10.5
        assert_eq!(y[0], -68.0);
        assert_eq!(y[255], 10.5);
    }

    #[test]
    fn q6_k_distinct_nibbles() {
        // Checks which ql byte and which nibble each value reads: ql[i] = i % 16 | (15 - i % 16) << 4
        // with qh = 0 and every scale 1, d = 1.
        let mut b: Vec<u8> = (0..128u8)
            .map(|i| (i % 16) | ((15 - i % 16) << 4))
            .collect();
        b.extend([0u8; 64]);
        b.extend([1u8; 16]);
        b.extend_from_slice(&H_ONE);
        let y = deq(GgmlType::Q6_K, &b);
        for half in 0..2 {
            for l in 0..32 {
                let lo0 = ((64 * half + l) % 16) as f32;
                let lo1 = ((64 * half + l + 32) % 16) as f32;
                assert_eq!(y[128 * half + l], lo0 - 32.0);
                assert_eq!(y[128 * half + l + 32], lo1 - 32.0);
                assert_eq!(y[128 * half + l + 64], 15.0 - lo0 - 32.0);
                assert_eq!(y[128 * half + l + 96], 15.0 - lo1 - 32.0);
            }
        }
    }
}
