//! Unrecoverable storage failures: which append errors stop the node, and stopping it.
//!
//! STYLE "errors, three classes": a failed write or fdatasync of a partition log leaves the
//! page cache / device state unknown (Linux may drop the dirty pages and report the error only
//! once), so the write is never retried and the shard is never left half-alive: the node logs
//! the partition and the error and exits at once with [`FATAL_STORAGE_EXIT`], without a
//! graceful flush (which would fsync again). Recovery at the next start re-validates the tail.
//!
//! Not fatal: a full disk (`ENOSPC`, `EDQUOT`, the `min_free_bytes` guard — `STORAGE_FULL` is an
//! operating error), refused batches, and a log closed under an append (topic deletion or
//! shutdown). Invariant: the classification looks only at the error, so it is unit-tested here.

use crate::log::AppendError;

/// `EX_IOERR` (sysexits.h): the node stopped because its storage failed.
pub const FATAL_STORAGE_EXIT: i32 = 74;

/// OS errors after which a log's on-disk state is unknown.
const FATAL_ERRNOS: [i32; 5] = [libc::EIO, libc::EROFS, libc::ENXIO, libc::ENODEV, libc::EUCLEAN];

/// Whether `errno` is one after which the node must stop.
pub fn errno_is_fatal(errno: i32) -> bool {
    FATAL_ERRNOS.contains(&errno)
}

/// Whether a failed append means the node must stop (see the module docs). Only the OS error
/// code counts, never the message: the log keeps the errno of glommio's errors and repeats
/// the one that poisoned it ([`crate::log::Failure`]).
pub fn append_error_is_fatal(e: &AppendError) -> bool {
    match e {
        AppendError::Io(_) | AppendError::Failed(_) => e.raw_os_error().is_some_and(errno_is_fatal),
        AppendError::Corrupt(_) | AppendError::TooLarge { .. } | AppendError::StorageFull { .. } => false,
    }
}

/// Logs why and exits the process at once (no graceful flush: that would fsync again).
pub fn stop_node(topic: &str, partition: u32, error: &dyn std::fmt::Display) -> ! {
    let reason = format!("partition {topic}/{partition}: storage failed: {error}");
    tracing::error!(topic, partition, %error, "stopping the node: {reason}");
    eprintln!("strand-node: fatal: {reason}; exiting with status {FATAL_STORAGE_EXIT}");
    std::process::exit(FATAL_STORAGE_EXIT)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::log::Failure;
    use std::io;
    use strand_wire::batch::BatchError;

    fn check(e: AppendError, fatal: bool) {
        assert_eq!(append_error_is_fatal(&e), fatal, "{e}");
    }

    #[test]
    fn classification() {
        let os = io::Error::from_raw_os_error;
        check(AppendError::Io(os(libc::EIO)), true);
        check(AppendError::Io(os(libc::EROFS)), true);
        check(AppendError::Io(os(libc::EUCLEAN)), true);
        // A poisoned log, and appends discarded by a failed write, repeat the errno.
        let fdatasync = |errno| Failure::new(format!("fdatasync of \"/d/0.log\" failed: {}", os(errno)), Some(errno));
        check(AppendError::Failed(fdatasync(libc::EIO)), true);
        check(AppendError::Failed(fdatasync(libc::ENXIO)), true);
        check(AppendError::Failed(fdatasync(libc::EINTR)), false);
        // The text alone decides nothing: without the code the message is not read.
        check(AppendError::Io(io::Error::other("fdatasync failed: Input/output error (os error 5)")), false);
        check(AppendError::Failed(Failure::other("storage io error: Input/output error (os error 5)")), false);
        // Operating errors and shutdown races keep the node running.
        check(AppendError::Io(os(libc::ENOSPC)), false);
        check(AppendError::Failed(Failure::other("log is closed")), false);
        check(AppendError::Failed(Failure::other("append discarded")), false);
        check(AppendError::Failed(Failure::other("discarded by a truncation to 7")), false);
        check(AppendError::StorageFull { reason: os(libc::ENOSPC).to_string() }, false);
        check(AppendError::TooLarge { len_bytes: 2, limit_bytes: 1 }, false);
        check(AppendError::Corrupt(BatchError::Truncated { needed: 61, available: 0 }), false);
    }
}
