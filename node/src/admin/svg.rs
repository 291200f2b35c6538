//! Line charts as inline SVG, drawn by the node (nothing third-party reaches the browser).
//! A chart is a few hundred bytes per series plus one coordinate pair per point.

use std::fmt::Write as _;

use super::html::esc;

/// Chart size in SVG user units (scaled to the page width by CSS).
const WIDTH: f64 = 720.0;
const HEIGHT: f64 = 180.0;
/// Room for the axis labels.
const MARGIN_LEFT: f64 = 70.0;
const MARGIN_BOTTOM: f64 = 20.0;
const MARGIN_TOP: f64 = 10.0;

/// One line: a name for the legend, a CSS colour and `(unix seconds, value)` points.
pub struct Series<'a> {
    pub name: &'a str,
    pub colour: &'a str,
    pub points: Vec<(u64, f64)>,
}

/// A line chart of `series` over their common time span, the y axis from 0 to the
/// largest value, labelled through `label` (e.g. bytes/s). Fewer than two points in
/// every series gives a note instead of a chart.
pub fn line_chart(title: &str, series: &[Series<'_>], label: &dyn Fn(f64) -> String) -> String {
    let all = || series.iter().flat_map(|s| s.points.iter());
    let (Some(t0), Some(t1)) = (all().map(|p| p.0).min(), all().map(|p| p.0).max()) else {
        return format!("<p class=\"note\">{}: no samples yet (one every 5 s).</p>", esc(title));
    };
    if t1 == t0 {
        return format!("<p class=\"note\">{}: one sample so far (one every 5 s).</p>", esc(title));
    }
    let y_max = all().map(|p| p.1).fold(0.0f64, f64::max).max(1.0);
    let plot_w = WIDTH - MARGIN_LEFT;
    let plot_h = HEIGHT - MARGIN_BOTTOM - MARGIN_TOP;
    let x = |t: u64| MARGIN_LEFT + (t - t0) as f64 / (t1 - t0) as f64 * plot_w;
    let y = |v: f64| MARGIN_TOP + plot_h - v / y_max * plot_h;
    let mut out = String::with_capacity(1024 + 24 * all().count());
    let _ = write!(
        out,
        "<figure class=\"chart\"><figcaption>{}</figcaption><svg viewBox=\"0 0 {WIDTH} {HEIGHT}\" role=\"img\" \
         aria-label=\"{}\">",
        esc(title),
        esc(title)
    );
    let _ = write!(
        out,
        "<line x1=\"{MARGIN_LEFT}\" y1=\"{b}\" x2=\"{WIDTH}\" y2=\"{b}\" class=\"axis\"/>\
         <line x1=\"{MARGIN_LEFT}\" y1=\"{MARGIN_TOP}\" x2=\"{MARGIN_LEFT}\" y2=\"{b}\" class=\"axis\"/>\
         <text x=\"{lx}\" y=\"{ty}\" class=\"lbl\" text-anchor=\"end\">{max}</text>\
         <text x=\"{lx}\" y=\"{b}\" class=\"lbl\" text-anchor=\"end\">0</text>\
         <text x=\"{MARGIN_LEFT}\" y=\"{HEIGHT}\" class=\"lbl\">{span} ago</text>\
         <text x=\"{WIDTH}\" y=\"{HEIGHT}\" class=\"lbl\" text-anchor=\"end\">now</text>",
        b = MARGIN_TOP + plot_h,
        lx = MARGIN_LEFT - 4.0,
        ty = MARGIN_TOP + 8.0,
        max = esc(&label(y_max)),
        span = esc(&span_text(t1 - t0)),
    );
    for s in series {
        let _ = write!(out, "<polyline fill=\"none\" stroke=\"{}\" stroke-width=\"1.5\" points=\"", esc(s.colour));
        for (t, v) in &s.points {
            let _ = write!(out, "{:.1},{:.1} ", x(*t), y(*v));
        }
        out.push_str("\"/>");
    }
    out.push_str("</svg><div class=\"legend\">");
    for s in series {
        let _ = write!(out, "<span style=\"color:{}\">&#9632;</span> {} ", esc(s.colour), esc(s.name));
    }
    out.push_str("</div></figure>");
    out
}

/// `90 s`, `12 min`, `1 h`.
fn span_text(seconds: u64) -> String {
    match seconds {
        s if s < 120 => format!("{s} s"),
        s if s < 7200 => format!("{} min", s / 60),
        s => format!("{} h", s / 3600),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn draws_points_and_escapes_names() {
        let s = Series { name: "<g>", colour: "#06c", points: vec![(100, 0.0), (105, 10.0), (110, 5.0)] };
        let svg = line_chart("lag of <g>", &[s], &|v| format!("{v}"));
        assert!(svg.contains("<polyline"), "{svg}");
        assert!(svg.contains("70.0,160.0 395.0,10.0 720.0,85.0"), "{svg}");
        assert!(svg.contains("lag of &lt;g&gt;") && !svg.contains("<g>"), "{svg}");
        let one = Series { name: "x", colour: "red", points: vec![(1, 1.0)] };
        assert!(line_chart("t", &[one], &|v| format!("{v}")).contains("one sample"));
    }
}
