//! State TTL of the unbounded aggregate (Flink's `table.exec.state.ttl`): a group that no row
//! has updated for the TTL is forgotten. As in Flink, nothing is retracted: its last result
//! stays downstream, and a later row for the key starts the group over (`+I`).

use std::time::{Duration, Instant};

use super::UnboundedAggregate;
use crate::Result;
use crate::operator::Output;

/// How often to look for expired state, for a given TTL.
pub(crate) fn sweep_every(ttl: Duration) -> Duration {
    (ttl / 4).clamp(Duration::from_millis(1), Duration::from_secs(10))
}

/// When each group was last updated (processing time).
#[derive(Debug, Default)]
pub(super) struct Clock {
    updated: Vec<Instant>,
    /// Nothing expires before this.
    next_check: Option<Instant>,
}

impl Clock {
    /// Groups `ids` were updated now; there are `groups` groups.
    pub(super) fn updated(&mut self, ids: &[usize], groups: usize) {
        let now = Instant::now();
        self.updated.resize(groups, now);
        for &g in ids {
            if let Some(t) = self.updated.get_mut(g) {
                *t = now;
            }
        }
    }

    /// Whether some group may have expired at `now`.
    fn due(&mut self, ttl: Duration, now: Instant) -> bool {
        if self.next_check.is_some_and(|t| now < t) {
            return false;
        }
        match self.updated.iter().min() {
            None => false,
            Some(&oldest) if now.duration_since(oldest) < ttl => {
                // Update times only grow: nothing expires before the oldest one does.
                self.next_check = Some(oldest + ttl);
                false
            }
            Some(_) => true,
        }
    }

    /// The groups still live at `now`, in id order.
    fn live(&self, ttl: Duration, now: Instant) -> Vec<u32> {
        (0..self.updated.len())
            .filter(|&g| now.duration_since(self.updated[g]) < ttl)
            .map(|g| g as u32)
            .collect()
    }

    /// When each group was last updated.
    pub(super) fn times(&self) -> &[Instant] {
        &self.updated
    }

    /// Keeps the times of groups `kept` (ascending), which become groups `0..`.
    pub(super) fn retain(&mut self, kept: &[u32]) {
        self.updated = kept
            .iter()
            .filter_map(|&g| self.updated.get(g as usize).copied())
            .collect();
        self.next_check = None;
    }
}

impl UnboundedAggregate {
    /// Forgets the groups whose TTL passed.
    pub(super) fn expire(&mut self, out: &mut Output) -> Result<()> {
        let Some(ttl) = self.config.ttl else {
            return Ok(());
        };
        let now = Instant::now();
        if !self.ttl.due(ttl, now) {
            return Ok(());
        }
        // Pending changes go out first: what is forgotten is what downstream has.
        self.emit(out)?;
        let kept = self.ttl.live(ttl, now);
        if kept.len() == self.groups {
            return Ok(());
        }
        self.compact(&kept)?;
        self.spilled_last.clear();
        self.spilled_present.clear();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests fail loudly")]

    use datafusion::arrow::array::{AsArray, RecordBatch};
    use datafusion::arrow::datatypes::{Int8Type, Int64Type};
    use datafusion::functions_aggregate::count::count_udaf;

    use super::*;
    use crate::changelog::{INSERT, UPDATE_AFTER, UPDATE_BEFORE};
    use crate::operator::Operator;
    use crate::ops::testkit::{aggregate, batch, schema};

    /// (key, count, change) of every output row.
    fn rows(batches: Vec<RecordBatch>) -> Vec<(String, i64, i8)> {
        let mut out = Vec::new();
        for b in batches {
            let k = b.column(0).as_string::<i32>();
            let n = b.column(1).as_primitive::<Int64Type>();
            let op = b.column(2).as_primitive::<Int8Type>();
            for r in 0..b.num_rows() {
                out.push((k.value(r).to_string(), n.value(r), op.value(r)));
            }
        }
        out
    }

    #[test]
    fn groups_past_their_ttl_start_over() {
        let input = schema();
        let count = vec![aggregate(count_udaf(), None, false, &input, "n")];
        let mut c = super::super::tests::config(&input, true, count, Duration::ZERO, false);
        c.ttl = Some(Duration::from_millis(50));
        let mut op = UnboundedAggregate::new(c).unwrap();
        let mut out = Output::new();
        op.process_batch(0, batch(&[("a", 1, 0), ("b", 1, 0)]), &mut out)
            .unwrap();
        op.process_watermark(1, &mut out).unwrap();
        std::thread::sleep(Duration::from_millis(80));
        // b is updated in time; a is not.
        op.process_batch(0, batch(&[("b", 1, 0)]), &mut out)
            .unwrap();
        op.on_timer(&mut out).unwrap();
        op.process_batch(0, batch(&[("a", 1, 0)]), &mut out)
            .unwrap();
        op.process_watermark(2, &mut out).unwrap();
        let got = rows(out.take(0));
        assert_eq!(
            got,
            vec![
                ("a".to_string(), 1, INSERT),
                ("b".to_string(), 1, INSERT),
                ("b".to_string(), 1, UPDATE_BEFORE),
                ("b".to_string(), 2, UPDATE_AFTER),
                // a was forgotten: it starts over, as Flink does.
                ("a".to_string(), 1, INSERT),
            ]
        );
    }

    #[test]
    fn the_clock_keeps_recent_groups() {
        let mut c = Clock::default();
        let ttl = Duration::from_millis(50);
        c.updated(&[0, 1, 2], 3);
        let start = Instant::now();
        assert!(!c.due(ttl, start), "nothing is old yet");
        std::thread::sleep(Duration::from_millis(60));
        c.updated(&[1], 3);
        let now = Instant::now();
        assert!(c.due(ttl, now));
        assert_eq!(c.live(ttl, now), vec![1]);
        c.retain(&[1]);
        assert!(!c.due(ttl, now), "the survivor is fresh");
        assert!(now.duration_since(start) >= ttl);
    }
}
