//! State TTL of the regular join (Flink's `table.exec.state.ttl`): the rows of a key that has
//! not been written for the TTL are dropped from its side. Nothing is retracted, as in Flink:
//! results that joined them stay, and later rows no longer join them.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use super::Entry;

/// When each key of one side was last written.
#[derive(Debug, Default)]
pub(super) struct Clock {
    written: HashMap<Box<[u8]>, Instant>,
    /// Nothing expires before this.
    next_check: Option<Instant>,
}

impl Clock {
    /// `key` was written at `now`. Copies the key only the first time it is seen.
    pub(super) fn written(&mut self, key: &[u8], now: Instant) {
        match self.written.get_mut(key) {
            Some(t) => *t = now,
            None => {
                self.written.insert(key.into(), now);
            }
        }
    }

    /// Up to `count` keys, least recently written first.
    pub(super) fn coldest(&self, count: usize) -> Vec<Box<[u8]>> {
        let mut all: Vec<(&Box<[u8]>, &Instant)> = self.written.iter().collect();
        all.sort_by_key(|(_, t)| **t);
        all.into_iter()
            .take(count)
            .map(|(k, _)| k.clone())
            .collect()
    }

    /// Stops tracking `key` (its rows left memory).
    pub(super) fn forget(&mut self, key: &[u8]) {
        self.written.remove(key);
    }

    /// Drops from `index` every key not written within `ttl` of `now`.
    pub(super) fn expire(
        &mut self,
        index: &mut HashMap<Box<[u8]>, Vec<Entry>>,
        ttl: Duration,
        now: Instant,
    ) {
        if self.next_check.is_some_and(|t| now < t) {
            return;
        }
        self.written.retain(|key, t| {
            let live = now.duration_since(*t) < ttl;
            if !live {
                index.remove(key);
            }
            live
        });
        // Write times only grow: nothing expires before the oldest one does.
        self.next_check = self.written.values().min().map(|&t| t + ttl);
    }
}
