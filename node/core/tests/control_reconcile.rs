//! Seeded randomized simulation of the controller's decision (`strand_core::control`):
//! node deaths and restarts (also restarts that beat the lease expiry), topic creation
//! and deletion, in-sync reports that are exact, stale, wrong, lost or late, and chain
//! writes that get lost (a failed guarded transaction). Every write of every round is
//! checked against the invariants listed in the module doc; at the end every node comes
//! back and the chains must converge to full, valid chains.
//!
//! `CONTROL_SIM_SEEDS=N` runs N seeds (default 1 000); `CONTROL_SIM_SEED=S` runs only S.

use std::collections::BTreeMap;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use strand_core::chain::{Epoch, NodeId};
use strand_core::control::{reconcile, Chain, ChainWrite, ClusterState, InSync, Incarnation, TopicSpec};

const NODES: u32 = 5;
const STEPS: usize = 150;

/// What one run compared, so a run over nothing cannot pass silently.
#[derive(Default, Debug)]
struct Counts {
    writes: usize,
    promotions: usize,
    removals: usize,
    learners: usize,
    survivor_readmits: usize,
}

struct Sim {
    rng: StdRng,
    state: ClusterState,
    next_incarnation: i64,
    next_topic: u32,
    counts: Counts,
}

impl Sim {
    fn new(seed: u64) -> Sim {
        let mut sim = Sim {
            rng: StdRng::seed_from_u64(seed),
            state: ClusterState::default(),
            next_incarnation: 100,
            next_topic: 0,
            counts: Counts::default(),
        };
        for n in 1..=NODES {
            sim.start(n);
        }
        sim
    }

    fn start(&mut self, node: u32) {
        self.next_incarnation += 1;
        self.state.live.insert(NodeId(node), Incarnation(self.next_incarnation));
    }

    fn step(&mut self) {
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
        let writes = reconcile(&self.state);
        assert_eq!(writes, reconcile(&self.state), "deterministic");
        let lose = self.rng.gen_bool(0.1);
        for write in writes {
            self.check(&write);
            if lose && self.rng.gen_bool(0.5) {
                continue;
            }
            self.state.chains.insert((write.topic.clone(), write.partition), write.chain);
        }
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
            assert!(next.learner.is_none());
            for m in &next.members {
                assert_eq!(next.incarnations.get(m), self.state.live.get(m), "new chain admits live incarnations");
            }
            return;
        };
        assert_eq!(next.epoch, Epoch(prev.epoch.0 + 1), "epoch + 1 per write");
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
    for _ in 0..50 {
        let writes = reconcile(&sim.state);
        if writes.is_empty() {
            break;
        }
        for write in writes {
            sim.check(&write);
            sim.state.chains.insert((write.topic, write.partition), write.chain);
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

#[test]
fn seeded_simulation() {
    if let Ok(seed) = std::env::var("CONTROL_SIM_SEED") {
        let seed: u64 = seed.parse().expect("CONTROL_SIM_SEED is a number");
        println!("seed {seed}: {:?}", run(seed));
        return;
    }
    let seeds: u64 = std::env::var("CONTROL_SIM_SEEDS").ok().and_then(|s| s.parse().ok()).unwrap_or(1_000);
    let mut total = Counts::default();
    for seed in 0..seeds {
        let result = std::panic::catch_unwind(|| run(seed));
        let counts = result.unwrap_or_else(|_| panic!("seed {seed} failed; rerun with CONTROL_SIM_SEED={seed}"));
        total.writes += counts.writes;
        total.promotions += counts.promotions;
        total.removals += counts.removals;
        total.learners += counts.learners;
        total.survivor_readmits += counts.survivor_readmits;
    }
    println!("{seeds} seeds: {total:?}");
    assert!(total.writes > seeds as usize * 10, "too few writes checked: {total:?}");
    for (what, n) in [
        ("promotions", total.promotions),
        ("removals", total.removals),
        ("learners", total.learners),
        ("survivor readmits", total.survivor_readmits),
    ] {
        assert!(n > 0, "the simulation never exercised {what}: {total:?}");
    }
}
