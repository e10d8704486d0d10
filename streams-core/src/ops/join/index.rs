//! The buffered rows of one join side, found by key.
//!
//! Indexing every buffered row is wasted when the other side sends few rows: q7 buffers every
//! bid of a window and probes once, with the window's maximum, when the window closes. So
//! newly stored batches stay unindexed and probes scan them, until the scans have cost more
//! than indexing would (`SCAN_RATIO` comparisons per pending row); then the pending batches are
//! indexed. Either way a probe finds the same rows in the same order.

use datafusion::arrow::array::RecordBatch;
use hashbrown::{DefaultHashBuilder, HashTable};
use std::hash::BuildHasher;

use super::Keys;

/// How many key comparisons by scanning one pending row is worth: about what hashing and
/// inserting it costs.
const SCAN_RATIO: usize = 16;

/// Rows of one side with their row-format keys: `(batch, row)` positions by key.
#[derive(Default)]
pub(crate) struct Indexed {
    pub(crate) batches: Vec<RecordBatch>,
    keys: Vec<Keys>,
    /// The distinct keys of `batches[..indexed]`. An entry's key is its first row's, so the
    /// table holds no key bytes of its own.
    table: HashTable<Entry>,
    hasher: DefaultHashBuilder,
    indexed: usize,
    /// Rows in `batches[indexed..]`, which a probe scans (null keys included).
    pending_rows: usize,
    /// Key comparisons scans made since the last indexing.
    scanned: usize,
}

impl std::fmt::Debug for Indexed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Indexed")
            .field("batches", &self.batches.len())
            .field("indexed", &self.indexed)
            .field("keys", &self.table.len())
            .finish_non_exhaustive()
    }
}

struct Entry {
    hash: u64,
    rows: Positions,
}

/// The rows of one key, in the order they came. Keys are often nearly unique (q7 joins bids
/// on their price), so a single row is kept inline.
enum Positions {
    One([(u32, u32); 1]),
    Many(Vec<(u32, u32)>),
}

impl Positions {
    fn first(&self) -> (u32, u32) {
        self.as_slice()[0]
    }

    fn push(&mut self, at: (u32, u32)) {
        match self {
            Positions::One([first]) => *self = Positions::Many(vec![*first, at]),
            Positions::Many(all) => all.push(at),
        }
    }

    fn as_slice(&self) -> &[(u32, u32)] {
        match self {
            Positions::One(one) => one,
            Positions::Many(all) => all,
        }
    }
}

impl Indexed {
    /// Stores `batch` with its keys; rows with a null key are kept but never match.
    pub(crate) fn insert(&mut self, batch: RecordBatch, keys: Keys) {
        self.pending_rows += keys.rows.num_rows();
        self.batches.push(batch);
        self.keys.push(keys);
    }

    /// For each probe row with a valid key, in order, calls `found(row, at)` for every stored
    /// row with an equal key, oldest first.
    pub(crate) fn probe(&mut self, probe: &Keys, mut found: impl FnMut(usize, (u32, u32))) {
        let wanted = valid_rows(probe);
        if wanted == 0 || self.batches.is_empty() {
            return;
        }
        let scan = wanted.saturating_mul(self.pending_rows);
        if self.pending_rows > 0
            && self.scanned.saturating_add(scan) > self.pending_rows.saturating_mul(SCAN_RATIO)
        {
            self.index_pending();
        }
        let pending = self.indexed..self.batches.len();
        if !pending.is_empty() {
            self.scanned = self.scanned.saturating_add(scan);
        }
        for (i, key) in probe.rows.iter().enumerate() {
            if !probe.is_valid(i) {
                continue;
            }
            let key = key.as_ref();
            if !self.table.is_empty() {
                let hash = self.hasher.hash_one(key);
                let keys = &self.keys;
                let entry = self.table.find(hash, |e| {
                    let (b, r) = e.rows.first();
                    e.hash == hash && keys[b as usize].rows.row(r as usize).as_ref() == key
                });
                for &at in entry.map_or(&[][..], |e| e.rows.as_slice()) {
                    found(i, at);
                }
            }
            for b in pending.clone() {
                let keys = &self.keys[b];
                for (r, k) in keys.rows.iter().enumerate() {
                    if k.as_ref() == key && keys.is_valid(r) {
                        found(i, (b as u32, r as u32));
                    }
                }
            }
        }
    }

    fn index_pending(&mut self) {
        for b in self.indexed..self.batches.len() {
            let keys = &self.keys[b];
            for (r, key) in keys.rows.iter().enumerate() {
                if !keys.is_valid(r) {
                    continue;
                }
                let key = key.as_ref();
                let at = (b as u32, r as u32);
                let hash = self.hasher.hash_one(key);
                let all = &self.keys;
                let same = |e: &Entry| {
                    let (b, r) = e.rows.first();
                    e.hash == hash && all[b as usize].rows.row(r as usize).as_ref() == key
                };
                match self.table.find_mut(hash, same) {
                    Some(e) => e.rows.push(at),
                    None => {
                        self.table.insert_unique(
                            hash,
                            Entry {
                                hash,
                                rows: Positions::One([at]),
                            },
                            |e| e.hash,
                        );
                    }
                }
            }
        }
        self.indexed = self.batches.len();
        self.pending_rows = 0;
        self.scanned = 0;
    }

    /// The stored batches with their keys, oldest first.
    pub(crate) fn into_parts(self) -> impl Iterator<Item = (RecordBatch, Keys)> {
        self.batches.into_iter().zip(self.keys)
    }
}

fn valid_rows(keys: &Keys) -> usize {
    let n = keys.rows.num_rows();
    keys.valid.as_ref().map_or(n, |v| n - v.null_count())
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use datafusion::arrow::array::{ArrayRef, Int64Array};
    use datafusion::arrow::datatypes::{DataType, Field, Schema};
    use datafusion::arrow::row::{RowConverter, SortField};
    use proptest::prelude::*;

    use super::*;

    fn keys(values: &[Option<i64>]) -> (RecordBatch, Keys) {
        let column: ArrayRef = Arc::new(Int64Array::from(values.to_vec()));
        let schema = Arc::new(Schema::new(vec![Field::new("k", DataType::Int64, true)]));
        let batch = RecordBatch::try_new(schema, vec![Arc::clone(&column)]).unwrap();
        let converter = RowConverter::new(vec![SortField::new(DataType::Int64)]).unwrap();
        let keys = Keys {
            rows: converter.convert_columns(&[Arc::clone(&column)]).unwrap(),
            valid: column.logical_nulls(),
        };
        (batch, keys)
    }

    /// What a nested loop over every stored row finds.
    fn nested_loop(stored: &[Vec<Option<i64>>], probe: &[Option<i64>]) -> Vec<(usize, (u32, u32))> {
        let mut found = Vec::new();
        for (i, p) in probe.iter().enumerate() {
            for (b, batch) in stored.iter().enumerate() {
                for (r, v) in batch.iter().enumerate() {
                    if p.is_some() && p == v {
                        found.push((i, (b as u32, r as u32)));
                    }
                }
            }
        }
        found
    }

    /// One step: store a batch, or probe with one.
    fn step() -> impl Strategy<Value = (bool, Vec<Option<i64>>)> {
        let value = prop_oneof![1 => Just(None), 6 => (0i64..12).prop_map(Some)];
        (any::<bool>(), prop::collection::vec(value, 0..40))
    }

    proptest! {
        /// Whether probes scan or use the index (small and large probes, interleaved with
        /// inserts), they find what a nested loop finds, in the same order.
        #[test]
        fn probes_find_what_a_nested_loop_finds(steps in prop::collection::vec(step(), 1..30)) {
            let mut index = Indexed::default();
            let mut stored: Vec<Vec<Option<i64>>> = Vec::new();
            for (store, values) in steps {
                let (batch, k) = keys(&values);
                if store {
                    index.insert(batch, k);
                    stored.push(values);
                } else {
                    let mut found = Vec::new();
                    index.probe(&k, |i, at| found.push((i, at)));
                    prop_assert_eq!(found, nested_loop(&stored, &values));
                }
            }
        }
    }

    #[test]
    fn a_single_probe_row_scans_and_many_index() {
        let mut index = Indexed::default();
        let values: Vec<Option<i64>> = (0..1000).map(Some).collect();
        let (batch, k) = keys(&values);
        index.insert(batch, k);
        let (_, one) = keys(&[Some(7)]);
        let mut found = Vec::new();
        index.probe(&one, |i, at| found.push((i, at)));
        assert_eq!(found, vec![(0, (0, 7))]);
        assert_eq!(index.indexed, 0, "one probe row scans");
        let (_, many) = keys(&values[..100]);
        let mut count = 0;
        index.probe(&many, |_, _| count += 1);
        assert_eq!(count, 100);
        assert_eq!(index.indexed, 1, "a hundred probe rows index");
    }
}
