//! An expression that a filter computes for every row and that the projection above it
//! computes again (`WHERE REGEXP_EXTRACT(url, p) IS NOT NULL` under `SELECT REGEXP_EXTRACT(url,
//! p)`) is computed once, in a projection below the filter, and read from there by both.
//! Flink's Calc reuses such expressions the same way; DataFusion's common-subexpression rule
//! looks within one node only.
//!
//! Only what the filter surely evaluates is moved: the left side of `AND`/`OR`, the first
//! condition of a `CASE`, arguments of functions that evaluate them all. Computing those
//! before filtering does no work the filter did not already do, and cannot raise an error
//! (a division by zero, say) that a short circuit would have kept from happening.

use std::sync::Arc;

use datafusion::common::Result as DfResult;
use datafusion::common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
use datafusion::logical_expr::expr::ScalarFunction;
use datafusion::logical_expr::expr_rewriter::NamePreserver;
use datafusion::logical_expr::{
    BinaryExpr, Case, Expr, ExpressionPlacement, Filter, LogicalPlan, Operator, Projection, col,
};
use datafusion::optimizer::{ApplyOrder, OptimizerConfig, OptimizerRule};

#[derive(Debug, Default)]
pub(super) struct ShareFilterExprs;

impl OptimizerRule for ShareFilterExprs {
    fn name(&self) -> &str {
        "share_filter_exprs"
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
        config: &dyn OptimizerConfig,
    ) -> DfResult<Transformed<LogicalPlan>> {
        let LogicalPlan::Projection(projection) = &plan else {
            return Ok(Transformed::no(plan));
        };
        let LogicalPlan::Filter(filter) = projection.input.as_ref() else {
            return Ok(Transformed::no(plan));
        };
        let mut shared = Vec::new();
        find_shared(&filter.predicate, &projection.expr, &mut shared);
        if shared.is_empty() {
            return Ok(Transformed::no(plan));
        }
        let names: Vec<String> = shared
            .iter()
            .map(|_| config.alias_generator().next("__shared"))
            .collect();
        let input = Arc::clone(&filter.input);
        let mut below: Vec<Expr> = input
            .schema()
            .columns()
            .into_iter()
            .map(Expr::Column)
            .collect();
        below.extend(shared.iter().zip(&names).map(|(e, n)| e.clone().alias(n)));
        let below = Projection::try_new(below, input)?;
        let read_shared = |e: &Expr| -> DfResult<Expr> {
            let rewritten =
                e.clone()
                    .transform_down(|node| match shared.iter().position(|s| *s == node) {
                        Some(i) => Ok(Transformed::new(
                            col(names[i].as_str()),
                            true,
                            TreeNodeRecursion::Jump,
                        )),
                        None => Ok(Transformed::no(node)),
                    })?;
            Ok(rewritten.data)
        };
        let filter = Filter::try_new(
            read_shared(&filter.predicate)?,
            Arc::new(LogicalPlan::Projection(below)),
        )?;
        // The projection's columns keep their names (and so the plan its schema).
        let names = NamePreserver::new(&plan);
        let exprs = projection
            .expr
            .iter()
            .map(|e| Ok(names.save(e).restore(read_shared(e)?)))
            .collect::<DfResult<Vec<_>>>()?;
        let projection = Projection::try_new(exprs, Arc::new(LogicalPlan::Filter(filter)))?;
        Ok(Transformed::yes(LogicalPlan::Projection(projection)))
    }
}

/// Adds to `shared` the largest expressions that `predicate` surely evaluates and that some
/// expression of `above` contains.
fn find_shared(predicate: &Expr, above: &[Expr], shared: &mut Vec<Expr>) {
    if worth_sharing(predicate) && above.iter().any(|e| contains(e, predicate)) {
        if !shared.contains(predicate) {
            shared.push(predicate.clone());
        }
        return;
    }
    for child in surely_evaluated(predicate) {
        find_shared(child, above, shared);
    }
}

/// A computation (not a column, a literal or a struct field access, which cost nothing to
/// repeat), the same every time it is evaluated, and about this row alone.
fn worth_sharing(e: &Expr) -> bool {
    let cheap = matches!(
        e,
        Expr::Column(_) | Expr::Literal(..) | Expr::Alias(_) | Expr::ScalarVariable(..)
    ) || e.placement() == ExpressionPlacement::MoveTowardsLeafNodes;
    let not_of_the_row = e.exists(|n| {
        Ok(matches!(
            n,
            Expr::ScalarSubquery(_)
                | Expr::Exists(_)
                | Expr::InSubquery(_)
                | Expr::OuterReferenceColumn(..)
                | Expr::AggregateFunction(_)
                | Expr::WindowFunction(_)
                | Expr::Placeholder(_)
        ))
    });
    !cheap && !e.is_volatile() && !not_of_the_row.unwrap_or(true)
}

fn contains(haystack: &Expr, needle: &Expr) -> bool {
    haystack.exists(|n| Ok(n == needle)).unwrap_or(false)
}

/// The children of `e` that are evaluated whenever `e` is.
fn surely_evaluated(e: &Expr) -> Vec<&Expr> {
    match e {
        Expr::BinaryExpr(BinaryExpr {
            left,
            op: Operator::And | Operator::Or,
            ..
        }) => vec![left.as_ref()],
        Expr::Case(Case {
            expr,
            when_then_expr,
            ..
        }) => expr
            .iter()
            .map(|e| e.as_ref())
            .chain(when_then_expr.first().map(|(when, _)| when.as_ref()))
            .collect(),
        Expr::ScalarFunction(ScalarFunction { func, args }) => {
            match func.conditional_arguments(args) {
                Some((surely, _)) => surely,
                None => args.iter().collect(),
            }
        }
        _ => {
            let mut children = Vec::new();
            // Visiting children cannot fail.
            let _ = e.apply_children(|c| {
                children.push(c);
                Ok(TreeNodeRecursion::Continue)
            });
            children
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::datatypes::{DataType, Field, Schema};
    use datafusion::logical_expr::{LogicalPlanBuilder, lit, table_scan};
    use datafusion::optimizer::{Optimizer, OptimizerContext};

    fn scan() -> LogicalPlanBuilder {
        let schema = Schema::new(vec![
            Field::new("a", DataType::Int64, true),
            Field::new("b", DataType::Int64, true),
        ]);
        table_scan(Some("t"), &schema, None).unwrap()
    }

    fn shared(plan: LogicalPlan) -> String {
        let rules: Vec<Arc<dyn OptimizerRule + Send + Sync>> = vec![Arc::new(ShareFilterExprs)];
        let optimized = Optimizer::with_rules(rules)
            .optimize(plan.clone(), &OptimizerContext::new(), |_, _| {})
            .unwrap();
        assert_eq!(optimized.schema(), plan.schema(), "the schema is kept");
        optimized.display_indent().to_string()
    }

    #[test]
    fn what_the_filter_computes_for_every_row_is_computed_once_below_it() {
        let sum = col("a") + col("b");
        let plan = scan()
            .filter(sum.clone().gt(lit(10)).or(col("a").eq(lit(0))))
            .unwrap()
            .project(vec![col("a"), (sum * lit(2)).alias("twice")])
            .unwrap()
            .build()
            .unwrap();
        let got = shared(plan);
        assert!(
            got.contains("Filter: __shared_1 > Int32(10) OR t.a = Int32(0)")
                || got.contains("Filter: __shared_1 > Int64(10) OR t.a = Int64(0)"),
            "{got}"
        );
        assert!(got.contains("__shared_1 * "), "{got}");
        assert!(got.contains("t.a + t.b AS __shared_1"), "{got}");
    }

    #[test]
    fn what_a_short_circuit_may_skip_stays_where_it_is() {
        // `b / a` behind `a <> 0 AND`: computing it for every row would divide by zero.
        let ratio = col("b") / col("a");
        let plan = scan()
            .filter(col("a").not_eq(lit(0)).and(ratio.clone().gt(lit(1))))
            .unwrap()
            .project(vec![ratio.alias("r")])
            .unwrap()
            .build()
            .unwrap();
        assert!(!shared(plan).contains("__shared"));
    }

    #[test]
    fn columns_and_literals_are_not_worth_a_column_of_their_own() {
        let plan = scan()
            .filter(col("a").gt(lit(1)))
            .unwrap()
            .project(vec![col("a"), col("b")])
            .unwrap()
            .build()
            .unwrap();
        assert!(!shared(plan).contains("__shared"));
    }
}
