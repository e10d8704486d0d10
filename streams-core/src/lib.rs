//! `streams-core`: the engine between the frontends and the storage.
//!
//! SQL (`streams-sql`) and the Rust DSL both produce one logical plan: DataFusion's `LogicalPlan`
//! plus streaming extension nodes (watermark, window aggregate, stream join, sink). This crate
//! turns that plan into a topology of operator nodes with a parallelism each, runs it on tokio
//! over Arrow record batches, and coordinates watermarks and checkpoints. It defines the
//! `Source`, `Sink` and `Operator` traits and the [`connector`] registry that the binary fills.
//!
//! The pieces, upstream to downstream:
//! - [`dsl`]: the Rust DSL ([`dsl::Pipeline`], [`dsl::Stream`]): fluent pipelines, typed steps
//!   over serde structs, compiled through the same plan builder as SQL.
//! - [`plan`]: the extension nodes ([`plan::StreamScan`], [`plan::WatermarkNode`],
//!   [`plan::WindowAggregateNode`], [`plan::StreamJoinNode`], [`plan::SinkNode`]), a Rust builder
//!   ([`plan::StreamPlanBuilder`]) and [`plan::compile`], which turns plans into a
//!   [`runtime::JobGraph`]: a [`topology::Topology`] plus what each node runs.
//! - [`runtime`]: [`runtime::launch`] starts one tokio task per (chain, subtask), joined by
//!   bounded channels carrying [`Message`]s (`Data | Watermark | Barrier | End`), and returns a
//!   [`runtime::JobHandle`] (wait, cancel, [`metrics`]).
//! - [`Operator`], [`Source`], [`Sink`]: the small lifecycle traits operators and connectors
//!   implement; [`ops`] holds the built-in operators (filter, projection, union, window
//!   aggregates over DataFusion accumulators, window, interval and regular joins, unbounded
//!   aggregates and Top-N over update streams).
//! - Event-time rules as plain functions and state machines: [`window`] (assignment, panes,
//!   sessions, firing, lateness), [`time`] (watermarks per split, combination, idleness),
//!   [`partition`] (key groups), [`checkpoint`] (when to checkpoint, barrier alignment).
//! - [`testing`]: a scripted in-memory source and a collecting sink.
//!
//! A windowed job, built through the Rust plan API (SQL and the DSL produce the same plan):
//!
//! ```
//! use std::sync::Arc;
//! use std::time::Duration;
//! use streams_core::arrow::array::{Int64Array, RecordBatch, TimestampMillisecondArray};
//! use streams_core::arrow::datatypes::{DataType, Field, Schema, TimeUnit};
//! use streams_core::datafusion::functions_aggregate::expr_fn::{count, sum};
//! use streams_core::datafusion::prelude::{col, lit};
//! use streams_core::plan::{JobConfig, StreamPlanBuilder, WindowOptions, compile};
//! use streams_core::testing::{CollectSink, MemorySource};
//! use streams_core::window::WindowSpec;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> streams_core::Result<()> {
//! let schema = Arc::new(Schema::new(vec![
//!     Field::new("user", DataType::Int64, false),
//!     Field::new("amount", DataType::Int64, false),
//!     Field::new("ts", DataType::Timestamp(TimeUnit::Millisecond, None), false),
//! ]));
//! let rows = RecordBatch::try_new(Arc::clone(&schema), vec![
//!     Arc::new(Int64Array::from(vec![1, 2, 1, 1])),
//!     Arc::new(Int64Array::from(vec![10, 20, 30, 40])),
//!     Arc::new(TimestampMillisecondArray::from(vec![1_000, 2_000, 9_000, 12_000])),
//! ])?;
//! let source = MemorySource::new("payments", schema).with_batches([rows]);
//! let sink = Arc::new(CollectSink::new());
//! let plan = StreamPlanBuilder::scan("payments", Arc::new(source))?
//!     .watermark("ts", Duration::from_secs(1), None)?
//!     .filter(col("amount").gt(lit(5)))?
//!     .window_aggregate(
//!         WindowSpec::Tumble { size: 10_000, offset: 0 },
//!         "ts",
//!         vec![col("user")],
//!         vec![count(lit(1)).alias("n"), sum(col("amount")).alias("total")],
//!         WindowOptions::default(),
//!     )?
//!     .sink("totals", sink.clone())?;
//! let config = JobConfig::default();
//! let graph = compile(&[plan], &config)?;
//! println!("{}", graph.topology().render());
//! streams_core::runtime::launch(graph, &config.runtime)?.wait().await?;
//! // [0 s, 10 s): user 1 twice, user 2 once; [10 s, 20 s): user 1 once.
//! assert_eq!(sink.rows(), 3);
//! # Ok(())
//! # }
//! ```
//!
//! Not here: SQL (`streams-sql`), state persistence and checkpoint storage (`streams-state`),
//! connectors (`streams-connectors`). See `../shared/DESIGN.md`.

pub mod changelog;
pub mod checkpoint;
pub mod connector;
pub mod dsl;
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
pub mod state;
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
