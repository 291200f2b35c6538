//! Disk full, for real: a size-limited tmpfs (buffered and DMA-without-O_DIRECT paths) and,
//! when loop mounts work, a small ext4 image (true O_DIRECT). After ENOSPC the append fails
//! with StorageFull, everything acked stays readable, reopening needs no space, and appends
//! succeed again once space is freed. Skips (printing why) when mounting is not permitted.

mod log_util;

use log_util::{batch, batches, config, read_all, run};
use std::path::{Path, PathBuf};
use std::process::Command;
use strand_node::log::{AppendError, FsyncPolicy, IoMode, PartitionLog};
use strand_wire::ErrorCode;

struct Mount {
    dir: tempfile::TempDir,
    _image: Option<tempfile::TempDir>,
}

impl Drop for Mount {
    fn drop(&mut self) {
        // Lazy: a log's file may still be open here (a plain umount then fails with EBUSY
        // and leaves the mount behind — 100 such mounts had piled up on the dev machine).
        let _ = Command::new("umount").arg("-l").arg(self.dir.path()).status();
    }
}

fn mount_tmpfs(size: &str) -> Option<Mount> {
    let dir = tempfile::tempdir().ok()?;
    let opt = format!("size={size}");
    let ok = Command::new("mount").args(["-t", "tmpfs", "-o", &opt, "tmpfs"]).arg(dir.path()).status().ok()?.success();
    if !ok {
        println!("SKIP: cannot mount tmpfs (not permitted here)");
        return None;
    }
    Some(Mount { dir, _image: None })
}

fn mount_ext4(size_mib: u32) -> Option<Mount> {
    let image_dir = tempfile::tempdir().ok()?;
    let image = image_dir.path().join("fs.img");
    let f = std::fs::File::create(&image).ok()?;
    f.set_len(u64::from(size_mib) << 20).ok()?;
    let mkfs = Command::new("mkfs.ext4").args(["-q", "-F", "-m", "0"]).arg(&image).output().ok()?;
    if !mkfs.status.success() {
        println!("SKIP ext4: mkfs.ext4 failed: {}", String::from_utf8_lossy(&mkfs.stderr));
        return None;
    }
    let dir = tempfile::tempdir().ok()?;
    let out = Command::new("mount").args(["-o", "loop"]).arg(&image).arg(dir.path()).output().ok()?;
    if !out.status.success() {
        println!("SKIP ext4: loop mount failed: {}", String::from_utf8_lossy(&out.stderr));
        return None;
    }
    Some(Mount { dir, _image: Some(image_dir) })
}

/// Fills the filesystem until the log hits ENOSPC, then checks the promises.
fn exercise(root: PathBuf, mode: IoMode) {
    run(move || async move {
        let filler = root.join("filler");
        let part = root.join("p0");
        let mut cfg = config(mode, FsyncPolicy::Always);
        cfg.segment_bytes = 1 << 20;
        let log = PartitionLog::open(&part, cfg.clone()).await.unwrap();
        // Take most of the space with a filler so the log hits the wall fast.
        let free = free_bytes(&root);
        std::fs::write(&filler, vec![1u8; (free.saturating_sub(3 << 20)) as usize]).unwrap();
        let mut acked = Vec::new();
        let err = loop {
            match log.append(batches(&[batch(4, 7, 16_000, acked.len() as u8)])).await {
                Ok(info) => acked.push((info.base_offset, 4, acked.len() as u8)),
                Err(e) => break e,
            }
            assert!(acked.len() < 10_000, "never ran out of space");
        };
        assert!(matches!(err, AppendError::StorageFull { .. }), "{mode}: {err:?}");
        assert_eq!(err.code(), ErrorCode::StorageFull);
        assert!(!acked.is_empty());
        // Still readable, nothing damaged, log end unchanged by the failure.
        assert_eq!(log.log_end_offset(), acked.last().unwrap().0 + 4);
        assert_eq!(read_all(&log, 0, 1 << 20).await, acked, "{mode}");
        // Reopen while the disk is full: recovery needs no free space.
        drop(log);
        let log = PartitionLog::open(&part, cfg.clone()).await.expect("open on a full disk");
        assert_eq!(read_all(&log, 0, 1 << 20).await, acked);
        // Free space: appends work again.
        std::fs::remove_file(&filler).unwrap();
        let info = log.append(batches(&[batch(1, 8, 100, 99)])).await.expect("append after space freed");
        assert_eq!(info.base_offset, acked.last().unwrap().0 + 4);
        acked.push((info.base_offset, 1, 99));
        log.close().await.unwrap();
        let log = PartitionLog::open(&part, cfg).await.unwrap();
        assert_eq!(read_all(&log, 0, 1 << 20).await, acked);
        log.close().await.unwrap();
    });
}

fn free_bytes(dir: &Path) -> u64 {
    let out = Command::new("df").args(["-B1", "--output=avail"]).arg(dir).output().unwrap();
    String::from_utf8_lossy(&out.stdout).lines().nth(1).unwrap().trim().parse().unwrap()
}

#[test]
fn enospc_on_tmpfs_both_modes() {
    for mode in [IoMode::Buffered, IoMode::Direct] {
        let Some(m) = mount_tmpfs("8m") else { return };
        exercise(m.dir.path().to_owned(), mode);
    }
}

#[test]
fn enospc_on_loop_ext4_direct() {
    let Some(m) = mount_ext4(32) else { return };
    exercise(m.dir.path().to_owned(), IoMode::Direct);
}

#[test]
fn min_free_guard_refuses_before_the_device_is_full() {
    let Some(m) = mount_tmpfs("8m") else { return };
    let root = m.dir.path().to_owned();
    run(move || async move {
        let mut cfg = config(IoMode::Buffered, FsyncPolicy::Never);
        cfg.min_free_bytes = 6 << 20;
        let log = PartitionLog::open(&root.join("p"), cfg).await.unwrap();
        let mut n = 0;
        let err = loop {
            match log.append(batches(&[batch(1, 1, 60_000, 1)])).await {
                Ok(_) => n += 1,
                Err(e) => break e,
            }
        };
        assert_eq!(err.code(), ErrorCode::StorageFull);
        assert!(n > 0 && n < 60, "{n} appends before the guard");
        assert!(free_bytes(&root) >= 5 << 20, "guard kept space free");
    });
}
