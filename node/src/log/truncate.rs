//! Truncation: cutting the log back to a batch boundary (a chain replica dropping an
//! unconfirmed suffix), and the batch listing a replica rebuilds its chain index from.
//!
//! A truncation runs under the write lock (and the verify lock: no lazy verification
//! scans a file being cut) and only when no append is in flight (the chain shell
//! serialises them; checked). Order of the on-disk steps, each durable before the
//! next, so a crash at any point leaves a valid log that is a prefix of the old one:
//! 1. a recovery checkpoint naming the cut point (true before and after the cut),
//! 2. later segments unlinked newest first (a crash leaves a contiguous prefix), dir fsync,
//! 3. the target segment's file cut and fdatasync'ed,
//! 4. its index files cut and the checkpoint rewritten (`checkpoint_active`).
//!
//! A failure after step 1 poisons the log: the in-memory state may no longer match the
//! files, and a reopen (recovery) is the only way back.

use super::error::{ReadError, TruncateError};
use super::file::{SegmentFile, BLOCK_BYTES};
use super::recover::scan_from_index;
use super::segment::{self, Segment, Verify};
use super::{Failure, Inner, IoMode, LogError};
use std::rc::Rc;
use strand_core::index::truncate_entries;
use strand_core::recovery::{segment_file_name, Checkpoint, SegmentFileKind};

/// One stored batch: where it starts, how many records and bytes it holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StoredBatch {
    pub base_offset: u64,
    pub record_count: u32,
    pub len_bytes: u32,
}

impl Inner {
    pub(super) async fn truncate(&self, to: u64) -> Result<(), TruncateError> {
        let _permit = self.lock().await?;
        self.settle_closes().await;
        // A verification running meanwhile would scan a file being cut (and mark it corrupt).
        let _verify = self.verify_lock.acquire_permit(1).await.map_err(|_| LogError::closed())?;
        if self.check_truncate(to)? {
            return Ok(());
        }
        let (base, pos) = self.cut_point(to).await?;
        let checkpoint = Checkpoint { segment_base: base, position: pos, next_offset: to };
        segment::write_checkpoint(&self.storage, &self.dir, &checkpoint).await?;
        if let Err(e) = self.cut(base, pos, to).await {
            let reason = format!("truncation to {to} failed half-way: {e}");
            tracing::error!(dir = %self.dir.display(), "{reason}; refusing further writes to this partition");
            self.state.borrow_mut().poisoned = Some(Failure::new(reason, e.raw_os_error()));
            return Err(e);
        }
        tracing::info!(dir = %self.dir.display(), to, segment = base, position = pos, "log truncated");
        Ok(())
    }

    /// Validates a truncation request; `Ok(true)` when there is nothing to cut.
    fn check_truncate(&self, to: u64) -> Result<bool, TruncateError> {
        let st = self.state.borrow();
        if let Some(p) = &st.poisoned {
            return Err(LogError::Poisoned(p.clone()).into());
        }
        let idle = st.pending.is_empty() && st.written_end == st.log_end;
        debug_assert!(idle, "truncate must not race appends (the chain shell serialises them)");
        if !idle {
            return Err(TruncateError::AppendsInFlight { log_end: st.log_end, written_end: st.written_end });
        }
        if to > st.log_end {
            return Err(TruncateError::BeyondEnd { to, log_end: st.log_end });
        }
        if to < st.log_start {
            return Err(TruncateError::BelowStart { to, log_start: st.log_start });
        }
        Ok(to == st.log_end)
    }

    /// The segment that ends up last and the file position of `to` in it. `to` is the end of
    /// the segment holding offset `to - 1` (or the start of the first segment).
    async fn cut_point(&self, to: u64) -> Result<(u64, u64), TruncateError> {
        let view = {
            let st = self.state.borrow();
            let first = st.segments.iter().next().filter(|(b, _)| **b == to);
            let Some((&base, seg)) = first.or_else(|| st.segments.range(..to).next_back()) else {
                return Err(TruncateError::BelowStart { to, log_start: st.log_start });
            };
            if let Some(c) = seg.corrupt.as_ref().filter(|c| to > c.offset) {
                let path = seg.file.path().to_owned();
                return Err(ReadError::CorruptSegment { path, pos: c.pos, reason: c.reason.clone() }.into());
            }
            if to == seg.next_offset {
                return Ok((base, seg.size));
            }
            Self::view_of(seg, to, 0).ok_or(TruncateError::BelowStart { to, log_start: st.log_start })?
        };
        let found = super::read::walk_to(&view, to, |f| f.next_offset > to).await?;
        match found {
            Some(f) if f.base_offset == to => Ok((view.base, f.pos)),
            Some(f) => Err(TruncateError::NotBoundary {
                to,
                path: view.file.path().to_owned(),
                pos: f.pos,
                found: f.base_offset,
            }),
            None => Err(TruncateError::NotBoundary {
                to,
                path: view.file.path().to_owned(),
                pos: view.size,
                found: view.next_offset,
            }),
        }
    }

    /// Steps 2–4 of the module doc, then the in-memory state.
    async fn cut(&self, base: u64, pos: u64, to: u64) -> Result<(), TruncateError> {
        let later: Vec<u64> = self.state.borrow().segments.range(base + 1..).map(|(b, _)| *b).rev().collect();
        for b in &later {
            segment::remove_segment_files(&self.storage, &self.dir, *b, &segment::SEGMENT_FILES)
                .await
                .map_err(LogError::from)?;
            self.state.borrow_mut().segments.remove(b);
        }
        if !later.is_empty() {
            self.storage.sync_dir(&self.dir).await?;
        }
        let file = match later.is_empty() {
            true => self.state.borrow().active().file.clone(),
            // The target was a closed segment: reopen it as the active one (O_DSYNC if configured).
            false => {
                let path = self.dir.join(segment_file_name(base, SegmentFileKind::Log));
                Rc::new(self.storage.open_segment(&path, self.config.io_mode, false, self.config.dsync_writes()).await?)
            }
        };
        file.truncate(pos).await?;
        file.fdatasync().await?;
        let seg = self.rebuild_segment(base, file, pos, to).await?;
        {
            let mut st = self.state.borrow_mut();
            st.segments.insert(base, seg);
            st.log_end = to;
            st.written_end = to;
            st.synced_end = to;
            st.unflushed_bytes = 0;
            st.bytes_since_checkpoint = 0;
            st.cache.truncate(to);
            st.share_reservation();
            // Anything still waiting on an older append fails instead of being acknowledged.
            st.epoch += 1;
            st.last_failure = Some((false, Failure::other(format!("discarded by a truncation to {to}"))));
        }
        self.notify_progress();
        self.checkpoint_active(Checkpoint { segment_base: base, position: pos, next_offset: to }).await?;
        Ok(())
    }

    /// The in-memory state of segment `base` after its file was cut to `pos`: index entries
    /// past the cut dropped, the bytes after the last kept entry rescanned, the direct-mode
    /// tail block reloaded.
    async fn rebuild_segment(
        &self,
        base: u64,
        file: Rc<SegmentFile>,
        pos: u64,
        to: u64,
    ) -> Result<Segment, TruncateError> {
        let (mut index, mut time_index, persisted, opened_at, was_done) = {
            let st = self.state.borrow();
            let old = st
                .segments
                .get(&base)
                .ok_or_else(|| LogError::Poisoned(Failure::other(format!("segment {base} vanished"))))?;
            (old.index.clone(), old.time_index.clone(), old.persisted, old.opened_at, old.verify == Verify::Done)
        };
        truncate_entries(&mut index, &mut time_index, pos, base);
        let mut seg = Segment::new(base, file.clone(), self.config.index_interval_bytes);
        seg.persisted = persisted;
        let end = match scan_from_index(&mut seg, index, time_index, &self.config, pos).await? {
            Some(end) => end,
            None => scan_from_index(&mut seg, Vec::new(), Vec::new(), &self.config, pos)
                .await?
                .ok_or_else(|| LogError::Poisoned(Failure::other("a scan from position 0 was rejected")))?,
        };
        if end.cut.is_some() || end.valid_len != pos || end.next_offset != to {
            let reason =
                format!("rescan after the cut ended at {} / offset {} ({:?})", end.valid_len, end.next_offset, end.cut);
            return Err(LogError::CorruptSegment { path: file.path().to_owned(), pos: end.valid_len, reason }.into());
        }
        if was_done {
            seg.verify = Verify::Done;
        }
        seg.opened_at = opened_at;
        seg.prealloc_end = pos;
        if self.config.io_mode == IoMode::Direct {
            let tail_start = pos - pos % BLOCK_BYTES;
            seg.tail = file.read_at(tail_start, (pos - tail_start) as usize).await?;
        }
        Ok(seg)
    }

    /// Every batch of the log in offset order (headers only: bytes are not CRC-checked here).
    pub(super) async fn stored_batches(&self) -> Result<Vec<StoredBatch>, ReadError> {
        let bases: Vec<u64> = self.state.borrow().segments.keys().copied().collect();
        let out = std::cell::RefCell::new(Vec::new());
        for base in bases {
            let view = {
                let st = self.state.borrow();
                let Some(seg) = st.segments.get(&base) else { continue };
                Self::view_of(seg, base, 0)
            };
            let Some(mut view) = view else { continue };
            view.start = strand_core::index::IndexEntry { relative_offset: 0, position: 0 };
            super::read::walk_to(&view, base, |f| {
                let batch = StoredBatch {
                    base_offset: f.base_offset,
                    record_count: (f.next_offset - f.base_offset) as u32,
                    len_bytes: f.len as u32,
                };
                out.borrow_mut().push(batch);
                false
            })
            .await?;
        }
        Ok(out.into_inner())
    }
}
