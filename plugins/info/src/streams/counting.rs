//! Sparse plug-in counting: every random variable of an estimator (a future symbol, a
//! history tuple, a source window, a joint of several of these) becomes an array of dense
//! ids, one per *sample*, and joint variables are built by pairing two id arrays.
//!
//! Nothing is sized by `alphabet^history` (the dense tables of inform/pyinform need ~40 GB
//! for k > 2 with 100 states, PyInform#30): history tuples are interned through a hash map
//! keyed by the tuple itself, and a pair `(a, b)` goes through a dense table only when
//! `|A|·|B|` is small compared with the number of samples, otherwise through a hash map.
//! Memory is O(samples), whatever the alphabet size or history length.
//!
//! Samples: for trial `r` of length `T_r` and a start time `t0` (the largest lag any
//! variable of the estimator uses), the samples are the times `t = t0..T_r`, trial after
//! trial ([`Layout`]).

use super::series::Symbols;
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::ops::Range;

/// A fast non-cryptographic hasher (the Fx hash of rustc/Firefox). Keys are our own
/// symbol tuples, so hash flooding is not a concern.
#[derive(Default, Clone, Copy)]
pub struct FxHasher {
    hash: u64,
}

const SEED: u64 = 0x51_7c_c1_b7_27_22_0a_95;

impl FxHasher {
    #[inline]
    fn add(&mut self, w: u64) {
        self.hash = (self.hash.rotate_left(5) ^ w).wrapping_mul(SEED);
    }
}

impl Hasher for FxHasher {
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            self.add(u64::from_le_bytes([
                c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7],
            ]));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut b = [0u8; 8];
            b[..rest.len()].copy_from_slice(rest);
            self.add(u64::from_le_bytes(b) ^ ((rest.len() as u64) << 60));
        }
    }
    #[inline]
    fn write_u32(&mut self, i: u32) {
        self.add(i as u64);
    }
    #[inline]
    fn write_u64(&mut self, i: u64) {
        self.add(i);
    }
    #[inline]
    fn write_usize(&mut self, i: usize) {
        self.add(i as u64);
    }
    #[inline]
    fn finish(&self) -> u64 {
        // One more multiply-rotate spreads the entropy into the high bits hashbrown uses.
        (self.hash ^ (self.hash >> 29))
            .wrapping_mul(SEED)
            .rotate_left(26)
    }
}

pub type FxBuild = BuildHasherDefault<FxHasher>;
pub type FxHashMap<K, V> = HashMap<K, V, FxBuild>;

/// A variable over the samples: `ids[i] ∈ 0..n` is the value at sample `i`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ids {
    pub ids: Vec<u32>,
    /// Number of distinct values (ids are dense: every id below `n` occurs).
    pub n: u32,
}

impl Ids {
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// Counts of each value: `hist()[v]` = number of samples with value `v`.
    pub fn hist(&self) -> Vec<u32> {
        let mut h = vec![0u32; self.n as usize];
        for &i in &self.ids {
            h[i as usize] += 1;
        }
        h
    }

    /// Renumber arbitrary labels densely (in order of first occurrence).
    pub fn from_labels(labels: &[u32]) -> Ids {
        let mut map: FxHashMap<u32, u32> = FxHashMap::default();
        let ids = labels
            .iter()
            .map(|&l| {
                let n = map.len() as u32;
                *map.entry(l).or_insert(n)
            })
            .collect();
        Ids {
            ids,
            n: map.len() as u32,
        }
    }
}

/// Joint variable of `a` and `b` (same samples).
pub fn pair(a: &Ids, b: &Ids) -> Ids {
    debug_assert_eq!(a.len(), b.len());
    let len = a.len();
    let cells = a.n as u64 * b.n as u64;
    let dense_limit = (4 * len as u64).clamp(1 << 16, 1 << 26);
    let mut ids = Vec::with_capacity(len);
    let mut next = 0u32;
    if cells <= dense_limit {
        let mut table = vec![u32::MAX; cells as usize];
        for (&x, &y) in a.ids.iter().zip(&b.ids) {
            let slot = &mut table[x as usize * b.n as usize + y as usize];
            if *slot == u32::MAX {
                *slot = next;
                next += 1;
            }
            ids.push(*slot);
        }
    } else {
        let mut map: FxHashMap<u64, u32> = FxHashMap::default();
        map.reserve(len.min(1 << 20));
        for (&x, &y) in a.ids.iter().zip(&b.ids) {
            let id = *map.entry(((x as u64) << 32) | y as u64).or_insert(next);
            if id == next {
                next += 1;
            }
            ids.push(id);
        }
    }
    Ids { ids, n: next }
}

/// Interns symbol tuples: equal tuples get equal ids, in order of first occurrence.
#[derive(Default)]
pub struct Interner {
    map: FxHashMap<Box<[u32]>, u32>,
}

impl Interner {
    pub fn id(&mut self, key: &[u32]) -> u32 {
        if let Some(&i) = self.map.get(key) {
            return i;
        }
        let i = self.map.len() as u32;
        self.map.insert(key.into(), i);
        i
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
}

/// Which times of which trials are samples: `t = t0..len` of every trial.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Layout {
    pub t0: usize,
    pub lens: Vec<usize>,
}

impl Layout {
    /// Samples per trial (0 for trials no longer than `t0`).
    pub fn per_trial(&self) -> impl Iterator<Item = usize> + '_ {
        self.lens.iter().map(|&l| l.saturating_sub(self.t0))
    }

    pub fn samples(&self) -> usize {
        self.per_trial().sum()
    }

    /// Sample index range of each trial.
    pub fn segments(&self) -> Vec<Range<usize>> {
        let mut at = 0;
        self.per_trial()
            .map(|n| {
                let r = at..at + n;
                at += n;
                r
            })
            .collect()
    }

    /// Spread per-sample values back onto the time axis: `[trials][max_len]`, NaN where a
    /// time has no sample (before `t0`, or past the end of a shorter trial).
    pub fn to_time_axis(&self, per_sample: &[f64], scale: f64) -> (Vec<f32>, Vec<usize>) {
        let width = self.lens.iter().copied().max().unwrap_or(0);
        let mut out = vec![f32::NAN; self.lens.len() * width];
        let mut at = 0;
        for (r, &len) in self.lens.iter().enumerate() {
            for t in self.t0..len {
                out[r * width + t] = (per_sample[at] * scale) as f32;
                at += 1;
            }
        }
        let shape = if self.lens.len() == 1 {
            vec![width]
        } else {
            vec![self.lens.len(), width]
        };
        (out, shape)
    }
}

/// The variable "symbols of `s` at lags `lags` before the sample time" (`lags` empty: a
/// constant). `t0` must be at least the largest lag.
pub fn embed(s: &Symbols, lags: &[usize], layout: &Layout) -> Ids {
    debug_assert!(lags.iter().all(|&l| l <= layout.t0));
    debug_assert_eq!(s.lens(), layout.lens);
    let n = layout.samples();
    if lags.is_empty() {
        return Ids {
            ids: vec![0; n],
            n: u32::from(n > 0),
        };
    }
    let mut ids = Vec::with_capacity(n);
    if lags.len() == 1 {
        let mut map: FxHashMap<u32, u32> = FxHashMap::default();
        for r in 0..s.n_trials() {
            let trial = s.trial_u32(r);
            for t in layout.t0..trial.len() {
                let next = map.len() as u32;
                ids.push(*map.entry(trial[t - lags[0]]).or_insert(next));
            }
        }
        return Ids {
            ids,
            n: map.len() as u32,
        };
    }
    let mut interner = Interner::default();
    let mut key = vec![0u32; lags.len()];
    for r in 0..s.n_trials() {
        let trial = s.trial_u32(r);
        for t in layout.t0..trial.len() {
            for (k, &l) in key.iter_mut().zip(lags) {
                *k = trial[t - l];
            }
            ids.push(interner.id(&key));
        }
    }
    Ids {
        ids,
        n: interner.len() as u32,
    }
}

/// Lags `start, start + tau, …` (`len` of them).
pub fn lags(start: usize, len: usize, tau: usize) -> Vec<usize> {
    (0..len).map(|i| start + i * tau).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pairing_dense_and_hashed_agree() {
        let a = Ids::from_labels(&[0, 1, 0, 1, 2, 2, 0]);
        let b = Ids::from_labels(&[5, 5, 5, 6, 6, 6, 5]);
        let p = pair(&a, &b);
        assert_eq!(p.ids, vec![0, 1, 0, 2, 3, 3, 0]);
        assert_eq!(p.n, 4);
        // Force the hashed path with a huge nominal alphabet.
        let big_a = Ids {
            ids: a.ids.clone(),
            n: 1 << 20,
        };
        let big_b = Ids {
            ids: b.ids.clone(),
            n: 1 << 20,
        };
        assert_eq!(pair(&big_a, &big_b), p);
        assert_eq!(p.hist(), vec![3, 1, 1, 2]);
    }

    #[test]
    fn embedding_windows_and_layout() {
        let s = Symbols::new(vec![vec![0, 1, 0, 1, 1], vec![7, 7, 7]]);
        let layout = Layout {
            t0: 2,
            lens: s.lens(),
        };
        assert_eq!(layout.samples(), 3 + 1);
        assert_eq!(layout.segments(), vec![0..3, 3..4]);
        // (s[t-1], s[t-2]) at t = 2,3,4 | 2: (1,0) (0,1) (1,0) | (7,7)
        let h = embed(&s, &[1, 2], &layout);
        assert_eq!(h.ids, vec![0, 1, 0, 2]);
        let f = embed(&s, &[0], &layout);
        assert_eq!(f.ids, vec![0, 1, 1, 2]);
        assert_eq!(
            embed(&s, &[], &layout),
            Ids {
                ids: vec![0; 4],
                n: 1
            }
        );
        let (t, shape) = layout.to_time_axis(&[1.0, 2.0, 3.0, 4.0], 1.0);
        assert_eq!(shape, vec![2, 5]);
        assert!(
            t[0].is_nan()
                && t[1].is_nan()
                && t[2] == 1.0
                && t[4] == 3.0
                && t[7] == 4.0
                && t[8].is_nan()
        );
        assert_eq!(lags(1, 3, 2), vec![1, 3, 5]);
        // Big alphabets and long histories cost nothing extra.
        let wide = Symbols::one(
            (0..1000u32)
                .map(|i| i.wrapping_mul(2_654_435_761) % 1_000_000)
                .collect(),
        );
        let l = Layout {
            t0: 5,
            lens: wide.lens(),
        };
        assert_eq!(embed(&wide, &[1, 2, 3, 4, 5], &l).n, 995);
    }
}
