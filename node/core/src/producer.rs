//! Idempotent-producer sequence tracking for one partition (IO-free).
//!
//! Owns, per producer id, the epoch and the last [`PRODUCER_BATCHES_REMEMBERED`]
//! appended batches' `(base_sequence, record_count, base_offset)`. The partition
//! owner asks [`ProducerTable::check`] before appending a batch and calls
//! [`ProducerTable::record`] after the append succeeded.
//!
//! Invariants: for each producer the remembered batches are in append order and
//! their sequences are contiguous; a batch is appended at most once per epoch
//! while it is among the remembered ones (a retry answers `Duplicate` with the
//! original offset); the table holds at most [`PRODUCERS_PER_PARTITION_MAX`]
//! producers, evicting the least recently used.
//!
//! The fields are Kafka's (RecordBatch v2): producer id `i64` (-1 = not idempotent),
//! epoch `i16`, sequence `i32`. Sequences are non-negative and wrap from `i32::MAX` to 0,
//! as Kafka's `DefaultRecordBatch.incrementSequence` does (`next_sequence`); the batch
//! format refuses an idempotent batch with a negative epoch or sequence.
//!
//! Producer ids are drawn at random ([`producer_id_from_random`]) so no client can predict
//! the next one and fence it in advance, and a produce may carry only an epoch the node
//! issues ([`check_epoch_issued`]): InitProducerId issues a fresh id at epoch
//! [`PRODUCER_EPOCH_ISSUED`] and bumps no epoch (there are no transactional ids), so a
//! higher epoch can only be forged — accepting it would fence the id's owner.

use std::collections::{HashMap, VecDeque};

use strand_wire::ErrorCode;

/// Batches remembered per producer: a client may have this many in flight per partition.
pub const PRODUCER_BATCHES_REMEMBERED: usize = 5;
/// Producers remembered per partition before the least recently used is forgotten.
pub const PRODUCERS_PER_PARTITION_MAX: usize = 4096;

/// The epoch InitProducerId gives every producer id; the node issues no other.
pub const PRODUCER_EPOCH_ISSUED: i16 = 0;

/// A producer id from 64 random bits, `None` if they make no valid id (retry with others):
/// positive (Kafka's producer ids are non-negative int64, -1 meaning none). 0 is a valid
/// id in a Kafka batch, but the node never issues it: ids are drawn from `1..=i64::MAX`.
pub fn producer_id_from_random(bits: u64) -> Option<i64> {
    let id = (bits & i64::MAX as u64) as i64;
    (id != 0).then_some(id)
}

/// Sequence arithmetic is the batch format's (Kafka's wrap from `i32::MAX` to 0).
pub use strand_wire::batch::next_sequence;

/// Refuses a batch whose producer epoch the node never issued (see the module doc).
pub fn check_epoch_issued(batch: &ProducerBatch) -> Result<(), SequenceError> {
    if !batch.is_idempotent() || batch.producer_epoch == PRODUCER_EPOCH_ISSUED {
        return Ok(());
    }
    Err(SequenceError::EpochNotIssued { got: batch.producer_epoch, issued: PRODUCER_EPOCH_ISSUED })
}

/// The producer fields of one batch header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProducerBatch {
    /// Negative (-1) = not an idempotent producer; such batches are never checked.
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub base_sequence: i32,
    pub record_count: u32,
}

impl ProducerBatch {
    /// Whether the batch comes from an idempotent producer (its id is non-negative).
    pub fn is_idempotent(&self) -> bool {
        self.producer_id >= 0
    }

    /// The producer fields of a batch header.
    pub fn of(header: &strand_wire::batch::BatchHeader) -> Self {
        ProducerBatch {
            producer_id: header.producer_id,
            producer_epoch: header.producer_epoch,
            base_sequence: header.base_sequence,
            record_count: header.record_count,
        }
    }
}

/// What to do with a batch that passed the check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SequenceCheck {
    /// Append it.
    Append,
    /// It was appended before at `base_offset`; answer success without appending.
    Duplicate { base_offset: u64 },
}

/// Why a batch must be refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SequenceError {
    #[error("producer epoch {got} is older than current epoch {current}")]
    InvalidEpoch { current: i16, got: i16 },
    #[error("out of order sequence: expected {expected}, got {got}")]
    OutOfOrder { expected: i32, got: i32 },
    #[error(
        "producer epoch {got} was never issued: InitProducerId issues epoch {issued} with every new \
         producer id; ask it for an id"
    )]
    EpochNotIssued { got: i16, issued: i16 },
}

impl SequenceError {
    /// The wire error to answer with.
    pub fn code(&self) -> ErrorCode {
        match self {
            SequenceError::InvalidEpoch { .. } | SequenceError::EpochNotIssued { .. } => {
                ErrorCode::InvalidProducerEpoch
            }
            SequenceError::OutOfOrder { .. } => ErrorCode::OutOfOrderSequence,
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Remembered {
    base_sequence: i32,
    record_count: u32,
    base_offset: u64,
}

#[derive(Debug)]
struct ProducerState {
    epoch: i16,
    batches: VecDeque<Remembered>,
    used_tick: u64,
}

/// Sequence state of every idempotent producer of one partition.
#[derive(Debug, Default)]
pub struct ProducerTable {
    producers: HashMap<i64, ProducerState>,
    tick: u64,
}

impl ProducerTable {
    /// An empty table (after a restart the table starts empty: the first batch of
    /// each producer is accepted whatever its sequence).
    pub fn new() -> Self {
        Self::default()
    }

    /// Producers currently remembered.
    pub fn len(&self) -> usize {
        self.producers.len()
    }

    /// Whether no producer is remembered.
    pub fn is_empty(&self) -> bool {
        self.producers.is_empty()
    }

    /// Whether `producer_id` is remembered (a new id must not collide with one in use).
    pub fn contains(&self, producer_id: i64) -> bool {
        self.producers.contains_key(&producer_id)
    }

    /// Decides whether `batch` may be appended. Does not change the table.
    pub fn check(&self, batch: &ProducerBatch) -> Result<SequenceCheck, SequenceError> {
        if !batch.is_idempotent() {
            return Ok(SequenceCheck::Append);
        }
        let Some(state) = self.producers.get(&batch.producer_id) else {
            return Ok(SequenceCheck::Append);
        };
        if batch.producer_epoch < state.epoch {
            return Err(SequenceError::InvalidEpoch { current: state.epoch, got: batch.producer_epoch });
        }
        if batch.producer_epoch > state.epoch {
            // A bumped epoch restarts the sequence space at 0.
            return match batch.base_sequence {
                0 => Ok(SequenceCheck::Append),
                got => Err(SequenceError::OutOfOrder { expected: 0, got }),
            };
        }
        let duplicate = state
            .batches
            .iter()
            .find(|r| r.base_sequence == batch.base_sequence && r.record_count == batch.record_count);
        if let Some(r) = duplicate {
            return Ok(SequenceCheck::Duplicate { base_offset: r.base_offset });
        }
        let last = state.batches.back().expect("a remembered producer has at least one batch");
        let expected = next_sequence(last.base_sequence, last.record_count);
        if batch.base_sequence == expected {
            Ok(SequenceCheck::Append)
        } else {
            Err(SequenceError::OutOfOrder { expected, got: batch.base_sequence })
        }
    }

    /// Remembers that `batch` was appended at `base_offset`. Call only after
    /// [`ProducerTable::check`] answered `Append` and the append succeeded.
    pub fn record(&mut self, batch: &ProducerBatch, base_offset: u64) {
        if !batch.is_idempotent() {
            return;
        }
        self.tick += 1;
        let tick = self.tick;
        if !self.producers.contains_key(&batch.producer_id) && self.producers.len() >= PRODUCERS_PER_PARTITION_MAX {
            self.evict_least_recently_used();
        }
        let state = self.producers.entry(batch.producer_id).or_insert_with(|| ProducerState {
            epoch: batch.producer_epoch,
            batches: VecDeque::with_capacity(PRODUCER_BATCHES_REMEMBERED),
            used_tick: tick,
        });
        if batch.producer_epoch != state.epoch {
            assert!(batch.producer_epoch > state.epoch, "record of a batch check() refused");
            state.epoch = batch.producer_epoch;
            state.batches.clear();
        }
        if let Some(last) = state.batches.back() {
            debug_assert_eq!(next_sequence(last.base_sequence, last.record_count), batch.base_sequence);
        }
        if state.batches.len() == PRODUCER_BATCHES_REMEMBERED {
            state.batches.pop_front();
        }
        state.batches.push_back(Remembered {
            base_sequence: batch.base_sequence,
            record_count: batch.record_count,
            base_offset,
        });
        state.used_tick = tick;
        assert!(state.batches.len() <= PRODUCER_BATCHES_REMEMBERED);
        assert!(self.producers.len() <= PRODUCERS_PER_PARTITION_MAX);
    }

    fn evict_least_recently_used(&mut self) {
        let oldest = self.producers.iter().min_by_key(|(_, s)| s.used_tick).map(|(id, _)| *id);
        if let Some(id) = oldest {
            self.producers.remove(&id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(id: i64, epoch: i16, seq: i32, count: u32) -> ProducerBatch {
        ProducerBatch { producer_id: id, producer_epoch: epoch, base_sequence: seq, record_count: count }
    }

    /// Runs `(batch, expected check)` steps, recording appends at increasing offsets.
    fn check(steps: &[(ProducerBatch, Result<SequenceCheck, SequenceError>)]) {
        let mut table = ProducerTable::new();
        let mut offset = 0u64;
        for (i, (batch, expected)) in steps.iter().enumerate() {
            let got = table.check(batch);
            assert_eq!(&got, expected, "step {i}: {batch:?}");
            if got == Ok(SequenceCheck::Append) {
                table.record(batch, offset);
                offset += u64::from(batch.record_count);
            }
        }
    }

    #[test]
    fn in_order_duplicates_and_gaps() {
        use SequenceCheck::*;
        check(&[
            (b(7, 0, 0, 3), Ok(Append)),
            (b(7, 0, 3, 2), Ok(Append)),
            (b(7, 0, 0, 3), Ok(Duplicate { base_offset: 0 })),
            (b(7, 0, 3, 2), Ok(Duplicate { base_offset: 3 })),
            (b(7, 0, 6, 1), Err(SequenceError::OutOfOrder { expected: 5, got: 6 })),
            (b(7, 0, 5, 1), Ok(Append)),
            (b(-1, -1, -1, 1), Ok(Append)),
            (b(-1, -1, -1, 1), Ok(Append)),
            // 0 is an idempotent id like any other (the node just never issues it).
            (b(0, 0, 0, 1), Ok(Append)),
            (b(0, 0, 0, 1), Ok(Duplicate { base_offset: 8 })),
        ]);
    }

    #[test]
    fn epochs() {
        use SequenceCheck::*;
        check(&[
            (b(1, 3, 10, 1), Ok(Append)),
            (b(1, 2, 11, 1), Err(SequenceError::InvalidEpoch { current: 3, got: 2 })),
            (b(1, 4, 5, 1), Err(SequenceError::OutOfOrder { expected: 0, got: 5 })),
            (b(1, 4, 0, 2), Ok(Append)),
            (b(1, 4, 0, 2), Ok(Duplicate { base_offset: 1 })),
            (b(1, 3, 11, 1), Err(SequenceError::InvalidEpoch { current: 4, got: 3 })),
        ]);
    }

    #[test]
    fn only_last_five_are_remembered_and_sequences_wrap() {
        let mut table = ProducerTable::new();
        let start = i32::MAX - 2;
        let seq = |i: u32| next_sequence(start, i);
        assert_eq!((seq(2), seq(3), seq(4)), (i32::MAX, 0, 1), "Kafka's wrap: i32::MAX is followed by 0");
        for i in 0..7u32 {
            let batch = b(9, 0, seq(i), 1);
            assert_eq!(table.check(&batch), Ok(SequenceCheck::Append), "batch {i}");
            table.record(&batch, u64::from(i));
        }
        // Batches 0 and 1 fell out of the window; 2..7 are duplicates.
        assert!(matches!(table.check(&b(9, 0, start, 1)), Err(SequenceError::OutOfOrder { .. })));
        assert!(matches!(table.check(&b(9, 0, seq(1), 1)), Err(SequenceError::OutOfOrder { .. })));
        for i in 2..7u32 {
            let got = table.check(&b(9, 0, seq(i), 1));
            assert_eq!(got, Ok(SequenceCheck::Duplicate { base_offset: u64::from(i) }));
        }
        assert_eq!(table.check(&b(9, 0, 4, 1)), Ok(SequenceCheck::Append));
        assert_eq!(next_sequence(i32::MAX, 3), 2);
        assert_eq!(SequenceError::OutOfOrder { expected: 0, got: 1 }.code(), ErrorCode::OutOfOrderSequence);
    }

    #[test]
    fn ids_are_positive_nonzero_and_epochs_only_as_issued() {
        let cases = [(0u64, None), (1 << 63, None), (u64::MAX, Some(i64::MAX)), (42, Some(42))];
        for (bits, id) in cases {
            assert_eq!(producer_id_from_random(bits), id, "{bits:#x}");
        }
        assert_eq!(check_epoch_issued(&b(9, PRODUCER_EPOCH_ISSUED, 0, 1)), Ok(()));
        assert_eq!(check_epoch_issued(&b(-1, i16::MAX, 0, 1)), Ok(()), "not idempotent: no producer to fence");
        let forged = check_epoch_issued(&b(9, i16::MAX, 0, 1)).unwrap_err();
        assert_eq!(forged, SequenceError::EpochNotIssued { got: i16::MAX, issued: 0 });
        assert_eq!(forged.code(), ErrorCode::InvalidProducerEpoch);
        assert!(forged.to_string().contains("32767 was never issued"), "{forged}");
        let mut table = ProducerTable::new();
        table.record(&b(9, 0, 0, 1), 0);
        assert!(table.contains(9) && !table.contains(10));
    }

    #[test]
    fn producer_count_is_bounded() {
        let mut table = ProducerTable::new();
        for id in 1..=(PRODUCERS_PER_PARTITION_MAX as i64 + 10) {
            table.record(&b(id, 0, 0, 1), id as u64);
        }
        assert_eq!(table.len(), PRODUCERS_PER_PARTITION_MAX);
        // The first producers were evicted: their next batch is accepted as new.
        assert_eq!(table.check(&b(1, 0, 42, 1)), Ok(SequenceCheck::Append));
        let last = PRODUCERS_PER_PARTITION_MAX as i64 + 10;
        assert_eq!(table.check(&b(last, 0, 0, 1)), Ok(SequenceCheck::Duplicate { base_offset: last as u64 }));
    }
}
