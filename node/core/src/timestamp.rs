//! Batch timestamp bounds (IO-free): Kafka's `message.timestamp.before.max.ms` /
//! `message.timestamp.after.max.ms`. The caller passes the node's clock in.
//!
//! A batch's `first_timestamp` and `max_timestamp` must each be [`TIMESTAMP_NONE`] (the
//! producer gave none) or a time in `[now - before_max_ms, now + after_max_ms]`; any other
//! negative value is refused whatever the bounds, so a consumer never sees a time before
//! 1970 or `i64::MAX`.

use strand_wire::ErrorCode;

/// The timestamp of a batch whose producer set none.
pub const TIMESTAMP_NONE: i64 = -1;

/// How far a batch timestamp may lie from the node's clock, in ms.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimestampBounds {
    /// Largest age (`u64::MAX` = any).
    pub before_max_ms: u64,
    /// Largest distance into the future.
    pub after_max_ms: u64,
}

/// Why a batch's timestamps were refused; the message names the bound.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TimestampError {
    #[error("invalid timestamp {timestamp}: negative and not -1 (no timestamp)")]
    Negative { timestamp: i64 },
    #[error(
        "invalid timestamp {timestamp}: more than message_timestamp_before_max_ms = {before_max_ms} ms \
         before the node's clock {now_ms}"
    )]
    TooOld { timestamp: i64, now_ms: i64, before_max_ms: u64 },
    #[error(
        "invalid timestamp {timestamp}: more than message_timestamp_after_max_ms = {after_max_ms} ms \
         after the node's clock {now_ms}"
    )]
    TooNew { timestamp: i64, now_ms: i64, after_max_ms: u64 },
}

impl TimestampError {
    /// The wire error to answer with.
    pub fn code(&self) -> ErrorCode {
        ErrorCode::InvalidRequest
    }
}

/// Checks a batch's `first_timestamp` and `max_timestamp` at `now_ms`.
pub fn check_batch(first: i64, max: i64, now_ms: i64, bounds: TimestampBounds) -> Result<(), TimestampError> {
    check_one(first, now_ms, bounds)?;
    check_one(max, now_ms, bounds)
}

fn check_one(timestamp: i64, now_ms: i64, bounds: TimestampBounds) -> Result<(), TimestampError> {
    if timestamp == TIMESTAMP_NONE {
        return Ok(());
    }
    if timestamp < 0 {
        return Err(TimestampError::Negative { timestamp });
    }
    // i128: `timestamp - now_ms` and the bounds cannot overflow there.
    let ahead = i128::from(timestamp) - i128::from(now_ms);
    if ahead > i128::from(bounds.after_max_ms) {
        return Err(TimestampError::TooNew { timestamp, now_ms, after_max_ms: bounds.after_max_ms });
    }
    if -ahead > i128::from(bounds.before_max_ms) {
        return Err(TimestampError::TooOld { timestamp, now_ms, before_max_ms: bounds.before_max_ms });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_700_000_000_000;
    const HOUR: u64 = 3_600_000;

    #[test]
    fn bounds() {
        let any_age = TimestampBounds { before_max_ms: u64::MAX, after_max_ms: HOUR };
        let day = TimestampBounds { before_max_ms: 24 * HOUR, after_max_ms: 0 };
        let h = HOUR as i64;
        let cases: [(i64, i64, TimestampBounds, bool); 12] = [
            (NOW, NOW, any_age, true),
            (-1, -1, any_age, true),
            (-1, NOW, any_age, true),
            (0, 0, any_age, true),
            (-2, NOW, any_age, false),
            (i64::MIN, NOW, any_age, false),
            (NOW, NOW + h, any_age, true),
            (NOW, NOW + h + 1, any_age, false),
            (NOW, i64::MAX, any_age, false),
            (NOW - 24 * h, NOW, day, true),
            (NOW - 24 * h - 1, NOW, day, false),
            (NOW, NOW + 1, day, false),
        ];
        for (first, max, b, ok) in cases {
            assert_eq!(check_batch(first, max, NOW, b).is_ok(), ok, "{first} {max} {b:?}");
        }
        let e = check_batch(NOW, i64::MAX, NOW, any_age).unwrap_err();
        assert!(e.to_string().contains("message_timestamp_after_max_ms = 3600000"), "{e}");
        assert!(check_batch(-5, -1, NOW, any_age).unwrap_err().to_string().contains("-5"));
    }
}
