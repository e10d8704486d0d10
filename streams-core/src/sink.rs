//! Sinks: where results leave a job. Batch-oriented and async, with the two-phase commit hooks
//! that exactly-once delivery uses (pre-commit on the barrier, commit when the checkpoint is
//! complete).

use std::fmt::Debug;

use async_trait::async_trait;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::record_batch::RecordBatch;

use crate::Result;
use crate::checkpoint::CheckpointId;
use crate::state::OperatorState;

/// Where a sink subtask runs.
#[derive(Clone, Debug)]
pub struct SinkContext {
    /// Topology node id.
    pub node: usize,
    /// This subtask.
    pub subtask: usize,
    /// Number of subtasks of the sink.
    pub parallelism: usize,
    /// Schema of the batches it will receive.
    pub schema: SchemaRef,
    /// Whether the job checkpoints: if not, `pre_commit` and `commit` are never called, and a
    /// sink that publishes on commit must publish as it writes.
    pub checkpointing: bool,
}

/// One subtask of a sink.
#[async_trait]
pub trait Sink: Send + Debug {
    /// Called once before any batch.
    async fn start(&mut self, _ctx: &SinkContext) -> Result<()> {
        Ok(())
    }

    /// Rows to write. Waiting here is how a slow sink pushes back on the job.
    async fn write(&mut self, batch: RecordBatch) -> Result<()>;

    /// Event time progressed to `watermark` (ms).
    async fn watermark(&mut self, _watermark: i64) -> Result<()> {
        Ok(())
    }

    /// The barrier of `checkpoint` arrived: make everything written so far durable but not yet
    /// visible (flush a transaction, stage a file), and return what must be kept with the
    /// checkpoint to commit it after a crash (staged rows, a transaction id); `None` if nothing.
    async fn pre_commit(&mut self, _checkpoint: CheckpointId) -> Result<Option<OperatorState>> {
        Ok(None)
    }

    /// The job resumes from checkpoint `checkpoint`, in which this subtask's pre-commit state
    /// was `state`. Called once, before `start`; the runtime then calls
    /// [`Sink::commit`]`(checkpoint)`, since the crash may have come before the commit.
    async fn restore(
        &mut self,
        _checkpoint: CheckpointId,
        state: Option<OperatorState>,
    ) -> Result<()> {
        match state {
            None => Ok(()),
            Some(_) => Err(crate::Error::IncompatibleState(
                "the checkpoint holds pre-committed data for a sink that keeps none; \
                 was the query changed?"
                    .into(),
            )),
        }
    }

    /// The checkpoint completed on every task: make its writes visible. Must be idempotent,
    /// because recovery may repeat it.
    async fn commit(&mut self, _checkpoint: CheckpointId) -> Result<()> {
        Ok(())
    }

    /// Every input ended (a bounded job finished) or the job is stopping: flush.
    async fn close(&mut self) -> Result<()> {
        Ok(())
    }
}

/// A sink table: how to make a subtask.
pub trait SinkFactory: Send + Sync + Debug {
    /// Name for plans and errors.
    fn name(&self) -> &str;

    /// A new subtask for rows of `schema`.
    fn create(&self, subtask: usize, parallelism: usize) -> Result<Box<dyn Sink>>;

    /// Whether it takes update streams (rows with a [`crate::changelog::OP_COLUMN`]); the
    /// planner refuses to send updates to a sink that only appends. Default: no.
    fn accepts_updates(&self) -> bool {
        false
    }
}
