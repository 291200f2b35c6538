//! [`Client`]: the shared entry point. It owns the bootstrap address, a
//! metadata cache (topic → partitions with their owner node and shard) and a
//! pool of connections keyed by node port, so requests for a partition go
//! straight to its owner shard's fast-path port.
//!
//! Invariants: at most one live connection per address; a failed connect is
//! retried no sooner than its backoff (doubling from `reconnect_backoff_min`
//! to `reconnect_backoff_max`, reset by a success); metadata for a topic is
//! dropped whenever a request on it fails with a routing error, so the next
//! lookup asks the node again.

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::Bytes;
use strand_wire::frame::FRAME_LEN_MAX_DEFAULT;
use strand_wire::msg::{
    HandshakeRequest, MetadataRequest, MetadataResponse, NodeInfo, PartitionMetadata, Request, Response, TopicMetadata,
    PROTOCOL_VERSION,
};
use strand_wire::ErrorCode;
use tokio::time::Instant;

use crate::conn::{Connection, Reply};
use crate::error::{ClientError, Result};

/// Attempts of an idempotent request (metadata, list offsets) before its error is returned.
pub const IDEMPOTENT_ATTEMPTS_MAX: u32 = 5;

/// Settings shared by everything built on one [`Client`].
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// Any node's public address, `host:port`.
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
}

#[derive(Clone, Copy)]
struct Backoff {
    retry_at: Instant,
    delay: Duration,
}

type Slot = Arc<tokio::sync::Mutex<Option<Arc<Connection>>>>;

struct Inner {
    config: ClientConfig,
    bootstrap: SocketAddr,
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
    pub async fn connect(config: ClientConfig) -> Result<Self> {
        let bootstrap = resolve(&config.bootstrap).await?;
        let client = Client {
            inner: Arc::new(Inner {
                config,
                bootstrap,
                metadata: Mutex::new(MetadataCache::default()),
                slots: Mutex::new(HashMap::new()),
                backoff: Mutex::new(HashMap::new()),
            }),
        };
        client.connection(bootstrap).await?;
        Ok(client)
    }

    /// The settings this client was built with.
    pub fn config(&self) -> &ClientConfig {
        &self.inner.config
    }

    /// The resolved bootstrap address.
    pub fn bootstrap_addr(&self) -> SocketAddr {
        self.inner.bootstrap
    }

    /// Sends `request` to the bootstrap node and waits for its response.
    pub async fn call_bootstrap(&self, request: Request, payload: &[u8]) -> Result<Reply> {
        self.call(self.inner.bootstrap, request, payload).await
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
        let conn = Connection::open(addr, c.connect_timeout, c.request_timeout, c.frame_len_max).await?;
        let hello = HandshakeRequest { protocol_version: PROTOCOL_VERSION, client_id: c.client_id.clone() };
        match conn.call(Request::Handshake(hello), &[]).await {
            Ok((header, _)) => match header.response {
                Response::Handshake(h)
                    if (h.protocol_version_min..=h.protocol_version_max).contains(&PROTOCOL_VERSION) =>
                {
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
    /// timeout, `NOT_OWNER`, …) up to [`IDEMPOTENT_ATTEMPTS_MAX`] times with backoff.
    pub async fn retry_idempotent<T, F, Fut>(&self, mut op: F) -> Result<T>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T>>,
    {
        let c = &self.inner.config;
        let mut backoff = c.reconnect_backoff_min;
        let mut attempt = 1;
        loop {
            match op().await {
                Err(e) if e.is_retriable() && attempt < IDEMPOTENT_ATTEMPTS_MAX => {
                    tracing::debug!(attempt, error = %e, "retrying idempotent request");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(c.reconnect_backoff_max);
                    attempt += 1;
                }
                other => return other,
            }
        }
    }

    /// Asks the bootstrap node for metadata of `topics` (empty = all) and caches it.
    /// Retries transient failures (see [`Client::retry_idempotent`]).
    pub async fn fetch_metadata(&self, topics: &[String]) -> Result<MetadataResponse> {
        let request = Request::Metadata(MetadataRequest { topics: topics.to_vec() });
        let (header, _) = self.retry_idempotent(|| self.call_bootstrap(request.clone(), &[])).await?;
        let Response::Metadata(meta) = header.response else {
            return Err(ClientError::UnexpectedResponse("metadata"));
        };
        let mut cache = lock(&self.inner.metadata);
        for node in &meta.nodes {
            cache.nodes.insert(node.node_id, node.clone());
        }
        for topic in &meta.topics {
            if topic.error == ErrorCode::None {
                cache.topics.insert(topic.name.clone(), topic.clone());
            } else {
                cache.topics.remove(&topic.name);
            }
        }
        Ok(meta)
    }

    /// Drops cached metadata of `topic` so the next lookup asks the node.
    pub fn invalidate_topic(&self, topic: &str) {
        lock(&self.inner.metadata).topics.remove(topic);
    }

    /// Cached metadata of `topic`, fetched if absent. Fails with the topic's error code.
    pub async fn topic_metadata(&self, topic: &str) -> Result<TopicMetadata> {
        if let Some(t) = lock(&self.inner.metadata).topics.get(topic) {
            return Ok(t.clone());
        }
        let meta = self.fetch_metadata(&[topic.to_string()]).await?;
        let found = meta.topics.into_iter().find(|t| t.name == topic);
        match found {
            Some(t) if t.error == ErrorCode::None => Ok(t),
            Some(t) => Err(ClientError::server(t.error, Some(format!("topic {topic}: {}", t.error)))),
            None => Err(ClientError::server(ErrorCode::UnknownTopic, Some(format!("unknown topic {topic}")))),
        }
    }

    /// Number of partitions of `topic`.
    pub async fn partition_count(&self, topic: &str) -> Result<u32> {
        Ok(self.topic_metadata(topic).await?.partitions.len() as u32)
    }

    /// The address to send produce/fetch/list-offsets for `topic`/`partition` to: the owner
    /// shard's port on the leader node, or its public port when shard ports are off.
    pub async fn partition_addr(&self, topic: &str, partition: u32) -> Result<SocketAddr> {
        let meta = self.topic_metadata(topic).await?;
        let part = partition_meta(&meta, partition)?;
        let node = lock(&self.inner.metadata).nodes.get(&part.leader_node).cloned();
        let Some(node) = node else {
            // The leader is not among known nodes: go through the bootstrap, which forwards.
            return Ok(self.inner.bootstrap);
        };
        let port = match node.shard_ports.get(usize::from(part.leader_shard)) {
            Some(&port) if self.inner.config.use_shard_ports && port != 0 => port,
            _ => node.port,
        };
        resolve(&format!("{}:{port}", node.host)).await
    }

    /// Reacts to a failed partition request: drops routing state when the error says so.
    pub fn note_partition_error(&self, topic: &str, err: &ClientError) {
        if err.needs_metadata_refresh() {
            self.invalidate_topic(topic);
        }
    }

    /// A cheap clone of the payload-free request path for callers that hold raw bytes.
    pub async fn call_partition(&self, topic: &str, partition: u32, request: Request, payload: Bytes) -> Result<Reply> {
        let addr = self.partition_addr(topic, partition).await?;
        let result = self.call(addr, request, &payload).await;
        if let Err(e) = &result {
            self.note_partition_error(topic, e);
        }
        result
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
