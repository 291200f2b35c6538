//! What the Kafka listener speaks: the APIs and versions it advertises, and how the node's
//! error codes read as Kafka's.

use kafka_protocol::messages::ApiKey;
use strand_wire::ErrorCode;

/// Every API this node answers on its Kafka port, with the versions it speaks
/// (`docs/KAFKA.md` lists them with their limits). ApiVersions advertises exactly these;
/// anything else closes the connection.
///
/// The ranges start where Kafka's RecordBatch v2 does (Produce 3, Fetch 4) and stop before
/// the versions that address topics by id only (Fetch 13, DeleteTopics 6) or need what the
/// node does not keep (ListOffsets 7: the max-timestamp lookup).
///
/// Group APIs (the classic protocol, `groups.rs`): every version the codecs know up to the
/// last one before KIP-848's consumer protocol and share groups — FindCoordinator 6
/// (share-group keys), OffsetCommit 9 and OffsetFetch 9 (member epochs of the new
/// protocol), ListGroups 5 (group-type filter) and DescribeGroups 6 are left out. These
/// cover librdkafka 2.x (JoinGroup ≤ 5, OffsetFetch ≤ 7, FindCoordinator ≤ 2) and the Java
/// 3.x classic consumer (JoinGroup 9, SyncGroup 5, OffsetFetch 8, FindCoordinator 4).
/// OffsetCommit starts at 2, where the codecs start; static membership (group instance
/// ids, JoinGroup 5+) is refused per request, as the node does not keep it.
pub const SUPPORTED: &[(ApiKey, i16, i16)] = &[
    (ApiKey::Produce, 3, 9),
    (ApiKey::Fetch, 4, 12),
    (ApiKey::ListOffsets, 1, 6),
    (ApiKey::Metadata, 0, 12),
    (ApiKey::ApiVersions, 0, 3),
    (ApiKey::CreateTopics, 2, 5),
    (ApiKey::DeleteTopics, 1, 5),
    (ApiKey::InitProducerId, 0, 4),
    (ApiKey::DescribeConfigs, 1, 4),
    (ApiKey::AlterConfigs, 0, 2),
    (ApiKey::CreatePartitions, 0, 3),
    (ApiKey::IncrementalAlterConfigs, 0, 1),
    (ApiKey::DescribeCluster, 0, 1),
    (ApiKey::FindCoordinator, 0, 4),
    (ApiKey::JoinGroup, 0, 9),
    (ApiKey::SyncGroup, 0, 5),
    (ApiKey::Heartbeat, 0, 4),
    (ApiKey::LeaveGroup, 0, 5),
    (ApiKey::OffsetCommit, 2, 8),
    (ApiKey::OffsetFetch, 1, 8),
    (ApiKey::ListGroups, 0, 4),
    (ApiKey::DescribeGroups, 0, 5),
    (ApiKey::DeleteGroups, 0, 2),
    // SASL (issue 20). v0 is advertised because librdkafka's feature detection asks for
    // SaslHandshake 0 before it uses v1, but a v0 handshake (unframed tokens after it) is
    // refused (`sasl`); every client since Kafka 1.0 sends v1 with SaslAuthenticate.
    (ApiKey::SaslHandshake, 0, 1),
    (ApiKey::SaslAuthenticate, 0, 2),
];

// Every advertised range must be one the codec crate can encode and decode.
const _: () = {
    let mut i = 0;
    while i < SUPPORTED.len() {
        assert!(SUPPORTED[i].1 <= SUPPORTED[i].2);
        i += 1;
    }
};

/// The versions of `api` this node speaks, if it speaks it at all.
pub fn versions(api: ApiKey) -> Option<(i16, i16)> {
    SUPPORTED.iter().find(|(key, _, _)| *key == api).map(|&(_, min, max)| (min, max))
}

/// Kafka's error codes the listener uses by name (from Kafka's `Errors`).
pub mod kafka {
    pub const NONE: i16 = 0;
    pub const UNKNOWN_SERVER_ERROR: i16 = -1;
    pub const OFFSET_OUT_OF_RANGE: i16 = 1;
    pub const CORRUPT_MESSAGE: i16 = 2;
    pub const UNKNOWN_TOPIC_OR_PARTITION: i16 = 3;
    pub const NOT_LEADER_OR_FOLLOWER: i16 = 6;
    pub const REQUEST_TIMED_OUT: i16 = 7;
    pub const MESSAGE_TOO_LARGE: i16 = 10;
    pub const OFFSET_METADATA_TOO_LARGE: i16 = 12;
    pub const COORDINATOR_NOT_AVAILABLE: i16 = 15;
    pub const NOT_COORDINATOR: i16 = 16;
    pub const INVALID_TOPIC_EXCEPTION: i16 = 17;
    pub const NOT_ENOUGH_REPLICAS: i16 = 19;
    pub const INVALID_REQUIRED_ACKS: i16 = 21;
    pub const ILLEGAL_GENERATION: i16 = 22;
    pub const INCONSISTENT_GROUP_PROTOCOL: i16 = 23;
    pub const INVALID_GROUP_ID: i16 = 24;
    pub const UNKNOWN_MEMBER_ID: i16 = 25;
    pub const INVALID_SESSION_TIMEOUT: i16 = 26;
    pub const REBALANCE_IN_PROGRESS: i16 = 27;
    pub const INVALID_COMMIT_OFFSET_SIZE: i16 = 28;
    pub const THROTTLING_QUOTA_EXCEEDED: i16 = 89;
    pub const UNSUPPORTED_VERSION: i16 = 35;
    pub const TOPIC_ALREADY_EXISTS: i16 = 36;
    pub const INVALID_PARTITIONS: i16 = 37;
    pub const INVALID_REPLICATION_FACTOR: i16 = 38;
    pub const INVALID_REPLICA_ASSIGNMENT: i16 = 39;
    pub const INVALID_CONFIG: i16 = 40;
    pub const INVALID_REQUEST: i16 = 42;
    pub const OUT_OF_ORDER_SEQUENCE_NUMBER: i16 = 45;
    pub const INVALID_PRODUCER_EPOCH: i16 = 47;
    pub const KAFKA_STORAGE_ERROR: i16 = 56;
    pub const NON_EMPTY_GROUP: i16 = 68;
    pub const GROUP_ID_NOT_FOUND: i16 = 69;
    pub const MEMBER_ID_REQUIRED: i16 = 79;
    pub const GROUP_MAX_SIZE_REACHED: i16 = 81;
    pub const UNKNOWN_TOPIC_ID: i16 = 100;
    pub const TOPIC_AUTHORIZATION_FAILED: i16 = 29;
    pub const GROUP_AUTHORIZATION_FAILED: i16 = 30;
    pub const CLUSTER_AUTHORIZATION_FAILED: i16 = 31;
    pub const UNSUPPORTED_SASL_MECHANISM: i16 = 33;
    pub const ILLEGAL_SASL_STATE: i16 = 34;
    pub const SASL_AUTHENTICATION_FAILED: i16 = 58;
}

/// The Kafka error code a client should see for the node's `code`.
///
/// A duplicate idempotent batch reads as success (`NONE`): the response carries the offset
/// the batch was first written at, which is what a Kafka broker answers too. A full disk
/// reads as `KAFKA_STORAGE_ERROR`, the code a Kafka broker gives when its log directory
/// cannot take the write; a shutting-down node as `NOT_LEADER_OR_FOLLOWER`, so clients
/// refresh their metadata and retry elsewhere.
pub fn to_kafka(code: ErrorCode) -> i16 {
    use kafka::*;
    match code {
        ErrorCode::None | ErrorCode::DuplicateSequence => NONE,
        ErrorCode::Unknown | ErrorCode::StaleEpoch => UNKNOWN_SERVER_ERROR,
        ErrorCode::CorruptBatch => CORRUPT_MESSAGE,
        ErrorCode::UnknownTopic | ErrorCode::UnknownPartition => UNKNOWN_TOPIC_OR_PARTITION,
        ErrorCode::NotOwner | ErrorCode::ShuttingDown => NOT_LEADER_OR_FOLLOWER,
        ErrorCode::OffsetOutOfRange => OFFSET_OUT_OF_RANGE,
        ErrorCode::StorageFull | ErrorCode::StorageError | ErrorCode::CorruptStorage => KAFKA_STORAGE_ERROR,
        ErrorCode::MessageTooLarge => MESSAGE_TOO_LARGE,
        ErrorCode::InvalidRequest | ErrorCode::UnknownApi => INVALID_REQUEST,
        ErrorCode::UnsupportedVersion => UNSUPPORTED_VERSION,
        ErrorCode::TopicAlreadyExists => TOPIC_ALREADY_EXISTS,
        ErrorCode::InvalidConfig => INVALID_CONFIG,
        ErrorCode::RequestTimedOut => REQUEST_TIMED_OUT,
        ErrorCode::OutOfOrderSequence => OUT_OF_ORDER_SEQUENCE_NUMBER,
        ErrorCode::InvalidProducerEpoch => INVALID_PRODUCER_EPOCH,
        ErrorCode::NotEnoughReplicas => NOT_ENOUGH_REPLICAS,
        ErrorCode::CoordinatorNotAvailable => COORDINATOR_NOT_AVAILABLE,
        ErrorCode::NotCoordinator => NOT_COORDINATOR,
        ErrorCode::UnknownMember => UNKNOWN_MEMBER_ID,
        ErrorCode::IllegalGeneration => ILLEGAL_GENERATION,
        ErrorCode::RebalanceInProgress => REBALANCE_IN_PROGRESS,
        ErrorCode::InvalidGroupId => INVALID_GROUP_ID,
        ErrorCode::InvalidTopicName => INVALID_TOPIC_EXCEPTION,
        ErrorCode::Throttled => THROTTLING_QUOTA_EXCEEDED,
        ErrorCode::GroupFull | ErrorCode::TooManyGroups => GROUP_MAX_SIZE_REACHED,
        ErrorCode::OffsetMetadataTooLarge => OFFSET_METADATA_TOO_LARGE,
        ErrorCode::NonEmptyGroup => NON_EMPTY_GROUP,
        ErrorCode::GroupIdNotFound => GROUP_ID_NOT_FOUND,
        ErrorCode::InconsistentGroupProtocol => INCONSISTENT_GROUP_PROTOCOL,
        ErrorCode::MemberIdRequired => MEMBER_ID_REQUIRED,
        ErrorCode::AuthenticationRequired | ErrorCode::AuthenticationFailed => SASL_AUTHENTICATION_FAILED,
        ErrorCode::TopicAuthorizationFailed => TOPIC_AUTHORIZATION_FAILED,
        ErrorCode::GroupAuthorizationFailed => GROUP_AUTHORIZATION_FAILED,
        ErrorCode::ClusterAuthorizationFailed => CLUSTER_AUTHORIZATION_FAILED,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::protocol::Message;

    #[test]
    fn advertised_versions_are_ones_the_codecs_know() {
        use kafka_protocol::messages::*;
        for &(api, min, max) in SUPPORTED {
            let known = match api {
                ApiKey::Produce => ProduceRequest::VERSIONS,
                ApiKey::Fetch => FetchRequest::VERSIONS,
                ApiKey::ListOffsets => ListOffsetsRequest::VERSIONS,
                ApiKey::Metadata => MetadataRequest::VERSIONS,
                ApiKey::ApiVersions => ApiVersionsRequest::VERSIONS,
                ApiKey::CreateTopics => CreateTopicsRequest::VERSIONS,
                ApiKey::DeleteTopics => DeleteTopicsRequest::VERSIONS,
                ApiKey::InitProducerId => InitProducerIdRequest::VERSIONS,
                ApiKey::DescribeConfigs => DescribeConfigsRequest::VERSIONS,
                ApiKey::AlterConfigs => AlterConfigsRequest::VERSIONS,
                ApiKey::CreatePartitions => CreatePartitionsRequest::VERSIONS,
                ApiKey::IncrementalAlterConfigs => IncrementalAlterConfigsRequest::VERSIONS,
                ApiKey::DescribeCluster => DescribeClusterRequest::VERSIONS,
                ApiKey::FindCoordinator => FindCoordinatorRequest::VERSIONS,
                ApiKey::JoinGroup => JoinGroupRequest::VERSIONS,
                ApiKey::SyncGroup => SyncGroupRequest::VERSIONS,
                ApiKey::Heartbeat => HeartbeatRequest::VERSIONS,
                ApiKey::LeaveGroup => LeaveGroupRequest::VERSIONS,
                ApiKey::OffsetCommit => OffsetCommitRequest::VERSIONS,
                ApiKey::OffsetFetch => OffsetFetchRequest::VERSIONS,
                ApiKey::ListGroups => ListGroupsRequest::VERSIONS,
                ApiKey::DescribeGroups => DescribeGroupsRequest::VERSIONS,
                ApiKey::DeleteGroups => DeleteGroupsRequest::VERSIONS,
                other => panic!("{other:?} advertised without a codec check here"),
            };
            assert!(known.min <= min && max <= known.max, "{api:?} {min}..={max} outside {known:?}");
        }
    }

    #[test]
    fn every_node_code_has_a_kafka_reading() {
        for code in ErrorCode::ALL {
            let kafka = to_kafka(code);
            assert!(code == ErrorCode::None || code == ErrorCode::DuplicateSequence || kafka != 0, "{code:?}");
        }
    }
}
