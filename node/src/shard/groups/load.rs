//! Start and background work of a shard's coordinator: replaying the offsets
//! partitions the shard owns (before it serves), the timer task that drives
//! `tick` from `poll_timeout`, and the group snapshot published for the admin thread.
//!
//! Replay reads each owned `__consumer_offsets` partition from its log start to its
//! log end and feeds every record's value through `load_offset_record` in log order
//! (later commits win). A record that does not decode, or that belongs to a group
//! placed on another partition, is skipped with a warning: it cannot come from a
//! coordinator (users cannot produce to `__` topics), and refusing to start over it
//! would turn one bad record into an outage.

use std::rc::Rc;
use std::time::Instant;

use bytes::BytesMut;
use strand_core::group::OffsetsRecord;
use strand_wire::batch::{BatchIter, Compression};
use tracing::{info, warn};

use crate::groups::{coordinator_of, OFFSETS_TOPIC, TIMER_IDLE};
use crate::log::PartitionLog;
use crate::metrics::{GroupGauge, GroupMemberGauge, GroupPartitionGauge};
use crate::shard::{Shard, ShardError};

/// Bytes read from an offsets partition per step of the replay.
const REPLAY_READ_BYTES: u32 = 1 << 20;

/// What the replay of one partition found.
#[derive(Debug, Default)]
pub(super) struct ReplayCount {
    pub(super) loaded: u64,
    pub(super) skipped: u64,
    /// Snapshot markers passed (see `compact.rs`).
    pub(super) markers: u64,
}

impl Shard {
    /// Replays every offsets partition this shard owns, then opens the coordinator.
    /// In cluster mode nothing is replayed here: the coordinator stays empty and serves
    /// no group until this node heads an offsets partition (`group_heads_loop`).
    pub async fn load_groups(&self) -> Result<(), ShardError> {
        let started = Instant::now();
        let mut total = ReplayCount::default();
        for partition in 0..self.groups.offsets_partitions() {
            if self.owner(OFFSETS_TOPIC, partition) != self.id || self.cluster().is_some() {
                continue;
            }
            let fail = |code| ShardError::Other {
                shard: self.id.0,
                reason: format!("replaying {OFFSETS_TOPIC}/{partition}: not open ({code:?})"),
            };
            let part = self.partition(OFFSETS_TOPIC, partition).map_err(fail)?;
            let count = self.replay_offsets_partition(partition, part.log()).await?;
            total.loaded += count.loaded;
            total.skipped += count.skipped;
        }
        self.groups.coordinator.borrow_mut().finish_loading();
        let groups = self.groups.coordinator.borrow().list_groups().len();
        info!(
            shard = self.id.0,
            records = total.loaded,
            skipped = total.skipped,
            groups,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "consumer offsets loaded"
        );
        Ok(())
    }

    /// Feeds every commit record of offsets partition `partition` (stored in `log`) to
    /// the coordinator, in log order.
    pub(super) async fn replay_offsets_partition(
        &self,
        partition: u32,
        log: &PartitionLog,
    ) -> Result<ReplayCount, ShardError> {
        let fail = |reason: String| ShardError::Other {
            shard: self.id.0,
            reason: format!("replaying {OFFSETS_TOPIC}/{partition}: {reason}"),
        };
        let mut count = ReplayCount::default();
        let mut offset = log.log_start_offset();
        let end = log.log_end_offset();
        while offset < end {
            let Some((bytes, next_offset)) = read_batches(log, offset, REPLAY_READ_BYTES).await.map_err(fail)? else {
                break;
            };
            for batch in BatchIter::new(&bytes) {
                let batch = batch.map_err(|e| fail(format!("invalid batch: {e}")))?;
                if batch.header().compression() != Compression::None {
                    warn!(shard = self.id.0, partition, "compressed batch in the offsets topic skipped");
                    count.skipped += u64::from(batch.header().record_count);
                    continue;
                }
                for record in batch.records() {
                    let record = record.map_err(|e| fail(format!("invalid record: {e}")))?;
                    let Some(value) = record.value else {
                        // The node writes no tombstone here; a null value carries no commit.
                        warn!(shard = self.id.0, partition, "commit record with a null value skipped");
                        count.skipped += 1;
                        continue;
                    };
                    self.replay_record(partition, value, &mut count);
                }
            }
            offset = next_offset;
        }
        Ok(count)
    }

    fn replay_record(&self, partition: u32, value: &[u8], count: &mut ReplayCount) {
        match OffsetsRecord::decode(value) {
            Ok(OffsetsRecord::Snapshot(_)) => {
                self.groups.coordinator.borrow_mut().load_snapshot_marker(partition);
                count.markers += 1;
            }
            Ok(OffsetsRecord::Commit(record)) => {
                let (home, _) = coordinator_of(&record.group_id, self.groups.offsets_partitions(), self.shard_count());
                if home == partition {
                    self.groups.coordinator.borrow_mut().load_offset_record(record);
                    count.loaded += 1;
                } else {
                    warn!(shard = self.id.0, partition, group = %record.group_id, "commit record on a foreign offsets partition skipped");
                    count.skipped += 1;
                }
            }
            Err(e) => {
                warn!(shard = self.id.0, partition, error = %e, "undecodable commit record skipped");
                count.skipped += 1;
            }
        }
    }

    /// Drives the coordinator's timers (session expiry, rebalance deadlines) and
    /// refreshes the published group snapshot, until shutdown.
    pub async fn group_timer(self: Rc<Self>) {
        let mut published = Instant::now() - TIMER_IDLE;
        while !self.is_stopping() {
            let changed = self.groups.changed.listen();
            let stop = self.stop.listen();
            let now = self.groups.now_ms();
            if self.groups.coordinator.borrow().poll_timeout().is_some_and(|d| d <= now) {
                self.groups.coordinator.borrow_mut().tick(now);
            }
            // Not `drain_group_actions`: its wake-up of this task would spin the loop.
            self.run_group_actions();
            if published.elapsed() >= TIMER_IDLE {
                published = Instant::now();
                self.publish_groups();
            }
            let due = self.groups.coordinator.borrow().poll_timeout();
            let idle_ms = TIMER_IDLE.as_millis() as u64;
            // At least 1 ms: a deadline `tick` did not clear must not spin the shard.
            let wait_ms = due.map_or(idle_ms, |d| d.saturating_sub(now).clamp(1, idle_ms));
            let wake = futures_lite::future::or(changed, stop);
            futures_lite::future::or(wake, glommio::timer::sleep(std::time::Duration::from_millis(wait_ms))).await;
        }
    }

    /// Publishes every group this shard coordinates for `/metrics` and `/v1/groups`.
    pub fn publish_groups(&self) {
        let summaries = self.groups.coordinator.borrow().list_groups();
        let mut gauges = Vec::with_capacity(summaries.len());
        for summary in summaries {
            let Some(view) = self.groups.coordinator.borrow().describe_group(&summary.group_id) else { continue };
            let partitions = self
                .group_partitions(&view)
                .into_iter()
                .map(|((topic, partition), committed)| GroupPartitionGauge { topic, partition, committed })
                .collect();
            let members = view
                .members
                .iter()
                .map(|m| GroupMemberGauge {
                    member_id: m.member_id.clone(),
                    client_id: m.client_id.clone(),
                    assignment: crate::groups::member_partitions(&view, m)
                        .into_iter()
                        .map(|tp| (tp.topic, tp.partition))
                        .collect(),
                })
                .collect();
            let assignor = crate::groups::assignment_name(&view);
            gauges.push(GroupGauge {
                group_id: view.group_id,
                state: view.state.name().to_string(),
                generation: view.generation,
                assignor,
                members,
                partitions,
            });
        }
        self.metrics.publish_groups(gauges);
    }
}

/// The whole batches `log` returns for a read at `offset` of up to `max_bytes`, as one
/// buffer, and the offset after them; `None` at the end of the log (or a read that made no
/// progress). Shared by the offsets replay and the offsets cleaner's scan.
pub(super) async fn read_batches(
    log: &PartitionLog,
    offset: u64,
    max_bytes: u32,
) -> Result<Option<(BytesMut, u64)>, String> {
    let read = log.read(offset, max_bytes).await.map_err(|e| e.to_string())?;
    if read.bytes_len == 0 || read.next_offset <= offset {
        return Ok(None);
    }
    let mut bytes = BytesMut::with_capacity(read.bytes_len as usize);
    for chunk in &read.chunks {
        bytes.extend_from_slice(&chunk.to_bytes().await.map_err(|e| e.to_string())?);
    }
    Ok(Some((bytes, read.next_offset)))
}
