//! Power loss under acknowledged load: the node's data dir is on a loop-mounted ext4 image
//! ([`LoopFs`]); writers produce and record every acknowledgement; the filesystem is shut
//! down without flushing its journal while they run (a power cut: what ext4 had not written
//! to the device is gone), the node is killed, the image remounted and the node restarted.
//! Then every acknowledged record must be there, at its offset, in order:
//! - one node, `--fsync always`, in both IO modes;
//! - a three-node chain with `acks=all` and `--fsync always`, all data dirs on one image, so
//!   every node loses power at the same instant (etcd keeps running: it is the control plane,
//!   not a storage node);
//! - and the test that proves the others can fail: with `--fsync never` acknowledged records
//!   are lost, and the checker says so.
//!
//! Needs root and loop devices; without them each test prints why it skips. A missing tool
//! is a failure (`./test.sh` installs them).

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rand::Rng;
use strand_reliability::cluster::{verify_replicas, AckProducer, Cluster, ClusterConfig, ProducerSettings};
use strand_reliability::loopfs::LoopFs;
use strand_reliability::writer::Writer;
use strand_reliability::{profile, Ledger, NodeProcess, Violation, WireClient};

const TOPIC: &str = "power";
const PARTITIONS: u32 = 2;
const WRITERS_PER_PARTITION: u32 = 2;
const IMAGE_BYTES: u64 = 1 << 30;
const CLIENT_TIMEOUT: Duration = Duration::from_secs(5);
/// A node that hits EIO stops by itself (status 74); longer than this and it is killed.
const EXIT_AFTER_CUT_WAIT: Duration = Duration::from_secs(5);

/// The loop filesystem, or `None` (with the reason printed) when the test cannot run here.
fn loop_fs(dir: &Path, test: &str) -> Option<LoopFs> {
    match LoopFs::create(dir, IMAGE_BYTES) {
        Ok(fs) => Some(fs),
        Err(e) if e.to_string().contains("is not installed") => {
            panic!("{test}: {e} (./test.sh installs the tools when run as root)")
        }
        // Not root, or no loop devices here (e.g. a container): the environment, not the node.
        Err(e) => {
            println!("SKIPPED {test}: {e}");
            None
        }
    }
}

/// What one single-node power cut left: the ledger, and the restarted node's logs read back.
struct Outcome {
    ledger: Ledger,
    stored: Vec<Vec<strand_reliability::StoredRecord>>,
    seed: u64,
    /// The last log lines of the node before the cut and after the restart.
    logs: String,
}

/// Runs writers against a node on `fs` with `args`, cuts the power while they run, restarts
/// the node on the remounted image and reads every partition back.
fn cut_power_under_load(fs: &mut LoopFs, args: &[&str], test: &str) -> Outcome {
    let seed = profile::seed(test);
    let mut rng = profile::rng(seed);
    let data = fs.path().join("data");
    let mut node = NodeProcess::start(&data, args).expect("node starts on the loop filesystem");
    WireClient::connect(node.public, CLIENT_TIMEOUT)
        .and_then(|mut c| c.create_topic(TOPIC, PARTITIONS))
        .expect("create topic");
    // The topic's directories are durable before the load: the test is about records.
    fs.sync().expect("syncfs");

    let ledger = Arc::new(Mutex::new(Ledger::new(PARTITIONS)));
    let (cut, seq) = (Arc::new(AtomicBool::new(false)), Arc::new(AtomicU64::new(0)));
    let writers: Vec<_> = (0..PARTITIONS * WRITERS_PER_PARTITION)
        .map(|w| {
            let (addr, cut, ledger, seq) = (node.public, cut.clone(), ledger.clone(), seq.clone());
            let writer_seed = rng.gen::<u64>();
            let writer = Writer {
                addr,
                topic: TOPIC.to_string(),
                partition: w % PARTITIONS,
                seed: writer_seed,
                filler_max: 400,
                connect_timeout: CLIENT_TIMEOUT,
                count_only_before_stop: true,
            };
            std::thread::spawn(move || writer.run(&cut, &ledger, &seq))
        })
        .collect();
    std::thread::sleep(Duration::from_millis(rng.gen_range(300..900)));
    cut.store(true, Ordering::SeqCst);
    fs.power_cut().expect("shut the filesystem down");
    let cut_at = Instant::now();
    while node.is_running() && cut_at.elapsed() < EXIT_AFTER_CUT_WAIT {
        std::thread::sleep(Duration::from_millis(20));
    }
    node.kill().expect("SIGKILL");
    for w in writers {
        w.join().expect("writer thread");
    }
    assert_eq!(node.panic_line(), None, "{test} (seed {seed}): the node panicked on EIO");
    let log_before = node.log_tail(15);

    fs.remount().expect("remount after the power cut");
    let files = describe_segments(&data);
    let node = NodeProcess::start(&data, args)
        .unwrap_or_else(|e| panic!("{test} (seed {seed}): restart after the power cut: {e}"));
    let mut client = WireClient::connect(node.public, CLIENT_TIMEOUT).expect("connect after restart");
    let stored = (0..PARTITIONS)
        .map(|p| {
            client
                .read_partition(TOPIC, p, 0)
                .unwrap_or_else(|e| panic!("{test} (seed {seed}): read partition {p}: {e}\n{}", node.log_tail(20)))
        })
        .collect();
    let ledger = lock(&ledger).clone();
    let logs = format!(
        "--- segment files after the cut ---\n{files}--- node before the cut ---\n{log_before}\n\
         --- node after the restart ---\n{}",
        node.log_tail(15)
    );
    Outcome { ledger, stored, seed, logs }
}

/// Each partition's files after the cut: size, and where the last non-zero byte is (data
/// past it is zeros: preallocated or lost).
fn describe_segments(data: &Path) -> String {
    let mut out = String::new();
    for p in 0..PARTITIONS {
        let dir = data.join("topics").join(TOPIC).join(p.to_string());
        let Ok(entries) = std::fs::read_dir(&dir) else { continue };
        for e in entries.flatten() {
            let bytes = std::fs::read(e.path()).unwrap_or_default();
            let last = bytes.iter().rposition(|b| *b != 0).map_or(0, |i| i + 1);
            out.push_str(&format!("{p}/{}: {} bytes, data to {last}\n", e.file_name().to_string_lossy(), bytes.len()));
        }
    }
    out
}

/// Every acknowledged record survived; returns (acknowledged, found at their offsets).
fn check_nothing_lost(outcome: &mut Outcome, test: &str) -> (u64, u64) {
    let acked = outcome.ledger.acked_count();
    let mut found = 0;
    for (p, stored) in outcome.stored.iter().enumerate() {
        let report = outcome.ledger.verify(p as u32, 0, stored).unwrap_or_else(|v| {
            panic!("{test} (seed {}): acknowledged data lost: {v}\n{}", outcome.seed, outcome.logs)
        });
        found += report.acked_checked;
    }
    assert!(acked > 0, "{test}: nothing was acknowledged before the power cut: the check compared nothing");
    assert_eq!(found, acked, "{test}: every acknowledged record is checked");
    (acked, found)
}

fn single_node_fsync_always(io_mode: &str) {
    let test = format!("power_loss_single_{io_mode}");
    let dir = tempfile::tempdir().expect("temp dir");
    let Some(mut fs) = loop_fs(dir.path(), &test) else { return };
    let args = ["--fsync", "always", "--io-mode", io_mode, "--shards", "1"];
    let mut outcome = cut_power_under_load(&mut fs, &args, &test);
    let (acked, found) = check_nothing_lost(&mut outcome, &test);
    let stored: usize = outcome.stored.iter().map(Vec::len).sum();
    println!("{test}: {acked} acknowledged records before the power cut, {found} found after it, {stored} stored");
}

#[test]
fn a_power_cut_under_fsync_always_loses_no_acknowledged_record_buffered() {
    single_node_fsync_always("buffered");
}

#[test]
fn a_power_cut_under_fsync_always_loses_no_acknowledged_record_direct() {
    single_node_fsync_always("direct");
}

/// Proves the power cut is real: with `--fsync never` the node acknowledges records that
/// were only in the page cache, and they are gone after the cut — the checker says so.
#[test]
fn a_power_cut_under_fsync_never_loses_acknowledged_records_and_the_check_says_so() {
    let test = "power_loss_fsync_never";
    let dir = tempfile::tempdir().expect("temp dir");
    let Some(mut fs) = loop_fs(dir.path(), test) else { return };
    let args = ["--fsync", "never", "--io-mode", "buffered", "--shards", "1"];
    let mut outcome = cut_power_under_load(&mut fs, &args, test);
    assert!(outcome.ledger.acked_count() > 0, "{test}: nothing was acknowledged");
    let verdicts: Vec<Result<_, Violation>> =
        outcome.stored.iter().enumerate().map(|(p, stored)| outcome.ledger.verify(p as u32, 0, stored)).collect();
    let missing = verdicts.iter().filter(|v| matches!(v, Err(Violation::Missing { .. }))).count();
    assert!(
        missing > 0,
        "{test} (seed {}): fsync=never lost nothing across a power cut — the cut is not real, so the \
         fsync=always tests prove nothing; verdicts {verdicts:?}",
        outcome.seed
    );
    println!(
        "{test}: {} acknowledged, {missing} of {PARTITIONS} partitions lost acknowledged records",
        outcome.ledger.acked_count()
    );
}

#[test]
fn a_power_cut_of_a_whole_acks_all_chain_loses_no_acknowledged_record() {
    let test = "power_loss_cluster";
    let dir = tempfile::tempdir().expect("temp dir");
    let Some(mut fs) = loop_fs(dir.path(), test) else { return };
    let config = ClusterConfig {
        extra_args: vec!["--fsync".into(), "always".into()],
        data_parent: Some(fs.path().to_path_buf()),
        ..ClusterConfig::default()
    };
    let mut cluster = Cluster::start(config).unwrap_or_else(|e| panic!("{test}: cluster start: {e}"));
    cluster.create_topic(TOPIC, PARTITIONS, 3).unwrap_or_else(|e| panic!("{test}: create topic: {e}"));
    for p in 0..PARTITIONS {
        cluster
            .wait_chain(TOPIC, p, Duration::from_secs(30), |m| m.replicas.len() == 3)
            .unwrap_or_else(|e| panic!("{test}: chain of partition {p}: {e}\n{}", cluster.logs(20)));
    }
    fs.sync().expect("syncfs");
    let producer = AckProducer::start(&cluster, ProducerSettings::new(TOPIC, PARTITIONS));
    assert!(
        producer.wait_more_acks(200, Duration::from_secs(30)),
        "{test}: the chain acknowledged too little before the cut\n{}",
        cluster.logs(20)
    );
    std::thread::sleep(Duration::from_millis(profile::rng(profile::seed(test)).gen_range(300..900)));
    let cut_at = Instant::now();
    fs.power_cut().expect("shut the filesystem down");
    for id in cluster.node_ids() {
        cluster.kill(id).expect("SIGKILL");
    }
    let mut log = producer.stop();
    // Answers after the cut began are not acknowledgements (see `writer`).
    log.acks.retain(|a| a.acked_at < cut_at);
    if let Some((id, line)) = cluster.panic_line() {
        panic!("{test}: node {id} panicked: {line}");
    }
    fs.remount().expect("remount after the power cut");
    for id in cluster.node_ids() {
        cluster.restart(id).unwrap_or_else(|e| panic!("{test}: restart node {id}: {e}\n{}", cluster.logs(20)));
    }
    let restarted = Instant::now();
    let refusals = check_no_empty_answers(&cluster, &log, test);
    let (report, first_miss) = verify_when_served(&cluster, &log, test);
    let records: usize = report.partitions.values().map(|(_, n, _)| n).sum();
    println!(
        "{test}: {} acknowledged records before the cut, all found on every replica {:?} after the restarts \
         ({records} stored); first incomplete read: {first_miss}; {refusals} reads refused right after the restarts",
        report.acked_records,
        restarted.elapsed()
    );
}

/// Right after a restart a member does not know the chain's commit point yet. It must refuse
/// reads (a retriable error) rather than answer as if the partition were empty: a high
/// watermark of 0 while it holds acknowledged records makes a consumer starting at "latest"
/// read from offset 0 and skews every lag figure. Returns how many reads were refused.
fn check_no_empty_answers(cluster: &Cluster, log: &strand_reliability::cluster::ProducerLog, test: &str) -> usize {
    let mut refusals = 0;
    for id in cluster.node_ids() {
        let Some(addr) = cluster.public_addr(id) else { continue };
        let mut client = WireClient::connect(addr, CLIENT_TIMEOUT).expect("connect after restart");
        for p in 0..PARTITIONS {
            let acked = log.acks.iter().filter(|a| a.partition == p).count();
            match client.fetch(TOPIC, p, 0, 0) {
                Ok((r, _)) if r.error == strand_wire::ErrorCode::None => assert!(
                    acked == 0 || r.high_watermark > 0,
                    "{test}: node {id} answered a fetch of partition {p} as empty (high watermark 0) right \
                     after its restart, though {acked} produces were acknowledged there"
                ),
                _ => refusals += 1,
            }
        }
    }
    refusals
}

/// How long a whole chain restarted after a power cut may take to serve everything
/// acknowledged before it (lease expiry, re-admission of the head, learners catching up).
const SERVED_AGAIN_BOUND: Duration = Duration::from_secs(30);

/// Verifies the replicas until every acknowledged record is served or [`SERVED_AGAIN_BOUND`]
/// passes. Right after the restarts members refuse reads (`NOT_OWNER` until readmitted) or
/// serve less than was acknowledged (a learner catching up): a delay, not a loss, unless it
/// lasts. Any other violation fails at once. Returns the report and the
/// first incomplete verdict seen (for the log).
fn verify_when_served(
    cluster: &Cluster,
    log: &strand_reliability::cluster::ProducerLog,
    test: &str,
) -> (strand_reliability::cluster::ClusterReport, String) {
    use strand_reliability::cluster::ClusterViolation;
    let started = Instant::now();
    let mut first_miss = "none".to_string();
    loop {
        match verify_replicas(cluster, log, TOPIC, PARTITIONS, Duration::from_secs(2)) {
            Ok(report) => return (report, first_miss),
            Err(
                v @ (ClusterViolation::Ledger { violation: Violation::Missing { .. }, .. }
                | ClusterViolation::Diverged { .. }),
            ) if started.elapsed() < SERVED_AGAIN_BOUND => {
                if first_miss == "none" {
                    first_miss = format!("{v} (at {:?})", started.elapsed());
                }
                std::thread::sleep(Duration::from_millis(200));
            }
            Err(v) => panic!("{test}: {v} (after {:?})\n{}", started.elapsed(), cluster.logs(30)),
        }
    }
}
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}
