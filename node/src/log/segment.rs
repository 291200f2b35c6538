//! One segment's in-memory state (sizes, sparse indexes, direct-mode tail block) and the
//! persistence of its `.index`/`.timeindex` files and of the partition's recovery checkpoint.
//!
//! Lifecycle: created empty by a roll (or found by recovery), appended to while it is the
//! last segment of the partition, closed by the next roll (fdatasync'ed, truncated to its
//! logical length, indexes written), deleted by retention. Owned by one shard; only the
//! holder of the partition's write lock mutates it across awaits.

use super::file::{SegmentFile, BLOCK_BYTES};
use super::storage::Storage;
use std::io;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::Instant;
use strand_core::index::{IndexBuilder, IndexEntry, SegmentBatch, TimeEntry, INDEX_ENTRY_LEN, TIME_ENTRY_LEN};
use strand_core::recovery::{segment_file_name, Checkpoint, SegmentFileKind};

/// File name of the partition's recovery checkpoint.
pub const CHECKPOINT_FILE_NAME: &str = "recovery-point";
const CHECKPOINT_TMP_NAME: &str = "recovery-point.tmp";

pub(crate) struct Segment {
    pub base: u64,
    pub file: Rc<SegmentFile>,
    /// Logical length: bytes of whole batches written (readers never go past it).
    pub size: u64,
    pub next_offset: u64,
    pub index: Vec<IndexEntry>,
    pub time_index: Vec<TimeEntry>,
    pub builder: IndexBuilder,
    /// Entries of `index` / `time_index` already in the files.
    pub persisted: (usize, usize),
    /// Direct mode: the bytes `[align_down(size), size)`, rewritten with the next write.
    pub tail: Vec<u8>,
    /// Blocks are reserved (fallocate) up to here.
    pub prealloc_end: u64,
    /// Bytes past `size` up to here are written with zeros and synced (fsync=always
    /// zero-ahead, see `log::zero`); 0 when unknown.
    pub zeroed_end: u64,
    pub opened_at: Instant,
    /// Set when recovery or a lazy verification found invalid bytes in this segment:
    /// nothing at or past `pos` is served.
    pub corrupt: Option<Corruption>,
    /// Whether the segment's bytes still need a CRC check before any of them is served.
    pub verify: Verify,
}

/// Where a segment's valid prefix ends and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Corruption {
    /// File position of the first invalid byte range (a batch boundary of the valid prefix).
    pub pos: u64,
    /// Offset of the first batch that is not served (the end of the valid prefix).
    pub offset: u64,
    pub reason: String,
}

/// Verification state of a segment's bytes (lazy verification, FORMATS.md §6).
///
/// Segments written by this process, and segments scanned from position 0 at open, are
/// `Done`. A segment whose prefix the recovery checkpoint vouched for (so open did not read
/// it) is `Pending` until the first read touching it validates the prefix batch by batch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Verify {
    Done,
    /// Bytes `[0, end_pos)` are unchecked; the batch at `end_pos` must have base offset `end_offset`.
    Pending {
        end_pos: u64,
        end_offset: u64,
    },
}

impl Segment {
    pub(crate) fn new(base: u64, file: Rc<SegmentFile>, index_interval_bytes: u32) -> Segment {
        Segment {
            base,
            file,
            size: 0,
            next_offset: base,
            index: Vec::new(),
            time_index: Vec::new(),
            builder: IndexBuilder::new(base, index_interval_bytes, &[], &[]),
            persisted: (0, 0),
            tail: Vec::new(),
            prealloc_end: 0,
            zeroed_end: 0,
            opened_at: Instant::now(),
            corrupt: None,
            verify: Verify::Done,
        }
    }

    /// Records a batch written at `meta.position`, adding index entries as due.
    pub(crate) fn on_batch(&mut self, meta: &SegmentBatch) {
        debug_assert_eq!(meta.base_offset, self.next_offset);
        let (entry, time) = self.builder.on_batch(meta);
        if let Some(e) = entry {
            self.index.push(e);
        }
        if let Some(t) = time {
            self.time_index.push(t);
        }
        self.next_offset = meta.next_offset();
        self.size = self.size.max(meta.end_position());
    }

    /// Records invalid bytes found at `c.pos`, keeping the earliest finding.
    pub(crate) fn mark_corrupt(&mut self, c: Corruption) {
        if self.corrupt.as_ref().is_none_or(|old| c.pos < old.pos) {
            self.corrupt = Some(c);
        }
    }

    /// Newest batch timestamp in the segment, if any batch.
    pub(crate) fn max_timestamp(&self) -> Option<i64> {
        self.builder.max_timestamp_ms()
    }

    /// What `persist_index` must write to bring the index files up to date.
    pub(crate) fn index_snapshot(&self, dir: &Path) -> IndexSnapshot {
        let index_new = self.index[self.persisted.0..].iter().flat_map(|e| e.encode()).collect();
        let time_new = self.time_index[self.persisted.1..].iter().flat_map(|e| e.encode()).collect();
        IndexSnapshot {
            index_path: dir.join(segment_file_name(self.base, SegmentFileKind::Index)),
            time_path: dir.join(segment_file_name(self.base, SegmentFileKind::TimeIndex)),
            index_new,
            time_new,
            persisted_before: self.persisted,
            counts: (self.index.len(), self.time_index.len()),
        }
    }
}

/// The new tail block after appending `data` to a segment whose logical length was
/// `old_size` with in-memory tail `tail` (direct mode).
pub(crate) fn next_tail(old_size: u64, tail: &[u8], data: &[&[u8]]) -> Vec<u8> {
    let data_len: u64 = data.iter().map(|d| d.len() as u64).sum();
    let new_size = old_size + data_len;
    let keep = (new_size % BLOCK_BYTES) as usize;
    let mut out = Vec::with_capacity(keep);
    // Walk the logical stream `tail ++ data` backwards, collecting the last `keep` bytes.
    let mut need = keep;
    for part in data.iter().rev().copied().chain(std::iter::once(tail)) {
        if need == 0 {
            break;
        }
        let take = need.min(part.len());
        let mut piece = part[part.len() - take..].to_vec();
        piece.extend_from_slice(&out);
        out = piece;
        need -= take;
    }
    debug_assert_eq!(out.len(), keep);
    out
}

/// New index entries to append to a segment's index files.
pub(crate) struct IndexSnapshot {
    index_path: PathBuf,
    time_path: PathBuf,
    index_new: Vec<u8>,
    time_new: Vec<u8>,
    persisted_before: (usize, usize),
    pub counts: (usize, usize),
}

/// Appends the new entries to the index files, cuts them to their exact length and fdatasyncs them.
pub(crate) async fn persist_index(storage: &Storage, snap: IndexSnapshot) -> io::Result<()> {
    let index_at = (snap.persisted_before.0 * INDEX_ENTRY_LEN) as u64;
    let time_at = (snap.persisted_before.1 * TIME_ENTRY_LEN) as u64;
    write_index_file(storage, &snap.index_path, snap.index_new, index_at).await?;
    write_index_file(storage, &snap.time_path, snap.time_new, time_at).await
}

async fn write_index_file(storage: &Storage, path: &Path, new: Vec<u8>, at: u64) -> io::Result<()> {
    let file = storage.open_aux(path, false).await?;
    let len = at + new.len() as u64;
    file.write_all_at(&new, at).await?;
    if file.file_size().await? != len {
        file.truncate(len).await?;
    }
    file.fdatasync().await?;
    file.close().await?;
    Ok(())
}

/// Atomically replaces the partition's recovery checkpoint (write tmp, fdatasync, rename,
/// fsync dir), every step through io_uring so the reactor never blocks on the disk.
pub(crate) async fn write_checkpoint(storage: &Storage, dir: &Path, checkpoint: &Checkpoint) -> io::Result<()> {
    let tmp = dir.join(CHECKPOINT_TMP_NAME);
    let file = storage.open_aux(&tmp, true).await?;
    let bytes = checkpoint.encode();
    assert_eq!(bytes.len(), strand_core::recovery::CHECKPOINT_LEN);
    file.write_all_at(&bytes, 0).await?;
    file.fdatasync().await?;
    file.close().await?;
    storage.rename(&tmp, &dir.join(CHECKPOINT_FILE_NAME)).await?;
    storage.sync_dir(dir).await
}

/// All the files of one segment.
pub(crate) const SEGMENT_FILES: [SegmentFileKind; 3] =
    [SegmentFileKind::Log, SegmentFileKind::Index, SegmentFileKind::TimeIndex];

/// Unlinks the files of kinds `kinds` of segment `base` in `dir`; one already gone is fine
/// (an earlier attempt may have removed it before failing). The caller syncs the directory.
pub(crate) async fn remove_segment_files(
    storage: &Storage,
    dir: &Path,
    base: u64,
    kinds: &[SegmentFileKind],
) -> io::Result<()> {
    for &kind in kinds {
        match storage.remove(&dir.join(segment_file_name(base, kind))).await {
            Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
    }
    Ok(())
}

/// Reads the recovery checkpoint; a missing or damaged one means "scan everything".
pub(crate) async fn read_checkpoint(storage: &Storage, dir: &Path) -> Option<Checkpoint> {
    let bytes = storage.read_whole(&dir.join(CHECKPOINT_FILE_NAME)).await.ok()?;
    let c = Checkpoint::decode(&bytes);
    if c.is_none() {
        tracing::warn!(dir = %dir.display(), "recovery checkpoint damaged; rescanning all segments");
    }
    c
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tail_tracks_the_last_partial_block() {
        let data = vec![7u8; 5000];
        assert_eq!(next_tail(0, &[], &[&data]), vec![7u8; 5000 - 4096]);
        let tail = vec![1u8; 100];
        let small = [2u8; 10];
        let t = next_tail(4196, &tail, &[&small]);
        assert_eq!(t.len(), 110);
        assert_eq!(&t[..100], &tail[..]);
        assert_eq!(&t[100..], &small[..]);
        let fill = vec![3u8; 4096 - 100];
        assert!(next_tail(4196, &tail, &[&fill]).is_empty());
    }
}
