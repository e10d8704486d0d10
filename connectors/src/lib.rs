//! `streams-connectors`: sources and sinks, the ends of every pipeline.
//!
//! Each connector implements `streams_core::connector::Connector`, checks its `WITH` options
//! when a table is created, and makes a `SourceFactory` or `SinkFactory` for a job.
//! [`register_builtin`] adds them all to a registry, which the binary hands to the SQL engine.
//!
//! - [`Nexmark`]: the Nexmark auction event generator, with the event table of Flink's suite.
//! - [`Blackhole`]: a sink that drops its input.
//! - [`Filesystem`]: files of a directory (JSON lines, CSV, raw lines, Parquet): a bounded
//!   source, and a sink whose part files appear when a checkpoint completes.
//! - [`Print`]: rows to stdout as a table or JSON, above `rstreams run`'s progress line.
//! - [`Queue`]: topics of the embedded stream store, read and written exactly once when the
//!   job checkpoints. It needs the store's directory, so it is registered apart:
//!   [`register_queue`].
//!
//! Record formats (`json`, `csv`, `raw`) and the bad-record policy (`'format.on-error'`) are
//! shared by the connectors that read bytes: [`format`].

mod blackhole;
pub mod filesystem;
pub mod format;
pub mod nexmark;
pub mod print;
pub mod queue;
mod store;

use std::sync::Arc;

use streams_core::connector::ConnectorRegistry;

pub use blackhole::Blackhole;
pub use filesystem::Filesystem;
pub use nexmark::{Nexmark, NexmarkSource, count_char};
pub use print::Print;
pub use queue::Queue;
pub use store::StoreHandle;
/// Connectors report errors as the engine's errors: they surface in plans and jobs.
pub use streams_core::{Error, Result};

/// Adds every connector of this crate to `registry`.
pub fn register_builtin(registry: &mut ConnectorRegistry) {
    registry.register(Arc::new(Nexmark));
    registry.register(Arc::new(Blackhole));
    registry.register(Arc::new(Print));
    registry.register(Arc::new(Filesystem::new(None)));
}

/// Adds the `queue` connector over the store in `data_dir` (opened when a job first uses it),
/// and makes the other connectors' dead-letter topics go to that store.
pub fn register_queue(registry: &mut ConnectorRegistry, data_dir: impl Into<std::path::PathBuf>) {
    let store = StoreHandle::new(data_dir);
    registry.register(Arc::new(Queue::with_handle(store.clone())));
    registry.register(Arc::new(Filesystem::new(Some(store))));
}
