//! Sparse n-gram count table for one context length `n`: the distinct contexts sorted
//! lexicographically in one flat array, their successors in CSR layout (tokens sorted,
//! counts >= 1). A context is found by binary search (`O(n log C)`), so memory is a few
//! bytes per n-gram whatever the vocabulary size, building is one sort, and iteration
//! order (hence every float sum and the saved file) is deterministic.

use std::cmp::Ordering;

#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Table {
    n: usize,
    /// `len() * n` context tokens, contexts strictly increasing.
    ctx: Vec<u32>,
    /// `len() + 1` offsets into `tokens` / `counts`.
    offsets: Vec<usize>,
    totals: Vec<u64>,
    tokens: Vec<u32>,
    counts: Vec<u64>,
}

/// The successors of one context.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Row<'a> {
    pub(crate) total: u64,
    pub(crate) tokens: &'a [u32],
    pub(crate) counts: &'a [u64],
}

impl Row<'_> {
    pub(crate) fn count(&self, v: u32) -> u64 {
        match self.tokens.binary_search(&v) {
            Ok(i) => self.counts[i],
            Err(_) => 0,
        }
    }

    /// Number of distinct successors, `N1+(ctx •)`.
    pub(crate) fn types(&self) -> usize {
        self.tokens.len()
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = (u32, u64)> + '_ {
        self.tokens.iter().copied().zip(self.counts.iter().copied())
    }
}

impl Table {
    pub(crate) fn new(n: usize) -> Self {
        Table {
            n,
            ctx: Vec::new(),
            offsets: vec![0],
            totals: Vec::new(),
            tokens: Vec::new(),
            counts: Vec::new(),
        }
    }

    /// Number of contexts.
    pub(crate) fn len(&self) -> usize {
        self.totals.len()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.totals.is_empty()
    }

    /// Number of distinct n-grams (context, successor).
    pub(crate) fn num_ngrams(&self) -> usize {
        self.tokens.len()
    }

    pub(crate) fn context(&self, i: usize) -> &[u32] {
        &self.ctx[i * self.n..(i + 1) * self.n]
    }

    pub(crate) fn row(&self, i: usize) -> Row<'_> {
        let (a, b) = (self.offsets[i], self.offsets[i + 1]);
        Row {
            total: self.totals[i],
            tokens: &self.tokens[a..b],
            counts: &self.counts[a..b],
        }
    }

    pub(crate) fn find(&self, key: &[u32]) -> Option<usize> {
        if key.len() != self.n {
            return None;
        }
        let (mut lo, mut hi) = (0, self.len());
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            match self.context(mid).cmp(key) {
                Ordering::Less => lo = mid + 1,
                Ordering::Greater => hi = mid,
                Ordering::Equal => return Some(mid),
            }
        }
        None
    }

    pub(crate) fn get(&self, key: &[u32]) -> Option<Row<'_>> {
        self.find(key).map(|i| self.row(i))
    }

    /// Contexts in increasing order with their rows.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (&[u32], Row<'_>)> + '_ {
        (0..self.len()).map(|i| (self.context(i), self.row(i)))
    }

    /// Appends a context with its successors. Contexts must come in strictly increasing
    /// order, successor tokens strictly increasing, counts >= 1, at least one successor;
    /// otherwise the table is left unchanged and the reason is returned.
    pub(crate) fn push(
        &mut self,
        ctx: &[u32],
        succ: impl IntoIterator<Item = (u32, u64)>,
    ) -> Result<(), String> {
        if ctx.len() != self.n {
            return Err(format!(
                "context {ctx:?} has length {}, expected {}",
                ctx.len(),
                self.n
            ));
        }
        if !self.is_empty() && self.context(self.len() - 1) >= ctx {
            return Err(format!("context {ctx:?} is not after the previous one"));
        }
        let start = self.tokens.len();
        let mut total = 0u64;
        let mut fail = None;
        for (t, c) in succ {
            let increasing = self.tokens.len() == start || self.tokens[self.tokens.len() - 1] < t;
            fail = if !increasing {
                Some(format!(
                    "successors of context {ctx:?} not strictly increasing at {t}"
                ))
            } else if c == 0 {
                Some(format!("count 0 for successor {t} of context {ctx:?}"))
            } else if let Some(x) = total.checked_add(c) {
                total = x;
                None
            } else {
                Some(format!("counts of context {ctx:?} overflow 64 bits"))
            };
            if fail.is_some() {
                break;
            }
            self.tokens.push(t);
            self.counts.push(c);
        }
        if fail.is_none() && self.tokens.len() == start {
            fail = Some(format!("context {ctx:?} has no successors"));
        }
        if let Some(e) = fail {
            self.tokens.truncate(start);
            self.counts.truncate(start);
            return Err(e);
        }
        self.ctx.extend_from_slice(ctx);
        self.offsets.push(self.tokens.len());
        self.totals.push(total);
        Ok(())
    }

    /// Counts the `(n+1)`-grams `buf[s..s+n+1]` for every `s` in `starts` (each weighs 1):
    /// one sort, then run lengths.
    pub(crate) fn from_grams(
        n: usize,
        buf: &[u32],
        mut starts: Vec<usize>,
    ) -> Result<Self, String> {
        let w = n + 1;
        let gram = |s: usize| &buf[s..s + w];
        starts.sort_unstable_by(|&a, &b| gram(a).cmp(gram(b)));
        let mut t = Table::new(n);
        let mut succ: Vec<(u32, u64)> = Vec::new();
        let mut i = 0;
        while i < starts.len() {
            let g = gram(starts[i]);
            let mut j = i + 1;
            while j < starts.len() && gram(starts[j]) == g {
                j += 1;
            }
            succ.push((g[n], (j - i) as u64));
            let next_ctx_differs = j == starts.len() || gram(starts[j])[..n] != g[..n];
            if next_ctx_differs {
                t.push(&g[..n], succ.drain(..))?;
            }
            i = j;
        }
        Ok(t)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn build_find_and_reject_bad_pushes() {
        // Bigrams of 0 1 0 1 2.
        let buf = [0, 1, 0, 1, 2];
        let t = Table::from_grams(1, &buf, (0..4).collect()).unwrap();
        assert_eq!(t.len(), 2);
        assert_eq!(t.num_ngrams(), 3);
        let r = t.get(&[0]).unwrap();
        assert_eq!((r.total, r.count(1), r.count(0), r.types()), (2, 2, 0, 1));
        let r = t.get(&[1]).unwrap();
        assert_eq!(r.iter().collect::<Vec<_>>(), vec![(0, 1), (2, 1)]);
        assert!(t.get(&[2]).is_none() && t.get(&[0, 1]).is_none());

        let mut u = Table::new(1);
        u.push(&[3], [(1, 2), (4, 1)]).unwrap();
        let before = u.clone();
        assert!(u.push(&[3], [(1, 1)]).is_err());
        assert!(u.push(&[5], [(4, 1), (4, 1)]).is_err());
        assert!(u.push(&[5], [(4, 0)]).is_err());
        assert!(u.push(&[5], []).is_err());
        assert!(u.push(&[5], [(1, u64::MAX), (2, 1)]).is_err());
        assert!(u.push(&[5, 6], [(1, 1)]).is_err());
        assert_eq!(u, before);
        let empty = Table::from_grams(0, &[], Vec::new()).unwrap();
        assert!(empty.is_empty() && empty.get(&[]).is_none());
    }
}
