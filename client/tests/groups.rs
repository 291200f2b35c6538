//! Consumer groups against a real `strand-node`, through the real `Consumer::subscribe`:
//! partition counts bound a group's parallelism (2 → 2 each, 4 → 1 each, a 5th idles);
//! a crashed member is replaced after the session timeout and the group resumes from
//! the last commit (checked with per-partition sequence numbers); committed offsets
//! survive a node restart; and the CLI's `consume --group` / `group describe`.

mod common;
mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use common::cli::{ok, strand};
use strand_client::admin::COMMITTED_NONE;
use strand_client::{
    Admin, Client, Consumer, ConsumerConfig, OffsetReset, Producer, ProducerConfig, ProducerRecord, RebalanceListener,
    TopicPartition,
};
use support::Node;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

/// Short timeouts keep the file fast; the node's minimum session timeout is 1 s.
fn group_config() -> ConsumerConfig {
    ConsumerConfig {
        session_timeout: Duration::from_millis(2000),
        heartbeat_interval: Duration::from_millis(200),
        rebalance_timeout: Duration::from_secs(5),
        auto_commit_interval: Duration::from_millis(200),
        auto_offset_reset: OffsetReset::Earliest,
        max_wait: Duration::from_millis(100),
        ..ConsumerConfig::default()
    }
}

/// A record as seen by the test: which member got it, where it came from.
#[derive(Debug, Clone)]
struct Seen {
    member: usize,
    partition: u32,
    offset: u64,
    value: String,
}

/// What a member reports, in the order it happened on its task.
#[derive(Debug, Clone)]
enum Event {
    Record(Seen),
    Revoked(usize, Vec<u32>),
    Assigned(usize, Vec<u32>),
}

/// Remembers the latest assignment (`None` until the first `on_assigned`) and reports
/// callbacks into the member's event channel.
struct Recorder {
    member: usize,
    assignment: Arc<Mutex<Option<Vec<TopicPartition>>>>,
    events: mpsc::UnboundedSender<Event>,
}

fn numbers(partitions: &[TopicPartition]) -> Vec<u32> {
    partitions.iter().map(|tp| tp.partition).collect()
}

impl RebalanceListener for Recorder {
    fn on_revoked(&mut self, partitions: &[TopicPartition]) {
        *self.assignment.lock().expect("assignment lock") = None;
        let _ = self.events.send(Event::Revoked(self.member, numbers(partitions)));
    }

    fn on_assigned(&mut self, partitions: &[TopicPartition]) {
        *self.assignment.lock().expect("assignment lock") = Some(partitions.to_vec());
        let _ = self.events.send(Event::Assigned(self.member, numbers(partitions)));
    }
}

enum Stop {
    /// Commit and leave.
    Close,
    /// Drop without leaving, connections cut: what a crashed process looks like.
    Crash,
}

/// A group member polling in its own task.
struct Member {
    assignment: Arc<Mutex<Option<Vec<TopicPartition>>>>,
    stop: oneshot::Sender<Stop>,
    task: tokio::task::JoinHandle<()>,
}

impl Member {
    fn partitions(&self) -> Option<Vec<u32>> {
        let assignment = self.assignment.lock().expect("assignment lock");
        assignment.as_ref().map(|a| a.iter().map(|tp| tp.partition).collect())
    }

    async fn stop(self, how: Stop) {
        let _ = self.stop.send(how);
        self.task.await.expect("member task");
    }
}

async fn spawn_member(
    node: &Node,
    id: usize,
    group: &str,
    topic: &str,
    config: ConsumerConfig,
    seen: mpsc::UnboundedSender<Event>,
) -> Member {
    // Its own client, so a crash cuts only this member's connections.
    let client = node.client().await;
    let assignment = Arc::new(Mutex::new(None));
    let (stop, mut stop_rx) = oneshot::channel();
    let recorder = Recorder { member: id, assignment: assignment.clone(), events: seen.clone() };
    let (group, topic) = (group.to_string(), topic.to_string());
    let task = tokio::spawn(async move {
        let mut consumer = Consumer::new(client.clone(), config);
        consumer.subscribe_with(&group, &[topic.as_str()], recorder).await.expect("subscribe");
        loop {
            match stop_rx.try_recv() {
                Ok(Stop::Close) => return consumer.close().await.expect("close"),
                Ok(Stop::Crash) => {
                    client.abort_connections();
                    return drop(consumer);
                }
                Err(_) => {}
            }
            for r in consumer.poll(Duration::from_millis(100)).await.expect("poll") {
                let value = String::from_utf8_lossy(r.value.as_deref().unwrap_or(b"null")).to_string();
                let _ = seen.send(Event::Record(Seen { member: id, partition: r.partition, offset: r.offset, value }));
            }
        }
    });
    Member { assignment, stop, task }
}

/// Waits until every member has an assignment and `check` accepts them all.
async fn wait_assignments(members: &[&Member], check: impl Fn(&[Vec<u32>]) -> bool) -> Vec<Vec<u32>> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let got: Option<Vec<Vec<u32>>> = members.iter().map(|m| m.partitions()).collect();
        if let Some(got) = got {
            if check(&got) {
                return got;
            }
        }
        let current: Vec<Option<Vec<u32>>> = members.iter().map(|m| m.partitions()).collect();
        assert!(Instant::now() < deadline, "assignments never settled: {current:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Each member owns `per_member` partitions (0 for the extras) and they cover all `count` once.
fn balanced(got: &[Vec<u32>], count: u32, per_member: usize) -> bool {
    let all: Vec<u32> = got.iter().flatten().copied().collect();
    let distinct: BTreeSet<u32> = all.iter().copied().collect();
    let owners = got.iter().filter(|a| !a.is_empty()).count();
    all.len() == count as usize
        && distinct.len() == count as usize
        && owners == count as usize / per_member
        && got.iter().all(|a| a.is_empty() || a.len() == per_member)
}

/// Produces `count` records to every partition, values `p:seq` with seq from `first`.
async fn produce_seq(client: &Client, topic: &str, partitions: u32, first: u64, count: u64) {
    let producer = Producer::new(client.clone(), ProducerConfig::default()).await.expect("producer");
    let mut deliveries = Vec::new();
    for seq in first..first + count {
        for p in 0..partitions {
            let mut record = ProducerRecord::new(topic, Bytes::from(format!("{p}:{seq}")));
            record.partition = Some(p);
            deliveries.push(producer.send(record).await.expect("send"));
        }
    }
    producer.flush().await.expect("flush");
    for d in deliveries {
        d.await.expect("delivery");
    }
}

/// Receives until `count` records arrived in total (callback events are skipped).
async fn collect(rx: &mut mpsc::UnboundedReceiver<Event>, out: &mut Vec<Seen>, count: usize) {
    collect_events(rx, out, &mut Vec::new(), count).await;
}

/// Receives until `count` records arrived in total; every event also goes to `events`.
async fn collect_events(
    rx: &mut mpsc::UnboundedReceiver<Event>,
    out: &mut Vec<Seen>,
    events: &mut Vec<Event>,
    count: usize,
) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while out.len() < count {
        match tokio::time::timeout_at(deadline, rx.recv()).await {
            Ok(Some(e)) => {
                if let Event::Record(s) = &e {
                    out.push(s.clone());
                }
                events.push(e);
            }
            _ => panic!("only {} of {count} records arrived", out.len()),
        }
    }
}

/// Committed offset per partition, as the node reports it.
async fn committed(client: &Client, group: &str) -> BTreeMap<u32, u64> {
    let described = Admin::new(client.clone()).describe_group(group).await.expect("describe group");
    described.partitions.iter().filter(|p| p.committed != COMMITTED_NONE).map(|p| (p.partition, p.committed)).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn four_partitions_two_then_four_members_and_a_fifth_idles() {
    let node = Node::start(2);
    let client = node.create_topic("orders", 4).await;
    let (tx, mut rx) = mpsc::unbounded_channel();
    let started = Instant::now();
    let m0 = spawn_member(&node, 0, "billing", "orders", group_config(), tx.clone()).await;
    let m1 = spawn_member(&node, 1, "billing", "orders", group_config(), tx.clone()).await;
    let two = wait_assignments(&[&m0, &m1], |got| balanced(got, 4, 2)).await;
    println!("group of 2 stable after {:?}: {two:?}", started.elapsed());

    // One consumer per partition: every record reaches exactly the member owning it.
    produce_seq(&client, "orders", 4, 0, 50).await;
    let mut seen = Vec::new();
    collect(&mut rx, &mut seen, 200).await;
    for s in &seen {
        assert!(two[s.member].contains(&s.partition), "member {} got partition {}", s.member, s.partition);
        assert_eq!(s.value, format!("{}:{}", s.partition, s.offset));
    }
    let distinct: BTreeSet<(u32, u64)> = seen.iter().map(|s| (s.partition, s.offset)).collect();
    assert_eq!(distinct.len(), 200, "no record twice while the group is stable");

    let started = Instant::now();
    let m2 = spawn_member(&node, 2, "billing", "orders", group_config(), tx.clone()).await;
    let m3 = spawn_member(&node, 3, "billing", "orders", group_config(), tx.clone()).await;
    let four = wait_assignments(&[&m0, &m1, &m2, &m3], |got| balanced(got, 4, 1)).await;
    println!("group of 4 stable after {:?}: {four:?}", started.elapsed());

    let m4 = spawn_member(&node, 4, "billing", "orders", group_config(), tx.clone()).await;
    let five = wait_assignments(&[&m0, &m1, &m2, &m3, &m4], |got| balanced(got, 4, 1)).await;
    assert_eq!(five.iter().filter(|a| a.is_empty()).count(), 1, "exactly one idle member: {five:?}");
    let described = Admin::new(client.clone()).describe_group("billing").await.expect("describe");
    assert_eq!(described.members.len(), 5);
    assert_eq!(described.state, "Stable");
    // Everything consumed so far was committed on revoke: no lag.
    assert!(described.partitions.iter().all(|p| p.committed == 50 && p.lag == 0), "{:?}", described.partitions);

    for m in [m0, m1, m2, m3, m4] {
        m.stop(Stop::Close).await;
    }
    let groups = Admin::new(client).list_groups().await.expect("list groups");
    let billing = groups.iter().find(|g| g.group_id == "billing").expect("group listed");
    assert_eq!((billing.state.as_str(), billing.member_count), ("Empty", 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crashed_member_is_replaced_and_the_group_resumes_from_its_commit() {
    let node = Node::start(2);
    let client = node.create_topic("seq", 4).await;
    let (tx, mut rx) = mpsc::unbounded_channel();
    let a = spawn_member(&node, 0, "audit", "seq", group_config(), tx.clone()).await;
    let b = spawn_member(&node, 1, "audit", "seq", group_config(), tx.clone()).await;
    let owned = wait_assignments(&[&a, &b], |got| balanced(got, 4, 2)).await;
    let (a_parts, b_parts) = (owned[0].clone(), owned[1].clone());

    // Phase 1: consumed and, after a few auto-commit intervals, committed.
    let mut seen = Vec::new();
    produce_seq(&client, "seq", 4, 0, 100).await;
    collect(&mut rx, &mut seen, 400).await;
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(committed(&client, "audit").await, (0..4).map(|p| (p, 100)).collect(), "auto-commit");

    // Phase 2: consumed, then A crashes (no leave) with at most an interval uncommitted.
    produce_seq(&client, "seq", 4, 100, 50).await;
    collect(&mut rx, &mut seen, 600).await;
    a.stop(Stop::Crash).await;
    let crashed = Instant::now();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let at_crash = committed(&client, "audit").await;

    // Phase 3: B takes A's partitions once A's session expired.
    produce_seq(&client, "seq", 4, 150, 50).await;
    wait_assignments(&[&b], |got| got[0].len() == 4).await;
    let takeover = crashed.elapsed();
    println!("takeover after {takeover:?}; committed at crash {at_crash:?}");
    assert!(takeover >= Duration::from_millis(1000), "B took over before A's session could expire");
    let uncommitted: u64 = a_parts.iter().map(|p| 150 - at_crash[p]).sum();
    collect(&mut rx, &mut seen, 800 + uncommitted as usize).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    while let Ok(e) = rx.try_recv() {
        if let Event::Record(s) = e {
            seen.push(s);
        }
    }

    for p in 0..4u32 {
        let mut per_offset: BTreeMap<u64, usize> = BTreeMap::new();
        for s in seen.iter().filter(|s| s.partition == p) {
            assert_eq!(s.value, format!("{p}:{}", s.offset), "sequence number matches the offset");
            *per_offset.entry(s.offset).or_default() += 1;
        }
        let offsets: Vec<u64> = per_offset.keys().copied().collect();
        assert_eq!(offsets, (0..200).collect::<Vec<u64>>(), "partition {p}: no gaps");
        let dups: Vec<u64> = per_offset.iter().filter(|(_, n)| **n > 1).map(|(o, _)| *o).collect();
        if b_parts.contains(&p) {
            assert!(dups.is_empty(), "B's own partition {p} re-read {dups:?}");
        } else {
            // Re-read only what A consumed after its last commit, and from exactly there.
            let from = at_crash[&p];
            assert!(from >= 100, "A committed phase 1 of partition {p}");
            assert_eq!(dups, (from..150).collect::<Vec<u64>>(), "partition {p}: duplicates outside the window");
            let b_first = seen.iter().filter(|s| s.partition == p && s.member == 1).map(|s| s.offset).min();
            assert_eq!(b_first, Some(from), "B resumes partition {p} at A's commit");
        }
    }
    b.stop(Stop::Close).await;
    assert_eq!(committed(&client, "audit").await, (0..4).map(|p| (p, 200)).collect());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoke_commits_consumed_positions_and_ends_delivery_of_revoked_partitions() {
    let node = Node::start(2);
    let client = node.create_topic("moves", 2).await;
    produce_seq(&client, "moves", 2, 0, 50).await;
    let (tx, mut rx) = mpsc::unbounded_channel();
    // No periodic commit within the test: only the revoke can commit A's positions.
    let lazy = ConsumerConfig { auto_commit_interval: Duration::from_secs(600), ..group_config() };
    let a = spawn_member(&node, 0, "movers", "moves", lazy, tx.clone()).await;
    let (mut seen, mut events) = (Vec::new(), Vec::new());
    collect_events(&mut rx, &mut seen, &mut events, 100).await;
    assert!(committed(&client, "movers").await.is_empty(), "nothing committed before the revoke");

    let b = spawn_member(&node, 1, "movers", "moves", group_config(), tx.clone()).await;
    let owned = wait_assignments(&[&a, &b], |got| balanced(got, 2, 1)).await;
    assert_eq!(committed(&client, "movers").await, BTreeMap::from([(0, 50), (1, 50)]), "committed on revoke");
    produce_seq(&client, "moves", 2, 50, 20).await;
    collect_events(&mut rx, &mut seen, &mut events, 140).await;

    let distinct: BTreeSet<(u32, u64)> = seen.iter().map(|s| (s.partition, s.offset)).collect();
    assert_eq!(distinct.len(), 140, "B started at A's commit: nothing re-read");
    let revoked_at = events.iter().position(|e| matches!(e, Event::Revoked(0, p) if p == &[0, 1]));
    let revoked_at = revoked_at.expect("A was told of the revoke of both partitions");
    // A's own events after the revoke (B's interleave freely): its assignment, then
    // records of the partition it kept only.
    let after: Vec<&Event> = events[revoked_at..]
        .iter()
        .filter(|e| match e {
            Event::Record(s) => s.member == 0,
            Event::Revoked(m, _) | Event::Assigned(m, _) => *m == 0,
        })
        .collect();
    assert!(matches!(after[1], Event::Assigned(0, p) if p == &owned[0]), "assigned right after revoke: {after:?}");
    for e in &after[2..] {
        match e {
            Event::Record(s) => assert!(owned[0].contains(&s.partition), "A delivered revoked {s:?}"),
            other => panic!("A rebalanced again: {other:?}"),
        }
    }
    assert!(after.len() > 2, "A delivered records after the rebalance");
    a.stop(Stop::Close).await;
    b.stop(Stop::Close).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn committed_offsets_survive_a_node_restart() {
    let mut node = Node::start(2);
    let client = node.create_topic("ledger", 2).await;
    produce_seq(&client, "ledger", 2, 0, 100).await;
    let config = ConsumerConfig { auto_commit: false, ..group_config() };
    let mut consumer = Consumer::new(node.client().await, config.clone());
    consumer.subscribe("restartable", &["ledger"]).await.expect("subscribe");
    let mut count = 0;
    while count < 200 {
        count += consumer.poll(Duration::from_secs(5)).await.expect("poll").len();
    }
    let tp = |partition| TopicPartition { topic: "ledger".to_string(), partition };
    assert_eq!(consumer.consumed_positions(), vec![(tp(0), 100), (tp(1), 100)]);
    // Partition 0 committed short of what was read: it must be re-read from 60.
    consumer.commit_offsets(&[(tp(0), 60), (tp(1), 100)]).await.expect("commit");
    consumer.close().await.expect("close");

    node.restart();
    let client = node.client().await;
    assert_eq!(committed(&client, "restartable").await, BTreeMap::from([(0, 60), (1, 100)]));
    produce_seq(&client, "ledger", 2, 100, 20).await;
    let mut consumer = Consumer::new(client.clone(), config);
    consumer.subscribe("restartable", &["ledger"]).await.expect("subscribe after restart");
    let mut got: BTreeMap<u32, Vec<u64>> = BTreeMap::new();
    while got.values().map(Vec::len).sum::<usize>() < 80 {
        for r in consumer.poll(Duration::from_secs(5)).await.expect("poll") {
            got.entry(r.partition).or_default().push(r.offset);
        }
    }
    assert_eq!(got[&0], (60..120).collect::<Vec<u64>>());
    assert_eq!(got[&1], (100..120).collect::<Vec<u64>>());
    consumer.commit_sync().await.expect("commit after restart");
    consumer.close().await.expect("close");
    assert_eq!(committed(&client, "restartable").await, BTreeMap::from([(0, 120), (1, 120)]));
}

/// `(committed sum, lag sum)` from `group describe` output.
fn describe_totals(table: &str) -> (u64, u64) {
    let rows = table.lines().skip_while(|l| !l.starts_with("topic\t")).skip(1).take_while(|l| !l.starts_with("member"));
    rows.map(|row| {
        let cols: Vec<&str> = row.split('\t').collect();
        assert_eq!(cols.len(), 5, "{row}");
        (cols[2].parse::<u64>().unwrap_or(0), cols[4].parse::<u64>().expect("lag"))
    })
    .fold((0, 0), |acc, (c, l)| (acc.0 + c, acc.1 + l))
}

#[test]
fn cli_consume_group_continues_where_it_stopped_and_describe_shows_lag() {
    let node = Node::start(2);
    ok(&strand(&node.public, &["topic", "create", "clicks", "--partitions", "2"], None));
    let input: String = (0..10).map(|i| format!("click-{i}\n")).collect();
    assert_eq!(ok(&strand(&node.public, &["produce", "clicks"], Some(input.as_bytes()))), "10\n");

    let args = ["consume", "clicks", "--group", "cli", "--timeout-ms", "5000"];
    let first = ok(&strand(&node.public, &[&args[..], &["--from-beginning", "--count", "4"]].concat(), None));
    assert_eq!(first.lines().count(), 4, "{first}");
    let described = ok(&strand(&node.public, &["group", "describe", "cli"], None));
    assert!(described.starts_with("group cli\tstate Empty"), "{described}");
    assert_eq!(describe_totals(&described), (4, 6), "{described}");

    let second = ok(&strand(&node.public, &[&args[..], &["--count", "6"]].concat(), None));
    let all: BTreeSet<&str> = first.lines().chain(second.lines()).collect();
    assert_eq!(all.len(), 10, "the second run continues without re-reading: {first} / {second}");

    let more: String = (10..13).map(|i| format!("click-{i}\n")).collect();
    assert_eq!(ok(&strand(&node.public, &["produce", "clicks"], Some(more.as_bytes()))), "3\n");
    let described = ok(&strand(&node.public, &["group", "describe", "cli"], None));
    assert_eq!(describe_totals(&described), (10, 3), "{described}");
    assert_eq!(ok(&strand(&node.public, &["group", "list"], None)), "cli\tEmpty\t0\n");

    let missing = strand(&node.public, &["group", "describe", "nope"], None);
    assert_eq!(missing.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("does not exist"));
    let usage = strand(&node.public, &["consume", "clicks", "--group", "cli", "--partition", "0"], None);
    assert_eq!(usage.status.code(), Some(2), "--group with --partition is a usage error");
}
