//! Load soak (long profile only, `#[ignore]`d in CI): mixed produce and long-poll fetch for
//! `STRAND_SOAK_SECS` (default 600) against one node, sampling RSS and produce/fetch p99 every
//! `STRAND_SOAK_SAMPLE_SECS` (default 10) into CSV, JSON and an SVG plot under
//! `target/reliability/`. At the end every acknowledged record is verified.
//!
//! Run: `STRAND_RELIABILITY=long cargo test -p strand-reliability --release --test soak -- --ignored --nocapture`.
//! Consumer groups are not in the mix yet: the node answers their APIs with UNKNOWN_API.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use strand_reliability::ledger::record_value;
use strand_reliability::profile::{results_dir, write_result};
use strand_reliability::soak::{write_outputs, Sample};
use strand_reliability::{Ledger, NodeProcess, WireClient};

const TOPIC: &str = "soak";
const PARTITIONS: u32 = 2;
const TIMEOUT: Duration = Duration::from_secs(10);
/// RSS bound asserted at every sample.
const RSS_BOUND_KIB: u64 = 512 * 1024;

fn env_secs(name: &str, default: u64) -> Duration {
    Duration::from_secs(std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default))
}

struct Shared {
    stop: AtomicBool,
    produced: AtomicU64,
    fetched: AtomicU64,
    produce_us: Mutex<Histogram<u64>>,
    fetch_us: Mutex<Histogram<u64>>,
    ledger: Mutex<Ledger>,
    errors: Mutex<Vec<String>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn producer(addr: std::net::SocketAddr, partition: u32, shared: &Shared) {
    let mut client = WireClient::connect(addr, TIMEOUT).expect("connect");
    let mut seq = 0u64;
    while !shared.stop.load(Ordering::Relaxed) {
        let values: Vec<Vec<u8>> = (seq..seq + 16).map(|s| record_value(partition, s, 100)).collect();
        seq += 16;
        lock(&shared.ledger).record_sent(partition, &values);
        let started = Instant::now();
        match client.produce_values(TOPIC, partition, &values) {
            Ok(Ok(offset)) => {
                let _ = lock(&shared.produce_us).record(started.elapsed().as_micros() as u64);
                shared.produced.fetch_add(16, Ordering::Relaxed);
                if let Err(v) = lock(&shared.ledger).record_ack(partition, offset, &values) {
                    lock(&shared.errors).push(v.to_string());
                }
            }
            Ok(Err(code)) => lock(&shared.errors).push(format!("produce refused: {code:?}")),
            Err(e) => {
                lock(&shared.errors).push(format!("produce: {e}"));
                return;
            }
        }
    }
}

fn consumer(addr: std::net::SocketAddr, partition: u32, shared: &Shared) {
    let mut client = WireClient::connect(addr, TIMEOUT).expect("connect");
    let mut offset = 0u64;
    while !shared.stop.load(Ordering::Relaxed) {
        let started = Instant::now();
        match client.fetch(TOPIC, partition, offset, 500) {
            Ok((_, bytes)) => {
                let mut records = Vec::new();
                match strand_reliability::client::decode_batches(partition, offset, &bytes, &mut records) {
                    Ok(next) => offset = next,
                    Err(e) => lock(&shared.errors).push(e.to_string()),
                }
                if !records.is_empty() {
                    let _ = lock(&shared.fetch_us).record(started.elapsed().as_micros() as u64);
                }
                shared.fetched.fetch_add(records.len() as u64, Ordering::Relaxed);
            }
            Err(e) => {
                lock(&shared.errors).push(format!("fetch: {e}"));
                return;
            }
        }
    }
}

fn take_p99_ms(h: &Mutex<Histogram<u64>>) -> f64 {
    let mut h = lock(h);
    let p99 = h.value_at_quantile(0.99) as f64 / 1000.0;
    h.reset();
    p99
}

#[test]
#[ignore = "long profile: a 10-minute soak; run with --ignored (see docs/RELIABILITY.md)"]
fn soak_mixed_produce_fetch() {
    let duration = env_secs("STRAND_SOAK_SECS", 600);
    let every = env_secs("STRAND_SOAK_SAMPLE_SECS", 10);
    let dir = tempfile::tempdir().expect("temp dir");
    let mut node = NodeProcess::start(dir.path(), &["--shards", "2", "--fsync", "always"]).expect("start");
    WireClient::connect(node.public, TIMEOUT).and_then(|mut c| c.create_topic(TOPIC, PARTITIONS)).expect("topic");
    let histogram = || Mutex::new(Histogram::new_with_bounds(1, 60_000_000, 3).expect("histogram bounds"));
    let shared = Arc::new(Shared {
        stop: AtomicBool::new(false),
        produced: AtomicU64::new(0),
        fetched: AtomicU64::new(0),
        produce_us: histogram(),
        fetch_us: histogram(),
        ledger: Mutex::new(Ledger::new(PARTITIONS)),
        errors: Mutex::new(Vec::new()),
    });
    let mut threads = Vec::new();
    for p in 0..PARTITIONS {
        let (addr, s) = (node.public, shared.clone());
        threads.push(std::thread::spawn(move || producer(addr, p, &s)));
        let (addr, s) = (node.public, shared.clone());
        threads.push(std::thread::spawn(move || consumer(addr, p, &s)));
    }
    let started = Instant::now();
    let mut samples = Vec::new();
    while started.elapsed() < duration {
        std::thread::sleep(every);
        let sample = Sample {
            t_s: started.elapsed().as_secs_f64(),
            rss_kib: node.rss_kib().expect("node RSS"),
            produce_p99_ms: take_p99_ms(&shared.produce_us),
            fetch_p99_ms: take_p99_ms(&shared.fetch_us),
            produced: shared.produced.swap(0, Ordering::Relaxed),
            fetched: shared.fetched.swap(0, Ordering::Relaxed),
        };
        println!("soak: {sample:?}");
        assert!(sample.rss_kib < RSS_BOUND_KIB, "RSS {} KiB at {:.0} s", sample.rss_kib, sample.t_s);
        assert!(sample.produced > 0, "no produce progress in the interval ending at {:.0} s", sample.t_s);
        samples.push(sample);
    }
    shared.stop.store(true, Ordering::Relaxed);
    for t in threads {
        t.join().expect("worker");
    }
    assert!(node.is_running() && node.panic_line().is_none(), "node died or panicked");
    let errors = lock(&shared.errors).clone();
    assert!(errors.is_empty(), "errors during the soak: {errors:?}");
    let mut client = WireClient::connect(node.public, TIMEOUT).expect("connect");
    let mut verified = 0;
    for p in 0..PARTITIONS {
        let stored = client.read_partition(TOPIC, p, 0).expect("read back");
        verified += lock(&shared.ledger).verify(p, 0, &stored).expect("soak log intact").acked_checked;
    }
    write_outputs(&results_dir(), "soak", &samples).expect("soak outputs");
    let rss_max = samples.iter().map(|s| s.rss_kib).max().unwrap_or(0);
    let p99_max = samples.iter().map(|s| s.produce_p99_ms).fold(0.0, f64::max);
    println!(
        "soak: {:?}, {verified} records verified, RSS max {rss_max} KiB, worst produce p99 {p99_max:.2} ms",
        duration
    );
    write_result(
        "soak_summary",
        &serde_json::json!({"duration_s": duration.as_secs(), "samples": samples.len(), "records_verified": verified,
            "rss_max_kib": rss_max, "produce_p99_ms_worst": p99_max}),
    );
}
