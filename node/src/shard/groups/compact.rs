//! The offsets cleaner: deletes what the coordinator's snapshots made redundant in the
//! `__consumer_offsets` partitions this shard holds (`strand_core::group` `compact.rs`
//! says when a snapshot is written and why it is safe).
//!
//! Every housekeeping pass scans each held offsets partition from where the last pass
//! stopped, batch by batch, up to the partition's readable end (a chain replica: its
//! commit point, so nothing that could still be truncated is acted on), and remembers
//! the latest snapshot marker and where its records end. Once the scan has read past
//! those records (so they are whole in the log, below the readable end), the log is flushed (the snapshot must be durable before anything it
//! replaces goes) and the closed segments ending at or below the marker are deleted. A
//! chain replica does this on its own, head or not, from the same bytes: every replica
//! of the offsets topic stays bounded, and a node that becomes head replays little.
//!
//! Replay at start then reads at most one partly stale segment (the offsets topic's
//! segments are capped at `OFFSETS_SEGMENT_BYTES`), the snapshot and what followed it.

use std::rc::Rc;
use std::sync::atomic::Ordering::Relaxed;

use strand_core::group::{OffsetsRecord, SNAPSHOT_MARKER_VERSION};
use strand_wire::batch::{BatchIter, Compression};
use tracing::{debug, info, warn};

use crate::groups::{OffsetsScan, OFFSETS_TOPIC};
use crate::partition::Partition;
use crate::shard::Shard;

/// Bytes read per step of a scan.
const SCAN_READ_BYTES: u32 = 1 << 20;

impl Shard {
    /// One cleaner pass over every offsets partition this shard holds.
    pub(crate) async fn clean_offsets_logs(&self) {
        // Looked up by id: a pass costs the offsets topic's partitions, not every partition
        // the shard holds.
        let parts: Vec<Rc<Partition>> = {
            let held = self.partitions.borrow();
            let topic = OFFSETS_TOPIC.to_string();
            (0..self.groups.offsets_partitions.get()).filter_map(|p| held.get(&(topic.clone(), p)).cloned()).collect()
        };
        for part in parts {
            if let Err(e) = self.clean_offsets_log(&part).await {
                warn!(shard = self.id.0, partition = part.partition(), error = %e, "offsets cleaner pass failed");
            }
        }
    }

    async fn clean_offsets_log(&self, part: &Partition) -> Result<(), String> {
        let partition = part.partition();
        let log = part.log();
        let mut scan = self.groups.scans.borrow().get(&partition).copied().unwrap_or_default();
        let start = log.log_start_offset();
        if scan.cursor < start {
            // First pass, or the log was reset or truncated below what was scanned.
            scan = OffsetsScan { cursor: start, ..OffsetsScan::default() };
        }
        if scan.cursor > log.log_end_offset() {
            scan = OffsetsScan { cursor: start, ..OffsetsScan::default() };
        }
        let limit = part.readable_end().0;
        let scanned = self.scan_for_markers(partition, part, limit, &mut scan).await;
        self.groups.scans.borrow_mut().insert(partition, scan);
        scanned?;
        let Some((marker, end)) = scan.marker else { return Ok(()) };
        // The scan itself read every record of the snapshot (the cursor never passes
        // `limit` nor a batch it did not read), so the snapshot is whole in the log.
        if end > scan.cursor || marker <= scan.cleaned.max(log.log_start_offset()) {
            return Ok(());
        }
        log.flush().await.map_err(|e| format!("flush before deleting below the snapshot: {e}"))?;
        let deleted = part.delete_below(marker).await.map_err(|e| e.to_string())?;
        if deleted > 0 {
            self.metrics.group_offsets_segments_deleted.fetch_add(u64::from(deleted), Relaxed);
            let log_start = log.log_start_offset();
            info!(shard = self.id.0, partition, segments = deleted, marker, log_start, "offsets log compacted");
        }
        if let Some(scan) = self.groups.scans.borrow_mut().get_mut(&partition) {
            scan.cleaned = scan.cleaned.max(marker);
        }
        Ok(())
    }

    /// Reads whole batches from `scan.cursor` up to `limit`, recording the latest
    /// snapshot marker; `scan.cursor` ends at the first batch not scanned.
    async fn scan_for_markers(
        &self,
        partition: u32,
        part: &Partition,
        limit: u64,
        scan: &mut OffsetsScan,
    ) -> Result<(), String> {
        let log = part.log();
        while scan.cursor < limit {
            let Some((bytes, _)) = super::load::read_batches(log, scan.cursor, SCAN_READ_BYTES).await? else {
                return Ok(());
            };
            for batch in BatchIter::new(&bytes) {
                let batch = batch.map_err(|e| format!("invalid batch at {}: {e}", scan.cursor))?;
                let header = batch.header();
                if header.next_offset() > limit {
                    return Ok(());
                }
                if header.compression() == Compression::None {
                    for record in batch.records() {
                        let record =
                            record.map_err(|e| format!("invalid record in batch {}: {e}", header.base_offset))?;
                        let Some(value) = record.value else { continue };
                        if value.first() != Some(&SNAPSHOT_MARKER_VERSION) {
                            continue;
                        }
                        if let Ok(OffsetsRecord::Snapshot(m)) = OffsetsRecord::decode(value) {
                            let Ok(delta) = u64::try_from(record.offset_delta) else { continue };
                            let at = header.base_offset + delta;
                            let end = at + 1 + u64::from(m.count);
                            debug!(shard = self.id.0, partition, at, end, "offsets snapshot marker");
                            scan.marker = Some((at, end));
                        }
                    }
                }
                scan.cursor = header.next_offset();
            }
        }
        Ok(())
    }
}
