//! The per-partition append-epoch checkpoint `<partition dir>/replication-epochs`: which
//! chain epoch appended the batches from which offset on, as `(epoch, start_offset)`
//! pairs (Kafka's leader-epoch-checkpoint). With the log's batch headers it rebuilds the
//! chain core's batch index (`BatchMeta`s with epochs) when a replica restarts.
//!
//! Invariants: entries are strictly increasing in both epoch and start offset; an entry
//! is durable (tmp file, fdatasync, rename, directory fsync) before the first batch of
//! its epoch is appended, so every stored batch is covered by an entry; entries starting
//! at or past the log end describe appends that never became durable and are ignored at
//! load and dropped by the next write. A truncation cuts the log first and the file
//! second (a crash between leaves entries past the log end, which are ignored).
//! A damaged file is an error naming the file and line, never a panic.
//!
//! All IO goes through the partition log's [`Storage`] (the OS, or the simulator's
//! in-memory fault-injecting storage), so the replica simulator runs this file's real
//! atomic-write protocol.
//!
//! Format (text, like Kafka's): a header line `strand-replication-epochs 1`, a line with
//! the entry count, then one `<epoch> <start_offset>` line per entry.

use std::io;
use std::path::{Path, PathBuf};
use strand_core::chain::{BatchMeta, Epoch, Offset, Position};

use crate::log::{Storage, StoredBatch};

/// File name of the checkpoint in the partition directory.
pub const EPOCHS_FILE_NAME: &str = "replication-epochs";
const EPOCHS_TMP_NAME: &str = "replication-epochs.tmp";
const HEADER: &str = "strand-replication-epochs 1";

/// Why the checkpoint could not be read, written or applied.
#[derive(Debug, thiserror::Error)]
pub enum EpochFileError {
    #[error("{path:?} line {line}: {reason}")]
    Corrupt { path: PathBuf, line: usize, reason: String },
    #[error("the batch at offset {offset} has no recorded append epoch (first entry starts at {first:?})")]
    Uncovered { offset: u64, first: Option<u64> },
    #[error("epoch checkpoint io error: {0}")]
    Io(#[from] io::Error),
}

impl EpochFileError {
    /// The OS error code behind this failure, when an OS error caused it.
    pub fn raw_os_error(&self) -> Option<i32> {
        match self {
            EpochFileError::Io(e) => e.raw_os_error(),
            EpochFileError::Corrupt { .. } | EpochFileError::Uncovered { .. } => None,
        }
    }
}

/// The loaded checkpoint of one partition.
#[derive(Debug, Clone)]
pub struct EpochFile {
    storage: Storage,
    dir: PathBuf,
    entries: Vec<(Epoch, Offset)>,
}

impl EpochFile {
    /// Reads `<dir>/replication-epochs` from `storage` (the partition log's); a missing
    /// file is an empty checkpoint. Entries starting at or past `log_end` are dropped
    /// (their appends never became durable).
    pub async fn load(storage: &Storage, dir: &Path, log_end: u64) -> Result<EpochFile, EpochFileError> {
        let path = dir.join(EPOCHS_FILE_NAME);
        let text = match storage.read_whole(&path).await {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(e.into()),
        };
        let mut entries = if text.is_empty() { Vec::new() } else { parse(&path, &text)? };
        entries.retain(|(_, start)| start.0 < log_end);
        Ok(EpochFile { storage: storage.clone(), dir: dir.to_owned(), entries })
    }

    /// The entries, oldest first.
    pub fn entries(&self) -> &[(Epoch, Offset)] {
        &self.entries
    }

    /// Epoch of the newest entry.
    pub fn last_epoch(&self) -> Option<Epoch> {
        self.entries.last().map(|e| e.0)
    }

    /// The epoch that appended the batch at `offset`.
    pub fn epoch_at(&self, offset: u64) -> Option<Epoch> {
        let i = self.entries.partition_point(|(_, start)| start.0 <= offset);
        i.checked_sub(1).map(|i| self.entries[i].0)
    }

    /// Records that `epoch` appends from `start` on and persists the file. Entries at or
    /// past `start` (never-durable appends) are replaced. Idempotent for the newest epoch.
    /// An epoch not above every kept entry's is a bug (the chain core's log never goes
    /// back in epoch, and this file mirrors it), so it panics.
    pub async fn begin_epoch(&mut self, epoch: Epoch, start: Offset) -> Result<(), EpochFileError> {
        if self.last_epoch() == Some(epoch) {
            return Ok(());
        }
        let next = self.with_epoch(epoch, start);
        write_atomically(&self.storage, &self.dir, &next).await?;
        self.entries = next;
        Ok(())
    }

    /// The entries after `begin_epoch(epoch, start)`.
    fn with_epoch(&self, epoch: Epoch, start: Offset) -> Vec<(Epoch, Offset)> {
        let mut next = self.entries.clone();
        next.retain(|(_, s)| *s < start);
        if let Some(&(last_epoch, last_start)) = next.last() {
            assert!(
                last_epoch < epoch,
                "append epochs never go backwards: epoch {} from {} after epoch {} from {}",
                epoch.0,
                start.0,
                last_epoch.0,
                last_start.0
            );
        }
        next.push((epoch, start));
        next
    }

    /// The epoch of the batch ending at a log start `start` (0 when unknown: retention
    /// kept the entries, so after a reset or a lost file it may be unknown).
    pub fn start_epoch(&self, start: u64) -> Epoch {
        match start.checked_sub(1) {
            None => Epoch(0),
            Some(last) => self.epoch_at(last).unwrap_or(Epoch(0)),
        }
    }

    /// After the log was reset empty at `start.offset`: one entry `(start.epoch,
    /// start.offset - 1)` saying which epoch ended there (none when unknown), persisted.
    /// The log is reset first, this second; a crash between leaves entries of the
    /// dropped log, which a restart finding an empty log above offset 0 discards.
    pub async fn reset(&mut self, start: Position) -> Result<(), EpochFileError> {
        let next = match start.offset.0.checked_sub(1) {
            Some(last) if start.epoch.0 > 0 => vec![(start.epoch, Offset(last))],
            _ => Vec::new(),
        };
        if next == self.entries {
            return Ok(());
        }
        write_atomically(&self.storage, &self.dir, &next).await?;
        self.entries = next;
        Ok(())
    }

    /// Drops the entries starting at or past `to` (after the log was cut there) and
    /// persists the file if anything changed.
    pub async fn truncate(&mut self, to: Offset) -> Result<(), EpochFileError> {
        let keep = self.entries.partition_point(|(_, start)| *start < to);
        if keep == self.entries.len() {
            return Ok(());
        }
        let next = self.entries[..keep].to_vec();
        write_atomically(&self.storage, &self.dir, &next).await?;
        self.entries = next;
        Ok(())
    }

    /// The chain core's view of `batches` (the log's stored batches, contiguous).
    pub fn batch_metas(&self, batches: &[StoredBatch]) -> Result<Vec<BatchMeta>, EpochFileError> {
        batches
            .iter()
            .map(|b| {
                let epoch = self.epoch_at(b.base_offset).ok_or(EpochFileError::Uncovered {
                    offset: b.base_offset,
                    first: self.entries.first().map(|e| e.1 .0),
                })?;
                Ok(BatchMeta {
                    base: Offset(b.base_offset),
                    record_count: b.record_count,
                    bytes_len: b.len_bytes,
                    epoch,
                })
            })
            .collect()
    }
}

fn parse(path: &Path, bytes: &[u8]) -> Result<Vec<(Epoch, Offset)>, EpochFileError> {
    let corrupt = |line: usize, reason: String| EpochFileError::Corrupt { path: path.to_owned(), line, reason };
    let text = std::str::from_utf8(bytes).map_err(|e| corrupt(0, format!("not UTF-8: {e}")))?;
    let mut lines = text.lines();
    if lines.next() != Some(HEADER) {
        return Err(corrupt(1, format!("expected the header {HEADER:?}")));
    }
    let count: usize = lines
        .next()
        .and_then(|l| l.trim().parse().ok())
        .ok_or_else(|| corrupt(2, "expected the entry count".into()))?;
    let mut entries: Vec<(Epoch, Offset)> = Vec::with_capacity(count.min(1 << 16));
    for (i, line) in lines.enumerate() {
        let line_no = i + 3;
        let mut fields = line.split_whitespace().map(str::parse::<u64>);
        let (Some(Ok(epoch)), Some(Ok(start)), None) = (fields.next(), fields.next(), fields.next()) else {
            return Err(corrupt(line_no, format!("expected `<epoch> <start_offset>`, found {line:?}")));
        };
        if let Some(&(e, s)) = entries.last() {
            if epoch <= e.0 || start <= s.0 {
                return Err(corrupt(line_no, format!("({epoch}, {start}) does not follow ({}, {})", e.0, s.0)));
            }
        }
        entries.push((Epoch(epoch), Offset(start)));
    }
    if entries.len() != count {
        return Err(corrupt(2, format!("header says {count} entries, file has {}", entries.len())));
    }
    Ok(entries)
}

fn render(entries: &[(Epoch, Offset)]) -> String {
    let mut out = format!("{HEADER}\n{}\n", entries.len());
    for (epoch, start) in entries {
        out.push_str(&format!("{} {}\n", epoch.0, start.0));
    }
    out
}

/// Replaces the checkpoint: tmp file, fdatasync, rename, directory fsync (through the
/// log's storage; io_uring on the OS). Errors keep the OS code, so an EIO here stops the
/// node like one in the log.
async fn write_atomically(storage: &Storage, dir: &Path, entries: &[(Epoch, Offset)]) -> io::Result<()> {
    let tmp = dir.join(EPOCHS_TMP_NAME);
    let bytes = render(entries).into_bytes();
    let file = storage.open_aux(&tmp, true).await?;
    file.write_all_at(&bytes, 0).await?;
    file.fdatasync().await?;
    file.close().await?;
    storage.rename(&tmp, &dir.join(EPOCHS_FILE_NAME)).await?;
    storage.sync_dir(dir).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stored(base: u64, count: u32) -> StoredBatch {
        StoredBatch { base_offset: base, record_count: count, len_bytes: 100 }
    }

    #[test]
    fn parse_round_trips_and_rejects_damage_without_panicking() {
        let path = Path::new("/x/replication-epochs");
        let entries = vec![(Epoch(1), Offset(0)), (Epoch(4), Offset(10))];
        assert_eq!(parse(path, render(&entries).as_bytes()).unwrap(), entries);
        for bad in [
            "nope\n0\n",
            "strand-replication-epochs 1\n",
            "strand-replication-epochs 1\n2\n1 0\n",
            "strand-replication-epochs 1\n2\n3 0\n2 5\n",
            "strand-replication-epochs 1\n2\n1 5\n2 5\n",
            "strand-replication-epochs 1\n1\n1 x\n",
            "strand-replication-epochs 1\n1\n1 2 3\n",
        ] {
            let err = parse(path, bad.as_bytes()).unwrap_err();
            assert!(matches!(err, EpochFileError::Corrupt { .. }), "{bad:?}: {err}");
        }
        assert!(parse(path, &[0xff, 0xfe]).is_err());
    }

    #[test]
    fn epochs_label_batches_and_uncovered_batches_are_refused() {
        let f = EpochFile {
            storage: Storage::Os,
            dir: PathBuf::new(),
            entries: vec![(Epoch(2), Offset(3)), (Epoch(5), Offset(7))],
        };
        let metas = f.batch_metas(&[stored(3, 2), stored(5, 2), stored(7, 1)]).unwrap();
        assert_eq!(metas.iter().map(|m| m.epoch.0).collect::<Vec<_>>(), vec![2, 2, 5]);
        assert!(matches!(f.batch_metas(&[stored(0, 3)]), Err(EpochFileError::Uncovered { offset: 0, .. })));
    }

    #[test]
    #[should_panic(expected = "append epochs never go backwards")]
    fn an_epoch_going_backwards_is_a_bug() {
        let f = EpochFile {
            storage: Storage::Os,
            dir: PathBuf::new(),
            entries: vec![(Epoch(3), Offset(5)), (Epoch(4), Offset(9))],
        };
        // Replacing entries at or past the start is fine; an older epoch after them is not.
        assert_eq!(f.with_epoch(Epoch(5), Offset(9)), vec![(Epoch(3), Offset(5)), (Epoch(5), Offset(9))]);
        f.with_epoch(Epoch(2), Offset(12));
    }

    #[test]
    fn file_is_written_atomically_cut_and_reloaded() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().to_owned();
        glommio::LocalExecutorBuilder::default()
            .spawn(move || async move {
                let mut f = EpochFile::load(&Storage::Os, &path, 0).await.unwrap();
                assert!(f.entries().is_empty());
                f.begin_epoch(Epoch(1), Offset(0)).await.unwrap();
                f.begin_epoch(Epoch(1), Offset(5)).await.unwrap();
                f.begin_epoch(Epoch(3), Offset(5)).await.unwrap();
                f.begin_epoch(Epoch(4), Offset(9)).await.unwrap();
                let reloaded = EpochFile::load(&Storage::Os, &path, 100).await.unwrap();
                assert_eq!(reloaded.entries(), f.entries());
                // Entries at or past the log end are ignored, and replaced by the next epoch.
                let mut clipped = EpochFile::load(&Storage::Os, &path, 9).await.unwrap();
                assert_eq!(clipped.last_epoch(), Some(Epoch(3)));
                clipped.begin_epoch(Epoch(6), Offset(9)).await.unwrap();
                assert_eq!(
                    EpochFile::load(&Storage::Os, &path, 100).await.unwrap().entries().last(),
                    Some(&(Epoch(6), Offset(9)))
                );
                clipped.truncate(Offset(5)).await.unwrap();
                assert_eq!(
                    EpochFile::load(&Storage::Os, &path, 100).await.unwrap().entries(),
                    &[(Epoch(1), Offset(0))]
                );
                assert!(!path.join(EPOCHS_TMP_NAME).exists());
                std::fs::write(path.join(EPOCHS_FILE_NAME), b"garbage").unwrap();
                assert!(matches!(EpochFile::load(&Storage::Os, &path, 100).await, Err(EpochFileError::Corrupt { .. })));
            })
            .unwrap()
            .join()
            .unwrap();
    }
}
