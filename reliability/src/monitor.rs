//! Background observers used while a node is under attack: an [`RssMonitor`] sampling the
//! node's resident memory, and a [`Canary`] — a well-behaved client doing produce-then-fetch
//! round trips that must keep succeeding, whose records are verified with a [`Ledger`] at
//! the end.
//!
//! Invariant: both run on their own thread with a fixed sampling interval and stop when
//! asked (or when their owner is dropped), so a test always terminates.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::client::WireClient;
use crate::error::HarnessError;
use crate::ledger::{record_value, Ledger, VerifyReport};
use crate::node::rss_kib;
use crate::profile::Summary;
use strand_wire::ErrorCode;

/// Samples `VmRSS` of a process at a fixed interval.
pub struct RssMonitor {
    stop: Arc<AtomicBool>,
    max_kib: Arc<AtomicU64>,
    handle: Option<JoinHandle<RssStats>>,
}

/// What an [`RssMonitor`] saw.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RssStats {
    pub samples: u64,
    pub max_kib: u64,
    pub last_kib: u64,
}

impl RssMonitor {
    /// Starts sampling `pid` every `every`.
    pub fn start(pid: u32, every: Duration) -> RssMonitor {
        let stop = Arc::new(AtomicBool::new(false));
        let max_kib = Arc::new(AtomicU64::new(0));
        let (thread_stop, thread_max) = (stop.clone(), max_kib.clone());
        let handle = std::thread::spawn(move || {
            let mut stats = RssStats::default();
            while !thread_stop.load(Ordering::Relaxed) {
                if let Ok(kib) = rss_kib(pid) {
                    stats.samples += 1;
                    stats.last_kib = kib;
                    stats.max_kib = stats.max_kib.max(kib);
                    thread_max.fetch_max(kib, Ordering::Relaxed);
                }
                std::thread::sleep(every);
            }
            stats
        });
        RssMonitor { stop, max_kib, handle: Some(handle) }
    }

    /// The highest RSS sampled so far, KiB.
    pub fn max_kib(&self) -> u64 {
        self.max_kib.load(Ordering::Relaxed)
    }

    /// Stops sampling; what was seen.
    pub fn stop(mut self) -> RssStats {
        self.stop.store(true, Ordering::Relaxed);
        self.handle.take().and_then(|h| h.join().ok()).unwrap_or_default()
    }
}

impl Drop for RssMonitor {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// A well-behaved client that must keep being served.
pub struct Canary {
    stop: Arc<AtomicBool>,
    round_trips: Arc<AtomicU64>,
    shared: Arc<Mutex<CanaryState>>,
    handle: Option<JoinHandle<()>>,
    addr: SocketAddr,
    topic: String,
}

#[derive(Default)]
struct CanaryState {
    failures: Vec<String>,
    latencies: Vec<Duration>,
    ledger: Option<Ledger>,
}

/// What a [`Canary`] saw.
#[derive(Debug, Clone)]
pub struct CanaryStats {
    pub round_trips: u64,
    pub failures: Vec<String>,
    /// Produce + fetch round-trip latency.
    pub latency: Summary,
    /// The final verification of everything the canary was acknowledged.
    pub verified: VerifyReport,
}

/// Per-request timeout of the canary: a longer stall counts as a failure to serve.
pub const CANARY_TIMEOUT: Duration = Duration::from_secs(5);
const CANARY_PAUSE: Duration = Duration::from_millis(20);

impl Canary {
    /// Creates `topic` (one partition) through `addr` and starts round trips on it.
    pub fn start(addr: SocketAddr, topic: &str) -> Result<Canary, HarnessError> {
        WireClient::connect(addr, CANARY_TIMEOUT)?.create_topic(topic, 1)?;
        let stop = Arc::new(AtomicBool::new(false));
        let round_trips = Arc::new(AtomicU64::new(0));
        let shared = Arc::new(Mutex::new(CanaryState { ledger: Some(Ledger::new(1)), ..CanaryState::default() }));
        let (t_stop, t_trips, t_shared, t_topic) =
            (stop.clone(), round_trips.clone(), shared.clone(), topic.to_string());
        let handle = std::thread::spawn(move || canary_loop(addr, &t_topic, &t_stop, &t_trips, &t_shared));
        Ok(Canary { stop, round_trips, shared, handle: Some(handle), addr, topic: topic.to_string() })
    }

    /// Round trips completed so far.
    pub fn round_trips(&self) -> u64 {
        self.round_trips.load(Ordering::Relaxed)
    }

    /// Failures so far.
    pub fn failures(&self) -> Vec<String> {
        lock(&self.shared).failures.clone()
    }

    /// Waits until `more` further round trips complete; false on timeout (the node stopped serving).
    pub fn wait_progress(&self, more: u64, timeout: Duration) -> bool {
        let target = self.round_trips() + more;
        let deadline = Instant::now() + timeout;
        while self.round_trips() < target {
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        true
    }

    /// Stops the round trips, reads the canary's partition back and verifies it.
    pub fn stop(mut self) -> Result<CanaryStats, HarnessError> {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(handle) = self.handle.take() {
            let _ = handle.join();
        }
        let mut state = lock(&self.shared);
        let mut ledger = state.ledger.take().unwrap_or_else(|| Ledger::new(1));
        let stored = WireClient::connect(self.addr, CANARY_TIMEOUT)?.read_partition(&self.topic, 0, 0)?;
        let verified = match ledger.verify(0, 0, &stored) {
            Ok(report) => report,
            Err(violation) => {
                state.failures.push(format!("canary log check: {violation}"));
                VerifyReport::default()
            }
        };
        Ok(CanaryStats {
            round_trips: self.round_trips(),
            failures: state.failures.clone(),
            latency: Summary::of(&state.latencies),
            verified,
        })
    }
}

impl Drop for Canary {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn canary_loop(addr: SocketAddr, topic: &str, stop: &AtomicBool, trips: &AtomicU64, shared: &Mutex<CanaryState>) {
    let mut client = None;
    let mut seq = 0u64;
    while !stop.load(Ordering::Relaxed) {
        let value = record_value(0, seq, 16);
        seq += 1;
        if let Some(ledger) = lock(shared).ledger.as_mut() {
            ledger.record_sent(0, std::slice::from_ref(&value));
        }
        let started = Instant::now();
        match canary_round_trip(&mut client, addr, topic, &value) {
            Ok(offset) => {
                let mut state = lock(shared);
                state.latencies.push(started.elapsed());
                if let Some(Err(v)) = state.ledger.as_mut().map(|l| l.record_ack(0, offset, &[value])) {
                    state.failures.push(format!("canary ack: {v}"));
                }
                trips.fetch_add(1, Ordering::Relaxed);
            }
            Err(e) => {
                client = None;
                lock(shared).failures.push(format!("after {:?}: {e}", started.elapsed()));
            }
        }
        std::thread::sleep(CANARY_PAUSE);
    }
}

/// Produces `value`, fetches it back at its offset; the offset.
fn canary_round_trip(
    client: &mut Option<WireClient>,
    addr: SocketAddr,
    topic: &str,
    value: &[u8],
) -> Result<u64, HarnessError> {
    let c = match client {
        Some(c) => c,
        None => client.insert(WireClient::connect(addr, CANARY_TIMEOUT)?),
    };
    let offset = match c.produce_values(topic, 0, &[value.to_vec()])? {
        Ok(offset) => offset,
        Err(code) => return Err(HarnessError::Server { code, message: "canary produce refused".into() }),
    };
    let (response, bytes) = c.fetch(topic, 0, offset, 0)?;
    if response.error != ErrorCode::None {
        return Err(HarnessError::Server { code: response.error, message: format!("canary fetch at offset {offset}") });
    }
    let mut records = Vec::new();
    crate::client::decode_batches(0, offset, &bytes, &mut records)?;
    match records.first() {
        Some(r) if r.offset == offset && r.value == value => Ok(offset),
        other => Err(HarnessError::Unexpected(format!(
            "canary read back {other:?} at offset {offset} (fetch answered log end {}, high watermark {}, {} bytes)",
            response.log_end_offset, response.high_watermark, response.bytes_len
        ))),
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}
