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
