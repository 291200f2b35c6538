//! The `--plot` output: an HDR-style latency percentile curve (SVG).
//!
//! The x axis is `1 / (1 - p)` on a log scale, so 90 %, 99 %, 99.9 %, 99.99 % are evenly
//! spaced and the tail gets as much room as the median; the y axis is latency in ms.
//! The 100 % point (x = ∞) is left off the curve; the max is in the table and JSON.

use std::path::Path;

use plotters::prelude::*;

use crate::stats::LatencySummary;

/// Largest `1 / (1 - p)` plotted (99.9999 %).
const X_MAX_CAP: f64 = 1e6;

/// Why a plot could not be drawn.
#[derive(Debug, thiserror::Error)]
pub enum PlotError {
    #[error("nothing to plot: no latency samples")]
    Empty,
    #[error("drawing {path}: {reason}")]
    Draw { path: String, reason: String },
}

/// `(1 / (1 - p), latency_ms)` points of a spectrum, 100 % excluded.
pub fn curve_points(summary: &LatencySummary) -> Vec<(f64, f64)> {
    summary
        .spectrum
        .iter()
        .filter(|p| p.percentile < 100.0)
        .map(|p| (1.0 / (1.0 - p.percentile / 100.0), p.value_us as f64 / 1e3))
        .filter(|(x, _)| x.is_finite() && *x <= X_MAX_CAP)
        .collect()
}

/// Axis label for an x value: `90%`, `99%`, `99.9%`.
pub fn percentile_label(x: f64) -> String {
    let p = 100.0 * (1.0 - 1.0 / x);
    let text = format!("{p:.4}");
    let text = text.trim_end_matches('0').trim_end_matches('.');
    format!("{text}%")
}

/// Draws the named curves (e.g. publish and end-to-end) into an SVG at `path`.
pub fn write_svg(path: &Path, title: &str, series: &[(&str, &LatencySummary)]) -> Result<(), PlotError> {
    let curves: Vec<(&str, Vec<(f64, f64)>)> =
        series.iter().map(|(name, s)| (*name, curve_points(s))).filter(|(_, pts)| !pts.is_empty()).collect();
    if curves.is_empty() {
        return Err(PlotError::Empty);
    }
    let x_top = curves.iter().flat_map(|(_, p)| p.iter().map(|(x, _)| *x)).fold(10.0, f64::max);
    let x_max = 10f64.powf(x_top.log10().ceil()).min(X_MAX_CAP);
    let y_max = curves.iter().flat_map(|(_, p)| p.iter().map(|(_, y)| *y)).fold(0.001, f64::max) * 1.1;
    let err = |e: &dyn std::fmt::Display| PlotError::Draw { path: path.display().to_string(), reason: e.to_string() };

    let root = SVGBackend::new(path, (1000, 600)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| err(&e))?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 22))
        .margin(20)
        .x_label_area_size(45)
        .y_label_area_size(70)
        .build_cartesian_2d((1.0f64..x_max).log_scale(), 0.0f64..y_max)
        .map_err(|e| err(&e))?;
    chart
        .configure_mesh()
        .x_desc("percentile")
        .y_desc("latency (ms)")
        .x_label_formatter(&|x| percentile_label(*x))
        .draw()
        .map_err(|e| err(&e))?;
    let colors = [RED, BLUE, GREEN, MAGENTA];
    for (i, (name, points)) in curves.into_iter().enumerate() {
        let color = colors[i % colors.len()];
        chart
            .draw_series(LineSeries::new(points, color.stroke_width(2)))
            .map_err(|e| err(&e))?
            .label(name)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2)));
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()
        .map_err(|e| err(&e))?;
    root.present().map_err(|e| err(&e))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::{new_histogram, record_ns};

    fn summary() -> LatencySummary {
        let mut h = new_histogram();
        for us in 1..=100_000u64 {
            record_ns(&mut h, us * 10);
        }
        LatencySummary::from_histogram(&h)
    }

    #[test]
    fn labels_are_percentiles() {
        assert_eq!(percentile_label(1.0), "0%");
        assert_eq!(percentile_label(10.0), "90%");
        assert_eq!(percentile_label(100.0), "99%");
        assert_eq!(percentile_label(1000.0), "99.9%");
        assert_eq!(percentile_label(10_000.0), "99.99%");
    }

    #[test]
    fn curve_excludes_100_and_is_monotonic() {
        let pts = curve_points(&summary());
        assert!(pts.len() > 10);
        assert!(pts.windows(2).all(|w| w[0].0 <= w[1].0 && w[0].1 <= w[1].1));
        assert!(pts.iter().all(|(x, _)| x.is_finite() && *x >= 1.0));
    }

    #[test]
    fn writes_an_svg_with_both_series() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("lat.svg");
        let s = summary();
        write_svg(&path, "test curve", &[("publish", &s), ("end-to-end", &s)]).unwrap();
        let svg = std::fs::read_to_string(&path).unwrap();
        assert!(svg.starts_with("<svg"), "{}", &svg[..100.min(svg.len())]);
        assert!(svg.contains("publish") && svg.contains("end-to-end"));
        assert!(svg.contains("99%") && svg.contains("percentile"));
        assert!(svg.contains("<polyline"), "a line series is drawn");
    }

    #[test]
    fn empty_input_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let empty = LatencySummary::from_histogram(&new_histogram());
        assert!(matches!(write_svg(&dir.path().join("x.svg"), "t", &[("p", &empty)]), Err(PlotError::Empty)));
    }
}
