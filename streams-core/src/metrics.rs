//! Metrics per operator subtask: counters the task updates with relaxed atomics (no locks on the
//! hot path), and a snapshot API that the CLI prints.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::mpsc::WeakSender;

use crate::message::Message;

/// Live counters of one operator subtask.
#[derive(Debug)]
pub struct OperatorMetrics {
    rows_in: AtomicU64,
    batches_in: AtomicU64,
    rows_out: AtomicU64,
    batches_out: AtomicU64,
    late_rows: AtomicU64,
    bad_records: AtomicU64,
    lag: AtomicU64,
    watermark: AtomicI64,
    busy_nanos: AtomicU64,
}

impl Default for OperatorMetrics {
    fn default() -> Self {
        OperatorMetrics {
            rows_in: AtomicU64::new(0),
            batches_in: AtomicU64::new(0),
            rows_out: AtomicU64::new(0),
            batches_out: AtomicU64::new(0),
            late_rows: AtomicU64::new(0),
            bad_records: AtomicU64::new(0),
            lag: AtomicU64::new(u64::MAX),
            watermark: AtomicI64::new(i64::MIN),
            busy_nanos: AtomicU64::new(0),
        }
    }
}

impl OperatorMetrics {
    /// Counts a batch of `rows` rows received.
    pub fn batch_in(&self, rows: usize) {
        self.rows_in.fetch_add(rows as u64, Ordering::Relaxed);
        self.batches_in.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a batch of `rows` rows emitted.
    pub fn batch_out(&self, rows: usize) {
        self.rows_out.fetch_add(rows as u64, Ordering::Relaxed);
        self.batches_out.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts rows that arrived after every window they belong to had fired.
    pub fn late(&self, rows: usize) {
        self.late_rows.fetch_add(rows as u64, Ordering::Relaxed);
    }

    /// Counts input records a source could not read (skipped or sent to a dead-letter topic).
    pub fn bad_records(&self, n: u64) {
        self.bad_records.fetch_add(n, Ordering::Relaxed);
    }

    /// Records how many records a source subtask is behind the end of its input.
    pub fn set_lag(&self, records: u64) {
        self.lag.store(records, Ordering::Relaxed);
    }

    /// Records the operator's current watermark.
    pub fn set_watermark(&self, wm: i64) {
        self.watermark.store(wm, Ordering::Relaxed);
    }

    /// Adds time spent working (not waiting for input or for room downstream).
    pub fn busy(&self, d: Duration) {
        let nanos = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        self.busy_nanos.fetch_add(nanos, Ordering::Relaxed);
    }

    /// Rows that arrived too late so far.
    pub fn late_rows(&self) -> u64 {
        self.late_rows.load(Ordering::Relaxed)
    }
}

/// A point-in-time reading of one operator subtask.
#[derive(Clone, Debug, PartialEq)]
pub struct SubtaskMetrics {
    /// Topology node id.
    pub node: usize,
    /// Node name, e.g. `window aggregate`.
    pub name: String,
    /// Subtask index.
    pub subtask: usize,
    /// Rows received.
    pub rows_in: u64,
    /// Batches received.
    pub batches_in: u64,
    /// Rows emitted (all outputs).
    pub rows_out: u64,
    /// Batches emitted.
    pub batches_out: u64,
    /// Rows that arrived after all their windows fired (counted, then routed or dropped).
    pub late_rows: u64,
    /// Input records a source could not read and skipped or sent to a dead-letter topic.
    pub bad_records: u64,
    /// Records a source subtask is behind the end of its input, if it knows.
    pub lag: Option<u64>,
    /// Current event-time watermark, if any.
    pub watermark: Option<i64>,
    /// Time spent processing.
    pub busy: Duration,
    /// Messages waiting in the subtask's input channels.
    pub queued: usize,
    /// Total capacity of those channels; `queued / capacity` near 1 means backpressure.
    pub capacity: usize,
}

/// Where a subtask's metrics live, and the channels feeding it.
#[derive(Debug)]
pub(crate) struct Entry {
    pub(crate) node: usize,
    pub(crate) name: String,
    pub(crate) subtask: usize,
    pub(crate) metrics: Arc<OperatorMetrics>,
    pub(crate) inputs: Vec<WeakSender<Message>>,
}

/// Checkpoint counters of a job, kept by its coordinator.
#[derive(Debug, Default)]
pub struct CheckpointStats {
    completed: AtomicU64,
    failed: AtomicU64,
    last_id: AtomicU64,
    last_duration_us: AtomicU64,
    last_bytes: AtomicU64,
    last_alignment_us: AtomicU64,
}

/// A reading of a job's checkpoint counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CheckpointMetrics {
    /// Checkpoints completed by this run.
    pub completed: u64,
    /// Checkpoints aborted or failed.
    pub failed: u64,
    /// Id of the last completed checkpoint, if any.
    pub last_id: Option<u64>,
    /// From the start of the last completed checkpoint to its metadata being durable.
    pub last_duration: Duration,
    /// Bytes the last checkpoint added to storage.
    pub last_bytes: u64,
    /// The longest time a task of the last checkpoint held inputs back aligning barriers.
    pub last_alignment: Duration,
}

impl CheckpointStats {
    pub(crate) fn completed(&self, id: u64, took: Duration, bytes: u64, alignment: Duration) {
        let us = |d: Duration| u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
        self.last_id.store(id, Ordering::Relaxed);
        self.last_duration_us.store(us(took), Ordering::Relaxed);
        self.last_bytes.store(bytes, Ordering::Relaxed);
        self.last_alignment_us
            .store(us(alignment), Ordering::Relaxed);
        self.completed.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn failed(&self) {
        self.failed.fetch_add(1, Ordering::Relaxed);
    }

    /// Reads the counters.
    pub fn snapshot(&self) -> CheckpointMetrics {
        let id = self.last_id.load(Ordering::Relaxed);
        CheckpointMetrics {
            completed: self.completed.load(Ordering::Relaxed),
            failed: self.failed.load(Ordering::Relaxed),
            last_id: (id > 0).then_some(id),
            last_duration: Duration::from_micros(self.last_duration_us.load(Ordering::Relaxed)),
            last_bytes: self.last_bytes.load(Ordering::Relaxed),
            last_alignment: Duration::from_micros(self.last_alignment_us.load(Ordering::Relaxed)),
        }
    }
}

/// The metrics of every operator subtask of a job.
#[derive(Debug, Default)]
pub struct JobMetrics {
    pub(crate) entries: Vec<Entry>,
    pub(crate) checkpoints: Arc<CheckpointStats>,
}

impl JobMetrics {
    /// Reads every subtask's counters, ordered by node then subtask.
    pub fn snapshot(&self) -> Vec<SubtaskMetrics> {
        let mut out: Vec<SubtaskMetrics> = self
            .entries
            .iter()
            .map(|e| {
                let m = &e.metrics;
                let (mut queued, mut capacity) = (0, 0);
                for tx in e.inputs.iter().filter_map(WeakSender::upgrade) {
                    queued += tx.max_capacity() - tx.capacity();
                    capacity += tx.max_capacity();
                }
                let wm = m.watermark.load(Ordering::Relaxed);
                SubtaskMetrics {
                    node: e.node,
                    name: e.name.clone(),
                    subtask: e.subtask,
                    rows_in: m.rows_in.load(Ordering::Relaxed),
                    batches_in: m.batches_in.load(Ordering::Relaxed),
                    rows_out: m.rows_out.load(Ordering::Relaxed),
                    batches_out: m.batches_out.load(Ordering::Relaxed),
                    late_rows: m.late_rows.load(Ordering::Relaxed),
                    bad_records: m.bad_records.load(Ordering::Relaxed),
                    lag: Some(m.lag.load(Ordering::Relaxed)).filter(|&l| l != u64::MAX),
                    watermark: (wm != i64::MIN).then_some(wm),
                    busy: Duration::from_nanos(m.busy_nanos.load(Ordering::Relaxed)),
                    queued,
                    capacity,
                }
            })
            .collect();
        out.sort_by_key(|m| (m.node, m.subtask));
        out
    }

    /// One line per subtask, for a terminal: node, subtask, rows and batches in and out, late
    /// rows, watermark, busy time and input queue fill.
    pub fn render(&self) -> String {
        use std::fmt::Write as _;
        let mut out = String::from(
            "node                     subtask     rows in   batches    rows out   batches    late     bad  \
             watermark             busy ms  queue\n",
        );
        for m in self.snapshot() {
            let wm = m.watermark.map_or("-".to_string(), |w| w.to_string());
            let name = format!("[{}] {}", m.node, m.name);
            let _ = writeln!(
                out,
                "{name:<24} {:>7} {:>11} {:>9} {:>11} {:>9} {:>7} {:>7}  {wm:<20} {:>8} {:>3}/{}",
                m.subtask,
                m.rows_in,
                m.batches_in,
                m.rows_out,
                m.batches_out,
                m.late_rows,
                m.bad_records,
                m.busy.as_millis(),
                m.queued,
                m.capacity
            );
        }
        out
    }

    /// The job's checkpoint counters.
    pub fn checkpoints(&self) -> CheckpointMetrics {
        self.checkpoints.snapshot()
    }

    /// Sums a node's subtasks: (rows in, rows out, late rows).
    pub fn node_totals(&self, node: usize) -> (u64, u64, u64) {
        self.snapshot()
            .iter()
            .filter(|m| m.node == node)
            .fold((0, 0, 0), |(i, o, l), m| {
                (i + m.rows_in, o + m.rows_out, l + m.late_rows)
            })
    }
}
