//! The consumer's batch reader over arbitrary bytes: gzip/snappy/lz4/zstd decompression of a
//! records section and `decode_batches` over a fetched run (with a valid CRC patched in
//! so compressed sections are reached) must return records or an error, never panic,
//! never expand past `DECOMPRESSED_LEN_MAX`, never return a record below the requested
//! offset. Input: one selector byte (bits 0-2 codec: 0 lz4, 1 zstd, 2 none, 3 gzip,
//! 4 snappy, 5-7 none; bits 3-7 `offset_min`), then bytes.
//! The node's produce-time check (`Batch::check_compressed`, the same bounded decoder
//! the client uses) runs on the CRC-patched batch too, with a small bound so bombs hit it.
#![no_main]

use std::sync::Arc;

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use strand_client::records::{decode_batches, decompress, DECOMPRESSED_LEN_MAX};
use strand_wire::batch::{peek_batch_len, write_crc, Batch, Compression, HEADER_LEN};

/// Bound for the node-side check: small, so decompression bombs reach it.
const CHECK_LEN_MAX: usize = 1 << 20;

fuzz_target!(|data: &[u8]| {
    let Some((&selector, rest)) = data.split_first() else { return };
    let codec = match selector & 7 {
        0 => Compression::Lz4,
        1 => Compression::Zstd,
        3 => Compression::Gzip,
        4 => Compression::Snappy,
        _ => Compression::None,
    };
    if let Ok(section) = decompress(codec, rest) {
        assert!(section.len() <= DECOMPRESSED_LEN_MAX);
    }
    let offset_min = u64::from(selector >> 3);
    read(rest, offset_min);
    // Random bytes almost never carry a valid CRC: patch one into the first batch (over
    // its data-chosen batch_len) so decompression behind the CRC check is reached.
    if rest.len() >= HEADER_LEN {
        let len = peek_batch_len(rest).unwrap_or(0) as usize;
        if (HEADER_LEN..=rest.len()).contains(&len) {
            let mut patched = rest.to_vec();
            write_crc(&mut patched[..len]);
            read(&patched, offset_min);
            if let Ok(batch) = Batch::parse(&patched) {
                // Accepted by the node only if every record parses: the reader must agree.
                if batch.check_compressed(CHECK_LEN_MAX).is_ok() && batch.header().base_offset == 0 {
                    let mut out = Vec::new();
                    let payload = Bytes::copy_from_slice(batch.as_bytes());
                    let decoded = decode_batches(&Arc::from("fuzz"), 0, &payload, 0, &mut out);
                    assert!(decoded.is_ok(), "a batch the node accepts must be readable: {decoded:?}");
                }
            }
        }
    }
});

fn read(payload: &[u8], offset_min: u64) {
    let topic: Arc<str> = Arc::from("fuzz");
    let payload = Bytes::copy_from_slice(payload);
    let mut out = Vec::new();
    if let Ok(next) = decode_batches(&topic, 0, &payload, offset_min, &mut out) {
        assert!(next >= offset_min);
        for record in &out {
            assert!(record.offset >= offset_min, "record {} below offset_min {offset_min}", record.offset);
        }
    }
}
