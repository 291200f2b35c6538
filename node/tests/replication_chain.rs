//! Chain replication over real TCP on 127.0.0.1: three replicas, each on its own
//! glommio executor thread with its own partition log in a temp dir, linked by the
//! replication transport. Checks that acks=all produces complete, every replica
//! serves the committed prefix, the logs are byte-identical, and that acks=all does
//! not complete while the tail is unreachable (acks=leader does).

use bytes::Bytes;
use glommio::net::TcpListener;
use glommio::LocalExecutorBuilder;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};
use strand_core::chain::{Acks, ChainConfig, Epoch, NodeId};
use strand_node::log::{FsyncPolicy, IoMode, LogConfig, PartitionLog};
use strand_node::replication::{link, Peers, ReplicatedPartition, Replicator};
use strand_wire::batch::{BatchBuilder, BatchIter};

const TOPIC: &str = "events";
const DEADLINE: Duration = Duration::from_secs(20);

fn log_config() -> LogConfig {
    LogConfig { io_mode: IoMode::Buffered, fsync: FsyncPolicy::Always, min_free_bytes: 0, ..LogConfig::default() }
}

fn batch(producer: u32, seq: u32, records: u32) -> Bytes {
    let mut b = BatchBuilder::new();
    for r in 0..records {
        b.push(1_000, None, format!("p{producer}-s{seq}-r{r}").as_bytes(), &[]);
    }
    b.finish()
}

/// Reads a replica's whole log back through the log API.
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

struct NodeResult {
    log_bytes: Vec<u8>,
    committed: u64,
    acked: Vec<u64>,
}

/// Runs one replica node; the head (node 1) also produces `producers` × `batches`.
fn run_node(
    me: u32,
    dir: std::path::PathBuf,
    config: ChainConfig,
    addr_tx: mpsc::Sender<(u32, SocketAddr)>,
    peers_rx: mpsc::Receiver<HashMap<NodeId, SocketAddr>>,
    finished: Arc<AtomicUsize>,
    (producers, batches, records): (u32, u32, u32),
) -> NodeResult {
    let ex = LocalExecutorBuilder::default().name(&format!("node{me}")).make().expect("executor");
    ex.run(async move {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        addr_tx.send((me, listener.local_addr().expect("addr"))).expect("send addr");
        let peers = Peers::new(peers_rx.recv().expect("peer map"));
        let log = Rc::new(PartitionLog::open(&dir, log_config()).await.expect("open log"));
        let replicator = Replicator::new();
        let replica =
            ReplicatedPartition::start(TOPIC, 0, NodeId(me), log.clone(), dir.clone(), peers, Epoch(0), config)
                .await
                .expect("start");
        replicator.add(replica.clone());
        glommio::spawn_local(link::serve(listener, replicator.frame_handler())).detach();
        let mut acked = Vec::new();
        if me == 1 {
            let mut tasks = Vec::new();
            for p in 0..producers {
                let replica = replica.clone();
                tasks.push(glommio::spawn_local(async move {
                    let mut offsets = Vec::new();
                    for s in 0..batches {
                        let produce = async { Some(replica.produce(batch(p, s, records), Acks::All).await) };
                        let offset = futures_lite::future::or(produce, async {
                            glommio::timer::sleep(DEADLINE).await;
                            None
                        })
                        .await;
                        offsets.push(offset.expect("produce timed out").expect("produce"));
                    }
                    offsets
                }));
            }
            for t in tasks {
                acked.extend(t.await);
            }
        }
        let total = u64::from(producers * batches * records);
        let start = Instant::now();
        while replica.committed() < total && start.elapsed() < DEADLINE {
            glommio::timer::sleep(Duration::from_millis(5)).await;
        }
        finished.fetch_add(1, Ordering::SeqCst);
        // Keep serving until every node is done, so nobody loses a neighbour early.
        while finished.load(Ordering::SeqCst) < 3 && start.elapsed() < DEADLINE {
            glommio::timer::sleep(Duration::from_millis(5)).await;
        }
        NodeResult { log_bytes: read_all(&log).await, committed: replica.committed(), acked }
    })
}

#[test]
fn three_replicas_commit_and_hold_byte_identical_logs() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let config = ChainConfig { epoch: Epoch(1), members: vec![NodeId(1), NodeId(2), NodeId(3)], learner: None };
    let (producers, batches, records) = (4u32, 50u32, 3u32);
    let (addr_tx, addr_rx) = mpsc::channel();
    let finished = Arc::new(AtomicUsize::new(0));
    let mut map_txs = Vec::new();
    let mut threads = Vec::new();
    for me in 1..=3u32 {
        let (map_tx, map_rx) = mpsc::channel();
        map_txs.push(map_tx);
        let (dir, config, addr_tx, finished) =
            (tmp.path().join(format!("n{me}")), config.clone(), addr_tx.clone(), finished.clone());
        threads.push(std::thread::spawn(move || {
            run_node(me, dir, config, addr_tx, map_rx, finished, (producers, batches, records))
        }));
    }
    let mut addrs = HashMap::new();
    for _ in 0..3 {
        let (id, addr) = addr_rx.recv_timeout(DEADLINE).expect("node address");
        addrs.insert(NodeId(id), addr);
    }
    for tx in &map_txs {
        tx.send(addrs.clone()).expect("send map");
    }
    let results: Vec<NodeResult> = threads.into_iter().map(|t| t.join().expect("node thread")).collect();
    let total = u64::from(producers * batches * records);

    let mut acked = results[0].acked.clone();
    acked.sort_unstable();
    let expected: Vec<u64> = (0..u64::from(producers * batches)).map(|i| i * u64::from(records)).collect();
    assert_eq!(acked, expected, "every produce acked once, at distinct batch offsets");
    for (i, r) in results.iter().enumerate() {
        assert_eq!(r.committed, total, "node {} serves reads up to the commit", i + 1);
        assert_eq!(r.log_bytes, results[0].log_bytes, "node {} log differs from the head's", i + 1);
    }
    // The head's log holds every record exactly once, each producer's in its order.
    let mut seen: HashMap<String, u32> = HashMap::new();
    let mut next_offset = 0;
    for b in BatchIter::new(&results[0].log_bytes) {
        let b = b.expect("valid batch");
        assert_eq!(b.header().base_offset, next_offset);
        next_offset = b.header().next_offset();
        let value = b.records().next().expect("record").expect("valid record").value.to_vec();
        let text = String::from_utf8(value).expect("utf8");
        let (p, s) = text.split_once("-s").expect("shape");
        let s: u32 = s.split_once("-r").expect("shape").0.parse().expect("seq");
        let last = seen.insert(p.to_string(), s);
        assert_eq!(last.map_or(0, |l| l + 1), s, "producer {p} batches in order");
    }
    assert_eq!(next_offset, total);
}

#[test]
fn acks_all_waits_for_an_unreachable_tail_while_acks_leader_completes() {
    let tmp = tempfile::tempdir().expect("tempdir");
    // Node 2's port had a listener once and has none now: connects are refused.
    let dead = std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr");
    let config = ChainConfig { epoch: Epoch(1), members: vec![NodeId(1), NodeId(2)], learner: None };
    let dir = tmp.path().join("n1");
    let ex = LocalExecutorBuilder::default().name("head").make().expect("executor");
    ex.run(async move {
        let peers = Peers::new(HashMap::from([(NodeId(2), dead)]));
        let log = Rc::new(PartitionLog::open(&dir, log_config()).await.expect("open log"));
        let replica =
            ReplicatedPartition::start(TOPIC, 0, NodeId(1), log.clone(), dir.clone(), peers, Epoch(0), config)
                .await
                .expect("start");
        let leader = replica.produce(batch(0, 0, 2), Acks::Leader).await.expect("acks=leader");
        assert_eq!(leader, 0);
        let all = futures_lite::future::or(async { Some(replica.produce(batch(0, 1, 2), Acks::All).await) }, async {
            glommio::timer::sleep(Duration::from_millis(800)).await;
            None
        })
        .await;
        assert!(all.is_none(), "acks=all completed without the tail: {all:?}");
        assert_eq!(log.log_end_offset(), 4, "the head appended both batches locally");
        assert_eq!(replica.committed(), 0, "nothing is committed without the tail");
    });
}
