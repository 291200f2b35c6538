//! The partition log: segmented `.log` files with sparse `.index`/`.timeindex` files,
//! written through io_uring in `direct` (O_DIRECT DMA) or `buffered` (page cache) mode.
//!
//! Code map: [`config`] (modes, policies, limits) · [`error`] (one enum per operation) ·
//! `file` (segment file handles, DMA probe) · `segment` (per-segment state, index and
//! checkpoint persistence) · `append` (validation, group commit, roll) · `read` (offset and
//! timestamp lookups) · `recover` (open: scan decisions come from `strand_core::recovery`) ·
//! `close` (closing rolled segments off the write lock) · `zero` (zero-ahead under
//! fsync=always) · `cache` (direct-mode tail cache) · `verify` (lazy CRC check of checkpointed segments) · `truncate` (cutting back to a batch boundary; listing stored batches) · `reset`
//! (restarting a replica's log empty at a base offset) · `storage` (the seam every file and
//! directory operation goes through: the OS, or with the `sim` feature the in-memory
//! fault-injecting `sim` storage of the log simulator).
//!
//! Concurrency: a [`PartitionLog`] lives on its owner shard's executor (`!Send`). Appends
//! take offsets synchronously in call order, then queue behind one write lock; the lock
//! holder writes every queued batch in one IO and (fsync=always) one fdatasync covers
//! them all (group commit). Reads never take the lock: they copy what they need out of the
//! state and read through `Rc<SegmentFile>`s. No `RefCell` borrow is held across an await.
//!
//! Invariants: offsets are contiguous from `log_start` to `log_end`; a reader never sees a
//! byte past a segment's logical length; an ack never precedes what the fsync policy promises;
//! a failed write discards every not-yet-written append (they fail; offsets are reused) and
//! a failed fdatasync poisons the log (never retried).

mod append;
mod cache;
mod close;
pub mod config;
pub mod error;
mod file;
mod read;
mod recover;
mod reserve;
mod reset;
mod retention;
mod segment;
#[cfg(feature = "sim")]
pub mod sim;
mod storage;
mod truncate;
mod verify;
mod writeback;
mod zero;

pub use config::{FsyncPolicy, IoMode, LogConfig, ParseConfigError, SegmentLimits};
pub use error::{AppendError, Failure, LogError, ReadError, TruncateError};
pub use file::{create_dir_all, probe_dma, SegmentFile, PROBE_FILE_NAME};
pub use reserve::reserved_bytes;
pub use segment::CHECKPOINT_FILE_NAME;
pub use storage::Storage;
pub use truncate::StoredBatch;

use bytes::{Bytes, BytesMut};
use cache::BatchCache;
use glommio::sync::Semaphore;
use segment::Segment;
use std::cell::RefCell;
use std::collections::{BTreeMap, VecDeque};
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::Arc;
use strand_core::index::SegmentBatch;
use strand_core::recovery::Checkpoint;

/// Where an append landed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AppendInfo {
    pub base_offset: u64,
    pub last_offset: u64,
    pub log_end_offset: u64,
    pub batch_count: u32,
    pub record_count: u32,
}

/// Offsets taken by [`PartitionLog::reserve`] whose bytes are queued for writing.
#[must_use = "a reservation is stored only once `durable` returned"]
pub struct Reservation {
    inner: Rc<Inner>,
    info: AppendInfo,
    epoch: u64,
}

impl Reservation {
    /// Where the reserved batches go.
    pub fn info(&self) -> AppendInfo {
        self.info
    }

    /// Waits until the batches are written and as durable as the fsync policy promises.
    /// A failure means none of them is stored: the log gave their offsets back. Dropping
    /// this future while it writes the queue (its task cancelled) fails every queued
    /// append the same way, so no later append is acknowledged across unwritten offsets.
    pub async fn durable(self) -> Result<AppendInfo, AppendError> {
        self.inner.durable(self.info, self.epoch).await
    }
}

/// Whole batches read from the log, in offset order.
#[derive(Debug)]
pub struct ReadResult {
    pub chunks: Vec<ReadChunk>,
    pub bytes_len: u32,
    /// Offset to read next (just past the last returned batch).
    pub next_offset: u64,
}

/// A piece of a read result.
pub enum ReadChunk {
    /// A byte range of a segment file, to be spliced/sendfile'd to a socket. The Rc keeps the
    /// fd open even if retention unlinks the segment meanwhile.
    File { file: Rc<SegmentFile>, pos: u64, len: u32 },
    /// A byte range of a segment file read on another shard: the owner hands over its
    /// plain file (thread-safe, keeps the file open), and this shard sends it with
    /// `sendfile` too, so a fetch answered across shards stays zero-copy.
    Shared { file: Arc<std::fs::File>, pos: u64, len: u32 },
    /// Bytes served from the in-memory tail/batch cache (direct mode, caught-up consumers).
    Memory(Bytes),
}

/// A [`ReadChunk`] that may cross shards (`Send`): what an owner shard answers a
/// cross-shard fetch with.
#[derive(Debug)]
pub enum SharedChunk {
    File { file: Arc<std::fs::File>, pos: u64, len: u32 },
    Memory(Bytes),
}

impl From<SharedChunk> for ReadChunk {
    fn from(chunk: SharedChunk) -> Self {
        match chunk {
            SharedChunk::File { file, pos, len } => ReadChunk::Shared { file, pos, len },
            SharedChunk::Memory(bytes) => ReadChunk::Memory(bytes),
        }
    }
}

impl std::fmt::Debug for ReadChunk {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ReadChunk::File { file, pos, len } => write!(f, "File({:?}, {pos}, {len})", file.path()),
            ReadChunk::Shared { pos, len, .. } => write!(f, "Shared({pos}, {len})"),
            ReadChunk::Memory(b) => write!(f, "Memory({} bytes)", b.len()),
        }
    }
}

impl ReadChunk {
    /// Length in bytes.
    pub fn len(&self) -> u32 {
        match self {
            ReadChunk::File { len, .. } | ReadChunk::Shared { len, .. } => *len,
            ReadChunk::Memory(b) => b.len() as u32,
        }
    }

    /// The chunk in a form another shard can send ([`SharedChunk`]).
    pub fn share(self) -> SharedChunk {
        match self {
            ReadChunk::File { file, pos, len } => SharedChunk::File { file: file.shared(), pos, len },
            ReadChunk::Shared { file, pos, len } => SharedChunk::File { file, pos, len },
            ReadChunk::Memory(bytes) => SharedChunk::Memory(bytes),
        }
    }

    /// Whether the chunk holds no bytes.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Copies the chunk's bytes (fallback for tests and replication; fetch uses splice).
    pub async fn to_bytes(&self) -> std::io::Result<Bytes> {
        match self {
            ReadChunk::Memory(b) => Ok(b.clone()),
            ReadChunk::File { file, pos, len } => {
                let bytes = file.read_at(*pos, *len as usize).await?;
                if bytes.len() != *len as usize {
                    return Err(std::io::Error::new(
                        std::io::ErrorKind::UnexpectedEof,
                        format!("{:?}: {} of {len} bytes at {pos}", file.path(), bytes.len()),
                    ));
                }
                Ok(Bytes::from(bytes))
            }
            ReadChunk::Shared { file, pos, len } => Ok(Bytes::from(read_shared(file, *pos, *len as usize).await?)),
        }
    }
}

/// Reads exactly `len` bytes at `pos` of another shard's segment file into `buf` (cleared
/// first, its capacity reused) on the blocking pool; returns the buffer either way.
pub async fn read_shared_into(
    file: &Arc<std::fs::File>,
    pos: u64,
    len: usize,
    mut buf: Vec<u8>,
) -> (Vec<u8>, std::io::Result<()>) {
    let file = file.clone();
    glommio::executor()
        .spawn_blocking(move || {
            use std::os::unix::fs::FileExt;
            buf.clear();
            buf.resize(len, 0);
            let read = file.read_exact_at(&mut buf, pos);
            (buf, read)
        })
        .await
}

/// Reads `len` bytes of a shared segment file at `pos` on the executor's blocking pool
/// (the plain file has no io_uring handle on this shard).
pub async fn read_shared(file: &Arc<std::fs::File>, pos: u64, len: usize) -> std::io::Result<Vec<u8>> {
    let file = file.clone();
    glommio::executor()
        .spawn_blocking(move || {
            use std::os::unix::fs::FileExt;
            let mut buf = vec![0u8; len];
            file.read_exact_at(&mut buf, pos)?;
            Ok(buf)
        })
        .await
}

/// One partition's log. !Send: lives on its owner shard's glommio executor. All methods take
/// `&self` so many tasks of the shard can append and read concurrently; appends are ordered internally.
pub struct PartitionLog {
    inner: Rc<Inner>,
}

pub(crate) struct Inner {
    /// This log itself, for tasks it spawns (the segment closer).
    me: std::rc::Weak<Inner>,
    dir: PathBuf,
    /// Every file and directory operation of this log goes through it.
    storage: Storage,
    config: LogConfig,
    /// Roll and retention limits: `config`'s at open, replaced by `set_limits` (a topic
    /// config change) without reopening; always read through this, never `config`.
    limits: std::cell::Cell<SegmentLimits>,
    state: RefCell<State>,
    /// Held by the task that writes queued appends, syncs, rolls or deletes segments.
    write_lock: Semaphore,
    /// Held by the reader that lazily verifies a segment (see `verify`).
    verify_lock: Semaphore,
    /// Set by close/delete; stops the interval flusher.
    closed: std::cell::Cell<bool>,
    /// Bumped whenever `written_end`/`synced_end` advance or a failed write discards the queue;
    /// appends waiting for the write lock also wait for this and re-check whether they are done.
    progress: std::cell::Cell<u64>,
    /// Wakers of appends waiting in `progress_since`; drained by `notify_progress`.
    progress_waiters: RefCell<Vec<std::task::Waker>>,
}

/// An append whose offsets are assigned but whose bytes are not yet in the file.
pub(crate) struct Pending {
    bytes: Bytes,
    /// Batches with `position` relative to the start of `bytes`.
    metas: Vec<SegmentBatch>,
    next_offset: u64,
}

pub(crate) struct State {
    segments: BTreeMap<u64, Segment>,
    log_start: u64,
    /// Next offset to assign (includes queued appends).
    log_end: u64,
    /// Offsets below this are in the segment files (readable).
    written_end: u64,
    /// Offsets below this are fdatasync'ed.
    synced_end: u64,
    pending: VecDeque<Pending>,
    /// Bumped whenever a failed write discards the queue; an append of an older epoch failed.
    epoch: u64,
    /// Why the last epoch ended: whether for a full disk, and the failure (with its errno)
    /// repeated to every append of that epoch.
    last_failure: Option<(bool, Failure)>,
    unflushed_bytes: u64,
    bytes_since_checkpoint: u64,
    cache: BatchCache,
    /// Set when the log refuses further writes (see `LogError::Poisoned`); keeps the errno.
    poisoned: Option<Failure>,
    free_space: append::FreeSpaceGuard,
    /// Adaptive reservation step of the active segment (see `reserve`).
    prealloc: reserve::Prealloc,
    /// Zero-ahead chunk size of the active segment (fsync=always, see `zero`).
    zero: zero::ZeroPolicy,
    /// The zero write in flight, if any (see `zero`).
    zeroing: Option<zero::Zeroing>,
    /// Write-behind position of the active segment (buffered mode, see `writeback`).
    writeback: writeback::WriteBehind,
    /// This log's share of the node-wide reserved bytes.
    reservation: reserve::Share,
    /// Rolled segments not yet closed, oldest first (see `close`).
    closing: VecDeque<close::Closing>,
    /// Whether the closer task is draining `closing`.
    closer_running: bool,
    /// Segment files an earlier recovery set aside (`*.log.cut<N>`), found at open.
    set_aside: Vec<SetAsideFile>,
}

/// A segment file recovery set aside: past a tear the recovery checkpoint did not vouch
/// for, renamed `<segment>.log.cut<N>`, kept for the operator and never served.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SetAsideFile {
    /// File name in the partition's directory.
    pub name: String,
    pub bytes: u64,
}

impl State {
    fn active(&self) -> &Segment {
        self.segments.values().next_back().expect("a log always has an active segment")
    }

    fn active_mut(&mut self) -> &mut Segment {
        self.segments.values_mut().next_back().expect("a log always has an active segment")
    }

    /// Brings this log's share of the node-wide reservation up to date with its active segment.
    fn share_reservation(&mut self) {
        let (prealloc_end, size) = {
            let a = self.active();
            (a.prealloc_end, a.size)
        };
        self.reservation.set(prealloc_end, size);
    }
}

/// Bytes flushed between two recovery checkpoints (bounds restart rescans after a crash).
pub(crate) const CHECKPOINT_INTERVAL_BYTES: u64 = 64 << 20;

/// A log dropped without `close` stops its background tasks at their next step: the
/// closer must not write into a directory that a new instance may already have opened
/// (recovery copes with a close cut short, as with a crash).
impl Drop for PartitionLog {
    fn drop(&mut self) {
        self.inner.closed.set(true);
    }
}

impl PartitionLog {
    /// Opens the log in `dir` (created if missing), running recovery on what is there.
    pub async fn open(dir: &Path, config: LogConfig) -> Result<PartitionLog, LogError> {
        Self::open_with_storage(dir, config, Storage::Os).await
    }

    /// [`PartitionLog::open`] over the given storage (the simulator's in-memory one;
    /// `Storage::Os` is what `open` uses).
    pub async fn open_with_storage(dir: &Path, config: LogConfig, storage: Storage) -> Result<PartitionLog, LogError> {
        let mut inner = recover::open(dir, config, storage).await?;
        let inner = Rc::new_cyclic(|me| {
            inner.me = me.clone();
            inner
        });
        verify::spawn_scrubber(&inner);
        if let FsyncPolicy::IntervalMs(ms) = inner.config.fsync {
            spawn_interval_flusher(Rc::downgrade(&inner), ms);
        }
        Ok(PartitionLog { inner })
    }

    /// Appends one or more concatenated record batches; see the module docs for ordering and
    /// durability. Every batch is validated first; any invalid one rejects the whole call.
    pub async fn append(&self, batches: BytesMut) -> Result<AppendInfo, AppendError> {
        self.reserve(batches)?.durable().await
    }

    /// `StorageFull` when appending `incoming` more bytes would leave less than
    /// `min_free_bytes` free (the check [`PartitionLog::reserve`] makes, without counting
    /// the bytes as appended). A chain head asks before its chain takes a batch, so a full
    /// disk refuses the produce cleanly instead of failing a replica after the offsets
    /// were handed out.
    pub fn check_free_space(&self, incoming: u64) -> Result<(), AppendError> {
        self.inner.check_free_space(incoming, false)
    }

    /// The synchronous half of [`PartitionLog::append`]: validates the batches, stamps their
    /// offsets and queues their bytes before returning. Reservations take offsets in the
    /// order they are made, so a caller that must order appends (sequence checks, the chain
    /// core) does its bookkeeping and its `reserve` in one synchronous step. A refused
    /// reservation took no offsets. Dropping a `Reservation` does not withdraw the bytes:
    /// they are written by the next append or flush.
    pub fn reserve(&self, batches: BytesMut) -> Result<Reservation, AppendError> {
        let (info, epoch) = self.inner.reserve(batches)?;
        Ok(Reservation { inner: self.inner.clone(), info, epoch })
    }

    pub fn log_start_offset(&self) -> u64 {
        self.inner.state.borrow().log_start
    }

    /// The storage this log does its IO through (files beside the log, such as the
    /// replica's epoch checkpoint, use it too).
    pub fn storage(&self) -> &Storage {
        &self.inner.storage
    }

    /// Next offset to be assigned.
    pub fn log_end_offset(&self) -> u64 {
        self.inner.state.borrow().log_end
    }

    /// Whole batches starting with the batch containing `offset`, up to `max_bytes` (but at
    /// least one whole batch if any exists). `offset == log_end` gives an empty result.
    pub async fn read(&self, offset: u64, max_bytes: u32) -> Result<ReadResult, ReadError> {
        self.inner.read(offset, max_bytes).await
    }

    /// First record with timestamp `>= ts_ms`: its offset and timestamp.
    pub async fn offset_for_timestamp(&self, ts_ms: i64) -> Result<Option<(u64, i64)>, ReadError> {
        self.inner.offset_for_timestamp(ts_ms).await
    }

    /// Replaces the roll and retention limits: the next roll decision and retention pass
    /// use them (a smaller `segment_bytes` rolls at the next append).
    pub fn set_limits(&self, limits: SegmentLimits) {
        self.inner.limits.set(limits);
    }

    /// The roll and retention limits in force.
    pub fn limits(&self) -> SegmentLimits {
        self.inner.limits.get()
    }

    /// Deletes whole closed segments beyond retention; returns how many were deleted.
    pub async fn apply_retention(&self, now_ms: i64) -> Result<u32, LogError> {
        self.inner.apply_retention(now_ms, u64::MAX).await
    }

    /// [`PartitionLog::apply_retention`] deleting only segments that end at or below
    /// `limit` (a chain replica passes its served-reads offset).
    pub async fn apply_retention_below(&self, now_ms: i64, limit: u64) -> Result<u32, LogError> {
        self.inner.apply_retention(now_ms, limit).await
    }

    /// Deletes the closed segments ending at or below `min(offset, limit)`, oldest first
    /// (`limit`: a chain replica's served-reads offset). Returns the segments deleted.
    pub async fn delete_below(&self, offset: u64, limit: u64) -> Result<u32, LogError> {
        self.inner.delete_below(offset, limit).await
    }

    /// Drops every record and restarts the log empty at offset `start` (a chain learner
    /// whose predecessor no longer has what it lacks), durably; see `reset` for the
    /// crash-safe order. Like `truncate`, no append of this log may be in flight.
    pub async fn reset(&self, start: u64) -> Result<(), TruncateError> {
        self.inner.reset(start).await
    }

    /// Removes every record at offset `>= to` (a batch boundary, at most the log end) and
    /// makes the cut durable before returning; see `truncate` for the crash-safe order.
    /// The caller must not have an append of this log in flight (the chain shell calls it
    /// only from its serial worker after every append it started completed); waiting
    /// appends of an older queue fail rather than being acknowledged.
    pub async fn truncate(&self, to: u64) -> Result<(), TruncateError> {
        self.inner.truncate(to).await
    }

    /// Every stored batch (base offset, record count, length), in offset order, from the
    /// batch headers (not CRC-checked here). Used to rebuild a replica's chain index at start.
    pub async fn stored_batches(&self) -> Result<Vec<StoredBatch>, ReadError> {
        self.inner.stored_batches().await
    }

    /// fdatasyncs all written data.
    pub async fn flush(&self) -> Result<(), LogError> {
        let _permit = self.inner.lock().await?;
        self.inner.settle_closes().await;
        self.inner.sync_locked(false).await
    }

    /// Flushes, truncates the active segment to its logical length, writes indexes and the
    /// recovery checkpoint: a clean shutdown, after which open rescans almost nothing.
    pub async fn close(self) -> Result<(), LogError> {
        let _permit = self.inner.lock().await?;
        self.inner.settle_closes().await;
        self.inner.closed.set(true);
        self.inner.finish_active().await?;
        self.inner.write_lock.close();
        Ok(())
    }

    /// Removes all files of the log and its directory (on glommio's blocking-thread pool).
    pub async fn delete(self) -> Result<(), LogError> {
        let _permit = self.inner.lock().await?;
        self.inner.settle_closes().await;
        self.inner.closed.set(true);
        self.inner.write_lock.close();
        // Unlinking gigabytes of segments can take a while: off the reactor.
        self.inner.storage.remove_dir_all(&self.inner.dir).await?;
        Ok(())
    }

    /// Bytes written but not yet fdatasync'ed.
    pub fn unflushed_bytes(&self) -> u64 {
        self.inner.state.borrow().unflushed_bytes
    }

    /// Segment files set aside by a recovery that ended this log at a tear, as found when
    /// it was opened (they stay until an operator removes them or the partition is deleted).
    pub fn set_aside_files(&self) -> Vec<SetAsideFile> {
        self.inner.state.borrow().set_aside.clone()
    }

    /// Bytes of [`PartitionLog::set_aside_files`].
    pub fn set_aside_bytes(&self) -> u64 {
        self.inner.state.borrow().set_aside.iter().map(|f| f.bytes).sum()
    }

    /// Logical bytes of all segments.
    pub fn size_bytes(&self) -> u64 {
        self.inner.state.borrow().segments.values().map(|s| s.size).sum()
    }

    /// Segments whose bytes have not been CRC-checked since this process opened the log
    /// (checkpointed at the last run; verified by the first read or the background scrubber).
    pub fn unverified_segment_count(&self) -> usize {
        self.inner.state.borrow().segments.values().filter(|s| s.verify != segment::Verify::Done).count()
    }

    /// Rolled segments whose close (sync, cut, indexes) is still running in the background.
    pub fn closing_segment_count(&self) -> usize {
        self.inner.state.borrow().closing.len()
    }

    pub fn segment_count(&self) -> usize {
        self.inner.state.borrow().segments.len()
    }

    /// The partition directory.
    pub fn dir(&self) -> &Path {
        &self.inner.dir
    }
}

impl Inner {
    /// Wakes every append waiting for progress.
    fn notify_progress(&self) {
        self.progress.set(self.progress.get() + 1);
        let waiters = std::mem::take(&mut *self.progress_waiters.borrow_mut());
        for w in waiters {
            w.wake();
        }
    }

    /// Completes once `progress` differs from `seen`.
    async fn progress_since(&self, seen: u64) {
        std::future::poll_fn(|cx| {
            if self.progress.get() != seen {
                return std::task::Poll::Ready(());
            }
            self.progress_waiters.borrow_mut().push(cx.waker().clone());
            std::task::Poll::Pending
        })
        .await
    }

    /// The write lock for anything but an append: it also waits for a zeroing in flight,
    /// so the holder may change or cut the active segment (see `zero`).
    async fn lock(&self) -> Result<glommio::sync::Permit<'_>, LogError> {
        let permit = self.lock_for_append().await?;
        self.settle_zeroing().await;
        Ok(permit)
    }

    /// The write lock for writing queued appends, which may run beside a zeroing below its
    /// range (`write_queued` waits when it reaches it).
    async fn lock_for_append(&self) -> Result<glommio::sync::Permit<'_>, LogError> {
        self.write_lock.acquire_permit(1).await.map_err(|_| LogError::closed())
    }

    /// fdatasyncs the active segment if anything is unflushed; writes a checkpoint when due
    /// (or always when `force_checkpoint`). Caller holds the write lock.
    async fn sync_locked(&self, force_checkpoint: bool) -> Result<(), LogError> {
        let (file, unflushed, written_end, checkpoint) = {
            let st = self.state.borrow();
            if let Some(p) = &st.poisoned {
                return Err(LogError::Poisoned(p.clone()));
            }
            let a = st.active();
            let cp = Checkpoint { segment_base: a.base, position: a.size, next_offset: a.next_offset };
            (a.file.clone(), st.unflushed_bytes, st.written_end, cp)
        };
        if unflushed > 0 {
            if let Err(e) = file.fdatasync().await {
                let reason = format!("fdatasync of {:?} failed: {e}", file.path());
                tracing::error!("{reason}; refusing further writes to this partition");
                self.state.borrow_mut().poisoned = Some(Failure::new(reason, e.raw_os_error()));
                return Err(LogError::Io(e));
            }
            let mut st = self.state.borrow_mut();
            // A sync beside this one (zero-ahead's) may have failed meanwhile: its error
            // was this file's, so this success proves nothing.
            if let Some(p) = &st.poisoned {
                return Err(LogError::Poisoned(p.clone()));
            }
            st.synced_end = st.synced_end.max(written_end);
            st.unflushed_bytes -= unflushed;
            st.bytes_since_checkpoint += unflushed;
            drop(st);
            self.notify_progress();
        }
        let due = self.state.borrow().bytes_since_checkpoint >= CHECKPOINT_INTERVAL_BYTES;
        if due || force_checkpoint {
            self.checkpoint_active(checkpoint).await?;
        }
        Ok(())
    }

    /// Persists the active segment's index entries, then the checkpoint that trusts them.
    /// Skipped while a rolled segment is still being closed: the checkpoint may name the
    /// active segment only once every older one is durable (the closer moves it then).
    async fn checkpoint_active(&self, checkpoint: Checkpoint) -> Result<(), LogError> {
        if !self.state.borrow().closing.is_empty() {
            return Ok(());
        }
        let active = self.state.borrow().active().base;
        self.persist_segment_index(active).await?;
        segment::write_checkpoint(&self.storage, &self.dir, &checkpoint).await?;
        self.state.borrow_mut().bytes_since_checkpoint = 0;
        Ok(())
    }

    /// Writes segment `base`'s index entries that are not in its files yet and records
    /// them as persisted.
    async fn persist_segment_index(&self, base: u64) -> Result<(), LogError> {
        let snap = self.state.borrow().segments.get(&base).map(|s| s.index_snapshot(&self.dir));
        let Some(snap) = snap else { return Ok(()) };
        let counts = snap.counts;
        segment::persist_index(&self.storage, snap).await?;
        if let Some(seg) = self.state.borrow_mut().segments.get_mut(&base) {
            seg.persisted = counts;
        }
        Ok(())
    }

    /// Clean-close of the active segment: sync, cut to logical length, indexes, checkpoint.
    async fn finish_active(&self) -> Result<(), LogError> {
        self.sync_locked(false).await?;
        let (file, size, reserved) = {
            let st = self.state.borrow();
            (st.active().file.clone(), st.active().size, st.active().prealloc_end > st.active().size)
        };
        file.cut_to(size, reserved).await?;
        {
            let mut st = self.state.borrow_mut();
            st.active_mut().prealloc_end = size;
            st.share_reservation();
        }
        let checkpoint = {
            let st = self.state.borrow();
            let a = st.active();
            Checkpoint { segment_base: a.base, position: a.size, next_offset: a.next_offset }
        };
        self.checkpoint_active(checkpoint).await
    }
}

fn spawn_interval_flusher(inner: std::rc::Weak<Inner>, interval_ms: u64) {
    glommio::spawn_local(async move {
        loop {
            glommio::timer::sleep(std::time::Duration::from_millis(interval_ms)).await;
            let Some(inner) = inner.upgrade() else { break };
            if inner.closed.get() {
                break;
            }
            if inner.state.borrow().unflushed_bytes == 0 {
                continue;
            }
            let Ok(_permit) = inner.lock().await else { break };
            if let Err(e) = inner.sync_locked(false).await {
                tracing::error!(dir = %inner.dir.display(), "interval flush failed: {e}");
            }
        }
    })
    .detach();
}
