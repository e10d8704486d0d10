//! A physical segment: one memory-mapped file holding the frames of a contiguous offset range
//! of one logical queue.
//!
//! File layout: a 64-byte header (magic "RSTQSEG\0", format version, base offset, a durable
//! watermark; see `recover.rs`), then frames (see [`crate::codec`]) back to back, then zeros up to the reserved
//! size. A segment being written is preallocated to its full size and written through a shared
//! memory map, so an append is a copy into the page cache with no system call; once sealed, the
//! file is cut to its data length and its index written beside it (see [`crate::index`]).

use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use memmap2::{MmapOptions, MmapRaw};

use crate::error::{Error, Result};
use crate::fsutil;
use crate::index::{INDEX_INTERVAL, IndexEntry, SealedIndex};
use crate::spare::Spare;

mod read;
mod recover;

use recover::header_bytes;
pub(crate) use recover::{Opened, watermark_of};

const SEGMENT_MAGIC: [u8; 8] = *b"RSTQSEG\0";
const SEGMENT_VERSION: u16 = 1;
/// Bytes faulted in per call when prefaulting.
const PREFAULT_STEP: u64 = 1 << 20;

/// Bytes before the first frame.
pub(crate) const SEGMENT_HEADER_LEN: u64 = 64;

/// File name of the segment starting at `base`.
pub(crate) fn file_name(base: u64) -> String {
    format!("{base:020}.seg")
}

/// Base offset parsed from a segment file name, if it is one.
pub(crate) fn parse_file_name(name: &str) -> Option<u64> {
    let stem = name.strip_suffix(".seg")?;
    (stem.len() == 20).then(|| stem.parse().ok()).flatten()
}

/// Limits of one read call, consumed as records are taken.
#[derive(Debug)]
pub(crate) struct Budget {
    pub(crate) records: usize,
    pub(crate) bytes: usize,
    /// The first record is taken whatever its size, so a large record can always be read.
    pub(crate) taken_any: bool,
}

impl Budget {
    pub(crate) fn exhausted(&self) -> bool {
        self.records == 0 || (self.taken_any && self.bytes == 0)
    }
}

/// One segment. Readers read below `published_len` only; the single writer (the queue's writer,
/// under its lock) writes above it. That split is what makes sharing the mapping sound.
pub(crate) struct Segment {
    pub(crate) path: PathBuf,
    pub(crate) base_offset: u64,
    file: File,
    map: MmapRaw,
    capacity: u64,
    published_len: AtomicU64,
    published_end: AtomicU64,
    written_len: AtomicU64,
    written_end: AtomicU64,
    synced_len: AtomicU64,
    max_timestamp: AtomicI64,
    index: RwLock<Vec<IndexEntry>>,
    /// Serializes fsyncs, which also write the header's watermark.
    sync_lock: Mutex<()>,
    /// Set when an fsync failed; every later one fails too.
    sync_failed: AtomicBool,
    /// The watermark last made durable, so that a clean close of an idle segment costs nothing.
    watermarked_len: AtomicU64,
    /// Position of the last index entry (`u64::MAX`: none), so appends skip the index lock.
    last_entry_pos: AtomicU64,
    /// Bytes whose pages have been faulted in writable ahead of the writer.
    prefaulted_len: AtomicU64,
    sealed: AtomicBool,
    dir_synced: AtomicBool,
}

impl std::fmt::Debug for Segment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Segment")
            .field("path", &self.path)
            .field("base_offset", &self.base_offset)
            .field("published_end", &self.published_end())
            .finish()
    }
}

impl Segment {
    /// Turns a spare into an empty segment starting at `base`: header, then its final name.
    /// With `replace`, an existing file of the same name (an empty segment being replaced) is
    /// replaced; otherwise finding one is an error, never an overwrite.
    pub(crate) fn from_spare(spare: Spare, base: u64, replace: bool) -> Result<Arc<Segment>> {
        let path = spare.dir.join(file_name(base));
        let header = header_bytes(base);
        // SAFETY: the spare's mapping is ours alone until the segment is shared, and the
        // header lies within it. A store through the prefaulted map, unlike a write(2), does
        // not touch the file system's journal on the append path.
        unsafe {
            std::ptr::copy_nonoverlapping(header.as_ptr(), spare.map.as_mut_ptr(), header.len());
        }
        let named = if replace {
            std::fs::rename(&spare.path, &path)
        } else {
            std::fs::hard_link(&spare.path, &path).and_then(|()| std::fs::remove_file(&spare.path))
        };
        if let Err(e) = named {
            let _ = std::fs::remove_file(&spare.path);
            return Err(Error::io("name spare segment", &path, e));
        }
        let prefaulted = spare.prefaulted;
        let seg = Self::from_parts(path, spare.file, spare.map, base, spare.capacity, true);
        seg.prefaulted_len.store(prefaulted, Ordering::Release);
        seg.record_write(SEGMENT_HEADER_LEN, base);
        seg.publish(SEGMENT_HEADER_LEN, base);
        Ok(Arc::new(seg))
    }

    fn map(path: PathBuf, file: File, base: u64, capacity: u64, writable: bool) -> Result<Segment> {
        let mut opts = MmapOptions::new();
        opts.len(
            usize::try_from(capacity).map_err(|_| Error::Internal("segment too large".into()))?,
        );
        let map = if writable {
            opts.map_raw(&file)
        } else {
            opts.map_raw_read_only(&file)
        }
        .map_err(|e| Error::io("map segment", &path, e))?;
        Ok(Self::from_parts(path, file, map, base, capacity, writable))
    }

    fn from_parts(
        path: PathBuf,
        file: File,
        map: MmapRaw,
        base: u64,
        capacity: u64,
        writable: bool,
    ) -> Segment {
        Segment {
            path,
            base_offset: base,
            file,
            map,
            capacity,
            published_len: AtomicU64::new(0),
            published_end: AtomicU64::new(base),
            written_len: AtomicU64::new(0),
            written_end: AtomicU64::new(base),
            synced_len: AtomicU64::new(0),
            max_timestamp: AtomicI64::new(i64::MIN),
            index: RwLock::new(Vec::new()),
            sync_lock: Mutex::new(()),
            sync_failed: AtomicBool::new(false),
            watermarked_len: AtomicU64::new(0),
            last_entry_pos: AtomicU64::new(u64::MAX),
            prefaulted_len: AtomicU64::new(0),
            sealed: AtomicBool::new(!writable),
            dir_synced: AtomicBool::new(!writable),
        }
    }

    fn open_file(path: &Path, writable: bool) -> Result<(File, u64)> {
        let file = OpenOptions::new()
            .read(true)
            .write(writable)
            .open(path)
            .map_err(|e| Error::io("open segment", path, e))?;
        let len = file
            .metadata()
            .map_err(|e| Error::io("stat segment", path, e))?
            .len();
        Ok((file, len))
    }

    fn advise(&self, advice: memmap2::Advice) -> Result<()> {
        self.map
            .advise(advice)
            .map_err(|e| Error::io("madvise segment", &self.path, e))
    }

    fn slice(&self, start: u64, end: u64) -> &[u8] {
        let end = end.min(self.capacity);
        let start = start.min(end);
        // SAFETY: within the mapping; callers read only bytes no writer is changing (published
        // bytes, or any bytes before the segment is shared).
        unsafe {
            std::slice::from_raw_parts(
                self.map.as_ptr().add(start as usize),
                (end - start) as usize,
            )
        }
    }

    /// # Safety
    /// The caller must be the segment's only writer and the range must be unpublished.
    unsafe fn zero(&self, start: u64, len: u64) {
        // SAFETY: per the contract above.
        unsafe { std::ptr::write_bytes(self.map.as_mut_ptr().add(start as usize), 0, len as usize) }
    }

    pub(crate) fn published_end(&self) -> u64 {
        self.published_end.load(Ordering::Acquire)
    }

    pub(crate) fn published_len(&self) -> u64 {
        self.published_len.load(Ordering::Acquire)
    }

    pub(crate) fn max_timestamp(&self) -> i64 {
        self.max_timestamp.load(Ordering::Acquire)
    }

    pub(crate) fn capacity(&self) -> u64 {
        self.capacity
    }

    pub(crate) fn is_sealed(&self) -> bool {
        self.sealed.load(Ordering::Acquire)
    }

    /// Writes a frame of `len` bytes at `pos` with `fill`, which must write all of it.
    ///
    /// # Safety
    /// The caller must be the segment's only writer, and `pos..pos+len` must lie above the
    /// published length and within the capacity.
    pub(crate) unsafe fn write_frame<T>(
        &self,
        pos: u64,
        len: usize,
        fill: impl FnOnce(&mut [u8]) -> T,
    ) -> T {
        // SAFETY: per the contract above, no one else reads or writes these bytes.
        let slot =
            unsafe { std::slice::from_raw_parts_mut(self.map.as_mut_ptr().add(pos as usize), len) };
        fill(slot)
    }

    /// Records a frame the writer has written at `pos`, for the index. Takes the index lock
    /// only when an entry is due (every [`INDEX_INTERVAL`] bytes).
    pub(crate) fn note_frame(&self, pos: u64, base_offset: u64, max_ts: i64) -> Result<()> {
        let last = self.last_entry_pos.load(Ordering::Relaxed);
        if last == u64::MAX || pos - last >= INDEX_INTERVAL {
            self.index.write()?.push(IndexEntry {
                offset: base_offset,
                pos,
                max_ts_before: self.max_timestamp(),
            });
            self.last_entry_pos.store(pos, Ordering::Relaxed);
        }
        self.max_timestamp.fetch_max(max_ts, Ordering::AcqRel);
        Ok(())
    }

    /// Faults in, writable, the pages up to `window` bytes past the written length, without
    /// changing them. The first store to a page otherwise runs the file system's page-fault
    /// handler in the writer, which updates the file's mtime in a journal transaction and can
    /// wait milliseconds for a journal commit. Safe alongside the writer: contents are untouched.
    pub(crate) fn prefault_ahead(&self, window: u64) -> Result<()> {
        if self.is_sealed() {
            return Ok(());
        }
        let page = 4096;
        let target = (self.written().0 + window).min(self.capacity) / page * page;
        let from = self
            .prefaulted_len
            .load(Ordering::Acquire)
            .max(self.written().0 / page * page);
        if target <= from {
            return Ok(());
        }
        // In small steps: each call holds the process's memory-map lock, and a long hold would
        // queue other threads' page faults behind a waiting mmap/munmap.
        let mut at = from;
        // Stop as soon as the segment is sealed: its pages are being dropped before its fsync.
        while at < target && !self.is_sealed() {
            let step = (target - at).min(PREFAULT_STEP);
            match self
                .map
                .advise_range(memmap2::Advice::PopulateWrite, at as usize, step as usize)
            {
                Ok(()) => {}
                // Kernels before 5.14 lack MADV_POPULATE_WRITE: the writer faults pages itself.
                Err(e) if e.raw_os_error() == Some(libc::EINVAL) => return Ok(()),
                Err(e) => return Err(Error::io("prefault segment", &self.path, e)),
            }
            at += step;
            self.prefaulted_len.fetch_max(at, Ordering::AcqRel);
        }
        self.prefaulted_len.fetch_max(target, Ordering::AcqRel);
        Ok(())
    }

    /// Records that the writer has written whole frames up to `len` bytes and offset `end`.
    /// `len` is stored first, so a reader of `written()` never sees an end without its bytes.
    pub(crate) fn record_write(&self, len: u64, end: u64) {
        self.written_len.store(len, Ordering::Release);
        self.written_end.store(end, Ordering::Release);
    }

    /// Bytes and end offset written so far (some perhaps not yet published or synced).
    pub(crate) fn written(&self) -> (u64, u64) {
        let end = self.written_end.load(Ordering::Acquire);
        let len = self.written_len.load(Ordering::Acquire);
        (len, end)
    }

    /// Makes bytes up to `len` and records up to `end` visible to readers.
    pub(crate) fn publish(&self, len: u64, end: u64) {
        self.published_len.fetch_max(len, Ordering::AcqRel);
        self.published_end.fetch_max(end, Ordering::AcqRel);
    }

    /// Flushes written bytes up to `len` to the disk (and the directory entry, the first time).
    /// The same flush carries the header's watermark of what was durable before it (see
    /// `recover.rs`).
    pub(crate) fn sync_to(&self, len: u64) -> Result<()> {
        let _one = self.sync_lock.lock()?;
        if self.sync_failed.load(Ordering::Acquire) {
            // The kernel reports a writeback error once and may have dropped the pages: a later
            // "successful" fsync proves nothing about them.
            return Err(Error::BackgroundFailed(format!(
                "an earlier fsync of {} failed",
                self.path.display()
            )));
        }
        let from = self.synced_len.load(Ordering::Acquire);
        if len > from {
            if from >= SEGMENT_HEADER_LEN {
                // SAFETY: we hold the sync lock; readers never read the header of a shared
                // segment.
                unsafe { self.write_watermark(from) };
            }
            if let Err(e) = self.map.flush_range(0, len as usize) {
                self.sync_failed.store(true, Ordering::Release);
                return Err(Error::io("fsync segment", &self.path, e));
            }
            self.synced_len.fetch_max(len, Ordering::AcqRel);
        }
        if !self.dir_synced.load(Ordering::Acquire) {
            if let Some(dir) = self.path.parent() {
                fsutil::sync_dir(dir)?;
            }
            self.dir_synced.store(true, Ordering::Release);
        }
        Ok(())
    }

    /// Flushes everything written and then a watermark saying so, so that recovery treats all
    /// of it as durable. For sealing and closing: it costs a second fsync.
    pub(crate) fn sync_watermark(&self) -> Result<()> {
        self.sync_to(self.written().0)?;
        let _one = self.sync_lock.lock()?;
        let synced = self.synced_len.load(Ordering::Acquire);
        if self.watermarked_len.load(Ordering::Acquire) == synced {
            return Ok(());
        }
        // SAFETY: we hold the sync lock; readers never read the header of a shared segment.
        unsafe { self.write_watermark(synced) };
        if let Err(e) = self.map.flush_range(0, SEGMENT_HEADER_LEN as usize) {
            self.sync_failed.store(true, Ordering::Release);
            return Err(Error::io("fsync segment", &self.path, e));
        }
        self.watermarked_len.store(synced, Ordering::Release);
        Ok(())
    }

    /// Marks the segment sealed; nothing more is written to it.
    pub(crate) fn seal(&self) {
        self.sealed.store(true, Ordering::Release);
    }

    /// The sealing work that may wait: fsync everything, write the index file, and give back the
    /// reserved space after the data.
    pub(crate) fn finish_seal(&self) -> Result<()> {
        let (len, end) = self.written();
        // Drop our page-table entries first. Writeback must write-protect every mapped page it
        // cleans, and with the pages still mapped writable here that means a TLB shootdown
        // interrupting the writer's core for each page: measured, it stalled appends to the next
        // segment for 10-30 ms per seal. Without the mappings, writeback has nobody to interrupt.
        // SAFETY: MADV_DONTNEED on a shared file mapping only drops page-table entries; the
        // contents stay in the page cache and fault back in on the next access, so readers of
        // this segment see the same bytes.
        unsafe {
            self.map
                .unchecked_advise(memmap2::UncheckedAdvice::DontNeed)
                .map_err(|e| Error::io("unmap sealed segment pages", &self.path, e))?;
        }
        self.sync_watermark()?;
        self.publish(len, end);
        let idx = SealedIndex {
            base_offset: self.base_offset,
            end_offset: end,
            data_len: len,
            max_timestamp: self.max_timestamp(),
            entries: self.index.read()?.clone(),
        };
        fsutil::write_atomic(&self.path.with_extension("idx"), &idx.encode())?;
        self.file
            .set_len(len)
            .map_err(|e| Error::io("truncate sealed segment", &self.path, e))
    }

    /// Bytes this segment holds (frames and header).
    pub(crate) fn data_len(&self) -> u64 {
        self.written().0
    }

    /// Whether every written byte is on disk.
    pub(crate) fn is_synced(&self) -> bool {
        self.synced_len.load(Ordering::Acquire) >= self.written().0
    }

    /// Removes the segment's files. Readers holding records from it keep their mapping.
    pub(crate) fn delete_files(&self) -> Result<()> {
        for path in [self.path.clone(), self.path.with_extension("idx")] {
            match std::fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(Error::io("delete segment", &path, e)),
            }
        }
        Ok(())
    }
}
