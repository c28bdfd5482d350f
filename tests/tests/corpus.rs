//! Corpus analyses (`tokit analyze METRIC --corpus`, `docs/corpus.md`): per-token values
//! equal separate runs of each document (packed or not, windowed or not), every corpus
//! and output format, resume after a killed run giving the same files as an uninterrupted
//! run, and the refusals.

use std::path::{Path, PathBuf};
use tokit_engine::corpus::{analyze_corpus, parts_dir, summary_path, CorpusOptions, Rows};
use tokit_engine::{AnalyzeInput, Engine, LoadOptions, Model};
use tokit_tests::*;

fn verses(n: usize) -> Vec<&'static str> {
    GENESIS.lines().take(n).collect()
}

fn load(e: &Engine, path: &Path) -> Model {
    e.load_model(path.to_str().unwrap(), &LoadOptions::default())
        .unwrap()
}

/// The `surprisal` local values of one separate `token_stats` run on `tokens`.
fn alone(e: &Engine, m: &Model, tokens: &[u32]) -> Vec<f32> {
    let r = e
        .analyze(
            "token_stats",
            &AnalyzeInput {
                model: Some(m.clone()),
                tokens: Some(tokens.to_vec()),
                ..Default::default()
            },
        )
        .unwrap();
    r.tensors["surprisal"].data().to_vec()
}

fn column(rows: &Rows, name: &str) -> Vec<f32> {
    let k = rows.columns.iter().position(|c| c == name).unwrap();
    rows.values[k].clone()
}

/// The rows of document `doc`.
fn doc_rows(rows: &Rows, doc: i64) -> std::ops::Range<usize> {
    let a = rows.doc.iter().position(|&d| d == doc).unwrap();
    let b = rows.doc.iter().rposition(|&d| d == doc).unwrap() + 1;
    a..b
}

fn assert_close(got: &[f32], want: &[f32], tol: f32, what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: lengths");
    for (i, (a, b)) in got.iter().zip(want).enumerate() {
        let ok = (a.is_nan() && b.is_nan()) || (a - b).abs() <= tol;
        assert!(ok, "{what}: position {i}: {a} vs {b} (tolerance {tol})");
    }
}

/// Two tables hold the same rows (NaN equal to NaN).
fn assert_same(a: &Rows, b: &Rows, what: &str) {
    assert_eq!(a.columns, b.columns, "{what}");
    assert_eq!((&a.doc, &a.position), (&b.doc, &b.position), "{what}");
    assert_eq!((&a.token_id, &a.token), (&b.token_id, &b.token), "{what}");
    for (x, y) in a.values.iter().zip(&b.values) {
        let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        assert_eq!(bits(x), bits(y), "{what}");
    }
}

fn write_txt(dir: &Path, docs: &[&str]) -> PathBuf {
    let p = dir.join("corpus.txt");
    std::fs::write(&p, docs.join("\n") + "\n").unwrap();
    p
}

#[test]
fn packed_documents_equal_separate_runs() {
    let dir = tempfile::tempdir().unwrap();
    let e = engine();
    let m = load(&e, &word_llama(dir.path()));
    assert!(m.info().packing);
    let docs = verses(30);
    // An empty line is skipped; the ids stay the line numbers.
    let mut lines: Vec<&str> = docs[..10].to_vec();
    lines.push("");
    lines.extend(&docs[10..]);
    let corpus = write_txt(dir.path(), &lines);
    let out = dir.path().join("out.parquet");
    let opts = CorpusOptions {
        window: Some(64),
        ..CorpusOptions::new(&corpus, &out)
    };
    let run = analyze_corpus(&e, "token_stats", &m, &opts).unwrap();
    assert!(run.packed && run.complete);
    assert_eq!(run.documents, 30);
    let rows = Rows::read_parquet(&out).unwrap();
    assert_eq!(
        rows.columns,
        [
            "surprisal",
            "entropy",
            "rank",
            "free_energy",
            "internal_energy",
            "heat_capacity"
        ]
    );
    let surprisal = column(&rows, "surprisal");
    for (i, text) in lines.iter().enumerate().filter(|(_, t)| !t.is_empty()) {
        let tokens = m.encode(text).unwrap();
        let r = doc_rows(&rows, i as i64);
        let ids: Vec<u32> = rows.token_id[r.clone()].iter().map(|&t| t as u32).collect();
        assert_eq!(ids, tokens, "document {i}");
        assert_eq!(
            rows.position[r.clone()],
            (0..tokens.len() as i32).collect::<Vec<_>>()
        );
        assert_close(
            &surprisal[r],
            &alone(&e, &m, &tokens),
            1e-5,
            &format!("document {i}"),
        );
    }
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(summary_path(&out)).unwrap()).unwrap();
    assert_eq!(summary["complete"], true);
    assert_eq!(summary["per_document"].as_array().unwrap().len(), 30);
    assert_eq!(summary["per_document"][10]["doc"], 11);
    // The corpus mean is the pooled mean of the table's finite surprisals.
    let finite: Vec<f64> = surprisal
        .iter()
        .filter(|x| x.is_finite())
        .map(|&x| f64::from(x))
        .collect();
    let mean = finite.iter().sum::<f64>() / finite.len() as f64;
    let got = summary["corpus"]["columns"]["surprisal"]["mean"]
        .as_f64()
        .unwrap();
    assert!((got - mean).abs() < 1e-9, "{got} vs {mean}");
    assert!(
        summary["corpus"]["columns"]["surprisal"]["se"]
            .as_f64()
            .unwrap()
            > 0.0
    );
    assert_eq!(
        summary["provenance"]["model_fingerprint"],
        m.fingerprint.as_str()
    );
}

#[test]
fn long_documents_are_cut_into_windows_scored_once() {
    let dir = tempfile::tempdir().unwrap();
    let e = engine();
    let m = load(&e, &word_llama(dir.path()));
    let docs = verses(12);
    let corpus = write_txt(dir.path(), &docs);
    let out = dir.path().join("w.parquet");
    let (window, overlap) = (12, 4);
    let opts = CorpusOptions {
        window: Some(window),
        overlap: Some(overlap),
        ..CorpusOptions::new(&corpus, &out)
    };
    analyze_corpus(&e, "token_stats", &m, &opts).unwrap();
    let rows = Rows::read_parquet(&out).unwrap();
    let surprisal = column(&rows, "surprisal");
    let mut cut = 0;
    for (i, text) in docs.iter().enumerate() {
        let tokens = m.encode(text).unwrap();
        let r = doc_rows(&rows, i as i64);
        assert_eq!(r.len(), tokens.len(), "every token once, document {i}");
        // What the windows give: window k scores its tokens after the overlap.
        let mut want = alone(&e, &m, &tokens[..window.min(tokens.len())]);
        let mut end = window.min(tokens.len());
        while end < tokens.len() {
            let start = end - overlap;
            let stop = (start + window).min(tokens.len());
            want.extend_from_slice(&alone(&e, &m, &tokens[start..stop])[overlap..]);
            end = stop;
            cut += 1;
        }
        assert_close(&surprisal[r], &want, 1e-5, &format!("document {i}"));
    }
    assert!(
        cut > 5,
        "the test needs documents longer than the window ({cut} cuts)"
    );
}

/// A byte-level model that does not pack (the toylm test plugin: embedding and head).
fn byte_model(dir: &Path) -> PathBuf {
    let model = dir.join("bytes");
    write_toylm(&model, 256, 8, serde_json::json!({}));
    model
}

#[test]
fn every_corpus_kind_gives_the_same_table_one_document_per_call() {
    let dir = tempfile::tempdir().unwrap();
    let e = engine();
    let m = load(&e, &byte_model(dir.path()));
    assert!(!m.info().packing);
    let docs = verses(6);
    let run = |corpus: &Path, field: &str, name: &str| -> Rows {
        let out = dir.path().join(name);
        let opts = CorpusOptions {
            text_field: field.into(),
            ..CorpusOptions::new(corpus, &out)
        };
        let r = analyze_corpus(&e, "surprisal", &m, &opts).unwrap();
        assert!(!r.packed);
        Rows::read_parquet(&out).unwrap()
    };
    let corpus = write_txt(dir.path(), &docs);
    let txt = run(&corpus, "text", "txt.parquet");
    assert_eq!(txt.columns, ["surprisal"]);
    for (i, d) in docs.iter().enumerate() {
        let tokens = m.encode(d).unwrap();
        let r = doc_rows(&txt, i as i64);
        let want = e
            .analyze(
                "surprisal",
                &AnalyzeInput {
                    model: Some(m.clone()),
                    tokens: Some(tokens),
                    ..Default::default()
                },
            )
            .unwrap();
        assert_close(
            &txt.values[0][r],
            want.tensors["surprisal"].data(),
            1e-5,
            "txt",
        );
    }
    // jsonl, with another field name and an unrelated field.
    let jsonl = dir.path().join("c.jsonl");
    let lines: Vec<String> = docs
        .iter()
        .map(|d| serde_json::json!({ "id": 1, "body": d }).to_string())
        .collect();
    std::fs::write(&jsonl, lines.join("\n")).unwrap();
    assert_same(&run(&jsonl, "body", "jsonl.parquet"), &txt, "jsonl");
    // A directory of .txt files (sorted by name; other files ignored).
    let d = dir.path().join("docs");
    std::fs::create_dir(&d).unwrap();
    for (i, t) in docs.iter().enumerate() {
        std::fs::write(d.join(format!("v{i:02}.txt")), t).unwrap();
    }
    std::fs::write(d.join("README.md"), "not a document").unwrap();
    assert_same(&run(&d, "text", "dir.parquet"), &txt, "directory");
    // A Parquet file with a string column: the `token` column of a table written by
    // the engine's own writer, one document per row.
    let mut table = Rows::new(vec![]);
    for (i, t) in docs.iter().enumerate() {
        table.doc.push(i as i64);
        table.position.push(0);
        table.token_id.push(0);
        table.token.push(t.to_string());
    }
    let pq = dir.path().join("c.parquet");
    std::fs::write(&pq, table.to_parquet().unwrap()).unwrap();
    assert_same(&run(&pq, "token", "pq.parquet"), &txt, "parquet");
    // The same table as CSV and JSON lines.
    for (ext, check) in [("csv", true), ("jsonl", false)] {
        let out = dir.path().join(format!("t.{ext}"));
        analyze_corpus(&e, "surprisal", &m, &CorpusOptions::new(&corpus, &out)).unwrap();
        let text = std::fs::read_to_string(&out).unwrap();
        let values: Vec<f32> = if check {
            let mut lines = text.lines();
            assert_eq!(lines.next(), Some("doc,position,token_id,token,surprisal"));
            lines
                .map(|l| l.rsplit(',').next().unwrap().parse().unwrap())
                .collect()
        } else {
            text.lines()
                .map(|l| {
                    let v: serde_json::Value = serde_json::from_str(l).unwrap();
                    v["surprisal"].as_f64().map_or(f32::NAN, |x| x as f32)
                })
                .collect()
        };
        assert_close(&values, &txt.values[0], 0.0, ext);
    }
}

fn run_cli(args: &[&str]) -> std::process::Output {
    tokit(args)
}

fn ok(o: &std::process::Output) -> String {
    assert!(
        o.status.success(),
        "tokit failed: {}\n{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn fails(o: &std::process::Output) -> String {
    assert!(!o.status.success(), "tokit should fail");
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn a_killed_run_resumes_to_the_same_files() {
    let dir = tempfile::tempdir().unwrap();
    let model = word_llama(dir.path());
    let corpus = write_txt(dir.path(), &verses(40));
    let p = |x: &Path| x.to_str().unwrap().to_string();
    let args = |out: &Path| -> Vec<String> {
        [
            "analyze",
            "token_stats",
            "--model",
            &p(&model),
            "--corpus",
            &p(&corpus),
            "--window",
            "48",
            "--part-tokens",
            "100",
            "--output",
            &p(out),
        ]
        .iter()
        .map(|s| s.to_string())
        .collect()
    };
    let whole = dir.path().join("whole.parquet");
    let a = args(&whole);
    ok(&run_cli(&a.iter().map(String::as_str).collect::<Vec<_>>()));
    // Killed (abort, as kill -9: no cleanup) after its second part.
    let cut = dir.path().join("cut.parquet");
    let mut b = args(&cut);
    b.extend(["--abort-after-parts".to_string(), "2".to_string()]);
    let o = run_cli(&b.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(!o.status.success());
    assert!(!cut.exists(), "a killed run writes no final file");
    let parts = parts_dir(&cut);
    assert!(parts.join("part-000001.json").exists());
    assert!(!parts.join("part-000002.json").exists());
    let out = ok(&run_cli(
        &args(&cut).iter().map(String::as_str).collect::<Vec<_>>(),
    ));
    assert!(out.contains("40 documents"), "{out}");
    assert!(
        !out.contains("(40 computed now"),
        "the re-run skipped finished documents: {out}"
    );
    assert_eq!(std::fs::read(&cut).unwrap(), std::fs::read(&whole).unwrap());
    assert_eq!(
        std::fs::read_to_string(summary_path(&cut)).unwrap(),
        std::fs::read_to_string(summary_path(&whole)).unwrap()
    );
    // Other parameters on the same output are refused.
    let mut c = args(&cut);
    c[7] = "32".into();
    let e = fails(&run_cli(&c.iter().map(String::as_str).collect::<Vec<_>>()));
    assert!(
        e.contains("holds a run with other parameters") && e.contains("window: 48 now 32"),
        "{e}"
    );
}

#[test]
fn bad_corpora_and_options_are_refused_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let model = word_llama(dir.path());
    let m = model.to_str().unwrap();
    let d = dir.path();
    let out = d.join("o.parquet");
    let o = out.to_str().unwrap();
    // `analyze token_stats` on `corpus` with `extra` options: its error.
    let refused = |corpus: &str, extra: &[&str]| {
        let mut args = vec!["analyze", "token_stats", "--model", m, "--corpus", corpus];
        args.extend_from_slice(extra);
        args.extend(["--output", o]);
        fails(&run_cli(&args))
    };
    let jsonl = d.join("c.jsonl");
    std::fs::write(&jsonl, "{\"text\": \"And God said\"}\n{\"body\": \"x\"}\n").unwrap();
    let e = refused(jsonl.to_str().unwrap(), &[]);
    assert!(e.contains("line 2: no field `text`"), "{e}");
    std::fs::write(&jsonl, "{\"text\": 3}\n").unwrap();
    let e = refused(jsonl.to_str().unwrap(), &[]);
    assert!(e.contains("field `text` is not a string"), "{e}");
    let mut table = Rows::new(vec![]);
    table.doc.push(1);
    table.position.push(0);
    table.token_id.push(0);
    table.token.push("In the beginning".into());
    let pq = d.join("c.parquet");
    std::fs::write(&pq, table.to_parquet().unwrap()).unwrap();
    let e = refused(pq.to_str().unwrap(), &["--text-field", "doc"]);
    assert!(
        e.contains("column `doc` is INT64, not a string column"),
        "{e}"
    );
    let e = refused(pq.to_str().unwrap(), &[]);
    assert!(
        e.contains("no column `text` (columns: doc, position, token_id, token)"),
        "{e}"
    );
    let empty = d.join("empty.txt");
    std::fs::write(&empty, "\n\n").unwrap();
    let e = refused(empty.to_str().unwrap(), &[]);
    assert!(e.contains("holds no documents"), "{e}");
    let txt = write_txt(d, &verses(2));
    let t = txt.to_str().unwrap();
    let e = fails(&run_cli(&[
        "analyze",
        "cross_entropy",
        "--model",
        m,
        "--corpus",
        t,
        "--output",
        o,
    ]));
    assert!(
        e.contains("metric `cross_entropy` does not run on a corpus (metrics that do: token_stats"),
        "{e}"
    );
    let e = fails(&run_cli(&[
        "analyze",
        "token_stats",
        "--model",
        m,
        "--corpus",
        t,
        "--output",
        d.join("o.json").to_str().unwrap(),
    ]));
    assert!(e.contains("writes a .parquet, .csv or .jsonl file"), "{e}");
    let e = fails(&run_cli(&[
        "analyze",
        "token_stats",
        "--model",
        m,
        "--corpus",
        t,
        "--output",
        o,
        "--window",
        "128",
    ]));
    assert!(e.contains("exceeds the model's context of 64"), "{e}");
    let e = fails(&run_cli(&[
        "analyze",
        "token_stats",
        "--model",
        m,
        "--corpus",
        t,
        "--output",
        o,
        "-p",
        "lag=3",
    ]));
    assert!(e.contains("has no parameter `lag`"), "{e}");
}

/// SmolLM2 (skipped without it, failing under CI): two dozen verses packed into
/// forwards give every verse's surprisal of a separate run to 1e-5.
#[test]
fn smollm2_packed_verses_equal_separate_runs() {
    let gguf = smollm2_gguf();
    let Some(gguf) = gguf else {
        missing_prerequisite(
            "corpus smollm2",
            "SmolLM2 GGUF not found; run tools/get-smollm2.sh",
        );
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let e = engine();
    let m = load(&e, &gguf);
    let docs = verses(24);
    let corpus = write_txt(dir.path(), &docs);
    let out = dir.path().join("smollm2.parquet");
    let run = analyze_corpus(&e, "token_stats", &m, &CorpusOptions::new(&corpus, &out)).unwrap();
    assert!(run.packed);
    let rows = Rows::read_parquet(&out).unwrap();
    let surprisal = column(&rows, "surprisal");
    let mut worst = 0.0f32;
    for (i, text) in docs.iter().enumerate() {
        let tokens = m.encode(text).unwrap();
        let want = alone(&e, &m, &tokens);
        let r = doc_rows(&rows, i as i64);
        assert_close(&surprisal[r.clone()], &want, 1e-5, &format!("verse {i}"));
        for (a, b) in surprisal[r].iter().zip(&want).skip(1) {
            worst = worst.max((a - b).abs());
        }
    }
    eprintln!("smollm2 corpus: max |packed − alone| surprisal = {worst:e} nats");
}

/// Per-document metrics: one call per document; declared columns per layer, the value,
/// scalars and declared series in the summary, equal to separate runs.
#[test]
fn per_document_metrics_keep_columns_scalars_and_series() {
    let dir = tempfile::tempdir().unwrap();
    let e = engine();
    let m = load(&e, &word_llama(dir.path()));
    let docs = verses(3);
    let corpus = write_txt(dir.path(), &docs);
    let out = dir.path().join("lens.parquet");
    let run = analyze_corpus(&e, "logit_lens", &m, &CorpusOptions::new(&corpus, &out)).unwrap();
    assert!(
        !run.packed,
        "per-document metrics run one document per call"
    );
    let rows = Rows::read_parquet(&out).unwrap();
    let layers = m.info().n_layers;
    assert_eq!(rows.columns.len(), 3 * layers);
    assert!(rows.columns.contains(&format!("lens_kl_{}", layers - 1)));
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(summary_path(&out)).unwrap()).unwrap();
    for (i, text) in docs.iter().enumerate() {
        let tokens = m.encode(text).unwrap();
        let alone = e
            .analyze(
                "logit_lens",
                &AnalyzeInput {
                    model: Some(m.clone()),
                    tokens: Some(tokens.clone()),
                    ..Default::default()
                },
            )
            .unwrap();
        let kl = alone.tensors["lens_kl"].data().to_vec();
        let r = doc_rows(&rows, i as i64);
        for l in 0..layers {
            let col = column(&rows, &format!("lens_kl_{l}"));
            let want = &kl[l * tokens.len()..(l + 1) * tokens.len()];
            assert_close(
                &col[r.clone()],
                want,
                1e-6,
                &format!("document {i} layer {l}"),
            );
        }
        let w = &summary["per_document"][i]["windows"][0];
        assert!((w["value"].as_f64().unwrap() - alone.value.unwrap()).abs() < 1e-9);
        assert_eq!(w["scalars"]["layers"].as_f64(), Some(layers as f64));
        let series: Vec<f32> = serde_json::from_value(w["series"]["kl_by_layer"].clone()).unwrap();
        assert_close(
            &series,
            alone.tensors["kl_by_layer"].data(),
            0.0,
            "kl_by_layer",
        );
    }
    let value = &summary["corpus"]["scalars"]["value"];
    assert_eq!(value["documents"], 3);
    assert!(value["se"].as_f64().unwrap() > 0.0);
}

/// Rhai: `analyze_corpus` takes the corpus options and the metric's parameters in one map
/// and returns what it did.
#[test]
fn rhai_analyze_corpus_returns_the_run() {
    let dir = tempfile::tempdir().unwrap();
    let model = word_llama(dir.path());
    let corpus = write_txt(dir.path(), &verses(5));
    let out = dir.path().join("r.csv");
    let mut host = tokit_engine::script::ScriptHost::new(engine());
    let script = format!(
        r#"let m = load_model("{}");
           analyze_corpus("surprisal", #{{ model: m, corpus: "{}", output: "{}", max_docs: 4, unit: "bits" }})"#,
        model.display(),
        corpus.display(),
        out.display()
    );
    let run = host.eval_named(&script, "corpus.rhai").unwrap();
    let run = run.cast::<rhai::Map>();
    assert_eq!(run["documents"].as_int().unwrap(), 4);
    assert!(run["complete"].as_bool().unwrap());
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(summary_path(&out)).unwrap()).unwrap();
    assert_eq!(summary["provenance"]["params"]["unit"], "bits");
    assert_eq!(summary["provenance"]["max_docs"], 4);
    let e = host
        .eval_named(
            &format!(
                r#"analyze_corpus("surprisal", #{{ model: load_model("{}"), output: "x.csv" }})"#,
                model.display()
            ),
            "bad.rhai",
        )
        .unwrap_err();
    assert!(
        format!("{e}").contains("analyze_corpus: give `corpus`"),
        "{e}"
    );
}

/// `granger_map` per document: each document's lag profile and value in the summary,
/// equal to a separate run; no per-token columns.
#[test]
fn granger_map_keeps_per_document_lag_profiles() {
    let dir = tempfile::tempdir().unwrap();
    let e = engine();
    let m = load(&e, &word_llama(dir.path()));
    let docs = [
        "And God said, Let there be light",
        "And God saw the light, that it was good",
    ];
    let corpus = write_txt(dir.path(), &docs);
    let out = dir.path().join("g.jsonl");
    analyze_corpus(&e, "granger_map", &m, &CorpusOptions::new(&corpus, &out)).unwrap();
    let first: serde_json::Value = serde_json::from_str(
        std::fs::read_to_string(&out)
            .unwrap()
            .lines()
            .next()
            .unwrap(),
    )
    .unwrap();
    assert_eq!(first.as_object().unwrap().len(), 4, "{first}");
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(summary_path(&out)).unwrap()).unwrap();
    for (i, text) in docs.iter().enumerate() {
        let alone = e
            .analyze(
                "granger_map",
                &AnalyzeInput {
                    model: Some(m.clone()),
                    tokens: Some(m.encode(text).unwrap()),
                    ..Default::default()
                },
            )
            .unwrap();
        let w = &summary["per_document"][i]["windows"][0];
        let lag: Vec<Option<f32>> =
            serde_json::from_value(w["series"]["lag_profile"].clone()).unwrap();
        let lag: Vec<f32> = lag.into_iter().map(|x| x.unwrap_or(f32::NAN)).collect();
        assert_close(
            &lag,
            alone.tensors["lag_profile"].data(),
            0.0,
            "lag_profile",
        );
        assert!((w["value"].as_f64().unwrap() - alone.value.unwrap()).abs() < 1e-12);
    }
}
