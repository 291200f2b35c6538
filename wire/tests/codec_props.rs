//! Round trip of every request and response through the FlatBuffers codec, plus
//! the decoder's behaviour on hostile input: unknown APIs, bad enum values,
//! over-limit lists and strings, shared-subtable amplification, random and
//! mutated bytes.

use bytes::BytesMut;
use flatbuffers::{FlatBufferBuilder, WIPOffset};
use proptest::prelude::*;
use strand_wire::codec::{self, limits, DecodeError};
use strand_wire::frame::{FrameDecoder, FramePrefix, FRAME_LEN_MAX_DEFAULT};
use strand_wire::msg::*;
use strand_wire::ErrorCode;

// ---------------------------------------------------------------- strategies

fn name() -> impl Strategy<Value = String> {
    // Mostly topic-like names, sometimes arbitrary unicode.
    prop_oneof![4 => "[a-zA-Z0-9._-]{0,16}", 1 => ".{0,8}"]
}

fn names() -> impl Strategy<Value = Vec<String>> {
    prop::collection::vec(name(), 0..4)
}

fn code() -> impl Strategy<Value = ErrorCode> {
    prop::sample::select(ErrorCode::ALL.to_vec())
}

fn acks() -> impl Strategy<Value = Acks> {
    prop_oneof![Just(Acks::None), Just(Acks::Leader), Just(Acks::All)]
}

fn assignor() -> impl Strategy<Value = Assignor> {
    prop_oneof![Just(Assignor::Range), Just(Assignor::RoundRobin)]
}

fn spec() -> impl Strategy<Value = OffsetSpec> {
    prop_oneof![Just(OffsetSpec::Earliest), Just(OffsetSpec::Latest), any::<i64>().prop_map(OffsetSpec::Timestamp)]
}

fn vec_of<T: std::fmt::Debug>(s: impl Strategy<Value = T>) -> impl Strategy<Value = Vec<T>> {
    prop::collection::vec(s, 0..4)
}

fn topic_partition() -> impl Strategy<Value = TopicPartition> {
    (name(), any::<u32>()).prop_map(|(topic, partition)| TopicPartition { topic, partition })
}

fn committed() -> impl Strategy<Value = CommittedOffset> {
    (name(), any::<u32>(), any::<u64>(), name()).prop_map(|(topic, partition, offset, metadata)| CommittedOffset {
        topic,
        partition,
        offset,
        metadata,
    })
}

fn group_fields() -> impl Strategy<Value = (String, u32, String)> {
    (name(), any::<u32>(), name())
}

fn request_a() -> impl Strategy<Value = Request> {
    prop_oneof![
        (any::<u16>(), name()).prop_map(|(protocol_version, client_id)| Request::Handshake(HandshakeRequest {
            protocol_version,
            client_id
        })),
        names().prop_map(|topics| Request::Metadata(MetadataRequest { topics })),
        (name(), any::<u32>(), any::<u16>(), vec_of((name(), name()))).prop_map(
            |(name, partitions, replication_factor, configs)| Request::CreateTopic(CreateTopicRequest {
                name,
                partitions,
                replication_factor,
                configs
            })
        ),
        name().prop_map(|name| Request::DeleteTopic(DeleteTopicRequest { name })),
        (name(), vec_of((name(), name())), names()).prop_map(|(name, set, delete)| {
            Request::AlterTopicConfig(AlterTopicConfigRequest { name, set, delete })
        }),
        (name(), any::<u32>())
            .prop_map(|(name, partitions)| Request::CreatePartitions(CreatePartitionsRequest { name, partitions })),
        Just(Request::ListTopics),
        Just(Request::InitProducerId),
        (acks(), any::<u32>(), vec_of((name(), any::<u32>(), any::<u32>()))).prop_map(|(acks, timeout_ms, ps)| {
            let partitions = ps
                .into_iter()
                .map(|(topic, partition, bytes_len)| ProducePartition { topic, partition, bytes_len })
                .collect();
            Request::Produce(ProduceRequest { acks, timeout_ms, partitions })
        }),
        (any::<(u32, u32, u32)>(), vec_of((name(), any::<u32>(), any::<u64>(), any::<u32>()))).prop_map(
            |((max_wait_ms, min_bytes, max_bytes), ps)| {
                let partitions = ps
                    .into_iter()
                    .map(|(topic, partition, offset, max_bytes)| FetchPartition { topic, partition, offset, max_bytes })
                    .collect();
                Request::Fetch(FetchRequest { max_wait_ms, min_bytes, max_bytes, partitions })
            }
        ),
        vec_of((name(), any::<u32>(), spec())).prop_map(|ps| {
            let partitions = ps
                .into_iter()
                .map(|(topic, partition, spec)| ListOffsetsPartition { topic, partition, spec })
                .collect();
            Request::ListOffsets(ListOffsetsRequest { partitions })
        }),
        ((name(), name(), name()), any::<(u32, u32)>(), names(), assignor()).prop_map(
            |((group_id, member_id, client_id), (session_timeout_ms, rebalance_timeout_ms), topics, assignor)| {
                Request::JoinGroup(JoinGroupRequest {
                    group_id,
                    member_id,
                    client_id,
                    session_timeout_ms,
                    rebalance_timeout_ms,
                    topics,
                    assignor,
                })
            }
        ),
    ]
}

fn request_b() -> impl Strategy<Value = Request> {
    prop_oneof![
        group_fields().prop_map(|(group_id, generation, member_id)| Request::SyncGroup(SyncGroupRequest {
            group_id,
            generation,
            member_id
        })),
        group_fields().prop_map(|(group_id, generation, member_id)| Request::Heartbeat(HeartbeatRequest {
            group_id,
            generation,
            member_id
        })),
        (name(), name())
            .prop_map(|(group_id, member_id)| Request::LeaveGroup(LeaveGroupRequest { group_id, member_id })),
        (group_fields(), vec_of(committed())).prop_map(|((group_id, generation, member_id), offsets)| {
            Request::OffsetCommit(OffsetCommitRequest { group_id, generation, member_id, offsets })
        }),
        (name(), vec_of(topic_partition()))
            .prop_map(|(group_id, partitions)| Request::OffsetFetch(OffsetFetchRequest { group_id, partitions })),
        Just(Request::ListGroups),
        name().prop_map(|group_id| Request::DescribeGroup(DescribeGroupRequest { group_id })),
        name().prop_map(|group_id| Request::DeleteGroup(DeleteGroupRequest { group_id })),
        (name(), any::<u32>(), any::<(u64, u64, u64)>(), any::<u32>(), any::<(u32, u64, u64)>(), vec_of(any::<u64>()))
            .prop_map(
                |(
                    topic,
                    partition,
                    (epoch, start_offset, commit_offset),
                    bytes_len,
                    (from_node, prev_offset, prev_epoch),
                    batch_epochs,
                )| {
                    Request::ReplicaAppend(ReplicaAppendRequest {
                        topic,
                        partition,
                        epoch,
                        start_offset,
                        commit_offset,
                        bytes_len,
                        from_node,
                        prev_offset,
                        prev_epoch,
                        batch_epochs,
                    })
                }
            ),
        (name(), any::<u32>(), any::<(u64, u64)>(), any::<u32>(), any::<(u64, u64, u64)>()).prop_map(
            |(topic, partition, (epoch, durable_offset), from_node, (log_end_offset, log_end_epoch, durable_epoch))| {
                Request::ReplicaAck(ReplicaAckRequest {
                    topic,
                    partition,
                    epoch,
                    durable_offset,
                    from_node,
                    error: strand_wire::ErrorCode::OffsetOutOfRange,
                    log_end_offset,
                    log_end_epoch,
                    durable_epoch,
                })
            }
        ),
    ]
}

fn bytes() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(any::<u8>(), 0..80)
}

fn acl_entry() -> impl Strategy<Value = AclEntry> {
    let resource = prop_oneof![Just(AclResource::Topic), Just(AclResource::Group), Just(AclResource::Cluster)];
    let operation = prop_oneof![
        Just(AclOperation::Read),
        Just(AclOperation::Write),
        Just(AclOperation::Describe),
        Just(AclOperation::Admin)
    ];
    (name(), resource, name(), any::<bool>(), operation).prop_map(|(principal, resource, name, prefix, operation)| {
        AclEntry { principal, resource, name, prefix, operation }
    })
}

/// The security APIs (issue 20).
fn request_c() -> impl Strategy<Value = Request> {
    let credential = (name(), bytes(), any::<u32>(), bytes(), bytes()).prop_map(
        |(mechanism, salt, iterations, stored_key, server_key)| ScramCredentialEntry {
            mechanism,
            salt,
            iterations,
            stored_key,
            server_key,
        },
    );
    prop_oneof![
        (name(), bytes())
            .prop_map(|(mechanism, auth_bytes)| Request::Authenticate(AuthenticateRequest { mechanism, auth_bytes })),
        (name(), vec_of(credential))
            .prop_map(|(name, credentials)| Request::AlterUser(AlterUserRequest::Upsert { name, credentials })),
        name().prop_map(|name| Request::AlterUser(AlterUserRequest::Delete { name })),
        Just(Request::ListUsers),
        (any::<bool>(), acl_entry()).prop_map(|(add, entry)| Request::AlterAcl(AlterAclRequest { add, entry })),
        Just(Request::ListAcls),
    ]
}

fn response_c() -> impl Strategy<Value = Response> {
    prop_oneof![
        (bytes(), name())
            .prop_map(|(auth_bytes, principal)| Response::Authenticate(AuthenticateResponse { auth_bytes, principal })),
        vec_of((name(), names(), any::<bool>())).prop_map(|us| {
            let users =
                us.into_iter().map(|(name, mechanisms, superuser)| UserInfo { name, mechanisms, superuser }).collect();
            Response::ListUsers(ListUsersResponse { users })
        }),
        vec_of(acl_entry()).prop_map(|entries| Response::ListAcls(ListAclsResponse { entries })),
    ]
}

fn request_header() -> impl Strategy<Value = RequestHeader> {
    (any::<u64>(), prop_oneof![request_a(), request_b(), request_c()])
        .prop_map(|(correlation_id, request)| RequestHeader { correlation_id, request })
}

fn partition_metadata() -> impl Strategy<Value = PartitionMetadata> {
    (any::<u32>(), code(), any::<(u32, u16, u32)>(), vec_of(any::<u32>()), any::<(u64, u64, u64, u64)>()).prop_map(
        |(
            partition,
            error,
            (leader_node, leader_shard, preferred_leader),
            replicas,
            (epoch, log_start_offset, log_end_offset, commit_offset),
        )| {
            PartitionMetadata {
                partition,
                error,
                leader_node,
                leader_shard,
                replicas,
                epoch,
                log_start_offset,
                log_end_offset,
                commit_offset,
                preferred_leader,
            }
        },
    )
}

fn metadata_response() -> impl Strategy<Value = Response> {
    let node = (any::<u32>(), name(), any::<u16>(), vec_of(any::<u16>()))
        .prop_map(|(node_id, host, port, shard_ports)| NodeInfo { node_id, host, port, shard_ports });
    let topic = (name(), code(), vec_of(partition_metadata())).prop_map(|(name, error, partitions)| TopicMetadata {
        name,
        error,
        partitions,
    });
    (vec_of(node), vec_of(topic)).prop_map(|(nodes, topics)| Response::Metadata(MetadataResponse { nodes, topics }))
}

fn response_a() -> impl Strategy<Value = Response> {
    prop_oneof![
        Just(Response::Empty),
        any::<(u16, u16, u32, u32)>().prop_map(|(lo, hi, node_id, frame_len_max)| Response::Handshake(
            HandshakeResponse { protocol_version_min: lo, protocol_version_max: hi, node_id, frame_len_max }
        )),
        metadata_response(),
        (name(), any::<u32>())
            .prop_map(|(name, partitions)| Response::CreateTopic(CreateTopicResponse { name, partitions })),
        vec_of((name(), any::<u32>(), any::<u16>(), vec_of((name(), name(), any::<bool>())))).prop_map(|ts| {
            let topics = ts
                .into_iter()
                .map(|(name, partitions, replication_factor, configs)| TopicSummary {
                    name,
                    partitions,
                    replication_factor,
                    configs: configs
                        .into_iter()
                        .map(|(key, value, is_override)| TopicConfigValue { key, value, is_override })
                        .collect(),
                })
                .collect();
            Response::ListTopics(ListTopicsResponse { topics })
        }),
        any::<(u64, u16)>().prop_map(|(producer_id, producer_epoch)| Response::InitProducerId(
            InitProducerIdResponse { producer_id, producer_epoch }
        )),
        vec_of((name(), any::<u32>(), code(), any::<(u64, u64, u64)>())).prop_map(|ps| {
            let partitions = ps
                .into_iter()
                .map(|(topic, partition, error, (base_offset, log_end_offset, log_start_offset))| {
                    ProducePartitionResponse { topic, partition, error, base_offset, log_end_offset, log_start_offset }
                })
                .collect();
            Response::Produce(ProduceResponse { partitions })
        }),
    ]
}

fn fetch_response() -> impl Strategy<Value = Response> {
    vec_of((name(), any::<u32>(), code(), any::<(u64, u64, u64)>(), any::<u32>())).prop_map(|ps| {
        let partitions = ps
            .into_iter()
            .map(|(topic, partition, error, (log_start_offset, log_end_offset, high_watermark), bytes_len)| {
                FetchPartitionResponse {
                    topic,
                    partition,
                    error,
                    log_start_offset,
                    log_end_offset,
                    high_watermark,
                    bytes_len,
                }
            })
            .collect();
        Response::Fetch(FetchResponse { partitions })
    })
}

fn describe_group_response() -> impl Strategy<Value = Response> {
    let member = (name(), name(), vec_of(topic_partition()))
        .prop_map(|(member_id, client_id, assignment)| GroupMemberInfo { member_id, client_id, assignment });
    let lag = (name(), any::<u32>(), any::<(u64, u64, u64)>()).prop_map(
        |(topic, partition, (committed, log_end_offset, lag))| GroupPartitionLag {
            topic,
            partition,
            committed,
            log_end_offset,
            lag,
        },
    );
    ((name(), name(), any::<u32>(), assignor()), vec_of(member), vec_of(lag)).prop_map(
        |((group_id, state, generation, assignor), members, partitions)| {
            Response::DescribeGroup(DescribeGroupResponse {
                group_id,
                state,
                generation,
                assignor,
                members,
                partitions,
            })
        },
    )
}

fn response_b() -> impl Strategy<Value = Response> {
    prop_oneof![
        fetch_response(),
        vec_of((name(), any::<u32>(), code(), any::<u64>(), any::<i64>())).prop_map(|ps| {
            let partitions = ps
                .into_iter()
                .map(|(topic, partition, error, offset, timestamp)| ListOffsetsPartitionResponse {
                    topic,
                    partition,
                    error,
                    offset,
                    timestamp,
                })
                .collect();
            Response::ListOffsets(ListOffsetsResponse { partitions })
        }),
        (any::<u32>(), name(), name(), names()).prop_map(|(generation, member_id, leader_member_id, members)| {
            Response::JoinGroup(JoinGroupResponse { generation, member_id, leader_member_id, members })
        }),
        vec_of(topic_partition()).prop_map(|assignment| Response::SyncGroup(SyncGroupResponse { assignment })),
        vec_of(committed()).prop_map(|offsets| Response::OffsetFetch(OffsetFetchResponse { offsets })),
        vec_of((name(), name(), any::<u32>())).prop_map(|gs| {
            let groups = gs
                .into_iter()
                .map(|(group_id, state, member_count)| GroupSummary { group_id, state, member_count })
                .collect();
            Response::ListGroups(ListGroupsResponse { groups })
        }),
        describe_group_response(),
        (code(), any::<(u64, u64, u64)>()).prop_map(|(error, (epoch, log_end_offset, durable_offset))| {
            Response::ReplicaAppend(ReplicaAppendResponse { error, epoch, log_end_offset, durable_offset })
        }),
    ]
}

fn response_header() -> impl Strategy<Value = ResponseHeader> {
    (
        any::<u64>(),
        code(),
        prop::option::of(".{0,24}"),
        prop_oneof![response_a(), response_b(), response_c()],
        any::<u32>(),
    )
        .prop_map(|(correlation_id, error, message, response, throttle_ms)| ResponseHeader {
            correlation_id,
            error,
            message,
            response,
            throttle_ms,
        })
}

// ---------------------------------------------------------------- properties

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn requests_round_trip(header in request_header()) {
        let bytes = codec::encode_request(&header);
        prop_assert_eq!(codec::decode_request(&bytes), Ok(header));
    }

    #[test]
    fn responses_round_trip(header in response_header()) {
        let bytes = codec::encode_response(&header);
        prop_assert_eq!(codec::decode_response(&bytes), Ok(header));
    }

    #[test]
    fn request_frames_carry_header_and_payload(header in request_header(), payload in prop::collection::vec(any::<u8>(), 0..64)) {
        let mut out = BytesMut::new();
        codec::request_frame(&mut out, &header, &payload);
        let frame = FrameDecoder::new(FRAME_LEN_MAX_DEFAULT).decode(&mut out).expect("valid").expect("whole frame");
        prop_assert_eq!(codec::decode_request(&frame.header), Ok(header));
        prop_assert_eq!(&frame.payload[..], &payload[..]);
        prop_assert!(out.is_empty());
    }

    #[test]
    fn response_prefix_then_spliced_payload_is_one_frame(header in response_header(), payload in prop::collection::vec(any::<u8>(), 0..64)) {
        let mut whole = BytesMut::new();
        codec::response_frame(&mut whole, &header, &payload);
        let mut split = BytesMut::from(&codec::response_prefix_and_header(&header, payload.len())[..]);
        split.extend_from_slice(&payload);
        prop_assert_eq!(&whole, &split);
        let frame = FrameDecoder::new(FRAME_LEN_MAX_DEFAULT).decode(&mut split).expect("valid").expect("whole frame");
        prop_assert_eq!(codec::decode_response(&frame.header), Ok(header));
        prop_assert_eq!(&frame.payload[..], &payload[..]);
    }

    #[test]
    fn request_prefix_then_appended_payload_is_one_frame(header in request_header(), payload in prop::collection::vec(any::<u8>(), 0..64)) {
        let mut whole = BytesMut::new();
        codec::request_frame(&mut whole, &header, &payload);
        let mut split = BytesMut::new();
        codec::request_prefix_and_header(&mut split, &header, payload.len());
        split.extend_from_slice(&payload);
        prop_assert_eq!(&whole, &split);
    }

    #[test]
    fn random_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        let _ = codec::decode_request(&bytes);
        let _ = codec::decode_response(&bytes);
    }

    /// Truncated and byte-mutated valid headers decode to something or an error, never a panic.
    #[test]
    fn mutated_headers_never_panic(
        req in request_header(),
        resp in response_header(),
        cut in any::<prop::sample::Index>(),
        flips in prop::collection::vec((any::<prop::sample::Index>(), 1u8..=255), 1..4),
    ) {
        for mut bytes in [codec::encode_request(&req), codec::encode_response(&resp)] {
            let _ = codec::decode_request(&bytes[..cut.index(bytes.len())]);
            let _ = codec::decode_response(&bytes[..cut.index(bytes.len())]);
            for (at, mask) in &flips {
                let at = at.index(bytes.len());
                bytes[at] ^= mask;
                let _ = codec::decode_request(&bytes);
                let _ = codec::decode_response(&bytes);
            }
        }
    }
}

// ---------------------------------------------------------------- hand-built hostile headers

/// Field slot `i` of a table lives at vtable offset `4 + 2 * i`.
fn slot(i: u16) -> u16 {
    4 + 2 * i
}

/// A `Request` with body type `api` whose body is `body` (any table).
fn raw_request(fbb: &mut FlatBufferBuilder<'_>, correlation_id: u64, api: u8, body: Option<WIPOffset<()>>) -> Vec<u8> {
    let start = fbb.start_table();
    fbb.push_slot::<u64>(slot(0), correlation_id, 0);
    fbb.push_slot::<u8>(slot(1), api, 0);
    if let Some(b) = body {
        fbb.push_slot_always(slot(2), b);
    }
    let root = fbb.end_table(start);
    fbb.finish_minimal(root);
    fbb.finished_data().to_vec()
}

fn empty_table(fbb: &mut FlatBufferBuilder<'_>) -> WIPOffset<()> {
    let start = fbb.start_table();
    WIPOffset::new(fbb.end_table(start).value())
}

#[test]
fn unknown_or_missing_api_keeps_the_correlation_id() {
    let mut fbb = FlatBufferBuilder::new();
    let body = empty_table(&mut fbb);
    let bytes = raw_request(&mut fbb, 77, 200, Some(body));
    let err = codec::decode_request(&bytes).unwrap_err();
    assert_eq!(err, DecodeError::UnknownApi { correlation_id: 77, api: 200 });
    assert_eq!(err.code(), ErrorCode::UnknownApi);

    let mut fbb = FlatBufferBuilder::new();
    let bytes = raw_request(&mut fbb, 78, 0, None);
    assert_eq!(codec::decode_request(&bytes), Err(DecodeError::UnknownApi { correlation_id: 78, api: 0 }));

    // A known API whose body table is absent: the union verifier rejects it outright.
    let mut fbb = FlatBufferBuilder::new();
    let bytes = raw_request(&mut fbb, 79, 5, None);
    assert!(codec::decode_request(&bytes).is_err());
}

#[test]
fn unknown_response_api_is_reported_and_none_is_empty() {
    let header = ResponseHeader {
        correlation_id: 5,
        error: ErrorCode::StorageFull,
        message: Some("disk".into()),
        response: Response::Empty,
        throttle_ms: 0,
    };
    assert_eq!(codec::decode_response(&codec::encode_response(&header)), Ok(header));
    let mut fbb = FlatBufferBuilder::new();
    let body = empty_table(&mut fbb);
    let start = fbb.start_table();
    fbb.push_slot::<u64>(slot(0), 9, 0);
    fbb.push_slot::<u8>(slot(3), 99, 0);
    fbb.push_slot_always(slot(4), body);
    let root = fbb.end_table(start);
    fbb.finish_minimal(root);
    assert_eq!(
        codec::decode_response(fbb.finished_data()),
        Err(DecodeError::UnknownApi { correlation_id: 9, api: 99 })
    );
}

/// `ProduceRequest` slots: acks, timeout_ms, partitions. Union index 7.
#[test]
fn bad_enum_values_are_bad_fields() {
    for (acks, expected) in [(0u8, Ok(Acks::None)), (2, Ok(Acks::All)), (3, Err(())), (255, Err(()))] {
        let mut fbb = FlatBufferBuilder::new();
        let start = fbb.start_table();
        fbb.push_slot_always::<u8>(slot(0), acks);
        let body = WIPOffset::new(fbb.end_table(start).value());
        let bytes = raw_request(&mut fbb, 1, 7, Some(body));
        let got = codec::decode_request(&bytes).map(|h| match h.request {
            Request::Produce(p) => p.acks,
            other => panic!("decoded {other:?}"),
        });
        match expected {
            Ok(a) => assert_eq!(got, Ok(a)),
            Err(()) => assert_eq!(got, Err(DecodeError::BadField("unknown acks"))),
        }
    }
    let list_offsets = |kind: u8| {
        let mut fbb = FlatBufferBuilder::new();
        let start = fbb.start_table();
        fbb.push_slot_always::<u8>(slot(2), kind);
        let entry = WIPOffset::<()>::new(fbb.end_table(start).value());
        let partitions = fbb.create_vector(&[entry]);
        let start = fbb.start_table();
        fbb.push_slot_always(slot(0), partitions);
        let body = WIPOffset::new(fbb.end_table(start).value());
        codec::decode_request(&raw_request(&mut fbb, 1, 9, Some(body)))
    };
    assert!(list_offsets(2).is_ok());
    assert_eq!(list_offsets(3), Err(DecodeError::BadField("unknown offset spec kind")));
    // `JoinGroupRequest` slot 6 is the assignor; union index 10.
    let join = |assignor: u8| {
        let mut fbb = FlatBufferBuilder::new();
        let start = fbb.start_table();
        fbb.push_slot_always::<u8>(slot(6), assignor);
        let body = WIPOffset::new(fbb.end_table(start).value());
        codec::decode_request(&raw_request(&mut fbb, 1, 10, Some(body)))
    };
    assert!(matches!(
        join(1),
        Ok(RequestHeader { request: Request::JoinGroup(JoinGroupRequest { assignor: Assignor::RoundRobin, .. }), .. })
    ));
    assert_eq!(join(2), Err(DecodeError::BadField("unknown assignor")));
}

#[test]
fn lists_and_strings_are_bounded() {
    let at_limit = vec![String::from("t"); limits::LIST_LEN_MAX];
    let header = RequestHeader { correlation_id: 1, request: Request::Metadata(MetadataRequest { topics: at_limit }) };
    assert_eq!(codec::decode_request(&codec::encode_request(&header)), Ok(header.clone()));

    let over = vec![String::from("t"); limits::LIST_LEN_MAX + 1];
    let header = RequestHeader { correlation_id: 1, request: Request::Metadata(MetadataRequest { topics: over }) };
    assert_eq!(
        codec::decode_request(&codec::encode_request(&header)),
        Err(DecodeError::BadField("list longer than LIST_LEN_MAX"))
    );

    let delete = |len: usize| RequestHeader {
        correlation_id: 2,
        request: Request::DeleteTopic(DeleteTopicRequest { name: "x".repeat(len) }),
    };
    let ok = delete(limits::STRING_LEN_MAX);
    assert_eq!(codec::decode_request(&codec::encode_request(&ok)), Ok(ok));
    let err = codec::decode_request(&codec::encode_request(&delete(limits::STRING_LEN_MAX + 1))).unwrap_err();
    assert_eq!(err, DecodeError::BadField("string longer than STRING_LEN_MAX"));
    assert_eq!(err.code(), ErrorCode::InvalidRequest);
}

#[test]
fn long_error_message_is_truncated_at_a_char_boundary() {
    let message = "é".repeat(limits::STRING_LEN_MAX); // 2 bytes per char: twice the limit
    let header = ResponseHeader {
        correlation_id: 4,
        error: ErrorCode::Unknown,
        message: Some(message),
        response: Response::Empty,
        throttle_ms: 0,
    };
    let decoded = codec::decode_response(&codec::encode_response(&header)).expect("decodes");
    let got = decoded.message.expect("message kept");
    assert_eq!(got.len(), limits::STRING_LEN_MAX);
    assert!(got.chars().all(|c| c == 'é'));
}

/// A small header whose vectors all point at one shared sub-table would expand to
/// 10^8 entries; the verifier's table budget must refuse it before any allocation.
#[test]
fn shared_subtable_amplification_is_refused() {
    let mut fbb = FlatBufferBuilder::new();
    let start = fbb.start_table();
    fbb.push_slot::<u32>(slot(0), 1, 0);
    let partition = WIPOffset::<()>::new(fbb.end_table(start).value());
    let partitions = fbb.create_vector(&vec![partition; limits::LIST_LEN_MAX]);
    let start = fbb.start_table();
    fbb.push_slot_always(slot(2), partitions);
    let topic = WIPOffset::<()>::new(fbb.end_table(start).value());
    let topics = fbb.create_vector(&vec![topic; limits::LIST_LEN_MAX]);
    let start = fbb.start_table();
    fbb.push_slot_always(slot(1), topics);
    let body = WIPOffset::<()>::new(fbb.end_table(start).value());
    let start = fbb.start_table();
    fbb.push_slot::<u64>(slot(0), 1, 0);
    fbb.push_slot::<u8>(slot(3), 2, 0); // MetadataResponse
    fbb.push_slot_always(slot(4), body);
    let root = fbb.end_table(start);
    fbb.finish_minimal(root);
    let bytes = fbb.finished_data();
    assert!(bytes.len() < 100_000, "the attack header is small: {}", bytes.len());
    let started = std::time::Instant::now();
    assert!(matches!(codec::decode_response(bytes), Err(DecodeError::Invalid(_))));
    assert!(started.elapsed() < std::time::Duration::from_secs(5));
}

#[test]
fn oversized_header_is_refused_before_verification() {
    let bytes = vec![0u8; strand_wire::frame::HEADER_LEN_MAX + 1];
    assert!(matches!(codec::decode_request(&bytes), Err(DecodeError::Invalid(_))));
}

#[test]
fn prefix_matches_frame_prefix() {
    let header = ResponseHeader {
        correlation_id: 1,
        error: ErrorCode::None,
        message: None,
        response: Response::Empty,
        throttle_ms: 0,
    };
    let out = codec::response_prefix_and_header(&header, 1000);
    let prefix = FramePrefix::parse(out[..8].try_into().expect("8 bytes"), usize::MAX).expect("valid prefix");
    assert_eq!(prefix.header_len as usize, out.len() - 8);
    assert_eq!(prefix.payload_len(), 1000);
}
