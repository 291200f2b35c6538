//! Points in time given on the command line (`consume --from-timestamp`,
//! `group reset-offsets --to-datetime`): one parser, so both flags accept the same forms.

/// Milliseconds since the Unix epoch, or an RFC 3339 time with any UTC offset
/// (`2026-12-03T10:00:00Z`, `2026-12-03T12:00:00.5+02:00`).
pub(crate) fn parse_time_ms(text: &str) -> Result<i64, String> {
    if let Ok(ms) = text.parse::<i64>() {
        return Ok(ms);
    }
    let at = time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339).map_err(|e| {
        format!("{text:?}: expected epoch milliseconds or an RFC 3339 time like 2026-12-03T10:00:00Z ({e})")
    })?;
    i64::try_from(at.unix_timestamp_nanos() / 1_000_000).map_err(|_| format!("{text:?} is out of range"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn epoch_ms_and_rfc3339_with_any_offset() {
        assert_eq!(parse_time_ms("1700000000000"), Ok(1_700_000_000_000));
        assert_eq!(parse_time_ms("2023-11-14T22:13:20Z"), Ok(1_700_000_000_000));
        assert_eq!(parse_time_ms("2023-11-14T22:13:20.250Z"), Ok(1_700_000_000_250));
        assert_eq!(parse_time_ms("2023-11-15T00:13:20.5+02:00"), Ok(1_700_000_000_500));
        assert!(parse_time_ms("2023-11-14T22:13:20").is_err(), "RFC 3339 needs an offset");
        assert!(parse_time_ms("2023-11-14").is_err());
        assert!(parse_time_ms("yesterday").unwrap_err().contains("RFC 3339"));
    }
}
