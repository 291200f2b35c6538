//! Zero-ahead under `fsync=always`: the active segment's blocks past its data are written
//! with zeros (and synced) before appends reach them, off the append path.
//!
//! Why: a data sync of a write into a hole or a preallocated (unwritten) extent, or one that
//! moves the file size, must also commit the inode's extent and size change — ext4 writes
//! journal blocks before the cache flush. An overwrite of blocks already written and synced
//! only flushes the data. fio on this project's VM: 4 KiB write + fdatasync into a laid-out
//! file p50 100–110 µs, into a growing or fallocated one 162–183 µs (BENCHMARKS.md, "fsync=always
//! and zero-ahead"). Databases do the same for their WAL (pre-zeroed or recycled files).
//!
//! How: after a write, the lock holder asks [`ZeroPolicy::next`] whether less than half a
//! chunk is zeroed ahead of the data; if so it marks `[from, to)` as being zeroed and spawns
//! a task that writes the zeros (≤ 1 MiB pieces) and fdatasyncs them, then raises the
//! segment's `zeroed_end` and `prealloc_end`. Appends keep writing below `from` meanwhile.
//!
//! Invariants: a zero write never overlaps a data write — while `[from, to)` is in flight,
//! an append whose padded end passes `from` waits for it ([`Inner::settle_zeroing`]), and
//! every other write-lock holder (roll, truncate, reset, retention, close, delete, flush)
//! waits for it before it runs, so the active segment cannot change under the zeroing task.
//! `from` is at or past the data's last block, so the zeros never cover a byte of data.
//! The zeros are not data: recovery drops a zero tail (`CutReason::ZeroFill`) and closing a
//! segment cuts it to its logical length (`prealloc_end > size`). A failed zero write or
//! sync only costs the speed-up (the data path's own syncs find real IO errors).

use std::rc::Rc;
use std::time::{Duration, Instant};

use super::error::Failure;
use super::file::{SegmentFile, ZeroFailure, BLOCK_BYTES};
use super::{FsyncPolicy, Inner};

/// Smallest zero-ahead chunk: what a new or quiet partition keeps zeroed ahead (a
/// thousand one-record partitions hold 64 MiB of zeros, not gigabytes).
pub(crate) const ZERO_CHUNK_MIN_BYTES: u64 = 64 << 10;
/// A partition that starts its next zeroing within [`ZERO_GROW_WINDOW`] of the last one
/// doubles its chunk up to this: fewer, larger zero writes, each with one flush, sit in
/// front of fewer appends' syncs (measured: 1 MiB chunks gave a better p99 than 256 KiB).
pub(crate) const ZERO_CHUNK_STEADY_BYTES: u64 = 1 << 20;
/// Largest chunk, reached only by a partition whose appends caught up with its zeroing.
pub(crate) const ZERO_CHUNK_MAX_BYTES: u64 = 16 << 20;
/// See [`ZERO_CHUNK_STEADY_BYTES`].
const ZERO_GROW_WINDOW: Duration = Duration::from_secs(1);

const _: () = assert!(ZERO_CHUNK_MIN_BYTES.is_multiple_of(BLOCK_BYTES));
const _: () = assert!(ZERO_CHUNK_STEADY_BYTES.is_multiple_of(ZERO_CHUNK_MIN_BYTES));
const _: () = assert!(ZERO_CHUNK_MAX_BYTES.is_multiple_of(ZERO_CHUNK_STEADY_BYTES));

/// One log's zero-ahead chunk size: it starts at [`ZERO_CHUNK_MIN_BYTES`], doubles up to
/// [`ZERO_CHUNK_STEADY_BYTES`] while zeroings follow each other within a second, and
/// doubles on up to [`ZERO_CHUNK_MAX_BYTES`] whenever an append had to wait for the
/// zeroing (the appends outran it).
#[derive(Debug)]
pub(crate) struct ZeroPolicy {
    chunk: u64,
    started_at: Option<Instant>,
}

impl Default for ZeroPolicy {
    fn default() -> Self {
        ZeroPolicy { chunk: ZERO_CHUNK_MIN_BYTES, started_at: None }
    }
}

impl ZeroPolicy {
    /// The block-aligned range to zero next (starting now) in a segment whose data ends at
    /// `size`, zeroed up to `zeroed`, whose blocks end at `cap` (a block multiple); `None`
    /// while at least half a chunk is zeroed ahead of the data, or nothing is left below `cap`.
    pub(crate) fn next(&mut self, size: u64, zeroed: u64, cap: u64, now: Instant) -> Option<(u64, u64)> {
        let from = zeroed.max(size.div_ceil(BLOCK_BYTES) * BLOCK_BYTES);
        if from >= cap || from - size >= self.chunk / 2 {
            return None;
        }
        let recent = self.started_at.is_some_and(|t| now.saturating_duration_since(t) < ZERO_GROW_WINDOW);
        if recent && self.chunk < ZERO_CHUNK_STEADY_BYTES {
            self.chunk = (self.chunk * 2).min(ZERO_CHUNK_STEADY_BYTES);
        }
        self.started_at = Some(now);
        let to = (from + self.chunk).min(cap);
        debug_assert!(from >= size && from < to && from.is_multiple_of(BLOCK_BYTES) && to.is_multiple_of(BLOCK_BYTES));
        Some((from, to))
    }

    /// An append reached the range being zeroed and waited: zero further ahead next time.
    pub(crate) fn caught_up(&mut self) {
        self.chunk = (self.chunk * 2).min(ZERO_CHUNK_MAX_BYTES);
    }

    #[cfg(test)]
    pub(crate) fn chunk(&self) -> u64 {
        self.chunk
    }
}

/// The zeroing in flight: segment `base`, bytes from `from` on.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Zeroing {
    pub base: u64,
    pub from: u64,
}

impl Inner {
    /// Under fsync=always, starts zeroing ahead of the active segment's data when it is
    /// due (see [`ZeroPolicy::next`]). Caller holds the write lock.
    pub(super) fn maybe_zero_ahead(&self) {
        if self.config.fsync != FsyncPolicy::Always || self.closed.get() {
            return;
        }
        let mut st = self.state.borrow_mut();
        if st.zeroing.is_some() || st.poisoned.is_some() {
            return;
        }
        let cap = super::reserve::segment_cap(self.limits.get().segment_bytes);
        let (base, file, size, zeroed, prealloc_end) = {
            let a = st.active();
            (a.base, a.file.clone(), a.size, a.zeroed_end, a.prealloc_end)
        };
        let Some((from, to)) = st.zero.next(size, zeroed, cap, Instant::now()) else { return };
        let extra = to.saturating_sub(prealloc_end.max(size));
        if !st.free_space.admits_reservation(extra, self.config.min_free_bytes) {
            return;
        }
        let Some(me) = self.me.upgrade() else { return };
        st.zeroing = Some(Zeroing { base, from });
        drop(st);
        glommio::spawn_local(async move { me.zero(base, file, from, to).await }).detach();
    }

    async fn zero(&self, base: u64, file: Rc<SegmentFile>, from: u64, to: u64) {
        let closed = || self.closed.get();
        let result = file.write_zeros(from, to, closed).await;
        let mut st = self.state.borrow_mut();
        let z = st.zeroing.take();
        assert!(z.is_some_and(|z| z.base == base && z.from == from), "one zeroing at a time: {z:?}");
        // Every lock holder that could roll, cut or drop the segment waited for this task.
        let active = st.active().base;
        assert!(self.closed.get() || active == base, "segment {base} stopped being active while zeroed (now {active})");
        match result {
            Ok(true) => {
                if let Some(seg) = st.segments.get_mut(&base) {
                    assert!(seg.size <= from, "zeros written over data: size {} > {from}", seg.size);
                    seg.zeroed_end = seg.zeroed_end.max(to);
                    seg.prealloc_end = seg.prealloc_end.max(to);
                }
                st.share_reservation();
            }
            Ok(false) => {}
            Err(ZeroFailure::Write(e)) => tracing::debug!(path = ?file.path(), "zeroing {from}..{to} failed: {e}"),
            // The sync covered appended data too: never retried, the log refuses further
            // writes (found by the log simulator, seed 248: the zeroing's failed fdatasync
            // was swallowed and the next group commit's fdatasync acknowledged appends).
            Err(ZeroFailure::Sync(e)) => {
                let reason = format!("fdatasync of {:?} (zero-ahead) failed: {e}", file.path());
                tracing::error!("{reason}; refusing further writes to this partition");
                st.poisoned.get_or_insert(Failure::new(reason, e.raw_os_error()));
            }
        }
        drop(st);
        self.notify_progress();
    }

    /// Whether an append ending at `end` in segment `base` must wait for the zeroing in flight.
    pub(super) fn reaches_zeroing(&self, base: u64, end: u64) -> bool {
        let padded = end.div_ceil(BLOCK_BYTES) * BLOCK_BYTES;
        self.state.borrow().zeroing.is_some_and(|z| z.base == base && padded > z.from)
    }

    /// Waits until no zeroing is in flight.
    pub(super) async fn settle_zeroing(&self) {
        while self.state.borrow().zeroing.is_some() {
            let seen = self.progress.get();
            self.progress_since(seen).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CAP: u64 = 64 << 20;

    #[test]
    fn zeroes_from_the_block_after_the_data_and_keeps_half_a_chunk_ahead() {
        let t = Instant::now();
        let mut p = ZeroPolicy::default();
        let (min, half) = (ZERO_CHUNK_MIN_BYTES, ZERO_CHUNK_MIN_BYTES / 2);
        assert_eq!(p.next(100, 0, CAP, t), Some((BLOCK_BYTES, BLOCK_BYTES + min)));
        // Enough ahead: nothing to do until the data is within half a chunk.
        let zeroed = BLOCK_BYTES + min;
        assert_eq!(p.next(100, zeroed, CAP, t), None);
        assert_eq!(p.next(zeroed - half, zeroed, CAP, t), None);
        // Data past what was zeroed (a fallback write): start after the data. Ten seconds
        // later: no growth.
        let later = t + Duration::from_secs(10);
        assert_eq!(p.next(zeroed + 10, zeroed, CAP, later), Some((zeroed + BLOCK_BYTES, zeroed + BLOCK_BYTES + min)));
        assert_eq!(p.chunk(), min);
    }

    #[test]
    fn zeroings_in_quick_succession_grow_the_chunk_to_the_steady_size_only() {
        let t = Instant::now();
        let mut p = ZeroPolicy::default();
        let mut zeroed = 0u64;
        for i in 0..20u32 {
            let size = zeroed.saturating_sub(BLOCK_BYTES);
            let (from, to) = p.next(size, zeroed, CAP, t + Duration::from_millis(u64::from(i))).expect("due");
            assert_eq!(from, zeroed.max(size.div_ceil(BLOCK_BYTES) * BLOCK_BYTES));
            zeroed = to;
        }
        assert_eq!(p.chunk(), ZERO_CHUNK_STEADY_BYTES);
    }

    #[test]
    fn never_passes_the_segment_cap() {
        let t = Instant::now();
        let mut p = ZeroPolicy::default();
        let cap = 300 << 10;
        assert_eq!(p.next(280 << 10, 280 << 10, cap, t), Some((280 << 10, cap)));
        assert_eq!(p.next(cap - 1, cap, cap, t), None);
        assert_eq!(p.next(cap, cap, cap, t), None);
    }

    #[test]
    fn the_chunk_doubles_when_appends_catch_up_and_stops_at_the_max() {
        let mut p = ZeroPolicy::default();
        p.caught_up();
        assert_eq!(p.chunk(), 2 * ZERO_CHUNK_MIN_BYTES);
        for _ in 0..20 {
            p.caught_up();
        }
        assert_eq!(p.chunk(), ZERO_CHUNK_MAX_BYTES);
    }

    /// A roll while a long zeroing is in flight waits for it: the zeroing ends while its
    /// segment is still active (asserted in `Inner::zero`), and the rolled segment ends at
    /// its last batch. Without the roll's wait the assert trips.
    #[test]
    fn a_roll_waits_for_a_zeroing_in_flight() {
        use crate::log::{IoMode, LogConfig, PartitionLog};
        use strand_wire::batch::BatchBuilder;
        let batch = |len: usize| {
            let mut b = BatchBuilder::new();
            b.push(1, None, Some(&vec![7u8; len]), &[]);
            bytes::BytesMut::from(&b.finish()[..])
        };
        for io_mode in [IoMode::Direct, IoMode::Buffered] {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().to_owned();
            glommio::LocalExecutorBuilder::default()
                .spawn(move || async move {
                    let config =
                        LogConfig { io_mode, fsync: FsyncPolicy::Always, min_free_bytes: 0, ..LogConfig::default() };
                    let log = PartitionLog::open(&path, config).await.unwrap();
                    log.inner.state.borrow_mut().zero = ZeroPolicy { chunk: ZERO_CHUNK_MAX_BYTES, started_at: None };
                    log.append(batch(100)).await.unwrap();
                    assert!(log.inner.state.borrow().zeroing.is_some(), "{io_mode}: a 16 MiB zeroing is in flight");
                    log.set_limits(crate::log::SegmentLimits { segment_bytes: 4096, ..log.limits() });
                    log.append(batch(5000)).await.unwrap();
                    let (segments, zeroing) = {
                        let st = log.inner.state.borrow();
                        (st.segments.len(), st.zeroing)
                    };
                    assert_eq!(segments, 2, "{io_mode}: the second append rolled");
                    assert!(zeroing.is_none(), "{io_mode}: the roll waited for the zeroing");
                    log.close().await.unwrap();
                })
                .unwrap()
                .join()
                .unwrap();
            let first = dir
                .path()
                .join(strand_core::recovery::segment_file_name(0, strand_core::recovery::SegmentFileKind::Log));
            let len = std::fs::metadata(&first).unwrap().len();
            assert!(len < 4096, "{io_mode}: the rolled segment is cut to its one small batch ({len} bytes)");
        }
    }
}
