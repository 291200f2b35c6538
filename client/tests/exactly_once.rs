//! Exactly-once produce across chain failover, on a real cluster (real etcd, three
//! `strand-node` processes in cluster mode on 127.0.0.1, lease TTL 2 s).
//!
//! One idempotent acks=all producer keeps a window of records outstanding on an RF=3
//! partition while the chain head is SIGKILLed and, later, the new head is SIGSTOPped
//! for longer than its lease and resumed. Produces whose outcome is unknown are resent
//! (the default `UnknownOutcome::Auto` for an idempotent producer) and the new head,
//! which rebuilt its producer table from its log, answers the ones it already holds as
//! duplicates. Afterwards every record the producer was asked to send is acknowledged
//! (none failed, none of unknown outcome), at the offset where it is stored, and every
//! live replica holds exactly the sent sequence: each record once, in send order.

mod common;
mod support;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::read::read_replica;
use strand_client::{Acks, Admin, Client, ClientConfig, Producer, ProducerConfig, ProducerRecord};
use support::{Etcd, Node};

/// Longest the cluster may take to reach an expected state.
const SETTLE_MAX: Duration = Duration::from_secs(30);
/// Records outstanding at once (several batches in flight at every fault).
const WINDOW: usize = 32;
const TOPIC: &str = "once";

/// The outcome of every record, by index, and when it came: `Ok(offset)` acknowledged,
/// `Err` failed; `None` while outstanding.
type Outcomes = Arc<Mutex<Vec<Option<(Result<u64, String>, Instant)>>>>;

/// Sends `r0, r1, …` to `TOPIC`/0 with up to [`WINDOW`] records outstanding until `stop`.
async fn continuous_load(producer: Producer, stop: Arc<AtomicBool>) -> Outcomes {
    let outcomes: Outcomes = Arc::default();
    let window = Arc::new(tokio::sync::Semaphore::new(WINDOW));
    let mut i = 0usize;
    while !stop.load(Ordering::Relaxed) {
        let permit = window.clone().acquire_owned().await.expect("semaphore");
        let record = ProducerRecord::new(TOPIC, Bytes::from(format!("r{i}"))).partition(0);
        outcomes.lock().expect("outcomes").push(None);
        let delivery = producer.send(record).await.expect("queued");
        let outcomes = outcomes.clone();
        tokio::spawn(async move {
            let result = delivery.await.map(|m| m.offset.expect("acks=all gives an offset")).map_err(|e| e.to_string());
            outcomes.lock().expect("outcomes")[i] = Some((result, Instant::now()));
            drop(permit);
        });
        i += 1;
    }
    producer.flush().await.expect("flush");
    let _ = window.acquire_many(WINDOW as u32).await;
    outcomes
}

/// The chain of `TOPIC`/0 once it is `members` long and every member's log end equals the
/// commit (nothing in flight, all replicas caught up): (members head first, commit).
async fn settled_chain(admin: &Admin, members: usize) -> (Vec<u32>, u64) {
    let deadline = Instant::now() + SETTLE_MAX;
    loop {
        let described = admin.describe_topic_replicas(TOPIC).await;
        if let Ok(d) = &described {
            let p = &d.partitions[0];
            let commit = p.commit_offset;
            let caught_up = p.replicas.iter().all(|r| r.log_end_offset.is_some() && r.log_end_offset == commit);
            if p.chain.len() == members && p.replicas.len() == members && caught_up {
                return (p.chain.clone(), commit.unwrap_or(0));
            }
        }
        assert!(Instant::now() < deadline, "chain did not settle to {members} members: {described:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The longest stretch without an acknowledgement between `from` and `to`.
fn longest_ack_gap(acked: &[Instant], from: Instant, to: Instant) -> Duration {
    let mut times: Vec<Instant> = acked.iter().copied().filter(|t| *t > from && *t < to).collect();
    times.push(from);
    times.push(to);
    times.sort();
    times.windows(2).map(|w| w[1] - w[0]).max().unwrap_or_default()
}

/// The chain head of `TOPIC`/0 as the cluster currently describes it.
async fn head(admin: &Admin) -> u32 {
    let described = admin.describe_topic_replicas(TOPIC).await.expect("describe");
    described.partitions[0].chain[0]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idempotent_acks_all_load_through_head_kill_and_head_pause_is_exactly_once() {
    let etcd = Etcd::start();
    let mut nodes: Vec<Node> = (1..=3).map(|id| Node::start_cluster(2, id, &etcd.endpoint)).collect();
    let publics: Vec<String> = nodes.iter().map(|n| n.public.clone()).collect();
    let admin_config = ClientConfig { request_timeout: Duration::from_secs(2), ..ClientConfig::new(publics.join(",")) };
    let admin = Admin::new(Client::connect(admin_config).await.expect("connect"));
    support::create_replicated(&admin, TOPIC, 1, 3).await.expect("create RF=3 topic");
    settled_chain(&admin, 3).await;

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
        delivery_timeout: Duration::from_secs(60),
        ..Default::default()
    };
    let producer = Producer::new(client, config).await.expect("idempotent producer");
    let stats = producer.clone();
    let stop = Arc::new(AtomicBool::new(false));
    let load = tokio::spawn(continuous_load(producer, stop.clone()));
    tokio::time::sleep(Duration::from_millis(1500)).await;

    // Fault 1: SIGKILL the head under load.
    let first_head = head(&admin).await as usize;
    nodes[first_head - 1].kill();
    let killed = Instant::now();
    tokio::time::sleep(Duration::from_secs(4)).await;
    let (chain, _) = settled_chain(&admin, 2).await;
    assert!(!chain.contains(&(first_head as u32)), "the killed head left the chain: {chain:?}");
    eprintln!("kill: chain {chain:?} settled {:?} after the kill", killed.elapsed());

    // Fault 2: SIGSTOP the new head for longer than its lease, then resume it: the chain
    // moves on without it, fences it, and re-admits it as learner, then tail.
    let second_head = chain[0] as usize;
    let paused = Instant::now();
    nodes[second_head - 1].signal("STOP");
    tokio::time::sleep(Duration::from_secs(5)).await;
    nodes[second_head - 1].signal("CONT");
    let resumed = Instant::now();
    tokio::time::sleep(Duration::from_secs(2)).await;
    stop.store(true, Ordering::Relaxed);
    let outcomes = load.await.expect("load task");
    let (chain, commit) = settled_chain(&admin, 2).await;
    eprintln!("pause: chain {chain:?} settled {:?} after the resume", resumed.elapsed());

    let outcomes = std::mem::take(&mut *outcomes.lock().expect("outcomes"));
    let sent = outcomes.len();
    let failed: Vec<(usize, &String)> = outcomes
        .iter()
        .enumerate()
        .filter_map(|(i, o)| match o {
            Some((Err(e), _)) => Some((i, e)),
            _ => None,
        })
        .collect();
    assert!(failed.is_empty(), "{} of {sent} records failed, first {:?}", failed.len(), &failed[..failed.len().min(3)]);
    let offsets: Vec<u64> =
        outcomes.iter().map(|o| *o.as_ref().expect("resolved").0.as_ref().expect("acked")).collect();
    let misplaced = offsets.iter().enumerate().find(|(i, o)| **o != *i as u64);
    assert!(
        misplaced.is_none(),
        "acknowledged at consecutive offsets in send order; first (record, offset) off: {misplaced:?}"
    );
    assert_eq!(commit, sent as u64, "the chain holds exactly what was sent");
    assert_eq!(stats.unknown_outcome_count(), 0, "nothing failed as unknown");
    assert!(stats.retry_count() > 0, "the faults made the producer resend");
    let acked_at: Vec<Instant> = outcomes.iter().filter_map(|o| o.as_ref().map(|(_, t)| *t)).collect();
    eprintln!(
        "sent {sent} records, {} window resends; longest ack gap after the kill {:?}, after the pause began {:?}",
        stats.retry_count(),
        longest_ack_gap(&acked_at, killed, paused),
        longest_ack_gap(&acked_at, paused, resumed + Duration::from_secs(2)),
    );

    let expected: Vec<String> = (0..sent).map(|i| format!("r{i}")).collect();
    for node in &chain {
        let values = read_replica(&publics[*node as usize - 1], TOPIC, sent, SETTLE_MAX).await;
        assert_eq!(values.len(), sent, "node {node} holds {} records, {sent} sent", values.len());
        let first_diff = values.iter().zip(&expected).position(|(v, e)| v != e);
        assert!(
            first_diff.is_none(),
            "node {node} holds every record once, in send order; first difference at {first_diff:?}"
        );
    }
}
