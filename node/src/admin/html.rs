//! The console's pages: server-rendered HTML from the same structs the `/v1/...` JSON
//! endpoints serialize ([`super::model`]). Every name that reaches a page (topics,
//! groups, members, client ids, config values, peer errors) goes through [`esc`]; every
//! name in a link through [`link_segment`]. The pages are complete without JavaScript;
//! one inline script re-fetches the page every [`REFRESH_MS`] and swaps its `<main>`.
//! Nothing is loaded from anywhere else: CSS, script and charts are inline.

use std::fmt::Write as _;
use std::time::Instant;

use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};

use super::model::{GroupJson, NodeStats, Overview, Percentiles, TopicJson};
use super::svg::{line_chart, Series};

/// How often the script refreshes an open page.
pub const REFRESH_MS: u32 = 5_000;
/// Under-replicated partitions listed on the overview; the rest are counted.
const UNDER_REPLICATED_SHOWN_MAX: usize = 100;

/// Characters left as they are in a link's path segment.
const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'.').remove(b'_').remove(b'~');

/// The console's sections, for the navigation bar.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Nav {
    Overview,
    Topics,
    Groups,
    Node,
}

/// Escapes text for HTML element content and quoted attribute values.
pub fn esc(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// `name` percent-encoded for one path segment of a link.
pub fn link_segment(name: &str) -> String {
    utf8_percent_encode(name, SEGMENT).to_string()
}

const STYLE: &str = "body{font:14px/1.4 system-ui,sans-serif;margin:0;color:#222;background:#fafafa}\
header{background:#1d2b3a;color:#fff;padding:8px 16px;display:flex;gap:18px;align-items:baseline}\
header b{font-size:16px;margin-right:12px}header a{color:#cfe0f5;text-decoration:none}\
header a.on{color:#fff;border-bottom:2px solid #7fb2ff}main{padding:12px 16px;max-width:1400px}\
table{border-collapse:collapse;margin:6px 0 16px;background:#fff}th,td{border:1px solid #ddd;padding:3px 8px}\
th{background:#eef2f6;text-align:left}td.n{text-align:right;font-variant-numeric:tabular-nums}\
.up{color:#17803d}.down{color:#b42318;font-weight:bold}.warn{color:#b54708}.note{color:#666}\
.tiles{display:flex;gap:12px;flex-wrap:wrap}.tile{background:#fff;border:1px solid #ddd;padding:8px 12px;min-width:140px}\
.tile b{display:block;font-size:20px}figure.chart{margin:8px 0;max-width:760px}figure svg{width:100%;background:#fff;\
border:1px solid #ddd}.axis{stroke:#999}.lbl{font-size:10px;fill:#555}footer{color:#888;font-size:12px;padding:8px 16px}";

const SCRIPT: &str =
    "(function(){function r(){fetch(location.href,{cache:'no-store'}).then(function(x){return x.text()})\
.then(function(t){var m=new DOMParser().parseFromString(t,'text/html').getElementById('main');\
if(m){document.getElementById('main').replaceWith(m)}}).catch(function(){}).then(function(){setTimeout(r,MS)})}\
setTimeout(r,MS)})();";

/// A whole page around `body`; `started` is when the request began (for the footer).
pub fn page(title: &str, nav: Nav, body: &str, started: Instant) -> String {
    let mut out = String::with_capacity(body.len() + 4096);
    let _ = write!(
        out,
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{} · Strand</title>\
         <meta name=\"viewport\" content=\"width=device-width\"><style>{STYLE}</style></head><body><header><b>Strand</b>",
        esc(title)
    );
    for (item, href, text) in [
        (Nav::Overview, "/", "Overview"),
        (Nav::Topics, "/topics", "Topics"),
        (Nav::Groups, "/groups", "Consumer groups"),
        (Nav::Node, "/node", "Node"),
    ] {
        let class = if item == nav { " class=\"on\"" } else { "" };
        let _ = write!(out, "<a href=\"{href}\"{class}>{text}</a>");
    }
    let _ = write!(
        out,
        "</header><main id=\"main\"><h1>{}</h1>{body}<footer>rendered in {} µs; refreshes every {} s \
         with JavaScript</footer></main><script>{}</script></body></html>",
        esc(title),
        started.elapsed().as_micros(),
        REFRESH_MS / 1000,
        SCRIPT.replace("MS", &REFRESH_MS.to_string())
    );
    out
}

/// `1.5 MiB`.
pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut value = n as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

fn opt_bytes(n: Option<u64>) -> String {
    n.map_or_else(|| "—".into(), bytes)
}

fn per_s(rate: Option<f64>) -> String {
    rate.map_or_else(|| "—".into(), |r| if r >= 100.0 { format!("{r:.0}/s") } else { format!("{r:.1}/s") })
}

fn bytes_per_s(rate: Option<f64>) -> String {
    rate.map_or_else(|| "—".into(), |r| format!("{}/s", bytes(r as u64)))
}

fn latency(us: Option<u64>) -> String {
    match us {
        None => "—".into(),
        Some(u64::MAX) => "&gt; 1 s".into(),
        Some(us) if us >= 1000 => format!("≤ {} ms", us / 1000),
        Some(us) => format!("≤ {us} µs"),
    }
}

fn tile(out: &mut String, label: &str, value: &str) {
    let _ = write!(out, "<div class=\"tile\"><b>{value}</b>{label}</div>");
}

/// The overview page's body.
pub fn overview(o: &Overview) -> String {
    let mut out = String::with_capacity(8192);
    out.push_str("<div class=\"tiles\">");
    tile(&mut out, "topics", &o.topics.to_string());
    tile(&mut out, "partitions", &o.partitions.to_string());
    tile(&mut out, "consumer groups", &o.groups.to_string());
    tile(&mut out, "total consumer lag", &o.total_lag.to_string());
    tile(&mut out, "bytes in now", &bytes_per_s(o.bytes_in_per_s_now));
    tile(&mut out, "bytes out now", &bytes_per_s(o.bytes_out_per_s_now));
    tile(&mut out, "bytes in, last hour", &bytes_per_s(o.bytes_in_per_s_hour));
    tile(&mut out, "bytes out, last hour", &bytes_per_s(o.bytes_out_per_s_hour));
    tile(&mut out, "under-replicated", &o.under_replicated.len().to_string());
    out.push_str("</div>");
    if o.cluster {
        out.push_str(
            "<p class=\"note\">Byte rates are client produce and fetch bytes (replication traffic \
             aside) summed over the nodes that answered; the chart below is this node's.</p>",
        );
    }
    nodes_table(&mut out, o);
    most_lag(&mut out, o);
    let series = [
        Series { name: "bytes in/s", colour: "#1f6fd1", points: o.bytes_history.iter().map(|p| (p.0, p.1)).collect() },
        Series { name: "bytes out/s", colour: "#d1731f", points: o.bytes_history.iter().map(|p| (p.0, p.2)).collect() },
    ];
    out.push_str(&line_chart("Bytes per second, last hour (this node)", &series, &|v| bytes_per_s(Some(v))));
    under_replicated(&mut out, o);
    let warnings: Vec<&String> = o.nodes.iter().filter_map(|n| n.stats.as_ref()).flat_map(|s| &s.warnings).collect();
    out.push_str("<h2>Host check warnings</h2>");
    if warnings.is_empty() {
        out.push_str("<p class=\"note\">None.</p>");
    }
    for w in warnings {
        let _ = write!(out, "<p class=\"warn\">{}</p>", esc(w));
    }
    out
}

fn nodes_table(out: &mut String, o: &Overview) {
    out.push_str(
        "<h2>Nodes</h2><table><tr><th>id</th><th>address</th><th>state</th><th>shards</th><th>partitions on disk</th>\
         <th>disk free</th><th>controller</th><th>connections</th><th>RSS</th></tr>",
    );
    for n in &o.nodes {
        let id = n.node_id.map_or_else(|| "— (single node)".into(), |id| id.to_string());
        let here = if n.this_node { " (this node)" } else { "" };
        let state = match (n.up, &n.error) {
            (true, None) => "<span class=\"up\">up</span>".to_string(),
            (true, Some(e)) => format!("<span class=\"warn\">up; {}</span>", esc(e)),
            (false, e) => format!("<span class=\"down\">down</span> {}", esc(e.as_deref().unwrap_or(""))),
        };
        let s = n.stats.as_ref();
        let controller = match s.and_then(|s| s.controller) {
            Some(true) => "yes",
            Some(false) => "no",
            None if o.cluster => "—",
            None => "n/a",
        };
        let _ = write!(
            out,
            "<tr><td>{id}{here}</td><td>{}</td><td>{state}</td><td class=\"n\">{}</td><td class=\"n\">{}</td>\
             <td class=\"n\">{} of {}</td><td>{controller}</td><td class=\"n\">{}</td><td class=\"n\">{}</td></tr>",
            esc(&n.address),
            s.map_or_else(|| "—".into(), |s| s.shards.to_string()),
            opt_bytes(s.map(|s| s.partitions_size_bytes)),
            opt_bytes(s.and_then(|s| s.volume_free_bytes)),
            opt_bytes(s.and_then(|s| s.volume_bytes)),
            s.map_or_else(|| "—".into(), |s| s.connections.to_string()),
            opt_bytes(s.and_then(|s| s.rss_bytes)),
        );
    }
    out.push_str("</table>");
}

fn most_lag(out: &mut String, o: &Overview) {
    out.push_str("<h2>Consumer groups with the most lag</h2>");
    if o.most_lag.is_empty() {
        out.push_str("<p class=\"note\">No consumer groups coordinated by this node.</p>");
        return;
    }
    out.push_str("<table><tr><th>group</th><th>state</th><th>members</th><th>total lag</th></tr>");
    for g in &o.most_lag {
        let _ = write!(
            out,
            "<tr><td><a href=\"/groups/{}\">{}</a></td><td>{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td></tr>",
            link_segment(&g.group_id),
            esc(&g.group_id),
            esc(&g.state),
            g.members,
            g.total_lag
        );
    }
    out.push_str("</table>");
}

fn under_replicated(out: &mut String, o: &Overview) {
    out.push_str("<h2>Under-replicated partitions</h2>");
    if o.under_replicated.is_empty() {
        out.push_str("<p class=\"note\">None.</p>");
        return;
    }
    out.push_str("<table><tr><th>topic</th><th>partition</th><th>chain</th><th>replication factor</th></tr>");
    for u in o.under_replicated.iter().take(UNDER_REPLICATED_SHOWN_MAX) {
        let chain: Vec<String> = u.chain.iter().map(|n| n.to_string()).collect();
        let _ = write!(
            out,
            "<tr><td><a href=\"/topics/{}\">{}</a></td><td class=\"n\">{}</td><td>{}</td><td class=\"n\">{}</td></tr>",
            link_segment(&u.topic),
            esc(&u.topic),
            u.partition,
            chain.join(" → "),
            u.replication_factor
        );
    }
    out.push_str("</table>");
    if o.under_replicated.len() > UNDER_REPLICATED_SHOWN_MAX {
        let _ =
            write!(out, "<p class=\"note\">… and {} more.</p>", o.under_replicated.len() - UNDER_REPLICATED_SHOWN_MAX);
    }
}

/// The topic list's body.
pub fn topics(topics: &[TopicJson]) -> String {
    let mut out = String::with_capacity(256 * topics.len() + 512);
    out.push_str(
        "<table><tr><th>topic</th><th>partitions</th><th>replication factor</th><th>held here</th>\
         <th>size here</th><th>records in</th><th>fetched</th></tr>",
    );
    for t in topics {
        let internal = if t.internal { " <span class=\"note\">(internal)</span>" } else { "" };
        let _ = write!(
            out,
            "<tr><td><a href=\"/topics/{}\">{}</a>{internal}</td><td class=\"n\">{}</td><td class=\"n\">{}</td>\
             <td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td></tr>",
            link_segment(&t.name),
            esc(&t.name),
            t.partitions,
            t.replication_factor,
            t.offsets.len(),
            bytes(t.size_bytes),
            per_s(t.produce_records_per_s),
            bytes_per_s(t.fetch_bytes_per_s),
        );
    }
    out.push_str("</table>");
    out
}

/// One topic's body: config, then every partition this node (or, merged, a peer) holds;
/// `unanswered` names the peers whose partitions are missing.
pub fn topic(t: &TopicJson, unanswered: &[String]) -> String {
    let mut out = String::with_capacity(200 * t.offsets.len() + 1024);
    notes(&mut out, unanswered);
    let _ = write!(
        out,
        "<p>{} partitions, replication factor {}, {} on this node's disk.</p><h2>Config</h2>",
        t.partitions,
        t.replication_factor,
        bytes(t.size_bytes)
    );
    if t.effective.is_empty() {
        out.push_str("<p class=\"note\">The topic's config overrides are invalid; see the node's log.</p>");
    }
    out.push_str("<table><tr><th>key</th><th>value</th><th>from</th></tr>");
    for (k, v) in &t.effective {
        let value = match v {
            None => "none".to_string(),
            Some(v) if k.ends_with("_bytes") => format!("{v} ({})", bytes(*v)),
            Some(v) => v.to_string(),
        };
        let from = if t.configs.contains_key(k) { "topic override" } else { "node default" };
        let _ = write!(out, "<tr><td>{}</td><td class=\"n\">{value}</td><td>{from}</td></tr>", esc(k));
    }
    out.push_str("</table>");
    out.push_str(
        "<h2>Partitions</h2><table><tr><th>partition</th><th>chain</th><th>epoch</th><th>head</th>\
         <th>log start</th><th>log end</th><th>size on disk</th><th>records in</th><th>fetched</th><th>reported by</th></tr>",
    );
    for p in &t.offsets {
        let chain: Vec<String> = p.chain.iter().map(|n| n.to_string()).collect();
        let chain = if chain.is_empty() { "this node".to_string() } else { chain.join(" → ") };
        let _ = write!(
            out,
            "<tr><td class=\"n\">{}</td><td>{chain}</td><td class=\"n\">{}</td><td class=\"n\">{}</td>\
             <td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td>\
             <td class=\"n\">{}</td><td class=\"n\">{}</td></tr>",
            p.partition,
            p.epoch.map_or_else(|| "—".into(), |e| e.to_string()),
            p.head.map_or_else(|| "—".into(), |h| h.to_string()),
            p.log_start_offset,
            p.log_end_offset,
            bytes(p.size_bytes),
            per_s(p.produce_records_per_s),
            bytes_per_s(p.fetch_bytes_per_s),
            p.reported_by.map_or_else(|| "this node".into(), |id| id.to_string()),
        );
    }
    out.push_str("</table>");
    if (t.offsets.len() as u64) < u64::from(t.partitions) {
        out.push_str("<p class=\"note\">Partitions not listed are held by nodes that did not answer.</p>");
    }
    out
}

/// Peers that did not answer while a page was built.
fn notes(out: &mut String, notes: &[String]) {
    for n in notes {
        let _ = write!(out, "<p class=\"warn\">{}</p>", esc(n));
    }
}

fn node_id(id: Option<u32>) -> String {
    id.map_or_else(|| "—".into(), |id| id.to_string())
}

/// The group list's body (the offset monitor's summary); `unanswered` names the peers
/// whose groups are missing.
pub fn groups(groups: &[GroupJson], unanswered: &[String]) -> String {
    let mut out = String::with_capacity(256 * groups.len() + 512);
    notes(&mut out, unanswered);
    if groups.is_empty() {
        out.push_str("<p class=\"note\">No consumer groups.</p>");
        return out;
    }
    out.push_str(
        "<table><tr><th>group</th><th>state</th><th>generation</th><th>members</th><th>partitions</th>\
         <th>total lag</th><th>coordinator</th></tr>",
    );
    for g in groups {
        let _ = write!(
            out,
            "<tr><td><a href=\"/groups/{}\">{}</a></td><td>{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td>\
             <td class=\"n\">{}</td><td class=\"n total-lag\">{}</td><td class=\"n\">{}</td></tr>",
            link_segment(&g.group_id),
            esc(&g.group_id),
            esc(&g.state),
            g.generation,
            g.members.len(),
            g.partitions.len(),
            g.total_lag,
            node_id(g.coordinator)
        );
    }
    out.push_str("</table>");
    out
}

/// One group's body: members, per-partition offsets and lag, the lag chart.
pub fn group(g: &GroupJson) -> String {
    let mut out = String::with_capacity(200 * g.partitions.len() + 4096);
    let _ = write!(
        out,
        "<div class=\"tiles\"><div class=\"tile\"><b id=\"total-lag\">{}</b>total lag</div>\
         <div class=\"tile\"><b>{}</b>state</div><div class=\"tile\"><b>{}</b>generation</div>\
         <div class=\"tile\"><b>{}</b>assignor</div></div>",
        g.total_lag,
        esc(&g.state),
        g.generation,
        esc(&g.assignor)
    );
    let history: Vec<(u64, f64)> = g.lag_history.iter().flatten().map(|[t, lag]| (*t, *lag as f64)).collect();
    let series = [Series { name: "total lag (records)", colour: "#b42318", points: history }];
    out.push_str(&line_chart("Total lag, last hour", &series, &|v| format!("{v:.0}")));
    out.push_str("<h2>Members</h2>");
    if g.members.is_empty() {
        out.push_str("<p class=\"note\">No members.</p>");
    } else {
        out.push_str("<table><tr><th>member</th><th>client</th><th>assignment</th></tr>");
        for m in &g.members {
            let parts: Vec<String> =
                m.assignment.iter().map(|a| format!("{}/{}", esc(&a.topic), a.partition)).collect();
            let _ = write!(
                out,
                "<tr><td>{}</td><td>{}</td><td>{}</td></tr>",
                esc(&m.member_id),
                esc(&m.client_id),
                parts.join(", ")
            );
        }
        out.push_str("</table>");
    }
    out.push_str(
        "<h2>Partitions</h2><table id=\"partitions\"><tr><th>topic</th><th>partition</th><th>committed</th>\
         <th>log end</th><th>lag</th></tr>",
    );
    for p in &g.partitions {
        let _ = write!(
            out,
            "<tr><td><a href=\"/topics/{}\">{}</a></td><td class=\"n\">{}</td><td class=\"n\">{}</td>\
             <td class=\"n\">{}</td><td class=\"n lag\">{}</td></tr>",
            link_segment(&p.topic),
            esc(&p.topic),
            p.partition,
            p.committed.map_or_else(|| "—".into(), |c| c.to_string()),
            p.log_end_offset,
            p.lag
        );
    }
    out.push_str("</table>");
    out
}

fn latency_row(out: &mut String, name: &str, p: &Percentiles) {
    let _ = write!(
        out,
        "<tr><td>{name}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td></tr>",
        p.count,
        latency(p.p50_us),
        latency(p.p99_us),
        latency(p.p999_us)
    );
}

/// The node page's body.
pub fn node(n: &NodeStats) -> String {
    let mut out = String::with_capacity(4096);
    let now = n.rates_now;
    out.push_str("<div class=\"tiles\">");
    tile(&mut out, "requests now", &per_s(now.map(|r| r.requests_per_s)));
    tile(&mut out, "produce requests now", &per_s(now.map(|r| r.produce_requests_per_s)));
    tile(&mut out, "fetch requests now", &per_s(now.map(|r| r.fetch_requests_per_s)));
    tile(&mut out, "records in now", &per_s(now.map(|r| r.records_in_per_s)));
    tile(&mut out, "connections", &n.connections.to_string());
    tile(&mut out, "resident memory", &opt_bytes(n.rss_bytes));
    let cpu = now.and_then(|r| r.cpu_percent).map_or_else(|| "—".into(), |c| format!("{c:.1} %"));
    tile(&mut out, "CPU (of one core)", &cpu);
    out.push_str("</div>");
    let window = n.rates_span.map_or(0.0, |r| r.window_s);
    let _ = write!(
        out,
        "<h2>Latency</h2><p class=\"note\">Over the last {:.0} s (up to an hour), from the node's histograms: \
         each value is the upper bound of the bucket holding that percentile.</p>\
         <table><tr><th></th><th>count</th><th>p50</th><th>p99</th><th>p99.9</th></tr>",
        window
    );
    latency_row(&mut out, "produce (receive to ack)", &n.produce_latency);
    latency_row(&mut out, "fetch (with long-poll wait)", &n.fetch_latency);
    latency_row(&mut out, "durable write (fdatasync or O_DSYNC write)", &n.fsync_latency);
    out.push_str("</table><h2>Requests per second by API</h2><table><tr><th>API</th><th>rate</th></tr>");
    for (api, rate) in &n.requests_per_s {
        let _ = write!(out, "<tr><td>{}</td><td class=\"n\">{}</td></tr>", esc(api), per_s(Some(*rate)));
    }
    let _ = write!(
        out,
        "</table><h2>Process</h2><table><tr><td>node id</td><td>{}</td></tr><tr><td>public address</td><td>{}</td></tr>\
         <tr><td>shards</td><td>{}</td></tr><tr><td>data dir</td><td>{}</td></tr>\
         <tr><td>partitions on disk</td><td>{}</td></tr><tr><td>volume free</td><td>{} of {}</td></tr></table>",
        n.node_id.map_or_else(|| "— (single node)".into(), |id| id.to_string()),
        esc(&n.public_address),
        n.shards,
        esc(&n.data_dir),
        bytes(n.partitions_size_bytes),
        opt_bytes(n.volume_free_bytes),
        opt_bytes(n.volume_bytes),
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_and_encodes_names() {
        assert_eq!(esc("<script>alert('x')</script>&\""), "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;&amp;&quot;");
        assert_eq!(link_segment("a b/<c>.d-e_f"), "a%20b%2F%3Cc%3E.d-e_f");
        assert_eq!(bytes(512), "512 B");
        assert_eq!(bytes(1536), "1.5 KiB");
        assert_eq!(latency(Some(2500)), "≤ 2 ms");
    }
}
