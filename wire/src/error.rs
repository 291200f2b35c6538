//! Error codes shared by node and client. The numeric values are part of the
//! wire contract: never renumber, only append.

/// A stable error code carried in responses (`0` = no error).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u16)]
pub enum ErrorCode {
    /// Success.
    None = 0,
    /// An unexpected server-side failure; the message says more.
    Unknown = 1,
    /// A record batch failed CRC or structure validation.
    CorruptBatch = 2,
    /// The topic does not exist.
    UnknownTopic = 3,
    /// The partition does not exist in the topic.
    UnknownPartition = 4,
    /// This node/shard does not own the partition; refresh metadata.
    NotOwner = 5,
    /// The requested offset is outside `[log_start, log_end]`.
    OffsetOutOfRange = 6,
    /// The node refuses appends because free space is below its guard.
    StorageFull = 7,
    /// A frame or batch exceeds a configured size limit.
    MessageTooLarge = 8,
    /// The request is malformed or violates a limit.
    InvalidRequest = 9,
    /// The protocol version is not supported.
    UnsupportedVersion = 10,
    /// The API is not known to this node.
    UnknownApi = 11,
    /// A topic with this name exists already.
    TopicAlreadyExists = 12,
    /// A topic or node configuration value is invalid.
    InvalidConfig = 13,
    /// The request did not complete in its timeout.
    RequestTimedOut = 14,
    /// The batch was already appended (idempotent retry); the response carries its offset.
    DuplicateSequence = 15,
    /// The batch's sequence leaves a gap after the last one appended for its producer.
    OutOfOrderSequence = 16,
    /// The producer epoch is older than the one the node knows.
    InvalidProducerEpoch = 17,
    /// Not enough in-sync replicas to satisfy `acks=all`.
    NotEnoughReplicas = 18,
    /// A replication message carried an old chain epoch.
    StaleEpoch = 19,
    /// The group coordinator is loading or unavailable.
    CoordinatorNotAvailable = 20,
    /// This node/shard is not the group's coordinator.
    NotCoordinator = 21,
    /// The member id is not part of the group.
    UnknownMember = 22,
    /// The generation id is not the group's current one.
    IllegalGeneration = 23,
    /// The group is rebalancing; rejoin.
    RebalanceInProgress = 24,
    /// The group id is empty or invalid.
    InvalidGroupId = 25,
    /// The node is shutting down.
    ShuttingDown = 26,
    /// A storage IO error other than a full disk.
    StorageError = 27,
    /// Stored data failed validation; the node refuses to serve it.
    CorruptStorage = 28,
    /// The topic name is empty, too long, or has characters outside `[A-Za-z0-9._-]`.
    InvalidTopicName = 29,
    /// Too many requests in flight on the connection or node.
    Throttled = 30,
    /// The group has too many members.
    GroupFull = 31,
    /// An offset commit's metadata is longer than the node's `offset_metadata_max_bytes`,
    /// or the coordinator's budget of committed-offset bytes is spent.
    OffsetMetadataTooLarge = 32,
    /// The coordinator holds `groups_max` groups already; a new group cannot be created.
    TooManyGroups = 33,
    /// The group has active members; the operation needs an Empty group.
    NonEmptyGroup = 34,
    /// The group does not exist (no members, no committed offsets).
    GroupIdNotFound = 35,
    /// A member's group protocol does not fit the group: a native member joining a
    /// Kafka-protocol group (or the reverse), another Kafka protocol type, or no protocol
    /// every member supports.
    InconsistentGroupProtocol = 36,
    /// A first join (Kafka JoinGroup v4+) is answered with a member id to rejoin with.
    MemberIdRequired = 37,
    /// The node requires authentication (`--require-auth`) and the connection has not
    /// authenticated: only Handshake and Authenticate are answered before.
    AuthenticationRequired = 38,
    /// Authentication failed (wrong credentials, malformed or unsupported SASL message).
    AuthenticationFailed = 39,
    /// The principal may not do this to the topic (the message names the permission).
    TopicAuthorizationFailed = 40,
    /// The principal may not do this to the group.
    GroupAuthorizationFailed = 41,
    /// The principal lacks cluster admin.
    ClusterAuthorizationFailed = 42,
}

impl ErrorCode {
    /// Every code, in numeric order.
    pub const ALL: [ErrorCode; 43] = [
        ErrorCode::None,
        ErrorCode::Unknown,
        ErrorCode::CorruptBatch,
        ErrorCode::UnknownTopic,
        ErrorCode::UnknownPartition,
        ErrorCode::NotOwner,
        ErrorCode::OffsetOutOfRange,
        ErrorCode::StorageFull,
        ErrorCode::MessageTooLarge,
        ErrorCode::InvalidRequest,
        ErrorCode::UnsupportedVersion,
        ErrorCode::UnknownApi,
        ErrorCode::TopicAlreadyExists,
        ErrorCode::InvalidConfig,
        ErrorCode::RequestTimedOut,
        ErrorCode::DuplicateSequence,
        ErrorCode::OutOfOrderSequence,
        ErrorCode::InvalidProducerEpoch,
        ErrorCode::NotEnoughReplicas,
        ErrorCode::StaleEpoch,
        ErrorCode::CoordinatorNotAvailable,
        ErrorCode::NotCoordinator,
        ErrorCode::UnknownMember,
        ErrorCode::IllegalGeneration,
        ErrorCode::RebalanceInProgress,
        ErrorCode::InvalidGroupId,
        ErrorCode::ShuttingDown,
        ErrorCode::StorageError,
        ErrorCode::CorruptStorage,
        ErrorCode::InvalidTopicName,
        ErrorCode::Throttled,
        ErrorCode::GroupFull,
        ErrorCode::OffsetMetadataTooLarge,
        ErrorCode::TooManyGroups,
        ErrorCode::NonEmptyGroup,
        ErrorCode::GroupIdNotFound,
        ErrorCode::InconsistentGroupProtocol,
        ErrorCode::MemberIdRequired,
        ErrorCode::AuthenticationRequired,
        ErrorCode::AuthenticationFailed,
        ErrorCode::TopicAuthorizationFailed,
        ErrorCode::GroupAuthorizationFailed,
        ErrorCode::ClusterAuthorizationFailed,
    ];

    /// The numeric code.
    pub fn code(self) -> u16 {
        self as u16
    }

    /// The code for a number; unknown numbers (from a newer peer) map to `Unknown`.
    pub fn from_code(code: u16) -> ErrorCode {
        Self::ALL.get(usize::from(code)).copied().unwrap_or(ErrorCode::Unknown)
    }

    /// Whether a client may retry the request (after a metadata refresh where relevant).
    pub fn is_retriable(self) -> bool {
        matches!(
            self,
            ErrorCode::NotOwner
                | ErrorCode::RequestTimedOut
                | ErrorCode::NotEnoughReplicas
                | ErrorCode::CoordinatorNotAvailable
                | ErrorCode::NotCoordinator
                | ErrorCode::RebalanceInProgress
                | ErrorCode::Throttled
                | ErrorCode::ShuttingDown
        )
    }

    /// A short stable name, e.g. `STORAGE_FULL`.
    pub fn name(self) -> &'static str {
        match self {
            ErrorCode::None => "NONE",
            ErrorCode::Unknown => "UNKNOWN",
            ErrorCode::CorruptBatch => "CORRUPT_BATCH",
            ErrorCode::UnknownTopic => "UNKNOWN_TOPIC",
            ErrorCode::UnknownPartition => "UNKNOWN_PARTITION",
            ErrorCode::NotOwner => "NOT_OWNER",
            ErrorCode::OffsetOutOfRange => "OFFSET_OUT_OF_RANGE",
            ErrorCode::StorageFull => "STORAGE_FULL",
            ErrorCode::MessageTooLarge => "MESSAGE_TOO_LARGE",
            ErrorCode::InvalidRequest => "INVALID_REQUEST",
            ErrorCode::UnsupportedVersion => "UNSUPPORTED_VERSION",
            ErrorCode::UnknownApi => "UNKNOWN_API",
            ErrorCode::TopicAlreadyExists => "TOPIC_ALREADY_EXISTS",
            ErrorCode::InvalidConfig => "INVALID_CONFIG",
            ErrorCode::RequestTimedOut => "REQUEST_TIMED_OUT",
            ErrorCode::DuplicateSequence => "DUPLICATE_SEQUENCE",
            ErrorCode::OutOfOrderSequence => "OUT_OF_ORDER_SEQUENCE",
            ErrorCode::InvalidProducerEpoch => "INVALID_PRODUCER_EPOCH",
            ErrorCode::NotEnoughReplicas => "NOT_ENOUGH_REPLICAS",
            ErrorCode::StaleEpoch => "STALE_EPOCH",
            ErrorCode::CoordinatorNotAvailable => "COORDINATOR_NOT_AVAILABLE",
            ErrorCode::NotCoordinator => "NOT_COORDINATOR",
            ErrorCode::UnknownMember => "UNKNOWN_MEMBER",
            ErrorCode::IllegalGeneration => "ILLEGAL_GENERATION",
            ErrorCode::RebalanceInProgress => "REBALANCE_IN_PROGRESS",
            ErrorCode::InvalidGroupId => "INVALID_GROUP_ID",
            ErrorCode::ShuttingDown => "SHUTTING_DOWN",
            ErrorCode::StorageError => "STORAGE_ERROR",
            ErrorCode::CorruptStorage => "CORRUPT_STORAGE",
            ErrorCode::InvalidTopicName => "INVALID_TOPIC_NAME",
            ErrorCode::Throttled => "THROTTLED",
            ErrorCode::GroupFull => "GROUP_FULL",
            ErrorCode::OffsetMetadataTooLarge => "OFFSET_METADATA_TOO_LARGE",
            ErrorCode::TooManyGroups => "TOO_MANY_GROUPS",
            ErrorCode::NonEmptyGroup => "NON_EMPTY_GROUP",
            ErrorCode::GroupIdNotFound => "GROUP_ID_NOT_FOUND",
            ErrorCode::InconsistentGroupProtocol => "INCONSISTENT_GROUP_PROTOCOL",
            ErrorCode::MemberIdRequired => "MEMBER_ID_REQUIRED",
            ErrorCode::AuthenticationRequired => "AUTHENTICATION_REQUIRED",
            ErrorCode::AuthenticationFailed => "AUTHENTICATION_FAILED",
            ErrorCode::TopicAuthorizationFailed => "TOPIC_AUTHORIZATION_FAILED",
            ErrorCode::GroupAuthorizationFailed => "GROUP_AUTHORIZATION_FAILED",
            ErrorCode::ClusterAuthorizationFailed => "CLUSTER_AUTHORIZATION_FAILED",
        }
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_dense_and_round_trip() {
        for (i, code) in ErrorCode::ALL.iter().enumerate() {
            assert_eq!(usize::from(code.code()), i);
            assert_eq!(ErrorCode::from_code(code.code()), *code);
        }
        assert_eq!(ErrorCode::from_code(9999), ErrorCode::Unknown);
    }
}
