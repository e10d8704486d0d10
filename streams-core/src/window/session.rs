//! Session windows of one key: windows that grow while events keep arriving within the gap,
//! and merge when an event bridges two of them (out-of-order input makes that common).

use super::{Window, WindowSpec};

/// A session that an insert created or grew, and the sessions it absorbed, whose state the
/// operator must merge into it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionMerge {
    /// The session now holding the event.
    pub window: Window,
    /// Earlier sessions now part of `window` (their state moves into it).
    pub absorbed: Vec<Window>,
}

/// One key's open sessions, sorted by start and pairwise apart by more than nothing: two
/// sessions that touch or overlap are one (Flink merges windows that intersect).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Sessions {
    open: Vec<Window>,
}

impl Sessions {
    /// No sessions.
    pub fn new() -> Self {
        Sessions::default()
    }

    /// The open sessions, by start.
    pub fn windows(&self) -> &[Window] {
        &self.open
    }

    /// Adds an event at `ts` with inactivity gap `gap`; returns the session that holds it and
    /// the sessions merged into that one.
    pub fn insert(&mut self, ts: i64, gap: i64) -> SessionMerge {
        let mut window = Window {
            start: ts,
            end: ts.saturating_add(gap),
        };
        // Sessions intersecting [ts, ts + gap] form a contiguous run in the sorted list.
        let first = self.open.partition_point(|w| w.end < window.start);
        let mut last = first;
        while last < self.open.len() && self.open[last].start <= window.end {
            last += 1;
        }
        let absorbed: Vec<Window> = self.open.drain(first..last).collect();
        for w in &absorbed {
            window.start = window.start.min(w.start);
            window.end = window.end.max(w.end);
        }
        // An event inside an existing session that does not extend it absorbs nothing new.
        let absorbed = if absorbed.len() == 1 && absorbed[0] == window {
            Vec::new()
        } else {
            absorbed
        };
        self.open.insert(first, window);
        SessionMerge { window, absorbed }
    }

    /// Removes and returns, oldest first, the sessions that may fire at `watermark`.
    pub fn take_ready(&mut self, watermark: i64, allowed_lateness: i64) -> Vec<Window> {
        let n = self
            .open
            .partition_point(|w| WindowSpec::fires(w.end, watermark, allowed_lateness));
        self.open.drain(..n).collect()
    }

    /// Whether no session is open.
    pub fn is_empty(&self) -> bool {
        self.open.is_empty()
    }
}
