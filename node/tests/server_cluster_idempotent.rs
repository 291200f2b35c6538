//! Idempotent produce on a replicated partition, deterministically, on a real cluster (real
//! etcd, three `strand-node` processes): the chain head answers a resend of any of a
//! producer's last batches `DUPLICATE_SEQUENCE` with the original offset and refuses a gap
//! `OUT_OF_ORDER_SEQUENCE`; after the head is SIGKILLed, the promoted head — which rebuilt
//! the producer table from its own log — does the same for batches the old head took, then
//! appends the next sequence once. Every replica left holds each batch exactly once.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::etcd::Etcd;
use common::{Client, Node};
use strand_wire::batch::{BatchBuilder, BatchIter};
use strand_wire::msg::*;
use strand_wire::ErrorCode;

const TOPIC: &str = "once";
const PRODUCER: i64 = 77;

fn start_node(dir: &Path, id: u32, etcd: &Etcd) -> Node {
    let id = id.to_string();
    let url = etcd.endpoint();
    let flags = ["--node-id", &id, "--etcd", &url, "--lease-ttl-s", "2", "--replication-port-base", "0"];
    Node::start(dir, 2, &flags)
}

/// Batch `n` of producer [`PRODUCER`]: 2 records, base sequence `2 * n`.
fn idempotent(n: i32) -> Bytes {
    let mut b = BatchBuilder::new().producer(PRODUCER, 0, n * 2);
    b.push(1_000, None, Some(format!("b{n}-0").as_bytes()), &[]);
    b.push(1_001, None, Some(format!("b{n}-1").as_bytes()), &[]);
    b.finish()
}

/// One acks=all produce of `bytes`; the partition's answer.
fn produce(client: &mut Client, bytes: &[u8]) -> ProducePartitionResponse {
    let request = Request::Produce(ProduceRequest {
        acks: Acks::All,
        timeout_ms: 10_000,
        partitions: vec![ProducePartition { topic: TOPIC.into(), partition: 0, bytes_len: bytes.len() as u32 }],
    });
    match client.call(request, bytes).0.response {
        Response::Produce(mut r) => r.partitions.remove(0),
        other => panic!("not a produce response: {other:?}"),
    }
}

/// Produces until the answer is not a transient refusal (replica starting, chain
/// reconfiguring, producer table being rebuilt).
fn produce_settled(client: &mut Client, bytes: &[u8]) -> ProducePartitionResponse {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let answer = produce(client, bytes);
        let transient =
            matches!(answer.error, ErrorCode::Throttled | ErrorCode::NotOwner | ErrorCode::NotEnoughReplicas);
        if !transient || Instant::now() > deadline {
            return answer;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// (head, epoch) of the partition as `client`'s node sees it.
fn chain_head(client: &mut Client) -> (u32, u64) {
    let (header, _) = client.call(Request::Metadata(MetadataRequest { topics: vec![TOPIC.into()] }), &[]);
    match header.response {
        Response::Metadata(m) => {
            let p = &m.topics[0].partitions[0];
            (p.leader_node, p.epoch)
        }
        other => panic!("not metadata: {other:?}"),
    }
}

/// The record values `client`'s node serves, up to `end`.
fn values(client: &mut Client, end: u64) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(10);
    let (mut offset, mut out) = (0, Vec::new());
    while offset < end {
        assert!(Instant::now() < deadline, "replica did not serve offset {offset} of {end}");
        let (p, bytes) = client.fetch(TOPIC, 0, offset, 200);
        assert_eq!(p.error, ErrorCode::None);
        for batch in BatchIter::new(&bytes) {
            let batch = batch.expect("valid batch");
            for r in batch.records() {
                out.push(String::from_utf8_lossy(r.expect("record").value.expect("not a tombstone")).into_owned());
            }
            offset = batch.header().next_offset();
        }
    }
    out
}

#[test]
fn duplicates_are_recognised_by_the_head_and_by_the_promoted_head() {
    let tmp = tempfile::tempdir().unwrap();
    let etcd = Etcd::start();
    let mut nodes: Vec<Node> = (1..=3u32).map(|id| start_node(&tmp.path().join(format!("n{id}")), id, &etcd)).collect();
    let create = Request::CreateTopic(CreateTopicRequest {
        name: TOPIC.into(),
        partitions: 1,
        replication_factor: 3,
        configs: Vec::new(),
    });
    let (header, _) = nodes[0].client().call(create, &[]);
    assert_eq!(header.error, ErrorCode::None, "create: {:?}", header.message);

    let (head, epoch) = chain_head(&mut nodes[0].client());
    let mut on_head = nodes[head as usize - 1].client();
    let mut offsets = Vec::new();
    for n in 0..6 {
        let answer = produce_settled(&mut on_head, &idempotent(n));
        assert_eq!(answer.error, ErrorCode::None, "batch {n}");
        offsets.push(answer.base_offset);
    }
    assert_eq!(offsets, vec![0, 2, 4, 6, 8, 10]);
    let dup = produce(&mut on_head, &idempotent(3));
    assert_eq!((dup.error, dup.base_offset), (ErrorCode::DuplicateSequence, 6), "a resend on the head");
    assert_eq!(produce(&mut on_head, &idempotent(9)).error, ErrorCode::OutOfOrderSequence, "a gap");

    // SIGKILL the head; a survivor is promoted and rebuilds the table from its log.
    nodes[head as usize - 1].signal_and_wait(libc::SIGKILL, Duration::from_secs(5));
    let survivor = if head == 1 { 1 } else { 0 };
    let deadline = Instant::now() + Duration::from_secs(20);
    let new_head = loop {
        let (h, e) = chain_head(&mut nodes[survivor].client());
        if h != head && e > epoch {
            break h;
        }
        assert!(Instant::now() < deadline, "no new head after the kill");
        std::thread::sleep(Duration::from_millis(100));
    };
    let mut on_new_head = nodes[new_head as usize - 1].client();
    for n in [4, 5, 1] {
        let answer = produce_settled(&mut on_new_head, &idempotent(n));
        assert_eq!(
            (answer.error, answer.base_offset),
            (ErrorCode::DuplicateSequence, offsets[n as usize]),
            "batch {n}"
        );
    }
    assert_eq!(produce(&mut on_new_head, &idempotent(8)).error, ErrorCode::OutOfOrderSequence, "a gap");
    let next = produce(&mut on_new_head, &idempotent(6));
    assert_eq!((next.error, next.base_offset), (ErrorCode::None, 12), "the next sequence is appended");
    let again = produce(&mut on_new_head, &idempotent(6));
    assert_eq!((again.error, again.base_offset), (ErrorCode::DuplicateSequence, 12));

    let expected: Vec<String> = (0..7).flat_map(|n| [format!("b{n}-0"), format!("b{n}-1")]).collect();
    for (i, node) in nodes.iter().enumerate().filter(|(i, _)| *i as u32 + 1 != head) {
        assert_eq!(values(&mut node.client(), 14), expected, "node {} holds each batch once", i + 1);
    }
}
