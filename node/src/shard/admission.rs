//! Admission of topics before they are committed: the per-node caps (topics, partitions)
//! and the open-files budget derived from `RLIMIT_NOFILE`.
//!
//! Every open partition holds `FDS_PER_SEGMENT` descriptors per segment (the io_uring
//! handle and the plain fd used for sendfile), so a topic of `n` new partitions
//! costs at least `n * FDS_PER_SEGMENT`. A create is admitted only if the descriptors
//! open now, plus those of topics being created, plus its own cost, plus
//! `open_files_reserved` (connections, index and checkpoint writes, etcd) fit under the
//! soft `RLIMIT_NOFILE`. At start, the same budget decides which registered topics are
//! opened: one that does not fit is logged (with the numbers and the way out) and left
//! closed, instead of failing the node with EMFILE half-way through opening it.

use std::path::Path;

use crate::config::AdmissionLimits;

/// Descriptors one open segment holds.
pub const FDS_PER_SEGMENT: u64 = 2;
/// The process's descriptor situation at one moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FdBudget {
    /// Soft `RLIMIT_NOFILE`.
    pub limit: u64,
    /// Descriptors open now.
    pub open: u64,
    pub reserved: u64,
}

impl FdBudget {
    /// Measures the process now (`/proc/self/fd`, `getrlimit`). `None` if either is
    /// unavailable: admission then relies on the caps and on rollback of a failed open.
    pub fn measure(reserved: u64) -> Option<FdBudget> {
        let open = std::fs::read_dir("/proc/self/fd").ok()?.count() as u64;
        let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
        // SAFETY: `lim` is a valid, writable rlimit; getrlimit only writes it.
        let rc = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) };
        if rc != 0 {
            return None;
        }
        Some(FdBudget { limit: lim.rlim_cur, open, reserved })
    }

    /// Descriptors topics may still open.
    pub fn available(&self) -> u64 {
        self.limit.saturating_sub(self.reserved).saturating_sub(self.open)
    }
}

/// Descriptors opening the partition directories of `topic` will take: one segment per
/// partition for a new topic, the segment files found on disk for an existing one.
pub fn topic_fd_cost(data_dir: &Path, topic: &str, partitions: u32) -> u64 {
    let dir = data_dir.join("topics").join(topic);
    (0..partitions)
        .map(|p| {
            let logs = std::fs::read_dir(dir.join(p.to_string()))
                .map(|entries| {
                    entries.filter_map(Result::ok).filter(|e| e.file_name().to_string_lossy().ends_with(".log")).count()
                })
                .unwrap_or(0);
            logs.max(1) as u64 * FDS_PER_SEGMENT
        })
        .sum()
}

/// The registered topics this node can open within its open-files budget, internal topics
/// first. A topic that does not fit is logged with the numbers and the way out and left
/// closed (clients see `UNKNOWN_TOPIC` for it), so the node always starts and can delete it.
pub fn admit_at_start(
    topics: Vec<crate::topic::TopicConfig>,
    data_dir: &Path,
    limits: &AdmissionLimits,
) -> Vec<crate::topic::TopicConfig> {
    let Some(fds) = FdBudget::measure(limits.open_files_reserved) else { return topics };
    let mut left = fds.available();
    let (mut internal, user): (Vec<_>, Vec<_>) =
        topics.into_iter().partition(|t| crate::topic::is_internal_topic(&t.name));
    internal.extend(user);
    let mut admitted = Vec::with_capacity(internal.len());
    for topic in internal {
        let cost = topic_fd_cost(data_dir, &topic.name, topic.partitions);
        if cost <= left || crate::topic::is_internal_topic(&topic.name) {
            left = left.saturating_sub(cost);
            admitted.push(topic);
            continue;
        }
        tracing::error!(
            topic = %topic.name,
            partitions = topic.partitions,
            needed_open_files = cost,
            available_open_files = left,
            rlimit_nofile = fds.limit,
            open_files_reserved = fds.reserved,
            "topic {} NOT OPENED: its {} partitions need {cost} open files, {left} are left of RLIMIT_NOFILE={} \
             (open_files_reserved={}); it is not served until the node restarts with a higher `ulimit -n` \
             (its data is kept), or `strand topic delete {}` removes it",
            topic.name,
            topic.partitions,
            fds.limit,
            fds.reserved,
            topic.name
        );
    }
    admitted
}
