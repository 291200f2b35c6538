//! Consumer groups in the node (DESIGN §7): the IO shell around
//! [`strand_core::group::GroupCoordinator`]. Every shard hosts one coordinator
//! ([`GroupHost`]) for the groups placed on it. This module holds the host (the
//! coordinator, its parked requests, its clock) and the placement rules; it does not
//! name the shard. The shard's adapters in `shard/groups/` route group requests to the
//! host, carry out its actions (answer parked requests, persist commits), drive its
//! timers, replay its offsets at start and publish its state for `/metrics` and
//! `/v1/groups`.
//!
//! # Placement and the offsets topic
//! Committed offsets live in the internal topic [`OFFSETS_TOPIC`]
//! (`__consumer_offsets`), created at first start with one partition per shard and
//! never resized. Group `g` belongs to offsets partition
//! `p = strand_core::placement::group_partition(g, P)` (FNV-1a of the id mod the
//! topic's partition count `P`), and its coordinator is the shard that owns `p`
//! (`owner_shard("__consumer_offsets", p, shards)`). So a coordinator only ever
//! appends to and replays partitions it owns, and this stays true after a restart
//! with another shard count. A request for `g` that arrives on another shard is
//! forwarded to the coordinator shard over a bounded per-shard group inbox
//! (`NodeShared::group_inboxes`), like partition requests; the client needs no
//! "find coordinator" step. Names starting with `__` are reserved: users can neither
//! create, delete nor produce to them, and topic listings leave them out.
//!
//! # Cluster mode
//! With `--etcd` the offsets topic is a replicated cluster topic instead (see
//! `shard/groups/cluster.rs`): the coordinator of `g` is the shard owning `p` on the node that heads
//! `p`'s chain, rebuilt from that replica's log whenever this node becomes head; every
//! other node answers `NOT_COORDINATOR`, and the client finds the head from the Metadata
//! of `__consumer_offsets`. Commits are appended through the chain with acks=all.
//!
//! # Protocol behaviour (what a client must do)
//! - **JoinGroup** with an empty member id creates a member; the response is *parked*
//!   until the rebalance completes (every known member rejoined, or the rebalance
//!   deadline `max(rebalance_timeout_ms)` of the members passed; members that did not
//!   rejoin are dropped). It then carries the new generation, the member's id (keep
//!   it for every later request), the leader and the member list. Requests on one
//!   connection are served concurrently, so a parked join does not block the
//!   connection's other requests.
//! - **SyncGroup** with that generation answers the member's assignment (assignment
//!   is computed server-side with the group's assignor: range or round-robin). With
//!   more members than partitions the extra members get an empty assignment.
//! - **Heartbeat** every `session_timeout / 3` or so. `REBALANCE_IN_PROGRESS` means
//!   "rejoin now" (send JoinGroup with your member id; commit first if you like:
//!   commits of the current generation are still accepted while the group prepares
//!   the rebalance). `ILLEGAL_GENERATION` means your generation is stale: rejoin.
//!   `UNKNOWN_MEMBER` means you were expired: join again with an empty member id.
//! - A member that sends nothing for `session_timeout_ms` is removed (checked by a
//!   per-shard timer) and the group rebalances; the others learn it from their next
//!   heartbeat.
//! - **OffsetCommit** with the current generation is answered once the commit record
//!   is appended to the offsets partition under the node's fsync policy (with
//!   `--fsync always` an acknowledged commit survives SIGKILL). A stale generation
//!   gets `ILLEGAL_GENERATION`; `REBALANCE_IN_PROGRESS` while the group waits for
//!   syncs. A commit with an empty member id and generation 0 is a standalone commit,
//!   accepted while the group has no members.
//! - **OffsetFetch** answers the committed offsets (including accepted commits still
//!   being persisted); partitions with nothing committed are left out.
//! - **LeaveGroup** removes the member at once and rebalances the rest.
//! - **DescribeGroup** answers state, generation, members with assignments and, per
//!   partition of the subscribed topics (plus any committed one), committed offset
//!   (`u64::MAX` if none), log end and lag. An unknown group is answered with state
//!   `Dead`. **ListGroups** gathers every shard's groups.
//! - Creating or deleting a topic a group subscribes to triggers a rebalance.
//!
//! Invariants: the coordinator is only touched on its shard (`RefCell`, no lock); it
//! is borrowed only between awaits, never across one; every parked request id has
//! exactly one waiter, removed when answered; coordinator state is served only after
//! the shard replayed every offsets partition it owns (`finish_loading` runs before
//! the shard binds its ports).

use std::cell::{Cell, RefCell};
use std::collections::{BTreeSet, HashMap};
use std::rc::Rc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use strand_core::group::{
    CoordinatorConfig, GroupCoordinator, GroupView, JoinInput, JoinResult, KafkaSyncInput, MemberView,
    Reply as CoreReply, RequestId,
};
use strand_core::placement::{group_partition, owner_shard, ShardId};
use strand_wire::msg::{Request, Response, TopicPartition};
use strand_wire::ErrorCode;

use crate::notify::LocalNotify;

/// The internal topic holding committed offsets.
pub const OFFSETS_TOPIC: &str = "__consumer_offsets";
/// Group calls a shard's group inbox holds before senders wait.
pub const GROUP_INBOX_LEN: usize = 1024;
/// Longest the timer task sleeps without looking at the coordinator (also how often
/// the group snapshot for `/metrics` and `/v1/groups` is refreshed).
pub(crate) const TIMER_IDLE: Duration = Duration::from_secs(1);

/// The offsets partition and coordinator shard of `group_id`.
pub fn coordinator_of(group_id: &str, offsets_partitions: u32, shard_count: u16) -> (u32, ShardId) {
    let partition = group_partition(group_id, offsets_partitions);
    (partition, owner_shard(OFFSETS_TOPIC, partition, shard_count))
}

/// The group id a request is about (`None` for ListGroups or a non-group request).
pub fn group_id(request: &Request) -> Option<&str> {
    match request {
        Request::JoinGroup(r) => Some(&r.group_id),
        Request::SyncGroup(r) => Some(&r.group_id),
        Request::Heartbeat(r) => Some(&r.group_id),
        Request::LeaveGroup(r) => Some(&r.group_id),
        Request::OffsetCommit(r) => Some(&r.group_id),
        Request::OffsetFetch(r) => Some(&r.group_id),
        Request::DescribeGroup(r) => Some(&r.group_id),
        Request::DeleteGroup(r) => Some(&r.group_id),
        _ => None,
    }
}

/// How `/v1/groups`, `/metrics` and `strand group` name a group's assignment: `range` or
/// `round_robin` for a native group (the server-side assignor), `<protocol type>/<protocol>`
/// for a Kafka group (e.g. `consumer/range`, the client-side protocol chosen).
pub fn assignment_name(view: &GroupView) -> String {
    match &view.protocol_type {
        Some(protocol_type) => format!("{protocol_type}/{}", view.protocol.as_deref().unwrap_or("")),
        None => match view.assignor {
            strand_wire::msg::Assignor::Range => "range".into(),
            strand_wire::msg::Assignor::RoundRobin => "round_robin".into(),
        },
    }
}

/// A member's partitions for display: the server-side assignment of a native group, or
/// for a Kafka "consumer" group the partitions in the leader's `ConsumerProtocolAssignment`
/// (opaque bytes of any other protocol type show as none).
pub fn member_partitions(view: &GroupView, member: &MemberView) -> Vec<TopicPartition> {
    if view.protocol_type.as_deref() != Some("consumer") {
        return member.assignment.clone();
    }
    let mut buf = bytes::Bytes::copy_from_slice(&member.kafka_assignment);
    if buf.len() < 2 {
        return Vec::new();
    }
    // Newer versions only add fields at the end: read them as the newest one known.
    let version = bytes::Buf::get_i16(&mut buf).clamp(0, 3);
    use kafka_protocol::protocol::Decodable;
    match kafka_protocol::messages::ConsumerProtocolAssignment::decode(&mut buf, version) {
        Ok(a) => a
            .assigned_partitions
            .iter()
            .flat_map(|t| {
                let topic = t.topic.0.as_str().to_string();
                t.partitions.iter().filter_map(move |p| {
                    u32::try_from(*p).ok().map(|partition| TopicPartition { topic: topic.clone(), partition })
                })
            })
            .take(strand_core::group::OFFSETS_PER_COMMIT_MAX)
            .collect(),
        Err(_) => Vec::new(),
    }
}

/// A group request as the coordinator takes it: a native request, or one of the Kafka
/// listener's that the native protocol has no message for (client-side assignment).
/// Internal to the node; never on any wire.
#[derive(Debug)]
pub enum GroupCall {
    Native(Request),
    /// Kafka JoinGroup (`input.kafka` is `Some`).
    KafkaJoin(JoinInput),
    /// Kafka SyncGroup: the leader's assignments, relayed.
    KafkaSync(KafkaSyncInput),
    /// Kafka DescribeGroups: the coordinator's view with protocol, metadata and assignments.
    KafkaDescribe(String),
}

impl GroupCall {
    /// The group the call is about (`None` for ListGroups or a non-group request).
    pub fn group_id(&self) -> Option<&str> {
        match self {
            GroupCall::Native(request) => group_id(request),
            GroupCall::KafkaJoin(input) => Some(&input.group_id),
            GroupCall::KafkaSync(input) => Some(&input.group_id),
            GroupCall::KafkaDescribe(group_id) => Some(group_id),
        }
    }
}

/// A group call forwarded to its coordinator shard.
#[derive(Debug)]
pub struct GroupMsg {
    pub request: GroupCall,
    pub reply: flume::Sender<GroupReply>,
}

/// What a Kafka-only call answers beside the native body.
#[derive(Debug, Clone, PartialEq)]
pub enum KafkaAnswer {
    Join(JoinResult),
    /// The member id a first join must rejoin with (code `MemberIdRequired`).
    MemberId(String),
    Sync(Vec<u8>),
    /// `None`: the group does not exist (Dead).
    Describe(Option<GroupView>),
}

/// A coordinator's answer: top-level code, message and body (never a payload).
#[derive(Debug, Clone, PartialEq)]
pub struct GroupReply {
    pub error: ErrorCode,
    pub message: Option<String>,
    pub response: Response,
    /// The answer to a Kafka-only call (`None` for native ones and errors).
    pub kafka: Option<KafkaAnswer>,
}

impl GroupReply {
    pub(crate) fn ok(response: Response) -> Self {
        GroupReply { error: ErrorCode::None, message: None, response, kafka: None }
    }

    pub(crate) fn kafka(answer: KafkaAnswer) -> Self {
        GroupReply { error: ErrorCode::None, message: None, response: Response::Empty, kafka: Some(answer) }
    }

    pub(crate) fn error(code: ErrorCode, message: impl Into<String>) -> Self {
        GroupReply { error: code, message: Some(message.into()), response: Response::Empty, kafka: None }
    }
}

/// Where the cleaner stands in one offsets partition (`shard/groups/compact.rs`).
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct OffsetsScan {
    /// Every batch below this offset was scanned.
    pub(crate) cursor: u64,
    /// The latest snapshot marker seen: its offset and the end of its records.
    pub(crate) marker: Option<(u64, u64)>,
    /// The log was last cleaned below this marker offset.
    pub(crate) cleaned: u64,
}

fn coordinator_config(limits: &CoordinatorConfig, offsets_partitions: u32) -> CoordinatorConfig {
    CoordinatorConfig { offsets_partitions, ..limits.clone() }
}

/// One shard's coordinator and the shell state around it.
pub struct GroupHost {
    pub(crate) coordinator: RefCell<GroupCoordinator>,
    /// The node's group limits (`NodeConfig::group_limits`), for replacement coordinators.
    pub(crate) limits: CoordinatorConfig,
    /// Parked requests: request id → where its late answer goes.
    pub(crate) waiters: RefCell<HashMap<RequestId, flume::Sender<CoreReply>>>,
    request_id_next: Cell<RequestId>,
    /// Partition count of [`OFFSETS_TOPIC`] (fixed at its creation; in cluster mode
    /// taken from the view once the cluster-wide topic exists).
    pub(crate) offsets_partitions: Cell<u32>,
    /// Cluster mode: the offsets partitions whose groups this shard's coordinator holds
    /// (those whose chain this node heads); always empty on a single node.
    pub(crate) led: RefCell<BTreeSet<u32>>,
    /// Bumped each time the coordinator is replaced (cluster mode), so a persist that
    /// completes afterwards is not reported to the new coordinator.
    pub(crate) incarnation: Cell<u64>,
    /// Cluster mode: a creation of the cluster-wide offsets topic is under way.
    pub(crate) creating: Cell<bool>,
    /// Notified after every coordinator call, so the timer re-reads `poll_timeout`.
    pub(crate) changed: Rc<LocalNotify>,
    /// Per offsets partition held here: how far the cleaner scanned for snapshot markers
    /// (`shard/groups/compact.rs`).
    pub(crate) scans: RefCell<HashMap<u32, OffsetsScan>>,
    clock_start: Instant,
    clock_base_ms: u64,
}

impl GroupHost {
    /// A host whose coordinator is loading; `offsets_partitions` is the offsets topic's
    /// partition count.
    pub fn new(offsets_partitions: u32, limits: CoordinatorConfig) -> Self {
        assert!(offsets_partitions > 0, "the offsets topic is created before shards start");
        let clock_base_ms = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64);
        GroupHost {
            // The start time makes member ids of this run distinct from earlier runs'.
            coordinator: RefCell::new(GroupCoordinator::new(
                coordinator_config(&limits, offsets_partitions),
                clock_base_ms,
            )),
            limits,
            waiters: RefCell::new(HashMap::new()),
            request_id_next: Cell::new(1),
            offsets_partitions: Cell::new(offsets_partitions),
            led: RefCell::new(BTreeSet::new()),
            incarnation: Cell::new(0),
            creating: Cell::new(false),
            changed: Rc::new(LocalNotify::default()),
            scans: RefCell::new(HashMap::new()),
            clock_start: Instant::now(),
            clock_base_ms,
        }
    }

    /// Partition count of [`OFFSETS_TOPIC`].
    pub fn offsets_partitions(&self) -> u32 {
        self.offsets_partitions.get()
    }

    /// The configuration of a new coordinator (the node's limits, the offsets topic's
    /// partition count as known now).
    pub(crate) fn coordinator_config(&self) -> CoordinatorConfig {
        coordinator_config(&self.limits, self.offsets_partitions())
    }

    /// The coordinator clock: wall-clock ms at start plus monotonic time since, so
    /// session timeouts never jump with the wall clock.
    pub fn now_ms(&self) -> u64 {
        self.clock_base_ms + self.clock_start.elapsed().as_millis() as u64
    }

    /// A fresh request id and the receiver its parked answer will arrive on.
    pub(crate) fn park(&self) -> (RequestId, flume::Receiver<CoreReply>) {
        let id = self.request_id_next.get();
        self.request_id_next.set(id + 1);
        let (tx, rx) = flume::bounded(1);
        self.waiters.borrow_mut().insert(id, tx);
        (id, rx)
    }

    /// Forgets a waiter whose request was answered at once.
    pub(crate) fn unpark(&self, id: RequestId) {
        self.waiters.borrow_mut().remove(&id);
    }

    /// Whether the coordinator still replays offsets.
    pub fn is_loading(&self) -> bool {
        self.coordinator.borrow().is_loading()
    }
}
