//! safetensors reader: the header (length, JSON, every entry) and each (small) tensor.

fn main() {
    let dir = tokit_fuzz::scratch().join("st");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("config.json"), "{}").unwrap();
    afl::fuzz!(|data: &[u8]| {
        std::fs::write(dir.join("model.safetensors"), data).unwrap();
        let Ok(w) = tokit_model::Weights::open(&dir) else {
            return;
        };
        for name in w.names() {
            if w.shape(&name).is_some_and(|s| {
                s.iter()
                    .try_fold(1u64, |a, &d| a.checked_mul(d as u64))
                    .is_some_and(|n| n <= tokit_fuzz::MAX_ELEMENTS)
            }) {
                let _ = w.read_f32(&name);
            }
        }
    });
}
