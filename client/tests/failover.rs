//! Routing and failover against a scripted two-node "cluster": two peers speaking the
//! real wire protocol on real loopback sockets, sharing one script that says which node
//! is the chain head, what metadata says, and when a node dies or drops a connection
//! after appending. Checks: a produce answered `NOT_OWNER` moves to the new head; a dead
//! bootstrap node does not blind the client (metadata from another known node); a
//! produce whose outcome is unknown is resent byte for byte (for the node's dedup) by an
//! idempotent producer, replicated partition or not, and failed (never resent) without
//! idempotence; reads go to the nearest replica when asked.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use strand_client::{
    Client, ClientConfig, ClientError, Consumer, ConsumerConfig, Producer, ProducerConfig, ProducerRecord,
    ReadPreference, SeekTo,
};
use strand_wire::batch::{Batch, BatchIter};
use strand_wire::codec::{decode_request, encode_response};
use strand_wire::frame::{write_frame, FrameDecoder};
use strand_wire::msg::{
    Acks, FetchPartitionResponse, FetchResponse, HandshakeResponse, InitProducerIdResponse,
    ListOffsetsPartitionResponse, ListOffsetsResponse, MetadataResponse, NodeInfo, PartitionMetadata,
    ProducePartitionResponse, ProduceResponse, Request, Response, ResponseHeader, TopicMetadata,
};
use strand_wire::ErrorCode;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// One record as a node stored it.
#[derive(Debug, Clone, PartialEq)]
struct Stored {
    node: u32,
    producer_id: i64,
    base_sequence: i32,
    value: String,
}

#[derive(Default)]
struct Script {
    /// The real head: a produce on any other node is answered `NOT_OWNER`.
    head: u32,
    /// The head metadata names (lags `head` until a node answers `NOT_OWNER`).
    metadata_head: u32,
    /// Chain in metadata: both nodes with epoch 1, or only the head with epoch 0.
    replicated: bool,
    /// (node, nth produce on it): append, then close the connection without answering
    /// and make `next_head` the head.
    drop_after_append: Option<(u32, usize)>,
    next_head: u32,
    /// A node that refuses its first produce with `NOT_OWNER`, answering only after its
    /// next request (so a later batch is stored while the refused one is unanswered).
    refuse_first_late: Option<u32>,
    produces: Vec<usize>,
    stored: Vec<Stored>,
    /// (node, request kind) of every fetch and list-offsets.
    reads: Vec<(u32, &'static str)>,
    /// (node, offset) of every fetch.
    fetches: Vec<(u32, u64)>,
    /// Fetches on a node other than `head` answer `OFFSET_OUT_OF_RANGE` (a replica behind)
    /// and bring metadata up to date.
    non_head_reads_behind: bool,
    ports: Vec<u16>,
    producer_ids: u64,
    /// Per (node, producer id): (base sequence, record count, base offset) of each stored
    /// batch — the node's idempotence rule: a stored sequence is a duplicate, a known
    /// producer's next batch must follow its last, an unknown producer's is appended.
    sequences: std::collections::HashMap<(u32, i64), Vec<StoredBatch>>,
    /// Produces answered `DUPLICATE_SEQUENCE`.
    duplicates: usize,
}

/// (base sequence, record count, base offset) of a batch the fake node stored.
type StoredBatch = (i32, u32, u64);

type Shared = Arc<Mutex<Script>>;

fn lock(s: &Shared) -> std::sync::MutexGuard<'_, Script> {
    s.lock().expect("script lock")
}

struct FakeNode {
    accept: JoinHandle<()>,
    conns: Arc<Mutex<Vec<JoinHandle<()>>>>,
    addr: String,
}

impl FakeNode {
    /// Closes the listener and every connection: connects are refused from now on.
    fn kill(&self) {
        self.accept.abort();
        for c in lock_conns(&self.conns).drain(..) {
            c.abort();
        }
    }
}

fn lock_conns(c: &Mutex<Vec<JoinHandle<()>>>) -> std::sync::MutexGuard<'_, Vec<JoinHandle<()>>> {
    c.lock().expect("conns lock")
}

/// Nodes 1 and 2 on ephemeral ports.
async fn cluster(script: Script) -> (Shared, Vec<FakeNode>) {
    let shared: Shared = Arc::new(Mutex::new(Script { produces: vec![0; 3], ..script }));
    let mut listeners = Vec::new();
    for _ in 0..2 {
        let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        lock(&shared).ports.push(l.local_addr().expect("addr").port());
        listeners.push(l);
    }
    let mut nodes = Vec::new();
    for (i, listener) in listeners.into_iter().enumerate() {
        let id = i as u32 + 1;
        let addr = format!("127.0.0.1:{}", lock(&shared).ports[i]);
        let conns: Arc<Mutex<Vec<JoinHandle<()>>>> = Arc::default();
        let (s, c) = (shared.clone(), conns.clone());
        let accept = tokio::spawn(async move {
            while let Ok((sock, _)) = listener.accept().await {
                lock_conns(&c).push(tokio::spawn(serve(sock, id, s.clone())));
            }
        });
        nodes.push(FakeNode { accept, conns, addr });
    }
    (shared, nodes)
}

enum Answer {
    Reply(Response, ErrorCode),
    /// Answer after the next request's answer.
    Late(Response),
    Close,
}

async fn serve(mut sock: TcpStream, id: u32, script: Shared) {
    let mut decoder = FrameDecoder::new(1 << 24);
    let mut buf = BytesMut::new();
    let mut late = BytesMut::new();
    loop {
        while let Ok(Some(frame)) = decoder.decode(&mut buf) {
            let header = decode_request(&frame.header).expect("client sends valid headers");
            let cid = header.correlation_id;
            let encode = |response, error| {
                let mut out = BytesMut::new();
                let reply = ResponseHeader { correlation_id: cid, error, message: None, response, throttle_ms: 0 };
                write_frame(&mut out, &encode_response(&reply), &[]);
                out
            };
            let mut out = match answer(id, header.request, &frame.payload, &script) {
                Answer::Reply(r, e) => encode(r, e),
                Answer::Late(r) => {
                    late.extend_from_slice(&encode(r, ErrorCode::None));
                    continue;
                }
                Answer::Close => return,
            };
            out.extend_from_slice(&late.split());
            if sock.write_all(&out).await.is_err() {
                return;
            }
        }
        match sock.read_buf(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
    }
}

fn answer(id: u32, request: Request, payload: &[u8], script: &Shared) -> Answer {
    let mut s = lock(script);
    let ok = |r| Answer::Reply(r, ErrorCode::None);
    match request {
        Request::Handshake(_) => ok(Response::Handshake(HandshakeResponse {
            protocol_version_min: 1,
            protocol_version_max: 1,
            node_id: id,
            frame_len_max: 1 << 23,
        })),
        Request::Metadata(_) => ok(metadata(&s)),
        Request::InitProducerId => {
            s.producer_ids += 1;
            ok(Response::InitProducerId(InitProducerIdResponse {
                producer_id: 100 + s.producer_ids,
                producer_epoch: 0,
            }))
        }
        Request::Produce(_) => produce(id, payload, &mut s),
        Request::Fetch(f) => {
            s.reads.push((id, "fetch"));
            s.fetches.push((id, f.partitions[0].offset));
            let behind = s.non_head_reads_behind && id != s.head;
            if behind {
                s.metadata_head = s.head;
            }
            let part = FetchPartitionResponse {
                topic: "t".into(),
                partition: 0,
                error: if behind { ErrorCode::OffsetOutOfRange } else { ErrorCode::None },
                log_start_offset: 0,
                log_end_offset: 0,
                high_watermark: 0,
                bytes_len: 0,
            };
            ok(Response::Fetch(FetchResponse { partitions: vec![part] }))
        }
        Request::ListOffsets(_) => {
            s.reads.push((id, "list_offsets"));
            let part = ListOffsetsPartitionResponse {
                topic: "t".into(),
                partition: 0,
                error: ErrorCode::None,
                offset: 7,
                timestamp: -1,
            };
            ok(Response::ListOffsets(ListOffsetsResponse { partitions: vec![part] }))
        }
        other => panic!("unexpected request {other:?}"),
    }
}

fn produce(id: u32, payload: &[u8], s: &mut Script) -> Answer {
    if id != s.head {
        s.metadata_head = s.head; // the cluster's view catches up
        return Answer::Reply(produce_reply(ErrorCode::NotOwner, 0), ErrorCode::None);
    }
    if s.refuse_first_late == Some(id) {
        s.refuse_first_late = None;
        return Answer::Late(produce_reply(ErrorCode::NotOwner, 0));
    }
    let base = s.stored.iter().filter(|r| r.node == id).count() as u64;
    if let Some(Ok(first)) = BatchIter::new(payload).next() {
        let h = *first.header();
        if h.is_idempotent() {
            let stored = s.sequences.entry((id, h.producer_id)).or_default();
            if let Some(&(_, _, offset)) = stored.iter().find(|b| b.0 == h.base_sequence) {
                s.duplicates += 1;
                return Answer::Reply(produce_reply(ErrorCode::DuplicateSequence, offset), ErrorCode::None);
            }
            if stored
                .last()
                .is_some_and(|&(seq, count, _)| strand_wire::batch::next_sequence(seq, count) != h.base_sequence)
            {
                return Answer::Reply(produce_reply(ErrorCode::OutOfOrderSequence, 0), ErrorCode::None);
            }
            stored.push((h.base_sequence, h.record_count, base));
        }
    }
    s.produces[id as usize] += 1;
    for batch in BatchIter::new(payload) {
        let batch: Batch<'_> = batch.expect("client sends valid batches");
        let h = *batch.header();
        for record in batch.records() {
            let record = record.expect("valid record");
            let value = String::from_utf8_lossy(record.value.unwrap_or(b"null")).into_owned();
            s.stored.push(Stored { node: id, producer_id: h.producer_id, base_sequence: h.base_sequence, value });
        }
    }
    if s.drop_after_append == Some((id, s.produces[id as usize])) {
        s.head = s.next_head;
        return Answer::Close;
    }
    Answer::Reply(produce_reply(ErrorCode::None, base), ErrorCode::None)
}

fn produce_reply(error: ErrorCode, base_offset: u64) -> Response {
    Response::Produce(ProduceResponse {
        partitions: vec![ProducePartitionResponse {
            topic: "t".to_string(),
            partition: 0,
            error,
            base_offset,
            log_end_offset: base_offset + 1,
            log_start_offset: 0,
        }],
    })
}

fn metadata(s: &Script) -> Response {
    let nodes = (0..2)
        .map(|i| NodeInfo {
            node_id: i + 1,
            host: "127.0.0.1".to_string(),
            port: s.ports[i as usize],
            shard_ports: vec![],
        })
        .collect();
    let (replicas, epoch) = if s.replicated {
        let other = 3 - s.metadata_head;
        (vec![s.metadata_head, other], 1)
    } else {
        (vec![s.metadata_head], 0)
    };
    Response::Metadata(MetadataResponse {
        nodes,
        topics: vec![TopicMetadata {
            name: "t".to_string(),
            error: ErrorCode::None,
            partitions: vec![PartitionMetadata {
                partition: 0,
                error: ErrorCode::None,
                leader_node: s.metadata_head,
                leader_shard: 0,
                replicas,
                epoch,
                log_start_offset: 0,
                log_end_offset: 0,
                commit_offset: 0,
                preferred_leader: 0,
            }],
        }],
    })
}

async fn producer(bootstrap: &str) -> Producer {
    producer_with(bootstrap, true).await
}

async fn producer_with(bootstrap: &str, idempotence: bool) -> Producer {
    let client_config = ClientConfig {
        request_timeout: Duration::from_secs(2),
        reconnect_backoff_min: Duration::from_millis(10),
        ..ClientConfig::new(bootstrap)
    };
    let client = Client::connect(client_config).await.expect("connect");
    let config = ProducerConfig {
        acks: Acks::All,
        linger: Duration::from_millis(1),
        retry_backoff: Duration::from_millis(10),
        delivery_timeout: Duration::from_secs(10),
        idempotence,
        ..Default::default()
    };
    Producer::new(client, config).await.expect("producer")
}

/// Sends `value` and waits for its outcome.
async fn send(producer: &Producer, value: &str) -> Result<u64, ClientError> {
    let record = ProducerRecord::new("t", Bytes::from(value.to_string())).partition(0);
    let delivery = producer.send(record).await.expect("queued");
    let meta = tokio::time::timeout(Duration::from_secs(10), delivery).await.expect("resolves")?;
    Ok(meta.offset.expect("acked offset"))
}

fn values_on(script: &Shared, node: u32) -> Vec<String> {
    lock(script).stored.iter().filter(|r| r.node == node).map(|r| r.value.clone()).collect()
}

#[tokio::test]
async fn not_owner_moves_the_produce_to_the_new_head() {
    // Metadata still names node 1, but node 2 is the head now.
    let (script, nodes) = cluster(Script { head: 2, metadata_head: 1, replicated: true, ..Default::default() }).await;
    let producer = producer(&nodes[0].addr).await;
    for i in 0..20 {
        assert_eq!(send(&producer, &format!("r{i}")).await, Ok(i));
    }
    let expected: Vec<String> = (0..20).map(|i| format!("r{i}")).collect();
    assert_eq!(values_on(&script, 2), expected, "every record stored once, in order, on the head");
    assert!(values_on(&script, 1).is_empty(), "the old head stored nothing");
    assert!(producer.retry_count() >= 1, "the NOT_OWNER batch was resent");
    assert_eq!(producer.unknown_outcome_count(), 0);
}

#[tokio::test]
async fn a_dead_bootstrap_does_not_blind_the_client() {
    let (script, nodes) = cluster(Script { head: 1, metadata_head: 1, replicated: true, ..Default::default() }).await;
    let producer = producer(&nodes[0].addr).await;
    for i in 0..5 {
        assert_eq!(send(&producer, &format!("a{i}")).await, Ok(i));
    }
    // Node 1 (bootstrap and head) dies; the chain is reconfigured to node 2.
    nodes[0].kill();
    {
        let mut s = lock(&script);
        s.head = 2;
        s.metadata_head = 2;
    }
    for i in 0..5 {
        assert_eq!(send(&producer, &format!("b{i}")).await, Ok(i), "metadata came from node 2");
    }
    assert_eq!(values_on(&script, 2), (0..5).map(|i| format!("b{i}")).collect::<Vec<_>>());
    assert_eq!(values_on(&script, 1).len(), 5);
}

/// A chain whose head (node 1) appends the second produce, drops the connection and is
/// replaced by node 2.
fn head_lost_after_second_append() -> Script {
    Script {
        head: 1,
        metadata_head: 1,
        replicated: true,
        drop_after_append: Some((1, 2)),
        next_head: 2,
        ..Default::default()
    }
}

#[tokio::test]
async fn unknown_outcome_on_a_replicated_partition_is_resent_by_an_idempotent_producer() {
    let (script, nodes) = cluster(head_lost_after_second_append()).await;
    let producer = producer(&nodes[0].addr).await;
    assert_eq!(send(&producer, "one").await, Ok(0));
    assert_eq!(send(&producer, "two").await, Ok(0), "resent to the new head (a real one dedups it)");
    assert_eq!(send(&producer, "three").await, Ok(1));
    assert_eq!(values_on(&script, 1), vec!["one", "two"]);
    assert_eq!(values_on(&script, 2), vec!["two", "three"]);
    assert_eq!(producer.unknown_outcome_count(), 0);
    // Byte for byte: the same producer id and sequence, so the new head's table matches it.
    let stored = lock(&script).stored.clone();
    let copies: Vec<&Stored> = stored.iter().filter(|r| r.value == "two").collect();
    assert_eq!((copies[0].producer_id, copies[0].base_sequence), (copies[1].producer_id, copies[1].base_sequence));
    assert_eq!(copies[1].base_sequence, 1);
}

#[tokio::test]
async fn unknown_outcome_on_a_replicated_partition_fails_without_idempotence() {
    let (script, nodes) = cluster(head_lost_after_second_append()).await;
    let producer = producer_with(&nodes[0].addr, false).await;
    assert_eq!(send(&producer, "one").await, Ok(0));
    let second = send(&producer, "two").await;
    assert!(matches!(&second, Err(ClientError::UnknownOutcome(_))), "{second:?}");
    assert_eq!(send(&producer, "three").await, Ok(0), "the next record goes to the new head");
    assert_eq!(values_on(&script, 1), vec!["one", "two"]);
    assert_eq!(values_on(&script, 2), vec!["three"], "\"two\" was not resent anywhere");
    assert_eq!(producer.unknown_outcome_count(), 1);
}

#[tokio::test]
async fn unknown_outcome_on_an_unreplicated_partition_is_resent_for_the_nodes_dedup() {
    let script = Script {
        head: 1,
        metadata_head: 1,
        replicated: false,
        drop_after_append: Some((1, 2)),
        next_head: 1,
        ..Default::default()
    };
    let (script, nodes) = cluster(script).await;
    let producer = producer(&nodes[0].addr).await;
    assert_eq!(send(&producer, "one").await, Ok(0));
    assert!(send(&producer, "two").await.is_ok(), "resent after the lost connection");
    let stored = lock(&script).stored.clone();
    let copies = stored.iter().filter(|r| r.value == "two").count();
    assert_eq!(copies, 1, "the resend carried the same producer id and sequence: stored once");
    assert_eq!(lock(&script).duplicates, 1, "the resend was answered DUPLICATE_SEQUENCE");
    assert_eq!(producer.unknown_outcome_count(), 0);
}

#[tokio::test]
async fn reads_go_to_the_head_or_to_the_nearest_replica() {
    for (preference, expected) in [(ReadPreference::Leader, 2), (ReadPreference::Nearest, 1)] {
        // Node 2 is the head; the client bootstraps from node 1, which holds a replica.
        let script = Script { head: 2, metadata_head: 2, replicated: true, ..Default::default() };
        let (script, nodes) = cluster(script).await;
        let config = ClientConfig { read_preference: preference, ..ClientConfig::new(nodes[0].addr.clone()) };
        let client = Client::connect(config).await.expect("connect");
        let mut consumer = Consumer::new(client, ConsumerConfig::default());
        consumer.assign("t", 0).await.expect("assign");
        consumer.seek("t", 0, SeekTo::Earliest).await.expect("seek");
        let polled = consumer.poll(Duration::from_millis(100)).await.expect("poll");
        assert!(polled.is_empty());
        let reads = lock(&script).reads.clone();
        assert!(reads.iter().any(|r| r.1 == "fetch") && reads.iter().any(|r| r.1 == "list_offsets"), "{reads:?}");
        assert!(reads.iter().all(|r| r.0 == expected), "{preference:?}: {reads:?}");
    }
}

/// Two 100-byte batches of one record each, sent back to back on node 1, which answers
/// the first produce only after the next request (`refuse_first_late`).
async fn two_batches_first_refused_late(
    idempotence: bool,
) -> (Shared, Vec<FakeNode>, Vec<Result<strand_client::RecordMetadata, ClientError>>) {
    let script =
        Script { head: 1, metadata_head: 1, replicated: true, refuse_first_late: Some(1), ..Default::default() };
    let (script, nodes) = cluster(script).await;
    // A short request timeout: a producer that waits for the late answer times out and resends.
    let client_config =
        ClientConfig { request_timeout: Duration::from_millis(300), ..ClientConfig::new(nodes[0].addr.clone()) };
    let client = Client::connect(client_config).await.expect("connect");
    // Each 124-byte record closes its own 100-byte batch: two batches in flight.
    let config = ProducerConfig {
        acks: Acks::All,
        batch_size: 100,
        linger: Duration::from_secs(5),
        retry_backoff: Duration::from_millis(10),
        idempotence,
        ..Default::default()
    };
    let producer = Producer::new(client, config).await.expect("producer");
    let mut deliveries = Vec::new();
    for i in 0..2 {
        let record = ProducerRecord::new("t", Bytes::from(format!("{i:0100}"))).partition(0);
        deliveries.push(producer.send(record).await.expect("queued"));
    }
    let mut outcomes = Vec::new();
    for d in deliveries {
        outcomes.push(tokio::time::timeout(Duration::from_secs(5), d).await.expect("resolves"));
    }
    (script, nodes, outcomes)
}

#[tokio::test]
async fn without_a_producer_id_a_refused_batch_is_failed_not_resent_when_a_later_one_was_stored() {
    let (script, _nodes, outcomes) = two_batches_first_refused_late(false).await;
    let [first, second] = <[_; 2]>::try_from(outcomes).expect("two outcomes");
    assert_eq!(second.expect("stored").offset, Some(0));
    let err = first.expect_err("refused, and not resent behind the stored batch");
    assert_eq!(err.code(), ErrorCode::NotOwner, "{err}");
    assert_eq!(values_on(&script, 1), vec![format!("{:0100}", 1)], "nothing out of order");
}

/// A node appends an unknown producer id's batch at any sequence. So an idempotent
/// producer sends one batch at a time until the node stored one of its id: a first
/// batch that is lost (here: answered too late) is resent and stored before the second,
/// not failed because a later batch got in first.
#[tokio::test]
async fn a_fresh_producer_id_stores_its_first_batch_before_sending_more() {
    let (script, _nodes, outcomes) = two_batches_first_refused_late(true).await;
    let offsets: Vec<Option<u64>> = outcomes.into_iter().map(|o| o.expect("delivered").offset).collect();
    assert_eq!(offsets, vec![Some(0), Some(1)]);
    assert_eq!(values_on(&script, 1), vec![format!("{:0100}", 0), format!("{:0100}", 1)], "stored in send order");
}

#[tokio::test]
async fn a_replica_behind_the_position_is_retried_elsewhere_not_reset() {
    // Metadata names node 1, which is behind: its fetch answers OFFSET_OUT_OF_RANGE.
    let script =
        Script { head: 2, metadata_head: 1, replicated: true, non_head_reads_behind: true, ..Default::default() };
    let (script, nodes) = cluster(script).await;
    let client = Client::connect(ClientConfig::new(nodes[0].addr.clone())).await.expect("connect");
    let mut consumer = Consumer::new(client, ConsumerConfig::default());
    consumer.assign("t", 0).await.expect("assign");
    consumer.seek("t", 0, SeekTo::Offset(40)).await.expect("seek");
    let polled = consumer.poll(Duration::from_millis(300)).await.expect("poll");
    assert!(polled.is_empty());
    let s = lock(&script);
    assert_eq!(s.fetches.first(), Some(&(1, 40)), "first fetch on the stale head");
    assert!(s.fetches.iter().skip(1).all(|f| *f == (2, 40)), "then the same position on node 2: {:?}", s.fetches);
    assert!(s.fetches.len() > 1, "{:?}", s.fetches);
    assert!(!s.reads.iter().any(|r| r.1 == "list_offsets"), "no reset to the log end: {:?}", s.reads);
}
