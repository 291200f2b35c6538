//! Retention (and deletion below a snapshot, `delete_below`): deletes whole closed segments, oldest first, beyond `retention_bytes` or
//! `retention_ms`. The active segment is never deleted, nor one still being closed, nor a
//! segment reaching `limit` (a chain replica's served-reads offset: uncommitted data is
//! never deleted). In-flight reads keep their `Rc<SegmentFile>` and so their fds; the
//! names are unlinked at once.

use super::segment;
use super::{Inner, LogError};

/// A closed segment `pick_victims` considers.
struct Victim {
    size: u64,
    max_ts: Option<i64>,
    /// Bytes of the log with this segment still in it.
    total: u64,
}

impl Inner {
    pub(super) async fn apply_retention(&self, now_ms: i64, limit: u64) -> Result<u32, LogError> {
        // Closes first, without the write lock (appends go on): a segment still being
        // closed is not deleted, and right after a roll the one before usually is.
        self.settle_closes().await;
        let _permit = self.lock().await?;
        let limits = self.limits.get();
        let victims = self.pick_victims(limit, |v| {
            let by_bytes = limits.retention_bytes.is_some_and(|limit| v.total.saturating_sub(v.size) >= limit);
            let by_time =
                limits.retention_ms.is_some_and(|ms| v.max_ts.is_none_or(|ts| ts < now_ms.saturating_sub(ms as i64)));
            by_bytes || by_time
        });
        self.remove_segments(&victims, "retention deleted segments").await?;
        Ok(victims.len() as u32)
    }

    /// Deletes the closed segments that end at or below `offset` (and `limit`), oldest
    /// first: what a compaction made redundant (the offsets topic's snapshots).
    pub(super) async fn delete_below(&self, offset: u64, limit: u64) -> Result<u32, LogError> {
        self.settle_closes().await;
        let _permit = self.lock().await?;
        let victims = self.pick_victims(limit.min(offset), |_| true);
        self.remove_segments(&victims, "segments below a snapshot deleted").await?;
        Ok(victims.len() as u32)
    }

    /// Unlinks the files of the segments `victims` (already out of the state).
    async fn remove_segments(&self, victims: &[u64], what: &'static str) -> Result<(), LogError> {
        for &base in victims {
            segment::remove_segment_files(&self.storage, &self.dir, base, &segment::SEGMENT_FILES).await?;
        }
        if !victims.is_empty() {
            self.storage.sync_dir(&self.dir).await?;
            tracing::info!(dir = %self.dir.display(), segments = ?victims, "{what}");
        }
        Ok(())
    }

    /// Removes the segments to delete from the state (oldest first, stopping at the first
    /// one that must stay: one reaching past `limit`, one still being closed, the active
    /// one, or one `delete` declines) and returns their base offsets.
    fn pick_victims(&self, limit: u64, delete: impl Fn(&Victim) -> bool) -> Vec<u64> {
        let mut st = self.state.borrow_mut();
        let mut total: u64 = st.segments.values().map(|s| s.size).sum();
        let closed: Vec<(u64, u64, Option<i64>, u64)> = {
            let n = st.segments.len().saturating_sub(1);
            st.segments.values().take(n).map(|s| (s.base, s.size, s.max_timestamp(), s.next_offset)).collect()
        };
        let mut victims = Vec::new();
        for (base, size, max_ts, end) in closed {
            // A segment still being closed is not durable yet; neither is anything after it.
            if end > limit || st.closing.iter().any(|c| c.base == base) {
                break;
            }
            if !delete(&Victim { size, max_ts, total }) {
                break;
            }
            st.segments.remove(&base);
            total -= size;
            victims.push(base);
        }
        if let Some(first) = st.segments.keys().next().copied() {
            st.log_start = st.log_start.max(first);
        }
        victims
    }
}
