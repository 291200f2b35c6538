//! Write-behind in buffered mode (fsync=never or interval): the page cache a segment's
//! appends dirtied is handed to the disk in steps of [`WRITEBACK_STEP_BYTES`] soon after it
//! is written (`sync_file_range(SYNC_FILE_RANGE_WRITE)`: starts writeback, waits for
//! nothing, promises nothing about durability), like RocksDB's `bytes_per_sync`.
//!
//! Why: left alone, the kernel keeps a whole segment dirty (1 GiB at 100 MB/s is below
//! the background threshold and younger than `dirty_expire_centisecs`) until the closer's
//! fdatasync at roll pushes it out in one burst. That burst fills the device queue for
//! hundreds of milliseconds, and the next segment's first `fallocate` has to read ext4
//! block bitmaps from behind it: appends, which wait for the reservation, stalled for
//! 0.3–0.7 s at every roll (off-CPU stacks in BENCHMARKS.md, "Stalls at roll"). Written
//! behind, the disk sees the append rate as a steady stream and the roll's fdatasync has
//! at most a step left to write.
//!
//! The call runs on the shard's blocking pool (glommio has no `sync_file_range`); it can
//! wait for the device's request queue there, never on the reactor. At most
//! [`IN_FLIGHT_PER_SHARD`] run at once per shard, so writebacks never take every blocking
//! thread from opens and cold `sendfile`s; a step skipped for that is covered by the next,
//! which starts from where the last one ended.
//!
//! Invariant: a log's started range only moves forward within its active segment and
//! never passes the segment's written size (rounded down to a page, so the partial page
//! the next append rewrites is left alone).

use super::config::{FsyncPolicy, IoMode};
use super::Inner;
use std::cell::Cell;
use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::sync::Arc;

/// Bytes of a segment written before their writeback is started.
pub(crate) const WRITEBACK_STEP_BYTES: u64 = 4 << 20;
/// Writebacks running at once on one shard's blocking pool.
const IN_FLIGHT_PER_SHARD: u32 = 2;
const PAGE_BYTES: u64 = 4096;

thread_local! {
    static IN_FLIGHT: Cell<u32> = const { Cell::new(0) };
}

/// One log's write-behind position.
#[derive(Debug, Default)]
pub(crate) struct WriteBehind {
    /// Base offset of the segment `started_to` belongs to.
    segment: u64,
    /// Writeback was started for the segment's bytes below this.
    started_to: u64,
    /// A writeback of this log is running.
    in_flight: bool,
}

impl WriteBehind {
    /// The range to hand to the disk for a segment `base` written up to `size`, if a step
    /// is due; marks it started.
    fn next(&mut self, base: u64, size: u64) -> Option<(u64, u64)> {
        if self.segment != base {
            *self = WriteBehind { segment: base, started_to: 0, in_flight: self.in_flight };
        }
        let to = size / PAGE_BYTES * PAGE_BYTES;
        if self.in_flight || to < self.started_to + WRITEBACK_STEP_BYTES {
            return None;
        }
        let from = self.started_to;
        self.started_to = to;
        debug_assert!(from < to && to <= size, "writeback range {from}..{to} within the written {size}");
        Some((from, to))
    }
}

impl Inner {
    /// After a write: starts the writeback of the active segment's next step, if one is
    /// due and this shard has a blocking thread to spare. Best effort: a failure is logged
    /// at debug level; the roll's or the interval's fdatasync still writes everything.
    pub(super) fn maybe_write_behind(&self) {
        if self.config.io_mode != IoMode::Buffered || self.config.fsync == FsyncPolicy::Always || self.closed.get() {
            return;
        }
        if IN_FLIGHT.with(Cell::get) >= IN_FLIGHT_PER_SHARD {
            return;
        }
        let mut st = self.state.borrow_mut();
        // A simulated segment has no fd; write-behind is only a hint to the page cache.
        if !st.active().file.has_fd() {
            return;
        }
        let (base, size, file) = {
            let a = st.active();
            (a.base, a.size, a.file.shared())
        };
        let Some((from, to)) = st.writeback.next(base, size) else { return };
        // Weak: a writeback in flight does not keep a closed or deleted log alive.
        let me = self.me.clone();
        st.writeback.in_flight = true;
        drop(st);
        IN_FLIGHT.with(|n| n.set(n.get() + 1));
        glommio::spawn_local(async move {
            let path = file.clone();
            let result = glommio::executor().spawn_blocking(move || start_writeback(&file, from, to - from)).await;
            IN_FLIGHT.with(|n| n.set(n.get() - 1));
            if let Some(me) = me.upgrade() {
                me.state.borrow_mut().writeback.in_flight = false;
            }
            match result {
                Ok(()) => {
                    crate::metrics::WRITEBACK_STARTED_BYTES.fetch_add(to - from, std::sync::atomic::Ordering::Relaxed);
                }
                Err(e) => tracing::debug!(fd = path.as_raw_fd(), from, to, "starting writeback failed: {e}"),
            }
        })
        .detach();
    }
}

/// Starts writeback of the dirty pages of `file` in `[from, from + len)` and returns without
/// waiting for it.
fn start_writeback(file: &Arc<File>, from: u64, len: u64) -> io::Result<()> {
    let (Ok(from), Ok(len)) = (i64::try_from(from), i64::try_from(len)) else {
        return Err(io::Error::from(io::ErrorKind::InvalidInput));
    };
    // SAFETY: a plain syscall on a descriptor `file` keeps open for the call; no memory is
    // passed to the kernel.
    let rc = unsafe { libc::sync_file_range(file.as_raw_fd(), from, len, libc::SYNC_FILE_RANGE_WRITE) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_follow_the_written_size_page_aligned() {
        let mut w = WriteBehind::default();
        assert_eq!(w.next(0, WRITEBACK_STEP_BYTES - 1), None, "less than a step written");
        let size = WRITEBACK_STEP_BYTES + 100;
        assert_eq!(w.next(0, size), Some((0, WRITEBACK_STEP_BYTES)), "the partial page is left alone");
        assert_eq!(w.next(0, size + WRITEBACK_STEP_BYTES / 2), None);
        assert_eq!(
            w.next(0, 2 * WRITEBACK_STEP_BYTES + 5000),
            Some((WRITEBACK_STEP_BYTES, 2 * WRITEBACK_STEP_BYTES + 4096))
        );
    }

    #[test]
    fn one_at_a_time_and_a_new_segment_starts_at_zero() {
        let mut w = WriteBehind::default();
        assert!(w.next(0, WRITEBACK_STEP_BYTES).is_some());
        w.in_flight = true;
        assert_eq!(w.next(0, 3 * WRITEBACK_STEP_BYTES), None, "one writeback of a log at a time");
        w.in_flight = false;
        assert_eq!(w.next(0, 3 * WRITEBACK_STEP_BYTES), Some((WRITEBACK_STEP_BYTES, 3 * WRITEBACK_STEP_BYTES)));
        assert_eq!(w.next(1000, 2 * WRITEBACK_STEP_BYTES), Some((0, 2 * WRITEBACK_STEP_BYTES)), "rolled");
    }
}
