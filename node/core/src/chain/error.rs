//! The operating errors of the chain core, each mapped to a stable wire code.

use strand_wire::ErrorCode;

use super::types::Role;

/// Why the chain core refused a request or message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ChainError {
    /// A produce reached a replica that is not its chain's head.
    #[error("not the chain head (role {role:?})")]
    NotHead { role: Role },
    /// The replica learned of a newer epoch; it neither appends nor acknowledges.
    #[error("fenced by a newer chain epoch")]
    Fenced,
    /// The replica was head when the produce arrived but a reconfiguration demoted it
    /// before the produce completed; the data may or may not survive.
    #[error("chain reconfigured before the produce completed")]
    Reconfigured,
    /// Too many produces pending or too many uncommitted bytes; retry later.
    #[error("too much unacknowledged data in flight")]
    Throttled,
    /// A malformed request or message; the text says what.
    #[error("invalid: {0}")]
    Invalid(&'static str),
    /// A configuration that is structurally invalid.
    #[error("invalid chain configuration")]
    InvalidConfig,
}

impl ChainError {
    /// The wire code answered for this error.
    pub fn code(&self) -> ErrorCode {
        match self {
            ChainError::NotHead { .. } => ErrorCode::NotOwner,
            ChainError::Fenced => ErrorCode::StaleEpoch,
            ChainError::Reconfigured => ErrorCode::NotEnoughReplicas,
            ChainError::Throttled => ErrorCode::Throttled,
            ChainError::Invalid(_) => ErrorCode::InvalidRequest,
            ChainError::InvalidConfig => ErrorCode::InvalidConfig,
        }
    }
}
