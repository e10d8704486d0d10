//! A job's checkpoint storage in a local directory: the engine's [`CheckpointStorage`] over a
//! RocksDB working store and its checkpoints.
//!
//! ```text
//! <dir>/working/              RocksDB: a column family per operator node (`op-<node>`), one
//!                             value per subtask (its encoded state)
//! <dir>/checkpoints/chk-<id>/ complete checkpoints (the newest `retain` are kept)
//! <dir>/savepoints/sp-<id>/   savepoints (kept until deleted by hand)
//! ```
//!
//! On open, the working store is always rebuilt from the checkpoint the job resumes from (or
//! emptied when it starts fresh): what a crashed run wrote after its last complete checkpoint
//! belongs to no checkpoint and is thrown away.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use streams_core::checkpoint::CheckpointId;
use streams_core::state::{CheckpointInfo, CheckpointStorage, TaskKey};

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
    store: StateStore,
    checkpoints: Checkpoints,
    savepoints: Checkpoints,
    restored: Option<(CheckpointId, Vec<u8>)>,
    /// Files of the last checkpoint written, to count only new ones in its size.
    last_files: Mutex<HashSet<String>>,
}

fn table_name(node: usize) -> String {
    format!("op-{node}")
}

fn subtask_key(subtask: usize) -> [u8; 4] {
    (subtask as u32).to_be_bytes()
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
    /// Opens job state under `dir`, keeping the newest `retain` checkpoints, and restores the
    /// checkpoint `from` asks for. With [`StartFrom::Latest`], checkpoints that exist but of
    /// which none verifies are an error (starting fresh would silently redo or lose output).
    pub fn open(dir: impl AsRef<Path>, retain: usize, from: StartFrom) -> Result<Self> {
        let dir = dir.as_ref();
        std::fs::create_dir_all(dir).map_err(io(dir))?;
        let checkpoints = Checkpoints::new(dir.join("checkpoints"), retain);
        let savepoints = Checkpoints::savepoints(dir.join("savepoints"));
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
        let (store, restored, files) = match (source, manifest) {
            (Some(at), Some(m)) => {
                let meta = at.metadata(m.id)?;
                let store = at.restore(&m, &working)?;
                let files = m.files.iter().map(|f| f.name.clone()).collect();
                tracing::info!(checkpoint = m.id, dir = %at.dir(m.id).display(), "restored state");
                (store, Some((m.id, meta)), files)
            }
            _ => {
                if working.exists() {
                    std::fs::remove_dir_all(&working).map_err(io(&working))?;
                }
                (StateStore::open(&working)?, None, HashSet::new())
            }
        };
        Ok(LocalStorage {
            store,
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

impl CheckpointStorage for LocalStorage {
    fn write(&self, key: TaskKey, state: &[u8]) -> streams_core::Result<()> {
        let table = self.store.table(&table_name(key.node)).map_err(core_err)?;
        let k = subtask_key(key.subtask);
        if state.is_empty() {
            table.delete(0, &k)
        } else {
            table.put(0, &k, state)
        }
        .map_err(core_err)
    }

    fn complete(&self, id: CheckpointId, metadata: &[u8]) -> streams_core::Result<CheckpointInfo> {
        let m = self
            .checkpoints
            .take(id, &self.store, metadata)
            .map_err(core_err)?;
        Ok(CheckpointInfo {
            id,
            bytes: self.new_bytes(&m),
            location: self.checkpoints.dir(id).display().to_string(),
        })
    }

    fn savepoint(&self, id: CheckpointId, metadata: &[u8]) -> streams_core::Result<CheckpointInfo> {
        // Also a checkpoint: restarting without naming the savepoint resumes from it too.
        let info = self.complete(id, metadata)?;
        self.savepoints
            .take(id, &self.store, metadata)
            .map_err(core_err)?;
        Ok(CheckpointInfo {
            location: self.savepoints.dir(id).display().to_string(),
            ..info
        })
    }

    fn restored(&self) -> Option<(CheckpointId, Vec<u8>)> {
        self.restored.clone()
    }

    fn read(&self, key: TaskKey) -> streams_core::Result<Option<Vec<u8>>> {
        let table = self.store.table(&table_name(key.node)).map_err(core_err)?;
        table.get(0, &subtask_key(key.subtask)).map_err(core_err)
    }
}
