//! `/metrics` against hostile names on the real binary (issue #15, "a topic name
//! containing `"` and a newline, via a commit: arbitrary lines injected into /metrics"):
//! offset commits naming a topic with a quote, a backslash and newlines, in a group with
//! the same, then every line of the scrape must parse under a strict Prometheus text-format
//! check, no injected series may appear, and a family labelled by client-chosen names
//! renders at most `metrics_series_max` series, the rest counted as dropped.

mod common;
#[path = "common/groups.rs"]
mod groups;

use std::collections::HashSet;
use std::time::{Duration, Instant};

use common::Node;
use groups::commit;
use strand_wire::ErrorCode;

/// A topic name that, unescaped, ends the label set and starts a series of its own.
const HOSTILE_TOPIC: &str = "t\"} 1\nstrand_injected_total{x=\"\\";
const HOSTILE_GROUP: &str = "g\\\"\n# TYPE strand_injected_total counter\nstrand_injected_total 1\n";

#[test]
fn hostile_names_cannot_inject_lines_and_series_are_capped() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("strand.toml");
    std::fs::write(&config, "metrics_series_max = 3\n").unwrap();
    let node = Node::start(&dir.path().join("data"), 1, &["--config", config.to_str().unwrap()]);
    let mut c = node.client();
    let offsets: Vec<(&str, u32, u64)> = (0..5).map(|p| (HOSTILE_TOPIC, p, 10 + u64::from(p))).collect();
    assert_eq!(commit(&mut c, HOSTILE_GROUP, 0, "", &offsets), ErrorCode::None);

    // The coordinator publishes its groups periodically: wait for the committed offsets.
    let deadline = Instant::now() + Duration::from_secs(20);
    let body = loop {
        let (status, body) = node.admin_get("/metrics");
        assert_eq!(status, 200);
        if body.contains("strand_consumer_committed_offset{") {
            break body;
        }
        assert!(Instant::now() < deadline, "committed offsets never published:\n{body}");
        std::thread::sleep(Duration::from_millis(100));
    };
    let families = check_exposition(&body);
    assert!(!families.contains("strand_injected_total"), "a series was injected:\n{body}");
    let committed: Vec<&str> = body.lines().filter(|l| l.starts_with("strand_consumer_committed_offset{")).collect();
    assert_eq!(committed.len(), 3, "metrics_series_max = 3 series per family:\n{body}");
    let (group, topic) = (escape(HOSTILE_GROUP), escape(HOSTILE_TOPIC));
    for line in &committed {
        let ours = (0..5u64).any(|p| {
            **line
                == format!(
                    "strand_consumer_committed_offset{{group=\"{group}\",topic=\"{topic}\",partition=\"{p}\"}} {}",
                    10 + p
                )
        });
        assert!(ours, "escaped labels, value intact: {line:?}");
    }
    let dropped = sample(&body, "strand_metrics_series_dropped_total");
    assert!(dropped >= 4, "2 lag + 2 committed series dropped per scrape at least, got {dropped}");
}

/// Checks every line of a text exposition strictly; the family names seen.
fn check_exposition(body: &str) -> HashSet<String> {
    let mut typed: HashSet<String> = HashSet::new();
    let mut names = HashSet::new();
    for (i, line) in body.lines().enumerate() {
        let context = || format!("line {}: {line:?}", i + 1);
        if let Some(rest) = line.strip_prefix("# ") {
            let (keyword, rest) = rest.split_once(' ').unwrap_or_else(|| panic!("bad comment, {}", context()));
            let (name, text) = rest.split_once(' ').unwrap_or_else(|| panic!("no text, {}", context()));
            assert!(is_metric_name(name), "bad metric name, {}", context());
            match keyword {
                "HELP" => {}
                "TYPE" => {
                    assert!(["counter", "gauge", "histogram", "summary", "untyped"].contains(&text), "{}", context());
                    assert!(typed.insert(name.to_string()), "family typed twice, {}", context());
                }
                _ => panic!("unknown comment keyword, {}", context()),
            }
            continue;
        }
        let name = parse_sample(line).unwrap_or_else(|e| panic!("{e}, {}", context()));
        let family = ["_bucket", "_sum", "_count"].iter().find_map(|s| name.strip_suffix(s)).unwrap_or(&name);
        assert!(typed.contains(family) || typed.contains(&name), "sample of an untyped family, {}", context());
        names.insert(name);
    }
    names
}

/// Parses `name{label="value",...} number`; the name.
fn parse_sample(line: &str) -> Result<String, String> {
    let name_end = line.find(['{', ' ']).ok_or("no value")?;
    let name = &line[..name_end];
    if !is_metric_name(name) {
        return Err(format!("bad metric name {name:?}"));
    }
    let mut rest = &line[name_end..];
    if let Some(labels) = rest.strip_prefix('{') {
        rest = parse_labels(labels)?;
    }
    let value = rest.strip_prefix(' ').ok_or("no space before the value")?;
    let number = value.split(' ').next().unwrap_or_default();
    if !["+Inf", "-Inf", "NaN"].contains(&number) && number.parse::<f64>().is_err() {
        return Err(format!("bad value {value:?}"));
    }
    Ok(name.to_string())
}

/// Parses `label="value",...}`; what follows the closing brace.
fn parse_labels(mut s: &str) -> Result<&str, String> {
    loop {
        if let Some(rest) = s.strip_prefix('}') {
            return Ok(rest);
        }
        let eq = s.find('=').ok_or("label without '='")?;
        let label = &s[..eq];
        let valid = label.chars().next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !valid {
            return Err(format!("bad label name {label:?}"));
        }
        let mut chars = s[eq + 1..].strip_prefix('"').ok_or("label value not quoted")?.char_indices();
        let close = loop {
            match chars.next().ok_or("unterminated label value")? {
                (_, '\\') => match chars.next() {
                    Some((_, '\\' | '"' | 'n')) => {}
                    other => return Err(format!("bad escape {other:?}")),
                },
                (at, '"') => break at,
                (_, '\n') => return Err("raw newline in a label value".into()),
                _ => {}
            }
        };
        s = &s[eq + 1 + 1 + close + 1..];
        s = s.strip_prefix(',').unwrap_or(s);
    }
}

/// The text format's label-value escaping, written out independently of the node's.
fn escape(value: &str) -> String {
    value.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

fn is_metric_name(name: &str) -> bool {
    name.chars().next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

fn sample(body: &str, name: &str) -> u64 {
    let prefix = format!("{name} ");
    body.lines().find_map(|l| l.strip_prefix(&prefix)).unwrap_or_else(|| panic!("{name} missing")).parse().unwrap()
}
