//! Consumer groups in cluster mode (DESIGN §6, §7): the offsets topic is a replicated
//! cluster topic, and the coordinator of group `g` is the *head* of offsets partition
//! `group_partition(g, P)` — on that node, the shard owning the partition.
//!
//! - The cluster-wide [`OFFSETS_TOPIC`] is created through the control plane by the first
//!   group request that finds it missing from the view (partitions = this node's shard
//!   count, like the node-local one; RF = min(3, live nodes); internal topics never
//!   inherit retention). That request is answered `COORDINATOR_NOT_AVAILABLE`; the client
//!   retries.
//! - [`Shard::group_heads_loop`] follows which offsets partitions this shard's replicas
//!   head. When that set changes, the shard's coordinator is replaced by a fresh one that
//!   replays the headed partitions' logs (every record in the head's log, in order) before
//!   it serves; requests parked on the old one are answered `NOT_COORDINATOR`, and a
//!   persist the old one issued is not reported to the new one.
//! - A request for a group whose partition this shard does not head is answered
//!   `NOT_COORDINATOR` (the message names the head); a client looks the head up in the
//!   Metadata of `__consumer_offsets` and goes there.
//! - Commits are persisted with `acks=all` through the partition's chain: an acknowledged
//!   commit is on every chain member, so the member promoted to head replays it.
//!
//! Invariants: `led` changes only together with a coordinator swap, so the coordinator
//! only ever holds groups of partitions in `led`; a swap replaces the whole coordinator
//! (groups of a partition still headed lose their members, which rejoin — with the
//! default placement each shard owns one offsets partition, so a swap concerns only the
//! partition whose head moved). On a single node nothing here runs.

use std::collections::BTreeSet;
use std::rc::Rc;
use std::time::{Duration, Instant};

use strand_core::chain::Role;
use strand_core::group::GroupCoordinator;
use strand_wire::ErrorCode;
use tracing::{info, warn};

use crate::control::ClusterView;
use crate::groups::{coordinator_of, GroupCall, GroupReply, OFFSETS_TOPIC};
use crate::shard::Shard;
use crate::topic::{is_internal_topic, TopicConfig};

/// How often a shard looks at which offsets partitions it heads.
const HEADS_EVERY: Duration = Duration::from_millis(50);
/// Replication factor of the cluster-wide offsets topic (fewer if fewer nodes are live).
const OFFSETS_RF_MAX: u16 = 3;

impl Shard {
    /// Cluster mode: the refusal to answer unless this shard coordinates the request's
    /// group. Always `None` on a single node and for ListGroups.
    pub(super) fn cluster_refusal(self: &Rc<Self>, request: &GroupCall) -> Option<GroupReply> {
        let cluster = self.cluster()?;
        let group = request.group_id()?;
        let view = cluster.control.latest();
        if !view.topics.contains_key(OFFSETS_TOPIC) {
            self.create_offsets_topic(&view);
            return Some(GroupReply::error(ErrorCode::CoordinatorNotAvailable, "the offsets topic is being created"));
        }
        let (partition, _) = coordinator_of(group, self.groups.offsets_partitions(), self.shard_count());
        if self.groups.led.borrow().contains(&partition) {
            return None;
        }
        Some(GroupReply::error(ErrorCode::NotCoordinator, cluster.head_note(OFFSETS_TOPIC, partition)))
    }

    /// Starts creating the cluster-wide offsets topic (once at a time per shard).
    fn create_offsets_topic(self: &Rc<Self>, view: &ClusterView) {
        let Some(cluster) = self.cluster() else { return };
        if self.groups.creating.replace(true) {
            return;
        }
        let live = u16::try_from(view.nodes.len()).unwrap_or(u16::MAX).max(1);
        let config = TopicConfig {
            name: OFFSETS_TOPIC.to_string(),
            partitions: u32::from(self.shard_count()),
            replication_factor: live.min(OFFSETS_RF_MAX),
            configs: Default::default(),
        };
        let control = cluster.control.clone();
        let shard = self.clone();
        glommio::spawn_local(async move {
            let (partitions, rf) = (config.partitions, config.replication_factor);
            match control.create_topic(config).await {
                Ok(()) => info!(topic = OFFSETS_TOPIC, partitions, rf, "cluster offsets topic created"),
                // Another node's creation won the race: the view brings it.
                Err(e) => warn!(topic = OFFSETS_TOPIC, error = %e, "creating the cluster offsets topic"),
            }
            shard.groups.creating.set(false);
        })
        .detach();
    }

    /// Follows which offsets partitions this shard heads until shutdown, replacing the
    /// coordinator whenever that set (or the topic's partition count) changes.
    pub async fn group_heads_loop(self: Rc<Self>) {
        if self.cluster().is_none() {
            return;
        }
        while !self.is_stopping() {
            self.follow_heads().await;
            futures_lite::future::or(glommio::timer::sleep(HEADS_EVERY), self.stop.listen()).await;
        }
    }

    async fn follow_heads(self: &Rc<Self>) {
        let Some(cluster) = self.cluster() else { return };
        let view = cluster.control.latest();
        let Some(partitions) = view.topics.get(OFFSETS_TOPIC).map(|t| t.partitions).filter(|p| *p > 0) else {
            return;
        };
        let heading = |p: &u32| {
            let replica = cluster.replica(OFFSETS_TOPIC, *p);
            replica.is_some_and(|r| matches!(r.role(), Role::Head | Role::Single))
        };
        let heads: BTreeSet<u32> =
            (0..partitions).filter(|p| self.owner(OFFSETS_TOPIC, *p) == self.id).filter(heading).collect();
        if heads == *self.groups.led.borrow() && partitions == self.groups.offsets_partitions() {
            return;
        }
        self.groups.offsets_partitions.set(partitions);
        self.replace_coordinator(heads).await;
    }

    /// Swaps in a fresh coordinator for the groups of `heads` and replays their logs.
    async fn replace_coordinator(self: &Rc<Self>, heads: BTreeSet<u32>) {
        let Some(cluster) = self.cluster() else { return };
        let started = Instant::now();
        let incarnation = self.groups.incarnation.get() + 1;
        self.groups.incarnation.set(incarnation);
        let now = self.groups.now_ms();
        // Instances differ between swaps (time never goes back, the incarnation grows).
        let coordinator = GroupCoordinator::new(self.groups.coordinator_config(), now.wrapping_add(incarnation));
        *self.groups.coordinator.borrow_mut() = coordinator;
        // Parked requests of the old coordinator: their waits end with NOT_COORDINATOR.
        self.groups.waiters.borrow_mut().clear();
        *self.groups.led.borrow_mut() = heads.clone();
        for topic in cluster.topics().into_iter().filter(|t| !is_internal_topic(&t.name)) {
            self.groups.coordinator.borrow_mut().handle_topic_partitions_changed(now, &topic.name, topic.partitions);
        }
        let mut loaded = 0;
        for partition in &heads {
            let Some(replica) = cluster.replica(OFFSETS_TOPIC, *partition) else { continue };
            let log = replica.log().clone();
            match self.replay_offsets_partition(*partition, &log).await {
                Ok(count) => loaded += count.loaded,
                Err(e) => {
                    // Stay loading (COORDINATOR_NOT_AVAILABLE); the next pass retries.
                    warn!(shard = self.id.0, partition, error = %e, "replaying offsets as head failed");
                    self.groups.led.borrow_mut().clear();
                    return;
                }
            }
        }
        self.groups.coordinator.borrow_mut().finish_loading();
        self.drain_group_actions();
        let elapsed_ms = started.elapsed().as_millis() as u64;
        info!(shard = self.id.0, heads = ?heads, records = loaded, elapsed_ms, "group coordinator (re)built");
    }
}
