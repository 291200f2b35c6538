//! Chain replication, IO-free (DESIGN §6): one [`ChainReplica`] per partition replica.
//!
//! The chain is `members` (head first) plus an optional catching-up `learner` behind
//! the tail ([`ChainConfig`]). The head assigns offsets to produces and streams batch
//! metadata down the chain (the shell attaches the byte-identical batch bytes); each
//! replica reports up the offset durable on itself and everything after it, so the
//! head's commit offset is what is durable on the whole chain. acks=all completes at
//! commit, acks=leader at the head's local durability.
//!
//! Representation: the core holds a [`LogIndex`] of batch boundaries, sizes and append
//! epochs; the bytes stay in the shell's log. Messages name log points by [`Position`]
//! (offset + epoch of the batch ending there), which makes every report
//! self-validating: a position that is not in the receiver's log any more (the log was
//! cut, or the sender's incarnation died) is ignored rather than trusted.
//!
//! Reconfiguration (epochs from the control plane): every message carries the epoch;
//! older ones are answered [`Msg::Fenced`], newer ones fence the receiver until it
//! gets the new configuration. In each epoch a successor first matches its predecessor
//! (probe at the predecessor's log end, walked back batch by batch on mismatch); the
//! first match cuts the successor's unconfirmed suffix, then the predecessor streams
//! from the matched point, pipelined within [`ChainLimits::in_flight_bytes_max`], with
//! go-back-N retransmission. Head failure: the successor becomes head with its log
//! (uncommitted data may be lost, committed data is on every member). Middle failure:
//! the predecessor matches the new successor and resumes from its log end. Tail
//! failure: the predecessor becomes tail and its durable offset drives the commit. A
//! new or restarted node joins as learner: the tail feeds it, and once it holds
//! everything committed before the epoch the tail counts its durability too; when
//! [`ChainReplica::learner_in_sync`] says so the control plane promotes it to tail.
//!
//! Retention: a replica's log may start above 0 ([`LogIndex::start`]); the shell deletes
//! only committed data (below `reads_up_to`) and reports the new start through
//! [`ChainReplica::handle_log_start`]. A predecessor asked for offsets below its start
//! sends [`Msg::Reset`]; the learner drops its log ([`Action::ResetLocal`]) and continues
//! from that start.
//!
//! What the shell must guarantee: `handle_local_durable` reports only data the local
//! fsync policy made durable, describing the log after all issued truncations; batch
//! epochs are persisted with the batches; a restarted replica is built with
//! [`ChainReplica::recover`] and the epoch current at restart; the controller bumps the
//! epoch when it re-admits a restarted node and only removes members it believes dead
//! (never empties a chain).

mod error;
mod log;
mod msg;
mod replica;
mod types;

pub use error::ChainError;
pub use log::LogIndex;
pub use msg::{Action, Msg};
pub use replica::{ChainReplica, SuccessorLag};
pub use types::{Acks, BatchMeta, ChainConfig, ClientBatch, Epoch, NodeId, Offset, Position, RequestId, Role};

/// Bytes sent to a successor and not yet acknowledged.
pub const IN_FLIGHT_BYTES_MAX: u64 = 8 * 1024 * 1024;
/// Bytes of batches in one append message (at least one batch is always sent).
pub const APPEND_BYTES_MAX: u64 = 1024 * 1024;
/// Batches in one append message.
pub const APPEND_BATCHES_MAX: usize = 512;
/// Produces waiting for their acknowledgement at the head.
pub const PENDING_ACKS_MAX: usize = 8192;
/// Bytes the head's log may hold above the commit offset before produces are throttled.
pub const UNCOMMITTED_BYTES_MAX: u64 = 64 * 1024 * 1024;
/// Time without acknowledgement progress before the head resends the unacknowledged window.
pub const RETRANSMIT_MS: u64 = 200;
/// Interval of empty appends (probes, commit news, durability polls) while something is owed.
pub const HEARTBEAT_MS: u64 = 50;

const _: () = assert!(APPEND_BYTES_MAX <= IN_FLIGHT_BYTES_MAX);
const _: () = assert!(IN_FLIGHT_BYTES_MAX <= UNCOMMITTED_BYTES_MAX);
const _: () = assert!(HEARTBEAT_MS <= RETRANSMIT_MS);
// The wire carries an append's byte length in a u32.
const _: () = assert!(APPEND_BYTES_MAX <= u32::MAX as u64);

/// The bounds one replica runs with; [`ChainLimits::default`] uses the named constants.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChainLimits {
    pub in_flight_bytes_max: u64,
    pub append_bytes_max: u64,
    pub append_batches_max: usize,
    pub pending_acks_max: usize,
    pub uncommitted_bytes_max: u64,
    pub retransmit_ms: u64,
    pub heartbeat_ms: u64,
}

impl Default for ChainLimits {
    fn default() -> ChainLimits {
        ChainLimits {
            in_flight_bytes_max: IN_FLIGHT_BYTES_MAX,
            append_bytes_max: APPEND_BYTES_MAX,
            append_batches_max: APPEND_BATCHES_MAX,
            pending_acks_max: PENDING_ACKS_MAX,
            uncommitted_bytes_max: UNCOMMITTED_BYTES_MAX,
            retransmit_ms: RETRANSMIT_MS,
            heartbeat_ms: HEARTBEAT_MS,
        }
    }
}
