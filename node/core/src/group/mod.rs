//! Consumer-group coordination, IO-free (DESIGN §7). One [`GroupCoordinator`] per
//! shard holds every group whose id hashes to that shard: membership, generations,
//! server-side partition assignment, session expiry and committed offsets.
//!
//! The core does no IO and reads no clock (quinn-proto style): the shell passes
//! `now_ms` into every `handle_*` call and [`GroupCoordinator::tick`], asks
//! [`GroupCoordinator::poll_timeout`] when to call `tick` next, and drains
//! [`GroupCoordinator::poll_action`] after every call to carry out [`Action`]s:
//! answer parked requests and persist commit records ([`CommitRecord`]) to the
//! internal `__consumer_offsets` partition, then report back with
//! [`GroupCoordinator::handle_persisted`].
//!
//! Group states: `Empty → PreparingRebalance → CompletingRebalance → Stable`. A
//! `Dead` group is one the coordinator dropped (empty, nothing committed, nothing in
//! flight): it no longer appears in [`GroupCoordinator::list_groups`].
//!
//! Two modes share all of this (see `state.rs`): native groups get server-side
//! assignment; Kafka-mode groups relay the leader's opaque assignments
//! ([`GroupCoordinator::handle_kafka_sync`]).
//!
//! Invariants (checked by `tests/group_sim.rs` over hundreds of seeds):
//! - within one generation every partition of the subscribed topics is assigned to
//!   exactly one member, and none is left out while the group has members;
//! - Kafka mode: a member's sync of generation G is answered with exactly what G's
//!   leader sent for it, never before the leader synced;
//! - generation ids only grow; a commit carrying an older generation never lands;
//! - persisted committed offsets only move forward for well-behaved clients (a
//!   commit of a lower offset is an explicit reset and is allowed);
//! - a member that stops sending requests is removed once its session timeout has
//!   passed, at the next `tick` (a member parked in a join is bounded by the
//!   rebalance timeout instead).

mod assign;
mod compact;
mod coordinator;
mod error;
mod offsets;
mod record;
mod state;
mod types;

pub use assign::assign;
pub use coordinator::{CoordinatorConfig, GroupCoordinator, GroupSummary, GroupView, MemberView};
pub use error::GroupError;
pub use record::{
    CommitRecord, OffsetsRecord, RecordError, SnapshotMarker, COMMIT_RECORD_VERSION, SNAPSHOT_MARKER_VERSION,
    TOMBSTONE_RECORD_VERSION,
};
pub use state::GroupState;
pub use types::{
    Action, CommitInput, JoinInput, JoinResult, KafkaJoin, KafkaProtocol, KafkaSyncInput, Outcome, Reply, RequestId,
};

/// Groups one coordinator (shard) holds at most; a join or standalone commit that
/// would create one more is refused with [`GroupError::TooManyGroups`].
pub const GROUPS_MAX: usize = 4096;
/// Members one group holds at most ([`GroupError::GroupFull`] beyond).
pub const MEMBERS_PER_GROUP_MAX: usize = 1000;
/// Offsets one commit request may carry.
pub const OFFSETS_PER_COMMIT_MAX: usize = 10_000;
/// Topics one member may subscribe to.
pub const TOPICS_PER_MEMBER_MAX: usize = 256;
/// Commit persists in flight (issued, not yet reported back) per coordinator.
pub const PERSISTS_IN_FLIGHT_MAX: usize = 1024;
/// Longest group id, in bytes.
pub const GROUP_ID_LEN_MAX: usize = 255;
/// Longest client id, in bytes.
pub const CLIENT_ID_LEN_MAX: usize = 255;
/// Longest topic name, in bytes (as the node's topic-name rule).
pub const TOPIC_NAME_LEN_MAX: usize = 249;
/// Longest commit metadata string, in bytes: the record format's bound and the
/// default of `offset_metadata_bytes_max` (Kafka's `offset.metadata.max.bytes`).
pub const METADATA_LEN_MAX: usize = 4096;
/// Assignment protocols one Kafka member may offer (clients send two or three).
pub const PROTOCOLS_PER_MEMBER_MAX: usize = 32;
/// Longest Kafka protocol type or protocol name, in bytes.
pub const PROTOCOL_NAME_LEN_MAX: usize = 255;
/// Metadata one Kafka member may send over all its protocols, in bytes (a consumer's
/// subscription: its topic names and user data).
pub const MEMBER_METADATA_BYTES_MAX: usize = 64 * 1024;
/// Longest opaque assignment the leader may hand one member, in bytes.
pub const ASSIGNMENT_BYTES_MAX: usize = 64 * 1024;
/// Default bound on the committed-offset state one coordinator holds, in bytes.
pub const OFFSETS_BYTES_MAX: u64 = 64 * 1024 * 1024;
/// Default of `CoordinatorConfig::compact_records_min`: commit records an offsets
/// partition takes after its last snapshot before the next one is considered.
pub const COMPACT_RECORDS_MIN: u64 = 10_000;
/// Default time an Empty group keeps its offsets (Kafka's `offsets.retention.minutes`).
pub const OFFSETS_RETENTION_MS: u64 = 7 * 24 * 3600 * 1000;

// Encoded commit records carry these lengths in u16 fields.
const _: () = assert!(GROUP_ID_LEN_MAX <= u16::MAX as usize);
const _: () = assert!(TOPIC_NAME_LEN_MAX <= u16::MAX as usize);
const _: () = assert!(METADATA_LEN_MAX <= u16::MAX as usize);
// One commit's persist must fit in the in-flight bound's accounting unit (a commit is one persist).
const _: () = assert!(PERSISTS_IN_FLIGHT_MAX >= 1);

/// Consumer lag of one partition: how many records of `[log_start, log_end)` the group
/// has not committed past. With nothing committed (or a committed offset retention has
/// deleted) the whole retained log counts; a committed offset past the log end (after a
/// truncation) counts as zero lag.
pub fn lag(log_start_offset: u64, log_end_offset: u64, committed: Option<u64>) -> u64 {
    let from = committed.unwrap_or(log_start_offset).max(log_start_offset);
    log_end_offset.saturating_sub(from)
}

#[cfg(test)]
mod tests {
    use super::lag;

    #[test]
    fn lag_cases() {
        // (log_start, log_end, committed, expect)
        let cases = [
            (0, 100, Some(40), 60),
            (0, 100, Some(100), 0),
            (0, 100, None, 100),
            (50, 100, None, 50),
            (50, 100, Some(10), 50),
            (0, 100, Some(150), 0),
            (0, 0, None, 0),
        ];
        for (start, end, committed, expect) in cases {
            assert_eq!(lag(start, end, committed), expect, "lag({start}, {end}, {committed:?})");
        }
    }
}
