//! Write-behind (`log::writeback`): in buffered mode with fsync=never, the log starts the
//! writeback of every few MiB it appends (counted by `WRITEBACK_STARTED_BYTES`) instead of
//! leaving a whole segment dirty for the roll's fdatasync; every record still reads back
//! intact, across rolls. Direct IO and fsync=always (whose writes are synced anyway) start
//! none. One test: the counter is process-wide.

mod log_util;

use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use log_util::{batch, batches, config, read_all, run};
use strand_node::log::{FsyncPolicy, IoMode, LogConfig, PartitionLog};
use strand_node::metrics::WRITEBACK_STARTED_BYTES;

/// 20 MiB in 64 KiB batches over segments of 8 MiB: two rolls.
const BATCH_VALUE: usize = 64 << 10;
const APPENDS: u32 = 320;
const SEGMENT_BYTES: u64 = 8 << 20;

/// Appends `APPENDS` one-record batches, reads them all back, closes the log; returns the
/// writeback bytes started meanwhile (waiting up to 5 s for the last step to be counted).
fn write_and_count(io_mode: IoMode, fsync: FsyncPolicy, expect_at_least: u64) -> u64 {
    let before = WRITEBACK_STARTED_BYTES.load(Relaxed);
    run(move || async move {
        let dir = tempfile::tempdir().unwrap();
        let cfg = LogConfig { segment_bytes: SEGMENT_BYTES, ..config(io_mode, fsync) };
        let log = PartitionLog::open(dir.path(), cfg).await.unwrap();
        for i in 0..APPENDS {
            log.append(batches(&[batch(1, i64::from(i), BATCH_VALUE, i as u8)])).await.unwrap();
        }
        let read = read_all(&log, 0, 1 << 20).await;
        assert_eq!(read.len(), APPENDS as usize, "{io_mode:?}/{fsync:?}: every batch reads back");
        for (i, (offset, records, tag)) in read.iter().enumerate() {
            assert_eq!((*offset, *records, *tag), (i as u64, 1, i as u8), "{io_mode:?}/{fsync:?}: batch {i}");
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        while WRITEBACK_STARTED_BYTES.load(Relaxed) - before < expect_at_least && Instant::now() < deadline {
            glommio::timer::sleep(Duration::from_millis(10)).await;
        }
        log.close().await.unwrap();
    });
    WRITEBACK_STARTED_BYTES.load(Relaxed) - before
}

#[test]
fn buffered_fsync_never_writes_behind_and_the_others_do_not() {
    let written = u64::from(APPENDS) * BATCH_VALUE as u64;
    // Steps of 4 MiB per segment, one in flight per log: at least half of what was appended.
    let started = write_and_count(IoMode::Buffered, FsyncPolicy::Never, written / 2);
    assert!(
        started >= written / 2 && started <= written + (1 << 20),
        "buffered, fsync=never: writeback started for {started} of {written} bytes"
    );
    for (mode, fsync) in [(IoMode::Direct, FsyncPolicy::Never), (IoMode::Buffered, FsyncPolicy::Always)] {
        let started = write_and_count(mode, fsync, 0);
        assert_eq!(started, 0, "{mode:?}/{fsync:?}: no write-behind");
    }
}
