//! Writing a topic: rows staged per checkpoint, appended when it completes, idempotently.

use std::collections::BTreeMap;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use streams_core::arrow::datatypes::SchemaRef;
use streams_core::arrow::json::LineDelimitedWriter;
use streams_core::arrow::record_batch::RecordBatch;
use streams_core::checkpoint::CheckpointId;
use streams_core::connector::Options;
use streams_core::state::OperatorState;
use streams_core::{Error, Result, Sink, SinkContext, SinkFactory};
use streams_queue::{ReadOptions, Record, Store};

use crate::format::{Format, RecordEncoder};

use super::TXN_HEADER;

/// A topic as a sink table.
#[derive(Debug)]
pub struct QueueSink {
    table: String,
    store: Arc<Store>,
    topic: String,
    queues: u32,
    key_columns: Vec<usize>,
    encoder: RecordEncoder,
}

impl QueueSink {
    pub(super) fn new(
        table: &str,
        store: Arc<Store>,
        topic: String,
        queues: u32,
        schema: &SchemaRef,
        format: Format,
        options: &Options,
    ) -> Result<Self> {
        let mut key_columns = Vec::new();
        if let Some(keys) = options.get("key.fields") {
            for name in keys.split(';').map(str::trim).filter(|k| !k.is_empty()) {
                let i = schema.index_of(name).map_err(|_| {
                    Error::plan(format!(
                        "table `{table}`: 'key.fields' names `{name}`, which is not a column"
                    ))
                })?;
                key_columns.push(i);
            }
        }
        Ok(QueueSink {
            table: table.to_string(),
            store,
            topic,
            queues,
            key_columns,
            encoder: RecordEncoder::new(format),
        })
    }
}

impl SinkFactory for QueueSink {
    fn name(&self) -> &str {
        &self.table
    }

    fn create(&self, subtask: usize, _parallelism: usize) -> Result<Box<dyn Sink>> {
        Ok(Box::new(QueueWriter {
            table: self.table.clone(),
            store: Arc::clone(&self.store),
            topic: self.topic.clone(),
            queues: self.queues,
            key_columns: self.key_columns.clone(),
            encoder: self.encoder.clone(),
            txn_prefix: String::new(),
            subtask,
            transactional: true,
            open: Vec::new(),
            pending: BTreeMap::new(),
            recovering: false,
        }))
    }

    fn accepts_updates(&self) -> bool {
        false
    }
}

/// Rows of one checkpoint not yet known to be appended, and where each queue ended when they
/// were staged (their records, if appended, come after).
#[derive(Debug, Default)]
struct Staged {
    batches: Vec<RecordBatch>,
    ends: BTreeMap<u32, u64>,
}

#[derive(Debug)]
struct QueueWriter {
    table: String,
    store: Arc<Store>,
    topic: String,
    queues: u32,
    key_columns: Vec<usize>,
    encoder: RecordEncoder,
    /// `<table>/<node>/<subtask>/`: who wrote a record.
    txn_prefix: String,
    subtask: usize,
    /// Publish on commit (the job checkpoints) or as written.
    transactional: bool,
    open: Vec<RecordBatch>,
    pending: BTreeMap<CheckpointId, Staged>,
    /// Set after a restore: the first commits check what a previous run already appended.
    recovering: bool,
}

fn exec(table: &str, message: impl std::fmt::Display) -> Error {
    Error::Execution {
        context: format!("table `{table}`"),
        message: message.to_string(),
    }
}

impl QueueWriter {
    /// Records for `batches` by queue, in order; keys are JSON objects of the key columns.
    fn records(&self, batches: &[RecordBatch]) -> Result<BTreeMap<u32, Vec<Record>>> {
        let mut by_queue: BTreeMap<u32, Vec<Record>> = BTreeMap::new();
        let default_queue = (self.subtask as u32) % self.queues.max(1);
        for batch in batches {
            let payloads = self.encoder.encode(batch)?;
            let keys = if self.key_columns.is_empty() {
                None
            } else {
                let mut kbuf = Vec::new();
                {
                    let mut w = LineDelimitedWriter::new(&mut kbuf);
                    w.write(&batch.project(&self.key_columns)?)?;
                    w.finish()?;
                }
                Some(kbuf)
            };
            let mut key_lines = keys.as_deref().map(|k| k.split(|&b| b == b'\n'));
            for payload in payloads {
                let mut record = Record::new(payload);
                let queue = match key_lines.as_mut().and_then(Iterator::next) {
                    Some(k) => {
                        let key = Bytes::copy_from_slice(k);
                        let q = crc32c::crc32c(&key) % self.queues.max(1);
                        record.key = Some(key);
                        q
                    }
                    None => default_queue,
                };
                by_queue.entry(queue).or_default().push(record);
            }
        }
        Ok(by_queue)
    }

    fn append(&self, queue: u32, records: Vec<Record>) -> Result<()> {
        // Bounded appends: a frame stays well under the store's limit.
        for chunk in records.chunks(4096) {
            self.store
                .append(&self.topic, queue, chunk)
                .map_err(|e| exec(&self.table, format!("append to '{}': {e}", self.topic)))?;
        }
        Ok(())
    }

    /// Records of `txn` already in `queue` from `from` on (appended by a run that crashed).
    fn already_appended(&self, queue: u32, from: u64, txn: &str) -> Result<usize> {
        let mut n = 0;
        let mut offset = from;
        let opts = ReadOptions::default();
        loop {
            let records = self
                .store
                .read(&self.topic, queue, offset, &opts)
                .map_err(|e| exec(&self.table, format!("read '{}': {e}", self.topic)))?;
            let Some(last) = records.last() else {
                return Ok(n);
            };
            offset = last.offset + 1;
            n += records
                .iter()
                .filter(|r| {
                    r.headers
                        .iter()
                        .any(|(k, v)| k == TXN_HEADER && v.starts_with(txn.as_bytes()))
                })
                .count();
        }
    }

    /// Appends checkpoint `id`'s rows, each record tagged with its transaction and sequence.
    fn publish(&self, id: CheckpointId, staged: Staged) -> Result<()> {
        let txn = format!("{}{id}/", self.txn_prefix);
        for (queue, mut records) in self.records(&staged.batches)? {
            for (seq, r) in records.iter_mut().enumerate() {
                r.headers
                    .push((TXN_HEADER.to_string(), Bytes::from(format!("{txn}{seq}"))));
            }
            let skip = match (self.recovering, staged.ends.get(&queue)) {
                (true, Some(&from)) => self.already_appended(queue, from, &txn)?,
                _ => 0,
            };
            if skip > 0 {
                tracing::info!(
                    table = %self.table, checkpoint = id, queue, skip,
                    "records of this checkpoint were already appended (by the run before this restart); appending the rest"
                );
            }
            let rest: Vec<Record> = records.into_iter().skip(skip).collect();
            if !rest.is_empty() {
                self.append(queue, rest)?;
            }
        }
        Ok(())
    }
}

#[async_trait]
impl Sink for QueueWriter {
    async fn start(&mut self, ctx: &SinkContext) -> Result<()> {
        self.transactional = ctx.checkpointing;
        self.txn_prefix = format!("{}/{}/{}/", self.table, ctx.node, self.subtask);
        Ok(())
    }

    async fn write(&mut self, batch: RecordBatch) -> Result<()> {
        if self.transactional {
            self.open.push(batch);
            return Ok(());
        }
        for (queue, records) in self.records(&[batch])? {
            self.append(queue, records)?;
        }
        Ok(())
    }

    async fn pre_commit(&mut self, checkpoint: CheckpointId) -> Result<Option<OperatorState>> {
        let mut ends = BTreeMap::new();
        for q in 0..self.queues {
            let (_, end) = self
                .store
                .offsets(&self.topic, q)
                .map_err(|e| exec(&self.table, e))?;
            ends.insert(q, end);
        }
        let staged = Staged {
            batches: std::mem::take(&mut self.open),
            ends,
        };
        self.pending.insert(checkpoint, staged);
        let mut state = OperatorState::new();
        for (id, s) in &self.pending {
            state.put_value(format!("{id}"), 1);
            for (q, end) in &s.ends {
                state.put_value(format!("{id}/end/{q}"), *end as i64);
            }
            for b in &s.batches {
                state.put_batch(format!("{id}"), b.clone());
            }
        }
        Ok(Some(state))
    }

    async fn restore(
        &mut self,
        _checkpoint: CheckpointId,
        state: Option<OperatorState>,
    ) -> Result<()> {
        let Some(mut state) = state else {
            return Ok(());
        };
        let bad = |what: &str| {
            Error::IncompatibleState(format!("table `{}`: sink state {what}", self.table))
        };
        let mut pending: BTreeMap<CheckpointId, Staged> = BTreeMap::new();
        for (name, batch) in state.take_batches() {
            let id = name.parse::<CheckpointId>().map_err(|_| bad(&name))?;
            pending.entry(id).or_default().batches.push(batch);
        }
        for id in pending.keys().copied().collect::<Vec<_>>() {
            for q in 0..self.queues {
                if let Some(end) = state.value(&format!("{id}/end/{q}"))
                    && let Some(s) = pending.get_mut(&id)
                {
                    s.ends.insert(q, end as u64);
                }
            }
        }
        self.pending = pending;
        self.recovering = true;
        Ok(())
    }

    async fn commit(&mut self, checkpoint: CheckpointId) -> Result<()> {
        let later = self.pending.split_off(&(checkpoint + 1));
        let due = std::mem::replace(&mut self.pending, later);
        for (id, staged) in due {
            self.publish(id, staged)?;
        }
        self.recovering = false;
        Ok(())
    }

    async fn close(&mut self) -> Result<()> {
        if !self.transactional {
            return Ok(());
        }
        if !self.open.is_empty() {
            tracing::warn!(
                table = %self.table,
                "rows written after the last checkpoint were not published (the job stopped \
                 without a final checkpoint)"
            );
        }
        Ok(())
    }
}
