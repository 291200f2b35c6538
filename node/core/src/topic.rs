//! Topic naming and sizing rules (IO-free). Invariant: every topic the node
//! stores passed [`validate_topic`], so a name is always a safe single path
//! component (no `/`, never `.` or `..`).

use strand_wire::ErrorCode;

/// Longest topic name, in bytes.
pub const TOPIC_NAME_LEN_MAX: usize = 200;
/// Most partitions a topic may have.
pub const PARTITION_COUNT_MAX: u32 = 10_000;

/// Why a topic definition is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TopicError {
    #[error("topic name must be 1..={TOPIC_NAME_LEN_MAX} characters of [A-Za-z0-9._-], not \".\" or \"..\"")]
    InvalidName,
    #[error("partition count {0} outside 1..={PARTITION_COUNT_MAX}")]
    InvalidPartitionCount(u32),
}

impl TopicError {
    /// The wire error to answer with.
    pub fn code(&self) -> ErrorCode {
        match self {
            TopicError::InvalidName => ErrorCode::InvalidTopicName,
            TopicError::InvalidPartitionCount(_) => ErrorCode::InvalidConfig,
        }
    }
}

/// Checks a topic name: `[A-Za-z0-9._-]{1,200}`, and not `.` or `..`.
pub fn validate_topic_name(name: &str) -> Result<(), TopicError> {
    let charset_ok = name.bytes().all(|c| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'_' | b'-'));
    let len_ok = (1..=TOPIC_NAME_LEN_MAX).contains(&name.len());
    if !charset_ok || !len_ok || name == "." || name == ".." {
        return Err(TopicError::InvalidName);
    }
    Ok(())
}

/// Checks a whole topic definition.
pub fn validate_topic(name: &str, partitions: u32) -> Result<(), TopicError> {
    validate_topic_name(name)?;
    if !(1..=PARTITION_COUNT_MAX).contains(&partitions) {
        return Err(TopicError::InvalidPartitionCount(partitions));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_counts() {
        let long_ok = "a".repeat(TOPIC_NAME_LEN_MAX);
        let long_bad = "a".repeat(TOPIC_NAME_LEN_MAX + 1);
        let cases: &[(&str, u32, Result<(), TopicError>)] = &[
            ("orders", 1, Ok(())),
            ("a.b_c-D9", PARTITION_COUNT_MAX, Ok(())),
            (&long_ok, 3, Ok(())),
            (&long_bad, 3, Err(TopicError::InvalidName)),
            ("", 1, Err(TopicError::InvalidName)),
            (".", 1, Err(TopicError::InvalidName)),
            ("..", 1, Err(TopicError::InvalidName)),
            ("a/b", 1, Err(TopicError::InvalidName)),
            ("é", 1, Err(TopicError::InvalidName)),
            ("t", 0, Err(TopicError::InvalidPartitionCount(0))),
            ("t", PARTITION_COUNT_MAX + 1, Err(TopicError::InvalidPartitionCount(PARTITION_COUNT_MAX + 1))),
        ];
        for (name, partitions, expected) in cases {
            assert_eq!(&validate_topic(name, *partitions), expected, "{name:?} {partitions}");
        }
        assert_eq!(TopicError::InvalidName.code(), ErrorCode::InvalidTopicName);
    }
}
