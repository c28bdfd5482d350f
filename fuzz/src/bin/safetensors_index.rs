//! The sharded-checkpoint index (`model.safetensors.index.json`) beside two valid shards.

fn main() {
    let dir = tokit_fuzz::scratch().join("index");
    std::fs::create_dir_all(&dir).unwrap();
    for (i, name) in ["a", "b"].iter().enumerate() {
        let shard = dir.join(format!("model-0000{}-of-00002.safetensors", i + 1));
        tokit_model::save_f32(&shard, &[(name, &[2][..], &[1.0, 2.0][..])], None).unwrap();
    }
    afl::fuzz!(|data: &[u8]| {
        std::fs::write(dir.join("model.safetensors.index.json"), data).unwrap();
        if let Ok(w) = tokit_model::Weights::open(&dir) {
            for name in w.names() {
                let _ = w.read_f32(&name);
            }
        }
    });
}
