//! Closing a rolled segment off the write lock.
//!
//! A roll swaps in the next segment under the write lock and queues the old one here; the
//! log's closer task then makes it durable and tidy — fdatasync (under fsync=never or
//! interval that can be a whole segment of dirty page cache, seconds of writeback), cut
//! the preallocated blocks, write its indexes, make the new segment's name durable — and
//! only then moves the recovery checkpoint to the next segment. Appends go on into the new
//! segment meanwhile; before this, they all waited behind the roll's fdatasync.
//!
//! Invariants: closes complete in roll order (one closer task per log, FIFO queue); the
//! checkpoint never names a segment while an older one is still queued (recovery trusts
//! every segment before the checkpoint's, so that one must be durable first —
//! `checkpoint_active` skips while the queue is non-empty); truncate, reset, close, delete
//! and flush wait until the queue is empty; retention never deletes a queued segment; a
//! failed close poisons the log like a failed fdatasync (never retried).

use super::file::SegmentFile;
use super::segment;
use super::{Failure, Inner, LogError};
use std::rc::Rc;
use std::time::Instant;
use strand_core::recovery::Checkpoint;

/// A segment the roll replaced, waiting for the closer task.
#[derive(Clone)]
pub(super) struct Closing {
    pub base: u64,
    pub file: Rc<SegmentFile>,
    /// Logical length (the file is cut to it).
    pub size: u64,
    /// Blocks are reserved past `size` (preallocation) and must be freed.
    pub reserved: bool,
    /// Bytes written to it but not yet fdatasync'ed.
    pub unflushed: u64,
    /// Base offset of the segment that replaced it.
    pub next_base: u64,
}

impl Inner {
    /// Queues `closing` and starts the closer task if it is not running.
    pub(super) fn queue_close(&self, closing: Closing) {
        let mut st = self.state.borrow_mut();
        debug_assert!(st.closing.back().is_none_or(|c| c.next_base <= closing.base), "closes queue in roll order");
        st.closing.push_back(closing);
        if st.closer_running {
            return;
        }
        let Some(me) = self.me.upgrade() else {
            // Only while the log is being dropped; the next open rescans what was not closed.
            return;
        };
        st.closer_running = true;
        drop(st);
        glommio::spawn_local(run_closer(me)).detach();
    }

    /// Waits until every queued close completed (or failed and poisoned the log).
    pub(super) async fn settle_closes(&self) {
        loop {
            let seen = self.progress.get();
            if self.state.borrow().closing.is_empty() {
                return;
            }
            self.progress_since(seen).await;
        }
    }

    async fn close_one(&self, c: &Closing) -> Result<(), LogError> {
        let started = Instant::now();
        // A dropped log (see `PartitionLog`'s Drop) leaves the rest to the next open.
        let dropped = || self.closed.get();
        if c.unflushed > 0 {
            c.file.fdatasync().await?;
        }
        let synced = started.elapsed();
        if dropped() {
            return Ok(());
        }
        c.file.cut_to(c.size, c.reserved).await?;
        match self.state.borrow_mut().segments.get_mut(&c.base) {
            Some(seg) => seg.prealloc_end = c.size,
            None => {
                return Err(LogError::Poisoned(Failure::other(format!(
                    "segment {} vanished while being closed",
                    c.base
                ))))
            }
        }
        if dropped() {
            return Ok(());
        }
        self.persist_segment_index(c.base).await?;
        if dropped() {
            return Ok(());
        }
        // The next segment's name must be durable before a checkpoint names it.
        self.storage.sync_dir(&self.dir).await?;
        if dropped() {
            return Ok(());
        }
        let checkpoint = Checkpoint { segment_base: c.next_base, position: 0, next_offset: c.next_base };
        segment::write_checkpoint(&self.storage, &self.dir, &checkpoint).await?;
        tracing::debug!(
            dir = %self.dir.display(),
            segment = c.base,
            unflushed = c.unflushed,
            sync_ms = synced.as_millis() as u64,
            total_ms = started.elapsed().as_millis() as u64,
            "segment closed"
        );
        Ok(())
    }
}

/// Closes queued segments in order until the queue is empty.
async fn run_closer(inner: Rc<Inner>) {
    loop {
        let next = inner.state.borrow().closing.front().cloned();
        let Some(closing) = next else {
            inner.state.borrow_mut().closer_running = false;
            return;
        };
        let result = inner.close_one(&closing).await;
        {
            let mut st = inner.state.borrow_mut();
            st.closing.pop_front();
            if let Err(e) = result {
                let reason = format!("closing segment {:?} failed: {e}", closing.file.path());
                tracing::error!("{reason}; refusing further writes to this partition");
                st.poisoned.get_or_insert(Failure::new(reason, e.raw_os_error()));
                st.closing.clear();
            }
        }
        inner.notify_progress();
    }
}
