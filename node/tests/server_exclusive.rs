//! A node never shares a port or a data dir with another process. Each case starts a
//! real node, then a second real `strand-node` that wants something the first holds: the
//! second must exit 78 at once with one line naming the port and its flag (or the data dir
//! and the holder's pid), and the first must keep serving, untouched. Before the fix the
//! second node bound the same ports with `SO_REUSEPORT` and served from its own data.

mod common;

use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::etcd::Etcd;
use common::{batch1, Node};
use strand_wire::ErrorCode;

/// How long a refused start may take (it happens before any data is opened).
const REFUSAL_TIMEOUT: Duration = Duration::from_secs(20);

/// Runs a second `strand-node` with `args` and returns its exit code and stderr; a node
/// that is still running after [`REFUSAL_TIMEOUT`] was not refused and fails the test.
fn second_node(data_dir: &Path, args: &[&str]) -> (i32, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_strand-node"))
        .args(["--data-dir", data_dir.to_str().unwrap(), "--shards", "1"])
        .args(args)
        .env("RUST_LOG", "warn,glommio=error")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn strand-node");
    let deadline = Instant::now() + REFUSAL_TIMEOUT;
    while child.try_wait().expect("wait").is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            let stderr = read_stderr(&mut child);
            panic!("the second node started instead of being refused; its log:\n{stderr}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let code = child.wait().expect("wait").code().unwrap_or(-1);
    (code, read_stderr(&mut child))
}

fn read_stderr(child: &mut Child) -> String {
    use std::io::Read;
    let mut text = String::new();
    let _ = child.stderr.take().expect("piped").read_to_string(&mut text);
    text
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// The refusal is exactly one line on stderr, the expected one.
fn assert_refused(code: i32, stderr: &str, line: &str) {
    assert_eq!(code, 78, "exit code; stderr:\n{stderr}");
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines, vec![line], "stderr must be the one refusal line");
}

/// The first node serves produce and fetch on its public port (many fresh connections, so
/// a second listener on that port would have been hit) and on its shard port.
fn assert_still_serving(node: &Node, topic: &str, produced: &mut u64) {
    for _ in 0..16 {
        let mut client = node.client();
        let answer = client.produce(topic, 0, &batch1(b"still here"));
        assert_eq!(answer.error, ErrorCode::None, "{answer:?}");
        *produced += 1;
    }
    let mut shard = node.shard_client(0);
    assert_eq!(shard.read_all(topic, 0).len() as u64, *produced);
}

#[test]
fn a_taken_public_shard_admin_or_kafka_port_refuses_the_second_node() {
    let dir = tempfile::tempdir().unwrap();
    let first = Node::start(&dir.path().join("first"), 1, &[]);
    let mut produced = 0;
    assert_eq!(first.client().create_topic("t", 1).error, ErrorCode::None);
    assert_still_serving(&first, "t", &mut produced);
    let other = dir.path().join("second");
    let (public, shard, admin) = (first.public.to_string(), first.shard_ports[0].to_string(), first.admin.to_string());

    let (code, stderr) = second_node(
        &other,
        &["--listen", &public, "--admin", "127.0.0.1:0", "--kafka-listen", "127.0.0.1:0", "--shard-port-base", "0"],
    );
    assert_refused(code, &stderr, &format!("strand-node: {public} (--listen) is already in use by another process"));
    assert_still_serving(&first, "t", &mut produced);

    let args = [
        "--listen",
        "127.0.0.1:0",
        "--admin",
        "127.0.0.1:0",
        "--kafka-listen",
        "127.0.0.1:0",
        "--shard-port-base",
        &shard,
    ];
    let (code, stderr) = second_node(&other, &args);
    let line = format!("strand-node: 127.0.0.1:{shard} (--shard-port-base) is already in use by another process");
    assert_refused(code, &stderr, &line);
    assert_still_serving(&first, "t", &mut produced);

    let (code, stderr) = second_node(
        &other,
        &["--listen", "127.0.0.1:0", "--admin", &admin, "--kafka-listen", "127.0.0.1:0", "--shard-port-base", "0"],
    );
    assert_refused(code, &stderr, &format!("strand-node: {admin} (--admin) is already in use by another process"));
    assert_still_serving(&first, "t", &mut produced);

    let kafka = first.kafka.expect("the first node's Kafka port").to_string();
    let args =
        ["--listen", "127.0.0.1:0", "--admin", "127.0.0.1:0", "--kafka-listen", &kafka, "--shard-port-base", "0"];
    let (code, stderr) = second_node(&other, &args);
    assert_refused(
        code,
        &stderr,
        &format!("strand-node: {kafka} (--kafka-listen) is already in use by another process"),
    );
    assert_still_serving(&first, "t", &mut produced);
    let (status, body) = first.admin_get("/health");
    assert_eq!(status, 200, "{body}");
}

#[test]
fn a_data_dir_in_use_refuses_the_second_node_and_a_killed_holder_does_not_block_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut first = Node::start(&data, 1, &[]);
    let mut produced = 0;
    assert_eq!(first.client().create_topic("t", 1).error, ErrorCode::None);
    assert_still_serving(&first, "t", &mut produced);

    let (code, stderr) = second_node(
        &data,
        &[
            "--listen",
            "127.0.0.1:0",
            "--admin",
            "127.0.0.1:0",
            "--kafka-listen",
            "127.0.0.1:0",
            "--shard-port-base",
            "0",
        ],
    );
    let line =
        format!("strand-node: data dir {} is in use by another strand-node (pid {})", data.display(), first.child.id());
    assert_refused(code, &stderr, &line);
    assert_still_serving(&first, "t", &mut produced);

    // SIGKILL leaves the lock file behind; the kernel dropped the lock with the process.
    first.child.kill().unwrap();
    first.child.wait().unwrap();
    assert!(data.join("strand.lock").exists());
    let second = Node::start(&data, 1, &[]);
    assert_eq!(second.shard_client(0).read_all("t", 0).len() as u64, produced, "acknowledged records after restart");
}

#[test]
fn a_taken_replication_port_refuses_the_second_cluster_node() {
    let etcd = Etcd::start();
    let dir = tempfile::tempdir().unwrap();
    let replication = free_port().to_string();
    let url = etcd.endpoint();
    let cluster = |id: &'static str| ["--etcd", &url, "--node-id", id, "--lease-ttl-s", "2"].map(str::to_string);
    let mut first_args = cluster("1").to_vec();
    first_args.extend(["--replication-port-base".to_string(), replication.clone()]);
    let first_args: Vec<&str> = first_args.iter().map(String::as_str).collect();
    let first = Node::start(&dir.path().join("n1"), 1, &first_args);

    let mut args = cluster("2").to_vec();
    args.extend(
        [
            "--listen",
            "127.0.0.1:0",
            "--admin",
            "127.0.0.1:0",
            "--kafka-listen",
            "127.0.0.1:0",
            "--shard-port-base",
            "0",
        ]
        .map(str::to_string),
    );
    args.extend(["--replication-port-base".to_string(), replication.clone()]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let (code, stderr) = second_node(&dir.path().join("n2"), &args);
    let line =
        format!("strand-node: 127.0.0.1:{replication} (--replication-port-base) is already in use by another process");
    assert_refused(code, &stderr, &line);
    let (status, body) = first.admin_get("/health");
    assert_eq!(status, 200, "{body}");
}

#[test]
fn advertise_with_a_port_is_refused_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let (code, stderr) = second_node(dir.path(), &["--advertise", "127.0.0.1:7100", "--listen", "127.0.0.1:0"]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("--advertise 127.0.0.1") && stderr.contains("has a port"), "{stderr}");
}
