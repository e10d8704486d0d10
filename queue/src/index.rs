//! The sparse offset and time index of a segment, and its `.idx` file.
//!
//! An entry is added at the first frame of a segment and then at the first frame that starts at
//! least [`INDEX_INTERVAL`] bytes after the previous entry. The index of the segment being written
//! lives only in memory and is rebuilt by scanning when the store opens; a sealed segment's index
//! is written once, with its totals, to `BASE.idx`:
//!
//! ```text
//! 0   [u8; 8]  magic "RSTQIDX\0"
//! 8   u32      format version (1)
//! 12  u32      entry count n
//! 16  u64      base offset
//! 24  u64      end offset (offset after the last record)
//! 32  u64      data length (bytes of the segment file holding frames, header included)
//! 40  i64      max timestamp (i64::MIN if the segment is empty)
//! 48  n × (u64 offset, u64 byte position, i64 max timestamp of all records before the entry)
//! ..  u32      CRC32C of everything before it
//! ```

use std::path::Path;

use crate::error::{Error, Result};

/// Bytes of frames between index entries.
pub(crate) const INDEX_INTERVAL: u64 = 4096;
const IDX_MAGIC: [u8; 8] = *b"RSTQIDX\0";
const IDX_VERSION: u32 = 1;
const IDX_HEADER_LEN: usize = 48;
const ENTRY_LEN: usize = 24;

/// One index entry: the frame at `pos` starts with record `offset`; every record before it has
/// a timestamp at most `max_ts_before`, which makes the entries sorted by time as well.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct IndexEntry {
    pub(crate) offset: u64,
    pub(crate) pos: u64,
    pub(crate) max_ts_before: i64,
}

/// What a sealed segment's `.idx` file says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct SealedIndex {
    pub(crate) base_offset: u64,
    pub(crate) end_offset: u64,
    pub(crate) data_len: u64,
    pub(crate) max_timestamp: i64,
    pub(crate) entries: Vec<IndexEntry>,
}

/// Index of the last entry at or before `offset` (entries are sorted by offset).
pub(crate) fn entry_for_offset(entries: &[IndexEntry], offset: u64) -> Option<IndexEntry> {
    let i = entries.partition_point(|e| e.offset <= offset);
    i.checked_sub(1).map(|i| entries[i])
}

/// The last entry before which every record is older than `ts`: the first record at or after
/// `ts` is at or after it.
pub(crate) fn entry_for_time(entries: &[IndexEntry], ts: i64) -> Option<IndexEntry> {
    let i = entries.partition_point(|e| e.max_ts_before < ts);
    i.checked_sub(1).map(|i| entries[i])
}

impl SealedIndex {
    /// Whether the entries fit the totals: positions inside the data, in order, offsets in
    /// range. A checksum does not catch an index written wrong.
    pub(crate) fn is_consistent(&self) -> bool {
        let header = crate::segment::SEGMENT_HEADER_LEN;
        self.base_offset <= self.end_offset
            && self.data_len >= header
            && self
                .entries
                .first()
                .is_none_or(|e| e.pos == header && e.offset == self.base_offset)
            && self
                .entries
                .windows(2)
                .all(|w| w[0].pos < w[1].pos && w[0].offset < w[1].offset)
            && self
                .entries
                .iter()
                .all(|e| e.pos < self.data_len && e.offset < self.end_offset)
    }

    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(IDX_HEADER_LEN + self.entries.len() * ENTRY_LEN + 4);
        out.extend_from_slice(&IDX_MAGIC);
        out.extend_from_slice(&IDX_VERSION.to_le_bytes());
        out.extend_from_slice(&(self.entries.len() as u32).to_le_bytes());
        out.extend_from_slice(&self.base_offset.to_le_bytes());
        out.extend_from_slice(&self.end_offset.to_le_bytes());
        out.extend_from_slice(&self.data_len.to_le_bytes());
        out.extend_from_slice(&self.max_timestamp.to_le_bytes());
        for e in &self.entries {
            out.extend_from_slice(&e.offset.to_le_bytes());
            out.extend_from_slice(&e.pos.to_le_bytes());
            out.extend_from_slice(&e.max_ts_before.to_le_bytes());
        }
        let crc = crc32c::crc32c(&out);
        out.extend_from_slice(&crc.to_le_bytes());
        out
    }

    /// Decodes an `.idx` file. A damaged file is an error; the caller rebuilds the index by
    /// scanning the segment.
    pub(crate) fn decode(path: &Path, buf: &[u8]) -> Result<Self> {
        let bad = |reason: &str| Error::corrupt(path, 0, reason.to_string());
        if buf.len() < IDX_HEADER_LEN + 4 || buf[..8] != IDX_MAGIC {
            return Err(bad("not an index file"));
        }
        let (body, crc) = buf.split_at(buf.len() - 4);
        if crc32c::crc32c(body).to_le_bytes() != crc {
            return Err(bad("index checksum mismatch"));
        }
        let u64_at = |at: usize| {
            let mut b = [0u8; 8];
            b.copy_from_slice(&body[at..at + 8]);
            u64::from_le_bytes(b)
        };
        let mut v = [0u8; 4];
        v.copy_from_slice(&body[8..12]);
        let version = u32::from_le_bytes(v);
        if version != IDX_VERSION {
            return Err(Error::UnsupportedVersion {
                path: path.to_path_buf(),
                found: version,
                supported: IDX_VERSION,
            });
        }
        v.copy_from_slice(&body[12..16]);
        let n = u32::from_le_bytes(v) as usize;
        if body.len() != IDX_HEADER_LEN + n * ENTRY_LEN {
            return Err(bad("index length does not match its entry count"));
        }
        let entries = (0..n)
            .map(|i| {
                let at = IDX_HEADER_LEN + i * ENTRY_LEN;
                IndexEntry {
                    offset: u64_at(at),
                    pos: u64_at(at + 8),
                    max_ts_before: u64_at(at + 16) as i64,
                }
            })
            .collect();
        Ok(SealedIndex {
            base_offset: u64_at(16),
            end_offset: u64_at(24),
            data_len: u64_at(32),
            max_timestamp: u64_at(40) as i64,
            entries,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> SealedIndex {
        SealedIndex {
            base_offset: 100,
            end_offset: 400,
            data_len: 9000,
            max_timestamp: 77,
            entries: vec![
                IndexEntry {
                    offset: 100,
                    pos: 32,
                    max_ts_before: i64::MIN,
                },
                IndexEntry {
                    offset: 250,
                    pos: 4200,
                    max_ts_before: 50,
                },
                IndexEntry {
                    offset: 390,
                    pos: 8500,
                    max_ts_before: 70,
                },
            ],
        }
    }

    #[test]
    fn idx_round_trips_and_detects_damage() {
        let idx = sample();
        let bytes = idx.encode();
        assert_eq!(SealedIndex::decode(Path::new("x"), &bytes).unwrap(), idx);
        for i in 0..bytes.len() {
            let mut bad = bytes.clone();
            bad[i] ^= 0x10;
            assert!(
                SealedIndex::decode(Path::new("x"), &bad).is_err(),
                "byte {i}"
            );
        }
    }

    #[test]
    fn lookups() {
        let e = sample().entries;
        assert_eq!(entry_for_offset(&e, 99), None);
        assert_eq!(entry_for_offset(&e, 100).unwrap().pos, 32);
        assert_eq!(entry_for_offset(&e, 389).unwrap().pos, 4200);
        assert_eq!(entry_for_offset(&e, 1000).unwrap().pos, 8500);
        assert_eq!(entry_for_time(&e, 10).unwrap().pos, 32);
        assert_eq!(entry_for_time(&e, 51).unwrap().pos, 4200);
        assert_eq!(entry_for_time(&e, 71).unwrap().pos, 8500);
    }
}
