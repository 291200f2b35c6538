//! Raw loopback limits of this machine, the denominators of docs/BENCHMARKS.md:
//!
//! - `tcp SECONDS`: single-stream TCP throughput, 1 MiB writes, receiver reads 1 MiB chunks;
//! - `rtt COUNT SIZE`: ping-pong round-trip latency of SIZE-byte messages (TCP_NODELAY);
//! - `sendfile SECONDS FILE_MIB DIR`: a page-cached file sent with sendfile(2) (std's
//!   `io::copy` from a `File` to a `TcpStream` uses it on Linux) to a reading receiver.
//!
//! Each mode prints one JSON object on stdout. Everything stays on 127.0.0.1.
#![forbid(unsafe_code)]

use std::io::{Read, Seek, SeekFrom, Write};
use std::net::{TcpListener, TcpStream};
use std::time::{Duration, Instant};

const CHUNK: usize = 1 << 20;

fn main() -> std::io::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let num = |i: usize, default: u64| args.get(i).and_then(|s| s.parse().ok()).unwrap_or(default);
    match args.first().map(String::as_str) {
        Some("tcp") => tcp(Duration::from_secs(num(1, 5))),
        Some("rtt") => rtt(num(1, 20_000), num(2, 64) as usize),
        Some("sendfile") => {
            let dir = args.get(3).cloned().unwrap_or_else(|| std::env::temp_dir().display().to_string());
            sendfile(Duration::from_secs(num(1, 5)), num(2, 512), &dir)
        }
        _ => {
            eprintln!("usage: loopback tcp SECONDS | rtt COUNT SIZE | sendfile SECONDS FILE_MIB DIR");
            std::process::exit(2);
        }
    }
}

/// Accepts one connection and reads until EOF; returns the bytes read.
fn spawn_sink(listener: TcpListener) -> std::thread::JoinHandle<std::io::Result<u64>> {
    std::thread::spawn(move || {
        let (mut s, _) = listener.accept()?;
        let mut buf = vec![0u8; CHUNK];
        let mut total = 0u64;
        loop {
            match s.read(&mut buf)? {
                0 => return Ok(total),
                n => total += n as u64,
            }
        }
    })
}

fn tcp(duration: Duration) -> std::io::Result<()> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    let sink = spawn_sink(listener);
    let mut s = TcpStream::connect(addr)?;
    s.set_nodelay(true)?;
    let buf = vec![0xA5u8; CHUNK];
    let start = Instant::now();
    let mut sent = 0u64;
    while start.elapsed() < duration {
        s.write_all(&buf)?;
        sent += CHUNK as u64;
    }
    drop(s);
    let received = sink.join().map_err(|_| std::io::Error::other("sink panicked"))??;
    let secs = start.elapsed().as_secs_f64();
    println!(
        r#"{{"mode":"tcp","bytes":{received},"sent":{sent},"seconds":{secs:.3},"mb_per_sec":{:.1}}}"#,
        received as f64 / secs / 1e6
    );
    Ok(())
}

fn rtt(count: u64, size: usize) -> std::io::Result<()> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    let echo = std::thread::spawn(move || -> std::io::Result<()> {
        let (mut s, _) = listener.accept()?;
        s.set_nodelay(true)?;
        let mut buf = vec![0u8; size];
        loop {
            if s.read_exact(&mut buf).is_err() {
                return Ok(());
            }
            s.write_all(&buf)?;
        }
    });
    let mut s = TcpStream::connect(addr)?;
    s.set_nodelay(true)?;
    let mut buf = vec![7u8; size];
    let mut samples_ns: Vec<u64> = Vec::with_capacity(count as usize);
    for i in 0..count + count / 10 {
        let t = Instant::now();
        s.write_all(&buf)?;
        s.read_exact(&mut buf)?;
        if i >= count / 10 {
            samples_ns.push(t.elapsed().as_nanos() as u64);
        }
    }
    drop(s);
    let _ = echo.join();
    samples_ns.sort_unstable();
    let q = |p: f64| samples_ns[((samples_ns.len() - 1) as f64 * p) as usize] as f64 / 1e3;
    println!(
        r#"{{"mode":"rtt","size":{size},"count":{},"p50_us":{:.1},"p99_us":{:.1},"p999_us":{:.1}}}"#,
        samples_ns.len(),
        q(0.5),
        q(0.99),
        q(0.999)
    );
    Ok(())
}

fn sendfile(duration: Duration, file_mib: u64, dir: &str) -> std::io::Result<()> {
    let mut file = tempfile::tempfile_in(dir)?;
    let block = vec![0x3Cu8; CHUNK];
    for _ in 0..file_mib {
        file.write_all(&block)?;
    }
    // Read it once so the page cache holds it, as the node's tail segments would be.
    file.seek(SeekFrom::Start(0))?;
    std::io::copy(&mut file, &mut std::io::sink())?;
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    let sink = spawn_sink(listener);
    let mut s = TcpStream::connect(addr)?;
    let start = Instant::now();
    let mut sent = 0u64;
    while start.elapsed() < duration {
        file.seek(SeekFrom::Start(0))?;
        sent += std::io::copy(&mut file, &mut s)?;
    }
    drop(s);
    let received = sink.join().map_err(|_| std::io::Error::other("sink panicked"))??;
    let secs = start.elapsed().as_secs_f64();
    println!(
        r#"{{"mode":"sendfile","bytes":{received},"sent":{sent},"seconds":{secs:.3},"mb_per_sec":{:.1}}}"#,
        received as f64 / secs / 1e6
    );
    Ok(())
}
