//! The encoder enforces the decoder's limits: a header our own decoder would refuse
//! (list or string over `limits`, header over `HEADER_LEN_MAX`) is an `EncodeError`
//! from the `try_*` encoders, and the infallible response encoders answer it with a
//! decodable bodiless `MESSAGE_TOO_LARGE` error under the same correlation id. Headers
//! at the limits encode and round-trip unchanged.

use bytes::BytesMut;
use proptest::prelude::*;
use strand_wire::codec::{self, limits, DecodeError, EncodeError};
use strand_wire::frame::{FrameDecoder, HEADER_LEN_MAX};
use strand_wire::msg::*;
use strand_wire::ErrorCode;

fn list_topics(count: usize, name_len: usize) -> ResponseHeader {
    let topics = (0..count)
        .map(|i| TopicSummary {
            name: format!("{i:0>name_len$}"),
            partitions: 1,
            replication_factor: 3,
            configs: Vec::new(),
        })
        .collect();
    ResponseHeader {
        correlation_id: 7,
        error: ErrorCode::None,
        message: None,
        response: Response::ListTopics(ListTopicsResponse { topics }),
        throttle_ms: 0,
    }
}

fn list_groups(count: usize) -> ResponseHeader {
    let groups = (0..count)
        .map(|i| GroupSummary { group_id: format!("g{i}"), state: "Stable".into(), member_count: 1 })
        .collect();
    ResponseHeader {
        correlation_id: u64::MAX,
        error: ErrorCode::None,
        message: None,
        response: Response::ListGroups(ListGroupsResponse { groups }),
        throttle_ms: 0,
    }
}

fn metadata(topic_name_len: usize, replicas: usize) -> ResponseHeader {
    let partition = PartitionMetadata {
        partition: 0,
        error: ErrorCode::None,
        leader_node: 1,
        leader_shard: 0,
        replicas: (0..replicas as u32).collect(),
        epoch: 1,
        log_start_offset: 0,
        log_end_offset: 10,
        commit_offset: 10,
        preferred_leader: 1,
    };
    let topic = TopicMetadata { name: "t".repeat(topic_name_len), error: ErrorCode::None, partitions: vec![partition] };
    ResponseHeader {
        correlation_id: 3,
        error: ErrorCode::None,
        message: None,
        response: Response::Metadata(MetadataResponse { nodes: Vec::new(), topics: vec![topic] }),
        throttle_ms: 0,
    }
}

fn produce(partitions: usize) -> RequestHeader {
    let partitions =
        (0..partitions as u32).map(|p| ProducePartition { topic: "t".into(), partition: p, bytes_len: 0 }).collect();
    RequestHeader {
        correlation_id: 9,
        request: Request::Produce(ProduceRequest { acks: Acks::All, timeout_ms: 1, partitions }),
    }
}

/// Asserts `header` is refused by the checked encoders and answered as MESSAGE_TOO_LARGE
/// (same correlation id, no body) by every infallible one.
fn assert_refused(header: &ResponseHeader) {
    let err = codec::try_encode_response(header).expect_err("over-limit response encoded");
    assert_eq!(err.code(), ErrorCode::MessageTooLarge);
    let mut out = BytesMut::from(&b"keep"[..]);
    assert!(codec::try_response_frame(&mut out, header, b"payload").is_err());
    assert_eq!(&out[..], b"keep", "a refused frame leaves the buffer untouched");

    let expect_stand_in = |decoded: ResponseHeader| {
        assert_eq!(decoded.correlation_id, header.correlation_id);
        assert_eq!(decoded.error, ErrorCode::MessageTooLarge);
        assert_eq!(decoded.response, Response::Empty);
        let message = decoded.message.expect("the stand-in says why");
        assert!(message.contains("exceeds"), "{message}");
    };
    expect_stand_in(codec::decode_response(&codec::encode_response(header)).expect("stand-in decodes"));

    let mut frame = BytesMut::new();
    codec::response_frame(&mut frame, header, b"payload");
    let mut split = BytesMut::from(&codec::response_prefix_and_header(header, 7)[..]);
    split.extend_from_slice(b"payload");
    assert_eq!(frame, split, "whole frame and prefix+header agree");
    let got = FrameDecoder::new(usize::MAX).decode(&mut frame).expect("valid frame").expect("whole frame");
    expect_stand_in(codec::decode_response(&got.header).expect("stand-in decodes"));
    assert_eq!(&got.payload[..], b"payload");
}

/// Asserts `header` encodes through every path and decodes back equal.
fn assert_round_trips(header: &ResponseHeader) {
    let bytes = codec::try_encode_response(header).expect("within limits");
    assert_eq!(codec::decode_response(&bytes).as_ref(), Ok(header));
    assert_eq!(codec::encode_response(header), bytes, "unchecked path sends the same header");
}

#[test]
fn lists_at_the_limit_encode_one_more_is_refused() {
    assert_round_trips(&list_topics(limits::LIST_LEN_MAX, 8));
    assert_refused(&list_topics(limits::LIST_LEN_MAX + 1, 8));
    assert_round_trips(&list_groups(limits::LIST_LEN_MAX));
    assert_refused(&list_groups(limits::LIST_LEN_MAX + 1));
    // A nested list: replicas of one partition.
    assert_round_trips(&metadata(4, limits::LIST_LEN_MAX));
    assert_refused(&metadata(4, limits::LIST_LEN_MAX + 1));
}

#[test]
fn strings_at_the_limit_encode_one_more_byte_is_refused() {
    assert_round_trips(&metadata(limits::STRING_LEN_MAX, 3));
    assert_refused(&metadata(limits::STRING_LEN_MAX + 1, 3));
}

#[test]
fn a_header_over_header_len_max_is_refused_even_with_lists_within_limits() {
    // 10 000 names of 200 bytes: every list and string is within limits, the header is not.
    let header = list_topics(limits::LIST_LEN_MAX, 200);
    let err = codec::try_encode_response(&header).unwrap_err();
    let EncodeError::OverLimit(DecodeError::Invalid(why)) = &err else { panic!("unexpected reason {err:?}") };
    assert!(why.contains(&HEADER_LEN_MAX.to_string()), "{why}");
    assert_refused(&header);
}

#[test]
fn over_limit_requests_are_refused_by_the_checked_encoders() {
    let ok = produce(limits::LIST_LEN_MAX);
    let bytes = codec::try_encode_request(&ok).expect("within limits");
    assert_eq!(codec::decode_request(&bytes), Ok(ok));
    let over = produce(limits::LIST_LEN_MAX + 1);
    assert!(matches!(codec::try_encode_request(&over), Err(EncodeError::OverLimit(DecodeError::BadField(_)))));
    let mut out = BytesMut::new();
    assert!(codec::try_request_frame(&mut out, &over, &[]).is_err());
    assert!(out.is_empty());
    // The unchecked encoder still sends it; the decoder (the peer) refuses it.
    assert!(codec::decode_request(&codec::encode_request(&over)).is_err());
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    /// Checked encoding succeeds exactly when the decoder accepts the header, around
    /// both the list and the string limit.
    #[test]
    fn checked_encoding_agrees_with_the_decoder(
        groups in (limits::LIST_LEN_MAX - 3)..(limits::LIST_LEN_MAX + 3),
        name_len in (limits::STRING_LEN_MAX - 3)..(limits::STRING_LEN_MAX + 3),
        replicas in 0usize..8,
    ) {
        for header in [list_groups(groups), metadata(name_len, replicas)] {
            let within = match &header.response {
                Response::ListGroups(r) => r.groups.len() <= limits::LIST_LEN_MAX,
                Response::Metadata(r) => r.topics[0].name.len() <= limits::STRING_LEN_MAX,
                _ => unreachable!(),
            };
            prop_assert_eq!(codec::try_encode_response(&header).is_ok(), within);
            if within { assert_round_trips(&header) } else { assert_refused(&header) }
        }
    }

    /// Small headers take the unchecked fast path: whatever they hold, they decode back.
    #[test]
    fn small_headers_always_round_trip(count in 0usize..40, name_len in 0usize..64) {
        let header = list_topics(count, name_len);
        let bytes = codec::try_encode_response(&header).expect("small header");
        prop_assert_eq!(codec::decode_response(&bytes), Ok(header));
    }
}
