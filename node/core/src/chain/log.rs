//! [`LogIndex`]: the core's picture of the local log — batch boundaries, sizes and
//! append epochs, in offset order, with a running byte position so byte distances
//! between offsets cost a binary search.
//!
//! Invariants: batches are contiguous from offset 0 (`batches[i].end() ==
//! batches[i + 1].base`), every batch has at least one record, and `positions[i]` is
//! the byte count of all batches before `i`. Memory is one entry per batch; the shell
//! rebuilds the index from its durable log at restart.

use super::types::{BatchMeta, Epoch, Offset, Position};

/// Batch boundaries of one replica's log.
#[derive(Debug, Clone, Default)]
pub struct LogIndex {
    batches: Vec<BatchMeta>,
    /// Bytes before each batch.
    positions: Vec<u64>,
}

impl LogIndex {
    /// An index over `batches`, which must be contiguous from offset 0.
    pub fn from_batches(batches: &[BatchMeta]) -> Result<LogIndex, Offset> {
        let mut index = LogIndex::default();
        for batch in batches {
            if batch.base != index.end() || batch.record_count == 0 {
                return Err(batch.base);
            }
            index.push(*batch);
        }
        Ok(index)
    }

    /// Offset + 1 of the last record (0 when empty).
    pub fn end(&self) -> Offset {
        self.batches.last().map_or(Offset(0), BatchMeta::end)
    }

    /// The position at the end of the log.
    pub fn end_position(&self) -> Position {
        self.batches.last().map_or(Position::ZERO, |b| Position { offset: b.end(), epoch: b.epoch })
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
            None => Position::ZERO,
            Some(i) => Position { offset, epoch: self.batches[i].epoch },
        })
    }

    /// The largest batch boundary `<= offset` (0 at worst).
    pub fn floor_boundary(&self, offset: Offset) -> Offset {
        if offset >= self.end() {
            return self.end();
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
}
