//! A physical segment: one memory-mapped file holding the frames of a contiguous offset range
//! of one logical queue.
//!
//! File layout: a 32-byte header (magic "RSTQSEG\0", u16 format version, base offset, CRC32C of
//! the header), then frames (see [`crate::codec`]) back to back, then zeros up to the reserved
//! size. A segment being written is preallocated to its full size and written through a shared
//! memory map, so an append is a copy into the page cache with no system call; once sealed, the
//! file is cut to its data length and its index written beside it (see [`crate::index`]).

use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use bytes::Bytes;
use memmap2::{MmapOptions, MmapRaw};

use crate::codec::{self, FrameError, RecordIter};
use crate::error::{Error, Result};
use crate::fsutil;
use crate::index::{self, INDEX_INTERVAL, IndexEntry, SealedIndex};
use crate::record::StoredRecord;
use crate::spare::Spare;

const SEGMENT_MAGIC: [u8; 8] = *b"RSTQSEG\0";
const SEGMENT_VERSION: u16 = 1;
/// Bytes before the first frame.
pub(crate) const SEGMENT_HEADER_LEN: u64 = 32;

/// File name of the segment starting at `base`.
pub(crate) fn file_name(base: u64) -> String {
    format!("{base:020}.seg")
}

/// Base offset parsed from a segment file name, if it is one.
pub(crate) fn parse_file_name(name: &str) -> Option<u64> {
    let stem = name.strip_suffix(".seg")?;
    (stem.len() == 20).then(|| stem.parse().ok()).flatten()
}

fn header_bytes(base: u64) -> [u8; SEGMENT_HEADER_LEN as usize] {
    let mut h = [0u8; SEGMENT_HEADER_LEN as usize];
    h[..8].copy_from_slice(&SEGMENT_MAGIC);
    h[8..10].copy_from_slice(&SEGMENT_VERSION.to_le_bytes());
    h[16..24].copy_from_slice(&base.to_le_bytes());
    let crc = crc32c::crc32c(&h[..28]);
    h[28..32].copy_from_slice(&crc.to_le_bytes());
    h
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

/// Where a scan of a segment's frames stopped.
struct ScanEnd {
    /// Byte position after the last valid frame.
    len: u64,
    end_offset: u64,
    max_timestamp: i64,
    entries: Vec<IndexEntry>,
    /// Why the scan stopped before the end of the buffer, unless it met zeros.
    error: Option<FrameError>,
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

/// Owner of a byte range of a segment's mapping, so reads hand out `Bytes` without copying.
struct MappedRange {
    seg: Arc<Segment>,
    start: usize,
    len: usize,
}

impl AsRef<[u8]> for MappedRange {
    fn as_ref(&self) -> &[u8] {
        // SAFETY: the range lies below the segment's published length when it was made. Bytes
        // there are never written again while the store is open, and the mapping lives as long
        // as `seg`.
        unsafe { std::slice::from_raw_parts(self.seg.map.as_ptr().add(self.start), self.len) }
    }
}

impl Segment {
    /// Creates an empty segment file in `dir` starting at `base`, reserving `capacity` bytes.
    pub(crate) fn create(dir: &Path, base: u64, capacity: u64) -> Result<Arc<Segment>> {
        let path = dir.join(file_name(base));
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(|e| Error::io("create segment", &path, e))?;
        fsutil::allocate(&file, &path, capacity)?;
        file.write_all_at(&header_bytes(base), 0)
            .map_err(|e| Error::io("write segment header", &path, e))?;
        let seg = Self::map(path, file, base, capacity, true)?;
        seg.record_write(SEGMENT_HEADER_LEN, base);
        seg.publish(SEGMENT_HEADER_LEN, base);
        Ok(Arc::new(seg))
    }

    /// Turns a spare into an empty segment starting at `base`: header, then its final name.
    pub(crate) fn from_spare(spare: Spare, base: u64) -> Result<Arc<Segment>> {
        let path = spare.dir.join(file_name(base));
        spare
            .file
            .write_all_at(&header_bytes(base), 0)
            .map_err(|e| Error::io("write segment header", &spare.path, e))?;
        std::fs::rename(&spare.path, &path)
            .map_err(|e| Error::io("rename spare segment to", &path, e))?;
        let seg = Self::from_parts(path, spare.file, spare.map, base, spare.capacity, true);
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

    fn check_header(&self) -> Result<()> {
        let h = self.slice(0, SEGMENT_HEADER_LEN);
        if h[..8] != SEGMENT_MAGIC {
            return Err(Error::corrupt(
                &self.path,
                0,
                "not a segment file (bad magic)",
            ));
        }
        let version = u16::from_le_bytes([h[8], h[9]]);
        if version != SEGMENT_VERSION {
            return Err(Error::UnsupportedVersion {
                path: self.path.clone(),
                found: u32::from(version),
                supported: u32::from(SEGMENT_VERSION),
            });
        }
        if h[..] != header_bytes(self.base_offset) {
            return Err(Error::corrupt(
                &self.path,
                0,
                "segment header does not match its file name or checksum",
            ));
        }
        Ok(())
    }

    /// Opens a sealed segment: from its `.idx` when that is intact, otherwise by scanning it
    /// (which must then succeed to the last byte: a sealed segment has no tail to truncate).
    pub(crate) fn open_sealed(path: PathBuf, base: u64) -> Result<Arc<Segment>> {
        let (file, file_len) = Self::open_file(&path, false)?;
        if file_len < SEGMENT_HEADER_LEN {
            return Err(Error::corrupt(
                &path,
                0,
                "segment file is shorter than its header",
            ));
        }
        let idx_path = path.with_extension("idx");
        let seg = Self::map(path, file, base, file_len, false)?;
        seg.check_header()?;
        let idx = match std::fs::read(&idx_path) {
            Ok(buf) => match SealedIndex::decode(&idx_path, &buf) {
                Ok(idx) if idx.base_offset == base && idx.data_len <= file_len => Some(idx),
                Ok(_) | Err(_) => {
                    tracing::warn!(path = %idx_path.display(), "index file is damaged; rebuilding it");
                    None
                }
            },
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(Error::io("read index", &idx_path, e)),
        };
        let idx = match idx {
            Some(idx) => idx,
            None => {
                let scan = seg.scan(SEGMENT_HEADER_LEN, file_len, base);
                if let Some(err) = scan.error {
                    return Err(Error::corrupt(&seg.path, scan.len, err.to_string()));
                }
                let idx = SealedIndex {
                    base_offset: base,
                    end_offset: scan.end_offset,
                    data_len: scan.len,
                    max_timestamp: scan.max_timestamp,
                    entries: scan.entries,
                };
                fsutil::write_atomic(&idx_path, &idx.encode())?;
                idx
            }
        };
        seg.record_write(idx.data_len, idx.end_offset);
        seg.publish(idx.data_len, idx.end_offset);
        seg.synced_len.store(idx.data_len, Ordering::Release);
        seg.max_timestamp
            .store(idx.max_timestamp, Ordering::Release);
        *seg.index.write()? = idx.entries;
        Ok(Arc::new(seg))
    }

    /// Opens the segment a queue writes to, recovering its tail: frames are checked up to the
    /// first that fails; if nothing valid follows, the rest is a torn tail and is zeroed with a
    /// warning; if a valid frame with later offsets follows, the damage is in the middle and the
    /// open fails.
    pub(crate) fn open_active(path: PathBuf, base: u64, capacity: u64) -> Result<Arc<Segment>> {
        // A stale index from an earlier seal would describe this segment wrongly once it is
        // sealed again.
        let idx_path = path.with_extension("idx");
        if let Err(e) = std::fs::remove_file(&idx_path)
            && e.kind() != std::io::ErrorKind::NotFound
        {
            return Err(Error::io("remove stale index", &idx_path, e));
        }
        let (file, file_len) = Self::open_file(&path, true)?;
        let capacity = capacity.max(file_len).max(SEGMENT_HEADER_LEN + 1);
        if file_len < capacity {
            fsutil::allocate(&file, &path, capacity)?;
        }
        let seg = Self::map(path, file, base, capacity, true)?;
        // Recovery reads only what it must: without read-ahead, the zero pages it touches past
        // the data stay few, and the file system keeps reporting the reserved rest as a hole
        // (see `fsutil::data_end`) instead of a region that grows with every open.
        seg.advise(memmap2::Advice::Random)?;
        let data_end = fsutil::data_end(&seg.file, capacity);
        if seg.slice(0, SEGMENT_HEADER_LEN).iter().all(|&b| b == 0) {
            // Created but its header never reached the disk: nothing in it was acknowledged.
            if seg.slice(0, data_end).iter().any(|&b| b != 0) {
                return Err(Error::corrupt(
                    &seg.path,
                    0,
                    "segment header is missing but data follows",
                ));
            }
            seg.file
                .write_all_at(&header_bytes(base), 0)
                .map_err(|e| Error::io("write segment header", &seg.path, e))?;
        }
        seg.check_header()?;
        let scan = seg.scan(SEGMENT_HEADER_LEN, capacity, base);
        let tail = seg.slice(scan.len, data_end.max(scan.len));
        if let Some(reason) = &scan.error
            && let Some(later) = seg.find_later_frame(scan.len + 1, data_end, scan.end_offset)
        {
            return Err(Error::corrupt(
                &seg.path,
                scan.len,
                format!("{reason}, but a valid frame with offset {later} follows"),
            ));
        }
        if tail.iter().any(|&b| b != 0) {
            tracing::warn!(
                path = %seg.path.display(),
                position = scan.len,
                next_offset = scan.end_offset,
                "truncating a torn tail of {} bytes",
                data_end - scan.len
            );
            // SAFETY: nobody else has this segment yet.
            unsafe { seg.zero(scan.len, data_end - scan.len) };
            seg.map
                .flush_range(scan.len as usize, (data_end - scan.len) as usize)
                .map_err(|e| Error::io("fsync segment", &seg.path, e))?;
        }
        seg.record_write(scan.len, scan.end_offset);
        seg.publish(scan.len, scan.end_offset);
        seg.synced_len.store(scan.len, Ordering::Release);
        seg.max_timestamp
            .store(scan.max_timestamp, Ordering::Release);
        seg.last_entry_pos.store(
            scan.entries.last().map_or(u64::MAX, |e| e.pos),
            Ordering::Relaxed,
        );
        *seg.index.write()? = scan.entries;
        seg.dir_synced.store(true, Ordering::Release);
        seg.advise(memmap2::Advice::Normal)?;
        Ok(Arc::new(seg))
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

    /// Checks frames from `start` until zeros, the end of `limit`, or a bad frame.
    fn scan(&self, start: u64, limit: u64, base: u64) -> ScanEnd {
        let buf = self.slice(0, limit);
        let mut s = ScanEnd {
            len: start,
            end_offset: base,
            max_timestamp: i64::MIN,
            entries: Vec::new(),
            error: None,
        };
        let mut last_entry_pos: Option<u64> = None;
        while (s.len as usize) < buf.len() {
            let h = match codec::parse_header(&buf[s.len as usize..]) {
                Ok(h) if h.base_offset == s.end_offset => h,
                Ok(h) => {
                    s.error = Some(FrameError::Record {
                        index: 0,
                        reason: if h.base_offset < s.end_offset {
                            "frame repeats earlier offsets"
                        } else {
                            "frame skips offsets"
                        },
                    });
                    break;
                }
                Err(FrameError::End) => break,
                Err(e) => {
                    s.error = Some(e);
                    break;
                }
            };
            if last_entry_pos.is_none_or(|p| s.len - p >= INDEX_INTERVAL) {
                s.entries.push(IndexEntry {
                    offset: h.base_offset,
                    pos: s.len,
                    max_ts_before: s.max_timestamp,
                });
                last_entry_pos = Some(s.len);
            }
            s.len += u64::from(h.frame_len);
            s.end_offset = h.end_offset();
            s.max_timestamp = s.max_timestamp.max(h.max_timestamp);
        }
        s
    }

    /// First valid frame in `[from, limit)` continuing past `expected`, as its base offset.
    fn find_later_frame(&self, from: u64, limit: u64, expected: u64) -> Option<u64> {
        let buf = self.slice(0, limit);
        let magic = codec::FRAME_MAGIC.to_le_bytes();
        let mut at = from as usize;
        while at < buf.len() {
            let hit = at + memchr::memmem::find(&buf[at..], &magic)?;
            if let Ok(h) = codec::parse_header(&buf[hit..])
                && h.base_offset > expected
            {
                return Some(h.base_offset);
            }
            at = hit + 1;
        }
        None
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
        match self.map.advise_range(
            memmap2::Advice::PopulateWrite,
            from as usize,
            (target - from) as usize,
        ) {
            Ok(()) => {}
            // Kernels before 5.14 lack MADV_POPULATE_WRITE: the writer faults pages itself.
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {}
            Err(e) => return Err(Error::io("prefault segment", &self.path, e)),
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
    pub(crate) fn sync_to(&self, len: u64) -> Result<()> {
        let from = self.synced_len.load(Ordering::Acquire);
        if len > from {
            self.map
                .flush_range(from as usize, (len - from) as usize)
                .map_err(|e| Error::io("fsync segment", &self.path, e))?;
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

    /// Marks the segment sealed; nothing more is written to it.
    pub(crate) fn seal(&self) {
        self.sealed.store(true, Ordering::Release);
    }

    /// The sealing work that may wait: fsync everything, write the index file, and give back the
    /// reserved space after the data.
    pub(crate) fn finish_seal(&self) -> Result<()> {
        let (len, end) = self.written();
        self.sync_to(len)?;
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

    /// Appends records with offsets in `from..until` to `out`, within `budget`.
    pub(crate) fn read(
        self: &Arc<Self>,
        from: u64,
        until: u64,
        budget: &mut Budget,
        out: &mut Vec<StoredRecord>,
    ) -> Result<()> {
        let len = self.published_len();
        let until = until.min(self.published_end());
        if from >= until {
            return Ok(());
        }
        let Some(entry) = index::entry_for_offset(&self.index.read()?, from) else {
            return Err(Error::Internal(format!(
                "{} has no index entry for {from}",
                self.path.display()
            )));
        };
        let region = Bytes::from_owner(MappedRange {
            seg: Arc::clone(self),
            start: entry.pos as usize,
            len: (len - entry.pos) as usize,
        });
        let mut p = 0usize;
        let mut expected = entry.offset;
        while p < region.len() && expected < until && !budget.exhausted() {
            let pos = entry.pos + p as u64;
            let h = codec::parse_header(&region[p..])
                .map_err(|e| Error::corrupt(&self.path, pos, e.to_string()))?;
            if h.base_offset != expected {
                return Err(Error::corrupt(
                    &self.path,
                    pos,
                    format!(
                        "frame starts at offset {}, expected {expected}",
                        h.base_offset
                    ),
                ));
            }
            let frame_end = p + h.frame_len as usize;
            expected = h.end_offset();
            if h.end_offset() > from {
                let mut it = RecordIter::new(region.slice(p..frame_end), h);
                if from > h.base_offset {
                    it.skip_records(from - h.base_offset)
                        .map_err(|e| Error::corrupt(&self.path, pos, e.to_string()))?;
                }
                while it.next_offset() < until && !budget.exhausted() {
                    let Some(r) = it.next() else { break };
                    let r = r.map_err(|e| Error::corrupt(&self.path, pos, e.to_string()))?;
                    budget.records -= 1;
                    budget.bytes = budget.bytes.saturating_sub(r.size());
                    budget.taken_any = true;
                    out.push(r);
                }
            }
            p = frame_end;
        }
        Ok(())
    }

    /// Offset of the first record with a timestamp at or after `ts`, if this segment has one.
    pub(crate) fn seek_time(&self, ts: i64) -> Result<Option<u64>> {
        if self.max_timestamp() < ts {
            return Ok(None);
        }
        let len = self.published_len();
        let Some(entry) = index::entry_for_time(&self.index.read()?, ts) else {
            return Ok(None);
        };
        let buf = self.slice(0, len);
        let mut p = entry.pos as usize;
        while p < buf.len() {
            let h = codec::parse_header(&buf[p..])
                .map_err(|e| Error::corrupt(&self.path, p as u64, e.to_string()))?;
            if h.max_timestamp >= ts {
                let frame = Bytes::copy_from_slice(&buf[p..p + h.frame_len as usize]);
                for r in RecordIter::new(frame, h) {
                    let r = r.map_err(|e| Error::corrupt(&self.path, p as u64, e.to_string()))?;
                    if r.timestamp >= ts {
                        return Ok(Some(r.offset));
                    }
                }
            }
            p += h.frame_len as usize;
        }
        Ok(None)
    }

    /// Checks every published frame's checksum and records; returns the number of records.
    pub(crate) fn verify(&self) -> Result<u64> {
        let len = self.published_len();
        let scan = self.scan(SEGMENT_HEADER_LEN, len, self.base_offset);
        if let Some(e) = scan.error {
            return Err(Error::corrupt(&self.path, scan.len, e.to_string()));
        }
        if scan.len != len || scan.end_offset != self.published_end() {
            return Err(Error::corrupt(
                &self.path,
                scan.len,
                format!(
                    "frames end at offset {}, expected {}",
                    scan.end_offset,
                    self.published_end()
                ),
            ));
        }
        let buf = Bytes::copy_from_slice(self.slice(0, len));
        let mut p = SEGMENT_HEADER_LEN as usize;
        while p < buf.len() {
            let (h, _) = codec::decode_frame(&buf.slice(p..))
                .map_err(|e| Error::corrupt(&self.path, p as u64, e.to_string()))?;
            p += h.frame_len as usize;
        }
        Ok(scan.end_offset - self.base_offset)
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
