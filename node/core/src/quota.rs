//! Byte-rate quotas with Kafka's semantics: a request over its principal's quota is still
//! served, its answer says how long the client should wait (`throttle_time_ms`), and the node
//! stops reading that connection for as long (so a client that ignores the hint is slowed
//! all the same).
//!
//! The meter is GCRA (the generic cell rate algorithm, a token bucket written as one number):
//! per principal and direction a *theoretical arrival time* `tat`, the instant by which
//! everything charged so far would have been sent at exactly the quota rate. Charging `n`
//! bytes moves it to `max(tat, now) + n / rate`; the request is over quota by however far
//! `tat` now lies beyond `now + burst`. One number makes the shell lock-free: shards charge
//! the same principal with a compare-and-swap on an `AtomicU64` (see `node/src/quota.rs`).
//!
//! Invariants (checked by the tests below): a client that waits out every throttle it is
//! told gets at most `rate` bytes per second over any interval, plus one `burst` of credit and
//! one request; a client within its quota is never throttled; a throttle never exceeds
//! [`THROTTLE_MAX_NS`] and `tat` never runs further ahead of `now` than `burst` plus that.

/// Longest throttle one answer asks for: Kafka clients time a request out after 30 s by
/// default, so a longer wait would turn a throttle into a failure.
pub const THROTTLE_MAX_NS: u64 = 30 * NANOS_PER_SEC;

const NANOS_PER_SEC: u64 = 1_000_000_000;

/// A quota: bytes per second, and how much credit an idle client may save up (in time at
/// that rate) to spend in one burst.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quota {
    /// Bytes per second; at least 1.
    pub bytes_per_sec: u64,
    /// Credit an idle client saves up, as nanoseconds at `bytes_per_sec`.
    pub burst_ns: u64,
}

/// Credit a quota allows by default: one second at its rate (Kafka measures rates over
/// windows of a second).
pub const BURST_DEFAULT_NS: u64 = NANOS_PER_SEC;

impl Quota {
    /// A quota of `bytes_per_sec` (at least 1) with a one-second burst.
    pub fn per_sec(bytes_per_sec: u64) -> Self {
        Quota { bytes_per_sec: bytes_per_sec.max(1), burst_ns: BURST_DEFAULT_NS }
    }

    /// Nanoseconds `bytes` take at this quota's rate (saturating).
    pub fn cost_ns(&self, bytes: u64) -> u64 {
        let ns = u128::from(bytes) * u128::from(NANOS_PER_SEC) / u128::from(self.bytes_per_sec.max(1));
        u64::try_from(ns).unwrap_or(u64::MAX)
    }
}

/// The outcome of charging one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Charge {
    /// The meter's new theoretical arrival time.
    pub tat_ns: u64,
    /// How long the client should wait before its next request; 0 within the quota.
    pub throttle_ns: u64,
}

/// Charges `bytes` at `now_ns` against a meter at `tat_ns` (both on one monotonic clock).
pub fn charge(quota: Quota, tat_ns: u64, now_ns: u64, bytes: u64) -> Charge {
    let start = tat_ns.max(now_ns);
    // A request larger than the whole allowance must not push the meter out of reach: the
    // debt kept is at most what the longest throttle pays back.
    let ceiling = now_ns.saturating_add(quota.burst_ns).saturating_add(THROTTLE_MAX_NS);
    let tat = start.saturating_add(quota.cost_ns(bytes)).min(ceiling);
    let throttle = tat.saturating_sub(now_ns.saturating_add(quota.burst_ns)).min(THROTTLE_MAX_NS);
    debug_assert!(tat >= now_ns && throttle <= THROTTLE_MAX_NS);
    Charge { tat_ns: tat, throttle_ns: throttle }
}

/// Throttle in whole milliseconds, rounded up (a client waiting 0 ms would not wait at all).
pub fn throttle_ms(throttle_ns: u64) -> u32 {
    let ms = throttle_ns.div_ceil(1_000_000);
    u32::try_from(ms).unwrap_or(u32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use rand::Rng;

    const MS: u64 = 1_000_000;

    #[test]
    fn within_quota_is_never_throttled() {
        let q = Quota::per_sec(1_000_000);
        let mut tat = 0;
        // 1 000 bytes every 1 ms = exactly the quota.
        for i in 0..10_000u64 {
            let c = charge(q, tat, i * MS, 1_000);
            assert_eq!(c.throttle_ns, 0, "request {i}");
            tat = c.tat_ns;
        }
    }

    #[test]
    fn burst_is_free_then_the_rate_holds() {
        let q = Quota::per_sec(1_000_000);
        // A second's credit (1 MB) at once: free.
        let c = charge(q, 0, 0, 1_000_000);
        assert_eq!(c.throttle_ns, 0);
        // The next 500 kB at the same instant is half a second over.
        let c = charge(q, c.tat_ns, 0, 500_000);
        assert_eq!(c.throttle_ns, 500 * MS);
        assert_eq!(throttle_ms(c.throttle_ns), 500);
    }

    #[test]
    fn one_huge_request_is_capped() {
        let q = Quota::per_sec(1);
        let c = charge(q, 0, 5, u64::MAX);
        assert_eq!(c.throttle_ns, THROTTLE_MAX_NS);
        assert_eq!(c.tat_ns, 5 + q.burst_ns + THROTTLE_MAX_NS);
        // An idle gap pays the debt back.
        let later = c.tat_ns;
        assert_eq!(charge(q, c.tat_ns, later, 0).throttle_ns, 0);
    }

    #[test]
    fn throttle_ms_rounds_up() {
        assert_eq!(throttle_ms(0), 0);
        assert_eq!(throttle_ms(1), 1);
        assert_eq!(throttle_ms(MS), 1);
        assert_eq!(throttle_ms(MS + 1), 2);
        assert_eq!(throttle_ms(u64::MAX), u32::MAX);
    }

    /// Seeded simulation: greedy clients that wait out every throttle they are told, with
    /// random request sizes and gaps, several sharing one meter (connections of one
    /// principal on different shards). Over every run the bytes served stay within
    /// `rate × elapsed + burst credit + one request`, and a client sending as fast as it may
    /// gets close to the rate (the quota is not over-enforced either).
    #[test]
    fn simulated_clients_get_the_rate_and_no_more() {
        let replay = crate::seeds::Replay {
            package: "strand-core",
            target: None,
            test_fn: "simulated_clients_get_the_rate_and_no_more",
        };
        let seeds = match crate::seeds::seed_replayed() {
            Some(seed) => seed..seed + 1,
            None => 0..crate::seeds::seed_count(50),
        };
        for seed in seeds {
            replay.run(seed, simulated_clients_run);
        }
    }

    /// One seed of `simulated_clients_get_the_rate_and_no_more`.
    fn simulated_clients_run(seed: u64) {
        let mut rng = crate::seeds::rng(seed);
        let rate = rng.gen_range(10_000..50_000_000u64);
        let q = Quota::per_sec(rate);
        let clients = rng.gen_range(1..5usize);
        let mut next_free = vec![0u64; clients];
        let mut tat = 0u64;
        let mut sent = 0u128;
        let mut largest = 0u64;
        let horizon = 20 * NANOS_PER_SEC;
        loop {
            // The client that may send next.
            let (c, &at) = next_free.iter().enumerate().min_by_key(|(_, t)| **t).unwrap();
            if at >= horizon {
                break;
            }
            let bytes = rng.gen_range(1..=(rate / 4).max(2));
            largest = largest.max(bytes);
            let ch = charge(q, tat, at, bytes);
            tat = ch.tat_ns;
            sent += u128::from(bytes);
            let gap = if rng.gen_bool(0.1) { rng.gen_range(0..50 * MS) } else { 0 };
            next_free[c] = at + ch.throttle_ns + gap + 1;
        }
        let allowed = u128::from(rate) * u128::from(horizon) / u128::from(NANOS_PER_SEC)
            + u128::from(rate) // the burst credit (1 s)
            + u128::from(largest) * clients as u128;
        assert!(sent <= allowed, "seed {seed}: sent {sent} > allowed {allowed}");
        let floor = u128::from(rate) * u128::from(horizon) / u128::from(NANOS_PER_SEC) * 8 / 10;
        assert!(sent >= floor, "seed {seed}: sent {sent} < 80% of the quota ({floor})");
    }

    proptest! {
        #[test]
        fn meter_bounds_hold(rate in 1u64..u64::MAX, burst in 0u64..10 * NANOS_PER_SEC,
                             tat in 0u64..u64::MAX / 2, now in 0u64..u64::MAX / 2, bytes: u64) {
            let q = Quota { bytes_per_sec: rate, burst_ns: burst };
            let c = charge(q, tat, now, bytes);
            prop_assert!(c.throttle_ns <= THROTTLE_MAX_NS);
            let ceiling = now + burst + THROTTLE_MAX_NS;
            prop_assert!(c.tat_ns <= ceiling);
            prop_assert!(c.tat_ns >= tat.max(now).min(ceiling));
            prop_assert!(c.tat_ns >= now);
        }
    }
}
