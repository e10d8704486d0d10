//! Reading files: one split per file, read by a [`Worker`] on a blocking thread of its own up
//! to [`READ_AHEAD`] batches ahead of what was emitted, positions checkpointed per file.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use async_trait::async_trait;
use streams_core::arrow::datatypes::SchemaRef;
use streams_core::checkpoint::CheckpointId;
use streams_core::{Error, Result, Source, SourceContext, SourceEvent, SourceFactory};
use tokio::sync::mpsc;

use super::read::{CHUNK_BYTES, Ready, SplitPos, Worker};
use super::{FileFormat, Table};
use crate::format::{BadRecords, OnError, RecordDecoder};
use crate::store::StoreHandle;

const POSITION_MAGIC: &[u8; 4] = b"RSFP";
const POSITION_VERSION: u8 = 1;

/// Files as a bounded source table.
#[derive(Clone, Debug)]
pub struct FilesystemSource {
    table: Table,
    files: Arc<Vec<PathBuf>>,
    on_error: OnError,
    store: Option<StoreHandle>,
    chunk: usize,
}

impl FilesystemSource {
    pub(super) fn new(
        table: Table,
        files: Vec<PathBuf>,
        on_error: OnError,
        store: Option<StoreHandle>,
    ) -> Self {
        FilesystemSource {
            table,
            files: Arc::new(files),
            on_error,
            store,
            chunk: CHUNK_BYTES,
        }
    }

    /// The files it reads, in split order.
    pub fn files(&self) -> &[PathBuf] {
        &self.files
    }

    /// Reads text files in chunks of `bytes` (tests use small ones to cross chunk borders).
    #[cfg(test)]
    pub(super) fn with_chunk_bytes(mut self, bytes: usize) -> Self {
        self.chunk = bytes;
        self
    }
}

impl SourceFactory for FilesystemSource {
    fn name(&self) -> &str {
        &self.table.name
    }

    fn schema(&self) -> SchemaRef {
        Arc::clone(&self.table.schema)
    }

    fn splits(&self) -> usize {
        self.files.len()
    }

    fn create(&self, subtask: usize, parallelism: usize) -> Result<Box<dyn Source>> {
        let splits = self
            .files
            .iter()
            .enumerate()
            .filter(|(i, _)| i % parallelism.max(1) == subtask)
            .map(|(_, path)| SplitPos {
                path: path.clone(),
                offset: 0,
                line: 0,
                done: false,
            })
            .collect();
        Ok(Box::new(FileReader {
            factory: self.clone(),
            splits,
            read: None,
            bad: Arc::new(AtomicU64::new(0)),
            ended: false,
        }))
    }

    /// JSON files only: the decoder then skips the other keys' values. A record is still
    /// checked to be JSON, but a value of a column not read is not checked against its type.
    fn with_projection(&self, columns: &[usize]) -> Option<Arc<dyn SourceFactory>> {
        let FileFormat::Lines(format) = &self.table.format else {
            return None;
        };
        let mut narrowed = self.clone();
        narrowed.table.schema = format.projected(&self.table.schema, columns)?;
        Some(Arc::new(narrowed))
    }
}

/// Batches decoded and not emitted yet, at most. Decoding runs without waiting for each
/// batch to be taken: started again one step at a time, it stalled between steps for the
/// source task to be scheduled (a JSON file job kept only 1.6-1.7 of two cores busy).
const READ_AHEAD: usize = 4;

#[derive(Debug)]
struct FileReader {
    factory: FilesystemSource,
    /// Positions of what was emitted: the checkpointed state.
    splits: Vec<SplitPos>,
    /// What the worker read, in order; it stops after the end, an error, or when this is
    /// dropped.
    read: Option<mpsc::Receiver<Result<Ready>>>,
    /// Records the worker's decoder could not read so far.
    bad: Arc<AtomicU64>,
    ended: bool,
}

impl FileReader {
    fn bad_position(&self, why: &str) -> Error {
        Error::IncompatibleState(format!(
            "table `{}`: the checkpointed file position {why}",
            self.factory.table.name
        ))
    }
}

/// Runs `worker` until everything is read, a step fails, or the reader is gone.
fn read_ahead(mut worker: Worker, out: mpsc::Sender<Result<Ready>>, bad: Arc<AtomicU64>) {
    loop {
        let step = worker.step();
        bad.store(worker.bad_records(), Ordering::Relaxed);
        let last = !matches!(step, Ok(Ready::Rows { .. } | Ready::SplitEnd(_)));
        if out.blocking_send(step).is_err() || last {
            return;
        }
    }
}

#[async_trait]
impl Source for FileReader {
    fn splits(&self) -> usize {
        self.splits.len()
    }

    fn restore_position(&mut self, position: &[u8]) -> Result<()> {
        if position.is_empty() {
            return Ok(());
        }
        let mut r = Bytes(position);
        if r.take(4) != Some(POSITION_MAGIC) || r.take(1) != Some(&[POSITION_VERSION]) {
            return Err(self.bad_position("is not one this build writes"));
        }
        let truncated = || self.bad_position("is truncated");
        let n = r.u64().ok_or_else(truncated)?;
        let listed: HashMap<String, &PathBuf> = self
            .factory
            .files
            .iter()
            .map(|p| (p.to_string_lossy().into_owned(), p))
            .collect();
        let mut splits = Vec::new();
        for _ in 0..n {
            let len = r.u64().ok_or_else(truncated)?;
            let name = r
                .take(usize::try_from(len).map_err(|_| truncated())?)
                .ok_or_else(truncated)?;
            let name = String::from_utf8_lossy(name);
            // The checkpoint's file list, not today's: a resumed job reads what it started
            // with, even if files were added since.
            let path = listed
                .get(name.as_ref())
                .map_or_else(|| PathBuf::from(name.as_ref()), |p| (*p).clone());
            let offset = r.u64().ok_or_else(truncated)?;
            let line = r.u64().ok_or_else(truncated)?;
            let done = r.take(1).ok_or_else(truncated)? != [0];
            splits.push(SplitPos {
                path,
                offset,
                line,
                done,
            });
        }
        self.splits = splits;
        Ok(())
    }

    async fn start(&mut self, ctx: &SourceContext) -> Result<()> {
        let f = &self.factory;
        let decoder = match &f.table.format {
            FileFormat::Lines(format) => {
                let bad = BadRecords::new(&f.table.name, f.on_error.clone(), f.store.clone());
                let mut d = RecordDecoder::new(Arc::clone(&f.table.schema), format.clone(), bad);
                d.bad_records().start(Arc::clone(&ctx.metrics))?;
                Some(d)
            }
            FileFormat::Parquet => None,
        };
        let worker = Worker::new(f.table.clone(), self.splits.clone(), decoder, f.chunk);
        let (tx, rx) = mpsc::channel(READ_AHEAD);
        let bad = Arc::clone(&self.bad);
        tokio::task::spawn_blocking(move || read_ahead(worker, tx, bad));
        self.read = Some(rx);
        Ok(())
    }

    async fn next(&mut self) -> Result<SourceEvent> {
        loop {
            if self.ended {
                return Ok(SourceEvent::End);
            }
            let Some(read) = self.read.as_mut() else {
                return Err(Error::Internal("file source: next() before start()".into()));
            };
            // Cancel safe: a dropped `recv` loses nothing.
            let Some(ready) = read.recv().await else {
                return Err(Error::Internal(
                    "file source: the reader stopped after a failed step".into(),
                ));
            };
            match ready? {
                Ready::Rows {
                    split,
                    batch,
                    offset,
                    line,
                } => {
                    // The position moves with what is handed out, not with what was read.
                    if let Some(s) = self.splits.get_mut(split) {
                        s.offset = offset;
                        s.line = line;
                    }
                    if let Some(batch) = batch {
                        return Ok(SourceEvent::Batch { split, batch });
                    }
                }
                Ready::SplitEnd(split) => {
                    if let Some(s) = self.splits.get_mut(split) {
                        s.done = true;
                    }
                    return Ok(SourceEvent::SplitEnd(split));
                }
                Ready::End => {
                    self.ended = true;
                    return Ok(SourceEvent::End);
                }
            }
        }
    }

    fn snapshot_position(&mut self, _checkpoint: CheckpointId) -> Result<Vec<u8>> {
        let mut out = Vec::with_capacity(16 + self.splits.len() * 64);
        out.extend_from_slice(POSITION_MAGIC);
        out.push(POSITION_VERSION);
        out.extend_from_slice(&(self.splits.len() as u64).to_le_bytes());
        for s in &self.splits {
            let name = s.path.to_string_lossy();
            out.extend_from_slice(&(name.len() as u64).to_le_bytes());
            out.extend_from_slice(name.as_bytes());
            out.extend_from_slice(&s.offset.to_le_bytes());
            out.extend_from_slice(&s.line.to_le_bytes());
            out.push(u8::from(s.done));
        }
        Ok(out)
    }

    async fn close(&mut self) -> Result<()> {
        // The worker stops at its next step.
        self.read = None;
        let bad = self.bad.load(Ordering::Relaxed);
        if bad > 0 {
            tracing::warn!(
                table = %self.factory.table.name,
                records = bad,
                policy = ?self.factory.on_error,
                "lines that could not be read were skipped or sent to the dead-letter topic"
            );
        }
        Ok(())
    }
}

/// Reads a position.
struct Bytes<'a>(&'a [u8]);

impl<'a> Bytes<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.0.len() < n {
            return None;
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Some(head)
    }

    fn u64(&mut self) -> Option<u64> {
        self.take(8)?.try_into().ok().map(u64::from_le_bytes)
    }
}
