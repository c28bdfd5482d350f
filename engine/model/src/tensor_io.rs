//! Tensors from and to data files: NumPy `.npy`, `.safetensors` and numeric `.csv`, read as
//! tokit's f32 [`Tensor`]s; `.npy` and `.safetensors` written atomically. The CLI
//! (`--input NAME=FILE`) and the Rhai functions `load_tensor`/`save_tensor` both use it
//! (README.md, "Bulk data").
//!
//! Conversion to f32 never loses information silently:
//! - f16, f32 and integers that f32 holds exactly are copied;
//! - integers beyond ±2^24 that f32 cannot hold exactly are refused, naming the file, dtype,
//!   shape and element;
//! - f64 is rounded to the nearest f32 (documented), and a finite f64 beyond f32's range is
//!   refused rather than turned into an infinity.
//!
//! `.npy` (format versions 1, 2 and 3; little- or big-endian; C order only) is parsed here: the
//! header is a small Python dict literal, and the crates that parse it in general (`npyz`)
//! bring a Python-literal parser and big-integer arithmetic along for it.
//! CSV: comma-separated numbers, an optional header row (a first row with any non-numeric
//! field), every row the same number of columns; errors name the line and column.

use std::path::Path;

use anyhow::{anyhow, bail, ensure, Context, Result};
use half::{bf16, f16};
use safetensors::{Dtype, SafeTensors};
use tokit_compute::Tensor;

/// The element types the readers accept.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Elem {
    Bool,
    U8,
    U16,
    U32,
    U64,
    I8,
    I16,
    I32,
    I64,
    F16,
    Bf16,
    F32,
    F64,
}

impl Elem {
    fn width(self) -> usize {
        match self {
            Elem::Bool | Elem::U8 | Elem::I8 => 1,
            Elem::U16 | Elem::I16 | Elem::F16 | Elem::Bf16 => 2,
            Elem::U32 | Elem::I32 | Elem::F32 => 4,
            Elem::U64 | Elem::I64 | Elem::F64 => 8,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Elem::Bool => "bool",
            Elem::U8 => "uint8",
            Elem::U16 => "uint16",
            Elem::U32 => "uint32",
            Elem::U64 => "uint64",
            Elem::I8 => "int8",
            Elem::I16 => "int16",
            Elem::I32 => "int32",
            Elem::I64 => "int64",
            Elem::F16 => "float16",
            Elem::Bf16 => "bfloat16",
            Elem::F32 => "float32",
            Elem::F64 => "float64",
        }
    }
}

/// `[i, j, k]` of the flat index `i` in a C-ordered `shape`.
fn unravel(mut i: usize, shape: &[usize]) -> String {
    if shape.len() <= 1 {
        return format!("[{i}]");
    }
    let mut idx = vec![0; shape.len()];
    for (d, &n) in shape.iter().enumerate().rev() {
        if n > 0 {
            idx[d] = i % n;
            i /= n;
        }
    }
    format!("{idx:?}")
}

/// An integer as f32, when f32 holds it exactly.
fn exact_int(v: i128) -> Option<f32> {
    let f = v as f32;
    (f as i128 == v && f.is_finite()).then_some(f)
}

/// Raw element bytes as f32 (see the module docs for what is refused). `what` names the
/// file (and tensor) in errors.
fn to_f32(bytes: &[u8], elem: Elem, big: bool, shape: &[usize], what: &str) -> Result<Vec<f32>> {
    let w = elem.width();
    let n: usize = shape.iter().product();
    debug_assert_eq!(bytes.len(), n * w);
    let mut out = Vec::with_capacity(n);
    let word = |c: &[u8]| -> u64 {
        let mut b = [0u8; 8];
        if big {
            for (k, &x) in c.iter().rev().enumerate() {
                b[k] = x;
            }
        } else {
            b[..c.len()].copy_from_slice(c);
        }
        u64::from_le_bytes(b)
    };
    let inexact = |i: usize, v: &dyn std::fmt::Display| {
        anyhow!(
            "{what}: {} element {} = {v} (of shape {shape:?}) is not exactly representable \
             in f32 (integers beyond ±2^24 lose digits); tokit's tensors are f32",
            elem.name(),
            unravel(i, shape)
        )
    };
    for (i, c) in bytes.chunks_exact(w).enumerate() {
        let u = word(c);
        let f = match elem {
            Elem::Bool => match u {
                0 => 0.0,
                1 => 1.0,
                _ => bail!(
                    "{what}: bool element {} holds the byte {u}, not 0 or 1 (corrupt file)",
                    unravel(i, shape)
                ),
            },
            Elem::U8 | Elem::U16 => u as f32,
            Elem::I8 => u as u8 as i8 as f32,
            Elem::I16 => u as u16 as i16 as f32,
            Elem::U32 | Elem::U64 => exact_int(u as i128).ok_or_else(|| inexact(i, &u))?,
            Elem::I32 => {
                let v = u as u32 as i32;
                exact_int(v as i128).ok_or_else(|| inexact(i, &v))?
            }
            Elem::I64 => {
                let v = u as i64;
                exact_int(v as i128).ok_or_else(|| inexact(i, &v))?
            }
            Elem::F16 => f16::from_bits(u as u16).to_f32(),
            Elem::Bf16 => bf16::from_bits(u as u16).to_f32(),
            Elem::F32 => f32::from_bits(u as u32),
            Elem::F64 => {
                let v = f64::from_bits(u);
                let f = v as f32;
                if v.is_finite() && !f.is_finite() {
                    bail!(
                        "{what}: float64 element {} = {v:e} (of shape {shape:?}) is beyond \
                         f32's range (±3.4e38); tokit's tensors are f32",
                        unravel(i, shape)
                    );
                }
                f
            }
        };
        out.push(f);
    }
    Ok(out)
}

/// The number of elements of `shape`, refusing products that overflow.
fn numel(shape: &[usize], what: &str) -> Result<usize> {
    shape
        .iter()
        .try_fold(1usize, |a, &d| a.checked_mul(d))
        .ok_or_else(|| anyhow!("{what}: shape {shape:?} has more elements than memory can hold"))
}

// ---------------------------------------------------------------------------------------
// .npy

const NPY_MAGIC: &[u8] = b"\x93NUMPY";

/// A parsed `.npy` header.
#[derive(Debug, PartialEq)]
struct NpyHeader {
    descr: String,
    fortran: bool,
    shape: Vec<usize>,
}

/// A cursor over the header's dict literal (`{'descr': '<f4', 'fortran_order': False,
/// 'shape': (3, 4), }`).
struct Lit<'a> {
    s: &'a [u8],
    i: usize,
}

impl Lit<'_> {
    fn ws(&mut self) {
        while self.i < self.s.len() && self.s[self.i].is_ascii_whitespace() {
            self.i += 1;
        }
    }
    fn eat(&mut self, c: u8) -> bool {
        self.ws();
        if self.s.get(self.i) == Some(&c) {
            self.i += 1;
            true
        } else {
            false
        }
    }
    fn string(&mut self) -> Option<String> {
        self.ws();
        let q = *self.s.get(self.i)?;
        if q != b'\'' && q != b'"' {
            return None;
        }
        let start = self.i + 1;
        let end = start + self.s[start..].iter().position(|&c| c == q)?;
        self.i = end + 1;
        Some(String::from_utf8_lossy(&self.s[start..end]).into_owned())
    }
    fn word(&mut self) -> &[u8] {
        self.ws();
        let start = self.i;
        while self.i < self.s.len() && (self.s[self.i].is_ascii_alphanumeric()) {
            self.i += 1;
        }
        &self.s[start..self.i]
    }
}

fn parse_npy_header(h: &[u8]) -> std::result::Result<NpyHeader, String> {
    let mut p = Lit { s: h, i: 0 };
    if !p.eat(b'{') {
        return Err("header is not a dict literal".into());
    }
    let (mut descr, mut fortran, mut shape) = (None, None, None);
    loop {
        if p.eat(b'}') {
            break;
        }
        let key = p.string().ok_or("expected a quoted key in the header")?;
        if !p.eat(b':') {
            return Err(format!("expected `:` after '{key}' in the header"));
        }
        match key.as_str() {
            "descr" => {
                descr = Some(p.string().ok_or(
                    "'descr' is not a type string (structured dtypes are not supported: save \
                     one plain numeric array per file)",
                )?)
            }
            "fortran_order" => {
                fortran = Some(match p.word() {
                    b"True" => true,
                    b"False" => false,
                    _ => return Err("'fortran_order' is neither True nor False".into()),
                })
            }
            "shape" => {
                if !p.eat(b'(') {
                    return Err("'shape' is not a tuple".into());
                }
                let mut dims = Vec::new();
                loop {
                    if p.eat(b')') {
                        break;
                    }
                    let w = p.word();
                    // Python 2 wrote long integers as `3L`.
                    let w = w.strip_suffix(b"L").unwrap_or(w);
                    let d = std::str::from_utf8(w)
                        .ok()
                        .and_then(|s| s.parse::<usize>().ok())
                        .ok_or("'shape' holds something other than non-negative integers")?;
                    dims.push(d);
                    if !p.eat(b',') {
                        if !p.eat(b')') {
                            return Err("'shape' tuple is not closed".into());
                        }
                        break;
                    }
                }
                shape = Some(dims);
            }
            other => return Err(format!("unknown header key '{other}'")),
        }
        if !p.eat(b',') {
            if !p.eat(b'}') {
                return Err("header dict is not closed".into());
            }
            break;
        }
    }
    Ok(NpyHeader {
        descr: descr.ok_or("header has no 'descr'")?,
        fortran: fortran.ok_or("header has no 'fortran_order'")?,
        shape: shape.ok_or("header has no 'shape'")?,
    })
}

/// The element type and byte order of an npy type string (`<f4`, `>i8`, `|u1`, ...).
fn npy_elem(descr: &str) -> Option<(Elem, bool)> {
    let (order, code) = descr.split_at_checked(1)?;
    let big = match order {
        "<" | "|" | "=" => false,
        ">" => true,
        _ => return None,
    };
    let elem = match code {
        "b1" | "?" => Elem::Bool,
        "u1" | "B" => Elem::U8,
        "u2" => Elem::U16,
        "u4" => Elem::U32,
        "u8" => Elem::U64,
        "i1" | "b" => Elem::I8,
        "i2" => Elem::I16,
        "i4" => Elem::I32,
        "i8" => Elem::I64,
        "f2" => Elem::F16,
        "f4" => Elem::F32,
        "f8" => Elem::F64,
        _ => return None,
    };
    Some((elem, big))
}

/// A tensor from the bytes of a `.npy` file; `what` names the file in errors.
pub fn parse_npy(bytes: &[u8], what: &str) -> Result<Tensor> {
    let bad = |m: &str| anyhow!("{what}: not a valid .npy file: {m}");
    if bytes.len() < 10 || !bytes.starts_with(NPY_MAGIC) {
        return Err(bad("it does not start with the \\x93NUMPY magic"));
    }
    let major = bytes[6];
    let (len, start) = match major {
        1 => (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10usize),
        2 | 3 => {
            ensure!(bytes.len() >= 12, bad("truncated header length"));
            (
                u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize,
                12,
            )
        }
        v => bail!("{what}: .npy format version {v} is not supported (1, 2 and 3 are)"),
    };
    let header = bytes
        .get(start..start.saturating_add(len))
        .ok_or_else(|| bad("the header is truncated"))?;
    let h = parse_npy_header(header).map_err(|m| bad(&m))?;
    let (elem, big) = npy_elem(&h.descr).ok_or_else(|| {
        anyhow!(
            "{what}: dtype '{}' is not supported (bool, int8–64, uint8–64, float16/32/64 are)",
            h.descr
        )
    })?;
    if h.fortran && h.shape.iter().filter(|&&d| d > 1).count() > 1 {
        bail!(
            "{what}: the array (dtype {}, shape {:?}) is stored in Fortran order; save it in C \
             order (numpy.ascontiguousarray) and try again",
            elem.name(),
            h.shape
        );
    }
    let n = numel(&h.shape, what)?;
    let data = &bytes[start + len..];
    let need = n
        .checked_mul(elem.width())
        .ok_or_else(|| bad("the shape is too large"))?;
    if data.len() != need {
        bail!(
            "{what}: {} data of shape {:?} needs {need} bytes but the file has {} (truncated or \
             corrupt)",
            elem.name(),
            h.shape,
            data.len()
        );
    }
    let values = to_f32(data, elem, big, &h.shape, what)?;
    Tensor::new(h.shape, values)
}

/// The bytes of an f32 `.npy` file (format 1.0, little-endian, C order) holding `t`.
pub fn npy_bytes(t: &Tensor) -> Vec<u8> {
    let shape = match t.shape() {
        [d] => format!("({d},)"),
        s => format!(
            "({})",
            s.iter()
                .map(|d| d.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    };
    let mut header = format!("{{'descr': '<f4', 'fortran_order': False, 'shape': {shape}, }}");
    // The header (with magic, version and length) is padded with spaces to a multiple of
    // 64 bytes and ends in a newline, as numpy writes it.
    let total = 10 + header.len() + 1;
    header.push_str(&" ".repeat(total.next_multiple_of(64) - total));
    header.push('\n');
    let mut out = Vec::with_capacity(10 + header.len() + 4 * t.numel());
    out.extend_from_slice(NPY_MAGIC);
    out.extend_from_slice(&[1, 0]);
    out.extend_from_slice(&(header.len() as u16).to_le_bytes());
    out.extend_from_slice(header.as_bytes());
    for &x in t.data() {
        out.extend_from_slice(&x.to_le_bytes());
    }
    out
}

// ---------------------------------------------------------------------------------------
// CSV

/// A CSV file's numbers as `[rows, cols]`, or one column as `[rows]` when `column` names it
/// (by its header name, or its 0-based index).
pub fn parse_csv(text: &str, what: &str, column: Option<&str>) -> Result<Tensor> {
    let mut header: Option<Vec<String>> = None;
    let mut cols = 0usize;
    let mut rows = 0usize;
    let mut data = Vec::new();
    let mut first = true;
    for (ln, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let fields: Vec<&str> = line.split(',').map(str::trim).collect();
        if first {
            first = false;
            cols = fields.len();
            if fields.iter().any(|f| f.parse::<f64>().is_err()) {
                header = Some(
                    fields
                        .iter()
                        .map(|f| f.trim_matches('"').to_string())
                        .collect(),
                );
                continue;
            }
        }
        if fields.len() != cols {
            bail!(
                "{what}:{}: {} columns, but the first row has {cols}",
                ln + 1,
                fields.len()
            );
        }
        for (c, f) in fields.iter().enumerate() {
            let name = header
                .as_ref()
                .map_or(String::new(), |h| format!(" (`{}`)", h[c]));
            let v = match f.parse::<i64>() {
                Ok(i) => exact_int(i as i128).ok_or_else(|| {
                    anyhow!(
                        "{what}:{}: column {}{name}: the integer {i} is not exactly \
                         representable in f32 (beyond ±2^24); tokit's tensors are f32",
                        ln + 1,
                        c + 1
                    )
                })?,
                Err(_) => f.parse::<f32>().map_err(|_| {
                    anyhow!(
                        "{what}:{}: column {}{name}: `{f}` is not a number",
                        ln + 1,
                        c + 1
                    )
                })?,
            };
            data.push(v);
        }
        rows += 1;
    }
    ensure!(cols > 0 && rows > 0, "{what}: no data rows");
    match column {
        None => Tensor::new(vec![rows, cols], data),
        Some(name) => {
            let c = header
                .as_ref()
                .and_then(|h| h.iter().position(|x| x == name))
                .or_else(|| name.parse::<usize>().ok().filter(|&c| c < cols))
                .ok_or_else(|| {
                    anyhow!(
                        "{what}: no column `{name}` (columns: {})",
                        header
                            .as_ref()
                            .map_or(format!("0 to {}", cols - 1), |h| h.join(", "))
                    )
                })?;
            Tensor::new(vec![rows], (0..rows).map(|r| data[r * cols + c]).collect())
        }
    }
}

// ---------------------------------------------------------------------------------------
// safetensors

fn st_elem(d: Dtype) -> Option<Elem> {
    Some(match d {
        Dtype::BOOL => Elem::Bool,
        Dtype::U8 => Elem::U8,
        Dtype::U16 => Elem::U16,
        Dtype::U32 => Elem::U32,
        Dtype::U64 => Elem::U64,
        Dtype::I8 => Elem::I8,
        Dtype::I16 => Elem::I16,
        Dtype::I32 => Elem::I32,
        Dtype::I64 => Elem::I64,
        Dtype::F16 => Elem::F16,
        Dtype::BF16 => Elem::Bf16,
        Dtype::F32 => Elem::F32,
        Dtype::F64 => Elem::F64,
        _ => return None,
    })
}

/// The tensor `name` of a safetensors file's bytes; without a name, its only tensor.
pub fn parse_safetensors(bytes: &[u8], what: &str, name: Option<&str>) -> Result<Tensor> {
    let st = SafeTensors::deserialize(bytes)
        .map_err(|e| anyhow!("{what}: not a valid safetensors file: {e}"))?;
    let mut names: Vec<&str> = st.names();
    names.sort_unstable();
    let name = match name {
        Some(n) => n,
        None => match names.as_slice() {
            [one] => one,
            [] => bail!("{what}: the file holds no tensors"),
            many => bail!(
                "{what}: the file holds {} tensors; name one ({})",
                many.len(),
                many.join(", ")
            ),
        },
    };
    let view = st
        .tensor(name)
        .map_err(|_| anyhow!("{what}: no tensor `{name}` (tensors: {})", names.join(", ")))?;
    let what = format!("{what}: tensor `{name}`");
    let elem = st_elem(view.dtype()).ok_or_else(|| {
        anyhow!(
            "{what}: dtype {:?} (shape {:?}) is not supported (bool, integers, F16, BF16, F32, F64 are)",
            view.dtype(),
            view.shape()
        )
    })?;
    let shape = view.shape().to_vec();
    let values = to_f32(view.data(), elem, false, &shape, &what)?;
    Tensor::new(shape, values)
}

// ---------------------------------------------------------------------------------------
// Files

/// Largest data file read (the data is copied to f32 in memory as well).
pub const MAX_FILE: u64 = 1 << 40;

fn ext(path: &Path) -> String {
    path.extension()
        .map(|e| e.to_string_lossy().to_ascii_lowercase())
        .unwrap_or_default()
}

/// Read a tensor from `.npy`, `.csv` or `.safetensors` (by the extension). `name` picks a
/// tensor of a safetensors file or a column of a CSV file (then `[rows]`); a `.npy` file
/// has no names.
pub fn load(path: &Path, name: Option<&str>) -> Result<Tensor> {
    let what = path.display().to_string();
    match ext(path).as_str() {
        "npy" => {
            ensure!(
                name.is_none(),
                "{what}: a .npy file holds one unnamed array; drop the name `{}`",
                name.unwrap_or_default()
            );
            parse_npy(
                &crate::read::read_bounded(path, "tensor file", MAX_FILE)?,
                &what,
            )
        }
        "csv" => {
            let text = crate::read::read_text_bounded(path, "CSV file", MAX_FILE)?;
            parse_csv(&text, &what, name)
        }
        "safetensors" => {
            let file = std::fs::File::open(path).with_context(|| format!("reading {what}"))?;
            ensure!(
                file.metadata().map(|m| m.is_file()).unwrap_or(false),
                "{what}: not a regular file"
            );
            // SAFETY: read-only map of a regular file, dropped before returning.
            let map =
                unsafe { memmap2::Mmap::map(&file) }.with_context(|| format!("mapping {what}"))?;
            parse_safetensors(&map, &what, name)
        }
        other => bail!(
            "{what}: unknown tensor file type `.{other}` (expected .npy, .csv or .safetensors)"
        ),
    }
}

/// Write tensors to `.npy` (exactly one, unnamed) or `.safetensors` (named), atomically,
/// as f32.
pub fn save(path: &Path, tensors: &[(&str, &Tensor)]) -> Result<()> {
    let what = path.display().to_string();
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    match ext(path).as_str() {
        "npy" => {
            let [(_, t)] = tensors else {
                bail!(
                    "{what}: a .npy file holds one tensor, not {} (use .safetensors for several)",
                    tensors.len()
                );
            };
            let bytes = npy_bytes(t);
            crate::atomic::write_atomically(path, |w| w.write_all(&bytes))
                .with_context(|| format!("writing {what}"))
        }
        "safetensors" => crate::save_safetensors(path, tensors, None),
        other => {
            bail!("{what}: cannot write `.{other}` tensor files (expected .npy or .safetensors)")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An npy file as numpy writes it, with the given type string, shape and raw data.
    fn npy(version: u8, descr: &str, fortran: bool, shape: &str, data: &[u8]) -> Vec<u8> {
        let order = if fortran { "True" } else { "False" };
        let mut h = format!("{{'descr': '{descr}', 'fortran_order': {order}, 'shape': {shape}, }}");
        let pre = if version == 1 { 10 } else { 12 };
        let total = pre + h.len() + 1;
        h.push_str(&" ".repeat(total.next_multiple_of(64) - total));
        h.push('\n');
        let mut out = NPY_MAGIC.to_vec();
        out.extend_from_slice(&[version, 0]);
        if version == 1 {
            out.extend_from_slice(&(h.len() as u16).to_le_bytes());
        } else {
            out.extend_from_slice(&(h.len() as u32).to_le_bytes());
        }
        out.extend_from_slice(h.as_bytes());
        out.extend_from_slice(data);
        out
    }

    fn le<T: Copy, const N: usize>(v: &[T], f: impl Fn(T) -> [u8; N]) -> Vec<u8> {
        v.iter().flat_map(|&x| f(x)).collect()
    }

    #[test]
    fn npy_reads_every_dtype_and_version() {
        let vals = [0.0f32, 1.0, 2.0, 3.0, 250.0, 7.0];
        let cases: Vec<(&str, Vec<u8>)> = vec![
            ("<f4", le(&vals, f32::to_le_bytes)),
            (">f4", le(&vals, f32::to_be_bytes)),
            ("<f8", le(&vals.map(|x| x as f64), f64::to_le_bytes)),
            (">f8", le(&vals.map(|x| x as f64), f64::to_be_bytes)),
            ("<i4", le(&vals.map(|x| x as i32), i32::to_le_bytes)),
            (">i4", le(&vals.map(|x| x as i32), i32::to_be_bytes)),
            ("<i8", le(&vals.map(|x| x as i64), i64::to_le_bytes)),
            ("|u1", vals.map(|x| x as u8).to_vec()),
            ("<u2", le(&vals.map(|x| x as u16), u16::to_le_bytes)),
            ("<f2", le(&vals.map(f16::from_f32), |x| x.to_le_bytes())),
        ];
        for version in [1, 2, 3] {
            for (descr, data) in &cases {
                let b = npy(version, descr, false, "(2, 3)", data);
                let t = parse_npy(&b, "x.npy").unwrap_or_else(|e| panic!("{descr}: {e:#}"));
                assert_eq!(t.shape(), [2, 3], "{descr}");
                assert_eq!(t.data(), vals, "{descr} v{version}");
            }
        }
        // Negative integers, scalars, one-element tuples and empty arrays.
        let t = parse_npy(
            &npy(
                1,
                "<i8",
                false,
                "(2,)",
                &le(&[-5i64, 16_777_216], i64::to_le_bytes),
            ),
            "x",
        )
        .unwrap();
        assert_eq!(t.data(), [-5.0, 16_777_216.0]);
        let t = parse_npy(
            &npy(1, "<f4", false, "()", &le(&[4.5f32], f32::to_le_bytes)),
            "x",
        )
        .unwrap();
        assert_eq!((t.shape(), t.data()), (&[][..], &[4.5][..]));
        let t = parse_npy(&npy(1, "<f4", false, "(0, 3)", &[]), "x").unwrap();
        assert_eq!(t.shape(), [0, 3]);
        let t = parse_npy(&npy(1, "|b1", false, "(3,)", &[1, 0, 1]), "x").unwrap();
        assert_eq!(t.data(), [1.0, 0.0, 1.0]);
        // Fortran order of a vector is the same bytes as C order.
        assert!(parse_npy(
            &npy(1, "<f4", true, "(2,)", &le(&[1f32, 2.0], f32::to_le_bytes)),
            "x"
        )
        .is_ok());
    }

    #[test]
    fn npy_round_trips() {
        let t = Tensor::new(
            vec![2, 2, 3],
            (0..12).map(|i| i as f32 * 0.1 - 0.3).collect(),
        )
        .unwrap();
        let back = parse_npy(&npy_bytes(&t), "x").unwrap();
        assert_eq!(back.shape(), t.shape());
        assert_eq!(back.data(), t.data());
        let v = Tensor::new(vec![3], vec![f32::NAN, f32::INFINITY, -0.0]).unwrap();
        let back = parse_npy(&npy_bytes(&v), "x").unwrap();
        assert!(back.data()[0].is_nan() && back.data()[1] == f32::INFINITY);
        assert!(back.data()[2] == 0.0 && back.data()[2].is_sign_negative());
        assert_eq!(npy_bytes(&v).len() % 64, 12, "header padded to 64 bytes");
    }

    #[test]
    fn npy_refuses_what_f32_cannot_hold_and_corrupt_files() {
        let e = |b: Vec<u8>| format!("{:#}", parse_npy(&b, "d.npy").unwrap_err());
        let m = e(npy(
            1,
            "<i8",
            false,
            "(2, 2)",
            &le(&[1i64, 2, 3, 16_777_217], i64::to_le_bytes),
        ));
        assert!(
            m.contains("d.npy")
                && m.contains("int64")
                && m.contains("[1, 1]")
                && m.contains("16777217")
                && m.contains("[2, 2]"),
            "{m}"
        );
        let m = e(npy(
            1,
            "<u8",
            false,
            "(1,)",
            &le(&[u64::MAX], u64::to_le_bytes),
        ));
        assert!(m.contains("uint64"), "{m}");
        let m = e(npy(
            1,
            "<f8",
            false,
            "(1,)",
            &le(&[1e300f64], f64::to_le_bytes),
        ));
        assert!(m.contains("float64") && m.contains("range"), "{m}");
        let m = e(npy(1, "<f4", true, "(2, 2)", &[0; 16]));
        assert!(m.contains("Fortran order"), "{m}");
        let m = e(npy(1, "<c8", false, "(1,)", &[0; 8]));
        assert!(m.contains("'<c8'") && m.contains("not supported"), "{m}");
        let m = e(npy(1, "<f4", false, "(4,)", &[0; 12]));
        assert!(m.contains("needs 16 bytes") && m.contains("12"), "{m}");
        let m = e(npy(4, "<f4", false, "(1,)", &[0; 4]));
        assert!(m.contains("version 4"), "{m}");
        assert!(e(b"PK\x03\x04 not npy".to_vec()).contains("magic"));
        let mut b = npy(1, "<f4", false, "(1,)", &[0; 4]);
        b.truncate(20);
        assert!(e(b).contains("truncated"));
        let m = e(npy(1, "<f4", false, "(18446744073709551615, 2)", &[]));
        assert!(m.contains("shape"), "{m}");
        assert!(e(npy(1, "<f4", false, "(a,)", &[])).contains("shape"));
        let m = e(b"\x93NUMPY\x01\x00\x08\x00{'descr'".to_vec());
        assert!(m.contains("header"), "{m}");
        let raw = |h: &str| {
            let mut b = NPY_MAGIC.to_vec();
            b.extend_from_slice(&[1, 0]);
            b.extend_from_slice(&(h.len() as u16).to_le_bytes());
            b.extend_from_slice(h.as_bytes());
            b
        };
        assert!(e(raw("[('a', '<f4')]\n")).contains("dict"));
        let m = e(raw("{'descr': [('a', '<f4')], 'shape': (1,)}\n"));
        assert!(m.contains("structured"), "{m}");
        assert!(e(raw("{'descr': '<f4', 'shape': (1,)}\n")).contains("fortran_order"));
        assert!(e(raw("{'descr': '<f4', 'fortran_order': Maybe}\n")).contains("True"));
        // Every prefix of a valid file is an error, never a panic.
        let good = npy(
            1,
            "<i4",
            false,
            "(3,)",
            &le(&[1i32, 2, 3], i32::to_le_bytes),
        );
        for n in 0..good.len() {
            assert!(parse_npy(&good[..n], "x").is_err(), "prefix {n}");
        }
    }

    #[test]
    fn csv_reads_with_or_without_header() {
        let t = parse_csv("a, b\n1,2\n3, 4.5\n\n", "d.csv", None).unwrap();
        assert_eq!(
            (t.shape(), t.data()),
            (&[2, 2][..], &[1.0, 2.0, 3.0, 4.5][..])
        );
        let t = parse_csv("1,2\r\n3,4\r\n", "d.csv", None).unwrap();
        assert_eq!(t.shape(), [2, 2]);
        let t = parse_csv("\"x\",y\n1,2\n3,4\n", "d.csv", Some("x")).unwrap();
        assert_eq!((t.shape(), t.data()), (&[2][..], &[1.0, 3.0][..]));
        let t = parse_csv("1,2\n3,4\n", "d.csv", Some("1")).unwrap();
        assert_eq!(t.data(), [2.0, 4.0]);
        let e = |s: &str, c: Option<&str>| format!("{:#}", parse_csv(s, "d.csv", c).unwrap_err());
        let m = e("a,b\n1,2\n3,x\n", None);
        assert!(
            m.contains("d.csv:3")
                && m.contains("column 2")
                && m.contains("`b`")
                && m.contains("`x`"),
            "{m}"
        );
        assert!(e("1,2\n3\n", None).contains("d.csv:2"));
        assert!(e("1,2\n3,\n", None).contains("column 2"));
        assert!(e("a,b\n", None).contains("no data"));
        assert!(e("", None).contains("no data"));
        assert!(e("a,b\n1,2\n", Some("c")).contains("a, b"));
        assert!(e("1,2\n", Some("2")).contains("0 to 1"));
        assert!(e("1,16777217\n", None).contains("2^24"));
    }

    #[test]
    fn safetensors_round_trip_and_dtypes() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("sub/t.safetensors");
        let a = Tensor::new(vec![2, 3], (0..6).map(|i| i as f32 / 3.0).collect()).unwrap();
        let b = Tensor::new(vec![4], vec![1.0, -2.0, 3.5, 0.0]).unwrap();
        save(&p, &[("a", &a), ("b", &b)]).unwrap();
        let back = load(&p, Some("a")).unwrap();
        assert_eq!((back.shape(), back.data()), (a.shape(), a.data()));
        let m = format!("{:#}", load(&p, None).unwrap_err());
        assert!(m.contains("2 tensors") && m.contains("a, b"), "{m}");
        let m = format!("{:#}", load(&p, Some("c")).unwrap_err());
        assert!(m.contains("no tensor `c`"), "{m}");
        let q = dir.path().join("one.safetensors");
        save(&q, &[("only", &b)]).unwrap();
        assert_eq!(load(&q, None).unwrap().data(), b.data());

        // Integer and f64 tensors written by the safetensors crate itself.
        use safetensors::tensor::TensorView;
        let i64s = le(&[1i64, -2, 3], i64::to_le_bytes);
        let big = le(&[1i64 << 40, 1 + (1 << 40)], i64::to_le_bytes);
        let f64s = le(&[0.1f64, 2.0], f64::to_le_bytes);
        let u8s = vec![0u8, 255];
        let views = vec![
            ("i", TensorView::new(Dtype::I64, vec![3], &i64s).unwrap()),
            ("big", TensorView::new(Dtype::I64, vec![2], &big).unwrap()),
            ("f", TensorView::new(Dtype::F64, vec![2], &f64s).unwrap()),
            ("u", TensorView::new(Dtype::U8, vec![2], &u8s).unwrap()),
        ];
        let bytes = safetensors::serialize(views, None).unwrap();
        assert_eq!(
            parse_safetensors(&bytes, "x", Some("i")).unwrap().data(),
            [1.0, -2.0, 3.0]
        );
        assert_eq!(
            parse_safetensors(&bytes, "x", Some("f")).unwrap().data(),
            [0.1f32, 2.0]
        );
        assert_eq!(
            parse_safetensors(&bytes, "x", Some("u")).unwrap().data(),
            [0.0, 255.0]
        );
        let m = format!(
            "{:#}",
            parse_safetensors(&bytes, "x.safetensors", Some("big")).unwrap_err()
        );
        assert!(
            m.contains("x.safetensors")
                && m.contains("`big`")
                && m.contains("int64")
                && m.contains("[1]"),
            "{m}"
        );
        for n in [0, 7, 8, 20, bytes.len() - 1] {
            assert!(
                parse_safetensors(&bytes[..n], "x", Some("i")).is_err(),
                "prefix {n}"
            );
        }
    }

    #[test]
    fn files_by_extension() {
        let dir = tempfile::tempdir().unwrap();
        let t = Tensor::new(vec![3], vec![1.0, 2.0, 3.0]).unwrap();
        let p = dir.path().join("t.npy");
        save(&p, &[("t", &t)]).unwrap();
        assert_eq!(load(&p, None).unwrap().data(), t.data());
        assert!(format!("{:#}", load(&p, Some("x")).unwrap_err()).contains("drop the name"));
        assert!(save(&p, &[("a", &t), ("b", &t)]).is_err());
        let m = format!(
            "{:#}",
            save(&dir.path().join("t.txt"), &[("t", &t)]).unwrap_err()
        );
        assert!(m.contains(".txt"), "{m}");
        let m = format!(
            "{:#}",
            load(&dir.path().join("t.parquet"), None).unwrap_err()
        );
        assert!(m.contains("unknown tensor file type"), "{m}");
        assert!(load(&dir.path().join("missing.npy"), None).is_err());
        assert!(load(dir.path(), None).is_err());
    }
}
