//! Record-level helpers shared by producer and consumer: sealing a batch with
//! optional compression, decoding a fetched run of batches into
//! [`ConsumerRecord`]s that borrow (zero-copy, via `Bytes::slice_ref`) from the
//! response payload or from the one decompressed buffer of their batch, and the
//! key partitioner.
//!
//! Invariants: decompression never allocates more than
//! [`DECOMPRESSED_LEN_MAX`] bytes whatever a batch claims; records below the
//! requested offset (a batch that started earlier) are skipped, never returned; a
//! corrupt batch yields [`ClientError::CorruptAt`] naming its partition and offsets, and
//! none of its records.

use std::sync::Arc;

use bytes::Bytes;
use strand_wire::batch::{self, BatchBuilder, BatchError, BatchHeader, BatchIter, Compression, RecordIter};

use crate::error::{ClientError, Result};

/// Largest records section a compressed batch may expand to (the node refuses more at
/// produce, see `strand_wire::batch::DECOMPRESSED_LEN_MAX`).
pub const DECOMPRESSED_LEN_MAX: usize = batch::DECOMPRESSED_LEN_MAX;

/// One record read from a partition. `key`, `value` and header fields are views into
/// the fetched bytes; holding a record keeps its batch's buffer alive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumerRecord {
    pub topic: Arc<str>,
    pub partition: u32,
    pub offset: u64,
    /// Milliseconds since the Unix epoch, as set by the producer.
    pub timestamp: i64,
    pub key: Option<Bytes>,
    /// `None` is a null value (a tombstone).
    pub value: Option<Bytes>,
    pub headers: Vec<(Bytes, Option<Bytes>)>,
}

/// Seals `builder` into batch bytes, compressing the records section with `codec`.
/// Falls back to no compression when compressing does not make the batch smaller.
pub fn seal_batch(builder: BatchBuilder, codec: Compression) -> Bytes {
    if codec == Compression::None {
        return builder.finish();
    }
    let compressed = batch::compress(codec, builder.records_section());
    if compressed.len() < builder.records_section().len() {
        builder.finish_compressed(codec, &compressed)
    } else {
        builder.finish()
    }
}

/// Decompresses a records section written by `codec` (the node's bounded decoder,
/// bounded by [`DECOMPRESSED_LEN_MAX`]).
pub fn decompress(codec: Compression, section: &[u8]) -> Result<Bytes> {
    batch::decompress(codec, section, DECOMPRESSED_LEN_MAX)
        .map(Bytes::from)
        .map_err(|e| ClientError::Decompress(e.to_string()))
}

/// Decodes the batches in `payload` (one partition's share of a fetch response) into
/// records with offset `>= offset_min`, appending them to `out`. Returns the offset after
/// the last batch seen (or `offset_min` if there was none). A torn final batch ends the run.
/// A corrupt batch is [`ClientError::CorruptAt`]; `out` then holds the records of the
/// batches before it, none of its own.
pub fn decode_batches(
    topic: &Arc<str>,
    partition: u32,
    payload: &Bytes,
    offset_min: u64,
    out: &mut Vec<ConsumerRecord>,
) -> Result<u64> {
    let mut offset_next = offset_min;
    let mut pos = 0usize;
    for batch in BatchIter::new(payload) {
        let batch = match batch {
            Ok(b) => b,
            Err(BatchError::Truncated { .. }) if offset_next > offset_min => break,
            Err(e) => return Err(corrupt_at(topic, partition, &payload[pos..], offset_next, e.to_string())),
        };
        let header = *batch.header();
        pos += batch.as_bytes().len();
        let before = out.len();
        let (batch_start, batch_end) = (offset_next, header.next_offset());
        offset_next = offset_next.max(header.next_offset());
        if header.next_offset() <= offset_min || header.is_control() {
            continue;
        }
        let decoded = match header.compression() {
            Compression::None => {
                push_records(topic, partition, &header, payload, batch.records_section(), offset_min, out)
            }
            codec => decompress(codec, batch.records_section())
                .and_then(|owned| push_records(topic, partition, &header, &owned, &owned, offset_min, out)),
        };
        if let Err(e) = decoded {
            out.truncate(before);
            let reason = match e {
                ClientError::Decompress(reason) => reason,
                other => other.to_string(),
            };
            let (topic, offset) = (topic.to_string(), batch_start);
            return Err(ClientError::CorruptAt { topic, partition, offset, next_offset: batch_end, reason });
        }
    }
    Ok(offset_next)
}

/// The error for a batch at `rest` that failed validation, consumed up to `offset`: it
/// spans to its header's next offset when that header is plausible, else one offset.
fn corrupt_at(topic: &str, partition: u32, rest: &[u8], offset: u64, reason: String) -> ClientError {
    let next_offset = match BatchHeader::parse(rest) {
        Ok(h) if h.base_offset <= offset && h.next_offset() > offset => h.next_offset(),
        _ => offset + 1,
    };
    ClientError::CorruptAt { topic: topic.to_string(), partition, offset, next_offset, reason }
}

/// Appends the records of one batch whose (uncompressed) records section is `section`,
/// a slice of `buf`.
fn push_records(
    topic: &Arc<str>,
    partition: u32,
    header: &strand_wire::batch::BatchHeader,
    buf: &Bytes,
    section: &[u8],
    offset_min: u64,
    out: &mut Vec<ConsumerRecord>,
) -> Result<()> {
    for (index, record) in RecordIter::new(section, header.record_count).enumerate() {
        let record = record?;
        // The node validated the deltas of uncompressed batches; a compressed section is
        // only checked here, so a hostile delta must not wrap the offset.
        if record.offset_delta != index as i64 {
            return Err(ClientError::Decompress(format!(
                "record {index} of the batch at offset {} has offset delta {}",
                header.base_offset, record.offset_delta
            )));
        }
        let offset = header.base_offset + index as u64;
        if offset < offset_min {
            continue;
        }
        let headers = record.headers().map(|(k, v)| (buf.slice_ref(k), v.map(|v| buf.slice_ref(v)))).collect();
        out.push(ConsumerRecord {
            topic: topic.clone(),
            partition,
            offset,
            timestamp: record.timestamp(header),
            key: record.key.map(|k| buf.slice_ref(k)),
            value: record.value.map(|v| buf.slice_ref(v)),
            headers,
        });
    }
    Ok(())
}

/// Kafka's murmur2 (seed `0x9747b28c`), so keys land on the partitions a Kafka
/// client would choose: `partition = (murmur2(key) & 0x7fffffff) % partitions`.
pub fn murmur2(data: &[u8]) -> u32 {
    const SEED: u32 = 0x9747_b28c;
    const M: u32 = 0x5bd1_e995;
    const R: u32 = 24;
    let mut h = SEED ^ data.len() as u32;
    let mut chunks = data.chunks_exact(4);
    for chunk in &mut chunks {
        let mut k = u32::from_le_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]);
        k = k.wrapping_mul(M);
        k ^= k >> R;
        k = k.wrapping_mul(M);
        h = h.wrapping_mul(M);
        h ^= k;
    }
    let tail = chunks.remainder();
    if tail.len() >= 3 {
        h ^= u32::from(tail[2]) << 16;
    }
    if tail.len() >= 2 {
        h ^= u32::from(tail[1]) << 8;
    }
    if !tail.is_empty() {
        h ^= u32::from(tail[0]);
        h = h.wrapping_mul(M);
    }
    h ^= h >> 13;
    h = h.wrapping_mul(M);
    h ^= h >> 15;
    h
}

/// The partition for `key` among `partitions` (Kafka-compatible murmur2).
pub fn partition_for_key(key: &[u8], partitions: u32) -> u32 {
    assert!(partitions > 0, "a topic has at least one partition");
    (murmur2(key) & 0x7fff_ffff) % partitions
}

#[cfg(test)]
mod tests {
    use super::*;
    use strand_wire::batch::{stamp_base_offset, BatchHeader};

    fn batch(codec: Compression, base_offset: u64, n: u32) -> Bytes {
        let mut b = BatchBuilder::new();
        for i in 0..n {
            let value = format!("value {i} {}", "x".repeat(100));
            let key = format!("k{i}");
            b.push(1_000 + i64::from(i), Some(key.as_bytes()), Some(value.as_bytes()), &[(b"h", Some(b"hv"))]);
        }
        let mut bytes = seal_batch(b, codec).to_vec();
        stamp_base_offset(&mut bytes, base_offset);
        Bytes::from(bytes)
    }

    /// A compressed section is not validated by the node: an out-of-sequence offset delta
    /// (here -5, which would wrap the record's offset) is an error, not a record.
    #[test]
    fn compressed_records_with_a_bad_offset_delta_are_refused() {
        let mut b = BatchBuilder::new();
        for i in 0..3 {
            b.push(1_000, None, Some(format!("value {i}").as_bytes()), &[]);
        }
        let mut section = b.records_section().to_vec();
        // A record starts with its length, attributes and timestamp delta (one byte each
        // here), then its offset delta (zigzag varint; 0 is the byte 0x00).
        assert_eq!(section[..4], [26, 0, 0, 0], "first record's offset delta is 0");
        section[3] = 0x09; // zigzag(-5)
        let compressed = batch::compress(Compression::Lz4, &section);
        let mut bytes = b.finish_compressed(Compression::Lz4, &compressed).to_vec();
        stamp_base_offset(&mut bytes, 0);
        let topic: Arc<str> = Arc::from("t");
        let mut out = Vec::new();
        let err = decode_batches(&topic, 0, &Bytes::from(bytes), 0, &mut out).expect_err("bad delta refused");
        assert!(err.to_string().contains("offset delta -5"), "{err}");
        assert!(err.to_string().contains("corrupt batch in t/0 at offset 0 (next batch at offset 3)"), "{err}");
        assert!(out.is_empty());
    }

    #[test]
    fn compression_round_trip_skips_records_below_the_position() {
        for codec in Compression::ALL {
            let mut payload = batch(codec, 100, 10).to_vec();
            payload.extend_from_slice(&batch(codec, 110, 5));
            let payload = Bytes::from(payload);
            let header = BatchHeader::parse(&payload).expect("header");
            assert_eq!(header.compression(), codec, "compressible data is compressed");
            let topic: Arc<str> = Arc::from("t");
            let mut out = Vec::new();
            let next = decode_batches(&topic, 3, &payload, 104, &mut out).expect("valid");
            assert_eq!(next, 115);
            let offsets: Vec<u64> = out.iter().map(|r| r.offset).collect();
            assert_eq!(offsets, (104..115).collect::<Vec<_>>(), "{codec:?}");
            let r = &out[0];
            assert_eq!(r.key.as_deref(), Some(&b"k4"[..]));
            let value = r.value.as_ref().expect("not a tombstone");
            assert!(value.starts_with(b"value 4 "));
            assert_eq!(r.timestamp, 1_004);
            assert_eq!(r.headers, vec![(Bytes::from_static(b"h"), Some(Bytes::from_static(b"hv")))]);
            if codec == Compression::None {
                let range = payload.as_ptr() as usize..payload.as_ptr() as usize + payload.len();
                assert!(range.contains(&(value.as_ptr() as usize)), "uncompressed values are views of the payload");
            }
        }
    }

    #[test]
    fn torn_tail_ends_the_run_but_corruption_is_an_error() {
        let topic: Arc<str> = Arc::from("t");
        let mut payload = batch(Compression::None, 0, 3).to_vec();
        let second = batch(Compression::None, 3, 3);
        payload.extend_from_slice(&second[..second.len() / 2]);
        let mut out = Vec::new();
        assert_eq!(decode_batches(&topic, 0, &Bytes::from(payload.clone()), 0, &mut out), Ok(3));
        assert_eq!(out.len(), 3);
        payload[batch::HEADER_LEN + 5] ^= 0xff;
        let mut out = Vec::new();
        let err = decode_batches(&topic, 0, &Bytes::from(payload), 0, &mut out).unwrap_err();
        assert!(matches!(err, ClientError::CorruptAt { offset: 0, next_offset: 3, .. }), "{err:?}");
        assert!(out.is_empty(), "no record of a corrupt batch is returned");
    }

    #[test]
    fn decompression_refuses_oversized_claims() {
        // A snappy length preamble of 4 GiB - 1.
        let claim = [0xff, 0xff, 0xff, 0xff, 0x0f, 0, 0, 0];
        assert!(matches!(decompress(Compression::Snappy, &claim), Err(ClientError::Decompress(_))));
        let zeros = vec![0u8; DECOMPRESSED_LEN_MAX + 10];
        let bomb = zstd::bulk::compress(&zeros, 3).expect("compress");
        assert!(matches!(decompress(Compression::Zstd, &bomb), Err(ClientError::Decompress(_))));
    }

    #[test]
    fn murmur2_matches_kafka() {
        // Vectors from Kafka's UtilsTest.testMurmur2.
        let cases: [(&[u8], i32); 6] = [
            (b"21", -973_932_308),
            (b"foobar", -790_332_482),
            (b"a-little-bit-long-string", -985_981_536),
            (b"a-little-bit-longer-string", -1_486_304_829),
            (b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8", -58_897_971),
            (b"abc", 479_470_107),
        ];
        for (key, expect) in cases {
            assert_eq!(murmur2(key) as i32, expect, "{}", String::from_utf8_lossy(key));
        }
        assert_eq!(partition_for_key(b"foobar", 7), ((-790_332_482i32 as u32) & 0x7fff_ffff) % 7);
    }
}
