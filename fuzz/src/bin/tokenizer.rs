//! `tokenizer.json` loading (the tokenizers library behind tokit's reader), then a round
//! trip of a fixed text through the tokenizer that loaded.

fn main() {
    let path = tokit_fuzz::scratch_file("tokenizer.json", b"");
    afl::fuzz!(|data: &[u8]| {
        std::fs::write(&path, data).unwrap();
        if let Ok(t) = tokit_model::Tokenizer::from_file(&path) {
            if let Ok(ids) = t.encode("In the beginning God created the heaven and the earth.") {
                let _ = t.decode(&ids);
            }
        }
    });
}
