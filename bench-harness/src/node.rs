//! The embedded node: spawns `strand-node` on loopback in a temp dir, learns its ports from
//! the `strand-node listening: …` line on stderr, samples its CPU and RSS from `/proc`, and
//! stops it and removes the data dir at the end.
//!
//! Invariants: a spawned node is always stopped — on [`EmbeddedNode::stop`], on drop, and
//! (because release builds abort on panic, which skips drops) from a panic hook that kills
//! every registered child. The node runs in its own process group so a terminal CTRL-C
//! reaches only the harness, which then prints its results and stops the node itself.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, Once};
use std::time::{Duration, Instant};

/// Longest the node may take to print its listening line.
pub const STARTUP_TIMEOUT: Duration = Duration::from_secs(30);
/// Longest a SIGTERM'd node may take to exit before it is killed.
pub const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(5);
/// Node stderr lines kept for error reports.
const STDERR_TAIL_LINES: usize = 20;
/// Linux reports `/proc/PID/stat` times in USER_HZ, which is 100 on every architecture it
/// exports to user space (the kernel's `CLOCKS_PER_SEC` ABI).
const USER_HZ: f64 = 100.0;

/// Why the embedded node could not be used.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    #[error("strand-node binary not found at {0}: build it with `cargo build --release -p strand-node` (or pass --node-bin)")]
    BinaryMissing(PathBuf),
    #[error("cannot start strand-node: {0}")]
    Spawn(std::io::Error),
    #[error("strand-node exited before listening; last stderr lines:\n{0}")]
    EarlyExit(String),
    #[error("strand-node did not print its listening line within {0:?}")]
    StartupTimeout(Duration),
    #[error("cannot parse strand-node listening line {0:?}")]
    BadListenLine(String),
}

/// Addresses a node announced on stderr.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listening {
    pub public: SocketAddr,
    pub admin: SocketAddr,
    pub shard_ports: Vec<u16>,
    /// The Kafka-protocol port (`kafka=`; absent or `off` = none).
    pub kafka: Option<SocketAddr>,
}

/// Parses `… strand-node listening: public=A admin=B shards=P,P` (anything may precede it,
/// e.g. a tracing timestamp and level).
pub fn parse_listening_line(line: &str) -> Option<Listening> {
    let rest = &line[line.find("strand-node listening:")? + "strand-node listening:".len()..];
    let (mut public, mut admin, mut shard_ports, mut kafka) = (None, None, Vec::new(), None);
    for field in rest.split_whitespace() {
        let (key, value) = field.split_once('=')?;
        match key {
            "public" => public = value.parse().ok(),
            "admin" => admin = value.parse().ok(),
            "kafka" => kafka = value.parse().ok(),
            "shards" => {
                shard_ports =
                    value.split(',').filter(|s| !s.is_empty()).map(str::parse).collect::<Result<_, _>>().ok()?
            }
            _ => {}
        }
    }
    Some(Listening { public: public?, admin: admin?, shard_ports, kafka })
}

/// CPU time and peak RSS of a process.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ProcSample {
    pub cpu_seconds: f64,
    pub rss_peak_bytes: u64,
}

/// Parses utime + stime (fields 14 and 15) from `/proc/PID/stat` text, in seconds.
pub fn parse_proc_stat_cpu(stat: &str) -> Option<f64> {
    // The command name (field 2) may contain spaces and parentheses: fields resume after the last ')'.
    let after = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = after.split_whitespace().collect();
    // `after` starts at field 3 (state), so field N is at index N - 3.
    let utime: u64 = fields.get(14 - 3)?.parse().ok()?;
    let stime: u64 = fields.get(15 - 3)?.parse().ok()?;
    Some((utime + stime) as f64 / USER_HZ)
}

/// Parses `VmHWM:   1234 kB` from `/proc/PID/status` text, in bytes.
pub fn parse_vm_hwm(status: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// Samples a live process, or `None` if it is gone or `/proc` is unreadable.
pub fn sample_process(pid: u32) -> Option<ProcSample> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    Some(ProcSample { cpu_seconds: parse_proc_stat_cpu(&stat)?, rss_peak_bytes: parse_vm_hwm(&status)? })
}

/// Children the panic hook must kill.
static CHILDREN: Mutex<Vec<u32>> = Mutex::new(Vec::new());
static HOOK: Once = Once::new();

fn install_panic_hook() {
    HOOK.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if let Ok(pids) = CHILDREN.lock() {
                for pid in pids.iter() {
                    let _ = Command::new("kill").arg("-KILL").arg(pid.to_string()).status();
                }
            }
            previous(info);
        }));
    });
}

/// A running strand-node owned by this process.
pub struct EmbeddedNode {
    child: Child,
    data_dir: Option<tempfile::TempDir>,
    pub listening: Listening,
    stderr_tail: Arc<Mutex<Vec<String>>>,
}

impl EmbeddedNode {
    /// The default binary location: next to the running executable.
    pub fn default_binary() -> std::io::Result<PathBuf> {
        let exe = std::env::current_exe()?;
        let dir = exe.parent().ok_or_else(|| std::io::Error::other("executable has no parent directory"))?;
        // Test binaries live in target/<profile>/deps; the node binary is one level up.
        let beside = dir.join("strand-node");
        if !beside.exists() && dir.ends_with("deps") {
            if let Some(up) = dir.parent() {
                return Ok(up.join("strand-node"));
            }
        }
        Ok(beside)
    }

    /// Starts `binary` with a fresh temp data dir (inside `data_parent`, default the system
    /// temp dir) on loopback ephemeral ports.
    pub fn start(
        binary: &Path,
        io_mode: &str,
        fsync: &str,
        extra_args: &[String],
        data_parent: Option<&Path>,
    ) -> Result<EmbeddedNode, NodeError> {
        if !binary.is_file() {
            return Err(NodeError::BinaryMissing(binary.to_path_buf()));
        }
        install_panic_hook();
        let mut builder = tempfile::Builder::new();
        builder.prefix("strand-bench-");
        let data_dir = match data_parent {
            Some(parent) => builder.tempdir_in(parent),
            None => builder.tempdir(),
        }
        .map_err(NodeError::Spawn)?;
        let mut child = Command::new(binary)
            .arg("--data-dir")
            .arg(data_dir.path())
            .args([
                "--listen",
                "127.0.0.1:0",
                "--admin",
                "127.0.0.1:0",
                "--kafka-listen",
                "127.0.0.1:0",
                "--shard-port-base",
                "0",
            ])
            .args(["--io-mode", io_mode, "--fsync", fsync])
            .args(extra_args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .process_group(0)
            .spawn()
            .map_err(NodeError::Spawn)?;
        if let Ok(mut pids) = CHILDREN.lock() {
            pids.push(child.id());
        }
        let stderr_tail = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = mpsc::channel();
        if let Some(stderr) = child.stderr.take() {
            let tail = Arc::clone(&stderr_tail);
            std::thread::spawn(move || drain_stderr(stderr, tx, tail));
        }
        let mut node = EmbeddedNode { child, data_dir: Some(data_dir), listening: placeholder(), stderr_tail };
        node.listening = node.await_listening(&rx)?;
        Ok(node)
    }

    fn await_listening(&mut self, rx: &mpsc::Receiver<String>) -> Result<Listening, NodeError> {
        let deadline = Instant::now() + STARTUP_TIMEOUT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left.max(Duration::from_millis(1))) {
                Ok(line) => return parse_listening_line(&line).ok_or(NodeError::BadListenLine(line)),
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    let _ = self.child.wait();
                    return Err(NodeError::EarlyExit(self.stderr_tail()));
                }
                Err(mpsc::RecvTimeoutError::Timeout) if Instant::now() >= deadline => {
                    return Err(NodeError::StartupTimeout(STARTUP_TIMEOUT));
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {}
            }
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The node's data directory.
    pub fn data_dir(&self) -> Option<&Path> {
        self.data_dir.as_ref().map(|d| d.path())
    }

    /// The last lines the node wrote to stderr.
    pub fn stderr_tail(&self) -> String {
        self.stderr_tail.lock().map(|t| t.join("\n")).unwrap_or_default()
    }

    /// CPU and peak RSS now.
    pub fn sample(&self) -> Option<ProcSample> {
        sample_process(self.pid())
    }

    /// SIGTERM, wait up to [`SHUTDOWN_TIMEOUT`], then SIGKILL; removes the data dir.
    pub fn stop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = Command::new("kill").arg("-TERM").arg(self.pid().to_string()).status();
            let deadline = Instant::now() + SHUTDOWN_TIMEOUT;
            while matches!(self.child.try_wait(), Ok(None)) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        if let Ok(mut pids) = CHILDREN.lock() {
            let pid = self.pid();
            pids.retain(|p| *p != pid);
        }
        if let Some(dir) = self.data_dir.take() {
            let _ = dir.close();
        }
    }
}

impl Drop for EmbeddedNode {
    fn drop(&mut self) {
        self.stop();
    }
}

fn placeholder() -> Listening {
    let unspecified = SocketAddr::from(([127, 0, 0, 1], 0));
    Listening { public: unspecified, admin: unspecified, shard_ports: Vec::new(), kafka: None }
}

/// Forwards the listening line once, keeps a tail of stderr, and drains the pipe forever so
/// the node never blocks on a full pipe.
fn drain_stderr(stderr: std::process::ChildStderr, tx: mpsc::Sender<String>, tail: Arc<Mutex<Vec<String>>>) {
    let mut announced = false;
    for line in BufReader::new(stderr).lines() {
        let Ok(line) = line else { break };
        if !announced && line.contains("strand-node listening:") {
            announced = true;
            let _ = tx.send(line.clone());
        }
        if let Ok(mut t) = tail.lock() {
            if t.len() == STDERR_TAIL_LINES {
                t.remove(0);
            }
            t.push(line);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listening_line_parses_with_tracing_prefix() {
        let line = "2026-01-01T00:00:00Z  INFO strand_node: strand-node listening: public=127.0.0.1:40001 \
                    admin=127.0.0.1:40002 shards=40003,40004 kafka=127.0.0.1:40005";
        let l = parse_listening_line(line).unwrap();
        assert_eq!(l.public, "127.0.0.1:40001".parse().unwrap());
        assert_eq!(l.kafka, Some("127.0.0.1:40005".parse().unwrap()));
        assert_eq!(l.admin, "127.0.0.1:40002".parse().unwrap());
        assert_eq!(l.shard_ports, vec![40003, 40004]);
        let no_shards = parse_listening_line("strand-node listening: public=127.0.0.1:1 admin=127.0.0.1:2 shards=");
        let no_shards = no_shards.unwrap();
        assert_eq!((no_shards.shard_ports, no_shards.kafka), (Vec::<u16>::new(), None));
        let off = parse_listening_line("strand-node listening: public=127.0.0.1:1 admin=127.0.0.1:2 shards= kafka=off");
        assert_eq!(off.unwrap().kafka, None);
        assert!(parse_listening_line("strand-node listening: admin=127.0.0.1:2").is_none());
        assert!(parse_listening_line("hello").is_none());
    }

    #[test]
    fn proc_parsing() {
        let stat = "1234 (strand (node)) S 1 2 3 4 5 6 7 8 9 10 250 50 0 0 20 0 3 0 100 1000 200";
        assert_eq!(parse_proc_stat_cpu(stat), Some(3.0));
        assert_eq!(parse_vm_hwm("Name:\tx\nVmHWM:\t  2048 kB\nVmRSS:\t1 kB\n"), Some(2 * 1024 * 1024));
        assert_eq!(parse_vm_hwm("Name: x\n"), None);
    }

    #[test]
    fn samples_this_process() {
        let s = sample_process(std::process::id()).unwrap();
        assert!(s.rss_peak_bytes > 0);
        assert!(s.cpu_seconds >= 0.0);
    }

    #[test]
    fn missing_binary_is_a_clear_error() {
        let err =
            EmbeddedNode::start(Path::new("/nonexistent/strand-node"), "direct", "never", &[], None).err().unwrap();
        assert!(err.to_string().contains("cargo build --release -p strand-node"), "{err}");
    }

    #[test]
    fn child_that_exits_early_reports_its_stderr() {
        // A real process standing in for a broken node: prints to stderr and exits.
        let dir = tempfile::tempdir().unwrap();
        let fake = dir.path().join("strand-node");
        std::fs::write(&fake, "#!/bin/sh\necho 'fatal: cannot bind' >&2\nexit 3\n").unwrap();
        let _ = Command::new("chmod").arg("+x").arg(&fake).status();
        let err = EmbeddedNode::start(&fake, "direct", "never", &[], None).err().unwrap();
        assert!(matches!(err, NodeError::EarlyExit(ref tail) if tail.contains("cannot bind")), "{err}");
    }

    #[test]
    fn stop_kills_and_cleans_up() {
        let dir = tempfile::tempdir().unwrap();
        let fake = dir.path().join("strand-node");
        std::fs::write(
            &fake,
            "#!/bin/sh\necho 'strand-node listening: public=127.0.0.1:1 admin=127.0.0.1:2 shards=3' >&2\nexec sleep 60\n",
        )
        .unwrap();
        let _ = Command::new("chmod").arg("+x").arg(&fake).status();
        let mut node = EmbeddedNode::start(&fake, "direct", "never", &[], None).unwrap();
        assert_eq!(node.listening.shard_ports, vec![3]);
        let data = node.data_dir().unwrap().to_path_buf();
        assert!(data.is_dir());
        let pid = node.pid();
        assert!(node.sample().is_some());
        let started = Instant::now();
        node.stop();
        assert!(started.elapsed() < SHUTDOWN_TIMEOUT, "SIGTERM should end `sleep` at once");
        assert!(!data.exists(), "data dir removed");
        assert!(sample_process(pid).is_none(), "process gone");
    }
}
