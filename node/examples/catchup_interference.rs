//! Measures whether a consumer catching up over cold (not page-cached) data slows
//! a concurrent producer on the same shard. Starts `strand-node` (built next to
//! this example: `cargo build --release -p strand-node --bin strand-node --example
//! catchup_interference`) with one shard, fills a topic, drops the page cache, and
//! compares the producer's latency percentiles without and with the catch-up read.
//!
//! Usage: `catchup_interference [DATA_DIR_PARENT] [FILL_MIB]` (needs root for drop_caches).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use strand_wire::batch::{BatchBuilder, BatchHeader};
use strand_wire::codec::{decode_response, request_frame};
use strand_wire::frame::FramePrefix;
use strand_wire::msg::*;

const PRODUCE_RATE_PER_S: u64 = 500;
const PHASE: Duration = Duration::from_secs(6);

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
        b.push(1_700_000_000_000, None, &value, &[]);
    }
    b.finish()
}

fn drop_caches() {
    let _ = Command::new("sync").status();
    if std::fs::write("/proc/sys/vm/drop_caches", "3\n").is_err() {
        eprintln!("warning: cannot drop caches (not root?); cold-read numbers are not cold");
    }
}

/// Produces at a fixed rate for `PHASE`; latencies in µs from the intended send time.
fn produce_phase(addr: SocketAddr) -> Vec<u64> {
    let mut c = Conn::new(addr);
    let b = batch(1, 1024);
    let interval = Duration::from_nanos(1_000_000_000 / PRODUCE_RATE_PER_S);
    let start = Instant::now();
    let mut lat = Vec::new();
    let mut i = 0u32;
    while start.elapsed() < PHASE {
        let intended = start + interval * i;
        if let Some(wait) = intended.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
        c.produce("lat", &b);
        lat.push(intended.elapsed().as_micros() as u64);
        i += 1;
    }
    lat.sort_unstable();
    lat
}

fn pct(sorted: &[u64], p: f64) -> u64 {
    sorted[((sorted.len() as f64 * p) as usize).min(sorted.len() - 1)]
}

fn catch_up(addr: SocketAddr) -> (u64, Duration) {
    let mut c = Conn::new(addr);
    let (mut offset, mut bytes) = (0u64, 0u64);
    let start = Instant::now();
    loop {
        let fp = FetchPartition { topic: "bulk".into(), partition: 0, offset, max_bytes: 1 << 20 };
        let req = FetchRequest { max_wait_ms: 0, min_bytes: 0, max_bytes: 1 << 20, partitions: vec![fp] };
        let (h, payload) = c.call(Request::Fetch(req), &[]);
        if payload.is_empty() {
            if let Response::Fetch(f) = &h.response {
                let p = &f.partitions[0];
                println!("catch-up ended at offset {offset}: {} (log end {})", p.error, p.log_end_offset);
            }
            return (bytes, start.elapsed());
        }
        bytes += payload.len() as u64;
        let mut rest = &payload[..];
        while let Ok(h) = BatchHeader::parse(rest) {
            offset = h.next_offset();
            rest = &rest[(h.batch_len as usize).min(rest.len())..];
        }
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let parent = args.get(1).cloned().unwrap_or_else(|| "/var/tmp".into());
    let fill_mib: u64 = args.get(2).and_then(|a| a.parse().ok()).unwrap_or(512);
    let dir = tempfile::Builder::new().prefix("strand-catchup").tempdir_in(parent).expect("temp dir");
    let exe = std::env::current_exe()
        .expect("exe")
        .parent()
        .and_then(|p| p.parent())
        .expect("target dir")
        .join("strand-node");
    let mut child = Command::new(&exe)
        .args(["--data-dir", dir.path().to_str().expect("utf8"), "--listen", "127.0.0.1:0", "--admin", "127.0.0.1:0"])
        .args(["--shards", "1", "--shard-port-base", "0", "--fsync", "always", "--io-mode", "buffered"])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {}: {e}", exe.display()));
    let stderr = child.stderr.take().expect("stderr");
    let mut lines = BufReader::new(stderr).lines();
    let addr: SocketAddr = loop {
        let line = lines.next().expect("node exited").expect("line");
        if let Some(rest) = line.split("public=").nth(1) {
            break rest.split_whitespace().next().expect("addr").parse().expect("addr");
        }
    };
    std::thread::spawn(move || lines.for_each(drop));
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
    println!("filled {fill_mib} MiB in {:?}", fill_start.elapsed());

    // Settle: let the fill's writeback finish so it does not land in either phase.
    drop_caches();
    let _ = produce_phase(addr);
    drop_caches();
    let base = produce_phase(addr);
    drop_caches();
    let reader = std::thread::spawn(move || catch_up(addr));
    let loaded = produce_phase(addr);
    let (read_bytes, read_time) = reader.join().expect("reader");
    let _ = child.kill();
    let _ = child.wait();

    println!("producer: {} req/s, 1 KiB batches, fsync=always, 1 shard", PRODUCE_RATE_PER_S);
    for (name, l) in [("alone", &base), ("with cold catch-up", &loaded)] {
        println!(
            "  {name:<20} n={} p50={}us p90={}us p99={}us max={}us",
            l.len(),
            pct(l, 0.5),
            pct(l, 0.9),
            pct(l, 0.99),
            l[l.len() - 1]
        );
    }
    println!(
        "catch-up consumer: {:.1} MiB in {:?} ({:.0} MiB/s)",
        read_bytes as f64 / 1048576.0,
        read_time,
        read_bytes as f64 / 1048576.0 / read_time.as_secs_f64()
    );
    let ratio = pct(&loaded, 0.99) as f64 / pct(&base, 0.99) as f64;
    println!("p99 ratio (with/alone) = {ratio:.2} ({})", if ratio <= 1.2 { "PASS <= 1.20" } else { "FAIL > 1.20" });
}
