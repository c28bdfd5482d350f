//! The per-token table of a corpus analysis — `doc, position, token_id, token` and one
//! `f32` column per metric series — and its three file formats: Parquet (written with the
//! `parquet` crate's column writers, snappy-compressed, readable by pandas and polars as
//! is), CSV (RFC 4180 quoting, `NaN` for missing values) and JSON lines (`null`).

use anyhow::{bail, Context, Result};
use parquet::basic::Compression;
use parquet::data_type::{ByteArray, ByteArrayType, FloatType, Int32Type, Int64Type};
use parquet::file::properties::WriterProperties;
use parquet::file::reader::{FileReader, SerializedFileReader};
use parquet::file::writer::SerializedFileWriter;
use parquet::record::RowAccessor;
use parquet::schema::parser::parse_message_type;
use std::io::Write;
use std::path::Path;
use std::sync::Arc;

/// Rows per Parquet row group; fixed, so the same rows always give the same file.
const ROW_GROUP: usize = 1 << 16;

/// Rows of the per-token table, column-wise.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Rows {
    /// Names of the metric columns, after the four fixed ones.
    pub columns: Vec<String>,
    pub doc: Vec<i64>,
    pub position: Vec<i32>,
    pub token_id: Vec<i32>,
    pub token: Vec<String>,
    /// One vector per metric column.
    pub values: Vec<Vec<f32>>,
}

impl Rows {
    pub fn new(columns: Vec<String>) -> Rows {
        let values = vec![Vec::new(); columns.len()];
        Rows {
            columns,
            values,
            ..Default::default()
        }
    }

    pub fn len(&self) -> usize {
        self.doc.len()
    }

    pub fn is_empty(&self) -> bool {
        self.doc.is_empty()
    }

    pub fn append(&mut self, other: Rows) {
        self.doc.extend(other.doc);
        self.position.extend(other.position);
        self.token_id.extend(other.token_id);
        self.token.extend(other.token);
        for (v, o) in self.values.iter_mut().zip(other.values) {
            v.extend(o);
        }
    }

    /// The Parquet schema of these rows.
    fn schema(&self) -> String {
        let mut s = String::from(
            "message tokit_corpus { REQUIRED INT64 doc; REQUIRED INT32 position; \
             REQUIRED INT32 token_id; REQUIRED BYTE_ARRAY token (UTF8);",
        );
        for c in &self.columns {
            s.push_str(&format!(" REQUIRED FLOAT {c};"));
        }
        s.push_str(" }");
        s
    }

    /// The rows as a Parquet file.
    pub fn to_parquet(&self) -> Result<Vec<u8>> {
        let schema = Arc::new(parse_message_type(&self.schema()).context("parquet schema")?);
        let props = Arc::new(
            WriterProperties::builder()
                .set_compression(Compression::SNAPPY)
                .set_created_by(format!("tokit {}", env!("CARGO_PKG_VERSION")))
                .build(),
        );
        let mut buf = Vec::new();
        let mut w = SerializedFileWriter::new(&mut buf, schema, props)?;
        let n = self.len();
        let mut start = 0;
        // An empty table still gets its schema (and no row group).
        while start < n {
            let end = (start + ROW_GROUP).min(n);
            let mut rg = w.next_row_group()?;
            let mut i = 0;
            while let Some(mut col) = rg.next_column()? {
                match i {
                    0 => {
                        col.typed::<Int64Type>()
                            .write_batch(&self.doc[start..end], None, None)?;
                    }
                    1 => {
                        col.typed::<Int32Type>().write_batch(
                            &self.position[start..end],
                            None,
                            None,
                        )?;
                    }
                    2 => {
                        col.typed::<Int32Type>().write_batch(
                            &self.token_id[start..end],
                            None,
                            None,
                        )?;
                    }
                    3 => {
                        let v: Vec<ByteArray> = self.token[start..end]
                            .iter()
                            .map(|s| ByteArray::from(s.as_str()))
                            .collect();
                        col.typed::<ByteArrayType>().write_batch(&v, None, None)?;
                    }
                    k => {
                        col.typed::<FloatType>().write_batch(
                            &self.values[k - 4][start..end],
                            None,
                            None,
                        )?;
                    }
                }
                col.close()?;
                i += 1;
            }
            rg.close()?;
            start = end;
        }
        w.close()?;
        Ok(buf)
    }

    /// Read rows written by [`Rows::to_parquet`] back.
    pub fn read_parquet(path: &Path) -> Result<Rows> {
        let at = || format!("reading {}", path.display());
        let f = std::fs::File::open(path).with_context(at)?;
        let reader = SerializedFileReader::new(f).with_context(at)?;
        let fields = reader.metadata().file_metadata().schema().get_fields();
        let names: Vec<String> = fields.iter().map(|f| f.name().to_string()).collect();
        if names.len() < 4 || names[..4] != ["doc", "position", "token_id", "token"] {
            bail!(
                "{}: not a tokit corpus table (columns {names:?})",
                path.display()
            );
        }
        let mut rows = Rows::new(names[4..].to_vec());
        for row in reader.get_row_iter(None).with_context(at)? {
            let row = row.with_context(at)?;
            rows.doc.push(row.get_long(0)?);
            rows.position.push(row.get_int(1)?);
            rows.token_id.push(row.get_int(2)?);
            rows.token.push(row.get_string(3)?.clone());
            for (k, v) in rows.values.iter_mut().enumerate() {
                v.push(row.get_float(4 + k)?);
            }
        }
        Ok(rows)
    }

    /// The rows as CSV with a header line.
    pub fn write_csv(&self, w: &mut dyn Write) -> std::io::Result<()> {
        write!(w, "doc,position,token_id,token")?;
        for c in &self.columns {
            write!(w, ",{c}")?;
        }
        writeln!(w)?;
        for i in 0..self.len() {
            let tok = self.token[i].replace('"', "\"\"");
            write!(
                w,
                "{},{},{},\"{tok}\"",
                self.doc[i], self.position[i], self.token_id[i]
            )?;
            for v in &self.values {
                write!(w, ",{}", v[i])?;
            }
            writeln!(w)?;
        }
        Ok(())
    }

    /// The rows as JSON lines, one object per token (NaN as `null`).
    pub fn write_jsonl(&self, w: &mut dyn Write) -> std::io::Result<()> {
        for i in 0..self.len() {
            let mut o = serde_json::Map::new();
            o.insert("doc".into(), self.doc[i].into());
            o.insert("position".into(), self.position[i].into());
            o.insert("token_id".into(), self.token_id[i].into());
            o.insert("token".into(), self.token[i].clone().into());
            for (c, v) in self.columns.iter().zip(&self.values) {
                let x = v[i];
                let j = if x.is_finite() {
                    serde_json::Number::from_f64(f64::from(x))
                        .map_or(serde_json::Value::Null, Into::into)
                } else {
                    serde_json::Value::Null
                };
                o.insert(c.clone(), j);
            }
            serde_json::to_writer(&mut *w, &o)?;
            writeln!(w)?;
        }
        Ok(())
    }
}

/// A column name Parquet's schema parser, pandas and CSV readers all take: letters, digits
/// and `_` (anything else becomes `_`).
pub fn column_name(name: &str) -> String {
    let s: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if s.starts_with(|c: char| c.is_ascii_digit()) || s.is_empty() {
        format!("_{s}")
    } else {
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Rows {
        let mut r = Rows::new(vec!["surprisal".into(), "entropy".into()]);
        for (i, t) in ["In", " the", "\"x\",y\n"].iter().enumerate() {
            r.doc.push(7);
            r.position.push(i as i32);
            r.token_id.push(100 + i as i32);
            r.token.push(t.to_string());
            r.values[0].push(if i == 0 { f32::NAN } else { 0.1 * i as f32 });
            r.values[1].push(1.5);
        }
        r
    }

    #[test]
    fn parquet_round_trips_nan_and_odd_tokens() {
        let r = sample();
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("t.parquet");
        std::fs::write(&p, r.to_parquet().unwrap()).unwrap();
        let back = Rows::read_parquet(&p).unwrap();
        assert_eq!(back.columns, r.columns);
        assert_eq!(back.token, r.token);
        assert!(back.values[0][0].is_nan());
        assert_eq!(back.values[0][1..], r.values[0][1..]);
        assert_eq!(back.doc, r.doc);
        // Same rows, same bytes.
        assert_eq!(r.to_parquet().unwrap(), back.to_parquet().unwrap());
    }

    #[test]
    fn csv_quotes_tokens_and_writes_nan() {
        let mut out = Vec::new();
        sample().write_csv(&mut out).unwrap();
        let s = String::from_utf8(out).unwrap();
        assert!(
            s.starts_with(
                "doc,position,token_id,token,surprisal,entropy\n7,0,100,\"In\",NaN,1.5\n"
            ),
            "{s}"
        );
        assert!(s.contains("\"\"\"x\"\",y\n\""), "{s}");
    }

    #[test]
    fn column_names_are_plain() {
        assert_eq!(column_name("kl.layer-3"), "kl_layer_3");
        assert_eq!(column_name("3x"), "_3x");
    }
}
