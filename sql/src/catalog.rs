//! Tables and views the SQL session knows, and the DataFusion context the planner resolves
//! names and functions through.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use streams_core::arrow::datatypes::{DataType, FieldRef, SchemaRef};
use streams_core::connector::Options;
use streams_core::datafusion::common::TableReference;
use streams_core::datafusion::config::ConfigOptions;
use streams_core::datafusion::error::{DataFusionError, Result as DfResult};
use streams_core::datafusion::execution::SessionState;
use streams_core::datafusion::logical_expr::planner::{ContextProvider, ExprPlanner};
use streams_core::datafusion::logical_expr::{
    AggregateUDF, HigherOrderUDF, LogicalPlan, ScalarUDF, TableSource, WindowUDF,
};
use streams_core::datafusion::sql::sqlparser::ast::Expr as SqlExpr;

/// A table declared with `CREATE TABLE`.
#[derive(Clone, Debug)]
pub struct TableDef {
    /// Name as declared.
    pub name: String,
    /// Columns the connector reads or writes.
    pub physical: SchemaRef,
    /// Physical columns, then computed ones: what queries see.
    pub schema: SchemaRef,
    /// Computed columns `name AS expr`.
    pub computed: Vec<(String, SqlExpr)>,
    /// Event-time column and allowed disorder (`WATERMARK FOR c AS c - INTERVAL ...`).
    pub watermark: Option<(String, Duration)>,
    /// The `'connector'` option.
    pub connector: String,
    /// The other `WITH` options.
    pub options: Options,
}

/// Tables and views by name.
#[derive(Clone, Debug, Default)]
pub struct Catalog {
    pub(crate) tables: BTreeMap<String, TableDef>,
    pub(crate) views: BTreeMap<String, LogicalPlan>,
}

impl Catalog {
    /// Every table and view name, sorted.
    pub fn names(&self) -> Vec<String> {
        self.tables
            .keys()
            .chain(self.views.keys())
            .cloned()
            .collect()
    }

    /// A table.
    pub fn table(&self, name: &str) -> Option<&TableDef> {
        self.tables.get(name)
    }
}

/// What a table name resolves to while planning: its columns; the rewrite after planning
/// replaces the scan by the stream's own plan.
#[derive(Debug)]
pub(crate) struct StreamTableSource {
    pub(crate) name: String,
    pub(crate) schema: SchemaRef,
}

impl TableSource for StreamTableSource {
    fn schema(&self) -> SchemaRef {
        Arc::clone(&self.schema)
    }
}

/// Resolves names for DataFusion's SQL planner: tables and views from the catalog, functions
/// from a DataFusion session (built-ins plus registered UDFs).
pub(crate) struct Provider<'a> {
    pub(crate) catalog: &'a Catalog,
    pub(crate) state: &'a SessionState,
    /// Extra relations for this statement (window table functions), by name.
    pub(crate) extra: BTreeMap<String, SchemaRef>,
}

impl ContextProvider for Provider<'_> {
    fn get_table_source(&self, name: TableReference) -> DfResult<Arc<dyn TableSource>> {
        let table = name.table();
        if let Some(schema) = self.extra.get(table) {
            return Ok(Arc::new(StreamTableSource {
                name: table.to_string(),
                schema: Arc::clone(schema),
            }));
        }
        if let Some(t) = self.catalog.tables.get(table) {
            return Ok(Arc::new(StreamTableSource {
                name: table.to_string(),
                schema: Arc::clone(&t.schema),
            }));
        }
        if let Some(v) = self.catalog.views.get(table) {
            return Ok(Arc::new(ViewSource { plan: v.clone() }));
        }
        let hint = streams_core::connector::closest(
            table,
            self.catalog
                .tables
                .keys()
                .chain(self.catalog.views.keys())
                .map(String::as_str),
        )
        .map(|c| format!("; did you mean `{c}`?"))
        .unwrap_or_default();
        Err(DataFusionError::Plan(format!(
            "table `{table}` does not exist{hint}"
        )))
    }

    fn get_expr_planners(&self) -> &[Arc<dyn ExprPlanner>] {
        self.state.expr_planners()
    }

    fn get_function_meta(&self, name: &str) -> Option<Arc<ScalarUDF>> {
        self.state.scalar_functions().get(name).cloned()
    }

    fn get_higher_order_meta(&self, name: &str) -> Option<Arc<HigherOrderUDF>> {
        self.state.higher_order_functions().get(name).cloned()
    }

    fn get_aggregate_meta(&self, name: &str) -> Option<Arc<AggregateUDF>> {
        self.state.aggregate_functions().get(name).cloned()
    }

    fn get_window_meta(&self, name: &str) -> Option<Arc<WindowUDF>> {
        self.state.window_functions().get(name).cloned()
    }

    fn get_variable_type(&self, _variable_names: &[String]) -> Option<DataType> {
        None
    }

    fn get_variable_field(&self, _variable_names: &[String]) -> Option<FieldRef> {
        None
    }

    fn options(&self) -> &ConfigOptions {
        self.state.config_options()
    }

    fn udf_names(&self) -> Vec<String> {
        self.state.scalar_functions().keys().cloned().collect()
    }

    fn higher_order_function_names(&self) -> Vec<String> {
        self.state
            .higher_order_functions()
            .keys()
            .cloned()
            .collect()
    }

    fn udaf_names(&self) -> Vec<String> {
        self.state.aggregate_functions().keys().cloned().collect()
    }

    fn udwf_names(&self) -> Vec<String> {
        self.state.window_functions().keys().cloned().collect()
    }
}

/// A view: its plan, inlined where it is used.
#[derive(Debug)]
pub(crate) struct ViewSource {
    pub(crate) plan: LogicalPlan,
}

impl TableSource for ViewSource {
    fn schema(&self) -> SchemaRef {
        Arc::new(self.plan.schema().as_arrow().clone())
    }

    fn get_logical_plan(&self) -> Option<std::borrow::Cow<'_, LogicalPlan>> {
        Some(std::borrow::Cow::Borrowed(&self.plan))
    }
}
