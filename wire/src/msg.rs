//! Plain-Rust request and response messages. FlatBuffers types never leave
//! `strand-wire`: [`crate::codec`] converts these to and from the verified
//! FlatBuffers headers. Record-batch bytes never appear here; they travel as
//! the frame payload beside the header, described by `bytes_len` fields.

use crate::error::ErrorCode;

/// Version of the protocol this crate speaks.
pub const PROTOCOL_VERSION: u16 = 1;

/// Which offset a partition lookup or reset starts from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OffsetSpec {
    /// The log start offset.
    Earliest,
    /// The log end offset (next offset to be written).
    Latest,
    /// The first offset whose record timestamp is `>=` this (ms since epoch).
    Timestamp(i64),
}

/// How many acknowledgements a produce waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Acks {
    /// No response is sent.
    None,
    /// After the head's local fsync policy is met.
    #[default]
    Leader,
    /// After the whole chain has the batches (commit).
    All,
}

/// Server-side partition assignment strategy of a group.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Assignor {
    /// Contiguous ranges of each topic's partitions per member.
    #[default]
    Range,
    /// Partitions dealt one by one across members.
    RoundRobin,
}

/// `(topic, partition)`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TopicPartition {
    pub topic: String,
    pub partition: u32,
}

/// A request header body; the frame's correlation id travels beside it.
#[derive(Debug, Clone, PartialEq)]
pub enum Request {
    Handshake(HandshakeRequest),
    Metadata(MetadataRequest),
    CreateTopic(CreateTopicRequest),
    DeleteTopic(DeleteTopicRequest),
    ListTopics,
    InitProducerId,
    Produce(ProduceRequest),
    Fetch(FetchRequest),
    ListOffsets(ListOffsetsRequest),
    JoinGroup(JoinGroupRequest),
    SyncGroup(SyncGroupRequest),
    Heartbeat(HeartbeatRequest),
    LeaveGroup(LeaveGroupRequest),
    OffsetCommit(OffsetCommitRequest),
    OffsetFetch(OffsetFetchRequest),
    ListGroups,
    DescribeGroup(DescribeGroupRequest),
    ReplicaAppend(ReplicaAppendRequest),
    ReplicaAck(ReplicaAckRequest),
    DeleteGroup(DeleteGroupRequest),
    AlterTopicConfig(AlterTopicConfigRequest),
    CreatePartitions(CreatePartitionsRequest),
    Authenticate(AuthenticateRequest),
    AlterUser(AlterUserRequest),
    ListUsers,
    AlterAcl(AlterAclRequest),
    ListAcls,
}

/// Which API a [`Request`] is. Numbered from 0 in the order of the schema's `RequestBody`
/// union (the union's tag minus one), so an `ApiKey` indexes per-API tables of
/// [`ApiKey::COUNT`] entries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ApiKey {
    Handshake = 0,
    Metadata = 1,
    CreateTopic = 2,
    DeleteTopic = 3,
    ListTopics = 4,
    InitProducerId = 5,
    Produce = 6,
    Fetch = 7,
    ListOffsets = 8,
    JoinGroup = 9,
    SyncGroup = 10,
    Heartbeat = 11,
    LeaveGroup = 12,
    OffsetCommit = 13,
    OffsetFetch = 14,
    ListGroups = 15,
    DescribeGroup = 16,
    ReplicaAppend = 17,
    ReplicaAck = 18,
    DeleteGroup = 19,
    AlterTopicConfig = 20,
    CreatePartitions = 21,
    Authenticate = 22,
    AlterUser = 23,
    ListUsers = 24,
    AlterAcl = 25,
    ListAcls = 26,
}

impl ApiKey {
    /// Number of APIs: the length of a table indexed by [`ApiKey::index`].
    pub const COUNT: usize = 27;
    /// Every API, in index order.
    pub const ALL: [ApiKey; ApiKey::COUNT] = [
        ApiKey::Handshake,
        ApiKey::Metadata,
        ApiKey::CreateTopic,
        ApiKey::DeleteTopic,
        ApiKey::ListTopics,
        ApiKey::InitProducerId,
        ApiKey::Produce,
        ApiKey::Fetch,
        ApiKey::ListOffsets,
        ApiKey::JoinGroup,
        ApiKey::SyncGroup,
        ApiKey::Heartbeat,
        ApiKey::LeaveGroup,
        ApiKey::OffsetCommit,
        ApiKey::OffsetFetch,
        ApiKey::ListGroups,
        ApiKey::DescribeGroup,
        ApiKey::ReplicaAppend,
        ApiKey::ReplicaAck,
        ApiKey::DeleteGroup,
        ApiKey::AlterTopicConfig,
        ApiKey::CreatePartitions,
        ApiKey::Authenticate,
        ApiKey::AlterUser,
        ApiKey::ListUsers,
        ApiKey::AlterAcl,
        ApiKey::ListAcls,
    ];

    /// This API's position in [`ApiKey::ALL`], below [`ApiKey::COUNT`].
    pub fn index(self) -> usize {
        self as usize
    }

    /// The API's name in snake case (`"produce"`, `"join_group"`).
    pub fn name(self) -> &'static str {
        match self {
            ApiKey::Handshake => "handshake",
            ApiKey::Metadata => "metadata",
            ApiKey::CreateTopic => "create_topic",
            ApiKey::DeleteTopic => "delete_topic",
            ApiKey::ListTopics => "list_topics",
            ApiKey::InitProducerId => "init_producer_id",
            ApiKey::Produce => "produce",
            ApiKey::Fetch => "fetch",
            ApiKey::ListOffsets => "list_offsets",
            ApiKey::JoinGroup => "join_group",
            ApiKey::SyncGroup => "sync_group",
            ApiKey::Heartbeat => "heartbeat",
            ApiKey::LeaveGroup => "leave_group",
            ApiKey::OffsetCommit => "offset_commit",
            ApiKey::OffsetFetch => "offset_fetch",
            ApiKey::ListGroups => "list_groups",
            ApiKey::DescribeGroup => "describe_group",
            ApiKey::ReplicaAppend => "replica_append",
            ApiKey::ReplicaAck => "replica_ack",
            ApiKey::DeleteGroup => "delete_group",
            ApiKey::AlterTopicConfig => "alter_topic_config",
            ApiKey::CreatePartitions => "create_partitions",
            ApiKey::Authenticate => "authenticate",
            ApiKey::AlterUser => "alter_user",
            ApiKey::ListUsers => "list_users",
            ApiKey::AlterAcl => "alter_acl",
            ApiKey::ListAcls => "list_acls",
        }
    }
}

impl Request {
    /// Which API this request is.
    pub fn api(&self) -> ApiKey {
        match self {
            Request::Handshake(_) => ApiKey::Handshake,
            Request::Metadata(_) => ApiKey::Metadata,
            Request::CreateTopic(_) => ApiKey::CreateTopic,
            Request::DeleteTopic(_) => ApiKey::DeleteTopic,
            Request::ListTopics => ApiKey::ListTopics,
            Request::InitProducerId => ApiKey::InitProducerId,
            Request::Produce(_) => ApiKey::Produce,
            Request::Fetch(_) => ApiKey::Fetch,
            Request::ListOffsets(_) => ApiKey::ListOffsets,
            Request::JoinGroup(_) => ApiKey::JoinGroup,
            Request::SyncGroup(_) => ApiKey::SyncGroup,
            Request::Heartbeat(_) => ApiKey::Heartbeat,
            Request::LeaveGroup(_) => ApiKey::LeaveGroup,
            Request::OffsetCommit(_) => ApiKey::OffsetCommit,
            Request::OffsetFetch(_) => ApiKey::OffsetFetch,
            Request::ListGroups => ApiKey::ListGroups,
            Request::DescribeGroup(_) => ApiKey::DescribeGroup,
            Request::ReplicaAppend(_) => ApiKey::ReplicaAppend,
            Request::ReplicaAck(_) => ApiKey::ReplicaAck,
            Request::DeleteGroup(_) => ApiKey::DeleteGroup,
            Request::AlterTopicConfig(_) => ApiKey::AlterTopicConfig,
            Request::CreatePartitions(_) => ApiKey::CreatePartitions,
            Request::Authenticate(_) => ApiKey::Authenticate,
            Request::AlterUser(_) => ApiKey::AlterUser,
            Request::ListUsers => ApiKey::ListUsers,
            Request::AlterAcl(_) => ApiKey::AlterAcl,
            Request::ListAcls => ApiKey::ListAcls,
        }
    }
}

/// A response body; the top-level error and correlation id travel beside it.
#[derive(Debug, Clone, PartialEq)]
pub enum Response {
    /// Only an error (or plain success) with no body.
    Empty,
    Handshake(HandshakeResponse),
    Metadata(MetadataResponse),
    CreateTopic(CreateTopicResponse),
    ListTopics(ListTopicsResponse),
    InitProducerId(InitProducerIdResponse),
    Produce(ProduceResponse),
    Fetch(FetchResponse),
    ListOffsets(ListOffsetsResponse),
    JoinGroup(JoinGroupResponse),
    SyncGroup(SyncGroupResponse),
    OffsetFetch(OffsetFetchResponse),
    ListGroups(ListGroupsResponse),
    DescribeGroup(DescribeGroupResponse),
    ReplicaAppend(ReplicaAppendResponse),
    Authenticate(AuthenticateResponse),
    ListUsers(ListUsersResponse),
    ListAcls(ListAclsResponse),
}

/// The decoded header of a request frame.
#[derive(Debug, Clone, PartialEq)]
pub struct RequestHeader {
    pub correlation_id: u64,
    pub request: Request,
}

/// The decoded header of a response frame.
#[derive(Debug, Clone, PartialEq)]
pub struct ResponseHeader {
    pub correlation_id: u64,
    /// Top-level error; per-partition errors live in the body.
    pub error: ErrorCode,
    /// Human-readable detail for a non-`None` error.
    pub message: Option<String>,
    pub response: Response,
    /// Milliseconds the client should wait before its next request on this connection (it
    /// went over its byte-rate quota; the node does not read the connection meanwhile). 0 = none.
    pub throttle_ms: u32,
}

#[derive(Debug, Clone, PartialEq)]
pub struct HandshakeRequest {
    pub protocol_version: u16,
    pub client_id: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct HandshakeResponse {
    pub protocol_version_min: u16,
    pub protocol_version_max: u16,
    pub node_id: u32,
    /// Largest frame the node accepts.
    pub frame_len_max: u32,
}

#[derive(Debug, Clone, PartialEq)]
pub struct MetadataRequest {
    /// Topics to describe; empty = all.
    pub topics: Vec<String>,
}

/// A node of the cluster as clients should reach it.
#[derive(Debug, Clone, PartialEq)]
pub struct NodeInfo {
    pub node_id: u32,
    /// Host of the public port and the shard ports.
    pub host: String,
    /// The public port (any request, forwarded to owners).
    pub port: u16,
    /// `shard_ports[s]` is the fast-path port of shard `s` (requests for partitions it
    /// owns skip the cross-shard hop); empty if shard ports are disabled.
    pub shard_ports: Vec<u16>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct PartitionMetadata {
    pub partition: u32,
    pub error: ErrorCode,
    /// Node that takes produces (the chain head).
    pub leader_node: u32,
    /// Owner shard on the leader node.
    pub leader_shard: u16,
    /// The chain, head first.
    pub replicas: Vec<u32>,
    pub epoch: u64,
    pub log_start_offset: u64,
    pub log_end_offset: u64,
    /// Highest offset + 1 that the whole chain has (== log end on one node).
    pub commit_offset: u64,
    /// The node the controller moves the head back to when it is a healthy chain member
    /// (preferred-head rebalancing); 0 = none (single-node mode, or a chain record
    /// written before preferences existed).
    pub preferred_leader: u32,
}

#[derive(Debug, Clone, PartialEq)]
pub struct TopicMetadata {
    pub name: String,
    pub error: ErrorCode,
    pub partitions: Vec<PartitionMetadata>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct MetadataResponse {
    pub nodes: Vec<NodeInfo>,
    pub topics: Vec<TopicMetadata>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct CreateTopicRequest {
    pub name: String,
    pub partitions: u32,
    pub replication_factor: u16,
    /// Per-topic overrides (`retention_bytes`, `retention_ms`, `segment_bytes`, `segment_ms`).
    pub configs: Vec<(String, String)>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct CreateTopicResponse {
    pub name: String,
    pub partitions: u32,
}

#[derive(Debug, Clone, PartialEq)]
pub struct DeleteTopicRequest {
    pub name: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ListTopicsResponse {
    pub topics: Vec<TopicSummary>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct TopicSummary {
    pub name: String,
    pub partitions: u32,
    pub replication_factor: u16,
    /// Every client-settable config key with its effective value, in key order (empty
    /// from a node that predates them).
    pub configs: Vec<TopicConfigValue>,
}

/// One config key of a topic as the node applies it.
#[derive(Debug, Clone, PartialEq)]
pub struct TopicConfigValue {
    pub key: String,
    /// The effective value; `"none"` = no limit (unset).
    pub value: String,
    /// Whether the topic overrides the node default.
    pub is_override: bool,
}

/// Changes a topic's config overrides; validated like [`CreateTopicRequest::configs`].
#[derive(Debug, Clone, PartialEq)]
pub struct AlterTopicConfigRequest {
    pub name: String,
    /// Overrides added or replaced.
    pub set: Vec<(String, String)>,
    /// Override keys removed (back to the node default).
    pub delete: Vec<String>,
}

/// Grows a topic to `partitions` partitions in total; answered with a
/// [`CreateTopicResponse`] carrying the new count.
#[derive(Debug, Clone, PartialEq)]
pub struct CreatePartitionsRequest {
    pub name: String,
    pub partitions: u32,
}

/// Deletes an Empty group's committed offsets; answered with an empty response.
#[derive(Debug, Clone, PartialEq)]
pub struct DeleteGroupRequest {
    pub group_id: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct InitProducerIdResponse {
    pub producer_id: u64,
    pub producer_epoch: u16,
}

/// Batches for one partition: `bytes_len` bytes of the payload, in entry order.
#[derive(Debug, Clone, PartialEq)]
pub struct ProducePartition {
    pub topic: String,
    pub partition: u32,
    pub bytes_len: u32,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ProduceRequest {
    pub acks: Acks,
    pub timeout_ms: u32,
    pub partitions: Vec<ProducePartition>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ProducePartitionResponse {
    pub topic: String,
    pub partition: u32,
    pub error: ErrorCode,
    /// Offset given to the first record of the first batch.
    pub base_offset: u64,
    pub log_end_offset: u64,
    pub log_start_offset: u64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ProduceResponse {
    pub partitions: Vec<ProducePartitionResponse>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct FetchPartition {
    pub topic: String,
    pub partition: u32,
    pub offset: u64,
    /// Bytes at most for this partition (at least one whole batch is always returned).
    pub max_bytes: u32,
}

#[derive(Debug, Clone, PartialEq)]
pub struct FetchRequest {
    /// Longest the node waits for `min_bytes` to accumulate.
    pub max_wait_ms: u32,
    pub min_bytes: u32,
    /// Bytes at most over all partitions.
    pub max_bytes: u32,
    pub partitions: Vec<FetchPartition>,
}

/// One partition's share of a fetch response: `bytes_len` payload bytes of whole batches.
#[derive(Debug, Clone, PartialEq)]
pub struct FetchPartitionResponse {
    pub topic: String,
    pub partition: u32,
    pub error: ErrorCode,
    pub log_start_offset: u64,
    pub log_end_offset: u64,
    /// Highest readable offset + 1 for consumers (commit offset).
    pub high_watermark: u64,
    pub bytes_len: u32,
}

#[derive(Debug, Clone, PartialEq)]
pub struct FetchResponse {
    pub partitions: Vec<FetchPartitionResponse>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ListOffsetsPartition {
    pub topic: String,
    pub partition: u32,
    pub spec: OffsetSpec,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ListOffsetsRequest {
    pub partitions: Vec<ListOffsetsPartition>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ListOffsetsPartitionResponse {
    pub topic: String,
    pub partition: u32,
    pub error: ErrorCode,
    pub offset: u64,
    /// Timestamp of the record found for a timestamp lookup, else -1.
    pub timestamp: i64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ListOffsetsResponse {
    pub partitions: Vec<ListOffsetsPartitionResponse>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct JoinGroupRequest {
    pub group_id: String,
    /// Empty on first join; the coordinator assigns one.
    pub member_id: String,
    pub client_id: String,
    pub session_timeout_ms: u32,
    pub rebalance_timeout_ms: u32,
    pub topics: Vec<String>,
    pub assignor: Assignor,
}

#[derive(Debug, Clone, PartialEq)]
pub struct JoinGroupResponse {
    pub generation: u32,
    pub member_id: String,
    pub leader_member_id: String,
    pub members: Vec<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct SyncGroupRequest {
    pub group_id: String,
    pub generation: u32,
    pub member_id: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct SyncGroupResponse {
    /// The partitions this member owns in this generation.
    pub assignment: Vec<TopicPartition>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct HeartbeatRequest {
    pub group_id: String,
    pub generation: u32,
    pub member_id: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct LeaveGroupRequest {
    pub group_id: String,
    pub member_id: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct CommittedOffset {
    pub topic: String,
    pub partition: u32,
    pub offset: u64,
    pub metadata: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct OffsetCommitRequest {
    pub group_id: String,
    pub generation: u32,
    pub member_id: String,
    pub offsets: Vec<CommittedOffset>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct OffsetFetchRequest {
    pub group_id: String,
    /// Partitions to look up; empty = all the group committed.
    pub partitions: Vec<TopicPartition>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct OffsetFetchResponse {
    /// Only partitions with a committed offset are listed.
    pub offsets: Vec<CommittedOffset>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ListGroupsResponse {
    pub groups: Vec<GroupSummary>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct GroupSummary {
    pub group_id: String,
    pub state: String,
    pub member_count: u32,
}

#[derive(Debug, Clone, PartialEq)]
pub struct DescribeGroupRequest {
    pub group_id: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct GroupMemberInfo {
    pub member_id: String,
    pub client_id: String,
    pub assignment: Vec<TopicPartition>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct GroupPartitionLag {
    pub topic: String,
    pub partition: u32,
    /// `u64::MAX` when nothing is committed.
    pub committed: u64,
    pub log_end_offset: u64,
    pub lag: u64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct DescribeGroupResponse {
    pub group_id: String,
    pub state: String,
    pub generation: u32,
    pub assignor: Assignor,
    pub members: Vec<GroupMemberInfo>,
    pub partitions: Vec<GroupPartitionLag>,
}

/// Chain replication: a predecessor sends batches (the payload, `bytes_len` bytes)
/// that start at `start_offset` in the successor's log.
#[derive(Debug, Clone, PartialEq)]
pub struct ReplicaAppendRequest {
    pub topic: String,
    pub partition: u32,
    pub epoch: u64,
    pub start_offset: u64,
    /// The sender's commit offset, so replicas can serve committed reads.
    pub commit_offset: u64,
    pub bytes_len: u32,
    /// Sending node (chain replication node id).
    pub from_node: u32,
    /// The batches follow this position of the sender's log (offset, append epoch).
    pub prev_offset: u64,
    pub prev_epoch: u64,
    /// Append epoch of each batch in the payload, in order.
    pub batch_epochs: Vec<u64>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ReplicaAppendResponse {
    pub error: ErrorCode,
    pub epoch: u64,
    /// The successor's log end after the append (or where it wants data from).
    pub log_end_offset: u64,
    /// Offset + 1 durable on this replica and every one after it.
    pub durable_offset: u64,
}

/// Chain replication: a successor reports what is durable from it to the tail.
#[derive(Debug, Clone, PartialEq)]
pub struct ReplicaAckRequest {
    pub topic: String,
    pub partition: u32,
    pub epoch: u64,
    pub durable_offset: u64,
    /// Sending node (chain replication node id).
    pub from_node: u32,
    /// `None` = the successor agrees up to `log_end_*`; `OffsetOutOfRange` = resend from
    /// a boundary at or below `log_end_offset`; `StaleEpoch` = the receiver is fenced.
    pub error: ErrorCode,
    pub log_end_offset: u64,
    pub log_end_epoch: u64,
    pub durable_epoch: u64,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::generated as fb;

    #[test]
    fn api_keys_follow_the_schema_union() {
        for (index, api) in ApiKey::ALL.into_iter().enumerate() {
            assert_eq!(api.index(), index);
            let tag = fb::RequestBody(u8::try_from(index + 1).unwrap());
            assert_eq!(tag.variant_name(), Some(format!("{api:?}Request").as_str()), "{api:?}");
        }
        assert_eq!(usize::from(fb::RequestBody::ENUM_MAX), ApiKey::COUNT, "one ApiKey per union member");
        assert_eq!(Request::ListGroups.api(), ApiKey::ListGroups);
        assert_eq!(ApiKey::InitProducerId.name(), "init_producer_id");
    }
}

/// One step of a SASL exchange (the connection's authentication).
#[derive(Debug, Clone, PartialEq)]
pub struct AuthenticateRequest {
    /// `SCRAM-SHA-256`, `SCRAM-SHA-512` or `PLAIN`.
    pub mechanism: String,
    /// The mechanism's message.
    pub auth_bytes: Vec<u8>,
}

/// The node's answer to one step: a challenge, or (with `principal` set) success.
#[derive(Debug, Clone, PartialEq)]
pub struct AuthenticateResponse {
    pub auth_bytes: Vec<u8>,
    /// The authenticated user once the exchange succeeded; empty before.
    pub principal: String,
}

/// A stored SCRAM verifier (never a password).
#[derive(Debug, Clone, PartialEq)]
pub struct ScramCredentialEntry {
    pub mechanism: String,
    pub salt: Vec<u8>,
    pub iterations: u32,
    pub stored_key: Vec<u8>,
    pub server_key: Vec<u8>,
}

/// Creates (or replaces the credentials of) a user, or deletes one.
#[derive(Debug, Clone, PartialEq)]
pub enum AlterUserRequest {
    Upsert { name: String, credentials: Vec<ScramCredentialEntry> },
    Delete { name: String },
}

/// A user as listed: never a secret.
#[derive(Debug, Clone, PartialEq)]
pub struct UserInfo {
    pub name: String,
    pub mechanisms: Vec<String>,
    pub superuser: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ListUsersResponse {
    pub users: Vec<UserInfo>,
}

/// What an ACL entry covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum AclResource {
    Topic,
    Group,
    Cluster,
}

/// What an ACL entry allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum AclOperation {
    Read,
    Write,
    Describe,
    Admin,
}

/// One grant: `principal` may do `operation` on the resource (`name` ignored for the cluster).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AclEntry {
    pub principal: String,
    pub resource: AclResource,
    pub name: String,
    /// `name` is a prefix of the covered resources' names.
    pub prefix: bool,
    pub operation: AclOperation,
}

/// Adds or removes one ACL entry.
#[derive(Debug, Clone, PartialEq)]
pub struct AlterAclRequest {
    /// `true` = add, `false` = remove.
    pub add: bool,
    pub entry: AclEntry,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ListAclsResponse {
    pub entries: Vec<AclEntry>,
}
