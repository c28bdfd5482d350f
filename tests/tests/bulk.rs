//! Bulk data in scripts and metrics (README.md, "Bulk data"): arrays built by long loops,
//! arrays and tensors as metric inputs (the same numbers as the JSON path), tensor files
//! (`load_tensor`/`save_tensor`, `--input`), `bench metric`, and the memory guard.

use serde_json::{json, Value};
use std::path::Path;
use tokit_engine::script::ScriptHost;
use tokit_engine::AnalyzeInput;
use tokit_tests::{engine, tokit, tokit_command, write_npy_i64};

/// A pseudo-random binary stream and a noisy copy delayed by one step (a script of the same
/// generator builds the same numbers).
fn streams(n: usize) -> (Vec<u32>, Vec<u32>) {
    let mut s: u64 = 12345;
    let mut a = Vec::with_capacity(n);
    let mut b = vec![0u32];
    for i in 0..n {
        s = (s * 1103515245 + 12345) % 2147483648;
        let x = ((s / 65536) % 2) as u32;
        a.push(x);
        if i + 1 < n {
            b.push(if (s / 1024).is_multiple_of(10) {
                1 - x
            } else {
                x
            });
        }
    }
    (a, b)
}

const STREAMS_RHAI: &str = r#"
fn streams(n) {
    let a = [];
    let b = [0];
    let s = 12345;
    for i in 0..n {
        s = (s * 1103515245 + 12345) % 2147483648;
        let x = (s / 65536) % 2;
        a.push(x);
        let y = x;
        if (s / 1024) % 10 == 0 { y = 1 - x; }
        if i + 1 < n { b.push(y); }
    }
    [a, b]
}
"#;

#[test]
fn a_million_pushes_finish() {
    let mut host = ScriptHost::new(engine());
    let v = host
        .eval_named(
            "let a = []; for i in 0..1000000 { a.push(i) } a.len() + a[999999]",
            "push",
        )
        .unwrap();
    assert_eq!(v.as_int().unwrap(), 1_999_999);
    // Strings and maps grow without a size limit too.
    let v = host
        .eval_named(
            "let s = \"\"; let m = #{}; for i in 0..100000 { s += \"x\"; m[`k${i}`] = i } s.len() + m.len()",
            "grow",
        )
        .unwrap();
    assert_eq!(v.as_int().unwrap(), 200_000);
}

/// The result's value and local values.
fn value_and_local(r: &tokit_engine::Report) -> (f64, Vec<f32>) {
    (
        r.value.expect("value"),
        r.tensors
            .get("local")
            .map(|t| t.data().to_vec())
            .unwrap_or_default(),
    )
}

#[test]
fn arrays_go_as_tensors_with_the_json_paths_numbers() {
    let e = engine();
    let n = 20_000;
    let (a, b) = streams(n);
    // The JSON path, as the engine takes parameters.
    let mut params = serde_json::Map::new();
    params.insert("source".into(), json!(a));
    params.insert("target".into(), json!(b));
    params.insert("permutations".into(), json!(20));
    let by_json = e
        .analyze(
            "transfer_entropy",
            &AnalyzeInput {
                params,
                ..Default::default()
            },
        )
        .unwrap();
    let mut host = ScriptHost::new(e.clone());
    let script = format!(
        "{STREAMS_RHAI}
        let s = streams({n});
        let r = analyze(\"transfer_entropy\", #{{ source: s[0], target: s[1], permutations: 20 }});
        let t = analyze(\"transfer_entropy\", #{{ source: tensor(s[0]), target: tensor(s[1]), permutations: 20 }});
        let i = analyze(\"transfer_entropy\", #{{ inputs: #{{ source: s[0], target: s[1] }}, permutations: 20 }});
        [r, t, i]"
    );
    let out = host.eval_named(&script, "te").unwrap();
    let reports: Vec<_> = out
        .into_array()
        .unwrap()
        .into_iter()
        .map(|d| d.cast::<tokit_engine::script::ScriptReport>().0)
        .collect();
    let (v0, l0) = value_and_local(&by_json);
    assert!(v0 > 0.1, "a dependent pair has TE well above 0: {v0}");
    for r in &reports {
        let (v, l) = value_and_local(r);
        assert_eq!(v.to_bits(), v0.to_bits(), "same value as the JSON path");
        assert_eq!(l.len(), l0.len());
        assert!(l.iter().zip(&l0).all(|(x, y)| x.to_bits() == y.to_bits()));
        assert_eq!(r.scalars.get("p_value"), by_json.scalars.get("p_value"));
    }

    // Small arrays, floats f32 cannot hold and ragged trials stay JSON, with JSON's numbers.
    let v = host
        .eval_named(
            "analyze(\"mutual_info\", #{ source: [0, 1, 1, 0, 1], target: [0, 1, 1, 0, 0] }).value",
            "small",
        )
        .unwrap();
    assert!(v.as_float().unwrap().is_finite());
    let e2 = host
        .eval_named(
            "let a = []; for i in 0..2000 { a.push(0.1 * (i % 3)) }
             analyze(\"transfer_entropy\", #{ source: a, target: a, permutations: 0 })",
            "floats",
        )
        .unwrap_err()
        .to_string();
    assert!(e2.contains("source") && e2.contains("integer"), "{e2}");
    let ragged = host
        .eval_named(
            "let a = []; for i in 0..1500 { a.push(i % 2) }
             let b = []; for i in 0..1200 { b.push(i % 3 % 2) }
             analyze(\"transfer_entropy\", #{ source: [a, b], target: [b, a], permutations: 0 })",
            "ragged",
        )
        .unwrap_err()
        .to_string();
    assert!(ragged.contains("transfer_entropy"), "{ragged}");
    // A Tensor for a parameter that takes none is refused by name.
    let e3 = host
        .eval_named(
            "analyze(\"transfer_entropy\", #{ source: tensor([0, 1]), target: tensor([1, 0]), k: tensor([1]) })",
            "k",
        )
        .unwrap_err()
        .to_string();
    assert!(e3.contains("`k`") && e3.contains("array parameter"), "{e3}");
}

#[test]
fn tensors_round_trip_through_files() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().display().to_string();
    let mut host = ScriptHost::new(engine());
    let script = format!(
        r#"
        let t = tensor([[1.5, -2.0, 3.25], [4.0, 0.0, 16777216.0]]);
        save_tensor(t, "{d}/t.npy");
        save_tensor(t, "{d}/sub/t.safetensors");
        save_tensor(#{{ a: t, b: [1, 2, 3] }}, "{d}/two.safetensors");
        let a = load_tensor("{d}/t.npy");
        let b = load_tensor("{d}/sub/t.safetensors");
        let c = load_tensor("{d}/two.safetensors", "a");
        let e = load_tensor("{d}/two.safetensors", "b");
        [a.to_array(), b.to_array(), c.to_array(), e.to_array(), a.shape()]
        "#
    );
    let v = host.eval_named(&script, "io").unwrap();
    let v: Value = rhai::serde::from_dynamic(&v).unwrap();
    let t = json!([[1.5, -2.0, 3.25], [4.0, 0.0, 16777216.0]]);
    assert_eq!(v[0], t);
    assert_eq!(v[1], t);
    assert_eq!(v[2], t);
    assert_eq!(v[3], json!([1.0, 2.0, 3.0]));
    assert_eq!(v[4], json!([2, 3]));

    std::fs::write(dir.path().join("s.csv"), "x,y\n1,2\n3,4\n5,6\n").unwrap();
    let v = host
        .eval_named(
            &format!(
                r#"[load_tensor("{d}/s.csv").shape(), load_tensor("{d}/s.csv", "y").to_array()]"#
            ),
            "csv",
        )
        .unwrap();
    let v: Value = rhai::serde::from_dynamic(&v).unwrap();
    assert_eq!(v, json!([[3, 2], [2.0, 4.0, 6.0]]));

    let mut err = |src: &str| host.eval_named(src, "bad").unwrap_err().to_string();
    let m = err(&format!(r#"load_tensor("{d}/two.safetensors")"#));
    assert!(m.contains("2 tensors") && m.contains("a, b"), "{m}");
    let m = err(&format!(r#"load_tensor("{d}/missing.npy")"#));
    assert!(m.contains("missing.npy"), "{m}");
    std::fs::write(dir.path().join("bad.csv"), "1,2\n3,oops\n").unwrap();
    let m = err(&format!(r#"load_tensor("{d}/bad.csv")"#));
    assert!(m.contains("bad.csv:2") && m.contains("column 2"), "{m}");
    let m = err(&format!(r#"save_tensor("text", "{d}/x.npy")"#));
    assert!(m.contains("Tensor"), "{m}");
}

#[test]
fn cli_input_files_and_bench_metric() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = streams(5_000);
    let src = dir.path().join("source.npy");
    write_npy_i64(&src, &a);
    let csv: String = std::iter::once("source,target\n".to_string())
        .chain(a.iter().zip(&b).map(|(x, y)| format!("{x},{y}\n")))
        .collect();
    let csv_path = dir.path().join("st.csv");
    std::fs::write(&csv_path, csv).unwrap();
    let by_param = dir.path().join("p.json");
    let by_file = dir.path().join("f.json");
    let s = |p: &Path| p.display().to_string();
    let out = tokit(&[
        "analyze",
        "transfer_entropy",
        "-p",
        &format!("source={}", json!(a)),
        "-p",
        &format!("target={}", json!(b)),
        "-p",
        "permutations=0",
        "-o",
        &s(&by_param),
    ]);
    assert!(out.status.success(), "{out:?}");
    let out = tokit(&[
        "analyze",
        "transfer_entropy",
        "--input",
        &format!("source={}", s(&src)),
        "--input",
        &format!("target={}:target", s(&csv_path)),
        "-p",
        "permutations=0",
        "-o",
        &s(&by_file),
    ]);
    assert!(out.status.success(), "{out:?}");
    let read =
        |p: &Path| -> Value { serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap() };
    let (p, f) = (read(&by_param), read(&by_file));
    assert!(p["value"].as_f64().unwrap() > 0.1);
    assert_eq!(p["value"], f["value"]);

    let out = tokit(&[
        "bench",
        "metric",
        "transfer_entropy",
        "-i",
        &format!("source={}", s(&src)),
        "-i",
        &format!("target={}:target", s(&csv_path)),
        "-p",
        "permutations=0",
        "-p",
        "local=false",
        "--repeat",
        "3",
        "--warmup",
        "1",
    ]);
    assert!(out.status.success(), "{out:?}");
    let j: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(j["metric"], "transfer_entropy");
    assert_eq!(
        (j["repeat"].as_u64(), j["warmup"].as_u64()),
        (Some(3), Some(1))
    );
    let (best, median) = (
        j["best_ms"].as_f64().unwrap(),
        j["median_ms"].as_f64().unwrap(),
    );
    assert!(best > 0.0 && best <= median, "{j}");
    assert_eq!(j["value"], p["value"]);
    assert_eq!(j["record"]["value"], p["value"]);
    assert!(j["threads"].as_u64().unwrap() >= 1);

    // Bad inputs are errors that name the file and what is wrong, never a panic.
    let truncated = dir.path().join("trunc.npy");
    let bytes = std::fs::read(&src).unwrap();
    std::fs::write(&truncated, &bytes[..bytes.len() - 3]).unwrap();
    let big = dir.path().join("big.npy");
    write_npy_i64(&big, &[1, 16_777_217]);
    let cases: &[(&str, &[&str])] = &[
        ("truncated", &[&format!("source={}", s(&truncated))]),
        ("needs", &[&format!("source={}", s(&big))]),
        (
            "no column `nope`",
            &[&format!("source={}:nope", s(&csv_path))],
        ),
        ("expected NAME=FILE", &["source"]),
        ("unknown tensor file type", &["source=x.txt"]),
        (
            "given twice",
            &[
                &format!("source={}", s(&src)),
                &format!("source={}", s(&src)),
            ],
        ),
    ];
    for (want, inputs) in cases {
        let mut args = vec!["analyze", "transfer_entropy"];
        for i in *inputs {
            args.extend(["--input", i]);
        }
        let out = tokit(&args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{want}: {err}");
        assert!(!err.contains("panicked"), "{err}");
        let want = if *want == "needs" {
            "int64 element [1] = 16777217"
        } else {
            want
        };
        assert!(err.contains(want), "{want}: {err}");
    }
}

/// `tokit --config CONFIG run SCRIPT`.
fn run_with_config(config: &std::path::Path, script: &std::path::Path) -> std::process::Output {
    tokit_command()
        .arg("--config")
        .arg(config)
        .arg("run")
        .arg(script)
        .output()
        .unwrap()
}

#[test]
fn the_memory_guard_stops_a_script() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("tokit.ron");
    std::fs::write(&config, "(script: (max_memory: \"300 MiB\"))").unwrap();
    let script = dir.path().join("grow.rhai");
    std::fs::write(
        &script,
        "let a = [];\nfor i in 0..1000000000 { a.push(i) }\n",
    )
    .unwrap();
    let out = run_with_config(&config, &script);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("grow.rhai:2:")
            && err.contains("script stopped: tokit memory use")
            && err.contains("passed script.max_memory = 0.29 GiB"),
        "{err}"
    );
    // An old file naming the removed size limits still loads, with a warning that says why.
    std::fs::write(
        &config,
        "(script: (max_array_size: 100, max_string_size: 100))",
    )
    .unwrap();
    std::fs::write(
        &script,
        "let a = []; for i in 0..1000 { a.push(i) } print(a.len());",
    )
    .unwrap();
    let out = run_with_config(&config, &script);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "1000");
    assert!(
        err.contains("max_array_size") && err.contains("quadratic"),
        "{err}"
    );
}

#[test]
fn information_flow_reads_its_arrays_from_tensors_too() {
    let e = engine();
    let dir = tempfile::tempdir().unwrap();
    tokit_tests::write_toylm(dir.path(), 256, 4, json!({}));
    let m = e
        .load_model(&dir.path().display().to_string(), &Default::default())
        .unwrap();
    let run = |params: Value, tensors: Vec<(String, tokit_engine::Tensor)>| {
        e.analyze(
            "information_flow",
            &AnalyzeInput {
                model: Some(m.clone()),
                tokens: Some(vec![1, 2, 3, 4, 5, 6]),
                params: params.as_object().unwrap().clone(),
                tensors,
                ..Default::default()
            },
        )
    };
    let by_json = run(
        json!({ "prompt_tokens": 2, "alternatives": [[3, 4], [5, 6]], "prior": [0.5, 0.25, 0.25] }),
        vec![],
    )
    .unwrap();
    let t = |shape: Vec<usize>, d: Vec<f32>| tokit_engine::Tensor::new(shape, d).unwrap();
    let by_tensor = run(
        json!({ "prompt_tokens": 2 }),
        vec![
            (
                "alternatives".into(),
                t(vec![2, 2], vec![3.0, 4.0, 5.0, 6.0]),
            ),
            ("prior".into(), t(vec![3], vec![0.5, 0.25, 0.25])),
        ],
    )
    .unwrap();
    assert_eq!(by_json.value, by_tensor.value);
    assert_eq!(by_json.scalars, by_tensor.scalars);
    let both = run(
        json!({ "prompt_tokens": 2, "prior": [0.5, 0.5] }),
        vec![("prior".into(), t(vec![2], vec![0.5, 0.5]))],
    )
    .unwrap_err();
    assert!(format!("{both:#}").contains("given both"), "{both:#}");
}
