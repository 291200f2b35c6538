//! The data dir's format marker: a node marks a fresh data dir with `strand.format`, and
//! refuses (exit 78, one clear line) a dir that holds topics written in the old record
//! batch format (v1: 52-byte little-endian headers, no marker) instead of letting
//! recovery take its segments for a torn tail and truncate them.

mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::Node;
use strand_wire::ErrorCode;

/// How long a refused start may take (it happens before any data is opened).
const REFUSAL_TIMEOUT: Duration = Duration::from_secs(20);

/// One batch in the old v1 format, as an older node stored it: a 52-byte little-endian
/// header (magic 1, CRC-32/IEEE of magic, attributes and bytes 18..) and one record.
fn v1_batch(base_offset: u64, value: &[u8]) -> Vec<u8> {
    let mut record = vec![0u8, 0, 1]; // offset delta 0, timestamp delta 0, null key
    record.push((value.len() as u8) << 1);
    record.extend_from_slice(value);
    record.push(0); // no headers
    let len = 52 + record.len();
    let mut b = Vec::with_capacity(len);
    b.extend_from_slice(&base_offset.to_le_bytes());
    b.extend_from_slice(&(len as u32).to_le_bytes());
    b.extend_from_slice(&[1, 0]); // magic 1, attributes 0
    b.extend_from_slice(&[0; 4]); // crc, below
    b.extend_from_slice(&1u32.to_le_bytes()); // record count
    b.extend_from_slice(&1_700_000_000_000i64.to_le_bytes());
    b.extend_from_slice(&1_700_000_000_000i64.to_le_bytes());
    b.extend_from_slice(&[0; 14]); // producer id, epoch, base sequence
    b.extend_from_slice(&record);
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(&b[12..14]);
    hasher.update(&b[18..]);
    let crc = hasher.finalize();
    b[14..18].copy_from_slice(&crc.to_le_bytes());
    b
}

/// Runs `strand-node` on `data_dir`; its exit code and stderr. A node still running after
/// [`REFUSAL_TIMEOUT`] was not refused and fails the test.
fn refused_start(data_dir: &Path) -> (i32, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_strand-node"))
        .args(["--data-dir", data_dir.to_str().unwrap(), "--listen", "127.0.0.1:0", "--admin", "127.0.0.1:0"])
        .args(["--shards", "1", "--shard-port-base", "0"])
        .env("RUST_LOG", "warn,glommio=error")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn strand-node");
    let deadline = Instant::now() + REFUSAL_TIMEOUT;
    while child.try_wait().expect("wait").is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("the node started on an old-format data dir instead of refusing it");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let code = child.wait().expect("wait").code().unwrap_or(-1);
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().expect("piped"), &mut stderr).unwrap();
    (code, stderr)
}

#[test]
fn an_old_format_data_dir_is_refused_and_left_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let partition = data.join("topics/old/0");
    std::fs::create_dir_all(&partition).unwrap();
    let mut segment = v1_batch(0, b"first");
    segment.extend_from_slice(&v1_batch(1, b"second"));
    let segment_path = partition.join("00000000000000000000.log");
    std::fs::write(&segment_path, &segment).unwrap();

    let (code, stderr) = refused_start(&data);
    assert_eq!(code, 78, "exit code; stderr:\n{stderr}");
    let expected = format!(
        "data dir {} holds topics but no strand.format: it was written by an older strand-node (record \
         batch format v1); this node stores format 2 (Kafka record batches) and cannot read it. Start \
         with an empty data dir (move this one away)",
        data.display()
    );
    assert!(stderr.contains(&expected), "stderr:\n{stderr}");
    assert_eq!(std::fs::read(&segment_path).unwrap(), segment, "the old segment is unchanged");
    assert!(!data.join("strand.format").exists(), "an old dir is not marked");

    // A marker naming another version is refused too.
    std::fs::write(data.join("strand.format"), "1\n").unwrap();
    let (code, stderr) = refused_start(&data);
    assert_eq!(code, 78, "exit code; stderr:\n{stderr}");
    assert!(stderr.contains("has data format \"1\" in strand.format"), "stderr:\n{stderr}");
    assert_eq!(std::fs::read(&segment_path).unwrap(), segment, "the old segment is unchanged");
}

#[test]
fn a_fresh_data_dir_is_marked_and_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let node = Node::start(dir.path(), 1, &["--fsync", "always"]);
    assert_eq!(std::fs::read_to_string(dir.path().join("strand.format")).unwrap(), "2\n");
    let mut c = node.client();
    assert_eq!(c.create_topic("t", 1).error, ErrorCode::None);
    assert_eq!(c.produce("t", 0, &common::batch1(b"v")).error, ErrorCode::None);
    drop(c);
    drop(node);
    let node = Node::start(dir.path(), 1, &["--fsync", "always"]);
    let mut c = node.client();
    assert_eq!(c.read_all("t", 0), vec![b"v".to_vec()]);
}
