//! Replication cost and failover time, in process over real 127.0.0.1 TCP (run by
//! hand: `cargo test --release -p strand-node --test replication_bench -- --ignored
//! --nocapture`). Each replica runs on its own glommio thread with its own log
//! (buffered, fsync=always), as separate nodes on this 2-core machine would.
//! Prints RF=1 vs RF=3 acks=all throughput and produce latency, and the time from
//! stopping a head to the first acks=all produce acknowledged by its successor once
//! the survivors have the new epoch (control-plane detection time not included).

use bytes::Bytes;
use glommio::net::TcpListener;
use glommio::LocalExecutorBuilder;
use hdrhistogram::Histogram;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::rc::Rc;
use std::thread::JoinHandle;
use std::time::Duration;
use std::time::Instant;
use strand_core::chain::{Acks, ChainConfig, Epoch, NodeId};
use strand_node::log::{FsyncPolicy, IoMode, LogConfig, PartitionLog};
use strand_node::replication::{link, Peers, ReplicatedPartition, Replicator};
use strand_wire::batch::BatchBuilder;

const TOPIC: &str = "bench";
const PRODUCE_DEADLINE: Duration = Duration::from_secs(10);

enum Cmd {
    Load { producers: u32, duration: Duration, reply: flume::Sender<(u64, Histogram<u64>)> },
    Produce { tag: String, batches: u32, acks: Acks, reply: flume::Sender<Result<Vec<u64>, String>> },
    Config(ChainConfig),
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
                    ReplicatedPartition::start(TOPIC, 0, NodeId(me), log, dir.clone(), peers, Epoch(0), config)
                        .await
                        .expect("start");
                replicator.add(replica.clone());
                glommio::spawn_local(link::serve(listener, replicator.frame_handler())).detach();
                serve_commands(&replica, cmd_rx).await;
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

async fn serve_commands(replica: &Rc<ReplicatedPartition>, cmds: flume::Receiver<Cmd>) {
    while let Ok(cmd) = cmds.recv_async().await {
        match cmd {
            Cmd::Produce { tag, batches, acks, reply } => {
                let replica = replica.clone();
                glommio::spawn_local(async move {
                    let _ = reply.send(produce_n(&replica, &tag, batches, acks).await);
                })
                .detach();
            }
            Cmd::Load { producers, duration, reply } => {
                let _ = reply.send(load(replica, producers, duration).await);
            }
            Cmd::Config(c) => replica.handle_config(c).expect("valid config"),
            Cmd::Stop => return,
        }
    }
}

fn chain(epoch: u64, members: &[u32]) -> ChainConfig {
    ChainConfig { epoch: Epoch(epoch), members: members.iter().map(|m| NodeId(*m)).collect(), learner: None }
}

/// Record count and value size of one benchmark batch (100 × 100 B ≈ 10 KiB).
const LOAD_RECORDS: u32 = 100;
const LOAD_VALUE_LEN: usize = 100;

fn load_batch() -> Bytes {
    let mut b = BatchBuilder::new();
    let value = vec![b'x'; LOAD_VALUE_LEN];
    for _ in 0..LOAD_RECORDS {
        b.push(1_000, None, &value, &[]);
    }
    b.finish()
}

/// `producers` closed-loop acks=all producers for `duration`: batches done, latency (us).
async fn load(replica: &Rc<ReplicatedPartition>, producers: u32, duration: Duration) -> (u64, Histogram<u64>) {
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..producers {
        let replica = replica.clone();
        tasks.push(glommio::spawn_local(async move {
            let mut hist = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).expect("histogram");
            let mut done = 0u64;
            while start.elapsed() < duration {
                let sent = Instant::now();
                replica.produce(load_batch(), Acks::All).await.expect("produce");
                hist.record(sent.elapsed().as_micros() as u64).expect("record");
                done += 1;
            }
            (done, hist)
        }));
    }
    let mut total = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).expect("histogram");
    let mut done = 0;
    for t in tasks {
        let (d, h) = t.await;
        done += d;
        total.add(h).expect("merge");
    }
    (done, total)
}

fn run_load(rf: u32, producers: u32, secs: u64) {
    let tmp = tempfile::tempdir().expect("tempdir");
    let ids: Vec<u32> = (1..=rf).collect();
    let mut nodes = start_nodes(tmp.path(), &ids, &chain(1, &ids));
    let (reply, rx) = flume::bounded(1);
    let duration = Duration::from_secs(secs);
    nodes[&1].cmds.send(Cmd::Load { producers, duration, reply }).expect("alive");
    let (batches, hist) = rx.recv_timeout(duration + Duration::from_secs(30)).expect("load result");
    let msgs = batches * u64::from(LOAD_RECORDS);
    let mb = (batches as f64) * load_batch().len() as f64 / 1e6;
    println!(
        "RF={rf} acks=all producers={producers}: {:.0} msgs/s, {:.1} MB/s, produce latency p50 {} us, p99 {} us, max {} us",
        msgs as f64 / secs as f64,
        mb / secs as f64,
        hist.value_at_quantile(0.5),
        hist.value_at_quantile(0.99),
        hist.max()
    );
    for id in ids {
        nodes.get_mut(&id).expect("node").stop();
    }
}

#[test]
#[ignore = "benchmark: run by hand with --release --ignored --nocapture"]
fn rf1_vs_rf3_acks_all() {
    for producers in [1, 16] {
        run_load(1, producers, 5);
        run_load(3, producers, 5);
    }
}

#[test]
#[ignore = "benchmark: run by hand with --release --ignored --nocapture"]
fn failover_time_over_ten_trials() {
    let mut times_ms = Vec::new();
    for trial in 0..10 {
        let tmp = tempfile::tempdir().expect("tempdir");
        let mut nodes = start_nodes(tmp.path(), &[1, 2, 3], &chain(1, &[1, 2, 3]));
        nodes[&1].produce(&format!("warm{trial}"), 20, Acks::All).expect("warm-up");
        let killed = Instant::now();
        nodes.get_mut(&1).expect("node 1").stop();
        for n in [2, 3] {
            nodes[&n].config(&chain(2, &[2, 3]));
        }
        nodes[&2].produce("after", 1, Acks::All).expect("produce on the new head");
        times_ms.push(killed.elapsed().as_secs_f64() * 1e3);
        for n in [2, 3] {
            nodes.get_mut(&n).expect("node").stop();
        }
    }
    times_ms.sort_by(f64::total_cmp);
    println!(
        "failover (head stopped -> first acks=all ack on the new head, new epoch delivered at once), 10 trials: min {:.2} ms, median {:.2} ms, max {:.2} ms",
        times_ms[0], times_ms[5], times_ms[9]
    );
}
