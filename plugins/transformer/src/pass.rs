//! [`Pass`]: the pass a family's forward pass runs in, its rows and its hook machinery.
//!
//! A family ([`crate::family::Decoder`]) writes `embed`, `block(i)`, `final_norm` and
//! `unembed`. It computes the rows `pass.positions()` (all of them, or only a suffix),
//! passes every activation through `pass.rows` / `pass.heads`, and its attention through
//! `pass.attention`. The [`PassKind`] decides what the hooks see and where keys and values
//! of earlier positions come from:
//!
//! - **Inline**: one variant from position 0; interventions apply where they happen.
//! - **Reference** (batched calls): the shared clean pass. It records this layer's
//!   activations and keys/values; clean variants of the call see its hooks.
//! - **Suffix** (batched calls): a variant whose first ablated position is `j` computes
//!   only rows `j..T`, with keys and values of rows `< j` from the reference. Its hooks see
//!   full `[T, ..]` tensors (the reference's rows `< j` joined to its own).
//! - **Cached** (`last_only` generation steps): rows after the prefix held in the model's
//!   KV cache, with keys and values from it; its hooks see the new rows only.
//! - **Stacked** (batched calls nobody hooks): several variants' rows stacked into one
//!   `[Σ rows, d]` matrix, so each weight matrix is read once per layer for all of them;
//!   attention runs per variant (a [`Group`]), against the reference's keys and values of
//!   the rows before its own. No hooks run in it.
//!
//! Hooks nobody listens to (`ForwardCall::hook_active`) are skipped outright: no host call,
//! no full-length tensor built, and attention runs fused unless the layer's score or
//! pattern hook is listened to.
//!
//! **Packed documents** (the `segments` forward option): an Inline pass over documents laid
//! one after another. [`Pass::positions`] restarts at 0 in each document, and attention
//! runs document by document (each query sees only keys of its own document, so the keys
//! of other documents are never computed against), which makes every row equal to running
//! its document alone. The score and pattern hooks see `[H, T, T]` block-diagonal tensors
//! (−inf and 0 outside the documents' blocks).
//!
//! Reusing a clean prefix is only valid when no intervention changes anything. The host
//! hands back the very same tensor handle when a hook leaves an activation alone, so a hook
//! that returns a different handle marks its variant *changed* (see `runner.rs` for what
//! happens then).

use std::collections::HashMap;
use tokit_sdk::{AttnMask, Error, ForwardCall, Result, Tensor};

/// Keys and values of every layer, `[Hkv, T, dh]` (keys after rotary embedding).
#[derive(Default)]
pub struct Kv {
    pub(crate) k: Vec<Tensor>,
    pub(crate) v: Vec<Tensor>,
}

/// One layer's activations of the Reference pass (cleared after each layer).
#[derive(Default)]
pub struct Record {
    acts: HashMap<String, Tensor>,
    k: Option<Tensor>,
    v: Option<Tensor>,
}

impl Record {
    pub(crate) fn clear(&mut self) {
        self.acts.clear();
        self.k = None;
        self.v = None;
    }
}

/// One variant's rows in a Stacked pass: positions `start..T`, key mask `keep`.
pub(crate) struct Group<'c> {
    pub(crate) start: usize,
    pub(crate) keep: Option<&'c [bool]>,
}

pub(crate) enum PassKind<'c> {
    Inline,
    Reference {
        mirrors: &'c [usize],
        record: &'c mut Record,
    },
    Suffix {
        reference: &'c Record,
    },
    Cached {
        k: &'c [Tensor],
        v: &'c [Tensor],
    },
    Stacked {
        /// The clean pass's keys and values of this layer (rows before a group's start).
        reference: Option<&'c Record>,
        groups: &'c [Group<'c>],
    },
}

/// Shape facts of one attention call (known from the config, so no tensor is read back).
pub struct Attn {
    pub heads: usize,
    pub kv_heads: usize,
    pub head_dim: usize,
    pub scale: f64,
    /// Sliding window (keys at most `window - 1` positions back), if any.
    pub window: Option<usize>,
    /// Queries see only earlier keys (decoders); `false` for bidirectional models (LLaDA).
    pub causal: bool,
}

/// The pass a family computes in: the rows to compute and the hook machinery.
pub struct Pass<'c, 'a> {
    call: &'c mut ForwardCall<'a>,
    kind: PassKind<'c>,
    variant: Option<usize>,
    changed: &'c mut [bool],
    start: usize,
    len: usize,
    keep: Option<&'c [bool]>,
    last_only: bool,
    /// Past `last_rows`: tensors hold the last position only.
    tail: bool,
    kv_out: Option<&'c mut Kv>,
    /// Lengths of the packed documents (empty: one document).
    segments: Vec<usize>,
}

impl Pass<'_, '_> {
    /// Positions of the rows being computed: absolute, or within their document when
    /// documents are packed.
    pub fn positions(&self) -> Vec<usize> {
        if !self.segments.is_empty() {
            return self.segments.iter().flat_map(|&n| 0..n).collect();
        }
        match &self.kind {
            PassKind::Stacked { groups, .. } => {
                groups.iter().flat_map(|g| g.start..self.len).collect()
            }
            _ => (self.start..self.len).collect(),
        }
    }

    /// Number of rows being computed.
    pub fn rows_len(&self) -> usize {
        match &self.kind {
            PassKind::Stacked { groups, .. } => groups.iter().map(|g| self.len - g.start).sum(),
            _ => self.len - self.start,
        }
    }

    /// Hook a `[n, ..]` activation (rows on axis 0).
    pub fn rows(&mut self, name: &str, t: Tensor) -> Result<Tensor> {
        self.hook(name, t, 0)
    }

    /// Hook a `[H, n, ..]` activation (rows on axis 1).
    pub fn heads(&mut self, name: &str, t: Tensor) -> Result<Tensor> {
        self.hook(name, t, 1)
    }

    /// With `last_only`, keep only the last row (the head then computes one row).
    pub fn last_rows(&mut self, x: Tensor) -> Result<Tensor> {
        if !self.last_only {
            return Ok(x);
        }
        self.tail = true;
        if let PassKind::Stacked { groups, .. } = &self.kind {
            // Each group's last row.
            let ends: Vec<usize> = groups
                .iter()
                .scan(0, |end, g| {
                    *end += self.len - g.start;
                    Some(*end - 1)
                })
                .collect();
            return x.index_select(0, &ends);
        }
        let n = self.rows_len();
        x.slice(0, n - 1, n)
    }

    /// Whether the host captures or intervenes at `name` in this call (`active_hooks`).
    pub fn active(&self, name: &str) -> bool {
        self.call.hook_active(name)
    }

    fn hook(&mut self, name: &str, t: Tensor, axis: isize) -> Result<Tensor> {
        if !self.active(name) {
            return Ok(t);
        }
        match &mut self.kind {
            PassKind::Inline => {
                let Some(v) = self.variant else { return Ok(t) };
                self.call.hook_tracked(v, name, t, &mut self.changed[v])
            }
            PassKind::Reference { mirrors, record } => {
                if !self.tail {
                    record.acts.insert(name.to_string(), t.clone());
                }
                for &m in mirrors.iter() {
                    if !self.changed[m] {
                        self.call
                            .hook_tracked(m, name, t.clone(), &mut self.changed[m])?;
                    }
                }
                Ok(t)
            }
            PassKind::Suffix { reference } => {
                let v = self
                    .variant
                    .ok_or_else(|| Error::msg("suffix pass without a variant"))?;
                if self.changed[v] {
                    return Ok(t);
                }
                let full = if self.tail || self.start == 0 {
                    t.clone()
                } else {
                    let r = reference.acts.get(name).ok_or_else(|| {
                        Error::msg(format!("transformer: no reference activation for `{name}`"))
                    })?;
                    Tensor::concat(&[&r.slice(axis, 0, self.start)?, &t], axis)?
                };
                self.call.hook_tracked(v, name, full, &mut self.changed[v])?;
                Ok(t)
            }
            PassKind::Cached { .. } => {
                let v = self
                    .variant
                    .ok_or_else(|| Error::msg("cached pass without a variant"))?;
                if !self.changed[v] {
                    self.call
                        .hook_tracked(v, name, t.clone(), &mut self.changed[v])?;
                }
                Ok(t)
            }
            PassKind::Stacked { .. } => Err(Error::msg(format!(
                "transformer: hook `{name}` is active in a stacked pass (stacking needs a call with no hooks)"
            ))),
        }
    }

    /// Hook new keys or values and return them for all positions `[Hkv, T, dh]`.
    fn kv(&mut self, layer: usize, name: &str, new: Tensor, is_k: bool) -> Result<Tensor> {
        let hooked = self.hook(name, new.clone(), 1)?;
        let prefix = |p: &Tensor, start: usize| -> Result<Tensor> {
            Tensor::concat(&[&p.slice(1, 0, start)?, &new], 1)
        };
        let full = match &mut self.kind {
            PassKind::Inline => hooked,
            PassKind::Reference { record, .. } => {
                if is_k {
                    record.k = Some(hooked.clone());
                } else {
                    record.v = Some(hooked.clone());
                }
                hooked
            }
            PassKind::Suffix { reference } => {
                if self.start == 0 {
                    hooked
                } else {
                    let p = if is_k { &reference.k } else { &reference.v };
                    prefix(
                        p.as_ref()
                            .ok_or_else(|| Error::msg("transformer: reference keys missing"))?,
                        self.start,
                    )?
                }
            }
            PassKind::Cached { k, v } => {
                let p = if is_k { &k[layer] } else { &v[layer] };
                prefix(p, self.start)?
            }
            PassKind::Stacked { .. } => {
                return Err(Error::msg("transformer: a stacked pass keeps no keys"))
            }
        };
        if let Some(out) = self.kv_out.as_deref_mut() {
            if is_k { &mut out.k } else { &mut out.v }.push(full.clone());
        }
        Ok(full)
    }

    /// Self-attention (causal unless `a.causal` is false) of layer `layer`: `q [H, n, dh]` at `positions()`, `k`, `v`
    /// `[Hkv, n, dh]` of the same rows (rotary embedding already applied). Returns `[H, n, dh]`.
    ///
    /// Hooks: `attn.hook_q` `[H, T, dh]`, `attn.hook_k` / `attn.hook_v` `[Hkv, T, dh]`,
    /// `attn.hook_scores` (scaled, masked entries −inf) and `attn.hook_pattern` `[H, T, T]`.
    /// When neither scores nor pattern is wanted the fused attention op runs instead.
    pub fn attention(
        &mut self,
        layer: usize,
        q: Tensor,
        k: Tensor,
        v: Tensor,
        a: &Attn,
    ) -> Result<Tensor> {
        if let PassKind::Stacked { reference, groups } = &self.kind {
            return stacked_attention(*reference, groups, self.len, q, k, v, a);
        }
        let name = |s: &str| format!("blocks.{layer}.attn.{s}");
        let q = self.heads(&name("hook_q"), q)?;
        let k = self.kv(layer, &name("hook_k"), k, true)?;
        let v = self.kv(layer, &name("hook_v"), v, false)?;
        if !self.segments.is_empty() {
            let scores = self.active(&name("hook_scores")) || self.active(&name("hook_pattern"));
            return self.packed_attention(layer, q, k, v, a, scores);
        }
        let mask = AttnMask {
            causal: a.causal,
            q_offset: self.start,
            key_keep: self.keep.map(<[bool]>::to_vec),
            window: a.window,
        };
        let (scores_name, pattern_name) = (name("hook_scores"), name("hook_pattern"));
        if !self.active(&scores_name) && !self.active(&pattern_name) {
            return Tensor::attention(&q, &k, &v, &mask, a.scale);
        }
        let scores = self.heads(
            &scores_name,
            Tensor::attention_scores(&q, &k, &mask, a.scale)?,
        )?;
        let pattern = self.heads(&pattern_name, scores.softmax(-1)?)?;
        // pattern [H, n, T] @ v [Hkv, T, dh]: heads sharing a kv head are adjacent, so view
        // the pattern as [Hkv, group * n, T].
        if a.heads == a.kv_heads {
            return pattern.matmul(&v);
        }
        let (n, group) = (self.rows_len() as isize, (a.heads / a.kv_heads) as isize);
        pattern
            .reshape(&[a.kv_heads as isize, group * n, self.len as isize])?
            .matmul(&v)?
            .reshape(&[a.heads as isize, n, a.head_dim as isize])
    }
}

impl Pass<'_, '_> {
    /// [`Pass::attention`] over packed documents (an Inline pass from position 0): each
    /// document's queries against its own keys only. With `scores` (a score or pattern
    /// hook listened to) the `[H, T, T]` scores are built block-diagonally, hooked, and
    /// the pattern multiplies the values; otherwise the fused op runs per document.
    fn packed_attention(
        &mut self,
        layer: usize,
        q: Tensor,
        k: Tensor,
        v: Tensor,
        a: &Attn,
        scores: bool,
    ) -> Result<Tensor> {
        if self.start != 0 || !matches!(self.kind, PassKind::Inline) {
            return Err(Error::msg(
                "transformer: packed documents run in one pass from position 0",
            ));
        }
        let ranges = tokit_sdk::segment_ranges(&self.segments);
        let t = self.len;
        let mask = |r: &std::ops::Range<usize>| AttnMask {
            causal: a.causal,
            q_offset: 0,
            key_keep: self.keep.map(|k| k[r.clone()].to_vec()),
            window: a.window,
        };
        let part = |x: &Tensor, r: &std::ops::Range<usize>| x.slice(1, r.start, r.end);
        if !scores {
            let outs = ranges
                .iter()
                .map(|r| {
                    Tensor::attention(
                        &part(&q, r)?,
                        &part(&k, r)?,
                        &part(&v, r)?,
                        &mask(r),
                        a.scale,
                    )
                })
                .collect::<Result<Vec<_>>>()?;
            return Tensor::concat(&outs.iter().collect::<Vec<_>>(), 1);
        }
        // Each document's rows [H, n, T]: −inf left and right of its own [H, n, n] scores.
        let rows = ranges
            .iter()
            .map(|r| {
                let own =
                    Tensor::attention_scores(&part(&q, r)?, &part(&k, r)?, &mask(r), a.scale)?;
                let n = r.len();
                let mut pieces = Vec::with_capacity(3);
                if r.start > 0 {
                    pieces.push(Tensor::full(&[a.heads, n, r.start], f32::NEG_INFINITY)?);
                }
                pieces.push(own);
                if r.end < t {
                    pieces.push(Tensor::full(&[a.heads, n, t - r.end], f32::NEG_INFINITY)?);
                }
                Tensor::concat(&pieces.iter().collect::<Vec<_>>(), 2)
            })
            .collect::<Result<Vec<_>>>()?;
        let name = |s: &str| format!("blocks.{layer}.attn.{s}");
        let scores = self.heads(
            &name("hook_scores"),
            Tensor::concat(&rows.iter().collect::<Vec<_>>(), 1)?,
        )?;
        let pattern = self.heads(&name("hook_pattern"), scores.softmax(-1)?)?;
        if a.heads == a.kv_heads {
            return pattern.matmul(&v);
        }
        let group = (a.heads / a.kv_heads) as isize;
        pattern
            .reshape(&[a.kv_heads as isize, group * t as isize, t as isize])?
            .matmul(&v)?
            .reshape(&[a.heads as isize, t as isize, a.head_dim as isize])
    }
}

/// Attention of a Stacked pass: `q [H, Σ n, dh]`, `k`, `v` `[Hkv, Σ n, dh]` hold the
/// groups' rows one after another; each group attends to the reference's keys before its
/// start and to its own. Returns `[H, Σ n, dh]`.
fn stacked_attention(
    reference: Option<&Record>,
    groups: &[Group],
    len: usize,
    q: Tensor,
    k: Tensor,
    v: Tensor,
    a: &Attn,
) -> Result<Tensor> {
    let (rk, rv) = reference.map_or((None, None), |r| (r.k.as_ref(), r.v.as_ref()));
    let mut out = Vec::with_capacity(groups.len());
    let mut off = 0;
    for g in groups {
        let n = len - g.start;
        let own = |t: &Tensor| t.slice(1, off, off + n);
        let full = |t: &Tensor, prefix: Option<&Tensor>| -> Result<Tensor> {
            if g.start == 0 {
                return own(t);
            }
            let p = prefix.ok_or_else(|| Error::msg("transformer: reference keys missing"))?;
            Tensor::concat(&[&p.slice(1, 0, g.start)?, &own(t)?], 1)
        };
        let mask = AttnMask {
            causal: a.causal,
            q_offset: g.start,
            key_keep: g.keep.map(<[bool]>::to_vec),
            window: a.window,
        };
        out.push(Tensor::attention(
            &own(&q)?,
            &full(&k, rk)?,
            &full(&v, rv)?,
            &mask,
            a.scale,
        )?);
        off += n;
    }
    Tensor::concat(&out.iter().collect::<Vec<_>>(), 1)
}

impl<'c, 'a> Pass<'c, 'a> {
    /// A pass over `len` positions, from position 0 with no key mask; see
    /// [`Pass::rows_from`] and [`Pass::collecting`].
    pub(crate) fn new(
        call: &'c mut ForwardCall<'a>,
        changed: &'c mut [bool],
        kind: PassKind<'c>,
        variant: Option<usize>,
        len: usize,
        last_only: bool,
    ) -> Pass<'c, 'a> {
        let segments = match call.packed() {
            true => call.segments().to_vec(),
            false => Vec::new(),
        };
        Pass {
            segments,
            call,
            kind,
            variant,
            changed,
            start: 0,
            len,
            keep: None,
            last_only,
            tail: false,
            kv_out: None,
        }
    }

    /// Compute rows `start..` with key mask `keep`.
    pub(crate) fn rows_from(mut self, start: usize, keep: Option<&'c [bool]>) -> Pass<'c, 'a> {
        self.start = start;
        self.keep = keep;
        self
    }

    /// Collect every layer's keys and values (for the KV cache).
    pub(crate) fn collecting(mut self, kv: &'c mut Kv) -> Pass<'c, 'a> {
        self.kv_out = Some(kv);
        self
    }
}
