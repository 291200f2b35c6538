//! Replica restart over the real transport (glommio threads, 127.0.0.1 sockets, real
//! logs in temp dirs; the test plays the control plane). A 3-replica chain takes acks=all
//! produces; the head crashes (its replica and log are dropped) holding a suffix it
//! appended but never forwarded (three batches of its epoch, written into its log while
//! it is down); the chain reconfigures without it and takes more produces; the node
//! restarts from its files (`epoch_min` = the epoch at restart), rejoins as learner
//! (epoch bump), must cut exactly its stale suffix, catches up while produces continue,
//! is promoted once the tail reports `learner_in_sync`, and serves as tail. End state:
//! every log byte-identical, every acknowledged record present exactly once, in order.

use bytes::Bytes;
use glommio::net::TcpListener;
use glommio::LocalExecutorBuilder;
use std::cell::Cell;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use strand_core::chain::{Acks, ChainConfig, Epoch, NodeId};
use strand_node::log::{FsyncPolicy, IoMode, LogConfig, PartitionLog};
use strand_node::replication::{link, Peers, ReplicatedPartition, Replicator};
use strand_wire::batch::{BatchBuilder, BatchIter};

const TOPIC: &str = "restart";
const PRODUCE_DEADLINE: Duration = Duration::from_secs(10);
const WAIT: Duration = Duration::from_secs(15);

enum Cmd {
    Produce {
        tag: String,
        batches: u32,
        reply: flume::Sender<Result<Vec<u64>, String>>,
    },
    Config(ChainConfig),
    Peer(NodeId, SocketAddr),
    /// (committed, learner_in_sync, whole log bytes)
    State {
        reply: flume::Sender<(u64, bool, Vec<u8>)>,
    },
    /// Lowest log end the node's log showed since start (sampled every millisecond).
    LowestEnd {
        reply: flume::Sender<u64>,
    },
    Stop,
}

struct Node {
    cmds: flume::Sender<Cmd>,
    thread: Option<JoinHandle<()>>,
    addr: SocketAddr,
}

impl Node {
    fn ask<T>(&self, make: impl FnOnce(flume::Sender<T>) -> Cmd) -> T {
        let (reply, rx) = flume::bounded(1);
        self.cmds.send(make(reply)).expect("node alive");
        rx.recv_timeout(PRODUCE_DEADLINE * 2).expect("node answered")
    }
    fn produce(&self, tag: &str, batches: u32) -> Result<Vec<u64>, String> {
        self.ask(|reply| Cmd::Produce { tag: tag.into(), batches, reply })
    }
    fn config(&self, config: &ChainConfig) {
        self.cmds.send(Cmd::Config(config.clone())).expect("node alive");
    }
    fn state(&self) -> (u64, bool, Vec<u8>) {
        self.ask(|reply| Cmd::State { reply })
    }
    /// "Crash": the thread ends, dropping the replica and the log without a clean close.
    fn stop(&mut self) {
        let _ = self.cmds.send(Cmd::Stop);
        if let Some(t) = self.thread.take() {
            t.join().expect("node thread");
        }
    }
}

fn log_config() -> LogConfig {
    LogConfig { io_mode: IoMode::Buffered, fsync: FsyncPolicy::Always, min_free_bytes: 0, ..LogConfig::default() }
}

fn batch(tag: &str, seq: u32) -> Bytes {
    let mut b = BatchBuilder::new();
    b.push(1_000, None, format!("{tag}-{seq}").as_bytes(), &[]);
    b.finish()
}

fn chain(epoch: u64, members: &[u32], learner: Option<u32>) -> ChainConfig {
    ChainConfig {
        epoch: Epoch(epoch),
        members: members.iter().map(|m| NodeId(*m)).collect(),
        learner: learner.map(NodeId),
    }
}

async fn read_all(log: &PartitionLog) -> Vec<u8> {
    let mut out = Vec::new();
    let mut offset = 0;
    while offset < log.log_end_offset() {
        let read = log.read(offset, 1 << 20).await.expect("read");
        for chunk in &read.chunks {
            out.extend_from_slice(&chunk.to_bytes().await.expect("chunk"));
        }
        offset = read.next_offset;
    }
    out
}

async fn produce_n(replica: &ReplicatedPartition, tag: &str, batches: u32) -> Result<Vec<u64>, String> {
    let mut offsets = Vec::new();
    for seq in 0..batches {
        let produce = async { Some(replica.produce(batch(tag, seq), Acks::All).await) };
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

/// Starts node `me` on its own thread from whatever `dir` holds.
fn start_node(me: u32, dir: PathBuf, epoch_min: u64, config: ChainConfig, peers: HashMap<NodeId, SocketAddr>) -> Node {
    let (cmds, cmd_rx) = flume::unbounded::<Cmd>();
    let (addr_tx, addr_rx) = flume::bounded(1);
    let thread = std::thread::spawn(move || {
        let ex = LocalExecutorBuilder::default().name(&format!("node{me}")).make().expect("executor");
        ex.run(async move {
            let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
            addr_tx.send(listener.local_addr().expect("addr")).expect("addr");
            let peers = Peers::new(peers);
            let log = Rc::new(PartitionLog::open(&dir, log_config()).await.expect("open log"));
            let lowest = Rc::new(Cell::new(log.log_end_offset()));
            let (weak_log, low) = (Rc::downgrade(&log), lowest.clone());
            glommio::spawn_local(async move {
                while let Some(log) = weak_log.upgrade() {
                    low.set(low.get().min(log.log_end_offset()));
                    drop(log);
                    glommio::timer::sleep(Duration::from_millis(1)).await;
                }
            })
            .detach();
            let replicator = Replicator::new();
            let replica = ReplicatedPartition::start(
                TOPIC,
                0,
                NodeId(me),
                log.clone(),
                dir.clone(),
                peers.clone(),
                Epoch(epoch_min),
                config,
            )
            .await
            .expect("start");
            replicator.add(replica.clone());
            glommio::spawn_local(link::serve(listener, replicator.frame_handler())).detach();
            serve_commands(&replica, &log, &peers, &lowest, cmd_rx).await;
        });
    });
    let addr = addr_rx.recv_timeout(WAIT).expect("node address");
    Node { cmds, thread: Some(thread), addr }
}

async fn serve_commands(
    replica: &Rc<ReplicatedPartition>,
    log: &Rc<PartitionLog>,
    peers: &Rc<Peers>,
    lowest: &Rc<Cell<u64>>,
    cmds: flume::Receiver<Cmd>,
) {
    while let Ok(cmd) = cmds.recv_async().await {
        match cmd {
            Cmd::Produce { tag, batches, reply } => {
                let replica = replica.clone();
                glommio::spawn_local(async move {
                    let _ = reply.send(produce_n(&replica, &tag, batches).await);
                })
                .detach();
            }
            Cmd::Config(c) => replica.handle_config(c).expect("valid config"),
            Cmd::Peer(node, addr) => peers.set_addr(node, addr),
            Cmd::State { reply } => {
                let _ = reply.send((replica.committed(), replica.learner_in_sync(), read_all(log).await));
            }
            Cmd::LowestEnd { reply } => {
                let _ = reply.send(lowest.get());
            }
            Cmd::Stop => return,
        }
    }
}

/// Values of every record in `log`, checking offsets are contiguous from 0.
fn values(log: &[u8]) -> Vec<String> {
    let mut out = Vec::new();
    let mut next = 0;
    for b in BatchIter::new(log) {
        let b = b.expect("valid batch");
        assert_eq!(b.header().base_offset, next, "offsets contiguous");
        next = b.header().next_offset();
        for r in b.records() {
            out.push(String::from_utf8(r.expect("record").value.to_vec()).expect("utf8"));
        }
    }
    out
}

/// Polls `node` until `done` holds for its state (or the wait expires); returns the last state.
fn wait_for(node: &Node, done: impl Fn(&(u64, bool, Vec<u8>)) -> bool) -> (u64, bool, Vec<u8>) {
    let start = Instant::now();
    loop {
        let state = node.state();
        if done(&state) || start.elapsed() > WAIT {
            return state;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Appends `n` batches to the stopped node's log as it would have done at the head in its
/// epoch before crashing (never forwarded, never acknowledged).
fn inject_unforwarded_suffix(dir: &Path, n: u32) -> u64 {
    let dir = dir.to_owned();
    LocalExecutorBuilder::default()
        .spawn(move || async move {
            let log = PartitionLog::open(&dir, log_config()).await.expect("open stopped node's log");
            for seq in 0..n {
                log.append(bytes::BytesMut::from(&batch("stale", seq)[..])).await.expect("append stale");
            }
            let end = log.log_end_offset();
            log.close().await.expect("close");
            end
        })
        .expect("executor")
        .join()
        .expect("executor thread")
}

#[test]
fn crashed_head_restarts_cuts_its_stale_suffix_catches_up_and_is_promoted() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = |n: u32| tmp.path().join(format!("n{n}"));
    // Three nodes: bind first (addresses), then link.
    let mut nodes: HashMap<u32, Node> = HashMap::new();
    let epoch1 = chain(1, &[1, 2, 3], None);
    let (mut addrs, mut starts) = (HashMap::new(), Vec::new());
    for n in 1..=3u32 {
        // Each node learns its peers' addresses through `Cmd::Peer` once all are bound.
        let node = start_node(n, dir(n), 0, epoch1.clone(), HashMap::new());
        addrs.insert(NodeId(n), node.addr);
        starts.push((n, node));
    }
    for (n, node) in starts {
        for (&peer, &addr) in &addrs {
            node.cmds.send(Cmd::Peer(peer, addr)).expect("node alive");
        }
        nodes.insert(n, node);
    }
    let mut acked: Vec<String> = Vec::new();
    let mut produce = |nodes: &HashMap<u32, Node>, head: u32, tag: &str, n: u32| {
        let offsets = nodes[&head].produce(tag, n).unwrap_or_else(|e| panic!("{tag}: acks=all produce failed: {e}"));
        assert_eq!(offsets.len(), n as usize);
        acked.extend((0..n).map(|s| format!("{tag}-{s}")));
    };
    produce(&nodes, 1, "e1", 20);
    // An epoch bump with the same chain: the logs then hold batches of two epochs.
    for n in [1, 2, 3] {
        nodes[&n].config(&chain(2, &[1, 2, 3], None));
    }
    produce(&nodes, 1, "e2", 20);

    // The head crashes; it had appended three batches of epoch 2 it never forwarded.
    nodes.get_mut(&1).expect("node 1").stop();
    let stale_end = inject_unforwarded_suffix(&dir(1), 3);
    assert_eq!(stale_end, 43);
    for n in [2, 3] {
        nodes[&n].config(&chain(3, &[2, 3], None));
    }
    produce(&nodes, 2, "e3", 20);

    // Restart from its files; the controller re-admits it as learner with an epoch bump.
    let others = HashMap::from([(NodeId(2), nodes[&2].addr), (NodeId(3), nodes[&3].addr)]);
    let node1 = start_node(1, dir(1), 3, chain(3, &[2, 3], None), others);
    for n in [2, 3] {
        nodes[&n].cmds.send(Cmd::Peer(NodeId(1), node1.addr)).expect("node alive");
    }
    nodes.insert(1, node1);
    let epoch4 = chain(4, &[2, 3], Some(1));
    for n in [1, 2, 3] {
        nodes[&n].config(&epoch4);
    }
    // Produces continue while the learner catches up.
    produce(&nodes, 2, "e4", 30);
    let (_, in_sync, _) = wait_for(&nodes[&3], |s| s.1);
    assert!(in_sync, "the tail never reported its learner in sync");
    let epoch5 = chain(5, &[2, 3, 1], None);
    for n in [1, 2, 3] {
        nodes[&n].config(&epoch5);
    }
    produce(&nodes, 2, "e5", 20);

    let total = acked.len() as u64;
    let states: Vec<(u64, bool, Vec<u8>)> = [2, 3, 1].iter().map(|n| wait_for(&nodes[n], |s| s.0 >= total)).collect();
    for (state, n) in states.iter().zip([2, 3, 1]) {
        assert_eq!(state.0, total, "node {n} serves reads up to the commit");
        assert_eq!(state.2, states[0].2, "node {n}'s log differs from the head's");
    }
    assert_eq!(values(&states[0].2), acked, "every acknowledged record exactly once, in order");
    // The restarted node cut exactly its stale suffix: not less (it would hold foreign
    // data), not more (its prefix was recovered with the right epochs: a batch of epoch 1
    // mislabelled would not match the tail's position (40, epoch 2)).
    let lowest = nodes[&1].ask(|reply| Cmd::LowestEnd { reply });
    assert_eq!(lowest, 40, "the restarted replica's log was cut to {lowest}, not at its stale suffix");
    for n in [1, 2, 3] {
        nodes.get_mut(&n).expect("node").stop();
    }
    // Append epochs are persisted alike everywhere: e1 (epoch 1), e2 (2), e3 (3), e4 (4), e5 (5).
    let file = |n: u32| std::fs::read_to_string(dir(n).join("replication-epochs")).expect("epoch checkpoint");
    assert_eq!(file(2), "strand-replication-epochs 1\n5\n1 0\n2 20\n3 40\n4 60\n5 90\n");
    assert_eq!(file(1), file(2));
    assert_eq!(file(3), file(2));
}

/// A single-member chain in both io modes: the progress hook fires as commits advance;
/// dropping the replica ends its tasks so the log can be reclaimed (`Rc::try_unwrap`) and
/// closed; the node restarts from its files outside the chain until a newer epoch
/// includes it, then continues at the recovered log end with the new epoch recorded.
#[test]
fn a_dropped_replica_releases_its_log_and_restarts_from_its_files() {
    for io_mode in [IoMode::Direct, IoMode::Buffered] {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path().join("p0");
        let ex = LocalExecutorBuilder::default().name("single").make().expect("executor");
        ex.run(async move {
            let cfg = LogConfig { io_mode, ..log_config() };
            let peers = Peers::new(HashMap::new());
            let log = Rc::new(PartitionLog::open(&dir, cfg.clone()).await.expect("open log"));
            let single = |epoch| chain(epoch, &[1], None);
            let start = |log: Rc<PartitionLog>, epoch_min: u64, config: ChainConfig| {
                let (dir, peers) = (dir.clone(), peers.clone());
                async move {
                    ReplicatedPartition::start(TOPIC, 0, NodeId(1), log, dir, peers, Epoch(epoch_min), config).await
                }
            };
            let replica = start(log.clone(), 0, single(1)).await.expect("start");
            let wakes = Rc::new(Cell::new(0u32));
            let counter = wakes.clone();
            replica.set_progress_hook(Box::new(move || counter.set(counter.get() + 1)));
            assert_eq!(produce_n(&replica, "first", 10).await.expect("produce"), (0..10).collect::<Vec<u64>>());
            assert!(wakes.get() > 0, "{io_mode}: the progress hook never fired");
            assert_eq!((replica.committed(), replica.log_end()), (10, 10));
            drop(replica);
            let mut log = log;
            let deadline = Instant::now() + Duration::from_secs(2);
            let log = loop {
                match Rc::try_unwrap(log) {
                    Ok(log) => break log,
                    Err(still_shared) if Instant::now() < deadline => {
                        log = still_shared;
                        glommio::timer::sleep(Duration::from_millis(5)).await;
                    }
                    Err(_) => panic!("{io_mode}: the dropped replica's tasks still hold the log"),
                }
            };
            log.close().await.expect("close");

            let log = Rc::new(PartitionLog::open(&dir, cfg).await.expect("reopen log"));
            let replica = start(log.clone(), 1, single(1)).await.expect("restart");
            assert_eq!(replica.log_end(), 10, "{io_mode}: recovered log end");
            let refused = produce_n(&replica, "too-early", 1).await;
            assert!(refused.is_err(), "{io_mode}: a restarted replica acted in an epoch it lived through");
            replica.handle_config(single(2)).expect("config");
            assert_eq!(produce_n(&replica, "second", 5).await.expect("produce"), (10..15).collect::<Vec<u64>>());
            let expected: Vec<String> =
                (0..10).map(|s| format!("first-{s}")).chain((0..5).map(|s| format!("second-{s}"))).collect();
            assert_eq!(values(&read_all(&log).await), expected);
            let epochs = std::fs::read_to_string(dir.join("replication-epochs")).expect("epoch checkpoint");
            assert_eq!(epochs, "strand-replication-epochs 1\n2\n1 0\n2 10\n");
        });
    }
}
