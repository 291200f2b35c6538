//! The control plane (DESIGN §6): membership, controller election and chain
//! assignment through etcd. Runs on its own thread with a tokio runtime (etcd-client is
//! tokio-based); the glommio shards talk to it only through [`ControlHandle`] (flume
//! channels, usable from either runtime) and never block on it on the data path.
//!
//! Code map: [`types`] (keyspace and records) · [`handle`] (the shard-facing API) ·
//! `runtime` (the etcd thread: connect, initial read, request loop, topic create/delete) ·
//! `keyspace` (parsed keyspace + revisions, pure) · `watch` (follows the keyspace,
//! publishes views) · `session` (lease, keep-alive, re-registration, refusing a live node id) · `suspect`
//! (fast failure detection: probe a reported peer, revoke a dead one's lease) · [`token`]
//! (the data dir's node token) · `controller`
//! (election, guarded chain writes; the decision itself is `strand_core::control`).
//!
//! A single node with no `--etcd` has no control plane at all: nothing here runs.

mod controller;
pub mod handle;
mod keyspace;
mod runtime;
mod session;
mod suspect;
pub mod token;
pub mod types;
mod watch;

pub use handle::{ControlError, ControlHandle, TopicChange};
pub use types::{ChainRecord, ClusterView, ControlConfig, InSyncReport, NodeRecord, RebalanceConfig};

/// Connects to etcd and reads the current cluster view (before this node registers, so
/// any configuration that admits this incarnation has a larger epoch than the view's).
/// Blocks until connected or fails with a clear error. The node registers later with
/// [`ControlHandle::register`], once its ports are bound.
pub fn connect(config: ControlConfig) -> Result<ControlHandle, ControlError> {
    runtime::start(config)
}
