//! Measures whether a consumer catching up over cold (not page-cached) data slows a
//! concurrent producer on the same shard (issue 4: p99 may rise by at most 20 %).
//!
//! Starts `strand-node` (built next to this example: `cargo build --release -p strand-node
//! --bin strand-node --example catchup_interference`) with one shard, fills a topic, lets
//! writeback settle (`sync` + sleep), then runs ROUNDS × (baseline phase, catch-up phase):
//! the producer sends 1 KiB batches at a fixed rate the disk sustains (latency from the
//! intended send time, so stalls are not hidden); in the catch-up phase a consumer also
//! reads the filled topic from offset 0 after the page cache was dropped. Reports each
//! phase's p99, the median p99 of each kind and their ratio, the node's CPU per GB served
//! (utime + stime from /proc/PID/stat) and the zero-copy / copied split from /metrics.
//!
//! Usage: `catchup_interference [DATA_DIR_PARENT] [FILL_MIB] [FSYNC] [RATE_PER_S] [cold|warm]`
//! (defaults `/var/tmp 1024 never 200 cold`; needs root for drop_caches). `warm` reads the
//! backlog from the page cache (no eviction): it separates the cost of serving reads from
//! the cost of evicting them. Each round also reports how many of the slow produce
//! requests (over 5 ms) overlapped an eviction by the catch-up reader (from its start to
//! 30 ms after its end).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use strand_wire::batch::{BatchBuilder, BatchHeader};
use strand_wire::codec::{decode_response, request_frame};
use strand_wire::frame::FramePrefix;
use strand_wire::msg::*;

const PHASE: Duration = Duration::from_secs(10);
const ROUNDS: usize = 3;
const SETTLE: Duration = Duration::from_secs(5);

struct Conn(TcpStream, u64);

impl Conn {
    fn new(addr: SocketAddr) -> Conn {
        let s = TcpStream::connect(addr).expect("connect");
        s.set_nodelay(true).expect("nodelay");
        Conn(s, 0)
    }

    fn call(&mut self, request: Request, payload: &[u8]) -> (ResponseHeader, Vec<u8>) {
        self.1 += 1;
        let mut out = BytesMut::new();
        request_frame(&mut out, &RequestHeader { correlation_id: self.1, request }, payload);
        self.0.write_all(&out).expect("write");
        let mut prefix = [0u8; 8];
        self.0.read_exact(&mut prefix).expect("read prefix");
        let prefix = FramePrefix::parse(&prefix, usize::MAX).expect("prefix");
        let mut header = vec![0u8; prefix.header_len as usize];
        self.0.read_exact(&mut header).expect("read header");
        let mut payload = vec![0u8; prefix.payload_len()];
        self.0.read_exact(&mut payload).expect("read payload");
        (decode_response(&header).expect("header"), payload)
    }

    fn produce(&mut self, topic: &str, batch: &[u8]) {
        let partitions = vec![ProducePartition { topic: topic.into(), partition: 0, bytes_len: batch.len() as u32 }];
        let (h, _) =
            self.call(Request::Produce(ProduceRequest { acks: Acks::Leader, timeout_ms: 10_000, partitions }), batch);
        assert_eq!(h.error, strand_wire::ErrorCode::None);
    }
}

fn batch(records: usize, value_len: usize) -> Bytes {
    let mut b = BatchBuilder::with_capacity(records * (value_len + 8) + 64);
    let value = vec![b'v'; value_len];
    for _ in 0..records {
        b.push(1_700_000_000_000, None, Some(&value), &[]);
    }
    b.finish()
}

/// Start of the run; the times below are milliseconds since it.
static EPOCH: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
/// (start, end) of each eviction by the catch-up reader.
static EVICTIONS: std::sync::Mutex<Vec<(f64, f64)>> = std::sync::Mutex::new(Vec::new());
/// Intended send times of produce requests slower than [`SLOW_US`].
static SLOW: std::sync::Mutex<Vec<f64>> = std::sync::Mutex::new(Vec::new());
const SLOW_US: u64 = 5_000;

fn since_epoch(t: Instant) -> f64 {
    t.duration_since(*EPOCH.get_or_init(Instant::now)).as_secs_f64() * 1e3
}

/// Slow requests of this round and how many overlapped an eviction; clears both lists.
fn slow_near_evictions() -> (usize, usize) {
    let slow = std::mem::take(&mut *SLOW.lock().expect("slow"));
    let evictions = std::mem::take(&mut *EVICTIONS.lock().expect("evictions"));
    let near = slow.iter().filter(|&&t| evictions.iter().any(|&(a, b)| t >= a - 1.0 && t <= b + 30.0)).count();
    (slow.len(), near)
}

fn drop_caches() {
    let _ = Command::new("sync").status();
    if std::fs::write("/proc/sys/vm/drop_caches", "3\n").is_err() {
        eprintln!("warning: cannot drop caches (not root?); cold-read numbers are not cold");
    }
}

/// Produces at `rate` per second for `PHASE`; sorted latencies in µs from the intended send time.
fn produce_phase(addr: SocketAddr, rate: u64) -> Vec<u64> {
    let mut c = Conn::new(addr);
    let b = batch(1, 1024);
    let interval = Duration::from_nanos(1_000_000_000 / rate);
    let start = Instant::now();
    let mut lat = Vec::new();
    let mut i = 0u32;
    while start.elapsed() < PHASE {
        let intended = start + interval * i;
        if let Some(wait) = intended.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
        c.produce("lat", &b);
        let us = intended.elapsed().as_micros() as u64;
        if us > SLOW_US {
            SLOW.lock().expect("slow").push(since_epoch(intended));
        }
        lat.push(us);
        i += 1;
    }
    lat.sort_unstable();
    lat
}

fn pct(sorted: &[u64], p: f64) -> u64 {
    sorted[((sorted.len() as f64 * p) as usize).min(sorted.len() - 1)]
}

fn median(mut v: Vec<u64>) -> u64 {
    v.sort_unstable();
    v[v.len() / 2]
}

/// Evicts the segment files in `dir` from the page cache (`POSIX_FADV_DONTNEED` on clean
/// pages), so a catch-up that wraps reads cold data again without disturbing other pages.
fn evict(dir: &std::path::Path) {
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        if let Ok(file) = std::fs::File::open(entry.path()) {
            use std::os::fd::AsRawFd;
            // SAFETY: advisory call on an fd this function owns for the duration of the call.
            unsafe { libc::posix_fadvise(file.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED) };
        }
    }
}

/// Reads `bulk` from offset 0 until `stop`, wrapping at the end after evicting the segment
/// files from the page cache (every pass is cold); bytes read and passes begun.
fn catch_up(addr: SocketAddr, segments: &std::path::Path, stop: Arc<AtomicBool>, cold: bool) -> (u64, u32) {
    let mut c = Conn::new(addr);
    let (mut offset, mut bytes, mut passes) = (0u64, 0u64, 1u32);
    while !stop.load(Ordering::Relaxed) {
        let fp = FetchPartition { topic: "bulk".into(), partition: 0, offset, max_bytes: 1 << 20 };
        let req = FetchRequest { max_wait_ms: 0, min_bytes: 0, max_bytes: 1 << 20, partitions: vec![fp] };
        let (_, payload) = c.call(Request::Fetch(req), &[]);
        if payload.is_empty() {
            if cold {
                let started = since_epoch(Instant::now());
                evict(segments);
                EVICTIONS.lock().expect("evictions").push((started, since_epoch(Instant::now())));
            }
            (offset, passes) = (0, passes + 1);
            continue;
        }
        bytes += payload.len() as u64;
        let mut rest = &payload[..];
        while let Ok(h) = BatchHeader::parse(rest) {
            offset = h.next_offset();
            rest = &rest[(h.batch_len as usize).min(rest.len())..];
        }
    }
    (bytes, passes)
}

/// utime + stime of `pid` in seconds.
fn cpu_s(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let fields: Vec<&str> = stat.rsplit_once(')').map(|(_, r)| r.split_whitespace().collect()).unwrap_or_default();
    let ticks: u64 = fields.get(11..13).map_or(0, |f| f.iter().filter_map(|x| x.parse::<u64>().ok()).sum());
    ticks as f64 / 100.0
}

/// A counter summed over shards from the admin /metrics page.
fn metric(admin: SocketAddr, name: &str) -> u64 {
    let Ok(mut s) = TcpStream::connect(admin) else { return 0 };
    let _ = write!(s, "GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    let mut text = String::new();
    let _ = s.read_to_string(&mut text);
    text.lines()
        .filter(|l| l.starts_with(name) && l[name.len()..].starts_with(['{', ' ']))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

/// Starts the node; (child, public addr, admin addr).
fn start_node(dir: &std::path::Path, fsync: &str) -> (std::process::Child, SocketAddr, SocketAddr) {
    let exe = std::env::current_exe()
        .expect("exe")
        .parent()
        .and_then(|p| p.parent())
        .expect("target dir")
        .join("strand-node");
    let mut child = Command::new(&exe)
        .args([
            "--data-dir",
            dir.to_str().expect("utf8"),
            "--listen",
            "127.0.0.1:0",
            "--admin",
            "127.0.0.1:0",
            "--kafka-listen",
            "127.0.0.1:0",
        ])
        .args(["--shards", "1", "--shard-port-base", "0", "--fsync", fsync, "--io-mode", "buffered"])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {}: {e}", exe.display()));
    let mut lines = BufReader::new(child.stderr.take().expect("stderr")).lines();
    let line = loop {
        let line = lines.next().expect("node exited").expect("line");
        if line.contains("public=") {
            break line;
        }
    };
    let field = |key: &str| -> SocketAddr {
        let rest = line.split(key).nth(1).expect("field");
        rest.split_whitespace().next().expect("addr").parse().expect("addr")
    };
    let (public, admin) = (field("public="), field("admin="));
    std::thread::spawn(move || lines.for_each(drop));
    (child, public, admin)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let parent = args.get(1).cloned().unwrap_or_else(|| "/var/tmp".into());
    let fill_mib: u64 = args.get(2).and_then(|a| a.parse().ok()).unwrap_or(1024);
    let fsync = args.get(3).cloned().unwrap_or_else(|| "never".into());
    let rate: u64 = args.get(4).and_then(|a| a.parse().ok()).unwrap_or(200);
    let cold = match args.get(5).map(String::as_str) {
        None | Some("cold") => true,
        Some("warm") => false,
        Some(other) => panic!("mode is cold or warm, not {other}"),
    };
    EPOCH.get_or_init(Instant::now);
    let dir = tempfile::Builder::new().prefix("strand-catchup").tempdir_in(parent).expect("temp dir");
    let (mut child, addr, admin) = start_node(dir.path(), &fsync);
    let mut c = Conn::new(addr);
    for t in ["bulk", "lat"] {
        let req = CreateTopicRequest { name: t.into(), partitions: 1, replication_factor: 1, configs: vec![] };
        c.call(Request::CreateTopic(req), &[]);
    }
    let bulk = batch(1024, 1000);
    let fill_start = Instant::now();
    for _ in 0..(fill_mib << 20) / bulk.len() as u64 {
        c.produce("bulk", &bulk);
    }
    println!("filled {fill_mib} MiB in {:?}; load average {}", fill_start.elapsed(), loadavg());
    let _ = Command::new("sync").status();
    std::thread::sleep(SETTLE);
    let _ = produce_phase(addr, rate); // warm-up: connection, code paths, the "lat" segment

    let (mut base_p99, mut load_p99) = (Vec::new(), Vec::new());
    let (mut read_total, mut cpu_read, mut cpu_base) = (0u64, 0.0f64, 0.0f64);
    println!("producer: {rate} req/s, 1 KiB batches, fsync={fsync}, io_mode=buffered, 1 shard; phases of {PHASE:?}");
    for round in 0..ROUNDS {
        drop_caches();
        let cpu0 = cpu_s(child.id());
        let base = produce_phase(addr, rate);
        let cpu1 = cpu_s(child.id());
        let (base_slow, _) = slow_near_evictions();
        if cold {
            drop_caches();
        }
        let stop = Arc::new(AtomicBool::new(false));
        let reader_stop = stop.clone();
        let segments = dir.path().join("topics").join("bulk").join("0");
        let reader = std::thread::spawn(move || catch_up(addr, &segments, reader_stop, cold));
        let loaded = produce_phase(addr, rate);
        stop.store(true, Ordering::Relaxed);
        let (bytes, passes) = reader.join().expect("reader");
        let cpu2 = cpu_s(child.id());
        let (slow, near) = slow_near_evictions();
        let kind = if cold { "cold" } else { "warm" };
        let with = format!("{kind} catch-up");
        for (name, l, slow) in [("baseline", &base, base_slow), (with.as_str(), &loaded, slow)] {
            let (n, p50, p99, max) = (l.len(), pct(l, 0.5), pct(l, 0.99), l[l.len() - 1]);
            println!("  round {round} {name:<14} n={n} p50={p50}us p99={p99}us max={max}us slow(>5ms)={slow}");
        }
        println!(
            "  round {round} catch-up read {:.0} MiB {kind} ({:.0} MiB/s, {passes} passes, {near} of {slow} slow requests \
             during or within 30 ms after an eviction); load average {}",
            bytes as f64 / 1048576.0,
            bytes as f64 / 1048576.0 / PHASE.as_secs_f64(),
            loadavg()
        );
        base_p99.push(pct(&base, 0.99));
        load_p99.push(pct(&loaded, 0.99));
        read_total += bytes;
        (cpu_base, cpu_read) = (cpu_base + cpu1 - cpu0, cpu_read + cpu2 - cpu1);
    }
    let zero_copy = metric(admin, "strand_bytes_out_zero_copy_total");
    let copied = metric(admin, "strand_bytes_out_copied_total");
    let _ = child.kill();
    let _ = child.wait();

    let (base, loaded) = (median(base_p99), median(load_p99));
    let ratio = loaded as f64 / base as f64;
    let gb = read_total as f64 / 1e9;
    println!("median p99: baseline {base}us, with {} catch-up {loaded}us", if cold { "cold" } else { "warm" });
    println!("p99 ratio (with/alone) = {ratio:.2} ({})", if ratio <= 1.2 { "PASS <= 1.20" } else { "FAIL > 1.20" });
    println!(
        "node CPU: {:.2} s in baseline phases, {:.2} s in catch-up phases; catch-up {:.2} GB served, {:.2} CPU-s/GB (minus baseline)",
        cpu_base,
        cpu_read,
        gb,
        (cpu_read - cpu_base) / gb
    );
    println!("fetch bytes: zero-copy {zero_copy}, copied {copied}");
}
