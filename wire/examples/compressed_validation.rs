//! Measures what the node's produce-time check of a compressed batch costs: header and
//! CRC (`Batch::parse`), then bounded decompression and the record check
//! (`Batch::check_compressed`), for gzip, snappy, lz4 and zstd batches of 16 KiB and 1 MiB of
//! 1000-byte records. Prints ns per batch and CPU seconds per GB of records.
//!
//! `cargo run --release -p strand-wire --example compressed_validation`

use std::time::{Duration, Instant};

use strand_wire::batch::{self, Batch, BatchBuilder, Compression, DECOMPRESSED_LEN_MAX};

/// Each case runs at least this long.
const RUN_MIN: Duration = Duration::from_millis(1500);

fn main() {
    println!("codec\tbatch\trecords\tcompressed_bytes\tns_per_batch\tcpu_s_per_gb\tplain_parse_ns");
    for codec in [Compression::Gzip, Compression::Snappy, Compression::Lz4, Compression::Zstd] {
        for records_bytes in [16 * 1024, 1024 * 1024] {
            run(codec, records_bytes);
        }
    }
}

/// Record values that compress like log lines (repeated words, a counter), not like zeros.
fn value(i: usize) -> Vec<u8> {
    let words = ["alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel"];
    let mut v = format!("{i:010} ").into_bytes();
    let mut k = i;
    while v.len() < 1000 {
        k = k.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
        v.extend_from_slice(words[(k >> 33) % words.len()].as_bytes());
        v.push(b' ');
    }
    v.truncate(1000);
    v
}

fn run(codec: Compression, records_bytes: usize) {
    let count = records_bytes / 1000;
    let mut b = BatchBuilder::new();
    for i in 0..count {
        b.push(1_700_000_000_000, None, Some(&value(i)), &[]);
    }
    let plain_len = b.records_section().len();
    let packed = batch::compress(codec, b.records_section());
    let plain = {
        let mut p = BatchBuilder::new();
        for i in 0..count {
            p.push(1_700_000_000_000, None, Some(&value(i)), &[]);
        }
        p.finish()
    };
    let batch = b.finish_compressed(codec, &packed);
    let (iterations, elapsed) = time(|| {
        let parsed = Batch::parse(&batch).expect("valid");
        parsed.check_compressed(DECOMPRESSED_LEN_MAX).expect("valid content");
    });
    let (plain_iterations, plain_elapsed) = time(|| {
        Batch::parse(&plain).expect("valid");
    });
    let ns = elapsed.as_nanos() as f64 / iterations as f64;
    let plain_ns = plain_elapsed.as_nanos() as f64 / plain_iterations as f64;
    let cpu_s_per_gb = ns * 1e-9 * (1e9 / plain_len as f64);
    let label = if records_bytes >= 1 << 20 { "1MiB" } else { "16KiB" };
    println!("{}\t{label}\t{count}\t{}\t{ns:.0}\t{cpu_s_per_gb:.3}\t{plain_ns:.0}", codec.name(), batch.len(),);
}

/// Runs `f` repeatedly for at least [`RUN_MIN`]; (iterations, elapsed).
fn time(mut f: impl FnMut()) -> (u64, Duration) {
    let start = Instant::now();
    let mut n = 0u64;
    while start.elapsed() < RUN_MIN || n < 10 {
        f();
        n += 1;
    }
    (n, start.elapsed())
}
