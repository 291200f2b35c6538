//! The `strand` CLI's admin commands against one real `strand-node`: topic config
//! overrides (create, alter-config applied live, describe), add-partitions, the JSON
//! formats, group reset-offsets in every mode (refused with members, dry run, clamping),
//! group delete, and that configs, partitions and deletions survive a restart.

mod common;
mod support;

use std::process::Output;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::cli::{ok, strand};
use serde_json::Value;
use strand_client::admin::COMMITTED_NONE;
use strand_client::{Admin, Client, ClientConfig, Consumer, ConsumerConfig, ErrorCode, OffsetReset};
use strand_wire::msg::CommittedOffset;
use support::Node;

/// The exit code and stderr of a run that must fail.
fn fails(output: &Output) -> (Option<i32>, String) {
    assert!(!output.status.success(), "expected a failure: {}", String::from_utf8_lossy(&output.stdout));
    (output.status.code(), String::from_utf8_lossy(&output.stderr).into_owned())
}

fn json(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).expect("clock").as_millis() as u64
}

/// `(key, value, override)` rows of `topic describe`'s config table.
fn config_rows(described: &str) -> Vec<(String, String, String)> {
    let rows = described.lines().skip_while(|l| !l.starts_with("config\t")).skip(1);
    rows.map(|l| {
        let c: Vec<&str> = l.split('\t').collect();
        (c[0].to_string(), c[1].to_string(), c[2].to_string())
    })
    .collect()
}

fn row(key: &str, value: &str, is_override: &str) -> (String, String, String) {
    (key.to_string(), value.to_string(), is_override.to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_commands_against_a_real_node() {
    let config_dir = tempfile::tempdir().expect("temp dir");
    let config = config_dir.path().join("strand.toml");
    std::fs::write(&config, "retention_check_ms = 100\n").expect("write config");
    let mut node = Node::start_with_flags(2, &["--config", config.to_str().expect("utf8 path")]);

    topic_configs_apply_live(&node).await;
    add_partitions_then_produce_and_consume(&node).await;
    let t = reset_offsets_in_every_mode(&node).await;
    active_members_block_reset_and_delete(&node, t).await;
    delete_group_and_bad_input(&node);
    hostile_requests_are_refused(&node).await;

    node.restart();
    let p = node.public.clone();
    let (_, stderr) = fails(&strand(&p, &["group", "describe", "g1"], None));
    assert!(stderr.contains("does not exist"), "the deletion survives a restart: {stderr}");
    let lines = ok(&strand(&p, &["consume", "clicks", "--group", "g1", "--timeout-ms", "1500"], None));
    assert_eq!(lines, "", "a new member of the deleted group starts at auto.offset.reset (latest)");
    let g2 = json(&ok(&strand(&p, &["group", "describe", "g2", "--format", "json"], None)));
    let committed: Vec<u64> =
        g2["partitions"].as_array().unwrap().iter().map(|p| p["committed"].as_u64().unwrap()).collect();
    assert_eq!(committed, vec![8, 4], "another group's offsets are replayed: {g2}");
    let described = ok(&strand(&p, &["topic", "describe", "logs"], None));
    assert!(config_rows(&described).contains(&row("retention_bytes", "1048576", "yes")), "{described}");
    assert!(ok(&strand(&p, &["topic", "list"], None)).contains("grow\t3\t1\n"), "added partitions persist");
}

/// create --config, describe (text + JSON), alter-config deleting old segments live.
async fn topic_configs_apply_live(node: &Node) {
    let p = &node.public;
    let create = ["topic", "create", "logs", "--partitions", "1", "--config", "segment.bytes=1048576"];
    assert_eq!(
        ok(&strand(p, &[&create[..], &["--config", "retention_ms=3600000"]].concat(), None)),
        "created logs\t1\n"
    );
    let (code, stderr) =
        fails(&strand(p, &["topic", "create", "x", "--partitions", "1", "--config", "cleanup.policy=compact"], None));
    assert_eq!(code, Some(1));
    assert!(stderr.contains("cleanup.policy") && stderr.contains("retention.ms, segment.bytes"), "{stderr}");
    let (_, stderr) =
        fails(&strand(p, &["topic", "create", "x", "--partitions", "1", "--config", "retention.ms=5"], None));
    assert!(stderr.contains("INVALID_CONFIG") && stderr.contains("retention_ms"), "{stderr}");

    let described = ok(&strand(p, &["topic", "describe", "logs"], None));
    assert_eq!(
        config_rows(&described),
        vec![
            row("retention_bytes", "none", "no"),
            row("retention_ms", "3600000", "yes"),
            row("segment_bytes", "1048576", "yes"),
            row("segment_ms", "none", "no"),
        ],
        "{described}"
    );
    let line = "x".repeat(999);
    let input: String = (0..3500).map(|_| format!("{line}\n")).collect();
    assert_eq!(ok(&strand(p, &["produce", "logs", "--acks", "all"], Some(input.as_bytes()))), "3500\n");
    let start = |node: &Node| {
        let d = json(&ok(&strand(&node.public, &["topic", "describe", "logs", "--format", "json"], None)));
        assert_eq!(d["partitions"][0]["log_end"], 3500, "{d}");
        d["partitions"][0]["log_start"].as_u64().expect("log_start")
    };
    assert_eq!(start(node), 0, "a one-hour retention keeps everything");

    let altered = ["topic", "alter-config", "logs", "--set", "retention.bytes=1048576", "--delete", "retention.ms"];
    assert_eq!(ok(&strand(p, &altered, None)), "altered logs\n");
    let mut log_start = 0;
    for _ in 0..200 {
        log_start = start(node);
        if log_start > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(log_start > 0, "retention.bytes applied to the live partition deletes old segments");
    let described = ok(&strand(p, &["topic", "describe", "logs"], None));
    let rows = config_rows(&described);
    assert!(
        rows.contains(&row("retention_bytes", "1048576", "yes")) && rows.contains(&row("retention_ms", "none", "no"))
    );

    let list = json(&ok(&strand(p, &["topic", "list", "--format", "json"], None)));
    let logs = list.as_array().unwrap().iter().find(|t| t["name"] == "logs").expect("listed").clone();
    assert_eq!((logs["partitions"].as_u64(), logs["replication_factor"].as_u64()), (Some(1), Some(1)), "{logs}");
    assert!(logs["configs"].as_array().unwrap().iter().any(|c| c["key"] == "segment_bytes" && c["override"] == true));

    let bad: [(&[&str], &str); 5] = [
        (&["topic", "alter-config", "logs"], "at least one"),
        (&["topic", "alter-config", "logs", "--set", "foo=1"], "known keys are"),
        (&["topic", "alter-config", "logs", "--set", "retention.ms=10"], "INVALID_CONFIG"),
        (&["topic", "alter-config", "nosuch", "--set", "retention.ms=10000"], "UNKNOWN_TOPIC"),
        (&["topic", "alter-config", "__consumer_offsets", "--delete", "retention.ms"], "internal"),
    ];
    for (args, expect) in bad {
        let (code, stderr) = fails(&strand(p, args, None));
        assert!(code == Some(1) && stderr.contains(expect), "{args:?}: {stderr}");
    }
}

/// add-partitions: grows only; records produced to a new partition are consumed; a
/// client with a short metadata age sees the new count without being told.
async fn add_partitions_then_produce_and_consume(node: &Node) {
    let p = &node.public;
    ok(&strand(p, &["topic", "create", "grow", "--partitions", "1"], None));
    let config = ClientConfig { metadata_max_age: Duration::ZERO, ..ClientConfig::new(p.clone()) };
    let fresh = Client::connect(config).await.expect("connect");
    let cached = node.client().await;
    assert_eq!((fresh.partition_count("grow").await.unwrap(), cached.partition_count("grow").await.unwrap()), (1, 1));
    assert_eq!(ok(&strand(p, &["topic", "add-partitions", "grow", "--count", "3"], None)), "partitions grow\t3\n");
    assert_eq!(fresh.partition_count("grow").await.unwrap(), 3, "metadata older than metadata_max_age is refetched");
    assert_eq!(cached.partition_count("grow").await.unwrap(), 1, "within metadata_max_age the cache is used");
    assert_eq!(ok(&strand(p, &["produce", "grow", "--partition", "2"], Some(b"x1\nx2\n"))), "2\n");
    let args = ["consume", "grow", "--partition", "2", "--from-beginning", "--count", "2", "--timeout-ms", "5000"];
    assert_eq!(ok(&strand(p, &args, None)), "x1\nx2\n");
    for (count, expect) in [("2", "must be larger"), ("3", "must be larger"), ("20000", "outside 1..=10000")] {
        let (_, stderr) = fails(&strand(p, &["topic", "add-partitions", "grow", "--count", count], None));
        assert!(stderr.contains(expect), "--count {count}: {stderr}");
    }
    let (_, stderr) = fails(&strand(p, &["topic", "add-partitions", "nosuch", "--count", "2"], None));
    assert!(stderr.contains("UNKNOWN_TOPIC"), "{stderr}");
}

/// `(committed p0, committed p1)` of `group` on topic `clicks`.
fn committed(node: &Node, group: &str) -> (u64, u64) {
    let g = json(&ok(&strand(&node.public, &["group", "describe", group, "--format", "json"], None)));
    let of = |partition: u64| {
        let parts = g["partitions"].as_array().expect("partitions");
        let found = parts.iter().find(|q| q["topic"] == "clicks" && q["partition"] == partition);
        found.and_then(|q| q["committed"].as_u64()).unwrap_or(COMMITTED_NONE)
    };
    (of(0), of(1))
}

/// Runs `group reset-offsets g1 --topic clicks <mode…>`; returns stdout and stderr.
fn reset(node: &Node, group: &str, mode: &[&str]) -> (String, String) {
    let args = [&["group", "reset-offsets", group, "--topic", "clicks"][..], mode].concat();
    let out = strand(&node.public, &args, None);
    (ok(&out), String::from_utf8_lossy(&out.stderr).into_owned())
}

/// Every --to-* mode, --partition, --dry-run and clamping; returns the timestamp that
/// separates the first 6 records of partition 0 from the last 2.
async fn reset_offsets_in_every_mode(node: &Node) -> u64 {
    let p = &node.public;
    ok(&strand(p, &["topic", "create", "clicks", "--partitions", "2"], None));
    ok(&strand(p, &["produce", "clicks", "--partition", "0"], Some(b"a0\na1\na2\na3\na4\na5\n")));
    ok(&strand(p, &["produce", "clicks", "--partition", "1"], Some(b"b0\nb1\nb2\nb3\n")));
    tokio::time::sleep(Duration::from_millis(30)).await;
    let t = now_ms();
    tokio::time::sleep(Duration::from_millis(30)).await;
    ok(&strand(p, &["produce", "clicks", "--partition", "0"], Some(b"a6\na7\n")));
    let args = ["consume", "clicks", "--group", "g1", "--from-beginning", "--count", "12", "--timeout-ms", "5000"];
    assert_eq!(ok(&strand(p, &args, None)).lines().count(), 12);
    assert_eq!(committed(node, "g1"), (8, 4));
    let described = ok(&strand(p, &["group", "describe", "g1"], None));
    assert!(described.ends_with("total_lag 0\n"), "{described}");

    let (out, err) = reset(node, "g1", &["--to-earliest", "--dry-run"]);
    assert_eq!(out, "topic\tpartition\told\tnew\nclicks\t0\t8\t0\nclicks\t1\t4\t0\n");
    assert!(err.contains("dry run"), "{err}");
    assert_eq!(committed(node, "g1"), (8, 4), "a dry run commits nothing");
    let (out, _) = reset(node, "g1", &["--to-earliest"]);
    assert_eq!(out, "topic\tpartition\told\tnew\nclicks\t0\t8\t0\nclicks\t1\t4\t0\n");
    assert_eq!(committed(node, "g1"), (0, 0));
    let g = json(&ok(&strand(p, &["group", "describe", "g1", "--format", "json"], None)));
    assert_eq!((g["total_lag"].as_u64(), g["state"].as_str()), (Some(12), Some("Empty")), "{g}");
    let described = ok(&strand(p, &["group", "describe", "g1"], None));
    assert!(described.ends_with("total_lag 12\n"), "{described}");

    let (out, _) = reset(node, "g1", &["--to-offset", "3", "--partition", "0"]);
    assert_eq!(out, "topic\tpartition\told\tnew\nclicks\t0\t0\t3\n");
    assert_eq!(committed(node, "g1"), (3, 0), "--partition moves only that partition");
    let (_, err) = reset(node, "g1", &["--to-offset", "100"]);
    assert!(err.contains("clamped to 8") && err.contains("clamped to 4"), "{err}");
    assert_eq!(committed(node, "g1"), (8, 4));
    reset(node, "g1", &["--shift-by", "-2"]);
    assert_eq!(committed(node, "g1"), (6, 2));
    let (_, err) = reset(node, "g1", &["--shift-by", "-100"]);
    assert!(err.contains("clamped to 0"), "{err}");
    assert_eq!(committed(node, "g1"), (0, 0));
    reset(node, "g1", &["--to-latest"]);
    assert_eq!(committed(node, "g1"), (8, 4));
    reset(node, "g1", &["--to-datetime", &t.to_string()]);
    assert_eq!(committed(node, "g1"), (6, 4), "first record at or after t; the log end where there is none");
    reset(node, "g1", &["--to-datetime", "0"]);
    assert_eq!(committed(node, "g1"), (0, 0));
    let at = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(t) * 1_000_000).expect("time");
    let at = at.to_offset(time::UtcOffset::from_hms(2, 0, 0).expect("offset"));
    let rfc3339 = at.format(&time::format_description::well_known::Rfc3339).expect("format");
    reset(node, "g1", &["--to-datetime", &rfc3339]);
    assert_eq!(committed(node, "g1"), (6, 4), "{rfc3339}");
    t
}

/// A group with a live member: the CLI refuses reset and delete, and the node refuses a
/// commit from outside the generation.
async fn active_members_block_reset_and_delete(node: &Node, _t: u64) {
    let config = ConsumerConfig {
        session_timeout: Duration::from_secs(10),
        heartbeat_interval: Duration::from_millis(200),
        auto_commit: false,
        auto_offset_reset: OffsetReset::Earliest,
        max_wait: Duration::from_millis(100),
        ..ConsumerConfig::default()
    };
    let client = node.client().await;
    let mut member = Consumer::new(client.clone(), config);
    member.subscribe("g1", &["clicks"]).await.expect("subscribe");
    member.poll(Duration::from_millis(300)).await.expect("poll");
    let p = &node.public;
    let (code, stderr) =
        fails(&strand(p, &["group", "reset-offsets", "g1", "--topic", "clicks", "--to-earliest"], None));
    assert!(code == Some(1) && stderr.contains("1 active members"), "{stderr}");
    let (_, stderr) = fails(&strand(p, &["group", "delete", "g1"], None));
    assert!(stderr.contains("NON_EMPTY_GROUP"), "{stderr}");
    let offsets = vec![CommittedOffset { topic: "clicks".into(), partition: 0, offset: 1, metadata: String::new() }];
    let refused = Admin::new(client).commit_group_offsets("g1", offsets).await.expect_err("commit from outside");
    assert_eq!(refused.code(), ErrorCode::UnknownMember, "the node, not only the CLI, refuses: {refused}");
    member.close().await.expect("leave");
    assert_eq!(committed(node, "g1"), (6, 4), "nothing moved while the member was there");
    reset(node, "g1", &["--to-earliest"]);
    reset(node, "g2", &["--to-latest"]);
}

/// group delete, its errors, and the CLI's input checks.
fn delete_group_and_bad_input(node: &Node) {
    let p = &node.public;
    let listed = json(&ok(&strand(p, &["group", "list", "--format", "json"], None)));
    let names: Vec<&str> = listed.as_array().unwrap().iter().map(|g| g["group"].as_str().unwrap()).collect();
    assert_eq!(names, vec!["g1", "g2"], "{listed}");
    assert_eq!(listed[0]["members"], 0);
    assert_eq!(ok(&strand(p, &["group", "delete", "g1"], None)), "deleted g1\n");
    let (_, stderr) = fails(&strand(p, &["group", "describe", "g1"], None));
    assert!(stderr.contains("does not exist"), "{stderr}");
    let (_, stderr) = fails(&strand(p, &["group", "delete", "g1"], None));
    assert!(stderr.contains("GROUP_ID_NOT_FOUND"), "{stderr}");

    let long = "g".repeat(300);
    let reset =
        |extra: &[&str]| strand(p, &[&["group", "reset-offsets", "g3", "--topic", "clicks"][..], extra].concat(), None);
    let usage: [&[&str]; 3] = [&[], &["--to-earliest", "--to-latest"], &["--to-offset", "-1"]];
    for extra in usage {
        assert_eq!(fails(&reset(extra)).0, Some(2), "usage error: {extra:?}");
    }
    let bad: [(&[&str], &str); 3] = [
        (&["--to-earliest", "--partition", "7"], "no partition 7"),
        (&["--to-datetime", "yesterday"], "RFC 3339"),
        (&["--shift-by", "1"], "no committed offset"),
    ];
    for (extra, expect) in bad {
        let (code, stderr) = fails(&reset(extra));
        assert!(code == Some(1) && stderr.contains(expect), "{extra:?}: {stderr}");
    }
    let (_, stderr) = fails(&strand(p, &["group", "delete", &long], None));
    assert!(stderr.contains("INVALID_GROUP_ID"), "{stderr}");
    let (_, stderr) = fails(&strand(p, &["group", "reset-offsets", &long, "--topic", "clicks", "--to-latest"], None));
    assert!(stderr.contains("INVALID_GROUP_ID"), "{stderr}");
}

/// The new requests from a client that skips the CLI's checks: every field bounded.
async fn hostile_requests_are_refused(node: &Node) {
    let admin = Admin::new(node.client().await);
    let many: Vec<(String, String)> =
        (0..17).map(|i| ("retention_ms".to_string(), format!("{}", 10_000 + i))).collect();
    let code = |r: strand_client::Result<()>| r.expect_err("refused").code();
    assert_eq!(code(admin.alter_topic_config("logs", many, vec![]).await), ErrorCode::InvalidConfig, "17 changes");
    assert_eq!(code(admin.alter_topic_config("logs", vec![], vec![]).await), ErrorCode::InvalidConfig, "no change");
    let long_key = vec![("k".repeat(4000), "1".to_string())];
    assert_eq!(code(admin.alter_topic_config("logs", long_key, vec![]).await), ErrorCode::InvalidConfig);
    let not_a_number = vec![("retention_ms".to_string(), "-1".to_string())];
    assert_eq!(code(admin.alter_topic_config("logs", not_a_number, vec![]).await), ErrorCode::InvalidConfig);
    let unknown_delete = vec!["cleanup_policy".to_string()];
    assert_eq!(code(admin.alter_topic_config("logs", vec![], unknown_delete).await), ErrorCode::InvalidConfig);
    let huge = admin.create_partitions("grow", u32::MAX).await.expect_err("too many partitions");
    assert_eq!(huge.code(), ErrorCode::InvalidConfig, "{huge}");
    assert_eq!(code(admin.delete_group("").await), ErrorCode::InvalidGroupId);
    let described = ok(&strand(&node.public, &["topic", "describe", "logs"], None));
    assert!(
        config_rows(&described).contains(&row("retention_bytes", "1048576", "yes")),
        "nothing changed: {described}"
    );
}
