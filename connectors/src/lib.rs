//! `streams-connectors`: sources and sinks, the ends of every pipeline.
//!
//! Each connector implements `streams_core::connector::Connector`, checks its `WITH` options
//! when a table is created, and makes a `SourceFactory` or `SinkFactory` for a job.
//! [`register_builtin`] adds them all to a registry, which the binary hands to the SQL engine.
//!
//! - [`Nexmark`]: the Nexmark auction event generator, with the event table of Flink's suite.
//! - [`Blackhole`]: a sink that drops its input.
//!
//! The queue store, files, and print are the subject of the connectors issue.

mod blackhole;
pub mod nexmark;

use std::sync::Arc;

use streams_core::connector::ConnectorRegistry;

pub use blackhole::Blackhole;
pub use nexmark::{Nexmark, NexmarkSource};
/// Connectors report errors as the engine's errors: they surface in plans and jobs.
pub use streams_core::{Error, Result};

/// Adds every connector of this crate to `registry`.
pub fn register_builtin(registry: &mut ConnectorRegistry) {
    registry.register(Arc::new(Nexmark));
    registry.register(Arc::new(Blackhole));
}
