//! Sharding a permutation test over the tasks of a cluster job and merging the shards
//! (`docs/corpus.md`, "Sharding a permutation test"):
//!
//! - `tokit analyze METRIC ... --output OUT --shard I/N` (or `--shards N` with a cluster's
//!   task index, as [`crate::corpus::shard::resolve`] reads it) on a metric with a
//!   permutation test (one that declares `surrogate_range`) computes the observed value
//!   and surrogates `first..end` only: a balanced contiguous range of the test's
//!   `permutations` (the split of [`crate::shard::indices`]); surrogate i draws from a
//!   generator derived from the seed and i, so it is the same number whichever shard
//!   computes it;
//! - it writes `OUT.shards/part-I-of-N.json` atomically (temporary file, then rename): the
//!   result, whose scalars hold the range's mergeable statistics (`surrogates_n`,
//!   `surrogates_exceeding`, `surrogates_sum`, `surrogates_m2`) and whose tensor
//!   `surrogates` holds its values, and the provenance (metric, parameters, hashes of the
//!   inputs, plugin and tokit versions, shard, surrogate range). A shard that fails or is
//!   killed writes nothing; re-run, it overwrites its part whole;
//! - `tokit merge OUT` checks the parts (every one once, of one N, of the same provenance,
//!   ranges tiling `0..permutations`, the same observed result bit for bit) and writes OUT
//!   as the single run writes it: the p-value `(1 + Σ exceeding) / (1 + Σ n)` is the single
//!   run's exactly, the surrogate mean and standard deviation (combined from the ranges'
//!   n, Σx and Σ(x − x̄) as Chan, Golub & LeVeque 1979 do) and the effective value agree
//!   with it to rounding, and the surrogate values are the single run's in order.

use crate::corpus::shard::{inventory, shards_dir};
use crate::corpus::Shard;
use crate::engine::{AnalyzeInput, Engine};
use crate::report::{write_atomic, Report};
use anyhow::{anyhow, bail, ensure, Context, Result};
use serde_json::{json, Value};
use std::ops::Range;
use std::path::{Path, PathBuf};
use tokit_compute::Tensor;

/// The parameter that gives a metric its surrogate range.
pub const RANGE_PARAM: &str = "surrogate_range";
/// The suffix of a permutation-test part in `OUT.shards`.
const SUFFIX: &str = ".json";
/// The result's scalars that describe the test (recomputed by the merge).
const TEST_SCALARS: [&str; 5] = [
    "p_value",
    "surrogate_mean",
    "surrogate_std",
    "effective",
    "permutations",
];
/// The range's mergeable statistics, present in a shard's result only.
const RANGE_SCALARS: [&str; 4] = [
    "surrogates_n",
    "surrogates_exceeding",
    "surrogates_sum",
    "surrogates_m2",
];

/// The surrogates shard `s` of a test of `count` computes: the split of
/// [`crate::shard::indices`] (surrogate j goes to shard ⌊N(2j + 1)/(2·count)⌋), in closed
/// form so a test of millions of surrogates needs no list of them; empty when there are
/// more shards than surrogates.
pub fn range(s: Shard, count: usize) -> Range<usize> {
    // Surrogates before shard i: the j with N(2j + 1) < 2·count·i.
    let before = |i: usize| -> usize {
        let (c, n, i) = (count as u128, s.count as u128, i as u128);
        if 2 * c * i <= n {
            0
        } else {
            ((2 * c * i + n - 1) / (2 * n)).min(c) as usize
        }
    };
    before(s.index)..before(s.index + 1)
}

/// `OUT.shards/part-I-of-N.json`.
pub fn part_path(out: &Path, s: Shard) -> PathBuf {
    shards_dir(out).join(format!("{}{SUFFIX}", s.name()))
}

/// Whether `OUT.shards` holds parts of a sharded permutation test.
pub fn is_test(out: &Path) -> bool {
    crate::corpus::shard::has_parts(&shards_dir(out), SUFFIX)
}

/// FNV-1a (64 bits) of the input tensors' shapes and values, of the tokens and of the
/// text: what a part's provenance identifies the inputs by.
fn input_hashes(input: &AnalyzeInput) -> Value {
    let fnv = |chunks: &[&[u8]]| {
        let mut h = crate::corpus::source::Fnv::new();
        for c in chunks {
            h.bytes(c);
        }
        h.hex()
    };
    let tensors: serde_json::Map<String, Value> = input
        .tensors
        .iter()
        .map(|(name, t)| {
            let shape: Vec<u8> = t.shape().iter().flat_map(|d| d.to_le_bytes()).collect();
            let data: Vec<u8> = t.data().iter().flat_map(|x| x.to_le_bytes()).collect();
            (
                name.clone(),
                json!({"shape": t.shape(), "hash": fnv(&[&shape, &data])}),
            )
        })
        .collect();
    let tokens = input.tokens.as_ref().map(|t| {
        let b: Vec<u8> = t.iter().flat_map(|x| x.to_le_bytes()).collect();
        fnv(&[&b])
    });
    let text = input.text.as_ref().map(|t| fnv(&[t.as_bytes()]));
    json!({"tensors": tensors, "tokens": tokens, "text": text})
}

/// What a shard did.
#[derive(Debug)]
pub struct ShardRun {
    pub part: PathBuf,
    pub surrogates: Range<usize>,
    pub permutations: usize,
    pub report: Report,
}

/// Run shard `s` of the permutation test of `metric` on `input`, for the merged result
/// `out`: compute its surrogate range and write its part.
pub fn run_shard(
    engine: &Engine,
    metric: &str,
    input: &AnalyzeInput,
    out: &Path,
    s: Shard,
) -> Result<ShardRun> {
    match out.extension().and_then(|e| e.to_str()) {
        Some("json" | "csv") => {}
        _ => bail!(
            "--output {}: a sharded permutation test is merged into a .json or .csv result",
            out.display()
        ),
    }
    let (plugin, spec) = engine.plugins.find_metric(metric)?;
    let declares = |n: &str| spec.params.iter().find(|p| p.name == n);
    let (Some(_), Some(perm)) = (declares(RANGE_PARAM), declares("permutations")) else {
        let able: Vec<String> = engine
            .metrics()
            .into_iter()
            .filter(|(_, m)| m.params.iter().any(|p| p.name == RANGE_PARAM))
            .map(|(_, m)| m.name)
            .collect();
        bail!(
            "metric `{metric}` has no permutation test to shard (--shard without --corpus splits a test's surrogates; metrics with one: {})",
            able.join(", ")
        );
    };
    ensure!(
        !input.params.contains_key(RANGE_PARAM)
            && !input.tensors.iter().any(|(n, _)| n == RANGE_PARAM),
        "give --shard or `{RANGE_PARAM}`, not both: the shard sets the range"
    );
    let given = input.params.get("permutations").filter(|v| !v.is_null());
    let count = given
        .unwrap_or(&perm.default)
        .as_u64()
        .and_then(|n| usize::try_from(n).ok())
        .ok_or_else(|| {
            anyhow!(
                "`permutations` = {}: expected a whole number",
                given.unwrap_or(&perm.default)
            )
        })?;
    ensure!(
        count > 0,
        "`permutations` is 0: there is no permutation test to shard"
    );
    let r = range(s, count);
    let mut input = input.clone();
    let manifest = json!({
        "metric": metric,
        "params": input.params,
        "permutations": count,
        "inputs": input_hashes(&input),
        "model": input.model.as_ref().map(|m| m.path.display().to_string()),
        "model_fingerprint": input.model.as_ref().map(|m| m.fingerprint.clone()),
        "plugin": plugin.name(),
        "plugin_version": plugin.desc.version,
        "tokit_version": env!("CARGO_PKG_VERSION"),
        "shard": {"index": s.index, "count": s.count, "surrogates": [r.start, r.end]},
    });
    input
        .params
        .insert(RANGE_PARAM.into(), json!([r.start, r.end]));
    let report = engine.analyze(metric, &input)?;
    for k in RANGE_SCALARS {
        ensure!(
            report.scalars.contains_key(k),
            "metric `{metric}` returned no `{k}` with `{RANGE_PARAM}`: it cannot be sharded"
        );
    }
    let part = part_path(out, s);
    let text = serde_json::to_string_pretty(&json!({
        "provenance": manifest,
        "result": report.to_json(),
    }))?;
    write_atomic(&part, text.as_bytes()).with_context(|| format!("writing {}", part.display()))?;
    Ok(ShardRun {
        part,
        surrogates: r,
        permutations: count,
        report,
    })
}

/// What `merge` did.
#[derive(Debug)]
pub struct MergedTest {
    pub output: PathBuf,
    pub shards: usize,
    pub permutations: usize,
    pub p_value: f64,
}

/// A number of a part's result: present, finite and (for counts) whole.
fn scalar(r: &Report, k: &str, name: &str) -> Result<f64> {
    r.scalars
        .get(k)
        .copied()
        .filter(|v| v.is_finite())
        .ok_or_else(|| anyhow!("{name}: its result has no `{k}`"))
}

/// The result without what depends on the surrogate range or the node: what every part
/// must share.
fn observed(r: &Report) -> Value {
    let mut v = r.to_json();
    if let Some(s) = v["scalars"].as_object_mut() {
        for k in TEST_SCALARS.iter().chain(&RANGE_SCALARS) {
            s.remove(*k);
        }
    }
    if let Some(t) = v["tensors"].as_object_mut() {
        t.remove("surrogates");
    }
    // When and on which backend (thread count, GPU) a shard ran is no part of its result:
    // the nodes of a cluster differ.
    if let Some(p) = v["provenance"].as_object_mut() {
        p.remove("created_unix");
        p.remove("backend");
    }
    v
}

/// Keys whose values differ between two JSON objects, with both values.
fn differences(a: &Value, b: &Value, in_a: &str, in_b: &str) -> String {
    let (Some(a), Some(b)) = (a.as_object(), b.as_object()) else {
        return format!("{a} in {in_a}, {b} in {in_b}");
    };
    let mut keys: Vec<&String> = a.keys().chain(b.keys()).collect();
    keys.sort();
    keys.dedup();
    keys.into_iter()
        .filter(|k| a.get(*k) != b.get(*k))
        .map(|k| {
            let show = |v: Option<&Value>| {
                let s = v.map_or("nothing".to_string(), Value::to_string);
                if s.chars().count() > 60 {
                    s.chars().take(57).collect::<String>() + "..."
                } else {
                    s
                }
            };
            format!(
                "{k}: {} in {in_a}, {} in {in_b}",
                show(a.get(k)),
                show(b.get(k))
            )
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// `tokit merge OUT` for a sharded permutation test: check the parts in `OUT.shards` and
/// write OUT as the single run writes it. Writing the same file again, it is idempotent.
pub fn merge(out: &Path) -> Result<MergedTest> {
    let dir = shards_dir(out);
    let count = inventory(&dir, SUFFIX)?;
    let mut first: Option<(String, Value, Report, Value)> = None;
    let (mut n, mut exceeding) = (0u64, 0u64);
    // Running n, mean and Σ(x − mean)² of the surrogates (Chan, Golub & LeVeque 1979).
    let (mut mean, mut m2) = (0.0f64, 0.0f64);
    let mut values: Vec<f32> = Vec::new();
    let mut next = 0usize;
    let mut permutations = 0usize;
    let mut created = 0u64;
    for index in 0..count {
        let name = Shard { index, count }.name();
        let path = part_path(out, Shard { index, count });
        let part: Value = serde_json::from_str(
            &std::fs::read_to_string(&path)
                .with_context(|| format!("reading {}", path.display()))?,
        )
        .with_context(|| format!("reading {}", path.display()))?;
        let mut manifest = part["provenance"].clone();
        let shard = manifest
            .as_object_mut()
            .and_then(|m| m.remove("shard"))
            .ok_or_else(|| anyhow!("{}: no shard in its provenance", path.display()))?;
        ensure!(
            shard["index"] == index && shard["count"] == count,
            "{}: its provenance says shard {} of {}",
            path.display(),
            shard["index"],
            shard["count"]
        );
        let report = Report::from_json(&part["result"])
            .with_context(|| format!("reading {}", path.display()))?;
        let seen = observed(&report);
        match &first {
            None => {
                permutations = manifest["permutations"]
                    .as_u64()
                    .and_then(|p| usize::try_from(p).ok())
                    .ok_or_else(|| anyhow!("{name}: no `permutations` in its provenance"))?;
                first = Some((name.clone(), manifest, report.clone(), seen));
            }
            Some((first_name, m, _, o)) => {
                if *m != manifest {
                    bail!(
                        "{name} comes from another run than {first_name} ({}); re-run it with the same inputs and tokit",
                        differences(m, &manifest, first_name, &name)
                    );
                }
                if *o != seen {
                    bail!(
                        "{name}'s observed result differs from {first_name}'s ({}): the parts are not of one computation; re-run them with the same tokit and plugins",
                        differences(o, &seen, first_name, &name)
                    );
                }
            }
        }
        let range: Vec<usize> = serde_json::from_value(shard["surrogates"].clone())
            .with_context(|| format!("{}: surrogates", path.display()))?;
        let [start, end] = range[..] else {
            bail!("{}: surrogates is no [first, end]", path.display());
        };
        ensure!(
            start == next && end >= start,
            "{name} holds surrogates {start}..{end}, but the parts before it end at {next}: the parts do not tile the test"
        );
        next = end;
        let k = scalar(&report, "surrogates_n", &name)?;
        ensure!(
            k == (end - start) as f64,
            "{name}: {k} surrogates for the range {start}..{end}"
        );
        let k = k as u64;
        if k > 0 {
            let sum = scalar(&report, "surrogates_sum", &name)?;
            let part_m2 = scalar(&report, "surrogates_m2", &name)?;
            let part_mean = sum / k as f64;
            let total = n + k;
            let delta = part_mean - mean;
            mean += delta * k as f64 / total as f64;
            m2 += part_m2 + delta * delta * (n as f64) * (k as f64) / total as f64;
            n = total;
            exceeding += scalar(&report, "surrogates_exceeding", &name)? as u64;
        }
        let t = report
            .tensors
            .get("surrogates")
            .map_or(&[][..], |t| t.data());
        ensure!(
            t.len() as u64 == k,
            "{name}: {} surrogate values for {k} surrogates",
            t.len()
        );
        values.extend_from_slice(t);
        created = created.max(report.provenance.created_unix);
    }
    let (_, _, mut report, _) = first.ok_or_else(|| anyhow!("no parts"))?;
    ensure!(
        next == permutations,
        "the parts hold surrogates 0..{next} of {permutations}"
    );
    for k in RANGE_SCALARS {
        report.scalars.remove(k);
    }
    let s = n as f64;
    let std = if n > 1 { (m2 / (s - 1.0)).sqrt() } else { 0.0 };
    // As the plugin computes it: (1 + #{surrogate ≥ observed}) / (1 + S).
    let p_value = (1 + exceeding) as f64 / (1 + n) as f64;
    let observed = report.value.unwrap_or(f64::NAN);
    for (k, v) in [
        ("p_value", p_value),
        ("surrogate_mean", mean),
        ("surrogate_std", std),
        ("effective", observed - mean),
        ("permutations", s),
    ] {
        report.scalars.insert(k.into(), v);
    }
    report.tensors.insert(
        "surrogates".into(),
        Tensor::new(vec![values.len()], values)?,
    );
    report.provenance.created_unix = created;
    report.save(out)?;
    Ok(MergedTest {
        output: out.to_path_buf(),
        shards: count,
        permutations: n as usize,
        p_value,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_tile_the_surrogates_for_any_n() {
        for total in [0, 1, 3, 5, 200, 201] {
            for n in [1, 2, 3, 4, 7, 16] {
                let mut next = 0;
                for i in 0..n {
                    let s = Shard::new(i, n).unwrap();
                    let r = range(s, total);
                    // The split of `shard_items`.
                    assert_eq!(
                        r.clone().collect::<Vec<_>>(),
                        crate::shard::indices(Some(s), total),
                        "{total} over {n}: shard {i}"
                    );
                    assert_eq!(r.start, next, "{total} over {n}: shard {i}");
                    assert!(r.len() <= total.div_ceil(n), "balanced");
                    next = r.end;
                }
                assert_eq!(next, total);
            }
        }
        // Fewer surrogates than shards: some shards are empty.
        let lens: Vec<usize> = (0..7)
            .map(|i| range(Shard::new(i, 7).unwrap(), 3).len())
            .collect();
        assert_eq!(lens.iter().sum::<usize>(), 3);
        assert!(lens.contains(&0));
    }
}
