//! [`GroupCoordinator`]: every consumer group of one shard, driven by the shell.
//!
//! Lifecycle: created in the loading phase (every request answers
//! `CoordinatorNotAvailable`), fed the `__consumer_offsets` records in log order with
//! [`GroupCoordinator::load_offset_record`], then opened with
//! [`GroupCoordinator::finish_loading`]. Single-threaded: the owning shard calls it.
//!
//! Request semantics (Kafka-like, server-side assignment):
//! - Join with an empty member id creates a member (`<client_id>-<instance:x>-<n>`:
//!   deterministic, never reused within one coordinator instance, and distinct across
//!   restarts as long as the shell passes a different `instance` each start) and parks
//!   the join until the rebalance completes. A known member rejoining a
//!   CompletingRebalance/Stable group with an unchanged subscription is answered at once
//!   with the current generation; with a changed subscription it triggers a rebalance.
//! - A rebalance completes when every member has a parked join, or at the rebalance
//!   deadline (`start + max(rebalance_timeout_ms)` of the members) after dropping the
//!   members that did not rejoin. Completion bumps the generation (also when no
//!   members remain; the group is then Empty) and computes the assignment.
//! - Heartbeats answer `RebalanceInProgress` in PreparingRebalance. Sync answers the
//!   member's assignment of the current generation; the group is Stable once every
//!   member synced.
//! - Commits from a member of the current generation, for partitions assigned to it in
//!   that generation, are accepted in Stable and in
//!   PreparingRebalance (Kafka's rule: the old generation still owns its partitions until
//!   the new one forms, which lets a consumer commit in its revoke callback before it
//!   rejoins), refused with `RebalanceInProgress` in CompletingRebalance (the member does
//!   not know its new assignment yet). A stale generation, or a partition the member
//!   does not own, gets `IllegalGeneration`; an id that is not a member `UnknownMember`.
//!   A *standalone* commit (empty member id and generation 0) is accepted only while the
//!   group has no members (it creates the group if needed): consumers that assign
//!   partitions themselves and use the group only to store offsets. So nobody outside a
//!   group's current generation can move the offsets of a group that has members.
//! - Bounds: `groups_max` groups (a new one is refused `TooManyGroups`), metadata of at
//!   most `offset_metadata_bytes_max` per offset, and at most `offsets_bytes_max` bytes of
//!   committed-offset state over all groups (`OffsetMetadataTooLarge` beyond either).
//! - Retention: an Empty group's offsets expire `offsets_retention_ms` after its last
//!   commit or the departure of its last member (whichever is later): the coordinator
//!   persists a tombstone per partition ([`CommitRecord::tombstone`]) and forgets the
//!   offsets once those are durable, so a replay does not bring them back. Commits to the
//!   group wait (`Expiring`, retriable) while the tombstones are in flight.
//! - Every request from a known member (join, sync, heartbeat, commit) carrying the
//!   group's current generation renews its session; one with a stale generation does not.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use strand_wire::msg::{Assignor, CommittedOffset, TopicPartition};
use strand_wire::ErrorCode;

use super::compact::{Compaction, Phase};
use super::error::GroupError;
use super::offsets::{entry_bytes, Committed, OffsetTable};
use super::record::CommitRecord;
use super::state::{Group, GroupState, Member};
use super::types::{Action, CommitInput, JoinInput, JoinResult, KafkaJoin, KafkaSyncInput, Outcome, Reply, RequestId};
use super::{
    ASSIGNMENT_BYTES_MAX, CLIENT_ID_LEN_MAX, COMPACT_RECORDS_MIN, GROUPS_MAX, GROUP_ID_LEN_MAX, MEMBERS_PER_GROUP_MAX,
    MEMBER_METADATA_BYTES_MAX, METADATA_LEN_MAX, OFFSETS_BYTES_MAX, OFFSETS_PER_COMMIT_MAX, OFFSETS_RETENTION_MS,
    PERSISTS_IN_FLIGHT_MAX, PROTOCOLS_PER_MEMBER_MAX, PROTOCOL_NAME_LEN_MAX, TOPICS_PER_MEMBER_MAX, TOPIC_NAME_LEN_MAX,
};
use crate::placement::group_partition;

/// Limits of a coordinator; defaults are the named constants of [`super`].
#[derive(Debug, Clone, PartialEq)]
pub struct CoordinatorConfig {
    pub session_timeout_ms_min: u32,
    pub session_timeout_ms_max: u32,
    pub rebalance_timeout_ms_max: u32,
    pub groups_max: usize,
    pub members_per_group_max: usize,
    pub persists_in_flight_max: usize,
    /// Longest commit metadata accepted, in bytes (at most [`METADATA_LEN_MAX`]).
    pub offset_metadata_bytes_max: usize,
    /// Committed-offset state all groups may hold, in bytes (see `offsets.rs`).
    pub offsets_bytes_max: u64,
    /// How long an Empty group keeps its offsets.
    pub offsets_retention_ms: u64,
    /// Partition count of the offsets topic (group placement: `group_partition`).
    pub offsets_partitions: u32,
    /// Records an offsets partition takes after its last snapshot before the next
    /// snapshot is considered (see `compact.rs`).
    pub compact_records_min: u64,
}

impl Default for CoordinatorConfig {
    fn default() -> Self {
        CoordinatorConfig {
            session_timeout_ms_min: 1_000,
            session_timeout_ms_max: 300_000,
            rebalance_timeout_ms_max: 300_000,
            groups_max: GROUPS_MAX,
            members_per_group_max: MEMBERS_PER_GROUP_MAX,
            persists_in_flight_max: PERSISTS_IN_FLIGHT_MAX,
            offset_metadata_bytes_max: METADATA_LEN_MAX,
            offsets_bytes_max: OFFSETS_BYTES_MAX,
            offsets_retention_ms: OFFSETS_RETENTION_MS,
            offsets_partitions: 1,
            compact_records_min: COMPACT_RECORDS_MIN,
        }
    }
}

/// A group as `list_groups` shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct GroupSummary {
    pub group_id: String,
    pub state: GroupState,
    pub member_count: u32,
}

/// A member as `describe_group` shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct MemberView {
    pub member_id: String,
    pub client_id: String,
    pub topics: Vec<String>,
    /// Its partitions in the current generation (empty if it has not joined it yet).
    /// Kafka mode: always empty (the assignment is the client's, see `kafka_assignment`).
    pub assignment: Vec<TopicPartition>,
    /// Kafka mode: its metadata for the group's protocol (empty otherwise).
    pub protocol_metadata: Vec<u8>,
    /// Kafka mode: the leader's opaque assignment for it in the current generation
    /// (empty before the leader synced, and for native groups).
    pub kafka_assignment: Vec<u8>,
}

/// A group as `describe_group` shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct GroupView {
    pub group_id: String,
    pub state: GroupState,
    pub generation: u32,
    pub assignor: Assignor,
    pub leader_member_id: Option<String>,
    /// `None` for a native group; Kafka's protocol type ("consumer") for a Kafka one.
    pub protocol_type: Option<String>,
    /// Kafka mode: the protocol chosen for the current generation.
    pub protocol: Option<String>,
    pub members: Vec<MemberView>,
    /// Durable committed offsets (persisted), in partition order.
    pub offsets: Vec<CommittedOffset>,
}

#[derive(Debug)]
struct PendingPersist {
    /// The commit request to answer; `None` for the tombstones of an expiry.
    request_id: Option<RequestId>,
    /// Tombstones of a DeleteGroup: answer `request_id` with [`Reply::Delete`].
    deletion: bool,
    group_id: String,
    entries: Vec<(TopicPartition, u64)>,
    /// When the persist was issued (a failed expiry is retried a retention later).
    issued_ms: u64,
}

/// Every group of one shard. See the module doc for the request semantics.
#[derive(Debug)]
pub struct GroupCoordinator {
    config: CoordinatorConfig,
    instance: u64,
    loading: bool,
    groups: BTreeMap<String, Group>,
    partition_counts: BTreeMap<String, u32>,
    actions: VecDeque<Action>,
    persists: BTreeMap<u64, PendingPersist>,
    persist_id_next: u64,
    commit_seq_next: u64,
    /// Counter behind new member ids: never reused within this instance.
    member_seq: u64,
    /// Highest generation of any group dropped so far: a group re-created under the same
    /// id starts above it, so generations never repeat within this instance.
    dropped_generation_max: u32,
    /// Sum of every group's `OffsetTable::bytes`.
    offsets_bytes: u64,
    /// Snapshots of the offsets partitions (`compact.rs`).
    compaction: Compaction,
}

impl GroupCoordinator {
    /// A coordinator in its loading phase. `instance` must differ between starts of the
    /// same shard (e.g. the start time in ms) so member ids are never reused.
    pub fn new(config: CoordinatorConfig, instance: u64) -> GroupCoordinator {
        assert!(config.session_timeout_ms_min <= config.session_timeout_ms_max);
        assert!(config.members_per_group_max >= 1 && config.groups_max >= 1 && config.persists_in_flight_max >= 1);
        assert!(config.offset_metadata_bytes_max <= METADATA_LEN_MAX, "the record format bounds metadata");
        assert!(config.offsets_partitions >= 1, "the offsets topic has partitions");
        let compaction = Compaction::new(config.compact_records_min);
        GroupCoordinator {
            config,
            instance,
            loading: true,
            groups: BTreeMap::new(),
            partition_counts: BTreeMap::new(),
            actions: VecDeque::new(),
            persists: BTreeMap::new(),
            persist_id_next: 1,
            commit_seq_next: 1,
            member_seq: 0,
            dropped_generation_max: 0,
            offsets_bytes: 0,
            compaction,
        }
    }

    /// Replays one record of `__consumer_offsets`; call in log order (later records win).
    /// A tombstone drops what the records before it committed for its partition.
    pub fn load_offset_record(&mut self, record: CommitRecord) {
        self.compaction.count(self.partition_of(&record.group_id), 1);
        let seq = self.next_commit_seq();
        let generation = self.dropped_generation_max;
        let (group_id, commit_ms) = (record.group_id.clone(), record.commit_ms);
        let group = self.groups.entry(group_id.clone()).or_insert_with(|| Group::new(group_id, generation, commit_ms));
        group.last_active_ms = group.last_active_ms.max(commit_ms);
        let tp = TopicPartition { topic: record.topic, partition: record.partition };
        let before = group.offsets.bytes();
        if record.tombstone {
            group.offsets.remove(&tp);
        } else {
            let committed = Committed { offset: record.offset, metadata: record.metadata, commit_ms, seq };
            group.offsets.load(tp, committed);
        }
        let after = group.offsets.bytes();
        self.offsets_bytes = self.offsets_bytes + after - before;
    }

    /// Replays a snapshot marker of offsets partition `partition` (see `compact.rs`):
    /// records are counted towards the next snapshot from here.
    pub fn load_snapshot_marker(&mut self, partition: u32) {
        self.compaction.snapshotted(partition);
    }

    /// Ends the loading phase: requests are served from now on. Groups whose offsets all
    /// expired (tombstones replayed) are dropped.
    pub fn finish_loading(&mut self) {
        self.loading = false;
        let ids: Vec<String> = self.groups.keys().cloned().collect();
        for id in ids {
            self.settle(&id);
        }
        self.maybe_compact();
    }

    /// Bytes of committed-offset state all groups hold (bounded by `offsets_bytes_max`
    /// for what commits add; a replay may load more, then commits wait for expiry).
    pub fn offsets_bytes(&self) -> u64 {
        self.offsets_bytes
    }

    /// Whether the coordinator is still loading.
    pub fn is_loading(&self) -> bool {
        self.loading
    }

    /// Sets a topic's partition count (0 = the topic is gone). Groups subscribed to it
    /// rebalance when the count changes.
    pub fn handle_topic_partitions_changed(&mut self, now_ms: u64, topic: &str, partition_count: u32) {
        let previous = self.partition_counts.get(topic).copied().unwrap_or(0);
        if previous == partition_count {
            return;
        }
        if partition_count == 0 {
            self.partition_counts.remove(topic);
        } else {
            self.partition_counts.insert(topic.to_string(), partition_count);
        }
        for group in self.groups.values_mut() {
            let settled = matches!(group.state, GroupState::Stable | GroupState::CompletingRebalance);
            if settled && group.subscribes(topic) {
                group.begin_rebalance(now_ms, &mut self.actions);
            }
        }
    }

    /// Joins (or rejoins) a group; see the module doc.
    pub fn handle_join(
        &mut self,
        now_ms: u64,
        request_id: RequestId,
        input: JoinInput,
    ) -> Result<Outcome<JoinResult>, GroupError> {
        self.validate_join(&input)?;
        let pending =
            self.groups.get_mut(&input.group_id).and_then(|g| g.pending_members.remove(&input.member_id)).is_some();
        if input.member_id.is_empty() || pending {
            self.join_new(now_ms, request_id, input)
        } else {
            self.join_known(now_ms, request_id, input)
        }
    }

    fn validate_join(&self, input: &JoinInput) -> Result<(), GroupError> {
        self.check_open(&input.group_id)?;
        let config = &self.config;
        if input.client_id.len() > CLIENT_ID_LEN_MAX {
            return Err(GroupError::InvalidRequest("client id too long"));
        }
        if !(config.session_timeout_ms_min..=config.session_timeout_ms_max).contains(&input.session_timeout_ms) {
            return Err(GroupError::InvalidRequest("session timeout out of the allowed range"));
        }
        if input.rebalance_timeout_ms > config.rebalance_timeout_ms_max {
            return Err(GroupError::InvalidRequest("rebalance timeout too long"));
        }
        if input.topics.len() > TOPICS_PER_MEMBER_MAX {
            return Err(GroupError::InvalidRequest("too many topics"));
        }
        if input.topics.iter().any(|t| t.is_empty() || t.len() > TOPIC_NAME_LEN_MAX) {
            return Err(GroupError::InvalidRequest("invalid topic name"));
        }
        if let Some(kafka) = &input.kafka {
            validate_kafka_join(kafka)?;
        }
        let Some(group) = self.groups.get(&input.group_id) else { return Ok(()) };
        let others = group.members.keys().any(|id| *id != input.member_id);
        if !others {
            return Ok(());
        }
        match (&group.protocol_type, &input.kafka) {
            (None, None) if group.assignor != input.assignor => {
                Err(GroupError::InvalidRequest("assignor differs from the group's"))
            }
            (None, None) => Ok(()),
            (Some(_), None) => Err(GroupError::InconsistentProtocol("the group's members speak the Kafka protocol")),
            (None, Some(_)) => Err(GroupError::InconsistentProtocol("the group's members speak Strand's protocol")),
            (Some(group_type), Some(kafka)) if *group_type != kafka.protocol_type => {
                Err(GroupError::InconsistentProtocol("protocol type differs from the group's"))
            }
            (Some(_), Some(kafka)) if group.common_protocols(&kafka.protocols, &input.member_id).is_empty() => {
                Err(GroupError::InconsistentProtocol("no assignment protocol in common with every member"))
            }
            (Some(_), Some(_)) => Ok(()),
        }
    }

    fn join_new(
        &mut self,
        now_ms: u64,
        request_id: RequestId,
        input: JoinInput,
    ) -> Result<Outcome<JoinResult>, GroupError> {
        let members_max = self.config.members_per_group_max;
        let member_id = match input.member_id.is_empty() {
            true => self.new_member_id(&input.client_id),
            false => input.member_id.clone(), // handed out by MemberIdRequired
        };
        self.group_or_create(&input.group_id, now_ms)?;
        let group = self.groups.get_mut(&input.group_id).expect("created above");
        if group.members.len() + group.pending_members.len() >= members_max {
            return Err(GroupError::GroupFull);
        }
        let kafka = input.kafka.unwrap_or_else(|| KafkaJoin {
            protocol_type: String::new(),
            protocols: Vec::new(),
            member_id_required: false,
        });
        if input.member_id.is_empty() && kafka.member_id_required {
            let lapse_ms = now_ms.saturating_add(u64::from(input.session_timeout_ms));
            group.pending_members.insert(member_id.clone(), lapse_ms);
            return Err(GroupError::MemberIdRequired { member_id });
        }
        if group.members.is_empty() {
            // The first member fixes the group's mode (module doc of `state.rs`).
            group.assignor = input.assignor;
            group.protocol_type = (!kafka.protocol_type.is_empty()).then_some(kafka.protocol_type);
            group.leader = None;
        }
        let member = Member {
            client_id: input.client_id,
            session_timeout_ms: input.session_timeout_ms,
            rebalance_timeout_ms: input.rebalance_timeout_ms,
            topics: input.topics.into_iter().collect(),
            last_seen_ms: now_ms,
            parked_join: Some(request_id),
            generation: 0,
            synced: false,
            protocols: kafka.protocols,
            parked_sync: None,
        };
        assert_eq!(group.is_kafka(), !member.protocols.is_empty(), "validate_join kept the group's mode");
        let previous = group.members.insert(member_id, member);
        assert!(previous.is_none(), "member ids are never reused");
        group.begin_rebalance(now_ms, &mut self.actions);
        group.try_complete(now_ms, &self.partition_counts, &mut self.actions);
        Ok(Outcome::Parked)
    }

    fn join_known(
        &mut self,
        now_ms: u64,
        request_id: RequestId,
        input: JoinInput,
    ) -> Result<Outcome<JoinResult>, GroupError> {
        let group = self.groups.get_mut(&input.group_id).ok_or(GroupError::UnknownMember)?;
        let member = group.members.get_mut(&input.member_id).ok_or(GroupError::UnknownMember)?;
        member.last_seen_ms = now_ms;
        member.session_timeout_ms = input.session_timeout_ms;
        member.rebalance_timeout_ms = input.rebalance_timeout_ms;
        let topics: BTreeSet<String> = input.topics.into_iter().collect();
        let protocols = input.kafka.map(|k| k.protocols).unwrap_or_default();
        let mut changed = member.topics != topics || member.protocols != protocols;
        member.topics = topics;
        member.protocols = protocols;
        assert_ne!(group.state, GroupState::Empty, "an Empty group has no members");
        // Kafka: a leader rejoining a Stable group saw its metadata change; rebalance.
        let leader = group.leader.as_deref() == Some(input.member_id.as_str());
        changed |= group.is_kafka() && leader && group.state == GroupState::Stable;
        if group.state != GroupState::PreparingRebalance && !changed {
            return Ok(Outcome::Done(group.join_result(&input.member_id)));
        }
        group.begin_rebalance(now_ms, &mut self.actions);
        let member = group.members.get_mut(&input.member_id).expect("looked up above");
        if let Some(superseded) = member.parked_join.replace(request_id) {
            let reply = Reply::Join(Err(GroupError::RebalanceInProgress));
            self.actions.push_back(Action::Respond { request_id: superseded, reply });
        }
        group.try_complete(now_ms, &self.partition_counts, &mut self.actions);
        Ok(Outcome::Parked)
    }

    /// Returns the member's assignment for `generation`.
    pub fn handle_sync(
        &mut self,
        now_ms: u64,
        group_id: &str,
        generation: u32,
        member_id: &str,
    ) -> Result<Vec<TopicPartition>, GroupError> {
        let group = self.member_group(now_ms, group_id, member_id, generation)?;
        if group.is_kafka() {
            return Err(GroupError::InconsistentProtocol("a Kafka-protocol group syncs through the Kafka API"));
        }
        if group.state == GroupState::PreparingRebalance {
            return Err(GroupError::RebalanceInProgress);
        }
        if generation != group.generation || group.members[member_id].generation != group.generation {
            return Err(GroupError::IllegalGeneration);
        }
        group.members.get_mut(member_id).expect("checked by member_group").synced = true;
        if group.state == GroupState::CompletingRebalance && group.members.values().all(|m| m.synced) {
            group.state = GroupState::Stable;
        }
        Ok(group.assignment.get(member_id).cloned().unwrap_or_default())
    }

    /// Kafka mode's sync: the leader's carries every member's opaque assignment, which is
    /// relayed to the members' syncs of the same generation; a follower's sync parks until
    /// then (answered `RebalanceInProgress` if the group rebalances first, `UnknownMember`
    /// if the member is removed). In Stable the member's assignment is answered at once.
    pub fn handle_kafka_sync(
        &mut self,
        now_ms: u64,
        request_id: RequestId,
        input: KafkaSyncInput,
    ) -> Result<Outcome<Vec<u8>>, GroupError> {
        let members_max = self.config.members_per_group_max;
        if input.assignments.len() > members_max {
            return Err(GroupError::InvalidRequest("more assignments than a group has members"));
        }
        if input.assignments.iter().any(|(_, a)| a.len() > ASSIGNMENT_BYTES_MAX) {
            return Err(GroupError::InvalidRequest("assignment too large"));
        }
        let KafkaSyncInput { group_id, generation, member_id, assignments } = input;
        let loading = self.loading;
        let group = Self::lookup_member(&mut self.groups, loading, now_ms, &group_id, &member_id, Some(generation))?;
        if !group.is_kafka() {
            return Err(GroupError::InconsistentProtocol("a Strand-protocol group syncs through the native API"));
        }
        if group.state == GroupState::PreparingRebalance {
            return Err(GroupError::RebalanceInProgress);
        }
        if generation != group.generation || group.members[&member_id].generation != group.generation {
            return Err(GroupError::IllegalGeneration);
        }
        if group.state == GroupState::Stable {
            return Ok(Outcome::Done(group.kafka_assignment.get(&member_id).cloned().unwrap_or_default()));
        }
        assert_eq!(group.state, GroupState::CompletingRebalance);
        let leader = group.leader.as_deref() == Some(member_id.as_str());
        let member = group.members.get_mut(&member_id).expect("checked by member_group");
        member.synced = true;
        if let Some(superseded) = member.parked_sync.replace(request_id) {
            let reply = Reply::Sync(Err(GroupError::RebalanceInProgress));
            self.actions.push_back(Action::Respond { request_id: superseded, reply });
        }
        if leader {
            group.relay_assignments(now_ms, assignments, &mut self.actions);
        }
        Ok(Outcome::Parked)
    }

    /// Renews the member's session; tells it to rejoin while the group rebalances.
    pub fn handle_heartbeat(
        &mut self,
        now_ms: u64,
        group_id: &str,
        generation: u32,
        member_id: &str,
    ) -> Result<(), GroupError> {
        let group = self.member_group(now_ms, group_id, member_id, generation)?;
        if group.state == GroupState::PreparingRebalance {
            return Err(GroupError::RebalanceInProgress);
        }
        if generation != group.generation {
            return Err(GroupError::IllegalGeneration);
        }
        Ok(())
    }

    /// Removes the member and rebalances the rest.
    pub fn handle_leave(&mut self, now_ms: u64, group_id: &str, member_id: &str) -> Result<(), GroupError> {
        let counts = &self.partition_counts;
        let group = Self::lookup_member(&mut self.groups, self.loading, now_ms, group_id, member_id, None)?;
        group.remove_member(member_id, "left the group", &mut self.actions);
        group.after_removal(now_ms, counts, &mut self.actions);
        self.settle(group_id);
        Ok(())
    }

    fn member_group(
        &mut self,
        now_ms: u64,
        group_id: &str,
        member_id: &str,
        generation: u32,
    ) -> Result<&mut Group, GroupError> {
        Self::lookup_member(&mut self.groups, self.loading, now_ms, group_id, member_id, Some(generation))
    }

    /// Finds the group of a known member and renews that member's session, if the
    /// request carries the group's current generation (`None`: no generation to check).
    /// A request with a stale generation renews nothing: whoever learned a member id
    /// cannot keep a dead member in the group with it.
    fn lookup_member<'a>(
        groups: &'a mut BTreeMap<String, Group>,
        loading: bool,
        now_ms: u64,
        group_id: &str,
        member_id: &str,
        generation: Option<u32>,
    ) -> Result<&'a mut Group, GroupError> {
        if loading {
            return Err(GroupError::Loading);
        }
        if group_id.is_empty() || group_id.len() > GROUP_ID_LEN_MAX {
            return Err(GroupError::InvalidGroupId);
        }
        let group = groups.get_mut(group_id).ok_or(GroupError::UnknownMember)?;
        let current = generation.is_none_or(|g| g == group.generation);
        let member = group.members.get_mut(member_id).ok_or(GroupError::UnknownMember)?;
        if current {
            member.last_seen_ms = now_ms;
        }
        Ok(group)
    }

    /// Accepts a commit for persisting; the answer comes with [`Action::Respond`] once
    /// the shell reports the persist (an empty commit is answered at once).
    pub fn handle_commit(
        &mut self,
        now_ms: u64,
        request_id: RequestId,
        input: CommitInput,
    ) -> Result<Outcome<()>, GroupError> {
        self.check_open(&input.group_id)?;
        validate_offsets(&input.offsets, self.config.offset_metadata_bytes_max)?;
        self.authorize_commit(now_ms, &input)?;
        let adding: u64 = input.offsets.iter().map(|o| entry_bytes(&o.topic, &o.metadata)).sum();
        if self.offsets_bytes.saturating_add(adding) > self.config.offsets_bytes_max {
            self.settle(&input.group_id);
            return Err(GroupError::OffsetsBudgetFull {
                held: self.offsets_bytes,
                adding,
                max: self.config.offsets_bytes_max,
            });
        }
        if input.offsets.is_empty() {
            self.settle(&input.group_id);
            return Ok(Outcome::Done(()));
        }
        if self.persists.len() >= self.config.persists_in_flight_max {
            self.settle(&input.group_id);
            return Err(GroupError::Throttled);
        }
        self.stage_commit(now_ms, request_id, input);
        Ok(Outcome::Parked)
    }

    /// Whether the sender may move these offsets (module doc: only the current
    /// generation's owner of each partition, or anyone for a group without members).
    fn authorize_commit(&mut self, now_ms: u64, input: &CommitInput) -> Result<(), GroupError> {
        if input.member_id.is_empty() && input.generation == 0 {
            let group = self.group_or_create(&input.group_id, now_ms)?;
            if !group.members.is_empty() {
                return Err(GroupError::NotStandalone { members: group.members.len() });
            }
        } else {
            let group = self.member_group(now_ms, &input.group_id, &input.member_id, input.generation)?;
            if group.state == GroupState::CompletingRebalance {
                return Err(GroupError::RebalanceInProgress);
            }
            if input.generation != group.generation || group.members[&input.member_id].generation != group.generation {
                return Err(GroupError::IllegalGeneration);
            }
            // Kafka mode: the leader assigned partitions on the client side; the
            // coordinator has no ownership to check, only the generation.
            if group.is_kafka() {
                return match group.expiring {
                    true => Err(GroupError::Expiring),
                    false => Ok(()),
                };
            }
            let owned = group.assignment.get(&input.member_id).map(Vec::as_slice).unwrap_or_default();
            let stray = input
                .offsets
                .iter()
                .find(|o| !owned.iter().any(|tp| tp.topic == o.topic && tp.partition == o.partition));
            if let Some(o) = stray {
                return Err(GroupError::NotAssigned {
                    topic: o.topic.clone(),
                    partition: o.partition,
                    generation: group.generation,
                });
            }
        }
        if self.groups.get(&input.group_id).is_some_and(|g| g.expiring) {
            return Err(GroupError::Expiring);
        }
        Ok(())
    }

    fn stage_commit(&mut self, now_ms: u64, request_id: RequestId, input: CommitInput) {
        let persist_id = self.persist_id_next;
        self.persist_id_next += 1;
        let mut entries = Vec::with_capacity(input.offsets.len());
        let mut records = Vec::with_capacity(input.offsets.len());
        for committed in input.offsets {
            let seq = self.next_commit_seq();
            let tp = TopicPartition { topic: committed.topic.clone(), partition: committed.partition };
            records.push(CommitRecord {
                group_id: input.group_id.clone(),
                topic: committed.topic,
                partition: committed.partition,
                offset: committed.offset,
                commit_ms: now_ms,
                metadata: committed.metadata.clone(),
                tombstone: false,
            });
            self.offsets_bytes += entry_bytes(&tp.topic, &committed.metadata);
            let group = self.groups.get_mut(&input.group_id).expect("validated by handle_commit");
            let staged = Committed { offset: committed.offset, metadata: committed.metadata, commit_ms: now_ms, seq };
            group.offsets.stage(tp.clone(), staged);
            entries.push((tp, seq));
        }
        let group = self.groups.get_mut(&input.group_id).expect("validated by handle_commit");
        group.persists_in_flight += 1;
        group.last_active_ms = group.last_active_ms.max(now_ms);
        let pending = PendingPersist {
            request_id: Some(request_id),
            deletion: false,
            group_id: input.group_id,
            entries,
            issued_ms: now_ms,
        };
        self.persists.insert(persist_id, pending);
        self.issue_persist(persist_id, records);
    }

    /// The shell finished (or failed) a [`Action::PersistOffsets`]. Returns false for an
    /// unknown `persist_id` (a shell bug worth logging; nothing changes).
    pub fn handle_persisted(&mut self, persist_id: u64, result: Result<(), ErrorCode>) -> bool {
        if let Phase::InFlight { persist_id: snapshot, partition } = self.compaction.phase {
            if snapshot == persist_id {
                self.snapshot_persisted(partition, result.is_ok());
                return true;
            }
        }
        let Some(pending) = self.persists.remove(&persist_id) else { return false };
        let group = self.groups.get_mut(&pending.group_id).expect("a group with persists in flight is kept");
        let before = group.offsets.bytes();
        match pending.request_id {
            Some(request_id) if pending.deletion => {
                assert!(group.expiring, "a deletion's tombstones mark the group expiring");
                group.expiring = false;
                if result.is_ok() {
                    pending.entries.iter().for_each(|(tp, _)| group.offsets.remove(tp));
                }
                let reply = Reply::Delete(result.map_err(GroupError::PersistFailed));
                self.actions.push_back(Action::Respond { request_id, reply });
            }
            Some(request_id) => {
                for (tp, seq) in &pending.entries {
                    group.offsets.finish(tp, *seq, result.is_ok());
                }
                let reply = Reply::Commit(result.map_err(GroupError::PersistFailed));
                self.actions.push_back(Action::Respond { request_id, reply });
            }
            None => {
                assert!(group.expiring, "a tombstone persist belongs to an expiring group");
                group.expiring = false;
                match result {
                    // No commit was staged meanwhile (`Expiring` refused them).
                    Ok(()) => pending.entries.iter().for_each(|(tp, _)| group.offsets.remove(tp)),
                    // Try again a retention later rather than spin on a failing disk.
                    Err(_) => group.last_active_ms = group.last_active_ms.max(pending.issued_ms),
                }
            }
        }
        group.persists_in_flight -= 1;
        let after = group.offsets.bytes();
        self.offsets_bytes = self.offsets_bytes + after - before;
        self.settle(&pending.group_id);
        self.maybe_compact();
        true
    }

    /// Hands a persist to the shell, or holds it while a snapshot drains or is in flight.
    fn issue_persist(&mut self, persist_id: u64, records: Vec<CommitRecord>) {
        assert!(self.persists.contains_key(&persist_id), "a persist is registered before it is issued");
        let action = Action::PersistOffsets { persist_id, records };
        match self.compaction.holding() {
            true => self.compaction.hold(action),
            false => self.release_persist(action),
        }
    }

    fn release_persist(&mut self, action: Action) {
        if let Action::PersistOffsets { records, .. } = &action {
            if let Some(first) = records.first() {
                self.compaction.count(self.partition_of(&first.group_id), records.len() as u64);
            }
        }
        self.actions.push_back(action);
    }

    /// The offsets partition of `group_id`.
    fn partition_of(&self, group_id: &str) -> u32 {
        group_partition(group_id, self.config.offsets_partitions)
    }

    /// Persists issued to the shell and not yet reported (held ones excluded).
    fn persists_issued(&self) -> usize {
        let held = self.compaction.held_len();
        assert!(held <= self.persists.len(), "held persists are registered persists");
        self.persists.len() - held
    }

    /// Starts, or moves on, a snapshot of a due offsets partition (`compact.rs`).
    fn maybe_compact(&mut self) {
        if self.loading {
            return;
        }
        if self.compaction.phase == Phase::Idle {
            for partition in self.compaction.candidates() {
                let live = self.live_offsets(partition);
                let since = self.compaction.since(partition);
                if since >= live.saturating_mul(2) {
                    self.compaction.phase = Phase::Draining { partition };
                    break;
                }
                self.compaction.defer(partition, live.saturating_mul(2));
            }
        }
        let Phase::Draining { partition } = self.compaction.phase else { return };
        if self.persists_issued() > 0 {
            return;
        }
        let records = self.snapshot_records(partition);
        let persist_id = self.persist_id_next;
        self.persist_id_next += 1;
        self.compaction.phase = Phase::InFlight { persist_id, partition };
        self.actions.push_back(Action::PersistSnapshot { persist_id, partition, records });
    }

    /// Durable offsets held for the groups of offsets partition `partition`.
    fn live_offsets(&self, partition: u32) -> u64 {
        let groups = self.groups.iter().filter(|(id, _)| self.partition_of(id) == partition);
        groups.map(|(_, g)| g.offsets.durable_all().count() as u64).sum()
    }

    /// One commit record per durable offset of the groups of `partition`, as committed.
    fn snapshot_records(&self, partition: u32) -> Vec<CommitRecord> {
        let mut records = Vec::new();
        for (id, group) in self.groups.iter().filter(|(id, _)| self.partition_of(id) == partition) {
            for (tp, c) in group.offsets.durable_all() {
                records.push(CommitRecord {
                    group_id: id.clone(),
                    topic: tp.topic.clone(),
                    partition: tp.partition,
                    offset: c.offset,
                    commit_ms: c.commit_ms,
                    metadata: c.metadata.clone(),
                    tombstone: false,
                });
            }
        }
        records
    }

    /// The snapshot of `partition` was reported: release the held persists in order.
    fn snapshot_persisted(&mut self, partition: u32, ok: bool) {
        match ok {
            true => self.compaction.snapshotted(partition),
            false => self.compaction.failed(partition),
        }
        for action in self.compaction.release() {
            self.release_persist(action);
        }
        self.maybe_compact();
    }

    /// Deletes a group without members (Kafka's DeleteGroups): one tombstone per
    /// committed partition, persisted like an expiry, answered with [`Reply::Delete`] once
    /// durable; the group is then gone (a replay drops it too). Refused while the group
    /// has members (`NonEmpty`), while commits or an expiry of it are in flight
    /// (`Expiring`, retriable), and for a group that does not exist (`NotFound`).
    pub fn handle_delete_group(
        &mut self,
        now_ms: u64,
        request_id: RequestId,
        group_id: &str,
    ) -> Result<Outcome<()>, GroupError> {
        self.check_open(group_id)?;
        let Some(group) = self.groups.get_mut(group_id) else { return Err(GroupError::NotFound) };
        if !group.members.is_empty() {
            return Err(GroupError::NonEmpty { members: group.members.len() });
        }
        if group.expiring || group.persists_in_flight > 0 {
            return Err(GroupError::Expiring);
        }
        let records = tombstones(group_id, &group.offsets, now_ms);
        if records.is_empty() {
            self.settle(group_id);
            return Ok(Outcome::Done(()));
        }
        if self.persists.len() >= self.config.persists_in_flight_max {
            return Err(GroupError::Throttled);
        }
        let entries = group.offsets.partitions().map(|tp| (tp.clone(), 0)).collect();
        group.expiring = true;
        group.persists_in_flight += 1;
        let persist_id = self.persist_id_next;
        self.persist_id_next += 1;
        let pending = PendingPersist {
            request_id: Some(request_id),
            deletion: true,
            group_id: group_id.to_string(),
            entries,
            issued_ms: now_ms,
        };
        self.persists.insert(persist_id, pending);
        self.issue_persist(persist_id, records);
        Ok(Outcome::Parked)
    }

    /// Committed offsets of `partitions` (all the group has when empty); partitions
    /// without a committed offset are left out. Includes accepted commits still being
    /// persisted (see `offsets.rs`).
    pub fn handle_offset_fetch(
        &self,
        group_id: &str,
        partitions: &[TopicPartition],
    ) -> Result<Vec<CommittedOffset>, GroupError> {
        self.check_open(group_id)?;
        let Some(group) = self.groups.get(group_id) else { return Ok(Vec::new()) };
        let to_wire = |tp: &TopicPartition, c: &Committed| CommittedOffset {
            topic: tp.topic.clone(),
            partition: tp.partition,
            offset: c.offset,
            metadata: c.metadata.clone(),
        };
        if partitions.is_empty() {
            return Ok(group.offsets.visible_all().map(|(tp, c)| to_wire(tp, c)).collect());
        }
        Ok(partitions.iter().filter_map(|tp| group.offsets.visible(tp).map(|c| to_wire(tp, c))).collect())
    }

    /// Expires sessions, rebalance deadlines and Empty groups' offsets due at `now_ms`.
    pub fn tick(&mut self, now_ms: u64) {
        self.expire_offsets(now_ms);
        self.maybe_compact();
        let due: Vec<String> = self
            .groups
            .iter()
            .filter(|(_, g)| g.next_deadline_ms().is_some_and(|d| d <= now_ms))
            .map(|(id, _)| id.clone())
            .collect();
        for group_id in due {
            let group = self.groups.get_mut(&group_id).expect("collected above");
            group.expire(now_ms, &self.partition_counts, &mut self.actions);
            self.settle(&group_id);
        }
    }

    /// When `tick` has work next (absolute ms), if ever.
    pub fn poll_timeout(&self) -> Option<u64> {
        let retention_ms = self.config.offsets_retention_ms;
        let expiries = self.groups.values().filter_map(|g| g.expiry_ms(retention_ms));
        self.groups.values().filter_map(Group::next_deadline_ms).chain(expiries).min()
    }

    /// Starts expiring the offsets of every Empty group past its retention: one
    /// tombstone per partition, persisted like a commit (bounded by the same in-flight
    /// bound; groups left over wait for the next tick).
    fn expire_offsets(&mut self, now_ms: u64) {
        let retention_ms = self.config.offsets_retention_ms;
        let due: Vec<String> = self
            .groups
            .iter()
            .filter(|(_, g)| g.expiry_ms(retention_ms).is_some_and(|at| at <= now_ms))
            .map(|(id, _)| id.clone())
            .collect();
        for group_id in due {
            if self.persists.len() >= self.config.persists_in_flight_max {
                return;
            }
            let group = self.groups.get_mut(&group_id).expect("collected above");
            let records = tombstones(&group_id, &group.offsets, now_ms);
            let entries = group.offsets.partitions().map(|tp| (tp.clone(), 0)).collect();
            group.expiring = true;
            group.persists_in_flight += 1;
            let persist_id = self.persist_id_next;
            self.persist_id_next += 1;
            let pending = PendingPersist { request_id: None, deletion: false, group_id, entries, issued_ms: now_ms };
            self.persists.insert(persist_id, pending);
            self.issue_persist(persist_id, records);
        }
    }

    /// The next action for the shell; drain after every call into the coordinator.
    pub fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    /// Every group, in id order.
    pub fn list_groups(&self) -> Vec<GroupSummary> {
        let summary = |g: &Group| GroupSummary {
            group_id: g.id.clone(),
            state: g.state,
            member_count: u32::try_from(g.members.len()).unwrap_or(u32::MAX),
        };
        self.groups.values().map(summary).collect()
    }

    /// One group's members, assignment and durable offsets.
    pub fn describe_group(&self, group_id: &str) -> Option<GroupView> {
        let group = self.groups.get(group_id)?;
        let members = group
            .members
            .iter()
            .map(|(id, m)| MemberView {
                member_id: id.clone(),
                client_id: m.client_id.clone(),
                topics: m.topics.iter().cloned().collect(),
                assignment: match m.generation == group.generation {
                    true => group.assignment.get(id).cloned().unwrap_or_default(),
                    false => Vec::new(),
                },
                protocol_metadata: group.protocol.as_deref().and_then(|p| m.metadata(p)).unwrap_or_default().to_vec(),
                kafka_assignment: match m.generation == group.generation {
                    true => group.kafka_assignment.get(id).cloned().unwrap_or_default(),
                    false => Vec::new(),
                },
            })
            .collect();
        let offsets = group
            .offsets
            .durable_all()
            .map(|(tp, c)| CommittedOffset {
                topic: tp.topic.clone(),
                partition: tp.partition,
                offset: c.offset,
                metadata: c.metadata.clone(),
            })
            .collect();
        Some(GroupView {
            group_id: group.id.clone(),
            state: group.state,
            generation: group.generation,
            assignor: group.assignor,
            leader_member_id: group.leader.clone(),
            protocol_type: group.protocol_type.clone(),
            protocol: group.protocol.clone(),
            members,
            offsets,
        })
    }

    /// The partition count the coordinator knows for `topic` (0 if none).
    pub fn partition_count(&self, topic: &str) -> u32 {
        self.partition_counts.get(topic).copied().unwrap_or(0)
    }

    fn check_open(&self, group_id: &str) -> Result<(), GroupError> {
        if self.loading {
            return Err(GroupError::Loading);
        }
        if group_id.is_empty() || group_id.len() > GROUP_ID_LEN_MAX {
            return Err(GroupError::InvalidGroupId);
        }
        Ok(())
    }

    fn group_or_create(&mut self, group_id: &str, now_ms: u64) -> Result<&mut Group, GroupError> {
        if !self.groups.contains_key(group_id) {
            if self.groups.len() >= self.config.groups_max {
                return Err(GroupError::TooManyGroups { groups_max: self.config.groups_max });
            }
            let group = Group::new(group_id.to_string(), self.dropped_generation_max, now_ms);
            self.groups.insert(group_id.to_string(), group);
        }
        Ok(self.groups.get_mut(group_id).expect("inserted above"))
    }

    /// Drops the group if nothing is left in it (it becomes Dead).
    fn settle(&mut self, group_id: &str) {
        if self.groups.get(group_id).is_some_and(Group::is_disposable) {
            let group = self.groups.remove(group_id).expect("checked above");
            self.dropped_generation_max = self.dropped_generation_max.max(group.generation);
        }
    }

    /// A member id never handed out before by this instance.
    fn new_member_id(&mut self, client_id: &str) -> String {
        self.member_seq += 1;
        format!("{client_id}-{:x}-{}", self.instance, self.member_seq)
    }

    fn next_commit_seq(&mut self) -> u64 {
        let seq = self.commit_seq_next;
        self.commit_seq_next += 1;
        seq
    }
}

/// One tombstone per partition of `offsets` with a visible committed offset (a group
/// deleted, or its offsets expired).
fn tombstones(group_id: &str, offsets: &OffsetTable, now_ms: u64) -> Vec<CommitRecord> {
    offsets
        .visible_all()
        .map(|(tp, c)| CommitRecord {
            group_id: group_id.to_string(),
            topic: tp.topic.clone(),
            partition: tp.partition,
            offset: c.offset,
            commit_ms: now_ms,
            metadata: String::new(),
            tombstone: true,
        })
        .collect()
}

/// The bounds of a Kafka join's protocol list (every field came from the network).
fn validate_kafka_join(kafka: &KafkaJoin) -> Result<(), GroupError> {
    let name_ok = |name: &str| !name.is_empty() && name.len() <= PROTOCOL_NAME_LEN_MAX;
    if !name_ok(&kafka.protocol_type) {
        return Err(GroupError::InconsistentProtocol("empty or overlong protocol type"));
    }
    if kafka.protocols.is_empty() {
        return Err(GroupError::InconsistentProtocol("no assignment protocol offered"));
    }
    if kafka.protocols.len() > PROTOCOLS_PER_MEMBER_MAX {
        return Err(GroupError::InvalidRequest("too many assignment protocols"));
    }
    if !kafka.protocols.iter().all(|p| name_ok(&p.name)) {
        return Err(GroupError::InvalidRequest("empty or overlong protocol name"));
    }
    let metadata_bytes: usize = kafka.protocols.iter().map(|p| p.metadata.len()).sum();
    if metadata_bytes > MEMBER_METADATA_BYTES_MAX {
        return Err(GroupError::InvalidRequest("protocol metadata too large"));
    }
    Ok(())
}

fn validate_offsets(offsets: &[CommittedOffset], metadata_max: usize) -> Result<(), GroupError> {
    if offsets.len() > OFFSETS_PER_COMMIT_MAX {
        return Err(GroupError::InvalidRequest("too many offsets in one commit"));
    }
    for committed in offsets {
        if committed.topic.is_empty() || committed.topic.len() > TOPIC_NAME_LEN_MAX {
            return Err(GroupError::InvalidRequest("invalid topic name"));
        }
        if committed.metadata.len() > metadata_max {
            return Err(GroupError::MetadataTooLarge {
                topic: committed.topic.clone(),
                partition: committed.partition,
                len: committed.metadata.len(),
                max: metadata_max,
            });
        }
    }
    Ok(())
}
