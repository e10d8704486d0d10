//! What flows along an edge: data and control in one ordered stream, so that the order between
//! a batch, a watermark and a checkpoint barrier is the order they were sent in.

use datafusion::arrow::record_batch::RecordBatch;

use crate::checkpoint::CheckpointId;

/// An event-time watermark, or the statement that an input has nothing to say for now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Watermark {
    /// No row older than this (ms since the epoch) will follow, except late ones.
    EventTime(i64),
    /// The sender is idle: it holds no watermark back until it sends data or a watermark again.
    Idle,
}

impl Watermark {
    /// The watermark sent when a bounded input ends: every window fires.
    pub const END: Watermark = Watermark::EventTime(i64::MAX);
}

/// A checkpoint barrier: everything before it belongs to checkpoint `id`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Barrier {
    /// The checkpoint.
    pub id: CheckpointId,
    /// Whether the job stops after this checkpoint (a savepoint on a clean stop).
    pub then_stop: bool,
}

/// One message on an edge.
#[derive(Clone, Debug)]
pub enum Message {
    /// Rows.
    Data(RecordBatch),
    /// Event-time progress.
    Watermark(Watermark),
    /// A checkpoint barrier.
    Barrier(Barrier),
    /// The sender has finished; nothing follows.
    End,
}
