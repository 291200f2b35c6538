//! The per-partition tail batch cache (direct mode): the most recently written batches,
//! kept in memory so caught-up consumers never touch the disk (Redpanda's batch cache idea).
//!
//! Invariants: entries are contiguous in offset order and each is one whole batch exactly as
//! written to the segment; total bytes never exceed the configured capacity (a single batch
//! larger than the capacity is not cached).

use bytes::Bytes;
use std::collections::VecDeque;

pub(crate) struct BatchCache {
    capacity_bytes: usize,
    len_bytes: usize,
    /// (base_offset, next_offset, batch bytes)
    entries: VecDeque<(u64, u64, Bytes)>,
}

impl BatchCache {
    pub(crate) fn new(capacity_bytes: usize) -> Self {
        BatchCache { capacity_bytes, len_bytes: 0, entries: VecDeque::new() }
    }

    /// Adds a just-written batch; it must directly follow the last cached one (otherwise the cache restarts).
    pub(crate) fn push(&mut self, base_offset: u64, next_offset: u64, bytes: Bytes) {
        if self.capacity_bytes == 0 || bytes.len() > self.capacity_bytes {
            self.clear();
            return;
        }
        if self.entries.back().is_some_and(|(_, next, _)| *next != base_offset) {
            self.clear();
        }
        self.len_bytes += bytes.len();
        self.entries.push_back((base_offset, next_offset, bytes));
        while self.len_bytes > self.capacity_bytes {
            let Some((_, _, old)) = self.entries.pop_front() else { break };
            self.len_bytes -= old.len();
        }
    }

    /// Drops every cached batch ending past `to` (a truncation of the log).
    pub(crate) fn truncate(&mut self, to: u64) {
        while self.entries.back().is_some_and(|(_, next, _)| *next > to) {
            if let Some((_, _, bytes)) = self.entries.pop_back() {
                self.len_bytes -= bytes.len();
            }
        }
    }

    pub(crate) fn clear(&mut self) {
        self.entries.clear();
        self.len_bytes = 0;
    }

    /// Whole batches from the one containing `offset`, up to `max_bytes` (at least one);
    /// `None` if `offset` is not cached.
    pub(crate) fn read(&self, offset: u64, max_bytes: u32) -> Option<(Vec<Bytes>, u32, u64)> {
        let first = self.entries.front()?;
        if offset < first.0 {
            return None;
        }
        let start = self.entries.partition_point(|(_, next, _)| *next <= offset);
        if start == self.entries.len() {
            return None;
        }
        let mut chunks = Vec::new();
        let mut len = 0u32;
        let mut next = offset;
        for (_, next_offset, bytes) in self.entries.iter().skip(start) {
            let add = bytes.len() as u32;
            if !chunks.is_empty() && len.saturating_add(add) > max_bytes {
                break;
            }
            chunks.push(bytes.clone());
            len += add;
            next = *next_offset;
        }
        Some((chunks, len, next))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounded_contiguous_and_whole_batches() {
        let mut c = BatchCache::new(100);
        c.push(0, 2, Bytes::from(vec![1; 40]));
        c.push(2, 5, Bytes::from(vec![2; 40]));
        assert_eq!(c.read(3, 1).map(|r| (r.1, r.2)), Some((40, 5)));
        assert_eq!(c.read(0, 80).map(|r| (r.0.len(), r.2)), Some((2, 5)));
        c.push(5, 6, Bytes::from(vec![3; 40]));
        assert!(c.read(1, 1000).is_none(), "oldest entry evicted");
        assert_eq!(c.read(6, 10), None);
        c.push(9, 10, Bytes::from(vec![4; 10]));
        assert!(c.read(5, 10).is_none(), "gap restarts the cache");
        assert_eq!(c.read(9, 10).map(|r| r.2), Some(10));
        c.push(10, 12, Bytes::from(vec![5; 10]));
        c.truncate(10);
        assert_eq!(c.read(10, 10), None, "truncated batch gone");
        assert_eq!(c.read(9, 100).map(|r| (r.1, r.2)), Some((10, 10)), "earlier batch kept");
    }
}
