//! Opening a partition log: find segments, load indexes, and validate what the recovery
//! checkpoint does not vouch for. The decisions (scan start, valid prefix, cut reasons) are
//! made by `strand_core::recovery`; this module only reads files and truncates them.
//!
//! Recovery never needs free space: it reads, truncates torn tails and keeps rebuilt indexes
//! in memory; index files are rewritten best-effort (closed segments) or at the next checkpoint.

use super::cache::BatchCache;
use super::file::BLOCK_BYTES;
use super::segment::{self, Corruption, Segment, Verify};
use super::storage::Storage;
use super::{Inner, IoMode, LogConfig, LogError, SetAsideFile, State};
use glommio::sync::Semaphore;
use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::path::Path;
use std::rc::Rc;
use strand_core::index::{decode_index, decode_time_index, truncate_entries, IndexBuilder, IndexEntry, TimeEntry};
use strand_core::recovery::{
    claimed_offsets, closed_segment_end, parse_segment_file_name, scan_start, segment_file_name, Checkpoint,
    ClosedSegmentEnd, CutReason, ScanEnd, ScanPlan, ScanStep, Scanner, SegmentFileKind,
};

pub(super) async fn open(dir: &Path, config: LogConfig, storage: Storage) -> Result<Inner, LogError> {
    // Directory work runs on glommio's blocking pool, not on the reactor other partitions use.
    storage.create_dir_all(dir).await?;
    let checkpoint = segment::read_checkpoint(&storage, dir).await;
    let (mut bases, mut set_aside_names) = list_segments(&storage, dir).await?;
    if config.io_mode == IoMode::Direct {
        storage.probe_dma(dir).await?;
    }
    drop_orphan_tail(&storage, dir, &config, checkpoint.as_ref(), &mut bases).await?;
    let mut segments = BTreeMap::new();
    let mut i = 0;
    while let Some(&base) = bases.get(i) {
        let next_base = bases.get(i + 1).copied();
        match recover_segment(&storage, dir, &config, base, checkpoint.as_ref(), next_base).await? {
            Recovered::Segment(seg) => {
                segments.insert(base, *seg);
                i += 1;
            }
            // Recovered again below as the last segment, its torn tail cut.
            Recovered::EndsLog { at } => {
                set_aside(&storage, dir, bases.split_off(i + 1), at, &mut set_aside_names).await?
            }
        }
    }
    if segments.is_empty() {
        let base = checkpoint.map_or(0, |c| c.next_offset);
        let path = dir.join(segment_file_name(base, SegmentFileKind::Log));
        let dsync = config.dsync_writes();
        let file = Rc::new(storage.open_segment(&path, config.io_mode, true, dsync).await?);
        segments.insert(base, Segment::new(base, file, config.index_interval_bytes));
    }
    // The names found may not be durable yet (an earlier open or roll created them and
    // crashed, or failed, before its directory sync): appends acknowledged into them must
    // not vanish with them at a power loss. Found by the log simulator (seed 69).
    let empty = segments.len() == 1 && segments.values().all(|s| s.next_offset == s.base);
    if empty && checkpoint.is_none() {
        // A log has a checkpoint from its creation on, so recovery can tell a segment torn
        // by a power loss (past the checkpoint: the log ends there) from corruption; a
        // missing one later means damage, and damage is refused, never cut. "Empty", not
        // "just created": a creation that failed before its checkpoint is retried by the
        // next open, which finds the segment. The checkpoint's write syncs the directory.
        let base = *segments.keys().next().unwrap_or(&0);
        let at_start = Checkpoint { segment_base: base, position: 0, next_offset: base };
        segment::write_checkpoint(&storage, dir, &at_start).await?;
    } else {
        storage.sync_dir(dir).await?;
    }
    persist_closed_indexes(&storage, dir, &mut segments).await;
    let set_aside = set_aside_files(&storage, dir, set_aside_names).await;
    if !set_aside.is_empty() {
        let bytes: u64 = set_aside.iter().map(|f| f.bytes).sum();
        let names: Vec<&str> = set_aside.iter().map(|f| f.name.as_str()).collect();
        tracing::warn!(
            dir = %dir.display(),
            files = ?names,
            bytes,
            "segment files set aside by a recovery that ended this log at a tear are kept here, not served; \
             inspect and remove them (docs/OPERATIONS.md, \"Set-aside segments\")"
        );
    }
    let log_start = *segments.keys().next().unwrap_or(&0);
    let log_end = segments.values().next_back().map_or(0, |s| s.next_offset);
    let state = State {
        segments,
        log_start,
        log_end,
        written_end: log_end,
        synced_end: log_end,
        pending: VecDeque::new(),
        epoch: 0,
        last_failure: None,
        unflushed_bytes: 0,
        bytes_since_checkpoint: 0,
        cache: BatchCache::new(if config.io_mode == IoMode::Direct { config.batch_cache_bytes } else { 0 }),
        poisoned: None,
        free_space: Default::default(),
        prealloc: Default::default(),
        zero: Default::default(),
        zeroing: None,
        writeback: Default::default(),
        reservation: Default::default(),
        closing: VecDeque::new(),
        closer_running: false,
        set_aside,
    };
    tracing::debug!(dir = %dir.display(), log_start, log_end, "partition log open");
    Ok(Inner {
        me: std::rc::Weak::new(),
        dir: dir.to_owned(),
        storage,
        limits: std::cell::Cell::new(config.limits()),
        config,
        state: RefCell::new(state),
        write_lock: Semaphore::new(1),
        verify_lock: Semaphore::new(1),
        closed: std::cell::Cell::new(false),
        progress: std::cell::Cell::new(0),
        progress_waiters: RefCell::new(Vec::new()),
    })
}

/// Base offsets of the `.log` files in `dir`, ascending, and the names of the segment files
/// an earlier recovery set aside (see [`set_aside`]); removes index files without a log.
async fn list_segments(storage: &Storage, dir: &Path) -> Result<(Vec<u64>, Vec<String>), LogError> {
    let mut logs = BTreeSet::new();
    let mut others = Vec::new();
    let mut set_aside = Vec::new();
    for name in storage.list_dir(dir).await? {
        match parse_segment_file_name(&name) {
            Some((base, SegmentFileKind::Log)) => {
                logs.insert(base);
            }
            Some((base, _)) => others.push((base, dir.join(name))),
            None if is_set_aside_name(&name) => set_aside.push(name),
            None => {}
        }
    }
    for (base, path) in others {
        if !logs.contains(&base) {
            tracing::warn!(path = %path.display(), "removing index file without a segment");
            let _ = storage.remove(&path).await;
        }
    }
    Ok((logs.into_iter().collect(), set_aside))
}

/// Removes the last segment file while it is an orphan: it holds no batch, yet the segment
/// before it continues past its base offset. A roll that failed after creating its file
/// (say, its directory sync failed) leaves that file behind at the offset the log then
/// gives out again, in the previous segment; a later directory sync makes its name
/// durable. Left in place, it would make recovery take the previous segment as closed at
/// its base and refuse (or cut) the acknowledged batches after it (log_sim seed 16097).
/// A last segment that is empty because the log really rolled there stays.
async fn drop_orphan_tail(
    storage: &Storage,
    dir: &Path,
    config: &LogConfig,
    checkpoint: Option<&Checkpoint>,
    bases: &mut Vec<u64>,
) -> Result<(), LogError> {
    while let [.., prev, last] = bases[..] {
        let path = dir.join(segment_file_name(last, SegmentFileKind::Log));
        if !segment_holds_no_batch(storage, &path, config).await? {
            return Ok(());
        }
        let (_, end, _) = scan_segment(storage, dir, config, prev, checkpoint, false).await?;
        if end.next_offset <= last {
            return Ok(());
        }
        tracing::warn!(
            path = %path.display(),
            previous_ends_at = end.next_offset,
            "removing an empty segment file the previous segment runs past (left by a failed roll)"
        );
        segment::remove_segment_files(storage, dir, last, &segment::SEGMENT_FILES).await?;
        storage.sync_dir(dir).await?;
        bases.pop();
    }
    Ok(())
}

/// Whether the segment file at `path` is empty or starts with zeros (preallocated or
/// zeroed ahead, never written): no batch in it.
async fn segment_holds_no_batch(storage: &Storage, path: &Path, config: &LogConfig) -> Result<bool, LogError> {
    let file = storage.open_segment(path, config.io_mode, false, false).await?;
    let len = file.file_size().await?;
    if len == 0 {
        return Ok(true);
    }
    let head = file.read_at(0, len.min(BLOCK_BYTES) as usize).await?;
    Ok(head.iter().all(|b| *b == 0))
}

/// One segment's recovery.
enum Recovered {
    Segment(Box<Segment>),
    /// The segment is torn past what the checkpoint vouches for: the log ends in it, at
    /// offset `at` ([`ClosedSegmentEnd::EndsLog`]).
    EndsLog {
        at: u64,
    },
}

async fn recover_segment(
    storage: &Storage,
    dir: &Path,
    config: &LogConfig,
    base: u64,
    checkpoint: Option<&Checkpoint>,
    next_base: Option<u64>,
) -> Result<Recovered, LogError> {
    let (mut seg, end, file_len) = scan_segment(storage, dir, config, base, checkpoint, next_base.is_none()).await?;
    let corrupt_before = match next_base.map(|n| (n, closed_segment_end(checkpoint, base, &end, n))) {
        None | Some((_, ClosedSegmentEnd::Intact)) => None,
        Some((_, ClosedSegmentEnd::EndsLog)) => return Ok(Recovered::EndsLog { at: end.next_offset }),
        Some((n, ClosedSegmentEnd::Corrupt)) => Some(n),
    };
    settle_end(&mut seg, &end, file_len, corrupt_before).await?;
    if config.io_mode == IoMode::Direct && next_base.is_none() {
        let tail_start = seg.size - seg.size % BLOCK_BYTES;
        seg.tail = seg.file.read_at(tail_start, (seg.size - tail_start) as usize).await?;
    }
    seg.prealloc_end = seg.size;
    Ok(Recovered::Segment(Box::new(seg)))
}

/// The set-aside segment files `names` in `dir` with their lengths (0 if unreadable: a
/// best-effort report), by name.
async fn set_aside_files(storage: &Storage, dir: &Path, mut names: Vec<String>) -> Vec<SetAsideFile> {
    names.sort();
    let mut found = Vec::with_capacity(names.len());
    for name in names {
        let bytes = storage.file_len(&dir.join(&name)).await.unwrap_or(0);
        found.push(SetAsideFile { name, bytes });
    }
    found
}

/// Whether `name` is a segment file set aside by recovery: `<base>.log.cut<N>`.
fn is_set_aside_name(name: &str) -> bool {
    name.rsplit_once(".cut").is_some_and(|(log, n)| {
        !n.is_empty()
            && n.bytes().all(|b| b.is_ascii_digit())
            && matches!(parse_segment_file_name(log), Some((_, SegmentFileKind::Log)))
    })
}

/// Sets aside the segments based at `later`, which follow a tear at offset `at` that ends
/// the log: each `.log` is renamed to `<name>.cut<N>` (kept for the operator, never
/// served, removed with the partition), its index files are removed. Nothing in them was
/// made durable in order (see [`ClosedSegmentEnd::EndsLog`]); they are kept because the
/// checkpoint, not their bytes, is what says so. `set_aside_names` (the names set aside
/// already) gets the new names.
async fn set_aside(
    storage: &Storage,
    dir: &Path,
    later: Vec<u64>,
    at: u64,
    set_aside_names: &mut Vec<String>,
) -> Result<(), LogError> {
    for base in later {
        let name = segment_file_name(base, SegmentFileKind::Log);
        let aside = (0u32..)
            .map(|n| format!("{name}.cut{n}"))
            .find(|candidate| !set_aside_names.contains(candidate))
            .unwrap_or_else(|| unreachable!("a finite directory leaves some suffix free"));
        tracing::error!(
            dir = %dir.display(),
            log_end = at,
            "a power loss tore the segment before {name} (past the recovery checkpoint): the log ends at \
             offset {at}; {name} is set aside as {aside}, not served"
        );
        storage.rename(&dir.join(&name), &dir.join(&aside)).await?;
        set_aside_names.push(aside);
        segment::remove_segment_files(storage, dir, base, &[SegmentFileKind::Index, SegmentFileKind::TimeIndex])
            .await?;
    }
    storage.sync_dir(dir).await?;
    Ok(())
}

/// Opens segment `base` and scans it from its last trusted index entry, changing nothing
/// on disk; `active` opens it as the log's active segment would be (O_DSYNC under
/// fsync=always).
async fn scan_segment(
    storage: &Storage,
    dir: &Path,
    config: &LogConfig,
    base: u64,
    checkpoint: Option<&Checkpoint>,
    active: bool,
) -> Result<(Segment, ScanEnd, u64), LogError> {
    let path = dir.join(segment_file_name(base, SegmentFileKind::Log));
    let dsync = config.dsync_writes() && active;
    let file = Rc::new(storage.open_segment(&path, config.io_mode, false, dsync).await?);
    let file_len = file.file_size().await?;
    let (index, time_index, persisted) = load_indexes(storage, dir, base).await;
    let bound = match scan_start(checkpoint, base, file_len) {
        ScanPlan::Trusted => file_len,
        ScanPlan::From { position, .. } => position,
    };
    let mut seg = Segment::new(base, file.clone(), config.index_interval_bytes);
    seg.persisted = persisted;
    let (mut index, mut time_index) = (index, time_index);
    truncate_entries(&mut index, &mut time_index, bound, base);
    let end = scan_from_index(&mut seg, index, time_index, config, file_len).await?;
    let end = match end {
        Some(end) => end,
        None => {
            tracing::warn!(path = %path.display(), "index does not match the log; rebuilding it from a full scan");
            scan_from_index(&mut seg, Vec::new(), Vec::new(), config, file_len)
                .await?
                .unwrap_or_else(|| unreachable!("a scan from position 0 is never rejected as an index mismatch"))
        }
    };
    Ok((seg, end, file_len))
}

/// Scans from the last kept index entry to the end of the file, feeding the segment.
/// `None` when the scan stopped right at a (non-zero) index entry: the index is suspect.
pub(super) async fn scan_from_index(
    seg: &mut Segment,
    index: Vec<IndexEntry>,
    time_index: Vec<TimeEntry>,
    config: &LogConfig,
    file_len: u64,
) -> Result<Option<ScanEnd>, LogError> {
    let start =
        index.last().map_or((0, seg.base), |e| (u64::from(e.position), seg.base + u64::from(e.relative_offset)));
    if index.is_empty() {
        seg.persisted = (0, 0);
    } else {
        seg.persisted = (seg.persisted.0.min(index.len()), seg.persisted.1.min(time_index.len()));
    }
    seg.builder = IndexBuilder::new(seg.base, config.index_interval_bytes, &index, &time_index);
    seg.index = index;
    seg.time_index = time_index;
    seg.next_offset = start.1;
    seg.size = start.0;
    // Bytes before the scan start are vouched for by the checkpoint, not read here: the
    // first read touching them validates them (restart cost stays bounded by unflushed bytes).
    seg.verify = match start.0 {
        0 => Verify::Done,
        end_pos => Verify::Pending { end_pos, end_offset: start.1 },
    };
    let mut scanner = Scanner::new(start.0, start.1, file_len);
    let mut step = scanner.start();
    let end = loop {
        match step {
            ScanStep::Done(end) => break end,
            ScanStep::Read { position, len } => {
                let chunk = seg.file.read_at(position, len as usize).await?;
                step = scanner.feed(&chunk, &mut |meta| seg.on_batch(&meta));
            }
        }
    };
    let rejected_at_entry = start.0 > 0
        && end.valid_len == start.0
        && matches!(end.cut, Some(CutReason::Invalid(_) | CutReason::OffsetGap { .. }));
    Ok((!rejected_at_entry).then_some(end))
}

/// Applies a scan result: truncates a torn tail of the last segment (or zero fill of a
/// closed one), flags a corrupt closed one (`corrupt_before`: its successor's base).
async fn settle_end(
    seg: &mut Segment,
    end: &ScanEnd,
    file_len: u64,
    corrupt_before: Option<u64>,
) -> Result<(), LogError> {
    seg.size = end.valid_len;
    seg.next_offset = end.next_offset;
    let path = seg.file.path().to_owned();
    let benign = matches!(end.cut, Some(CutReason::ZeroFill));
    if let Some(next_base) = corrupt_before {
        let reason = match &end.cut {
            Some(cut) if !benign => format!("invalid data: {cut:?}"),
            _ => format!("segment ends at offset {} but the next one starts at {next_base}", end.next_offset),
        };
        tracing::error!(path = %path.display(), pos = end.valid_len, "corrupt closed segment, refusing to serve past it: {reason}");
        seg.mark_corrupt(Corruption { pos: end.valid_len, offset: end.next_offset, reason });
        seg.next_offset = next_base;
        return Ok(());
    }
    if let Some(cut) = &end.cut {
        let cut_bytes = file_len - end.valid_len;
        if benign {
            tracing::debug!(path = %path.display(), "dropping {cut_bytes} zero bytes after position {}", end.valid_len);
        } else {
            let sample = seg.file.read_at(end.valid_len, cut_bytes.min(1 << 20) as usize).await?;
            let claimed = claimed_offsets(&sample);
            tracing::warn!(
                path = %path.display(),
                "truncating torn tail: cut {cut_bytes} bytes at position {} ({cut:?}); log end offset is now {}; \
                 the cut bytes claimed offsets {claimed:?}",
                end.valid_len,
                end.next_offset
            );
        }
        seg.file.truncate(end.valid_len).await?;
    }
    Ok(())
}

/// Loads `.index`/`.timeindex`; a missing or malformed file gives empty entries (rebuilt by scanning).
async fn load_indexes(storage: &Storage, dir: &Path, base: u64) -> (Vec<IndexEntry>, Vec<TimeEntry>, (usize, usize)) {
    let index_path = dir.join(segment_file_name(base, SegmentFileKind::Index));
    let time_path = dir.join(segment_file_name(base, SegmentFileKind::TimeIndex));
    let index_file = storage.read_whole(&index_path).await;
    let time_file = storage.read_whole(&time_path).await;
    let index = match index_file.map(|b| decode_index(&b)) {
        Ok(Ok(entries)) => entries,
        Ok(Err(problem)) => {
            tracing::warn!(path = %index_path.display(), "rebuilding index: {problem}");
            Vec::new()
        }
        Err(_) => Vec::new(),
    };
    let time_index = match time_file.map(|b| decode_time_index(&b)) {
        Ok(Ok(entries)) if !index.is_empty() => entries,
        _ => Vec::new(),
    };
    if index.is_empty() {
        return (Vec::new(), Vec::new(), (0, 0));
    }
    let counts = (index.len(), time_index.len());
    (index, time_index, counts)
}

/// Writes rebuilt indexes of closed segments; failures (e.g. a full disk) only cost a rescan later.
async fn persist_closed_indexes(storage: &Storage, dir: &Path, segments: &mut BTreeMap<u64, Segment>) {
    let closed = segments.len().saturating_sub(1);
    for seg in segments.values_mut().take(closed) {
        if seg.persisted == (seg.index.len(), seg.time_index.len()) {
            continue;
        }
        let snap = seg.index_snapshot(dir);
        let counts = snap.counts;
        match segment::persist_index(storage, snap).await {
            Ok(()) => seg.persisted = counts,
            Err(e) => tracing::warn!(segment = seg.base, "could not write rebuilt index: {e}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::is_set_aside_name;

    #[test]
    fn set_aside_names_are_a_segment_log_with_a_numbered_cut_suffix() {
        for name in ["00000000000000000014.log.cut0", "00000000000000000014.log.cut12"] {
            assert!(is_set_aside_name(name), "{name}");
        }
        for name in [
            "00000000000000000014.log",
            "00000000000000000014.index.cut0",
            "00000000000000000014.log.cut",
            "00000000000000000014.log.cut0x",
            "x.log.cut0",
            "recovery-checkpoint",
        ] {
            assert!(!is_set_aside_name(name), "{name}");
        }
    }
}
