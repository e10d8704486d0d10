//! Checkpoint coordination rules, as decisions the runtime acts on: when the coordinator starts
//! a checkpoint (injecting `Barrier(n)` at every source), and when an operator with several
//! inputs has its barriers aligned and may snapshot.
//!
//! Aligned checkpoints, as in Flink: once barrier `n` arrives on an input, that input is blocked
//! (its later rows belong to the next epoch) until barrier `n` has arrived on every input; then
//! the operator snapshots, forwards the barrier and unblocks all inputs.

/// Identifier of a checkpoint; increases by one per checkpoint started.
pub type CheckpointId = u64;

/// When to checkpoint. Times are milliseconds on a monotonic clock.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CheckpointPolicy {
    /// Start a checkpoint this often (`execution.checkpointing.interval`).
    pub interval: i64,
    /// At least this long between the end of one checkpoint and the start of the next, so a
    /// slow checkpoint does not leave no time for processing. Default 0.
    pub min_pause: i64,
    /// Abort a checkpoint still running after this long. Default 10 minutes.
    pub timeout: i64,
}

impl CheckpointPolicy {
    /// Checkpoints every `interval` ms, with no pause and a 10-minute timeout.
    pub fn every(interval: i64) -> Self {
        CheckpointPolicy {
            interval,
            min_pause: 0,
            timeout: 600_000,
        }
    }
}

/// What the coordinator knows.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CoordinatorState {
    /// The last checkpoint started, and when.
    pub last_started: Option<(CheckpointId, i64)>,
    /// When the last checkpoint completed or was aborted, if it has.
    pub last_finished_at: Option<i64>,
}

/// What the coordinator should do now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CheckpointDecision {
    /// Start checkpoint `id`: inject its barrier at every source.
    Start(CheckpointId),
    /// Abort the running checkpoint `id`: it timed out.
    Abort(CheckpointId),
    /// Nothing before this time.
    WaitUntil(i64),
}

impl CheckpointPolicy {
    /// The decision at `now`. One checkpoint runs at a time.
    pub fn decide(&self, state: &CoordinatorState, now: i64) -> CheckpointDecision {
        let Some((id, started)) = state.last_started else {
            return CheckpointDecision::Start(1);
        };
        let running = state.last_finished_at.is_none_or(|f| f < started);
        if running {
            let deadline = started.saturating_add(self.timeout);
            return if now >= deadline {
                CheckpointDecision::Abort(id)
            } else {
                CheckpointDecision::WaitUntil(deadline)
            };
        }
        let finished = state.last_finished_at.unwrap_or(started);
        let next = started
            .saturating_add(self.interval)
            .max(finished.saturating_add(self.min_pause));
        if now >= next {
            CheckpointDecision::Start(id + 1)
        } else {
            CheckpointDecision::WaitUntil(next)
        }
    }
}

/// What an operator does with a barrier that arrived on one input.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Alignment {
    /// Block this input until the others deliver the same barrier.
    Block,
    /// Every input has delivered barrier `id`: snapshot, forward it, unblock all inputs.
    Aligned(CheckpointId),
    /// A barrier of an older or unknown checkpoint (one that was aborted): ignore it.
    Ignore,
}

/// Barrier alignment over an operator's inputs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BarrierAligner {
    current: Option<CheckpointId>,
    arrived: Vec<bool>,
    /// Inputs that ended: they deliver no more barriers and are never waited for.
    ended: Vec<bool>,
    last_aligned: Option<CheckpointId>,
}

impl BarrierAligner {
    /// An aligner for `inputs` inputs.
    pub fn new(inputs: usize) -> Self {
        BarrierAligner {
            current: None,
            arrived: vec![false; inputs],
            ended: vec![false; inputs],
            last_aligned: None,
        }
    }

    /// Whether rows arriving on `input` must wait (it delivered the barrier being aligned).
    pub fn is_blocked(&self, input: usize) -> bool {
        self.current.is_some() && self.arrived.get(input).copied().unwrap_or(false)
    }

    /// Barrier `id` arrived on `input`.
    pub fn on_barrier(&mut self, input: usize, id: CheckpointId) -> Alignment {
        if self.last_aligned.is_some_and(|l| id <= l) || input >= self.arrived.len() {
            return Alignment::Ignore;
        }
        match self.current {
            Some(c) if id < c => return Alignment::Ignore,
            // A newer checkpoint overtook an unfinished one, which was aborted: start over.
            Some(c) if id > c => self.arrived.iter_mut().for_each(|a| *a = false),
            _ => {}
        }
        self.current = Some(id);
        self.arrived[input] = true;
        self.try_align(id)
    }

    fn try_align(&mut self, id: CheckpointId) -> Alignment {
        if self.arrived.iter().zip(&self.ended).all(|(&a, &e)| a || e) {
            self.arrived.iter_mut().for_each(|a| *a = false);
            self.current = None;
            self.last_aligned = Some(id);
            Alignment::Aligned(id)
        } else {
            Alignment::Block
        }
    }

    /// Input `input` ended: it will deliver no more barriers, so alignment no longer waits for
    /// it, now or later. Returns `Aligned` if that completes the barrier being aligned.
    pub fn on_end(&mut self, input: usize) -> Option<Alignment> {
        *self.ended.get_mut(input)? = true;
        let id = self.current?;
        match self.try_align(id) {
            Alignment::Aligned(id) => Some(Alignment::Aligned(id)),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checkpoints_start_on_schedule_one_at_a_time() {
        let p = CheckpointPolicy {
            interval: 1000,
            min_pause: 300,
            timeout: 5000,
        };
        let mut s = CoordinatorState::default();
        assert_eq!(p.decide(&s, 0), CheckpointDecision::Start(1));
        s.last_started = Some((1, 0));
        assert_eq!(p.decide(&s, 900), CheckpointDecision::WaitUntil(5000));
        // Completed at 900: the next starts at max(0 + 1000, 900 + 300).
        s.last_finished_at = Some(900);
        assert_eq!(p.decide(&s, 1000), CheckpointDecision::WaitUntil(1200));
        assert_eq!(p.decide(&s, 1200), CheckpointDecision::Start(2));
        s.last_started = Some((2, 1200));
        assert_eq!(p.decide(&s, 6200), CheckpointDecision::Abort(2));
    }

    #[test]
    fn barriers_align_across_inputs() {
        let mut a = BarrierAligner::new(3);
        assert_eq!(a.on_barrier(0, 1), Alignment::Block);
        assert!(a.is_blocked(0) && !a.is_blocked(1));
        assert_eq!(a.on_barrier(2, 1), Alignment::Block);
        assert_eq!(a.on_barrier(1, 1), Alignment::Aligned(1));
        assert!(!a.is_blocked(0));
        assert_eq!(a.on_barrier(1, 1), Alignment::Ignore, "already aligned");
        // Checkpoint 2 is aborted half way; 3 overtakes it.
        assert_eq!(a.on_barrier(0, 2), Alignment::Block);
        assert_eq!(a.on_barrier(1, 3), Alignment::Block);
        assert!(!a.is_blocked(0), "the aborted checkpoint's block is lifted");
        assert_eq!(a.on_barrier(0, 2), Alignment::Ignore);
        assert_eq!(a.on_barrier(0, 3), Alignment::Block);
        // Input 2 ends instead of delivering barrier 3, and is not waited for again.
        assert_eq!(a.on_end(2), Some(Alignment::Aligned(3)));
        assert_eq!(a.on_barrier(0, 4), Alignment::Block);
        assert_eq!(a.on_barrier(1, 4), Alignment::Aligned(4));
    }
}
