//! Chain reconfiguration over the real transport: replicas on their own glommio
//! threads and 127.0.0.1 sockets, stopped one at a time (middle, tail, head) while the
//! test plays the control plane (new epoch to the survivors). Every acks=all produce
//! acknowledged before or after a failure must be in the survivor's log exactly once,
//! in order. A removed head that keeps running (a paused process coming back) is
//! fenced by the epoch: its acks=all produces never complete and the chain's logs
//! stay intact.

#[path = "common/replication.rs"]
mod replication;

use replication::{chain, start_nodes, values, wait_for, Node};
use std::collections::HashMap;
use strand_core::chain::Acks;

const TOPIC: &str = "failover";

#[test]
fn middle_tail_and_head_failures_lose_no_acknowledged_record() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let mut nodes: HashMap<u32, Node> = start_nodes(TOPIC, tmp.path(), &[1, 2, 3, 4], &chain(1, &[1, 2, 3, 4]));
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

    let state = wait_for(&nodes[&3], |s| s.committed >= acked.len() as u64);
    let held = values(&state.log);
    assert_eq!(state.committed, held.len() as u64);
    assert_eq!(held, acked, "the survivor holds every acknowledged record once, in order");
    nodes.get_mut(&3).expect("node 3").stop();
}

#[test]
fn a_removed_head_that_comes_back_is_fenced_by_the_epoch() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let mut nodes: HashMap<u32, Node> = start_nodes(TOPIC, tmp.path(), &[1, 2, 3], &chain(1, &[1, 2, 3]));
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
    let log2 = wait_for(&nodes[&2], |s| s.committed >= 20).log;
    let log3 = wait_for(&nodes[&3], |s| s.committed >= 20).log;
    let expected: Vec<String> =
        (0..10).map(|s| format!("before-{s}")).chain((0..10).map(|s| format!("after-{s}"))).collect();
    assert_eq!(values(&log2), expected);
    assert_eq!(log3, log2, "tail byte-identical to the new head");
    for n in [1, 2, 3] {
        nodes.get_mut(&n).expect("node").stop();
    }
}
