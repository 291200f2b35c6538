//! The client against a scripted peer that speaks the real wire protocol on a real
//! loopback socket but decides itself when (or whether) to answer. This checks
//! what a well-behaved node cannot provoke on demand: batch boundaries and
//! sequences, linger, buffer backpressure and request timeouts.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use strand_client::{Client, ClientConfig, ClientError, Producer, ProducerConfig, ProducerRecord};
use strand_wire::batch::{BatchHeader, BatchIter};
use strand_wire::codec::{decode_request, encode_response};
use strand_wire::frame::{write_frame, FrameDecoder};
use strand_wire::msg::{
    HandshakeResponse, InitProducerIdResponse, MetadataResponse, NodeInfo, PartitionMetadata, ProducePartitionResponse,
    ProduceResponse, Request, Response, ResponseHeader, TopicMetadata,
};
use strand_wire::ErrorCode;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Instant;

/// Batches the peer received, with their arrival time.
type Received = Arc<Mutex<Vec<(Instant, BatchHeader)>>>;

struct Peer {
    addr: String,
    received: Received,
}

/// Starts a peer serving topic `t` with one partition; it answers produces only if `ack`.
async fn peer(ack: bool) -> Peer {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let received: Received = Arc::default();
    let shared = received.clone();
    tokio::spawn(async move {
        while let Ok((sock, _)) = listener.accept().await {
            tokio::spawn(serve(sock, port, ack, shared.clone()));
        }
    });
    Peer { addr: format!("127.0.0.1:{port}"), received }
}

async fn serve(mut sock: TcpStream, port: u16, ack: bool, received: Received) {
    let mut decoder = FrameDecoder::new(1 << 24);
    let mut buf = BytesMut::new();
    let mut offset_next = 0u64;
    loop {
        while let Ok(Some(frame)) = decoder.decode(&mut buf) {
            let header = decode_request(&frame.header).expect("client sends valid headers");
            let response = match header.request {
                Request::Handshake(_) => Response::Handshake(HandshakeResponse {
                    protocol_version_min: 1,
                    protocol_version_max: 1,
                    node_id: 0,
                    frame_len_max: 1 << 23,
                }),
                Request::Metadata(_) => metadata(port),
                Request::InitProducerId => {
                    Response::InitProducerId(InitProducerIdResponse { producer_id: 42, producer_epoch: 3 })
                }
                Request::Produce(_) => {
                    let base = offset_next;
                    for batch in BatchIter::new(&frame.payload) {
                        let h = *batch.expect("client sends valid batches").header();
                        offset_next += u64::from(h.record_count);
                        received.lock().expect("lock").push((Instant::now(), h));
                    }
                    if !ack {
                        continue;
                    }
                    Response::Produce(ProduceResponse {
                        partitions: vec![ProducePartitionResponse {
                            topic: "t".to_string(),
                            partition: 0,
                            error: ErrorCode::None,
                            base_offset: base,
                            log_end_offset: offset_next,
                            log_start_offset: 0,
                        }],
                    })
                }
                other => panic!("unexpected request {other:?}"),
            };
            let reply = ResponseHeader {
                correlation_id: header.correlation_id,
                error: ErrorCode::None,
                message: None,
                response,
                throttle_ms: 0,
            };
            let mut out = BytesMut::new();
            write_frame(&mut out, &encode_response(&reply), &[]);
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

fn metadata(port: u16) -> Response {
    Response::Metadata(MetadataResponse {
        nodes: vec![NodeInfo { node_id: 0, host: "127.0.0.1".to_string(), port, shard_ports: vec![] }],
        topics: vec![TopicMetadata {
            name: "t".to_string(),
            error: ErrorCode::None,
            partitions: vec![PartitionMetadata {
                partition: 0,
                error: ErrorCode::None,
                leader_node: 0,
                leader_shard: 0,
                replicas: vec![0],
                epoch: 0,
                log_start_offset: 0,
                log_end_offset: 0,
                commit_offset: 0,
                preferred_leader: 0,
            }],
        }],
    })
}

/// A record whose accounted size is 24 + 100 = 124 bytes.
fn record(i: u32) -> ProducerRecord {
    ProducerRecord::new("t", Bytes::from(format!("{i:0100}")))
}

#[tokio::test]
async fn batches_close_at_batch_size_or_after_linger_with_contiguous_sequences() {
    let peer = peer(true).await;
    let client = Client::connect(ClientConfig::new(peer.addr.clone())).await.expect("connect");
    let linger = Duration::from_millis(80);
    let config = ProducerConfig { batch_size: 1000, linger, ..Default::default() };
    let producer = Producer::new(client, config).await.expect("producer");
    let started = Instant::now();
    let mut deliveries = Vec::new();
    for i in 0..25 {
        deliveries.push(producer.send(record(i)).await.expect("send"));
    }
    for (i, d) in deliveries.into_iter().enumerate() {
        let meta = d.await.expect("delivered");
        assert_eq!((meta.partition, meta.offset), (0, Some(i as u64)));
    }
    let received = peer.received.lock().expect("lock").clone();
    let shape: Vec<(u32, i32)> = received.iter().map(|(_, h)| (h.record_count, h.base_sequence)).collect();
    assert_eq!(shape, vec![(8, 0), (8, 8), (8, 16), (1, 24)], "8 records of 124 bytes fill a 1000-byte batch");
    assert!(received.iter().all(|(_, h)| h.producer_id == 42 && h.producer_epoch == 3));
    let last_sent = received[3].0.duration_since(started);
    assert!(last_sent >= linger, "a partial batch waits for linger (sent after {last_sent:?})");
}

#[tokio::test]
async fn full_buffer_blocks_send_and_unanswered_batches_time_out() {
    let peer = peer(false).await;
    let client_config =
        ClientConfig { request_timeout: Duration::from_millis(150), ..ClientConfig::new(peer.addr.clone()) };
    let client = Client::connect(client_config).await.expect("connect");
    let config = ProducerConfig {
        batch_size: 500,
        buffer_bytes_max: 1000,
        linger: Duration::from_millis(1),
        delivery_timeout: Duration::from_millis(400),
        retry_backoff: Duration::from_millis(20),
        ..Default::default()
    };
    let producer = Producer::new(client, config).await.expect("producer");
    let mut deliveries = Vec::new();
    for i in 0..8 {
        deliveries.push(producer.send(record(i)).await.expect("send"));
    }
    let blocked = tokio::time::timeout(Duration::from_millis(100), producer.send(record(8))).await;
    assert!(blocked.is_err(), "the ninth 124-byte record does not fit a 1000-byte buffer");
    let first = tokio::time::timeout(Duration::from_secs(5), deliveries.remove(0)).await.expect("resolves");
    // Maybe stored (sent, unanswered): failed as unknown, its sequence never reused.
    assert_eq!(first, Err(ClientError::UnknownOutcome(Box::new(ClientError::Timeout))));
    assert!(producer.retry_count() > 0, "timed-out batches were retried before giving up");
    let resent = peer.received.lock().expect("lock").iter().filter(|(_, h)| h.base_sequence == 0).count();
    assert!(resent >= 2, "the first batch was resent with the same sequence ({resent} copies)");
    let unblocked = tokio::time::timeout(Duration::from_secs(5), producer.send(record(9))).await;
    assert!(unblocked.expect("failed records free their buffer space").is_ok());
}

#[tokio::test]
async fn dropping_the_producer_sends_what_it_buffered() {
    let peer = peer(true).await;
    let client = Client::connect(ClientConfig::new(peer.addr.clone())).await.expect("connect");
    let config = ProducerConfig { linger: Duration::from_secs(3600), ..Default::default() };
    let producer = Producer::new(client, config).await.expect("producer");
    let mut deliveries = Vec::new();
    for i in 0..3 {
        deliveries.push(producer.send(record(i)).await.expect("send"));
    }
    drop(producer);
    for (i, d) in deliveries.into_iter().enumerate() {
        let meta = tokio::time::timeout(Duration::from_secs(5), d).await.expect("not held for linger");
        assert_eq!(meta.expect("delivered").offset, Some(i as u64));
    }
}
