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
use crate::state::{CheckpointInfo, CheckpointStorage, KeyedState, OperatorState, TaskKey};

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// What one subtask stored: its state and its keyed tables.
#[derive(Clone, Debug, Default)]
struct TaskData {
    state: Option<Vec<u8>>,
    tables: BTreeMap<String, BTreeMap<Vec<u8>, Vec<u8>>>,
}

/// The stored data of every subtask.
type Tasks = BTreeMap<TaskKey, TaskData>;

#[derive(Debug, Default)]
struct Stored {
    /// Completed checkpoints: id → (what each subtask stored, metadata).
    complete: BTreeMap<CheckpointId, (Tasks, Vec<u8>)>,
    /// Subtasks captured for checkpoints not complete yet.
    pending: BTreeMap<CheckpointId, Tasks>,
}

/// Checkpoint storage in memory. Clones share what was completed; each launch should get
/// [`MemoryCheckpoints::resume`] (the newest completed checkpoint) or a fresh one.
#[derive(Debug, Clone, Default)]
pub struct MemoryCheckpoints {
    stored: Arc<Mutex<Stored>>,
    working: Arc<Mutex<Tasks>>,
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
            Some((id, (tasks, _))) => (Some(*id), tasks.clone()),
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

    /// Keys held in a keyed table of a subtask now (not necessarily checkpointed).
    pub fn keyed_len(&self, key: TaskKey, table: &str) -> usize {
        lock(&self.working)
            .get(&key)
            .and_then(|t| t.tables.get(table))
            .map_or(0, BTreeMap::len)
    }
}

/// One subtask's keyed tables in a [`MemoryCheckpoints`].
#[derive(Debug)]
struct MemoryKeyed {
    working: Arc<Mutex<Tasks>>,
    key: TaskKey,
}

impl KeyedState for MemoryKeyed {
    fn get_many(&self, table: &str, keys: &[&[u8]]) -> Result<Vec<Option<Vec<u8>>>> {
        let w = lock(&self.working);
        let t = w.get(&self.key).and_then(|d| d.tables.get(table));
        Ok(keys
            .iter()
            .map(|k| t.and_then(|t| t.get(*k)).cloned())
            .collect())
    }

    fn put_many(&self, table: &str, entries: &[(&[u8], &[u8])]) -> Result<()> {
        let mut w = lock(&self.working);
        let t = w
            .entry(self.key)
            .or_default()
            .tables
            .entry(table.to_string())
            .or_default();
        for (k, v) in entries {
            t.insert(k.to_vec(), v.to_vec());
        }
        Ok(())
    }

    fn delete_many(&self, table: &str, keys: &[&[u8]]) -> Result<()> {
        let mut w = lock(&self.working);
        if let Some(t) = w.get_mut(&self.key).and_then(|d| d.tables.get_mut(table)) {
            for k in keys {
                t.remove(*k);
            }
        }
        Ok(())
    }
}

impl CheckpointStorage for MemoryCheckpoints {
    fn write(&self, key: TaskKey, state: &[u8]) -> Result<()> {
        let mut w = lock(&self.working);
        w.entry(key).or_default().state = (!state.is_empty()).then(|| state.to_vec());
        Ok(())
    }

    fn keyed(&self, key: TaskKey) -> Result<Arc<dyn KeyedState>> {
        Ok(Arc::new(MemoryKeyed {
            working: Arc::clone(&self.working),
            key,
        }))
    }

    fn snapshot(&self, key: TaskKey, id: CheckpointId) -> Result<()> {
        let data = lock(&self.working).get(&key).cloned();
        if let Some(data) = data {
            lock(&self.stored)
                .pending
                .entry(id)
                .or_default()
                .insert(key, data);
        }
        Ok(())
    }

    fn complete(&self, id: CheckpointId, metadata: &[u8]) -> Result<CheckpointInfo> {
        let mut stored = lock(&self.stored);
        let tasks = stored.pending.remove(&id).unwrap_or_default();
        // Older unfinished checkpoints were aborted.
        stored.pending.retain(|p, _| *p > id);
        let bytes = tasks
            .values()
            .map(|t| {
                t.state.as_ref().map_or(0, Vec::len) as u64
                    + t.tables
                        .values()
                        .flat_map(|t| t.iter())
                        .map(|(k, v)| (k.len() + v.len()) as u64)
                        .sum::<u64>()
            })
            .sum();
        stored.complete.insert(id, (tasks, metadata.to_vec()));
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
        Ok(lock(&self.working).get(&key).and_then(|t| t.state.clone()))
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
