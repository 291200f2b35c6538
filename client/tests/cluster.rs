//! The client against a real 3-node cluster (real etcd, three `strand-node` processes in
//! cluster mode on 127.0.0.1): `topic describe` shows the RF=3 chain with every
//! replica's own log end and lag; after the head is SIGKILLed, a producer whose
//! bootstrap list starts with the dead node keeps producing (metadata from the live
//! nodes, produce to the promoted head) with no record lost or doubled; every live replica
//! serves every record exactly once to a nearest-replica consumer.

mod common;
mod support;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::cli::strand;
use common::read::read_replica;
use strand_client::{
    Acks, Admin, Client, ClientConfig, ClientError, Consumer, ConsumerConfig, Producer, ProducerConfig, ProducerRecord,
    SeekTo,
};
use support::{Etcd, Node};

/// Longest the cluster may take to reach an expected state (lease TTL is 2 s).
const SETTLE_MAX: Duration = Duration::from_secs(20);

/// `topic describe` rows of the replica table: (partition, replica, role, log_end, lag).
fn describe_replicas(bootstrap: &str, topic: &str) -> Vec<(String, String, String, String, String)> {
    let out = strand(bootstrap, &["topic", "describe", topic], None);
    assert!(out.status.success(), "describe failed: {}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8(out.stdout).expect("utf8");
    let rows: Vec<Vec<String>> = text.lines().map(|l| l.split('\t').map(String::from).collect()).collect();
    let start = rows.iter().position(|r| r[0] == "partition" && r[1] == "replica").expect("replica table") + 1;
    let replicas = rows[start..].iter().take_while(|r| r[0] != "config");
    replicas.map(|r| (r[0].clone(), r[1].clone(), r[2].clone(), r[3].clone(), r[5].clone())).collect()
}

/// Waits until the replica table shows `members` replicas, each with log end `end`, lag 0.
fn wait_for_chain(
    bootstrap: &str,
    topic: &str,
    members: usize,
    end: u64,
) -> Vec<(String, String, String, String, String)> {
    let deadline = Instant::now() + SETTLE_MAX;
    loop {
        let rows = describe_replicas(bootstrap, topic);
        let settled = rows.len() == members && rows.iter().all(|r| r.3 == end.to_string() && r.4 == "0");
        if settled {
            return rows;
        }
        assert!(Instant::now() < deadline, "chain of {topic} did not settle to {members} x {end}: {rows:?}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

async fn producer(bootstrap: &str) -> Producer {
    let config = ClientConfig { request_timeout: Duration::from_secs(10), ..ClientConfig::new(bootstrap) };
    let client = Client::connect(config).await.expect("connect");
    let config = ProducerConfig {
        acks: Acks::All,
        linger: Duration::from_millis(1),
        delivery_timeout: Duration::from_secs(20),
        ..Default::default()
    };
    Producer::new(client, config).await.expect("producer")
}

async fn send(producer: &Producer, value: String) -> Result<u64, ClientError> {
    let delivery = producer.send(ProducerRecord::new("c", Bytes::from(value)).partition(0)).await?;
    Ok(delivery.await?.offset.expect("acks=all gives an offset"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn describe_failover_and_nearest_reads_on_a_real_cluster() {
    let etcd = Etcd::start();
    let mut nodes: Vec<Node> = (1..=3).map(|id| Node::start_cluster(2, id, &etcd.endpoint)).collect();
    let publics: Vec<String> = nodes.iter().map(|n| n.public.clone()).collect();

    let admin = Admin::new(Client::connect(ClientConfig::new(publics[0].clone())).await.expect("connect"));
    support::create_replicated(&admin, "c", 1, 3).await.expect("create RF=3 topic");
    let first = producer(&publics[0]).await;
    for i in 0..50 {
        assert_eq!(send(&first, format!("v{i}")).await, Ok(i));
    }
    let rows = wait_for_chain(&publics[0], "c", 3, 50);
    let roles: Vec<&str> = rows.iter().map(|r| r.2.as_str()).collect();
    assert_eq!(roles, ["head", "middle", "tail"], "{rows:?}");
    let head: usize = rows[0].1.parse().expect("node id");
    health_of_a_full_chain(&nodes, &rows, &publics[0]);

    // SIGKILL the head; a producer bootstrapped with the dead node first still gets through.
    nodes[head - 1].kill();
    let killed = Instant::now();
    let mut list = vec![publics[head - 1].clone()];
    list.extend(publics.iter().enumerate().filter(|(i, _)| *i != head - 1).map(|(_, p)| p.clone()));
    let second = producer(&list.join(",")).await;
    let mut outcomes: HashMap<&str, usize> = HashMap::new();
    let mut acked = Vec::new();
    for i in 50..100 {
        match send(&second, format!("v{i}")).await {
            Ok(offset) => {
                if acked.is_empty() {
                    eprintln!("kill -> first acknowledged produce: {:?}", killed.elapsed());
                }
                acked.push((i, offset));
            }
            Err(ClientError::UnknownOutcome(_)) => *outcomes.entry("unknown").or_default() += 1,
            Err(e) => panic!("record {i} failed: {e}"),
        }
    }
    assert_eq!(outcomes.get("unknown"), None, "nothing was in flight at the kill");
    assert_eq!(acked.iter().map(|a| a.1).collect::<Vec<_>>(), (50..100).collect::<Vec<u64>>(), "offsets continue");

    // Two members remain; describe works through a list that starts with the dead node.
    let live = list[1..].join(",");
    let rows = wait_for_chain(&format!("{},{live}", list[0]), "c", 2, 100);
    assert!(rows.iter().all(|r| r.1 != head.to_string()), "dead node left the chain: {rows:?}");
    let expected: Vec<String> = (0..100).map(|i| format!("v{i}")).collect();
    for bootstrap in &list[1..] {
        assert_eq!(read_replica(bootstrap, "c", 100, SETTLE_MAX).await, expected, "replica at {bootstrap}");
    }

    // Under-replicated while the node is down (metrics and the CLI), cleared once it is
    // back and caught up.
    let survivor = nodes.iter().position(|n| n.public == list[1]).expect("a survivor");
    wait_under_replicated(&nodes[survivor], |n| n >= 1);
    let listed = strand(&live, &["topic", "describe", "--under-replicated"], None);
    let text = String::from_utf8_lossy(&listed.stdout).to_string();
    assert!(listed.status.success() && text.lines().any(|l| l.starts_with("c\t0\t")), "{text}");
    let json = strand(&live, &["topic", "describe", "c", "--under-replicated", "--format", "json"], None);
    let rows: serde_json::Value = serde_json::from_slice(&json.stdout).expect("json");
    assert_eq!(rows[0]["replication_factor"], 3, "{rows}");
    assert_eq!(rows[0]["chain"].as_array().map(Vec::len), Some(2), "{rows}");
    nodes[head - 1].start_again();
    wait_for_chain(&live, "c", 3, 100);
    wait_under_replicated(&nodes[survivor], |n| n == 0);
}

/// The value of series `series` (name with its labels) in `node`'s `/metrics`.
fn metric(node: &Node, series: &str) -> Option<f64> {
    node.admin_get("/metrics").lines().find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

/// The replication health a full 3-chain of `c` shows: every replica's chain length and
/// epoch, one controller, the head's successor caught up, nothing under-replicated, and
/// `/v1/topics` giving the offsets topic its cluster replication factor.
fn health_of_a_full_chain(nodes: &[Node], rows: &[(String, String, String, String, String)], bootstrap: &str) {
    let series = |name: &str| format!("{name}{{topic=\"c\",partition=\"0\"}}");
    // Shards publish partition gauges every second: the first snapshot may still be coming.
    for node in nodes {
        wait_metric(node, &series("strand_partition_chain_length"), |v| v == 3.0);
        assert!(metric(node, &series("strand_partition_epoch")).is_some_and(|e| e >= 1.0), "{}", node.admin);
        assert_eq!(metric(node, "strand_under_replicated_partitions"), Some(0.0), "{}", node.admin);
    }
    let controllers: Vec<usize> =
        (0..nodes.len()).filter(|&i| metric(&nodes[i], "strand_is_controller") == Some(1.0)).collect();
    assert_eq!(controllers.len(), 1, "exactly one node holds the controller election");
    let controller_id = (controllers[0] + 1) as f64;
    for node in nodes {
        wait_metric(node, "strand_controller_id", |v| v == controller_id);
    }
    let (head, middle): (usize, &str) = (rows[0].1.parse().expect("node id"), &rows[1].1);
    let lag = format!("strand_replica_lag_bytes{{topic=\"c\",partition=\"0\",replica=\"{middle}\"}}");
    wait_metric(&nodes[head - 1], &lag, |v| v == 0.0);
    let none = strand(bootstrap, &["topic", "describe", "--under-replicated"], None);
    assert_eq!(String::from_utf8_lossy(&none.stdout), "topic\tpartition\tleader\tchain\tepoch\treplication_factor\n");

    // A group request makes the cluster create `__consumer_offsets` (RF 3 with 3 nodes).
    let _ = strand(bootstrap, &["group", "describe", "health-probe"], None);
    let deadline = Instant::now() + SETTLE_MAX;
    loop {
        let topics: serde_json::Value = serde_json::from_str(&nodes[0].admin_get("/v1/topics")).expect("json");
        let offsets = topics["topics"].as_array().and_then(|t| t.iter().find(|t| t["name"] == "__consumer_offsets"));
        if let Some(offsets) = offsets {
            assert_eq!(offsets["replication_factor"], 3, "{offsets}");
            break;
        }
        assert!(Instant::now() < deadline, "__consumer_offsets never appeared in /v1/topics: {topics}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Waits until `node`'s `/metrics` shows `series` with a value satisfying `ok`.
fn wait_metric(node: &Node, series: &str, ok: impl Fn(f64) -> bool) {
    let deadline = Instant::now() + SETTLE_MAX;
    loop {
        let value = metric(node, series);
        if value.is_some_and(&ok) {
            return;
        }
        assert!(Instant::now() < deadline, "{series} on {} stayed {value:?}", node.admin);
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Waits until `node`'s `strand_under_replicated_partitions` satisfies `ok`.
fn wait_under_replicated(node: &Node, ok: impl Fn(u64) -> bool) {
    let deadline = Instant::now() + SETTLE_MAX;
    loop {
        let count = metric(node, "strand_under_replicated_partitions").map(|v| v as u64);
        if count.is_some_and(&ok) {
            return;
        }
        assert!(Instant::now() < deadline, "strand_under_replicated_partitions stayed {count:?}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// What happened to each value sent by [`continuous_load`].
#[derive(Default)]
struct Fates {
    acked: Vec<(u64, Instant)>,
    unknown: Vec<u64>,
    failed: Vec<(u64, String)>,
}

/// Sends `w0, w1, …` to `c`/0 with up to 32 records outstanding until `stop` is set.
async fn continuous_load(
    producer: Producer,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> std::sync::Arc<std::sync::Mutex<Fates>> {
    let fates: std::sync::Arc<std::sync::Mutex<Fates>> = std::sync::Arc::default();
    let window = std::sync::Arc::new(tokio::sync::Semaphore::new(32));
    let mut i = 0u64;
    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
        let permit = window.clone().acquire_owned().await.expect("semaphore");
        let record = ProducerRecord::new("c", Bytes::from(format!("w{i}"))).partition(0);
        let delivery = producer.send(record).await.expect("queued");
        let fates = fates.clone();
        tokio::spawn(async move {
            let result = delivery.await;
            let mut f = fates.lock().expect("fates");
            match result {
                Ok(_) => f.acked.push((i, Instant::now())),
                Err(ClientError::UnknownOutcome(_)) => f.unknown.push(i),
                Err(e) => f.failed.push((i, e.to_string())),
            }
            drop(permit);
        });
        i += 1;
    }
    producer.flush().await.expect("flush");
    let _ = window.acquire_many(32).await;
    fates
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Fault {
    /// SIGKILL: connections are reset, connects refused.
    Kill,
    /// SIGSTOP for 6 s, then SIGCONT: connections stay open but nothing answers; the
    /// lease expires, the chain moves on, and the resumed node is fenced.
    Pause,
}

/// Continuous acks=all load on an RF=3 partition through `fault` of its head; then every
/// acknowledged record must be on every other replica exactly once, and every record of
/// unknown outcome at most once.
async fn load_through_head_fault(fault: Fault, check_live_consumer: bool) {
    let etcd = Etcd::start();
    let mut nodes: Vec<Node> = (1..=3).map(|id| Node::start_cluster(2, id, &etcd.endpoint)).collect();
    let publics: Vec<String> = nodes.iter().map(|n| n.public.clone()).collect();
    let admin = Admin::new(Client::connect(ClientConfig::new(publics[0].clone())).await.expect("connect"));
    support::create_replicated(&admin, "c", 1, 3).await.expect("create RF=3 topic");
    let rows = wait_for_chain(&publics[0], "c", 3, 0);
    let head: usize = rows[0].1.parse().expect("node id");

    let client_config = ClientConfig {
        request_timeout: Duration::from_secs(3),
        metadata_timeout: Duration::from_secs(1),
        ..ClientConfig::new(publics.join(","))
    };
    let client = Client::connect(client_config).await.expect("connect");
    let config = ProducerConfig {
        acks: Acks::All,
        linger: Duration::from_millis(1),
        request_timeout_ms: 3000,
        delivery_timeout: Duration::from_secs(30),
        ..Default::default()
    };
    let producer = Producer::new(client, config).await.expect("producer");
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let load = tokio::spawn(continuous_load(producer, stop.clone()));
    // A consumer of the head (default read preference) that lives through the fault.
    let tail_config = ClientConfig { request_timeout: Duration::from_secs(3), ..ClientConfig::new(publics.join(",")) };
    let tail_client = Client::connect(tail_config).await.expect("connect");
    let mut live_consumer = Consumer::new(tail_client, ConsumerConfig::default());
    live_consumer.assign("c", 0).await.expect("assign");
    live_consumer.seek("c", 0, SeekTo::Earliest).await.expect("seek");
    // Set after the load: the highest acknowledged index; the consumer stops once it has
    // read that far (and then gets an empty poll), or SETTLE_MAX later.
    let last_acked = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(u64::MAX));
    let target = last_acked.clone();
    let live_read = tokio::spawn(async move {
        let mut values: Vec<String> = Vec::new();
        let mut highest = None::<u64>;
        let mut deadline = None;
        loop {
            let polled = live_consumer.poll(Duration::from_millis(500)).await.expect("poll through the fault");
            let target = target.load(std::sync::atomic::Ordering::Relaxed);
            if target != u64::MAX {
                let deadline = *deadline.get_or_insert_with(|| Instant::now() + SETTLE_MAX);
                let caught_up = highest.is_some_and(|h| h >= target);
                if (polled.is_empty() && caught_up) || Instant::now() > deadline {
                    return values;
                }
            }
            for r in &polled {
                let v = String::from_utf8_lossy(r.value.as_deref().unwrap_or(b"null")).into_owned();
                highest = highest.max(v[1..].parse().ok());
                values.push(v);
            }
        }
    });
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let faulted = Instant::now();
    match fault {
        Fault::Kill => {
            nodes[head - 1].kill();
            tokio::time::sleep(Duration::from_secs(5)).await;
        }
        Fault::Pause => {
            nodes[head - 1].signal("STOP");
            tokio::time::sleep(Duration::from_secs(6)).await;
            nodes[head - 1].signal("CONT");
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let fates = load.await.expect("load task");
    let fates = std::mem::take(&mut *fates.lock().expect("fates"));
    let failed = &fates.failed[..fates.failed.len().min(5)];
    assert!(fates.failed.is_empty(), "only unknown outcomes may fail: {failed:?}");
    // Failover time: the longest stretch without an acknowledgement after the fault.
    let mut times: Vec<Instant> = fates.acked.iter().map(|a| a.1).filter(|t| *t > faulted).collect();
    times.insert(0, faulted);
    times.sort();
    let gap = times.windows(2).map(|w| w[1].duration_since(w[0])).max().expect("acks after the fault");
    eprintln!(
        "{fault:?}: acked {}, unknown {}; longest ack gap after the fault {gap:?}",
        fates.acked.len(),
        fates.unknown.len()
    );

    let others: Vec<&String> = publics.iter().enumerate().filter(|(i, _)| *i != head - 1).map(|(_, p)| p).collect();
    let total = fates.acked.len() + fates.unknown.len();
    for bootstrap in others {
        let values = read_replica(bootstrap, "c", fates.acked.len(), SETTLE_MAX).await;
        let mut counts: HashMap<String, usize> = HashMap::new();
        for v in &values {
            *counts.entry(v.clone()).or_default() += 1;
        }
        for (i, _) in &fates.acked {
            assert_eq!(counts.get(&format!("w{i}")), Some(&1), "acked w{i} exactly once at {bootstrap}");
        }
        for i in &fates.unknown {
            assert!(counts.get(&format!("w{i}")).is_none_or(|n| *n == 1), "unknown w{i} at most once at {bootstrap}");
        }
        assert!(values.len() <= total, "nothing beyond what was sent: {} > {total}", values.len());
    }

    if !check_live_consumer {
        return;
    }
    let highest_acked = fates.acked.iter().map(|a| a.0).max().expect("acks");
    last_acked.store(highest_acked, std::sync::atomic::Ordering::Relaxed);
    let live_values = live_read.await.expect("live consumer");
    let mut seen = std::collections::HashSet::new();
    assert!(live_values.iter().all(|v| seen.insert(v.clone())), "the live consumer read nothing twice");
    let mut missing: Vec<u64> = fates.acked.iter().map(|a| a.0).filter(|i| !seen.contains(&format!("w{i}"))).collect();
    missing.sort_unstable();
    assert!(
        missing.is_empty(),
        "the live consumer missed {} acked records, first {:?} (acked {:?} after the fault); unknown {:?}; it read {} (last {:?}, around the gap {:?})",
        missing.len(),
        &missing[..missing.len().min(10)],
        fates.acked.iter().find(|a| a.0 == missing[0]).map(|a| a.1.saturating_duration_since(faulted)),
        &fates.unknown[..fates.unknown.len().min(3)],
        live_values.len(),
        live_values.last(),
        live_values.iter().position(|v| *v == format!("w{}", missing[0] - 1)).map(|i| &live_values[i..(i + 3).min(live_values.len())])
    );
    let order: Vec<u64> = live_values.iter().map(|v| v[1..].parse().expect("w<i>")).collect();
    assert!(order.windows(2).all(|w| w[0] < w[1]), "in send order");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn continuous_acks_all_load_through_a_head_kill_doubles_nothing() {
    load_through_head_fault(Fault::Kill, true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn continuous_acks_all_load_through_a_paused_head_doubles_nothing() {
    load_through_head_fault(Fault::Pause, false).await;
}

/// Regression test for a node bug (fixed in b337e5b, failed about 3 runs in 5 before): a
/// head SIGSTOPped with a forwarded-but-unacknowledged batch and resumed after the chain
/// moved on served that batch as committed for ~40 ms — between matching its new
/// predecessor (the cut already in the core's index) and its shell executing the cut — to a
/// consumer that reached it through the resumed node's stale metadata (epoch 1, itself as
/// head). The consumer then skipped the new head's acknowledged records at those offsets.
/// Replicas now serve reads only below their local durable offset, which a pending cut caps.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consumer_living_through_a_paused_head_sees_every_acked_record() {
    load_through_head_fault(Fault::Pause, true).await;
}
