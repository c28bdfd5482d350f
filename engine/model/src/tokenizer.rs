//! Tokenizers: a Hugging Face `tokenizer.json`, the metadata of a GGUF file, or raw bytes.
//!
//! [`Tokenizer::load`] reads `tokenizer.json` from the model directory when it exists. A model
//! that works on raw bytes instead says so in its config with `"tokenizer": "bytes"`; its
//! token ids are the byte values (a vocabulary of 256).
//!
//! Encoding never adds special tokens (BOS/EOS): callers that want them add them explicitly,
//! so that what is measured is exactly the text given.

use std::path::Path;

use anyhow::{anyhow, bail, Result};

use crate::config::HfConfig;

/// The file a Hugging Face tokenizer is read from.
pub const TOKENIZER_FILE: &str = "tokenizer.json";

/// A model's tokenizer.
#[derive(Debug, Clone)]
pub enum Tokenizer {
    /// A Hugging Face tokenizer read from `tokenizer.json`.
    Hf(Box<tokenizers::Tokenizer>),
    /// Raw bytes: token id = byte value, vocabulary 256.
    Bytes,
}

impl Tokenizer {
    /// Loads the tokenizer of a model directory: `tokenizer.json` if present, else raw bytes
    /// if the config says `"tokenizer": "bytes"`, else an error.
    pub fn load(dir: impl AsRef<Path>, config: &HfConfig) -> Result<Tokenizer> {
        let dir = dir.as_ref();
        let file = dir.join(TOKENIZER_FILE);
        if file.is_file() {
            return Tokenizer::from_file(&file);
        }
        match config.opt_str("tokenizer")? {
            Some("bytes") => Ok(Tokenizer::Bytes),
            Some(other) => bail!(
                "{}: field `tokenizer` is {:?}, but the only tokenizer that can be named there \
                 is \"bytes\" (otherwise provide {} in {})",
                config.path().display(),
                other,
                TOKENIZER_FILE,
                dir.display()
            ),
            None => bail!(
                "model directory {}: no {} (and config.json does not say \"tokenizer\": \
                 \"bytes\")",
                dir.display(),
                TOKENIZER_FILE
            ),
        }
    }

    /// Reads a Hugging Face `tokenizer.json`.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Tokenizer> {
        let path = path.as_ref();
        let bytes = crate::read::read_bounded(path, "tokenizer", crate::read::TOKENIZER_LIMIT)?;
        if let Err(e) = serde_json::from_slice::<serde::de::IgnoredAny>(&bytes) {
            bail!("{}: not valid JSON ({e})", path.display());
        }
        // The tokenizers library panics on some malformed files (an `expect` in its decoder
        // deserialiser, found by fuzzing): that is an error about the file, not a crash.
        let tok = catch_quietly(|| tokenizers::Tokenizer::from_bytes(&bytes))
            .map_err(|p| anyhow!("the tokenizers library panicked: {p}"))
            .and_then(|r| r.map_err(|e| anyhow!("{e}")))
            .map_err(|e| {
                anyhow!(
                    "{}: not a tokenizer this version of the tokenizers library can read: {e}",
                    path.display()
                )
            })?;
        Ok(Tokenizer::Hf(Box::new(tok)))
    }

    /// Builds the tokenizer stored in a GGUF file's metadata (byte-level BPE; see
    /// [`crate::gguf::tokenizer`]).
    pub fn from_gguf(gguf: &crate::gguf::Gguf) -> Result<Tokenizer> {
        Ok(Tokenizer::Hf(Box::new(crate::gguf::tokenizer::build(
            gguf,
        )?)))
    }

    /// Whether this is the raw-bytes tokenizer.
    pub fn is_bytes(&self) -> bool {
        matches!(self, Tokenizer::Bytes)
    }

    /// Encodes text into token ids, adding no special tokens.
    pub fn encode(&self, text: &str) -> Result<Vec<u32>> {
        match self {
            Tokenizer::Hf(tok) => {
                let enc = tok
                    .encode(text, false)
                    .map_err(|e| anyhow!("tokenizing {} bytes of text: {e}", text.len()))?;
                Ok(enc.get_ids().to_vec())
            }
            Tokenizer::Bytes => Ok(text.bytes().map(u32::from).collect()),
        }
    }

    /// Decodes token ids back into text (special tokens kept). Raw bytes that are not valid
    /// UTF-8 decode lossily.
    pub fn decode(&self, ids: &[u32]) -> Result<String> {
        match self {
            Tokenizer::Hf(tok) => tok
                .decode(ids, false)
                .map_err(|e| anyhow!("decoding {} tokens: {e}", ids.len())),
            Tokenizer::Bytes => {
                let bytes = ids
                    .iter()
                    .map(|&id| {
                        u8::try_from(id).map_err(|_| {
                            anyhow!("token id {id} is not a byte (the bytes tokenizer has 256)")
                        })
                    })
                    .collect::<Result<Vec<u8>>>()?;
                Ok(String::from_utf8_lossy(&bytes).into_owned())
            }
        }
    }

    /// The vocabulary entry of one token id: the Hugging Face token string, or for raw bytes
    /// the character itself when it is printable ASCII and an escape such as `\x0a` otherwise
    /// (a backslash is written `\\`).
    pub fn token_str(&self, id: u32) -> Option<String> {
        match self {
            Tokenizer::Hf(tok) => tok.id_to_token(id),
            Tokenizer::Bytes => {
                let b = u8::try_from(id).ok()?;
                Some(match b {
                    b'\\' => "\\\\".to_owned(),
                    0x20..=0x7e => char::from(b).to_string(),
                    _ => format!("\\x{b:02x}"),
                })
            }
        }
    }

    /// The id of a vocabulary entry (Hugging Face tokenizers only; for bytes, a one-character
    /// printable ASCII token).
    pub fn token_id(&self, token: &str) -> Option<u32> {
        match self {
            Tokenizer::Hf(tok) => tok.token_to_id(token),
            Tokenizer::Bytes => match token.as_bytes() {
                [b] => Some(u32::from(*b)),
                _ => None,
            },
        }
    }

    /// The number of ids the tokenizer can produce: one past the largest id in the
    /// vocabulary, added tokens included (usually the vocabulary's size). 256 for bytes.
    /// For Hugging Face tokenizers this walks the whole vocabulary; keep the result rather
    /// than calling it in a loop.
    pub fn vocab_size(&self) -> usize {
        match self {
            Tokenizer::Hf(tok) => {
                let max = tok.get_vocab(true).into_values().max();
                let by_id = max.map_or(0, |m| m as usize + 1);
                by_id.max(tok.get_vocab_size(true))
            }
            Tokenizer::Bytes => 256,
        }
    }

    /// Checks that every id the tokenizer can produce has a row in the embedding.
    pub fn check_vocab(&self, embedding_rows: usize) -> Result<()> {
        let n = self.vocab_size();
        if n > embedding_rows {
            let what = match self {
                Tokenizer::Hf(_) => TOKENIZER_FILE,
                Tokenizer::Bytes => "the bytes tokenizer",
            };
            bail!("{what} has {n} tokens but the embedding has {embedding_rows} rows");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A tiny WordLevel tokenizer with a whitespace pre-tokenizer and one added token.
    const WORDLEVEL: &str = r#"{
      "version": "1.0",
      "truncation": null,
      "padding": null,
      "added_tokens": [
        {"id": 5, "content": "<eos>", "single_word": false, "lstrip": false,
         "rstrip": false, "normalized": false, "special": true}
      ],
      "normalizer": null,
      "pre_tokenizer": {"type": "WhitespaceSplit"},
      "post_processor": null,
      "decoder": null,
      "model": {
        "type": "WordLevel",
        "vocab": {"<unk>": 0, "hello": 1, "world": 2, "the": 3, "cat": 4},
        "unk_token": "<unk>"
      }
    }"#;

    /// A tiny byte-level BPE (GPT-2 style): `Ġ` is the byte-level form of a space.
    const BPE: &str = r#"{
      "version": "1.0",
      "added_tokens": [],
      "normalizer": null,
      "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true,
                        "use_regex": true},
      "post_processor": null,
      "decoder": {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true,
                  "use_regex": true},
      "model": {
        "type": "BPE", "dropout": null, "unk_token": null, "continuing_subword_prefix": null,
        "end_of_word_suffix": null, "fuse_unk": false, "byte_fallback": false,
        "vocab": {"h": 0, "e": 1, "l": 2, "o": 3, "Ġ": 4, "w": 5, "r": 6, "d": 7,
                  "he": 8, "ll": 9, "hell": 10, "Ġw": 11},
        "merges": ["h e", "l l", "he ll", "Ġ w"]
      }
    }"#;

    fn cfg(text: &str) -> HfConfig {
        HfConfig::parse(text, "/m/config.json").unwrap()
    }

    #[test]
    fn hf_wordlevel() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(TOKENIZER_FILE), WORDLEVEL).unwrap();
        let tok = Tokenizer::load(dir.path(), &cfg("{}")).unwrap();
        assert!(!tok.is_bytes());
        assert_eq!(tok.encode("hello the cat").unwrap(), vec![1, 3, 4]);
        assert_eq!(tok.encode("hello dog").unwrap(), vec![1, 0]);
        assert_eq!(tok.encode("").unwrap(), Vec::<u32>::new());
        assert_eq!(tok.encode("cat <eos>").unwrap(), vec![4, 5]);
        assert_eq!(tok.decode(&[1, 2]).unwrap(), "hello world");
        assert_eq!(tok.token_str(2).as_deref(), Some("world"));
        assert_eq!(tok.token_str(5).as_deref(), Some("<eos>"));
        assert_eq!(tok.token_str(99), None);
        assert_eq!(tok.token_id("cat"), Some(4));
        assert_eq!(tok.vocab_size(), 6);
        tok.check_vocab(6).unwrap();
        tok.check_vocab(8).unwrap();
        let e = tok.check_vocab(5).unwrap_err().to_string();
        assert_eq!(
            e,
            "tokenizer.json has 6 tokens but the embedding has 5 rows"
        );
    }

    #[test]
    fn hf_byte_level_bpe() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(TOKENIZER_FILE), BPE).unwrap();
        let tok = Tokenizer::load(dir.path(), &cfg("{}")).unwrap();
        let ids = tok.encode("hello world").unwrap();
        assert_eq!(ids, vec![10, 3, 11, 3, 6, 2, 7]);
        assert_eq!(tok.decode(&ids).unwrap(), "hello world");
        assert_eq!(tok.token_str(11).as_deref(), Some("Ġw"));
        assert_eq!(tok.vocab_size(), 12);
    }

    #[test]
    fn bytes_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let tok = Tokenizer::load(dir.path(), &cfg(r#"{"tokenizer": "bytes"}"#)).unwrap();
        assert!(tok.is_bytes());
        let text = "héllo\nworld \u{1F600}";
        let ids = tok.encode(text).unwrap();
        assert_eq!(ids.len(), text.len());
        assert_eq!(ids[0], u32::from(b'h'));
        assert_eq!(tok.decode(&ids).unwrap(), text);
        assert_eq!(tok.decode(&[0xff, b'a' as u32]).unwrap(), "\u{FFFD}a");
        assert!(tok.decode(&[256]).is_err());
        assert_eq!(tok.token_str(10).as_deref(), Some("\\x0a"));
        assert_eq!(tok.token_str(0xe9).as_deref(), Some("\\xe9"));
        assert_eq!(tok.token_str(u32::from(b'a')).as_deref(), Some("a"));
        assert_eq!(tok.token_str(u32::from(b'\\')).as_deref(), Some("\\\\"));
        assert_eq!(tok.token_str(256), None);
        assert_eq!(tok.vocab_size(), 256);
        tok.check_vocab(256).unwrap();
        assert!(tok.check_vocab(255).is_err());
    }

    #[test]
    fn missing_or_bad_tokenizer() {
        let dir = tempfile::tempdir().unwrap();
        let e = Tokenizer::load(dir.path(), &cfg("{}"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("no tokenizer.json"), "{e}");
        let e = Tokenizer::load(dir.path(), &cfg(r#"{"tokenizer": "sentencepiece"}"#))
            .unwrap_err()
            .to_string();
        assert!(e.contains("\"sentencepiece\""), "{e}");
        let e = Tokenizer::load(dir.path(), &cfg(r#"{"tokenizer": 3}"#))
            .unwrap_err()
            .to_string();
        assert!(e.contains("`tokenizer`"), "{e}");
        std::fs::write(dir.path().join(TOKENIZER_FILE), "{\"model\": 1}").unwrap();
        let e = Tokenizer::load(dir.path(), &cfg("{}"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("tokenizer.json"), "{e}");
    }
}

thread_local! {
    /// Set while [`catch_quietly`] runs on this thread: its panics are errors, not news.
    static QUIET: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Runs `f`, turning a panic into `Err(message)` without printing it: the panic hook that
/// is installed once stays silent on a thread inside this call and defers to the previous
/// hook everywhere else.
fn catch_quietly<T>(f: impl FnOnce() -> T) -> std::result::Result<T, String> {
    static HOOK: std::sync::Once = std::sync::Once::new();
    HOOK.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if !QUIET.with(|q| q.get()) {
                previous(info);
            }
        }));
    });
    QUIET.with(|q| q.set(true));
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
    QUIET.with(|q| q.set(false));
    r.map_err(|p| {
        p.downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| p.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "unknown panic".into())
    })
}
