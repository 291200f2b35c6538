//! Produce ordering on one connection: pipelined idempotent batches of a partition are
//! sequenced (checked and given offsets) in arrival order, whatever shard owns the
//! partition and however the batches are grouped into requests; and a fetch on the same
//! connection is answered while produces are still in flight.

mod common;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use common::Node;
use strand_wire::batch::{BatchBuilder, BatchIter};
use strand_wire::msg::*;
use strand_wire::ErrorCode;

const TOPIC: &str = "ordered";
const PARTITIONS: u32 = 4;
const PRODUCER_ID: i64 = 77;
const RECORDS_PER_BATCH: u32 = 2;
/// Batches in flight per partition per round: the window the idempotent producer allows.
const WINDOW: u32 = 5;

/// One idempotent batch of `RECORDS_PER_BATCH` records starting at `sequence`.
fn idempotent_batch(partition: u32, sequence: u32) -> bytes::Bytes {
    let mut b = BatchBuilder::new().producer(PRODUCER_ID, 0, sequence as i32);
    for i in 0..RECORDS_PER_BATCH {
        let value = format!("p{partition}-s{}", sequence + i);
        b.push(1_700_000_000_000, None, Some(value.as_bytes()), &[]);
    }
    b.finish()
}

/// A produce request carrying one batch for each `(partition, sequence)`.
fn produce_request(parts: &[(u32, u32)]) -> (Request, Vec<u8>) {
    let mut payload = Vec::new();
    let mut partitions = Vec::new();
    for &(partition, sequence) in parts {
        let batch = idempotent_batch(partition, sequence);
        partitions.push(ProducePartition { topic: TOPIC.into(), partition, bytes_len: batch.len() as u32 });
        payload.extend_from_slice(&batch);
    }
    (Request::Produce(ProduceRequest { acks: Acks::Leader, timeout_ms: 10_000, partitions }), payload)
}

/// What the rounds produced: every partition answer, in the order the requests were sent.
struct Answers {
    /// partition → base offsets answered, in send order.
    offsets: HashMap<u32, Vec<u64>>,
    errors: Vec<String>,
}

/// Sends `rounds` rounds of `WINDOW` batches per partition on one connection without
/// waiting in between (even steps: one request for all partitions, which spans both shards;
/// odd steps: one request per partition), then collects every answer.
fn run_rounds(client: &mut common::Client, rounds: u32) -> Answers {
    let mut sequence = [0u32; PARTITIONS as usize];
    let mut answers = Answers { offsets: HashMap::new(), errors: Vec::new() };
    for _ in 0..rounds {
        let mut sent = 0;
        for step in 0..WINDOW {
            let mut next = |p: u32| {
                let s = sequence[p as usize];
                sequence[p as usize] += RECORDS_PER_BATCH;
                (p, s)
            };
            if step % 2 == 0 {
                let parts: Vec<(u32, u32)> = (0..PARTITIONS).map(&mut next).collect();
                let (request, payload) = produce_request(&parts);
                client.send(request, &payload);
                sent += 1;
            } else {
                for p in 0..PARTITIONS {
                    let (request, payload) = produce_request(&[next(p)]);
                    client.send(request, &payload);
                    sent += 1;
                }
            }
        }
        let mut replies = Vec::with_capacity(sent);
        for _ in 0..sent {
            replies.push(client.recv().0);
        }
        // Replies may complete out of order; put them back in send order by correlation id.
        replies.sort_by_key(|h| h.correlation_id);
        for header in replies {
            let Response::Produce(r) = header.response else {
                answers.errors.push(format!("request error {:?}: {:?}", header.error, header.message));
                continue;
            };
            for p in r.partitions {
                if p.error != ErrorCode::None {
                    answers.errors.push(format!("partition {}: {:?}", p.partition, p.error));
                }
                answers.offsets.entry(p.partition).or_default().push(p.base_offset);
            }
        }
    }
    answers
}

#[test]
fn pipelined_idempotent_batches_are_sequenced_in_arrival_order() {
    let dir = tempfile::tempdir().unwrap();
    let node = Node::start(dir.path(), 2, &["--fsync", "always"]);
    assert_eq!(node.client().create_topic(TOPIC, PARTITIONS).error, ErrorCode::None);
    let rounds = 600;
    let started = Instant::now();
    // The public port spreads connections over shards, so requests hop to the other shard
    // for some partitions; each request of an even step spans both owners.
    let answers = run_rounds(&mut node.client(), rounds);
    let elapsed = started.elapsed();
    let requests = rounds * (WINDOW / 2 + 1 + (WINDOW / 2) * PARTITIONS);
    println!("{requests} pipelined produce requests in {elapsed:?}");
    assert!(
        answers.errors.is_empty(),
        "{} of {requests} produce answers failed, first: {:?}",
        answers.errors.len(),
        &answers.errors[..answers.errors.len().min(5)]
    );
    for p in 0..PARTITIONS {
        let offsets = &answers.offsets[&p];
        assert_eq!(offsets.len() as u32, rounds * WINDOW, "partition {p}: one answer per batch");
        for (i, offset) in offsets.iter().enumerate() {
            assert_eq!(*offset, i as u64 * u64::from(RECORDS_PER_BATCH), "partition {p}: batch {i} offset");
        }
    }
    // And the log holds each partition's records in sequence order.
    let mut reader = node.client();
    for p in 0..PARTITIONS {
        let values = reader.read_all(TOPIC, p);
        assert_eq!(values.len() as u32, rounds * WINDOW * RECORDS_PER_BATCH);
        for (i, v) in values.iter().enumerate() {
            assert_eq!(v, format!("p{p}-s{i}").as_bytes(), "partition {p} record {i}");
        }
    }
}

#[test]
fn a_fetch_is_answered_while_produces_of_its_connection_wait_for_fsync() {
    let dir = tempfile::tempdir().unwrap();
    let node = Node::start(dir.path(), 1, &["--fsync", "always"]);
    let mut client = node.shard_client(0);
    assert_eq!(client.create_topic(TOPIC, 1).error, ErrorCode::None);
    client.produce(TOPIC, 0, &idempotent_batch(0, 0));
    // A long-poll fetch at the log end first (it waits for data), then produces behind it:
    // the produces must not wait behind the fetch, and the fetch is woken by them.
    let fetch = Request::Fetch(FetchRequest {
        max_wait_ms: 5_000,
        min_bytes: 1,
        max_bytes: 1 << 20,
        partitions: vec![FetchPartition {
            topic: TOPIC.into(),
            partition: 0,
            offset: u64::from(RECORDS_PER_BATCH),
            max_bytes: 1 << 20,
        }],
    });
    let started = Instant::now();
    let fetch_cid = client.send(fetch, &[]);
    let mut produce_cids = Vec::new();
    for i in 1..=WINDOW {
        let (request, payload) = produce_request(&[(0, i * RECORDS_PER_BATCH)]);
        produce_cids.push(client.send(request, &payload));
    }
    let mut fetched = None;
    let mut produced = 0;
    while fetched.is_none() || produced < WINDOW {
        let (header, payload) = client.recv();
        if header.correlation_id == fetch_cid {
            fetched = Some((header, payload));
        } else {
            assert!(produce_cids.contains(&header.correlation_id));
            let Response::Produce(r) = header.response else { panic!("{:?}", header.message) };
            assert_eq!(r.partitions[0].error, ErrorCode::None);
            produced += 1;
        }
    }
    assert!(started.elapsed() < Duration::from_secs(4), "the fetch waited for its full max_wait");
    let (header, payload) = fetched.unwrap();
    assert_eq!(header.error, ErrorCode::None);
    let first = BatchIter::new(&payload).next().expect("woken fetch returns data").unwrap();
    assert_eq!(first.header().base_offset, u64::from(RECORDS_PER_BATCH));
}
