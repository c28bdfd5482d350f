//! Hostile inputs, as a careless or malicious user would give them: truncated and lying
//! model files, absurd sizes, NaN configs, bad tokens, bad scripts, bad RON, and files that
//! only look like plugins. Each case runs the real `tokit` binary and must end with a clear
//! error (exit code 1, `error:` and the named file, field or value on stderr), never with a
//! panic, a signal or a hang (each is killed after 10 s). Every case runs; the test fails
//! with the list of those that did not behave.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tokit_model::gguf::write::GgufWriter;
use tokit_model::MetaValue;
use tokit_tests::*;

/// One hostile invocation.
struct Case {
    name: String,
    args: Vec<String>,
    /// Working directory (for a `tokit.ron` of the case), else the repository root.
    cwd: Option<PathBuf>,
    /// Substrings stderr must contain (the named file, field or value).
    says: Vec<String>,
    /// Expected exit code: 1 for an error; 0 where the input is refused but the command
    /// still does its job (a broken plugin among good ones).
    code: i32,
}

/// Runs one case; `Err` says how it misbehaved.
fn run(bin: &Path, root: &Path, c: &Case) -> Result<(), String> {
    let mut child = Command::new(bin)
        .args(&c.args)
        .current_dir(c.cwd.as_deref().unwrap_or(root))
        .env("RUST_BACKTRACE", "0")
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("spawn: {e}"))?;
    let start = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().map_err(|e| e.to_string())? {
            break s;
        }
        if start.elapsed() > Duration::from_secs(10) {
            let _ = child.kill();
            let _ = child.wait();
            return Err("hung (killed after 10 s)".into());
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let out = child.wait_with_output().map_err(|e| e.to_string())?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let both = format!("{stderr}{stdout}");
    let Some(code) = status.code() else {
        return Err(format!("killed by a signal ({status}); stderr: {stderr}"));
    };
    if both.contains("panicked") || both.contains("RUST_BACKTRACE") {
        return Err(format!("panicked: {stderr}"));
    }
    if code != c.code {
        return Err(format!(
            "exit code {code}, expected {}; stderr: {stderr}",
            c.code
        ));
    }
    if c.code != 0 && !stderr.contains("error:") {
        return Err(format!("no `error:` on stderr: {stderr}"));
    }
    for s in &c.says {
        if !both.contains(s.as_str()) {
            return Err(format!("message does not say `{s}`: {stderr}"));
        }
    }
    Ok(())
}

/// A copy of a fixture model directory whose config.json `edit` changes.
fn model_with(tmp: &Path, name: &str, fixture_dir: &str, edit: impl FnOnce(&mut Value)) -> String {
    let dir = tmp.join(name);
    std::fs::create_dir_all(&dir).unwrap();
    let src = fixture(fixture_dir);
    for f in ["config.json", "model.safetensors"] {
        std::fs::copy(src.join(f), dir.join(f)).unwrap();
    }
    let mut config: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("config.json")).unwrap()).unwrap();
    edit(&mut config);
    std::fs::write(dir.join("config.json"), config.to_string()).unwrap();
    dir.to_str().unwrap().to_string()
}

/// A copy of a fixture model directory whose file `file` is replaced by `bytes`.
fn model_bytes(tmp: &Path, name: &str, fixture_dir: &str, file: &str, bytes: &[u8]) -> String {
    let dir = model_with(tmp, name, fixture_dir, |_| {});
    std::fs::write(Path::new(&dir).join(file), bytes).unwrap();
    dir
}

/// Sets `path` (dotted) in a JSON object.
fn set(config: &mut Value, path: &str, v: Value) {
    let mut cur = config;
    let parts: Vec<&str> = path.split('.').collect();
    for p in &parts[..parts.len() - 1] {
        cur = cur
            .as_object_mut()
            .unwrap()
            .entry(p.to_string())
            .or_insert(json!({}));
    }
    cur[parts[parts.len() - 1]] = v;
}

const LLAMA: &str = "transformer/llama_gqa_tied";
const GPT2: &str = "transformer/gpt2";
const MISTRAL: &str = "transformer/mistral_window";
const LLAMA3: &str = "transformer/llama_untied_llama3";
const MAMBA2: &str = "mamba2/g1_chunk7_tied";
const LLADA: &str = "llada/llada";

/// A small, valid Llama GGUF (one block), as bytes.
fn tiny_gguf(edit: impl FnOnce(&mut GgufWriter)) -> Vec<u8> {
    let (h, ff, v) = (8usize, 16usize, 16usize);
    let mut w = GgufWriter::new();
    w.kv_str("general.architecture", "llama")
        .kv_u32("llama.embedding_length", h as u32)
        .kv_u32("llama.feed_forward_length", ff as u32)
        .kv_u32("llama.block_count", 1)
        .kv_u32("llama.attention.head_count", 2)
        .kv_u32("llama.attention.head_count_kv", 1)
        .kv(
            "llama.attention.layer_norm_rms_epsilon",
            MetaValue::F32(1e-5),
        )
        .kv_u32("llama.context_length", 64)
        .kv_u32("llama.vocab_size", v as u32);
    let ramp =
        |n: usize| -> Vec<f32> { (0..n).map(|i| ((i * 7 % 11) as f32 - 5.0) / 20.0).collect() };
    w.tensor_f32("token_embd.weight", &[v, h], &ramp(v * h))
        .tensor_f32("output_norm.weight", &[h], &vec![1.0; h])
        .tensor_f32("blk.0.attn_norm.weight", &[h], &vec![1.0; h])
        .tensor_f32("blk.0.attn_q.weight", &[h, h], &ramp(h * h))
        .tensor_f32("blk.0.attn_k.weight", &[h / 2, h], &ramp(h * h / 2))
        .tensor_f32("blk.0.attn_v.weight", &[h / 2, h], &ramp(h * h / 2))
        .tensor_f32("blk.0.attn_output.weight", &[h, h], &ramp(h * h))
        .tensor_f32("blk.0.ffn_norm.weight", &[h], &vec![1.0; h])
        .tensor_f32("blk.0.ffn_gate.weight", &[ff, h], &ramp(ff * h))
        .tensor_f32("blk.0.ffn_up.weight", &[ff, h], &ramp(ff * h))
        .tensor_f32("blk.0.ffn_down.weight", &[h, ff], &ramp(ff * h));
    edit(&mut w);
    w.to_bytes()
}

fn write(tmp: &Path, name: &str, bytes: &[u8]) -> String {
    let p = tmp.join(name);
    std::fs::write(&p, bytes).unwrap();
    p.to_str().unwrap().to_string()
}

/// A working directory holding `tokit.ron` with `ron`.
fn ron_dir(tmp: &Path, name: &str, ron: &str) -> PathBuf {
    let d = tmp.join(name);
    std::fs::create_dir_all(&d).unwrap();
    std::fs::write(d.join("tokit.ron"), ron).unwrap();
    d
}

fn add(cs: &mut Vec<Case>, name: &str, args: Vec<String>, says: &[&str]) {
    cs.push(Case {
        name: name.into(),
        args,
        cwd: None,
        says: says.iter().map(|s| s.to_string()).collect(),
        code: 1,
    })
}

fn cases(tmp: &Path) -> Vec<Case> {
    let mut cs = Vec::new();
    let fwd = |m: &str| -> Vec<String> {
        ["forward", m, "--tokens", "1,2,3"]
            .iter()
            .map(|s| s.to_string())
            .collect()
    };

    // --- config.json: syntax, types, absurd sizes, numbers that poison the math ---
    let llama_cfg = std::fs::read(fixture(LLAMA).join("config.json")).unwrap();
    for (i, cut) in [1usize, 10, llama_cfg.len() / 2, llama_cfg.len() - 2]
        .into_iter()
        .enumerate()
    {
        let m = model_bytes(
            tmp,
            &format!("cfg_cut{i}"),
            LLAMA,
            "config.json",
            &llama_cfg[..cut],
        );
        add(
            &mut cs,
            &format!("config.json truncated at {cut}"),
            fwd(&m),
            &["config.json"],
        );
    }
    for (name, bytes) in [
        ("binary", &b"\x00\xff\xfe\x01garbage"[..]),
        ("array", b"[1, 2, 3]"),
        ("string", b"\"llama\""),
        ("empty", b""),
    ] {
        let m = model_bytes(tmp, &format!("cfg_{name}"), LLAMA, "config.json", bytes);
        add(
            &mut cs,
            &format!("config.json {name}"),
            fwd(&m),
            &["config.json"],
        );
    }
    type Edit = (
        &'static str,
        &'static str,
        &'static str,
        Value,
        &'static str,
    );
    let edits: Vec<Edit> = vec![
        (
            "layers 2^31",
            LLAMA,
            "num_hidden_layers",
            json!(2147483648u64),
            "num_hidden_layers",
        ),
        (
            "layers 2^40",
            LLAMA,
            "num_hidden_layers",
            json!(1u64 << 40),
            "num_hidden_layers",
        ),
        (
            "layers 0",
            LLAMA,
            "num_hidden_layers",
            json!(0),
            "num_hidden_layers",
        ),
        (
            "layers -1",
            LLAMA,
            "num_hidden_layers",
            json!(-1),
            "num_hidden_layers",
        ),
        (
            "layers 2.5",
            LLAMA,
            "num_hidden_layers",
            json!(2.5),
            "num_hidden_layers",
        ),
        (
            "layers string",
            LLAMA,
            "num_hidden_layers",
            json!("two"),
            "num_hidden_layers",
        ),
        ("hidden 0", LLAMA, "hidden_size", json!(0), "hidden_size"),
        (
            "hidden 2^40",
            LLAMA,
            "hidden_size",
            json!(1u64 << 40),
            "hidden_size",
        ),
        (
            "heads 0",
            LLAMA,
            "num_attention_heads",
            json!(0),
            "num_attention_heads",
        ),
        (
            "heads 3",
            LLAMA,
            "num_attention_heads",
            json!(3),
            "num_attention_heads",
        ),
        (
            "kv heads 0",
            LLAMA,
            "num_key_value_heads",
            json!(0),
            "num_key_value_heads",
        ),
        (
            "kv heads 3",
            LLAMA,
            "num_key_value_heads",
            json!(3),
            "num_key_value_heads",
        ),
        (
            "vocab 2^40",
            LLAMA,
            "vocab_size",
            json!(1u64 << 40),
            "vocab_size",
        ),
        ("vocab 0", LLAMA, "vocab_size", json!(0), "vocab_size"),
        (
            "intermediate 2^40",
            LLAMA,
            "intermediate_size",
            json!(1u64 << 40),
            "intermediate_size",
        ),
        ("head_dim 0", LLAMA, "head_dim", json!(0), "head_dim"),
        (
            "eps NaN",
            LLAMA,
            "rms_norm_eps",
            json!("NaN"),
            "rms_norm_eps",
        ),
        ("eps -1", LLAMA, "rms_norm_eps", json!(-1.0), "rms_norm_eps"),
        ("eps 0", LLAMA, "rms_norm_eps", json!(0.0), "rms_norm_eps"),
        (
            "eps Infinity",
            LLAMA,
            "rms_norm_eps",
            json!("Infinity"),
            "rms_norm_eps",
        ),
        (
            "theta 0",
            LLAMA,
            "rope_parameters.rope_theta",
            json!(0.0),
            "theta",
        ),
        (
            "theta -5",
            LLAMA,
            "rope_parameters.rope_theta",
            json!(-5.0),
            "theta",
        ),
        (
            "theta NaN",
            LLAMA,
            "rope_parameters.rope_theta",
            json!("NaN"),
            "theta",
        ),
        (
            "rope type bogus",
            LLAMA,
            "rope_parameters.rope_type",
            json!("bogus"),
            "bogus",
        ),
        (
            "model_type unknown",
            LLAMA,
            "model_type",
            json!("nonesuch"),
            "nonesuch",
        ),
        (
            "model_type number",
            LLAMA,
            "model_type",
            json!(7),
            "model_type",
        ),
        (
            "gpt2 eps NaN",
            GPT2,
            "layer_norm_epsilon",
            json!("NaN"),
            "layer_norm_epsilon",
        ),
        ("gpt2 n_head 0", GPT2, "n_head", json!(0), "n_head"),
        (
            "gpt2 n_layer 2^31",
            GPT2,
            "n_layer",
            json!(2147483648u64),
            "n_layer",
        ),
        (
            "gpt2 n_positions 0",
            GPT2,
            "n_positions",
            json!(0),
            "n_positions",
        ),
        (
            "mistral window 0",
            MISTRAL,
            "sliding_window",
            json!(0),
            "sliding_window",
        ),
        (
            "mistral window -3",
            MISTRAL,
            "sliding_window",
            json!(-3),
            "sliding_window",
        ),
        (
            "mamba2 layers 2^31",
            MAMBA2,
            "num_hidden_layers",
            json!(2147483648u64),
            "num_hidden_layers",
        ),
        ("mamba2 heads 0", MAMBA2, "num_heads", json!(0), "num_heads"),
        (
            "mamba2 eps NaN",
            MAMBA2,
            "layer_norm_epsilon",
            json!("NaN"),
            "layer_norm_epsilon",
        ),
        (
            "mamba2 chunk 0",
            MAMBA2,
            "chunk_size",
            json!(0),
            "chunk_size",
        ),
        (
            "mamba2 state 2^40",
            MAMBA2,
            "state_size",
            json!(1u64 << 40),
            "state_size",
        ),
        (
            "llada layers 2^31",
            LLADA,
            "n_layers",
            json!(2147483648u64),
            "n_layers",
        ),
        (
            "llada eps NaN",
            LLADA,
            "rms_norm_eps",
            json!("NaN"),
            "rms_norm_eps",
        ),
        (
            "llada mask id huge",
            LLADA,
            "mask_token_id",
            json!(1u64 << 40),
            "mask token id",
        ),
    ];
    for (name, fx, field, v, says) in edits {
        let m = model_with(tmp, &format!("cfg {name}").replace(' ', "_"), fx, |c| {
            set(c, field, v)
        });
        add(&mut cs, &format!("config {name}"), fwd(&m), &[says]);
    }
    // Rope scaling that divides by zero or makes frequencies negative.
    for (name, scaling, says) in [
        (
            "rope factor 0",
            json!({"rope_type": "linear", "rope_theta": 10000.0, "factor": 0.0}),
            "factor",
        ),
        (
            "rope factor -2",
            json!({"rope_type": "linear", "rope_theta": 10000.0, "factor": -2.0}),
            "factor",
        ),
        (
            "llama3 low == high",
            json!({"rope_type": "llama3", "rope_theta": 10000.0, "factor": 8.0, "low_freq_factor": 2.0, "high_freq_factor": 2.0, "original_max_position_embeddings": 32}),
            "freq_factor",
        ),
    ] {
        let m = model_with(tmp, &name.replace(' ', "_"), LLAMA3, |c| {
            c.as_object_mut().unwrap().remove("rope_scaling");
            c["rope_parameters"] = scaling;
        });
        add(&mut cs, &format!("config {name}"), fwd(&m), &[says]);
    }

    // --- safetensors: truncations, lying headers, wrong shapes, non-finite weights ---
    let st = std::fs::read(fixture(LLAMA).join("model.safetensors")).unwrap();
    for (i, cut) in [0usize, 4, 8, 20, st.len() / 2, st.len() - 1]
        .into_iter()
        .enumerate()
    {
        let m = model_bytes(
            tmp,
            &format!("st_cut{i}"),
            LLAMA,
            "model.safetensors",
            &st[..cut],
        );
        add(
            &mut cs,
            &format!("safetensors truncated at {cut}"),
            fwd(&m),
            &["model.safetensors"],
        );
    }
    let header_len = u64::from_le_bytes(st[..8].try_into().unwrap()) as usize;
    let header: Value = serde_json::from_slice(&st[8..8 + header_len]).unwrap();
    let with_header = |h: &Value, pad: bool| -> Vec<u8> {
        let mut text = h.to_string().into_bytes();
        if pad {
            while text.len() < header_len {
                text.push(b' ');
            }
        }
        let mut out = (text.len() as u64).to_le_bytes().to_vec();
        out.extend(text);
        out.extend(&st[8 + header_len..]);
        out
    };
    let mut lies = Vec::new();
    let mut huge_len = st.clone();
    huge_len[..8].copy_from_slice(&(1u64 << 62).to_le_bytes());
    lies.push(("header length 2^62", huge_len, "model.safetensors"));
    let mut not_json = st.clone();
    not_json[8..16].copy_from_slice(b"\xff\xfe{{{{{{");
    lies.push(("header not JSON", not_json, "model.safetensors"));
    let first = header
        .as_object()
        .unwrap()
        .keys()
        .find(|k| *k != "__metadata__")
        .unwrap()
        .clone();
    for (what, field, v) in [
        (
            "offsets past the end",
            "data_offsets",
            json!([0, 1u64 << 40]),
        ),
        ("offsets reversed", "data_offsets", json!([64, 0])),
        ("shape 2^40", "shape", json!([1u64 << 40, 1u64 << 30])),
        ("shape lies", "shape", json!([3, 5])),
        ("dtype bogus", "dtype", json!("F99")),
    ] {
        let mut h = header.clone();
        h[&first][field] = v;
        lies.push((what, with_header(&h, true), first.as_str()));
    }
    for (what, bytes, says) in lies {
        let m = model_bytes(
            tmp,
            &format!("st {what}").replace(' ', "_"),
            LLAMA,
            "model.safetensors",
            &bytes,
        );
        let says = if says == first.as_str() {
            first.as_str()
        } else {
            says
        };
        add(&mut cs, &format!("safetensors {what}"), fwd(&m), &[says]);
    }
    // A weight with the wrong shape for the config: the config is the liar.
    let m = model_with(tmp, "shape_vs_config", LLAMA, |c| {
        c["intermediate_size"] = json!(48)
    });
    add(&mut cs, "weight shape vs config", fwd(&m), &["mlp"]);
    // Non-finite weights: a NaN and an infinity in the first tensor's data.
    let off = header[&first]["data_offsets"][0].as_u64().unwrap() as usize + 8 + header_len;
    for (what, bits) in [("NaN weight", f32::NAN), ("Inf weight", f32::INFINITY)] {
        let mut b = st.clone();
        b[off..off + 4].copy_from_slice(&bits.to_le_bytes());
        let m = model_bytes(tmp, &what.replace(' ', "_"), LLAMA, "model.safetensors", &b);
        add(
            &mut cs,
            &format!("safetensors {what}"),
            fwd(&m),
            &[first.as_str(), "non-finite"],
        );
    }
    // Sharded index: outside the directory, not JSON, missing shard.
    for (what, index, says) in [
        (
            "index escapes",
            json!({"weight_map": {first.clone(): "../../etc/passwd"}}).to_string(),
            "outside the model directory",
        ),
        (
            "index not JSON",
            "{\"weight_map\": ".to_string(),
            "model.safetensors.index.json",
        ),
        (
            "index missing shard",
            json!({"weight_map": {first.clone(): "model-00002-of-00002.safetensors"}}).to_string(),
            "model-00002-of-00002.safetensors",
        ),
    ] {
        let m = model_with(tmp, &what.replace(' ', "_"), LLAMA, |_| {});
        // A sharded checkpoint has the index and the shards, no model.safetensors.
        std::fs::rename(
            Path::new(&m).join("model.safetensors"),
            Path::new(&m).join("model-00001-of-00002.safetensors"),
        )
        .unwrap();
        std::fs::write(Path::new(&m).join("model.safetensors.index.json"), index).unwrap();
        add(&mut cs, &format!("safetensors {what}"), fwd(&m), &[says]);
    }
    // tokenizer.json that is not a tokenizer.
    // (A real directory: no invented `"tokenizer": "ids"` key, so tokenizer.json is read.)
    let m = model_with(tmp, "bad_tokenizer", LLAMA, |c| {
        c.as_object_mut().unwrap().remove("tokenizer");
    });
    std::fs::write(Path::new(&m).join("tokenizer.json"), "{\"model\": 42}").unwrap();
    add(
        &mut cs,
        "tokenizer.json garbage",
        fwd(&m),
        &["tokenizer.json"],
    );

    // --- paths that are not models ---
    let empty = tmp.join("empty_dir");
    std::fs::create_dir_all(&empty).unwrap();
    add(
        &mut cs,
        "empty directory",
        fwd(empty.to_str().unwrap()),
        &["config.json"],
    );
    let dir_gguf = tmp.join("model.gguf");
    std::fs::create_dir_all(&dir_gguf).unwrap();
    add(
        &mut cs,
        "directory named .gguf",
        fwd(dir_gguf.to_str().unwrap()),
        &["is a directory"],
    );
    add(&mut cs, "/dev/zero", fwd("/dev/zero"), &["/dev/zero"]);
    add(
        &mut cs,
        "info /dev/zero",
        vec!["info".into(), "/dev/zero".into()],
        &["/dev/zero"],
    );
    add(
        &mut cs,
        "missing path",
        fwd("/nonexistent/model"),
        &["/nonexistent/model"],
    );
    let big = tmp.join("big.json");
    std::fs::File::create(&big)
        .unwrap()
        .set_len(3 << 30)
        .unwrap(); // sparse: no disk used
    add(
        &mut cs,
        "3 GB config file",
        fwd(big.to_str().unwrap()),
        &["big.json"],
    );

    // --- GGUF: truncations, lies, absurd sizes ---
    let g = tiny_gguf(|_| {});
    for (i, cut) in [3usize, 8, 16, 24, 40, g.len() / 3, g.len() / 2, g.len() - 1]
        .into_iter()
        .enumerate()
    {
        let p = write(tmp, &format!("cut{i}.gguf"), &g[..cut]);
        add(
            &mut cs,
            &format!("gguf truncated at {cut}"),
            fwd(&p),
            &[&format!("cut{i}.gguf")],
        );
    }
    let mut lies: Vec<(&str, Vec<u8>, &str)> = Vec::new();
    let mut b = g.clone();
    b[..4].copy_from_slice(b"GGUX");
    lies.push(("bad magic", b, "GGUF"));
    let mut b = g.clone();
    b[4..8].copy_from_slice(&99u32.to_le_bytes());
    lies.push(("version 99", b, "99"));
    let mut b = g.clone();
    b[8..16].copy_from_slice(&(1u64 << 60).to_le_bytes());
    lies.push(("tensor count 2^60", b, "gguf"));
    let mut b = g.clone();
    b[16..24].copy_from_slice(&(1u64 << 60).to_le_bytes());
    lies.push(("metadata count 2^60", b, "gguf"));
    let mut b = g.clone();
    // The first key's length field follows the header (24 bytes).
    b[24..32].copy_from_slice(&(1u64 << 62).to_le_bytes());
    lies.push(("key length 2^62", b, "gguf"));
    for (what, bytes, says) in lies {
        let p = write(tmp, &format!("{}.gguf", what.replace(' ', "_")), &bytes);
        add(&mut cs, &format!("gguf {what}"), fwd(&p), &[says]);
    }
    for (what, key, v, says) in [
        (
            "block_count 2^31",
            "llama.block_count",
            MetaValue::U32(1 << 31),
            "block_count",
        ),
        (
            "epsilon NaN",
            "llama.attention.layer_norm_rms_epsilon",
            MetaValue::F32(f32::NAN),
            "epsilon",
        ),
        (
            "heads 0",
            "llama.attention.head_count",
            MetaValue::U32(0),
            "head",
        ),
        (
            "vocab 2^31",
            "llama.vocab_size",
            MetaValue::U32(1 << 31),
            "vocab",
        ),
        (
            "embedding_length 2^31",
            "llama.embedding_length",
            MetaValue::U32(1 << 31),
            "embedding_length",
        ),
        (
            "feed_forward 2^31",
            "llama.feed_forward_length",
            MetaValue::U32(1 << 31),
            "feed_forward",
        ),
        (
            "architecture bogus",
            "general.architecture",
            MetaValue::String("bogus".into()),
            "bogus",
        ),
    ] {
        let p = write(
            tmp,
            &format!("{}.gguf", what.replace(' ', "_")),
            &tiny_gguf(|w| {
                w.set_kv(key, v);
            }),
        );
        add(&mut cs, &format!("gguf {what}"), fwd(&p), &[says]);
    }
    let p = write(
        tmp,
        "dims.gguf",
        &tiny_gguf(|w| {
            w.tensor_raw(
                "huge",
                &[1 << 40, 1 << 40],
                tokit_model::GgmlType::F32,
                Vec::new(),
            );
        }),
    );
    add(
        &mut cs,
        "gguf tensor dims 2^80 elements",
        fwd(&p),
        &["huge"],
    );

    // --- tokens and inputs (M is the model; exit code 2 is clap's usage error) ---
    let llama = fixture(LLAMA).to_str().unwrap().to_string();
    let a = |v: &[&str]| -> Vec<String> { v.iter().map(|s| s.to_string()).collect() };
    let fwd_tokens = ["forward", "M", "--tokens"];
    let analyze = [
        "analyze",
        "surprisal",
        "--model",
        "M",
        "--tokens",
        "1,2,3",
        "--param",
    ];
    let cli: [(&str, Vec<&str>, &str, i32); 20] = [
        (
            "token id past the vocabulary",
            [&fwd_tokens[..], &["1,2,128"]].concat(),
            "128",
            1,
        ),
        (
            "token id 2^40",
            [&fwd_tokens[..], &["1099511627776"]].concat(),
            "1099511627776",
            2,
        ),
        (
            "negative token id",
            [&fwd_tokens[..], &["1,-2"]].concat(),
            "-2",
            2,
        ),
        (
            "token list not numbers",
            [&fwd_tokens[..], &["a,b"]].concat(),
            "a",
            2,
        ),
        (
            "empty token list",
            [&fwd_tokens[..], &[""]].concat(),
            "token",
            2,
        ),
        (
            "text and tokens together",
            [&fwd_tokens[..], &["1,2", "--text", "hi"]].concat(),
            "--text",
            1,
        ),
        (
            "text without a tokenizer",
            vec!["forward", "M", "--text", "hi"],
            "tokenizer",
            1,
        ),
        (
            "analyze unknown metric",
            vec![
                "analyze",
                "nonesuch_metric",
                "--model",
                "M",
                "--tokens",
                "1",
            ],
            "nonesuch_metric",
            1,
        ),
        (
            "analyze unknown param",
            [&analyze[..], &["bogus=1"]].concat(),
            "bogus",
            1,
        ),
        (
            "analyze param repeated",
            [&analyze[..], &["unit=bits", "--param", "unit=nats"]].concat(),
            "unit",
            1,
        ),
        (
            "analyze param bad value",
            [&analyze[..], &["unit=furlongs"]].concat(),
            "furlongs",
            1,
        ),
        (
            "generate temperature NaN",
            vec!["generate", "M", "--tokens", "1,2", "--temperature", "NaN"],
            "temperature",
            1,
        ),
        (
            "generate temperature -1",
            vec!["generate", "M", "--tokens", "1,2", "--temperature=-1"],
            "temperature",
            1,
        ),
        (
            "generate top-p 2",
            vec!["generate", "M", "--tokens", "1,2", "--top-p", "2"],
            "top",
            1,
        ),
        (
            "bench matmul size 10^6",
            vec!["bench", "matmul", "--size", "1000000"],
            "size",
            1,
        ),
        (
            "bench forward tokens 10^12",
            vec!["bench", "forward", "M", "--tokens", "1000000000000"],
            "tokens",
            1,
        ),
        (
            "capture pattern stars",
            [
                &fwd_tokens[..],
                &["1,2", "--capture", "********************x"],
            ]
            .concat(),
            "********************x",
            1,
        ),
        (
            "unknown backend",
            vec!["--backend", "quantum", "plugins"],
            "quantum",
            2,
        ),
        ("unknown command", vec!["frobnicate"], "frobnicate", 2),
        (
            "--config missing file",
            vec!["--config", "/nonexistent/tokit.ron", "plugins"],
            "/nonexistent/tokit.ron",
            1,
        ),
    ];
    for (name, args, says, code) in cli {
        let args = args
            .iter()
            .map(|&x| if x == "M" { llama.as_str() } else { x })
            .collect::<Vec<_>>();
        cs.push(Case {
            name: name.into(),
            args: a(&args),
            cwd: None,
            says: vec![says.into()],
            code,
        });
    }

    // --- scripts ---
    let script = |name: &str, src: &[u8]| -> String { write(tmp, name, src) };
    for (name, src, says) in [
        ("syntax.rhai", &b"let x = ;"[..], "syntax.rhai:1"),
        ("undefined.rhai", b"print(nope);", "nope"),
        ("unknown_fn.rhai", b"frobnicate(1);", "frobnicate"),
        (
            "bad_model.rhai",
            b"load_model(\"/nonexistent/m\");",
            "/nonexistent/m",
        ),
        ("dev_zero.rhai", b"load_model(\"/dev/zero\");", "/dev/zero"),
        (
            "bad_metric.rhai",
            b"analyze(\"nonesuch_metric\", #{});",
            "nonesuch_metric",
        ),
        (
            "recursion.rhai",
            b"fn f(n) { f(n + 1) } f(0);",
            "recursion.rhai",
        ),
        ("not_utf8.rhai", b"let x = \"\xff\xfe\";", "not_utf8.rhai"),
        ("throw.rhai", b"throw \"custom failure\";", "custom failure"),
        ("index.rhai", b"let a = [1, 2]; a[5];", "index.rhai"),
        ("tensor_bad.rhai", b"tensor([[1, 2], [3]]);", "tensor"),
    ] {
        let p = script(name, src);
        add(
            &mut cs,
            &format!("script {name}"),
            vec!["run".into(), p],
            &[says],
        );
    }
    add(
        &mut cs,
        "script is a directory",
        vec!["run".into(), empty.to_str().unwrap().into()],
        &["empty_dir"],
    );
    add(
        &mut cs,
        "script missing",
        vec!["run".into(), "/nonexistent/s.rhai".into()],
        &["/nonexistent/s.rhai"],
    );
    // An endless script stops at the operation limit (set low in tokit.ron).
    let d = ron_dir(tmp, "endless", "(script: (max_operations: 100000))");
    let p = script("endless.rhai", b"loop { }");
    cs.push(Case {
        name: "endless script".into(),
        args: vec!["run".into(), p],
        cwd: Some(d),
        says: vec!["operations".into()],
        code: 1,
    });

    // --- tokit.ron ---
    for (name, ron, says) in [
        ("syntax", "(threads: ", "tokit.ron"),
        ("unknown field", "(thraeds: Some(2))", "thraeds"),
        ("threads 100000", "(threads: Some(100000))", "threads"),
        ("threads 0", "(threads: Some(0))", "threads"),
        ("bad backend", "(backend: Quantum)", "Quantum"),
        ("wrong type", "(threads: \"two\")", "tokit.ron: 1:"),
        ("binary", "\u{0}\u{1}\u{2}", "tokit.ron"),
    ] {
        let d = ron_dir(tmp, &format!("ron_{}", name.replace(' ', "_")), ron);
        cs.push(Case {
            name: format!("tokit.ron {name}"),
            args: a(&["forward", &llama, "--tokens", "1,2"]),
            cwd: Some(d),
            says: vec![says.into()],
            code: 1,
        });
    }

    // --- files that only look like plugins: refused with the file named, others serve on ---
    let pdir = tmp.join("plugins");
    std::fs::create_dir_all(&pdir).unwrap();
    let lib = |n: &str| {
        format!(
            "{}tokit_plugin_{n}{}",
            std::env::consts::DLL_PREFIX,
            std::env::consts::DLL_SUFFIX
        )
    };
    std::fs::write(
        pdir.join(lib("random")),
        (0..4096u32)
            .map(|i| (i.wrapping_mul(2654435761u32) >> 24) as u8)
            .collect::<Vec<u8>>(),
    )
    .unwrap();
    std::fs::write(pdir.join(lib("empty")), b"").unwrap();
    let foreign = [
        "/lib/x86_64-linux-gnu/libm.so.6",
        "/usr/lib/x86_64-linux-gnu/libm.so.6",
        "/lib64/libm.so.6",
    ]
    .into_iter()
    .find(|p| Path::new(p).is_file());
    match foreign {
        Some(f) => {
            std::fs::copy(f, pdir.join(lib("libm"))).unwrap();
        }
        None => missing_prerequisite("hostile (foreign library)", "no libm.so.6 found"),
    }
    // Libraries that carry tokit's entry symbol but lie: a null `init`, and an `init` that
    // hands back a table of nulls (built with the system C compiler).
    let c_fakes = [
        (
            "nullinit",
            "const struct { unsigned a, b, c; unsigned long long h; const char *p; \
             unsigned long n; void *init; } TOKIT_PLUGIN_ENTRY = \
             { 1, 99, sizeof(TOKIT_PLUGIN_ENTRY), 0, \"0\", 1, 0 };",
        ),
        (
            "nulltable",
            "static const struct { unsigned size; void *f[7]; } VT = { 64, {0} }; \
             static int init(const void *h, const void **out) { (void)h; *out = &VT; return 0; } \
             const struct { unsigned a, b, c; unsigned long long h; const char *p; \
             unsigned long n; void *init; } TOKIT_PLUGIN_ENTRY = \
             { 1, 99, sizeof(TOKIT_PLUGIN_ENTRY), 0, \"0\", 1, (void *)init };",
        ),
    ];
    let mut fakes = vec![lib("random"), lib("empty")];
    if foreign.is_some() {
        fakes.push(lib("libm"));
    }
    for (name, src) in c_fakes {
        let c = tmp.join(format!("{name}.c"));
        std::fs::write(&c, src).unwrap();
        let built = Command::new("cc")
            .args(["-shared", "-fPIC", "-o"])
            .arg(pdir.join(lib(name)))
            .arg(&c)
            .status();
        match built {
            Ok(s) if s.success() => fakes.push(lib(name)),
            other => missing_prerequisite(
                "hostile (fake plugins)",
                format!("no C compiler to build them: {other:?}"),
            ),
        }
    }
    let pd = pdir.to_str().unwrap().to_string();
    let mut plugin_case = |name: &str, args: Vec<String>, code: i32| {
        let says = fakes.clone();
        cs.push(Case {
            name: name.into(),
            args,
            cwd: None,
            says,
            code,
        });
    };
    plugin_case(
        "junk plugins: plugins",
        a(&["--plugin-dir", &pd, "-v", "plugins"]),
        0,
    );
    plugin_case(
        "junk plugins: forward still works",
        a(&[
            "--plugin-dir",
            &pd,
            "-v",
            "forward",
            &llama,
            "--tokens",
            "1,2",
        ]),
        0,
    );
    cs
}

#[test]
fn hostile_inputs_get_clear_errors_and_never_a_panic_signal_or_hang() {
    ensure_built();
    let bin = std::path::PathBuf::from(tokit_command().get_program());
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let tmp = tempfile::tempdir().unwrap();
    let cases = cases(tmp.path());
    assert!(cases.len() >= 100, "only {} cases", cases.len());
    // Two at a time: each case is a process of its own.
    let results: Vec<(String, Result<(), String>)> = std::thread::scope(|s| {
        let half = cases.len().div_ceil(2);
        let handles: Vec<_> = cases
            .chunks(half)
            .map(|chunk| {
                let (bin, root) = (&bin, &root);
                s.spawn(move || {
                    chunk
                        .iter()
                        .map(|c| (c.name.clone(), run(bin, root, c)))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect()
    });
    let failed: Vec<String> = results
        .iter()
        .filter_map(|(n, r)| r.as_ref().err().map(|e| format!("- {n}: {e}")))
        .collect();
    eprintln!(
        "hostile: {} cases, {} misbehaved",
        results.len(),
        failed.len()
    );
    assert!(
        failed.is_empty(),
        "{} of {} cases misbehaved:\n{}",
        failed.len(),
        results.len(),
        failed.join("\n")
    );
}
