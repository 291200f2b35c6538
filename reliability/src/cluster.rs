//! Multi-process cluster harness (issue 8): a real etcd, N real `strand-node` processes in
//! cluster mode on 127.0.0.1, process faults (SIGKILL, SIGSTOP/SIGCONT, restart on the same
//! data dir), chain discovery through Metadata, a continuous `acks=all` producer that
//! records what was acknowledged, and the end-state checker that reads every replica
//! directly.
//!
//! Code map: [`EtcdProcess`] (etcd on free ports, killed on drop) · [`Cluster`] (nodes,
//! faults, metadata, per-replica reads) · [`AckProducer`] (closed-loop producer lanes per
//! partition) · [`verify_replicas`] (the end-state guarantees) · [`ReplicaReader`] (reads
//! every replica while the faults happen; [`ReadLog::check`]: every served record is in the
//! final log — a committed read never changes).
//!
//! Invariants:
//! - every process the harness starts (etcd, nodes) is SIGKILLed when its owner drops, so
//!   no test leaves one behind, even a SIGSTOPped one;
//! - a produce is recorded as acknowledged only when a node answered it with no error; a
//!   produce that failed or timed out is *never* resent — its records' fate is unknown and
//!   they are checked only for "at most once";
//! - record values are unique (`p{partition}/s{seq}/…`), so a value identifies its produce;
//! - the chain is whatever the freshest Metadata answer (highest epoch among the running
//!   nodes) says: the harness never assumes a placement.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use bytes::Bytes;
use strand_client::{Client, ClientConfig, ClientError};
use strand_wire::batch::next_sequence;
use strand_wire::msg::{
    Acks, CreateTopicRequest, MetadataRequest, NodeInfo, PartitionMetadata, ProducePartition, ProduceRequest, Request,
    Response, TopicMetadata,
};
use strand_wire::ErrorCode;
use tempfile::TempDir;

use crate::client::{batch_of, producer_batch_of, StoredRecord, WireClient};
use crate::error::HarnessError;
use crate::ledger::{record_value, Ledger, VerifyReport, Violation};
use crate::node::NodeProcess;

/// Lease TTL the cluster tests run with (seconds): a silent node is declared dead this fast.
pub const LEASE_TTL_S: u64 = 2;
/// Longest etcd may take to answer `/health` after spawn.
const ETCD_START_TIMEOUT: Duration = Duration::from_secs(20);
/// Record ids per producer lane (lane `l` uses ids from `l * LANE_IDS`).
const LANE_IDS: u64 = 10_000_000_000;
/// Longest one Metadata question to one node may take (a SIGSTOPped node never answers).
const METADATA_TIMEOUT: Duration = Duration::from_millis(700);

fn unexpected(what: impl std::fmt::Display) -> HarnessError {
    HarnessError::Unexpected(what.to_string())
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Holders never panic mid-update; keep the data if one did.
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

// ---------------------------------------------------------------------------------------
// etcd

/// A single-member etcd on free 127.0.0.1 ports with a temporary data dir, SIGKILLed on drop.
/// It can be SIGKILLed and restarted on the same ports and data ([`EtcdProcess::kill`],
/// [`EtcdProcess::restart`]) or paused ([`EtcdProcess::pause`]), as a fault.
pub struct EtcdProcess {
    /// `None` while killed.
    child: Option<Child>,
    url: String,
    ports: [u16; 2],
    dir: TempDir,
}

impl EtcdProcess {
    /// Starts `$ETCD_BIN` (default `/usr/bin/etcd`) and waits until `/health` says true.
    /// Retries twice with new ports (a free port may be taken between probe and bind).
    pub fn start() -> Result<EtcdProcess, HarnessError> {
        let mut last = None;
        for _ in 0..3 {
            match Self::try_start() {
                Ok(etcd) => return Ok(etcd),
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| unexpected("etcd did not start")))
    }

    fn try_start() -> Result<EtcdProcess, HarnessError> {
        let dir = tempfile::tempdir()?;
        let ports = free_ports::<2>()?;
        let url = format!("http://127.0.0.1:{}", ports[0]);
        let mut etcd = EtcdProcess { child: None, url, ports, dir };
        etcd.spawn()?;
        Ok(etcd)
    }

    /// Spawns etcd on this instance's ports and data dir and waits until it is healthy.
    fn spawn(&mut self) -> Result<(), HarnessError> {
        let bin = std::env::var_os("ETCD_BIN").map_or_else(|| PathBuf::from("/usr/bin/etcd"), PathBuf::from);
        let [client_port, peer_port] = self.ports;
        let peer = format!("http://127.0.0.1:{peer_port}");
        let log = std::fs::OpenOptions::new().create(true).append(true).open(self.dir.path().join("etcd.log"))?;
        let child = Command::new(&bin)
            .arg("--name=strand-test")
            .arg(format!("--data-dir={}", self.dir.path().join("data").display()))
            .arg(format!("--listen-client-urls={}", self.url))
            .arg(format!("--advertise-client-urls={}", self.url))
            .arg(format!("--listen-peer-urls={peer}"))
            .arg(format!("--initial-advertise-peer-urls={peer}"))
            .arg(format!("--initial-cluster=strand-test={peer}"))
            .args(["--logger=zap", "--log-level=warn"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .map_err(|source| HarnessError::Binary { path: bin.clone(), reason: source.to_string() })?;
        let child = self.child.insert(child);
        let deadline = Instant::now() + ETCD_START_TIMEOUT;
        while Instant::now() < deadline {
            if etcd_healthy(client_port) {
                return Ok(());
            }
            if let Ok(Some(status)) = child.try_wait() {
                self.child = None;
                return Err(unexpected(format!("etcd exited with {status}: {}", self.log_tail())));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Err(unexpected(format!("etcd not healthy within {ETCD_START_TIMEOUT:?}: {}", self.log_tail())))
    }

    /// The client URL, e.g. `http://127.0.0.1:34567` (what `--etcd` takes).
    pub fn url(&self) -> &str {
        &self.url
    }

    /// SIGKILLs etcd (a crash); its data dir stays for [`EtcdProcess::restart`].
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// (Re)starts etcd on the same ports and data dir (SIGKILLing a running one first) and
    /// waits until it is healthy.
    pub fn restart(&mut self) -> Result<(), HarnessError> {
        self.kill();
        // A port of the killed process may linger a moment; retry the bind a few times.
        let mut last = None;
        for _ in 0..5 {
            match self.spawn() {
                Ok(()) => return Ok(()),
                Err(e) => last = Some(e),
            }
            self.kill();
            std::thread::sleep(Duration::from_millis(200));
        }
        Err(last.unwrap_or_else(|| unexpected("etcd did not restart")))
    }

    /// SIGSTOPs etcd (its sockets stay open; nobody is answered until [`EtcdProcess::resume`]).
    pub fn pause(&self) -> Result<(), HarnessError> {
        self.signal("-STOP")
    }

    /// SIGCONTs a paused etcd.
    pub fn resume(&self) -> Result<(), HarnessError> {
        self.signal("-CONT")
    }

    fn signal(&self, signal: &str) -> Result<(), HarnessError> {
        let child = self.child.as_ref().ok_or_else(|| unexpected("etcd is not running"))?;
        send_signal(child.id(), signal)
    }

    /// The last lines etcd wrote to its log.
    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(self.dir.path().join("etcd.log")).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }
}

/// Sends `signal` (a kill(1) option such as `-STOP`) to `pid`.
fn send_signal(pid: u32, signal: &str) -> Result<(), HarnessError> {
    // kill(1) rather than libc::kill keeps this crate free of `unsafe`.
    let status = Command::new("kill")
        .args([signal, &pid.to_string()])
        .status()
        .map_err(|source| HarnessError::Process { action: "run kill", source })?;
    if !status.success() {
        return Err(unexpected(format!("kill {signal} {pid} failed: {status}")));
    }
    Ok(())
}

impl Drop for EtcdProcess {
    fn drop(&mut self) {
        // A SIGSTOPped process dies of SIGKILL too.
        self.kill();
    }
}

/// `K` distinct free ports on 127.0.0.1 (all probed at once so they differ).
fn free_ports<const K: usize>() -> Result<[u16; K], HarnessError> {
    let listeners = (0..K).map(|_| TcpListener::bind("127.0.0.1:0")).collect::<Result<Vec<_>, _>>()?;
    let mut ports = [0u16; K];
    for (port, listener) in ports.iter_mut().zip(&listeners) {
        *port = listener.local_addr()?.port();
    }
    Ok(ports)
}

fn etcd_healthy(port: u16) -> bool {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let Ok(mut stream) = TcpStream::connect_timeout(&addr, Duration::from_millis(300)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(1)));
    if stream.write_all(b"GET /health HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").is_err() {
        return false;
    }
    let mut answer = String::new();
    let _ = stream.read_to_string(&mut answer);
    answer.contains("\"health\":\"true\"")
}

// ---------------------------------------------------------------------------------------
// nodes

/// How to start a cluster.
#[derive(Debug, Clone)]
pub struct ClusterConfig {
    /// Node count; ids are `1..=nodes`.
    pub nodes: u32,
    /// `--shards` per node (0 = the node's default).
    pub shards: u16,
    /// `--lease-ttl-s`.
    pub lease_ttl_s: u64,
    /// More `strand-node` arguments, appended as given.
    pub extra_args: Vec<String>,
    /// Where the nodes' data dirs are made (default: the system temp dir), e.g. a
    /// [`crate::loopfs::LoopFs`] that all of them lose at once.
    pub data_parent: Option<std::path::PathBuf>,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        ClusterConfig { nodes: 3, shards: 2, lease_ttl_s: LEASE_TTL_S, extra_args: Vec::new(), data_parent: None }
    }
}

struct ClusterNode {
    dir: TempDir,
    process: Option<NodeProcess>,
    stopped: bool,
}

/// Public addresses of the nodes whose processes exist (running or SIGSTOPped), by node id.
/// Shared with producers so they find restarted nodes on their new ports.
pub type SharedAddrs = Arc<Mutex<BTreeMap<u32, SocketAddr>>>;

/// etcd plus N `strand-node` processes in cluster mode; everything is killed on drop.
pub struct Cluster {
    config: ClusterConfig,
    // Field order = drop order: the nodes die before etcd.
    nodes: BTreeMap<u32, ClusterNode>,
    etcd: EtcdProcess,
    addrs: SharedAddrs,
    runtime: Arc<tokio::runtime::Runtime>,
}

impl Cluster {
    /// Starts etcd and `config.nodes` nodes, then waits until every node's Metadata lists
    /// every node (all registered).
    pub fn start(config: ClusterConfig) -> Result<Cluster, HarnessError> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .map_err(|source| HarnessError::Process { action: "build tokio runtime", source })?;
        let etcd = EtcdProcess::start()?;
        let mut cluster =
            Cluster { config, nodes: BTreeMap::new(), etcd, addrs: SharedAddrs::default(), runtime: Arc::new(runtime) };
        for id in 1..=cluster.config.nodes {
            let dir = match &cluster.config.data_parent {
                Some(parent) => tempfile::tempdir_in(parent)?,
                None => tempfile::tempdir()?,
            };
            cluster.nodes.insert(id, ClusterNode { dir, process: None, stopped: false });
            cluster.spawn(id)?;
        }
        let all: Vec<u32> = cluster.nodes.keys().copied().collect();
        cluster.wait_registered(&all, Duration::from_secs(30))?;
        Ok(cluster)
    }

    fn node_args(&self, id: u32) -> Vec<String> {
        let mut args = vec![
            "--node-id".to_string(),
            id.to_string(),
            "--etcd".to_string(),
            self.etcd.url().to_string(),
            "--lease-ttl-s".to_string(),
            self.config.lease_ttl_s.to_string(),
            "--replication-port-base".to_string(),
            "0".to_string(),
        ];
        if self.config.shards > 0 {
            args.extend(["--shards".to_string(), self.config.shards.to_string()]);
        }
        args.extend(self.config.extra_args.iter().cloned());
        args
    }

    fn spawn(&mut self, id: u32) -> Result<(), HarnessError> {
        let args = self.node_args(id);
        let node = self.nodes.get_mut(&id).ok_or_else(|| unexpected(format!("no node {id}")))?;
        let arg_refs: Vec<&str> = args.iter().map(String::as_str).collect();
        let process = NodeProcess::start(node.dir.path(), &arg_refs)?;
        lock(&self.addrs).insert(id, process.public);
        node.process = Some(process);
        node.stopped = false;
        Ok(())
    }

    /// The etcd this cluster uses.
    pub fn etcd(&self) -> &EtcdProcess {
        &self.etcd
    }

    /// The etcd this cluster uses, to inject faults into it.
    pub fn etcd_mut(&mut self) -> &mut EtcdProcess {
        &mut self.etcd
    }

    /// The shared public-address map (see [`SharedAddrs`]).
    pub fn addrs(&self) -> SharedAddrs {
        self.addrs.clone()
    }

    /// The tokio runtime the harness's async clients run on.
    pub fn runtime(&self) -> Arc<tokio::runtime::Runtime> {
        self.runtime.clone()
    }

    /// Every node id, started or not.
    pub fn node_ids(&self) -> Vec<u32> {
        self.nodes.keys().copied().collect()
    }

    /// Ids of nodes whose process runs and is not SIGSTOPped.
    pub fn running_ids(&self) -> Vec<u32> {
        self.nodes.iter().filter(|(_, n)| n.process.is_some() && !n.stopped).map(|(&id, _)| id).collect()
    }

    /// Node `id`'s public address, if its process exists.
    pub fn public_addr(&self, id: u32) -> Option<SocketAddr> {
        self.process(id).map(|p| p.public)
    }

    /// Node `id`'s process, if it exists.
    pub fn process(&self, id: u32) -> Option<&NodeProcess> {
        self.nodes.get(&id).and_then(|n| n.process.as_ref())
    }

    /// The first panic any node process reported, with its node id.
    pub fn panic_line(&self) -> Option<(u32, String)> {
        self.nodes.iter().find_map(|(&id, n)| n.process.as_ref().and_then(|p| p.panic_line()).map(|l| (id, l)))
    }

    /// The last `n` log lines of every node, for failure messages.
    pub fn logs(&self, n: usize) -> String {
        let mut out = String::new();
        for (id, node) in &self.nodes {
            if let Some(p) = &node.process {
                out.push_str(&format!("--- node {id} (pid {}) ---\n{}\n", p.pid(), p.log_tail(n)));
            }
        }
        out
    }

    /// SIGKILLs node `id` (its data dir stays for [`Cluster::restart`]).
    pub fn kill(&mut self, id: u32) -> Result<(), HarnessError> {
        let node = self.nodes.get_mut(&id).ok_or_else(|| unexpected(format!("no node {id}")))?;
        if let Some(mut process) = node.process.take() {
            process.kill()?;
        }
        node.stopped = false;
        lock(&self.addrs).remove(&id);
        Ok(())
    }

    /// SIGSTOPs node `id` (it keeps its sockets and lease until the lease expires).
    pub fn pause(&mut self, id: u32) -> Result<(), HarnessError> {
        self.signal(id, "-STOP")?;
        if let Some(node) = self.nodes.get_mut(&id) {
            node.stopped = true;
        }
        Ok(())
    }

    /// SIGCONTs a paused node `id`.
    pub fn resume(&mut self, id: u32) -> Result<(), HarnessError> {
        self.signal(id, "-CONT")?;
        if let Some(node) = self.nodes.get_mut(&id) {
            node.stopped = false;
        }
        Ok(())
    }

    fn signal(&self, id: u32, signal: &str) -> Result<(), HarnessError> {
        let pid = self.process(id).ok_or_else(|| unexpected(format!("node {id} has no process")))?.pid();
        send_signal(pid, signal)
    }

    /// (Re)starts node `id` on its data dir (SIGKILLing a running process first) and waits
    /// until the running nodes see it registered.
    pub fn restart(&mut self, id: u32) -> Result<(), HarnessError> {
        self.kill(id)?;
        self.spawn(id)?;
        self.wait_registered(&[id], Duration::from_secs(30))
    }

    /// Waits until every running node's Metadata lists every node of `ids`.
    pub fn wait_registered(&self, ids: &[u32], timeout: Duration) -> Result<(), HarnessError> {
        let deadline = Instant::now() + timeout;
        loop {
            let answers = self.ask_all_metadata(&[]);
            let running = self.running_ids();
            let seen = answers.len() == running.len()
                && answers.iter().all(|(_, nodes, _)| ids.iter().all(|id| nodes.iter().any(|n| n.node_id == *id)));
            if seen {
                return Ok(());
            }
            if Instant::now() >= deadline {
                let lists: Vec<(u32, Vec<u32>)> =
                    answers.iter().map(|(from, nodes, _)| (*from, nodes.iter().map(|n| n.node_id).collect())).collect();
                return Err(unexpected(format!(
                    "nodes {ids:?} not registered everywhere within {timeout:?}; running {running:?}, metadata node \
                     lists {lists:?}\n{}",
                    self.logs(15)
                )));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Metadata answers (`from`, nodes, topics) of every running node that answered in time.
    fn ask_all_metadata(&self, topics: &[String]) -> Vec<(u32, Vec<NodeInfo>, Vec<TopicMetadata>)> {
        let targets: Vec<(u32, SocketAddr)> =
            self.running_ids().into_iter().filter_map(|id| self.public_addr(id).map(|a| (id, a))).collect();
        let topics = topics.to_vec();
        self.runtime.block_on(async move { ask_metadata(&targets, &topics).await })
    }

    /// The freshest metadata of `topic`: per partition, the answer with the highest epoch
    /// among the running nodes.
    pub fn metadata(&self, topic: &str) -> Result<TopicMetadata, HarnessError> {
        let answers = self.ask_all_metadata(&[topic.to_string()]);
        freshest(topic, &answers)
            .map(|(t, _)| t)
            .ok_or_else(|| unexpected(format!("no running node describes topic {topic}")))
    }

    /// The freshest metadata of one partition (its chain: `replicas`, head first).
    pub fn chain(&self, topic: &str, partition: u32) -> Result<PartitionMetadata, HarnessError> {
        let meta = self.metadata(topic)?;
        meta.partitions
            .into_iter()
            .find(|p| p.partition == partition)
            .ok_or_else(|| unexpected(format!("topic {topic} has no partition {partition}")))
    }

    /// Polls [`Cluster::chain`] until `ok` holds; the matching metadata.
    pub fn wait_chain(
        &self,
        topic: &str,
        partition: u32,
        timeout: Duration,
        ok: impl Fn(&PartitionMetadata) -> bool,
    ) -> Result<PartitionMetadata, HarnessError> {
        let deadline = Instant::now() + timeout;
        loop {
            let last = self.chain(topic, partition);
            if let Ok(meta) = &last {
                if ok(meta) {
                    return Ok(meta.clone());
                }
            }
            if Instant::now() >= deadline {
                return Err(unexpected(format!(
                    "partition {topic}/{partition}: condition not met within {timeout:?}; last metadata {last:?}\n{}",
                    self.logs(20)
                )));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Creates `name` through a running node (retrying while the cluster settles) and waits
    /// until every partition has a chain of `replication` members.
    pub fn create_topic(&self, name: &str, partitions: u32, replication: u16) -> Result<(), HarnessError> {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let addr = self.running_ids().first().and_then(|&id| self.public_addr(id));
            let addr = addr.ok_or_else(|| unexpected("no running node"))?;
            let mut client = WireClient::connect(addr, Duration::from_secs(10))?;
            let request = Request::CreateTopic(CreateTopicRequest {
                name: name.into(),
                partitions,
                replication_factor: replication,
                configs: Vec::new(),
            });
            let (header, _) = client.call(request, &[])?;
            match header.error {
                ErrorCode::None | ErrorCode::TopicAlreadyExists => break,
                code if code.is_retriable() && Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(100))
                }
                code => return Err(HarnessError::Server { code, message: header.message.unwrap_or_default() }),
            }
        }
        for p in 0..partitions {
            self.wait_chain(name, p, Duration::from_secs(20), |m| {
                m.error == ErrorCode::None && m.replicas.len() == usize::from(replication)
            })?;
        }
        Ok(())
    }

    /// Reads `topic`/`partition` from node `id` directly (its public port, capped at its
    /// committed offset), every record validated, from offset 0 to the end.
    pub fn read_replica(&self, id: u32, topic: &str, partition: u32) -> Result<Vec<StoredRecord>, HarnessError> {
        let addr = self.public_addr(id).ok_or_else(|| unexpected(format!("node {id} has no process")))?;
        WireClient::connect(addr, Duration::from_secs(10))?.read_partition(topic, partition, 0)
    }
}

/// Asks every target for metadata of `topics` concurrently, each within [`METADATA_TIMEOUT`].
async fn ask_metadata(
    targets: &[(u32, SocketAddr)],
    topics: &[String],
) -> Vec<(u32, Vec<NodeInfo>, Vec<TopicMetadata>)> {
    let mut set = tokio::task::JoinSet::new();
    for &(id, addr) in targets {
        let topics = topics.to_vec();
        set.spawn(async move {
            let ask = async {
                let mut config = ClientConfig::new(addr.to_string());
                config.request_timeout = METADATA_TIMEOUT;
                config.connect_timeout = METADATA_TIMEOUT;
                let client = Client::connect(config).await.ok()?;
                let request = Request::Metadata(MetadataRequest { topics });
                let (header, _) = client.call_bootstrap(request, &[]).await.ok()?;
                match header.response {
                    Response::Metadata(m) => Some((id, m.nodes, m.topics)),
                    _ => None,
                }
            };
            tokio::time::timeout(METADATA_TIMEOUT * 2, ask).await.ok().flatten()
        });
    }
    let mut answers = Vec::new();
    while let Some(joined) = set.join_next().await {
        if let Ok(Some(answer)) = joined {
            answers.push(answer);
        }
    }
    answers.sort_by_key(|a| a.0);
    answers
}

/// Per partition of `topic`, the highest-epoch answer; with, per partition, the node list
/// of the answer it came from (to route to its head).
fn freshest(
    topic: &str,
    answers: &[(u32, Vec<NodeInfo>, Vec<TopicMetadata>)],
) -> Option<(TopicMetadata, BTreeMap<u32, Vec<NodeInfo>>)> {
    let mut best: BTreeMap<u32, (PartitionMetadata, &Vec<NodeInfo>)> = BTreeMap::new();
    for (_, nodes, topics) in answers {
        let Some(t) = topics.iter().find(|t| t.name == topic && t.error == ErrorCode::None) else {
            continue;
        };
        for p in &t.partitions {
            let newer = best.get(&p.partition).is_none_or(|(b, _)| p.epoch > b.epoch);
            if newer && p.error == ErrorCode::None {
                best.insert(p.partition, (p.clone(), nodes));
            }
        }
    }
    if best.is_empty() {
        return None;
    }
    let nodes = best.iter().map(|(&p, (_, n))| (p, (*n).clone())).collect();
    let partitions = best.into_values().map(|(p, _)| p).collect();
    Some((TopicMetadata { name: topic.to_string(), error: ErrorCode::None, partitions }, nodes))
}

// ---------------------------------------------------------------------------------------
// the acks=all producer

/// How an [`AckProducer`] produces.
#[derive(Debug, Clone)]
pub struct ProducerSettings {
    pub topic: String,
    pub partitions: u32,
    /// Closed-loop producer tasks per partition (produces in flight per partition).
    pub lanes: u32,
    /// Lanes `0..idempotent_lanes` of each partition are idempotent producers: each takes a
    /// producer id (InitProducerId), numbers its batches, and resends a batch whose answer
    /// was lost or retriable, unchanged, until it is acknowledged (or answered
    /// `DUPLICATE_SEQUENCE`, which carries the original offset). The other lanes never resend.
    pub idempotent_lanes: u32,
    /// Records per produce (one batch).
    pub records_per_batch: usize,
    /// Filler bytes appended to each record's id.
    pub value_filler: usize,
    /// Longest the producer waits for one produce's answer before giving it up.
    pub request_timeout: Duration,
    /// Pause after a failed produce before routing again.
    pub retry_pause: Duration,
}

impl ProducerSettings {
    /// Defaults for `topic` with `partitions` partitions: 4 records × 64 B per produce.
    pub fn new(topic: &str, partitions: u32) -> Self {
        ProducerSettings {
            topic: topic.to_string(),
            partitions,
            lanes: 1,
            idempotent_lanes: 0,
            records_per_batch: 4,
            value_filler: 48,
            request_timeout: Duration::from_secs(2),
            retry_pause: Duration::from_millis(20),
        }
    }
}

/// One acknowledged produce.
#[derive(Debug, Clone)]
pub struct Ack {
    pub partition: u32,
    /// The producer task (of its partition) that sent it; acks of one lane are in offset order.
    pub lane: u32,
    pub base_offset: u64,
    pub values: Vec<Vec<u8>>,
    /// The node that answered (the head it was routed to).
    pub node: u32,
    pub sent_at: Instant,
    pub acked_at: Instant,
}

/// Everything an [`AckProducer`] did.
#[derive(Debug, Clone, Default)]
pub struct ProducerLog {
    /// Acknowledged produces, in the order the answers arrived.
    pub acks: Vec<Ack>,
    /// Acknowledged produces sent outside the closed loop (e.g. a test's direct produce to
    /// a paused node): checked for presence, not for order.
    pub side_acks: Vec<Ack>,
    /// Every value ever sent, per partition (acknowledged or not).
    pub sent: BTreeMap<u32, Vec<Vec<u8>>>,
    /// Produces that were never acknowledged, by (partition, lane), in the lane's order: a
    /// failed produce of a plain lane, or the batch an idempotent lane was still resending
    /// when it stopped. Their records may or may not be stored.
    pub unacked: Vec<(u32, u32, Vec<Vec<u8>>)>,
    /// The producer id of each idempotent lane, by (partition, lane).
    pub producer_ids: BTreeMap<(u32, u32), i64>,
    /// Produces an idempotent lane sent again unchanged.
    pub resends: u64,
    /// Resends answered `DUPLICATE_SEQUENCE` (stored before; acknowledged at the original offset).
    pub duplicate_acks: u64,
    /// Failed or timed-out produces (fate unknown, never resent).
    pub failures: u64,
    /// Failure counts by kind, for reports.
    pub failure_kinds: BTreeMap<String, u64>,
}

impl ProducerLog {
    /// Acknowledged records (not produces).
    pub fn acked_records(&self) -> usize {
        self.acks.iter().chain(&self.side_acks).map(|a| a.values.len()).sum()
    }

    /// The first ack on `partition` of a produce sent at or after `t`.
    pub fn first_ack_sent_after(&self, partition: u32, t: Instant) -> Option<&Ack> {
        self.acks.iter().find(|a| a.partition == partition && a.sent_at >= t)
    }
}

/// A continuous `acks=all` producer: `lanes` closed-loop tasks per partition (one produce in
/// flight per task, so a lane's acknowledgement order = offset order), routed to the chain
/// head from the freshest Metadata, re-routed after every failure.
pub struct AckProducer {
    log: Arc<Mutex<ProducerLog>>,
    stop: Arc<AtomicBool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    runtime: Arc<tokio::runtime::Runtime>,
}

impl AckProducer {
    /// Starts producing to every partition of `settings.topic` on `cluster`.
    pub fn start(cluster: &Cluster, settings: ProducerSettings) -> AckProducer {
        Self::start_on(cluster.addrs(), cluster.runtime(), settings)
    }

    /// Starts producing on `runtime` to the nodes of `addrs` (kept current by the caller).
    pub fn start_on(
        addrs: SharedAddrs,
        runtime: Arc<tokio::runtime::Runtime>,
        settings: ProducerSettings,
    ) -> AckProducer {
        let log = Arc::new(Mutex::new(ProducerLog::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let settings = Arc::new(settings);
        let lanes = settings.lanes.max(1);
        let tasks = (0..settings.partitions * lanes)
            .map(|i| {
                let task = PartitionTask {
                    partition: i / lanes,
                    lane: i % lanes,
                    settings: settings.clone(),
                    addrs: addrs.clone(),
                    log: log.clone(),
                    stop: stop.clone(),
                };
                runtime.spawn(task.run())
            })
            .collect();
        AckProducer { log, stop, tasks, runtime }
    }

    /// A copy of what happened so far.
    pub fn snapshot(&self) -> ProducerLog {
        lock(&self.log).clone()
    }

    /// Acknowledged records so far.
    pub fn acked_records(&self) -> usize {
        lock(&self.log).acked_records()
    }

    /// Waits up to `timeout` for an ack on `partition` of a produce sent at or after `t`;
    /// the time from `t` to that ack (the failover time when `t` is the kill).
    pub fn wait_ack_sent_after(&self, partition: u32, t: Instant, timeout: Duration) -> Option<Duration> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(ack) = lock(&self.log).first_ack_sent_after(partition, t) {
                return Some(ack.acked_at.duration_since(t));
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Waits until `more` records beyond the current count are acknowledged.
    pub fn wait_more_acks(&self, more: usize, timeout: Duration) -> bool {
        let target = self.acked_records() + more;
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if self.acked_records() >= target {
                return true;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        false
    }

    /// Stops the tasks (an in-flight produce finishes or times out first) and returns the log.
    pub fn stop(self) -> ProducerLog {
        self.stop.store(true, Ordering::SeqCst);
        for task in self.tasks {
            let _ = self.runtime.block_on(task);
        }
        lock(&self.log).clone()
    }
}

/// Why a produce was not acknowledged.
struct ProduceFailure {
    /// For reports: the error code's name, `timeout`, ….
    kind: String,
    /// The produce may be sent again unchanged (its answer was lost, or the refusal is
    /// retriable); an idempotent lane does so.
    resendable: bool,
}

impl ProduceFailure {
    fn lost(kind: String) -> ProduceFailure {
        ProduceFailure { kind, resendable: true }
    }
}

struct PartitionTask {
    partition: u32,
    lane: u32,
    settings: Arc<ProducerSettings>,
    addrs: SharedAddrs,
    log: Arc<Mutex<ProducerLog>>,
    stop: Arc<AtomicBool>,
}

impl PartitionTask {
    async fn run(self) {
        let mut client: Option<Client> = None;
        let mut target: Option<(u32, SocketAddr)> = None;
        let idempotent = self.lane < self.settings.idempotent_lanes;
        // An idempotent lane's producer id, its next sequence and the batch it resends.
        let (mut producer, mut sequence, mut pending) = (None::<i64>, 0i32, None::<Vec<Vec<u8>>>);
        // Lanes draw from disjoint id ranges, so every value stays unique.
        let mut seq = u64::from(self.lane) * LANE_IDS;
        while !self.stop.load(Ordering::SeqCst) {
            if client.is_none() {
                client = self.connect().await;
            }
            let Some(c) = client.as_ref() else {
                tokio::time::sleep(self.settings.retry_pause).await;
                continue;
            };
            if idempotent && producer.is_none() {
                producer = self.init_producer_id(c).await;
                if producer.is_none() {
                    self.note_failure("init producer id", false);
                    tokio::time::sleep(self.settings.retry_pause).await;
                    continue;
                }
            }
            if target.is_none() {
                target = self.route().await;
            }
            let Some((node, addr)) = target else {
                self.note_failure("no route", false);
                tokio::time::sleep(self.settings.retry_pause).await;
                continue;
            };
            let resend = pending.is_some();
            let values = pending.take().unwrap_or_else(|| {
                let values: Vec<Vec<u8>> = (0..self.settings.records_per_batch)
                    .map(|i| record_value(self.partition, seq + i as u64, self.settings.value_filler))
                    .collect();
                seq += values.len() as u64;
                values
            });
            let batch = match producer {
                Some(id) => producer_batch_of(&values, id, sequence),
                None => batch_of(&values),
            };
            match self.produce_once(c, node, addr, &values, batch, resend).await {
                Ok(()) if idempotent => sequence = next_sequence(sequence, values.len() as u32),
                Ok(()) => {}
                Err(failure) => {
                    self.note_failure(&failure.kind, true);
                    if idempotent && !failure.resendable {
                        // A refused sequence cannot be resent or skipped: the lane ends here.
                        self.note_failure(&format!("idempotent lane stopped: {}", failure.kind), false);
                        lock(&self.log).unacked.push((self.partition, self.lane, values));
                        return;
                    }
                    if idempotent {
                        pending = Some(values);
                    } else {
                        lock(&self.log).unacked.push((self.partition, self.lane, values));
                    }
                    target = None;
                    tokio::time::sleep(self.settings.retry_pause).await;
                }
            }
        }
        if let Some(values) = pending {
            lock(&self.log).unacked.push((self.partition, self.lane, values));
        }
    }

    /// A producer id from InitProducerId (through any node); noted in the log.
    async fn init_producer_id(&self, client: &Client) -> Option<i64> {
        let call = client.call_any_idempotent(Request::InitProducerId);
        let (header, _) = tokio::time::timeout(self.settings.request_timeout, call).await.ok()?.ok()?;
        let Response::InitProducerId(r) = header.response else { return None };
        let id = i64::try_from(r.producer_id).ok()?;
        lock(&self.log).producer_ids.insert((self.partition, self.lane), id);
        Some(id)
    }

    async fn connect(&self) -> Option<Client> {
        let addrs: Vec<SocketAddr> = lock(&self.addrs).values().copied().collect();
        for addr in addrs {
            let mut config = ClientConfig::new(addr.to_string());
            config.request_timeout = self.settings.request_timeout;
            config.connect_timeout = METADATA_TIMEOUT;
            config.reconnect_backoff_max = Duration::from_millis(200);
            config.client_id = format!("cluster-producer-p{}-l{}", self.partition, self.lane);
            if let Ok(Ok(client)) = tokio::time::timeout(METADATA_TIMEOUT, Client::connect(config)).await {
                return Some(client);
            }
        }
        None
    }

    /// The head of this partition's freshest chain and the address of its owner shard.
    async fn route(&self) -> Option<(u32, SocketAddr)> {
        let targets: Vec<(u32, SocketAddr)> = lock(&self.addrs).iter().map(|(&id, &a)| (id, a)).collect();
        let answers = ask_metadata(&targets, std::slice::from_ref(&self.settings.topic)).await;
        let (meta, nodes) = freshest(&self.settings.topic, &answers)?;
        let part = meta.partitions.iter().find(|p| p.partition == self.partition)?;
        let head = part.leader_node;
        let info = nodes.get(&self.partition).and_then(|n| n.iter().find(|i| i.node_id == head));
        let from_info = info.and_then(|i| {
            let port = match i.shard_ports.get(usize::from(part.leader_shard)) {
                Some(&p) if p != 0 => p,
                _ => i.port,
            };
            format!("{}:{port}", i.host).parse::<SocketAddr>().ok()
        });
        let addr = from_info.or_else(|| lock(&self.addrs).get(&head).copied())?;
        Some((head, addr))
    }

    /// One acks=all produce of `batch` (holding `values`; `resend`: sent before, unchanged).
    async fn produce_once(
        &self,
        client: &Client,
        node: u32,
        addr: SocketAddr,
        values: &[Vec<u8>],
        batch: Bytes,
        resend: bool,
    ) -> Result<(), ProduceFailure> {
        if resend {
            lock(&self.log).resends += 1;
        } else {
            lock(&self.log).sent.entry(self.partition).or_default().extend(values.iter().cloned());
        }
        let timeout_ms = u32::try_from(self.settings.request_timeout.as_millis()).unwrap_or(u32::MAX);
        let request = Request::Produce(ProduceRequest {
            acks: Acks::All,
            timeout_ms,
            partitions: vec![ProducePartition {
                topic: self.settings.topic.clone(),
                partition: self.partition,
                bytes_len: batch.len() as u32,
            }],
        });
        let sent_at = Instant::now();
        let answer = tokio::time::timeout(self.settings.request_timeout, client.call(addr, request, &batch)).await;
        let acked_at = Instant::now();
        let (header, _) = match answer {
            Err(_) => return Err(ProduceFailure::lost("timeout".into())),
            Ok(Err(e)) => {
                // Only a refusal the client deems final ends an idempotent lane.
                let resendable = e.is_retriable() || !matches!(e, ClientError::Server { .. });
                return Err(ProduceFailure { kind: format!("{:?}", e.code()), resendable });
            }
            Ok(Ok(reply)) => reply,
        };
        let Response::Produce(response) = header.response else {
            return Err(ProduceFailure::lost("unexpected response".into()));
        };
        let Some(p) = response.partitions.into_iter().find(|p| p.partition == self.partition) else {
            return Err(ProduceFailure::lost("partition missing in response".into()));
        };
        // A resent idempotent batch the partition holds already: acknowledged at its offset.
        let duplicate = p.error == ErrorCode::DuplicateSequence && resend;
        if p.error != ErrorCode::None && !duplicate {
            // Retriable as the client library sees it (which adds e.g. STALE_EPOCH: the routed
            // head is behind a reconfiguration).
            let resendable = ClientError::Server { code: p.error, message: String::new() }.is_retriable();
            return Err(ProduceFailure { kind: p.error.name().to_string(), resendable });
        }
        let ack = Ack {
            partition: self.partition,
            lane: self.lane,
            base_offset: p.base_offset,
            values: values.to_vec(),
            node,
            sent_at,
            acked_at,
        };
        let mut log = lock(&self.log);
        log.duplicate_acks += u64::from(duplicate);
        log.acks.push(ack);
        Ok(())
    }

    fn note_failure(&self, kind: &str, produce: bool) {
        let mut log = lock(&self.log);
        if produce {
            log.failures += 1;
        }
        *log.failure_kinds.entry(kind.to_string()).or_default() += 1;
    }
}

// ---------------------------------------------------------------------------------------
// the end-state check

/// What [`verify_replicas`] compared.
#[derive(Debug, Clone, Default)]
pub struct ClusterReport {
    /// Per partition: (replica node ids read, records per replica, verification of one replica).
    pub partitions: BTreeMap<u32, (Vec<u32>, usize, VerifyReport)>,
    pub acked_records: usize,
    pub failed_produces: u64,
    /// The converged log of every partition (what every replica returned at the end).
    pub final_logs: BTreeMap<u32, Vec<StoredRecord>>,
}

/// A broken end-state guarantee.
#[derive(Debug, thiserror::Error)]
pub enum ClusterViolation {
    #[error("harness: {0}")]
    Harness(#[from] HarnessError),
    #[error("node {node}: {violation}")]
    Ledger { node: u32, violation: Violation },
    #[error(
        "partition {partition} lane {lane}: ack order broken: produce acked at offset {later} after one at {earlier}"
    )]
    AckOrder { partition: u32, lane: u32, earlier: u64, later: u64 },
    #[error("partition {partition}: replicas differ after {waited:?}: {detail}")]
    Diverged { partition: u32, waited: Duration, detail: String },
    #[error("partition {partition}: nothing to compare ({detail})")]
    Vacuous { partition: u32, detail: String },
    #[error("partition {partition} offset {offset}: node {node} served {served} while it was running, the final log has {last}")]
    ReadNotCommitted { partition: u32, offset: u64, node: u32, served: String, last: String },
}

/// Checks the end state of `log` on every running node that is a replica of `topic`:
/// the replicas converge (within `settle`) to identical logs (same records at the same
/// offsets); every acknowledged record is there exactly once at its acknowledged offset;
/// acknowledgements are in offset order per partition and lane; unacknowledged records appear at
/// most once; nothing appears that was never sent.
pub fn verify_replicas(
    cluster: &Cluster,
    log: &ProducerLog,
    topic: &str,
    partitions: u32,
    settle: Duration,
) -> Result<ClusterReport, ClusterViolation> {
    let mut ledger = Ledger::new(partitions);
    for (&p, values) in &log.sent {
        ledger.record_sent(p, values);
    }
    let mut last_offset: BTreeMap<(u32, u32), u64> = BTreeMap::new();
    for ack in &log.acks {
        let (partition, lane) = (ack.partition, ack.lane);
        if let Some(&earlier) = last_offset.get(&(partition, lane)) {
            if ack.base_offset <= earlier {
                return Err(ClusterViolation::AckOrder { partition, lane, earlier, later: ack.base_offset });
            }
        }
        last_offset.insert((partition, lane), ack.base_offset);
        ledger
            .record_ack(ack.partition, ack.base_offset, &ack.values)
            .map_err(|violation| ClusterViolation::Ledger { node: ack.node, violation })?;
    }
    for ack in &log.side_acks {
        ledger
            .record_ack(ack.partition, ack.base_offset, &ack.values)
            .map_err(|violation| ClusterViolation::Ledger { node: ack.node, violation })?;
    }
    let mut report =
        ClusterReport { acked_records: log.acked_records(), failed_produces: log.failures, ..Default::default() };
    for p in 0..partitions {
        let (nodes, records) = converged_replicas(cluster, topic, p, settle)?;
        let mut first = None;
        for &node in &nodes {
            let checked =
                ledger.verify(p, 0, &records).map_err(|violation| ClusterViolation::Ledger { node, violation })?;
            first.get_or_insert(checked);
        }
        let checked = first.unwrap_or_default();
        if checked.acked_checked == 0 {
            let detail = format!("{} records on replicas {nodes:?}, none acknowledged", records.len());
            return Err(ClusterViolation::Vacuous { partition: p, detail });
        }
        report.partitions.insert(p, (nodes, records.len(), checked));
        report.final_logs.insert(p, records);
    }
    Ok(report)
}

/// Per partition: the chain members read, and the log they all returned.
pub type ConvergedLogs = BTreeMap<u32, (Vec<u32>, Vec<StoredRecord>)>;

/// The converged log of every partition `0..partitions` of `topic` (see
/// [`verify_replicas`]; nothing checked but that the running chain members agree), with
/// the members read per partition.
pub fn converged_logs(
    cluster: &Cluster,
    topic: &str,
    partitions: u32,
    settle: Duration,
) -> Result<ConvergedLogs, ClusterViolation> {
    (0..partitions).map(|p| converged_replicas(cluster, topic, p, settle).map(|log| (p, log))).collect()
}

/// Reads partition `p` from every running member of its chain until all return the same
/// records (commit offsets converge after the load stops); the members and the records.
fn converged_replicas(
    cluster: &Cluster,
    topic: &str,
    p: u32,
    settle: Duration,
) -> Result<(Vec<u32>, Vec<StoredRecord>), ClusterViolation> {
    let started = Instant::now();
    loop {
        let chain = cluster.chain(topic, p)?;
        let running = cluster.running_ids();
        let members: Vec<u32> = chain.replicas.iter().copied().filter(|m| running.contains(m)).collect();
        let mut reads = Vec::new();
        for &m in &members {
            reads.push((m, cluster.read_replica(m, topic, p)));
        }
        let all_ok = reads.iter().all(|(_, r)| r.is_ok());
        let same = all_ok && reads.windows(2).all(|w| w[0].1.as_ref().ok() == w[1].1.as_ref().ok());
        if same && !members.is_empty() {
            let records = reads.into_iter().next().and_then(|(_, r)| r.ok()).unwrap_or_default();
            return Ok((members, records));
        }
        if started.elapsed() >= settle {
            let detail = reads
                .iter()
                .map(|(m, r)| match r {
                    Ok(records) => format!("node {m}: {} records (last {:?})", records.len(), records.last()),
                    Err(e) => format!("node {m}: {e}"),
                })
                .collect::<Vec<_>>()
                .join("; ");
            let detail = format!("chain {chain:?}; {detail}");
            return Err(ClusterViolation::Diverged { partition: p, waited: settle, detail });
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

// ---------------------------------------------------------------------------------------
// committed reads while the faults happen

/// One record a replica served: (node, partition, offset) → value.
type Served = BTreeMap<(u32, u64), (u32, Vec<u8>)>;

/// Everything a [`ReplicaReader`] was served, first read per (partition, offset).
#[derive(Debug, Clone, Default)]
pub struct ReadLog {
    /// First value served per (partition, offset), with the node that served it.
    pub served: Served,
    /// Reads that disagreed with an earlier read of the same offset (any node):
    /// (partition, offset, node, value); each one is a violation on its own.
    pub conflicts: Vec<(u32, u64, u32, Vec<u8>)>,
    /// Fetches answered with data.
    pub fetches: u64,
}

impl ReadLog {
    /// Every record ever served by any replica during the run must be in the final log
    /// at the same offset: a served read is committed, and committed data never changes.
    /// The number of served records checked.
    pub fn check(&self, report: &ClusterReport) -> Result<usize, ClusterViolation> {
        let show = |v: &[u8]| String::from_utf8_lossy(&v[..v.len().min(40)]).into_owned();
        if let Some((partition, offset, node, value)) = self.conflicts.first() {
            let first = self.served.get(&(*partition, *offset)).map_or_else(String::new, |(_, v)| show(v));
            let (partition, offset, node) = (*partition, *offset, *node);
            return Err(ClusterViolation::ReadNotCommitted {
                partition,
                offset,
                node,
                served: show(value),
                last: first,
            });
        }
        for (&(partition, offset), (node, value)) in &self.served {
            let last = report.final_logs.get(&partition).and_then(|log| log.get(offset as usize));
            if last.map(|r| (r.offset, &r.value)) != Some((offset, value)) {
                let last = last.map_or_else(|| "nothing".to_string(), |r| show(&r.value));
                let served = show(value);
                return Err(ClusterViolation::ReadNotCommitted { partition, offset, node: *node, served, last });
            }
        }
        Ok(self.served.len())
    }
}

/// A background reader: reads `partitions` of `topic` from every node of the address map
/// in turn (Fetch on its public port, no wait), recording every record served, so reads
/// during faults can be checked against the final log ([`ReadLog::check`]).
pub struct ReplicaReader {
    stop: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<ReadLog>,
}

impl ReplicaReader {
    /// Starts reading; node addresses come from `addrs` (restarted nodes are followed).
    pub fn start(addrs: SharedAddrs, topic: &str, partitions: u32) -> ReplicaReader {
        let stop = Arc::new(AtomicBool::new(false));
        let (flag, topic) = (stop.clone(), topic.to_string());
        let thread = std::thread::spawn(move || read_loop(&addrs, &topic, partitions, &flag));
        ReplicaReader { stop, thread }
    }

    /// Stops the reader; what it was served.
    pub fn stop(self) -> ReadLog {
        self.stop.store(true, Ordering::SeqCst);
        self.thread.join().unwrap_or_default()
    }
}

fn read_loop(addrs: &SharedAddrs, topic: &str, partitions: u32, stop: &AtomicBool) -> ReadLog {
    let mut log = ReadLog::default();
    // Per node: its address when connected, the connection, the next offset per partition.
    let mut conns: BTreeMap<u32, (SocketAddr, WireClient)> = BTreeMap::new();
    let mut next: BTreeMap<(u32, u32), u64> = BTreeMap::new();
    while !stop.load(Ordering::SeqCst) {
        let nodes: Vec<(u32, SocketAddr)> = lock(addrs).iter().map(|(&id, &a)| (id, a)).collect();
        for (node, addr) in nodes {
            if conns.get(&node).is_none_or(|(a, _)| *a != addr) {
                match WireClient::connect(addr, Duration::from_millis(300)) {
                    Ok(c) => drop(conns.insert(node, (addr, c))),
                    Err(_) => continue,
                }
            }
            for p in 0..partitions {
                let Some((_, conn)) = conns.get_mut(&node) else { break };
                let from = next.get(&(node, p)).copied().unwrap_or(0);
                match read_some(conn, topic, p, from) {
                    Ok(records) => record_reads(&mut log, node, p, &records, &mut next),
                    Err(ReadFailure::Connection) => drop(conns.remove(&node)),
                    Err(ReadFailure::Refused(ErrorCode::OffsetOutOfRange)) => drop(next.remove(&(node, p))),
                    Err(ReadFailure::Refused(_)) => {}
                }
            }
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    log
}

enum ReadFailure {
    Connection,
    Refused(ErrorCode),
}

/// One fetch of `partition` from `from`; the records served (possibly none).
fn read_some(conn: &mut WireClient, topic: &str, partition: u32, from: u64) -> Result<Vec<StoredRecord>, ReadFailure> {
    let (response, bytes) = conn.fetch(topic, partition, from, 0).map_err(|e| match e.server_code() {
        Some(code) => ReadFailure::Refused(code),
        None => ReadFailure::Connection,
    })?;
    if response.error != ErrorCode::None {
        return Err(ReadFailure::Refused(response.error));
    }
    let mut records = Vec::new();
    // Bad bytes are the end-state checker's business (it reads the same logs); skip them here.
    let _ = crate::client::decode_batches(partition, from, &bytes, &mut records);
    Ok(records)
}

fn record_reads(log: &mut ReadLog, node: u32, p: u32, records: &[StoredRecord], next: &mut BTreeMap<(u32, u32), u64>) {
    if records.is_empty() {
        return;
    }
    log.fetches += 1;
    for r in records {
        match log.served.get(&(p, r.offset)) {
            Some((_, v)) if *v != r.value => log.conflicts.push((p, r.offset, node, r.value.clone())),
            Some(_) => {}
            None => drop(log.served.insert((p, r.offset), (node, r.value.clone()))),
        }
    }
    if let Some(last) = records.last() {
        next.insert((node, p), last.offset + 1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report_with(log: &[&[u8]]) -> ClusterReport {
        let records = log.iter().enumerate().map(|(i, v)| StoredRecord { offset: i as u64, value: v.to_vec() });
        ClusterReport { final_logs: BTreeMap::from([(0, records.collect())]), ..ClusterReport::default() }
    }

    fn served(reads: &[(u64, u32, &[u8])]) -> ReadLog {
        let mut log = ReadLog::default();
        for &(offset, node, value) in reads {
            let mut next = BTreeMap::new();
            record_reads(&mut log, node, 0, &[StoredRecord { offset, value: value.to_vec() }], &mut next);
        }
        log
    }

    #[test]
    fn reads_of_the_final_log_pass_and_are_counted() {
        let report = report_with(&[b"a", b"b", b"c"]);
        assert_eq!(served(&[(0, 1, b"a"), (2, 2, b"c"), (2, 3, b"c")]).check(&report).unwrap(), 2);
    }

    #[test]
    fn a_read_that_is_not_in_the_final_log_is_caught() {
        let report = report_with(&[b"a", b"b"]);
        let changed = served(&[(1, 2, b"x")]).check(&report);
        assert!(matches!(changed, Err(ClusterViolation::ReadNotCommitted { offset: 1, node: 2, .. })), "{changed:?}");
        let beyond = served(&[(2, 3, b"c")]).check(&report);
        assert!(matches!(beyond, Err(ClusterViolation::ReadNotCommitted { offset: 2, node: 3, .. })), "{beyond:?}");
    }

    #[test]
    fn two_replicas_serving_different_records_at_one_offset_is_caught() {
        let report = report_with(&[b"a", b"b"]);
        let reads = served(&[(1, 1, b"b"), (1, 2, b"z")]);
        assert_eq!(reads.conflicts.len(), 1);
        assert!(matches!(reads.check(&report), Err(ClusterViolation::ReadNotCommitted { offset: 1, node: 2, .. })));
    }
}
