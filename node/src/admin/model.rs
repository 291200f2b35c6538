//! What the admin JSON endpoints and the console pages show, built once per request from
//! the node's published snapshots, the cluster view and the [`Sampler`]: the HTML pages
//! render these same structs, so `/v1/...` and the pages cannot disagree.
//!
//! Invariant: building only reads (metrics snapshots, the registry under its mutex, the
//! control plane's latest view, /proc and statvfs); nothing here waits on a shard.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Instant;

use serde::{Deserialize, Serialize};
use strand_wire::msg::ApiKey;

use super::sampler::{self, Rates, Sampler};
use crate::metrics::API_NAMES;
use crate::shard::NodeShared;
use crate::topic::{is_internal_topic, TopicConfig};

/// `/v1/topics`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TopicJson {
    pub name: String,
    pub partitions: u32,
    pub replication_factor: u16,
    pub internal: bool,
    /// Config overrides; everything else is the node's default.
    pub configs: BTreeMap<String, String>,
    /// Every topic config key's value in effect (overrides on the node's defaults);
    /// `null` = unlimited / off.
    pub effective: BTreeMap<String, Option<u64>>,
    /// Bytes on this node's disk (the partitions it holds).
    pub size_bytes: u64,
    /// Records appended per second over the last sample interval, summed over the
    /// partitions this node holds (`null` until two samples exist).
    pub produce_records_per_s: Option<f64>,
    /// Record-batch bytes fetched per second, likewise.
    #[serde(default)]
    pub fetch_bytes_per_s: Option<f64>,
    /// The partitions this node holds, with their offsets.
    pub offsets: Vec<PartitionJson>,
}

/// One partition of a [`TopicJson`].
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PartitionJson {
    pub partition: u32,
    pub log_start_offset: u64,
    pub log_end_offset: u64,
    pub size_bytes: u64,
    /// Bytes of segment files a recovery set aside after a tear (`*.log.cut<N>` in the
    /// partition's directory): kept for inspection, never served (OPERATIONS.md).
    #[serde(default)]
    pub set_aside_bytes: u64,
    /// Chain members, head first (cluster mode; empty on a single node).
    pub chain: Vec<u32>,
    /// Chain epoch (cluster mode).
    pub epoch: Option<u64>,
    /// The head node, which takes produces (cluster mode).
    pub head: Option<u32>,
    pub produce_records_per_s: Option<f64>,
    /// Record-batch bytes served to fetchers per second by this node's replica.
    #[serde(default)]
    pub fetch_bytes_per_s: Option<f64>,
    /// The node whose snapshot this is (cluster mode: a peer's, on a merged topic page).
    #[serde(default)]
    pub reported_by: Option<u32>,
}

/// The node's topics: node-local ones, plus in cluster mode the view's — whose definition
/// wins for a name both have (the cluster-wide `__consumer_offsets`, replicated with the
/// replication factor the view records, also has a node-local entry).
fn topic_configs(shared: &NodeShared) -> Vec<TopicConfig> {
    let mut configs: Vec<TopicConfig> = match shared.registry.lock() {
        Ok(reg) => reg.topics().values().cloned().collect(),
        Err(_) => Vec::new(),
    };
    if let Some(control) = &shared.control {
        let view = control.latest();
        configs.retain(|t| is_internal_topic(&t.name) && !view.topics.contains_key(&t.name));
        configs.extend(view.topics.values().cloned());
    }
    configs.sort_by(|a, b| a.name.cmp(&b.name));
    configs
}

/// Every topic with the offsets of the partitions this node holds.
pub fn topics(shared: &NodeShared, sampler: &Sampler) -> Vec<TopicJson> {
    let mut gauges: BTreeMap<String, Vec<crate::metrics::PartitionGauge>> = BTreeMap::new();
    for g in shared.metrics.shards.iter().flat_map(|m| m.partitions()) {
        gauges.entry(g.topic.clone()).or_default().push(g);
    }
    let view = shared.control.as_ref().map(|c| c.latest());
    topic_configs(shared)
        .into_iter()
        .map(|t| {
            let mut offsets: Vec<PartitionJson> = gauges
                .remove(&t.name)
                .unwrap_or_default()
                .into_iter()
                .map(|g| {
                    let chain = view.as_ref().and_then(|v| v.chain(&t.name, g.partition));
                    PartitionJson {
                        partition: g.partition,
                        log_start_offset: g.log_start_offset,
                        log_end_offset: g.log_end_offset,
                        size_bytes: g.size_bytes,
                        set_aside_bytes: g.set_aside_bytes,
                        chain: chain.map(|c| c.members.clone()).unwrap_or_default(),
                        epoch: chain.map(|c| c.epoch),
                        head: chain.and_then(|c| c.head()),
                        produce_records_per_s: sampler.partition_records_per_s(&t.name, g.partition),
                        fetch_bytes_per_s: sampler.partition_fetch_bytes_per_s(&t.name, g.partition),
                        reported_by: shared.control.as_ref().map(|c| c.node_id()),
                    }
                })
                .collect();
            offsets.sort_by_key(|p| p.partition);
            let rates: Vec<f64> = offsets.iter().filter_map(|p| p.produce_records_per_s).collect();
            let fetch_rates: Vec<f64> = offsets.iter().filter_map(|p| p.fetch_bytes_per_s).collect();
            TopicJson {
                effective: effective_config(shared, &t),
                internal: is_internal_topic(&t.name),
                size_bytes: offsets.iter().map(|p| p.size_bytes).sum(),
                produce_records_per_s: (!rates.is_empty()).then(|| rates.iter().sum()),
                fetch_bytes_per_s: (!fetch_rates.is_empty()).then(|| fetch_rates.iter().sum()),
                name: t.name,
                partitions: t.partitions,
                replication_factor: t.replication_factor,
                configs: t.configs,
                offsets,
            }
        })
        .collect()
}

fn effective_config(shared: &NodeShared, t: &TopicConfig) -> BTreeMap<String, Option<u64>> {
    let Ok(log) = crate::topic::topic_log_config(&shared.config.log, &t.name, &t.configs) else {
        return BTreeMap::new();
    };
    let values = [
        ("retention_bytes", log.retention_bytes),
        ("retention_ms", log.retention_ms),
        ("segment_bytes", Some(log.segment_bytes)),
        ("segment_ms", log.segment_ms),
    ];
    values.into_iter().map(|(k, v)| (k.to_string(), v)).collect()
}

/// `/v1/groups`: one consumer group.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct GroupJson {
    pub group_id: String,
    pub state: String,
    pub generation: u32,
    pub assignor: String,
    pub members: Vec<MemberJson>,
    pub partitions: Vec<GroupPartitionJson>,
    /// Sum of the partitions' lag.
    pub total_lag: u64,
    /// The node coordinating the group (cluster mode).
    #[serde(default)]
    pub coordinator: Option<u32>,
    /// `[unix seconds, total lag]` every sample interval over the last hour, oldest first
    /// (only in `/v1/groups/{id}`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lag_history: Option<Vec<[u64; 2]>>,
}

/// One member of a [`GroupJson`].
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MemberJson {
    pub member_id: String,
    pub client_id: String,
    pub assignment: Vec<TopicPartitionJson>,
}

/// A topic partition.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TopicPartitionJson {
    pub topic: String,
    pub partition: u32,
}

/// One partition of a [`GroupJson`].
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct GroupPartitionJson {
    pub topic: String,
    pub partition: u32,
    /// `null` when the group committed nothing for the partition.
    pub committed: Option<u64>,
    pub log_end_offset: u64,
    pub lag: u64,
}

/// Every group this node coordinates; with `history`, each with its lag history.
pub fn groups(shared: &NodeShared, sampler: &Sampler, history: bool) -> Vec<GroupJson> {
    shared
        .metrics
        .group_lags()
        .into_iter()
        .map(|(g, lags)| {
            let lag_history =
                history.then(|| sampler.lag_history(&g.group_id).iter().map(|p| [p.unix_s, p.total_lag]).collect());
            GroupJson {
                coordinator: shared.control.as_ref().map(|c| c.node_id()),
                total_lag: lags.iter().map(|p| p.lag).fold(0u64, u64::saturating_add),
                lag_history,
                group_id: g.group_id,
                state: g.state,
                generation: g.generation,
                assignor: g.assignor,
                members: g
                    .members
                    .into_iter()
                    .map(|m| MemberJson {
                        member_id: m.member_id,
                        client_id: m.client_id,
                        assignment: m
                            .assignment
                            .into_iter()
                            .map(|(topic, partition)| TopicPartitionJson { topic, partition })
                            .collect(),
                    })
                    .collect(),
                partitions: lags
                    .into_iter()
                    .map(|p| GroupPartitionJson {
                        topic: p.topic,
                        partition: p.partition,
                        committed: p.committed,
                        log_end_offset: p.log_end_offset,
                        lag: p.lag,
                    })
                    .collect(),
            }
        })
        .collect()
}

/// Latency percentiles (bucket upper bounds, µs; `u64::MAX` = above the last bucket).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Percentiles {
    pub count: u64,
    pub p50_us: Option<u64>,
    pub p99_us: Option<u64>,
    pub p999_us: Option<u64>,
}

/// `/v1/node`: this node's own numbers.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct NodeStats {
    /// `null` on a single node.
    pub node_id: Option<u32>,
    /// Whether this node is the elected controller (`null` on a single node).
    pub controller: Option<bool>,
    pub public_address: String,
    pub shards: u16,
    pub data_dir: String,
    /// Bytes of every partition this node holds.
    pub partitions_size_bytes: u64,
    /// Size and free space (for unprivileged writers) of the data dir's filesystem.
    pub volume_bytes: Option<u64>,
    pub volume_free_bytes: Option<u64>,
    pub connections: i64,
    pub rss_bytes: Option<u64>,
    pub rates_now: Option<Rates>,
    pub rates_span: Option<Rates>,
    /// Requests per second by API over the sampled span (nonzero ones).
    pub requests_per_s: BTreeMap<String, f64>,
    /// Over the sampled span (up to an hour).
    pub produce_latency: Percentiles,
    pub fetch_latency: Percentiles,
    pub fsync_latency: Percentiles,
    /// Host-check warnings from the node's start.
    pub warnings: Vec<String>,
}

/// Builds [`NodeStats`]; `warnings` are the host checks' from the admin thread's start.
pub fn node_stats(shared: &NodeShared, sampler: &Sampler, warnings: &[String]) -> NodeStats {
    let now = sampler::node_sample(&shared.metrics, Instant::now());
    let base = sampler.oldest().cloned().unwrap_or_else(|| now.clone());
    let percentiles = |a: &sampler::Buckets, b: &sampler::Buckets| Percentiles {
        count: b.iter().zip(a).map(|(b, a)| b.saturating_sub(*a)).sum(),
        p50_us: sampler::percentile_us(a, b, 0.5),
        p99_us: sampler::percentile_us(a, b, 0.99),
        p999_us: sampler::percentile_us(a, b, 0.999),
    };
    let window_s = now.at.duration_since(base.at).as_secs_f64();
    let mut requests_per_s = BTreeMap::new();
    for api in ApiKey::ALL {
        let count = now.requests[api.index()].saturating_sub(base.requests[api.index()]);
        if count > 0 && window_s > 0.0 && API_NAMES.contains(&api.name()) {
            *requests_per_s.entry(api.name().to_string()).or_insert(0.0) += count as f64 / window_s;
        }
    }
    let volume = crate::hostcheck::volume_bytes(&shared.config.data_dir);
    NodeStats {
        node_id: shared.control.as_ref().map(|c| c.node_id()),
        controller: shared.control.as_ref().map(|c| c.is_controller()),
        public_address: format!("{}:{}", shared.config.advertise_host, shared.ports.get().map_or(0, |p| p.public)),
        shards: shared.config.shards,
        data_dir: shared.config.data_dir.display().to_string(),
        partitions_size_bytes: shared.metrics.shards.iter().flat_map(|m| m.partitions()).map(|g| g.size_bytes).sum(),
        volume_bytes: volume.map(|v| v.0),
        volume_free_bytes: volume.map(|v| v.1),
        connections: shared.metrics.shards.iter().map(|m| m.connections.load(Relaxed)).sum(),
        rss_bytes: super::process::rss_bytes(),
        rates_now: sampler.rates_now(),
        rates_span: sampler.rates_span(),
        requests_per_s,
        produce_latency: percentiles(&base.produce_latency, &now.produce_latency),
        fetch_latency: percentiles(&base.fetch_latency, &now.fetch_latency),
        fsync_latency: percentiles(&base.fsync_latency, &now.fsync_latency),
        warnings: warnings.to_vec(),
    }
}

/// One node of the overview's table.
#[derive(Serialize)]
pub struct NodeRow {
    pub node_id: Option<u32>,
    pub address: String,
    /// Registered with a live lease (cluster) / serving (single node).
    pub up: bool,
    pub this_node: bool,
    /// The node's own numbers, when it answered.
    pub stats: Option<NodeStats>,
    /// Why `stats` is missing (unreachable peer, down node).
    pub error: Option<String>,
}

/// A partition whose chain is shorter than the topic's replication factor.
#[derive(Serialize)]
pub struct UnderReplicated {
    pub topic: String,
    pub partition: u32,
    pub chain: Vec<u32>,
    pub replication_factor: u16,
}

/// Groups listed on the overview.
pub const OVERVIEW_GROUPS_MAX: usize = 10;

/// One group's lag, for the overview.
#[derive(Serialize)]
pub struct GroupLag {
    pub group_id: String,
    pub state: String,
    pub members: usize,
    pub total_lag: u64,
}

/// `/v1/overview`.
#[derive(Serialize)]
pub struct Overview {
    pub cluster: bool,
    pub nodes: Vec<NodeRow>,
    pub topics: usize,
    pub partitions: u64,
    pub groups: usize,
    pub total_lag: u64,
    pub under_replicated: Vec<UnderReplicated>,
    /// Bytes per second summed over the nodes that answered: over the last sample interval
    /// (`now`) and over each node's sampled span, up to an hour (`hour`).
    pub bytes_in_per_s_now: Option<f64>,
    pub bytes_out_per_s_now: Option<f64>,
    pub bytes_in_per_s_hour: Option<f64>,
    pub bytes_out_per_s_hour: Option<f64>,
    /// The groups with the most lag, most first (at most [`OVERVIEW_GROUPS_MAX`]).
    pub most_lag: Vec<GroupLag>,
    /// `[unix seconds, bytes in/s, bytes out/s]` per sample interval (this node).
    pub bytes_history: Vec<(u64, f64, f64)>,
}

/// How the overview asks a peer for its `/v1/node` and its `/v1/groups`.
pub struct Peers<'a> {
    pub node: PeerAsk<'a, NodeStats>,
    pub groups: PeerAsk<'a, GroupsJson>,
}

/// Builds the overview, asking peers through `peers` (cluster mode); `seen` are the nodes this console saw registered (see `cluster::remember_nodes`).
pub fn overview(
    shared: &NodeShared,
    sampler: &Sampler,
    warnings: &[String],
    seen: &BTreeMap<u32, String>,
    peers: &Peers<'_>,
) -> Overview {
    let mine = node_stats(shared, sampler, warnings);
    let configs: Vec<TopicConfig> = topic_configs(shared).into_iter().filter(|t| !is_internal_topic(&t.name)).collect();
    // Unanswered peers show in the node table already.
    let (groups, _) = cluster_groups(shared, sampler, peers.groups);
    let mut most_lag: Vec<GroupLag> = groups
        .iter()
        .map(|g| GroupLag {
            group_id: g.group_id.clone(),
            state: g.state.clone(),
            members: g.members.len(),
            total_lag: g.total_lag,
        })
        .collect();
    most_lag.sort_by(|a, b| b.total_lag.cmp(&a.total_lag).then_with(|| a.group_id.cmp(&b.group_id)));
    most_lag.truncate(OVERVIEW_GROUPS_MAX);
    let mut under_replicated = Vec::new();
    let nodes = match &shared.control {
        None => vec![NodeRow {
            node_id: None,
            address: mine.public_address.clone(),
            up: shared.metrics.serving.load(Relaxed),
            this_node: true,
            stats: Some(mine),
            error: None,
        }],
        Some(control) => {
            let view = control.latest();
            under_replicated = under_replicated_of(&view);
            super::cluster::node_rows(&view, seen, control.node_id(), mine, peers.node)
        }
    };
    let stats: Vec<&NodeStats> = nodes.iter().filter_map(|n| n.stats.as_ref()).collect();
    let sum = |rates: fn(&NodeStats) -> Option<Rates>, get: fn(&Rates) -> f64| {
        let values: Vec<f64> = stats.iter().filter_map(|s| rates(s)).map(|r| get(&r)).collect();
        (!values.is_empty()).then(|| values.iter().sum())
    };
    Overview {
        bytes_in_per_s_now: sum(|s| s.rates_now, |r| r.bytes_in_per_s),
        bytes_out_per_s_now: sum(|s| s.rates_now, |r| r.bytes_out_per_s),
        bytes_in_per_s_hour: sum(|s| s.rates_span, |r| r.bytes_in_per_s),
        bytes_out_per_s_hour: sum(|s| s.rates_span, |r| r.bytes_out_per_s),
        cluster: shared.control.is_some(),
        nodes,
        topics: configs.len(),
        partitions: configs.iter().map(|t| u64::from(t.partitions)).sum(),
        total_lag: groups.iter().map(|g| g.total_lag).fold(0, u64::saturating_add),
        groups: groups.len(),
        under_replicated,
        most_lag,
        bytes_history: sampler.bytes_series(),
    }
}

/// Partitions of the cluster's topics (`__consumer_offsets` included) whose chain in
/// `view` has fewer members than the topic's replication factor.
fn under_replicated_of(view: &crate::control::ClusterView) -> Vec<UnderReplicated> {
    let mut out = Vec::new();
    for t in view.topics.values() {
        for p in 0..t.partitions {
            let chain = view.chain(&t.name, p).map(|c| c.members.clone()).unwrap_or_default();
            if chain.len() < usize::from(t.replication_factor) {
                out.push(UnderReplicated {
                    topic: t.name.clone(),
                    partition: p,
                    chain,
                    replication_factor: t.replication_factor,
                });
            }
        }
    }
    out
}

/// Node-level gauges for `/metrics` that only the admin side knows: the data volume's size
/// and free space, and (cluster mode) the count of under-replicated partitions and whether
/// this node is the controller.
pub fn node_gauges_prometheus(shared: &NodeShared) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    // `None`: the family without a sample (e.g. no controller on a single node, where an
    // alert on the cluster-wide sum must not see a 0).
    let mut gauge = |name: &str, help: &str, value: Option<u64>| {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge");
        if let Some(value) = value {
            let _ = writeln!(out, "{name} {value}");
        }
    };
    if let Some((size, free)) = crate::hostcheck::volume_bytes(&shared.config.data_dir) {
        gauge("strand_data_volume_size_bytes", "Size of the data dir's filesystem", Some(size));
        gauge(
            "strand_data_volume_free_bytes",
            "Free bytes of the data dir's filesystem (for unprivileged writers)",
            Some(free),
        );
    }
    let view = shared.control.as_ref().map(|c| c.latest());
    gauge(
        "strand_under_replicated_partitions",
        "Partitions whose chain is shorter than the topic's replication factor (cluster view)",
        Some(view.as_ref().map_or(0, |v| under_replicated_of(v).len() as u64)),
    );
    gauge(
        "strand_is_controller",
        "1 while this node holds the controller election",
        shared.control.as_ref().map(|c| u64::from(c.is_controller())),
    );
    gauge(
        "strand_controller_id",
        "Node id holding the controller election, as this node's etcd view has it",
        view.and_then(|v| v.controller).map(u64::from),
    );
    out
}

/// `/v1/groups` as a peer answers it.
#[derive(Deserialize)]
pub struct GroupsJson {
    pub groups: Vec<GroupJson>,
}

/// How to ask one peer: (host, admin port) → its answer.
pub type PeerAsk<'a, T> = &'a (dyn Fn(&str, u16) -> Result<T, String> + Sync);

/// Cluster mode: this node's groups plus every peer's (each group once: the first
/// coordinator to report it), and a note per peer that did not answer.
pub fn cluster_groups(
    shared: &NodeShared,
    sampler: &Sampler,
    ask: PeerAsk<'_, GroupsJson>,
) -> (Vec<GroupJson>, Vec<String>) {
    let mut all = groups(shared, sampler, false);
    let mut notes = Vec::new();
    let Some(control) = &shared.control else { return (all, notes) };
    for (node, answer) in super::cluster::ask_peers(&control.latest(), control.node_id(), ask) {
        match answer {
            Ok(theirs) => {
                for g in theirs.groups {
                    if !all.iter().any(|mine| mine.group_id == g.group_id) {
                        all.push(g);
                    }
                }
            }
            Err(e) => notes.push(format!("node {node} unreachable: {e}")),
        }
    }
    all.sort_by(|a, b| a.group_id.cmp(&b.group_id));
    (all, notes)
}

/// Cluster mode: one group, from this node or the first peer that coordinates it.
pub fn cluster_group(
    shared: &NodeShared,
    sampler: &Sampler,
    group_id: &str,
    ask: PeerAsk<'_, GroupJson>,
) -> Option<GroupJson> {
    let local = groups(shared, sampler, true).into_iter().find(|g| g.group_id == group_id);
    if local.is_some() {
        return local;
    }
    let control = shared.control.as_ref()?;
    let answers = super::cluster::ask_peers(&control.latest(), control.node_id(), ask);
    answers.into_iter().find_map(|(_, answer)| answer.ok())
}

/// Cluster mode: one topic with this node's partitions plus those only peers hold, and
/// a note per peer that did not answer.
pub fn cluster_topic(
    shared: &NodeShared,
    sampler: &Sampler,
    name: &str,
    ask: PeerAsk<'_, TopicJson>,
) -> Option<(TopicJson, Vec<String>)> {
    let mut topic = topics(shared, sampler).into_iter().find(|t| t.name == name)?;
    let mut notes = Vec::new();
    let Some(control) = &shared.control else { return Some((topic, notes)) };
    for (node, answer) in super::cluster::ask_peers(&control.latest(), control.node_id(), ask) {
        match answer {
            Ok(theirs) => {
                for p in theirs.offsets {
                    if !topic.offsets.iter().any(|mine| mine.partition == p.partition) {
                        topic.offsets.push(p);
                    }
                }
            }
            Err(e) => notes.push(format!("node {node} unreachable: {e}")),
        }
    }
    topic.offsets.sort_by_key(|p| p.partition);
    Some((topic, notes))
}
