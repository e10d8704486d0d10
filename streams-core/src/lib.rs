//! `streams-core`: the engine between the frontends and the storage.
//!
//! SQL (`streams-sql`) and the Rust DSL both produce one logical plan: DataFusion's `LogicalPlan`
//! plus streaming extension nodes (watermark, window aggregate, stream join, sink). This crate
//! turns that plan into a topology of operator nodes with a parallelism each, runs it on tokio
//! over Arrow record batches, and coordinates watermarks and checkpoints. It defines the
//! `Source`, `Sink` and `Operator` traits and the connector registry that the binary fills.
//!
//! Built so far: the event-time rules the operators will apply, as plain functions and state
//! machines tested without a runtime: [`window`] (which windows a time belongs to, session
//! merging, when a window fires, when a row is late) and [`time`] (watermark generation and
//! combination over inputs, idleness), [`topology`] (nodes, edges, chaining into tasks, the
//! `EXPLAIN` rendering), [`partition`] (key groups: which subtask owns which keys) and
//! [`checkpoint`] (when to start a checkpoint, barrier alignment). The plan, operators and runtime are the rest of the engine core issue.
//! See `../shared/DESIGN.md`.

pub mod checkpoint;
mod error;
pub mod message;
pub mod metrics;
pub mod operator;
pub mod ops;
pub mod partition;
pub mod plan;
pub mod runtime;
pub mod sink;
pub mod source;
pub mod testing;
pub mod time;
pub mod topology;
pub mod window;

pub use error::{Error, Result};
pub use message::{Barrier, Message, Watermark};
pub use operator::{Operator, OperatorContext, OperatorFactory, Output};
pub use sink::{Sink, SinkContext, SinkFactory};
pub use source::{Source, SourceContext, SourceEvent, SourceFactory};

/// Arrow and DataFusion as the engine uses them: one version for every crate of rstreams.
pub use datafusion;
pub use datafusion::arrow;
