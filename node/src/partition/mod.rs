//! One partition as its owner shard holds it — the same type on a single node and in a
//! cluster: the log, the idempotent-producer table, the notify that wakes long-polling
//! fetches, and how appends are made durable ([`Replication`]: the local log alone, or a
//! chain of replicas).
//!
//! The produce path is two steps with a type between them. [`Partition::append`] runs
//! synchronously: it walks the batch headers, checks idempotent sequences, reserves
//! offsets (the log's [`Reservation`] or the chain core's [`Submitted`]) and enters the
//! batches in the producer table — so appends are sequenced in call order by
//! construction, and no lock is held across a write or an fdatasync. [`Appending::outcome`]
//! then waits for durability (the fsync policy, or the chain's `acks`).
//!
//! Reads are served up to [`Partition::readable_end`]: the log end locally, the chain's
//! committed offset on a replica (a batch straddling it is held back), so a consumer never
//! sees a record the chain may still lose.
//!
//! Lifecycle: opened by the owner shard (at start, on topic creation, or when the cluster
//! view puts this node in the partition's chain), used by any number of tasks of that shard,
//! retired and closed at shutdown or deleted with its topic. `!Send`: never leaves its shard.
//!
//! Invariants: a produce's offsets are reserved in its synchronous step (asserted against
//! the log end), and the producer table names only reserved batches; offsets below
//! `readable_end` never change; a failed write of the log (EIO and the like) stops the node
//! on both paths (`fatal`).

pub mod producers;

use std::cell::Cell;
use std::rc::{Rc, Weak};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use strand_core::chain::{Acks as ChainAcks, Epoch, Offset, Role};
use strand_wire::batch::BatchHeaders;
use strand_wire::msg::{Acks, OffsetSpec};
use strand_wire::ErrorCode;

use crate::log::{AppendError, PartitionLog, ReadChunk, Reservation};
use crate::notify::LocalNotify;
use crate::replication::partition::Submitted;
use crate::replication::{Peers, ReplicatedPartition};
use producers::{producer_batches, recover_producers, refuse, ProduceRefusal, Producers, HEAD_REBUILD_WAIT};

/// The producer-table term of a local partition (it has no epochs; an invalid table is
/// rebuilt for the same term).
const LOCAL_TERM: u64 = 0;
/// How often a duplicate waiting for its original to commit rechecks the replica's role.
const DUPLICATE_RECHECK: Duration = Duration::from_millis(10);

/// What a successful (or deduplicated) produce to one partition did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProduceOutcome {
    /// `None`, or `DuplicateSequence` for an idempotent retry (nothing appended).
    pub code: ErrorCode,
    pub base_offset: Offset,
    pub record_count: u32,
}

/// How a partition's appends become durable.
pub enum Replication {
    /// The local log alone (a single node).
    Local(Local),
    /// A chain of replicas; this node's replica (cluster mode).
    Chain(Chain),
}

/// A local partition's append bookkeeping.
pub struct Local {
    /// Every offset below this is stored as the fsync policy promises (an append ending
    /// here completed; the log writes and syncs in offset order).
    stored_end: Cell<u64>,
    /// End offset of the newest idempotent batch entered in the producer table. If the log's
    /// end falls below it, the log gave back offsets of a failed write that the table names.
    idempotent_end: Cell<u64>,
}

/// A replicated partition's replica and its address book.
pub struct Chain {
    pub replica: Rc<ReplicatedPartition>,
    pub peers: Rc<Peers>,
}

/// Offsets of a partition as its owner reports them (metadata, describe).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartitionOffsets {
    pub log_start: Offset,
    /// The end of the local log (offsets reserved included).
    pub log_end: Offset,
    /// Everything below is committed: readable and acknowledged as `acks=all`.
    pub commit: Offset,
    /// The chain epoch (0 on a local partition).
    pub epoch: Epoch,
}

/// Whole batches read for a fetch, below the partition's readable end.
pub struct Read {
    pub log_start_offset: Offset,
    pub readable_end: Offset,
    pub bytes_len: u32,
    pub chunks: Vec<ReadChunk>,
}

/// A partition owned by this shard. See the module doc.
pub struct Partition {
    topic: String,
    partition: u32,
    log: Rc<PartitionLog>,
    /// Notified whenever `readable_end` may have advanced, and after every local append
    /// that completed (stored or failed).
    progressed: Rc<LocalNotify>,
    producers: Producers,
    replication: Replication,
    /// Set when the shard stops serving this partition (shutdown, deletion, a new replica).
    retired: Cell<bool>,
    /// Bytes [`Partition::read`] returned to fetchers since open (the console's fetch rate).
    bytes_read: Cell<u64>,
    /// This partition, for the tasks it spawns (weak: they never keep it open).
    me: Weak<Partition>,
}

impl Partition {
    /// A local partition over an opened log; its producer table is rebuilt from the log's
    /// tail. A failed scan is logged and leaves the table empty, never fails the open.
    pub async fn open_local(topic: String, partition: u32, log: PartitionLog) -> Rc<Self> {
        let end = log.log_end_offset();
        let local = Local { stored_end: Cell::new(end), idempotent_end: Cell::new(0) };
        let part = Partition::new(topic, partition, Rc::new(log), Replication::Local(local));
        let table = match recover_producers(&part.log).await {
            Ok(table) => table,
            Err(e) => {
                tracing::warn!(topic = %part.topic, partition, error = %e, "producer state not recovered");
                Default::default()
            }
        };
        if !table.is_empty() {
            tracing::debug!(topic = %part.topic, partition, producers = table.len(), "producer state recovered");
        }
        part.producers.install(LOCAL_TERM, table);
        part
    }

    /// A replicated partition over a started replica (its log is the replica's). Its
    /// producer table is rebuilt whenever the replica heads a new epoch.
    pub fn chained(topic: String, partition: u32, replica: Rc<ReplicatedPartition>, peers: Rc<Peers>) -> Rc<Self> {
        let log = replica.log().clone();
        let part = Partition::new(topic, partition, log, Replication::Chain(Chain { replica, peers }));
        let wake = part.progressed.clone();
        if let Replication::Chain(chain) = &part.replication {
            chain.replica.set_progress_hook(Box::new(move || wake.notify_all()));
        }
        part
    }

    fn new(topic: String, partition: u32, log: Rc<PartitionLog>, replication: Replication) -> Rc<Self> {
        Rc::new_cyclic(|me| Partition {
            topic,
            partition,
            log,
            progressed: Rc::new(LocalNotify::default()),
            producers: Producers::new(),
            replication,
            retired: Cell::new(false),
            bytes_read: Cell::new(0),
            me: me.clone(),
        })
    }

    pub fn topic(&self) -> &str {
        &self.topic
    }

    pub fn partition(&self) -> u32 {
        self.partition
    }

    /// The local log (shared with the replica in cluster mode).
    pub fn log(&self) -> &Rc<PartitionLog> {
        &self.log
    }

    /// How appends become durable.
    pub fn replication(&self) -> &Replication {
        &self.replication
    }

    /// The chain replica, in cluster mode.
    pub fn replica(&self) -> Option<&Rc<ReplicatedPartition>> {
        match &self.replication {
            Replication::Chain(chain) => Some(&chain.replica),
            Replication::Local(_) => None,
        }
    }

    /// Notified whenever [`Partition::readable_end`] may have advanced.
    pub fn progressed(&self) -> &Rc<LocalNotify> {
        &self.progressed
    }

    /// Whether this node takes produces for the partition (a chain head, or local).
    pub fn takes_produce(&self) -> bool {
        self.replica().is_none_or(|r| matches!(r.role(), Role::Head | Role::Single))
    }

    /// Stops serving: duplicates waiting for their original are answered, fetches woken.
    pub fn retire(&self) {
        self.retired.set(true);
        self.progressed.notify_all();
    }

    /// Whether the producer table remembers `producer_id`.
    pub fn knows_producer(&self, producer_id: i64) -> bool {
        self.producers.knows(producer_id)
    }

    /// `NOT_OWNER` (retriable: the client re-routes) from a replica outside its chain — one
    /// restarted and not yet readmitted, removed, or fenced. Such a replica does not know the
    /// commit point: after a restart its `readable_end` is 0 whatever its log holds, so
    /// answering would tell a consumer the partition is empty (latest offset 0, high
    /// watermark 0) although committed records exist.
    fn check_serves_reads(&self) -> Result<(), ErrorCode> {
        match self.replica() {
            Some(r) if r.role() == Role::Outside => Err(ErrorCode::NotOwner),
            _ => Ok(()),
        }
    }

    /// Bytes returned by [`Partition::read`] since the partition was opened.
    pub fn bytes_read(&self) -> u64 {
        self.bytes_read.get()
    }

    /// Reads are served below this offset: the log end locally, the commit on a replica.
    pub fn readable_end(&self) -> Offset {
        match &self.replication {
            Replication::Local(_) => Offset(self.log.log_end_offset()),
            Replication::Chain(chain) => chain.replica.committed(),
        }
    }

    /// Start, end, commit and epoch.
    pub fn offsets(&self) -> PartitionOffsets {
        let log_start = Offset(self.log.log_start_offset());
        match &self.replication {
            Replication::Local(_) => {
                let end = Offset(self.log.log_end_offset());
                PartitionOffsets { log_start, log_end: end, commit: end, epoch: Epoch(0) }
            }
            Replication::Chain(chain) => PartitionOffsets {
                log_start,
                log_end: chain.replica.log_end(),
                commit: chain.replica.commit(),
                epoch: chain.replica.config().epoch,
            },
        }
    }

    /// Appends `payload` (one or more whole batches), de-duplicating idempotent retries.
    ///
    /// Everything that orders appends happens before this returns: the sequence check, the
    /// offset reservation and the producer-table entry. Awaiting the [`Appending`] only
    /// waits for durability, so calls are sequenced in the order they are made.
    pub fn append(self: &Rc<Self>, payload: Bytes, acks: Acks) -> Appending {
        let step = self.start_append(payload, acks).unwrap_or_else(Step::Refused);
        Appending { part: self.clone(), step }
    }

    fn start_append(&self, payload: Bytes, acks: Acks) -> Result<Step, ProduceRefusal> {
        if !self.takes_produce() {
            return Err(refuse(ErrorCode::NotOwner, "this replica is not the chain head"));
        }
        let batches = producer_batches(&payload)?;
        let record_count: u32 = batches.iter().map(|b| b.record_count).sum();
        let idempotent = batches.iter().any(|b| b.is_idempotent());
        self.note_given_back_offsets();
        if idempotent {
            let term = self.producer_term();
            if !self.producers.valid_for(term) {
                self.start_rebuild(term);
            }
            if let Some(base_offset) = self.producers.check(term, &batches)? {
                return Ok(Step::Duplicate { base_offset: Offset(base_offset), record_count });
            }
        }
        match &self.replication {
            Replication::Local(local) => {
                let before = self.log.log_end_offset();
                // Refused here: nothing was reserved or entered in the table.
                // The log stamps offsets into the bytes: take the payload's buffer over when
                // nothing else holds it (a large frame's payload, see `FrameDecoder::decode`).
                let bytes = payload.try_into_mut().unwrap_or_else(|shared| BytesMut::from(&shared[..]));
                let reservation = self.log.reserve(bytes).map_err(|e| self.append_failed(e, false))?;
                let info = reservation.info();
                assert!(
                    info.base_offset == before && info.log_end_offset == before + u64::from(record_count),
                    "a reservation takes the next {record_count} offsets at {before}, took {}..{}",
                    info.base_offset,
                    info.log_end_offset
                );
                if idempotent {
                    self.producers.enter(&batches, info.base_offset, info.log_end_offset);
                    local.idempotent_end.set(info.log_end_offset);
                }
                Ok(Step::Local { reservation, idempotent, record_count })
            }
            Replication::Chain(chain) => {
                // A full disk refuses here, before the chain takes the offsets (a replica
                // cannot refuse an append its chain already took: it stops the node).
                self.log.check_free_space(payload.len() as u64).map_err(|e| self.append_failed(e, false))?;
                let base_offset = chain.replica.log_end().0;
                let submitted = chain.replica.submit(payload, chain_acks(acks));
                if idempotent {
                    self.producers.enter(&batches, base_offset, chain.replica.log_end().0);
                }
                let submitted = submitted.map_err(|e| refuse(e.code(), e.to_string()))?;
                assert_eq!(submitted.base_offset(), base_offset, "the chain takes the next offsets");
                Ok(Step::Chain { submitted, record_count })
            }
        }
    }

    /// The term the producer table must be valid for now.
    fn producer_term(&self) -> u64 {
        match &self.replication {
            Replication::Local(_) => LOCAL_TERM,
            Replication::Chain(chain) => chain.replica.config().epoch.0,
        }
    }

    /// Starts rebuilding the producer table for `term` from the log in a task of its own
    /// (the produce that noticed is refused meanwhile); no-op if one already runs.
    fn start_rebuild(&self, term: u64) {
        if !self.producers.begin_rebuild(term) {
            return;
        }
        // Local: what is written (nothing idempotent is in flight). Chain: every batch the
        // core took so far, written or still being appended.
        let (end, wait) = match &self.replication {
            Replication::Local(_) => (self.log.log_end_offset(), None),
            Replication::Chain(chain) => (chain.replica.log_end().0, Some(HEAD_REBUILD_WAIT)),
        };
        if end == self.log.log_start_offset() {
            self.producers.install_empty(term);
            return;
        }
        tracing::warn!(topic = %self.topic, partition = self.partition, term, "rebuilding the producer state from the log");
        let log = self.log.clone();
        let replica = self.replica().map(Rc::downgrade);
        let me = self.me.clone();
        glommio::spawn_local(async move {
            let Some(part) = me.upgrade() else { return };
            let still_current = || match &replica {
                None => true,
                Some(weak) => weak
                    .upgrade()
                    .is_some_and(|r| r.config().epoch.0 == term && matches!(r.role(), Role::Head | Role::Single)),
            };
            part.producers.rebuild(&log, term, end, wait, still_current).await;
            part.progressed.notify_all();
        })
        .detach();
    }

    /// A failed local append: stops the node on a storage failure, otherwise marks the
    /// producer table invalid if it named this append (`in_table`), and refuses the call.
    fn append_failed(&self, e: AppendError, in_table: bool) -> ProduceRefusal {
        if crate::fatal::append_error_is_fatal(&e) {
            crate::fatal::stop_node(&self.topic, self.partition, &e);
        }
        if in_table {
            self.invalidate_producers("an idempotent append failed");
        }
        self.note_given_back_offsets();
        self.progressed.notify_all();
        refuse(e.code(), e.to_string())
    }

    /// A failed write makes the log give back the offsets of every append not yet written
    /// (they all fail, later appends reuse the offsets). If the table names any of them it
    /// is invalid. Called before every reservation, so no reservation can reuse such offsets
    /// while the table still names them.
    fn note_given_back_offsets(&self) {
        if let Replication::Local(local) = &self.replication {
            if self.log.log_end_offset() < local.idempotent_end.get() {
                local.idempotent_end.set(0);
                self.invalidate_producers("the log gave back offsets of a failed write");
            }
        }
    }

    fn invalidate_producers(&self, why: &str) {
        if self.producers.invalidate() {
            tracing::warn!(topic = %self.topic, partition = self.partition, why, "producer state stale; rebuilding");
        }
    }

    /// Waits until offsets below `end` are as durable as an append's answer promises: stored
    /// locally, or committed by the chain. Refuses if the producer table went invalid (the
    /// batch waited for may be one that failed) or the partition stopped being served here.
    async fn wait_durable(&self, end: Offset) -> Result<(), ProduceRefusal> {
        loop {
            let woken = self.progressed.listen();
            let reached = match &self.replication {
                Replication::Local(local) => local.stored_end.get() >= end.0,
                Replication::Chain(chain) => chain.replica.committed() >= end,
            };
            if reached {
                return Ok(());
            }
            if self.retired.get() || !self.takes_produce() {
                let message = "no longer the head while a duplicate waited for its original to commit";
                return Err(refuse(ErrorCode::NotOwner, message));
            }
            self.note_given_back_offsets();
            if !self.producers.valid_for(self.producer_term()) {
                return Err(refuse(ErrorCode::Throttled, "the original of this retry failed; retry"));
            }
            match &self.replication {
                Replication::Local(_) => woken.await,
                Replication::Chain(_) => {
                    futures_lite::future::or(woken, glommio::timer::sleep(DUPLICATE_RECHECK)).await;
                }
            }
        }
    }

    /// Reads whole batches from `offset`, at most `max_bytes` (at least one batch), below the
    /// readable end. `max_bytes == 0` or `offset` at the readable end read nothing; an offset
    /// between the readable end and the local log end (a replica's uncommitted tail) too.
    pub async fn read(&self, offset: Offset, max_bytes: u32) -> Result<Read, ErrorCode> {
        self.check_serves_reads()?;
        let end = self.readable_end();
        let mut out = Read {
            log_start_offset: Offset(self.log.log_start_offset()),
            readable_end: end,
            bytes_len: 0,
            chunks: Vec::new(),
        };
        if max_bytes == 0 || offset == end || (offset > end && offset.0 <= self.log.log_end_offset()) {
            return Ok(out);
        }
        let read = self.log.read(offset.0, max_bytes).await.map_err(|e| e.code())?;
        if read.next_offset <= end.0 {
            out.bytes_len = read.bytes_len;
            out.chunks = read.chunks;
            self.bytes_read.set(self.bytes_read.get() + u64::from(out.bytes_len));
            return Ok(out);
        }
        let prefix = readable_prefix(&read.chunks, end).await.map_err(|e| {
            tracing::warn!(topic = %self.topic, partition = self.partition, error = %e, "read failed");
            ErrorCode::StorageError
        })?;
        out.bytes_len = prefix.len() as u32;
        if !prefix.is_empty() {
            out.chunks = vec![ReadChunk::Memory(prefix)];
        }
        self.bytes_read.set(self.bytes_read.get() + u64::from(out.bytes_len));
        Ok(out)
    }

    /// The offset for a ListOffsets spec, and the timestamp found (-1 if none): earliest is
    /// the log start, latest the readable end, a timestamp the first readable record at or
    /// after it (else the readable end).
    pub async fn list_offset(&self, spec: OffsetSpec) -> Result<(Offset, i64), ErrorCode> {
        self.check_serves_reads()?;
        let end = self.readable_end();
        match spec {
            OffsetSpec::Earliest => Ok((Offset(self.log.log_start_offset()), -1)),
            OffsetSpec::Latest => Ok((end, -1)),
            OffsetSpec::Timestamp(ts) => match self.log.offset_for_timestamp(ts).await {
                Ok(Some((offset, timestamp))) if offset < end.0 => Ok((Offset(offset), timestamp)),
                Ok(_) => Ok((end, -1)),
                Err(e) => Err(e.code()),
            },
        }
    }

    /// Applies retention; a replica deletes only committed data. Returns segments deleted.
    pub async fn apply_retention(&self, now_ms: i64) -> Result<u32, crate::log::LogError> {
        match &self.replication {
            Replication::Local(_) => self.log.apply_retention(now_ms).await,
            Replication::Chain(chain) => chain.replica.apply_retention(now_ms).await,
        }
    }

    /// Deletes the closed segments ending at or below `offset` (a replica: committed data
    /// only). Returns the segments deleted.
    pub async fn delete_below(&self, offset: u64) -> Result<u32, crate::log::LogError> {
        match &self.replication {
            Replication::Local(_) => self.log.delete_below(offset, u64::MAX).await,
            Replication::Chain(chain) => chain.replica.delete_below(offset).await,
        }
    }
}

/// A produce in progress: offsets reserved, durability pending (see [`Partition::append`]).
/// Awaiting it is what writes and syncs a local append (the log's group commit runs in the
/// awaiting tasks), so every `Appending` must be awaited; a duplicate's answer waits for its
/// original's.
#[must_use = "an append is answered only by awaiting its outcome"]
pub struct Appending {
    part: Rc<Partition>,
    step: Step,
}

enum Step {
    Refused(ProduceRefusal),
    /// A retry of stored batches: answered once their original is durable.
    Duplicate {
        base_offset: Offset,
        record_count: u32,
    },
    Local {
        reservation: Reservation,
        idempotent: bool,
        record_count: u32,
    },
    Chain {
        submitted: Submitted,
        record_count: u32,
    },
}

impl Appending {
    /// Waits until the append is as durable as asked, and says where it landed.
    pub async fn outcome(self) -> Result<ProduceOutcome, ProduceRefusal> {
        let part = self.part;
        let done = |code, base_offset, record_count| ProduceOutcome { code, base_offset, record_count };
        match self.step {
            Step::Refused(refusal) => Err(refusal),
            Step::Duplicate { base_offset, record_count } => {
                part.wait_durable(Offset(base_offset.0 + u64::from(record_count))).await?;
                Ok(done(ErrorCode::DuplicateSequence, base_offset, record_count))
            }
            Step::Local { reservation, idempotent, record_count } => {
                let info = reservation.durable().await.map_err(|e| part.append_failed(e, idempotent))?;
                if let Replication::Local(local) = &part.replication {
                    local.stored_end.set(local.stored_end.get().max(info.log_end_offset));
                }
                part.progressed.notify_all();
                Ok(done(ErrorCode::None, Offset(info.base_offset), record_count))
            }
            Step::Chain { submitted, record_count } => {
                let base_offset = submitted.acked().await.map_err(|e| refuse(e.code(), e.to_string()))?;
                Ok(done(ErrorCode::None, Offset(base_offset), record_count))
            }
        }
    }
}

/// The chain's acknowledgement level for a wire `acks` (`none` still appends at the head).
fn chain_acks(acks: Acks) -> ChainAcks {
    match acks {
        Acks::All => ChainAcks::All,
        Acks::Leader | Acks::None => ChainAcks::Leader,
    }
}

/// The whole batches of `chunks` that end at or below `end` (copied).
async fn readable_prefix(chunks: &[ReadChunk], end: Offset) -> std::io::Result<Bytes> {
    let mut buf = BytesMut::new();
    for chunk in chunks {
        buf.extend_from_slice(&chunk.to_bytes().await?);
    }
    let keep = BatchHeaders::new(&buf)
        .map_while(Result::ok)
        .take_while(|(header, _)| header.next_offset() <= end.0)
        .last()
        .map_or(0, |(_, range)| range.end);
    buf.truncate(keep);
    Ok(buf.freeze())
}
