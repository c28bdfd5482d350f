//! The tokenizer of a GGUF file, rebuilt as a Hugging Face `tokenizers::Tokenizer`.
//!
//! Only byte-level BPE (`tokenizer.ggml.model = "gpt2"`) is built: the vocabulary is
//! `tokenizer.ggml.tokens` (id = position), the merges `tokenizer.ggml.merges` ("a b", best
//! first), with a ByteLevel pre-tokenizer and decoder. What splits the text before BPE depends
//! on `tokenizer.ggml.pre`, the name llama.cpp gives the pre-tokenizer the model was trained
//! with; [`pre_tokenizer_for`] maps the known names to the Hugging Face pre-tokenizer that
//! does the same, following llama.cpp (`llama-vocab.cpp`) and transformers' GGUF converter
//! (`integrations/gguf/gguf_tokenizer_mapping.py`). An unknown name is an error rather than
//! a guess, since a wrong split gives other token ids without any other sign.
//!
//! Tokens marked as control (`token_type` 3) become special added tokens and user-defined ones
//! (4) plain added tokens, so both are matched whole in text, as in llama.cpp and transformers.
//! A token that is not spelled in the byte-level alphabet is respelled byte by byte (some
//! files store multi-space tokens as real spaces), as transformers does.

use std::collections::HashSet;

use anyhow::{anyhow, bail, Result};
use tokenizers::models::bpe::{Vocab, BPE};
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::digits::Digits;
use tokenizers::pre_tokenizers::sequence::Sequence;
use tokenizers::pre_tokenizers::split::{Split, SplitPattern};
use tokenizers::pre_tokenizers::PreTokenizerWrapper;
use tokenizers::{AddedToken, SplitDelimiterBehavior};

use super::Gguf;

/// `token_type` of a control token (`<|endoftext|>`).
const TOKEN_CONTROL: i64 = 3;
/// `token_type` of a user-defined token (`<think>`).
const TOKEN_USER_DEFINED: i64 = 4;

/// GPT-2's byte-to-character map: printable Latin-1 bytes map to themselves, the others to
/// U+0100 onwards in byte order.
pub fn bytes_to_unicode() -> [char; 256] {
    let mut map = ['\0'; 256];
    let mut next = 256u32;
    for b in 0..=255u8 {
        let printable = matches!(b, b'!'..=b'~' | 0xa1..=0xac | 0xae..=0xff);
        map[b as usize] = if printable {
            char::from(b)
        } else {
            let c = char::from_u32(next).expect("U+0100..U+0143 are characters");
            next += 1;
            c
        };
    }
    map
}

/// Llama 3's split (llama.cpp's `llama3` / `llama-bpe`).
const LLAMA3_SPLIT: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
/// Qwen2's split.
const QWEN2_SPLIT: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
/// Mistral's Tekken split.
const TEKKEN_SPLIT: &str = r"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+";
/// GPT-4o's split (also Llama 4's).
const GPT4O_SPLIT: &str = r"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+";

/// How a `tokenizer.ggml.pre` name splits text before BPE.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PreSplit {
    /// GPT-2's regex (the ByteLevel pre-tokenizer's own).
    Gpt2,
    /// Every digit on its own, then GPT-2's regex (StarCoder, SmolLM).
    DigitsThenGpt2,
    /// A regex of its own, then byte-level mapping without GPT-2's regex.
    Regex(&'static str),
}

/// The pre-tokenizer names [`pre_tokenizer_for`] knows, and how each splits.
pub const PRE_SPLITS: &[(&str, PreSplit)] = &[
    ("default", PreSplit::Gpt2),
    ("gpt2", PreSplit::Gpt2),
    ("gpt-2", PreSplit::Gpt2),
    ("mpt", PreSplit::Gpt2),
    ("olmo", PreSplit::Gpt2),
    ("jais", PreSplit::Gpt2),
    ("smollm", PreSplit::DigitsThenGpt2),
    ("starcoder", PreSplit::DigitsThenGpt2),
    ("refact", PreSplit::DigitsThenGpt2),
    ("command-r", PreSplit::DigitsThenGpt2),
    ("codeshell", PreSplit::DigitsThenGpt2),
    ("exaone", PreSplit::DigitsThenGpt2),
    ("minerva-7b", PreSplit::DigitsThenGpt2),
    ("llama3", PreSplit::Regex(LLAMA3_SPLIT)),
    ("llama-v3", PreSplit::Regex(LLAMA3_SPLIT)),
    ("llama-bpe", PreSplit::Regex(LLAMA3_SPLIT)),
    ("falcon3", PreSplit::Regex(LLAMA3_SPLIT)),
    ("falcon-h1", PreSplit::Regex(LLAMA3_SPLIT)),
    ("pixtral", PreSplit::Regex(LLAMA3_SPLIT)),
    ("dbrx", PreSplit::Regex(LLAMA3_SPLIT)),
    ("smaug-bpe", PreSplit::Regex(LLAMA3_SPLIT)),
    ("qwen2", PreSplit::Regex(QWEN2_SPLIT)),
    ("deepseek-r1-qwen", PreSplit::Regex(QWEN2_SPLIT)),
    ("megrez", PreSplit::Regex(QWEN2_SPLIT)),
    ("tekken", PreSplit::Regex(TEKKEN_SPLIT)),
    ("gpt-4o", PreSplit::Regex(GPT4O_SPLIT)),
    ("llama4", PreSplit::Regex(GPT4O_SPLIT)),
];

/// The Hugging Face pre-tokenizer for a `tokenizer.ggml.pre` name (`None` when unknown).
pub fn pre_tokenizer_for(pre: &str) -> Option<Result<PreTokenizerWrapper>> {
    let split = PRE_SPLITS.iter().find(|(n, _)| *n == pre)?.1;
    let byte_level = |use_regex: bool| ByteLevel::new(false, true, use_regex);
    Some(match split {
        PreSplit::Gpt2 => Ok(byte_level(true).into()),
        PreSplit::DigitsThenGpt2 => {
            Ok(Sequence::new(vec![Digits::new(true).into(), byte_level(true).into()]).into())
        }
        PreSplit::Regex(re) => Split::new(
            SplitPattern::Regex(re.into()),
            SplitDelimiterBehavior::Isolated,
            false,
        )
        .map(|s| Sequence::new(vec![s.into(), byte_level(false).into()]).into())
        .map_err(|e| anyhow!("the split regex of pre-tokenizer `{pre}` does not compile: {e}")),
    })
}

/// Builds the tokenizer described by a GGUF file's metadata (see the module docs).
pub fn build(g: &Gguf) -> Result<tokenizers::Tokenizer> {
    let file = g.file_name();
    let model = g.opt_str("tokenizer.ggml.model")?.ok_or_else(|| {
        anyhow!("{file}: no tokenizer in the file (metadata `tokenizer.ggml.model` is missing)")
    })?;
    if model != "gpt2" {
        let what = match model {
            "llama" => " (SentencePiece)",
            "bert" => " (WordPiece)",
            "t5" => " (Unigram)",
            _ => "",
        };
        bail!(
            "{file}: `tokenizer.ggml.model` is \"{model}\"{what}; tokit builds tokenizers from \
             GGUF metadata for byte-level BPE (\"gpt2\") only"
        );
    }
    let pre = g.opt_str("tokenizer.ggml.pre")?.unwrap_or("default");
    let pre_tokenizer = pre_tokenizer_for(pre).ok_or_else(|| {
        anyhow!(
            "{file}: `tokenizer.ggml.pre` is \"{pre}\", a pre-tokenizer tokit does not know \
             (known: {})",
            PRE_SPLITS
                .iter()
                .map(|(n, _)| *n)
                .collect::<Vec<_>>()
                .join(", ")
        )
    })??;

    let tokens = g.opt_str_array("tokenizer.ggml.tokens")?.ok_or_else(|| {
        anyhow!("{file}: metadata `tokenizer.ggml.tokens` (the vocabulary) is missing")
    })?;
    let merges = g.opt_str_array("tokenizer.ggml.merges")?.ok_or_else(|| {
        anyhow!("{file}: metadata `tokenizer.ggml.merges` is missing (a byte-level BPE needs it)")
    })?;
    let types = g.opt_i64_array("tokenizer.ggml.token_type")?;
    if let Some(t) = &types {
        if t.len() != tokens.len() {
            bail!(
                "{file}: `tokenizer.ggml.token_type` has {} entries but `tokenizer.ggml.tokens` \
                 has {}",
                t.len(),
                tokens.len()
            );
        }
    }

    let alphabet: HashSet<char> = bytes_to_unicode().into_iter().collect();
    let spell = bytes_to_unicode();
    let spelled: Vec<String> = tokens
        .iter()
        .map(|t| {
            if t.chars().all(|c| alphabet.contains(&c)) {
                (*t).to_owned()
            } else {
                t.bytes().map(|b| spell[b as usize]).collect()
            }
        })
        .collect();
    // A later duplicate wins, as in a Python dict built from the list.
    let vocab: Vocab = spelled
        .iter()
        .enumerate()
        .map(|(i, t)| (t.clone(), i as u32))
        .collect();
    let merges = merges
        .iter()
        .enumerate()
        .map(|(i, m)| match m.split(' ').collect::<Vec<_>>()[..] {
            [a, b] => Ok((a.to_owned(), b.to_owned())),
            _ => Err(anyhow!(
                "{file}: `tokenizer.ggml.merges` entry {i} is {m:?}, expected two tokens \
                 separated by one space"
            )),
        })
        .collect::<Result<Vec<_>>>()?;
    // Checked here rather than left to the BPE builder, which panics on a merge whose result
    // is longer than every token in the vocabulary.
    for (i, (a, b)) in merges.iter().enumerate() {
        for part in [a.as_str(), b.as_str(), &format!("{a}{b}")] {
            if !vocab.contains_key(part) {
                bail!(
                    "{file}: `tokenizer.ggml.merges` entry {i} ({a:?} + {b:?}) uses {part:?}, which \
                     is not in `tokenizer.ggml.tokens`"
                );
            }
        }
    }
    let bpe = BPE::builder()
        .vocab_and_merges(vocab, merges)
        .continuing_subword_prefix(String::new())
        .end_of_word_suffix(String::new())
        .build()
        .map_err(|e| anyhow!("{file}: the vocabulary and merges do not form a BPE model: {e}"))?;

    let mut tok = tokenizers::Tokenizer::new(bpe);
    tok.with_pre_tokenizer(Some(pre_tokenizer));
    tok.with_decoder(Some(ByteLevel::default()));

    if let Some(types) = &types {
        let control: Vec<AddedToken> = spelled
            .iter()
            .zip(&tokens)
            .zip(types)
            .filter(|((_, raw), &ty)| {
                ty == TOKEN_CONTROL && raw.chars().all(|c| alphabet.contains(&c))
            })
            .map(|((t, _), _)| AddedToken::from(t.clone(), true).normalized(false))
            .collect();
        tok.add_special_tokens(control)
            .map_err(|e| anyhow!("{file}: adding the control tokens: {e}"))?;
        let user: Vec<AddedToken> = spelled
            .iter()
            .zip(types)
            .filter(|(_, &ty)| ty == TOKEN_USER_DEFINED)
            .map(|(t, _)| AddedToken::from(t.clone(), false).normalized(false))
            .collect();
        tok.add_tokens(user)
            .map_err(|e| anyhow!("{file}: adding the user-defined tokens: {e}"))?;
    }
    Ok(tok)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_alphabet() {
        let m = bytes_to_unicode();
        assert_eq!(m[b'a' as usize], 'a');
        assert_eq!(m[b' ' as usize], 'Ġ'); // U+0120
        assert_eq!(m[b'\n' as usize], 'Ċ'); // U+010A
        assert_eq!(m[0], '\u{100}');
        assert_eq!(m[0xad], '\u{143}');
        let distinct: HashSet<char> = m.into_iter().collect();
        assert_eq!(distinct.len(), 256);
    }

    #[test]
    fn every_known_pre_tokenizer_builds() {
        for (name, _) in PRE_SPLITS {
            pre_tokenizer_for(name).unwrap().unwrap();
        }
        assert!(pre_tokenizer_for("no-such-pre").is_none());
    }
}
