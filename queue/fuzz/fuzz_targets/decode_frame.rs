//! Fuzzes the frame decoder: any bytes must decode or fail with an error, never panic, and a
//! frame that decodes must re-encode to the same records. Each input is tried twice: as it is,
//! and with its checksum recomputed, so that the fuzzer also reaches the record decoder behind
//! the CRC check.
#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use streams_queue::Record;
use streams_queue::codec::{FLAG_APPEND_TIME, FRAME_HEADER_LEN, decode_frame, encode_frame, encoded_len};

fn check(data: &[u8]) {
    let buf = Bytes::copy_from_slice(data);
    let Ok((header, records)) = decode_frame(&buf) else {
        return;
    };
    let again: Vec<Record> = records
        .iter()
        .map(|r| Record {
            key: r.key.clone(),
            tags: r.tags.clone(),
            headers: r.headers.clone(),
            timestamp: Some(r.timestamp),
            payload: r.payload.clone(),
        })
        .collect();
    let timestamps: Vec<i64> = records.iter().map(|r| r.timestamp).collect();
    let mut out = vec![0u8; encoded_len(&again, &timestamps)];
    encode_frame(&mut out, header.base_offset, header.flags & FLAG_APPEND_TIME, &again, &timestamps);
    // Varints may have been written longer than needed, so compare decoded values.
    let (h2, r2) = decode_frame(&Bytes::from(out)).expect("a re-encoded frame decodes");
    assert_eq!(h2.base_offset, header.base_offset);
    assert_eq!(r2, records);
}

fuzz_target!(|data: &[u8]| {
    check(data);
    if data.len() >= FRAME_HEADER_LEN {
        let mut fixed = data.to_vec();
        let len = u32::from_le_bytes([data[4], data[5], data[6], data[7]]) as usize;
        let end = len.clamp(12, fixed.len());
        let crc = crc32c::crc32c(&fixed[12..end]);
        fixed[8..12].copy_from_slice(&crc.to_le_bytes());
        check(&fixed);
    }
});
