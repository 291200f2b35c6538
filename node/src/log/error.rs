//! One error enum per log operation, each mapping to a stable `strand_wire::ErrorCode`.

use std::io;
use std::path::PathBuf;
use strand_wire::batch::BatchError;
use strand_wire::ErrorCode;

/// Why an append was refused; nothing of the request was appended.
#[derive(Debug, thiserror::Error)]
pub enum AppendError {
    #[error("corrupt batch: {0}")]
    Corrupt(BatchError),
    #[error("batch of {len_bytes} bytes exceeds the limit of {limit_bytes}")]
    TooLarge { len_bytes: u64, limit_bytes: u64 },
    #[error("storage full: {reason}")]
    StorageFull { reason: String },
    #[error("storage io error: {0}")]
    Io(io::Error),
    /// An earlier failure of the log refused or discarded this append: a failed fdatasync or
    /// close poisoned the log, a failed write discarded the queue, or a truncation or reset
    /// discarded it. Carries that failure's errno (see [`Failure`]).
    #[error("storage io error: {0}")]
    Failed(Failure),
}

impl AppendError {
    pub fn code(&self) -> ErrorCode {
        match self {
            // A compressed batch expanding past the node's bound is too large, not corrupt.
            AppendError::Corrupt(BatchError::DecompressedTooLarge { .. }) => ErrorCode::MessageTooLarge,
            AppendError::Corrupt(_) => ErrorCode::CorruptBatch,
            AppendError::TooLarge { .. } => ErrorCode::MessageTooLarge,
            AppendError::StorageFull { .. } => ErrorCode::StorageFull,
            AppendError::Io(_) | AppendError::Failed(_) => ErrorCode::StorageError,
        }
    }

    /// The OS error code behind this refusal, when an OS error caused it.
    pub fn raw_os_error(&self) -> Option<i32> {
        match self {
            AppendError::Io(e) => e.raw_os_error(),
            AppendError::Failed(f) => f.errno(),
            AppendError::StorageFull { .. } | AppendError::Corrupt(_) | AppendError::TooLarge { .. } => None,
        }
    }

    /// Classifies a write failure: out-of-space conditions become `StorageFull`.
    pub(crate) fn from_io(e: io::Error) -> Self {
        if is_out_of_space(&e) {
            AppendError::StorageFull { reason: e.to_string() }
        } else {
            AppendError::Io(e)
        }
    }
}

pub(crate) fn is_out_of_space(e: &io::Error) -> bool {
    matches!(e.kind(), io::ErrorKind::StorageFull | io::ErrorKind::QuotaExceeded)
        || e.raw_os_error() == Some(libc::ENOSPC)
}

/// A failure the log remembers and repeats in later errors (a poisoned log, appends discarded
/// by a failed write): its message and the raw OS error code, so that a repeated error is
/// classified by its errno like the first, never by parsing text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    reason: String,
    errno: Option<i32>,
}

impl Failure {
    /// `reason` (which should say what failed, with the error's text) and the OS error code
    /// that caused it, if any.
    pub(crate) fn new(reason: String, errno: Option<i32>) -> Self {
        Failure { reason, errno }
    }

    /// A failure not caused by the OS (the log was closed, a discarding truncation).
    pub(crate) fn other(reason: impl Into<String>) -> Self {
        Failure { reason: reason.into(), errno: None }
    }

    pub fn errno(&self) -> Option<i32> {
        self.errno
    }

    pub fn reason(&self) -> &str {
        &self.reason
    }
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.reason)
    }
}

/// Why a read or lookup failed.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("offset {offset} out of range [{log_start}, {log_end}]")]
    OffsetOutOfRange { offset: u64, log_start: u64, log_end: u64 },
    #[error("corrupt segment {path:?} at position {pos}: {reason}")]
    CorruptSegment { path: PathBuf, pos: u64, reason: String },
    #[error("storage io error: {0}")]
    Io(#[from] io::Error),
}

impl ReadError {
    pub fn code(&self) -> ErrorCode {
        match self {
            ReadError::OffsetOutOfRange { .. } => ErrorCode::OffsetOutOfRange,
            ReadError::CorruptSegment { .. } => ErrorCode::CorruptStorage,
            ReadError::Io(_) => ErrorCode::StorageError,
        }
    }
}

/// Failures of open, flush, retention, close and delete.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    #[error("storage io error: {0}")]
    Io(#[from] io::Error),
    #[error("corrupt segment {path:?} at position {pos}: {reason}")]
    CorruptSegment { path: PathBuf, pos: u64, reason: String },
    /// The log refuses further writes: an earlier fdatasync failed (a failed fsync is never
    /// retried), or the log was closed. The reason says which; the errno is kept.
    #[error("log unusable: {0}")]
    Poisoned(Failure),
}

impl LogError {
    pub fn code(&self) -> ErrorCode {
        match self {
            LogError::Io(e) if is_out_of_space(e) => ErrorCode::StorageFull,
            LogError::Io(_) | LogError::Poisoned(_) => ErrorCode::StorageError,
            LogError::CorruptSegment { .. } => ErrorCode::CorruptStorage,
        }
    }

    /// The OS error code behind this failure, also for a poisoned log (the code of the
    /// failure that poisoned it).
    pub fn raw_os_error(&self) -> Option<i32> {
        match self {
            LogError::Io(e) => e.raw_os_error(),
            LogError::Poisoned(f) => f.errno(),
            LogError::CorruptSegment { .. } => None,
        }
    }

    /// The closed-log refusal (lock or verification permit unavailable).
    pub(crate) fn closed() -> Self {
        LogError::Poisoned(Failure::other("log is closed"))
    }
}

/// Why a truncation was refused or failed.
#[derive(Debug, thiserror::Error)]
pub enum TruncateError {
    #[error("truncation point {to} is past the log end {log_end}")]
    BeyondEnd { to: u64, log_end: u64 },
    #[error("truncation point {to} is below the log start {log_start} (retention removed it)")]
    BelowStart { to: u64, log_start: u64 },
    #[error(
        "truncation point {to} is not a batch boundary (the batch at position {pos} of {path:?} starts at {found})"
    )]
    NotBoundary { to: u64, path: PathBuf, pos: u64, found: u64 },
    #[error("truncation while appends are in flight (log end {log_end}, written to {written_end})")]
    AppendsInFlight { log_end: u64, written_end: u64 },
    #[error(transparent)]
    Read(#[from] ReadError),
    #[error(transparent)]
    Log(#[from] LogError),
}

impl TruncateError {
    pub fn code(&self) -> ErrorCode {
        match self {
            TruncateError::BeyondEnd { .. } | TruncateError::BelowStart { .. } | TruncateError::NotBoundary { .. } => {
                ErrorCode::OffsetOutOfRange
            }
            TruncateError::AppendsInFlight { .. } => ErrorCode::StorageError,
            TruncateError::Read(e) => e.code(),
            TruncateError::Log(e) => e.code(),
        }
    }
}

impl TruncateError {
    /// The OS error code behind this failure, if an OS error caused it.
    pub fn raw_os_error(&self) -> Option<i32> {
        match self {
            TruncateError::Log(e) => e.raw_os_error(),
            TruncateError::Read(ReadError::Io(e)) => e.raw_os_error(),
            _ => None,
        }
    }
}

impl From<io::Error> for TruncateError {
    fn from(e: io::Error) -> Self {
        TruncateError::Log(LogError::Io(e))
    }
}
