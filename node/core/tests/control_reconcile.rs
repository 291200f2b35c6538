//! Seeded randomized simulation of the controller's decision (`strand_core::control`):
//! node deaths and restarts (also restarts that beat the lease expiry), topic creation
//! and deletion, in-sync reports that are exact, stale, wrong, lost or late, and chain
//! writes that get lost (a failed guarded transaction). Every write of every round is
//! checked against the invariants listed in the module doc; at the end every node comes
//! back and the chains must converge to full, valid chains.
//!
//! Rounds run through a [`Rebalancer`] on a simulated clock, so preferred-head moves
//! (rule 5) happen among the chaos. Every move is checked: its new head is the chain's
//! preferred node, a member live under its admitted incarnation, of a chain with no
//! learner at `min(RF, live)` members, started and last written at least a cooldown ago;
//! moves are at least `60 s / cap` apart and never more than the cap in any minute; the
//! preferred node never changes. Once everything is stable, every chain whose preferred
//! node is a member is headed by it.
//!
//! `STRAND_SEEDS=N` runs N seeds (default 1 000; `STRAND_SEEDS=100000` is the long mode);
//! `STRAND_SEED=S` runs only S. A failure message starts with the seed and the command
//! replaying it (see `seeds/mod.rs`).

mod seeds;

use std::collections::{BTreeMap, VecDeque};

use rand::Rng;
use seeds::{Replay, SimRng};
use strand_core::chain::{Epoch, NodeId};
use strand_core::control::{
    reconcile, Chain, ChainWrite, ClusterState, InSync, Incarnation, PartitionKey, RebalanceConfig, Rebalancer,
    TopicSpec, REBALANCE_WINDOW_MS,
};

const NODES: u32 = 5;
const STEPS: usize = 150;
const COOLDOWN_MS: u64 = 1_000;
const MOVES_PER_MINUTE: u32 = 20;
const REBALANCE: RebalanceConfig = RebalanceConfig { cooldown_ms: COOLDOWN_MS, moves_per_minute_max: MOVES_PER_MINUTE };

/// What one run compared, so a run over nothing cannot pass silently.
#[derive(Default, Debug)]
struct Counts {
    writes: usize,
    promotions: usize,
    removals: usize,
    learners: usize,
    survivor_readmits: usize,
    head_moves: usize,
    preferred_heads: usize,
}

struct Sim {
    rng: SimRng,
    state: ClusterState,
    next_incarnation: i64,
    next_topic: u32,
    counts: Counts,
    now_ms: u64,
    rebalancer: Rebalancer,
    /// When each node's current incarnation started.
    started_ms: BTreeMap<NodeId, u64>,
    /// When each chain was last written.
    written_ms: BTreeMap<PartitionKey, u64>,
    /// Times of the head moves of the last minute.
    moves_ms: VecDeque<u64>,
}

impl Sim {
    fn new(seed: u64) -> Sim {
        let mut sim = Sim {
            rng: seeds::rng(seed),
            state: ClusterState::default(),
            next_incarnation: 100,
            next_topic: 0,
            counts: Counts::default(),
            now_ms: 0,
            rebalancer: Rebalancer::new(REBALANCE),
            started_ms: BTreeMap::new(),
            written_ms: BTreeMap::new(),
            moves_ms: VecDeque::new(),
        };
        for n in 1..=NODES {
            sim.start(n);
        }
        sim
    }

    fn start(&mut self, node: u32) {
        self.next_incarnation += 1;
        self.state.live.insert(NodeId(node), Incarnation(self.next_incarnation));
        self.started_ms.insert(NodeId(node), self.now_ms);
    }

    fn step(&mut self) {
        self.now_ms += self.rng.gen_range(0..400);
        match self.rng.gen_range(0..100) {
            0..=9 => {
                let node = self.rng.gen_range(1..=NODES);
                self.state.live.remove(&NodeId(node));
            }
            // A (re)start: a new incarnation, whether or not the old lease expired yet.
            10..=21 => {
                let node = self.rng.gen_range(1..=NODES);
                self.start(node);
            }
            22..=27 => self.create_topic(),
            28..=29 => self.delete_topic(),
            30..=49 => self.report(),
            50..=54 => {
                let keys: Vec<_> = self.state.insync.keys().cloned().collect();
                if !keys.is_empty() {
                    let key = &keys[self.rng.gen_range(0..keys.len())];
                    self.state.insync.remove(key);
                }
            }
            _ => self.round(),
        }
    }

    fn create_topic(&mut self) {
        self.next_topic += 1;
        let spec = TopicSpec { partitions: self.rng.gen_range(1..=4), replication_factor: self.rng.gen_range(1..=4) };
        self.state.topics.insert(format!("t{}", self.next_topic), spec);
    }

    fn delete_topic(&mut self) {
        let names: Vec<String> = self.state.topics.keys().cloned().collect();
        if names.is_empty() {
            return;
        }
        let name = names[self.rng.gen_range(0..names.len())].clone();
        self.state.topics.remove(&name);
        self.state.chains.retain(|(t, _), _| *t != name);
        self.state.insync.retain(|(t, _), _| *t != name);
    }

    /// A tail's report: usually exact, sometimes for an old epoch or the wrong node (late
    /// or confused reports must not promote anything).
    fn report(&mut self) {
        let with_learner: Vec<_> =
            self.state.chains.iter().filter_map(|(k, c)| c.learner.map(|l| (k.clone(), c.epoch, l))).collect();
        if with_learner.is_empty() {
            return;
        }
        let (key, epoch, learner) = with_learner[self.rng.gen_range(0..with_learner.len())].clone();
        let report = match self.rng.gen_range(0..10) {
            0 => InSync { epoch: Epoch(epoch.0.saturating_sub(1)), learner },
            1 => InSync { epoch, learner: NodeId(self.rng.gen_range(1..=NODES)) },
            _ => InSync { epoch, learner },
        };
        self.state.insync.insert(key, report);
    }

    /// One controller round; some writes are lost (their guarded transaction failed).
    fn round(&mut self) {
        let mut twin = self.rebalancer.clone();
        let writes = self.rebalancer.round(self.now_ms, &self.state);
        assert_eq!(writes, twin.round(self.now_ms, &self.state), "deterministic");
        let lose = self.rng.gen_bool(0.1);
        for write in writes {
            self.check(&write);
            if lose && self.rng.gen_bool(0.5) {
                continue;
            }
            self.apply(write);
        }
    }

    fn apply(&mut self, write: ChainWrite) {
        let key = (write.topic, write.partition);
        self.written_ms.insert(key.clone(), self.now_ms);
        self.state.chains.insert(key, write.chain);
    }

    /// A write that keeps members and learner but changes the head is a rule-5 move.
    fn check_move(&mut self, key: &PartitionKey, prev: &Chain, next: &Chain) {
        assert!(
            prev.preferred.is_none() || next.preferred == prev.preferred,
            "preferred changed: {prev:?} -> {next:?}"
        );
        let mut before = prev.members.clone();
        let mut after = next.members.clone();
        before.sort();
        after.sort();
        if before != after || prev.members[0] == next.members[0] || prev.learner != next.learner {
            return;
        }
        self.counts.head_moves += 1;
        let head = next.members[0];
        let rf = usize::from(self.state.topics[&key.0].replication_factor);
        assert_eq!(prev.preferred, Some(head), "a move goes to the preferred head: {prev:?} -> {next:?}");
        assert!(self.valid(prev, head), "a move goes to a live admitted member: {prev:?}");
        assert!(prev.learner.is_none(), "no move while a learner is pending: {prev:?}");
        assert!(prev.members.len() >= rf.min(self.state.live.len()), "no move in a short chain: {prev:?}");
        assert!(prev.members.iter().all(|m| self.valid(prev, *m)), "no move while a member is invalid: {prev:?}");
        assert!(self.now_ms >= self.started_ms[&head] + COOLDOWN_MS, "moved to a node within its cooldown");
        assert!(self.now_ms >= self.written_ms[key] + COOLDOWN_MS, "moved a chain within its cooldown");
        let spacing_ms = REBALANCE_WINDOW_MS / u64::from(MOVES_PER_MINUTE);
        if let Some(last) = self.moves_ms.back() {
            assert!(self.now_ms >= last + spacing_ms, "moves {last} and {} closer than {spacing_ms} ms", self.now_ms);
        }
        self.moves_ms.push_back(self.now_ms);
        while self.moves_ms.front().is_some_and(|t| *t + REBALANCE_WINDOW_MS <= self.now_ms) {
            self.moves_ms.pop_front();
        }
        assert!(self.moves_ms.len() <= MOVES_PER_MINUTE as usize, "more moves than the cap in a minute");
    }

    fn valid(&self, chain: &Chain, node: NodeId) -> bool {
        self.state.live.contains_key(&node) && self.state.live.get(&node) == chain.incarnations.get(&node)
    }

    fn check(&mut self, write: &ChainWrite) {
        self.counts.writes += 1;
        let key = (write.topic.clone(), write.partition);
        let next = &write.chain;
        assert!(self.state.topics.contains_key(&write.topic), "no chain for a missing topic");
        check_shape(next);
        let Some(prev) = self.state.chains.get(&key).cloned() else {
            assert_eq!(next.epoch, Epoch(1));
            assert_eq!(next.preferred, next.members.first().copied(), "a new chain prefers its head");
            assert!(next.learner.is_none());
            for m in &next.members {
                assert_eq!(next.incarnations.get(m), self.state.live.get(m), "new chain admits live incarnations");
            }
            return;
        };
        assert_eq!(next.epoch, Epoch(prev.epoch.0 + 1), "epoch + 1 per write");
        self.check_move(&key, &prev, next);
        let prev_all_dead = prev.members.iter().all(|m| !self.valid(&prev, *m));
        for m in &prev.members {
            if self.valid(&prev, *m) {
                assert!(next.members.contains(m), "valid member {m:?} removed: {prev:?} -> {next:?}");
            } else if !next.members.contains(m) {
                self.counts.removals += 1;
            }
        }
        for m in &next.members {
            let same_as_member = prev.members.contains(m) && prev.incarnations.get(m) == next.incarnations.get(m);
            let promoted = prev.learner == Some(*m) && prev.incarnations.get(m) == next.incarnations.get(m);
            let survivor = prev_all_dead && next.members == [*m] && prev.members.first() == Some(m);
            assert!(same_as_member || promoted || survivor, "{m:?} entered not as learner: {prev:?} -> {next:?}");
            if promoted && !same_as_member {
                self.counts.promotions += 1;
                let report = self.state.insync.get(&key);
                assert_eq!(
                    report,
                    Some(&InSync { epoch: prev.epoch, learner: *m }),
                    "promotion needs the exact report"
                );
            }
            if survivor && !same_as_member {
                self.counts.survivor_readmits += 1;
                assert_eq!(next.incarnations.get(m), self.state.live.get(m));
            }
        }
        if let Some(l) = next.learner {
            if prev.learner != Some(l) || prev.incarnations.get(&l) != next.incarnations.get(&l) {
                self.counts.learners += 1;
                assert_eq!(next.incarnations.get(&l), self.state.live.get(&l), "a learner admits the live incarnation");
            }
        }
    }
}

fn check_shape(chain: &Chain) {
    assert!(!chain.members.is_empty(), "members never empty");
    let mut sorted = chain.members.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(sorted.len(), chain.members.len(), "no duplicate member");
    if let Some(l) = chain.learner {
        assert!(!chain.members.contains(&l), "the learner is not a member");
    }
    let mut named: Vec<NodeId> = chain.members.iter().copied().chain(chain.learner).collect();
    named.sort();
    assert_eq!(named, chain.incarnations.keys().copied().collect::<Vec<_>>(), "incarnations match");
}

/// Every node back, exact reports: the chains converge to `min(RF, live)` valid members.
fn converge(sim: &mut Sim) {
    for n in 1..=NODES {
        sim.start(n);
    }
    // Quiet long enough for every cooldown and the move spacing to have passed.
    let quiet_rounds = (COOLDOWN_MS + REBALANCE_WINDOW_MS / u64::from(MOVES_PER_MINUTE)) / 500 + 2;
    let mut quiet = 0;
    for _ in 0..2_000 {
        sim.now_ms += 500;
        let writes = sim.rebalancer.round(sim.now_ms, &sim.state);
        quiet = if writes.is_empty() { quiet + 1 } else { 0 };
        if quiet > quiet_rounds {
            break;
        }
        for write in writes {
            sim.check(&write);
            sim.apply(write);
        }
        let reports: BTreeMap<_, _> = sim
            .state
            .chains
            .iter()
            .filter_map(|(k, c)| c.learner.map(|l| (k.clone(), InSync { epoch: c.epoch, learner: l })))
            .collect();
        sim.state.insync.extend(reports);
    }
    assert!(reconcile(&sim.state).is_empty(), "did not converge");
    for ((topic, _), chain) in &sim.state.chains {
        let rf = usize::from(sim.state.topics[topic].replication_factor);
        assert_eq!(chain.members.len(), rf.min(NODES as usize), "{topic}: {chain:?}");
        assert!(chain.members.iter().all(|m| sim.valid(chain, *m)));
        assert!(chain.learner.is_none());
        let preferred = chain.preferred.expect("every chain of the simulation has a preferred head");
        if chain.members.contains(&preferred) {
            assert_eq!(chain.members[0], preferred, "{topic}: stable but not headed by its preferred node: {chain:?}");
            sim.counts.preferred_heads += 1;
        }
    }
}

fn run(seed: u64) -> Counts {
    let mut sim = Sim::new(seed);
    for _ in 0..STEPS {
        sim.step();
    }
    converge(&mut sim);
    sim.counts
}

const SEEDS_DEFAULT: u64 = 1_000;
const REPLAY: Replay =
    Replay { package: "strand-core", target: Some("control_reconcile"), test_fn: "seeded_simulation" };

#[test]
fn seeded_simulation() {
    if let Some(seed) = seeds::seed_replayed() {
        println!("seed {seed}: {:?}", REPLAY.run(seed, run));
        return;
    }
    let seeds = seeds::seed_count(SEEDS_DEFAULT);
    let mut total = Counts::default();
    for seed in 0..seeds {
        let counts = REPLAY.run(seed, run);
        total.writes += counts.writes;
        total.promotions += counts.promotions;
        total.removals += counts.removals;
        total.learners += counts.learners;
        total.survivor_readmits += counts.survivor_readmits;
        total.head_moves += counts.head_moves;
        total.preferred_heads += counts.preferred_heads;
    }
    println!("{seeds} seeds: {total:?}");
    assert!(total.writes > seeds as usize * 10, "too few writes checked: {total:?}");
    for (what, n) in [
        ("promotions", total.promotions),
        ("removals", total.removals),
        ("learners", total.learners),
        ("survivor readmits", total.survivor_readmits),
        ("head moves", total.head_moves),
        ("preferred heads", total.preferred_heads),
    ] {
        assert!(n > 0, "the simulation never exercised {what}: {total:?}");
    }
}
