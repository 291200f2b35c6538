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

#[test]
fn embedded_tls_run_produces_and_consumes_over_tls() {
    let bench = PathBuf::from(env!("CARGO_BIN_EXE_strand-bench"));
    let node = node_binary(&bench);
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("out.json");
    let out = Command::new(&bench)
        .args(["--embedded", "--tls", "--duration", "1", "--warmup", "0", "--rate", "500", "--message-size", "256"])
        .args(["--partitions", "1", "--quiet"])
        .arg("--node-bin")
        .arg(&node)
        .arg("--json")
        .arg(&json)
        .output()
        .expect("run strand-bench");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "strand-bench --tls failed\nstderr:\n{stderr}");
    let v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert_eq!(v["target"], "embedded (tls)");
    assert_eq!(v["results"]["errors"], 0);
    assert!(v["results"]["consume"]["msgs_per_sec"].as_f64().unwrap() > 100.0, "{v}");
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

/// `strand-bench suite --quick`: the limits and two cheap workloads in one invocation; the
/// table and the JSON carry every row with a number and a positive ratio. No timing
/// assertions (the machine may be busy); the fio rows are numbers or say fio is missing.
#[test]
fn suite_quick_reports_rows_with_numbers_and_ratios() {
    let bench = PathBuf::from(env!("CARGO_BIN_EXE_strand-bench"));
    let node = node_binary(&bench);
    // Inside the target dir, not /tmp: fio's O_DIRECT jobs need a real disk, not tmpfs.
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let json = dir.path().join("suite.json");
    let started = Instant::now();
    let out = Command::new(&bench)
        .args(["suite", "--quick", "--runs", "1", "--only", "fixed-rate,small-1inflight", "--quiet"])
        .arg("--dir")
        .arg(dir.path().join("data"))
        .arg("--node-bin")
        .arg(&node)
        .arg("--json")
        .arg(&json)
        .output()
        .expect("run strand-bench suite");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "strand-bench suite failed\nstdout:\n{stdout}\nstderr:\n{stderr}");
    eprintln!("suite --quick took {:?}\n{stdout}", started.elapsed());
    for row in ["| fixed-rate | publish p99.9 |", "| fixed-rate | end-to-end p99 |", "| small-1inflight | produce |"] {
        assert!(stdout.contains(row), "{row} missing:\n{stdout}");
    }
    assert!(stdout.contains("| loopback round trip 64 B, p50 |") && stdout.contains("UTC"), "{stdout}");
    assert!(!stdout.contains("| catchup |"), "--only leaves the other workloads out:\n{stdout}");

    let v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let c = &v["context"];
    assert!(c["date_utc"].as_str().unwrap().ends_with("UTC"));
    assert_eq!(c["load_before"].as_array().unwrap().len(), 3);
    assert_eq!(c["load_after"].as_array().unwrap().len(), 3);
    assert_eq!((c["runs"].as_u64(), c["quick"].as_bool()), (Some(1), Some(true)));
    let limits = v["limits"]["summary"].as_array().unwrap();
    let limit = |key: &str| limits.iter().find(|l| l["key"] == key).unwrap_or_else(|| panic!("limit {key}"));
    for key in ["rtt_p50", "rtt_p99", "rtt_p999", "rtt_max", "sendfile"] {
        assert!(limit(key)["value"]["median"].as_f64().unwrap() > 0.0, "{key}: {}", limit(key));
    }
    for key in ["fio_seq_write", "fio_seq_read", "fio_fdatasync_p99"] {
        let l = limit(key);
        match l["value"]["median"].as_f64() {
            Some(x) => assert!(x > 0.0, "{key}: {l}"),
            None => assert!(l["missing"].as_str().unwrap().starts_with("n/a (fio"), "{key}: {l}"),
        }
    }
    for w in v["workloads"].as_array().unwrap() {
        let run = &w["runs"][0];
        assert!(run["error"].is_null(), "{}: {}", w["name"], run["error"]);
        assert_eq!(run["report"]["results"]["errors"], 0, "{}", w["name"]);
    }
    let rows = v["rows"].as_array().unwrap();
    let names: Vec<&str> = rows.iter().map(|r| r["workload"].as_str().unwrap()).collect();
    assert_eq!(names.iter().filter(|n| **n == "fixed-rate").count(), 4, "{names:?}");
    assert_eq!(names.iter().filter(|n| **n == "small-1inflight").count(), 3, "{names:?}");
    assert_eq!(names.len(), 7, "{names:?}");
    for r in rows {
        let median = r["value"]["median"].as_f64().unwrap_or_else(|| panic!("no value: {r}"));
        assert!(median > 0.0, "{r}");
        if r["limit_key"].is_string() {
            assert!(r["limit"].as_f64().unwrap() > 0.0, "{r}");
            assert!(r["ratio"].as_f64().unwrap() > 0.0, "{r}");
        }
        let status = r["status"].as_str().unwrap();
        if r["goal"].is_string() {
            assert!(status == "met" || status == "missed", "{r}");
        } else {
            assert_eq!(status, "no_goal", "{r}");
        }
    }
}

/// Bad suite flags fail with a clear message before anything is measured.
#[test]
fn suite_rejects_bad_flags() {
    let bench = PathBuf::from(env!("CARGO_BIN_EXE_strand-bench"));
    let run = |args: &[&str]| Command::new(&bench).args(args).output().expect("run strand-bench");
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let dir_arg = dir.path().to_str().unwrap();
    let out = run(&["suite", "--only", "fixed-rate,nope", "--dir", dir_arg]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("unknown workload \"nope\"") && stderr.contains("small-1inflight"), "{stderr}");
    let out = run(&["suite", "--node-bin", "/nonexistent/strand-node", "--dir", dir_arg]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("strand-node binary not found"), "checked before the limits: {stderr}");
    assert_eq!(run(&["suite", "--runs", "0"]).status.code(), Some(2), "clap rejects 0 runs");
    assert_eq!(run(&["--duration", "2", "suite"]).status.code(), Some(2), "run flags and suite do not mix");
}

/// `--protocol kafka` drives the embedded node's Kafka port: a backlog produced with
/// acks=all is read back completely through Kafka fetches, with no error.
#[test]
fn kafka_protocol_run_reads_back_its_whole_backlog() {
    let bench = PathBuf::from(env!("CARGO_BIN_EXE_strand-bench"));
    let node = node_binary(&bench);
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("out.json");
    let out = Command::new(&bench)
        .args(["--embedded", "--protocol", "kafka", "--backlog", "8MiB", "--partitions", "3", "--producers", "2"])
        .args(["--consumers", "2", "--acks", "all", "--message-size", "512", "--batch-size", "16384", "--quiet"])
        .arg("--node-bin")
        .arg(&node)
        .arg("--json")
        .arg(&json)
        .output()
        .expect("run strand-bench");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "strand-bench failed\nstdout:\n{stdout}\nstderr:\n{stderr}");
    assert!(stdout.contains("protocol Kafka"), "{stdout}");
    let v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let r = &v["results"];
    assert_eq!(r["errors"], 0, "{stdout}");
    assert_eq!(v["config"]["protocol"], "kafka");
    assert_eq!(r["catchup"]["completed"], true, "{stdout}");
    let produced = r["catchup"]["produce"]["msgs"].as_u64().unwrap();
    assert!(produced >= 8 * 1024 * 1024 / 512, "{produced} messages produced");
    assert_eq!(r["catchup"]["consume"]["msgs"].as_u64().unwrap(), produced, "every message read back once");
}
