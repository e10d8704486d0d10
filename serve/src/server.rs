//! The PostgreSQL-wire endpoint (`datafusion-postgres` over `pgwire`): `psql`, drivers and BI
//! tools query the materialized views with DataFusion SQL. Besides queries it answers `SHOW
//! JOBS`, `SHOW MATERIALIZED VIEWS`, `DESCRIBE view` and the `pg_catalog` queries clients send
//! (`\d`, `\dt`). Sessions are read-only: statements that would change anything are refused
//! with SQLSTATE 25006.

use std::net::SocketAddr;
use std::sync::{Arc, RwLock};

use async_trait::async_trait;
use datafusion_postgres::arrow_pg::datatypes::df::encode_dataframe;
use datafusion_postgres::datafusion_pg_catalog::pg_catalog::context::EmptyContextProvider;
use datafusion_postgres::datafusion_pg_catalog::setup_pg_catalog;
use datafusion_postgres::hooks::cursor::CursorStatementHook;
use datafusion_postgres::hooks::set_show::SetShowHook;
use datafusion_postgres::hooks::transactions::TransactionStatementHook;
use datafusion_postgres::hooks::{HookClient, QueryHook};
use datafusion_postgres::pgwire::api::ClientInfo;
use datafusion_postgres::pgwire::api::portal::Format;
use datafusion_postgres::pgwire::api::results::Response;
use datafusion_postgres::pgwire::error::{ErrorInfo, PgWireError, PgWireResult};
use datafusion_postgres::{DfSessionService, ServerOptions};
use streams_core::arrow::array::{ArrayRef, StringArray, UInt64Array};
use streams_core::arrow::datatypes::{DataType, Field, Schema};
use streams_core::arrow::record_batch::RecordBatch;
use streams_core::datafusion::common::ParamValues;
use streams_core::datafusion::logical_expr::LogicalPlan;
use streams_core::datafusion::prelude::{SessionConfig, SessionContext};
use streams_core::datafusion::sql::sqlparser::ast::Statement;

use crate::auth::{Credentials, Handlers};
use crate::provider::ViewSchema;
use crate::session::{Access, Service};
use crate::view::ViewCatalog;
use crate::{Error, Result};

/// What `SHOW JOBS` lists: each job's name, what it writes, and its state.
#[derive(Debug, Default)]
pub struct JobList {
    jobs: RwLock<Vec<(String, String, String)>>,
}

impl JobList {
    /// An empty list.
    pub fn new() -> Arc<Self> {
        Arc::new(JobList::default())
    }

    /// Adds job `name` (or changes it): `kind` says what it writes, `status` how it is.
    pub fn set(&self, name: &str, kind: &str, status: &str) {
        let mut jobs = self.jobs.write().unwrap_or_else(|p| p.into_inner());
        match jobs.iter_mut().find(|(n, _, _)| n == name) {
            Some(j) => {
                j.1 = kind.to_string();
                j.2 = status.to_string();
            }
            None => jobs.push((name.to_string(), kind.to_string(), status.to_string())),
        }
    }

    /// Forgets job `name`.
    pub fn remove(&self, name: &str) {
        let mut jobs = self.jobs.write().unwrap_or_else(|p| p.into_inner());
        jobs.retain(|(n, _, _)| n != name);
    }

    fn batch(&self) -> std::result::Result<RecordBatch, streams_core::arrow::error::ArrowError> {
        let jobs = self.jobs.read().unwrap_or_else(|p| p.into_inner());
        let column = |i: usize| -> ArrayRef {
            Arc::new(StringArray::from_iter_values(jobs.iter().map(
                |j| match i {
                    0 => j.0.as_str(),
                    1 => j.1.as_str(),
                    _ => j.2.as_str(),
                },
            )))
        };
        RecordBatch::try_new(
            Arc::new(Schema::new(vec![
                Field::new("name", DataType::Utf8, false),
                Field::new("kind", DataType::Utf8, false),
                Field::new("status", DataType::Utf8, false),
            ])),
            vec![column(0), column(1), column(2)],
        )
    }
}

/// Where and for whom the endpoint serves.
#[derive(Clone, Debug)]
pub struct ServeOptions {
    /// The address to listen on.
    pub listen: SocketAddr,
    /// What clients must authenticate with; without, everyone is let in.
    pub credentials: Option<Credentials>,
    /// Who may run DDL, and what runs it.
    pub access: Access,
}

/// Serves `views` (and `jobs` for `SHOW JOBS`) until the process ends.
pub async fn serve(
    views: Arc<ViewCatalog>,
    jobs: Arc<JobList>,
    options: ServeOptions,
) -> Result<()> {
    let ServeOptions {
        listen,
        credentials,
        access,
    } = options;
    let ctx = Arc::new(context(Arc::clone(&views))?);
    let hooks: Vec<Arc<dyn QueryHook>> = vec![
        Arc::new(RstreamsHook { views, jobs }),
        Arc::new(CursorStatementHook),
        Arc::new(SetShowHook),
        Arc::new(TransactionStatementHook),
    ];
    let handlers = Arc::new(Handlers {
        service: Arc::new(Service::new(
            DfSessionService::new_with_hooks(ctx, hooks),
            access,
        )),
        credentials,
    });
    let options = ServerOptions::new()
        .with_host(listen.ip().to_string())
        .with_port(listen.port());
    datafusion_postgres::serve_with_handlers(handlers, &options)
        .await
        .map_err(|e| Error::Serve(format!("on {listen}: {e}")))
}

/// The endpoint on threads of its own: jobs keep the job runtime's workers busy, and a query
/// waiting for one of them would wait for a job's batch to finish (hundreds of milliseconds
/// under load). On its own runtime, the operating system shares the cores between both.
#[derive(Debug)]
pub struct Endpoint {
    runtime: Option<tokio::runtime::Runtime>,
    task: tokio::task::JoinHandle<Result<()>>,
}

impl Endpoint {
    /// Starts [`serve`] on `threads` threads of its own.
    pub fn start(
        views: Arc<ViewCatalog>,
        jobs: Arc<JobList>,
        options: ServeOptions,
        threads: usize,
    ) -> Result<Self> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads.max(1))
            .thread_name("rstreams-pg")
            .enable_all()
            .build()
            .map_err(|e| Error::Serve(format!("cannot start its threads: {e}")))?;
        let task = runtime.spawn(serve(views, jobs, options));
        Ok(Endpoint {
            runtime: Some(runtime),
            task,
        })
    }

    /// Waits until the endpoint stops (it serves until the process ends unless it fails).
    pub async fn wait(&mut self) -> Result<()> {
        match (&mut self.task).await {
            Ok(r) => r,
            Err(e) => Err(Error::Serve(format!("the endpoint failed: {e}"))),
        }
    }
}

impl Drop for Endpoint {
    fn drop(&mut self) {
        // Dropped from async code, where a runtime may not block to shut down.
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

/// The session every connection queries: views in `public`, and `pg_catalog`.
pub fn context(views: Arc<ViewCatalog>) -> Result<SessionContext> {
    let config = SessionConfig::new()
        .with_information_schema(true)
        .with_default_catalog_and_schema("datafusion", "public");
    let ctx = SessionContext::new_with_config(config);
    let catalog = ctx
        .catalog("datafusion")
        .ok_or_else(|| Error::Serve("no default catalog".into()))?;
    catalog
        .register_schema("public", Arc::new(ViewSchema::new(views)))
        .map_err(|e| Error::Serve(e.to_string()))?;
    setup_pg_catalog(&ctx, "datafusion", EmptyContextProvider)
        .map_err(|e| Error::Serve(e.to_string()))?;
    Ok(ctx)
}

pub(crate) fn user_error(code: &str, message: String) -> PgWireError {
    PgWireError::UserError(Box::new(ErrorInfo::new(
        "ERROR".to_string(),
        code.to_string(),
        message,
    )))
}

/// Statements a read-only session refuses, as SQLSTATE 25006 (read_only_sql_transaction).
fn refuse_writes(statement: &Statement) -> Option<PgWireError> {
    let what = match statement {
        Statement::Insert(_) => "INSERT",
        Statement::Update { .. } => "UPDATE",
        Statement::Delete(_) => "DELETE",
        Statement::Merge { .. } => "MERGE",
        Statement::CreateTable(_) => "CREATE TABLE",
        Statement::CreateView(_) => "CREATE VIEW",
        Statement::CreateIndex(_) => "CREATE INDEX",
        Statement::CreateSchema { .. } => "CREATE SCHEMA",
        Statement::CreateDatabase { .. } => "CREATE DATABASE",
        Statement::CreateFunction(_) => "CREATE FUNCTION",
        Statement::Drop { .. } => "DROP",
        Statement::AlterTable(_) => "ALTER TABLE",
        Statement::AlterView { .. } => "ALTER VIEW",
        Statement::Truncate(_) => "TRUNCATE",
        Statement::Copy { .. } => "COPY",
        Statement::Grant(_) => "GRANT",
        Statement::Revoke(_) => "REVOKE",
        _ => return None,
    };
    Some(user_error(
        "25006",
        format!("{what} is not allowed: sessions are read-only (the views are kept by jobs)"),
    ))
}

/// `SHOW JOBS`, `SHOW MATERIALIZED VIEWS` and the read-only rule.
struct RstreamsHook {
    views: Arc<ViewCatalog>,
    jobs: Arc<JobList>,
}

impl RstreamsHook {
    fn views_batch(
        &self,
    ) -> std::result::Result<RecordBatch, streams_core::arrow::error::ArrowError> {
        let views = self.views.list();
        let snapshots: Vec<_> = views.iter().map(|v| v.snapshot()).collect();
        RecordBatch::try_new(
            Arc::new(Schema::new(vec![
                Field::new("name", DataType::Utf8, false),
                Field::new("columns", DataType::Utf8, false),
                Field::new("epoch", DataType::UInt64, false),
                Field::new("rows", DataType::UInt64, false),
                Field::new("retention", DataType::Utf8, true),
            ])),
            vec![
                Arc::new(StringArray::from_iter_values(
                    views.iter().map(|v| v.name()),
                )),
                Arc::new(StringArray::from_iter_values(views.iter().map(|v| {
                    v.schema()
                        .fields()
                        .iter()
                        .map(|f| format!("{} {}", f.name(), f.data_type()))
                        .collect::<Vec<_>>()
                        .join(", ")
                }))),
                Arc::new(UInt64Array::from_iter_values(
                    snapshots.iter().map(|s| s.epoch),
                )),
                Arc::new(UInt64Array::from_iter_values(
                    snapshots.iter().map(|s| s.batch.num_rows() as u64),
                )),
                Arc::new(StringArray::from_iter(views.iter().map(|v| {
                    v.retention()
                        .map(|d| humantime::format_duration(d).to_string())
                }))),
            ],
        )
    }

    async fn respond(
        &self,
        ctx: &SessionContext,
        batch: std::result::Result<RecordBatch, streams_core::arrow::error::ArrowError>,
    ) -> PgWireResult<Response> {
        let batch = batch.map_err(|e| user_error("XX000", e.to_string()))?;
        let df = ctx
            .read_batch(batch)
            .map_err(|e| user_error("XX000", e.to_string()))?;
        Ok(Response::Query(
            encode_dataframe(df, &Format::UnifiedText, None).await?,
        ))
    }
}

fn show_words(statement: &Statement) -> Option<String> {
    let Statement::ShowVariable { variable } = statement else {
        return None;
    };
    Some(
        variable
            .iter()
            .map(|i| i.value.to_uppercase())
            .collect::<Vec<_>>()
            .join(" "),
    )
}

#[async_trait]
impl QueryHook for RstreamsHook {
    async fn handle_simple_query(
        &self,
        statement: &Statement,
        ctx: &SessionContext,
        _client: &mut dyn HookClient,
    ) -> Option<PgWireResult<Response>> {
        if let Some(e) = refuse_writes(statement) {
            return Some(Err(e));
        }
        if let Statement::ShowViews { .. } = statement {
            return Some(self.respond(ctx, self.views_batch()).await);
        }
        match show_words(statement)?.as_str() {
            "JOBS" => Some(self.respond(ctx, self.jobs.batch()).await),
            "MATERIALIZED VIEWS" => Some(self.respond(ctx, self.views_batch()).await),
            _ => None,
        }
    }

    async fn handle_extended_parse_query(
        &self,
        statement: &Statement,
        _ctx: &SessionContext,
        _client: &(dyn ClientInfo + Send + Sync),
    ) -> Option<PgWireResult<LogicalPlan>> {
        refuse_writes(statement).map(Err)
    }

    async fn handle_extended_query(
        &self,
        _statement: &Statement,
        _plan: &LogicalPlan,
        _params: &ParamValues,
        _ctx: &SessionContext,
        _client: &mut dyn HookClient,
    ) -> Option<PgWireResult<Response>> {
        None
    }
}
