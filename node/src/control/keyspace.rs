//! The etcd keyspace as the control thread holds it: parsed records plus the revisions
//! the controller's guarded transactions compare against. Pure data (no IO): the
//! runtime feeds it the initial range read and every watch event, then derives the
//! shards' [`ClusterView`] and the controller's [`ClusterState`] from it.
//!
//! Invariant: a value that does not parse (bad JSON, a key that disagrees with its
//! record, an empty chain) is logged and skipped, never a panic. A chain key with a bad
//! value is remembered as *poisoned*: the controller leaves that partition alone rather
//! than overwrite it with a guessed epoch.

use std::collections::BTreeMap;

use strand_core::chain::{Epoch, NodeId};
use strand_core::control::{Chain, ClusterState, InSync, Incarnation, TopicSpec};
use strand_core::topic::validate_topic;

use super::types::{ChainRecord, ClusterView, InSyncReport, NodeRecord};
use crate::topic::TopicConfig;

/// A topic and the create revision of its key (guards chain writes against a
/// concurrent delete and re-create).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct TopicEntry {
    pub config: TopicConfig,
    pub create_revision: i64,
}

/// A chain key: its record (`None` = unparseable, poisoned) and its mod revision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct ChainEntry {
    pub record: Option<ChainRecord>,
    pub mod_revision: i64,
}

/// One key/value as read from etcd.
#[derive(Debug, Clone, Copy)]
pub(super) struct Kv<'a> {
    pub key: &'a [u8],
    pub value: &'a [u8],
    pub create_revision: i64,
    pub mod_revision: i64,
    pub lease: i64,
}

/// Everything under `{prefix}/` that the control plane understands.
#[derive(Debug, Clone, Default)]
pub(super) struct Keyspace {
    prefix: String,
    pub revision: i64,
    pub nodes: BTreeMap<u32, NodeRecord>,
    pub topics: BTreeMap<String, TopicEntry>,
    pub chains: BTreeMap<(String, u32), ChainEntry>,
    pub insync: BTreeMap<(String, u32), InSyncReport>,
    /// Election keys (`{prefix}/controller/{lease}`): create revision and the campaigning
    /// node's id (the value); the lowest create revision holds the election.
    pub elections: BTreeMap<String, (i64, Option<u32>)>,
    /// `{prefix}/security`: the users and ACLs (`security.dat` bytes, checked by their
    /// reader) and the key's mod revision.
    pub security: Option<(i64, std::sync::Arc<[u8]>)>,
}

enum Key {
    Node(u32),
    Topic(String),
    Chain(String, u32),
    InSync(String, u32),
    Election(String),
    Security,
    Other,
}

/// The key paths (all under the prefix, which has no trailing `/`).
pub(super) mod keys {
    pub fn node(prefix: &str, id: u32) -> String {
        format!("{prefix}/nodes/{id}")
    }
    pub fn topic(prefix: &str, name: &str) -> String {
        format!("{prefix}/topics/{name}")
    }
    pub fn chain(prefix: &str, topic: &str, partition: u32) -> String {
        format!("{prefix}/chains/{topic}/{partition}")
    }
    pub fn chains_of(prefix: &str, topic: &str) -> String {
        format!("{prefix}/chains/{topic}/")
    }
    pub fn insync(prefix: &str, topic: &str, partition: u32) -> String {
        format!("{prefix}/insync/{topic}/{partition}")
    }
    pub fn insync_of(prefix: &str, topic: &str) -> String {
        format!("{prefix}/insync/{topic}/")
    }
    pub fn election(prefix: &str) -> String {
        format!("{prefix}/controller")
    }
    pub fn cluster_secret(prefix: &str) -> String {
        format!("{prefix}/cluster-secret")
    }
    pub fn security(prefix: &str) -> String {
        format!("{prefix}/security")
    }
}

impl Keyspace {
    pub fn new(prefix: &str) -> Keyspace {
        Keyspace { prefix: prefix.to_string(), ..Keyspace::default() }
    }

    /// The key prefix (no trailing `/`).
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    fn parse_key(&self, key: &[u8]) -> Key {
        let Some(rest) = std::str::from_utf8(key).ok().and_then(|k| k.strip_prefix(&self.prefix)) else {
            return Key::Other;
        };
        let parts: Vec<&str> = rest.trim_start_matches('/').split('/').collect();
        let partition = |p: &str| p.parse::<u32>().ok();
        match parts.as_slice() {
            ["nodes", id] => id.parse().map(Key::Node).unwrap_or(Key::Other),
            ["topics", name] => Key::Topic(name.to_string()),
            ["chains", name, p] => partition(p).map(|p| Key::Chain(name.to_string(), p)).unwrap_or(Key::Other),
            ["insync", name, p] => partition(p).map(|p| Key::InSync(name.to_string(), p)).unwrap_or(Key::Other),
            ["controller", lease] => Key::Election(lease.to_string()),
            ["security"] => Key::Security,
            _ => Key::Other,
        }
    }

    /// Applies a put (range read or watch event).
    pub fn put(&mut self, kv: Kv<'_>) {
        let key_text = String::from_utf8_lossy(kv.key);
        match self.parse_key(kv.key) {
            Key::Node(id) => match parse::<NodeRecord>(&key_text, kv.value) {
                Some(mut record) if record.node_id == id && id >= 1 => {
                    if kv.lease != 0 {
                        record.incarnation = kv.lease;
                    }
                    self.nodes.insert(id, record);
                }
                Some(record) => {
                    tracing::warn!(key = %key_text, node = record.node_id, "node record disagrees with its key; skipped")
                }
                None => {
                    self.nodes.remove(&id);
                }
            },
            Key::Topic(name) => match parse::<TopicConfig>(&key_text, kv.value) {
                Some(config) if config.name == name && validate_topic(&name, config.partitions).is_ok() => {
                    self.topics.insert(name, TopicEntry { config, create_revision: kv.create_revision });
                }
                Some(_) => tracing::warn!(key = %key_text, "invalid topic record; skipped"),
                None => {
                    self.topics.remove(&name);
                }
            },
            Key::Chain(topic, partition) => {
                let record = parse::<ChainRecord>(&key_text, kv.value).filter(|c| {
                    let ok = !c.members.is_empty() && c.members.iter().all(|m| *m >= 1);
                    if !ok {
                        tracing::error!(key = %key_text, "chain record with no or invalid members; partition left alone");
                    }
                    ok
                });
                self.chains.insert((topic, partition), ChainEntry { record, mod_revision: kv.mod_revision });
            }
            Key::InSync(topic, partition) => match parse::<InSyncReport>(&key_text, kv.value) {
                Some(report) => {
                    self.insync.insert((topic, partition), report);
                }
                None => {
                    self.insync.remove(&(topic, partition));
                }
            },
            Key::Election(lease) => {
                let node = std::str::from_utf8(kv.value).ok().and_then(|v| v.trim().parse::<u32>().ok());
                self.elections.insert(lease, (kv.create_revision, node));
            }
            Key::Security => self.security = Some((kv.mod_revision, kv.value.into())),
            Key::Other => {}
        }
    }

    /// The node holding the controller election (the oldest campaign), if known.
    pub fn controller(&self) -> Option<u32> {
        self.elections.values().min_by_key(|(revision, _)| *revision).and_then(|(_, node)| *node)
    }

    /// Applies a delete (watch event).
    pub fn delete(&mut self, key: &[u8]) {
        match self.parse_key(key) {
            Key::Node(id) => {
                self.nodes.remove(&id);
            }
            Key::Topic(name) => {
                self.topics.remove(&name);
            }
            Key::Chain(topic, partition) => {
                self.chains.remove(&(topic, partition));
            }
            Key::InSync(topic, partition) => {
                self.insync.remove(&(topic, partition));
            }
            Key::Election(lease) => {
                self.elections.remove(&lease);
            }
            Key::Security => self.security = None,
            Key::Other => {}
        }
    }

    /// The shards' view (parseable records only).
    pub fn view(&self) -> ClusterView {
        ClusterView {
            revision: self.revision,
            nodes: self.nodes.clone(),
            topics: self.topics.iter().map(|(n, t)| (n.clone(), t.config.clone())).collect(),
            chains: self.chains.iter().filter_map(|(k, c)| c.record.as_ref().map(|r| (k.clone(), r.clone()))).collect(),
            controller: self.controller(),
            security: self.security.clone(),
        }
    }

    /// The controller's input.
    pub fn cluster_state(&self) -> ClusterState {
        ClusterState {
            live: self.nodes.iter().map(|(id, r)| (NodeId(*id), Incarnation(r.incarnation))).collect(),
            topics: self
                .topics
                .iter()
                .map(|(name, t)| {
                    let spec =
                        TopicSpec { partitions: t.config.partitions, replication_factor: t.config.replication_factor };
                    (name.clone(), spec)
                })
                .collect(),
            chains: self
                .chains
                .iter()
                .filter_map(|(k, c)| c.record.as_ref().map(|r| (k.clone(), to_core(r))))
                .collect(),
            insync: self
                .insync
                .iter()
                .map(|(k, r)| (k.clone(), InSync { epoch: Epoch(r.epoch), learner: NodeId(r.learner) }))
                .collect(),
        }
    }
}

fn parse<T: serde::de::DeserializeOwned>(key: &str, value: &[u8]) -> Option<T> {
    match serde_json::from_slice(value) {
        Ok(v) => Some(v),
        Err(e) => {
            tracing::warn!(key, error = %e, "unparseable control-plane record; skipped");
            None
        }
    }
}

/// A chain record as the core sees it.
pub(super) fn to_core(record: &ChainRecord) -> Chain {
    Chain {
        epoch: Epoch(record.epoch),
        members: record.members.iter().map(|m| NodeId(*m)).collect(),
        learner: record.learner.map(NodeId),
        incarnations: record.incarnations.iter().map(|(n, i)| (NodeId(*n), Incarnation(*i))).collect(),
        preferred: record.preferred.map(NodeId),
    }
}

/// The core's chain as the record to write.
pub(super) fn from_core(chain: &Chain) -> ChainRecord {
    ChainRecord {
        epoch: chain.epoch.0,
        members: chain.members.iter().map(|m| m.0).collect(),
        learner: chain.learner.map(|l| l.0),
        incarnations: chain.incarnations.iter().map(|(n, i)| (n.0, i.0)).collect(),
        preferred: chain.preferred.map(|p| p.0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kv<'a>(key: &'a str, value: &'a str, rev: i64) -> Kv<'a> {
        Kv { key: key.as_bytes(), value: value.as_bytes(), create_revision: rev, mod_revision: rev, lease: 0 }
    }

    #[test]
    fn parses_records_and_skips_garbage() {
        let mut ks = Keyspace::new("/s");
        let node =
            r#"{"node_id":2,"host":"127.0.0.1","port":1,"shard_ports":[2],"replication_ports":[3],"incarnation":0}"#;
        ks.put(Kv { lease: 77, ..kv("/s/nodes/2", node, 5) });
        ks.put(kv("/s/nodes/3", node, 6)); // id disagrees with the key
        ks.put(kv("/s/nodes/4", "{not json", 6));
        ks.put(kv("/s/topics/t", r#"{"name":"t","partitions":2,"replication_factor":2}"#, 7));
        ks.put(kv("/s/topics/u", r#"{"name":"x","partitions":2,"replication_factor":2}"#, 7));
        ks.put(kv("/s/chains/t/0", r#"{"epoch":3,"members":[2],"incarnations":{"2":77}}"#, 8));
        ks.put(kv("/s/chains/t/1", r#"{"epoch":3,"members":[]}"#, 9));
        ks.put(kv("/s/insync/t/0", r#"{"epoch":3,"learner":4}"#, 10));
        ks.put(kv("/s/controller/694d", "2", 11));
        ks.put(kv("/other/nodes/2", node, 12));
        assert_eq!(ks.nodes.keys().copied().collect::<Vec<_>>(), vec![2]);
        assert_eq!(ks.nodes[&2].incarnation, 77, "incarnation = the key's lease");
        assert_eq!(ks.topics.keys().cloned().collect::<Vec<_>>(), vec!["t".to_string()]);
        assert_eq!(ks.chains.len(), 2);
        assert!(ks.chains[&("t".to_string(), 1)].record.is_none(), "empty chain poisoned");
        let view = ks.view();
        assert_eq!(view.chains.len(), 1);
        assert_eq!(view.chain("t", 0).map(|c| c.members.clone()), Some(vec![2]));
        assert_eq!(view.controller, Some(2), "the election key's value");
        ks.put(kv("/s/controller/88aa", "3", 20));
        assert_eq!(ks.controller(), Some(2), "the oldest campaign holds the election");
        ks.delete(b"/s/controller/694d");
        assert_eq!(ks.controller(), Some(3));
        ks.delete(b"/s/controller/88aa");
        assert_eq!(ks.controller(), None);
        let state = ks.cluster_state();
        assert_eq!(state.live[&NodeId(2)], Incarnation(77));
        assert_eq!(state.insync[&("t".to_string(), 0)], InSync { epoch: Epoch(3), learner: NodeId(4) });
        ks.delete(b"/s/chains/t/0");
        ks.delete(b"/s/nodes/2");
        assert!(ks.view().chains.is_empty());
        assert!(ks.nodes.is_empty());
    }

    #[test]
    fn record_conversion_round_trips() {
        let record = ChainRecord {
            epoch: 9,
            members: vec![3, 1],
            learner: Some(2),
            incarnations: [(1, 10), (2, 20), (3, 30)].into_iter().collect(),
            preferred: Some(1),
        };
        assert_eq!(from_core(&to_core(&record)), record);
        // A record from before the field parses without a preference and writes none.
        let old: ChainRecord =
            serde_json::from_str(r#"{"epoch":3,"members":[2],"incarnations":{"2":77}}"#).expect("an old record parses");
        assert_eq!(old.preferred, None);
        assert!(!serde_json::to_string(&old).expect("serializes").contains("preferred"));
        let json = serde_json::to_string(&record).expect("serializes");
        assert!(json.contains(r#""preferred":1"#), "{json}");
    }
}
