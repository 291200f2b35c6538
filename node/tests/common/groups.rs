//! Consumer-group helpers for the node's integration tests: a group member that runs
//! the real protocol loop on its own thread and connection (join → sync → heartbeat,
//! rejoin on REBALANCE_IN_PROGRESS / ILLEGAL_GENERATION, re-create on UNKNOWN_MEMBER),
//! publishing what it owns, plus blocking one-shot group calls.
#![allow(dead_code, reason = "each test binary uses a different part of the harness")]

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use strand_wire::msg::*;
use strand_wire::ErrorCode;

use crate::common::{Client, Node};

/// What a member last learned from the coordinator.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MemberState {
    pub member_id: String,
    pub generation: u32,
    pub assignment: Vec<TopicPartition>,
    /// True once synced in `generation`; false from the moment it must rejoin.
    pub synced: bool,
    /// Joins sent so far.
    pub joins: u32,
}

const RUN: u8 = 0;
const LEAVE: u8 = 1;
const GO_SILENT: u8 = 2;

/// How a member joins.
#[derive(Debug, Clone)]
pub struct MemberConfig {
    pub group: String,
    pub topics: Vec<String>,
    pub session_timeout_ms: u32,
    pub rebalance_timeout_ms: u32,
    pub heartbeat_ms: u64,
    pub assignor: Assignor,
}

impl MemberConfig {
    pub fn new(group: &str, topics: &[&str]) -> Self {
        MemberConfig {
            group: group.into(),
            topics: topics.iter().map(|t| t.to_string()).collect(),
            session_timeout_ms: 3_000,
            rebalance_timeout_ms: 5_000,
            heartbeat_ms: 150,
            assignor: Assignor::Range,
        }
    }
}

/// A member running on its own thread.
pub struct Member {
    pub state: Arc<Mutex<MemberState>>,
    mode: Arc<AtomicU8>,
    thread: Option<JoinHandle<()>>,
}

impl Member {
    /// Starts a member connected to `addr`.
    pub fn start(addr: SocketAddr, config: MemberConfig) -> Member {
        let state = Arc::new(Mutex::new(MemberState::default()));
        let mode = Arc::new(AtomicU8::new(RUN));
        let (s, m) = (state.clone(), mode.clone());
        let thread = std::thread::spawn(move || member_loop(addr, config, s, m));
        Member { state, mode, thread: Some(thread) }
    }

    pub fn snapshot(&self) -> MemberState {
        self.state.lock().unwrap().clone()
    }

    /// Leaves the group and stops.
    pub fn leave(mut self) {
        self.mode.store(LEAVE, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            t.join().expect("member thread");
        }
    }

    /// Stops sending anything (no leave): the coordinator must expire it.
    pub fn go_silent(mut self) {
        self.mode.store(GO_SILENT, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            t.join().expect("member thread");
        }
    }
}

impl Drop for Member {
    fn drop(&mut self) {
        self.mode.store(LEAVE, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn member_loop(addr: SocketAddr, config: MemberConfig, state: Arc<Mutex<MemberState>>, mode: Arc<AtomicU8>) {
    let mut c = Client::connect(addr);
    let mut member_id = String::new();
    'rejoin: while mode.load(Ordering::Relaxed) == RUN {
        state.lock().unwrap().joins += 1;
        let (h, _) = c.call(join_request(&config, &member_id), &[]);
        let joined = match (h.error, h.response) {
            (ErrorCode::None, Response::JoinGroup(j)) => j,
            (ErrorCode::UnknownMember, _) => {
                member_id.clear();
                continue;
            }
            _ => {
                std::thread::sleep(Duration::from_millis(50));
                continue;
            }
        };
        member_id = joined.member_id.clone();
        let sync = SyncGroupRequest {
            group_id: config.group.clone(),
            generation: joined.generation,
            member_id: member_id.clone(),
        };
        let (h, _) = c.call(Request::SyncGroup(sync), &[]);
        let Response::SyncGroup(synced) = h.response else { continue };
        {
            let mut s = state.lock().unwrap();
            s.member_id = member_id.clone();
            s.generation = joined.generation;
            s.assignment = synced.assignment;
            s.synced = true;
        }
        loop {
            std::thread::sleep(Duration::from_millis(config.heartbeat_ms));
            if mode.load(Ordering::Relaxed) != RUN {
                break 'rejoin;
            }
            let beat = HeartbeatRequest {
                group_id: config.group.clone(),
                generation: joined.generation,
                member_id: member_id.clone(),
            };
            let (h, _) = c.call(Request::Heartbeat(beat), &[]);
            match h.error {
                ErrorCode::None => {}
                ErrorCode::UnknownMember => {
                    member_id.clear();
                    state.lock().unwrap().synced = false;
                    continue 'rejoin;
                }
                _ => {
                    state.lock().unwrap().synced = false;
                    continue 'rejoin;
                }
            }
        }
    }
    if mode.load(Ordering::Relaxed) == LEAVE && !member_id.is_empty() {
        let leave = LeaveGroupRequest { group_id: config.group.clone(), member_id };
        let _ = c.call(Request::LeaveGroup(leave), &[]);
    }
}

fn join_request(config: &MemberConfig, member_id: &str) -> Request {
    Request::JoinGroup(JoinGroupRequest {
        group_id: config.group.clone(),
        member_id: member_id.to_string(),
        client_id: "test-member".into(),
        session_timeout_ms: config.session_timeout_ms,
        rebalance_timeout_ms: config.rebalance_timeout_ms,
        topics: config.topics.clone(),
        assignor: config.assignor,
    })
}

/// Polls `check` every 50 ms until it returns `Some`, or panics after `timeout`.
pub fn wait_for<T>(timeout: Duration, what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = check() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out after {timeout:?} waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Waits until the group is Stable and every member synced its generation; returns
/// each member's state in the order given.
pub fn wait_stable(c: &mut Client, group: &str, members: &[&Member], timeout: Duration) -> Vec<MemberState> {
    wait_for(timeout, &format!("group {group} stable with {} members", members.len()), || {
        let d = describe(c, group);
        let states: Vec<MemberState> = members.iter().map(|m| m.snapshot()).collect();
        let all_synced = states.iter().all(|s| s.synced && s.generation == d.generation);
        (d.state == "Stable" && d.members.len() == members.len() && all_synced).then_some(states)
    })
}

pub fn describe(c: &mut Client, group: &str) -> DescribeGroupResponse {
    let (h, _) = c.call(Request::DescribeGroup(DescribeGroupRequest { group_id: group.into() }), &[]);
    assert_eq!(h.error, ErrorCode::None, "{:?}", h.message);
    match h.response {
        Response::DescribeGroup(d) => d,
        other => panic!("not a describe response: {other:?}"),
    }
}

/// Commits `offsets` as `(topic, partition, offset)`; the response's top-level code.
pub fn commit(
    c: &mut Client,
    group: &str,
    generation: u32,
    member_id: &str,
    offsets: &[(&str, u32, u64)],
) -> ErrorCode {
    let offsets = offsets
        .iter()
        .map(|(t, p, o)| CommittedOffset { topic: t.to_string(), partition: *p, offset: *o, metadata: String::new() })
        .collect();
    let request = OffsetCommitRequest { group_id: group.into(), generation, member_id: member_id.into(), offsets };
    c.call(Request::OffsetCommit(request), &[]).0.error
}

/// The group's committed offsets as `(topic, partition, offset)`, sorted.
pub fn fetch_offsets(c: &mut Client, group: &str) -> Vec<(String, u32, u64)> {
    let (h, _) =
        c.call(Request::OffsetFetch(OffsetFetchRequest { group_id: group.into(), partitions: Vec::new() }), &[]);
    assert_eq!(h.error, ErrorCode::None, "{:?}", h.message);
    let Response::OffsetFetch(r) = h.response else { panic!("not an offset fetch response") };
    let mut out: Vec<_> = r.offsets.into_iter().map(|o| (o.topic, o.partition, o.offset)).collect();
    out.sort();
    out
}

/// The sum of metric `name` over its series in the node's `/metrics`.
pub fn metric(node: &Node, name: &str) -> u64 {
    let (status, body) = node.admin_get("/metrics");
    assert_eq!(status, 200);
    body.lines()
        .filter(|l| l.starts_with(name) && !l.starts_with('#'))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}

/// The node's `__consumer_offsets` partitions as `/metrics` last published them
/// (refreshed every second): log end, and records held (log end - log start).
pub fn published_offsets_log(node: &Node) -> (u64, u64) {
    let (status, body) = node.admin_get("/metrics");
    assert_eq!(status, 200);
    let sum = |name: &str| -> u64 {
        body.lines()
            .filter(|l| l.starts_with(name) && l.contains("topic=\"__consumer_offsets\""))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
            .sum()
    };
    let end = sum("strand_partition_log_end_offset{");
    (end, end - sum("strand_partition_log_start_offset{"))
}

/// Records the node's offsets partitions hold, once commits stopped: the published log
/// end must not move over 1.5 s (more than one publish), so the figures are current.
pub fn settled_offsets_log(node: &Node) -> u64 {
    let (end, _) = published_offsets_log(node);
    std::thread::sleep(Duration::from_millis(1500));
    let (now, held) = published_offsets_log(node);
    if now == end {
        held
    } else {
        u64::MAX
    }
}
