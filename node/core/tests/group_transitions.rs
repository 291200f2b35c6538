//! Data-driven tests of the group coordinator's state transitions and limits, driving
//! the real `GroupCoordinator` through its public API with a hand-advanced clock.

use strand_core::group::{
    Action, CommitInput, CommitRecord, CoordinatorConfig, GroupCoordinator, GroupError, GroupState, JoinInput,
    JoinResult, Outcome, Reply,
};
use strand_wire::msg::{Assignor, CommittedOffset, TopicPartition};
use strand_wire::ErrorCode;

const SESSION_MS: u32 = 1_000;
const REBALANCE_MS: u32 = 3_000;

/// Join replies by request id.
type JoinReplies = Vec<(u64, Result<JoinResult, GroupError>)>;

struct Harness {
    coordinator: GroupCoordinator,
    request_id_next: u64,
}

impl Harness {
    fn new(config: CoordinatorConfig) -> Harness {
        let mut coordinator = GroupCoordinator::new(config, 0xab);
        coordinator.finish_loading();
        Harness { coordinator, request_id_next: 1 }
    }

    fn with_topic(partitions: u32) -> Harness {
        let mut h = Harness::new(CoordinatorConfig::default());
        h.coordinator.handle_topic_partitions_changed(0, "t", partitions);
        h
    }

    fn join_input(member_id: &str, topics: &[&str]) -> JoinInput {
        JoinInput {
            group_id: "g".into(),
            member_id: member_id.into(),
            client_id: "c".into(),
            session_timeout_ms: SESSION_MS,
            rebalance_timeout_ms: REBALANCE_MS,
            topics: topics.iter().map(|t| t.to_string()).collect(),
            assignor: Assignor::Range,
            kafka: None,
        }
    }

    /// Sends a join; returns its request id and the immediate outcome.
    fn join(&mut self, now: u64, member_id: &str) -> (u64, Result<Outcome<JoinResult>, GroupError>) {
        let id = self.request_id_next;
        self.request_id_next += 1;
        (id, self.coordinator.handle_join(now, id, Harness::join_input(member_id, &["t"])))
    }

    /// Drains actions, returning join replies by request id and the other actions.
    fn drain(&mut self) -> (JoinReplies, Vec<Action>) {
        let (mut joins, mut other) = (Vec::new(), Vec::new());
        while let Some(action) = self.coordinator.poll_action() {
            match action {
                Action::Respond { request_id, reply: Reply::Join(result) } => joins.push((request_id, result)),
                action => other.push(action),
            }
        }
        (joins, other)
    }

    /// Sends a join that must not be refused; returns its request id.
    fn join_ok(&mut self, now: u64, member_id: &str) -> u64 {
        let (id, outcome) = self.join(now, member_id);
        assert!(outcome.is_ok(), "join refused: {outcome:?}");
        id
    }

    /// Grows the group by `new_members`, one at a time, every present member rejoining
    /// after each arrival; returns the join results of the last generation (id order).
    fn join_all(&mut self, now: u64, new_members: usize) -> Vec<JoinResult> {
        let mut results: Vec<JoinResult> = Vec::new();
        for _ in 0..new_members {
            let mut ids = vec![self.join_ok(now, "")];
            for r in &results {
                ids.push(self.join_ok(now, &r.member_id));
            }
            let (joins, _) = self.drain();
            assert_eq!(joins.len(), ids.len(), "every join answered");
            results = joins.into_iter().map(|(_, r)| r.expect("join ok")).collect();
            results.sort_by(|a, b| a.member_id.cmp(&b.member_id));
        }
        results
    }

    fn sync(&mut self, now: u64, r: &JoinResult) -> Result<Vec<TopicPartition>, GroupError> {
        self.coordinator.handle_sync(now, "g", r.generation, &r.member_id)
    }

    fn state(&self) -> GroupState {
        self.coordinator.describe_group("g").expect("group exists").state
    }

    fn commit(&mut self, now: u64, generation: u32, member: &str, offset: u64) -> Result<Outcome<()>, GroupError> {
        let id = self.request_id_next;
        self.request_id_next += 1;
        let offsets = vec![CommittedOffset { topic: "t".into(), partition: 0, offset, metadata: String::new() }];
        let input = CommitInput { group_id: "g".into(), generation, member_id: member.into(), offsets };
        self.coordinator.handle_commit(now, id, input)
    }

    /// Completes every persist in flight with `result`; returns the commit replies.
    fn persist_all(&mut self, result: Result<(), ErrorCode>) -> Vec<Result<(), GroupError>> {
        let (_, actions) = self.drain();
        for action in actions {
            if let Action::PersistOffsets { persist_id, .. } = action {
                assert!(self.coordinator.handle_persisted(persist_id, result));
            }
        }
        let mut replies = Vec::new();
        while let Some(action) = self.coordinator.poll_action() {
            if let Action::Respond { reply: Reply::Commit(r), .. } = action {
                replies.push(r);
            }
        }
        replies
    }

    fn fetched(&self) -> Option<u64> {
        let tp = TopicPartition { topic: "t".into(), partition: 0 };
        self.coordinator.handle_offset_fetch("g", &[tp]).expect("fetch ok").first().map(|c| c.offset)
    }
}

fn counts(assignments: &[Vec<TopicPartition>]) -> Vec<usize> {
    assignments.iter().map(Vec::len).collect()
}

#[test]
fn partition_count_bounds_group_parallelism() {
    // (members, partition counts each member gets in id order)
    let cases: [(usize, &[usize]); 4] = [(1, &[4]), (2, &[2, 2]), (4, &[1, 1, 1, 1]), (5, &[1, 1, 1, 1, 0])];
    for (members, expect) in cases {
        let mut h = Harness::with_topic(4);
        let results = h.join_all(0, members);
        let generation = results[0].generation;
        assert!(results.iter().all(|r| r.generation == generation && r.members.len() == members));
        let mut assignments = Vec::new();
        for r in &results {
            assert_eq!(h.state(), GroupState::CompletingRebalance, "not Stable before everyone synced");
            assignments.push(h.sync(1, r).expect("sync ok"));
        }
        assert_eq!(h.state(), GroupState::Stable);
        let mut sorted: Vec<(String, Vec<TopicPartition>)> =
            results.iter().map(|r| r.member_id.clone()).zip(assignments).collect();
        sorted.sort();
        let sorted: Vec<Vec<TopicPartition>> = sorted.into_iter().map(|(_, a)| a).collect();
        assert_eq!(counts(&sorted), expect, "{members} members");
        let mut all: Vec<TopicPartition> = sorted.concat();
        all.sort();
        all.dedup();
        assert_eq!(all.len(), 4, "every partition exactly once");
    }
}

#[test]
fn new_member_parks_until_the_others_rejoin() {
    let mut h = Harness::with_topic(4);
    let first = h.join_all(0, 1).remove(0);
    h.sync(0, &first).unwrap();
    let (second_req, outcome) = h.join(10, "");
    assert_eq!(outcome, Ok(Outcome::Parked));
    assert!(h.drain().0.is_empty(), "parked until the first member rejoins");
    assert_eq!(h.state(), GroupState::PreparingRebalance);
    assert_eq!(h.coordinator.handle_heartbeat(20, "g", 1, &first.member_id), Err(GroupError::RebalanceInProgress));
    assert_eq!(h.sync(20, &first), Err(GroupError::RebalanceInProgress));
    let (first_req, _) = h.join(30, &first.member_id);
    let joins = h.drain().0;
    let ids: Vec<u64> = joins.iter().map(|(id, _)| *id).collect();
    assert_eq!(ids.len(), 2);
    assert!(ids.contains(&first_req) && ids.contains(&second_req));
    assert!(joins.iter().all(|(_, r)| r.as_ref().unwrap().generation == 2));
    // The old generation is fenced.
    assert_eq!(h.coordinator.handle_heartbeat(40, "g", 1, &first.member_id), Err(GroupError::IllegalGeneration));
    assert_eq!(h.coordinator.handle_heartbeat(40, "g", 2, &first.member_id), Ok(()));
}

#[test]
fn known_member_rejoining_a_stable_group_is_answered_at_once() {
    let mut h = Harness::with_topic(2);
    let first = h.join_all(0, 1).remove(0);
    h.sync(0, &first).unwrap();
    let (_, outcome) = h.join(5, &first.member_id);
    assert_eq!(outcome, Ok(Outcome::Done(first.clone())));
    assert_eq!(h.state(), GroupState::Stable);
    // A changed subscription rebalances (and completes: the only member is parked).
    let input = Harness::join_input(&first.member_id, &["t", "u"]);
    assert_eq!(h.coordinator.handle_join(6, 99, input), Ok(Outcome::Parked));
    let joins = h.drain().0;
    assert_eq!(joins[0].1.as_ref().unwrap().generation, 2);
    // Unknown member ids are refused.
    assert_eq!(h.join(7, "nobody").1, Err(GroupError::UnknownMember));
}

#[test]
fn rebalance_timeout_drops_members_that_did_not_rejoin() {
    let mut h = Harness::with_topic(4);
    let results = h.join_all(0, 2);
    let generation = results[0].generation;
    for r in &results {
        h.sync(0, r).unwrap();
    }
    let (_, outcome) = h.join(100, "");
    assert_eq!(outcome, Ok(Outcome::Parked));
    // Only the first old member rejoins; the second keeps heartbeating but never rejoins.
    h.join_ok(200, &results[0].member_id);
    let deadline = 100 + u64::from(REBALANCE_MS);
    for now in (300..deadline).step_by(300) {
        let _ = h.coordinator.handle_heartbeat(now, "g", generation, &results[1].member_id);
        h.coordinator.tick(now);
        assert!(h.drain().0.is_empty(), "still waiting at {now}");
    }
    assert_eq!(h.coordinator.poll_timeout(), Some(deadline));
    h.coordinator.tick(deadline);
    let (joins, other) = h.drain();
    assert_eq!(joins.len(), 2);
    assert!(joins
        .iter()
        .all(|(_, r)| r.as_ref().unwrap().generation == generation + 1 && r.as_ref().unwrap().members.len() == 2));
    assert!(other
        .iter()
        .any(|a| matches!(a, Action::MemberRemoved { member_id, .. } if *member_id == results[1].member_id)));
}

#[test]
fn session_expiry_removes_a_silent_member_and_rebalances() {
    let mut h = Harness::with_topic(4);
    let results = h.join_all(0, 2);
    let generation = results[0].generation;
    for r in &results {
        h.sync(0, r).unwrap();
    }
    // Member 0 heartbeats at 600; member 1 is silent since 0.
    h.coordinator.handle_heartbeat(600, "g", generation, &results[0].member_id).unwrap();
    assert_eq!(h.coordinator.poll_timeout(), Some(u64::from(SESSION_MS)));
    h.coordinator.tick(999);
    assert_eq!(h.coordinator.describe_group("g").unwrap().members.len(), 2, "not before the timeout");
    h.coordinator.tick(1_000);
    let view = h.coordinator.describe_group("g").unwrap();
    assert_eq!(view.members.len(), 1);
    assert_eq!(view.state, GroupState::PreparingRebalance);
    assert_eq!(
        h.coordinator.handle_heartbeat(1_001, "g", generation, &results[1].member_id),
        Err(GroupError::UnknownMember)
    );
    h.join_ok(1_002, &results[0].member_id);
    let joins = h.drain().0;
    let result = joins[0].1.as_ref().unwrap();
    assert_eq!((result.generation, result.members.len()), (generation + 1, 1));
    assert_eq!(h.sync(1_003, result).unwrap().len(), 4, "the survivor takes every partition");
}

#[test]
fn leave_rebalances_and_last_leave_empties_the_group() {
    let mut h = Harness::with_topic(4);
    let results = h.join_all(0, 2);
    h.coordinator.handle_leave(10, "g", &results[1].member_id).unwrap();
    assert_eq!(h.state(), GroupState::PreparingRebalance);
    assert_eq!(h.coordinator.handle_leave(11, "g", &results[1].member_id), Err(GroupError::UnknownMember));
    h.coordinator.handle_leave(12, "g", &results[0].member_id).unwrap();
    // No members and no offsets: the group is dropped (Dead).
    assert!(h.coordinator.describe_group("g").is_none());
    assert!(h.coordinator.list_groups().is_empty());
}

#[test]
fn commit_generation_and_state_rules() {
    let mut h = Harness::with_topic(4);
    let a = h.join_all(0, 1).remove(0);
    // CompletingRebalance: the member does not know its assignment yet.
    assert_eq!(h.commit(1, 1, &a.member_id, 5), Err(GroupError::RebalanceInProgress));
    h.sync(2, &a).unwrap();
    assert_eq!(h.commit(3, 1, &a.member_id, 5), Ok(Outcome::Parked));
    assert_eq!(h.fetched(), Some(5), "an accepted commit is visible while it persists");
    assert_eq!(h.persist_all(Ok(())), vec![Ok(())]);
    assert_eq!(h.coordinator.describe_group("g").unwrap().offsets[0].offset, 5);
    assert_eq!(h.commit(4, 0, &a.member_id, 6), Err(GroupError::IllegalGeneration));
    assert_eq!(h.commit(4, 1, "nobody", 6), Err(GroupError::UnknownMember));
    let refused = h.commit(4, 0, "", 6);
    assert_eq!(refused, Err(GroupError::NotStandalone { members: 1 }), "no standalone commit while members exist");
    assert_eq!(refused.unwrap_err().code(), ErrorCode::UnknownMember);
    // PreparingRebalance: the current (old) generation may still commit.
    h.join_ok(5, "");
    assert_eq!(h.state(), GroupState::PreparingRebalance);
    assert_eq!(h.commit(6, 1, &a.member_id, 7), Ok(Outcome::Parked));
    assert_eq!(h.persist_all(Ok(())), vec![Ok(())]);
    h.join_ok(7, &a.member_id);
    let generation_2: Vec<JoinResult> = h.drain().0.into_iter().map(|(_, r)| r.unwrap()).collect();
    assert_eq!(h.commit(8, 1, &a.member_id, 8), Err(GroupError::RebalanceInProgress));
    for r in &generation_2 {
        assert_eq!(r.generation, 2);
        h.sync(9, r).unwrap();
    }
    assert_eq!(h.state(), GroupState::Stable);
    assert_eq!(h.commit(10, 1, &a.member_id, 8), Err(GroupError::IllegalGeneration), "stale generation");
    assert_eq!(h.fetched(), Some(7));
}

#[test]
fn failed_persist_answers_the_error_and_keeps_the_durable_offset() {
    let mut h = Harness::with_topic(1);
    assert_eq!(h.commit(0, 0, "", 10), Ok(Outcome::Parked), "standalone commit on an Empty group");
    assert_eq!(h.persist_all(Ok(())), vec![Ok(())]);
    assert_eq!(h.commit(1, 0, "", 20), Ok(Outcome::Parked));
    let replies = h.persist_all(Err(ErrorCode::StorageFull));
    assert_eq!(replies, vec![Err(GroupError::PersistFailed(ErrorCode::StorageFull))]);
    assert_eq!(replies[0].as_ref().unwrap_err().code(), ErrorCode::StorageFull);
    assert_eq!(h.fetched(), Some(10));
    assert!(!h.coordinator.handle_persisted(12345, Ok(())), "unknown persist id");
}

#[test]
fn partition_count_change_rebalances_with_the_new_count() {
    let mut h = Harness::with_topic(2);
    let a = h.join_all(0, 1).remove(0);
    assert_eq!(h.sync(1, &a).unwrap().len(), 2);
    h.coordinator.handle_topic_partitions_changed(2, "other", 9);
    assert_eq!(h.state(), GroupState::Stable, "unsubscribed topic: no rebalance");
    h.coordinator.handle_topic_partitions_changed(3, "t", 5);
    assert_eq!(h.state(), GroupState::PreparingRebalance);
    assert_eq!(h.coordinator.handle_heartbeat(4, "g", 1, &a.member_id), Err(GroupError::RebalanceInProgress));
    h.join_ok(5, &a.member_id);
    let joins = h.drain().0;
    let result = joins[0].1.clone().unwrap();
    assert_eq!(h.sync(6, &result).unwrap().len(), 5);
}

#[test]
fn limits_are_enforced() {
    let config = CoordinatorConfig { members_per_group_max: 2, groups_max: 1, ..CoordinatorConfig::default() };
    let mut h = Harness::new(config);
    h.join_all(0, 2);
    assert_eq!(h.join(1, "").1, Err(GroupError::GroupFull));
    assert_eq!(GroupError::GroupFull.code(), ErrorCode::GroupFull);
    let mut other = Harness::join_input("", &["t"]);
    other.group_id = "h".into();
    assert_eq!(h.coordinator.handle_join(2, 50, other.clone()), Err(GroupError::TooManyGroups { groups_max: 1 }));
    assert_eq!(GroupError::TooManyGroups { groups_max: 1 }.code(), ErrorCode::TooManyGroups);
    other.group_id = "g".into();
    other.session_timeout_ms = 10;
    assert!(matches!(h.coordinator.handle_join(2, 51, other.clone()), Err(GroupError::InvalidRequest(_))));
    other.session_timeout_ms = SESSION_MS;
    other.assignor = Assignor::RoundRobin;
    assert!(matches!(h.coordinator.handle_join(2, 52, other.clone()), Err(GroupError::InvalidRequest(_))));
    other.group_id = String::new();
    assert_eq!(h.coordinator.handle_join(2, 53, other), Err(GroupError::InvalidGroupId));
    let offsets = vec![
        CommittedOffset { topic: "t".into(), partition: 0, offset: 1, metadata: String::new() };
        strand_core::group::OFFSETS_PER_COMMIT_MAX + 1
    ];
    let input = CommitInput { group_id: "g".into(), generation: 1, member_id: String::new(), offsets };
    assert!(matches!(h.coordinator.handle_commit(3, 54, input), Err(GroupError::InvalidRequest(_))));
}

#[test]
fn loading_refuses_requests_and_replays_offsets_in_order() {
    let mut coordinator = GroupCoordinator::new(CoordinatorConfig::default(), 1);
    let join = Harness::join_input("", &["t"]);
    assert_eq!(coordinator.handle_join(0, 1, join), Err(GroupError::Loading));
    assert_eq!(GroupError::Loading.code(), ErrorCode::CoordinatorNotAvailable);
    for offset in [3u64, 9, 4] {
        let record = CommitRecord {
            group_id: "g".into(),
            topic: "t".into(),
            partition: 0,
            offset,
            commit_ms: 0,
            metadata: "m".into(),
            tombstone: false,
        };
        let decoded = CommitRecord::decode(&record.encode()).expect("round trip");
        coordinator.load_offset_record(decoded);
    }
    coordinator.finish_loading();
    let fetched = coordinator.handle_offset_fetch("g", &[]).unwrap();
    assert_eq!(fetched.len(), 1);
    assert_eq!((fetched[0].offset, fetched[0].metadata.as_str()), (4, "m"), "the last record wins");
    assert!(coordinator.handle_offset_fetch("unknown", &[]).unwrap().is_empty());
}

#[test]
fn superseded_parked_join_is_answered() {
    let mut h = Harness::with_topic(2);
    let results = h.join_all(0, 2);
    h.join_ok(10, ""); // a third member starts a rebalance
    let (old, _) = h.join(11, &results[0].member_id);
    let (new, _) = h.join(12, &results[0].member_id);
    let joins = h.drain().0;
    assert_eq!(joins, vec![(old, Err(GroupError::RebalanceInProgress))]);
    h.join_ok(13, &results[1].member_id);
    let joins = h.drain().0;
    assert_eq!(joins.len(), 3);
    assert!(joins.iter().any(|(id, r)| *id == new && r.is_ok()));
}

/// A commit input of `(topic, partition, offset)` with empty metadata.
fn commit_input(group: &str, generation: u32, member: &str, offsets: &[(&str, u32, u64)]) -> CommitInput {
    let offsets = offsets
        .iter()
        .map(|(t, p, o)| CommittedOffset { topic: t.to_string(), partition: *p, offset: *o, metadata: String::new() })
        .collect();
    CommitInput { group_id: group.into(), generation, member_id: member.into(), offsets }
}

#[test]
fn hostile_commits_into_an_active_group_are_refused() {
    let mut h = Harness::with_topic(2);
    let results = h.join_all(0, 2);
    for r in &results {
        h.sync(1, r).unwrap();
    }
    assert_eq!(h.state(), GroupState::Stable);
    let (a, generation) = (&results[0], results[0].generation);
    let owned = h.coordinator.describe_group("g").unwrap().members[0].assignment[0].partition;
    let other = 1 - owned;
    // (who, input, expected refusal)
    let cases = [
        ("standalone", commit_input("g", 0, "", &[("t", 0, 9)]), GroupError::NotStandalone { members: 2 }),
        ("empty member id", commit_input("g", generation, "", &[("t", 0, 9)]), GroupError::UnknownMember),
        ("made-up member", commit_input("g", generation, "x", &[("t", 0, 9)]), GroupError::UnknownMember),
        (
            "stale generation",
            commit_input("g", generation - 1, &a.member_id, &[("t", owned, 9)]),
            GroupError::IllegalGeneration,
        ),
        (
            "not the owner",
            commit_input("g", generation, &a.member_id, &[("t", owned, 9), ("t", other, 9)]),
            GroupError::NotAssigned { topic: "t".into(), partition: other, generation },
        ),
    ];
    for (what, input, expect) in cases {
        assert_eq!(h.coordinator.handle_commit(2, 100, input), Err(expect.clone()), "{what}");
        assert_ne!(expect.code(), ErrorCode::None, "{what}");
    }
    assert!(h.coordinator.handle_offset_fetch("g", &[]).unwrap().is_empty(), "nothing moved");
    let own = commit_input("g", generation, &a.member_id, &[("t", owned, 9)]);
    assert_eq!(h.coordinator.handle_commit(3, 101, own), Ok(Outcome::Parked));
}

#[test]
fn metadata_and_offsets_budget_are_bounded() {
    let config =
        CoordinatorConfig { offset_metadata_bytes_max: 8, offsets_bytes_max: 1_000, ..CoordinatorConfig::default() };
    let mut h = Harness::new(config);
    let mut input = commit_input("s", 0, "", &[("t", 0, 1)]);
    input.offsets[0].metadata = "12345678".into();
    assert_eq!(h.coordinator.handle_commit(0, 1, input.clone()), Ok(Outcome::Parked));
    input.offsets[0].metadata = "123456789".into();
    let refused = h.coordinator.handle_commit(0, 2, input);
    let expect = GroupError::MetadataTooLarge { topic: "t".into(), partition: 0, len: 9, max: 8 };
    assert_eq!(refused, Err(expect.clone()));
    assert_eq!(expect.code(), ErrorCode::OffsetMetadataTooLarge);
    // 137 bytes per entry ("t" + 8 bytes of metadata + 128): the 8th would pass 1000.
    h.persist_all(Ok(()));
    let held = h.coordinator.offsets_bytes();
    let many: Vec<(&str, u32, u64)> = (1..=7).map(|p| ("t", p, 1)).collect();
    let refused = h.coordinator.handle_commit(1, 3, commit_input("s", 0, "", &many));
    assert!(matches!(refused, Err(GroupError::OffsetsBudgetFull { max: 1_000, .. })), "{refused:?}");
    assert_eq!(h.coordinator.offsets_bytes(), held, "a refused commit holds nothing");
    let fits: Vec<(&str, u32, u64)> = (1..=6).map(|p| ("t", p, 1)).collect();
    assert_eq!(h.coordinator.handle_commit(1, 4, commit_input("s", 0, "", &fits)), Ok(Outcome::Parked));
}

#[test]
fn empty_group_offsets_expire_with_tombstones_and_stay_expired() {
    let config = CoordinatorConfig { offsets_retention_ms: 1_000, ..CoordinatorConfig::default() };
    let mut h = Harness::new(config.clone());
    assert_eq!(h.coordinator.handle_commit(0, 1, commit_input("s", 0, "", &[("t", 0, 7)])), Ok(Outcome::Parked));
    h.persist_all(Ok(()));
    assert_eq!(h.coordinator.poll_timeout(), Some(1_000));
    h.coordinator.tick(999);
    assert!(h.coordinator.poll_action().is_none(), "not due yet");
    h.coordinator.tick(1_000);
    let Some(Action::PersistOffsets { persist_id, records }) = h.coordinator.poll_action() else {
        panic!("no tombstones")
    };
    assert_eq!(records.len(), 1);
    assert!(records[0].tombstone && records[0].offset == 7);
    // While the tombstones persist, commits wait and the offsets still show.
    let waiting = h.coordinator.handle_commit(1_001, 2, commit_input("s", 0, "", &[("t", 0, 8)]));
    assert_eq!(waiting, Err(GroupError::Expiring));
    assert_eq!(h.coordinator.handle_offset_fetch("s", &[]).unwrap().len(), 1);
    assert!(h.coordinator.handle_persisted(persist_id, Ok(())));
    assert!(h.coordinator.handle_offset_fetch("s", &[]).unwrap().is_empty());
    assert!(h.coordinator.list_groups().is_empty(), "the group is dropped");
    assert_eq!(h.coordinator.offsets_bytes(), 0);
    // A replay of the commit and its tombstone loads nothing.
    let mut replayed = GroupCoordinator::new(config, 2);
    let commit = CommitRecord { tombstone: false, offset: 7, ..records[0].clone() };
    for record in [commit, records[0].clone()] {
        replayed.load_offset_record(CommitRecord::decode(&record.encode()).unwrap());
    }
    replayed.finish_loading();
    assert!(replayed.list_groups().is_empty() && replayed.offsets_bytes() == 0);
}

#[test]
fn a_group_with_members_keeps_its_offsets_past_retention() {
    let config = CoordinatorConfig { offsets_retention_ms: 1_000, ..CoordinatorConfig::default() };
    let mut h = Harness::new(config);
    h.coordinator.handle_topic_partitions_changed(0, "t", 1);
    let results = h.join_all(0, 1);
    h.sync(0, &results[0]).unwrap();
    assert_eq!(h.commit(0, results[0].generation, &results[0].member_id, 3), Ok(Outcome::Parked));
    h.persist_all(Ok(()));
    for now in (300..3_000).step_by(300) {
        assert!(h.coordinator.handle_heartbeat(now, "g", results[0].generation, &results[0].member_id).is_ok());
        h.coordinator.tick(now);
    }
    assert_eq!(h.coordinator.handle_offset_fetch("g", &[]).unwrap().len(), 1, "a live group never expires");
}

#[test]
fn delete_group_refuses_members_then_tombstones_every_offset_and_stays_deleted() {
    let mut h = Harness::with_topic(2);
    assert_eq!(h.coordinator.handle_delete_group(0, 90, "g"), Err(GroupError::NotFound), "no such group");
    assert_eq!(h.coordinator.handle_delete_group(0, 90, ""), Err(GroupError::InvalidGroupId));
    let results = h.join_all(0, 1);
    h.sync(0, &results[0]).unwrap();
    assert_eq!(h.commit(0, results[0].generation, &results[0].member_id, 5), Ok(Outcome::Parked));
    h.persist_all(Ok(()));
    let refused = h.coordinator.handle_delete_group(1, 91, "g");
    assert_eq!(refused, Err(GroupError::NonEmpty { members: 1 }));
    assert_eq!(refused.unwrap_err().code(), ErrorCode::NonEmptyGroup);
    h.coordinator.handle_leave(2, "g", &results[0].member_id).unwrap();
    h.drain();
    // Empty now: a standalone commit (Kafka's generation -1 commit) is accepted.
    let standalone = commit_input("g", 0, "", &[("t", 1, 9)]);
    assert_eq!(h.coordinator.handle_commit(3, 92, standalone), Ok(Outcome::Parked));
    assert_eq!(h.coordinator.handle_delete_group(3, 93, "g"), Err(GroupError::Expiring), "a commit is in flight");
    h.persist_all(Ok(()));
    assert_eq!(h.coordinator.handle_delete_group(4, 94, "g"), Ok(Outcome::Parked));
    let Some(Action::PersistOffsets { persist_id, records }) = h.coordinator.poll_action() else {
        panic!("no tombstones")
    };
    let written: Vec<(u32, u64, bool)> = records.iter().map(|r| (r.partition, r.offset, r.tombstone)).collect();
    assert_eq!(written, vec![(0, 5, true), (1, 9, true)], "one tombstone per committed partition");
    let late = h.coordinator.handle_commit(5, 95, commit_input("g", 0, "", &[("t", 0, 1)]));
    assert_eq!(late, Err(GroupError::Expiring), "commits wait while the deletion persists");
    assert!(h.coordinator.handle_persisted(persist_id, Ok(())));
    let Some(Action::Respond { request_id: 94, reply: Reply::Delete(Ok(())) }) = h.coordinator.poll_action() else {
        panic!("deletion not answered")
    };
    assert!(h.coordinator.describe_group("g").is_none(), "the group is gone");
    assert_eq!(h.coordinator.offsets_bytes(), 0);
    // A replay of the commits and the tombstones brings nothing back.
    let mut replayed = GroupCoordinator::new(CoordinatorConfig::default(), 2);
    for r in &records {
        replayed.load_offset_record(CommitRecord { tombstone: false, ..r.clone() });
    }
    for r in &records {
        replayed.load_offset_record(CommitRecord::decode(&r.encode()).unwrap());
    }
    replayed.finish_loading();
    assert!(replayed.list_groups().is_empty());
}

#[test]
fn failed_delete_persist_keeps_the_offsets() {
    let mut h = Harness::with_topic(1);
    assert_eq!(h.coordinator.handle_commit(0, 1, commit_input("g", 0, "", &[("t", 0, 4)])), Ok(Outcome::Parked));
    h.persist_all(Ok(()));
    assert_eq!(h.coordinator.handle_delete_group(1, 2, "g"), Ok(Outcome::Parked));
    let Some(Action::PersistOffsets { persist_id, .. }) = h.coordinator.poll_action() else { panic!("no tombstones") };
    assert!(h.coordinator.handle_persisted(persist_id, Err(ErrorCode::StorageError)));
    let Some(Action::Respond { reply: Reply::Delete(Err(e)), .. }) = h.coordinator.poll_action() else {
        panic!("deletion not answered")
    };
    assert_eq!(e.code(), ErrorCode::StorageError);
    assert_eq!(h.fetched(), Some(4), "offsets kept when the tombstones were not stored");
}
