//! [`Producer`]: batches records per partition and sends them to the owner
//! shard, idempotently.
//!
//! Each `(topic, partition)` gets one worker task that owns everything about
//! that partition: the open batch (sealed at `batch_size` bytes or after
//! `linger`), closed batches waiting for an in-flight slot, and up to
//! `max_in_flight` (≤ 5) batches sent but not yet acknowledged.
//!
//! Invariants:
//! - Sequence numbers are assigned when a batch is first sent, per partition,
//!   starting at 0 and advancing by the batch's record count; a retried batch is
//!   resent byte for byte, so the node's 5-entry dedup window recognises it.
//! - Replies are consumed strictly in send order. When the oldest in-flight batch
//!   fails with a retriable error, every in-flight batch is resent in the original
//!   order (no reordering); `DUPLICATE_SEQUENCE` counts as success.
//! - Buffered record bytes never exceed `buffer_bytes_max`: `send` waits for room.
//! - A non-retriable failure fails that batch; later in-flight batches are awaited
//!   before anything new is sent, and the sequence rewinds past the failed batch.
//! - A batch whose outcome is unknown (sent, then the connection died, the request
//!   timed out, or the chain was reconfigured mid-produce) is resent only when
//!   [`ProducerConfig::unknown_outcome`] allows it (by default: an idempotent producer,
//!   where the node's sequence table — rebuilt from the log by a chain's new head — makes
//!   the resend exactly-once, replicated or not). Otherwise every in-flight reply is
//!   awaited first; stored batches complete, batches refused before any append
//!   (`NOT_OWNER`, connect failures, …) are resent in order, and unknown ones fail with
//!   [`ClientError::UnknownOutcome`] — never resent, so a producer without idempotence
//!   cannot store duplicates the application did not send. After such a failure (also an
//!   unknown outcome still unresolved at `delivery_timeout`) an idempotent worker takes a
//!   fresh producer id (its sequence numbers restart at 0), so no later batch is mistaken
//!   for a duplicate of one that may be stored.
//! - With [`ProducerConfig::stop_on_failure`], the first batch that finally fails stops
//!   the producer: no batch is transmitted after any worker has seen it (records still
//!   buffered fail unsent, `send` refuses), so a caller writing an ordered stream can
//!   say exactly which records were stored. Batches already in flight on other
//!   partitions at that moment may still be stored.

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use strand_wire::batch::{next_sequence, BatchBuilder, Compression};
use strand_wire::msg::{Acks, ProducePartition, ProduceRequest, Request, Response};
use strand_wire::ErrorCode;
use tokio::sync::{mpsc, oneshot, OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

use crate::client::Client;
use crate::conn::{PendingReply, Reply};
use crate::error::{ClientError, Result};
use crate::records::{partition_for_key, seal_batch};

/// The node keeps this many batch sequences per (producer, partition); more in flight
/// would make retries undetectable as duplicates.
pub const IN_FLIGHT_MAX: usize = 5;
/// Closed batches a worker holds beyond its in-flight ones before it stops taking records.
const READY_BATCHES_MAX: usize = 2;
/// Messages queued to one partition worker.
const WORKER_QUEUE_MAX: usize = 1024;
/// Bytes counted per record on top of key, value and headers (varints, bookkeeping).
const RECORD_OVERHEAD_BYTES: usize = 24;
/// Bytes of a produce request besides its records: frame prefix and header (topic name
/// included) and the batch header, with room to spare.
const REQUEST_OVERHEAD_BYTES: usize = 4096;
/// Default [`ProducerConfig::request_bytes_max`]: the node's default frame limit.
pub const REQUEST_BYTES_MAX_DEFAULT: usize = strand_wire::frame::FRAME_LEN_MAX_DEFAULT;

/// Producer settings.
#[derive(Debug, Clone)]
pub struct ProducerConfig {
    /// Acknowledgement level; with [`Acks::None`] offsets are unknown and nothing is retried.
    pub acks: Acks,
    /// A batch is sent once its records reach this many bytes.
    pub batch_size: usize,
    /// A non-full batch is sent this long after its first record.
    pub linger: Duration,
    /// Codec applied to each batch's records.
    pub compression: Compression,
    /// Record bytes buffered (not yet acknowledged) at most; `send` waits beyond it.
    pub buffer_bytes_max: usize,
    /// Batches sent but unacknowledged per partition, `1..=5`. An idempotent producer
    /// sends one batch at a time to a partition until the node stored one of its producer
    /// id there (a node appends an unknown id's first batch at any sequence).
    pub max_in_flight: usize,
    /// Give up on a batch this long after it was first sent.
    pub delivery_timeout: Duration,
    /// First pause before a retry (doubles up to 1 s).
    pub retry_backoff: Duration,
    /// Use a producer id and sequences so retries never duplicate.
    pub idempotence: bool,
    /// Timeout the node applies to each produce request.
    pub request_timeout_ms: u32,
    /// Longest pause between retries (the pause doubles from `retry_backoff`).
    pub retry_backoff_max: Duration,
    /// Whether a batch whose outcome is unknown is resent; see [`UnknownOutcome`].
    pub unknown_outcome: UnknownOutcome,
    /// Largest produce request sent (Kafka's `max.request.size`); set it to the node's
    /// `frame_len_max`. A record that cannot fit is refused by [`Producer::send`] with
    /// [`ClientError::RecordTooLarge`] and never sent (the node would close the
    /// connection on the frame, which looks like a retriable disconnect).
    pub request_bytes_max: usize,
    /// Stop at the first batch that finally fails (see the module doc and
    /// [`Producer::failure`]); for callers that must not leave holes, like the CLI.
    pub stop_on_failure: bool,
}

/// What the producer does with a batch that was sent but whose outcome is unknown
/// ([`ClientError::outcome_unknown`]): the node may have stored it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum UnknownOutcome {
    /// `Resend` for an idempotent producer — on a single node and on a replicated
    /// partition alike: the node's sequence table recognises the resend, and a chain's
    /// new head rebuilds that table from its log, which holds every batch the old head
    /// forwarded — `Fail` for a producer without idempotence.
    #[default]
    Auto,
    /// Resend byte for byte. Without idempotence this can store records twice.
    Resend,
    /// Fail the batch's records with [`ClientError::UnknownOutcome`]; batches refused
    /// before any append are still resent.
    Fail,
}

impl Default for ProducerConfig {
    fn default() -> Self {
        ProducerConfig {
            acks: Acks::Leader,
            batch_size: 64 * 1024,
            linger: Duration::from_millis(5),
            compression: Compression::None,
            buffer_bytes_max: 32 * 1024 * 1024,
            max_in_flight: IN_FLIGHT_MAX,
            delivery_timeout: Duration::from_secs(60),
            retry_backoff: Duration::from_millis(50),
            idempotence: true,
            request_timeout_ms: 30_000,
            retry_backoff_max: Duration::from_millis(500),
            unknown_outcome: UnknownOutcome::Auto,
            request_bytes_max: REQUEST_BYTES_MAX_DEFAULT,
            stop_on_failure: false,
        }
    }
}

/// A record to send. Build with [`ProducerRecord::new`] and the setters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProducerRecord {
    pub topic: String,
    /// Explicit partition; otherwise the key's hash, or round-robin for keyless records.
    pub partition: Option<u32>,
    pub key: Option<Bytes>,
    /// `None` is a null value: a tombstone (see [`ProducerRecord::tombstone`]).
    pub value: Option<Bytes>,
    /// Milliseconds since the Unix epoch; `None` = now.
    pub timestamp: Option<i64>,
    pub headers: Vec<(Bytes, Option<Bytes>)>,
}

impl ProducerRecord {
    /// A keyless record for `topic`.
    pub fn new(topic: impl Into<String>, value: impl Into<Bytes>) -> Self {
        ProducerRecord {
            topic: topic.into(),
            partition: None,
            key: None,
            value: Some(value.into()),
            timestamp: None,
            headers: Vec::new(),
        }
    }

    /// A record with `key` and a null value: a tombstone, which compaction reads as
    /// "delete this key".
    pub fn tombstone(topic: impl Into<String>, key: impl Into<Bytes>) -> Self {
        ProducerRecord {
            topic: topic.into(),
            partition: None,
            key: Some(key.into()),
            value: None,
            timestamp: None,
            headers: Vec::new(),
        }
    }

    /// Sets the key (which also picks the partition unless one is set explicitly).
    pub fn key(mut self, key: impl Into<Bytes>) -> Self {
        self.key = Some(key.into());
        self
    }

    /// Sends to this partition.
    pub fn partition(mut self, partition: u32) -> Self {
        self.partition = Some(partition);
        self
    }

    /// Sets the timestamp (ms since the Unix epoch).
    pub fn timestamp(mut self, timestamp_ms: i64) -> Self {
        self.timestamp = Some(timestamp_ms);
        self
    }

    /// Adds a header.
    pub fn header(mut self, key: impl Into<Bytes>, value: Option<Bytes>) -> Self {
        self.headers.push((key.into(), value));
        self
    }

    fn size_bytes(&self) -> usize {
        let headers: usize = self.headers.iter().map(|(k, v)| k.len() + v.as_ref().map_or(0, |v| v.len()) + 4).sum();
        RECORD_OVERHEAD_BYTES
            + self.key.as_ref().map_or(0, |k| k.len())
            + self.value.as_ref().map_or(0, |v| v.len())
            + headers
    }
}

/// Where a record was stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordMetadata {
    pub partition: u32,
    /// Offset of the record; `None` with [`Acks::None`].
    pub offset: Option<u64>,
}

/// Resolves when the record is acknowledged (or finally failed).
#[derive(Debug)]
pub struct DeliveryFuture {
    rx: oneshot::Receiver<Result<RecordMetadata>>,
}

impl Future for DeliveryFuture {
    type Output = Result<RecordMetadata>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        Pin::new(&mut self.rx).poll(cx).map(|r| r.unwrap_or(Err(ClientError::Closed)))
    }
}

struct Pending {
    record: ProducerRecord,
    timestamp: i64,
    done: oneshot::Sender<Result<RecordMetadata>>,
    _permit: OwnedSemaphorePermit,
}

enum Msg {
    Record(Pending),
    Flush(oneshot::Sender<()>),
}

struct Shared {
    client: Client,
    config: ProducerConfig,
    /// `(producer_id, epoch)` when idempotent.
    identity: Option<(i64, i16)>,
    buffer: Arc<Semaphore>,
    round_robin: AtomicU32,
    retries: AtomicU64,
    unknown_failed: AtomicU64,
    /// The first final failure, kept when `stop_on_failure`.
    failure: OnceLock<ClientError>,
}

impl Shared {
    /// The failure that stopped the producer, if `stop_on_failure` and one happened.
    fn stopped(&self) -> Option<&ClientError> {
        self.failure.get()
    }
}

/// An asynchronous, batching, idempotent producer. Clone to share.
///
/// Workers hold the shared settings but not the map of worker queues, so when the
/// last clone of the producer is dropped every queue closes and each worker sends
/// what it still holds, then exits.
#[derive(Clone)]
pub struct Producer {
    shared: Arc<Shared>,
    workers: Arc<Mutex<WorkerMap>>,
}

type WorkerMap = HashMap<(String, u32), mpsc::Sender<Msg>>;

impl std::fmt::Debug for Producer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Producer").field("identity", &self.shared.identity).finish()
    }
}

impl Producer {
    /// A producer on `client`; asks the node for a producer id when `config.idempotence`.
    pub async fn new(client: Client, config: ProducerConfig) -> Result<Self> {
        if !(1..=IN_FLIGHT_MAX).contains(&config.max_in_flight) {
            return Err(ClientError::Config(format!("max_in_flight must be 1..={IN_FLIGHT_MAX}")));
        }
        if config.batch_size == 0 || config.buffer_bytes_max < config.batch_size {
            return Err(ClientError::Config("need 0 < batch_size <= buffer_bytes_max".to_string()));
        }
        if config.request_bytes_max < config.batch_size + REQUEST_OVERHEAD_BYTES {
            let need = config.batch_size + REQUEST_OVERHEAD_BYTES;
            let have = config.request_bytes_max;
            return Err(ClientError::Config(format!(
                "request_bytes_max {have} must be at least batch_size + {REQUEST_OVERHEAD_BYTES} = {need}"
            )));
        }
        let buffer_permits = config.buffer_bytes_max.min(Semaphore::MAX_PERMITS).min(u32::MAX as usize);
        let identity = if config.idempotence { Some(init_producer_id(&client).await?) } else { None };
        let shared = Shared {
            client,
            config,
            identity,
            buffer: Arc::new(Semaphore::new(buffer_permits)),
            round_robin: AtomicU32::new(0),
            retries: AtomicU64::new(0),
            unknown_failed: AtomicU64::new(0),
            failure: OnceLock::new(),
        };
        Ok(Producer { shared: Arc::new(shared), workers: Arc::default() })
    }

    /// The `(producer_id, epoch)` the node assigned, if idempotent.
    pub fn identity(&self) -> Option<(i64, i16)> {
        self.shared.identity
    }

    /// How many times an in-flight window was resent after a retriable failure.
    pub fn retry_count(&self) -> u64 {
        self.shared.retries.load(Ordering::Relaxed)
    }

    /// With [`ProducerConfig::stop_on_failure`]: the first final failure of a batch, after
    /// which nothing more is sent.
    pub fn failure(&self) -> Option<ClientError> {
        self.shared.stopped().cloned()
    }

    /// How many batches failed with [`ClientError::UnknownOutcome`] (not resent).
    pub fn unknown_outcome_count(&self) -> u64 {
        self.shared.unknown_failed.load(Ordering::Relaxed)
    }

    /// Queues `record`, waiting while the buffer is full. The returned future resolves
    /// with the record's partition and offset once acknowledged.
    pub async fn send(&self, record: ProducerRecord) -> Result<DeliveryFuture> {
        if let Some(e) = self.shared.stopped() {
            return Err(not_sent(e));
        }
        let size = record.size_bytes();
        let request_max = self.shared.config.request_bytes_max.saturating_sub(REQUEST_OVERHEAD_BYTES);
        let max = self.shared.config.buffer_bytes_max.min(request_max).min(u32::MAX as usize);
        if size > max {
            return Err(ClientError::RecordTooLarge { len: size, max });
        }
        let partition = self.choose_partition(&record).await?;
        let permit =
            self.shared.buffer.clone().acquire_many_owned(size as u32).await.map_err(|_| ClientError::Closed)?;
        let (done, rx) = oneshot::channel();
        let timestamp = record.timestamp.unwrap_or_else(now_ms);
        let worker = self.worker(&record.topic, partition);
        let msg = Msg::Record(Pending { record, timestamp, done, _permit: permit });
        worker.send(msg).await.map_err(|_| ClientError::Closed)?;
        Ok(DeliveryFuture { rx })
    }

    /// Sends every buffered record now and waits until all sent so far are acknowledged
    /// or failed.
    pub async fn flush(&self) -> Result<()> {
        let workers: Vec<mpsc::Sender<Msg>> = self.lock_workers().values().cloned().collect();
        let mut waits = Vec::with_capacity(workers.len());
        for worker in workers {
            let (tx, rx) = oneshot::channel();
            if worker.send(Msg::Flush(tx)).await.is_ok() {
                waits.push(rx);
            }
        }
        for rx in waits {
            let _ = rx.await;
        }
        Ok(())
    }

    async fn choose_partition(&self, record: &ProducerRecord) -> Result<u32> {
        let count = self.shared.client.partition_count(&record.topic).await?;
        if count == 0 {
            return Err(ClientError::NoSuchPartition { topic: record.topic.clone(), partition: 0 });
        }
        match (record.partition, &record.key) {
            (Some(p), _) if p < count => Ok(p),
            (Some(p), _) => Err(ClientError::NoSuchPartition { topic: record.topic.clone(), partition: p }),
            (None, Some(key)) => Ok(partition_for_key(key, count)),
            (None, None) => Ok(self.shared.round_robin.fetch_add(1, Ordering::Relaxed) % count),
        }
    }

    fn lock_workers(&self) -> std::sync::MutexGuard<'_, WorkerMap> {
        // The map stays consistent even if a holder panicked.
        self.workers.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn worker(&self, topic: &str, partition: u32) -> mpsc::Sender<Msg> {
        let mut workers = self.lock_workers();
        let key = (topic.to_string(), partition);
        if let Some(tx) = workers.get(&key).filter(|tx| !tx.is_closed()) {
            return tx.clone();
        }
        let (tx, rx) = mpsc::channel(WORKER_QUEUE_MAX);
        let worker = Worker::new(self.shared.clone(), topic, partition, rx);
        tokio::spawn(worker.run());
        workers.insert(key, tx.clone());
        tx
    }
}

async fn init_producer_id(client: &Client) -> Result<(i64, i16)> {
    // Any node may hand out ids (node-unique: drawn at random).
    let (header, _) = client.call_any_idempotent(Request::InitProducerId).await?;
    match header.response {
        Response::InitProducerId(r) => batch_identity(r.producer_id, r.producer_epoch),
        _ => Err(ClientError::UnexpectedResponse("init producer id")),
    }
}

/// The native response carries the id and epoch unsigned; a batch holds them as Kafka's
/// non-negative i64 / i16. A node never issues more, so anything else is refused.
fn batch_identity(producer_id: u64, producer_epoch: u16) -> Result<(i64, i16)> {
    match (i64::try_from(producer_id), i16::try_from(producer_epoch)) {
        (Ok(id), Ok(epoch)) => Ok((id, epoch)),
        _ => Err(ClientError::UnexpectedResponse("init producer id: id or epoch out of the batch format's range")),
    }
}

/// The error of a record not sent because the producer stopped after `cause`.
fn not_sent(cause: &ClientError) -> ClientError {
    ClientError::Server {
        code: cause.code(),
        message: format!("not sent: the producer stopped after a failure: {cause}"),
    }
}

fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

type ReplyFuture = Pin<Box<dyn Future<Output = Result<Reply>> + Send + Sync>>;

/// A batch sent at least once and not yet resolved.
struct InFlight {
    bytes: Bytes,
    base_sequence: i32,
    records: Vec<Pending>,
    first_sent: Instant,
    reply: ReplyFuture,
    /// Whether the last transmission reached the connection (else it failed before
    /// anything was written, and resending is always safe).
    sent: bool,
}

/// The error of a batch refused before a later one was stored, and so not resent.
fn keep_order_failure(refusal: &ClientError) -> ClientError {
    let why = refusal.detail().map(|d| format!(" ({d})")).unwrap_or_default();
    let message = format!("refused{why} and a later batch was stored; not resent, to keep order");
    ClientError::Server { code: refusal.code(), message }
}

/// What one produce reply means for the oldest in-flight batch.
enum Verdict {
    Stored(u64),
    /// Refused before any append: safe to resend.
    Retry(ClientError),
    /// Sent, and maybe stored.
    Unknown(ClientError),
    Fail(ClientError),
}

struct Worker {
    shared: Arc<Shared>,
    topic: String,
    partition: u32,
    rx: mpsc::Receiver<Msg>,
    rx_closed: bool,
    open: Vec<Pending>,
    open_bytes: usize,
    open_deadline: Option<Instant>,
    ready: VecDeque<Vec<Pending>>,
    inflight: VecDeque<InFlight>,
    sequence_next: i32,
    batches_closed: u64,
    batches_done: u64,
    flushes: Vec<(u64, oneshot::Sender<()>)>,
    retry_backoff: Duration,
    /// This worker's `(producer_id, epoch)`: the producer's, until an unknown outcome
    /// makes the worker take a fresh one.
    identity: Option<(i64, i16)>,
    /// Whether the node stored a batch of `identity` on this partition. Until it has, the
    /// node does not know the producer id and would append a batch at any sequence: if the
    /// first batch were lost and the second stored, the first could never follow it. So
    /// until then one batch is in flight at a time (sequence 0 is stored first).
    identity_known: bool,
}

impl Worker {
    fn new(shared: Arc<Shared>, topic: &str, partition: u32, rx: mpsc::Receiver<Msg>) -> Self {
        let retry_backoff = shared.config.retry_backoff;
        Worker {
            topic: topic.to_string(),
            partition,
            rx,
            rx_closed: false,
            open: Vec::new(),
            open_bytes: 0,
            open_deadline: None,
            ready: VecDeque::new(),
            inflight: VecDeque::new(),
            sequence_next: 0,
            batches_closed: 0,
            batches_done: 0,
            flushes: Vec::new(),
            retry_backoff,
            identity: shared.identity,
            identity_known: false,
            shared,
        }
    }

    async fn run(mut self) {
        loop {
            self.pump().await;
            self.resolve_flushes();
            if self.rx_closed && self.open.is_empty() && self.ready.is_empty() && self.inflight.is_empty() {
                break;
            }
            let accept = !self.rx_closed && self.ready.len() < READY_BATCHES_MAX;
            let linger_at = self.open_deadline;
            let has_inflight = !self.inflight.is_empty();
            let front = self.inflight.front_mut().map(|f| &mut f.reply);
            tokio::select! {
                reply = async { if let Some(f) = front { f.await } else { std::future::pending().await } }, if has_inflight => {
                    self.on_reply(reply).await;
                }
                msg = self.rx.recv(), if accept => self.on_msg(msg),
                _ = tokio::time::sleep_until(linger_at.unwrap_or_else(Instant::now)), if linger_at.is_some() => {
                    self.close_open();
                }
            }
        }
    }

    fn on_msg(&mut self, msg: Option<Msg>) {
        match msg {
            None => {
                self.rx_closed = true;
                self.close_open();
            }
            Some(Msg::Flush(tx)) => {
                self.close_open();
                self.flushes.push((self.batches_closed, tx));
            }
            Some(Msg::Record(p)) => {
                let size = p.record.size_bytes();
                if !self.open.is_empty() && self.open_bytes + size > self.shared.config.batch_size {
                    self.close_open();
                }
                if self.open.is_empty() {
                    self.open_deadline = Some(Instant::now() + self.shared.config.linger);
                }
                self.open.push(p);
                self.open_bytes += size;
                if self.open_bytes >= self.shared.config.batch_size {
                    self.close_open();
                }
            }
        }
    }

    fn close_open(&mut self) {
        self.open_deadline = None;
        self.open_bytes = 0;
        if !self.open.is_empty() {
            self.ready.push_back(std::mem::take(&mut self.open));
            self.batches_closed += 1;
        }
    }

    fn resolve_flushes(&mut self) {
        let done = self.batches_done;
        let (ready, waiting): (Vec<_>, Vec<_>) = self.flushes.drain(..).partition(|(mark, _)| *mark <= done);
        self.flushes = waiting;
        for (_, tx) in ready {
            let _ = tx.send(());
        }
    }

    /// Seals and sends ready batches while in-flight slots are free (once the producer
    /// stopped: fails them, and the open batch, unsent).
    async fn pump(&mut self) {
        if let Some(e) = self.shared.stopped() {
            let e = not_sent(e);
            self.close_open();
            while let Some(records) = self.ready.pop_front() {
                for p in records {
                    let _ = p.done.send(Err(e.clone()));
                }
                self.batches_done += 1;
            }
        }
        while self.inflight.len() < self.in_flight_max() {
            let Some(records) = self.ready.pop_front() else { break };
            let base_sequence = self.sequence_next;
            let bytes = self.seal(&records, base_sequence);
            self.sequence_next = next_sequence(base_sequence, records.len() as u32);
            if self.shared.config.acks == Acks::None {
                self.send_unacked(records, &bytes).await;
                continue;
            }
            let (reply, sent) = self.transmit_acked(&bytes).await;
            let first_sent = Instant::now();
            self.inflight.push_back(InFlight { bytes, base_sequence, records, first_sent, reply, sent });
        }
    }

    /// Batches that may be in flight now (see `identity_known`).
    fn in_flight_max(&self) -> usize {
        if self.identity.is_some() && !self.identity_known {
            1
        } else {
            self.shared.config.max_in_flight
        }
    }

    fn seal(&self, records: &[Pending], base_sequence: i32) -> Bytes {
        let mut builder = BatchBuilder::with_capacity(self.shared.config.batch_size + 1024);
        if let Some((id, epoch)) = self.identity {
            builder = builder.producer(id, epoch, base_sequence);
        }
        for p in records {
            let headers: Vec<(&[u8], Option<&[u8]>)> =
                p.record.headers.iter().map(|(k, v)| (&k[..], v.as_deref())).collect();
            builder.push(p.timestamp, p.record.key.as_deref(), p.record.value.as_deref(), &headers);
        }
        seal_batch(builder, self.shared.config.compression)
    }

    /// Sends one batch. `Ok(None)` when no reply is expected (`acks = none`).
    async fn transmit(&self, bytes: &Bytes) -> Result<Option<PendingReply>> {
        let request = Request::Produce(ProduceRequest {
            acks: self.shared.config.acks,
            timeout_ms: self.shared.config.request_timeout_ms,
            partitions: vec![ProducePartition {
                topic: self.topic.clone(),
                partition: self.partition,
                bytes_len: bytes.len() as u32,
            }],
        });
        let client = &self.shared.client;
        let addr = client.partition_addr(&self.topic, self.partition).await?;
        let conn = client.connection(addr).await?;
        if self.shared.config.acks == Acks::None {
            conn.send_oneway(request, bytes).await?;
            return Ok(None);
        }
        conn.send(request, bytes).await.map(Some)
    }

    /// Sends one batch; the future resolves with its reply, or at once with the error
    /// that kept it from being sent (then the flag is false: nothing was written).
    async fn transmit_acked(&self, bytes: &Bytes) -> (ReplyFuture, bool) {
        match self.transmit(bytes).await {
            Ok(Some(pending)) => (Box::pin(pending.wait()), true),
            Ok(None) => (Box::pin(std::future::ready(Err(ClientError::UnexpectedResponse("no reply expected")))), true),
            Err(e) => (Box::pin(std::future::ready(Err(e))), false),
        }
    }

    /// `acks = none`: the records are done once written (or failed if they could not be).
    async fn send_unacked(&mut self, records: Vec<Pending>, bytes: &Bytes) {
        let sent = self.transmit(bytes).await;
        for p in records {
            let result = match &sent {
                Ok(_) => Ok(RecordMetadata { partition: self.partition, offset: None }),
                Err(e) => {
                    if self.shared.config.stop_on_failure {
                        let _ = self.shared.failure.set(e.clone());
                    }
                    Err(e.clone())
                }
            };
            let _ = p.done.send(result);
        }
        self.batches_done += 1;
    }

    async fn on_reply(&mut self, reply: Result<Reply>) {
        let sent = self.inflight.front().is_some_and(|f| f.sent);
        match self.judge(reply, sent) {
            Verdict::Stored(base_offset) => {
                if let Some(batch) = self.inflight.pop_front() {
                    self.complete(batch, Ok(base_offset));
                }
                self.retry_backoff = self.shared.config.retry_backoff;
            }
            // Resent at once: the node's sequence table makes the resend exactly-once.
            Verdict::Unknown(e) if self.resends_unknown() => self.retry_all(e).await,
            v @ (Verdict::Retry(_) | Verdict::Unknown(_)) => self.settle_window(v).await,
            Verdict::Fail(e) => self.fail_front(e).await,
        }
    }

    /// Whether batches of unknown outcome are resent (see [`UnknownOutcome`]).
    fn resends_unknown(&self) -> bool {
        match self.shared.config.unknown_outcome {
            UnknownOutcome::Resend => true,
            UnknownOutcome::Fail => false,
            UnknownOutcome::Auto => self.identity.is_some(),
        }
    }

    /// A partition error's message: which partition, then the node's note if it sent one.
    fn about(&self, note: Option<&str>) -> String {
        match note {
            Some(note) => format!("{}/{}: {note}", self.topic, self.partition),
            None => format!("{}/{}", self.topic, self.partition),
        }
    }

    fn judge(&self, reply: Result<Reply>, sent: bool) -> Verdict {
        let (header, _) = match reply {
            Ok(r) => r,
            Err(e) if e.is_retriable() && !sent => return Verdict::Retry(e),
            Err(e) if e.outcome_unknown() => return Verdict::Unknown(e),
            Err(e) if e.is_retriable() => return Verdict::Retry(e),
            Err(e) => return Verdict::Fail(e),
        };
        let Response::Produce(resp) = header.response else {
            return Verdict::Fail(ClientError::UnexpectedResponse("produce"));
        };
        let Some(part) = resp.partitions.iter().find(|p| p.topic == self.topic && p.partition == self.partition) else {
            return Verdict::Fail(ClientError::UnexpectedResponse("produce reply without our partition"));
        };
        match part.error {
            ErrorCode::None | ErrorCode::DuplicateSequence => Verdict::Stored(part.base_offset),
            // Every earlier batch was acknowledged (replies are consumed in order), so the
            // node judged this one before it had applied its predecessor (it may process
            // pipelined requests concurrently). Resending in order fixes that; a real gap
            // keeps failing until `delivery_timeout`.
            ErrorCode::OutOfOrderSequence if self.shared.identity.is_some() => {
                Verdict::Retry(ClientError::server(part.error, header.message.clone()))
            }
            code => {
                let e = ClientError::server(code, Some(self.about(header.message.as_deref())));
                if e.outcome_unknown() {
                    Verdict::Unknown(e)
                } else if e.is_retriable() {
                    Verdict::Retry(e)
                } else {
                    Verdict::Fail(e)
                }
            }
        }
    }

    fn complete(&mut self, batch: InFlight, result: Result<u64>) {
        if result.is_ok() {
            self.identity_known = true;
        }
        if let (Err(e), true) = (&result, self.shared.config.stop_on_failure) {
            let _ = self.shared.failure.set(e.clone());
        }
        for (i, p) in batch.records.into_iter().enumerate() {
            let r = match &result {
                Ok(base) => Ok(RecordMetadata { partition: self.partition, offset: Some(base + i as u64) }),
                Err(e) => Err(e.clone()),
            };
            let _ = p.done.send(r);
        }
        self.batches_done += 1;
    }

    /// Resends every in-flight batch, in order, after a pause and a metadata refresh.
    async fn retry_all(&mut self, err: ClientError) {
        let expired =
            self.inflight.front().is_some_and(|f| f.first_sent.elapsed() > self.shared.config.delivery_timeout);
        if expired && err.outcome_unknown() {
            // The oldest batch may be stored: its sequence must not be reused (fail_front
            // would rewind to it). Settle the window and take a fresh producer id instead.
            return self.settle_window(Verdict::Unknown(err)).await;
        }
        if expired {
            return self.fail_front(err).await;
        }
        tracing::debug!(topic = %self.topic, partition = self.partition, error = %err, "retrying in-flight batches");
        self.shared.retries.fetch_add(1, Ordering::Relaxed);
        // An out-of-order verdict needs no pause: its predecessors are stored, so the
        // resend goes through at once (see `judge`). Anything else backs off first.
        if err.code() != ErrorCode::OutOfOrderSequence {
            self.pause_before_retry(&err).await;
        }
        self.resend_window().await;
    }

    async fn pause_before_retry(&mut self, err: &ClientError) {
        self.shared.client.note_partition_error(&self.topic, err);
        tokio::time::sleep(self.retry_backoff).await;
        self.retry_backoff = (self.retry_backoff * 2).min(self.shared.config.retry_backoff_max);
    }

    /// Transmits every in-flight batch again, in order.
    async fn resend_window(&mut self) {
        for i in 0..self.inflight.len() {
            let bytes = self.inflight[i].bytes.clone();
            let (reply, sent) = self.transmit_acked(&bytes).await;
            self.inflight[i].reply = reply;
            self.inflight[i].sent = sent;
        }
    }

    /// The careful retry path: waits for every in-flight reply, completes stored batches,
    /// fails failed ones, and resends, in order, batches refused before any append — and
    /// batches of unknown outcome when [`Worker::resends_unknown`], else fails them. A
    /// batch not known to be stored that precedes a stored one is failed, not resent
    /// (it would land behind it). `first` is the oldest batch's verdict.
    async fn settle_window(&mut self, first: Verdict) {
        let mut verdicts = vec![first];
        for i in 1..self.inflight.len() {
            let sent = self.inflight[i].sent;
            let reply = (&mut self.inflight[i].reply).await;
            verdicts.push(self.judge(reply, sent));
        }
        let batches: Vec<InFlight> = self.inflight.drain(..).collect();
        let delivery_timeout = self.shared.config.delivery_timeout;
        // Whether the sequence numbers of what remains no longer follow the node's view.
        let mut renew = false;
        let mut retry_error: Option<ClientError> = None;
        // Base sequences of kept batches whose outcome is unknown (resent, not refused).
        let mut kept_unknown = Vec::new();
        let resend_unknown = self.resends_unknown();
        for (batch, verdict) in batches.into_iter().zip(verdicts) {
            if let Verdict::Retry(e) | Verdict::Unknown(e) | Verdict::Fail(e) = &verdict {
                // Even when nothing is resent, the next batch must not follow stale routing
                // (e.g. a paused head whose connection stays open).
                self.shared.client.note_partition_error(&self.topic, e);
            }
            match verdict {
                Verdict::Stored(base) => {
                    // Earlier batches were refused but this one was stored (the node became
                    // head in between, or a cut connection's copy was still being appended).
                    // Resending blindly could put them after it. With a producer id the node
                    // decides: a batch it stored comes back DUPLICATE_SEQUENCE with its
                    // offset, one it did not is refused as out of order and failed here.
                    // Without one they are failed — certainly not stored — to keep the
                    // partition in send order.
                    if let Some(e) = retry_error.take() {
                        let failure = keep_order_failure(&e);
                        if self.identity.is_some() && !renew {
                            renew |= self.settle_predecessors(&failure).await;
                        } else {
                            renew = true;
                            while let Some(refused) = self.inflight.pop_front() {
                                if kept_unknown.contains(&refused.base_sequence) {
                                    self.shared.unknown_failed.fetch_add(1, Ordering::Relaxed);
                                    self.complete(refused, Err(ClientError::UnknownOutcome(Box::new(failure.clone()))));
                                } else {
                                    self.complete(refused, Err(failure.clone()));
                                }
                            }
                        }
                    }
                    self.complete(batch, Ok(base));
                }
                Verdict::Unknown(e) if resend_unknown && batch.first_sent.elapsed() <= delivery_timeout => {
                    kept_unknown.push(batch.base_sequence);
                    if retry_error.is_none() {
                        retry_error = Some(e);
                    }
                    self.inflight.push_back(batch);
                }
                Verdict::Retry(e) if batch.first_sent.elapsed() <= delivery_timeout => {
                    if retry_error.is_none() {
                        retry_error = Some(e);
                    }
                    self.inflight.push_back(batch);
                }
                Verdict::Retry(e) | Verdict::Fail(e) => {
                    renew = true;
                    self.complete(batch, Err(e));
                }
                Verdict::Unknown(e) => {
                    renew = true;
                    self.shared.unknown_failed.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(topic = %self.topic, partition = self.partition, error = %e, "batch outcome unknown; not resent");
                    self.complete(batch, Err(ClientError::UnknownOutcome(Box::new(e))));
                }
            }
        }
        if renew && self.identity.is_some() {
            self.renew_identity().await;
        }
        let Some(err) = retry_error else { return };
        self.shared.retries.fetch_add(1, Ordering::Relaxed);
        if err.code() != ErrorCode::OutOfOrderSequence {
            self.pause_before_retry(&err).await;
        }
        self.resend_window().await;
    }

    /// Asks the node, batch by batch in order, about every in-flight batch (all precede
    /// a stored batch of this producer id) by resending it: stored → completed with the
    /// offset the node reports (`DUPLICATE_SEQUENCE`, nothing stored twice); refused as
    /// out of order (or any other definite refusal) → not stored, and neither are the ones
    /// after it: all failed with `failure`; no definite answer within a few tries →
    /// failed as of unknown outcome. True when anything failed (sequences must be renewed).
    async fn settle_predecessors(&mut self, failure: &ClientError) -> bool {
        let mut failed = false;
        while let Some(front) = self.inflight.front() {
            let bytes = front.bytes.clone();
            let answer = self.ask_stored(&bytes).await;
            let Some(batch) = self.inflight.pop_front() else { break };
            match answer {
                Ok(base) => self.complete(batch, Ok(base)),
                Err(Some(e)) => {
                    failed = true;
                    self.shared.unknown_failed.fetch_add(1, Ordering::Relaxed);
                    self.complete(batch, Err(ClientError::UnknownOutcome(Box::new(e))));
                }
                Err(None) => {
                    failed = true;
                    self.complete(batch, Err(failure.clone()));
                    while let Some(rest) = self.inflight.pop_front() {
                        self.complete(rest, Err(failure.clone()));
                    }
                }
            }
        }
        failed
    }

    /// Resends `bytes` until the node gives a definite answer, at most 3 times: `Ok(offset)`
    /// stored; `Err(None)` not stored (out of order, or refused for good); `Err(Some(e))`
    /// still unknown after the last try.
    async fn ask_stored(&self, bytes: &Bytes) -> std::result::Result<u64, Option<ClientError>> {
        const TRIES: u32 = 3;
        let mut attempt = 1;
        loop {
            let (reply, sent) = self.transmit_acked(bytes).await;
            match self.judge(reply.await, sent) {
                Verdict::Stored(base) => return Ok(base),
                Verdict::Retry(e) if e.code() == ErrorCode::OutOfOrderSequence => return Err(None),
                Verdict::Fail(_) => return Err(None),
                Verdict::Retry(e) | Verdict::Unknown(e) if attempt == TRIES => return Err(Some(e)),
                Verdict::Retry(_) | Verdict::Unknown(_) => {}
            }
            attempt += 1;
            tokio::time::sleep(self.shared.config.retry_backoff).await;
        }
    }

    /// Takes a fresh producer id for this partition and re-seals the batches still in
    /// flight with sequences from 0, so no old sequence is reused or skipped. If no node
    /// answers, the worker continues without a producer id (not idempotent).
    async fn renew_identity(&mut self) {
        match init_producer_id(&self.shared.client).await {
            Ok(identity) => {
                tracing::debug!(topic = %self.topic, partition = self.partition, ?identity, "fresh producer id");
                self.identity = Some(identity);
                self.identity_known = false;
                // Only the oldest batch stays in flight until the node knows the new id;
                // the others go back to the front of the ready queue, in order, unsealed.
                while self.inflight.len() > 1 {
                    if let Some(later) = self.inflight.pop_back() {
                        self.ready.push_front(later.records);
                    }
                }
                self.sequence_next = 0;
                for i in 0..self.inflight.len() {
                    let base_sequence = self.sequence_next;
                    let bytes = self.seal(&self.inflight[i].records, base_sequence);
                    self.sequence_next = next_sequence(base_sequence, self.inflight[i].records.len() as u32);
                    self.inflight[i].bytes = bytes;
                    self.inflight[i].base_sequence = base_sequence;
                }
            }
            Err(e) => {
                // Without a fresh id the old one's sequence has a gap the node would refuse
                // forever: go on without idempotence rather than stall.
                tracing::warn!(topic = %self.topic, partition = self.partition, error = %e, "no fresh producer id; continuing without idempotence");
                self.identity = None;
                for i in 0..self.inflight.len() {
                    let bytes = self.seal(&self.inflight[i].records, 0);
                    self.inflight[i].bytes = bytes;
                }
            }
        }
    }

    /// Fails the oldest batch, settles the rest of the in-flight window and rewinds the
    /// sequence so the next batch follows the last one stored.
    async fn fail_front(&mut self, err: ClientError) {
        let Some(front) = self.inflight.pop_front() else { return };
        tracing::warn!(
            topic = %self.topic,
            partition = self.partition,
            base_sequence = front.base_sequence,
            records = front.records.len(),
            error = %err,
            "batch failed"
        );
        let mut sequence_next = front.base_sequence;
        self.complete(front, Err(err.clone()));
        while let Some(mut batch) = self.inflight.pop_front() {
            let reply = (&mut batch.reply).await;
            match self.judge(reply, batch.sent) {
                Verdict::Stored(base) => {
                    sequence_next = next_sequence(batch.base_sequence, batch.records.len() as u32);
                    self.complete(batch, Ok(base));
                }
                _ => {
                    let why = err.detail().map(|d| format!(": {d}")).unwrap_or_default();
                    let e = ClientError::Server {
                        code: err.code(),
                        message: format!("an earlier batch of this partition failed{why}"),
                    };
                    self.complete(batch, Err(e));
                }
            }
        }
        self.sequence_next = sequence_next;
    }
}
