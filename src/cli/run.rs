//! `rstreams run JOB.sql`: runs a SQL script. Statements run in order; each `INSERT INTO`
//! becomes a job, and a plain `SELECT` a job printing its rows. The command waits for every
//! job; Ctrl-C or SIGTERM stops them with a savepoint, from which running the script again
//! resumes (when checkpoints are on: `SET 'execution.checkpointing.interval'`).
//!
//! Each job keeps its state under `<state dir>/<sink table>`, where the state dir is
//! `--state-dir`, else `SET 'state.checkpoints.dir'`, else `<data dir>/state`.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use clap::Args;
use streams_core::connector::ConnectorRegistry;
use streams_core::datafusion::logical_expr::LogicalPlan;
use streams_core::dsl::PrintSink;
use streams_core::plan::{SinkNode, StreamPlanBuilder};
use streams_core::runtime::JobHandle;
use streams_sql::{Outcome, SqlEngine};

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
}

/// The job's name: its sink table, or `query-<n>` for a plain `SELECT`.
fn job_name(plan: &LogicalPlan, n: usize) -> String {
    if let LogicalPlan::Extension(e) = plan
        && let Some(sink) = e.node.as_any().downcast_ref::<SinkNode>()
    {
        return sink.name.clone();
    }
    format!("query-{n}")
}

pub(crate) fn run(data_dir: &Path, args: RunArgs) -> Result<()> {
    let sql = std::fs::read_to_string(&args.script)
        .map_err(|e| CliError::Usage(format!("cannot read {}: {e}", args.script.display())))?;
    let mut registry = ConnectorRegistry::new();
    streams_connectors::register_builtin(&mut registry);
    streams_connectors::register_queue(&mut registry, data_dir);
    let mut engine = SqlEngine::new(registry);
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
    engine.set_checkpoint_settings(settings);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| CliError::Usage(format!("cannot start the runtime: {e}")))?;
    runtime.block_on(run_jobs(&mut engine, outcomes))
}

async fn run_jobs(engine: &mut SqlEngine, outcomes: Vec<Outcome>) -> Result<()> {
    let mut jobs: Vec<(String, JobHandle)> = Vec::new();
    for (n, outcome) in outcomes.into_iter().enumerate() {
        let plan = match outcome {
            Outcome::Insert(plan) => plan,
            Outcome::Query(plan) => StreamPlanBuilder::from_plan(plan)
                .sink("print", Arc::new(PrintSink))
                .map_err(streams_sql::Error::from)?,
            Outcome::Explain(text) => {
                println!("{text}");
                continue;
            }
            Outcome::Rows(batch) => {
                let shown = streams_core::arrow::util::pretty::pretty_format_batches(&[batch])
                    .map_err(streams_core::Error::from)
                    .map_err(streams_sql::Error::from)?;
                println!("{shown}");
                continue;
            }
            Outcome::Created(_) | Outcome::Dropped(_) | Outcome::Set(_, _) => continue,
        };
        let name = job_name(&plan, n);
        let handle = engine.launch(&plan, &name)?;
        tracing::info!(job = %name, "job started");
        jobs.push((name, handle));
    }
    if jobs.is_empty() {
        return Ok(());
    }
    let finished = {
        let all = futures::future::join_all(jobs.iter_mut().map(|(_, h)| h.join()));
        tokio::select! {
            results = all => Some(results),
            () = shutdown_signal() => None,
        }
    };
    match finished {
        Some(results) => {
            for ((name, _), r) in jobs.iter().zip(results) {
                r.map_err(|e| CliError::Job {
                    job: name.clone(),
                    message: e.to_string(),
                })?;
            }
            Ok(())
        }
        None => {
            for (name, handle) in jobs {
                match handle.stop().await {
                    Ok(Some(savepoint)) => {
                        eprintln!("job `{name}` stopped; savepoint {}", savepoint.location)
                    }
                    Ok(None) => eprintln!("job `{name}` stopped (no checkpoints: nothing saved)"),
                    Err(e) => {
                        return Err(CliError::Job {
                            job: name,
                            message: format!("stop failed: {e}"),
                        });
                    }
                }
            }
            Ok(())
        }
    }
}

/// Ctrl-C or SIGTERM.
async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
