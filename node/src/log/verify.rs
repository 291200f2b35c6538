//! Lazy verification of segments the recovery checkpoint vouched for.
//!
//! Open does not read the bytes of closed segments before the checkpoint (restart time stays
//! bounded by unflushed bytes), so those bytes have never been CRC-checked by this process.
//! The first read touching such a segment validates its unchecked prefix here — every batch
//! read and CRC-checked in bounded chunks through io_uring, yielding between chunks so the
//! reactor keeps serving — before any byte of it is served. The result is cached in the
//! segment's `verify` state; corruption is recorded as the segment's `corrupt` mark, so
//! reads at or past the damage fail with `CorruptSegment` while earlier batches stay readable.
//!
//! A background scrubber (one task per opened log, in a low-share task queue of the shard)
//! verifies the remaining unverified segments oldest first, starting `SCRUB_DELAY_MS` after
//! open, so damage in data nobody reads is still reported within minutes of a restart.
//!
//! Invariants: a segment is verified at most once per process; verifications of one
//! partition run one at a time (`verify_lock`), so concurrent readers wait for the first one
//! instead of repeating it; no `RefCell` borrow is held across an await.

use super::error::ReadError;
use super::file::SegmentFile;
use super::segment::{Corruption, Verify};
use super::Inner;
use std::cell::Cell;
use std::rc::{Rc, Weak};
use std::time::Duration;
use strand_core::recovery::{ScanEnd, ScanStep, Scanner};

/// Delay between open and the scrubber's first verification (lets startup traffic go first).
const SCRUB_DELAY_MS: u64 = 5_000;
/// Share of the scrubber's task queue (the default queue has 1000).
const SCRUB_SHARES: usize = 50;

thread_local! {
    /// The shard's low-priority task queue for scrubbers, created on first use.
    static SCRUB_QUEUE: Cell<Option<glommio::TaskQueueHandle>> = const { Cell::new(None) };
}

/// Starts the background scrubber of a freshly opened log if it has unverified segments.
pub(super) fn spawn_scrubber(inner: &Rc<Inner>) {
    let pending = inner.state.borrow().segments.values().any(|s| s.verify != Verify::Done);
    if !pending {
        return;
    }
    let queue = SCRUB_QUEUE.with(|q| {
        let handle = q.get().unwrap_or_else(|| {
            let shares = glommio::Shares::Static(SCRUB_SHARES);
            glommio::executor().create_task_queue(shares, glommio::Latency::NotImportant, "log-scrub")
        });
        q.set(Some(handle));
        handle
    });
    let weak = Rc::downgrade(inner);
    match glommio::spawn_local_into(scrub(weak), queue) {
        Ok(task) => {
            task.detach();
        }
        Err(e) => tracing::warn!(dir = %inner.dir.display(), "cannot start the segment scrubber: {e}"),
    }
}

/// Verifies every unverified segment, oldest first, until none is left or the log is gone.
async fn scrub(inner: Weak<Inner>) {
    glommio::timer::sleep(Duration::from_millis(SCRUB_DELAY_MS)).await;
    loop {
        let Some(inner) = inner.upgrade() else { return };
        if inner.closed.get() {
            return;
        }
        let next = inner.state.borrow().segments.values().find(|s| s.verify != Verify::Done).map(|s| s.base);
        let Some(base) = next else { return };
        if let Err(e) = inner.ensure_verified(base).await {
            tracing::warn!(dir = %inner.dir.display(), segment = base, "scrubber could not verify segment: {e}");
            return;
        }
    }
}

impl Inner {
    /// Makes sure the segment based at `base` has been verified (a no-op when it was, or
    /// when retention removed it meanwhile). Corruption is recorded, not returned: the
    /// caller's read then reports it for the affected positions only.
    pub(super) async fn ensure_verified(&self, base: u64) -> Result<(), ReadError> {
        if self.pending_verification(base).is_none() {
            return Ok(());
        }
        let _permit = self
            .verify_lock
            .acquire_permit(1)
            .await
            .map_err(|_| ReadError::Io(std::io::Error::other("log is closed")))?;
        // Another reader may have verified it while this one waited.
        let Some((file, end_pos, end_offset)) = self.pending_verification(base) else { return Ok(()) };
        let started = std::time::Instant::now();
        let end = scan_prefix(&file, base, end_pos).await?;
        let corruption = judge(&end, end_pos, end_offset);
        let mut st = self.state.borrow_mut();
        let Some(seg) = st.segments.get_mut(&base) else { return Ok(()) };
        seg.verify = Verify::Done;
        match corruption {
            None => tracing::debug!(
                path = %file.path().display(),
                bytes = end_pos,
                elapsed_ms = started.elapsed().as_millis() as u64,
                "segment verified"
            ),
            Some(c) => {
                tracing::error!(
                    path = %file.path().display(),
                    pos = c.pos,
                    offset = c.offset,
                    "corrupt segment found by verification, refusing to serve from this position on: {}",
                    c.reason
                );
                seg.mark_corrupt(c);
            }
        }
        Ok(())
    }

    /// The file and the unchecked prefix of segment `base`, if it still needs verification.
    fn pending_verification(&self, base: u64) -> Option<(Rc<SegmentFile>, u64, u64)> {
        let st = self.state.borrow();
        let seg = st.segments.get(&base)?;
        match seg.verify {
            Verify::Done => None,
            Verify::Pending { end_pos, end_offset } => Some((seg.file.clone(), end_pos, end_offset)),
        }
    }
}

/// Validates the batches in `[0, end_pos)` of `file`, whose first batch has offset `base`.
async fn scan_prefix(file: &SegmentFile, base: u64, end_pos: u64) -> Result<ScanEnd, ReadError> {
    let mut scanner = Scanner::new(0, base, end_pos);
    let mut step = scanner.start();
    loop {
        match step {
            ScanStep::Done(end) => return Ok(end),
            ScanStep::Read { position, len } => {
                let chunk = file.read_at(position, len as usize).await?;
                step = scanner.feed(&chunk, &mut |_| {});
                // CRC work is CPU-bound: let the shard's other tasks run between chunks.
                glommio::yield_if_needed().await;
            }
        }
    }
}

/// Compares a prefix scan with what the rest of the segment (scanned at open) expects.
fn judge(end: &ScanEnd, end_pos: u64, end_offset: u64) -> Option<Corruption> {
    let reason = match &end.cut {
        Some(cut) => format!("invalid data: {cut:?}"),
        None if end.valid_len != end_pos => format!("batches end at {} instead of {end_pos}", end.valid_len),
        None if end.next_offset != end_offset => {
            format!("batches before position {end_pos} end at offset {} instead of {end_offset}", end.next_offset)
        }
        None => return None,
    };
    Some(Corruption { pos: end.valid_len, offset: end.next_offset, reason })
}

#[cfg(test)]
mod tests {
    use super::*;
    use strand_core::recovery::CutReason;

    #[test]
    fn judge_accepts_only_an_exact_match() {
        let ok = ScanEnd { valid_len: 100, next_offset: 7, cut: None };
        assert_eq!(judge(&ok, 100, 7), None);
        let bad_offset = judge(&ok, 100, 8).expect("offset mismatch");
        assert_eq!((bad_offset.pos, bad_offset.offset), (100, 7));
        let cut = ScanEnd { valid_len: 40, next_offset: 3, cut: Some(CutReason::ZeroFill) };
        let c = judge(&cut, 100, 7).expect("cut");
        assert_eq!((c.pos, c.offset), (40, 3));
        assert!(c.reason.contains("ZeroFill"), "{}", c.reason);
    }
}
