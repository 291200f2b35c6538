//! A loop-mounted ext4 image that can lose power: [`LoopFs::power_cut`] shuts the filesystem
//! down without flushing its journal (`xfs_io -x -c shutdown`, the `EXT4_IOC_SHUTDOWN` ioctl
//! with `NOLOGFLUSH`, as fstests does), so everything ext4 had not yet written to the block
//! device — dirty page cache, uncommitted metadata — is gone, as after a power loss with a
//! disk that honours flushes. [`LoopFs::remount`] mounts the image again (ext4 replays its
//! journal), and the node restarts on what survived.
//!
//! What the model keeps: every block the filesystem submitted to the loop device, including
//! writes not yet flushed (the backing file is on the host's page cache). A real disk may
//! also lose writes it acknowledged without a flush; this model is the optimistic one, so a
//! loss found here is a real bug, and `fsync=never` must still show loss (shown by a test).
//!
//! Needs root, `losetup`, `mkfs.ext4`, `mount` and `xfs_io` (Debian `mount`, `e2fsprogs`,
//! `xfsprogs`); [`LoopFs::create`] says which is missing.

use std::path::{Path, PathBuf};
use std::process::Command;

/// A loop-mounted ext4 image; unmounted and detached on drop.
pub struct LoopFs {
    device: String,
    mount: PathBuf,
    mounted: bool,
}

/// Why a loop filesystem could not be made (the caller decides whether that skips a test).
#[derive(Debug, thiserror::Error)]
#[error("cannot make a loop-mounted ext4: {0}")]
pub struct LoopFsError(String);

impl LoopFs {
    /// Makes a sparse `size_bytes` image in `dir`, attaches it to a loop device, formats it
    /// ext4 and mounts it at `dir/mnt`.
    pub fn create(dir: &Path, size_bytes: u64) -> Result<LoopFs, LoopFsError> {
        let uid = run("id", &["-u"])?;
        if uid.trim() != "0" {
            return Err(LoopFsError(format!("needs root (uid {})", uid.trim())));
        }
        for tool in ["losetup", "mkfs.ext4", "mount", "umount", "xfs_io"] {
            if run("sh", &["-c", &format!("command -v {tool}")]).is_err() {
                return Err(LoopFsError(format!("{tool} is not installed")));
            }
        }
        let image = dir.join("fs.img");
        let file = std::fs::File::create(&image).map_err(|e| LoopFsError(format!("{image:?}: {e}")))?;
        file.set_len(size_bytes).map_err(|e| LoopFsError(format!("{image:?}: {e}")))?;
        let image = image.to_str().ok_or_else(|| LoopFsError(format!("{image:?} is not UTF-8")))?;
        let device = run("losetup", &["--find", "--show", image])?.trim().to_string();
        let mut fs = LoopFs { device, mount: dir.join("mnt"), mounted: false };
        run("mkfs.ext4", &["-q", "-F", &fs.device])?;
        std::fs::create_dir_all(&fs.mount).map_err(|e| LoopFsError(format!("{:?}: {e}", fs.mount)))?;
        fs.mount()?;
        Ok(fs)
    }

    /// Where the filesystem is mounted.
    pub fn path(&self) -> &Path {
        &self.mount
    }

    /// Makes everything written so far durable (`syncfs`), e.g. a topic's directories before
    /// a test that is about records.
    pub fn sync(&self) -> Result<(), LoopFsError> {
        run("sync", &["-f", self.mount_str()?]).map(drop)
    }

    /// Power loss: the filesystem stops at once, without writing its journal or dirty pages;
    /// every later write and sync on it fails with EIO.
    pub fn power_cut(&self) -> Result<(), LoopFsError> {
        run("xfs_io", &["-x", "-c", "shutdown", self.mount_str()?]).map(drop)
    }

    /// Unmounts (every process using the filesystem must be gone) and mounts the image again:
    /// the power is back and ext4 recovers from its journal.
    pub fn remount(&mut self) -> Result<(), LoopFsError> {
        run("umount", &[self.mount_str()?])?;
        self.mounted = false;
        self.mount()
    }

    fn mount(&mut self) -> Result<(), LoopFsError> {
        run("mount", &[&self.device, self.mount_str()?])?;
        self.mounted = true;
        Ok(())
    }

    fn mount_str(&self) -> Result<&str, LoopFsError> {
        self.mount.to_str().ok_or_else(|| LoopFsError(format!("{:?} is not UTF-8", self.mount)))
    }
}

impl Drop for LoopFs {
    fn drop(&mut self) {
        if self.mounted {
            if let Ok(mount) = self.mount_str() {
                let _ = run("umount", &["-l", mount]);
            }
        }
        let _ = run("losetup", &["-d", &self.device]);
    }
}

fn run(program: &str, args: &[&str]) -> Result<String, LoopFsError> {
    let out = Command::new(program).args(args).output().map_err(|e| LoopFsError(format!("{program}: {e}")))?;
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        return Err(LoopFsError(format!("{program} {args:?}: {} {}", out.status, stderr.trim())));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}
