//! Window attributes, as Flink tracks them: the `window_start` / `window_end` columns of a
//! window function keep that meaning through a window aggregate's `GROUP BY`, projections
//! (renamed or not), aliases and filters. A join on both, or a `GROUP BY` of both, over such
//! inputs is then a window join or a window aggregate (Nexmark q5, q8), not an unbounded one.

use streams_core::datafusion::common::DFSchema;
use streams_core::datafusion::logical_expr::{Expr, LogicalPlan};
use streams_core::plan::{WindowAggregateNode, WindowAssignNode};

use crate::catalog::{StreamTableSource, ViewSource};
use crate::windows::WindowTvf;

/// Positions of a plan's window start and end columns.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct WindowColumns {
    pub(crate) start: usize,
    pub(crate) end: usize,
}

fn position(schema: &DFSchema, e: &Expr) -> Option<usize> {
    match e {
        Expr::Column(c) => schema.index_of_column(c).ok(),
        Expr::Alias(a) => position(schema, &a.expr),
        _ => None,
    }
}

/// Where `plan`'s window columns are, if it has them.
pub(crate) fn window_columns(plan: &LogicalPlan, windows: &[WindowTvf]) -> Option<WindowColumns> {
    let by_name = |schema: &DFSchema| {
        Some(WindowColumns {
            start: schema.index_of_column_by_name(None, "window_start")?,
            end: schema.index_of_column_by_name(None, "window_end")?,
        })
    };
    match plan {
        LogicalPlan::TableScan(scan) => {
            if let Some(src) = scan.source.downcast_ref::<StreamTableSource>() {
                return windows
                    .iter()
                    .any(|w| w.name == src.name)
                    .then(|| by_name(&scan.projected_schema))
                    .flatten();
            }
            let view = scan.source.downcast_ref::<ViewSource>()?;
            // A view keeps its columns in order; a projected scan of it is not followed.
            let inner = window_columns(&view.plan, windows)?;
            (scan.projection.is_none()).then_some(inner)
        }
        LogicalPlan::SubqueryAlias(a) => window_columns(&a.input, windows),
        LogicalPlan::Filter(f) => window_columns(&f.input, windows),
        LogicalPlan::Projection(p) => {
            let inner = window_columns(&p.input, windows)?;
            let find = |wanted: usize| {
                p.expr
                    .iter()
                    .position(|e| position(p.input.schema(), e) == Some(wanted))
            };
            Some(WindowColumns {
                start: find(inner.start)?,
                end: find(inner.end)?,
            })
        }
        LogicalPlan::Aggregate(agg) => {
            let inner = window_columns(&agg.input, windows)?;
            let find = |wanted: usize| {
                agg.group_expr
                    .iter()
                    .position(|e| position(agg.input.schema(), e) == Some(wanted))
            };
            Some(WindowColumns {
                start: find(inner.start)?,
                end: find(inner.end)?,
            })
        }
        LogicalPlan::Extension(e) => {
            let any = e.node.as_any();
            if any.downcast_ref::<WindowAggregateNode>().is_some() {
                Some(WindowColumns { start: 0, end: 1 })
            } else if any.downcast_ref::<WindowAssignNode>().is_some() {
                by_name(e.node.schema())
            } else {
                None
            }
        }
        _ => None,
    }
}
