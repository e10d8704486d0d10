//! The built-in operators: stateless ones (filter, projection, union) that evaluate DataFusion
//! physical expressions on whole batches, and window aggregates.

pub mod aggregate;
pub mod join;
mod stateless;
#[cfg(test)]
mod testkit;
pub mod topn;
pub mod window;

pub use stateless::{Filter, Projection, Union};

use std::fmt::Debug;

use crate::Result;
use crate::operator::{Operator, OperatorFactory};

/// Counts `count` late rows and, when `port` is set, emits them there (`rows` builds the batch,
/// only then). Late rows are never dropped without a trace.
pub(crate) fn route_late(
    metrics: Option<&crate::metrics::OperatorMetrics>,
    port: Option<usize>,
    count: usize,
    rows: impl FnOnce() -> Result<datafusion::arrow::record_batch::RecordBatch>,
    out: &mut crate::operator::Output,
) -> Result<()> {
    if count == 0 {
        return Ok(());
    }
    if let Some(m) = metrics {
        m.late(count);
    }
    if let Some(port) = port {
        out.emit_to(port, rows()?);
    }
    Ok(())
}

/// A factory for operators whose subtasks all start as copies of one value.
#[derive(Debug)]
pub struct Cloning<T>(pub T);

impl<T> OperatorFactory for Cloning<T>
where
    T: Operator + Clone + Sync + 'static,
{
    fn create(&self, _subtask: usize, _parallelism: usize) -> Result<Box<dyn Operator>> {
        Ok(Box::new(self.0.clone()))
    }
}
