//! The harness's one error type. Every failure the harness itself can hit (spawning the
//! node, talking to it, reading `/proc`) is a [`HarnessError`]; tests turn them into
//! assertion failures with context. Guarantee violations found by the checker are a
//! separate type, [`crate::ledger::Violation`], so a test can tell "the harness broke"
//! from "the node broke a promise".

use std::path::PathBuf;

use strand_wire::ErrorCode;

/// A failure of the harness or of its conversation with the node.
#[derive(Debug, thiserror::Error)]
pub enum HarnessError {
    /// Spawning, signalling or waiting for the node process failed.
    #[error("node process {action}: {source}")]
    Process { action: &'static str, source: std::io::Error },
    /// The node did not print its listening line in time.
    #[error("node did not start within {timeout_ms} ms; exit status {status:?}; last log lines:\n{log_tail}")]
    StartTimeout { timeout_ms: u128, status: Option<String>, log_tail: String },
    /// The node exited before it was serving.
    #[error("node exited during startup with {status}; last log lines:\n{log_tail}")]
    ExitedAtStart { status: String, log_tail: String },
    /// The `strand-node` binary could not be found or built.
    #[error("strand-node binary unavailable at {path:?}: {reason}")]
    Binary { path: PathBuf, reason: String },
    /// A socket operation failed (the node closed the connection, a timeout, a refused connect).
    #[error("network: {0}")]
    Io(#[from] std::io::Error),
    /// The node sent bytes that are not a valid response frame.
    #[error("invalid response from node: {0}")]
    Protocol(String),
    /// The node answered with a top-level error.
    #[error("node answered {code:?}: {message}")]
    Server { code: ErrorCode, message: String },
    /// A response did not match the request (wrong kind, wrong correlation id).
    #[error("unexpected response: {0}")]
    Unexpected(String),
    /// A fetched batch failed validation on the client side: the node served bad bytes.
    #[error("node served an invalid batch at offset {offset} of partition {partition}: {reason}")]
    CorruptFetch { partition: u32, offset: u64, reason: String },
    /// `/proc/PID/status` could not be read or parsed.
    #[error("cannot read memory of pid {pid}: {reason}")]
    Proc { pid: u32, reason: String },
}

impl HarnessError {
    /// The wire error code of a `Server` error, if it is one.
    pub fn server_code(&self) -> Option<ErrorCode> {
        match self {
            HarnessError::Server { code, .. } => Some(*code),
            _ => None,
        }
    }
}
