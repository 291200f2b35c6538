//! Segment roll (size and time), index lookups across segment boundaries, retention by
//! bytes and time, reads that outlive retention, and deletion of the partition.

mod log_util;

use log_util::{batch, batches, config, read_all, run};
use strand_node::log::{FsyncPolicy, IoMode, PartitionLog, ReadError};

#[test]
fn roll_by_size_then_retention_by_bytes_and_time() {
    for mode in [IoMode::Direct, IoMode::Buffered] {
        run(move || async move {
            let dir = tempfile::tempdir().unwrap();
            let mut cfg = config(mode, FsyncPolicy::IntervalMs(5));
            cfg.segment_bytes = 16 << 10;
            cfg.retention_bytes = Some(40 << 10);
            let log = PartitionLog::open(dir.path(), cfg.clone()).await.unwrap();
            let mut expected = Vec::new();
            for i in 0..100u32 {
                let info = log.append(batches(&[batch(2, i64::from(i), 1000, i as u8)])).await.unwrap();
                expected.push((info.base_offset, 2, i as u8));
            }
            let segments = log.segment_count();
            assert!(segments >= 6, "{mode}: {segments} segments");
            let logs = std::fs::read_dir(dir.path())
                .unwrap()
                .filter(|e| e.as_ref().unwrap().path().extension().is_some_and(|x| x == "log"))
                .count();
            assert_eq!(logs, segments);
            assert_eq!(read_all(&log, 0, 5000).await, expected, "{mode}: reads cross segment boundaries");
            // A read taken before retention still works after its segment is unlinked.
            let held = log.read(0, 100_000).await.unwrap();
            let deleted = log.apply_retention(i64::MAX / 2).await.unwrap();
            assert!(deleted > 0);
            assert!(
                log.size_bytes() >= 40 << 10 && log.size_bytes() < (40 << 10) + (16 << 10) + 2048,
                "{}",
                log.size_bytes()
            );
            let start = log.log_start_offset();
            assert!(start > 0);
            assert!(matches!(log.read(start - 1, 100).await, Err(ReadError::OffsetOutOfRange { .. })));
            let rest: Vec<_> = expected.iter().copied().filter(|e| e.0 >= start).collect();
            assert_eq!(read_all(&log, start, 5000).await, rest);
            assert!(!held.chunks[0].to_bytes().await.unwrap().is_empty());
            log.close().await.unwrap();
            // Time retention: every closed segment's newest record (ts <= 99) is older than now - 10.
            let mut cfg2 = cfg;
            cfg2.retention_bytes = None;
            cfg2.retention_ms = Some(10);
            let log = PartitionLog::open(dir.path(), cfg2).await.unwrap();
            assert_eq!(log.log_start_offset(), start, "start survives restart");
            assert_eq!(log.apply_retention(50).await.unwrap(), 0, "nothing older than 40 ms yet");
            let n = log.segment_count();
            assert_eq!(log.apply_retention(1_000).await.unwrap() as usize, n - 1, "all closed segments go");
            assert_eq!(log.segment_count(), 1);
            log.delete().await.unwrap();
            assert!(!dir.path().exists());
        });
    }
}

#[test]
fn roll_by_age() {
    run(|| async {
        let dir = tempfile::tempdir().unwrap();
        let mut cfg = config(IoMode::Buffered, FsyncPolicy::Never);
        cfg.segment_ms = Some(30);
        let log = PartitionLog::open(dir.path(), cfg).await.unwrap();
        log.append(batches(&[batch(1, 1, 10, 1)])).await.unwrap();
        log.append(batches(&[batch(1, 1, 10, 2)])).await.unwrap();
        assert_eq!(log.segment_count(), 1);
        glommio::timer::sleep(std::time::Duration::from_millis(40)).await;
        log.append(batches(&[batch(1, 1, 10, 3)])).await.unwrap();
        assert_eq!(log.segment_count(), 2);
        assert!(dir.path().join("00000000000000000002.log").exists());
        assert_eq!(read_all(&log, 0, 1).await.len(), 3);
    });
}

#[test]
fn interval_fsync_flushes_in_the_background() {
    run(|| async {
        let dir = tempfile::tempdir().unwrap();
        let log = PartitionLog::open(dir.path(), config(IoMode::Direct, FsyncPolicy::IntervalMs(10))).await.unwrap();
        log.append(batches(&[batch(1, 1, 100, 1)])).await.unwrap();
        assert!(log.unflushed_bytes() > 0);
        glommio::timer::sleep(std::time::Duration::from_millis(60)).await;
        assert_eq!(log.unflushed_bytes(), 0);
    });
}

/// A roll hands the old segment to the closer task: appends go on into the new segment
/// while the old one is synced, cut and indexed (under fsync=never that sync is a whole
/// segment of dirty pages). Every close completes in order, the checkpoint reaches the
/// active segment only after them, and a reopen without a clean close finds every record.
#[test]
fn rolls_close_old_segments_in_the_background_and_in_order() {
    for mode in [IoMode::Direct, IoMode::Buffered] {
        run(move || async move {
            let dir = tempfile::tempdir().unwrap();
            let mut cfg = config(mode, FsyncPolicy::Never);
            cfg.segment_bytes = 256 << 10;
            let log = PartitionLog::open(dir.path(), cfg.clone()).await.unwrap();
            let mut expected = Vec::new();
            let mut closing_seen = 0;
            for i in 0..64u32 {
                let info = log.append(batches(&[batch(4, i64::from(i), 16 << 10, i as u8)])).await.unwrap();
                expected.push((info.base_offset, 4, i as u8));
                closing_seen = closing_seen.max(log.closing_segment_count());
            }
            assert!(log.segment_count() >= 16, "{mode}: {} segments", log.segment_count());
            assert!(closing_seen >= 1, "{mode}: an append returned while an older segment was still closing");
            assert_eq!(read_all(&log, 0, 1 << 20).await, expected, "{mode}: reads cross closing segments");
            log.flush().await.unwrap();
            assert_eq!(log.closing_segment_count(), 0, "{mode}: flush waits for every close");
            let active = *log_bases(dir.path()).last().unwrap();
            let checkpoint = std::fs::read(dir.path().join(strand_node::log::CHECKPOINT_FILE_NAME)).unwrap();
            let checkpoint = strand_core::recovery::Checkpoint::decode(&checkpoint).unwrap();
            assert_eq!(
                checkpoint.segment_base, active,
                "{mode}: the checkpoint names the active segment once closes are done"
            );
            // Every closed segment is cut to its logical length (no preallocated tail) and indexed.
            for base in &log_bases(dir.path())[..log_bases(dir.path()).len() - 1] {
                let index = dir.path().join(format!("{base:020}.index"));
                assert!(index.exists(), "{mode}: closed segment {base} has its index");
            }
            drop(log);
            let log = PartitionLog::open(dir.path(), cfg).await.unwrap();
            assert_eq!(read_all(&log, 0, 1 << 20).await, expected, "{mode}: every record after a reopen");
            log.close().await.unwrap();
        });
    }
}

fn log_bases(dir: &std::path::Path) -> Vec<u64> {
    let mut bases: Vec<u64> = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| {
            let name = e.unwrap().file_name().to_string_lossy().into_owned();
            name.strip_suffix(".log").and_then(|b| b.parse().ok())
        })
        .collect();
    bases.sort_unstable();
    bases
}
