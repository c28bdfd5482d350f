//! Sharding a script's grid over the tasks of a cluster job (`tokit run --shard I/N`,
//! `docs/corpus.md`, "Sharding"): the Rhai functions that give a script its share.
//!
//! - `shard_items(array)`: the items of this shard, a contiguous slice holding about 1/N
//!   of them (the whole array when the run is not sharded);
//! - `shard_indices(n)`: the positions in `0..n` of this shard's items, for seeds and names;
//! - `item_seed(base, i)`: a seed for item `i` derived from the base seed and the item
//!   alone, so a result does not depend on N;
//! - `shard_index()`, `shard_count()`: I and N (0 and 1 unsharded).

use crate::corpus::shard::assign;
use crate::corpus::Shard;
use rhai::{Array, Dynamic};

/// SplitMix64's finaliser (Steele, Lea & Flood 2014): a bijective 64-bit mix.
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The seed of item `i` under base seed `base`.
pub fn item_seed(base: u64, i: u64) -> u64 {
    mix(base ^ mix(i.wrapping_add(0x9e37_79b9_7f4a_7c15)))
}

/// The positions in `0..n` that shard `s` takes.
pub fn indices(s: Option<Shard>, n: usize) -> Vec<usize> {
    match s {
        None => (0..n).collect(),
        Some(s) => assign(&vec![1; n], s.count)
            .into_iter()
            .enumerate()
            .filter(|&(_, k)| k == s.index)
            .map(|(i, _)| i)
            .collect(),
    }
}

/// Register the shard functions for a run that is shard `s` (or not sharded).
pub fn register(rhai: &mut rhai::Engine, s: Option<Shard>) {
    rhai.register_fn("shard_items", move |a: Array| -> Array {
        indices(s, a.len())
            .into_iter()
            .map(|i| a[i].clone())
            .collect()
    });
    rhai.register_fn("shard_indices", move |n: i64| -> Array {
        indices(s, usize::try_from(n).unwrap_or(0))
            .into_iter()
            .map(|i| Dynamic::from(i as i64))
            .collect()
    });
    rhai.register_fn("item_seed", |base: i64, i: i64| -> i64 {
        item_seed(base as u64, i as u64) as i64
    });
    rhai.register_fn("shard_index", move || s.map_or(0, |s| s.index as i64));
    rhai.register_fn("shard_count", move || s.map_or(1, |s| s.count as i64));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_cover_the_items_once_and_seeds_ignore_n() {
        for n in [1, 2, 3, 5] {
            let mut all: Vec<usize> = (0..n)
                .flat_map(|i| indices(Some(Shard::new(i, n).unwrap()), 11))
                .collect();
            all.sort();
            assert_eq!(all, (0..11).collect::<Vec<_>>());
        }
        assert_eq!(indices(None, 3), vec![0, 1, 2]);
        assert_ne!(item_seed(1, 0), item_seed(1, 1));
        assert_ne!(item_seed(1, 0), item_seed(2, 0));
        assert_eq!(item_seed(7, 3), item_seed(7, 3));
    }
}
