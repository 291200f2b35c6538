//! The shard-facing side of the control plane: a cloneable, `Send` handle over flume
//! channels. Views are published whole ([`ClusterView`]); every subscriber gets a wake-up
//! (bounded(1), so wake-ups coalesce) and reads [`ControlHandle::latest`].

use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex};

use strand_wire::ErrorCode;

use super::types::{ClusterView, NodeRecord};
use crate::topic::TopicConfig;

/// Why a control-plane operation failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ControlError {
    #[error("etcd: {0}")]
    Etcd(String),
    #[error("topic {0} already exists")]
    TopicExists(String),
    #[error("topic {0} does not exist")]
    UnknownTopic(String),
    #[error("replication factor {wanted} needs {wanted} live nodes, the cluster has {live}")]
    NotEnoughNodes { wanted: u16, live: usize },
    #[error("invalid: {0}")]
    Invalid(String),
    #[error("timed out: {0}")]
    Timeout(String),
    #[error("the control plane stopped")]
    Stopped,
    #[error("node id {node} is already registered by {holder} (lease live); stop that node or pick another --node-id")]
    NodeIdTaken { node: u32, holder: String },
    #[error("cluster secret: {0}")]
    Secret(String),
    #[error("changed concurrently; try again")]
    Conflict,
}

impl ControlError {
    /// The wire error to answer with.
    pub fn code(&self) -> ErrorCode {
        match self {
            ControlError::TopicExists(_) => ErrorCode::TopicAlreadyExists,
            ControlError::UnknownTopic(_) => ErrorCode::UnknownTopic,
            ControlError::NotEnoughNodes { .. } => ErrorCode::NotEnoughReplicas,
            ControlError::Invalid(_) | ControlError::NodeIdTaken { .. } | ControlError::Secret(_) => {
                ErrorCode::InvalidConfig
            }
            ControlError::Timeout(_) => ErrorCode::RequestTimedOut,
            ControlError::Conflict => ErrorCode::RequestTimedOut,
            ControlError::Etcd(_) | ControlError::Stopped => ErrorCode::CoordinatorNotAvailable,
        }
    }
}

/// Requests from shards to the control thread.
#[derive(Debug)]
pub enum ControlRequest {
    /// Register this node (lease, keep-alive, campaign for controller, watch).
    Register { record: NodeRecord, reply: flume::Sender<Result<(), ControlError>> },
    /// Create a topic cluster-wide; answered once every partition has a chain in this
    /// node's view (so a client's next Metadata finds the heads).
    CreateTopic { config: TopicConfig, reply: flume::Sender<Result<(), ControlError>> },
    /// Change an existing topic's definition; answered with the new definition once every
    /// partition has a chain in this node's view.
    AlterTopic { name: String, change: TopicChange, reply: flume::Sender<Result<TopicConfig, ControlError>> },
    /// Delete a topic and its chains cluster-wide.
    DeleteTopic { name: String, reply: flume::Sender<Result<(), ControlError>> },
    /// The tail of `topic`/`partition` at `epoch` reports `learner` in sync.
    LearnerInSync { topic: String, partition: u32, epoch: u64, learner: u32 },
    /// A shard saw `node`'s replication connection reset or closed: probe it and, if
    /// its process is gone, revoke its lease (fast failure detection).
    Suspect { node: u32, reason: &'static str },
    /// Replace the users and ACLs (`{prefix}/security`) if the key is still at mod
    /// revision `expected` (0 = absent); answered with the new mod revision.
    PutSecurity { bytes: Vec<u8>, expected: i64, reply: flume::Sender<Result<i64, ControlError>> },
    /// Revoke the lease and stop (graceful shutdown: peers reconfigure at once).
    Shutdown { reply: flume::Sender<()> },
    /// Stop WITHOUT revoking the lease, as if the process had died (tests: peers notice
    /// only when the lease expires).
    Abandon { reply: flume::Sender<()> },
}

/// A change to an existing topic (AlterTopicConfig, CreatePartitions).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TopicChange {
    /// Overrides set (added or replaced) and deleted.
    Configs { set: Vec<(String, String)>, delete: Vec<String> },
    /// The new, larger partition count; the controller places the new partitions' chains.
    Partitions(u32),
}

/// State shared between the control thread and the handles.
pub struct Shared {
    pub node_id: u32,
    /// The view taken before registration (see [`super::connect`]).
    pub initial: Arc<ClusterView>,
    pub latest: Mutex<Arc<ClusterView>>,
    pub subscribers: Mutex<Vec<flume::Sender<()>>>,
    /// Whether this node currently holds the controller election.
    pub controller: AtomicBool,
    /// This incarnation's lease id (0 until registered).
    pub incarnation: AtomicI64,
    /// The replication links' cluster secret (from the file or etcd).
    pub secret: Arc<[u8]>,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared").field("node_id", &self.node_id).field("secret", &"<redacted>").finish_non_exhaustive()
    }
}

impl Shared {
    /// Publishes a new view and wakes every subscriber.
    pub fn publish(&self, view: ClusterView) {
        if let Ok(mut latest) = self.latest.lock() {
            *latest = Arc::new(view);
        }
        if let Ok(subs) = self.subscribers.lock() {
            for s in subs.iter() {
                let _ = s.try_send(());
            }
        }
    }
}

/// The shards' handle on the control plane.
#[derive(Debug, Clone)]
pub struct ControlHandle {
    pub(super) shared: Arc<Shared>,
    pub(super) requests: flume::Sender<ControlRequest>,
}

impl ControlHandle {
    /// This node's id.
    pub fn node_id(&self) -> u32 {
        self.shared.node_id
    }

    /// The view read at connect, before this incarnation registered. A replica that
    /// restarts with a non-empty log uses the epoch it finds here as `epoch_min`.
    pub fn initial(&self) -> Arc<ClusterView> {
        self.shared.initial.clone()
    }

    /// The replication links' cluster secret (at least
    /// [`crate::replication::auth::SECRET_LEN_MIN`] bytes).
    pub fn cluster_secret(&self) -> &[u8] {
        &self.shared.secret
    }

    /// The newest view.
    pub fn latest(&self) -> Arc<ClusterView> {
        match self.shared.latest.lock() {
            Ok(v) => v.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// A receiver woken (coalesced) whenever a newer view is published; read
    /// [`ControlHandle::latest`] after each wake-up.
    pub fn subscribe(&self) -> flume::Receiver<()> {
        let (tx, rx) = flume::bounded(1);
        let _ = tx.try_send(());
        if let Ok(mut subs) = self.shared.subscribers.lock() {
            subs.push(tx);
        }
        rx
    }

    /// Registers this node (blocking; call once its ports are bound).
    pub fn register(&self, record: NodeRecord) -> Result<(), ControlError> {
        let (reply, rx) = flume::bounded(1);
        self.requests.send(ControlRequest::Register { record, reply }).map_err(|_| ControlError::Stopped)?;
        rx.recv().map_err(|_| ControlError::Stopped)?
    }

    /// Creates a topic cluster-wide (async on any runtime).
    pub async fn create_topic(&self, config: TopicConfig) -> Result<(), ControlError> {
        let (reply, rx) = flume::bounded(1);
        self.requests.send(ControlRequest::CreateTopic { config, reply }).map_err(|_| ControlError::Stopped)?;
        rx.recv_async().await.map_err(|_| ControlError::Stopped)?
    }

    /// Changes a topic cluster-wide (async on any runtime); returns its new definition.
    pub async fn alter_topic(&self, name: &str, change: TopicChange) -> Result<TopicConfig, ControlError> {
        let (reply, rx) = flume::bounded(1);
        let request = ControlRequest::AlterTopic { name: name.to_string(), change, reply };
        self.requests.send(request).map_err(|_| ControlError::Stopped)?;
        rx.recv_async().await.map_err(|_| ControlError::Stopped)?
    }

    /// Deletes a topic cluster-wide (async on any runtime).
    pub async fn delete_topic(&self, name: &str) -> Result<(), ControlError> {
        let (reply, rx) = flume::bounded(1);
        let request = ControlRequest::DeleteTopic { name: name.to_string(), reply };
        self.requests.send(request).map_err(|_| ControlError::Stopped)?;
        rx.recv_async().await.map_err(|_| ControlError::Stopped)?
    }

    /// Replaces the users and ACLs in etcd if nobody changed them since `expected` (their
    /// mod revision, 0 = none yet): the new revision, or [`ControlError::Conflict`].
    pub async fn put_security(&self, bytes: Vec<u8>, expected: i64) -> Result<i64, ControlError> {
        let (reply, rx) = flume::bounded(1);
        self.requests
            .send(ControlRequest::PutSecurity { bytes, expected, reply })
            .map_err(|_| ControlError::Stopped)?;
        rx.recv_async().await.map_err(|_| ControlError::Stopped)?
    }

    /// [`ControlHandle::put_security`], blocking (start-up only).
    pub fn put_security_blocking(&self, bytes: Vec<u8>, expected: i64) -> Result<i64, ControlError> {
        let (reply, rx) = flume::bounded(1);
        self.requests
            .send(ControlRequest::PutSecurity { bytes, expected, reply })
            .map_err(|_| ControlError::Stopped)?;
        rx.recv().map_err(|_| ControlError::Stopped)?
    }

    /// Reports a learner in sync (fire and forget; the tail repeats while it holds).
    pub fn report_in_sync(&self, topic: &str, partition: u32, epoch: u64, learner: u32) {
        let request = ControlRequest::LearnerInSync { topic: topic.to_string(), partition, epoch, learner };
        let _ = self.requests.try_send(request);
    }

    /// Reports a peer whose connection was reset or closed (fire and forget, never
    /// blocks; the control thread probes it, see `control/suspect.rs`).
    pub fn report_suspect(&self, node: u32, reason: &'static str) {
        let _ = self.requests.try_send(ControlRequest::Suspect { node, reason });
    }

    /// Revokes the lease and stops the control thread (blocking, bounded wait).
    pub fn shutdown(&self) {
        let (reply, rx) = flume::bounded(1);
        if self.requests.send(ControlRequest::Shutdown { reply }).is_ok() {
            let _ = rx.recv_timeout(std::time::Duration::from_secs(5));
        }
    }

    /// Stops the control thread without revoking the lease, as a crash would: the node
    /// stays registered until its lease expires (for tests of failure detection).
    pub fn abandon(&self) {
        let (reply, rx) = flume::bounded(1);
        if self.requests.send(ControlRequest::Abandon { reply }).is_ok() {
            let _ = rx.recv_timeout(std::time::Duration::from_secs(5));
        }
    }

    /// Whether this node is the elected controller right now.
    pub fn is_controller(&self) -> bool {
        self.shared.controller.load(Ordering::Relaxed)
    }

    /// This incarnation's lease id, once registered (changes if the lease was lost and
    /// the node re-registered).
    pub fn incarnation(&self) -> Option<i64> {
        Some(self.shared.incarnation.load(Ordering::Relaxed)).filter(|i| *i != 0)
    }
}
