//! Real `strand-node` processes: locating (and once building) the binary, starting a node
//! on 127.0.0.1 ephemeral ports, timing how long it takes to serve, killing it with SIGKILL
//! or SIGTERM, reading its RSS, and watching its stderr.
//!
//! Invariants: a [`NodeProcess`] always owns a child it started and SIGKILLs it on drop, so
//! no test leaves a node running; every stderr line is checked for a panic as it arrives
//! (even when the bounded in-memory log has already dropped it), so a panic can never go
//! unnoticed because the log was long.

use std::collections::VecDeque;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use crate::error::HarnessError;

/// The line the node prints once it serves (DESIGN §8); its format is a contract.
pub const LISTENING_MARKER: &str = "strand-node listening:";
/// Longest a node may take from spawn to its listening line before a test fails.
pub const START_TIMEOUT: Duration = Duration::from_secs(60);
/// Log lines kept per node (older ones are dropped; panics are still detected).
const LOG_LINES_MAX: usize = 20_000;

/// Path of the `strand-node` binary: `$STRAND_NODE_BIN`, else the workspace target dir of
/// the profile this test was built with, built once with `cargo build` on first use.
pub fn node_binary() -> Result<PathBuf, HarnessError> {
    static BUILT: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    let built = BUILT.get_or_init(|| {
        if let Some(path) = std::env::var_os("STRAND_NODE_BIN") {
            return Ok(PathBuf::from(path));
        }
        build_node_binary()
    });
    match built {
        Ok(path) => Ok(path.clone()),
        Err(reason) => Err(HarnessError::Binary { path: PathBuf::from("strand-node"), reason: reason.clone() }),
    }
}

fn build_node_binary() -> Result<PathBuf, String> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let release = !cfg!(debug_assertions);
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_string());
    let mut cmd = Command::new(cargo);
    cmd.args(["build", "-q", "-p", "strand-node", "--bin", "strand-node"]).current_dir(&root);
    if release {
        cmd.arg("--release");
    }
    let status = cmd.status().map_err(|e| format!("cannot run cargo build: {e}"))?;
    let target = std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| root.join("target"), PathBuf::from);
    let bin = target.join(if release { "release" } else { "debug" }).join("strand-node");
    if !bin.exists() {
        return Err(format!("cargo build exited with {status} and {} does not exist", bin.display()));
    }
    if !status.success() {
        // Several engineers share this checkout; a node mid-edit should not stop every test.
        eprintln!("warning: cargo build -p strand-node failed ({status}); testing the existing {}", bin.display());
    }
    Ok(bin)
}

/// What the stderr reader thread shares with the test.
#[derive(Default)]
struct LogState {
    lines: VecDeque<String>,
    lines_dropped: u64,
    panic_line: Option<String>,
}

/// A running node process, SIGKILLed on drop.
pub struct NodeProcess {
    child: Child,
    exit: Option<ExitStatus>,
    /// The public (any-request) address.
    pub public: SocketAddr,
    /// The admin HTTP address.
    pub admin: SocketAddr,
    /// Each shard's fast-path port, by shard index.
    pub shard_ports: Vec<u16>,
    /// Time from spawn to the listening line.
    pub startup: Duration,
    log: Arc<Mutex<LogState>>,
}

/// How a start attempt ended.
pub enum StartOutcome {
    /// The node printed its listening line.
    Serving(NodeProcess),
    /// The node exited first: its status and the log it wrote.
    Exited { status: ExitStatus, log: Vec<String> },
}

impl NodeProcess {
    /// Starts `strand-node --data-dir DIR --listen 127.0.0.1:0 --admin 127.0.0.1:0
    /// --shard-port-base 0 ARGS…` and waits until it serves.
    pub fn start(data_dir: &Path, args: &[&str]) -> Result<NodeProcess, HarnessError> {
        match Self::try_start(data_dir, args, START_TIMEOUT)? {
            StartOutcome::Serving(node) => Ok(node),
            StartOutcome::Exited { status, log } => {
                Err(HarnessError::ExitedAtStart { status: status.to_string(), log_tail: tail(&log, 30) })
            }
        }
    }

    /// Like [`NodeProcess::start`], but an exit during startup is an outcome, not an error
    /// (tests of refusals expect it).
    pub fn try_start(data_dir: &Path, args: &[&str], timeout: Duration) -> Result<StartOutcome, HarnessError> {
        let bin = node_binary()?;
        let started = Instant::now();
        let mut child = Command::new(&bin)
            .arg("--data-dir")
            .arg(data_dir)
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
            .args(args)
            .env("RUST_LOG", std::env::var("STRAND_NODE_LOG").unwrap_or_else(|_| "info,glommio=error".into()))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|source| HarnessError::Process { action: "spawn", source })?;
        let log = Arc::new(Mutex::new(LogState::default()));
        let (listening_tx, listening_rx) = mpsc::channel();
        if let Some(stderr) = child.stderr.take() {
            let log = log.clone();
            std::thread::spawn(move || read_stderr(stderr, log, listening_tx));
        }
        let mut node = NodeProcess {
            child,
            exit: None,
            public: SocketAddr::from(([127, 0, 0, 1], 0)),
            admin: SocketAddr::from(([127, 0, 0, 1], 0)),
            shard_ports: Vec::new(),
            startup: Duration::ZERO,
            log,
        };
        match listening_rx.recv_timeout(timeout) {
            Ok(line) => {
                node.startup = started.elapsed();
                node.parse_listening(&line)?;
                Ok(StartOutcome::Serving(node))
            }
            Err(_) => node.start_failed(timeout),
        }
    }

    fn start_failed(mut self, timeout: Duration) -> Result<StartOutcome, HarnessError> {
        // The reader thread ends at EOF, which an exit causes; give the exit a moment to land.
        let deadline = Instant::now() + Duration::from_secs(2);
        while Instant::now() < deadline {
            if let Some(status) = self.try_wait()? {
                return Ok(StartOutcome::Exited { status, log: self.log_lines() });
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Err(HarnessError::StartTimeout {
            timeout_ms: timeout.as_millis(),
            status: self.try_wait()?.map(|s| s.to_string()),
            log_tail: tail(&self.log_lines(), 30),
        })
    }

    fn parse_listening(&mut self, line: &str) -> Result<(), HarnessError> {
        let bad = || HarnessError::Protocol(format!("unparsable listening line {line:?}"));
        let rest = line.split_once(LISTENING_MARKER).ok_or_else(bad)?.1;
        for field in rest.split_whitespace() {
            if let Some(v) = field.strip_prefix("public=") {
                self.public = v.parse().map_err(|_| bad())?;
            } else if let Some(v) = field.strip_prefix("admin=") {
                self.admin = v.parse().map_err(|_| bad())?;
            } else if let Some(v) = field.strip_prefix("shards=") {
                self.shard_ports = v.split(',').map(|p| p.parse().map_err(|_| bad())).collect::<Result<_, _>>()?;
            }
        }
        if self.public.port() == 0 || self.shard_ports.is_empty() {
            return Err(bad());
        }
        Ok(())
    }

    /// The node's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// File descriptors the node holds open (`/proc/PID/fd`).
    pub fn fd_count(&self) -> std::io::Result<u64> {
        Ok(std::fs::read_dir(format!("/proc/{}/fd", self.child.id()))?.count() as u64)
    }

    /// The address of shard `shard`'s fast-path port.
    pub fn shard_addr(&self, shard: usize) -> Option<SocketAddr> {
        self.shard_ports.get(shard).map(|&port| SocketAddr::new(self.public.ip(), port))
    }

    /// SIGKILLs the node and reaps it.
    pub fn kill(&mut self) -> Result<ExitStatus, HarnessError> {
        if let Some(status) = self.try_wait()? {
            return Ok(status);
        }
        self.child.kill().map_err(|source| HarnessError::Process { action: "kill", source })?;
        let status = self.child.wait().map_err(|source| HarnessError::Process { action: "wait", source })?;
        self.exit = Some(status);
        Ok(status)
    }

    /// Sends SIGTERM (graceful shutdown) and waits up to `timeout` for the exit.
    pub fn terminate(&mut self, timeout: Duration) -> Result<ExitStatus, HarnessError> {
        if let Some(status) = self.try_wait()? {
            return Ok(status);
        }
        // kill(1) rather than libc::kill keeps this crate free of `unsafe`.
        let sent = Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .status()
            .map_err(|source| HarnessError::Process { action: "run kill -TERM", source })?;
        if !sent.success() {
            return Err(HarnessError::Unexpected(format!("kill -TERM {} failed: {sent}", self.pid())));
        }
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.try_wait()? {
                return Ok(status);
            }
            if Instant::now() >= deadline {
                return Err(HarnessError::Unexpected(format!("node did not exit within {timeout:?} of SIGTERM")));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The exit status if the node has exited, without blocking.
    pub fn try_wait(&mut self) -> Result<Option<ExitStatus>, HarnessError> {
        if self.exit.is_none() {
            self.exit = self.child.try_wait().map_err(|source| HarnessError::Process { action: "wait", source })?;
        }
        Ok(self.exit)
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        matches!(self.try_wait(), Ok(None))
    }

    /// Resident set size in KiB (`VmRSS` of `/proc/PID/status`).
    pub fn rss_kib(&self) -> Result<u64, HarnessError> {
        rss_kib(self.pid())
    }

    /// The anonymous part of the resident set in KiB (`RssAnon`: heap, stacks, DMA
    /// buffers — not file mappings), to tell a growing heap from mapped files.
    pub fn rss_anon_kib(&self) -> Result<u64, HarnessError> {
        status_kib(self.pid(), "RssAnon:")
    }

    /// The stderr lines kept so far (the newest [`LOG_LINES_MAX`]).
    pub fn log_lines(&self) -> Vec<String> {
        lock(&self.log).lines.iter().cloned().collect()
    }

    /// Whether any kept stderr line contains `needle`.
    pub fn log_contains(&self, needle: &str) -> bool {
        lock(&self.log).lines.iter().any(|l| l.contains(needle))
    }

    /// Waits up to `timeout` for a stderr line containing `needle`; the line.
    pub fn wait_for_log(&self, needle: &str, timeout: Duration) -> Option<String> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(line) = lock(&self.log).lines.iter().find(|l| l.contains(needle)) {
                return Some(line.clone());
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The first stderr line that reported a panic, if any (checked on every line).
    pub fn panic_line(&self) -> Option<String> {
        lock(&self.log).panic_line.clone()
    }

    /// The last `n` kept log lines joined, for failure messages.
    pub fn log_tail(&self, n: usize) -> String {
        tail(&self.log_lines(), n)
    }
}

impl Drop for NodeProcess {
    fn drop(&mut self) {
        if self.exit.is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn read_stderr(stderr: std::process::ChildStderr, log: Arc<Mutex<LogState>>, listening: mpsc::Sender<String>) {
    let echo = std::env::var_os("STRAND_RELIABILITY_ECHO").is_some();
    for line in BufReader::new(stderr).lines().map_while(Result::ok) {
        if echo {
            eprintln!("[node] {line}");
        }
        if line.contains(LISTENING_MARKER) {
            let _ = listening.send(line.clone());
        }
        let mut state = lock(&log);
        if state.panic_line.is_none() && line.contains("panicked") {
            state.panic_line = Some(line.clone());
        }
        if state.lines.len() == LOG_LINES_MAX {
            state.lines.pop_front();
            state.lines_dropped += 1;
        }
        state.lines.push_back(line);
    }
}

/// Resident set size of `pid` in KiB.
pub fn rss_kib(pid: u32) -> Result<u64, HarnessError> {
    status_kib(pid, "VmRSS:")
}

/// The KiB figure of the `/proc/PID/status` line starting with `key`.
fn status_kib(pid: u32, key: &str) -> Result<u64, HarnessError> {
    let proc_err = |reason: String| HarnessError::Proc { pid, reason };
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).map_err(|e| proc_err(e.to_string()))?;
    let line = status.lines().find(|l| l.starts_with(key)).ok_or_else(|| proc_err(format!("no {key} line")))?;
    line.split_whitespace().nth(1).and_then(|v| v.parse().ok()).ok_or_else(|| proc_err(format!("unparsable {line:?}")))
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // The reader thread never panics while holding the lock; recover the data if it did.
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn tail(lines: &[String], n: usize) -> String {
    lines[lines.len().saturating_sub(n)..].join("\n")
}
