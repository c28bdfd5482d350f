//! GGUF reader: header, metadata, tensor table, the derived Llama config, the embedded
//! tokenizer, and the dequantisation of every (small) tensor.

fn main() {
    let path = tokit_fuzz::scratch_file("model.gguf", b"");
    afl::fuzz!(|data: &[u8]| {
        std::fs::write(&path, data).unwrap();
        let Ok(g) = tokit_model::Gguf::open(&path) else {
            return;
        };
        let _ = tokit_model::gguf_config(&g);
        let _ = tokit_model::Tokenizer::from_gguf(&g);
        for name in g.names_hf() {
            let _ = g.shape_hf(&name);
        }
        for t in g.tensors() {
            if t.numel() <= tokit_fuzz::MAX_ELEMENTS {
                let _ = g.read_f32(&t.name);
            }
        }
    });
}
