//! Consumer groups on the real node binary (2 shards, so half the groups are
//! coordinated by the shard the client did not connect to and every request is
//! forwarded): assignment over 4 partitions for 1, 2, 4 and 5 members, commit and
//! offset fetch, stale-generation commits, session expiry, partition-count changes,
//! offsets across SIGTERM / SIGKILL restarts (also with another shard count), lag in
//! DescribeGroup, `/v1/groups` and `/metrics`, and the reserved `__` topics.

mod common;
#[path = "common/groups.rs"]
mod groups;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use common::{batch, Node};
use groups::{commit, describe, fetch_offsets, wait_for, wait_stable, Member, MemberConfig};
use strand_wire::msg::*;
use strand_wire::ErrorCode;

const STABLE_WAIT: Duration = Duration::from_secs(20);

fn all_partitions(topic: &str, count: u32) -> BTreeSet<(String, u32)> {
    (0..count).map(|p| (topic.to_string(), p)).collect()
}

#[test]
fn four_partitions_spread_over_1_2_4_and_5_members() {
    let dir = tempfile::tempdir().unwrap();
    let node = Node::start(dir.path(), 2, &[]);
    let mut c = node.client();
    assert_eq!(c.create_topic("work", 4).error, ErrorCode::None);
    for (count, expect) in [(1usize, vec![4]), (2, vec![2, 2]), (4, vec![1, 1, 1, 1]), (5, vec![0, 1, 1, 1, 1])] {
        let group = format!("spread-{count}");
        let started = Instant::now();
        // Alternate shard ports: whichever shard coordinates, half the members are forwarded.
        let members: Vec<Member> = (0..count)
            .map(|i| {
                let port = node.shard_ports[i % 2];
                let addr = std::net::SocketAddr::new(node.public.ip(), port);
                Member::start(addr, MemberConfig::new(&group, &["work"]))
            })
            .collect();
        let refs: Vec<&Member> = members.iter().collect();
        let states = wait_stable(&mut c, &group, &refs, STABLE_WAIT);
        eprintln!("{group}: {count} members stable after {:?}", started.elapsed());
        let mut sizes: Vec<usize> = states.iter().map(|s| s.assignment.len()).collect();
        sizes.sort();
        assert_eq!(sizes, expect, "{group}: {states:?}");
        let mut owned = BTreeSet::new();
        for s in &states {
            for tp in &s.assignment {
                assert!(owned.insert((tp.topic.clone(), tp.partition)), "{group}: {tp:?} assigned twice");
            }
        }
        assert_eq!(owned, all_partitions("work", 4), "{group}: every partition assigned");
        let d = describe(&mut c, &group);
        assert_eq!(d.members.len(), count);
        let described: usize = d.members.iter().map(|m| m.assignment.len()).sum();
        assert_eq!(described, 4);
        for m in members {
            m.leave();
        }
        let d = wait_for(Duration::from_secs(5), "group empty after leaves", || {
            let d = describe(&mut c, &group);
            (d.state == "Empty" || d.state == "Dead").then_some(d)
        });
        assert!(d.members.is_empty());
    }
    let (h, _) = c.call(Request::ListGroups, &[]);
    let Response::ListGroups(list) = h.response else { panic!("list groups: {:?}", h.message) };
    // Groups with no members and nothing committed are dropped.
    assert!(list.groups.iter().all(|g| g.member_count == 0), "{list:?}");
}

#[test]
fn commit_fetch_stale_generation_and_describe_lag() {
    let dir = tempfile::tempdir().unwrap();
    let node = Node::start(dir.path(), 2, &[]);
    let mut c = node.client();
    assert_eq!(c.create_topic("orders", 4).error, ErrorCode::None);
    c.produce("orders", 0, &batch(&[b"a", b"b", b"c", b"d", b"e", b"f", b"g", b"h", b"i", b"j"], 1));
    let first = Member::start(node.public, MemberConfig::new("billing", &["orders"]));
    let s1 = wait_stable(&mut c, "billing", &[&first], STABLE_WAIT).remove(0);
    assert_eq!(s1.assignment.len(), 4);
    assert_eq!(
        commit(&mut c, "billing", s1.generation, &s1.member_id, &[("orders", 0, 4), ("orders", 1, 0)]),
        ErrorCode::None
    );
    assert_eq!(fetch_offsets(&mut c, "billing"), vec![("orders".into(), 0, 4), ("orders".into(), 1, 0)]);
    // A wrong member id is refused too.
    assert_eq!(commit(&mut c, "billing", s1.generation, "nobody", &[("orders", 0, 9)]), ErrorCode::UnknownMember);

    let d = describe(&mut c, "billing");
    assert_eq!((d.state.as_str(), d.generation), ("Stable", s1.generation));
    let lags: Vec<(u32, u64, u64, u64)> =
        d.partitions.iter().map(|p| (p.partition, p.committed, p.log_end_offset, p.lag)).collect();
    assert_eq!(lags, vec![(0, 4, 10, 6), (1, 0, 0, 0), (2, u64::MAX, 0, 0), (3, u64::MAX, 0, 0)]);

    // A second member bumps the generation: the first member's old generation is stale.
    let second = Member::start(node.public, MemberConfig::new("billing", &["orders"]));
    let states = wait_stable(&mut c, "billing", &[&first, &second], STABLE_WAIT);
    assert!(states[0].generation > s1.generation);
    let stale = commit(&mut c, "billing", s1.generation, &s1.member_id, &[("orders", 0, 7)]);
    assert_eq!(stale, ErrorCode::IllegalGeneration);
    assert_eq!(fetch_offsets(&mut c, "billing")[0], ("orders".into(), 0, 4), "stale commit did not land");
    let current = &states[0];
    assert_eq!(commit(&mut c, "billing", current.generation, &current.member_id, &[("orders", 0, 7)]), ErrorCode::None);
    assert_eq!(fetch_offsets(&mut c, "billing")[0], ("orders".into(), 0, 7));

    // Heartbeat with a stale generation: the member must rejoin.
    let beat =
        HeartbeatRequest { group_id: "billing".into(), generation: s1.generation, member_id: s1.member_id.clone() };
    assert_eq!(c.call(Request::Heartbeat(beat), &[]).0.error, ErrorCode::IllegalGeneration);
    let sync = SyncGroupRequest { group_id: "billing".into(), generation: 1, member_id: "ghost".into() };
    assert_eq!(c.call(Request::SyncGroup(sync), &[]).0.error, ErrorCode::UnknownMember);
    let unknown = describe(&mut c, "never-seen");
    assert_eq!((unknown.state.as_str(), unknown.members.len()), ("Dead", 0));
    let empty = JoinGroupRequest {
        group_id: String::new(),
        member_id: String::new(),
        client_id: "x".into(),
        session_timeout_ms: 3000,
        rebalance_timeout_ms: 3000,
        topics: vec!["orders".into()],
        assignor: Assignor::Range,
    };
    assert_eq!(c.call(Request::JoinGroup(empty), &[]).0.error, ErrorCode::InvalidGroupId);
}

#[test]
fn silent_member_expires_and_survivor_takes_its_partitions() {
    let dir = tempfile::tempdir().unwrap();
    let node = Node::start(dir.path(), 2, &[]);
    let mut c = node.client();
    assert_eq!(c.create_topic("jobs", 4).error, ErrorCode::None);
    let mut config = MemberConfig::new("workers", &["jobs"]);
    config.session_timeout_ms = 1_500;
    let shard_addr = |s: usize| std::net::SocketAddr::new(node.public.ip(), node.shard_ports[s]);
    let stays = Member::start(shard_addr(0), config.clone());
    let dies = Member::start(shard_addr(1), config);
    let states = wait_stable(&mut c, "workers", &[&stays, &dies], STABLE_WAIT);
    assert_eq!(states.iter().map(|s| s.assignment.len()).collect::<Vec<_>>(), vec![2, 2]);
    let silent_since = Instant::now();
    dies.go_silent();
    let after = wait_stable(&mut c, "workers", &[&stays], STABLE_WAIT).remove(0);
    let took = silent_since.elapsed();
    assert!(after.generation > states[0].generation);
    let owned: BTreeSet<(String, u32)> = after.assignment.iter().map(|tp| (tp.topic.clone(), tp.partition)).collect();
    assert_eq!(owned, all_partitions("jobs", 4));
    assert!(took >= Duration::from_millis(1_000), "expired after {took:?}, before its session timeout");
    assert!(took < Duration::from_secs(10), "expiry took {took:?}");
    let (_, metrics) = node.admin_get("/metrics");
    assert!(metrics.contains("strand_group_members_removed_total"), "{metrics}");
}

#[test]
fn topic_creation_and_deletion_rebalance_subscribers() {
    let dir = tempfile::tempdir().unwrap();
    let node = Node::start(dir.path(), 2, &[]);
    let mut c = node.client();
    let member = Member::start(node.public, MemberConfig::new("early", &["later"]));
    let before = wait_stable(&mut c, "early", &[&member], STABLE_WAIT).remove(0);
    assert!(before.assignment.is_empty(), "no topic yet: {before:?}");
    assert_eq!(c.create_topic("later", 3).error, ErrorCode::None);
    let grown = wait_for(STABLE_WAIT, "assignment after topic creation", || {
        let s = member.snapshot();
        (s.synced && s.assignment.len() == 3).then_some(s)
    });
    assert!(grown.generation > before.generation);
    let (h, _) = c.call(Request::DeleteTopic(DeleteTopicRequest { name: "later".into() }), &[]);
    assert_eq!(h.error, ErrorCode::None);
    wait_for(STABLE_WAIT, "empty assignment after topic deletion", || {
        let s = member.snapshot();
        (s.synced && s.assignment.is_empty() && s.generation > grown.generation).then_some(())
    });
}

#[test]
fn committed_offsets_survive_sigterm_restart_with_another_shard_count() {
    let dir = tempfile::tempdir().unwrap();
    let mut node = Node::start(dir.path(), 2, &[]);
    let mut c = node.client();
    assert_eq!(c.create_topic("keep", 2).error, ErrorCode::None);
    let member = Member::start(node.public, MemberConfig::new("member-group", &["keep"]));
    let s = wait_stable(&mut c, "member-group", &[&member], STABLE_WAIT).remove(0);
    assert_eq!(
        commit(&mut c, "member-group", s.generation, &s.member_id, &[("keep", 0, 11), ("keep", 1, 12)]),
        ErrorCode::None
    );
    // Standalone commits (no members) for many groups: they spread over both shards.
    for g in 0..8u64 {
        assert_eq!(commit(&mut c, &format!("solo-{g}"), 0, "", &[("keep", 1, g)]), ErrorCode::None);
        assert_eq!(commit(&mut c, &format!("solo-{g}"), 0, "", &[("keep", 1, 100 + g)]), ErrorCode::None);
    }
    member.leave();
    assert!(node.signal_and_wait(libc::SIGTERM, Duration::from_secs(20)).success());
    drop(node);

    for shards in [2u16, 3] {
        let node = Node::start(dir.path(), shards, &[]);
        let mut c = node.client();
        assert_eq!(fetch_offsets(&mut c, "member-group"), vec![("keep".into(), 0, 11), ("keep".into(), 1, 12)]);
        for g in 0..8u64 {
            assert_eq!(
                fetch_offsets(&mut c, &format!("solo-{g}")),
                vec![("keep".into(), 1, 100 + g)],
                "{shards} shards"
            );
        }
        drop(node);
    }
}

#[test]
fn acknowledged_commits_survive_sigkill_with_fsync_always() {
    let dir = tempfile::tempdir().unwrap();
    let mut node = Node::start(dir.path(), 2, &["--fsync", "always"]);
    let mut c = node.client();
    assert_eq!(c.create_topic("crash", 4).error, ErrorCode::None);
    let member = Member::start(node.public, MemberConfig::new("crashers", &["crash"]));
    let s = wait_stable(&mut c, "crashers", &[&member], STABLE_WAIT).remove(0);
    let mut acked = 0;
    let started = Instant::now();
    for offset in 1..=50u64 {
        let offsets: Vec<(&str, u32, u64)> = (0..4).map(|p| ("crash", p, offset * 10 + u64::from(p))).collect();
        assert_eq!(commit(&mut c, "crashers", s.generation, &s.member_id, &offsets), ErrorCode::None);
        acked = offset;
    }
    eprintln!("50 commits of 4 offsets with fsync always: {:?} ({:?} each)", started.elapsed(), started.elapsed() / 50);
    node.signal_and_wait(libc::SIGKILL, Duration::from_secs(10));
    drop(member);
    drop(node);

    let node = Node::start(dir.path(), 2, &["--fsync", "always"]);
    let mut c = node.client();
    let expect: Vec<(String, u32, u64)> = (0..4).map(|p| ("crash".to_string(), p, acked * 10 + u64::from(p))).collect();
    assert_eq!(fetch_offsets(&mut c, "crashers"), expect);
}

#[test]
fn lag_in_admin_groups_and_metrics() {
    let dir = tempfile::tempdir().unwrap();
    let node = Node::start(dir.path(), 2, &[]);
    let mut c = node.client();
    assert_eq!(c.create_topic("lagt", 2).error, ErrorCode::None);
    c.produce("lagt", 0, &batch(&[b"1", b"2", b"3", b"4", b"5", b"6", b"7", b"8", b"9", b"10"], 1));
    c.produce("lagt", 1, &batch(&[b"1", b"2", b"3"], 1));
    assert_eq!(commit(&mut c, "lagging", 0, "", &[("lagt", 0, 4), ("lagt", 1, 3)]), ErrorCode::None);
    let json = wait_for(Duration::from_secs(10), "lag in /v1/groups", || {
        let (status, body) = node.admin_get("/v1/groups");
        assert_eq!(status, 200);
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        let group = v["groups"].as_array()?.iter().find(|g| g["group_id"] == "lagging")?.clone();
        let p0 = group["partitions"].as_array()?.iter().find(|p| p["partition"] == 0)?.clone();
        (p0["log_end_offset"] == 10).then_some(group)
    });
    let parts: Vec<(u64, u64, u64, u64)> = json["partitions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            let n = |k: &str| p[k].as_u64().unwrap();
            (n("partition"), n("committed"), n("log_end_offset"), n("lag"))
        })
        .collect();
    assert_eq!(parts, vec![(0, 4, 10, 6), (1, 3, 3, 0)]);
    assert_eq!(json["state"], "Empty");
    let (_, metrics) = node.admin_get("/metrics");
    assert!(metrics.contains("strand_consumer_lag{group=\"lagging\",topic=\"lagt\",partition=\"0\"} 6"), "{metrics}");
    assert!(metrics.contains("strand_consumer_lag{group=\"lagging\",topic=\"lagt\",partition=\"1\"} 0"), "{metrics}");
    assert!(
        metrics.contains("strand_consumer_committed_offset{group=\"lagging\",topic=\"lagt\",partition=\"0\"} 4"),
        "{metrics}"
    );
    assert!(metrics.contains("strand_requests_total{shard=\"0\",api=\"offset_commit\"}"), "{metrics}");
}

#[test]
fn internal_topics_are_reserved_and_hidden() {
    let dir = tempfile::tempdir().unwrap();
    let node = Node::start(dir.path(), 2, &[]);
    let mut c = node.client();
    assert_eq!(c.create_topic("visible", 1).error, ErrorCode::None);
    let (h, _) = c.call(Request::ListTopics, &[]);
    let Response::ListTopics(list) = h.response else { panic!("list topics") };
    assert_eq!(list.topics.iter().map(|t| t.name.as_str()).collect::<Vec<_>>(), vec!["visible"]);
    let (h, _) = c.call(Request::Metadata(MetadataRequest { topics: Vec::new() }), &[]);
    let Response::Metadata(m) = h.response else { panic!("metadata") };
    assert!(m.topics.iter().all(|t| !t.name.starts_with("__")), "{m:?}");
    assert_eq!(c.create_topic("__mine", 1).error, ErrorCode::InvalidTopicName);
    let (h, _) = c.call(Request::DeleteTopic(DeleteTopicRequest { name: "__consumer_offsets".into() }), &[]);
    assert_eq!(h.error, ErrorCode::InvalidTopicName);
    let b = batch(&[b"forged"], 1);
    let produce = ProduceRequest {
        acks: Acks::Leader,
        timeout_ms: 1000,
        partitions: vec![ProducePartition {
            topic: "__consumer_offsets".into(),
            partition: 0,
            bytes_len: b.len() as u32,
        }],
    };
    let (h, _) = c.call(Request::Produce(produce), &b);
    let Response::Produce(r) = h.response else { panic!("produce: {:?}", h.message) };
    assert_eq!(r.partitions[0].error, ErrorCode::InvalidRequest);
    let (_, topics) = node.admin_get("/v1/topics");
    let v: serde_json::Value = serde_json::from_str(&topics).unwrap();
    let internal = v["topics"].as_array().unwrap().iter().find(|t| t["name"] == "__consumer_offsets").unwrap();
    assert_eq!(internal["internal"], true);
    assert_eq!(internal["partitions"], 2);
}

#[test]
fn assignor_is_chosen_per_group() {
    let dir = tempfile::tempdir().unwrap();
    let node = Node::start(dir.path(), 2, &[]);
    let mut c = node.client();
    assert_eq!(c.create_topic("left", 3).error, ErrorCode::None);
    assert_eq!(c.create_topic("right", 3).error, ErrorCode::None);
    // Range deals each topic separately (3 = 2 + 1 twice: 4 and 2); round-robin deals
    // all 6 partitions in turn (3 and 3).
    for (assignor, expect) in [(Assignor::Range, vec![2, 4]), (Assignor::RoundRobin, vec![3, 3])] {
        let group = format!("{assignor:?}");
        let mut config = MemberConfig::new(&group, &["left", "right"]);
        config.assignor = assignor;
        let members = [Member::start(node.public, config.clone()), Member::start(node.public, config)];
        let states = wait_stable(&mut c, &group, &[&members[0], &members[1]], STABLE_WAIT);
        let mut sizes: Vec<usize> = states.iter().map(|s| s.assignment.len()).collect();
        sizes.sort();
        assert_eq!(sizes, expect, "{group}: {states:?}");
        assert_eq!(describe(&mut c, &group).assignor, assignor);
    }
}
