//! A SQL session: runs statements against a catalog, turning DDL into catalog entries and
//! queries into streaming plans (DataFusion's planner, then [`crate::rewrite`]).

use std::sync::Arc;
use std::time::Duration;

use streams_core::arrow::array::{ArrayRef, RecordBatch, StringArray};
use streams_core::arrow::datatypes::{Field, Schema, SchemaRef};
use streams_core::connector::{ConnectorRegistry, Options};
use streams_core::datafusion::common::{Column, DFSchema, ScalarValue};
use streams_core::datafusion::execution::FunctionRegistry;
use streams_core::datafusion::execution::SessionState;
use streams_core::datafusion::execution::session_state::SessionStateBuilder;
use streams_core::datafusion::logical_expr::{
    AggregateUDF, Expr, ExprSchemable, LogicalPlan, ScalarUDF, cast,
};
use streams_core::datafusion::prelude::SessionConfig;
use streams_core::datafusion::sql::planner::{PlannerContext, SqlToRel};
use streams_core::datafusion::sql::sqlparser::ast::{
    BinaryOperator, Expr as SqlExpr, ObjectType, Statement, TableObject,
};
use streams_core::plan::{JobConfig, StreamPlanBuilder, compile};
use streams_core::runtime::JobGraph;

use crate::catalog::{Catalog, Provider, TableDef};
use crate::parser::{CreateTable, StreamStatement, parse_script};
use crate::{Error, Result};

#[path = "materialized.rs"]
mod materialized;

/// What a statement did.
#[derive(Debug)]
pub enum Outcome {
    /// `CREATE TABLE` / `CREATE VIEW`.
    Created(String),
    /// `DROP TABLE` / `DROP VIEW`.
    Dropped(String),
    /// `SET 'key' = 'value'`.
    Set(String, String),
    /// `INSERT INTO`: a job plan ending in the sink; [`SqlEngine::compile`] makes it runnable.
    Insert(LogicalPlan),
    /// `EXECUTE STATEMENT SET`: job plans, each ending in its sink, to run as one job
    /// ([`SqlEngine::launch_set`]).
    StatementSet(Vec<LogicalPlan>),
    /// A plain `SELECT`: the plan whose rows go back to the caller.
    Query(LogicalPlan),
    /// `EXPLAIN`: the logical plan and the topology.
    Explain(String),
    /// `SHOW TABLES`, `DESCRIBE`: a small result table.
    Rows(RecordBatch),
}

/// A SQL session over a connector registry.
#[derive(Debug)]
pub struct SqlEngine {
    registry: ConnectorRegistry,
    catalog: Catalog,
    state: SessionState,
    config: JobConfig,
    idle_timeout: Option<Duration>,
    pub(crate) checkpoints: crate::checkpoints::CheckpointSettings,
    /// Sources of the statement being planned, by table (see `Rewriter::sources`); emptied
    /// before each statement, so a later job gets sources made for it (a file source lists
    /// its files when made).
    sources:
        std::sync::Mutex<std::collections::HashMap<String, Arc<dyn streams_core::SourceFactory>>>,
}

fn plan_err(m: impl Into<String>) -> Error {
    Error::Plan(m.into())
}

fn df(e: streams_core::datafusion::error::DataFusionError) -> Error {
    // DataFusion's messages already name the column or function; drop its prefixes.
    let text = e.strip_backtrace();
    plan_err(
        text.trim_start_matches("Error during planning: ")
            .trim_start_matches("Schema error: ")
            .to_string(),
    )
}

impl SqlEngine {
    /// A session with no tables, resolving `WITH ('connector' = ...)` through `registry`.
    pub fn new(registry: ConnectorRegistry) -> Self {
        let mut config = SessionConfig::new();
        let parser = &mut config.options_mut().sql_parser;
        // Flink's identifiers are case-sensitive (`dateTime` is not `datetime`), and its
        // decimal literals are exact DECIMALs.
        parser.enable_ident_normalization = false;
        parser.parse_float_as_decimal = true;
        let mut state = SessionStateBuilder::new()
            .with_config(config)
            .with_default_features()
            .build();
        for f in crate::functions::flink_functions() {
            // Replaces DataFusion's `date_format` (an alias of `to_char`, with chrono
            // patterns) by Flink's, with Java patterns.
            let _ = state.register_udf(Arc::new(f));
        }
        SqlEngine {
            registry,
            catalog: Catalog::default(),
            state,
            config: JobConfig::default(),
            idle_timeout: None,
            checkpoints: Default::default(),
            sources: Default::default(),
        }
    }

    /// Makes a Rust scalar function callable from SQL.
    pub fn register_udf(&mut self, f: ScalarUDF) -> Result<()> {
        self.state.register_udf(Arc::new(f)).map_err(df)?;
        Ok(())
    }

    /// Makes a Rust aggregate function callable from SQL (and usable in windows).
    pub fn register_udaf(&mut self, f: AggregateUDF) -> Result<()> {
        self.state.register_udaf(Arc::new(f)).map_err(df)?;
        Ok(())
    }

    /// The stream of table or view `name`, for a DSL pipeline to continue
    /// (`Pipeline::stream`): a table's source with its computed columns and watermark, or a
    /// view's plan, with columns qualified by `name`.
    pub fn table(&self, name: &str) -> Result<LogicalPlan> {
        self.sources
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clear();
        let quoted = format!("SELECT * FROM \"{}\"", name.replace('"', "\"\""));
        let mut statements = parse_script(&quoted)?;
        match statements.pop() {
            Some(StreamStatement::Sql(s, _)) => self.query(*s),
            _ => Err(plan_err(format!("`{name}` is not a table name"))),
        }
    }

    /// Makes `plan` (a DSL stream's, say) a view that SQL can query as `name`.
    pub fn register_view(&mut self, name: &str, plan: LogicalPlan) -> Result<()> {
        if self.catalog.tables.contains_key(name) || self.catalog.views.contains_key(name) {
            return Err(plan_err(format!("`{name}` already exists")));
        }
        self.catalog.views.insert(name.to_string(), plan);
        Ok(())
    }

    /// A scalar function SQL can call (built in or registered), to call from the DSL too.
    pub fn udf(&self, name: &str) -> Result<Arc<ScalarUDF>> {
        self.state.udf(name).map_err(df)
    }

    /// An aggregate function SQL can call, to use in the DSL too.
    pub fn udaf(&self, name: &str) -> Result<Arc<AggregateUDF>> {
        self.state.udaf(name).map_err(df)
    }

    /// Forgets table `name` (a program dropping what a stopped job wrote); whether it was
    /// there.
    pub fn forget_table(&mut self, name: &str) -> bool {
        self.catalog.tables.remove(name).is_some()
    }

    /// The catalog.
    pub fn catalog(&self) -> &Catalog {
        &self.catalog
    }

    /// Job options set so far.
    pub fn config(&self) -> &JobConfig {
        &self.config
    }

    /// Runs a script, statement by statement; stops at the first error, which names the
    /// statement's line.
    pub fn execute(&mut self, sql: &str) -> Result<Vec<Outcome>> {
        let mut out = Vec::new();
        for statement in parse_script(sql)? {
            self.sources
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clear();
            let (line, result) = match statement {
                StreamStatement::CreateTable(t) => (t.location.line, self.create_table(*t)),
                StreamStatement::CreateMaterializedView(v) => {
                    (v.location.line, self.create_materialized_view(*v))
                }
                StreamStatement::Set {
                    key,
                    value,
                    location,
                } => (location.line, self.set(key, value)),
                StreamStatement::Sql(s, location) => (location.line, self.statement(*s)),
                StreamStatement::StatementSet {
                    statements,
                    location,
                } => (location.line, self.statement_set(statements)),
            };
            out.push(result.map_err(|e| match e {
                Error::Plan(m) => plan_err(format!("statement at line {line}: {m}")),
                other => other,
            })?);
        }
        Ok(out)
    }

    /// The plans of a statement set's `INSERT`s and views, to run as one job.
    fn statement_set(&mut self, statements: Vec<StreamStatement>) -> Result<Outcome> {
        let mut plans = Vec::with_capacity(statements.len());
        for statement in statements {
            let outcome = match statement {
                StreamStatement::CreateMaterializedView(v) => self.create_materialized_view(*v),
                StreamStatement::Sql(s, _) => self.statement(*s),
                _ => Err(plan_err(
                    "a STATEMENT SET holds INSERT INTO and CREATE MATERIALIZED VIEW statements only",
                )),
            }?;
            match outcome {
                Outcome::Insert(plan) => plans.push(plan),
                // `CREATE MATERIALIZED VIEW IF NOT EXISTS` of a view that exists.
                Outcome::Created(_) => {}
                other => return Err(plan_err(format!("a STATEMENT SET cannot run {other:?}"))),
            }
        }
        if plans.is_empty() {
            return Err(plan_err("the STATEMENT SET has nothing to run"));
        }
        Ok(Outcome::StatementSet(plans))
    }

    /// Compiles `INSERT` plans into one job with the session's options.
    pub fn compile(&self, plans: &[LogicalPlan]) -> Result<JobGraph> {
        Ok(compile(plans, &self.config)?)
    }

    fn set(&mut self, key: String, value: String) -> Result<Outcome> {
        let duration = |v: &str| {
            humantime::parse_duration(v.trim())
                .map_err(|e| plan_err(format!("SET '{key}': '{v}' is not a duration: {e}")))
        };
        match key.as_str() {
            "parallelism.default" => {
                self.config.parallelism = value
                    .trim()
                    .parse::<usize>()
                    .ok()
                    .filter(|p| *p > 0)
                    .ok_or_else(|| {
                        plan_err(format!("SET '{key}': '{value}' is not a positive integer"))
                    })?;
            }
            "pipeline.auto-watermark-interval" => {
                self.config.watermark_interval = duration(&value)?
            }
            "table.exec.source.idle-timeout" => {
                let d = duration(&value)?;
                self.idle_timeout = (!d.is_zero()).then_some(d);
            }
            "state.cache.keys" => {
                let n = value.trim().parse::<usize>().ok().filter(|n| *n > 0);
                self.config.state_cache = Some(n.ok_or_else(|| {
                    plan_err(format!("SET '{key}': '{value}' is not a positive integer"))
                })?);
            }
            "table.exec.state.ttl" => {
                let d = duration(&value)?;
                self.config.state_ttl = (!d.is_zero()).then_some(d);
            }
            k if crate::checkpoints::KEYS.contains(&k) => self.checkpoints.set(k, &value)?,
            other => {
                let known = [
                    "parallelism.default",
                    "pipeline.auto-watermark-interval",
                    "table.exec.source.idle-timeout",
                    "table.exec.state.ttl",
                    "state.cache.keys",
                ];
                let known: Vec<&str> = known
                    .into_iter()
                    .chain(crate::checkpoints::KEYS.iter().copied())
                    .collect();
                let hint = streams_core::connector::closest(other, known.iter().copied())
                    .map(|k| format!("; did you mean '{k}'?"))
                    .unwrap_or_default();
                return Err(plan_err(format!("unknown option '{other}'{hint}")));
            }
        }
        Ok(Outcome::Set(key, value))
    }

    fn provider(&self) -> Provider<'_> {
        Provider {
            catalog: &self.catalog,
            state: &self.state,
            extra: Default::default(),
        }
    }

    fn create_table(&mut self, t: CreateTable) -> Result<Outcome> {
        let name = t.name.to_string();
        if self.catalog.tables.contains_key(&name) || self.catalog.views.contains_key(&name) {
            if t.if_not_exists {
                return Ok(Outcome::Created(name));
            }
            return Err(plan_err(format!("table `{name}` already exists")));
        }
        let provider = self.provider();
        let planner = SqlToRel::new(&provider);
        let physical = Arc::new(planner.build_schema(t.columns.clone()).map_err(df)?);
        let df_schema =
            DFSchema::try_from_qualified_schema(name.as_str(), &physical).map_err(df)?;
        let mut fields: Vec<Field> = physical
            .fields()
            .iter()
            .map(|f| f.as_ref().clone())
            .collect();
        let mut computed = Vec::new();
        for (col_name, expr) in &t.computed {
            let e = planner
                .sql_to_expr(expr.clone(), &df_schema, &mut PlannerContext::new())
                .map_err(df)?;
            let dt = e.get_type(&df_schema).map_err(df)?;
            fields.push(Field::new(&col_name.value, dt, true));
            computed.push((col_name.value.clone(), expr.clone()));
        }
        let schema: SchemaRef = Arc::new(Schema::new(fields));
        let watermark = match &t.watermark {
            None => None,
            Some(wm) => {
                let column = wm.column.value.clone();
                if schema.field_with_name(&column).is_err() {
                    return Err(plan_err(format!(
                        "table `{name}`: WATERMARK FOR `{column}`: no such column"
                    )));
                }
                Some((
                    column.clone(),
                    watermark_delay(&planner, &column, &wm.expr)?,
                ))
            }
        };
        let mut connector = None;
        let mut options = Vec::new();
        for (k, v) in t.options {
            if k == "connector" {
                connector = Some(v);
            } else {
                options.push((k, v));
            }
        }
        let connector = connector
            .ok_or_else(|| plan_err(format!("table `{name}` needs WITH ('connector' = '...')")))?;
        let options = Options::new(options);
        // Unknown connector, unknown or missing options: refused now, not when a job starts.
        self.registry.resolve(&name, &connector, &options)?;
        self.catalog.tables.insert(
            name.clone(),
            TableDef {
                name: name.clone(),
                physical,
                schema,
                computed,
                watermark,
                connector,
                options,
            },
        );
        Ok(Outcome::Created(name))
    }

    fn statement(&mut self, s: Statement) -> Result<Outcome> {
        match s {
            Statement::Query(q) => Ok(Outcome::Query(self.query(Statement::Query(q))?)),
            Statement::Insert(insert) => {
                let TableObject::TableName(target) = &insert.table else {
                    return Err(plan_err("INSERT INTO a table function is not supported"));
                };
                if !insert.columns.is_empty() {
                    return Err(plan_err(
                        "INSERT INTO t (columns) is not supported yet; select the columns in the \
                         table's order",
                    ));
                }
                let Some(source) = insert.source.clone() else {
                    return Err(plan_err("INSERT needs a query (INSERT INTO t SELECT ...)"));
                };
                let plan = self.query(Statement::Query(source))?;
                Ok(Outcome::Insert(self.sink_plan(&target.to_string(), plan)?))
            }
            Statement::CreateView(v) => {
                let name = v.name.to_string();
                if self.catalog.tables.contains_key(&name)
                    || (self.catalog.views.contains_key(&name) && !v.or_replace)
                {
                    return Err(plan_err(format!("`{name}` already exists")));
                }
                let plan = self.query(Statement::Query(v.query))?;
                self.catalog.views.insert(name.clone(), plan);
                Ok(Outcome::Created(name))
            }
            Statement::Drop {
                object_type,
                if_exists,
                names,
                ..
            } => {
                let mut dropped = Vec::new();
                for n in names {
                    let n = n.to_string();
                    let removed = match object_type {
                        ObjectType::Table => self.catalog.tables.remove(&n).is_some(),
                        ObjectType::View => self.catalog.views.remove(&n).is_some(),
                        ObjectType::MaterializedView => match self.catalog.tables.get(&n) {
                            Some(t) if t.connector == materialized::VIEW_CONNECTOR => {
                                self.catalog.tables.remove(&n).is_some()
                            }
                            Some(_) => {
                                return Err(plan_err(format!(
                                    "`{n}` is a table, not a materialized view: DROP TABLE it"
                                )));
                            }
                            None => false,
                        },
                        other => return Err(plan_err(format!("DROP {other} is not supported"))),
                    };
                    if !removed && !if_exists {
                        return Err(plan_err(format!("{object_type} `{n}` does not exist")));
                    }
                    dropped.push(n);
                }
                Ok(Outcome::Dropped(dropped.join(", ")))
            }
            Statement::ShowTables { .. } => {
                let names = self.catalog.names();
                let batch = RecordBatch::try_new(
                    Arc::new(Schema::new(vec![Field::new(
                        "table_name",
                        streams_core::arrow::datatypes::DataType::Utf8,
                        false,
                    )])),
                    vec![Arc::new(StringArray::from(names)) as ArrayRef],
                )
                .map_err(|e| plan_err(e.to_string()))?;
                Ok(Outcome::Rows(batch))
            }
            Statement::ExplainTable { table_name, .. } => self.describe(&table_name.to_string()),
            Statement::Explain { statement, .. } => self.explain(*statement),
            other => Err(plan_err(format!(
                "this statement is not supported in a streaming session: {}",
                first_words(&other.to_string())
            ))),
        }
    }

    /// Plans a query and turns scans of stream tables into the streaming plan.
    fn query(&self, s: Statement) -> Result<LogicalPlan> {
        let base = self.provider();
        let base_planner = SqlToRel::new(&base);
        let interval = |e: &SqlExpr| interval_of(&base_planner, e);
        let (mut s, windows) = crate::windows::extract(s, &self.catalog, &interval)?;
        crate::names::name_field_accesses(&mut s);
        let mut provider = self.provider();
        for w in &windows {
            provider.extra.insert(w.name.clone(), Arc::clone(&w.schema));
        }
        let planner = SqlToRel::new(&provider);
        let plan = planner.sql_statement_to_plan(s).map_err(df)?;
        crate::rewrite::Rewriter {
            catalog: &self.catalog,
            registry: &self.registry,
            windows: &windows,
            idle_timeout: self.idle_timeout,
            provider: &provider,
            sources: &self.sources,
        }
        .streaming(plan)
    }

    /// Ends `plan` in the sink table `target`, casting columns to its types by position.
    fn sink_plan(&self, target: &str, plan: LogicalPlan) -> Result<LogicalPlan> {
        let Some(table) = self.catalog.table(target) else {
            let hint = streams_core::connector::closest(
                target,
                self.catalog.tables.keys().map(String::as_str),
            )
            .map(|c| format!("; did you mean `{c}`?"))
            .unwrap_or_default();
            return Err(plan_err(format!(
                "sink table `{target}` does not exist{hint}"
            )));
        };
        let changes = streams_core::changelog::is_update_stream(plan.schema().as_arrow());
        let produced = plan.schema().fields().len() - usize::from(changes);
        let wanted = table.physical.fields().len();
        if produced != wanted {
            return Err(plan_err(format!(
                "INSERT INTO `{target}`: the query produces {produced} columns, the table has {wanted} ({})",
                table
                    .physical
                    .fields()
                    .iter()
                    .map(|f| f.name().as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
        // Columns go to the table's columns by position, cast and renamed where they differ.
        let mut exprs: Vec<Expr> = plan
            .schema()
            .iter()
            .zip(table.physical.fields())
            .map(|((q, produced), f)| {
                let mut e = Expr::Column(Column::from((q, produced)));
                if produced.data_type() != f.data_type() {
                    e = cast(e, f.data_type().clone());
                }
                if produced.name() != f.name() || matches!(e, Expr::Cast(_)) {
                    e = e.alias(f.name());
                }
                e
            })
            .collect();
        if changes {
            exprs.push(Expr::Column(
                streams_core::datafusion::common::Column::new_unqualified(
                    streams_core::changelog::OP_COLUMN,
                ),
            ));
        }
        let connector = self
            .registry
            .resolve(target, &table.connector, &table.options)?;
        let sink = connector.sink(target, Arc::clone(&table.physical), &table.options)?;
        Ok(StreamPlanBuilder::from_plan(plan)
            .project(exprs)?
            .sink(target, sink)?)
    }

    fn describe(&self, name: &str) -> Result<Outcome> {
        let (schema, wm, computed): (SchemaRef, Option<&(String, Duration)>, Vec<&str>) =
            match (self.catalog.tables.get(name), self.catalog.views.get(name)) {
                (Some(t), _) => (
                    Arc::clone(&t.schema),
                    t.watermark.as_ref(),
                    t.computed.iter().map(|c| c.0.as_str()).collect(),
                ),
                (None, Some(v)) => (Arc::new(v.schema().as_arrow().clone()), None, Vec::new()),
                (None, None) => return Err(plan_err(format!("`{name}` does not exist"))),
            };
        let mut names = Vec::new();
        let mut types = Vec::new();
        let mut nulls = Vec::new();
        let mut extras = Vec::new();
        for f in schema.fields() {
            names.push(f.name().clone());
            types.push(f.data_type().to_string());
            nulls.push(if f.is_nullable() { "YES" } else { "NO" }.to_string());
            let mut extra = Vec::new();
            if computed.contains(&f.name().as_str()) {
                extra.push("computed".to_string());
            }
            if let Some((c, d)) = wm
                && c == f.name()
            {
                extra.push(format!("WATERMARK {c} - {} ms", d.as_millis()));
            }
            extras.push(extra.join(", "));
        }
        let s = |n: &str| Field::new(n, streams_core::arrow::datatypes::DataType::Utf8, false);
        let batch = RecordBatch::try_new(
            Arc::new(Schema::new(vec![
                s("column_name"),
                s("data_type"),
                s("nullable"),
                s("extra"),
            ])),
            vec![
                Arc::new(StringArray::from(names)) as ArrayRef,
                Arc::new(StringArray::from(types)),
                Arc::new(StringArray::from(nulls)),
                Arc::new(StringArray::from(extras)),
            ],
        )
        .map_err(|e| plan_err(e.to_string()))?;
        Ok(Outcome::Rows(batch))
    }

    fn explain(&mut self, s: Statement) -> Result<Outcome> {
        let plan = match s {
            Statement::Insert(_) => match self.statement(s)? {
                Outcome::Insert(p) => p,
                _ => return Err(plan_err("EXPLAIN of this statement is not supported")),
            },
            Statement::Query(_) => {
                let q = self.query(s)?;
                StreamPlanBuilder::from_plan(q).sink(
                    "(results)",
                    Arc::new(streams_core::testing::CollectSink::new()),
                )?
            }
            other => {
                return Err(plan_err(format!(
                    "EXPLAIN takes a query or an INSERT, not {}",
                    first_words(&other.to_string())
                )));
            }
        };
        Ok(Outcome::Explain(self.explain_plan(&plan)?))
    }

    /// What `EXPLAIN` prints for a job plan: the optimized logical plan and the topology.
    pub fn explain_plan(&self, plan: &LogicalPlan) -> Result<String> {
        Ok(streams_core::plan::explain_job(
            std::slice::from_ref(plan),
            &self.config,
        )?)
    }
}

fn first_words(s: &str) -> String {
    s.split_whitespace().take(3).collect::<Vec<_>>().join(" ")
}

/// The delay of `WATERMARK FOR c AS c - INTERVAL '5' SECOND` (or `AS c`, no delay).
fn watermark_delay(
    planner: &SqlToRel<'_, Provider<'_>>,
    column: &str,
    e: &SqlExpr,
) -> Result<Duration> {
    let unsupported = || {
        plan_err(format!(
            "WATERMARK FOR {column} AS {e}: only `{column}` or `{column} - INTERVAL '...' <unit>` is supported"
        ))
    };
    let is_col = |e: &SqlExpr| matches!(e, SqlExpr::Identifier(i) if i.value == column);
    if is_col(e) {
        return Ok(Duration::ZERO);
    }
    let SqlExpr::BinaryOp {
        left,
        op: BinaryOperator::Minus,
        right,
    } = e
    else {
        return Err(unsupported());
    };
    if !is_col(left) {
        return Err(unsupported());
    }
    interval_of(planner, right)
}

/// An `INTERVAL '5' SECOND` literal as a duration.
fn interval_of(planner: &SqlToRel<'_, Provider<'_>>, e: &SqlExpr) -> Result<Duration> {
    let bad = || {
        plan_err(format!(
            "{e} is not a positive INTERVAL of days, hours, minutes or seconds"
        ))
    };
    let interval = planner
        .sql_to_expr(e.clone(), &DFSchema::empty(), &mut PlannerContext::new())
        .map_err(df)?;
    match interval {
        Expr::Literal(ScalarValue::IntervalMonthDayNano(Some(v)), _)
            if v.months == 0 && v.days >= 0 && v.nanoseconds >= 0 =>
        {
            Ok(Duration::from_secs(v.days as u64 * 86_400)
                + Duration::from_nanos(v.nanoseconds as u64))
        }
        Expr::Literal(ScalarValue::IntervalDayTime(Some(v)), _)
            if v.days >= 0 && v.milliseconds >= 0 =>
        {
            Ok(Duration::from_secs(v.days as u64 * 86_400)
                + Duration::from_millis(v.milliseconds as u64))
        }
        _ => Err(bad()),
    }
}
