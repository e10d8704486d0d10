//! Consumer groups (durable committed offsets per group, topic and queue) and [`Consumer`], a
//! reader that walks every queue of a topic.

use std::collections::BTreeMap;

use crate::error::{Error, Result};
use crate::meta::{self, GroupMeta};
use crate::record::StoredRecord;
use crate::store::{IfTrimmed, ReadOptions, Store};

/// Where reading starts in a queue.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StartFrom {
    /// The first retained offset.
    Earliest,
    /// The end: only records appended from now on.
    Latest,
    /// The first record at or after this time (milliseconds since the epoch).
    Timestamp(i64),
}

/// A group's position in one queue.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct QueueLag {
    /// Queue index.
    pub queue: u32,
    /// Committed offset (the next record the group will read), if the group committed one.
    pub committed: Option<u64>,
    /// First retained offset.
    pub start: u64,
    /// End offset.
    pub end: u64,
    /// Records between the committed offset (or the start) and the end.
    pub lag: u64,
}

/// How a [`Consumer`] starts.
#[derive(Clone, Debug)]
pub struct ConsumerOptions {
    /// Group whose committed offsets the consumer resumes from and commits to. Default: none.
    pub group: Option<String>,
    /// Start for queues without a committed offset (or all queues, with `ignore_committed`).
    /// Default: earliest.
    pub start: StartFrom,
    /// Start from `start` even where the group has committed offsets. Default false.
    pub ignore_committed: bool,
    /// Limits per read; `if_trimmed` also applies when a position falls below retention.
    /// Default: [`ReadOptions::default`] with `IfTrimmed::Earliest`.
    pub read: ReadOptions,
}

impl Default for ConsumerOptions {
    fn default() -> Self {
        ConsumerOptions {
            group: None,
            start: StartFrom::Earliest,
            ignore_committed: false,
            read: ReadOptions {
                if_trimmed: IfTrimmed::Earliest,
                ..ReadOptions::default()
            },
        }
    }
}

impl Store {
    fn group_path(&self, group: &str) -> std::path::PathBuf {
        self.inner
            .data_dir
            .join("meta")
            .join("groups")
            .join(format!("{group}.json"))
    }

    fn update_group(&self, group: &str, f: impl FnOnce(&mut GroupMeta)) -> Result<()> {
        meta::validate_name(group)?;
        let mut groups = self.inner.groups.lock()?;
        let mut next = groups.get(group).cloned().unwrap_or(GroupMeta {
            format_version: meta::FORMAT_VERSION,
            offsets: BTreeMap::new(),
        });
        f(&mut next);
        meta::write(&self.group_path(group), &next)?;
        groups.insert(group.to_string(), next);
        Ok(())
    }

    /// Durably records `group`'s next offsets in queues of `topic`.
    pub fn commit_offsets(&self, group: &str, topic: &str, offsets: &[(u32, u64)]) -> Result<()> {
        let queues = self.queue_count(topic)?;
        for &(queue, offset) in offsets {
            if queue >= queues {
                return Err(Error::QueueNotFound {
                    topic: topic.to_string(),
                    queue,
                    queues,
                });
            }
            let (start, end) = self.offsets(topic, queue)?;
            if offset > end {
                return Err(Error::OffsetOutOfRange {
                    topic: topic.to_string(),
                    queue,
                    offset,
                    start,
                    end,
                });
            }
        }
        self.update_group(group, |g| {
            let t = g.offsets.entry(topic.to_string()).or_default();
            for &(q, o) in offsets {
                t.insert(q, o);
            }
        })
    }

    /// `group`'s committed offsets in `topic`, by queue.
    pub fn committed_offsets(&self, group: &str, topic: &str) -> Result<BTreeMap<u32, u64>> {
        Ok(self
            .inner
            .groups
            .lock()?
            .get(group)
            .and_then(|g| g.offsets.get(topic))
            .cloned()
            .unwrap_or_default())
    }

    /// The offset `start` names in one queue.
    pub fn resolve_start(&self, topic: &str, queue: u32, start: StartFrom) -> Result<u64> {
        let (first, end) = self.offsets(topic, queue)?;
        match start {
            StartFrom::Earliest => Ok(first),
            StartFrom::Latest => Ok(end),
            StartFrom::Timestamp(ts) => Ok(self.seek_timestamp(topic, queue, ts)?.max(first)),
        }
    }

    /// Sets `group`'s offsets in every queue of `topic` to `to`; returns them.
    pub fn reset_group(&self, group: &str, topic: &str, to: StartFrom) -> Result<Vec<(u32, u64)>> {
        let offsets = (0..self.queue_count(topic)?)
            .map(|q| Ok((q, self.resolve_start(topic, q, to)?)))
            .collect::<Result<Vec<_>>>()?;
        self.commit_offsets(group, topic, &offsets)?;
        Ok(offsets)
    }

    /// `group`'s lag in each queue of `topic`.
    pub fn group_lag(&self, group: &str, topic: &str) -> Result<Vec<QueueLag>> {
        let committed = self.committed_offsets(group, topic)?;
        (0..self.queue_count(topic)?)
            .map(|queue| {
                let (start, end) = self.offsets(topic, queue)?;
                let c = committed.get(&queue).copied();
                Ok(QueueLag {
                    queue,
                    committed: c,
                    start,
                    end,
                    lag: end.saturating_sub(c.unwrap_or(start).max(start)),
                })
            })
            .collect()
    }

    /// Names of all groups that have committed offsets.
    pub fn list_groups(&self) -> Result<Vec<String>> {
        Ok(self.inner.groups.lock()?.keys().cloned().collect())
    }

    /// Topics a group has offsets in.
    pub fn group_topics(&self, group: &str) -> Result<Vec<String>> {
        Ok(self
            .inner
            .groups
            .lock()?
            .get(group)
            .map(|g| g.offsets.keys().cloned().collect())
            .unwrap_or_default())
    }

    /// Forgets a group and its offsets.
    pub fn delete_group(&self, group: &str) -> Result<()> {
        let mut groups = self.inner.groups.lock()?;
        if groups.remove(group).is_none() {
            return Err(Error::GroupNotFound(group.to_string()));
        }
        let path = self.group_path(group);
        std::fs::remove_file(&path).map_err(|e| Error::io("remove", &path, e))?;
        match path.parent() {
            Some(dir) => crate::fsutil::sync_dir(dir),
            None => Ok(()),
        }
    }

    pub(crate) fn forget_topic_offsets(&self, topic: &str) -> Result<()> {
        let names: Vec<String> = self
            .inner
            .groups
            .lock()?
            .iter()
            .filter(|(_, g)| g.offsets.contains_key(topic))
            .map(|(n, _)| n.clone())
            .collect();
        for name in names {
            self.update_group(&name, |g| {
                g.offsets.remove(topic);
            })?;
        }
        Ok(())
    }

    /// A consumer of every queue of `topic`.
    pub fn consumer(&self, topic: &str, options: ConsumerOptions) -> Result<Consumer> {
        if let Some(g) = &options.group {
            meta::validate_name(g)?;
        }
        let mut c = Consumer {
            store: self.clone(),
            topic: topic.to_string(),
            positions: Vec::new(),
            next_queue: 0,
            options,
        };
        c.pick_up_new_queues()?;
        Ok(c)
    }
}

/// Reads every queue of a topic, round robin, from committed offsets or a chosen start.
/// New queues added to the topic are picked up on the next poll.
#[derive(Debug)]
pub struct Consumer {
    store: Store,
    topic: String,
    positions: Vec<u64>,
    next_queue: usize,
    options: ConsumerOptions,
}

impl Consumer {
    fn pick_up_new_queues(&mut self) -> Result<()> {
        let n = self.store.queue_count(&self.topic)?;
        if self.positions.len() == n as usize {
            return Ok(());
        }
        let committed = match (&self.options.group, self.options.ignore_committed) {
            (Some(g), false) => self.store.committed_offsets(g, &self.topic)?,
            _ => BTreeMap::new(),
        };
        for q in self.positions.len() as u32..n {
            let (start, end) = self.store.offsets(&self.topic, q)?;
            let pos = match committed.get(&q) {
                Some(&c) => c.max(start).min(end),
                // A queue added after the consumer started has only new records: read them all.
                None if !self.positions.is_empty() => start,
                None => self
                    .store
                    .resolve_start(&self.topic, q, self.options.start)?,
            };
            self.positions.push(pos);
        }
        Ok(())
    }

    /// Up to `max_records` records, as (queue, record), from the queues in turn. Empty when
    /// every queue is at its end.
    pub fn poll(&mut self, max_records: usize) -> Result<Vec<(u32, StoredRecord)>> {
        self.pick_up_new_queues()?;
        let n = self.positions.len();
        let mut out = Vec::new();
        for i in 0..n {
            if out.len() >= max_records {
                break;
            }
            let q = (self.next_queue + i) % n;
            let opts = ReadOptions {
                max_records: (max_records - out.len()).min(self.options.read.max_records),
                ..self.options.read
            };
            let records = self
                .store
                .read(&self.topic, q as u32, self.positions[q], &opts)?;
            if let Some(last) = records.last() {
                self.positions[q] = last.offset + 1;
            }
            out.extend(records.into_iter().map(|r| (q as u32, r)));
        }
        self.next_queue = (self.next_queue + 1) % n.max(1);
        Ok(out)
    }

    /// Next offset to read in each queue.
    pub fn positions(&self) -> &[u64] {
        &self.positions
    }

    /// Moves the position in one queue.
    pub fn seek(&mut self, queue: u32, offset: u64) -> Result<()> {
        self.pick_up_new_queues()?;
        let n = self.positions.len() as u32;
        let slot = self
            .positions
            .get_mut(queue as usize)
            .ok_or(Error::QueueNotFound {
                topic: self.topic.clone(),
                queue,
                queues: n,
            })?;
        *slot = offset;
        Ok(())
    }

    /// Whether every queue's position is at its end.
    pub fn at_end(&self) -> Result<bool> {
        for (q, &pos) in self.positions.iter().enumerate() {
            if pos < self.store.offsets(&self.topic, q as u32)?.1 {
                return Ok(false);
            }
        }
        Ok(self.positions.len() == self.store.queue_count(&self.topic)? as usize)
    }

    /// Commits the current positions to the consumer's group.
    pub fn commit(&self) -> Result<()> {
        let Some(group) = &self.options.group else {
            return Err(Error::InvalidConfig(
                "this consumer has no group to commit to".into(),
            ));
        };
        let offsets: Vec<(u32, u64)> = self
            .positions
            .iter()
            .enumerate()
            .map(|(q, &o)| (q as u32, o))
            .collect();
        self.store.commit_offsets(group, &self.topic, &offsets)
    }
}
