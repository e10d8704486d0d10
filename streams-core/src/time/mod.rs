//! Event time: watermark generation per source split, and the watermark of an operator with
//! several inputs. Plain state machines that return decisions; the runtime acts on them.
//!
//! Times are event-time milliseconds since the Unix epoch.

/// Flink's `WATERMARK FOR ts AS ts - INTERVAL ...`: the watermark trails the largest event time
/// seen by a fixed delay, so rows up to that much out of order are still on time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BoundedOutOfOrderness {
    delay: i64,
    max_seen: Option<i64>,
}

impl BoundedOutOfOrderness {
    /// A generator allowing `delay` ms of disorder.
    pub fn new(delay: i64) -> Self {
        BoundedOutOfOrderness {
            delay: delay.max(0),
            max_seen: None,
        }
    }

    /// Notes an event time.
    pub fn observe(&mut self, ts: i64) {
        self.max_seen = Some(self.max_seen.map_or(ts, |m| m.max(ts)));
    }

    /// The current watermark, `max - delay - 1`: a row at exactly `max - delay` is still on
    /// time (Flink's bounded out-of-orderness does the same); `None` before the first event.
    pub fn watermark(&self) -> Option<i64> {
        self.max_seen
            .map(|m| m.saturating_sub(self.delay).saturating_sub(1))
    }
}

/// Whether an input that last showed activity at `last_active` is idle at `now` (both
/// processing-time ms): an idle split stops holding back the watermark.
pub fn is_idle(last_active: i64, now: i64, idle_timeout: i64) -> bool {
    idle_timeout > 0 && now.saturating_sub(last_active) >= idle_timeout
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Input {
    watermark: Option<i64>,
    idle: bool,
    ended: bool,
}

/// The watermark of something with several inputs (an operator's channels, a source's splits):
/// the minimum over inputs that are not idle. It never moves backwards.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WatermarkTracker {
    inputs: Vec<Input>,
    current: Option<i64>,
}

impl WatermarkTracker {
    /// A tracker over `inputs` inputs, none of which has a watermark yet.
    pub fn new(inputs: usize) -> Self {
        WatermarkTracker {
            inputs: vec![Input::default(); inputs],
            current: None,
        }
    }

    /// The combined watermark so far.
    pub fn current(&self) -> Option<i64> {
        self.current
    }

    /// Input `input` reports watermark `wm` (and is active again). Returns the combined
    /// watermark if it advanced.
    pub fn update(&mut self, input: usize, wm: i64) -> Option<i64> {
        if let Some(i) = self.inputs.get_mut(input) {
            i.watermark = Some(i.watermark.map_or(wm, |w| w.max(wm)));
            i.idle = false;
        }
        self.recompute()
    }

    /// Marks input `input` idle or active. Returns the combined watermark if it advanced.
    pub fn set_idle(&mut self, input: usize, idle: bool) -> Option<i64> {
        if let Some(i) = self.inputs.get_mut(input) {
            i.idle = idle;
        }
        self.recompute()
    }

    /// Input `input` ended: it holds nothing back any more. Returns the combined watermark if
    /// it advanced.
    pub fn end(&mut self, input: usize) -> Option<i64> {
        if let Some(i) = self.inputs.get_mut(input) {
            i.ended = true;
        }
        self.recompute()
    }

    /// Whether every input that has not ended is idle (then the output is idle too).
    pub fn all_idle(&self) -> bool {
        self.inputs.iter().filter(|i| !i.ended).all(|i| i.idle)
    }

    fn recompute(&mut self) -> Option<i64> {
        let mut live = self.inputs.iter().filter(|i| !i.ended).peekable();
        let candidate = if live.peek().is_none() {
            // Everything ended: every window may fire.
            i64::MAX
        } else if self.inputs.iter().filter(|i| !i.ended).all(|i| i.idle) {
            if self.inputs.iter().any(|i| i.ended) {
                // Idle inputs may resume with rows the ended ones say nothing about: wait.
                return None;
            }
            // Everything is idle: nothing holds the watermark back any more, so it may advance
            // to the furthest any input reached (Flink's watermark valve does the same).
            self.inputs.iter().filter_map(|i| i.watermark).max()?
        } else {
            // An active input without a watermark yet holds everything back.
            live.filter(|i| !i.idle).map(|i| i.watermark).min()??
        };
        if self.current.is_none_or(|c| candidate > c) {
            self.current = Some(candidate);
            return self.current;
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounded_out_of_orderness_trails_the_max() {
        let mut g = BoundedOutOfOrderness::new(5);
        assert_eq!(g.watermark(), None);
        g.observe(100);
        g.observe(90);
        assert_eq!(g.watermark(), Some(94));
        g.observe(120);
        assert_eq!(g.watermark(), Some(114));
    }

    #[test]
    fn tracker_takes_the_minimum_of_active_inputs() {
        let mut t = WatermarkTracker::new(2);
        assert_eq!(t.update(0, 10), None, "input 1 has no watermark yet");
        assert_eq!(t.update(1, 7), Some(7));
        assert_eq!(t.update(1, 20), Some(10));
        // Input 0 goes idle: it no longer holds the watermark back.
        assert_eq!(t.set_idle(0, true), Some(20));
        // Back with an older watermark: the combined one does not regress.
        assert_eq!(t.update(0, 12), None);
        assert_eq!(t.current(), Some(20));
        assert_eq!(t.update(0, 30), None);
        assert_eq!(t.update(1, 40), Some(30));
        assert_eq!(t.set_idle(0, true), Some(40));
        assert_eq!(
            t.set_idle(1, true),
            None,
            "all idle: the furthest watermark, 40, again"
        );
        assert!(t.all_idle());
        assert_eq!(t.current(), Some(40));
        // Inputs that went idle together advance to the furthest one that had a watermark.
        let mut t = WatermarkTracker::new(2);
        assert_eq!(t.update(0, 50), None);
        assert_eq!(
            t.set_idle(0, true),
            None,
            "input 1 is active without a watermark"
        );
        assert_eq!(t.set_idle(1, true), Some(50));
        // An ended input holds nothing back, but does not let idle ones jump ahead either.
        let mut t = WatermarkTracker::new(3);
        t.update(0, 10);
        t.update(1, 20);
        t.update(2, 30);
        assert_eq!(t.end(0), Some(20));
        assert_eq!(t.set_idle(1, true), Some(30));
        assert_eq!(
            t.set_idle(2, true),
            None,
            "idle inputs next to an ended one: wait"
        );
        assert_eq!(t.end(1), None);
        assert_eq!(t.end(2), Some(i64::MAX));
    }

    #[test]
    fn idleness_is_a_timeout() {
        assert!(!is_idle(1000, 1500, 1000));
        assert!(is_idle(1000, 2000, 1000));
        assert!(!is_idle(0, i64::MAX, 0), "a zero timeout disables idleness");
    }
}
