//! Load soak (long profile only, `#[ignore]`d in CI): mixed produce and long-poll fetch for
//! `STRAND_SOAK_SECS` (default 600) against one node with `--fsync always` and size
//! retention, sampling RSS (and its anonymous part), open fds and produce/fetch p99 every
//! `STRAND_SOAK_SAMPLE_SECS` (default 10) into CSV, JSON and an SVG plot under
//! `target/reliability/`.
//!
//! Verification needs no memory per record, so the soak can run for hours: one producer
//! per partition sends values fixed by (partition, sequence) and every acknowledgement
//! must come back at offset = sequence (nothing lost, nothing duplicated, in order); one
//! consumer per partition reads everything behind it and checks each record's offset and
//! value; at the end the consumers read on to the last acknowledged offset. Bounds checked
//! at every sample: RSS below 512 MiB, open fds within what retention keeps (the
//! retained segments' files above the first sample), produce progress in every interval.
//!
//! Run: `STRAND_RELIABILITY=long cargo test -p strand-reliability --release --test soak -- --ignored --nocapture`
//! (one hour, one sample a minute: `STRAND_SOAK_SECS=3600 STRAND_SOAK_SAMPLE_SECS=60`).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use strand_reliability::ledger::record_value;
use strand_reliability::profile::{results_dir, write_result};
use strand_reliability::soak::{write_outputs, Sample};
use strand_reliability::{NodeProcess, WireClient};

const TOPIC: &str = "soak";
const PARTITIONS: u32 = 2;
const BATCH: u64 = 16;
const VALUE_LEN: usize = 100;
const TIMEOUT: Duration = Duration::from_secs(10);
/// RSS bound asserted at every sample.
const RSS_BOUND_KIB: u64 = 512 * 1024;
/// Size retention per partition and segment size of the soak's node, unless
/// `STRAND_SOAK_RETENTION_BYTES` / `STRAND_SOAK_SEGMENT_BYTES` say otherwise (small
/// segments roll, and retention deletes, many times faster: churn in less time).
const RETENTION_BYTES: u64 = 2 << 30;
const SEGMENT_BYTES: u64 = 128 << 20;

/// Open fds may grow this much above the first sample: the segments retention keeps
/// (plus the active one and one being deleted), three files each, and some slack.
fn fd_growth_max(retention_bytes: u64, segment_bytes: u64) -> u64 {
    u64::from(PARTITIONS) * (retention_bytes / segment_bytes + 2) * 3 + 32
}

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn env_secs(name: &str, default: u64) -> Duration {
    Duration::from_secs(env_u64(name, default))
}

struct Shared {
    stop: AtomicBool,
    produced: AtomicU64,
    fetched: AtomicU64,
    verified: AtomicU64,
    /// Per partition: offset after the last acknowledged record (set as producers stop).
    acked_end: Vec<AtomicU64>,
    producers_done: AtomicBool,
    produce_us: Mutex<Histogram<u64>>,
    fetch_us: Mutex<Histogram<u64>>,
    errors: Mutex<Vec<String>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn producer(addr: std::net::SocketAddr, partition: u32, shared: &Shared) {
    let mut client = WireClient::connect(addr, TIMEOUT).expect("connect");
    let mut seq = 0u64;
    while !shared.stop.load(Ordering::Relaxed) {
        let values: Vec<Vec<u8>> = (seq..seq + BATCH).map(|s| record_value(partition, s, VALUE_LEN)).collect();
        let started = Instant::now();
        match client.produce_values(TOPIC, partition, &values) {
            Ok(Ok(offset)) if offset == seq => {
                let _ = lock(&shared.produce_us).record(started.elapsed().as_micros() as u64);
                shared.produced.fetch_add(BATCH, Ordering::Relaxed);
                seq += BATCH;
            }
            Ok(Ok(offset)) => {
                let e = format!("partition {partition}: batch {seq} acknowledged at offset {offset}");
                lock(&shared.errors).push(e);
                break;
            }
            Ok(Err(code)) => {
                lock(&shared.errors).push(format!("partition {partition}: produce refused: {code:?}"));
                break;
            }
            Err(e) => {
                lock(&shared.errors).push(format!("partition {partition}: produce: {e}"));
                break;
            }
        }
    }
    shared.acked_end[partition as usize].store(seq, Ordering::Relaxed);
}

/// Reads the partition in order and checks every record against the value its offset
/// must hold; after the producers stopped, reads on to their last acknowledgement.
fn consumer(addr: std::net::SocketAddr, partition: u32, shared: &Shared) {
    let mut client = WireClient::connect(addr, TIMEOUT).expect("connect");
    let mut offset = 0u64;
    loop {
        if shared.producers_done.load(Ordering::Relaxed)
            && offset >= shared.acked_end[partition as usize].load(Ordering::Relaxed)
        {
            return;
        }
        let started = Instant::now();
        let (_, bytes) = match client.fetch(TOPIC, partition, offset, 500) {
            Ok(answer) => answer,
            Err(e) => {
                lock(&shared.errors).push(format!("partition {partition}: fetch at {offset}: {e}"));
                return;
            }
        };
        let mut records = Vec::new();
        match strand_reliability::client::decode_batches(partition, offset, &bytes, &mut records) {
            Ok(next) => offset = next,
            Err(e) => {
                lock(&shared.errors).push(format!("partition {partition}: {e}"));
                return;
            }
        }
        if !records.is_empty() {
            let _ = lock(&shared.fetch_us).record(started.elapsed().as_micros() as u64);
        }
        for record in &records {
            if record.value != record_value(partition, record.offset, VALUE_LEN) {
                lock(&shared.errors).push(format!("partition {partition}: wrong value at offset {}", record.offset));
                return;
            }
        }
        shared.fetched.fetch_add(records.len() as u64, Ordering::Relaxed);
        shared.verified.fetch_add(records.len() as u64, Ordering::Relaxed);
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
    let retention_bytes = env_u64("STRAND_SOAK_RETENTION_BYTES", RETENTION_BYTES);
    let segment_bytes = env_u64("STRAND_SOAK_SEGMENT_BYTES", SEGMENT_BYTES);
    let dir = tempfile::tempdir().expect("temp dir");
    // Size retention keeps an hour at fsync=always rates on the disk; the consumers read
    // along, far ahead of what retention deletes.
    let config = dir.path().join("soak.toml");
    let text =
        format!("retention_bytes = {retention_bytes}\nsegment_bytes = {segment_bytes}\nretention_check_ms = \"5s\"\n");
    std::fs::write(&config, text).expect("config");
    let data = dir.path().join("data");
    let args = ["--shards", "2", "--fsync", "always", "--config", config.to_str().expect("utf-8 path")];
    let mut node = NodeProcess::start(&data, &args).expect("start");
    WireClient::connect(node.public, TIMEOUT).and_then(|mut c| c.create_topic(TOPIC, PARTITIONS)).expect("topic");
    let histogram = || Mutex::new(Histogram::new_with_bounds(1, 60_000_000, 3).expect("histogram bounds"));
    let shared = Arc::new(Shared {
        stop: AtomicBool::new(false),
        produced: AtomicU64::new(0),
        fetched: AtomicU64::new(0),
        verified: AtomicU64::new(0),
        acked_end: (0..PARTITIONS).map(|_| AtomicU64::new(0)).collect(),
        producers_done: AtomicBool::new(false),
        produce_us: histogram(),
        fetch_us: histogram(),
        errors: Mutex::new(Vec::new()),
    });
    let (mut producers, mut consumers) = (Vec::new(), Vec::new());
    for p in 0..PARTITIONS {
        let (addr, s) = (node.public, shared.clone());
        producers.push(std::thread::spawn(move || producer(addr, p, &s)));
        let (addr, s) = (node.public, shared.clone());
        consumers.push(std::thread::spawn(move || consumer(addr, p, &s)));
    }
    let started = Instant::now();
    let mut samples: Vec<Sample> = Vec::new();
    while started.elapsed() < duration {
        std::thread::sleep(every);
        let sample = Sample {
            t_s: started.elapsed().as_secs_f64(),
            rss_kib: node.rss_kib().expect("node RSS"),
            rss_anon_kib: node.rss_anon_kib().expect("node anonymous RSS"),
            fds: node.fd_count().expect("node fds"),
            produce_p99_ms: take_p99_ms(&shared.produce_us),
            fetch_p99_ms: take_p99_ms(&shared.fetch_us),
            produced: shared.produced.swap(0, Ordering::Relaxed),
            fetched: shared.fetched.swap(0, Ordering::Relaxed),
        };
        println!("soak: {sample:?}");
        let errors = lock(&shared.errors).clone();
        assert!(errors.is_empty(), "errors at {:.0} s: {errors:?}; node log:\n{}", sample.t_s, node.log_tail(40));
        assert!(sample.rss_kib < RSS_BOUND_KIB, "RSS {} KiB at {:.0} s", sample.rss_kib, sample.t_s);
        let fds_first = samples.first().map_or(sample.fds, |s| s.fds);
        assert!(
            sample.fds <= fds_first + fd_growth_max(retention_bytes, segment_bytes),
            "{} fds at {:.0} s, {fds_first} at first",
            sample.fds,
            sample.t_s
        );
        assert!(sample.produced > 0, "no produce progress in the interval ending at {:.0} s", sample.t_s);
        samples.push(sample);
    }
    shared.stop.store(true, Ordering::Relaxed);
    for t in producers {
        t.join().expect("producer");
    }
    shared.producers_done.store(true, Ordering::Relaxed);
    for t in consumers {
        t.join().expect("consumer");
    }
    assert!(node.is_running() && node.panic_line().is_none(), "node died or panicked");
    let errors = lock(&shared.errors).clone();
    assert!(errors.is_empty(), "errors during the soak: {errors:?}");
    let acked: u64 = shared.acked_end.iter().map(|a| a.load(Ordering::Relaxed)).sum();
    let verified = shared.verified.load(Ordering::Relaxed);
    assert_eq!(verified, acked, "every acknowledged record read back, in order, with its value");
    write_outputs(&results_dir(), "soak", &samples).expect("soak outputs");
    let rss_max = samples.iter().map(|s| s.rss_kib).max().unwrap_or(0);
    let fds_max = samples.iter().map(|s| s.fds).max().unwrap_or(0);
    let p99_max = samples.iter().map(|s| s.produce_p99_ms).fold(0.0, f64::max);
    println!(
        "soak: {duration:?}, {verified} records verified, RSS max {rss_max} KiB, fds max {fds_max}, worst produce \
         p99 {p99_max:.2} ms"
    );
    write_result(
        "soak_summary",
        &serde_json::json!({"duration_s": duration.as_secs(), "samples": samples.len(), "records_verified": verified,
            "rss_max_kib": rss_max, "fds_max": fds_max, "produce_p99_ms_worst": p99_max}),
    );
}
