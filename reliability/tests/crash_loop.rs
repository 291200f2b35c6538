//! Crash loop: writers produce with acks=leader to a node running `--fsync always`, recording
//! every acknowledged (partition, offset, value); the node is SIGKILLed at a random moment
//! (seeded), restarted on the same data dir, and after each cycle the checker verifies that
//! every acknowledged record is present exactly once, in order, at its offset, that nothing
//! seen earlier moved, and that the node served again within [`RESTART_BOUND`].
//!
//! Quick profile: 20 cycles. Long: 1000 (`STRAND_RELIABILITY=long`).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand::Rng;
use strand_reliability::profile::{self, write_result};
use strand_reliability::writer::Writer;
use strand_reliability::{Ledger, NodeProcess, Profile, Summary, WireClient};
use strand_wire::ErrorCode;

const TOPIC: &str = "crash";
const PARTITIONS: u32 = 2;
const WRITERS_PER_PARTITION: u32 = 2;
/// A restarted node must serve again within this (spawn to listening line).
const RESTART_BOUND: Duration = Duration::from_secs(10);
/// `--io-mode` is appended per test.
const NODE_ARGS: &[&str] = &["--fsync", "always", "--shards", "2", "--io-mode"];
const CLIENT_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Default)]
struct Totals {
    acked: u64,
    records_verified: u64,
    acked_verified: u64,
    unacked_survivors: u64,
    produce_refusals: u64,
}

#[test]
fn sigkill_loop_loses_no_acknowledged_record() {
    sigkill_loop("buffered");
}

#[test]
fn sigkill_loop_loses_no_acknowledged_record_direct_io() {
    sigkill_loop("direct");
}

fn sigkill_loop(io_mode: &str) {
    let name = format!("crash_loop_{io_mode}");
    let args: Vec<&str> = NODE_ARGS.iter().copied().chain([io_mode]).collect();
    let profile = Profile::from_env();
    let cycles = profile.pick(20, 1000);
    let seed = profile::seed(&name);
    let mut rng = profile::rng(seed);
    let dir = tempfile::tempdir().expect("temp dir");
    let ledger = Arc::new(Mutex::new(Ledger::new(PARTITIONS)));
    let seq = Arc::new(AtomicU64::new(0));
    let mut node = NodeProcess::start(dir.path(), &args).expect("first start");
    WireClient::connect(node.public, CLIENT_TIMEOUT)
        .and_then(|mut c| c.create_topic(TOPIC, PARTITIONS))
        .expect("topic");
    let (mut restarts, mut totals, mut stored_last) = (Vec::new(), Totals::default(), Vec::new());
    for cycle in 0..cycles {
        let refusals = run_writers_then_kill(&mut node, &mut rng, &ledger, &seq);
        totals.produce_refusals += refusals;
        assert_eq!(node.panic_line(), None, "cycle {cycle} (seed {seed}): node panicked before the kill");
        node = NodeProcess::start(dir.path(), &args).unwrap_or_else(|e| panic!("cycle {cycle} (seed {seed}): {e}"));
        restarts.push(node.startup);
        assert!(node.startup < RESTART_BOUND, "cycle {cycle} (seed {seed}): restart took {:?}", node.startup);
        let full = profile == Profile::Quick || cycle % 50 == 0 || cycle + 1 == cycles;
        stored_last = verify_cycle(&node, &ledger, full, &mut totals)
            .unwrap_or_else(|e| panic!("cycle {cycle} (seed {seed}): {e}\nnode log:\n{}", node.log_tail(20)));
    }
    totals.acked = lock(&ledger).acked_count();
    assert!(
        totals.acked >= u64::from(cycles),
        "only {} acks in {cycles} cycles: the writers did not run",
        totals.acked
    );
    checker_catches_a_dropped_record(&ledger, &stored_last);
    report(&name, seed, cycles, &restarts, &totals);
}

/// Runs the writers until a random moment, SIGKILLs the node, joins the writers.
/// Returns how many produces the node refused with an error code.
fn run_writers_then_kill(
    node: &mut NodeProcess,
    rng: &mut profile::SeedRng,
    ledger: &Arc<Mutex<Ledger>>,
    seq: &Arc<AtomicU64>,
) -> u64 {
    let stop = Arc::new(AtomicBool::new(false));
    let writers: Vec<_> = (0..PARTITIONS * WRITERS_PER_PARTITION)
        .map(|w| {
            let (addr, stop, ledger, seq) = (node.public, stop.clone(), ledger.clone(), seq.clone());
            let writer_seed = rng.gen::<u64>();
            let writer = Writer {
                addr,
                topic: TOPIC.to_string(),
                partition: w % PARTITIONS,
                seed: writer_seed,
                filler_max: 200,
                connect_timeout: CLIENT_TIMEOUT,
                count_only_before_stop: false,
            };
            std::thread::spawn(move || writer.run(&stop, &ledger, &seq))
        })
        .collect();
    std::thread::sleep(Duration::from_millis(rng.gen_range(20..400)));
    node.kill().expect("SIGKILL");
    stop.store(true, Ordering::Relaxed);
    writers.into_iter().map(|w| w.join().expect("writer thread")).sum()
}

/// Reads every partition back (whole log, or only what is new since the last check) and
/// checks it against the ledger. Returns the last partition read, for the checker self-test.
fn verify_cycle(
    node: &NodeProcess,
    ledger: &Mutex<Ledger>,
    full: bool,
    totals: &mut Totals,
) -> Result<Vec<strand_reliability::StoredRecord>, String> {
    let mut client = WireClient::connect(node.public, CLIENT_TIMEOUT).map_err(|e| e.to_string())?;
    let mut last = Vec::new();
    for partition in 0..PARTITIONS {
        let from = if full { 0 } else { lock(ledger).verified_end(partition) };
        let stored = match client.read_partition(TOPIC, partition, from) {
            Ok(stored) => stored,
            Err(e) if e.server_code() == Some(ErrorCode::OffsetOutOfRange) => {
                return Err(format!("partition {partition}: log now ends before offset {from}, which was seen: {e}"))
            }
            Err(e) => return Err(format!("partition {partition}: read back failed: {e}")),
        };
        let report = lock(ledger).verify(partition, from, &stored).map_err(|v| v.to_string())?;
        totals.records_verified += report.records_checked;
        totals.acked_verified += report.acked_checked;
        totals.unacked_survivors += report.unacked_new;
        last = stored;
    }
    Ok(last)
}

/// The checker must reject the real log with one acknowledged record removed.
fn checker_catches_a_dropped_record(ledger: &Mutex<Ledger>, stored: &[strand_reliability::StoredRecord]) {
    assert!(stored.len() > 2, "the last partition read is too short to test the checker");
    let mut broken = stored.to_vec();
    broken.remove(stored.len() / 2);
    for (i, r) in broken.iter_mut().enumerate() {
        r.offset = i as u64;
    }
    let mut copy = lock(ledger).clone();
    let verdict = copy.verify(PARTITIONS - 1, 0, &broken);
    assert!(verdict.is_err(), "checker accepted a log with a dropped record");
}

fn report(name: &str, seed: u64, cycles: u32, restarts: &[Duration], totals: &Totals) {
    let restart = Summary::of(restarts);
    println!(
        "{name}: seed {seed}: {cycles} SIGKILL cycles, {} acked records, {} records verified ({} acked checks), \
         {} unacked survivors, {} produce refusals, data lost: 0; restart-to-listening p50 {:?} max {:?}",
        totals.acked,
        totals.records_verified,
        totals.acked_verified,
        totals.unacked_survivors,
        totals.produce_refusals,
        restart.p50,
        restart.max
    );
    write_result(
        name,
        &serde_json::json!({
            "seed": seed, "cycles": cycles, "acked_records": totals.acked, "records_verified": totals.records_verified,
            "acked_checks": totals.acked_verified, "unacked_survivors": totals.unacked_survivors,
            "produce_refusals": totals.produce_refusals, "data_lost": 0, "restart_to_listening": restart.to_json(),
        }),
    );
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}
