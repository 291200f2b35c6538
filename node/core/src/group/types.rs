//! What the coordinator takes and gives: request inputs, the outcome of a request that
//! may park, the late [`Reply`] to a parked request, and the [`Action`]s the shell
//! carries out. Shared by the coordinator (`coordinator.rs`) and the per-group state
//! machine (`state.rs`), which import this module and not each other's.

use strand_wire::msg::{self, Assignor, CommittedOffset};

use super::error::GroupError;
use super::record::CommitRecord;

/// The shell's handle for a request whose answer may come later through an [`Action`].
pub type RequestId = u64;

/// Result of a request that may have to wait.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome<T> {
    /// Answered now.
    Done(T),
    /// Answered later by an [`Action::Respond`] with the same request id (possibly
    /// already queued: drain [`GroupCoordinator::poll_action`](super::GroupCoordinator::poll_action)).
    Parked,
}

/// A late answer to a parked request.
#[derive(Debug, Clone, PartialEq)]
pub enum Reply {
    Join(Result<JoinResult, GroupError>),
    /// A Kafka-protocol sync: the member's opaque assignment, relayed from the leader.
    Sync(Result<Vec<u8>, GroupError>),
    Commit(Result<(), GroupError>),
    Delete(Result<(), GroupError>),
}

/// Work for the shell.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Send this answer to the request `request_id`.
    Respond { request_id: RequestId, reply: Reply },
    /// Append these records to `__consumer_offsets` (value = [`CommitRecord::encode`],
    /// key = [`CommitRecord::encode_key`]) in order, then call
    /// [`GroupCoordinator::handle_persisted`](super::GroupCoordinator::handle_persisted) with `persist_id`.
    PersistOffsets { persist_id: u64, records: Vec<CommitRecord> },
    /// Append a snapshot of offsets partition `partition`, in one append: a
    /// [`SnapshotMarker`](super::SnapshotMarker) with `count = records.len()`, then
    /// `records` (as for `PersistOffsets`); then call `handle_persisted` with `persist_id`.
    /// Once the marker and its records are durable (committed, in a chain) the shell may
    /// delete the partition's log below the marker (see `compact.rs`).
    PersistSnapshot { persist_id: u64, partition: u32, records: Vec<CommitRecord> },
    /// Informational (log, metrics): a member was dropped.
    MemberRemoved { group_id: String, member_id: String, reason: &'static str },
}

/// A join request.
#[derive(Debug, Clone, PartialEq)]
pub struct JoinInput {
    pub group_id: String,
    /// Empty on first join.
    pub member_id: String,
    pub client_id: String,
    pub session_timeout_ms: u32,
    pub rebalance_timeout_ms: u32,
    pub topics: Vec<String>,
    pub assignor: Assignor,
    /// `Some` for a Kafka-protocol member (client-side assignment); `None` for a native
    /// one. For Kafka's "consumer" protocol type the shell fills `topics` from the
    /// subscription, so partition-count changes rebalance Kafka groups too.
    pub kafka: Option<KafkaJoin>,
}

/// What a Kafka-protocol JoinGroup adds to a join.
#[derive(Debug, Clone, PartialEq)]
pub struct KafkaJoin {
    /// Kafka's `protocol_type` ("consumer" for consumers): every member must agree.
    pub protocol_type: String,
    /// The assignment protocols the member supports, preferred first.
    pub protocols: Vec<KafkaProtocol>,
    /// JoinGroup v4+: a first join (empty member id) is answered with
    /// [`GroupError::MemberIdRequired`] and a member id to rejoin with.
    pub member_id_required: bool,
}

/// One assignment protocol a Kafka member supports, with its opaque metadata.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KafkaProtocol {
    pub name: String,
    pub metadata: Vec<u8>,
}

/// The answer to a join: the generation the member is part of.
#[derive(Debug, Clone, PartialEq)]
pub struct JoinResult {
    pub generation: u32,
    pub member_id: String,
    pub leader_member_id: String,
    /// Members of the generation, in id order.
    pub members: Vec<String>,
    /// Kafka mode: the protocol chosen for the generation (`None` for a native group).
    pub protocol: Option<String>,
    /// Kafka mode, to the leader only: every member of the generation with its metadata
    /// for the chosen protocol, in id order (empty for followers and native groups).
    pub member_metadata: Vec<(String, Vec<u8>)>,
}

/// A Kafka-protocol sync request.
#[derive(Debug, Clone, PartialEq)]
pub struct KafkaSyncInput {
    pub group_id: String,
    pub generation: u32,
    pub member_id: String,
    /// The leader's assignments, by member id (ignored from a follower).
    pub assignments: Vec<(String, Vec<u8>)>,
}

/// An offset commit request.
#[derive(Debug, Clone, PartialEq)]
pub struct CommitInput {
    pub group_id: String,
    /// 0 together with an empty `member_id`: a standalone commit.
    pub generation: u32,
    pub member_id: String,
    pub offsets: Vec<CommittedOffset>,
}

impl From<msg::JoinGroupRequest> for JoinInput {
    fn from(r: msg::JoinGroupRequest) -> Self {
        JoinInput {
            group_id: r.group_id,
            member_id: r.member_id,
            client_id: r.client_id,
            session_timeout_ms: r.session_timeout_ms,
            rebalance_timeout_ms: r.rebalance_timeout_ms,
            topics: r.topics,
            assignor: r.assignor,
            kafka: None,
        }
    }
}

impl From<JoinResult> for msg::JoinGroupResponse {
    fn from(r: JoinResult) -> Self {
        msg::JoinGroupResponse {
            generation: r.generation,
            member_id: r.member_id,
            leader_member_id: r.leader_member_id,
            members: r.members,
        }
    }
}

impl From<msg::OffsetCommitRequest> for CommitInput {
    fn from(r: msg::OffsetCommitRequest) -> Self {
        CommitInput { group_id: r.group_id, generation: r.generation, member_id: r.member_id, offsets: r.offsets }
    }
}
