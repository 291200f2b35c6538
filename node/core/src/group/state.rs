//! One group's membership state machine: members, generation, the current
//! assignment, and the transitions between [`GroupState`]s. The coordinator routes
//! requests here; every transition that answers a parked join or drops a member
//! pushes an [`Action`].
//!
//! A group is in one of two modes, fixed by the first member to join it while it has
//! none: *native* (`protocol_type == None`: the coordinator assigns partitions with the
//! group's assignor) or *Kafka* (`Some(type)`: client-side assignment — the coordinator
//! picks a protocol every member supports, hands the leader every member's metadata, and
//! relays the leader's opaque assignments to the members' syncs).
//!
//! Invariants: a member with a parked join or sync is never expired by its session
//! timeout (it waits on us, bounded by the rebalance or sync deadline); `assignment`
//! always holds exactly the members of the last completed generation; `generation` only
//! grows; in Kafka mode `kafka_assignment` holds only members of the current generation
//! and is non-empty only once its leader synced, and a parked sync exists only in
//! CompletingRebalance.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use strand_wire::msg::{Assignor, TopicPartition};

use super::assign::assign;
use super::error::GroupError;
use super::offsets::OffsetTable;
use super::types::{Action, JoinResult, KafkaProtocol, Reply, RequestId};

/// Where a group is in its rebalance cycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupState {
    /// No members (offsets may exist).
    Empty,
    /// Waiting for every member to (re)join, or for the rebalance deadline.
    PreparingRebalance,
    /// The new generation is formed; members fetch their assignment with sync.
    CompletingRebalance,
    /// Every member of the generation has synced.
    Stable,
}

impl GroupState {
    /// The stable name shown by describe/list (`Empty`, `PreparingRebalance`, ...).
    pub fn name(self) -> &'static str {
        match self {
            GroupState::Empty => "Empty",
            GroupState::PreparingRebalance => "PreparingRebalance",
            GroupState::CompletingRebalance => "CompletingRebalance",
            GroupState::Stable => "Stable",
        }
    }
}

#[derive(Debug)]
pub(crate) struct Member {
    pub client_id: String,
    pub session_timeout_ms: u32,
    pub rebalance_timeout_ms: u32,
    pub topics: BTreeSet<String>,
    /// Last request from this member, or the completion of its parked join.
    pub last_seen_ms: u64,
    pub parked_join: Option<RequestId>,
    /// The generation this member was last part of (0 = none yet).
    pub generation: u32,
    pub synced: bool,
    /// Kafka mode: the assignment protocols the member offers (empty for native members).
    pub protocols: Vec<KafkaProtocol>,
    /// Kafka mode: a sync waiting for the leader's assignments.
    pub parked_sync: Option<RequestId>,
}

impl Member {
    /// The member's metadata for `protocol`, if it offers it.
    pub fn metadata(&self, protocol: &str) -> Option<&[u8]> {
        self.protocols.iter().find(|p| p.name == protocol).map(|p| p.metadata.as_slice())
    }

    /// Whether the member waits on the coordinator (a parked join or sync): its session
    /// does not run meanwhile.
    pub fn waiting(&self) -> bool {
        self.parked_join.is_some() || self.parked_sync.is_some()
    }
}

#[derive(Debug)]
pub(crate) struct Group {
    pub id: String,
    pub state: GroupState,
    pub generation: u32,
    pub assignor: Assignor,
    pub members: BTreeMap<String, Member>,
    pub leader: Option<String>,
    pub assignment: BTreeMap<String, Vec<TopicPartition>>,
    pub rebalance_deadline_ms: Option<u64>,
    pub offsets: OffsetTable,
    /// Commit persists of this group in flight (tombstone persists included).
    pub persists_in_flight: usize,
    /// Last commit accepted, or the moment the group last lost a member (or was
    /// created): an Empty group's offsets expire `offsets_retention_ms` after it.
    pub last_active_ms: u64,
    /// The tombstones of this group's offsets are being persisted: commits wait.
    pub expiring: bool,
    /// `None`: native mode; `Some(type)`: Kafka mode with this protocol type. Fixed by the
    /// first member to join while the group has none.
    pub protocol_type: Option<String>,
    /// Kafka mode: the protocol chosen for the current generation.
    pub protocol: Option<String>,
    /// Kafka mode: the leader's assignments of the current generation, by member (empty
    /// until the leader synced).
    pub kafka_assignment: BTreeMap<String, Vec<u8>>,
    /// Kafka mode: after the rebalance completes, the leader must sync before this, or it
    /// (and every member that did not sync) is removed and the group rebalances again.
    pub sync_deadline_ms: Option<u64>,
    /// Member ids handed out by `MemberIdRequired`, not yet joined: id → when it lapses.
    pub pending_members: BTreeMap<String, u64>,
}

impl Group {
    /// A new Empty group whose first rebalance forms generation `generation + 1`.
    pub fn new(id: String, generation: u32, now_ms: u64) -> Group {
        Group {
            id,
            state: GroupState::Empty,
            generation,
            assignor: Assignor::Range,
            members: BTreeMap::new(),
            leader: None,
            assignment: BTreeMap::new(),
            rebalance_deadline_ms: None,
            offsets: OffsetTable::default(),
            persists_in_flight: 0,
            last_active_ms: now_ms,
            expiring: false,
            protocol_type: None,
            protocol: None,
            kafka_assignment: BTreeMap::new(),
            sync_deadline_ms: None,
            pending_members: BTreeMap::new(),
        }
    }

    /// When this group's offsets expire, if it is an Empty group holding offsets and
    /// nothing is in flight.
    pub fn expiry_ms(&self, retention_ms: u64) -> Option<u64> {
        let idle = self.state == GroupState::Empty && self.members.is_empty() && self.persists_in_flight == 0;
        (idle && !self.offsets.is_empty()).then(|| self.last_active_ms.saturating_add(retention_ms))
    }

    /// Nothing left to keep: the coordinator may drop the group (it becomes Dead).
    pub fn is_disposable(&self) -> bool {
        self.state == GroupState::Empty
            && self.members.is_empty()
            && self.pending_members.is_empty()
            && self.offsets.is_empty()
            && self.persists_in_flight == 0
    }

    /// Whether the group relays client-side assignments (Kafka mode).
    pub fn is_kafka(&self) -> bool {
        self.protocol_type.is_some()
    }

    /// Kafka mode: the protocols every member except `except` supports, in the order of
    /// `offered` (`offered` itself when there are no other members).
    pub fn common_protocols<'a>(&self, offered: &'a [KafkaProtocol], except: &str) -> Vec<&'a str> {
        offered
            .iter()
            .map(|p| p.name.as_str())
            .filter(|name| self.members.iter().all(|(id, m)| id == except || m.metadata(name).is_some()))
            .collect()
    }

    /// Whether any member subscribes to `topic`.
    pub fn subscribes(&self, topic: &str) -> bool {
        self.members.values().any(|m| m.topics.contains(topic))
    }

    /// The current generation's answer to a join of `member_id`.
    pub fn join_result(&self, member_id: &str) -> JoinResult {
        let is_leader = self.leader.as_deref() == Some(member_id);
        let member_metadata = match (&self.protocol, is_leader) {
            (Some(protocol), true) => self
                .assignment
                .keys()
                .map(|id| {
                    let metadata = self.members.get(id).and_then(|m| m.metadata(protocol)).unwrap_or_default();
                    (id.clone(), metadata.to_vec())
                })
                .collect(),
            _ => Vec::new(),
        };
        JoinResult {
            generation: self.generation,
            member_id: member_id.to_string(),
            leader_member_id: self.leader.clone().unwrap_or_default(),
            members: self.assignment.keys().cloned().collect(),
            protocol: self.protocol.clone(),
            member_metadata,
        }
    }

    /// Enters PreparingRebalance (no-op if already there): every member must rejoin
    /// before `now + max(rebalance timeouts)`. Syncs parked for the generation being
    /// abandoned are answered `RebalanceInProgress`.
    pub fn begin_rebalance(&mut self, now_ms: u64, actions: &mut VecDeque<Action>) {
        if self.state == GroupState::PreparingRebalance {
            return;
        }
        let timeout_ms = self.members.values().map(|m| u64::from(m.rebalance_timeout_ms)).max().unwrap_or(0);
        self.state = GroupState::PreparingRebalance;
        self.rebalance_deadline_ms = Some(now_ms.saturating_add(timeout_ms));
        self.sync_deadline_ms = None;
        self.kafka_assignment.clear();
        for member in self.members.values_mut() {
            member.synced = false;
            if let Some(request_id) = member.parked_sync.take() {
                let reply = Reply::Sync(Err(GroupError::RebalanceInProgress));
                actions.push_back(Action::Respond { request_id, reply });
                // A parked member was alive all along (its session does not run while it
                // waits); answered now, its session starts now, as Kafka's does. Else a
                // member parked past its session would be due at once and `tick` would
                // not clear it (group_sim seed 606).
                member.last_seen_ms = member.last_seen_ms.max(now_ms);
            }
        }
    }

    /// Completes the rebalance if every member has rejoined.
    pub fn try_complete(&mut self, now_ms: u64, counts: &BTreeMap<String, u32>, actions: &mut VecDeque<Action>) {
        if self.state == GroupState::PreparingRebalance && self.members.values().all(|m| m.parked_join.is_some()) {
            self.complete(now_ms, counts, actions);
        }
    }

    /// Forms the next generation from the members present, computes its assignment
    /// and answers every parked join.
    fn complete(&mut self, now_ms: u64, counts: &BTreeMap<String, u32>, actions: &mut VecDeque<Action>) {
        assert_eq!(self.state, GroupState::PreparingRebalance);
        assert!(self.members.values().all(|m| m.parked_join.is_some()));
        assert!(self.members.values().all(|m| m.parked_sync.is_none()), "no sync parks across generations");
        self.generation = self.generation.checked_add(1).expect("generation overflow");
        if self.is_kafka() {
            self.complete_kafka(now_ms);
        } else {
            let subscriptions: BTreeMap<String, BTreeSet<String>> =
                self.members.iter().map(|(id, m)| (id.clone(), m.topics.clone())).collect();
            self.assignment = assign(self.assignor, &subscriptions, counts);
            self.leader = self.members.keys().next().cloned();
        }
        self.rebalance_deadline_ms = None;
        self.state = if self.members.is_empty() { GroupState::Empty } else { GroupState::CompletingRebalance };
        let ids: Vec<String> = self.members.keys().cloned().collect();
        for id in ids {
            let result = self.join_result(&id);
            let member = self.members.get_mut(&id).expect("id taken from members");
            member.generation = self.generation;
            member.synced = false;
            member.last_seen_ms = now_ms;
            let request_id = member.parked_join.take().expect("all members parked");
            actions.push_back(Action::Respond { request_id, reply: Reply::Join(Ok(result)) });
        }
    }

    /// Kafka mode: the leader stays leader while it is a member (else the first member
    /// in id order leads); the protocol is the first of the leader's that every member
    /// supports. The leader must sync before the sync deadline.
    fn complete_kafka(&mut self, now_ms: u64) {
        let keep = self.leader.as_ref().filter(|l| self.members.contains_key(*l)).cloned();
        self.leader = keep.or_else(|| self.members.keys().next().cloned());
        self.assignment = self.members.keys().map(|id| (id.clone(), Vec::new())).collect();
        self.kafka_assignment.clear();
        self.protocol = None;
        self.sync_deadline_ms = None;
        let Some(leader) = self.leader.clone() else { return };
        let offered = self.members[&leader].protocols.clone();
        let chosen = self.common_protocols(&offered, &leader).first().map(|p| p.to_string());
        // Every join checked that the joining member shares a protocol with all others.
        assert!(chosen.is_some(), "group {}: no protocol common to every member", self.id);
        self.protocol = chosen;
        let timeout_ms = self.members.values().map(|m| u64::from(m.rebalance_timeout_ms)).max().unwrap_or(0);
        self.sync_deadline_ms = Some(now_ms.saturating_add(timeout_ms));
    }

    /// Kafka mode: the leader's assignments for the current generation arrive; every
    /// parked sync is answered with its own, and the group is Stable. Entries for ids
    /// that are not members of the generation are dropped; members without one get an
    /// empty assignment.
    pub fn relay_assignments(
        &mut self,
        now_ms: u64,
        assignments: Vec<(String, Vec<u8>)>,
        actions: &mut VecDeque<Action>,
    ) {
        assert!(self.is_kafka());
        assert_eq!(self.state, GroupState::CompletingRebalance);
        assert!(self.kafka_assignment.is_empty(), "a generation's assignments arrive once");
        for (member_id, assignment) in assignments {
            if self.assignment.contains_key(&member_id) {
                self.kafka_assignment.insert(member_id, assignment);
            }
        }
        for (id, member) in self.members.iter_mut() {
            assert_eq!(member.generation, self.generation, "CompletingRebalance: every member is of the generation");
            if let Some(request_id) = member.parked_sync.take() {
                let assignment = self.kafka_assignment.get(id).cloned().unwrap_or_default();
                actions.push_back(Action::Respond { request_id, reply: Reply::Sync(Ok(assignment)) });
                member.synced = true;
                member.last_seen_ms = member.last_seen_ms.max(now_ms);
            }
        }
        self.sync_deadline_ms = None;
        self.state = GroupState::Stable;
    }

    /// Removes a member, answering its parked join or sync (if any) with `UnknownMember`.
    pub fn remove_member(&mut self, member_id: &str, reason: &'static str, actions: &mut VecDeque<Action>) {
        let member = self.members.remove(member_id).expect("caller checked membership");
        if let Some(request_id) = member.parked_join {
            actions.push_back(Action::Respond { request_id, reply: Reply::Join(Err(GroupError::UnknownMember)) });
        }
        if let Some(request_id) = member.parked_sync {
            actions.push_back(Action::Respond { request_id, reply: Reply::Sync(Err(GroupError::UnknownMember)) });
        }
        actions.push_back(Action::MemberRemoved {
            group_id: self.id.clone(),
            member_id: member_id.to_string(),
            reason,
        });
    }

    /// Rebalances after members left, completing at once if the rest are all parked.
    pub fn after_removal(&mut self, now_ms: u64, counts: &BTreeMap<String, u32>, actions: &mut VecDeque<Action>) {
        self.last_active_ms = self.last_active_ms.max(now_ms);
        self.begin_rebalance(now_ms, actions);
        self.try_complete(now_ms, counts, actions);
    }

    /// Drops members whose session expired and, past the rebalance deadline, members
    /// that did not rejoin; then completes a rebalance that can complete.
    pub fn expire(&mut self, now_ms: u64, counts: &BTreeMap<String, u32>, actions: &mut VecDeque<Action>) {
        self.pending_members.retain(|_, lapse_ms| *lapse_ms > now_ms);
        let rebalance_over = self.rebalance_deadline_ms.is_some_and(|deadline| now_ms >= deadline);
        let sync_over = self.sync_deadline_ms.is_some_and(|deadline| now_ms >= deadline);
        let mut removed = false;
        let ids: Vec<String> = self.members.keys().cloned().collect();
        for id in ids {
            let member = &self.members[&id];
            if member.waiting() {
                continue;
            }
            if rebalance_over {
                self.remove_member(&id, "did not rejoin before the rebalance timeout", actions);
                removed = true;
            } else if sync_over {
                // Only the leader's sync completes the generation; a member that did not
                // sync either is gone too (it would be answered nothing).
                self.remove_member(&id, "did not sync before the rebalance timeout", actions);
                removed = true;
            } else if now_ms >= member.last_seen_ms.saturating_add(u64::from(member.session_timeout_ms)) {
                self.remove_member(&id, "session timeout", actions);
                removed = true;
            }
        }
        if removed || rebalance_over || sync_over {
            self.after_removal(now_ms, counts, actions);
        }
    }

    /// The earliest time `expire` has something to do, if any.
    pub fn next_deadline_ms(&self) -> Option<u64> {
        let sessions = self
            .members
            .values()
            .filter(|m| !m.waiting())
            .map(|m| m.last_seen_ms.saturating_add(u64::from(m.session_timeout_ms)));
        let pending = self.pending_members.values().copied();
        sessions.chain(self.rebalance_deadline_ms).chain(self.sync_deadline_ms).chain(pending).min()
    }
}
