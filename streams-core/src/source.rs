//! Sources: where rows enter a job. Batch-oriented and async; the runtime wraps each source
//! subtask with watermark generation per split.

use std::fmt::Debug;

use async_trait::async_trait;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::record_batch::RecordBatch;

use std::sync::Arc;

use crate::Result;
use crate::checkpoint::CheckpointId;
use crate::metrics::OperatorMetrics;

/// What a source subtask produced.
#[derive(Clone, Debug)]
pub enum SourceEvent {
    /// Rows read from split `split` (an index into this subtask's splits).
    Batch {
        /// The split.
        split: usize,
        /// The rows.
        batch: RecordBatch,
    },
    /// The source knows split `split` holds no row older than `time` (ms) from now on. Combined
    /// with the generated watermark by taking the larger.
    Watermark {
        /// The split.
        split: usize,
        /// Event time in ms.
        time: i64,
    },
    /// Split `split` has no more rows; it stops holding the watermark back.
    SplitEnd(usize),
    /// Every split ended.
    End,
}

/// Where a source subtask runs.
#[derive(Clone, Debug)]
pub struct SourceContext {
    /// Topology node id.
    pub node: usize,
    /// This subtask.
    pub subtask: usize,
    /// Number of subtasks of the source.
    pub parallelism: usize,
    /// The subtask's counters: a source counts the records it could not read
    /// ([`OperatorMetrics::bad_records`]) and reports its lag ([`OperatorMetrics::set_lag`]).
    pub metrics: Arc<OperatorMetrics>,
}

/// One subtask of a source.
#[async_trait]
pub trait Source: Send + Debug {
    /// The number of splits this subtask reads (queues, files, generator shards); split
    /// indices in events are `0..splits()`.
    fn splits(&self) -> usize;

    /// Called once before `next`.
    async fn start(&mut self, _ctx: &SourceContext) -> Result<()> {
        Ok(())
    }

    /// The next event. Waits while no split has anything.
    ///
    /// Must be cancel safe: the runtime races it against timers and cancellation and may drop
    /// the future; nothing may be lost when it does.
    async fn next(&mut self) -> Result<SourceEvent>;

    /// The position to resume from after a crash, taken when the checkpoint's barrier is
    /// injected (every event returned before it is inside the checkpoint).
    fn snapshot_position(&mut self, _checkpoint: CheckpointId) -> Result<Vec<u8>> {
        Ok(Vec::new())
    }

    /// The job resumes from a checkpoint in which this subtask's position was `position` (what
    /// [`Source::snapshot_position`] returned). Called once, before `start`. A source that
    /// cannot resume (it records no position) gets an empty `position` and starts over.
    fn restore_position(&mut self, position: &[u8]) -> Result<()> {
        if position.is_empty() {
            Ok(())
        } else {
            Err(crate::Error::IncompatibleState(
                "the checkpoint holds a position for a source that cannot resume from one".into(),
            ))
        }
    }

    /// The checkpoint completed; the source may acknowledge upstream (commit group offsets).
    async fn commit(&mut self, _checkpoint: CheckpointId) -> Result<()> {
        Ok(())
    }

    /// The job is stopping.
    async fn close(&mut self) -> Result<()> {
        Ok(())
    }
}

/// A source table: its schema, its splits and how to make a subtask.
pub trait SourceFactory: Send + Sync + Debug {
    /// Name for plans and errors.
    fn name(&self) -> &str;

    /// Schema of the batches.
    fn schema(&self) -> SchemaRef;

    /// Total number of splits; the source runs at most this many subtasks.
    fn splits(&self) -> usize;

    /// Subtask `subtask` of `parallelism`, reading its share of the splits.
    fn create(&self, subtask: usize, parallelism: usize) -> Result<Box<dyn Source>>;

    /// The same source reading only `columns` of [`schema`](Self::schema) (indices, ascending),
    /// if it can skip the others for less than reading them costs (a JSON file source skips a
    /// key's value rather than decoding it). The planner asks when a job reads fewer columns
    /// than the table has. `None`, the default: the source reads every column, and the job
    /// drops the ones it does not use.
    fn with_projection(&self, _columns: &[usize]) -> Option<Arc<dyn SourceFactory>> {
        None
    }
}
