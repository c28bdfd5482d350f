//! [`Pass`]: one pass over some rows of one variant, with its hooks, the memory it starts
//! from and the memory it keeps.

use crate::model::LayerState;
use tokit_sdk::{ForwardCall, Result, Tensor};

/// One pass over rows `start..start + n` of one variant: its hooks, the states it starts
/// from and the states it keeps.
pub(crate) struct Pass<'c, 'a> {
    /// `None`: nobody listens (batched reuse); hooks are skipped.
    pub(crate) call: Option<&'c mut ForwardCall<'a>>,
    pub(crate) variant: usize,
    /// An intervention returned a different tensor.
    pub(crate) changed: bool,
    /// Every layer's memory just before row 0 (`None`: the sequence starts here).
    pub(crate) init: Option<&'c [LayerState]>,
    /// `[n, 1]` 0/1 mask of rows whose input is kept (`zero_input`), if any is removed.
    pub(crate) keep: Option<Tensor>,
    /// Rows after which to keep every layer's memory.
    pub(crate) checkpoints: Vec<usize>,
    /// `saved[k][layer]`: the memory after `checkpoints[k]`.
    pub(crate) saved: Vec<Vec<LayerState>>,
    pub(crate) last_only: bool,
    /// Packed documents (lengths, from row 0) and the `[n, 1]` column that is 0 at each
    /// document's first row and 1 elsewhere: the decay there, so the state starts fresh.
    pub(crate) packed: Option<(Vec<usize>, Tensor)>,
}

impl<'c, 'a> Pass<'c, 'a> {
    pub(crate) fn new(
        call: Option<&'c mut ForwardCall<'a>>,
        variant: usize,
        last_only: bool,
    ) -> Self {
        Pass {
            call,
            variant,
            changed: false,
            init: None,
            keep: None,
            checkpoints: vec![],
            saved: vec![],
            last_only,
            packed: None,
        }
    }

    /// Run over packed documents of lengths `segments` (from row 0, no initial memory).
    pub(crate) fn packing(mut self, segments: &[usize]) -> Result<Self> {
        let mut reset = vec![1f32; segments.iter().sum()];
        for r in tokit_sdk::segment_ranges(segments) {
            reset[r.start] = 0.0;
        }
        let column = Tensor::from_slice(&reset, &[reset.len(), 1])?;
        self.packed = Some((segments.to_vec(), column));
        Ok(self)
    }

    /// Keep every layer's memory after each of `rows`.
    pub(crate) fn keeping(mut self, rows: Vec<usize>) -> Self {
        self.saved = vec![vec![]; rows.len()];
        self.checkpoints = rows;
        self
    }

    pub(crate) fn active(&self, name: &str) -> bool {
        self.call.as_ref().is_some_and(|c| c.hook_active(name))
    }

    pub(crate) fn hook(&mut self, name: &str, t: Tensor) -> Result<Tensor> {
        if !self.active(name) {
            return Ok(t);
        }
        let Some(call) = self.call.as_deref_mut() else {
            return Ok(t);
        };
        call.hook_tracked(self.variant, name, t, &mut self.changed)
    }
}
