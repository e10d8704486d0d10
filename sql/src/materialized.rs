//! `CREATE MATERIALIZED VIEW name [WITH (...)] AS query`: a job that keeps the query's result
//! for analysts. The view is a table of connector `view` (which the program registers: the
//! binary's `rstreams run`, with the PostgreSQL endpoint) whose columns are the query's, and
//! the statement is the job `INSERT INTO name query`.

use std::sync::Arc;

use streams_core::arrow::datatypes::{Schema, SchemaRef};
use streams_core::changelog::is_update_stream;
use streams_core::connector::Options;
use streams_core::datafusion::sql::sqlparser::ast::Statement;

use super::{Outcome, SqlEngine, plan_err};
use crate::Result;
use crate::catalog::TableDef;
use crate::parser::CreateMaterializedView;

/// The connector that keeps views.
pub(super) const VIEW_CONNECTOR: &str = "view";

impl SqlEngine {
    pub(super) fn create_materialized_view(
        &mut self,
        v: CreateMaterializedView,
    ) -> Result<Outcome> {
        let name = v.name.to_string();
        if self.catalog.tables.contains_key(&name) || self.catalog.views.contains_key(&name) {
            if v.if_not_exists {
                return Ok(Outcome::Created(name));
            }
            return Err(plan_err(format!("`{name}` already exists")));
        }
        let plan = self.query(Statement::Query(v.query))?;
        let produced = plan.schema().as_arrow();
        let width = produced.fields().len() - usize::from(is_update_stream(produced));
        let mut names = std::collections::HashSet::new();
        for f in &produced.fields()[..width] {
            if !names.insert(f.name().as_str()) {
                return Err(plan_err(format!(
                    "materialized view `{name}`: two columns are called `{}`; name them apart \
                     with AS",
                    f.name()
                )));
            }
        }
        let schema: SchemaRef = Arc::new(Schema::new(produced.fields()[..width].to_vec()));
        let options = Options::new(v.options);
        self.registry
            .resolve(&name, VIEW_CONNECTOR, &options)
            .map_err(|e| {
                if e.to_string().contains("unknown connector") {
                    plan_err(format!(
                        "materialized view `{name}`: this program keeps no materialized views \
                         (`rstreams run` does)"
                    ))
                } else {
                    plan_err(e.to_string())
                }
            })?;
        self.catalog.tables.insert(
            name.clone(),
            TableDef {
                name: name.clone(),
                physical: Arc::clone(&schema),
                schema,
                computed: Vec::new(),
                watermark: None,
                connector: VIEW_CONNECTOR.to_string(),
                options,
            },
        );
        Ok(Outcome::Insert(self.sink_plan(&name, plan)?))
    }
}
