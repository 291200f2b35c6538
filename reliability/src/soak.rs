//! Soak-run time series: one [`Sample`] every interval (RSS, open fds, produce and fetch p99, rates),
//! written as CSV, JSON and an SVG plot (two panels: p99 latencies, and RSS with its anonymous part).

use std::fmt::Write as _;
use std::path::Path;

use plotters::prelude::*;

/// One sampling interval of a soak run.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sample {
    /// Seconds since the run started (end of the interval).
    pub t_s: f64,
    pub rss_kib: u64,
    /// The anonymous part of `rss_kib` (heap, stacks, buffers; not mapped files).
    pub rss_anon_kib: u64,
    /// File descriptors the node holds open.
    pub fds: u64,
    pub produce_p99_ms: f64,
    pub fetch_p99_ms: f64,
    /// Records acknowledged in the interval.
    pub produced: u64,
    /// Records fetched in the interval.
    pub fetched: u64,
}

/// Writes `<dir>/<name>.csv`, `.json` and `.svg`.
pub fn write_outputs(dir: &Path, name: &str, samples: &[Sample]) -> Result<(), String> {
    let mut csv = String::from("t_s,rss_kib,rss_anon_kib,fds,produce_p99_ms,fetch_p99_ms,produced,fetched\n");
    for s in samples {
        let _ = writeln!(
            csv,
            "{:.1},{},{},{},{:.3},{:.3},{},{}",
            s.t_s, s.rss_kib, s.rss_anon_kib, s.fds, s.produce_p99_ms, s.fetch_p99_ms, s.produced, s.fetched
        );
    }
    std::fs::write(dir.join(format!("{name}.csv")), csv).map_err(|e| e.to_string())?;
    let json: Vec<serde_json::Value> = samples
        .iter()
        .map(|s| {
            serde_json::json!({"t_s": s.t_s, "rss_kib": s.rss_kib, "rss_anon_kib": s.rss_anon_kib, "fds": s.fds, "produce_p99_ms": s.produce_p99_ms,
                "fetch_p99_ms": s.fetch_p99_ms, "produced": s.produced, "fetched": s.fetched})
        })
        .collect();
    let text = serde_json::to_string_pretty(&json).map_err(|e| e.to_string())?;
    std::fs::write(dir.join(format!("{name}.json")), text).map_err(|e| e.to_string())?;
    plot(&dir.join(format!("{name}.svg")), samples)
}

/// Two stacked panels over time: produce/fetch p99 (ms), and node RSS with its anonymous part (MiB).
fn plot(path: &Path, samples: &[Sample]) -> Result<(), String> {
    if samples.is_empty() {
        return Err("no samples to plot".into());
    }
    let err = |e: &dyn std::fmt::Display| format!("plot {}: {e}", path.display());
    let t_max = samples.iter().map(|s| s.t_s).fold(1.0, f64::max);
    let root = SVGBackend::new(path, (1000, 700)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| err(&e))?;
    let (top, bottom) = root.split_vertically(350);
    let p99_max = samples.iter().map(|s| s.produce_p99_ms.max(s.fetch_p99_ms)).fold(0.1, f64::max) * 1.1;
    let mut chart = ChartBuilder::on(&top)
        .caption("soak: p99 latency per interval", ("sans-serif", 20))
        .margin(15)
        .x_label_area_size(35)
        .y_label_area_size(60)
        .build_cartesian_2d(0.0..t_max, 0.0..p99_max)
        .map_err(|e| err(&e))?;
    chart.configure_mesh().x_desc("s").y_desc("p99 (ms)").draw().map_err(|e| err(&e))?;
    for (label, color, pick) in [
        ("produce p99", RED, (|s: &Sample| s.produce_p99_ms) as fn(&Sample) -> f64),
        ("fetch p99", BLUE, |s: &Sample| s.fetch_p99_ms),
    ] {
        chart
            .draw_series(LineSeries::new(samples.iter().map(|s| (s.t_s, pick(s))), color.stroke_width(2)))
            .map_err(|e| err(&e))?
            .label(label)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2)));
    }
    chart.configure_series_labels().border_style(BLACK).draw().map_err(|e| err(&e))?;
    let rss_max = samples.iter().map(|s| s.rss_kib as f64 / 1024.0).fold(1.0, f64::max) * 1.1;
    let mut chart = ChartBuilder::on(&bottom)
        .caption("soak: node RSS", ("sans-serif", 20))
        .margin(15)
        .x_label_area_size(35)
        .y_label_area_size(60)
        .build_cartesian_2d(0.0..t_max, 0.0..rss_max)
        .map_err(|e| err(&e))?;
    chart.configure_mesh().x_desc("s").y_desc("RSS (MiB)").draw().map_err(|e| err(&e))?;
    for (label, color, pick) in [
        ("RSS", GREEN, (|s: &Sample| s.rss_kib) as fn(&Sample) -> u64),
        ("anonymous", MAGENTA, |s: &Sample| s.rss_anon_kib),
    ] {
        chart
            .draw_series(LineSeries::new(
                samples.iter().map(|s| (s.t_s, pick(s) as f64 / 1024.0)),
                color.stroke_width(2),
            ))
            .map_err(|e| err(&e))?
            .label(label)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2)));
    }
    chart.configure_series_labels().border_style(BLACK).draw().map_err(|e| err(&e))?;
    root.present().map_err(|e| err(&e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_csv_json_and_svg() {
        let dir = tempfile::tempdir().unwrap();
        let samples: Vec<Sample> = (1..=6u32)
            .map(|i| Sample {
                t_s: f64::from(i) * 10.0,
                rss_kib: 30_000 + u64::from(i) * 100,
                rss_anon_kib: 20_000,
                fds: 40,
                produce_p99_ms: 1.5 * f64::from(i),
                fetch_p99_ms: 0.7,
                produced: 1000,
                fetched: 990,
            })
            .collect();
        write_outputs(dir.path(), "s", &samples).unwrap();
        let csv = std::fs::read_to_string(dir.path().join("s.csv")).unwrap();
        assert_eq!(csv.lines().count(), 7);
        assert!(csv.lines().nth(1).unwrap().starts_with("10.0,30100,20000,40,1.500,0.700,1000,990"));
        let svg = std::fs::read_to_string(dir.path().join("s.svg")).unwrap();
        assert!(svg.contains("<svg") && svg.contains("polyline"), "svg has no lines");
        assert!(write_outputs(dir.path(), "empty", &[]).is_err());
    }
}
