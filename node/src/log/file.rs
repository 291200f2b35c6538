//! File access of the log: [`SegmentFile`] (one `.log` file, opened through glommio for
//! io_uring reads/writes plus a plain read-only fd for splice), the DMA iopoll probe
//! workaround, free-space checks and directory fsync.
//!
//! Invariant: in direct mode every write is `block`-aligned in position and length; the
//! shell never hands glommio a misaligned DMA write.

use super::config::IoMode;
use glommio::io::{BufferedFile, DmaFile, OpenOptions};
use std::cell::RefCell;
use std::collections::HashSet;
use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// Alignment of direct-mode writes (and of the in-memory tail block).
pub const BLOCK_BYTES: u64 = 4096;
/// Name of the non-empty file opened first by each executor so glommio's iopoll probe reads real data.
pub const PROBE_FILE_NAME: &str = ".dma-probe";
const PROBE_FILE_BYTES: usize = 8192;

/// One segment's `.log` file. Shared by `Rc` with in-flight reads, so the fds stay open
/// even after retention unlinks the file.
pub struct SegmentFile {
    path: PathBuf,
    plain: std::fs::File,
    io: FileIo,
}

/// The io_uring-backed handle of a segment file.
pub(crate) enum FileIo {
    Dma(DmaFile),
    Buffered(BufferedFile),
}

impl SegmentFile {
    /// Opens (creating if asked) the segment at `path` for reading and writing.
    pub(crate) async fn open(path: &Path, mode: IoMode, create: bool) -> io::Result<SegmentFile> {
        let mut opts = OpenOptions::new();
        opts.read(true).write(true).create(create);
        let io = match mode {
            IoMode::Direct => FileIo::Dma(opts.dma_open(path).await?),
            IoMode::Buffered => FileIo::Buffered(opts.buffered_open(path).await?),
        };
        let plain = std::fs::File::open(path)?;
        Ok(SegmentFile { path: path.to_owned(), plain, io })
    }

    /// A read-only fd without O_DIRECT, usable with splice/sendfile.
    pub fn raw_fd(&self) -> RawFd {
        self.plain.as_raw_fd()
    }

    /// Where the file lives (it may have been unlinked since).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Reads up to `len` bytes at `pos` through io_uring; shorter only at end of file.
    pub(crate) async fn read_at(&self, pos: u64, len: usize) -> io::Result<Vec<u8>> {
        let mut out = Vec::with_capacity(len);
        while out.len() < len {
            let at = pos + out.len() as u64;
            let want = len - out.len();
            let got = match &self.io {
                FileIo::Dma(f) => f.read_at(at, want).await?,
                FileIo::Buffered(f) => f.read_at(at, want).await?,
            };
            if got.is_empty() {
                break;
            }
            out.extend_from_slice(&got);
        }
        Ok(out)
    }

    pub(crate) async fn fdatasync(&self) -> io::Result<()> {
        match &self.io {
            FileIo::Dma(f) => f.fdatasync().await?,
            FileIo::Buffered(f) => f.fdatasync().await?,
        }
        Ok(())
    }

    pub(crate) async fn truncate(&self, len: u64) -> io::Result<()> {
        match &self.io {
            FileIo::Dma(f) => f.truncate(len).await?,
            FileIo::Buffered(f) => f.truncate(len).await?,
        }
        Ok(())
    }

    pub(crate) async fn file_size(&self) -> io::Result<u64> {
        Ok(match &self.io {
            FileIo::Dma(f) => f.file_size().await?,
            FileIo::Buffered(f) => f.file_size().await?,
        })
    }

    /// Reserves blocks up to `len` without changing the file size.
    pub(crate) async fn preallocate(&self, len: u64) -> io::Result<()> {
        match &self.io {
            FileIo::Dma(f) => f.pre_allocate(len, true).await?,
            FileIo::Buffered(f) => f.pre_allocate(len, true).await?,
        }
        Ok(())
    }

    /// Writes `tail ++ data` where `tail` is the in-memory partial block starting at the
    /// aligned position `block_pos` (direct mode) or writes `data` at `logical_len` (buffered).
    /// Returns once every byte is written.
    pub(crate) async fn write_append(&self, block_pos: u64, tail: &[u8], data: &[&[u8]]) -> io::Result<()> {
        let data_len: usize = data.iter().map(|d| d.len()).sum();
        match &self.io {
            FileIo::Dma(f) => {
                assert_eq!(block_pos % BLOCK_BYTES, 0, "direct write position must be block aligned");
                let total = tail.len() + data_len;
                let padded = total.div_ceil(BLOCK_BYTES as usize) * BLOCK_BYTES as usize;
                let mut buf = f.alloc_dma_buffer(padded);
                let bytes = buf.as_bytes_mut();
                bytes[..tail.len()].copy_from_slice(tail);
                let mut at = tail.len();
                for d in data {
                    bytes[at..at + d.len()].copy_from_slice(d);
                    at += d.len();
                }
                bytes[at..].fill(0);
                let written = f.write_at(buf, block_pos).await?;
                if written < padded {
                    return Err(short_write(written, padded));
                }
                Ok(())
            }
            FileIo::Buffered(f) => {
                let pos = block_pos + tail.len() as u64;
                let mut done = 0usize;
                while done < data_len {
                    // A short write means the device filled up midway; retrying surfaces the errno.
                    let n = f.write_at(concat(data, done), pos + done as u64).await?;
                    if n == 0 {
                        return Err(short_write(done, data_len));
                    }
                    done += n;
                }
                Ok(())
            }
        }
    }
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
    let file = DmaFile::open(&path).await?;
    file.close().await?;
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

/// fsyncs a directory so created, renamed or removed names in it are durable.
pub(crate) fn sync_dir(dir: &Path) -> io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}
