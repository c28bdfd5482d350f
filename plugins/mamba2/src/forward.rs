//! Every variant of a forward call: each in full when hooks are listened to; else the
//! clean sequence once, keeping each layer's memory where variants branch off, and each
//! variant from there; generation steps continue from the memory of the previous one.

use crate::model::LayerState;
use crate::pass::Pass;
use crate::Mamba2;
use tokit_sdk::nn::{is_step, plan_variants, Plan, StepCache};
use tokit_sdk::{Error, ForwardCall, Result};

/// Every layer's memory after the last token of the previous `last_only` call.
pub(crate) type Cache = StepCache<Vec<LayerState>>;

impl Mamba2 {
    /// Compute and emit every variant of `call`.
    pub(crate) fn forward_call(&mut self, call: &mut ForwardCall) -> Result<()> {
        let len = call.tokens().len();
        let plans = plan_variants(call, &self.info)?;
        let last_only = call.last_only();
        let hooked = self.info.hooks.iter().any(|h| call.hook_active(h));
        if call.packed() {
            // Packed documents: every variant in full (the memory kept for reuse and
            // between generation steps is one sequence's).
            let segments = call.segments().to_vec();
            for (v, plan) in plans.iter().enumerate() {
                let mut p = Pass::new(Some(&mut *call), v, last_only).packing(&segments)?;
                p.keep = plan.keep_column(0, len)?;
                let logits = self.run(&mut p, &plan.seq)?;
                call.emit(v, "logits", logits);
            }
            return Ok(());
        }
        if is_step(call, &plans) {
            return self.step(call, &plans[0]);
        }
        let reuse = plans.iter().any(|p| p.first > 0 && p.first < len);
        if plans.len() == 1 || hooked || !reuse {
            for (v, plan) in plans.iter().enumerate() {
                let mut p = Pass::new(Some(&mut *call), v, last_only);
                p.keep = plan.keep_column(0, len)?;
                let logits = self.run(&mut p, &plan.seq)?;
                call.emit(v, "logits", logits);
            }
            return Ok(());
        }
        self.batched(call, &plans, last_only)
    }

    /// Several variants nobody hooks: the clean sequence once, keeping every layer's memory
    /// just before each variant's first ablated position, then each variant from there.
    fn batched(&self, call: &mut ForwardCall, plans: &[Plan], last_only: bool) -> Result<()> {
        let len = call.tokens().len();
        let mut cuts: Vec<usize> = plans
            .iter()
            .filter(|p| p.first > 0 && p.first < len)
            .map(|p| p.first - 1)
            .collect();
        cuts.sort_unstable();
        cuts.dedup();
        let mut reference = Pass::new(None, 0, last_only).keeping(cuts.clone());
        let ref_logits = self.run(&mut reference, call.tokens())?;
        for (v, plan) in plans.iter().enumerate() {
            let logits = if plan.first == len {
                ref_logits.clone()
            } else if plan.first == 0 {
                let mut p = Pass::new(None, v, last_only);
                p.keep = plan.keep_column(0, len)?;
                self.run(&mut p, &plan.seq)?
            } else {
                let j = plan.first;
                let k = cuts
                    .binary_search(&(j - 1))
                    .map_err(|_| Error::msg("mamba2: missing checkpoint"))?;
                let mut p = Pass::new(None, v, last_only);
                p.init = Some(&reference.saved[k]);
                p.keep = plan.keep_column(j, len - j)?;
                let own = self.run(&mut p, &plan.seq[j..])?;
                plan.splice(&ref_logits, own, last_only)?
            };
            call.emit(v, "logits", logits);
        }
        Ok(())
    }

    /// A generation step (`last_only`, one clean variant): continue from the cached memory
    /// when `tokens` extends the previous call's, else run in full; keep the memory after
    /// the last token.
    fn step(&mut self, call: &mut ForwardCall, plan: &Plan) -> Result<()> {
        let tokens = call.tokens().to_vec();
        let len = tokens.len();
        let cache = self.cache.take();
        let resume = cache.as_ref().filter(|c| c.extended_by(&tokens));
        if let Some(c) = resume {
            let start = c.tokens.len();
            let mut p = Pass::new(Some(&mut *call), 0, true).keeping(vec![len - start - 1]);
            p.init = Some(&c.state);
            let logits = self.run(&mut p, &tokens[start..])?;
            if !p.changed {
                let state = p.saved.pop().unwrap_or_default();
                self.cache = Some(Cache { tokens, state });
                call.emit(0, "logits", logits);
                return Ok(());
            }
            // An intervention changed something: recompute in full, interventions in line.
        }
        let mut p = Pass::new(Some(&mut *call), 0, true).keeping(vec![len - 1]);
        let logits = self.run(&mut p, &plan.seq)?;
        if !p.changed {
            let state = p.saved.pop().unwrap_or_default();
            self.cache = Some(Cache { tokens, state });
        }
        call.emit(0, "logits", logits);
        Ok(())
    }
}
