//! The node's startup failure lines against the real binary say each thing once: a shard
//! that cannot open a partition is named once (`strand-node: shard 0: cannot open
//! partition …`, not `shard 0: shard 0: …`), an unreachable etcd once (not `etcd: cannot
//! reach etcd at …`).

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// How long a node that cannot open its partitions may take to give up.
const EXIT_TIMEOUT: Duration = Duration::from_secs(60);

/// Runs `strand-node` on `data_dir` until it exits; returns its exit code and stderr.
fn run_until_exit(data_dir: &std::path::Path, shards: u16, extra: &[&str]) -> (Option<i32>, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_strand-node"))
        .args([
            "--data-dir",
            data_dir.to_str().unwrap(),
            "--listen",
            "127.0.0.1:0",
            "--admin",
            "127.0.0.1:0",
            "--kafka-listen",
            "127.0.0.1:0",
        ])
        .args(["--shards", &shards.to_string(), "--shard-port-base", "0", "--io-mode", "buffered"])
        .args(extra)
        .env("RUST_LOG", "warn,glommio=error")
        .env("NO_COLOR", "1")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn strand-node");
    let deadline = Instant::now() + EXIT_TIMEOUT;
    while child.try_wait().expect("try_wait").is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("strand-node still running after {EXIT_TIMEOUT:?} on a data dir it cannot open");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = child.wait_with_output().expect("node output");
    (out.status.code(), String::from_utf8_lossy(&out.stderr).into_owned())
}

#[test]
fn unopenable_partition_names_the_shard_once() {
    let dir = tempfile::tempdir().unwrap();
    let registry =
        r#"{"version": 1, "topics": [{"name": "events", "partitions": 2, "replication_factor": 1, "configs": {}}]}"#;
    std::fs::write(dir.path().join("topics.json"), registry).unwrap();
    // A dir of the current format (without the marker, the format check refuses it first).
    std::fs::write(dir.path().join("strand.format"), "2\n").unwrap();
    // A regular file where partition 0's directory belongs: the shard cannot open it.
    std::fs::create_dir_all(dir.path().join("topics/events")).unwrap();
    std::fs::write(dir.path().join("topics/events/0"), b"not a directory").unwrap();

    let (code, stderr) = run_until_exit(dir.path(), 1, &[]);
    assert_eq!(code, Some(1), "startup failure exit code; stderr:\n{stderr}");
    let line = stderr.lines().rfind(|l| l.starts_with("strand-node: ")).unwrap_or_else(|| panic!("{stderr}"));
    assert_eq!(line.matches("shard 0").count(), 1, "{line:?}");
    assert_eq!(line.matches("cannot open partition events/0").count(), 1, "{line:?}");
}

#[test]
fn unreachable_etcd_is_named_once() {
    let dir = tempfile::tempdir().unwrap();
    // Port 1 on loopback: nothing listens there, the connection is refused at once.
    let cluster = ["--node-id", "1", "--etcd", "http://127.0.0.1:1", "--replication-port-base", "0"];
    let (code, stderr) = run_until_exit(dir.path(), 1, &cluster);
    assert_eq!(code, Some(1), "startup failure exit code; stderr:\n{stderr}");
    let line = stderr.lines().rfind(|l| l.starts_with("strand-node: ")).unwrap_or_else(|| panic!("{stderr}"));
    assert!(line.contains("http://127.0.0.1:1"), "{line:?}");
    assert_eq!(line.matches("etcd").count(), 1, "{line:?}");
}
