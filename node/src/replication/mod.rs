//! Chain replication's IO shell (DESIGN §6): everything that moves replication bytes
//! between nodes. The decisions live in the IO-free core (`strand_core::chain`); this
//! module only executes its actions.
//!
//! Code map: [`convert`] (core `Msg` ↔ wire requests) · [`auth`] (the links'
//! challenge-response over the cluster secret) · [`tls`] (mutual TLS around it) ·
//! [`link`] (persistent outbound links and the inbound accept loop) · [`env`] (a replica's
//! peers, clock and fatal-error handling: real, or the simulator's) · [`partition`] (one replica: core + log +
//! worker/ticker tasks) · [`Replicator`] (this shard's replicas by topic/partition,
//! routing inbound frames to them).
//!
//! Architecture invariant: no replication decision is taken here — roles, offsets,
//! commit, fencing and retransmission all come from `ChainReplica`. Every inbound
//! frame reaches the core under the node id its connection proved (a frame naming
//! another sender is refused here); whether that node is this replica's predecessor
//! or successor in the current epoch is the core's check. Everything lives
//! on one glommio executor (`!Send`); nothing blocks it.

pub mod auth;
pub mod convert;
pub mod env;
pub mod epochs;
pub mod link;
pub mod partition;
pub mod tls;

use bytes::Bytes;
use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use strand_core::chain::{ChainError, NodeId};
use strand_wire::codec::decode_request;
use strand_wire::msg::Request;
use strand_wire::ErrorCode;
use tracing::{debug, warn};

pub use convert::ConvertError;
pub use env::{Clock, Fatal, ReplicaEnv};
pub use link::{LinkPool, Peers};
pub use partition::ReplicatedPartition;

/// Why a replication operation failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReplicationError {
    #[error(transparent)]
    Chain(#[from] ChainError),
    #[error(transparent)]
    Convert(#[from] ConvertError),
    #[error("invalid produce payload: {0}")]
    Payload(String),
    #[error("empty produce")]
    Empty,
    #[error("the partition log already holds offsets up to {0}; replicated recovery is not implemented")]
    NonEmptyLog(u64),
    #[error("replica recovery failed: {0}")]
    Recovery(String),
    #[error("unknown replicated partition {0}/{1}")]
    UnknownPartition(String, u32),
    #[error("undecodable replication frame: {0}")]
    Decode(String),
    #[error("not a replication request")]
    NotReplication,
    #[error("frame names sender node {claimed} but its connection authenticated node {peer}")]
    Impostor { claimed: u32, peer: u32 },
    #[error("the replica stopped")]
    Stopped,
}

impl ReplicationError {
    /// The wire code answered for this error.
    pub fn code(&self) -> ErrorCode {
        match self {
            ReplicationError::Chain(e) => e.code(),
            ReplicationError::Convert(e) => e.code(),
            ReplicationError::UnknownPartition(..) => ErrorCode::UnknownPartition,
            ReplicationError::Stopped | ReplicationError::NonEmptyLog(_) | ReplicationError::Recovery(_) => {
                ErrorCode::NotEnoughReplicas
            }
            ReplicationError::Payload(_) => ErrorCode::CorruptBatch,
            ReplicationError::Empty
            | ReplicationError::Decode(_)
            | ReplicationError::NotReplication
            | ReplicationError::Impostor { .. } => ErrorCode::InvalidRequest,
        }
    }
}

/// The replicated partitions of one shard, addressed by (topic, partition).
#[derive(Default)]
pub struct Replicator {
    partitions: RefCell<HashMap<(String, u32), Rc<ReplicatedPartition>>>,
}

impl Replicator {
    /// An empty registry.
    pub fn new() -> Rc<Replicator> {
        Rc::new(Replicator::default())
    }

    /// Registers a started replica (replacing an older one of the same partition).
    pub fn add(&self, replica: Rc<ReplicatedPartition>) {
        let (topic, partition) = replica.id();
        let key = (topic.to_string(), partition);
        self.partitions.borrow_mut().insert(key, replica);
    }

    /// The replica of `topic`/`partition`, if this shard has one.
    pub fn get(&self, topic: &str, partition: u32) -> Option<Rc<ReplicatedPartition>> {
        self.partitions.borrow().get(&(topic.to_string(), partition)).cloned()
    }

    /// Unregisters the replica of `topic`/`partition` (its tasks end once it is dropped).
    pub fn remove(&self, topic: &str, partition: u32) -> Option<Rc<ReplicatedPartition>> {
        self.partitions.borrow_mut().remove(&(topic.to_string(), partition))
    }

    /// Every registered replica.
    pub fn all(&self) -> Vec<Rc<ReplicatedPartition>> {
        self.partitions.borrow().values().cloned().collect()
    }

    /// Routes one inbound frame (header bytes, payload) from the authenticated node
    /// `peer` to its replica; a frame naming another sender is refused.
    pub fn on_frame(&self, peer: NodeId, header: &[u8], payload: Bytes) -> Result<(), ReplicationError> {
        let header = decode_request(header).map_err(|e| ReplicationError::Decode(e.to_string()))?;
        match header.request {
            Request::ReplicaAppend(req) => {
                let replica = self.lookup(&req.topic, req.partition)?;
                let (from, msg, pieces) = convert::msg_from_append(&req, &payload)?;
                replica.handle_message(same_sender(peer, from)?, msg, pieces)
            }
            Request::ReplicaAck(req) => {
                let replica = self.lookup(&req.topic, req.partition)?;
                let (from, msg) = convert::msg_from_ack(&req)?;
                replica.handle_message(same_sender(peer, from)?, msg, Vec::new())
            }
            _ => Err(ReplicationError::NotReplication),
        }
    }

    /// The frame handler for [`link::serve`]: errors are logged and the frame dropped
    /// (an impostor frame at warn: it means a secret holder misbehaves).
    pub fn frame_handler(self: &Rc<Self>) -> link::FrameHandler {
        let this = self.clone();
        Rc::new(move |peer, header, payload| match this.on_frame(peer, &header, payload) {
            Ok(()) => {}
            Err(e @ ReplicationError::Impostor { .. }) => warn!(error = %e, "replication frame refused"),
            Err(e) => debug!(error = %e, "replication frame dropped"),
        })
    }

    fn lookup(&self, topic: &str, partition: u32) -> Result<Rc<ReplicatedPartition>, ReplicationError> {
        self.get(topic, partition).ok_or_else(|| ReplicationError::UnknownPartition(topic.to_string(), partition))
    }
}

/// The message's sender when it is the connection's authenticated node.
fn same_sender(peer: NodeId, claimed: NodeId) -> Result<NodeId, ReplicationError> {
    if claimed == peer {
        Ok(peer)
    } else {
        Err(ReplicationError::Impostor { claimed: claimed.0, peer: peer.0 })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use strand_wire::codec::encode_request;
    use strand_wire::msg::{ReplicaAppendRequest, RequestHeader};

    proptest! {
        /// Untrusted bytes are answered with an error, never a panic.
        #[test]
        fn arbitrary_frames_are_rejected_without_panicking(
            header in proptest::collection::vec(any::<u8>(), 0..512),
            payload in proptest::collection::vec(any::<u8>(), 0..512),
        ) {
            let replicator = Replicator::new();
            prop_assert!(replicator.on_frame(NodeId(1), &header, Bytes::from(payload)).is_err());
        }

        /// A well-formed append for a partition this shard does not replicate is refused
        /// as unknown, whatever its payload.
        #[test]
        fn appends_for_unknown_partitions_are_refused(payload in proptest::collection::vec(any::<u8>(), 0..256)) {
            let req = ReplicaAppendRequest {
                topic: "t".into(),
                partition: 3,
                epoch: 1,
                start_offset: 0,
                commit_offset: 0,
                bytes_len: payload.len() as u32,
                from_node: 1,
                prev_offset: 0,
                prev_epoch: 0,
                batch_epochs: vec![1],
            };
            let header = encode_request(&RequestHeader { correlation_id: 0, request: Request::ReplicaAppend(req) });
            let err = Replicator::new().on_frame(NodeId(1), &header, Bytes::from(payload));
            prop_assert_eq!(err, Err(ReplicationError::UnknownPartition("t".into(), 3)));
        }
    }

    #[test]
    fn a_frame_naming_another_sender_than_its_connection_is_refused() {
        assert_eq!(same_sender(NodeId(2), NodeId(2)), Ok(NodeId(2)));
        assert_eq!(same_sender(NodeId(3), NodeId(2)), Err(ReplicationError::Impostor { claimed: 2, peer: 3 }));
    }
}
