//! The Rust DSL: pipelines written as method chains that build the same logical plan as SQL
//! (`plan::StreamPlanBuilder` underneath), so they compile to the same operators, state and
//! checkpoints.
//!
//! A [`Pipeline`] holds the job's options and the sinks written so far; a [`Stream`] is one
//! plan under construction. Expressions are DataFusion's (`col("price").gt(lit(100))`), and so
//! are aggregates (`count(lit(1))`, `sum(col("price"))`). Typed steps over `serde` structs
//! (`map`, `filter_rows`, `flat_map`, `from_iter`, `collect`) are in [`typed`].
//!
//! ```
//! use std::time::Duration;
//! use streams_core::datafusion::functions_aggregate::expr_fn::{count, sum};
//! use streams_core::datafusion::prelude::{col, lit};
//! use streams_core::dsl::{Pipeline, Tumble};
//!
//! #[derive(serde::Serialize, serde::Deserialize, Debug, PartialEq)]
//! struct Bid { auction: i64, price: i64, ts: i64 }
//! #[derive(serde::Deserialize, Debug, PartialEq)]
//! struct Total { auction: i64, bids: i64, volume: i64 }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> streams_core::Result<()> {
//! let bids = (0..100).map(|i| Bid { auction: i % 3, price: i, ts: i * 100 });
//! let p = Pipeline::new().parallelism(2);
//! let totals = p
//!     .from_iter("bids", bids)?
//!     .event_time("ts", Duration::from_millis(500))?
//!     .filter(col("price").gt(lit(10)))?
//!     .key_by([col("auction")])
//!     .window(Tumble::of(Duration::from_secs(5)))
//!     .aggregate([count(lit(1)).alias("bids"), sum(col("price")).alias("volume")])?
//!     .select([col("auction"), col("bids"), col("volume")])?
//!     .collect::<Total>()?;
//! p.execute()?.wait().await?;
//! let rows = totals.rows()?;
//! assert_eq!(rows.iter().map(|t| t.bids).sum::<i64>(), 89);
//! # Ok(())
//! # }
//! ```

mod join;
mod sinks;
pub mod typed;
mod window;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use datafusion::arrow::datatypes::SchemaRef;
use datafusion::logical_expr::{Expr, LogicalPlan, LogicalPlanBuilder};

pub use join::JoinBuilder;
pub use sinks::{BatchFn, ForEachSink, PrintSink};
pub use typed::Collected;
pub use window::{Cumulate, Hop, KeyedStream, Session, Tumble, WindowedStream};

use crate::plan::{JobConfig, StreamPlanBuilder};
use crate::runtime::{JobGraph, JobHandle};
use crate::sink::SinkFactory;
use crate::source::SourceFactory;
use crate::{Error, Result};

/// A job under construction: its options and the sinks written so far. Cheap to clone; clones
/// share the sinks.
#[derive(Clone, Debug, Default)]
pub struct Pipeline {
    inner: Arc<Mutex<Inner>>,
}

#[derive(Debug, Default)]
struct Inner {
    config: JobConfig,
    sinks: Vec<LogicalPlan>,
}

impl Pipeline {
    /// An empty pipeline with default options (parallelism 1, watermarks every 200 ms).
    pub fn new() -> Self {
        Pipeline::default()
    }

    fn with_inner<T>(&self, f: impl FnOnce(&mut Inner) -> T) -> T {
        // A panic elsewhere while holding the lock leaves plans that are still whole.
        let mut guard = match self.inner.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        };
        f(&mut guard)
    }

    /// Subtasks per keyed operator (SQL: `SET 'parallelism.default'`).
    pub fn parallelism(self, parallelism: usize) -> Self {
        self.with_inner(|i| i.config.parallelism = parallelism.max(1));
        self
    }

    /// How often sources emit watermarks (SQL: `SET 'pipeline.auto-watermark-interval'`).
    pub fn watermark_interval(self, interval: Duration) -> Self {
        self.with_inner(|i| i.config.watermark_interval = interval);
        self
    }

    /// Checkpoints every `interval` into `storage`, and resumes from the checkpoint `storage`
    /// restored, if any (SQL: `SET 'execution.checkpointing.interval'` and
    /// `'state.checkpoints.dir'`). `streams_state::LocalStorage` is the storage on disk;
    /// `JobHandle::stop` then takes a savepoint.
    pub fn checkpointing(
        self,
        interval: Duration,
        storage: Arc<dyn crate::state::CheckpointStorage>,
    ) -> Self {
        let interval = (!interval.is_zero()).then_some(interval);
        self.with_inner(|i| {
            i.config.runtime.checkpointing =
                Some(crate::runtime::CheckpointConfig::new(interval, storage));
        });
        self
    }

    /// Forgets unbounded state (regular joins, unbounded aggregates) that nothing updated for
    /// `ttl` (SQL: `SET 'table.exec.state.ttl'`).
    pub fn state_ttl(self, ttl: Duration) -> Self {
        self.with_inner(|i| i.config.state_ttl = (!ttl.is_zero()).then_some(ttl));
        self
    }

    /// Keeps at most `keys` keys of each unbounded aggregate subtask (and of each side of a
    /// regular join) in memory; colder ones spill to the checkpoint storage's state store
    /// (SQL: `SET 'state.cache.keys'`). Needs [`Pipeline::checkpointing`].
    pub fn state_cache(self, keys: usize) -> Self {
        self.with_inner(|i| i.config.state_cache = Some(keys.max(1)));
        self
    }

    /// All job options at once.
    pub fn with_config(self, config: JobConfig) -> Self {
        self.with_inner(|i| i.config = config);
        self
    }

    /// The job options.
    pub fn config(&self) -> JobConfig {
        self.with_inner(|i| i.config.clone())
    }

    /// Reads `source` as a stream whose columns are qualified by `name`.
    pub fn source(&self, name: &str, source: Arc<dyn SourceFactory>) -> Result<Stream> {
        Ok(self.stream(StreamPlanBuilder::scan(name, source)?.build()))
    }

    /// Continues from a plan made elsewhere, such as a table or view of a SQL session
    /// (`SqlEngine::table`).
    pub fn stream(&self, plan: LogicalPlan) -> Stream {
        Stream {
            pipeline: self.clone(),
            plan,
        }
    }

    fn add_sink(&self, plan: LogicalPlan) {
        self.with_inner(|i| i.sinks.push(plan));
    }

    /// The plan of every sink written so far.
    pub fn plans(&self) -> Vec<LogicalPlan> {
        self.with_inner(|i| i.sinks.clone())
    }

    /// Compiles every sink's plan into one job.
    pub fn compile(&self) -> Result<JobGraph> {
        let plans = self.plans();
        if plans.is_empty() {
            return Err(Error::plan(
                "the pipeline has no sink: end a stream with sink(), print(), for_each() or \
                 collect()",
            ));
        }
        crate::plan::compile(&plans, &self.config())
    }

    /// What SQL's `EXPLAIN` prints for the same job: the optimized plan and the topology.
    pub fn explain(&self) -> Result<String> {
        crate::plan::explain_job(&self.plans(), &self.config())
    }

    /// Starts the job on the current tokio runtime. The handle waits for it, cancels it, and
    /// reads its metrics.
    pub fn execute(&self) -> Result<JobHandle> {
        let graph = self.compile()?;
        crate::runtime::launch(graph, &self.config().runtime)
    }
}

/// A stream under construction. Each step consumes it and returns the next; clone it to use
/// one stream twice (both uses read the same source).
#[derive(Clone, Debug)]
pub struct Stream {
    pipeline: Pipeline,
    plan: LogicalPlan,
}

impl Stream {
    fn next(&self, plan: LogicalPlan) -> Stream {
        Stream {
            pipeline: self.pipeline.clone(),
            plan,
        }
    }

    fn builder(&self) -> StreamPlanBuilder {
        StreamPlanBuilder::from_plan(self.plan.clone())
    }

    /// The plan so far.
    pub fn plan(&self) -> &LogicalPlan {
        &self.plan
    }

    /// The columns so far.
    pub fn schema(&self) -> SchemaRef {
        Arc::new(self.plan.schema().as_arrow().clone())
    }

    /// The pipeline the stream belongs to.
    pub fn pipeline(&self) -> &Pipeline {
        &self.pipeline
    }

    /// Declares `column` the event time, with watermarks `max_out_of_orderness` behind the
    /// largest time seen (Flink's bounded out-of-orderness). Must follow the source directly.
    pub fn event_time(self, column: &str, max_out_of_orderness: Duration) -> Result<Self> {
        self.event_time_with_idle(column, max_out_of_orderness, None)
    }

    /// As [`Stream::event_time`]; a split quiet for `idle_timeout` stops holding the
    /// watermark back.
    pub fn event_time_with_idle(
        self,
        column: &str,
        max_out_of_orderness: Duration,
        idle_timeout: Option<Duration>,
    ) -> Result<Self> {
        let plan = self
            .builder()
            .watermark(column, max_out_of_orderness, idle_timeout)?
            .build();
        Ok(self.next(plan))
    }

    /// Keeps the rows where `predicate` holds.
    pub fn filter(self, predicate: Expr) -> Result<Self> {
        let plan = self.builder().filter(predicate)?.build();
        Ok(self.next(plan))
    }

    /// These columns (expressions, named with `.alias(...)`) instead of the current ones.
    pub fn select(self, exprs: impl IntoIterator<Item = Expr>) -> Result<Self> {
        let mut exprs: Vec<Expr> = exprs.into_iter().collect();
        if crate::changelog::is_update_stream(self.plan.schema().as_arrow()) {
            // An update stream keeps its change column through projections.
            exprs.push(datafusion::prelude::col(crate::changelog::OP_COLUMN));
        }
        let plan = self.builder().project(exprs)?.build();
        Ok(self.next(plan))
    }

    /// The current columns plus `expr` as `name` (replacing a column of that name).
    pub fn with_column(self, name: &str, expr: Expr) -> Result<Self> {
        let mut exprs: Vec<Expr> = self
            .plan
            .schema()
            .columns()
            .into_iter()
            .filter(|c| c.name != name && c.name != crate::changelog::OP_COLUMN)
            .map(Expr::Column)
            .collect();
        exprs.push(expr.alias(name));
        self.select(exprs)
    }

    /// Names the stream `name`: its columns are `name.column` from here on (to tell the two
    /// sides of a self-join apart).
    pub fn alias(self, name: &str) -> Result<Self> {
        let plan = LogicalPlanBuilder::from(self.plan.clone())
            .alias(name)?
            .build()?;
        Ok(self.next(plan))
    }

    /// This stream's rows and `other`'s (same columns), as `UNION ALL`.
    pub fn union(self, other: Stream) -> Result<Self> {
        let plan = self
            .builder()
            .union(StreamPlanBuilder::from_plan(other.plan))?
            .build();
        Ok(self.next(plan))
    }

    /// One stream per predicate, each with the rows where it holds (a row may go to several).
    pub fn branch(self, predicates: impl IntoIterator<Item = Expr>) -> Result<Vec<Stream>> {
        predicates
            .into_iter()
            .map(|p| self.clone().filter(p))
            .collect()
    }

    /// The rows where `predicate` holds, and the others (where it is false or NULL).
    pub fn split(self, predicate: Expr) -> Result<(Stream, Stream)> {
        let rest = predicate.clone().is_not_true();
        Ok((self.clone().filter(predicate)?, self.filter(rest)?))
    }

    /// Groups by `keys`, for a window or an unbounded aggregate.
    pub fn key_by(self, keys: impl IntoIterator<Item = Expr>) -> KeyedStream {
        KeyedStream::new(self, keys.into_iter().collect())
    }

    /// Windows over the whole stream (no keys).
    pub fn window(self, window: impl Into<crate::window::WindowSpec>) -> WindowedStream {
        KeyedStream::new(self, Vec::new()).window(window)
    }

    /// Aggregates over the whole stream, updated as rows arrive (an update stream).
    pub fn aggregate(self, aggregates: impl IntoIterator<Item = Expr>) -> Result<Stream> {
        KeyedStream::new(self, Vec::new()).aggregate(aggregates)
    }

    /// Joins with `other`; say how with the builder's `on`, then `window`, `within` or
    /// `regular`.
    pub fn join(self, other: Stream) -> JoinBuilder {
        JoinBuilder::new(self, other)
    }

    /// Writes the stream to `sink`, registered under `name`.
    pub fn sink(self, name: &str, sink: Arc<dyn SinkFactory>) -> Result<()> {
        let plan = self.builder().sink(name, sink)?;
        self.pipeline.add_sink(plan);
        Ok(())
    }

    /// Prints the rows to standard output as tables, a batch at a time.
    pub fn print(self) -> Result<()> {
        self.sink("print", Arc::new(PrintSink))
    }
}
