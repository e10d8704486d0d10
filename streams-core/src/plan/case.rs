//! A `CASE WHEN c1 THEN v1 WHEN c2 THEN v2 ... [ELSE e] END` whose parts are all cheap and
//! cannot fail (columns, struct fields, literals, comparisons and boolean logic over those),
//! like the Nexmark table's event time (`CASE WHEN event_type = 0 THEN person.dateTime WHEN
//! event_type = 1 THEN auction.dateTime ELSE bid.dateTime END`), is evaluated whole: every
//! part over the whole batch, the values merged with `zip` from the last branch to the first.
//!
//! DataFusion evaluates each branch on the rows no earlier branch took, and to get those
//! rows it filters every column the `CASE` reads before each branch: for the Nexmark time,
//! three struct columns with all their fields, twice per batch, for every event of every
//! query. Evaluating cheap parts on rows whose result is then dropped costs far less, and
//! since none can fail, no row raises an error that a short circuit would have spared.

use std::fmt;
use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, new_null_array};
use datafusion::arrow::compute::kernels::zip::zip;
use datafusion::arrow::datatypes::{DataType, Schema};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::common::cast::as_boolean_array;
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::common::{Result as DfResult, ScalarValue};
use datafusion::logical_expr::{ColumnarValue, Operator};
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_expr::ScalarFunctionExpr;
use datafusion::physical_expr::expressions::{
    BinaryExpr, CaseExpr, Column, IsNotNullExpr, IsNullExpr, Literal, NotExpr,
};

/// `expr` with each `CASE` that qualifies (see the module) evaluated whole.
pub(super) fn whole_cases(
    expr: Arc<dyn PhysicalExpr>,
    schema: &Schema,
) -> DfResult<Arc<dyn PhysicalExpr>> {
    let rewritten = expr.transform_up(|e| {
        let Some(case) = e.downcast_ref::<CaseExpr>() else {
            return Ok(Transformed::no(e));
        };
        let data_type = e.data_type(schema)?;
        let parts_qualify = |p: &Arc<dyn PhysicalExpr>, typed: bool| -> DfResult<bool> {
            Ok(cheap(p) && (!typed || p.data_type(schema)? == data_type))
        };
        let mut qualifies = case.expr().is_none();
        for (when, then) in case.when_then_expr() {
            qualifies = qualifies && parts_qualify(when, false)? && parts_qualify(then, true)?;
        }
        if let Some(otherwise) = case.else_expr() {
            qualifies = qualifies && parts_qualify(otherwise, true)?;
        }
        if !qualifies {
            return Ok(Transformed::no(e));
        }
        let whole = WholeCase {
            branches: case.when_then_expr().to_vec(),
            otherwise: case.else_expr().cloned(),
            nullable: e.nullable(schema)?,
            data_type,
        };
        Ok(Transformed::yes(Arc::new(whole) as Arc<dyn PhysicalExpr>))
    })?;
    Ok(rewritten.data)
}

/// Costs about nothing per row and cannot fail, for any input.
fn cheap(e: &Arc<dyn PhysicalExpr>) -> bool {
    let node = e.is::<Column>()
        || e.is::<Literal>()
        || e.is::<NotExpr>()
        || e.is::<IsNullExpr>()
        || e.is::<IsNotNullExpr>()
        || e.downcast_ref::<BinaryExpr>().is_some_and(|b| {
            matches!(
                b.op(),
                Operator::Eq
                    | Operator::NotEq
                    | Operator::Lt
                    | Operator::LtEq
                    | Operator::Gt
                    | Operator::GtEq
                    | Operator::And
                    | Operator::Or
                    | Operator::IsDistinctFrom
                    | Operator::IsNotDistinctFrom
            )
        })
        || e.downcast_ref::<ScalarFunctionExpr>()
            .is_some_and(|f| f.name() == "get_field");
    node && e.children().into_iter().all(cheap)
}

/// A `CASE` evaluated whole (see the module).
#[derive(Debug, PartialEq, Eq, Hash)]
struct WholeCase {
    branches: Vec<(Arc<dyn PhysicalExpr>, Arc<dyn PhysicalExpr>)>,
    otherwise: Option<Arc<dyn PhysicalExpr>>,
    data_type: DataType,
    nullable: bool,
}

impl PhysicalExpr for WholeCase {
    fn data_type(&self, _input_schema: &Schema) -> DfResult<DataType> {
        Ok(self.data_type.clone())
    }

    fn nullable(&self, _input_schema: &Schema) -> DfResult<bool> {
        Ok(self.nullable)
    }

    fn evaluate(&self, batch: &RecordBatch) -> DfResult<ColumnarValue> {
        let rows = batch.num_rows();
        let mut result: ArrayRef = match &self.otherwise {
            Some(e) => e.evaluate(batch)?.into_array(rows)?,
            None => new_null_array(&self.data_type, rows),
        };
        // From the last branch to the first, so that the first one that holds wins; a NULL
        // condition does not hold (`zip` takes the other side).
        for (when, then) in self.branches.iter().rev() {
            let mask = when.evaluate(batch)?.into_array(rows)?;
            let mask = as_boolean_array(&mask)?;
            match (mask.true_count(), then.evaluate(batch)?) {
                (0, _) => {}
                (all, ColumnarValue::Array(then)) if all == rows => result = then,
                (_, ColumnarValue::Array(then)) => result = zip(mask, &then, &result)?,
                (_, ColumnarValue::Scalar(then)) => {
                    result = zip(mask, &ScalarValue::to_scalar(&then)?, &result)?
                }
            }
        }
        Ok(ColumnarValue::Array(result))
    }

    fn children(&self) -> Vec<&Arc<dyn PhysicalExpr>> {
        let mut children = Vec::with_capacity(2 * self.branches.len() + 1);
        for (when, then) in &self.branches {
            children.push(when);
            children.push(then);
        }
        children.extend(self.otherwise.iter());
        children
    }

    fn with_new_children(
        self: Arc<Self>,
        children: Vec<Arc<dyn PhysicalExpr>>,
    ) -> DfResult<Arc<dyn PhysicalExpr>> {
        let mut children = children.into_iter();
        let mut branches = Vec::with_capacity(self.branches.len());
        for _ in &self.branches {
            match (children.next(), children.next()) {
                (Some(when), Some(then)) => branches.push((when, then)),
                _ => {
                    return Err(datafusion::common::DataFusionError::Internal(
                        "CASE rebuilt with fewer children than it has".into(),
                    ));
                }
            }
        }
        Ok(Arc::new(WholeCase {
            branches,
            otherwise: children.next(),
            data_type: self.data_type.clone(),
            nullable: self.nullable,
        }))
    }

    fn fmt_sql(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CASE ")?;
        for (when, then) in &self.branches {
            write!(f, "WHEN ")?;
            when.fmt_sql(f)?;
            write!(f, " THEN ")?;
            then.fmt_sql(f)?;
            write!(f, " ")?;
        }
        if let Some(otherwise) = &self.otherwise {
            write!(f, "ELSE ")?;
            otherwise.fmt_sql(f)?;
            write!(f, " ")?;
        }
        write!(f, "END")
    }
}

// As DataFusion shows a `CASE`.
impl fmt::Display for WholeCase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CASE ")?;
        for (when, then) in &self.branches {
            write!(f, "WHEN {when} THEN {then} ")?;
        }
        if let Some(otherwise) = &self.otherwise {
            write!(f, "ELSE {otherwise} ")?;
        }
        write!(f, "END")
    }
}

#[cfg(test)]
#[path = "case_tests.rs"]
mod tests;
