//! Per-document and corpus aggregates of a corpus analysis (`docs/corpus.md`). Per document
//! each column keeps its mergeable sufficient statistics (n, sum, sum of squares), so
//! shards combine exactly; corpus aggregates carry standard errors over documents: closed
//! forms for means, a seeded bootstrap for the median of document means.

use rand_chacha::rand_core::{RngCore, SeedableRng};
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;

/// Resamples of the bootstrap, and its seed (fixed: the summary is reproducible).
const BOOTSTRAP: usize = 1000;
const SEED: u64 = 0x0074_6f6b_6974;

/// n, Σx and Σx² of a column's finite values in one document.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Moments {
    pub n: u64,
    pub sum: f64,
    pub sum_sq: f64,
}

impl Moments {
    pub fn of(values: &[f32]) -> Moments {
        let mut m = Moments::default();
        for &x in values.iter().filter(|x| x.is_finite()) {
            let x = f64::from(x);
            m.n += 1;
            m.sum += x;
            m.sum_sq += x * x;
        }
        m
    }

    pub fn mean(&self) -> Option<f64> {
        (self.n > 0).then(|| self.sum / self.n as f64)
    }
}

/// What a per-document metric returned for one window of a document.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct WindowResult {
    /// First token of the window in the document.
    pub start: usize,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<f64>,
    /// Named scalars; `None` (JSON `null`) where the metric gave NaN or an infinity.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub scalars: BTreeMap<String, Option<f64>>,
    /// 1-D results that are no per-token series (a lag profile, a per-layer curve), with
    /// `None` for a non-finite entry.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub series: BTreeMap<String, Vec<Option<f32>>>,
}

/// One finished document.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct DocStats {
    pub doc: u64,
    /// The file it came from (directory corpora).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    pub tokens: usize,
    /// Per column: the moments of its finite values.
    pub columns: BTreeMap<String, Moments>,
    /// Per-document metrics: what each window returned.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub windows: Vec<WindowResult>,
}

/// A document left out, and why.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Skipped {
    pub doc: u64,
    pub tokens: usize,
    pub reason: String,
}

fn mean_se(x: &[f64]) -> (f64, f64) {
    let n = x.len() as f64;
    let mean = x.iter().sum::<f64>() / n;
    if x.len() < 2 {
        return (mean, f64::NAN);
    }
    let var = x.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1.0);
    (mean, (var / n).sqrt())
}

fn median(x: &mut [f64]) -> f64 {
    x.sort_by(f64::total_cmp);
    let n = x.len();
    if n % 2 == 1 {
        x[n / 2]
    } else {
        (x[n / 2 - 1] + x[n / 2]) / 2.0
    }
}

/// Bootstrap standard error of the median of `x` (seeded).
fn bootstrap_median_se(x: &[f64]) -> f64 {
    if x.len() < 2 {
        return f64::NAN;
    }
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(SEED);
    let mut sample = vec![0.0; x.len()];
    let medians: Vec<f64> = (0..BOOTSTRAP)
        .map(|_| {
            for s in sample.iter_mut() {
                *s = x[(rng.next_u64() % x.len() as u64) as usize];
            }
            median(&mut sample)
        })
        .collect();
    mean_se(&medians).1 * (BOOTSTRAP as f64).sqrt()
}

/// Corpus aggregates of one column over documents.
fn column_aggregate(docs: &[&Moments]) -> Value {
    let n: u64 = docs.iter().map(|m| m.n).sum();
    let sum: f64 = docs.iter().map(|m| m.sum).sum();
    let sum_sq: f64 = docs.iter().map(|m| m.sum_sq).sum();
    let d = docs.len() as f64;
    let pooled = sum / n as f64;
    // Standard error of the pooled (ratio) mean with documents as clusters: the spread
    // of each document's residual sum around the pooled mean.
    let se = if docs.len() > 1 {
        let r: f64 = docs
            .iter()
            .map(|m| (m.sum - pooled * m.n as f64).powi(2))
            .sum();
        (d / (d - 1.0) * r).sqrt() / n as f64
    } else {
        f64::NAN
    };
    let mut means: Vec<f64> = docs.iter().filter_map(|m| m.mean()).collect();
    let (dm, dm_se) = mean_se(&means);
    let med_se = bootstrap_median_se(&means);
    let med = median(&mut means);
    json!({
        "tokens": n, "sum": sum, "sum_sq": sum_sq,
        "mean": num(pooled), "se": num(se),
        "doc_mean": num(dm), "doc_mean_se": num(dm_se),
        "doc_median": num(med), "doc_median_se_bootstrap": num(med_se),
    })
}

/// A JSON number, or null for NaN and infinities.
fn num(x: f64) -> Value {
    serde_json::Number::from_f64(x).map_or(Value::Null, Value::Number)
}

/// The corpus aggregates of `docs` (sorted by id): per column, and per scalar of a
/// per-document metric (its mean over a document's windows, then over documents).
pub fn aggregates(columns: &[String], docs: &[DocStats]) -> Value {
    let mut cols = Map::new();
    for c in columns {
        let m: Vec<&Moments> = docs
            .iter()
            .filter_map(|d| d.columns.get(c))
            .filter(|m| m.n > 0)
            .collect();
        if !m.is_empty() {
            cols.insert(c.clone(), column_aggregate(&m));
        }
    }
    let mut per_doc: BTreeMap<String, Vec<f64>> = BTreeMap::new();
    for d in docs.iter().filter(|d| !d.windows.is_empty()) {
        let mut acc: BTreeMap<String, (f64, usize)> = BTreeMap::new();
        for w in &d.windows {
            let vals = w.value.map(|v| ("value".to_string(), Some(v)));
            for (k, v) in vals.into_iter().chain(w.scalars.clone()) {
                if let Some(v) = v.filter(|v| v.is_finite()) {
                    let e = acc.entry(k).or_default();
                    e.0 += v;
                    e.1 += 1;
                }
            }
        }
        for (k, (s, n)) in acc {
            per_doc.entry(k).or_default().push(s / n as f64);
        }
    }
    let mut scalars = Map::new();
    for (k, mut v) in per_doc {
        let (mean, se) = mean_se(&v);
        let med_se = bootstrap_median_se(&v);
        let med = median(&mut v);
        scalars.insert(
            k,
            json!({ "documents": v.len(), "mean": num(mean), "se": num(se),
                    "median": num(med), "median_se_bootstrap": num(med_se) }),
        );
    }
    json!({ "columns": cols, "scalars": scalars })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pooled_mean_and_cluster_se_by_hand() {
        // Two documents: (1, 2, 3) and (5); pooled mean 11/4.
        let a = Moments::of(&[1.0, 2.0, 3.0, f32::NAN]);
        let b = Moments::of(&[5.0]);
        assert_eq!((a.n, a.sum, a.sum_sq), (3, 6.0, 14.0));
        let v = column_aggregate(&[&a, &b]);
        let pooled = 11.0 / 4.0;
        let r = (6.0f64 - 3.0 * pooled).powi(2) + (5.0f64 - pooled).powi(2);
        let se = (2.0 * r).sqrt() / 4.0;
        assert!((v["mean"].as_f64().unwrap() - pooled).abs() < 1e-12);
        assert!((v["se"].as_f64().unwrap() - se).abs() < 1e-12);
        assert!((v["doc_mean"].as_f64().unwrap() - 3.5).abs() < 1e-12);
        assert!((v["doc_mean_se"].as_f64().unwrap() - 1.5).abs() < 1e-12);
        assert_eq!(v["doc_median"].as_f64(), Some(3.5));
    }

    #[test]
    fn bootstrap_is_seeded_and_plausible() {
        let x: Vec<f64> = (0..200).map(|i| f64::from(i % 17)).collect();
        let a = bootstrap_median_se(&x);
        assert_eq!(a, bootstrap_median_se(&x));
        // The mean's SE is about 0.35; the median's bootstrap SE is the same order.
        assert!(a > 0.05 && a < 2.0, "{a}");
    }
}
