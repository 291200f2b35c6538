//! One group's membership state machine: members, generation, the current
//! assignment, and the transitions between [`GroupState`]s. The coordinator routes
//! requests here; every transition that answers a parked join or drops a member
//! pushes an [`Action`].
//!
//! Invariants: a member with a parked join is never expired by its session timeout
//! (it waits on us, bounded by the rebalance deadline); `assignment` always holds
//! exactly the members of the last completed generation; `generation` only grows.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use strand_wire::msg::{Assignor, TopicPartition};

use super::assign::assign;
use super::error::GroupError;
use super::offsets::OffsetTable;
use super::types::{Action, JoinResult, Reply, RequestId};

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
            && self.offsets.is_empty()
            && self.persists_in_flight == 0
    }

    /// Whether any member subscribes to `topic`.
    pub fn subscribes(&self, topic: &str) -> bool {
        self.members.values().any(|m| m.topics.contains(topic))
    }

    /// The current generation's answer to a join of `member_id`.
    pub fn join_result(&self, member_id: &str) -> JoinResult {
        JoinResult {
            generation: self.generation,
            member_id: member_id.to_string(),
            leader_member_id: self.leader.clone().unwrap_or_default(),
            members: self.assignment.keys().cloned().collect(),
        }
    }

    /// Enters PreparingRebalance (no-op if already there): every member must rejoin
    /// before `now + max(rebalance timeouts)`.
    pub fn begin_rebalance(&mut self, now_ms: u64) {
        if self.state == GroupState::PreparingRebalance {
            return;
        }
        let timeout_ms = self.members.values().map(|m| u64::from(m.rebalance_timeout_ms)).max().unwrap_or(0);
        self.state = GroupState::PreparingRebalance;
        self.rebalance_deadline_ms = Some(now_ms.saturating_add(timeout_ms));
        for member in self.members.values_mut() {
            member.synced = false;
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
        self.generation = self.generation.checked_add(1).expect("generation overflow");
        let subscriptions: BTreeMap<String, BTreeSet<String>> =
            self.members.iter().map(|(id, m)| (id.clone(), m.topics.clone())).collect();
        self.assignment = assign(self.assignor, &subscriptions, counts);
        self.leader = self.members.keys().next().cloned();
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

    /// Removes a member, answering its parked join (if any) with `UnknownMember`.
    pub fn remove_member(&mut self, member_id: &str, reason: &'static str, actions: &mut VecDeque<Action>) {
        let member = self.members.remove(member_id).expect("caller checked membership");
        if let Some(request_id) = member.parked_join {
            actions.push_back(Action::Respond { request_id, reply: Reply::Join(Err(GroupError::UnknownMember)) });
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
        self.begin_rebalance(now_ms);
        self.try_complete(now_ms, counts, actions);
    }

    /// Drops members whose session expired and, past the rebalance deadline, members
    /// that did not rejoin; then completes a rebalance that can complete.
    pub fn expire(&mut self, now_ms: u64, counts: &BTreeMap<String, u32>, actions: &mut VecDeque<Action>) {
        let rebalance_over = self.rebalance_deadline_ms.is_some_and(|deadline| now_ms >= deadline);
        let mut removed = false;
        let ids: Vec<String> = self.members.keys().cloned().collect();
        for id in ids {
            let member = &self.members[&id];
            if member.parked_join.is_some() {
                continue;
            }
            if rebalance_over {
                self.remove_member(&id, "did not rejoin before the rebalance timeout", actions);
                removed = true;
            } else if now_ms >= member.last_seen_ms.saturating_add(u64::from(member.session_timeout_ms)) {
                self.remove_member(&id, "session timeout", actions);
                removed = true;
            }
        }
        if removed || rebalance_over {
            self.after_removal(now_ms, counts, actions);
        }
    }

    /// The earliest time `expire` has something to do, if any.
    pub fn next_deadline_ms(&self) -> Option<u64> {
        let sessions = self
            .members
            .values()
            .filter(|m| m.parked_join.is_none())
            .map(|m| m.last_seen_ms.saturating_add(u64::from(m.session_timeout_ms)));
        sessions.chain(self.rebalance_deadline_ms).min()
    }
}
