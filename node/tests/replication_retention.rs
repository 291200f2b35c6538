//! Retention on replicated partitions over the real transport (glommio threads,
//! 127.0.0.1 sockets, real logs with 2 KiB segments and 4 KiB size retention in temp
//! dirs; the test plays the control plane). A 2-replica chain takes acks=all produces
//! and both replicas apply retention (only below what they serve); a fresh learner then
//! joins — its empty log ends below the tail's log start, so the tail resets it and it
//! catches up from that start while produces continue, and is promoted. The learner is
//! then crashed and restarted from its files (a log starting above 0), rejoins as learner
//! and is promoted again. End state: every replica holds the same bytes from the highest
//! log start on, every acknowledged record there exactly once, in order. Also
//! `PartitionLog::reset` alone, in both io modes, with its crash states.

#[path = "common/replication.rs"]
mod replication;

use glommio::net::TcpListener;
use glommio::LocalExecutorBuilder;
use replication::{batch, chain_with, produce_n, read_all, PRODUCE_DEADLINE, WAIT};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::rc::Rc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use strand_core::chain::{Acks, ChainConfig, Epoch, NodeId};
use strand_node::log::{FsyncPolicy, IoMode, LogConfig, PartitionLog};
use strand_node::replication::{link, Peers, ReplicatedPartition, Replicator};
use strand_wire::batch::BatchIter;

const TOPIC: &str = "retention";
const SEGMENT_BYTES: u64 = 2048;
const RETAIN_BYTES: u64 = 4096;

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
    /// Runs retention now: (segments deleted, log start).
    Retain {
        reply: flume::Sender<(u32, u64)>,
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

/// Small segments, retention by size: a few hundred batches make many segments.
fn log_config() -> LogConfig {
    LogConfig {
        io_mode: IoMode::Buffered,
        fsync: FsyncPolicy::Always,
        min_free_bytes: 0,
        segment_bytes: SEGMENT_BYTES,
        retention_bytes: Some(RETAIN_BYTES),
        ..LogConfig::default()
    }
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
            let peers = Peers::new(replication::auth(me), peers);
            let log = Rc::new(PartitionLog::open(&dir, log_config()).await.expect("open log"));
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
            glommio::spawn_local(link::serve(listener, replicator.frame_handler(), replication::inbound(me))).detach();
            serve_commands(&replica, &log, &peers, cmd_rx).await;
        });
    });
    let addr = addr_rx.recv_timeout(WAIT).expect("node address");
    Node { cmds, thread: Some(thread), addr }
}

async fn serve_commands(
    replica: &Rc<ReplicatedPartition>,
    log: &Rc<PartitionLog>,
    peers: &Rc<Peers>,
    cmds: flume::Receiver<Cmd>,
) {
    while let Ok(cmd) = cmds.recv_async().await {
        match cmd {
            Cmd::Produce { tag, batches, reply } => {
                let replica = replica.clone();
                glommio::spawn_local(async move {
                    let _ = reply.send(produce_n(&replica, &tag, batches, Acks::All).await);
                })
                .detach();
            }
            Cmd::Config(c) => replica.handle_config(c).expect("valid config"),
            Cmd::Peer(node, addr) => peers.set_addr(node, addr),
            Cmd::State { reply } => {
                let _ = reply.send((replica.committed().0, replica.learner_in_sync(), read_all(log).await));
            }
            Cmd::Retain { reply } => {
                let deleted = replica.apply_retention(i64::MAX / 2).await.expect("retention");
                let _ = reply.send((deleted, log.log_start_offset()));
            }
            Cmd::Stop => return,
        }
    }
}

/// Records of `log` (read from its start) as (offset, value), checking contiguity.
fn records(log: &[u8]) -> Vec<(u64, String)> {
    let mut out = Vec::new();
    let mut next = None;
    for b in BatchIter::new(log) {
        let b = b.expect("valid batch");
        assert_eq!(b.header().base_offset, next.unwrap_or(b.header().base_offset), "offsets contiguous");
        let next = next.insert(0);
        *next = b.header().next_offset();
        for (i, r) in b.records().enumerate() {
            let value = String::from_utf8(r.expect("record").value.expect("not a tombstone").to_vec()).expect("utf8");
            out.push((b.header().base_offset + i as u64, value));
        }
    }
    out
}

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

/// acks=all produce of `n` batches at the head (node 1), recorded in `acked`.
fn produce(nodes: &HashMap<u32, Node>, acked: &mut Vec<(u64, String)>, tag: &str, n: u32) {
    let offsets = nodes[&1].produce(tag, n).unwrap_or_else(|e| panic!("{tag}: acks=all produce failed: {e}"));
    acked.extend(offsets.into_iter().zip((0..n).map(|s| format!("{tag}-{s}"))));
}

fn retain(node: &Node) -> (u32, u64) {
    node.ask(|reply| Cmd::Retain { reply })
}

fn link_all(nodes: &HashMap<u32, Node>) {
    for node in nodes.values() {
        for (&peer, other) in nodes {
            node.cmds.send(Cmd::Peer(NodeId(peer), other.addr)).expect("node alive");
        }
    }
}

#[test]
fn a_learner_joining_after_retention_is_reset_to_the_tails_start_and_restarts_from_it() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = |n: u32| tmp.path().join(format!("n{n}"));
    let mut nodes: HashMap<u32, Node> = HashMap::new();
    for n in [1, 2] {
        nodes.insert(n, start_node(n, dir(n), 0, chain_with(1, &[1, 2], None), HashMap::new()));
    }
    link_all(&nodes);
    let mut acked: Vec<(u64, String)> = Vec::new();
    produce(&nodes, &mut acked, "a", 200);
    let total = acked.len() as u64;
    wait_for(&nodes[&2], |s| s.0 >= total);
    let (deleted_head, head_start) = retain(&nodes[&1]);
    let (deleted_tail, tail_start) = retain(&nodes[&2]);
    assert!(deleted_head > 0 && deleted_tail > 0, "retention deleted nothing ({deleted_head}, {deleted_tail})");
    assert!(tail_start > 0 && head_start > 0);

    // A fresh learner: its empty log ends at 0, below the tail's start.
    nodes.insert(3, start_node(3, dir(3), 1, chain_with(1, &[1, 2], None), HashMap::new()));
    link_all(&nodes);
    for n in [1, 2, 3] {
        nodes[&n].config(&chain_with(2, &[1, 2], Some(3)));
    }
    produce(&nodes, &mut acked, "b", 30);
    let (_, in_sync, _) = wait_for(&nodes[&2], |s| s.1);
    assert!(in_sync, "the tail never reported its reset learner in sync");
    for n in [1, 2, 3] {
        nodes[&n].config(&chain_with(3, &[1, 2, 3], None));
    }
    produce(&nodes, &mut acked, "c", 20);
    let learner_start = std::fs::read_dir(dir(3))
        .expect("learner dir")
        .filter_map(|e| e.ok()?.file_name().to_str()?.strip_suffix(".log")?.parse::<u64>().ok())
        .min()
        .expect("a segment");
    assert!(learner_start >= tail_start, "the learner's log starts at {learner_start}, below the tail's {tail_start}");

    // Crash the new tail (its log starts above 0) and restart it from its files.
    nodes.get_mut(&3).expect("node 3").stop();
    for n in [1, 2] {
        nodes[&n].config(&chain_with(4, &[1, 2], None));
    }
    produce(&nodes, &mut acked, "d", 20);
    nodes.insert(3, start_node(3, dir(3), 4, chain_with(4, &[1, 2], None), HashMap::new()));
    link_all(&nodes);
    for n in [1, 2, 3] {
        nodes[&n].config(&chain_with(5, &[1, 2], Some(3)));
    }
    produce(&nodes, &mut acked, "e", 20);
    let (_, in_sync, _) = wait_for(&nodes[&2], |s| s.1);
    assert!(in_sync, "the restarted learner never caught up");
    for n in [1, 2, 3] {
        nodes[&n].config(&chain_with(6, &[1, 2, 3], None));
    }
    produce(&nodes, &mut acked, "f", 20);

    let total = acked.last().map_or(0, |(o, _)| o + 1);
    let states: Vec<(u64, Vec<(u64, String)>)> = [1, 2, 3]
        .iter()
        .map(|&n| {
            let state = wait_for(&nodes[&n], |s| s.0 >= total);
            assert_eq!(state.0, total, "node {n} serves reads up to the commit");
            let recs = records(&state.2);
            (recs.first().map_or(total, |r| r.0), recs)
        })
        .collect();
    let from = states.iter().map(|s| s.0).max().expect("three");
    for (n, (_, recs)) in [1, 2, 3].iter().zip(&states) {
        let suffix: Vec<(u64, String)> = recs.iter().filter(|(o, _)| *o >= from).cloned().collect();
        let expected: Vec<(u64, String)> = acked.iter().filter(|(o, _)| *o >= from).cloned().collect();
        assert_eq!(suffix, expected, "node {n}: every acknowledged record from {from} on, exactly once, in order");
    }
    for n in [1, 2, 3] {
        nodes.get_mut(&n).expect("node").stop();
    }
}

/// Values of every record in `log` from its start (via [`records`]).
async fn log_values(log: &PartitionLog) -> Vec<String> {
    records(&read_all(log).await).into_iter().map(|r| r.1).collect()
}

/// Copies every file of `from` into `to`.
fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for entry in std::fs::read_dir(from).expect("read dir") {
        let entry = entry.expect("entry");
        std::fs::copy(entry.path(), to.join(entry.file_name())).expect("copy");
    }
}

/// `PartitionLog::reset` in both io modes: the log restarts empty at its new base (appends
/// continue there, a reopen finds the same), and the crash states between its steps reopen
/// as valid logs — every old segment still present with the checkpoint already naming the
/// new base (the old log, whole), or no segment left (the empty log at the new base).
#[test]
fn a_reset_log_restarts_empty_at_its_base_and_its_crash_states_reopen_valid() {
    for io_mode in [IoMode::Direct, IoMode::Buffered] {
        let tmp = tempfile::tempdir().expect("tempdir");
        let (dir, saved) = (tmp.path().join("p"), tmp.path().join("saved"));
        LocalExecutorBuilder::default()
            .spawn(move || async move {
                let cfg = LogConfig { io_mode, retention_bytes: None, ..log_config() };
                let log = PartitionLog::open(&dir, cfg.clone()).await.expect("open");
                for s in 0..100 {
                    log.append(bytes::BytesMut::from(&batch("old", s)[..])).await.expect("append");
                }
                let segments = log.segment_count();
                assert!(segments > 2, "{io_mode}: {segments} segments");
                log.close().await.expect("close");
                copy_dir(&dir, &saved);
                let old: Vec<String> = (0..100).map(|s| format!("old-{s}")).collect();

                let log = PartitionLog::open(&dir, cfg.clone()).await.expect("reopen");
                log.reset(500).await.expect("reset");
                assert_eq!((log.log_start_offset(), log.log_end_offset()), (500, 500), "{io_mode}");
                assert!(log.read(10, 4096).await.is_err(), "{io_mode}: offsets below the new start are gone");
                // The checkpoint the reset wrote (empty log at 500), for the crash states below.
                let checkpoint = std::fs::read(dir.join("recovery-point")).expect("checkpoint");
                let info = log.append(bytes::BytesMut::from(&batch("new", 0)[..])).await.expect("append");
                assert_eq!(info.base_offset, 500, "{io_mode}");
                drop(log);
                let log = PartitionLog::open(&dir, cfg.clone()).await.expect("reopen after reset");
                assert_eq!((log.log_start_offset(), log.log_end_offset()), (500, 501), "{io_mode}");
                assert_eq!(log_values(&log).await, vec!["new-0".to_string()], "{io_mode}");
                log.close().await.expect("close");

                // Crash after the checkpoint, before any unlink: the old log, whole.
                let crashed = dir.with_extension("crash1");
                copy_dir(&saved, &crashed);
                std::fs::write(crashed.join("recovery-point"), &checkpoint).expect("write checkpoint");
                let log = PartitionLog::open(&crashed, cfg.clone()).await.expect("open crash state 1");
                assert_eq!((log.log_start_offset(), log.log_end_offset()), (0, 100), "{io_mode}");
                assert_eq!(log_values(&log).await, old, "{io_mode}");
                drop(log);
                // Crash after every unlink, before the new segment exists: empty at 500.
                let crashed = dir.with_extension("crash2");
                std::fs::create_dir_all(&crashed).expect("mkdir");
                std::fs::write(crashed.join("recovery-point"), &checkpoint).expect("write checkpoint");
                let log = PartitionLog::open(&crashed, cfg.clone()).await.expect("open crash state 2");
                assert_eq!((log.log_start_offset(), log.log_end_offset()), (500, 500), "{io_mode}");
                let info = log.append(bytes::BytesMut::from(&batch("new", 1)[..])).await.expect("append");
                assert_eq!(info.base_offset, 500, "{io_mode}");
            })
            .expect("executor")
            .join()
            .expect("executor thread");
    }
}
