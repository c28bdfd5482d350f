//! Tests of the GGUF reader on small files written by [`GgufWriter`] (and by hand where the
//! writer cannot produce the corruption).

use super::write::GgufWriter;
use super::*;
use crate::Tokenizer;

fn open_bytes(bytes: &[u8], name: &str) -> (tempfile::TempDir, Result<Gguf>) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(name);
    std::fs::write(&path, bytes).unwrap();
    let g = Gguf::open(&path);
    (dir, g)
}

fn open_ok(w: &GgufWriter) -> (tempfile::TempDir, Gguf) {
    let (dir, g) = open_bytes(&w.to_bytes(), "t.gguf");
    (dir, g.unwrap())
}

fn open_err(bytes: &[u8]) -> String {
    let (_d, g) = open_bytes(bytes, "t.gguf");
    format!("{:#}", g.unwrap_err())
}

/// A file with every metadata type and two F32 tensors.
fn sample() -> GgufWriter {
    let mut w = GgufWriter::new();
    w.kv_str("general.architecture", "test")
        .kv("u8", MetaValue::U8(200))
        .kv("i8", MetaValue::I8(-5))
        .kv("u16", MetaValue::U16(60000))
        .kv("i16", MetaValue::I16(-300))
        .kv_u32("u32", 4_000_000_000)
        .kv("i32", MetaValue::I32(-70000))
        .kv("f32", MetaValue::F32(1e-5))
        .kv("bool", MetaValue::Bool(true))
        .kv("u64", MetaValue::U64(u64::MAX))
        .kv("i64", MetaValue::I64(i64::MIN))
        .kv("f64", MetaValue::F64(0.1))
        .kv_strs("strs", &["a", "bé", ""])
        .kv(
            "nested",
            MetaValue::Array(vec![
                MetaValue::Array(vec![MetaValue::I32(1), MetaValue::I32(2)]),
                MetaValue::Array(vec![MetaValue::I32(3)]),
            ]),
        )
        .kv("empty", MetaValue::Array(vec![]))
        .tensor_f32("mat", &[2, 3], &[1., 2., 3., 4., 5., 6.])
        .tensor_f32("vec", &[5], &[0.5, -0.5, 1.5, -1.5, 2.5]);
    w
}

#[test]
fn round_trip_all_value_types() {
    for version in [2, 3] {
        let mut w = sample();
        w.version(version);
        let (_d, g) = open_ok(&w);
        assert_eq!(g.version(), version);
        assert_eq!(g.alignment(), 32);
        assert_eq!(g.data_start() % 32, 0);
        assert_eq!(g.architecture().unwrap(), "test");
        assert_eq!(g.get("u8"), Some(&MetaValue::U8(200)));
        assert_eq!(g.get("i8").unwrap().as_i64(), Some(-5));
        assert_eq!(g.get("i8").unwrap().as_u64(), None);
        assert_eq!(g.get_u64("u16").unwrap(), 60000);
        assert_eq!(g.get("i16").unwrap().as_i64(), Some(-300));
        assert_eq!(g.get_u64("u32").unwrap(), 4_000_000_000);
        assert_eq!(g.get("i32").unwrap().as_i64(), Some(-70000));
        assert_eq!(g.opt_f64("f32").unwrap(), Some(1e-5)); // through its decimal form
        assert_eq!(g.opt_bool("bool").unwrap(), Some(true));
        assert_eq!(g.get_u64("u64").unwrap(), u64::MAX);
        assert_eq!(g.get("u64").unwrap().as_i64(), None);
        assert_eq!(g.get("i64").unwrap().as_i64(), Some(i64::MIN));
        assert_eq!(g.opt_f64("f64").unwrap(), Some(0.1));
        assert_eq!(
            g.opt_str_array("strs").unwrap().unwrap(),
            vec!["a", "bé", ""]
        );
        let nested = g.get("nested").unwrap().as_array().unwrap();
        assert_eq!(nested[0].to_json(), serde_json::json!([1, 2]));
        assert_eq!(g.get("empty").unwrap().as_array().unwrap().len(), 0);
        assert_eq!(g.metadata().count(), 15);
        assert_eq!(g.metadata().next().unwrap().0, "general.architecture");

        assert_eq!(g.names(), vec!["mat", "vec"]);
        let mat = g.tensor_info("mat").unwrap();
        assert_eq!(mat.dims, vec![3, 2]); // GGUF order: innermost first
        assert_eq!(mat.shape(), vec![2, 3]);
        assert_eq!(mat.numel(), 6);
        assert_eq!(mat.ggml_type, GgmlType::F32);
        assert_eq!(mat.n_bytes, 24);
        assert_eq!(mat.start, g.data_start());
        assert_eq!(g.tensor_info("vec").unwrap().start, g.data_start() + 32);
        let t = g.tensor("mat").unwrap();
        assert_eq!(t.shape(), &[2, 3]);
        assert_eq!(t.data(), &[1., 2., 3., 4., 5., 6.]);
        let (shape, v) = g.read_f32("vec").unwrap();
        assert_eq!(shape, vec![5]);
        assert_eq!(v, vec![0.5, -0.5, 1.5, -1.5, 2.5]);
        assert_eq!(g.type_counts().get("F32"), Some(&2));
        g.check_supported().unwrap();
        let e = format!("{:#}", g.read_f32("nope").unwrap_err());
        assert!(e.contains("t.gguf: no tensor `nope`"), "{e}");
    }
}

#[test]
fn typed_accessor_errors() {
    let (_d, g) = open_ok(&sample());
    let e = g.get_str("u8").unwrap_err().to_string();
    assert_eq!(e, "t.gguf: metadata `u8` is u8 200, expected a string");
    let e = g.get_u64("strs").unwrap_err().to_string();
    assert_eq!(
        e,
        "t.gguf: metadata `strs` is an array of 3 string, expected a non-negative integer"
    );
    let e = g.get_u64("i8").unwrap_err().to_string();
    assert!(e.contains("i8 -5"), "{e}");
    let e = g.get_str("missing.key").unwrap_err().to_string();
    assert_eq!(
        e,
        "t.gguf: metadata `missing.key` is missing (expected a string)"
    );
    let e = g.opt_i64_array("strs").unwrap_err().to_string();
    assert!(
        e.contains("element 0 is string \"a\", expected an integer"),
        "{e}"
    );
    assert!(g.opt_bool("u8").is_err());
    assert_eq!(g.opt_str("missing").unwrap(), None);
}

#[test]
fn custom_alignment() {
    let mut w = sample();
    w.kv("general.alignment", MetaValue::U32(64));
    let (_d, g) = open_ok(&w);
    assert_eq!(g.alignment(), 64);
    assert_eq!(g.data_start() % 64, 0);
    assert_eq!(g.tensor_info("vec").unwrap().start, g.data_start() + 64);
    assert_eq!(g.read_f32("vec").unwrap().1[4], 2.5);

    let mut w = sample();
    w.kv("general.alignment", MetaValue::U32(48));
    let e = open_err(&w.to_bytes());
    assert!(
        e.contains("`general.alignment` is u32 48, expected a power of two"),
        "{e}"
    );
}

#[test]
fn header_errors() {
    let good = sample().to_bytes();
    let e = open_err(b"{\"__metadata__\": 1}");
    assert!(e.contains("t.gguf: not a GGUF file"), "{e}");
    assert!(e.contains("expected \"GGUF\""), "{e}");
    let e = open_err(b"");
    assert!(e.contains("t.gguf: the file is empty"), "{e}");

    let mut v1 = good.clone();
    v1[4..8].copy_from_slice(&1u32.to_le_bytes());
    assert!(open_err(&v1).contains("GGUF version 1 is not supported"));
    let mut be = good.clone();
    be[4..8].copy_from_slice(&3u32.to_be_bytes());
    assert!(open_err(&be).contains("big-endian"));
    let mut v9 = good.clone();
    v9[4..8].copy_from_slice(&9u32.to_le_bytes());
    assert!(open_err(&v9).contains("GGUF version 9 is not supported"));

    let mut huge = good.clone();
    huge[16..24].copy_from_slice(&u64::MAX.to_le_bytes()); // metadata count
    let e = open_err(&huge);
    assert!(e.contains("can hold (truncated or corrupt file)"), "{e}");
}

#[test]
fn every_truncation_is_an_error() {
    let good = sample().to_bytes();
    let (_d, g) = open_ok(&sample());
    let data_end = g.tensor_info("vec").unwrap().start + 20; // then padding only
    for len in 0..data_end as usize {
        let (_d, g) = open_bytes(&good[..len], "t.gguf");
        let e = format!("{:#}", g.expect_err(&format!("truncated to {len} bytes")));
        assert!(e.starts_with("t.gguf: "), "{len}: {e}");
    }
}

#[test]
fn truncation_messages_say_where() {
    let good = sample().to_bytes();
    // inside the header
    let e = open_err(&good[..10]);
    assert_eq!(
        e,
        "t.gguf: truncated while reading the tensor count: that needs at least 16 bytes but the \
         file has 10"
    );
    // inside a metadata value: find the key `strs` and cut just after it
    let at = find(&good, b"strs") + 6;
    let e = open_err(&good[..at]);
    assert!(
        e.contains("truncated while reading metadata entry 13 of 15 (`strs`)"),
        "{e}"
    );
    // inside a tensor info
    let at = find(&good, b"vec") + 5;
    let e = open_err(&good[..at]);
    assert!(e.contains("the info of tensor 2 of 2 (`vec`)"), "{e}");
    // inside the data: the last tensor's data
    let (_d, g) = open_ok(&sample());
    let vec_end = g.tensor_info("vec").unwrap().start + 20;
    let cut = (vec_end - 1) as usize;
    let e = open_err(&good[..cut]);
    assert_eq!(
        e,
        format!(
            "t.gguf: tensor `vec` data ends at byte {vec_end} but the file has {cut} bytes \
             (truncated download?)"
        )
    );
}

fn find(hay: &[u8], needle: &[u8]) -> usize {
    hay.windows(needle.len())
        .position(|w| w == needle)
        .expect("needle present")
}

#[test]
fn corrupt_metadata() {
    // a bool stored as 2
    let mut w = GgufWriter::new();
    w.kv("flag", MetaValue::Bool(true));
    let mut b = w.to_bytes();
    let at = find(&b, b"flag") + 4 + 4;
    b[at] = 2;
    let e = open_err(&b);
    assert!(
        e.contains("corrupt metadata entry 1 of 1 (`flag`): a bool is stored as byte 2"),
        "{e}"
    );
    // an unknown value type
    let mut b = w.to_bytes();
    let at = find(&b, b"flag") + 4;
    b[at..at + 4].copy_from_slice(&13u32.to_le_bytes());
    assert!(open_err(&b).contains("unknown value type 13"));
    // a string that is not UTF-8
    let mut w = GgufWriter::new();
    w.kv_str("s", "abc");
    let mut b = w.to_bytes();
    let at = find(&b, b"abc");
    b[at] = 0xff;
    assert!(open_err(&b).contains("not valid UTF-8"));
    // an array claiming more elements than the file holds
    let mut w = GgufWriter::new();
    w.kv_strs("arr", &["x"]);
    let mut b = w.to_bytes();
    let at = find(&b, b"arr") + 3 + 4 + 4;
    b[at..at + 8].copy_from_slice(&(1u64 << 40).to_le_bytes());
    let e = open_err(&b);
    assert!(
        e.contains("truncated while reading metadata entry 1 of 1 (`arr`)"),
        "{e}"
    );
    // a key twice
    let mut w = GgufWriter::new();
    w.kv_u32("k", 1).kv_u32("k", 2);
    assert!(open_err(&w.to_bytes()).contains("key `k` appears twice"));
}

#[test]
fn corrupt_tensor_infos() {
    // five dimensions
    let mut w = GgufWriter::new();
    w.tensor_f32("t5", &[1, 1, 1, 1, 2], &[0., 0.]);
    let e = open_err(&w.to_bytes());
    assert!(
        e.contains("it has 5 dimensions, ggml allows at most 4"),
        "{e}"
    );
    // rows that are not whole blocks
    let mut w = GgufWriter::new();
    w.tensor_raw("q", &[2, 16], GgmlType::Q8_0, vec![0; 68]);
    let e = open_err(&w.to_bytes());
    assert!(e.contains("tensor `q`: its rows have 16 values, not a multiple of the 32-value blocks of type Q8_0"), "{e}");
    // a misaligned offset
    let mut w = GgufWriter::new();
    w.tensor_f32("a", &[1], &[1.0]);
    let mut b = w.to_bytes();
    let at = find(&b, b"a\x01\x00\x00\x00") + 1 + 4 + 8 + 4;
    b[at..at + 8].copy_from_slice(&4u64.to_le_bytes());
    assert!(open_err(&b).contains("data offset 4 is not a multiple of the alignment 32"));
    // the same name twice
    let mut w = GgufWriter::new();
    w.tensor_f32("a", &[1], &[1.0])
        .tensor_f32("a", &[1], &[2.0]);
    assert!(open_err(&w.to_bytes()).contains("tensor `a` appears twice"));
}

#[test]
fn unsupported_and_unknown_types() {
    let mut w = GgufWriter::new();
    w.tensor_f32("ok", &[2], &[1.0, 2.0]).tensor_raw(
        "blk.0.ffn_up.weight",
        &[1, 256],
        GgmlType::Q3_K,
        vec![0; 110],
    );
    let (_d, g) = open_ok(&w);
    assert_eq!(g.read_f32("ok").unwrap().1, vec![1.0, 2.0]);
    let e = format!("{:#}", g.read_f32("blk.0.ffn_up.weight").unwrap_err());
    assert!(
        e.starts_with(
            "t.gguf: tensor `blk.0.ffn_up.weight` has type Q3_K, which tokit cannot convert to \
             f32 (supported: F32, F16, BF16, Q8_0"
        ),
        "{e}"
    );
    assert_eq!(format!("{:#}", g.check_supported().unwrap_err()), e);
    assert_eq!(g.tensor_bytes("blk.0.ffn_up.weight").unwrap().len(), 110);

    let mut w = GgufWriter::new();
    w.tensor_raw_id("weird", &[4], 99, vec![0; 16]);
    let e = open_err(&w.to_bytes());
    assert!(
        e.contains("tensor `weird` has ggml type id 99, which tokit does not know"),
        "{e}"
    );
}

#[test]
fn quantised_tensor_reads_as_f32() {
    // a 2 x 32 Q8_0 matrix: row r has d = 1 and q = r * 10 + j % 5
    let mut data = Vec::new();
    for r in 0..2u8 {
        data.extend_from_slice(&0x3c00u16.to_le_bytes());
        data.extend((0..32u8).map(|j| r * 10 + j % 5));
    }
    let mut w = GgufWriter::new();
    w.tensor_raw("m", &[2, 32], GgmlType::Q8_0, data);
    let (_d, g) = open_ok(&w);
    let (shape, v) = g.read_f32("m").unwrap();
    assert_eq!(shape, vec![2, 32]);
    assert_eq!(v[33], 11.0);
    assert_eq!(v[4], 4.0);
}

// ----- Llama -----------------------------------------------------------------------------------

const HIDDEN: usize = 8;
const HEADS: usize = 2;
const KV_HEADS: usize = 1;
const HEAD_DIM: usize = 4;
const FF: usize = 12;
const VOCAB: usize = 6;

/// llama.cpp's Q/K permutation, from its definition (HF row h*D + s*D/2 + i is written at GGUF
/// row h*D + 2*i + s).
fn llama_cpp_permute(hf: &[f32], rows: usize, cols: usize, n_head: usize) -> Vec<f32> {
    let d = rows / n_head;
    let mut out = vec![0.0; hf.len()];
    for h in 0..n_head {
        for s in 0..2 {
            for i in 0..d / 2 {
                let from = h * d + s * (d / 2) + i;
                let to = h * d + 2 * i + s;
                out[to * cols..(to + 1) * cols]
                    .copy_from_slice(&hf[from * cols..(from + 1) * cols]);
            }
        }
    }
    out
}

fn ramp(n: usize, base: f32) -> Vec<f32> {
    (0..n).map(|i| base + i as f32).collect()
}

/// A two-layer Llama with distinct values everywhere; Q and K stored permuted as llama.cpp does.
fn tiny_llama(with_output: bool) -> GgufWriter {
    let mut w = GgufWriter::new();
    w.kv_str("general.architecture", "llama")
        .kv_u32("llama.embedding_length", HIDDEN as u32)
        .kv_u32("llama.feed_forward_length", FF as u32)
        .kv_u32("llama.block_count", 2)
        .kv_u32("llama.attention.head_count", HEADS as u32)
        .kv_u32("llama.attention.head_count_kv", KV_HEADS as u32)
        .kv(
            "llama.attention.layer_norm_rms_epsilon",
            MetaValue::F32(1e-5),
        )
        .kv_u32("llama.context_length", 128)
        .kv_u32("llama.rope.dimension_count", HEAD_DIM as u32)
        .kv_u32("tokenizer.ggml.bos_token_id", 1)
        .kv_u32("tokenizer.ggml.eos_token_id", 2);
    w.tensor_f32(
        "token_embd.weight",
        &[VOCAB, HIDDEN],
        &ramp(VOCAB * HIDDEN, 0.0),
    );
    for l in 0..2 {
        let base = 1000.0 * (l + 1) as f32;
        let q = ramp(HIDDEN * HIDDEN, base);
        let k = ramp(KV_HEADS * HEAD_DIM * HIDDEN, base + 100.0);
        w.tensor_f32(
            &format!("blk.{l}.attn_norm.weight"),
            &[HIDDEN],
            &ramp(HIDDEN, base + 1.0),
        )
        .tensor_f32(
            &format!("blk.{l}.attn_q.weight"),
            &[HIDDEN, HIDDEN],
            &llama_cpp_permute(&q, HIDDEN, HIDDEN, HEADS),
        )
        .tensor_f32(
            &format!("blk.{l}.attn_k.weight"),
            &[KV_HEADS * HEAD_DIM, HIDDEN],
            &llama_cpp_permute(&k, KV_HEADS * HEAD_DIM, HIDDEN, KV_HEADS),
        )
        .tensor_f32(
            &format!("blk.{l}.attn_v.weight"),
            &[KV_HEADS * HEAD_DIM, HIDDEN],
            &ramp(KV_HEADS * HEAD_DIM * HIDDEN, base + 200.0),
        )
        .tensor_f32(
            &format!("blk.{l}.attn_output.weight"),
            &[HIDDEN, HIDDEN],
            &ramp(HIDDEN * HIDDEN, base + 300.0),
        )
        .tensor_f32(
            &format!("blk.{l}.ffn_norm.weight"),
            &[HIDDEN],
            &ramp(HIDDEN, base + 2.0),
        )
        .tensor_f32(
            &format!("blk.{l}.ffn_gate.weight"),
            &[FF, HIDDEN],
            &ramp(FF * HIDDEN, base + 400.0),
        )
        .tensor_f32(
            &format!("blk.{l}.ffn_up.weight"),
            &[FF, HIDDEN],
            &ramp(FF * HIDDEN, base + 500.0),
        )
        .tensor_f32(
            &format!("blk.{l}.ffn_down.weight"),
            &[HIDDEN, FF],
            &ramp(FF * HIDDEN, base + 600.0),
        );
    }
    w.tensor_f32("output_norm.weight", &[HIDDEN], &ramp(HIDDEN, 7.0));
    if with_output {
        w.tensor_f32(
            "output.weight",
            &[VOCAB, HIDDEN],
            &ramp(VOCAB * HIDDEN, 9.0),
        );
    }
    w
}

#[test]
fn llama_config() {
    let (_d, g) = open_ok(&tiny_llama(false));
    let c = gguf_config(&g).unwrap();
    assert_eq!(
        c,
        serde_json::json!({
            "architectures": ["LlamaForCausalLM"],
            "model_type": "llama",
            "hidden_size": 8,
            "intermediate_size": 12,
            "num_hidden_layers": 2,
            "num_attention_heads": 2,
            "num_key_value_heads": 1,
            "head_dim": 4,
            "rms_norm_eps": 1e-5,
            "rope_theta": 10000.0,
            "max_position_embeddings": 128,
            "vocab_size": 6,
            "tie_word_embeddings": true,
            "bos_token_id": 1,
            "eos_token_id": 2
        })
    );
    // the config reads back through HfConfig, whose RoPE helper sees the theta
    let hf = crate::HfConfig::from_value(c, "t.gguf").unwrap();
    assert_eq!(hf.rope_theta(), Some(10000.0));
    assert_eq!(hf.model_type().unwrap(), "llama");

    let mut w = tiny_llama(true);
    w.kv("llama.rope.freq_base", MetaValue::F32(500000.0))
        .kv_str("llama.rope.scaling.type", "linear")
        .kv("llama.rope.scaling.factor", MetaValue::F32(2.0));
    let (_d, g) = open_ok(&w);
    let c = gguf_config(&g).unwrap();
    assert_eq!(c["tie_word_embeddings"], false);
    assert_eq!(c["rope_theta"], 500000.0);
    assert_eq!(
        c["rope_scaling"],
        serde_json::json!({"rope_type": "linear", "factor": 2.0})
    );
}

#[test]
fn llama_config_errors() {
    let (_d, g) = open_ok(&sample());
    let e = gguf_config(&g).unwrap_err().to_string();
    assert!(e.contains("`general.architecture` is `test`"), "{e}");
    assert!(g.names_hf().is_empty());
    let e = g.tensor_hf("model.norm.weight").unwrap_err().to_string();
    assert!(
        e.contains("tokit maps GGUF tensor names for `llama` only"),
        "{e}"
    );

    let mut w = tiny_llama(false);
    w.tensor_f32("rope_freqs.weight", &[2], &[1.0, 1.0]);
    let (_d, g) = open_ok(&w);
    assert!(gguf_config(&g)
        .unwrap_err()
        .to_string()
        .contains("rope_freqs.weight"));

    let mut w = tiny_llama(false);
    w.kv_u32("llama.expert_count", 8);
    let (_d, g) = open_ok(&w);
    assert!(gguf_config(&g)
        .unwrap_err()
        .to_string()
        .contains("mixture-of-experts"));

    let mut w = tiny_llama(false);
    w.kv_u32("llama.rope.dimension_count", 2); // a second entry: the file is corrupt
    assert!(open_err(&w.to_bytes()).contains("appears twice"));

    // Sizes and numbers that would poison or blow up a model are refused, naming the key.
    for (key, value, says) in [
        (
            "llama.block_count",
            MetaValue::U32(1 << 31),
            "holds tensors of 2 blocks",
        ),
        (
            "llama.block_count",
            MetaValue::U32(3),
            "`llama.block_count` is 3",
        ),
        (
            "llama.attention.layer_norm_rms_epsilon",
            MetaValue::F32(f32::NAN),
            "NaN",
        ),
        (
            "llama.attention.layer_norm_rms_epsilon",
            MetaValue::F32(-1e-5),
            "finite number > 0",
        ),
        (
            "llama.rope.freq_base",
            MetaValue::F32(0.0),
            "`llama.rope.freq_base` is 0",
        ),
    ] {
        let mut w = tiny_llama(false);
        w.set_kv(key, value);
        let (_d, g) = open_ok(&w);
        let e = gguf_config(&g).unwrap_err().to_string();
        assert!(e.contains(key) && e.contains(says), "{key}: {e}");
    }
}

#[test]
fn a_directory_or_device_is_not_a_gguf_file() {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path().join("model.gguf");
    std::fs::create_dir(&dir).unwrap();
    let e = Gguf::open(&dir).unwrap_err().to_string();
    assert!(e.contains("model.gguf: is a directory"), "{e}");
    #[cfg(unix)]
    {
        let e = Gguf::open("/dev/zero").unwrap_err().to_string();
        assert!(e.contains("zero: not a regular file"), "{e}");
    }
}

#[test]
fn llama_tensors_by_hf_name() {
    let (_d, g) = open_ok(&tiny_llama(false));
    let names = g.names_hf();
    assert_eq!(names.len(), 1 + 2 * 9 + 1);
    assert!(names.contains(&"model.embed_tokens.weight".to_owned()));
    assert!(names.contains(&"model.layers.1.mlp.down_proj.weight".to_owned()));
    assert!(!names.contains(&"lm_head.weight".to_owned())); // tied
    assert_eq!(
        g.gguf_name_of("model.norm.weight"),
        Some("output_norm.weight")
    );
    assert_eq!(
        g.shape_hf("model.layers.0.mlp.down_proj.weight"),
        Some(vec![HIDDEN, FF])
    );

    for l in 0..2 {
        let base = 1000.0 * (l + 1) as f32;
        let q = g
            .tensor_hf(&format!("model.layers.{l}.self_attn.q_proj.weight"))
            .unwrap();
        assert_eq!(q.shape(), &[HIDDEN, HIDDEN]);
        assert_eq!(q.data(), &ramp(HIDDEN * HIDDEN, base)[..], "layer {l} q");
        let k = g
            .tensor_hf(&format!("model.layers.{l}.self_attn.k_proj.weight"))
            .unwrap();
        assert_eq!(k.shape(), &[KV_HEADS * HEAD_DIM, HIDDEN]);
        assert_eq!(
            k.data(),
            &ramp(KV_HEADS * HEAD_DIM * HIDDEN, base + 100.0)[..]
        );
        let down = g
            .tensor_hf(&format!("model.layers.{l}.mlp.down_proj.weight"))
            .unwrap();
        assert_eq!(down.shape(), &[HIDDEN, FF]);
        assert_eq!(down.data(), &ramp(FF * HIDDEN, base + 600.0)[..]);
    }
    // by GGUF name the rows stay permuted: within head 0, HF rows 0, 2, 1, 3
    let raw = g.tensor("blk.0.attn_q.weight").unwrap();
    assert_eq!(raw.data()[HIDDEN], 1000.0 + 2.0 * HIDDEN as f32);
    let e = g
        .tensor_hf("model.layers.9.mlp.up_proj.weight")
        .unwrap_err()
        .to_string();
    assert!(e.contains("no tensor with the Hugging Face name"), "{e}");

    let (_d, g) = open_ok(&tiny_llama(true));
    assert!(g.names_hf().contains(&"lm_head.weight".to_owned()));
    assert_eq!(g.tensor_hf("lm_head.weight").unwrap().data()[0], 9.0);
}

// ----- tokenizer -------------------------------------------------------------------------------

/// A tiny byte-level BPE: `Ġ` is a space.
fn tiny_tokenizer(pre: &str) -> GgufWriter {
    let tokens = [
        "<|endoftext|>",
        "h",
        "e",
        "l",
        "o",
        "Ġ",
        "w",
        "r",
        "d",
        "he",
        "ll",
        "hell",
        "Ġw",
        "1",
        "2",
        "<think>",
        "Ġ1",
    ];
    let merges = ["h e", "l l", "he ll", "Ġ w", "Ġ 1"];
    let mut types = vec![MetaValue::I32(1); tokens.len()];
    types[0] = MetaValue::I32(3);
    types[15] = MetaValue::I32(4);
    let mut w = GgufWriter::new();
    w.kv_str("general.architecture", "llama")
        .kv_str("tokenizer.ggml.model", "gpt2")
        .kv_str("tokenizer.ggml.pre", pre)
        .kv_strs("tokenizer.ggml.tokens", &tokens)
        .kv_strs("tokenizer.ggml.merges", &merges)
        .kv("tokenizer.ggml.token_type", MetaValue::Array(types));
    w
}

#[test]
fn tokenizer_from_gguf() {
    let (_d, g) = open_ok(&tiny_tokenizer("smollm"));
    let tok = Tokenizer::from_gguf(&g).unwrap();
    let ids = tok.encode("hello world").unwrap();
    // hell o Ġw o r l d
    assert_eq!(ids, vec![11, 4, 12, 4, 7, 3, 8]);
    assert_eq!(tok.decode(&ids).unwrap(), "hello world");
    // control and user-defined tokens are matched whole
    assert_eq!(
        tok.encode("he<|endoftext|><think>").unwrap(),
        vec![9, 0, 15]
    );
    assert_eq!(tok.vocab_size(), 17);
    // "smollm" splits every digit off before the GPT-2 regex, so " 12" is Ġ, 1, 2 and the
    // merge "Ġ 1" never applies; with "gpt2" it does
    assert_eq!(tok.encode(" 12").unwrap(), vec![5, 13, 14]);
    let (_d, g) = open_ok(&tiny_tokenizer("gpt2"));
    let tok = Tokenizer::from_gguf(&g).unwrap();
    assert_eq!(tok.encode(" 12").unwrap(), vec![16, 14]);
    assert_eq!(
        tok.encode("hello world").unwrap(),
        vec![11, 4, 12, 4, 7, 3, 8]
    );
    // a regex pre-tokenizer (Llama 3's) builds and encodes
    let (_d, g) = open_ok(&tiny_tokenizer("llama-bpe"));
    let tok = Tokenizer::from_gguf(&g).unwrap();
    assert_eq!(
        tok.encode("hello world").unwrap(),
        vec![11, 4, 12, 4, 7, 3, 8]
    );
}

#[test]
fn tokenizer_errors() {
    let (_d, g) = open_ok(&tiny_tokenizer("no-such-pre"));
    let e = Tokenizer::from_gguf(&g).unwrap_err().to_string();
    assert!(e.contains("`tokenizer.ggml.pre` is \"no-such-pre\""), "{e}");
    assert!(e.contains("smollm"), "{e}");

    let mut w = tiny_tokenizer("gpt2");
    w.kv_str("tokenizer.ggml.model", "llama");
    assert!(open_err(&w.to_bytes()).contains("appears twice"));
    let mut w = GgufWriter::new();
    w.kv_str("tokenizer.ggml.model", "llama");
    let (_d, g) = open_ok(&w);
    let e = Tokenizer::from_gguf(&g).unwrap_err().to_string();
    assert!(e.contains("\"llama\" (SentencePiece)"), "{e}");

    let (_d, g) = open_ok(&sample());
    let e = Tokenizer::from_gguf(&g).unwrap_err().to_string();
    assert!(e.contains("`tokenizer.ggml.model` is missing"), "{e}");

    let mut w = GgufWriter::new();
    w.kv_str("tokenizer.ggml.model", "gpt2")
        .kv_strs("tokenizer.ggml.tokens", &["a", "b"])
        .kv_strs("tokenizer.ggml.merges", &["a b c"]);
    let (_d, g) = open_ok(&w);
    let e = Tokenizer::from_gguf(&g).unwrap_err().to_string();
    assert!(e.contains("merges` entry 0 is \"a b c\""), "{e}");

    let mut w = GgufWriter::new();
    w.kv_str("tokenizer.ggml.model", "gpt2")
        .kv_strs("tokenizer.ggml.tokens", &["a", "b"])
        .kv_strs("tokenizer.ggml.merges", &["a b"]);
    let (_d, g) = open_ok(&w);
    let e = Tokenizer::from_gguf(&g).unwrap_err().to_string();
    assert!(
        e.contains("entry 0 (\"a\" + \"b\") uses \"ab\", which is not in"),
        "{e}"
    );
}
