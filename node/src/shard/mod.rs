//! Shards: one glommio executor per core, each owning the partitions that
//! `strand_core::placement::owner_shard` gives it.
//!
//! - [`Shard`]: the per-core state (`Rc`, never crosses threads): its partitions (one
//!   map of `crate::partition::Partition`, local or chain replicas), its copy of the topic
//!   table, its inbox of cross-shard calls, shutdown state.
//! - `ops`: what a shard does to its own partitions (produce, fetch with
//!   long-poll, list offsets); `dispatch`: one request → one reply, routing each
//!   partition to its owner (local call, or a bounded cross-shard call).
//! - `cluster`, `cluster_admin`: the view-following reconcile task and cluster admin
//!   answers; `groups`: the group coordinator's shard side. (Start-up is `crate::server`.)
//!
//! Invariants: a partition is open on exactly its owner shard; produce requests reach
//! each partition's sequencing point (`Partition::append`, synchronous) in arrival order
//! (per connection and per inbox: the first poll of a request runs before the next is
//! read, see `join`); the data path takes
//! no lock (the registry mutex is control plane: create/delete/list); a shard stops
//! accepting, then waits for in-flight appends, then closes its logs.

pub mod admission;
pub mod cluster;
pub mod cluster_admin;
pub mod dispatch;
pub mod forward;
mod groups;
pub mod join;
pub mod ops;
pub mod produce_checks;
pub mod registry;
mod topic_admin;

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::rc::Rc;
use std::sync::atomic::AtomicU32;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use strand_core::placement::{owner_shard, ShardId};
use strand_wire::ErrorCode;
use tracing::{info, warn};

use crate::config::NodeConfig;
use crate::log::PartitionLog;
use crate::metrics::{NodeMetrics, PartitionGauge, ShardMetrics};
use crate::notify::LocalNotify;
use crate::partition::Partition;
use crate::topic::TopicConfig;
use forward::{ShardAnswer, ShardCall, ShardMsg};
use registry::TopicRegistry;

/// Ports every shard bound, known once all shards started.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BoundPorts {
    pub public: u16,
    pub admin: u16,
    /// `shards[s]` = shard `s`'s fast-path port.
    pub shards: Vec<u16>,
    /// `replication[s]` = shard `s`'s replication listener (cluster mode; else empty).
    pub replication: Vec<u16>,
    /// The Kafka-protocol port; `None` = off.
    pub kafka: Option<u16>,
}

/// State shared by all shards and the admin thread (control plane only).
#[derive(Debug)]
pub struct NodeShared {
    pub config: NodeConfig,
    pub registry: Mutex<TopicRegistry>,
    pub inboxes: Vec<flume::Sender<ShardMsg>>,
    /// Each shard's inbox for group requests forwarded to its coordinator.
    pub group_inboxes: Vec<flume::Sender<crate::groups::GroupMsg>>,
    pub metrics: Arc<NodeMetrics>,
    pub ports: OnceLock<BoundPorts>,
    pub connections: AtomicU32,
    /// Open client connections per source IP (admission, see `crate::sources`).
    pub connection_sources: Arc<crate::sources::SourceTable>,
    /// Producer ids issued lately (InitProducerId draws them at random).
    pub producer_ids: produce_checks::IssuedProducerIds,
    /// The control plane in cluster mode (`--etcd`); `None` on a single node.
    pub control: Option<crate::control::ControlHandle>,
    /// Byte-rate quotas and every principal's meters.
    pub quotas: crate::quota::QuotaRegistry,
    /// TLS of the client-facing ports (`--tls-cert`); `None` = plaintext.
    pub tls: Option<Arc<crate::tls::TlsServer>>,
    /// Mutual TLS of the replication links (`--cluster-tls-*`); `None` = plain TCP.
    pub cluster_tls: Option<Arc<crate::replication::tls::LinkTls>>,
    /// Users, ACLs and the authentication settings (`crate::security`).
    pub security: crate::security::Security,
}

/// One shard's state.
pub struct Shard {
    pub id: ShardId,
    pub shared: Arc<NodeShared>,
    pub metrics: Arc<ShardMetrics>,
    /// This shard's copy of the topic table: name → partition count.
    topics: RefCell<BTreeMap<String, u32>>,
    partitions: RefCell<HashMap<(String, u32), Rc<Partition>>>,
    stopping: Cell<bool>,
    /// Notified when shutdown begins.
    pub stop: Rc<LocalNotify>,
    inflight_appends: Cell<u32>,
    appends_idle: Rc<LocalNotify>,
    /// The consumer-group coordinator of the groups placed on this shard.
    pub groups: crate::groups::GroupHost,
    /// Replicas and the view's topics in cluster mode; `None` on a single node.
    cluster: Option<cluster::ClusterShard>,
}

/// How long closing or deleting a partition's log waits for tasks still holding it.
const LOG_RELEASE_WAIT: Duration = Duration::from_secs(5);
/// Longest a shard waits for in-flight appends at shutdown.
const SHUTDOWN_APPEND_WAIT: Duration = Duration::from_secs(10);
/// How often partition offsets are published to the metrics.
const METRICS_PUBLISH_INTERVAL: Duration = Duration::from_secs(1);

/// Why a shard could not start, stop, open or delete a topic's partitions cleanly.
#[derive(Debug, thiserror::Error)]
pub enum ShardError {
    #[error("shard {shard}: cannot open partition {topic}/{partition}: {source}")]
    Open { shard: u16, topic: String, partition: u32, source: OpenError },
    #[error("shard {shard}: {source}")]
    Config { shard: u16, source: crate::topic::TopicConfigError },
    #[error("shard {shard}: {source}")]
    InUse { shard: u16, source: LogInUse },
    #[error("shard {shard}: cannot delete {topic}: {source}")]
    Delete { shard: u16, topic: String, source: crate::log::LogError },
    #[error("shard {shard}: {reason}")]
    Other { shard: u16, reason: String },
}

/// Why a partition's log could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("creating its directory: {0}")]
    Dir(std::io::Error),
    #[error(transparent)]
    Log(#[from] crate::log::LogError),
}

impl Shard {
    /// A shard with no partitions open yet.
    pub fn new(id: ShardId, shared: Arc<NodeShared>) -> Rc<Self> {
        let metrics = shared.metrics.shards[usize::from(id.0)].clone();
        let offsets_partitions = shared
            .registry
            .lock()
            .ok()
            .and_then(|reg| reg.topics().get(crate::groups::OFFSETS_TOPIC).map(|t| t.partitions))
            .unwrap_or(u32::from(shared.config.shards));
        Rc::new(Shard {
            id,
            metrics,
            topics: RefCell::new(BTreeMap::new()),
            partitions: RefCell::new(HashMap::new()),
            stopping: Cell::new(false),
            stop: Rc::new(LocalNotify::default()),
            inflight_appends: Cell::new(0),
            appends_idle: Rc::new(LocalNotify::default()),
            groups: crate::groups::GroupHost::new(offsets_partitions, shared.config.group_limits.clone()),
            cluster: shared
                .control
                .clone()
                .map(|control| cluster::ClusterShard::new(control, shared.cluster_tls.clone())),
            shared,
        })
    }

    /// Shard count of the node.
    pub fn shard_count(&self) -> u16 {
        self.shared.config.shards
    }

    /// Whether shutdown has begun.
    pub fn is_stopping(&self) -> bool {
        self.stopping.get()
    }

    /// Owner shard of a partition.
    pub fn owner(&self, topic: &str, partition: u32) -> ShardId {
        owner_shard(topic, partition, self.shard_count())
    }

    /// Partition count of a topic per this shard's copy of the registry.
    pub fn topic_partitions(&self, topic: &str) -> Option<u32> {
        self.topics.borrow().get(topic).copied()
    }

    /// Checks a partition exists; `Ok(owner)`.
    pub fn route(&self, topic: &str, partition: u32) -> Result<ShardId, ErrorCode> {
        match self.topic_partitions(topic) {
            None => Err(ErrorCode::UnknownTopic),
            Some(count) if partition >= count => Err(ErrorCode::UnknownPartition),
            Some(_) => Ok(self.owner(topic, partition)),
        }
    }

    /// A partition this shard owns and serves: `NotOwner` if another shard owns it, or (in
    /// cluster mode) this node holds no replica of it.
    pub fn partition(&self, topic: &str, partition: u32) -> Result<Rc<Partition>, ErrorCode> {
        let owner = self.route(topic, partition)?;
        if owner != self.id {
            return Err(ErrorCode::NotOwner);
        }
        let missing = if self.cluster.is_some() { ErrorCode::NotOwner } else { ErrorCode::UnknownPartition };
        self.partitions.borrow().get(&(topic.to_string(), partition)).cloned().ok_or(missing)
    }

    /// The partition this shard holds for `topic`/`partition`, whatever the topic table says
    /// (the cluster's internal offsets topic has no entry there).
    pub fn held(&self, topic: &str, partition: u32) -> Option<Rc<Partition>> {
        self.partitions.borrow().get(&(topic.to_string(), partition)).cloned()
    }

    /// Every partition this shard holds.
    pub fn all_partitions(&self) -> Vec<Rc<Partition>> {
        self.partitions.borrow().values().cloned().collect()
    }

    fn partition_dir(&self, topic: &str, partition: u32) -> PathBuf {
        self.shared.config.data_dir.join("topics").join(topic).join(partition.to_string())
    }

    /// Opens the partitions of `topic` this shard owns, then publishes the topic locally.
    pub async fn open_topic(&self, topic: &TopicConfig) -> Result<(), ShardError> {
        self.prepare_topic(topic).await?;
        self.topics.borrow_mut().insert(topic.name.clone(), topic.partitions);
        self.groups_topic_changed(&topic.name, topic.partitions);
        Ok(())
    }

    /// Opens the partitions of `topic` this shard owns (those open already are kept) without
    /// publishing the topic: requests still find it unknown. A failure leaves the partitions
    /// opened so far in place; the caller rolls back with `delete_topic`.
    pub async fn prepare_topic(&self, topic: &TopicConfig) -> Result<(), ShardError> {
        let (name, partitions) = (topic.name.as_str(), topic.partitions);
        let log_config = registry::topic_log_config(&self.shared.config.log, &topic.name, &topic.configs)
            .map_err(|source| ShardError::Config { shard: self.id.0, source })?;
        let topic = name;
        for p in (0..partitions).filter(|p| self.owner(topic, *p) == self.id) {
            if self.partitions.borrow().contains_key(&(topic.to_string(), p)) {
                continue;
            }
            let dir = self.partition_dir(topic, p);
            let open_err =
                |source: OpenError| ShardError::Open { shard: self.id.0, topic: topic.into(), partition: p, source };
            crate::log::create_dir_all(&dir).await.map_err(|e| open_err(OpenError::Dir(e)))?;
            let log = PartitionLog::open(&dir, log_config.clone()).await.map_err(|e| open_err(e.into()))?;
            let part = Partition::open_local(topic.to_string(), p, log).await;
            self.partitions.borrow_mut().insert((topic.to_string(), p), part);
        }
        Ok(())
    }

    /// Applies `topic`'s roll and retention limits to the partitions of it this shard
    /// holds (a config change takes effect without reopening: the next roll decision and
    /// retention pass use them).
    pub fn apply_topic_config(&self, topic: &TopicConfig) -> Result<(), ShardError> {
        let log_config = registry::topic_log_config(&self.shared.config.log, &topic.name, &topic.configs)
            .map_err(|source| ShardError::Config { shard: self.id.0, source })?;
        let limits = log_config.limits();
        for part in self.all_partitions().iter().filter(|p| p.topic() == topic.name) {
            part.log().set_limits(limits);
        }
        Ok(())
    }

    /// Forgets `topic` and deletes the partitions this shard owns.
    pub async fn delete_topic(&self, topic: &str) -> Result<(), ShardError> {
        self.topics.borrow_mut().remove(topic);
        self.groups_topic_changed(topic, 0);
        let shard = self.id.0;
        for log in self.remove_partitions(|t| t == topic).await {
            let log = log.map_err(|source| ShardError::InUse { shard, source })?;
            log.delete().await.map_err(|source| ShardError::Delete { shard, topic: topic.to_string(), source })?;
        }
        Ok(())
    }

    /// Marks an append as started; the guard marks it finished when dropped.
    pub fn append_started(self: &Rc<Self>) -> AppendGuard {
        self.inflight_appends.set(self.inflight_appends.get() + 1);
        AppendGuard { shard: self.clone() }
    }

    /// Serves cross-shard calls until the inbox closes or shutdown is asked.
    pub async fn serve_inbox(self: Rc<Self>, inbox: flume::Receiver<ShardMsg>) {
        while let Ok(msg) = inbox.recv_async().await {
            if matches!(msg.call, ShardCall::Shutdown) {
                self.begin_shutdown();
                if let Some(reply) = msg.reply {
                    let _ = reply.send_async(ShardAnswer::Done(Ok(()))).await;
                }
                continue;
            }
            let shard = self.clone();
            let mut call = Box::pin(async move {
                let answer = shard.answer(msg.call).await;
                if let Some(reply) = msg.reply {
                    let _ = reply.send_async(answer).await;
                }
            });
            // Calls are sequenced in inbox order: a produce checks sequences and takes its
            // offsets in this first poll, before the next call is received.
            if futures_lite::future::poll_once(&mut call).await.is_none() {
                glommio::spawn_local(call).detach();
            }
        }
    }

    /// Begins shutdown: listeners stop, new requests get `SHUTTING_DOWN`, duplicates waiting
    /// for their original are answered (appends in flight finish, see `finish`).
    pub fn begin_shutdown(&self) {
        if !self.stopping.replace(true) {
            info!(shard = self.id.0, "shutdown requested");
            self.stop.notify_all();
            for part in self.all_partitions() {
                part.retire();
            }
        }
    }

    /// Waits for in-flight appends (bounded), then flushes and closes every log.
    pub async fn finish(&self) -> Result<(), ShardError> {
        let deadline = std::time::Instant::now() + SHUTDOWN_APPEND_WAIT;
        while self.inflight_appends.get() > 0 {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            if left.is_zero() {
                warn!(shard = self.id.0, inflight = self.inflight_appends.get(), "appends still running at shutdown");
                break;
            }
            futures_lite::future::or(self.appends_idle.listen(), glommio::timer::sleep(left)).await;
        }
        let mut failed = Vec::new();
        for log in self.remove_partitions(|_| true).await {
            let closed = match log {
                Ok(log) => {
                    let name = log.dir().display().to_string();
                    log.close().await.map_err(|e| format!("{name}: {e}"))
                }
                Err(e) => Err(e.to_string()),
            };
            if let Err(e) = closed {
                failed.push(e);
            }
        }
        if failed.is_empty() {
            Ok(())
        } else {
            Err(ShardError::Other { shard: self.id.0, reason: format!("closing logs failed: {}", failed.join("; ")) })
        }
    }

    /// Publishes partition offsets every second and applies retention periodically, until shutdown.
    pub async fn housekeeping(self: Rc<Self>) {
        let retention_every = Duration::from_millis(self.shared.config.retention_check_ms);
        let mut last_retention = std::time::Instant::now();
        while !self.is_stopping() {
            futures_lite::future::or(self.stop.listen(), glommio::timer::sleep(METRICS_PUBLISH_INTERVAL)).await;
            if self.is_stopping() {
                break;
            }
            if last_retention.elapsed() >= retention_every {
                last_retention = std::time::Instant::now();
                self.apply_retention().await;
            }
            // Cheap when nothing changed: it scans only what was appended since.
            self.clean_offsets_logs().await;
            self.publish_gauges();
        }
    }

    async fn apply_retention(&self) {
        let now_ms = now_ms();
        // Replicas trim only committed data (`Partition::apply_retention`).
        for part in self.all_partitions() {
            let (topic, partition) = (part.topic(), part.partition());
            match part.apply_retention(now_ms).await {
                Ok(0) => {}
                Ok(n) => {
                    let log_start = part.log().log_start_offset();
                    info!(topic, partition, segments = n, log_start, "retention deleted segments")
                }
                Err(e) => warn!(topic, partition, error = %e, "retention failed"),
            }
        }
    }

    /// Copies every partition's offsets into the metrics snapshot.
    pub fn publish_gauges(&self) {
        let mut gauges: Vec<PartitionGauge> = self
            .partitions
            .borrow()
            .values()
            .map(|p| PartitionGauge {
                topic: p.topic().to_string(),
                partition: p.partition(),
                log_start_offset: p.log().log_start_offset(),
                log_end_offset: p.log().log_end_offset(),
                size_bytes: p.log().size_bytes(),
                set_aside_bytes: p.log().set_aside_bytes(),
                bytes_read: p.bytes_read(),
                replica: p.replica().map(|r| replica_gauge(r)),
            })
            .collect();
        gauges.sort_by(|a, b| (&a.topic, a.partition).cmp(&(&b.topic, b.partition)));
        self.metrics.publish_partitions(gauges);
    }
}

/// The chain as `replica` sees it, for `/metrics` (a binary search; no IO).
fn replica_gauge(replica: &crate::replication::ReplicatedPartition) -> crate::metrics::ReplicaGauge {
    let config = replica.config();
    crate::metrics::ReplicaGauge {
        epoch: config.epoch.0,
        chain_length: u32::try_from(config.members.len()).unwrap_or(u32::MAX),
        successor: replica.successor_lag().map(|lag| crate::metrics::SuccessorGauge {
            node: lag.node.0,
            learner: lag.is_learner,
            lag_records: lag.records,
            lag_bytes: lag.bytes,
            lag_ms: lag.since_caught_up_ms,
        }),
    }
}

/// Counts one in-flight append; wakes shutdown when the last one ends.
pub struct AppendGuard {
    shard: Rc<Shard>,
}

impl Drop for AppendGuard {
    fn drop(&mut self) {
        let left = self.shard.inflight_appends.get() - 1;
        self.shard.inflight_appends.set(left);
        if left == 0 {
            self.shard.appends_idle.notify_all();
        }
    }
}

/// A partition's log that requests or replication tasks still held when it was to be closed.
#[derive(Debug, thiserror::Error)]
#[error("partition {topic}/{partition} still in use after {:?}; left open", LOG_RELEASE_WAIT)]
pub struct LogInUse {
    pub topic: String,
    pub partition: u32,
}

impl Shard {
    /// Stops serving the partitions whose topic matches — the single path for shutdown,
    /// topic deletion and a cluster topic leaving the view — and takes sole ownership of
    /// their logs, waiting (bounded) for tasks that still hold them.
    pub(crate) async fn remove_partitions(
        &self,
        matches: impl Fn(&str) -> bool,
    ) -> Vec<Result<PartitionLog, LogInUse>> {
        let removed: Vec<Rc<Partition>> = {
            let mut map = self.partitions.borrow_mut();
            let keys: Vec<_> = map.keys().filter(|(t, _)| matches(t)).cloned().collect();
            keys.into_iter().filter_map(|k| map.remove(&k)).collect()
        };
        let mut logs = Vec::with_capacity(removed.len());
        for part in removed {
            if let (Some(cluster), Some(_)) = (self.cluster(), part.replica()) {
                cluster.replicator.remove(part.topic(), part.partition());
            }
            part.retire();
            let (topic, partition, mut log) = (part.topic().to_string(), part.partition(), part.log().clone());
            drop(part);
            let deadline = std::time::Instant::now() + LOG_RELEASE_WAIT;
            logs.push(loop {
                match Rc::try_unwrap(log) {
                    Ok(owned) => break Ok(owned),
                    Err(shared) if std::time::Instant::now() < deadline => log = shared,
                    Err(_) => {
                        warn!(%topic, partition, "partition log still in use; left open");
                        break Err(LogInUse { topic, partition });
                    }
                }
                glommio::timer::sleep(Duration::from_millis(10)).await;
            });
        }
        logs
    }
}

/// Milliseconds since the Unix epoch (the shell reads the clock; cores get it passed in).
pub fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

#[cfg(test)]
mod tests {
    use super::{OpenError, ShardError};

    /// A shard's error names the shard once, and the node reports it as is: no caller
    /// adds `shard N: ` again (`shard 0: shard 0: …`).
    #[test]
    fn shard_error_names_the_shard_once() {
        let errors = [
            ShardError::Open {
                shard: 3,
                topic: "events".into(),
                partition: 1,
                source: OpenError::Dir(std::io::Error::from_raw_os_error(libc::EEXIST)),
            },
            ShardError::Other { shard: 3, reason: "DMA probe: EINVAL".into() },
        ];
        for e in errors {
            let line = e.to_string();
            assert!(line.starts_with("shard 3: "), "{line}");
            assert_eq!(line.matches("shard").count(), 1, "{line}");
        }
    }
}
