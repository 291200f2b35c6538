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

use std::io;

use crate::log::AppendError;

/// `EX_IOERR` (sysexits.h): the node stopped because its storage failed.
pub const FATAL_STORAGE_EXIT: i32 = 74;

/// OS errors after which a log's on-disk state is unknown.
const FATAL_ERRNOS: [i32; 5] = [libc::EIO, libc::EROFS, libc::ENXIO, libc::ENODEV, libc::EUCLEAN];

/// The errno of `e` if it is one after which the node must stop. glommio turns some
/// errors into messages (`"… (os error 5)"`) without the raw code, and a poisoned log
/// repeats the fdatasync error in its reason, so the text is read when the code is gone.
pub fn fatal_errno(e: &io::Error) -> Option<i32> {
    let errno = e.raw_os_error().or_else(|| os_error_in_text(&e.to_string()))?;
    FATAL_ERRNOS.contains(&errno).then_some(errno)
}

/// Whether a failed append means the node must stop (see the module docs).
pub fn append_error_is_fatal(e: &AppendError) -> bool {
    match e {
        AppendError::Io(io) => fatal_errno(io).is_some(),
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

/// The `N` of the last `"os error N"` in `text`.
fn os_error_in_text(text: &str) -> Option<i32> {
    let at = text.rfind("os error ")? + "os error ".len();
    let digits: String = text[at..].chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
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
        // glommio's EnhancedIoError keeps only the kind and the text.
        let enhanced = io::Error::other("fdatasync failed for \"/d/0.log\": Input/output error (os error 5)");
        check(AppendError::Io(enhanced), true);
        // A poisoned log repeats the fdatasync error in its reason.
        let poisoned = io::Error::other(format!("fdatasync of \"/d/0.log\" failed: {}", os(libc::EIO)));
        check(AppendError::Io(poisoned), true);
        // Operating errors and shutdown races keep the node running.
        check(AppendError::Io(os(libc::ENOSPC)), false);
        check(AppendError::Io(io::Error::other("log is closed")), false);
        check(AppendError::Io(io::Error::other("append discarded")), false);
        check(AppendError::StorageFull { reason: os(libc::ENOSPC).to_string() }, false);
        check(AppendError::TooLarge { len_bytes: 2, limit_bytes: 1 }, false);
        check(AppendError::Corrupt(BatchError::Truncated { needed: 61, available: 0 }), false);
    }

    #[test]
    fn reads_the_last_os_error_in_a_message() {
        assert_eq!(os_error_in_text("x (os error 5)"), Some(5));
        assert_eq!(os_error_in_text("a (os error 28): b (os error 5)"), Some(5));
        assert_eq!(os_error_in_text("os error "), None);
        assert_eq!(os_error_in_text("no code"), None);
    }
}
