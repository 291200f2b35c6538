//! Node metrics: per-shard structs of relaxed atomics written by the shard that
//! owns them (no locks on the data path) and read by the admin thread, which
//! renders them as Prometheus text.
//!
//! Invariant: counters only grow; histogram bucket counts are per-bucket (made
//! cumulative only when rendered). Per-partition offsets are a snapshot each
//! shard publishes periodically under a mutex only the publisher and the admin
//! thread take.
//!
//! Label values that come from clients (topic and group names) are escaped per the
//! Prometheus text format, and every family labelled by them renders at most
//! `metrics_series_max` series; the rest are left out and counted in
//! `strand_metrics_series_dropped_total`, so a client creating names cannot grow a scrape
//! without bound.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};

use strand_wire::msg::ApiKey;

/// The `api` labels of `strand_requests_total`, in the order they are printed.
pub const API_NAMES: [&str; 26] = [
    "handshake",
    "metadata",
    "create_topic",
    "delete_topic",
    "list_topics",
    "init_producer_id",
    "produce",
    "fetch",
    "list_offsets",
    "other",
    "join_group",
    "sync_group",
    "heartbeat",
    "leave_group",
    "offset_commit",
    "offset_fetch",
    "list_groups",
    "describe_group",
    "delete_group",
    "alter_topic_config",
    "create_partitions",
    "authenticate",
    "alter_user",
    "list_users",
    "alter_acl",
    "list_acls",
];

/// The `api` label a request is counted under: its API's name, except the replication
/// APIs (answered on the replication port, never by a shard's dispatch), which share
/// `other`.
fn api_label(api: ApiKey) -> &'static str {
    match api {
        ApiKey::ReplicaAppend | ApiKey::ReplicaAck => "other",
        api => api.name(),
    }
}

/// Upper bounds (µs) of the latency histogram buckets; a final `+Inf` bucket follows.
pub const LATENCY_BUCKETS_US: [u64; 14] =
    [50, 100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000, 1_000_000];

/// A fixed-bucket latency histogram of atomics.
#[derive(Debug)]
pub struct Histogram {
    buckets: [AtomicU64; LATENCY_BUCKETS_US.len() + 1],
    sum_us: AtomicU64,
}

/// Every durable write of this process, from any shard: each fdatasync (segments, indexes,
/// checkpoints) and each segment write of an O_DSYNC file (buffered mode with
/// fsync=always, where the write is the sync). The log records into it directly: threading
/// a shard's metrics into every file would touch each log call.
pub static FSYNC_LATENCY: Histogram = Histogram::new();
/// Segment bytes whose writeback the log started ahead of any fdatasync (buffered mode,
/// `log::writeback`), all shards.
pub static WRITEBACK_STARTED_BYTES: AtomicU64 = AtomicU64::new(0);

impl Histogram {
    /// An empty histogram (`const`, for the process-wide [`FSYNC_LATENCY`]).
    pub const fn new() -> Self {
        Histogram { buckets: [const { AtomicU64::new(0) }; LATENCY_BUCKETS_US.len() + 1], sum_us: AtomicU64::new(0) }
    }

    /// Per-bucket counts (not cumulative): index `i` counts observations at most
    /// `LATENCY_BUCKETS_US[i]`, the last one those above every bound.
    pub fn counts(&self) -> [u64; LATENCY_BUCKETS_US.len() + 1] {
        std::array::from_fn(|i| self.buckets[i].load(Relaxed))
    }

    /// Records one observation.
    pub fn record_us(&self, us: u64) {
        let index = LATENCY_BUCKETS_US.iter().position(|b| us <= *b).unwrap_or(LATENCY_BUCKETS_US.len());
        self.buckets[index].fetch_add(1, Relaxed);
        self.sum_us.fetch_add(us, Relaxed);
    }

    /// Renders the family's series with `labels` (`shard="0"`, or empty for a node-wide one).
    fn render(&self, out: &mut String, name: &str, labels: &str) {
        let sep = if labels.is_empty() { "" } else { "," };
        let mut cumulative = 0u64;
        for (i, bucket) in self.buckets.iter().enumerate() {
            cumulative += bucket.load(Relaxed);
            let le = LATENCY_BUCKETS_US.get(i).map_or("+Inf".to_string(), |us| format!("{}", *us as f64 / 1e6));
            let _ = writeln!(out, "{name}_bucket{{{labels}{sep}le=\"{le}\"}} {cumulative}");
        }
        let braces = if labels.is_empty() { String::new() } else { format!("{{{labels}}}") };
        let _ = writeln!(out, "{name}_sum{braces} {}", self.sum_us.load(Relaxed) as f64 / 1e6);
        let _ = writeln!(out, "{name}_count{braces} {cumulative}");
    }
}

impl Default for Histogram {
    fn default() -> Self {
        Histogram::new()
    }
}

/// One partition's offsets as last published by its owner shard.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionGauge {
    pub topic: String,
    pub partition: u32,
    pub log_start_offset: u64,
    pub log_end_offset: u64,
    pub size_bytes: u64,
    /// Bytes of segment files an earlier recovery set aside (`*.log.cut<N>`; not served).
    pub set_aside_bytes: u64,
    /// Record-batch bytes served to fetchers since the partition was opened on this shard.
    pub bytes_read: u64,
    /// Cluster mode: the chain as this node's replica sees it.
    pub replica: Option<ReplicaGauge>,
}

/// A replicated partition's chain as the replica on this node sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplicaGauge {
    pub epoch: u64,
    /// Chain members (a learner is not one).
    pub chain_length: u32,
    /// The node this replica feeds, if any, and how far behind it is.
    pub successor: Option<SuccessorGauge>,
}

/// How far the successor a replica feeds is behind it (`ChainReplica::successor_lag`):
/// this replica's log above what is durable on the successor and every node after it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SuccessorGauge {
    pub node: u32,
    pub learner: bool,
    pub lag_records: u64,
    pub lag_bytes: u64,
    /// Since the successor last held everything this replica held then (0 = holds all).
    pub lag_ms: u64,
}

/// One consumer group as last published by its coordinator shard.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupGauge {
    pub group_id: String,
    /// `GroupState::name` (`Empty`, `PreparingRebalance`, ...).
    pub state: String,
    pub generation: u32,
    /// `range` or `round_robin`.
    pub assignor: String,
    pub members: Vec<GroupMemberGauge>,
    /// Partitions of the subscribed topics plus every partition with a committed offset.
    pub partitions: Vec<GroupPartitionGauge>,
}

/// One member of a [`GroupGauge`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupMemberGauge {
    pub member_id: String,
    pub client_id: String,
    /// `(topic, partition)` it owns in the current generation.
    pub assignment: Vec<(String, u32)>,
}

/// One partition of a [`GroupGauge`]: the durable committed offset, if any.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupPartitionGauge {
    pub topic: String,
    pub partition: u32,
    pub committed: Option<u64>,
}

/// Everything one shard publishes.
#[derive(Debug, Default)]
pub struct ShardMetrics {
    /// Requests received, indexed by [`ApiKey::index`].
    pub requests: [AtomicU64; ApiKey::COUNT],
    pub request_errors: AtomicU64,
    pub produce_latency: Histogram,
    pub fetch_latency: Histogram,
    pub bytes_in: AtomicU64,
    pub bytes_out: AtomicU64,
    pub bytes_out_zero_copy: AtomicU64,
    pub bytes_out_copied: AtomicU64,
    pub records_in: AtomicU64,
    pub connections: AtomicI64,
    pub connections_refused: AtomicU64,
    /// Connections refused because their source held `connections_per_ip_max`.
    pub connections_refused_per_ip: AtomicU64,
    /// Connections refused because only reserved slots were left and their source held some.
    pub connections_refused_reserved: AtomicU64,
    /// Connections closed after `connections_max_idle_ms` without a request or a byte.
    pub connections_closed_idle: AtomicU64,
    /// Times a connection's next request waited out a quota throttle.
    pub quota_throttled: AtomicU64,
    /// Client connections closed because the TLS handshake failed or timed out (a plaintext
    /// client on a TLS port, a missing or untrusted client certificate, a stalled client).
    pub tls_handshakes_failed: AtomicU64,
    /// Replication connections closed at once at `replication_connections_max`.
    pub replication_connections_refused: AtomicU64,
    /// Replication connections closed because the handshake failed or timed out.
    pub replication_handshakes_failed: AtomicU64,
    pub forwarded: AtomicU64,
    /// SASL exchanges that failed (either protocol); logged without secrets.
    pub auth_failures: AtomicU64,
    /// Requests refused by an ACL (or before authentication with `--require-auth`).
    pub authorization_denied: AtomicU64,
    partitions: Mutex<Vec<PartitionGauge>>,
    groups: Mutex<Vec<GroupGauge>>,
    /// Members dropped by the coordinator (left, expired, missed a rebalance).
    pub group_members_removed: AtomicU64,
    /// Offset commits persisted to `__consumer_offsets`.
    pub group_commits_persisted: AtomicU64,
    /// Snapshots of `__consumer_offsets` partitions written (compaction).
    pub group_offsets_snapshots: AtomicU64,
    /// Segments of `__consumer_offsets` deleted below a snapshot.
    pub group_offsets_segments_deleted: AtomicU64,
}

impl ShardMetrics {
    /// Replaces the published partition snapshot.
    pub fn publish_partitions(&self, gauges: Vec<PartitionGauge>) {
        if let Ok(mut slot) = self.partitions.lock() {
            *slot = gauges;
        }
    }

    /// The last published partition snapshot.
    pub fn partitions(&self) -> Vec<PartitionGauge> {
        self.partitions.lock().map(|p| p.clone()).unwrap_or_default()
    }

    /// Replaces the published consumer-group snapshot (coordinator shards only).
    pub fn publish_groups(&self, gauges: Vec<GroupGauge>) {
        if let Ok(mut slot) = self.groups.lock() {
            *slot = gauges;
        }
    }

    /// The last published consumer-group snapshot.
    pub fn groups(&self) -> Vec<GroupGauge> {
        self.groups.lock().map(|g| g.clone()).unwrap_or_default()
    }
}

/// A counter's name, help text and how to read it from a shard.
type Counter = (&'static str, &'static str, fn(&ShardMetrics) -> u64);

/// All shards' metrics plus node-wide state.
#[derive(Debug)]
pub struct NodeMetrics {
    pub shards: Vec<Arc<ShardMetrics>>,
    /// True once every shard listens; false again when shutdown begins.
    pub serving: AtomicBool,
    /// Series rendered per client-labelled family (`metrics_series_max`).
    series_max: usize,
    /// Series left out of renders because their family was full, over all scrapes.
    series_dropped: AtomicU64,
}

/// Counts the series of one family against the cap while rendering it.
struct SeriesBudget<'a> {
    left: usize,
    dropped: &'a AtomicU64,
}

impl SeriesBudget<'_> {
    /// Whether one more series may be rendered; counts it as dropped otherwise.
    fn take(&mut self) -> bool {
        if self.left == 0 {
            self.dropped.fetch_add(1, Relaxed);
            return false;
        }
        self.left -= 1;
        true
    }
}

impl NodeMetrics {
    /// Metrics for `shard_count` shards, rendering at most `series_max` series per
    /// client-labelled family.
    pub fn new(shard_count: usize, series_max: usize) -> Self {
        assert!(series_max > 0);
        NodeMetrics {
            shards: (0..shard_count).map(|_| Arc::default()).collect(),
            serving: AtomicBool::new(false),
            series_max,
            series_dropped: AtomicU64::new(0),
        }
    }

    fn budget(&self) -> SeriesBudget<'_> {
        SeriesBudget { left: self.series_max, dropped: &self.series_dropped }
    }

    /// Prometheus text exposition of everything.
    pub fn render_prometheus(&self) -> String {
        let mut out = String::with_capacity(16 * 1024);
        let counters: [Counter; 21] = [
            ("strand_request_errors_total", "Requests answered with an error", |m| m.request_errors.load(Relaxed)),
            ("strand_bytes_in_total", "Record-batch bytes appended", |m| m.bytes_in.load(Relaxed)),
            ("strand_bytes_out_total", "Record-batch bytes sent to fetchers", |m| m.bytes_out.load(Relaxed)),
            ("strand_bytes_out_zero_copy_total", "Fetch bytes sent file-to-socket", |m| {
                m.bytes_out_zero_copy.load(Relaxed)
            }),
            ("strand_bytes_out_copied_total", "Fetch bytes written from memory", |m| m.bytes_out_copied.load(Relaxed)),
            ("strand_records_in_total", "Records appended", |m| m.records_in.load(Relaxed)),
            ("strand_connections_refused_total", "Connections refused at the limit", |m| {
                m.connections_refused.load(Relaxed)
            }),
            ("strand_connections_refused_per_ip_total", "Connections refused at connections_per_ip_max", |m| {
                m.connections_refused_per_ip.load(Relaxed)
            }),
            ("strand_connections_refused_reserved_total", "Connections refused: only reserved slots left", |m| {
                m.connections_refused_reserved.load(Relaxed)
            }),
            ("strand_connections_closed_idle_total", "Connections closed after connections_max_idle_ms", |m| {
                m.connections_closed_idle.load(Relaxed)
            }),
            ("strand_quota_throttled_total", "Times a connection waited out a byte-rate quota throttle", |m| {
                m.quota_throttled.load(Relaxed)
            }),
            (
                "strand_tls_handshakes_failed_total",
                "Client connections closed: TLS handshake failed or timed out",
                |m| m.tls_handshakes_failed.load(Relaxed),
            ),
            ("strand_replication_connections_refused_total", "Replication connections refused at the limit", |m| {
                m.replication_connections_refused.load(Relaxed)
            }),
            ("strand_replication_handshakes_failed_total", "Replication connections closed: no valid handshake", |m| {
                m.replication_handshakes_failed.load(Relaxed)
            }),
            ("strand_forwarded_total", "Partition requests forwarded to another shard", |m| m.forwarded.load(Relaxed)),
            ("strand_auth_failures_total", "SASL authentications that failed", |m| m.auth_failures.load(Relaxed)),
            ("strand_authorization_denied_total", "Requests refused by an ACL or for lack of authentication", |m| {
                m.authorization_denied.load(Relaxed)
            }),
            ("strand_group_members_removed_total", "Group members dropped (left, expired, missed a rebalance)", |m| {
                m.group_members_removed.load(Relaxed)
            }),
            ("strand_group_commits_persisted_total", "Offset commits persisted to __consumer_offsets", |m| {
                m.group_commits_persisted.load(Relaxed)
            }),
            ("strand_group_offsets_snapshots_total", "Snapshots of __consumer_offsets partitions written", |m| {
                m.group_offsets_snapshots.load(Relaxed)
            }),
            (
                "strand_group_offsets_segments_deleted_total",
                "Segments of __consumer_offsets deleted below a snapshot",
                |m| m.group_offsets_segments_deleted.load(Relaxed),
            ),
        ];
        let _ = writeln!(
            out,
            "# HELP strand_requests_total Requests received, by API\n# TYPE strand_requests_total counter"
        );
        for (shard, m) in self.shards.iter().enumerate() {
            for label in API_NAMES {
                let apis = ApiKey::ALL.into_iter().filter(|api| api_label(*api) == label);
                let count: u64 = apis.map(|api| m.requests[api.index()].load(Relaxed)).sum();
                let _ = writeln!(out, "strand_requests_total{{shard=\"{shard}\",api=\"{label}\"}} {count}");
            }
        }
        for (name, help, get) in counters {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
            for (shard, m) in self.shards.iter().enumerate() {
                let _ = writeln!(out, "{name}{{shard=\"{shard}\"}} {}", get(m));
            }
        }
        let _ = writeln!(out, "# HELP strand_connections Open client connections\n# TYPE strand_connections gauge");
        for (shard, m) in self.shards.iter().enumerate() {
            let _ = writeln!(out, "strand_connections{{shard=\"{shard}\"}} {}", m.connections.load(Relaxed));
        }
        self.render_histograms(&mut out);
        self.render_partitions(&mut out);
        self.render_groups(&mut out);
        let name = "strand_metrics_series_dropped_total";
        let help = "Series left out of /metrics renders because their family reached metrics_series_max";
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
        let _ = writeln!(out, "{name} {}", self.series_dropped.load(Relaxed));
        out
    }

    /// Every shard's published groups joined with the partitions' published log offsets:
    /// `(group, [(partition, log_start, log_end, lag)])`. Lag is `log end - committed`
    /// (the whole retained log when nothing is committed), see `strand_core::group::lag`.
    pub fn group_lags(&self) -> Vec<(GroupGauge, Vec<GroupPartitionLagGauge>)> {
        let offsets: std::collections::HashMap<(String, u32), (u64, u64)> = self
            .shards
            .iter()
            .flat_map(|m| m.partitions())
            .map(|g| ((g.topic, g.partition), (g.log_start_offset, g.log_end_offset)))
            .collect();
        let mut groups: Vec<GroupGauge> = self.shards.iter().flat_map(|m| m.groups()).collect();
        groups.sort_by(|a, b| a.group_id.cmp(&b.group_id));
        groups
            .into_iter()
            .map(|g| {
                let lags = g
                    .partitions
                    .iter()
                    .map(|p| {
                        let (start, end) = offsets.get(&(p.topic.clone(), p.partition)).copied().unwrap_or((0, 0));
                        GroupPartitionLagGauge {
                            topic: p.topic.clone(),
                            partition: p.partition,
                            committed: p.committed,
                            log_start_offset: start,
                            log_end_offset: end,
                            lag: strand_core::group::lag(start, end, p.committed),
                        }
                    })
                    .collect();
                (g, lags)
            })
            .collect()
    }

    fn render_groups(&self, out: &mut String) {
        let groups = self.group_lags();
        let _ =
            writeln!(out, "# HELP strand_group_members Members of a consumer group\n# TYPE strand_group_members gauge");
        let mut budget = self.budget();
        for (g, _) in groups.iter().filter(|_| budget.take()) {
            let _ = writeln!(
                out,
                "strand_group_members{{group=\"{}\",state=\"{}\"}} {}",
                escape(&g.group_id),
                escape(&g.state),
                g.members.len()
            );
        }
        let _ = writeln!(
            out,
            "# HELP strand_consumer_lag Log end offset minus the group's committed offset\n# TYPE strand_consumer_lag gauge"
        );
        let mut budget = self.budget();
        for (g, p) in groups.iter().flat_map(|(g, lags)| lags.iter().map(move |p| (g, p))) {
            if budget.take() {
                let _ = writeln!(out, "strand_consumer_lag{{{}}} {}", group_labels(g, p), p.lag);
            }
        }
        let name = "strand_consumer_committed_offset";
        let _ = writeln!(out, "# HELP {name} The group's durable committed offset\n# TYPE {name} gauge");
        let mut budget = self.budget();
        for (g, p) in groups.iter().flat_map(|(g, lags)| lags.iter().map(move |p| (g, p))) {
            if let Some(committed) = p.committed.filter(|_| budget.take()) {
                let _ = writeln!(out, "{name}{{{}}} {committed}", group_labels(g, p));
            }
        }
    }

    fn render_histograms(&self, out: &mut String) {
        for (name, help) in [
            ("strand_produce_latency_seconds", "Produce request latency (receive to ack)"),
            ("strand_fetch_latency_seconds", "Fetch request latency including long-poll wait"),
        ] {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
            for (shard, m) in self.shards.iter().enumerate() {
                let h = if name.contains("produce") { &m.produce_latency } else { &m.fetch_latency };
                h.render(out, name, &format!("shard=\"{shard}\""));
            }
        }
        let name = "strand_fsync_latency_seconds";
        let _ = writeln!(
            out,
            "# HELP {name} fdatasync calls and O_DSYNC segment writes, all shards\n# TYPE {name} histogram"
        );
        FSYNC_LATENCY.render(out, name, "");
        let name = "strand_writeback_started_bytes_total";
        let _ = writeln!(
            out,
            "# HELP {name} Segment bytes handed to the disk ahead of an fdatasync (buffered write-behind), all shards\n# TYPE {name} counter\n{name} {}",
            WRITEBACK_STARTED_BYTES.load(Relaxed)
        );
    }

    fn render_partitions(&self, out: &mut String) {
        let gauges: Vec<PartitionGauge> = self.shards.iter().flat_map(|m| m.partitions()).collect();
        for (name, help, get) in [
            (
                "strand_partition_log_end_offset",
                "Next offset to be written",
                (|g| g.log_end_offset) as fn(&PartitionGauge) -> u64,
            ),
            ("strand_partition_log_start_offset", "First offset kept", |g| g.log_start_offset),
            ("strand_partition_size_bytes", "Bytes of segments on disk", |g| g.size_bytes),
        ] {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge");
            let mut budget = self.budget();
            for g in gauges.iter().filter(|_| budget.take()) {
                let topic = escape(&g.topic);
                let _ = writeln!(out, "{name}{{topic=\"{topic}\",partition=\"{}\"}} {}", g.partition, get(g));
            }
        }
        // Set-aside segments are rare and need an operator: a node-wide total to alert on,
        // and a line only for the partitions that have any.
        let total: u64 = gauges.iter().map(|g| g.set_aside_bytes).sum();
        let name = "strand_set_aside_bytes";
        let _ = writeln!(
            out,
            "# HELP {name} Bytes of segment files recovery set aside after a tear (*.log.cut<N>, not served) on this node\n\
             # TYPE {name} gauge\n{name} {total}"
        );
        let name = "strand_partition_set_aside_bytes";
        let _ = writeln!(
            out,
            "# HELP {name} Bytes of segment files recovery set aside after a tear (partitions that have any)\n\
             # TYPE {name} gauge"
        );
        let mut budget = self.budget();
        for g in gauges.iter().filter(|g| g.set_aside_bytes > 0).filter(|_| budget.take()) {
            let topic = escape(&g.topic);
            let _ = writeln!(out, "{name}{{topic=\"{topic}\",partition=\"{}\"}} {}", g.partition, g.set_aside_bytes);
        }
        self.render_replicas(out, &gauges);
    }

    /// Cluster mode: each replica's chain and how far the successor it feeds is behind.
    fn render_replicas(&self, out: &mut String, gauges: &[PartitionGauge]) {
        type Get = fn(&ReplicaGauge) -> Option<String>;
        let families: [(&str, &str, Get); 6] = [
            ("strand_partition_chain_length", "Chain members of the partition (this node's replica's view)", |r| {
                Some(r.chain_length.to_string())
            }),
            ("strand_partition_epoch", "Chain epoch of the partition (this node's replica's view)", |r| {
                Some(r.epoch.to_string())
            }),
            ("strand_replica_lag_records", "Offsets of this replica's log not yet durable on its successor", |r| {
                r.successor.as_ref().map(|s| s.lag_records.to_string())
            }),
            ("strand_replica_lag_bytes", "Bytes of this replica's log not yet durable on its successor", |r| {
                r.successor.as_ref().map(|s| s.lag_bytes.to_string())
            }),
            ("strand_replica_lag_seconds", "Since the successor last held everything this replica held", |r| {
                r.successor.as_ref().map(|s| format!("{}", s.lag_ms as f64 / 1e3))
            }),
            ("strand_learner_catch_up_bytes", "Bytes the learner this replica feeds still has to copy", |r| {
                r.successor.as_ref().filter(|s| s.learner).map(|s| s.lag_bytes.to_string())
            }),
        ];
        for (name, help, get) in families {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge");
            let mut budget = self.budget();
            for g in gauges {
                let Some(replica) = &g.replica else { continue };
                let Some(value) = get(replica) else { continue };
                if !budget.take() {
                    continue;
                }
                let topic = escape(&g.topic);
                let successor = match (&replica.successor, name.starts_with("strand_partition_")) {
                    (Some(s), false) => format!(",{}=\"{}\"", if s.learner { "learner" } else { "replica" }, s.node),
                    _ => String::new(),
                };
                let _ = writeln!(out, "{name}{{topic=\"{topic}\",partition=\"{}\"{successor}}} {value}", g.partition);
            }
        }
    }
}

/// One partition of a group with its log offsets and lag, for rendering.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupPartitionLagGauge {
    pub topic: String,
    pub partition: u32,
    pub committed: Option<u64>,
    pub log_start_offset: u64,
    pub log_end_offset: u64,
    pub lag: u64,
}

/// Escapes a Prometheus label value (client-chosen names are arbitrary UTF-8): the text
/// format gives backslash, double quote and line feed an escape; every other character
/// stands for itself inside the quotes.
fn escape(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

/// The `group`, `topic` and `partition` labels of one group partition, escaped.
fn group_labels(g: &GroupGauge, p: &GroupPartitionLagGauge) -> String {
    format!("group=\"{}\",topic=\"{}\",partition=\"{}\"", escape(&g.group_id), escape(&p.topic), p.partition)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_aside_bytes_are_totalled_and_listed_only_where_present() {
        let node = NodeMetrics::new(2, 100);
        let gauge = |partition, set_aside_bytes| PartitionGauge {
            topic: "t".into(),
            partition,
            log_start_offset: 0,
            log_end_offset: 1,
            size_bytes: 1,
            set_aside_bytes,
            bytes_read: 0,
            replica: None,
        };
        let text = node.render_prometheus();
        assert!(text.contains("\nstrand_set_aside_bytes 0\n"), "a node with none says 0: {text}");
        node.shards[0].publish_partitions(vec![gauge(0, 0), gauge(1, 4096)]);
        node.shards[1].publish_partitions(vec![gauge(2, 100)]);
        let text = node.render_prometheus();
        assert!(text.contains("\nstrand_set_aside_bytes 4196\n"), "{text}");
        assert!(text.contains("strand_partition_set_aside_bytes{topic=\"t\",partition=\"1\"} 4096"), "{text}");
        assert!(text.contains("strand_partition_set_aside_bytes{topic=\"t\",partition=\"2\"} 100"), "{text}");
        assert!(!text.contains("strand_partition_set_aside_bytes{topic=\"t\",partition=\"0\"}"), "{text}");
    }

    #[test]
    fn renders_counters_histograms_and_partitions() {
        let node = NodeMetrics::new(2, 100);
        node.shards[1].requests[ApiKey::Produce.index()].fetch_add(3, Relaxed);
        node.shards[1].requests[ApiKey::ReplicaAck.index()].fetch_add(2, Relaxed);
        node.shards[0].produce_latency.record_us(40);
        node.shards[0].produce_latency.record_us(700);
        node.shards[0].produce_latency.record_us(5_000_000);
        node.shards[1].publish_partitions(vec![PartitionGauge {
            topic: "t".into(),
            partition: 2,
            log_start_offset: 0,
            log_end_offset: 17,
            size_bytes: 999,
            set_aside_bytes: 0,
            bytes_read: 0,
            replica: None,
        }]);
        let text = node.render_prometheus();
        assert!(text.contains("strand_requests_total{shard=\"1\",api=\"produce\"} 3"), "{text}");
        assert!(text.contains("strand_requests_total{shard=\"1\",api=\"other\"} 2"), "{text}");
        assert!(ApiKey::ALL.into_iter().all(|api| API_NAMES.contains(&api_label(api))), "every API has a label");
        assert!(text.contains("strand_produce_latency_seconds_bucket{shard=\"0\",le=\"0.00005\"} 1"), "{text}");
        assert!(text.contains("strand_produce_latency_seconds_bucket{shard=\"0\",le=\"0.001\"} 2"), "{text}");
        assert!(text.contains("strand_produce_latency_seconds_bucket{shard=\"0\",le=\"+Inf\"} 3"), "{text}");
        assert!(text.contains("strand_produce_latency_seconds_count{shard=\"0\"} 3"), "{text}");
        assert!(text.contains("strand_partition_log_end_offset{topic=\"t\",partition=\"2\"} 17"), "{text}");
        assert!(text.contains("strand_fsync_latency_seconds_bucket{le=\"+Inf\"} "), "{text}");
        assert!(text.contains("\nstrand_fsync_latency_seconds_count "), "{text}");
    }

    #[test]
    fn renders_each_replicas_chain_and_successor_lag() {
        let node = NodeMetrics::new(1, 100);
        let gauge = |partition, replica| PartitionGauge {
            topic: "t".into(),
            partition,
            log_start_offset: 0,
            log_end_offset: 10,
            size_bytes: 1,
            set_aside_bytes: 0,
            bytes_read: 0,
            replica,
        };
        let lag = |node, learner| SuccessorGauge { node, learner, lag_records: 4, lag_bytes: 400, lag_ms: 1500 };
        node.shards[0].publish_partitions(vec![
            gauge(0, Some(ReplicaGauge { epoch: 7, chain_length: 3, successor: Some(lag(2, false)) })),
            gauge(1, Some(ReplicaGauge { epoch: 2, chain_length: 2, successor: Some(lag(3, true)) })),
            gauge(2, Some(ReplicaGauge { epoch: 2, chain_length: 2, successor: None })),
            gauge(3, None),
        ]);
        let text = node.render_prometheus();
        for line in [
            "strand_partition_chain_length{topic=\"t\",partition=\"0\"} 3",
            "strand_partition_epoch{topic=\"t\",partition=\"0\"} 7",
            "strand_partition_epoch{topic=\"t\",partition=\"2\"} 2",
            "strand_replica_lag_records{topic=\"t\",partition=\"0\",replica=\"2\"} 4",
            "strand_replica_lag_bytes{topic=\"t\",partition=\"0\",replica=\"2\"} 400",
            "strand_replica_lag_seconds{topic=\"t\",partition=\"0\",replica=\"2\"} 1.5",
            "strand_replica_lag_bytes{topic=\"t\",partition=\"1\",learner=\"3\"} 400",
            "strand_learner_catch_up_bytes{topic=\"t\",partition=\"1\",learner=\"3\"} 400",
        ] {
            assert!(text.lines().any(|l| l == line), "missing {line}: {text}");
        }
        assert!(!text.contains("strand_learner_catch_up_bytes{topic=\"t\",partition=\"0\""), "{text}");
        assert!(!text.contains("partition=\"3\"}} 3"), "a single-node partition has no chain: {text}");
        assert!(!text.contains("strand_partition_epoch{topic=\"t\",partition=\"3\""), "{text}");
    }

    #[test]
    fn label_values_are_escaped_and_families_capped() {
        let node = NodeMetrics::new(1, 2);
        let gauge = |topic: &str, partition| PartitionGauge {
            topic: topic.into(),
            partition,
            log_start_offset: 0,
            log_end_offset: 1,
            size_bytes: 1,
            set_aside_bytes: 0,
            bytes_read: 0,
            replica: None,
        };
        node.shards[0].publish_partitions(vec![gauge("a\\\"}\nx 1", 0), gauge("b", 1), gauge("c", 2)]);
        let text = node.render_prometheus();
        let name = "strand_partition_log_end_offset";
        let expect = format!("{name}{{topic=\"a\\\\\\\"}}\\nx 1\",partition=\"0\"}} 1");
        assert!(text.contains(&expect), "{text}");
        assert_eq!(text.lines().filter(|l| l.starts_with(&format!("{name}{{"))).count(), 2, "{text}");
        assert!(!text.lines().any(|l| l.starts_with("x ")), "{text}");
        // Three families of three partitions each, capped at two: three dropped per render.
        assert!(text.contains("strand_metrics_series_dropped_total 3\n"), "{text}");
    }

    #[test]
    fn renders_group_lag_and_committed() {
        let node = NodeMetrics::new(2, 100);
        node.shards[0].publish_partitions(vec![PartitionGauge {
            topic: "t".into(),
            partition: 0,
            log_start_offset: 0,
            log_end_offset: 10,
            size_bytes: 1,
            set_aside_bytes: 0,
            bytes_read: 0,
            replica: None,
        }]);
        node.shards[1].publish_groups(vec![GroupGauge {
            group_id: "g\"1".into(),
            state: "Stable".into(),
            generation: 3,
            assignor: "range".into(),
            members: Vec::new(),
            partitions: vec![
                GroupPartitionGauge { topic: "t".into(), partition: 0, committed: Some(4) },
                GroupPartitionGauge { topic: "t".into(), partition: 1, committed: None },
            ],
        }]);
        let text = node.render_prometheus();
        assert!(text.contains("strand_consumer_lag{group=\"g\\\"1\",topic=\"t\",partition=\"0\"} 6"), "{text}");
        assert!(
            text.contains("strand_consumer_committed_offset{group=\"g\\\"1\",topic=\"t\",partition=\"0\"} 4"),
            "{text}"
        );
        assert!(
            !text.contains("strand_consumer_committed_offset{group=\"g\\\"1\",topic=\"t\",partition=\"1\"}"),
            "{text}"
        );
        assert!(text.contains("strand_group_members{group=\"g\\\"1\",state=\"Stable\"} 0"), "{text}");
    }
}
