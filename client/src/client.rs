//! [`Client`]: the shared entry point. It owns the bootstrap addresses, a
//! metadata cache (topic → partitions with their chain, head node and owner shard;
//! node id → addresses) and a pool of connections keyed by node port, so requests
//! for a partition go straight to its owner shard's fast-path port (routing rules:
//! [`crate::route`]).
//!
//! Invariants: at most one live connection per address; a failed connect is
//! retried no sooner than its backoff (doubling from `reconnect_backoff_min`
//! to `reconnect_backoff_max`, reset by a success); metadata for a topic is
//! dropped whenever a request on it fails with a routing or failover error, so the
//! next lookup asks a node again. Metadata (and other node-agnostic requests) go to
//! the bootstrap first and, when it cannot be reached, to every other node seen in
//! earlier metadata, so losing the bootstrap node does not blind the client.

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::Bytes;
use strand_wire::frame::FRAME_LEN_MAX_DEFAULT;
use strand_wire::msg::{
    HandshakeRequest, ListOffsetsPartition, ListOffsetsRequest, MetadataRequest, MetadataResponse, NodeInfo,
    OffsetSpec, PartitionMetadata, Request, Response, TopicMetadata, PROTOCOL_VERSION,
};
use strand_wire::ErrorCode;
use tokio::time::Instant;

use crate::conn::{Connection, Reply};
use crate::error::{ClientError, Result};
pub use crate::route::ReadPreference;
use crate::route::{leader_route, read_route, Near, Route};

/// Attempts of an idempotent request (metadata, list offsets) before its error is returned
/// (failover errors are retried longer, see [`ClientConfig::failover_timeout`]).
pub const IDEMPOTENT_ATTEMPTS_MAX: u32 = 5;

/// Settings shared by everything built on one [`Client`].
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// Public address(es) of some nodes, `host:port[,host:port…]`; the first reachable
    /// one is the bootstrap.
    pub bootstrap: String,
    /// Sent in the handshake; shows up in node logs.
    pub client_id: String,
    /// Longest a request waits for its response.
    pub request_timeout: Duration,
    /// Longest a TCP connect may take.
    pub connect_timeout: Duration,
    /// First wait before reconnecting to an address that refused us.
    pub reconnect_backoff_min: Duration,
    /// Longest wait between reconnect attempts.
    pub reconnect_backoff_max: Duration,
    /// Largest response frame accepted.
    pub frame_len_max: usize,
    /// Connect to owner shards' ports when the node advertises them (else the public port).
    pub use_shard_ports: bool,
    /// Which replica serves fetches and list-offsets.
    pub read_preference: ReadPreference,
    /// Longest one metadata request to one node may take before the next node is asked.
    pub metadata_timeout: Duration,
    /// How long idempotent requests (metadata, list offsets, describe) keep retrying
    /// failover errors ([`ClientError::is_failover`]) — long enough for a lease to expire
    /// and the chain to be reconfigured.
    pub failover_timeout: Duration,
    /// Cached topic metadata older than this is fetched again on its next use (Kafka's
    /// `metadata.max.age.ms`), so a long-lived producer or consumer sees partitions added
    /// to a topic (`strand topic add-partitions`) within this time.
    pub metadata_max_age: Duration,
    /// TLS to every node (`None` = plaintext): the CA to trust, a client certificate for
    /// mutual TLS.
    pub tls: Option<crate::tls::ClientTls>,
    /// Authenticate every connection as this user (SASL SCRAM); `None` = do not.
    pub credentials: Option<crate::auth::Credentials>,
}

impl Default for ClientConfig {
    fn default() -> Self {
        ClientConfig {
            bootstrap: "127.0.0.1:7070".to_string(),
            client_id: "strand-client".to_string(),
            request_timeout: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(5),
            reconnect_backoff_min: Duration::from_millis(50),
            reconnect_backoff_max: Duration::from_secs(2),
            frame_len_max: FRAME_LEN_MAX_DEFAULT * 2,
            use_shard_ports: true,
            read_preference: ReadPreference::Leader,
            metadata_timeout: Duration::from_secs(5),
            failover_timeout: Duration::from_secs(15),
            metadata_max_age: Duration::from_secs(300),
            tls: None,
            credentials: None,
        }
    }
}

impl ClientConfig {
    /// Default settings with this bootstrap address.
    pub fn new(bootstrap: impl Into<String>) -> Self {
        ClientConfig { bootstrap: bootstrap.into(), ..Default::default() }
    }
}

#[derive(Default)]
struct MetadataCache {
    nodes: HashMap<u32, NodeInfo>,
    topics: HashMap<String, TopicMetadata>,
    /// When each cached topic was fetched (see [`ClientConfig::metadata_max_age`]).
    fetched: HashMap<String, Instant>,
    /// The newest chain (highest epoch) seen per partition and when; survives
    /// invalidation, so a lagging node's older view cannot send us back to a removed head.
    chains: HashMap<(String, u32), (PartitionMetadata, Instant)>,
}

impl MetadataCache {
    /// Replaces, in `topic`, every partition's routing (head, shard, chain, epoch) that is
    /// older than a chain seen within `memory` with that newer chain, and remembers newer
    /// ones. Epochs only grow while a topic exists; remembered chains expire after
    /// `memory` so a deleted and re-created topic (epochs restart) is not pinned.
    fn merge_chains(&mut self, topic: &mut TopicMetadata, memory: Duration) {
        let now = Instant::now();
        for p in &mut topic.partitions {
            let key = (topic.name.clone(), p.partition);
            match self.chains.get(&key) {
                Some((known, at)) if now.duration_since(*at) < memory && known.epoch > p.epoch => {
                    tracing::debug!(topic = %topic.name, partition = p.partition, stale = p.epoch, known = known.epoch, "ignoring an older chain");
                    p.leader_node = known.leader_node;
                    p.leader_shard = known.leader_shard;
                    p.replicas = known.replicas.clone();
                    p.epoch = known.epoch;
                }
                _ => {
                    self.chains.insert(key, (p.clone(), now));
                }
            }
        }
    }
}

#[derive(Clone, Copy)]
struct Backoff {
    retry_at: Instant,
    delay: Duration,
}

type Slot = Arc<tokio::sync::Mutex<Option<Arc<Connection>>>>;

struct Inner {
    config: ClientConfig,
    /// The bootstrap address that answered first.
    bootstrap: SocketAddr,
    /// The other configured bootstrap addresses (fallbacks).
    bootstraps: Vec<String>,
    /// Node id each address answered in its handshake.
    node_ids: Mutex<HashMap<SocketAddr, u32>>,
    metadata: Mutex<MetadataCache>,
    slots: Mutex<HashMap<SocketAddr, Slot>>,
    backoff: Mutex<HashMap<SocketAddr, Backoff>>,
}

/// A handle to a Strand cluster. Clone it freely: clones share connections and metadata.
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client").field("bootstrap", &self.inner.bootstrap).finish()
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // The guarded maps stay consistent even if a holder panicked.
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Client {
    /// Resolves the bootstrap address and opens (and handshakes) a first connection.
    /// With several comma-separated bootstrap addresses the first that answers is used.
    pub async fn connect(config: ClientConfig) -> Result<Self> {
        let bootstraps: Vec<String> =
            config.bootstrap.split(',').map(str::trim).filter(|a| !a.is_empty()).map(String::from).collect();
        let mut last_error = ClientError::BadAddress { addr: config.bootstrap.clone(), reason: "empty".to_string() };
        for (i, candidate) in bootstraps.iter().enumerate() {
            let bootstrap = match resolve(candidate).await {
                Ok(a) => a,
                Err(e) => {
                    last_error = e;
                    continue;
                }
            };
            let mut others = bootstraps.clone();
            others.remove(i);
            let client = Client {
                inner: Arc::new(Inner {
                    config: config.clone(),
                    bootstrap,
                    bootstraps: others,
                    node_ids: Mutex::new(HashMap::new()),
                    metadata: Mutex::new(MetadataCache::default()),
                    slots: Mutex::new(HashMap::new()),
                    backoff: Mutex::new(HashMap::new()),
                }),
            };
            match client.connection(bootstrap).await {
                Ok(_) => return Ok(client),
                Err(e) => last_error = e,
            }
        }
        Err(last_error)
    }

    /// The settings this client was built with.
    pub fn config(&self) -> &ClientConfig {
        &self.inner.config
    }

    /// The resolved bootstrap address.
    pub fn bootstrap_addr(&self) -> SocketAddr {
        self.inner.bootstrap
    }

    /// Sends `request` to the bootstrap node and waits for its response. If the bootstrap
    /// cannot be connected to (nothing was sent), the other known nodes are tried.
    pub async fn call_bootstrap(&self, request: Request, payload: &[u8]) -> Result<Reply> {
        let timeout = self.inner.config.request_timeout;
        self.call_any(request, payload, timeout, |e| matches!(e, ClientError::Connect { .. })).await
    }

    /// Sends `request` to the bootstrap, then to each other known node (configured
    /// bootstraps, then every node of earlier metadata; addresses in reconnect backoff
    /// last) while the failure satisfies `next`; returns the first answer or the last error.
    pub async fn call_any(
        &self,
        request: Request,
        payload: &[u8],
        timeout: Duration,
        next: impl Fn(&ClientError) -> bool,
    ) -> Result<Reply> {
        let mut last = None;
        for addr in self.candidates().await {
            let result = match self.connection(addr).await {
                Ok(conn) => match conn.send_timeout(request.clone(), payload, timeout).await {
                    Ok(pending) => pending.wait().await,
                    Err(e) => Err(e),
                },
                Err(e) => Err(e),
            };
            match result {
                Err(e) if next(&e) => {
                    tracing::debug!(%addr, error = %e, "node unavailable; trying the next one");
                    if e == ClientError::Timeout {
                        // A paused node keeps its connection open but never answers: rank it
                        // last for a while (connect failures are noted by `connection`).
                        self.note_failure(addr);
                    }
                    last = Some(e);
                }
                other => return other,
            }
        }
        Err(last.unwrap_or(ClientError::Connect { addr: self.inner.bootstrap, reason: "no node known".to_string() }))
    }

    /// An idempotent, node-agnostic request (metadata, a producer id): to the bootstrap or,
    /// on any failover error, the next known node (each waited on at most
    /// `metadata_timeout`), retried like [`Client::retry_idempotent`].
    pub async fn call_any_idempotent(&self, request: Request) -> Result<Reply> {
        let timeout = self.inner.config.metadata_timeout.min(self.inner.config.request_timeout);
        self.retry_idempotent(|| self.call_any(request.clone(), &[], timeout, ClientError::is_failover)).await
    }

    /// Addresses to ask node-agnostic requests, best first.
    async fn candidates(&self) -> Vec<SocketAddr> {
        let mut names: Vec<String> = self.inner.bootstraps.clone();
        {
            let cache = lock(&self.inner.metadata);
            let mut nodes: Vec<&NodeInfo> = cache.nodes.values().filter(|n| n.port != 0).collect();
            nodes.sort_by_key(|n| n.node_id);
            names.extend(nodes.iter().map(|n| format!("{}:{}", n.host, n.port)));
        }
        let mut addrs = vec![self.inner.bootstrap];
        for name in names {
            if let Ok(a) = resolve(&name).await {
                if !addrs.contains(&a) {
                    addrs.push(a);
                }
            }
        }
        let now = Instant::now();
        let backoff = lock(&self.inner.backoff);
        // Stable: keeps the preference order within each group.
        addrs.sort_by_key(|a| backoff.get(a).is_some_and(|b| b.retry_at > now));
        addrs
    }

    /// Sends `request` to the bootstrap node and waits at most `timeout` for its response
    /// (instead of the configured request timeout).
    pub async fn call_bootstrap_timeout(&self, request: Request, payload: &[u8], timeout: Duration) -> Result<Reply> {
        let conn = self.connection(self.inner.bootstrap).await?;
        conn.send_timeout(request, payload, timeout).await?.wait().await
    }

    /// Sends `request` to `addr` (connecting if needed) and waits for its response.
    pub async fn call(&self, addr: SocketAddr, request: Request, payload: &[u8]) -> Result<Reply> {
        self.connection(addr).await?.call(request, payload).await
    }

    /// The live connection to `addr`, opening one (with backoff after failures) if needed.
    pub async fn connection(&self, addr: SocketAddr) -> Result<Arc<Connection>> {
        let slot = lock(&self.inner.slots).entry(addr).or_default().clone();
        let mut guard = slot.lock().await;
        if let Some(conn) = guard.as_ref().filter(|c| !c.is_closed()) {
            return Ok(conn.clone());
        }
        *guard = None;
        self.wait_backoff(addr).await;
        match self.open(addr).await {
            Ok(conn) => {
                lock(&self.inner.backoff).remove(&addr);
                let conn = Arc::new(conn);
                *guard = Some(conn.clone());
                Ok(conn)
            }
            Err(e) => {
                self.note_failure(addr);
                Err(e)
            }
        }
    }

    async fn open(&self, addr: SocketAddr) -> Result<Connection> {
        let c = &self.inner.config;
        let conn =
            Connection::open(addr, c.connect_timeout, c.request_timeout, c.frame_len_max, c.tls.as_ref()).await?;
        let hello = HandshakeRequest { protocol_version: PROTOCOL_VERSION, client_id: c.client_id.clone() };
        match conn.call(Request::Handshake(hello), &[]).await {
            Ok((header, _)) => match header.response {
                Response::Handshake(h)
                    if (h.protocol_version_min..=h.protocol_version_max).contains(&PROTOCOL_VERSION) =>
                {
                    lock(&self.inner.node_ids).insert(addr, h.node_id);
                    if let Some(credentials) = &c.credentials {
                        authenticate(&conn, credentials).await?;
                    }
                    Ok(conn)
                }
                Response::Handshake(_) => Err(ClientError::server(ErrorCode::UnsupportedVersion, None)),
                _ => Err(ClientError::UnexpectedResponse("handshake")),
            },
            Err(e) => Err(e),
        }
    }

    async fn wait_backoff(&self, addr: SocketAddr) {
        let retry_at = lock(&self.inner.backoff).get(&addr).map(|b| b.retry_at);
        if let Some(at) = retry_at {
            tokio::time::sleep_until(at).await;
        }
    }

    fn note_failure(&self, addr: SocketAddr) {
        let c = &self.inner.config;
        let mut backoff = lock(&self.inner.backoff);
        let delay = backoff.get(&addr).map_or(c.reconnect_backoff_min, |b| (b.delay * 2).min(c.reconnect_backoff_max));
        backoff.insert(addr, Backoff { retry_at: Instant::now() + delay, delay });
    }

    /// Closes every pooled connection, failing their outstanding requests. A test hook
    /// for forced disconnects; the next request reconnects.
    pub fn abort_connections(&self) {
        let slots: Vec<Slot> = lock(&self.inner.slots).values().cloned().collect();
        for slot in slots {
            if let Ok(guard) = slot.try_lock() {
                if let Some(conn) = guard.as_ref() {
                    conn.abort();
                }
            }
        }
    }

    /// Runs an idempotent request, retrying retriable failures (lost connection,
    /// timeout, `NOT_OWNER`, …) up to [`IDEMPOTENT_ATTEMPTS_MAX`] times with backoff, and
    /// failover failures ([`ClientError::is_failover`]) until
    /// [`ClientConfig::failover_timeout`] has passed.
    pub async fn retry_idempotent<T, F, Fut>(&self, mut op: F) -> Result<T>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T>>,
    {
        let c = &self.inner.config;
        let give_up_at = Instant::now() + c.failover_timeout;
        let mut backoff = c.reconnect_backoff_min;
        let mut attempt = 1;
        loop {
            match op().await {
                Err(e)
                    if e.is_retriable()
                        && (attempt < IDEMPOTENT_ATTEMPTS_MAX || (e.is_failover() && Instant::now() < give_up_at)) =>
                {
                    tracing::debug!(attempt, error = %e, "retrying idempotent request");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(c.reconnect_backoff_max);
                    attempt += 1;
                }
                other => return other,
            }
        }
    }

    /// Asks the bootstrap node (or, if it is unreachable, any other known node) for
    /// metadata of `topics` (empty = all) and caches it. Retries transient failures (see
    /// [`Client::retry_idempotent`]).
    pub async fn fetch_metadata(&self, topics: &[String]) -> Result<MetadataResponse> {
        let request = Request::Metadata(MetadataRequest { topics: topics.to_vec() });
        let (header, _) = self.call_any_idempotent(request).await?;
        let Response::Metadata(meta) = header.response else {
            return Err(ClientError::UnexpectedResponse("metadata"));
        };
        tracing::trace!(?meta, "metadata");
        let mut meta = meta;
        let mut cache = lock(&self.inner.metadata);
        for node in &meta.nodes {
            cache.nodes.insert(node.node_id, node.clone());
        }
        for topic in &mut meta.topics {
            if topic.error == ErrorCode::None {
                cache.merge_chains(topic, self.inner.config.failover_timeout);
                cache.topics.insert(topic.name.clone(), topic.clone());
                cache.fetched.insert(topic.name.clone(), Instant::now());
            } else {
                cache.topics.remove(&topic.name);
                cache.chains.retain(|(name, _), _| *name != topic.name);
            }
        }
        Ok(meta)
    }

    /// Drops everything known about `topic`, including its newest chains (after the topic
    /// was deleted or created: epochs restart).
    pub fn forget_topic(&self, topic: &str) {
        let mut cache = lock(&self.inner.metadata);
        cache.topics.remove(topic);
        cache.chains.retain(|(name, _), _| name != topic);
    }

    /// Drops cached metadata of `topic` so the next lookup asks the node.
    pub fn invalidate_topic(&self, topic: &str) {
        lock(&self.inner.metadata).topics.remove(topic);
    }

    /// Cached metadata of `topic`, fetched if absent. Fails with the topic's error code.
    pub async fn topic_metadata(&self, topic: &str) -> Result<TopicMetadata> {
        {
            let cache = lock(&self.inner.metadata);
            let fresh = cache.fetched.get(topic).is_some_and(|at| at.elapsed() < self.inner.config.metadata_max_age);
            match cache.topics.get(topic) {
                Some(t) if fresh => return Ok(t.clone()),
                _ => {}
            }
        }
        let meta = self.fetch_metadata(&[topic.to_string()]).await?;
        let found = meta.topics.into_iter().find(|t| t.name == topic);
        match found {
            Some(t) if t.error == ErrorCode::None => Ok(t),
            Some(t) if t.error == ErrorCode::UnknownTopic => {
                Err(ClientError::server(t.error, Some(format!("topic {topic} does not exist"))))
            }
            Some(t) => Err(ClientError::server(t.error, Some(format!("topic {topic}")))),
            None => Err(ClientError::server(ErrorCode::UnknownTopic, Some(format!("topic {topic} does not exist")))),
        }
    }

    /// Asks the reader of `topic`/`partition` (by [`ClientConfig::read_preference`]) for
    /// the offset matching `spec`, retrying transient failures.
    pub async fn list_offset(&self, topic: &str, partition: u32, spec: OffsetSpec) -> Result<u64> {
        let request = Request::ListOffsets(ListOffsetsRequest {
            partitions: vec![ListOffsetsPartition { topic: topic.to_string(), partition, spec }],
        });
        let call = || async {
            let (header, _) = self.call_partition_read(topic, partition, request.clone()).await?;
            let Response::ListOffsets(resp) = header.response else {
                return Err(ClientError::UnexpectedResponse("list offsets"));
            };
            match resp.partitions.into_iter().find(|p| p.topic == topic && p.partition == partition) {
                Some(p) if p.error == ErrorCode::None => Ok(p.offset),
                Some(p) => {
                    // Partition-level routing errors (NOT_OWNER after a reconfiguration) retry too.
                    let e = ClientError::server(p.error, Some(format!("{topic}/{partition}")));
                    self.note_partition_error(topic, &e);
                    Err(e)
                }
                None => Err(ClientError::UnexpectedResponse("list offsets reply without our partition")),
            }
        };
        self.retry_idempotent(call).await
    }

    /// Number of partitions of `topic`.
    pub async fn partition_count(&self, topic: &str) -> Result<u32> {
        Ok(self.topic_metadata(topic).await?.partitions.len() as u32)
    }

    /// The address to send produces for `topic`/`partition` to: the chain head's owner
    /// shard port, or its public port when shard ports are off (see [`crate::route`]).
    pub async fn partition_addr(&self, topic: &str, partition: u32) -> Result<SocketAddr> {
        let meta = self.topic_metadata(topic).await?;
        let part = partition_meta(&meta, partition)?;
        let route = leader_route(&lock(&self.inner.metadata).nodes, part, self.inner.config.use_shard_ports);
        self.route_addr(route).await
    }

    /// The address to send fetches and list-offsets for `topic`/`partition` to, by
    /// [`ClientConfig::read_preference`].
    pub async fn read_addr(&self, topic: &str, partition: u32) -> Result<SocketAddr> {
        let meta = self.topic_metadata(topic).await?;
        let part = partition_meta(&meta, partition)?;
        let c = &self.inner.config;
        let route = read_route(
            &lock(&self.inner.metadata).nodes,
            topic,
            part,
            c.read_preference,
            &self.near(),
            c.use_shard_ports,
        );
        self.route_addr(route).await
    }

    /// Where this client is: its bootstrap node (id from the handshake) and host.
    fn near(&self) -> Near {
        let node_id = lock(&self.inner.node_ids).get(&self.inner.bootstrap).copied();
        Near { node_id, host: self.inner.bootstrap.ip().to_string() }
    }

    async fn route_addr(&self, route: Option<Route>) -> Result<SocketAddr> {
        match route {
            Some(r) => resolve(&r.addr()).await,
            // The node is not among known nodes: go through the bootstrap, which forwards.
            None => Ok(self.inner.bootstrap),
        }
    }

    /// The public address of node `node_id` from the cached metadata.
    pub async fn node_addr(&self, node_id: u32) -> Option<SocketAddr> {
        let node = lock(&self.inner.metadata).nodes.get(&node_id).cloned()?;
        resolve(&format!("{}:{}", node.host, node.port)).await.ok()
    }

    /// Sends `request` to node `node_id`'s public port, waiting at most `timeout`.
    pub async fn call_node_timeout(&self, node_id: u32, request: Request, timeout: Duration) -> Result<Reply> {
        let addr = self.node_addr(node_id).await.ok_or_else(|| ClientError::BadAddress {
            addr: format!("node {node_id}"),
            reason: "unknown node".into(),
        })?;
        let conn = self.connection(addr).await?;
        conn.send_timeout(request, &[], timeout).await?.wait().await
    }

    /// Reacts to a failed partition request: drops routing state when the error says so.
    pub fn note_partition_error(&self, topic: &str, err: &ClientError) {
        if err.needs_metadata_refresh() {
            self.invalidate_topic(topic);
        }
    }

    /// Sends a partition request to the partition's chain head (see [`Client::partition_addr`]).
    pub async fn call_partition(&self, topic: &str, partition: u32, request: Request, payload: Bytes) -> Result<Reply> {
        let addr = self.partition_addr(topic, partition).await?;
        let result = self.call(addr, request, &payload).await;
        if let Err(e) = &result {
            self.note_partition_error(topic, e);
        }
        result
    }

    /// Sends a read (fetch, list offsets) to the replica [`Client::read_addr`] picks.
    pub async fn call_partition_read(&self, topic: &str, partition: u32, request: Request) -> Result<Reply> {
        let addr = self.read_addr(topic, partition).await?;
        tracing::trace!(topic, partition, %addr, "read");
        let result = self.call(addr, request, &[]).await;
        if let Err(e) = &result {
            self.note_partition_error(topic, e);
        }
        result
    }

    /// Whether the cached metadata says `topic`/`partition` is replicated (a chain of more
    /// than one member, or any epoch > 0, i.e. a cluster-managed chain); `None` if not cached.
    pub fn cached_replicated(&self, topic: &str, partition: u32) -> Option<bool> {
        let cache = lock(&self.inner.metadata);
        let part = partition_meta(cache.topics.get(topic)?, partition).ok()?;
        Some(part.replicas.len() > 1 || part.epoch > 0)
    }

    /// Node ids of the nodes in the cached metadata, sorted.
    pub fn known_nodes(&self) -> Vec<u32> {
        let mut ids: Vec<u32> = lock(&self.inner.metadata).nodes.keys().copied().collect();
        ids.sort_unstable();
        ids
    }
}

/// The metadata of `partition` in `topic`.
pub(crate) fn partition_meta(topic: &TopicMetadata, partition: u32) -> Result<&PartitionMetadata> {
    topic
        .partitions
        .iter()
        .find(|p| p.partition == partition)
        .ok_or_else(|| ClientError::NoSuchPartition { topic: topic.name.clone(), partition })
}

/// Resolves `host:port` to the first socket address.
pub(crate) async fn resolve(addr: &str) -> Result<SocketAddr> {
    if let Ok(a) = addr.parse::<SocketAddr>() {
        return Ok(a);
    }
    let bad = |reason: String| ClientError::BadAddress { addr: addr.to_string(), reason };
    let mut addrs = tokio::net::lookup_host(addr).await.map_err(|e| bad(e.to_string()))?;
    addrs.next().ok_or_else(|| bad("no address found".to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn topic(epochs_heads: &[(u64, u32)]) -> TopicMetadata {
        let partitions = epochs_heads
            .iter()
            .enumerate()
            .map(|(i, &(epoch, head))| PartitionMetadata {
                partition: i as u32,
                error: ErrorCode::None,
                leader_node: head,
                leader_shard: 0,
                replicas: vec![head, 9],
                epoch,
                log_start_offset: 0,
                log_end_offset: 100 + epoch,
                commit_offset: 0,
                preferred_leader: 0,
            })
            .collect();
        TopicMetadata { name: "t".to_string(), error: ErrorCode::None, partitions }
    }

    #[tokio::test]
    async fn an_older_chain_from_a_lagging_node_never_replaces_a_newer_one() {
        let mut cache = MetadataCache::default();
        let memory = Duration::from_secs(15);
        let mut newest = topic(&[(3, 2), (1, 1)]);
        cache.merge_chains(&mut newest, memory);
        // A resumed node still believes epoch 1 with itself as head for partition 0, while
        // partition 1 really moved on (epoch 2).
        let mut stale = topic(&[(1, 1), (2, 5)]);
        cache.merge_chains(&mut stale, memory);
        let p0 = &stale.partitions[0];
        assert_eq!((p0.epoch, p0.leader_node, p0.replicas.clone()), (3, 2, vec![2, 9]), "kept the newer chain");
        assert_eq!(p0.log_end_offset, 101, "offsets still come from the answer");
        assert_eq!((stale.partitions[1].epoch, stale.partitions[1].leader_node), (2, 5), "newer epochs are taken");
        // Remembered chains expire: a re-created topic (epochs restart at 1) is not pinned.
        let mut recreated = topic(&[(1, 7)]);
        cache.merge_chains(&mut recreated, Duration::ZERO);
        assert_eq!(recreated.partitions[0].leader_node, 7);
    }
}

/// Runs a SCRAM exchange on a fresh connection (see [`crate::auth`]).
async fn authenticate(conn: &Connection, credentials: &crate::auth::Credentials) -> Result<()> {
    use strand_wire::msg::AuthenticateRequest;
    let step = |auth_bytes: Vec<u8>| {
        Request::Authenticate(AuthenticateRequest { mechanism: credentials.mechanism.name().to_string(), auth_bytes })
    };
    let challenge = |header: strand_wire::msg::ResponseHeader| match header.response {
        Response::Authenticate(r) => Ok(r),
        _ => Err(ClientError::UnexpectedResponse("authenticate")),
    };
    let (mut scram, first) = crate::auth::ScramClient::start(credentials)?;
    let server_first = challenge(conn.call(step(first), &[]).await?.0)?;
    let last = scram.answer(&server_first.auth_bytes)?;
    let done = challenge(conn.call(step(last), &[]).await?.0)?;
    scram.verify(&done.auth_bytes)?;
    tracing::debug!(user = %done.principal, "authenticated");
    Ok(())
}
