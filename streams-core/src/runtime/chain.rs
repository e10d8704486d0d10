//! The operators of one task, called in turn: a chained node receives its upstream's main
//! output by function call; everything else leaves through edges. Data emitted while handling
//! a watermark, barrier or end of input reaches downstream before that control message.

use std::sync::Arc;
use std::time::Instant;

use datafusion::arrow::record_batch::RecordBatch;
use tokio_util::sync::CancellationToken;

use super::coordinator::TaskCheckpointing;
use super::exchange::EdgeOut;
use crate::checkpoint::CheckpointId;
use crate::message::{Barrier, Message, Watermark};
use crate::metrics::OperatorMetrics;
use crate::operator::{Operator, OperatorContext, Output};
use crate::sink::{Sink, SinkContext};
use crate::state::{OperatorState, TaskKey};
use crate::{Error, Result};

#[derive(Debug)]
pub(crate) enum Work {
    /// A source node's place in its own task: rows pass through unchanged.
    Pass,
    Operator(Box<dyn Operator>),
    Sink(Box<dyn Sink>),
}

/// One node of a chain, in one subtask.
#[derive(Debug)]
pub(crate) struct Member {
    pub(crate) work: Work,
    pub(crate) context: OperatorContext,
    pub(crate) sink_schema: Option<datafusion::arrow::datatypes::SchemaRef>,
}

/// Where a member's output goes. Kept apart from the members so that sending (which waits)
/// borrows no operator: operators are `Send` but not `Sync`.
#[derive(Debug)]
pub(crate) struct Routing {
    pub(crate) outs: Vec<EdgeOut>,
    /// Whether the next member of the chain takes this one's main output.
    pub(crate) chained_next: bool,
    pub(crate) metrics: Arc<OperatorMetrics>,
}

/// Runs a sink call unless the job is cancelled first: a hung external system must not keep
/// `cancel` from stopping the job.
async fn cancellable<T>(
    cancel: &CancellationToken,
    call: impl std::future::Future<Output = Result<T>>,
) -> Result<T> {
    tokio::select! {
        biased;
        _ = cancel.cancelled() => Err(crate::Error::Cancelled),
        r = call => r,
    }
}

/// A chain of members run by one task.
#[derive(Debug)]
pub(crate) struct Chain {
    pub(crate) members: Vec<Member>,
    pub(crate) routing: Vec<Routing>,
    pub(crate) cancel: CancellationToken,
    /// Set when the job checkpoints.
    pub(crate) checkpointing: Option<TaskCheckpointing>,
    /// Members whose state is in storage (so that state they no longer have gets deleted).
    pub(crate) stored: Vec<bool>,
}

fn key(ctx: &crate::operator::OperatorContext) -> TaskKey {
    TaskKey {
        node: ctx.node,
        subtask: ctx.subtask,
    }
}

impl Chain {
    /// Gives each member its state from the checkpoint the job resumes from.
    async fn restore(&mut self) -> Result<()> {
        let Some(ck) = self.checkpointing.clone() else {
            return Ok(());
        };
        let Some(id) = ck.restored else {
            return Ok(());
        };
        self.stored = vec![false; self.members.len()];
        for (k, m) in self.members.iter_mut().enumerate() {
            let ctx = &m.context;
            let state = match ck.storage.read(key(ctx))? {
                Some(bytes) if !bytes.is_empty() => {
                    Some(OperatorState::decode(&bytes).map_err(|e| e.context(ctx.describe()))?)
                }
                _ => None,
            };
            self.stored[k] = state.is_some();
            match (&mut m.work, state) {
                (Work::Operator(op), Some(state)) => op.restore(state),
                (Work::Sink(sink), state) => {
                    cancellable(&self.cancel, sink.restore(id, state)).await
                }
                (Work::Pass, Some(_)) => Err(Error::IncompatibleState(
                    "the checkpoint holds state for a source's place in its task".into(),
                )),
                (_, None) => Ok(()),
            }
            .map_err(|e| match e {
                Error::IncompatibleState(msg) => {
                    Error::IncompatibleState(format!("{}: {msg}", ctx.describe()))
                }
                e => e.context(ctx.describe()),
            })?;
        }
        Ok(())
    }

    pub(crate) async fn start(&mut self) -> Result<()> {
        self.stored = vec![false; self.members.len()];
        self.restore().await?;
        let checkpointing = self.checkpointing.is_some();
        for m in &mut self.members {
            let ctx = &m.context;
            match &mut m.work {
                Work::Pass => {}
                Work::Operator(op) => op.start(ctx).map_err(|e| e.context(ctx.describe()))?,
                Work::Sink(sink) => {
                    let sctx = SinkContext {
                        node: ctx.node,
                        subtask: ctx.subtask,
                        parallelism: ctx.parallelism,
                        checkpointing,
                        schema: m.sink_schema.clone().unwrap_or_else(|| {
                            Arc::new(datafusion::arrow::datatypes::Schema::empty())
                        }),
                    };
                    cancellable(&self.cancel, sink.start(&sctx))
                        .await
                        .map_err(|e| e.context(ctx.describe()))?;
                }
            }
        }
        // The crash may have come between the checkpoint and its commit: commit again
        // (sinks make that idempotent).
        if let Some(id) = self.checkpointing.as_ref().and_then(|c| c.restored) {
            self.commit(id).await?;
        }
        Ok(())
    }

    /// Checkpoint `id` completed on every task.
    pub(crate) async fn commit(&mut self, id: CheckpointId) -> Result<()> {
        for m in &mut self.members {
            match &mut m.work {
                Work::Pass => {}
                Work::Operator(op) => op.commit(id).map_err(|e| e.context(m.context.describe()))?,
                Work::Sink(sink) => cancellable(&self.cancel, sink.commit(id))
                    .await
                    .map_err(|e| e.context(m.context.describe()))?,
            }
        }
        Ok(())
    }

    /// Stores a member's checkpoint state (or deletes what it stored before, if it has none).
    fn store(&mut self, k: usize, state: Option<OperatorState>) -> Result<()> {
        let Some(ck) = &self.checkpointing else {
            return Ok(());
        };
        let ctx = &self.members[k].context;
        match state {
            Some(state) => {
                let bytes = state.encode().map_err(|e| e.context(ctx.describe()))?;
                ck.storage.write(key(ctx), &bytes)?;
                self.stored[k] = true;
            }
            None if self.stored[k] => {
                ck.storage.write(key(ctx), &[])?;
                self.stored[k] = false;
            }
            None => {}
        }
        Ok(())
    }

    /// Runs `batches` through members `first..`; `input` is the input index at `first`.
    pub(crate) async fn run_from(
        &mut self,
        first: usize,
        input: usize,
        mut batches: Vec<RecordBatch>,
    ) -> Result<()> {
        let mut k = first;
        let mut input = input;
        while k < self.members.len() && !batches.is_empty() {
            let m = &mut self.members[k];
            let mut out = Output::new();
            match &mut m.work {
                Work::Pass => {
                    for b in batches.drain(..) {
                        m.context.metrics.batch_in(b.num_rows());
                        out.emit(b);
                    }
                }
                Work::Operator(op) => {
                    let started = Instant::now();
                    for b in batches.drain(..) {
                        m.context.metrics.batch_in(b.num_rows());
                        op.process_batch(input, b, &mut out)
                            .map_err(|e| e.context(m.context.describe()))?;
                    }
                    m.context.metrics.busy(started.elapsed());
                }
                Work::Sink(sink) => {
                    for b in batches.drain(..) {
                        m.context.metrics.batch_in(b.num_rows());
                        cancellable(&self.cancel, sink.write(b))
                            .await
                            .map_err(|e| e.context(m.context.describe()))?;
                    }
                    return Ok(());
                }
            }
            batches = self.route(k, out).await?;
            k += 1;
            input = 0;
        }
        Ok(())
    }

    /// Sends member `k`'s output along its edges; returns the main output when the next member
    /// is chained to it.
    async fn route(&mut self, k: usize, mut out: Output) -> Result<Vec<RecordBatch>> {
        let m = &self.routing[k];
        let mut next = Vec::new();
        for port in 0..out.ports() {
            for b in out.take(port) {
                m.metrics.batch_out(b.num_rows());
                if port == 0 && m.chained_next {
                    next.push(b);
                    continue;
                }
                let targets: Vec<usize> = (0..m.outs.len())
                    .filter(|&i| m.outs[i].port == port)
                    .collect();
                for &i in &targets {
                    m.outs[i].send_batch(b.clone(), &self.cancel).await?;
                }
            }
        }
        Ok(next)
    }

    async fn broadcast(&mut self, k: usize, msg: &Message) -> Result<()> {
        for e in &self.routing[k].outs {
            e.send_control(msg, &self.cancel).await?;
        }
        Ok(())
    }

    /// Event time advanced to `wm` on every input of the chain. Each member may hold back the
    /// watermark it passes on.
    pub(crate) async fn watermark(&mut self, wm: i64) -> Result<()> {
        let mut wm = wm;
        for k in 0..self.members.len() {
            let m = &mut self.members[k];
            m.context.metrics.set_watermark(wm);
            let mut out = Output::new();
            let forward = match &mut m.work {
                Work::Pass => Some(wm),
                Work::Operator(op) => {
                    let started = Instant::now();
                    let f = op
                        .process_watermark(wm, &mut out)
                        .map_err(|e| e.context(m.context.describe()))?;
                    m.context.metrics.busy(started.elapsed());
                    f
                }
                Work::Sink(sink) => {
                    cancellable(&self.cancel, sink.watermark(wm))
                        .await
                        .map_err(|e| e.context(m.context.describe()))?;
                    Some(wm)
                }
            };
            let next = self.route(k, out).await?;
            self.run_from(k + 1, 0, next).await?;
            let Some(f) = forward else {
                return Ok(());
            };
            wm = f;
            self.broadcast(k, &Message::Watermark(Watermark::EventTime(wm)))
                .await?;
        }
        Ok(())
    }

    /// The shortest timer interval any member asks for.
    pub(crate) fn timer_interval(&self) -> Option<std::time::Duration> {
        self.members
            .iter()
            .filter_map(|m| match &m.work {
                Work::Operator(op) => op.timer_interval(),
                _ => None,
            })
            .min()
    }

    /// Runs every member's timer, passing what it emits down the chain.
    pub(crate) async fn timer(&mut self) -> Result<()> {
        for k in 0..self.members.len() {
            let m = &mut self.members[k];
            let Work::Operator(op) = &mut m.work else {
                continue;
            };
            let mut out = Output::new();
            let started = Instant::now();
            op.on_timer(&mut out)
                .map_err(|e| e.context(m.context.describe()))?;
            m.context.metrics.busy(started.elapsed());
            let next = self.route(k, out).await?;
            self.run_from(k + 1, 0, next).await?;
        }
        Ok(())
    }

    /// Every input of the chain is idle.
    pub(crate) async fn idle(&mut self) -> Result<()> {
        for k in 0..self.members.len() {
            self.broadcast(k, &Message::Watermark(Watermark::Idle))
                .await?;
        }
        Ok(())
    }

    /// Every input delivered `barrier`: snapshot each member and pass the barrier on.
    pub(crate) async fn barrier(&mut self, barrier: Barrier) -> Result<()> {
        for k in 0..self.members.len() {
            // What the member holds back goes out ahead of the barrier (the members after it
            // have not seen the barrier yet): a checkpoint's output then reflects exactly the
            // input before it.
            if let Work::Operator(op) = &mut self.members[k].work {
                let mut out = Output::new();
                op.before_barrier(&mut out)
                    .map_err(|e| e.context(self.members[k].context.describe()))?;
                if !out.is_empty() {
                    let next = self.route(k, out).await?;
                    self.run_from(k + 1, 0, next).await?;
                }
            }
            let m = &mut self.members[k];
            let state = match &mut m.work {
                Work::Pass => None,
                Work::Operator(op) => op
                    .checkpoint(&barrier)
                    .map_err(|e| e.context(m.context.describe()))?,
                Work::Sink(sink) => cancellable(&self.cancel, sink.pre_commit(barrier.id))
                    .await
                    .map_err(|e| e.context(m.context.describe()))?,
            };
            self.store(k, state)?;
            // Operators with keyed state always hand over state too, so `stored` covers them.
            if let Some(ck) = &self.checkpointing
                && self.stored[k]
            {
                // Everything this member stored (state and keyed state) as of now.
                ck.storage
                    .snapshot(key(&self.members[k].context), barrier.id)?;
            }
            self.broadcast(k, &Message::Barrier(barrier)).await?;
        }
        Ok(())
    }

    /// Every input ended: close each member in order, flushing what it emits, then end every
    /// outgoing edge. With checkpoints, sinks stay open for the final checkpoint's commit
    /// ([`Chain::close_sinks`]).
    pub(crate) async fn finish(&mut self) -> Result<()> {
        let close_sinks = self.checkpointing.is_none();
        for k in 0..self.members.len() {
            let m = &mut self.members[k];
            let mut out = Output::new();
            match &mut m.work {
                Work::Pass => {}
                Work::Operator(op) => op
                    .close(&mut out)
                    .map_err(|e| e.context(m.context.describe()))?,
                Work::Sink(sink) if close_sinks => cancellable(&self.cancel, sink.close())
                    .await
                    .map_err(|e| e.context(m.context.describe()))?,
                Work::Sink(_) => {}
            }
            let next = self.route(k, out).await?;
            self.run_from(k + 1, 0, next).await?;
            self.broadcast(k, &Message::End).await?;
        }
        Ok(())
    }
}

impl Chain {
    /// Closes the sinks (the job ends after its last checkpoint).
    pub(crate) async fn close_sinks(&mut self) -> Result<()> {
        for m in &mut self.members {
            if let Work::Sink(sink) = &mut m.work {
                cancellable(&self.cancel, sink.close())
                    .await
                    .map_err(|e| e.context(m.context.describe()))?;
            }
        }
        Ok(())
    }
}
