//! Human and machine output of a run: the stdout summary table and the `--json` file.
//! Formatting only — no measurement happens here.

use std::fmt::Write as _;
use std::path::Path;

use crate::stats::{LatencySummary, Report, Throughput};

/// Renders a latency in µs as `850 µs` or `12.34 ms`.
pub fn format_latency_us(us: u64) -> String {
    format_us(us as f64)
}

/// Renders a (possibly fractional) duration in µs as `850 µs`, `12.34 ms` or `2.50 s`.
pub fn format_us(us: f64) -> String {
    if us < 1_000.0 {
        format!("{us:.0} µs")
    } else if us < 1_000_000.0 {
        format!("{:.2} ms", us / 1e3)
    } else {
        format!("{:.2} s", us / 1e6)
    }
}

/// Renders a byte count as `1.23 GB` (decimal units).
pub fn format_bytes(bytes: u64) -> String {
    let b = bytes as f64;
    if b >= 1e9 {
        format!("{:.2} GB", b / 1e9)
    } else if b >= 1e6 {
        format!("{:.1} MB", b / 1e6)
    } else {
        format!("{:.0} kB", b / 1e3)
    }
}

fn latency_row(out: &mut String, label: &str, s: &LatencySummary) {
    if s.count == 0 {
        let _ = writeln!(out, "{label:<12} (no samples)");
        return;
    }
    let cells = [s.p50_us, s.p90_us, s.p99_us, s.p999_us, s.p9999_us, s.max_us].map(format_latency_us);
    let _ = write!(out, "{label:<12}");
    for cell in cells {
        let _ = write!(out, "{cell:>11}");
    }
    let _ = writeln!(out, "{:>11}", s.count);
}

fn throughput_row(out: &mut String, label: &str, t: &Throughput) {
    let _ = writeln!(
        out,
        "{label:<12}{:>14.0} msgs/s {:>10.1} MB/s  ({} msgs, {} in {:.1} s)",
        t.msgs_per_sec,
        t.mb_per_sec,
        t.msgs,
        format_bytes(t.bytes),
        t.seconds
    );
}

/// The summary table printed on stdout.
pub fn summary_table(report: &Report) -> String {
    let c = &report.config;
    let r = &report.results;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "strand-bench {} — workload {:?} against {}: {} topic(s) × {} partition(s), {} producer(s), {} consumer(s), \
         {} B messages, batch {} B, linger {} ms, rate {}, acks {:?}, protocol {:?}, io {} fsync {}",
        report.version,
        c.name,
        report.target,
        c.topics,
        c.partitions,
        c.producers,
        c.consumers,
        c.message_size,
        c.batch_size,
        c.linger_ms,
        c.rate,
        c.acks,
        c.protocol,
        c.io_mode,
        c.fsync
    );
    let _ = writeln!(out);
    let _ = write!(out, "{:<12}", "latency");
    for h in ["p50", "p90", "p99", "p99.9", "p99.99", "max", "samples"] {
        let _ = write!(out, "{h:>11}");
    }
    let _ = writeln!(out);
    latency_row(&mut out, "publish", &r.publish);
    latency_row(&mut out, "end-to-end", &r.end_to_end);
    let _ = writeln!(out);
    throughput_row(&mut out, "produce", &r.produce);
    throughput_row(&mut out, "consume", &r.consume);
    if let Some(cu) = &r.catchup {
        let _ = writeln!(out, "catch-up: backlog {} ({})", format_bytes(cu.backlog_bytes), done_word(cu.completed));
        if cu.evicted_bytes > 0 {
            let _ = writeln!(
                out,
                "  cold: {} of segment files evicted from the page cache first",
                format_bytes(cu.evicted_bytes)
            );
        }
        throughput_row(&mut out, "  backlog", &cu.produce);
        throughput_row(&mut out, "  catch-up", &cu.consume);
    }
    match &r.node {
        Some(n) => {
            let _ = writeln!(
                out,
                "node        CPU {:.0} % of one core ({:.2} s, {:.2} CPU-s/GB), peak RSS {}",
                n.cpu_percent,
                n.cpu_seconds,
                n.cpu_seconds_per_gb,
                format_bytes(n.rss_peak_bytes)
            );
        }
        None => {
            let _ = writeln!(out, "node        (not local: CPU and RSS not measured)");
        }
    }
    if r.errors > 0 {
        let _ = writeln!(out, "errors      {} ({})", r.errors, r.first_error.as_deref().unwrap_or("?"));
    }
    if r.stopped_early {
        let _ = writeln!(out, "(stopped early by CTRL-C: the window is shorter than planned)");
    }
    out
}

fn done_word(completed: bool) -> &'static str {
    if completed {
        "read completely"
    } else {
        "NOT read completely within the duration"
    }
}

/// Writes the report as pretty JSON.
pub fn write_json(report: &Report, path: &Path) -> std::io::Result<()> {
    let text = serde_json::to_string_pretty(report).map_err(std::io::Error::other)?;
    std::fs::write(path, text + "\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Workload;
    use crate::stats::{new_histogram, record_ns, NodeUsage, Results};

    fn sample_report() -> Report {
        let mut h = new_histogram();
        for us in [100u64, 200, 300, 5_000] {
            record_ns(&mut h, us * 1_000);
        }
        Report {
            tool: "strand-bench",
            version: "test",
            target: "embedded".into(),
            config: Workload::default(),
            results: Results {
                publish: LatencySummary::from_histogram(&h),
                end_to_end: LatencySummary::from_histogram(&new_histogram()),
                produce: Throughput::new(4, 4096, 1.0),
                consume: Throughput::new(0, 0, 1.0),
                node: Some(NodeUsage {
                    cpu_seconds: 0.5,
                    cpu_percent: 50.0,
                    rss_peak_bytes: 10_000_000,
                    cpu_seconds_per_gb: 1.0,
                }),
                catchup: None,
                errors: 0,
                first_error: None,
                stopped_early: true,
            },
        }
    }

    #[test]
    fn latency_units() {
        assert_eq!(format_latency_us(850), "850 µs");
        assert_eq!(format_latency_us(12_345), "12.35 ms");
        assert_eq!(format_latency_us(2_500_000), "2.50 s");
        assert_eq!(format_bytes(2_600_000_000), "2.60 GB");
    }

    #[test]
    fn table_shows_percentiles_and_rates() {
        let t = summary_table(&sample_report());
        assert!(t.contains("p99.99"), "{t}");
        assert!(t.contains("publish") && t.contains("200 µs") && t.contains("5.00 ms"), "{t}");
        assert!(t.lines().any(|l| l.starts_with("end-to-end") && l.ends_with("(no samples)")), "{t}");
        assert!(t.contains("4 msgs/s"), "{t}");
        assert!(t.contains("CPU 50 %"), "{t}");
        assert!(t.contains("stopped early"), "{t}");
    }

    #[test]
    fn json_round_trips_with_spectrum() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.json");
        write_json(&sample_report(), &path).unwrap();
        let v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        assert_eq!(v["config"]["message_size"], 1024);
        assert_eq!(v["results"]["publish"]["count"], 4);
        assert_eq!(v["results"]["publish"]["p50_us"], 200);
        let spectrum = v["results"]["publish"]["spectrum"].as_array().unwrap();
        assert_eq!(spectrum.last().unwrap()["percentile"], 100.0);
        assert_eq!(v["results"]["produce"]["mb_per_sec"], 0.004096);
        assert_eq!(v["config"]["rate"], "max");
    }
}
