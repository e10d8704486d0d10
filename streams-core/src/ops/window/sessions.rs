//! State of `SESSION` windows. Each key's open sessions are a sorted list; every session owns an
//! accumulator group ("slot"). When a row bridges sessions they merge, and the merged session
//! keeps all their slots. Firing detaches the partial state of every slot once and merges it
//! into two fresh sets of accumulators: one for the sessions that fire, one for those that stay
//! open (each folding all its slots into one). Work per firing is per open session, not per row,
//! and watermarks arrive every few hundred milliseconds, not per row.

use std::collections::HashMap;
use std::sync::Arc;

use datafusion::arrow::array::{
    Array, ArrayRef, BooleanArray, Int64Array, TimestampMillisecondArray, UInt32Array,
};
use datafusion::arrow::compute::{and, filter};
use datafusion::arrow::datatypes::DataType;
use datafusion::arrow::row::{RowConverter, Rows, SortField};
use datafusion::logical_expr::{EmitTo, GroupsAccumulator};

use super::groups::{AggregateSpec, Aggregates, Inputs, StateLayout, copy_states, restore_states};
use super::panes::{Bounds, Fired, typed};
use crate::state::{OperatorState, columns_batch, expect_types};
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

/// Names of the sessions' checkpoint state.
const SLOTS: &str = "session_slots";
const MIN_END: &str = "session_min_end";
const KEY_COUNT: &str = "session_key_count";
const KEYS: &str = "session_keys";
const OPEN: &str = "sessions";
const ABSORBED: &str = "session_absorbed";
const STATES: &str = "session_states";

impl Sessions {
    /// Puts the open sessions into `state` as they are: the keys in id order, every session
    /// (key id, start, end, slot), the slots each absorbed, and every slot's partial state.
    /// The accumulators keep their state and slots their numbers.
    pub(crate) fn checkpoint(
        &mut self,
        layout: &StateLayout,
        specs: &[AggregateSpec],
        state: &mut OperatorState,
    ) -> Result<()> {
        state.put_value(SLOTS, self.slots as i64);
        state.put_value(MIN_END, self.min_end);
        state.put_value(KEY_COUNT, self.open.len() as i64);
        if let Some(k) = &self.keys {
            let keys = k.converter.convert_rows(k.rows.iter())?;
            state.put_batch(KEYS, columns_batch(keys, k.rows.num_rows())?);
        }
        let (mut key, mut start, mut end, mut slot) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        let (mut owner, mut absorbed) = (Vec::new(), Vec::new());
        for (id, sessions) in self.open.iter().enumerate() {
            for s in sessions {
                for &a in &s.absorbed {
                    owner.push(key.len() as u32);
                    absorbed.push(a);
                }
                key.push(id as u32);
                start.push(s.window.start);
                end.push(s.window.end);
                slot.push(s.slot);
            }
        }
        let n = key.len();
        let columns: Vec<ArrayRef> = vec![
            Arc::new(UInt32Array::from(key)),
            Arc::new(Int64Array::from(start)),
            Arc::new(Int64Array::from(end)),
            Arc::new(UInt32Array::from(slot)),
        ];
        state.put_batch(OPEN, columns_batch(columns, n)?);
        let n = owner.len();
        let columns: Vec<ArrayRef> = vec![
            Arc::new(UInt32Array::from(owner)),
            Arc::new(UInt32Array::from(absorbed)),
        ];
        state.put_batch(ABSORBED, columns_batch(columns, n)?);
        let states = copy_states(&mut self.accs, specs, self.slots)?;
        let batch = layout
            .without_keys()
            .batch(&[], &states, Vec::new(), self.slots)?;
        state.put_batch(STATES, batch);
        Ok(())
    }

    /// Takes back what [`Sessions::checkpoint`] put, into empty sessions.
    pub(crate) fn restore(
        &mut self,
        state: &OperatorState,
        layout: &StateLayout,
        specs: &[AggregateSpec],
    ) -> Result<()> {
        let bad = |what: &str| Error::IncompatibleState(format!("session window state: {what}"));
        let value = |name: &str| state.value(name).ok_or_else(|| bad(&format!("no {name}")));
        let one = |name: &str| {
            let mut all = state.batches_named(name);
            match (all.next(), all.next()) {
                (Some(b), None) => Ok(b),
                _ => Err(bad(&format!("not one {name} batch"))),
            }
        };
        let count = |name: &str| usize::try_from(value(name)?).map_err(|_| bad(name));
        let slots = count(SLOTS)?;
        let key_count = count(KEY_COUNT)?;
        match &mut self.keys {
            Some(k) => {
                let keys = layout
                    .keys_only()
                    .split(one(KEYS)?, &[], "session window keys")?
                    .keys;
                k.rows = k.converter.convert_columns(&keys)?;
                k.ids = k
                    .rows
                    .iter()
                    .enumerate()
                    .map(|(id, row)| (row.as_ref().into(), id as u32))
                    .collect();
                if k.rows.num_rows() != key_count || k.ids.len() != key_count {
                    return Err(bad("keys do not match their count"));
                }
            }
            None if key_count > 1 => return Err(bad("several keys for sessions without keys")),
            None => {}
        }
        let open = one(OPEN)?;
        let types = [
            DataType::UInt32,
            DataType::Int64,
            DataType::Int64,
            DataType::UInt32,
        ];
        expect_types(open, &types, "session windows")?;
        let key = typed::<UInt32Array>(open.column(0))?;
        let start = typed::<Int64Array>(open.column(1))?;
        let end = typed::<Int64Array>(open.column(2))?;
        let slot = typed::<UInt32Array>(open.column(3))?;
        let slot_ok = |s: u32| (s as usize) < slots;
        let mut sessions: Vec<Vec<Session>> = vec![Vec::new(); key_count];
        let mut place = Vec::with_capacity(open.num_rows());
        for i in 0..open.num_rows() {
            let k = key.value(i) as usize;
            let list = sessions
                .get_mut(k)
                .ok_or_else(|| bad("a session of no key"))?;
            if !slot_ok(slot.value(i)) {
                return Err(bad("a session's slot is out of range"));
            }
            place.push((k, list.len()));
            list.push(Session {
                window: Window {
                    start: start.value(i),
                    end: end.value(i),
                },
                slot: slot.value(i),
                absorbed: Vec::new(),
            });
        }
        let absorbed = one(ABSORBED)?;
        expect_types(
            absorbed,
            &[DataType::UInt32, DataType::UInt32],
            "session slots",
        )?;
        let owner = typed::<UInt32Array>(absorbed.column(0))?;
        let other = typed::<UInt32Array>(absorbed.column(1))?;
        for i in 0..absorbed.num_rows() {
            let &(k, j) = place
                .get(owner.value(i) as usize)
                .ok_or_else(|| bad("a slot absorbed by no session"))?;
            if !slot_ok(other.value(i)) {
                return Err(bad("an absorbed slot is out of range"));
            }
            sessions[k][j].absorbed.push(other.value(i));
        }
        let batch = one(STATES)?;
        let states = layout
            .without_keys()
            .split(batch, &[], "session window aggregates")?
            .states;
        if batch.num_rows() != slots {
            return Err(bad("slot states do not match the slot count"));
        }
        self.accs = restore_states(specs, &states, slots)?;
        self.slots = slots;
        self.open = sessions;
        self.min_end = value(MIN_END)?;
        Ok(())
    }
}
