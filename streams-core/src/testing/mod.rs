//! An in-memory source and a collecting sink, for tests, examples and benchmarks: a source
//! scripted per split (batches with event times in any order, explicit watermarks, pauses,
//! splits that end or go quiet) and a sink that keeps what it receives.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use datafusion::arrow::compute::concat_batches;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::record_batch::RecordBatch;

use crate::Result;
use crate::sink::{Sink, SinkFactory};
use crate::source::{Source, SourceEvent, SourceFactory};

/// One step of a split's script.
#[derive(Clone, Debug)]
pub enum Step {
    /// Emit rows.
    Batch(RecordBatch),
    /// Declare that no row older than this time (ms) follows on this split.
    Watermark(i64),
    /// Produce nothing on this split for a while (other splits go on).
    Sleep(Duration),
    /// Never produce anything again, and never end: a split that went quiet.
    Pending,
}

/// A source whose splits replay scripts. Subtask `s` of `p` reads splits `s`, `s + p`, ...,
/// taking one step from each in turn.
#[derive(Clone, Debug)]
pub struct MemorySource {
    name: String,
    schema: SchemaRef,
    splits: Vec<Vec<Step>>,
}

impl MemorySource {
    /// A source of `schema` with no splits yet.
    pub fn new(name: &str, schema: SchemaRef) -> Self {
        MemorySource {
            name: name.to_string(),
            schema,
            splits: Vec::new(),
        }
    }

    /// Adds a split that emits these batches.
    pub fn with_batches(self, batches: impl IntoIterator<Item = RecordBatch>) -> Self {
        self.with_split(batches.into_iter().map(Step::Batch).collect())
    }

    /// Adds a split with a script.
    pub fn with_split(mut self, steps: Vec<Step>) -> Self {
        self.splits.push(steps);
        self
    }
}

impl SourceFactory for MemorySource {
    fn name(&self) -> &str {
        &self.name
    }

    fn schema(&self) -> SchemaRef {
        Arc::clone(&self.schema)
    }

    fn splits(&self) -> usize {
        self.splits.len()
    }

    fn create(&self, subtask: usize, parallelism: usize) -> Result<Box<dyn Source>> {
        let splits = self
            .splits
            .iter()
            .skip(subtask)
            .step_by(parallelism.max(1))
            .map(|steps| SplitScript {
                steps: steps.iter().cloned().collect(),
                ready_at: None,
                pending: false,
                ended: false,
                taken: 0,
            })
            .collect();
        Ok(Box::new(MemorySubtask { splits, next: 0 }))
    }
}

#[derive(Debug)]
struct SplitScript {
    steps: VecDeque<Step>,
    ready_at: Option<Instant>,
    pending: bool,
    ended: bool,
    /// Steps taken so far: the split's position.
    taken: u64,
}

#[derive(Debug)]
struct MemorySubtask {
    splits: Vec<SplitScript>,
    next: usize,
}

#[async_trait]
impl Source for MemorySubtask {
    fn splits(&self) -> usize {
        self.splits.len()
    }

    fn snapshot_position(
        &mut self,
        _checkpoint: crate::checkpoint::CheckpointId,
    ) -> Result<Vec<u8>> {
        Ok(self
            .splits
            .iter()
            .flat_map(|s| s.taken.to_le_bytes())
            .collect())
    }

    fn restore_position(&mut self, position: &[u8]) -> Result<()> {
        if position.len() != 8 * self.splits.len() {
            return Err(crate::Error::IncompatibleState(format!(
                "memory source: a position of {} bytes for {} splits",
                position.len(),
                self.splits.len()
            )));
        }
        for (s, p) in self.splits.iter_mut().zip(position.chunks_exact(8)) {
            let mut b = [0u8; 8];
            b.copy_from_slice(p);
            let n = u64::from_le_bytes(b);
            for _ in 0..n {
                // Sleeps and all: the script goes on right after the recorded step.
                s.steps.pop_front();
            }
            s.taken = n;
        }
        Ok(())
    }

    async fn next(&mut self) -> Result<SourceEvent> {
        loop {
            let n = self.splits.len();
            let now = Instant::now();
            let mut wake: Option<Instant> = None;
            for off in 0..n {
                let i = (self.next + off) % n;
                let s = &mut self.splits[i];
                if s.ended || s.pending {
                    continue;
                }
                if let Some(t) = s.ready_at {
                    if t > now {
                        wake = Some(wake.map_or(t, |w| w.min(t)));
                        continue;
                    }
                    s.ready_at = None;
                }
                self.next = i + 1;
                let step = s.steps.pop_front();
                s.taken += u64::from(step.is_some());
                match step {
                    Some(Step::Batch(batch)) => return Ok(SourceEvent::Batch { split: i, batch }),
                    Some(Step::Watermark(time)) => {
                        return Ok(SourceEvent::Watermark { split: i, time });
                    }
                    Some(Step::Sleep(d)) => {
                        s.ready_at = Some(now + d);
                        wake = Some(wake.map_or(now + d, |w| w.min(now + d)));
                    }
                    Some(Step::Pending) => s.pending = true,
                    None => {
                        s.ended = true;
                        return Ok(SourceEvent::SplitEnd(i));
                    }
                }
            }
            if self.splits.iter().all(|s| s.ended) {
                return Ok(SourceEvent::End);
            }
            match wake {
                // State is consistent before each await, so dropping this future loses nothing.
                Some(t) => tokio::time::sleep_until(t.into()).await,
                None if self.splits.iter().all(|s| s.ended || s.pending) => {
                    std::future::pending::<()>().await;
                }
                None => {}
            }
        }
    }
}

/// A sink keeping every batch it receives, shared by all its subtasks.
#[derive(Clone, Debug, Default)]
pub struct CollectSink {
    batches: Arc<Mutex<Vec<RecordBatch>>>,
    delay: Option<Duration>,
}

impl CollectSink {
    /// An empty sink.
    pub fn new() -> Self {
        CollectSink::default()
    }

    /// A sink that waits this long per batch (a slow consumer).
    pub fn slow(delay: Duration) -> Self {
        CollectSink {
            delay: Some(delay),
            ..CollectSink::default()
        }
    }

    /// What has arrived so far.
    pub fn batches(&self) -> Vec<RecordBatch> {
        self.batches
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Rows so far.
    pub fn rows(&self) -> usize {
        self.batches().iter().map(RecordBatch::num_rows).sum()
    }

    /// Everything as one batch of `schema`.
    pub fn concat(&self, schema: &SchemaRef) -> Result<RecordBatch> {
        Ok(concat_batches(schema, &self.batches())?)
    }
}

impl SinkFactory for CollectSink {
    fn name(&self) -> &str {
        "collect"
    }

    fn create(&self, _subtask: usize, _parallelism: usize) -> Result<Box<dyn Sink>> {
        Ok(Box::new(self.clone()))
    }

    fn accepts_updates(&self) -> bool {
        true
    }
}

#[async_trait]
impl Sink for CollectSink {
    async fn write(&mut self, batch: RecordBatch) -> Result<()> {
        if let Some(d) = self.delay {
            tokio::time::sleep(d).await;
        }
        self.batches
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(batch);
        Ok(())
    }
}

mod exactly_once;
pub use exactly_once::{MemoryCheckpoints, TransactionalSink};
