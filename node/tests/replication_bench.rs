//! Replication cost and failover time, in process over real 127.0.0.1 TCP (run by
//! hand: `cargo test --release -p strand-node --test replication_bench -- --ignored
//! --nocapture`). Each replica runs on its own glommio thread with its own log
//! (buffered, fsync=always), as separate nodes on this 2-core machine would.
//! Prints RF=1 vs RF=3 acks=all throughput and produce latency, and the time from
//! stopping a head to the first acks=all produce acknowledged by its successor once
//! the survivors have the new epoch (control-plane detection time not included).

#[path = "common/replication.rs"]
mod replication;

use bytes::Bytes;
use hdrhistogram::Histogram;
use replication::{chain, start_nodes, Extra, Node, Replica};
use std::collections::HashMap;
use std::rc::Rc;
use std::time::{Duration, Instant};
use strand_core::chain::Acks;
use strand_node::log::PartitionLog;
use strand_node::replication::ReplicatedPartition;
use strand_wire::batch::BatchBuilder;

const TOPIC: &str = "bench";

/// `producers` closed-loop acks=all producers for `duration` (see [`load`]).
struct Load {
    producers: u32,
    duration: Duration,
    reply: flume::Sender<(u64, Histogram<u64>)>,
}

impl Extra for Load {
    type Ctx = ();
    fn open(_: &Rc<PartitionLog>) {}
    async fn serve(self, node: &Replica, _: &()) {
        let _ = self.reply.send(load(&node.replica, self.producers, self.duration).await);
    }
}

/// Record count and value size of one benchmark batch (100 × 100 B ≈ 10 KiB).
const LOAD_RECORDS: u32 = 100;
const LOAD_VALUE_LEN: usize = 100;

fn load_batch() -> Bytes {
    let mut b = BatchBuilder::new();
    let value = vec![b'x'; LOAD_VALUE_LEN];
    for _ in 0..LOAD_RECORDS {
        b.push(1_000, None, Some(&value), &[]);
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
    let mut nodes: HashMap<u32, Node<Load>> = start_nodes(TOPIC, tmp.path(), &ids, &chain(1, &ids));
    let (reply, rx) = flume::bounded(1);
    let duration = Duration::from_secs(secs);
    nodes[&1].extra(Load { producers, duration, reply });
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
        let mut nodes: HashMap<u32, Node> = start_nodes(TOPIC, tmp.path(), &[1, 2, 3], &chain(1, &[1, 2, 3]));
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
