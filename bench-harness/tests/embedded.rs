//! End to end: the real `strand-bench` binary spawns the real `strand-node` on loopback,
//! runs a short fixed-rate workload and writes JSON and SVG; the numbers must be sane.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// `$STRAND_NODE_BIN` (set by `./test.sh`), else the strand-node binary of the same
/// profile, built if it is missing.
fn node_binary(bench: &Path) -> PathBuf {
    if let Some(bin) = std::env::var_os("STRAND_NODE_BIN") {
        return PathBuf::from(bin);
    }
    let node = bench.with_file_name("strand-node");
    if !node.is_file() {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let mut cmd = Command::new(cargo);
        cmd.args(["build", "-p", "strand-node", "--bin", "strand-node"]);
        if bench.parent().is_some_and(|d| d.ends_with("release")) {
            cmd.arg("--release");
        }
        let status = cmd.status().expect("run cargo build");
        assert!(status.success(), "cargo build -p strand-node failed");
    }
    assert!(node.is_file(), "no strand-node at {}", node.display());
    node
}

#[test]
fn embedded_fixed_rate_run_reports_sane_numbers() {
    let bench = PathBuf::from(env!("CARGO_BIN_EXE_strand-bench"));
    let node = node_binary(&bench);
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("out.json");
    let svg = dir.path().join("out.svg");
    let started = Instant::now();
    let out = Command::new(&bench)
        .args(["--embedded", "--duration", "2", "--warmup", "1", "--rate", "1000", "--message-size", "256"])
        .args(["--partitions", "2", "--io-mode", "buffered", "--quiet", "--max-inflight", "1"])
        .arg("--node-bin")
        .arg(&node)
        .arg("--json")
        .arg(&json)
        .arg("--plot")
        .arg(&svg)
        .output()
        .expect("run strand-bench");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "strand-bench failed\nstdout:\n{stdout}\nstderr:\n{stderr}");
    assert!(started.elapsed() < Duration::from_secs(20), "took {:?}", started.elapsed());
    assert!(stdout.contains("publish") && stdout.contains("end-to-end") && stdout.contains("p99.99"), "{stdout}");

    let v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let r = &v["results"];
    assert_eq!(r["errors"], 0, "{stdout}");
    assert_eq!(v["config"]["max_inflight"], 1, "the flag reaches the workload");
    let rate = r["produce"]["msgs_per_sec"].as_f64().unwrap();
    assert!((700.0..=1300.0).contains(&rate), "produce rate {rate} should be near the 1000/s target");
    let consumed = r["consume"]["msgs_per_sec"].as_f64().unwrap();
    assert!((700.0..=1300.0).contains(&consumed), "consume rate {consumed}");
    for kind in ["publish", "end_to_end"] {
        let s = &r[kind];
        let count = s["count"].as_u64().unwrap();
        // 2 s at 1000/s; allow for scheduling slack at the window edges.
        assert!((1_400..=2_600).contains(&count), "{kind} samples {count}");
        let (p50, p99, max) =
            (s["p50_us"].as_u64().unwrap(), s["p99_us"].as_u64().unwrap(), s["max_us"].as_u64().unwrap());
        assert!(p50 >= 1 && p50 <= p99 && p99 <= max, "{kind}: p50 {p50} p99 {p99} max {max}");
        assert!(max < 2_000_000, "{kind}: max {max} µs on an idle loopback run");
        assert_eq!(s["spectrum"].as_array().unwrap().last().unwrap()["percentile"], 100.0);
    }
    // End to end includes the publish path plus the fetch, so its median cannot be far below.
    assert!(r["end_to_end"]["p50_us"].as_u64().unwrap() * 4 >= r["publish"]["p50_us"].as_u64().unwrap());
    assert!(r["node"]["rss_peak_bytes"].as_u64().unwrap() > 0, "node RSS measured");
    assert_eq!(v["config"]["rate"]["msgs_per_sec"], 1000.0);
    assert!(std::fs::read_to_string(&svg).unwrap().contains("<polyline"));
}

/// The pids of `parent`'s direct children.
fn children(parent: u32) -> Vec<u32> {
    let out = Command::new("pgrep").args(["-P", &parent.to_string()]).output().expect("run pgrep");
    String::from_utf8_lossy(&out.stdout).lines().filter_map(|l| l.trim().parse().ok()).collect()
}

fn alive(pid: u32) -> bool {
    // A zombie still has a /proc entry; its state letter is Z.
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| s.rsplit(')').next().is_some_and(|rest| !rest.trim_start().starts_with('Z')))
        .unwrap_or(false)
}

/// `kill <strand-bench>` (SIGTERM) mid-run: the harness prints what it measured, stops its
/// embedded node and exits 0 — no orphaned `strand-node`.
#[test]
fn sigterm_stops_the_embedded_node() {
    let bench = PathBuf::from(env!("CARGO_BIN_EXE_strand-bench"));
    let node = node_binary(&bench);
    let child = Command::new(&bench)
        .args(["--embedded", "--duration", "60", "--warmup", "0", "--rate", "200", "--message-size", "64"])
        .args(["--partitions", "1", "--io-mode", "buffered", "--quiet"])
        .arg("--node-bin")
        .arg(&node)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run strand-bench");
    // Wait for the embedded node to exist and the run to be under way.
    let deadline = Instant::now() + Duration::from_secs(30);
    let node_pid = loop {
        if let Some(pid) = children(child.id()).first() {
            break *pid;
        }
        assert!(Instant::now() < deadline, "strand-bench never started a node");
        std::thread::sleep(Duration::from_millis(50));
    };
    std::thread::sleep(Duration::from_secs(2));
    let status = Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    assert!(status.success());
    let out = child.wait_with_output().expect("wait for strand-bench");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "strand-bench: {:?}\n{stdout}\n{}", out.status, String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("publish"), "the interrupted run still prints its summary:\n{stdout}");
    let deadline = Instant::now() + Duration::from_secs(10);
    while alive(node_pid) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(!alive(node_pid), "strand-node {node_pid} outlived the harness");
}
