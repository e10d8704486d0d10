//! State of `TUMBLE`, `HOP` and `CUMULATE` windows as panes: each row is aggregated once, into
//! the pane holding its time, and a window's result merges the panes it covers. A HOP of size
//! 10 s and slide 2 s thus touches each row once instead of five times; a pane's state is sealed
//! into a chunk once and merged into each of its windows.
//!
//! For these kinds a window is identified by its end (no two windows of one spec end at the same
//! time), so "every window ending at or before `fired_end` has fired" is the whole firing state.

use std::collections::{BTreeMap, BTreeSet};

use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, BooleanArray, Int64Array, UInt32Array};
use datafusion::arrow::datatypes::DataType;

use super::groups::{Aggregates, GroupTable, Inputs, StateChunk, StateLayout};
use crate::state::{OperatorState, columns_batch, expect_types};
use crate::window::{Window, WindowSpec};
use crate::{Error, Result};

#[derive(Debug, Default)]
struct Pane {
    live: Option<GroupTable>,
    chunks: Vec<StateChunk>,
}

/// Which window each fired row belongs to.
#[derive(Debug)]
pub(crate) enum Bounds {
    /// All rows: one window.
    One(Window),
    /// Row i: `[starts[i], ends[i])` (sessions).
    PerRow(Vec<i64>, Vec<i64>),
}

/// The final values of fired windows' groups.
#[derive(Debug)]
pub(crate) struct Fired {
    pub(crate) bounds: Bounds,
    pub(crate) keys: Vec<ArrayRef>,
    pub(crate) values: Vec<ArrayRef>,
    pub(crate) rows: usize,
}

/// Open panes of one operator subtask.
#[derive(Debug)]
pub(crate) struct Panes {
    spec: WindowSpec,
    pane_size: i64,
    offset: i64,
    panes: BTreeMap<i64, Pane>,
    fired_end: i64,
}

fn aligned(ts: i64, size: i64, offset: i64) -> i64 {
    let r = (i128::from(ts) - i128::from(offset)).rem_euclid(i128::from(size));
    ts.saturating_sub(r as i64)
}

impl Panes {
    pub(crate) fn new(spec: WindowSpec) -> Self {
        let (pane_size, offset) = match spec {
            WindowSpec::Tumble { size, offset } => (size, offset),
            WindowSpec::Hop { slide, .. } => (slide, 0),
            WindowSpec::Cumulate { step, .. } => (step, 0),
            // Sessions have their own state; a pane of the gap keeps this total anyway.
            WindowSpec::Session { gap } => (gap, 0),
        };
        Panes {
            spec,
            pane_size,
            offset,
            panes: BTreeMap::new(),
            fired_end: i64::MIN,
        }
    }

    fn pane_start(&self, ts: i64) -> i64 {
        aligned(ts, self.pane_size, self.offset)
    }

    /// End of the last window that covers the pane starting at `start`.
    fn last_end(&self, start: i64) -> i64 {
        match self.spec {
            WindowSpec::Hop { size, .. } => start.saturating_add(size),
            WindowSpec::Cumulate { max, .. } => aligned(start, max, 0).saturating_add(max),
            WindowSpec::Tumble { .. } | WindowSpec::Session { .. } => {
                start.saturating_add(self.pane_size)
            }
        }
    }

    fn window_of_end(&self, end: i64) -> Window {
        let start = match self.spec {
            WindowSpec::Tumble { size, .. } | WindowSpec::Hop { size, .. } => {
                end.saturating_sub(size)
            }
            WindowSpec::Cumulate { max, .. } => aligned(end.saturating_sub(1), max, 0),
            WindowSpec::Session { gap } => end.saturating_sub(gap),
        };
        Window { start, end }
    }

    /// Whether a row at `ts` is too late for every window covering it, when every window
    /// ending at or before `horizon` has fired.
    pub(crate) fn is_late(&self, ts: i64, horizon: i64) -> bool {
        self.last_end(self.pane_start(ts)) <= horizon
    }

    /// Aggregates rows (none late) into their panes.
    pub(crate) fn add(&mut self, ts: &[i64], inputs: Inputs, aggs: &Aggregates) -> Result<()> {
        let Some(&first) = ts.first() else {
            return Ok(());
        };
        let first = self.pane_start(first);
        let (lo, hi) = (first, first.saturating_add(self.pane_size));
        if ts.iter().all(|&t| lo <= t && t < hi) {
            return self.pane(first, aggs)?.update(&inputs);
        }
        let mut rows: BTreeMap<i64, Vec<u32>> = BTreeMap::new();
        for (i, &t) in ts.iter().enumerate() {
            rows.entry(self.pane_start(t)).or_default().push(i as u32);
        }
        for (start, idx) in rows {
            let part = inputs.take(&UInt32Array::from(idx))?;
            self.pane(start, aggs)?.update(&part)?;
        }
        Ok(())
    }

    fn pane(&mut self, start: i64, aggs: &Aggregates) -> Result<&mut GroupTable> {
        let pane = self.panes.entry(start).or_default();
        if pane.live.is_none() {
            pane.live = Some(GroupTable::new(aggs)?);
        }
        match pane.live.as_mut() {
            Some(t) => Ok(t),
            None => Err(Error::Internal("pane without a table".into())),
        }
    }

    /// Fires, oldest first, every window ending in `(fired_end, horizon]` that holds data, and
    /// drops panes no later window needs.
    pub(crate) fn fire(&mut self, horizon: i64, aggs: &Aggregates) -> Result<Vec<Fired>> {
        if horizon <= self.fired_end {
            return Ok(Vec::new());
        }
        let ends = self.ends_between(self.fired_end, horizon);
        let mut fired = Vec::with_capacity(ends.len());
        for end in ends {
            let window = self.window_of_end(end);
            fired.push(self.evaluate(window, Some(horizon), aggs)?);
        }
        self.fired_end = horizon;
        let keep = self
            .panes
            .keys()
            .position(|&s| self.last_end(s) > horizon)
            .unwrap_or(self.panes.len());
        // Panes are ordered by start and last_end grows with start: drop a prefix.
        if let Some(&first_kept) = self.panes.keys().nth(keep) {
            self.panes = self.panes.split_off(&first_kept);
        } else {
            self.panes.clear();
        }
        Ok(fired)
    }

    /// Current values of every window that has data and has not fired (early firing). Leaves
    /// the state as it was, apart from sealing live panes into chunks.
    pub(crate) fn peek(&mut self, aggs: &Aggregates) -> Result<Vec<Fired>> {
        let ends = self.ends_between(self.fired_end, i64::MAX);
        let mut out = Vec::with_capacity(ends.len());
        for end in ends {
            let window = self.window_of_end(end);
            out.push(self.evaluate(window, None, aggs)?);
        }
        Ok(out)
    }

    fn ends_between(&self, after: i64, upto: i64) -> BTreeSet<i64> {
        let mut ends = BTreeSet::new();
        for &start in self.panes.keys() {
            if start >= upto {
                break;
            }
            for w in self.spec.assign(start) {
                if w.end > after && w.end <= upto {
                    ends.insert(w.end);
                }
            }
        }
        ends
    }

    /// The window's values. With `horizon`, a window made of a single never-sealed pane that
    /// is dropped afterwards is evaluated in place (the common TUMBLE case: no copy of state).
    fn evaluate(
        &mut self,
        window: Window,
        horizon: Option<i64>,
        aggs: &Aggregates,
    ) -> Result<Fired> {
        let mut covered: Vec<i64> = self
            .panes
            .range(window.start..window.end)
            .map(|(&s, _)| s)
            .collect();
        // The window is the last user of its only pane (always so for TUMBLE).
        if let ([only], Some(_)) = (covered.as_slice(), horizon)
            && self.last_end(*only) == window.end
            && let Some(p) = self.panes.get_mut(only)
            && p.chunks.is_empty()
            && let Some(mut live) = p.live.take()
        {
            let (keys, values, rows) = live.evaluate()?;
            return Ok(Fired {
                bounds: Bounds::One(window),
                keys,
                values,
                rows,
            });
        }
        let mut table = GroupTable::new(aggs)?;
        for start in covered.drain(..) {
            if let Some(p) = self.panes.get_mut(&start) {
                if let Some(mut live) = p.live.take() {
                    p.chunks.push(live.seal()?);
                }
                for c in &p.chunks {
                    table.merge(c)?;
                }
            }
        }
        let (keys, values, rows) = table.evaluate()?;
        Ok(Fired {
            bounds: Bounds::One(window),
            keys,
            values,
            rows,
        })
    }
}

/// Names of the panes' checkpoint state.
const FIRED_END: &str = "fired_end";
const PANES: &str = "panes";
const PANE_CHUNK: &str = "pane_chunk";

impl Panes {
    /// Puts every pane into `state`: an index batch (start, number of sealed chunks, whether
    /// a live table follows) and, in pane order, each pane's chunks then its live table as
    /// chunk batches. Live tables keep their groups (snapshotted, not sealed).
    pub(crate) fn checkpoint(
        &mut self,
        layout: &StateLayout,
        state: &mut OperatorState,
    ) -> Result<()> {
        state.put_value(FIRED_END, self.fired_end);
        let n = self.panes.len();
        let (mut starts, mut chunks, mut live) = (
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
        );
        for (&start, pane) in &mut self.panes {
            starts.push(start);
            chunks.push(
                u32::try_from(pane.chunks.len())
                    .map_err(|_| Error::Internal("more than 2^32 chunks in a pane".into()))?,
            );
            live.push(pane.live.is_some());
            for c in &pane.chunks {
                state.put_batch(PANE_CHUNK, layout.chunk_batch(c)?);
            }
            if let Some(table) = &mut pane.live {
                state.put_batch(PANE_CHUNK, layout.chunk_batch(&table.snapshot()?)?);
            }
        }
        let index: Vec<ArrayRef> = vec![
            Arc::new(Int64Array::from(starts)),
            Arc::new(UInt32Array::from(chunks)),
            Arc::new(BooleanArray::from(live)),
        ];
        state.put_batch(PANES, columns_batch(index, n)?);
        Ok(())
    }

    /// Takes back what [`Panes::checkpoint`] put, into empty panes.
    pub(crate) fn restore(
        &mut self,
        state: &OperatorState,
        layout: &StateLayout,
        aggs: &Aggregates,
    ) -> Result<()> {
        let missing = |what: &str| Error::IncompatibleState(format!("window state: no {what}"));
        self.fired_end = state.value(FIRED_END).ok_or_else(|| missing(FIRED_END))?;
        let mut indexes = state.batches_named(PANES);
        let index = indexes.next().ok_or_else(|| missing(PANES))?;
        if indexes.next().is_some() {
            return Err(Error::IncompatibleState(
                "window state: two pane indexes".into(),
            ));
        }
        expect_types(
            index,
            &[DataType::Int64, DataType::UInt32, DataType::Boolean],
            "window panes",
        )?;
        let starts = typed::<Int64Array>(index.column(0))?;
        let counts = typed::<UInt32Array>(index.column(1))?;
        let live = typed::<BooleanArray>(index.column(2))?;
        let mut chunks = state.batches_named(PANE_CHUNK);
        let mut next_chunk = || -> Result<StateChunk> {
            let batch = chunks
                .next()
                .ok_or_else(|| missing("pane chunk where the index has one"))?;
            layout.chunk(batch, "window pane state")
        };
        self.panes.clear();
        for i in 0..index.num_rows() {
            let mut pane = Pane::default();
            for _ in 0..counts.value(i) {
                pane.chunks.push(next_chunk()?);
            }
            if live.value(i) {
                let mut table = GroupTable::new(aggs)?;
                table.merge(&next_chunk()?)?;
                pane.live = Some(table);
            }
            self.panes.insert(starts.value(i), pane);
        }
        if chunks.next().is_some() {
            return Err(Error::IncompatibleState(
                "window state: more pane chunks than its index lists".into(),
            ));
        }
        Ok(())
    }
}

/// `column` as the array type its checked data type implies.
pub(crate) fn typed<T: Array + 'static>(column: &ArrayRef) -> Result<&T> {
    column.as_any().downcast_ref::<T>().ok_or_else(|| {
        Error::IncompatibleState(format!(
            "window state: unexpected column of {}",
            column.data_type()
        ))
    })
}
