//! Views as DataFusion tables: a scan reads the view's rows at its newest complete epoch.

use std::sync::Arc;

use async_trait::async_trait;
use streams_core::arrow::datatypes::SchemaRef;
use streams_core::datafusion::catalog::{SchemaProvider, Session};
use streams_core::datafusion::datasource::{MemTable, TableProvider, TableType};
use streams_core::datafusion::error::{DataFusionError, Result as DfResult};
use streams_core::datafusion::logical_expr::Expr;
use streams_core::datafusion::physical_plan::ExecutionPlan;

use crate::view::{View, ViewCatalog};

/// One view as a table.
#[derive(Debug)]
pub struct ViewTable {
    view: Arc<View>,
}

impl ViewTable {
    /// The table of `view`.
    pub fn new(view: Arc<View>) -> Self {
        ViewTable { view }
    }
}

#[async_trait]
impl TableProvider for ViewTable {
    fn schema(&self) -> SchemaRef {
        self.view.schema()
    }

    fn table_type(&self) -> TableType {
        // Listed by psql's `\dt` with the tables: to a client, a view's rows are a table.
        TableType::Base
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        let snapshot = crate::session::pinned_snapshot(&self.view);
        let table = MemTable::try_new(self.view.schema(), vec![vec![snapshot.batch]])?;
        table.scan(state, projection, filters, limit).await
    }
}

/// The views of a catalog as a schema (`public`), looked up when a query names them, so
/// views that jobs create later are there too.
#[derive(Debug)]
pub struct ViewSchema {
    catalog: Arc<ViewCatalog>,
}

impl ViewSchema {
    /// The views of `catalog`.
    pub fn new(catalog: Arc<ViewCatalog>) -> Self {
        ViewSchema { catalog }
    }
}

#[async_trait]
impl SchemaProvider for ViewSchema {
    fn table_names(&self) -> Vec<String> {
        self.catalog
            .list()
            .iter()
            .map(|v| v.name().to_string())
            .collect()
    }

    async fn table(&self, name: &str) -> DfResult<Option<Arc<dyn TableProvider>>> {
        Ok(self
            .catalog
            .get(name)
            .map(|v| Arc::new(ViewTable::new(v)) as Arc<dyn TableProvider>))
    }

    fn register_table(
        &self,
        name: String,
        _table: Arc<dyn TableProvider>,
    ) -> DfResult<Option<Arc<dyn TableProvider>>> {
        Err(DataFusionError::Plan(format!(
            "cannot create table `{name}`: tables here are the materialized views of running jobs"
        )))
    }

    fn table_exist(&self, name: &str) -> bool {
        self.catalog.get(name).is_some()
    }
}
