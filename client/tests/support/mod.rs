//! Test support: builds `strand-node` once, runs it on ephemeral loopback ports in a
//! temporary data dir, and kills it when the guard drops.
#![allow(dead_code)] // Each test binary uses a different subset of these helpers.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::sync::OnceLock;
use std::time::Duration;

use strand_client::{Admin, Client, ClientConfig};

/// How long a node may take to print its listening line.
const NODE_START_TIMEOUT: Duration = Duration::from_secs(60);

/// A running `strand-node`; killed on drop.
pub struct Node {
    child: Child,
    pub public: String,
    pub admin: String,
    pub shard_ports: Vec<u16>,
    /// The Kafka-protocol port (`IP:PORT`).
    pub kafka: String,
    shards: u32,
    dir: tempfile::TempDir,
    /// Extra flags (cluster mode), reused on restart.
    extra: Vec<String>,
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Path of the `strand-node` binary: `$STRAND_NODE_BIN` (set by `./test.sh`, whose
/// `cargo test --workspace` has just built it), else built (this test's profile) on first use.
pub fn node_binary() -> PathBuf {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT
        .get_or_init(|| {
            if let Some(bin) = std::env::var_os("STRAND_NODE_BIN") {
                return PathBuf::from(bin);
            }
            let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_string());
            // Build the node in the profile these tests were built in, so `cargo test --release`
            // reuses release artifacts instead of compiling the node a second time.
            let (profile_flag, profile_dir) =
                if cfg!(debug_assertions) { (None, "debug") } else { (Some("--release"), "release") };
            let status = Command::new(cargo)
                .args(["build", "-q", "-p", "strand-node", "--bin", "strand-node"])
                .args(profile_flag)
                .current_dir(workspace_root())
                .status()
                .expect("run cargo build for strand-node");
            let target =
                std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| workspace_root().join("target"), PathBuf::from);
            let bin = target.join(profile_dir).join("strand-node");
            // In a shared checkout the node's sources may be mid-edit; an earlier build is
            // then better than no test at all. A fresh clone (CI) has no earlier build.
            assert!(status.success() || bin.exists(), "cargo build -p strand-node failed");
            if !status.success() {
                eprintln!("warning: cargo build -p strand-node failed; testing the existing {}", bin.display());
            }
            assert!(bin.exists(), "strand-node binary missing at {}", bin.display());
            bin
        })
        .clone()
}

/// Path of the `strand` CLI of this package.
pub fn cli_binary() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_strand"))
}

impl Node {
    /// Starts a node with `shards` shards on ephemeral ports; fails the test clearly if
    /// it does not come up.
    pub fn start(shards: u32) -> Node {
        Node::start_with(shards, Vec::new())
    }

    /// Starts a cluster-mode node `node_id` registered in the etcd at `etcd` (lease TTL 2 s,
    /// ephemeral replication ports).
    pub fn start_cluster(shards: u32, node_id: u32, etcd: &str) -> Node {
        Node::start_cluster_with_flags(shards, node_id, etcd, &[])
    }

    /// [`Node::start_cluster`] with extra command-line flags (kept on restart).
    pub fn start_cluster_with_flags(shards: u32, node_id: u32, etcd: &str, flags: &[&str]) -> Node {
        let extra = ["--node-id", &node_id.to_string(), "--etcd", etcd, "--lease-ttl-s", "2"]
            .into_iter()
            .chain(["--replication-port-base", "0"])
            .chain(flags.iter().copied())
            .map(String::from)
            .collect();
        Node::start_with(shards, extra)
    }

    /// Starts a node with `shards` shards and extra command-line flags (kept on restart).
    pub fn start_with_flags(shards: u32, flags: &[&str]) -> Node {
        Node::start_with(shards, flags.iter().map(|f| f.to_string()).collect())
    }

    fn start_with(shards: u32, extra: Vec<String>) -> Node {
        // RUST_LOG=strand_client=debug shows the client's retries.
        let _ = tracing_subscriber::fmt()
            .with_test_writer()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .try_init();
        let dir = tempfile::tempdir().expect("temp dir");
        let (child, (public, admin, shard_ports, kafka)) = spawn_node(dir.path(), shards, &extra);
        Node { child, public, admin, shard_ports, kafka, shards, dir, extra }
    }

    /// Sends `signal` (e.g. `STOP`, `CONT`) to the node process.
    pub fn signal(&self, signal: &str) {
        let pid = self.child.id().to_string();
        let status = Command::new("kill").args([&format!("-{signal}"), &pid]).status().expect("run kill");
        assert!(status.success(), "kill -{signal} {pid} failed");
    }

    /// Kills the node with SIGKILL (no clean shutdown; its lease expires after the TTL).
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Stops the node with SIGTERM (a clean shutdown: in-flight appends finish and are
    /// flushed), then starts it again on the same data dir. Its ports change.
    pub fn restart(&mut self) {
        let pid = self.child.id().to_string();
        let status = Command::new("kill").args(["-TERM", &pid]).status().expect("run kill");
        assert!(status.success(), "kill -TERM {pid} failed");
        let exit = self.child.wait().expect("wait for strand-node");
        assert!(exit.success(), "strand-node did not exit cleanly on SIGTERM: {exit:?}");
        let (child, (public, admin, shard_ports, kafka)) = spawn_node(self.dir.path(), self.shards, &self.extra);
        (self.child, self.public, self.admin, self.shard_ports, self.kafka) =
            (child, public, admin, shard_ports, kafka);
    }

    /// Starts the node again on its data dir after [`Node::kill`] (its ports change).
    pub fn start_again(&mut self) {
        let (child, (public, admin, shard_ports, kafka)) = spawn_node(self.dir.path(), self.shards, &self.extra);
        (self.child, self.public, self.admin, self.shard_ports, self.kafka) =
            (child, public, admin, shard_ports, kafka);
    }

    /// The body of `GET path` on the admin port (HTTP/1.1, connection closed after).
    pub fn admin_get(&self, path: &str) -> String {
        use std::io::{Read, Write};
        let mut stream = std::net::TcpStream::connect(&self.admin).expect("connect to the admin port");
        stream.set_read_timeout(Some(Duration::from_secs(10))).expect("read timeout");
        write!(stream, "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").expect("send GET");
        let mut text = String::new();
        stream.read_to_string(&mut text).expect("read the answer");
        assert!(text.starts_with("HTTP/1.1 200"), "GET {path}: {}", text.lines().next().unwrap_or(""));
        text.split_once("\r\n\r\n").map(|(_, body)| body.to_string()).unwrap_or_default()
    }

    /// A client bootstrapped on this node.
    pub async fn client(&self) -> Client {
        Client::connect(ClientConfig::new(self.public.clone())).await.expect("connect to node")
    }

    /// Creates `topic` with `partitions` partitions.
    pub async fn create_topic(&self, topic: &str, partitions: u32) -> Client {
        let client = self.client().await;
        Admin::new(client.clone()).create_topic(topic, partitions, 1).await.expect("create topic");
        client
    }
}

/// Starts `strand-node` on `dir` with ephemeral ports; returns it once it listens.
/// The addresses a node's listening line names: public, admin, shard ports, Kafka.
type Listening = (String, String, Vec<u16>, String);

fn spawn_node(dir: &std::path::Path, shards: u32, extra: &[String]) -> (Child, Listening) {
    let mut child = Command::new(node_binary())
        .arg("--data-dir")
        .arg(dir)
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
        .args(["--shards", &shards.to_string(), "--fsync", "never"])
        .args(extra)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn strand-node");
    let stderr = child.stderr.take().expect("stderr piped");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        // Keep draining stderr so the node never blocks on a full pipe.
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if line.contains("strand-node listening:") {
                let _ = tx.send(line.clone());
            }
            if std::env::var_os("STRAND_TEST_NODE_LOG").is_some() {
                eprintln!("[node] {line}");
            }
        }
    });
    let line = match rx.recv_timeout(NODE_START_TIMEOUT) {
        Ok(line) => line,
        Err(_) => {
            let _ = child.kill();
            let status = child.wait().ok();
            panic!("strand-node did not print its listening line within {NODE_START_TIMEOUT:?} (exit: {status:?})");
        }
    };
    (child, parse_listening(&line))
}

/// Parses `strand-node listening: public=IP:PORT admin=IP:PORT shards=PORT,PORT kafka=IP:PORT`.
fn parse_listening(line: &str) -> Listening {
    let field = |name: &str| {
        line.split_whitespace()
            .find_map(|w| w.strip_prefix(name))
            .unwrap_or_else(|| panic!("no {name} in listening line: {line}"))
            .to_string()
    };
    let shards = field("shards=");
    let ports = shards.split(',').filter(|s| !s.is_empty()).map(|p| p.parse().expect("shard port")).collect();
    (field("public="), field("admin="), ports, field("kafka="))
}

/// A real etcd (`$ETCD_BIN` or `/usr/bin/etcd`) on free 127.0.0.1 ports with its own temp
/// data dir; killed on drop. Fails the test clearly if etcd is missing or unhealthy.
pub struct Etcd {
    child: Child,
    pub endpoint: String,
    _dir: tempfile::TempDir,
}

impl Drop for Etcd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    listener.local_addr().expect("local addr").port()
}

impl Etcd {
    pub fn start() -> Etcd {
        let bin = std::env::var("ETCD_BIN").unwrap_or_else(|_| "/usr/bin/etcd".to_string());
        assert!(std::path::Path::new(&bin).exists(), "etcd not found at {bin} (apt-get install etcd-server)");
        let dir = tempfile::tempdir().expect("temp dir");
        let (client, peer) = (free_port(), free_port());
        let endpoint = format!("http://127.0.0.1:{client}");
        let peer_url = format!("http://127.0.0.1:{peer}");
        let child = Command::new(&bin)
            .arg("--name=client-test")
            .arg(format!("--data-dir={}", dir.path().join("etcd").display()))
            .arg(format!("--listen-client-urls={endpoint}"))
            .arg(format!("--advertise-client-urls={endpoint}"))
            .arg(format!("--listen-peer-urls={peer_url}"))
            .arg(format!("--initial-advertise-peer-urls={peer_url}"))
            .arg(format!("--initial-cluster=client-test={peer_url}"))
            .args(["--log-level=error", "--logger=zap"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn etcd");
        let etcd = Etcd { child, endpoint, _dir: dir };
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", client)).is_err() {
            assert!(std::time::Instant::now() < deadline, "etcd did not listen on {}", etcd.endpoint);
            std::thread::sleep(Duration::from_millis(50));
        }
        etcd
    }
}

/// Creates a replicated topic on a freshly started cluster. A node sees its peers'
/// registrations through its etcd watch a moment after they start, so
/// `NOT_ENOUGH_REPLICAS` is retried for a while; any other error is returned.
pub async fn create_replicated(
    admin: &Admin,
    topic: &str,
    partitions: u32,
    rf: u16,
) -> strand_client::Result<strand_wire::msg::CreateTopicResponse> {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        match admin.create_topic(topic, partitions, rf).await {
            Err(e)
                if e.code() == strand_client::ErrorCode::NotEnoughReplicas && std::time::Instant::now() < deadline =>
            {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            other => return other,
        }
    }
}
