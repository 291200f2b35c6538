//! Consumer-group membership behind [`crate::Consumer::subscribe`]: the JoinGroup /
//! SyncGroup exchange, the background heartbeat task, offset commits and offset
//! fetches of one member. Group requests go to the group's coordinator
//! ([`Coordinator`]): the head of the group's `__consumer_offsets` partition per
//! Metadata (in cluster mode the only node that serves the group), or the bootstrap
//! node when the offsets topic has no metadata (a single node forwards internally).
//! `NOT_COORDINATOR`, `COORDINATOR_NOT_AVAILABLE`, `SHUTTING_DOWN`, `NOT_OWNER`,
//! `STALE_EPOCH` (a fenced head persisting a commit) and connection
//! failures refresh that lookup and retry within `failover_timeout`; a coordinator that
//! changed answers `UNKNOWN_MEMBER`, so the member rejoins and refetches its offsets.
//!
//! Refusals that retrying cannot cure reach the application as
//! [`ClientError::Server`] with the node's code and message (from `Consumer::poll` for a
//! join, from the commit calls for a commit): `TOO_MANY_GROUPS` (the coordinator holds
//! `groups_max` groups), `GROUP_FULL`, `OFFSET_METADATA_TOO_LARGE` (metadata over
//! `offset_metadata_max_bytes`, or the coordinator's `group_offsets_bytes_max` spent).
//! `ILLEGAL_GENERATION` for a commit (stale generation, or a partition this member does
//! not own in it) and `UNKNOWN_MEMBER` make the member rejoin.
//!
//! Split of work: this module speaks the protocol and keeps the member's identity
//! (member id, generation); the consumer decides *when* to rejoin (inside `poll`, so
//! rebalance callbacks run on the application's task) and what to commit.
//!
//! Invariants:
//! - The heartbeat task never joins by itself; it only raises the rejoin flag
//!   (`REBALANCE_IN_PROGRESS`, `ILLEGAL_GENERATION`, or `UNKNOWN_MEMBER`, which also
//!   forgets the member id) and wakes the consumer. It raises it only if the
//!   generation it heartbeated with is still the member's, so a late answer about an
//!   old generation cannot trigger a needless rebalance.
//! - No heartbeat is sent while a join/sync is in progress (a parked join keeps the
//!   session alive on the node).
//! - A commit is sent with the member id and generation current when it is sent.
//! - The heartbeat task ends when the member (`Membership`) is dropped.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

pub use strand_wire::msg::{Assignor, TopicPartition};
use strand_wire::msg::{
    CommittedOffset, HeartbeatRequest, JoinGroupRequest, JoinGroupResponse, LeaveGroupRequest, OffsetCommitRequest,
    OffsetFetchRequest, Request, Response, SyncGroupRequest,
};
use strand_wire::ErrorCode;
use tokio::sync::Notify;

use crate::client::Client;
use crate::conn::Reply;
use crate::error::{ClientError, Result};

/// Join + sync rounds one rejoin may take (a round ends early when another member
/// joins meanwhile, or when the group moved on before our sync).
const JOIN_ROUNDS_MAX: u32 = 50;
/// Extra time a parked join may take beyond the rebalance timeout (node timer slack).
const JOIN_TIMEOUT_SLACK: Duration = Duration::from_secs(5);
/// Attempts of a commit answered `REBALANCE_IN_PROGRESS` (others still syncing).
const COMMIT_ATTEMPTS_MAX: u32 = 20;
/// Pause before retrying a group request that failed transiently.
const RETRY_PAUSE: Duration = Duration::from_millis(50);

/// The internal topic whose partition heads coordinate groups.
pub const OFFSETS_TOPIC: &str = "__consumer_offsets";
/// Pause before looking the coordinator up again after it refused or vanished.
const COORDINATOR_RETRY_PAUSE: Duration = Duration::from_millis(100);

/// Finds and remembers the coordinator of one group, and sends it group requests.
#[derive(Debug)]
pub struct Coordinator {
    group_id: String,
    /// The coordinator's address while it answers; `None` = look it up.
    cached: Mutex<Option<SocketAddr>>,
}

impl Coordinator {
    /// A locator for `group_id` (nothing looked up yet).
    pub fn new(group_id: &str) -> Self {
        Coordinator { group_id: group_id.to_string(), cached: Mutex::new(None) }
    }

    /// The coordinator's address: the head of the group's offsets partition (owner shard
    /// port), or the bootstrap when the offsets topic has no metadata.
    async fn locate(&self, client: &Client) -> SocketAddr {
        if let Some(addr) = *lock_addr(&self.cached) {
            return addr;
        }
        let addr = match client.topic_metadata(OFFSETS_TOPIC).await {
            Ok(meta) if !meta.partitions.is_empty() => {
                let partition = crate::route::group_partition(&self.group_id, meta.partitions.len() as u32);
                client.partition_addr(OFFSETS_TOPIC, partition).await.unwrap_or_else(|_| client.bootstrap_addr())
            }
            _ => client.bootstrap_addr(),
        };
        *lock_addr(&self.cached) = Some(addr);
        addr
    }

    /// Forgets the coordinator (and the offsets topic's metadata).
    fn forget(&self, client: &Client) {
        *lock_addr(&self.cached) = None;
        client.invalidate_topic(OFFSETS_TOPIC);
    }

    /// Sends `request` to the coordinator, waiting at most `timeout` per attempt. On a
    /// coordinator move or failure (see the module doc) looks it up again and retries
    /// until `failover_timeout` has passed; a timeout is returned but forgets the
    /// coordinator; other answers are returned as they are.
    pub async fn call(&self, client: &Client, request: Request, timeout: Duration) -> Result<Reply> {
        let deadline = tokio::time::Instant::now() + client.config().failover_timeout;
        loop {
            let addr = self.locate(client).await;
            let result = match client.connection(addr).await {
                Ok(conn) => match conn.send_timeout(request.clone(), &[], timeout).await {
                    Ok(pending) => pending.wait().await,
                    Err(e) => Err(e),
                },
                Err(e) => Err(e),
            };
            match result {
                Err(e) if coordinator_moved(&e) && tokio::time::Instant::now() < deadline => {
                    tracing::debug!(group = %self.group_id, %addr, error = %e, "coordinator unavailable; looking it up again");
                    self.forget(client);
                    tokio::time::sleep(COORDINATOR_RETRY_PAUSE).await;
                }
                Err(ClientError::Timeout) => {
                    // A silent (e.g. paused) coordinator: the caller decides whether to retry,
                    // and the next call looks the coordinator up again.
                    self.forget(client);
                    return Err(ClientError::Timeout);
                }
                other => return other,
            }
        }
    }
}

/// Whether `err` means "the coordinator is elsewhere or gone": look it up again.
fn coordinator_moved(err: &ClientError) -> bool {
    match err {
        ClientError::Connect { .. } | ClientError::Disconnected { .. } => true,
        ClientError::Server { code, .. } => matches!(
            code,
            ErrorCode::NotCoordinator
                | ErrorCode::CoordinatorNotAvailable
                | ErrorCode::ShuttingDown
                | ErrorCode::NotOwner
                | ErrorCode::StaleEpoch
        ),
        _ => false,
    }
}

fn lock_addr(m: &Mutex<Option<SocketAddr>>) -> MutexGuard<'_, Option<SocketAddr>> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Callbacks a subscribed consumer runs inside `poll` when its assignment changes.
///
/// `on_revoked` runs before the partitions are dropped (after the auto-commit of the
/// consumed positions, when auto-commit is on); no record of a revoked partition is
/// returned after it. `on_assigned` runs once the new assignment is in place (also
/// when it is empty: this member idles).
pub trait RebalanceListener: Send {
    /// The consumer is about to give up `partitions`.
    fn on_revoked(&mut self, partitions: &[TopicPartition]) {
        let _ = partitions;
    }

    /// The consumer now owns `partitions` (its whole assignment).
    fn on_assigned(&mut self, partitions: &[TopicPartition]) {
        let _ = partitions;
    }
}

/// Timing and strategy of a group member.
#[derive(Debug, Clone)]
pub struct GroupSettings {
    pub session_timeout: Duration,
    pub rebalance_timeout: Duration,
    pub heartbeat_interval: Duration,
    pub assignor: Assignor,
}

/// Why the member must rejoin.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Rejoin {
    No,
    /// Rejoin with the member id we have.
    Member,
    /// The coordinator forgot us: join with an empty member id.
    Fresh,
}

#[derive(Debug)]
struct MemberState {
    member_id: String,
    generation: u32,
    joining: bool,
    rejoin: Rejoin,
}

/// State shared by the consumer and its heartbeat task.
#[derive(Debug)]
pub(crate) struct Core {
    client: Client,
    group_id: String,
    coordinator: Coordinator,
    topics: Vec<String>,
    settings: GroupSettings,
    state: Mutex<MemberState>,
    /// Woken (`notify_one`, so a wake-up is never lost) when a rejoin is needed.
    pub(crate) wake: Notify,
}

/// One member of one group; dropping it stops heartbeats without leaving the group.
#[derive(Debug)]
pub(crate) struct Membership {
    core: Arc<Core>,
    heartbeat: tokio::task::JoinHandle<()>,
}

impl Membership {
    /// A member of `group_id` that has not joined yet (its first [`Membership::join`] joins).
    pub(crate) fn start(client: Client, group_id: &str, topics: Vec<String>, settings: GroupSettings) -> Result<Self> {
        if group_id.is_empty() {
            return Err(ClientError::Config("group id is empty".to_string()));
        }
        if topics.is_empty() {
            return Err(ClientError::Config("subscribe needs at least one topic".to_string()));
        }
        if settings.heartbeat_interval.is_zero() || settings.heartbeat_interval >= settings.session_timeout {
            return Err(ClientError::Config("heartbeat interval must be in (0, session timeout)".to_string()));
        }
        let state = MemberState { member_id: String::new(), generation: 0, joining: false, rejoin: Rejoin::Member };
        let core = Arc::new(Core {
            client,
            group_id: group_id.to_string(),
            coordinator: Coordinator::new(group_id),
            topics,
            settings,
            state: Mutex::new(state),
            wake: Notify::new(),
        });
        let heartbeat = tokio::spawn(heartbeat_loop(core.clone()));
        Ok(Membership { core, heartbeat })
    }

    /// The shared core (for commits in spawned tasks and for waiting on wake-ups).
    pub(crate) fn core(&self) -> &Arc<Core> {
        &self.core
    }

    /// Sends LeaveGroup (if joined) and stops heartbeats.
    pub(crate) async fn leave(self) -> Result<()> {
        self.heartbeat.abort();
        let member_id = std::mem::take(&mut lock(&self.core.state).member_id);
        if member_id.is_empty() {
            return Ok(());
        }
        let request = Request::LeaveGroup(LeaveGroupRequest { group_id: self.core.group_id.clone(), member_id });
        match self.core.call(request, None).await {
            Ok(_) => Ok(()),
            // Already expired: nothing to leave.
            Err(e) if e.code() == ErrorCode::UnknownMember => Ok(()),
            Err(e) => Err(e),
        }
    }
}

impl Drop for Membership {
    fn drop(&mut self) {
        self.heartbeat.abort();
    }
}

impl Core {
    /// Sends a group request to the coordinator (`timeout` default: the request timeout).
    async fn call(&self, request: Request, timeout: Option<Duration>) -> Result<Reply> {
        let timeout = timeout.unwrap_or(self.client.config().request_timeout);
        self.coordinator.call(&self.client, request, timeout).await
    }

    /// The group id.
    pub(crate) fn group_id(&self) -> &str {
        &self.group_id
    }

    /// Whether the member must (re)join before it consumes on.
    pub(crate) fn needs_rejoin(&self) -> bool {
        lock(&self.state).rejoin != Rejoin::No
    }

    /// `(member id, generation)` of the current membership.
    pub(crate) fn identity(&self) -> (String, u32) {
        let state = lock(&self.state);
        (state.member_id.clone(), state.generation)
    }

    /// Raises the rejoin flag if `err` says so and `generation` is still ours.
    fn note_error(&self, generation: u32, err: &ClientError) {
        let rejoin = match err.code() {
            ErrorCode::RebalanceInProgress | ErrorCode::IllegalGeneration => Rejoin::Member,
            ErrorCode::UnknownMember => Rejoin::Fresh,
            _ => return,
        };
        let mut state = lock(&self.state);
        if state.generation != generation || state.joining {
            return;
        }
        if state.rejoin != Rejoin::Fresh {
            state.rejoin = rejoin;
        }
        drop(state);
        tracing::debug!(group = %self.group_id, generation, error = %err, "rejoin needed");
        self.wake.notify_one();
    }

    /// Joins and syncs until this member holds an assignment of a formed generation.
    /// Returns that assignment. On failure the rejoin flag stays raised.
    pub(crate) async fn join(&self) -> Result<Vec<TopicPartition>> {
        let mut last_error = None;
        for round in 0..JOIN_ROUNDS_MAX {
            {
                let mut state = lock(&self.state);
                state.joining = true;
                if state.rejoin == Rejoin::Fresh {
                    state.member_id.clear();
                }
                state.rejoin = Rejoin::Member;
            }
            match self.join_round().await {
                Ok(assignment) => {
                    let mut state = lock(&self.state);
                    state.joining = false;
                    state.rejoin = Rejoin::No;
                    tracing::debug!(group = %self.group_id, generation = state.generation, round, "joined");
                    return Ok(assignment);
                }
                Err(e) => {
                    let fresh = e.code() == ErrorCode::UnknownMember;
                    lock(&self.state).rejoin = if fresh { Rejoin::Fresh } else { Rejoin::Member };
                    let again = fresh || matches!(e.code(), ErrorCode::IllegalGeneration) || e.is_retriable();
                    if !again {
                        lock(&self.state).joining = false;
                        return Err(e);
                    }
                    tracing::debug!(group = %self.group_id, round, error = %e, "join round failed; retrying");
                    if !fresh && e.code() != ErrorCode::RebalanceInProgress {
                        tokio::time::sleep(RETRY_PAUSE).await;
                    }
                    last_error = Some(e);
                }
            }
        }
        lock(&self.state).joining = false;
        Err(last_error.unwrap_or(ClientError::UnexpectedResponse("join rounds exhausted")))
    }

    /// One JoinGroup (parked by the node until the generation forms) and its SyncGroup.
    async fn join_round(&self) -> Result<Vec<TopicPartition>> {
        let member_id = lock(&self.state).member_id.clone();
        let s = &self.settings;
        let request = Request::JoinGroup(JoinGroupRequest {
            group_id: self.group_id.clone(),
            member_id,
            client_id: self.client.config().client_id.clone(),
            session_timeout_ms: millis_u32(s.session_timeout),
            rebalance_timeout_ms: millis_u32(s.rebalance_timeout),
            topics: self.topics.clone(),
            assignor: s.assignor,
        });
        let timeout = s.rebalance_timeout + JOIN_TIMEOUT_SLACK;
        let (header, _) = self.call(request, Some(timeout)).await?;
        let Response::JoinGroup(JoinGroupResponse { generation, member_id, .. }) = header.response else {
            return Err(ClientError::UnexpectedResponse("join group"));
        };
        {
            let mut state = lock(&self.state);
            state.member_id = member_id.clone();
            state.generation = generation;
        }
        let request = Request::SyncGroup(SyncGroupRequest { group_id: self.group_id.clone(), generation, member_id });
        let (header, _) = self.call(request, None).await?;
        let Response::SyncGroup(sync) = header.response else {
            return Err(ClientError::UnexpectedResponse("sync group"));
        };
        let mut assignment = sync.assignment;
        assignment.sort();
        Ok(assignment)
    }

    /// Commits `offsets` (position = next offset to consume) for the current generation.
    /// Retries while other members are still syncing; raises the rejoin flag when the
    /// node says this generation is over.
    pub(crate) async fn commit(&self, offsets: Vec<CommittedOffset>) -> Result<()> {
        if offsets.is_empty() {
            return Ok(());
        }
        let mut attempt = 1;
        loop {
            let (member_id, generation) = self.identity();
            let request = Request::OffsetCommit(OffsetCommitRequest {
                group_id: self.group_id.clone(),
                generation,
                member_id,
                offsets: offsets.clone(),
            });
            match self.call(request, None).await {
                Ok(_) => return Ok(()),
                Err(e) if e.code() == ErrorCode::RebalanceInProgress && attempt < COMMIT_ATTEMPTS_MAX => {
                    attempt += 1;
                    tokio::time::sleep(RETRY_PAUSE).await;
                }
                Err(e) => {
                    self.note_error(generation, &e);
                    return Err(e);
                }
            }
        }
    }

    /// The committed offsets of `partitions` (those with none are left out).
    pub(crate) async fn fetch_committed(&self, partitions: &[TopicPartition]) -> Result<HashMap<TopicPartition, u64>> {
        if partitions.is_empty() {
            return Ok(HashMap::new());
        }
        let request = Request::OffsetFetch(OffsetFetchRequest {
            group_id: self.group_id.clone(),
            partitions: partitions.to_vec(),
        });
        let (header, _) = self.client.retry_idempotent(|| self.call(request.clone(), None)).await?;
        let Response::OffsetFetch(resp) = header.response else {
            return Err(ClientError::UnexpectedResponse("offset fetch"));
        };
        let offsets = resp.offsets.into_iter();
        Ok(offsets.map(|c| (TopicPartition { topic: c.topic, partition: c.partition }, c.offset)).collect())
    }
}

/// Heartbeats every `heartbeat_interval` while the member is joined and not joining.
async fn heartbeat_loop(core: Arc<Core>) {
    let mut tick = tokio::time::interval(core.settings.heartbeat_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let (member_id, generation) = {
            let state = lock(&core.state);
            if state.joining || state.member_id.is_empty() {
                continue;
            }
            (state.member_id.clone(), state.generation)
        };
        let request = Request::Heartbeat(HeartbeatRequest { group_id: core.group_id.clone(), generation, member_id });
        let result = core.call(request, Some(core.settings.session_timeout)).await;
        if let Err(e) = result {
            tracing::debug!(group = %core.group_id, error = %e, "heartbeat failed");
            core.note_error(generation, &e);
        }
    }
}

fn millis_u32(d: Duration) -> u32 {
    d.as_millis().min(u128::from(u32::MAX)) as u32
}

fn lock(m: &Mutex<MemberState>) -> MutexGuard<'_, MemberState> {
    // The state is plain data; a panicking holder cannot leave it inconsistent.
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}
