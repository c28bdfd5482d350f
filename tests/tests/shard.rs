//! Sharded corpus analyses (`analyze --corpus ... --shard I/N`, `tokit merge OUT`,
//! `docs/corpus.md`): shards run as separate processes the ways a cluster starts them (a
//! Kubernetes Indexed Job's `JOB_COMPLETION_INDEX`, a Slurm array's task variables, the
//! flag), and their merge is byte for byte the single run's files; a shard killed midway
//! and re-run gives the same merge; missing, duplicated and foreign parts are refused by
//! name. Under CI a real one-node Slurm cluster runs the array.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use tokit_engine::corpus::shard::shards_dir;
use tokit_engine::corpus::summary_path;
use tokit_tests::*;

/// Verses of Genesis, with a one-word line (skipped: fewer than 2 tokens) among them.
fn write_corpus(dir: &Path, n: usize) -> PathBuf {
    let mut lines: Vec<&str> = GENESIS.lines().take(n).collect();
    lines.insert(n / 3, "Amen");
    let p = dir.join("kjv.txt");
    std::fs::write(&p, lines.join("\n") + "\n").unwrap();
    p
}

/// `tokit` with no cluster variables of the environment this test runs in.
fn clean_tokit() -> Command {
    let mut c = tokit_command();
    for k in [
        "JOB_COMPLETION_INDEX",
        "SLURM_ARRAY_TASK_ID",
        "SLURM_ARRAY_TASK_MIN",
        "SLURM_ARRAY_TASK_COUNT",
    ] {
        c.env_remove(k);
    }
    c
}

fn ok(o: &Output) -> String {
    assert!(
        o.status.success(),
        "tokit failed: {}\n{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn fails(o: &Output) -> String {
    assert!(!o.status.success(), "tokit should fail");
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn p(x: &Path) -> String {
    x.to_str().unwrap().to_string()
}

fn analyze_args(model: &Path, corpus: &Path, out: &Path) -> Vec<String> {
    [
        "analyze",
        "token_stats",
        "--model",
        &p(model),
        "--corpus",
        &p(corpus),
        "--window",
        "48",
        "--part-tokens",
        "120",
        "--output",
        &p(out),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

/// Shards 0 and 1 of 4 as a Kubernetes Indexed Job starts them: `--shards 4` with
/// `JOB_COMPLETION_INDEX`, both at the same time.
fn kubernetes_shards_0_and_1_of_4(args: &[String]) {
    let pods: Vec<_> = (0..2)
        .map(|i| {
            clean_tokit()
                .args(args)
                .args(["--shards", "4"])
                .env("JOB_COMPLETION_INDEX", i.to_string())
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for pod in pods {
        ok(&pod.wait_with_output().unwrap());
    }
}

fn merge(out: &Path) -> Output {
    clean_tokit().args(["merge", &p(out)]).output().unwrap()
}

/// The merged files equal the single run's, byte for byte.
fn assert_same_files(merged: &Path, single: &Path) {
    assert_eq!(
        std::fs::read(merged).unwrap(),
        std::fs::read(single).unwrap(),
        "per-token table"
    );
    assert_eq!(
        std::fs::read_to_string(summary_path(merged)).unwrap(),
        std::fs::read_to_string(summary_path(single)).unwrap(),
        "summary"
    );
}

#[test]
fn shards_from_kubernetes_slurm_and_the_flag_merge_to_the_single_run() {
    let dir = tempfile::tempdir().unwrap();
    let model = word_llama(dir.path());
    let corpus = write_corpus(dir.path(), 60);
    let single = dir.path().join("single.parquet");
    ok(&clean_tokit()
        .args(analyze_args(&model, &corpus, &single))
        .output()
        .unwrap());

    let out = dir.path().join("sharded.parquet");
    let args = analyze_args(&model, &corpus, &out);
    kubernetes_shards_0_and_1_of_4(&args);
    // Shard 2 as task 12 of a Slurm array 10-13.
    ok(&clean_tokit()
        .args(&args)
        .env("SLURM_ARRAY_TASK_ID", "12")
        .env("SLURM_ARRAY_TASK_MIN", "10")
        .env("SLURM_ARRAY_TASK_COUNT", "4")
        .output()
        .unwrap());
    let e = fails(&merge(&out));
    assert!(e.contains("missing part-3-of-4"), "{e}");

    // Shard 3 killed (abort, as kill -9: no cleanup) after its first part: still missing.
    let o = clean_tokit()
        .args(&args)
        .args(["--shard", "3/4", "--abort-after-parts", "1"])
        .output()
        .unwrap();
    assert!(!o.status.success());
    let e = fails(&merge(&out));
    assert!(
        e.contains("missing part-3-of-4"),
        "a killed shard is no part: {e}"
    );
    // Re-run alone, it resumes from its finished part.
    let re = ok(&clean_tokit()
        .args(&args)
        .args(["--shard", "3/4"])
        .output()
        .unwrap());
    assert!(re.contains("shard 3 of 4"), "{re}");

    let m = ok(&merge(&out));
    assert!(m.contains("merged 4 shards"), "{m}");
    assert_same_files(&out, &single);
    // Idempotent.
    ok(&merge(&out));
    assert_same_files(&out, &single);

    // Shards hold whole documents and about a quarter of the tokens each.
    let shards = shards_dir(&out);
    let tokens: Vec<u64> = (0..4)
        .map(|i| {
            let s: serde_json::Value = serde_json::from_str(
                &std::fs::read_to_string(shards.join(format!("part-{i}-of-4.summary.json")))
                    .unwrap(),
            )
            .unwrap();
            s["tokens"].as_u64().unwrap()
        })
        .collect();
    let total: u64 = tokens.iter().sum();
    for t in &tokens {
        let dev = (*t as f64 - total as f64 / 4.0).abs();
        assert!(dev <= 60.0, "shard tokens {tokens:?}");
    }

    // A part given twice, under another spelling.
    let one = shards.join("part-1-of-4.summary.json");
    let twice = shards.join("part-01-of-4.summary.json");
    std::fs::copy(&one, &twice).unwrap();
    let e = fails(&merge(&out));
    assert!(
        e.contains("part 1 of 4 is there twice")
            && e.contains("part-1-of-4.summary.json")
            && e.contains("part-01-of-4.summary.json"),
        "{e}"
    );
    std::fs::remove_file(&twice).unwrap();
    // A stale part of a run with another shard count.
    let stale = shards.join("part-0-of-3.summary.json");
    std::fs::copy(shards.join("part-0-of-4.summary.json"), &stale).unwrap();
    let e = fails(&merge(&out));
    assert!(
        e.contains("different shard counts") && e.contains("part-0-of-3.summary.json"),
        "{e}"
    );
    std::fs::remove_file(&stale).unwrap();
    // A part from another code version.
    let two = shards.join("part-2-of-4.summary.json");
    let saved = std::fs::read_to_string(&two).unwrap();
    let mut v: serde_json::Value = serde_json::from_str(&saved).unwrap();
    v["provenance"]["tokit_version"] = "0.0.0-other".into();
    std::fs::write(&two, v.to_string()).unwrap();
    let e = fails(&merge(&out));
    assert!(
        e.contains("part-2-of-4 comes from another run than part-0-of-4")
            && e.contains("tokit_version"),
        "{e}"
    );
    std::fs::write(&two, saved).unwrap();
    // Rows that are not the summary's.
    let pq = shards.join("part-1-of-4.parquet");
    let rows = std::fs::read(&pq).unwrap();
    std::fs::copy(shards.join("part-2-of-4.parquet"), &pq).unwrap();
    let e = fails(&merge(&out));
    assert!(
        e.contains("part-1-of-4.parquet: its rows do not match"),
        "{e}"
    );
    std::fs::write(&pq, rows).unwrap();
    ok(&merge(&out));
    assert_same_files(&out, &single);

    // Shard flags are checked.
    let e = fails(
        &clean_tokit()
            .args(&args)
            .args(["--shards", "4"])
            .output()
            .unwrap(),
    );
    assert!(e.contains("--shards 4 needs a shard index"), "{e}");
    let e = fails(
        &clean_tokit()
            .args(&args)
            .env("JOB_COMPLETION_INDEX", "1")
            .output()
            .unwrap(),
    );
    assert!(e.contains("give --shards N"), "{e}");
}

/// A shard killed with SIGKILL (as `kill -9`, by a scheduler's time limit or the OOM
/// killer) after its first part: no part for `merge`; re-run, it resumes from its finished
/// parts and the merge is the single run.
#[test]
fn a_shard_killed_with_sigkill_resumes_to_the_same_merge() {
    let dir = tempfile::tempdir().unwrap();
    let model = word_llama(dir.path());
    let corpus = write_corpus(dir.path(), 299);
    let mut args = analyze_args(&model, &corpus, &dir.path().join("single.parquet"));
    args[9] = "20".into(); // --part-tokens: many small parts, so the kill lands midway
    let single = dir.path().join("single.parquet");
    ok(&clean_tokit().args(&args).output().unwrap());
    let out = dir.path().join("sharded.parquet");
    args[11] = p(&out);
    for i in [0, 2] {
        ok(&clean_tokit()
            .args(&args)
            .args(["--shard", &format!("{i}/3")])
            .output()
            .unwrap());
    }
    let mut child = clean_tokit()
        .args(&args)
        .args(["--shard", "1/3"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let first = shards_dir(&out).join("part-1-of-3.parquet.parts/part-000000.json");
    while !first.exists() {
        assert!(
            child.try_wait().unwrap().is_none(),
            "shard 1 ended before a part"
        );
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    assert!(
        child.try_wait().unwrap().is_none(),
        "shard 1 finished before the kill"
    );
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let e = fails(&merge(&out));
    assert!(e.contains("missing part-1-of-3"), "{e}");
    let re = ok(&clean_tokit()
        .args(&args)
        .args(["--shard", "1/3"])
        .output()
        .unwrap());
    // "token_stats: D documents, T tokens (C computed now, ...": the finished parts skipped.
    let num = |after: &str| -> usize {
        let w: Vec<&str> = re.split_whitespace().collect();
        let k = w.iter().position(|x| *x == after).unwrap();
        w[k - 1].trim_start_matches('(').parse().unwrap()
    };
    assert!(num("computed") < num("documents,"), "resumed: {re}");
    ok(&merge(&out));
    assert_same_files(&out, &single);
}

/// More shards than documents: the empty shards write empty parts and the merge is still
/// the single run.
#[test]
fn more_shards_than_documents() {
    let dir = tempfile::tempdir().unwrap();
    let model = word_llama(dir.path());
    let corpus = write_corpus(dir.path(), 2);
    let single = dir.path().join("single.jsonl");
    ok(&clean_tokit()
        .args(analyze_args(&model, &corpus, &single))
        .output()
        .unwrap());
    let out = dir.path().join("sharded.jsonl");
    for i in 0..5 {
        ok(&clean_tokit()
            .args(analyze_args(&model, &corpus, &out))
            .args(["--shard", &format!("{i}/5")])
            .output()
            .unwrap());
    }
    ok(&merge(&out));
    assert_same_files(&out, &single);
}

/// A real Slurm: a one-node cluster on this machine (examples/slurm/local-cluster.sh), the
/// job array of examples/slurm/analyze.sbatch, then the merge equals the single run; a task
/// killed midway and re-submitted alone gives the same merge. Skipped without Slurm,
/// failing under CI.
#[test]
fn slurm_array_merges_to_the_single_run() {
    let test = "slurm_array_merges_to_the_single_run";
    if Command::new("sbatch").arg("--version").output().is_err() {
        missing_prerequisite(test, "sbatch not found (apt-get install slurm-wlm munge)");
        return;
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let cluster = Command::new(root.join("examples/slurm/local-cluster.sh"))
        .output()
        .unwrap();
    if !cluster.status.success() {
        missing_prerequisite(
            test,
            format!(
                "the local Slurm cluster did not start: {}",
                String::from_utf8_lossy(&cluster.stderr)
            ),
        );
        return;
    }
    ensure_built();
    let dir = tempfile::tempdir().unwrap();
    let model = word_llama(dir.path());
    let corpus = write_corpus(dir.path(), 80);
    let single = dir.path().join("single.parquet");
    ok(&clean_tokit()
        .args(analyze_args(&model, &corpus, &single))
        .output()
        .unwrap());
    let out = dir.path().join("slurm.parquet");
    let exe = target_dir().join(format!("tokit{}", std::env::consts::EXE_SUFFIX));
    let sbatch = |array: &str, extra: &[&str]| -> Output {
        Command::new("sbatch")
            .current_dir(dir.path())
            .args([
                &format!("--array={array}"),
                "--wait",
                "--output",
                &p(&dir.path().join("slurm-%a.out")),
            ])
            .arg(root.join("examples/slurm/analyze.sbatch"))
            .args(["--window", "48", "--part-tokens", "120"])
            .args(extra)
            .env("TOKIT", &exe)
            .env("MODEL", &model)
            .env("CORPUS", &corpus)
            .env("OUT", &out)
            .env("SHARDS", "4")
            .output()
            .unwrap()
    };
    let log = |i: usize| {
        std::fs::read_to_string(dir.path().join(format!("slurm-{i}.out"))).unwrap_or_default()
    };
    let o = sbatch("0-3", &[]);
    assert!(
        o.status.success(),
        "sbatch: {}\n{}\ntask logs: {}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr),
        (0..4).map(log).collect::<Vec<_>>().join("\n")
    );
    ok(&merge(&out));
    assert_same_files(&out, &single);

    // Task 2 killed midway in a fresh run: the merge names it; re-submitted alone, it
    // resumes and the merge is the single run again.
    std::fs::remove_dir_all(shards_dir(&out).join("part-2-of-4.parquet.parts")).unwrap();
    std::fs::remove_file(shards_dir(&out).join("part-2-of-4.summary.json")).unwrap();
    std::fs::remove_file(shards_dir(&out).join("part-2-of-4.parquet")).unwrap();
    let o = sbatch("2", &["--abort-after-parts", "1"]);
    assert!(!o.status.success(), "the killed task reports failure");
    let e = fails(&merge(&out));
    assert!(e.contains("missing part-2-of-4"), "{e}");
    let o = sbatch("2", &[]);
    assert!(o.status.success(), "re-submitted task: {}", log(2));
    ok(&merge(&out));
    assert_same_files(&out, &single);

    // A permutation test as an array (examples/slurm/permutation.sbatch).
    let (src, dst) = te_streams(dir.path(), 2000, 0);
    let single = dir.path().join("te-single.json");
    ok(&clean_tokit()
        .args(te_args(&src, &dst, &single, 200))
        .output()
        .unwrap());
    let out = dir.path().join("te-slurm.json");
    let args = te_args(&src, &dst, &out, 200);
    let o = Command::new("sbatch")
        .current_dir(dir.path())
        .args([
            "--array=0-3",
            "--wait",
            "--output",
            &p(&dir.path().join("te-%a.out")),
        ])
        .arg(root.join("examples/slurm/permutation.sbatch"))
        // `analyze transfer_entropy` and `--output OUT` come from the script.
        .args(&args[2..args.len() - 2])
        .env("TOKIT", &exe)
        .env("OUT", &out)
        .env("SHARDS", "4")
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "sbatch: {}\n{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    ok(&merge(&out));
    assert_same_test(&out, &single);
}

/// `tokit run --shard I/N SCRIPT`: `shard_items` gives each shard its slice of a grid, the
/// shards together cover it once, and `item_seed` depends on the item, not on N.
#[test]
fn script_grids_split_over_shards_with_seeds_independent_of_n() {
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("grid.rhai");
    std::fs::write(
        &script,
        "let grid = [];\n\
         for i in 0..11 { grid.push(i * 10); }\n\
         let idx = shard_indices(grid.len());\n\
         let items = shard_items(grid);\n\
         for k in 0..items.len() { print(`${items[k]} ${item_seed(42, idx[k])}`); }\n\
         print(`shard ${shard_index()} of ${shard_count()}`);\n",
    )
    .unwrap();
    let run = |extra: &[&str], env: Option<(&str, &str)>| -> Vec<String> {
        let mut c = clean_tokit();
        c.arg("run").args(extra).arg(&script);
        if let Some((k, v)) = env {
            c.env(k, v);
        }
        ok(&c.output().unwrap())
            .lines()
            .map(str::to_string)
            .collect()
    };
    let whole = run(&[], None);
    assert_eq!(whole.last().unwrap(), "shard 0 of 1");
    let whole: Vec<String> = whole[..whole.len() - 1].to_vec();
    assert_eq!(whole.len(), 11);
    for n in [2usize, 3, 4] {
        let mut got = Vec::new();
        for i in 0..n {
            let out = if i == 1 {
                run(
                    &["--shards", &n.to_string()],
                    Some(("JOB_COMPLETION_INDEX", "1")),
                )
            } else {
                run(&["--shard", &format!("{i}/{n}")], None)
            };
            assert_eq!(out.last().unwrap(), &format!("shard {i} of {n}"));
            let k = out.len() - 1;
            assert!(k == 11 / n || k == 11usize.div_ceil(n), "balanced: {out:?}");
            got.extend(out[..out.len() - 1].iter().cloned());
        }
        assert_eq!(got, whole, "{n} shards, in order, same seeds");
    }
    let e = fails(
        &clean_tokit()
            .args(["run", "--shard", "3/3"])
            .arg(&script)
            .output()
            .unwrap(),
    );
    assert!(e.contains("shards are numbered 0 to 2"), "{e}");
}

/// Two binary streams where the target copies the source's last symbol now and then: a
/// transfer entropy whose permutation test is neither 0 nor 1, written as `.npy` inputs.
fn te_streams(dir: &Path, n: usize, seed: u64) -> (PathBuf, PathBuf) {
    let mut x = 0x2545_f491_4f6c_dd1du64 ^ seed;
    let mut next = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let src: Vec<u32> = (0..n).map(|_| (next() % 2) as u32).collect();
    let dst: Vec<u32> = (0..n)
        .map(|t| {
            let r = next();
            if t > 0 && r % 100 < 4 {
                src[t - 1]
            } else {
                ((r >> 8) % 2) as u32
            }
        })
        .collect();
    let (s, d) = (
        dir.join(format!("source-{seed}.npy")),
        dir.join(format!("target-{seed}.npy")),
    );
    write_npy_i64(&s, &src);
    write_npy_i64(&d, &dst);
    (s, d)
}

fn te_args(src: &Path, dst: &Path, out: &Path, permutations: usize) -> Vec<String> {
    [
        "analyze",
        "transfer_entropy",
        "--input",
        &format!("source={}", p(src)),
        "--input",
        &format!("target={}", p(dst)),
        "-p",
        &format!("permutations={permutations}"),
        "-p",
        "seed=5",
        "-p",
        "unit=bits",
        "--output",
        &p(out),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

fn read_json(path: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// The merged permutation test is the single run's: the p-value and the surrogate values
/// identical, the surrogate mean and standard deviation and the effective value to 1e-12
/// relative (of the value for the effective value), everything else (the observed value,
/// its locals, parameters) the same.
fn assert_same_test(merged: &Path, single: &Path) {
    let (mut m, mut s) = (read_json(merged), read_json(single));
    assert_eq!(m["scalars"]["p_value"], s["scalars"]["p_value"]);
    assert_eq!(m["tensors"]["surrogates"], s["tensors"]["surrogates"]);
    let value = s["value"].as_f64().unwrap().abs();
    for k in ["surrogate_mean", "surrogate_std", "effective"] {
        let (a, b) = (
            m["scalars"][k].as_f64().unwrap(),
            s["scalars"][k].as_f64().unwrap(),
        );
        let scale = if k == "effective" { value } else { b.abs() };
        assert!(
            (a - b).abs() <= 1e-12 * scale,
            "{k}: merged {a}, single {b}"
        );
        m["scalars"][k] = serde_json::Value::Null;
        s["scalars"][k] = serde_json::Value::Null;
    }
    m["provenance"]["created_unix"] = 0.into();
    s["provenance"]["created_unix"] = 0.into();
    assert_eq!(m, s);
}

#[test]
fn permutation_test_shards_merge_to_the_single_run() {
    let dir = tempfile::tempdir().unwrap();
    let (src, dst) = te_streams(dir.path(), 3000, 0);
    let single = dir.path().join("single.json");
    ok(&clean_tokit()
        .args(te_args(&src, &dst, &single, 200))
        .output()
        .unwrap());
    let sp = read_json(&single)["scalars"]["p_value"].as_f64().unwrap();
    assert!(
        sp > 0.02 && sp < 0.9,
        "a p-value with something to count: {sp}"
    );

    let out = dir.path().join("sharded.json");
    let args = te_args(&src, &dst, &out, 200);
    kubernetes_shards_0_and_1_of_4(&args);
    // Shard 2 by the flag, shard 3 as Slurm array task 3 with --shards.
    let two = ok(&clean_tokit()
        .args(&args)
        .args(["--shard", "2/4"])
        .output()
        .unwrap());
    assert!(two.contains("surrogates 100..150 of 200"), "{two}");
    let e = fails(&merge(&out));
    assert!(e.contains("missing part-3-of-4"), "{e}");
    ok(&clean_tokit()
        .args(&args)
        .args(["--shards", "4"])
        .env("SLURM_ARRAY_TASK_ID", "3")
        .output()
        .unwrap());
    let m = ok(&merge(&out));
    assert!(m.contains("merged 4 shards: 200 surrogates"), "{m}");
    assert_same_test(&out, &single);
    // Idempotent.
    let bytes = std::fs::read(&out).unwrap();
    ok(&merge(&out));
    assert_eq!(std::fs::read(&out).unwrap(), bytes);
    // A shard run again overwrites its part with the same result.
    ok(&clean_tokit()
        .args(&args)
        .args(["--shard", "1/4"])
        .output()
        .unwrap());
    ok(&merge(&out));
    assert_same_test(&out, &single);

    // The refusals name the part.
    let shards = shards_dir(&out);
    let part = |i: usize| shards.join(format!("part-{i}-of-4.json"));
    let twice = shards.join("part-01-of-4.json");
    std::fs::copy(part(1), &twice).unwrap();
    let e = fails(&merge(&out));
    assert!(
        e.contains("part 1 of 4 is there twice")
            && e.contains("part-1-of-4.json")
            && e.contains("part-01-of-4.json"),
        "{e}"
    );
    std::fs::remove_file(&twice).unwrap();
    let stale = shards.join("part-0-of-3.json");
    std::fs::copy(part(0), &stale).unwrap();
    let e = fails(&merge(&out));
    assert!(
        e.contains("different shard counts") && e.contains("part-0-of-3.json"),
        "{e}"
    );
    std::fs::remove_file(&stale).unwrap();
    // Another seed is another run.
    let saved = std::fs::read(part(2)).unwrap();
    let mut reseeded = args.clone();
    reseeded[9] = "seed=6".into();
    ok(&clean_tokit()
        .args(&reseeded)
        .args(["--shard", "2/4"])
        .output()
        .unwrap());
    let e = fails(&merge(&out));
    assert!(
        e.contains("part-2-of-4 comes from another run than part-0-of-4") && e.contains("seed"),
        "{e}"
    );
    // Other inputs are another run.
    let (src2, _) = te_streams(dir.path(), 3000, 1);
    let mut other = args.clone();
    other[3] = format!("source={}", p(&src2));
    ok(&clean_tokit()
        .args(&other)
        .args(["--shard", "2/4"])
        .output()
        .unwrap());
    let e = fails(&merge(&out));
    assert!(
        e.contains("part-2-of-4 comes from another run than part-0-of-4") && e.contains("inputs"),
        "{e}"
    );
    std::fs::write(part(2), &saved).unwrap();
    // Another tokit version.
    let saved3 = std::fs::read(part(3)).unwrap();
    let mut v = read_json(&part(3));
    v["provenance"]["tokit_version"] = "0.0.0-other".into();
    std::fs::write(part(3), v.to_string()).unwrap();
    let e = fails(&merge(&out));
    assert!(
        e.contains("part-3-of-4 comes from another run than part-0-of-4")
            && e.contains("tokit_version"),
        "{e}"
    );
    std::fs::write(part(3), &saved3).unwrap();
    // An observed value one rounding away from the others'.
    let saved1 = std::fs::read(part(1)).unwrap();
    let mut v = read_json(&part(1));
    let x = v["result"]["value"].as_f64().unwrap();
    v["result"]["value"] = f64::from_bits(x.to_bits() + 1).into();
    std::fs::write(part(1), v.to_string()).unwrap();
    let e = fails(&merge(&out));
    assert!(
        e.contains("part-1-of-4's observed result differs from part-0-of-4's")
            && e.contains("value"),
        "{e}"
    );
    std::fs::write(part(1), saved1).unwrap();
    ok(&merge(&out));
    assert_same_test(&out, &single);
    // Shard 3 deleted and re-run with a missing input: it fails and leaves no part.
    std::fs::remove_file(part(3)).unwrap();
    let mut bad = args.clone();
    bad[5] = format!("target={}", p(&dir.path().join("missing.npy")));
    fails(
        &clean_tokit()
            .args(&bad)
            .args(["--shard", "3/4"])
            .output()
            .unwrap(),
    );
    assert!(!part(3).exists());
    let e = fails(&merge(&out));
    assert!(e.contains("missing part-3-of-4"), "{e}");
    // A half-written temporary file of a killed writer is no part either.
    std::fs::write(shards.join(".part-3-of-4.json.tmp-99999-0"), "{\"prov").unwrap();
    let e = fails(&merge(&out));
    assert!(e.contains("missing part-3-of-4"), "{e}");
    std::fs::write(part(3), saved3).unwrap();
    ok(&merge(&out));
    assert_same_test(&out, &single);

    // Flags are checked: --shards alone, a metric without a test, a range and a shard.
    let e = fails(
        &clean_tokit()
            .args(&args)
            .args(["--shards", "4"])
            .output()
            .unwrap(),
    );
    assert!(e.contains("--shards 4 needs a shard index"), "{e}");
    let e = fails(
        &clean_tokit()
            .args([
                "analyze",
                "stream_entropy",
                "--input",
                &format!("series={}", p(&src)),
                "--shard",
                "0/2",
                "--output",
                &p(&dir.path().join("h.json")),
            ])
            .output()
            .unwrap(),
    );
    assert!(
        e.contains("no permutation test to shard") && e.contains("transfer_entropy"),
        "{e}"
    );
    let e = fails(
        &clean_tokit()
            .args(&args)
            .args(["--shard", "0/2", "-p", "surrogate_range=[0,5]"])
            .output()
            .unwrap(),
    );
    assert!(e.contains("not both"), "{e}");
    // Cluster variables alone do not shard a plain analysis.
    let plain = dir.path().join("plain.json");
    ok(&clean_tokit()
        .args(te_args(&src, &dst, &plain, 200))
        .env("SLURM_ARRAY_TASK_ID", "1")
        .env("SLURM_ARRAY_TASK_COUNT", "4")
        .output()
        .unwrap());
    assert_same_test(&plain, &single);
}

/// Surrogate i is the same number whichever shard computes it: N = 1, 2, 3 and 7 merge to
/// the single run, and so do 7 shards of 5 surrogates (two shards hold none).
#[test]
fn permutation_shards_do_not_depend_on_n() {
    let dir = tempfile::tempdir().unwrap();
    let (src, dst) = te_streams(dir.path(), 1000, 0);
    for permutations in [200, 5] {
        let single = dir.path().join(format!("single-{permutations}.json"));
        ok(&clean_tokit()
            .args(te_args(&src, &dst, &single, permutations))
            .output()
            .unwrap());
        let ns: &[usize] = if permutations == 5 {
            &[7]
        } else {
            &[1, 2, 3, 7]
        };
        for &n in ns {
            let out = dir.path().join(format!("n{n}-{permutations}.json"));
            let mut empty = 0;
            for i in 0..n {
                ok(&clean_tokit()
                    .args(te_args(&src, &dst, &out, permutations))
                    .args(["--shard", &format!("{i}/{n}")])
                    .output()
                    .unwrap());
                let part = read_json(&shards_dir(&out).join(format!("part-{i}-of-{n}.json")));
                if part["result"]["scalars"]["surrogates_n"] == 0.0 {
                    empty += 1;
                }
            }
            ok(&merge(&out));
            assert_same_test(&out, &single);
            if permutations == 5 {
                assert_eq!(empty, 2, "7 shards of 5 surrogates: two empty");
            }
        }
    }
}

/// A shard killed with SIGKILL while it computes leaves the part of its earlier run whole
/// (the part is written to a temporary file and renamed), and the merge is unchanged.
#[test]
fn a_permutation_shard_killed_midway_leaves_its_old_part_whole() {
    let dir = tempfile::tempdir().unwrap();
    let (src, dst) = te_streams(dir.path(), 20_000, 0);
    let single = dir.path().join("single.json");
    ok(&clean_tokit()
        .args(te_args(&src, &dst, &single, 40))
        .output()
        .unwrap());
    let out = dir.path().join("sharded.json");
    for i in 0..2 {
        ok(&clean_tokit()
            .args(te_args(&src, &dst, &out, 40))
            .args(["--shard", &format!("{i}/2")])
            .output()
            .unwrap());
    }
    let part = shards_dir(&out).join("part-1-of-2.json");
    let before = std::fs::read(&part).unwrap();
    // The same shard of a far larger test, killed while it computes.
    let mut child = clean_tokit()
        .args(te_args(&src, &dst, &out, 400_000))
        .args(["--shard", "1/2"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(1500));
    assert!(
        child.try_wait().unwrap().is_none(),
        "the large shard finished before the kill"
    );
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    assert_eq!(std::fs::read(&part).unwrap(), before);
    ok(&merge(&out));
    assert_same_test(&out, &single);
}
