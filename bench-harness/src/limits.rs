//! The machine's raw limits, the denominators of docs/BENCHMARKS.md: loopback TCP
//! (single-stream throughput, 64 B ping-pong round trip, sendfile of a page-cached file)
//! measured in-process, and the disk (sequential O_DIRECT write and read bandwidth, 4 KiB
//! write + fdatasync latency) measured by running `fio`, the reference tool, and parsing
//! its JSON.
//!
//! Invariants: every loopback measurement stays on 127.0.0.1 and joins its helper thread
//! before returning; a missing or failing `fio` is reported as [`FioError`], never as a
//! number.

use std::io::{Read, Seek, SeekFrom, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde::Serialize;

/// Read and write size of the throughput loops.
const CHUNK: usize = 1 << 20;
/// The shell line that installs fio on Debian/Ubuntu.
pub const FIO_INSTALL_HINT: &str = "apt-get install -y fio";

/// Bytes moved over one loopback connection.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct StreamResult {
    /// Bytes the receiver read.
    pub bytes: u64,
    /// Bytes the sender wrote.
    pub sent: u64,
    pub seconds: f64,
    /// Received 10^6 bytes per second.
    pub mb_per_sec: f64,
}

/// Ping-pong round trips of `size`-byte messages (TCP_NODELAY).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct RttResult {
    pub size: usize,
    /// Round trips measured (after 10 % warm-up round trips).
    pub count: usize,
    pub p50_us: f64,
    pub p99_us: f64,
    pub p999_us: f64,
    pub max_us: f64,
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

fn join_sink(sink: std::thread::JoinHandle<std::io::Result<u64>>) -> std::io::Result<u64> {
    sink.join().map_err(|_| std::io::Error::other("loopback sink thread panicked"))?
}

fn stream_result(received: u64, sent: u64, start: Instant) -> StreamResult {
    let seconds = start.elapsed().as_secs_f64();
    StreamResult { bytes: received, sent, seconds, mb_per_sec: received as f64 / seconds / 1e6 }
}

/// Single-stream TCP throughput for `duration`: 1 MiB writes, the receiver reads 1 MiB chunks.
pub fn loopback_tcp(duration: Duration) -> std::io::Result<StreamResult> {
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
    let received = join_sink(sink)?;
    Ok(stream_result(received, sent, start))
}

/// `count` ping-pong round trips of `size`-byte messages (plus `count / 10` warm-up ones).
pub fn loopback_rtt(count: usize, size: usize) -> std::io::Result<RttResult> {
    if count == 0 || size == 0 {
        return Err(std::io::Error::new(std::io::ErrorKind::InvalidInput, "rtt count and size must be > 0"));
    }
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
    let mut samples_ns: Vec<u64> = Vec::with_capacity(count);
    for i in 0..count + count / 10 {
        let t = Instant::now();
        s.write_all(&buf)?;
        s.read_exact(&mut buf)?;
        if i >= count / 10 {
            samples_ns.push(t.elapsed().as_nanos() as u64);
        }
    }
    drop(s);
    echo.join().map_err(|_| std::io::Error::other("loopback echo thread panicked"))??;
    Ok(rtt_summary(size, samples_ns))
}

/// Percentiles (nearest rank below) of round-trip samples in ns; `samples` is not empty.
fn rtt_summary(size: usize, mut samples_ns: Vec<u64>) -> RttResult {
    samples_ns.sort_unstable();
    let q = |p: f64| samples_ns[((samples_ns.len() - 1) as f64 * p) as usize] as f64 / 1e3;
    RttResult { size, count: samples_ns.len(), p50_us: q(0.5), p99_us: q(0.99), p999_us: q(0.999), max_us: q(1.0) }
}

/// A page-cached file of `file_bytes` in `dir` sent over and over with sendfile(2) (std's
/// `io::copy` from a `File` to a `TcpStream` uses it on Linux) to a reading receiver, for
/// `duration`. The file is anonymous (removed when done).
pub fn loopback_sendfile(duration: Duration, file_bytes: u64, dir: &Path) -> std::io::Result<StreamResult> {
    if file_bytes == 0 {
        return Err(std::io::Error::new(std::io::ErrorKind::InvalidInput, "sendfile file size must be > 0"));
    }
    let mut file = tempfile::tempfile_in(dir)?;
    let block = vec![0x3Cu8; CHUNK];
    let mut left = file_bytes;
    while left > 0 {
        let n = left.min(CHUNK as u64) as usize;
        file.write_all(&block[..n])?;
        left -= n as u64;
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
    let received = join_sink(sink)?;
    Ok(stream_result(received, sent, start))
}

/// Why a fio measurement has no number.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum FioError {
    /// Not on the PATH (install it with [`FIO_INSTALL_HINT`]).
    #[error("fio missing")]
    Missing,
    #[error("fio failed: {0}")]
    Failed(String),
    #[error("cannot parse fio's JSON: {0}")]
    Parse(String),
}

/// `fio --version`, or [`FioError::Missing`] when fio is not on the PATH.
pub fn fio_version() -> Result<String, FioError> {
    match Command::new("fio").arg("--version").output() {
        Ok(out) if out.status.success() => Ok(String::from_utf8_lossy(&out.stdout).trim().to_string()),
        Ok(out) => Err(FioError::Failed(String::from_utf8_lossy(&out.stderr).trim().to_string())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(FioError::Missing),
        Err(e) => Err(FioError::Failed(e.to_string())),
    }
}

/// Sizes and durations of the fio jobs.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct FioPlan {
    /// `--runtime` of every job (time based).
    pub seconds: u64,
    /// File size of the sequential write job (it wraps around within it).
    pub seq_write_bytes: u64,
    /// File size of the sequential read job (laid out by fio on first use).
    pub seq_read_bytes: u64,
    /// File size of the 4 KiB write + fdatasync job.
    pub sync_bytes: u64,
}

/// Bandwidth of a sequential fio job.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct FioBandwidth {
    /// 10^6 bytes per second.
    pub mb_per_sec: f64,
    pub io_bytes: u64,
    pub runtime_ms: u64,
}

/// The 4 KiB write + fdatasync job: fio reports the write and the fdatasync separately.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct FioSync {
    /// write + fdatasync pairs per second.
    pub ops_per_sec: f64,
    pub fdatasync_p50_us: f64,
    pub fdatasync_p99_us: f64,
    pub fdatasync_max_us: f64,
    pub write_p50_us: f64,
    pub write_p99_us: f64,
}

/// fio arguments common to every job: one file, time based, JSON on stdout.
fn fio_base(name: &str, file: &Path, bytes: u64, seconds: u64) -> Vec<String> {
    vec![
        format!("--name={name}"),
        format!("--filename={}", file.display()),
        format!("--size={bytes}"),
        format!("--runtime={seconds}"),
        "--time_based".into(),
        "--output-format=json".into(),
    ]
}

/// Runs fio with `args` and returns its JSON document.
fn run_fio(args: &[String]) -> Result<serde_json::Value, FioError> {
    let out = Command::new("fio").args(args).output().map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => FioError::Missing,
        _ => FioError::Failed(e.to_string()),
    })?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        let why = if stderr.trim().is_empty() { stdout.trim() } else { stderr.trim() };
        return Err(FioError::Failed(format!("{} ({})", why, out.status)));
    }
    parse_fio_document(&stdout)
}

/// Parses fio's `--output-format=json` stdout (fio may print notes before the document) and
/// checks the first job reported no error.
pub fn parse_fio_document(stdout: &str) -> Result<serde_json::Value, FioError> {
    let start = stdout.find('{').ok_or_else(|| FioError::Parse("no JSON document on stdout".into()))?;
    let doc: serde_json::Value = serde_json::from_str(&stdout[start..]).map_err(|e| FioError::Parse(e.to_string()))?;
    let job = first_job(&doc)?;
    match job.get("error").and_then(serde_json::Value::as_i64) {
        Some(0) | None => Ok(doc),
        Some(code) => Err(FioError::Failed(format!("job error {code}"))),
    }
}

fn first_job(doc: &serde_json::Value) -> Result<&serde_json::Value, FioError> {
    doc.get("jobs").and_then(|j| j.get(0)).ok_or_else(|| FioError::Parse("no jobs[0]".into()))
}

fn field<'a>(v: &'a serde_json::Value, path: &[&str]) -> Result<&'a serde_json::Value, FioError> {
    path.iter().try_fold(v, |v, key| v.get(key)).ok_or_else(|| FioError::Parse(format!("no field {}", path.join("."))))
}

fn number(v: &serde_json::Value, path: &[&str]) -> Result<f64, FioError> {
    field(v, path)?.as_f64().ok_or_else(|| FioError::Parse(format!("{} is not a number", path.join("."))))
}

/// Bandwidth of the `read` or `write` part of a fio document's first job.
pub fn parse_fio_bandwidth(doc: &serde_json::Value, direction: &str) -> Result<FioBandwidth, FioError> {
    let job = first_job(doc)?;
    let io_bytes = number(job, &[direction, "io_bytes"])? as u64;
    if io_bytes == 0 {
        return Err(FioError::Failed(format!("fio did no {direction} IO")));
    }
    Ok(FioBandwidth {
        mb_per_sec: number(job, &[direction, "bw_bytes"])? / 1e6,
        io_bytes,
        runtime_ms: number(job, &[direction, "runtime"])? as u64,
    })
}

/// The write + fdatasync job's numbers (percentiles in ns in fio's JSON, µs here).
pub fn parse_fio_sync(doc: &serde_json::Value) -> Result<FioSync, FioError> {
    let job = first_job(doc)?;
    let us = |path: &[&str]| number(job, path).map(|ns| ns / 1e3);
    let ops_per_sec = number(job, &["write", "iops"])?;
    if ops_per_sec <= 0.0 {
        return Err(FioError::Failed("fio did no write + fdatasync".into()));
    }
    Ok(FioSync {
        ops_per_sec,
        fdatasync_p50_us: us(&["sync", "lat_ns", "percentile", "50.000000"])?,
        fdatasync_p99_us: us(&["sync", "lat_ns", "percentile", "99.000000"])?,
        fdatasync_max_us: us(&["sync", "lat_ns", "max"])?,
        write_p50_us: us(&["write", "clat_ns", "percentile", "50.000000"])?,
        write_p99_us: us(&["write", "clat_ns", "percentile", "99.000000"])?,
    })
}

/// Paths of the fio files in a directory (removed by [`remove_fio_files`]).
fn fio_file(dir: &Path, job: &str) -> PathBuf {
    dir.join(format!("strand-suite-{job}.fio"))
}

/// Sequential 1 MiB O_DIRECT writes, libaio, iodepth 8.
pub fn fio_seq_write(dir: &Path, plan: &FioPlan) -> Result<FioBandwidth, FioError> {
    seq_write_job(dir, plan, "seqwrite", &[])
}

/// The sequential write job named `job` with `extra` fio arguments; its file is removed after.
fn seq_write_job(dir: &Path, plan: &FioPlan, job: &str, extra: &[String]) -> Result<FioBandwidth, FioError> {
    let mut args = fio_base(job, &fio_file(dir, job), plan.seq_write_bytes, plan.seconds);
    args.extend(["--rw=write", "--bs=1M", "--direct=1", "--ioengine=libaio", "--iodepth=8"].map(String::from));
    args.extend_from_slice(extra);
    let result = run_fio(&args).and_then(|doc| parse_fio_bandwidth(&doc, "write"));
    let _ = std::fs::remove_file(fio_file(dir, job));
    result
}

/// The node's default segment size: the flushed write limit syncs once per this many bytes.
pub const NODE_SEGMENT_BYTES: u64 = 1 << 30;

/// Like [`fio_seq_write`], with an fdatasync after every [`NODE_SEGMENT_BYTES`] and at the
/// end: the write pattern of a log that makes each segment durable at its roll, as the node
/// (and Kafka) does under fsync=never. On a disk whose cache flush is slow (the project's VM:
/// about 1 s per GiB written since the last flush, during which writes wait) this is the
/// speed a segment log can sustain; the plain limit, which never flushes, is not.
pub fn fio_seq_write_flushed(dir: &Path, plan: &FioPlan) -> Result<FioBandwidth, FioError> {
    // `--fsync=N` counts writes: 1 MiB each.
    let flush = [format!("--fsync={}", NODE_SEGMENT_BYTES >> 20), "--end_fsync=1".into()];
    seq_write_job(dir, plan, "seqwriteflushed", &flush)
}

/// Sequential 4 MiB O_DIRECT reads, libaio, iodepth 8 (cold reads: the page cache is bypassed).
/// 4 MiB, not 1 MiB: the kernel's readahead, which serves a cold catch-up, issues 4 MiB
/// requests, and on the virtio disk measured (2026-12-05) 1 MiB O_DIRECT reads reached only
/// 0.75–0.8× of 4 MiB ones (803–844 against 1039–1106 MB/s), so a 1 MiB limit flattered the
/// node (catch-up-cold read 1.25× it). The limit is the faster request size.
/// fio lays the file out on first use; it is kept for later runs until [`remove_fio_files`].
pub fn fio_seq_read(dir: &Path, plan: &FioPlan) -> Result<FioBandwidth, FioError> {
    let mut args = fio_base("seqread", &fio_file(dir, "seqread"), plan.seq_read_bytes, plan.seconds);
    args.extend(["--rw=read", "--bs=4M", "--direct=1", "--ioengine=libaio", "--iodepth=8"].map(String::from));
    run_fio(&args).and_then(|doc| parse_fio_bandwidth(&doc, "read"))
}

/// 4 KiB buffered writes, each followed by fdatasync (psync engine, one at a time).
pub fn fio_fdatasync(dir: &Path, plan: &FioPlan) -> Result<FioSync, FioError> {
    let mut args = fio_base("fsync4k", &fio_file(dir, "fsync4k"), plan.sync_bytes, plan.seconds);
    args.extend(["--rw=write", "--bs=4k", "--fdatasync=1", "--ioengine=sync"].map(String::from));
    let result = run_fio(&args).and_then(|doc| parse_fio_sync(&doc));
    let _ = std::fs::remove_file(fio_file(dir, "fsync4k"));
    result
}

/// Removes every file the fio jobs may have left in `dir`.
pub fn remove_fio_files(dir: &Path) {
    for job in ["seqwrite", "seqwriteflushed", "seqread", "fsync4k"] {
        let _ = std::fs::remove_file(fio_file(dir, job));
    }
}

/// Filesystem type of the mount holding `path`, from `/proc/self/mountinfo`.
pub fn filesystem_type(path: &Path) -> Option<String> {
    let path = path.canonicalize().ok()?;
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    mount_fs_type(&mountinfo, &path)
}

/// The fs type of the longest mount point that contains `path` in `mountinfo` text
/// (`ID PARENT MAJ:MIN ROOT MOUNTPOINT OPTIONS [OPTIONAL...] - FSTYPE SOURCE SUPER`).
pub fn mount_fs_type(mountinfo: &str, path: &Path) -> Option<String> {
    let mut best: Option<(usize, String)> = None;
    for line in mountinfo.lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let (Some(mount_point), Some(dash)) = (fields.get(4), fields.iter().position(|f| *f == "-")) else {
            continue;
        };
        let Some(fs_type) = fields.get(dash + 1) else { continue };
        let mount_point = PathBuf::from(unescape_mount(mount_point));
        if path.starts_with(&mount_point) {
            let depth = mount_point.components().count();
            // A later mount on the same point hides an earlier one: `>=` keeps the last.
            if best.as_ref().is_none_or(|(d, _)| depth >= *d) {
                best = Some((depth, fs_type.to_string()));
            }
        }
    }
    best.map(|(_, fs)| fs)
}

/// Undoes mountinfo's octal escapes (`\040` for a space, `\011`, `\012`, `\134`).
fn unescape_mount(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let octal =
            bytes.get(i + 1..i + 4).filter(|d| bytes[i] == b'\\' && d.iter().all(|c| (b'0'..=b'7').contains(c)));
        match octal {
            Some(d) => {
                out.push((d[0] - b'0') * 64 + (d[1] - b'0') * 8 + (d[2] - b'0'));
                i += 4;
            }
            None => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// True for filesystems that live in memory (their "disk" numbers would be fiction).
pub fn is_memory_fs(fs_type: &str) -> bool {
    matches!(fs_type, "tmpfs" | "ramfs")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_measurements_return_numbers() {
        let t = loopback_tcp(Duration::from_millis(50)).unwrap();
        assert!(t.bytes > 0 && t.bytes == t.sent && t.mb_per_sec > 0.0, "{t:?}");
        let r = loopback_rtt(200, 64).unwrap();
        assert_eq!((r.size, r.count), (64, 200));
        assert!(r.p50_us > 0.0 && r.p50_us <= r.p99_us && r.p99_us <= r.p999_us && r.p999_us <= r.max_us, "{r:?}");
        let dir = tempfile::tempdir().unwrap();
        let s = loopback_sendfile(Duration::from_millis(50), 3 << 20 | 17, dir.path()).unwrap();
        assert!(s.bytes > 0 && s.bytes == s.sent && s.bytes.is_multiple_of((3 << 20) | 17), "{s:?}");
        assert!(loopback_rtt(0, 64).is_err());
    }

    #[test]
    fn rtt_percentiles_nearest_rank() {
        let r = rtt_summary(64, (1..=1000u64).rev().map(|us| us * 1000).collect());
        assert_eq!((r.p50_us, r.p99_us, r.p999_us, r.max_us), (500.0, 990.0, 999.0, 1000.0));
    }

    const FIO_SYNC: &str = r#"note: both iodepth >= 1 and synchronous I/O engine are selected
{
  "fio version" : "fio-3.33",
  "jobs" : [ {
      "jobname" : "fsync4k", "error" : 0,
      "read" : { "io_bytes" : 0, "bw_bytes" : 0, "iops" : 0.0, "runtime" : 0 },
      "write" : { "io_bytes" : 2654208, "bw_bytes" : 2614856, "iops" : 638.40399, "runtime" : 1015,
        "clat_ns" : { "percentile" : { "50.000000" : 11968, "99.000000" : 42240 } } },
      "sync" : { "total_ios" : 648, "lat_ns" : { "min" : 100, "max" : 7962624, "mean" : 1.0,
        "percentile" : { "50.000000" : 199680, "99.000000" : 5406720 } } }
  } ]
}"#;

    #[test]
    fn fio_sync_json_parses() {
        let doc = parse_fio_document(FIO_SYNC).unwrap();
        let s = parse_fio_sync(&doc).unwrap();
        assert_eq!(s.ops_per_sec, 638.40399);
        assert_eq!((s.fdatasync_p50_us, s.fdatasync_p99_us, s.fdatasync_max_us), (199.68, 5406.72, 7962.624));
        assert_eq!((s.write_p50_us, s.write_p99_us), (11.968, 42.24));
        let w = parse_fio_bandwidth(&doc, "write").unwrap();
        assert_eq!((w.mb_per_sec, w.io_bytes, w.runtime_ms), (2.614856, 2654208, 1015));
        assert!(matches!(parse_fio_bandwidth(&doc, "read"), Err(FioError::Failed(_))), "no reads: no number");
    }

    #[test]
    fn fio_errors_are_reported() {
        assert!(matches!(parse_fio_document("fio: no such engine"), Err(FioError::Parse(_))));
        let failed = r#"{"jobs":[{"error":5,"write":{"io_bytes":0}}]}"#;
        assert!(matches!(parse_fio_document(failed), Err(FioError::Failed(_))));
        let doc = parse_fio_document(r#"{"jobs":[{"error":0,"write":{"iops":1.0}}]}"#).unwrap();
        assert!(matches!(parse_fio_sync(&doc), Err(FioError::Parse(ref f)) if f.contains("sync.lat_ns")));
        assert_eq!(FioError::Missing.to_string(), "fio missing");
    }

    #[test]
    fn mount_lookup_picks_the_longest_mount_point() {
        let mountinfo = "\
22 1 252:0 / / rw,relatime shared:1 - ext4 /dev/vda rw
30 22 0:26 / /tmp rw,nosuid shared:5 - tmpfs tmpfs rw
31 22 0:27 / /mnt/my\\040disk rw - xfs /dev/vdb rw
32 30 252:0 /x /tmp/bound rw - ext4 /dev/vda rw";
        let fs = |p: &str| mount_fs_type(mountinfo, Path::new(p));
        assert_eq!(fs("/work/target/bench-suite").as_deref(), Some("ext4"));
        assert_eq!(fs("/tmp/x").as_deref(), Some("tmpfs"));
        assert_eq!(fs("/tmpfoo").as_deref(), Some("ext4"), "component-wise prefix");
        assert_eq!(fs("/tmp/bound/a").as_deref(), Some("ext4"));
        assert_eq!(fs("/mnt/my disk/a").as_deref(), Some("xfs"));
        assert!(is_memory_fs("tmpfs") && !is_memory_fs("ext4"));
        assert!(filesystem_type(Path::new("/")).is_some());
    }
}
