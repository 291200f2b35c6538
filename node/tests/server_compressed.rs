//! Compressed batches are checked at produce (issue #15): a batch flagged with a codec
//! (gzip, snappy, lz4, zstd) whose CRC is valid but whose content is garbage, or whose records do not match the
//! header, is refused with CORRUPT_BATCH; one that expands past
//! `batch_decompressed_len_max` with MESSAGE_TOO_LARGE; nothing of either is stored.
//! Good compressed batches are accepted and read back intact. (The refusal's text is
//! checked by the unit tests of `strand_wire::batch`: produce responses carry no
//! per-partition message yet.)

mod common;

use common::{Client, Node};
use strand_wire::batch::{self, BatchBuilder, Compression, RecordIter, HEADER_LEN};
use strand_wire::msg::*;
use strand_wire::ErrorCode;

/// Limit set in the config file of [`decompression_bound_holds_at_the_limit`].
const BOUND: usize = 65_536;

/// Produces `payload` to `topic`/0; the partition's code and the response message.
fn produce(c: &mut Client, topic: &str, payload: &[u8]) -> (ErrorCode, String) {
    let req = Request::Produce(ProduceRequest {
        acks: Acks::Leader,
        timeout_ms: 5_000,
        partitions: vec![ProducePartition { topic: topic.into(), partition: 0, bytes_len: payload.len() as u32 }],
    });
    let (h, _) = c.call(req, payload);
    let code = match h.response {
        Response::Produce(r) => r.partitions[0].error,
        _ => h.error,
    };
    (code, h.message.unwrap_or_default())
}

/// A batch of `count` records whose (uncompressed) records section is `section`,
/// compressed with `codec`; `count` may disagree with the section on purpose.
fn compressed(codec: Compression, section: &[u8], count: u32) -> Vec<u8> {
    let mut b = BatchBuilder::new();
    for _ in 0..count {
        b.push(1_700_000_000_000, None, Some(b"x"), &[]);
    }
    b.finish_compressed(codec, &batch::compress(codec, section)).to_vec()
}

/// The records section of `values`, uncompressed.
fn section(values: &[&[u8]]) -> Vec<u8> {
    let mut b = BatchBuilder::new();
    for v in values {
        b.push(1_700_000_000_000, None, Some(v), &[]);
    }
    b.records_section().to_vec()
}

/// Overwrites the compressed bytes after `keep` bytes of the records section with
/// garbage and fixes the CRC, so only the content is wrong.
fn garbage_with_valid_crc(mut batch: Vec<u8>, keep: usize) -> Vec<u8> {
    let len = batch.len();
    for (i, b) in batch[HEADER_LEN + keep..len].iter_mut().enumerate() {
        *b = 0x5a ^ (i as u8);
    }
    batch::write_crc(&mut batch);
    batch
}

/// Every record value of the partition, compressed batches decompressed.
fn read_values(c: &mut Client, topic: &str) -> Vec<Vec<u8>> {
    let (p, bytes) = c.fetch(topic, 0, 0, 0);
    assert_eq!(p.error, ErrorCode::None);
    let mut values = Vec::new();
    for b in batch::BatchIter::new(&bytes) {
        let b = b.expect("stored batch valid");
        let count = b.header().record_count;
        let section = batch::decompress(b.header().compression(), b.records_section(), 1 << 26).unwrap();
        for r in RecordIter::new(&section, count) {
            values.push(r.unwrap().value.expect("not a tombstone").to_vec());
        }
    }
    values
}

#[test]
fn garbage_compressed_batches_with_a_valid_crc_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let node = Node::start(dir.path(), 1, &[]);
    let mut c = node.client();
    assert_eq!(c.create_topic("z", 1).error, ErrorCode::None);
    let good = section(&[b"one", b"two", b"three"]);
    let codecs = [Compression::Gzip, Compression::Snappy, Compression::Lz4, Compression::Zstd];
    for codec in codecs {
        let name = codec.name();
        // Garbage after the first 4 bytes (the lz4 and zstd magic, snappy's length preamble).
        let garbage = garbage_with_valid_crc(compressed(codec, &good, 3), 4);
        let (code, message) = produce(&mut c, "z", &garbage);
        assert_eq!(code, ErrorCode::CorruptBatch, "{name}: {message}");
        // Decompresses, but the header claims 4 records and the content holds 3.
        let (code, message) = produce(&mut c, "z", &compressed(codec, &good, 4));
        assert_eq!(code, ErrorCode::CorruptBatch, "{name}: {message}");
        // Decompresses, but the first record's offset delta (after its length, attributes
        // and timestamp delta) is -5 (zigzag 0x09).
        let mut out_of_order = good.clone();
        assert_eq!(out_of_order[3], 0, "offset delta 0");
        out_of_order[3] = 0x09;
        let (code, message) = produce(&mut c, "z", &compressed(codec, &out_of_order, 3));
        assert_eq!(code, ErrorCode::CorruptBatch, "{name}: {message}");
        // A good one is accepted.
        let (code, message) = produce(&mut c, "z", &compressed(codec, &good, 3));
        assert_eq!(code, ErrorCode::None, "{name}: {message}");
    }
    // Only the good batches were stored, and every consumer can read them.
    let three: Vec<Vec<u8>> = [b"one".to_vec(), b"two".to_vec(), b"three".to_vec()].to_vec();
    assert_eq!(read_values(&mut c, "z"), vec![three; codecs.len()].concat());
}

#[test]
fn decompression_bombs_are_refused_and_the_bound_holds_at_the_limit() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("strand.toml");
    std::fs::write(&config, format!("batch_decompressed_len_max = {BOUND}\n")).unwrap();
    let node = Node::start(&dir.path().join("data"), 1, &["--config", config.to_str().unwrap()]);
    let mut c = node.client();
    assert_eq!(c.create_topic("b", 1).error, ErrorCode::None);
    // One record of value length v takes v + 11 bytes: a 3-byte record length, 5 one-byte
    // fields (attributes, deltas, null key, header count) and a 3-byte value length.
    let at_limit = vec![b'a'; BOUND - 11];
    let over = vec![b'b'; BOUND - 10];
    assert_eq!(section(&[&at_limit]).len(), BOUND);
    for codec in [Compression::Gzip, Compression::Snappy, Compression::Lz4, Compression::Zstd] {
        let name = codec.name();
        let (code, message) = produce(&mut c, "b", &compressed(codec, &section(&[&at_limit]), 1));
        assert_eq!(code, ErrorCode::None, "{name} at the limit: {message}");
        let (code, message) = produce(&mut c, "b", &compressed(codec, &section(&[&over]), 1));
        assert_eq!(code, ErrorCode::MessageTooLarge, "{name} one byte over: {message}");
        if codec == Compression::Snappy {
            // Snappy cannot pack 60 MiB into a small batch; its length preamble is what the
            // bound is checked against, above.
            continue;
        }
        // A bomb: 60 MiB of zeros in a few KiB (under the default limit it would be read).
        let bomb = compressed(codec, &vec![0u8; 60 << 20], 1);
        assert!(bomb.len() < 1 << 20, "{name}: {} bytes", bomb.len());
        let (code, message) = produce(&mut c, "b", &bomb);
        assert_eq!(code, ErrorCode::MessageTooLarge, "{name} bomb: {message}");
    }
    // A zstd frame without a content size in its header is cut at the bound while streaming.
    let mut streamed = Vec::new();
    let mut encoder = zstd::stream::write::Encoder::new(&mut streamed, 3).unwrap();
    std::io::Write::write_all(&mut encoder, &section(&[&over])).unwrap();
    encoder.finish().unwrap();
    let mut b = BatchBuilder::new();
    b.push(1_700_000_000_000, None, Some(b"x"), &[]);
    let (code, message) = produce(&mut c, "b", &b.finish_compressed(Compression::Zstd, &streamed));
    assert_eq!(code, ErrorCode::MessageTooLarge, "streamed zstd: {message}");
    let stored = read_values(&mut c, "b");
    assert_eq!(stored, vec![at_limit; 4], "only the batches at the limit were stored");
}
