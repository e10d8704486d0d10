//! A topic: its metadata and its logical queues.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use crate::config::TopicConfig;
use crate::error::{Error, Result};
use crate::meta::{self, PlacementMeta, TopicMeta};
use crate::queue::{Placement, Queue, QueueSettings};
use crate::record::Record;

/// The storage directory segments go to unless a queue is moved, relative to the data dir.
pub(crate) const DEFAULT_STORAGE: &str = "segments";

#[derive(Debug)]
pub(crate) struct Topic {
    pub(crate) name: String,
    pub(crate) meta_path: PathBuf,
    data_dir: PathBuf,
    pub(crate) meta: Mutex<TopicMeta>,
    pub(crate) queues: RwLock<Vec<Arc<Queue>>>,
    deleted: AtomicBool,
}

impl Topic {
    /// Opens every queue of the topic that `meta` describes.
    pub(crate) fn open(data_dir: &Path, meta_path: PathBuf, meta: TopicMeta) -> Result<Topic> {
        let mut queues = Vec::with_capacity(meta.queues.len());
        for id in 0..meta.queues.len() as u32 {
            queues.push(Arc::new(Self::open_queue(data_dir, &meta, id)?));
        }
        Ok(Topic {
            name: meta.name.clone(),
            meta_path,
            data_dir: data_dir.to_path_buf(),
            meta: Mutex::new(meta),
            queues: RwLock::new(queues),
            deleted: AtomicBool::new(false),
        })
    }

    /// A storage directory as stored in metadata, resolved against the data directory.
    pub(crate) fn storage_root(data_dir: &Path, dir: &str) -> PathBuf {
        let p = Path::new(dir);
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            data_dir.join(p)
        }
    }

    fn open_queue(data_dir: &Path, meta: &TopicMeta, id: u32) -> Result<Queue> {
        let placements = meta.queues[id as usize]
            .placements
            .iter()
            .map(|p| Placement {
                dir: Self::storage_root(data_dir, &p.dir)
                    .join(meta.dir_name())
                    .join(id.to_string()),
                from: p.from,
            })
            .collect::<Vec<_>>();
        let settings = QueueSettings {
            topic: meta.name.clone(),
            id,
            durability: meta.config.durability,
            timestamp_type: meta.config.timestamp_type,
            segment_bytes: meta.config.segment_bytes,
        };
        Queue::open(settings, &placements)
    }

    pub(crate) fn config(&self) -> Result<TopicConfig> {
        Ok(self.meta.lock()?.config.clone())
    }

    pub(crate) fn queue(&self, id: u32) -> Result<Arc<Queue>> {
        if self.deleted.load(Ordering::Acquire) {
            return Err(Error::TopicNotFound(self.name.clone()));
        }
        let queues = self.queues.read()?;
        queues
            .get(id as usize)
            .cloned()
            .ok_or(Error::QueueNotFound {
                topic: self.name.clone(),
                queue: id,
                queues: queues.len() as u32,
            })
    }

    pub(crate) fn queue_count(&self) -> Result<u32> {
        Ok(self.queues.read()?.len() as u32)
    }

    pub(crate) fn all_queues(&self) -> Result<Vec<Arc<Queue>>> {
        Ok(self.queues.read()?.clone())
    }

    pub(crate) fn is_deleted(&self) -> bool {
        self.deleted.load(Ordering::Acquire)
    }

    pub(crate) fn mark_deleted(&self) {
        self.deleted.store(true, Ordering::Release);
    }

    /// Storage directories holding any of this topic's segments.
    pub(crate) fn storage_dirs(&self) -> Result<Vec<PathBuf>> {
        let meta = self.meta.lock()?;
        let mut dirs: Vec<PathBuf> = meta
            .queues
            .iter()
            .flat_map(|q| q.placements.iter())
            .map(|p| Self::storage_root(&self.data_dir, &p.dir).join(meta.dir_name()))
            .collect();
        dirs.sort();
        dirs.dedup();
        Ok(dirs)
    }

    /// Adds `n` queues that start empty; existing queues are untouched.
    pub(crate) fn add_queues(&self, n: u32) -> Result<u32> {
        let mut meta = self.meta.lock()?;
        let mut queues = self.queues.write()?;
        let total = queues.len() as u32 + n;
        if n == 0 || total > crate::config::MAX_QUEUES {
            return Err(Error::InvalidConfig(format!(
                "cannot add {n} queues to `{}`: a topic has 1 to {} queues",
                self.name,
                crate::config::MAX_QUEUES
            )));
        }
        let mut next = meta.clone();
        for _ in 0..n {
            next.queues.push(crate::meta::QueueMeta {
                placements: vec![PlacementMeta {
                    dir: DEFAULT_STORAGE.to_string(),
                    from: 0,
                }],
            });
        }
        next.config.queues = total;
        let mut opened = Vec::new();
        for id in queues.len() as u32..total {
            opened.push(Arc::new(Self::open_queue(&self.data_dir, &next, id)?));
        }
        meta::write(&self.meta_path, &next)?;
        *meta = next;
        queues.extend(opened);
        Ok(total)
    }

    /// Sends queue `id`'s new appends to `storage` (a storage directory, absolute or relative
    /// to the data directory).
    pub(crate) fn move_queue(&self, id: u32, storage: &str) -> Result<()> {
        let queue = self.queue(id)?;
        let mut meta = self.meta.lock()?;
        let dir = Self::storage_root(&self.data_dir, storage)
            .join(meta.dir_name())
            .join(id.to_string());
        queue.relocate(&dir, |from| {
            let mut next = meta.clone();
            let placements = &mut next.queues[id as usize].placements;
            // A placement that never received a record is replaced rather than kept empty.
            if placements.last().is_some_and(|p| p.from == from) {
                placements.pop();
            }
            placements.push(PlacementMeta {
                dir: storage.to_string(),
                from,
            });
            meta::write(&self.meta_path, &next)?;
            *meta = next;
            Ok(())
        })
    }

    /// Appends to queue `id`.
    pub(crate) fn append(&self, id: u32, records: &[Record]) -> Result<u64> {
        self.queue(id)?.append(records)
    }
}
