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
//! 4. A chain shorter than its RF, with every member valid and no learner, gets the least
//!    loaded live non-member as learner (behind the tail).
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
    let chain = Chain { epoch: Epoch(1), members: picked, learner: None, incarnations };
    load.add(&chain, 1);
    Some(chain)
}

/// Rules 2–4 for an existing chain: the next configuration, or `None` if it stands.
fn repair(state: &ClusterState, load: &mut Load, key: &PartitionKey, chain: &Chain, rf: usize) -> Option<Chain> {
    if chain.members.is_empty() {
        // Not a valid record (the shell refuses to parse one); nothing safe to derive.
        return None;
    }
    let next = remove_invalid(state, chain)
        .or_else(|| promote(state, key, chain))
        .or_else(|| add_learner(state, load, key.1, chain, rf))?;
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
    let next = Chain { epoch: Epoch(chain.epoch.0 + 1), members, learner, incarnations };
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
        .min_by_key(|n| (load.replicas(**n), rotation(&live, **n, partition)))
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
    fn deleted_topic_chains_neither_written_nor_counted() {
        let mut s = state(&[(1, 10), (2, 20)]);
        s.chains.insert(("gone".into(), 0), chain(9, &[(1, 10)], None));
        assert!(reconcile(&s).is_empty());
        s.topics.insert("t".into(), TopicSpec { partitions: 1, replication_factor: 1 });
        assert_eq!(members(&reconcile(&s)[0].chain), vec![1], "node 1's stale chain does not count as load");
    }
}
