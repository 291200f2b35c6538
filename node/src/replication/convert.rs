//! Conversion between the chain core's [`Msg`] and the wire's replication requests.
//!
//! Every chain message travels as a one-way request on the sender's persistent
//! connection to the receiver: `Msg::Append` as `ReplicaAppendRequest` (payload = the
//! raw batches, byte-identical to the sender's log), the three upstream answers as
//! `ReplicaAckRequest` (kind in `error`). Invariant: `msg_from_append` yields exactly
//! one `BatchMeta` per batch in the payload, with the sender's append epoch, or an
//! error; the payload is never trusted beyond what `BatchHeaders` checks (the
//! log validates CRCs again on append).

use bytes::Bytes;
use strand_core::chain::{BatchMeta, Epoch, Msg, NodeId, Offset, Position};
use strand_wire::batch::BatchHeaders;
use strand_wire::msg::{ReplicaAckRequest, ReplicaAppendRequest};
use strand_wire::ErrorCode;

/// A replication request that does not describe a valid chain message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConvertError {
    #[error("payload is not whole batches: {0}")]
    Payload(String),
    #[error("{batches} batches in the payload but {epochs} batch epochs")]
    EpochCount { batches: usize, epochs: usize },
    #[error("ack kind {0:?} is not a chain answer")]
    AckKind(ErrorCode),
}

impl ConvertError {
    /// The wire code for this error.
    pub fn code(&self) -> ErrorCode {
        ErrorCode::InvalidRequest
    }
}

/// The wire form of an `Append` (the caller attaches `payload_len` bytes of batches).
pub fn append_to_wire(
    topic: &str,
    partition: u32,
    from: NodeId,
    epoch: Epoch,
    prev: Position,
    batches: &[BatchMeta],
    commit: Offset,
) -> ReplicaAppendRequest {
    let bytes_len: u64 = batches.iter().map(|b| u64::from(b.bytes_len)).sum();
    ReplicaAppendRequest {
        topic: topic.to_string(),
        partition,
        epoch: epoch.0,
        start_offset: batches.first().map_or(prev.offset.0, |b| b.base.0),
        commit_offset: commit.0,
        // The core bounds one append by APPEND_BYTES_MAX, which fits a u32.
        bytes_len: u32::try_from(bytes_len).unwrap_or(u32::MAX),
        from_node: from.0,
        prev_offset: prev.offset.0,
        prev_epoch: prev.epoch.0,
        batch_epochs: batches.iter().map(|b| b.epoch.0).collect(),
    }
}

/// `prev_offset` of a `ReplicaAppendRequest` that carries a [`Msg::Reset`] (no batches;
/// `start_offset`/`prev_epoch` = the reset position). No real log position is this large.
pub const RESET_MARKER: u64 = u64::MAX;

/// The wire form of a [`Msg::Reset`]: an append request without batches whose
/// `prev_offset` is [`RESET_MARKER`].
pub fn reset_to_wire(topic: &str, partition: u32, from: NodeId, epoch: Epoch, start: Position) -> ReplicaAppendRequest {
    ReplicaAppendRequest {
        topic: topic.to_string(),
        partition,
        epoch: epoch.0,
        start_offset: start.offset.0,
        commit_offset: 0,
        bytes_len: 0,
        from_node: from.0,
        prev_offset: RESET_MARKER,
        prev_epoch: start.epoch.0,
        batch_epochs: Vec::new(),
    }
}

/// The wire form of an upstream answer (`AppendOk`, `AppendRejected`, `Fenced`); `None`
/// for `Append`, which goes through [`append_to_wire`].
pub fn ack_to_wire(topic: &str, partition: u32, from: NodeId, msg: &Msg) -> Option<ReplicaAckRequest> {
    let base = ReplicaAckRequest {
        topic: topic.to_string(),
        partition,
        epoch: msg.epoch().0,
        durable_offset: 0,
        from_node: from.0,
        error: ErrorCode::None,
        log_end_offset: 0,
        log_end_epoch: 0,
        durable_epoch: 0,
    };
    match *msg {
        Msg::Append { .. } | Msg::Reset { .. } => None,
        Msg::AppendOk { end, durable, .. } => Some(ReplicaAckRequest {
            durable_offset: durable.offset.0,
            log_end_offset: end.offset.0,
            log_end_epoch: end.epoch.0,
            durable_epoch: durable.epoch.0,
            ..base
        }),
        Msg::AppendRejected { retry_from, .. } => {
            Some(ReplicaAckRequest { error: ErrorCode::OffsetOutOfRange, log_end_offset: retry_from.0, ..base })
        }
        Msg::Fenced { .. } => Some(ReplicaAckRequest { error: ErrorCode::StaleEpoch, ..base }),
    }
}

/// The chain message in an append request, and the payload split per batch.
pub fn msg_from_append(req: &ReplicaAppendRequest, payload: &Bytes) -> Result<(NodeId, Msg, Vec<Bytes>), ConvertError> {
    if req.prev_offset == RESET_MARKER {
        if !payload.is_empty() || !req.batch_epochs.is_empty() {
            return Err(ConvertError::Payload("a reset carries no batches".into()));
        }
        let start = Position { offset: Offset(req.start_offset), epoch: Epoch(req.prev_epoch) };
        return Ok((NodeId(req.from_node), Msg::Reset { epoch: Epoch(req.epoch), start }, Vec::new()));
    }
    let mut batches = Vec::with_capacity(req.batch_epochs.len());
    let mut pieces = Vec::with_capacity(req.batch_epochs.len());
    for walked in BatchHeaders::new(payload) {
        let (header, range) = walked.map_err(|e| ConvertError::Payload(e.to_string()))?;
        let epoch = *req
            .batch_epochs
            .get(batches.len())
            .ok_or(ConvertError::EpochCount { batches: batches.len() + 1, epochs: req.batch_epochs.len() })?;
        batches.push(BatchMeta {
            base: Offset(header.base_offset),
            record_count: header.record_count,
            bytes_len: header.batch_len,
            epoch: Epoch(epoch),
        });
        pieces.push(payload.slice(range));
    }
    if batches.len() != req.batch_epochs.len() {
        return Err(ConvertError::EpochCount { batches: batches.len(), epochs: req.batch_epochs.len() });
    }
    let msg = Msg::Append {
        epoch: Epoch(req.epoch),
        prev: Position { offset: Offset(req.prev_offset), epoch: Epoch(req.prev_epoch) },
        batches,
        commit: Offset(req.commit_offset),
    };
    Ok((NodeId(req.from_node), msg, pieces))
}

/// The chain message in an ack request.
pub fn msg_from_ack(req: &ReplicaAckRequest) -> Result<(NodeId, Msg), ConvertError> {
    let epoch = Epoch(req.epoch);
    let msg = match req.error {
        ErrorCode::None => Msg::AppendOk {
            epoch,
            end: Position { offset: Offset(req.log_end_offset), epoch: Epoch(req.log_end_epoch) },
            durable: Position { offset: Offset(req.durable_offset), epoch: Epoch(req.durable_epoch) },
        },
        ErrorCode::OffsetOutOfRange => Msg::AppendRejected { epoch, retry_from: Offset(req.log_end_offset) },
        ErrorCode::StaleEpoch => Msg::Fenced { epoch },
        other => return Err(ConvertError::AckKind(other)),
    };
    Ok((NodeId(req.from_node), msg))
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::BytesMut;
    use strand_wire::batch::BatchBuilder;

    fn batch(base: u64, values: &[&[u8]]) -> Bytes {
        let mut b = BatchBuilder::new();
        for v in values {
            b.push(1_000, None, Some(v), &[]);
        }
        let mut bytes = BytesMut::from(&b.finish()[..]);
        strand_wire::batch::stamp_base_offset(&mut bytes, base);
        bytes.freeze()
    }

    #[test]
    fn append_round_trips_with_epochs_and_pieces() {
        let a = batch(10, &[b"x", b"y"]);
        let b = batch(12, &[b"z"]);
        let metas = [
            BatchMeta { base: Offset(10), record_count: 2, bytes_len: a.len() as u32, epoch: Epoch(3) },
            BatchMeta { base: Offset(12), record_count: 1, bytes_len: b.len() as u32, epoch: Epoch(4) },
        ];
        let prev = Position { offset: Offset(10), epoch: Epoch(2) };
        let req = append_to_wire("t", 1, NodeId(7), Epoch(4), prev, &metas, Offset(9));
        let payload = Bytes::from([a.clone(), b.clone()].concat());
        assert_eq!(req.bytes_len as usize, payload.len());
        let (from, msg, pieces) = msg_from_append(&req, &payload).expect("valid");
        assert_eq!(from, NodeId(7));
        assert_eq!(msg, Msg::Append { epoch: Epoch(4), prev, batches: metas.to_vec(), commit: Offset(9) });
        assert_eq!(pieces, vec![a, b]);
    }

    #[test]
    fn append_with_wrong_epoch_count_or_torn_payload_is_rejected() {
        let a = batch(0, &[b"x"]);
        let meta = BatchMeta { base: Offset(0), record_count: 1, bytes_len: a.len() as u32, epoch: Epoch(1) };
        let mut req = append_to_wire("t", 0, NodeId(1), Epoch(1), Position::ZERO, &[meta], Offset(0));
        let torn = a.slice(..a.len() - 1);
        assert!(matches!(msg_from_append(&req, &torn), Err(ConvertError::Payload(_))));
        req.batch_epochs.push(2);
        assert!(matches!(msg_from_append(&req, &a), Err(ConvertError::EpochCount { batches: 1, epochs: 2 })));
    }

    #[test]
    fn acks_round_trip() {
        let end = Position { offset: Offset(5), epoch: Epoch(2) };
        let durable = Position { offset: Offset(3), epoch: Epoch(1) };
        for msg in [
            Msg::AppendOk { epoch: Epoch(2), end, durable },
            Msg::AppendRejected { epoch: Epoch(2), retry_from: Offset(4) },
            Msg::Fenced { epoch: Epoch(9) },
        ] {
            let req = ack_to_wire("t", 0, NodeId(2), &msg).expect("an ack");
            assert_eq!(msg_from_ack(&req), Ok((NodeId(2), msg)));
        }
        let append = Msg::Append { epoch: Epoch(1), prev: Position::ZERO, batches: vec![], commit: Offset(0) };
        assert_eq!(ack_to_wire("t", 0, NodeId(2), &append), None);
    }

    #[test]
    fn reset_round_trips_as_an_append_without_batches() {
        let start = Position { offset: Offset(4096), epoch: Epoch(3) };
        let req = reset_to_wire("t", 0, NodeId(2), Epoch(7), start);
        let (from, msg, pieces) = msg_from_append(&req, &Bytes::new()).expect("valid");
        assert_eq!((from, msg), (NodeId(2), Msg::Reset { epoch: Epoch(7), start }));
        assert!(pieces.is_empty());
        assert!(msg_from_append(&req, &batch(0, &[b"x"])).is_err(), "a reset with bytes is malformed");
    }
}
