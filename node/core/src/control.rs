//! The controller's decision (DESIGN §6), IO-free: given the live nodes, the topics, the
//! current chains and the tails' in-sync reports, which chain records to write next.
//! The etcd shell (`strand-node`'s `control` module) reads the keyspace, calls
//! [`reconcile`] and writes each returned chain with a transaction guarded by the key's
//! revision, so a stale controller cannot clobber a newer decision.
//!
//! Rules, at most one write per partition per round, each write `epoch + 1` (a new chain
//! starts at epoch 1):
//! 1. A topic partition with no chain gets `min(RF, live)` members, picked least loaded
//!    first and with the head rotated across partitions, so heads spread over the nodes.
//! 2. A member or learner whose admitted incarnation is no longer live (node gone, or
//!    registered again under a new lease) is removed. A chain is never emptied: if no
//!    member is valid, the head stays (it holds the longest log). If that kept member's
//!    node is live again under a new incarnation (the last survivor restarted, e.g. a
//!    whole-cluster restart), it is readmitted in place — the only way such a chain can
//!    serve again, since nobody is left to feed a learner.
//! 3. A learner with an in-sync report for exactly the current epoch and learner is
//!    promoted to tail.
//! 4. A chain shorter than its RF, with every member valid and no learner, gets a live
//!    non-member as learner (behind the tail): its preferred head if that node is one,
//!    else the least loaded.
//! 5. Preferred-head rebalancing ([`Rebalancer`], which needs time and so is not part of
//!    [`reconcile`]): every chain remembers its preferred head (the head rule 1 gave
//!    it). A chain that rules 1–4 leave alone, whose preferred head is a member but not
//!    the head, gets its preferred head moved to the front (the others keep their
//!    order) when: no learner is pending, the chain is as long as it can be
//!    (`min(RF, live)`), every member is live under its admitted incarnation, the chain's
//!    epoch was seen at least a cooldown ago (a (re)joined node enters a chain only by a
//!    write, so this also covers the node's rejoin), and the cluster-wide move spacing
//!    (one move per `60 s / cap`) allows.
//!    A member holds everything committed, so the moved head loses no acknowledged write
//!    (a move is a head failover without the failure: `tests/chain_sim.rs` moves heads
//!    among members under faults).
//!
//! Invariants of every write (checked by `tests/control_reconcile.rs` after every step of
//! a seeded simulation): the epoch grows; members are never empty and hold no duplicate;
//! the learner is not a member; `incarnations` has exactly one entry per member and
//! learner, equal to the live incarnation for everyone newly admitted; a node re-enters a
//! chain under a new incarnation only as learner (except the rule-2 last survivor); no
//! member that is live under its admitted incarnation is removed.

use std::collections::{BTreeMap, BTreeSet};

use crate::chain::{Epoch, NodeId};

/// A node's registration: the lease id of one process lifetime. A restarted node has a
/// new incarnation even if it restarted before its old lease expired.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Incarnation(pub i64);

/// A topic as the controller needs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TopicSpec {
    pub partitions: u32,
    pub replication_factor: u16,
}

/// One partition's chain (mirrors the shell's `ChainRecord`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chain {
    pub epoch: Epoch,
    /// Head first; never empty.
    pub members: Vec<NodeId>,
    pub learner: Option<NodeId>,
    /// The admitted incarnation of every member and of the learner.
    pub incarnations: BTreeMap<NodeId, Incarnation>,
    /// The node that should head this chain when it is a healthy member (rule 5); set at
    /// assignment, kept by every later write. `None` only in records written before the
    /// field existed; the next write of such a chain adopts its head then.
    pub preferred: Option<NodeId>,
}

impl Chain {
    fn includes(&self, node: NodeId) -> bool {
        self.members.contains(&node) || self.learner == Some(node)
    }
}

/// A tail's report that its learner caught up, valid for that exact epoch and learner.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InSync {
    pub epoch: Epoch,
    pub learner: NodeId,
}

/// A partition: (topic, partition index).
pub type PartitionKey = (String, u32);

/// Everything the controller decides from.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClusterState {
    /// Live (registered) nodes and their current incarnation.
    pub live: BTreeMap<NodeId, Incarnation>,
    pub topics: BTreeMap<String, TopicSpec>,
    pub chains: BTreeMap<PartitionKey, Chain>,
    pub insync: BTreeMap<PartitionKey, InSync>,
}

/// One chain record to write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainWrite {
    pub topic: String,
    pub partition: u32,
    pub chain: Chain,
}

/// The chain writes to make now, in (topic, partition) order; empty when every chain
/// already follows the rules. Deterministic: the same state gives the same writes.
pub fn reconcile(state: &ClusterState) -> Vec<ChainWrite> {
    let mut load = Load::new(state);
    let mut writes = Vec::new();
    for (topic, spec) in &state.topics {
        for partition in 0..spec.partitions {
            let key = (topic.clone(), partition);
            let next = match state.chains.get(&key) {
                None => assign(state, &mut load, partition, usize::from(spec.replication_factor)),
                Some(chain) => repair(state, &mut load, &key, chain, usize::from(spec.replication_factor)),
            };
            if let Some(chain) = next {
                check_write(state.chains.get(&key), &chain);
                writes.push(ChainWrite { topic: topic.clone(), partition, chain });
            }
        }
    }
    writes
}

/// Limits of preferred-head rebalancing (rule 5).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RebalanceConfig {
    /// A chain's head moves only once its epoch was seen at least this long ago (a
    /// chain just moved, or just joined by a restarted node, is left alone this long).
    pub cooldown_ms: u64,
    /// Head moves per minute, cluster-wide, spaced evenly (one per `60 s / cap`); 0
    /// switches rebalancing off.
    pub moves_per_minute_max: u32,
}

/// Default [`RebalanceConfig::cooldown_ms`].
pub const REBALANCE_COOLDOWN_MS_DEFAULT: u64 = 30_000;
/// Default [`RebalanceConfig::moves_per_minute_max`].
pub const REBALANCE_MOVES_PER_MINUTE_DEFAULT: u32 = 6;
/// The window the move cap counts in.
pub const REBALANCE_WINDOW_MS: u64 = 60_000;

impl Default for RebalanceConfig {
    fn default() -> RebalanceConfig {
        RebalanceConfig {
            cooldown_ms: REBALANCE_COOLDOWN_MS_DEFAULT,
            moves_per_minute_max: REBALANCE_MOVES_PER_MINUTE_DEFAULT,
        }
    }
}

/// One controller's memory for rule 5: when it first saw each chain's epoch, and when it
/// last moved a head. Lives as long as one leadership (a new controller starts with
/// everything "just seen", so it waits a full cooldown). IO-free: the caller passes the
/// time; the map holds only existing chains.
#[derive(Debug, Clone)]
pub struct Rebalancer {
    config: RebalanceConfig,
    chains_seen: BTreeMap<PartitionKey, (Epoch, u64)>,
    last_move_ms: Option<u64>,
}

impl Rebalancer {
    /// A rebalancer that has seen nothing yet (the first round starts every cooldown).
    pub fn new(config: RebalanceConfig) -> Rebalancer {
        Rebalancer { config, chains_seen: BTreeMap::new(), last_move_ms: None }
    }

    /// One controller round at `now_ms` (any monotonic clock): [`reconcile`]'s writes plus
    /// at most one head move (rule 5) for a partition `reconcile` leaves alone, in
    /// (topic, partition) order. Deterministic given the calls so far.
    pub fn round(&mut self, now_ms: u64, state: &ClusterState) -> Vec<ChainWrite> {
        self.observe(now_ms, state);
        let mut writes = reconcile(state);
        if self.config.moves_per_minute_max == 0 {
            return writes;
        }
        let spacing_ms = REBALANCE_WINDOW_MS / u64::from(self.config.moves_per_minute_max);
        if self.last_move_ms.is_some_and(|last| now_ms < last.saturating_add(spacing_ms)) {
            return writes;
        }
        let written: BTreeSet<PartitionKey> = writes.iter().map(|w| (w.topic.clone(), w.partition)).collect();
        let moved = state
            .chains
            .iter()
            .filter(|(key, _)| !written.contains(*key))
            .find_map(|(key, chain)| self.head_move(now_ms, state, key, chain).map(|next| (key.clone(), next)));
        if let Some(((topic, partition), chain)) = moved {
            check_write(state.chains.get(&(topic.clone(), partition)), &chain);
            self.last_move_ms = Some(now_ms);
            writes.push(ChainWrite { topic, partition, chain });
            writes.sort_by(|a, b| (&a.topic, a.partition).cmp(&(&b.topic, b.partition)));
        }
        writes
    }

    /// Notes first sightings of chain epochs; forgets the gone.
    fn observe(&mut self, now_ms: u64, state: &ClusterState) {
        self.chains_seen.retain(|key, (epoch, _)| state.chains.get(key).is_some_and(|c| c.epoch == *epoch));
        for (key, chain) in &state.chains {
            self.chains_seen.entry(key.clone()).or_insert((chain.epoch, now_ms));
        }
    }

    /// Rule 5 for one chain: the chain with its preferred head in front, or `None`.
    fn head_move(&self, now_ms: u64, state: &ClusterState, key: &PartitionKey, chain: &Chain) -> Option<Chain> {
        let spec = state.topics.get(&key.0)?;
        let preferred = chain.preferred?;
        let full = usize::from(spec.replication_factor).min(state.live.len());
        let healthy = chain.learner.is_none()
            && chain.members.len() >= full
            && chain.members.iter().all(|m| valid(state, chain, *m));
        let index = chain.members.iter().position(|m| *m == preferred)?;
        if index == 0 || !healthy {
            return None;
        }
        let seen = self.chains_seen.get(key).filter(|(epoch, _)| *epoch == chain.epoch);
        if seen.is_none_or(|(_, t)| now_ms < t.saturating_add(self.config.cooldown_ms)) {
            return None;
        }
        let mut next = chain.clone();
        next.epoch = Epoch(chain.epoch.0 + 1);
        next.members.remove(index);
        next.members.insert(0, preferred);
        Some(next)
    }
}

/// Chains per node (members and learners of existing topics' chains), kept up to date as
/// the round plans writes, plus heads per node for head rotation.
struct Load {
    replicas: BTreeMap<NodeId, usize>,
    heads: BTreeMap<NodeId, usize>,
}

impl Load {
    fn new(state: &ClusterState) -> Load {
        let mut load = Load { replicas: BTreeMap::new(), heads: BTreeMap::new() };
        for ((topic, _), chain) in &state.chains {
            if state.topics.contains_key(topic) {
                load.add(chain, 1);
            }
        }
        load
    }

    fn add(&mut self, chain: &Chain, sign: isize) {
        let bump = |n: &mut usize| *n = n.saturating_add_signed(sign);
        for node in chain.members.iter().chain(chain.learner.iter()) {
            bump(self.replicas.entry(*node).or_insert(0));
        }
        if let Some(head) = chain.members.first() {
            bump(self.heads.entry(*head).or_insert(0));
        }
    }

    fn replicas(&self, node: NodeId) -> usize {
        self.replicas.get(&node).copied().unwrap_or(0)
    }

    fn heads(&self, node: NodeId) -> usize {
        self.heads.get(&node).copied().unwrap_or(0)
    }
}

/// The position of `node` among `nodes` (sorted) rotated by `partition`: ties between
/// equally loaded nodes go to a different node for each partition.
fn rotation(nodes: &[NodeId], node: NodeId, partition: u32) -> usize {
    let count = nodes.len().max(1);
    let index = nodes.iter().position(|n| *n == node).unwrap_or(0);
    let shift = usize::try_from(partition).unwrap_or(0) % count;
    (index + count - shift) % count
}

/// Rule 1: a new chain of `min(rf, live)` members.
fn assign(state: &ClusterState, load: &mut Load, partition: u32, rf: usize) -> Option<Chain> {
    let live: Vec<NodeId> = state.live.keys().copied().collect();
    if live.is_empty() || rf == 0 {
        return None;
    }
    let mut picked = live.clone();
    picked.sort_by_key(|n| (load.replicas(*n), rotation(&live, *n, partition)));
    picked.truncate(rf.min(live.len()));
    picked.sort_by_key(|n| rotation(&live, *n, partition));
    let head_index = (0..picked.len()).min_by_key(|i| (load.heads(picked[*i]), *i)).unwrap_or(0);
    picked.rotate_left(head_index);
    let incarnations = picked.iter().map(|n| (*n, state.live[n])).collect();
    let preferred = picked.first().copied();
    let chain = Chain { epoch: Epoch(1), members: picked, learner: None, incarnations, preferred };
    load.add(&chain, 1);
    Some(chain)
}

/// Rules 2–4 for an existing chain: the next configuration, or `None` if it stands.
fn repair(state: &ClusterState, load: &mut Load, key: &PartitionKey, chain: &Chain, rf: usize) -> Option<Chain> {
    if chain.members.is_empty() {
        // Not a valid record (the shell refuses to parse one); nothing safe to derive.
        return None;
    }
    let mut next = remove_invalid(state, chain)
        .or_else(|| promote(state, key, chain))
        .or_else(|| add_learner(state, load, key.1, chain, rf))?;
    next.preferred = chain.preferred.or(chain.members.first().copied());
    load.add(chain, -1);
    load.add(&next, 1);
    Some(next)
}

/// Whether `node` is live under the incarnation `chain` admitted it with.
fn valid(state: &ClusterState, chain: &Chain, node: NodeId) -> bool {
    matches!((state.live.get(&node), chain.incarnations.get(&node)), (Some(live), Some(admitted)) if live == admitted)
}

/// Rule 2: drop members and the learner that are not live under their admitted
/// incarnation, never emptying the chain.
fn remove_invalid(state: &ClusterState, chain: &Chain) -> Option<Chain> {
    let mut members: Vec<NodeId> = Vec::with_capacity(chain.members.len());
    for m in &chain.members {
        if valid(state, chain, *m) && !members.contains(m) {
            members.push(*m);
        }
    }
    let mut learner = chain.learner.filter(|l| valid(state, chain, *l) && !members.contains(l));
    let mut incarnations: BTreeMap<NodeId, Incarnation> = BTreeMap::new();
    if members.is_empty() {
        let survivor = *chain.members.first()?;
        members.push(survivor);
        match state.live.get(&survivor) {
            // The last survivor is back under a new incarnation: readmit it in place.
            Some(live) => {
                incarnations.insert(survivor, *live);
            }
            // Kept as admitted; `Incarnation(0)` (never a lease id) if the record lacked it.
            None => {
                let admitted = chain.incarnations.get(&survivor).copied().unwrap_or(Incarnation(0));
                incarnations.insert(survivor, admitted);
            }
        }
        if learner == Some(survivor) {
            learner = None;
        }
    }
    for node in members.iter().chain(learner.iter()) {
        if let (false, Some(admitted)) = (incarnations.contains_key(node), chain.incarnations.get(node)) {
            incarnations.insert(*node, *admitted);
        }
    }
    let next = Chain { epoch: Epoch(chain.epoch.0 + 1), members, learner, incarnations, preferred: chain.preferred };
    let unchanged = next.members == chain.members && next.learner == chain.learner;
    (!unchanged || next.incarnations != chain.incarnations).then_some(next)
}

/// Rule 3: promote the learner the tail reported in sync at the current epoch.
fn promote(state: &ClusterState, key: &PartitionKey, chain: &Chain) -> Option<Chain> {
    let learner = chain.learner?;
    let report = state.insync.get(key)?;
    if report.epoch != chain.epoch || report.learner != learner {
        return None;
    }
    let mut next = chain.clone();
    next.epoch = Epoch(chain.epoch.0 + 1);
    next.members.push(learner);
    next.learner = None;
    Some(next)
}

/// Rule 4: a learner for a chain short of its RF (all members valid, no learner yet).
fn add_learner(state: &ClusterState, load: &Load, partition: u32, chain: &Chain, rf: usize) -> Option<Chain> {
    if chain.learner.is_some() || chain.members.len() >= rf {
        return None;
    }
    if !chain.members.iter().all(|m| valid(state, chain, *m)) {
        return None;
    }
    let live: Vec<NodeId> = state.live.keys().copied().collect();
    let learner = live
        .iter()
        .filter(|n| !chain.includes(**n))
        .min_by_key(|n| (chain.preferred != Some(**n), load.replicas(**n), rotation(&live, **n, partition)))
        .copied()?;
    let mut next = chain.clone();
    next.epoch = Epoch(chain.epoch.0 + 1);
    next.learner = Some(learner);
    next.incarnations.insert(learner, state.live[&learner]);
    Some(next)
}

/// Postconditions of every write (programmer errors if broken).
fn check_write(previous: Option<&Chain>, next: &Chain) {
    assert!(!next.members.is_empty(), "a chain is never emptied");
    let distinct: BTreeSet<NodeId> = next.members.iter().copied().collect();
    assert_eq!(distinct.len(), next.members.len(), "no duplicate member");
    if let Some(learner) = next.learner {
        assert!(!distinct.contains(&learner), "the learner is not a member");
    }
    let named: BTreeSet<NodeId> = distinct.iter().copied().chain(next.learner).collect();
    let admitted: BTreeSet<NodeId> = next.incarnations.keys().copied().collect();
    assert_eq!(named, admitted, "an incarnation for every member and the learner, no other");
    match previous {
        Some(previous) => assert!(next.epoch > previous.epoch, "a write bumps the epoch"),
        None => assert_eq!(next.epoch, Epoch(1), "a new chain starts at epoch 1"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(live: &[(u32, i64)]) -> ClusterState {
        ClusterState {
            live: live.iter().map(|(n, i)| (NodeId(*n), Incarnation(*i))).collect(),
            ..ClusterState::default()
        }
    }

    fn chain(epoch: u64, members: &[(u32, i64)], learner: Option<(u32, i64)>) -> Chain {
        Chain {
            epoch: Epoch(epoch),
            members: members.iter().map(|(n, _)| NodeId(*n)).collect(),
            learner: learner.map(|(n, _)| NodeId(n)),
            incarnations: members.iter().chain(learner.iter()).map(|(n, i)| (NodeId(*n), Incarnation(*i))).collect(),
            preferred: members.first().map(|(n, _)| NodeId(*n)),
        }
    }

    fn members(c: &Chain) -> Vec<u32> {
        c.members.iter().map(|n| n.0).collect()
    }

    #[test]
    fn new_topic_rotates_heads_and_spreads_members() {
        let mut s = state(&[(1, 10), (2, 20), (3, 30)]);
        s.topics.insert("t".into(), TopicSpec { partitions: 3, replication_factor: 3 });
        let writes = reconcile(&s);
        let chains: Vec<Vec<u32>> = writes.iter().map(|w| members(&w.chain)).collect();
        assert_eq!(chains, vec![vec![1, 2, 3], vec![2, 3, 1], vec![3, 1, 2]]);
        assert!(writes.iter().all(|w| w.chain.epoch == Epoch(1)));

        let mut s = state(&[(1, 10), (2, 20), (3, 30)]);
        s.topics.insert("u".into(), TopicSpec { partitions: 6, replication_factor: 1 });
        let heads: Vec<u32> = reconcile(&s).iter().map(|w| w.chain.members[0].0).collect();
        assert_eq!(heads, vec![1, 2, 3, 1, 2, 3]);
    }

    #[test]
    fn rf_above_live_gives_a_shorter_chain_then_a_learner() {
        let mut s = state(&[(1, 10)]);
        s.topics.insert("t".into(), TopicSpec { partitions: 1, replication_factor: 2 });
        let w = reconcile(&s);
        assert_eq!(members(&w[0].chain), vec![1]);
        s.chains.insert(("t".into(), 0), w[0].chain.clone());
        assert!(reconcile(&s).is_empty(), "no live node to add");
        s.live.insert(NodeId(2), Incarnation(20));
        let w = reconcile(&s);
        assert_eq!(w[0].chain, chain(2, &[(1, 10)], Some((2, 20))));
    }

    #[test]
    fn dead_member_removed_then_learner_added_then_promoted_on_exact_report() {
        let mut s = state(&[(1, 10), (3, 30), (4, 40)]);
        s.topics.insert("t".into(), TopicSpec { partitions: 1, replication_factor: 3 });
        s.chains.insert(("t".into(), 0), chain(5, &[(1, 10), (2, 20), (3, 30)], None));
        let w = reconcile(&s);
        assert_eq!(w.len(), 1);
        assert_eq!(w[0].chain, chain(6, &[(1, 10), (3, 30)], None));
        s.chains.insert(("t".into(), 0), w[0].chain.clone());
        let w = reconcile(&s);
        assert_eq!(w[0].chain, chain(7, &[(1, 10), (3, 30)], Some((4, 40))));
        s.chains.insert(("t".into(), 0), w[0].chain.clone());
        // A report for another epoch or learner does nothing.
        s.insync.insert(("t".into(), 0), InSync { epoch: Epoch(6), learner: NodeId(4) });
        assert!(reconcile(&s).is_empty());
        s.insync.insert(("t".into(), 0), InSync { epoch: Epoch(7), learner: NodeId(2) });
        assert!(reconcile(&s).is_empty());
        s.insync.insert(("t".into(), 0), InSync { epoch: Epoch(7), learner: NodeId(4) });
        let w = reconcile(&s);
        assert_eq!(w[0].chain, chain(8, &[(1, 10), (3, 30), (4, 40)], None));
    }

    #[test]
    fn restarted_member_leaves_and_reenters_as_learner() {
        let mut s = state(&[(1, 10), (2, 21)]);
        s.topics.insert("t".into(), TopicSpec { partitions: 1, replication_factor: 2 });
        s.chains.insert(("t".into(), 0), chain(3, &[(1, 10), (2, 20)], None));
        let w = reconcile(&s);
        assert_eq!(w[0].chain, chain(4, &[(1, 10)], None));
        s.chains.insert(("t".into(), 0), w[0].chain.clone());
        let w = reconcile(&s);
        assert_eq!(w[0].chain, chain(5, &[(1, 10)], Some((2, 21))));
    }

    #[test]
    fn never_empty_and_last_survivor_readmitted_in_place() {
        let mut s = state(&[(3, 30)]);
        s.topics.insert("t".into(), TopicSpec { partitions: 1, replication_factor: 2 });
        s.chains.insert(("t".into(), 0), chain(3, &[(1, 10), (2, 20)], None));
        let w = reconcile(&s);
        assert_eq!(w[0].chain, chain(4, &[(1, 10)], None), "the head stays");
        s.chains.insert(("t".into(), 0), w[0].chain.clone());
        assert!(reconcile(&s).is_empty(), "no learner behind a dead tail");
        s.live.insert(NodeId(1), Incarnation(11));
        let w = reconcile(&s);
        assert_eq!(w[0].chain, chain(5, &[(1, 11)], None));
    }

    #[test]
    fn rejoined_preferred_head_gets_its_head_back_after_the_cooldown_one_move_per_spacing() {
        let mut s = state(&[(1, 11), (2, 20), (3, 30), (4, 40)]);
        s.topics.insert("t".into(), TopicSpec { partitions: 2, replication_factor: 3 });
        // Node 1 restarted: it was learner, then promoted to tail of both chains;
        // partition 0 has a full chain again plus a learner (a move waits for it).
        let mut c0 = chain(9, &[(2, 20), (1, 11), (3, 30)], Some((4, 40)));
        c0.preferred = Some(NodeId(1));
        let mut c1 = chain(9, &[(2, 20), (3, 30), (1, 11)], None);
        c1.preferred = Some(NodeId(1));
        s.chains.insert(("t".into(), 0), c0.clone());
        s.chains.insert(("t".into(), 1), c1);
        let config = RebalanceConfig { cooldown_ms: 1_000, moves_per_minute_max: 2 };
        let mut r = Rebalancer::new(config);
        assert!(r.round(0, &s).is_empty());
        assert!(r.round(999, &s).is_empty(), "cooldown");
        let w = r.round(1_000, &s);
        assert_eq!(w.len(), 1, "partition 0 has a learner pending: {w:?}");
        let moved = (w[0].partition, members(&w[0].chain), w[0].chain.epoch, w[0].chain.preferred);
        assert_eq!(moved, (1, vec![1, 2, 3], Epoch(10), Some(NodeId(1))));
        s.chains.insert(("t".into(), 1), w[0].chain.clone());
        c0.learner = None;
        c0.incarnations.remove(&NodeId(4));
        c0.epoch = Epoch(10);
        s.chains.insert(("t".into(), 0), c0);
        assert!(r.round(2_000, &s).is_empty(), "partition 0's new epoch cools down first");
        assert!(r.round(30_999, &s).is_empty(), "one move per 30 s");
        let w = r.round(31_000, &s);
        assert_eq!((w[0].partition, members(&w[0].chain)), (0, vec![1, 2, 3]));
        s.chains.insert(("t".into(), 0), w[0].chain.clone());
        assert!(r.round(100_000, &s).is_empty(), "balanced");
        // Off: nothing moves.
        let mut off = Rebalancer::new(RebalanceConfig { cooldown_ms: 0, moves_per_minute_max: 0 });
        assert!(off.round(0, &s).is_empty() && off.round(100_000, &s).is_empty());
    }

    #[test]
    fn deleted_topic_chains_neither_written_nor_counted() {
        let mut s = state(&[(1, 10), (2, 20)]);
        s.chains.insert(("gone".into(), 0), chain(9, &[(1, 10)], None));
        assert!(reconcile(&s).is_empty());
        s.topics.insert("t".into(), TopicSpec { partitions: 1, replication_factor: 1 });
        assert_eq!(members(&reconcile(&s)[0].chain), vec![1], "node 1's stale chain does not count as load");
    }
}
