//! Reading a topic: one split per queue, records decoded into Arrow batches, positions
//! checkpointed as next offsets.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use streams_core::arrow::datatypes::SchemaRef;
use streams_core::arrow::record_batch::RecordBatch;
use streams_core::checkpoint::CheckpointId;
use streams_core::connector::Options;
use streams_core::metrics::OperatorMetrics;
use streams_core::{Error, Result, Source, SourceEvent, SourceFactory};
use streams_queue::{ReadOptions, StartFrom, Store, StoredRecord};

use crate::format::{BadRecords, Format, OnError, RecordDecoder};
use crate::store::StoreHandle;

/// Where a fresh job starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Startup {
    Earliest,
    Latest,
    Group,
    Timestamp(i64),
}

/// A topic as a source table.
#[derive(Clone, Debug)]
pub struct QueueSource {
    table: String,
    store: Arc<Store>,
    topic: String,
    queues: u32,
    schema: SchemaRef,
    startup: Startup,
    bounded: bool,
    group: Option<String>,
    poll: Duration,
    format: Format,
    on_error: OnError,
    store_handle: StoreHandle,
}

impl QueueSource {
    pub(super) fn new(
        table: &str,
        store_handle: StoreHandle,
        schema: SchemaRef,
        format: Format,
        options: &Options,
    ) -> Result<Self> {
        let store = store_handle
            .get()
            .map_err(|e| Error::plan(format!("queue connector: {e}")))?;
        let (topic, queues) = super::topic_of(table, &store, options)?;
        let bad = |key: &str, v: &str, expected: &str| {
            Error::plan(format!(
                "table `{table}`: option '{key}' = '{v}' is not valid; expected {expected}"
            ))
        };
        let startup = match options
            .get("scan.startup.mode")
            .unwrap_or("earliest-offset")
        {
            "earliest-offset" => Startup::Earliest,
            "latest-offset" => Startup::Latest,
            "group-offsets" => Startup::Group,
            "timestamp" => Startup::Timestamp(
                options
                    .parse::<i64>(table, "scan.startup.timestamp-millis")?
                    .ok_or_else(|| {
                        Error::plan(format!(
                            "table `{table}`: 'scan.startup.mode' = 'timestamp' needs \
                             'scan.startup.timestamp-millis'"
                        ))
                    })?,
            ),
            v => {
                return Err(bad(
                    "scan.startup.mode",
                    v,
                    "earliest-offset, latest-offset, group-offsets or timestamp",
                ));
            }
        };
        let bounded = match options.get("scan.bounded.mode").unwrap_or("unbounded") {
            "unbounded" => false,
            "latest-offset" => true,
            v => return Err(bad("scan.bounded.mode", v, "unbounded or latest-offset")),
        };
        let group = options.get("properties.group.id").map(str::to_string);
        if startup == Startup::Group && group.is_none() {
            return Err(Error::plan(format!(
                "table `{table}`: 'scan.startup.mode' = 'group-offsets' needs \
                 'properties.group.id'"
            )));
        }
        let poll = match options.get("scan.poll-interval") {
            Some(v) => humantime::parse_duration(v)
                .map_err(|e| bad("scan.poll-interval", v, &format!("a duration ({e})")))?,
            None => Duration::from_millis(20),
        };
        let on_error = OnError::from_options(table, options, Some(&store_handle))?;
        Ok(QueueSource {
            table: table.to_string(),
            store,
            topic,
            queues,
            schema,
            startup,
            bounded,
            group,
            poll,
            format,
            on_error,
            store_handle,
        })
    }
}

impl SourceFactory for QueueSource {
    fn name(&self) -> &str {
        &self.table
    }

    fn schema(&self) -> SchemaRef {
        Arc::clone(&self.schema)
    }

    fn splits(&self) -> usize {
        self.queues as usize
    }

    fn create(&self, subtask: usize, parallelism: usize) -> Result<Box<dyn Source>> {
        let splits = (0..self.queues)
            .filter(|q| (*q as usize) % parallelism.max(1) == subtask)
            .map(|queue| Split {
                queue,
                next: None,
                end: None,
                done: false,
            })
            .collect();
        Ok(Box::new(QueueReader {
            factory: self.clone(),
            splits,
            turn: 0,
            committed: BTreeMap::new(),
            decoder: RecordDecoder::new(
                Arc::clone(&self.schema),
                self.format.clone(),
                BadRecords::new(
                    &self.table,
                    self.on_error.clone(),
                    Some(self.store_handle.clone()),
                ),
            ),
            metrics: None,
            lag_at: None,
            ended: false,
        }))
    }

    /// JSON topics only (see the filesystem source's).
    fn with_projection(&self, columns: &[usize]) -> Option<Arc<dyn SourceFactory>> {
        let mut narrowed = self.clone();
        narrowed.schema = self.format.projected(&self.schema, columns)?;
        Some(Arc::new(narrowed))
    }
}

#[derive(Debug)]
struct Split {
    queue: u32,
    /// Next offset to read; `None` until `start` resolves the startup mode.
    next: Option<u64>,
    /// A bounded scan stops here.
    end: Option<u64>,
    done: bool,
}

#[derive(Debug)]
struct QueueReader {
    factory: QueueSource,
    splits: Vec<Split>,
    turn: usize,
    /// Offsets recorded per checkpoint, committed to the group when it completes.
    committed: BTreeMap<CheckpointId, Vec<(u32, u64)>>,
    decoder: RecordDecoder,
    metrics: Option<Arc<OperatorMetrics>>,
    lag_at: Option<Instant>,
    ended: bool,
}

fn queue_err(what: &str, e: streams_queue::Error) -> Error {
    Error::Execution {
        context: what.to_string(),
        message: e.to_string(),
    }
}

impl QueueReader {
    fn describe(&self, queue: u32) -> String {
        format!(
            "table `{}` (topic '{}', queue {queue})",
            self.factory.table, self.factory.topic
        )
    }

    /// Decodes records into one batch; unreadable ones go to the table's `format.on-error`.
    fn decode(&mut self, queue: u32, records: &[StoredRecord]) -> Result<RecordBatch> {
        let payloads: Vec<&[u8]> = records.iter().map(|r| &r.payload[..]).collect();
        let topic = &self.factory.topic;
        self.decoder.decode(&payloads, |i| {
            format!(
                "topic '{topic}', queue {queue}, offset {}",
                records[i].offset
            )
        })
    }

    /// Records behind the end of `queue`, at most every 200 ms per source subtask.
    fn report_lag(&mut self) {
        let Some(metrics) = &self.metrics else {
            return;
        };
        if self
            .lag_at
            .is_some_and(|t| t.elapsed() < Duration::from_millis(200))
        {
            return;
        }
        self.lag_at = Some(Instant::now());
        let mut lag = 0;
        for s in &self.splits {
            if let Ok((_, end)) = self.factory.store.offsets(&self.factory.topic, s.queue) {
                let end = s.end.map_or(end, |e| e.min(end));
                lag += end.saturating_sub(s.next.unwrap_or(0));
            }
        }
        metrics.set_lag(lag);
    }
}

#[async_trait]
impl Source for QueueReader {
    fn splits(&self) -> usize {
        self.splits.len()
    }

    fn restore_position(&mut self, position: &[u8]) -> Result<()> {
        if position.is_empty() {
            return Ok(());
        }
        let bad = || {
            Error::IncompatibleState(format!(
                "table `{}`: the checkpointed position does not fit topic '{}' ({} queues)",
                self.factory.table, self.factory.topic, self.factory.queues
            ))
        };
        if position.len() != self.splits.len() * 20 {
            return Err(bad());
        }
        for (s, chunk) in self.splits.iter_mut().zip(position.chunks_exact(20)) {
            let queue = u32::from_le_bytes(chunk[0..4].try_into().map_err(|_| bad())?);
            if queue != s.queue {
                return Err(bad());
            }
            s.next = Some(u64::from_le_bytes(
                chunk[4..12].try_into().map_err(|_| bad())?,
            ));
            let end = u64::from_le_bytes(chunk[12..20].try_into().map_err(|_| bad())?);
            s.end = (end != u64::MAX).then_some(end);
        }
        Ok(())
    }

    async fn start(&mut self, ctx: &streams_core::SourceContext) -> Result<()> {
        self.decoder.bad_records().start(Arc::clone(&ctx.metrics))?;
        self.metrics = Some(Arc::clone(&ctx.metrics));
        let f = &self.factory;
        let committed = match (&f.group, f.startup) {
            (Some(g), Startup::Group) => f
                .store
                .committed_offsets(g, &f.topic)
                .map_err(|e| queue_err(&f.table, e))?,
            _ => BTreeMap::new(),
        };
        for s in &mut self.splits {
            if s.next.is_none() {
                let from = match f.startup {
                    Startup::Earliest => StartFrom::Earliest,
                    Startup::Latest => StartFrom::Latest,
                    Startup::Timestamp(t) => StartFrom::Timestamp(t),
                    Startup::Group => match committed.get(&s.queue) {
                        Some(&o) => {
                            s.next = Some(o);
                            continue;
                        }
                        None => StartFrom::Earliest,
                    },
                };
                let o = f
                    .store
                    .resolve_start(&f.topic, s.queue, from)
                    .map_err(|e| queue_err(&f.table, e))?;
                s.next = Some(o);
            }
            if f.bounded && s.end.is_none() {
                let (_, end) = f
                    .store
                    .offsets(&f.topic, s.queue)
                    .map_err(|e| queue_err(&f.table, e))?;
                s.end = Some(end);
            }
        }
        Ok(())
    }

    async fn next(&mut self) -> Result<SourceEvent> {
        loop {
            let n = self.splits.len();
            if self.ended || self.splits.iter().all(|s| s.done) {
                self.ended = true;
                if let Some(m) = &self.metrics {
                    m.set_lag(0);
                }
                return Ok(SourceEvent::End);
            }
            for off in 0..n {
                let i = (self.turn + off) % n;
                let s = &self.splits[i];
                if s.done {
                    continue;
                }
                let next = s.next.unwrap_or(0);
                if s.end.is_some_and(|e| next >= e) {
                    self.splits[i].done = true;
                    return Ok(SourceEvent::SplitEnd(i));
                }
                let mut opts = ReadOptions::default();
                if let Some(e) = s.end {
                    opts.max_records = opts.max_records.min((e - next) as usize);
                }
                let queue = s.queue;
                let records = self
                    .factory
                    .store
                    .read(&self.factory.topic, queue, next, &opts)
                    .map_err(|e| queue_err(&self.describe(queue), e))?;
                let Some(last) = records.last() else {
                    continue;
                };
                let after = last.offset + 1;
                let batch = self.decode(queue, &records)?;
                // Advanced only once the batch is in hand: a dropped future loses nothing.
                self.splits[i].next = Some(after);
                self.turn = i + 1;
                self.report_lag();
                return Ok(SourceEvent::Batch { split: i, batch });
            }
            self.report_lag();
            tokio::time::sleep(self.factory.poll).await;
        }
    }

    fn snapshot_position(&mut self, checkpoint: CheckpointId) -> Result<Vec<u8>> {
        let mut out = Vec::with_capacity(self.splits.len() * 20);
        let mut offsets = Vec::with_capacity(self.splits.len());
        for s in &self.splits {
            let next = s.next.unwrap_or(0);
            out.extend_from_slice(&s.queue.to_le_bytes());
            out.extend_from_slice(&next.to_le_bytes());
            out.extend_from_slice(&s.end.unwrap_or(u64::MAX).to_le_bytes());
            offsets.push((s.queue, next));
        }
        if self.factory.group.is_some() {
            self.committed.insert(checkpoint, offsets);
        }
        Ok(out)
    }

    async fn commit(&mut self, checkpoint: CheckpointId) -> Result<()> {
        let Some(group) = &self.factory.group else {
            return Ok(());
        };
        let later = self.committed.split_off(&(checkpoint + 1));
        let due = std::mem::replace(&mut self.committed, later);
        if let Some((_, offsets)) = due.into_iter().next_back() {
            self.factory
                .store
                .commit_offsets(group, &self.factory.topic, &offsets)
                .map_err(|e| queue_err(&self.factory.table, e))?;
        }
        Ok(())
    }

    async fn close(&mut self) -> Result<()> {
        let bad = self.decoder.bad_records();
        if bad.count() > 0 {
            tracing::warn!(
                table = %self.factory.table,
                records = bad.count(),
                policy = ?bad.policy(),
                "records that could not be read were skipped or sent to the dead-letter topic"
            );
        }
        Ok(())
    }
}
