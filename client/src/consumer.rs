//! [`Consumer`]: reads assigned partitions from their owner shards.
//!
//! Every assigned partition with a known position has exactly one fetch in
//! flight (a spawned task doing a long-poll `Fetch`). When its result arrives
//! the next fetch for that partition is sent *before* the records are handed to
//! the application, so the network and the node work while the application
//! processes (prefetch). Records are decoded lazily per response and expose
//! zero-copy `Bytes` views of the payload (or of the batch's decompressed buffer).
//!
//! Two positions per partition: the *fetch position* (where the next fetch starts,
//! ahead of the application because of prefetch) and the *consumed position* (offset
//! of the next record the application has not been given yet) — the latter is what
//! [`Consumer::position`] reports and what commits store.
//!
//! Invariants: a partition's consumed position only moves forward past records
//! returned to the application, or by an explicit seek/reset; every seek takes a
//! fresh fetch epoch from one consumer-wide counter and results of other epochs are
//! discarded, so no record from before a seek (or from before a revoke, even if the
//! partition comes back) is ever returned after it.
//!
//! Group consumption ([`Consumer::subscribe`]) lives in the `subscription` child
//! module; it drives `assign`/`unassign`/`seek` on rebalance from inside `poll`.
//!
//! A corrupt batch (stored by an older node, or damaged on disk) stops its partition:
//! `poll` returns the records before it, then [`ClientError::CorruptAt`] naming the
//! partition and offsets, again at every poll, until the application skips it
//! explicitly with [`Consumer::skip_corrupt_batch`]. Nothing is skipped silently.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use strand_wire::msg::{FetchPartition, FetchPartitionResponse, FetchRequest, OffsetSpec, Request, Response};
use strand_wire::ErrorCode;
use tokio::sync::mpsc;

use crate::client::Client;
use crate::error::{ClientError, Result};
use crate::group::Assignor;
use crate::records::{decode_batches, ConsumerRecord};

mod subscription;

/// Fetch results queued from partition tasks at most.
const RESULT_QUEUE_MAX: usize = 256;
/// Longest pause between retries of a failing fetch.
const FETCH_BACKOFF_MAX: Duration = Duration::from_secs(1);

/// Where a partition's position goes when it has none or it fell out of the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OffsetReset {
    /// The oldest retained record.
    Earliest,
    /// The next record to be written.
    Latest,
    /// Report [`ErrorCode::OffsetOutOfRange`] to the application.
    Error,
}

/// A seek target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SeekTo {
    Earliest,
    Latest,
    Offset(u64),
    /// The first record with timestamp `>=` this (ms since the Unix epoch).
    Timestamp(i64),
}

/// Consumer settings.
#[derive(Debug, Clone)]
pub struct ConsumerConfig {
    /// Longest the node holds a fetch waiting for `min_bytes`.
    pub max_wait: Duration,
    /// Bytes the node waits for before answering a fetch.
    pub min_bytes: u32,
    /// Bytes per fetch response at most (at least one batch is always returned).
    pub max_bytes: u32,
    /// What to do without a valid position; for a subscribed consumer also where a
    /// partition without a committed offset starts.
    pub auto_offset_reset: OffsetReset,
    /// Group member: removed by the node after this long without a request from it.
    pub session_timeout: Duration,
    /// Group member: longest a rebalance waits for members to rejoin (the consumer
    /// must call `poll` at least this often while subscribed, or it is dropped).
    pub rebalance_timeout: Duration,
    /// Group member: pause between heartbeats (well under `session_timeout`).
    pub heartbeat_interval: Duration,
    /// Group member: how the node spreads partitions (used when the group forms).
    pub assignor: Assignor,
    /// Group member: commit consumed positions every `auto_commit_interval` (from
    /// `poll`), before partitions are revoked, and on [`Consumer::close`].
    pub auto_commit: bool,
    /// Group member: period of the automatic commit.
    pub auto_commit_interval: Duration,
}

impl Default for ConsumerConfig {
    fn default() -> Self {
        ConsumerConfig {
            max_wait: Duration::from_millis(500),
            min_bytes: 1,
            max_bytes: 4 * 1024 * 1024,
            auto_offset_reset: OffsetReset::Latest,
            session_timeout: Duration::from_secs(10),
            rebalance_timeout: Duration::from_secs(30),
            heartbeat_interval: Duration::from_secs(3),
            assignor: Assignor::Range,
            auto_commit: true,
            auto_commit_interval: Duration::from_secs(5),
        }
    }
}

type PartitionKey = (Arc<str>, u32);

#[derive(Debug)]
struct PartState {
    /// Where the next fetch starts.
    position: Option<u64>,
    /// Offset of the next record not yet returned to the application.
    consumed: Option<u64>,
    /// Fetch epoch: results fetched under another epoch are dropped.
    generation: u64,
    fetching: bool,
}

impl PartState {
    fn new() -> Self {
        PartState { position: None, consumed: None, generation: 0, fetching: false }
    }
}

struct FetchResult {
    key: PartitionKey,
    generation: u64,
    offset: u64,
    result: Result<(FetchPartitionResponse, Bytes)>,
}

/// A consumer of explicitly assigned partitions.
pub struct Consumer {
    client: Client,
    config: ConsumerConfig,
    parts: HashMap<PartitionKey, PartState>,
    results_tx: mpsc::Sender<FetchResult>,
    results_rx: mpsc::Receiver<FetchResult>,
    buffered: VecDeque<ConsumerRecord>,
    /// Last fetch epoch handed out (see the module doc).
    epoch_last: u64,
    group: Option<subscription::GroupCtx>,
}

impl std::fmt::Debug for Consumer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Consumer").field("parts", &self.parts).finish()
    }
}

impl Consumer {
    /// A consumer with no partitions assigned.
    pub fn new(client: Client, config: ConsumerConfig) -> Self {
        let (results_tx, results_rx) = mpsc::channel(RESULT_QUEUE_MAX);
        Consumer {
            client,
            config,
            parts: HashMap::new(),
            results_tx,
            results_rx,
            buffered: VecDeque::new(),
            epoch_last: 0,
            group: None,
        }
    }

    /// The client this consumer reads through.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// Adds `topic`/`partition`; its position comes from `auto_offset_reset` unless sought.
    pub async fn assign(&mut self, topic: &str, partition: u32) -> Result<()> {
        let count = self.client.partition_count(topic).await?;
        if partition >= count {
            return Err(ClientError::NoSuchPartition { topic: topic.to_string(), partition });
        }
        let key = (Arc::<str>::from(topic), partition);
        self.parts.entry(key).or_insert_with(PartState::new);
        Ok(())
    }

    /// Assigns every partition of `topic`.
    pub async fn assign_topic(&mut self, topic: &str) -> Result<()> {
        for partition in 0..self.client.partition_count(topic).await? {
            self.assign(topic, partition).await?;
        }
        Ok(())
    }

    /// Unassigns `topic`/`partition`; results of its outstanding fetch are dropped.
    pub fn unassign(&mut self, topic: &str, partition: u32) {
        self.parts.remove(&(Arc::<str>::from(topic), partition));
        self.buffered.retain(|r| !(&*r.topic == topic && r.partition == partition));
    }

    /// The partitions assigned, sorted.
    pub fn assignment(&self) -> Vec<(String, u32)> {
        let mut v: Vec<_> = self.parts.keys().map(|(t, p)| (t.to_string(), *p)).collect();
        v.sort();
        v
    }

    /// Moves the position of an assigned partition. Records fetched before are discarded.
    pub async fn seek(&mut self, topic: &str, partition: u32, to: SeekTo) -> Result<u64> {
        let offset = match to {
            SeekTo::Offset(o) => o,
            SeekTo::Earliest => self.list_offset(topic, partition, OffsetSpec::Earliest).await?,
            SeekTo::Latest => self.list_offset(topic, partition, OffsetSpec::Latest).await?,
            SeekTo::Timestamp(t) => self.list_offset(topic, partition, OffsetSpec::Timestamp(t)).await?,
        };
        let key = (Arc::<str>::from(topic), partition);
        let state = self
            .parts
            .get_mut(&key)
            .ok_or_else(|| ClientError::Config(format!("{topic}/{partition} is not assigned")))?;
        self.epoch_last += 1;
        state.position = Some(offset);
        state.consumed = Some(offset);
        state.generation = self.epoch_last;
        state.fetching = false;
        self.buffered.retain(|r| !(&*r.topic == topic && r.partition == partition));
        Ok(offset)
    }

    /// Skips the corrupt batch `err` reports ([`ClientError::CorruptAt`]): seeks its
    /// partition past it and returns the offsets skipped (records lost to this consumer).
    /// `None` when `err` is another error or its partition is no longer assigned.
    pub async fn skip_corrupt_batch(&mut self, err: &ClientError) -> Result<Option<std::ops::Range<u64>>> {
        let ClientError::CorruptAt { topic, partition, offset, next_offset, .. } = err else { return Ok(None) };
        if !self.parts.contains_key(&(Arc::<str>::from(topic.as_str()), *partition)) {
            return Ok(None);
        }
        self.seek(topic, *partition, SeekTo::Offset(*next_offset)).await?;
        tracing::warn!(topic = %topic, partition, offset, next_offset, "skipped a corrupt batch");
        Ok(Some(*offset..*next_offset))
    }

    /// The offset of the next record [`Consumer::poll`] will return for a partition
    /// (the position a commit stores), if known.
    pub fn position(&self, topic: &str, partition: u32) -> Option<u64> {
        self.parts.get(&(Arc::<str>::from(topic), partition)).and_then(|s| s.consumed)
    }

    /// Asks the owner of `topic`/`partition` for the offset matching `spec`.
    pub async fn list_offset(&self, topic: &str, partition: u32, spec: OffsetSpec) -> Result<u64> {
        self.client.list_offset(topic, partition, spec).await
    }

    /// The next record, waiting as long as it takes.
    pub async fn next_record(&mut self) -> Result<ConsumerRecord> {
        loop {
            if let Some(r) = self.poll_max(Duration::from_secs(3600), 1).await?.pop() {
                return Ok(r);
            }
        }
    }

    /// The consumer as a stream of records, in fetch order (per partition: offset order).
    /// It never ends by itself; an error is yielded and the stream goes on.
    pub fn into_stream(self) -> impl futures_lite::Stream<Item = Result<ConsumerRecord>> {
        futures_lite::stream::unfold(self, |mut consumer| async move {
            let next = consumer.next_record().await;
            Some((next, consumer))
        })
    }

    /// Records from the next fetch response that has any, or an empty vector once
    /// `timeout` passed without one. Records left over by [`Consumer::poll_max`] come first.
    /// A subscribed consumer also heartbeats' findings here: it rebalances (running the
    /// listener's callbacks) and auto-commits from inside `poll`.
    pub async fn poll(&mut self, timeout: Duration) -> Result<Vec<ConsumerRecord>> {
        self.poll_max(timeout, usize::MAX).await
    }

    /// Like [`Consumer::poll`], returning at most `records_max` records; the rest stay
    /// buffered (not consumed, not committed) for the next call.
    pub async fn poll_max(&mut self, timeout: Duration, records_max: usize) -> Result<Vec<ConsumerRecord>> {
        if records_max == 0 {
            return Err(ClientError::Config("records_max must be at least 1".to_string()));
        }
        self.maintain_group().await?;
        if self.buffered.is_empty() {
            let records = self.poll_fetch(timeout).await?;
            self.buffered.extend(records);
        }
        let count = self.buffered.len().min(records_max);
        let out: Vec<ConsumerRecord> = self.buffered.drain(..count).collect();
        for r in &out {
            if let Some(state) = self.parts.get_mut(&(r.topic.clone(), r.partition)) {
                state.consumed = Some(state.consumed.map_or(r.offset + 1, |c| c.max(r.offset + 1)));
            }
        }
        if !out.is_empty() {
            self.note_consumed();
        }
        Ok(out)
    }

    /// Waits for the next fetch response with records (or `timeout`); a subscribed
    /// consumer also wakes up to rebalance when its heartbeat task asks for it.
    async fn poll_fetch(&mut self, timeout: Duration) -> Result<Vec<ConsumerRecord>> {
        if self.parts.is_empty() && self.group.is_none() {
            return Err(ClientError::Config("no partitions assigned".to_string()));
        }
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            self.start_fetches().await?;
            let wake = self.group_core();
            let result = tokio::select! {
                r = self.results_rx.recv() => r,
                _ = tokio::time::sleep_until(deadline) => return Ok(Vec::new()),
                _ = subscription::wait_wake(wake.as_deref()) => {
                    self.maintain_group().await?;
                    continue;
                }
            };
            let Some(result) = result else { return Err(ClientError::Closed) };
            let records = self.on_result(result).await?;
            if !records.is_empty() {
                return Ok(records);
            }
        }
    }

    /// Resolves missing positions and starts a fetch for every idle partition.
    async fn start_fetches(&mut self) -> Result<()> {
        let keys: Vec<PartitionKey> = self.parts.keys().cloned().collect();
        for key in keys {
            let needs_position = self.parts.get(&key).is_some_and(|s| s.position.is_none());
            if needs_position {
                self.reset_position(&key).await?;
            }
            if let Some(state) = self.parts.get_mut(&key) {
                if let (false, Some(offset)) = (state.fetching, state.position) {
                    state.fetching = true;
                    spawn_fetch(
                        self.client.clone(),
                        self.config.clone(),
                        key,
                        state.generation,
                        offset,
                        self.results_tx.clone(),
                    );
                }
            }
        }
        Ok(())
    }

    async fn reset_position(&mut self, key: &PartitionKey) -> Result<()> {
        let spec = match self.config.auto_offset_reset {
            OffsetReset::Earliest => OffsetSpec::Earliest,
            OffsetReset::Latest => OffsetSpec::Latest,
            OffsetReset::Error => {
                return Err(ClientError::Server {
                    code: ErrorCode::OffsetOutOfRange,
                    message: format!("{}/{} has no valid position", key.0, key.1),
                })
            }
        };
        let offset = self.list_offset(&key.0, key.1, spec).await?;
        if let Some(state) = self.parts.get_mut(key) {
            self.epoch_last += 1;
            state.position = Some(offset);
            state.consumed = Some(offset);
            state.generation = self.epoch_last;
            state.fetching = false;
        }
        Ok(())
    }

    /// Applies one fetch result: advances the position, starts the next fetch at once
    /// (prefetch), then returns the decoded records.
    async fn on_result(&mut self, r: FetchResult) -> Result<Vec<ConsumerRecord>> {
        let Some(state) = self.parts.get_mut(&r.key) else { return Ok(Vec::new()) };
        if state.generation != r.generation {
            return Ok(Vec::new());
        }
        state.fetching = false;
        let (resp, payload) = match r.result {
            Ok(ok) => ok,
            Err(e) if e.code() == ErrorCode::OffsetOutOfRange => {
                tracing::debug!(topic = %r.key.0, partition = r.key.1, offset = r.offset, "offset out of range; resetting");
                state.position = None;
                return Ok(Vec::new());
            }
            Err(e) => return Err(e),
        };
        let mut records = Vec::new();
        let offset_next = match decode_batches(&r.key.0, r.key.1, &payload, r.offset, &mut records) {
            Ok(next) => next,
            // Hand out what precedes the corrupt batch; the next fetch starts at it and
            // reports it then.
            Err(ClientError::CorruptAt { .. }) if !records.is_empty() => r.offset,
            Err(e) => return Err(e),
        };
        let position = records.last().map_or(offset_next, |rec| rec.offset + 1).max(r.offset);
        state.position = Some(position);
        tracing::trace!(topic = %resp.topic, partition = resp.partition, position, "fetched");
        self.start_fetches().await?;
        Ok(records)
    }
}

fn spawn_fetch(
    client: Client,
    config: ConsumerConfig,
    key: PartitionKey,
    generation: u64,
    offset: u64,
    tx: mpsc::Sender<FetchResult>,
) {
    tokio::spawn(async move {
        let result = fetch_with_retry(&client, &config, &key, offset, &tx).await;
        let _ = tx.send(FetchResult { key, generation, offset, result }).await;
    });
}

/// Fetches until success, a non-retriable error, or the consumer going away.
async fn fetch_with_retry(
    client: &Client,
    config: &ConsumerConfig,
    key: &PartitionKey,
    offset: u64,
    tx: &mpsc::Sender<FetchResult>,
) -> Result<(FetchPartitionResponse, Bytes)> {
    let mut backoff = Duration::from_millis(20);
    let mut behind_since = None;
    loop {
        match fetch_once(client, config, key, offset).await {
            // A replica behind the position: retry (fresh routing) for a failover's time,
            // then let the caller treat it as out of range.
            Err(e @ ClientError::ReplicaBehind { .. })
                if behind_since.get_or_insert_with(tokio::time::Instant::now).elapsed()
                    >= client.config().failover_timeout =>
            {
                return Err(e);
            }
            Err(e) if e.is_retriable() && !tx.is_closed() => {
                tracing::debug!(topic = %key.0, partition = key.1, error = %e, "fetch failed; retrying");
                client.note_partition_error(&key.0, &e);
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(FETCH_BACKOFF_MAX);
            }
            other => return other,
        }
    }
}

async fn fetch_once(
    client: &Client,
    config: &ConsumerConfig,
    key: &PartitionKey,
    offset: u64,
) -> Result<(FetchPartitionResponse, Bytes)> {
    let request = Request::Fetch(FetchRequest {
        max_wait_ms: config.max_wait.as_millis().min(u128::from(u32::MAX)) as u32,
        min_bytes: config.min_bytes,
        max_bytes: config.max_bytes,
        partitions: vec![FetchPartition {
            topic: key.0.to_string(),
            partition: key.1,
            offset,
            max_bytes: config.max_bytes,
        }],
    });
    let (header, payload) = client.call_partition_read(&key.0, key.1, request).await?;
    let Response::Fetch(resp) = header.response else {
        return Err(ClientError::UnexpectedResponse("fetch"));
    };
    let mut start = 0usize;
    for part in resp.partitions {
        let end = start + part.bytes_len as usize;
        if end > payload.len() {
            return Err(ClientError::UnexpectedResponse("fetch payload shorter than its lengths"));
        }
        if *part.topic == *key.0 && part.partition == key.1 {
            if part.error != ErrorCode::None {
                let behind = part.error == ErrorCode::OffsetOutOfRange
                    && offset >= part.log_start_offset
                    && client.cached_replicated(&key.0, key.1) == Some(true);
                let e = if behind {
                    ClientError::ReplicaBehind { topic: key.0.to_string(), partition: key.1, offset }
                } else {
                    ClientError::server(part.error, Some(format!("{}/{} at offset {offset}", key.0, key.1)))
                };
                client.note_partition_error(&key.0, &e);
                return Err(e);
            }
            return Ok((part, payload.slice(start..end)));
        }
        start = end;
    }
    Err(ClientError::UnexpectedResponse("fetch reply without our partition"))
}
