//! Sparse segment indexes: the on-disk entry formats of `.index` and `.timeindex`,
//! the rule that decides when a batch gets an entry, and the lookups.
//!
//! Invariants (checked by [`decode_index`] / [`decode_time_index`] and asserted on push):
//! - offset index: relative offsets and file positions both strictly increase;
//!   entry `i` says "the batch whose base offset is `segment_base + relative_offset`
//!   starts at byte `position` of the segment's `.log` file".
//! - time index: timestamps and relative offsets strictly increase; entry `i` says
//!   "every batch before the batch at `relative_offset` has `max_timestamp <= timestamp_ms`
//!   and this batch's running max is `timestamp_ms`".
//!
//! Entries are little-endian: `.index` = `relative_offset u32 | position u32` (8 bytes),
//! `.timeindex` = `timestamp_ms i64 | relative_offset u32` (12 bytes).

/// Bytes of one `.index` entry.
pub const INDEX_ENTRY_LEN: usize = 8;
/// Bytes of one `.timeindex` entry.
pub const TIME_ENTRY_LEN: usize = 12;

/// One offset-index entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IndexEntry {
    pub relative_offset: u32,
    pub position: u32,
}

/// One time-index entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TimeEntry {
    pub timestamp_ms: i64,
    pub relative_offset: u32,
}

/// What is known about one stored batch; produced by scanning or appending.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SegmentBatch {
    /// Byte position of the batch in its segment file.
    pub position: u64,
    pub base_offset: u64,
    pub record_count: u32,
    pub len_bytes: u32,
    pub max_timestamp: i64,
}

impl SegmentBatch {
    /// Offset just past the batch.
    pub fn next_offset(&self) -> u64 {
        self.base_offset + u64::from(self.record_count)
    }

    /// File position just past the batch.
    pub fn end_position(&self) -> u64 {
        self.position + u64::from(self.len_bytes)
    }
}

/// Why an index file was rejected (the caller rebuilds it from the log).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum IndexProblem {
    #[error("index length {0} is not a multiple of the entry size")]
    BadLength(usize),
    #[error("index entry {0} does not increase")]
    NotIncreasing(usize),
}

impl IndexEntry {
    pub fn encode(&self) -> [u8; INDEX_ENTRY_LEN] {
        let mut out = [0u8; INDEX_ENTRY_LEN];
        out[..4].copy_from_slice(&self.relative_offset.to_le_bytes());
        out[4..].copy_from_slice(&self.position.to_le_bytes());
        out
    }

    fn decode(b: &[u8]) -> Self {
        IndexEntry { relative_offset: u32_at(b, 0), position: u32_at(b, 4) }
    }
}

impl TimeEntry {
    pub fn encode(&self) -> [u8; TIME_ENTRY_LEN] {
        let mut out = [0u8; TIME_ENTRY_LEN];
        out[..8].copy_from_slice(&self.timestamp_ms.to_le_bytes());
        out[8..].copy_from_slice(&self.relative_offset.to_le_bytes());
        out
    }

    fn decode(b: &[u8]) -> Self {
        let mut ts = [0u8; 8];
        ts.copy_from_slice(&b[..8]);
        TimeEntry { timestamp_ms: i64::from_le_bytes(ts), relative_offset: u32_at(b, 8) }
    }
}

/// Decodes and checks a whole `.index` file.
pub fn decode_index(bytes: &[u8]) -> Result<Vec<IndexEntry>, IndexProblem> {
    if !bytes.len().is_multiple_of(INDEX_ENTRY_LEN) {
        return Err(IndexProblem::BadLength(bytes.len()));
    }
    let entries: Vec<IndexEntry> = bytes.chunks_exact(INDEX_ENTRY_LEN).map(IndexEntry::decode).collect();
    for (i, pair) in entries.windows(2).enumerate() {
        if pair[1].relative_offset <= pair[0].relative_offset || pair[1].position <= pair[0].position {
            return Err(IndexProblem::NotIncreasing(i + 1));
        }
    }
    Ok(entries)
}

/// Decodes and checks a whole `.timeindex` file.
pub fn decode_time_index(bytes: &[u8]) -> Result<Vec<TimeEntry>, IndexProblem> {
    if !bytes.len().is_multiple_of(TIME_ENTRY_LEN) {
        return Err(IndexProblem::BadLength(bytes.len()));
    }
    let entries: Vec<TimeEntry> = bytes.chunks_exact(TIME_ENTRY_LEN).map(TimeEntry::decode).collect();
    for (i, pair) in entries.windows(2).enumerate() {
        if pair[1].relative_offset <= pair[0].relative_offset || pair[1].timestamp_ms <= pair[0].timestamp_ms {
            return Err(IndexProblem::NotIncreasing(i + 1));
        }
    }
    Ok(entries)
}

/// The last entry whose relative offset is `<= relative_offset`: the batch to start scanning at.
pub fn lookup(entries: &[IndexEntry], relative_offset: u32) -> Option<IndexEntry> {
    let after = entries.partition_point(|e| e.relative_offset <= relative_offset);
    after.checked_sub(1).map(|i| entries[i])
}

/// The last entry whose running max timestamp is `< timestamp_ms`: every batch up to and
/// including it is older than the target, so a scan for the first batch with
/// `max_timestamp >= timestamp_ms` may start there.
pub fn lookup_time(entries: &[TimeEntry], timestamp_ms: i64) -> Option<TimeEntry> {
    let after = entries.partition_point(|e| e.timestamp_ms < timestamp_ms);
    after.checked_sub(1).map(|i| entries[i])
}

/// Keeps the entries that describe bytes before `position_end` (used to drop
/// entries past a truncation point or past the trusted recovery point).
pub fn truncate_entries(
    index: &mut Vec<IndexEntry>,
    time_index: &mut Vec<TimeEntry>,
    position_end: u64,
    segment_base: u64,
) {
    index.retain(|e| u64::from(e.position) < position_end);
    let last_rel = index.last().map(|e| e.relative_offset);
    // A time entry is only usable if its batch is still in the offset index range.
    time_index.retain(|t| last_rel.is_some_and(|r| t.relative_offset <= r));
    debug_assert!(index.iter().all(|e| segment_base.checked_add(u64::from(e.relative_offset)).is_some()));
}

/// Decides which batches get index entries while a segment grows: the first batch
/// of a segment, then the first batch starting after `interval_bytes` more bytes.
#[derive(Clone, Debug)]
pub struct IndexBuilder {
    segment_base: u64,
    interval_bytes: u64,
    /// Position of the last indexed batch, if any.
    last_position: Option<u64>,
    last_relative: Option<u32>,
    time_max_ms: Option<i64>,
    /// Largest timestamp seen in the segment (also for batches without an entry).
    max_timestamp_ms: Option<i64>,
}

impl IndexBuilder {
    /// A builder for a segment based at `segment_base` that already has `index`/`time_index`
    /// (entries for bytes before the first batch that will be fed).
    pub fn new(segment_base: u64, interval_bytes: u32, index: &[IndexEntry], time_index: &[TimeEntry]) -> Self {
        IndexBuilder {
            segment_base,
            interval_bytes: u64::from(interval_bytes.max(1)),
            last_position: index.last().map(|e| u64::from(e.position)),
            last_relative: index.last().map(|e| e.relative_offset),
            time_max_ms: time_index.last().map(|t| t.timestamp_ms),
            max_timestamp_ms: time_index.last().map(|t| t.timestamp_ms),
        }
    }

    /// Feeds the next batch of the segment; returns the entries to add, if any.
    pub fn on_batch(&mut self, meta: &SegmentBatch) -> (Option<IndexEntry>, Option<TimeEntry>) {
        assert!(meta.base_offset >= self.segment_base, "batch below its segment base");
        let relative = u32::try_from(meta.base_offset - self.segment_base).expect("relative offset fits u32");
        let position = u32::try_from(meta.position).expect("segment position fits u32");
        self.max_timestamp_ms = Some(self.max_timestamp_ms.map_or(meta.max_timestamp, |m| m.max(meta.max_timestamp)));
        let due = match self.last_position {
            None => true,
            Some(last) => meta.position >= last + self.interval_bytes,
        };
        if !due {
            return (None, None);
        }
        debug_assert!(self.last_relative.is_none_or(|r| relative > r));
        self.last_position = Some(meta.position);
        self.last_relative = Some(relative);
        let entry = IndexEntry { relative_offset: relative, position };
        let running_max = self.max_timestamp_ms.unwrap_or(meta.max_timestamp);
        let time = match self.time_max_ms {
            Some(t) if running_max <= t => None,
            _ => {
                self.time_max_ms = Some(running_max);
                Some(TimeEntry { timestamp_ms: running_max, relative_offset: relative })
            }
        };
        (Some(entry), time)
    }

    /// Largest batch `max_timestamp` fed or inherited so far.
    pub fn max_timestamp_ms(&self) -> Option<i64> {
        self.max_timestamp_ms
    }
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(position: u64, base_offset: u64, max_timestamp: i64) -> SegmentBatch {
        SegmentBatch { position, base_offset, record_count: 1, len_bytes: 100, max_timestamp }
    }

    #[test]
    fn builder_indexes_first_batch_then_every_interval() {
        let mut b = IndexBuilder::new(10, 250, &[], &[]);
        let mut entries = vec![];
        for i in 0..10u64 {
            if let (Some(e), _) = b.on_batch(&meta(i * 100, 10 + i, 5)) {
                entries.push(e);
            }
        }
        let positions: Vec<u32> = entries.iter().map(|e| e.position).collect();
        assert_eq!(positions, vec![0, 300, 600, 900]);
        assert_eq!(entries[1].relative_offset, 3);
    }

    #[test]
    fn lookups_at_every_boundary() {
        let idx = vec![
            IndexEntry { relative_offset: 0, position: 0 },
            IndexEntry { relative_offset: 5, position: 500 },
            IndexEntry { relative_offset: 9, position: 900 },
        ];
        let expect = [(0, 0), (4, 0), (5, 500), (8, 500), (9, 900), (1000, 900)];
        for (target, pos) in expect {
            assert_eq!(lookup(&idx, target).map(|e| e.position), Some(pos), "target {target}");
        }
        assert_eq!(lookup(&idx[1..], 4), None);
        let bytes: Vec<u8> = idx.iter().flat_map(|e| e.encode()).collect();
        assert_eq!(decode_index(&bytes).unwrap(), idx);
        assert_eq!(decode_index(&bytes[..7]), Err(IndexProblem::BadLength(7)));
        let mut swapped = bytes.clone();
        swapped[8..16].copy_from_slice(&idx[2].encode());
        assert_eq!(decode_index(&swapped), Err(IndexProblem::NotIncreasing(2)));
    }

    #[test]
    fn time_entries_only_when_running_max_grows() {
        let mut b = IndexBuilder::new(0, 1, &[], &[]);
        let ts = [10, 5, 20, 20, 30];
        let times: Vec<TimeEntry> =
            ts.iter().enumerate().filter_map(|(i, t)| b.on_batch(&meta(i as u64 * 100, i as u64, *t)).1).collect();
        assert_eq!(
            times.iter().map(|t| (t.timestamp_ms, t.relative_offset)).collect::<Vec<_>>(),
            [(10, 0), (20, 2), (30, 4)]
        );
        assert_eq!(lookup_time(&times, 10), None);
        assert_eq!(lookup_time(&times, 11).map(|t| t.relative_offset), Some(0));
        assert_eq!(lookup_time(&times, 21).map(|t| t.relative_offset), Some(2));
        let bytes: Vec<u8> = times.iter().flat_map(|t| t.encode()).collect();
        assert_eq!(decode_time_index(&bytes).unwrap(), times);
    }

    #[test]
    fn truncation_drops_entries_past_the_cut() {
        let mut idx =
            vec![IndexEntry { relative_offset: 0, position: 0 }, IndexEntry { relative_offset: 4, position: 400 }];
        let mut time =
            vec![TimeEntry { timestamp_ms: 1, relative_offset: 0 }, TimeEntry { timestamp_ms: 2, relative_offset: 4 }];
        truncate_entries(&mut idx, &mut time, 400, 0);
        assert_eq!(idx.len(), 1);
        assert_eq!(time.len(), 1);
    }
}
