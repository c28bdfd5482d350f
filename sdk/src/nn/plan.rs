//! Variants and generation steps, as every architecture reads them.
//!
//! A forward call holds variants (position ablations, see [`Ablation`]). [`plan_variants`]
//! turns each into a [`Plan`]: the tokens it reads, the positions whose input it removes,
//! and its first position that differs from the clean sequence. In a causal model the rows
//! before that position are the clean pass's, which is what lets a model compute the clean
//! prefix once for all variants ([`Plan::splice`]). [`StepCache`] is the memory a model
//! keeps between generation steps (`last_only` calls that extend the previous one).

use crate::arch::{Ablation, ForwardCall, ModelInfo};
use crate::error::{Error, Result};
use crate::tensor::Tensor;

/// What one variant computes.
#[derive(Clone, Debug, PartialEq)]
pub struct Plan {
    /// The tokens it reads (`replace` and `mask_token` substitute the ablated ones).
    pub seq: Vec<u32>,
    /// `false` at positions whose input is removed (`attention`, `zero_input`, `exact`);
    /// `None` when none is.
    pub keep: Option<Vec<bool>>,
    /// Its first position that differs from the clean sequence (`T` when it is clean).
    pub first: usize,
}

impl Plan {
    /// No position differs from the clean sequence.
    pub fn is_clean(&self) -> bool {
        self.first == self.seq.len()
    }

    /// Positions whose input is removed.
    pub fn removed(&self) -> Vec<usize> {
        match &self.keep {
            Some(k) => (0..k.len()).filter(|&t| !k[t]).collect(),
            None => vec![],
        }
    }

    /// `[n, 1]` column of 1 (kept) and 0 (removed) for rows `start..start + n`, or `None`
    /// when no input is removed.
    pub fn keep_column(&self, start: usize, n: usize) -> Result<Option<Tensor>> {
        let Some(keep) = &self.keep else {
            return Ok(None);
        };
        let col: Vec<f32> = keep[start..start + n]
            .iter()
            .map(|&k| if k { 1.0 } else { 0.0 })
            .collect();
        Tensor::from_slice(&col, &[n, 1]).map(Some)
    }

    /// The variant's logits: the clean pass's `reference` rows before [`Plan::first`]
    /// joined to `own`, the rows it computed from there (only the last row with
    /// `last_only`, which is then `own` as it is).
    pub fn splice(&self, reference: &Tensor, own: Tensor, last_only: bool) -> Result<Tensor> {
        if last_only || self.first == 0 {
            return Ok(own);
        }
        Tensor::concat(&[&reference.slice(0, 0, self.first)?, &own], 0)
    }
}

/// Every variant of `call` as a [`Plan`], checked against `info`: positions within the
/// sequence, a method the model offers, `replace_with` inside the vocabulary. The
/// `mask_token` method reads the mask token from `info.extra["mask_token_id"]`.
pub fn plan_variants(call: &ForwardCall, info: &ModelInfo) -> Result<Vec<Plan>> {
    let arch = &info.arch;
    let tokens = call.tokens();
    let len = tokens.len();
    if len == 0 {
        return Err(Error::msg(format!(
            "{arch}: forward needs at least one token"
        )));
    }
    call.variants()
        .iter()
        .map(|v| {
            if v.is_clean() {
                return Ok(Plan {
                    seq: tokens.to_vec(),
                    keep: None,
                    first: len,
                });
            }
            if let Some(&j) = v.ablate.iter().find(|&&j| j >= len) {
                return Err(Error::msg(format!(
                    "{arch}: ablated position {j} is beyond the {len} tokens"
                )));
            }
            let first = v.ablate.iter().copied().min().unwrap_or(len);
            let substitute = |token: u32| {
                let mut seq = tokens.to_vec();
                for &j in &v.ablate {
                    seq[j] = token;
                }
                Plan {
                    seq,
                    keep: None,
                    first,
                }
            };
            match v.ablation(info)? {
                Ablation::Attention | Ablation::ZeroInput | Ablation::Exact => {
                    let mut keep = vec![true; len];
                    for &j in &v.ablate {
                        keep[j] = false;
                    }
                    Ok(Plan {
                        seq: tokens.to_vec(),
                        keep: Some(keep),
                        first,
                    })
                }
                Ablation::Replace => {
                    let Some(r) = v.replace_with else {
                        return Err(Error::msg(format!(
                            "{arch}: ablation method `replace` needs `replace_with` (a token id)"
                        )));
                    };
                    if r as usize >= info.vocab_size {
                        return Err(Error::msg(format!(
                            "{arch}: replace_with token {r} is outside the vocabulary ({} tokens)",
                            info.vocab_size
                        )));
                    }
                    Ok(substitute(r))
                }
                Ablation::MaskToken => {
                    let Some(mask) = info.extra["mask_token_id"].as_u64() else {
                        return Err(Error::msg(format!(
                            "{arch}: ablation method `mask_token` needs a model with a mask token"
                        )));
                    };
                    Ok(substitute(mask as u32))
                }
            }
        })
        .collect()
}

/// Whether `call` is a generation step: `last_only` with one clean variant.
pub fn is_step(call: &ForwardCall, plans: &[Plan]) -> bool {
    call.last_only() && plans.len() == 1 && plans[0].is_clean()
}

/// What a model keeps between generation steps: the tokens of the last step and its
/// memory after them (keys and values, or recurrent states).
pub struct StepCache<S> {
    pub tokens: Vec<u32>,
    pub state: S,
}

impl<S> StepCache<S> {
    /// How many leading tokens `tokens` shares with the cached ones.
    pub fn shared_prefix(&self, tokens: &[u32]) -> usize {
        self.tokens
            .iter()
            .zip(tokens)
            .take_while(|(a, b)| a == b)
            .count()
    }

    /// Whether `tokens` continues the cached tokens with at least one more.
    pub fn extended_by(&self, tokens: &[u32]) -> bool {
        self.tokens.len() < tokens.len() && tokens.starts_with(&self.tokens)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn removed_positions_and_cleanliness() {
        let p = Plan {
            seq: vec![5, 6, 7, 8],
            keep: Some(vec![true, false, true, false]),
            first: 1,
        };
        assert_eq!(p.removed(), [1, 3]);
        assert!(!p.is_clean());
        let clean = Plan {
            seq: vec![5, 6],
            keep: None,
            first: 2,
        };
        assert!(clean.is_clean());
        assert!(clean.removed().is_empty());
    }

    #[test]
    fn step_cache_prefixes() {
        let c = StepCache {
            tokens: vec![1, 2, 3],
            state: (),
        };
        assert_eq!(c.shared_prefix(&[1, 2, 9, 9]), 2);
        assert_eq!(c.shared_prefix(&[1, 2]), 2);
        assert_eq!(c.shared_prefix(&[4]), 0);
        assert!(c.extended_by(&[1, 2, 3, 4]));
        assert!(!c.extended_by(&[1, 2, 3]));
        assert!(!c.extended_by(&[1, 2, 4, 4]));
    }

    #[test]
    fn ablation_names_are_the_wire_spelling() {
        for a in Ablation::ALL {
            let json = serde_json::to_string(&a).unwrap();
            assert_eq!(json, format!("\"{}\"", a.as_str()));
            assert_eq!(serde_json::from_str::<Ablation>(&json).unwrap(), a);
            assert_eq!(Ablation::parse(a.as_str()), Some(a));
        }
        assert_eq!(Ablation::parse("zero_input"), Some(Ablation::ZeroInput));
        assert_eq!(Ablation::parse("mask_token"), Some(Ablation::MaskToken));
        assert_eq!(Ablation::parse("none"), None);
        let info = ModelInfo::default().with_ablations(&[Ablation::MaskToken, Ablation::Replace]);
        assert_eq!(info.ablation_methods, ["mask_token", "replace"]);
        assert_eq!(info.default_ablation, "mask_token");
    }
}
