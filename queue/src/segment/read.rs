//! Reading a segment: records by offset, and the first offset at or after a time.

use std::sync::Arc;

use bytes::Bytes;

use super::{Budget, Segment};
use crate::codec::{self, RecordIter};
use crate::error::{Error, Result};
use crate::index;
use crate::record::StoredRecord;

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
    /// Published bytes `start..len` as `Bytes` sharing the mapping: no copy.
    fn mapped(self: &Arc<Self>, start: u64, len: u64) -> Bytes {
        Bytes::from_owner(MappedRange {
            seg: Arc::clone(self),
            start: start as usize,
            len: len.saturating_sub(start) as usize,
        })
    }

    /// Appends records with offsets in `from..until` to `out`, within `budget`.
    pub(crate) fn read(
        self: &Arc<Self>,
        from: u64,
        until: u64,
        budget: &mut Budget,
        out: &mut Vec<StoredRecord>,
    ) -> Result<()> {
        // End first: the writer publishes the length before the end, so `len` covers `until`.
        let until = until.min(self.published_end());
        let len = self.published_len();
        if from >= until {
            return Ok(());
        }
        let Some(entry) = index::entry_for_offset(&self.index.read()?, from) else {
            return Err(Error::Internal(format!(
                "{} has no index entry for {from}",
                self.path.display()
            )));
        };
        let region = self.mapped(entry.pos, len);
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
    pub(crate) fn seek_time(self: &Arc<Self>, ts: i64) -> Result<Option<u64>> {
        if self.max_timestamp() < ts {
            return Ok(None);
        }
        let len = self.published_len();
        let entry = {
            let entries = self.index.read()?;
            // Before the first entry nothing is older than `ts`: start at the first frame.
            match index::entry_for_time(&entries, ts).or_else(|| entries.first().copied()) {
                Some(e) => e,
                None => return Ok(None),
            }
        };
        let buf = self.mapped(entry.pos, len);
        let mut p = 0usize;
        while p < buf.len() {
            let pos = entry.pos + p as u64;
            let h = codec::parse_header(&buf[p..])
                .map_err(|e| Error::corrupt(&self.path, pos, e.to_string()))?;
            if h.max_timestamp >= ts {
                let frame = buf.slice(p..p + h.frame_len as usize);
                for r in RecordIter::new(frame, h) {
                    let r = r.map_err(|e| Error::corrupt(&self.path, pos, e.to_string()))?;
                    if r.timestamp >= ts {
                        return Ok(Some(r.offset));
                    }
                }
            }
            p += h.frame_len as usize;
        }
        Ok(None)
    }

    /// Checks every published frame's checksum, offsets and records in one pass over the
    /// mapping; returns the number of records.
    pub(crate) fn verify(self: &Arc<Self>) -> Result<u64> {
        // End first: the writer publishes the length before the end, so `len` covers `end`.
        let end = self.published_end();
        let len = self.published_len();
        let start = super::SEGMENT_HEADER_LEN;
        let buf = self.mapped(start, len);
        let (mut p, mut expected) = (0usize, self.base_offset);
        while p < buf.len() {
            let pos = start + p as u64;
            let bad = |e: codec::FrameError| Error::corrupt(&self.path, pos, e.to_string());
            let h = codec::parse_header(&buf[p..]).map_err(bad)?;
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
            for r in RecordIter::new(buf.slice(p..frame_end), h) {
                r.map_err(bad)?;
            }
            expected = h.end_offset();
            p = frame_end;
        }
        if expected < end {
            return Err(Error::corrupt(
                &self.path,
                len,
                format!("frames end at offset {expected}, expected {end}"),
            ));
        }
        Ok(expected - self.base_offset)
    }
}
