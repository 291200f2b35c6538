//! Cluster mode on one shard (DESIGN §6): the shard's replicas of the partitions it owns
//! and the reconcile task that keeps them in line with the control plane's view.
//!
//! The view is the truth. On every published view (and every [`RECONCILE_EVERY`]) the
//! shard's reconcile task: learns the cluster topics (its topic table, so routing works
//! for them on every shard), opens and starts a [`ReplicatedPartition`] — wrapped in the
//! shard's one [`Partition`] type — for every chain that includes this node and whose
//! partition this shard owns, hands newer chain
//! configurations to running replicas, keeps each replica's peer addresses current
//! (a peer's owner shard's replication listener, from `view.nodes`), stops replicas and
//! deletes logs of topics the view no longer has, and — as tail — reports a caught-up
//! learner to the controller.
//!
//! Invariants: a replica exists only on its partition's owner shard, at most one per
//! partition ([`Replicator`] keyed by topic/partition); cluster topics are never written
//! to the node-local registry (the cluster-wide `__consumer_offsets` gets replicas here but
//! no topic-table entry: shard/groups/cluster.rs serves it); produce, fetch and list
//! offsets take the same `Partition` path as on a single node.

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};
use std::net::{SocketAddr, ToSocketAddrs};
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use strand_core::chain::{ChainConfig, Epoch, NodeId, Role};
use tracing::{info, warn};

use super::Shard;
use crate::control::{ChainRecord, ClusterView, ControlHandle};
use crate::log::PartitionLog;
use crate::partition::{Partition, Replication};
use crate::replication::auth::LinkAuth;
use crate::replication::{LinkPool, Peers, ReplicatedPartition, Replicator};
use crate::topic::{is_internal_topic, topic_log_config, TopicConfig};

/// Longest pause between two reconcile passes (also the in-sync report period).
pub const RECONCILE_EVERY: Duration = Duration::from_millis(200);

/// One shard's cluster-mode state (`Shard::cluster`).
pub struct ClusterShard {
    pub control: ControlHandle,
    me: NodeId,
    /// Routes inbound replication frames to this shard's replicas.
    pub replicator: Rc<Replicator>,
    pool: Rc<LinkPool>,
    /// Mutual TLS of replication links, if on.
    tls: Option<Arc<crate::replication::tls::LinkTls>>,
    /// Cluster topics this shard knows (from the view).
    topics: RefCell<BTreeMap<String, TopicConfig>>,
}

impl ClusterShard {
    /// Cluster state for a shard of node `control.node_id()`.
    pub fn new(control: ControlHandle, tls: Option<Arc<crate::replication::tls::LinkTls>>) -> Self {
        let auth = LinkAuth::new(NodeId(control.node_id()), control.cluster_secret()).with_tls(tls.clone());
        ClusterShard {
            me: NodeId(control.node_id()),
            control,
            replicator: Replicator::new(),
            pool: LinkPool::new(auth),
            tls,
            topics: RefCell::new(BTreeMap::new()),
        }
    }

    /// This node's identity and secret on replication links.
    /// What the replication listener calls when a peer's connection ends: a report to
    /// the control plane, which probes the peer (fast failure detection).
    pub fn peer_lost_reporter(&self) -> Rc<dyn Fn(NodeId, &'static str)> {
        let control = self.control.clone();
        Rc::new(move |peer: NodeId, reason| control.report_suspect(peer.0, reason))
    }

    pub fn link_auth(&self) -> LinkAuth {
        LinkAuth::new(self.me, self.control.cluster_secret()).with_tls(self.tls.clone())
    }

    /// The replica of `topic`/`partition` on this shard, if any.
    pub fn replica(&self, topic: &str, partition: u32) -> Option<Rc<ReplicatedPartition>> {
        self.replicator.get(topic, partition)
    }

    /// The cluster topics this shard knows.
    pub fn topics(&self) -> Vec<TopicConfig> {
        self.topics.borrow().values().cloned().collect()
    }

    /// "partition t/p: the head is node N at host:port" (for a `NotOwner` answer).
    pub fn head_note(&self, topic: &str, partition: u32) -> String {
        let view = self.control.latest();
        let Some(head) = view.chain(topic, partition).and_then(ChainRecord::head) else {
            return format!("partition {topic}/{partition} has no chain yet");
        };
        match view.nodes.get(&head) {
            Some(n) => format!("partition {topic}/{partition}: the head is node {head} at {}:{}", n.host, n.port),
            None => format!("partition {topic}/{partition}: the head is node {head} (not registered)"),
        }
    }

    /// Whether this node may serve reads of the replica (a member or learner of its chain).
    pub fn serves(replica: &ReplicatedPartition) -> bool {
        !matches!(replica.role(), Role::Outside)
    }

    fn peer_addrs(&self, view: &ClusterView, topic: &str, partition: u32, chain: &ChainRecord) -> PeerAddrs {
        let mut addrs = HashMap::new();
        for node in chain.members.iter().chain(chain.learner.iter()).filter(|n| **n != self.me.0) {
            let resolved = view.nodes.get(node).and_then(|n| n.replication_addr(topic, partition)).and_then(resolve);
            if let Some(addr) = resolved {
                addrs.insert(NodeId(*node), addr);
            }
        }
        addrs
    }
}

type PeerAddrs = HashMap<NodeId, SocketAddr>;

/// Why a replica could not be started or reconfigured.
#[derive(Debug, thiserror::Error)]
pub enum ReplicaError {
    #[error("not in cluster mode")]
    NotClustered,
    #[error("topic config: {0}")]
    Config(#[from] crate::topic::TopicConfigError),
    #[error("{}: {source}", dir.display())]
    Dir { dir: std::path::PathBuf, source: std::io::Error },
    #[error("opening the log: {0}")]
    Log(#[from] crate::log::LogError),
    #[error(transparent)]
    Replication(#[from] crate::replication::ReplicationError),
}

impl ReplicaError {
    /// The OS error code behind this failure, when an OS error of the partition's
    /// directory or log caused it.
    pub fn raw_os_error(&self) -> Option<i32> {
        match self {
            ReplicaError::Dir { source, .. } => source.raw_os_error(),
            ReplicaError::Log(e) => e.raw_os_error(),
            ReplicaError::NotClustered | ReplicaError::Config(_) | ReplicaError::Replication(_) => None,
        }
    }
}

fn resolve(hostport: String) -> Option<SocketAddr> {
    match hostport.to_socket_addrs() {
        Ok(mut addrs) => addrs.next(),
        Err(e) => {
            warn!(addr = %hostport, error = %e, "cannot resolve replication address");
            None
        }
    }
}

impl Shard {
    /// The cluster-mode state, `None` on a single node.
    pub fn cluster(&self) -> Option<&ClusterShard> {
        self.cluster.as_ref()
    }

    /// Reconciles this shard against every new view until shutdown.
    pub async fn reconcile_loop(self: Rc<Self>) {
        let Some(cluster) = self.cluster() else { return };
        let wake = cluster.control.subscribe();
        while !self.is_stopping() {
            let view = cluster.control.latest();
            self.reconcile(&view).await;
            self.report_in_sync();
            let woken = async {
                let _ = wake.recv_async().await;
            };
            let pause = futures_lite::future::or(woken, glommio::timer::sleep(RECONCILE_EVERY));
            futures_lite::future::or(pause, self.stop.listen()).await;
        }
    }

    async fn reconcile(self: &Rc<Self>, view: &Arc<ClusterView>) {
        let Some(cluster) = self.cluster() else { return };
        let gone: Vec<String> =
            cluster.topics.borrow().keys().filter(|t| !view.topics.contains_key(*t)).cloned().collect();
        for name in gone {
            self.drop_cluster_topic(&name).await;
        }
        for topic in view.topics.values() {
            let known = cluster.topics.borrow().get(&topic.name) == Some(topic);
            if !known {
                cluster.topics.borrow_mut().insert(topic.name.clone(), topic.clone());
                // A changed definition (AlterTopicConfig) applies to the running replicas.
                if let Err(e) = self.apply_topic_config(topic) {
                    warn!(shard = self.id.0, topic = %topic.name, error = %e, "topic config not applied");
                }
                // The cluster-wide offsets topic gets replicas but no client data path.
                if is_internal_topic(&topic.name) {
                    continue;
                }
                self.topics.borrow_mut().insert(topic.name.clone(), topic.partitions);
                self.groups_topic_changed(&topic.name, topic.partitions);
            }
        }
        for ((topic, partition), chain) in &view.chains {
            if self.owner(topic, *partition) != self.id || !view.topics.contains_key(topic) {
                continue;
            }
            if let Err(e) = self.reconcile_chain(view, topic, *partition, chain).await {
                // A replica that cannot open its storage must not hold a chain place.
                if e.raw_os_error().is_some_and(crate::fatal::errno_is_fatal) {
                    crate::fatal::stop_node(topic, *partition, &e);
                }
                warn!(shard = self.id.0, %topic, partition, error = %e, "cannot start replica");
            }
        }
    }

    /// Starts, reconfigures or re-addresses the replica of one chain.
    async fn reconcile_chain(
        self: &Rc<Self>,
        view: &ClusterView,
        topic: &str,
        partition: u32,
        chain: &ChainRecord,
    ) -> Result<(), ReplicaError> {
        let Some(cluster) = self.cluster() else { return Ok(()) };
        let addrs = cluster.peer_addrs(view, topic, partition, chain);
        let running =
            self.partitions.borrow().get(&(topic.to_string(), partition)).and_then(|p| match p.replication() {
                Replication::Chain(chain) => Some((chain.replica.clone(), chain.peers.clone())),
                Replication::Local(_) => None,
            });
        if let Some((replica, peers)) = running {
            for (node, addr) in addrs {
                peers.set_addr(node, addr);
            }
            if chain.epoch > replica.config().epoch.0 {
                info!(%topic, partition, epoch = chain.epoch, members = ?chain.members, learner = ?chain.learner, "chain reconfigured");
                replica.handle_config(chain.to_config())?;
            }
            return Ok(());
        }
        if !chain.includes(cluster.me.0) {
            return Ok(());
        }
        let Some(config) = cluster.topics.borrow().get(topic).cloned() else { return Ok(()) };
        let peers = Peers::with_pool(cluster.pool.clone(), addrs);
        let replica = self.start_replica(&config, partition, peers.clone(), chain.to_config()).await?;
        if self.is_stopping() {
            // `finish` may already have collected the replica logs; this replica never served.
            return Ok(());
        }
        cluster.replicator.add(replica.clone());
        let part = Partition::chained(topic.to_string(), partition, replica, peers);
        self.partitions.borrow_mut().insert((topic.to_string(), partition), part);
        info!(%topic, partition, epoch = chain.epoch, members = ?chain.members, learner = ?chain.learner, "replica started");
        Ok(())
    }

    /// Opens the partition's log and starts its replica (restart rule: `epoch_min` is the
    /// chain's epoch in the view read before this incarnation registered).
    async fn start_replica(
        &self,
        topic: &TopicConfig,
        partition: u32,
        peers: Rc<Peers>,
        config: ChainConfig,
    ) -> Result<Rc<ReplicatedPartition>, ReplicaError> {
        let Some(cluster) = self.cluster() else { return Err(ReplicaError::NotClustered) };
        let log_config = topic_log_config(&self.shared.config.log, &topic.name, &topic.configs)?;
        let dir = self.partition_dir(&topic.name, partition);
        crate::log::create_dir_all(&dir).await.map_err(|source| ReplicaError::Dir { dir: dir.clone(), source })?;
        let log = Rc::new(PartitionLog::open(&dir, log_config).await?);
        let epoch_min = Epoch(cluster.control.initial().chain(&topic.name, partition).map_or(0, |c| c.epoch));
        Ok(ReplicatedPartition::start(&topic.name, partition, cluster.me, log, dir, peers, epoch_min, config).await?)
    }

    /// Stops the replicas of a topic the view no longer has and deletes their logs.
    async fn drop_cluster_topic(self: &Rc<Self>, name: &str) {
        let Some(cluster) = self.cluster() else { return };
        cluster.topics.borrow_mut().remove(name);
        self.topics.borrow_mut().remove(name);
        self.groups_topic_changed(name, 0);
        for log in self.remove_partitions(|t| t == name).await.into_iter().flatten() {
            let dir = log.dir().display().to_string();
            if let Err(e) = log.delete().await {
                warn!(topic = name, %dir, error = %e, "deleting a replica log failed");
            }
        }
        info!(shard = self.id.0, topic = name, "cluster topic removed");
    }

    /// As a tail whose learner caught up, tells the controller (repeated while it holds).
    fn report_in_sync(&self) {
        let Some(cluster) = self.cluster() else { return };
        for replica in cluster.replicator.all() {
            if !matches!(replica.role(), Role::Tail | Role::Single) {
                continue;
            }
            let config = replica.config();
            if let Some(learner) = config.learner.filter(|_| replica.learner_in_sync()) {
                let (topic, partition) = replica.id();
                cluster.control.report_in_sync(topic, partition, config.epoch.0, learner.0);
            }
        }
    }
}
