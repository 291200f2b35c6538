//! Restart after torn writes, random byte corruption, a corrupt closed segment, deleted
//! indexes, and a real SIGKILL of a writer process (acked data must survive).

mod log_util;
#[path = "../core/tests/seeds/mod.rs"]
mod seeds;

use log_util::{batch, batches, config, read_all, run, segment_logs};
use rand::Rng;
use std::path::Path;
use strand_node::log::{FsyncPolicy, IoMode, LogConfig, PartitionLog, ReadError};
use strand_wire::ErrorCode;

fn cfg(mode: IoMode) -> LogConfig {
    let mut c = config(mode, FsyncPolicy::Never);
    c.segment_bytes = 32 << 10;
    c
}

/// The base offset a segment file is named after.
fn base_of(segment: &Path) -> u64 {
    segment.file_stem().unwrap().to_str().unwrap().parse().unwrap()
}

/// Writes 60 batches (several segments), closes, returns expected batches.
async fn populate(dir: &Path, mode: IoMode) -> Vec<(u64, u32, u8)> {
    let log = PartitionLog::open(dir, cfg(mode)).await.unwrap();
    let mut out = Vec::new();
    for i in 0..60u32 {
        let info =
            log.append(batches(&[batch(1 + i % 3, i64::from(i), 700 + i as usize * 13, i as u8)])).await.unwrap();
        out.push((info.base_offset, 1 + i % 3, i as u8));
    }
    log.close().await.unwrap();
    out
}

#[test]
fn torn_tail_of_active_segment_is_truncated_at_every_length() {
    for mode in [IoMode::Direct, IoMode::Buffered] {
        run(move || async move {
            let dir = tempfile::tempdir().unwrap();
            let expected = populate(dir.path(), mode).await;
            let active = segment_logs(dir.path()).pop().unwrap();
            let full = std::fs::read(&active).unwrap();
            let first_in_active = expected.iter().position(|e| e.0 >= base_of(&active));
            let first_in_active = first_in_active.unwrap();
            // Cut the active segment at many lengths (stride keeps the test fast), plus garbage.
            for cut in (0..full.len()).step_by(97).chain([full.len() - 1]) {
                std::fs::write(&active, &full[..cut]).unwrap();
                let _ = std::fs::remove_file(dir.path().join(strand_node::log::CHECKPOINT_FILE_NAME));
                let log = PartitionLog::open(dir.path(), cfg(mode)).await.unwrap();
                let got = read_all(&log, 0, 1 << 20).await;
                assert!(got.len() >= first_in_active && got.len() < expected.len(), "cut {cut}");
                assert_eq!(&got[..], &expected[..got.len()], "{mode} cut {cut}: a prefix survives");
                let size_on_disk = std::fs::metadata(&active).unwrap().len();
                assert!(size_on_disk <= cut as u64, "file truncated");
                // The log keeps working after recovery.
                let info = log.append(batches(&[batch(1, 1, 10, 200)])).await.unwrap();
                assert_eq!(info.base_offset, got.last().map_or(0, |l| l.0 + u64::from(l.1)));
                drop(log);
            }
        });
    }
}

#[test]
fn random_corruption_of_active_segment_cuts_at_the_damaged_batch() {
    let seed = seeds::seed_replayed().unwrap_or(42);
    let replay = seeds::Replay {
        package: "strand-node",
        target: Some("log_recovery"),
        test_fn: "random_corruption_of_active_segment_cuts_at_the_damaged_batch",
    };
    // The executor thread's own panic (printed by the default hook) comes first; the
    // failure message, raised here when the thread is joined, starts with the seed.
    replay.run(seed, |seed| run(move || random_corruption_run(seed)));
}

async fn random_corruption_run(seed: u64) {
    let mut rng = seeds::rng(seed);
    let dir = tempfile::tempdir().unwrap();
    let expected = populate(dir.path(), IoMode::Buffered).await;
    let active = segment_logs(dir.path()).pop().unwrap();
    let pristine = std::fs::read(&active).unwrap();
    for _ in 0..20 {
        let mut damaged = pristine.clone();
        let at = rng.gen_range(0..damaged.len());
        damaged[at] ^= rng.gen_range(1..=255u8);
        std::fs::write(&active, &damaged).unwrap();
        let _ = std::fs::remove_file(dir.path().join(strand_node::log::CHECKPOINT_FILE_NAME));
        let log = PartitionLog::open(dir.path(), cfg(IoMode::Buffered)).await.unwrap();
        let got = read_all(&log, 0, 1 << 20).await;
        assert_eq!(&got[..], &expected[..got.len()]);
        let kept = std::fs::metadata(&active).unwrap().len() as usize;
        assert!(kept <= at, "byte {at} was damaged but {kept} bytes kept");
        drop(log);
        std::fs::write(&active, &pristine).unwrap();
    }
}

#[test]
fn corrupt_closed_segment_is_reported_with_file_and_position() {
    run(|| async {
        let dir = tempfile::tempdir().unwrap();
        let expected = populate(dir.path(), IoMode::Buffered).await;
        let logs = segment_logs(dir.path());
        assert!(logs.len() >= 3);
        let victim = &logs[1];
        let mut bytes = std::fs::read(victim).unwrap();
        let at = bytes.len() - 10; // inside the last batch of the closed segment
        bytes[at] ^= 0x55;
        std::fs::write(victim, &bytes).unwrap();
        // Without a checkpoint every segment is validated on open.
        std::fs::remove_file(dir.path().join(strand_node::log::CHECKPOINT_FILE_NAME)).unwrap();
        let log = PartitionLog::open(dir.path(), cfg(IoMode::Buffered)).await.unwrap();
        let (second_base, third_base) = (base_of(victim), base_of(&logs[2]));
        // Data before the damage and in later segments is served.
        assert_eq!(
            read_all(&log, third_base, 1 << 20).await,
            expected.iter().copied().filter(|e| e.0 >= third_base).collect::<Vec<_>>()
        );
        assert!(log.read(second_base, 1).await.is_ok());
        // The damaged batch is refused with a clear error.
        let mut offset = second_base;
        let err = loop {
            match log.read(offset, 1).await {
                Ok(r) => offset = r.next_offset,
                Err(e) => break e,
            }
            assert!(offset < third_base, "corrupt batch was served");
        };
        match &err {
            ReadError::CorruptSegment { path, pos, .. } => {
                assert_eq!(path, victim);
                assert!(*pos <= at as u64 && *pos > 0);
            }
            other => panic!("unexpected {other:?}"),
        }
        assert_eq!(err.code(), ErrorCode::CorruptStorage);
        assert!(err.to_string().contains(victim.file_name().unwrap().to_str().unwrap()));
    });
}

/// A power loss under fsync=never caught a rolled segment before its close synced it: the
/// segment is torn, the next segment's name survived, and the recovery checkpoint still
/// names the torn segment (the closer moves it on only after the sync). Recovery ends the
/// log at the tear, sets the later segments aside as `.log.cut0` (kept, never served) and
/// keeps appending from there. With the checkpoint past the torn segment the same damage
/// is corruption: refused, nothing cut or moved. (Before the fix both were refused, so the
/// log served nothing past the tear again — log_sim seeds 193, 1210, 2375, 7468.)
#[test]
fn torn_segment_past_the_checkpoint_ends_the_log_there() {
    use strand_core::recovery::Checkpoint;
    for mode in [IoMode::Direct, IoMode::Buffered] {
        run(move || async move {
            let dir = tempfile::tempdir().unwrap();
            let expected = populate(dir.path(), mode).await;
            let logs = segment_logs(dir.path());
            assert!(logs.len() >= 3);
            let victim = &logs[1];
            let starts = batch_starts(victim);
            let (tear_pos, tear_offset, _) = starts[starts.len() / 2];
            let pristine = std::fs::read(victim).unwrap();
            let checkpoint_path = dir.path().join(strand_node::log::CHECKPOINT_FILE_NAME);
            let cut_name = |p: &Path| p.with_file_name(format!("{}.cut0", p.file_name().unwrap().to_str().unwrap()));

            // Vouched for: the checkpoint names the segment after the torn one.
            std::fs::write(victim, &pristine[..tear_pos as usize + 30]).unwrap();
            let vouched = Checkpoint { segment_base: base_of(&logs[2]), position: 0, next_offset: base_of(&logs[2]) };
            std::fs::write(&checkpoint_path, vouched.encode()).unwrap();
            let log = PartitionLog::open(dir.path(), cfg(mode)).await.unwrap();
            match log.read(tear_offset, 1 << 20).await {
                Err(ReadError::CorruptSegment { path, pos, .. }) => assert_eq!((&path, pos), (victim, tear_pos)),
                other => panic!("{mode}: a tear the checkpoint vouches against gave {other:?}"),
            }
            assert_eq!(log.log_end_offset(), expected.last().map(|e| e.0 + u64::from(e.1)).unwrap());
            assert!(log.set_aside_files().is_empty(), "{mode}: nothing set aside for corruption");
            drop(log);
            assert!(logs.iter().all(|p| p.exists()), "{mode}: nothing moved for corruption");

            // Not vouched for: the checkpoint names the torn segment, as after a power loss
            // during its close.
            std::fs::write(victim, &pristine[..tear_pos as usize + 30]).unwrap();
            let at_victim = Checkpoint { segment_base: base_of(victim), position: 0, next_offset: base_of(victim) };
            std::fs::write(&checkpoint_path, at_victim.encode()).unwrap();
            let log = PartitionLog::open(dir.path(), cfg(mode)).await.unwrap();
            assert_eq!(log.log_end_offset(), tear_offset, "{mode}: the log ends at the tear");
            let kept: Vec<_> = expected.iter().copied().filter(|e| e.0 < tear_offset).collect();
            assert_eq!(read_all(&log, 0, 1 << 20).await, kept, "{mode}: everything before the tear is served");
            for later in &logs[2..] {
                assert!(!later.exists(), "{mode}: {later:?} no longer in the log");
                assert!(cut_name(later).exists(), "{mode}: {later:?} set aside, not deleted");
            }
            // Reported to the operator, with their sizes, at this open and every later one.
            let reported = |log: &PartitionLog| {
                let files = log.set_aside_files();
                let names: Vec<String> = files.iter().map(|f| f.name.clone()).collect();
                let want: Vec<String> =
                    logs[2..].iter().map(|p| cut_name(p).file_name().unwrap().to_str().unwrap().to_owned()).collect();
                assert_eq!(names, want, "{mode}: the set-aside files are listed");
                let bytes: u64 = logs[2..].iter().map(|p| std::fs::metadata(cut_name(p)).unwrap().len()).sum();
                assert!(bytes > 0);
                assert_eq!(log.set_aside_bytes(), bytes, "{mode}: with their sizes");
            };
            reported(&log);
            let info = log.append(batches(&[batch(2, 5, 100, 201)])).await.unwrap();
            assert_eq!(info.base_offset, tear_offset, "{mode}: appends continue at the tear");
            log.close().await.unwrap();
            let log = PartitionLog::open(dir.path(), cfg(mode)).await.unwrap();
            let mut after = kept.clone();
            after.push((tear_offset, 2, 201));
            assert_eq!(read_all(&log, 0, 1 << 20).await, after, "{mode}: a restart keeps the new end");
            reported(&log);
        });
    }
}

/// Start positions and (base offset, next offset) of the batches of a segment file.
fn batch_starts(path: &Path) -> Vec<(u64, u64, u64)> {
    let bytes = std::fs::read(path).unwrap();
    let mut out = Vec::new();
    let mut pos = 0usize;
    while let Ok(b) = strand_wire::batch::Batch::parse(&bytes[pos..]) {
        out.push((pos as u64, b.header().base_offset, b.header().next_offset()));
        pos += b.header().batch_len as usize;
    }
    out
}

/// After a clean shutdown the checkpoint vouches for every closed segment, so open does not
/// read them; damage early in one (before its last index entry, which open rescans from) must
/// still be found by the first read touching the segment: earlier batches served, the damaged
/// one and everything after it in that segment refused with the file and position, later
/// segments unaffected.
#[test]
fn corrupt_checkpointed_segment_is_verified_on_first_read() {
    for mode in [IoMode::Direct, IoMode::Buffered] {
        run(move || async move {
            let dir = tempfile::tempdir().unwrap();
            let expected = populate(dir.path(), mode).await;
            let logs = segment_logs(dir.path());
            assert!(logs.len() >= 3);
            let victim = &logs[1];
            let starts = batch_starts(victim);
            assert!(starts.len() >= 6, "{starts:?}");
            let (bad_pos, bad_offset, _) = starts[2];
            let mut bytes = std::fs::read(victim).unwrap();
            bytes[bad_pos as usize + 100] ^= 0x5a;
            std::fs::write(victim, &bytes).unwrap();
            let log = PartitionLog::open(dir.path(), cfg(mode)).await.unwrap();
            let third_base = base_of(&logs[2]);
            // Later segments are served without touching the damaged one.
            let later: Vec<_> = expected.iter().copied().filter(|e| e.0 >= third_base).collect();
            assert_eq!(read_all(&log, third_base, 1 << 20).await, later, "{mode}");
            // A big read from the segment start stops before the damaged batch.
            let second_base = starts[0].1;
            let r = log.read(second_base, 1 << 20).await.unwrap();
            assert_eq!(r.next_offset, bad_offset, "{mode}: served up to the damage");
            assert_eq!(r.bytes_len as u64, bad_pos);
            let mut served = Vec::new();
            for c in &r.chunks {
                served.extend_from_slice(&c.to_bytes().await.unwrap());
            }
            assert_eq!(&served[..], &bytes[..bad_pos as usize], "{mode}: intact prefix");
            for offset in [bad_offset, starts[4].1, starts[starts.len() - 1].2 - 1] {
                match log.read(offset, 1 << 20).await {
                    Err(ReadError::CorruptSegment { path, pos, reason }) => {
                        assert_eq!((&path, pos), (victim, bad_pos), "{mode} offset {offset}: {reason}");
                    }
                    other => panic!("{mode}: read at {offset} of a corrupt batch gave {other:?}"),
                }
            }
            // The first segment was verified clean and is served whole.
            let first: Vec<_> = expected.iter().copied().filter(|e| e.0 < second_base).collect();
            let mut got = Vec::new();
            let mut offset = 0;
            while offset < second_base {
                let r = log.read(offset, 4096).await.unwrap();
                offset = r.next_offset;
                got.push(r.next_offset);
            }
            assert_eq!(got.last().copied(), Some(second_base));
            assert!(!first.is_empty());
            // Appends keep working.
            log.append(batches(&[batch(1, 1, 10, 7)])).await.unwrap();
        });
    }
}

/// Nobody reads the damaged segment: the background scrubber verifies it anyway a few seconds
/// after open and records the damage, which later reads report.
#[test]
fn scrubber_verifies_unread_segments_after_open() {
    run(|| async {
        let dir = tempfile::tempdir().unwrap();
        populate(dir.path(), IoMode::Buffered).await;
        let logs = segment_logs(dir.path());
        let starts = batch_starts(&logs[0]);
        let (bad_pos, bad_offset, _) = starts[3];
        let mut bytes = std::fs::read(&logs[0]).unwrap();
        bytes[bad_pos as usize + 50] ^= 0x33;
        std::fs::write(&logs[0], &bytes).unwrap();
        let log = PartitionLog::open(dir.path(), cfg(IoMode::Buffered)).await.unwrap();
        assert!(log.unverified_segment_count() >= logs.len() - 1, "checkpointed segments start unverified");
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        while log.unverified_segment_count() > 0 {
            assert!(std::time::Instant::now() < deadline, "scrubber did not finish");
            glommio::timer::sleep(std::time::Duration::from_millis(100)).await;
        }
        match log.read(bad_offset, 1 << 20).await {
            Err(ReadError::CorruptSegment { path, pos, .. }) => assert_eq!((path, pos), (logs[0].clone(), bad_pos)),
            other => panic!("read of the damaged batch gave {other:?}"),
        }
        assert_eq!(log.read(0, 1 << 20).await.unwrap().next_offset, bad_offset);
    });
}

#[test]
fn deleted_or_damaged_indexes_are_rebuilt() {
    run(|| async {
        let dir = tempfile::tempdir().unwrap();
        let expected = populate(dir.path(), IoMode::Direct).await;
        let mut removed = 0;
        for e in std::fs::read_dir(dir.path()).unwrap() {
            let p = e.unwrap().path();
            match p.extension().and_then(|x| x.to_str()) {
                Some("index") if removed % 2 == 0 => {
                    std::fs::remove_file(&p).unwrap();
                    removed += 1;
                }
                Some("index") => {
                    std::fs::write(&p, b"garbage!x").unwrap();
                    removed += 1;
                }
                Some("timeindex") => std::fs::remove_file(&p).unwrap(),
                _ => {}
            }
        }
        assert!(removed >= 2);
        let log = PartitionLog::open(dir.path(), cfg(IoMode::Direct)).await.unwrap();
        assert_eq!(read_all(&log, 0, 3000).await, expected);
        assert_eq!(log.offset_for_timestamp(30).await.unwrap().map(|x| x.1), Some(30));
        // Closed segments' indexes were rewritten (best effort, there is space here).
        let logs = segment_logs(dir.path());
        for l in &logs[..logs.len() - 1] {
            let idx = l.with_extension("index");
            assert!(std::fs::metadata(&idx).map(|m| m.len() > 0 && m.len() % 8 == 0).unwrap_or(false), "{idx:?}");
        }
        log.close().await.unwrap();
    });
}

/// Child half of the SIGKILL test: appends with fsync=always and prints each acked offset.
#[test]
fn sigkill_child_writer() {
    let Ok(dir) = std::env::var("STRAND_LOG_CHILD_DIR") else { return };
    run(move || async move {
        use std::io::Write;
        let mut c = config(IoMode::Direct, FsyncPolicy::Always);
        c.segment_bytes = 64 << 10;
        let log = PartitionLog::open(Path::new(&dir), c).await.unwrap();
        let mut out = std::io::stdout();
        for i in 0u32.. {
            let info = log.append(batches(&[batch(2, i64::from(i), 900, i as u8)])).await.unwrap();
            writeln!(out, "ACK {}", info.last_offset).unwrap();
            out.flush().unwrap();
        }
    });
}

#[test]
fn restart_after_sigkill_keeps_every_acked_append() {
    use std::io::BufRead;
    let dir = tempfile::tempdir().unwrap();
    for round in 0..3 {
        let mut child = std::process::Command::new(std::env::current_exe().unwrap())
            .args(["--exact", "sigkill_child_writer", "--nocapture", "--test-threads=1"])
            .env("STRAND_LOG_CHILD_DIR", dir.path())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let mut last_acked = None;
        for line in std::io::BufReader::new(stdout).lines() {
            let line = line.unwrap();
            if let Some(o) = line.strip_prefix("ACK ") {
                last_acked = Some(o.parse::<u64>().unwrap());
                if last_acked.unwrap() >= 300 * (round + 1) {
                    break;
                }
            }
        }
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        let last = last_acked.expect("child acked appends");
        let path = dir.path().to_owned();
        run(move || async move {
            let log = PartitionLog::open(&path, config(IoMode::Direct, FsyncPolicy::Always)).await.unwrap();
            assert!(
                log.log_end_offset() > last,
                "round {round}: acked offset {last} lost (end {})",
                log.log_end_offset()
            );
            let got = read_all(&log, 0, 1 << 20).await;
            assert_eq!(got.last().map(|g| g.0 + u64::from(g.1)), Some(log.log_end_offset()));
        });
    }
}
