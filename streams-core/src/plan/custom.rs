//! A plan node for operators written outside the planner: the DSL's typed `map`, `filter_rows`
//! and `flat_map` become an [`OperatorNode`], which compiles to one stateless operator chained
//! after its input. Its output columns are whatever the operator says they are.

use std::cmp::Ordering;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

use datafusion::common::DFSchemaRef;
use datafusion::error::Result as DfResult;
use datafusion::logical_expr::{Expr, LogicalPlan, UserDefinedLogicalNodeCore};

use super::nodes::exact_inputs;
use crate::operator::OperatorFactory;

/// An operator factory compared by identity, so plan nodes can be `Eq` and `Hash`.
#[derive(Clone)]
pub struct OperatorRef(pub Arc<dyn OperatorFactory>);

impl fmt::Debug for OperatorRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("OperatorRef")
    }
}

impl PartialEq for OperatorRef {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl Eq for OperatorRef {}

impl Hash for OperatorRef {
    fn hash<H: Hasher>(&self, state: &mut H) {
        (Arc::as_ptr(&self.0) as *const () as usize).hash(state);
    }
}

/// A stateless operator over its input's batches (one subtask per input subtask).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct OperatorNode {
    /// Input.
    pub input: LogicalPlan,
    /// Kind, as the topology shows it (`map`, `flat map`, ...).
    pub kind: String,
    /// What it does, for EXPLAIN.
    pub detail: String,
    /// Makes the operator's subtasks.
    pub factory: OperatorRef,
    /// Its output columns.
    pub schema: DFSchemaRef,
}

impl PartialOrd for OperatorNode {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        (&self.kind, &self.detail).partial_cmp(&(&other.kind, &other.detail))
    }
}

impl UserDefinedLogicalNodeCore for OperatorNode {
    fn name(&self) -> &str {
        "Operator"
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
    // The operator reads whole rows: every input column is needed (the default).
    fn fmt_for_explain(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "Operator: {} {}", self.kind, self.detail)
    }
    fn with_exprs_and_inputs(&self, _exprs: Vec<Expr>, inputs: Vec<LogicalPlan>) -> DfResult<Self> {
        Ok(OperatorNode {
            input: exact_inputs("Operator", inputs)?,
            ..self.clone()
        })
    }
}
