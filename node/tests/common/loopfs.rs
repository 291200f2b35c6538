//! A loop-mounted ext4 image that can be made to fail: [`LoopFs::shut_down`] issues
//! `EXT4_IOC_SHUTDOWN` (what `xfs_io -x -c shutdown` does) without flushing the journal, so
//! every later write and sync on it fails with EIO — a real storage failure under a
//! running node (device-mapper is not available on this VM).
//!
//! Needs root, `losetup`, `mkfs.ext4` and `mount`; [`LoopFs::create`] says what is missing
//! and the caller prints why it skips.

use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The exit status of a node that stopped because its storage failed (`crate::fatal`).
pub const FATAL_STORAGE_EXIT: i32 = 74;
/// `EXT4_IOC_SHUTDOWN` = `_IOR('X', 125, __u32)` (same number as XFS_IOC_GOINGDOWN).
const EXT4_IOC_SHUTDOWN: libc::c_ulong = 0x8004_587D;
/// Shut down without flushing the journal: every later write and fsync fails with EIO.
const EXT4_GOING_FLAGS_NOLOGFLUSH: u32 = 2;

/// A loop-mounted ext4 image; unmounted (lazily) and detached on drop.
pub struct LoopFs {
    device: String,
    pub mount: PathBuf,
}

impl LoopFs {
    /// A 1 GiB sparse image in `dir`, formatted ext4 and mounted at `dir/mnt`.
    pub fn create(dir: &Path) -> Result<LoopFs, String> {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            return Err("not root".into());
        }
        let image = dir.join("fs.img");
        let file = std::fs::File::create(&image).map_err(|e| e.to_string())?;
        file.set_len(1 << 30).map_err(|e| e.to_string())?;
        let image = image.to_str().ok_or("image path is not UTF-8")?;
        let device = run("losetup", &["--find", "--show", image])?;
        let fs = LoopFs { device: device.trim().to_string(), mount: dir.join("mnt") };
        run("mkfs.ext4", &["-q", "-F", &fs.device])?;
        std::fs::create_dir_all(&fs.mount).map_err(|e| e.to_string())?;
        run("mount", &[&fs.device, fs.mount.to_str().ok_or("mount path is not UTF-8")?])?;
        Ok(fs)
    }

    /// Makes the filesystem fail every further write and sync with EIO.
    pub fn shut_down(&self) {
        let dir = std::fs::File::open(&self.mount).unwrap();
        let flags = EXT4_GOING_FLAGS_NOLOGFLUSH;
        // SAFETY: the ioctl reads one u32 from a valid pointer; the fd is open for the call.
        let rc = unsafe { libc::ioctl(dir.as_raw_fd(), EXT4_IOC_SHUTDOWN, &flags as *const u32) };
        assert_eq!(rc, 0, "EXT4_IOC_SHUTDOWN: {}", std::io::Error::last_os_error());
    }
}

impl Drop for LoopFs {
    fn drop(&mut self) {
        // Lazy: a file of the failed node may still be open.
        let _ = run("umount", &["-l", self.mount.to_str().unwrap_or_default()]);
        let _ = run("losetup", &["-d", &self.device]);
    }
}

fn run(program: &str, args: &[&str]) -> Result<String, String> {
    let out = Command::new(program).args(args).output().map_err(|e| format!("{program}: {e}"))?;
    if !out.status.success() {
        return Err(format!("{program} {args:?}: {}", String::from_utf8_lossy(&out.stderr).trim()));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}
