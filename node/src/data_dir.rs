//! The data directory's owner lock (one node process per data dir, for that process's
//! lifetime) and its format marker (which on-disk format the dir holds).
//!
//! Two nodes on one data dir would both acknowledge writes into the same files and one's
//! acknowledged records would be gone after a restart. So the node takes an exclusive
//! `flock` on `<data dir>/strand.lock` before it reads anything there, and holds it until
//! the process exits. The kernel drops a `flock` when its process dies, so a lock file
//! left by a SIGKILLed node never blocks a restart; the pid written in the file is only
//! there to tell the next node (and the operator) who holds it.
//!
//! The format marker `<data dir>/strand.format` holds [`DATA_FORMAT_VERSION`] in decimal.
//! Version 2 stores Kafka RecordBatch v2 batches; version 1 (52-byte little-endian
//! headers) had no marker. Recovery would take a v1 segment for damage and truncate it,
//! so a dir with topics but no marker, or with another version, is refused before
//! anything in it is opened ([`check_format`]); an empty dir gets the marker.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

/// File name of the lock inside the data dir.
pub const LOCK_FILE: &str = "strand.lock";
/// File name of the format marker inside the data dir.
pub const FORMAT_FILE: &str = "strand.format";
/// The data-dir format this node reads and writes: 2 = record batches are Kafka's
/// RecordBatch v2 (magic 2). Version 1 dirs carry no marker.
pub const DATA_FORMAT_VERSION: u32 = 2;
/// Entries whose presence means the dir already holds data: the topic registry and the
/// topic directories.
const DATA_ENTRIES: [&str; 2] = ["topics.json", "topics"];

/// Why the data dir's format was refused.
#[derive(Debug, thiserror::Error)]
pub enum FormatError {
    #[error(
        "data dir {dir} holds topics but no {FORMAT_FILE}: it was written by an older strand-node \
         (record batch format v1); this node stores format {DATA_FORMAT_VERSION} (Kafka record \
         batches) and cannot read it. Start with an empty data dir (move this one away)"
    )]
    Unmarked { dir: PathBuf },
    #[error(
        "data dir {dir} has data format {found:?} in {FORMAT_FILE}; this strand-node reads format \
         {DATA_FORMAT_VERSION} only"
    )]
    Other { dir: PathBuf, found: String },
    #[error("data dir {dir}: cannot check or write {FORMAT_FILE}: {source}")]
    Io { dir: PathBuf, source: std::io::Error },
}

/// Checks the data dir's format marker, writing it (durably) into a dir that holds no
/// data yet. Call with the dir locked, before opening anything in it.
pub fn check_format(dir: &Path) -> Result<(), FormatError> {
    let io = |source| FormatError::Io { dir: dir.to_path_buf(), source };
    let path = dir.join(FORMAT_FILE);
    match std::fs::read_to_string(&path) {
        Ok(text) if text.trim() == DATA_FORMAT_VERSION.to_string() => return Ok(()),
        Ok(text) => return Err(FormatError::Other { dir: dir.to_path_buf(), found: text.trim().to_string() }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(io(e)),
    }
    for entry in DATA_ENTRIES {
        if std::fs::symlink_metadata(dir.join(entry)).is_ok() {
            return Err(FormatError::Unmarked { dir: dir.to_path_buf() });
        }
    }
    // tmp + fsync + rename + dir fsync: a crash leaves the marker whole or absent.
    let tmp = dir.join(format!("{FORMAT_FILE}.tmp"));
    let mut file = File::create(&tmp).map_err(io)?;
    writeln!(file, "{DATA_FORMAT_VERSION}").map_err(io)?;
    file.sync_all().map_err(io)?;
    std::fs::rename(&tmp, &path).map_err(io)?;
    File::open(dir).and_then(|d| d.sync_all()).map_err(io)
}

/// Holds the data dir for as long as it lives.
#[derive(Debug)]
pub struct DataDirLock {
    _file: File,
    path: PathBuf,
}

/// Why the data dir could not be locked.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error("data dir {dir} is in use by another strand-node{}", holder(.pid))]
    InUse { dir: PathBuf, pid: Option<u32> },
    #[error("data dir {dir}: cannot lock {LOCK_FILE}: {source}")]
    Io { dir: PathBuf, source: std::io::Error },
}

fn holder(pid: &Option<u32>) -> String {
    pid.map_or_else(String::new, |pid| format!(" (pid {pid})"))
}

impl DataDirLock {
    /// Creates `dir` if needed and locks it, or says who holds it.
    pub fn acquire(dir: &Path) -> Result<DataDirLock, LockError> {
        let io = |source| LockError::Io { dir: dir.to_path_buf(), source };
        std::fs::create_dir_all(dir).map_err(io)?;
        let path = dir.join(LOCK_FILE);
        let mut file =
            OpenOptions::new().read(true).write(true).create(true).truncate(false).open(&path).map_err(io)?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                return Err(LockError::InUse { dir: dir.to_path_buf(), pid: read_pid(&mut file) });
            }
            Err(TryLockError::Error(e)) => return Err(io(e)),
        }
        file.set_len(0).map_err(io)?;
        file.seek(SeekFrom::Start(0)).map_err(io)?;
        writeln!(file, "{}", std::process::id()).map_err(io)?;
        Ok(DataDirLock { _file: file, path })
    }

    /// The lock file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

fn read_pid(file: &mut File) -> Option<u32> {
    let mut text = String::new();
    file.read_to_string(&mut text).ok()?;
    text.trim().parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_lock_on_a_held_dir_is_refused_with_the_holders_pid() {
        let dir = tempfile::tempdir().unwrap();
        let held = DataDirLock::acquire(dir.path()).unwrap();
        let err = DataDirLock::acquire(dir.path()).unwrap_err();
        let expected =
            format!("data dir {} is in use by another strand-node (pid {})", dir.path().display(), std::process::id());
        assert_eq!(err.to_string(), expected);
        drop(held);
        DataDirLock::acquire(dir.path()).expect("free again once the holder is gone");
    }

    #[test]
    fn an_empty_dir_is_marked_and_an_old_or_foreign_one_refused() {
        let dir = tempfile::tempdir().unwrap();
        check_format(dir.path()).expect("empty dir");
        assert_eq!(std::fs::read_to_string(dir.path().join(FORMAT_FILE)).unwrap(), "2\n");
        std::fs::create_dir(dir.path().join("topics")).unwrap();
        check_format(dir.path()).expect("marked dir with topics");
        let old = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(old.path().join("topics/t/0")).unwrap();
        let err = check_format(old.path()).unwrap_err();
        assert!(matches!(err, FormatError::Unmarked { .. }), "{err}");
        assert!(!old.path().join(FORMAT_FILE).exists(), "an old dir is not marked");
        std::fs::write(old.path().join(FORMAT_FILE), "3\n").unwrap();
        let err = check_format(old.path()).unwrap_err();
        assert!(
            err.to_string().ends_with("has data format \"3\" in strand.format; this strand-node reads format 2 only"),
            "{err}"
        );
    }

    #[test]
    fn a_stale_lock_file_does_not_block() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(LOCK_FILE), "999999\n").unwrap();
        let lock = DataDirLock::acquire(dir.path()).unwrap();
        let pid = std::fs::read_to_string(lock.path()).unwrap();
        assert_eq!(pid.trim(), std::process::id().to_string());
    }
}
