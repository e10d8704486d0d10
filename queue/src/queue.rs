//! A logical queue: dense offsets over an ordered list of physical segments, which may live in
//! different storage directories.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, RwLock};

use crate::codec::{self, FLAG_APPEND_TIME, MAX_FRAME_LEN};
use crate::config::{Durability, TimestampType};
use crate::error::{Error, Result};
use crate::record::{Record, StoredRecord};
use crate::segment::{self, Budget, Opened, SEGMENT_HEADER_LEN, Segment};
use crate::spare::{Spare, is_spare_name};
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
    failed: AtomicBool,
    failure: Mutex<Option<String>>,
}

/// The queue's segment files, oldest first: those in each placement's directory whose base
/// offset falls in that placement's range. Files outside every range are left alone, with a
/// warning.
pub(crate) fn discover(placements: &[Placement]) -> Result<Vec<(PathBuf, u64)>> {
    let owner = |base: u64| placements.iter().rposition(|p| p.from <= base);
    let mut dirs: Vec<&Path> = placements.iter().map(|p| p.dir.as_path()).collect();
    dirs.sort();
    dirs.dedup();
    let mut found = Vec::new();
    for dir in dirs {
        let entries = match std::fs::read_dir(dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(Error::io("list", dir, e)),
        };
        for entry in entries {
            let entry = entry.map_err(|e| Error::io("list", dir, e))?;
            let name = entry.file_name();
            if name.to_str().is_some_and(is_spare_name) {
                // A spare made before a crash or close: not part of the queue.
                let _ = std::fs::remove_file(entry.path());
                continue;
            }
            let Some(base) = name.to_str().and_then(segment::parse_file_name) else {
                continue;
            };
            match owner(base) {
                Some(i) if placements[i].dir == dir => found.push((entry.path(), base)),
                _ => tracing::warn!(
                    path = %entry.path().display(),
                    "ignoring a segment outside the queue's offset ranges"
                ),
            }
        }
    }
    found.sort_by_key(|(_, base)| *base);
    Ok(found)
}

/// The directory of the placement whose range holds `offset`.
fn dir_for(placements: &[Placement], offset: u64) -> PathBuf {
    placements
        .iter()
        .rev()
        .find(|p| p.from <= offset)
        .or(placements.first())
        .map(|p| p.dir.clone())
        .unwrap_or_default()
}

/// Renames segment files that cannot be part of the queue to `*.damaged`, so that nothing is
/// deleted that someone may want to inspect, and says so.
fn quarantine(paths: impl Iterator<Item = PathBuf>) -> Result<()> {
    let mut dirs = Vec::new();
    for path in paths {
        let aside = path.with_extension("seg.damaged");
        match std::fs::remove_file(path.with_extension("idx")) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(Error::io("remove index of", &path, e)),
        }
        std::fs::rename(&path, &aside).map_err(|e| Error::io("set aside segment", &path, e))?;
        tracing::error!(
            path = %path.display(),
            moved_to = %aside.display(),
            "segment written after a torn one is set aside; its records were never durable"
        );
        if let Some(dir) = path.parent() {
            dirs.push(dir.to_path_buf());
        }
    }
    // Durable before anything is appended in their place.
    dirs.dedup();
    for dir in dirs {
        crate::fsutil::sync_dir(&dir)?;
    }
    Ok(())
}

impl Queue {
    /// Opens (or, with no segment yet, creates) the queue whose data the placements describe.
    pub(crate) fn open(settings: QueueSettings, placements: &[Placement]) -> Result<Queue> {
        if placements.is_empty() {
            return Err(Error::Internal(format!(
                "queue {} has no placement",
                settings.id
            )));
        }
        let found = discover(placements)?;
        let mut segments: Vec<Arc<Segment>> = Vec::with_capacity(found.len().max(1));
        let mut found = found.into_iter().peekable();
        while let Some((path, base)) = found.next() {
            if let Some(prev) = segments.last()
                && prev.published_end() != base
            {
                return Err(Error::corrupt(
                    &path,
                    0,
                    format!(
                        "segment starts at offset {base} but the one before it ({}) ends at {}",
                        prev.path.display(),
                        prev.published_end()
                    ),
                ));
            }
            if found.peek().is_none() {
                segments.push(Segment::open_active(path, base, settings.segment_bytes)?);
                break;
            }
            match Segment::open_sealed(path.clone(), base)? {
                Opened::Sealed(seg) => segments.push(seg),
                Opened::TornTail => {
                    // Sealed, but the machine stopped before its fsync finished. Nothing written
                    // after it was acknowledged under `always` (acknowledgements wait for every
                    // older segment to be durable), so what follows is set aside, not used.
                    // Unless a later segment says some of it was durable: then an fsync did
                    // cover this one, and its damage is corruption, not a torn tail.
                    let later: Vec<PathBuf> = found.by_ref().map(|(p, _)| p).collect();
                    if let Some(durable) = later
                        .iter()
                        .find(|p| segment::watermark_of(p).is_some_and(|w| w > SEGMENT_HEADER_LEN))
                    {
                        return Err(Error::corrupt(
                            &path,
                            0,
                            format!(
                                "the segment's tail is damaged, but {} after it holds durable records",
                                durable.display()
                            ),
                        ));
                    }
                    quarantine(later.into_iter())?;
                    segments.push(Segment::open_active(path, base, settings.segment_bytes)?);
                    break;
                }
            }
        }
        // The next offset belongs to the placement whose range holds it; after a crash that
        // lost the tail of an older placement's segment, that is the older one, and appends
        // continue there until they reach the newer placement's range.
        let next = segments
            .last()
            .map_or(placements[0].from, |s| s.published_end());
        let owner = dir_for(placements, next);
        let active = match segments.last() {
            Some(s) if s.path.parent() == Some(owner.as_path()) => Arc::clone(s),
            other => {
                // No segment yet, or none in the owning placement: start one there.
                crate::fsutil::create_dir_durable(&owner)?;
                if let Some(prev) = other {
                    prev.seal();
                    prev.finish_seal()?;
                }
                let spare = Spare::prepare(&owner, settings.segment_bytes)?;
                let s = Segment::from_spare(spare, next, false)?;
                s.sync_to(SEGMENT_HEADER_LEN)?;
                segments.push(Arc::clone(&s));
                s
            }
        };
        let (pos, end) = active.written();
        Ok(Queue {
            settings,
            segments: RwLock::new(segments),
            writer: Mutex::new(Writer {
                active,
                pos,
                next_offset: end,
                timestamps: Vec::new(),
            }),
            pending: Mutex::new(Vec::new()),
            spare: Mutex::new(None),
            placements: Mutex::new(placements.to_vec()),
            sync_state: Mutex::new(false),
            sync_done: Condvar::new(),
            maintain_lock: Mutex::new(()),
            published_end: AtomicU64::new(end),
            written_end: AtomicU64::new(end),
            durable_end: AtomicU64::new(end),
            last_sync_ms: AtomicU64::new(0),
            failed: AtomicBool::new(false),
            failure: Mutex::new(None),
        })
    }

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
                    Spare::prepare(&dir, capacity)?
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

    /// A new segment: the spare when it fits, else a plain reserved file (whose first writes
    /// may stall; see [`crate::spare`]).
    fn fresh_segment(&self, dir: &Path, base: u64, capacity: u64) -> Result<Arc<Segment>> {
        match self.spare.lock()?.take() {
            Some(s) if s.dir == dir && s.capacity >= capacity => {
                Segment::from_spare(s, base, false)
            }
            other => {
                if let Some(s) = other {
                    s.discard();
                }
                Segment::create(dir, base, capacity)
            }
        }
    }

    /// Faults in the pages the writer is about to fill (background work, off the append path).
    pub(crate) fn prefault(&self) -> Result<()> {
        let active = self.segments.read()?.last().cloned();
        match active {
            Some(active) => active.prefault_ahead(PREFAULT_WINDOW),
            None => Ok(()),
        }
    }

    /// Prepares the next segment once the active one is half full, so the roll finds it ready
    /// (see [`crate::spare`]). Slow: background work.
    pub(crate) fn prepare_spare(&self) -> Result<()> {
        let _one = self.maintain_lock.lock()?;
        // Not from the writer's lock: a background thread preempted while holding it would stall
        // appends.
        let Some(active) = self.segments.read()?.last().cloned() else {
            return Ok(());
        };
        let dir = dir_for(&self.placements.lock()?, active.written().1);
        if self.spare.lock()?.is_some() {
            return Ok(());
        }
        if active.written().0.saturating_mul(2) < active.capacity() {
            return Ok(());
        }
        let spare = Spare::prepare(&dir, self.settings.segment_bytes)?;
        let mut slot = self.spare.lock()?;
        if slot.is_none() {
            *slot = Some(spare);
        } else {
            spare.discard();
        }
        Ok(())
    }

    /// Stops background work on this queue (sealing, spares) while the guard lives.
    pub(crate) fn lock_maintenance(&self) -> Result<std::sync::MutexGuard<'_, ()>> {
        Ok(self.maintain_lock.lock()?)
    }

    /// Deletes the spare segment, if any (when the store closes).
    pub(crate) fn discard_spare(&self) -> Result<()> {
        if let Some(s) = self.spare.lock()?.take() {
            s.discard();
        }
        Ok(())
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
        let spare = Spare::prepare(dir, self.settings.segment_bytes)?;
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

    /// Makes everything appended up to `target` durable, sharing one fsync among the appenders
    /// that wait at the same time (group commit). Under `always`, it also publishes.
    pub(crate) fn sync_until(&self, target: u64) -> Result<()> {
        if self.durable_end.load(Ordering::Acquire) >= target {
            return Ok(());
        }
        // One leader syncs everything written so far while the others wait on the condvar;
        // whoever is still short afterwards leads the next round. Followers do not queue on a
        // lock, so one round covers every append that came before it.
        let mut leading = self.sync_state.lock()?;
        loop {
            self.check_healthy()?;
            if self.durable_end.load(Ordering::Acquire) >= target {
                return Ok(());
            }
            if !*leading {
                break;
            }
            leading = self.sync_done.wait(leading)?;
        }
        *leading = true;
        drop(leading);
        let synced = self.sync_written();
        if let Err(e) = &synced {
            // After a failed fsync the kernel may drop the dirty pages and report success
            // next time: nothing appended so far can be called durable again.
            self.fail(e);
        }
        *self.sync_state.lock()? = false;
        self.sync_done.notify_all();
        synced?;
        if self.durable_end.load(Ordering::Acquire) < target {
            return Err(Error::Internal(format!(
                "sync of {}/{} made no progress towards offset {target}",
                self.settings.topic, self.settings.id
            )));
        }
        Ok(())
    }

    fn fail(&self, e: &Error) {
        if let Ok(mut f) = self.failure.lock() {
            f.get_or_insert_with(|| e.to_string());
        }
        self.failed.store(true, Ordering::Release);
    }

    fn check_healthy(&self) -> Result<()> {
        if self.failed.load(Ordering::Acquire) {
            let why = self.failure.lock()?.clone().unwrap_or_default();
            return Err(Error::BackgroundFailed(why));
        }
        Ok(())
    }

    /// fsyncs every segment with unsynced bytes, oldest first, and publishes what is durable.
    fn sync_written(&self) -> Result<()> {
        // One snapshot of the list: a roll between two looks could hide a sealed segment whose
        // tail is not yet on disk. Segments are synced in order, so the unsynced ones (and the
        // active one) are a suffix.
        let segs: Vec<Arc<Segment>> = {
            let all = self.segments.read()?;
            let keep = all
                .iter()
                .rev()
                .take_while(|s| !(s.is_sealed() && s.is_synced()))
                .count()
                .max(1);
            all[all.len().saturating_sub(keep)..].to_vec()
        };
        for seg in &segs {
            let (len, end) = seg.written();
            seg.sync_to(len)?;
            seg.publish(len, end);
            self.published_end.fetch_max(end, Ordering::AcqRel);
            self.durable_end.fetch_max(end, Ordering::AcqRel);
        }
        Ok(())
    }

    /// Background work: finish sealed segments, and fsync per the `interval` policy.
    pub(crate) fn maintain(&self, now_ms: u64, closing: bool) -> Result<()> {
        self.finish_seals()?;
        self.flush(now_ms, closing)
    }

    /// Runs background work unless the queue failed; a failure marks it failed.
    fn guarded(&self, work: impl FnOnce() -> Result<()>) -> Result<()> {
        self.check_healthy()?;
        work().inspect_err(|e| self.fail(e))
    }

    /// Finishes sealed segments: fsync, watermark, index file, truncation. Slow.
    pub(crate) fn finish_seals(&self) -> Result<()> {
        self.guarded(|| self.finish_seals_inner())
    }

    fn finish_seals_inner(&self) -> Result<()> {
        let _one = self.maintain_lock.lock()?;
        let pending: Vec<Arc<Segment>> = self.pending.lock()?.clone();
        for seg in &pending {
            seg.finish_seal()?;
            let (_, end) = seg.written();
            self.published_end.fetch_max(end, Ordering::AcqRel);
        }
        if !pending.is_empty() {
            self.pending
                .lock()?
                .retain(|s| !pending.iter().any(|p| Arc::ptr_eq(p, s)));
        }
        Ok(())
    }

    /// fsyncs what the `interval` policy says is due (everything, when closing).
    pub(crate) fn flush(&self, now_ms: u64, closing: bool) -> Result<()> {
        self.guarded(|| self.flush_inner(now_ms, closing))
    }

    fn flush_inner(&self, now_ms: u64, closing: bool) -> Result<()> {
        let due = match self.settings.durability {
            Durability::Interval(ms) => {
                closing || now_ms.saturating_sub(self.last_sync_ms.load(Ordering::Relaxed)) >= ms
            }
            Durability::Always => false,
            Durability::Os => closing,
        };
        let written = self.written_end.load(Ordering::Acquire);
        if due && self.durable_end.load(Ordering::Acquire) < written {
            self.sync_until(written)?;
            self.last_sync_ms.store(now_ms, Ordering::Relaxed);
        }
        if closing {
            // A clean close leaves a watermark covering everything, for the next recovery.
            let active = self.segments.read()?.last().cloned();
            if let Some(active) = active {
                active.sync_watermark()?;
            }
        }
        Ok(())
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
