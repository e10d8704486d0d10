//! Key groups: how keyed rows and keyed state are split among subtasks.
//!
//! A key hashes into one of `max_parallelism` key groups, fixed for the life of a job; each of
//! the `parallelism` subtasks owns a contiguous range of key groups. Hash edges route a row to
//! the subtask owning its key group, and checkpoints store state per key group, so rescaling or
//! moving work reassigns ranges and restores only those (Flink's key-group scheme; see
//! `DESIGN.md`, "Growing past one machine").

use std::ops::Range;

/// Key groups when the job does not say: the most subtasks a keyed operator can ever have.
pub const DEFAULT_MAX_PARALLELISM: u32 = 128;

/// The key group of a key whose 64-bit hash is `hash`. The hash is mixed first so that weak
/// hashes (an integer key's identity) still spread over the groups.
pub fn key_group(hash: u64, max_parallelism: u32) -> u32 {
    // The finalizer of SplitMix64: every input bit affects every output bit.
    let mut z = hash;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^= z >> 31;
    (z % u64::from(max_parallelism.max(1))) as u32
}

/// The subtask (of `parallelism`) that owns key group `group`.
pub fn subtask_for_key_group(group: u32, parallelism: u32, max_parallelism: u32) -> u32 {
    (u64::from(group) * u64::from(parallelism) / u64::from(max_parallelism.max(1))) as u32
}

/// The key groups subtask `subtask` (of `parallelism`) owns: the groups `g` with
/// `subtask_for_key_group(g) == subtask`.
pub fn key_group_range(subtask: u32, parallelism: u32, max_parallelism: u32) -> Range<u32> {
    let (s, p, m) = (
        u64::from(subtask),
        u64::from(parallelism.max(1)),
        u64::from(max_parallelism),
    );
    let start = (s * m).div_ceil(p);
    let end = ((s + 1) * m).div_ceil(p);
    start as u32..end as u32
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn groups_spread_evenly() {
        let mut counts = vec![0u32; 128];
        for k in 0..128_000u64 {
            counts[key_group(k, 128) as usize] += 1;
        }
        let (min, max) = (counts.iter().min().unwrap(), counts.iter().max().unwrap());
        assert!(*min > 850 && *max < 1150, "{min}..{max}");
    }

    proptest! {
        // Ranges partition the key groups, and agree with the per-group assignment.
        #[test]
        fn ranges_partition_the_groups(max in 1u32..512, p in 1u32..64) {
            prop_assume!(p <= max);
            let mut next = 0;
            for s in 0..p {
                let r = key_group_range(s, p, max);
                prop_assert_eq!(r.start, next);
                prop_assert!(!r.is_empty());
                for g in r.clone() {
                    prop_assert_eq!(subtask_for_key_group(g, p, max), s);
                }
                next = r.end;
            }
            prop_assert_eq!(next, max);
        }
    }
}
