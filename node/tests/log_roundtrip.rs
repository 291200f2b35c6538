//! Append/read round trips in both IO modes, index lookups at every offset, read limits,
//! group commit, validation, timestamp lookup and restart after a clean close.

mod log_util;

use bytes::BytesMut;
use log_util::{batch, batches, config, read_all, run};
use strand_node::log::{AppendError, FsyncPolicy, IoMode, PartitionLog, ReadError};
use strand_wire::ErrorCode;

const MODES: [IoMode; 2] = [IoMode::Direct, IoMode::Buffered];

/// Appends a mix of single and multi-batch requests of varied sizes; returns expected (base, count, tag).
async fn fill(log: &PartitionLog, n: u32) -> Vec<(u64, u32, u8)> {
    let mut expected = Vec::new();
    for i in 0..n {
        let tag = (i % 250) as u8;
        let a = batch(1 + i % 4, 1_000 + i64::from(i) * 10, (i as usize * 37) % 3000, tag);
        let parts = if i % 5 == 0 { vec![a.clone(), batch(2, 1_000 + i64::from(i) * 10, 10, tag)] } else { vec![a] };
        let info = log.append(batches(&parts)).await.expect("append");
        let mut off = info.base_offset;
        for p in &parts {
            let count = strand_wire::batch::BatchHeader::parse(p).unwrap().record_count;
            expected.push((off, count, tag));
            off += u64::from(count);
        }
        assert_eq!(info.log_end_offset, off);
        assert_eq!(info.batch_count as usize, parts.len());
    }
    expected
}

#[test]
fn round_trip_both_modes_and_every_offset() {
    for mode in MODES {
        run(move || async move {
            let dir = tempfile::tempdir().unwrap();
            let log = PartitionLog::open(dir.path(), config(mode, FsyncPolicy::Never)).await.unwrap();
            assert_eq!((log.log_start_offset(), log.log_end_offset()), (0, 0));
            let expected = fill(&log, 120).await;
            assert_eq!(read_all(&log, 0, 1).await, expected, "{mode}: one batch per read");
            assert_eq!(read_all(&log, 0, 64 << 10).await, expected, "{mode}: large reads");
            // Every offset returns the batch containing it first.
            for &(base, count, _) in &expected {
                for o in base..base + u64::from(count) {
                    let r = log.read(o, 1).await.unwrap();
                    let bytes = r.chunks[0].to_bytes().await.unwrap();
                    assert_eq!(
                        strand_wire::batch::BatchHeader::parse(&bytes).unwrap().base_offset,
                        base,
                        "{mode} offset {o}"
                    );
                }
            }
            let end = log.log_end_offset();
            let r = log.read(end, 1000).await.unwrap();
            assert!(r.chunks.is_empty() && r.next_offset == end);
            let err = log.read(end + 1, 1000).await.unwrap_err();
            assert!(matches!(err, ReadError::OffsetOutOfRange { offset, .. } if offset == end + 1));
            assert_eq!(err.code(), ErrorCode::OffsetOutOfRange);
            log.close().await.unwrap();
        });
    }
}

#[test]
fn restart_after_clean_close_keeps_everything() {
    for mode in MODES {
        run(move || async move {
            let dir = tempfile::tempdir().unwrap();
            let log = PartitionLog::open(dir.path(), config(mode, FsyncPolicy::Always)).await.unwrap();
            let expected = fill(&log, 40).await;
            let end = log.log_end_offset();
            log.close().await.unwrap();
            let log = PartitionLog::open(dir.path(), config(mode, FsyncPolicy::Always)).await.unwrap();
            assert_eq!(log.log_end_offset(), end);
            assert_eq!(read_all(&log, 0, 10_000).await, expected);
            let info = log.append(batches(&[batch(3, 5, 100, 251)])).await.unwrap();
            assert_eq!(info.base_offset, end);
            log.close().await.unwrap();
            // Clean close leaves the exact logical length on disk (no direct-mode padding).
            let log_file = dir.path().join("00000000000000000000.log");
            let on_disk = std::fs::metadata(&log_file).unwrap().len();
            let log = PartitionLog::open(dir.path(), config(mode, FsyncPolicy::Always)).await.unwrap();
            assert_eq!(log.size_bytes(), on_disk, "{mode}");
            assert_eq!(log.log_end_offset(), end + 3);
            log.close().await.unwrap();
        });
    }
}

#[test]
fn fresh_dir_reads_back_through_dma() {
    // DESIGN §9: without the probe file glommio marks the device pollable on an empty file
    // and every later DMA read fails with EOPNOTSUPP. A fresh executor thread and directory
    // reproduce the first-open condition.
    run(|| async {
        let dir = tempfile::tempdir().unwrap();
        let log = PartitionLog::open(dir.path(), config(IoMode::Direct, FsyncPolicy::Always)).await.unwrap();
        let b = batch(5, 1, 5000, 9);
        log.append(batches(std::slice::from_ref(&b))).await.unwrap();
        log.close().await.unwrap();
        let log = PartitionLog::open(dir.path(), config(IoMode::Direct, FsyncPolicy::Always)).await.unwrap();
        let r = log.read(0, 1 << 20).await.unwrap();
        assert!(matches!(r.chunks[0], strand_node::log::ReadChunk::File { .. }), "after restart the cache is cold");
        let got = r.chunks[0].to_bytes().await.expect("DMA read must work on a fresh directory");
        assert_eq!(&got[8..], &b[8..], "bytes after the stamped offset are stored verbatim");
        assert!(dir.path().join(strand_node::log::PROBE_FILE_NAME).exists());
        log.close().await.unwrap();
    });
}

#[test]
fn group_commit_concurrent_appends_fsync_always() {
    for mode in MODES {
        run(move || async move {
            let dir = tempfile::tempdir().unwrap();
            let log =
                std::rc::Rc::new(PartitionLog::open(dir.path(), config(mode, FsyncPolicy::Always)).await.unwrap());
            let mut tasks = Vec::new();
            for t in 0..8u8 {
                let log = log.clone();
                tasks.push(glommio::spawn_local(async move {
                    let mut infos = Vec::new();
                    for i in 0..20 {
                        infos.push(log.append(batches(&[batch(2, i, 500, t)])).await.unwrap());
                    }
                    infos
                }));
            }
            let mut all = Vec::new();
            for t in tasks {
                all.extend(t.await);
            }
            all.sort_by_key(|i| i.base_offset);
            for (i, info) in all.iter().enumerate() {
                assert_eq!(info.base_offset, i as u64 * 2, "offsets dense and unique");
            }
            assert_eq!(log.unflushed_bytes(), 0, "fsync=always leaves nothing unflushed after acks");
            assert_eq!(read_all(&log, 0, 1 << 20).await.len(), 160);
        });
    }
}

#[test]
fn invalid_and_oversized_batches_append_nothing() {
    run(|| async {
        let dir = tempfile::tempdir().unwrap();
        let mut cfg = config(IoMode::Buffered, FsyncPolicy::Never);
        cfg.batch_len_max = 4096;
        let log = PartitionLog::open(dir.path(), cfg).await.unwrap();
        let good = batch(1, 1, 10, 1);
        let mut bad = good.to_vec();
        *bad.last_mut().unwrap() ^= 0xff;
        let mut req = batches(std::slice::from_ref(&good));
        req.extend_from_slice(&bad);
        let err = log.append(req).await.unwrap_err();
        assert!(matches!(err, AppendError::Corrupt(_)));
        assert_eq!(err.code(), ErrorCode::CorruptBatch);
        let err = log.append(BytesMut::from(&good[..good.len() - 1])).await.unwrap_err();
        assert_eq!(err.code(), ErrorCode::CorruptBatch);
        let err = log.append(batches(&[batch(1, 1, 5000, 1)])).await.unwrap_err();
        assert!(matches!(err, AppendError::TooLarge { .. }));
        assert_eq!(err.code(), ErrorCode::MessageTooLarge);
        assert_eq!(log.log_end_offset(), 0);
        assert_eq!(log.size_bytes(), 0);
        log.append(batches(&[good])).await.unwrap();
        assert_eq!(log.log_end_offset(), 1);
    });
}

#[test]
fn timestamp_lookup_finds_first_record_at_or_after() {
    for mode in MODES {
        run(move || async move {
            let dir = tempfile::tempdir().unwrap();
            let mut cfg = config(mode, FsyncPolicy::Never);
            cfg.segment_bytes = 8 << 10;
            let log = PartitionLog::open(dir.path(), cfg).await.unwrap();
            // Batch i holds 3 records at timestamps 100*i, 100*i+1, 100*i+2 (offsets 3i..3i+2).
            for i in 0..60i64 {
                log.append(batches(&[batch(3, 100 * i, 300, i as u8)])).await.unwrap();
            }
            assert!(log.segment_count() > 2);
            for i in 0..60i64 {
                for d in 0..3 {
                    let got = log.offset_for_timestamp(100 * i + d).await.unwrap();
                    assert_eq!(got, Some(((3 * i + d) as u64, 100 * i + d)), "{mode} ts {}", 100 * i + d);
                }
                let got = log.offset_for_timestamp(100 * i + 50).await.unwrap();
                let want = if i < 59 { Some((3 * (i + 1) as u64, 100 * (i + 1))) } else { None };
                assert_eq!(got, want);
            }
            assert_eq!(log.offset_for_timestamp(i64::MIN).await.unwrap(), Some((0, 0)));
        });
    }
}

/// Appends of several MiB (cut into pipelined 1 MiB DMA chunk writes, more chunks than may
/// be in flight) interleaved with small ones read back byte for byte, before and after a restart.
#[test]
fn multi_mib_appends_read_back_exactly() {
    // Buffered appends this large go through pwrite on the blocking pool; fsync=always
    // opens that fd O_DSYNC too.
    for (mode, fsync) in [
        (IoMode::Direct, FsyncPolicy::Always),
        (IoMode::Buffered, FsyncPolicy::Always),
        (IoMode::Buffered, FsyncPolicy::Never),
    ] {
        multi_mib_round_trip(mode, fsync);
    }
}

fn multi_mib_round_trip(mode: IoMode, fsync: FsyncPolicy) {
    run(move || async move {
        let dir = tempfile::tempdir().unwrap();
        let mut written = Vec::new();
        {
            let log = PartitionLog::open(dir.path(), config(mode, fsync)).await.unwrap();
            for round in 0..3u8 {
                let big: Vec<_> =
                    (0..4u8).map(|i| batch(3, 1, 500_000 + usize::from(i) * 777, round * 10 + i)).collect();
                let small = batch(1, 2, 100 + usize::from(round), 200 + round);
                for mut part in [batches(&big), batches(std::slice::from_ref(&small))] {
                    // Stamp the offsets the log will assign, so `written` is what it stores.
                    let (mut at, mut offset) = (0usize, log.log_end_offset());
                    while at < part.len() {
                        let h = *strand_wire::batch::Batch::parse(&part[at..]).unwrap().header();
                        strand_wire::batch::stamp_base_offset(&mut part[at..], offset);
                        offset += u64::from(h.record_count);
                        at += h.batch_len as usize;
                    }
                    written.extend_from_slice(&part);
                    log.append(part).await.unwrap();
                }
            }
            assert_same(&read_bytes(&log).await, &written, "before restart");
            log.close().await.unwrap();
        }
        let log = PartitionLog::open(dir.path(), config(mode, fsync)).await.unwrap();
        assert_same(&read_bytes(&log).await, &written, "after restart");
    });
}

fn assert_same(got: &[u8], want: &[u8], when: &str) {
    let first_diff = got.iter().zip(want).position(|(a, b)| a != b);
    assert_eq!((got.len(), first_diff), (want.len(), None), "{when}: lengths and first differing byte");
}

async fn read_bytes(log: &PartitionLog) -> Vec<u8> {
    let mut out = Vec::new();
    let mut offset = 0;
    while offset < log.log_end_offset() {
        let r = log.read(offset, 8 << 20).await.unwrap();
        for c in &r.chunks {
            out.extend_from_slice(&c.to_bytes().await.unwrap());
        }
        offset = r.next_offset;
    }
    out
}

/// An append whose wait for durability is dropped while it holds the write lock (its task
/// cancelled mid-write) must not leave a hole that a later append is acknowledged across:
/// the log gives the dropped append's offsets back and takes no more appends (the write
/// may still land; the segment's tail is unknown until the next open recovers it).
#[test]
fn a_dropped_append_wait_leaves_no_hole_behind_later_appends() {
    for mode in MODES {
        run(move || async move {
            let dir = tempfile::tempdir().unwrap();
            let log = PartitionLog::open(dir.path(), config(mode, FsyncPolicy::Never)).await.unwrap();
            let stored = log.append(batches(&[batch(1, 500, 100, 9)])).await.expect("first append");
            let dropped = log.reserve(batches(&[batch(1, 1_000, 100, 1)])).expect("reserve");
            let mut wait = Box::pin(dropped.durable());
            let polled = futures_lite::future::poll_once(&mut wait).await;
            assert!(polled.is_none(), "{mode}: the first poll takes the lock and starts the write");
            drop(wait);
            assert_eq!(log.log_end_offset(), stored.log_end_offset, "{mode}: the dropped append's offsets given back");
            let refused = log.append(batches(&[batch(2, 2_000, 100, 2)])).await;
            assert!(refused.is_err(), "{mode}: no append after a cancelled write");
            assert_eq!(read_all(&log, 0, 1 << 20).await, vec![(0, 1, 9)], "{mode}: exactly what was acknowledged");
            drop(log);
            let log = PartitionLog::open(dir.path(), config(mode, FsyncPolicy::Never)).await.unwrap();
            let recovered = read_all(&log, 0, 1 << 20).await;
            assert!(
                recovered == vec![(0, 1, 9)] || recovered == vec![(0, 1, 9), (1, 1, 1)],
                "{mode}: after reopening, the acknowledged append and at most the dropped one: {recovered:?}"
            );
            let next = log.append(batches(&[batch(2, 2_000, 100, 2)])).await.expect("appends after reopening");
            assert_eq!(next.base_offset, recovered.len() as u64);
            log.close().await.unwrap();
        });
    }
}

#[test]
fn reads_from_disk_fill_max_bytes_wherever_they_start() {
    // A read from a file (cold cache) ends at the last index boundary within max_bytes; the
    // boundaries it considers are looked up by binary search within a window, not by a scan
    // of the whole index. Every read must still be full: within one index interval plus one
    // batch of max_bytes.
    run(|| async {
        let dir = tempfile::tempdir().unwrap();
        let cfg = config(IoMode::Buffered, FsyncPolicy::Never);
        let log = PartitionLog::open(dir.path(), cfg.clone()).await.unwrap();
        let parts: Vec<bytes::Bytes> = (0..1500).map(|i| batch(2, i, 80, (i % 251) as u8)).collect();
        let batch_len = parts[0].len() as u32;
        for chunk in parts.chunks(100) {
            log.append(batches(chunk)).await.unwrap();
        }
        log.close().await.unwrap();
        let log = PartitionLog::open(dir.path(), cfg.clone()).await.unwrap();
        let end = log.log_end_offset();
        let max_bytes = 16 * 1024;
        for from in [0, 2, 500, 1234, 2000, end - 200] {
            let r = log.read(from, max_bytes).await.unwrap();
            assert!(matches!(r.chunks[0], strand_node::log::ReadChunk::File { .. }), "the cache is cold");
            assert!(r.bytes_len <= max_bytes, "read at {from}: {} > {max_bytes}", r.bytes_len);
            let full = max_bytes - cfg.index_interval_bytes - batch_len;
            let to_end = r.next_offset == end;
            assert!(to_end || r.bytes_len >= full, "read at {from} returned only {} of {max_bytes} bytes", r.bytes_len);
        }
        assert_eq!(read_all(&log, 0, max_bytes).await.len(), parts.len());
        log.close().await.unwrap();
    });
}
