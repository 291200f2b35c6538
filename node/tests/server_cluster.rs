//! Cluster mode end to end: a real etcd plus three real `strand-node` processes on
//! 127.0.0.1. An RF=3 topic is created through one node, `acks=all` produces go to the
//! chain head, every replica's node serves the same bytes, a non-head refuses produces
//! with `NotOwner` naming the head, and metadata shows the chain. Then the tail stops
//! (SIGTERM revokes its lease): the chain shrinks and `acks=all` keeps working; deleting
//! the topic removes the survivors' replica logs.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::etcd::Etcd;
use common::{batch, Client, Node};
use strand_wire::batch::BatchIter;
use strand_wire::msg::*;
use strand_wire::ErrorCode;

const TOPIC: &str = "chained";

fn start_node(dir: &Path, id: u32, etcd: &Etcd) -> Node {
    let id = id.to_string();
    let url = etcd.endpoint();
    let flags = ["--node-id", &id, "--etcd", &url, "--lease-ttl-s", "2", "--replication-port-base", "0"];
    Node::start(dir, 2, &flags)
}

fn metadata(client: &mut Client) -> MetadataResponse {
    let (header, _) = client.call(Request::Metadata(MetadataRequest { topics: vec![TOPIC.into()] }), &[]);
    assert_eq!(header.error, ErrorCode::None, "{:?}", header.message);
    match header.response {
        Response::Metadata(m) => m,
        other => panic!("not metadata: {other:?}"),
    }
}

/// Produces `bytes` with acks=all, retrying (bounded) while the chain starts or reconfigures.
fn produce_retrying(client: &mut Client, bytes: &[u8]) -> ProducePartitionResponse {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (_, answer) = produce_all(client, bytes);
        if answer.error == ErrorCode::None || Instant::now() > deadline {
            return answer;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn produce_all(client: &mut Client, bytes: &[u8]) -> (ResponseHeader, ProducePartitionResponse) {
    let request = Request::Produce(ProduceRequest {
        acks: Acks::All,
        timeout_ms: 10_000,
        partitions: vec![ProducePartition { topic: TOPIC.into(), partition: 0, bytes_len: bytes.len() as u32 }],
    });
    let (header, _) = client.call(request, bytes);
    let part = match &header.response {
        Response::Produce(r) => r.partitions[0].clone(),
        other => panic!("not a produce response: {other:?} ({:?})", header.message),
    };
    (header, part)
}

/// Raw bytes of the partition from offset 0 up to `end` as one node serves them.
fn read_until(client: &mut Client, end: u64) -> Bytes {
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut out = Vec::new();
    let mut offset = 0;
    while offset < end {
        assert!(Instant::now() < deadline, "replica did not serve offset {offset} of {end}");
        let (p, bytes) = client.fetch(TOPIC, 0, offset, 200);
        assert_eq!(p.error, ErrorCode::None);
        assert!(p.high_watermark <= p.log_end_offset);
        for b in BatchIter::new(&bytes) {
            let b = b.expect("valid batch");
            assert_eq!(b.header().base_offset, offset, "contiguous offsets");
            offset = b.header().next_offset();
        }
        out.extend_from_slice(&bytes);
    }
    Bytes::from(out)
}

#[test]
fn rf3_chain_over_three_processes() {
    let tmp = tempfile::tempdir().unwrap();
    let etcd = Etcd::start();
    let nodes: Vec<Node> = (1..=3u32).map(|id| start_node(&tmp.path().join(format!("n{id}")), id, &etcd)).collect();

    let mut admin = nodes[0].client();
    let create = Request::CreateTopic(CreateTopicRequest {
        name: TOPIC.into(),
        partitions: 1,
        replication_factor: 3,
        configs: Vec::new(),
    });
    let (header, _) = admin.call(create, &[]);
    assert_eq!(header.error, ErrorCode::None, "create: {:?}", header.message);

    // Metadata (from any node) shows the chain: three distinct members, head = leader.
    let meta = metadata(&mut nodes[2].client());
    assert_eq!(meta.nodes.len(), 3, "every registered node: {:?}", meta.nodes);
    let part = &meta.topics[0].partitions[0];
    assert_eq!(part.error, ErrorCode::None);
    let mut members = part.replicas.clone();
    members.sort_unstable();
    assert_eq!(members, vec![1, 2, 3], "chain {:?}", part.replicas);
    assert_eq!(part.leader_node, part.replicas[0]);
    assert!(part.epoch >= 1);
    let head = &nodes[part.leader_node as usize - 1];
    let head_info = meta.nodes.iter().find(|n| n.node_id == part.leader_node).unwrap();
    assert_eq!(head_info.port, head.public.port());
    assert_eq!(head_info.shard_ports, head.shard_ports);

    // acks=all produces on the head (retrying while the replicas start).
    let mut producer = head.client();
    let mut expected_end = 0;
    for i in 0..5u32 {
        let values: Vec<Vec<u8>> = (0..3).map(|r| format!("rec-{i}-{r}").into_bytes()).collect();
        let refs: Vec<&[u8]> = values.iter().map(|v| v.as_slice()).collect();
        let answer = produce_retrying(&mut producer, &batch(&refs, 1_000 + i64::from(i)));
        assert_eq!(answer.error, ErrorCode::None, "produce {i}");
        assert_eq!(answer.base_offset, expected_end);
        expected_end += 3;
    }

    // Every replica's node serves the same committed bytes (through its public port).
    let served: Vec<Bytes> = nodes.iter().map(|n| read_until(&mut n.client(), expected_end)).collect();
    assert!(!served[0].is_empty());
    assert!(served.iter().all(|b| *b == served[0]), "replicas differ");
    let before = served[0].clone();
    let values = nodes[1].client().read_all(TOPIC, 0);
    assert_eq!(values.len(), 15);
    assert_eq!(values[14], b"rec-4-2");

    // A non-head refuses produces, naming the head.
    let other = nodes.iter().position(|n| n.public != head.public).unwrap();
    let (header, answer) = produce_all(&mut nodes[other].client(), &batch(&[b"x"], 1));
    assert_eq!(answer.error, ErrorCode::NotOwner);
    let note = header.message.unwrap_or_default();
    assert!(note.contains(&format!("node {}", part.leader_node)), "message {note:?}");

    // The head knows the commit of everything acknowledged.
    let meta = metadata(&mut head.client());
    assert_eq!(meta.topics[0].partitions[0].commit_offset, expected_end);

    // The tail stops: its lease is revoked, the controller shrinks the chain (epoch + 1)
    // and acks=all produces on the head complete again with the two survivors.
    let tail_id = part.replicas[2];
    let mut nodes = nodes;
    let mut tail = nodes.remove(tail_id as usize - 1);
    assert!(tail.signal_and_wait(libc::SIGTERM, Duration::from_secs(20)).success());
    let answer = produce_retrying(&mut head_of(&nodes, part.leader_node).client(), &batch(&[b"after"], 9));
    assert_eq!(answer.error, ErrorCode::None, "acks=all after the tail left");
    assert_eq!(answer.base_offset, expected_end);
    let meta = metadata(&mut nodes[0].client());
    let shrunk = &meta.topics[0].partitions[0];
    assert!(shrunk.epoch > part.epoch && !shrunk.replicas.contains(&tail_id), "chain {shrunk:?}");
    for node in &nodes {
        let now_served = read_until(&mut node.client(), expected_end + 1);
        assert!(now_served.len() > before.len());
        assert_eq!(now_served.slice(..before.len()), before, "a survivor's log changed below the old commit");
    }

    // The stopped node comes back on its data: it re-enters as a learner behind the
    // tail, catches up, is promoted (in-sync report) and then serves the same bytes.
    let mut nodes = nodes;
    let back = start_node(&tail.data_dir, tail_id, &etcd);
    drop(tail);
    nodes.push(back);
    let deadline = Instant::now() + Duration::from_secs(15);
    let rejoined = loop {
        let meta = metadata(&mut nodes[0].client());
        let p = meta.topics[0].partitions[0].clone();
        if p.replicas.len() == 3 || Instant::now() > deadline {
            break p;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(rejoined.replicas.len(), 3, "restarted node not promoted back: {rejoined:?}");
    assert_eq!(*rejoined.replicas.last().unwrap(), tail_id, "a returning node joins at the tail");
    let answer = produce_retrying(&mut head_of(&nodes, rejoined.leader_node).client(), &batch(&[b"back"], 10));
    assert_eq!(answer.error, ErrorCode::None);
    let everyone: Vec<Bytes> = nodes.iter().map(|n| read_until(&mut n.client(), expected_end + 2)).collect();
    assert!(everyone.iter().all(|b| *b == everyone[0]), "replicas differ after the restart");

    // Deleting the topic removes every replica log.
    let (header, _) = nodes[0].client().call(Request::DeleteTopic(DeleteTopicRequest { name: TOPIC.into() }), &[]);
    assert_eq!(header.error, ErrorCode::None, "delete: {:?}", header.message);
    let deadline = Instant::now() + Duration::from_secs(10);
    for node in &nodes {
        let dir = node.data_dir.join("topics").join(TOPIC).join("0");
        while dir.exists() {
            assert!(Instant::now() < deadline, "{} still exists", dir.display());
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

fn head_of(nodes: &[Node], id: u32) -> &Node {
    let named = |n: &Node| n.data_dir.file_name().and_then(|f| f.to_str()) == Some(&format!("n{id}"));
    nodes.iter().find(|n| named(n)).expect("head still running")
}
