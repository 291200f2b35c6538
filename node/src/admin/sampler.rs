//! The console's memory of the last hour: every [`SAMPLE_INTERVAL`] the admin thread
//! reads the node's counters (bytes, requests, latency buckets, CPU time), every
//! partition's log end and every group's total lag into bounded rings, so the pages can
//! show rates "now" (the last interval) and over the last hour, and a lag chart per group.
//!
//! Lifecycle: owned by the admin thread, created when it starts (with a first sample) and
//! dropped with it; nothing else reads or writes it, so it needs no lock. Memory is
//! bounded: [`HISTORY_POINTS_MAX`] node samples, at most [`PARTITIONS_TRACKED_MAX`]
//! partition rates and [`GROUPS_TRACKED_MAX`] groups of [`HISTORY_POINTS_MAX`] lag points
//! (groups past the cap are shown without history). A restart forgets the history.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use strand_wire::msg::ApiKey;

use crate::metrics::{NodeMetrics, FSYNC_LATENCY, LATENCY_BUCKETS_US};

/// How often the counters are sampled.
pub const SAMPLE_INTERVAL: Duration = Duration::from_secs(5);
/// How far back the rings reach.
pub const HISTORY_SPAN: Duration = Duration::from_secs(3600);
/// Samples kept per ring: one hour at one sample per [`SAMPLE_INTERVAL`], plus the one
/// that starts the hour.
pub const HISTORY_POINTS_MAX: usize = 721;
const _: () = assert!(HISTORY_POINTS_MAX as u64 == HISTORY_SPAN.as_secs() / SAMPLE_INTERVAL.as_secs() + 1);
/// Groups whose lag history is kept (about 17 KB each when full).
pub const GROUPS_TRACKED_MAX: usize = 256;
/// Partitions whose produce rate is kept.
pub const PARTITIONS_TRACKED_MAX: usize = 100_000;

/// Latency buckets, one count per [`LATENCY_BUCKETS_US`] bound plus the overflow bucket.
pub type Buckets = [u64; LATENCY_BUCKETS_US.len() + 1];

/// The node's cumulative counters at one instant.
#[derive(Debug, Clone, PartialEq)]
pub struct NodeSample {
    pub at: Instant,
    pub unix_s: u64,
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub records_in: u64,
    /// Requests received, indexed by [`ApiKey::index`], summed over shards.
    pub requests: Vec<u64>,
    pub produce_latency: Buckets,
    pub fetch_latency: Buckets,
    pub fsync_latency: Buckets,
    /// User plus system CPU time of the process, in clock ticks (`None` without /proc).
    pub cpu_ticks: Option<u64>,
}

/// One point of a group's lag history.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LagPoint {
    pub unix_s: u64,
    pub total_lag: u64,
}

/// Per-second rates between two samples.
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Rates {
    pub bytes_in_per_s: f64,
    pub bytes_out_per_s: f64,
    pub records_in_per_s: f64,
    pub requests_per_s: f64,
    pub produce_requests_per_s: f64,
    pub fetch_requests_per_s: f64,
    /// CPU used by the whole node process, in percent of one core.
    pub cpu_percent: Option<f64>,
    /// Seconds between the two samples.
    pub window_s: f64,
}

/// A partition's log end and bytes fetched at the last sample, and the rates since the one
/// before.
#[derive(Debug, Clone, Copy)]
struct PartitionMark {
    end: u64,
    read: u64,
    records_per_s: Option<f64>,
    fetch_bytes_per_s: Option<f64>,
}

/// The rings; see the module doc.
#[derive(Debug, Default)]
pub struct Sampler {
    node: VecDeque<NodeSample>,
    partitions: HashMap<(String, u32), PartitionMark>,
    lag: BTreeMap<String, VecDeque<LagPoint>>,
}

impl Sampler {
    /// Samples when the last sample is [`SAMPLE_INTERVAL`] old (or there is none).
    pub fn tick(&mut self, metrics: &NodeMetrics, now: Instant) {
        let due = self.node.back().is_none_or(|last| now.duration_since(last.at) >= SAMPLE_INTERVAL);
        if due {
            self.sample(metrics, now);
        }
    }

    /// Takes one sample of everything.
    pub fn sample(&mut self, metrics: &NodeMetrics, now: Instant) {
        let current = node_sample(metrics, now);
        let unix_s = current.unix_s;
        let window_s = self.node.back().map(|last| now.duration_since(last.at).as_secs_f64());
        push_bounded(&mut self.node, current);
        self.sample_partitions(metrics, window_s);
        self.sample_lag(metrics, unix_s);
    }

    fn sample_partitions(&mut self, metrics: &NodeMetrics, window_s: Option<f64>) {
        let mut next = HashMap::with_capacity(self.partitions.len());
        for g in metrics.shards.iter().flat_map(|m| m.partitions()).take(PARTITIONS_TRACKED_MAX) {
            let (records_per_s, fetch_bytes_per_s) =
                match (self.partitions.get(&(g.topic.clone(), g.partition)), window_s) {
                    (Some(prev), Some(w)) if w > 0.0 => (
                        Some(g.log_end_offset.saturating_sub(prev.end) as f64 / w),
                        Some(g.bytes_read.saturating_sub(prev.read) as f64 / w),
                    ),
                    _ => (None, None),
                };
            let mark = PartitionMark { end: g.log_end_offset, read: g.bytes_read, records_per_s, fetch_bytes_per_s };
            next.insert((g.topic, g.partition), mark);
        }
        self.partitions = next;
    }

    fn sample_lag(&mut self, metrics: &NodeMetrics, unix_s: u64) {
        let groups = metrics.group_lags();
        // Groups that vanished lose their history; new ones start one while there is room.
        self.lag.retain(|id, _| groups.iter().any(|(g, _)| &g.group_id == id));
        for (g, lags) in groups {
            let total_lag = lags.iter().map(|p| p.lag).fold(0u64, u64::saturating_add);
            if !self.lag.contains_key(&g.group_id) && self.lag.len() >= GROUPS_TRACKED_MAX {
                continue;
            }
            push_bounded(self.lag.entry(g.group_id).or_default(), LagPoint { unix_s, total_lag });
        }
    }

    /// Rates over the last interval (`None` before the second sample).
    pub fn rates_now(&self) -> Option<Rates> {
        let n = self.node.len();
        (n >= 2).then(|| rates(&self.node[n - 2], &self.node[n - 1]))
    }

    /// Rates over everything kept (up to the last hour).
    pub fn rates_span(&self) -> Option<Rates> {
        match (self.node.front(), self.node.back()) {
            (Some(a), Some(b)) if self.node.len() >= 2 => Some(rates(a, b)),
            _ => None,
        }
    }

    /// `(unix_s, bytes in/s, bytes out/s)` per interval, oldest first.
    pub fn bytes_series(&self) -> Vec<(u64, f64, f64)> {
        let samples: Vec<&NodeSample> = self.node.iter().collect();
        samples
            .windows(2)
            .map(|w| {
                let r = rates(w[0], w[1]);
                (w[1].unix_s, r.bytes_in_per_s, r.bytes_out_per_s)
            })
            .collect()
    }

    /// The oldest sample kept (the base of the window percentiles).
    pub fn oldest(&self) -> Option<&NodeSample> {
        self.node.front()
    }

    /// A partition's produce rate (records/s) over the last interval.
    pub fn partition_records_per_s(&self, topic: &str, partition: u32) -> Option<f64> {
        self.partitions.get(&(topic.to_string(), partition)).and_then(|m| m.records_per_s)
    }

    /// Record-batch bytes fetched per second from a partition over the last interval.
    pub fn partition_fetch_bytes_per_s(&self, topic: &str, partition: u32) -> Option<f64> {
        self.partitions.get(&(topic.to_string(), partition)).and_then(|m| m.fetch_bytes_per_s)
    }

    /// A group's total lag history, oldest first (empty if not tracked).
    pub fn lag_history(&self, group_id: &str) -> Vec<LagPoint> {
        self.lag.get(group_id).map(|r| r.iter().copied().collect()).unwrap_or_default()
    }
}

/// Appends `item`, dropping the oldest at [`HISTORY_POINTS_MAX`].
fn push_bounded<T>(ring: &mut VecDeque<T>, item: T) {
    if ring.len() >= HISTORY_POINTS_MAX {
        ring.pop_front();
    }
    ring.push_back(item);
    assert!(ring.len() <= HISTORY_POINTS_MAX);
}

/// Reads every counter now.
pub fn node_sample(metrics: &NodeMetrics, at: Instant) -> NodeSample {
    let sum = |get: fn(&crate::metrics::ShardMetrics) -> u64| metrics.shards.iter().map(|m| get(m)).sum::<u64>();
    let mut requests = vec![0u64; ApiKey::COUNT];
    let mut produce_latency = Buckets::default();
    let mut fetch_latency = Buckets::default();
    for m in &metrics.shards {
        for (total, count) in requests.iter_mut().zip(&m.requests) {
            *total += count.load(Relaxed);
        }
        add_buckets(&mut produce_latency, &m.produce_latency.counts());
        add_buckets(&mut fetch_latency, &m.fetch_latency.counts());
    }
    NodeSample {
        at,
        unix_s: SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs()),
        bytes_in: sum(|m| m.bytes_in.load(Relaxed)),
        bytes_out: sum(|m| m.bytes_out.load(Relaxed)),
        records_in: sum(|m| m.records_in.load(Relaxed)),
        requests,
        produce_latency,
        fetch_latency,
        fsync_latency: FSYNC_LATENCY.counts(),
        cpu_ticks: crate::admin::process::cpu_ticks(),
    }
}

fn add_buckets(total: &mut Buckets, more: &Buckets) {
    for (t, m) in total.iter_mut().zip(more) {
        *t += m;
    }
}

/// Per-second rates from `a` to the later `b` (counters never shrink; saturating anyway).
pub fn rates(a: &NodeSample, b: &NodeSample) -> Rates {
    let window_s = b.at.duration_since(a.at).as_secs_f64();
    let per_s = |x: u64, y: u64| if window_s > 0.0 { y.saturating_sub(x) as f64 / window_s } else { 0.0 };
    let requests = |s: &NodeSample| s.requests.iter().sum::<u64>();
    let api = |s: &NodeSample, k: ApiKey| s.requests.get(k.index()).copied().unwrap_or(0);
    let cpu_percent = match (a.cpu_ticks, b.cpu_ticks, crate::admin::process::ticks_per_s()) {
        (Some(x), Some(y), Some(hz)) if window_s > 0.0 => Some(per_s(x, y) / hz as f64 * 100.0),
        _ => None,
    };
    Rates {
        bytes_in_per_s: per_s(a.bytes_in, b.bytes_in),
        bytes_out_per_s: per_s(a.bytes_out, b.bytes_out),
        records_in_per_s: per_s(a.records_in, b.records_in),
        requests_per_s: per_s(requests(a), requests(b)),
        produce_requests_per_s: per_s(api(a, ApiKey::Produce), api(b, ApiKey::Produce)),
        fetch_requests_per_s: per_s(api(a, ApiKey::Fetch), api(b, ApiKey::Fetch)),
        cpu_percent,
        window_s,
    }
}

/// The bucket bound (µs) at or below which a `quantile` (0..1) of the observations in
/// `later - earlier` fall; `None` without observations, `u64::MAX` past the last bound.
pub fn percentile_us(earlier: &Buckets, later: &Buckets, quantile: f64) -> Option<u64> {
    let delta: Vec<u64> = later.iter().zip(earlier).map(|(l, e)| l.saturating_sub(*e)).collect();
    let total: u64 = delta.iter().sum();
    if total == 0 {
        return None;
    }
    let rank = ((total as f64) * quantile).ceil().max(1.0) as u64;
    let mut seen = 0;
    for (i, count) in delta.iter().enumerate() {
        seen += count;
        if seen >= rank {
            return Some(LATENCY_BUCKETS_US.get(i).copied().unwrap_or(u64::MAX));
        }
    }
    Some(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::{GroupGauge, GroupPartitionGauge, PartitionGauge};

    fn gauge(end: u64) -> PartitionGauge {
        let (log_start_offset, size_bytes, bytes_read) = (0, 1, end * 100);
        PartitionGauge {
            topic: "t".into(),
            partition: 0,
            log_start_offset,
            log_end_offset: end,
            size_bytes,
            set_aside_bytes: 0,
            bytes_read,
            replica: None,
        }
    }

    #[test]
    fn rates_lag_history_and_bounds() {
        let metrics = NodeMetrics::new(1, 10);
        let mut s = Sampler::default();
        let t0 = Instant::now();
        metrics.shards[0].publish_partitions(vec![gauge(10)]);
        metrics.shards[0].publish_groups(vec![GroupGauge {
            group_id: "g".into(),
            state: "Empty".into(),
            generation: 0,
            assignor: "range".into(),
            members: Vec::new(),
            partitions: vec![GroupPartitionGauge { topic: "t".into(), partition: 0, committed: Some(4) }],
        }]);
        s.sample(&metrics, t0);
        assert_eq!(s.rates_now(), None);
        metrics.shards[0].bytes_in.fetch_add(1000, Relaxed);
        metrics.shards[0].publish_partitions(vec![gauge(60)]);
        s.sample(&metrics, t0 + Duration::from_secs(5));
        let r = s.rates_now().unwrap();
        assert_eq!(r.bytes_in_per_s, 200.0);
        assert_eq!(s.partition_records_per_s("t", 0), Some(10.0));
        assert_eq!(s.partition_fetch_bytes_per_s("t", 0), Some(1000.0), "(6000 - 1000) bytes fetched over 5 s");
        let lags: Vec<u64> = s.lag_history("g").iter().map(|p| p.total_lag).collect();
        assert_eq!(lags, vec![6, 56]);
        for i in 0..HISTORY_POINTS_MAX as u64 + 5 {
            s.sample(&metrics, t0 + Duration::from_secs(10 + i * 5));
        }
        assert_eq!(s.lag_history("g").len(), HISTORY_POINTS_MAX);
        assert_eq!(s.bytes_series().len(), HISTORY_POINTS_MAX - 1);
        metrics.shards[0].publish_groups(Vec::new());
        s.sample(&metrics, t0 + Duration::from_secs(100_000));
        assert!(s.lag_history("g").is_empty(), "a vanished group's history is dropped");
    }

    #[test]
    fn percentiles_come_from_bucket_deltas() {
        let mut earlier = Buckets::default();
        earlier[0] = 100;
        let mut later = earlier;
        later[1] += 90;
        later[5] += 10;
        assert_eq!(percentile_us(&earlier, &later, 0.5), Some(LATENCY_BUCKETS_US[1]));
        assert_eq!(percentile_us(&earlier, &later, 0.99), Some(LATENCY_BUCKETS_US[5]));
        assert_eq!(percentile_us(&later, &later, 0.5), None);
        later[LATENCY_BUCKETS_US.len()] += 1000;
        assert_eq!(percentile_us(&earlier, &later, 0.99), Some(u64::MAX));
    }
}
