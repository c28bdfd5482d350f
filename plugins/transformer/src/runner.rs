//! The forward driver every family shares: variants (position ablation), reuse of the
//! clean prefix across them, and the KV cache for generation steps.
//!
//! - One variant: an Inline pass (see [`crate::pass`]).
//! - Several: one Reference pass (the clean sequence) and, layer by layer, a Suffix pass
//!   for each variant from its first ablated position `j`; its logits at positions `< j`
//!   are the reference's, copied. Clean variants take the reference's outputs.
//! - `last_only` with one clean variant: a Cached pass over the positions after the longest
//!   prefix shared with the previous call's tokens; the cache then holds this call's keys
//!   and values.
//!
//! - A bidirectional model (`ModelInfo::causal` false, LLaDA): every variant runs from
//!   position 0, since a change at any position moves every position's logits (no prefix
//!   to share, no KV cache).
//! - Several variants and no hook listened to: the variants' rows (suffixes, or whole
//!   sequences when there is no prefix to share) are stacked into one Stacked pass per
//!   layer, so the linear layers read each weight matrix once for all variants rather than
//!   once per variant (at small sizes weight reads dominate); attention runs per variant.
//!
//! - Packed documents (`ForwardCall::packed`): every variant runs Inline from position 0
//!   (a clean prefix is shared within one document only, and the KV cache holds one
//!   sequence, so neither applies); `last_only` then returns the last document's last row.
//!
//! A variant that an intervention changed (a hook returned a different tensor) during a
//! Reference, Suffix or Cached pass is recomputed from scratch in an Inline pass, where
//! interventions take effect; its hooks run again and captures are overwritten with the
//! full-length values.

use crate::family::Decoder;
use crate::pass::{Group, Kv, Pass, PassKind, Record};
use serde_json::Value;
use tokit_sdk::nn::{
    block_hook, is_step, plan_variants, Plan, StepCache, HOOK_LENS_LOGITS, HOOK_LOGITS, LN_FINAL,
};
use tokit_sdk::{ForwardCall, ModelInfo, Result, Tensor};

/// The keys and values of the last clean sequence, for generation (`last_only`).
pub type KvCache = StepCache<Kv>;

/// Everything a pass needs besides its kind.
struct Shared {
    len: usize,
    last_only: bool,
}

impl Shared {
    fn pass<'c, 'a>(
        &self,
        call: &'c mut ForwardCall<'a>,
        changed: &'c mut [bool],
        kind: PassKind<'c>,
        variant: Option<usize>,
    ) -> Pass<'c, 'a> {
        Pass::new(call, changed, kind, variant, self.len, self.last_only)
    }
}

/// The logit lens of layer `i` (`blocks.{i}.hook_lens_logits`, final norm and unembedding
/// of its residual stream), computed only when the host captures it. Capture only: the
/// forward continues from the residual stream, so an intervention here changes nothing.
fn lens(model: &dyn Decoder, i: usize, x: &Tensor, pass: &mut Pass) -> Result<()> {
    let name = block_hook(i, HOOK_LENS_LOGITS);
    if pass.active(&name) {
        pass.rows(&name, model.unembed(&model.final_norm(x)?)?)?;
    }
    Ok(())
}

/// The final norm (hooked as `ln_final.hook_normalized`) and the unembedding.
fn head(model: &dyn Decoder, x: Tensor, pass: &mut Pass) -> Result<Tensor> {
    let h = pass.rows(LN_FINAL, model.final_norm(&x)?)?;
    model.unembed(&h)
}

/// Run `model` over `pass`'s rows of `tokens` (the tokens at `pass.positions()`).
fn run(model: &dyn Decoder, pass: &mut Pass, tokens: &[u32]) -> Result<Tensor> {
    let mut x = model.embed(pass, tokens)?;
    for i in 0..model.n_layers() {
        tokit_sdk::check_cancelled()?;
        x = model.block(i, x, pass)?;
        lens(model, i, &x, pass)?;
    }
    let x = pass.last_rows(x)?;
    let logits = head(model, x, pass)?;
    pass.rows(HOOK_LOGITS, logits)
}

/// Compute and emit every variant of `call`.
pub fn forward(
    model: &dyn Decoder,
    call: &mut ForwardCall,
    info: &ModelInfo,
    cache: &mut Option<KvCache>,
) -> Result<()> {
    let len = call.tokens().len();
    let plans = plan_variants(call, info)?;
    let shared = Shared {
        len,
        last_only: call.last_only(),
    };
    let n = plans.len();
    let mut changed = vec![false; n];

    if info.causal && is_step(call, &plans) && !call.packed() {
        return cached(model, call, &plans[0], &shared, cache);
    }
    let clean = plans.iter().any(|p| p.first == len);
    let reuse = plans.iter().any(|p| p.first > 0 && p.first < len);
    let share = info.causal && (clean || reuse);
    if n > 1 && hookless(call) && !call.packed() {
        return stacked(model, call, &plans, &shared, share);
    }
    if n == 1 || !share || call.packed() {
        for (v, p) in plans.iter().enumerate() {
            let logits = {
                let mut c = shared
                    .pass(call, &mut changed, PassKind::Inline, Some(v))
                    .rows_from(0, p.keep.as_deref());
                run(model, &mut c, &p.seq)?
            };
            call.emit(v, "logits", logits);
        }
        return Ok(());
    }
    batched(model, call, &plans, &shared, &mut changed)
}

/// Whether the host listens to no hook in this call (it lists none).
fn hookless(call: &ForwardCall) -> bool {
    call.option("active_hooks")
        .and_then(Value::as_array)
        .is_some_and(|l| l.is_empty())
}

/// Several variants and no hooks: with `share`, the clean pass once and every variant's
/// suffix stacked on top of it; without, every variant from position 0, stacked.
fn stacked(
    model: &dyn Decoder,
    call: &mut ForwardCall,
    plans: &[Plan],
    s: &Shared,
    share: bool,
) -> Result<()> {
    let len = s.len;
    let tokens = call.tokens().to_vec();
    let first = |p: &Plan| if share { p.first } else { 0 };
    let (mirrors, rows): (Vec<usize>, Vec<usize>) =
        (0..plans.len()).partition(|&v| first(&plans[v]) == len);
    let groups: Vec<Group> = rows
        .iter()
        .map(|&v| Group {
            start: first(&plans[v]),
            keep: plans[v].keep.as_deref(),
        })
        .collect();
    let seq: Vec<u32> = rows
        .iter()
        .flat_map(|&v| plans[v].seq[first(&plans[v])..].iter().copied())
        .collect();
    let mut changed = vec![false; plans.len()];
    let mut record = Record::default();
    macro_rules! reference {
        () => {
            s.pass(
                call,
                &mut changed,
                PassKind::Reference {
                    mirrors: &mirrors,
                    record: &mut record,
                },
                None,
            )
        };
    }
    macro_rules! stack {
        () => {
            s.pass(
                call,
                &mut changed,
                PassKind::Stacked {
                    reference: Some(&record),
                    groups: &groups,
                },
                None,
            )
        };
    }

    let mut xr = match share {
        true => Some(model.embed(&mut reference!(), &tokens)?),
        false => None,
    };
    let mut xs = match groups.is_empty() {
        true => None,
        false => Some(model.embed(&mut stack!(), &seq)?),
    };
    for i in 0..model.n_layers() {
        tokit_sdk::check_cancelled()?;
        record.clear();
        if let Some(x) = xr.take() {
            xr = Some(model.block(i, x, &mut reference!())?);
        }
        if let Some(x) = xs.take() {
            xs = Some(model.block(i, x, &mut stack!())?);
        }
    }
    let logits_ref = match xr {
        Some(x) => {
            let mut c = reference!();
            let x = c.last_rows(x)?;
            Some(head(model, x, &mut c)?)
        }
        None => None,
    };
    if let Some(x) = xs {
        let mut c = stack!();
        let x = c.last_rows(x)?;
        let l = head(model, x, &mut c)?;
        let mut off = 0;
        for (g, &v) in groups.iter().zip(&rows) {
            let n = if s.last_only { 1 } else { len - g.start };
            let own = l.slice(0, off, off + n)?;
            off += n;
            // With a shared prefix, `g.start` is the plan's first differing position.
            let logits = match &logits_ref {
                Some(r) => plans[v].splice(r, own, s.last_only)?,
                None => own,
            };
            call.emit(v, "logits", logits);
        }
    }
    if let Some(r) = logits_ref {
        for &m in &mirrors {
            call.emit(m, "logits", r.clone());
        }
    }
    Ok(())
}

/// Several variants in one pass: the clean prefix once, each variant's suffix on top of it.
fn batched(
    model: &dyn Decoder,
    call: &mut ForwardCall,
    plans: &[Plan],
    s: &Shared,
    changed: &mut [bool],
) -> Result<()> {
    let len = s.len;
    let tokens = call.tokens().to_vec();
    let mirrors: Vec<usize> = (0..plans.len())
        .filter(|&v| plans[v].first == len)
        .collect();
    let suffixes: Vec<usize> = (0..plans.len()).filter(|&v| plans[v].first < len).collect();
    let mut record = Record::default();
    let mut xs: Vec<Option<Tensor>> = vec![None; plans.len()];

    macro_rules! reference {
        () => {
            s.pass(
                call,
                changed,
                PassKind::Reference {
                    mirrors: &mirrors,
                    record: &mut record,
                },
                None,
            )
        };
    }
    macro_rules! suffix {
        ($v:expr) => {
            s.pass(
                call,
                changed,
                PassKind::Suffix { reference: &record },
                Some($v),
            )
            .rows_from(plans[$v].first, plans[$v].keep.as_deref())
        };
    }

    let mut xr = model.embed(&mut reference!(), &tokens)?;
    for &v in &suffixes {
        let p = &plans[v];
        xs[v] = Some(model.embed(&mut suffix!(v), &p.seq[p.first..])?);
    }
    record.clear();
    for i in 0..model.n_layers() {
        tokit_sdk::check_cancelled()?;
        xr = model.block(i, xr, &mut reference!())?;
        lens(model, i, &xr, &mut reference!())?;
        for &v in &suffixes {
            if let (false, Some(x)) = (changed[v], xs[v].take()) {
                let x = model.block(i, x, &mut suffix!(v))?;
                lens(model, i, &x, &mut suffix!(v))?;
                xs[v] = Some(x);
            }
        }
        record.clear();
    }
    let logits_ref = {
        let mut c = reference!();
        let x = c.last_rows(xr)?;
        let l = head(model, x, &mut c)?;
        c.rows(HOOK_LOGITS, l)?
    };
    for &v in &suffixes {
        let Some(x) = xs[v].take() else { continue };
        if changed[v] {
            continue;
        }
        let mut c = suffix!(v);
        let x = c.last_rows(x)?;
        let l = head(model, x, &mut c)?;
        let l = c.rows(HOOK_LOGITS, l)?;
        if changed[v] {
            continue;
        }
        call.emit(v, "logits", plans[v].splice(&logits_ref, l, s.last_only)?);
    }
    for &m in &mirrors {
        if !changed[m] {
            call.emit(m, "logits", logits_ref.clone());
        }
    }
    // Variants an intervention touched: recompute each from scratch, interventions in line.
    for v in 0..plans.len() {
        if changed[v] {
            let p = &plans[v];
            let logits = {
                let mut c = s
                    .pass(call, changed, PassKind::Inline, Some(v))
                    .rows_from(0, p.keep.as_deref());
                run(model, &mut c, &p.seq)?
            };
            call.emit(v, "logits", logits);
        }
    }
    Ok(())
}

/// A generation step (`last_only`, one clean variant): reuse the KV cache of the longest
/// prefix shared with the previous call, compute the rest, and cache the result.
fn cached(
    model: &dyn Decoder,
    call: &mut ForwardCall,
    p: &Plan,
    s: &Shared,
    cache: &mut Option<KvCache>,
) -> Result<()> {
    let len = s.len;
    let tokens = call.tokens().to_vec();
    let common = cache
        .as_ref()
        .map_or(0, |c| c.shared_prefix(&tokens))
        .min(len - 1);
    let mut changed = [false];
    let mut kv_out = Kv::default();
    if let (true, Some(c)) = (common > 0, cache.as_ref()) {
        let logits = {
            let kind = PassKind::Cached {
                k: &c.state.k,
                v: &c.state.v,
            };
            let mut pass = s
                .pass(call, &mut changed, kind, Some(0))
                .rows_from(common, None)
                .collecting(&mut kv_out);
            run(model, &mut pass, &tokens[common..])?
        };
        if !changed[0] {
            *cache = Some(KvCache {
                tokens,
                state: kv_out,
            });
            call.emit(0, "logits", logits);
            return Ok(());
        }
        // An intervention changed something: the cached clean prefix does not apply.
        changed[0] = false;
        kv_out = Kv::default();
    }
    let logits = {
        let mut pass = s
            .pass(call, &mut changed, PassKind::Inline, Some(0))
            .rows_from(0, p.keep.as_deref())
            .collecting(&mut kv_out);
        run(model, &mut pass, &p.seq)?
    };
    if !changed[0] {
        *cache = Some(KvCache {
            tokens,
            state: kv_out,
        });
    }
    call.emit(0, "logits", logits);
    Ok(())
}
