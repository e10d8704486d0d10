//! The batch frame: the unit the store writes, checksums and reads.
//!
//! Every append call writes one frame holding one or more records. Layout (little-endian):
//!
//! ```text
//! 0   u32  magic "RQB1"         written last, so a frame cut short by a crash has no magic
//! 4   u32  frame length          header included
//! 8   u32  CRC32C                over bytes 12..frame length
//! 12  u8   frame format version  (1)
//! 13  u8   flags                 bit 0: timestamps are append times
//! 14  u16  reserved (0)
//! 16  u64  base offset           offset of the first record
//! 24  u32  record count          (at least 1)
//! 28  i64  base timestamp        timestamp of the first record, ms since the epoch
//! 36  i64  max timestamp         largest timestamp in the frame
//! 44  records, each:
//!       varint  length of the rest of the record
//!       varint  zigzag(timestamp - base timestamp)
//!       varint  key length + 1 (0: no key), key bytes
//!       varint  tag count, then per tag: varint length, UTF-8 bytes
//!       varint  header count, then per header: varint name length, UTF-8 name,
//!               varint value length, value bytes
//!       payload: the rest of the record
//! ```

use bytes::Bytes;

use crate::record::{Record, StoredRecord};

/// The frame magic, "RQB1" read as a little-endian u32.
pub const FRAME_MAGIC: u32 = u32::from_le_bytes(*b"RQB1");
/// Bytes before the first record.
pub const FRAME_HEADER_LEN: usize = 44;
/// The frame format this build writes and reads.
pub const FRAME_VERSION: u8 = 1;
/// No frame may be larger than this.
pub const MAX_FRAME_LEN: usize = 256 << 20;
/// Flag: the frame's timestamps were assigned at append time.
pub const FLAG_APPEND_TIME: u8 = 1;

/// Why bytes do not decode as a frame.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// Four zero bytes where a frame would start: the end of written data.
    #[error("end of data")]
    End,
    /// Not a frame.
    #[error("bad frame magic {0:#010x}")]
    BadMagic(u32),
    /// The frame runs past the end of the buffer.
    #[error("frame truncated: it needs {needed} bytes, {available} are there")]
    Truncated {
        /// Bytes the frame claims.
        needed: usize,
        /// Bytes available.
        available: usize,
    },
    /// A length field that cannot be right.
    #[error("invalid frame length {0}")]
    BadLength(u32),
    /// Checksum mismatch.
    #[error("checksum mismatch: stored {stored:#010x}, computed {computed:#010x}")]
    Checksum {
        /// CRC stored in the frame.
        stored: u32,
        /// CRC of the bytes.
        computed: u32,
    },
    /// A frame format this build does not know.
    #[error("unsupported frame version {0}")]
    Version(u8),
    /// A record inside an intact frame that does not decode (a writer bug, never a torn write).
    #[error("record {index} of the frame: {reason}")]
    Record {
        /// Index of the record in the frame.
        index: u32,
        /// What is wrong.
        reason: &'static str,
    },
}

/// The fixed header of a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameHeader {
    /// Total frame length in bytes.
    pub frame_len: u32,
    /// Flags.
    pub flags: u8,
    /// Offset of the first record.
    pub base_offset: u64,
    /// Number of records.
    pub record_count: u32,
    /// Timestamp of the first record.
    pub base_timestamp: i64,
    /// Largest timestamp.
    pub max_timestamp: i64,
}

impl FrameHeader {
    /// Offset after the last record of the frame.
    pub fn end_offset(&self) -> u64 {
        self.base_offset + u64::from(self.record_count)
    }
}

fn le_u32(buf: &[u8], at: usize) -> u32 {
    let mut b = [0u8; 4];
    b.copy_from_slice(&buf[at..at + 4]);
    u32::from_le_bytes(b)
}

fn le_u64(buf: &[u8], at: usize) -> u64 {
    let mut b = [0u8; 8];
    b.copy_from_slice(&buf[at..at + 8]);
    u64::from_le_bytes(b)
}

/// Checks the header and checksum of the frame at the start of `buf`.
///
/// `buf` may extend past the frame; only `frame_len` bytes are checked.
pub fn parse_header(buf: &[u8]) -> Result<FrameHeader, FrameError> {
    if buf.len() < 4 {
        // Too short for a frame: zeros are the end of the data (a segment filled to within a
        // few bytes of its end), anything else a frame cut short.
        if buf.iter().all(|&b| b == 0) {
            return Err(FrameError::End);
        }
        return Err(FrameError::Truncated {
            needed: 4,
            available: buf.len(),
        });
    }
    let magic = le_u32(buf, 0);
    if magic == 0 {
        return Err(FrameError::End);
    }
    if magic != FRAME_MAGIC {
        return Err(FrameError::BadMagic(magic));
    }
    if buf.len() < FRAME_HEADER_LEN {
        return Err(FrameError::Truncated {
            needed: FRAME_HEADER_LEN,
            available: buf.len(),
        });
    }
    let frame_len = le_u32(buf, 4);
    let len = frame_len as usize;
    if !(FRAME_HEADER_LEN + 1..=MAX_FRAME_LEN).contains(&len) {
        return Err(FrameError::BadLength(frame_len));
    }
    if buf.len() < len {
        return Err(FrameError::Truncated {
            needed: len,
            available: buf.len(),
        });
    }
    let stored = le_u32(buf, 8);
    let computed = crc32c::crc32c(&buf[12..len]);
    if stored != computed {
        return Err(FrameError::Checksum { stored, computed });
    }
    if buf[12] != FRAME_VERSION {
        return Err(FrameError::Version(buf[12]));
    }
    let record_count = le_u32(buf, 24);
    if le_u64(buf, 16)
        .checked_add(u64::from(record_count))
        .is_none()
    {
        return Err(FrameError::Record {
            index: 0,
            reason: "offsets overflow",
        });
    }
    // Each record takes at least three bytes, which bounds a count that a bug could inflate.
    if record_count == 0 || record_count as usize > (len - FRAME_HEADER_LEN) / 3 {
        return Err(FrameError::Record {
            index: 0,
            reason: "record count does not fit the frame",
        });
    }
    Ok(FrameHeader {
        frame_len,
        flags: buf[13],
        base_offset: le_u64(buf, 16),
        record_count,
        base_timestamp: le_u64(buf, 28) as i64,
        max_timestamp: le_u64(buf, 36) as i64,
    })
}

fn varint_len(mut v: u64) -> usize {
    let mut n = 1;
    while v >= 0x80 {
        v >>= 7;
        n += 1;
    }
    n
}

fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

fn unzigzag(v: u64) -> i64 {
    ((v >> 1) as i64) ^ -((v & 1) as i64)
}

/// Length of a record after its leading length varint.
fn record_body_len(r: &Record, ts_delta: i64) -> usize {
    let key = r.key.as_ref().map_or(0, Bytes::len);
    let mut n = varint_len(zigzag(ts_delta)) + varint_len(key as u64 + 1) + key;
    n += varint_len(r.tags.len() as u64);
    for t in &r.tags {
        n += varint_len(t.len() as u64) + t.len();
    }
    n += varint_len(r.headers.len() as u64);
    for (k, v) in &r.headers {
        n += varint_len(k.len() as u64) + k.len() + varint_len(v.len() as u64) + v.len();
    }
    n + r.payload.len()
}

/// Byte size of the frame that [`encode_frame`] writes for these records and timestamps.
pub fn encoded_len(records: &[Record], timestamps: &[i64]) -> usize {
    let base = timestamps.first().copied().unwrap_or(0);
    let mut n = FRAME_HEADER_LEN;
    for (r, ts) in records.iter().zip(timestamps) {
        let body = record_body_len(r, ts.wrapping_sub(base));
        n += varint_len(body as u64) + body;
    }
    n
}

struct Cursor<'a> {
    buf: &'a mut [u8],
    pos: usize,
}

impl Cursor<'_> {
    fn put(&mut self, bytes: &[u8]) {
        self.buf[self.pos..self.pos + bytes.len()].copy_from_slice(bytes);
        self.pos += bytes.len();
    }

    fn varint(&mut self, mut v: u64) {
        while v >= 0x80 {
            self.buf[self.pos] = (v as u8) | 0x80;
            self.pos += 1;
            v >>= 7;
        }
        self.buf[self.pos] = v as u8;
        self.pos += 1;
    }
}

/// Writes one frame into `out`, which must be exactly [`encoded_len`] bytes long, and returns
/// its max timestamp. `timestamps[i]` is the timestamp stored for `records[i]`.
///
/// The magic goes in last: a frame interrupted by a crash reads as the end of data or as a
/// checksum failure, never as a valid frame.
pub fn encode_frame(
    out: &mut [u8],
    base_offset: u64,
    flags: u8,
    records: &[Record],
    timestamps: &[i64],
) -> i64 {
    let base_ts = timestamps.first().copied().unwrap_or(0);
    let max_ts = timestamps.iter().copied().max().unwrap_or(0);
    let mut c = Cursor {
        buf: out,
        pos: FRAME_HEADER_LEN,
    };
    for (r, &ts) in records.iter().zip(timestamps) {
        let delta = ts.wrapping_sub(base_ts);
        c.varint(record_body_len(r, delta) as u64);
        c.varint(zigzag(delta));
        match &r.key {
            Some(k) => {
                c.varint(k.len() as u64 + 1);
                c.put(k);
            }
            None => c.varint(0),
        }
        c.varint(r.tags.len() as u64);
        for t in &r.tags {
            c.varint(t.len() as u64);
            c.put(t.as_bytes());
        }
        c.varint(r.headers.len() as u64);
        for (k, v) in &r.headers {
            c.varint(k.len() as u64);
            c.put(k.as_bytes());
            c.varint(v.len() as u64);
            c.put(v);
        }
        c.put(&r.payload);
    }
    let len = c.pos;
    let out = c.buf;
    out[4..8].copy_from_slice(&(len as u32).to_le_bytes());
    out[12] = FRAME_VERSION;
    out[13] = flags;
    out[14..16].copy_from_slice(&[0, 0]);
    out[16..24].copy_from_slice(&base_offset.to_le_bytes());
    out[24..28].copy_from_slice(&(records.len() as u32).to_le_bytes());
    out[28..36].copy_from_slice(&base_ts.to_le_bytes());
    out[36..44].copy_from_slice(&max_ts.to_le_bytes());
    let crc = crc32c::crc32c(&out[12..len]);
    out[8..12].copy_from_slice(&crc.to_le_bytes());
    std::sync::atomic::fence(std::sync::atomic::Ordering::Release);
    out[0..4].copy_from_slice(&FRAME_MAGIC.to_le_bytes());
    max_ts
}

/// Iterates over the records of one checked frame, sharing its bytes.
#[derive(Debug)]
pub struct RecordIter {
    frame: Bytes,
    header: FrameHeader,
    pos: usize,
    index: u32,
}

impl RecordIter {
    /// Records of `frame`, whose header [`parse_header`] accepted as `header`.
    pub fn new(frame: Bytes, header: FrameHeader) -> Self {
        RecordIter {
            frame,
            header,
            pos: FRAME_HEADER_LEN,
            index: 0,
        }
    }

    /// Offset of the record the next call to `next` returns.
    pub fn next_offset(&self) -> u64 {
        self.header.base_offset + u64::from(self.index)
    }

    fn err(&self, reason: &'static str) -> FrameError {
        FrameError::Record {
            index: self.index,
            reason,
        }
    }

    fn varint(&mut self, end: usize) -> Result<u64, FrameError> {
        let mut v: u64 = 0;
        let mut shift = 0;
        loop {
            if self.pos >= end {
                return Err(self.err("varint runs past the record"));
            }
            let b = self.frame[self.pos];
            self.pos += 1;
            if shift == 63 && b > 1 {
                return Err(self.err("varint overflows 64 bits"));
            }
            v |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Ok(v);
            }
            shift += 7;
            if shift > 63 {
                return Err(self.err("varint overflows 64 bits"));
            }
        }
    }

    fn bytes(&mut self, len: u64, end: usize) -> Result<Bytes, FrameError> {
        let len = usize::try_from(len).map_err(|_| self.err("length overflows"))?;
        if len > end - self.pos {
            return Err(self.err("field runs past the record"));
        }
        let b = self.frame.slice(self.pos..self.pos + len);
        self.pos += len;
        Ok(b)
    }

    fn string(&mut self, end: usize) -> Result<String, FrameError> {
        let len = self.varint(end)?;
        let b = self.bytes(len, end)?;
        String::from_utf8(b.to_vec()).map_err(|_| self.err("text field is not UTF-8"))
    }

    /// Moves past the next `n` records without decoding their fields.
    pub fn skip_records(&mut self, n: u64) -> Result<(), FrameError> {
        let frame_len = self.header.frame_len as usize;
        for _ in 0..n {
            if self.index >= self.header.record_count {
                return Ok(());
            }
            let len = self.varint(frame_len)?;
            let len = usize::try_from(len).map_err(|_| self.err("length overflows"))?;
            if len > frame_len - self.pos {
                return Err(self.err("record runs past the frame"));
            }
            self.pos += len;
            self.index += 1;
        }
        Ok(())
    }

    fn decode_one(&mut self) -> Result<StoredRecord, FrameError> {
        let frame_len = self.header.frame_len as usize;
        let len = self.varint(frame_len)?;
        let len = usize::try_from(len).map_err(|_| self.err("length overflows"))?;
        if len > frame_len - self.pos {
            return Err(self.err("record runs past the frame"));
        }
        let end = self.pos + len;
        let delta = unzigzag(self.varint(end)?);
        let timestamp = self.header.base_timestamp.wrapping_add(delta);
        let key = match self.varint(end)? {
            0 => None,
            n => Some(self.bytes(n - 1, end)?),
        };
        let tag_count = self.varint(end)?;
        let mut tags = Vec::new();
        for _ in 0..tag_count {
            tags.push(self.string(end)?);
        }
        let header_count = self.varint(end)?;
        let mut headers = Vec::new();
        for _ in 0..header_count {
            let name = self.string(end)?;
            let vlen = self.varint(end)?;
            headers.push((name, self.bytes(vlen, end)?));
        }
        let payload = self.frame.slice(self.pos..end);
        self.pos = end;
        let offset = self.next_offset();
        self.index += 1;
        Ok(StoredRecord {
            offset,
            timestamp,
            key,
            tags,
            headers,
            payload,
        })
    }
}

impl Iterator for RecordIter {
    type Item = Result<StoredRecord, FrameError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.index >= self.header.record_count {
            if self.pos != self.header.frame_len as usize {
                self.pos = self.header.frame_len as usize;
                return Some(Err(self.err("bytes left after the last record")));
            }
            return None;
        }
        let r = self.decode_one();
        if r.is_err() {
            // Stop after the first error: what follows cannot be located.
            self.index = self.header.record_count;
            self.pos = self.header.frame_len as usize;
        }
        Some(r)
    }
}

/// Decodes a whole frame from the start of `buf`: header, checksum and every record.
/// This is the entry point the fuzzer drives; it never panics on any input.
pub fn decode_frame(buf: &Bytes) -> Result<(FrameHeader, Vec<StoredRecord>), FrameError> {
    let header = parse_header(buf)?;
    let frame = buf.slice(..header.frame_len as usize);
    let records = RecordIter::new(frame, header).collect::<Result<Vec<_>, _>>()?;
    Ok((header, records))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Vec<Record> {
        vec![
            Record::new("hello")
                .with_key("k1")
                .with_tag("a")
                .with_tag("b"),
            Record::new(vec![0u8, 1, 2, 255])
                .with_header("h", "v")
                .with_header("h", ""),
            Record::new(""),
        ]
    }

    fn encode(records: &[Record], ts: &[i64]) -> Bytes {
        let mut buf = vec![0u8; encoded_len(records, ts)];
        encode_frame(&mut buf, 42, 0, records, ts);
        Bytes::from(buf)
    }

    #[test]
    fn round_trip() {
        let records = sample();
        let ts = [1_000, 999, i64::MAX];
        let frame = encode(&records, &ts);
        let (h, out) = decode_frame(&frame).unwrap();
        assert_eq!(h.base_offset, 42);
        assert_eq!(h.record_count, 3);
        assert_eq!(h.max_timestamp, i64::MAX);
        for (i, (r, s)) in records.iter().zip(&out).enumerate() {
            assert_eq!(s.offset, 42 + i as u64);
            assert_eq!(s.timestamp, ts[i]);
            assert_eq!(s.key, r.key);
            assert_eq!(s.tags, r.tags);
            assert_eq!(s.headers, r.headers);
            assert_eq!(s.payload, r.payload);
        }
    }

    #[test]
    fn skip_lands_on_the_right_record() {
        let records = sample();
        let frame = encode(&records, &[1, 2, 3]);
        let h = parse_header(&frame).unwrap();
        let mut it = RecordIter::new(frame, h);
        it.skip_records(2).unwrap();
        let r = it.next().unwrap().unwrap();
        assert_eq!(r.offset, 44);
        assert!(it.next().is_none());
    }

    #[test]
    fn every_flipped_bit_is_detected() {
        let frame = encode(&sample(), &[5, 6, 7]).to_vec();
        for byte in 0..frame.len() {
            for bit in 0..8 {
                let mut bad = frame.clone();
                bad[byte] ^= 1 << bit;
                assert!(
                    decode_frame(&Bytes::from(bad)).is_err(),
                    "flip {byte}:{bit}"
                );
            }
        }
    }

    #[test]
    fn every_truncation_is_detected() {
        let frame = encode(&sample(), &[5, 6, 7]);
        for len in 0..frame.len() {
            assert!(decode_frame(&frame.slice(..len)).is_err(), "len {len}");
        }
    }

    #[test]
    fn zero_bytes_are_the_end() {
        for n in [0, 1, 3, 4, 64] {
            assert_eq!(
                decode_frame(&Bytes::from(vec![0u8; n])),
                Err(FrameError::End),
                "{n}"
            );
        }
    }
}

#[cfg(test)]
mod proptests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        // The decoder's contract: any bytes give a value or an error, never a panic.
        #[test]
        fn decoder_never_panics(data in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = decode_frame(&Bytes::from(data));
        }

        // Frames whose checksum is recomputed after damage reach the record decoder.
        #[test]
        fn record_decoder_never_panics(
            body in proptest::collection::vec(any::<u8>(), 1..256),
            count in 1u32..8,
        ) {
            let len = FRAME_HEADER_LEN + body.len();
            let mut buf = vec![0u8; len];
            buf[0..4].copy_from_slice(&FRAME_MAGIC.to_le_bytes());
            buf[4..8].copy_from_slice(&(len as u32).to_le_bytes());
            buf[12] = FRAME_VERSION;
            buf[24..28].copy_from_slice(&count.to_le_bytes());
            buf[FRAME_HEADER_LEN..].copy_from_slice(&body);
            let crc = crc32c::crc32c(&buf[12..]);
            buf[8..12].copy_from_slice(&crc.to_le_bytes());
            let _ = decode_frame(&Bytes::from(buf));
        }
    }
}
