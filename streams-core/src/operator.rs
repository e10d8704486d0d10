//! The operator API: a small lifecycle trait with defaulted hooks. The runtime owns channels,
//! scheduling, watermarks and barriers; an operator only turns inputs into outputs.

use std::fmt::Debug;
use std::sync::Arc;

use datafusion::arrow::record_batch::RecordBatch;

use crate::Result;
use crate::checkpoint::CheckpointId;
use crate::message::Barrier;
use crate::metrics::OperatorMetrics;
use crate::state::OperatorState;

/// Where an operator subtask runs, handed to [`Operator::start`].
#[derive(Clone, Debug)]
pub struct OperatorContext {
    /// Topology node id.
    pub node: usize,
    /// Node name, for messages.
    pub name: String,
    /// This subtask's index, `0..parallelism`.
    pub subtask: usize,
    /// Number of subtasks of the node.
    pub parallelism: usize,
    /// The subtask's counters; operators add late rows here.
    pub metrics: Arc<OperatorMetrics>,
    /// Where the job checkpoints, if it does: an operator whose state outgrows its memory
    /// cache spills to [`crate::state::CheckpointStorage::keyed`] (key: `node`, `subtask`).
    pub storage: Option<Arc<dyn crate::state::CheckpointStorage>>,
}

impl OperatorContext {
    /// The subtask's keyed state, when the job checkpoints.
    pub fn keyed_state(&self) -> Result<Option<Arc<dyn crate::state::KeyedState>>> {
        self.storage
            .as_ref()
            .map(|s| {
                s.keyed(crate::state::TaskKey {
                    node: self.node,
                    subtask: self.subtask,
                })
            })
            .transpose()
    }

    /// Where an operator with `'state.cache.keys'` spills: the subtask's keyed state, or `None`
    /// (with a warning) when the job does not checkpoint and so has no store.
    pub fn cache_store(&self) -> Result<Option<Arc<dyn crate::state::KeyedState>>> {
        let store = self.keyed_state()?;
        if store.is_none() {
            tracing::warn!(
                operator = %self.describe(),
                "'state.cache.keys' needs checkpoints (they provide the state store): \
                 all state stays in memory"
            );
        }
        Ok(store)
    }

    /// `name [node] subtask i`, for error messages.
    pub fn describe(&self) -> String {
        format!("{} [{}] subtask {}", self.name, self.node, self.subtask)
    }
}

/// What an operator emits during one call: batches per output port. Port 0 is the main output;
/// higher ports are side outputs (a window's late rows), wired to their own edges.
#[derive(Debug, Default)]
pub struct Output {
    ports: Vec<Vec<RecordBatch>>,
}

impl Output {
    /// An empty output.
    pub fn new() -> Self {
        Output::default()
    }

    /// Emits on the main output. Empty batches are dropped.
    pub fn emit(&mut self, batch: RecordBatch) {
        self.emit_to(0, batch);
    }

    /// Emits on output `port`.
    pub fn emit_to(&mut self, port: usize, batch: RecordBatch) {
        if batch.num_rows() == 0 {
            return;
        }
        if self.ports.len() <= port {
            self.ports.resize_with(port + 1, Vec::new);
        }
        self.ports[port].push(batch);
    }

    /// Takes what was emitted on `port`.
    pub fn take(&mut self, port: usize) -> Vec<RecordBatch> {
        self.ports
            .get_mut(port)
            .map(std::mem::take)
            .unwrap_or_default()
    }

    /// Number of ports that have batches or had them.
    pub fn ports(&self) -> usize {
        self.ports.len()
    }

    /// Whether nothing is waiting on any port.
    pub fn is_empty(&self) -> bool {
        self.ports.iter().all(Vec::is_empty)
    }
}

/// One subtask of an operator node.
///
/// Calls come from one task, in the order of the messages on the inputs: batches, then a
/// watermark once every input has passed it, a checkpoint once every input has delivered the
/// barrier, and `close` after every input ended. Hooks are synchronous: an operator computes,
/// it does not wait; a task that must wait (a sink) is a [`crate::Sink`].
///
/// An error fails the job: the runtime cancels every task and reports the error with the
/// operator's name. Bad rows the job is configured to tolerate are not errors; count them.
pub trait Operator: Send + Debug {
    /// Called once before any input, with where the subtask runs.
    fn start(&mut self, _ctx: &OperatorContext) -> Result<()> {
        Ok(())
    }

    /// Rows from input `input` (the position of the edge among the node's inputs; 0 for a
    /// single-input operator).
    fn process_batch(&mut self, input: usize, batch: RecordBatch, out: &mut Output) -> Result<()>;

    /// The watermark over all inputs advanced to `watermark` (ms); fire what it completes.
    /// Returns the watermark to forward downstream (after the results emitted here): the same
    /// one, or an earlier one when the operator emits rows older than `watermark` (a join's
    /// matches, a window's results within its allowed lateness), or `None` to forward nothing.
    fn process_watermark(&mut self, watermark: i64, _out: &mut Output) -> Result<Option<i64>> {
        Ok(Some(watermark))
    }

    /// How often [`Operator::on_timer`] should run (processing time); `None`: never. Read once,
    /// after `start`.
    fn timer_interval(&self) -> Option<std::time::Duration> {
        None
    }

    /// Processing time passed (about every `timer_interval`), whether or not rows arrived:
    /// emit what is due (early results, pending updates).
    fn on_timer(&mut self, _out: &mut Output) -> Result<()> {
        Ok(())
    }

    /// Every input delivered the barrier of a checkpoint, which is about to be taken: emit
    /// what is held back (pending updates), so that what the checkpoint's sinks hold reflects
    /// exactly the input before the barrier (Flink's `prepareSnapshotPreBarrier`). Then
    /// [`Operator::checkpoint`] is called.
    fn before_barrier(&mut self, _out: &mut Output) -> Result<()> {
        Ok(())
    }

    /// Every input delivered the barrier of this checkpoint: return the state to keep with it
    /// (`None`: this operator keeps no state). Nothing else is called until this returns. The
    /// operator goes on with its state unchanged.
    fn checkpoint(&mut self, _barrier: &Barrier) -> Result<Option<OperatorState>> {
        Ok(None)
    }

    /// The job resumes from a checkpoint holding `state` for this subtask (what
    /// [`Operator::checkpoint`] returned then). Called once, before `start`. State of another
    /// shape (the query changed) must fail with [`crate::Error::IncompatibleState`].
    fn restore(&mut self, _state: OperatorState) -> Result<()> {
        Err(crate::Error::IncompatibleState(
            "the checkpoint holds state for an operator that keeps none; was the query changed?"
                .into(),
        ))
    }

    /// The checkpoint completed on every task (its snapshot is durable).
    fn commit(&mut self, _checkpoint: CheckpointId) -> Result<()> {
        Ok(())
    }

    /// Every input ended (after the final watermark): emit what is left.
    fn close(&mut self, _out: &mut Output) -> Result<()> {
        Ok(())
    }
}

/// Makes the subtasks of an operator node.
pub trait OperatorFactory: Send + Sync + Debug {
    /// A new subtask.
    fn create(&self, subtask: usize, parallelism: usize) -> Result<Box<dyn Operator>>;
}
