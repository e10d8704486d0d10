//! The checkpoint coordinator: starts checkpoints on schedule by asking every source task to
//! inject `Barrier(n)`, collects one acknowledgement per task (sources add their positions),
//! then has storage write the checkpoint with its metadata atomically and tells every task that
//! `n` completed, so that sinks commit. A clean stop and the end of every source are
//! checkpoints too: the last one (`then_stop`) ends the job.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot, watch};
use tokio_util::sync::CancellationToken;

use crate::checkpoint::{CheckpointDecision, CheckpointId, CheckpointPolicy, CoordinatorState};
use crate::message::Barrier;
use crate::metrics::CheckpointStats;
use crate::state::{CheckpointInfo, CheckpointStorage, TaskKey};
use crate::{Error, Result};

/// What the coordinator asks of a source task.
#[derive(Debug)]
pub(crate) enum SourceCommand {
    /// Record the position and send this barrier downstream.
    Inject(Barrier),
}

/// What tasks tell the coordinator.
#[derive(Debug)]
pub(crate) enum Event {
    /// A task snapshotted checkpoint `id` and forwarded its barrier.
    Ack {
        id: CheckpointId,
        /// Source positions taken at injection (source tasks only).
        positions: Vec<(TaskKey, Vec<u8>)>,
        /// How long the task's inputs were blocked waiting for the barrier on every input.
        alignment: Duration,
    },
    /// A source task read everything; it waits for the final checkpoint.
    SourceEnded,
}

/// What a task holds to take part in checkpoints.
#[derive(Clone, Debug)]
pub(crate) struct TaskCheckpointing {
    pub(crate) storage: Arc<dyn CheckpointStorage>,
    pub(crate) events: mpsc::UnboundedSender<Event>,
    /// The last completed checkpoint (0: none yet).
    pub(crate) completed: watch::Receiver<CheckpointId>,
    /// The checkpoint the job resumed from, if any.
    pub(crate) restored: Option<CheckpointId>,
}

impl TaskCheckpointing {
    pub(crate) fn ack(
        &self,
        id: CheckpointId,
        positions: Vec<(TaskKey, Vec<u8>)>,
        alignment: Duration,
    ) {
        // A closed channel means the coordinator stopped: the job is failing, and says why.
        let _ = self.events.send(Event::Ack {
            id,
            positions,
            alignment,
        });
    }

    /// Waits until checkpoint `id` completed.
    pub(crate) async fn completion(&mut self, id: CheckpointId) -> Result<()> {
        self.completed
            .wait_for(|&c| c >= id)
            .await
            .map(|_| ())
            .map_err(|_| Error::Cancelled)
    }
}

/// What the checkpoint metadata records besides the state: which job wrote it and where each
/// source subtask was.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct Metadata {
    pub(crate) version: u32,
    pub(crate) id: CheckpointId,
    /// The job's topology as rendered: a checkpoint of another query is refused.
    pub(crate) topology: String,
    /// (node, subtask, position as hex).
    pub(crate) positions: Vec<(usize, usize, String)>,
}

impl Metadata {
    pub(crate) fn positions(&self) -> Result<BTreeMap<TaskKey, Vec<u8>>> {
        let mut out = BTreeMap::new();
        for (node, subtask, hex) in &self.positions {
            let bytes = from_hex(hex).ok_or_else(|| {
                Error::IncompatibleState(format!(
                    "checkpoint {}: the position of source [{node}] subtask {subtask} is not hex",
                    self.id
                ))
            })?;
            out.insert(
                TaskKey {
                    node: *node,
                    subtask: *subtask,
                },
                bytes,
            );
        }
        Ok(out)
    }
}

fn to_hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn from_hex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

/// Reads a restored checkpoint's metadata and checks that it was written by this job.
pub(crate) fn check_restored(
    id: CheckpointId,
    metadata: &[u8],
    topology: &str,
) -> Result<BTreeMap<TaskKey, Vec<u8>>> {
    let meta: Metadata = serde_json::from_slice(metadata).map_err(|e| {
        Error::IncompatibleState(format!("checkpoint {id}: unreadable metadata: {e}"))
    })?;
    if meta.topology != topology {
        let diff: Vec<String> = meta
            .topology
            .lines()
            .zip(topology.lines())
            .filter(|(a, b)| a != b)
            .take(3)
            .map(|(a, b)| format!("  was: {}\n  now: {}", a.trim(), b.trim()))
            .collect();
        return Err(Error::IncompatibleState(format!(
            "checkpoint {id} was written by another job (the query or its parallelism \
             changed); start without it, or run the query it was taken from. First \
             differences:\n{}",
            if diff.is_empty() {
                "  (a different number of operators)".to_string()
            } else {
                diff.join("\n")
            }
        )));
    }
    meta.positions()
}

/// A stop request: take a savepoint, then end the job.
pub(crate) type StopRequest = oneshot::Sender<Result<CheckpointInfo>>;

#[derive(Debug)]
struct Pending {
    id: CheckpointId,
    started: Instant,
    acks: usize,
    positions: Vec<(TaskKey, Vec<u8>)>,
    alignment: Duration,
    then_stop: bool,
    /// Set for a stop with savepoint: who asked.
    reply: Option<StopRequest>,
}

/// Runs checkpoints for one job.
#[derive(Debug)]
pub(crate) struct Coordinator {
    pub(crate) policy: Option<CheckpointPolicy>,
    pub(crate) storage: Arc<dyn CheckpointStorage>,
    pub(crate) topology: String,
    /// Number of tasks that acknowledge each checkpoint.
    pub(crate) tasks: usize,
    pub(crate) sources: Vec<mpsc::UnboundedSender<SourceCommand>>,
    pub(crate) events: mpsc::UnboundedReceiver<Event>,
    pub(crate) stops: mpsc::UnboundedReceiver<StopRequest>,
    pub(crate) completed: watch::Sender<CheckpointId>,
    pub(crate) stats: Arc<CheckpointStats>,
    pub(crate) cancel: CancellationToken,
    /// The last checkpoint id used before this run (the restored one).
    pub(crate) first_id: CheckpointId,
}

impl Coordinator {
    pub(crate) async fn run(mut self) -> Result<()> {
        let epoch = Instant::now();
        let now_ms = || epoch.elapsed().as_millis() as i64;
        let mut state = CoordinatorState {
            last_started: Some((self.first_id, i64::MIN / 4)),
            last_finished_at: Some(i64::MIN / 4),
        };
        let mut pending: Option<Pending> = None;
        let mut ended_sources = 0usize;
        let mut stop_wanted: Option<StopRequest> = None;
        let mut finished = false;
        let mut stops_open = true;
        loop {
            let next_id = state.last_started.map_or(1, |(id, _)| id + 1);
            // A stop or the end of every source is taken as soon as nothing else runs.
            if pending.is_none() && !finished {
                let all_ended = !self.sources.is_empty() && ended_sources == self.sources.len();
                if let Some(reply) = stop_wanted.take() {
                    pending = Some(self.start(next_id, true, Some(reply)));
                } else if all_ended {
                    pending = Some(self.start(next_id, true, None));
                }
                if let Some(p) = &pending {
                    state.last_started = Some((p.id, now_ms()));
                    finished = p.then_stop;
                }
            }
            let decision = match (&self.policy, finished && pending.is_none()) {
                (Some(policy), false) => policy.decide(&state, now_ms()),
                _ => CheckpointDecision::WaitUntil(i64::MAX),
            };
            let wait_ms = match decision {
                CheckpointDecision::Start(id) if pending.is_none() && !finished => {
                    let p = self.start(id, false, None);
                    state.last_started = Some((id, now_ms()));
                    pending = Some(p);
                    continue;
                }
                CheckpointDecision::Abort(id) => {
                    if let Some(p) = pending.take() {
                        self.stats.failed();
                        tracing::warn!(
                            checkpoint = id,
                            acks = p.acks,
                            tasks = self.tasks,
                            "checkpoint timed out; aborted"
                        );
                        if p.then_stop {
                            let err = Error::Storage(format!("checkpoint {id} timed out"));
                            if let Some(r) = p.reply {
                                let _ = r
                                    .send(Err(Error::Storage(format!("savepoint {id} timed out"))));
                            }
                            return Err(err);
                        }
                    }
                    state.last_finished_at = Some(now_ms());
                    continue;
                }
                CheckpointDecision::WaitUntil(t) => (t - now_ms()).max(0),
                CheckpointDecision::Start(_) => 3_600_000,
            };
            let sleep = tokio::time::sleep(Duration::from_millis(wait_ms.min(3_600_000) as u64));
            tokio::select! {
                biased;
                _ = self.cancel.cancelled() => return Err(Error::Cancelled),
                ev = self.events.recv() => match ev {
                    // Every task has ended.
                    None => return Ok(()),
                    Some(Event::SourceEnded) => ended_sources += 1,
                    Some(Event::Ack { id, positions, alignment }) => {
                        let Some(p) = pending.as_mut().filter(|p| p.id == id) else {
                            continue;
                        };
                        p.acks += 1;
                        p.positions.extend(positions);
                        p.alignment = p.alignment.max(alignment);
                        if p.acks == self.tasks
                            && let Some(p) = pending.take()
                        {
                            self.finish(p).await?;
                            state.last_finished_at = Some(now_ms());
                        }
                    }
                },
                stop = self.stops.recv(), if stops_open && stop_wanted.is_none() && !finished => {
                    match stop {
                        Some(reply) => stop_wanted = Some(reply),
                        // The job handle is gone: nobody can ask for a stop any more.
                        None => stops_open = false,
                    }
                }
                _ = sleep => {}
            }
        }
    }

    fn start(&self, id: CheckpointId, then_stop: bool, reply: Option<StopRequest>) -> Pending {
        tracing::debug!(checkpoint = id, then_stop, "checkpoint started");
        for s in &self.sources {
            // A source task that is gone has failed; the job reports that.
            let _ = s.send(SourceCommand::Inject(Barrier { id, then_stop }));
        }
        Pending {
            id,
            started: Instant::now(),
            acks: 0,
            positions: Vec::new(),
            alignment: Duration::ZERO,
            then_stop,
            reply,
        }
    }

    /// Every task acknowledged: write the checkpoint, then let the tasks commit.
    async fn finish(&mut self, p: Pending) -> Result<()> {
        let meta = Metadata {
            version: 1,
            id: p.id,
            topology: self.topology.clone(),
            positions: p
                .positions
                .iter()
                .map(|(k, b)| (k.node, k.subtask, to_hex(b)))
                .collect(),
        };
        let bytes = serde_json::to_vec(&meta)
            .map_err(|e| Error::Internal(format!("checkpoint metadata: {e}")))?;
        let storage = Arc::clone(&self.storage);
        let savepoint = p.reply.is_some();
        let id = p.id;
        let written = tokio::task::spawn_blocking(move || {
            if savepoint {
                storage.savepoint(id, &bytes)
            } else {
                storage.complete(id, &bytes)
            }
        })
        .await
        .map_err(|e| Error::Internal(format!("checkpoint writer: {e}")))?;
        let info = match written {
            Ok(info) => info,
            Err(e) => {
                self.stats.failed();
                if let Some(r) = p.reply {
                    let _ = r.send(Err(Error::Storage(e.to_string())));
                }
                return Err(e);
            }
        };
        let took = p.started.elapsed();
        self.stats.completed(id, took, info.bytes, p.alignment);
        tracing::info!(
            checkpoint = id,
            ms = took.as_millis() as u64,
            bytes = info.bytes,
            alignment_ms = p.alignment.as_millis() as u64,
            location = %info.location,
            "checkpoint completed"
        );
        self.completed.send_replace(id);
        if let Some(r) = p.reply {
            let _ = r.send(Ok(info));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metadata_is_checked_against_the_topology() {
        let meta = Metadata {
            version: 1,
            id: 3,
            topology: "task 0:\n  [0] source\n".into(),
            positions: vec![(0, 1, to_hex(&[0, 255, 16]))],
        };
        let bytes = serde_json::to_vec(&meta).unwrap();
        let pos = check_restored(3, &bytes, "task 0:\n  [0] source\n").unwrap();
        assert_eq!(
            pos[&TaskKey {
                node: 0,
                subtask: 1
            }],
            vec![0, 255, 16]
        );
        let err = check_restored(3, &bytes, "task 0:\n  [0] other\n").unwrap_err();
        assert!(err.to_string().contains("was: [0] source"), "{err}");
        assert!(check_restored(3, b"{", "x").is_err());
        assert_eq!(from_hex("0g"), None);
    }
}
