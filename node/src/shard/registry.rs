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

use super::admission::{FdBudget, FDS_PER_SEGMENT};
use crate::config::AdmissionLimits;
use crate::log::LogConfig;
// `shard/mod.rs` names `registry::topic_log_config`.
pub(super) use crate::topic::topic_log_config;
use crate::topic::{TopicConfig, TopicConfigError};

const REGISTRY_FILE: &str = "topics.json";
const REGISTRY_VERSION: u32 = 1;

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
    #[error(transparent)]
    Config(#[from] TopicConfigError),
    #[error("topic {topic} refused: the node has {count} topics, topics_max is {max}")]
    TopicsMax { topic: String, count: usize, max: u32 },
    #[error("topic {topic} refused: {partitions} partitions would bring the node to {total}, partitions_max is {max}")]
    PartitionsMax { topic: String, partitions: u32, total: u64, max: u32 },
    #[error(
        "topic {topic} refused: its {partitions} partitions need {needed} open files, only {available} are left \
         ({open} open, {pending} promised to topics being created, open_files_reserved={reserved}, \
         RLIMIT_NOFILE={limit}); raise the open-files limit (ulimit -n) or create fewer partitions"
    )]
    OpenFiles {
        topic: String,
        partitions: u32,
        needed: u64,
        available: u64,
        open: u64,
        pending: u64,
        reserved: u64,
        limit: u64,
    },
    #[error("topic {topic} has {current} partitions; the new count {requested} must be larger (partitions only grow)")]
    Shrink { topic: String, current: u32, requested: u32 },
    #[error("internal topic {0} cannot be changed")]
    Internal(String),
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
            RegistryError::ReplicationFactor(_)
            | RegistryError::Config(_)
            | RegistryError::TopicsMax { .. }
            | RegistryError::PartitionsMax { .. }
            | RegistryError::Shrink { .. }
            | RegistryError::OpenFiles { .. } => ErrorCode::InvalidConfig,
            RegistryError::Internal(_) => ErrorCode::InvalidTopicName,
            RegistryError::Io { .. } => ErrorCode::StorageError,
            RegistryError::Corrupt { .. } => ErrorCode::CorruptStorage,
        }
    }
}

/// The persisted topic set, plus the topics being created (admitted, not yet persisted).
#[derive(Debug)]
pub struct TopicRegistry {
    dir: PathBuf,
    topics: BTreeMap<String, TopicConfig>,
    /// Admitted by [`TopicRegistry::reserve`], awaiting `commit` or `abort`: counted by the
    /// caps and the name check, never written to `topics.json`.
    pending: BTreeMap<String, TopicConfig>,
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
        Ok(TopicRegistry { dir: dir.to_path_buf(), topics, pending: BTreeMap::new() })
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

    /// Admits a topic before its partitions are opened: validates it, checks the name is
    /// free, the caps and (given a measured `fds`) the open-files budget, and holds the
    /// name. Nothing is persisted; [`TopicRegistry::commit`] or `abort` must follow.
    pub fn reserve(
        &mut self,
        topic: TopicConfig,
        limits: &AdmissionLimits,
        fds: Option<FdBudget>,
    ) -> Result<(), RegistryError> {
        validate_topic(&topic.name, topic.partitions)?;
        if topic.replication_factor > 1 {
            return Err(RegistryError::ReplicationFactor(topic.replication_factor));
        }
        topic_log_config(&LogConfig::default(), &topic.name, &topic.configs)?;
        if self.topics.contains_key(&topic.name) || self.pending.contains_key(&topic.name) {
            return Err(RegistryError::Exists(topic.name));
        }
        self.check_caps(&topic, limits, fds)?;
        self.pending.insert(topic.name.clone(), topic);
        Ok(())
    }

    /// Checks the node caps and open-files budget for `topic`'s partitions: a new topic,
    /// or (named like a stored one) the partitions added to it.
    fn check_caps(
        &self,
        topic: &TopicConfig,
        limits: &AdmissionLimits,
        fds: Option<FdBudget>,
    ) -> Result<(), RegistryError> {
        let count = self.topics.len() + self.pending.len();
        let is_new = !self.topics.contains_key(&topic.name);
        if is_new && count >= limits.topics_max as usize {
            return Err(RegistryError::TopicsMax { topic: topic.name.clone(), count, max: limits.topics_max });
        }
        let sum = |m: &BTreeMap<String, TopicConfig>| m.values().map(|t| u64::from(t.partitions)).sum::<u64>();
        let total = sum(&self.topics) + sum(&self.pending) + u64::from(topic.partitions);
        if total > u64::from(limits.partitions_max) {
            let (partitions, max) = (topic.partitions, limits.partitions_max);
            return Err(RegistryError::PartitionsMax { topic: topic.name.clone(), partitions, total, max });
        }
        let Some(fds) = fds else { return Ok(()) };
        let pending = sum(&self.pending) * FDS_PER_SEGMENT;
        let needed = u64::from(topic.partitions) * FDS_PER_SEGMENT;
        let available = fds.available().saturating_sub(pending);
        if needed > available {
            return Err(RegistryError::OpenFiles {
                topic: topic.name.clone(),
                partitions: topic.partitions,
                needed,
                available,
                open: fds.open,
                pending,
                reserved: fds.reserved,
                limit: fds.limit,
            });
        }
        Ok(())
    }

    /// Persists a topic admitted by `reserve` (its partitions are open on every shard).
    pub fn commit(&mut self, name: &str) -> Result<(), RegistryError> {
        let topic = self.pending.remove(name).ok_or_else(|| RegistryError::Unknown(name.to_string()))?;
        self.topics.insert(name.to_string(), topic);
        if let Err(e) = self.persist() {
            self.topics.remove(name);
            return Err(e);
        }
        Ok(())
    }

    /// Forgets a topic admitted by `reserve` whose resources could not be secured.
    pub fn abort(&mut self, name: &str) {
        self.pending.remove(name);
    }

    /// A topic's overrides changed: `set` added or replaced, `delete` removed; validated
    /// like a create (keys, bounds) before anything is persisted. Returns the new definition.
    pub fn alter_configs(
        &mut self,
        name: &str,
        set: &[(String, String)],
        delete: &[String],
    ) -> Result<TopicConfig, RegistryError> {
        if crate::topic::is_internal_topic(name) {
            return Err(RegistryError::Internal(name.to_string()));
        }
        let old = self.topics.get(name).ok_or_else(|| RegistryError::Unknown(name.to_string()))?.clone();
        let topic = crate::topic::changed_configs(&old, set, delete)?;
        self.topics.insert(name.to_string(), topic.clone());
        if let Err(e) = self.persist() {
            self.topics.insert(name.to_string(), old);
            return Err(e);
        }
        Ok(topic)
    }

    /// Checks that `name` may grow to `partitions` partitions (more than now, within the
    /// per-topic bound, the node caps and the open-files budget). Nothing changes; the
    /// caller opens the new partitions, then calls [`TopicRegistry::grow`].
    pub fn check_grow(
        &self,
        name: &str,
        partitions: u32,
        limits: &AdmissionLimits,
        fds: Option<FdBudget>,
    ) -> Result<TopicConfig, RegistryError> {
        if crate::topic::is_internal_topic(name) {
            return Err(RegistryError::Internal(name.to_string()));
        }
        let topic = self.topics.get(name).ok_or_else(|| RegistryError::Unknown(name.to_string()))?;
        validate_topic(name, partitions)?;
        if partitions <= topic.partitions {
            let (current, requested) = (topic.partitions, partitions);
            return Err(RegistryError::Shrink { topic: name.to_string(), current, requested });
        }
        let added = TopicConfig { partitions: partitions - topic.partitions, ..topic.clone() };
        self.check_caps(&added, limits, fds)?;
        Ok(TopicConfig { partitions, ..topic.clone() })
    }

    /// Persists `name` at `partitions` partitions (checked by `check_grow`, opened on every
    /// shard); a concurrent grow that got there first wins and this one is refused.
    pub fn grow(&mut self, name: &str, partitions: u32) -> Result<TopicConfig, RegistryError> {
        let old = self.topics.get(name).ok_or_else(|| RegistryError::Unknown(name.to_string()))?.clone();
        if partitions <= old.partitions {
            let (current, requested) = (old.partitions, partitions);
            return Err(RegistryError::Shrink { topic: name.to_string(), current, requested });
        }
        let topic = TopicConfig { partitions, ..old.clone() };
        self.topics.insert(name.to_string(), topic.clone());
        if let Err(e) = self.persist() {
            self.topics.insert(name.to_string(), old);
            return Err(e);
        }
        Ok(topic)
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
    fn config_changes_and_growth_are_validated_and_survive_reload() {
        let dir = tempfile::tempdir().unwrap();
        let mut reg = TopicRegistry::load(dir.path()).unwrap();
        reg.create(topic("a", 2)).unwrap();
        let set = |k: &str, v: &str| vec![(k.to_string(), v.to_string())];
        reg.alter_configs("a", &set("retention_ms", "60000"), &[]).unwrap();
        let refused = reg.alter_configs("a", &set("retention_ms", "5"), &["segment_ms".into()]).unwrap_err();
        assert_eq!(refused.code(), ErrorCode::InvalidConfig);
        assert_eq!(reg.alter_configs("a", &[], &["nope".into()]).unwrap_err().code(), ErrorCode::InvalidConfig);
        assert_eq!(
            reg.alter_configs("zz", &set("retention_ms", "60000"), &[]).unwrap_err().code(),
            ErrorCode::UnknownTopic
        );
        assert_eq!(reg.alter_configs("__x", &[], &[]).unwrap_err().code(), ErrorCode::InvalidTopicName);
        // Two shards' worth of caps: 4 partitions in all.
        let limits = AdmissionLimits { topics_max: 1, partitions_max: 4, open_files_reserved: 0 };
        assert!(matches!(reg.check_grow("a", 2, &limits, None), Err(RegistryError::Shrink { current: 2, .. })));
        assert!(matches!(reg.check_grow("a", 5, &limits, None), Err(RegistryError::PartitionsMax { .. })));
        assert_eq!(reg.check_grow("a", 4, &limits, None).unwrap().partitions, 4, "topics_max counts only new topics");
        reg.grow("a", 4).unwrap();
        assert!(matches!(reg.grow("a", 3), Err(RegistryError::Shrink { current: 4, requested: 3, .. })));
        let reloaded = TopicRegistry::load(dir.path()).unwrap();
        let a = &reloaded.topics()["a"];
        assert_eq!((a.partitions, a.configs.get("retention_ms").map(String::as_str)), (4, Some("60000")));
        assert_eq!(a.configs.len(), 1, "a refused change left nothing behind");
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
    fn caps_and_bounds_refuse_at_the_limit() {
        let dir = tempfile::tempdir().unwrap();
        let mut reg = TopicRegistry::load(dir.path()).unwrap();
        let limits = AdmissionLimits { topics_max: 2, partitions_max: 10, open_files_reserved: 0 };
        reg.reserve(topic("a", 6), &limits, None).unwrap();
        assert!(matches!(reg.reserve(topic("a", 1), &limits, None), Err(RegistryError::Exists(_))), "pending names");
        let over = reg.reserve(topic("b", 5), &limits, None).unwrap_err();
        assert!(matches!(over, RegistryError::PartitionsMax { total: 11, max: 10, .. }), "{over}");
        reg.reserve(topic("b", 4), &limits, None).unwrap();
        reg.commit("a").unwrap();
        reg.abort("b");
        assert!(!TopicRegistry::load(dir.path()).unwrap().topics().contains_key("b"), "aborted: never persisted");
        reg.reserve(topic("c", 1), &limits, None).unwrap();
        let full = reg.reserve(topic("d", 1), &limits, None).unwrap_err();
        assert!(matches!(full, RegistryError::TopicsMax { count: 2, max: 2, .. }), "{full}");
        reg.abort("c");

        // Open files: 3 partitions need 6 fds; 6 left admits, 5 refuses with the numbers.
        let fds = |open| Some(FdBudget { limit: 100, open, reserved: 10 });
        let refused = reg.reserve(topic("e", 3), &limits, fds(85)).unwrap_err();
        assert_eq!(refused.code(), ErrorCode::InvalidConfig);
        assert!(refused.to_string().contains("need 6 open files, only 5 are left"), "{refused}");
        reg.reserve(topic("e", 3), &limits, fds(84)).unwrap();

        let with = |k: &str, v: &str| BTreeMap::from([(k.to_string(), v.to_string())]);
        let base = LogConfig::default();
        assert_eq!(topic_log_config(&base, "t", &with("segment_bytes", "1048576")).unwrap().segment_bytes, 1 << 20);
        let small = topic_log_config(&base, "t", &with("segment_bytes", "1048575")).unwrap_err();
        assert_eq!(small.code(), ErrorCode::InvalidConfig);
        assert!(small.to_string().contains("segment_bytes=1048575"), "{small}");
        assert!(topic_log_config(&base, "t", &with("segment_ms", "999")).is_err());
        assert!(topic_log_config(&base, "t", &with("segment_ms", "1000")).is_ok());
        assert!(topic_log_config(&base, "t", &with("retention_ms", "0")).is_err());
        assert!(topic_log_config(&base, "t", &with("retention_bytes", "1")).is_err());
    }

    #[test]
    fn corrupt_file_is_reported() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join(REGISTRY_FILE), b"{not json").unwrap();
        assert_eq!(TopicRegistry::load(dir.path()).unwrap_err().code(), ErrorCode::CorruptStorage);
    }
}
