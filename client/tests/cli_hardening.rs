//! The `strand` CLI never leaves holes silently (issue #15), against a real `strand-node`:
//! `produce` stops at the first line not stored (STORAGE_FULL mid-stream, a line larger
//! than the node's frame limit) and says exactly which lines were stored; `consume
//! --offset` past the end says so; a corrupt batch planted in a segment file is reported
//! with its partition and offsets and skipped only with `--skip-corrupt`.

mod common;
mod support;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::cli::{ok, strand};
use strand_wire::batch::{stamp_base_offset, write_crc, Batch, BatchBuilder, Compression, HEADER_LEN};
use support::{cli_binary, node_binary};

/// A node on a data dir the test owns (so it can be stopped, edited and restarted).
struct OwnNode {
    child: Child,
    public: String,
}

impl Drop for OwnNode {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl OwnNode {
    fn start(data_dir: &Path, extra: &[&str]) -> OwnNode {
        let mut child = Command::new(node_binary())
            .arg("--data-dir")
            .arg(data_dir)
            .args([
                "--listen",
                "127.0.0.1:0",
                "--admin",
                "127.0.0.1:0",
                "--kafka-listen",
                "127.0.0.1:0",
                "--shard-port-base",
                "0",
                "--shards",
                "1",
            ])
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn strand-node");
        let stderr = child.stderr.take().expect("stderr piped");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if line.contains("strand-node listening:") {
                    let _ = tx.send(line.clone());
                }
            }
        });
        let line = rx.recv_timeout(Duration::from_secs(60)).expect("node listening");
        let public = line.split_whitespace().find_map(|w| w.strip_prefix("public=")).expect("public=").to_string();
        OwnNode { child, public }
    }

    /// SIGTERM (clean shutdown), waits for the exit.
    fn stop(mut self) {
        let pid = self.child.id().to_string();
        assert!(Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
        assert!(self.child.wait().unwrap().success(), "clean exit on SIGTERM");
    }
}

/// Runs the CLI with `stdin`, killing it (and failing) if it has not exited after `limit`:
/// a hang check, not a performance bound.
fn strand_within(bootstrap: &str, args: &[&str], stdin: Vec<u8>, limit: Duration) -> Output {
    let mut child = Command::new(cli_binary())
        .args(["--bootstrap", bootstrap])
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn strand");
    let mut pipe = child.stdin.take().unwrap();
    // The CLI may stop reading early (that is the point): ignore a broken pipe.
    std::thread::spawn(move || {
        let _ = std::io::Write::write_all(&mut pipe, &stdin);
    });
    let started = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if started.elapsed() > limit {
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            panic!("strand still running after {limit:?}; stderr: {}", String::from_utf8_lossy(&out.stderr));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    child.wait_with_output().unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Every value of `topic` (all partitions), read to the end.
fn consume_all(bootstrap: &str, topic: &str) -> Vec<String> {
    let out = ok(&strand(bootstrap, &["consume", topic, "--from-beginning", "--timeout-ms", "1500"], None));
    out.lines().map(str::to_string).collect()
}

#[test]
fn a_line_larger_than_the_frame_limit_stops_produce_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let node = OwnNode::start(dir.path(), &["--fsync", "never"]);
    ok(&strand(&node.public, &["topic", "create", "big", "--partitions", "1"], None));
    let mut input = b"one\ntwo\n".to_vec();
    input.extend(std::iter::repeat_n(b'x', 9 << 20));
    input.extend_from_slice(b"\nfour\n");
    let out = strand_within(&node.public, &["produce", "big"], input, Duration::from_secs(60));
    let err = stderr(&out);
    assert!(!out.status.success(), "{err}");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "2\n");
    assert!(err.contains("stopped at line 3, not stored"), "{err}");
    assert!(err.contains("exceeds limit"), "{err}");
    assert!(err.contains("lines 1-2 all stored; nothing after it stored"), "{err}");
    assert_eq!(consume_all(&node.public, "big"), ["one", "two"]);
}

#[test]
fn consume_offset_past_the_end_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let node = OwnNode::start(dir.path(), &["--fsync", "never"]);
    ok(&strand(&node.public, &["topic", "create", "short", "--partitions", "1"], None));
    assert_eq!(ok(&strand(&node.public, &["produce", "short"], Some(b"a\nb\nc\n"))), "3\n");
    let past = strand(&node.public, &["consume", "short", "--offset", "10", "--timeout-ms", "300"], None);
    assert!(!past.status.success());
    let err = stderr(&past);
    assert!(err.contains("offset 10 is past the end of short/0 (log end offset 3)"), "{err}");
    // At the end exactly: nothing to print yet, a normal (waiting) read.
    let at_end = strand(&node.public, &["consume", "short", "--offset", "3", "--timeout-ms", "300"], None);
    assert_eq!(ok(&at_end), "");
    assert_eq!(
        ok(&strand(&node.public, &["consume", "short", "--offset", "1", "--timeout-ms", "500"], None)),
        "b\nc\n"
    );
}

/// The segment file of `topic`/0 under `data_dir`.
fn segment_file(data_dir: &Path, topic: &str) -> PathBuf {
    let mut found = Vec::new();
    let mut dirs = vec![data_dir.to_path_buf()];
    while let Some(d) = dirs.pop() {
        for e in std::fs::read_dir(&d).unwrap().map(Result::unwrap) {
            let p = e.path();
            if p.is_dir() {
                dirs.push(p);
            } else if p.extension().is_some_and(|x| x == "log") && p.to_string_lossy().contains(&format!("/{topic}/")) {
                found.push(p);
            }
        }
    }
    assert_eq!(found.len(), 1, "one segment: {found:?}");
    found.remove(0)
}

/// A batch of `count` records flagged lz4 whose content is garbage, with a valid CRC:
/// what an older node stored without looking.
fn garbage_lz4(base_offset: u64, count: u32) -> Vec<u8> {
    let mut b = BatchBuilder::new();
    for _ in 0..count {
        b.push(1_700_000_000_000, None, Some(b"lost"), &[]);
    }
    let mut garbage = 64u32.to_le_bytes().to_vec();
    garbage.extend((0..40u8).map(|i| i.wrapping_mul(37) ^ 0xa5));
    let mut bytes = b.finish_compressed(Compression::Lz4, &garbage).to_vec();
    stamp_base_offset(&mut bytes, base_offset);
    write_crc(&mut bytes);
    assert!(Batch::parse(&bytes).is_ok(), "header and CRC valid");
    assert!(bytes.len() > HEADER_LEN);
    bytes
}

#[test]
fn a_corrupt_batch_on_disk_is_reported_and_skipped_only_when_asked() {
    let dir = tempfile::tempdir().unwrap();
    let node = OwnNode::start(dir.path(), &["--fsync", "always"]);
    ok(&strand(&node.public, &["topic", "create", "old", "--partitions", "1"], None));
    assert_eq!(ok(&strand(&node.public, &["produce", "old"], Some(b"a\nb\nc\n"))), "3\n");
    node.stop();
    // Plant, after the valid batches, a garbage lz4 batch (offsets 3-4) and a good one (5).
    let path = segment_file(dir.path(), "old");
    let bytes = std::fs::read(&path).unwrap();
    let mut end = 0;
    while let Ok(b) = Batch::parse(&bytes[end..]) {
        end += b.as_bytes().len();
    }
    let mut good = BatchBuilder::new();
    good.push(1_700_000_000_000, None, Some(b"after"), &[]);
    let mut good = good.finish().to_vec();
    stamp_base_offset(&mut good, 5);
    let mut planted = bytes[..end].to_vec();
    planted.extend_from_slice(&garbage_lz4(3, 2));
    planted.extend_from_slice(&good);
    planted.resize(bytes.len().max(planted.len()), 0);
    std::fs::write(&path, &planted).unwrap();

    let node = OwnNode::start(dir.path(), &["--fsync", "always"]);
    let args = ["consume", "old", "--from-beginning", "--timeout-ms", "1500"];
    let stuck = strand(&node.public, &args, None);
    let err = stderr(&stuck);
    assert!(!stuck.status.success(), "{err}");
    assert_eq!(String::from_utf8_lossy(&stuck.stdout), "a\nb\nc\n", "records before the corrupt batch: {err}");
    assert!(err.contains("corrupt batch in old/0 at offset 3 (next batch at offset 5)"), "{err}");
    assert!(err.contains("--skip-corrupt"), "{err}");

    let skipped = strand(&node.public, &[&args[..], &["--skip-corrupt"]].concat(), None);
    let err = stderr(&skipped);
    assert_eq!(ok(&skipped), "a\nb\nc\nafter\n", "{err}");
    assert!(err.contains("skipped offsets 3..5 (2 records)"), "{err}");
    assert_eq!(err.lines().count(), 1, "one line per skipped range: {err}");
}

/// A size-limited tmpfs, unmounted on drop; `None` (test skipped) where mounting is not permitted.
struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(self.dir.path()).status();
    }
}

fn mount_tmpfs(size: &str) -> Option<Tmpfs> {
    let dir = tempfile::tempdir().ok()?;
    let opt = format!("size={size}");
    let mounted = Command::new("mount").args(["-t", "tmpfs", "-o", &opt, "tmpfs"]).arg(dir.path()).status().ok()?;
    if !mounted.success() {
        println!("SKIP: cannot mount tmpfs (not permitted here)");
        return None;
    }
    Some(Tmpfs { dir })
}

#[test]
fn storage_full_mid_produce_stops_and_names_what_was_stored() {
    let Some(fs) = mount_tmpfs("80m") else { return };
    let config = fs.dir.path().join("strand.toml");
    std::fs::write(&config, "min_free_bytes = 0\n").unwrap();
    let data = fs.dir.path().join("data");
    let node = OwnNode::start(&data, &["--fsync", "never", "--config", config.to_str().unwrap()]);
    ok(&strand(&node.public, &["topic", "create", "full", "--partitions", "1"], None));
    // ~100 MiB of numbered lines: more than the volume holds.
    let lines = 1_000_000u64;
    let input: String = (1..=lines).map(|i| format!("{i:08} {}\n", "y".repeat(90))).collect();
    let out = strand_within(&node.public, &["produce", "full"], input.into_bytes(), Duration::from_secs(300));
    let err = stderr(&out);
    assert!(!out.status.success(), "the volume cannot hold it all: {err}");
    assert!(err.contains("STORAGE_FULL"), "{err}");
    let acked: u64 = String::from_utf8_lossy(&out.stdout).trim().parse().expect("count on stdout");
    // "stopped at line N, not stored: ...; A lines acknowledged, lines 1-(N-1) all stored"
    let first: u64 = err.split("stopped at line ").nth(1).and_then(|s| s.split(',').next()).unwrap().parse().unwrap();
    assert!(first >= 1 && first <= lines, "{err}");
    let mut stored: Vec<u64> =
        consume_all(&node.public, "full").iter().map(|l| l[..8].parse::<u64>().unwrap()).collect();
    stored.sort_unstable();
    assert_eq!(stored.len() as u64, acked, "every acknowledged line is stored, nothing else: {err}");
    let prefix: Vec<u64> = (1..first).collect();
    assert_eq!(&stored[..prefix.len()], &prefix[..], "lines 1..{first} all stored");
    let after: Vec<u64> = stored[prefix.len()..].to_vec();
    if after.is_empty() {
        assert!(err.contains("nothing after it stored"), "{err}");
    } else {
        // Lines stored after the gap are named, not left silently.
        assert!(err.contains(&format!("{} later lines were stored too", after.len())), "{err}: {after:?}");
    }
}
