//! Topic definitions as the node stores and passes them around: [`TopicConfig`] (one
//! topic's name, partition count, replication factor and config overrides), the
//! client-settable config keys and their bounds, and the per-topic [`LogConfig`] they
//! yield. A leaf of the crate: it names only the log's config type, so the registry
//! (`shard::registry`), the control plane and the group coordinator all import it
//! without importing each other.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use strand_wire::msg::TopicConfigValue;
use strand_wire::ErrorCode;

use crate::log::LogConfig;

/// One topic's definition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopicConfig {
    pub name: String,
    pub partitions: u32,
    pub replication_factor: u16,
    #[serde(default)]
    pub configs: BTreeMap<String, String>,
}

/// Whether `topic` is internal (reserved prefix `__`).
pub fn is_internal_topic(topic: &str) -> bool {
    topic.starts_with("__")
}

/// Why a topic's config overrides were refused.
#[derive(Debug, thiserror::Error)]
pub enum TopicConfigError {
    #[error("bad topic config {0:?}: keys are {TOPIC_CONFIG_KEYS:?}, values unsigned integers")]
    Key(String),
    #[error("topic config {key}={value} is out of bounds: must be {bound}")]
    Bound { key: String, value: u64, bound: String },
}

impl TopicConfigError {
    /// The wire error to answer with.
    pub fn code(&self) -> ErrorCode {
        ErrorCode::InvalidConfig
    }
}

/// Topic config keys a create request may carry (applied node-wide for now).
pub const TOPIC_CONFIG_KEYS: [&str; 4] = ["retention_bytes", "retention_ms", "segment_bytes", "segment_ms"];

/// Smallest client-settable `segment_bytes`: each segment costs descriptors and a file, so
/// tiny segments turn a stream of small batches into a stream of files.
pub const TOPIC_SEGMENT_BYTES_MIN: u64 = 1 << 20;
/// Largest client-settable `segment_bytes`.
pub const TOPIC_SEGMENT_BYTES_MAX: u64 = 1 << 40;
/// Smallest client-settable `segment_ms` (a roll per millisecond is a file per millisecond).
pub const TOPIC_SEGMENT_MS_MIN: u64 = 1000;
/// Smallest client-settable `retention_ms`.
pub const TOPIC_RETENTION_MS_MIN: u64 = 1000;
/// Smallest client-settable `retention_bytes`.
pub const TOPIC_RETENTION_BYTES_MIN: u64 = 1 << 20;

/// Bounds of a config change: at most this many keys set or deleted in one request
/// (each key at most once is the real bound; duplicates are tolerated up to this).
pub const TOPIC_CONFIG_CHANGES_MAX: usize = 16;

/// `Ok` if `key` is a client-settable topic config key.
pub fn check_config_key(key: &str) -> Result<(), TopicConfigError> {
    match config_bounds(key) {
        Some(_) => Ok(()),
        None => Err(TopicConfigError::Key(key.to_string())),
    }
}

/// `topic` with its overrides changed: `delete` keys removed (each must be a known key),
/// `set` added or replaced; the result validated like a create's overrides. Shared by the
/// single-node registry and the control plane, so both refuse the same changes.
pub fn changed_configs(
    topic: &TopicConfig,
    set: &[(String, String)],
    delete: &[String],
) -> Result<TopicConfig, TopicConfigError> {
    let mut changed = topic.clone();
    for key in delete {
        check_config_key(key)?;
        changed.configs.remove(key);
    }
    changed.configs.extend(set.iter().cloned());
    topic_log_config(&LogConfig::default(), &changed.name, &changed.configs)?;
    Ok(changed)
}

/// Every client-settable key of a topic with its effective value (`"none"` = unset)
/// and whether `configs` overrides it, in key order; for ListTopics.
pub fn effective_configs(base: &LogConfig, topic: &str, configs: &BTreeMap<String, String>) -> Vec<TopicConfigValue> {
    let log = topic_log_config(base, topic, configs).unwrap_or_else(|_| base.clone());
    let show = |v: Option<u64>| v.map_or_else(|| "none".to_string(), |v| v.to_string());
    TOPIC_CONFIG_KEYS
        .iter()
        .map(|&key| {
            let value = match key {
                "retention_bytes" => show(log.retention_bytes),
                "retention_ms" => show(log.retention_ms),
                "segment_bytes" => log.segment_bytes.to_string(),
                _ => show(log.segment_ms),
            };
            TopicConfigValue { key: key.to_string(), value, is_override: configs.contains_key(key) }
        })
        .collect()
}

/// The bound of a client-settable topic config key, as `(min, max)`.
fn config_bounds(key: &str) -> Option<(u64, u64)> {
    match key {
        "segment_bytes" => Some((TOPIC_SEGMENT_BYTES_MIN, TOPIC_SEGMENT_BYTES_MAX)),
        "segment_ms" => Some((TOPIC_SEGMENT_MS_MIN, u64::MAX)),
        "retention_ms" => Some((TOPIC_RETENTION_MS_MIN, u64::MAX)),
        "retention_bytes" => Some((TOPIC_RETENTION_BYTES_MIN, u64::MAX)),
        _ => None,
    }
}

/// Largest segment of `__consumer_offsets` (see `shard/groups/compact.rs`).
pub const OFFSETS_SEGMENT_BYTES: u64 = 4 << 20;

/// `base` with a topic's overrides applied. Internal topics (`__…`, e.g. the consumer
/// offsets) never inherit node-wide retention: deleting their old segments by age or size
/// would lose the committed offsets of idle groups (the offsets topic is compacted by
/// snapshots instead, and its segments are capped at [`OFFSETS_SEGMENT_BYTES`]).
pub fn topic_log_config(
    base: &LogConfig,
    topic: &str,
    configs: &BTreeMap<String, String>,
) -> Result<LogConfig, TopicConfigError> {
    let mut log = base.clone();
    if is_internal_topic(topic) {
        log.retention_bytes = None;
        log.retention_ms = None;
    }
    if topic == crate::groups::OFFSETS_TOPIC {
        // Snapshots delete whole segments below them: replay reads at most one stale one.
        log.segment_bytes = log.segment_bytes.min(OFFSETS_SEGMENT_BYTES);
    }
    for (key, value) in configs {
        let v: u64 = value.parse().map_err(|_| TopicConfigError::Key(format!("{key}={value}")))?;
        let (min, max) = config_bounds(key).ok_or_else(|| TopicConfigError::Key(format!("{key}={value}")))?;
        if v < min || v > max {
            let bound = if max == u64::MAX { format!(">= {min}") } else { format!("in [{min}, {max}]") };
            return Err(TopicConfigError::Bound { key: key.clone(), value: v, bound });
        }
        match key.as_str() {
            "retention_bytes" => log.retention_bytes = Some(v),
            "retention_ms" => log.retention_ms = Some(v),
            "segment_bytes" => log.segment_bytes = v,
            "segment_ms" => log.segment_ms = Some(v),
            _ => return Err(TopicConfigError::Key(format!("{key}={value}"))),
        }
    }
    Ok(log)
}
