//! The data and admin paths of cluster mode (DESIGN §6): produce on a chain head (with
//! idempotent-producer de-duplication by the head's `HeadProducers` table, rebuilt from
//! the log whenever this replica heads a new epoch), reads capped at the chain's commit on
//! any member (CRAQ-style), topic create/delete through the control plane, and metadata
//! from the cluster view.
//!
//! Every function here is reached only when `Shard::cluster` is `Some` and the topic is
//! not internal; the single-node paths never come here. Invariant: a read never returns a
//! byte at or beyond the replica's `committed()` offset (a batch straddling it is held
//! back), so a consumer can never see a record the chain may still lose.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::{Rc, Weak};
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use strand_core::chain::{Acks as ChainAcks, Role};
use strand_wire::batch::BatchHeader;
use strand_wire::msg::*;
use strand_wire::ErrorCode;

use super::dispatch::Reply;
use super::forward::{ShardAnswer, ShardCall};
use super::ops::{fetch_error, list_offsets_error, produce_error, LocalFetch};
use super::partition::{producer_batches, HeadProducers, ProduceOutcome, ProduceRefusal};
use super::registry::TopicConfig;
use super::Shard;
use crate::control::ClusterView;
use crate::groups::is_internal_topic;
use crate::log::ReadChunk;
use crate::replication::ReplicatedPartition;

/// Longest a CreateTopic waits for this shard to learn the new topic from the view.
const CREATE_VISIBLE_WAIT: Duration = Duration::from_secs(5);
/// How often a duplicate waiting for its original to commit rechecks the replica's role.
const DUPLICATE_RECHECK: Duration = Duration::from_millis(10);

/// The chain's acknowledgement level for a wire `acks` (`none` still appends at the head).
fn chain_acks(acks: Acks) -> ChainAcks {
    match acks {
        Acks::All => ChainAcks::All,
        Acks::Leader | Acks::None => ChainAcks::Leader,
    }
}

/// Whether `topic` takes the cluster path on this shard.
pub(crate) fn replicated(shard: &Shard, topic: &str) -> bool {
    shard.cluster().is_some() && !is_internal_topic(topic)
}

impl Shard {
    /// The local replica serving `topic`/`partition`, or `NotOwner`.
    fn serving_replica(&self, topic: &str, partition: u32) -> Result<Rc<ReplicatedPartition>, ErrorCode> {
        self.route(topic, partition)?;
        let cluster = self.cluster().ok_or(ErrorCode::NotOwner)?;
        cluster.replica(topic, partition).ok_or(ErrorCode::NotOwner)
    }

    /// Produce on a replicated partition: only its head takes it; idempotent batches are
    /// sequence-checked against the head's producer table (see [`Shard::produce_on_head`]).
    pub(crate) async fn produce_replicated(
        self: Rc<Self>,
        p: ProducePartition,
        payload: Bytes,
        acks: Acks,
    ) -> ProducePartitionResponse {
        let replica = match self.serving_replica(&p.topic, p.partition) {
            Ok(r) if matches!(r.role(), Role::Head | Role::Single) => r,
            Ok(_) => return produce_error(&p, ErrorCode::NotOwner),
            Err(code) => return produce_error(&p, code),
        };
        let bytes = payload.len() as u64;
        let _guard = self.append_started();
        match self.produce_on_head(&replica, payload, chain_acks(acks)).await {
            Ok(outcome) => {
                if outcome.code == ErrorCode::None {
                    self.metrics.bytes_in.fetch_add(bytes, Relaxed);
                    self.metrics.records_in.fetch_add(u64::from(outcome.record_count), Relaxed);
                }
                ProducePartitionResponse {
                    topic: p.topic,
                    partition: p.partition,
                    error: outcome.code,
                    base_offset: outcome.base_offset,
                    log_end_offset: replica.log().log_end_offset(),
                    log_start_offset: replica.log().log_start_offset(),
                }
            }
            Err(refusal) => {
                tracing::debug!(topic = %p.topic, partition = p.partition, error = %refusal.message, "replicated produce refused");
                produce_error(&p, refusal.code)
            }
        }
    }

    /// Appends `payload` through the chain at this head, de-duplicating idempotent retries.
    ///
    /// Ordering (as in `Partition::produce`): the sequence check, the table entry and the
    /// chain core's offset assignment all run in this call's first poll (no await before
    /// `ReplicatedPartition::produce` took its offsets), so concurrent calls are checked in
    /// the order they are first polled. A duplicate is answered with its original offset
    /// once that offset is committed (for acks=leader too: the replica exposes no local
    /// durable offset, so a duplicate waits for the stronger guarantee).
    async fn produce_on_head(
        &self,
        replica: &Rc<ReplicatedPartition>,
        payload: Bytes,
        acks: ChainAcks,
    ) -> Result<ProduceOutcome, ProduceRefusal> {
        let batches = producer_batches(&payload)?;
        let record_count: u32 = batches.iter().map(|b| b.record_count).sum();
        // Plain batches never touch the table.
        let producers = batches.iter().any(|b| b.producer_id != 0).then(|| head_producers(replica));
        if let Some(producers) = &producers {
            let epoch = replica.config().epoch.0;
            if !producers.valid_for(epoch) {
                start_head_rebuild(replica, producers, epoch);
            }
            if let Some(base_offset) = producers.check(epoch, &batches)? {
                self.wait_committed(replica, base_offset + u64::from(record_count)).await?;
                return Ok(ProduceOutcome { code: ErrorCode::DuplicateSequence, base_offset, record_count });
            }
        }
        let base_offset = replica.log_end();
        let mut produce = std::pin::pin!(replica.produce(payload, acks));
        let first = futures_lite::future::poll_once(&mut produce).await;
        let taken_end = replica.log_end();
        if let Some(producers) = &producers {
            producers.enter(&batches, base_offset, taken_end);
            if first.is_none() && taken_end != base_offset + u64::from(record_count) {
                // The core did not take the batches in the first poll: the table cannot be
                // trusted to name them. Never expected; rebuild rather than guess.
                tracing::error!(base_offset, taken_end, "chain produce took no offsets in its first poll");
                producers.invalidate();
            }
        }
        let result = match first {
            Some(result) => result,
            None => produce.await,
        };
        let base_offset = result.map_err(|e| ProduceRefusal { code: e.code(), message: e.to_string() })?;
        Ok(ProduceOutcome { code: ErrorCode::None, base_offset, record_count })
    }

    /// Waits until everything below `end` is committed at `replica`; refuses with
    /// `NotOwner` (this request appended nothing) once the replica is no longer this
    /// shard's head of the partition.
    async fn wait_committed(&self, replica: &Rc<ReplicatedPartition>, end: u64) -> Result<(), ProduceRefusal> {
        let (topic, partition) = replica.id();
        let progressed = self.cluster().and_then(|c| c.progressed(topic, partition));
        loop {
            let woken = progressed.as_ref().map(|n| n.listen());
            if replica.committed() >= end {
                return Ok(());
            }
            let current =
                self.cluster().and_then(|c| c.replica(topic, partition)).is_some_and(|r| Rc::ptr_eq(&r, replica));
            if !current || !matches!(replica.role(), Role::Head | Role::Single) || self.is_stopping() {
                let message = "no longer the head while a duplicate waited for its original to commit";
                return Err(ProduceRefusal { code: ErrorCode::NotOwner, message: message.to_string() });
            }
            let recheck = glommio::timer::sleep(DUPLICATE_RECHECK);
            match woken {
                Some(woken) => futures_lite::future::or(woken, recheck).await,
                None => recheck.await,
            }
        }
    }

    /// A `NotOwner` produce answer's message: where each refused partition's head is.
    pub(crate) fn not_owner_note(&self, partitions: &[ProducePartitionResponse]) -> Option<String> {
        let cluster = self.cluster()?;
        let notes: Vec<String> = partitions
            .iter()
            .filter(|p| p.error == ErrorCode::NotOwner)
            .map(|p| cluster.head_note(&p.topic, p.partition))
            .collect();
        (!notes.is_empty()).then(|| notes.join("; "))
    }

    /// Reads one replicated partition up to its committed offset.
    pub(crate) async fn read_replicated(&self, p: &FetchPartition, budget: u32) -> LocalFetch {
        let replica = match self.serving_replica(&p.topic, p.partition) {
            Ok(r) => r,
            Err(code) => return fetch_error(p, code),
        };
        let LocalFetch { mut response, .. } = fetch_error(p, ErrorCode::None);
        let committed = replica.committed();
        let log = replica.log();
        response.log_start_offset = log.log_start_offset();
        response.log_end_offset = committed;
        response.high_watermark = committed;
        if budget == 0 || p.offset == committed || (p.offset > committed && p.offset <= log.log_end_offset()) {
            return LocalFetch { response, chunks: Vec::new() };
        }
        let read = match log.read(p.offset, p.max_bytes.min(budget)).await {
            Ok(read) => read,
            Err(e) => {
                response.error = e.code();
                return LocalFetch { response, chunks: Vec::new() };
            }
        };
        if read.next_offset <= committed {
            response.bytes_len = read.bytes_len;
            return LocalFetch { response, chunks: read.chunks };
        }
        match committed_prefix(&read.chunks, committed).await {
            Ok(bytes) => {
                response.bytes_len = bytes.len() as u32;
                let chunks = if bytes.is_empty() { Vec::new() } else { vec![ReadChunk::Memory(bytes)] };
                LocalFetch { response, chunks }
            }
            Err(e) => {
                tracing::warn!(topic = %p.topic, partition = p.partition, error = %e, "replicated read failed");
                response.error = ErrorCode::StorageError;
                LocalFetch { response, chunks: Vec::new() }
            }
        }
    }

    /// ListOffsets on a replicated partition: `latest` is the committed offset.
    pub(crate) async fn list_offsets_replicated(&self, p: &ListOffsetsPartition) -> ListOffsetsPartitionResponse {
        let replica = match self.serving_replica(&p.topic, p.partition) {
            Ok(replica) => replica,
            Err(code) => return list_offsets_error(p, code),
        };
        let mut r = list_offsets_error(p, ErrorCode::None);
        let committed = replica.committed();
        match p.spec {
            OffsetSpec::Earliest => r.offset = replica.log().log_start_offset(),
            OffsetSpec::Latest => r.offset = committed,
            OffsetSpec::Timestamp(ts) => match replica.log().offset_for_timestamp(ts).await {
                Ok(Some((offset, timestamp))) if offset < committed => (r.offset, r.timestamp) = (offset, timestamp),
                Ok(_) => r.offset = committed,
                Err(e) => r.error = e.code(),
            },
        }
        r
    }

    /// `(log start, log end, commit, epoch)` of this shard's replica of `topic`/`partition`.
    pub(crate) fn chain_offsets(&self, topic: &str, partition: u32) -> Result<(u64, u64, u64, u64), ErrorCode> {
        let replica = self.serving_replica(topic, partition)?;
        let log = replica.log();
        Ok((log.log_start_offset(), replica.log_end(), replica.commit(), replica.config().epoch.0))
    }

    /// CreateTopic through the control plane; answered once this shard serves the topic.
    pub(crate) async fn cluster_create_topic(&self, cid: u64, topic: TopicConfig) -> Reply {
        let Some(cluster) = self.cluster() else { return Reply::error(cid, ErrorCode::Unknown, "not in cluster mode") };
        let (name, partitions) = (topic.name.clone(), topic.partitions);
        if let Err(e) = cluster.control.create_topic(topic).await {
            return Reply::error(cid, e.code(), e.to_string());
        }
        let deadline = Instant::now() + CREATE_VISIBLE_WAIT;
        while self.topic_partitions(&name).is_none() && Instant::now() < deadline {
            glommio::timer::sleep(Duration::from_millis(10)).await;
        }
        tracing::info!(topic = %name, partitions, "cluster topic created");
        Reply::new(cid, Response::CreateTopic(CreateTopicResponse { name, partitions }))
    }

    /// DeleteTopic through the control plane (every node's reconcile deletes its replicas).
    pub(crate) async fn cluster_delete_topic(&self, cid: u64, name: &str) -> Reply {
        let Some(cluster) = self.cluster() else { return Reply::error(cid, ErrorCode::Unknown, "not in cluster mode") };
        match cluster.control.delete_topic(name).await {
            Ok(()) => Reply::new(cid, Response::Empty),
            Err(e) => Reply::error(cid, e.code(), e.to_string()),
        }
    }

    /// ListTopics from the cluster view.
    pub(crate) fn cluster_list_topics(&self, cid: u64) -> Reply {
        let Some(cluster) = self.cluster() else { return Reply::error(cid, ErrorCode::Unknown, "not in cluster mode") };
        let view = cluster.control.latest();
        let topics = view
            .topics
            .values()
            .filter(|t| !is_internal_topic(&t.name))
            .map(|t| TopicSummary {
                name: t.name.clone(),
                partitions: t.partitions,
                replication_factor: t.replication_factor,
            })
            .collect();
        Reply::new(cid, Response::ListTopics(ListTopicsResponse { topics }))
    }

    /// Metadata from the cluster view: every registered node, each partition's chain
    /// (head = leader), this node's local replica offsets.
    pub(crate) async fn cluster_metadata(self: &Rc<Self>, cid: u64, r: MetadataRequest) -> Reply {
        let Some(cluster) = self.cluster() else { return Reply::error(cid, ErrorCode::Unknown, "not in cluster mode") };
        let view = cluster.control.latest();
        let nodes = view
            .nodes
            .values()
            .map(|n| NodeInfo {
                node_id: n.node_id,
                host: n.host.clone(),
                port: n.port,
                shard_ports: n.shard_ports.clone(),
            })
            .collect();
        let names: Vec<String> = if r.topics.is_empty() {
            view.topics.keys().filter(|n| !is_internal_topic(n)).cloned().collect()
        } else {
            r.topics
        };
        let mut topics = Vec::with_capacity(names.len());
        for name in names {
            // Internal topics only by name; the offsets topic's heads are the group coordinators.
            let visible = !is_internal_topic(&name) || name == crate::groups::OFFSETS_TOPIC;
            let Some(config) = view.topics.get(&name).filter(|_| visible) else {
                topics.push(TopicMetadata { name, error: ErrorCode::UnknownTopic, partitions: Vec::new() });
                continue;
            };
            let mut partitions = Vec::with_capacity(config.partitions as usize);
            for p in 0..config.partitions {
                partitions.push(self.chain_metadata(&view, &name, p).await);
            }
            topics.push(TopicMetadata { name, error: ErrorCode::None, partitions });
        }
        Reply::new(cid, Response::Metadata(MetadataResponse { nodes, topics }))
    }

    async fn chain_metadata(self: &Rc<Self>, view: &ClusterView, topic: &str, partition: u32) -> PartitionMetadata {
        let mut m = PartitionMetadata {
            partition,
            error: ErrorCode::None,
            leader_node: 0,
            leader_shard: 0,
            replicas: Vec::new(),
            epoch: 0,
            log_start_offset: 0,
            log_end_offset: 0,
            commit_offset: 0,
        };
        let Some(chain) = view.chain(topic, partition) else {
            m.error = ErrorCode::NotEnoughReplicas;
            return m;
        };
        let head = chain.head().unwrap_or(0);
        m.leader_node = head;
        m.leader_shard = view.nodes.get(&head).map_or(0, |n| n.owner_shard(topic, partition).0);
        m.replicas.clone_from(&chain.members);
        m.epoch = chain.epoch;
        if !view.nodes.contains_key(&head) {
            m.error = ErrorCode::NotEnoughReplicas;
        }
        let owner = self.owner(topic, partition).0;
        let key = vec![(topic.to_string(), partition)];
        let local = if owner == self.id.0 {
            self.chain_offsets(topic, partition)
        } else {
            match self.forward(owner, ShardCall::ChainOffsets(key)).await {
                Ok(ShardAnswer::ChainOffsets(mut o)) if o.len() == 1 => o.remove(0),
                _ => Err(ErrorCode::ShuttingDown),
            }
        };
        if let Ok((start, end, commit, _)) = local {
            (m.log_start_offset, m.log_end_offset, m.commit_offset) = (start, end, commit);
        }
        m
    }
}

/// Head producer tables by replica address, each with a `Weak` to its replica (a held
/// `Weak` keeps the allocation, so an address is not reused while its entry exists).
type HeadTables = HashMap<usize, (Weak<ReplicatedPartition>, Rc<HeadProducers>)>;

thread_local! {
    /// The producer tables of the replicas on this shard's thread; a replica started again
    /// (a new `ReplicatedPartition`) gets a fresh table.
    static HEAD_PRODUCERS: RefCell<HeadTables> = RefCell::default();
}

/// The producer table of `replica` (created empty, valid for no epoch, on first use).
fn head_producers(replica: &Rc<ReplicatedPartition>) -> Rc<HeadProducers> {
    HEAD_PRODUCERS.with(|map| {
        let mut map = map.borrow_mut();
        let key = Rc::as_ptr(replica) as usize;
        if let Some((_, table)) = map.get(&key) {
            return table.clone();
        }
        map.retain(|_, (owner, _)| owner.strong_count() > 0);
        let table = Rc::new(HeadProducers::new());
        map.insert(key, (Rc::downgrade(replica), table.clone()));
        table
    })
}

/// Starts rebuilding `producers` for `epoch` from the replica's log in a task of its own
/// (the produce that noticed is refused meanwhile); no-op if one already runs.
fn start_head_rebuild(replica: &Rc<ReplicatedPartition>, producers: &Rc<HeadProducers>, epoch: u64) {
    if !matches!(replica.role(), Role::Head | Role::Single) || !producers.begin_rebuild(epoch) {
        return;
    }
    // Every batch the core took so far, written or still being appended.
    let end = replica.log_end();
    if end == 0 {
        producers.install_empty(epoch);
        return;
    }
    let (log, producers, weak) = (replica.log().clone(), producers.clone(), Rc::downgrade(replica));
    glommio::spawn_local(async move {
        let still_head = || {
            weak.upgrade().is_some_and(|r| r.config().epoch.0 == epoch && matches!(r.role(), Role::Head | Role::Single))
        };
        producers.rebuild(&log, epoch, end, still_head).await;
    })
    .detach();
}

/// The whole batches of `chunks` that end at or below `committed` (copied).
async fn committed_prefix(chunks: &[ReadChunk], committed: u64) -> std::io::Result<Bytes> {
    let mut buf = BytesMut::new();
    for chunk in chunks {
        buf.extend_from_slice(&chunk.to_bytes().await?);
    }
    let mut keep = 0usize;
    while keep < buf.len() {
        let Ok(header) = BatchHeader::parse(&buf[keep..]) else { break };
        let len = header.batch_len as usize;
        if header.next_offset() > committed || len == 0 || keep + len > buf.len() {
            break;
        }
        keep += len;
    }
    buf.truncate(keep);
    Ok(buf.freeze())
}
