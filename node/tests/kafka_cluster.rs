//! A Kafka client in a cluster: three real nodes and etcd, an RF=3 topic, and librdkafka
//! (the Python `confluent-kafka` client) producing with acks=all while the partition's
//! leader — the chain head — is SIGKILLed. Metadata must name every node at its Kafka port
//! and the head as leader; the producer must carry on through the failover (metadata
//! refresh after `NOT_LEADER_OR_FOLLOWER` or a refused connection); and every message the
//! client saw acknowledged must be stored on the survivors, and a consumer group (kcat
//! `-G`, coordinator found through the cluster) must read them all.

mod common;

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::etcd::Etcd;
use common::kafka::{topic, KafkaConn};
use common::Node;
use kafka_protocol::messages::create_topics_request::CreatableTopic;
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::*;
use strand_wire::batch::{decompress, BatchIter, RecordIter};
use strand_wire::ErrorCode;

const TOPIC: &str = "kafka-chain";
const COUNT: usize = 3000;

fn start_node(dir: &Path, id: u32, etcd: &Etcd) -> Node {
    let id = id.to_string();
    let url = etcd.endpoint();
    let flags = ["--node-id", &id, "--etcd", &url, "--lease-ttl-s", "2", "--replication-port-base", "0"];
    Node::start(dir, 2, &flags)
}

/// The partition's leader and replicas once every node is listed as a broker.
fn leader(conn: &mut KafkaConn, brokers: usize) -> (i32, Vec<i32>) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let mut want = MetadataRequestTopic::default();
        want.name = Some(topic(TOPIC));
        let mut req = MetadataRequest::default();
        req.topics = Some(vec![want]);
        let meta: MetadataResponse = conn.call(ApiKey::Metadata, 12, &req);
        let part = meta.topics.first().and_then(|t| t.partitions.first());
        if let Some(p) = part.filter(|p| p.error_code == 0 && p.leader_id.0 > 0 && meta.brokers.len() == brokers) {
            return (p.leader_id.0, p.replica_nodes.iter().map(|r| r.0).collect());
        }
        assert!(Instant::now() < deadline, "no leader with {brokers} brokers: {meta:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Every value stored in partition 0, read natively from `node`.
fn stored_values(node: &Node) -> BTreeSet<usize> {
    let mut client = node.client();
    let mut values = BTreeSet::new();
    let mut offset = 0;
    loop {
        let (p, bytes) = client.fetch(TOPIC, 0, offset, 0);
        assert_eq!(p.error, ErrorCode::None);
        if bytes.is_empty() {
            return values;
        }
        for b in BatchIter::new(&bytes) {
            let b = b.expect("valid batch");
            let section = decompress(b.header().compression(), b.records_section(), 64 << 20).expect("contents");
            for r in RecordIter::new(&section, b.header().record_count) {
                let value = r.expect("valid record").value.expect("a value");
                values.insert(std::str::from_utf8(value).unwrap().parse().unwrap());
            }
            offset = b.header().next_offset();
        }
    }
}

#[test]
fn a_kafka_producer_with_acks_all_loses_nothing_through_a_head_kill() {
    let etcd = Etcd::start();
    let dir = tempfile::tempdir().unwrap();
    let mut nodes: Vec<Option<Node>> =
        (1..=3).map(|id| Some(start_node(&dir.path().join(format!("n{id}")), id, &etcd))).collect();
    let bootstrap: Vec<String> = nodes.iter().map(|n| n.as_ref().unwrap().kafka.unwrap().to_string()).collect();

    let mut conn = KafkaConn::connect(nodes[0].as_ref().unwrap().kafka.unwrap());
    let mut t = CreatableTopic::default();
    t.name = topic(TOPIC);
    t.num_partitions = 1;
    t.replication_factor = 3;
    let mut req = CreateTopicsRequest::default();
    req.topics = vec![t];
    let created: CreateTopicsResponse = conn.call(ApiKey::CreateTopics, 5, &req);
    assert_eq!(created.topics[0].error_code, 0, "{:?}", created.topics[0].error_message);
    let (head, replicas) = leader(&mut conn, 3);
    assert_eq!(replicas.len(), 3, "the chain is every node");

    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/kafka/produce_through_failover.py");
    let mut producer = Command::new("python3")
        .arg(&script)
        .args([&bootstrap.join(","), TOPIC, &COUNT.to_string()])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("python3 with confluent-kafka (test.sh installs it)");
    let lines = BufReader::new(producer.stdout.take().unwrap()).lines();
    let mut acked = BTreeSet::new();
    let mut killed = false;
    let mut summary = String::new();
    for line in lines.map_while(Result::ok) {
        let fields: Vec<&str> = line.split_whitespace().collect();
        match fields.first() {
            Some(&"ack") => {
                acked.insert(fields[1].parse::<usize>().unwrap());
            }
            Some(&"done") => summary = line.clone(),
            _ => eprintln!("[producer] {line}"),
        }
        if !killed && acked.len() >= COUNT / 3 {
            let mut victim = nodes[head as usize - 1].take().unwrap();
            victim.child.kill().unwrap();
            victim.child.wait().unwrap();
            killed = true;
            eprintln!("SIGKILLed node {head} (the head) after {} acks", acked.len());
        }
    }
    assert!(producer.wait().unwrap().success(), "the producer script failed");
    assert!(killed, "the head was killed mid-stream ({} acks)", acked.len());
    assert!(summary.starts_with("done"), "{summary}");
    assert!(acked.len() > COUNT * 9 / 10, "the producer went on after the failover: {summary}");

    // Every acknowledged value is on every survivor. A replica serves reads up to the
    // commit it has heard of, which reaches the members above the tail a moment after the
    // acknowledgement: look again (bounded) before calling a value lost.
    for node in nodes.iter().flatten() {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let stored = stored_values(node);
            let lost: Vec<&usize> = acked.difference(&stored).collect();
            if lost.is_empty() {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{} acknowledged values lost, e.g. {:?}",
                lost.len(),
                &lost[..lost.len().min(10)]
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    // A balanced consumer group on the survivors (FindCoordinator names the head of the
    // group's offsets partition, by its Kafka address) reads every acknowledged value.
    let survivors: Vec<String> = nodes.iter().flatten().map(|n| n.kafka.unwrap().to_string()).collect();
    let out = Command::new("kcat")
        .args(["-b", &survivors.join(","), "-G", "after-failover", TOPIC, "-o", "beginning", "-e", "-f", "%s\n"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output()
        .expect("kcat");
    assert!(out.status.success(), "kcat -G: {}", String::from_utf8_lossy(&out.stderr));
    let read: BTreeSet<usize> =
        String::from_utf8_lossy(&out.stdout).lines().filter_map(|l| l.trim().parse().ok()).collect();
    let missing: Vec<&usize> = acked.difference(&read).collect();
    assert!(
        missing.is_empty(),
        "the group missed {} acknowledged values, e.g. {:?}",
        missing.len(),
        &missing[..missing.len().min(10)]
    );
}
