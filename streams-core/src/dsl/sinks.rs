//! Sinks the DSL's terminal steps write to: `print()` and `for_each(...)`.

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::arrow::util::pretty::pretty_format_batches;

use crate::sink::{Sink, SinkFactory};
use crate::{Error, Result};

/// Prints each batch to standard output as a table (update streams show their `__op`).
#[derive(Clone, Debug, Default)]
pub struct PrintSink;

impl SinkFactory for PrintSink {
    fn name(&self) -> &str {
        "print"
    }
    fn create(&self, _subtask: usize, _parallelism: usize) -> Result<Box<dyn Sink>> {
        Ok(Box::new(PrintSink))
    }
    fn accepts_updates(&self) -> bool {
        true
    }
}

#[async_trait]
impl Sink for PrintSink {
    async fn write(&mut self, batch: RecordBatch) -> Result<()> {
        let table = pretty_format_batches(&[batch])?;
        println!("{table}");
        Ok(())
    }
}

/// A function called with every batch the stream produces, from any subtask.
pub type BatchFn = dyn Fn(&RecordBatch) -> Result<()> + Send + Sync;

/// Calls a function with each batch.
#[derive(Clone)]
pub struct ForEachSink {
    f: Arc<BatchFn>,
    updates: bool,
}

impl fmt::Debug for ForEachSink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ForEachSink").finish_non_exhaustive()
    }
}

impl ForEachSink {
    /// Calls `f` with each batch; `updates` says whether it understands update streams.
    pub fn new(f: Arc<BatchFn>, updates: bool) -> Self {
        ForEachSink { f, updates }
    }
}

impl SinkFactory for ForEachSink {
    fn name(&self) -> &str {
        "for_each"
    }
    fn create(&self, _subtask: usize, _parallelism: usize) -> Result<Box<dyn Sink>> {
        Ok(Box::new(self.clone()))
    }
    fn accepts_updates(&self) -> bool {
        self.updates
    }
}

#[async_trait]
impl Sink for ForEachSink {
    async fn write(&mut self, batch: RecordBatch) -> Result<()> {
        (self.f)(&batch).map_err(|e| match e {
            Error::Execution { .. } => e,
            other => other.context("for_each"),
        })
    }
}
