//! Rate pacing and the per-message measurement header.
//!
//! A fixed-rate producer does not send "one message every interval after the previous one
//! was sent": it owns a schedule `intended(i) = start + i * interval` and, whenever it
//! wakes, emits every message whose intended time has passed, stamped with that intended
//! time. A stall therefore shows up as latency of the messages scheduled during the stall
//! (coordinated-omission correction) instead of silently lowering the offered load.
//!
//! Clock: all timestamps are nanoseconds since the run's monotonic origin ([`Clock`]);
//! producers and consumers share one origin because they live in one process.

use std::time::{Duration, Instant};

use crate::config::VALUE_HEADER_LEN;

/// The run's monotonic clock origin.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    origin: Instant,
}

impl Clock {
    pub fn new() -> Clock {
        Clock { origin: Instant::now() }
    }

    /// Nanoseconds since the origin.
    pub fn now_ns(&self) -> u64 {
        self.origin.elapsed().as_nanos() as u64
    }

    /// The instant `ns` nanoseconds after the origin.
    pub fn instant_at(&self, ns: u64) -> Instant {
        self.origin + Duration::from_nanos(ns)
    }
}

impl Default for Clock {
    fn default() -> Self {
        Clock::new()
    }
}

/// The schedule of one fixed-rate producer.
#[derive(Debug, Clone)]
pub struct Pacer {
    start_ns: u64,
    interval_ns: f64,
    emitted_count: u64,
}

impl Pacer {
    /// A schedule of `msgs_per_sec` starting at `start_ns`.
    pub fn new(start_ns: u64, msgs_per_sec: f64) -> Pacer {
        assert!(msgs_per_sec.is_finite() && msgs_per_sec > 0.0);
        Pacer { start_ns, interval_ns: 1e9 / msgs_per_sec, emitted_count: 0 }
    }

    /// Intended send time (ns since the clock origin) of message `index`.
    pub fn intended_ns(&self, index: u64) -> u64 {
        self.start_ns + (index as f64 * self.interval_ns) as u64
    }

    /// Messages due at `now_ns` that have not been emitted yet, at most `limit`.
    /// The caller must then call [`Pacer::take`] for the ones it emits.
    pub fn due_count(&self, now_ns: u64, limit: u64) -> u64 {
        if now_ns < self.start_ns {
            return 0;
        }
        // Message i is due when intended(i) <= now, i.e. i <= (now - start) / interval.
        let due_total = ((now_ns - self.start_ns) as f64 / self.interval_ns).floor() as u64 + 1;
        due_total.saturating_sub(self.emitted_count).min(limit)
    }

    /// Takes the next message off the schedule: returns its index and intended time.
    pub fn take(&mut self) -> (u64, u64) {
        let index = self.emitted_count;
        self.emitted_count += 1;
        (index, self.intended_ns(index))
    }

    /// Intended time of the next message not yet emitted.
    pub fn next_due_ns(&self) -> u64 {
        self.intended_ns(self.emitted_count)
    }

    /// Messages emitted so far.
    pub fn emitted_count(&self) -> u64 {
        self.emitted_count
    }
}

/// Splits a total rate over `producers` producers.
pub fn per_producer_rate(total_msgs_per_sec: f64, producers: u32) -> f64 {
    assert!(producers > 0);
    total_msgs_per_sec / f64::from(producers)
}

/// Writes the measurement header into the front of a message value.
pub fn write_value_header(value: &mut [u8], send_ns: u64, sequence: u64) {
    assert!(value.len() >= VALUE_HEADER_LEN);
    value[..8].copy_from_slice(&send_ns.to_le_bytes());
    value[8..16].copy_from_slice(&sequence.to_le_bytes());
}

/// Reads `(send_ns, sequence)` from a message value, or `None` if it is too short to be ours.
pub fn read_value_header(value: &[u8]) -> Option<(u64, u64)> {
    let ts = value.get(..8)?;
    let seq = value.get(8..16)?;
    let mut a = [0u8; 8];
    let mut b = [0u8; 8];
    a.copy_from_slice(ts);
    b.copy_from_slice(seq);
    Some((u64::from_le_bytes(a), u64::from_le_bytes(b)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedule_is_evenly_spaced() {
        let p = Pacer::new(1_000, 1000.0);
        assert_eq!(p.intended_ns(0), 1_000);
        assert_eq!(p.intended_ns(1), 1_001_000);
        assert_eq!(p.intended_ns(1000), 1_000_001_000);
    }

    #[test]
    fn due_count_catches_up_after_a_stall() {
        let mut p = Pacer::new(0, 1000.0); // one per ms
        assert_eq!(p.due_count(0, u64::MAX), 1, "message 0 is due at start");
        p.take();
        assert_eq!(p.due_count(500_000, u64::MAX), 0);
        // A 10 ms stall: messages 1..=10 are all due, each keeps its own intended time.
        assert_eq!(p.due_count(10_000_000, u64::MAX), 10);
        assert_eq!(p.due_count(10_000_000, 3), 3, "limit respected");
        let taken: Vec<_> = (0..10).map(|_| p.take()).collect();
        assert_eq!(taken[0], (1, 1_000_000));
        assert_eq!(taken[9], (10, 10_000_000));
        assert_eq!(p.due_count(10_000_000, u64::MAX), 0);
        assert_eq!(p.next_due_ns(), 11_000_000);
        assert_eq!(p.emitted_count(), 11);
    }

    #[test]
    fn nothing_due_before_start() {
        let p = Pacer::new(5_000_000, 10.0);
        assert_eq!(p.due_count(4_999_999, u64::MAX), 0);
        assert_eq!(p.due_count(5_000_000, u64::MAX), 1);
    }

    #[test]
    fn rate_split_and_long_run_accuracy() {
        assert_eq!(per_producer_rate(50_000.0, 2), 25_000.0);
        let mut p = Pacer::new(0, per_producer_rate(48_828.125, 1));
        let due = p.due_count(10_000_000_000, u64::MAX);
        for _ in 0..due {
            p.take();
        }
        // 10 s at 48 828.125/s = 488 281.25 messages: floor + 1 for message 0.
        assert_eq!(due, 488_282);
    }

    #[test]
    fn value_header_round_trip() {
        let mut v = vec![0xAAu8; 32];
        write_value_header(&mut v, 123_456_789, 42);
        assert_eq!(read_value_header(&v), Some((123_456_789, 42)));
        assert_eq!(v[16], 0xAA, "payload after the header untouched");
        assert_eq!(read_value_header(&v[..15]), None);
    }
}
