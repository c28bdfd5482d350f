//! Single-file GGUF models (llama.cpp's format): weights, config and tokenizer in one file.
//!
//! [`Gguf::open`] memory-maps the file and parses its header (magic `GGUF`, version 2 or 3,
//! little-endian), every metadata entry (all value types, arrays included), the tensor infos
//! and the start of the data section (`general.alignment`, default 32). Everything is
//! validated up front: a truncated or corrupt file is an error naming the file, what was being
//! read and where, and every tensor's data is checked to lie inside the file.
//!
//! Tensors are read as f32: [`Gguf::read_f32`] / [`Gguf::tensor`] by their GGUF names, with
//! the shape in PyTorch order (GGUF lists dimensions innermost first, so they are reversed);
//! [`Gguf::tensor_hf`] by Hugging Face names for Llama-architecture files, with the Q and K
//! projections un-permuted back to Hugging Face's row order (see [`llama`]). The types that
//! can be converted are listed in [`quant::SUPPORTED`]; reading another is an error naming the
//! tensor and its type.
//!
//! [`gguf_config`] builds a Hugging Face–style `config.json` from the metadata, and
//! [`Tokenizer::from_gguf`](crate::Tokenizer::from_gguf) builds the tokenizer.
//!
//! No crate on crates.io fitted (checked 2026-11): `gguf` has no alignment handling, `ggus`
//! and `gguf-rs-lib` read version 3 only and report truncation without saying where
//! (`gguf-rs-lib` also needs a newer Rust than the workspace's), and `gguf-rs` turns on
//! `serde_json/arbitrary_precision` for the whole workspace; so the reader is here.

pub mod llama;
pub mod quant;
pub mod tokenizer;
pub mod write;

use std::collections::HashMap;
use std::fs::File;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};
use memmap2::Mmap;
use serde_json::Value;
use tokit_compute::Tensor;

pub use llama::gguf_config;
pub use quant::GgmlType;

/// The four bytes every GGUF file starts with.
pub const MAGIC: &[u8; 4] = b"GGUF";
/// The alignment of tensor data when `general.alignment` is absent.
pub const DEFAULT_ALIGNMENT: u64 = 32;
/// The most dimensions a ggml tensor has.
pub const MAX_DIMS: usize = 4;
/// How deep arrays of arrays may nest in metadata before the file is taken to be corrupt.
const MAX_ARRAY_DEPTH: usize = 8;

/// A metadata value.
#[derive(Debug, Clone, PartialEq)]
pub enum MetaValue {
    U8(u8),
    I8(i8),
    U16(u16),
    I16(i16),
    U32(u32),
    I32(i32),
    F32(f32),
    Bool(bool),
    String(String),
    Array(Vec<MetaValue>),
    U64(u64),
    I64(i64),
    F64(f64),
}

/// GGUF's id of each metadata value type.
mod value_type {
    pub const U8: u32 = 0;
    pub const I8: u32 = 1;
    pub const U16: u32 = 2;
    pub const I16: u32 = 3;
    pub const U32: u32 = 4;
    pub const I32: u32 = 5;
    pub const F32: u32 = 6;
    pub const BOOL: u32 = 7;
    pub const STRING: u32 = 8;
    pub const ARRAY: u32 = 9;
    pub const U64: u32 = 10;
    pub const I64: u32 = 11;
    pub const F64: u32 = 12;
}

impl MetaValue {
    /// GGUF's name of the value's type (`"u32"`, `"string"`, `"array"`, ...).
    pub fn type_name(&self) -> &'static str {
        match self {
            MetaValue::U8(_) => "u8",
            MetaValue::I8(_) => "i8",
            MetaValue::U16(_) => "u16",
            MetaValue::I16(_) => "i16",
            MetaValue::U32(_) => "u32",
            MetaValue::I32(_) => "i32",
            MetaValue::F32(_) => "f32",
            MetaValue::Bool(_) => "bool",
            MetaValue::String(_) => "string",
            MetaValue::Array(_) => "array",
            MetaValue::U64(_) => "u64",
            MetaValue::I64(_) => "i64",
            MetaValue::F64(_) => "f64",
        }
    }

    /// The value as an i64, if it is an integer that fits.
    pub fn as_i64(&self) -> Option<i64> {
        match *self {
            MetaValue::U8(v) => Some(v.into()),
            MetaValue::I8(v) => Some(v.into()),
            MetaValue::U16(v) => Some(v.into()),
            MetaValue::I16(v) => Some(v.into()),
            MetaValue::U32(v) => Some(v.into()),
            MetaValue::I32(v) => Some(v.into()),
            MetaValue::U64(v) => i64::try_from(v).ok(),
            MetaValue::I64(v) => Some(v),
            _ => None,
        }
    }

    /// The value as a u64, if it is a non-negative integer.
    pub fn as_u64(&self) -> Option<u64> {
        match *self {
            MetaValue::U64(v) => Some(v),
            _ => self.as_i64().and_then(|v| u64::try_from(v).ok()),
        }
    }

    /// The value as an f64, if it is a number. An f32 converts through its shortest decimal
    /// form, so `1e-5f32` gives `1e-5` rather than `9.999999747378752e-6`.
    pub fn as_f64(&self) -> Option<f64> {
        match *self {
            MetaValue::F32(v) => Some(f32_to_f64_decimal(v)),
            MetaValue::F64(v) => Some(v),
            _ => self.as_i64().map(|v| v as f64),
        }
    }

    /// The value as a bool, if it is one.
    pub fn as_bool(&self) -> Option<bool> {
        match *self {
            MetaValue::Bool(v) => Some(v),
            _ => None,
        }
    }

    /// The value as a string, if it is one.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            MetaValue::String(s) => Some(s),
            _ => None,
        }
    }

    /// The elements, if the value is an array.
    pub fn as_array(&self) -> Option<&[MetaValue]> {
        match self {
            MetaValue::Array(v) => Some(v),
            _ => None,
        }
    }

    /// The value as JSON (numbers, booleans, strings, arrays).
    pub fn to_json(&self) -> Value {
        match self {
            MetaValue::Bool(b) => Value::Bool(*b),
            MetaValue::String(s) => Value::String(s.clone()),
            MetaValue::Array(a) => Value::Array(a.iter().map(MetaValue::to_json).collect()),
            MetaValue::F32(_) | MetaValue::F64(_) => self
                .as_f64()
                .and_then(serde_json::Number::from_f64)
                .map_or(Value::Null, Value::Number),
            MetaValue::U64(v) => Value::from(*v),
            other => other.as_i64().map_or(Value::Null, Value::from),
        }
    }

    /// A short description for messages: the value itself, or the type and length of an array.
    fn describe(&self) -> String {
        match self {
            MetaValue::Array(a) => format!(
                "an array of {} {}",
                a.len(),
                a.first().map_or("values", MetaValue::type_name)
            ),
            MetaValue::String(s) if s.len() > 40 => format!("a string of {} bytes", s.len()),
            other => format!("{} {}", other.type_name(), other.to_json()),
        }
    }
}

/// An f32 widened through its shortest decimal representation.
pub(crate) fn f32_to_f64_decimal(v: f32) -> f64 {
    if v.is_finite() {
        v.to_string().parse().unwrap_or(f64::from(v))
    } else {
        f64::from(v)
    }
}

/// What the file says about one tensor.
#[derive(Debug, Clone, PartialEq)]
pub struct TensorInfo {
    /// The GGUF name (`blk.0.attn_q.weight`).
    pub name: String,
    /// The dimensions as GGUF stores them: `ne[0]` (the innermost, contiguous one) first.
    pub dims: Vec<u64>,
    /// The type of the data.
    pub ggml_type: GgmlType,
    /// Where the data starts, in bytes from the start of the file.
    pub start: u64,
    /// The size of the data in bytes.
    pub n_bytes: u64,
}

impl TensorInfo {
    /// The shape in PyTorch / Hugging Face order (outermost first): `dims` reversed.
    pub fn shape(&self) -> Vec<usize> {
        self.dims.iter().rev().map(|&d| d as usize).collect()
    }

    /// The number of values.
    pub fn numel(&self) -> u64 {
        self.dims.iter().product()
    }
}

/// An opened GGUF file.
pub struct Gguf {
    path: PathBuf,
    /// The file name, as shown in messages.
    name: String,
    mmap: Mmap,
    version: u32,
    alignment: u64,
    data_start: u64,
    metadata: Vec<(String, MetaValue)>,
    meta_index: HashMap<String, usize>,
    tensors: Vec<TensorInfo>,
    tensor_index: HashMap<String, usize>,
    /// The Hugging Face names, or why there are none.
    hf: std::result::Result<llama::HfNames, String>,
}

impl std::fmt::Debug for Gguf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gguf")
            .field("path", &self.path)
            .field("version", &self.version)
            .field("bytes", &self.mmap.len())
            .field("metadata", &self.metadata.len())
            .field("tensors", &self.tensors.len())
            .finish()
    }
}

/// Why a low-level read failed: the file ended before `need` bytes, or the bytes make no sense.
enum Fail {
    Short { need: u64 },
    Bad(String),
}

type R<T> = std::result::Result<T, Fail>;

/// A position in the mapped file.
struct Cursor<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: u64) -> R<&'a [u8]> {
        let end = (self.pos as u64).saturating_add(n);
        if end > self.buf.len() as u64 {
            return Err(Fail::Short { need: end });
        }
        let s = &self.buf[self.pos..end as usize];
        self.pos = end as usize;
        Ok(s)
    }

    fn array<const N: usize>(&mut self) -> R<[u8; N]> {
        let s = self.take(N as u64)?;
        let mut a = [0u8; N];
        a.copy_from_slice(s);
        Ok(a)
    }

    fn u32(&mut self) -> R<u32> {
        Ok(u32::from_le_bytes(self.array()?))
    }

    fn u64(&mut self) -> R<u64> {
        Ok(u64::from_le_bytes(self.array()?))
    }

    fn string(&mut self) -> R<String> {
        let len = self.u64()?;
        let bytes = self.take(len)?;
        String::from_utf8(bytes.to_vec())
            .map_err(|e| Fail::Bad(format!("a string of {len} bytes is not valid UTF-8 ({e})")))
    }

    /// The bytes left after the cursor.
    fn left(&self) -> u64 {
        (self.buf.len() - self.pos) as u64
    }

    fn value(&mut self, ty: u32, depth: usize) -> R<MetaValue> {
        use value_type as t;
        Ok(match ty {
            t::U8 => MetaValue::U8(self.array::<1>()?[0]),
            t::I8 => MetaValue::I8(self.array::<1>()?[0] as i8),
            t::U16 => MetaValue::U16(u16::from_le_bytes(self.array()?)),
            t::I16 => MetaValue::I16(i16::from_le_bytes(self.array()?)),
            t::U32 => MetaValue::U32(self.u32()?),
            t::I32 => MetaValue::I32(i32::from_le_bytes(self.array()?)),
            t::F32 => MetaValue::F32(f32::from_le_bytes(self.array()?)),
            t::BOOL => match self.array::<1>()?[0] {
                0 => MetaValue::Bool(false),
                1 => MetaValue::Bool(true),
                b => {
                    return Err(Fail::Bad(format!(
                        "a bool is stored as byte {b}, not 0 or 1"
                    )))
                }
            },
            t::STRING => MetaValue::String(self.string()?),
            t::U64 => MetaValue::U64(self.u64()?),
            t::I64 => MetaValue::I64(i64::from_le_bytes(self.array()?)),
            t::F64 => MetaValue::F64(f64::from_le_bytes(self.array()?)),
            t::ARRAY => {
                if depth >= MAX_ARRAY_DEPTH {
                    return Err(Fail::Bad(format!(
                        "arrays nest more than {MAX_ARRAY_DEPTH} deep"
                    )));
                }
                let elem = self.u32()?;
                let len = self.u64()?;
                // Every element takes at least one byte (a string at least 8): a length the
                // rest of the file cannot hold is a truncated or corrupt file, not an
                // allocation to attempt.
                let min = match elem {
                    t::U8 | t::I8 | t::BOOL => 1,
                    t::U16 | t::I16 => 2,
                    t::U32 | t::I32 | t::F32 => 4,
                    t::ARRAY => 12,
                    _ => 8,
                };
                if len.saturating_mul(min) > self.left() {
                    return Err(Fail::Short {
                        need: (self.pos as u64).saturating_add(len.saturating_mul(min)),
                    });
                }
                let mut items = Vec::with_capacity(len as usize);
                for i in 0..len {
                    match self.value(elem, depth + 1) {
                        Ok(v) => items.push(v),
                        Err(Fail::Bad(m)) => {
                            return Err(Fail::Bad(format!("element {i} of {len}: {m}")))
                        }
                        Err(e) => return Err(e),
                    }
                }
                MetaValue::Array(items)
            }
            other => {
                return Err(Fail::Bad(format!(
                    "unknown value type {other} (GGUF defines 0 to 12)"
                )))
            }
        })
    }
}

impl Gguf {
    /// Opens and validates a GGUF file (see the module docs).
    pub fn open(path: impl AsRef<Path>) -> Result<Gguf> {
        let path = path.as_ref();
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| path.display().to_string());
        let file =
            File::open(path).map_err(|e| anyhow!("opening GGUF file {}: {e}", path.display()))?;
        let meta = file
            .metadata()
            .map_err(|e| anyhow!("reading the size of {}: {e}", path.display()))?;
        // mmap of a directory or a device fails with an OS message ("No such device") that
        // names neither; say what it is instead.
        if meta.is_dir() {
            bail!("{name}: is a directory, expected a GGUF file");
        }
        if !meta.is_file() {
            bail!("{name}: not a regular file (a device, pipe or socket), expected a GGUF file");
        }
        let len = meta.len();
        if len == 0 {
            bail!("{name}: the file is empty (expected a GGUF file, starting with \"GGUF\")");
        }
        // SAFETY: the map is read-only; like every memory-mapped reader, we rely on the file
        // not being truncated or rewritten while it is open.
        let mmap = unsafe { Mmap::map(&file) }
            .map_err(|e| anyhow!("memory-mapping {}: {e}", path.display()))?;
        Gguf::parse(path.to_path_buf(), name, mmap)
    }

    fn parse(path: PathBuf, name: String, mmap: Mmap) -> Result<Gguf> {
        let buf: &[u8] = &mmap;
        let file_len = buf.len() as u64;
        let err = |what: &str, f: Fail| -> anyhow::Error {
            match f {
                Fail::Short { need } => anyhow!(
                    "{name}: truncated while reading {what}: that needs at least {need} bytes \
                     but the file has {file_len}"
                ),
                Fail::Bad(msg) => anyhow!("{name}: corrupt {what}: {msg}"),
            }
        };
        let mut c = Cursor { buf, pos: 0 };

        let magic = c.array::<4>().map_err(|f| err("the magic bytes", f))?;
        if &magic != MAGIC {
            bail!(
                "{name}: not a GGUF file: it starts with bytes {:02x} {:02x} {:02x} {:02x} \
                 ({:?}), expected \"GGUF\"",
                magic[0],
                magic[1],
                magic[2],
                magic[3],
                String::from_utf8_lossy(&magic)
            );
        }
        let version = c.u32().map_err(|f| err("the version", f))?;
        match version {
            2 | 3 => {}
            1 => bail!(
                "{name}: GGUF version 1 is not supported (tokit reads versions 2 and 3); \
                 convert the model again with a recent llama.cpp"
            ),
            v if matches!(v.swap_bytes(), 2 | 3) => bail!(
                "{name}: a big-endian GGUF file (version {}), which tokit cannot read; use the \
                 little-endian file",
                v.swap_bytes()
            ),
            v => bail!("{name}: GGUF version {v} is not supported (tokit reads versions 2 and 3)"),
        }
        let n_tensors = c.u64().map_err(|f| err("the tensor count", f))?;
        let n_kv = c.u64().map_err(|f| err("the metadata count", f))?;
        // Each metadata entry takes at least 8 + 4 + 1 bytes and each tensor info 8 + 4 + 4 + 8:
        // counts the file cannot hold mean a truncated or corrupt file.
        if n_kv.saturating_mul(13) > c.left() || n_tensors.saturating_mul(24) > c.left() {
            bail!(
                "{name}: the header announces {n_kv} metadata entries and {n_tensors} tensors, \
                 more than the {file_len}-byte file can hold (truncated or corrupt file)"
            );
        }

        let mut metadata = Vec::with_capacity(n_kv as usize);
        let mut meta_index = HashMap::with_capacity(n_kv as usize);
        for i in 0..n_kv {
            let key = c
                .string()
                .map_err(|f| err(&format!("the key of metadata entry {} of {n_kv}", i + 1), f))?;
            let what = || format!("metadata entry {} of {n_kv} (`{key}`)", i + 1);
            let ty = c.u32().map_err(|f| err(&what(), f))?;
            let value = c.value(ty, 0).map_err(|f| err(&what(), f))?;
            if meta_index.insert(key.clone(), metadata.len()).is_some() {
                bail!("{name}: corrupt metadata: key `{key}` appears twice");
            }
            metadata.push((key, value));
        }

        let alignment = match metadata
            .iter()
            .find(|(k, _)| k == "general.alignment")
            .map(|(_, v)| v)
        {
            None => DEFAULT_ALIGNMENT,
            Some(v) => match v.as_u64() {
                Some(a) if a > 0 && a.is_power_of_two() => a,
                _ => bail!(
                    "{name}: metadata `general.alignment` is {}, expected a power of two",
                    v.describe()
                ),
            },
        };

        // (name, dims, type, offset relative to the data section)
        let mut infos: Vec<(String, Vec<u64>, GgmlType, u64)> =
            Vec::with_capacity(n_tensors as usize);
        let mut tensor_index = HashMap::with_capacity(n_tensors as usize);
        for i in 0..n_tensors {
            let tname = c
                .string()
                .map_err(|f| err(&format!("the name of tensor {} of {n_tensors}", i + 1), f))?;
            let what = || format!("the info of tensor {} of {n_tensors} (`{tname}`)", i + 1);
            let n_dims = c.u32().map_err(|f| err(&what(), f))?;
            if n_dims as usize > MAX_DIMS {
                bail!(
                    "{name}: corrupt {}: it has {n_dims} dimensions, ggml allows at most {MAX_DIMS}",
                    what()
                );
            }
            let mut dims = Vec::with_capacity(n_dims as usize);
            for _ in 0..n_dims {
                dims.push(c.u64().map_err(|f| err(&what(), f))?);
            }
            let type_id = c.u32().map_err(|f| err(&what(), f))?;
            let offset = c.u64().map_err(|f| err(&what(), f))?;
            let Some(ty) = GgmlType::from_id(type_id) else {
                bail!(
                    "{name}: tensor `{tname}` has ggml type id {type_id}, which tokit does not \
                     know (it may come from a newer llama.cpp; tokit converts {})",
                    GgmlType::supported_list()
                );
            };
            if tensor_index.insert(tname.clone(), infos.len()).is_some() {
                bail!("{name}: corrupt tensor infos: tensor `{tname}` appears twice");
            }
            infos.push((tname, dims, ty, offset));
        }

        let infos_end = c.pos as u64;
        let data_start = infos_end.div_ceil(alignment) * alignment;
        let mut tensors = Vec::with_capacity(infos.len());
        for (tname, dims, ty, offset) in infos {
            let numel = dims
                .iter()
                .try_fold(1u64, |a, &d| a.checked_mul(d))
                .ok_or_else(|| {
                    anyhow!("{name}: corrupt tensor `{tname}`: dimensions {dims:?} overflow")
                })?;
            let bs = ty.block_size() as u64;
            let ne0 = dims.first().copied().unwrap_or(1);
            if !ne0.is_multiple_of(bs) {
                bail!(
                    "{name}: corrupt tensor `{tname}`: its rows have {ne0} values, not a multiple \
                     of the {bs}-value blocks of type {ty}"
                );
            }
            let n_bytes = (numel / bs)
                .checked_mul(ty.block_bytes() as u64)
                .ok_or_else(|| anyhow!("{name}: corrupt tensor `{tname}`: its size overflows"))?;
            if !offset.is_multiple_of(alignment) {
                bail!(
                    "{name}: corrupt tensor `{tname}`: its data offset {offset} is not a multiple \
                     of the alignment {alignment}"
                );
            }
            let start = data_start.checked_add(offset);
            let end = start.and_then(|s| s.checked_add(n_bytes));
            match (start, end) {
                (Some(start), Some(end)) if end <= file_len => tensors.push(TensorInfo {
                    name: tname,
                    dims,
                    ggml_type: ty,
                    start,
                    n_bytes,
                }),
                _ => bail!(
                    "{name}: tensor `{tname}` data ends at byte {} but the file has {file_len} \
                     bytes (truncated download?)",
                    data_start as u128 + offset as u128 + n_bytes as u128
                ),
            }
        }

        let mut g = Gguf {
            path,
            name,
            mmap,
            version,
            alignment,
            data_start,
            metadata,
            meta_index,
            tensors,
            tensor_index,
            hf: Err(String::new()),
        };
        g.hf = llama::HfNames::build(&g);
        Ok(g)
    }

    /// The path the file was opened from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The file name, as messages show it.
    pub fn file_name(&self) -> &str {
        &self.name
    }

    /// The GGUF version (2 or 3).
    pub fn version(&self) -> u32 {
        self.version
    }

    /// The alignment of tensor data in bytes.
    pub fn alignment(&self) -> u64 {
        self.alignment
    }

    /// Where the data section starts, in bytes from the start of the file.
    pub fn data_start(&self) -> u64 {
        self.data_start
    }

    /// The size of the file in bytes.
    pub fn file_len(&self) -> u64 {
        self.mmap.len() as u64
    }

    // ----- metadata -------------------------------------------------------------------------

    /// All metadata entries, in file order.
    pub fn metadata(&self) -> impl Iterator<Item = (&str, &MetaValue)> {
        self.metadata.iter().map(|(k, v)| (k.as_str(), v))
    }

    /// One metadata value.
    pub fn get(&self, key: &str) -> Option<&MetaValue> {
        self.meta_index.get(key).map(|&i| &self.metadata[i].1)
    }

    fn wrong_type(&self, key: &str, v: &MetaValue, expected: &str) -> anyhow::Error {
        anyhow!(
            "{}: metadata `{key}` is {}, expected {expected}",
            self.name,
            v.describe()
        )
    }

    fn missing(&self, key: &str, expected: &str) -> anyhow::Error {
        anyhow!(
            "{}: metadata `{key}` is missing (expected {expected})",
            self.name
        )
    }

    /// A string entry that may be absent; present with another type is an error.
    pub fn opt_str(&self, key: &str) -> Result<Option<&str>> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => v
                .as_str()
                .map(Some)
                .ok_or_else(|| self.wrong_type(key, v, "a string")),
        }
    }

    /// A string entry that must be present.
    pub fn get_str(&self, key: &str) -> Result<&str> {
        self.opt_str(key)?
            .ok_or_else(|| self.missing(key, "a string"))
    }

    /// A non-negative integer entry (of any integer type) that may be absent.
    pub fn opt_u64(&self, key: &str) -> Result<Option<u64>> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => v
                .as_u64()
                .map(Some)
                .ok_or_else(|| self.wrong_type(key, v, "a non-negative integer")),
        }
    }

    /// A non-negative integer entry that must be present.
    pub fn get_u64(&self, key: &str) -> Result<u64> {
        self.opt_u64(key)?
            .ok_or_else(|| self.missing(key, "a non-negative integer"))
    }

    /// A count or size: like [`Gguf::get_u64`], as usize.
    pub fn get_usize(&self, key: &str) -> Result<usize> {
        let v = self.get_u64(key)?;
        usize::try_from(v)
            .map_err(|_| anyhow!("{}: metadata `{key}` = {v} is too large", self.name))
    }

    /// A number entry (float or integer) that may be absent.
    pub fn opt_f64(&self, key: &str) -> Result<Option<f64>> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => v
                .as_f64()
                .map(Some)
                .ok_or_else(|| self.wrong_type(key, v, "a number")),
        }
    }

    /// A bool entry that may be absent.
    pub fn opt_bool(&self, key: &str) -> Result<Option<bool>> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => v
                .as_bool()
                .map(Some)
                .ok_or_else(|| self.wrong_type(key, v, "a bool")),
        }
    }

    /// An array-of-strings entry that may be absent.
    pub fn opt_str_array(&self, key: &str) -> Result<Option<Vec<&str>>> {
        let Some(v) = self.get(key) else {
            return Ok(None);
        };
        let arr = v
            .as_array()
            .ok_or_else(|| self.wrong_type(key, v, "an array of strings"))?;
        arr.iter()
            .enumerate()
            .map(|(i, e)| {
                e.as_str().ok_or_else(|| {
                    anyhow!(
                        "{}: metadata `{key}`: element {i} is {}, expected a string",
                        self.name,
                        e.describe()
                    )
                })
            })
            .collect::<Result<Vec<_>>>()
            .map(Some)
    }

    /// An array-of-integers entry that may be absent.
    pub fn opt_i64_array(&self, key: &str) -> Result<Option<Vec<i64>>> {
        let Some(v) = self.get(key) else {
            return Ok(None);
        };
        let arr = v
            .as_array()
            .ok_or_else(|| self.wrong_type(key, v, "an array of integers"))?;
        arr.iter()
            .enumerate()
            .map(|(i, e)| {
                e.as_i64().ok_or_else(|| {
                    anyhow!(
                        "{}: metadata `{key}`: element {i} is {}, expected an integer",
                        self.name,
                        e.describe()
                    )
                })
            })
            .collect::<Result<Vec<_>>>()
            .map(Some)
    }

    /// `general.architecture` (`"llama"`).
    pub fn architecture(&self) -> Result<&str> {
        self.get_str("general.architecture")
    }

    // ----- tensors by GGUF name ----------------------------------------------------------------

    /// Every tensor, in file order.
    pub fn tensors(&self) -> &[TensorInfo] {
        &self.tensors
    }

    /// One tensor's info.
    pub fn tensor_info(&self, name: &str) -> Option<&TensorInfo> {
        self.tensor_index.get(name).map(|&i| &self.tensors[i])
    }

    /// Whether the file holds a tensor of this GGUF name.
    pub fn contains(&self, name: &str) -> bool {
        self.tensor_index.contains_key(name)
    }

    /// The GGUF tensor names, in file order.
    pub fn names(&self) -> Vec<String> {
        self.tensors.iter().map(|t| t.name.clone()).collect()
    }

    /// How many tensors there are of each type, by type name.
    pub fn type_counts(&self) -> std::collections::BTreeMap<&'static str, usize> {
        let mut m = std::collections::BTreeMap::new();
        for t in &self.tensors {
            *m.entry(t.ggml_type.name()).or_insert(0) += 1;
        }
        m
    }

    fn info_or_err(&self, name: &str) -> Result<&TensorInfo> {
        self.tensor_info(name).ok_or_else(|| {
            anyhow!(
                "{}: no tensor `{name}` (the file has {} tensors)",
                self.name,
                self.tensors.len()
            )
        })
    }

    /// A tensor's raw data, as stored.
    pub fn tensor_bytes(&self, name: &str) -> Result<&[u8]> {
        let t = self.info_or_err(name)?;
        // Checked against the file's length in `open`.
        Ok(&self.mmap[t.start as usize..(t.start + t.n_bytes) as usize])
    }

    /// Checks that every tensor has a type tokit can convert to f32, naming the first that
    /// does not.
    pub fn check_supported(&self) -> Result<()> {
        match self.tensors.iter().find(|t| !t.ggml_type.is_supported()) {
            None => Ok(()),
            Some(t) => Err(self.unsupported(t)),
        }
    }

    fn unsupported(&self, t: &TensorInfo) -> anyhow::Error {
        anyhow!(
            "{}: tensor `{}` has type {}, which tokit cannot convert to f32 (supported: {})",
            self.name,
            t.name,
            t.ggml_type,
            GgmlType::supported_list()
        )
    }

    /// Reads a tensor by its GGUF name as f32 values, with its shape in PyTorch order.
    pub fn read_f32(&self, name: &str) -> Result<(Vec<usize>, Vec<f32>)> {
        let t = self.info_or_err(name)?;
        let bytes = self.tensor_bytes(name)?;
        let data = quant::dequantize(t.ggml_type, bytes).ok_or_else(|| self.unsupported(t))?;
        Ok((t.shape(), data))
    }

    /// Reads a tensor by its GGUF name as an f32 [`Tensor`] (shape in PyTorch order, no
    /// un-permuting: see [`Gguf::tensor_hf`] for Hugging Face layout).
    pub fn tensor(&self, name: &str) -> Result<Tensor> {
        let (shape, data) = self.read_f32(name)?;
        Tensor::new(shape, data).with_context(|| format!("{}: building tensor `{name}`", self.name))
    }

    // ----- tensors by Hugging Face name --------------------------------------------------------

    /// The Hugging Face names of the tensors, sorted (empty unless the architecture has a name
    /// map; see [`llama`]). Tensors the map does not know are left out.
    pub fn names_hf(&self) -> Vec<String> {
        match &self.hf {
            Ok(m) => m.names(),
            Err(_) => Vec::new(),
        }
    }

    /// The GGUF name of a Hugging Face tensor name.
    pub fn gguf_name_of(&self, hf_name: &str) -> Option<&str> {
        self.hf.as_ref().ok()?.get(hf_name).map(|e| e.gguf.as_str())
    }

    /// The Hugging Face shape (`[out, in]` for a matrix) of a tensor given by its Hugging Face
    /// name.
    pub fn shape_hf(&self, hf_name: &str) -> Option<Vec<usize>> {
        self.tensor_info(self.gguf_name_of(hf_name)?)
            .map(TensorInfo::shape)
    }

    /// Reads a tensor by its Hugging Face name (`model.layers.0.self_attn.q_proj.weight`) as
    /// f32 in Hugging Face layout: shape `[out, in]`, Q and K rows un-permuted.
    pub fn tensor_hf(&self, hf_name: &str) -> Result<Tensor> {
        let map = self
            .hf
            .as_ref()
            .map_err(|why| anyhow!("{}: {why}", self.name))?;
        let entry = map.get(hf_name).ok_or_else(|| {
            anyhow!(
                "{}: no tensor with the Hugging Face name `{hf_name}` (the file maps {} names, \
                 e.g. `model.layers.0.self_attn.q_proj.weight`)",
                self.name,
                map.len()
            )
        })?;
        let (shape, mut data) = self.read_f32(&entry.gguf)?;
        if let Some(heads) = entry.unpermute_heads {
            llama::unpermute_rows(&mut data, &shape, heads)
                .map_err(|e| anyhow!("{}: tensor `{}`: {e}", self.name, entry.gguf))?;
        }
        Tensor::new(shape, data)
            .with_context(|| format!("{}: building tensor `{hf_name}`", self.name))
    }
}

#[cfg(test)]
mod tests;
