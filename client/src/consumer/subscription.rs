//! Group consumption for [`Consumer`]: `subscribe`, rebalances, commits and `close`.
//!
//! Rebalances are *eager* and run inside `poll` on the application's task: when the
//! heartbeat task raises the rejoin flag, `poll` commits the consumed positions (if
//! auto-commit is on), calls `on_revoked` with every owned partition, unassigns them
//! (dropping buffered records and in-flight fetches of them), joins and syncs, seeks
//! each newly assigned partition to its committed offset (or the reset policy) and
//! calls `on_assigned`.
//!
//! Invariants: at most one asynchronous commit is in flight, and a later commit is
//! sent only after it finished, so commits reach the coordinator in the order they
//! were made; a commit carries consumed positions only (records returned by `poll`),
//! never fetch positions; no record of a revoked partition is returned after
//! `on_revoked` (unassign drops them and the fetch epoch makes late results stale).

use std::sync::{Arc, Mutex, PoisonError};

use strand_wire::msg::CommittedOffset;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::{Consumer, OffsetReset, SeekTo};
use crate::error::{ClientError, Result};
use crate::group::{Core, GroupSettings, Membership, RebalanceListener, TopicPartition};

/// The group side of a subscribed consumer.
pub(super) struct GroupCtx {
    membership: Membership,
    /// Behind a mutex only so the consumer stays `Sync` (the listener need only be `Send`);
    /// it is locked from `poll` alone, never across an await.
    listener: Option<Mutex<Box<dyn RebalanceListener>>>,
    /// Something was consumed (or sought) since the last commit was sent.
    dirty: bool,
    auto_commit_next: Instant,
    commit_inflight: Option<JoinHandle<Result<()>>>,
}

/// Waits until the heartbeat task asks for a rejoin; forever without a group.
pub(super) async fn wait_wake(core: Option<&Core>) {
    match core {
        Some(core) => core.wake.notified().await,
        None => std::future::pending().await,
    }
}

impl Consumer {
    /// Joins consumer group `group_id` subscribed to `topics` and takes the partitions
    /// the node assigns to this member (see [`Consumer::subscribe_with`]).
    pub async fn subscribe(&mut self, group_id: &str, topics: &[&str]) -> Result<()> {
        self.subscribe_inner(group_id, topics, None).await
    }

    /// Joins consumer group `group_id` subscribed to `topics`, with `listener` told of
    /// every revoke and assignment. Waits until the group formed (the node parks the
    /// join until every member rejoined, at most `rebalance_timeout`), then seeks each
    /// assigned partition to the group's committed offset, or per `auto_offset_reset`
    /// where none is committed. Heartbeats run in a background task from then on; later
    /// rebalances happen inside [`Consumer::poll`]. Fails if partitions were assigned
    /// by hand or the consumer is already subscribed.
    pub async fn subscribe_with(
        &mut self,
        group_id: &str,
        topics: &[&str],
        listener: impl RebalanceListener + 'static,
    ) -> Result<()> {
        self.subscribe_inner(group_id, topics, Some(Box::new(listener))).await
    }

    async fn subscribe_inner(
        &mut self,
        group_id: &str,
        topics: &[&str],
        listener: Option<Box<dyn RebalanceListener>>,
    ) -> Result<()> {
        if self.group.is_some() || !self.parts.is_empty() {
            return Err(ClientError::Config("subscribe needs a consumer with no assignment".to_string()));
        }
        let c = &self.config;
        let settings = GroupSettings {
            session_timeout: c.session_timeout,
            rebalance_timeout: c.rebalance_timeout,
            heartbeat_interval: c.heartbeat_interval,
            assignor: c.assignor,
        };
        let topics = topics.iter().map(|t| t.to_string()).collect();
        let membership = Membership::start(self.client.clone(), group_id, topics, settings)?;
        self.group = Some(GroupCtx {
            membership,
            listener: listener.map(Mutex::new),
            dirty: false,
            auto_commit_next: Instant::now() + self.config.auto_commit_interval,
            commit_inflight: None,
        });
        self.rebalance().await
    }

    /// The group this consumer is subscribed to, if any.
    pub fn group_id(&self) -> Option<&str> {
        self.group.as_ref().map(|g| g.membership.core().group_id())
    }

    /// The consumed positions (offset of the next record to return) of every owned
    /// partition that has one: what [`Consumer::commit_sync`] stores.
    pub fn consumed_positions(&self) -> Vec<(TopicPartition, u64)> {
        let mut out: Vec<(TopicPartition, u64)> = self
            .parts
            .iter()
            .filter_map(|((topic, partition), s)| {
                s.consumed.map(|o| (TopicPartition { topic: topic.to_string(), partition: *partition }, o))
            })
            .collect();
        out.sort();
        out
    }

    /// Commits the consumed positions of every owned partition and waits for the ack.
    pub async fn commit_sync(&mut self) -> Result<()> {
        let offsets = self.consumed_positions();
        self.commit_offsets(&offsets).await
    }

    /// Sends a commit of the consumed positions without waiting for its ack (a failure
    /// is logged; `ILLEGAL_GENERATION`/`UNKNOWN_MEMBER` make the next `poll` rejoin).
    /// Waits for the previous asynchronous commit first, so commits stay in order.
    pub async fn commit_async(&mut self) -> Result<()> {
        let offsets = self.consumed_positions();
        self.settle_inflight_commit().await;
        let g = self.group_mut()?;
        g.dirty = false;
        let core = g.membership.core().clone();
        let offsets = committed(&offsets);
        g.commit_inflight = Some(tokio::spawn(async move { core.commit(offsets).await }));
        Ok(())
    }

    /// Commits `offsets` (each the offset of the next record to consume) and waits for
    /// the ack. Fails with `ILLEGAL_GENERATION` if the group moved on meanwhile.
    pub async fn commit_offsets(&mut self, offsets: &[(TopicPartition, u64)]) -> Result<()> {
        self.settle_inflight_commit().await;
        let g = self.group_mut()?;
        g.dirty = false;
        let core = g.membership.core().clone();
        core.commit(committed(offsets)).await
    }

    /// Leaves the group cleanly: commits the consumed positions (if auto-commit is on),
    /// sends LeaveGroup and stops heartbeats, so the rest of the group rebalances at once.
    /// Dropping a subscribed consumer without `close` stops its heartbeats but does not
    /// leave: the node notices after `session_timeout` (what a crash looks like).
    pub async fn close(mut self) -> Result<()> {
        let commit = if self.config.auto_commit && self.group.is_some() { self.commit_sync().await } else { Ok(()) };
        self.settle_inflight_commit().await;
        let Some(g) = self.group.take() else { return Ok(()) };
        let leave = g.membership.leave().await;
        commit.and(leave)
    }

    pub(super) fn group_core(&self) -> Option<Arc<Core>> {
        self.group.as_ref().map(|g| g.membership.core().clone())
    }

    pub(super) fn note_consumed(&mut self) {
        if let Some(g) = self.group.as_mut() {
            g.dirty = true;
        }
    }

    /// Rejoins if the heartbeat task asked for it; sends the periodic auto-commit.
    pub(super) async fn maintain_group(&mut self) -> Result<()> {
        let Some(g) = self.group.as_ref() else { return Ok(()) };
        if g.membership.core().needs_rejoin() {
            self.rebalance().await?;
        }
        let auto_commit = self.config.auto_commit;
        let Some(g) = self.group.as_mut() else { return Ok(()) };
        let busy = g.commit_inflight.as_ref().is_some_and(|h| !h.is_finished());
        if auto_commit && g.dirty && !busy && Instant::now() >= g.auto_commit_next {
            g.auto_commit_next = Instant::now() + self.config.auto_commit_interval;
            self.commit_async().await?;
        }
        Ok(())
    }

    /// Revokes everything, rejoins, and takes the new assignment (see the module doc).
    async fn rebalance(&mut self) -> Result<()> {
        let revoked = self.owned_partitions();
        if !revoked.is_empty() {
            if self.config.auto_commit {
                if let Err(e) = self.commit_sync().await {
                    tracing::warn!(error = %e, "commit before revoke failed; the new owner may re-read records");
                }
            }
            if let Some(listener) = self.group.as_mut().and_then(|g| g.listener.as_mut()) {
                listener.get_mut().unwrap_or_else(PoisonError::into_inner).on_revoked(&revoked);
            }
            for tp in &revoked {
                self.unassign(&tp.topic, tp.partition);
            }
        }
        let core = self.group_core().ok_or(ClientError::Config("not subscribed".to_string()))?;
        let assignment = core.join().await?;
        let committed = core.fetch_committed(&assignment).await?;
        for tp in &assignment {
            self.assign(&tp.topic, tp.partition).await?;
            let to = match (committed.get(tp), self.config.auto_offset_reset) {
                (Some(&offset), _) => SeekTo::Offset(offset),
                (None, OffsetReset::Earliest) => SeekTo::Earliest,
                (None, OffsetReset::Latest) => SeekTo::Latest,
                // The first fetch reports the missing position.
                (None, OffsetReset::Error) => continue,
            };
            self.seek(&tp.topic, tp.partition, to).await?;
        }
        tracing::debug!(group = %core.group_id(), ?assignment, ?committed, "assigned");
        if let Some(g) = self.group.as_mut() {
            g.dirty = false;
            if let Some(listener) = g.listener.as_mut() {
                listener.get_mut().unwrap_or_else(PoisonError::into_inner).on_assigned(&assignment);
            }
        }
        Ok(())
    }

    fn owned_partitions(&self) -> Vec<TopicPartition> {
        let mut owned: Vec<TopicPartition> =
            self.parts.keys().map(|(t, p)| TopicPartition { topic: t.to_string(), partition: *p }).collect();
        owned.sort();
        owned
    }

    fn group_mut(&mut self) -> Result<&mut GroupCtx> {
        self.group.as_mut().ok_or_else(|| ClientError::Config("the consumer is not subscribed to a group".to_string()))
    }

    /// Waits for the in-flight asynchronous commit (if any) and logs its failure.
    async fn settle_inflight_commit(&mut self) {
        let Some(handle) = self.group.as_mut().and_then(|g| g.commit_inflight.take()) else { return };
        match handle.await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::warn!(error = %e, "asynchronous commit failed"),
            Err(e) => tracing::warn!(error = %e, "asynchronous commit task failed"),
        }
    }
}

fn committed(offsets: &[(TopicPartition, u64)]) -> Vec<CommittedOffset> {
    offsets
        .iter()
        .map(|(tp, offset)| CommittedOffset {
            topic: tp.topic.clone(),
            partition: tp.partition,
            offset: *offset,
            metadata: String::new(),
        })
        .collect()
}
