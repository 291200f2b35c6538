//! File access of the log: [`SegmentFile`] (one `.log` file, opened through glommio for
//! io_uring reads/writes plus a plain fd for sendfile — and, in buffered mode, for large
//! appends written by pwrite on the blocking pool), the DMA iopoll probe workaround,
//! free-space checks and directory fsync.
//!
//! Invariant: in direct mode every write is `block`-aligned in position and length; the
//! shell never hands glommio a misaligned DMA write.

use super::config::IoMode;
use bytes::Bytes;
use glommio::io::{BufferedFile, DmaBuffer, DmaFile, OpenOptions};
use std::cell::RefCell;
use std::collections::{HashSet, VecDeque};
use std::future::Future;
use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::fs::{FileExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::rc::Rc;
use std::sync::Arc;

/// Alignment of direct-mode writes (and of the in-memory tail block).
pub const BLOCK_BYTES: u64 = 4096;
/// Name of the non-empty file opened first by each executor so glommio's iopoll probe reads real data.
pub const PROBE_FILE_NAME: &str = ".dma-probe";
const PROBE_FILE_BYTES: usize = 8192;

/// glommio's `From<GlommioError> for io::Error` turns `EnhancedIoError` (what most file
/// operations fail with) into a message without the OS code, so callers could no longer tell
/// EIO from ENOSPC. This keeps glommio's source error, raw errno included, whenever it has one;
/// callers add the path to their own messages. Every glommio call of the log goes through it.
pub(crate) fn os_error<T>(e: glommio::GlommioError<T>) -> io::Error {
    match e {
        glommio::GlommioError::EnhancedIoError { source, .. } if source.raw_os_error().is_some() => source,
        glommio::GlommioError::IoError(source) => source,
        other => io::Error::from(other),
    }
}

/// `.os()` on a glommio result: [`os_error`] on its error.
pub(crate) trait OsResult<T> {
    fn os(self) -> io::Result<T>;
}

impl<T, U> OsResult<T> for Result<T, glommio::GlommioError<U>> {
    fn os(self) -> io::Result<T> {
        self.map_err(os_error)
    }
}

/// One segment's `.log` file. Shared by `Rc` with in-flight reads, so the fds stay open
/// even after retention unlinks the file.
pub struct SegmentFile {
    path: PathBuf,
    /// Without O_DIRECT: read-only in direct mode; in buffered mode also written (large
    /// appends, see [`SegmentFile::write_append`]). `None` for a simulated file, which
    /// refuses zero-copy.
    plain: Option<Arc<std::fs::File>>,
    io: FileIo,
    /// Opened with O_DSYNC: every completed write is already durable (no fdatasync needed).
    dsync: bool,
}

/// The io_uring-backed handle of a segment file.
pub(crate) enum FileIo {
    Dma(DmaFile),
    Buffered(BufferedFile),
    /// An in-memory file of the simulator (`log::sim`); `direct` models direct mode's
    /// alignment (every write block-aligned) and size-extending preallocation.
    #[cfg(feature = "sim")]
    Sim {
        file: super::sim::SimFile,
        direct: bool,
    },
}

impl SegmentFile {
    /// Opens (creating if asked) the segment at `path` for reading and writing.
    #[cfg_attr(
        not(test),
        allow(dead_code, reason = "the plain entry point; net::zerocopy tests open segments with it")
    )]
    pub(crate) async fn open(path: &Path, mode: IoMode, create: bool) -> io::Result<SegmentFile> {
        Self::open_with(path, mode, create, false).await
    }

    /// Like [`SegmentFile::open`]; with `dsync` (fsync=always) the file is opened O_DSYNC: each
    /// write carries its own data sync, so an append costs one io_uring operation (one io-wq
    /// hop) instead of a write plus an fdatasync.
    pub(crate) async fn open_with(path: &Path, mode: IoMode, create: bool, dsync: bool) -> io::Result<SegmentFile> {
        let mut opts = OpenOptions::new();
        opts.read(true).write(true).create(create);
        if dsync {
            opts.custom_flags(libc::O_DSYNC);
        }
        let io = match mode {
            IoMode::Direct => FileIo::Dma(opts.dma_open(path).await.os()?),
            IoMode::Buffered => FileIo::Buffered(opts.buffered_open(path).await.os()?),
        };
        // The plain fd (sendfile; buffered large appends) is opened on glommio's blocking
        // pool: an open can wait on the filesystem, and a roll opens segments while appends
        // are queued on this reactor.
        let owned = path.to_owned();
        let writable = mode == IoMode::Buffered;
        let plain = glommio::executor()
            .spawn_blocking(move || {
                let mut opts = std::fs::OpenOptions::new();
                opts.read(true).write(writable);
                if writable && dsync {
                    opts.custom_flags(libc::O_DSYNC);
                }
                opts.open(owned)
            })
            .await?;
        Ok(SegmentFile { path: path.to_owned(), plain: Some(Arc::new(plain)), io, dsync })
    }

    /// A segment over a simulated file (`log::sim`).
    #[cfg(feature = "sim")]
    pub(crate) fn sim(file: super::sim::SimFile, mode: IoMode) -> SegmentFile {
        let path = file.path().to_owned();
        let dsync = file.is_dsync();
        SegmentFile { path, plain: None, io: FileIo::Sim { file, direct: mode == IoMode::Direct }, dsync }
    }

    /// The plain fd's file; panics for a simulated segment (the simulator never sends
    /// segments zero-copy, and a caller that tries is a bug of the simulator's set-up).
    fn plain(&self) -> &Arc<std::fs::File> {
        self.plain.as_ref().expect("a simulated segment has no fd: zero-copy sends are refused in the simulator")
    }

    /// Whether this segment has a plain fd (false only in the simulator).
    pub(crate) fn has_fd(&self) -> bool {
        self.plain.is_some()
    }

    /// Whether the segment's IO goes through the page cache (buffered mode).
    pub(crate) fn is_buffered(&self) -> bool {
        matches!(self.io, FileIo::Buffered(_))
    }

    /// Whether completed writes are durable without an fdatasync (O_DSYNC).
    pub(crate) fn is_dsync(&self) -> bool {
        self.dsync
    }

    /// The plain fd (without O_DIRECT), usable with splice/sendfile.
    pub fn raw_fd(&self) -> RawFd {
        self.plain().as_raw_fd()
    }

    /// The plain file as a thread-safe handle, for another shard to send from (it keeps
    /// the file open, as the segment's `Rc` does on its own shard).
    pub fn shared(&self) -> Arc<std::fs::File> {
        self.plain().clone()
    }

    /// Where the file lives (it may have been unlinked since).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Reads up to `len` bytes at `pos` through io_uring; shorter only at end of file.
    pub(crate) async fn read_at(&self, pos: u64, len: usize) -> io::Result<Vec<u8>> {
        let mut out = Vec::with_capacity(len);
        self.read_into(pos, len, &mut out).await?;
        Ok(out)
    }

    /// Like [`Self::read_at`], into `out` (cleared first, its capacity reused).
    pub(crate) async fn read_into(&self, pos: u64, len: usize, out: &mut Vec<u8>) -> io::Result<()> {
        out.clear();
        while out.len() < len {
            let at = pos + out.len() as u64;
            let want = len - out.len();
            let got = match &self.io {
                FileIo::Dma(f) => f.read_at(at, want).await.os()?,
                FileIo::Buffered(f) => f.read_at(at, want).await.os()?,
                #[cfg(feature = "sim")]
                FileIo::Sim { file, .. } => {
                    let got = file.read_at(at, want).await?;
                    if got.is_empty() {
                        break;
                    }
                    out.extend_from_slice(&got);
                    continue;
                }
            };
            if got.is_empty() {
                break;
            }
            out.extend_from_slice(&got);
        }
        Ok(())
    }

    pub(crate) async fn fdatasync(&self) -> io::Result<()> {
        let started = std::time::Instant::now();
        match &self.io {
            FileIo::Dma(f) => f.fdatasync().await.os()?,
            FileIo::Buffered(f) => f.fdatasync().await.os()?,
            #[cfg(feature = "sim")]
            FileIo::Sim { file, .. } => file.fdatasync().await?,
        }
        let us = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
        crate::metrics::FSYNC_LATENCY.record_us(us);
        Ok(())
    }

    pub(crate) async fn truncate(&self, len: u64) -> io::Result<()> {
        match &self.io {
            FileIo::Dma(f) => f.truncate(len).await.os()?,
            FileIo::Buffered(f) => f.truncate(len).await.os()?,
            #[cfg(feature = "sim")]
            FileIo::Sim { file, .. } => file.truncate(len).await?,
        }
        Ok(())
    }

    /// Cuts the file to its logical length `len`, durably, when it is longer or has blocks
    /// reserved past `len`. Buffered mode reserves past EOF (FALLOC_FL_KEEP_SIZE): the file
    /// size already equals the logical length, yet the blocks stay allocated until a
    /// truncate frees them.
    pub(crate) async fn cut_to(&self, len: u64, reserved: bool) -> io::Result<()> {
        if reserved || self.file_size().await? != len {
            self.truncate(len).await?;
            self.fdatasync().await?;
        }
        Ok(())
    }

    pub(crate) async fn file_size(&self) -> io::Result<u64> {
        Ok(match &self.io {
            FileIo::Dma(f) => f.file_size().await.os()?,
            FileIo::Buffered(f) => f.file_size().await.os()?,
            #[cfg(feature = "sim")]
            FileIo::Sim { file, .. } => file.file_size()?,
        })
    }

    /// Reserves blocks up to `len`. Direct mode also extends the file size (the logical length
    /// is tracked in memory; recovery cuts the zero tail), so later DMA writes do not extend the
    /// file: ext4 runs extending O_DIRECT writes under the exclusive inode lock, one at a time,
    /// which would defeat keeping several writes in flight. Buffered mode keeps the size.
    pub(crate) async fn preallocate(&self, len: u64) -> io::Result<()> {
        match &self.io {
            FileIo::Dma(f) => f.pre_allocate(len, false).await.os()?,
            FileIo::Buffered(f) => f.pre_allocate(len, true).await.os()?,
            #[cfg(feature = "sim")]
            FileIo::Sim { file, direct } => file.preallocate(len, !*direct)?,
        }
        Ok(())
    }

    /// Writes zeros over `[from, to)` (block-aligned) in pieces of at most 1 MiB, asking
    /// `stop` before each, then fdatasyncs them once; `Ok(false)` when it stopped early
    /// (zero-ahead, `log::zero`). In buffered mode the pieces go through a file description
    /// of their own without O_DSYNC, so a chunk costs one sync, not one per piece.
    pub(crate) async fn write_zeros(&self, from: u64, to: u64, stop: impl Fn() -> bool) -> Result<bool, ZeroFailure> {
        assert!(from.is_multiple_of(BLOCK_BYTES) && to.is_multiple_of(BLOCK_BYTES), "unaligned zeroing {from}..{to}");
        #[cfg(feature = "sim")]
        if let FileIo::Sim { file, .. } = &self.io {
            return sim_write_zeros(file, from, to, stop).await;
        }
        let plain = match &self.io {
            FileIo::Dma(_) => None,
            #[cfg(feature = "sim")]
            FileIo::Sim { .. } => unreachable!("zeroed above"),
            FileIo::Buffered(_) => {
                let path = self.path.clone();
                let file = glommio::executor()
                    .spawn_blocking(move || std::fs::OpenOptions::new().write(true).open(path))
                    .await
                    .map_err(ZeroFailure::Write)?;
                Some(Arc::new(file))
            }
        };
        let mut at = from;
        while at < to {
            if stop() {
                return Ok(false);
            }
            let len = (to - at).min(ZEROS.len() as u64) as usize;
            match (&self.io, &plain) {
                (_, Some(file)) => {
                    let file = file.clone();
                    glommio::executor()
                        .spawn_blocking(move || file.write_all_at(&ZEROS[..len], at))
                        .await
                        .map_err(ZeroFailure::Write)?
                }
                // No parts: the DMA buffers are zero-filled.
                (FileIo::Dma(f), None) => write_dma_pipelined(f, at, &[], len).await.map_err(ZeroFailure::Write)?,
                (FileIo::Buffered(_), None) => unreachable!("buffered zeroing has its own fd"),
                #[cfg(feature = "sim")]
                (FileIo::Sim { .. }, None) => unreachable!("zeroed above"),
            }
            at += len as u64;
        }
        let synced = match plain {
            Some(file) => glommio::executor().spawn_blocking(move || file.sync_data()).await,
            None => self.fdatasync().await,
        };
        synced.map_err(ZeroFailure::Sync)?;
        Ok(true)
    }

    /// Writes `tail ++ data` where `tail` is the in-memory partial block starting at the
    /// aligned position `block_pos` (direct mode) or writes `data` at `logical_len` (buffered).
    /// Returns once every byte is written. An O_DSYNC file's write is its data sync, so its
    /// time goes to `metrics::FSYNC_LATENCY` as an fdatasync's does.
    pub(crate) async fn write_append(&self, block_pos: u64, tail: &[u8], data: &[Bytes]) -> io::Result<()> {
        let started = std::time::Instant::now();
        let written = self.write_segment(block_pos, tail, data).await;
        if self.dsync && written.is_ok() {
            let us = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
            crate::metrics::FSYNC_LATENCY.record_us(us);
        }
        written
    }

    async fn write_segment(&self, block_pos: u64, tail: &[u8], data: &[Bytes]) -> io::Result<()> {
        let data_len: usize = data.iter().map(|d| d.len()).sum();
        match &self.io {
            FileIo::Dma(f) => {
                assert_eq!(block_pos % BLOCK_BYTES, 0, "direct write position must be block aligned");
                let mut parts = Vec::with_capacity(data.len() + 1);
                parts.push(tail);
                parts.extend(data.iter().map(|d| &d[..]));
                write_dma_pipelined(f, block_pos, &parts, tail.len() + data_len).await
            }
            FileIo::Buffered(_) if data_len >= BUFFERED_POOL_WRITE_MIN_BYTES => {
                // glommio's buffered write takes one owned Vec, so io_uring would cost a copy
                // of the whole group first; a large group is written from its own buffers by
                // pwrite on the blocking pool instead (the kernel's page-cache copy is the only one).
                let (file, pieces) = (self.plain().clone(), data.to_vec());
                let pos = block_pos + tail.len() as u64;
                glommio::executor()
                    .spawn_blocking(move || {
                        let mut at = pos;
                        for piece in &pieces {
                            file.write_all_at(piece, at)?;
                            at += piece.len() as u64;
                        }
                        Ok(())
                    })
                    .await
            }
            FileIo::Buffered(f) => {
                let data: Vec<&[u8]> = data.iter().map(|d| &d[..]).collect();
                let data = &data[..];
                let pos = block_pos + tail.len() as u64;
                let mut done = 0usize;
                while done < data_len {
                    // A short write means the device filled up midway; retrying surfaces the errno.
                    let n = f.write_at(concat(data, done), pos + done as u64).await.os()?;
                    if n == 0 {
                        return Err(short_write(done, data_len));
                    }
                    done += n;
                }
                Ok(())
            }
            #[cfg(feature = "sim")]
            FileIo::Sim { file, direct } => sim_write_segment(file, *direct, block_pos, tail, data, data_len).await,
        }
    }
}

/// A simulated segment write: in direct mode the stream `tail ++ data` zero-padded to the
/// block size, in aligned chunks of `DMA_CHUNK_BYTES` (as the DMA path cuts it); in
/// buffered mode `data` at `block_pos + tail.len()` in one write.
#[cfg(feature = "sim")]
async fn sim_write_segment(
    file: &super::sim::SimFile,
    direct: bool,
    block_pos: u64,
    tail: &[u8],
    data: &[Bytes],
    data_len: usize,
) -> io::Result<()> {
    if !direct {
        let mut buf = Vec::with_capacity(data_len);
        for d in data {
            buf.extend_from_slice(d);
        }
        return file.write_at(block_pos + tail.len() as u64, &buf).await;
    }
    assert_eq!(block_pos % BLOCK_BYTES, 0, "direct write position must be block aligned");
    let mut parts: Vec<&[u8]> = Vec::with_capacity(data.len() + 1);
    parts.push(tail);
    parts.extend(data.iter().map(|d| &d[..]));
    let total = tail.len() + data_len;
    let padded = total.div_ceil(BLOCK_BYTES as usize) * BLOCK_BYTES as usize;
    let mut start = 0usize;
    while start < padded {
        let len = (padded - start).min(DMA_CHUNK_BYTES);
        let mut buf = vec![0u8; len];
        fill_from_stream(&parts, start, &mut buf);
        assert!(len.is_multiple_of(BLOCK_BYTES as usize), "direct write length must be block aligned");
        file.write_at(block_pos + start as u64, &buf).await?;
        start += len;
    }
    Ok(())
}

/// [`SegmentFile::write_zeros`] on a simulated file.
#[cfg(feature = "sim")]
async fn sim_write_zeros(
    file: &super::sim::SimFile,
    from: u64,
    to: u64,
    stop: impl Fn() -> bool,
) -> Result<bool, ZeroFailure> {
    let mut at = from;
    while at < to {
        if stop() {
            return Ok(false);
        }
        let len = (to - at).min(ZEROS.len() as u64) as usize;
        file.write_at(at, &ZEROS[..len]).await.map_err(ZeroFailure::Write)?;
        at += len as u64;
    }
    file.fdatasync().await.map_err(ZeroFailure::Sync)?;
    Ok(true)
}

/// Why zeroing ahead failed: a failed write of zeros is harmless (the data is elsewhere),
/// a failed fdatasync is not — it covered the file's appended data too, and a later
/// fdatasync may report success without those pages (the kernel reports a writeback error
/// once), so the log must be poisoned.
#[derive(Debug)]
pub(crate) enum ZeroFailure {
    Write(io::Error),
    Sync(io::Error),
}

/// Buffered-mode append groups of at least this many bytes are written by pwrite on the
/// blocking pool (no copy); smaller ones are copied into one buffer for an io_uring write
/// (the copy is cheaper than a thread hop).
pub(crate) const BUFFERED_POOL_WRITE_MIN_BYTES: usize = 64 * 1024;

/// Bytes of one direct-mode write: the stream of an append group is cut into aligned chunks
/// of this size (the last one shorter), so buffers come from glommio's registered io memory
/// or the chunk pool and several writes can be in flight.
pub(crate) const DMA_CHUNK_BYTES: usize = 1 << 20;
/// What buffered zero-ahead writes copy from (one piece).
static ZEROS: [u8; DMA_CHUNK_BYTES] = [0; DMA_CHUNK_BYTES];
/// Direct-mode writes of one append group in flight at once (like fio's iodepth).
pub(crate) const DMA_WRITES_IN_FLIGHT_MAX: usize = 4;
/// Full-size chunk buffers kept for reuse per executor thread (shard).
const DMA_POOL_BUFFERS_MAX: usize = 8;
const _: () = assert!(DMA_CHUNK_BYTES.is_multiple_of(BLOCK_BYTES as usize));
const _: () = assert!(DMA_POOL_BUFFERS_MAX >= DMA_WRITES_IN_FLIGHT_MAX);

thread_local! {
    /// Reused full-size DMA chunk buffers of this executor thread: no allocation (and no page
    /// faults on fresh memory) per write. Buffers return here once their write completed.
    static DMA_POOL: RefCell<Vec<DmaBuffer>> = const { RefCell::new(Vec::new()) };
}

type ChunkWrite<'a> = Pin<Box<dyn Future<Output = (io::Result<usize>, Rc<DmaBuffer>, usize)> + 'a>>;

/// Writes the logical stream `parts` (`total` bytes, zero-padded to the block size) at the
/// aligned `block_pos` as aligned chunk writes, at most `DMA_WRITES_IN_FLIGHT_MAX` in flight;
/// returns once all completed (the first error wins, after every in-flight write finished,
/// so no buffer is released while the kernel may still read it).
async fn write_dma_pipelined(f: &DmaFile, block_pos: u64, parts: &[&[u8]], total: usize) -> io::Result<()> {
    let padded = total.div_ceil(BLOCK_BYTES as usize) * BLOCK_BYTES as usize;
    let mut in_flight: VecDeque<ChunkWrite<'_>> = VecDeque::with_capacity(DMA_WRITES_IN_FLIGHT_MAX);
    let mut next_start = 0usize;
    let mut result = Ok(());
    loop {
        while in_flight.len() < DMA_WRITES_IN_FLIGHT_MAX && next_start < padded && result.is_ok() {
            let len = (padded - next_start).min(DMA_CHUNK_BYTES);
            let mut buf = take_dma_buffer(f, len);
            fill_from_stream(parts, next_start, buf.as_bytes_mut());
            let buf = Rc::new(buf);
            let pos = block_pos + next_start as u64;
            let mut write: ChunkWrite<'_> =
                Box::pin(async move { (f.write_rc_at(buf.clone(), pos).await.os(), buf, len) });
            // Polling once submits the write to the ring; it then completes on its own.
            if let Some(done) = futures_lite::future::poll_once(&mut write).await {
                write = Box::pin(std::future::ready(done));
            }
            in_flight.push_back(write);
            next_start += len;
        }
        let Some(write) = in_flight.pop_front() else { break };
        let (written, buf, len) = write.await;
        match written {
            Ok(n) if n >= len => {}
            Ok(n) => result = result.and(Err(short_write(n, len))),
            Err(e) => result = result.and(Err(e)),
        }
        if let Ok(buf) = Rc::try_unwrap(buf) {
            give_dma_buffer(buf);
        }
    }
    result
}

fn take_dma_buffer(f: &DmaFile, len: usize) -> DmaBuffer {
    if len == DMA_CHUNK_BYTES {
        if let Some(buf) = DMA_POOL.with(|p| p.borrow_mut().pop()) {
            return buf;
        }
    }
    f.alloc_dma_buffer(len)
}

fn give_dma_buffer(buf: DmaBuffer) {
    if buf.len() == DMA_CHUNK_BYTES {
        DMA_POOL.with(|p| {
            let mut pool = p.borrow_mut();
            if pool.len() < DMA_POOL_BUFFERS_MAX {
                pool.push(buf);
            }
        });
    }
}

/// Copies the bytes of the concatenation of `parts` starting at `skip` into `out`, zero-filling
/// whatever the stream does not cover.
fn fill_from_stream(parts: &[&[u8]], mut skip: usize, out: &mut [u8]) {
    let mut at = 0usize;
    for part in parts {
        if at == out.len() {
            break;
        }
        if skip >= part.len() {
            skip -= part.len();
            continue;
        }
        let take = (part.len() - skip).min(out.len() - at);
        out[at..at + take].copy_from_slice(&part[skip..skip + take]);
        at += take;
        skip = 0;
    }
    out[at..].fill(0);
}

/// The bytes of `data` after skipping `skip` of them, as one owned buffer.
fn concat(data: &[&[u8]], mut skip: usize) -> Vec<u8> {
    let total: usize = data.iter().map(|d| d.len()).sum();
    let mut out = Vec::with_capacity(total.saturating_sub(skip));
    for d in data {
        let from = skip.min(d.len());
        skip -= from;
        out.extend_from_slice(&d[from..]);
    }
    out
}

fn short_write(written: usize, wanted: usize) -> io::Error {
    io::Error::new(io::ErrorKind::StorageFull, format!("short write: {written} of {wanted} bytes"))
}

thread_local! {
    /// Devices whose iopoll support this executor thread has probed with a non-empty file.
    static PROBED_DEVICES: RefCell<HashSet<u64>> = RefCell::new(HashSet::new());
}

/// Works around glommio 0.9's iopoll probe (DESIGN §9): the first DMA open per device and
/// executor reads 512 bytes at offset 0 with the poll ring; on an empty file that read
/// "succeeds", glommio marks the device pollable and every later DMA read fails with
/// EOPNOTSUPP. Opening a non-empty probe file first makes the probe see the truth.
/// Idempotent per (executor thread, device); call before any other DMA open in `dir`.
pub async fn probe_dma(dir: &Path) -> io::Result<()> {
    let dev = std::fs::metadata(dir)?.dev();
    if PROBED_DEVICES.with(|p| p.borrow().contains(&dev)) {
        return Ok(());
    }
    let path = dir.join(PROBE_FILE_NAME);
    let ok_len = std::fs::metadata(&path).map(|m| m.len() as usize >= PROBE_FILE_BYTES).unwrap_or(false);
    if !ok_len {
        std::fs::write(&path, vec![0xA5u8; PROBE_FILE_BYTES])?;
    }
    let file = DmaFile::open(&path).await.os()?;
    file.close().await.os()?;
    PROBED_DEVICES.with(|p| p.borrow_mut().insert(dev));
    Ok(())
}

/// Free bytes available to unprivileged users on the filesystem holding `dir`.
pub(crate) fn free_bytes(dir: &Path) -> io::Result<u64> {
    use std::os::unix::ffi::OsStrExt;
    let c_path = std::ffi::CString::new(dir.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path contains NUL"))?;
    let mut st = std::mem::MaybeUninit::<libc::statvfs>::uninit();
    // SAFETY: `c_path` is a valid NUL-terminated string and `st` points to writable memory
    // of the right type; statvfs fills it completely when it returns 0.
    let rc = unsafe { libc::statvfs(c_path.as_ptr(), st.as_mut_ptr()) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: statvfs returned 0, so the struct was initialised.
    let st = unsafe { st.assume_init() };
    Ok(st.f_bavail.saturating_mul(st.f_frsize))
}

/// `create_dir_all` on glommio's blocking pool: creating directories can wait on the
/// filesystem, and the reactor serves every other partition of the shard.
pub async fn create_dir_all(dir: &Path) -> io::Result<()> {
    let dir = dir.to_owned();
    glommio::executor().spawn_blocking(move || std::fs::create_dir_all(dir)).await
}

/// fsyncs a directory so created, renamed or removed names in it are durable (through
/// io_uring: the reactor does not block on the journal commit).
pub(crate) async fn sync_dir(dir: &Path) -> io::Result<()> {
    let d = glommio::io::Directory::open(dir).await.os()?;
    d.sync().await.os()?;
    d.close().await.os()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_fill_crosses_parts_and_zero_pads() {
        let parts: [&[u8]; 3] = [b"ab", b"", b"cdefg"];
        let mut out = [9u8; 4];
        fill_from_stream(&parts, 1, &mut out);
        assert_eq!(&out, b"bcde");
        let mut out = [9u8; 5];
        fill_from_stream(&parts, 4, &mut out);
        assert_eq!(&out, b"efg\0\0");
        let mut out = [9u8; 3];
        fill_from_stream(&parts, 7, &mut out);
        assert_eq!(out, [0u8; 3]);
    }

    #[test]
    fn glommio_errors_keep_the_errno() {
        let enhanced = glommio::GlommioError::<()>::EnhancedIoError {
            source: io::Error::from_raw_os_error(libc::EIO),
            op: "Syncing",
            path: Some(PathBuf::from("/d/0.log")),
            fd: Some(7),
        };
        assert_eq!(os_error(enhanced).raw_os_error(), Some(libc::EIO));
    }
}
