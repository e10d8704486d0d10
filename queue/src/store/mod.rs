//! The store: opening a data directory, topic administration, appends and reads, and the
//! background thread that seals segments, runs `interval` fsyncs and applies retention.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, RwLock};

use crate::config::{StoreOptions, TopicConfig};
use crate::error::{Error, Result};
use crate::health::Health;
use crate::meta::{self, GroupMeta, PlacementMeta, QueueMeta, StoreMeta, TopicMeta};
use crate::queue::{Queue, now_ms};
use crate::record::{Record, StoredRecord};
use crate::segment::Budget;
use crate::topic::{DEFAULT_STORAGE, Topic};

mod background;
mod types;

use background::Background;
pub use types::{
    IfTrimmed, QueueDescription, ReadOptions, RetentionReport, SegmentDescription, TopicDescription,
};

#[derive(Debug)]
pub(crate) struct Inner {
    pub(crate) data_dir: PathBuf,
    options: StoreOptions,
    pub(crate) topics: RwLock<BTreeMap<String, Arc<Topic>>>,
    /// Serializes changes to topic metadata (create, delete, add queues, move).
    admin: Mutex<()>,
    pub(crate) groups: Mutex<BTreeMap<String, GroupMeta>>,
    health: Health,
    _lock: File,
}

/// An open store. Cheap to clone; every clone shares the same topics. The last clone to be
/// dropped stops the background thread and flushes (use [`Store::close`] to see its errors).
#[derive(Clone, Debug)]
pub struct Store {
    // Its `Drop` runs first, while `inner` is still alive for the final flush.
    background: Arc<Background>,
    pub(crate) inner: Arc<Inner>,
}

/// A handle for appending to one topic without looking it up on every call.
#[derive(Clone, Debug)]
pub struct Producer {
    topic: Arc<Topic>,
    inner: Arc<Inner>,
    // Keeps the background threads (fsyncs, seals) running while the producer lives.
    _background: Arc<Background>,
}

impl Producer {
    /// Appends `records` to `queue` as one batch; returns the offset of the first.
    pub fn append(&self, queue: u32, records: &[Record]) -> Result<u64> {
        self.inner.check_healthy()?;
        self.topic.append(queue, records)
    }

    /// Number of queues the topic has now.
    pub fn queue_count(&self) -> Result<u32> {
        self.topic.queue_count()
    }

    /// The queue a key maps to: CRC32C of the key modulo the queue count. Adding queues changes
    /// the mapping for later records, as adding partitions does in Kafka.
    pub fn queue_for_key(&self, key: &[u8]) -> Result<u32> {
        Ok(crc32c::crc32c(key) % self.queue_count()?)
    }
}

impl Inner {
    pub(crate) fn topic(&self, name: &str) -> Result<Arc<Topic>> {
        self.topics
            .read()?
            .get(name)
            .cloned()
            .ok_or_else(|| Error::TopicNotFound(name.to_string()))
    }

    fn check_healthy(&self) -> Result<()> {
        self.health.check()
    }

    /// Every queue of every topic, with its topic (empty if a lock is poisoned: used by
    /// background work).
    fn all_queues(&self) -> Vec<(Arc<Topic>, Arc<Queue>)> {
        let Ok(topics) = self.topics.read() else {
            return Vec::new();
        };
        topics
            .values()
            .flat_map(|t| {
                let queues = t.all_queues().unwrap_or_default();
                queues.into_iter().map(move |q| (Arc::clone(t), q))
            })
            .collect()
    }

    fn maintain(&self, closing: bool) -> Result<()> {
        let now = u64::try_from(now_ms()).unwrap_or(0);
        let topics: Vec<Arc<Topic>> = self.topics.read()?.values().cloned().collect();
        for topic in topics {
            for q in topic.all_queues()? {
                match q.maintain(now, closing) {
                    // Its files went away with it: not a failure of the store.
                    Err(_) if topic.is_deleted() => break,
                    other => other?,
                }
            }
        }
        Ok(())
    }

    fn enforce_retention(&self) -> Result<RetentionReport> {
        let mut report = RetentionReport::default();
        let now = now_ms();
        let topics: Vec<Arc<Topic>> = self.topics.read()?.values().cloned().collect();
        for topic in topics {
            let r = topic.config()?.retention;
            if r.max_age_ms.is_none() && r.max_bytes.is_none() {
                continue;
            }
            for q in topic.all_queues()? {
                let (segments, bytes) = q.apply_retention(r.max_age_ms, r.max_bytes, now)?;
                report.segments += segments;
                report.bytes += bytes;
            }
        }
        Ok(report)
    }

    fn fail(&self, e: &Error) {
        tracing::error!("store background work failed: {e}");
        self.health.fail(e);
    }
}

fn lock_data_dir(dir: &Path) -> Result<File> {
    let path = dir.join("LOCK");
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(|e| Error::io("open", &path, e))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => Err(Error::Locked(dir.to_path_buf())),
        Err(std::fs::TryLockError::Error(e)) => Err(Error::io("lock", &path, e)),
    }
}

fn random_id() -> String {
    static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!(
        "{:016x}",
        nanos ^ (u64::from(std::process::id()) << 40) ^ n.rotate_left(20)
    )
}

impl Store {
    /// Opens the store in `dir` with default options, creating it if needed.
    pub fn open(dir: impl AsRef<Path>) -> Result<Store> {
        Self::open_with(StoreOptions::new(dir.as_ref()))
    }

    /// Opens a store: takes the directory's lock, loads and recovers every topic (truncating torn
    /// tails, failing on damage elsewhere), applies retention and starts the background thread.
    pub fn open_with(options: StoreOptions) -> Result<Store> {
        let data_dir = options.data_dir.clone();
        crate::fsutil::create_dir_durable(&data_dir)?;
        let lock = lock_data_dir(&data_dir)?;
        let stamp = data_dir.join("store.json");
        if stamp.exists() {
            meta::read::<StoreMeta>(&stamp)?;
        } else if std::fs::read_dir(&data_dir)
            .map_err(|e| Error::io("list", &data_dir, e))?
            .filter_map(std::result::Result::ok)
            .any(|e| e.file_name() != "LOCK")
        {
            // Never turn someone else's files into a store (opening one removes orphans).
            return Err(Error::InvalidConfig(format!(
                "{} is not empty and is not an rstreams store (it has no store.json)",
                data_dir.display()
            )));
        } else {
            meta::write(
                &stamp,
                &StoreMeta {
                    format_version: meta::FORMAT_VERSION,
                },
            )?;
        }
        let topics_dir = data_dir.join("meta").join("topics");
        let groups_dir = data_dir.join("meta").join("groups");
        crate::fsutil::create_dir_durable(&topics_dir)?;
        crate::fsutil::create_dir_durable(&groups_dir)?;
        let mut topics = BTreeMap::new();
        for (name, path) in meta::list(&topics_dir)? {
            let tm: TopicMeta = meta::read(&path)?;
            if tm.name != name {
                return Err(Error::corrupt(
                    &path,
                    0,
                    format!("names topic `{}`", tm.name),
                ));
            }
            topics.insert(name, Arc::new(Topic::open(&data_dir, path, tm)?));
        }
        remove_orphans(&data_dir, &topics)?;
        let mut groups = BTreeMap::new();
        for (name, path) in meta::list(&groups_dir)? {
            groups.insert(name, meta::read::<GroupMeta>(&path)?);
        }
        let inner = Arc::new(Inner {
            data_dir,
            options: options.clone(),
            topics: RwLock::new(topics),
            admin: Mutex::new(()),
            groups: Mutex::new(groups),
            health: Health::default(),
            _lock: lock,
        });
        inner.enforce_retention()?;
        let background = Background::start(&inner, &options)?;
        Ok(Store { background, inner })
    }

    /// The data directory.
    pub fn data_dir(&self) -> &Path {
        &self.inner.data_dir
    }

    /// The options the store was opened with.
    pub fn options(&self) -> &StoreOptions {
        &self.inner.options
    }

    /// Creates a topic with `config.queues` empty queues.
    pub fn create_topic(&self, name: &str, config: TopicConfig) -> Result<()> {
        meta::validate_name(name)?;
        config.validate()?;
        let _admin = self.inner.admin.lock()?;
        if self.inner.topics.read()?.contains_key(name) {
            return Err(Error::TopicExists(name.to_string()));
        }
        let tm = TopicMeta {
            format_version: meta::FORMAT_VERSION,
            name: name.to_string(),
            id: random_id(),
            queues: (0..config.queues)
                .map(|_| QueueMeta {
                    placements: vec![PlacementMeta {
                        dir: DEFAULT_STORAGE.to_string(),
                        from: 0,
                    }],
                })
                .collect(),
            config,
        };
        let path = self
            .inner
            .data_dir
            .join("meta")
            .join("topics")
            .join(format!("{name}.json"));
        // Segments first: a crash before the metadata is written leaves only orphan files,
        // which the next open removes.
        let topic = Topic::open(&self.inner.data_dir, path.clone(), tm.clone())?;
        meta::write(&path, &tm)?;
        self.inner
            .topics
            .write()?
            .insert(name.to_string(), Arc::new(topic));
        Ok(())
    }

    /// Deletes a topic, its segments in every storage directory, and its committed offsets.
    pub fn delete_topic(&self, name: &str) -> Result<()> {
        let _admin = self.inner.admin.lock()?;
        let topic = self.inner.topic(name)?;
        let dirs = topic.storage_dirs()?;
        std::fs::remove_file(&topic.meta_path)
            .map_err(|e| Error::io("remove", &topic.meta_path, e))?;
        if let Some(parent) = topic.meta_path.parent() {
            crate::fsutil::sync_dir(parent)?;
        }
        topic.mark_deleted();
        self.inner.topics.write()?.remove(name);
        // Background work on its queues must not create files while the directories go.
        let queues = topic.all_queues()?;
        let _quiet = queues
            .iter()
            .map(|q| q.lock_maintenance())
            .collect::<Result<Vec<_>>>()?;
        for q in &queues {
            q.discard_spare()?;
        }
        for dir in dirs {
            crate::fsutil::remove_dir_all(&dir)?;
        }
        self.forget_topic_offsets(name)
    }

    /// Names of all topics, sorted.
    pub fn list_topics(&self) -> Result<Vec<String>> {
        Ok(self.inner.topics.read()?.keys().cloned().collect())
    }

    /// A topic's configuration, queues, offset ranges and segments.
    pub fn describe_topic(&self, name: &str) -> Result<TopicDescription> {
        let topic = self.inner.topic(name)?;
        let mut queues = Vec::new();
        for (i, q) in topic.all_queues()?.iter().enumerate() {
            let (start_offset, end_offset) = q.offsets()?;
            let segments = q.segment_info()?;
            queues.push(QueueDescription {
                queue: i as u32,
                start_offset,
                end_offset,
                bytes: segments.iter().map(|s| s.bytes).sum(),
                segments,
            });
        }
        Ok(TopicDescription {
            name: name.to_string(),
            config: topic.config()?,
            queues,
        })
    }

    /// Adds `n` empty queues to a topic; existing queues keep their offsets and order. Returns
    /// the new queue count.
    pub fn add_queues(&self, topic: &str, n: u32) -> Result<u32> {
        let _admin = self.inner.admin.lock()?;
        self.inner.topic(topic)?.add_queues(n)
    }

    /// Moves where a queue's new segments are written: to `storage`, a directory that may be on
    /// another disk. Offsets do not change; older segments stay readable where they are until
    /// retention deletes them, and reads cross from one directory to the other transparently.
    pub fn move_queue(&self, topic: &str, queue: u32, storage: &Path) -> Result<()> {
        let _admin = self.inner.admin.lock()?;
        let default = self.inner.data_dir.join(DEFAULT_STORAGE);
        let storage = if storage.is_absolute() {
            storage.to_path_buf()
        } else {
            std::env::current_dir()
                .map_err(|e| Error::io("resolve", storage, e))?
                .join(storage)
        };
        let stored = if storage == default {
            DEFAULT_STORAGE.to_string()
        } else {
            storage
                .to_str()
                .ok_or_else(|| Error::InvalidConfig(format!("{} is not UTF-8", storage.display())))?
                .to_string()
        };
        self.inner.topic(topic)?.move_queue(queue, &stored)
    }

    /// A handle for appending to `topic`.
    pub fn producer(&self, topic: &str) -> Result<Producer> {
        Ok(Producer {
            topic: self.inner.topic(topic)?,
            inner: Arc::clone(&self.inner),
            _background: Arc::clone(&self.background),
        })
    }

    /// Appends `records` to one queue as one batch; returns the offset of the first. Under
    /// `always` durability it returns once the records are on disk.
    pub fn append(&self, topic: &str, queue: u32, records: &[Record]) -> Result<u64> {
        self.inner.check_healthy()?;
        self.inner.topic(topic)?.append(queue, records)
    }

    /// Records of one queue from `offset` on, in offset order, within `options`' limits. An
    /// empty result means `offset` is the end.
    pub fn read(
        &self,
        topic: &str,
        queue: u32,
        offset: u64,
        options: &ReadOptions,
    ) -> Result<Vec<StoredRecord>> {
        let q = self.inner.topic(topic)?.queue(queue)?;
        let mut budget = Budget {
            records: options.max_records,
            bytes: options.max_bytes,
            taken_any: false,
        };
        match q.read(offset, &mut budget) {
            Err(Error::OffsetOutOfRange { start, .. })
                if offset < start && options.if_trimmed == IfTrimmed::Earliest =>
            {
                q.read(start, &mut budget)
            }
            other => other,
        }
    }

    /// First retained offset and end offset of a queue.
    pub fn offsets(&self, topic: &str, queue: u32) -> Result<(u64, u64)> {
        self.inner.topic(topic)?.queue(queue)?.offsets()
    }

    /// Number of queues of a topic.
    pub fn queue_count(&self, topic: &str) -> Result<u32> {
        self.inner.topic(topic)?.queue_count()
    }

    /// The first offset of a queue whose record's timestamp is at or after `timestamp_ms`
    /// (milliseconds since the epoch); the end offset if there is none. For replay.
    pub fn seek_timestamp(&self, topic: &str, queue: u32, timestamp_ms: i64) -> Result<u64> {
        self.inner
            .topic(topic)?
            .queue(queue)?
            .seek_time(timestamp_ms)
    }

    /// Deletes what retention allows now (it also runs in the background).
    pub fn enforce_retention(&self) -> Result<RetentionReport> {
        self.inner.enforce_retention()
    }

    /// Reads and checks every record of a topic; returns how many there are.
    pub fn verify_topic(&self, topic: &str) -> Result<u64> {
        let mut n = 0;
        for q in self.inner.topic(topic)?.all_queues()? {
            n += q.verify()?;
        }
        Ok(n)
    }

    /// Flushes everything written so far to disk, whatever the durability policy.
    pub fn sync(&self) -> Result<()> {
        self.inner.maintain(true)
    }

    /// Whether everything written to a topic is on disk.
    pub fn is_synced(&self, topic: &str) -> Result<bool> {
        for q in self.inner.topic(topic)?.all_queues()? {
            if !q.is_synced()? {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// Flushes and closes this handle. Other clones stay usable; the store closes with the last.
    pub fn close(self) -> Result<()> {
        self.inner.maintain(true)
    }
}

/// Removes segment directories in the default storage directory that belong to no topic: left
/// by a crash during `create_topic` or `delete_topic`.
fn remove_orphans(data_dir: &Path, topics: &BTreeMap<String, Arc<Topic>>) -> Result<()> {
    let root = data_dir.join(DEFAULT_STORAGE);
    let mut live = Vec::new();
    for t in topics.values() {
        live.push(t.meta.lock()?.dir_name());
    }
    let entries = match std::fs::read_dir(&root) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(Error::io("list", &root, e)),
    };
    for entry in entries {
        let entry = entry.map_err(|e| Error::io("list", &root, e))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        // Only directories named as this store names them (`<topic>-<16 hex digits>`).
        let ours = name.rsplit_once('-').is_some_and(|(topic, id)| {
            !topic.is_empty() && id.len() == 16 && id.chars().all(|c| c.is_ascii_hexdigit())
        });
        if ours && !live.contains(&name) {
            tracing::warn!(path = %entry.path().display(), "removing segments of a topic that no longer exists");
            crate::fsutil::remove_dir_all(&entry.path())?;
        }
    }
    Ok(())
}
