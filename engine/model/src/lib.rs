//! Model files on disk: a Hugging Face directory (config.json, safetensors, tokenizer.json).
//!
//! - [`HfConfig`] reads `config.json` tolerantly (bare `Infinity`/`NaN` tokens and
//!   `{"__float__": ...}` objects are accepted) and offers typed accessors whose errors name
//!   the file, the field and what was expected, plus helpers that read both the older and the
//!   transformers-5 layouts of the RoPE fields.
//! - [`Weights`] memory-maps the safetensors files (single, sharded with an index, or all in
//!   the directory), validates their headers up front and reads tensors as f32 [`Tensor`]s.
//!   [`save_safetensors`] writes f32 tensors atomically; [`fingerprint`] hashes a model
//!   directory cheaply for provenance.
//! - [`Tokenizer`] wraps a Hugging Face `tokenizer.json`, or raw bytes for byte-level models.
//! - [`tensor_io`] reads tensors from `.npy`, `.safetensors` and `.csv` files and writes
//!   `.npy`/`.safetensors`, converting to f32 without silent loss.
//! - [`Gguf`] reads a single-file GGUF model (llama.cpp's format): metadata, tensors
//!   dequantised to f32 (by GGUF or, for Llama, Hugging Face names), a Hugging Face–style
//!   config ([`gguf_config`]) and the tokenizer ([`Tokenizer::from_gguf`]).
//!
//! [`Tensor`]: tokit_compute::Tensor

pub mod atomic;
pub mod config;
pub mod gguf;
pub mod read;
pub mod tensor_io;
pub mod tokenizer;
pub mod weights;

pub use config::HfConfig;
pub use gguf::{gguf_config, GgmlType, Gguf, MetaValue};
pub use tokenizer::Tokenizer;
pub use weights::{fingerprint, save_f32, save_safetensors, Dtype, Weights};
