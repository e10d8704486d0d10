//! `left.join(right).on(l, r)` then `.window(...)`, `.within(...)` or `.regular()`.

use std::time::Duration;

use datafusion::logical_expr::Expr;

use super::Stream;
use super::window::event_time;
use crate::ops::join::JoinType;
use crate::plan::{StreamJoinKind, StreamPlanBuilder, WindowOptions};
use crate::window::WindowSpec;
use crate::{Error, Result};

/// A join being described: keys, condition and outer sides, then the kind of join.
#[derive(Clone, Debug)]
pub struct JoinBuilder {
    left: Stream,
    right: Stream,
    on: Vec<(Expr, Expr)>,
    filter: Option<Expr>,
    join_type: JoinType,
}

impl JoinBuilder {
    pub(super) fn new(left: Stream, right: Stream) -> Self {
        JoinBuilder {
            left,
            right,
            on: Vec::new(),
            filter: None,
            join_type: JoinType::Inner,
        }
    }

    /// Rows join when `left` (over the left stream) equals `right` (over the right one).
    pub fn on(mut self, left: Expr, right: Expr) -> Self {
        self.on.push((left, right));
        self
    }

    /// An extra condition over the joined row (both sides' columns).
    pub fn filter(mut self, condition: Expr) -> Self {
        self.filter = Some(match self.filter {
            Some(f) => f.and(condition),
            None => condition,
        });
        self
    }

    /// Keeps left rows without a match, padded with nulls.
    pub fn left_outer(mut self) -> Self {
        self.join_type = JoinType::Left;
        self
    }

    /// Keeps right rows without a match (regular joins only).
    pub fn right_outer(mut self) -> Self {
        self.join_type = JoinType::Right;
        self
    }

    /// Keeps rows of either side without a match (regular joins only).
    pub fn full_outer(mut self) -> Self {
        self.join_type = JoinType::Full;
        self
    }

    fn times(&self) -> Result<(String, String)> {
        let side = |s: &Stream, name: &str| {
            event_time(s.plan()).ok_or_else(|| {
                Error::plan(format!(
                    "the {name} side of a window or interval join needs event time: call \
                     event_time(column, delay) after its source"
                ))
            })
        };
        Ok((side(&self.left, "left")?, side(&self.right, "right")?))
    }

    fn build(self, kind: StreamJoinKind, times: (String, String)) -> Result<Stream> {
        let plan = StreamPlanBuilder::from_plan(self.left.plan.clone())
            .join(
                StreamPlanBuilder::from_plan(self.right.plan.clone()),
                kind,
                self.join_type,
                (&times.0, &times.1),
                self.on,
                self.filter,
                WindowOptions::default(),
            )?
            .build();
        Ok(self.left.next(plan))
    }

    /// Rows of both sides in the same window join when it fires. Each side's rows get their
    /// windows first (`window_start`, `window_end`, `window_time` after its columns), as
    /// Flink's SQL writes a window join over two window functions, and the plan is the one
    /// that SQL gets. Columns: the left side's, then the right side's.
    pub fn window(mut self, window: impl Into<WindowSpec>) -> Result<Stream> {
        let window = window.into();
        if matches!(window, WindowSpec::Session { .. }) {
            return Err(Error::plan(
                "a window join needs TUMBLE, HOP or CUMULATE windows",
            ));
        }
        let (lt, rt) = self.times()?;
        let assign = |s: &Stream, time: &str| -> Result<datafusion::logical_expr::LogicalPlan> {
            Ok(StreamPlanBuilder::from_plan(s.plan.clone())
                .window_assign(window, time)?
                .build())
        };
        let (left, right) = (assign(&self.left, &lt)?, assign(&self.right, &rt)?);
        let column = |plan: &datafusion::logical_expr::LogicalPlan, name: &str| {
            plan.schema()
                .index_of_column_by_name(None, name)
                .map(|i| {
                    Expr::Column(datafusion::common::Column::from(
                        plan.schema().qualified_field(i),
                    ))
                })
                .ok_or_else(|| Error::Internal(format!("no {name} after window assignment")))
        };
        self.on.push((
            column(&left, "window_start")?,
            column(&right, "window_start")?,
        ));
        self.left = self.left.next(left);
        self.right = self.right.next(right);
        self.build(
            StreamJoinKind::Windowed,
            ("window_end".to_string(), "window_end".to_string()),
        )
    }

    /// A left row joins the right rows at most `before` earlier and `after` later than itself
    /// (SQL: `l.ts BETWEEN r.ts - after AND r.ts + before`), as soon as both are there.
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use streams_core::datafusion::prelude::col;
    /// # use streams_core::dsl::Pipeline;
    /// #[derive(serde::Serialize, serde::Deserialize)]
    /// struct Order { id: i64, ts: i64 }
    /// #[derive(serde::Serialize, serde::Deserialize)]
    /// struct Payment { order: i64, paid_at: i64 }
    /// #[derive(serde::Deserialize)]
    /// struct Paid { id: i64, paid_at: i64 }
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> streams_core::Result<()> {
    /// let p = Pipeline::new();
    /// let orders = p.from_iter("orders", (0..10).map(|i| Order { id: i, ts: i * 1_000 }))?
    ///     .event_time("ts", Duration::ZERO)?;
    /// // Order 3 is paid after 2 minutes: too late for a 1-minute deadline.
    /// let payments = p
    ///     .from_iter("payments", (0..10).map(|i| Payment {
    ///         order: i,
    ///         paid_at: i * 1_000 + if i == 3 { 120_000 } else { 30_000 },
    ///     }))?
    ///     .event_time("paid_at", Duration::ZERO)?;
    /// let paid = orders
    ///     .join(payments)
    ///     .on(col("id"), col("order"))
    ///     .within(Duration::ZERO, Duration::from_secs(60))?
    ///     .select([col("id"), col("paid_at")])?
    ///     .collect::<Paid>()?;
    /// p.execute()?.wait().await?;
    /// let mut ids: Vec<i64> = paid.rows()?.iter().map(|r| r.id).collect();
    /// ids.sort();
    /// assert_eq!(ids, [0, 1, 2, 4, 5, 6, 7, 8, 9]);
    /// # Ok(())
    /// # }
    /// ```
    pub fn within(self, before: Duration, after: Duration) -> Result<Stream> {
        let times = self.times()?;
        let ms = |d: Duration| i64::try_from(d.as_millis()).unwrap_or(i64::MAX);
        let kind = StreamJoinKind::Interval {
            lower: -ms(after),
            upper: ms(before),
        };
        self.build(kind, times)
    }

    /// A join without time bounds: every row of both sides is kept, and the output is an
    /// update stream (inserts only for an inner join of plain streams).
    pub fn regular(self) -> Result<Stream> {
        self.build(StreamJoinKind::Regular, (String::new(), String::new()))
    }
}
