//! Narrows the inputs of stateful operators to the columns they read. DataFusion's
//! `OptimizeProjections` adds such a projection below its own aggregates and joins, but not
//! below extension nodes; without this rule a window over `SELECT *` would shuffle and keep
//! every column, and the same job written in SQL or in the DSL would get different operators.

use datafusion::common::tree_node::Transformed;
use datafusion::common::{Column, Result as DfResult};
use datafusion::logical_expr::{Expr, LogicalPlan, LogicalPlanBuilder};
use datafusion::optimizer::{ApplyOrder, OptimizerConfig, OptimizerRule};

use super::nodes::WindowAggregateNode;
use super::nodes_more::{StreamJoinNode, TopNNode, UpdateAggregateNode};

#[derive(Debug, Default)]
pub(super) struct PruneStatefulInputs;

impl OptimizerRule for PruneStatefulInputs {
    fn name(&self) -> &str {
        "prune_stateful_inputs"
    }

    fn apply_order(&self) -> Option<ApplyOrder> {
        Some(ApplyOrder::BottomUp)
    }

    fn supports_rewrite(&self) -> bool {
        true
    }

    fn rewrite(
        &self,
        plan: LogicalPlan,
        _config: &dyn OptimizerConfig,
    ) -> DfResult<Transformed<LogicalPlan>> {
        let LogicalPlan::Extension(e) = &plan else {
            return Ok(Transformed::no(plan));
        };
        let any = e.node.as_any();
        let stateful = any.is::<WindowAggregateNode>()
            || any.is::<UpdateAggregateNode>()
            || any.is::<TopNNode>()
            || any.is::<StreamJoinNode>();
        if !stateful {
            return Ok(Transformed::no(plan));
        }
        let all: Vec<usize> = (0..e.node.schema().fields().len()).collect();
        let Some(needed) = e.node.necessary_children_exprs(&all) else {
            return Ok(Transformed::no(plan));
        };
        let (new_inputs, changed) = narrow(e.node.inputs(), needed)?;
        if !changed {
            return Ok(Transformed::no(plan));
        }
        let node = e
            .node
            .with_exprs_and_inputs(e.node.expressions(), new_inputs)?;
        Ok(Transformed::yes(LogicalPlan::Extension(
            datafusion::logical_expr::Extension { node },
        )))
    }
}

/// Each input with a projection to the columns `needed` says, unless it has no others or is
/// a projection already (`OptimizeProjections` narrows those); whether any input changed.
fn narrow(
    inputs: Vec<&LogicalPlan>,
    needed: Vec<Vec<usize>>,
) -> DfResult<(Vec<LogicalPlan>, bool)> {
    let mut changed = false;
    let mut new_inputs = Vec::with_capacity(inputs.len());
    for (input, mut wanted) in inputs.into_iter().zip(needed) {
        wanted.sort_unstable();
        wanted.dedup();
        let width = input.schema().fields().len();
        if wanted.len() >= width || matches!(input, LogicalPlan::Projection(_)) {
            new_inputs.push(input.clone());
            continue;
        }
        let columns: Vec<Expr> = wanted
            .iter()
            .map(|i| Expr::Column(Column::from(input.schema().qualified_field(*i))))
            .collect();
        new_inputs.push(
            LogicalPlanBuilder::from(input.clone())
                .project(columns)?
                .build()?,
        );
        changed = true;
    }
    Ok((new_inputs, changed))
}

/// Narrows the inputs of a window or interval join to the columns the projection above it
/// reads (and the join's keys, condition and times): a join holds each side's rows for a
/// while. `OptimizeProjections` narrows a projection it finds below the join, but adds none,
/// so without this rule a join over a window assignment (the DSL's shape) would keep every
/// column while the same join in SQL, over the window function's projection, would not.
#[derive(Debug, Default)]
pub(super) struct NarrowJoinInputs;

impl OptimizerRule for NarrowJoinInputs {
    fn name(&self) -> &str {
        "narrow_join_inputs"
    }

    fn apply_order(&self) -> Option<ApplyOrder> {
        Some(ApplyOrder::TopDown)
    }

    fn supports_rewrite(&self) -> bool {
        true
    }

    fn rewrite(
        &self,
        plan: LogicalPlan,
        _config: &dyn OptimizerConfig,
    ) -> DfResult<Transformed<LogicalPlan>> {
        let LogicalPlan::Projection(p) = &plan else {
            return Ok(Transformed::no(plan));
        };
        let LogicalPlan::Extension(e) = p.input.as_ref() else {
            return Ok(Transformed::no(plan));
        };
        if !e.node.as_any().is::<StreamJoinNode>() {
            return Ok(Transformed::no(plan));
        }
        let schema = e.node.schema();
        let mut used: Vec<usize> = p
            .expr
            .iter()
            .flat_map(|x| x.column_refs())
            .filter_map(|c| schema.index_of_column(c).ok())
            .collect();
        used.sort_unstable();
        used.dedup();
        let Some(needed) = e.node.necessary_children_exprs(&used) else {
            return Ok(Transformed::no(plan));
        };
        let (new_inputs, changed) = narrow(e.node.inputs(), needed)?;
        if !changed {
            return Ok(Transformed::no(plan));
        }
        let node = e
            .node
            .with_exprs_and_inputs(e.node.expressions(), new_inputs)?;
        let input = LogicalPlan::Extension(datafusion::logical_expr::Extension { node });
        let projection = datafusion::logical_expr::Projection::try_new(
            p.expr.clone(),
            std::sync::Arc::new(input),
        )?;
        Ok(Transformed::yes(LogicalPlan::Projection(projection)))
    }
}
