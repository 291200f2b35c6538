//! What a shard does to partitions it owns: produce, fetch (with long-poll on the
//! partitions' append watchers), list offsets, and answering cross-shard calls.
//!
//! Invariant: every function here is called on the owner shard only; a partition
//! that is not owned answers `NOT_OWNER` (routing upstream makes that a bug, not
//! a client-visible state, except while a topic is being created or deleted).

use std::rc::Rc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use std::sync::atomic::Ordering::Relaxed;
use strand_core::chain::Offset;
use strand_wire::msg::{
    Acks, FetchPartition, FetchPartitionResponse, ListOffsetsPartition, ListOffsetsPartitionResponse, ProducePartition,
    ProducePartitionResponse,
};
use strand_wire::ErrorCode;

use super::forward::{ShardAnswer, ShardCall};
use super::Shard;
use crate::config::FETCH_WAIT_MS_MAX;
use crate::log::ReadChunk;
use crate::notify::AnyOf;

/// One partition's fetch result on its owner: the response and the chunks to send.
pub struct LocalFetch {
    pub response: FetchPartitionResponse,
    pub chunks: Vec<ReadChunk>,
}

/// A fetch request's parameters.
#[derive(Debug, Clone, Copy)]
pub struct FetchLimits {
    pub max_wait_ms: u32,
    pub min_bytes: u32,
    pub max_bytes: u32,
}

/// A produce answer for `p` carrying only an error.
pub(crate) fn produce_error(p: &ProducePartition, code: ErrorCode) -> ProducePartitionResponse {
    ProducePartitionResponse {
        topic: p.topic.clone(),
        partition: p.partition,
        error: code,
        base_offset: 0,
        log_end_offset: 0,
        log_start_offset: 0,
    }
}

/// A fetch answer for `p` with no data, carrying only `code`.
pub(crate) fn fetch_error(p: &FetchPartition, code: ErrorCode) -> LocalFetch {
    let response = FetchPartitionResponse {
        topic: p.topic.clone(),
        partition: p.partition,
        error: code,
        log_start_offset: 0,
        log_end_offset: 0,
        high_watermark: 0,
        bytes_len: 0,
    };
    LocalFetch { response, chunks: Vec::new() }
}

/// A list-offsets answer for `p` carrying only `code`.
pub(crate) fn list_offsets_error(p: &ListOffsetsPartition, code: ErrorCode) -> ListOffsetsPartitionResponse {
    ListOffsetsPartitionResponse {
        topic: p.topic.clone(),
        partition: p.partition,
        error: code,
        offset: 0,
        timestamp: -1,
    }
}

impl Shard {
    /// Answers a cross-shard call (everything but `Shutdown`, which the inbox handles).
    pub async fn answer(self: &Rc<Self>, call: ShardCall) -> ShardAnswer {
        match call {
            ShardCall::Produce { acks, parts } => ShardAnswer::Produce(self.produce_local(acks, parts).await),
            ShardCall::Fetch { max_wait_ms, min_bytes, max_bytes, parts } => {
                let limits = FetchLimits { max_wait_ms, min_bytes, max_bytes };
                let fetched = self.fetch_local(limits, &parts).await;
                let out = fetched
                    .into_iter()
                    .map(|f| (f.response, f.chunks.into_iter().map(ReadChunk::share).collect()))
                    .collect();
                ShardAnswer::Fetch(out)
            }
            ShardCall::ListOffsets(parts) => ShardAnswer::ListOffsets(self.list_offsets_local(&parts).await),
            ShardCall::Offsets(parts) => ShardAnswer::Offsets(
                parts.iter().map(|(t, p)| self.partition(t, *p).map(|part| part.offsets())).collect(),
            ),
            ShardCall::TopicPrepare(topic) => ShardAnswer::Done(self.prepare_topic(&topic).await),
            ShardCall::TopicCreated(topic) => ShardAnswer::Done(self.open_topic(&topic).await),
            ShardCall::TopicConfigChanged(topic) => ShardAnswer::Done(self.apply_topic_config(&topic)),
            ShardCall::TopicDeleted { name } => ShardAnswer::Done(self.delete_topic(&name).await),
            ShardCall::Shutdown => ShardAnswer::Done(Ok(())),
        }
    }

    /// Appends each partition's batches; partitions append concurrently (their fsyncs
    /// group-commit). Every part's offsets are reserved, in list order, before this returns
    /// its future (`Partition::append` is synchronous up to durability).
    pub fn produce_local(
        self: &Rc<Self>,
        acks: Acks,
        parts: Vec<(ProducePartition, Bytes)>,
    ) -> impl std::future::Future<Output = Vec<ProducePartitionResponse>> {
        let appends: Vec<_> = parts.into_iter().map(|(p, payload)| self.produce_one(p, payload, acks)).collect();
        super::join::join_all(appends)
    }

    /// Starts one partition's append now and returns the wait for its answer.
    fn produce_one(
        self: &Rc<Self>,
        p: ProducePartition,
        payload: Bytes,
        acks: Acks,
    ) -> impl std::future::Future<Output = ProducePartitionResponse> {
        let started = match self.is_stopping() {
            true => Err(ErrorCode::ShuttingDown),
            false => self.partition(&p.topic, p.partition).map(|part| {
                let bytes = payload.len() as u64;
                let appending = part.append(payload, acks);
                (part, appending, bytes, self.append_started())
            }),
        };
        let shard = self.clone();
        async move {
            let (part, appending, bytes, _guard) = match started {
                Ok(started) => started,
                Err(code) => return produce_error(&p, code),
            };
            match appending.outcome().await {
                Ok(outcome) => {
                    if outcome.code == ErrorCode::None {
                        shard.metrics.bytes_in.fetch_add(bytes, Relaxed);
                        shard.metrics.records_in.fetch_add(u64::from(outcome.record_count), Relaxed);
                    }
                    ProducePartitionResponse {
                        topic: p.topic,
                        partition: p.partition,
                        error: outcome.code,
                        base_offset: outcome.base_offset.0,
                        log_end_offset: part.log().log_end_offset(),
                        log_start_offset: part.log().log_start_offset(),
                    }
                }
                Err(refusal) => {
                    tracing::debug!(topic = %p.topic, partition = p.partition, error = %refusal.message, "produce refused");
                    produce_error(&p, refusal.code)
                }
            }
        }
    }

    /// Reads every partition once, then long-polls the partitions' progress until
    /// `min_bytes` are available or `max_wait_ms` passed.
    pub async fn fetch_local(self: &Rc<Self>, limits: FetchLimits, parts: &[FetchPartition]) -> Vec<LocalFetch> {
        let wait = Duration::from_millis(u64::from(limits.max_wait_ms.min(FETCH_WAIT_MS_MAX)));
        let deadline = Instant::now() + wait;
        loop {
            // Listen before reading so an append between the read and the wait is not missed.
            let listens: Vec<_> = parts
                .iter()
                .filter_map(|p| self.partition(&p.topic, p.partition).ok())
                .map(|part| part.progressed().listen())
                .collect();
            let fetched = self.read_once(limits.max_bytes, parts).await;
            let total: u64 = fetched.iter().map(|f| u64::from(f.response.bytes_len)).sum();
            let failed = fetched.iter().any(|f| f.response.error != ErrorCode::None);
            let left = deadline.saturating_duration_since(Instant::now());
            if total >= u64::from(limits.min_bytes)
                || failed
                || left.is_zero()
                || listens.is_empty()
                || self.is_stopping()
            {
                return fetched;
            }
            let woken = futures_lite::future::or(AnyOf(listens), self.stop.listen());
            futures_lite::future::or(woken, glommio::timer::sleep(left)).await;
        }
    }

    async fn read_once(&self, max_bytes: u32, parts: &[FetchPartition]) -> Vec<LocalFetch> {
        let mut budget = max_bytes;
        let mut out = Vec::with_capacity(parts.len());
        for p in parts {
            let LocalFetch { mut response, mut chunks } = fetch_error(p, ErrorCode::None);
            let read = match self.partition(&p.topic, p.partition) {
                Ok(part) => part.read(Offset(p.offset), p.max_bytes.min(budget)).await,
                Err(code) => Err(code),
            };
            match read {
                Ok(read) => {
                    response.log_start_offset = read.log_start_offset.0;
                    response.log_end_offset = read.readable_end.0;
                    response.high_watermark = read.readable_end.0;
                    response.bytes_len = read.bytes_len;
                    budget = budget.saturating_sub(read.bytes_len);
                    chunks = read.chunks;
                }
                Err(code) => response.error = code,
            }
            out.push(LocalFetch { response, chunks });
        }
        out
    }

    /// Resolves earliest / latest / by-timestamp offsets.
    pub async fn list_offsets_local(&self, parts: &[ListOffsetsPartition]) -> Vec<ListOffsetsPartitionResponse> {
        let mut out = Vec::with_capacity(parts.len());
        for p in parts {
            let mut r = list_offsets_error(p, ErrorCode::None);
            let found = match self.partition(&p.topic, p.partition) {
                Ok(part) => part.list_offset(p.spec).await,
                Err(code) => Err(code),
            };
            match found {
                Ok((offset, timestamp)) => (r.offset, r.timestamp) = (offset.0, timestamp),
                Err(code) => r.error = code,
            }
            out.push(r);
        }
        out
    }
}
