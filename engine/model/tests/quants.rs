//! tokit's GGUF dequantisers against an independent implementation: gguf-py's
//! `gguf.quants.dequantize`, on one committed tensor per supported type
//! (`tests/fixtures/quants.gguf`, written by `tools/gguf_quant_fixtures.py`). The values
//! must agree bit for bit.

use std::path::PathBuf;

use tokit_model::{GgmlType, Gguf};

#[test]
fn every_supported_type_matches_gguf_py_bit_for_bit() {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/quants.gguf");
    let g = Gguf::open(&path).unwrap_or_else(|e| panic!("{e:#}"));
    let mut checked = Vec::new();
    for info in g
        .tensors()
        .iter()
        .filter(|t| !t.name.ends_with(".expected"))
    {
        let (shape, got) = g.read_f32(&info.name).unwrap_or_else(|e| panic!("{e:#}"));
        let (want_shape, want) = g.read_f32(&format!("{}.expected", info.name)).unwrap();
        assert_eq!(shape, want_shape, "{}: shape", info.name);
        let differ = got
            .iter()
            .zip(&want)
            .position(|(a, b)| a.to_bits() != b.to_bits());
        if let Some(i) = differ {
            panic!(
                "{} ({}): element {i} is {} but gguf-py gives {}",
                info.name,
                info.ggml_type.name(),
                got[i],
                want[i]
            );
        }
        checked.push(info.ggml_type);
    }
    // Every type tokit reads, except F32 (the expected tensors themselves), is covered.
    for ty in tokit_model::gguf::quant::SUPPORTED
        .iter()
        .filter(|&&t| t != GgmlType::F32)
    {
        assert!(
            checked.contains(ty),
            "no fixture tensor of type {}",
            ty.name()
        );
    }
}
