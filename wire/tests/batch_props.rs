//! Property tests of the record-batch format: builder/reader round trip and
//! what the CRC does and does not cover.

use proptest::prelude::*;
use strand_wire::batch::{Batch, BatchBuilder, BatchError, BatchIter, CRC_START};

type Header = (Vec<u8>, Option<Vec<u8>>);

#[derive(Debug, Clone)]
struct Rec {
    ts: i64,
    key: Option<Vec<u8>>,
    value: Vec<u8>,
    headers: Vec<Header>,
}

fn rec() -> impl Strategy<Value = Rec> {
    let bytes = || prop::collection::vec(any::<u8>(), 0..24);
    let header = (bytes(), prop::option::of(bytes()));
    (
        any::<i64>(),
        prop::option::of(bytes()),
        prop::collection::vec(any::<u8>(), 0..200),
        prop::collection::vec(header, 0..4),
    )
        .prop_map(|(ts, key, value, headers)| Rec { ts, key, value, headers })
}

#[derive(Debug, Clone)]
struct Spec {
    records: Vec<Rec>,
    producer: (u64, u16, u32),
    control: bool,
}

fn spec() -> impl Strategy<Value = Spec> {
    (prop::collection::vec(rec(), 1..20), any::<(u64, u16, u32)>(), any::<bool>())
        .prop_map(|(records, producer, control)| Spec { records, producer, control })
}

fn build(spec: &Spec) -> Vec<u8> {
    let (id, epoch, seq) = spec.producer;
    let mut b = BatchBuilder::new().producer(id, epoch, seq);
    if spec.control {
        b = b.control();
    }
    for r in &spec.records {
        let headers: Vec<(&[u8], Option<&[u8]>)> = r.headers.iter().map(|(k, v)| (&k[..], v.as_deref())).collect();
        b.push(r.ts, r.key.as_deref(), &r.value, &headers);
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
        prop_assert_eq!((h.producer_id, h.producer_epoch, h.base_sequence), spec.producer);
        prop_assert_eq!(h.is_control(), spec.control);
        let mut seen = 0usize;
        for (i, (got, want)) in batch.records().zip(&spec.records).enumerate() {
            let got = got.expect("records of a parsed batch are valid");
            prop_assert_eq!(got.offset_delta, i as i64);
            // The builder clamps timestamps below the first one to a zero delta.
            prop_assert_eq!(got.timestamp_delta, want.ts.saturating_sub(first_ts).max(0));
            prop_assert_eq!(got.key, want.key.as_deref());
            prop_assert_eq!(got.value, &want.value[..]);
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

    /// Documented property: `base_offset` (bytes 0..8) is outside the CRC so the owner can
    /// stamp it; corrupting it is NOT detected by the batch itself (the log's index checks it).
    #[test]
    fn flipped_base_offset_is_not_detected(spec in spec(), at in 0usize..8, mask in 1u8..=255) {
        let mut bytes = build(&spec);
        bytes[at] ^= mask;
        let batch = Batch::parse(&bytes).expect("base_offset is not covered by the crc");
        prop_assert_ne!(batch.header().base_offset, 0);
    }

    /// `magic` and `attributes` are covered too: a flip there is never accepted.
    #[test]
    fn flipped_magic_or_attributes_is_detected(spec in spec(), at in 12usize..14, mask in 1u8..=255) {
        let mut bytes = build(&spec);
        bytes[at] ^= mask;
        prop_assert!(Batch::parse(&bytes).is_err(), "flip at {} with mask {:#x} went unnoticed", at, mask);
    }

    /// The crc field itself: any change is a mismatch.
    #[test]
    fn flipped_crc_field_is_detected(spec in spec(), at in 14usize..18, mask in 1u8..=255) {
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
