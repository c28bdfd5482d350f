//! `config.json` parsing (tolerant JSON with special floats) and the typed accessors every
//! architecture uses, on the fields they read.

const FIELDS: &[&str] = &[
    "model_type",
    "hidden_size",
    "num_hidden_layers",
    "num_attention_heads",
    "num_key_value_heads",
    "intermediate_size",
    "vocab_size",
    "rms_norm_eps",
    "layer_norm_epsilon",
    "head_dim",
    "sliding_window",
    "max_position_embeddings",
    "time_step_limit",
    "n_layers",
    "d_model",
    "mask_token_id",
    "chunk_size",
];

fn main() {
    afl::fuzz!(|data: &[u8]| {
        let Ok(text) = std::str::from_utf8(data) else {
            return;
        };
        let Ok(c) = tokit_model::HfConfig::parse(text, "config.json") else {
            return;
        };
        let _ = c.model_type();
        let _ = c.architectures();
        let _ = c.rope_theta();
        let _ = c.rope_scaling();
        let _ = c.dtype();
        let _ = c.to_json();
        for f in FIELDS {
            let _ = c.opt_usize(f);
            let _ = c.opt_f64(f);
            let _ = c.opt_str(f);
            let _ = c.opt_bool(f);
            let _ = c.f64_array(f);
            let _ = c.usize_array(f);
        }
    });
}
