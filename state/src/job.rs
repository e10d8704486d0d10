//! A job's checkpoint storage in a local directory: the engine's [`CheckpointStorage`] over a
//! RocksDB working store and its checkpoints.
//!
//! ```text
//! <dir>/working/<node>-<subtask>/              RocksDB of one operator subtask: its state
//!                                              (table `state`) and keyed tables it spills to
//! <dir>/checkpoints/chk-<id>/<node>-<subtask>/ its RocksDB checkpoint (SSTs hard-linked),
//!                   metadata.bin, MANIFEST.json  taken when the subtask handed checkpoint `id`
//!                                              over; complete checkpoints, newest `retain` kept
//! <dir>/savepoints/sp-<id>/                    savepoints (kept until deleted by hand)
//! ```
//!
//! On open, the working store is always rebuilt from the checkpoint the job resumes from (or
//! emptied when it starts fresh): what a crashed run wrote after its last complete checkpoint
//! belongs to no checkpoint and is thrown away.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use streams_core::checkpoint::CheckpointId;
use streams_core::state::{CheckpointInfo, CheckpointStorage, KeyedState, TaskKey};

use crate::checkpoint::{Checkpoints, Manifest};
use crate::error::{Error, Result, io};
use crate::store::StateStore;

/// Where a job starts from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StartFrom {
    /// The newest complete checkpoint in the directory, if there is one; fresh otherwise.
    Latest,
    /// This savepoint or checkpoint directory (`.../sp-<id>` or `.../chk-<id>`).
    Savepoint(PathBuf),
    /// Fresh, ignoring and deleting the checkpoints there.
    Fresh,
}

/// Checkpoint storage of one job in a local directory.
#[derive(Debug)]
pub struct LocalStorage {
    working: PathBuf,
    /// The stores of the subtasks opened so far.
    stores: Mutex<HashMap<TaskKey, Arc<StateStore>>>,
    checkpoints: Checkpoints,
    savepoints: Checkpoints,
    restored: Option<(CheckpointId, Vec<u8>)>,
    /// Files of the last checkpoint written, to count only new ones in its size.
    last_files: Mutex<HashSet<String>>,
}

/// The table holding a subtask's checkpointed state.
const STATE: &str = "state";

fn task_dir(key: TaskKey) -> String {
    format!("{}-{}", key.node, key.subtask)
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn core_err(e: Error) -> streams_core::Error {
    match e {
        Error::Corrupt { .. } | Error::NoCheckpoint(_) => {
            streams_core::Error::IncompatibleState(e.to_string())
        }
        e => streams_core::Error::Storage(e.to_string()),
    }
}

impl LocalStorage {
    /// Deletes the checkpoints of the job whose state is under `dir` (its savepoints stay):
    /// the next start is fresh. For a job that finished, whose output is all committed.
    pub fn discard_checkpoints(dir: impl AsRef<Path>) -> Result<()> {
        let root = dir.as_ref().join("checkpoints");
        match std::fs::remove_dir_all(&root) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io(&root)(e)),
        }
    }

    /// Opens job state under `dir`, keeping the newest `retain` checkpoints, and restores the
    /// checkpoint `from` asks for. With [`StartFrom::Latest`], checkpoints that exist but of
    /// which none verifies are an error (starting fresh would silently redo or lose output).
    pub fn open(dir: impl AsRef<Path>, retain: usize, from: StartFrom) -> Result<Self> {
        let dir = dir.as_ref();
        std::fs::create_dir_all(dir).map_err(io(dir))?;
        let checkpoints = Checkpoints::new(dir.join("checkpoints"), retain);
        let savepoints = Checkpoints::savepoints(dir.join("savepoints"));
        checkpoints.discard_unfinished()?;
        savepoints.discard_unfinished()?;
        let working = dir.join("working");
        let (source, manifest): (Option<Checkpoints>, Option<Manifest>) = match &from {
            StartFrom::Fresh => {
                let root = dir.join("checkpoints");
                if root.exists() {
                    std::fs::remove_dir_all(&root).map_err(io(&root))?;
                }
                (None, None)
            }
            StartFrom::Latest => match checkpoints.latest()? {
                Some(m) => (Some(checkpoints.clone()), Some(m)),
                None if checkpoints.list()?.is_empty() => (None, None),
                None => return Err(Error::NoCheckpoint(dir.join("checkpoints"))),
            },
            StartFrom::Savepoint(path) => {
                let (at, id) = Checkpoints::at(path)?;
                let m = at.verify(id)?;
                (Some(at), Some(m))
            }
        };
        let (restored, files) = match (source, manifest) {
            (Some(at), Some(m)) => {
                let meta = at.metadata(m.id)?;
                at.restore_files(&m, &working)?;
                let files = m.files.iter().map(|f| f.name.clone()).collect();
                tracing::info!(checkpoint = m.id, dir = %at.dir(m.id).display(), "restored state");
                (Some((m.id, meta)), files)
            }
            _ => {
                if working.exists() {
                    std::fs::remove_dir_all(&working).map_err(io(&working))?;
                }
                std::fs::create_dir_all(&working).map_err(io(&working))?;
                (None, HashSet::new())
            }
        };
        Ok(LocalStorage {
            working,
            stores: Mutex::new(HashMap::new()),
            checkpoints,
            savepoints,
            restored,
            last_files: Mutex::new(files),
        })
    }

    /// The checkpoints directory.
    pub fn checkpoints(&self) -> &Checkpoints {
        &self.checkpoints
    }

    fn new_bytes(&self, m: &Manifest) -> u64 {
        let mut last = match self.last_files.lock() {
            Ok(l) => l,
            Err(p) => p.into_inner(),
        };
        let bytes = m
            .files
            .iter()
            .filter(|f| !(f.name.ends_with(".sst") && last.contains(&f.name)))
            .map(|f| f.size)
            .sum();
        *last = m.files.iter().map(|f| f.name.clone()).collect();
        bytes
    }
}

impl LocalStorage {
    fn finish(
        &self,
        id: CheckpointId,
        metadata: &[u8],
    ) -> streams_core::Result<(CheckpointInfo, Manifest)> {
        let m = self.checkpoints.finish(id, metadata).map_err(core_err)?;
        let info = CheckpointInfo {
            id,
            bytes: self.new_bytes(&m),
            location: self.checkpoints.dir(id).display().to_string(),
        };
        Ok((info, m))
    }

    /// The store of subtask `key`: open already, restored from the checkpoint, or (with
    /// `create`) new. `None` when it has none and `create` is false.
    fn store(&self, key: TaskKey, create: bool) -> Result<Option<Arc<StateStore>>> {
        let mut stores = lock(&self.stores);
        if let Some(s) = stores.get(&key) {
            return Ok(Some(Arc::clone(s)));
        }
        let dir = self.working.join(task_dir(key));
        if !create && !dir.exists() {
            return Ok(None);
        }
        let store = Arc::new(StateStore::open(&dir)?);
        stores.insert(key, Arc::clone(&store));
        Ok(Some(store))
    }
}

/// A subtask's keyed tables: column families of its store.
#[derive(Debug)]
struct TaskKeyed(Arc<StateStore>);

impl KeyedState for TaskKeyed {
    fn get_many(&self, table: &str, keys: &[&[u8]]) -> streams_core::Result<Vec<Option<Vec<u8>>>> {
        let t = self.0.table(table).map_err(core_err)?;
        t.get_many(0, keys).map_err(core_err)
    }

    fn put_many(&self, table: &str, entries: &[(&[u8], &[u8])]) -> streams_core::Result<()> {
        let t = self.0.table(table).map_err(core_err)?;
        t.put_many(0, entries).map_err(core_err)
    }

    fn delete_many(&self, table: &str, keys: &[&[u8]]) -> streams_core::Result<()> {
        let t = self.0.table(table).map_err(core_err)?;
        t.delete_many(0, keys).map_err(core_err)
    }
}

impl CheckpointStorage for LocalStorage {
    fn write(&self, key: TaskKey, state: &[u8]) -> streams_core::Result<()> {
        let Some(store) = self.store(key, !state.is_empty()).map_err(core_err)? else {
            return Ok(());
        };
        let table = store.table(STATE).map_err(core_err)?;
        if state.is_empty() {
            table.delete(0, b"")
        } else {
            table.put(0, b"", state)
        }
        .map_err(core_err)
    }

    fn keyed(&self, key: TaskKey) -> streams_core::Result<Arc<dyn KeyedState>> {
        let store = self.store(key, true).map_err(core_err)?;
        let store = store
            .ok_or_else(|| streams_core::Error::Storage(format!("no store for subtask {key:?}")))?;
        Ok(Arc::new(TaskKeyed(store)))
    }

    fn snapshot(&self, key: TaskKey, id: CheckpointId) -> streams_core::Result<()> {
        match self.store(key, false).map_err(core_err)? {
            Some(store) => self
                .checkpoints
                .stage(id, &task_dir(key), &store)
                .map_err(core_err),
            None => Ok(()),
        }
    }

    fn complete(&self, id: CheckpointId, metadata: &[u8]) -> streams_core::Result<CheckpointInfo> {
        self.finish(id, metadata).map(|(info, _)| info)
    }

    fn savepoint(&self, id: CheckpointId, metadata: &[u8]) -> streams_core::Result<CheckpointInfo> {
        // Also a checkpoint: restarting without naming the savepoint resumes from it too.
        let (info, manifest) = self.finish(id, metadata)?;
        self.savepoints
            .import(&self.checkpoints, &manifest)
            .map_err(core_err)?;
        Ok(CheckpointInfo {
            location: self.savepoints.dir(id).display().to_string(),
            ..info
        })
    }

    fn restored(&self) -> Option<(CheckpointId, Vec<u8>)> {
        self.restored.clone()
    }

    fn highest_id(&self) -> CheckpointId {
        let listed = |c: &Checkpoints| c.list().ok().and_then(|ids| ids.into_iter().max());
        let restored = self.restored.as_ref().map(|(id, _)| *id);
        [
            restored,
            listed(&self.checkpoints),
            listed(&self.savepoints),
        ]
        .into_iter()
        .flatten()
        .max()
        .unwrap_or(0)
    }

    fn read(&self, key: TaskKey) -> streams_core::Result<Option<Vec<u8>>> {
        let Some(store) = self.store(key, false).map_err(core_err)? else {
            return Ok(None);
        };
        let table = store.table(STATE).map_err(core_err)?;
        table.get(0, b"").map_err(core_err)
    }
}
