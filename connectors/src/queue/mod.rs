//! `'connector' = 'queue'`: tables over topics of the embedded stream store (`streams-queue`),
//! read and written exactly once when the job checkpoints.
//!
//! - **Source**: one split per logical queue; subtask `s` of `p` reads queues `s, s + p, ...`.
//!   Its position (next offset per queue, and where a bounded scan ends) goes into every
//!   checkpoint, so a restarted job reads on from there; committing a checkpoint also commits
//!   the offsets to the consumer group `properties.group.id`, if set (for lag monitoring).
//! - **Sink**: rows are staged per checkpoint and kept in the checkpoint's state; they are
//!   appended to the topic only when the checkpoint completes, so readers see committed
//!   results only. Each record carries a header `rstreams.txn` naming (sink, subtask,
//!   checkpoint, sequence); a commit repeated after a crash first looks for its records past the
//!   offsets noted at pre-commit and appends only those missing: writes are idempotent per
//!   checkpoint. Without checkpoints the sink appends as it writes (at least once).
//!
//! A record holds one row: a JSON object (`'format' = 'json'`, the default), a CSV line
//! (`csv`) or the payload itself as the table's only column (`raw`). Records that cannot be
//! read fail the job, are skipped or go to a dead-letter topic (`'format.on-error'`).

mod sink;
mod source;

use std::path::PathBuf;
use std::sync::{Arc, LazyLock};

use streams_core::arrow::datatypes::SchemaRef;
use streams_core::connector::{Connector, OptionSpec, Options};
use streams_core::{Error, Result, SinkFactory, SourceFactory};
use streams_queue::Store;

use crate::format::{FORMAT_OPTIONS, Format, ON_ERROR_OPTIONS, OnError};
use crate::store::StoreHandle;

pub use sink::QueueSink;
pub use source::QueueSource;

/// Header naming the sink transaction a record belongs to.
pub const TXN_HEADER: &str = "rstreams.txn";

const OWN_OPTIONS: &[OptionSpec] = &[
    OptionSpec {
        name: "topic",
        required: true,
        doc: "the topic to read or write",
    },
    OptionSpec {
        name: "format",
        required: false,
        doc: "record format: json (default), csv or raw (the payload as the only column)",
    },
    OptionSpec {
        name: "scan.startup.mode",
        required: false,
        doc: "where a fresh job starts reading: earliest-offset (default), latest-offset, \
              group-offsets (falls back to earliest), timestamp",
    },
    OptionSpec {
        name: "scan.startup.timestamp-millis",
        required: false,
        doc: "with scan.startup.mode = timestamp: the first record at or after this time",
    },
    OptionSpec {
        name: "scan.bounded.mode",
        required: false,
        doc: "unbounded (default), or latest-offset: stop at the end the queues had when the \
              job first started (kept across restarts)",
    },
    OptionSpec {
        name: "properties.group.id",
        required: false,
        doc: "consumer group to commit offsets to when a checkpoint completes",
    },
    OptionSpec {
        name: "scan.poll-interval",
        required: false,
        doc: "how long to wait when every queue is read to its end, e.g. 20ms (default)",
    },
    OptionSpec {
        name: "key.fields",
        required: false,
        doc: "sink: columns (separated by ;) whose JSON makes the record key and picks the queue; \
              default: subtask s writes queue s modulo the queue count",
    },
];

static OPTIONS: LazyLock<Vec<OptionSpec>> = LazyLock::new(|| {
    let mut all = OWN_OPTIONS.to_vec();
    all.extend(ON_ERROR_OPTIONS);
    all.extend(FORMAT_OPTIONS);
    all
});

/// The `queue` connector over one store, opened on first use.
#[derive(Debug)]
pub struct Queue {
    store: StoreHandle,
}

impl Queue {
    /// Tables over the store in `dir`, opened when a job first needs it.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Queue::with_handle(StoreHandle::new(dir))
    }

    /// Tables over a store that is already open.
    pub fn with_store(store: Arc<Store>) -> Self {
        Queue::with_handle(StoreHandle::open_store(store))
    }

    /// Tables over the store of `handle` (shared with other connectors).
    pub fn with_handle(store: StoreHandle) -> Self {
        Queue { store }
    }

    fn store(&self) -> Result<Arc<Store>> {
        self.store
            .get()
            .map_err(|e| Error::plan(format!("queue connector: {e}")))
    }
}

fn format_of(table: &str, schema: &SchemaRef, options: &Options) -> Result<Format> {
    Format::from_options(table, schema, options, &[])?
        .ok_or_else(|| Error::Internal("no format".into()))
}

fn topic_of(table: &str, store: &Store, options: &Options) -> Result<(String, u32)> {
    let topic = options
        .get("topic")
        .ok_or_else(|| Error::plan(format!("table `{table}`: option 'topic' is required")))?;
    let queues = store.queue_count(topic).map_err(|e| {
        Error::plan(format!(
            "table `{table}`: topic '{topic}': {e} (create it with `rstreams topic create`)"
        ))
    })?;
    Ok((topic.to_string(), queues))
}

impl Connector for Queue {
    fn name(&self) -> &str {
        "queue"
    }

    fn options(&self) -> &[OptionSpec] {
        &OPTIONS
    }

    fn source(
        &self,
        table: &str,
        schema: SchemaRef,
        options: &Options,
    ) -> Result<Arc<dyn SourceFactory>> {
        let format = format_of(table, &schema, options)?;
        Ok(Arc::new(QueueSource::new(
            table,
            self.store.clone(),
            schema,
            format,
            options,
        )?))
    }

    fn sink(
        &self,
        table: &str,
        schema: SchemaRef,
        options: &Options,
    ) -> Result<Arc<dyn SinkFactory>> {
        let format = format_of(table, &schema, options)?;
        // Checked, though only reading uses it: a table may be both read and written.
        OnError::from_options(table, options, Some(&self.store))?;
        let store = self.store()?;
        let (topic, queues) = topic_of(table, &store, options)?;
        Ok(Arc::new(QueueSink::new(
            table, store, topic, queues, &schema, format, options,
        )?))
    }
}
