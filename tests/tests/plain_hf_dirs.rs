//! The layout users really have: a Hugging Face model directory as `save_pretrained` of a
//! model writes it, `config.json` and `model.safetensors` and no tokenizer (and no
//! tokit-only `"tokenizer"` key). Every architecture loads it, runs on token ids with the
//! fixtures' parity, and refuses text with an error that says what to add.

use tokit_engine::LoadOptions;
use tokit_tests::*;

const FIXTURES: &[&str] = &[
    "transformer/gpt2",
    "transformer/llama_gqa_tied",
    "transformer/llama_old_layout",
    "transformer/llama_untied_llama3",
    "transformer/mistral_window",
    "transformer/qwen2",
    "mamba2/g1_chunk7_tied",
    "mamba2/g2_chunk8_untied",
    "llada/llada",
    "llada/llada_tied_bias",
];

#[test]
fn plain_directories_without_a_tokenizer_run_on_ids_with_parity() {
    let engine = engine();
    for name in FIXTURES {
        let dir = tempfile::tempdir().unwrap();
        let src = fixture(name);
        let mut config: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(src.join("config.json")).unwrap())
                .unwrap();
        config.as_object_mut().unwrap().remove("tokenizer");
        std::fs::write(dir.path().join("config.json"), config.to_string()).unwrap();
        std::fs::copy(
            src.join("model.safetensors"),
            dir.path().join("model.safetensors"),
        )
        .unwrap();

        let m = engine
            .load_model(dir.path().to_str().unwrap(), &LoadOptions::default())
            .unwrap_or_else(|e| panic!("{name}: {e:#}"));
        let r = reference(name);
        let got = &logits(&m, &r.tokens, &Default::default())[0];
        let d = max_diff(got.data(), &r.logits);
        assert!(d <= 1e-4, "{name}: max |Δlogit| {d}");
        let e = format!("{:#}", m.encode("In the beginning").unwrap_err());
        assert!(
            e.contains("tokenizer.json") && e.contains("token ids"),
            "{name}: {e}"
        );
    }
}
