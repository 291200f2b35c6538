//! The `strand` CLI's topic changes on a real 2-node cluster (real etcd): alter-config
//! rewrites the definition in etcd, every node shows it and its running replicas apply
//! it (smaller segments, then retention deleting them); add-partitions has the
//! controller place the new partitions' chains, and records produced to a new partition
//! are consumed (and `topic describe` shows each chain's preferred head); group
//! reset-offsets and delete go through the cluster's coordinator.

mod common;
mod support;

use std::time::{Duration, Instant};

use common::cli::{ok, strand};
use strand_client::{Admin, Client, ClientConfig, ErrorCode};
use support::{Etcd, Node};

/// Longest the cluster may take to reach an expected state.
const SETTLE_MAX: Duration = Duration::from_secs(20);

/// Runs the CLI until it succeeds (a fresh cluster may still be placing chains).
fn ok_eventually(bootstrap: &str, args: &[&str], stdin: Option<&[u8]>) -> String {
    let deadline = Instant::now() + SETTLE_MAX;
    loop {
        let out = strand(bootstrap, args, stdin);
        if out.status.success() || Instant::now() >= deadline {
            return ok(&out);
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alter_config_add_partitions_and_group_admin_in_cluster_mode() {
    let etcd = Etcd::start();
    let config_dir = tempfile::tempdir().expect("temp dir");
    let config = config_dir.path().join("strand.toml");
    std::fs::write(&config, "retention_check_ms = 100\n").expect("write config");
    let flags = ["--config", config.to_str().expect("utf8 path")];
    let nodes: Vec<Node> = (1..=2).map(|id| Node::start_cluster_with_flags(1, id, &etcd.endpoint, &flags)).collect();
    let (a, b) = (nodes[0].public.clone(), nodes[1].public.clone());
    let admin = Admin::new(Client::connect(ClientConfig::new(a.clone())).await.expect("connect"));
    support::create_replicated(&admin, "t", 1, 2).await.expect("create RF=2 topic");

    let altered = ["topic", "alter-config", "t", "--set", "retention.ms=600000", "--set", "segment.bytes=1048576"];
    assert_eq!(ok(&strand(&a, &altered, None)), "altered t\n");
    let deadline = Instant::now() + SETTLE_MAX;
    loop {
        let described = ok(&strand(&b, &["topic", "describe", "t"], None));
        if described.contains("retention_ms\t600000\tyes\n") && described.contains("segment_bytes\t1048576\tyes\n") {
            break;
        }
        assert!(Instant::now() < deadline, "node 2 never showed the new config: {described}");
        std::thread::sleep(Duration::from_millis(100));
    }
    retention_applies_to_running_replicas(&a);
    let bad = admin.alter_topic_config("t", vec![("cleanup_policy".into(), "compact".into())], vec![]).await;
    assert_eq!(bad.expect_err("unknown key").code(), ErrorCode::InvalidConfig, "the control plane validates too");

    assert_eq!(ok(&strand(&b, &["topic", "add-partitions", "t", "--count", "3"], None)), "partitions t\t3\n");
    let out = strand(&a, &["topic", "add-partitions", "t", "--count", "2"], None);
    assert!(!out.status.success() && String::from_utf8_lossy(&out.stderr).contains("must be larger"));
    let produced = ok_eventually(&a, &["produce", "t", "--partition", "2", "--acks", "all"], Some(b"y1\ny2\n"));
    assert_eq!(produced, "2\n");
    let args = ["consume", "t", "--partition", "2", "--from-beginning", "--count", "2", "--timeout-ms", "10000"];
    assert_eq!(ok(&strand(&b, &args, None)), "y1\ny2\n", "the new partition is replicated and readable");
    let described = ok(&strand(&a, &["topic", "describe", "t", "--format", "json"], None));
    let d: serde_json::Value = serde_json::from_str(&described).expect("json");
    let chains: Vec<usize> =
        d["partitions"].as_array().unwrap().iter().map(|p| p["chain"].as_array().unwrap().len()).collect();
    assert_eq!(chains, vec![2, 2, 2], "new partitions get chains of the topic's RF: {described}");
    // Every chain prefers its first head, and the preferences spread over both nodes.
    let preferred: Vec<u64> =
        d["partitions"].as_array().unwrap().iter().map(|p| p["preferred"].as_u64().unwrap()).collect();
    let heads: Vec<u64> = d["partitions"].as_array().unwrap().iter().map(|p| p["chain"][0].as_u64().unwrap()).collect();
    assert_eq!(preferred, heads, "a fresh chain is headed by its preferred node: {described}");
    assert!(preferred.contains(&1) && preferred.contains(&2), "preferred heads spread: {described}");
    let text = ok(&strand(&a, &["topic", "describe", "t"], None));
    let header = text.lines().next().unwrap_or_default();
    assert!(header.ends_with("\tlog_end\tpreferred"), "{text}");
    let first = text.lines().nth(1).unwrap_or_default();
    assert!(first.ends_with(&format!("\t{}", preferred[0])), "{text}");

    let args = ["consume", "t", "--group", "cg", "--from-beginning", "--count", "2", "--timeout-ms", "10000"];
    assert_eq!(ok_eventually(&a, &args, None).lines().count(), 2);
    // Which partitions the two records came from depends on the fetch order: read what the
    // group committed on partition 2 (`-` if nothing) before the reset.
    let described = ok_eventually(&a, &["group", "describe", "cg", "--format", "json"], None);
    let d: serde_json::Value = serde_json::from_str(&described).expect("json");
    let committed = d["partitions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["topic"] == "t" && p["partition"] == 2)
        .and_then(|p| p["committed"].as_u64())
        .map_or_else(|| "-".to_string(), |c| c.to_string());
    let reset = ["group", "reset-offsets", "cg", "--topic", "t", "--partition", "2", "--to-earliest"];
    assert_eq!(ok_eventually(&a, &reset, None), format!("topic\tpartition\told\tnew\nt\t2\t{committed}\t0\n"));
    assert_eq!(ok(&strand(&b, &["group", "delete", "cg"], None)), "deleted cg\n");
    let out = strand(&a, &["group", "describe", "cg"], None);
    assert!(String::from_utf8_lossy(&out.stderr).contains("does not exist"));
}

/// `segment.bytes` (set above) made the replicas roll 1 MiB segments; `retention.bytes`
/// set now deletes the old ones on the head: both reached the running replicas.
fn retention_applies_to_running_replicas(bootstrap: &str) {
    let line = "z".repeat(999);
    let input: String = (0..3500).map(|_| format!("{line}\n")).collect();
    let produced =
        ok_eventually(bootstrap, &["produce", "t", "--partition", "0", "--acks", "all"], Some(input.as_bytes()));
    assert_eq!(produced, "3500\n");
    let altered = ["topic", "alter-config", "t", "--set", "retention.bytes=1048576", "--delete", "retention.ms"];
    assert_eq!(ok(&strand(bootstrap, &altered, None)), "altered t\n");
    let deadline = Instant::now() + SETTLE_MAX;
    loop {
        let described = ok(&strand(bootstrap, &["topic", "describe", "t", "--format", "json"], None));
        let d: serde_json::Value = serde_json::from_str(&described).expect("json");
        if d["partitions"][0]["log_start"].as_u64().is_some_and(|s| s > 0) {
            return;
        }
        assert!(Instant::now() < deadline, "retention never deleted a segment of the head: {described}");
        std::thread::sleep(Duration::from_millis(100));
    }
}
