//! In-process replication harness for the `replication_*` tests: each replica runs on
//! its own glommio thread with its own partition log (buffered, fsync=always) in a temp
//! dir, linked to the others by the real replication transport over 127.0.0.1, and is
//! driven by commands over a channel while the test plays the control plane (chain
//! configs, peer addresses, stops). Test-specific commands plug in through [`Extra`].
//! Plus the helpers those tests share: batches, acks=all produce loops with a deadline,
//! reading a log back, chain configs and record values.
//!
//! Included with `#[path = "common/replication.rs"] mod replication;`.
#![allow(dead_code, reason = "each test binary uses a different part of the harness")]

use bytes::Bytes;
use glommio::net::TcpListener;
use glommio::LocalExecutorBuilder;
use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use strand_core::chain::{Acks, ChainConfig, Epoch, NodeId};
use strand_node::log::{FsyncPolicy, IoMode, LogConfig, PartitionLog};
use strand_node::replication::auth::LinkAuth;
use strand_node::replication::{link, Peers, ReplicatedPartition, Replicator};
use strand_wire::batch::{BatchBuilder, BatchIter};

/// How long one produce may take before it counts as failed ("timed out").
pub const PRODUCE_DEADLINE: Duration = Duration::from_secs(10);
/// How long a node may take to bind, and [`wait_for`] may poll.
pub const WAIT: Duration = Duration::from_secs(15);

/// The cluster secret every in-process node of these tests shares.
pub const TEST_SECRET: &[u8] = b"strand-test-cluster-secret";

/// Node `me`'s identity on replication links.
pub fn auth(me: u32) -> LinkAuth {
    LinkAuth::new(NodeId(me), TEST_SECRET)
}

/// The inbound side of node `me`'s replication listener, default limits.
pub fn inbound(me: u32) -> link::Inbound {
    link::Inbound {
        auth: auth(me),
        limits: link::InboundLimits::default(),
        metrics: Default::default(),
        on_peer_lost: None,
    }
}

/// The log settings every replica uses.
pub fn log_config() -> LogConfig {
    LogConfig { io_mode: IoMode::Buffered, fsync: FsyncPolicy::Always, min_free_bytes: 0, ..LogConfig::default() }
}

/// A batch of one record whose value is `{tag}-{seq}`.
pub fn batch(tag: &str, seq: u32) -> Bytes {
    let mut b = BatchBuilder::new();
    b.push(1_000, None, Some(format!("{tag}-{seq}").as_bytes()), &[]);
    b.finish()
}

/// The chain `members` (head first) in `epoch`, with an optional learner.
pub fn chain_with(epoch: u64, members: &[u32], learner: Option<u32>) -> ChainConfig {
    ChainConfig {
        epoch: Epoch(epoch),
        members: members.iter().map(|m| NodeId(*m)).collect(),
        learner: learner.map(NodeId),
    }
}

/// The chain `members` (head first) in `epoch`, without a learner.
pub fn chain(epoch: u64, members: &[u32]) -> ChainConfig {
    chain_with(epoch, members, None)
}

/// Reads a replica's whole log (from its start, which retention may have moved above 0)
/// back through the log API.
pub async fn read_all(log: &PartitionLog) -> Vec<u8> {
    let mut out = Vec::new();
    let mut offset = log.log_start_offset();
    while offset < log.log_end_offset() {
        let read = log.read(offset, 1 << 20).await.expect("read");
        for chunk in &read.chunks {
            out.extend_from_slice(&chunk.to_bytes().await.expect("chunk"));
        }
        offset = read.next_offset;
    }
    out
}

/// Produces `batches` batches `{tag}-{seq}` one after another; their offsets, or the
/// first error (a produce over [`PRODUCE_DEADLINE`] is "timed out").
pub async fn produce_n(replica: &ReplicatedPartition, tag: &str, batches: u32, acks: Acks) -> Result<Vec<u64>, String> {
    let mut offsets = Vec::new();
    for seq in 0..batches {
        let produce = async { Some(replica.produce(batch(tag, seq), acks).await) };
        let deadline = async {
            glommio::timer::sleep(PRODUCE_DEADLINE).await;
            None
        };
        match futures_lite::future::or(produce, deadline).await {
            Some(Ok(offset)) => offsets.push(offset),
            Some(Err(e)) => return Err(e.to_string()),
            None => return Err("timed out".into()),
        }
    }
    Ok(offsets)
}

/// Values of every record in `log`, checking offsets are contiguous from 0.
pub fn values(log: &[u8]) -> Vec<String> {
    let mut out = Vec::new();
    let mut next = 0;
    for b in BatchIter::new(log) {
        let b = b.expect("valid batch");
        assert_eq!(b.header().base_offset, next, "offsets contiguous");
        next = b.header().next_offset();
        for r in b.records() {
            out.push(String::from_utf8(r.expect("record").value.expect("not a tombstone").to_vec()).expect("utf8"));
        }
    }
    out
}

/// What a node reports about its replica.
#[derive(Debug, Clone)]
pub struct State {
    pub committed: u64,
    pub learner_in_sync: bool,
    /// The whole log's bytes.
    pub log: Vec<u8>,
}

/// A command to a node's thread.
pub enum Cmd<X> {
    /// [`produce_n`] in a task of its own (several may run at once).
    Produce {
        tag: String,
        batches: u32,
        acks: Acks,
        reply: flume::Sender<Result<Vec<u64>, String>>,
    },
    Config(ChainConfig),
    /// Where a peer's replication listener is.
    Peer(NodeId, SocketAddr),
    State {
        reply: flume::Sender<State>,
    },
    /// A test-specific command, served by [`Extra::serve`].
    Extra(X),
    /// Ends the thread, dropping the replica and the log without a clean close.
    Stop,
}

/// What a node's thread runs: the replica, its log and its peer addresses.
pub struct Replica {
    pub replica: Rc<ReplicatedPartition>,
    pub log: Rc<PartitionLog>,
    pub peers: Rc<Peers>,
}

/// Test-specific commands a node serves besides the common ones.
pub trait Extra: Send + Sized + 'static {
    /// Per-node state of these commands.
    type Ctx: 'static;
    /// Makes the state once the log is open, before the replica starts on it.
    fn open(log: &Rc<PartitionLog>) -> Self::Ctx;
    /// Serves one command; the next command waits until it is done.
    fn serve(self, node: &Replica, ctx: &Self::Ctx) -> impl Future<Output = ()>;
}

/// No test-specific commands.
pub enum NoExtra {}

impl Extra for NoExtra {
    type Ctx = ();
    fn open(_: &Rc<PartitionLog>) {}
    async fn serve(self, _: &Replica, _: &()) {
        match self {}
    }
}

/// A replica node on its own thread.
pub struct Node<X: Extra = NoExtra> {
    pub cmds: flume::Sender<Cmd<X>>,
    thread: Option<JoinHandle<()>>,
    /// Its replication listener.
    pub addr: SocketAddr,
}

impl<X: Extra> Node<X> {
    /// Sends the command `make` builds around a reply channel; waits for the answer.
    pub fn ask<T>(&self, make: impl FnOnce(flume::Sender<T>) -> Cmd<X>) -> T {
        let (reply, rx) = flume::bounded(1);
        self.cmds.send(make(reply)).expect("node alive");
        rx.recv_timeout(PRODUCE_DEADLINE * 2).expect("node answered")
    }
    pub fn produce(&self, tag: &str, batches: u32, acks: Acks) -> Result<Vec<u64>, String> {
        self.ask(|reply| Cmd::Produce { tag: tag.into(), batches, acks, reply })
    }
    pub fn config(&self, config: &ChainConfig) {
        self.cmds.send(Cmd::Config(config.clone())).expect("node alive");
    }
    pub fn peer(&self, node: NodeId, addr: SocketAddr) {
        self.cmds.send(Cmd::Peer(node, addr)).expect("node alive");
    }
    pub fn extra(&self, command: X) {
        self.cmds.send(Cmd::Extra(command)).expect("node alive");
    }
    pub fn state(&self) -> State {
        self.ask(|reply| Cmd::State { reply })
    }
    /// "Crash": the thread ends, dropping the replica and the log without a clean close.
    pub fn stop(&mut self) {
        let _ = self.cmds.send(Cmd::Stop);
        if let Some(t) = self.thread.take() {
            t.join().expect("node thread");
        }
    }
}

/// Polls `node` until `done` holds for its state (or [`WAIT`] expires); the last state.
pub fn wait_for<X: Extra>(node: &Node<X>, done: impl Fn(&State) -> bool) -> State {
    let start = Instant::now();
    loop {
        let state = node.state();
        if done(&state) || start.elapsed() > WAIT {
            return state;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// What a node starts from: replica `me` of partition 0 of `topic`, on whatever `dir`
/// holds, refusing to act in epochs before `epoch_min`, configured with `config`.
#[derive(Clone)]
pub struct Spec {
    pub topic: &'static str,
    pub me: u32,
    pub dir: PathBuf,
    pub epoch_min: u64,
    pub config: ChainConfig,
}

/// Starts a node that binds its listener, then waits for its peer map on the returned
/// sender before it opens its log and starts the replica.
fn spawn<X: Extra>(spec: Spec) -> (Node<X>, flume::Sender<HashMap<NodeId, SocketAddr>>) {
    let (cmds, cmd_rx) = flume::unbounded::<Cmd<X>>();
    let (addr_tx, addr_rx) = flume::bounded(1);
    let (map_tx, map_rx) = flume::bounded::<HashMap<NodeId, SocketAddr>>(1);
    let me = spec.me;
    let thread = std::thread::spawn(move || {
        let ex = LocalExecutorBuilder::default().name(&format!("node{me}")).make().expect("executor");
        ex.run(async move {
            let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
            addr_tx.send(listener.local_addr().expect("addr")).expect("addr");
            let peers = Peers::new(auth(me), map_rx.recv_async().await.expect("peer map"));
            let log = Rc::new(PartitionLog::open(&spec.dir, log_config()).await.expect("open log"));
            let ctx = X::open(&log);
            let Spec { topic, dir, epoch_min, config, .. } = spec;
            let replica = ReplicatedPartition::start(
                topic,
                0,
                NodeId(me),
                log.clone(),
                dir,
                peers.clone(),
                Epoch(epoch_min),
                config,
            )
            .await
            .expect("start");
            let replicator = Replicator::new();
            replicator.add(replica.clone());
            glommio::spawn_local(link::serve(listener, replicator.frame_handler(), inbound(me))).detach();
            serve_commands(Replica { replica, log, peers }, ctx, cmd_rx).await;
        });
    });
    let addr = addr_rx.recv_timeout(WAIT).expect("node address");
    (Node { cmds, thread: Some(thread), addr }, map_tx)
}

/// Starts one node that knows `peers` from the start.
pub fn start_node<X: Extra>(spec: Spec, peers: HashMap<NodeId, SocketAddr>) -> Node<X> {
    let (node, map) = spawn(spec);
    map.send(peers).expect("node alive");
    node
}

/// Starts nodes `ids` of `topic` (fresh, in `config`, dirs `dir/n{id}`) and links them
/// before their replicas start; returns them by id.
pub fn start_nodes<X: Extra>(
    topic: &'static str,
    dir: &Path,
    ids: &[u32],
    config: &ChainConfig,
) -> HashMap<u32, Node<X>> {
    let spawned: Vec<_> = ids
        .iter()
        .map(|&me| {
            let spec = Spec { topic, me, dir: dir.join(format!("n{me}")), epoch_min: 0, config: config.clone() };
            (me, spawn::<X>(spec))
        })
        .collect();
    let addrs: HashMap<NodeId, SocketAddr> = spawned.iter().map(|(me, (node, _))| (NodeId(*me), node.addr)).collect();
    spawned
        .into_iter()
        .map(|(me, (node, map))| {
            map.send(addrs.clone()).expect("node alive");
            (me, node)
        })
        .collect()
}

async fn serve_commands<X: Extra>(node: Replica, ctx: X::Ctx, cmds: flume::Receiver<Cmd<X>>) {
    while let Ok(cmd) = cmds.recv_async().await {
        match cmd {
            Cmd::Produce { tag, batches, acks, reply } => {
                let replica = node.replica.clone();
                glommio::spawn_local(async move {
                    let _ = reply.send(produce_n(&replica, &tag, batches, acks).await);
                })
                .detach();
            }
            Cmd::Config(c) => node.replica.handle_config(c).expect("valid config"),
            Cmd::Peer(id, addr) => node.peers.set_addr(id, addr),
            Cmd::State { reply } => {
                let (committed, learner_in_sync) = (node.replica.committed().0, node.replica.learner_in_sync());
                let _ = reply.send(State { committed, learner_in_sync, log: read_all(&node.log).await });
            }
            Cmd::Extra(x) => x.serve(&node, &ctx).await,
            Cmd::Stop => return,
        }
    }
}
