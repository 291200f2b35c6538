//! A real etcd for tests: starts `/usr/bin/etcd` (or `$ETCD_BIN`) as a one-member cluster
//! on free 127.0.0.1 ports with its own temp data dir, waits until `/health` answers
//! healthy, and kills it on drop (even when the test panics). A missing etcd binary
//! fails the test with a clear message — CI installs `etcd-server`.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running single-member etcd.
pub struct Etcd {
    child: Child,
    bin: String,
    client_port: u16,
    peer_port: u16,
    dir: tempfile::TempDir,
}

/// How long etcd gets to become healthy.
const HEALTHY_TIMEOUT: Duration = Duration::from_secs(20);

impl Etcd {
    /// Starts etcd and waits until it is healthy (retries with new ports if a port was
    /// taken between probing and binding).
    pub fn start() -> Etcd {
        let bin = std::env::var("ETCD_BIN").unwrap_or_else(|_| "/usr/bin/etcd".to_string());
        assert!(
            PathBuf::from(&bin).exists(),
            "etcd not found at {bin}: install Debian's etcd-server (apt-get install etcd-server) or set ETCD_BIN"
        );
        let mut last_log = String::new();
        for _attempt in 0..3 {
            let dir = tempfile::tempdir().expect("etcd temp dir");
            match Etcd::spawn(&bin, dir, free_port(), free_port()) {
                Ok(etcd) => return etcd,
                Err(log) => last_log = log,
            }
        }
        panic!("etcd did not become healthy in 3 attempts; last log:\n{last_log}");
    }

    /// SIGKILLs etcd and starts it again on the same ports and data (a crash + restart:
    /// clients see their streams break).
    pub fn restart(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let dir = std::mem::replace(&mut self.dir, tempfile::tempdir().expect("temp dir"));
        let restarted = Etcd::spawn(&self.bin, dir, self.client_port, self.peer_port);
        *self = restarted.unwrap_or_else(|log| panic!("etcd did not come back:\n{log}"));
    }

    fn spawn(bin: &str, dir: tempfile::TempDir, client_port: u16, peer_port: u16) -> Result<Etcd, String> {
        let client = format!("http://127.0.0.1:{client_port}");
        let peer = format!("http://127.0.0.1:{peer_port}");
        let log_path = dir.path().join("etcd.log");
        let log = std::fs::OpenOptions::new().create(true).append(true).open(&log_path).expect("etcd log file");
        let child = Command::new(bin)
            .args(["--name", "strand-test", "--data-dir"])
            .arg(dir.path().join("data"))
            .args(["--listen-client-urls", &client, "--advertise-client-urls", &client])
            .args(["--listen-peer-urls", &peer, "--initial-advertise-peer-urls", &peer])
            .args(["--initial-cluster", &format!("strand-test={peer}")])
            .args(["--logger", "zap", "--log-outputs", "stderr", "--log-level", "warn"])
            .stdout(Stdio::null())
            .stderr(Stdio::from(log))
            .spawn()
            .unwrap_or_else(|e| panic!("spawning {bin}: {e}"));
        let mut etcd = Etcd { child, bin: bin.to_string(), client_port, peer_port, dir };
        let deadline = Instant::now() + HEALTHY_TIMEOUT;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = etcd.child.try_wait() {
                return Err(format!(
                    "etcd exited ({status}):\n{}",
                    std::fs::read_to_string(&log_path).unwrap_or_default()
                ));
            }
            if etcd.healthy() {
                return Ok(etcd);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Err(format!(
            "not healthy after {HEALTHY_TIMEOUT:?}:\n{}",
            std::fs::read_to_string(&log_path).unwrap_or_default()
        ))
    }

    /// The client URL, e.g. `http://127.0.0.1:34567`.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.client_port)
    }

    /// Whether `GET /health` answers `"health":"true"`.
    pub fn healthy(&self) -> bool {
        let Ok(mut s) = TcpStream::connect(("127.0.0.1", self.client_port)) else { return false };
        let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
        if write!(s, "GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n").is_err() {
            return false;
        }
        let mut text = String::new();
        let _ = s.read_to_string(&mut text);
        text.contains("\"health\":\"true\"")
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A port that was free a moment ago (the kernel's ephemeral choice).
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("free port")
}
