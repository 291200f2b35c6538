//! Chain replication over real TCP on 127.0.0.1: three replicas, each on its own
//! glommio executor thread with its own partition log in a temp dir, linked by the
//! replication transport. Checks that acks=all produces complete, every replica
//! serves the committed prefix, the logs are byte-identical, and that acks=all does
//! not complete while the tail is unreachable (acks=leader does).

#[path = "common/replication.rs"]
mod replication;

use bytes::Bytes;
use glommio::LocalExecutorBuilder;
use replication::{chain, log_config, start_nodes, wait_for, Extra, Node, Replica, State};
use std::collections::HashMap;
use std::rc::Rc;
use std::time::Duration;
use strand_core::chain::{Acks, Epoch, NodeId};
use strand_node::log::PartitionLog;
use strand_node::replication::{Peers, ReplicatedPartition};
use strand_wire::batch::{BatchBuilder, BatchIter};

const TOPIC: &str = "events";
const DEADLINE: Duration = Duration::from_secs(20);

fn batch(producer: u32, seq: u32, records: u32) -> Bytes {
    let mut b = BatchBuilder::new();
    for r in 0..records {
        b.push(1_000, None, Some(format!("p{producer}-s{seq}-r{r}").as_bytes()), &[]);
    }
    b.finish()
}

/// Producer `producer` sends `batches` batches of `records` records with acks=all, one
/// after another, in a task of its own; the reply is their offsets.
struct ProduceBatches {
    producer: u32,
    batches: u32,
    records: u32,
    reply: flume::Sender<Result<Vec<u64>, String>>,
}

impl Extra for ProduceBatches {
    type Ctx = ();
    fn open(_: &Rc<PartitionLog>) {}
    async fn serve(self, node: &Replica, _: &()) {
        let replica = node.replica.clone();
        glommio::spawn_local(async move {
            let mut offsets = Vec::new();
            for s in 0..self.batches {
                let produce = async { Some(replica.produce(batch(self.producer, s, self.records), Acks::All).await) };
                let offset = futures_lite::future::or(produce, async {
                    glommio::timer::sleep(DEADLINE).await;
                    None
                })
                .await;
                match offset {
                    Some(Ok(offset)) => offsets.push(offset),
                    Some(Err(e)) => return drop(self.reply.send(Err(e.to_string()))),
                    None => return drop(self.reply.send(Err("produce timed out".into()))),
                }
            }
            let _ = self.reply.send(Ok(offsets));
        })
        .detach();
    }
}

#[test]
fn three_replicas_commit_and_hold_byte_identical_logs() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (producers, batches, records) = (4u32, 50u32, 3u32);
    let mut nodes: HashMap<u32, Node<ProduceBatches>> =
        start_nodes(TOPIC, tmp.path(), &[1, 2, 3], &chain(1, &[1, 2, 3]));
    // All producers run at once on the head.
    let replies: Vec<_> = (0..producers)
        .map(|producer| {
            let (reply, rx) = flume::bounded(1);
            nodes[&1].extra(ProduceBatches { producer, batches, records, reply });
            rx
        })
        .collect();
    let mut acked = Vec::new();
    for rx in replies {
        acked.extend(rx.recv_timeout(DEADLINE * 2).expect("producer answered").expect("acks=all produce"));
    }
    let total = u64::from(producers * batches * records);
    let results: Vec<State> = [1, 2, 3].iter().map(|n| wait_for(&nodes[n], |s| s.committed >= total)).collect();
    for n in [1, 2, 3] {
        nodes.get_mut(&n).expect("node").stop();
    }

    acked.sort_unstable();
    let expected: Vec<u64> = (0..u64::from(producers * batches)).map(|i| i * u64::from(records)).collect();
    assert_eq!(acked, expected, "every produce acked once, at distinct batch offsets");
    for (i, r) in results.iter().enumerate() {
        assert_eq!(r.committed, total, "node {} serves reads up to the commit", i + 1);
        assert_eq!(r.log, results[0].log, "node {} log differs from the head's", i + 1);
    }
    // The head's log holds every record exactly once, each producer's in its order.
    let mut seen: HashMap<String, u32> = HashMap::new();
    let mut next_offset = 0;
    for b in BatchIter::new(&results[0].log) {
        let b = b.expect("valid batch");
        assert_eq!(b.header().base_offset, next_offset);
        next_offset = b.header().next_offset();
        let value = b.records().next().expect("record").expect("valid record").value.expect("not a tombstone").to_vec();
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
    let config = chain(1, &[1, 2]);
    let dir = tmp.path().join("n1");
    let ex = LocalExecutorBuilder::default().name("head").make().expect("executor");
    ex.run(async move {
        let peers = Peers::new(replication::auth(1), HashMap::from([(NodeId(2), dead)]));
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
        assert_eq!(replica.committed().0, 0, "nothing is committed without the tail");
    });
}
