//! Plan nodes of joins, window assignment and update streams: [`StreamJoinNode`],
//! [`WindowAssignNode`], [`UpdateAggregateNode`], [`TopNNode`].

use crate::window::WindowSpec;
use datafusion::common::DFSchemaRef;
use datafusion::error::Result as DfResult;
use datafusion::logical_expr::{Expr, LogicalPlan, UserDefinedLogicalNodeCore};
use std::cmp::Ordering;
use std::fmt;

use super::nodes::{WindowOptions, columns_read, describe_window, exact_inputs, fmt_keys_aggs};

/// Which stream join.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd)]
pub enum StreamJoinKind {
    /// Rows of both sides in the same window (TUMBLE, HOP or CUMULATE), joined when it fires.
    Window(WindowSpec),
    /// Both inputs already carry windows (rows of window table functions): rows with equal
    /// `window_end` (the time columns given) join when that window fires; no extra columns.
    Windowed,
    /// `left.ts BETWEEN right.ts + lower AND right.ts + upper` (milliseconds, may be negative).
    Interval {
        /// Smallest `left.ts - right.ts`.
        lower: i64,
        /// Largest `left.ts - right.ts`.
        upper: i64,
    },
    /// No time bound: all rows of both sides are kept, and the output is an update stream
    /// (inserts only for an inner join of plain streams).
    Regular,
}

/// A window join or interval join of two event-time streams on equal keys.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct StreamJoinNode {
    /// Left input.
    pub left: LogicalPlan,
    /// Right input.
    pub right: LogicalPlan,
    /// Window or interval.
    pub kind: StreamJoinKind,
    /// Inner or left outer.
    pub join_type: crate::ops::join::JoinType,
    /// Equal keys: (left expression, right expression).
    pub on: Vec<(Expr, Expr)>,
    /// Extra condition over the joined row.
    pub filter: Option<Expr>,
    /// Event-time column of the left input.
    pub left_time: String,
    /// Event-time column of the right input.
    pub right_time: String,
    /// Lateness (window joins) and where late rows go.
    pub options: WindowOptions,
    /// Output: (`window_start`, `window_end` for window joins), left columns, right columns.
    pub schema: DFSchemaRef,
}

impl PartialOrd for StreamJoinNode {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        let key = |n: &Self| {
            (
                n.left.clone(),
                n.right.clone(),
                n.kind,
                n.on.clone(),
                n.filter.clone(),
                n.options.clone(),
            )
        };
        key(self).partial_cmp(&key(other))
    }
}

impl StreamJoinNode {
    /// Output columns before the left input's: `window_start` and `window_end` of a window
    /// join.
    fn window_columns(&self) -> usize {
        if matches!(self.kind, StreamJoinKind::Window(_)) {
            2
        } else {
            0
        }
    }
}

impl UserDefinedLogicalNodeCore for StreamJoinNode {
    fn name(&self) -> &str {
        "StreamJoin"
    }
    fn inputs(&self) -> Vec<&LogicalPlan> {
        vec![&self.left, &self.right]
    }
    fn schema(&self) -> &DFSchemaRef {
        &self.schema
    }
    fn expressions(&self) -> Vec<Expr> {
        let mut v: Vec<Expr> = self
            .on
            .iter()
            .flat_map(|(l, r)| [l.clone(), r.clone()])
            .collect();
        v.extend(self.filter.clone());
        v
    }
    /// The left and right columns the output needs, plus the keys, the condition and the
    /// event times: a join keeps every row of a side for a while, so a column nobody reads
    /// would be shuffled and held for nothing. (Regular joins: all columns, as before.)
    fn necessary_children_exprs(&self, output_columns: &[usize]) -> Option<Vec<Vec<usize>>> {
        if self.kind == StreamJoinKind::Regular {
            return None;
        }
        let (l, r) = (self.left.schema(), self.right.schema());
        let (nl, nr) = (l.fields().len(), r.fields().len());
        let first = self.window_columns();
        let (mut left, mut right) = (Vec::new(), Vec::new());
        for &i in output_columns {
            if (first..first + nl).contains(&i) {
                left.push(i - first);
            } else if (first + nl..first + nl + nr).contains(&i) {
                right.push(i - first - nl);
            }
        }
        for e in self.expressions() {
            for c in e.column_refs() {
                // A column both sides have under that name is kept on both.
                left.extend(l.index_of_column(c).ok());
                right.extend(r.index_of_column(c).ok());
            }
        }
        left.push(l.index_of_column_by_name(None, &self.left_time)?);
        right.push(r.index_of_column_by_name(None, &self.right_time)?);
        for side in [&mut left, &mut right] {
            side.sort_unstable();
            side.dedup();
        }
        Some(vec![left, right])
    }
    fn fmt_for_explain(&self, f: &mut fmt::Formatter) -> fmt::Result {
        let kind = match self.kind {
            StreamJoinKind::Window(w) => format!("window join {}", describe_window(&w)),
            StreamJoinKind::Windowed => {
                format!("window join on {} = {}", self.left_time, self.right_time)
            }
            StreamJoinKind::Interval { lower, upper } => format!(
                "interval join {} BETWEEN {} + {lower}ms AND {} + {upper}ms",
                self.left_time, self.right_time, self.right_time
            ),
            StreamJoinKind::Regular => "regular join".to_string(),
        };
        write!(f, "StreamJoin: {:?} {kind} on [", self.join_type)?;
        for (i, (l, r)) in self.on.iter().enumerate() {
            write!(f, "{}{l} = {r}", if i > 0 { ", " } else { "" })?;
        }
        write!(f, "]")?;
        if let Some(e) = &self.filter {
            // Type coercion names the rewritten condition after the original: not worth showing.
            write!(f, " filter {}", e.clone().unalias_nested().data)?;
        }
        Ok(())
    }
    fn with_exprs_and_inputs(
        &self,
        mut exprs: Vec<Expr>,
        mut inputs: Vec<LogicalPlan>,
    ) -> DfResult<Self> {
        let (Some(right), Some(left), true) = (inputs.pop(), inputs.pop(), inputs.is_empty())
        else {
            return datafusion::common::internal_err!("StreamJoin takes two inputs");
        };
        let filter = if self.filter.is_some() {
            exprs.pop()
        } else {
            None
        };
        let mut on = Vec::with_capacity(self.on.len());
        let mut it = exprs.into_iter();
        while let (Some(l), Some(r)) = (it.next(), it.next()) {
            on.push((l, r));
        }
        // Inputs narrowed to the columns the output needs narrow the output too.
        let narrowed = left.schema() != self.left.schema() || right.schema() != self.right.schema();
        let schema = if narrowed && self.kind != StreamJoinKind::Regular {
            let joined = datafusion::logical_expr::build_join_schema(
                left.schema(),
                right.schema(),
                &self.join_type.to_datafusion(),
            )?;
            let window = self.schema.iter().take(self.window_columns());
            let fields = window
                .chain(joined.iter())
                .map(|(q, f)| (q.cloned(), std::sync::Arc::clone(f)))
                .collect();
            std::sync::Arc::new(datafusion::common::DFSchema::new_with_metadata(
                fields,
                Default::default(),
            )?)
        } else {
            self.schema.clone()
        };
        Ok(StreamJoinNode {
            left,
            right,
            on,
            filter,
            schema,
            ..self.clone()
        })
    }
}

/// A window table function's rows: the input plus `window_start`, `window_end` and
/// `window_time` (TUMBLE, HOP and CUMULATE; a HOP row once per window).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct WindowAssignNode {
    /// Input.
    pub input: LogicalPlan,
    /// The windows.
    pub window: WindowSpec,
    /// Event-time column of the input.
    pub time_column: String,
    /// Input columns, then the three window columns.
    pub schema: DFSchemaRef,
}

impl PartialOrd for WindowAssignNode {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        (&self.input, self.window, &self.time_column).partial_cmp(&(
            &other.input,
            other.window,
            &other.time_column,
        ))
    }
}

impl UserDefinedLogicalNodeCore for WindowAssignNode {
    fn name(&self) -> &str {
        "WindowAssign"
    }
    fn inputs(&self) -> Vec<&LogicalPlan> {
        vec![&self.input]
    }
    fn schema(&self) -> &DFSchemaRef {
        &self.schema
    }
    fn expressions(&self) -> Vec<Expr> {
        Vec::new()
    }
    fn fmt_for_explain(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(
            f,
            "WindowAssign: {} on {}",
            describe_window(&self.window),
            self.time_column
        )
    }
    fn with_exprs_and_inputs(&self, _exprs: Vec<Expr>, inputs: Vec<LogicalPlan>) -> DfResult<Self> {
        Ok(WindowAssignNode {
            input: exact_inputs("WindowAssign", inputs)?,
            ..self.clone()
        })
    }
}

/// `GROUP BY` without a window: a running result per key, as an update stream (its last column
/// is [`crate::changelog::OP_COLUMN`]).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct UpdateAggregateNode {
    /// Input (append-only).
    pub input: LogicalPlan,
    /// Group keys.
    pub group_expr: Vec<Expr>,
    /// Aggregates.
    pub aggr_expr: Vec<Expr>,
    /// Whether the input is an update stream, whose aggregates are sums of signed rows and
    /// whose last aggregate counts the rows of a group (a group at 0 is deleted).
    pub retracting: bool,
    /// Keys, aggregates, the change column.
    pub schema: DFSchemaRef,
}

impl PartialOrd for UpdateAggregateNode {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        (&self.input, &self.group_expr, &self.aggr_expr).partial_cmp(&(
            &other.input,
            &other.group_expr,
            &other.aggr_expr,
        ))
    }
}

impl UserDefinedLogicalNodeCore for UpdateAggregateNode {
    fn name(&self) -> &str {
        "UpdateAggregate"
    }
    fn inputs(&self) -> Vec<&LogicalPlan> {
        vec![&self.input]
    }
    fn schema(&self) -> &DFSchemaRef {
        &self.schema
    }
    fn expressions(&self) -> Vec<Expr> {
        self.group_expr
            .iter()
            .chain(&self.aggr_expr)
            .cloned()
            .collect()
    }
    fn necessary_children_exprs(&self, _output_columns: &[usize]) -> Option<Vec<Vec<usize>>> {
        let exprs: Vec<&Expr> = self.group_expr.iter().chain(&self.aggr_expr).collect();
        columns_read(&self.input, &exprs, None)
    }
    fn fmt_for_explain(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "UpdateAggregate: ")?;
        if self.retracting {
            write!(f, "retracting ")?;
        }
        fmt_keys_aggs(f, &self.group_expr, &self.aggr_expr)
    }

    fn with_exprs_and_inputs(
        &self,
        mut exprs: Vec<Expr>,
        inputs: Vec<LogicalPlan>,
    ) -> DfResult<Self> {
        let aggr_expr = exprs.split_off(self.group_expr.len());
        Ok(UpdateAggregateNode {
            input: exact_inputs("UpdateAggregate", inputs)?,
            group_expr: exprs,
            aggr_expr,
            ..self.clone()
        })
    }
}

/// Top-N per key: `ROW_NUMBER() OVER (PARTITION BY keys ORDER BY order) <= limit`, as an
/// update stream (input columns, the rank, [`crate::changelog::OP_COLUMN`]).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct TopNNode {
    /// Input (append-only).
    pub input: LogicalPlan,
    /// Partition keys.
    pub partition_by: Vec<Expr>,
    /// Order, best first.
    pub order_by: Vec<datafusion::logical_expr::SortExpr>,
    /// Rows kept per key.
    pub limit: usize,
    /// Input columns, the rank, the change column.
    pub schema: DFSchemaRef,
}

impl PartialOrd for TopNNode {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        (&self.input, &self.partition_by, self.limit).partial_cmp(&(
            &other.input,
            &other.partition_by,
            other.limit,
        ))
    }
}

impl UserDefinedLogicalNodeCore for TopNNode {
    fn name(&self) -> &str {
        "TopN"
    }
    fn inputs(&self) -> Vec<&LogicalPlan> {
        vec![&self.input]
    }
    fn schema(&self) -> &DFSchemaRef {
        &self.schema
    }
    fn expressions(&self) -> Vec<Expr> {
        self.partition_by
            .iter()
            .cloned()
            .chain(self.order_by.iter().map(|s| s.expr.clone()))
            .collect()
    }
    fn fmt_for_explain(&self, f: &mut fmt::Formatter) -> fmt::Result {
        let list = |v: &[Expr]| {
            v.iter()
                .map(|e| e.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        };
        let order: Vec<String> = self.order_by.iter().map(|s| s.to_string()).collect();
        write!(
            f,
            "TopN: {} per [{}] by [{}]",
            self.limit,
            list(&self.partition_by),
            order.join(", ")
        )
    }
    fn with_exprs_and_inputs(
        &self,
        mut exprs: Vec<Expr>,
        inputs: Vec<LogicalPlan>,
    ) -> DfResult<Self> {
        let order = exprs.split_off(self.partition_by.len());
        let order_by = self
            .order_by
            .iter()
            .zip(order)
            .map(|(s, e)| datafusion::logical_expr::SortExpr {
                expr: e,
                ..s.clone()
            })
            .collect();
        Ok(TopNNode {
            input: exact_inputs("TopN", inputs)?,
            partition_by: exprs,
            order_by,
            ..self.clone()
        })
    }
}
