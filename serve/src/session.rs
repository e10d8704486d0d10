//! What happens to each statement a client sends. Statements that would change something
//! (`CREATE`, `DROP`, `INSERT`, Flink's `SET 'key' = 'value'`, ...) go to the process's
//! [`Statements`] when the session's user is allowed DDL, and are refused with SQLSTATE 25006
//! otherwise; they are told apart by their first word, before any parsing, because Flink's
//! DDL (`WATERMARK FOR`, `WITH (...)`) is not PostgreSQL's. Queries go to DataFusion, with
//! every view pinned for the whole query: a view read twice in one query (a self-join, a
//! subquery) is read at one epoch.

use std::collections::HashMap;
use std::fmt::Debug;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use datafusion_postgres::DfSessionService;
use datafusion_postgres::pgwire::api::portal::Portal;
use datafusion_postgres::pgwire::api::query::{ExtendedQueryHandler, SimpleQueryHandler};
use datafusion_postgres::pgwire::api::results::{FieldInfo, Response, Tag};
use datafusion_postgres::pgwire::api::stmt::QueryParser;
use datafusion_postgres::pgwire::api::store::PortalStore;
use datafusion_postgres::pgwire::api::{ClientInfo, ClientPortalStore, METADATA_USER, Type};
use datafusion_postgres::pgwire::error::{ErrorInfo, PgWireError, PgWireResult};
use datafusion_postgres::pgwire::messages::PgWireBackendMessage;
use datafusion_postgres::pgwire::messages::response::NoticeResponse;
use futures::{Sink, SinkExt};

use crate::server::user_error;
use crate::view::{Snapshot, View};

/// A statement that changed something, as the client is told.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Done {
    /// The command tag (`CREATE TABLE`, `CREATE MATERIALIZED VIEW`, `SET`, ...).
    pub tag: String,
    /// A notice to show (`job `v` started`), if any.
    pub notice: Option<String>,
}

/// Why a statement was refused: a SQLSTATE code and the message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refused {
    /// The SQLSTATE, e.g. `42601` for a syntax error.
    pub code: &'static str,
    /// What was wrong and where.
    pub message: String,
}

/// Runs the DDL of users allowed it: tables, materialized views (and their jobs), `INSERT`
/// jobs, options. Implemented by the program that runs jobs (`rstreams serve`).
#[async_trait]
pub trait Statements: Send + Sync {
    /// Runs `sql`, one or more `;`-separated statements, for `user`: each statement's outcome.
    async fn execute(&self, user: &str, sql: &str) -> Result<Vec<Done>, Refused>;
}

/// Who may change what.
#[derive(Clone, Default)]
pub struct Access {
    /// Users whose DDL runs (everyone else is read-only).
    pub ddl_users: Vec<String>,
    /// What runs it; without it every session is read-only.
    pub statements: Option<Arc<dyn Statements>>,
}

impl Debug for Access {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Access")
            .field("ddl_users", &self.ddl_users)
            .field("statements", &self.statements.is_some())
            .finish()
    }
}

impl Access {
    /// What runs `user`'s DDL, if the user may.
    fn statements_for(&self, user: &str) -> Option<&Arc<dyn Statements>> {
        self.statements
            .as_ref()
            .filter(|_| self.ddl_users.iter().any(|u| u == user))
    }
}

/// The first word of `sql`, upper-cased, after blanks and comments; and what follows it.
fn first_word(sql: &str) -> (String, &str) {
    let mut rest = sql;
    loop {
        rest = rest.trim_start();
        if let Some(r) = rest.strip_prefix("--") {
            rest = r.split_once('\n').map_or("", |(_, r)| r);
        } else if let Some(r) = rest.strip_prefix("/*") {
            rest = r.split_once("*/").map_or("", |(_, r)| r);
        } else {
            break;
        }
    }
    let end = rest
        .find(|c: char| !c.is_ascii_alphabetic())
        .unwrap_or(rest.len());
    let word = rest[..end].to_ascii_uppercase();
    (word, rest[end..].trim_start())
}

/// The statement's first word when it would change something, else `None`.
fn change(sql: &str) -> Option<String> {
    const CHANGES: [&str; 10] = [
        "CREATE", "DROP", "INSERT", "ALTER", "UPDATE", "DELETE", "TRUNCATE", "MERGE", "GRANT",
        "REVOKE",
    ];
    let (word, rest) = first_word(sql);
    // PostgreSQL's `SET name TO value` is a session setting; Flink's quoted SET is a job option.
    let flink_set = word == "SET" && rest.starts_with('\'');
    // PostgreSQL's `EXECUTE name` runs a prepared query; Flink's statement set starts jobs.
    let statement_set = word == "EXECUTE" && first_word(rest).0 == "STATEMENT";
    (CHANGES.contains(&word.as_str()) || flink_set || statement_set).then_some(word)
}

fn user_of(client: &impl ClientInfo) -> String {
    client
        .metadata()
        .get(METADATA_USER)
        .cloned()
        .unwrap_or_default()
}

fn read_only(word: &str, user: &str) -> PgWireError {
    user_error(
        "25006",
        format!(
            "{word} is not allowed: the session of user `{user}` is read-only (`rstreams serve \
             --allow-ddl {user}` lets it define tables and views)"
        ),
    )
}

/// Runs `sql` through `statements`, sending each notice to the client first.
async fn run_statements<C>(
    statements: &Arc<dyn Statements>,
    client: &mut C,
    user: &str,
    sql: &str,
) -> PgWireResult<Vec<Response>>
where
    C: Sink<PgWireBackendMessage> + Unpin + Send,
    PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
{
    let done = statements
        .execute(user, sql)
        .await
        .map_err(|r| user_error(r.code, r.message))?;
    let mut responses = Vec::with_capacity(done.len());
    for d in done {
        if let Some(text) = d.notice {
            let info = ErrorInfo::new("NOTICE".to_string(), "00000".to_string(), text);
            client
                .send(PgWireBackendMessage::NoticeResponse(NoticeResponse::from(
                    info,
                )))
                .await?;
        }
        responses.push(Response::Execution(Tag::new(&d.tag)));
    }
    Ok(responses)
}

tokio::task_local! {
    /// The views a query has read so far, at the epoch it read them.
    static PINNED: QueryPin;
}

/// The snapshots of one query.
#[derive(Default)]
struct QueryPin {
    views: Mutex<HashMap<String, Snapshot>>,
}

/// Runs `query` (planning and all) with its own pin: each view it reads, it reads at one epoch.
pub(crate) async fn pinned<F: std::future::Future>(query: F) -> F::Output {
    PINNED.scope(QueryPin::default(), query).await
}

/// `view`'s rows for the query running on this task: the snapshot it took when it first read
/// the view, or (outside a query) the newest. The first read of a view also pins the other
/// views of its job, all at the newest epoch they all have.
pub(crate) fn pinned_snapshot(view: &Arc<View>) -> Snapshot {
    PINNED
        .try_with(|pin| {
            let mut pinned = pin.views.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(s) = pinned.get(view.name()) {
                return s.clone();
            }
            let job = view.job_views();
            let common = job.iter().map(|v| v.epoch()).min().unwrap_or(0);
            for v in &job {
                // A view that no longer keeps rows that old (it cannot lag by more than a few
                // checkpoints behind another of its job): its newest.
                let s = v.snapshot_at(common).unwrap_or_else(|| v.snapshot());
                pinned.entry(v.name().to_string()).or_insert(s);
            }
            pinned
                .get(view.name())
                .cloned()
                .unwrap_or_else(|| view.snapshot())
        })
        .unwrap_or_else(|_| view.snapshot())
}

/// DataFusion's session service, with DDL routed and views pinned per query.
pub(crate) struct Service {
    inner: DfSessionService,
    parser: Arc<Parser>,
    access: Access,
}

impl Service {
    pub(crate) fn new(inner: DfSessionService, access: Access) -> Self {
        let parser = Arc::new(Parser {
            inner: ExtendedQueryHandler::query_parser(&inner),
            access: access.clone(),
        });
        Service {
            inner,
            parser,
            access,
        }
    }
}

#[async_trait]
impl SimpleQueryHandler for Service {
    async fn do_query<C>(&self, client: &mut C, query: &str) -> PgWireResult<Vec<Response>>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        if let Some(word) = change(query) {
            let user = user_of(client);
            return match self.access.statements_for(&user) {
                Some(s) => run_statements(s, client, &user, query).await,
                None => Err(read_only(&word, &user)),
            };
        }
        pinned(SimpleQueryHandler::do_query(&self.inner, client, query)).await
    }
}

type Parsed = <DfSessionService as ExtendedQueryHandler>::Statement;
type InnerParser = <DfSessionService as ExtendedQueryHandler>::QueryParser;

/// Parses for the extended protocol: DDL of users allowed it is kept as text (no plan) to
/// run at execution; others' DDL is refused at once.
pub(crate) struct Parser {
    inner: Arc<InnerParser>,
    access: Access,
}

#[async_trait]
impl QueryParser for Parser {
    type Statement = Parsed;

    async fn parse_sql<C>(
        &self,
        client: &C,
        sql: &str,
        types: &[Option<Type>],
    ) -> PgWireResult<Option<Parsed>>
    where
        C: ClientInfo + Unpin + Send + Sync,
    {
        if let Some(word) = change(sql) {
            let user = user_of(client);
            return match self.access.statements_for(&user) {
                Some(_) => Ok(Some((sql.to_string(), None))),
                None => Err(read_only(&word, &user)),
            };
        }
        self.inner.parse_sql(client, sql, types).await
    }

    fn get_parameter_types(&self, stmt: &Parsed) -> PgWireResult<Vec<Type>> {
        self.inner.get_parameter_types(stmt)
    }

    fn get_result_schema(
        &self,
        stmt: &Parsed,
        column_format: Option<&datafusion_postgres::pgwire::api::portal::Format>,
    ) -> PgWireResult<Vec<FieldInfo>> {
        self.inner.get_result_schema(stmt, column_format)
    }
}

#[async_trait]
impl ExtendedQueryHandler for Service {
    type Statement = Parsed;
    type QueryParser = Parser;

    fn query_parser(&self) -> Arc<Parser> {
        Arc::clone(&self.parser)
    }

    async fn do_query<C>(
        &self,
        client: &mut C,
        portal: &Portal<Parsed>,
        max_rows: usize,
    ) -> PgWireResult<Response>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = Parsed>,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let (sql, plan) = &portal.statement.statement;
        if plan.is_none()
            && let Some(word) = change(sql)
        {
            let user = user_of(client);
            let Some(statements) = self.access.statements_for(&user) else {
                return Err(read_only(&word, &user));
            };
            let mut done = run_statements(statements, client, &user, sql).await?;
            // One statement per Parse message: the protocol has one response for it.
            return Ok(done.pop().unwrap_or(Response::EmptyQuery));
        }
        pinned(ExtendedQueryHandler::do_query(
            &self.inner,
            client,
            portal,
            max_rows,
        ))
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ViewCatalog;
    use streams_core::arrow::array::{AsArray, Int64Array, RecordBatch};
    use streams_core::arrow::datatypes::{DataType, Field, Int64Type, Schema};
    use streams_core::datafusion::prelude::SessionContext;

    async fn total(ctx: &SessionContext) -> i64 {
        let batches = ctx
            .sql("SELECT CAST(SUM(a.n) AS BIGINT) FROM v a JOIN v b ON a.n = b.n")
            .await
            .unwrap()
            .collect()
            .await
            .unwrap();
        batches[0].column(0).as_primitive::<Int64Type>().value(0)
    }

    #[tokio::test]
    async fn a_query_reads_each_view_at_one_epoch() {
        let views = ViewCatalog::new();
        let schema = Arc::new(Schema::new(vec![Field::new("n", DataType::Int64, false)]));
        let view = views.register("v", Arc::clone(&schema), None);
        let rows = |n: i64| {
            RecordBatch::try_new(
                Arc::clone(&schema),
                vec![Arc::new(Int64Array::from(vec![n]))],
            )
            .unwrap()
        };
        view.publish(0, 1, 1, rows(1));
        let ctx = crate::context(Arc::clone(&views)).unwrap();
        // Epoch 2 is published while the pinned "query" runs: it goes on reading epoch 1.
        let (before, after) = pinned(async {
            let before = total(&ctx).await;
            view.publish(0, 1, 2, rows(2));
            (before, total(&ctx).await)
        })
        .await;
        assert_eq!((before, after), (1, 1));
        // The next query sees the new epoch.
        assert_eq!(pinned(total(&ctx)).await, 2);
        assert_eq!(total(&ctx).await, 2);
    }

    #[tokio::test]
    async fn views_of_one_job_are_read_at_the_epoch_they_all_have() {
        let views = ViewCatalog::new();
        let schema = Arc::new(Schema::new(vec![Field::new("n", DataType::Int64, false)]));
        let rows = |n: i64| {
            RecordBatch::try_new(
                Arc::clone(&schema),
                vec![Arc::new(Int64Array::from(vec![n]))],
            )
            .unwrap()
        };
        let a = views.register("a", Arc::clone(&schema), None);
        let b = views.register("b", Arc::clone(&schema), None);
        views.same_job(&["a".to_string(), "b".to_string()]);
        for epoch in 1..=3 {
            a.publish(0, 1, epoch, rows(epoch as i64));
            b.publish(0, 1, epoch, rows(epoch as i64));
        }
        // Checkpoint 4 has reached `a` but not yet `b`.
        a.publish(0, 1, 4, rows(4));
        let ctx = crate::context(Arc::clone(&views)).unwrap();
        let query =
            "SELECT CAST((SELECT SUM(n) FROM a) AS BIGINT), CAST((SELECT SUM(n) FROM b) AS BIGINT)";
        let both = || async {
            let batches = ctx.sql(query).await.unwrap().collect().await.unwrap();
            let value = |i: usize| batches[0].column(i).as_primitive::<Int64Type>().value(0);
            (value(0), value(1))
        };
        assert_eq!(pinned(both()).await, (3, 3));
        b.publish(0, 1, 4, rows(4));
        assert_eq!(pinned(both()).await, (4, 4));
    }

    #[test]
    fn changes_are_told_by_their_first_word() {
        assert_eq!(
            change("  create table t (a int)").as_deref(),
            Some("CREATE")
        );
        assert_eq!(
            change("-- note\n/* x */ INSERT INTO v SELECT 1").as_deref(),
            Some("INSERT")
        );
        assert_eq!(
            change("SET 'parallelism.default' = '2'").as_deref(),
            Some("SET")
        );
        assert_eq!(change("SET extra_float_digits = 3"), None);
        assert_eq!(change("select * from v"), None);
        assert_eq!(change("(SELECT 1)"), None);
        assert_eq!(change("-- only a comment"), None);
        assert_eq!(change("SHOW JOBS"), None);
        assert_eq!(
            change("execute statement set begin insert into t select 1; end").as_deref(),
            Some("EXECUTE")
        );
        assert_eq!(change("EXECUTE my_prepared (1)"), None);
    }
}
