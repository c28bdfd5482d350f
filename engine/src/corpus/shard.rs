//! Sharding a corpus analysis over the tasks of a cluster job and merging the shards
//! exactly (`docs/corpus.md`, "Sharding"):
//!
//! - which shard a process is: `--shard I/N`, else a Kubernetes Indexed Job's
//!   `JOB_COMPLETION_INDEX` with `--shards N`, else a Slurm array's
//!   `SLURM_ARRAY_TASK_ID` of `--shards N` (so one task can be re-submitted alone), or
//!   without `--shards`, `SLURM_ARRAY_TASK_ID` − `SLURM_ARRAY_TASK_MIN` of
//!   `SLURM_ARRAY_TASK_COUNT`;
//! - which documents it takes: a contiguous run of documents, cut so each shard holds
//!   about 1/N of the corpus's tokens; documents stay whole and the cut depends only on
//!   the documents' token counts and N;
//! - where it writes: `OUT.shards/part-I-of-N.parquet` (its per-token rows) and
//!   `part-I-of-N.summary.json` (per-document n, Σx, Σx² of every column, skipped
//!   documents, and the run's manifest with the shard added), each written atomically
//!   and resumable like any corpus run;
//! - `tokit merge OUT` checks the parts and writes OUT and its summary with the same
//!   code a single run assembles its own parts with, so the files are the same.

use super::{summary_path, write_outputs, DocStats, Rows, Skipped};
use anyhow::{anyhow, bail, ensure, Context, Result};
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// This process's share of a sharded run: shard `index` of `count`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Shard {
    pub index: usize,
    pub count: usize,
}

impl std::str::FromStr for Shard {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> Result<Shard> {
        let (i, n) = s
            .split_once('/')
            .ok_or_else(|| anyhow!("--shard {s}: expected I/N, e.g. 0/4"))?;
        let index = i
            .trim()
            .parse()
            .map_err(|_| anyhow!("--shard {s}: I is no whole number"))?;
        let count = n
            .trim()
            .parse()
            .map_err(|_| anyhow!("--shard {s}: N is no whole number"))?;
        Shard::new(index, count)
    }
}

impl Shard {
    pub fn new(index: usize, count: usize) -> Result<Shard> {
        ensure!(count >= 1, "shard count {count}: needs at least 1 shard");
        ensure!(
            index < count,
            "shard {index} of {count}: shards are numbered 0 to {}",
            count - 1
        );
        Ok(Shard { index, count })
    }

    /// `part-I-of-N`.
    pub fn name(&self) -> String {
        format!("part-{}-of-{}", self.index, self.count)
    }
}

/// The shard of this process: `--shard I/N`, else `JOB_COMPLETION_INDEX` with `--shards N`
/// (a Kubernetes Indexed Job), else a Slurm array's task variables; `None` when none is
/// given (a single run). `env` reads an environment variable.
pub fn resolve(
    flag: Option<&str>,
    shards: Option<usize>,
    env: impl Fn(&str) -> Option<String>,
) -> Result<Option<Shard>> {
    let num = |k: &str| -> Result<Option<usize>> {
        env(k)
            .map(|v| {
                v.trim()
                    .parse::<usize>()
                    .map_err(|_| anyhow!("{k}={v}: not a whole number"))
            })
            .transpose()
    };
    let agree = |s: Shard, from: &str| -> Result<Option<Shard>> {
        if let Some(n) = shards {
            ensure!(
                n == s.count,
                "--shards {n} disagrees with {from}, which gives {} shards",
                s.count
            );
        }
        Ok(Some(s))
    };
    if let Some(f) = flag {
        return agree(f.parse()?, "--shard");
    }
    if let Some(i) = num("JOB_COMPLETION_INDEX")? {
        let n = shards.ok_or_else(|| {
            anyhow!("JOB_COMPLETION_INDEX={i} is set (a Kubernetes Indexed Job): give --shards N, the job's completions")
        })?;
        return Ok(Some(Shard::new(i, n)?));
    }
    if let Some(id) = num("SLURM_ARRAY_TASK_ID")? {
        // With --shards N the task id is the shard itself, so one failed task can be
        // re-submitted alone (`sbatch --array=2`).
        if let Some(n) = shards {
            return Ok(Some(Shard::new(id, n).with_context(|| {
                format!(
                    "SLURM_ARRAY_TASK_ID={id} with --shards {n}: submit --array=0-{}",
                    n.saturating_sub(1)
                )
            })?));
        }
        let n = num("SLURM_ARRAY_TASK_COUNT")?
            .ok_or_else(|| anyhow!("SLURM_ARRAY_TASK_ID is set without SLURM_ARRAY_TASK_COUNT"))?;
        let min = num("SLURM_ARRAY_TASK_MIN")?.unwrap_or(0);
        let i = id.checked_sub(min).filter(|&i| i < n).ok_or_else(|| {
            anyhow!(
                "Slurm array task {id} (min {min}, count {n}): the array's indices must be contiguous, e.g. --array=0-{}",
                n.saturating_sub(1)
            )
        })?;
        return Ok(Some(Shard::new(i, n)?));
    }
    if let Some(n) = shards {
        bail!("--shards {n} needs a shard index: --shard I/{n}, JOB_COMPLETION_INDEX or a Slurm array task");
    }
    Ok(None)
}

/// The shard of each document, from the documents' token counts in corpus order: document
/// j goes to shard ⌊N·(tokens before j + half its own)/total⌋, so shards are contiguous,
/// hold about total/N tokens each, and the cut depends on nothing but the counts and N.
pub fn assign(tokens: &[usize], count: usize) -> Vec<usize> {
    let total: u128 = tokens.iter().map(|&t| t as u128).sum();
    let n = count as u128;
    let mut before = 0u128;
    tokens
        .iter()
        .enumerate()
        .map(|(j, &t)| {
            let s = if total == 0 {
                j as u128 * n / tokens.len() as u128
            } else {
                (2 * before + t as u128) * n / (2 * total)
            };
            before += t as u128;
            (s.min(n - 1)) as usize
        })
        .collect()
}

/// `OUT.shards`: the parts of a sharded run of OUT.
pub fn shards_dir(out: &Path) -> PathBuf {
    let mut s = out.as_os_str().to_os_string();
    s.push(".shards");
    PathBuf::from(s)
}

/// Where shard `s` of a run of OUT writes its rows (its summary goes beside them).
pub fn part_output(out: &Path, s: Shard) -> PathBuf {
    shards_dir(out).join(format!("{}.parquet", s.name()))
}

/// What `merge` did.
#[derive(Debug)]
pub struct Merged {
    pub output: PathBuf,
    pub summary: PathBuf,
    pub shards: usize,
    pub documents: usize,
    pub tokens: usize,
}

/// Parse `part-I-of-N{suffix}`.
fn parse_name(name: &str, suffix: &str) -> Option<(usize, usize)> {
    let rest = name.strip_prefix("part-")?.strip_suffix(suffix)?;
    let (i, n) = rest.split_once("-of-")?;
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if !digits(i) || !digits(n) {
        return None;
    }
    Some((i.parse().ok()?, n.parse().ok()?))
}

/// Whether `dir` holds a file named `part-I-of-N{suffix}`.
pub(crate) fn has_parts(dir: &Path, suffix: &str) -> bool {
    std::fs::read_dir(dir).is_ok_and(|entries| {
        entries
            .flatten()
            .any(|e| parse_name(&e.file_name().to_string_lossy(), suffix).is_some())
    })
}

/// Check that `dir` holds the finished parts `part-I-of-N{suffix}` of one sharded run,
/// I = 0 to N−1 each once (a part under two spellings, a stale part of another N, a
/// missing part are errors naming them); returns N.
pub(crate) fn inventory(dir: &Path, suffix: &str) -> Result<usize> {
    let entries = std::fs::read_dir(dir)
        .with_context(|| format!("reading {} (no shard has finished?)", dir.display()))?;
    // (index, count) → file names, to find a part given twice under two spellings.
    let mut found: BTreeMap<(usize, usize), Vec<String>> = BTreeMap::new();
    for e in entries {
        let name = e?.file_name().to_string_lossy().into_owned();
        if let Some(k) = parse_name(&name, suffix) {
            found.entry(k).or_default().push(name);
        }
    }
    ensure!(
        !found.is_empty(),
        "{} holds no finished part (part-I-of-N{suffix})",
        dir.display()
    );
    if let Some((&(i, n), names)) = found.iter().find(|(_, v)| v.len() > 1) {
        bail!(
            "part {i} of {n} is there twice ({}); delete one",
            names.join(", ")
        );
    }
    let counts: std::collections::BTreeSet<usize> = found.keys().map(|&(_, n)| n).collect();
    if counts.len() > 1 {
        let names: Vec<String> = found.values().flatten().cloned().collect();
        bail!(
            "{} mixes runs of different shard counts ({}); delete the stale parts",
            dir.display(),
            names.join(", ")
        );
    }
    let count = *counts.iter().next().unwrap_or(&1);
    let missing: Vec<String> = (0..count)
        .filter(|&i| !found.contains_key(&(i, count)))
        .map(|i| Shard { index: i, count }.name())
        .collect();
    if let Some(i) = found.keys().map(|&(i, _)| i).find(|&i| i >= count) {
        bail!(
            "{}: part {i} of {count} has no place (shards are 0 to {})",
            dir.display(),
            count - 1
        );
    }
    ensure!(
        missing.is_empty(),
        "{}: missing {} (not finished: re-run those shards, e.g. sbatch --array=I or --shard I/{count})",
        dir.display(),
        missing.join(", ")
    );
    Ok(count)
}

/// `tokit merge OUT`: check that `OUT.shards` holds every part of one sharded run, each
/// once and all of the same inputs and code version, then write OUT and its summary as a
/// single run would. Writing the same files again, it is idempotent.
pub fn merge(out: &Path) -> Result<Merged> {
    let format = super::format_of(out)?;
    let dir = shards_dir(out);
    let count = inventory(&dir, ".summary.json")?;

    let mut base: Option<(String, Value)> = None;
    let mut columns: Option<Vec<String>> = None;
    let mut rows: Option<Rows> = None;
    let mut docs: Vec<DocStats> = Vec::new();
    let mut skipped: Vec<Skipped> = Vec::new();
    let mut owner: BTreeMap<u64, String> = BTreeMap::new();
    let mut corpus_docs = None;
    for index in 0..count {
        let s = Shard { index, count };
        let name = s.name();
        let sp = dir.join(format!("{name}.summary.json"));
        let summary: Value = serde_json::from_str(&std::fs::read_to_string(&sp)?)
            .with_context(|| format!("reading {}", sp.display()))?;
        ensure!(
            summary["complete"] == Value::Bool(true),
            "{name} is incomplete (interrupted): re-run shard {index} of {count}"
        );
        let mut manifest = summary["provenance"].clone();
        let shard = manifest
            .as_object_mut()
            .and_then(|m| m.remove("shard"))
            .ok_or_else(|| anyhow!("{}: no shard in its provenance", sp.display()))?;
        ensure!(
            shard["index"] == index && shard["count"] == count,
            "{}: its provenance says shard {} of {}",
            sp.display(),
            shard["index"],
            shard["count"]
        );
        match &base {
            None => {
                base = Some((name.clone(), manifest.clone()));
                corpus_docs = Some(shard["documents"].clone());
            }
            Some((first, m)) => {
                if *m != manifest {
                    let diff: Vec<String> = m
                        .as_object()
                        .into_iter()
                        .flatten()
                        .filter(|(k, v)| manifest.get(k.as_str()) != Some(v))
                        .map(|(k, v)| {
                            format!(
                                "{k}: {v} in {first}, {} in {name}",
                                manifest.get(k.as_str()).unwrap_or(&Value::Null)
                            )
                        })
                        .collect();
                    bail!(
                        "{name} comes from another run than {first} ({}); re-run it with the same inputs and tokit",
                        diff.join("; ")
                    );
                }
            }
        }
        let part_docs: Vec<DocStats> = serde_json::from_value(summary["per_document"].clone())
            .with_context(|| format!("{}: per_document", sp.display()))?;
        let part_skipped: Vec<Skipped> = serde_json::from_value(summary["skipped"].clone())
            .with_context(|| format!("{}: skipped", sp.display()))?;
        for d in part_docs
            .iter()
            .map(|d| d.doc)
            .chain(part_skipped.iter().map(|d| d.doc))
        {
            if let Some(other) = owner.insert(d, name.clone()) {
                bail!("document {d} is in both {other} and {name}: the parts overlap");
            }
        }
        let pq = part_output(out, s);
        let r = Rows::read_parquet(&pq)?;
        // The rows must be the ones this summary describes (a part is rows + summary).
        let mut per_doc: BTreeMap<u64, usize> = BTreeMap::new();
        for &d in &r.doc {
            *per_doc.entry(d as u64).or_default() += 1;
        }
        let want: BTreeMap<u64, usize> = part_docs.iter().map(|d| (d.doc, d.tokens)).collect();
        ensure!(
            per_doc == want,
            "{}: its rows do not match {} (a part from another run?); re-run shard {index} of {count}",
            pq.display(),
            sp.display()
        );
        if !part_docs.is_empty() {
            match &columns {
                None => columns = Some(r.columns.clone()),
                Some(c) => ensure!(
                    *c == r.columns,
                    "{name} has columns {:?}, earlier parts {c:?}",
                    r.columns
                ),
            }
            match &mut rows {
                None => rows = Some(r),
                Some(all) => all.append(r),
            }
        }
        docs.extend(part_docs);
        skipped.extend(part_skipped);
    }
    let (_, manifest) = base.ok_or_else(|| anyhow!("no parts"))?;
    if let Some(n) = corpus_docs.and_then(|v| v.as_u64()) {
        ensure!(
            owner.len() as u64 == n,
            "the parts hold {} documents, the corpus {n}",
            owner.len()
        );
    }
    let columns = columns.unwrap_or_default();
    let rows = rows.unwrap_or_else(|| Rows::new(columns.clone()));
    let (documents, tokens) =
        write_outputs(out, format, &columns, rows, docs, skipped, &manifest, true)?;
    Ok(Merged {
        output: out.to_path_buf(),
        summary: summary_path(out),
        shards: count,
        documents,
        tokens,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn assignment_is_contiguous_balanced_and_whole() {
        let tokens: Vec<usize> = (0..1000).map(|j| 5 + (j * 7919) % 40).collect();
        let total: usize = tokens.iter().sum();
        for n in [1, 2, 3, 4, 7, 16] {
            let a = assign(&tokens, n);
            assert!(a.windows(2).all(|w| w[0] <= w[1]), "contiguous for {n}");
            assert_eq!(a[0], 0);
            assert_eq!(*a.last().unwrap(), n - 1);
            for s in 0..n {
                let t: usize = tokens
                    .iter()
                    .zip(&a)
                    .filter(|(_, &x)| x == s)
                    .map(|(t, _)| t)
                    .sum();
                let ideal = total as f64 / n as f64;
                assert!(
                    (t as f64 - ideal).abs() <= 45.0,
                    "shard {s} of {n}: {t} tokens, ideal {ideal}"
                );
            }
        }
        // More shards than documents: some are empty, none out of range.
        let a = assign(&[3, 3], 5);
        assert!(a.iter().all(|&s| s < 5));
    }

    #[test]
    fn shard_comes_from_flag_kubernetes_or_slurm() {
        let none = |_: &str| None;
        assert_eq!(resolve(None, None, none).unwrap(), None);
        assert_eq!(
            resolve(Some("1/4"), None, none).unwrap(),
            Some(Shard { index: 1, count: 4 })
        );
        assert!(resolve(Some("4/4"), None, none).is_err());
        assert!(resolve(Some("1/4"), Some(3), none).is_err());
        assert!(resolve(None, Some(3), none).is_err());
        let k8s = |k: &str| (k == "JOB_COMPLETION_INDEX").then(|| "2".to_string());
        assert_eq!(
            resolve(None, Some(3), k8s).unwrap(),
            Some(Shard { index: 2, count: 3 })
        );
        assert!(resolve(None, None, k8s).is_err());
        let slurm = |k: &str| match k {
            "SLURM_ARRAY_TASK_ID" => Some("7".to_string()),
            "SLURM_ARRAY_TASK_MIN" => Some("5".to_string()),
            "SLURM_ARRAY_TASK_COUNT" => Some("4".to_string()),
            _ => None,
        };
        assert_eq!(
            resolve(None, None, slurm).unwrap(),
            Some(Shard { index: 2, count: 4 })
        );
        assert!(resolve(None, Some(3), slurm).is_err());
        assert_eq!(
            resolve(None, Some(8), slurm).unwrap(),
            Some(Shard { index: 7, count: 8 })
        );
        let gap = |k: &str| match k {
            "SLURM_ARRAY_TASK_ID" => Some("9".to_string()),
            "SLURM_ARRAY_TASK_COUNT" => Some("4".to_string()),
            _ => None,
        };
        assert!(resolve(None, None, gap).is_err());
    }
}
