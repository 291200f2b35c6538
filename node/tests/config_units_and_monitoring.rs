//! One real `strand-node` started from a TOML config that writes sizes and durations with
//! units ("64MiB", "7d", "500ms"), a bad unit refused with a one-line error naming the key
//! and value, and the monitoring files in docs/monitoring/ checked against the node's
//! real `/metrics`: every `strand_*` name they use is exported, and the alert rules pass
//! `promtool check rules` when promtool is installed.

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::Node;

/// Names in the monitoring files that are not Strand's: Prometheus' own `up` and
/// node_exporter's filesystem gauges (Strand exports no free-space metric).
const FOREIGN_METRICS: &[&str] = &["up", "node_filesystem_avail_bytes", "node_filesystem_size_bytes"];

fn docs_monitoring() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/monitoring")
}

#[test]
fn a_node_starts_from_a_config_with_units_and_exports_what_the_dashboards_use() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("strand.toml");
    let text = "segment_bytes = \"1MiB\"\nretention_ms = \"7d\"\nretention_check_ms = \"500ms\"\n\
                min_free_bytes = \"1 MiB\"\nconnection_buffer_bytes = 16777216\nconnections_max_idle_ms = \"10m\"\n\
                offsets_retention_ms = \"1d\"\nframe_len_max = \"1MiB\"\n";
    std::fs::write(&config, text).unwrap();
    let node = Node::start(&dir.path().join("data"), 1, &["--config", config.to_str().unwrap()]);
    assert_eq!(node.admin_get("/health").0, 200);
    // segment_bytes = "1MiB" took effect: 3 MiB of records fill more than one segment.
    let mut client = node.client();
    assert_eq!(client.create_topic("t", 1).error, strand_wire::ErrorCode::None);
    let value = vec![b'x'; 256 * 1024];
    for _ in 0..12 {
        assert_eq!(client.produce("t", 0, &common::batch(&[&value], -1)).error, strand_wire::ErrorCode::None);
    }
    let segments = std::fs::read_dir(dir.path().join("data/topics/t/0"))
        .unwrap()
        .flatten()
        .filter(|f| f.path().extension().is_some_and(|e| e == "log"))
        .count();
    assert!(segments >= 3, "{segments} segment files for 3 MiB with segment_bytes = 1MiB");

    let (status, metrics) = node.admin_get("/metrics");
    assert_eq!(status, 200);
    check_monitoring_files(&metrics);

    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "segment_bytes = \"64 parsecs\"\n").unwrap();
    let out =
        Command::new(env!("CARGO_BIN_EXE_strand-node")).args(["--config", bad.to_str().unwrap()]).output().unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    let expected = "segment_bytes = \"64 parsecs\": not a size (e.g. 64MiB, 1GB, 1048576)";
    assert!(stderr.contains(expected), "{stderr}");
}

/// Every `strand_*` name used by the alert rules and the dashboard is a family in the
/// scrape (histogram series by their `_bucket`/`_sum`/`_count` names); other names
/// must be listed in [`FOREIGN_METRICS`].
fn check_monitoring_files(metrics: &str) {
    let families: BTreeSet<&str> =
        metrics.lines().filter_map(|l| l.strip_prefix("# TYPE ")).filter_map(|l| l.split(' ').next()).collect();
    assert!(families.contains("strand_consumer_lag"), "{metrics}");
    let rules = std::fs::read_to_string(docs_monitoring().join("strand-alerts.yml")).unwrap();
    let dashboard = std::fs::read_to_string(docs_monitoring().join("strand-dashboard.json")).unwrap();
    let dashboard: serde_json::Value = serde_json::from_str(&dashboard).expect("the dashboard is JSON");
    let exprs: Vec<String> = dashboard["panels"]
        .as_array()
        .expect("panels")
        .iter()
        .flat_map(|p| p["targets"].as_array().expect("targets").iter())
        .map(|t| t["expr"].as_str().expect("expr").to_string())
        .collect();
    assert!(exprs.len() >= 10, "{exprs:?}");
    let rule_exprs: Vec<&str> = rules.lines().filter_map(|l| l.trim().strip_prefix("expr: ")).collect();
    assert!(rule_exprs.len() >= 5, "{rules}");
    let mut checked = 0;
    for expr in exprs.iter().map(String::as_str).chain(rule_exprs) {
        for name in metric_names(expr) {
            let family = ["_bucket", "_sum", "_count"].iter().find_map(|s| name.strip_suffix(s)).unwrap_or(name);
            let known = families.contains(name) || families.contains(family) || FOREIGN_METRICS.contains(&name);
            assert!(known, "{name} (in {expr:?}) is not exported by the node");
            checked += 1;
        }
    }
    assert!(checked >= 15, "only {checked} metric names found");
    promtool_check(&docs_monitoring().join("strand-alerts.yml"));
}

/// The metric names in a PromQL expression: identifiers outside `{...}`, `[...]` and
/// strings that are not functions (followed by `(`), keywords, aggregation operators or
/// label names in `by (...)`-style lists. Enough for the files here, not a PromQL parser.
fn metric_names(expr: &str) -> Vec<&str> {
    const WORDS: &[&str] = &[
        "by",
        "without",
        "and",
        "or",
        "unless",
        "on",
        "ignoring",
        "group_left",
        "group_right",
        "bool",
        "offset",
        // Aggregation operators, which may be followed by `by (...)` rather than `(`.
        "sum",
        "min",
        "max",
        "avg",
        "count",
        "stddev",
        "stdvar",
        "topk",
        "bottomk",
        "quantile",
        "count_values",
        "group",
    ];
    let mut names = Vec::new();
    let bytes = expr.as_bytes();
    let (mut i, mut depth_braces) = (0, 0);
    while i < bytes.len() {
        let c = bytes[i] as char;
        match c {
            '{' => depth_braces += 1,
            '}' => depth_braces -= 1,
            '"' => i += 1 + expr[i + 1..].find('"').expect("closed string"),
            '[' => i += expr[i..].find(']').expect("closed range"),
            c if (c.is_ascii_alphabetic() || c == '_') && depth_braces == 0 => {
                let len = expr[i..].find(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).unwrap_or(expr.len() - i);
                let word = &expr[i..i + len];
                let after = expr[i + len..].trim_start();
                let in_label_list = expr[..i].trim_end().ends_with(['(', ',']) && is_label_list(&expr[..i]);
                if !after.starts_with('(') && !WORDS.contains(&word) && !in_label_list {
                    names.push(word);
                }
                i += len;
                continue;
            }
            _ => {}
        }
        i += 1;
    }
    names
}

/// Whether the text before an identifier ends inside `by (...)` / `without (...)`.
fn is_label_list(before: &str) -> bool {
    let Some(open) = before.rfind('(') else { return false };
    before[open..].find(')').is_none() && {
        let head = before[..open].trim_end();
        ["by", "without", "on", "ignoring", "group_left", "group_right"]
            .iter()
            .any(|w| head.strip_suffix(w).is_some_and(|h| h.is_empty() || h.ends_with([' ', '('])))
    }
}

/// `promtool check rules FILE` when promtool is installed (CI may lack it: skipped there,
/// with a note on stderr; the name check above still runs).
fn promtool_check(rules: &Path) {
    match Command::new("promtool").arg("check").arg("rules").arg(rules).output() {
        Ok(out) => assert!(out.status.success(), "promtool: {}", String::from_utf8_lossy(&out.stdout)),
        Err(e) => eprintln!("promtool not run ({e}); install the prometheus package to check the rules' syntax"),
    }
}

#[test]
fn metric_names_are_found_in_promql() {
    let names = |e| metric_names(e);
    assert_eq!(names("up{job=\"strand\"} == 0"), ["up"]);
    assert_eq!(names("max by (group, topic) (strand_consumer_lag) > 100000"), ["strand_consumer_lag"]);
    assert_eq!(
        names(
            "histogram_quantile(0.99, sum by (instance, shard, le) (rate(strand_produce_latency_seconds_bucket[5m])))"
        ),
        ["strand_produce_latency_seconds_bucket"]
    );
    assert_eq!(names("a / b{x=\"a b\"} and on (x) c"), ["a", "b", "c"]);
}
