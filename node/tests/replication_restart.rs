//! Replica restart over the real transport (glommio threads, 127.0.0.1 sockets, real
//! logs in temp dirs; the test plays the control plane). A 3-replica chain takes acks=all
//! produces; the head crashes (its replica and log are dropped) holding a suffix it
//! appended but never forwarded (three batches of its epoch, written into its log while
//! it is down); the chain reconfigures without it and takes more produces; the node
//! restarts from its files (`epoch_min` = the epoch at restart), rejoins as learner
//! (epoch bump), must cut exactly its stale suffix, catches up while produces continue,
//! is promoted once the tail reports `learner_in_sync`, and serves as tail. End state:
//! every log byte-identical, every acknowledged record present exactly once, in order.

#[path = "common/replication.rs"]
mod replication;

use glommio::LocalExecutorBuilder;
use replication::{batch, chain_with as chain, log_config, produce_n, read_all, start_node, start_nodes, values};
use replication::{wait_for, Cmd, Extra, Node, Replica, Spec};
use std::cell::Cell;
use std::collections::HashMap;
use std::path::Path;
use std::rc::Rc;
use std::time::{Duration, Instant};
use strand_core::chain::{Acks, ChainConfig, Epoch, NodeId};
use strand_node::log::{IoMode, LogConfig, PartitionLog};
use strand_node::replication::{Peers, ReplicatedPartition};

const TOPIC: &str = "restart";

/// Asks for the lowest log end the node's log showed since it opened (sampled every
/// millisecond).
struct LowestEnd(flume::Sender<u64>);

impl Extra for LowestEnd {
    type Ctx = Rc<Cell<u64>>;
    fn open(log: &Rc<PartitionLog>) -> Rc<Cell<u64>> {
        let lowest = Rc::new(Cell::new(log.log_end_offset()));
        let (weak_log, low) = (Rc::downgrade(log), lowest.clone());
        glommio::spawn_local(async move {
            while let Some(log) = weak_log.upgrade() {
                low.set(low.get().min(log.log_end_offset()));
                drop(log);
                glommio::timer::sleep(Duration::from_millis(1)).await;
            }
        })
        .detach();
        lowest
    }
    async fn serve(self, _: &Replica, lowest: &Rc<Cell<u64>>) {
        let _ = self.0.send(lowest.get());
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
    let epoch1 = chain(1, &[1, 2, 3], None);
    let mut nodes: HashMap<u32, Node<LowestEnd>> = start_nodes(TOPIC, tmp.path(), &[1, 2, 3], &epoch1);
    let mut acked: Vec<String> = Vec::new();
    let mut produce = |nodes: &HashMap<u32, Node<LowestEnd>>, head: u32, tag: &str, n: u32| {
        let offsets =
            nodes[&head].produce(tag, n, Acks::All).unwrap_or_else(|e| panic!("{tag}: acks=all produce failed: {e}"));
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
    let spec = Spec { topic: TOPIC, me: 1, dir: dir(1), epoch_min: 3, config: chain(3, &[2, 3], None) };
    let node1 = start_node(spec, others);
    for n in [2, 3] {
        nodes[&n].peer(NodeId(1), node1.addr);
    }
    nodes.insert(1, node1);
    let epoch4 = chain(4, &[2, 3], Some(1));
    for n in [1, 2, 3] {
        nodes[&n].config(&epoch4);
    }
    // Produces continue while the learner catches up.
    produce(&nodes, 2, "e4", 30);
    let in_sync = wait_for(&nodes[&3], |s| s.learner_in_sync).learner_in_sync;
    assert!(in_sync, "the tail never reported its learner in sync");
    let epoch5 = chain(5, &[2, 3, 1], None);
    for n in [1, 2, 3] {
        nodes[&n].config(&epoch5);
    }
    produce(&nodes, 2, "e5", 20);

    let total = acked.len() as u64;
    let states: Vec<_> = [2, 3, 1].iter().map(|n| wait_for(&nodes[n], |s| s.committed >= total)).collect();
    for (state, n) in states.iter().zip([2, 3, 1]) {
        assert_eq!(state.committed, total, "node {n} serves reads up to the commit");
        assert_eq!(state.log, states[0].log, "node {n}'s log differs from the head's");
    }
    assert_eq!(values(&states[0].log), acked, "every acknowledged record exactly once, in order");
    // The restarted node cut exactly its stale suffix: not less (it would hold foreign
    // data), not more (its prefix was recovered with the right epochs: a batch of epoch 1
    // mislabelled would not match the tail's position (40, epoch 2)).
    let lowest = nodes[&1].ask(|reply| Cmd::Extra(LowestEnd(reply)));
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
            let peers = Peers::new(replication::auth(1), HashMap::new());
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
            assert_eq!(
                produce_n(&replica, "first", 10, Acks::All).await.expect("produce"),
                (0..10).collect::<Vec<u64>>()
            );
            assert!(wakes.get() > 0, "{io_mode}: the progress hook never fired");
            assert_eq!((replica.committed().0, replica.log_end().0), (10, 10));
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
            assert_eq!(replica.log_end().0, 10, "{io_mode}: recovered log end");
            let refused = produce_n(&replica, "too-early", 1, Acks::All).await;
            assert!(refused.is_err(), "{io_mode}: a restarted replica acted in an epoch it lived through");
            replica.handle_config(single(2)).expect("config");
            assert_eq!(
                produce_n(&replica, "second", 5, Acks::All).await.expect("produce"),
                (10..15).collect::<Vec<u64>>()
            );
            let expected: Vec<String> =
                (0..10).map(|s| format!("first-{s}")).chain((0..5).map(|s| format!("second-{s}"))).collect();
            assert_eq!(values(&read_all(&log).await), expected);
            let epochs = std::fs::read_to_string(dir.join("replication-epochs")).expect("epoch checkpoint");
            assert_eq!(epochs, "strand-replication-epochs 1\n2\n1 0\n2 10\n");
        });
    }
}
