//! Human sizes and durations in `strand.toml`: every key that holds bytes accepts
//! `"64MiB"`, `"1GB"`, `"512 KiB"` (bytesize: `KB`/`MB`/`GB` are powers of 1000, `KiB`/
//! `MiB`/`GiB` of 1024), every key that holds milliseconds or seconds accepts `"500ms"`,
//! `"30s"`, `"7d"`, `"1h 30m"` (humantime), and every one of them still accepts a plain
//! integer (in the key's own unit: bytes, ms, or s). The strings are turned into those
//! integers in the parsed TOML table before it is deserialized, so [`super::FileConfig`]
//! keeps plain integer fields and a bad value is reported with its key and text.

use std::time::Duration;

/// Keys whose value is a number of bytes.
pub const SIZE_KEYS: &[&str] = &[
    "frame_len_max",
    "connection_buffer_bytes",
    "segment_bytes",
    "retention_bytes",
    "min_free_bytes",
    "offset_metadata_max_bytes",
    "group_offsets_bytes_max",
    "quota_produce_bytes_per_sec",
    "quota_fetch_bytes_per_sec",
    "batch_decompressed_len_max",
];

/// Keys whose value is a number of milliseconds.
pub const MILLIS_KEYS: &[&str] = &[
    "replication_handshake_timeout_ms",
    "connections_max_idle_ms",
    "message_timestamp_after_max_ms",
    "message_timestamp_before_max_ms",
    "retention_check_ms",
    "segment_ms",
    "retention_ms",
    "offsets_retention_ms",
    "rebalance_cooldown_ms",
];

/// Keys whose value is a number of seconds.
pub const SECONDS_KEYS: &[&str] = &["lease_ttl_s"];

/// A size or duration string that could not be read: the key, the text, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnitError {
    pub key: &'static str,
    pub value: String,
    pub reason: String,
}

/// Replaces every size or duration given as a string in `table` by its integer.
pub fn normalize(table: &mut toml::Table) -> Result<(), UnitError> {
    let kinds = [(SIZE_KEYS, Kind::Bytes), (MILLIS_KEYS, Kind::Millis), (SECONDS_KEYS, Kind::Seconds)];
    for (keys, kind) in kinds {
        for &key in keys {
            let Some(toml::Value::String(text)) = table.get(key) else { continue };
            let error = |reason: String| UnitError { key, value: text.clone(), reason };
            let n = match kind {
                Kind::Bytes => parse_size(text),
                Kind::Millis => parse_duration(text, Duration::from_millis(1), "milliseconds"),
                Kind::Seconds => parse_duration(text, Duration::from_secs(1), "seconds"),
            }
            .map_err(error)?;
            let n = i64::try_from(n).map_err(|_| error("too large".to_string()))?;
            table.insert(key.to_string(), toml::Value::Integer(n));
        }
    }
    // Per-user quotas: `[quota_users.NAME]` tables of sizes.
    if let Some(toml::Value::Table(users)) = table.get_mut("quota_users") {
        for (_, user) in users.iter_mut() {
            let toml::Value::Table(user) = user else { continue };
            for key in ["produce_bytes_per_sec", "fetch_bytes_per_sec"] {
                let Some(toml::Value::String(text)) = user.get(key) else { continue };
                let error = |reason: String| UnitError { key: "quota_users", value: text.clone(), reason };
                let n = parse_size(text).map_err(error)?;
                let n = i64::try_from(n).map_err(|_| error("too large".to_string()))?;
                user.insert(key.to_string(), toml::Value::Integer(n));
            }
        }
    }
    Ok(())
}

#[derive(Clone, Copy)]
enum Kind {
    Bytes,
    Millis,
    Seconds,
}

/// Bytes from `"64MiB"`, `"1GB"`, `"1.5 KiB"` or `"1048576"`.
pub fn parse_size(text: &str) -> Result<u64, String> {
    const HINT: &str = "not a size (e.g. 64MiB, 1GB, 1048576)";
    let trimmed = text.trim();
    // bytesize reads a bare unit ("MiB") as 0 and an overflow as u64::MAX: refuse both.
    if !trimmed.starts_with(|c: char| c.is_ascii_digit()) {
        return Err(HINT.to_string());
    }
    let size = trimmed.parse::<bytesize::ByteSize>().map_err(|_| HINT.to_string())?;
    if size.as_u64() == u64::MAX && trimmed != u64::MAX.to_string() {
        return Err("too large".to_string());
    }
    Ok(size.as_u64())
}

/// A whole number of `unit`s from `"500ms"`, `"30s"`, `"7d"`, `"1h 30m"`, or a bare integer
/// (already in `unit`).
pub fn parse_duration(text: &str, unit: Duration, unit_name: &str) -> Result<u64, String> {
    let trimmed = text.trim();
    if let Ok(n) = trimmed.parse::<u64>() {
        return Ok(n);
    }
    let duration = humantime::parse_duration(trimmed)
        .map_err(|_| "not a duration (e.g. 500ms, 30s, 7d, 1h 30m, or an integer)".to_string())?;
    let units = duration.as_nanos() / unit.as_nanos();
    if duration.as_nanos() % unit.as_nanos() != 0 {
        return Err(format!("not a whole number of {unit_name}"));
    }
    u64::try_from(units).map_err(|_| "too large".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        for (text, bytes) in [
            ("64MiB", Some(64 << 20)),
            ("64 MiB", Some(64 << 20)),
            ("1GB", Some(1_000_000_000)),
            ("1GiB", Some(1 << 30)),
            ("1gib", Some(1 << 30)),
            ("512KiB", Some(512 << 10)),
            ("1048576", Some(1_048_576)),
            ("1.5KiB", Some(1536)),
            ("64 parsecs", None),
            ("MiB", None),
            ("", None),
            ("-1MiB", None),
            ("99999999999EiB", None),
        ] {
            assert_eq!(parse_size(text).ok(), bytes, "{text:?}");
        }
        assert_eq!(parse_size("64 parsecs").unwrap_err(), "not a size (e.g. 64MiB, 1GB, 1048576)");
    }

    #[test]
    fn durations() {
        let ms = |text| parse_duration(text, Duration::from_millis(1), "milliseconds");
        for (text, millis) in [
            ("500ms", Some(500)),
            ("30s", Some(30_000)),
            ("7d", Some(7 * 86_400_000)),
            ("1h 30m", Some(5_400_000)),
            ("250", Some(250)),
            ("1500us", None),
            ("soon", None),
            ("", None),
        ] {
            assert_eq!(ms(text).ok(), millis, "{text:?}");
        }
        let s = |text| parse_duration(text, Duration::from_secs(1), "seconds");
        assert_eq!(s("2m").unwrap(), 120);
        assert_eq!(s("1500ms").unwrap_err(), "not a whole number of seconds");
    }

    #[test]
    fn normalize_rewrites_strings_and_keeps_integers() {
        let mut table: toml::Table = toml::from_str(
            "segment_bytes = \"64MiB\"\nretention_ms = \"7d\"\nlease_ttl_s = \"10s\"\nmin_free_bytes = 5",
        )
        .unwrap();
        normalize(&mut table).unwrap();
        assert_eq!(table["segment_bytes"].as_integer(), Some(64 << 20));
        assert_eq!(table["retention_ms"].as_integer(), Some(7 * 86_400_000));
        assert_eq!(table["lease_ttl_s"].as_integer(), Some(10));
        assert_eq!(table["min_free_bytes"].as_integer(), Some(5));
        let mut bad: toml::Table = toml::from_str("segment_bytes = \"64 parsecs\"").unwrap();
        let err = normalize(&mut bad).unwrap_err();
        assert_eq!((err.key, err.value.as_str()), ("segment_bytes", "64 parsecs"));
        let mut huge: toml::Table = toml::from_str("retention_bytes = \"10EiB\"").unwrap();
        assert_eq!(normalize(&mut huge).unwrap_err().reason, "too large");
    }
}
