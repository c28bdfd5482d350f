//! Model weights: memory-mapped safetensors files, read as f32 [`Tensor`]s.
//!
//! [`Weights::open`] finds a model's weight files in one of three layouts, in this order:
//! a single `model.safetensors`; a sharded checkpoint described by
//! `model.safetensors.index.json` (its `weight_map` maps tensor names to shard files); or
//! else every `*.safetensors` file in the directory, sorted by name. Each file's header is
//! validated when it is opened, so a truncated download or a corrupt file is reported up
//! front, naming the file and what is wrong with it.
//!
//! Tensors stored as F32, F16 or BF16 are converted to f32 on read; other dtypes are an error.
//! [`save_safetensors`] writes f32 tensors atomically (temporary file, then rename), and
//! [`fingerprint`] gives a cheap 64-bit hash of a model directory for provenance records.

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};
use half::prelude::*;
use memmap2::Mmap;
use safetensors::tensor::Metadata;
use safetensors::SafeTensors;
use serde_json::Value;
use tokit_compute::Tensor;

pub use safetensors::Dtype;

/// The name of a single-file checkpoint.
pub const SINGLE_FILE: &str = "model.safetensors";
/// The name of a sharded checkpoint's index.
pub const INDEX_FILE: &str = "model.safetensors.index.json";

/// The largest header the safetensors format allows.
const MAX_HEADER: u64 = 100_000_000;

/// One opened safetensors file.
struct WeightFile {
    /// File name, as shown in messages.
    name: String,
    path: PathBuf,
    mmap: Mmap,
    /// Offset of the data section (8 + header length).
    data_start: usize,
    metadata: Metadata,
}

impl std::fmt::Debug for WeightFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WeightFile")
            .field("path", &self.path)
            .field("bytes", &self.mmap.len())
            .field("tensors", &self.metadata.tensors().len())
            .finish()
    }
}

/// The weights of a model: one or more memory-mapped safetensors files.
#[derive(Debug)]
pub struct Weights {
    dir: PathBuf,
    files: Vec<WeightFile>,
    /// Tensor name -> index into `files`.
    index: BTreeMap<String, usize>,
}

impl Weights {
    /// Opens the weights of a model directory (see the module docs for the layouts
    /// understood), or a single `.safetensors` file.
    pub fn open(path: impl AsRef<Path>) -> Result<Weights> {
        let path = path.as_ref();
        if path.is_file() {
            let dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
            let file = open_file(path)?;
            let index = file
                .metadata
                .tensors()
                .into_keys()
                .map(|name| (name, 0))
                .collect();
            return Ok(Weights {
                dir,
                files: vec![file],
                index,
            });
        }
        if !path.is_dir() {
            bail!(
                "model directory {}: no such directory (expected a Hugging Face model directory \
                 with config.json, *.safetensors and tokenizer.json)",
                path.display()
            );
        }
        match find_layout(path)? {
            Layout::Single(file) => {
                let file = open_file(&file)?;
                let index = file
                    .metadata
                    .tensors()
                    .into_keys()
                    .map(|name| (name, 0))
                    .collect();
                Ok(Weights {
                    dir: path.to_path_buf(),
                    files: vec![file],
                    index,
                })
            }
            Layout::Sharded {
                index_path,
                weight_map,
                shards,
            } => open_sharded(path, &index_path, &weight_map, &shards),
            Layout::All(paths) => {
                let files = paths
                    .iter()
                    .map(|p| open_file(p))
                    .collect::<Result<Vec<_>>>()?;
                let mut index: BTreeMap<String, usize> = BTreeMap::new();
                for (i, f) in files.iter().enumerate() {
                    for name in f.metadata.tensors().into_keys() {
                        if let Some(&j) = index.get(&name) {
                            bail!(
                                "{}: tensor `{}` is stored in both {} and {}; remove the \
                                 duplicate file or add a {}",
                                path.display(),
                                name,
                                files[j].name,
                                f.name,
                                INDEX_FILE
                            );
                        }
                        index.insert(name, i);
                    }
                }
                Ok(Weights {
                    dir: path.to_path_buf(),
                    files,
                    index,
                })
            }
        }
    }

    /// The directory the weights were read from.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The weight files, in the order they were opened.
    pub fn files(&self) -> Vec<&Path> {
        self.files.iter().map(|f| f.path.as_path()).collect()
    }

    /// All tensor names, sorted.
    pub fn names(&self) -> Vec<String> {
        self.index.keys().cloned().collect()
    }

    /// The number of tensors.
    pub fn len(&self) -> usize {
        self.index.len()
    }

    /// Whether there are no tensors at all.
    pub fn is_empty(&self) -> bool {
        self.index.is_empty()
    }

    /// Whether a tensor exists.
    pub fn contains(&self, name: &str) -> bool {
        self.index.contains_key(name)
    }

    /// The stored dtype and shape of a tensor.
    pub fn info(&self, name: &str) -> Option<(Dtype, Vec<usize>)> {
        let file = &self.files[*self.index.get(name)?];
        let info = file.metadata.info(name)?;
        Some((info.dtype, info.shape.clone()))
    }

    /// The stored shape of a tensor.
    pub fn shape(&self, name: &str) -> Option<Vec<usize>> {
        self.info(name).map(|(_, shape)| shape)
    }

    /// The file a tensor is stored in.
    pub fn file_of(&self, name: &str) -> Option<&Path> {
        Some(self.files[*self.index.get(name)?].path.as_path())
    }

    /// The `__metadata__` map of each file that has one, keyed by file name.
    pub fn file_metadata(&self) -> BTreeMap<String, HashMap<String, String>> {
        self.files
            .iter()
            .filter_map(|f| Some((f.name.clone(), f.metadata.metadata().clone()?)))
            .collect()
    }

    fn lookup(&self, name: &str) -> Result<&WeightFile> {
        match self.index.get(name) {
            Some(&i) => Ok(&self.files[i]),
            None => Err(self.not_found(name)),
        }
    }

    fn not_found(&self, name: &str) -> anyhow::Error {
        let searched = if self.files.len() <= 4 {
            self.files
                .iter()
                .map(|f| f.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        } else {
            format!(
                "{}, {} and {} more files",
                self.files[0].name,
                self.files[1].name,
                self.files.len() - 2
            )
        };
        let mut msg = format!(
            "tensor `{name}` not found in the weights of {} (searched {searched})",
            self.dir.display()
        );
        if let Some(s) = suggest(name, self.index.keys()) {
            msg.push_str(&format!("; did you mean `{s}`?"));
        }
        anyhow!(msg)
    }

    /// Reads a tensor as f32 values with its shape, converting F16 and BF16.
    pub fn read_f32(&self, name: &str) -> Result<(Vec<usize>, Vec<f32>)> {
        let file = self.lookup(name)?;
        let info = file
            .metadata
            .info(name)
            .ok_or_else(|| self.not_found(name))?;
        let (start, end) = info.data_offsets;
        let bytes = file
            .mmap
            .get(file.data_start + start..file.data_start + end)
            .ok_or_else(|| {
                anyhow!(
                    "{}: tensor `{}` lies outside the file (truncated or corrupt)",
                    file.name,
                    name
                )
            })?;
        let numel: usize = info.shape.iter().product();
        let width = match info.dtype {
            Dtype::F32 => 4,
            Dtype::F16 | Dtype::BF16 => 2,
            other => bail!(
                "{}: tensor `{}` has dtype {:?}, which tokit cannot read (supported: F32, F16, \
                 BF16)",
                file.name,
                name,
                other
            ),
        };
        if bytes.len() != numel * width {
            bail!(
                "{}: tensor `{}` of shape {:?} and dtype {:?} should have {} bytes but has {} \
                 (corrupt file)",
                file.name,
                name,
                info.shape,
                info.dtype,
                numel * width,
                bytes.len()
            );
        }
        let data = match info.dtype {
            Dtype::F32 => bytes
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect(),
            Dtype::F16 => {
                let bits = le_u16(bytes);
                let mut out = vec![0f32; numel];
                bits.reinterpret_cast::<f16>()
                    .convert_to_f32_slice(&mut out);
                out
            }
            _ => {
                let bits = le_u16(bytes);
                let mut out = vec![0f32; numel];
                bits.reinterpret_cast::<bf16>()
                    .convert_to_f32_slice(&mut out);
                out
            }
        };
        Ok((info.shape.clone(), data))
    }

    /// Reads a tensor as an f32 [`Tensor`], converting F16 and BF16.
    pub fn tensor(&self, name: &str) -> Result<Tensor> {
        let (shape, data) = self.read_f32(name)?;
        let file = self.lookup(name)?;
        Tensor::new(shape, data)
            .with_context(|| format!("{}: building tensor `{}`", file.name, name))
    }

    /// Checks that a tensor exists and has the shape the config implies.
    pub fn shape_check(&self, name: &str, expected: &[usize]) -> Result<()> {
        let file = self.lookup(name)?;
        let shape = file
            .metadata
            .info(name)
            .map(|i| i.shape.as_slice())
            .ok_or_else(|| self.not_found(name))?;
        if shape != expected {
            bail!(
                "tensor `{}` in {} has shape {:?} but the config implies {:?}",
                name,
                file.name,
                shape,
                expected
            );
        }
        Ok(())
    }
}

/// Little-endian u16 values of a byte slice (copied: mapped data need not be aligned).
fn le_u16(bytes: &[u8]) -> Vec<u16> {
    bytes
        .chunks_exact(2)
        .map(|c| u16::from_le_bytes([c[0], c[1]]))
        .collect()
}

/// A close match for a missing tensor name: a name one is a suffix of the other (a missing or
/// extra `model.` prefix), or else the nearest by edit distance if it is near enough.
fn suggest<'a>(name: &str, names: impl Iterator<Item = &'a String> + Clone) -> Option<&'a str> {
    if let Some(s) = names
        .clone()
        .filter(|n| n.ends_with(name) || name.ends_with(n.as_str()))
        .min_by_key(|n| n.len().abs_diff(name.len()))
    {
        return Some(s);
    }
    let limit = (name.len() / 4).max(2);
    names
        .filter(|n| n.len().abs_diff(name.len()) <= limit)
        .map(|n| (edit_distance(name, n), n))
        .filter(|(d, _)| *d <= limit)
        .min_by_key(|(d, _)| *d)
        .map(|(_, n)| n.as_str())
}

fn edit_distance(a: &str, b: &str) -> usize {
    let a = a.as_bytes();
    let b = b.as_bytes();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    let mut cur = vec![0; b.len() + 1];
    for (i, &ca) in a.iter().enumerate() {
        cur[0] = i + 1;
        for (j, &cb) in b.iter().enumerate() {
            let sub = prev[j] + usize::from(ca != cb);
            cur[j + 1] = sub.min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        std::mem::swap(&mut prev, &mut cur);
    }
    prev[b.len()]
}

enum Layout {
    Single(PathBuf),
    Sharded {
        index_path: PathBuf,
        weight_map: BTreeMap<String, String>,
        shards: Vec<PathBuf>,
    },
    All(Vec<PathBuf>),
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| path.display().to_string())
}

/// Works out which files hold a directory's weights.
fn find_layout(dir: &Path) -> Result<Layout> {
    let single = dir.join(SINGLE_FILE);
    if single.is_file() {
        return Ok(Layout::Single(single));
    }
    let index_path = dir.join(INDEX_FILE);
    if index_path.is_file() {
        let (weight_map, shards) = read_index(dir, &index_path)?;
        return Ok(Layout::Sharded {
            index_path,
            weight_map,
            shards,
        });
    }
    let all = list_safetensors(dir)?;
    if all.is_empty() {
        bail!(
            "model directory {}: no weights (expected {}, {} with its shards, or other \
             *.safetensors files)",
            dir.display(),
            SINGLE_FILE,
            INDEX_FILE
        );
    }
    Ok(Layout::All(all))
}

/// All `*.safetensors` files in a directory, sorted.
fn list_safetensors(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut all = Vec::new();
    let entries = std::fs::read_dir(dir).with_context(|| format!("listing {}", dir.display()))?;
    for entry in entries {
        let entry = entry.with_context(|| format!("listing {}", dir.display()))?;
        let p = entry.path();
        if p.extension().is_some_and(|e| e == "safetensors") && p.is_file() {
            all.push(p);
        }
    }
    all.sort();
    Ok(all)
}

/// Reads a sharded checkpoint's index: its weight map and the shard files, each verified to
/// exist, in sorted order.
fn read_index(dir: &Path, index_path: &Path) -> Result<(BTreeMap<String, String>, Vec<PathBuf>)> {
    let text =
        crate::read::read_text_bounded(index_path, "safetensors index", crate::read::INDEX_LIMIT)?;
    let value: Value = serde_json::from_str(&text)
        .with_context(|| format!("{}: not valid JSON", index_path.display()))?;
    let map = value
        .get("weight_map")
        .and_then(Value::as_object)
        .ok_or_else(|| {
            anyhow!(
                "{}: no `weight_map` object (expected {{\"weight_map\": {{tensor name: shard \
                 file}}}})",
                index_path.display()
            )
        })?;
    let mut weight_map = BTreeMap::new();
    for (name, shard) in map {
        let shard = shard.as_str().ok_or_else(|| {
            anyhow!(
                "{}: weight_map entry `{}` should name a shard file, found {}",
                index_path.display(),
                name,
                shard
            )
        })?;
        weight_map.insert(name.clone(), shard.to_owned());
    }
    if weight_map.is_empty() {
        bail!("{}: weight_map is empty", index_path.display());
    }
    let mut shard_names: Vec<&String> = weight_map.values().collect();
    shard_names.sort();
    shard_names.dedup();
    let mut shards = Vec::with_capacity(shard_names.len());
    for shard in shard_names {
        // A shard is a file of the model directory: a name that climbs out of it
        // (`../../etc/passwd`) or is absolute is refused rather than followed.
        let inside = Path::new(shard)
            .components()
            .all(|c| matches!(c, std::path::Component::Normal(_)));
        if !inside {
            bail!(
                "{}: weight_map names shard {:?}, which is outside the model directory {} \
                 (expected a file name such as model-00001-of-00002.safetensors)",
                index_path.display(),
                shard,
                dir.display()
            );
        }
        let p = dir.join(shard);
        if !p.is_file() {
            bail!(
                "{}: shard {} is missing from {} (an incomplete download?)",
                INDEX_FILE,
                shard,
                dir.display()
            );
        }
        shards.push(p);
    }
    Ok((weight_map, shards))
}

fn open_sharded(
    dir: &Path,
    index_path: &Path,
    weight_map: &BTreeMap<String, String>,
    shards: &[PathBuf],
) -> Result<Weights> {
    let files = shards
        .iter()
        .map(|p| open_file(p))
        .collect::<Result<Vec<_>>>()?;
    let by_name: HashMap<String, usize> = shards
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let rel = p
                .strip_prefix(dir)
                .map(|r| r.to_string_lossy().into_owned())
                .unwrap_or_else(|_| file_name(p));
            (rel, i)
        })
        .collect();
    let mut index = BTreeMap::new();
    for (name, shard) in weight_map {
        let i = *by_name
            .get(shard.as_str())
            .ok_or_else(|| anyhow!("{}: internal error: shard {} not opened", INDEX_FILE, shard))?;
        if files[i].metadata.info(name).is_none() {
            bail!(
                "{}: tensor `{}` is mapped to {}, which does not contain it",
                index_path.display(),
                name,
                shard
            );
        }
        index.insert(name.clone(), i);
    }
    // Tensors a shard holds that the index does not mention are still readable.
    for (i, f) in files.iter().enumerate() {
        for name in f.metadata.tensors().into_keys() {
            index.entry(name).or_insert(i);
        }
    }
    Ok(Weights {
        dir: dir.to_path_buf(),
        files,
        index,
    })
}

/// Reads the 8-byte header length and the header bytes of a safetensors file.
fn read_header(file: &mut File, name: &str, len: u64) -> Result<(u64, Vec<u8>)> {
    if len < 8 {
        bail!(
            "{name}: truncated or corrupt: the file has {len} bytes, fewer than the 8-byte \
             safetensors header length"
        );
    }
    let mut n_bytes = [0u8; 8];
    file.read_exact(&mut n_bytes)
        .with_context(|| format!("{name}: reading the header length"))?;
    let n = u64::from_le_bytes(n_bytes);
    if n > MAX_HEADER {
        bail!(
            "{name}: not a safetensors file: it declares a {n}-byte header (the format allows at \
             most {MAX_HEADER})"
        );
    }
    if 8 + n > len {
        bail!(
            "{name}: truncated or corrupt: header declares {n} header bytes but the file has \
             only {} after the length",
            len - 8
        );
    }
    let mut header = vec![0u8; n as usize];
    file.read_exact(&mut header)
        .with_context(|| format!("{name}: reading the header"))?;
    Ok((n, header))
}

/// Checks one header entry before the safetensors crate sees it, so that a lying header
/// gives an error naming the tensor: a known dtype, a shape whose size does not overflow,
/// and data offsets that span exactly that many bytes inside the file.
fn check_entry(file: &str, tensor: &str, entry: &Value, available: u64) -> Result<()> {
    let bad = |what: String| anyhow!("{file}: tensor `{tensor}`: {what} (corrupt header)");
    let dtype: Dtype = entry
        .get("dtype")
        .cloned()
        .and_then(|d| serde_json::from_value(d).ok())
        .ok_or_else(|| {
            bad(format!(
                "dtype {} is not a safetensors dtype",
                entry["dtype"]
            ))
        })?;
    let shape = entry
        .get("shape")
        .and_then(Value::as_array)
        .and_then(|a| a.iter().map(Value::as_u64).collect::<Option<Vec<u64>>>())
        .ok_or_else(|| bad(format!("shape {} is not a list of sizes", entry["shape"])))?;
    let bits = shape
        .iter()
        .try_fold(dtype.bitsize() as u64, |acc, &d| acc.checked_mul(d))
        .filter(|b| b % 8 == 0)
        .ok_or_else(|| {
            bad(format!(
                "shape {shape:?} of {dtype:?} overflows or is not whole bytes"
            ))
        })?;
    let offsets = entry
        .get("data_offsets")
        .and_then(Value::as_array)
        .and_then(|a| a.iter().map(Value::as_u64).collect::<Option<Vec<u64>>>())
        .filter(|o| o.len() == 2)
        .ok_or_else(|| {
            bad(format!(
                "data_offsets {} is not [start, end]",
                entry["data_offsets"]
            ))
        })?;
    let (start, end) = (offsets[0], offsets[1]);
    if start > end || end > available {
        return Err(bad(format!(
            "data_offsets [{start}, {end}] do not lie within the {available} data bytes of the file"
        )));
    }
    if end - start != bits / 8 {
        return Err(bad(format!(
            "shape {shape:?} of {dtype:?} needs {} bytes but data_offsets [{start}, {end}] give {}",
            bits / 8,
            end - start
        )));
    }
    Ok(())
}

/// Opens and validates one safetensors file.
fn open_file(path: &Path) -> Result<WeightFile> {
    let name = file_name(path);
    let mut file =
        File::open(path).with_context(|| format!("opening weights {}", path.display()))?;
    let len = file
        .metadata()
        .with_context(|| format!("reading {}", path.display()))?
        .len();
    let (n, header) = read_header(&mut file, &name, len)?;
    let text = std::str::from_utf8(&header)
        .map_err(|e| anyhow!("{name}: corrupt header: not UTF-8 ({e})"))?;
    let json: Value = serde_json::from_str(text)
        .map_err(|e| anyhow!("{name}: corrupt header: not valid JSON ({e})"))?;
    let obj = json
        .as_object()
        .ok_or_else(|| anyhow!("{name}: corrupt header: not a JSON object"))?;
    let available = len - 8 - n;
    // The end of the data the header declares: past the file's end, the file was cut short.
    let last = obj
        .iter()
        .filter(|(k, _)| k.as_str() != "__metadata__")
        .filter_map(|(k, v)| Some((v.get("data_offsets")?.get(1)?.as_u64()?, k)))
        .max();
    if let Some((declared, tensor)) = last.filter(|(end, _)| *end > available) {
        bail!(
            "{name}: truncated or corrupt: header declares {declared} data bytes (to the end of \
             tensor `{tensor}`) but the file has {available}"
        );
    }
    for (tensor, entry) in obj.iter().filter(|(k, _)| k.as_str() != "__metadata__") {
        check_entry(&name, tensor, entry, available)?;
    }
    // SAFETY: the map is read-only. Mutating the file while it is mapped (which no part of
    // tokit does; `save_safetensors` replaces files by rename, leaving existing maps intact)
    // would be the only way to make the mapped bytes change under us.
    let mmap = unsafe { Mmap::map(&file) }
        .with_context(|| format!("memory-mapping {}", path.display()))?;
    let metadata = match SafeTensors::read_metadata(&mmap) {
        Ok((_, metadata)) => metadata,
        Err(e) => bail!("{name}: invalid safetensors file: {e}"),
    };
    Ok(WeightFile {
        name,
        path: path.to_path_buf(),
        mmap,
        data_start: 8 + n as usize,
        metadata,
    })
}

/// Writes f32 tensors to a safetensors file atomically: the data goes to a temporary file in
/// the same directory, which is then renamed over `path`, so readers (and existing memory maps
/// of an older file) never see a half-written file.
pub fn save_safetensors(
    path: impl AsRef<Path>,
    tensors: &[(&str, &Tensor)],
    metadata: Option<HashMap<String, String>>,
) -> Result<()> {
    let path = path.as_ref();
    let views: Vec<(&str, &[usize], &[f32])> = tensors
        .iter()
        .map(|(name, t)| (*name, t.shape(), t.data()))
        .collect();
    save_f32(path, &views, metadata)
}

/// [`save_safetensors`] over raw `(name, shape, data)` triples.
pub fn save_f32(
    path: &Path,
    tensors: &[(&str, &[usize], &[f32])],
    metadata: Option<HashMap<String, String>>,
) -> Result<()> {
    let mut sorted: Vec<&(&str, &[usize], &[f32])> = tensors.iter().collect();
    sorted.sort_by(|a, b| a.0.cmp(b.0));
    let mut header = serde_json::Map::new();
    if let Some(meta) = metadata {
        let meta: serde_json::Map<String, Value> = meta
            .into_iter()
            .map(|(k, v)| (k, Value::String(v)))
            .collect();
        header.insert("__metadata__".to_owned(), Value::Object(meta));
    }
    let mut offset = 0usize;
    for (name, shape, data) in &sorted {
        let numel: usize = shape.iter().product();
        if numel != data.len() {
            bail!(
                "{}: tensor `{}` has shape {:?} ({} values) but {} values of data",
                path.display(),
                name,
                shape,
                numel,
                data.len()
            );
        }
        if *name == "__metadata__" || header.contains_key(*name) {
            bail!(
                "{}: tensor name `{}` is reserved or given twice",
                path.display(),
                name
            );
        }
        let end = offset + 4 * data.len();
        header.insert(
            (*name).to_owned(),
            serde_json::json!({"dtype": "F32", "shape": shape, "data_offsets": [offset, end]}),
        );
        offset = end;
    }
    let mut header = serde_json::to_vec(&Value::Object(header))
        .with_context(|| format!("{}: serializing the header", path.display()))?;
    header.resize(header.len().next_multiple_of(8), b' ');

    crate::atomic::write_atomically(path, |w| {
        w.write_all(&(header.len() as u64).to_le_bytes())?;
        w.write_all(&header)?;
        let mut buf = Vec::with_capacity(1 << 16);
        for (_, _, data) in &sorted {
            for chunk in data.chunks(1 << 14) {
                buf.clear();
                for v in chunk {
                    buf.extend_from_slice(&v.to_le_bytes());
                }
                w.write_all(&buf)?;
            }
        }
        Ok(())
    })
}

/// 64-bit FNV-1a.
struct Fnv(u64);

impl Fnv {
    fn new() -> Fnv {
        Fnv(0xcbf2_9ce4_8422_2325)
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 ^= u64::from(b);
            self.0 = self.0.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
    /// Writes a length-prefixed field, so field boundaries cannot be confused.
    fn field(&mut self, bytes: &[u8]) {
        self.write(&(bytes.len() as u64).to_le_bytes());
        self.write(bytes);
    }
}

/// The number of data windows sampled per weight file by [`fingerprint`].
const FINGERPRINT_WINDOWS: u64 = 16;
/// The size of each sampled window.
const FINGERPRINT_WINDOW: u64 = 4096;

/// A cheap 64-bit hash of a model directory for provenance, as 16 hex digits.
///
/// It covers `config.json` and `tokenizer.json` (whole), and for each weight file its name,
/// length, header and 16 evenly spaced 4 KiB windows of its data, so that two fine-tunes with
/// identical layouts still differ. Files that are missing or unreadable are skipped (the hash
/// then differs from that of a complete directory); it never fails.
pub fn fingerprint(dir: impl AsRef<Path>) -> String {
    let dir = dir.as_ref();
    let mut h = Fnv::new();
    for name in ["config.json", "tokenizer.json"] {
        h.field(name.as_bytes());
        match std::fs::read(dir.join(name)) {
            Ok(bytes) => h.field(&bytes),
            Err(_) => h.field(b"<absent>"),
        }
    }
    let files = if dir.is_file() {
        vec![dir.to_path_buf()]
    } else {
        match find_layout(dir) {
            Ok(Layout::Single(p)) => vec![p],
            Ok(Layout::Sharded { shards, .. }) => shards,
            Ok(Layout::All(all)) => all,
            Err(_) => Vec::new(),
        }
    };
    for path in files {
        h.field(file_name(&path).as_bytes());
        if let Err(e) = hash_weight_file(&mut h, &path) {
            h.field(e.kind().to_string().as_bytes());
        }
    }
    format!("{:016x}", h.0)
}

fn hash_weight_file(h: &mut Fnv, path: &Path) -> std::io::Result<()> {
    let mut file = File::open(path)?;
    let len = file.metadata()?.len();
    h.write(&len.to_le_bytes());
    let mut n_bytes = [0u8; 8];
    if len < 8 {
        return Ok(());
    }
    file.read_exact(&mut n_bytes)?;
    let n = u64::from_le_bytes(n_bytes).min(MAX_HEADER).min(len - 8);
    let mut header = vec![0u8; n as usize];
    file.read_exact(&mut header)?;
    h.field(&header);
    let data_start = 8 + n;
    let data_len = len - data_start;
    if data_len == 0 {
        return Ok(());
    }
    let mut window = vec![0u8; FINGERPRINT_WINDOW as usize];
    for i in 0..FINGERPRINT_WINDOWS {
        let at = data_start
            + data_len.saturating_sub(FINGERPRINT_WINDOW) * i / (FINGERPRINT_WINDOWS - 1);
        let take = FINGERPRINT_WINDOW.min(len - at) as usize;
        file.seek(SeekFrom::Start(at))?;
        file.read_exact(&mut window[..take])?;
        h.field(&window[..take]);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use safetensors::tensor::TensorView;

    /// Writes a safetensors file with the crate's own serializer.
    fn write_st(path: &Path, tensors: &[(&str, Dtype, Vec<usize>, Vec<u8>)]) {
        let views: Vec<(String, TensorView<'_>)> = tensors
            .iter()
            .map(|(n, d, s, b)| (n.to_string(), TensorView::new(*d, s.clone(), b).unwrap()))
            .collect();
        let bytes = safetensors::serialize(views, None).unwrap();
        std::fs::write(path, bytes).unwrap();
    }

    fn f32_bytes(v: &[f32]) -> Vec<u8> {
        v.iter().flat_map(|x| x.to_le_bytes()).collect()
    }

    #[test]
    fn single_file_f32_f16_bf16() {
        let dir = tempfile::tempdir().unwrap();
        let vals = [1.0f32, -2.5, 0.099975586, 65504.0, 0.0, -0.0];
        let f16b: Vec<u8> = vals
            .iter()
            .flat_map(|&x| f16::from_f32(x).to_bits().to_le_bytes())
            .collect();
        let bvals = [1.0f32, -2.5, 3.140625, 1.0e30, -7.0, 0.5];
        let bf16b: Vec<u8> = bvals
            .iter()
            .flat_map(|&x| bf16::from_f32(x).to_bits().to_le_bytes())
            .collect();
        write_st(
            &dir.path().join(SINGLE_FILE),
            &[
                ("a.f32", Dtype::F32, vec![2, 3], f32_bytes(&vals)),
                ("b.f16", Dtype::F16, vec![3, 2], f16b),
                ("c.bf16", Dtype::BF16, vec![6], bf16b),
                ("d.i64", Dtype::I64, vec![1], vec![0u8; 8]),
            ],
        );
        let w = Weights::open(dir.path()).unwrap();
        assert_eq!(w.names(), vec!["a.f32", "b.f16", "c.bf16", "d.i64"]);
        assert_eq!(w.info("b.f16"), Some((Dtype::F16, vec![3, 2])));
        assert_eq!(w.info("nope"), None);
        let (shape, a) = w.read_f32("a.f32").unwrap();
        assert_eq!(shape, vec![2, 3]);
        assert_eq!(a, vals);
        let (_, b) = w.read_f32("b.f16").unwrap();
        assert_eq!(b[0], 1.0);
        assert_eq!(b[1], -2.5);
        assert!((b[2] - 0.1).abs() < 1e-4, "{}", b[2]);
        assert_eq!(b[3], 65504.0);
        assert!(b[5] == 0.0 && b[5].is_sign_negative());
        let (_, c) = w.read_f32("c.bf16").unwrap();
        assert_eq!(c[0], 1.0);
        assert_eq!(c[1], -2.5);
        assert_eq!(c[2], 3.140625);
        assert!((c[3] / 1.0e30 - 1.0).abs() < 1e-2);
        assert_eq!(c[4], -7.0);
        assert_eq!(c[5], 0.5);

        let e = w.read_f32("d.i64").unwrap_err().to_string();
        assert!(
            e.contains("model.safetensors") && e.contains("`d.i64`") && e.contains("I64"),
            "{e}"
        );
        let t = w.tensor("b.f16").unwrap();
        assert_eq!(t.shape(), &[3, 2]);
        assert_eq!(t.data()[1], -2.5);
    }

    #[test]
    fn missing_tensor_and_suggestion() {
        let dir = tempfile::tempdir().unwrap();
        write_st(
            &dir.path().join(SINGLE_FILE),
            &[
                (
                    "model.embed_tokens.weight",
                    Dtype::F32,
                    vec![2],
                    f32_bytes(&[1.0, 2.0]),
                ),
                (
                    "model.norm.weight",
                    Dtype::F32,
                    vec![2],
                    f32_bytes(&[1.0, 2.0]),
                ),
            ],
        );
        let w = Weights::open(dir.path()).unwrap();
        let e = w.read_f32("embed_tokens.weight").unwrap_err().to_string();
        assert!(e.contains("`embed_tokens.weight` not found"), "{e}");
        assert!(e.contains("searched model.safetensors"), "{e}");
        assert!(
            e.contains("did you mean `model.embed_tokens.weight`"),
            "{e}"
        );
        let e = w.tensor("model.norm.weigth").unwrap_err().to_string();
        assert!(e.contains("did you mean `model.norm.weight`"), "{e}");
        let e = w.shape_check("zzz", &[1]).unwrap_err().to_string();
        assert!(
            e.contains("`zzz` not found") && !e.contains("did you mean"),
            "{e}"
        );
    }

    #[test]
    fn shape_mismatch() {
        let dir = tempfile::tempdir().unwrap();
        write_st(
            &dir.path().join(SINGLE_FILE),
            &[("x", Dtype::F32, vec![2, 3], f32_bytes(&[0.0; 6]))],
        );
        let w = Weights::open(dir.path()).unwrap();
        w.shape_check("x", &[2, 3]).unwrap();
        let e = w.shape_check("x", &[3, 2]).unwrap_err().to_string();
        assert_eq!(
            e,
            "tensor `x` in model.safetensors has shape [2, 3] but the config implies [3, 2]"
        );
    }

    #[test]
    fn truncated_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(SINGLE_FILE);
        write_st(
            &path,
            &[("x", Dtype::F32, vec![1024], f32_bytes(&[0.5; 1024]))],
        );
        let bytes = std::fs::read(&path).unwrap();
        let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
        std::fs::write(&path, &bytes[..8 + n + 1000]).unwrap();
        let e = Weights::open(dir.path()).unwrap_err().to_string();
        assert_eq!(
            e,
            "model.safetensors: truncated or corrupt: header declares 4096 data bytes (to the end \
             of tensor `x`) but the file has 1000"
        );
        // Cut inside the header.
        std::fs::write(&path, &bytes[..20]).unwrap();
        let e = Weights::open(dir.path()).unwrap_err().to_string();
        assert!(
            e.starts_with("model.safetensors: truncated or corrupt"),
            "{e}"
        );
        // Too short for even the length.
        std::fs::write(&path, &bytes[..3]).unwrap();
        let e = Weights::open(dir.path()).unwrap_err().to_string();
        assert!(
            e.starts_with("model.safetensors: truncated or corrupt"),
            "{e}"
        );
        // Garbage.
        std::fs::write(&path, b"this is not a safetensors file at all").unwrap();
        let e = Weights::open(dir.path()).unwrap_err().to_string();
        assert!(e.starts_with("model.safetensors:"), "{e}");
        // Trailing bytes: the crate's own validation, reported with the file name.
        let mut long = bytes.clone();
        long.extend_from_slice(&[0; 8]);
        std::fs::write(&path, &long).unwrap();
        let e = Weights::open(dir.path()).unwrap_err().to_string();
        assert!(
            e.starts_with("model.safetensors: invalid safetensors file"),
            "{e}"
        );
    }

    #[test]
    fn sharded_index() {
        let dir = tempfile::tempdir().unwrap();
        let s1 = "model-00001-of-00002.safetensors";
        let s2 = "model-00002-of-00002.safetensors";
        write_st(
            &dir.path().join(s1),
            &[
                ("a", Dtype::F32, vec![2], f32_bytes(&[1.0, 2.0])),
                ("b", Dtype::F32, vec![1], f32_bytes(&[3.0])),
            ],
        );
        write_st(
            &dir.path().join(s2),
            &[("c", Dtype::F32, vec![1, 1], f32_bytes(&[4.0]))],
        );
        // A stray file the index does not use must be ignored.
        std::fs::write(dir.path().join("stray.safetensors"), b"junk").unwrap();
        let index = serde_json::json!({
            "metadata": {"total_size": 16},
            "weight_map": {"a": s1, "b": s1, "c": s2}
        });
        std::fs::write(dir.path().join(INDEX_FILE), index.to_string()).unwrap();
        let w = Weights::open(dir.path()).unwrap();
        assert_eq!(w.names(), vec!["a", "b", "c"]);
        assert_eq!(w.files().len(), 2);
        assert_eq!(w.read_f32("c").unwrap(), (vec![1, 1], vec![4.0]));
        assert_eq!(w.read_f32("b").unwrap().1, vec![3.0]);
        assert!(w.file_of("c").unwrap().ends_with(s2));
        let e = w.read_f32("d").unwrap_err().to_string();
        assert!(e.contains(s1) && e.contains(s2), "{e}");
        let fp = fingerprint(dir.path());
        assert_eq!(fp.len(), 16);

        // A tensor mapped to the wrong shard.
        let bad = serde_json::json!({"weight_map": {"a": s2, "c": s2}});
        std::fs::write(dir.path().join(INDEX_FILE), bad.to_string()).unwrap();
        let e = Weights::open(dir.path()).unwrap_err().to_string();
        assert!(e.contains("`a`") && e.contains("does not contain"), "{e}");

        // A missing shard.
        std::fs::write(dir.path().join(INDEX_FILE), index.to_string()).unwrap();
        std::fs::remove_file(dir.path().join(s2)).unwrap();
        let e = Weights::open(dir.path()).unwrap_err().to_string();
        assert!(e.contains(s2) && e.contains("missing"), "{e}");
        assert_ne!(fingerprint(dir.path()), fp);

        // A shard outside the model directory is refused, not followed.
        for shard in [
            "../model-00001-of-00002.safetensors",
            "/etc/passwd",
            "a/../../x",
        ] {
            let evil = serde_json::json!({"weight_map": {"a": shard}});
            std::fs::write(dir.path().join(INDEX_FILE), evil.to_string()).unwrap();
            let e = Weights::open(dir.path()).unwrap_err().to_string();
            assert!(e.contains("outside the model directory"), "{shard}: {e}");
        }
    }

    #[test]
    fn glob_fallback_and_no_weights() {
        let dir = tempfile::tempdir().unwrap();
        let e = Weights::open(dir.path()).unwrap_err().to_string();
        assert!(e.contains("no weights"), "{e}");
        write_st(
            &dir.path().join("b.safetensors"),
            &[("y", Dtype::F32, vec![1], f32_bytes(&[2.0]))],
        );
        write_st(
            &dir.path().join("a.safetensors"),
            &[("x", Dtype::F32, vec![1], f32_bytes(&[1.0]))],
        );
        let w = Weights::open(dir.path()).unwrap();
        assert_eq!(w.names(), vec!["x", "y"]);
        assert!(w.files()[0].ends_with("a.safetensors"));
        write_st(
            &dir.path().join("c.safetensors"),
            &[("x", Dtype::F32, vec![1], f32_bytes(&[1.0]))],
        );
        let e = Weights::open(dir.path()).unwrap_err().to_string();
        assert!(e.contains("`x`") && e.contains("both"), "{e}");
        // A single file path opens directly.
        let w = Weights::open(dir.path().join("b.safetensors")).unwrap();
        assert_eq!(w.names(), vec!["y"]);
    }

    #[test]
    fn save_then_reload() {
        let dir = tempfile::tempdir().unwrap();
        let a = Tensor::new(vec![2, 2], vec![1.0, -2.0, 3.5, f32::MIN_POSITIVE]).unwrap();
        let b = Tensor::new(vec![3], vec![0.25, 0.5, 0.75]).unwrap();
        let path = dir.path().join(SINGLE_FILE);
        let meta = HashMap::from([("format".to_string(), "pt".to_string())]);
        save_safetensors(&path, &[("w.b", &b), ("w.a", &a)], Some(meta)).unwrap();
        // Overwrite while the old file is mapped: the old map stays valid.
        let w_old = Weights::open(dir.path()).unwrap();
        save_safetensors(&path, &[("w.a", &a), ("w.b", &b)], None).unwrap();
        assert_eq!(w_old.read_f32("w.b").unwrap().1, vec![0.25, 0.5, 0.75]);
        assert_eq!(w_old.file_metadata()["model.safetensors"]["format"], "pt");

        let w = Weights::open(dir.path()).unwrap();
        assert_eq!(w.names(), vec!["w.a", "w.b"]);
        let t = w.tensor("w.a").unwrap();
        assert_eq!(t.shape(), a.shape());
        assert_eq!(t.data(), a.data());
        assert_eq!(w.read_f32("w.b").unwrap(), (vec![3], vec![0.25, 0.5, 0.75]));
        // The crate agrees the file is well-formed.
        let bytes = std::fs::read(&path).unwrap();
        assert_eq!(SafeTensors::deserialize(&bytes).unwrap().len(), 2);
        // No temporary files left behind.
        let leftovers: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().contains(".tmp-"))
            .collect();
        assert!(leftovers.is_empty());
        // Errors: data/shape mismatch and a duplicate name.
        let e = save_f32(&path, &[("x", &[2, 2], &[1.0])], None)
            .unwrap_err()
            .to_string();
        assert!(e.contains("`x`"), "{e}");
        let e = save_f32(&path, &[("x", &[1], &[1.0]), ("x", &[1], &[2.0])], None)
            .unwrap_err()
            .to_string();
        assert!(e.contains("twice"), "{e}");
        // The failed saves left the good file in place.
        assert_eq!(Weights::open(dir.path()).unwrap().len(), 2);
    }

    #[test]
    fn fingerprint_changes_with_content() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("config.json"), "{}").unwrap();
        let path = dir.path().join(SINGLE_FILE);
        save_f32(&path, &[("x", &[4], &[1.0, 2.0, 3.0, 4.0])], None).unwrap();
        let a = fingerprint(dir.path());
        assert_eq!(a, fingerprint(dir.path()));
        save_f32(&path, &[("x", &[4], &[1.0, 2.0, 3.0, 5.0])], None).unwrap();
        let b = fingerprint(dir.path());
        assert_ne!(a, b);
        std::fs::write(dir.path().join("config.json"), "{ }").unwrap();
        assert_ne!(b, fingerprint(dir.path()));
        assert_eq!(fingerprint(dir.path().join("nothing")).len(), 16);
    }

    #[test]
    fn edit_distance_basics() {
        assert_eq!(edit_distance("kitten", "sitting"), 3);
        assert_eq!(edit_distance("", "abc"), 3);
        assert_eq!(edit_distance("same", "same"), 0);
    }
}
