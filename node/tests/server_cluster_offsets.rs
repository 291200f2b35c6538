//! Compaction of the cluster-wide `__consumer_offsets` (a real etcd and three real
//! `strand-node` processes): a group's coordinator (the head of its offsets partition)
//! writes snapshots through the chain, every replica deletes the segments below a
//! committed snapshot on its own, and after the head is SIGKILLed the new head rebuilds
//! the group from its compacted replica: every committed offset as before, replaying a
//! bounded number of records.

mod common;
#[path = "common/groups.rs"]
mod groups;

use std::path::Path;
use std::time::{Duration, Instant};

use common::etcd::Etcd;
use common::{Client, Node};
use groups::{commit, metric, settled_offsets_log, wait_for};
use strand_wire::msg::*;
use strand_wire::ErrorCode;

const PARTITIONS: u32 = 20;
const ROUNDS: u64 = 400;
const RECORDS_MIN: u64 = 200;

fn start_node(dir: &Path, id: u32, etcd: &Etcd) -> Node {
    std::fs::create_dir_all(dir).unwrap();
    let config = dir.join("node.toml");
    std::fs::write(&config, format!("segment_bytes = 65536\noffsets_compact_records_min = {RECORDS_MIN}\n")).unwrap();
    let (id, url) = (id.to_string(), etcd.endpoint());
    let flags = [
        "--node-id",
        &id,
        "--etcd",
        &url,
        "--lease-ttl-s",
        "2",
        "--replication-port-base",
        "0",
        "--config",
        config.to_str().unwrap(),
    ];
    Node::start(&dir.join("data"), 1, &flags)
}

/// The group's committed offsets from `c`, or the error code (NOT_COORDINATOR, loading…).
fn try_fetch(c: &mut Client, group: &str) -> Result<Vec<(String, u32, u64)>, ErrorCode> {
    let request = OffsetFetchRequest { group_id: group.into(), partitions: Vec::new() };
    let (h, _) = c.call(Request::OffsetFetch(request), &[]);
    if h.error != ErrorCode::None {
        return Err(h.error);
    }
    let Response::OffsetFetch(r) = h.response else { panic!("not an offset fetch response") };
    let mut out: Vec<_> = r.offsets.into_iter().map(|o| (o.topic, o.partition, o.offset)).collect();
    out.sort();
    Ok(out)
}

#[test]
fn snapshots_compact_every_replica_and_a_new_head_serves_the_same_offsets() {
    let tmp = tempfile::tempdir().unwrap();
    let etcd = Etcd::start();
    let mut nodes: Vec<Option<Node>> =
        (1..=3u32).map(|id| Some(start_node(&tmp.path().join(format!("n{id}")), id, &etcd))).collect();
    let create = Request::CreateTopic(CreateTopicRequest {
        name: "src".into(),
        partitions: PARTITIONS,
        replication_factor: 1,
        configs: Vec::new(),
    });
    let (header, _) = nodes[0].as_ref().unwrap().client().call(create, &[]);
    assert_eq!(header.error, ErrorCode::None, "create: {:?}", header.message);

    // The coordinator of "held" is whichever node accepts its commits (the head of its
    // offsets partition; the offsets topic is created on first use).
    let early = [("src", 3u32, 33u64), ("src", 7, 77)];
    let coordinator = wait_for(Duration::from_secs(30), "a node coordinating the group", || {
        nodes.iter().position(|n| commit(&mut n.as_ref().unwrap().client(), "held", 0, "", &early) == ErrorCode::None)
    });
    let mut c = nodes[coordinator].as_ref().unwrap().client();
    let (mut expect, mut last) = (Vec::new(), "");
    for round in 0..ROUNDS {
        let offsets: Vec<(&str, u32, u64)> = (0..PARTITIONS).map(|p| ("src", p, round * 1000 + u64::from(p))).collect();
        let group = if round.is_multiple_of(2) { "busy" } else { "busier" };
        last = group;
        assert_eq!(commit(&mut c, group, 0, "", &offsets), ErrorCode::None, "round {round}");
        expect = offsets.iter().map(|(t, p, o)| (t.to_string(), *p, *o)).collect::<Vec<_>>();
    }
    let expect_held: Vec<(String, u32, u64)> = early.iter().map(|(t, p, o)| (t.to_string(), *p, *o)).collect();
    assert_eq!(try_fetch(&mut c, "held"), Ok(expect_held.clone()));
    assert!(metric(nodes[coordinator].as_ref().unwrap(), "strand_group_offsets_snapshots_total") > 0);
    // Every replica of the group's offsets partition compacts on its own (the cleaner
    // runs every second: wait until it caught up with the last snapshot).
    let bound = 2000 + 42 + 2 * RECORDS_MIN + u64::from(PARTITIONS);
    for (i, node) in nodes.iter().enumerate() {
        let node = node.as_ref().unwrap();
        wait_for(Duration::from_secs(20), &format!("node {} compacts its offsets replica", i + 1), || {
            (settled_offsets_log(node) <= bound).then_some(())
        });
    }

    // SIGKILL the coordinator: the new head rebuilds the groups from its own replica.
    nodes[coordinator].as_mut().unwrap().signal_and_wait(libc::SIGKILL, Duration::from_secs(10));
    nodes[coordinator] = None;
    let started = Instant::now();
    let (survivor, held) = wait_for(Duration::from_secs(30), "a new coordinator of the group", || {
        nodes.iter().enumerate().filter_map(|(i, n)| Some((i, n.as_ref()?))).find_map(|(i, n)| {
            let mut c = Client::try_connect(n.public).ok()?;
            try_fetch(&mut c, "held").ok().filter(|o| !o.is_empty()).map(|o| (i, o))
        })
    });
    eprintln!("new coordinator: node {} after {:?}", survivor + 1, started.elapsed());
    assert_eq!(held, expect_held, "the group committed once, before every snapshot");
    let mut c = nodes[survivor].as_ref().unwrap().client();
    assert_eq!(try_fetch(&mut c, last), Ok(expect));
    let written = ROUNDS * u64::from(PARTITIONS) + 2;
    let log = nodes[survivor].as_ref().unwrap().log.lock().unwrap().clone();
    let rebuilt = log.iter().rev().find(|l| l.contains("group coordinator (re)built")).expect("a rebuild line");
    let records: u64 = rebuilt
        .split_whitespace()
        .find_map(|f| f.strip_prefix("records="))
        .and_then(|v| v.parse().ok())
        .expect("records= in the rebuild line");
    // One partly stale 64 KiB segment, a snapshot of 42 offsets and what followed it.
    eprintln!("{written} records committed, {records} replayed by the new head (bound {bound})");
    assert!(records <= bound, "the new head replayed {records} of {written} records");
}
