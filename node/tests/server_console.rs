//! The web console on the real node binary (2 shards): a topic with a consumer group
//! that has lag, the JSON endpoints the pages share (`/v1/overview`, `/v1/node`,
//! `/v1/topics/{name}`, `/v1/groups/{id}` with its lag history), HTML escaping of a
//! group named `<script>…`, 404s, the server-side render time of a 1 000-partition topic
//! page (printed, not asserted), and a real browser: headless Chromium loads the
//! console, and the rendered DOM shows the topic, the group and its per-partition and
//! total lag; its screenshot is written under the target dir's tmp.
//!
//! Chromium is `$CHROMIUM_BIN` or `/usr/bin/chromium`; a missing one fails the test with
//! the command to install it (CI installs Debian's `chromium`). With
//! `STRAND_CONSOLE_WATCH_S=N` the test also prints the node's CPU time over N idle seconds
//! and over N seconds with a headless browser keeping the 1 000-partition topic page
//! open (refreshing itself every 5 s): the cost the docs quote.

mod common;
#[path = "common/groups.rs"]
mod groups;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{batch, Node};
use groups::{commit, wait_for, wait_stable, Member, MemberConfig};
use strand_wire::ErrorCode;

const TOPIC: &str = "orders";
const GROUP: &str = "billing";
/// A group name that is valid (any UTF-8) and would run as script if not escaped.
const HOSTILE_GROUP: &str = "<script>document.title='owned'</script>";
const STABLE_WAIT: Duration = Duration::from_secs(20);
/// The console samples every 5 s; two more samples arrive well within this.
const SAMPLE_WAIT: Duration = Duration::from_secs(20);
const BROWSER_WAIT: Duration = Duration::from_secs(90);

/// An HTTP/1.0 GET on the admin port: (status, body). (tiny_http answers HTTP/1.1 requests
/// for large bodies chunked, which `Node::admin_get` does not decode.)
fn get(node: &Node, path: &str) -> (u16, String) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(node.admin).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(s, "GET {path} HTTP/1.0\r\nHost: x\r\n\r\n").unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    let status = text.split_whitespace().nth(1).unwrap().parse().unwrap();
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default();
    (status, body)
}

fn json(node: &Node, path: &str) -> serde_json::Value {
    let (status, body) = get(node, path);
    assert_eq!(status, 200, "GET {path}: {body}");
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("GET {path}: {e}: {body}"))
}

/// The group's JSON and its lag history's values, once the coordinator published it.
fn lag_history(node: &Node, path: &str) -> Option<(serde_json::Value, Vec<u64>)> {
    let (status, body) = get(node, path);
    let group: serde_json::Value = serde_json::from_str(&body).ok().filter(|_| status == 200)?;
    let history = group["lag_history"].as_array()?.iter().filter_map(|p| p[1].as_u64()).collect();
    Some((group, history))
}

fn produce(node: &Node, partition: u32, records: usize) {
    let mut c = node.client();
    let values: Vec<Vec<u8>> = (0..records).map(|i| format!("record {i}").into_bytes()).collect();
    let refs: Vec<&[u8]> = values.iter().map(|v| v.as_slice()).collect();
    assert_eq!(c.produce(TOPIC, partition, &batch(&refs, 1)).error, ErrorCode::None);
}

#[test]
fn console_shows_topics_groups_lag_and_renders_in_a_browser() {
    let dir = tempfile::tempdir().unwrap();
    let node = Node::start(dir.path(), 2, &[]);
    let mut c = node.client();
    assert_eq!(c.create_topic(TOPIC, 3).error, ErrorCode::None);
    for (partition, records) in [(0, 10), (1, 20), (2, 5)] {
        produce(&node, partition, records);
    }
    let member = Member::start(node.public, MemberConfig::new(GROUP, &[TOPIC]));
    let state = wait_stable(&mut c, GROUP, &[&member], STABLE_WAIT).remove(0);
    let offsets = [(TOPIC, 0, 4), (TOPIC, 1, 20), (TOPIC, 2, 1)];
    assert_eq!(commit(&mut c, GROUP, state.generation, &state.member_id, &offsets), ErrorCode::None);
    assert_eq!(commit(&mut c, HOSTILE_GROUP, 0, "", &[(TOPIC, 0, 1)]), ErrorCode::None);

    // Lag 6 + 0 + 4, then more records on partition 2 after a sample: the chart rises.
    let group_path = format!("/v1/groups/{GROUP}");
    wait_for(SAMPLE_WAIT, "a lag sample of 10", || {
        lag_history(&node, &group_path).filter(|(_, history)| history.contains(&10))
    });
    produce(&node, 2, 30);
    let (fetched, bytes) = c.fetch(TOPIC, 2, 0, 0);
    assert!(fetched.error == ErrorCode::None && !bytes.is_empty(), "{fetched:?}");
    let topic_path = format!("/v1/topics/{TOPIC}");
    let rate = wait_for(SAMPLE_WAIT, "a fetch rate on partition 2", || {
        json(&node, &topic_path)["offsets"][2]["fetch_bytes_per_s"].as_f64().filter(|r| *r > 0.0)
    });
    println!("partition 2 fetch rate over the sample after one {}-byte fetch: {rate:.0} B/s", bytes.len());
    let (group, _) = wait_for(SAMPLE_WAIT, "a lag sample of 40", || {
        lag_history(&node, &group_path).filter(|(_, history)| history.contains(&40))
    });
    let lags: Vec<(u64, u64)> = group["partitions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p["partition"].as_u64().unwrap(), p["lag"].as_u64().unwrap()))
        .collect();
    assert_eq!(lags, vec![(0, 6), (1, 0), (2, 34)], "{group}");
    assert_eq!(group["total_lag"], 40, "{group}");
    assert_eq!(group["members"].as_array().unwrap().len(), 1, "{group}");

    check_json_endpoints(&node);
    check_html(&node);
    check_browser(&node);
    render_time_of_a_wide_topic(&node);
    drop(member);
}

fn check_json_endpoints(node: &Node) {
    let overview = json(node, "/v1/overview");
    assert_eq!(overview["topics"], 1, "{overview}");
    assert_eq!(overview["partitions"], 3, "{overview}");
    assert_eq!(overview["groups"], 2, "{overview}");
    assert_eq!(overview["total_lag"], 40 + 9, "{overview}");
    assert_eq!(overview["nodes"][0]["up"], true, "{overview}");
    assert!(overview["bytes_in_per_s_hour"].as_f64().is_some_and(|b| b > 0.0), "{overview}");
    let stats = json(node, "/v1/node");
    assert_eq!(stats["shards"], 2, "{stats}");
    assert!(stats["rss_bytes"].as_u64().is_some_and(|b| b > 0), "{stats}");
    assert!(stats["produce_latency"]["count"].as_u64().is_some_and(|n| n >= 4), "{stats}");
    assert!(stats["rates_now"]["bytes_in_per_s"].is_number(), "{stats}");
    assert!(stats["fsync_latency"]["count"].as_u64().is_some_and(|n| n >= 4), "every acked produce synced: {stats}");
    let topic = json(node, &format!("/v1/topics/{TOPIC}"));
    let ends: Vec<u64> =
        topic["offsets"].as_array().unwrap().iter().map(|p| p["log_end_offset"].as_u64().unwrap()).collect();
    assert_eq!(ends, vec![10, 20, 35], "{topic}");
    assert_eq!(get(node, "/v1/topics/nope").0, 404);
    assert_eq!(get(node, "/groups/nope").0, 404);
    assert_eq!(get(node, "/groups/%FF").0, 400);
}

fn check_html(node: &Node) {
    for path in ["/", "/topics", "/groups", "/node", &format!("/topics/{TOPIC}"), &format!("/groups/{GROUP}")] {
        let (status, body) = get(node, path);
        assert_eq!(status, 200, "GET {path}");
        assert!(body.starts_with("<!DOCTYPE html>") && body.contains("</html>"), "GET {path}: {body}");
        assert!(!body.contains("http://") && !body.contains("https://"), "GET {path} names another site: {body}");
    }
    let (_, groups) = get(node, "/groups");
    assert!(!groups.contains(HOSTILE_GROUP), "the group name reached the page unescaped: {groups}");
    assert!(groups.contains("&lt;script&gt;document.title=&#39;owned&#39;&lt;/script&gt;"), "{groups}");
    let encoded = "%3Cscript%3Edocument.title%3D%27owned%27%3C%2Fscript%3E";
    assert!(groups.contains(&format!("href=\"/groups/{encoded}\"")), "{groups}");
    let (status, hostile) = get(node, &format!("/groups/{encoded}"));
    assert_eq!(status, 200, "{hostile}");
    assert!(!hostile.contains(HOSTILE_GROUP), "{hostile}");
}

fn chromium() -> String {
    let bin = std::env::var("CHROMIUM_BIN").unwrap_or_else(|_| "/usr/bin/chromium".into());
    assert!(
        Path::new(&bin).exists(),
        "chromium not found at {bin}: install Debian's chromium \
         (apt-get install -y --no-install-recommends chromium) or set CHROMIUM_BIN"
    );
    bin
}

/// Runs headless Chromium with `args` on `url`; its stdout.
fn run_chromium(profile: &Path, args: &[&str], url: &str) -> String {
    let child = Command::new(chromium())
        .args(["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-extensions"])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(args)
        .arg(url)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn chromium");
    let mut child = child;
    let (mut stdout, mut stderr) = (child.stdout.take().unwrap(), child.stderr.take().unwrap());
    let out_reader = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = std::io::Read::read_to_string(&mut stdout, &mut text);
        text
    });
    let err_reader = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = std::io::Read::read_to_string(&mut stderr, &mut text);
        text
    });
    let deadline = Instant::now() + BROWSER_WAIT;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for chromium") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("chromium did not finish {url} within {BROWSER_WAIT:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let (stdout, stderr) = (out_reader.join().unwrap(), err_reader.join().unwrap());
    assert!(status.success(), "chromium {args:?} {url}: {stderr}");
    stdout
}

fn check_browser(node: &Node) {
    let profile = tempfile::tempdir().unwrap();
    let base = format!("http://{}", node.admin);
    let dom = run_chromium(profile.path(), &["--dump-dom"], &format!("{base}/groups/{GROUP}"));
    assert!(dom.contains("Consumer group billing"), "{dom}");
    assert!(dom.contains(&format!("<a href=\"/topics/{TOPIC}\">{TOPIC}</a>")), "{dom}");
    assert!(dom.contains("<b id=\"total-lag\">40</b>"), "total lag in the DOM: {dom}");
    let lags: Vec<&str> = dom.split("<td class=\"n lag\">").skip(1).filter_map(|s| s.split('<').next()).collect();
    assert_eq!(lags, vec!["6", "0", "34"], "per-partition lag in the DOM: {dom}");
    assert!(dom.contains("<polyline"), "the lag chart: {dom}");
    let list = run_chromium(profile.path(), &["--dump-dom"], &format!("{base}/groups"));
    assert!(list.contains(">billing</a>") && list.contains("<td class=\"n total-lag\">40</td>"), "{list}");
    assert!(!list.contains("owned</title>"), "the hostile group name ran: {list}");
    let overview = run_chromium(profile.path(), &["--dump-dom"], &format!("{base}/"));
    assert!(overview.contains("total consumer lag"), "{overview}");

    let shots = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("console");
    std::fs::create_dir_all(&shots).unwrap();
    let pages = [
        ("group", format!("/groups/{GROUP}")),
        ("overview", "/".to_string()),
        ("topic", format!("/topics/{TOPIC}")),
        ("node", "/node".to_string()),
    ];
    for (name, path) in pages {
        let file = shots.join(format!("console-{name}.png"));
        let _ = std::fs::remove_file(&file);
        let arg = format!("--screenshot={}", file.display());
        run_chromium(profile.path(), &[&arg, "--window-size=1280,900", "--hide-scrollbars"], &format!("{base}{path}"));
        assert!(std::fs::metadata(&file).is_ok_and(|m| m.len() > 1000), "no screenshot at {}", file.display());
        eprintln!("console screenshot: {}", file.display());
    }
}

/// Prints the node's own render time (the page footer) of a 1 000-partition topic page
/// and of the topic list; a print for the docs, not an assertion.
fn render_time_of_a_wide_topic(node: &Node) {
    let mut c = node.client();
    let started = Instant::now();
    assert_eq!(c.create_topic("wide", 1000).error, ErrorCode::None);
    wait_for(Duration::from_secs(60), "1000 partitions published", || {
        let t = json(node, "/v1/topics/wide");
        (t["offsets"].as_array().map_or(0, |o| o.len()) == 1000).then_some(())
    });
    eprintln!("created and published 1000 partitions in {:?}", started.elapsed());
    for path in ["/topics/wide", "/topics", "/"] {
        let mut times = Vec::new();
        for _ in 0..5 {
            let (status, body) = get(node, path);
            assert_eq!(status, 200);
            let us: u64 = body
                .split("rendered in ")
                .nth(1)
                .and_then(|s| s.split(' ').next())
                .and_then(|n| n.parse().ok())
                .unwrap_or_else(|| panic!("no render time in {path}"));
            times.push(us);
        }
        times.sort();
        eprintln!("render time of {path} with 1000 partitions (server side, µs, 5 runs): {times:?}");
    }
    // What a watching browser costs: the node's CPU time over 100 views of each page
    // (the script re-fetches the open page every 5 s), read from /proc.
    let stat = || std::fs::read_to_string(format!("/proc/{}/stat", node.child.id())).unwrap();
    let cpu_ticks = || {
        let text = stat();
        let fields: Vec<u64> =
            text[text.rfind(')').unwrap() + 2..].split_whitespace().map(|f| f.parse().unwrap_or(0)).collect();
        fields[11] + fields[12]
    };
    for path in ["/topics/wide", "/", "/groups/billing"] {
        let before = cpu_ticks();
        for _ in 0..100 {
            assert_eq!(get(node, path).0, 200);
        }
        eprintln!("node CPU for 100 views of {path}: {} clock ticks", cpu_ticks() - before);
    }
    let status = std::fs::read_to_string(format!("/proc/{}/status", node.child.id())).unwrap();
    eprintln!("node {}", status.lines().find(|l| l.starts_with("VmRSS")).unwrap_or("VmRSS unknown"));
    if let Some(seconds) = std::env::var("STRAND_CONSOLE_WATCH_S").ok().and_then(|s| s.parse::<u64>().ok()) {
        let window = Duration::from_secs(seconds);
        let before = cpu_ticks();
        std::thread::sleep(window);
        eprintln!("node CPU over {seconds} s idle: {} clock ticks", cpu_ticks() - before);
        let profile = tempfile::tempdir().unwrap();
        let mut browser = Command::new(chromium())
            .args(["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run"])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .arg(format!("http://{}/topics/wide", node.admin))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn chromium");
        let before = cpu_ticks();
        std::thread::sleep(window);
        eprintln!(
            "node CPU over {seconds} s with a browser watching /topics/wide: {} clock ticks",
            cpu_ticks() - before
        );
        let status = std::fs::read_to_string(format!("/proc/{}/status", node.child.id())).unwrap();
        eprintln!("node {}", status.lines().find(|l| l.starts_with("VmRSS")).unwrap_or("VmRSS unknown"));
        let _ = browser.kill();
        let _ = browser.wait();
    }
}
