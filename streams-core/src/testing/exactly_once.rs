//! Exactly-once test doubles: checkpoint storage in memory that survives a job (a "crash" is
//! cancelling the job and launching it again from the storage), and a sink that publishes rows
//! only when their checkpoint completes, as a transactional external system would.

use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};

use async_trait::async_trait;
use datafusion::arrow::record_batch::RecordBatch;

use crate::Result;
use crate::checkpoint::CheckpointId;
use crate::sink::{Sink, SinkFactory};
use crate::state::{CheckpointInfo, CheckpointStorage, OperatorState, TaskKey};

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// The state of every task in one checkpoint.
type TaskStates = BTreeMap<TaskKey, Vec<u8>>;

#[derive(Debug, Default)]
struct Stored {
    /// Completed checkpoints: id → (state per task, metadata).
    complete: BTreeMap<CheckpointId, (TaskStates, Vec<u8>)>,
}

/// Checkpoint storage in memory. Clones share what was completed; each launch should get
/// [`MemoryCheckpoints::resume`] (the newest completed checkpoint) or a fresh one.
#[derive(Debug, Clone, Default)]
pub struct MemoryCheckpoints {
    stored: Arc<Mutex<Stored>>,
    working: Arc<Mutex<BTreeMap<TaskKey, Vec<u8>>>>,
    restored: Option<CheckpointId>,
}

impl MemoryCheckpoints {
    /// Empty storage: a job launched with it starts fresh.
    pub fn new() -> Self {
        MemoryCheckpoints::default()
    }

    /// Storage sharing these checkpoints, from which a job resumes at the newest one (fresh if
    /// there is none), as a restarted process would.
    pub fn resume(&self) -> Self {
        let stored = lock(&self.stored);
        let (restored, working) = match stored.complete.iter().next_back() {
            Some((id, (state, _))) => (Some(*id), state.clone()),
            None => (None, BTreeMap::new()),
        };
        MemoryCheckpoints {
            stored: Arc::clone(&self.stored),
            working: Arc::new(Mutex::new(working)),
            restored,
        }
    }

    /// Ids of the completed checkpoints.
    pub fn completed(&self) -> Vec<CheckpointId> {
        lock(&self.stored).complete.keys().copied().collect()
    }
}

impl CheckpointStorage for MemoryCheckpoints {
    fn write(&self, key: TaskKey, state: &[u8]) -> Result<()> {
        let mut w = lock(&self.working);
        if state.is_empty() {
            w.remove(&key);
        } else {
            w.insert(key, state.to_vec());
        }
        Ok(())
    }

    fn complete(&self, id: CheckpointId, metadata: &[u8]) -> Result<CheckpointInfo> {
        let state = lock(&self.working).clone();
        let bytes = state.values().map(|v| v.len() as u64).sum();
        lock(&self.stored)
            .complete
            .insert(id, (state, metadata.to_vec()));
        Ok(CheckpointInfo {
            id,
            bytes,
            location: format!("memory:{id}"),
        })
    }

    fn savepoint(&self, id: CheckpointId, metadata: &[u8]) -> Result<CheckpointInfo> {
        self.complete(id, metadata)
    }

    fn restored(&self) -> Option<(CheckpointId, Vec<u8>)> {
        let id = self.restored?;
        let stored = lock(&self.stored);
        stored.complete.get(&id).map(|(_, meta)| (id, meta.clone()))
    }

    fn read(&self, key: TaskKey) -> Result<Option<Vec<u8>>> {
        Ok(lock(&self.working).get(&key).cloned())
    }
}

#[derive(Debug, Default)]
struct Published {
    batches: Vec<RecordBatch>,
    /// (subtask, checkpoint) pairs already published: commits are idempotent.
    done: HashSet<(usize, CheckpointId)>,
}

/// A sink whose rows become visible only when the checkpoint after them completes; the
/// staged rows of a checkpoint are kept in its state, so a crash between the checkpoint and
/// the commit publishes them on recovery, once.
#[derive(Debug, Clone, Default)]
pub struct TransactionalSink {
    published: Arc<Mutex<Published>>,
}

impl TransactionalSink {
    /// A sink with nothing published.
    pub fn new() -> Self {
        TransactionalSink::default()
    }

    /// What has been committed so far.
    pub fn batches(&self) -> Vec<RecordBatch> {
        lock(&self.published).batches.clone()
    }
}

impl SinkFactory for TransactionalSink {
    fn name(&self) -> &str {
        "transactional"
    }

    fn create(&self, subtask: usize, _parallelism: usize) -> Result<Box<dyn Sink>> {
        Ok(Box::new(TransactionalSubtask {
            published: Arc::clone(&self.published),
            subtask,
            open: Vec::new(),
            pending: BTreeMap::new(),
        }))
    }

    fn accepts_updates(&self) -> bool {
        true
    }
}

#[derive(Debug)]
struct TransactionalSubtask {
    published: Arc<Mutex<Published>>,
    subtask: usize,
    /// Rows since the last barrier.
    open: Vec<RecordBatch>,
    /// Rows of checkpoints taken but not known complete.
    pending: BTreeMap<CheckpointId, Vec<RecordBatch>>,
}

#[async_trait]
impl Sink for TransactionalSubtask {
    async fn write(&mut self, batch: RecordBatch) -> Result<()> {
        self.open.push(batch);
        Ok(())
    }

    async fn pre_commit(&mut self, checkpoint: CheckpointId) -> Result<Option<OperatorState>> {
        self.pending
            .insert(checkpoint, std::mem::take(&mut self.open));
        let mut state = OperatorState::new();
        for (id, batches) in &self.pending {
            for b in batches {
                state.put_batch(id.to_string(), b.clone());
            }
            // A checkpoint without rows is still pending: its commit must be recorded.
            state.put_value(id.to_string(), 0);
        }
        Ok(Some(state))
    }

    async fn restore(
        &mut self,
        _checkpoint: CheckpointId,
        state: Option<OperatorState>,
    ) -> Result<()> {
        let Some(mut state) = state else {
            return Ok(());
        };
        for (name, batch) in state.take_batches() {
            let id = name.parse::<CheckpointId>().map_err(|_| {
                crate::Error::IncompatibleState(format!("transactional sink: batch `{name}`"))
            })?;
            self.pending.entry(id).or_default().push(batch);
        }
        Ok(())
    }

    async fn commit(&mut self, checkpoint: CheckpointId) -> Result<()> {
        let later = self.pending.split_off(&(checkpoint + 1));
        let due = std::mem::replace(&mut self.pending, later);
        let mut p = lock(&self.published);
        for (id, batches) in due {
            if p.done.insert((self.subtask, id)) {
                p.batches.extend(batches);
            }
        }
        Ok(())
    }
}
