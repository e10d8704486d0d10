//! Opening segments after a restart or a crash: the header, its durable watermark, and the rule
//! that tells a torn tail (truncated, with a warning) from damage to durable data (an error).
//!
//! Header, 64 bytes, little-endian:
//!
//! ```text
//! 0   [u8; 8]  magic "RSTQSEG\0"
//! 8   u16      format version (1)
//! 10  6 bytes  reserved (0)
//! 16  u64      base offset
//! 24  u32      CRC32C of bytes 0..24
//! 28  4 bytes  reserved (0)
//! 32  u64      durable watermark: every byte below it was on disk before it was written
//! 40  u32      CRC32C of bytes 32..40
//! 44  20 bytes reserved (0)
//! ```
//!
//! Each fsync of a segment also writes, in the same flush, the watermark of what the previous
//! fsync made durable; sealing and closing write the final one. After a crash, damage *below*
//! the watermark hit bytes that were durable (and perhaps acknowledged): that is corruption, an
//! error. Damage at or above it is a torn tail of writes that were in flight: it is truncated.

use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use super::{SEGMENT_HEADER_LEN, SEGMENT_MAGIC, SEGMENT_VERSION, Segment};
use crate::codec::{self, FrameError};
use crate::error::{Error, Result};
use crate::fsutil;
use crate::index::{INDEX_INTERVAL, IndexEntry, SealedIndex};

const WATERMARK_AT: usize = 32;

/// The header of a new segment; its watermark covers the header itself.
pub(super) fn header_bytes(base: u64) -> [u8; SEGMENT_HEADER_LEN as usize] {
    let mut h = [0u8; SEGMENT_HEADER_LEN as usize];
    h[..8].copy_from_slice(&SEGMENT_MAGIC);
    h[8..10].copy_from_slice(&SEGMENT_VERSION.to_le_bytes());
    h[16..24].copy_from_slice(&base.to_le_bytes());
    let crc = crc32c::crc32c(&h[..24]);
    h[24..28].copy_from_slice(&crc.to_le_bytes());
    h[WATERMARK_AT..WATERMARK_AT + 12].copy_from_slice(&watermark_bytes(SEGMENT_HEADER_LEN));
    h
}

pub(super) fn watermark_bytes(w: u64) -> [u8; 12] {
    let mut b = [0u8; 12];
    b[..8].copy_from_slice(&w.to_le_bytes());
    let crc = crc32c::crc32c(&b[..8]);
    b[8..].copy_from_slice(&crc.to_le_bytes());
    b
}

/// Where a scan of a segment's frames stopped.
struct ScanEnd {
    /// Byte position after the last valid frame.
    len: u64,
    end_offset: u64,
    max_timestamp: i64,
    entries: Vec<IndexEntry>,
    /// Why the scan stopped, unless it met zeros or the limit.
    error: Option<FrameError>,
}

/// The durable watermark in the header of the segment file at `path`, if it can be read and its
/// checksum holds.
pub(crate) fn watermark_of(path: &std::path::Path) -> Option<u64> {
    let file = std::fs::File::open(path).ok()?;
    let mut h = [0u8; 12];
    file.read_exact_at(&mut h, WATERMARK_AT as u64).ok()?;
    let mut w = [0u8; 8];
    w.copy_from_slice(&h[..8]);
    let w = u64::from_le_bytes(w);
    (watermark_bytes(w) == h).then_some(w)
}

/// What opening a sealed segment found.
pub(crate) enum Opened {
    /// The segment, intact.
    Sealed(Arc<Segment>),
    /// It was sealed, but the crash came before its fsync finished and its tail is torn: it must
    /// become the queue's last segment again, and the segments after it cannot be trusted.
    TornTail,
}

impl Segment {
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
        if h[..28] != header_bytes(self.base_offset)[..28] {
            return Err(Error::corrupt(
                &self.path,
                0,
                "segment header does not match its file name or checksum",
            ));
        }
        Ok(())
    }

    /// The durable watermark, if its checksum holds.
    fn durable_watermark(&self) -> Option<u64> {
        let h = self.slice(0, SEGMENT_HEADER_LEN);
        let stored = &h[WATERMARK_AT..WATERMARK_AT + 12];
        let mut w = [0u8; 8];
        w.copy_from_slice(&stored[..8]);
        let w = u64::from_le_bytes(w);
        (watermark_bytes(w)[..] == stored[..]).then_some(w)
    }

    /// Writes the watermark into the mapped header (it reaches the disk with the next flush).
    ///
    /// # Safety
    /// The caller holds the segment's sync lock, and no reader looks at the header while the
    /// segment is shared.
    pub(super) unsafe fn write_watermark(&self, w: u64) {
        let bytes = watermark_bytes(w);
        // SAFETY: per the contract above; the header lies within every mapping.
        unsafe {
            std::ptr::copy_nonoverlapping(
                bytes.as_ptr(),
                self.map.as_mut_ptr().add(WATERMARK_AT),
                bytes.len(),
            );
        }
    }

    /// Decides what damage found by a scan means: `Ok(false)` for none, `Ok(true)` for a torn
    /// tail, an error for damage to durable bytes. `data_end` bounds where written bytes may be.
    fn is_torn_tail(&self, scan: &ScanEnd, data_end: u64) -> Result<bool> {
        let garbage = data_end > scan.len && self.slice(scan.len, data_end).iter().any(|&b| b != 0);
        let watermark = self.durable_watermark();
        // Frames that end below the watermark were durable: a clean stop there is damage too.
        let short = watermark.is_some_and(|w| scan.len < w);
        if scan.error.is_none() && !garbage && !short {
            return Ok(false);
        }
        let reason = scan.error.as_ref().map_or_else(
            || "zeros where a frame should start".to_string(),
            ToString::to_string,
        );
        match watermark {
            Some(w) if scan.len < w => Err(Error::corrupt(
                &self.path,
                scan.len,
                format!(
                    "{reason}; bytes up to {w} were durable (offset {})",
                    scan.end_offset
                ),
            )),
            Some(_) => Ok(true),
            // The watermark itself is damaged: a valid frame further on proves middle damage.
            None => match self.find_later_frame(scan.len + 1, data_end, scan.end_offset) {
                Some(later) => Err(Error::corrupt(
                    &self.path,
                    scan.len,
                    format!("{reason}, but a valid frame with offset {later} follows"),
                )),
                None => Ok(true),
            },
        }
    }

    /// Opens a sealed segment: from its `.idx` when that is intact, otherwise by scanning it.
    pub(crate) fn open_sealed(path: PathBuf, base: u64) -> Result<Opened> {
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
                Ok(idx)
                    if idx.base_offset == base
                        && idx.data_len <= file_len
                        && idx.is_consistent() =>
                {
                    Some(idx)
                }
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
                let data_end = fsutil::data_end(&seg.file, file_len);
                let scan = seg.scan(SEGMENT_HEADER_LEN, file_len, base);
                if seg.is_torn_tail(&scan, data_end)? {
                    return Ok(Opened::TornTail);
                }
                // What the scan read may have been only in the page cache: make it durable
                // before an index vouches for it.
                seg.file
                    .sync_data()
                    .map_err(|e| Error::io("fsync segment", &seg.path, e))?;
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
        Ok(Opened::Sealed(Arc::new(seg)))
    }

    /// Opens the segment a queue writes to, recovering its tail (see the module docs), and makes
    /// what it keeps durable before anyone reads it.
    pub(crate) fn open_active(path: PathBuf, base: u64, capacity: u64) -> Result<Arc<Segment>> {
        // A stale index from an earlier seal would describe this segment wrongly once it is
        // sealed again.
        let idx_path = path.with_extension("idx");
        match std::fs::remove_file(&idx_path) {
            Ok(()) => {
                // Durably: a stale index that came back after a crash would be trusted.
                if let Some(dir) = path.parent() {
                    fsutil::sync_dir(dir)?;
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(Error::io("remove stale index", &idx_path, e)),
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
            // Created but its header never reached the disk, and the header goes out with the
            // first fsync: nothing in it was acknowledged, whatever pages did reach the disk.
            if seg.slice(0, data_end).iter().any(|&b| b != 0) {
                tracing::warn!(
                    path = %seg.path.display(),
                    "segment header is missing: discarding {data_end} bytes that were never durable"
                );
                // SAFETY: nobody else has this segment yet.
                unsafe { seg.zero(0, data_end) };
            }
            seg.file
                .write_all_at(&header_bytes(base), 0)
                .map_err(|e| Error::io("write segment header", &seg.path, e))?;
        }
        seg.check_header()?;
        let scan = seg.scan(SEGMENT_HEADER_LEN, capacity, base);
        if seg.is_torn_tail(&scan, data_end)? {
            tracing::warn!(
                path = %seg.path.display(),
                position = scan.len,
                next_offset = scan.end_offset,
                "truncating a torn tail of {} bytes",
                data_end.saturating_sub(scan.len)
            );
            // SAFETY: nobody else has this segment yet.
            unsafe { seg.zero(scan.len, data_end.saturating_sub(scan.len)) };
        }
        // The bytes kept may have been only in the page cache when the process died.
        seg.file
            .sync_data()
            .map_err(|e| Error::io("fsync segment", &seg.path, e))?;
        seg.record_write(scan.len, scan.end_offset);
        seg.publish(scan.len, scan.end_offset);
        seg.synced_len.store(scan.len, Ordering::Release);
        seg.sync_watermark()?;
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

    /// Checks frames from byte `start` until zeros, byte `limit`, or a bad frame. Reads only
    /// `start..limit`, never the header (which the sync path may be writing).
    fn scan(&self, start: u64, limit: u64, base: u64) -> ScanEnd {
        let buf = self.slice(start, limit);
        let mut s = ScanEnd {
            len: start,
            end_offset: base,
            max_timestamp: i64::MIN,
            entries: Vec::new(),
            error: None,
        };
        let mut at = 0usize;
        let mut last_entry_pos: Option<u64> = None;
        while at < buf.len() {
            let h = match codec::parse_header(&buf[at..]) {
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
            at += h.frame_len as usize;
            s.len += u64::from(h.frame_len);
            s.end_offset = h.end_offset();
            s.max_timestamp = s.max_timestamp.max(h.max_timestamp);
        }
        s
    }

    /// First valid frame in `[from, limit)` continuing past `expected`, as its base offset.
    fn find_later_frame(&self, from: u64, limit: u64, expected: u64) -> Option<u64> {
        let buf = self.slice(from, limit);
        let magic = codec::FRAME_MAGIC.to_le_bytes();
        let mut at = 0usize;
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
}
