//! `rstreams serve`: a long-running PostgreSQL-wire endpoint over materialized views, whose
//! jobs users define from their SQL client. Users named with `--allow-ddl` may send Flink
//! DDL (`CREATE TABLE ... WITH (...)`, `CREATE MATERIALIZED VIEW ... AS`, `INSERT INTO`,
//! `DROP`, `SET 'key' = 'value'`); everyone else is read-only. Statements that succeed are
//! kept in `<state dir>/catalog.sql` and run again when the server starts, so views and jobs
//! come back after a restart, resuming from their checkpoints. Ctrl-C or SIGTERM stops every
//! job with a savepoint.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use clap::Args;
use streams_core::connector::ConnectorRegistry;
use streams_core::datafusion::logical_expr::LogicalPlan;
use streams_core::runtime::JobHandle;
use streams_serve::{
    Access, Credentials, Done, Endpoint, JobList, Refused, ServeOptions, Statements, ViewCatalog,
    ViewConnector,
};
use streams_sql::{Outcome, SqlEngine};
use streams_state::LocalStorage;
use tokio::sync::{Mutex, watch};

use super::run::{ENDPOINT_THREADS, Signals, job_name, note, sink_names};
use super::{CliError, Result};

/// Where `--password-from-env` finds the password (not on the command line, where `ps` shows
/// it).
pub(crate) const PASSWORD_ENV: &str = "RSTREAMS_PASSWORD";

/// The credentials of `--password-from-env [--user NAME]`.
pub(crate) fn credentials(from_env: bool, user: Option<String>) -> Result<Option<Credentials>> {
    if !from_env {
        return Ok(None);
    }
    let password = std::env::var(PASSWORD_ENV)
        .ok()
        .filter(|p| !p.is_empty())
        .ok_or_else(|| {
            CliError::Usage(format!(
                "--password-from-env: the environment variable {PASSWORD_ENV} is not set"
            ))
        })?;
    Ok(Some(Credentials { user, password }))
}

/// Arguments of `rstreams serve`.
#[derive(Debug, Args)]
pub(crate) struct ServeArgs {
    /// Where to listen
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:5433")]
    listen: std::net::SocketAddr,
    /// Where jobs keep state, and the server its catalog.sql [default: <data dir>/state]
    #[arg(long, value_name = "DIR")]
    state_dir: Option<PathBuf>,
    /// Clients authenticate (SCRAM-SHA-256) with the password in the environment variable
    /// RSTREAMS_PASSWORD, as this user if --user is given
    #[arg(long)]
    password_from_env: bool,
    /// With --password-from-env: the only user name accepted
    #[arg(long, value_name = "NAME", requires = "password_from_env")]
    user: Option<String>,
    /// A user whose sessions may define tables, materialized views and jobs (repeatable);
    /// everyone else is read-only
    #[arg(long = "allow-ddl", value_name = "USER")]
    allow_ddl: Vec<String>,
    /// No job started/finished messages
    #[arg(long, short)]
    quiet: bool,
}

pub(crate) fn serve(data_dir: &Path, args: ServeArgs) -> Result<()> {
    let ServeArgs {
        listen,
        state_dir,
        password_from_env,
        user,
        allow_ddl,
        quiet,
    } = args;
    let credentials = credentials(password_from_env, user)?;
    if credentials.is_none() && !allow_ddl.is_empty() && !listen.ip().is_loopback() {
        return Err(CliError::Usage(
            "--allow-ddl on a non-loopback address needs --password-from-env: without a \
             password anyone could claim the user name"
                .into(),
        ));
    }
    let state_dir = state_dir.unwrap_or_else(|| data_dir.join("state"));
    std::fs::create_dir_all(&state_dir)
        .map_err(|e| CliError::Usage(format!("cannot create {}: {e}", state_dir.display())))?;
    let views = ViewCatalog::new();
    let mut registry = ConnectorRegistry::new();
    streams_connectors::register_builtin(&mut registry);
    streams_connectors::register_queue(&mut registry, data_dir);
    registry.register(Arc::new(ViewConnector::new(Arc::clone(&views))));
    let mut engine = SqlEngine::new(registry);
    // Nexmark's q14 calls the suite's UDF (examples/nexmark/q14.sql).
    engine.register_udf(streams_connectors::count_char())?;
    let mut settings = engine.checkpoint_settings().clone();
    settings.dir = Some(state_dir.clone());
    // Views publish at checkpoints; `SET 'execution.checkpointing.interval'` changes it.
    settings.interval = Some(Duration::from_secs(1));
    engine.set_checkpoint_settings(settings);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| CliError::Usage(format!("cannot start the runtime: {e}")))?;
    runtime.block_on(async move {
        let mut signals = Signals::new()?;
        let server = Arc::new(Server {
            inner: Mutex::new(Inner {
                engine,
                kept: Vec::new(),
                running: HashMap::new(),
            }),
            views: Arc::clone(&views),
            jobs: JobList::new(),
            runtime: tokio::runtime::Handle::current(),
            finished: Default::default(),
            state_dir,
            quiet,
        });
        server.restore().await?;
        let options = ServeOptions {
            listen,
            credentials,
            access: Access {
                ddl_users: allow_ddl,
                statements: Some(Arc::clone(&server) as Arc<dyn Statements>),
            },
        };
        note(format!(
            "serving on {listen} (psql -h {} -p {})",
            listen.ip(),
            listen.port()
        ));
        let mut endpoint =
            Endpoint::start(views, Arc::clone(&server.jobs), options, ENDPOINT_THREADS)
                .map_err(|e| CliError::Usage(e.to_string()))?;
        let ended = tokio::select! {
            r = endpoint.wait() => Some(r),
            () = signals.next() => None,
        };
        // No new statements while the jobs stop.
        drop(endpoint);
        if !quiet {
            note("stopping: taking a savepoint of every job".into());
        }
        server.stop_all().await;
        match ended {
            Some(Err(e)) => Err(CliError::Usage(e.to_string())),
            _ => Ok(()),
        }
    })
}

/// Options a session may not SET: the server decides where state lives.
const FIXED_OPTIONS: [&str; 2] = ["state.checkpoints.dir", "execution.savepoint.path"];

/// The server's SQL session, shared by the sessions of users allowed DDL.
struct Server {
    inner: Mutex<Inner>,
    views: Arc<ViewCatalog>,
    jobs: Arc<JobList>,
    /// The jobs' runtime: statements run on the endpoint's threads, jobs must not.
    runtime: tokio::runtime::Handle,
    /// Tables written by `INSERT` jobs whose input ended: their statements are not run again.
    finished: Arc<std::sync::Mutex<HashSet<String>>>,
    state_dir: PathBuf,
    quiet: bool,
}

struct Inner {
    engine: SqlEngine,
    /// The statements that made the catalog and its jobs, in order, with the names each
    /// created or writes.
    kept: Vec<(String, Vec<String>)>,
    /// Running jobs by name: how to stop each, and the task that sees it end.
    running: HashMap<String, Running>,
}

struct Running {
    stop: watch::Sender<Stop>,
    ended: tokio::task::JoinHandle<()>,
    /// The tables it writes.
    targets: Vec<String>,
}

/// What a running job is told.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Stop {
    Run,
    /// Stop with a savepoint, to resume at the next start.
    Savepoint,
    /// Cancel: its view was dropped.
    Cancel,
}

fn refused(e: streams_sql::Error) -> Refused {
    let code = match &e {
        streams_sql::Error::Parse { .. } => "42601",
        streams_sql::Error::Plan(_) => "42000",
        _ => "XX000",
    };
    Refused {
        code,
        message: e.to_string(),
    }
}

/// The command tag PostgreSQL would send: `CREATE MATERIALIZED VIEW`, `DROP TABLE`, `SET`...
fn tag(sql: &str) -> String {
    let words: Vec<String> = sql
        .split_whitespace()
        .take(4)
        .map(|w| w.to_ascii_uppercase())
        .collect();
    let n = match words.first().map(String::as_str) {
        Some("SET") => 1,
        Some("INSERT") => return "INSERT 0 0".into(),
        Some("EXECUTE") => 3,
        _ if words.get(1).map(String::as_str) == Some("MATERIALIZED") => 3,
        _ if words.get(1).map(String::as_str) == Some("TEMPORARY") => 3,
        _ => 2,
    };
    words.into_iter().take(n).collect::<Vec<_>>().join(" ")
}

impl Server {
    fn catalog_file(&self) -> PathBuf {
        self.state_dir.join("catalog.sql")
    }

    /// Runs the kept statements of the last run again.
    async fn restore(&self) -> Result<()> {
        let file = self.catalog_file();
        let sql = match std::fs::read_to_string(&file) {
            Ok(s) => s,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => {
                return Err(CliError::Usage(format!(
                    "cannot read {}: {e}",
                    file.display()
                )));
            }
        };
        let mut inner = self.inner.lock().await;
        let statements = streams_sql::split_script(&sql)
            .map_err(|e| CliError::Usage(format!("{}: {e}", file.display())))?;
        // A statement that no longer runs (a table it reads was dropped, a connector's
        // options changed) does not keep the server down: it is set aside, with why, in
        // catalog.failed.sql, and the others run.
        let mut failed = String::new();
        for text in statements {
            if let Err(r) = self.run_one(&mut inner, &text).await {
                note(format!(
                    "{}: set aside (in catalog.failed.sql): `{}`: {}",
                    file.display(),
                    text.lines().next().unwrap_or_default(),
                    r.message
                ));
                failed.push_str(&format!(
                    "-- {}\n{text}\n;\n\n",
                    r.message.replace('\n', " ")
                ));
            }
        }
        if !failed.is_empty() {
            use std::io::Write;
            let aside = self.state_dir.join("catalog.failed.sql");
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&aside)
                .and_then(|mut f| f.write_all(failed.as_bytes()))
                .map_err(|e| CliError::Usage(format!("cannot write {}: {e}", aside.display())))?;
            self.save(&inner).map_err(|r| CliError::Usage(r.message))?;
        }
        Ok(())
    }

    /// Runs one statement: registers, launches or drops; keeps it if it is to be run again.
    async fn run_one(&self, inner: &mut Inner, sql: &str) -> std::result::Result<Done, Refused> {
        // Where state lives is the server's to say: jobs and DROP must agree on it.
        for statement in streams_sql::parse_script(sql).map_err(refused)? {
            if let streams_sql::StreamStatement::Set { key, .. } = statement
                && FIXED_OPTIONS.contains(&key.as_str())
            {
                return Err(Refused {
                    code: "55000",
                    message: format!(
                        "SET '{key}' is not for sessions of rstreams serve: its jobs keep state \
                         under its --state-dir"
                    ),
                });
            }
        }
        let outcomes = inner.engine.execute(sql).map_err(refused)?;
        let mut notice = None;
        for outcome in outcomes {
            match outcome {
                Outcome::Created(name) => inner.kept.push((sql.to_string(), vec![name])),
                Outcome::Set(_, _) => inner.kept.push((sql.to_string(), Vec::new())),
                Outcome::Insert(plan) => {
                    notice = Some(self.launch(inner, sql, vec![plan])?);
                }
                Outcome::StatementSet(plans) => {
                    notice = Some(self.launch(inner, sql, plans)?);
                }
                Outcome::Dropped(names) => {
                    for name in names.split(", ") {
                        self.drop_name(inner, name).await;
                    }
                }
                Outcome::Query(_) | Outcome::Explain(_) | Outcome::Rows(_) => {
                    return Err(Refused {
                        code: "0A000",
                        message: "only DDL, INSERT INTO and SET run here; send queries on \
                                  their own"
                            .into(),
                    });
                }
            }
        }
        Ok(Done {
            tag: tag(sql),
            notice,
        })
    }

    /// Starts the job of `plans` (an INSERT's, a view's, a statement set's) written by `sql`;
    /// the notice for the client.
    fn launch(
        &self,
        inner: &mut Inner,
        sql: &str,
        plans: Vec<LogicalPlan>,
    ) -> std::result::Result<String, Refused> {
        let targets = sink_names(&plans);
        let name = job_name(&plans, 0);
        let busy = inner
            .running
            .iter()
            .filter(|(_, r)| !r.ended.is_finished())
            .find_map(|(job, r)| {
                targets
                    .iter()
                    .find(|t| r.targets.contains(t))
                    .map(|t| (job, t))
            });
        if let Some((job, target)) = busy {
            return Err(Refused {
                code: "42710",
                message: format!("the job `{job}` already writes `{target}`"),
            });
        }
        let ended_before = {
            let finished = self.finished.lock().unwrap_or_else(|p| p.into_inner());
            targets.iter().any(|t| finished.contains(t))
        };
        if ended_before {
            // The checkpoints of the job that finished: this one starts over.
            let _ = LocalStorage::discard_checkpoints(self.state_dir.join(&name));
        }
        let handle = {
            let _jobs = self.runtime.enter();
            inner.engine.launch_set(&plans, &name).map_err(refused)?
        };
        inner.kept.push((sql.to_string(), targets.clone()));
        {
            let mut finished = self.finished.lock().unwrap_or_else(|p| p.into_inner());
            for t in &targets {
                finished.remove(t);
            }
        }
        self.views.same_job(&targets);
        let views_only = targets.iter().all(|t| self.views.get(t).is_some());
        let running = self.supervise(name.clone(), handle, views_only, targets);
        inner.running.insert(name.clone(), running);
        if !self.quiet {
            note(format!("job `{name}` started"));
        }
        Ok(format!("job `{name}` started"))
    }

    /// Forgets `name`: the statements that made or write it, and a view's job and state. The
    /// job of a statement set stops with all the views it keeps.
    async fn drop_name(&self, inner: &mut Inner, name: &str) {
        inner
            .kept
            .retain(|(_, names)| !names.iter().any(|n| n == name));
        if self.views.get(name).is_none() {
            return;
        }
        let job = inner
            .running
            .iter()
            .find(|(_, r)| r.targets.iter().any(|t| t == name))
            .map(|(job, _)| job.clone());
        let Some(job) = job else {
            self.views.remove(name);
            return;
        };
        let Some(running) = inner.running.remove(&job) else {
            return;
        };
        let _ = running.stop.send(Stop::Cancel);
        // Its tasks must be gone before its state is.
        let _ = running.ended.await;
        self.jobs.remove(&job);
        // The set's other views go with it (nothing keeps them any more); its plain sink
        // tables stay.
        for view in &running.targets {
            if self.views.remove(view).is_some() && view != name {
                inner
                    .kept
                    .retain(|(_, names)| !names.iter().any(|n| n == view));
                inner.engine.forget_table(view);
            }
        }
        let dir = self.state_dir.join(&job);
        if let Err(e) = std::fs::remove_dir_all(&dir)
            && e.kind() != std::io::ErrorKind::NotFound
        {
            note(format!("cannot delete {}: {e}", dir.display()));
        }
        if !self.quiet {
            note(format!("job `{job}` dropped"));
        }
    }

    /// Watches job `name` until it ends or is told to stop (with a savepoint).
    fn supervise(
        &self,
        name: String,
        mut handle: JobHandle,
        view: bool,
        targets: Vec<String>,
    ) -> Running {
        let (stop, mut told) = watch::channel(Stop::Run);
        let jobs = Arc::clone(&self.jobs);
        let inserts_done = Arc::clone(&self.finished);
        // The sink tables that are not views: what "finished" means for the catalog.
        let sinks: Vec<String> = targets
            .iter()
            .filter(|t| self.views.get(t).is_none())
            .cloned()
            .collect();
        let dir = self.state_dir.join(&name);
        let quiet = self.quiet;
        jobs.set(&name, "insert", "running");
        let ended = self.runtime.spawn(async move {
            let finished = tokio::select! {
                r = handle.join() => Ok(r),
                s = told.wait_for(|s| *s != Stop::Run) => Err(s.map_or(Stop::Cancel, |s| *s)),
            };
            let status = match finished {
                Err(Stop::Cancel) => {
                    handle.cancel();
                    let _ = handle.join().await;
                    "dropped".to_string()
                }
                Ok(Ok(())) => {
                    // Its input ended. Views only: computed again at the next start. With
                    // other sinks, its checkpoints stay (a restart before the catalog is saved
                    // resumes at the end and writes nothing twice) and its INSERTs are not
                    // kept any more (their output is all there).
                    if view {
                        let _ = LocalStorage::discard_checkpoints(&dir);
                    } else {
                        inserts_done
                            .lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .extend(sinks.iter().cloned());
                    }
                    "finished".to_string()
                }
                Ok(Err(e)) => {
                    note(format!("job `{name}` failed: {e}"));
                    format!("failed: {e}")
                }
                Err(_) => match handle.stop().await {
                    Ok(Some(sp)) if !quiet => {
                        note(format!("job `{name}` stopped; savepoint {}", sp.location));
                        "stopped".into()
                    }
                    Ok(_) => "stopped".into(),
                    Err(e) => {
                        note(format!("job `{name}` failed to stop: {e}"));
                        format!("failed: {e}")
                    }
                },
            };
            jobs.set(&name, "insert", &status);
        });
        Running {
            stop,
            ended,
            targets,
        }
    }

    /// Writes the kept statements, so the next start runs them again.
    fn save(&self, inner: &Inner) -> std::result::Result<(), Refused> {
        let mut text = String::from(
            "-- Kept by `rstreams serve`: the statements run again when it starts.\n\n",
        );
        let finished = self.finished.lock().unwrap_or_else(|p| p.into_inner());
        for (sql, names) in &inner.kept {
            let job = tag(sql).starts_with("INSERT") || tag(sql).starts_with("EXECUTE");
            if job && names.iter().all(|n| finished.contains(n)) {
                continue;
            }
            text.push_str(sql);
            // A statement whose last line is a `--` comment would swallow its `;`.
            let last = sql.lines().last().unwrap_or_default();
            text.push_str(if last.contains("--") {
                "\n;\n\n"
            } else {
                ";\n\n"
            });
        }
        let file = self.catalog_file();
        let temporary = file.with_extension("sql.tmp");
        std::fs::write(&temporary, text)
            .and_then(|()| std::fs::File::open(&temporary)?.sync_all())
            .and_then(|()| std::fs::rename(&temporary, &file))
            .map_err(|e| Refused {
                code: "58030",
                message: format!("cannot write {}: {e}", file.display()),
            })
    }

    /// Stops every running job with a savepoint and waits for them.
    async fn stop_all(&self) {
        let mut inner = self.inner.lock().await;
        let running: Vec<Running> = inner.running.drain().map(|(_, r)| r).collect();
        for r in &running {
            let _ = r.stop.send(Stop::Savepoint);
        }
        for r in running {
            let _ = r.ended.await;
        }
        if let Err(r) = self.save(&inner) {
            note(r.message);
        }
    }
}

#[async_trait]
impl Statements for Server {
    async fn execute(&self, user: &str, sql: &str) -> std::result::Result<Vec<Done>, Refused> {
        let statements = streams_sql::split_script(sql).map_err(refused)?;
        let mut inner = self.inner.lock().await;
        let mut done = Vec::with_capacity(statements.len());
        for text in statements {
            tracing::info!(user, statement = %text, "DDL");
            let result = self.run_one(&mut inner, &text).await;
            // What ran before a failure stays, as it would in a script.
            self.save(&inner)?;
            done.push(result?);
        }
        Ok(done)
    }
}

#[cfg(test)]
mod tests {
    use super::tag;

    #[test]
    fn tags_are_postgresqls() {
        assert_eq!(tag("create table t (a int)"), "CREATE TABLE");
        assert_eq!(
            tag("CREATE MATERIALIZED VIEW v AS SELECT 1"),
            "CREATE MATERIALIZED VIEW"
        );
        assert_eq!(tag("DROP MATERIALIZED VIEW v"), "DROP MATERIALIZED VIEW");
        assert_eq!(tag("SET 'a' = 'b'"), "SET");
        assert_eq!(tag("INSERT INTO t SELECT 1"), "INSERT 0 0");
    }
}
