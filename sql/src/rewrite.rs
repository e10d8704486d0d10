//! From DataFusion's plan of a query to a streaming plan: scans of stream tables become the
//! table's source (with its computed columns and watermark), and an aggregate grouped by
//! `window_start, window_end` over a window table function becomes a window aggregate.

use std::sync::Arc;
use std::time::Duration;

use streams_core::arrow::datatypes::DataType;
use streams_core::changelog::{OP_COLUMN, is_update_stream};
use streams_core::connector::ConnectorRegistry;
use streams_core::datafusion::common::tree_node::{Transformed, TreeNode};
use streams_core::datafusion::common::{Column, DFSchema, ScalarValue, TableReference};
use streams_core::datafusion::logical_expr::{Aggregate, Expr, LogicalPlan, LogicalPlanBuilder};
use streams_core::datafusion::sql::planner::{PlannerContext, SqlToRel};
use streams_core::plan::{StreamPlanBuilder, WindowOptions};

use crate::catalog::{Catalog, Provider, StreamTableSource, TableDef};
use crate::windows::WindowTvf;
use crate::{Error, Result};

const WINDOW_COLUMNS: [&str; 3] = ["window_start", "window_end", "window_time"];

/// The row time a cascaded window aggregate windows its input by.
const CASCADE_TIME: &str = "__window_rowtime";

/// Projections above an update stream keep its change column, so the changes reach the sink.
fn carry_changes(plan: LogicalPlan) -> Result<LogicalPlan> {
    let out = plan
        .transform_up(|node| {
            let LogicalPlan::Projection(p) = &node else {
                // Aliases, filters and unions take their columns from their input, which
                // may have just gained the change column.
                return match node {
                    LogicalPlan::SubqueryAlias(_)
                    | LogicalPlan::Filter(_)
                    | LogicalPlan::Union(_)
                    | LogicalPlan::Limit(_)
                    | LogicalPlan::Sort(_) => Ok(Transformed::yes(node.recompute_schema()?)),
                    other => Ok(Transformed::no(other)),
                };
            };
            let input_changes = is_update_stream(p.input.schema().as_arrow());
            let kept = p
                .expr
                .iter()
                .any(|e| matches!(e, Expr::Column(c) if c.name == OP_COLUMN));
            if !input_changes || kept || is_update_stream(p.schema.as_arrow()) {
                return Ok(Transformed::no(node));
            }
            let mut exprs = p.expr.clone();
            exprs.push(Expr::Column(Column::new_unqualified(OP_COLUMN)));
            let plan = LogicalPlanBuilder::from(p.input.as_ref().clone())
                .project(exprs)?
                .build()?;
            Ok(Transformed::yes(plan))
        })
        .map_err(df)?;
    Ok(out.data)
}

/// Everything the rewrite needs.
pub(crate) struct Rewriter<'a> {
    pub(crate) catalog: &'a Catalog,
    pub(crate) registry: &'a ConnectorRegistry,
    pub(crate) windows: &'a [WindowTvf],
    pub(crate) idle_timeout: Option<Duration>,
    pub(crate) provider: &'a Provider<'a>,
    /// The sources made so far for the statement being planned, by table: a table read
    /// twice in one statement (or statement set) gets one source, which the job reads once.
    pub(crate) sources: &'a std::sync::Mutex<
        std::collections::HashMap<String, Arc<dyn streams_core::SourceFactory>>,
    >,
}

/// Column `e` of `schema` under `qualifier.name`, aliased only if that is another name.
fn renamed(e: Expr, schema: &DFSchema, qualifier: Option<&TableReference>, name: &str) -> Expr {
    if let Expr::Column(c) = &e
        && c.name == name
        && c.relation.as_ref() == qualifier
        && schema.has_column(c)
    {
        return e;
    }
    e.alias_qualified(qualifier.cloned(), name)
}

fn plan_err(m: impl Into<String>) -> Error {
    Error::Plan(m.into())
}

fn df(e: streams_core::datafusion::error::DataFusionError) -> Error {
    Error::Plan(e.strip_backtrace())
}

impl Rewriter<'_> {
    /// Rewrites a planned query.
    pub(crate) fn streaming(&self, plan: LogicalPlan) -> Result<LogicalPlan> {
        let mut failure = None;
        let out = plan
            .transform_down(|node| {
                let result = match &node {
                    LogicalPlan::Aggregate(agg) => match self.window_aggregate(agg) {
                        Ok(None) => self.update_aggregate(agg),
                        other => other,
                    },
                    LogicalPlan::Join(join) => self.join(join),
                    LogicalPlan::Filter(f) => match self.top_n(f) {
                        Ok(None) => self.filtered_cross_join(f),
                        other => other,
                    },
                    LogicalPlan::TableScan(scan) => self.scan(scan),
                    _ => Ok(None),
                };
                match result {
                    Ok(Some(new)) => Ok(Transformed::new(
                        new,
                        true,
                        streams_core::datafusion::common::tree_node::TreeNodeRecursion::Jump,
                    )),
                    Ok(None) => Ok(Transformed::no(node)),
                    Err(e) => {
                        failure = Some(e);
                        Ok(Transformed::new(
                            node,
                            false,
                            streams_core::datafusion::common::tree_node::TreeNodeRecursion::Stop,
                        ))
                    }
                }
            })
            .map_err(df)?;
        match failure {
            Some(e) => Err(e),
            None => carry_changes(out.data),
        }
    }

    /// `GROUP BY` without a window: an update stream.
    fn update_aggregate(&self, agg: &Aggregate) -> Result<Option<LogicalPlan>> {
        if agg
            .group_expr
            .iter()
            .any(|e| matches!(e, Expr::GroupingSet(_)))
        {
            return Err(plan_err(
                "GROUPING SETS, CUBE and ROLLUP are not supported on streams",
            ));
        }
        let input = self.streaming(agg.input.as_ref().clone())?;
        let node = StreamPlanBuilder::from_plan(input)
            .aggregate(agg.group_expr.clone(), agg.aggr_expr.clone())?;
        let out = node.plan().schema().clone();
        let mut exprs: Vec<Expr> = (0..agg.schema.fields().len())
            .map(|i| {
                let (q, f) = agg.schema.qualified_field(i);
                Expr::Column(Column::from(out.qualified_field(i)))
                    .alias_qualified(q.cloned(), f.name())
            })
            .collect();
        exprs.push(Expr::Column(Column::new_unqualified(OP_COLUMN)));
        Ok(Some(node.project(exprs)?.build()))
    }

    fn scan(
        &self,
        scan: &streams_core::datafusion::logical_expr::TableScan,
    ) -> Result<Option<LogicalPlan>> {
        let Some(source) = scan.source.downcast_ref::<StreamTableSource>() else {
            return Ok(None);
        };
        if let Some(w) = self.windows.iter().find(|w| w.name == source.name) {
            // The window function's rows themselves: its input with window columns.
            let base = self.relation_plan(&w.input, &scan.table_name.to_string())?;
            if is_update_stream(base.schema().as_arrow()) {
                return Err(plan_err(format!(
                    "a window function over an update stream (`{}` is the result of an \
                     unbounded GROUP BY) is not supported",
                    w.input
                )));
            }
            return Ok(Some(
                StreamPlanBuilder::from_plan(base)
                    .window_assign(w.spec, &w.time_column)?
                    .build(),
            ));
        }
        let table = self
            .catalog
            .table(&source.name)
            .ok_or_else(|| plan_err(format!("table `{}` does not exist", source.name)))?;
        Ok(Some(self.table_plan(table, &scan.table_name.to_string())?))
    }

    /// A table's stream: its source, computed columns, watermark, under `qualifier`.
    fn table_plan(&self, table: &TableDef, qualifier: &str) -> Result<LogicalPlan> {
        let connector = self
            .registry
            .resolve(&table.name, &table.connector, &table.options)?;
        let mut sources = self.sources.lock().unwrap_or_else(|p| p.into_inner());
        let source = match sources.get(&table.name) {
            Some(s) => Arc::clone(s),
            None => {
                let s =
                    connector.source(&table.name, Arc::clone(&table.physical), &table.options)?;
                sources.insert(table.name.clone(), Arc::clone(&s));
                s
            }
        };
        drop(sources);
        let mut b = StreamPlanBuilder::scan(qualifier, source)?;
        // Computed columns first, so the watermark can be declared on one of them.
        if !table.computed.is_empty() {
            let planner = SqlToRel::new(self.provider);
            let schema: &DFSchema = b.plan().schema();
            let mut exprs: Vec<Expr> = schema.columns().into_iter().map(Expr::Column).collect();
            for (name, e) in &table.computed {
                let expr = planner
                    .sql_to_expr(e.clone(), schema, &mut PlannerContext::new())
                    .map_err(df)?;
                exprs.push(expr.alias_qualified(Some(qualifier), name));
            }
            b = b.project(exprs)?;
        }
        if let Some((column, delay)) = &table.watermark {
            b = b.watermark(column, *delay, self.idle_timeout)?;
        }
        Ok(b.build())
    }

    /// The stream of a table or view named `name`, under `qualifier`.
    fn relation_plan(&self, name: &str, qualifier: &str) -> Result<LogicalPlan> {
        if let Some(table) = self.catalog.table(name) {
            return self.table_plan(table, qualifier);
        }
        match self.catalog.views.get(name) {
            Some(view) => Ok(LogicalPlanBuilder::from(view.clone())
                .alias(qualifier)
                .map_err(df)?
                .build()
                .map_err(df)?),
            None => Err(plan_err(format!("`{name}` does not exist"))),
        }
    }

    /// `Aggregate(group by window_start, window_end, keys)` over a window table function.
    fn window_aggregate(&self, agg: &Aggregate) -> Result<Option<LogicalPlan>> {
        // The path down to the window relation: filters, projections and aliases only.
        let mut path: Vec<&LogicalPlan> = Vec::new();
        let mut node = agg.input.as_ref();
        let window = loop {
            match node {
                LogicalPlan::TableScan(scan) => {
                    let Some(src) = scan.source.downcast_ref::<StreamTableSource>() else {
                        return self.cascaded_window_aggregate(agg);
                    };
                    match self.windows.iter().find(|w| w.name == src.name) {
                        Some(w) => break (w, scan.table_name.to_string()),
                        None => return Ok(None),
                    }
                }
                LogicalPlan::Filter(_)
                | LogicalPlan::Projection(_)
                | LogicalPlan::SubqueryAlias(_) => {
                    path.push(node);
                    node = node.inputs()[0];
                }
                _ => return self.cascaded_window_aggregate(agg),
            }
        };
        let (tvf, qualifier) = window;
        let is_window_col =
            |e: &Expr| matches!(e, Expr::Column(c) if WINDOW_COLUMNS.contains(&c.name.as_str()));
        let grouped: Vec<&str> = agg
            .group_expr
            .iter()
            .filter_map(|e| match e {
                Expr::Column(c) if WINDOW_COLUMNS.contains(&c.name.as_str()) => {
                    Some(c.name.as_str())
                }
                _ => None,
            })
            .collect();
        if !(grouped.contains(&"window_start") && grouped.contains(&"window_end")) {
            return Err(plan_err(format!(
                "an aggregate over {} must GROUP BY window_start, window_end",
                streams_core::plan::describe_window(&tvf.spec)
            )));
        }
        // The input stream under the window relation's name, with placeholder window columns so
        // the filters and projections above still resolve (they must not use them).
        let base = self.relation_plan(&tvf.input, &tvf.input)?;
        if is_update_stream(base.schema().as_arrow()) {
            return Err(plan_err(format!(
                "a window aggregate over an update stream (`{}` is the result of an unbounded \
                 GROUP BY) is not supported",
                tvf.input
            )));
        }
        let ts = tvf
            .schema
            .field_with_name("window_start")
            .map(|f| f.data_type().clone())
            .unwrap_or(DataType::Null);
        let mut cols: Vec<Expr> = base
            .schema()
            .columns()
            .into_iter()
            .map(Expr::Column)
            .collect();
        for n in WINDOW_COLUMNS {
            cols.push(Expr::Literal(ScalarValue::try_from(&ts).map_err(df)?, None).alias(n));
        }
        let mut input = LogicalPlanBuilder::from(base)
            .project(cols)
            .map_err(df)?
            .alias(qualifier.as_str())
            .map_err(df)?
            .build()
            .map_err(df)?;
        for step in path.iter().rev() {
            if step.expressions().iter().any(|e| {
                let mut uses = false;
                let _ = e.apply(|x| {
                    uses |= is_window_col(x);
                    Ok(streams_core::datafusion::common::tree_node::TreeNodeRecursion::Continue)
                });
                uses
            }) && !matches!(step, LogicalPlan::Projection(_))
            {
                return Err(plan_err(
                    "window_start / window_end can only be used after the window aggregate",
                ));
            }
            input = step
                .with_new_exprs(step.expressions(), vec![input])
                .map_err(df)?;
        }
        let keys: Vec<Expr> = agg
            .group_expr
            .iter()
            .filter(|e| !is_window_col(e))
            .cloned()
            .collect();
        // Keys and aggregates run below the window: they cannot read its bounds yet.
        let reads_window = |e: &Expr| {
            e.column_refs()
                .iter()
                .any(|c| WINDOW_COLUMNS.contains(&c.name.as_str()))
        };
        if keys.iter().chain(&agg.aggr_expr).any(reads_window) {
            return Err(plan_err(
                "window_start, window_end and window_time can be grouped by as they are, but \
                 not used inside other keys or aggregates; compute with them after the GROUP BY",
            ));
        }
        if let streams_core::window::WindowSpec::Session { .. } = tvf.spec {
            let mut grouped: Vec<String> = keys
                .iter()
                .filter_map(|k| match k {
                    Expr::Column(c) => Some(c.name.clone()),
                    _ => None,
                })
                .collect();
            let mut partition = tvf.partition.clone();
            grouped.sort();
            partition.sort();
            if grouped != partition || grouped.len() != keys.len() {
                return Err(plan_err(format!(
                    "SESSION windows are per key: PARTITION BY ({}) must name the GROUP BY keys ({})",
                    tvf.partition.join(", "),
                    keys.iter()
                        .map(|k| k.to_string())
                        .collect::<Vec<_>>()
                        .join(", ")
                )));
            }
        }
        let node = StreamPlanBuilder::from_plan(input).window_aggregate(
            tvf.spec,
            &tvf.time_column,
            keys.clone(),
            agg.aggr_expr.clone(),
            WindowOptions::default(),
        )?;
        // Back to the aggregate's own columns: group expressions in order, then aggregates.
        let out = node.plan().schema().clone();
        let column_at = |i: usize| Expr::Column(Column::from(out.qualified_field(i)));
        let mut exprs = Vec::new();
        let mut key_index = 0;
        for (i, g) in agg.group_expr.iter().enumerate() {
            let (q, f) = agg.schema.qualified_field(i);
            let e = match g {
                Expr::Column(c) if WINDOW_COLUMNS.contains(&c.name.as_str()) => {
                    let pos = WINDOW_COLUMNS
                        .iter()
                        .position(|n| *n == c.name)
                        .unwrap_or(0);
                    column_at(pos)
                }
                _ => {
                    key_index += 1;
                    column_at(2 + key_index)
                }
            };
            exprs.push(renamed(e, &out, q, f.name()));
        }
        for a in 0..agg.aggr_expr.len() {
            let (q, f) = agg.schema.qualified_field(agg.group_expr.len() + a);
            exprs.push(renamed(column_at(3 + keys.len() + a), &out, q, f.name()));
        }
        Ok(Some(node.project(exprs)?.build()))
    }

    /// `GROUP BY window_start, window_end, ...` over the rows of a window aggregate or window
    /// join (its window columns, renamed or not): a window aggregate again, whose windows are
    /// those of its input. Each input row belongs to the window ending at its `window_end`, so
    /// a one-millisecond TUMBLE over `window_end - 1 ms` (the input's row time) gathers exactly
    /// the rows of one input window and fires when the watermark passes it.
    fn cascaded_window_aggregate(&self, agg: &Aggregate) -> Result<Option<LogicalPlan>> {
        let Some(w) = crate::attributes::window_columns(&agg.input, self.windows) else {
            return Ok(None);
        };
        let schema = agg.input.schema();
        let grouped = |i: usize| {
            agg.group_expr
                .iter()
                .any(|e| matches!(e, Expr::Column(c) if schema.index_of_column(c).ok() == Some(i)))
        };
        if !grouped(w.start) || !grouped(w.end) {
            return Ok(None);
        }
        let input = self.streaming(agg.input.as_ref().clone())?;
        if is_update_stream(input.schema().as_arrow()) {
            return Ok(None);
        }
        // The window aggregate adds its own `window_start`, `window_end` and `window_time`:
        // input columns of those names (both sides' of a window join, say) are renamed, by
        // position, and the aggregate's expressions with them.
        let clashes =
            |c: &Column| ["window_start", "window_end", "window_time"].contains(&c.name.as_str());
        let mut renamed_cols: Vec<(Column, String)> = Vec::new();
        let mut cols: Vec<Expr> = Vec::new();
        let mut end = None;
        for (i, c) in input.schema().columns().into_iter().enumerate() {
            if i == w.end {
                end = Some(Expr::Column(c.clone()));
            }
            if clashes(&c) {
                let inner = format!("__cascaded_{i}_{}", c.name);
                cols.push(Expr::Column(c.clone()).alias(&inner));
                renamed_cols.push((c, inner));
            } else {
                cols.push(Expr::Column(c));
            }
        }
        let end = end.ok_or_else(|| plan_err("the window end column is missing"))?;
        let rename = |e: &Expr| -> Result<Expr> {
            Ok(e.clone()
                .transform(|x| match x {
                    Expr::Column(c) => match renamed_cols.iter().find(|(from, _)| *from == c) {
                        Some((_, to)) => Ok(Transformed::yes(Expr::Column(Column::from_name(to)))),
                        None => Ok(Transformed::no(Expr::Column(c))),
                    },
                    other => Ok(Transformed::no(other)),
                })
                .map_err(streams_core::Error::from)?
                .data)
        };
        let group_expr = agg
            .group_expr
            .iter()
            .map(rename)
            .collect::<Result<Vec<_>>>()?;
        let aggr_expr = agg
            .aggr_expr
            .iter()
            .map(rename)
            .collect::<Result<Vec<_>>>()?;
        let one_ms = ScalarValue::IntervalMonthDayNano(Some(
            streams_core::arrow::datatypes::IntervalMonthDayNano::new(0, 0, 1_000_000),
        ));
        cols.push((end - Expr::Literal(one_ms, None)).alias(CASCADE_TIME));
        let node = StreamPlanBuilder::from_plan(input)
            .project(cols)?
            .window_aggregate(
                streams_core::window::WindowSpec::Tumble { size: 1, offset: 0 },
                CASCADE_TIME,
                group_expr,
                aggr_expr,
                WindowOptions::default(),
            )?;
        // The aggregate's own columns: its groups (the input's window columns among them),
        // then its aggregates; the one-millisecond windows are dropped.
        let out = node.plan().schema().clone();
        let exprs: Vec<Expr> = (0..agg.schema.fields().len())
            .map(|i| {
                let (q, f) = agg.schema.qualified_field(i);
                Expr::Column(Column::from(out.qualified_field(3 + i)))
                    .alias_qualified(q.cloned(), f.name())
            })
            .collect();
        Ok(Some(node.project(exprs)?.build()))
    }

    /// `FROM a, b WHERE ...`: the condition is the join's.
    fn filtered_cross_join(
        &self,
        f: &streams_core::datafusion::logical_expr::Filter,
    ) -> Result<Option<LogicalPlan>> {
        let LogicalPlan::Join(j) = f.input.as_ref() else {
            return Ok(None);
        };
        // An inner join's WHERE conditions are its own (Flink pushes them into the join).
        if j.join_type != streams_core::datafusion::logical_expr::JoinType::Inner {
            return Ok(None);
        }
        self.stream_join(j, Some(&f.predicate)).map(Some)
    }

    fn join(
        &self,
        j: &streams_core::datafusion::logical_expr::Join,
    ) -> Result<Option<LogicalPlan>> {
        self.stream_join(j, None).map(Some)
    }

    /// A join of two streams: an interval join when the condition bounds their times.
    fn stream_join(
        &self,
        j: &streams_core::datafusion::logical_expr::Join,
        extra: Option<&Expr>,
    ) -> Result<LogicalPlan> {
        use streams_core::datafusion::logical_expr::JoinType as DfJoin;
        use streams_core::ops::join::JoinType;
        let join_type = match j.join_type {
            DfJoin::Inner => JoinType::Inner,
            DfJoin::Left => JoinType::Left,
            DfJoin::Right => JoinType::Right,
            DfJoin::Full => JoinType::Full,
            other => {
                return Err(plan_err(format!(
                    "{other} JOIN of two streams is not supported; use INNER, LEFT, RIGHT or FULL"
                )));
            }
        };
        let mut conjuncts: Vec<Expr> = j.on.iter().map(|(l, r)| l.clone().eq(r.clone())).collect();
        conjuncts.extend(j.filter.clone());
        conjuncts.extend(extra.cloned());
        let Some(condition) = conjuncts.into_iter().reduce(Expr::and) else {
            return Err(plan_err("a join of two streams needs a condition"));
        };
        let mut split =
            crate::joins::Split::of(&condition, j.left.schema(), j.right.schema(), false);
        let windows = (
            crate::attributes::window_columns(&j.left, self.windows),
            crate::attributes::window_columns(&j.right, self.windows),
        );
        if let Some(windowed) = split.take_window_keys((j.left.schema(), j.right.schema()), windows)
        {
            let left = self.streaming(j.left.as_ref().clone())?;
            let right = self.streaming(j.right.as_ref().clone())?;
            let residual = split.residual.into_iter().reduce(Expr::and);
            return Ok(StreamPlanBuilder::from_plan(left)
                .join(
                    StreamPlanBuilder::from_plan(right),
                    streams_core::plan::StreamJoinKind::Windowed,
                    join_type,
                    (&windowed.0, &windowed.1),
                    split.keys,
                    residual,
                    WindowOptions::default(),
                )?
                .build());
        }
        let split = crate::joins::Split::of(&condition, j.left.schema(), j.right.schema(), true);
        let (Some(lower), Some(upper), Some(lt), Some(rt)) = (
            split.lower,
            split.upper,
            split.left_time.clone(),
            split.right_time.clone(),
        ) else {
            // No time bound on both sides: a regular join, all of whose state is kept.
            let split =
                crate::joins::Split::of(&condition, j.left.schema(), j.right.schema(), false);
            let mut left = self.streaming(j.left.as_ref().clone())?;
            let mut right = self.streaming(j.right.as_ref().clone())?;
            // Conditions on one side of an inner join filter that side before its rows are
            // stored, so they cost no state.
            let mut residual = Vec::new();
            let (mut only_left, mut only_right) = (Vec::new(), Vec::new());
            for c in split.residual {
                let refs = c.column_refs();
                let within = |schema: &streams_core::datafusion::common::DFSchema| {
                    !refs.is_empty() && refs.iter().all(|r| schema.has_column(r))
                };
                if join_type == JoinType::Inner && within(j.left.schema()) {
                    only_left.push(c);
                } else if join_type == JoinType::Inner && within(j.right.schema()) {
                    only_right.push(c);
                } else {
                    residual.push(c);
                }
            }
            for (plan, conds) in [(&mut left, only_left), (&mut right, only_right)] {
                if let Some(p) = conds.into_iter().reduce(Expr::and) {
                    *plan = LogicalPlanBuilder::from(plan.clone())
                        .filter(p)
                        .map_err(df)?
                        .build()
                        .map_err(df)?;
                }
            }
            let residual = residual.into_iter().reduce(Expr::and);
            return Ok(StreamPlanBuilder::from_plan(left)
                .join(
                    StreamPlanBuilder::from_plan(right),
                    streams_core::plan::StreamJoinKind::Regular,
                    join_type,
                    ("", ""),
                    split.keys,
                    residual,
                    WindowOptions::default(),
                )?
                .build());
        };
        if split.keys.is_empty() {
            return Err(plan_err(
                "an interval join needs at least one equality between the two sides",
            ));
        }
        let left = self.streaming(j.left.as_ref().clone())?;
        let right = self.streaming(j.right.as_ref().clone())?;
        let residual = split.residual.into_iter().reduce(Expr::and);
        let plan = StreamPlanBuilder::from_plan(left)
            .join(
                StreamPlanBuilder::from_plan(right),
                streams_core::plan::StreamJoinKind::Interval { lower, upper },
                join_type,
                (&lt, &rt),
                split.keys,
                residual,
                WindowOptions::default(),
            )?
            .build();
        Ok(plan)
    }

    /// `WHERE rn <= N` over `ROW_NUMBER() OVER (PARTITION BY ... ORDER BY ...) AS rn`: a
    /// Top-N (deduplication when N = 1).
    fn top_n(
        &self,
        f: &streams_core::datafusion::logical_expr::Filter,
    ) -> Result<Option<LogicalPlan>> {
        use streams_core::datafusion::logical_expr::{BinaryExpr, Operator, expr::WindowFunction};
        let limit_of = |e: &Expr| match e {
            Expr::Literal(v, _) => v.to_string().parse::<i64>().ok(),
            Expr::Cast(c) => match c.expr.as_ref() {
                Expr::Literal(v, _) => v.to_string().parse::<i64>().ok(),
                _ => None,
            },
            _ => None,
        };
        let Expr::BinaryExpr(BinaryExpr { left, op, right }) = &f.predicate else {
            return Ok(None);
        };
        let (column, limit) = match (left.as_ref(), op, right.as_ref()) {
            (Expr::Column(c), Operator::LtEq, n) | (n, Operator::GtEq, Expr::Column(c)) => {
                (c, limit_of(n))
            }
            (Expr::Column(c), Operator::Lt, n) | (n, Operator::Gt, Expr::Column(c)) => {
                (c, limit_of(n).map(|v| v - 1))
            }
            (Expr::Column(c), Operator::Eq, n) | (n, Operator::Eq, Expr::Column(c))
                if limit_of(n) == Some(1) =>
            {
                (c, Some(1))
            }
            _ => return Ok(None),
        };
        let Some(limit) = limit else {
            return Ok(None);
        };
        // Down to the window function through aliases and projections.
        let mut path: Vec<&LogicalPlan> = Vec::new();
        let mut node = f.input.as_ref();
        let window = loop {
            match node {
                LogicalPlan::SubqueryAlias(_) | LogicalPlan::Projection(_) => {
                    path.push(node);
                    node = node.inputs()[0];
                }
                LogicalPlan::Window(w) => break w,
                _ => return Ok(None),
            }
        };
        let [expr] = window.window_expr.as_slice() else {
            return Ok(None);
        };
        let Expr::WindowFunction(wf) = expr.clone().unalias_nested().data else {
            return Ok(None);
        };
        let WindowFunction { fun, params } = wf.as_ref();
        if fun.name() != "row_number" {
            return Ok(None);
        }
        let rank_name = window
            .schema
            .field(window.schema.fields().len() - 1)
            .name()
            .clone();
        // The filtered column must be the row number, under its own name or an alias of it.
        let is_rank = column.name == rank_name
            || path.iter().any(|p| match p {
                LogicalPlan::Projection(p) => p.expr.iter().any(|e| {
                    matches!(e, Expr::Alias(a) if a.name == column.name
                        && matches!(a.expr.as_ref(), Expr::Column(c) if c.name == rank_name))
                }),
                _ => false,
            });
        if !is_rank {
            return Ok(None);
        }
        if limit < 1 {
            return Err(plan_err(format!(
                "a Top-N needs at least one row: {}",
                f.predicate
            )));
        }
        if params.order_by.is_empty() {
            return Err(plan_err("ROW_NUMBER() for Top-N needs an ORDER BY"));
        }
        let input = self.streaming(window.input.as_ref().clone())?;
        // The rank column takes the name the query filters it by (`rn`), not the window
        // expression's; the Top-N only emits ranks within the limit, so the filter goes.
        let rank = column.name.clone();
        let mut plan = StreamPlanBuilder::from_plan(input)
            .top_n(
                params.partition_by.clone(),
                params.order_by.clone(),
                limit as usize,
                &rank,
            )?
            .build();
        for step in path.iter().rev() {
            let exprs = step
                .expressions()
                .into_iter()
                .map(|e| {
                    let renamed = e
                        .transform(|x| match &x {
                            Expr::Column(c) if c.name == rank_name => Ok(Transformed::yes(
                                Expr::Column(Column::new_unqualified(&rank)),
                            )),
                            _ => Ok(Transformed::no(x)),
                        })
                        .map(|t| t.data)?;
                    Ok(match renamed {
                        Expr::Alias(a)
                            if a.name == rank
                                && matches!(a.expr.as_ref(), Expr::Column(c) if c.name == rank) =>
                        {
                            *a.expr
                        }
                        other => other,
                    })
                })
                .collect::<streams_core::datafusion::error::Result<Vec<_>>>()
                .map_err(df)?;
            plan = step.with_new_exprs(exprs, vec![plan]).map_err(df)?;
        }
        Ok(Some(plan))
    }
}
