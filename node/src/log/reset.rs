//! Reset: dropping every record and restarting the log empty at a base offset `start`
//! (a chain learner whose predecessor's retention removed what it lacks continues from
//! the predecessor's log start).
//!
//! Runs under the write and verify locks, only with no append in flight (the chain
//! shell serialises it like a truncation; checked). Order of the on-disk steps, each
//! durable before the next, so a crash at any point leaves a valid log — the old one, a
//! contiguous suffix of it, or the empty log at `start`:
//! 1. the active segment finished (synced, cut to its logical length, checkpointed), so
//!    every remaining segment is whole,
//! 2. a recovery checkpoint naming the empty log at `start` (it vouches for the whole
//!    segments below it, which step 1 made true),
//! 3. every segment unlinked oldest first (a crash leaves a suffix; with none left,
//!    recovery opens the empty log at the checkpoint's offset), dir fsync,
//! 4. the new empty segment `start` created, dir fsync.
//!
//! A failure after step 2 poisons the log (a reopen is the way back).

use super::error::TruncateError;
use super::segment::{self, Segment};
use super::{Failure, Inner, LogError};
use std::rc::Rc;
use strand_core::recovery::{segment_file_name, Checkpoint, SegmentFileKind};

impl Inner {
    pub(super) async fn reset(&self, start: u64) -> Result<(), TruncateError> {
        let _permit = self.lock().await?;
        self.settle_closes().await;
        let _verify = self.verify_lock.acquire_permit(1).await.map_err(|_| LogError::closed())?;
        {
            let st = self.state.borrow();
            if let Some(p) = &st.poisoned {
                return Err(LogError::Poisoned(p.clone()).into());
            }
            if !st.pending.is_empty() || st.written_end != st.log_end {
                return Err(TruncateError::AppendsInFlight { log_end: st.log_end, written_end: st.written_end });
            }
        }
        self.finish_active().await?;
        let checkpoint = Checkpoint { segment_base: start, position: 0, next_offset: start };
        segment::write_checkpoint(&self.storage, &self.dir, &checkpoint).await?;
        if let Err(e) = self.replace_segments(start).await {
            let reason = format!("reset to {start} failed half-way: {e}");
            tracing::error!(dir = %self.dir.display(), "{reason}; refusing further writes to this partition");
            self.state.borrow_mut().poisoned = Some(Failure::new(reason, e.raw_os_error()));
            return Err(e);
        }
        self.notify_progress();
        tracing::info!(dir = %self.dir.display(), start, "log reset");
        Ok(())
    }

    /// Steps 3 and 4 of the module doc, then the in-memory state.
    async fn replace_segments(&self, start: u64) -> Result<(), TruncateError> {
        let bases: Vec<u64> = self.state.borrow().segments.keys().copied().collect();
        for &base in &bases {
            segment::remove_segment_files(&self.storage, &self.dir, base, &segment::SEGMENT_FILES)
                .await
                .map_err(LogError::from)?;
        }
        self.storage.sync_dir(&self.dir).await?;
        let path = self.dir.join(segment_file_name(start, SegmentFileKind::Log));
        let file =
            Rc::new(self.storage.open_segment(&path, self.config.io_mode, true, self.config.dsync_writes()).await?);
        self.storage.sync_dir(&self.dir).await?;
        let mut st = self.state.borrow_mut();
        st.segments.clear();
        st.segments.insert(start, Segment::new(start, file, self.config.index_interval_bytes));
        st.log_start = start;
        st.log_end = start;
        st.written_end = start;
        st.synced_end = start;
        st.unflushed_bytes = 0;
        st.bytes_since_checkpoint = 0;
        st.cache.clear();
        st.share_reservation();
        // Anything still waiting on an older append fails instead of being acknowledged.
        st.epoch += 1;
        st.last_failure = Some((false, Failure::other(format!("discarded by a reset to {start}"))));
        Ok(())
    }
}
