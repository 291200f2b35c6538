//! One partition as its owner shard holds it: the log, the watchers that wake
//! long-polling fetches, and the idempotent-producer sequence table.
//!
//! Lifecycle: opened by the owner shard at start or on topic creation, used by
//! any number of tasks of that shard concurrently, closed at shutdown or deleted
//! with its topic. `!Send`: never leaves its shard.
//!
//! Invariant: a produce call checks its idempotent batches' sequences, enters them in the
//! producer table and takes its offsets from the log in one synchronous step (its first
//! poll), so calls are sequenced in the order they are first polled and no lock is held
//! across a write or fdatasync. The table runs ahead of the disk: a retry of a batch still
//! being written waits until it is stored; a failed append the table names makes the table
//! stale (idempotent batches refused with `THROTTLED`) until it is rebuilt from the log.
//!
//! Restart: [`Partition::open`] rebuilds the producer table from the batch headers of
//! the log's tail (about [`PRODUCER_SCAN_BYTES`]), so a retry that crosses a restart is
//! still recognised as a duplicate. A producer whose last batches lie further back than
//! that scan is forgotten, as before (its next batch is accepted whatever its sequence).
//!
//! Chain heads: a replicated partition's head keeps a [`HeadProducers`] table with the same
//! check ([`check_sequences`]) and the same ordering argument (checked and entered in the
//! first poll, before the chain core takes offsets). It is valid for one chain epoch and is
//! rebuilt from the log tail — by the same scan as on open ([`scan_producers`]) — whenever
//! the replica heads a new epoch; the log holds producer id/epoch/sequence in every batch
//! header, so a new head knows every batch its predecessor forwarded to it.

use std::cell::{Cell, RefCell};
use std::collections::{HashMap, VecDeque};
use std::rc::Rc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use strand_core::producer::{ProducerBatch, ProducerTable, SequenceCheck, PRODUCER_BATCHES_REMEMBERED};
use strand_wire::batch::{BatchHeader, HEADER_LEN};
use strand_wire::ErrorCode;

use crate::notify::LocalNotify;
use crate::log::{PartitionLog, ReadError, ReadResult};

/// Log-tail bytes (estimated from the average record size) scanned on open to rebuild
/// the idempotent-producer table.
pub const PRODUCER_SCAN_BYTES: u64 = 4 << 20;
/// Bytes asked per read while scanning.
const SCAN_READ_BYTES: u32 = 1 << 20;
/// Pause between two looks at the log while a scan waits for an append to be written.
const SCAN_WRITTEN_POLL: Duration = Duration::from_millis(1);

/// What a successful (or deduplicated) produce to one partition did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProduceOutcome {
    /// `None`, or `DuplicateSequence` for an idempotent retry (nothing appended).
    pub code: ErrorCode,
    pub base_offset: u64,
    pub record_count: u32,
}

/// A refused produce: the code and a message for the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProduceRefusal {
    pub code: ErrorCode,
    pub message: String,
}

fn refuse(code: ErrorCode, message: impl Into<String>) -> ProduceRefusal {
    ProduceRefusal { code, message: message.into() }
}

/// A partition owned by this shard.
pub struct Partition {
    pub topic: String,
    pub partition: u32,
    pub log: PartitionLog,
    /// Notified after every append that completed (stored or failed).
    pub appended: Rc<LocalNotify>,
    producers: RefCell<ProducerTable>,
    /// Whether `producers` can be trusted (see [`TableState`]).
    table_state: Cell<TableState>,
    /// End offset of the newest idempotent batch entered in `producers`. If the log's end
    /// falls below it, the log gave back offsets of a failed write that the table names.
    idempotent_end: Cell<u64>,
    /// Every offset below this is stored as the fsync policy promises (an append ending
    /// here completed; the log writes and syncs in offset order).
    stored_end: Cell<u64>,
}

/// Whether the producer table matches the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TableState {
    Valid,
    /// An append the table names failed: idempotent batches are refused until rebuilt.
    Stale,
    /// Being rebuilt from the log tail by one produce call.
    Rebuilding,
}

impl Partition {
    /// Wraps an opened log.
    pub fn new(topic: String, partition: u32, log: PartitionLog) -> Self {
        let end = log.log_end_offset();
        Partition {
            topic,
            partition,
            log,
            appended: Rc::new(LocalNotify::default()),
            producers: RefCell::new(ProducerTable::new()),
            table_state: Cell::new(TableState::Valid),
            idempotent_end: Cell::new(0),
            stored_end: Cell::new(end),
        }
    }

    /// Wraps an opened log and rebuilds the producer table from its tail. A failed scan is
    /// logged and leaves the table empty (the behaviour without recovery), never fails the open.
    pub async fn open(topic: String, partition: u32, log: PartitionLog) -> Self {
        let part = Partition::new(topic, partition, log);
        match recover_producers(&part.log).await {
            Ok(table) => {
                if !table.is_empty() {
                    tracing::debug!(topic = %part.topic, partition, producers = table.len(), "producer state recovered");
                }
                *part.producers.borrow_mut() = table;
            }
            Err(e) => tracing::warn!(topic = %part.topic, partition, error = %e, "producer state not recovered"),
        }
        part
    }

    /// Whether the producer table remembers `producer_id`.
    pub fn knows_producer(&self, producer_id: u64) -> bool {
        self.producers.borrow().contains(producer_id)
    }

    /// Appends `payload` (one or more whole batches), deduplicating idempotent retries.
    ///
    /// Ordering: everything up to the log's offset reservation runs in this call's first poll
    /// (no await before it), and `PartitionLog::append` takes offsets at its first poll. So
    /// calls are sequenced — sequence-checked, entered in the table, given offsets — in the
    /// order they are first polled, and no lock is held across the write or the fdatasync:
    /// idempotent appends group-commit like plain ones.
    pub async fn produce(&self, payload: Bytes) -> Result<ProduceOutcome, ProduceRefusal> {
        let batches = producer_batches(&payload)?;
        let record_count: u32 = batches.iter().map(|b| b.record_count).sum();
        let idempotent = batches.iter().any(|b| b.producer_id != 0);
        self.note_given_back_offsets();
        if idempotent {
            if self.table_state.get() != TableState::Valid {
                return Err(self.rebuild_table().await);
            }
            if let Some(base_offset) = self.check_sequences(&batches)? {
                // A retry of a batch that may still be on its way to disk answers once it is.
                self.wait_stored(base_offset + u64::from(record_count)).await?;
                return Ok(ProduceOutcome { code: ErrorCode::DuplicateSequence, base_offset, record_count });
            }
        }
        let base_offset = self.log.log_end_offset();
        let mut append = std::pin::pin!(self.log.append(BytesMut::from(&payload[..])));
        let first = futures_lite::future::poll_once(&mut append).await;
        if let Some(Err(e)) = first {
            // Refused before taking offsets: nothing was reserved or entered in the table.
            return Err(self.append_failed(e, false));
        }
        let end = base_offset + u64::from(record_count);
        assert!(
            first.is_some() || self.log.log_end_offset() == end,
            "PartitionLog::append must take its offsets at its first poll"
        );
        if idempotent {
            self.enter_in_table(&batches, base_offset);
        }
        let result = match first {
            Some(result) => result,
            None => append.await,
        };
        let info = result.map_err(|e| self.append_failed(e, idempotent))?;
        assert_eq!(info.base_offset, base_offset, "offsets taken at the first poll");
        self.stored_end.set(self.stored_end.get().max(info.log_end_offset));
        self.appended.notify_all();
        Ok(ProduceOutcome { code: ErrorCode::None, base_offset, record_count })
    }

    /// Enters appended-to-be batches in the producer table at their reserved offsets.
    fn enter_in_table(&self, batches: &[ProducerBatch], base_offset: u64) {
        let mut table = self.producers.borrow_mut();
        let mut offset = base_offset;
        for batch in batches {
            table.record(batch, offset);
            offset += u64::from(batch.record_count);
        }
        self.idempotent_end.set(offset);
    }

    /// A failed append: stops the node on a storage failure, otherwise marks the producer
    /// table stale if it named this append (`in_table`), and refuses the call.
    fn append_failed(&self, e: crate::log::AppendError, in_table: bool) -> ProduceRefusal {
        if super::fatal::append_error_is_fatal(&e) {
            super::fatal::stop_node(&self.topic, self.partition, &e);
        }
        if in_table {
            self.mark_table_stale("an idempotent append failed");
        }
        self.note_given_back_offsets();
        self.appended.notify_all();
        refuse(e.code(), e.to_string())
    }

    /// A failed write makes the log give back the offsets of every append not yet written
    /// (they all fail, later appends reuse the offsets). If the table names any of them it
    /// is stale. Called before every reservation, so no reservation can reuse such offsets
    /// while the table still names them.
    fn note_given_back_offsets(&self) {
        if self.log.log_end_offset() < self.idempotent_end.get() {
            self.mark_table_stale("the log gave back offsets of a failed write");
        }
    }

    fn mark_table_stale(&self, why: &str) {
        if self.table_state.get() == TableState::Valid {
            tracing::warn!(topic = %self.topic, partition = self.partition, why, "producer state stale; rebuilding");
            self.table_state.set(TableState::Stale);
        }
        // A rebuild in progress reads the log as it is now, so it stays valid.
    }

    /// Rebuilds the stale table from the log (the truth) — or, if another call already is,
    /// leaves it to that one. Either way the caller's batch is refused with a retriable code;
    /// the producer resends its in-flight window in order afterwards.
    async fn rebuild_table(&self) -> ProduceRefusal {
        let busy = refuse(ErrorCode::Throttled, "producer state is being rebuilt after a failed append; retry");
        if self.table_state.get() != TableState::Stale {
            return busy;
        }
        self.table_state.set(TableState::Rebuilding);
        // Only plain batches are appended meanwhile (idempotent ones are refused), and only
        // written batches are read, so the table read here is what the log holds.
        let table = recover_producers(&self.log).await;
        let table = table.unwrap_or_else(|e| {
            tracing::warn!(topic = %self.topic, partition = self.partition, error = %e, "producer state not recovered");
            ProducerTable::new()
        });
        *self.producers.borrow_mut() = table;
        self.idempotent_end.set(0);
        self.table_state.set(TableState::Valid);
        self.appended.notify_all();
        busy
    }

    /// Waits until offsets below `end` are stored, or refuses if the table went stale (the
    /// batch being waited for may be one that failed).
    async fn wait_stored(&self, end: u64) -> Result<(), ProduceRefusal> {
        loop {
            let woken = self.appended.listen();
            if self.stored_end.get() >= end {
                return Ok(());
            }
            self.note_given_back_offsets();
            if self.table_state.get() != TableState::Valid {
                return Err(refuse(ErrorCode::Throttled, "the original of this retry failed; retry"));
            }
            woken.await;
        }
    }

    fn check_sequences(&self, batches: &[ProducerBatch]) -> Result<Option<u64>, ProduceRefusal> {
        check_sequences(&self.producers.borrow(), batches)
    }
}

/// Longest a chain head's producer-table rebuild waits for appends it must include to be
/// written locally (after that it gives up; the next produce starts it again).
pub const HEAD_REBUILD_WAIT: Duration = Duration::from_secs(3);

/// The idempotent-producer table of a replicated partition while this replica is its
/// chain head (see the module doc, "Chain heads").
///
/// Valid for one chain epoch: a replica that becomes head — or stays head into a new
/// epoch — refuses idempotent batches (`THROTTLED`, retriable) until
/// [`HeadProducers::rebuild`] read the table back from the log, every batch the chain
/// core had taken included. Within the epoch the head's log only grows, so entries made
/// at the core's offsets stay true.
#[derive(Default)]
pub struct HeadProducers {
    table: RefCell<ProducerTable>,
    /// The chain epoch the table was rebuilt for.
    valid_for: Cell<Option<u64>>,
    /// The epoch a rebuild is running for.
    rebuilding: Cell<Option<u64>>,
}

impl HeadProducers {
    /// An empty table, valid for no epoch yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Whether idempotent batches can be checked at `epoch` (else a rebuild is due).
    pub fn valid_for(&self, epoch: u64) -> bool {
        self.valid_for.get() == Some(epoch)
    }

    /// Whether a rebuild for `epoch` is running.
    pub fn rebuilding(&self, epoch: u64) -> bool {
        self.rebuilding.get() == Some(epoch)
    }

    /// `Some(base_offset)` if `batches` are a retry of batches already taken, `None` if
    /// they may be appended. Refuses out-of-order or mixed runs, and everything while the
    /// table is not valid for `epoch`.
    pub fn check(&self, epoch: u64, batches: &[ProducerBatch]) -> Result<Option<u64>, ProduceRefusal> {
        if !self.valid_for(epoch) {
            return Err(refuse(ErrorCode::Throttled, "the new head is rebuilding its producer state; retry"));
        }
        check_sequences(&self.table.borrow(), batches)
    }

    /// Enters the batches the chain took from `base_offset` on; only those ending at or
    /// below `taken_end` (the core's log end after taking them) were taken.
    pub fn enter(&self, batches: &[ProducerBatch], base_offset: u64, taken_end: u64) {
        let mut table = self.table.borrow_mut();
        let mut offset = base_offset;
        for batch in batches {
            let end = offset + u64::from(batch.record_count);
            if end > taken_end {
                break;
            }
            table.record(batch, offset);
            offset = end;
        }
    }

    /// Marks the table invalid and a rebuild for `epoch` running; false if one already is.
    /// Call synchronously before spawning [`HeadProducers::rebuild`], so one runs per epoch.
    pub fn begin_rebuild(&self, epoch: u64) -> bool {
        if self.rebuilding(epoch) {
            return false;
        }
        self.valid_for.set(None);
        self.rebuilding.set(Some(epoch));
        true
    }

    /// Installs an empty table for `epoch` at once: for a log that holds nothing yet there
    /// is nothing to scan (a new partition's first produce is not refused).
    pub fn install_empty(&self, epoch: u64) {
        *self.table.borrow_mut() = ProducerTable::new();
        self.rebuilding.set(None);
        self.valid_for.set(Some(epoch));
    }

    /// Forgets the table (the next produce starts a rebuild).
    pub fn invalidate(&self) {
        self.valid_for.set(None);
    }

    /// Rebuilds the table for `epoch` (begun with [`HeadProducers::begin_rebuild`]) from the
    /// batches below `end` — the chain core's log end when the rebuild began: every batch it
    /// took before, written or still in flight — and installs it if `still_head()` holds
    /// afterwards. Idempotent batches are refused meanwhile, so nothing the table should
    /// name is taken during the scan.
    pub async fn rebuild(&self, log: &PartitionLog, epoch: u64, end: u64, still_head: impl Fn() -> bool) {
        let scanned = scan_producers(log, end, Some(Instant::now() + HEAD_REBUILD_WAIT)).await;
        if self.rebuilding(epoch) {
            self.rebuilding.set(None);
        }
        match scanned {
            Ok((table, reached)) if reached == end && still_head() && self.rebuilding.get().is_none() => {
                tracing::debug!(epoch, end, producers = table.len(), "head producer state rebuilt");
                *self.table.borrow_mut() = table;
                self.valid_for.set(Some(epoch));
            }
            Ok((_, reached)) => tracing::debug!(epoch, end, reached, "head producer state not installed"),
            Err(e) => tracing::warn!(epoch, error = %e, "head producer state not rebuilt"),
        }
    }
}

/// The last [`PRODUCER_BATCHES_REMEMBERED`] batches of each producer seen in the log tail.
#[derive(Default)]
struct TailProducers {
    producers: HashMap<u64, Run>,
}

/// One producer's latest contiguous run in the log tail.
struct Run {
    epoch: u16,
    /// Batches with their base offsets, oldest first.
    batches: VecDeque<(ProducerBatch, u64)>,
    /// Base offset of the newest batch (recency, for the table's LRU order).
    last_offset: u64,
}

impl TailProducers {
    /// Adds one logged batch. The log is the truth: a batch that does not continue the
    /// producer's run (new epoch, or a gap left by an append before recovery existed)
    /// starts a new run, so the table fed from it is always contiguous.
    fn push(&mut self, batch: ProducerBatch, base_offset: u64) {
        if batch.producer_id == 0 {
            return;
        }
        let run = self.producers.entry(batch.producer_id).or_insert_with(|| Run {
            epoch: batch.producer_epoch,
            batches: VecDeque::with_capacity(PRODUCER_BATCHES_REMEMBERED),
            last_offset: base_offset,
        });
        let continues = run.epoch == batch.producer_epoch
            && run
                .batches
                .back()
                .is_none_or(|(b, _)| b.base_sequence.wrapping_add(b.record_count) == batch.base_sequence);
        if !continues {
            run.epoch = batch.producer_epoch;
            run.batches.clear();
        }
        if run.batches.len() == PRODUCER_BATCHES_REMEMBERED {
            run.batches.pop_front();
        }
        run.batches.push_back((batch, base_offset));
        run.last_offset = base_offset;
    }

    /// A table holding every run, fed least recently used first so eviction order survives.
    fn into_table(self) -> ProducerTable {
        let mut runs: Vec<_> = self.producers.into_values().collect();
        runs.sort_by_key(|run| run.last_offset);
        let mut table = ProducerTable::new();
        for run in runs {
            for (batch, offset) in run.batches {
                table.record(&batch, offset);
            }
        }
        table
    }
}

/// `Some(base_offset)` if every batch is a retry of one already appended, `None`
/// if all may be appended; mixed or out-of-order runs are refused.
pub(crate) fn check_sequences(table: &ProducerTable, batches: &[ProducerBatch]) -> Result<Option<u64>, ProduceRefusal> {
    let first = batches.first().ok_or_else(|| refuse(ErrorCode::InvalidRequest, "no batch"))?;
    let checked = table.check(first).map_err(|e| refuse(e.code(), e.to_string()))?;
    for pair in batches.windows(2) {
        let (prev, next) = (&pair[0], &pair[1]);
        let contiguous = next.producer_id == prev.producer_id
            && next.producer_epoch == prev.producer_epoch
            && next.base_sequence == prev.base_sequence.wrapping_add(prev.record_count);
        if !contiguous {
            return Err(refuse(ErrorCode::OutOfOrderSequence, "batches of one request are not contiguous"));
        }
    }
    match checked {
        SequenceCheck::Append => Ok(None),
        SequenceCheck::Duplicate { base_offset } if batches.len() == 1 => Ok(Some(base_offset)),
        SequenceCheck::Duplicate { base_offset } => {
            // A multi-batch retry is a duplicate only if its last batch is too.
            let last = batches.last().expect("non-empty");
            match table.check(last) {
                Ok(SequenceCheck::Duplicate { .. }) => Ok(Some(base_offset)),
                _ => Err(refuse(ErrorCode::OutOfOrderSequence, "retry overlaps appended batches")),
            }
        }
    }
}

/// Rebuilds the producer table from the batch headers of the last ~[`PRODUCER_SCAN_BYTES`]
/// of the log (everything written now; appends still in flight are not waited for).
async fn recover_producers(log: &PartitionLog) -> Result<ProducerTable, ReadError> {
    let (table, _) = scan_producers(log, log.log_end_offset(), None).await?;
    Ok(table)
}

/// The producer table of the batches below `end` in the log's last ~[`PRODUCER_SCAN_BYTES`],
/// and the offset the scan reached (`end` unless the log held less). Offsets reserved but
/// not yet written are waited for until `written_by` (`None`: not waited for, the scan
/// stops there).
async fn scan_producers(
    log: &PartitionLog,
    end: u64,
    written_by: Option<Instant>,
) -> Result<(ProducerTable, u64), ReadError> {
    let start = log.log_start_offset();
    if end <= start {
        return Ok((ProducerTable::new(), end));
    }
    let bytes_per_record = (log.size_bytes() / (end - start)).max(1);
    let mut offset = end.saturating_sub(PRODUCER_SCAN_BYTES / bytes_per_record).max(start);
    let mut tail = TailProducers::default();
    while offset < end {
        let written = offset < log.log_end_offset();
        let read = match written {
            true => log.read(offset, SCAN_READ_BYTES).await?,
            false => ReadResult { chunks: Vec::new(), bytes_len: 0, next_offset: offset },
        };
        if read.bytes_len == 0 || read.next_offset <= offset {
            match written_by {
                Some(deadline) if Instant::now() < deadline => {
                    glommio::timer::sleep(SCAN_WRITTEN_POLL).await;
                    continue;
                }
                _ => break,
            }
        }
        for chunk in &read.chunks {
            let bytes = chunk.to_bytes().await.map_err(ReadError::Io)?;
            let mut rest = &bytes[..];
            while let Ok(header) = BatchHeader::parse(rest) {
                if header.base_offset >= end {
                    break;
                }
                let batch = ProducerBatch {
                    producer_id: header.producer_id,
                    producer_epoch: header.producer_epoch,
                    base_sequence: header.base_sequence,
                    record_count: header.record_count,
                };
                tail.push(batch, header.base_offset);
                rest = &rest[(header.batch_len as usize).clamp(HEADER_LEN, rest.len())..];
            }
        }
        offset = read.next_offset;
    }
    Ok((tail.into_table(), offset.min(end)))
}

/// The producer fields of every batch in `payload`, which must be whole batches.
/// CRC and records are validated by the log on append; this only walks headers.
pub(crate) fn producer_batches(payload: &[u8]) -> Result<Vec<ProducerBatch>, ProduceRefusal> {
    let mut out = Vec::new();
    let mut rest = payload;
    if rest.is_empty() {
        return Err(refuse(ErrorCode::CorruptBatch, "empty produce payload"));
    }
    while !rest.is_empty() {
        let header = BatchHeader::parse(rest).map_err(|e| refuse(ErrorCode::CorruptBatch, e.to_string()))?;
        let len = header.batch_len as usize;
        if len < HEADER_LEN || len > rest.len() || header.record_count == 0 {
            return Err(refuse(ErrorCode::CorruptBatch, format!("batch length {len} does not fit the payload")));
        }
        out.push(ProducerBatch {
            producer_id: header.producer_id,
            producer_epoch: header.producer_epoch,
            base_sequence: header.base_sequence,
            record_count: header.record_count,
        });
        rest = &rest[len..];
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use strand_wire::batch::BatchBuilder;

    #[test]
    fn walks_batch_headers() {
        let mut payload = BytesMut::new();
        for seq in [0u32, 2] {
            let mut b = BatchBuilder::new().producer(5, 1, seq);
            b.push(1, None, b"x", &[]);
            b.push(2, None, b"y", &[]);
            payload.extend_from_slice(&b.finish());
        }
        let batches = producer_batches(&payload).unwrap();
        assert_eq!(batches.len(), 2);
        assert_eq!(batches[1], ProducerBatch { producer_id: 5, producer_epoch: 1, base_sequence: 2, record_count: 2 });
        assert_eq!(producer_batches(&payload[..payload.len() - 1]).unwrap_err().code, ErrorCode::CorruptBatch);
        assert_eq!(producer_batches(&[]).unwrap_err().code, ErrorCode::CorruptBatch);
        assert_eq!(producer_batches(&[0u8; 20]).unwrap_err().code, ErrorCode::CorruptBatch);
    }

    fn b(id: u64, epoch: u16, seq: u32) -> ProducerBatch {
        ProducerBatch { producer_id: id, producer_epoch: epoch, base_sequence: seq, record_count: 2 }
    }

    #[test]
    fn tail_replay_keeps_the_last_contiguous_run_per_producer() {
        let mut tail = TailProducers::default();
        let logged = [b(0, 0, 0), b(1, 0, 0), b(2, 0, 10), b(1, 0, 2), b(2, 0, 12), b(2, 0, 40), b(3, 0, 0)];
        let mut offset = 0;
        for batch in logged.iter().chain((0..7).map(|i| b(4, 0, i * 2)).collect::<Vec<_>>().iter()) {
            tail.push(*batch, offset);
            offset += 2;
        }
        tail.push(b(3, 1, 0), offset);
        let table = tail.into_table();
        assert_eq!(table.len(), 4, "plain batches (id 0) are not producers");
        let dup = |batch, base_offset| assert_eq!(table.check(&batch), Ok(SequenceCheck::Duplicate { base_offset }));
        dup(b(1, 0, 2), 6);
        dup(b(2, 0, 40), 10);
        dup(b(3, 1, 0), 28);
        assert_eq!(table.check(&b(2, 0, 42)), Ok(SequenceCheck::Append));
        assert_eq!(table.check(&b(2, 0, 12)).unwrap_err().code(), ErrorCode::OutOfOrderSequence, "gap starts a run");
        assert_eq!(table.check(&b(3, 0, 2)).unwrap_err().code(), ErrorCode::InvalidProducerEpoch);
        dup(b(4, 0, 12), 26);
        dup(b(4, 0, 4), 18);
        assert!(table.check(&b(4, 0, 2)).is_err(), "only the last 5 batches are remembered");
    }
}
