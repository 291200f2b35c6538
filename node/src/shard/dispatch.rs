//! One request in, one reply out: the API handlers of a shard. Partition-level
//! work is routed to each partition's owner — a direct call when that is this
//! shard (the fast path of a shard port), a bounded cross-shard call otherwise.
//!
//! Invariant: every request gets exactly one reply (or none for `acks = none`),
//! never a panic: unknown topics, partitions and APIs are answered with codes.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use bytes::Bytes;
use strand_wire::msg::*;
use strand_wire::ErrorCode;

use super::forward::{self, ShardAnswer, ShardCall};
use super::ops::{fetch_error, list_offsets_error, produce_error, FetchLimits, LocalFetch};
use super::Shard;
use crate::log::ReadChunk;
use crate::topic::{is_internal_topic, TopicConfig};

/// A response header plus the payload to send after it, in order.
pub struct Reply {
    pub header: ResponseHeader,
    pub payload: Vec<ReadChunk>,
}

impl Reply {
    /// A reply with no payload.
    pub fn new(correlation_id: u64, response: Response) -> Self {
        Reply {
            header: ResponseHeader { correlation_id, error: ErrorCode::None, message: None, response, throttle_ms: 0 },
            payload: Vec::new(),
        }
    }

    /// An error reply.
    pub fn error(correlation_id: u64, error: ErrorCode, message: impl Into<String>) -> Self {
        let message = Some(message.into());
        let header = ResponseHeader { correlation_id, error, message, response: Response::Empty, throttle_ms: 0 };
        Reply { header, payload: Vec::new() }
    }
}

impl Shard {
    /// Handles one request; `None` = send nothing (produce with `acks = none`).
    pub async fn dispatch(self: &Rc<Self>, header: RequestHeader, payload: Bytes) -> Option<Reply> {
        let cid = header.correlation_id;
        self.metrics.requests[header.request.api().index()].fetch_add(1, Relaxed);
        let started = Instant::now();
        if self.is_stopping() {
            return Some(Reply::error(cid, ErrorCode::ShuttingDown, "node is shutting down"));
        }
        let reply = match header.request {
            Request::Handshake(r) => Some(self.handshake(cid, &r)),
            Request::Metadata(r) if self.cluster().is_some() => Some(self.cluster_metadata(cid, r).await),
            Request::Metadata(r) => Some(self.metadata(cid, r).await),
            Request::CreateTopic(r) => Some(self.create_topic(cid, r).await),
            Request::DeleteTopic(r) => Some(self.delete_topic_request(cid, r).await),
            Request::ListTopics if self.cluster().is_some() => Some(self.cluster_list_topics(cid)),
            Request::ListTopics => Some(self.list_topics(cid)),
            Request::InitProducerId => Some(self.init_producer_id(cid)),
            Request::Produce(r) => {
                let reply = self.produce(cid, r, payload).await;
                self.metrics.produce_latency.record_us(started.elapsed().as_micros() as u64);
                reply
            }
            Request::Fetch(r) => {
                let reply = self.fetch(cid, r).await;
                self.metrics.fetch_latency.record_us(started.elapsed().as_micros() as u64);
                Some(reply)
            }
            Request::ListOffsets(r) => Some(self.list_offsets(cid, r).await),
            Request::AlterTopicConfig(r) => Some(self.alter_topic_config(cid, r).await),
            Request::CreatePartitions(r) => Some(self.create_partitions(cid, r).await),
            r @ (Request::JoinGroup(_)
            | Request::SyncGroup(_)
            | Request::Heartbeat(_)
            | Request::LeaveGroup(_)
            | Request::OffsetCommit(_)
            | Request::OffsetFetch(_)
            | Request::ListGroups
            | Request::DescribeGroup(_)
            | Request::DeleteGroup(_)) => {
                let answer = self.group_dispatch(r).await;
                let header = ResponseHeader {
                    correlation_id: cid,
                    error: answer.error,
                    message: answer.message,
                    response: answer.response,
                    throttle_ms: 0,
                };
                Some(Reply { header, payload: Vec::new() })
            }
            _ => Some(Reply::error(cid, ErrorCode::UnknownApi, "API not supported by this node yet")),
        };
        if reply.as_ref().is_some_and(|r| r.header.error != ErrorCode::None) {
            self.metrics.request_errors.fetch_add(1, Relaxed);
        }
        reply
    }

    fn handshake(&self, cid: u64, r: &HandshakeRequest) -> Reply {
        let mut reply = Reply::new(
            cid,
            Response::Handshake(HandshakeResponse {
                protocol_version_min: PROTOCOL_VERSION,
                protocol_version_max: PROTOCOL_VERSION,
                node_id: self.shared.config.node_id,
                frame_len_max: self.shared.config.limits.frame_len_max,
            }),
        );
        if r.protocol_version != PROTOCOL_VERSION {
            reply.header.error = ErrorCode::UnsupportedVersion;
            reply.header.message = Some(format!("node speaks protocol {PROTOCOL_VERSION}"));
        }
        reply
    }

    fn list_topics(&self, cid: u64) -> Reply {
        let topics = match self.shared.registry.lock() {
            Ok(reg) => reg
                .topics()
                .values()
                .filter(|t| !is_internal_topic(&t.name))
                .map(|t| TopicSummary {
                    name: t.name.clone(),
                    partitions: t.partitions,
                    replication_factor: 1,
                    configs: crate::topic::effective_configs(&self.shared.config.log, &t.name, &t.configs),
                })
                .collect(),
            Err(_) => return Reply::error(cid, ErrorCode::Unknown, "topic registry poisoned"),
        };
        Reply::new(cid, Response::ListTopics(ListTopicsResponse { topics }))
    }

    /// A fresh random producer id at the one epoch the node issues (`strand_core::producer`).
    fn init_producer_id(&self, cid: u64) -> Reply {
        let partitions = self.partitions.borrow();
        let in_use = |id| partitions.values().any(|p| p.knows_producer(id));
        let Some(producer_id) = self.shared.producer_ids.issue(in_use) else {
            return Reply::error(cid, ErrorCode::Unknown, "every random producer id drawn was in use; retry");
        };
        // The native response is unsigned; both values are non-negative by construction.
        let producer_id = u64::try_from(producer_id).expect("issued producer ids are positive");
        let producer_epoch = u16::try_from(strand_core::producer::PRODUCER_EPOCH_ISSUED).expect("non-negative");
        Reply::new(cid, Response::InitProducerId(InitProducerIdResponse { producer_id, producer_epoch }))
    }

    async fn create_topic(self: &Rc<Self>, cid: u64, r: CreateTopicRequest) -> Reply {
        if is_internal_topic(&r.name) {
            return Reply::error(cid, ErrorCode::InvalidTopicName, "names starting with \"__\" are reserved");
        }
        let topic = TopicConfig {
            name: r.name.clone(),
            partitions: r.partitions,
            replication_factor: r.replication_factor.max(1),
            configs: r.configs.into_iter().collect(),
        };
        if self.cluster().is_some() {
            return self.cluster_create_topic(cid, topic).await;
        }
        if let Err((code, message)) = self.admit_topic(&topic).await {
            return Reply::error(cid, code, message);
        }
        tracing::info!(topic = %r.name, partitions = r.partitions, "topic created");
        Reply::new(cid, Response::CreateTopic(CreateTopicResponse { name: r.name, partitions: r.partitions }))
    }

    /// Creates a topic only once its resources are secured: admit it in the registry (name,
    /// caps, open-files budget; nothing persisted), open its partitions on every shard
    /// unpublished, persist, then publish. Any failure before the persist closes and removes
    /// what was opened and forgets the name, so `topics.json` never names a topic the node
    /// could not open.
    async fn admit_topic(self: &Rc<Self>, topic: &TopicConfig) -> Result<(), (ErrorCode, String)> {
        let (shared, to_admit) = (self.shared.clone(), topic.clone());
        glommio::executor()
            .spawn_blocking(move || {
                let limits = shared.config.admission;
                let fds = super::admission::FdBudget::measure(limits.open_files_reserved);
                let mut reg = shared.registry.lock().map_err(|_| poisoned())?;
                reg.reserve(to_admit, &limits, fds).map_err(|e| (e.code(), e.to_string()))
            })
            .await?;
        if let Err(message) = self.broadcast(|| ShardCall::TopicPrepare(topic.clone())).await {
            self.roll_back_topic(&topic.name).await;
            let message = format!("topic {} not created, its partitions could not be opened: {message}", topic.name);
            return Err((ErrorCode::StorageError, message));
        }
        let (shared, name) = (self.shared.clone(), topic.name.clone());
        let committed = glommio::executor()
            .spawn_blocking(move || {
                let mut reg = shared.registry.lock().map_err(|_| poisoned())?;
                reg.commit(&name).map_err(|e| (e.code(), e.to_string()))
            })
            .await;
        if let Err(e) = committed {
            self.roll_back_topic(&topic.name).await;
            return Err(e);
        }
        self.broadcast(|| ShardCall::TopicCreated(topic.clone()))
            .await
            .map_err(|e| (ErrorCode::StorageError, e.to_string()))
    }

    /// Undoes a create that failed before its persist: partitions closed and deleted on
    /// every shard, the topic directory removed, the name released.
    async fn roll_back_topic(self: &Rc<Self>, name: &str) {
        if let Err(e) = self.broadcast(|| ShardCall::TopicDeleted { name: name.to_string() }).await {
            tracing::warn!(topic = %name, error = %e, "rollback of a failed create: partitions not all closed");
        }
        let dir = self.shared.config.data_dir.join("topics").join(name);
        let (shared, name_owned) = (self.shared.clone(), name.to_string());
        glommio::executor()
            .spawn_blocking(move || {
                if let Err(e) = std::fs::remove_dir_all(&dir) {
                    if e.kind() != std::io::ErrorKind::NotFound {
                        tracing::warn!(dir = %dir.display(), error = %e, "rollback: topic directory not removed");
                    }
                }
                if let Ok(mut reg) = shared.registry.lock() {
                    reg.abort(&name_owned);
                }
            })
            .await;
        tracing::warn!(topic = %name, "topic create rolled back");
    }

    async fn delete_topic_request(self: &Rc<Self>, cid: u64, r: DeleteTopicRequest) -> Reply {
        if is_internal_topic(&r.name) {
            return Reply::error(cid, ErrorCode::InvalidTopicName, "internal topics cannot be deleted");
        }
        if self.cluster().is_some() {
            return self.cluster_delete_topic(cid, &r.name).await;
        }
        let shared = self.shared.clone();
        let name = r.name.clone();
        let removed = glommio::executor()
            .spawn_blocking(move || match shared.registry.lock() {
                Ok(mut reg) => reg.delete(&name).map(|_| ()).map_err(|e| (e.code(), e.to_string())),
                Err(_) => Err((ErrorCode::Unknown, "topic registry poisoned".to_string())),
            })
            .await;
        if let Err((code, message)) = removed {
            return Reply::error(cid, code, message);
        }
        if let Err(message) = self.broadcast(|| ShardCall::TopicDeleted { name: r.name.clone() }).await {
            return Reply::error(cid, ErrorCode::StorageError, message.to_string());
        }
        let dir = self.shared.config.data_dir.join("topics").join(&r.name);
        let removed_dir = glommio::executor().spawn_blocking(move || std::fs::remove_dir_all(&dir)).await;
        if let Err(e) = removed_dir {
            tracing::warn!(topic = %r.name, error = %e, "topic directory not fully removed");
        }
        tracing::info!(topic = %r.name, "topic deleted");
        Reply::new(cid, Response::Empty)
    }

    /// Sends a call to every shard (this one included) and waits for all answers.
    pub(super) async fn broadcast(&self, make: impl Fn() -> ShardCall) -> Result<(), BroadcastError> {
        let mut errors = Vec::new();
        for (s, inbox) in self.shared.inboxes.iter().enumerate() {
            match forward::call(inbox, s, make()).await {
                Ok(ShardAnswer::Done(Ok(()))) => {}
                Ok(ShardAnswer::Done(Err(e))) => errors.push(ShardFailure::Shard(e)),
                Ok(_) => errors.push(ShardFailure::Unexpected(s)),
                Err(e) => errors.push(ShardFailure::Forward(e)),
            }
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(BroadcastError(errors))
        }
    }

    async fn metadata(self: &Rc<Self>, cid: u64, r: MetadataRequest) -> Reply {
        let ports = self.shared.ports.get().cloned();
        let node = NodeInfo {
            node_id: self.shared.config.node_id,
            host: self.shared.config.advertise_host.clone(),
            port: ports.as_ref().map_or(0, |p| p.public),
            shard_ports: ports.map(|p| p.shards).unwrap_or_default(),
        };
        let topics: Vec<(String, Option<u32>)> = if r.topics.is_empty() {
            let topics = self.topics.borrow();
            topics.iter().filter(|(n, _)| !is_internal_topic(n)).map(|(n, c)| (n.clone(), Some(*c))).collect()
        } else {
            r.topics.iter().map(|n| (n.clone(), self.topic_partitions(n))).collect()
        };
        let mut out = Vec::with_capacity(topics.len());
        for (name, count) in topics {
            let Some(count) = count else {
                out.push(TopicMetadata { name, error: ErrorCode::UnknownTopic, partitions: Vec::new() });
                continue;
            };
            let partitions = self.partition_metadata(&name, count).await;
            out.push(TopicMetadata { name, error: ErrorCode::None, partitions });
        }
        Reply::new(cid, Response::Metadata(MetadataResponse { nodes: vec![node], topics: out }))
    }

    async fn partition_metadata(self: &Rc<Self>, topic: &str, count: u32) -> Vec<PartitionMetadata> {
        let mut by_owner: BTreeMap<u16, Vec<u32>> = BTreeMap::new();
        for p in 0..count {
            by_owner.entry(self.owner(topic, p).0).or_default().push(p);
        }
        let mut out: Vec<PartitionMetadata> = (0..count)
            .map(|p| PartitionMetadata {
                partition: p,
                error: ErrorCode::None,
                leader_node: self.shared.config.node_id,
                leader_shard: self.owner(topic, p).0,
                replicas: vec![self.shared.config.node_id],
                epoch: 0,
                log_start_offset: 0,
                log_end_offset: 0,
                commit_offset: 0,
                preferred_leader: 0,
            })
            .collect();
        for (owner, parts) in by_owner {
            let keys: Vec<(String, u32)> = parts.iter().map(|p| (topic.to_string(), *p)).collect();
            let offsets = if owner == self.id.0 {
                keys.iter().map(|(t, p)| self.partition(t, *p).map(|x| x.offsets())).collect()
            } else {
                match self.forward(owner, ShardCall::Offsets(keys)).await {
                    Ok(ShardAnswer::Offsets(o)) => o,
                    _ => vec![Err(ErrorCode::ShuttingDown); parts.len()],
                }
            };
            for (p, result) in parts.iter().zip(offsets) {
                let m = &mut out[*p as usize];
                match result {
                    Ok(o) => {
                        (m.log_start_offset, m.log_end_offset, m.commit_offset) =
                            (o.log_start.0, o.log_end.0, o.commit.0)
                    }
                    Err(code) => m.error = code,
                }
            }
        }
        out
    }

    pub(crate) async fn forward(&self, owner: u16, call: ShardCall) -> Result<ShardAnswer, forward::ForwardError> {
        self.metrics.forwarded.fetch_add(1, Relaxed);
        let inbox = &self.shared.inboxes[usize::from(owner)];
        forward::call(inbox, usize::from(owner), call).await
    }

    async fn produce(self: &Rc<Self>, cid: u64, r: ProduceRequest, payload: Bytes) -> Option<Reply> {
        let declared: u64 = r.partitions.iter().map(|p| u64::from(p.bytes_len)).sum();
        if declared != payload.len() as u64 {
            let message = format!("partitions declare {declared} bytes, payload has {}", payload.len());
            return (r.acks != Acks::None).then(|| Reply::error(cid, ErrorCode::InvalidRequest, message));
        }
        let acks = r.acks;
        let n = r.partitions.len();
        let mut results: Vec<Option<ProducePartitionResponse>> = vec![None; n];
        let mut by_owner: BTreeMap<u16, Vec<(usize, ProducePartition, Bytes)>> = BTreeMap::new();
        let mut rest = payload;
        let now_ms = super::now_ms();
        let mut refusal = None;
        for (i, p) in r.partitions.into_iter().enumerate() {
            let bytes = rest.split_to(p.bytes_len as usize);
            let checked = super::produce_checks::check_payload(&bytes, now_ms, &self.shared.config.limits);
            // Internal topics are written by the node only (e.g. commit records).
            let routed = match (is_internal_topic(&p.topic), checked) {
                (true, _) => Err(ErrorCode::InvalidRequest),
                (false, Err((code, message))) => {
                    let message = format!("{}/{}: {message}", p.topic, p.partition);
                    refusal.get_or_insert(message);
                    Err(code)
                }
                (false, Ok(())) => self.route(&p.topic, p.partition),
            };
            match routed {
                Ok(owner) => by_owner.entry(owner.0).or_default().push((i, p, bytes)),
                Err(code) => results[i] = Some(produce_error(&p, code)),
            }
        }
        // This shard's own parts reserve their offsets right here; other owners' calls are
        // sent in the join's first poll, in owner order, so a later request of the
        // connection cannot overtake this one on any partition (see `join`).
        type Answers<'a> = Pin<Box<dyn Future<Output = Vec<ProducePartitionResponse>> + 'a>>;
        let mut groups = Vec::with_capacity(by_owner.len());
        for (owner, group) in by_owner {
            let (indexes, parts): (Vec<usize>, Vec<(ProducePartition, Bytes)>) =
                group.into_iter().map(|(i, p, b)| (i, (p, b))).unzip();
            let answers: Answers = if owner == self.id.0 {
                Box::pin(self.produce_local(acks, parts))
            } else {
                let keys: Vec<ProducePartition> = parts.iter().map(|(p, _)| p.clone()).collect();
                Box::pin(async move {
                    match self.forward(owner, ShardCall::Produce { acks, parts }).await {
                        Ok(ShardAnswer::Produce(a)) => a,
                        other => {
                            // Expected only while the node stops; otherwise a wrong answer
                            // to trace (RELIABILITY.md: the soak's SHUTTING_DOWN sightings).
                            let stopping = self.is_stopping();
                            let what =
                                other.map(|a| format!("unexpected answer {a:?}")).unwrap_or_else(|e| e.to_string());
                            tracing::warn!(shard = self.id.0, owner, stopping, %what, "forwarded produce failed");
                            keys.iter().map(|p| produce_error(p, ErrorCode::ShuttingDown)).collect()
                        }
                    }
                })
            };
            groups.push(async move { (indexes, answers.await) });
        }
        for (indexes, answers) in super::join::join_all(groups).await {
            for (i, answer) in indexes.into_iter().zip(answers) {
                results[i] = Some(answer);
            }
        }
        let partitions: Vec<ProducePartitionResponse> = results.into_iter().flatten().collect();
        let note = self.not_owner_note(&partitions).or(refusal);
        (acks != Acks::None).then(|| {
            let mut reply = Reply::new(cid, Response::Produce(ProduceResponse { partitions }));
            reply.header.message = note;
            reply
        })
    }

    async fn list_offsets(self: &Rc<Self>, cid: u64, r: ListOffsetsRequest) -> Reply {
        let mut results: Vec<Option<ListOffsetsPartitionResponse>> = vec![None; r.partitions.len()];
        let mut by_owner: BTreeMap<u16, Vec<(usize, ListOffsetsPartition)>> = BTreeMap::new();
        for (i, p) in r.partitions.into_iter().enumerate() {
            match self.route(&p.topic, p.partition) {
                Ok(owner) => by_owner.entry(owner.0).or_default().push((i, p)),
                Err(error) => results[i] = Some(list_offsets_error(&p, error)),
            }
        }
        for (owner, group) in by_owner {
            let (indexes, parts): (Vec<usize>, Vec<ListOffsetsPartition>) = group.into_iter().unzip();
            let answers = if owner == self.id.0 {
                self.list_offsets_local(&parts).await
            } else {
                match self.forward(owner, ShardCall::ListOffsets(parts.clone())).await {
                    Ok(ShardAnswer::ListOffsets(a)) => a,
                    _ => return Reply::error(cid, ErrorCode::ShuttingDown, "owner shard unavailable"),
                }
            };
            for (i, answer) in indexes.into_iter().zip(answers) {
                results[i] = Some(answer);
            }
        }
        let partitions = results.into_iter().flatten().collect();
        Reply::new(cid, Response::ListOffsets(ListOffsetsResponse { partitions }))
    }

    async fn fetch(self: &Rc<Self>, cid: u64, r: FetchRequest) -> Reply {
        let limits = FetchLimits { max_wait_ms: r.max_wait_ms, min_bytes: r.min_bytes, max_bytes: r.max_bytes };
        let mut owners: Vec<u16> = Vec::new();
        let mut routed = Vec::with_capacity(r.partitions.len());
        for p in &r.partitions {
            let owner = self.route(&p.topic, p.partition);
            if let Ok(o) = owner {
                if !owners.contains(&o.0) {
                    owners.push(o.0);
                }
            }
            routed.push(owner);
        }
        let fetched = match owners.as_slice() {
            [only] => self.fetch_group(*only, limits, &r.partitions).await,
            // Nothing to wait for: every partition is unknown.
            [] => self.fetch_polling(FetchLimits { max_wait_ms: 0, ..limits }, &r.partitions).await,
            _ => self.fetch_polling(limits, &r.partitions).await,
        };
        let mut partitions = Vec::with_capacity(fetched.len());
        let mut payload = Vec::new();
        for f in fetched {
            self.metrics.bytes_out.fetch_add(u64::from(f.response.bytes_len), Relaxed);
            partitions.push(f.response);
            payload.extend(f.chunks);
        }
        let mut reply = Reply::new(cid, Response::Fetch(FetchResponse { partitions }));
        reply.payload = payload;
        reply
    }

    /// Fetch when all known partitions have one owner: it long-polls itself.
    async fn fetch_group(
        self: &Rc<Self>,
        owner: u16,
        limits: FetchLimits,
        parts: &[FetchPartition],
    ) -> Vec<LocalFetch> {
        if owner == self.id.0 {
            return self.fetch_local(limits, parts).await;
        }
        let call = ShardCall::Fetch {
            max_wait_ms: limits.max_wait_ms,
            min_bytes: limits.min_bytes,
            max_bytes: limits.max_bytes,
            parts: parts.to_vec(),
        };
        match self.forward(owner, call).await {
            Ok(ShardAnswer::Fetch(answers)) => answers
                .into_iter()
                .map(|(response, chunks)| LocalFetch {
                    chunks: chunks.into_iter().map(ReadChunk::from).collect(),
                    response,
                })
                .collect(),
            _ => parts.iter().map(|p| fetch_error(p, ErrorCode::ShuttingDown)).collect(),
        }
    }

    /// Fetch across owners: read each partition without waiting, in rounds, until
    /// `min_bytes` arrived or the wait is over.
    async fn fetch_polling(self: &Rc<Self>, limits: FetchLimits, parts: &[FetchPartition]) -> Vec<LocalFetch> {
        const ROUND_PAUSE: Duration = Duration::from_millis(5);
        let deadline = Instant::now() + Duration::from_millis(u64::from(limits.max_wait_ms));
        loop {
            let mut out = Vec::with_capacity(parts.len());
            let mut budget = limits.max_bytes;
            for p in parts {
                let owner = match self.route(&p.topic, p.partition) {
                    Ok(o) => o.0,
                    Err(code) => {
                        out.push(fetch_error(p, code));
                        continue;
                    }
                };
                let once = FetchLimits { max_wait_ms: 0, min_bytes: 0, max_bytes: budget };
                let mut got = self.fetch_group(owner, once, std::slice::from_ref(p)).await;
                let f = got.pop().unwrap_or_else(|| fetch_error(p, ErrorCode::Unknown));
                budget = budget.saturating_sub(f.response.bytes_len);
                out.push(f);
            }
            let total: u64 = out.iter().map(|f| u64::from(f.response.bytes_len)).sum();
            let left = deadline.saturating_duration_since(Instant::now());
            if total >= u64::from(limits.min_bytes) || left.is_zero() || self.is_stopping() {
                return out;
            }
            futures_lite::future::or(self.stop.listen(), glommio::timer::sleep(left.min(ROUND_PAUSE))).await;
        }
    }
}

/// What went wrong on each shard that did not carry out a broadcast call.
#[derive(Debug)]
pub(super) struct BroadcastError(Vec<ShardFailure>);

impl std::fmt::Display for BroadcastError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let failures: Vec<String> = self.0.iter().map(ToString::to_string).collect();
        f.write_str(&failures.join("; "))
    }
}

#[derive(Debug, thiserror::Error)]
enum ShardFailure {
    #[error(transparent)]
    Shard(super::ShardError),
    #[error("shard {0}: unexpected answer")]
    Unexpected(usize),
    #[error(transparent)]
    Forward(forward::ForwardError),
}

pub(super) fn poisoned() -> (ErrorCode, String) {
    (ErrorCode::Unknown, "topic registry poisoned".to_string())
}
