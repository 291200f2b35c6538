//! Chain reconfiguration over the real transport: replicas on their own glommio
//! threads and 127.0.0.1 sockets, stopped one at a time (middle, tail, head) while the
//! test plays the control plane (new epoch to the survivors). Every acks=all produce
//! acknowledged before or after a failure must be in the survivor's log exactly once,
//! in order. A removed head that keeps running (a paused process coming back) is
//! fenced by the epoch: its acks=all produces never complete and the chain's logs
//! stay intact.

use bytes::Bytes;
use glommio::net::TcpListener;
use glommio::LocalExecutorBuilder;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::rc::Rc;
use std::thread::JoinHandle;
use std::time::Duration;
use strand_core::chain::{Acks, ChainConfig, Epoch, NodeId};
use strand_node::log::{FsyncPolicy, IoMode, LogConfig, PartitionLog};
use strand_node::replication::{link, Peers, ReplicatedPartition, Replicator};
use strand_wire::batch::{BatchBuilder, BatchIter};

const TOPIC: &str = "failover";
const PRODUCE_DEADLINE: Duration = Duration::from_secs(10);

enum Cmd {
    Produce { tag: String, batches: u32, acks: Acks, reply: flume::Sender<Result<Vec<u64>, String>> },
    Config(ChainConfig),
    State { reply: flume::Sender<(u64, Vec<u8>)> },
    Stop,
}

struct Node {
    cmds: flume::Sender<Cmd>,
    thread: Option<JoinHandle<()>>,
}

impl Node {
    fn produce(&self, tag: &str, batches: u32, acks: Acks) -> Result<Vec<u64>, String> {
        let (reply, rx) = flume::bounded(1);
        self.cmds.send(Cmd::Produce { tag: tag.into(), batches, acks, reply }).expect("node alive");
        rx.recv_timeout(PRODUCE_DEADLINE * 2).expect("produce answered")
    }
    fn config(&self, config: &ChainConfig) {
        self.cmds.send(Cmd::Config(config.clone())).expect("node alive");
    }
    fn state(&self) -> (u64, Vec<u8>) {
        let (reply, rx) = flume::bounded(1);
        self.cmds.send(Cmd::State { reply }).expect("node alive");
        rx.recv_timeout(Duration::from_secs(10)).expect("state answered")
    }
    fn stop(&mut self) {
        let _ = self.cmds.send(Cmd::Stop);
        if let Some(t) = self.thread.take() {
            t.join().expect("node thread");
        }
    }
}

fn batch(tag: &str, seq: u32) -> Bytes {
    let mut b = BatchBuilder::new();
    b.push(1_000, None, format!("{tag}-{seq}").as_bytes(), &[]);
    b.finish()
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

async fn produce_n(replica: &ReplicatedPartition, tag: &str, batches: u32, acks: Acks) -> Result<Vec<u64>, String> {
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

/// Starts nodes `ids` (all in `config`) and links them; returns them by id.
fn start_nodes(dir: &std::path::Path, ids: &[u32], config: &ChainConfig) -> HashMap<u32, Node> {
    let (addr_tx, addr_rx) = flume::unbounded();
    let mut nodes = HashMap::new();
    let mut map_txs = Vec::new();
    for &me in ids {
        let (cmds, cmd_rx) = flume::unbounded::<Cmd>();
        let (map_tx, map_rx) = flume::bounded::<HashMap<NodeId, SocketAddr>>(1);
        map_txs.push(map_tx);
        let (dir, config, addr_tx) = (dir.join(format!("n{me}")), config.clone(), addr_tx.clone());
        let thread = std::thread::spawn(move || {
            let ex = LocalExecutorBuilder::default().name(&format!("node{me}")).make().expect("executor");
            ex.run(async move {
                let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
                addr_tx.send((me, listener.local_addr().expect("addr"))).expect("addr");
                let peers = Peers::new(map_rx.recv_async().await.expect("peer map"));
                let cfg = LogConfig {
                    io_mode: IoMode::Buffered,
                    fsync: FsyncPolicy::Always,
                    min_free_bytes: 0,
                    ..LogConfig::default()
                };
                let log = Rc::new(PartitionLog::open(&dir, cfg).await.expect("open log"));
                let replicator = Replicator::new();
                let replica =
                    ReplicatedPartition::start(TOPIC, 0, NodeId(me), log.clone(), dir.clone(), peers, Epoch(0), config)
                        .await
                        .expect("start");
                replicator.add(replica.clone());
                glommio::spawn_local(link::serve(listener, replicator.frame_handler())).detach();
                serve_commands(&replica, &log, cmd_rx).await;
            });
        });
        nodes.insert(me, Node { cmds, thread: Some(thread) });
    }
    let mut addrs = HashMap::new();
    for _ in ids {
        let (id, addr) = addr_rx.recv_timeout(Duration::from_secs(10)).expect("address");
        addrs.insert(NodeId(id), addr);
    }
    for tx in map_txs {
        tx.send(addrs.clone()).expect("map");
    }
    nodes
}

async fn serve_commands(replica: &Rc<ReplicatedPartition>, log: &Rc<PartitionLog>, cmds: flume::Receiver<Cmd>) {
    while let Ok(cmd) = cmds.recv_async().await {
        match cmd {
            Cmd::Produce { tag, batches, acks, reply } => {
                let replica = replica.clone();
                glommio::spawn_local(async move {
                    let _ = reply.send(produce_n(&replica, &tag, batches, acks).await);
                })
                .detach();
            }
            Cmd::Config(c) => replica.handle_config(c).expect("valid config"),
            Cmd::State { reply } => {
                let _ = reply.send((replica.committed(), read_all(log).await));
            }
            Cmd::Stop => return,
        }
    }
}

fn chain(epoch: u64, members: &[u32]) -> ChainConfig {
    ChainConfig { epoch: Epoch(epoch), members: members.iter().map(|m| NodeId(*m)).collect(), learner: None }
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

fn wait_committed(node: &Node, at_least: u64) -> (u64, Vec<u8>) {
    for _ in 0..400 {
        let state = node.state();
        if state.0 >= at_least {
            return state;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    node.state()
}

#[test]
fn middle_tail_and_head_failures_lose_no_acknowledged_record() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let mut nodes = start_nodes(tmp.path(), &[1, 2, 3, 4], &chain(1, &[1, 2, 3, 4]));
    let mut acked: Vec<String> = Vec::new();
    let mut phase = |nodes: &HashMap<u32, Node>, head: u32, tag: &str| {
        let offsets = nodes[&head].produce(tag, 30, Acks::All).expect("acks=all produce");
        assert_eq!(offsets.len(), 30);
        acked.extend((0..30).map(|s| format!("{tag}-{s}")));
    };
    phase(&nodes, 1, "epoch1");
    // Middle (2) dies: the head resumes to 3 from its log end.
    nodes.get_mut(&2).expect("node 2").stop();
    for n in [1, 3, 4] {
        nodes[&n].config(&chain(2, &[1, 3, 4]));
    }
    phase(&nodes, 1, "epoch2");
    // Tail (4) dies: 3 becomes tail.
    nodes.get_mut(&4).expect("node 4").stop();
    for n in [1, 3] {
        nodes[&n].config(&chain(3, &[1, 3]));
    }
    phase(&nodes, 1, "epoch3");
    // Head (1) dies: 3 is promoted and takes produces.
    nodes.get_mut(&1).expect("node 1").stop();
    nodes[&3].config(&chain(4, &[3]));
    phase(&nodes, 3, "epoch4");

    let (committed, log) = wait_committed(&nodes[&3], acked.len() as u64);
    let held = values(&log);
    assert_eq!(committed, held.len() as u64);
    assert_eq!(held, acked, "the survivor holds every acknowledged record once, in order");
    nodes.get_mut(&3).expect("node 3").stop();
}

#[test]
fn a_removed_head_that_comes_back_is_fenced_by_the_epoch() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let mut nodes = start_nodes(tmp.path(), &[1, 2, 3], &chain(1, &[1, 2, 3]));
    nodes[&1].produce("before", 10, Acks::All).expect("produce");
    // Node 1 "pauses" (gets no new configuration, keeps running); the controller
    // removes it and promotes 2.
    for n in [2, 3] {
        nodes[&n].config(&chain(2, &[2, 3]));
    }
    nodes[&2].produce("after", 10, Acks::All).expect("produce on the new head");
    // The stale head still believes it leads epoch 1: its acks=all produce must not
    // complete, and nothing it sends may reach the new chain's logs.
    let stale = nodes[&1].produce("stale", 1, Acks::All);
    assert!(stale.is_err(), "a fenced head acknowledged acks=all: {stale:?}");
    let (_, log2) = wait_committed(&nodes[&2], 20);
    let (_, log3) = wait_committed(&nodes[&3], 20);
    let expected: Vec<String> =
        (0..10).map(|s| format!("before-{s}")).chain((0..10).map(|s| format!("after-{s}"))).collect();
    assert_eq!(values(&log2), expected);
    assert_eq!(log3, log2, "tail byte-identical to the new head");
    for n in [1, 2, 3] {
        nodes.get_mut(&n).expect("node").stop();
    }
}
