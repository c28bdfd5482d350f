//! Llama-architecture GGUF files (`general.architecture = "llama"`): a Hugging Face–style
//! config, the map from GGUF tensor names to Hugging Face ones, and the undoing of the row
//! permutation llama.cpp applies to the Q and K projections.
//!
//! llama.cpp's converter (`convert_hf_to_gguf.py`, `LlamaModel.permute`) reorders the rows of
//! `q_proj` (with `n_head`) and `k_proj` (with `n_head_kv`) so that each head's two rotary
//! halves are interleaved: it reshapes `[n_head, 2, D/2, in]`, swaps axes 1 and 2 and
//! flattens again (D = rows / n_head). The GGUF row `h*D + 2*i + s` therefore holds the
//! Hugging Face row `h*D + s*D/2 + i`. [`unpermute_rows`] puts them back, as transformers'
//! GGUF loader does (`_reverse_permute_weights`: reshape `[n_head, D/2, 2, in]`, swap axes 1
//! and 2).

use std::collections::BTreeMap;

use anyhow::{anyhow, bail, Result};
use serde_json::{json, Map, Value};

use super::Gguf;

/// One Hugging Face tensor: its GGUF name, and the head count to un-permute its rows with
/// (Q and K only).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HfEntry {
    pub gguf: String,
    pub unpermute_heads: Option<usize>,
}

/// The Hugging Face names of a file's tensors.
#[derive(Debug, Clone, Default)]
pub struct HfNames {
    map: BTreeMap<String, HfEntry>,
}

impl HfNames {
    pub fn names(&self) -> Vec<String> {
        self.map.keys().cloned().collect()
    }

    pub fn get(&self, hf_name: &str) -> Option<&HfEntry> {
        self.map.get(hf_name)
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// The map of a file, or why it has none (not Llama, or heads missing from the metadata).
    pub(crate) fn build(g: &Gguf) -> std::result::Result<HfNames, String> {
        let arch = match g.architecture() {
            Ok(a) => a,
            Err(e) => return Err(format!("no Hugging Face tensor names: {e:#}")),
        };
        if arch != "llama" {
            return Err(format!(
                "no Hugging Face tensor names for architecture `{arch}` (tokit maps GGUF \
                 tensor names for `llama` only)"
            ));
        }
        let heads = Heads::read(g).map_err(|e| format!("{e:#}"))?;
        let mut map = BTreeMap::new();
        for t in g.tensors() {
            if let Some((hf, permute)) = hf_name(&t.name) {
                let unpermute_heads = permute.map(|p| match p {
                    Permute::Q => heads.n_head,
                    Permute::K => heads.n_kv,
                });
                map.insert(
                    hf,
                    HfEntry {
                        gguf: t.name.clone(),
                        unpermute_heads,
                    },
                );
            }
        }
        Ok(HfNames { map })
    }
}

struct Heads {
    n_head: usize,
    n_kv: usize,
}

impl Heads {
    fn read(g: &Gguf) -> Result<Heads> {
        let n_head = g.get_usize("llama.attention.head_count")?;
        let n_kv = match g.get("llama.attention.head_count_kv") {
            None => n_head,
            Some(_) => g.get_usize("llama.attention.head_count_kv")?,
        };
        if n_head == 0 || n_kv == 0 {
            bail!(
                "{}: metadata says {n_head} attention heads and {n_kv} key/value heads; both \
                 must be at least 1",
                g.file_name()
            );
        }
        Ok(Heads { n_head, n_kv })
    }
}

enum Permute {
    Q,
    K,
}

/// The Hugging Face name of a GGUF tensor name, and whether its rows are permuted.
fn hf_name(gguf: &str) -> Option<(String, Option<Permute>)> {
    match gguf {
        "token_embd.weight" => return Some(("model.embed_tokens.weight".into(), None)),
        "output_norm.weight" => return Some(("model.norm.weight".into(), None)),
        "output.weight" => return Some(("lm_head.weight".into(), None)),
        _ => {}
    }
    let rest = gguf.strip_prefix("blk.")?;
    let (layer, rest) = rest.split_once('.')?;
    let layer: usize = layer.parse().ok()?;
    let (part, kind) = rest.rsplit_once('.')?;
    if kind != "weight" && kind != "bias" {
        return None;
    }
    let (hf, permute) = match part {
        "attn_q" => ("self_attn.q_proj", Some(Permute::Q)),
        "attn_k" => ("self_attn.k_proj", Some(Permute::K)),
        "attn_v" => ("self_attn.v_proj", None),
        "attn_output" => ("self_attn.o_proj", None),
        "attn_norm" => ("input_layernorm", None),
        "ffn_norm" => ("post_attention_layernorm", None),
        "ffn_gate" => ("mlp.gate_proj", None),
        "ffn_up" => ("mlp.up_proj", None),
        "ffn_down" => ("mlp.down_proj", None),
        _ => return None,
    };
    Some((format!("model.layers.{layer}.{hf}.{kind}"), permute))
}

/// Undoes llama.cpp's Q/K row permutation in place (see the module docs). `shape[0]` is the
/// number of rows (HF order); a 1-D tensor (a bias) is a column of rows.
pub fn unpermute_rows(data: &mut [f32], shape: &[usize], n_head: usize) -> Result<()> {
    let rows = *shape
        .first()
        .ok_or_else(|| anyhow!("a scalar has no rows to un-permute"))?;
    let cols: usize = shape[1..].iter().product();
    if n_head == 0 || !rows.is_multiple_of(n_head) || !(rows / n_head).is_multiple_of(2) {
        bail!(
            "cannot un-permute {rows} rows for {n_head} heads: the rows must split into heads \
             of an even size"
        );
    }
    debug_assert_eq!(data.len(), rows * cols);
    let d = rows / n_head;
    let half = d / 2;
    let src = data.to_vec();
    for h in 0..n_head {
        for i in 0..half {
            for s in 0..2 {
                let to = h * d + s * half + i;
                let from = h * d + 2 * i + s;
                data[to * cols..(to + 1) * cols]
                    .copy_from_slice(&src[from * cols..(from + 1) * cols]);
            }
        }
    }
    Ok(())
}

/// The Hugging Face–style `config.json` of a Llama-architecture GGUF file:
/// `model_type: "llama"`, the sizes, `rms_norm_eps`, `rope_theta` (10000 when the file has
/// none), `max_position_embeddings`, `vocab_size`, `tie_word_embeddings` (true when there is
/// no `output.weight`), `head_dim`, the special token ids, and `rope_scaling` when the file
/// states linear or YaRN scaling.
pub fn gguf_config(g: &Gguf) -> Result<Value> {
    let file = g.file_name();
    let arch = g.architecture()?;
    if arch != "llama" {
        bail!(
            "{file}: `general.architecture` is `{arch}`; tokit builds a config for `llama` GGUF \
             files only"
        );
    }
    let key = |k: &str| format!("llama.{k}");
    let hidden = g.get_usize(&key("embedding_length"))?;
    // Sizes are checked against the tensors the file holds before a plugin sizes anything
    // by them (a corrupt 2^31 would otherwise mean gigabyte tables).
    if let Some(embd) = g.tensor_info("token_embd.weight") {
        let width = embd.dims.first().copied().unwrap_or(0);
        if width != hidden as u64 {
            bail!(
                "{file}: metadata `llama.embedding_length` is {hidden}, but `token_embd.weight` \
                 has rows of {width}"
            );
        }
    }
    if let Some(up) = g.tensor_info("blk.0.ffn_up.weight") {
        let ff = g.get_usize(&key("feed_forward_length"))?;
        if up.dims.get(1).copied() != Some(ff as u64) {
            bail!(
                "{file}: metadata `llama.feed_forward_length` is {ff}, but `blk.0.ffn_up.weight` \
                 has dimensions {:?}",
                up.dims
            );
        }
    }
    let heads = Heads::read(g)?;
    if !hidden.is_multiple_of(heads.n_head) && g.get(&key("attention.key_length")).is_none() {
        bail!(
            "{file}: embedding_length {hidden} is not a multiple of head_count {} (and no \
             `llama.attention.key_length` says the head size)",
            heads.n_head
        );
    }
    let head_dim = match g.opt_u64(&key("attention.key_length"))? {
        Some(k) => k as usize,
        None => hidden / heads.n_head,
    };
    if let Some(v) = g.opt_u64(&key("attention.value_length"))? {
        if v as usize != head_dim {
            bail!(
                "{file}: key_length {head_dim} and value_length {v} differ, which Llama does \
                 not allow"
            );
        }
    }
    if let Some(rot) = g.opt_u64(&key("rope.dimension_count"))? {
        if rot as usize != head_dim {
            bail!(
                "{file}: `llama.rope.dimension_count` is {rot} but the head size is {head_dim}; \
                 partial rotary embeddings are not part of the Llama architecture"
            );
        }
    }
    if let Some(n) = g.opt_u64(&key("expert_count"))?.filter(|&n| n > 0) {
        bail!(
            "{file}: `llama.expert_count` is {n}: a mixture-of-experts (Mixtral-style) Llama, \
             which tokit does not support"
        );
    }
    if g.contains("rope_freqs.weight") {
        bail!(
            "{file}: the file has `rope_freqs.weight` (Llama 3.1-style RoPE frequency factors), \
             which tokit does not support yet"
        );
    }
    let eps = g
        .opt_f64(&key("attention.layer_norm_rms_epsilon"))?
        .ok_or_else(|| {
            anyhow!("{file}: metadata `llama.attention.layer_norm_rms_epsilon` is missing")
        })?;
    if !(eps.is_finite() && eps > 0.0) {
        bail!(
            "{file}: metadata `llama.attention.layer_norm_rms_epsilon` is {eps}; expected a \
             finite number > 0"
        );
    }
    let rope_theta = g.opt_f64(&key("rope.freq_base"))?.unwrap_or(10000.0);
    if !(rope_theta.is_finite() && rope_theta > 0.0) {
        bail!(
            "{file}: metadata `llama.rope.freq_base` is {rope_theta}; expected a finite number > 0"
        );
    }
    // The layer count is checked against the blocks the file holds, before anyone sizes
    // per-layer tables by it (a corrupt 2^31 would otherwise allocate gigabytes).
    let layers = g.get_usize(&key("block_count"))?;
    let present = g
        .tensors()
        .iter()
        .filter_map(|t| {
            t.name
                .strip_prefix("blk.")?
                .split('.')
                .next()?
                .parse::<usize>()
                .ok()
        })
        .max()
        .map_or(0, |m| m + 1);
    if layers != present {
        bail!(
            "{file}: metadata `llama.block_count` is {layers}, but the file holds tensors of \
             {present} blocks (blk.0 to blk.{})",
            present.saturating_sub(1)
        );
    }
    let vocab_size = match g.opt_u64(&key("vocab_size"))? {
        Some(v) => v as usize,
        None => match g.get("tokenizer.ggml.tokens").and_then(|v| v.as_array()) {
            Some(t) => t.len(),
            None => g
                .tensor_info("token_embd.weight")
                .and_then(|t| t.shape().first().copied())
                .ok_or_else(|| {
                    anyhow!(
                        "{file}: cannot tell the vocabulary size: no `llama.vocab_size`, no \
                         `tokenizer.ggml.tokens` and no `token_embd.weight`"
                    )
                })?,
        },
    };

    let mut c = Map::new();
    c.insert("architectures".into(), json!(["LlamaForCausalLM"]));
    c.insert("model_type".into(), json!("llama"));
    c.insert("hidden_size".into(), json!(hidden));
    c.insert(
        "intermediate_size".into(),
        json!(g.get_usize(&key("feed_forward_length"))?),
    );
    c.insert("num_hidden_layers".into(), json!(layers));
    c.insert("num_attention_heads".into(), json!(heads.n_head));
    c.insert("num_key_value_heads".into(), json!(heads.n_kv));
    c.insert("head_dim".into(), json!(head_dim));
    c.insert("rms_norm_eps".into(), json!(eps));
    c.insert("rope_theta".into(), json!(rope_theta));
    if let Some(scaling) = rope_scaling(g)? {
        c.insert("rope_scaling".into(), scaling);
    }
    c.insert(
        "max_position_embeddings".into(),
        json!(g.get_usize(&key("context_length"))?),
    );
    c.insert("vocab_size".into(), json!(vocab_size));
    c.insert(
        "tie_word_embeddings".into(),
        json!(!g.contains("output.weight")),
    );
    for (hf, gguf) in [
        ("bos_token_id", "tokenizer.ggml.bos_token_id"),
        ("eos_token_id", "tokenizer.ggml.eos_token_id"),
        ("pad_token_id", "tokenizer.ggml.padding_token_id"),
    ] {
        if let Some(id) = g.opt_u64(gguf)? {
            c.insert(hf.into(), json!(id));
        }
    }
    Ok(Value::Object(c))
}

/// `rope_scaling` from `llama.rope.scaling.*`: none for type `none` or no type.
fn rope_scaling(g: &Gguf) -> Result<Option<Value>> {
    let file = g.file_name();
    let Some(ty) = g.opt_str("llama.rope.scaling.type")? else {
        return Ok(None);
    };
    if ty == "none" {
        return Ok(None);
    }
    if ty != "linear" && ty != "yarn" {
        bail!(
            "{file}: `llama.rope.scaling.type` is {ty:?}; tokit understands \"none\", \"linear\" \
             and \"yarn\""
        );
    }
    let factor = g
        .opt_f64("llama.rope.scaling.factor")?
        .ok_or_else(|| anyhow!("{file}: `llama.rope.scaling.type` is {ty:?} but `llama.rope.scaling.factor` is missing"))?;
    let mut m = Map::new();
    m.insert("rope_type".into(), json!(ty));
    m.insert("factor".into(), json!(factor));
    if let Some(orig) = g.opt_u64("llama.rope.scaling.original_context_length")? {
        m.insert("original_max_position_embeddings".into(), json!(orig));
    }
    Ok(Some(Value::Object(m)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        let (n, p) = hf_name("blk.12.attn_q.weight").unwrap();
        assert_eq!(n, "model.layers.12.self_attn.q_proj.weight");
        assert!(matches!(p, Some(Permute::Q)));
        let (n, p) = hf_name("blk.0.attn_k.bias").unwrap();
        assert_eq!(n, "model.layers.0.self_attn.k_proj.bias");
        assert!(matches!(p, Some(Permute::K)));
        for (g, h) in [
            ("token_embd.weight", "model.embed_tokens.weight"),
            ("output_norm.weight", "model.norm.weight"),
            ("output.weight", "lm_head.weight"),
            (
                "blk.3.attn_v.weight",
                "model.layers.3.self_attn.v_proj.weight",
            ),
            (
                "blk.3.attn_output.weight",
                "model.layers.3.self_attn.o_proj.weight",
            ),
            (
                "blk.3.attn_norm.weight",
                "model.layers.3.input_layernorm.weight",
            ),
            (
                "blk.3.ffn_norm.weight",
                "model.layers.3.post_attention_layernorm.weight",
            ),
            (
                "blk.3.ffn_gate.weight",
                "model.layers.3.mlp.gate_proj.weight",
            ),
            ("blk.3.ffn_up.weight", "model.layers.3.mlp.up_proj.weight"),
            (
                "blk.3.ffn_down.weight",
                "model.layers.3.mlp.down_proj.weight",
            ),
        ] {
            let (n, p) = hf_name(g).unwrap();
            assert_eq!(n, h);
            assert!(p.is_none());
        }
        for g in [
            "rope_freqs.weight",
            "blk.x.attn_q.weight",
            "blk.0.attn_q.scale",
            "blk.0.foo.weight",
        ] {
            assert!(hf_name(g).is_none(), "{g}");
        }
    }

    /// llama.cpp's permutation, written from its definition: HF row h*D + s*D/2 + i goes to
    /// GGUF row h*D + 2*i + s.
    fn permute(hf: &[f32], rows: usize, cols: usize, n_head: usize) -> Vec<f32> {
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

    #[test]
    fn unpermute_inverts_permute() {
        // 2 heads of size 4, 3 columns: row r holds 10r, 10r+1, 10r+2
        let (rows, cols, heads) = (8, 3, 2);
        let hf: Vec<f32> = (0..rows)
            .flat_map(|r| (0..cols).map(move |c| (10 * r + c) as f32))
            .collect();
        let mut g = permute(&hf, rows, cols, heads);
        // GGUF row order within a head of 4: HF rows 0, 2, 1, 3
        let first_col: Vec<f32> = g.chunks(cols).map(|r| r[0]).collect();
        assert_eq!(
            first_col,
            vec![0.0, 20.0, 10.0, 30.0, 40.0, 60.0, 50.0, 70.0]
        );
        unpermute_rows(&mut g, &[rows, cols], heads).unwrap();
        assert_eq!(g, hf);
        // a bias (1-D)
        let b: Vec<f32> = (0..12).map(|v| v as f32).collect();
        let mut pb = permute(&b, 12, 1, 1);
        assert_eq!(pb, vec![0., 6., 1., 7., 2., 8., 3., 9., 4., 10., 5., 11.]);
        unpermute_rows(&mut pb, &[12], 1).unwrap();
        assert_eq!(pb, b);
        // heads that do not split evenly
        assert!(unpermute_rows(&mut [0.0; 6], &[6], 4).is_err());
        assert!(unpermute_rows(&mut [0.0; 6], &[6], 2).is_err()); // head size 3 is odd
    }
}
