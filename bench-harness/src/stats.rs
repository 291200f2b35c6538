//! Measurement records: HDR latency histograms (µs, 3 significant figures), throughput
//! counters, and the serializable results a run reports.
//!
//! Invariants: every latency is recorded in microseconds, clamped to
//! `[1, LATENCY_US_MAX]` (saturating, never an error); a summary of an empty histogram
//! reports `count = 0` and zeros rather than inventing numbers.

use hdrhistogram::Histogram;
use serde::Serialize;

use crate::config::Workload;

/// Largest latency a histogram tracks (one hour); larger values saturate to it.
pub const LATENCY_US_MAX: u64 = 3_600_000_000;
/// Significant figures of every latency histogram.
pub const SIGNIFICANT_FIGURES: u8 = 3;
/// Spectrum resolution: quantile ticks per halving of the distance to 100 %.
pub const SPECTRUM_TICKS_PER_HALF: u32 = 5;

/// A new latency histogram in microseconds.
pub fn new_histogram() -> Histogram<u64> {
    // The bounds are constants that hdrhistogram accepts (low >= 1, high >= 2 * low, sigfig <= 5).
    Histogram::new_with_bounds(1, LATENCY_US_MAX, SIGNIFICANT_FIGURES).expect("constant histogram bounds are valid")
}

/// Records a latency given in nanoseconds.
pub fn record_ns(histogram: &mut Histogram<u64>, latency_ns: u64) {
    histogram.saturating_record((latency_ns / 1_000).max(1));
}

/// One point of the percentile spectrum.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SpectrumPoint {
    /// Percentile in `[0, 100]`.
    pub percentile: f64,
    pub value_us: u64,
    /// Samples at or below `value_us`.
    pub count: u64,
}

/// Latency distribution of one measurement (publish or end-to-end).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LatencySummary {
    pub count: u64,
    pub min_us: u64,
    pub mean_us: f64,
    pub p50_us: u64,
    pub p90_us: u64,
    pub p99_us: u64,
    pub p999_us: u64,
    pub p9999_us: u64,
    pub max_us: u64,
    pub spectrum: Vec<SpectrumPoint>,
}

impl LatencySummary {
    /// Summarizes a histogram, including the full percentile spectrum.
    pub fn from_histogram(h: &Histogram<u64>) -> LatencySummary {
        if h.is_empty() {
            return LatencySummary {
                count: 0,
                min_us: 0,
                mean_us: 0.0,
                p50_us: 0,
                p90_us: 0,
                p99_us: 0,
                p999_us: 0,
                p9999_us: 0,
                max_us: 0,
                spectrum: Vec::new(),
            };
        }
        let spectrum = h
            .iter_quantiles(SPECTRUM_TICKS_PER_HALF)
            .map(|v| SpectrumPoint {
                percentile: v.quantile_iterated_to() * 100.0,
                value_us: h.highest_equivalent(v.value_iterated_to()),
                count: v.count_since_last_iteration(),
            })
            .collect();
        LatencySummary {
            count: h.len(),
            min_us: h.min(),
            mean_us: h.mean(),
            p50_us: h.value_at_quantile(0.50),
            p90_us: h.value_at_quantile(0.90),
            p99_us: h.value_at_quantile(0.99),
            p999_us: h.value_at_quantile(0.999),
            p9999_us: h.value_at_quantile(0.9999),
            max_us: h.max(),
            spectrum,
        }
    }
}

/// Message and byte rate over a measured window.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Throughput {
    pub msgs: u64,
    /// Bytes of message values (not frame or batch overhead).
    pub bytes: u64,
    pub seconds: f64,
    pub msgs_per_sec: f64,
    /// 10^6 bytes per second.
    pub mb_per_sec: f64,
}

impl Throughput {
    pub fn new(msgs: u64, bytes: u64, seconds: f64) -> Throughput {
        let per_sec = |n: u64| if seconds > 0.0 { n as f64 / seconds } else { 0.0 };
        Throughput { msgs, bytes, seconds, msgs_per_sec: per_sec(msgs), mb_per_sec: per_sec(bytes) / 1e6 }
    }
}

/// Resource use of a local node over the measured window.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct NodeUsage {
    /// User + system CPU seconds used during the window.
    pub cpu_seconds: f64,
    /// `cpu_seconds / window`, in percent of one core (200 % = both cores of this box).
    pub cpu_percent: f64,
    /// Peak resident set size (VmHWM) at the end of the run.
    pub rss_peak_bytes: u64,
    /// Node CPU seconds per GB (10^9 bytes) of values produced + consumed.
    pub cpu_seconds_per_gb: f64,
}

/// The catch-up phase of a backlog run.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct CatchupResult {
    /// Bytes of values produced into the backlog before consumers started.
    pub backlog_bytes: u64,
    /// How fast the backlog was written.
    pub produce: Throughput,
    /// How fast the consumers read it back.
    pub consume: Throughput,
    /// True if the consumers read the whole backlog within the duration.
    pub completed: bool,
    /// Segment bytes evicted from the page cache before the catch-up (`--cold`; 0 = warm).
    pub evicted_bytes: u64,
}

/// Everything a run measured.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Results {
    pub publish: LatencySummary,
    pub end_to_end: LatencySummary,
    pub produce: Throughput,
    pub consume: Throughput,
    pub node: Option<NodeUsage>,
    pub catchup: Option<CatchupResult>,
    /// Produce or fetch requests that failed (each failed message is not counted as produced).
    pub errors: u64,
    /// The first error seen, for the summary.
    pub first_error: Option<String>,
    /// Stopped by CTRL-C before the planned duration.
    pub stopped_early: bool,
}

/// The JSON document `--json` writes.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report {
    pub tool: &'static str,
    pub version: &'static str,
    /// `embedded` or the bootstrap address.
    pub target: String,
    pub config: Workload,
    pub results: Results,
}

/// Median and range of one metric over repeated runs.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Spread {
    /// Middle value (mean of the two middle ones for an even count).
    pub median: f64,
    pub min: f64,
    pub max: f64,
    /// Every run's value, in run order.
    pub runs: Vec<f64>,
}

impl Spread {
    /// The spread of `runs`, or `None` when there is no finite value (NaNs are dropped).
    pub fn of(runs: &[f64]) -> Option<Spread> {
        let mut sorted: Vec<f64> = runs.iter().copied().filter(|v| v.is_finite()).collect();
        if sorted.is_empty() {
            return None;
        }
        sorted.sort_by(f64::total_cmp);
        let n = sorted.len();
        let median = if n % 2 == 1 { sorted[n / 2] } else { (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0 };
        Some(Spread { median, min: sorted[0], max: sorted[n - 1], runs: runs.to_vec() })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spread_median_and_range() {
        let s = Spread::of(&[3.0, 1.0, 2.0]).unwrap();
        assert_eq!((s.median, s.min, s.max), (2.0, 1.0, 3.0));
        assert_eq!(s.runs, vec![3.0, 1.0, 2.0], "run order kept");
        assert_eq!(Spread::of(&[4.0, 1.0, 2.0, 3.0]).unwrap().median, 2.5);
        assert_eq!(Spread::of(&[5.0]).unwrap().median, 5.0);
        assert_eq!(Spread::of(&[f64::NAN, 7.0]).unwrap().median, 7.0);
        assert!(Spread::of(&[]).is_none());
    }

    #[test]
    fn summary_of_known_distribution() {
        let mut h = new_histogram();
        for us in 1..=10_000u64 {
            record_ns(&mut h, us * 1_000);
        }
        let s = LatencySummary::from_histogram(&h);
        assert_eq!(s.count, 10_000);
        assert_eq!(s.min_us, 1);
        // 3 significant figures: within 0.1 % of the true value.
        assert!((4_995..=5_005).contains(&s.p50_us), "p50 {}", s.p50_us);
        assert!((9_890..=9_910).contains(&s.p99_us), "p99 {}", s.p99_us);
        assert!((9_990..=10_010).contains(&s.max_us), "max {}", s.max_us);
        assert!(s.p50_us <= s.p90_us && s.p90_us <= s.p99_us && s.p99_us <= s.p999_us && s.p999_us <= s.p9999_us);
        assert!(s.p9999_us <= s.max_us);
        // The spectrum is monotonic, ends at 100 % and accounts for every sample.
        assert!(s.spectrum.len() > 20);
        assert!(s.spectrum.windows(2).all(|w| w[0].percentile <= w[1].percentile && w[0].value_us <= w[1].value_us));
        let last = s.spectrum.last().unwrap();
        assert_eq!(last.percentile, 100.0);
        assert_eq!(s.spectrum.iter().map(|p| p.count).sum::<u64>(), 10_000);
    }

    #[test]
    fn sub_microsecond_and_huge_values_are_clamped() {
        let mut h = new_histogram();
        record_ns(&mut h, 10);
        record_ns(&mut h, u64::MAX);
        assert_eq!(h.len(), 2);
        assert_eq!(h.min(), 1);
        assert!(h.max() >= LATENCY_US_MAX);
    }

    #[test]
    fn empty_summary_is_zero() {
        let s = LatencySummary::from_histogram(&new_histogram());
        assert_eq!(s.count, 0);
        assert_eq!(s.p99_us, 0);
        assert!(s.spectrum.is_empty());
    }

    #[test]
    fn throughput_math() {
        let t = Throughput::new(2_000, 2_048_000, 2.0);
        assert_eq!(t.msgs_per_sec, 1_000.0);
        assert_eq!(t.mb_per_sec, 1.024);
        assert_eq!(Throughput::new(5, 5, 0.0).msgs_per_sec, 0.0);
    }
}
