//! The write path: validation, offset assignment, group commit, segment roll.
//!
//! An append validates its batches (CRC + structure) without touching shared state, takes
//! offsets and queues its bytes synchronously, then waits for the write lock. Whoever holds
//! the lock writes everything queued (one IO per segment), and under `fsync=always` one
//! fdatasync then covers every append written — so concurrent appends share fsyncs.

use super::close::Closing;
use super::error::{is_out_of_space, AppendError, Failure};
use super::file::{SegmentFile, BLOCK_BYTES};
use super::segment::{next_tail, Segment};
use super::{AppendInfo, FsyncPolicy, Inner, IoMode, LogError, Pending};
use bytes::{Bytes, BytesMut};
use std::io;
use std::rc::Rc;
use std::time::Instant;
use strand_core::index::SegmentBatch;
use strand_core::recovery::{segment_file_name, SegmentFileKind};
use strand_wire::batch::{self, Batch};

/// How long a statvfs result is reused by the free-space guard.
const FREE_SPACE_RECHECK_MS: u128 = 100;
/// The guard re-checks at once when its estimate comes this close to the limit.
const FREE_SPACE_SLACK_BYTES: u64 = 64 << 20;

/// The `min_free_bytes` guard without a statvfs per append: the last result is reused for
/// `FREE_SPACE_RECHECK_MS`, minus what this log appended since; near the limit (within
/// `FREE_SPACE_SLACK_BYTES`) every append re-checks, so a refusal is always based on a
/// fresh statvfs. Other writers to the filesystem can consume space in between; the rest
/// of the guard's margin and the real ENOSPC handling cover that.
#[derive(Default)]
pub(crate) struct FreeSpaceGuard {
    checked_at: Option<Instant>,
    free_bytes: u64,
    appended_since: u64,
}

impl FreeSpaceGuard {
    /// [`FreeSpaceGuard::check`], then counts `incoming` as appended.
    fn admit(
        &mut self,
        incoming: u64,
        min_free: u64,
        now: Instant,
        stat: impl FnOnce() -> std::io::Result<u64>,
    ) -> Result<(), AppendError> {
        self.check(incoming, min_free, now, stat)?;
        self.appended_since += incoming;
        Ok(())
    }

    /// `StorageFull` unless `incoming` more bytes leave `min_free` free (measuring again
    /// when the estimate is stale or near the margin); counts nothing.
    fn check(
        &mut self,
        incoming: u64,
        min_free: u64,
        now: Instant,
        stat: impl FnOnce() -> std::io::Result<u64>,
    ) -> Result<(), AppendError> {
        let needed = min_free.saturating_add(incoming);
        let estimate = self.free_bytes.saturating_sub(self.appended_since);
        let stale = self.checked_at.is_none_or(|t| now.duration_since(t).as_millis() >= FREE_SPACE_RECHECK_MS);
        if stale || estimate < needed.saturating_add(FREE_SPACE_SLACK_BYTES) {
            self.free_bytes = stat().map_err(AppendError::Io)?;
            self.appended_since = 0;
            self.checked_at = Some(now);
        }
        if self.free_bytes.saturating_sub(self.appended_since) < needed {
            return Err(AppendError::StorageFull {
                reason: format!(
                    "{} bytes free, below min_free_bytes={min_free} ({} bytes reserved by preallocation)",
                    self.free_bytes,
                    super::reserve::reserved_bytes()
                ),
            });
        }
        Ok(())
    }

    /// Free bytes as last measured, minus what was appended since.
    fn estimate(&self) -> u64 {
        self.free_bytes.saturating_sub(self.appended_since)
    }

    /// Whether reserving `extra` more bytes keeps the estimate at or above `min_free`:
    /// preallocation never eats into the guard's margin. Unknown (never measured) admits.
    pub(super) fn admits_reservation(&self, extra: u64, min_free: u64) -> bool {
        min_free == 0 || self.checked_at.is_none() || self.estimate() >= min_free.saturating_add(extra)
    }
}

/// Largest single write the lock holder issues; more queued bytes take several writes.
const WRITE_GROUP_MAX_BYTES: usize = 16 << 20;

/// One write planned under the lock: the queued appends going to the active segment.
struct WritePlan {
    file: Rc<SegmentFile>,
    segment_base: u64,
    old_size: u64,
    block_pos: u64,
    tail: Vec<u8>,
    items: Vec<Pending>,
    prealloc_to: Option<u64>,
}

impl Inner {
    /// Validates `batches`, admits them against the free-space guard, takes their offsets
    /// and queues their bytes — synchronously, so reservations are ordered as they are made.
    /// Returns where they go and the queue epoch they were queued in.
    pub(super) fn reserve(&self, mut batches: BytesMut) -> Result<(AppendInfo, u64), AppendError> {
        let metas = validate(&batches, self.config.batch_len_max, self.config.decompressed_len_max)?;
        self.check_free_space(batches.len() as u64, true)?;
        let before = self.state.borrow().log_end;
        let (info, epoch) = self.enqueue(&mut batches, metas)?;
        assert!(
            info.base_offset == before && info.log_end_offset > before,
            "offsets are taken in order: reserved {}..{} at log end {before}",
            info.base_offset,
            info.log_end_offset
        );
        Ok((info, epoch))
    }

    /// Waits until the reserved `info` (queued in `epoch`) is written and as durable as the
    /// fsync policy promises, writing the queue itself when it gets the write lock.
    pub(super) async fn durable(&self, info: AppendInfo, epoch: u64) -> Result<AppendInfo, AppendError> {
        // Wait until another lock holder's write (and sync) covered this append, or until the
        // write lock is free: an append whose bytes are in is acked without queueing for the lock,
        // so producers refill the queue while the holder's writes are still in flight.
        let permit = loop {
            if self.covered(info.log_end_offset) {
                return Ok(info);
            }
            self.check_epoch(epoch)?;
            let seen = self.progress.get();
            // `or` polls the lock first, so a waiter woken for the lock always takes it.
            let lock = async { Some(self.lock_for_append().await) };
            let progress = async {
                self.progress_since(seen).await;
                None
            };
            match futures_lite::future::or(lock, progress).await {
                Some(permit) => break permit,
                None => continue,
            }
        };
        let _permit = permit.map_err(log_to_append)?;
        let written = self.state.borrow().written_end >= info.log_end_offset;
        if !written && self.state.borrow().epoch == epoch {
            self.write_queued(info.log_end_offset).await?;
        }
        self.check_epoch(epoch)?;
        let (synced, checkpoint_due) = {
            let st = self.state.borrow();
            (st.synced_end >= info.log_end_offset, st.bytes_since_checkpoint >= super::CHECKPOINT_INTERVAL_BYTES)
        };
        if self.config.fsync == FsyncPolicy::Always && (!synced || checkpoint_due) {
            self.sync_locked(false).await.map_err(log_to_append)?;
        }
        Ok(info)
    }

    /// Whether everything below `end` is written and, under fsync=always, durable.
    fn covered(&self, end: u64) -> bool {
        let st = self.state.borrow();
        st.written_end >= end && (self.config.fsync != FsyncPolicy::Always || st.synced_end >= end)
    }

    /// The free-space guard for `incoming` bytes; `count`: they are being appended now
    /// (a reservation), else only asked about (a chain head before its chain takes them:
    /// the replica's own append counts them later, once).
    pub(super) fn check_free_space(&self, incoming: u64, count: bool) -> Result<(), AppendError> {
        let min_free = self.config.min_free_bytes;
        if min_free == 0 {
            return Ok(());
        }
        let mut st = self.state.borrow_mut();
        let (now, stat) = (Instant::now(), || self.storage.free_bytes(&self.dir));
        let admitted = match count {
            true => st.free_space.admit(incoming, min_free, now, stat),
            false => st.free_space.check(incoming, min_free, now, stat),
        };
        if admitted.is_err() {
            super::reserve::log_storage_full(&self.dir, st.free_space.estimate(), min_free);
        }
        admitted
    }

    /// Stamps offsets and queues the bytes; returns where they go and the queue epoch.
    fn enqueue(&self, batches: &mut BytesMut, mut metas: Vec<SegmentBatch>) -> Result<(AppendInfo, u64), AppendError> {
        let mut st = self.state.borrow_mut();
        if let Some(p) = &st.poisoned {
            return Err(AppendError::Failed(p.clone()));
        }
        let base_offset = st.log_end;
        let mut next = base_offset;
        for m in &mut metas {
            batch::stamp_base_offset(&mut batches[m.position as usize..], next);
            m.base_offset = next;
            next += u64::from(m.record_count);
        }
        let record_count = u32::try_from(next - base_offset).unwrap_or(u32::MAX);
        let info = AppendInfo {
            base_offset,
            last_offset: next - 1,
            log_end_offset: next,
            batch_count: metas.len() as u32,
            record_count,
        };
        st.log_end = next;
        let bytes = std::mem::take(batches).freeze();
        st.pending.push_back(Pending { bytes, metas, next_offset: next });
        Ok((info, st.epoch))
    }

    fn check_epoch(&self, epoch: u64) -> Result<(), AppendError> {
        let st = self.state.borrow();
        if st.epoch == epoch {
            return Ok(());
        }
        Err(match &st.last_failure {
            Some((true, failure)) => AppendError::StorageFull { reason: failure.reason().to_owned() },
            Some((false, failure)) => AppendError::Failed(failure.clone()),
            None => AppendError::Failed(Failure::other("append discarded")),
        })
    }

    /// Writes queued appends (rolling segments as needed) until offsets below `target` are in
    /// the file; later appends are left to the next lock holder, so a holder's own ack is not
    /// delayed by a stream of newer appends. Caller holds the write lock.
    async fn write_queued(&self, target: u64) -> Result<(), AppendError> {
        while self.state.borrow().written_end < target {
            if self.roll_due() {
                if let Err(e) = self.roll().await {
                    let e = log_to_append(e);
                    self.fail_queue(&e);
                    return Err(e);
                }
            }
            let Some(plan) = self.plan_write() else { return Ok(()) };
            // From here until `on_written` the planned appends are in neither the queue nor
            // the file: if this task is dropped meanwhile, the guard fails the queue.
            let in_flight = WriteInFlight { inner: self, armed: true };
            let plan_end = plan.old_size + plan.items.iter().map(|p| p.bytes.len() as u64).sum::<u64>();
            if self.reaches_zeroing(plan.segment_base, plan_end) {
                self.state.borrow_mut().zero.caught_up();
                self.settle_zeroing().await;
            }
            if let Some(to) = plan.prealloc_to {
                self.preallocate(&plan.file, plan.segment_base, to).await;
            }
            let data: Vec<Bytes> = plan.items.iter().map(|p| p.bytes.clone()).collect();
            if let Err(e) = plan.file.write_append(plan.block_pos, &plan.tail, &data).await {
                let e = AppendError::from_io(e);
                tracing::warn!(path = ?plan.file.path(), "append write failed: {e}");
                in_flight.disarm();
                self.fail_queue(&e);
                return Err(e);
            }
            in_flight.disarm();
            self.on_written(plan);
            self.maybe_zero_ahead();
            self.maybe_write_behind();
            self.notify_progress();
        }
        Ok(())
    }

    /// Whether the active segment must roll before the next queued append is written.
    fn roll_due(&self) -> bool {
        let st = self.state.borrow();
        let Some(first) = st.pending.front() else { return false };
        let a = st.active();
        if a.size == 0 {
            return false;
        }
        let limits = self.limits.get();
        let full = a.size + first.bytes.len() as u64 > limits.segment_bytes;
        let old = limits.segment_ms.is_some_and(|ms| a.opened_at.elapsed().as_millis() >= u128::from(ms));
        full || old
    }

    fn plan_write(&self) -> Option<WritePlan> {
        let mut st = self.state.borrow_mut();
        st.pending.front()?;
        let (size, base, file, tail, prealloc_end) = {
            let a = st.active();
            (a.size, a.base, a.file.clone(), a.tail.clone(), a.prealloc_end)
        };
        let mut items = Vec::new();
        let mut group = 0u64;
        let segment_bytes = self.limits.get().segment_bytes;
        while let Some(p) = st.pending.front() {
            let len = p.bytes.len() as u64;
            let fits = size + group + len <= segment_bytes && group + len <= WRITE_GROUP_MAX_BYTES as u64;
            if !items.is_empty() && !fits {
                break;
            }
            group += len;
            items.extend(st.pending.pop_front());
        }
        let end = size + group;
        let prealloc_to = st.prealloc.plan(end, prealloc_end, segment_bytes, Instant::now()).filter(|to| {
            st.free_space.admits_reservation(to.saturating_sub(prealloc_end.max(size)), self.config.min_free_bytes)
        });
        let (block_pos, tail) = match self.config.io_mode {
            IoMode::Direct => (size - tail.len() as u64, tail),
            IoMode::Buffered => (size, Vec::new()),
        };
        assert!(
            self.config.io_mode == IoMode::Buffered || block_pos % BLOCK_BYTES == 0,
            "direct write at unaligned position {block_pos}"
        );
        Some(WritePlan { file, segment_base: base, old_size: size, block_pos, tail, items, prealloc_to })
    }

    /// Best effort: a failed reservation (e.g. ENOSPC) leaves the write to find out for itself.
    async fn preallocate(&self, file: &SegmentFile, segment_base: u64, to: u64) {
        match file.preallocate(to).await {
            Ok(()) => {
                let mut st = self.state.borrow_mut();
                if let Some(seg) = st.segments.get_mut(&segment_base) {
                    seg.prealloc_end = seg.prealloc_end.max(to);
                }
                st.share_reservation();
            }
            Err(e) => tracing::debug!(path = ?file.path(), "preallocation to {to} bytes failed: {e}"),
        }
    }

    fn on_written(&self, plan: WritePlan) {
        let mut st = self.state.borrow_mut();
        let direct = self.config.io_mode == IoMode::Direct;
        let data: Vec<&[u8]> = plan.items.iter().map(|p| &p.bytes[..]).collect();
        let new_tail = if direct { next_tail(plan.old_size, &plan.tail, &data) } else { Vec::new() };
        let written: u64 = data.iter().map(|d| d.len() as u64).sum();
        let mut pos = plan.old_size;
        for item in &plan.items {
            for m in &item.metas {
                let meta = SegmentBatch { position: pos + m.position, ..*m };
                st.active_mut().on_batch(&meta);
                if direct {
                    let bytes = item.bytes.slice(m.position as usize..(m.position + u64::from(m.len_bytes)) as usize);
                    st.cache.push(m.base_offset, m.next_offset(), bytes);
                }
            }
            pos += item.bytes.len() as u64;
            assert!(
                item.next_offset > st.written_end && item.next_offset <= st.log_end,
                "written end moves forward within the log end: {} -> {} (log end {})",
                st.written_end,
                item.next_offset,
                st.log_end
            );
            st.written_end = item.next_offset;
        }
        let a = st.active_mut();
        assert_eq!(a.size, plan.old_size + written, "bytes written equal bytes planned");
        a.tail = new_tail;
        st.share_reservation();
        if plan.file.is_dsync() {
            // O_DSYNC: the completed write is durable already.
            st.synced_end = st.written_end;
            st.bytes_since_checkpoint += written;
        } else {
            st.unflushed_bytes += written;
        }
    }

    /// Discards every queued append after a failed write: their offsets are given back.
    fn fail_queue(&self, e: &AppendError) {
        let mut st = self.state.borrow_mut();
        st.pending.clear();
        // The only place the log end moves back outside truncate/reset: the offsets of the
        // discarded appends are given back (their waiters fail by epoch).
        assert!(st.written_end <= st.log_end, "written end {} past log end {}", st.written_end, st.log_end);
        st.log_end = st.written_end;
        st.epoch += 1;
        st.last_failure =
            Some((matches!(e, AppendError::StorageFull { .. }), Failure::new(e.to_string(), e.raw_os_error())));
        drop(st);
        self.notify_progress();
    }

    /// Opens the next segment at the log end and hands the old one to the closer task
    /// (`close`), which syncs, cuts and indexes it off the write lock. Caller holds the
    /// write lock; nothing queued is lost. Under fsync=always the old segment's last writes
    /// are synced here first: acks wait for `synced_end`, which the next sync of the new
    /// segment would otherwise move past them (that sync is one group, not a segment).
    pub(super) async fn roll(&self) -> Result<(), LogError> {
        let started = Instant::now();
        let always = self.config.fsync == FsyncPolicy::Always;
        // The old segment is cut to its length by the closer: no zeros may land after that.
        self.settle_zeroing().await;
        if always {
            self.sync_locked(false).await?;
        }
        let closing = {
            let st = self.state.borrow();
            let a = st.active();
            Closing {
                base: a.base,
                file: a.file.clone(),
                size: a.size,
                reserved: a.prealloc_end > a.size,
                unflushed: st.unflushed_bytes,
                next_base: a.next_offset,
            }
        };
        let next_base = closing.next_base;
        let path = self.dir.join(segment_file_name(next_base, SegmentFileKind::Log));
        let dsync = self.config.dsync_writes();
        // From the create on, a failure leaves a segment file the log does not know: an empty
        // orphan. Trailing, recovery drops it; but a log that went on (a truncate, a later
        // roll to another base) would leave it in the middle, where recovery takes the
        // previous segment, running past the orphan's base, for corrupt. So a failed roll
        // poisons the log (found by the log simulator, seed 1239 of a variant).
        let opened = async {
            let file = Rc::new(self.storage.open_segment(&path, self.config.io_mode, true, dsync).await?);
            if always {
                // An ack of a write to the new file promises its name survives a crash too.
                self.storage.sync_dir(&self.dir).await?;
            }
            Ok::<_, io::Error>(file)
        };
        let file = match opened.await {
            Ok(file) => file,
            Err(e) => {
                let reason = format!("roll to segment {next_base} failed: {e}");
                tracing::error!(dir = %self.dir.display(), "{reason}; refusing further writes to this partition");
                self.state.borrow_mut().poisoned.get_or_insert(Failure::new(reason, e.raw_os_error()));
                return Err(LogError::Io(e));
            }
        };
        // A busy partition reserves the new segment's first blocks now, before the close
        // below sets the device flushing (see `Prealloc::at_roll`).
        let reserve_to = {
            let mut st = self.state.borrow_mut();
            let segment_bytes = self.limits.get().segment_bytes;
            let to = st.prealloc.at_roll(segment_bytes, Instant::now());
            to.filter(|to| st.free_space.admits_reservation(*to, self.config.min_free_bytes))
        };
        let mut seg = Segment::new(next_base, file, self.config.index_interval_bytes);
        if let Some(to) = reserve_to {
            match seg.file.preallocate(to).await {
                Ok(()) => seg.prealloc_end = to,
                Err(e) => tracing::debug!(path = ?path, "preallocation to {to} bytes at roll failed: {e}"),
            }
        }
        {
            let mut st = self.state.borrow_mut();
            assert_eq!(st.active().next_offset, next_base, "the active segment grew during its roll");
            st.segments.insert(next_base, seg);
            // The old segment's unflushed bytes are the closer's to sync now.
            st.unflushed_bytes = 0;
            st.share_reservation();
        }
        self.queue_close(closing);
        tracing::debug!(
            dir = %self.dir.display(),
            held_us = started.elapsed().as_micros() as u64,
            "rolled to segment {next_base}"
        );
        Ok(())
    }
}

/// Armed while a write task holds appends it took out of the queue and has not recorded
/// as written. Dropped armed (the task was cancelled mid-write), it poisons the log and
/// fails the queue: their offsets are given back and every waiter fails by epoch.
/// Otherwise the next write would put later offsets where theirs belong and be
/// acknowledged across the hole.
struct WriteInFlight<'a> {
    inner: &'a Inner,
    armed: bool,
}

impl WriteInFlight<'_> {
    fn disarm(mut self) {
        self.armed = false;
    }
}

impl Drop for WriteInFlight<'_> {
    fn drop(&mut self) {
        if self.armed {
            // The write may still land (io_uring, or pwrite on the pool) after a later one:
            // the file's tail is unknown, so the log takes no more appends (recovery at the
            // next open cuts it to its valid prefix).
            let failure = Failure::other("an append write was cancelled; the segment's tail is unknown");
            tracing::error!(dir = %self.inner.dir.display(), "{}", failure.reason());
            self.inner.state.borrow_mut().poisoned = Some(failure.clone());
            self.inner.fail_queue(&AppendError::Failed(failure));
        }
    }
}

/// Validates every batch of an append request — header, CRC and records, compressed
/// ones decompressed within `decompressed_len_max` — and returns their metadata with
/// positions relative to the start of `buf`.
fn validate(buf: &[u8], batch_len_max: u32, decompressed_len_max: usize) -> Result<Vec<SegmentBatch>, AppendError> {
    let mut metas = Vec::new();
    let mut pos = 0usize;
    if buf.is_empty() {
        return Err(AppendError::Corrupt(batch::BatchError::Truncated { needed: batch::HEADER_LEN, available: 0 }));
    }
    while pos < buf.len() {
        let rest = &buf[pos..];
        if let Some(len) = batch::peek_batch_len(rest) {
            if len > batch_len_max {
                return Err(AppendError::TooLarge { len_bytes: u64::from(len), limit_bytes: u64::from(batch_len_max) });
            }
        }
        let b = Batch::parse(rest).map_err(AppendError::Corrupt)?;
        b.check_compressed(decompressed_len_max).map_err(AppendError::Corrupt)?;
        let h = b.header();
        metas.push(SegmentBatch {
            position: pos as u64,
            base_offset: 0,
            record_count: h.record_count,
            len_bytes: h.batch_len,
            max_timestamp: h.max_timestamp,
        });
        pos += h.batch_len as usize;
    }
    Ok(metas)
}

fn log_to_append(e: LogError) -> AppendError {
    match e {
        LogError::Io(io) if is_out_of_space(&io) => AppendError::StorageFull { reason: io.to_string() },
        LogError::Io(io) => AppendError::Io(io),
        LogError::Poisoned(failure) => AppendError::Failed(failure),
        other => AppendError::Failed(Failure::other(other.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;
    use std::time::Duration;

    #[test]
    fn free_space_guard_stats_rarely_far_from_the_limit_and_always_near_it() {
        let stats = Cell::new(0u32);
        let disk = Cell::new(10u64 << 30);
        let stat = || {
            stats.set(stats.get() + 1);
            Ok(disk.get())
        };
        let mut g = FreeSpaceGuard::default();
        let t0 = Instant::now();
        for i in 0..1000u64 {
            g.admit(1 << 20, 256 << 20, t0 + Duration::from_micros(i), stat).unwrap();
        }
        assert_eq!(stats.get(), 1, "one statvfs for 1000 appends within the recheck interval");
        g.admit(1 << 20, 256 << 20, t0 + Duration::from_millis(150), stat).unwrap();
        assert_eq!(stats.get(), 2, "stale result re-checked");
        // Near the limit every append re-checks, and the refusal uses the fresh value.
        disk.set(300 << 20);
        let near = t0 + Duration::from_millis(400);
        g.admit(1 << 20, 256 << 20, near, stat).unwrap();
        g.admit(1 << 20, 256 << 20, near, stat).unwrap();
        assert_eq!(stats.get(), 4);
        disk.set(200 << 20);
        assert!(matches!(g.admit(1 << 20, 256 << 20, near, stat), Err(AppendError::StorageFull { .. })));
        assert_eq!(stats.get(), 5);
    }
}

#[cfg(test)]
mod errno_tests {
    use super::super::{FsyncPolicy, IoMode, LogConfig, PartitionLog};
    use super::Failure;
    use bytes::BytesMut;
    use strand_wire::batch::BatchBuilder;

    fn one_batch() -> BytesMut {
        let mut b = BatchBuilder::new();
        b.push(1, None, Some(b"v"), &[]);
        BytesMut::from(&b.finish()[..])
    }

    /// A log poisoned by a failed fdatasync refuses later appends with the same errno, so the
    /// node classifies them (EIO: stop) without reading the message.
    #[test]
    fn a_poisoned_log_repeats_the_errno() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().to_owned();
        glommio::LocalExecutorBuilder::default()
            .spawn(move || async move {
                let config = LogConfig {
                    io_mode: IoMode::Buffered,
                    fsync: FsyncPolicy::Always,
                    min_free_bytes: 0,
                    ..LogConfig::default()
                };
                let log = PartitionLog::open(&path, config).await.unwrap();
                log.append(one_batch()).await.unwrap();
                let eio = std::io::Error::from_raw_os_error(libc::EIO);
                // What `sync_locked` records when fdatasync fails.
                let reason = format!("fdatasync of {path:?} failed: {eio}");
                log.inner.state.borrow_mut().poisoned = Some(Failure::new(reason, eio.raw_os_error()));
                for _ in 0..2 {
                    let e = log.append(one_batch()).await.unwrap_err();
                    assert_eq!(e.raw_os_error(), Some(libc::EIO), "{e}");
                    assert!(e.to_string().contains("fdatasync of"), "the reason is kept: {e}");
                }
            })
            .unwrap()
            .join()
            .unwrap();
    }
}
