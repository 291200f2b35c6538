//! The read path: offset lookups (sparse index, then a short header walk), byte ranges for
//! zero-copy sending, the direct-mode tail cache, and timestamp lookups.
//!
//! Readers never take the write lock. They copy a snapshot of the segment (file `Rc`, size,
//! index entry) out of the state and then read only below that logical size, which only grows
//! until retention drops the segment (the `Rc` keeps its fd valid).
//! Every header walked is checked (length bounds, contiguous offsets, within the segment);
//! a mismatch is reported as `CorruptSegment` naming the file and position, never served.
//! A segment not yet verified since a restart is verified (see `verify`) before any of its
//! bytes is returned; a result never extends past the valid prefix of a corrupt segment.

use super::error::ReadError;
use super::file::SegmentFile;
use super::segment::{Corruption, Segment, Verify};
use super::{Inner, ReadChunk, ReadResult};
use std::rc::Rc;
use strand_core::index::{lookup, lookup_time, IndexEntry};
use strand_wire::batch::{Batch, BatchHeader, HEADER_LEN};

/// Bytes read at once while walking batch headers from an index entry.
const WALK_WINDOW_BYTES: usize = 16 << 10;

/// What a read needs to know about one segment, copied out of the shared state.
pub(super) struct SegmentView {
    pub(super) file: Rc<SegmentFile>,
    pub(super) base: u64,
    pub(super) size: u64,
    pub(super) next_offset: u64,
    pub(super) start: IndexEntry,
    /// Batch boundaries known from the index after `start`: (position, offset).
    pub(super) boundaries: Vec<(u64, u64)>,
    pub(super) corrupt: Option<Corruption>,
    pub(super) verify: Verify,
}

/// A batch header found by the walk.
#[derive(Clone, Copy)]
pub(super) struct Found {
    pub pos: u64,
    pub base_offset: u64,
    pub next_offset: u64,
    pub len: u64,
    pub max_timestamp: i64,
}

impl Inner {
    pub(super) async fn read(&self, offset: u64, max_bytes: u32) -> Result<ReadResult, ReadError> {
        // At most two rounds: the second runs after the segment was verified (or removed).
        let mut round = 0;
        let view = loop {
            let view = {
                let st = self.state.borrow();
                if offset < st.log_start || offset > st.log_end {
                    return Err(ReadError::OffsetOutOfRange { offset, log_start: st.log_start, log_end: st.log_end });
                }
                if offset >= st.written_end {
                    return Ok(ReadResult { chunks: Vec::new(), bytes_len: 0, next_offset: offset });
                }
                if let Some((chunks, bytes_len, next_offset)) = st.cache.read(offset, max_bytes) {
                    let chunks = chunks.into_iter().map(ReadChunk::Memory).collect();
                    return Ok(ReadResult { chunks, bytes_len, next_offset });
                }
                // Boundaries past this window cannot end the read: the batch holding
                // `offset` starts less than one index interval after its index entry.
                let window = u64::from(max_bytes) + u64::from(self.config.index_interval_bytes);
                self.view(offset, window)
            };
            match view {
                Some(v) if v.verify != Verify::Done && round == 0 => self.ensure_verified(v.base).await?,
                other => break other,
            }
            round += 1;
        };
        let Some(view) = view else {
            return Ok(ReadResult { chunks: Vec::new(), bytes_len: 0, next_offset: offset });
        };
        if view.verify != Verify::Done {
            return Err(ReadError::Io(std::io::Error::other("segment verification did not complete")));
        }
        let first = walk_to(&view, offset, |f| f.next_offset > offset).await?;
        let Some(first) = first else {
            return Err(corrupt(&view.file, view.start.position.into(), format!("offset {offset} not found")));
        };
        let mut end = (first.pos + first.len, first.next_offset);
        for &(pos, next) in &view.boundaries {
            if pos > end.0 && pos - first.pos <= u64::from(max_bytes) {
                end = (pos, next);
            }
        }
        let len = u32::try_from(end.0 - first.pos).unwrap_or(u32::MAX);
        let chunk = ReadChunk::File { file: view.file.clone(), pos: first.pos, len };
        Ok(ReadResult { chunks: vec![chunk], bytes_len: len, next_offset: end.1 })
    }

    /// The segment holding `offset` (caller checked the range), with its nearest index entry
    /// and the batch boundaries within `window` bytes after it.
    fn view(&self, offset: u64, window: u64) -> Option<SegmentView> {
        let st = self.state.borrow();
        let (_, seg) = st.segments.range(..=offset).next_back()?;
        Self::view_of(seg, offset, window)
    }

    /// A view of `seg` starting at the index entry nearest below `offset` (which must be in
    /// the segment), listing the index's batch boundaries up to `window` bytes after that
    /// entry (0: none; the segment's end is always listed). Binary search plus the window:
    /// a read's cost does not grow with the segment's index (it scanned all of it before).
    /// Leaving boundaries out only shortens a read, never makes it wrong.
    pub(super) fn view_of(seg: &Segment, offset: u64, window: u64) -> Option<SegmentView> {
        let rel = u32::try_from(offset.checked_sub(seg.base)?).ok()?;
        let start = lookup(&seg.index, rel).unwrap_or(IndexEntry { relative_offset: 0, position: 0 });
        // A result never extends past the valid prefix of a corrupt segment.
        let (end_pos, end_offset) = seg.corrupt.as_ref().map_or((seg.size, seg.next_offset), |c| (c.pos, c.offset));
        let limit = u64::from(start.position).saturating_add(window);
        let from = seg.index.partition_point(|e| e.position <= start.position);
        let mut boundaries: Vec<(u64, u64)> = seg.index[from..]
            .iter()
            .take_while(|e| u64::from(e.position) < end_pos && u64::from(e.position) <= limit)
            .map(|e| (u64::from(e.position), seg.base + u64::from(e.relative_offset)))
            .collect();
        boundaries.push((end_pos, end_offset));
        Some(SegmentView {
            file: seg.file.clone(),
            base: seg.base,
            size: seg.size,
            next_offset: seg.next_offset,
            start,
            boundaries,
            corrupt: seg.corrupt.clone(),
            verify: seg.verify,
        })
    }

    pub(super) async fn offset_for_timestamp(&self, ts_ms: i64) -> Result<Option<(u64, i64)>, ReadError> {
        let candidate = {
            let st = self.state.borrow();
            st.segments.values().find(|s| s.max_timestamp().is_some_and(|m| m >= ts_ms)).map(|s| s.base)
        };
        if let Some(base) = candidate {
            self.ensure_verified(base).await?;
        }
        let view = {
            let st = self.state.borrow();
            let seg = st.segments.values().find(|s| s.max_timestamp().is_some_and(|m| m >= ts_ms));
            let Some(seg) = seg else { return Ok(None) };
            if seg.verify != Verify::Done {
                return Err(ReadError::Io(std::io::Error::other("segment verification did not complete")));
            }
            let from = lookup_time(&seg.time_index, ts_ms).map_or(0, |t| t.relative_offset);
            let start = lookup(&seg.index, from).unwrap_or(IndexEntry { relative_offset: 0, position: 0 });
            SegmentView {
                file: seg.file.clone(),
                base: seg.base,
                size: seg.size,
                next_offset: seg.next_offset,
                start,
                boundaries: Vec::new(),
                corrupt: seg.corrupt.clone(),
                verify: seg.verify,
            }
        };
        let found = walk_to(&view, view.base, |f| f.max_timestamp >= ts_ms).await?;
        let Some(found) = found else { return Ok(None) };
        let bytes = view.file.read_at(found.pos, found.len as usize).await?;
        let batch = Batch::parse(&bytes).map_err(|e| corrupt(&view.file, found.pos, e.to_string()))?;
        let h = batch.header();
        if h.compression() != strand_wire::batch::Compression::None {
            return Ok(Some((found.base_offset, h.max_timestamp)));
        }
        for record in batch.records() {
            let record = record.map_err(|e| corrupt(&view.file, found.pos, e.to_string()))?;
            let ts = record.timestamp(h);
            if ts >= ts_ms {
                return Ok(Some((found.base_offset + record.offset_delta as u64, ts)));
            }
        }
        Ok(Some((found.base_offset, h.max_timestamp)))
    }
}

/// Walks batch headers from the view's index entry until `stop` holds for a batch (or the
/// segment ends: `None`). `min_offset` is only a sanity bound for the walk's start.
pub(super) async fn walk_to(
    view: &SegmentView,
    min_offset: u64,
    stop: impl Fn(&Found) -> bool,
) -> Result<Option<Found>, ReadError> {
    let mut pos = u64::from(view.start.position);
    let mut offset = view.base + u64::from(view.start.relative_offset);
    debug_assert!(offset <= min_offset.max(offset));
    let mut window: (u64, Vec<u8>) = (pos, Vec::new());
    while pos < view.size {
        if let Some(c) = &view.corrupt {
            if pos >= c.pos {
                return Err(corrupt(&view.file, c.pos, c.reason.clone()));
            }
        }
        let in_window = pos >= window.0 && pos + HEADER_LEN as u64 <= window.0 + window.1.len() as u64;
        if !in_window {
            let len = WALK_WINDOW_BYTES.min((view.size - pos) as usize);
            window = (pos, view.file.read_at(pos, len).await?);
        }
        let at = (pos - window.0) as usize;
        let h = BatchHeader::parse(&window.1[at..]).map_err(|e| corrupt(&view.file, pos, e.to_string()))?;
        let found = check_header(view, pos, offset, &h)?;
        if stop(&found) {
            return Ok(Some(found));
        }
        pos += found.len;
        offset = found.next_offset;
    }
    match &view.corrupt {
        Some(c) => Err(corrupt(&view.file, c.pos, c.reason.clone())),
        None => Ok(None),
    }
}

fn check_header(view: &SegmentView, pos: u64, expected: u64, h: &BatchHeader) -> Result<Found, ReadError> {
    let len = u64::from(h.batch_len);
    let bad = if h.base_offset != expected {
        Some(format!("batch base offset {} where {expected} was expected", h.base_offset))
    } else if len < HEADER_LEN as u64 || pos + len > view.size {
        Some(format!("batch length {len} out of bounds (segment length {})", view.size))
    } else if h.record_count == 0 || h.next_offset() > view.next_offset {
        Some(format!("batch record count {} out of bounds", h.record_count))
    } else {
        None
    };
    match bad {
        Some(reason) => Err(corrupt(&view.file, pos, reason)),
        None => Ok(Found {
            pos,
            base_offset: h.base_offset,
            next_offset: h.next_offset(),
            len,
            max_timestamp: h.max_timestamp,
        }),
    }
}

fn corrupt(file: &SegmentFile, pos: u64, reason: String) -> ReadError {
    tracing::error!(path = ?file.path(), pos, "corrupt segment: {reason}");
    ReadError::CorruptSegment { path: file.path().to_owned(), pos, reason }
}
