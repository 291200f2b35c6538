//! Storage faults injected while the node is stopped (and a full disk while it runs), each
//! with its expected outcome (DESIGN §4):
//! - torn or corrupt tail of the active segment → restart, the log is an exact prefix (only
//!   the damaged batch is cut), a "truncating torn tail" log line, appends continue after it;
//! - corrupt, truncated, deleted or plausible-but-wrong `.index` files → restart, all data
//!   served correctly (the index is rebuilt or refused, never trusted into wrong answers);
//! - a corrupt closed segment → a clear refusal (`CORRUPT_STORAGE` for reads past the damage,
//!   or a startup error), never bytes that fail their CRC, never wrong records;
//! - a full disk (tmpfs mounted by the test; skipped with a reason if mount is not
//!   permitted) → `STORAGE_FULL`, reads keep working, a restart on the full disk works, and
//!   appends resume once space is freed.
//!
//! Never a panic: every node's stderr is checked.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use strand_reliability::client::StoredRecord;
use strand_reliability::ledger::record_value;
use strand_reliability::node::StartOutcome;
use strand_reliability::{HarnessError, Ledger, NodeProcess, WireClient};
use strand_wire::batch::{Batch, BatchHeader};
use strand_wire::ErrorCode;

const TOPIC: &str = "f";
const TIMEOUT: Duration = Duration::from_secs(10);
/// 60 batches of 3 records of ~230 bytes: about 42 KB, so three or more 16 KiB segments.
const BATCHES: u64 = 60;
const RECORDS_PER_BATCH: u64 = 3;
const NODE_ARGS: &[&str] = &["--shards", "1", "--fsync", "always"];

/// A stopped node's data dir holding a known log.
struct Seeded {
    dir: tempfile::TempDir,
    config: String,
    /// Value at each offset.
    values: Vec<Vec<u8>>,
}

enum Stop {
    Kill,
    Term,
}

impl Seeded {
    fn new(stop: Stop) -> Seeded {
        let dir = tempfile::tempdir().expect("temp dir");
        let config = dir.path().join("strand.toml");
        std::fs::write(&config, "segment_bytes = 16384\nmin_free_bytes = 0\n").expect("config");
        let config = config.to_str().expect("utf-8 path").to_string();
        let data = dir.path().join("data");
        let mut node = NodeProcess::start(&data, &with_config(&config)).expect("start");
        let mut client = WireClient::connect(node.public, TIMEOUT).expect("connect");
        client.create_topic(TOPIC, 1).expect("topic");
        let mut values = Vec::new();
        for b in 0..BATCHES {
            let batch: Vec<Vec<u8>> =
                (0..RECORDS_PER_BATCH).map(|r| record_value(0, b * RECORDS_PER_BATCH + r, 200)).collect();
            let offset = client.produce_values(TOPIC, 0, &batch).expect("produce").expect("accepted");
            assert_eq!(offset, values.len() as u64);
            values.extend(batch);
        }
        match stop {
            Stop::Kill => drop(node.kill().expect("kill")),
            Stop::Term => assert!(node.terminate(TIMEOUT).expect("SIGTERM").success()),
        }
        assert_eq!(node.panic_line(), None);
        let seeded = Seeded { dir, config, values };
        assert!(seeded.segments().len() >= 3, "expected several segments, got {:?}", seeded.segments());
        seeded
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// `(base offset, .log path)` of every segment, ascending.
    fn segments(&self) -> Vec<(u64, PathBuf)> {
        let part = self.data().join("topics").join(TOPIC).join("0");
        let mut segs: Vec<(u64, PathBuf)> = std::fs::read_dir(&part)
            .expect("partition dir")
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "log"))
            .filter_map(|p| Some((p.file_stem()?.to_str()?.parse().ok()?, p)))
            .collect();
        segs.sort();
        segs
    }

    fn restart(&self) -> NodeProcess {
        NodeProcess::start(&self.data(), &with_config(&self.config)).expect("restart after fault")
    }
}

fn with_config(config: &str) -> Vec<&str> {
    let mut args = NODE_ARGS.to_vec();
    args.extend(["--config", config]);
    args
}

/// Headers of the valid batches at the start of a segment file, with their positions.
fn batches_in(path: &Path) -> Vec<(u64, BatchHeader)> {
    let bytes = std::fs::read(path).expect("read segment");
    let mut pos = 0usize;
    let mut out = Vec::new();
    while let Ok(batch) = Batch::parse(&bytes[pos..]) {
        out.push((pos as u64, *batch.header()));
        pos += batch.as_bytes().len();
    }
    out
}

fn read_all(node: &NodeProcess) -> Result<Vec<StoredRecord>, HarnessError> {
    WireClient::connect(node.public, TIMEOUT)?.read_partition(TOPIC, 0, 0)
}

fn values_of(records: &[StoredRecord]) -> Vec<Vec<u8>> {
    records
        .iter()
        .enumerate()
        .map(|(i, r)| {
            assert_eq!(r.offset, i as u64, "offsets contiguous from 0");
            r.value.clone()
        })
        .collect()
}

fn flip(path: &Path, pos: u64) {
    let mut bytes = std::fs::read(path).expect("read");
    bytes[pos as usize] ^= 0x5a;
    std::fs::write(path, bytes).expect("write");
}

fn assert_healthy(node: &mut NodeProcess) {
    assert!(node.is_running(), "node exited; log:\n{}", node.log_tail(20));
    assert_eq!(node.panic_line(), None, "node panicked");
}

/// After a damaged last batch, the log must be exactly everything before it, and appends continue.
fn check_tail_cut(seeded: &Seeded, mut node: NodeProcess, cut_records: usize) {
    let kept = seeded.values.len() - cut_records;
    let stored = values_of(&read_all(&node).expect("read after recovery"));
    assert_eq!(stored.len(), kept, "recovered log length");
    assert_eq!(stored, seeded.values[..kept], "recovered log is an exact prefix");
    assert!(node.log_contains("truncating torn tail"), "no log line about the cut:\n{}", node.log_tail(20));
    let mut client = WireClient::connect(node.public, TIMEOUT).expect("connect");
    let again = client.produce_values(TOPIC, 0, &[b"after the cut".to_vec()]).expect("produce").expect("accepted");
    assert_eq!(again, kept as u64, "the next append takes the first cut offset");
    assert_healthy(&mut node);
}

#[test]
fn torn_active_segment_tail_is_cut_to_a_prefix() {
    let seeded = Seeded::new(Stop::Kill);
    let (_, active) = seeded.segments().pop().expect("active segment");
    let batches = batches_in(&active);
    let (pos, last) = *batches.last().expect("batches in the active segment");
    let logical_end = pos + u64::from(last.batch_len);
    let file = std::fs::OpenOptions::new().write(true).open(&active).expect("open");
    file.set_len(logical_end - 7).expect("truncate mid-batch");
    check_tail_cut(&seeded, seeded.restart(), last.record_count as usize);
}

#[test]
fn corrupt_bytes_in_the_active_tail_are_cut_to_a_prefix() {
    let seeded = Seeded::new(Stop::Kill);
    let (_, active) = seeded.segments().pop().expect("active segment");
    let (pos, last) = *batches_in(&active).last().expect("batches");
    flip(&active, pos + u64::from(last.batch_len) - 20);
    check_tail_cut(&seeded, seeded.restart(), last.record_count as usize);
}

#[test]
fn damaged_index_files_never_cause_wrong_reads() {
    type Fault = fn(&Path);
    let faults: [(&str, Fault); 4] = [
        ("delete", |p| std::fs::remove_file(p).expect("delete index")),
        ("truncate to an odd length", |p| {
            let len = std::fs::metadata(p).expect("index").len();
            std::fs::OpenOptions::new().write(true).open(p).expect("open").set_len(len - 3).expect("truncate");
        }),
        ("garbage bytes", |p| {
            let len = std::fs::metadata(p).expect("index").len() as usize;
            std::fs::write(p, (0..len).map(|i| (i * 37 % 251) as u8).collect::<Vec<u8>>()).expect("write");
        }),
        ("plausible but shifted positions", |p| {
            let mut bytes = std::fs::read(p).expect("index");
            // Entries are (relative offset u32, position u32) little-endian: move each position by +1.
            for entry in bytes.chunks_exact_mut(8) {
                let pos = u32::from_le_bytes([entry[4], entry[5], entry[6], entry[7]]) + 1;
                entry[4..].copy_from_slice(&pos.to_le_bytes());
            }
            std::fs::write(p, bytes).expect("write");
        }),
    ];
    for (name, fault) in faults {
        let seeded = Seeded::new(Stop::Term);
        let indexes: Vec<PathBuf> = seeded.segments().iter().map(|(_, log)| log.with_extension("index")).collect();
        let damaged: Vec<&PathBuf> =
            indexes.iter().filter(|p| std::fs::metadata(p).is_ok_and(|m| m.len() >= 16)).collect();
        assert!(!damaged.is_empty(), "{name}: no index file with entries to damage: {indexes:?}");
        for path in &damaged {
            fault(path);
        }
        let mut node = seeded.restart();
        let stored = read_all(&node).unwrap_or_else(|e| panic!("{name}: read after restart: {e}"));
        assert_eq!(values_of(&stored), seeded.values, "{name}: every record served intact");
        check_point_reads(&node, &seeded.values, name);
        assert_healthy(&mut node);
        println!("index fault {name:?} on {} index files: all {} records served", damaged.len(), stored.len());
    }
}

/// Fetches at every 7th offset return the record at that offset (exercises index lookups).
fn check_point_reads(node: &NodeProcess, values: &[Vec<u8>], fault: &str) {
    let mut client = WireClient::connect(node.public, TIMEOUT).expect("connect");
    for offset in (0..values.len() as u64).step_by(7) {
        let (_, bytes) = client.fetch(TOPIC, 0, offset, 0).unwrap_or_else(|e| panic!("{fault}: fetch {offset}: {e}"));
        let mut records = Vec::new();
        strand_reliability::client::decode_batches(0, offset, &bytes, &mut records)
            .unwrap_or_else(|e| panic!("{fault}: fetch {offset}: {e}"));
        assert_eq!(records.first().map(|r| (r.offset, &r.value)), Some((offset, &values[offset as usize])), "{fault}");
    }
}

#[test]
fn corrupt_closed_segment_after_a_crash_is_refused_not_served() {
    corrupt_closed_segment_is_refused(Stop::Kill);
}

#[test]
fn corrupt_closed_segment_after_a_clean_shutdown_is_refused_not_served() {
    corrupt_closed_segment_is_refused(Stop::Term);
}

/// Flips a byte inside a batch in the middle of the first (closed) segment, restarts, and
/// expects a refusal: a startup error, or CORRUPT_STORAGE for reads reaching the damage.
fn corrupt_closed_segment_is_refused(stop: Stop) {
    let seeded = Seeded::new(stop);
    let (_, first) = seeded.segments().into_iter().next().expect("first segment");
    let batches = batches_in(&first);
    let (pos, victim) = batches[batches.len() / 2];
    flip(&first, pos + u64::from(victim.batch_len) / 2 + 30);
    let good_before = victim.base_offset as usize;
    match NodeProcess::try_start(&seeded.data(), &with_config(&seeded.config), TIMEOUT).expect("start attempt") {
        StartOutcome::Exited { status, log } => {
            assert!(!status.success(), "node exited 0 on a corrupt segment");
            assert!(log.iter().all(|l| !l.contains("panicked")), "panic at startup:\n{}", log.join("\n"));
            assert!(log.iter().any(|l| l.contains("corrupt")), "exit without a clear reason:\n{}", log.join("\n"));
        }
        StartOutcome::Serving(mut node) => {
            check_corrupt_segment_refused(&node, &seeded.values, good_before);
            assert_healthy(&mut node);
        }
    }
}

/// Reads before the damaged batch succeed; a read reaching it is refused with CORRUPT_STORAGE.
fn check_corrupt_segment_refused(node: &NodeProcess, values: &[Vec<u8>], good_before: usize) {
    let mut client = WireClient::connect(node.public, TIMEOUT).expect("connect");
    let mut served = Vec::new();
    let mut offset = 0u64;
    let refusal = loop {
        match client.fetch(TOPIC, 0, offset, 0) {
            Ok((p, _)) if p.error != ErrorCode::None => break p.error,
            Ok((_, bytes)) if bytes.is_empty() => panic!("the whole log was served: the corruption went unnoticed"),
            Ok((_, bytes)) => {
                offset = strand_reliability::client::decode_batches(0, offset, &bytes, &mut served)
                    .unwrap_or_else(|e| panic!("node served bytes that fail validation (silently bad): {e}"));
            }
            Err(e) => break e.server_code().unwrap_or_else(|| panic!("fetch failed without an error code: {e}")),
        }
    };
    assert_eq!(refusal, ErrorCode::CorruptStorage, "reads reaching the damaged batch are refused clearly");
    assert!(served.len() <= good_before, "served {} records past the damage at {good_before}", served.len());
    assert_eq!(values_of(&served), values[..served.len()], "what is served before the damage is intact");
    assert!(node.log_contains("corrupt"), "no log line names the corrupt segment:\n{}", node.log_tail(20));
}

/// A tmpfs of `size` mounted on a fresh dir, unmounted on drop.
struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    /// `None` (with the reason printed) when this environment does not allow mounting.
    fn mount(size: &str) -> Option<Tmpfs> {
        let dir = tempfile::tempdir().expect("temp dir");
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "strand-reliability"])
            .arg(dir.path())
            .output();
        match out {
            Ok(o) if o.status.success() => Some(Tmpfs { dir }),
            Ok(o) => {
                println!("SKIP full-disk test: mount -t tmpfs failed: {}", String::from_utf8_lossy(&o.stderr).trim());
                None
            }
            Err(e) => {
                println!("SKIP full-disk test: cannot run mount: {e}");
                None
            }
        }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Bytes available to unprivileged writers, per `df`.
    fn available(&self) -> u64 {
        let out = Command::new("df").args(["-B1", "--output=avail"]).arg(self.path()).output().expect("df");
        String::from_utf8_lossy(&out.stdout).lines().nth(1).and_then(|l| l.trim().parse().ok()).expect("df output")
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(self.dir.path()).status();
    }
}

/// Writes `path` until the filesystem refuses; the bytes written.
fn fill(path: &Path) -> u64 {
    use std::io::Write;
    let mut file = std::fs::File::create(path).expect("filler");
    let chunk = vec![0xeeu8; 64 * 1024];
    let mut written = 0u64;
    loop {
        match file.write(&chunk) {
            Ok(0) | Err(_) => break,
            Ok(n) => written += n as u64,
        }
    }
    let _ = file.sync_all();
    written
}

struct Writer {
    client: WireClient,
    ledger: Ledger,
    seq: u64,
}

impl Writer {
    /// Produces one batch of 4 records of `len` bytes; the partition's error code.
    fn produce(&mut self, len: usize) -> ErrorCode {
        let values: Vec<Vec<u8>> = (0..4).map(|i| record_value(0, self.seq + i, len)).collect();
        self.seq += 4;
        self.ledger.record_sent(0, &values);
        match self.client.produce_values(TOPIC, 0, &values).expect("produce round trip") {
            Ok(offset) => {
                self.ledger.record_ack(0, offset, &values).expect("no offset reuse");
                ErrorCode::None
            }
            Err(code) => code,
        }
    }

    /// Produces until the node answers something other than success; that code.
    fn produce_until_refused(&mut self, len: usize, attempts: usize) -> ErrorCode {
        (0..attempts).map(|_| self.produce(len)).find(|&c| c != ErrorCode::None).unwrap_or(ErrorCode::None)
    }

    fn verify(&mut self, node: &NodeProcess) -> u64 {
        let stored = read_all(node).expect("reads work on a full disk");
        self.ledger.verify(0, 0, &stored).expect("every acknowledged record intact").acked_checked
    }
}

fn start_on(fs: &Tmpfs, config: &str) -> (NodeProcess, WireClient) {
    let path = fs.path().join("strand.toml");
    std::fs::write(&path, config).expect("config");
    let data = fs.path().join("data");
    let node = NodeProcess::start(&data, &["--shards", "1", "--config", path.to_str().expect("utf-8")]).expect("start");
    let client = WireClient::connect(node.public, TIMEOUT).expect("connect");
    (node, client)
}

#[test]
fn full_disk_refuses_appends_keeps_reads_and_recovers() {
    let Some(fs) = Tmpfs::mount("24m") else { return };
    let config = "segment_bytes = 1048576\nmin_free_bytes = 0\n";
    let (mut node, mut client) = start_on(&fs, config);
    client.create_topic(TOPIC, 1).expect("topic");
    let mut w = Writer { client, ledger: Ledger::new(1), seq: 0 };
    for _ in 0..20 {
        assert_eq!(w.produce(500), ErrorCode::None);
    }
    let filler = fs.path().join("filler");
    fill(&filler);
    assert_eq!(w.produce_until_refused(2000, 200), ErrorCode::StorageFull, "appends on a full disk");
    let acked = w.verify(&node);
    assert_healthy(&mut node);

    // Restart on the full disk: recovery must not need free space.
    node.kill().expect("kill");
    let restart = Instant::now();
    let (mut node, client) = start_on(&fs, config);
    println!("restart on a full disk took {:?}", restart.elapsed());
    w.client = client;
    assert_eq!(w.verify(&node), acked);
    assert_eq!(w.produce(2000), ErrorCode::StorageFull, "still full after restart");

    // Free space: appends resume.
    std::fs::remove_file(&filler).expect("remove filler");
    let deadline = Instant::now() + TIMEOUT;
    while w.produce(2000) != ErrorCode::None {
        assert!(Instant::now() < deadline, "appends did not resume after space was freed");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(w.verify(&node) > acked);
    assert_healthy(&mut node);
}

#[test]
fn free_space_guard_refuses_before_the_device_is_full() {
    let Some(fs) = Tmpfs::mount("24m") else { return };
    let guard_bytes = 8u64 << 20;
    let config = format!("segment_bytes = 1048576\nmin_free_bytes = {guard_bytes}\n");
    let (mut node, mut client) = start_on(&fs, &config);
    client.create_topic(TOPIC, 1).expect("topic");
    let mut w = Writer { client, ledger: Ledger::new(1), seq: 0 };
    assert_eq!(w.produce_until_refused(16 * 1024, 2000), ErrorCode::StorageFull, "the guard refuses appends");
    let available = fs.available();
    assert!(available > guard_bytes / 2, "refused only at {available} bytes free: the guard did not act early");
    assert!(w.ledger.acked_count() > 0, "nothing was accepted before the guard");
    w.verify(&node);
    assert_healthy(&mut node);
    println!("guard refused appends with {available} bytes free (guard {guard_bytes})");
}
