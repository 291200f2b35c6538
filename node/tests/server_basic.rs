//! The real binary on ephemeral ports: topics, produce/fetch on several partitions
//! over both shards (shard ports and the forwarding public port), metadata, list
//! offsets, long-poll wake-up, admin HTTP and a graceful SIGTERM.

mod common;

use std::time::{Duration, Instant};

use common::{batch, batch1, Node};
use strand_wire::msg::*;
use strand_wire::ErrorCode;

#[test]
fn produce_fetch_metadata_across_shards() {
    let dir = tempfile::tempdir().unwrap();
    let mut node = Node::start(dir.path(), 2, &[]);
    assert_eq!(node.shard_ports.len(), 2);
    let mut c = node.client();
    let (hs, _) =
        c.call(Request::Handshake(HandshakeRequest { protocol_version: PROTOCOL_VERSION, client_id: "t".into() }), &[]);
    assert_eq!(hs.error, ErrorCode::None);
    assert_eq!(c.create_topic("orders", 4).error, ErrorCode::None);
    assert_eq!(c.create_topic("orders", 4).error, ErrorCode::TopicAlreadyExists);
    assert_eq!(c.create_topic("bad/name", 1).error, ErrorCode::InvalidTopicName);

    let (meta, _) = c.call(Request::Metadata(MetadataRequest { topics: vec![] }), &[]);
    let Response::Metadata(meta) = meta.response else { panic!("metadata") };
    assert_eq!(meta.nodes[0].shard_ports, node.shard_ports);
    assert_eq!(meta.nodes[0].port, node.public.port());
    let topic = &meta.topics[0];
    assert_eq!(topic.partitions.len(), 4);
    let shards: std::collections::BTreeSet<u16> = topic.partitions.iter().map(|p| p.leader_shard).collect();
    assert_eq!(shards.len(), 2, "4 partitions spread over both shards");

    // Each partition through its owner's shard port, then through the other shard's port
    // (forwarded), then through the public port.
    for p in &topic.partitions {
        let owner = usize::from(p.leader_shard);
        let mut fast = node.shard_client(owner);
        let mut slow = node.shard_client(1 - owner);
        let v = format!("p{}", p.partition);
        assert_eq!(fast.produce("orders", p.partition, &batch1(format!("{v}-a").as_bytes())).base_offset, 0);
        let r = slow.produce("orders", p.partition, &batch(&[format!("{v}-b").as_bytes(), b"x"], 5)).base_offset;
        assert_eq!(r, 1);
        assert_eq!(c.produce("orders", p.partition, &batch1(format!("{v}-c").as_bytes())).base_offset, 3);
        let expected: Vec<Vec<u8>> = [format!("{v}-a"), format!("{v}-b"), "x".into(), format!("{v}-c")]
            .into_iter()
            .map(String::into_bytes)
            .collect();
        assert_eq!(fast.read_all("orders", p.partition), expected);
        assert_eq!(slow.read_all("orders", p.partition), expected);
        assert_eq!(c.read_all("orders", p.partition), expected);
    }

    // Multi-partition produce and fetch in one request through the public port.
    let (b0, b1) = (batch1(b"m0"), batch1(b"m1"));
    let mut payload = b0.to_vec();
    payload.extend_from_slice(&b1);
    let produce = Request::Produce(ProduceRequest {
        acks: Acks::Leader,
        timeout_ms: 1000,
        partitions: vec![
            ProducePartition { topic: "orders".into(), partition: 0, bytes_len: b0.len() as u32 },
            ProducePartition { topic: "orders".into(), partition: 1, bytes_len: b1.len() as u32 },
            ProducePartition { topic: "nope".into(), partition: 0, bytes_len: 0 },
        ],
    });
    let (h, _) = c.call(produce, &payload);
    let Response::Produce(r) = h.response else { panic!("produce") };
    let codes: Vec<_> = r.partitions.iter().map(|p| (p.partition, p.error, p.base_offset)).collect();
    assert_eq!(codes, vec![(0, ErrorCode::None, 4), (1, ErrorCode::None, 4), (0, ErrorCode::UnknownTopic, 0)]);
    let fetch = Request::Fetch(FetchRequest {
        max_wait_ms: 0,
        min_bytes: 0,
        max_bytes: 1 << 20,
        partitions: (0..2)
            .map(|p| FetchPartition { topic: "orders".into(), partition: p, offset: 4, max_bytes: 1 << 20 })
            .collect(),
    });
    let (h, bytes) = c.call(fetch, &[]);
    let Response::Fetch(f) = h.response else { panic!("fetch") };
    assert_eq!(f.partitions.iter().map(|p| p.bytes_len as usize).sum::<usize>(), bytes.len());
    assert_eq!(bytes.len(), b0.len() + b1.len());

    // ListOffsets: earliest, latest, by timestamp.
    let lo = Request::ListOffsets(ListOffsetsRequest {
        partitions: vec![
            ListOffsetsPartition { topic: "orders".into(), partition: 2, spec: OffsetSpec::Earliest },
            ListOffsetsPartition { topic: "orders".into(), partition: 2, spec: OffsetSpec::Latest },
            ListOffsetsPartition { topic: "orders".into(), partition: 2, spec: OffsetSpec::Timestamp(5) },
            ListOffsetsPartition { topic: "orders".into(), partition: 9, spec: OffsetSpec::Latest },
        ],
    });
    let (h, _) = c.call(lo, &[]);
    let Response::ListOffsets(lo) = h.response else { panic!("list offsets") };
    let got: Vec<_> = lo.partitions.iter().map(|p| (p.error, p.offset)).collect();
    assert_eq!(got[0], (ErrorCode::None, 0));
    assert_eq!(got[1], (ErrorCode::None, 4));
    assert_eq!(got[2].0, ErrorCode::None);
    assert_eq!(got[3].0, ErrorCode::UnknownPartition);

    let (status, body) = node.admin_get("/health");
    assert_eq!(status, 200, "{body}");
    let (status, topics) = node.admin_get("/v1/topics");
    assert_eq!(status, 200);
    assert!(topics.contains("\"orders\""), "{topics}");
    std::thread::sleep(Duration::from_millis(1200));
    let (_, metrics) = node.admin_get("/metrics");
    assert!(metrics.contains("strand_partition_log_end_offset{topic=\"orders\",partition=\"0\"} 5"), "{metrics}");
    assert!(metrics.contains("strand_produce_latency_seconds_count"), "{metrics}");

    let status = node.signal_and_wait(libc::SIGTERM, Duration::from_secs(20));
    assert!(status.success(), "graceful shutdown exits 0, got {status:?}");
}

#[test]
fn long_poll_wakes_on_append_and_times_out() {
    let dir = tempfile::tempdir().unwrap();
    let node = Node::start(dir.path(), 2, &[]);
    let mut c = node.client();
    assert_eq!(c.create_topic("lp", 2).error, ErrorCode::None);
    for partition in 0..2 {
        let mut consumer = node.client();
        // Times out with nothing.
        let started = Instant::now();
        let (p, bytes) = consumer.fetch("lp", partition, 0, 300);
        assert!(bytes.is_empty() && p.error == ErrorCode::None);
        assert!(started.elapsed() >= Duration::from_millis(250), "{:?}", started.elapsed());

        // Woken by an append well before the wait ends.
        let cid = consumer.send(
            Request::Fetch(FetchRequest {
                max_wait_ms: 10_000,
                min_bytes: 1,
                max_bytes: 1 << 20,
                partitions: vec![FetchPartition { topic: "lp".into(), partition, offset: 0, max_bytes: 1 << 20 }],
            }),
            &[],
        );
        std::thread::sleep(Duration::from_millis(200));
        let started = Instant::now();
        // A produce on the same connection is answered while the fetch waits (out of order).
        let pcid = consumer.send(
            Request::Produce(ProduceRequest {
                acks: Acks::Leader,
                timeout_ms: 1000,
                partitions: vec![ProducePartition {
                    topic: "lp".into(),
                    partition,
                    bytes_len: batch1(b"wake").len() as u32,
                }],
            }),
            &batch1(b"wake"),
        );
        let mut seen = Vec::new();
        for _ in 0..2 {
            let (h, payload) = consumer.recv();
            seen.push(h.correlation_id);
            if h.correlation_id == cid {
                assert!(!payload.is_empty(), "fetch woke with data");
            }
        }
        assert_eq!(seen, vec![pcid, cid], "produce ack first, then the woken fetch");
        assert!(started.elapsed() < Duration::from_secs(5), "woken by the append, not the timeout");
    }
}
