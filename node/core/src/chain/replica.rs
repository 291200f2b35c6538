//! [`ChainReplica`]: one partition replica's chain-replication state machine.
//!
//! Lifecycle: [`ChainReplica::new`] (fresh, empty log) or [`ChainReplica::recover`]
//! (from the batches of the durable log after a restart), then driven by the shell on
//! the partition's owning shard: `handle_config` (control plane), `handle_message`
//! (neighbours), `handle_client_append` (produces, head only), `handle_local_durable`
//! (fsync progress), `handle_timeout` when `poll_timeout` says so; after every call the
//! shell drains `poll_action`. Single-threaded; no IO, no clock.
//!
//! Invariants (asserted here, checked end to end by `tests/chain_sim.rs`):
//! - Within one epoch a replica that forwards data is synced (head, or matched with
//!   its predecessor), and its log is append-only from then on, so everything it sends
//!   in that epoch is consistent; only the first match of an epoch may cut its log.
//! - After the first match of an epoch `matched == log.end()`.
//! - Reports sent up and the head's commit only grow within an epoch; the commit offset
//!   and the served-reads offset never shrink in one incarnation.
//! - A restarted replica never acts in an epoch that existed when it restarted, so one
//!   `(epoch, offset)` names one batch and stale messages of a dead incarnation are
//!   fenced by epoch.
//! - `reads_up_to <= min(commit, durable)`: what consumers read from the local log is
//!   committed and already written there (a cut issued but not yet executed by the
//!   shell caps `durable`, so the cut suffix is never served as committed).
//! - `commit <= durable` at the head; acks=all complete at `commit`, acks=leader at the
//!   head's `durable` — so acks=leader data can be lost if the head dies before its
//!   successor has the data.

use std::collections::VecDeque;

use super::error::ChainError;
use super::log::LogIndex;
use super::msg::{Action, Msg};
use super::types::{Acks, BatchMeta, ChainConfig, ClientBatch, Epoch, NodeId, Offset, Position, RequestId, Role};
use super::ChainLimits;

/// The predecessor's view of its successor in the current epoch.
#[derive(Debug, Clone)]
struct Successor {
    node: NodeId,
    is_learner: bool,
    /// First offset not yet sent (a boundary of our log).
    next_send: Offset,
    /// The successor's log agrees with ours up to here (validated by position).
    acked: Offset,
    /// Durable on the successor and after it (validated by position).
    durable: Offset,
    /// The successor answered an `AppendOk` in this epoch.
    matched: bool,
    /// Where the last rejection made us resend from (until progress or a timeout).
    rewound_to: Option<Offset>,
    commit_sent: Offset,
    last_send_ms: u64,
    last_progress_ms: u64,
    /// Learner only: our durable offset when we synced in this epoch; every offset ever
    /// committed before this epoch lies below it.
    learner_floor: Option<Offset>,
    /// Learner only: its durable offset now bounds what we report up / commit.
    learner_included: bool,
    /// Monitoring only: a time at which everything our log held then was already durable
    /// on the successor (see [`ChainReplica::successor_lag`]).
    caught_up_ms: u64,
    /// Monitoring only: our log end and the time it was noted; once the successor's
    /// durable offset reaches it, that time becomes `caught_up_ms`.
    lag_mark: Option<(Offset, u64)>,
}

/// How far this replica's successor is behind it, for monitoring (the protocol never
/// reads it). `records` and `bytes` count this replica's log above what is durable on
/// the successor and every node after it; `since_caught_up_ms` is how long ago the
/// successor last held everything this replica held then (0 while it holds all now) — an
/// upper bound of the age of the oldest batch it lacks, at most about one
/// acknowledgement round above it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SuccessorLag {
    pub node: NodeId,
    pub is_learner: bool,
    pub records: u64,
    pub bytes: u64,
    pub since_caught_up_ms: u64,
}

#[derive(Debug, Clone, Copy)]
struct Pending {
    request_id: RequestId,
    end: Offset,
    acks: Acks,
}

/// One partition replica's chain state. See the module doc.
#[derive(Debug)]
pub struct ChainReplica {
    me: NodeId,
    limits: ChainLimits,
    config: ChainConfig,
    role: Role,
    /// Acts only in epochs above this (the epoch current when it restarted).
    epoch_min: Epoch,
    fenced: bool,
    log: LogIndex,
    durable: Offset,
    commit: Offset,
    reads_up_to: Offset,
    /// Prefix agreed with the predecessor in this epoch (`None` before the first match).
    matched: Option<Offset>,
    /// Largest value reported up (or committed, at the head) in this epoch.
    up_epoch: Offset,
    /// Last value actually sent up in this epoch.
    up_sent: Option<Offset>,
    succ: Option<Successor>,
    pending: VecDeque<Pending>,
    actions: VecDeque<Action>,
}

impl ChainReplica {
    /// A replica with an empty log that may act in any epoch.
    pub fn new(me: NodeId, limits: ChainLimits) -> ChainReplica {
        ChainReplica {
            me,
            limits,
            config: ChainConfig { epoch: Epoch(0), members: Vec::new(), learner: None },
            role: Role::Outside,
            epoch_min: Epoch(0),
            fenced: false,
            log: LogIndex::default(),
            durable: Offset(0),
            commit: Offset(0),
            reads_up_to: Offset(0),
            matched: None,
            up_epoch: Offset(0),
            up_sent: None,
            succ: None,
            pending: VecDeque::new(),
            actions: VecDeque::new(),
        }
    }

    /// A replica restarted from its durable log. `epoch_min` is the newest epoch the
    /// control plane had when the node came back: the replica stays `Outside` until a
    /// configuration with a larger epoch includes it (the controller must bump the
    /// epoch for a restarted node — its old incarnation's messages may still be in
    /// flight). `batches` must be contiguous; the log starts at the first one's base (a
    /// log whose committed prefix retention removed).
    pub fn recover(
        me: NodeId,
        limits: ChainLimits,
        batches: &[BatchMeta],
        epoch_min: Epoch,
    ) -> Result<ChainReplica, ChainError> {
        let start = batches.first().map_or(Position::ZERO, |b| Position { offset: b.base, epoch: Epoch(0) });
        ChainReplica::recover_at(me, limits, start, batches, epoch_min)
    }

    /// Like [`ChainReplica::recover`] for a log starting at `start` (needed when the log
    /// is empty above offset 0: reset to a predecessor's start, or all of it retained
    /// away). `start.epoch` may be `Epoch(0)` when unknown.
    pub fn recover_at(
        me: NodeId,
        limits: ChainLimits,
        start: Position,
        batches: &[BatchMeta],
        epoch_min: Epoch,
    ) -> Result<ChainReplica, ChainError> {
        let log =
            LogIndex::from_batches_at(start, batches).map_err(|_| ChainError::Invalid("recovered log has a gap"))?;
        let mut replica = ChainReplica::new(me, limits);
        replica.durable = log.end();
        replica.log = log;
        replica.epoch_min = epoch_min;
        Ok(replica)
    }

    /// This replica's node.
    pub fn node(&self) -> NodeId {
        self.me
    }
    /// Effective role in the current epoch (`Outside` when fenced or not allowed to act).
    pub fn role(&self) -> Role {
        if self.fenced {
            Role::Outside
        } else {
            self.role
        }
    }
    /// The newest configuration received.
    pub fn config(&self) -> &ChainConfig {
        &self.config
    }
    /// The local log's batch index.
    pub fn log(&self) -> &LogIndex {
        &self.log
    }
    /// The local durable offset (as reported by the shell, cut by truncations).
    pub fn durable(&self) -> Offset {
        self.durable
    }
    /// The commit offset this replica knows (may exceed its log end while catching up).
    pub fn commit(&self) -> Offset {
        self.commit
    }
    /// Everything below this is committed and durable in the local log (serve reads to it).
    pub fn reads_up_to(&self) -> Offset {
        self.reads_up_to
    }
    /// Prefix agreed with the predecessor in this epoch (`None` for the head, or before
    /// the first match).
    pub fn matched(&self) -> Option<Offset> {
        self.matched
    }
    /// Produces waiting for their acknowledgement.
    pub fn pending_count(&self) -> usize {
        self.pending.len()
    }

    /// The successor this replica feeds in the current epoch and how far behind it is
    /// (`None` without one). Costs a binary search.
    pub fn successor_lag(&self, now_ms: u64) -> Option<SuccessorLag> {
        let succ = self.succ.as_ref()?;
        let end = self.log.end();
        let durable = self.log.floor_boundary(succ.durable.min(end));
        let caught_up = succ.durable >= end;
        Some(SuccessorLag {
            node: succ.node,
            is_learner: succ.is_learner,
            records: end.0.saturating_sub(succ.durable.0),
            bytes: self.log.bytes_between(durable, end),
            since_caught_up_ms: if caught_up { 0 } else { now_ms.saturating_sub(succ.caught_up_ms) },
        })
    }

    /// Before our log grows: a successor holding all of it is caught up as of now.
    fn note_log_growth(&mut self, now_ms: u64) {
        let end = self.log.end();
        if let Some(succ) = self.succ.as_mut().filter(|s| s.durable >= end) {
            succ.caught_up_ms = now_ms;
        }
    }

    /// True when this replica (tail or single) has a learner that holds everything ever
    /// committed and whose durability already bounds the commit: the control plane may
    /// now promote it to tail with a new epoch.
    pub fn learner_in_sync(&self) -> bool {
        self.succ.as_ref().is_some_and(|s| s.is_learner && s.learner_included && s.durable >= self.up_epoch)
    }

    /// Retention removed every batch below boundary `start` from the local log. Only
    /// committed data served here may go: `start <= reads_up_to()`.
    pub fn handle_log_start(&mut self, now_ms: u64, start: Offset) -> Result<(), ChainError> {
        if start <= self.log.start().offset {
            return Ok(());
        }
        if start > self.reads_up_to || self.log.position_at(start).is_none() {
            return Err(ChainError::Invalid("retention beyond served reads or inside a batch"));
        }
        self.log.drop_before(start);
        // A successor that still needs the removed batches is reset (learners only).
        self.pump(now_ms);
        Ok(())
    }

    /// The next action for the shell, in order.
    pub fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    /// When to call [`ChainReplica::handle_timeout`] next (ms, same clock as `now_ms`).
    pub fn poll_timeout(&self) -> Option<u64> {
        let succ = self.succ.as_ref().filter(|_| self.may_forward())?;
        let retransmit = (succ.acked < succ.next_send).then_some(succ.last_progress_ms + self.limits.retransmit_ms);
        let heartbeat = self.successor_outstanding(succ).then_some(succ.last_send_ms + self.limits.heartbeat_ms);
        match (retransmit, heartbeat) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// A new configuration from the control plane. Older or equal epochs are ignored.
    pub fn handle_config(&mut self, now_ms: u64, config: ChainConfig) -> Result<(), ChainError> {
        if !config.is_valid() {
            return Err(ChainError::InvalidConfig);
        }
        if config.epoch <= self.config.epoch {
            return Ok(());
        }
        let was_head = matches!(self.role(), Role::Head | Role::Single);
        self.role = if config.epoch > self.epoch_min { config.role_of(self.me) } else { Role::Outside };
        self.config = config;
        self.fenced = false;
        if was_head && !matches!(self.role, Role::Head | Role::Single) {
            self.fail_pending(ChainError::Reconfigured);
        }
        self.matched = None;
        self.up_epoch = Offset(0);
        self.up_sent = None;
        self.succ = match self.role {
            Role::Head | Role::Middle | Role::Tail | Role::Single => self.config.successor_of(self.me).map(|node| {
                let is_learner = self.config.learner == Some(node);
                Successor::new(node, is_learner, self.log.end(), now_ms)
            }),
            Role::Learner | Role::Outside => None,
        };
        if matches!(self.role, Role::Head | Role::Single) {
            self.on_synced(now_ms);
        }
        self.progress(now_ms, false);
        Ok(())
    }

    /// A produce from a client (head only). Returns the base offset assigned to the
    /// batch; its acknowledgement comes later as [`Action::AckClient`].
    pub fn handle_client_append(&mut self, now_ms: u64, batch: ClientBatch, acks: Acks) -> Result<Offset, ChainError> {
        if self.fenced {
            return Err(ChainError::Fenced);
        }
        if !matches!(self.role, Role::Head | Role::Single) {
            return Err(ChainError::NotHead { role: self.role });
        }
        if batch.record_count == 0 || batch.bytes_len == 0 {
            return Err(ChainError::Invalid("empty batch"));
        }
        let uncommitted = self.log.bytes_between(self.commit.min(self.log.end()), self.log.end());
        if self.pending.len() >= self.limits.pending_acks_max || uncommitted >= self.limits.uncommitted_bytes_max {
            return Err(ChainError::Throttled);
        }
        // Offsets are handed out above everything served or committed here.
        assert!(
            self.log.end() >= self.reads_up_to,
            "log end {:?} below served reads {:?}",
            self.log.end(),
            self.reads_up_to
        );
        assert!(self.log.end() >= self.commit, "head log end {:?} below its commit {:?}", self.log.end(), self.commit);
        let meta = BatchMeta {
            base: self.log.end(),
            record_count: batch.record_count,
            bytes_len: batch.bytes_len,
            epoch: self.config.epoch,
        };
        self.note_log_growth(now_ms);
        self.log.push(meta);
        self.actions.push_back(Action::AppendLocal { batches: vec![meta] });
        self.pending.push_back(Pending { request_id: batch.request_id, end: meta.end(), acks });
        self.progress(now_ms, false);
        Ok(meta.base)
    }

    /// The shell's log made everything below `offset` durable (fsync progress). The
    /// offset must describe the log after every truncation issued before it.
    pub fn handle_local_durable(&mut self, now_ms: u64, offset: Offset) {
        let offset = self.log.floor_boundary(offset.min(self.log.end()));
        if offset > self.durable {
            self.durable = offset;
            self.progress(now_ms, false);
        }
    }

    /// Retransmissions and heartbeats towards the successor.
    pub fn handle_timeout(&mut self, now_ms: u64) {
        if !self.may_forward() {
            return;
        }
        let Some(succ) = self.succ.as_mut() else { return };
        if succ.acked < succ.next_send && now_ms >= succ.last_progress_ms + self.limits.retransmit_ms {
            // Go back N: something was lost; resend everything unacknowledged.
            succ.next_send = succ.acked;
            succ.last_progress_ms = now_ms;
            succ.rewound_to = None;
            self.pump(now_ms);
        }
        let Some(succ) = self.succ.as_ref() else { return };
        if self.successor_outstanding(succ) && now_ms >= succ.last_send_ms + self.limits.heartbeat_ms {
            self.send_append(now_ms, succ.next_send, Vec::new());
        }
    }

    /// A message from a neighbour. Errors are malformed messages (log and drop them);
    /// everything else, stale epochs included, is handled and answered here.
    pub fn handle_message(&mut self, now_ms: u64, from: NodeId, msg: Msg) -> Result<(), ChainError> {
        let epoch = msg.epoch();
        if epoch < self.config.epoch {
            if !matches!(msg, Msg::Fenced { .. }) {
                self.send(from, Msg::Fenced { epoch: self.config.epoch });
            }
            return Ok(());
        }
        if epoch > self.config.epoch {
            self.actions.push_back(Action::ConfigStale { seen: epoch });
            self.fence();
            return Ok(());
        }
        if self.role() == Role::Outside {
            return Ok(());
        }
        let pred = self.config.predecessor_of(self.me);
        let succ = self.succ.as_ref().map(|s| s.node);
        match msg {
            Msg::Append { prev, batches, commit, .. } if pred == Some(from) => {
                self.on_append(now_ms, prev, batches, commit)
            }
            Msg::AppendOk { end, durable, .. } if succ == Some(from) => {
                self.on_append_ok(now_ms, end, durable);
                Ok(())
            }
            Msg::AppendRejected { retry_from, .. } if succ == Some(from) => {
                self.on_rejected(now_ms, retry_from);
                Ok(())
            }
            Msg::Reset { start, .. } if pred == Some(from) => self.on_reset(now_ms, start),
            Msg::Fenced { .. } => Ok(()),
            _ => Err(ChainError::Invalid("message from a node that is not our neighbour")),
        }
    }

    fn on_append(
        &mut self,
        now_ms: u64,
        prev: Position,
        batches: Vec<BatchMeta>,
        commit: Offset,
    ) -> Result<(), ChainError> {
        let mut at = prev.offset;
        for batch in &batches {
            if batch.base != at || batch.record_count == 0 {
                return Err(ChainError::Invalid("append batches are not contiguous"));
            }
            at = batch.end();
        }
        let msg_end = at;
        let Some(pred) = self.config.predecessor_of(self.me) else { return Ok(()) };
        if prev.offset > self.log.end() {
            let epoch = self.config.epoch;
            self.send(pred, Msg::AppendRejected { epoch, retry_from: self.log.end() });
            return Ok(());
        }
        if !self.log.matches(prev) {
            // The start always matches, so `prev.offset` is not our start (below it, the
            // floor is the start).
            let retry_from = self.log.floor_boundary(Offset(prev.offset.0.saturating_sub(1)));
            self.send(pred, Msg::AppendRejected { epoch: self.config.epoch, retry_from });
            return Ok(());
        }
        let first_match = self.matched.is_none();
        self.log.learn_start_epoch(prev);
        let mut appended = Vec::new();
        self.note_log_growth(now_ms);
        for batch in batches {
            if batch.base < self.log.end() {
                if self.log.batch_at(batch.base) == Some(&batch) {
                    continue;
                }
                // Comparison walks our boundaries from the matched `prev`, so `base` is one.
                self.truncate_local(batch.base);
            }
            self.log.push(batch);
            appended.push(batch);
        }
        if first_match && self.log.end() > msg_end {
            // Our log beyond the predecessor's is unconfirmed content of an older epoch.
            self.truncate_local(msg_end);
        }
        if !appended.is_empty() {
            self.actions.push_back(Action::AppendLocal { batches: appended });
        }
        self.matched = Some(self.matched.map_or(msg_end, |m| m.max(msg_end)));
        assert_eq!(self.matched, Some(self.log.end()), "after a match our log is the predecessor's prefix");
        self.commit = self.commit.max(commit);
        if first_match {
            self.on_synced(now_ms);
        }
        self.progress(now_ms, true);
        Ok(())
    }

    fn on_append_ok(&mut self, now_ms: u64, end: Position, durable: Position) {
        let end_valid = self.log.matches(end);
        let durable_valid = self.log.matches(durable);
        let Some(succ) = self.succ.as_mut() else { return };
        if end_valid {
            if end.offset > succ.acked || !succ.matched {
                succ.rewound_to = None;
            }
            if end.offset > succ.acked {
                succ.acked = end.offset;
                succ.last_progress_ms = now_ms;
            }
            succ.next_send = succ.next_send.max(succ.acked);
            succ.matched = true;
        }
        if durable_valid {
            succ.durable = succ.durable.max(durable.offset);
            succ.note_durable(self.log.end(), now_ms);
        }
        self.progress(now_ms, false);
    }

    fn on_rejected(&mut self, now_ms: u64, retry_from: Offset) {
        if retry_from < self.log.start().offset {
            let stale = self.succ.as_ref().is_none_or(|s| s.matched && retry_from < s.acked);
            if !stale {
                self.send_reset(now_ms);
            }
            return;
        }
        let resend_from = self.log.floor_boundary(retry_from.min(self.log.end()));
        let Some(succ) = self.succ.as_mut() else { return };
        // One rewind per point: a pipelined window past a gap draws one rejection per
        // message, and answering each with a new window would multiply traffic.
        let redundant = if succ.matched {
            resend_from < succ.acked || resend_from >= succ.next_send || succ.rewound_to == Some(resend_from)
        } else {
            // Before the first match the walk back only goes down.
            succ.rewound_to.is_some_and(|r| resend_from >= r)
        };
        if redundant {
            return;
        }
        succ.rewound_to = Some(resend_from);
        succ.next_send = resend_from;
        succ.acked = succ.acked.min(resend_from);
        succ.last_progress_ms = now_ms;
        if resend_from == self.log.end() {
            self.send_append(now_ms, resend_from, Vec::new());
        }
        self.pump(now_ms);
    }

    /// Recomputes commit / reports / reads after any change, completes produces and
    /// sends what the window allows. `reply` forces an answer to the predecessor.
    fn progress(&mut self, now_ms: u64, reply: bool) {
        self.include_learner();
        if let Some(value) = self.chain_durable() {
            self.up_epoch = value;
            match self.role {
                Role::Head | Role::Single => self.commit = self.commit.max(value),
                Role::Middle | Role::Tail | Role::Learner => {
                    if reply || self.up_sent.is_none_or(|sent| value > sent) {
                        self.report_up(value);
                    }
                }
                Role::Outside => {}
            }
        }
        self.complete_pending();
        let synced_end = match self.role {
            Role::Head | Role::Single => Some(self.log.end()),
            _ => self.matched,
        };
        if let Some(end) = synced_end {
            // Served reads come from the shell's log file, which executes truncations and
            // appends after the core issued them: below the local durable offset it holds
            // exactly this index (durability reported after an issued cut is bounded by
            // the cut), above it it may still hold a cut suffix or nothing yet.
            let reads = self.commit.min(end).min(self.durable);
            // Nothing at or above the start is readable yet while `reads <= start`; and
            // after a reset the file may still hold the dropped log below the start.
            if reads > self.reads_up_to && reads > self.log.start().offset {
                self.reads_up_to = reads;
                self.actions.push_back(Action::ServeReadsUpTo { offset: reads });
            }
        }
        self.pump(now_ms);
    }

    /// Offset durable on this replica and every chain member after it, never below what
    /// was already reported in this epoch. `None` while not synced in this epoch.
    fn chain_durable(&self) -> Option<Offset> {
        if self.fenced {
            return None;
        }
        let own = match self.role {
            Role::Head | Role::Single => self.durable,
            Role::Middle | Role::Tail | Role::Learner => self.durable.min(self.matched?),
            Role::Outside => return None,
        };
        let downstream = self.succ.as_ref().filter(|s| !s.is_learner || s.learner_included).map(|s| s.durable);
        Some(downstream.map_or(own, |d| own.min(d)).max(self.up_epoch))
    }

    fn include_learner(&mut self) {
        if let Some(succ) = self.succ.as_mut() {
            if succ.is_learner && !succ.learner_included && succ.learner_floor.is_some_and(|f| succ.durable >= f) {
                succ.learner_included = true;
            }
        }
    }

    fn report_up(&mut self, value: Offset) {
        let (Some(pred), Some(matched)) = (self.config.predecessor_of(self.me), self.matched) else { return };
        let (Some(end), Some(durable)) = (self.log.position_at(matched), self.log.position_at(value)) else {
            return;
        };
        self.up_sent = Some(value);
        self.send(pred, Msg::AppendOk { epoch: self.config.epoch, end, durable });
    }

    fn complete_pending(&mut self) {
        let (commit, durable) = (self.commit, self.durable);
        let mut index = 0;
        while index < self.pending.len() {
            let p = self.pending[index];
            let done = match p.acks {
                Acks::All => p.end <= commit,
                Acks::Leader => p.end <= durable,
            };
            if done {
                self.pending.remove(index);
                let offset = Offset(p.end.0 - 1);
                let base = self.log.floor_boundary(offset);
                self.actions.push_back(Action::AckClient { request_id: p.request_id, offset: base });
            } else {
                index += 1;
            }
        }
    }

    /// Sends new batches to the successor while the in-flight window allows.
    fn pump(&mut self, now_ms: u64) {
        if !self.may_forward() {
            return;
        }
        loop {
            let Some(succ) = self.succ.as_ref() else { return };
            if succ.next_send < self.log.start().offset {
                self.send_reset(now_ms);
                continue;
            }
            let in_flight = self.log.bytes_between(succ.acked, succ.next_send);
            if succ.next_send >= self.log.end() || in_flight >= self.limits.in_flight_bytes_max {
                return;
            }
            let from = succ.next_send;
            let batches =
                self.log.slice_from(from, self.limits.append_bytes_max, self.limits.append_batches_max).to_vec();
            assert!(!batches.is_empty(), "next_send is a boundary below the log end");
            self.send_append(now_ms, from, batches);
        }
    }

    fn send_append(&mut self, now_ms: u64, from: Offset, batches: Vec<BatchMeta>) {
        let Some(prev) = self.log.position_at(from) else { return };
        let Some(succ) = self.succ.as_mut() else { return };
        if let Some(last) = batches.last() {
            succ.next_send = last.end();
        }
        succ.last_send_ms = now_ms;
        succ.commit_sent = self.commit;
        let node = succ.node;
        let msg = Msg::Append { epoch: self.config.epoch, prev, batches, commit: self.commit };
        self.send(node, msg);
    }

    /// The successor needs batches below our log start: it must drop its log and
    /// continue from the start. Until it answers, it agrees with nothing.
    fn send_reset(&mut self, now_ms: u64) {
        let start = self.log.start();
        let Some(succ) = self.succ.as_mut() else { return };
        succ.next_send = start.offset;
        succ.acked = start.offset;
        succ.durable = succ.durable.min(start.offset);
        succ.matched = false;
        succ.rewound_to = None;
        succ.last_send_ms = now_ms;
        succ.last_progress_ms = now_ms;
        let node = succ.node;
        self.send(node, Msg::Reset { epoch: self.config.epoch, start });
    }

    /// A reset from the predecessor: drop the whole log unless it already matched in this
    /// epoch up to at least `start` (a stale reset). Dropping is always safe for a learner
    /// (its data counts for nothing yet) and needed when it ends below `start` or cannot
    /// be matched at `start` (a predecessor restarted after retention does not know the
    /// epoch ending at its start).
    fn on_reset(&mut self, now_ms: u64, start: Position) -> Result<(), ChainError> {
        if self.role != Role::Learner {
            return Err(ChainError::Invalid("reset of a chain member"));
        }
        let Some(pred) = self.config.predecessor_of(self.me) else { return Ok(()) };
        if self.matched.is_some_and(|m| m >= start.offset) {
            self.progress(now_ms, true);
            return Ok(());
        }
        if self.log.start().offset >= start.offset {
            // Already reset to this start: ask for data from our end.
            self.send(pred, Msg::AppendRejected { epoch: self.config.epoch, retry_from: self.log.end() });
            return Ok(());
        }
        self.log = LogIndex::from_batches_at(start, &[]).expect("an empty log is contiguous");
        self.durable = start.offset;
        self.matched = None;
        self.up_epoch = Offset(0);
        self.up_sent = None;
        self.actions.push_back(Action::ResetLocal { start });
        self.send(pred, Msg::AppendRejected { epoch: self.config.epoch, retry_from: start.offset });
        Ok(())
    }

    fn send(&mut self, to: NodeId, msg: Msg) {
        self.actions.push_back(Action::Send { to, msg });
    }

    fn truncate_local(&mut self, to: Offset) {
        assert!(to < self.log.end());
        assert!(!matches!(self.role, Role::Head | Role::Single), "a head never cuts its own log");
        self.log.truncate(to);
        self.durable = self.durable.min(to);
        self.matched = self.matched.map(|m| m.min(to));
        self.actions.push_back(Action::TruncateLocal { to });
    }

    /// First moment in this epoch at which this replica's log is authoritative (head) or
    /// agreed with its predecessor: start feeding the successor.
    fn on_synced(&mut self, now_ms: u64) {
        let durable = self.durable;
        let end = self.log.end();
        if let Some(succ) = self.succ.as_mut() {
            succ.next_send = end;
            succ.acked = end;
            succ.last_progress_ms = now_ms;
            if succ.is_learner {
                succ.learner_floor = Some(durable);
            }
            // Probe: the successor answers with a match or where it wants data from.
            self.send_append(now_ms, end, Vec::new());
        }
    }

    fn fence(&mut self) {
        if !self.fenced {
            self.fenced = true;
            self.fail_pending(ChainError::Fenced);
        }
    }

    fn fail_pending(&mut self, error: ChainError) {
        while let Some(p) = self.pending.pop_front() {
            self.actions.push_back(Action::FailClient { request_id: p.request_id, error });
        }
    }

    fn may_forward(&self) -> bool {
        !self.fenced && (matches!(self.role, Role::Head | Role::Single) || self.matched.is_some())
    }

    /// The successor still owes us something (a match, data, durability, commit news).
    fn successor_outstanding(&self, succ: &Successor) -> bool {
        !succ.matched || succ.acked < self.log.end() || succ.durable < self.log.end() || succ.commit_sent < self.commit
    }
}

impl Successor {
    fn new(node: NodeId, is_learner: bool, log_end: Offset, now_ms: u64) -> Successor {
        Successor {
            node,
            is_learner,
            next_send: log_end,
            acked: log_end,
            durable: Offset(0),
            matched: false,
            rewound_to: None,
            commit_sent: Offset(0),
            last_send_ms: now_ms,
            last_progress_ms: now_ms,
            learner_floor: None,
            learner_included: false,
            caught_up_ms: now_ms,
            lag_mark: None,
        }
    }

    /// Monitoring: after `durable` moved, with our log ending at `end` now.
    fn note_durable(&mut self, end: Offset, now_ms: u64) {
        if self.durable >= end {
            self.caught_up_ms = now_ms;
            self.lag_mark = None;
            return;
        }
        match self.lag_mark {
            Some((marked_end, marked_ms)) if self.durable >= marked_end => {
                self.caught_up_ms = self.caught_up_ms.max(marked_ms);
                self.lag_mark = Some((end, now_ms));
            }
            Some(_) => {}
            None => self.lag_mark = Some((end, now_ms)),
        }
    }
}
