//! What replicas say to each other ([`Msg`]) and what a replica asks its shell to do
//! ([`Action`]). Every message carries the sender's epoch; a receiver at a newer epoch
//! answers [`Msg::Fenced`], one at an older epoch learns its configuration is stale.
//!
//! Mapping to the wire (`strand_wire::msg`): `Append` is `ReplicaAppendRequest` (its
//! payload is the raw bytes of `batches`, read by the sender's shell from its log;
//! `prev` and each batch's append epoch travel in the header), `AppendOk` /
//! `AppendRejected` / `Fenced` are `ReplicaAppendResponse` (`error` = none /
//! `OffsetOutOfRange` / `StaleEpoch`), also sent unsolicited as `ReplicaAck`.

use super::error::ChainError;
use super::types::{BatchMeta, Epoch, NodeId, Offset, Position, RequestId};

/// A replication message between neighbours of one partition's chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Msg {
    /// Predecessor → successor: `batches` follow `prev` in the sender's log (empty
    /// `batches` = probe / heartbeat). `commit` is the sender's commit offset.
    Append { epoch: Epoch, prev: Position, batches: Vec<BatchMeta>, commit: Offset },
    /// Successor → predecessor: the successor's log agrees with the predecessor's up to
    /// `end`, and `durable` is durable on the successor and everything after it in the
    /// chain. Positions carry append epochs so the receiver can discard reports about
    /// content it no longer has.
    AppendOk { epoch: Epoch, end: Position, durable: Position },
    /// Successor → predecessor: `prev` did not match; resend from a boundary at or
    /// below `retry_from`.
    AppendRejected { epoch: Epoch, retry_from: Offset },
    /// The receiver runs at the newer `epoch`: the sender is fenced.
    Fenced { epoch: Epoch },
    /// Predecessor → learner: the learner needs offsets below the predecessor's log
    /// start `start` (retention removed them), or cannot be matched at `start`, so it
    /// drops its whole log and continues empty from `start`.
    Reset { epoch: Epoch, start: Position },
}

impl Msg {
    /// The epoch the sender ran at.
    pub fn epoch(&self) -> Epoch {
        match self {
            Msg::Append { epoch, .. }
            | Msg::AppendOk { epoch, .. }
            | Msg::AppendRejected { epoch, .. }
            | Msg::Fenced { epoch }
            | Msg::Reset { epoch, .. } => *epoch,
        }
    }
}

/// Work the shell must carry out, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Write these batches at the end of the local log (bytes: the client's produce for
    /// the head, the predecessor's message payload otherwise), then report fsync
    /// progress through `handle_local_durable`.
    AppendLocal { batches: Vec<BatchMeta> },
    /// Cut the local log at `to` (a batch boundary) before any later append. A durable
    /// offset reported afterwards must describe the log after this cut.
    TruncateLocal { to: Offset },
    /// Send `msg` to `to`; for `Append`, attach the bytes of its batches from the log.
    Send { to: NodeId, msg: Msg },
    /// The produce `request_id` is acknowledged at base offset `offset`.
    AckClient { request_id: RequestId, offset: Offset },
    /// The produce `request_id` failed (no promise either way about its data).
    FailClient { request_id: RequestId, error: ChainError },
    /// Drop the whole local log and restart it empty at `start.offset` (`start.epoch`
    /// is the epoch of the batch ending there), durably, before any later append. A
    /// durable offset reported afterwards must describe the new log.
    ResetLocal { start: Position },
    /// Consumers of this replica may now read everything below `offset` from the local
    /// log: committed, and durable here, so the shell's log holds exactly these bytes
    /// even while issued truncations and appends are still being executed. Only grows.
    ServeReadsUpTo { offset: Offset },
    /// A peer runs at a newer epoch than ours: fetch the configuration again.
    ConfigStale { seen: Epoch },
}
