//! Compaction of `__consumer_offsets` by snapshot: the bookkeeping half (the coordinator
//! drives it, `coordinator.rs`).
//!
//! Every commit appends records; left alone, a replay at start reads every commit ever
//! made. Instead, once an offsets partition took `records_min` records since its last
//! snapshot, and at least twice as many as it has live offsets, the coordinator writes a
//! *snapshot*: a [`SnapshotMarker`](super::SnapshotMarker) followed by one commit record
//! per live durable offset of the partition's groups, in one append. Everything before
//! the marker is then redundant, and the shell deletes the closed segments below it once
//! the marker and its records are durable (and, in a chain, committed). Replay reads at
//! most one partly stale segment, the snapshot and the records since: bounded by the live
//! offsets, not by the commits ever made.
//!
//! Why this is safe: the snapshot is taken only when no persist is in flight (phase
//! `Draining` holds back new persists until the ones issued before it are reported),
//! so every durable value it restates is the newest issued for its partition, and no
//! record issued before the snapshot can land after it. Persists issued while the snapshot
//! drains or is in flight are held and released only once it is reported, so they land
//! after it in the log and win on replay, as they must. A failed snapshot changes
//! nothing stored that matters (a marker whose records are incomplete is never acted on)
//! and is retried after `records_min` more records.
//!
//! Invariant: `held` only ever holds persists of `persists` (the coordinator's in-flight
//! map), and is empty in phase `Idle`.

use std::collections::{BTreeMap, VecDeque};

use super::types::Action;

/// Where a snapshot stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Phase {
    Idle,
    /// Partition due; waiting for the persists issued before it to be reported.
    Draining {
        partition: u32,
    },
    /// The snapshot's append is issued under `persist_id`.
    InFlight {
        persist_id: u64,
        partition: u32,
    },
}

#[derive(Debug)]
pub(crate) struct Compaction {
    records_min: u64,
    /// Per offsets partition: records issued (or replayed) since its last snapshot marker.
    since: BTreeMap<u32, u64>,
    /// Per offsets partition: `since` must reach this before the next attempt (raised after
    /// a failed snapshot, and while live offsets outnumber half the records).
    next_at: BTreeMap<u32, u64>,
    pub(crate) phase: Phase,
    /// Persist actions issued while not `Idle`, in issue order.
    held: VecDeque<Action>,
}

impl Compaction {
    pub(crate) fn new(records_min: u64) -> Compaction {
        assert!(records_min >= 1, "a snapshot per record would never end");
        Compaction {
            records_min,
            since: BTreeMap::new(),
            next_at: BTreeMap::new(),
            phase: Phase::Idle,
            held: VecDeque::new(),
        }
    }

    /// `n` records were issued to (or replayed from) `partition`.
    pub(crate) fn count(&mut self, partition: u32, n: u64) {
        *self.since.entry(partition).or_default() += n;
    }

    /// A snapshot of `partition` is durable (written now, or replayed): start counting anew.
    pub(crate) fn snapshotted(&mut self, partition: u32) {
        self.since.insert(partition, 0);
        self.next_at.remove(&partition);
    }

    /// Records since `partition`'s last snapshot.
    pub(crate) fn since(&self, partition: u32) -> u64 {
        self.since.get(&partition).copied().unwrap_or(0)
    }

    /// Partitions that took at least `records_min` records (and any raised bound) since
    /// their last snapshot, in order.
    pub(crate) fn candidates(&self) -> Vec<u32> {
        let bound = |p: &u32| self.next_at.get(p).copied().unwrap_or(0).max(self.records_min);
        self.since.iter().filter(|(p, n)| **n >= bound(p)).map(|(p, _)| *p).collect()
    }

    /// `partition` is not worth a snapshot before `since` reaches `at`.
    pub(crate) fn defer(&mut self, partition: u32, at: u64) {
        self.next_at.insert(partition, at);
    }

    /// The snapshot of `partition` failed: try again after `records_min` more records.
    pub(crate) fn failed(&mut self, partition: u32) {
        let at = self.since(partition) + self.records_min;
        self.next_at.insert(partition, at);
    }

    /// Whether new persists must be held back.
    pub(crate) fn holding(&self) -> bool {
        self.phase != Phase::Idle
    }

    pub(crate) fn hold(&mut self, action: Action) {
        assert!(self.holding(), "persists are held only around a snapshot");
        self.held.push_back(action);
    }

    pub(crate) fn held_len(&self) -> usize {
        self.held.len()
    }

    /// Ends the snapshot: back to `Idle`, handing back the held persists in issue order.
    pub(crate) fn release(&mut self) -> VecDeque<Action> {
        self.phase = Phase::Idle;
        std::mem::take(&mut self.held)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn due_after_the_minimum_and_again_after_a_failure() {
        let mut c = Compaction::new(10);
        c.count(0, 9);
        c.count(1, 3);
        assert!(c.candidates().is_empty());
        c.count(0, 1);
        assert_eq!(c.candidates(), vec![0]);
        c.failed(0);
        assert!(c.candidates().is_empty(), "a failed snapshot waits for more records");
        c.count(0, 10);
        assert_eq!(c.candidates(), vec![0]);
        c.defer(0, 25);
        assert!(c.candidates().is_empty());
        c.snapshotted(0);
        assert_eq!(c.since(0), 0);
        c.count(0, 10);
        assert_eq!(c.candidates(), vec![0], "a snapshot clears the deferral");
    }

    #[test]
    fn held_persists_come_back_in_order() {
        let mut c = Compaction::new(1);
        assert!(!c.holding());
        c.phase = Phase::Draining { partition: 0 };
        for persist_id in 1..=3 {
            c.hold(Action::PersistOffsets { persist_id, records: Vec::new() });
        }
        assert_eq!(c.held_len(), 3);
        let ids: Vec<u64> = c
            .release()
            .into_iter()
            .map(|a| match a {
                Action::PersistOffsets { persist_id, .. } => persist_id,
                other => panic!("unexpected {other:?}"),
            })
            .collect();
        assert_eq!(ids, vec![1, 2, 3]);
        assert!(!c.holding());
    }

    #[test]
    #[should_panic(expected = "held only around a snapshot")]
    fn holding_while_idle_is_a_bug() {
        Compaction::new(1).hold(Action::PersistOffsets { persist_id: 1, records: Vec::new() });
    }
}
