//! Consumer groups on a real 3-node cluster (real etcd, three `strand-node` processes in
//! cluster mode on 127.0.0.1): the group's coordinator is the head of its
//! `__consumer_offsets` partition (RF=3); a group of two members consumes an RF=3 topic
//! and commits; the coordinator's node is SIGKILLed; the members find the new head,
//! rejoin and resume exactly at the committed offsets (nothing below them delivered
//! again, nothing above them skipped); `strand group describe` and `group list` answer
//! through every live node.

mod common;
mod support;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::cli::strand;
use strand_client::group::OFFSETS_TOPIC;
use strand_client::{
    Acks, Admin, Client, ClientConfig, Consumer, ConsumerConfig, OffsetReset, Producer, ProducerConfig, ProducerRecord,
};
use support::{Etcd, Node};
use tokio::sync::watch;

const TOPIC: &str = "orders";
const GROUP: &str = "billing";
const PARTITIONS: u32 = 2;
/// Records per partition before the kill (all consumed and committed) and after it.
const BEFORE: u64 = 40;
const AFTER: u64 = 40;
/// Longest the cluster or the group may take to reach an expected state.
const SETTLE_MAX: Duration = Duration::from_secs(30);

fn group_config() -> ConsumerConfig {
    ConsumerConfig {
        session_timeout: Duration::from_millis(3000),
        heartbeat_interval: Duration::from_millis(300),
        rebalance_timeout: Duration::from_secs(5),
        auto_commit: false,
        auto_offset_reset: OffsetReset::Earliest,
        max_wait: Duration::from_millis(100),
        ..ConsumerConfig::default()
    }
}

/// What members saw, in the order it happened.
#[derive(Debug, Clone, Copy)]
enum Event {
    /// A record of (partition, offset) was delivered.
    Delivered(u32, u64),
    /// A commit of (partition, position) was acknowledged.
    Committed(u32, u64),
}

type Events = Arc<Mutex<Vec<Event>>>;

/// One member: polls, records every delivery and commits what it consumed after every
/// non-empty poll, until `stop` turns true.
async fn member(id: usize, bootstrap: String, events: Events, stop: watch::Receiver<bool>) {
    let config = ClientConfig { request_timeout: Duration::from_secs(5), ..ClientConfig::new(bootstrap) };
    let client = Client::connect(config).await.expect("connect");
    let mut consumer = Consumer::new(client, group_config());
    consumer.subscribe(GROUP, &[TOPIC]).await.expect("subscribe");
    while !*stop.borrow() {
        let polled = match consumer.poll(Duration::from_millis(200)).await {
            Ok(polled) => polled,
            Err(e) => {
                // The coordinator's or a partition head's node died: the next poll rejoins / fails over.
                eprintln!("member {id}: poll failed: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        if polled.is_empty() {
            continue;
        }
        events.lock().expect("events").extend(polled.iter().map(|r| Event::Delivered(r.partition, r.offset)));
        let positions = consumer.consumed_positions();
        match consumer.commit_sync().await {
            Ok(()) => events
                .lock()
                .expect("events")
                .extend(positions.iter().map(|(tp, pos)| Event::Committed(tp.partition, *pos))),
            Err(e) => eprintln!("member {id}: commit failed (will rejoin): {e}"),
        }
    }
    let _ = consumer.close().await;
}

/// Checks the group's promise: no record below an acknowledged commit is delivered
/// again, and every offset below `end` is delivered. Returns deliveries per partition.
fn check_deliveries(events: &[Event], end: u64) -> BTreeMap<u32, usize> {
    let mut committed: BTreeMap<u32, u64> = BTreeMap::new();
    let mut delivered: BTreeMap<u32, Vec<u64>> = BTreeMap::new();
    for (i, event) in events.iter().enumerate() {
        match *event {
            Event::Committed(p, pos) => {
                let c = committed.entry(p).or_default();
                *c = (*c).max(pos);
            }
            Event::Delivered(p, o) => {
                let floor = committed.get(&p).copied().unwrap_or(0);
                assert!(o >= floor, "event {i}: offset {o} of partition {p} delivered again after commit {floor}");
                delivered.entry(p).or_default().push(o);
            }
        }
    }
    let mut counts = BTreeMap::new();
    for p in 0..PARTITIONS {
        let mut got = delivered.get(&p).cloned().unwrap_or_default();
        counts.insert(p, got.len());
        got.sort_unstable();
        got.dedup();
        assert_eq!(got, (0..end).collect::<Vec<u64>>(), "partition {p}: some offset never delivered");
    }
    counts
}

async fn produce(bootstrap: &str, from: u64, to: u64) {
    let config = ClientConfig { request_timeout: Duration::from_secs(10), ..ClientConfig::new(bootstrap) };
    let client = Client::connect(config).await.expect("connect");
    let config = ProducerConfig {
        acks: Acks::All,
        linger: Duration::from_millis(1),
        delivery_timeout: Duration::from_secs(20),
        ..Default::default()
    };
    let producer = Producer::new(client, config).await.expect("producer");
    for p in 0..PARTITIONS {
        for i in from..to {
            let record = ProducerRecord::new(TOPIC, Bytes::from(format!("p{p}-{i}"))).partition(p);
            let offset = producer.send(record).await.expect("send").await.expect("acked").offset;
            assert_eq!(offset, Some(i), "partition {p}");
        }
    }
}

/// Committed offset per partition, as the group's coordinator (found via `bootstrap`) says.
async fn committed(bootstrap: &str) -> BTreeMap<u32, u64> {
    let client = Client::connect(ClientConfig::new(bootstrap)).await.expect("connect");
    let described = Admin::new(client).describe_group(GROUP).await.expect("describe group");
    described.partitions.iter().filter(|p| p.topic == TOPIC).map(|p| (p.partition, p.committed)).collect()
}

/// Waits until the group is `Stable` with both members.
async fn wait_stable(bootstrap: &str) {
    let client = Client::connect(ClientConfig::new(bootstrap)).await.expect("connect");
    let admin = Admin::new(client);
    let deadline = Instant::now() + SETTLE_MAX;
    loop {
        let described = admin.describe_group(GROUP).await.expect("describe group");
        if described.state == "Stable" && described.members.len() == 2 {
            return;
        }
        assert!(Instant::now() < deadline, "group did not settle: {described:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn wait_committed(bootstrap: &str, want: u64) {
    let deadline = Instant::now() + SETTLE_MAX;
    loop {
        let got = committed(bootstrap).await;
        if got.len() == PARTITIONS as usize && got.values().all(|c| *c == want) {
            return;
        }
        assert!(Instant::now() < deadline, "group did not commit {want} on every partition: {got:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The node heading the group's offsets partition (its coordinator).
async fn coordinator_node(bootstrap: &str, replicas: usize) -> u32 {
    let client = Client::connect(ClientConfig::new(bootstrap)).await.expect("connect");
    let meta = client.fetch_metadata(&[OFFSETS_TOPIC.to_string()]).await.expect("metadata");
    let topic = meta.topics.iter().find(|t| t.name == OFFSETS_TOPIC).expect("offsets topic in metadata");
    let partition = strand_client::route::group_partition(GROUP, topic.partitions.len() as u32);
    let part = &topic.partitions[partition as usize];
    assert_eq!(part.replicas.len(), replicas, "offsets partition chain: {part:?}");
    part.leader_node
}

/// `group describe` through `bootstrap`: (state line, committed per partition row).
fn describe_cli(bootstrap: &str) -> (String, Vec<(u32, u64)>) {
    let out = strand(bootstrap, &["group", "describe", GROUP], None);
    assert!(out.status.success(), "group describe via {bootstrap}: {}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8(out.stdout).expect("utf8");
    let rows = text.lines().skip_while(|l| !l.starts_with("topic\t")).skip(1).take_while(|l| !l.starts_with("member"));
    let committed = rows
        .map(|row| {
            let cols: Vec<&str> = row.split('\t').collect();
            (cols[1].parse().expect("partition"), cols[2].parse().unwrap_or(u64::MAX))
        })
        .collect();
    (text.lines().next().unwrap_or_default().to_string(), committed)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_survives_losing_its_coordinator_node() {
    let started = Instant::now();
    let etcd = Etcd::start();
    let mut nodes: Vec<Node> = (1..=3).map(|id| Node::start_cluster(2, id, &etcd.endpoint)).collect();
    let publics: Vec<String> = nodes.iter().map(|n| n.public.clone()).collect();
    let all = publics.join(",");
    let admin = Admin::new(Client::connect(ClientConfig::new(publics[0].clone())).await.expect("connect"));
    support::create_replicated(&admin, TOPIC, PARTITIONS, 3).await.expect("create RF=3 topic");
    let events: Events = Arc::default();
    let (stop_tx, stop_rx) = watch::channel(false);
    let members: Vec<_> = (0..2)
        .map(|id| {
            // Each member bootstraps from a different node; every node is in its list.
            let mut list = publics.clone();
            list.rotate_left(id);
            tokio::spawn(member(id, list.join(","), events.clone(), stop_rx.clone()))
        })
        .collect();
    eprintln!("cluster up, topic created: {:?}", started.elapsed());
    wait_stable(&all).await;
    eprintln!("group formed: {:?}", started.elapsed());
    produce(&all, 0, BEFORE).await;
    wait_committed(&all, BEFORE).await;
    let before_kill = check_deliveries(&events.lock().expect("events"), BEFORE);
    assert!(before_kill.values().all(|n| *n == BEFORE as usize), "each record once before the kill: {before_kill:?}");

    // Describe works through every node (the non-coordinators answer NOT_COORDINATOR and
    // the client goes to the head of the group's offsets partition).
    for public in &publics {
        let (head, rows) = describe_cli(public);
        assert!(head.contains("state Stable"), "via {public}: {head}");
        assert_eq!(rows, vec![(0, BEFORE), (1, BEFORE)], "via {public}");
    }

    eprintln!("before the kill: {:?}", started.elapsed());
    let victim = coordinator_node(&all, 3).await;
    nodes[victim as usize - 1].kill();
    let killed = Instant::now();
    let live: Vec<String> =
        publics.iter().enumerate().filter(|(i, _)| *i + 1 != victim as usize).map(|(_, p)| p.clone()).collect();
    produce(&live.join(","), BEFORE, BEFORE + AFTER).await;
    wait_committed(&live.join(","), BEFORE + AFTER).await;
    wait_stable(&live.join(",")).await;
    eprintln!(
        "coordinator node {victim} killed -> every record after it consumed and committed: {:?}",
        killed.elapsed()
    );
    let new_coordinator = coordinator_node(&live.join(","), 2).await;
    assert_ne!(new_coordinator, victim, "the offsets partition has a new head");

    for public in &live {
        let (head, rows) = describe_cli(public);
        assert!(head.contains("state Stable"), "via {public}: {head}");
        assert_eq!(rows, vec![(0, BEFORE + AFTER), (1, BEFORE + AFTER)], "via {public}");
        // The list merges every node's coordinated groups.
        let out = strand(public, &["group", "list"], None);
        assert!(out.status.success(), "group list via {public}: {}", String::from_utf8_lossy(&out.stderr));
        assert_eq!(String::from_utf8_lossy(&out.stdout), format!("{GROUP}\tStable\t2\n"), "via {public}");
    }
    stop_tx.send(true).expect("stop members");
    for m in members {
        m.await.expect("member task");
    }
    eprintln!("members closed: {:?} after the kill", killed.elapsed());

    // Nothing at or below an acknowledged commit came again — in particular nothing below
    // the commits made before the kill (lost offsets would restart at the earliest
    // offset) — and every record was delivered.
    let events = events.lock().expect("events").clone();
    let counts = check_deliveries(&events, BEFORE + AFTER);
    eprintln!("deliveries per partition (records {}): {counts:?}", BEFORE + AFTER);
}
