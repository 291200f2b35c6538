//! One partition replica on its owner shard: the IO shell around the chain core's
//! [`ChainReplica`]. It turns the core's actions into log appends, frames to peers and
//! completed produces, and feeds back local durability, peer messages and timeouts.
//!
//! Environment: peers, clock and the fatal path come from a [`ReplicaEnv`]
//! (`super::env`): [`ReplicatedPartition::start`] uses the real one;
//! [`ReplicatedPartition::start_with`] takes the replica simulator's
//! (`node/tests/replica_sim.rs`: a simulated network, a virtual clock, a crash handler).
//!
//! Lifecycle: [`ReplicatedPartition::start`] rebuilds the core from the log's batch
//! headers and the epoch checkpoint ([`super::epochs`]; a restarted replica stays
//! outside the chain until an epoch above `epoch_min` includes it), then spawns two local tasks — the *worker*,
//! which starts log appends and performs sends strictly in the order the core issued
//! them (an append runs as its own task, so forwarding overlaps the local fsync), and
//! the *ticker*, which sleeps until the core's next deadline (`poll_timeout`: a
//! retransmission or heartbeat; none while nothing is outstanding, so an idle replica
//! costs no wake-ups) and then drives its timeouts. Both hold only a
//! weak reference and end when the partition is dropped (an append task holds a strong
//! one until its append completes), so the shard can reclaim the log with `Rc::try_unwrap`.
//!
//! Truncation: the core cuts its index at once; the worker executes the cut in order,
//! after every append issued before it has completed (no append of the log is in flight
//! during `PartitionLog::truncate`), then cuts the epoch checkpoint. An append completing
//! after a later-issued cut reports durability only up to that cut (the core's offsets
//! above it already name other batches).
//!
//! Invariants: the shell's `PartitionLog` holds exactly the core's `LogIndex` once the
//! worker and its appends are idle (checked on every append: the log stamps the offset
//! the core chose, else the replica stops);
//! durability is reported only after `PartitionLog::append` returned, which happens
//! after the log's fsync policy is met; the bytes sent to a successor are read back
//! from the local log (or, while its append runs, are the very bytes being appended,
//! offset stamped), so replicas are byte-identical.

use bytes::{Bytes, BytesMut};
use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::path::PathBuf;
use std::rc::{Rc, Weak};
use strand_core::chain::{
    Acks, Action, BatchMeta, ChainConfig, ChainError, ChainLimits, ChainReplica, ClientBatch, Epoch, Msg, NodeId,
    Offset, Position, RequestId, Role, SuccessorLag,
};
use strand_wire::batch::{BatchHeader, BatchHeaders};
use strand_wire::codec::{request_frame, request_prefix_and_header};
use strand_wire::msg::{Request, RequestHeader};
use tracing::{error, warn};

use super::convert::{ack_to_wire, append_to_wire, reset_to_wire};
use super::env::{Clock, Fatal, ReplicaEnv};
use super::epochs::EpochFile;
use super::link::Peers;
use super::ReplicationError;
use crate::log::PartitionLog;

/// Work the worker task executes in order.
enum Work {
    /// Batches with their bytes; the cut generation when the core issued them.
    Append(Vec<(BatchMeta, Bytes)>, u64),
    /// Cut point and the cut generation it started.
    Truncate(Offset, u64),
    /// New empty log start (a learner reset) and the cut generation it started.
    Reset(Position, u64),
    Send(NodeId, Msg),
}

type Waiter = flume::Sender<Result<Offset, ChainError>>;

/// One replicated partition on its owner shard. See the module doc.
pub struct ReplicatedPartition {
    topic: String,
    partition: u32,
    core: RefCell<ChainReplica>,
    log: Rc<PartitionLog>,
    peers: Rc<Peers>,
    clock: Clock,
    /// How a storage failure stops the node (exits; in the simulator, marks it crashed).
    fatal: Fatal,
    /// Bytes of batches the core may ask to append next, by base offset.
    staged: RefCell<HashMap<u64, Bytes>>,
    work: RefCell<VecDeque<Work>>,
    /// Bytes of batches whose local append is still running, as received (a head's
    /// client batches carry no base offset yet: the sender stamps its copy), so a
    /// successor can be fed while the local fsync is in flight (pipelined chain).
    in_flight: RefCell<BTreeMap<u64, Bytes>>,
    wake: flume::Sender<()>,
    /// Wakes the ticker when the core's next deadline moved earlier than `armed`.
    timer_wake: flume::Sender<()>,
    /// The deadline the ticker sleeps for (`None`: it waits for `timer_wake`).
    armed: Cell<Option<u64>>,
    waiters: RefCell<HashMap<RequestId, Waiter>>,
    next_request: Cell<RequestId>,
    /// Set when the local log failed: the replica stops acting (never half-alive).
    broken: Cell<bool>,
    /// Why it stopped (for the operator's log and the simulator's checks).
    stop_reason: RefCell<Option<String>>,
    /// The append-epoch checkpoint (only the worker changes it, one change at a time).
    epochs: RefCell<EpochFile>,
    /// Local append tasks running, and who waits for that to reach zero (a truncation).
    appends_running: Cell<usize>,
    idle_waiters: RefCell<Vec<std::task::Waker>>,
    /// Truncations the core issued, numbered; `(generation, to)` of cuts not yet executed.
    cut_generation: Cell<u64>,
    cuts: RefCell<Vec<(u64, u64)>>,
    /// Called whenever `committed()` may have advanced.
    progress_hook: RefCell<Option<Rc<dyn Fn()>>>,
}

impl ReplicatedPartition {
    /// Starts replicating `log` (in partition directory `dir`) as node `me` under
    /// `config`. A non-empty log is recovered: its batch headers plus the epoch checkpoint
    /// rebuild the core, which stays outside the chain until an epoch above `epoch_min`
    /// (the partition's epoch when this node came back; 0 for a new replica) includes it.
    /// A log may start above 0 (retention removed a committed prefix, or a reset).
    #[allow(clippy::too_many_arguments, reason = "the node's one entry point, called from two places")]
    pub async fn start(
        topic: &str,
        partition: u32,
        me: NodeId,
        log: Rc<PartitionLog>,
        dir: PathBuf,
        peers: Rc<Peers>,
        epoch_min: Epoch,
        config: ChainConfig,
    ) -> Result<Rc<ReplicatedPartition>, ReplicationError> {
        let env = ReplicaEnv::real(peers);
        Self::start_with(topic, partition, me, log, dir, env, epoch_min, config).await
    }

    /// [`ReplicatedPartition::start`] in the environment `env` (the replica simulator's
    /// network, virtual clock and crash handler; `start` passes [`ReplicaEnv::real`]).
    #[allow(clippy::too_many_arguments, reason = "start's arguments with the environment for the peers")]
    pub async fn start_with(
        topic: &str,
        partition: u32,
        me: NodeId,
        log: Rc<PartitionLog>,
        dir: PathBuf,
        env: ReplicaEnv,
        epoch_min: Epoch,
        config: ChainConfig,
    ) -> Result<Rc<ReplicatedPartition>, ReplicationError> {
        let (core, epochs) = recover_core(me, &log, &dir, epoch_min).await?;
        let (wake, wake_rx) = flume::bounded(1);
        let (timer_wake, timer_wake_rx) = flume::bounded(1);
        let this = Rc::new(ReplicatedPartition {
            topic: topic.to_string(),
            partition,
            core: RefCell::new(core),
            log,
            peers: env.peers,
            clock: env.clock,
            fatal: env.fatal,
            staged: RefCell::new(HashMap::new()),
            work: RefCell::new(VecDeque::new()),
            in_flight: RefCell::new(BTreeMap::new()),
            wake,
            timer_wake,
            armed: Cell::new(None),
            waiters: RefCell::new(HashMap::new()),
            next_request: Cell::new(1),
            broken: Cell::new(false),
            stop_reason: RefCell::new(None),
            epochs: RefCell::new(epochs),
            appends_running: Cell::new(0),
            idle_waiters: RefCell::new(Vec::new()),
            cut_generation: Cell::new(0),
            cuts: RefCell::new(Vec::new()),
            progress_hook: RefCell::new(None),
        });
        glommio::spawn_local(run_worker(Rc::downgrade(&this), wake_rx)).detach();
        glommio::spawn_local(run_ticker(Rc::downgrade(&this), timer_wake_rx)).detach();
        this.handle_config(config)?;
        Ok(this)
    }

    /// A new chain configuration (older or equal epochs are ignored by the core).
    pub fn handle_config(&self, config: ChainConfig) -> Result<(), ReplicationError> {
        let now = self.now_ms();
        self.core.borrow_mut().handle_config(now, config)?;
        self.drain();
        Ok(())
    }

    /// Appends `payload` (one or more whole record batches) at the head and waits for
    /// its acknowledgement per `acks`. Returns the base offset of the first batch.
    pub async fn produce(&self, payload: Bytes, acks: Acks) -> Result<u64, ReplicationError> {
        self.submit(payload, acks)?.acked().await
    }

    /// The synchronous half of [`ReplicatedPartition::produce`]: hands every batch of
    /// `payload` to the chain core, which takes their offsets at once, in call order. A
    /// batch the core refuses ends the call with its error; batches taken before it stay
    /// taken (the core's log end says how far it got).
    pub fn submit(&self, payload: Bytes, acks: Acks) -> Result<Submitted, ReplicationError> {
        let batches = split_batches(&payload)?;
        let mut receivers = Vec::with_capacity(batches.len());
        let mut first = None;
        for (header, bytes) in batches {
            let request_id = self.next_request.get();
            self.next_request.set(request_id + 1);
            let (tx, rx) = flume::bounded(1);
            let base = self.core.borrow().log().end();
            self.staged.borrow_mut().insert(base.0, bytes.clone());
            let batch = ClientBatch { request_id, record_count: header.record_count, bytes_len: header.batch_len };
            let now = self.now_ms();
            let result = self.core.borrow_mut().handle_client_append(now, batch, acks);
            if let Err(e) = result {
                self.staged.borrow_mut().remove(&base.0);
                self.drain();
                return Err(e.into());
            }
            let taken = self.core.borrow().log().end();
            assert_eq!(
                taken.0,
                base.0 + u64::from(header.record_count),
                "the chain core takes a client batch's offsets when it accepts it"
            );
            first.get_or_insert(base.0);
            self.waiters.borrow_mut().insert(request_id, tx);
            receivers.push(rx);
            self.drain();
        }
        Ok(Submitted { base_offset: first.ok_or(ReplicationError::Empty)?, receivers })
    }

    /// A chain message from `from`; `pieces` are an append's batches (empty otherwise).
    pub fn handle_message(&self, from: NodeId, msg: Msg, pieces: Vec<Bytes>) -> Result<(), ReplicationError> {
        if let Msg::Append { batches, .. } = &msg {
            let mut staged = self.staged.borrow_mut();
            for (meta, bytes) in batches.iter().zip(pieces) {
                staged.insert(meta.base.0, bytes);
            }
        }
        let now = self.now_ms();
        let result = self.core.borrow_mut().handle_message(now, from, msg);
        self.drain();
        result.map_err(ReplicationError::from)
    }

    /// Everything below this offset is committed and present here (serve reads to it).
    pub fn committed(&self) -> Offset {
        self.core.borrow().reads_up_to()
    }
    /// The commit offset this replica knows.
    pub fn commit(&self) -> Offset {
        self.core.borrow().commit()
    }
    /// The role in the current epoch.
    pub fn role(&self) -> Role {
        self.core.borrow().role()
    }
    /// The current configuration.
    pub fn config(&self) -> ChainConfig {
        self.core.borrow().config().clone()
    }
    /// True when this replica (tail) has a learner that caught up: the control plane may
    /// promote it (core passthrough, see `ChainReplica::learner_in_sync`).
    pub fn learner_in_sync(&self) -> bool {
        self.core.borrow().learner_in_sync()
    }
    /// The successor this replica feeds in the current epoch and how far behind it is
    /// (monitoring; see `ChainReplica::successor_lag`).
    pub fn successor_lag(&self) -> Option<SuccessorLag> {
        self.core.borrow().successor_lag(self.now_ms())
    }
    /// The end of this replica's log as the chain core sees it (issued appends included).
    pub fn log_end(&self) -> Offset {
        self.core.borrow().log().end()
    }
    /// Sets the function called whenever `committed()` may have advanced (e.g. to wake
    /// long-polling fetches). It runs on this shard with no replica state borrowed.
    pub fn set_progress_hook(&self, hook: Box<dyn Fn()>) {
        *self.progress_hook.borrow_mut() = Some(Rc::from(hook));
    }
    /// The local log.
    pub fn log(&self) -> &Rc<PartitionLog> {
        &self.log
    }
    /// Topic and partition.
    pub fn id(&self) -> (&str, u32) {
        (&self.topic, self.partition)
    }

    /// Why the replica stopped acting, once it did (see [`Self::fail`]).
    pub fn stopped(&self) -> Option<String> {
        self.stop_reason.borrow().clone()
    }

    fn now_ms(&self) -> u64 {
        self.clock.now_ms()
    }

    /// Takes every pending core action: completions are delivered now, IO is queued
    /// for the worker (in order), with an append's bytes attached from `staged`.
    fn drain(&self) {
        let mut queued = false;
        let mut reads_moved = false;
        loop {
            let Some(action) = self.core.borrow_mut().poll_action() else { break };
            match action {
                Action::AppendLocal { batches } => {
                    let mut staged = self.staged.borrow_mut();
                    let mut with_bytes = Vec::with_capacity(batches.len());
                    for meta in batches {
                        let Some(bytes) = staged.remove(&meta.base.0) else {
                            self.fail(format!("no bytes staged for batch at {}", meta.base.0));
                            return;
                        };
                        with_bytes.push((meta, bytes));
                    }
                    self.work.borrow_mut().push_back(Work::Append(with_bytes, self.cut_generation.get()));
                    queued = true;
                }
                Action::TruncateLocal { to } => {
                    let generation = self.cut_generation.get() + 1;
                    self.cut_generation.set(generation);
                    self.cuts.borrow_mut().push((generation, to.0));
                    self.work.borrow_mut().push_back(Work::Truncate(to, generation));
                    queued = true;
                }
                Action::ResetLocal { start } => {
                    // A reset is a cut too: appends issued before it report durability up to it.
                    let generation = self.cut_generation.get() + 1;
                    self.cut_generation.set(generation);
                    self.cuts.borrow_mut().push((generation, start.offset.0));
                    self.work.borrow_mut().push_back(Work::Reset(start, generation));
                    queued = true;
                }
                Action::Send { to, msg } => {
                    self.work.borrow_mut().push_back(Work::Send(to, msg));
                    queued = true;
                }
                Action::AckClient { request_id, offset } => self.complete(request_id, Ok(offset)),
                Action::FailClient { request_id, error } => self.complete(request_id, Err(error)),
                Action::ServeReadsUpTo { .. } => reads_moved = true,
                Action::ConfigStale { seen } => warn!(topic = %self.topic, seen = seen.0, "chain config is stale"),
            }
        }
        // Whatever the core did not take is stale (already present or refused).
        self.staged.borrow_mut().clear();
        let next = self.core.borrow().poll_timeout();
        if next.is_some_and(|next| self.armed.get().is_none_or(|armed| next < armed)) {
            let _ = self.timer_wake.try_send(());
        }
        if queued {
            let _ = self.wake.try_send(());
        }
        if reads_moved {
            let hook = self.progress_hook.borrow().clone();
            if let Some(hook) = hook {
                hook();
            }
        }
    }

    fn complete(&self, request_id: RequestId, result: Result<Offset, ChainError>) {
        if let Some(tx) = self.waiters.borrow_mut().remove(&request_id) {
            let _ = tx.try_send(result);
        }
    }

    /// The replica cannot go on for a reason that is not a storage failure (those stop the
    /// node first, see [`Self::stop_node_if_fatal`]): stop acting and fail every waiting
    /// produce.
    fn fail(&self, reason: String) {
        error!(topic = %self.topic, partition = self.partition, %reason, "replica stopped");
        self.broken.set(true);
        self.stop_reason.borrow_mut().get_or_insert(reason);
        self.work.borrow_mut().clear();
        for (_, tx) in self.waiters.borrow_mut().drain() {
            let _ = tx.try_send(Err(ChainError::Reconfigured));
        }
    }

    /// The next work item; consecutive appends are merged into one (one log append,
    /// one fsync for all of them — group commit across produces).
    fn take_work(&self) -> Option<Work> {
        let mut queue = self.work.borrow_mut();
        let mut work = queue.pop_front()?;
        if let Work::Append(batches, _) = &mut work {
            // Consecutive appends have no cut between them: same generation.
            while let Some(Work::Append(more, _)) = queue.front_mut() {
                batches.append(more);
                queue.pop_front();
            }
        }
        Some(work)
    }

    async fn execute(self: &Rc<Self>, work: Work) {
        match work {
            Work::Append(batches, generation) => {
                if let Err(e) = self.record_epochs(&batches).await {
                    self.stop_node_if_fatal(e.raw_os_error(), &e);
                    self.fail(format!("cannot persist the append epoch: {e}"));
                    return;
                }
                self.start_append(batches, generation)
            }
            Work::Truncate(to, generation) => self.truncate(to, generation).await,
            Work::Reset(start, generation) => self.reset(start, generation).await,
            Work::Send(to, msg) => self.send(to, msg).await,
        }
    }

    /// Persists an epoch checkpoint entry for every epoch that starts in `batches`, before
    /// their append starts (so every stored batch is covered after a crash).
    async fn record_epochs(&self, batches: &[(BatchMeta, Bytes)]) -> Result<(), super::epochs::EpochFileError> {
        for (meta, _) in batches {
            if self.epochs.borrow().last_epoch() == Some(meta.epoch) {
                continue;
            }
            let mut epochs = self.epochs.borrow().clone();
            epochs.begin_epoch(meta.epoch, meta.base).await?;
            *self.epochs.borrow_mut() = epochs;
        }
        Ok(())
    }

    /// Applies retention to the local log below the served-reads offset (committed data
    /// only) and tells the core the new log start. Returns the segments deleted.
    pub async fn apply_retention(&self, now_ms: i64) -> Result<u32, crate::log::LogError> {
        let limit = self.committed().0;
        let deleted = self.log.apply_retention_below(now_ms, limit).await?;
        self.report_log_start(deleted);
        Ok(deleted)
    }

    /// Deletes the closed segments ending at or below `offset` that hold only committed
    /// data (a snapshot of the offsets topic made them redundant) and tells the core the
    /// new log start. Returns the segments deleted.
    pub async fn delete_below(&self, offset: u64) -> Result<u32, crate::log::LogError> {
        let limit = self.committed().0;
        let deleted = self.log.delete_below(offset, limit).await?;
        self.report_log_start(deleted);
        Ok(deleted)
    }

    fn report_log_start(&self, deleted: u32) {
        let start = self.log.log_start_offset();
        if deleted > 0 && !self.broken.get() {
            let now = self.now_ms();
            if let Err(e) = self.core.borrow_mut().handle_log_start(now, Offset(start)) {
                // Not expected (segment bases are batch boundaries below the reads).
                warn!(topic = %self.topic, partition = self.partition, start, error = %e, "log start refused");
            }
            self.drain();
        }
    }

    /// Waits until no local append task runs (before a cut or a reset).
    async fn appends_idle(&self) {
        std::future::poll_fn(|cx| {
            if self.appends_running.get() == 0 {
                return std::task::Poll::Ready(());
            }
            self.idle_waiters.borrow_mut().push(cx.waker().clone());
            std::task::Poll::Pending
        })
        .await;
    }

    /// Executes a reset the core issued (the learner continues empty from `start`): the
    /// log first, then the epoch checkpoint (see `recover_core` for a crash between).
    async fn reset(&self, start: Position, generation: u64) {
        self.appends_idle().await;
        if let Err(e) = self.log.reset(start.offset.0).await {
            self.stop_node_if_fatal(e.raw_os_error(), &e);
            self.fail(format!("reset to {} failed: {e}", start.offset.0));
            return;
        }
        let mut epochs = self.epochs.borrow().clone();
        if let Err(e) = epochs.reset(start).await {
            self.stop_node_if_fatal(e.raw_os_error(), &e);
            self.fail(format!("cannot reset the epoch checkpoint at {}: {e}", start.offset.0));
            return;
        }
        *self.epochs.borrow_mut() = epochs;
        self.cuts.borrow_mut().retain(|(g, _)| *g > generation);
    }

    /// Executes a cut the core issued: waits until every append issued before it has
    /// completed, cuts the log, then the epoch checkpoint.
    async fn truncate(&self, to: Offset, generation: u64) {
        self.appends_idle().await;
        if let Err(e) = self.log.truncate(to.0).await {
            self.stop_node_if_fatal(e.raw_os_error(), &e);
            self.fail(format!("truncation to {} failed: {e}", to.0));
            return;
        }
        let mut epochs = self.epochs.borrow().clone();
        if let Err(e) = epochs.truncate(to).await {
            self.stop_node_if_fatal(e.raw_os_error(), &e);
            self.fail(format!("cannot cut the epoch checkpoint at {}: {e}", to.0));
            return;
        }
        *self.epochs.borrow_mut() = epochs;
        // Every append issued before this cut has completed: its bound is no longer needed.
        self.cuts.borrow_mut().retain(|(g, _)| *g > generation);
    }

    /// A log write that failed with an errno after which the disk's state is unknown stops
    /// the node, as on every data path (`crate::fatal`, through the environment's
    /// [`Fatal`]); anything else stops only this replica.
    fn stop_node_if_fatal(&self, errno: Option<i32>, e: &dyn std::fmt::Display) {
        if errno.is_some_and(crate::fatal::errno_is_fatal) {
            self.fatal.stop_node(&self.topic, self.partition, e);
        }
    }

    /// The durable end an append of cut generation `generation` may report: its log end,
    /// bounded by every cut issued after it.
    fn durable_bound(&self, generation: u64, log_end: u64) -> u64 {
        self.cuts.borrow().iter().filter(|(g, _)| *g > generation).fold(log_end, |end, (_, to)| end.min(*to))
    }

    /// Starts the local append of `batches` as its own task and returns at once, so
    /// sends queued behind it proceed (from `in_flight`) during the fsync. Offsets are
    /// taken in task start order, which is spawn order (glommio runs local tasks FIFO);
    /// the stamp check below catches any violation.
    fn start_append(self: &Rc<Self>, batches: Vec<(BatchMeta, Bytes)>, generation: u64) {
        let Some(first) = batches.first().map(|b| b.0.base.0) else { return };
        let mut buf = BytesMut::with_capacity(batches.iter().map(|b| b.1.len()).sum());
        let mut in_flight = self.in_flight.borrow_mut();
        for (meta, bytes) in &batches {
            // The log stamps the offsets of its own copy; the shared original serves sends.
            buf.extend_from_slice(bytes);
            in_flight.insert(meta.base.0, bytes.clone());
        }
        drop(in_flight);
        let this = self.clone();
        self.appends_running.set(self.appends_running.get() + 1);
        glommio::spawn_local(async move {
            let result = this.log.append(buf).await;
            for (meta, _) in &batches {
                this.in_flight.borrow_mut().remove(&meta.base.0);
            }
            this.appends_running.set(this.appends_running.get() - 1);
            if this.appends_running.get() == 0 {
                for waker in this.idle_waiters.borrow_mut().drain(..) {
                    waker.wake();
                }
            }
            match result {
                Ok(info) if info.base_offset == first => {
                    let now = this.now_ms();
                    let durable = this.durable_bound(generation, info.log_end_offset);
                    this.core.borrow_mut().handle_local_durable(now, Offset(durable));
                    this.drain();
                }
                Ok(info) => this.fail(format!("log stamped {} where the chain expects {first}", info.base_offset)),
                // One fatal path for both data paths: a storage failure stops the node. A
                // replica also stops on what a single node would only refuse (a full disk, a
                // batch its log will not take): the chain core already took these offsets,
                // so the log can never catch up with it — holding the chain place
                // half-alive would stall the chain for good; stopped, the chain drops it.
                // (In the simulator the fatal handler returns: the replica then stops.)
                Err(e) => {
                    this.fatal.stop_node(&this.topic, this.partition, &e);
                    this.fail(format!("append at {first} failed: {e}"));
                }
            }
        })
        .detach();
    }

    async fn send(&self, to: NodeId, msg: Msg) {
        let me = self.core.borrow().node();
        let mut frame = BytesMut::new();
        match &msg {
            Msg::Append { epoch, prev, batches, commit } => {
                // Header first, then the batches' bytes copied once, straight into the frame.
                let req = append_to_wire(&self.topic, self.partition, me, *epoch, *prev, batches, *commit);
                let header = RequestHeader { correlation_id: 0, request: Request::ReplicaAppend(req) };
                let want: usize = batches.iter().map(|b| b.bytes_len as usize).sum();
                request_prefix_and_header(&mut frame, &header, want);
                if let Err(e) = self.read_batches(batches, &mut frame).await {
                    // Not fatal: the core retransmits from what the log holds.
                    warn!(topic = %self.topic, error = %e, "could not read batches to send");
                    return;
                }
            }
            Msg::Reset { epoch, start } => {
                let req = reset_to_wire(&self.topic, self.partition, me, *epoch, *start);
                let header = RequestHeader { correlation_id: 0, request: Request::ReplicaAppend(req) };
                request_frame(&mut frame, &header, &[]);
            }
            other => {
                let Some(req) = ack_to_wire(&self.topic, self.partition, me, other) else { return };
                let header = RequestHeader { correlation_id: 0, request: Request::ReplicaAck(req) };
                request_frame(&mut frame, &header, &[]);
            }
        }
        self.peers.send(to, frame.freeze());
    }

    /// Appends the bytes of `batches` (contiguous, offsets stamped) to `out`: from
    /// `in_flight` where the local append is still running, otherwise read back from the
    /// local log.
    async fn read_batches(&self, batches: &[BatchMeta], out: &mut BytesMut) -> Result<(), ReadBackError> {
        let want: usize = batches.iter().map(|b| b.bytes_len as usize).sum();
        let out_start = out.len();
        out.reserve(want);
        let mut index = 0;
        while index < batches.len() {
            let base = batches[index].base.0;
            let pending = self.in_flight.borrow().get(&base).cloned();
            if let Some(bytes) = pending {
                let start = out.len();
                out.extend_from_slice(&bytes);
                // The bytes the log holds: a head's client batches carry no offset yet.
                strand_wire::batch::stamp_base_offset(&mut out[start..], base);
                index += 1;
                continue;
            }
            // A run of batches already in the log.
            let run_end = batches[index..]
                .iter()
                .position(|b| self.in_flight.borrow().contains_key(&b.base.0))
                .map_or(batches.len(), |p| index + p);
            self.read_from_log(&batches[index..run_end], out).await?;
            index = run_end;
        }
        let read = out.len() - out_start;
        if read != want {
            return Err(ReadBackError::Length { read, want });
        }
        Ok(())
    }

    async fn read_from_log(&self, batches: &[BatchMeta], out: &mut BytesMut) -> Result<(), ReadBackError> {
        let (Some(first), Some(last)) = (batches.first(), batches.last()) else { return Ok(()) };
        let want: usize = batches.iter().map(|b| b.bytes_len as usize).sum();
        let start_len = out.len();
        let mut offset = first.base.0;
        while offset < last.end().0 {
            let left = u32::try_from(want - (out.len() - start_len)).unwrap_or(u32::MAX);
            let read = self.log.read(offset, left.max(1)).await?;
            if read.chunks.is_empty() {
                return Err(ReadBackError::Missing(offset));
            }
            for chunk in &read.chunks {
                out.extend_from_slice(&chunk.to_bytes().await.map_err(crate::log::ReadError::Io)?);
            }
            offset = read.next_offset;
        }
        Ok(())
    }
}

/// Rebuilds the chain core from the log's stored batches and the epoch checkpoint.
async fn recover_core(
    me: NodeId,
    log: &PartitionLog,
    dir: &std::path::Path,
    epoch_min: Epoch,
) -> Result<(ChainReplica, EpochFile), ReplicationError> {
    let recovery = |reason: String| ReplicationError::Recovery(format!("{}: {reason}", dir.display()));
    let (start, end) = (log.log_start_offset(), log.log_end_offset());
    let mut epochs = EpochFile::load(log.storage(), dir, end).await.map_err(|e| recovery(e.to_string()))?;
    if start > 0 && start == end {
        // An empty log above 0 (a reset, or everything retained away): entries left by a
        // crash between a reset's two steps would describe the dropped log, so forget
        // them all; the epoch ending at the start is then unknown (the start matches by
        // offset, see `LogIndex`; at worst a successor is reset once more).
        let at = Position { offset: Offset(start), epoch: Epoch(0) };
        epochs.reset(at).await.map_err(|e| recovery(e.to_string()))?;
    }
    let stored = match end {
        0 => Vec::new(),
        _ => log.stored_batches().await.map_err(|e| recovery(e.to_string()))?,
    };
    let metas = epochs.batch_metas(&stored).map_err(|e| recovery(e.to_string()))?;
    let at = Position { offset: Offset(start), epoch: epochs.start_epoch(start) };
    let core = ChainReplica::recover_at(me, ChainLimits::default(), at, &metas, epoch_min)?;
    if core.log().end().0 != end {
        return Err(recovery(format!("batches end at {} but the log ends at {end}", core.log().end().0)));
    }
    Ok((core, epochs))
}

/// Splits a produce payload into whole batches (structure only; the log checks CRCs).
fn split_batches(payload: &Bytes) -> Result<Vec<(BatchHeader, Bytes)>, ReplicationError> {
    BatchHeaders::new(payload)
        .map(|walked| walked.map(|(header, range)| (header, payload.slice(range))))
        .collect::<Result<_, _>>()
        .map_err(|e| ReplicationError::Payload(e.to_string()))
}

/// Why the bytes of batches to send could not be read back.
#[derive(Debug, thiserror::Error)]
enum ReadBackError {
    #[error(transparent)]
    Read(#[from] crate::log::ReadError),
    #[error("the log has nothing at {0}")]
    Missing(u64),
    #[error("read {read} bytes for batches of {want}")]
    Length { read: usize, want: usize },
}

/// Client batches the chain core took (see [`ReplicatedPartition::submit`]).
#[must_use = "the batches are acknowledged only once `acked` returned"]
pub struct Submitted {
    base_offset: u64,
    receivers: Vec<flume::Receiver<Result<Offset, ChainError>>>,
}

impl Submitted {
    /// The offset the first batch took.
    pub fn base_offset(&self) -> u64 {
        self.base_offset
    }

    /// Waits for every batch's acknowledgement (per the `acks` it was submitted with);
    /// returns the base offset of the first.
    pub async fn acked(self) -> Result<u64, ReplicationError> {
        for rx in self.receivers {
            rx.recv_async().await.map_err(|_| ReplicationError::Stopped)??;
        }
        Ok(self.base_offset)
    }
}

async fn run_worker(this: Weak<ReplicatedPartition>, wake: flume::Receiver<()>) {
    while wake.recv_async().await.is_ok() {
        loop {
            let Some(part) = this.upgrade() else { return };
            if part.broken.get() {
                return;
            }
            let Some(work) = part.take_work() else { break };
            part.execute(work).await;
        }
    }
}

/// Sleeps until the core's next deadline (or until `drain` reports an earlier one) and
/// drives its timeouts; with no deadline it waits for one. Calling the core early is
/// harmless: `handle_timeout` acts only on deadlines that passed.
async fn run_ticker(this: Weak<ReplicatedPartition>, wake: flume::Receiver<()>) {
    loop {
        let (wait, clock) = {
            let Some(part) = this.upgrade() else { return };
            if part.broken.get() {
                return;
            }
            let next = part.core.borrow().poll_timeout();
            part.armed.set(next);
            (next.map(|at| at.saturating_sub(part.now_ms())), part.clock.clone())
        };
        match wait {
            None => {
                if wake.recv_async().await.is_err() {
                    return;
                }
                continue;
            }
            Some(0) => {}
            Some(ms) => {
                let sleep = clock.sleep_ms(ms);
                let woken = async {
                    let _ = wake.recv_async().await;
                };
                futures_lite::future::or(sleep, woken).await;
            }
        }
        let Some(part) = this.upgrade() else { return };
        if part.broken.get() {
            return;
        }
        let now = part.now_ms();
        part.core.borrow_mut().handle_timeout(now);
        part.drain();
    }
}
