//! The operating errors of the group coordinator, each mapped to a stable wire code.
//! One enum serves every group operation: each variant's doc says which operations
//! can produce it.

use strand_wire::ErrorCode;

/// Why the coordinator refused a group request.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GroupError {
    /// Offsets are still being replayed from `__consumer_offsets` (every operation).
    #[error("group coordinator is loading offsets")]
    Loading,
    /// The group id is empty or longer than `GROUP_ID_LEN_MAX` (every operation).
    #[error("invalid group id")]
    InvalidGroupId,
    /// The request breaks a limit or is malformed (join, commit); the text says which.
    #[error("invalid request: {0}")]
    InvalidRequest(&'static str),
    /// The member id is not part of the group, or the group does not exist
    /// (join with a member id, sync, heartbeat, leave, commit).
    #[error("unknown member")]
    UnknownMember,
    /// The generation is not the group's current one (sync, heartbeat, commit).
    #[error("illegal generation")]
    IllegalGeneration,
    /// The group is rebalancing: rejoin (sync, heartbeat, commit in CompletingRebalance,
    /// or a parked join superseded by a newer join of the same member).
    #[error("rebalance in progress")]
    RebalanceInProgress,
    /// The group has `members_per_group_max` members already (join).
    #[error("group is full")]
    GroupFull,
    /// The coordinator holds `groups_max` groups already (join, standalone commit).
    #[error("this coordinator holds {groups_max} groups (groups_max); a new group is refused")]
    TooManyGroups { groups_max: usize },
    /// A standalone commit (no member id) to a group that has active members (commit):
    /// only the group's own members may move its offsets.
    #[error("group has {members} active members: a commit needs a member id and generation of the group")]
    NotStandalone { members: usize },
    /// The committing member does not own the partition in the current generation (commit).
    #[error("{topic}/{partition} is not assigned to this member in generation {generation}")]
    NotAssigned { topic: String, partition: u32, generation: u32 },
    /// Commit metadata longer than `offset_metadata_max_bytes` (commit).
    #[error("commit metadata of {len} bytes for {topic}/{partition} exceeds offset_metadata_max_bytes {max}")]
    MetadataTooLarge { topic: String, partition: u32, len: usize, max: usize },
    /// Accepting the commit would take the coordinator's committed-offset state over
    /// `group_offsets_bytes_max` (commit).
    #[error(
        "committed offsets on this coordinator hold {held} bytes; {adding} more exceed group_offsets_bytes_max {max}"
    )]
    OffsetsBudgetFull { held: u64, adding: u64, max: u64 },
    /// The group's offsets are being expired (commit); retry.
    #[error("the group's offsets are expiring; retry")]
    Expiring,
    /// Too many commit persists in flight (commit); retry later.
    #[error("too many commits in flight")]
    Throttled,
    /// The group has members (delete group).
    #[error("group has {members} active members; stop them first (a group is deleted only when Empty)")]
    NonEmpty { members: usize },
    /// The group has neither members nor committed offsets (delete group).
    #[error("group does not exist")]
    NotFound,
    /// A Kafka-protocol first join (v4+) without a member id: rejoin with this one (join).
    #[error("rejoin with the member id {member_id}")]
    MemberIdRequired { member_id: String },
    /// The member's protocol does not fit the group's (join, sync): native and Kafka
    /// members in one group, another Kafka protocol type, or no assignment protocol that
    /// every member supports. The text says which.
    #[error("inconsistent group protocol: {0}")]
    InconsistentProtocol(&'static str),
    /// The shell failed to persist the commit record (commit); carries the storage code.
    #[error("persisting offsets failed: {0}")]
    PersistFailed(ErrorCode),
}

impl GroupError {
    /// The wire code answered for this error.
    pub fn code(&self) -> ErrorCode {
        match self {
            GroupError::Loading => ErrorCode::CoordinatorNotAvailable,
            GroupError::InvalidGroupId => ErrorCode::InvalidGroupId,
            GroupError::InvalidRequest(_) => ErrorCode::InvalidRequest,
            GroupError::UnknownMember => ErrorCode::UnknownMember,
            GroupError::IllegalGeneration => ErrorCode::IllegalGeneration,
            GroupError::RebalanceInProgress => ErrorCode::RebalanceInProgress,
            GroupError::GroupFull => ErrorCode::GroupFull,
            GroupError::TooManyGroups { .. } => ErrorCode::TooManyGroups,
            GroupError::NotStandalone { .. } => ErrorCode::UnknownMember,
            // The member is real but not for this partition: its view of the generation is
            // wrong (Kafka has no finer code).
            GroupError::NotAssigned { .. } => ErrorCode::IllegalGeneration,
            GroupError::MetadataTooLarge { .. } | GroupError::OffsetsBudgetFull { .. } => {
                ErrorCode::OffsetMetadataTooLarge
            }
            GroupError::Expiring => ErrorCode::CoordinatorNotAvailable,
            GroupError::Throttled => ErrorCode::Throttled,
            GroupError::NonEmpty { .. } => ErrorCode::NonEmptyGroup,
            GroupError::NotFound => ErrorCode::GroupIdNotFound,
            GroupError::MemberIdRequired { .. } => ErrorCode::MemberIdRequired,
            GroupError::InconsistentProtocol(_) => ErrorCode::InconsistentGroupProtocol,
            GroupError::PersistFailed(code) => *code,
        }
    }
}
