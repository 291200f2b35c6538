//! The client's one error type. Every failure a caller can see is a
//! [`ClientError`]; each maps to the closest [`ErrorCode`] so the CLI and
//! callers can react to the wire meaning. It is `Clone` because one failure
//! (a lost connection, a rejected batch) resolves many waiting futures.

use std::net::SocketAddr;

use strand_wire::batch::BatchError;
use strand_wire::ErrorCode;

use crate::proto::ProtoError;

/// A failure of a client operation.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ClientError {
    /// The address could not be resolved or is not `host:port`.
    #[error("bad address {addr}: {reason}")]
    BadAddress { addr: String, reason: String },
    /// Connecting to a node failed.
    #[error("cannot connect to {addr}: {reason}")]
    Connect { addr: SocketAddr, reason: String },
    /// The connection closed or failed while a request was outstanding.
    #[error("connection to {addr} lost: {reason}")]
    Disconnected { addr: SocketAddr, reason: String },
    /// No response arrived within the request timeout.
    #[error("request timed out")]
    Timeout,
    /// The node sent bytes this client cannot parse.
    #[error("protocol error: {0}")]
    Protocol(#[from] ProtoError),
    /// The node answered with an error code. `message` is the node's explanation, or
    /// empty when it sent none; it does not repeat the code (Display prints the code,
    /// then the message if there is one).
    #[error("{code}{}", message_suffix(*.code, .message))]
    Server { code: ErrorCode, message: String },
    /// The node answered with a response of the wrong kind or shape.
    #[error("unexpected response: {0}")]
    UnexpectedResponse(&'static str),
    /// A fetched batch failed validation.
    #[error("corrupt batch from node: {0}")]
    CorruptBatch(#[from] BatchError),
    /// A compressed batch could not be decompressed.
    #[error("cannot decompress batch: {0}")]
    Decompress(String),
    /// A fetched batch of a partition is corrupt (stored by an older node, or damaged on
    /// disk). Fetching from `offset` keeps failing; [`crate::Consumer::skip_corrupt_batch`]
    /// (or a seek to `next_offset`) skips the records `offset..next_offset`, explicitly.
    #[error("corrupt batch in {topic}/{partition} at offset {offset} (next batch at offset {next_offset}): {reason}")]
    CorruptAt { topic: String, partition: u32, offset: u64, next_offset: u64, reason: String },
    /// The partition is not in the topic (or the topic has no partitions).
    #[error("topic {topic} has no partition {partition}")]
    NoSuchPartition { topic: String, partition: u32 },
    /// A single record is larger than the producer's buffer or batch limit.
    #[error("record of {len} bytes exceeds limit {max}")]
    RecordTooLarge { len: usize, max: usize },
    /// An invalid setting.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// The producer or consumer was closed.
    #[error("closed")]
    Closed,
    /// A replica answered `OFFSET_OUT_OF_RANGE` for a position at or above its log start
    /// on a replicated partition: it is behind the consumer (a lagging or catching-up
    /// replica, or a stale route), not missing the data. Retried with a metadata refresh
    /// for up to `ClientConfig::failover_timeout`, then treated as out of range.
    #[error("replica behind: {topic}/{partition} offset {offset} beyond its log")]
    ReplicaBehind { topic: String, partition: u32, offset: u64 },
    /// The feature is not available yet.
    #[error("not supported yet: {0}")]
    NotSupported(&'static str),
    /// A produce was sent but its fate is unknown (the connection died, the request
    /// timed out, or the chain was reconfigured before it completed): the records may or
    /// may not be stored, and were not resent (see `ProducerConfig::unknown_outcome`).
    #[error("outcome unknown, records may or may not be stored: {0}")]
    UnknownOutcome(Box<ClientError>),
    /// The request would exceed the wire limits the node decodes with (e.g. more than
    /// 10 000 topics in one call); nothing was sent.
    #[error("request exceeds the wire limits: {0}")]
    RequestOverLimit(String),
}

impl ClientError {
    /// The wire error code closest to this failure.
    pub fn code(&self) -> ErrorCode {
        match self {
            ClientError::Server { code, .. } => *code,
            ClientError::Timeout => ErrorCode::RequestTimedOut,
            ClientError::CorruptBatch(_) | ClientError::Decompress(_) | ClientError::CorruptAt { .. } => {
                ErrorCode::CorruptBatch
            }
            ClientError::NoSuchPartition { .. } => ErrorCode::UnknownPartition,
            ClientError::RecordTooLarge { .. } => ErrorCode::MessageTooLarge,
            ClientError::Config(_) => ErrorCode::InvalidConfig,
            ClientError::NotSupported(_) => ErrorCode::UnknownApi,
            ClientError::UnknownOutcome(cause) => cause.code(),
            ClientError::ReplicaBehind { .. } => ErrorCode::OffsetOutOfRange,
            _ => ErrorCode::Unknown,
        }
    }

    /// Whether retrying (after a metadata refresh and reconnect) may succeed.
    pub fn is_retriable(&self) -> bool {
        match self {
            ClientError::Connect { .. } | ClientError::Disconnected { .. } | ClientError::Timeout => true,
            ClientError::ReplicaBehind { .. } => true,
            ClientError::Server { code, .. } => {
                code.is_retriable()
                    || matches!(code, ErrorCode::UnknownTopic | ErrorCode::UnknownPartition | ErrorCode::StaleEpoch)
            }
            _ => false,
        }
    }

    /// Whether this failure is what a node failure or a chain reconfiguration looks like
    /// from the client (dead or unreachable node, a member that is no longer head,
    /// fencing, a chain too short for the moment). Such requests are retried, after a
    /// metadata refresh, until `ClientConfig::failover_timeout` (idempotent requests)
    /// or the producer's `delivery_timeout`.
    pub fn is_failover(&self) -> bool {
        match self {
            ClientError::Connect { .. } | ClientError::Disconnected { .. } | ClientError::Timeout => true,
            ClientError::ReplicaBehind { .. } => true,
            ClientError::Server { code, .. } => matches!(
                code,
                ErrorCode::NotOwner
                    | ErrorCode::StaleEpoch
                    | ErrorCode::NotEnoughReplicas
                    | ErrorCode::RequestTimedOut
                    | ErrorCode::CoordinatorNotAvailable
                    | ErrorCode::ShuttingDown
            ),
            _ => false,
        }
    }

    /// Whether a produce that failed like this may nevertheless have been stored: the
    /// request was sent and then the connection died or timed out, or the node appended
    /// it but could not complete it (`REQUEST_TIMED_OUT`, `NOT_ENOUGH_REPLICAS` = chain
    /// reconfigured mid-produce, `STALE_EPOCH` = the head was fenced mid-produce).
    /// `NOT_OWNER`, `THROTTLED`, `SHUTTING_DOWN`, unknown topic/partition and connect
    /// failures are refusals before any append: resending those cannot duplicate.
    pub fn outcome_unknown(&self) -> bool {
        match self {
            ClientError::Disconnected { .. } | ClientError::Timeout => true,
            ClientError::Server { code, .. } => {
                matches!(code, ErrorCode::RequestTimedOut | ErrorCode::NotEnoughReplicas | ErrorCode::StaleEpoch)
            }
            ClientError::UnknownOutcome(_) => true,
            _ => false,
        }
    }

    /// Whether the metadata cache should be refreshed before a retry.
    pub fn needs_metadata_refresh(&self) -> bool {
        match self {
            ClientError::Server { code: ErrorCode::UnknownTopic | ErrorCode::UnknownPartition, .. } => true,
            _ => self.is_failover(),
        }
    }

    /// An error for a non-`None` code with an optional message from the node.
    pub fn server(code: ErrorCode, message: Option<String>) -> Self {
        ClientError::Server { code, message: message.unwrap_or_default() }
    }

    /// What this error says beyond its wire code: a server error's message (`None` if
    /// the node sent none), any other error's Display. For messages that wrap this error
    /// under the same code, so the code is said once.
    pub fn detail(&self) -> Option<String> {
        match self {
            ClientError::Server { code, message } => {
                (!message_suffix(*code, message).is_empty()).then(|| message.clone())
            }
            other => Some(other.to_string()),
        }
    }
}

/// `: message` after a server error's code; nothing when the node sent no message or
/// one that only repeats the code (`STORAGE_FULL`, not `STORAGE_FULL: STORAGE_FULL`).
fn message_suffix(code: ErrorCode, message: &str) -> String {
    if message.is_empty() || message == code.name() {
        String::new()
    } else {
        format!(": {message}")
    }
}

/// Result of a client operation.
pub type Result<T, E = ClientError> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    /// A server error says its code once, whether the node sent a message or not.
    #[test]
    fn server_error_says_its_code_once() {
        let cases = [
            (ClientError::server(ErrorCode::StorageFull, None), "STORAGE_FULL"),
            (ClientError::server(ErrorCode::StorageFull, Some("STORAGE_FULL".into())), "STORAGE_FULL"),
            (ClientError::server(ErrorCode::StorageFull, Some("disk 99% full".into())), "STORAGE_FULL: disk 99% full"),
        ];
        for (error, shown) in cases {
            assert_eq!(error.to_string(), shown);
        }
    }

    /// Wrapping an error under its own code keeps only what it says beyond the code.
    #[test]
    fn detail_leaves_out_the_code() {
        assert_eq!(ClientError::server(ErrorCode::NotOwner, None).detail(), None);
        let with_message = ClientError::server(ErrorCode::NotOwner, Some("node 2 is head".into()));
        assert_eq!(with_message.detail().as_deref(), Some("node 2 is head"));
        assert_eq!(ClientError::Timeout.detail().as_deref(), Some("request timed out"));
    }
}
