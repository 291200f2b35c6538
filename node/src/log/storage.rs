//! The storage seam: every file and directory operation of the partition log goes through
//! a [`Storage`] — the operating system's (glommio io_uring files, the blocking pool for
//! directory work) or, with the `sim` feature, the in-memory fault-injecting one of
//! `log::sim`. Segment files are [`SegmentFile`]s either way; the small index,
//! time-index and checkpoint files are [`AuxFile`]s.
//!
//! Dispatch is static: an enum matched per call, no boxed future per IO, and the `Sim`
//! variant exists only in test builds. The real path keeps its exact calls; zero-copy
//! sends use the plain fd of an OS segment, which a simulated segment does not have.
//!
//! Architecture invariant: outside this module, `file.rs` and `sim.rs`, the log does no
//! file or directory IO of its own.

use super::config::IoMode;
use super::file::{OsResult, SegmentFile};
use glommio::io::{BufferedFile, OpenOptions};
use std::io;
use std::path::Path;

/// Where a partition log keeps its files. `Os` unless a simulator opens the log with
/// [`PartitionLog::open_with_storage`](super::PartitionLog::open_with_storage).
#[derive(Clone, Debug, Default)]
pub enum Storage {
    #[default]
    Os,
    #[cfg(feature = "sim")]
    Sim(super::sim::SimStorage),
}

/// A small whole-file-rewritten file of the log (index, time index, checkpoint).
pub(crate) enum AuxFile {
    Os(BufferedFile),
    #[cfg(feature = "sim")]
    Sim(super::sim::SimFile),
}

impl Storage {
    /// Opens a segment file (see [`SegmentFile::open_with`]).
    pub(crate) async fn open_segment(
        &self,
        path: &Path,
        mode: IoMode,
        create: bool,
        dsync: bool,
    ) -> io::Result<SegmentFile> {
        match self {
            Storage::Os => SegmentFile::open_with(path, mode, create, dsync).await,
            #[cfg(feature = "sim")]
            Storage::Sim(fs) => Ok(SegmentFile::sim(fs.open(path, create, false, dsync).await?, mode)),
        }
    }

    /// Opens an index or checkpoint file for reading and writing.
    pub(crate) async fn open_aux(&self, path: &Path, truncate: bool) -> io::Result<AuxFile> {
        match self {
            Storage::Os => {
                let mut opts = OpenOptions::new();
                opts.read(true).write(true).create(true).truncate(truncate);
                Ok(AuxFile::Os(opts.buffered_open(path).await.os()?))
            }
            #[cfg(feature = "sim")]
            Storage::Sim(fs) => Ok(AuxFile::Sim(fs.open(path, true, truncate, false).await?)),
        }
    }

    /// Reads a whole small file (checkpoint, index).
    pub(crate) async fn read_whole(&self, path: &Path) -> io::Result<Vec<u8>> {
        match self {
            Storage::Os => {
                let path = path.to_owned();
                glommio::executor().spawn_blocking(move || std::fs::read(path)).await
            }
            #[cfg(feature = "sim")]
            Storage::Sim(fs) => fs.read_whole(path).await,
        }
    }

    /// Creates `dir` and its parents (on the blocking pool: it can wait on the filesystem).
    pub(crate) async fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        match self {
            Storage::Os => super::file::create_dir_all(dir).await,
            #[cfg(feature = "sim")]
            Storage::Sim(fs) => {
                fs.create_dir_all(dir);
                Ok(())
            }
        }
    }

    /// The file names in `dir` (not recursive).
    pub(crate) async fn list_dir(&self, dir: &Path) -> io::Result<Vec<String>> {
        match self {
            Storage::Os => {
                let dir = dir.to_owned();
                glommio::executor()
                    .spawn_blocking(move || -> io::Result<Vec<String>> {
                        let mut names = Vec::new();
                        for entry in std::fs::read_dir(dir)? {
                            names.push(entry?.file_name().to_string_lossy().into_owned());
                        }
                        Ok(names)
                    })
                    .await
            }
            #[cfg(feature = "sim")]
            Storage::Sim(fs) => fs.list_dir(dir),
        }
    }

    /// The length of the file at `path` (its metadata; no fault is injected in the
    /// simulation: callers are best-effort reports).
    pub(crate) async fn file_len(&self, path: &Path) -> io::Result<u64> {
        match self {
            Storage::Os => {
                let path = path.to_owned();
                glommio::executor().spawn_blocking(move || std::fs::metadata(path).map(|m| m.len())).await
            }
            #[cfg(feature = "sim")]
            Storage::Sim(fs) => fs.file_len(path),
        }
    }

    /// Unlinks a file (durable after [`Storage::sync_dir`]).
    pub(crate) async fn remove(&self, path: &Path) -> io::Result<()> {
        match self {
            Storage::Os => glommio::io::remove(path).await.os(),
            #[cfg(feature = "sim")]
            Storage::Sim(fs) => fs.remove(path).await,
        }
    }

    /// Removes `dir` with everything in it (off the reactor: it can take a while).
    pub(crate) async fn remove_dir_all(&self, dir: &Path) -> io::Result<()> {
        match self {
            Storage::Os => {
                let dir = dir.to_owned();
                glommio::executor().spawn_blocking(move || std::fs::remove_dir_all(&dir)).await
            }
            #[cfg(feature = "sim")]
            Storage::Sim(fs) => {
                fs.remove_dir_all(dir);
                Ok(())
            }
        }
    }

    /// Renames a file (durable after [`Storage::sync_dir`]).
    pub(crate) async fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        match self {
            Storage::Os => glommio::io::rename(from, to).await.os(),
            #[cfg(feature = "sim")]
            Storage::Sim(fs) => fs.rename(from, to).await,
        }
    }

    /// fsyncs a directory so created, renamed or removed names in it are durable.
    pub(crate) async fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        match self {
            Storage::Os => super::file::sync_dir(dir).await,
            #[cfg(feature = "sim")]
            Storage::Sim(fs) => fs.sync_dir(dir).await,
        }
    }

    /// Free bytes available to unprivileged users on the filesystem holding `dir`.
    pub(crate) fn free_bytes(&self, dir: &Path) -> io::Result<u64> {
        match self {
            Storage::Os => super::file::free_bytes(dir),
            #[cfg(feature = "sim")]
            Storage::Sim(fs) => Ok(fs.free_bytes()),
        }
    }

    /// The DMA iopoll probe workaround (see [`super::probe_dma`]); nothing to do in memory.
    pub(crate) async fn probe_dma(&self, dir: &Path) -> io::Result<()> {
        match self {
            Storage::Os => super::file::probe_dma(dir).await,
            #[cfg(feature = "sim")]
            Storage::Sim(_) => Ok(()),
        }
    }
}

impl AuxFile {
    /// Writes all of `bytes` at `pos`.
    pub(crate) async fn write_all_at(&self, bytes: &[u8], pos: u64) -> io::Result<()> {
        match self {
            AuxFile::Os(file) => {
                let mut done = 0usize;
                while done < bytes.len() {
                    let n = file.write_at(bytes[done..].to_vec(), pos + done as u64).await.os()?;
                    if n == 0 {
                        return Err(io::Error::new(io::ErrorKind::StorageFull, "short index write"));
                    }
                    done += n;
                }
                Ok(())
            }
            #[cfg(feature = "sim")]
            AuxFile::Sim(file) => file.write_at(pos, bytes).await,
        }
    }

    pub(crate) async fn file_size(&self) -> io::Result<u64> {
        match self {
            AuxFile::Os(file) => file.file_size().await.os(),
            #[cfg(feature = "sim")]
            AuxFile::Sim(file) => file.file_size(),
        }
    }

    pub(crate) async fn truncate(&self, len: u64) -> io::Result<()> {
        match self {
            AuxFile::Os(file) => file.truncate(len).await.os(),
            #[cfg(feature = "sim")]
            AuxFile::Sim(file) => file.truncate(len).await,
        }
    }

    pub(crate) async fn fdatasync(&self) -> io::Result<()> {
        match self {
            AuxFile::Os(file) => file.fdatasync().await.os(),
            #[cfg(feature = "sim")]
            AuxFile::Sim(file) => file.fdatasync().await,
        }
    }

    pub(crate) async fn close(self) -> io::Result<()> {
        match self {
            AuxFile::Os(file) => file.close().await.os(),
            #[cfg(feature = "sim")]
            AuxFile::Sim(_) => Ok(()),
        }
    }
}
