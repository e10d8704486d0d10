//! A logical queue: dense offsets over an ordered list of physical segments, which may live in
//! different storage directories.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, RwLock};

use crate::codec::{self, FLAG_APPEND_TIME, MAX_FRAME_LEN};
use crate::config::{Durability, TimestampType};
use crate::error::{Error, Result};
use crate::health::Health;
use crate::record::{Record, StoredRecord};
use crate::segment::{Budget, SEGMENT_HEADER_LEN, Segment};
use crate::spare::Spare;
use crate::store::SegmentDescription;

/// Milliseconds since the Unix epoch.
pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// How far ahead of the writer the background thread faults pages in.
pub(crate) const PREFAULT_WINDOW: u64 = 16 << 20;

/// Fixed settings of a queue, from its topic.
#[derive(Clone, Debug)]
pub(crate) struct QueueSettings {
    pub(crate) topic: String,
    pub(crate) id: u32,
    pub(crate) durability: Durability,
    pub(crate) timestamp_type: TimestampType,
    pub(crate) segment_bytes: u64,
}

/// A range of offsets stored under one directory: offsets from `from` up to the next range's
/// `from` are in segments under `dir`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Placement {
    pub(crate) dir: PathBuf,
    pub(crate) from: u64,
}

#[derive(Debug)]
struct Writer {
    active: Arc<Segment>,
    pos: u64,
    next_offset: u64,
    timestamps: Vec<i64>,
}

/// One logical queue. Appends are serialized by the writer lock; reads take no lock but the
/// brief read lock on the segment list.
#[derive(Debug)]
pub(crate) struct Queue {
    pub(crate) settings: QueueSettings,
    segments: RwLock<Vec<Arc<Segment>>>,
    writer: Mutex<Writer>,
    /// Sealed segments whose fsync, index and truncation are still to do.
    pending: Mutex<Vec<Arc<Segment>>>,
    /// The next segment, made ready in the background.
    spare: Mutex<Option<Spare>>,
    /// Where each offset range's segments go; the newest placement takes new segments.
    placements: Mutex<Vec<Placement>>,
    /// Whether a group-commit leader is syncing; `sync_done` wakes its followers.
    sync_state: Mutex<bool>,
    sync_done: Condvar,
    /// One `maintain` at a time: the background thread and `Store::sync` may both call it.
    maintain_lock: Mutex<()>,
    published_end: AtomicU64,
    written_end: AtomicU64,
    durable_end: AtomicU64,
    last_sync_ms: AtomicU64,
    /// Set when an fsync failed: the queue then refuses appends until the store is reopened.
    health: Health,
}

mod background;
mod open;

use open::dir_for;

impl Queue {
    /// First retained offset and next offset to be read (the end), as readers see them.
    pub(crate) fn offsets(&self) -> Result<(u64, u64)> {
        // The list first: while it is held, retention cannot move the start past the end.
        let segs = self.segments.read()?;
        let end = self.published_end.load(Ordering::Acquire);
        let start = segs.first().map_or(end, |s| s.base_offset).min(end);
        Ok((start, end))
    }

    /// Appends `records` as one frame and returns the offset of the first.
    pub(crate) fn append(&self, records: &[Record]) -> Result<u64> {
        self.check_healthy()?;
        let now = now_ms();
        let mut w = self.writer.lock()?;
        let base = w.next_offset;
        if records.is_empty() {
            return Ok(base);
        }
        let append_time = self.settings.timestamp_type == TimestampType::Append;
        let mut timestamps = std::mem::take(&mut w.timestamps);
        timestamps.clear();
        timestamps.extend(records.iter().map(|r| match r.timestamp {
            Some(ts) if !append_time => ts,
            _ => now,
        }));
        let len = codec::encoded_len(records, &timestamps);
        if len > MAX_FRAME_LEN {
            w.timestamps = timestamps;
            return Err(Error::BatchTooLarge {
                bytes: len as u64,
                limit: MAX_FRAME_LEN as u64,
            });
        }
        if w.pos + len as u64 > w.active.capacity()
            && let Err(e) = self.roll(&mut w, len as u64)
        {
            w.timestamps = timestamps;
            return Err(e);
        }
        let flags = if append_time { FLAG_APPEND_TIME } else { 0 };
        let pos = w.pos;
        // SAFETY: we hold the writer lock, and `pos..pos+len` is above everything published and
        // within the capacity (checked above).
        let max_ts = unsafe {
            w.active.write_frame(pos, len, |slot| {
                codec::encode_frame(slot, base, flags, records, &timestamps)
            })
        };
        w.timestamps = timestamps;
        w.active.note_frame(pos, base, max_ts)?;
        w.pos += len as u64;
        w.next_offset += records.len() as u64;
        let (end, active_len) = (w.next_offset, w.pos);
        w.active.record_write(active_len, end);
        self.written_end.store(end, Ordering::Release);
        if self.settings.durability == Durability::Always {
            drop(w);
            self.sync_until(end)?;
        } else {
            w.active.publish(active_len, end);
            self.published_end.store(end, Ordering::Release);
        }
        Ok(base)
    }

    /// Seals the active segment and starts a new one, large enough for `need` more bytes, in
    /// the directory of the placement that owns the next offset.
    fn roll(&self, w: &mut Writer, need: u64) -> Result<()> {
        let t0 = std::time::Instant::now();
        let r = self.roll_inner(w, need);
        tracing::debug!(
            topic = %self.settings.topic,
            queue = self.settings.id,
            elapsed_us = t0.elapsed().as_micros() as u64,
            "rolled segment"
        );
        r
    }

    fn roll_inner(&self, w: &mut Writer, need: u64) -> Result<()> {
        let dir = dir_for(&self.placements.lock()?, w.next_offset);
        let capacity = self.settings.segment_bytes.max(SEGMENT_HEADER_LEN + need);
        if w.pos == SEGMENT_HEADER_LEN {
            // The active segment is empty: replace it rather than leave an empty sealed one
            // with the same base offset. The new file is made first and renamed over the old
            // one, so a failure leaves the old one in place.
            let spare = match self.spare.lock()?.take() {
                Some(s) if s.dir == dir && s.capacity >= capacity => s,
                other => {
                    if let Some(s) = other {
                        s.discard();
                    }
                    Spare::prepare(&dir, capacity, PREFAULT_WINDOW)?
                }
            };
            // Same directory: the rename replaces the empty segment's file in one step.
            let fresh = Segment::from_spare(spare, w.next_offset, true)?;
            if fresh.path != w.active.path {
                w.active.delete_files()?;
            }
            let mut segs = self.segments.write()?;
            if let Some(last) = segs.last_mut() {
                *last = Arc::clone(&fresh);
            }
            w.active = fresh;
        } else {
            let fresh = self.fresh_segment(&dir, w.next_offset, capacity)?;
            let old = std::mem::replace(&mut w.active, Arc::clone(&fresh));
            old.seal();
            self.pending.lock()?.push(old);
            self.segments.write()?.push(fresh);
            w.pos = SEGMENT_HEADER_LEN;
        }
        Ok(())
    }

    /// A new segment: the spare when it fits, else one made now without prefaulting (its first
    /// writes fault pages on the append path; see [`crate::spare`]).
    fn fresh_segment(&self, dir: &Path, base: u64, capacity: u64) -> Result<Arc<Segment>> {
        let spare = match self.spare.lock()?.take() {
            Some(s) if s.dir == dir && s.capacity >= capacity => s,
            other => {
                if let Some(s) = other {
                    s.discard();
                }
                Spare::prepare(dir, capacity, 0)?
            }
        };
        Segment::from_spare(spare, base, false)
    }

    /// Sends new appends to segments under `dir`; older segments stay where they are and reads
    /// cross over. `persist` records the new placement durably before any append lands there.
    /// `persist` gets the offset from which the new directory holds the queue.
    pub(crate) fn relocate(
        &self,
        dir: &Path,
        persist: impl FnOnce(u64) -> Result<()>,
    ) -> Result<()> {
        crate::fsutil::create_dir_durable(dir)?;
        // Compared with where the active segment is: a retry after a failed roll must still roll.
        if self.writer.lock()?.active.path.parent() == Some(dir) {
            return Ok(());
        }
        // The first segment in `dir` is prepared before the writer is stopped.
        let spare = Spare::prepare(dir, self.settings.segment_bytes, PREFAULT_WINDOW)?;
        let mut w = self.writer.lock()?;
        if let Some(old) = self.spare.lock()?.replace(spare) {
            old.discard();
        }
        persist(w.next_offset)?;
        // From here on the next segment must start in `dir`, even if this roll fails: the
        // placement now says offsets from `next_offset` on live there.
        {
            let mut placements = self.placements.lock()?;
            placements.retain(|p| p.from < w.next_offset);
            placements.push(Placement {
                dir: dir.to_path_buf(),
                from: w.next_offset,
            });
        }
        self.roll(&mut w, 0)?;
        w.active.sync_to(SEGMENT_HEADER_LEN)
    }

    /// Records in `from..` within `budget`, crossing segment boundaries.
    pub(crate) fn read(&self, from: u64, budget: &mut Budget) -> Result<Vec<StoredRecord>> {
        let segs = self.segments.read()?;
        let end = self.published_end.load(Ordering::Acquire);
        let start = segs.first().map_or(end, |s| s.base_offset).min(end);
        if from < start || from > end {
            return Err(Error::OffsetOutOfRange {
                topic: self.settings.topic.clone(),
                queue: self.settings.id,
                offset: from,
                start,
                end,
            });
        }
        let mut out = Vec::with_capacity(budget.records.min((end - from) as usize));
        let first = segs
            .partition_point(|s| s.base_offset <= from)
            .saturating_sub(1);
        let mut cursor = from;
        for seg in &segs[first..] {
            if cursor >= end || budget.exhausted() {
                break;
            }
            seg.read(cursor, end, budget, &mut out)?;
            cursor = out.last().map_or(cursor, |r| r.offset + 1).max(cursor);
            if cursor < seg.published_end() && !budget.exhausted() {
                break;
            }
            cursor = cursor.max(seg.published_end());
        }
        Ok(out)
    }

    /// First offset whose record has a timestamp at or after `ts`; the end offset if none has.
    pub(crate) fn seek_time(&self, ts: i64) -> Result<u64> {
        let end = self.published_end.load(Ordering::Acquire);
        for seg in self.segments.read()?.iter() {
            if let Some(offset) = seg.seek_time(ts)? {
                return Ok(offset.min(end));
            }
        }
        Ok(end)
    }

    /// Deletes whole sealed segments from the front while retention says so; returns how many
    /// segments and bytes went.
    pub(crate) fn apply_retention(
        &self,
        max_age_ms: Option<u64>,
        max_bytes: Option<u64>,
        now: i64,
    ) -> Result<(usize, u64)> {
        let mut doomed = Vec::new();
        {
            // Lock order: segments, then pending. The list is held across the check so that a
            // roll cannot slip a just-sealed segment past it.
            let mut segs = self.segments.write()?;
            let pending = self.pending.lock()?.clone();
            let mut total: u64 = segs.iter().map(|s| s.data_len()).sum();
            while segs.len() > 1 {
                let front = &segs[0];
                if pending.iter().any(|p| Arc::ptr_eq(p, front)) {
                    break;
                }
                let too_old = max_age_ms.is_some_and(|age| {
                    front.max_timestamp()
                        < now.saturating_sub(i64::try_from(age).unwrap_or(i64::MAX))
                });
                let too_big = max_bytes.is_some_and(|max| total > max);
                if !(too_old || too_big) {
                    break;
                }
                total -= front.data_len();
                doomed.push(segs.remove(0));
            }
        }
        let bytes = doomed.iter().map(|s| s.data_len()).sum();
        for seg in &doomed {
            tracing::info!(path = %seg.path.display(), "retention deletes segment");
            seg.delete_files()?;
        }
        // Make the removals durable: a queue whose older segment reappears after a crash while
        // a newer one is gone would have a hole.
        let mut dirs: Vec<&Path> = doomed.iter().filter_map(|s| s.path.parent()).collect();
        dirs.dedup();
        for dir in dirs {
            crate::fsutil::sync_dir(dir)?;
        }
        Ok((doomed.len(), bytes))
    }

    /// The queue's physical segments, oldest first.
    pub(crate) fn segment_info(&self) -> Result<Vec<SegmentDescription>> {
        Ok(self
            .segments
            .read()?
            .iter()
            .map(|s| SegmentDescription {
                path: s.path.clone(),
                base_offset: s.base_offset,
                end_offset: s.written().1,
                bytes: s.data_len(),
                sealed: s.is_sealed(),
            })
            .collect())
    }

    /// Checks every record of every segment; returns the number of records checked.
    pub(crate) fn verify(&self) -> Result<u64> {
        let segs: Vec<_> = self.segments.read()?.clone();
        segs.iter().map(|s| s.verify()).sum()
    }

    /// Whether everything written is on disk.
    pub(crate) fn is_synced(&self) -> Result<bool> {
        Ok(self.segments.read()?.iter().all(|s| s.is_synced()))
    }
}
