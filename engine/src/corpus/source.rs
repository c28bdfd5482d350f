//! Reading a corpus as a stream of documents with stable ids (`docs/corpus.md`):
//! a `.txt` file (one document per line, id = line index from 0, empty lines skipped),
//! a `.jsonl` file (one object per line, the text in a string field, id = line index),
//! a Parquet file (a string column, id = row index, null and empty rows skipped), or a
//! directory of `.txt` files (one document each, sorted by name, id = index in that order).

use anyhow::{anyhow, bail, Context, Result};
use parquet::basic::{ConvertedType, LogicalType, Type as PhysicalType};
use parquet::file::reader::{FileReader, SerializedFileReader};
use parquet::record::reader::RowIter;
use parquet::record::RowAccessor;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};

/// One document of a corpus.
#[derive(Clone, Debug, PartialEq)]
pub struct Document {
    /// Stable id: the line, row or file index in the corpus.
    pub id: u64,
    pub text: String,
}

/// The kinds of corpus `--corpus` takes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Text,
    Jsonl,
    Parquet,
    Dir,
}

/// A corpus on disk: where it is and how to read it.
#[derive(Clone, Debug)]
pub struct Corpus {
    pub path: PathBuf,
    kind: Kind,
    text_field: String,
    /// For a directory: its `.txt` files, sorted.
    files: Vec<PathBuf>,
}

impl Corpus {
    /// Open `path`; `text_field` names the string field of a `.jsonl` or the column of a
    /// Parquet file.
    pub fn open(path: &Path, text_field: &str) -> Result<Corpus> {
        let meta = std::fs::metadata(path).with_context(|| format!("corpus {}", path.display()))?;
        let ext = path
            .extension()
            .map(|e| e.to_string_lossy().to_lowercase())
            .unwrap_or_default();
        let kind = if meta.is_dir() {
            Kind::Dir
        } else {
            match ext.as_str() {
                "txt" | "text" => Kind::Text,
                "jsonl" | "ndjson" => Kind::Jsonl,
                "parquet" => Kind::Parquet,
                _ => bail!(
                    "corpus {}: unknown kind `.{ext}`; give a .txt (one document per line), \
                     .jsonl, .parquet file or a directory of .txt files",
                    path.display()
                ),
            }
        };
        let mut files = Vec::new();
        if kind == Kind::Dir {
            for e in
                std::fs::read_dir(path).with_context(|| format!("corpus {}", path.display()))?
            {
                let p = e?.path();
                if p.is_file() && p.extension().is_some_and(|e| e == "txt") {
                    files.push(p);
                }
            }
            files.sort();
        }
        let c = Corpus {
            path: path.to_path_buf(),
            kind,
            text_field: text_field.to_string(),
            files,
        };
        if kind == Kind::Parquet {
            c.parquet_column()?;
        }
        Ok(c)
    }

    /// The file name a document of a directory corpus came from.
    pub fn source_of(&self, id: u64) -> Option<String> {
        let f = self.files.get(usize::try_from(id).ok()?)?;
        Some(f.file_name()?.to_string_lossy().into_owned())
    }

    /// Bytes and a 64-bit FNV-1a hash of the corpus content (for a directory: of each
    /// `.txt` file's name and content), for provenance and for the resume check.
    pub fn fingerprint(&self) -> Result<(u64, String)> {
        let mut h = Fnv::new();
        let mut size = 0u64;
        let mut hash_file = |p: &Path, h: &mut Fnv| -> Result<()> {
            let mut f = std::fs::File::open(p).with_context(|| format!("{}", p.display()))?;
            let mut buf = vec![0u8; 1 << 16];
            loop {
                let n = f.read(&mut buf)?;
                if n == 0 {
                    return Ok(());
                }
                size += n as u64;
                h.bytes(&buf[..n]);
            }
        };
        if self.kind == Kind::Dir {
            for f in &self.files {
                h.bytes(f.file_name().unwrap_or_default().as_encoded_bytes());
                h.bytes(&[0]);
                hash_file(f, &mut h)?;
            }
        } else {
            hash_file(&self.path, &mut h)?;
        }
        Ok((size, h.hex()))
    }

    /// The documents, in id order, empty ones skipped.
    pub fn documents(&self) -> Result<Box<dyn Iterator<Item = Result<Document>> + '_>> {
        let path = self.path.clone();
        let nonempty =
            |d: &Result<Document>| d.as_ref().map_or(true, |d| !d.text.trim().is_empty());
        Ok(match self.kind {
            Kind::Text => {
                let f = std::fs::File::open(&path)
                    .with_context(|| format!("corpus {}", path.display()))?;
                Box::new(
                    BufReader::new(f)
                        .lines()
                        .enumerate()
                        .map(move |(i, l)| {
                            let text = l.with_context(|| {
                                format!("corpus {} line {}", path.display(), i + 1)
                            })?;
                            Ok(Document {
                                id: i as u64,
                                text: text.trim_end_matches('\r').to_string(),
                            })
                        })
                        .filter(nonempty),
                )
            }
            Kind::Jsonl => {
                let f = std::fs::File::open(&path)
                    .with_context(|| format!("corpus {}", path.display()))?;
                let field = self.text_field.clone();
                Box::new(
                    BufReader::new(f)
                        .lines()
                        .enumerate()
                        .filter(|(_, l)| l.as_ref().map_or(true, |l| !l.trim().is_empty()))
                        .map(move |(i, l)| {
                            let at = || format!("corpus {} line {}", path.display(), i + 1);
                            let v: serde_json::Value =
                                serde_json::from_str(&l.with_context(at)?).with_context(at)?;
                            let text = match v.get(&field) {
                                Some(serde_json::Value::String(s)) => s.clone(),
                                Some(other) => bail!(
                                    "{}: field `{field}` is not a string but {other}",
                                    at()
                                ),
                                None => bail!(
                                    "{}: no field `{field}` (choose the text field with --text-field)",
                                    at()
                                ),
                            };
                            Ok(Document {
                                id: i as u64,
                                text,
                            })
                        })
                        .filter(nonempty),
                )
            }
            Kind::Dir => Box::new(
                self.files
                    .iter()
                    .enumerate()
                    .map(|(i, f)| {
                        let text = std::fs::read_to_string(f)
                            .with_context(|| format!("corpus file {}", f.display()))?;
                        Ok(Document { id: i as u64, text })
                    })
                    .filter(nonempty),
            ),
            Kind::Parquet => {
                let (reader, projection) = self.parquet_column()?;
                let rows = RowIter::from_file_into(Box::new(reader))
                    .project(Some(projection))
                    .with_context(|| format!("corpus {}", path.display()))?;
                Box::new(
                    rows.enumerate()
                        .filter_map(move |(i, row)| {
                            let at = || format!("corpus {} row {i}", path.display());
                            match row {
                                Err(e) => Some(Err(anyhow!(e).context(at()))),
                                // A null is no document, like an empty line.
                                Ok(r) => r.get_string(0).ok().map(|s| {
                                    Ok(Document {
                                        id: i as u64,
                                        text: s.clone(),
                                    })
                                }),
                            }
                        })
                        .filter(nonempty),
                )
            }
        })
    }

    /// The Parquet reader and the projection onto the text column, checked to be a
    /// top-level string column.
    fn parquet_column(
        &self,
    ) -> Result<(
        SerializedFileReader<std::fs::File>,
        parquet::schema::types::Type,
    )> {
        let at = || format!("corpus {}", self.path.display());
        let f = std::fs::File::open(&self.path).with_context(at)?;
        let reader = SerializedFileReader::new(f).with_context(at)?;
        let schema = reader.metadata().file_metadata().schema();
        let fields = schema.get_fields();
        let names: Vec<&str> = fields.iter().map(|f| f.name()).collect();
        let field = fields
            .iter()
            .find(|f| f.name() == self.text_field)
            .ok_or_else(|| {
                anyhow!(
                    "{}: no column `{}` (columns: {}); choose one with --text-field",
                    at(),
                    self.text_field,
                    names.join(", ")
                )
            })?;
        let info = field.get_basic_info();
        let string = field.is_primitive()
            && field.get_physical_type() == PhysicalType::BYTE_ARRAY
            && (matches!(info.logical_type_ref(), Some(LogicalType::String))
                || info.converted_type() == ConvertedType::UTF8);
        if !string {
            let what = if field.is_primitive() {
                format!("{:?}", field.get_physical_type())
            } else {
                "a group".to_string()
            };
            bail!(
                "{}: column `{}` is {what}, not a string column; choose the text column with --text-field",
                at(),
                self.text_field
            );
        }
        let projection = parquet::schema::types::Type::group_type_builder(schema.name())
            .with_fields(vec![field.clone()])
            .build()
            .with_context(at)?;
        Ok((reader, projection))
    }
}

/// FNV-1a, 64 bits: a content hash for provenance (not for security).
pub(crate) struct Fnv(u64);

impl Fnv {
    pub(crate) fn new() -> Fnv {
        Fnv(0xcbf2_9ce4_8422_2325)
    }

    /// `fnv1a64:` and the hash in hex.
    pub(crate) fn hex(&self) -> String {
        format!("fnv1a64:{:016x}", self.0)
    }

    pub(crate) fn bytes(&mut self, b: &[u8]) {
        for &x in b {
            self.0 = (self.0 ^ u64::from(x)).wrapping_mul(0x0100_0000_01b3);
        }
    }
}
