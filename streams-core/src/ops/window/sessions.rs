//! State of `SESSION` windows. Each key's open sessions are a sorted list; every session owns an
//! accumulator group ("slot"). When a row bridges sessions they merge, and the merged session
//! keeps all their slots. Firing detaches the partial state of every slot once and merges it
//! into two fresh sets of accumulators: one for the sessions that fire, one for those that stay
//! open (each folding all its slots into one). Work per firing is per open session, not per row,
//! and watermarks arrive every few hundred milliseconds, not per row.

use std::collections::HashMap;

use datafusion::arrow::array::{Array, ArrayRef, BooleanArray, TimestampMillisecondArray};
use datafusion::arrow::compute::{and, filter};
use datafusion::arrow::row::{RowConverter, Rows, SortField};
use datafusion::logical_expr::{EmitTo, GroupsAccumulator};

use super::groups::{Aggregates, Inputs};
use super::panes::{Bounds, Fired};
use crate::window::Window;
use crate::{Error, Result};

/// Below this many keys, idle ones are not worth forgetting.
const COMPACT_MIN_KEYS: usize = 64;

#[derive(Clone, Debug)]
struct Session {
    window: Window,
    slot: u32,
    absorbed: Vec<u32>,
}

/// Keys to dense ids, with the key values kept to rebuild output columns.
struct KeyIds {
    converter: RowConverter,
    ids: HashMap<Box<[u8]>, u32>,
    rows: Rows,
}

/// Open sessions of one operator subtask.
pub(crate) struct Sessions {
    gap: i64,
    keys: Option<KeyIds>,
    open: Vec<Vec<Session>>,
    accs: Vec<Box<dyn GroupsAccumulator>>,
    slots: usize,
    /// No open session ends before this (a lower bound): skips scans when nothing can fire.
    min_end: i64,
    scratch: Vec<usize>,
}

impl std::fmt::Debug for Sessions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sessions")
            .field("gap", &self.gap)
            .field("slots", &self.slots)
            .finish_non_exhaustive()
    }
}

impl Sessions {
    pub(crate) fn new(gap: i64, aggs: &Aggregates) -> Result<Self> {
        let keys = if aggs.key_schema.fields().is_empty() {
            None
        } else {
            let fields = aggs
                .key_schema
                .fields()
                .iter()
                .map(|f| SortField::new(f.data_type().clone()))
                .collect();
            let converter = RowConverter::new(fields)?;
            let rows = converter.empty_rows(0, 0);
            Some(KeyIds {
                converter,
                ids: HashMap::new(),
                rows,
            })
        };
        Ok(Sessions {
            gap,
            keys,
            open: Vec::new(),
            accs: aggs.accumulators()?,
            slots: 0,
            min_end: i64::MAX,
            scratch: Vec::new(),
        })
    }

    /// Aggregates rows into their keys' sessions, except late ones: rows without a time, and
    /// rows whose own session `[ts, ts + gap)` has ended at `horizon` and that touch no open
    /// session of their key (such a row would still merge into it). Returns the late rows.
    pub(crate) fn add(
        &mut self,
        ts: &TimestampMillisecondArray,
        inputs: Inputs,
        horizon: Option<i64>,
    ) -> Result<Option<BooleanArray>> {
        let ids = self.key_ids(&inputs.keys, ts.len())?;
        let mut groups = std::mem::take(&mut self.scratch);
        groups.clear();
        let mut late = vec![false; ts.len()];
        let mut late_count = 0;
        for (i, &key) in ids.iter().enumerate() {
            let key = key as usize;
            let t = ts.value(i);
            let gone = ts.is_null(i)
                || horizon
                    .is_some_and(|h| t.saturating_add(self.gap) <= h && !self.touches(key, t));
            if gone {
                late[i] = true;
                late_count += 1;
                // Filtered out below; any existing group index will do.
                groups.push(0);
            } else {
                groups.push(self.insert(key, t) as usize);
            }
        }
        if late_count < ts.len() {
            let on_time = (late_count > 0)
                .then(|| BooleanArray::from(late.iter().map(|l| !l).collect::<Vec<_>>()));
            for ((acc, args), filter) in self.accs.iter_mut().zip(&inputs.args).zip(&inputs.filters)
            {
                let filter = match (filter, &on_time) {
                    (f, None) => f.clone(),
                    (None, Some(o)) => Some(o.clone()),
                    (Some(f), Some(o)) => Some(and(f, o)?),
                };
                acc.update_batch(args, &groups, filter.as_ref(), self.slots)?;
            }
        }
        self.scratch = groups;
        Ok((late_count > 0).then(|| BooleanArray::from(late)))
    }

    /// Whether a row of `key` at `ts` touches one of its open sessions.
    fn touches(&self, key: usize, ts: i64) -> bool {
        let Some(sessions) = self.open.get(key) else {
            return false;
        };
        let i = sessions.partition_point(|s| s.window.end < ts);
        sessions
            .get(i)
            .is_some_and(|s| s.window.start <= ts.saturating_add(self.gap))
    }

    fn key_ids(&mut self, keys: &[ArrayRef], rows: usize) -> Result<Vec<u32>> {
        let Some(k) = &mut self.keys else {
            if self.open.is_empty() {
                self.open.push(Vec::new());
            }
            return Ok(vec![0; rows]);
        };
        let converted = k.converter.convert_columns(keys)?;
        let mut ids = Vec::with_capacity(rows);
        for row in converted.iter() {
            let id = match k.ids.get(row.as_ref()) {
                Some(&id) => id,
                None => {
                    let id = u32::try_from(k.rows.num_rows())
                        .map_err(|_| Error::Internal("more than 2^32 session keys".into()))?;
                    k.rows.push(row);
                    k.ids.insert(row.as_ref().into(), id);
                    self.open.push(Vec::new());
                    id
                }
            };
            ids.push(id);
        }
        Ok(ids)
    }

    /// Puts a row of `key` at `ts` into its session; returns the session's slot.
    fn insert(&mut self, key: usize, ts: i64) -> u32 {
        let gap = self.gap;
        let sessions = &mut self.open[key];
        let mut window = Window {
            start: ts,
            end: ts.saturating_add(gap),
        };
        // Sessions touching [ts, ts + gap] are a contiguous run of the sorted list.
        let first = sessions.partition_point(|s| s.window.end < window.start);
        let mut last = first;
        while last < sessions.len() && sessions[last].window.start <= window.end {
            last += 1;
        }
        let slot = if first == last {
            let slot = self.slots as u32;
            self.slots += 1;
            sessions.insert(
                first,
                Session {
                    window,
                    slot,
                    absorbed: Vec::new(),
                },
            );
            slot
        } else {
            let mut merged = sessions.drain(first..last);
            let mut head = merged.next().unwrap_or(Session {
                window,
                slot: 0,
                absorbed: Vec::new(),
            });
            for other in merged {
                head.absorbed.push(other.slot);
                head.absorbed.extend(other.absorbed);
                window.start = window.start.min(other.window.start);
                window.end = window.end.max(other.window.end);
            }
            head.window.start = head.window.start.min(window.start);
            head.window.end = head.window.end.max(window.end);
            window = head.window;
            let slot = head.slot;
            sessions.insert(first, head);
            slot
        };
        self.min_end = self.min_end.min(window.end);
        slot
    }

    /// Drops keys without open sessions once they are most of the keys, so state follows the
    /// active keys rather than every key ever seen. Slots are per session, not per key, so
    /// only key ids change.
    fn forget_idle_keys(&mut self) {
        let Some(k) = &mut self.keys else {
            return;
        };
        let live = self.open.iter().filter(|s| !s.is_empty()).count();
        if self.open.len() < COMPACT_MIN_KEYS || live * 2 > self.open.len() {
            return;
        }
        let mut rows = k.converter.empty_rows(live, 0);
        let mut ids = HashMap::with_capacity(live);
        let mut open = Vec::with_capacity(live);
        for (id, sessions) in std::mem::take(&mut self.open).into_iter().enumerate() {
            if sessions.is_empty() {
                continue;
            }
            let row = k.rows.row(id);
            ids.insert(row.as_ref().into(), open.len() as u32);
            rows.push(row);
            open.push(sessions);
        }
        k.rows = rows;
        k.ids = ids;
        self.open = open;
    }

    /// Fires every session ending at or before `horizon`.
    pub(crate) fn fire(&mut self, horizon: i64, aggs: &Aggregates) -> Result<Option<Fired>> {
        if self.min_end > horizon || self.slots == 0 {
            return Ok(None);
        }
        // `min_end` is only a lower bound (merges move ends): look before renumbering slots.
        let any_ready = self
            .open
            .iter()
            .any(|sessions| sessions.first().is_some_and(|s| s.window.end <= horizon));
        if !any_ready {
            self.min_end = self
                .open
                .iter()
                .filter_map(|sessions| sessions.first().map(|s| s.window.end))
                .min()
                .unwrap_or(i64::MAX);
            return Ok(None);
        }
        let n = self.slots;
        let mut ready = vec![false; n];
        let mut out_group = vec![0usize; n];
        let mut live_group = vec![0usize; n];
        let (mut fired_keys, mut starts, mut ends) = (Vec::new(), Vec::new(), Vec::new());
        let mut live_slots = 0usize;
        let mut min_end = i64::MAX;
        for (key, sessions) in self.open.iter_mut().enumerate() {
            let done = sessions.partition_point(|s| s.window.end <= horizon);
            for s in sessions.drain(..done) {
                let g = starts.len();
                for slot in std::iter::once(s.slot).chain(s.absorbed.iter().copied()) {
                    ready[slot as usize] = true;
                    out_group[slot as usize] = g;
                }
                fired_keys.push(key as u32);
                starts.push(s.window.start);
                ends.push(s.window.end);
            }
            for s in sessions.iter_mut() {
                for slot in std::iter::once(s.slot).chain(s.absorbed.drain(..)) {
                    live_group[slot as usize] = live_slots;
                }
                s.slot = live_slots as u32;
                live_slots += 1;
                min_end = min_end.min(s.window.end);
            }
        }
        self.min_end = min_end;
        // Split every slot's partial state into the firing part and the staying part.
        let ready = BooleanArray::from(ready);
        let open = datafusion::arrow::compute::not(&ready)?;
        let pick = |groups: &[usize], mask: &BooleanArray| -> Vec<usize> {
            groups
                .iter()
                .zip(mask.values().iter())
                .filter_map(|(g, keep)| keep.then_some(*g))
                .collect()
        };
        let (fired_groups, live_groups) = (pick(&out_group, &ready), pick(&live_group, &open));
        let mut fired_accs = aggs.accumulators()?;
        let mut live_accs = aggs.accumulators()?;
        for ((acc, fired), live) in self
            .accs
            .iter_mut()
            .zip(&mut fired_accs)
            .zip(&mut live_accs)
        {
            let state = acc.state(EmitTo::All)?;
            let part = |mask: &BooleanArray| -> Result<Vec<ArrayRef>> {
                state
                    .iter()
                    .map(|a| Ok(filter(a.as_ref(), mask)?))
                    .collect()
            };
            fired.merge_batch(&part(&ready)?, &fired_groups, starts.len())?;
            if live_slots > 0 {
                live.merge_batch(&part(&open)?, &live_groups, live_slots)?;
            }
        }
        self.accs = live_accs;
        self.slots = live_slots;
        let values = fired_accs
            .iter_mut()
            .map(|a| a.evaluate(EmitTo::All))
            .collect::<Result<_, _>>()?;
        let keys = match &self.keys {
            Some(k) => k
                .converter
                .convert_rows(fired_keys.iter().map(|&id| k.rows.row(id as usize)))?,
            None => Vec::new(),
        };
        self.forget_idle_keys();
        Ok(Some(Fired {
            bounds: Bounds::PerRow(starts, ends),
            keys,
            values,
            rows: fired_keys.len(),
        }))
    }
}
