//! Window assignment: which windows an event time belongs to, for Flink's window table functions
//! `TUMBLE`, `HOP`, `CUMULATE` and `SESSION`. Pure functions of time, so operators stay simple
//! and the rules are tested without a runtime.
//!
//! Times are event-time milliseconds since the Unix epoch, as in the store and in Flink's
//! `TIMESTAMP(3)`. Windows are half-open, `[start, end)`, aligned to the epoch (plus an offset
//! for tumbling windows), as Flink aligns them.

mod session;

pub use session::{SessionMerge, Sessions};

/// A window `[start, end)` in event-time milliseconds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Window {
    /// First millisecond inside the window.
    pub start: i64,
    /// First millisecond after it.
    pub end: i64,
}

impl Window {
    /// Flink's `window_time`: the last millisecond inside the window.
    pub fn max_timestamp(&self) -> i64 {
        self.end - 1
    }

    /// Whether `ts` falls inside.
    pub fn contains(&self, ts: i64) -> bool {
        self.start <= ts && ts < self.end
    }
}

/// A window kind with its sizes, in milliseconds. All sizes are positive.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Hash)]
pub enum WindowSpec {
    /// Fixed, non-overlapping windows of `size`, shifted by `offset` from the epoch.
    Tumble {
        /// Window length.
        size: i64,
        /// Alignment shift, `0 <= offset < size`.
        offset: i64,
    },
    /// Windows of `size` starting every `slide` (Flink's `HOP(..., slide, size)`); each time is
    /// in `ceil(size / slide)` windows when `slide` divides `size`.
    Hop {
        /// Window length.
        size: i64,
        /// Distance between window starts.
        slide: i64,
    },
    /// Windows that grow by `step` from the start of each `max`-long period: `[p, p+step)`,
    /// `[p, p+2*step)`, ... `[p, p+max)` (Flink's `CUMULATE(..., step, max)`).
    Cumulate {
        /// Growth step; divides `max`.
        step: i64,
        /// Period and largest window.
        max: i64,
    },
    /// Per-key activity sessions closed by a gap of `gap` without events; see [`Sessions`].
    Session {
        /// Inactivity gap.
        gap: i64,
    },
}

/// Why a window spec cannot be used.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InvalidWindow(pub String);

impl std::fmt::Display for InvalidWindow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for InvalidWindow {}

/// Start of the window of length `size` (aligned to `offset`) that holds `ts`; correct for
/// negative times too.
fn aligned_start(ts: i64, size: i64, offset: i64) -> i64 {
    // In i128: times near the ends of the i64 range (a "never" timestamp) must not overflow.
    let r = (i128::from(ts) - i128::from(offset)).rem_euclid(i128::from(size));
    ts.saturating_sub(r as i64)
}

impl WindowSpec {
    /// Checks the sizes, naming what is wrong.
    pub fn validate(&self) -> Result<(), InvalidWindow> {
        let bad = |m: String| Err(InvalidWindow(m));
        match *self {
            WindowSpec::Tumble { size, offset } if size <= 0 => bad(format!(
                "TUMBLE size must be positive, got {size} ms (offset {offset})"
            )),
            WindowSpec::Tumble { size, offset } if !(0..size).contains(&offset) => {
                bad(format!("TUMBLE offset {offset} ms must be in 0..{size} ms"))
            }
            WindowSpec::Hop { size, slide } if size <= 0 || slide <= 0 => bad(format!(
                "HOP size ({size} ms) and slide ({slide} ms) must be positive"
            )),
            WindowSpec::Hop { size, slide } if size % slide != 0 => bad(format!(
                "HOP size ({size} ms) must be a multiple of its slide ({slide} ms)"
            )),
            WindowSpec::Cumulate { step, max } if step <= 0 || max <= 0 || max % step != 0 => {
                bad(format!(
                    "CUMULATE step ({step} ms) must be positive and divide the max size ({max} ms)"
                ))
            }
            WindowSpec::Session { gap } if gap <= 0 => {
                bad(format!("SESSION gap must be positive, got {gap} ms"))
            }
            _ => Ok(()),
        }
    }

    /// The windows (other than session windows) that hold `ts`, in increasing start order.
    /// For `Session`, the window of a lone event: `[ts, ts + gap)`.
    pub fn assign(&self, ts: i64) -> impl Iterator<Item = Window> + use<> {
        let (first, count, step_start, step_end, len): (i64, i64, i64, i64, i64) = match *self {
            WindowSpec::Tumble { size, offset } => (aligned_start(ts, size, offset), 1, 0, 0, size),
            WindowSpec::Hop { size, slide } => {
                // The newest window holding ts starts at its slide-aligned start; the others
                // start `slide` apart before it.
                let last = aligned_start(ts, slide, 0);
                let n = size / slide;
                (
                    last.saturating_sub((n - 1).saturating_mul(slide)),
                    n,
                    slide,
                    0,
                    size,
                )
            }
            WindowSpec::Cumulate { step, max } => {
                // Period start p; ts is in every [p, p + k*step) with p + k*step > ts.
                let p = aligned_start(ts, max, 0);
                let first_k = (ts - p) / step + 1;
                let n = max / step - first_k + 1;
                (p, n, 0, step, first_k * step)
            }
            WindowSpec::Session { gap } => (ts, 1, 0, 0, gap),
        };
        (0..count.max(0)).map(move |i| {
            let start = first.saturating_add(i.saturating_mul(step_start));
            Window {
                start,
                end: start
                    .saturating_add(len)
                    .saturating_add(i.saturating_mul(step_end)),
            }
        })
    }

    /// The pane length: windows are unions of consecutive panes, so an operator can aggregate
    /// each row once, into its pane, and build a window's result by merging its panes instead of
    /// adding the row to every overlapping window (a HOP of size 10 s and slide 2 s would
    /// otherwise touch each row five times). `None` for sessions, whose bounds follow the data.
    pub fn pane_size(&self) -> Option<i64> {
        match *self {
            WindowSpec::Tumble { size, .. } => Some(size),
            WindowSpec::Hop { slide, .. } => Some(slide),
            WindowSpec::Cumulate { step, .. } => Some(step),
            WindowSpec::Session { .. } => None,
        }
    }

    /// The pane holding `ts`.
    pub fn pane(&self, ts: i64) -> Option<Window> {
        let size = self.pane_size()?;
        let offset = match *self {
            WindowSpec::Tumble { offset, .. } => offset,
            _ => 0,
        };
        let start = aligned_start(ts, size, offset);
        Some(Window {
            start,
            end: start + size,
        })
    }

    /// The panes whose union is `window`, oldest first.
    pub fn panes_of(&self, window: Window) -> impl Iterator<Item = Window> + use<> {
        let size = self.pane_size().unwrap_or(window.end - window.start).max(1);
        let n = (window.end - window.start) / size;
        (0..n.max(0)).map(move |i| Window {
            start: window.start + i * size,
            end: window.start + (i + 1) * size,
        })
    }

    /// Whether an event at `ts` arrives too late for every window that would hold it: all of
    /// them have fired at `watermark`. Such rows are counted and routed, never dropped silently.
    pub fn is_late(&self, ts: i64, watermark: i64, allowed_lateness: i64) -> bool {
        self.assign(ts)
            .last()
            .is_none_or(|w| Self::fires(w.end, watermark, allowed_lateness))
    }

    /// Whether a window ending at `end` may fire once the watermark is `watermark`: every
    /// event up to `end - 1` has arrived, plus `allowed_lateness` ms of grace (Flink fires
    /// when the watermark reaches `window_time`).
    pub fn fires(end: i64, watermark: i64, allowed_lateness: i64) -> bool {
        watermark >= end - 1 + allowed_lateness
    }
}

#[cfg(test)]
mod tests;
