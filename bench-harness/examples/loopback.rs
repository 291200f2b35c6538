//! Raw loopback limits of this machine, the denominators of docs/BENCHMARKS.md; a thin
//! command-line wrapper over [`strand_bench::limits`] (which `strand-bench suite` calls
//! in-process):
//!
//! - `tcp SECONDS`: single-stream TCP throughput, 1 MiB writes, receiver reads 1 MiB chunks;
//! - `rtt COUNT SIZE`: ping-pong round-trip latency of SIZE-byte messages (TCP_NODELAY);
//! - `sendfile SECONDS FILE_MIB DIR`: a page-cached file sent with sendfile(2) to a reading
//!   receiver.
//!
//! Each mode prints one JSON object on stdout. Everything stays on 127.0.0.1.
#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::time::Duration;

use strand_bench::limits::{loopback_rtt, loopback_sendfile, loopback_tcp};

fn main() -> std::io::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let num = |i: usize, default: u64| args.get(i).and_then(|s| s.parse().ok()).unwrap_or(default);
    let (mode, result) = match args.first().map(String::as_str) {
        Some("tcp") => ("tcp", serde_json::to_value(loopback_tcp(Duration::from_secs(num(1, 5)))?)),
        Some("rtt") => ("rtt", serde_json::to_value(loopback_rtt(num(1, 20_000) as usize, num(2, 64) as usize)?)),
        Some("sendfile") => {
            let dir = args.get(3).map(PathBuf::from).unwrap_or_else(std::env::temp_dir);
            (
                "sendfile",
                serde_json::to_value(loopback_sendfile(Duration::from_secs(num(1, 5)), num(2, 512) << 20, &dir)?),
            )
        }
        _ => {
            eprintln!("usage: loopback tcp SECONDS | rtt COUNT SIZE | sendfile SECONDS FILE_MIB DIR");
            std::process::exit(2);
        }
    };
    let mut object = result.map_err(std::io::Error::other)?;
    if let Some(map) = object.as_object_mut() {
        map.insert("mode".into(), mode.into());
    }
    println!("{object}");
    Ok(())
}
