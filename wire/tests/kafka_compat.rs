//! Cross-check of the batch format against an independent implementation of Kafka's
//! RecordBatch v2 (the `kafka-protocol` crate): batches Strand builds decode there to
//! the same records, and batches it encodes parse, validate and iterate here to the
//! same records, for every codec. This is what shows the bytes are Kafka's.

use bytes::{Bytes, BytesMut};
use kafka_protocol::indexmap::IndexMap;
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::records::{
    Compression as KCompression, Record as KRecord, RecordBatchDecoder, RecordBatchEncoder, RecordEncodeOptions,
    TimestampType,
};
use proptest::prelude::*;
use strand_wire::batch::{self, Batch, BatchBuilder, Compression, RecordIter, DECOMPRESSED_LEN_MAX};

/// One record as both sides see it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Rec {
    timestamp: i64,
    key: Option<Vec<u8>>,
    value: Option<Vec<u8>>,
    /// Distinct UTF-8 keys: kafka-protocol keeps headers in a map of strings.
    headers: Vec<(String, Option<Vec<u8>>)>,
}

#[derive(Debug, Clone)]
struct Spec {
    records: Vec<Rec>,
    /// `(id, epoch, base_sequence)` of an idempotent producer.
    producer: Option<(i64, i16, i32)>,
    base_offset: u64,
    codec: Compression,
}

fn bytes(max: usize) -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(any::<u8>(), 0..max)
}

fn rec() -> impl Strategy<Value = Rec> {
    let headers = prop::collection::btree_map("[a-z]{0,6}", prop::option::of(bytes(16)), 0..4);
    // Timestamps around now, so deltas both ways stay far from overflow.
    (1_600_000_000_000i64..1_800_000_000_000, prop::option::of(bytes(32)), prop::option::of(bytes(300)), headers)
        .prop_map(|(timestamp, key, value, headers)| Rec {
            timestamp,
            key,
            value,
            headers: headers.into_iter().collect(),
        })
}

fn spec() -> impl Strategy<Value = Spec> {
    let producer = prop::option::of((0..=i64::MAX, 0..=i16::MAX, 0..=i32::MAX - 100));
    let codec = prop::sample::select(Compression::ALL.to_vec());
    (prop::collection::vec(rec(), 1..30), producer, 0..=(i64::MAX as u64 / 2), codec)
        .prop_map(|(records, producer, base_offset, codec)| Spec { records, producer, base_offset, codec })
}

fn kafka_codec(c: Compression) -> KCompression {
    match c {
        Compression::None => KCompression::None,
        Compression::Gzip => KCompression::Gzip,
        Compression::Snappy => KCompression::Snappy,
        Compression::Lz4 => KCompression::Lz4,
        Compression::Zstd => KCompression::Zstd,
    }
}

/// The batch Strand's builder makes of `spec`, stamped at its base offset.
fn strand_batch(spec: &Spec) -> Vec<u8> {
    let mut b = BatchBuilder::new();
    if let Some((id, epoch, seq)) = spec.producer {
        b = b.producer(id, epoch, seq);
    }
    for r in &spec.records {
        let headers: Vec<(&[u8], Option<&[u8]>)> =
            r.headers.iter().map(|(k, v)| (k.as_bytes(), v.as_deref())).collect();
        b.push(r.timestamp, r.key.as_deref(), r.value.as_deref(), &headers);
    }
    let compressed = batch::compress(spec.codec, b.records_section());
    let mut out =
        if spec.codec == Compression::None { b.finish() } else { b.finish_compressed(spec.codec, &compressed) }
            .to_vec();
    batch::stamp_base_offset(&mut out, spec.base_offset);
    out
}

/// The batch kafka-protocol's encoder makes of `spec`.
fn kafka_batch(spec: &Spec) -> Vec<u8> {
    let (producer_id, producer_epoch, base_sequence) = spec.producer.unwrap_or((-1, -1, -1));
    let records: Vec<KRecord> = spec
        .records
        .iter()
        .enumerate()
        .map(|(i, r)| KRecord {
            transactional: false,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: -1,
            producer_id,
            producer_epoch,
            timestamp_type: TimestampType::Creation,
            offset: spec.base_offset as i64 + i as i64,
            // One batch needs offset - sequence constant (the encoder splits otherwise).
            sequence: base_sequence.wrapping_add(i as i32),
            timestamp: r.timestamp,
            key: r.key.clone().map(Bytes::from),
            value: r.value.clone().map(Bytes::from),
            headers: r
                .headers
                .iter()
                .map(|(k, v)| (StrBytes::from_string(k.clone()), v.clone().map(Bytes::from)))
                .collect::<IndexMap<_, _>>(),
        })
        .collect();
    let mut buf = BytesMut::new();
    let options = RecordEncodeOptions { version: 2, compression: kafka_codec(spec.codec) };
    RecordBatchEncoder::encode(&mut buf, &records, &options).expect("kafka-protocol encodes");
    buf.to_vec()
}

/// Validates `bytes` as the node does at produce and returns its records.
fn strand_records(bytes: &[u8]) -> Result<(batch::BatchHeader, Vec<Rec>), String> {
    let parsed = Batch::parse(bytes).map_err(|e| e.to_string())?;
    parsed.check_compressed(DECOMPRESSED_LEN_MAX).map_err(|e| e.to_string())?;
    let header = *parsed.header();
    prop_assert_eq_str(header.batch_len as usize, bytes.len())?;
    let section = batch::decompress(header.compression(), parsed.records_section(), DECOMPRESSED_LEN_MAX)
        .map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    for (i, r) in RecordIter::new(&section, header.record_count).enumerate() {
        let r = r.map_err(|e| e.to_string())?;
        prop_assert_eq_str(r.offset_delta, i as i64)?;
        out.push(Rec {
            timestamp: r.timestamp(&header),
            key: r.key.map(<[u8]>::to_vec),
            value: r.value.map(<[u8]>::to_vec),
            headers: r
                .headers()
                .map(|(k, v)| (String::from_utf8(k.to_vec()).expect("utf-8 keys"), v.map(<[u8]>::to_vec)))
                .collect(),
        });
    }
    Ok((header, out))
}

fn prop_assert_eq_str<T: PartialEq + std::fmt::Debug>(got: T, want: T) -> Result<(), String> {
    if got == want {
        Ok(())
    } else {
        Err(format!("{got:?} != {want:?}"))
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    /// (a) Strand's batches decode with kafka-protocol to the same records.
    #[test]
    fn strand_batches_decode_in_kafka(spec in spec()) {
        let bytes = strand_batch(&spec);
        let set = RecordBatchDecoder::decode(&mut Bytes::from(bytes.clone()))
            .map_err(|e| TestCaseError::fail(format!("kafka-protocol refused a Strand batch: {e:#}")))?;
        prop_assert_eq!(set.version, 2);
        prop_assert_eq!(set.compression, kafka_codec(spec.codec));
        prop_assert_eq!(set.records.len(), spec.records.len());
        let (producer_id, producer_epoch, base_sequence) = spec.producer.unwrap_or((-1, -1, -1));
        for (i, (got, want)) in set.records.iter().zip(&spec.records).enumerate() {
            prop_assert_eq!(got.offset, spec.base_offset as i64 + i as i64);
            prop_assert_eq!(got.timestamp, want.timestamp);
            prop_assert_eq!(got.timestamp_type, TimestampType::Creation);
            prop_assert_eq!(got.key.as_deref(), want.key.as_deref());
            prop_assert_eq!(got.value.as_deref(), want.value.as_deref());
            let headers: Vec<(String, Option<Vec<u8>>)> =
                got.headers.iter().map(|(k, v)| (k.to_string(), v.as_ref().map(|v| v.to_vec()))).collect();
            prop_assert_eq!(&headers, &want.headers);
            prop_assert_eq!((got.producer_id, got.producer_epoch), (producer_id, producer_epoch));
            if spec.producer.is_some() {
                prop_assert_eq!(got.sequence, base_sequence + i as i32);
            }
            prop_assert_eq!(got.partition_leader_epoch, -1);
            prop_assert!(!got.transactional && !got.control);
        }
    }

    /// (b) kafka-protocol's batches parse, validate and iterate here to the same records.
    #[test]
    fn kafka_batches_parse_in_strand(spec in spec()) {
        let bytes = kafka_batch(&spec);
        let (header, records) = strand_records(&bytes).map_err(|e| TestCaseError::fail(format!("Strand refused a Kafka batch: {e}")))?;
        prop_assert_eq!(header.base_offset, spec.base_offset);
        prop_assert_eq!(header.compression(), spec.codec);
        prop_assert_eq!(header.record_count as usize, spec.records.len());
        prop_assert_eq!(header.max_timestamp, spec.records.iter().map(|r| r.timestamp).max().unwrap());
        let (producer_id, producer_epoch, base_sequence) = spec.producer.unwrap_or((-1, -1, -1));
        prop_assert_eq!((header.producer_id, header.producer_epoch), (producer_id, producer_epoch));
        prop_assert_eq!(header.base_sequence, base_sequence);
        prop_assert_eq!(&records, &spec.records);
    }

    /// Uncompressed, both sides write the very same bytes once the base timestamp agrees
    /// (kafka-protocol takes the smallest timestamp as base, Strand the first record's).
    #[test]
    fn uncompressed_bytes_are_identical(spec in spec()) {
        let mut spec = spec;
        spec.codec = Compression::None;
        let min = spec.records.iter().map(|r| r.timestamp).min().unwrap();
        spec.records[0].timestamp = min;
        prop_assert_eq!(strand_batch(&spec), kafka_batch(&spec));
    }
}
