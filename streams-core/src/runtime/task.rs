//! The two kinds of task: one that reads channels (an operator chain, maybe ending in a sink)
//! and one that drives a source (generating its watermarks per split).

use std::future::poll_fn;
use std::task::Poll;
use std::time::{Duration, Instant};

use tokio::sync::mpsc::{Receiver, UnboundedReceiver};
use tokio::sync::watch;

use super::WatermarkSpec;
use super::chain::Chain;
use super::coordinator::{Event, SourceCommand};
use crate::checkpoint::{Alignment, BarrierAligner, CheckpointId};
use crate::message::{Barrier, Message, Watermark};
use crate::ops::window::event_times;
use crate::source::{Source, SourceContext, SourceEvent};
use crate::state::TaskKey;
use crate::time::{BoundedOutOfOrderness, WatermarkTracker};
use crate::{Error, Result};

/// One input channel of a task.
#[derive(Debug)]
pub(crate) struct InputChannel {
    /// The input index the head operator sees (the edge's position among its inputs).
    pub(crate) input: usize,
    pub(crate) rx: Receiver<Message>,
}

/// A task reading channels.
#[derive(Debug)]
pub(crate) struct ChainTask {
    pub(crate) inputs: Vec<InputChannel>,
    pub(crate) chain: Chain,
}

impl ChainTask {
    pub(crate) async fn run(mut self) -> Result<()> {
        self.chain.start().await?;
        let n = self.inputs.len();
        let checkpointing = self.chain.checkpointing.clone();
        let mut completed = checkpointing.as_ref().map(|c| c.completed.clone());
        // `ended`: the input sent End. `closed`: it is no longer read. Without checkpoints both
        // come together; with them an ended input still delivers the final barrier.
        let mut ended = vec![false; n];
        let mut closed = vec![false; n];
        let mut finished = false;
        let mut tracker = WatermarkTracker::new(n);
        let mut aligner = BarrierAligner::new(n);
        let mut align_started: Option<Instant> = None;
        let mut idle_sent = false;
        let mut next = 0usize;
        let cancel = self.chain.cancel.clone();
        let timer_period = self.chain.timer_interval();
        let mut timer =
            tokio::time::interval(timer_period.unwrap_or(std::time::Duration::from_secs(3600)));
        timer.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let polled = poll_fn(|cx| {
                let mut open = false;
                for off in 0..n {
                    let i = (next + off) % n;
                    if closed[i] || aligner.is_blocked(i) {
                        open |= !closed[i];
                        continue;
                    }
                    open = true;
                    match self.inputs[i].rx.poll_recv(cx) {
                        Poll::Ready(Some(m)) => {
                            next = i + 1;
                            return Poll::Ready(Some(Ok((i, m))));
                        }
                        // After End and the final barrier the upstream task is gone.
                        Poll::Ready(None) if ended[i] => {
                            closed[i] = true;
                        }
                        // The sender vanished without End: its task failed or was cancelled.
                        // Not an end of input: closing would publish partial results.
                        Poll::Ready(None) => return Poll::Ready(Some(Err(Error::Cancelled))),
                        Poll::Pending => {}
                    }
                }
                if open {
                    Poll::Pending
                } else {
                    Poll::Ready(None)
                }
            });
            let (i, msg) = tokio::select! {
                biased;
                _ = cancel.cancelled() => return Err(Error::Cancelled),
                id = next_completed(&mut completed) => {
                    self.chain.commit(id).await?;
                    continue;
                }
                _ = timer.tick(), if timer_period.is_some() => {
                    self.chain.timer().await?;
                    continue;
                }
                m = polled => match m {
                    Some(m) => m?,
                    None => break,
                },
            };
            match msg {
                Message::Data(batch) => {
                    // Rows on an input marked idle make it hold the watermark back again.
                    tracker.set_idle(i, false);
                    let input = self.inputs[i].input;
                    self.chain.run_from(0, input, vec![batch]).await?;
                }
                Message::Watermark(Watermark::EventTime(t)) => {
                    if let Some(wm) = tracker.update(i, t) {
                        idle_sent = false;
                        self.chain.watermark(wm).await?;
                    }
                }
                Message::Watermark(Watermark::Idle) => {
                    if let Some(wm) = tracker.set_idle(i, true) {
                        self.chain.watermark(wm).await?;
                    }
                    if tracker.all_idle() && !idle_sent && ended.iter().any(|e| !e) {
                        idle_sent = true;
                        self.chain.idle().await?;
                    }
                }
                Message::Barrier(b) => match aligner.on_barrier(i, b.id) {
                    Alignment::Aligned(id) => {
                        let alignment =
                            align_started.take().map_or(Duration::ZERO, |t| t.elapsed());
                        let b = Barrier { id, ..b };
                        self.chain.barrier(b).await?;
                        if let Some(ck) = &checkpointing {
                            ck.ack(id, Vec::new(), alignment);
                            if b.then_stop {
                                return self.stop_after(id).await;
                            }
                        }
                    }
                    Alignment::Block => {
                        align_started.get_or_insert_with(Instant::now);
                    }
                    Alignment::Ignore => {}
                },
                Message::End => {
                    ended[i] = true;
                    if checkpointing.is_none() {
                        closed[i] = true;
                        if let Some(Alignment::Aligned(id)) = aligner.on_end(i) {
                            let b = Barrier {
                                id,
                                then_stop: false,
                            };
                            self.chain.barrier(b).await?;
                        }
                    }
                    if let Some(wm) = tracker.end(i) {
                        self.chain.watermark(wm).await?;
                    }
                    if checkpointing.is_some() && !finished && ended.iter().all(|&e| e) {
                        // Flush now; the final checkpoint's barrier follows.
                        finished = true;
                        self.chain.finish().await?;
                    }
                }
            }
        }
        if !finished {
            self.chain.finish().await?;
        }
        if checkpointing.is_some() {
            self.chain.close_sinks().await?;
        }
        Ok(())
    }

    /// The job stops after checkpoint `id` (a savepoint, or the final checkpoint after every
    /// input ended): wait until it completed, commit, and end without flushing, since the
    /// state goes on from the checkpoint.
    async fn stop_after(mut self, id: CheckpointId) -> Result<()> {
        if let Some(ck) = &mut self.chain.checkpointing {
            ck.completion(id).await?;
        }
        self.chain.commit(id).await?;
        self.chain.close_sinks().await
    }
}

/// The next completed checkpoint; never resolves without checkpoints (or once the coordinator
/// is gone).
pub(crate) async fn next_completed(rx: &mut Option<watch::Receiver<CheckpointId>>) -> CheckpointId {
    if let Some(r) = rx
        && r.changed().await.is_ok()
    {
        return *r.borrow_and_update();
    }
    std::future::pending().await
}

#[derive(Debug)]
struct Split {
    generator: BoundedOutOfOrderness,
    declared: Option<i64>,
    last_active: Instant,
    idle: bool,
    ended: bool,
}

impl Split {
    fn watermark(&self) -> Option<i64> {
        match (self.generator.watermark(), self.declared) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        }
    }
}

/// A task driving a source subtask.
#[derive(Debug)]
pub(crate) struct SourceTask {
    pub(crate) source: Box<dyn Source>,
    pub(crate) context: SourceContext,
    pub(crate) watermark: WatermarkSpec,
    pub(crate) chain: Chain,
    /// Barrier injections, when the job checkpoints.
    pub(crate) commands: Option<UnboundedReceiver<SourceCommand>>,
    /// Where to resume, when the job resumes from a checkpoint.
    pub(crate) position: Option<Vec<u8>>,
}

impl SourceTask {
    pub(crate) async fn run(mut self) -> Result<()> {
        let describe = format!(
            "source [{}] subtask {}",
            self.context.node, self.context.subtask
        );
        if let Some(position) = &self.position {
            self.source
                .restore_position(position)
                .map_err(|e| e.context(&describe))?;
        }
        self.source
            .start(&self.context)
            .await
            .map_err(|e| e.context(&describe))?;
        self.chain.start().await?;
        let checkpointing = self.chain.checkpointing.clone();
        let mut completed = checkpointing.as_ref().map(|c| c.completed.clone());
        let mut commands = self.commands.take();
        let key = TaskKey {
            node: self.context.node,
            subtask: self.context.subtask,
        };
        // With checkpoints a source that read everything stays for the final checkpoint.
        let mut data_ended = false;
        let now = Instant::now();
        let delay = self.watermark.out_of_orderness.as_millis() as i64;
        let mut splits: Vec<Split> = (0..self.source.splits())
            .map(|_| Split {
                generator: BoundedOutOfOrderness::new(delay),
                declared: None,
                last_active: now,
                idle: false,
                ended: false,
            })
            .collect();
        let mut tracker = WatermarkTracker::new(splits.len());
        let mut emitted: Option<i64> = None;
        let mut idle_sent = false;
        let period = match (self.watermark.interval, self.watermark.idle_timeout) {
            (i, _) if !i.is_zero() => i,
            (_, Some(t)) => (t / 4).max(Duration::from_millis(1)),
            _ => Duration::from_secs(3600),
        };
        let mut tick = tokio::time::interval(period);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let cancel = self.chain.cancel.clone();
        let every_batch = self.watermark.interval.is_zero();
        loop {
            let advance;
            tokio::select! {
                biased;
                _ = cancel.cancelled() => return Err(Error::Cancelled),
                command = next_command(&mut commands) => {
                    let SourceCommand::Inject(b) = command;
                    // Every event returned so far is inside the checkpoint.
                    let position = self
                        .source
                        .snapshot_position(b.id)
                        .map_err(|e| e.context(&describe))?;
                    self.chain.barrier(b).await?;
                    if let Some(ck) = &checkpointing {
                        ck.ack(b.id, vec![(key, position)], Duration::ZERO);
                    }
                    if b.then_stop {
                        return self.stop_after(b.id, &describe).await;
                    }
                    continue;
                }
                id = next_completed(&mut completed) => {
                    self.source.commit(id).await.map_err(|e| e.context(&describe))?;
                    self.chain.commit(id).await?;
                    continue;
                }
                _ = tick.tick(), if !data_ended => {
                    if let Some(timeout) = self.watermark.idle_timeout {
                        for (i, s) in splits.iter_mut().enumerate() {
                            if !s.ended && !s.idle && s.last_active.elapsed() >= timeout {
                                s.idle = true;
                                tracker.set_idle(i, true);
                            }
                        }
                    }
                    advance = true;
                }
                event = self.source.next(), if !data_ended => {
                    match event.map_err(|e| e.context(&describe))? {
                        SourceEvent::Batch { split, batch } => {
                            let s = splits.get_mut(split).ok_or_else(|| {
                                Error::Internal(format!("{describe}: split {split} out of range"))
                            })?;
                            if let Some(time) = &self.watermark.time
                                && batch.num_rows() > 0
                            {
                                let column = time.evaluate(&batch)?.into_array(batch.num_rows())?;
                                let ts = event_times(&column)?;
                                if let Some(max) = datafusion::arrow::compute::max(&ts) {
                                    s.generator.observe(max);
                                }
                            }
                            s.last_active = Instant::now();
                            if s.idle {
                                s.idle = false;
                                idle_sent = false;
                            }
                            if let Some(wm) = s.watermark() {
                                tracker.update(split, wm);
                            }
                            self.chain.run_from(0, 0, vec![batch]).await?;
                            advance = every_batch;
                            // A source that is always ready (data in memory or the page
                            // cache) into a chain that never waits would hold its worker
                            // thread: its timers (the watermark tick) would not fire and
                            // other tasks there would not run. Counting each batch against
                            // tokio's budget makes the task yield now and then.
                            tokio::task::consume_budget().await;
                        }
                        SourceEvent::Watermark { split, time } => {
                            if let Some(s) = splits.get_mut(split) {
                                s.declared = Some(s.declared.map_or(time, |d| d.max(time)));
                                s.last_active = Instant::now();
                                s.idle = false;
                                idle_sent = false;
                                if let Some(wm) = s.watermark() {
                                    tracker.update(split, wm);
                                }
                            }
                            advance = true;
                        }
                        SourceEvent::SplitEnd(split) => {
                            if let Some(s) = splits.get_mut(split) {
                                s.ended = true;
                                tracker.end(split);
                            }
                            advance = true;
                        }
                        SourceEvent::End if checkpointing.is_some() => {
                            if emitted.is_none_or(|e| e < i64::MAX) {
                                emitted = Some(i64::MAX);
                                self.chain.watermark(i64::MAX).await?;
                            }
                            self.chain.finish().await?;
                            data_ended = true;
                            if let Some(ck) = &checkpointing {
                                let _ = ck.events.send(Event::SourceEnded);
                            }
                            continue;
                        }
                        SourceEvent::End => break,
                    }
                }
            }
            if advance {
                if let Some(wm) = tracker.current()
                    && emitted.is_none_or(|e| wm > e)
                {
                    emitted = Some(wm);
                    self.chain.watermark(wm).await?;
                }
                let all_quiet = splits.iter().all(|s| s.idle || s.ended);
                if all_quiet && !idle_sent && splits.iter().any(|s| !s.ended) {
                    idle_sent = true;
                    self.chain.idle().await?;
                }
            }
        }
        // A bounded source ends: every window downstream may fire.
        if emitted.is_none_or(|e| e < i64::MAX) {
            self.chain.watermark(i64::MAX).await?;
        }
        self.source
            .close()
            .await
            .map_err(|e| e.context(&describe))?;
        self.chain.finish().await
    }

    /// The job stops after checkpoint `id`: wait until it completed, commit, and end without
    /// flushing (the state goes on from the checkpoint).
    async fn stop_after(mut self, id: CheckpointId, describe: &str) -> Result<()> {
        if let Some(ck) = &mut self.chain.checkpointing {
            ck.completion(id).await?;
        }
        self.source
            .commit(id)
            .await
            .map_err(|e| e.context(describe))?;
        self.chain.commit(id).await?;
        self.chain.close_sinks().await?;
        self.source.close().await.map_err(|e| e.context(describe))
    }
}

async fn next_command(rx: &mut Option<UnboundedReceiver<SourceCommand>>) -> SourceCommand {
    match rx {
        Some(r) => match r.recv().await {
            Some(c) => c,
            None => std::future::pending().await,
        },
        None => std::future::pending().await,
    }
}
