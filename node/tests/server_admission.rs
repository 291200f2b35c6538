//! Admission before commitment and disk reservation that scales (issue #15), against the
//! real `strand-node` binary: a topic is persisted only once its partitions are open, an
//! open-files budget derived from `RLIMIT_NOFILE` refuses what would exhaust it, client
//! topic configs are bounded, preallocation stays small for small partitions, and a
//! `min_free_bytes` the volume cannot satisfy is warned about and every refusal logged.
//!
//! `STRAND_NODE_BIN` selects another binary (e.g. an older build, to see these fail).

mod common;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{batch, batch1, Client};
use strand_wire::msg::{Acks, Response};
use strand_wire::msg::{CreateTopicRequest, ProducePartition, ProduceRequest, Request, ResponseHeader};
use strand_wire::ErrorCode;

/// A node process whose stderr lines are kept for inspection.
struct Proc {
    child: Child,
    public: SocketAddr,
    lines: Arc<Mutex<Vec<String>>>,
}

impl Proc {
    /// Starts the node on `dir` with one shard, under `RLIMIT_NOFILE = nofile` if given.
    fn start(dir: &Path, nofile: Option<u64>, extra: &[&str]) -> Proc {
        let bin = std::env::var("STRAND_NODE_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_strand-node").to_string());
        let mut command = match nofile {
            Some(n) => {
                let mut c = Command::new("prlimit");
                c.arg(format!("--nofile={n}:{n}")).arg("--").arg(&bin);
                c
            }
            None => Command::new(&bin),
        };
        let mut child = command
            .args([
                "--data-dir",
                dir.to_str().unwrap(),
                "--listen",
                "127.0.0.1:0",
                "--admin",
                "127.0.0.1:0",
                "--kafka-listen",
                "127.0.0.1:0",
            ])
            .args(["--shards", "1", "--shard-port-base", "0"])
            .args(extra)
            .env("RUST_LOG", "info,glommio=error")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn strand-node");
        let lines = Arc::new(Mutex::new(Vec::new()));
        let stderr = child.stderr.take().unwrap();
        let sink = lines.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                eprintln!("[node] {line}");
                sink.lock().unwrap().push(line);
            }
        });
        let mut node = Proc { child, public: "127.0.0.1:1".parse().unwrap(), lines };
        let line = node.wait_for("strand-node listening:", Duration::from_secs(30));
        let public = line.split_whitespace().find_map(|w| w.strip_prefix("public=")).unwrap();
        node.public = public.parse().unwrap();
        node
    }

    /// The first stderr line containing `needle`, waiting up to `timeout`; panics if the
    /// node exits or stays silent.
    fn wait_for(&mut self, needle: &str, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(line) = self.lines.lock().unwrap().iter().find(|l| l.contains(needle)) {
                return line.clone();
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                std::thread::sleep(Duration::from_millis(200));
                panic!("node exited ({status}) before logging {needle:?}:\n{}", self.log());
            }
            assert!(Instant::now() < deadline, "node did not log {needle:?} in {timeout:?}:\n{}", self.log());
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn count(&self, needle: &str) -> usize {
        self.lines.lock().unwrap().iter().filter(|l| l.contains(needle)).count()
    }

    fn log(&self) -> String {
        self.lines.lock().unwrap().join("\n")
    }

    fn client(&self) -> Client {
        Client::connect(self.public)
    }

    /// SIGTERM and wait for a clean exit.
    fn stop(mut self) {
        // SAFETY: kill(2) on our own child's pid.
        unsafe { libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(30);
        while self.child.try_wait().unwrap().is_none() {
            assert!(Instant::now() < deadline, "node did not stop");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn create(c: &mut Client, name: &str, partitions: u32, configs: &[(&str, &str)]) -> ResponseHeader {
    let configs = configs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    let request =
        Request::CreateTopic(CreateTopicRequest { name: name.into(), partitions, replication_factor: 1, configs });
    c.call(request, &[]).0
}

/// A produce's partition-level error code (the header must be clean).
fn produce_code(c: &mut Client, topic: &str, partition: u32, bytes: &[u8]) -> ErrorCode {
    let request = Request::Produce(ProduceRequest {
        acks: Acks::Leader,
        timeout_ms: 10_000,
        partitions: vec![ProducePartition { topic: topic.into(), partition, bytes_len: bytes.len() as u32 }],
    });
    let (header, _) = c.call(request, bytes);
    assert_eq!(header.error, ErrorCode::None, "{:?}", header.message);
    match header.response {
        Response::Produce(r) => r.partitions[0].error,
        other => panic!("not a produce response: {other:?}"),
    }
}

fn topics_json(dir: &Path) -> String {
    std::fs::read_to_string(dir.join("topics.json")).unwrap_or_default()
}

/// Bytes allocated on disk (`du`) to the segment files under `dir`.
fn allocated_log_bytes(dir: &Path) -> u64 {
    let mut total = 0;
    let mut stack: Vec<PathBuf> = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap().map(Result::unwrap) {
            let meta = entry.metadata().unwrap();
            if meta.is_dir() {
                stack.push(entry.path());
            } else if entry.file_name().to_string_lossy().ends_with(".log") {
                total += meta.blocks() * 512;
            }
        }
    }
    total
}

/// Open-files limit for the fd tests: above the default `open_files_reserved` (1024) by a
/// few hundred descriptors, so a topic of 1000 partitions (2000 fds) exhausts it for real.
const NOFILE: u64 = 1400;

/// Probe row: `topic create wide --partitions 10000` under `ulimit -n 20000`, scaled down.
/// Before: STORAGE_ERROR "Too many open files", the topic stays in topics.json and the node
/// cannot restart. After: refused up front with the numbers, nothing persisted, the node
/// serves a topic that fits and restarts.
#[test]
fn topic_past_the_open_files_budget_is_refused_and_the_node_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let node = Proc::start(dir.path(), Some(NOFILE), &[]);
    let mut c = node.client();
    let refused = create(&mut c, "wide", 1000, &[]);
    assert_eq!(refused.error, ErrorCode::InvalidConfig, "{:?}", refused.message);
    let message = refused.message.unwrap_or_default();
    assert!(message.contains("open files") && message.contains(&format!("RLIMIT_NOFILE={NOFILE}")), "{message}");
    assert!(message.contains("2000"), "the message names what the topic needs: {message}");
    assert!(!topics_json(dir.path()).contains("\"wide\""), "a refused topic is not persisted");
    assert!(!dir.path().join("topics/wide").exists(), "nothing of a refused topic stays on disk");

    assert_eq!(create(&mut c, "narrow", 10, &[]).error, ErrorCode::None);
    assert_eq!(produce_code(&mut c, "narrow", 9, &batch1(b"kept")), ErrorCode::None);
    drop(c);
    node.stop();

    let node = Proc::start(dir.path(), Some(NOFILE), &[]);
    let mut c = node.client();
    assert_eq!(c.read_all("narrow", 9), vec![b"kept".to_vec()]);
    assert_eq!(produce_code(&mut c, "wide", 0, &batch1(b"x")), ErrorCode::UnknownTopic);
}

/// A create whose partitions cannot all be opened (here: a partition directory path is
/// taken by a file) is rolled back: not in topics.json, its directories removed, the name
/// free again, and the node restarts. Before: the topic stayed registered and the restart
/// failed opening it.
#[test]
fn create_that_cannot_open_its_partitions_is_rolled_back() {
    let dir = tempfile::tempdir().unwrap();
    let node = Proc::start(dir.path(), None, &[]);
    std::fs::create_dir_all(dir.path().join("topics/blocked")).unwrap();
    std::fs::write(dir.path().join("topics/blocked/3"), b"not a directory").unwrap();
    let mut c = node.client();
    let refused = create(&mut c, "blocked", 6, &[]);
    assert_eq!(refused.error, ErrorCode::StorageError, "{:?}", refused.message);
    assert!(refused.message.unwrap_or_default().contains("blocked"));
    assert!(!topics_json(dir.path()).contains("\"blocked\""), "not persisted");
    assert!(!dir.path().join("topics/blocked").exists(), "opened partitions removed");
    assert_eq!(produce_code(&mut c, "blocked", 0, &batch1(b"x")), ErrorCode::UnknownTopic);
    assert_eq!(create(&mut c, "blocked", 6, &[]).error, ErrorCode::None, "the name is free again");
    assert_eq!(produce_code(&mut c, "blocked", 3, &batch1(b"y")), ErrorCode::None);
    drop(c);
    node.stop();
    let node = Proc::start(dir.path(), None, &[]);
    assert_eq!(node.client().read_all("blocked", 3), vec![b"y".to_vec()]);
}

/// Probe row: client-set `segment_bytes=1`. Before: accepted (then every batch rolled a
/// segment that kept its 32 MiB reservation). After: INVALID_CONFIG naming key, value and
/// bound; at the bound, rolled segments keep no reservation.
#[test]
fn segment_bytes_is_bounded_and_rolled_segments_keep_no_reservation() {
    let dir = tempfile::tempdir().unwrap();
    let node = Proc::start(dir.path(), None, &[]);
    let mut c = node.client();
    let refused = create(&mut c, "tiny", 1, &[("segment_bytes", "1")]);
    assert_eq!(refused.error, ErrorCode::InvalidConfig, "{:?}", refused.message);
    let message = refused.message.unwrap_or_default();
    assert!(message.contains("segment_bytes=1 ") && message.contains("[1048576,"), "{message}");
    assert!(!topics_json(dir.path()).contains("\"tiny\""));
    let refused = create(&mut c, "quick", 1, &[("segment_ms", "0")]);
    assert_eq!(refused.error, ErrorCode::InvalidConfig, "{:?}", refused.message);

    assert_eq!(create(&mut c, "small", 1, &[("segment_bytes", "1048576")]).error, ErrorCode::None);
    let value = vec![b'v'; 10_000];
    for _ in 0..400 {
        assert_eq!(produce_code(&mut c, "small", 0, &batch(&[&value], 1_700_000_000_000)), ErrorCode::None);
    }
    let segments = std::fs::read_dir(dir.path().join("topics/small/0"))
        .unwrap()
        .filter(|e| e.as_ref().unwrap().file_name().to_string_lossy().ends_with(".log"))
        .count();
    assert!(segments >= 3, "the test must roll segments: {segments}");
    let allocated = allocated_log_bytes(&dir.path().join("topics/small"));
    let written = 400 * 10_000;
    // The data, plus at most one segment's worth of reservation in the active segment.
    assert!(allocated <= written + (1 << 20) + (256 << 10), "{allocated} bytes allocated for {written} written");

    // A busy partition's reservation grows; closing its segment (as a roll or a clean
    // stop does) cuts it to the data, in buffered mode too (reserved past EOF).
    assert_eq!(create(&mut c, "busy", 1, &[]).error, ErrorCode::None);
    for _ in 0..400 {
        assert_eq!(produce_code(&mut c, "busy", 0, &batch(&[&value], 1_700_000_000_000)), ErrorCode::None);
    }
    let busy = dir.path().join("topics/busy");
    assert!(allocated_log_bytes(&busy) > written + (64 << 10), "the reservation grew with the append rate");
    drop(c);
    node.stop();
    let allocated = allocated_log_bytes(&busy);
    assert!(allocated <= written + (64 << 10), "closed segment keeps {allocated} bytes for {written} written");
}

/// Probe row: 50 partitions × one 58-byte record. Before: 32 MiB reserved per partition
/// (1.6 GB). After: a small reservation each, in both IO modes.
#[test]
fn many_small_partitions_reserve_little_disk() {
    for mode in ["buffered", "direct"] {
        let dir = tempfile::tempdir().unwrap();
        let node = Proc::start(dir.path(), None, &["--io-mode", mode]);
        let mut c = node.client();
        assert_eq!(create(&mut c, "many", 50, &[]).error, ErrorCode::None);
        for p in 0..50 {
            assert_eq!(produce_code(&mut c, "many", p, &batch1(b"x")), ErrorCode::None);
        }
        let allocated = allocated_log_bytes(&dir.path().join("topics/many"));
        assert!(allocated <= 50 * (256 << 10), "{mode}: {allocated} bytes allocated for 50 one-record partitions");
        assert!(allocated > 0, "{mode}: the records are on disk");
    }
}

/// Probe row: `min_free_bytes` larger than the volume. Before: no warning at start, and
/// every append refused with no log line. After: a start-up warning naming the numbers;
/// refusals logged with free, reserved and the limit, at most once per interval.
#[test]
fn min_free_above_the_volume_is_warned_and_refusals_are_logged_once_per_interval() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("strand.toml");
    std::fs::write(&config, format!("min_free_bytes = {}\n", 1u64 << 60)).unwrap();
    let data = dir.path().join("data");
    let mut node = Proc::start(&data, None, &["--config", config.to_str().unwrap()]);
    let warning = node.wait_for("exceeds the volume size", Duration::from_secs(5));
    assert!(warning.contains(&format!("min_free_bytes={}", 1u64 << 60)), "{warning}");
    let mut c = node.client();
    assert_eq!(create(&mut c, "full", 1, &[]).error, ErrorCode::None);
    for _ in 0..5 {
        assert_eq!(produce_code(&mut c, "full", 0, &batch1(b"x")), ErrorCode::StorageFull);
    }
    let line = node.wait_for("appends refused", Duration::from_secs(5));
    assert!(line.contains("bytes free") && line.contains("reserved") && line.contains("min_free_bytes="), "{line}");
    assert_eq!(node.count("appends refused"), 1, "rate-limited to one line per interval:\n{}", node.log());
}

/// A registry that no longer fits the open-files limit (the node restarted under a lower
/// `ulimit -n`) must not brick the node. Before: the start failed with EMFILE until
/// topics.json was edited by hand. After: the node starts, logs the topic it left closed
/// with the numbers and the way out, serves the rest, and the topic can be deleted.
#[test]
fn node_starts_when_a_registered_topic_exceeds_the_open_files_limit() {
    let dir = tempfile::tempdir().unwrap();
    let node = Proc::start(dir.path(), None, &[]);
    let mut c = node.client();
    assert_eq!(create(&mut c, "kept", 2, &[]).error, ErrorCode::None);
    assert_eq!(produce_code(&mut c, "kept", 1, &batch1(b"served")), ErrorCode::None);
    assert_eq!(create(&mut c, "huge", 1000, &[]).error, ErrorCode::None);
    drop(c);
    node.stop();

    let mut node = Proc::start(dir.path(), Some(NOFILE), &[]);
    let line = node.wait_for("NOT OPENED", Duration::from_secs(5));
    assert!(line.contains("huge") && line.contains("2000") && line.contains("ulimit -n"), "{line}");
    let mut c = node.client();
    assert_eq!(c.read_all("kept", 1), vec![b"served".to_vec()]);
    assert_eq!(produce_code(&mut c, "huge", 0, &batch1(b"x")), ErrorCode::UnknownTopic);
    let (deleted, _) = c.call(Request::DeleteTopic(strand_wire::msg::DeleteTopicRequest { name: "huge".into() }), &[]);
    assert_eq!(deleted.error, ErrorCode::None, "{:?}", deleted.message);
    assert!(!topics_json(dir.path()).contains("\"huge\""));
    assert!(!dir.path().join("topics/huge").exists());
}
