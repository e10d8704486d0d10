//! `'connector' = 'blackhole'`: a sink that drops what it is given (for benchmarks, and for
//! jobs whose effect is their metrics). It takes update streams too.

use std::sync::Arc;

use async_trait::async_trait;
use streams_core::arrow::array::RecordBatch;
use streams_core::arrow::datatypes::SchemaRef;
use streams_core::connector::{Connector, OptionSpec, Options};
use streams_core::{Error, Result, Sink, SinkFactory, SourceFactory};

/// The `blackhole` connector (a sink only).
#[derive(Debug, Default)]
pub struct Blackhole;

impl Connector for Blackhole {
    fn name(&self) -> &str {
        "blackhole"
    }

    fn options(&self) -> &[OptionSpec] {
        &[]
    }

    fn source(&self, table: &str, _: SchemaRef, _: &Options) -> Result<Arc<dyn SourceFactory>> {
        Err(Error::plan(format!(
            "table `{table}`: the blackhole connector is a sink; it cannot be read"
        )))
    }

    fn sink(&self, table: &str, _: SchemaRef, _: &Options) -> Result<Arc<dyn SinkFactory>> {
        Ok(Arc::new(BlackholeSink {
            name: table.to_string(),
        }))
    }
}

#[derive(Debug)]
struct BlackholeSink {
    name: String,
}

impl SinkFactory for BlackholeSink {
    fn name(&self) -> &str {
        &self.name
    }

    fn create(&self, _subtask: usize, _parallelism: usize) -> Result<Box<dyn Sink>> {
        Ok(Box::new(Discard))
    }

    fn accepts_updates(&self) -> bool {
        true
    }
}

#[derive(Debug)]
struct Discard;

#[async_trait]
impl Sink for Discard {
    async fn write(&mut self, _batch: RecordBatch) -> Result<()> {
        Ok(())
    }
}
