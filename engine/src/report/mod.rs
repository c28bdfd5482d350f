//! Results: the record of one measure (value, unit, estimator, scalars, tensors,
//! provenance), its canonical JSON, CSV tables, and atomic file writes.

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::collections::BTreeMap;
use std::path::Path;
use tokit_compute::Tensor;

pub mod html;
pub mod plot;

/// Where a result came from.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Provenance {
    pub model_path: Option<String>,
    pub model_hash: Option<String>,
    pub arch: Option<String>,
    pub ablation: Option<String>,
    pub backend: String,
    pub tokit_version: String,
    pub created_unix: u64,
}

/// One measured result (docs/architecture.md, "One metric").
#[derive(Clone, Debug)]
pub struct Report {
    pub metric: String,
    pub plugin: String,
    pub plugin_version: String,
    pub description: String,
    pub reconstruction: bool,
    pub value: Option<f64>,
    pub unit: String,
    pub estimator: String,
    pub scalars: BTreeMap<String, f64>,
    pub params: Map<String, Value>,
    pub notes: Vec<String>,
    pub tensors: BTreeMap<String, Tensor>,
    /// Token text per position, when the input was text (table row labels).
    pub tokens: Vec<String>,
    pub provenance: Provenance,
    /// The plot spec the metric declared (`plot.rs`), if any.
    pub plot: Option<Value>,
}

/// A number as JSON (NaN and infinities as null, never an invalid file).
fn num(v: f64) -> Value {
    serde_json::Number::from_f64(v)
        .map(Value::Number)
        .unwrap_or(Value::Null)
}

impl Report {
    /// The canonical JSON form.
    pub fn to_json(&self) -> Value {
        let tensors: Map<String, Value> = self
            .tensors
            .iter()
            .map(|(k, t)| {
                let data: Vec<Value> = t.data().iter().map(|&x| num(x as f64)).collect();
                (
                    k.clone(),
                    serde_json::json!({ "shape": t.shape(), "data": data }),
                )
            })
            .collect();
        let scalars: Map<String, Value> = self
            .scalars
            .iter()
            .map(|(k, &v)| (k.clone(), num(v)))
            .collect();
        serde_json::json!({
            "metric": self.metric,
            "plugin": self.plugin,
            "plugin_version": self.plugin_version,
            "description": self.description,
            "reconstruction": self.reconstruction,
            "value": self.value.map(num),
            "unit": self.unit,
            "estimator": self.estimator,
            "scalars": scalars,
            "params": self.params,
            "notes": self.notes,
            "tokens": self.tokens,
            "tensors": tensors,
            "provenance": self.provenance,
            "plot": self.plot,
        })
    }

    /// A report read back from its canonical JSON ([`Report::to_json`]); `null` numbers
    /// are NaN again, so `from_json(to_json(r))` writes the same file as `r`.
    pub fn from_json(v: &Value) -> Result<Report> {
        let text = |k: &str| -> Result<String> {
            v[k].as_str()
                .map(str::to_string)
                .with_context(|| format!("result JSON: `{k}` is no string"))
        };
        let number = |x: &Value| x.as_f64().unwrap_or(f64::NAN);
        let object = |k: &str| -> Result<&Map<String, Value>> {
            v[k].as_object()
                .with_context(|| format!("result JSON: `{k}` is no object"))
        };
        let mut tensors = BTreeMap::new();
        for (k, t) in object("tensors")? {
            let shape: Vec<usize> = serde_json::from_value(t["shape"].clone())
                .with_context(|| format!("result JSON: tensor `{k}`: shape"))?;
            let data: Vec<f32> = t["data"]
                .as_array()
                .with_context(|| format!("result JSON: tensor `{k}`: data"))?
                .iter()
                .map(|x| number(x) as f32)
                .collect();
            tensors.insert(k.clone(), Tensor::new(shape, data)?);
        }
        Ok(Report {
            metric: text("metric")?,
            plugin: text("plugin")?,
            plugin_version: text("plugin_version")?,
            description: text("description")?,
            reconstruction: v["reconstruction"].as_bool().unwrap_or(false),
            value: (!v["value"].is_null()).then(|| number(&v["value"])),
            unit: text("unit")?,
            estimator: text("estimator")?,
            scalars: object("scalars")?
                .iter()
                .map(|(k, x)| (k.clone(), number(x)))
                .collect(),
            params: object("params")?.clone(),
            notes: serde_json::from_value(v["notes"].clone()).context("result JSON: notes")?,
            tensors,
            tokens: serde_json::from_value(v["tokens"].clone()).context("result JSON: tokens")?,
            provenance: serde_json::from_value(v["provenance"].clone())
                .context("result JSON: provenance")?,
            plot: Some(v["plot"].clone()).filter(|p| !p.is_null()),
        })
    }

    /// Per-position table: the chosen 1-D tensors (all of them when `columns` is empty)
    /// whose length matches the longest one, plus the token text when known.
    pub fn table(&self, columns: &[String]) -> (Vec<String>, Vec<Vec<String>>) {
        let n = self
            .tensors
            .values()
            .filter(|t| t.ndim() == 1)
            .map(|t| t.numel())
            .max()
            .unwrap_or(0);
        let cols: Vec<(&String, &Tensor)> = self
            .tensors
            .iter()
            .filter(|(k, t)| {
                t.ndim() == 1 && t.numel() == n && (columns.is_empty() || columns.contains(k))
            })
            .collect();
        let with_tokens = self.tokens.len() == n && n > 0;
        let mut header = vec!["position".to_string()];
        if with_tokens {
            header.push("token".into());
        }
        header.extend(cols.iter().map(|(k, _)| k.to_string()));
        let integral: Vec<bool> = cols
            .iter()
            .map(|(_, t)| t.data().iter().all(|x| x.is_nan() || x.fract() == 0.0))
            .collect();
        let rows = (0..n)
            .map(|i| {
                let mut r = vec![i.to_string()];
                if with_tokens {
                    r.push(self.tokens[i].clone());
                }
                r.extend(
                    cols.iter()
                        .zip(&integral)
                        .map(|((_, t), &int)| match t.data()[i] {
                            x if x.is_nan() => "-".to_string(),
                            x if int => format!("{x:.0}"),
                            x => format!("{x:.6}"),
                        }),
                );
                r
            })
            .collect();
        (header, rows)
    }

    /// The table as aligned text (for the terminal), at most `max_rows` rows.
    pub fn table_text(&self, columns: &[String], max_rows: usize) -> String {
        let (header, rows) = self.table(columns);
        let shown = &rows[..rows.len().min(max_rows)];
        let widths: Vec<usize> = (0..header.len())
            .map(|c| {
                shown
                    .iter()
                    .map(|r| r[c].chars().count())
                    .chain([header[c].len()])
                    .max()
                    .unwrap_or(0)
            })
            .collect();
        let token_col = header.get(1).is_some_and(|h| h == "token");
        let line = |cells: &[String]| {
            let cells: Vec<String> = cells
                .iter()
                .zip(&widths)
                .enumerate()
                .map(|(i, (c, &w))| {
                    if i == 1 && token_col {
                        format!("{c:<w$}")
                    } else {
                        format!("{c:>w$}")
                    }
                })
                .collect();
            cells.join("  ")
        };
        let mut out = line(&header);
        for r in shown {
            out.push('\n');
            out.push_str(&line(r));
        }
        if rows.len() > max_rows {
            out.push_str(&format!("\n… {} more rows", rows.len() - max_rows));
        }
        out
    }

    /// The table as CSV.
    pub fn to_csv(&self) -> String {
        let (header, rows) = self.table(&[]);
        let esc = |s: &str| {
            if s.contains([',', '"', '\n', '\r']) {
                format!("\"{}\"", s.replace('"', "\"\""))
            } else {
                s.to_string()
            }
        };
        let mut out = header.iter().map(|h| esc(h)).collect::<Vec<_>>().join(",");
        out.push('\n');
        for r in rows {
            out.push_str(&r.iter().map(|c| esc(c)).collect::<Vec<_>>().join(","));
            out.push('\n');
        }
        out
    }

    /// Write JSON (`.json`) or CSV (`.csv`), atomically.
    pub fn save(&self, path: &Path) -> Result<()> {
        match path.extension().and_then(|e| e.to_str()) {
            Some("json") => write_atomic(
                path,
                serde_json::to_string_pretty(&self.to_json())?.as_bytes(),
            ),
            Some("csv") => write_atomic(path, self.to_csv().as_bytes()),
            _ => bail!(
                "{}: unknown result format (use .json or .csv)",
                path.display()
            ),
        }
    }
}

/// Write a file by writing a temporary sibling and renaming it over the target, so a
/// crash never leaves a half-written result; leftovers of killed writers are swept.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    if let Some(dir) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    tokit_model::atomic::write_atomically(path, |w| w.write_all(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_report_read_back_from_its_json_writes_the_same_json() {
        let r = Report {
            metric: "m".into(),
            plugin: "p".into(),
            plugin_version: "1".into(),
            description: "d".into(),
            reconstruction: true,
            value: Some(0.1 + 0.2),
            unit: "bits".into(),
            estimator: "plugin".into(),
            scalars: [("a".to_string(), 1.0 / 3.0), ("nan".to_string(), f64::NAN)].into(),
            params: serde_json::json!({"k": [1, 2], "s": "x"})
                .as_object()
                .unwrap()
                .clone(),
            notes: vec!["n".into()],
            tensors: [(
                "t".to_string(),
                Tensor::new(vec![2, 2], vec![0.1, f32::NAN, -3.5e-8, 1e30]).unwrap(),
            )]
            .into(),
            tokens: vec!["a".into(), "b".into()],
            provenance: Provenance {
                backend: "cpu".into(),
                tokit_version: "0".into(),
                created_unix: 5,
                ..Default::default()
            },
            plot: Some(serde_json::json!({"kind": "line"})),
        };
        let j = r.to_json();
        let back = Report::from_json(&j).unwrap();
        assert_eq!(back.to_json(), j);
        assert_eq!(back.value.unwrap().to_bits(), (0.1f64 + 0.2).to_bits());
        // Through text too: every f64 comes back bit for bit.
        let text = serde_json::to_string_pretty(&j).unwrap();
        let again = Report::from_json(&serde_json::from_str(&text).unwrap()).unwrap();
        assert_eq!(
            serde_json::to_string_pretty(&again.to_json()).unwrap(),
            text
        );
        let x = 0.012_345_678_901_234_567_f64;
        let v: Value = serde_json::from_str(&serde_json::to_string(&x).unwrap()).unwrap();
        assert_eq!(v.as_f64().unwrap().to_bits(), x.to_bits());
    }
}
