//! Disk reservation of segment files: how far ahead of the logical length blocks are
//! reserved (fallocate), the node-wide sum of outstanding reservations, and the
//! rate-limited log line of `STORAGE_FULL` refusals.
//!
//! The reservation step adapts to the append rate: a new or quiet partition reserves
//! `PREALLOC_STEP_MIN_BYTES` at a time, a partition that keeps extending its reservation
//! within `PREALLOC_GROW_WINDOW_MS` doubles the step up to `PREALLOC_STEP_MAX_BYTES`, and a
//! pause of `PREALLOC_QUIET_MS` resets it. So a thousand idle partitions hold a thousand
//! small reservations, while a busy one still writes into reserved blocks (no extending
//! O_DIRECT writes, see `SegmentFile::preallocate`). A reservation never passes the
//! segment's size limit, and a rolled segment is cut to its logical length.
//!
//! Invariant: `RESERVED_BYTES` is the sum over open logs of `prealloc_end - size` of their
//! active segment (each log adds and removes only its own share, see `Share`).

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

use super::file::BLOCK_BYTES;

/// Smallest reservation step: what a new or quiet partition reserves at a time.
pub(crate) const PREALLOC_STEP_MIN_BYTES: u64 = 64 << 10;
/// Largest reservation step (Redpanda's fixed step), reached by a busy partition.
pub(crate) const PREALLOC_STEP_MAX_BYTES: u64 = 32 << 20;
/// Extending the reservation again within this window doubles the step.
const PREALLOC_GROW_WINDOW_MS: u128 = 1000;
/// A partition that did not extend its reservation for this long starts small again.
const PREALLOC_QUIET_MS: u128 = 10_000;
/// Steps a busy partition's new segment reserves at its roll (see [`Prealloc::at_roll`]).
const PREALLOC_ROLL_STEPS: u64 = 4;
/// At most one `STORAGE_FULL` log line per interval, node-wide.
pub(crate) const STORAGE_FULL_LOG_INTERVAL: Duration = Duration::from_secs(10);

const _: () = assert!(PREALLOC_STEP_MIN_BYTES.is_multiple_of(BLOCK_BYTES));
const _: () = assert!(PREALLOC_STEP_MAX_BYTES.is_multiple_of(PREALLOC_STEP_MIN_BYTES));

/// Bytes reserved (fallocated) past the logical end of every open log's active segment.
static RESERVED_BYTES: AtomicU64 = AtomicU64::new(0);

/// Bytes currently reserved ahead of the data, node-wide.
pub fn reserved_bytes() -> u64 {
    RESERVED_BYTES.load(Relaxed)
}

/// One log's adaptive reservation step.
#[derive(Debug)]
pub(crate) struct Prealloc {
    step_bytes: u64,
    extended_at: Option<Instant>,
}

impl Default for Prealloc {
    fn default() -> Self {
        Prealloc { step_bytes: PREALLOC_STEP_MIN_BYTES, extended_at: None }
    }
}

/// The most a segment's blocks are reserved (or zeroed) up to: `segment_bytes` rounded up
/// to a whole block.
pub(crate) fn segment_cap(segment_bytes: u64) -> u64 {
    segment_bytes.div_ceil(BLOCK_BYTES) * BLOCK_BYTES
}

impl Prealloc {
    /// Where to reserve up to for a write ending at `end` when blocks are reserved up to
    /// `prealloc_end`; `None` when the reservation already covers the write. The result is
    /// a multiple of the block size, past `end`, and at most `segment_bytes` rounded up to
    /// a block (unless `end` itself is past it, a batch larger than the segment limit).
    pub(crate) fn plan(&mut self, end: u64, prealloc_end: u64, segment_bytes: u64, now: Instant) -> Option<u64> {
        if end <= prealloc_end {
            return None;
        }
        let since_ms = self.extended_at.map(|t| now.saturating_duration_since(t).as_millis());
        self.step_bytes = match since_ms {
            Some(ms) if ms < PREALLOC_GROW_WINDOW_MS => (self.step_bytes * 2).min(PREALLOC_STEP_MAX_BYTES),
            Some(ms) if ms >= PREALLOC_QUIET_MS => PREALLOC_STEP_MIN_BYTES,
            _ => self.step_bytes,
        };
        self.extended_at = Some(now);
        let cap = segment_cap(segment_bytes);
        let want = end.div_ceil(self.step_bytes).saturating_mul(self.step_bytes);
        let to = want.min(cap).max(end.div_ceil(BLOCK_BYTES) * BLOCK_BYTES);
        debug_assert!(to >= end && to.is_multiple_of(BLOCK_BYTES));
        Some(to)
    }

    /// The first reservation of a new segment, made by the roll before the old segment's
    /// close starts: `PREALLOC_ROLL_STEPS` steps (at most the segment size) when the
    /// partition extended its reservation within the grow window, else `None` (a quiet
    /// partition reserves on its first write, as before). Why at the roll: a `fallocate`
    /// may read block bitmaps, and right after the roll the closer's fdatasync keeps the
    /// device busy flushing its cache; a reservation made then stalled appends by 50 ms
    /// (BENCHMARKS.md, "Stalls at roll"). Made before the close, and long enough to outlast
    /// the flush at the partition's rate, it meets an idle device.
    pub(crate) fn at_roll(&mut self, segment_bytes: u64, now: Instant) -> Option<u64> {
        let busy =
            self.extended_at.is_some_and(|t| now.saturating_duration_since(t).as_millis() < PREALLOC_GROW_WINDOW_MS);
        if !busy {
            return None;
        }
        self.extended_at = Some(now);
        let cap = segment_cap(segment_bytes);
        Some((self.step_bytes * PREALLOC_ROLL_STEPS).min(cap))
    }

    #[cfg(test)]
    pub(crate) fn step_bytes(&self) -> u64 {
        self.step_bytes
    }
}

/// One log's share of `RESERVED_BYTES`; given back when dropped.
#[derive(Debug, Default)]
pub(crate) struct Share {
    bytes: u64,
}

impl Share {
    /// Sets this log's share to `prealloc_end - size` of its active segment.
    pub(crate) fn set(&mut self, prealloc_end: u64, size: u64) {
        let new = prealloc_end.saturating_sub(size);
        if new >= self.bytes {
            RESERVED_BYTES.fetch_add(new - self.bytes, Relaxed);
        } else {
            RESERVED_BYTES.fetch_sub(self.bytes - new, Relaxed);
        }
        self.bytes = new;
    }
}

impl Drop for Share {
    fn drop(&mut self) {
        RESERVED_BYTES.fetch_sub(self.bytes, Relaxed);
    }
}

/// Milliseconds since process start of the last `STORAGE_FULL` log line (0: none yet).
static FULL_LOGGED_AT_MS: AtomicU64 = AtomicU64::new(0);
/// Refusals not logged since the last line.
static FULL_SUPPRESSED: AtomicU64 = AtomicU64::new(0);

/// Logs a `STORAGE_FULL` refusal with its numbers, at most once per
/// `STORAGE_FULL_LOG_INTERVAL` node-wide; the next line counts the refusals in between.
pub(crate) fn log_storage_full(dir: &std::path::Path, free_bytes: u64, min_free_bytes: u64) {
    static START: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    let now_ms = START.get_or_init(Instant::now).elapsed().as_millis() as u64 + 1;
    let last = FULL_LOGGED_AT_MS.load(Relaxed);
    let due = last == 0 || now_ms.saturating_sub(last) >= STORAGE_FULL_LOG_INTERVAL.as_millis() as u64;
    if !due || FULL_LOGGED_AT_MS.compare_exchange(last, now_ms, Relaxed, Relaxed).is_err() {
        FULL_SUPPRESSED.fetch_add(1, Relaxed);
        return;
    }
    let suppressed = FULL_SUPPRESSED.swap(0, Relaxed);
    tracing::warn!(
        dir = %dir.display(),
        free_bytes,
        reserved_bytes = reserved_bytes(),
        min_free_bytes,
        refusals_not_logged = suppressed,
        "STORAGE_FULL: appends refused: {free_bytes} bytes free, below min_free_bytes={min_free_bytes} \
         ({} bytes reserved by preallocation); free space or lower --min-free-bytes",
        reserved_bytes()
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEG: u64 = 1 << 30;

    #[test]
    fn quiet_partitions_reserve_little_busy_ones_grow_bounded() {
        let t0 = Instant::now();
        let mut p = Prealloc::default();
        assert_eq!(p.plan(58, 0, SEG, t0), Some(PREALLOC_STEP_MIN_BYTES));
        assert_eq!(p.plan(58, PREALLOC_STEP_MIN_BYTES, SEG, t0), None, "covered: no new reservation");
        // Extensions in quick succession double the step up to the maximum.
        let mut end = PREALLOC_STEP_MIN_BYTES + 1;
        let mut reserved = PREALLOC_STEP_MIN_BYTES;
        for i in 1..20u32 {
            let to = p.plan(end, reserved, SEG, t0 + Duration::from_millis(u64::from(i))).unwrap();
            assert!(to > end && to.is_multiple_of(BLOCK_BYTES));
            assert!(to - reserved <= PREALLOC_STEP_MAX_BYTES + BLOCK_BYTES);
            reserved = to;
            end = to + 1;
        }
        assert_eq!(p.step_bytes(), PREALLOC_STEP_MAX_BYTES);
        // A quiet spell starts small again.
        p.plan(end, reserved, SEG, t0 + Duration::from_secs(60)).unwrap();
        assert_eq!(p.step_bytes(), PREALLOC_STEP_MIN_BYTES);
    }

    #[test]
    fn a_busy_partition_reserves_ahead_at_its_roll_a_quiet_one_does_not() {
        let t0 = Instant::now();
        let mut p = Prealloc::default();
        assert_eq!(p.at_roll(SEG, t0), None, "never extended: quiet");
        p.plan(58, 0, SEG, t0).unwrap();
        assert_eq!(p.at_roll(SEG, t0 + Duration::from_millis(10)), Some(PREALLOC_ROLL_STEPS * PREALLOC_STEP_MIN_BYTES));
        assert_eq!(p.at_roll(1 << 16, t0 + Duration::from_millis(20)), Some(1 << 16), "capped at the segment size");
        assert_eq!(p.at_roll(SEG, t0 + Duration::from_secs(5)), None, "quiet since");
    }

    #[test]
    fn reservation_never_passes_the_segment_limit() {
        let mut p = Prealloc::default();
        let seg = (1 << 20) + 100;
        let to = p.plan((1 << 20) + 1, 0, seg, Instant::now()).unwrap();
        assert_eq!(to, seg.div_ceil(BLOCK_BYTES) * BLOCK_BYTES);
        // A batch larger than the segment limit is still covered.
        assert_eq!(p.plan(3 << 20, 0, seg, Instant::now()), Some(3 << 20));
    }
}
