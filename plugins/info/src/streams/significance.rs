//! Permutation significance for the CMI-type measures (transfer entropy, conditional TE,
//! mutual information, active information storage, directed information).
//!
//! The null hypothesis is "the source variable `B` carries no information about `A` given
//! `C`". Surrogates destroy the `B`–`(A, C)` relation and keep everything else: the
//! sample-aligned source variable (the embedded source window for TE, the past window for
//! AIS, the second stream for MI) is re-ordered over the samples, as JIDT's
//! `computeSignificance` does; the kinds follow IDTxl's `perm_type`:
//!
//! * `shuffle`: a uniformly random permutation of all samples (trials pooled);
//! * `circular`: within each trial, a rotation by a random shift in `1..len` (keeps the
//!   source's own serial dependence; IDTxl's "circular");
//! * `block`: within each trial, cut into blocks of `block_size` samples (0: about a tenth
//!   of the trial) and put the blocks in random order (IDTxl's "block").
//!
//! Reported: the p-value `(1 + #{surrogate ≥ observed}) / (1 + S)` (never 0, the usual
//! conservative estimate), the surrogate mean and standard deviation, and the
//! bias-corrected "effective" value `observed − surrogate mean` (Marschinski & Kantz's
//! effective transfer entropy). Each surrogate draws from its own generator derived from
//! `(seed, index)`, so results do not depend on the number of threads. Threads are scoped
//! to the call (no thread outlives a call into the plugin).
//!
//! A test sharded over the tasks of a cluster job (`docs/corpus.md`, "Sharding a
//! permutation test") computes a range `first..first + count` of the surrogate indices in
//! each task ([`Permutations::first`]); every estimator (the sparse one here and the dense
//! tables of `dense.rs`, both of which draw through [`run_surrogates`]) numbers its
//! surrogates alike, so surrogate `i` is the same number whichever task computes it. [`Significance::exceeding`] and the values are the
//! range's mergeable statistics.

use super::counting::Ids;
use super::estimate::{Bias, Cmi};
use super::rng::Rng;
use std::ops::Range;

/// How surrogates reorder the source.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Surrogate {
    Shuffle,
    Circular,
    /// Block size in samples (0: automatic).
    Block(usize),
}

impl Surrogate {
    pub fn parse(kind: &str, block_size: usize) -> Result<Surrogate, String> {
        match kind {
            "shuffle" | "random" => Ok(Surrogate::Shuffle),
            "circular" => Ok(Surrogate::Circular),
            "block" => Ok(Surrogate::Block(block_size)),
            other => Err(format!(
                "`surrogate`: expected \"shuffle\", \"circular\" or \"block\", found \"{other}\""
            )),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Surrogate::Shuffle => "shuffle",
            Surrogate::Circular => "circular",
            Surrogate::Block(_) => "block",
        }
    }
}

/// What a permutation test runs: surrogate kind, the surrogates `first..first + count`
/// (all of a test: `first` 0; one shard of it: its range), seed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Permutations {
    pub kind: Surrogate,
    /// Number of surrogates (0: no test).
    pub count: usize,
    /// Index of the first surrogate (0 unless the test is sharded).
    pub first: usize,
    pub seed: u64,
}

/// Result of a permutation test (values in nats).
#[derive(Clone, Debug)]
pub struct Significance {
    pub p_value: f64,
    pub surrogate_mean: f64,
    pub surrogate_std: f64,
    /// `observed − surrogate_mean`.
    pub effective: f64,
    /// Surrogates at least as large as the observed value (ties up to rounding included):
    /// the p-value's count, which sums over the ranges of a sharded test.
    pub exceeding: usize,
    pub values: Vec<f64>,
}

/// Reorder `b` into one surrogate.
pub fn surrogate(b: &[u32], segments: &[Range<usize>], kind: Surrogate, rng: &mut Rng) -> Vec<u32> {
    match kind {
        Surrogate::Shuffle => {
            let mut v = b.to_vec();
            rng.shuffle(&mut v);
            v
        }
        Surrogate::Circular => {
            let mut v = b.to_vec();
            for seg in segments {
                let len = seg.len();
                if len >= 2 {
                    let shift = 1 + rng.below(len - 1);
                    v[seg.clone()].rotate_left(shift);
                }
            }
            v
        }
        Surrogate::Block(size) => {
            let mut v = Vec::with_capacity(b.len());
            for seg in segments {
                let len = seg.len();
                let size = if size == 0 {
                    ((len as f64 / 10.0).round() as usize).max(1)
                } else {
                    size
                };
                let mut blocks: Vec<Range<usize>> = (seg.start..seg.end)
                    .step_by(size)
                    .map(|s| s..(s + size).min(seg.end))
                    .collect();
                rng.shuffle(&mut blocks);
                for blk in blocks {
                    v.extend_from_slice(&b[blk]);
                }
            }
            v
        }
    }
}

/// Permutation test of `I(A; B | C)` (`cmi` holds `A` and `C`). `observed` is the value
/// computed on the real data with the same `bias`.
pub fn permutation_test(
    cmi: &Cmi,
    b: &Ids,
    segments: &[Range<usize>],
    observed: f64,
    bias: Bias,
    spec: Permutations,
) -> Significance {
    let Permutations {
        kind,
        count,
        first,
        seed,
    } = spec;
    let one = |i: usize| -> f64 {
        let mut rng = Rng::for_stream(seed, i as u64);
        let ids = surrogate(&b.ids, segments, kind, &mut rng);
        cmi.estimate(&Ids { ids, n: b.n }, bias, false).value
    };
    let values = run_surrogates(first, count, cmi.samples(), one);
    summarise(observed, values)
}

/// `one(i)` for every surrogate `i` in `first..first + count` (over `samples` samples
/// each), on scoped threads when the work is large enough; the values do not depend on
/// the thread count.
pub fn run_surrogates(
    first: usize,
    count: usize,
    samples: usize,
    one: impl Fn(usize) -> f64 + Sync,
) -> Vec<f64> {
    let one = |i: usize| one(first + i);
    let mut values = vec![f64::NAN; count];
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    // Below ~64k sample-surrogates a thread costs more than it saves.
    let work = count.saturating_mul(samples);
    let threads = cores.min(8).min(1 + work / 65_536).min(count.max(1));
    if threads <= 1 {
        for (i, v) in values.iter_mut().enumerate() {
            *v = one(i);
        }
    } else {
        let chunk = count.div_ceil(threads);
        std::thread::scope(|s| {
            for (c, part) in values.chunks_mut(chunk).enumerate() {
                let one = &one;
                s.spawn(move || {
                    for (j, v) in part.iter_mut().enumerate() {
                        *v = one(c * chunk + j);
                    }
                });
            }
        });
    }
    values
}

/// p-value and moments of a surrogate distribution.
pub fn summarise(observed: f64, values: Vec<f64>) -> Significance {
    let s = values.len();
    if s == 0 {
        return Significance {
            p_value: f64::NAN,
            surrogate_mean: f64::NAN,
            surrogate_std: f64::NAN,
            effective: f64::NAN,
            exceeding: 0,
            values,
        };
    }
    // Ties up to rounding count as "at least as large".
    let tol = 1e-12 * (1.0 + observed.abs());
    let ge = values.iter().filter(|&&v| v >= observed - tol).count();
    let mean = values.iter().sum::<f64>() / s as f64;
    let var = if s > 1 {
        values.iter().map(|v| (v - mean) * (v - mean)).sum::<f64>() / (s - 1) as f64
    } else {
        0.0
    };
    Significance {
        p_value: (1 + ge) as f64 / (1 + s) as f64,
        surrogate_mean: mean,
        surrogate_std: var.sqrt(),
        effective: observed - mean,
        exceeding: ge,
        values,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn surrogates_are_permutations_that_respect_trials() {
        let b: Vec<u32> = (0..23).collect();
        let segs = vec![0..10, 10..23];
        for kind in [
            Surrogate::Shuffle,
            Surrogate::Circular,
            Surrogate::Block(3),
            Surrogate::Block(0),
        ] {
            let mut rng = Rng::new(5);
            let v = surrogate(&b, &segs, kind, &mut rng);
            let mut sorted = v.clone();
            sorted.sort();
            assert_eq!(sorted, b, "{kind:?} is not a permutation");
            assert_ne!(v, b, "{kind:?} left the order unchanged");
            if kind != Surrogate::Shuffle {
                let mut first: Vec<u32> = v[..10].to_vec();
                first.sort();
                assert_eq!(first, (0..10).collect::<Vec<_>>(), "{kind:?} mixed trials");
            }
        }
        // A circular shift keeps the cyclic order.
        let v = surrogate(
            &b[..10],
            std::slice::from_ref(&(0..10)),
            Surrogate::Circular,
            &mut Rng::new(9),
        );
        assert!((0..10).all(|i| v[(i + 1) % 10] == (v[i] + 1) % 10));
        // Blocks of 3 stay contiguous.
        let v = surrogate(
            &b[..9],
            std::slice::from_ref(&(0..9)),
            Surrogate::Block(3),
            &mut Rng::new(2),
        );
        assert!(
            v.chunks(3)
                .all(|c| c[0] % 3 == 0 && c[1] == c[0] + 1 && c[2] == c[0] + 2),
            "{v:?}"
        );
    }

    #[test]
    fn a_range_of_surrogates_is_the_same_numbers_as_in_the_whole_test() {
        let one = |i: usize| (i * i) as f64 + 0.5;
        // Enough work for threads, so the offset must reach every one of them.
        let whole = run_surrogates(0, 50, 100_000, one);
        for (first, count) in [(0, 50), (7, 20), (49, 1), (50, 0)] {
            let part = run_surrogates(first, count, 100_000, one);
            assert_eq!(part, whole[first..first + count]);
        }
        assert_eq!(run_surrogates(0, 3, 1, one), whole[..3]);
        let s = summarise(1.0, vec![0.0, 1.0, 2.0, 0.5]);
        assert_eq!(s.exceeding, 2);
    }

    #[test]
    fn p_value_counts_ties_conservatively() {
        let s = summarise(1.0, vec![0.0, 1.0, 2.0, 0.5]);
        assert_eq!(s.p_value, 3.0 / 5.0);
        assert_eq!(s.surrogate_mean, 0.875);
        assert_eq!(s.effective, 0.125);
        assert!(summarise(1.0, vec![]).p_value.is_nan());
    }
}
