//! Property tests of the record-batch format: builder/reader round trip and
//! what the CRC does and does not cover.

use proptest::prelude::*;
use strand_wire::batch::{Batch, BatchBuilder, BatchError, BatchIter, CRC_START};

type Header = (Vec<u8>, Option<Vec<u8>>);

#[derive(Debug, Clone)]
struct Rec {
    ts: i64,
    key: Option<Vec<u8>>,
    value: Option<Vec<u8>>,
    headers: Vec<Header>,
}

fn rec() -> impl Strategy<Value = Rec> {
    let bytes = || prop::collection::vec(any::<u8>(), 0..24);
    let header = (bytes(), prop::option::of(bytes()));
    (
        any::<i64>(),
        prop::option::of(bytes()),
        prop::option::of(prop::collection::vec(any::<u8>(), 0..200)),
        prop::collection::vec(header, 0..4),
    )
        .prop_map(|(ts, key, value, headers)| Rec { ts, key, value, headers })
}

#[derive(Debug, Clone)]
struct Spec {
    records: Vec<Rec>,
    /// `(id, epoch, base_sequence)` of an idempotent producer.
    producer: Option<(i64, i16, i32)>,
    control: bool,
}

fn spec() -> impl Strategy<Value = Spec> {
    let producer = prop::option::of((0..=i64::MAX, 0..=i16::MAX, 0..=i32::MAX));
    (prop::collection::vec(rec(), 1..20), producer, any::<bool>()).prop_map(|(records, producer, control)| Spec {
        records,
        producer,
        control,
    })
}

fn build(spec: &Spec) -> Vec<u8> {
    let mut b = BatchBuilder::new();
    if let Some((id, epoch, seq)) = spec.producer {
        b = b.producer(id, epoch, seq);
    }
    if spec.control {
        b = b.control();
    }
    for r in &spec.records {
        let headers: Vec<(&[u8], Option<&[u8]>)> = r.headers.iter().map(|(k, v)| (&k[..], v.as_deref())).collect();
        b.push(r.ts, r.key.as_deref(), r.value.as_deref(), &headers);
    }
    b.finish().to_vec()
}

proptest! {
    #[test]
    fn built_batches_round_trip(spec in spec()) {
        let bytes = build(&spec);
        let batch = Batch::parse(&bytes).expect("a built batch is valid");
        let h = batch.header();
        let first_ts = spec.records[0].ts;
        prop_assert_eq!(h.record_count as usize, spec.records.len());
        prop_assert_eq!(h.batch_len as usize, bytes.len());
        prop_assert_eq!(h.first_timestamp, first_ts);
        prop_assert_eq!(h.max_timestamp, spec.records.iter().map(|r| r.ts).max().unwrap_or(first_ts));
        prop_assert_eq!((h.producer_id, h.producer_epoch, h.base_sequence), spec.producer.unwrap_or((-1, -1, -1)));
        prop_assert_eq!(h.last_offset_delta as usize, spec.records.len() - 1);
        prop_assert_eq!(h.is_control(), spec.control);
        let mut seen = 0usize;
        for (i, (got, want)) in batch.records().zip(&spec.records).enumerate() {
            let got = got.expect("records of a parsed batch are valid");
            prop_assert_eq!(got.offset_delta, i as i64);
            // Records older than the first one have a negative delta; the sum wraps as in Kafka.
            prop_assert_eq!(got.timestamp_delta, want.ts.wrapping_sub(first_ts));
            prop_assert_eq!(got.timestamp(h), want.ts);
            prop_assert_eq!(got.key, want.key.as_deref());
            prop_assert_eq!(got.value, want.value.as_deref());
            let headers: Vec<(&[u8], Option<&[u8]>)> = got.headers().collect();
            let expected: Vec<(&[u8], Option<&[u8]>)> = want.headers.iter().map(|(k, v)| (&k[..], v.as_deref())).collect();
            prop_assert_eq!(headers, expected);
            seen += 1;
        }
        prop_assert_eq!(seen, spec.records.len());
    }

    /// Every byte the CRC covers is protected: any single corrupted byte there is rejected.
    #[test]
    fn flipped_byte_after_crc_is_detected(spec in spec(), pos in any::<prop::sample::Index>(), mask in 1u8..=255) {
        let mut bytes = build(&spec);
        let at = CRC_START + pos.index(bytes.len() - CRC_START);
        bytes[at] ^= mask;
        prop_assert!(Batch::parse(&bytes).is_err(), "flip at {} with mask {:#x} went unnoticed", at, mask);
    }

    /// Documented property: `baseOffset` (bytes 0..8) and `partitionLeaderEpoch` (12..16)
    /// are outside the CRC (Kafka's choice: brokers rewrite them); corrupting them is NOT
    /// detected by the batch itself (the log's index checks the offset).
    #[test]
    fn flipped_base_offset_or_leader_epoch_is_not_detected(spec in spec(), at in (0usize..8).prop_union(12..16), mask in 1u8..=255) {
        let mut bytes = build(&spec);
        bytes[at] ^= mask;
        let batch = Batch::parse(&bytes).expect("base_offset and the leader epoch are not covered by the crc");
        prop_assert!(batch.header().base_offset != 0 || batch.header().partition_leader_epoch != -1);
    }

    /// `magic` is outside the CRC too, but only one value is accepted: a flip is refused.
    #[test]
    fn flipped_magic_is_detected(spec in spec(), mask in 1u8..=255) {
        let mut bytes = build(&spec);
        bytes[16] ^= mask;
        prop_assert_eq!(Batch::parse(&bytes).unwrap_err(), BatchError::BadMagic(2 ^ mask));
    }

    /// The crc field itself: any change is a mismatch.
    #[test]
    fn flipped_crc_field_is_detected(spec in spec(), at in 17usize..21, mask in 1u8..=255) {
        let mut bytes = build(&spec);
        bytes[at] ^= mask;
        let is_crc_mismatch = matches!(Batch::parse(&bytes), Err(BatchError::CrcMismatch { .. }));
        prop_assert!(is_crc_mismatch);
    }

    /// Concatenated batches iterate back in order; a truncated run ends in an error, never a panic.
    #[test]
    fn concatenated_batches_iterate(specs in prop::collection::vec(spec(), 1..5), cut in any::<prop::sample::Index>()) {
        let built: Vec<Vec<u8>> = specs.iter().map(build).collect();
        let all: Vec<u8> = built.concat();
        let counts: Vec<u32> = BatchIter::new(&all).map(|b| b.expect("valid run").header().record_count).collect();
        let expected: Vec<u32> = specs.iter().map(|s| s.records.len() as u32).collect();
        prop_assert_eq!(counts, expected);
        let cut = 1 + cut.index(all.len() - 1);
        let results: Vec<_> = BatchIter::new(&all[..cut]).collect();
        let on_boundary = built.iter().scan(0, |acc, b| { *acc += b.len(); Some(*acc) }).any(|end| end == cut);
        prop_assert_eq!(results.iter().any(|r| r.is_err()), !on_boundary);
    }

    /// Arbitrary bytes never panic the reader.
    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..300)) {
        for batch in BatchIter::new(&bytes).flatten() {
            for record in batch.records() {
                let _ = record.map(|r| r.headers().count());
            }
        }
    }
}
