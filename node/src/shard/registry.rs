//! The node's topic registry: the set of topics and their partition counts,
//! persisted as `<data>/topics.json`.
//!
//! Invariants: the file is replaced atomically (write temp, fsync, rename, fsync
//! the directory), so after a crash it holds either the old or the new registry;
//! every stored topic passed `strand_core::topic::validate_topic`. The registry is
//! control-plane state behind a mutex; shards keep their own copy, updated by
//! broadcast, so the data path never takes the lock.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use strand_core::topic::{validate_topic, TopicError};
use strand_wire::ErrorCode;

use crate::log::LogConfig;

const REGISTRY_FILE: &str = "topics.json";
const REGISTRY_VERSION: u32 = 1;

/// One topic's definition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopicConfig {
    pub name: String,
    pub partitions: u32,
    pub replication_factor: u16,
    #[serde(default)]
    pub configs: BTreeMap<String, String>,
}

#[derive(Debug, Serialize, Deserialize)]
struct RegistryFile {
    version: u32,
    topics: Vec<TopicConfig>,
}

/// Why a registry operation failed.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("topic {0} already exists")]
    Exists(String),
    #[error("topic {0} does not exist")]
    Unknown(String),
    #[error(transparent)]
    Invalid(#[from] TopicError),
    #[error("only replication factor 1 is supported on a single node, not {0}")]
    ReplicationFactor(u16),
    #[error("bad topic config {0:?}: keys are {TOPIC_CONFIG_KEYS:?}, values unsigned integers")]
    ConfigKey(String),
    #[error("topic registry {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("topic registry {path} is corrupt: {reason}")]
    Corrupt { path: PathBuf, reason: String },
}

impl RegistryError {
    /// The wire error to answer with.
    pub fn code(&self) -> ErrorCode {
        match self {
            RegistryError::Exists(_) => ErrorCode::TopicAlreadyExists,
            RegistryError::Unknown(_) => ErrorCode::UnknownTopic,
            RegistryError::Invalid(e) => e.code(),
            RegistryError::ReplicationFactor(_) | RegistryError::ConfigKey(_) => ErrorCode::InvalidConfig,
            RegistryError::Io { .. } => ErrorCode::StorageError,
            RegistryError::Corrupt { .. } => ErrorCode::CorruptStorage,
        }
    }
}

/// Topic config keys a create request may carry (applied node-wide for now).
pub const TOPIC_CONFIG_KEYS: [&str; 4] = ["retention_bytes", "retention_ms", "segment_bytes", "segment_ms"];

/// `base` with a topic's overrides applied. Internal topics (`__…`, e.g. the consumer
/// offsets) never inherit node-wide retention: deleting their old segments would lose the
/// committed offsets of idle groups (there is no compaction yet).
pub fn topic_log_config(
    base: &LogConfig,
    topic: &str,
    configs: &BTreeMap<String, String>,
) -> Result<LogConfig, RegistryError> {
    let mut log = base.clone();
    if crate::groups::is_internal_topic(topic) {
        log.retention_bytes = None;
        log.retention_ms = None;
    }
    for (key, value) in configs {
        let v: u64 = value.parse().map_err(|_| RegistryError::ConfigKey(format!("{key}={value}")))?;
        match key.as_str() {
            "retention_bytes" => log.retention_bytes = Some(v),
            "retention_ms" => log.retention_ms = Some(v),
            "segment_bytes" if v > 0 => log.segment_bytes = v,
            "segment_ms" => log.segment_ms = Some(v),
            _ => return Err(RegistryError::ConfigKey(format!("{key}={value}"))),
        }
    }
    Ok(log)
}

/// The persisted topic set.
#[derive(Debug)]
pub struct TopicRegistry {
    dir: PathBuf,
    topics: BTreeMap<String, TopicConfig>,
}

impl TopicRegistry {
    /// Loads `<dir>/topics.json`, or an empty registry if there is none.
    pub fn load(dir: &Path) -> Result<Self, RegistryError> {
        let path = dir.join(REGISTRY_FILE);
        let io = |source| RegistryError::Io { path: path.clone(), source };
        let text = match fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(e) => return Err(io(e)),
        };
        let mut topics = BTreeMap::new();
        if !text.is_empty() {
            let corrupt = |reason: String| RegistryError::Corrupt { path: path.clone(), reason };
            let file: RegistryFile = serde_json::from_str(&text).map_err(|e| corrupt(e.to_string()))?;
            if file.version != REGISTRY_VERSION {
                return Err(corrupt(format!("unknown version {}", file.version)));
            }
            for topic in file.topics {
                validate_topic(&topic.name, topic.partitions).map_err(|e| corrupt(e.to_string()))?;
                topics.insert(topic.name.clone(), topic);
            }
        }
        Ok(TopicRegistry { dir: dir.to_path_buf(), topics })
    }

    /// All topics, by name.
    pub fn topics(&self) -> &BTreeMap<String, TopicConfig> {
        &self.topics
    }

    /// Adds a topic and persists the registry.
    pub fn create(&mut self, topic: TopicConfig) -> Result<(), RegistryError> {
        validate_topic(&topic.name, topic.partitions)?;
        if topic.replication_factor > 1 {
            return Err(RegistryError::ReplicationFactor(topic.replication_factor));
        }
        topic_log_config(&LogConfig::default(), &topic.name, &topic.configs)?;
        if self.topics.contains_key(&topic.name) {
            return Err(RegistryError::Exists(topic.name));
        }
        let name = topic.name.clone();
        self.topics.insert(name.clone(), topic);
        if let Err(e) = self.persist() {
            self.topics.remove(&name);
            return Err(e);
        }
        Ok(())
    }

    /// Removes a topic and persists the registry.
    pub fn delete(&mut self, name: &str) -> Result<TopicConfig, RegistryError> {
        let topic = self.topics.remove(name).ok_or_else(|| RegistryError::Unknown(name.to_string()))?;
        if let Err(e) = self.persist() {
            self.topics.insert(name.to_string(), topic);
            return Err(e);
        }
        Ok(topic)
    }

    fn persist(&self) -> Result<(), RegistryError> {
        let path = self.dir.join(REGISTRY_FILE);
        let tmp = self.dir.join(format!("{REGISTRY_FILE}.tmp"));
        let io = |source| RegistryError::Io { path: path.clone(), source };
        let file = RegistryFile { version: REGISTRY_VERSION, topics: self.topics.values().cloned().collect() };
        let text = serde_json::to_vec_pretty(&file).map_err(|e| io(std::io::Error::other(e)))?;
        let mut out = File::create(&tmp).map_err(io)?;
        out.write_all(&text).map_err(io)?;
        out.sync_all().map_err(io)?;
        fs::rename(&tmp, &path).map_err(io)?;
        File::open(&self.dir).and_then(|d| d.sync_all()).map_err(io)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn topic(name: &str, partitions: u32) -> TopicConfig {
        TopicConfig { name: name.into(), partitions, replication_factor: 1, configs: BTreeMap::new() }
    }

    #[test]
    fn create_delete_survive_reload() {
        let dir = tempfile::tempdir().unwrap();
        let mut reg = TopicRegistry::load(dir.path()).unwrap();
        assert!(reg.topics().is_empty());
        reg.create(topic("a", 3)).unwrap();
        reg.create(topic("b", 1)).unwrap();
        assert!(matches!(reg.create(topic("a", 1)), Err(RegistryError::Exists(_))));
        assert_eq!(reg.create(topic("bad/name", 1)).unwrap_err().code(), ErrorCode::InvalidTopicName);
        assert_eq!(reg.create(topic("z", 0)).unwrap_err().code(), ErrorCode::InvalidConfig);
        let mut bad = topic("c", 1);
        bad.configs.insert("retention_ms".into(), "soon".into());
        assert_eq!(reg.create(bad).unwrap_err().code(), ErrorCode::InvalidConfig);
        let mut good = topic("c", 1);
        good.configs.insert("retention_ms".into(), "60000".into());
        let log = topic_log_config(&LogConfig::default(), "c", &good.configs).unwrap();
        assert_eq!(log.retention_ms, Some(60_000));
        let node_wide = LogConfig { retention_ms: Some(1), retention_bytes: Some(1), ..LogConfig::default() };
        let user = topic_log_config(&node_wide, "c", &BTreeMap::new()).unwrap();
        assert_eq!((user.retention_ms, user.retention_bytes), (Some(1), Some(1)));
        let offsets = topic_log_config(&node_wide, crate::groups::OFFSETS_TOPIC, &BTreeMap::new()).unwrap();
        assert_eq!((offsets.retention_ms, offsets.retention_bytes), (None, None), "offsets must outlive retention");
        reg.create(good).unwrap();
        reg.delete("c").unwrap();
        reg.delete("b").unwrap();
        assert_eq!(reg.delete("b").unwrap_err().code(), ErrorCode::UnknownTopic);

        let again = TopicRegistry::load(dir.path()).unwrap();
        assert_eq!(again.topics().keys().collect::<Vec<_>>(), vec!["a"]);
        assert_eq!(again.topics()["a"].partitions, 3);
        assert!(!dir.path().join("topics.json.tmp").exists());
    }

    #[test]
    fn corrupt_file_is_reported() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join(REGISTRY_FILE), b"{not json").unwrap();
        assert_eq!(TopicRegistry::load(dir.path()).unwrap_err().code(), ErrorCode::CorruptStorage);
    }
}
