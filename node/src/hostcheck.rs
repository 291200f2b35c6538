//! Host checks run once at start, before any executor exists: the subset of
//! `linux-setup/check` that decides whether this node can work at all (a `Fail`
//! refuses to start with the reason) or will be slow (a `Warn` is logged).
//!
//! The script is the operator's full report; these are the same rules for the
//! checks a node cannot run without, implemented natively so the binary needs no
//! script installed beside it. Keep the thresholds in sync with `linux-setup/check`.

use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use crate::config::NodeConfig;
use crate::log::error::is_out_of_space;
use crate::log::IoMode;

/// glommio needs io_uring features from this kernel on.
pub const KERNEL_VERSION_MIN: (u32, u32) = (5, 8);
/// Below this locked-memory limit glommio refuses to start an executor.
pub const MEMLOCK_BYTES_MIN: u64 = 512 * 1024;
/// What one shard's io_uring rings want locked for registered buffers.
pub const MEMLOCK_BYTES_PER_SHARD: u64 = 3 * 10 * 1024 * 1024;
/// Open-files limit below which many connections or partitions will fail.
pub const NOFILE_MIN_RECOMMENDED: u64 = 65_536;
const CAP_IPC_LOCK: u32 = 14;
const DIRECT_PROBE_FILE: &str = ".strand-direct-probe";
const DIRECT_BLOCK: usize = 4096;

/// How bad a finding is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    Pass,
    Warn,
    Fail,
}

/// One check's verdict.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub severity: Severity,
    pub name: &'static str,
    pub detail: String,
}

fn finding(severity: Severity, name: &'static str, detail: impl Into<String>) -> Finding {
    Finding { severity, name, detail: detail.into() }
}

/// Runs every check for `config`; creates the data directory if it is missing.
pub fn run(config: &NodeConfig) -> Vec<Finding> {
    let mut out = vec![check_kernel(), check_io_uring_disabled()];
    out.push(check_memlock(u64::from(config.shards)));
    out.push(check_nofile(u64::from(config.limits.connections_max)));
    out.push(check_data_dir(&config.data_dir, config.log.io_mode));
    out.push(check_min_free(&config.data_dir, config.log.min_free_bytes));
    out
}

/// `min_free_bytes` must leave room to write: a guard larger than the whole volume (or than
/// what is free at start) refuses every append with STORAGE_FULL.
fn check_min_free(dir: &Path, min_free_bytes: u64) -> Finding {
    let Some((total, free)) = volume_bytes(dir) else {
        return finding(Severity::Warn, "min_free_bytes", format!("statvfs of {} failed", dir.display()));
    };
    let detail = |what: &str, n: u64| {
        format!(
            "min_free_bytes={min_free_bytes} exceeds the {what} ({n} bytes) of {}: every append will be refused \
             with STORAGE_FULL; lower min_free_bytes or free space",
            dir.display()
        )
    };
    if min_free_bytes > total {
        finding(Severity::Warn, "min_free_bytes", detail("volume size", total))
    } else if min_free_bytes > free {
        finding(Severity::Warn, "min_free_bytes", detail("free space", free))
    } else {
        finding(Severity::Pass, "min_free_bytes", format!("{min_free_bytes} of {free} free bytes"))
    }
}

/// Size and space available to unprivileged writers of the filesystem holding `dir`.
pub(crate) fn volume_bytes(dir: &Path) -> Option<(u64, u64)> {
    use std::os::unix::ffi::OsStrExt;
    let c_path = std::ffi::CString::new(dir.as_os_str().as_bytes()).ok()?;
    let mut st = std::mem::MaybeUninit::<libc::statvfs>::uninit();
    // SAFETY: `c_path` is NUL-terminated and `st` points to writable memory of the right
    // type; statvfs fills it completely when it returns 0.
    if unsafe { libc::statvfs(c_path.as_ptr(), st.as_mut_ptr()) } != 0 {
        return None;
    }
    // SAFETY: statvfs returned 0, so the struct was initialised.
    let st = unsafe { st.assume_init() };
    Some((st.f_blocks.saturating_mul(st.f_frsize), st.f_bavail.saturating_mul(st.f_frsize)))
}

/// Parses `major.minor` from a kernel release string such as `6.18.44-fc`.
pub fn parse_kernel_release(release: &str) -> Option<(u32, u32)> {
    let mut parts = release.split(|c: char| !c.is_ascii_digit());
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next()?.parse().ok()?;
    Some((major, minor))
}

fn check_kernel() -> Finding {
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    match parse_kernel_release(release.trim()) {
        Some(v) if v >= KERNEL_VERSION_MIN => finding(Severity::Pass, "kernel", release.trim().to_string()),
        Some(_) => finding(
            Severity::Fail,
            "kernel",
            format!("kernel {} is older than {}.{}: glommio needs newer io_uring", release.trim(), 5, 8),
        ),
        None => finding(Severity::Warn, "kernel", format!("cannot parse kernel release {:?}", release.trim())),
    }
}

fn check_io_uring_disabled() -> Finding {
    match std::fs::read_to_string("/proc/sys/kernel/io_uring_disabled").map(|s| s.trim().to_string()) {
        Ok(v) if v == "2" => {
            finding(Severity::Fail, "io_uring", "kernel.io_uring_disabled = 2: io_uring is off; set it to 0")
        }
        Ok(v) if v == "1" => finding(
            Severity::Warn,
            "io_uring",
            "kernel.io_uring_disabled = 1: only privileged users or io_uring_group may use io_uring",
        ),
        _ => finding(Severity::Pass, "io_uring", "enabled"),
    }
}

/// Whether the effective capability set holds `cap` (from `/proc/self/status`).
fn has_capability(cap: u32) -> bool {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
        .is_some_and(|bits| bits & (1 << cap) != 0)
}

fn rlimit(resource: libc::__rlimit_resource_t) -> Option<u64> {
    let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit writes into the struct we pass and reads nothing else.
    let rc = unsafe { libc::getrlimit(resource, &mut limit) };
    (rc == 0).then_some(limit.rlim_cur)
}

fn check_memlock(shards: u64) -> Finding {
    let Some(limit) = rlimit(libc::RLIMIT_MEMLOCK) else {
        return finding(Severity::Warn, "memlock", "getrlimit(RLIMIT_MEMLOCK) failed");
    };
    let cap = has_capability(CAP_IPC_LOCK);
    let wanted = shards * MEMLOCK_BYTES_PER_SHARD;
    let shown = if limit == libc::RLIM_INFINITY { "unlimited".to_string() } else { format!("{} KiB", limit / 1024) };
    if cap || limit == libc::RLIM_INFINITY || limit >= wanted {
        finding(Severity::Pass, "memlock", format!("{shown}, CAP_IPC_LOCK={cap}"))
    } else if limit < MEMLOCK_BYTES_MIN {
        finding(
            Severity::Fail,
            "memlock",
            format!("RLIMIT_MEMLOCK {shown} < 512 KiB and no CAP_IPC_LOCK: glommio cannot start; raise LimitMEMLOCK"),
        )
    } else {
        finding(
            Severity::Warn,
            "memlock",
            format!(
                "RLIMIT_MEMLOCK {shown} < {} MiB for {shards} shards and no CAP_IPC_LOCK: \
                 glommio silently skips registered buffers (slower IO)",
                wanted >> 20
            ),
        )
    }
}

fn check_nofile(connections_max: u64) -> Finding {
    match rlimit(libc::RLIMIT_NOFILE) {
        Some(n) if n >= NOFILE_MIN_RECOMMENDED || n >= connections_max + 1024 => {
            finding(Severity::Pass, "nofile", n.to_string())
        }
        Some(n) => finding(
            Severity::Warn,
            "nofile",
            format!(
                "open-files limit {n} is below {NOFILE_MIN_RECOMMENDED}: connections or segments may fail with EMFILE"
            ),
        ),
        None => finding(Severity::Warn, "nofile", "getrlimit(RLIMIT_NOFILE) failed"),
    }
}

fn check_data_dir(dir: &Path, io_mode: IoMode) -> Finding {
    if let Err(e) = std::fs::create_dir_all(dir) {
        return finding(Severity::Fail, "data_dir", format!("cannot create {}: {e}", dir.display()));
    }
    let probe = dir.join(DIRECT_PROBE_FILE);
    let result = match io_mode {
        IoMode::Direct => write_probe(&probe, libc::O_DIRECT),
        IoMode::Buffered => write_probe(&probe, 0),
    };
    let _ = std::fs::remove_file(&probe);
    match (result, io_mode) {
        (Ok(()), _) => finding(Severity::Pass, "data_dir", format!("{} writable ({io_mode})", dir.display())),
        // A full disk must never keep a node from starting: it serves reads and answers
        // appends with STORAGE_FULL until space is freed (DESIGN §4).
        (Err(e), _) if is_out_of_space(&e) => finding(
            Severity::Warn,
            "data_dir",
            format!("{} is full ({e}): reads are served, appends refused until space is freed", dir.display()),
        ),
        (Err(e), IoMode::Direct) => finding(
            Severity::Fail,
            "data_dir",
            format!(
                "{} does not take O_DIRECT writes ({e}); use a filesystem that does (XFS, ext4) \
                 or --io-mode buffered",
                dir.display()
            ),
        ),
        (Err(e), IoMode::Buffered) => {
            finding(Severity::Fail, "data_dir", format!("{} is not writable: {e}", dir.display()))
        }
    }
}

/// Writes one aligned block to `path` opened with `extra_flags`.
fn write_probe(path: &Path, extra_flags: i32) -> std::io::Result<()> {
    let mut file = OpenOptions::new().write(true).create(true).truncate(true).custom_flags(extra_flags).open(path)?;
    // An aligned block out of a larger buffer: O_DIRECT wants the address aligned too.
    let buf = vec![0u8; 2 * DIRECT_BLOCK];
    let start = buf.as_ptr().align_offset(DIRECT_BLOCK);
    file.write_all(&buf[start..start + DIRECT_BLOCK])?;
    file.sync_data()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_release_parsing() {
        assert_eq!(parse_kernel_release("6.18.44-fc-v782"), Some((6, 18)));
        assert_eq!(parse_kernel_release("5.8.0"), Some((5, 8)));
        assert_eq!(parse_kernel_release("garbage"), None);
        assert!(parse_kernel_release("5.4.0").unwrap() < KERNEL_VERSION_MIN);
    }

    #[test]
    fn data_dir_checks_write_for_real() {
        let dir = tempfile::tempdir().unwrap();
        let sub = dir.path().join("new/data");
        let f = check_data_dir(&sub, IoMode::Buffered);
        assert_eq!(f.severity, Severity::Pass, "{f:?}");
        assert!(sub.is_dir());
        assert!(!sub.join(DIRECT_PROBE_FILE).exists(), "probe file left behind");
        // A path under a regular file can never be a data dir.
        let file = dir.path().join("plain");
        std::fs::write(&file, b"x").unwrap();
        assert_eq!(check_data_dir(&file.join("d"), IoMode::Buffered).severity, Severity::Fail);
    }

    #[test]
    fn out_of_space_is_a_warning_not_a_failure() {
        assert!(is_out_of_space(&std::io::Error::from_raw_os_error(libc::ENOSPC)));
        assert!(is_out_of_space(&std::io::Error::from_raw_os_error(libc::EDQUOT)));
        assert!(!is_out_of_space(&std::io::Error::from_raw_os_error(libc::EACCES)));
    }
}
