//! The controller: campaigns in the etcd election (`{prefix}/controller`) with this
//! incarnation's lease; once elected, runs the core's [`reconcile`] on every keyspace
//! change and every [`ROUND_PERIOD`], and writes each decided chain in a transaction that
//! succeeds only if (a) this node still holds the election key it won, (b) the topic key
//! is the one the decision saw (not deleted or re-created) and (c) the chain key's mod
//! revision is the one the decision saw. So a stale controller (paused, partitioned,
//! lease expired) cannot clobber a newer configuration: its writes fail the compare.
//! Rounds go through a [`Rebalancer`] made fresh for each leadership (preferred-head
//! moves; its clock is the time since leadership began).
//!
//! Leadership ends when the lease changes (the session re-registered) or when a failed
//! write shows the election key is no longer ours; the task then campaigns again.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use etcd_client::{Client, Compare, CompareOp, LeaderKey, Txn, TxnOp};
use strand_core::control::{RebalanceConfig, Rebalancer};
use tokio::sync::watch;

use super::handle::{ControlError, Shared};
use super::keyspace::{from_core, keys, Keyspace};
use super::runtime::timed;

/// A reconcile round runs at least this often (besides on every keyspace change).
const ROUND_PERIOD: Duration = Duration::from_millis(500);
/// Pause after a failed campaign.
const RETRY_PAUSE: Duration = Duration::from_millis(500);

pub(super) struct Controller {
    pub client: Client,
    pub prefix: String,
    pub node_id: u32,
    pub shared: Arc<Shared>,
    pub leases: watch::Receiver<Option<i64>>,
    pub snapshots: watch::Receiver<Arc<Keyspace>>,
    pub rebalance: RebalanceConfig,
}

/// Why a round stopped early.
enum RoundError {
    /// The election key is gone or not ours: stop leading.
    NotLeader,
    Etcd(ControlError),
}

impl Controller {
    pub async fn run(mut self) {
        loop {
            let Some(lease) = *self.leases.borrow_and_update() else {
                if self.leases.changed().await.is_err() {
                    return;
                }
                continue;
            };
            let name = keys::election(&self.prefix);
            let mut election = self.client.clone();
            let campaign = election.campaign(name, self.node_id.to_string(), lease);
            let won = tokio::select! {
                won = campaign => won,
                changed = self.leases.changed() => {
                    if changed.is_err() { return; }
                    continue;
                }
            };
            let leader = match won.map(|mut r| r.take_leader()) {
                Ok(Some(leader)) => leader,
                Ok(None) => {
                    tracing::warn!("campaign answered without a leader key; retrying");
                    tokio::time::sleep(RETRY_PAUSE).await;
                    continue;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "controller campaign failed; retrying");
                    tokio::time::sleep(RETRY_PAUSE).await;
                    continue;
                }
            };
            self.shared.controller.store(true, Ordering::Relaxed);
            tracing::info!(node = self.node_id, "elected controller");
            self.lead(&leader).await;
            self.shared.controller.store(false, Ordering::Relaxed);
            tracing::info!(node = self.node_id, "no longer the controller");
        }
    }

    /// Reconciles until leadership ends.
    async fn lead(&mut self, leader: &LeaderKey) {
        let mut rebalancer = Rebalancer::new(self.rebalance);
        let started = tokio::time::Instant::now();
        let mut ticker = tokio::time::interval(ROUND_PERIOD);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = ticker.tick() => {}
                changed = self.snapshots.changed() => if changed.is_err() { return },
                _ = self.leases.changed() => return,
            }
            let snapshot = self.snapshots.borrow_and_update().clone();
            let now_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
            match self.round(leader, &snapshot, &mut rebalancer, now_ms).await {
                Ok(()) => {}
                Err(RoundError::NotLeader) => return,
                Err(RoundError::Etcd(e)) => tracing::warn!(error = %e, "controller round failed; retrying"),
            }
        }
    }

    /// One round: the core's writes, then chains of deleted topics removed.
    async fn round(
        &mut self,
        leader: &LeaderKey,
        snapshot: &Keyspace,
        rebalancer: &mut Rebalancer,
        now_ms: u64,
    ) -> Result<(), RoundError> {
        for write in rebalancer.round(now_ms, &snapshot.cluster_state()) {
            let key = (write.topic.clone(), write.partition);
            let chain_key = keys::chain(&self.prefix, &write.topic, write.partition);
            let known = snapshot.chains.get(&key);
            if known.is_some_and(|c| c.record.is_none()) {
                continue; // poisoned: logged when read, left to the operator
            }
            let topic_revision = snapshot.topics.get(&write.topic).map(|t| t.create_revision).unwrap_or(0);
            let record = from_core(&write.chain);
            let value =
                serde_json::to_vec(&record).map_err(|e| RoundError::Etcd(ControlError::Invalid(e.to_string())))?;
            let txn = Txn::new()
                .when([
                    Compare::create_revision(leader.key(), CompareOp::Equal, leader.rev()),
                    Compare::create_revision(keys::topic(&self.prefix, &write.topic), CompareOp::Equal, topic_revision),
                    Compare::mod_revision(
                        chain_key.clone(),
                        CompareOp::Equal,
                        known.map(|c| c.mod_revision).unwrap_or(0),
                    ),
                ])
                .and_then([TxnOp::put(chain_key, value, None)]);
            if !self.commit(leader, txn).await? {
                return Ok(()); // our view is stale: the next snapshot triggers another round
            }
            tracing::info!(
                topic = write.topic,
                partition = write.partition,
                epoch = record.epoch,
                members = ?record.members,
                learner = ?record.learner,
                preferred = ?record.preferred,
                "chain written"
            );
        }
        self.remove_orphans(leader, snapshot).await
    }

    /// Deletes chains whose topic no longer exists (left by a delete racing a write).
    async fn remove_orphans(&mut self, leader: &LeaderKey, snapshot: &Keyspace) -> Result<(), RoundError> {
        for ((topic, partition), entry) in &snapshot.chains {
            if snapshot.topics.contains_key(topic) {
                continue;
            }
            let chain_key = keys::chain(&self.prefix, topic, *partition);
            let txn = Txn::new()
                .when([
                    Compare::create_revision(leader.key(), CompareOp::Equal, leader.rev()),
                    Compare::create_revision(keys::topic(&self.prefix, topic), CompareOp::Equal, 0),
                    Compare::mod_revision(chain_key.clone(), CompareOp::Equal, entry.mod_revision),
                ])
                .and_then([TxnOp::delete(chain_key, None)]);
            if !self.commit(leader, txn).await? {
                return Ok(());
            }
        }
        Ok(())
    }

    /// Runs a guarded write: true if applied, false if the view was stale,
    /// `NotLeader` if the election key is no longer ours.
    async fn commit(&mut self, leader: &LeaderKey, txn: Txn) -> Result<bool, RoundError> {
        let response = timed(self.client.txn(txn)).await.map_err(RoundError::Etcd)?;
        if response.succeeded() {
            return Ok(true);
        }
        let current = timed(self.client.get(leader.key(), None)).await.map_err(RoundError::Etcd)?;
        let ours = current.kvs().first().is_some_and(|kv| kv.create_revision() == leader.rev());
        if !ours {
            tracing::warn!(node = self.node_id, "lost the controller election key");
            return Err(RoundError::NotLeader);
        }
        Ok(false)
    }
}
