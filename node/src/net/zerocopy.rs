//! Sending segment-file bytes to a socket: zero-copy while the socket has room, a bounded
//! copy through the connection's async write while it has none.
//!
//! Design (DESIGN §5: cold data must not stall the reactor, and no client may hold a
//! shared thread): connection sockets are `O_NONBLOCK` (glommio itself only ever sends and
//! receives with `MSG_DONTWAIT` plus io_uring poll, so the flag changes nothing for it).
//! `sendfile(2)` runs on the shard's glommio blocking-thread pool, because a page-cache miss
//! makes it read the disk; on a non-blocking socket it returns as soon as the socket buffer
//! is full, so a blocking thread is held for at most the disk read, never by a slow or
//! never-reading client. When the socket is full, the next [`COPY_PIECE_BYTES`] are read
//! through io_uring and written with the connection's normal async write, which waits for
//! room on the reactor's io_uring poll without holding any thread; then zero-copy resumes.
//! A client that reads nothing for [`SEND_STALL_MAX`] gets its connection closed (glommio
//! write timeout). Memory per stalled connection is one piece.
//!
//! The socket and file descriptors are `dup`ed for the blocking thread, so the call stays
//! fd-safe even if the connection task is dropped while the thread runs.
//!
//! A cold range (a buffered-mode segment of this shard whose pages are not all in the page
//! cache) skips `sendfile`: it is read through io_uring, two pieces in flight, and written
//! with the async write (the TLS path's [`copy_range`]), so the disk wait happens on the
//! kernel's io-wq workers and holds none of the shard's blocking threads. Once readahead
//! runs ahead of a catch-up, its ranges are in the page cache (or being read into it) and go
//! by `sendfile` again.
//!
//! Invariant: the caller holds the connection's write lock for the whole call, so no other
//! bytes interleave with the payload; an error leaves the frame on the wire incomplete and
//! the caller must close the connection.

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::time::Duration;

use futures_lite::io::{AsyncWrite, AsyncWriteExt};

use crate::log::SegmentFile;

/// How long a response write may make no progress (client not reading) before it fails.
pub const SEND_STALL_MAX: Duration = Duration::from_secs(30);
/// Blocking threads per shard (set by the executor builder): a cold `sendfile` or other
/// blocking call of one fetch must not serialize every other fetch of the shard behind it.
pub const BLOCKING_THREADS_PER_SHARD: usize = 4;
/// Bytes copied through user space per round when the socket buffer is full.
pub const COPY_PIECE_BYTES: u32 = 64 * 1024;

/// How the bytes of one send went out.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct SentBytes {
    /// Moved file → socket by the kernel (`sendfile`).
    pub zero_copy: u64,
    /// Read into memory and written (the socket was full).
    pub copied: u64,
}

/// Makes a connection socket non-blocking, so `sendfile` on it never waits for the peer.
pub fn make_nonblocking(socket: RawFd) -> io::Result<()> {
    // SAFETY: F_GETFL only reads the descriptor's flags; an invalid fd yields EBADF.
    let flags = unsafe { libc::fcntl(socket, libc::F_GETFL) };
    if flags < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: F_SETFL with the flags just read plus O_NONBLOCK; no memory is passed.
    if unsafe { libc::fcntl(socket, libc::F_SETFL, flags | libc::O_NONBLOCK) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Sends `len` bytes of `file` from `pos` to `socket` (a non-blocking socket whose write
/// half is `writer`, held locked by the caller). Returns when every byte was sent.
pub async fn send_file<W: AsyncWrite + Unpin>(
    writer: &mut W,
    socket: RawFd,
    file: &SegmentFile,
    pos: u64,
    len: u32,
) -> io::Result<SentBytes> {
    send_range(writer, socket, Source::Own(file), pos, len).await
}

/// Like [`send_file`], for a segment file another shard handed over (`ReadChunk::Shared`).
pub async fn send_shared<W: AsyncWrite + Unpin>(
    writer: &mut W,
    socket: RawFd,
    file: &std::sync::Arc<std::fs::File>,
    pos: u64,
    len: u32,
) -> io::Result<SentBytes> {
    send_range(writer, socket, Source::Shared(file), pos, len).await
}

/// The file a range is sent from: this shard's segment (io_uring reads for the copied
/// pieces) or another shard's plain file (blocking-pool reads).
#[derive(Clone, Copy)]
enum Source<'a> {
    Own(&'a SegmentFile),
    Shared(&'a std::sync::Arc<std::fs::File>),
}

impl Source<'_> {
    fn raw_fd(self) -> RawFd {
        match self {
            Source::Own(file) => file.raw_fd(),
            Source::Shared(file) => file.as_raw_fd(),
        }
    }

    async fn read_at(self, pos: u64, len: usize) -> io::Result<Vec<u8>> {
        match self {
            Source::Own(file) => file.read_at(pos, len).await,
            Source::Shared(file) => crate::log::read_shared(file, pos, len).await,
        }
    }
}

async fn send_range<W: AsyncWrite + Unpin>(
    writer: &mut W,
    socket: RawFd,
    file: Source<'_>,
    pos: u64,
    len: u32,
) -> io::Result<SentBytes> {
    let end = pos + u64::from(len);
    if let Source::Own(own) = file {
        if own.is_buffered() && !range_cached(own.raw_fd(), pos, end) {
            // Cold: served by io_uring reads (the kernel's io-wq waits for the disk, not
            // one of the shard's blocking threads) and the async socket write, two pieces
            // in flight; the read-ahead hint keeps the device busy ahead of them.
            hint_read_ahead_on_pool(own.raw_fd(), end).await?;
            return copy_range(writer, file, pos, len).await;
        }
    }
    let mut sent = SentBytes::default();
    let mut at = pos;
    while at < end {
        let moved = sendfile_on_pool(socket, file.raw_fd(), at, end - at).await?;
        at += moved;
        sent.zero_copy += moved;
        if at == end {
            break;
        }
        // Socket full: copy one bounded piece; the async write waits for room without a thread.
        let piece = (end - at).min(u64::from(COPY_PIECE_BYTES)) as usize;
        let bytes = file.read_at(at, piece).await?;
        if bytes.len() != piece {
            return Err(short_file(at, piece, bytes.len()));
        }
        writer.write_all(&bytes).await?;
        at += piece as u64;
        sent.copied += piece as u64;
    }
    debug_assert_eq!(sent.zero_copy + sent.copied, u64::from(len));
    Ok(sent)
}

/// Bytes of a segment file read per round for a connection that cannot take `sendfile`
/// (TLS: the bytes are encrypted in user space on their way out).
pub const TLS_PIECE_BYTES: usize = 256 * 1024;
/// Idle piece buffers a shard keeps for reuse (at most this × [`TLS_PIECE_BYTES`]).
const PIECE_BUFFERS_KEPT: usize = 16;

thread_local! {
    /// This shard's idle piece buffers (one per executor thread: shards share nothing).
    static PIECE_BUFFERS: std::cell::RefCell<Vec<Vec<u8>>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// A piece buffer taken from this shard's pool; goes back to it when dropped.
struct PieceBuffer(Vec<u8>);

impl PieceBuffer {
    fn take() -> Self {
        let reused = PIECE_BUFFERS.with(|pool| pool.borrow_mut().pop());
        PieceBuffer(reused.unwrap_or_else(|| Vec::with_capacity(TLS_PIECE_BYTES)))
    }
}

impl Drop for PieceBuffer {
    fn drop(&mut self) {
        let buf = std::mem::take(&mut self.0);
        if buf.capacity() >= TLS_PIECE_BYTES && buf.capacity() <= 2 * TLS_PIECE_BYTES {
            PIECE_BUFFERS.with(|pool| {
                let mut pool = pool.borrow_mut();
                if pool.len() < PIECE_BUFFERS_KEPT {
                    pool.push(buf);
                }
            });
        }
    }
}

/// Writes `len` bytes of `file` from `pos` through `writer` (a TLS stream: no `sendfile`),
/// [`TLS_PIECE_BYTES`] at a time through two reused buffers (the next piece is read while
/// the current one is written). Reads go through io_uring, so a cold read waits on the
/// reactor without blocking it; the write waits for the socket the same way. Memory per
/// connection sending: two buffers.
pub async fn copy_file<W: AsyncWrite + Unpin>(
    writer: &mut W,
    file: &SegmentFile,
    pos: u64,
    len: u32,
) -> io::Result<SentBytes> {
    copy_range(writer, Source::Own(file), pos, len).await
}

/// Like [`copy_file`], for a segment file another shard handed over (reads on the blocking
/// pool, as [`send_shared`]'s copied pieces).
pub async fn copy_shared<W: AsyncWrite + Unpin>(
    writer: &mut W,
    file: &std::sync::Arc<std::fs::File>,
    pos: u64,
    len: u32,
) -> io::Result<SentBytes> {
    copy_range(writer, Source::Shared(file), pos, len).await
}

async fn copy_range<W: AsyncWrite + Unpin>(
    writer: &mut W,
    file: Source<'_>,
    pos: u64,
    len: u32,
) -> io::Result<SentBytes> {
    let end = pos + u64::from(len);
    let piece_at = |at: u64| (end - at).min(TLS_PIECE_BYTES as u64) as usize;
    // Two buffers: the next piece is read while the current one is encrypted and written,
    // so the shard never waits for the file and the socket one after the other.
    let (mut current, mut next) = (PieceBuffer::take(), PieceBuffer::take());
    let mut at = pos;
    if at < end {
        read_piece(file, at, piece_at(at), &mut current.0).await?;
    }
    while at < end {
        let after = at + current.0.len() as u64;
        if after == end {
            writer.write_all(&current.0).await?;
            break;
        }
        let (written, read) = futures_lite::future::zip(
            writer.write_all(&current.0),
            read_piece(file, after, piece_at(after), &mut next.0),
        )
        .await;
        written?;
        read?;
        std::mem::swap(&mut current, &mut next);
        at = after;
    }
    Ok(SentBytes { zero_copy: 0, copied: u64::from(len) })
}

/// Reads exactly `piece` bytes at `at` into `buf` (replacing its contents).
async fn read_piece(file: Source<'_>, at: u64, piece: usize, buf: &mut Vec<u8>) -> io::Result<()> {
    match file {
        Source::Own(file) => file.read_into(at, piece, buf).await?,
        Source::Shared(file) => {
            let (returned, read) = crate::log::read_shared_into(file, at, piece, std::mem::take(buf)).await;
            *buf = returned;
            read?;
        }
    }
    if buf.len() != piece {
        return Err(short_file(at, piece, buf.len()));
    }
    Ok(())
}

fn short_file(pos: u64, want: usize, got: usize) -> io::Error {
    io::Error::new(io::ErrorKind::UnexpectedEof, format!("segment file has {got} of {want} bytes at {pos}"))
}

fn dup(fd: RawFd) -> io::Result<OwnedFd> {
    // SAFETY: dup only reads the descriptor number; an invalid one yields EBADF.
    let new = unsafe { libc::dup(fd) };
    if new < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `new` is a fresh descriptor this process owns and nobody else holds.
    Ok(unsafe { OwnedFd::from_raw_fd(new) })
}

/// Whether every page of `[pos, end)` of `file` is in the page cache (`cachestat(2)`, which
/// reads nothing: cheap enough for the reactor). A kernel without the call answers yes, so
/// it keeps the `sendfile` path.
fn range_cached(file: RawFd, pos: u64, end: u64) -> bool {
    let first = pos / PAGE_BYTES * PAGE_BYTES;
    let pages = end.div_ceil(PAGE_BYTES) - first / PAGE_BYTES;
    // SAFETY: `file` is an open descriptor the caller's segment keeps open for the call.
    let fd = unsafe { BorrowedFd::borrow_raw(file) };
    cached_pages(fd, first, end - first).is_none_or(|n| n >= pages)
}

/// [`read_ahead_if_cold`] past `end`, on the blocking pool (a hint can wait for the
/// filesystem's block map); it returns once the reads are queued.
async fn hint_read_ahead_on_pool(file: RawFd, end: u64) -> io::Result<()> {
    let file = dup(file)?;
    glommio::executor().spawn_blocking(move || read_ahead_if_cold(&file, end)).await;
    Ok(())
}

/// Runs [`sendfile_until_full`] on the executor's blocking-thread pool, after
/// [`read_ahead_if_cold`] past the range.
async fn sendfile_on_pool(socket: RawFd, file: RawFd, pos: u64, len: u64) -> io::Result<u64> {
    let socket = dup(socket)?;
    let file = dup(file)?;
    glommio::executor()
        .spawn_blocking(move || {
            read_ahead_if_cold(&file, pos + len);
            sendfile_until_full(&socket, &file, pos, len)
        })
        .await
}

/// How far past a fetched range a cold read is read ahead.
pub const COLD_READ_AHEAD_BYTES: u64 = 32 << 20;
/// The part of that window one hint asks for: its far end. Successive fetches move the
/// window, so the hinted parts join up, and each hint walks only this much page cache.
pub const COLD_READ_AHEAD_STEP_BYTES: u64 = 8 << 20;
const PAGE_BYTES: u64 = 4096;

/// When the last page of the [`COLD_READ_AHEAD_BYTES`] past `end` is not in the page
/// cache (a cold catch-up), asks the kernel to read the window's last
/// [`COLD_READ_AHEAD_STEP_BYTES`] in the background (`POSIX_FADV_WILLNEED` queues the reads
/// and returns; cached pages are skipped; nothing past the end of the file is read). The
/// kernel's own readahead keeps about two requests of one sequential reader in flight;
/// this device was faster with more (fio at queue depth 8 against the catch-up's ≈ 2:
/// docs/BENCHMARKS.md, "Cold catch-up, profiled"). The check is `cachestat(2)`, which
/// reads nothing (a `preadv2(RWF_NOWAIT)` probe would start a readahead of its own); a
/// kernel without it (before 6.5) gets the hint every time. Best effort: errors are ignored.
fn read_ahead_if_cold(file: &OwnedFd, end: u64) {
    let window_end = end + COLD_READ_AHEAD_BYTES;
    if cached_pages(file.as_fd(), window_end - PAGE_BYTES, PAGE_BYTES).is_some_and(|n| n > 0) {
        return;
    }
    let from = window_end - COLD_READ_AHEAD_STEP_BYTES;
    let (Ok(from), Ok(len)) = (libc::off_t::try_from(from), libc::off_t::try_from(COLD_READ_AHEAD_STEP_BYTES)) else {
        return;
    };
    // SAFETY: advisory call on an owned, open descriptor; no memory is passed.
    unsafe { libc::posix_fadvise(file.as_raw_fd(), from, len, libc::POSIX_FADV_WILLNEED) };
}

/// Pages of `[pos, pos + len)` of `file` in the page cache, by `cachestat(2)` (Linux 6.5;
/// reads nothing, starts no IO); `None` where the kernel lacks the call.
fn cached_pages(file: BorrowedFd<'_>, pos: u64, len: u64) -> Option<u64> {
    /// `__NR_cachestat`, the same on every architecture (not in the libc crate for x86_64).
    const SYS_CACHESTAT: libc::c_long = 451;
    #[repr(C)]
    struct Range {
        off: u64,
        len: u64,
    }
    #[repr(C)]
    #[derive(Default)]
    struct Stat {
        nr_cache: u64,
        nr_dirty: u64,
        nr_writeback: u64,
        nr_evicted: u64,
        nr_recently_evicted: u64,
    }
    let range = Range { off: pos, len };
    let mut stat = Stat::default();
    // SAFETY: `cachestat(fd, range, stat, flags)` reads `range` and writes `stat`, both
    // valid `#[repr(C)]` values matching the kernel's structs for the call; flags 0.
    let rc = unsafe { libc::syscall(SYS_CACHESTAT, file.as_raw_fd(), &raw const range, &raw mut stat, 0u32) };
    (rc == 0).then_some(stat.nr_cache)
}

/// Sends up to `len` bytes from `pos` until done or the (non-blocking) socket is full;
/// returns the bytes sent. Blocks only on disk reads of the file's pages.
fn sendfile_until_full(socket: &OwnedFd, file: &OwnedFd, pos: u64, len: u64) -> io::Result<u64> {
    let mut offset = libc::off_t::try_from(pos).map_err(|_| io::Error::other("file position out of range"))?;
    let end = pos + len;
    let mut moved = 0u64;
    while moved < len {
        let left = usize::try_from(end - offset as u64).unwrap_or(usize::MAX);
        // SAFETY: both descriptors are owned and open for the call; `offset` is a valid
        // pointer the kernel advances by the bytes sent.
        let sent = unsafe { libc::sendfile(socket.as_raw_fd(), file.as_raw_fd(), &mut offset, left) };
        if sent > 0 {
            moved += sent as u64;
            continue;
        }
        if sent == 0 {
            return Err(short_file(offset as u64, left, 0));
        }
        let err = io::Error::last_os_error();
        match err.kind() {
            io::ErrorKind::Interrupted => {}
            io::ErrorKind::WouldBlock => break,
            _ => return Err(err),
        }
    }
    Ok(moved)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::log::IoMode;
    use std::io::{Read, Write};

    /// A read whose window's last page is not cached hints the kernel to read the window's
    /// far step (and nothing before it); a warm one hints nothing. Skipped, with a line,
    /// where the kernel has no `cachestat` or the filesystem keeps pages after eviction.
    #[test]
    fn a_cold_read_is_read_ahead_and_a_warm_one_is_not() {
        let target = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target");
        std::fs::create_dir_all(&target).unwrap();
        let dir = tempfile::tempdir_in(&target).unwrap();
        let path = dir.path().join("seg.log");
        let len = COLD_READ_AHEAD_BYTES + (4 << 20);
        std::fs::write(&path, vec![7u8; len as usize]).unwrap();
        let file = std::fs::File::open(&path).unwrap();
        file.sync_all().unwrap();
        let fd = dup(file.as_raw_fd()).unwrap();
        let evict = || {
            // SAFETY: advisory call on an open descriptor.
            unsafe { libc::posix_fadvise(fd.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED) };
        };
        let step = COLD_READ_AHEAD_STEP_BYTES;
        let window = COLD_READ_AHEAD_BYTES;
        evict();
        match cached_pages(fd.as_fd(), 0, len) {
            None => return eprintln!("skipped: no cachestat(2) on this kernel"),
            Some(n) if n > 0 => return eprintln!("skipped: {n} pages stay cached after POSIX_FADV_DONTNEED"),
            Some(_) => {}
        }
        read_ahead_if_cold(&fd, 0);
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while cached_pages(fd.as_fd(), window - step, step) != Some(step / PAGE_BYTES) {
            assert!(std::time::Instant::now() < deadline, "the cold window's far step was not read ahead");
            std::thread::sleep(Duration::from_millis(10));
        }
        assert_eq!(cached_pages(fd.as_fd(), 0, window - step), Some(0), "only the far step is hinted");
        // Warm: the window's last page is cached, so nothing more is read. (Pages still
        // under the hint's reads survive an eviction: evict until none is left.)
        while cached_pages(fd.as_fd(), 0, len) != Some(0) {
            assert!(std::time::Instant::now() < deadline, "the read-ahead pages could not be evicted");
            evict();
            std::thread::sleep(Duration::from_millis(10));
        }
        let mut page = [0u8; 1];
        std::os::unix::fs::FileExt::read_exact_at(&file, &mut page, window - 1).unwrap();
        read_ahead_if_cold(&fd, 0);
        std::thread::sleep(Duration::from_millis(200));
        assert_eq!(cached_pages(fd.as_fd(), 0, window - step), Some(0), "a warm read hints nothing");
        let near = cached_pages(fd.as_fd(), window - step, step - PAGE_BYTES);
        assert!(
            near == Some(0),
            "a warm read hints nothing: {near:?} pages of the step cached, {:?} after it",
            cached_pages(fd.as_fd(), window - PAGE_BYTES, len)
        );
    }

    /// A buffered segment range that is not in the page cache is sent by io_uring reads and
    /// the async write (no `sendfile`, so no blocking thread waits for the disk); once cached,
    /// by `sendfile`. Skipped, with a line, where eviction cannot be checked.
    #[test]
    fn a_cold_range_is_read_through_io_uring_and_a_warm_one_is_sent_by_sendfile() {
        let target = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target");
        std::fs::create_dir_all(&target).unwrap();
        let dir = tempfile::tempdir_in(&target).unwrap();
        let path = dir.path().join("seg.log");
        let data = data();
        std::fs::write(&path, &data).unwrap();
        let file = std::fs::File::open(&path).unwrap();
        file.sync_all().unwrap();
        // SAFETY: advisory call on an open descriptor.
        unsafe { libc::posix_fadvise(file.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED) };
        match cached_pages(file.as_fd(), 0, DATA_LEN) {
            None => return eprintln!("skipped: no cachestat(2) on this kernel"),
            Some(n) if n > 0 => return eprintln!("skipped: {n} pages stay cached after POSIX_FADV_DONTNEED"),
            Some(_) => {}
        }
        let (range_pos, range_len) = (4_097u64, 3u32 << 20);
        let (cold, warm, got) = glommio::LocalExecutorBuilder::default()
            .spawn(move || async move {
                let listener = glommio::net::TcpListener::bind("127.0.0.1:0").unwrap();
                let addr = listener.local_addr().unwrap();
                let reader = std::thread::spawn(move || {
                    let mut client = std::net::TcpStream::connect(addr).unwrap();
                    let mut got = vec![0u8; 2 * range_len as usize];
                    client.read_exact(&mut got).unwrap();
                    got
                });
                let mut stream = listener.accept().await.unwrap();
                let file = SegmentFile::open(&path, IoMode::Buffered, false).await.unwrap();
                let fd = stream.as_raw_fd();
                make_nonblocking(fd).unwrap();
                let cold = send_file(&mut stream, fd, &file, range_pos, range_len).await.unwrap();
                let warm = send_file(&mut stream, fd, &file, range_pos, range_len).await.unwrap();
                (cold, warm, reader.join().unwrap())
            })
            .unwrap()
            .join()
            .unwrap();
        let want = &data[range_pos as usize..][..range_len as usize];
        assert!(got[..range_len as usize] == *want && got[range_len as usize..] == *want, "bytes differ");
        assert_eq!(cold, SentBytes { zero_copy: 0, copied: u64::from(range_len) }, "cold: io_uring reads only");
        assert!(warm.zero_copy > 0, "warm: sendfile: {warm:?}");
    }

    /// More than loopback's socket buffers hold (a few MiB), so a stalled reader fills them.
    const DATA_LEN: u64 = 24 << 20;

    fn data() -> Vec<u8> {
        (0..DATA_LEN as u32).map(|i| (i % 251) as u8).collect()
    }

    /// A glommio server sends a file range to a std client that first stalls (socket fills:
    /// the copy path runs), then reads everything; bytes must arrive intact and in order.
    fn send_to_slow_reader(mode: IoMode, stall: Duration) -> SentBytes {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("seg.log");
        let data = data();
        std::fs::write(&path, &data).unwrap();
        let (range_pos, range_len) = (1_000u64, 20 << 20);
        let (sent, reader) = glommio::LocalExecutorBuilder::default()
            .spawn(move || async move {
                let listener = glommio::net::TcpListener::bind("127.0.0.1:0").unwrap();
                let addr = listener.local_addr().unwrap();
                let reader = std::thread::spawn(move || {
                    let mut client = std::net::TcpStream::connect(addr).unwrap();
                    std::thread::sleep(stall);
                    let mut got = vec![0u8; range_len as usize];
                    client.read_exact(&mut got).unwrap();
                    client.write_all(b"k").unwrap();
                    got
                });
                let mut stream = listener.accept().await.unwrap();
                let file = SegmentFile::open(&path, mode, false).await.unwrap();
                let fd = stream.as_raw_fd();
                make_nonblocking(fd).unwrap();
                let sent = send_file(&mut stream, fd, &file, range_pos, range_len).await.unwrap();
                let mut ack = [0u8; 1];
                futures_lite::io::AsyncReadExt::read_exact(&mut stream, &mut ack).await.unwrap();
                let short = send_file(&mut stream, fd, &file, DATA_LEN - 10, 100).await.unwrap_err();
                assert_eq!(short.kind(), io::ErrorKind::UnexpectedEof);
                (sent, reader)
            })
            .unwrap()
            .join()
            .unwrap();
        let got = reader.join().unwrap();
        assert!(got == data[range_pos as usize..][..range_len as usize], "bytes differ");
        assert_eq!(sent.zero_copy + sent.copied, u64::from(range_len));
        sent
    }

    #[test]
    fn a_stalled_reader_gets_copied_pieces_and_intact_bytes() {
        let sent = send_to_slow_reader(IoMode::Buffered, Duration::from_millis(300));
        assert!(sent.copied > 0, "a stalled reader must fill the socket: {sent:?}");
        assert!(sent.zero_copy > 0, "the first bytes go zero-copy: {sent:?}");
        let sent = send_to_slow_reader(IoMode::Direct, Duration::from_millis(300));
        assert!(sent.copied > 0, "{sent:?}");
    }

    /// The TLS path: a range read in [`TLS_PIECE_BYTES`] pieces through one pooled buffer,
    /// at an odd offset and length, in both I/O modes; a range past the end is an error.
    #[test]
    fn copy_file_sends_a_range_in_bounded_pieces_through_two_buffers() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("seg.log");
        let data = data();
        std::fs::write(&path, &data).unwrap();
        for mode in [IoMode::Buffered, IoMode::Direct] {
            let path = path.clone();
            let (out, sent, pooled) = glommio::LocalExecutorBuilder::default()
                .spawn(move || async move {
                    let file = SegmentFile::open(&path, mode, false).await.unwrap();
                    let mut out = Vec::new();
                    let sent = copy_file(&mut out, &file, 1_001, 3 * TLS_PIECE_BYTES as u32 + 777).await.unwrap();
                    // (Direct mode: glommio's DMA read past the end of the file is not short,
                    // so only the buffered read can see a range the file does not hold.)
                    if mode == IoMode::Buffered {
                        let short = copy_file(&mut Vec::new(), &file, DATA_LEN - 10, 100).await.unwrap_err();
                        assert_eq!(short.kind(), io::ErrorKind::UnexpectedEof);
                    }
                    let pooled = PIECE_BUFFERS.with(|pool| pool.borrow().len());
                    (out, sent, pooled)
                })
                .unwrap()
                .join()
                .unwrap();
            assert!(out == data[1_001..][..3 * TLS_PIECE_BYTES + 777], "{mode:?}: bytes differ");
            assert_eq!(sent, SentBytes { zero_copy: 0, copied: out.len() as u64 });
            assert_eq!(pooled, 2, "{mode:?}: the same two buffers served both copies and went back to the pool");
        }
    }

    #[test]
    fn sendfile_returns_when_the_socket_is_full() {
        let mut file = tempfile::tempfile().unwrap();
        file.write_all(&data()).unwrap();
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let _client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (server, _) = listener.accept().unwrap();
        make_nonblocking(server.as_raw_fd()).unwrap();
        let started = std::time::Instant::now();
        let socket = dup(server.as_raw_fd()).unwrap();
        let moved = sendfile_until_full(&socket, &dup(file.as_raw_fd()).unwrap(), 0, DATA_LEN).unwrap();
        assert!(moved > 0 && moved < DATA_LEN, "moved {moved} to a reader that never reads");
        assert!(started.elapsed() < Duration::from_secs(1), "sendfile waited for the reader");
    }
}
