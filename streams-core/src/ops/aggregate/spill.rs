//! A bounded cache of the unbounded aggregate's groups over its subtask's RocksDB store
//! (`SET 'state.cache.keys'`): when more groups than that are in memory, the least recently
//! updated ones go to the keyed table `groups` (key: the group key in Arrow's row format;
//! value: its accumulator states, last emitted result and whether that is in the output table,
//! also row format), and come back when a row for them arrives. Results are the same as with
//! every group in memory; a checkpoint holds both parts (the store is captured at the barrier).

use std::sync::Arc;
use std::time::Instant;

use datafusion::arrow::array::{Array, ArrayRef, BooleanArray, UInt32Array, new_null_array};
use datafusion::arrow::compute::{concat, take};
use datafusion::arrow::datatypes::DataType;
use datafusion::arrow::row::{RowConverter, SortField};

use super::UnboundedAggregate;
use crate::ops::window::{copy_states, drain_keys, restore_states};
use crate::state::KeyedState;
use crate::{Error, Result};

/// The keyed table spilled groups live in.
const TABLE: &str = "groups";

/// Where and how groups spill.
pub(super) struct Spill {
    pub(super) store: Arc<dyn KeyedState>,
    keys: RowConverter,
    values: RowConverter,
    /// Number of state columns per aggregate, to split decoded values.
    state_widths: Vec<usize>,
    results: usize,
}

impl std::fmt::Debug for Spill {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Spill").finish_non_exhaustive()
    }
}

impl Spill {
    /// Row formats for `agg`'s keys and values; an error if a type has no row format.
    pub(super) fn new(agg: &UnboundedAggregate, store: Arc<dyn KeyedState>) -> Result<Self> {
        let keys: Vec<SortField> = agg
            .layout
            .keys
            .iter()
            .map(|t| SortField::new(t.clone()))
            .collect();
        let mut values: Vec<SortField> = agg
            .layout
            .states
            .iter()
            .flatten()
            .map(|t| SortField::new(t.clone()))
            .collect();
        let results = agg.result_types();
        values.extend(results.iter().map(|t| SortField::new(t.clone())));
        values.push(SortField::new(DataType::Boolean));
        if !RowConverter::supports_fields(&keys) || !RowConverter::supports_fields(&values) {
            return Err(Error::plan(
                "'state.cache.keys': this aggregate's keys or states have a type that cannot \
                 spill to the state store; remove the setting for this job",
            ));
        }
        Ok(Spill {
            store,
            keys: RowConverter::new(keys)?,
            values: RowConverter::new(values)?,
            state_widths: agg.layout.states.iter().map(Vec::len).collect(),
            results: results.len(),
        })
    }
}

impl UnboundedAggregate {
    /// Groups `before..` were just created by a batch whose row `first[i]` holds new group
    /// `before + i`'s key (`key_columns`): those that had spilled come back from the store.
    pub(super) fn unspill(
        &mut self,
        before: usize,
        key_columns: &[ArrayRef],
        first: &[u32],
    ) -> Result<()> {
        let Some(spill) = &self.spill else {
            return Ok(());
        };
        if first.is_empty() || self.spilled == 0 {
            return Ok(());
        }
        let idx = UInt32Array::from(first.to_vec());
        let picked: Vec<ArrayRef> = key_columns
            .iter()
            .map(|k| take(k.as_ref(), &idx, None))
            .collect::<Result<_, _>>()?;
        let rows = spill.keys.convert_columns(&picked)?;
        let keys: Vec<&[u8]> = (0..rows.num_rows()).map(|i| rows.row(i).data()).collect();
        let found = spill.store.get_many(TABLE, &keys)?;
        let mut ids = Vec::new();
        let mut hits = Vec::new();
        let mut gone: Vec<&[u8]> = Vec::new();
        for (i, v) in found.iter().enumerate() {
            if let Some(v) = v {
                ids.push(before + i);
                hits.push(v.as_slice());
                gone.push(keys[i]);
            }
        }
        if ids.is_empty() {
            return Ok(());
        }
        let parser = spill.values.parser();
        let columns = spill
            .values
            .convert_rows(hits.iter().map(|b| parser.parse(b)))?;
        let (widths, results) = (spill.state_widths.clone(), spill.results);
        spill.store.delete_many(TABLE, &gone)?;
        self.spilled = self.spilled.saturating_sub(gone.len() as u64);
        let g = self.groups;
        let mut at = 0;
        for (acc, w) in self.accs.iter_mut().zip(&widths) {
            acc.merge_batch(&columns[at..at + w], &ids, g)?;
            at += w;
        }
        let last = &columns[at..at + results];
        let present = columns
            .get(at + results)
            .and_then(|c| c.as_any().downcast_ref::<BooleanArray>())
            .ok_or_else(|| Error::IncompatibleState("spilled group without its flag".into()))?;
        // `last` gets one entry per group up to the highest restored one: older entries, the
        // restored ones, and nulls for groups that are new.
        let emitted = self.last.first().map_or(0, |c| c.len());
        let len = g.max(emitted);
        let mut map: Vec<Option<u32>> = (0..len)
            .map(|i| (i < emitted).then_some(i as u32))
            .collect();
        for (j, &id) in ids.iter().enumerate() {
            map[id] = Some((emitted + j) as u32);
        }
        let map = UInt32Array::from(map);
        let types = self.result_types();
        let mut merged = Vec::with_capacity(results);
        for (k, t) in types.iter().enumerate() {
            let old = self
                .last
                .get(k)
                .cloned()
                .unwrap_or_else(|| new_null_array(t, 0));
            let both = concat(&[old.as_ref(), last[k].as_ref()])?;
            merged.push(take(both.as_ref(), &map, None)?);
        }
        self.last = merged;
        self.present.resize(len, false);
        for (j, &id) in ids.iter().enumerate() {
            self.present[id] = present.value(j);
        }
        Ok(())
    }

    /// After an emission: if more groups than the cache holds are in memory, the least
    /// recently updated go to the store until three quarters of the cache is used.
    pub(super) fn spill_cold(&mut self) -> Result<()> {
        let (true, Some(cache)) = (self.spill.is_some(), self.config.cache) else {
            return Ok(());
        };
        let g = self.groups;
        if g <= cache || self.values.is_none() {
            return Ok(());
        }
        let keep = cache - cache / 4;
        // Only groups with an emitted result can go (all of them, right after an emission).
        let emitted = self.last.first().map_or(0, |c| c.len()).min(g);
        let mut order: Vec<u32> = (0..emitted as u32).collect();
        let times = self.ttl.times();
        let now = Instant::now();
        order.sort_by_key(|&i| std::cmp::Reverse(times.get(i as usize).copied().unwrap_or(now)));
        let keep_emitted = keep.saturating_sub(g - emitted).min(emitted);
        let (kept, cold) = order.split_at(keep_emitted);
        let (mut kept, mut cold) = (kept.to_vec(), cold.to_vec());
        kept.extend(emitted as u32..g as u32);
        kept.sort_unstable();
        cold.sort_unstable();
        if cold.is_empty() {
            return Ok(());
        }
        let (keys, states) = self.compact(&kept)?;
        let Some(spill) = &self.spill else {
            return Ok(());
        };
        let cold_idx = UInt32Array::from(cold.clone());
        let pick = |a: &ArrayRef| take(a.as_ref(), &cold_idx, None);
        let key_cols: Vec<ArrayRef> = keys.iter().map(pick).collect::<Result<_, _>>()?;
        let mut value_cols: Vec<ArrayRef> = states
            .iter()
            .flatten()
            .map(pick)
            .collect::<Result<_, _>>()?;
        // Emitted just before: every cold group has its last result.
        for l in &self.spilled_last {
            value_cols.push(pick(l)?);
        }
        let present: BooleanArray = cold
            .iter()
            .map(|&i| {
                Some(
                    self.spilled_present
                        .get(i as usize)
                        .copied()
                        .unwrap_or(false),
                )
            })
            .collect();
        value_cols.push(Arc::new(present));
        let key_rows = spill.keys.convert_columns(&key_cols)?;
        let value_rows = spill.values.convert_columns(&value_cols)?;
        let entries: Vec<(&[u8], &[u8])> = (0..cold.len())
            .map(|i| (key_rows.row(i).data(), value_rows.row(i).data()))
            .collect();
        spill.store.put_many(TABLE, &entries)?;
        self.spilled += cold.len() as u64;
        self.spilled_last.clear();
        self.spilled_present.clear();
        Ok(())
    }

    /// Keeps only groups `kept` (ascending ids) in memory, with their states, last results,
    /// flags and times; returns every group's keys and states as they were, for the caller
    /// to do something with the others. Last results and flags of all groups are left in
    /// `spilled_last` / `spilled_present`.
    pub(super) fn compact(&mut self, kept: &[u32]) -> Result<(Vec<ArrayRef>, Vec<Vec<ArrayRef>>)> {
        let g = self.groups;
        let idx = UInt32Array::from(kept.to_vec());
        let pick = |a: &ArrayRef| take(a.as_ref(), &idx, None);
        let keys = match &mut self.values {
            Some(v) => drain_keys(v.as_mut())?,
            None => Vec::new(),
        };
        let states = copy_states(&mut self.accs, &self.config.aggregates, g)?;
        let kept_keys: Vec<ArrayRef> = keys.iter().map(pick).collect::<Result<_, _>>()?;
        let kept_states: Vec<Vec<ArrayRef>> = states
            .iter()
            .map(|s| s.iter().map(pick).collect::<Result<Vec<_>, _>>())
            .collect::<Result<_, _>>()?;
        let n = kept.len();
        if let Some(v) = &mut self.values {
            // Kept keys are distinct and in id order: they get ids 0..n again.
            self.scratch.clear();
            v.intern(&kept_keys, &mut self.scratch)?;
        }
        self.accs = restore_states(&self.config.aggregates, &kept_states, n)?;
        self.groups = n;
        let emitted = self.last.first().map_or(0, |c| c.len());
        let idx_emitted = UInt32Array::from(
            kept.iter()
                .copied()
                .filter(|&i| (i as usize) < emitted)
                .collect::<Vec<_>>(),
        );
        self.spilled_last = std::mem::take(&mut self.last);
        self.last = self
            .spilled_last
            .iter()
            .map(|a| take(a.as_ref(), &idx_emitted, None))
            .collect::<Result<_, _>>()?;
        self.spilled_present = std::mem::take(&mut self.present);
        self.present = kept
            .iter()
            .map(|&i| {
                self.spilled_present
                    .get(i as usize)
                    .copied()
                    .unwrap_or(false)
            })
            .collect();
        self.touched = vec![false; n];
        self.ttl.retain(kept);
        Ok((keys, states))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests fail loudly")]

    use std::time::Duration;

    use datafusion::arrow::array::RecordBatch;
    use datafusion::arrow::util::pretty::pretty_format_batches;
    use datafusion::functions_aggregate::count::count_udaf;
    use datafusion::functions_aggregate::min_max::max_udaf;
    use datafusion::functions_aggregate::sum::sum_udaf;

    use super::*;
    use crate::Barrier;
    use crate::metrics::OperatorMetrics;
    use crate::operator::{Operator, OperatorContext, Output};
    use crate::ops::testkit::{aggregate, batch, schema};
    use crate::state::{CheckpointStorage, OperatorState, TaskKey};
    use crate::testing::MemoryCheckpoints;

    const KEY: TaskKey = TaskKey {
        node: 0,
        subtask: 0,
    };

    fn op(cache: Option<usize>, storage: &MemoryCheckpoints) -> Box<dyn Operator> {
        let input = schema();
        let aggs = vec![
            aggregate(count_udaf(), None, false, &input, "n"),
            aggregate(sum_udaf(), Some("v"), false, &input, "s"),
            aggregate(max_udaf(), Some("v"), false, &input, "hi"),
        ];
        let mut c =
            super::super::tests::config(&input, true, aggs, Duration::from_secs(3600), false);
        c.cache = cache;
        let mut op = Box::new(UnboundedAggregate::new(c).unwrap()) as Box<dyn Operator>;
        let ctx = OperatorContext {
            node: 0,
            name: "aggregate".into(),
            subtask: 0,
            parallelism: 1,
            metrics: Arc::new(OperatorMetrics::default()),
            storage: Some(Arc::new(storage.clone())),
        };
        op.start(&ctx).unwrap();
        op
    }

    /// 40 batches over 50 keys, each followed by an emission.
    fn batches() -> Vec<RecordBatch> {
        let mut x = 7u64;
        let keys: Vec<&'static str> = (0..50)
            .map(|i| &*Box::leak(format!("k{i:02}").into_boxed_str()))
            .collect();
        (0..40)
            .map(|_| {
                let rows: Vec<(&'static str, i64, i64)> = (0..12)
                    .map(|_| {
                        x ^= x << 13;
                        x ^= x >> 7;
                        x ^= x << 17;
                        (keys[(x % 50) as usize], (x % 100) as i64, 0)
                    })
                    .collect();
                batch(&rows)
            })
            .collect()
    }

    fn table(out: Vec<RecordBatch>, op: &dyn Operator) -> String {
        let _ = op;
        let schema = out[0].schema();
        let t = crate::changelog::materialize(&schema, &out).unwrap();
        let text = pretty_format_batches(&[t]).unwrap().to_string();
        let mut lines: Vec<&str> = text.lines().collect();
        lines.sort_unstable();
        lines.join("\n")
    }

    #[test]
    fn a_tiny_cache_gives_the_same_results_and_survives_a_restore() {
        let all = batches();
        let mut expected_out = Output::new();
        let mut whole = op(None, &MemoryCheckpoints::new());
        for (i, b) in all.iter().enumerate() {
            whole
                .process_batch(0, b.clone(), &mut expected_out)
                .unwrap();
            whole
                .process_watermark(i as i64, &mut expected_out)
                .unwrap();
        }
        let expected = table(expected_out.take(0), whole.as_ref());

        let storage = MemoryCheckpoints::new();
        let mut out = Output::new();
        let mut cached = op(Some(4), &storage);
        let mut state: Option<OperatorState> = None;
        for (i, b) in all.iter().take(25).enumerate() {
            cached.process_batch(0, b.clone(), &mut out).unwrap();
            cached.process_watermark(i as i64, &mut out).unwrap();
        }
        assert!(
            storage.keyed_len(KEY, TABLE) > 40,
            "most groups spilled: {}",
            storage.keyed_len(KEY, TABLE)
        );
        // A checkpoint: the operator's state, then its store as it is now.
        let s = cached
            .checkpoint(&Barrier {
                id: 1,
                then_stop: false,
            })
            .unwrap()
            .unwrap();
        state.replace(OperatorState::decode(&s.encode().unwrap()).unwrap());
        storage.write(KEY, &s.encode().unwrap()).unwrap();
        storage.snapshot(KEY, 1).unwrap();
        storage.complete(1, b"").unwrap();
        // After the checkpoint the first operator goes on (and spills more); it is then lost.
        cached
            .process_batch(0, all[25].clone(), &mut Output::new())
            .unwrap();
        cached.process_watermark(25, &mut Output::new()).unwrap();
        drop(cached);

        let resumed = storage.resume();
        let mut again = op(Some(4), &resumed);
        // `restore` comes before `start` in a job; here the store is already attached.
        again.restore(state.take().unwrap()).unwrap();
        for (i, b) in all.iter().enumerate().skip(25) {
            again.process_batch(0, b.clone(), &mut out).unwrap();
            again.process_watermark(i as i64, &mut out).unwrap();
        }
        let got = table(out.take(0), again.as_ref());
        assert_eq!(got, expected);
    }
}
