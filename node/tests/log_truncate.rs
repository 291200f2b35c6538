//! `PartitionLog::truncate` with real files in both io modes: cuts in the middle of the
//! active segment, at a segment boundary and across several segments, appends after the
//! cut, reads everything back, restarts; refusals of bad cut points; and recovery from a
//! crash in the middle of a truncation (files in the state each step leaves them).

mod log_util;

use log_util::{batch, batches, config, read_all, run};
use strand_core::recovery::{segment_file_name, Checkpoint, SegmentFileKind};
use strand_node::log::{FsyncPolicy, IoMode, LogConfig, PartitionLog, StoredBatch, TruncateError};

fn small_segments(mode: IoMode) -> LogConfig {
    let mut cfg = config(mode, FsyncPolicy::Always);
    cfg.segment_bytes = 8 << 10;
    cfg
}

/// Appends `n` single batches of 3 records (~1.1 KiB each) tagged `tag_base + i`; returns
/// (base offset, record count, tag) per batch.
async fn fill(log: &PartitionLog, n: u32, tag_base: u8) -> Vec<(u64, u32, u8)> {
    let mut out = Vec::new();
    for i in 0..n {
        let tag = tag_base.wrapping_add(i as u8);
        let info = log.append(batches(&[batch(3, 1_000 + i64::from(i), 350, tag)])).await.expect("append");
        out.push((info.base_offset, 3, tag));
    }
    out
}

fn log_files(dir: &std::path::Path) -> usize {
    std::fs::read_dir(dir)
        .unwrap()
        .filter(|e| e.as_ref().unwrap().path().extension().is_some_and(|x| x == "log"))
        .count()
}

#[test]
fn truncate_within_at_boundary_and_across_segments_then_append_and_restart() {
    for mode in [IoMode::Direct, IoMode::Buffered] {
        run(move || async move {
            let dir = tempfile::tempdir().unwrap();
            let cfg = small_segments(mode);
            let log = PartitionLog::open(dir.path(), cfg.clone()).await.unwrap();
            let mut expected = fill(&log, 40, 0).await;
            let segments = log.segment_count();
            assert!(segments >= 5, "{mode}: {segments} segments");

            // 1. In the middle of the active segment.
            let cut = expected[expected.len() - 2].0;
            log.truncate(cut).await.unwrap();
            expected.truncate(expected.len() - 2);
            assert_eq!(log.log_end_offset(), cut);
            assert_eq!(log.segment_count(), segments);
            assert_eq!(read_all(&log, 0, 3000).await, expected, "{mode}: after a cut in the active segment");

            // 2. Exactly at a segment boundary: the whole active segment goes.
            let active_base = *std::fs::read_dir(dir.path())
                .unwrap()
                .filter_map(|e| e.unwrap().file_name().to_str().and_then(|n| n.strip_suffix(".log")).map(String::from))
                .map(|n| n.parse::<u64>().unwrap())
                .collect::<Vec<_>>()
                .iter()
                .max()
                .unwrap();
            log.truncate(active_base).await.unwrap();
            expected.retain(|e| e.0 < active_base);
            assert_eq!(log.segment_count(), segments - 1, "{mode}");
            assert!(!dir.path().join(segment_file_name(active_base, SegmentFileKind::Log)).exists());
            assert_eq!(read_all(&log, 0, 3000).await, expected, "{mode}: after a cut at a segment boundary");

            // 3. Across several segments, into the middle of an older one.
            let cut = expected[7].0;
            log.truncate(cut).await.unwrap();
            expected.truncate(7);
            assert!(log.segment_count() <= 2, "{mode}: {} segments", log.segment_count());
            assert_eq!(log_files(dir.path()), log.segment_count());
            assert_eq!(read_all(&log, 0, 3000).await, expected, "{mode}: after a cut across segments");

            // Append again (offsets continue at the cut), read back, then restart.
            expected.extend(fill(&log, 30, 100).await);
            assert_eq!(expected[7].0, cut, "offsets are reused from the cut");
            assert_eq!(read_all(&log, 0, 3000).await, expected, "{mode}: appends after the cut");
            assert_eq!(read_all(&log, 0, 1).await, expected, "{mode}: batch-by-batch");
            let stored = log.stored_batches().await.unwrap();
            let want: Vec<StoredBatch> = expected
                .iter()
                .map(|e| StoredBatch { base_offset: e.0, record_count: e.1, len_bytes: stored[0].len_bytes })
                .collect();
            assert_eq!(
                stored.iter().map(|b| (b.base_offset, b.record_count)).collect::<Vec<_>>(),
                want.iter().map(|b| (b.base_offset, b.record_count)).collect::<Vec<_>>()
            );
            let end = log.log_end_offset();
            log.close().await.unwrap();
            let log = PartitionLog::open(dir.path(), cfg.clone()).await.unwrap();
            assert_eq!(log.log_end_offset(), end, "{mode}: end survives restart");
            assert_eq!(read_all(&log, 0, 3000).await, expected, "{mode}: after restart");

            // Truncate everything, restart without a clean close, append again.
            log.truncate(0).await.unwrap();
            assert_eq!(log.log_end_offset(), 0);
            assert_eq!(read_all(&log, 0, 3000).await, vec![]);
            drop(log);
            let log = PartitionLog::open(dir.path(), cfg).await.unwrap();
            assert_eq!(log.log_end_offset(), 0, "{mode}: empty after restart");
            let again = fill(&log, 3, 200).await;
            assert_eq!(again[0].0, 0);
            assert_eq!(read_all(&log, 0, 3000).await, again);
        });
    }
}

#[test]
fn refuses_non_boundaries_and_points_past_the_end() {
    for mode in [IoMode::Direct, IoMode::Buffered] {
        run(move || async move {
            let dir = tempfile::tempdir().unwrap();
            let log = PartitionLog::open(dir.path(), small_segments(mode)).await.unwrap();
            let expected = fill(&log, 12, 0).await;
            let end = log.log_end_offset();
            assert!(matches!(log.truncate(end + 1).await, Err(TruncateError::BeyondEnd { .. })));
            for to in [1, expected[5].0 + 1, end - 1] {
                let err = log.truncate(to).await.unwrap_err();
                assert!(matches!(err, TruncateError::NotBoundary { .. }), "{mode} {to}: {err}");
            }
            log.truncate(end).await.unwrap();
            assert_eq!(read_all(&log, 0, 3000).await, expected, "{mode}: refused cuts change nothing");
            fill(&log, 1, 50).await;
        });
    }
}

/// A crash after the checkpoint and the unlinking of the newest segment, before the target
/// file was cut: reopening gives a prefix of the old log, and the cut can be redone.
#[test]
fn crash_mid_truncation_recovers_a_prefix() {
    for mode in [IoMode::Direct, IoMode::Buffered] {
        run(move || async move {
            let dir = tempfile::tempdir().unwrap();
            let cfg = small_segments(mode);
            let log = PartitionLog::open(dir.path(), cfg.clone()).await.unwrap();
            let expected = fill(&log, 30, 0).await;
            let mut bases: Vec<u64> = std::fs::read_dir(dir.path())
                .unwrap()
                .filter_map(|e| e.unwrap().file_name().to_str().and_then(|n| n.strip_suffix(".log")).map(String::from))
                .map(|n| n.parse().unwrap())
                .collect();
            bases.sort_unstable();
            assert!(bases.len() >= 3);
            drop(log);
            // Simulate the state a crash leaves: newest segment unlinked, the rest untouched.
            let newest = *bases.last().unwrap();
            std::fs::remove_file(dir.path().join(segment_file_name(newest, SegmentFileKind::Log))).unwrap();
            let log = PartitionLog::open(dir.path(), cfg.clone()).await.unwrap();
            let prefix: Vec<_> = expected.iter().copied().filter(|e| e.0 < newest).collect();
            assert_eq!(log.log_end_offset(), newest, "{mode}");
            assert_eq!(read_all(&log, 0, 3000).await, prefix, "{mode}: a valid prefix");
            let cut = prefix[3].0;
            log.truncate(cut).await.unwrap();
            drop(log);
            let log = PartitionLog::open(dir.path(), cfg).await.unwrap();
            assert_eq!(read_all(&log, 0, 3000).await, prefix[..3].to_vec(), "{mode}: redone cut survives");
        });
    }
}

/// A crash right after step 1 (the checkpoint naming the cut point inside a closed
/// segment was written, nothing cut yet): the whole old log is still valid and served.
#[test]
fn crash_after_the_cut_checkpoint_keeps_the_whole_log() {
    for mode in [IoMode::Direct, IoMode::Buffered] {
        run(move || async move {
            let dir = tempfile::tempdir().unwrap();
            let cfg = small_segments(mode);
            let log = PartitionLog::open(dir.path(), cfg.clone()).await.unwrap();
            let expected = fill(&log, 30, 0).await;
            let stored = log.stored_batches().await.unwrap();
            log.close().await.unwrap();
            // The cut point: the fourth batch of the second segment (a closed one).
            let second_base = expected
                .iter()
                .map(|e| e.0)
                .find(|&o| dir.path().join(segment_file_name(o, SegmentFileKind::Log)).exists() && o > 0);
            let second_base = second_base.expect("a second segment");
            let in_second: Vec<_> = stored.iter().filter(|b| b.base_offset >= second_base).take(4).collect();
            let pos: u64 = in_second[..3].iter().map(|b| u64::from(b.len_bytes)).sum();
            let checkpoint =
                Checkpoint { segment_base: second_base, position: pos, next_offset: in_second[3].base_offset };
            std::fs::write(dir.path().join(strand_node::log::CHECKPOINT_FILE_NAME), checkpoint.encode()).unwrap();
            let log = PartitionLog::open(dir.path(), cfg).await.unwrap();
            assert_eq!(read_all(&log, 0, 3000).await, expected, "{mode}: nothing lost, nothing cut");
            log.truncate(in_second[3].base_offset).await.unwrap();
            let prefix: Vec<_> = expected.iter().copied().filter(|e| e.0 < in_second[3].base_offset).collect();
            assert_eq!(read_all(&log, 0, 3000).await, prefix, "{mode}: the redone cut");
        });
    }
}
