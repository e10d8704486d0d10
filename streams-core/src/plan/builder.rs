//! Building a streaming logical plan from Rust (what the DSL and the tests use).

use std::sync::Arc;
use std::time::Duration;

use datafusion::arrow::datatypes::{DataType, Field, TimeUnit};
use datafusion::common::{DFSchema, TableReference};
use datafusion::logical_expr::utils::exprlist_to_fields;
use datafusion::logical_expr::{
    Expr, Extension, LogicalPlan, LogicalPlanBuilder, build_join_schema,
};

use super::nodes::{
    SinkNode, SinkRef, SourceRef, StreamScan, WatermarkNode, WindowAggregateNode, WindowOptions,
};
use super::nodes_more::{
    StreamJoinKind, StreamJoinNode, TopNNode, UpdateAggregateNode, WindowAssignNode,
};
use crate::ops::join::JoinType;
use crate::sink::SinkFactory;
use crate::source::SourceFactory;
use crate::window::WindowSpec;
use crate::{Error, Result};

/// A streaming plan under construction.
#[derive(Clone, Debug)]
pub struct StreamPlanBuilder {
    plan: LogicalPlan,
}

pub(super) fn ext(
    node: impl datafusion::logical_expr::UserDefinedLogicalNode + 'static,
) -> LogicalPlan {
    LogicalPlan::Extension(Extension {
        node: Arc::new(node),
    })
}

impl StreamPlanBuilder {
    /// Reads table `name` from `source`.
    pub fn scan(name: &str, source: Arc<dyn SourceFactory>) -> Result<Self> {
        let schema = DFSchema::try_from_qualified_schema(
            TableReference::bare(name),
            source.schema().as_ref(),
        )?;
        Ok(StreamPlanBuilder {
            plan: ext(StreamScan {
                name: name.to_string(),
                source: SourceRef(source),
                schema: Arc::new(schema),
                projection: None,
            }),
        })
    }

    /// Continues from an existing plan.
    pub fn from_plan(plan: LogicalPlan) -> Self {
        StreamPlanBuilder { plan }
    }

    /// Declares `column` the event time, with watermarks trailing the largest time seen by
    /// `out_of_orderness`; a split quiet for `idle_timeout` stops holding them back.
    pub fn watermark(
        self,
        column: &str,
        out_of_orderness: Duration,
        idle_timeout: Option<Duration>,
    ) -> Result<Self> {
        event_time_column(&self.plan, column, "watermark", "input")?;
        Ok(StreamPlanBuilder {
            plan: ext(WatermarkNode {
                input: self.plan,
                column: column.to_string(),
                out_of_orderness,
                idle_timeout,
            }),
        })
    }

    /// Keeps rows where `predicate` holds.
    pub fn filter(self, predicate: Expr) -> Result<Self> {
        Ok(StreamPlanBuilder {
            plan: LogicalPlanBuilder::from(self.plan)
                .filter(predicate)?
                .build()?,
        })
    }

    /// Computes these columns.
    pub fn project(self, exprs: Vec<Expr>) -> Result<Self> {
        Ok(StreamPlanBuilder {
            plan: LogicalPlanBuilder::from(self.plan)
                .project(exprs)?
                .build()?,
        })
    }

    /// Runs a stateless operator after this stream, whose output has `schema`.
    pub fn operator(
        self,
        kind: &str,
        detail: &str,
        factory: Arc<dyn crate::operator::OperatorFactory>,
        schema: DFSchema,
    ) -> Self {
        StreamPlanBuilder {
            plan: ext(super::custom::OperatorNode {
                input: self.plan,
                kind: kind.to_string(),
                detail: detail.to_string(),
                factory: super::custom::OperatorRef(factory),
                schema: Arc::new(schema),
            }),
        }
    }

    /// `UNION ALL` with another stream of the same columns.
    pub fn union(self, other: StreamPlanBuilder) -> Result<Self> {
        Ok(StreamPlanBuilder {
            plan: LogicalPlanBuilder::from(self.plan)
                .union(other.plan)?
                .build()?,
        })
    }

    /// Aggregates per window and key. Output: `window_start`, `window_end`, `window_time`, the
    /// keys, the aggregates.
    pub fn window_aggregate(
        self,
        window: WindowSpec,
        time_column: &str,
        group_expr: Vec<Expr>,
        aggr_expr: Vec<Expr>,
        options: WindowOptions,
    ) -> Result<Self> {
        window.validate().map_err(|e| Error::plan(e.to_string()))?;
        if options.early_fire.is_some() && matches!(window, WindowSpec::Session { .. }) {
            return Err(Error::plan(
                "early firing is not available for SESSION windows (their bounds move until \
                 they close)",
            ));
        }
        let tz = event_time_column(&self.plan, time_column, "window time", "input")?;
        let group_expr = unqualified(group_expr, &self.plan);
        let aggr_expr = unqualified(aggr_expr, &self.plan);
        let ts = DataType::Timestamp(TimeUnit::Millisecond, tz);
        let mut fields: Vec<(Option<TableReference>, Arc<Field>)> =
            ["window_start", "window_end", "window_time"]
                .iter()
                .map(|n| (None, Arc::new(Field::new(*n, ts.clone(), false))))
                .collect();
        fields.extend(exprlist_to_fields(&group_expr, &self.plan)?);
        fields.extend(exprlist_to_fields(&aggr_expr, &self.plan)?);
        let schema = DFSchema::new_with_metadata(fields, Default::default())?;
        Ok(StreamPlanBuilder {
            plan: ext(WindowAggregateNode {
                input: self.plan,
                window,
                time_column: time_column.to_string(),
                group_expr,
                aggr_expr,
                options,
                schema: Arc::new(schema),
            }),
        })
    }

    /// Joins with `right` on equal keys within the same windows (a window join), or within a
    /// time interval of each other (an interval join: `left_time BETWEEN right_time + lower
    /// AND right_time + upper`). Output: `window_start`, `window_end` (window joins only), then
    /// the left columns, then the right columns.
    #[allow(clippy::too_many_arguments)]
    pub fn join(
        self,
        right: StreamPlanBuilder,
        kind: StreamJoinKind,
        join_type: JoinType,
        (left_time, right_time): (&str, &str),
        on: Vec<(Expr, Expr)>,
        filter: Option<Expr>,
        options: WindowOptions,
    ) -> Result<Self> {
        match kind {
            StreamJoinKind::Window(w) => {
                w.validate().map_err(|e| Error::plan(e.to_string()))?;
                if matches!(w, WindowSpec::Session { .. }) {
                    return Err(Error::plan(
                        "a window join needs TUMBLE, HOP or CUMULATE windows",
                    ));
                }
            }
            StreamJoinKind::Windowed => {}
            StreamJoinKind::Regular => return self.regular_join(right, join_type, on, filter),
            StreamJoinKind::Interval { lower, upper } if lower > upper => {
                return Err(Error::plan(format!(
                    "interval join bounds are empty: lower {lower} ms > upper {upper} ms"
                )));
            }
            StreamJoinKind::Interval { .. } => {}
        }
        if matches!(join_type, JoinType::Right | JoinType::Full) {
            return Err(Error::plan(format!(
                "{join_type:?} outer window and interval joins are not supported; use INNER or \
                 LEFT (or swap the sides)"
            )));
        }
        let tz = event_time_column(&self.plan, left_time, "left time", "left input")?;
        event_time_column(&right.plan, right_time, "right time", "right input")?;
        let df_join = join_type.to_datafusion();
        let joined = build_join_schema(self.plan.schema(), right.plan.schema(), &df_join)?;
        let schema = match kind {
            StreamJoinKind::Window(_) => {
                let ts = DataType::Timestamp(TimeUnit::Millisecond, tz);
                let mut fields: Vec<(Option<TableReference>, Arc<Field>)> =
                    ["window_start", "window_end"]
                        .iter()
                        .map(|n| (None, Arc::new(Field::new(*n, ts.clone(), false))))
                        .collect();
                fields.extend(joined.iter().map(|(q, f)| (q.cloned(), Arc::clone(f))));
                DFSchema::new_with_metadata(fields, Default::default())?
            }
            StreamJoinKind::Interval { .. }
            | StreamJoinKind::Windowed
            | StreamJoinKind::Regular => joined,
        };
        Ok(StreamPlanBuilder {
            plan: ext(StreamJoinNode {
                left: self.plan,
                right: right.plan,
                kind,
                join_type,
                on,
                filter,
                left_time: left_time.to_string(),
                right_time: right_time.to_string(),
                options,
                schema: Arc::new(schema),
            }),
        })
    }

    /// A regular join (no time bound): inputs may be update streams; the output is the joined
    /// columns, plus the change kind unless it is an inner join of plain streams.
    fn regular_join(
        self,
        right: StreamPlanBuilder,
        join_type: JoinType,
        on: Vec<(Expr, Expr)>,
        filter: Option<Expr>,
    ) -> Result<Self> {
        let data = |plan: &LogicalPlan| -> Result<DFSchema> {
            let fields = plan
                .schema()
                .iter()
                .filter(|(_, f)| f.name() != crate::changelog::OP_COLUMN)
                .map(|(q, f)| (q.cloned(), Arc::clone(f)))
                .collect();
            Ok(DFSchema::new_with_metadata(fields, Default::default())?)
        };
        let updates = [&self.plan, &right.plan]
            .iter()
            .any(|p| crate::changelog::is_update_stream(p.schema().as_arrow()));
        let joined = build_join_schema(
            &data(&self.plan)?,
            &data(&right.plan)?,
            &join_type.to_datafusion(),
        )?;
        let schema = if updates || join_type != JoinType::Inner {
            let mut fields: Vec<(Option<TableReference>, Arc<Field>)> = joined
                .iter()
                .map(|(q, f)| (q.cloned(), Arc::clone(f)))
                .collect();
            fields.push((
                None,
                Arc::new(Field::new(
                    crate::changelog::OP_COLUMN,
                    DataType::Int8,
                    false,
                )),
            ));
            DFSchema::new_with_metadata(fields, Default::default())?
        } else {
            joined
        };
        Ok(StreamPlanBuilder {
            plan: ext(StreamJoinNode {
                left: self.plan,
                right: right.plan,
                kind: StreamJoinKind::Regular,
                join_type,
                on,
                filter,
                left_time: String::new(),
                right_time: String::new(),
                options: WindowOptions::default(),
                schema: Arc::new(schema),
            }),
        })
    }

    /// The rows of a window table function: each row with `window_start`, `window_end` and
    /// `window_time` appended (once per window it is in).
    pub fn window_assign(self, window: WindowSpec, time_column: &str) -> Result<Self> {
        window.validate().map_err(|e| Error::plan(e.to_string()))?;
        let tz = event_time_column(&self.plan, time_column, "window time", "input")?;
        let ts = DataType::Timestamp(TimeUnit::Millisecond, tz);
        let mut fields: Vec<(Option<TableReference>, Arc<Field>)> = self
            .plan
            .schema()
            .iter()
            .map(|(q, f)| (q.cloned(), Arc::clone(f)))
            .collect();
        let qualifier = fields.first().and_then(|(q, _)| q.clone());
        for n in ["window_start", "window_end", "window_time"] {
            fields.push((
                qualifier.clone(),
                Arc::new(Field::new(n, ts.clone(), false)),
            ));
        }
        let schema = DFSchema::new_with_metadata(fields, Default::default())?;
        Ok(StreamPlanBuilder {
            plan: ext(WindowAssignNode {
                input: self.plan,
                window,
                time_column: time_column.to_string(),
                schema: Arc::new(schema),
            }),
        })
    }

    /// `GROUP BY` without a window: a running result per key, as an update stream whose last
    /// column is [`crate::changelog::OP_COLUMN`].
    pub fn aggregate(self, group_expr: Vec<Expr>, aggr_expr: Vec<Expr>) -> Result<Self> {
        let group_expr = unqualified(group_expr, &self.plan);
        let aggr_expr = unqualified(aggr_expr, &self.plan);
        if crate::changelog::is_update_stream(self.plan.schema().as_arrow()) {
            return self.retracting_aggregate(group_expr, aggr_expr);
        }
        let mut fields = exprlist_to_fields(&group_expr, &self.plan)?;
        fields.extend(exprlist_to_fields(&aggr_expr, &self.plan)?);
        fields.push(change_column());
        let schema = DFSchema::new_with_metadata(fields, Default::default())?;
        Ok(StreamPlanBuilder {
            plan: ext(UpdateAggregateNode {
                input: self.plan,
                group_expr,
                aggr_expr,
                retracting: false,
                schema: Arc::new(schema),
            }),
        })
    }

    /// An unbounded aggregate over an update stream (see `plan::retract`): the aggregate of
    /// signed rows, then the original aggregates' results computed from it.
    fn retracting_aggregate(self, group_expr: Vec<Expr>, aggr_expr: Vec<Expr>) -> Result<Self> {
        let names = exprlist_to_fields(&aggr_expr, &self.plan)?;
        let r = super::retract::rewrite(&aggr_expr)?;
        // The input's columns, with the sign of each row before the change column.
        let mut cols: Vec<Expr> = self
            .plan
            .schema()
            .columns()
            .into_iter()
            .filter(|c| c.name != crate::changelog::OP_COLUMN)
            .map(Expr::Column)
            .collect();
        cols.push(super::retract::sign_expr());
        cols.push(Expr::Column(datafusion::common::Column::new_unqualified(
            crate::changelog::OP_COLUMN,
        )));
        let signed = self.project(cols)?;
        let mut fields = exprlist_to_fields(&group_expr, &signed.plan)?;
        fields.extend(exprlist_to_fields(&r.inner, &signed.plan)?);
        fields.push(change_column());
        let schema = Arc::new(DFSchema::new_with_metadata(fields, Default::default())?);
        let keys = group_expr.len();
        let mut out: Vec<Expr> = (0..keys)
            .map(|i| Expr::Column(datafusion::common::Column::from(schema.qualified_field(i))))
            .collect();
        for (e, (q, f)) in r.finals(&schema, keys).into_iter().zip(names) {
            out.push(e.alias_qualified(q, f.name()));
        }
        out.push(Expr::Column(datafusion::common::Column::new_unqualified(
            crate::changelog::OP_COLUMN,
        )));
        let node = ext(UpdateAggregateNode {
            input: signed.plan,
            group_expr,
            aggr_expr: r.inner,
            retracting: true,
            schema,
        });
        StreamPlanBuilder { plan: node }.project(out)
    }

    /// Top-N per key: `ROW_NUMBER() OVER (PARTITION BY partition_by ORDER BY order_by) <=
    /// limit`; `rank` names the rank column. An update stream.
    pub fn top_n(
        self,
        partition_by: Vec<Expr>,
        order_by: Vec<datafusion::logical_expr::SortExpr>,
        limit: usize,
        rank: &str,
    ) -> Result<Self> {
        if limit == 0 {
            return Err(Error::plan("a Top-N needs N >= 1"));
        }
        let mut fields: Vec<(Option<TableReference>, Arc<Field>)> = self
            .plan
            .schema()
            .iter()
            .map(|(q, f)| (q.cloned(), Arc::clone(f)))
            .collect();
        fields.push((None, Arc::new(Field::new(rank, DataType::Int64, false))));
        fields.push(change_column());
        let schema = DFSchema::new_with_metadata(fields, Default::default())?;
        Ok(StreamPlanBuilder {
            plan: ext(TopNNode {
                input: self.plan,
                partition_by,
                order_by,
                limit,
                schema: Arc::new(schema),
            }),
        })
    }

    /// Writes the stream to `sink` (named `name` in plans); the result is a complete job plan.
    pub fn sink(self, name: &str, sink: Arc<dyn SinkFactory>) -> Result<LogicalPlan> {
        Ok(ext(SinkNode {
            input: self.plan,
            name: name.to_string(),
            sink: SinkRef(sink),
        }))
    }

    /// The plan so far.
    pub fn plan(&self) -> &LogicalPlan {
        &self.plan
    }

    /// The plan so far.
    pub fn build(self) -> LogicalPlan {
        self.plan
    }
}

/// The last column of an update stream.
fn change_column() -> (Option<TableReference>, Arc<Field>) {
    (
        None,
        Arc::new(Field::new(
            crate::changelog::OP_COLUMN,
            DataType::Int8,
            false,
        )),
    )
}

/// The time zone of `column`, an event-time column of `plan`, or an error naming `what` (e.g.
/// "window time") and `place` (e.g. "input") when it is missing or not a time.
/// `exprs` with unqualified columns when `plan`'s column names are unique, so an aggregate's
/// output columns are named the same (`sum(price)`) whether SQL (`sum(t.price)`) or the DSL
/// built it.
fn unqualified(exprs: Vec<Expr>, plan: &LogicalPlan) -> Vec<Expr> {
    let fields = plan.schema().fields();
    let unique = fields
        .iter()
        .map(|f| f.name())
        .collect::<std::collections::HashSet<_>>()
        .len()
        == fields.len();
    if !unique {
        return exprs;
    }
    exprs
        .into_iter()
        .map(datafusion::logical_expr::expr_rewriter::unnormalize_col)
        .collect()
}

fn event_time_column(
    plan: &LogicalPlan,
    column: &str,
    what: &str,
    place: &str,
) -> Result<Option<Arc<str>>> {
    let field = plan
        .schema()
        .field_with_unqualified_name(column)
        .map_err(|_| {
            Error::plan(format!(
                "{what} column `{column}` is not a column of the {place}"
            ))
        })?;
    time_type(column, field.data_type())
}

/// The time zone of an event-time column, or why it cannot be one.
fn time_type(column: &str, dt: &DataType) -> Result<Option<Arc<str>>> {
    match dt {
        DataType::Timestamp(_, tz) => Ok(tz.clone()),
        DataType::Int64 | DataType::Date32 | DataType::Date64 => Ok(None),
        other => Err(Error::plan(format!(
            "event-time column `{column}` is {other}; it must be a timestamp or BIGINT milliseconds"
        ))),
    }
}
