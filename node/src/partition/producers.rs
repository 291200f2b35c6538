//! The idempotent-producer table of one partition: which batches each producer appended
//! (id, epoch, sequences → offsets), so a retry is answered as a duplicate instead of being
//! appended twice.
//!
//! Validity: the table is valid for one *term* — a chain epoch on a chain head, a constant
//! on a local partition — and refuses idempotent batches (`THROTTLED`, retriable) while it is
//! not: before the first rebuild of a head's epoch, and on a local log after a failed append
//! the table named (`Partition` marks it invalid). A rebuild reads the table back from the
//! log, whose batch headers hold producer id / epoch / sequence, so it is the truth; one
//! runs per term at a time, and installs its table only if the term is still current when
//! it ends. Within a term the log only grows, so entries made at reserved offsets stay true.
//!
//! Restart: a partition's table is rebuilt from the log tail (about [`PRODUCER_SCAN_BYTES`]),
//! so a retry that crosses a restart is still recognised as a duplicate. A producer whose last
//! batches lie further back than that scan is forgotten (its next batch is accepted whatever
//! its sequence).

use std::cell::{Cell, RefCell};
use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use strand_core::producer::{next_sequence, ProducerBatch, ProducerTable, SequenceCheck, PRODUCER_BATCHES_REMEMBERED};
use strand_wire::batch::BatchHeaders;
use strand_wire::ErrorCode;

use crate::log::{PartitionLog, ReadError, ReadResult};

/// Log-tail bytes (estimated from the average record size) scanned to rebuild the table.
pub const PRODUCER_SCAN_BYTES: u64 = 4 << 20;
/// Longest a chain head's rebuild waits for batches the chain took to be written locally
/// (after that it gives up; the next idempotent produce starts it again).
pub const HEAD_REBUILD_WAIT: Duration = Duration::from_secs(3);
/// Bytes asked per read while scanning.
const SCAN_READ_BYTES: u32 = 1 << 20;
/// Pause between two looks at the log while a scan waits for an append to be written.
const SCAN_WRITTEN_POLL: Duration = Duration::from_millis(1);

/// A refused produce: the code and a message for the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProduceRefusal {
    pub code: ErrorCode,
    pub message: String,
}

pub(crate) fn refuse(code: ErrorCode, message: impl Into<String>) -> ProduceRefusal {
    ProduceRefusal { code, message: message.into() }
}

/// The producer table of one partition and the term it is valid for. See the module doc.
#[derive(Default)]
pub struct Producers {
    table: RefCell<ProducerTable>,
    /// The term the table was built for; `None` while it cannot be trusted.
    valid_for: Cell<Option<u64>>,
    /// The term a rebuild is running for.
    rebuilding: Cell<Option<u64>>,
}

impl Producers {
    /// An empty table, valid for no term yet (a chain replica's, before it heads an epoch).
    pub fn new() -> Self {
        Self::default()
    }

    /// Whether idempotent batches can be checked at `term` (else a rebuild is due).
    pub fn valid_for(&self, term: u64) -> bool {
        self.valid_for.get() == Some(term)
    }

    /// Whether a rebuild for `term` is running.
    pub fn rebuilding(&self, term: u64) -> bool {
        self.rebuilding.get() == Some(term)
    }

    /// Whether the table remembers `producer_id`.
    pub fn knows(&self, producer_id: i64) -> bool {
        self.table.borrow().contains(producer_id)
    }

    /// `Some(base_offset)` if `batches` are a retry of batches already taken, `None` if
    /// they may be appended. Refuses out-of-order or mixed runs, and everything while the
    /// table is not valid for `term`.
    pub fn check(&self, term: u64, batches: &[ProducerBatch]) -> Result<Option<u64>, ProduceRefusal> {
        if !self.valid_for(term) {
            return Err(refuse(ErrorCode::Throttled, "the producer state is being rebuilt from the log; retry"));
        }
        check_sequences(&self.table.borrow(), batches)
    }

    /// Enters the batches reserved from `base_offset` on; only those ending at or below
    /// `taken_end` (the log end after reserving them) were taken.
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

    /// Marks the table untrusted (the next idempotent produce starts a rebuild) — unless a
    /// rebuild is running, which reads the log as it is now and so stays true. Returns
    /// whether the table was valid before.
    pub fn invalidate(&self) -> bool {
        if self.rebuilding.get().is_some() {
            return false;
        }
        self.valid_for.take().is_some()
    }

    /// Marks the table invalid and a rebuild for `term` running; false if one already is.
    /// Call synchronously before starting [`Producers::rebuild`], so one runs per term.
    pub fn begin_rebuild(&self, term: u64) -> bool {
        if self.rebuilding(term) {
            return false;
        }
        self.valid_for.set(None);
        self.rebuilding.set(Some(term));
        true
    }

    /// Installs `table` for `term` at once (an empty log has nothing to scan; a log opened
    /// with its table recovered).
    pub fn install(&self, term: u64, table: ProducerTable) {
        *self.table.borrow_mut() = table;
        self.rebuilding.set(None);
        self.valid_for.set(Some(term));
    }

    /// Installs an empty table for `term`: for a log that holds nothing yet there is nothing
    /// to scan (a new partition's first produce is not refused).
    pub fn install_empty(&self, term: u64) {
        self.install(term, ProducerTable::new());
    }

    /// Rebuilds the table for `term` (begun with [`Producers::begin_rebuild`]) from the
    /// batches below `end` and installs it if `still_current()` holds afterwards.
    ///
    /// `wait`: `Some(limit)` — every batch below `end` must be read, waiting up to `limit`
    /// for ones reserved but not yet written (a chain head: the core took them before the
    /// rebuild began; idempotent batches are refused meanwhile, so nothing the table should
    /// name is taken during the scan); `None` — what is written is the truth (a local log,
    /// where no idempotent batch is in flight while the table is invalid).
    pub async fn rebuild(
        &self,
        log: &PartitionLog,
        term: u64,
        end: u64,
        wait: Option<Duration>,
        still_current: impl Fn() -> bool,
    ) {
        let scanned = scan_producers(log, end, wait.map(|w| Instant::now() + w)).await;
        if self.rebuilding(term) {
            self.rebuilding.set(None);
        }
        match scanned {
            Ok((table, reached))
                if (reached == end || wait.is_none()) && still_current() && self.rebuilding.get().is_none() =>
            {
                tracing::debug!(term, end, reached, producers = table.len(), "producer state rebuilt");
                *self.table.borrow_mut() = table;
                self.valid_for.set(Some(term));
            }
            Ok((_, reached)) => tracing::debug!(term, end, reached, "producer state not installed"),
            Err(e) => tracing::warn!(term, error = %e, "producer state not rebuilt"),
        }
    }
}

/// The table of a log as it is on disk (everything written; appends in flight are not
/// waited for). A failed scan is the caller's to report.
pub async fn recover_producers(log: &PartitionLog) -> Result<ProducerTable, ReadError> {
    let (table, _) = scan_producers(log, log.log_end_offset(), None).await?;
    Ok(table)
}

/// The last [`PRODUCER_BATCHES_REMEMBERED`] batches of each producer seen in the log tail.
#[derive(Default)]
struct TailProducers {
    producers: HashMap<i64, Run>,
}

/// One producer's latest contiguous run in the log tail.
struct Run {
    epoch: i16,
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
        if !batch.is_idempotent() {
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
                .is_none_or(|(b, _)| next_sequence(b.base_sequence, b.record_count) == batch.base_sequence);
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
            && next.base_sequence == next_sequence(prev.base_sequence, prev.record_count);
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
            // The log holds whole, validated batches: a header that does not walk ends the chunk.
            for (header, _) in BatchHeaders::new(&bytes).map_while(Result::ok) {
                if header.base_offset >= end {
                    break;
                }
                tail.push(ProducerBatch::of(&header), header.base_offset);
            }
        }
        offset = read.next_offset;
    }
    Ok((tail.into_table(), offset.min(end)))
}

/// The producer fields of every batch in `payload`, which must be whole batches.
/// CRC and records are validated by the log on append; this only walks headers.
pub(crate) fn producer_batches(payload: &[u8]) -> Result<Vec<ProducerBatch>, ProduceRefusal> {
    if payload.is_empty() {
        return Err(refuse(ErrorCode::CorruptBatch, "empty produce payload"));
    }
    BatchHeaders::new(payload)
        .map(|walked| walked.map(|(header, _)| ProducerBatch::of(&header)))
        .collect::<Result<_, _>>()
        .map_err(|e| refuse(ErrorCode::CorruptBatch, e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::BytesMut;
    use strand_wire::batch::BatchBuilder;

    #[test]
    fn walks_batch_headers() {
        let mut payload = BytesMut::new();
        for seq in [0i32, 2] {
            let mut b = BatchBuilder::new().producer(5, 1, seq);
            b.push(1, None, Some(b"x"), &[]);
            b.push(2, None, Some(b"y"), &[]);
            payload.extend_from_slice(&b.finish());
        }
        let batches = producer_batches(&payload).unwrap();
        assert_eq!(batches.len(), 2);
        assert_eq!(batches[1], ProducerBatch { producer_id: 5, producer_epoch: 1, base_sequence: 2, record_count: 2 });
        assert_eq!(producer_batches(&payload[..payload.len() - 1]).unwrap_err().code, ErrorCode::CorruptBatch);
        assert_eq!(producer_batches(&[]).unwrap_err().code, ErrorCode::CorruptBatch);
        assert_eq!(producer_batches(&[0u8; 20]).unwrap_err().code, ErrorCode::CorruptBatch);
    }

    fn b(id: i64, epoch: i16, seq: i32) -> ProducerBatch {
        ProducerBatch { producer_id: id, producer_epoch: epoch, base_sequence: seq, record_count: 2 }
    }

    #[test]
    fn tail_replay_keeps_the_last_contiguous_run_per_producer() {
        let mut tail = TailProducers::default();
        let logged = [b(-1, -1, -1), b(1, 0, 0), b(2, 0, 10), b(1, 0, 2), b(2, 0, 12), b(2, 0, 40), b(3, 0, 0)];
        let mut offset = 0;
        for batch in logged.iter().chain((0..7).map(|i| b(4, 0, i * 2)).collect::<Vec<_>>().iter()) {
            tail.push(*batch, offset);
            offset += 2;
        }
        tail.push(b(3, 1, 0), offset);
        let table = tail.into_table();
        assert_eq!(table.len(), 4, "plain batches (id -1) are not producers");
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

    #[test]
    fn invalidation_waits_for_a_running_rebuild_and_terms_do_not_mix() {
        let producers = Producers::new();
        assert!(!producers.valid_for(0));
        producers.install_empty(0);
        assert!(producers.valid_for(0) && !producers.valid_for(1));
        assert!(producers.invalidate(), "was valid");
        assert!(!producers.invalidate(), "already invalid");
        assert!(producers.begin_rebuild(0));
        assert!(!producers.begin_rebuild(0), "one rebuild per term");
        assert!(!producers.invalidate(), "a running rebuild reads the log as it is now");
        assert!(producers.rebuilding(0) && !producers.rebuilding(1));
    }
}
