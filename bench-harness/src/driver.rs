//! Producer and consumer tasks that generate and measure traffic.
//!
//! Producers build record batches themselves (one [`BatchBuilder`] per partition) and send
//! them with [`strand_client::conn::Connection`] to the partition owner's port, so each
//! message's value carries its own intended send time and the per-message overhead stays
//! at one varint-encoded record. The client's `Producer` (one future per record) is not
//! used on purpose: at hundreds of thousands of messages per second on a 2-core machine its
//! per-record channel + oneshot would be the bottleneck being measured.
//!
//! Invariants: at most `ProducerSpec::max_inflight` produce requests are unacknowledged per
//! partition lane (a semaphore whose permit travels with each request to the lane's
//! completion task enforces it); a latency is
//! recorded only for messages whose send time lies in the measured window, and a
//! throughput count only for events (acks, receipts) that happen inside it.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use hdrhistogram::Histogram;
use strand_client::conn::{Connection, PendingReply};
use strand_client::Client;
use strand_wire::batch::{BatchBuilder, BatchIter};
use strand_wire::msg::{
    Acks, FetchPartition, FetchRequest, ProducePartition, ProduceRequest, Request, Response, ResponseHeader,
};
use strand_wire::ErrorCode;
use tokio::sync::mpsc;

use crate::kafka::{self, KafkaClient, KafkaConn};
use crate::pacing::{read_value_header, write_value_header, Clock, Pacer};
use crate::stats::{new_histogram, record_ns};

/// Messages a producer generates per loop turn at most, so linger and stop checks stay timely.
const GENERATE_CHUNK_MAX: u64 = 4096;
/// Node-side timeout of produce requests.
const PRODUCE_TIMEOUT_MS: u32 = 30_000;
/// Fetch long-poll wait.
const FETCH_WAIT_MS: u32 = 100;
/// Bytes per partition and per fetch response.
const FETCH_PARTITION_BYTES_MAX: u32 = 4 * 1024 * 1024;
const FETCH_BYTES_MAX: u32 = 8 * 1024 * 1024;
/// Pause after a failed request before the next attempt.
const ERROR_BACKOFF: Duration = Duration::from_millis(20);

/// State shared by every task of one run and the orchestrator.
#[derive(Debug)]
pub struct Shared {
    pub clock: Clock,
    /// Start of the measured window (end of warm-up), ns since the clock origin.
    pub window_start_ns: AtomicU64,
    /// End of the measured window; lowered on CTRL-C.
    pub window_end_ns: AtomicU64,
    pub stop_producing: AtomicBool,
    pub stop_consuming: AtomicBool,
    /// Producers stop generating once this many value bytes were generated (0 = no limit).
    pub produce_bytes_limit: u64,
    /// Record end-to-end latency (off while consumers read an old backlog).
    pub record_e2e: AtomicBool,
    pub generated_bytes: AtomicU64,
    pub acked_msgs: AtomicU64,
    pub acked_bytes: AtomicU64,
    pub consumed_msgs: AtomicU64,
    pub consumed_bytes: AtomicU64,
    pub errors: AtomicU64,
    pub first_error: Mutex<Option<String>>,
}

impl Shared {
    pub fn new(clock: Clock, window_start_ns: u64, window_end_ns: u64, produce_bytes_limit: u64) -> Shared {
        Shared {
            clock,
            window_start_ns: AtomicU64::new(window_start_ns),
            window_end_ns: AtomicU64::new(window_end_ns),
            stop_producing: AtomicBool::new(false),
            stop_consuming: AtomicBool::new(false),
            produce_bytes_limit,
            record_e2e: AtomicBool::new(true),
            generated_bytes: AtomicU64::new(0),
            acked_msgs: AtomicU64::new(0),
            acked_bytes: AtomicU64::new(0),
            consumed_msgs: AtomicU64::new(0),
            consumed_bytes: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            first_error: Mutex::new(None),
        }
    }

    fn in_window(&self, ns: u64) -> bool {
        ns >= self.window_start_ns.load(Ordering::Relaxed) && ns <= self.window_end_ns.load(Ordering::Relaxed)
    }

    /// Counts a failed request and keeps the first reason.
    pub fn note_error(&self, reason: String) {
        self.errors.fetch_add(1, Ordering::Relaxed);
        if let Ok(mut first) = self.first_error.lock() {
            first.get_or_insert(reason);
        }
    }
}

/// What one task measured in the window.
#[derive(Debug)]
pub struct Tally {
    pub latency: Histogram<u64>,
    pub msgs: u64,
    pub bytes: u64,
}

impl Tally {
    pub fn new() -> Tally {
        Tally { latency: new_histogram(), msgs: 0, bytes: 0 }
    }

    /// Adds another task's tally into this one.
    pub fn merge(&mut self, other: &Tally) {
        // Both histograms share the same bounds, so adding cannot fail on range.
        let _ = self.latency.add(&other.latency);
        self.msgs += other.msgs;
        self.bytes += other.bytes;
    }
}

impl Default for Tally {
    fn default() -> Self {
        Tally::new()
    }
}

/// What a producer task is asked to do.
#[derive(Debug, Clone)]
pub struct ProducerSpec {
    pub partitions: Vec<(String, u32)>,
    /// `None` = max rate.
    pub msgs_per_sec: Option<f64>,
    pub message_size: usize,
    pub batch_size: usize,
    pub linger: Duration,
    pub acks: Acks,
    /// Produce requests unacknowledged per partition lane (≥ 1).
    pub max_inflight: usize,
    /// Distinguishes producers' sequence spaces in message values.
    pub producer_index: u32,
}

/// The system under test, through one of the protocols the harness speaks.
#[derive(Clone)]
pub enum Target {
    /// Strand's own protocol (`strand-client`).
    Native(Client),
    /// The Kafka protocol (`--protocol kafka`), to any Kafka-API system.
    Kafka(Arc<KafkaClient>),
}

/// A producer lane's connection.
enum LaneConn {
    Native(Arc<Connection>),
    Kafka(Arc<KafkaConn>),
}

/// A produce reply on its way.
enum Reply {
    Native(PendingReply),
    Kafka(kafka::Pending),
}

impl Reply {
    /// `Ok` when every partition was acknowledged without an error.
    async fn outcome(self) -> Result<(), String> {
        match self {
            Reply::Native(pending) => {
                pending.wait().await.map_err(|e| e.to_string()).and_then(|(h, _)| produce_error(&h))
            }
            Reply::Kafka(pending) => kafka::produce_error(pending.body().await.map_err(|e| e.to_string())?),
        }
    }
}

impl Target {
    /// The address serving `topic`/`partition` (its owner shard's port, or its leader).
    async fn route(&self, topic: &str, partition: u32) -> Result<std::net::SocketAddr, String> {
        match self {
            Target::Native(client) => client.partition_addr(topic, partition).await.map_err(|e| e.to_string()),
            Target::Kafka(client) => client.leader(topic, partition).await.map_err(|e| e.to_string()),
        }
    }
}

fn kafka_acks(acks: Acks) -> i16 {
    match acks {
        Acks::None => 0,
        Acks::Leader => 1,
        Acks::All => -1,
    }
}

/// A batch on its way to the node.
struct InFlight {
    reply: Option<Reply>,
    /// This request's in-flight slot, released once its ack was handled.
    _slot: tokio::sync::OwnedSemaphorePermit,
    send_ns: Vec<u64>,
    value_bytes: u64,
}

/// One partition of a producer: the open batch and the channel to its completion task.
struct Lane {
    topic: String,
    partition: u32,
    conn: LaneConn,
    builder: BatchBuilder,
    send_ns: Vec<u64>,
    value_bytes: u64,
    first_ns: u64,
    tx: mpsc::Sender<InFlight>,
    /// `max_inflight` permits; one travels with each request until its ack is handled.
    slots: Arc<tokio::sync::Semaphore>,
}

/// Runs one producer until told to stop; returns its publish-latency tally.
pub async fn run_producer(ctx: Arc<Shared>, client: Target, spec: ProducerSpec) -> Tally {
    let mut lanes = Vec::new();
    let mut completions = Vec::new();
    for (topic, partition) in &spec.partitions {
        match open_lane(&ctx, &client, topic, *partition, &spec).await {
            Ok((lane, rx)) => {
                completions.push(tokio::spawn(complete_lane(Arc::clone(&ctx), rx)));
                lanes.push(lane);
            }
            Err(e) => ctx.note_error(format!("open lane {topic}/{partition}: {e}")),
        }
    }
    if !lanes.is_empty() {
        produce_loop(&ctx, &spec, &mut lanes).await;
    }
    drop(lanes);
    let mut tally = Tally::new();
    for c in completions {
        if let Ok(t) = c.await {
            tally.merge(&t);
        }
    }
    tally
}

async fn open_lane(
    ctx: &Shared,
    client: &Target,
    topic: &str,
    partition: u32,
    spec: &ProducerSpec,
) -> Result<(Lane, mpsc::Receiver<InFlight>), String> {
    let addr = client.route(topic, partition).await?;
    let conn = match client {
        Target::Native(client) => LaneConn::Native(client.connection(addr).await.map_err(|e| e.to_string())?),
        Target::Kafka(client) => LaneConn::Kafka(client.dedicated(addr).await.map_err(|e| e.to_string())?),
    };
    // The semaphore bounds what is in flight; the channel only has to hold that much.
    let (tx, rx) = mpsc::channel(spec.max_inflight);
    let batch_size = spec.batch_size;
    let lane = Lane {
        topic: topic.to_string(),
        partition,
        conn,
        builder: BatchBuilder::with_capacity(batch_size + 1024),
        send_ns: Vec::new(),
        value_bytes: 0,
        first_ns: ctx.clock.now_ns(),
        tx,
        slots: Arc::new(tokio::sync::Semaphore::new(spec.max_inflight)),
    };
    Ok((lane, rx))
}

async fn produce_loop(ctx: &Shared, spec: &ProducerSpec, lanes: &mut [Lane]) {
    let mut pacer = spec.msgs_per_sec.map(|rate| Pacer::new(ctx.clock.now_ns(), rate));
    let mut value = vec![0x5Au8; spec.message_size];
    let mut sequence: u64 = u64::from(spec.producer_index) << 40;
    let mut next_lane = 0usize;
    let linger_ns = spec.linger.as_nanos() as u64;
    let max_chunk = (spec.batch_size / spec.message_size).max(1) as u64 * lanes.len() as u64;
    while !ctx.stop_producing.load(Ordering::Relaxed) {
        let now = ctx.clock.now_ns();
        let due = match &pacer {
            Some(p) => p.due_count(now, GENERATE_CHUNK_MAX),
            None => max_chunk.min(GENERATE_CHUNK_MAX),
        };
        let wall_ms = wall_clock_ms();
        for _ in 0..due {
            if ctx.produce_bytes_limit > 0
                && ctx.generated_bytes.fetch_add(value.len() as u64, Ordering::Relaxed) >= ctx.produce_bytes_limit
            {
                ctx.stop_producing.store(true, Ordering::Relaxed);
                break;
            }
            let intended = match pacer.as_mut() {
                Some(p) => p.take().1,
                None => now,
            };
            write_value_header(&mut value, intended, sequence);
            sequence += 1;
            let lane_count = lanes.len();
            let lane = &mut lanes[next_lane];
            next_lane = (next_lane + 1) % lane_count;
            if lane.send_ns.is_empty() {
                lane.first_ns = ctx.clock.now_ns();
            }
            lane.builder.push(wall_ms, None, Some(&value), &[]);
            lane.send_ns.push(intended);
            lane.value_bytes += value.len() as u64;
            if lane.builder.len_bytes() >= spec.batch_size {
                send_lane(ctx, lane, spec).await;
            }
        }
        let now = ctx.clock.now_ns();
        let mut linger_deadline = u64::MAX;
        for lane in lanes.iter_mut().filter(|l| !l.send_ns.is_empty()) {
            if now.saturating_sub(lane.first_ns) >= linger_ns {
                send_lane(ctx, lane, spec).await;
            } else {
                linger_deadline = linger_deadline.min(lane.first_ns + linger_ns);
            }
        }
        let wake_ns = pacer.as_ref().map_or(linger_deadline, |p| p.next_due_ns().min(linger_deadline));
        if pacer.is_some() || linger_deadline != u64::MAX && due == 0 {
            sleep_until_ns(ctx, wake_ns).await;
        } else {
            tokio::task::yield_now().await;
        }
    }
    for lane in lanes.iter_mut().filter(|l| !l.send_ns.is_empty()) {
        send_lane(ctx, lane, spec).await;
    }
}

async fn sleep_until_ns(ctx: &Shared, wake_ns: u64) {
    if wake_ns == u64::MAX {
        tokio::time::sleep(Duration::from_millis(1)).await;
    } else if wake_ns > ctx.clock.now_ns() {
        tokio::time::sleep_until(ctx.clock.instant_at(wake_ns).into()).await;
    }
}

/// Seals the lane's open batch and sends it, waiting for an in-flight slot first.
async fn send_lane(ctx: &Shared, lane: &mut Lane, spec: &ProducerSpec) {
    let builder = std::mem::replace(&mut lane.builder, BatchBuilder::with_capacity(spec.batch_size + 1024));
    let send_ns = std::mem::take(&mut lane.send_ns);
    let value_bytes = std::mem::take(&mut lane.value_bytes);
    let Ok(slot) = lane.slots.clone().acquire_owned().await else { return };
    let Ok(permit) = lane.tx.reserve().await else { return };
    let batch: Bytes = builder.finish();
    let reply = match &lane.conn {
        LaneConn::Native(conn) => {
            let request = Request::Produce(ProduceRequest {
                acks: spec.acks,
                timeout_ms: PRODUCE_TIMEOUT_MS,
                partitions: vec![ProducePartition {
                    topic: lane.topic.clone(),
                    partition: lane.partition,
                    bytes_len: batch.len() as u32,
                }],
            });
            if spec.acks == Acks::None {
                conn.send_oneway(request, &batch).await.map(|()| None).map_err(|e| e.to_string())
            } else {
                conn.send(request, &batch).await.map(|p| Some(Reply::Native(p))).map_err(|e| e.to_string())
            }
        }
        LaneConn::Kafka(conn) => {
            let acks = kafka_acks(spec.acks);
            let request = kafka::produce_request(&lane.topic, lane.partition, acks, PRODUCE_TIMEOUT_MS as i32, batch);
            conn.send(kafka_protocol::messages::ApiKey::Produce, kafka::PRODUCE_VERSION, &request, acks != 0)
                .await
                .map(|p| p.map(Reply::Kafka))
                .map_err(|e| e.to_string())
        }
    };
    match reply {
        Ok(reply) => permit.send(InFlight { reply, _slot: slot, send_ns, value_bytes }),
        Err(e) => {
            ctx.note_error(format!("produce {}/{}: {e}", lane.topic, lane.partition));
            tokio::time::sleep(ERROR_BACKOFF).await;
        }
    }
}

/// Awaits a lane's replies in send order and records publish latency per message.
async fn complete_lane(ctx: Arc<Shared>, mut rx: mpsc::Receiver<InFlight>) -> Tally {
    let mut tally = Tally::new();
    while let Some(flight) = rx.recv().await {
        // With acks = none there is no ack, so no publish latency.
        let acked = flight.reply.is_some();
        let outcome = match flight.reply {
            None => Ok(()),
            Some(reply) => reply.outcome().await,
        };
        let ack_ns = ctx.clock.now_ns();
        if let Err(reason) = outcome {
            ctx.note_error(reason);
            continue;
        }
        let count = flight.send_ns.len() as u64;
        ctx.acked_msgs.fetch_add(count, Ordering::Relaxed);
        ctx.acked_bytes.fetch_add(flight.value_bytes, Ordering::Relaxed);
        if ctx.in_window(ack_ns) {
            tally.msgs += count;
            tally.bytes += flight.value_bytes;
        }
        if acked {
            for &sent in flight.send_ns.iter().filter(|&&s| ctx.in_window(s)) {
                record_ns(&mut tally.latency, ack_ns.saturating_sub(sent));
            }
        }
    }
    tally
}

fn produce_error(header: &ResponseHeader) -> Result<(), String> {
    match &header.response {
        Response::Produce(p) => match p.partitions.iter().find(|r| r.error != ErrorCode::None) {
            Some(r) => Err(format!("produce {}/{}: {}", r.topic, r.partition, r.error)),
            None => Ok(()),
        },
        other => Err(format!("unexpected produce response {other:?}")),
    }
}

fn wall_clock_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

/// Runs one consumer over `partitions` (fetching from offset 0) until told to stop.
pub async fn run_consumer(ctx: Arc<Shared>, target: Target, partitions: Vec<(String, u32)>) -> Tally {
    let mut by_addr: HashMap<std::net::SocketAddr, Vec<(String, u32)>> = HashMap::new();
    for (topic, partition) in partitions {
        match target.route(&topic, partition).await {
            Ok(addr) => by_addr.entry(addr).or_default().push((topic, partition)),
            Err(e) => ctx.note_error(format!("route {topic}/{partition}: {e}")),
        }
    }
    let mut tasks = Vec::new();
    for (addr, parts) in by_addr {
        let (ctx, target) = (Arc::clone(&ctx), target.clone());
        tasks.push(tokio::spawn(async move {
            let connected = match &target {
                Target::Native(client) => match client.connection(addr).await {
                    Ok(conn) => return fetch_loop(&ctx, &conn, parts).await,
                    Err(e) => e.to_string(),
                },
                // A connection of its own: Kafka answers a connection's requests in order.
                Target::Kafka(client) => match client.dedicated(addr).await {
                    Ok(conn) => return kafka_fetch_loop(&ctx, &conn, parts).await,
                    Err(e) => e.to_string(),
                },
            };
            ctx.note_error(format!("connect {addr}: {connected}"));
            Tally::new()
        }));
    }
    let mut tally = Tally::new();
    for t in tasks {
        if let Ok(t) = t.await {
            tally.merge(&t);
        }
    }
    tally
}

async fn fetch_loop(ctx: &Shared, conn: &Connection, parts: Vec<(String, u32)>) -> Tally {
    let mut tally = Tally::new();
    let mut offsets = vec![0u64; parts.len()];
    while !ctx.stop_consuming.load(Ordering::Relaxed) {
        let request = Request::Fetch(FetchRequest {
            max_wait_ms: FETCH_WAIT_MS,
            min_bytes: 1,
            max_bytes: FETCH_BYTES_MAX,
            partitions: parts
                .iter()
                .zip(&offsets)
                .map(|((topic, partition), &offset)| FetchPartition {
                    topic: topic.clone(),
                    partition: *partition,
                    offset,
                    max_bytes: FETCH_PARTITION_BYTES_MAX,
                })
                .collect(),
        });
        match conn.call(request, &[]).await {
            Ok((header, payload)) => {
                if let Err(reason) = consume_reply(ctx, &parts, &mut offsets, &header, &payload, &mut tally) {
                    ctx.note_error(reason);
                    tokio::time::sleep(ERROR_BACKOFF).await;
                }
            }
            Err(e) => {
                ctx.note_error(format!("fetch: {e}"));
                tokio::time::sleep(ERROR_BACKOFF).await;
            }
        }
    }
    tally
}

/// Walks a fetch response: records e2e latency per message and advances the offsets.
fn consume_reply(
    ctx: &Shared,
    parts: &[(String, u32)],
    offsets: &mut [u64],
    header: &ResponseHeader,
    payload: &[u8],
    tally: &mut Tally,
) -> Result<(), String> {
    let Response::Fetch(fetch) = &header.response else {
        return Err(format!("unexpected fetch response {:?}", header.response));
    };
    let now = ctx.clock.now_ns();
    let record_e2e = ctx.record_e2e.load(Ordering::Relaxed);
    let counted = ctx.in_window(now);
    let mut cursor = 0usize;
    for p in &fetch.partitions {
        let end = cursor + p.bytes_len as usize;
        let bytes = payload.get(cursor..end).ok_or("fetch payload shorter than its partitions")?;
        cursor = end;
        if p.error != ErrorCode::None {
            return Err(format!("fetch {}/{}: {}", p.topic, p.partition, p.error));
        }
        let index =
            parts.iter().position(|(t, n)| *t == p.topic && *n == p.partition).ok_or("unrequested partition")?;
        account_batches(ctx, tally, &mut offsets[index], bytes, now, record_e2e, counted)
            .map_err(|e| format!("fetch {}/{}: {e}", p.topic, p.partition))?;
    }
    Ok(())
}

/// Counts the records of fetched `bytes` at or past `*offset` (a batch may start before
/// it), records their end-to-end latency, and moves `*offset` past them.
fn account_batches(
    ctx: &Shared,
    tally: &mut Tally,
    offset: &mut u64,
    bytes: &[u8],
    now: u64,
    record_e2e: bool,
    counted: bool,
) -> Result<(), String> {
    let (mut msgs, mut value_bytes) = (0u64, 0u64);
    for batch in BatchIter::new(bytes) {
        let batch = batch.map_err(|e| format!("bad batch: {e}"))?;
        let skip = offset.saturating_sub(batch.header().base_offset);
        for record in batch.records().skip(skip as usize) {
            let record = record.map_err(|e| format!("bad record: {e}"))?;
            // The bench writes no tombstone; a null value counts as empty.
            let value = record.value.unwrap_or_default();
            msgs += 1;
            value_bytes += value.len() as u64;
            if let Some((sent, _)) = read_value_header(value) {
                if record_e2e && ctx.in_window(sent) {
                    record_ns(&mut tally.latency, now.saturating_sub(sent));
                }
            }
        }
        *offset = (*offset).max(batch.header().next_offset());
    }
    ctx.consumed_msgs.fetch_add(msgs, Ordering::Relaxed);
    ctx.consumed_bytes.fetch_add(value_bytes, Ordering::Relaxed);
    if counted {
        tally.msgs += msgs;
        tally.bytes += value_bytes;
    }
    Ok(())
}

async fn kafka_fetch_loop(ctx: &Shared, conn: &KafkaConn, parts: Vec<(String, u32)>) -> Tally {
    let mut tally = Tally::new();
    let mut offsets = vec![0u64; parts.len()];
    while !ctx.stop_consuming.load(Ordering::Relaxed) {
        let request = kafka::fetch_request(
            &parts,
            &offsets,
            FETCH_WAIT_MS as i32,
            FETCH_PARTITION_BYTES_MAX as i32,
            FETCH_BYTES_MAX as i32,
        );
        let answered = conn
            .call_raw(kafka_protocol::messages::ApiKey::Fetch, kafka::FETCH_VERSION, &request)
            .await
            .map_err(|e| format!("fetch: {e}"))
            .and_then(kafka::fetch_parts);
        let outcome = answered.and_then(|fetched| {
            let now = ctx.clock.now_ns();
            let (record_e2e, counted) = (ctx.record_e2e.load(Ordering::Relaxed), ctx.in_window(now));
            for (topic, partition, error, records) in fetched {
                if error != 0 {
                    return Err(format!("fetch {topic}/{partition}: kafka error {error}"));
                }
                let index =
                    parts.iter().position(|(t, n)| *t == topic && *n == partition).ok_or("unrequested partition")?;
                account_batches(ctx, &mut tally, &mut offsets[index], &records, now, record_e2e, counted)
                    .map_err(|e| format!("fetch {topic}/{partition}: {e}"))?;
            }
            Ok(())
        });
        if let Err(reason) = outcome {
            ctx.note_error(reason);
            tokio::time::sleep(ERROR_BACKOFF).await;
        }
    }
    tally
}
