//! [`LogIndex`]: the core's picture of the local log — batch boundaries, sizes and
//! append epochs, in offset order, with a running byte position so byte distances
//! between offsets cost a binary search.
//!
//! Invariants: append epochs never decrease along the log (asserted on push; a recovered
//! list that breaks this is refused like a gap); batches are contiguous from the log start `start.offset` (0 unless
//! retention removed a committed prefix or the log was reset to a predecessor's start;
//! `batches[0].base == start.offset`, `batches[i].end() == batches[i + 1].base`), every
//! batch has at least one record, and `positions[i]` is the byte count of the batches
//! before `i` (from the start). Everything below the start was committed, so the
//! position at the start matches any position with that offset ([`LogIndex::matches`]);
//! its epoch may be unknown (`Epoch(0)`) after a restart. Memory is one entry per
//! batch; the shell rebuilds the index from its durable log at restart.

use super::types::{BatchMeta, Epoch, Offset, Position};

/// Batch boundaries of one replica's log.
#[derive(Debug, Clone, Default)]
pub struct LogIndex {
    /// The log start and the epoch of the (removed) batch ending there.
    start: Position,
    batches: Vec<BatchMeta>,
    /// Bytes before each batch.
    positions: Vec<u64>,
}

impl LogIndex {
    /// An index over `batches`, which must be contiguous; the log starts at the first
    /// batch's base (0 when empty), the epoch ending there unknown.
    pub fn from_batches(batches: &[BatchMeta]) -> Result<LogIndex, Offset> {
        let start = batches.first().map_or(Position::ZERO, |b| Position { offset: b.base, epoch: Epoch(0) });
        LogIndex::from_batches_at(start, batches)
    }

    /// An index starting at `start` over `batches`, contiguous from `start.offset`, with
    /// epochs that never decrease (from `start.epoch` on); `Err` names the first batch
    /// that breaks either.
    pub fn from_batches_at(start: Position, batches: &[BatchMeta]) -> Result<LogIndex, Offset> {
        let mut index = LogIndex { start, ..LogIndex::default() };
        for batch in batches {
            if batch.base != index.end() || batch.record_count == 0 || batch.epoch < index.last_epoch() {
                return Err(batch.base);
            }
            index.push(*batch);
        }
        Ok(index)
    }

    /// Offset + 1 of the last record (the start when empty).
    pub fn end(&self) -> Offset {
        self.batches.last().map_or(self.start.offset, BatchMeta::end)
    }

    /// The first offset the log holds (or would hold).
    pub fn start(&self) -> Position {
        self.start
    }

    /// The position at the end of the log.
    pub fn end_position(&self) -> Position {
        self.batches.last().map_or(self.start, |b| Position { offset: b.end(), epoch: b.epoch })
    }

    /// True when `pos` names this log's content up to `pos.offset`: the same position at
    /// a boundary, or any position at the start (the prefix below it was committed).
    pub fn matches(&self, pos: Position) -> bool {
        pos.offset == self.start.offset || self.position_at(pos.offset) == Some(pos)
    }

    /// Forgets the batches below boundary `start` (retention removed them).
    pub fn drop_before(&mut self, start: Offset) {
        let Some(position) = self.position_at(start) else { panic!("a new log start is a batch boundary") };
        let keep_from = self.boundary_index(start).expect("checked above");
        let removed = self.positions.get(keep_from).copied().unwrap_or_else(|| self.bytes());
        self.batches.drain(..keep_from);
        self.positions.drain(..keep_from);
        for p in &mut self.positions {
            *p -= removed;
        }
        self.start = position;
    }

    /// Learns the epoch at the start from a matching predecessor position.
    pub fn learn_start_epoch(&mut self, pos: Position) {
        if pos.offset == self.start.offset {
            self.start.epoch = pos.epoch;
        }
    }

    /// Total bytes of all batches.
    pub fn bytes(&self) -> u64 {
        self.batches.last().map_or(0, |b| self.positions[self.positions.len() - 1] + u64::from(b.bytes_len))
    }

    /// Number of batches.
    pub fn len(&self) -> usize {
        self.batches.len()
    }

    /// True when the log holds no batch.
    pub fn is_empty(&self) -> bool {
        self.batches.is_empty()
    }

    /// All batches, in offset order.
    pub fn batches(&self) -> &[BatchMeta] {
        &self.batches
    }

    /// Appends `batch`, which must start at [`LogIndex::end`].
    pub fn push(&mut self, batch: BatchMeta) {
        assert_eq!(batch.base, self.end(), "batches are contiguous");
        assert!(batch.record_count > 0, "a batch holds at least one record");
        assert!(
            batch.epoch >= self.last_epoch(),
            "append epochs never go backwards: epoch {} after {} at offset {}",
            batch.epoch.0,
            self.last_epoch().0,
            batch.base.0
        );
        self.positions.push(self.bytes());
        self.batches.push(batch);
    }

    /// Cuts every batch at or above `to`; `to` must be a boundary.
    pub fn truncate(&mut self, to: Offset) {
        let keep = self.boundary_index(to).expect("truncation point is a batch boundary");
        self.batches.truncate(keep);
        self.positions.truncate(keep);
    }

    /// The position at `offset` if `offset` is a batch boundary of this log.
    pub fn position_at(&self, offset: Offset) -> Option<Position> {
        let index = self.boundary_index(offset)?;
        Some(match index.checked_sub(1) {
            None => self.start,
            Some(i) => Position { offset, epoch: self.batches[i].epoch },
        })
    }

    /// The largest batch boundary `<= offset` (the start at worst, also below it).
    pub fn floor_boundary(&self, offset: Offset) -> Offset {
        if offset >= self.end() {
            return self.end();
        }
        if offset <= self.start.offset {
            return self.start.offset;
        }
        // The batch containing `offset` starts at the boundary we want.
        let index = self.batches.partition_point(|b| b.end() <= offset);
        self.batches[index].base
    }

    /// The batch starting at `base`, if any.
    pub fn batch_at(&self, base: Offset) -> Option<&BatchMeta> {
        let index = self.batches.partition_point(|b| b.base < base);
        self.batches.get(index).filter(|b| b.base == base)
    }

    /// Bytes of the batches in `[from, to)`; both must be boundaries.
    pub fn bytes_between(&self, from: Offset, to: Offset) -> u64 {
        self.byte_pos(to).saturating_sub(self.byte_pos(from))
    }

    /// Batches from boundary `from` on, at most `batches_max` and at most `bytes_max`
    /// bytes — but at least one batch if any exists, so an oversized batch still moves.
    pub fn slice_from(&self, from: Offset, bytes_max: u64, batches_max: usize) -> &[BatchMeta] {
        let Some(start) = self.boundary_index(from) else { return &[] };
        let mut end = start;
        let mut bytes = 0u64;
        while end < self.batches.len() && end - start < batches_max {
            let next = bytes + u64::from(self.batches[end].bytes_len);
            if next > bytes_max && end > start {
                break;
            }
            bytes = next;
            end += 1;
        }
        &self.batches[start..end]
    }

    /// The epoch of the last batch (`Epoch(0)` when empty).
    pub fn last_epoch(&self) -> Epoch {
        self.end_position().epoch
    }

    /// Index of the batch starting at boundary `offset` (== `len()` at the end).
    fn boundary_index(&self, offset: Offset) -> Option<usize> {
        if offset < self.start.offset {
            return None;
        }
        if offset == self.end() {
            return Some(self.batches.len());
        }
        let index = self.batches.partition_point(|b| b.base < offset);
        (index < self.batches.len() && self.batches[index].base == offset).then_some(index)
    }

    /// Byte position of boundary `offset` (clamped to the end for offsets past it).
    fn byte_pos(&self, offset: Offset) -> u64 {
        match self.boundary_index(self.floor_boundary(offset)) {
            Some(i) if i < self.positions.len() => self.positions[i],
            _ => self.bytes(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch(base: u64, count: u32, bytes: u32, epoch: u64) -> BatchMeta {
        BatchMeta { base: Offset(base), record_count: count, bytes_len: bytes, epoch: Epoch(epoch) }
    }

    #[test]
    fn boundaries_positions_and_slices() {
        let log = LogIndex::from_batches(&[batch(0, 2, 10, 1), batch(2, 3, 20, 1), batch(5, 1, 30, 2)]).unwrap();
        assert_eq!(log.end(), Offset(6));
        assert_eq!(log.bytes(), 60);
        assert_eq!(log.position_at(Offset(0)), Some(Position::ZERO));
        assert_eq!(log.position_at(Offset(5)), Some(Position { offset: Offset(5), epoch: Epoch(1) }));
        assert_eq!(log.position_at(Offset(6)), Some(Position { offset: Offset(6), epoch: Epoch(2) }));
        assert_eq!(log.position_at(Offset(3)), None);
        assert_eq!(log.position_at(Offset(7)), None);
        assert_eq!(log.floor_boundary(Offset(3)), Offset(2));
        assert_eq!(log.floor_boundary(Offset(9)), Offset(6));
        assert_eq!(log.bytes_between(Offset(2), Offset(6)), 50);
        assert_eq!(log.slice_from(Offset(0), 25, 10).len(), 1);
        assert_eq!(log.slice_from(Offset(0), 30, 10).len(), 2);
        assert_eq!(log.slice_from(Offset(2), 1, 10).len(), 1, "at least one batch");
        assert_eq!(log.slice_from(Offset(0), 1000, 2).len(), 2);
        assert!(log.slice_from(Offset(6), 1000, 10).is_empty());
        assert_eq!(log.batch_at(Offset(2)).map(|b| b.record_count), Some(3));
        assert!(log.batch_at(Offset(3)).is_none());
    }

    #[test]
    fn truncate_and_rejects_gaps() {
        let mut log = LogIndex::from_batches(&[batch(0, 2, 10, 1), batch(2, 3, 20, 1)]).unwrap();
        log.truncate(Offset(2));
        assert_eq!(log.end(), Offset(2));
        assert_eq!(log.bytes(), 10);
        log.push(batch(2, 1, 5, 3));
        assert_eq!(log.end_position(), Position { offset: Offset(3), epoch: Epoch(3) });
        assert_eq!(LogIndex::from_batches(&[batch(0, 2, 10, 1), batch(3, 1, 1, 1)]).unwrap_err(), Offset(3));
        assert_eq!(LogIndex::from_batches(&[batch(0, 0, 10, 1)]).unwrap_err(), Offset(0));
    }

    #[test]
    fn starts_above_zero_and_drops_a_prefix() {
        let mut log = LogIndex::from_batches(&[batch(4, 2, 10, 1), batch(6, 3, 20, 2), batch(9, 1, 30, 2)]).unwrap();
        assert_eq!(log.start(), Position { offset: Offset(4), epoch: Epoch(0) });
        assert!(log.matches(Position { offset: Offset(4), epoch: Epoch(7) }), "any epoch at the start");
        assert!(!log.matches(Position { offset: Offset(6), epoch: Epoch(2) }));
        assert_eq!(log.position_at(Offset(2)), None);
        assert_eq!(log.floor_boundary(Offset(1)), Offset(4));
        assert!(log.slice_from(Offset(2), 100, 10).is_empty());
        log.drop_before(Offset(6));
        assert_eq!(log.start(), Position { offset: Offset(6), epoch: Epoch(1) });
        assert_eq!((log.bytes(), log.len(), log.end()), (50, 2, Offset(10)));
        assert_eq!(log.bytes_between(Offset(6), Offset(9)), 20);
        log.drop_before(Offset(10));
        assert!(log.is_empty());
        assert_eq!((log.end(), log.end_position(), log.bytes()), (Offset(10), log.start(), 0));
        log.push(batch(10, 1, 5, 3));
        assert_eq!(log.bytes_between(Offset(10), Offset(11)), 5);
        let empty = LogIndex::from_batches_at(Position { offset: Offset(20), epoch: Epoch(4) }, &[]).unwrap();
        assert_eq!(empty.end_position(), Position { offset: Offset(20), epoch: Epoch(4) });
        assert!(
            LogIndex::from_batches_at(Position { offset: Offset(20), epoch: Epoch(4) }, &[batch(0, 1, 1, 1)]).is_err()
        );
    }

    #[test]
    fn epochs_going_backwards_are_refused_at_recovery_and_a_bug_on_push() {
        assert_eq!(LogIndex::from_batches(&[batch(0, 2, 10, 3), batch(2, 1, 10, 2)]).unwrap_err(), Offset(2));
        let mut log = LogIndex::from_batches(&[batch(0, 2, 10, 3)]).unwrap();
        log.push(batch(2, 1, 10, 3));
        let backwards = std::panic::catch_unwind(move || log.push(batch(3, 1, 10, 2)));
        assert!(backwards.is_err(), "push of an older epoch must panic");
    }
}
