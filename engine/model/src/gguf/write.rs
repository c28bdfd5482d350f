//! A small GGUF writer, for tests and tiny fixture models (not for converting real models).
//!
//! It writes what [`Gguf::open`](super::Gguf::open) reads: the header, metadata entries in the
//! order given, tensor infos, and each tensor's data padded to the alignment
//! (`general.alignment` if set, else 32).

use std::path::Path;

use anyhow::{anyhow, Result};

use super::{value_type, GgmlType, MetaValue, DEFAULT_ALIGNMENT, MAGIC};

/// A GGUF file being put together.
#[derive(Debug, Clone)]
pub struct GgufWriter {
    version: u32,
    kvs: Vec<(String, MetaValue)>,
    /// (name, dims in GGUF order, type, raw data)
    tensors: Vec<(String, Vec<u64>, u32, Vec<u8>)>,
}

impl Default for GgufWriter {
    fn default() -> Self {
        GgufWriter::new()
    }
}

fn type_id(v: &MetaValue) -> u32 {
    use value_type as t;
    match v {
        MetaValue::U8(_) => t::U8,
        MetaValue::I8(_) => t::I8,
        MetaValue::U16(_) => t::U16,
        MetaValue::I16(_) => t::I16,
        MetaValue::U32(_) => t::U32,
        MetaValue::I32(_) => t::I32,
        MetaValue::F32(_) => t::F32,
        MetaValue::Bool(_) => t::BOOL,
        MetaValue::String(_) => t::STRING,
        MetaValue::Array(_) => t::ARRAY,
        MetaValue::U64(_) => t::U64,
        MetaValue::I64(_) => t::I64,
        MetaValue::F64(_) => t::F64,
    }
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(&(s.len() as u64).to_le_bytes());
    out.extend_from_slice(s.as_bytes());
}

/// The value's bytes, without its type id.
fn put_value(out: &mut Vec<u8>, v: &MetaValue) {
    match v {
        MetaValue::U8(x) => out.push(*x),
        MetaValue::I8(x) => out.push(*x as u8),
        MetaValue::U16(x) => out.extend_from_slice(&x.to_le_bytes()),
        MetaValue::I16(x) => out.extend_from_slice(&x.to_le_bytes()),
        MetaValue::U32(x) => out.extend_from_slice(&x.to_le_bytes()),
        MetaValue::I32(x) => out.extend_from_slice(&x.to_le_bytes()),
        MetaValue::F32(x) => out.extend_from_slice(&x.to_le_bytes()),
        MetaValue::Bool(x) => out.push(u8::from(*x)),
        MetaValue::String(s) => put_str(out, s),
        MetaValue::Array(items) => {
            // An empty array says "string"; the element type of the others is the first's.
            let elem = items.first().map_or(value_type::STRING, type_id);
            out.extend_from_slice(&elem.to_le_bytes());
            out.extend_from_slice(&(items.len() as u64).to_le_bytes());
            for it in items {
                put_value(out, it);
            }
        }
        MetaValue::U64(x) => out.extend_from_slice(&x.to_le_bytes()),
        MetaValue::I64(x) => out.extend_from_slice(&x.to_le_bytes()),
        MetaValue::F64(x) => out.extend_from_slice(&x.to_le_bytes()),
    }
}

impl GgufWriter {
    /// An empty version-3 file.
    pub fn new() -> GgufWriter {
        GgufWriter {
            version: 3,
            kvs: Vec::new(),
            tensors: Vec::new(),
        }
    }

    /// Sets the version written in the header (any number, to test readers).
    pub fn version(&mut self, version: u32) -> &mut Self {
        self.version = version;
        self
    }

    /// Replaces the value of a metadata entry already added (or adds it).
    pub fn set_kv(&mut self, key: &str, value: MetaValue) -> &mut Self {
        match self.kvs.iter_mut().find(|(k, _)| k == key) {
            Some(kv) => kv.1 = value,
            None => self.kvs.push((key.to_owned(), value)),
        }
        self
    }

    /// Adds a metadata entry.
    pub fn kv(&mut self, key: &str, value: MetaValue) -> &mut Self {
        self.kvs.push((key.to_owned(), value));
        self
    }

    /// Adds a string metadata entry.
    pub fn kv_str(&mut self, key: &str, value: &str) -> &mut Self {
        self.kv(key, MetaValue::String(value.to_owned()))
    }

    /// Adds a u32 metadata entry.
    pub fn kv_u32(&mut self, key: &str, value: u32) -> &mut Self {
        self.kv(key, MetaValue::U32(value))
    }

    /// Adds an array-of-strings metadata entry.
    pub fn kv_strs(&mut self, key: &str, values: &[&str]) -> &mut Self {
        self.kv(
            key,
            MetaValue::Array(
                values
                    .iter()
                    .map(|s| MetaValue::String((*s).into()))
                    .collect(),
            ),
        )
    }

    /// Adds a tensor of any type from its raw bytes; `shape` is in PyTorch order (outermost
    /// first) and written reversed, as GGUF does. The bytes are not checked.
    pub fn tensor_raw(
        &mut self,
        name: &str,
        shape: &[usize],
        ty: GgmlType,
        data: Vec<u8>,
    ) -> &mut Self {
        self.tensor_raw_id(name, shape, ty.id(), data)
    }

    /// Like [`GgufWriter::tensor_raw`] with a ggml type id (to test unknown ids).
    pub fn tensor_raw_id(
        &mut self,
        name: &str,
        shape: &[usize],
        type_id: u32,
        data: Vec<u8>,
    ) -> &mut Self {
        let dims = shape.iter().rev().map(|&d| d as u64).collect();
        self.tensors.push((name.to_owned(), dims, type_id, data));
        self
    }

    /// Adds an F32 tensor; `shape` is in PyTorch order.
    pub fn tensor_f32(&mut self, name: &str, shape: &[usize], data: &[f32]) -> &mut Self {
        let bytes = data.iter().flat_map(|v| v.to_le_bytes()).collect();
        self.tensor_raw(name, shape, GgmlType::F32, bytes)
    }

    fn alignment(&self) -> u64 {
        self.kvs
            .iter()
            .find(|(k, _)| k == "general.alignment")
            .and_then(|(_, v)| v.as_u64())
            .filter(|a| *a > 0)
            .unwrap_or(DEFAULT_ALIGNMENT)
    }

    /// The file's bytes.
    pub fn to_bytes(&self) -> Vec<u8> {
        let align = self.alignment() as usize;
        let pad = |n: usize| n.div_ceil(align) * align;
        let mut out = Vec::new();
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&self.version.to_le_bytes());
        out.extend_from_slice(&(self.tensors.len() as u64).to_le_bytes());
        out.extend_from_slice(&(self.kvs.len() as u64).to_le_bytes());
        for (k, v) in &self.kvs {
            put_str(&mut out, k);
            out.extend_from_slice(&type_id(v).to_le_bytes());
            put_value(&mut out, v);
        }
        let mut offset = 0usize;
        for (name, dims, ty, data) in &self.tensors {
            put_str(&mut out, name);
            out.extend_from_slice(&(dims.len() as u32).to_le_bytes());
            for d in dims {
                out.extend_from_slice(&d.to_le_bytes());
            }
            out.extend_from_slice(&ty.to_le_bytes());
            out.extend_from_slice(&(offset as u64).to_le_bytes());
            offset = pad(offset + data.len());
        }
        out.resize(pad(out.len()), 0);
        for (_, _, _, data) in &self.tensors {
            out.extend_from_slice(data);
            out.resize(pad(out.len()), 0);
        }
        out
    }

    /// Writes the file.
    pub fn write(&self, path: impl AsRef<Path>) -> Result<()> {
        let path = path.as_ref();
        std::fs::write(path, self.to_bytes())
            .map_err(|e| anyhow!("writing {}: {e}", path.display()))
    }
}
