//! Retention: deletes whole closed segments, oldest first, beyond `retention_bytes` or
//! `retention_ms`. The active segment is never deleted, nor one still being closed, nor a
//! segment reaching `limit` (a chain replica's served-reads offset: uncommitted data is
//! never deleted). In-flight reads keep their `Rc<SegmentFile>` and so their fds; the
//! names are unlinked at once.

use super::{Inner, LogError};
use strand_core::recovery::{segment_file_name, SegmentFileKind};

impl Inner {
    pub(super) async fn apply_retention(&self, now_ms: i64, limit: u64) -> Result<u32, LogError> {
        // Closes first, without the write lock (appends go on): a segment still being
        // closed is not deleted, and right after a roll the one before usually is.
        self.settle_closes().await;
        let _permit = self.lock().await?;
        let victims = self.pick_victims(now_ms, limit);
        for base in &victims {
            for kind in [SegmentFileKind::Log, SegmentFileKind::Index, SegmentFileKind::TimeIndex] {
                let path = self.dir.join(segment_file_name(*base, kind));
                if let Err(e) = glommio::io::remove(&path).await {
                    let e = super::file::os_error(e);
                    if e.kind() != std::io::ErrorKind::NotFound {
                        return Err(e.into());
                    }
                }
            }
        }
        if !victims.is_empty() {
            super::file::sync_dir(&self.dir).await?;
            tracing::info!(dir = %self.dir.display(), segments = ?victims, "retention deleted segments");
        }
        Ok(victims.len() as u32)
    }

    /// Removes the segments to delete from the state (oldest first, stopping at the first
    /// one that must stay) and returns their base offsets.
    fn pick_victims(&self, now_ms: i64, limit: u64) -> Vec<u64> {
        let mut st = self.state.borrow_mut();
        let mut total: u64 = st.segments.values().map(|s| s.size).sum();
        let closed: Vec<(u64, u64, Option<i64>, u64)> = {
            let n = st.segments.len().saturating_sub(1);
            st.segments.values().take(n).map(|s| (s.base, s.size, s.max_timestamp(), s.next_offset)).collect()
        };
        let limits = self.limits.get();
        let mut victims = Vec::new();
        for (base, size, max_ts, end) in closed {
            // A segment still being closed is not durable yet; neither is anything after it.
            if end > limit || st.closing.iter().any(|c| c.base == base) {
                break;
            }
            let by_bytes = limits.retention_bytes.is_some_and(|limit| total.saturating_sub(size) >= limit);
            let by_time =
                limits.retention_ms.is_some_and(|ms| max_ts.is_none_or(|ts| ts < now_ms.saturating_sub(ms as i64)));
            if !(by_bytes || by_time) {
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
