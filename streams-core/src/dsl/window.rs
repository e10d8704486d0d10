//! Keys and windows: `key_by(...)`, `window(Tumble::of(...))`, `aggregate([...])`.

use std::sync::Arc;
use std::time::Duration;

use datafusion::logical_expr::{Expr, LogicalPlan};

use super::Stream;
use crate::plan::{SinkRef, WindowAggregateNode, WindowOptions};
use crate::sink::SinkFactory;
use crate::window::WindowSpec;
use crate::{Error, Result};

fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// Fixed, non-overlapping windows (SQL: `TUMBLE`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Tumble {
    size: Duration,
    offset: Duration,
}

impl Tumble {
    /// Windows of `size`, aligned to the epoch.
    pub fn of(size: Duration) -> Self {
        Tumble {
            size,
            offset: Duration::ZERO,
        }
    }

    /// Shifts the windows by `offset` from the epoch (e.g. to start days at 08:00).
    pub fn offset(self, offset: Duration) -> Self {
        Tumble { offset, ..self }
    }
}

impl From<Tumble> for WindowSpec {
    fn from(t: Tumble) -> Self {
        WindowSpec::Tumble {
            size: ms(t.size),
            offset: ms(t.offset),
        }
    }
}

/// Windows of one size starting every `slide` (SQL: `HOP`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Hop {
    size: Duration,
    slide: Duration,
}

impl Hop {
    /// Windows of `size`, a new one every `slide`.
    pub fn of(size: Duration, slide: Duration) -> Self {
        Hop { size, slide }
    }
}

impl From<Hop> for WindowSpec {
    fn from(h: Hop) -> Self {
        WindowSpec::Hop {
            size: ms(h.size),
            slide: ms(h.slide),
        }
    }
}

/// Windows growing by `step` up to `max`, then starting over (SQL: `CUMULATE`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cumulate {
    step: Duration,
    max: Duration,
}

impl Cumulate {
    /// Windows `[p, p + step)`, `[p, p + 2 step)`, ... `[p, p + max)` for each period `p`.
    pub fn of(step: Duration, max: Duration) -> Self {
        Cumulate { step, max }
    }
}

impl From<Cumulate> for WindowSpec {
    fn from(c: Cumulate) -> Self {
        WindowSpec::Cumulate {
            step: ms(c.step),
            max: ms(c.max),
        }
    }
}

/// Per-key activity sessions closed by a gap without rows (SQL: `SESSION`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Session {
    gap: Duration,
}

impl Session {
    /// Sessions that end after `gap` without a row of their key.
    pub fn with_gap(gap: Duration) -> Self {
        Session { gap }
    }
}

impl From<Session> for WindowSpec {
    fn from(s: Session) -> Self {
        WindowSpec::Session { gap: ms(s.gap) }
    }
}

/// A stream grouped by keys.
#[derive(Clone, Debug)]
pub struct KeyedStream {
    stream: Stream,
    keys: Vec<Expr>,
}

impl KeyedStream {
    pub(super) fn new(stream: Stream, keys: Vec<Expr>) -> Self {
        KeyedStream { stream, keys }
    }

    /// Windows per key, by the stream's event time (see [`WindowedStream::on`]).
    pub fn window(self, window: impl Into<WindowSpec>) -> WindowedStream {
        WindowedStream {
            stream: self.stream,
            keys: self.keys,
            window: window.into(),
            time: None,
            options: WindowOptions::default(),
        }
    }

    /// Aggregates per key, updated as rows arrive: an update stream (as SQL's `GROUP BY`
    /// without a window), whose columns are the keys then the aggregates.
    ///
    /// ```
    /// # use streams_core::datafusion::functions_aggregate::expr_fn::max;
    /// # use streams_core::datafusion::prelude::col;
    /// # use streams_core::dsl::Pipeline;
    /// #[derive(serde::Serialize, serde::Deserialize)]
    /// struct Bid { auction: i64, price: i64 }
    /// #[derive(serde::Deserialize)]
    /// struct Top { auction: i64, top: i64 }
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> streams_core::Result<()> {
    /// let p = Pipeline::new();
    /// let tops = p
    ///     .from_iter("bids", (0..100).map(|i| Bid { auction: i % 4, price: i }))?
    ///     .key_by([col("auction")])
    ///     .aggregate([max(col("price")).alias("top")])?
    ///     .collect::<Top>()?; // the update stream, applied
    /// p.execute()?.wait().await?;
    /// let mut tops: Vec<(i64, i64)> = tops.rows()?.iter().map(|t| (t.auction, t.top)).collect();
    /// tops.sort();
    /// assert_eq!(tops, [(0, 96), (1, 97), (2, 98), (3, 99)]);
    /// # Ok(())
    /// # }
    /// ```
    pub fn aggregate(self, aggregates: impl IntoIterator<Item = Expr>) -> Result<Stream> {
        let (aggregates, names) = unaliased(aggregates);
        let plan = self
            .stream
            .builder()
            .aggregate(self.keys.clone(), aggregates)?
            .build();
        named(self.stream.next(plan), self.keys.len(), &names)
    }

    /// The `n` best rows per key by `order` (first is best), with their rank in column
    /// `rank`: an update stream, as SQL's `ROW_NUMBER() ... <= n`.
    pub fn top_n(
        self,
        order: Vec<datafusion::logical_expr::SortExpr>,
        n: usize,
        rank: &str,
    ) -> Result<Stream> {
        let plan = self
            .stream
            .builder()
            .top_n(self.keys.clone(), order, n, rank)?
            .build();
        Ok(self.stream.next(plan))
    }
}

/// A keyed stream with windows, waiting for its aggregates.
#[derive(Clone, Debug)]
pub struct WindowedStream {
    stream: Stream,
    keys: Vec<Expr>,
    window: WindowSpec,
    time: Option<String>,
    options: WindowOptions,
}

impl WindowedStream {
    /// Windows by `column` instead of the stream's declared event time.
    pub fn on(self, column: &str) -> Self {
        WindowedStream {
            time: Some(column.to_string()),
            ..self
        }
    }

    /// Keeps windows open `lateness` after their end for late rows (each late row updates
    /// the window's result).
    pub fn allowed_lateness(mut self, lateness: Duration) -> Self {
        self.options.allowed_lateness = lateness;
        self
    }

    /// Also emits the current results of open windows this often (not for sessions).
    pub fn early_fire(mut self, every: Duration) -> Self {
        self.options.early_fire = Some(every);
        self
    }

    /// Sends rows too late for every window to `sink` instead of only counting them.
    pub fn late_data(mut self, sink: Arc<dyn SinkFactory>) -> Self {
        self.options.late_sink = Some(SinkRef(sink));
        self
    }

    /// Aggregates per window and key. Columns: `window_start`, `window_end`, `window_time`,
    /// the keys, the aggregates.
    pub fn aggregate(self, aggregates: impl IntoIterator<Item = Expr>) -> Result<Stream> {
        let time = match self.time {
            Some(t) => t,
            None => event_time(&self.stream.plan).ok_or_else(|| {
                Error::plan(
                    "a window needs event time: call event_time(column, delay) after the \
                     source, or name the column with window(...).on(column)",
                )
            })?,
        };
        let (aggregates, names) = unaliased(aggregates);
        let keys = self.keys.len();
        let plan = self
            .stream
            .builder()
            .window_aggregate(self.window, &time, self.keys, aggregates, self.options)?
            .build();
        named(self.stream.next(plan), 3 + keys, &names)
    }
}

/// `count()`, `sum(c)`, `min(c)`, `max(c)`, `avg(c)`: one aggregate, named after itself, as
/// RocketMQ Streams' grouped and window streams offer them.
macro_rules! shortcuts {
    ($t:ty) => {
        impl $t {
            /// Rows per group, as column `count`.
            pub fn count(self) -> Result<Stream> {
                self.aggregate([datafusion::functions_aggregate::count::count_all().alias("count")])
            }
            /// Sum of `column`, as column `sum`.
            pub fn sum(self, column: &str) -> Result<Stream> {
                use datafusion::functions_aggregate::expr_fn::sum;
                self.aggregate([sum(datafusion::prelude::col(column)).alias("sum")])
            }
            /// Smallest `column`, as column `min`.
            pub fn min(self, column: &str) -> Result<Stream> {
                use datafusion::functions_aggregate::expr_fn::min;
                self.aggregate([min(datafusion::prelude::col(column)).alias("min")])
            }
            /// Largest `column`, as column `max`.
            pub fn max(self, column: &str) -> Result<Stream> {
                use datafusion::functions_aggregate::expr_fn::max;
                self.aggregate([max(datafusion::prelude::col(column)).alias("max")])
            }
            /// Mean of `column`, as column `avg`.
            pub fn avg(self, column: &str) -> Result<Stream> {
                use datafusion::functions_aggregate::expr_fn::avg;
                self.aggregate([avg(datafusion::prelude::col(column)).alias("avg")])
            }
        }
    };
}
shortcuts!(KeyedStream);
shortcuts!(WindowedStream);

/// Aggregates without their aliases, and the aliases. The plan node holds them unnamed and a
/// projection names them, as SQL plans `SELECT agg AS name`, so both give the same operators.
fn unaliased(aggregates: impl IntoIterator<Item = Expr>) -> (Vec<Expr>, Vec<Option<String>>) {
    aggregates
        .into_iter()
        .map(|e| match e {
            Expr::Alias(a) => (a.expr.unalias_nested().data, Some(a.name)),
            other => (other, None),
        })
        .unzip()
}

/// `stream` with its columns from `offset` on renamed to `names` (where given).
fn named(stream: Stream, offset: usize, names: &[Option<String>]) -> Result<Stream> {
    if names.iter().all(Option::is_none) {
        return Ok(stream);
    }
    let schema = stream.plan.schema().clone();
    let exprs: Vec<Expr> = (0..schema.fields().len())
        .filter(|i| schema.field(*i).name() != crate::changelog::OP_COLUMN)
        .map(|i| {
            let c = Expr::Column(datafusion::common::Column::from(schema.qualified_field(i)));
            match i.checked_sub(offset).and_then(|a| names.get(a)) {
                Some(Some(name)) => c.alias(name),
                _ => c,
            }
        })
        .collect();
    stream.select(exprs)
}

/// The event-time column of a plan, followed through filters, projections that keep it, and
/// window aggregates (whose `window_time` is the rows' time).
pub(super) fn event_time(plan: &LogicalPlan) -> Option<String> {
    use datafusion::logical_expr::LogicalPlan as P;
    match plan {
        P::Extension(e) => {
            let any = e.node.as_any();
            if let Some(w) = any.downcast_ref::<crate::plan::WatermarkNode>() {
                return Some(w.column.clone());
            }
            if any.downcast_ref::<WindowAggregateNode>().is_some() {
                return Some("window_time".to_string());
            }
            let inputs = e.node.inputs();
            let t = match inputs.as_slice() {
                [one] => event_time(one)?,
                _ => return None,
            };
            e.node
                .schema()
                .has_column_with_unqualified_name(&t)
                .then_some(t)
        }
        P::Filter(f) => event_time(&f.input),
        P::SubqueryAlias(a) => event_time(&a.input),
        P::Projection(p) => {
            let t = event_time(&p.input)?;
            p.schema.has_column_with_unqualified_name(&t).then_some(t)
        }
        P::Union(u) => u.inputs.first().and_then(|i| event_time(i)),
        _ => None,
    }
}
