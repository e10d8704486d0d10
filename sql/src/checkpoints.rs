//! Checkpoint settings of a SQL session (Flink's option names) and launching a job with them:
//! `SET 'execution.checkpointing.interval' = '10s'` and `SET 'state.checkpoints.dir' = '...'`
//! make every job started afterwards checkpoint into `<dir>/<job>` and resume from the newest
//! checkpoint there; `SET 'execution.savepoint.path'` starts the next job from a savepoint.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use streams_core::datafusion::logical_expr::LogicalPlan;
use streams_core::runtime::{CheckpointConfig, JobHandle, launch};
use streams_state::{LocalStorage, StartFrom};

use crate::engine::SqlEngine;
use crate::{Error, Result};

/// The `SET` keys read here.
pub(crate) const KEYS: &[&str] = &[
    "execution.checkpointing.interval",
    "execution.checkpointing.min-pause",
    "execution.checkpointing.timeout",
    "state.checkpoints.dir",
    "state.checkpoints.num-retained",
    "execution.savepoint.path",
];

/// How the session's jobs checkpoint.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CheckpointSettings {
    /// `execution.checkpointing.interval`; `None` or zero: no periodic checkpoints.
    pub interval: Option<Duration>,
    /// `execution.checkpointing.min-pause`.
    pub min_pause: Option<Duration>,
    /// `execution.checkpointing.timeout`.
    pub timeout: Option<Duration>,
    /// `state.checkpoints.dir` (a path or a `file://` URI): each job keeps its state,
    /// checkpoints and savepoints in a directory of its own under it.
    pub dir: Option<PathBuf>,
    /// `state.checkpoints.num-retained` (default 3).
    pub retained: Option<usize>,
    /// `execution.savepoint.path`: the next job starts from this savepoint.
    pub savepoint: Option<PathBuf>,
    /// Start every job fresh, deleting its checkpoints (savepoints stay): `rstreams run
    /// --fresh`, after a query changed.
    pub fresh: bool,
}

fn path(value: &str) -> PathBuf {
    PathBuf::from(value.trim().strip_prefix("file://").unwrap_or(value.trim()))
}

impl CheckpointSettings {
    pub(crate) fn set(&mut self, key: &str, value: &str) -> Result<()> {
        let duration = |v: &str| {
            humantime::parse_duration(v.trim())
                .map_err(|e| Error::Plan(format!("SET '{key}': '{v}' is not a duration: {e}")))
        };
        match key {
            "execution.checkpointing.interval" => {
                let d = duration(value)?;
                self.interval = (!d.is_zero()).then_some(d);
            }
            "execution.checkpointing.min-pause" => self.min_pause = Some(duration(value)?),
            "execution.checkpointing.timeout" => self.timeout = Some(duration(value)?),
            "state.checkpoints.dir" => self.dir = Some(path(value)),
            "state.checkpoints.num-retained" => {
                let n = value.trim().parse::<usize>().ok().filter(|n| *n > 0);
                self.retained = Some(n.ok_or_else(|| {
                    Error::Plan(format!("SET '{key}': '{value}' is not a positive integer"))
                })?);
            }
            "execution.savepoint.path" => self.savepoint = Some(path(value)),
            _ => return Err(Error::Plan(format!("unknown option '{key}'"))),
        }
        Ok(())
    }
}

impl SqlEngine {
    /// The session's checkpoint settings.
    pub fn checkpoint_settings(&self) -> &CheckpointSettings {
        &self.checkpoints
    }

    /// Changes the checkpoint settings (the CLI's `--state-dir`, `--from-savepoint`).
    pub fn set_checkpoint_settings(&mut self, settings: CheckpointSettings) {
        self.checkpoints = settings;
    }

    /// Compiles and starts the job of an `INSERT INTO` plan. With `state.checkpoints.dir` set,
    /// the job `job` checkpoints into `<dir>/<job>` (every interval, if one is set, else only
    /// at the end and on stop) and resumes from the newest complete checkpoint there, or from
    /// `execution.savepoint.path`, which applies to this one job. Checkpoints without a
    /// directory are refused: they would not survive the process.
    pub fn launch(&mut self, plan: &LogicalPlan, job: &str) -> Result<JobHandle> {
        self.launch_set(std::slice::from_ref(plan), job)
    }

    /// [`SqlEngine::launch`] for several plans (a statement set's) run as one job: one
    /// topology, one checkpoint for all its sinks.
    pub fn launch_set(&mut self, plans: &[LogicalPlan], job: &str) -> Result<JobHandle> {
        let graph = self.compile(plans)?;
        let mut runtime = self.config().runtime.clone();
        let s = self.checkpoints.clone();
        match (&s.dir, s.interval) {
            (None, Some(_)) => {
                return Err(Error::Plan(
                    "'execution.checkpointing.interval' is set but 'state.checkpoints.dir' is \
                     not: checkpoints need a directory"
                        .into(),
                ));
            }
            (None, None) => {}
            (Some(dir), interval) => {
                // The savepoint is where this one job starts; the next starts fresh or latest.
                let from = match self.checkpoints.savepoint.take() {
                    Some(p) => StartFrom::Savepoint(p),
                    None if s.fresh => StartFrom::Fresh,
                    None => StartFrom::Latest,
                };
                let storage = LocalStorage::open(dir.join(job), s.retained.unwrap_or(3), from)
                    .map_err(|e| Error::Plan(format!("job `{job}`: {e}")))?;
                let mut c = CheckpointConfig::new(interval, Arc::new(storage));
                if let Some(p) = s.min_pause {
                    c.min_pause = p;
                }
                if let Some(t) = s.timeout {
                    c.timeout = t;
                }
                runtime.checkpointing = Some(c);
            }
        }
        Ok(launch(graph, &runtime)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use streams_core::connector::ConnectorRegistry;

    #[test]
    fn checkpoint_options_are_flinks_and_checked() {
        let mut e = SqlEngine::new(ConnectorRegistry::new());
        e.execute(
            "SET 'execution.checkpointing.interval' = '10s';
             SET 'execution.checkpointing.timeout' = '1min';
             SET 'state.checkpoints.dir' = 'file:///tmp/ck';
             SET 'state.checkpoints.num-retained' = '5';",
        )
        .unwrap();
        let s = e.checkpoint_settings();
        assert_eq!(s.interval, Some(Duration::from_secs(10)));
        assert_eq!(s.timeout, Some(Duration::from_secs(60)));
        assert_eq!(s.dir.as_deref(), Some(std::path::Path::new("/tmp/ck")));
        assert_eq!(s.retained, Some(5));
        e.execute(
            "SET 'execution.checkpointing.interval' = '0s'; SET 'table.exec.state.ttl' = '1h';",
        )
        .unwrap();
        assert_eq!(e.config().state_ttl, Some(Duration::from_secs(3600)));
        e.execute("SET 'state.cache.keys' = '10000';").unwrap();
        assert_eq!(e.config().state_cache, Some(10_000));
        assert_eq!(
            e.checkpoint_settings().interval,
            None,
            "zero turns them off"
        );
        let err = e
            .execute("SET 'execution.checkpointing.interval' = 'often';")
            .unwrap_err();
        assert!(err.to_string().contains("not a duration"), "{err}");
        let err = e
            .execute("SET 'state.checkpoints.num-retained' = '0';")
            .unwrap_err();
        assert!(err.to_string().contains("positive integer"), "{err}");
        let err = e
            .execute("SET 'execution.checkpointing.intervall' = '1s';")
            .unwrap_err();
        assert!(
            err.to_string()
                .contains("did you mean 'execution.checkpointing.interval'"),
            "{err}"
        );
    }
}
