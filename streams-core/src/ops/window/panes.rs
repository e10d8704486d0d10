//! State of `TUMBLE`, `HOP` and `CUMULATE` windows as panes: each row is aggregated once, into
//! the pane holding its time, and a window's result merges the panes it covers. A HOP of size
//! 10 s and slide 2 s thus touches each row once instead of five times; a pane's state is sealed
//! into a chunk once and merged into each of its windows.
//!
//! For these kinds a window is identified by its end (no two windows of one spec end at the same
//! time), so "every window ending at or before `fired_end` has fired" is the whole firing state.

use std::collections::{BTreeMap, BTreeSet};

use datafusion::arrow::array::{ArrayRef, UInt32Array};

use super::groups::{Aggregates, GroupTable, Inputs, StateChunk};
use crate::Result;
use crate::window::{Window, WindowSpec};

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
            None => Err(crate::Error::Internal("pane without a table".into())),
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
