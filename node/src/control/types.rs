//! The control plane's shared data (DESIGN §6): what etcd holds, as the node's shards
//! see it. Plain data plus small pure helpers; the etcd IO lives in the sibling modules.
//!
//! etcd keyspace (all JSON values, under `ControlConfig::prefix`, default `/strand`):
//! - `{prefix}/nodes/{id}` → [`NodeRecord`], attached to the node's lease (vanishes when
//!   the node dies: failure detection is lease expiry).
//! - `{prefix}/topics/{name}` → `TopicConfig`, created once by the node that took the
//!   CreateTopic (transaction: create only if absent).
//! - `{prefix}/chains/{name}/{partition}` → [`ChainRecord`], written only by the elected
//!   controller, each write bumping the epoch.
//! - `{prefix}/insync/{name}/{partition}` → [`InSyncReport`], written by a chain's tail
//!   when its learner caught up; the controller then promotes the learner to tail.
//! - `{prefix}/controller` → the election of the controller (etcd election API).
//! - `{prefix}/cluster-secret` → the replication links' shared secret (hex), created
//!   once by the first node without `--cluster-secret-file` (create-if-absent).
//!
//! Invariants: a chain's epoch only grows; `members` is never empty; a node id is ≥ 1;
//! `incarnations` names, for every member and the learner, the lease id of the node
//! incarnation that was admitted (a restarted node has a new lease id, so the controller
//! sees that the admitted incarnation died even if the restart beat the lease expiry).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use strand_core::chain::{ChainConfig, Epoch, NodeId};
pub use strand_core::control::RebalanceConfig;
use strand_core::placement::{owner_shard, ShardId};

use crate::topic::TopicConfig;

/// A live node as registered in etcd.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeRecord {
    pub node_id: u32,
    /// Host clients and peers use (`--advertise`, default the listen IP).
    pub host: String,
    /// Public port (any request).
    pub port: u16,
    /// `shard_ports[s]`: shard `s`'s fast-path client port.
    pub shard_ports: Vec<u16>,
    /// `replication_ports[s]`: shard `s`'s replication listener.
    pub replication_ports: Vec<u16>,
    /// Admin HTTP port (the console reads peers' `/v1/node` there); 0 from a node that
    /// predates the field.
    #[serde(default)]
    pub admin_port: u16,
    /// Kafka-protocol port (`--kafka-listen`); 0 = off, or a node that predates the field.
    #[serde(default)]
    pub kafka_port: u16,
    /// Lease id of this incarnation (set by the control thread at registration).
    pub incarnation: i64,
    /// The data dir's random token (`node-token` file): a process registering this node
    /// id while the record is live is refused unless it shows the same token (the same
    /// node restarting before its old lease expired).
    #[serde(default)]
    pub token: String,
}

impl NodeRecord {
    /// Number of shards of this node.
    pub fn shards(&self) -> u16 {
        u16::try_from(self.replication_ports.len()).unwrap_or(u16::MAX)
    }

    /// The shard of this node that owns `topic`/`partition`.
    pub fn owner_shard(&self, topic: &str, partition: u32) -> ShardId {
        owner_shard(topic, partition, self.shards().max(1))
    }

    /// `host:port` of the replication listener owning `topic`/`partition` on this node.
    pub fn replication_addr(&self, topic: &str, partition: u32) -> Option<String> {
        let shard = self.owner_shard(topic, partition);
        let port = self.replication_ports.get(usize::from(shard.0))?;
        Some(format!("{}:{port}", self.host))
    }
}

/// One partition's chain as the controller last wrote it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChainRecord {
    pub epoch: u64,
    /// Head first; never empty.
    pub members: Vec<u32>,
    /// A catching-up node fed by the tail, promoted to tail once in sync.
    #[serde(default)]
    pub learner: Option<u32>,
    /// Admitted incarnation (lease id) of every member and of the learner.
    #[serde(default)]
    pub incarnations: BTreeMap<u32, i64>,
    /// The node that should head this chain when it is a healthy member: the head it
    /// was assigned at creation. The controller moves the head back to it (preferred-head
    /// rebalancing, docs/REPLICATION.md). Absent in records written before the field.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preferred: Option<u32>,
}

impl ChainRecord {
    /// The chain core's configuration.
    pub fn to_config(&self) -> ChainConfig {
        ChainConfig {
            epoch: Epoch(self.epoch),
            members: self.members.iter().map(|m| NodeId(*m)).collect(),
            learner: self.learner.map(NodeId),
        }
    }

    /// The head (takes produces).
    pub fn head(&self) -> Option<u32> {
        self.members.first().copied()
    }

    /// Whether `node` is a member or the learner.
    pub fn includes(&self, node: u32) -> bool {
        self.members.contains(&node) || self.learner == Some(node)
    }
}

/// A tail's report that its learner holds everything committed (see
/// `ChainReplica::learner_in_sync`); valid only for that exact epoch and learner.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct InSyncReport {
    pub epoch: u64,
    pub learner: u32,
}

/// Everything the node knows about the cluster at one etcd revision. Shards receive
/// whole views (never deltas) and reconcile their replicas against the newest one, so
/// a missed notification cannot leave a shard behind.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClusterView {
    /// etcd revision this view reflects.
    pub revision: i64,
    pub nodes: BTreeMap<u32, NodeRecord>,
    pub topics: BTreeMap<String, TopicConfig>,
    pub chains: BTreeMap<(String, u32), ChainRecord>,
    /// The node holding the controller election, if any.
    pub controller: Option<u32>,
    /// Users and ACLs as stored under `{prefix}/security` (`security.dat` bytes) and that
    /// key's mod revision; `None` before the first user or ACL.
    pub security: Option<(i64, std::sync::Arc<[u8]>)>,
}

impl ClusterView {
    /// The chain of `topic`/`partition`, if the controller assigned one.
    pub fn chain(&self, topic: &str, partition: u32) -> Option<&ChainRecord> {
        self.chains.get(&(topic.to_string(), partition))
    }
}

/// How this node joins the cluster (`--node-id`, `--etcd`, …).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ControlConfig {
    /// etcd endpoints, e.g. `http://127.0.0.1:2379`.
    pub endpoints: Vec<String>,
    /// This node's id (≥ 1).
    pub node_id: u32,
    /// Lease time-to-live: a node silent this long is declared dead.
    pub lease_ttl_s: i64,
    /// Key prefix (lets several clusters share one etcd).
    pub prefix: String,
    /// `--cluster-secret-file`: the replication links' secret; `None` = the one stored
    /// in etcd under `{prefix}/cluster-secret` (created by the first node).
    pub secret_file: Option<std::path::PathBuf>,
    /// Preferred-head rebalancing while this node is the controller.
    pub rebalance: RebalanceConfig,
}

/// Upper bound of `--rebalance-moves-per-minute` (one move per round of 500 ms).
pub const REBALANCE_MOVES_PER_MINUTE_MAX: u32 = 120;

/// Default lease TTL in seconds.
pub const LEASE_TTL_S_DEFAULT: i64 = 3;
/// Default etcd key prefix.
pub const PREFIX_DEFAULT: &str = "/strand";
