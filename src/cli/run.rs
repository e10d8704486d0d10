//! `rstreams run JOB.sql`: runs a SQL script. Statements run in order; each `INSERT INTO`
//! becomes a job, and a plain `SELECT` a job showing its result (a live table on a terminal).
//! While jobs run, a progress line per job shows rows/s in and out, watermark, lag, bad
//! records and the last checkpoint (`--quiet`: none). The command ends when every job has
//! ended; if one fails, the others are stopped with a savepoint and the command exits 1 with
//! one line naming the job and the error. Ctrl-C or SIGTERM stops every job with a savepoint,
//! from which running the script again resumes (when checkpoints are on:
//! `SET 'execution.checkpointing.interval'`).
//!
//! Each job keeps its state under `<state dir>/<sink table>`, where the state dir is
//! `--state-dir`, else `SET 'state.checkpoints.dir'`, else `<data dir>/state`.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use clap::Args;
use streams_connectors::print::{PrintFormat, PrintSink, Stream, console};
use streams_core::connector::ConnectorRegistry;
use streams_core::datafusion::logical_expr::LogicalPlan;
use streams_core::plan::{SinkNode, StreamPlanBuilder};
use streams_core::runtime::JobHandle;
use streams_core::state::CheckpointInfo;
use streams_serve::{Credentials, JobList, ViewCatalog, ViewConnector};
use streams_sql::{Outcome, SqlEngine};
use streams_state::LocalStorage;
use tokio::sync::{mpsc, watch};

use super::live::{LiveTable, ResultSink};
use super::progress::{Watched, fit, terminal_size};
use super::{CliError, Result};

/// Arguments of `rstreams run`.
#[derive(Debug, Args)]
pub(crate) struct RunArgs {
    /// The SQL script to run
    script: PathBuf,
    /// Where jobs keep state, checkpoints and savepoints [default: SET 'state.checkpoints.dir',
    /// else <data dir>/state]
    #[arg(long, value_name = "DIR")]
    state_dir: Option<PathBuf>,
    /// Start the script's first job from this savepoint (a directory `.../sp-<id>`)
    #[arg(long, value_name = "PATH")]
    from_savepoint: Option<PathBuf>,
    /// Start every job from scratch: delete its checkpoints (savepoints stay), e.g. after the
    /// query changed
    #[arg(long, conflicts_with = "from_savepoint")]
    fresh: bool,
    /// Serve the script's materialized views over the PostgreSQL wire protocol (psql, drivers,
    /// BI tools); the command then runs until Ctrl-C, also after the jobs end. Without a SET
    /// interval, jobs checkpoint every second: views change at checkpoints
    #[arg(long)]
    serve: bool,
    /// Where --serve listens
    #[arg(
        long,
        value_name = "ADDR",
        default_value = "127.0.0.1:5433",
        requires = "serve"
    )]
    listen: std::net::SocketAddr,
    /// With --serve: clients authenticate (SCRAM-SHA-256) with the password in the
    /// environment variable RSTREAMS_PASSWORD, as this user if --user is given
    #[arg(long, requires = "serve")]
    password_from_env: bool,
    /// With --password-from-env: the only user name accepted
    #[arg(long, value_name = "NAME", requires = "password_from_env")]
    user: Option<String>,
    /// No progress line and no job started/finished messages; results and errors only
    #[arg(long, short)]
    quiet: bool,
}

/// The sink tables of job plans.
pub(crate) fn sink_names(plans: &[LogicalPlan]) -> Vec<String> {
    plans
        .iter()
        .filter_map(|plan| match plan {
            LogicalPlan::Extension(e) => e
                .node
                .as_any()
                .downcast_ref::<SinkNode>()
                .map(|s| s.name.clone()),
            _ => None,
        })
        .collect()
}

/// The job's name: its sink tables (`a+b` for a statement set's), or `query-<n>` for the
/// script's `n`th plain `SELECT`.
pub(crate) fn job_name(plans: &[LogicalPlan], n: usize) -> String {
    let names = sink_names(plans);
    if names.is_empty() {
        format!("query-{n}")
    } else {
        names.join("+")
    }
}

pub(crate) fn run(data_dir: &Path, args: RunArgs) -> Result<()> {
    let sql = std::fs::read_to_string(&args.script)
        .map_err(|e| CliError::Usage(format!("cannot read {}: {e}", args.script.display())))?;
    let mut registry = ConnectorRegistry::new();
    streams_connectors::register_builtin(&mut registry);
    streams_connectors::register_queue(&mut registry, data_dir);
    let credentials = super::serve::credentials(args.password_from_env, args.user.clone())?;
    let serving = args.serve.then(|| Serving {
        views: ViewCatalog::new(),
        jobs: JobList::new(),
        listen: args.listen,
        credentials,
    });
    if let Some(s) = &serving {
        registry.register(Arc::new(ViewConnector::new(Arc::clone(&s.views))));
    }
    let mut engine = SqlEngine::new(registry);
    // Nexmark's q14 calls the suite's UDF (examples/nexmark/q14.sql).
    engine.register_udf(streams_connectors::count_char())?;
    let outcomes = engine.execute(&sql)?;
    let mut settings = engine.checkpoint_settings().clone();
    if let Some(dir) = args.state_dir {
        settings.dir = Some(dir);
    }
    if settings.dir.is_none() {
        settings.dir = Some(data_dir.join("state"));
    }
    if args.from_savepoint.is_some() {
        settings.savepoint = args.from_savepoint;
    }
    settings.fresh = args.fresh;
    if serving.is_some() && settings.interval.is_none() {
        // Views publish at checkpoints: readers then never see half of an update.
        settings.interval = Some(Duration::from_secs(1));
    }
    let state_dir = settings.dir.clone();
    engine.set_checkpoint_settings(settings);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| CliError::Usage(format!("cannot start the runtime: {e}")))?;
    runtime.block_on(run_jobs(
        &mut engine,
        outcomes,
        args.quiet,
        state_dir,
        serving,
    ))
}

/// The PostgreSQL endpoint of `--serve`.
struct Serving {
    views: Arc<ViewCatalog>,
    jobs: Arc<JobList>,
    listen: std::net::SocketAddr,
    credentials: Option<Credentials>,
}

/// Threads of the PostgreSQL endpoint, besides the jobs' (queries wait for neither).
pub(crate) const ENDPOINT_THREADS: usize = 2;

/// How a job's supervision ended.
enum JobEnd {
    Finished(streams_core::Result<()>),
    Stopped(streams_core::Result<Option<CheckpointInfo>>),
}

/// Waits for the job to end, or stops it (with a savepoint) when told to.
async fn supervise(mut handle: JobHandle, mut stop: watch::Receiver<bool>) -> JobEnd {
    let finished = tokio::select! {
        r = handle.join() => Some(r),
        _ = stop.wait_for(|s| *s) => None,
    };
    match finished {
        Some(r) => JobEnd::Finished(r),
        None => JobEnd::Stopped(handle.stop().await),
    }
}

pub(crate) fn note(text: String) {
    console().print(&format!("{text}\n"), Stream::Stderr);
}

/// The jobs of a script, as they run.
struct Jobs {
    names: Vec<String>,
    watched: Vec<Watched>,
    tables: Vec<Arc<LiveTable>>,
    stop_tx: watch::Sender<bool>,
    done_tx: mpsc::UnboundedSender<(usize, JobEnd)>,
    done_rx: mpsc::UnboundedReceiver<(usize, JobEnd)>,
}

impl Jobs {
    fn new() -> Self {
        let (stop_tx, _) = watch::channel(false);
        let (done_tx, done_rx) = mpsc::unbounded_channel();
        Jobs {
            names: Vec::new(),
            watched: Vec::new(),
            tables: Vec::new(),
            stop_tx,
            done_tx,
            done_rx,
        }
    }

    /// A name not taken yet: two INSERTs into one table are two jobs with state of their own.
    fn unique(&self, name: String) -> String {
        let mut candidate = name.clone();
        let mut n = 1;
        while self.names.contains(&candidate) {
            n += 1;
            candidate = format!("{name}-{n}");
        }
        candidate
    }

    fn supervise(&mut self, name: String, handle: JobHandle) {
        self.watched
            .push(Watched::new(name.clone(), handle.metrics()));
        let index = self.names.len();
        self.names.push(name);
        let done = self.done_tx.clone();
        let stop = self.stop_tx.subscribe();
        tokio::spawn(async move {
            let end = supervise(handle, stop).await;
            let _ = done.send((index, end));
        });
    }
}

/// Starts the script's jobs; each INSERT and SELECT in order.
fn launch_all(
    engine: &mut SqlEngine,
    outcomes: Vec<Outcome>,
    quiet: bool,
    jobs: &mut Jobs,
    serving: Option<&Serving>,
) -> Result<()> {
    // A live table needs stdout on a terminal; otherwise SELECT rows are printed as they come.
    let live = console().terminal() == Some(Stream::Stdout);
    let mut queries = 0;
    for outcome in outcomes {
        let (plans, query) = match outcome {
            Outcome::Insert(plan) => (vec![plan], false),
            Outcome::StatementSet(plans) => (plans, false),
            Outcome::Query(plan) => {
                queries += 1;
                let sink: Arc<dyn streams_core::SinkFactory> = if live {
                    let table = Arc::new(LiveTable::default());
                    jobs.tables.push(Arc::clone(&table));
                    Arc::new(ResultSink(table))
                } else {
                    Arc::new(PrintSink::new("result", PrintFormat::Table, None, false))
                };
                let plan = StreamPlanBuilder::from_plan(plan)
                    .sink(&format!("query-{queries}"), sink)
                    .map_err(streams_sql::Error::from)?;
                (vec![plan], true)
            }
            Outcome::Explain(text) => {
                console().print(&format!("{text}\n"), Stream::Stdout);
                continue;
            }
            Outcome::Rows(batch) => {
                let shown = streams_core::arrow::util::pretty::pretty_format_batches(&[batch])
                    .map_err(streams_core::Error::from)
                    .map_err(streams_sql::Error::from)?;
                console().print(&format!("{shown}\n"), Stream::Stdout);
                continue;
            }
            Outcome::Created(_) | Outcome::Dropped(_) | Outcome::Set(_, _) => continue,
        };
        let name = jobs.unique(job_name(&plans, queries));
        let handle = if query {
            // A result shown on the console is not resumed: each run shows it afresh.
            let settings = engine.checkpoint_settings().clone();
            engine.set_checkpoint_settings(Default::default());
            let launched = engine.launch_set(&plans, &name);
            engine.set_checkpoint_settings(settings);
            launched
        } else {
            engine.launch_set(&plans, &name)
        };
        let handle = handle.map_err(|e| match e {
            streams_sql::Error::Core(streams_core::Error::IncompatibleState(m)) => CliError::Job {
                job: name.clone(),
                message: format!("{m} (run with --fresh to start over)"),
            },
            e => e.into(),
        })?;
        if !quiet {
            note(format!("job `{name}` started"));
        }
        if let Some(s) = serving {
            s.jobs
                .set(&name, if query { "select" } else { "insert" }, "running");
            s.views.same_job(&sink_names(&plans));
        }
        jobs.supervise(name, handle);
    }
    Ok(())
}

async fn run_jobs(
    engine: &mut SqlEngine,
    outcomes: Vec<Outcome>,
    quiet: bool,
    state_dir: Option<PathBuf>,
    serving: Option<Serving>,
) -> Result<()> {
    // Signals are caught from now on: a stop while jobs start still saves what started.
    let mut signals = Signals::new()?;
    let mut jobs = Jobs::new();
    let listed = serving.as_ref().map(|s| Arc::clone(&s.jobs));
    let mut failure = launch_all(engine, outcomes, quiet, &mut jobs, serving.as_ref()).err();
    let mut server = match &serving {
        Some(s) if failure.is_none() => {
            note(format!(
                "serving materialized views on {0} (psql -h {1} -p {2})",
                s.listen,
                s.listen.ip(),
                s.listen.port()
            ));
            let started = streams_serve::Endpoint::start(
                Arc::clone(&s.views),
                Arc::clone(&s.jobs),
                streams_serve::ServeOptions {
                    listen: s.listen,
                    credentials: s.credentials.clone(),
                    access: Default::default(),
                },
                ENDPOINT_THREADS,
            );
            match started {
                Ok(endpoint) => Some(endpoint),
                Err(e) => {
                    failure = Some(CliError::Usage(e.to_string()));
                    None
                }
            }
        }
        _ => None,
    };
    if failure.is_some() {
        // Those that started stop with a savepoint.
        let _ = jobs.stop_tx.send(true);
    }
    let Jobs {
        names,
        mut watched,
        tables,
        stop_tx,
        done_tx,
        mut done_rx,
    } = jobs;
    drop(done_tx);
    let terminal = console().terminal().is_some();
    let mut remaining = names.len();
    let mut stopping = failure.is_some();
    let period = if terminal {
        Duration::from_millis(500)
    } else {
        Duration::from_secs(10)
    };
    let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
    let set_status = |name: &str, status: &str| {
        if let Some(list) = &listed {
            list.set(
                name,
                if name.starts_with("query-") {
                    "select"
                } else {
                    "insert"
                },
                status,
            );
        }
    };
    // With --serve the views stay queryable after the jobs end, until a signal.
    while remaining > 0 || (server.is_some() && !stopping) {
        tokio::select! {
            ended = async {
                match server.as_mut() {
                    Some(endpoint) => endpoint.wait().await,
                    None => std::future::pending().await,
                }
            } => {
                server = None;
                let message = match ended {
                    Ok(()) => "the PostgreSQL endpoint stopped".to_string(),
                    Err(e) => e.to_string(),
                };
                if failure.is_none() {
                    failure = Some(CliError::Usage(message));
                }
                stopping = true;
                let _ = stop_tx.send(true);
            }
            ended = done_rx.recv(), if remaining > 0 => {
                let Some((i, end)) = ended else { break };
                remaining -= 1;
                let name = &names[i];
                match end {
                    JobEnd::Finished(Ok(())) => {
                        // All its output is committed: a next run starts over rather than
                        // resuming at the end of its input.
                        if let Some(dir) = &state_dir
                            && let Err(e) = LocalStorage::discard_checkpoints(dir.join(name))
                        {
                            note(format!("job `{name}`: cannot delete its checkpoints: {e}"));
                        }
                        if !quiet {
                            note(format!("job `{name}` finished"));
                        }
                        set_status(name, "finished");
                    }
                    JobEnd::Finished(Err(e)) | JobEnd::Stopped(Err(e)) => {
                        set_status(name, &format!("failed: {e}"));
                        if failure.is_none() {
                            failure = Some(CliError::Job { job: name.clone(), message: e.to_string() });
                        } else {
                            note(format!("job `{name}` failed too: {e}"));
                        }
                        // One failed: stop the others, each with a savepoint to resume from.
                        stopping = true;
                        let _ = stop_tx.send(true);
                    }
                    JobEnd::Stopped(Ok(Some(savepoint))) => {
                        set_status(name, "stopped");
                        note(format!("job `{name}` stopped; savepoint {}", savepoint.location));
                    }
                    JobEnd::Stopped(Ok(None)) => {
                        set_status(name, "stopped");
                        note(format!("job `{name}` stopped (no checkpoints: nothing saved)"));
                    }
                }
            }
            () = signals.next() => {
                if stopping {
                    // A second Ctrl-C: do not wait for savepoints.
                    console().clear_block();
                    note("interrupted again: exiting without waiting for savepoints".into());
                    std::process::exit(130);
                }
                stopping = true;
                if !quiet {
                    note("stopping: taking a savepoint of every job (Ctrl-C again to quit at once)".into());
                }
                let _ = stop_tx.send(true);
            }
            _ = ticker.tick() => {
                report(&mut watched, &tables, quiet, terminal);
            }
        }
    }
    console().clear_block();
    for table in &tables {
        if let Some(text) = table.render(usize::MAX).or_else(|| table.footer()) {
            console().print(&text, Stream::Stdout);
        }
    }
    match failure {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// Redraws the live tables and progress lines (terminal), or logs progress lines.
fn report(watched: &mut [Watched], tables: &[Arc<LiveTable>], quiet: bool, terminal: bool) {
    let lines: Vec<String> = if quiet {
        Vec::new()
    } else {
        watched.iter_mut().map(Watched::line).collect()
    };
    if !terminal {
        for line in lines {
            note(format!("progress: {line}"));
        }
        return;
    }
    let (width, height) = terminal_size();
    let room = height.saturating_sub(lines.len() + 6).max(3) / tables.len().max(1);
    let mut block = String::new();
    for table in tables {
        if let Some(text) = table.render(room) {
            for line in text.lines() {
                block.push_str(&fit(line, width));
                block.push('\n');
            }
        }
    }
    for line in lines {
        block.push_str(&fit(&line, width));
        block.push('\n');
    }
    console().set_block(block);
}

/// Ctrl-C and SIGTERM, caught from creation on.
pub(crate) struct Signals {
    #[cfg(unix)]
    term: tokio::signal::unix::Signal,
    #[cfg(unix)]
    interrupt: tokio::signal::unix::Signal,
}

impl Signals {
    pub(crate) fn new() -> Result<Self> {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            let catch = |kind| {
                signal(kind).map_err(|e| CliError::Usage(format!("cannot catch signals: {e}")))
            };
            Ok(Signals {
                term: catch(SignalKind::terminate())?,
                interrupt: catch(SignalKind::interrupt())?,
            })
        }
        #[cfg(not(unix))]
        Ok(Signals {})
    }

    /// The next signal.
    pub(crate) async fn next(&mut self) {
        #[cfg(unix)]
        tokio::select! {
            _ = self.term.recv() => {}
            _ = self.interrupt.recv() => {}
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
