//! Fast failure detection, IO-free: when to probe a peer that another node reported
//! (its replication connection reset or closed), and what a probe proves.
//!
//! Lease expiry stays the bound for a node that is hung or cut off (its kernel still
//! accepts connections, or nothing answers at all). A crashed process is different: its
//! host's kernel refuses every connection to its ports at once. So a report only starts
//! a probe of the suspect's advertised ports, and only a *refused* connection convicts:
//! the registered incarnation is then revoked (its lease), which removes it from the
//! cluster exactly as an expired lease would, a TTL sooner.
//!
//! A wrong verdict cannot lose data: revoking a live node's lease is what a long pause
//! already does. The node registers again under a new incarnation, the controller drops
//! the old one from its chains with an epoch bump (fencing it), and it re-enters as a
//! learner. The chain simulator drives this path with probes that lie.
//!
//! Invariants (asserted): at most one probe per suspect in flight; a verdict applies only
//! to the incarnation that was probed; a suspect is probed at most once per
//! [`Suspicions::probe_gap_ms`] (a flapping connection cannot turn into a probe storm).

use std::collections::BTreeMap;

use crate::control::Incarnation;

/// Default least time between two probes of one node.
pub const PROBE_GAP_MS_DEFAULT: u64 = 250;
/// Pauses before probing again while a probe did not convict: a SIGKILLed process's
/// connections can close (the report) a moment before its listening sockets do, so one
/// early probe may still connect. Then left to the lease.
pub const RECHECK_MS: [u64; 3] = [20, 100, 400];
/// Most suspects tracked at once (reports beyond it are dropped until probes finish).
pub const SUSPECTS_MAX: usize = 1024;

/// What one connection attempt to one of the suspect's ports gave.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Probe {
    /// Connection refused: nothing listens there (the process is gone).
    Refused,
    /// Connected: something listens (the process exists, possibly paused).
    Accepted,
    /// No answer in time, or another error: proves nothing.
    NoAnswer,
}

/// What the caller does after a probe.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Revoke this incarnation's lease now.
    Down(Incarnation),
    /// Every port answered: the report was wrong (a peer closed a link on purpose).
    Alive,
    /// Inconclusive (or the node re-registered meanwhile): leave it to the lease.
    Unknown,
    /// Not convicted yet: probe again after this many ms, then call `probed` again.
    Recheck(u64),
}

#[derive(Debug, Clone, Copy)]
struct Suspect {
    incarnation: Incarnation,
    probing: bool,
    /// Probes of the current round so far (a round = a report plus its rechecks).
    probes: usize,
    probed_at_ms: Option<u64>,
}

/// Reports received and probes in flight, per node id.
#[derive(Debug)]
pub struct Suspicions {
    suspects: BTreeMap<u32, Suspect>,
    probe_gap_ms: u64,
}

impl Suspicions {
    pub fn new(probe_gap_ms: u64) -> Suspicions {
        Suspicions { suspects: BTreeMap::new(), probe_gap_ms }
    }

    /// The least time between two probes of one node.
    pub fn probe_gap_ms(&self) -> u64 {
        self.probe_gap_ms
    }

    /// `node`, registered as `incarnation` in the caller's view, was reported. True when
    /// the caller must probe it now (and then call [`Suspicions::probed`]); false when a
    /// probe is in flight, one ran less than the gap ago for the same incarnation, or too
    /// many suspects are tracked.
    pub fn report(&mut self, now_ms: u64, node: u32, incarnation: Incarnation) -> bool {
        if !self.suspects.contains_key(&node) && self.suspects.len() >= SUSPECTS_MAX {
            return false;
        }
        let gap = self.probe_gap_ms;
        let fresh = Suspect { incarnation, probing: false, probes: 0, probed_at_ms: None };
        let suspect = self.suspects.entry(node).or_insert(fresh);
        if suspect.probing {
            return false;
        }
        let recent = suspect.probed_at_ms.is_some_and(|at| now_ms < at.saturating_add(gap));
        if recent && suspect.incarnation == incarnation {
            return false;
        }
        *suspect = Suspect { incarnation, probing: true, probes: 0, probed_at_ms: None };
        true
    }

    /// The probe of `node` ended with `results` (one per port; `current` = its
    /// incarnation in the caller's view now, `None` if it is gone from the view).
    pub fn probed(&mut self, now_ms: u64, node: u32, results: &[Probe], current: Option<Incarnation>) -> Verdict {
        let Some(suspect) = self.suspects.get_mut(&node) else {
            return Verdict::Unknown;
        };
        assert!(suspect.probing, "probe result for node {node} without a probe in flight");
        suspect.probed_at_ms = Some(now_ms);
        suspect.probes += 1;
        let probed = suspect.incarnation;
        let verdict = match verdict(results) {
            // Gone from the view (lease already revoked or expired), or registered again
            // since: the probed incarnation is not the one there now, nothing to revoke.
            Verdict::Down(_) if current != Some(probed) => Verdict::Unknown,
            Verdict::Down(_) => Verdict::Down(probed),
            _ if current != Some(probed) => Verdict::Unknown,
            other => match RECHECK_MS.get(suspect.probes - 1) {
                Some(&after) => Verdict::Recheck(after),
                None => other,
            },
        };
        suspect.probing = matches!(verdict, Verdict::Recheck(_));
        verdict
    }

    /// Forgets suspects whose last probe ended before `now_ms - gap` (bounded memory).
    pub fn expire(&mut self, now_ms: u64) {
        let gap = self.probe_gap_ms;
        self.suspects.retain(|_, s| s.probing || s.probed_at_ms.is_some_and(|at| now_ms < at.saturating_add(gap)));
    }

    /// Nodes with a probe in flight.
    pub fn probing(&self) -> usize {
        self.suspects.values().filter(|s| s.probing).count()
    }
}

/// A refused port convicts (a live process listens on every port it advertised); all
/// ports accepting clears; anything else proves nothing.
fn verdict(results: &[Probe]) -> Verdict {
    if results.contains(&Probe::Refused) {
        Verdict::Down(Incarnation(0))
    } else if !results.is_empty() && results.iter().all(|r| *r == Probe::Accepted) {
        Verdict::Alive
    } else {
        Verdict::Unknown
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: Incarnation = Incarnation(7);
    const B: Incarnation = Incarnation(8);

    #[test]
    fn a_refused_port_convicts_the_probed_incarnation_only() {
        let mut s = Suspicions::new(100);
        assert!(s.report(0, 2, A));
        assert_eq!(s.probed(1, 2, &[Probe::Accepted, Probe::Refused], Some(A)), Verdict::Down(A));
        // Re-registered meanwhile (a fast restart): nothing to revoke.
        assert!(s.report(500, 2, A));
        assert_eq!(s.probed(501, 2, &[Probe::Refused], Some(B)), Verdict::Unknown);
        // Already gone from the view.
        assert!(s.report(1000, 2, A));
        assert_eq!(s.probed(1001, 2, &[Probe::Refused], None), Verdict::Unknown);
    }

    /// Probes `node` until the round ends; the final verdict and the recheck pauses.
    fn round(s: &mut Suspicions, node: u32, results: &[Probe]) -> (Verdict, Vec<u64>) {
        let mut pauses = Vec::new();
        loop {
            match s.probed(0, node, results, Some(A)) {
                Verdict::Recheck(after) => pauses.push(after),
                done => return (done, pauses),
            }
        }
    }

    #[test]
    fn only_refusals_convict_after_every_recheck() {
        let mut s = Suspicions::new(100);
        for (results, want) in [
            (vec![Probe::Accepted, Probe::Accepted], Verdict::Alive),
            (vec![Probe::Accepted, Probe::NoAnswer], Verdict::Unknown),
            (vec![Probe::NoAnswer], Verdict::Unknown),
            (vec![], Verdict::Unknown),
        ] {
            assert!(s.report(0, 3, A));
            assert_eq!(round(&mut s, 3, &results), (want, RECHECK_MS.to_vec()), "{results:?}");
            s.expire(1_000);
        }
    }

    #[test]
    fn a_port_still_open_at_the_first_probe_is_rechecked() {
        let mut s = Suspicions::new(100);
        assert!(s.report(0, 4, A));
        assert_eq!(s.probed(1, 4, &[Probe::Accepted], Some(A)), Verdict::Recheck(RECHECK_MS[0]));
        assert!(!s.report(2, 4, A), "the round is still running");
        assert_eq!(s.probed(21, 4, &[Probe::Refused], Some(A)), Verdict::Down(A));
        assert_eq!(s.probing(), 0);
    }

    #[test]
    fn one_probe_in_flight_and_a_gap_between_probes() {
        let mut s = Suspicions::new(100);
        assert!(s.report(0, 1, A));
        assert!(!s.report(5, 1, A), "a probe is in flight");
        assert_eq!(s.probing(), 1);
        assert_eq!(round(&mut s, 1, &[Probe::Accepted]).0, Verdict::Alive);
        assert_eq!(s.probing(), 0);
        s.suspects.get_mut(&1).expect("tracked").probed_at_ms = Some(10);
        assert!(!s.report(50, 1, A), "probed 40 ms ago");
        assert!(s.report(50, 1, B), "a new incarnation is probed at once");
        assert_eq!(s.probed(60, 1, &[Probe::Accepted], Some(A)), Verdict::Unknown, "re-registered: round over");
        assert!(s.report(160, 1, B), "the gap passed");
        assert_eq!(s.probed(161, 1, &[Probe::NoAnswer], Some(B)), Verdict::Recheck(RECHECK_MS[0]));
        s.expire(1_000);
        assert_eq!(s.suspects.len(), 1, "a round in flight is kept");
        assert_eq!(s.probed(1_000, 1, &[Probe::NoAnswer], None), Verdict::Unknown, "gone from the view");
        s.expire(2_000);
        assert_eq!(s.suspects.len(), 0);
        assert_eq!(s.probed(1_001, 1, &[Probe::Refused], Some(B)), Verdict::Unknown, "no probe was started");
    }

    #[test]
    fn tracked_suspects_are_bounded() {
        let mut s = Suspicions::new(100);
        for node in 0..SUSPECTS_MAX as u32 {
            assert!(s.report(0, node, A));
        }
        assert!(!s.report(0, u32::MAX, A));
    }
}
