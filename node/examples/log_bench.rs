//! Storage micro-benchmark: append throughput with 1 MiB batches (fsync never and
//! interval:100) and fsync=always append latency with 4 KiB batches, per IO mode.
//! Compare with fio on the same disk (see docs/FORMATS.md "Storage" and the storage note).
//!
//! `cargo run --release -p strand-node --example log_bench -- [DIR] [MIB_PER_RUN] [ONLY]`
//! DIR defaults to a temp dir under the system temp dir (must be on the disk under test).
//! ONLY picks a subset (`direct`, `buffered`, `throughput`, `latency`, or e.g.
//! `direct-throughput`) so runs can be interleaved with fio on a busy machine.

use bytes::{Bytes, BytesMut};
use std::path::PathBuf;
use std::rc::Rc;
use std::time::Instant;
use strand_node::log::{FsyncPolicy, IoMode, LogConfig, PartitionLog};
use strand_wire::batch::BatchBuilder;

/// Appends kept in flight at once by the throughput run (a producer pipeline); the
/// `LOG_BENCH_IN_FLIGHT` environment variable overrides it (to see how depth-bound the engine is).
const IN_FLIGHT: usize = 4;
const LATENCY_OPS: u64 = 4000;

fn main() {
    let mut args = std::env::args().skip(1);
    let root = args.next().map(PathBuf::from).unwrap_or_else(std::env::temp_dir);
    let mib: u64 = args.next().and_then(|s| s.parse().ok()).unwrap_or(1024);
    let only = args.next().unwrap_or_default();
    let wanted =
        move |mode: IoMode, kind: &str| only.split('-').all(|w| w.is_empty() || w == mode.to_string() || w == kind);
    let result = glommio::LocalExecutorBuilder::new(glommio::Placement::Fixed(0))
        .spawn(move || async move {
            let base = tempfile::tempdir_in(&root).expect("bench dir");
            println!("dir {} ({} MiB per throughput run)", base.path().display(), mib);
            for mode in [IoMode::Direct, IoMode::Buffered] {
                for fsync in [FsyncPolicy::Never, FsyncPolicy::IntervalMs(100)] {
                    if wanted(mode, "throughput") {
                        let dir = base.path().join(format!("{mode}-{fsync}").replace(':', "-"));
                        throughput(dir, mode, fsync, mib).await;
                    }
                }
                if wanted(mode, "latency") {
                    latency(base.path().join(format!("{mode}-lat")), mode).await;
                }
            }
        })
        .expect("executor")
        .join();
    result.expect("bench thread");
}

fn config(mode: IoMode, fsync: FsyncPolicy) -> LogConfig {
    LogConfig { io_mode: mode, fsync, min_free_bytes: 0, ..LogConfig::default() }
}

fn one_batch(value_len: usize) -> Bytes {
    let mut b = BatchBuilder::with_capacity(value_len + 128);
    let value: Vec<u8> = (0..value_len).map(|i| (i * 31 % 251) as u8).collect();
    b.push(1, None, Some(&value), &[]);
    b.finish()
}

async fn throughput(dir: PathBuf, mode: IoMode, fsync: FsyncPolicy, mib: u64) {
    let log = Rc::new(PartitionLog::open(&dir, config(mode, fsync)).await.expect("open"));
    let batch = one_batch((1 << 20) - 64);
    let in_flight = in_flight();
    let per_task = mib / in_flight as u64;
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..in_flight {
        let (log, batch) = (log.clone(), batch.clone());
        tasks.push(glommio::spawn_local(async move {
            for _ in 0..per_task {
                log.append(BytesMut::from(&batch[..])).await.expect("append");
            }
        }));
    }
    for t in tasks {
        t.await;
    }
    let appended = start.elapsed();
    log.flush().await.expect("flush");
    let flushed = start.elapsed();
    let bytes = log.size_bytes() as f64;
    println!(
        "throughput mode={mode:<8} fsync={fsync:<12} 1MiB appends x{in_flight}: {:>7.0} MB/s acked, {:>7.0} MB/s incl. final fdatasync",
        bytes / appended.as_secs_f64() / 1e6,
        bytes / flushed.as_secs_f64() / 1e6
    );
    Rc::try_unwrap(log).ok().expect("sole owner").delete().await.expect("delete");
}

fn in_flight() -> usize {
    std::env::var("LOG_BENCH_IN_FLIGHT").ok().and_then(|s| s.parse().ok()).filter(|n| *n > 0).unwrap_or(IN_FLIGHT)
}

async fn latency(dir: PathBuf, mode: IoMode) {
    let log = PartitionLog::open(&dir, config(mode, FsyncPolicy::Always)).await.expect("open");
    let batch = one_batch(4096 - 64);
    assert!((4000..=4160).contains(&batch.len()), "~4 KiB batch, got {}", batch.len());
    let mut hist = hdrhistogram::Histogram::<u64>::new_with_bounds(1, 10_000_000, 3).expect("histogram");
    for i in 0..LATENCY_OPS + 200 {
        let t = Instant::now();
        log.append(BytesMut::from(&batch[..])).await.expect("append");
        if i >= 200 {
            hist.record(t.elapsed().as_micros() as u64).expect("record");
        }
    }
    println!(
        "latency    mode={mode:<8} fsync=always 4KiB appends: p50 {} us, p99 {} us, p99.9 {} us, max {} us ({} ops)",
        hist.value_at_quantile(0.5),
        hist.value_at_quantile(0.99),
        hist.value_at_quantile(0.999),
        hist.max(),
        hist.len()
    );
    log.delete().await.expect("delete");
}
