//! The single-node writer of the crash tests: one thread, one connection, batches of
//! 1..=8 unique values produced to one partition until told to stop or the connection
//! fails; every value sent and every acknowledgement counted goes into the [`Ledger`].

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use rand::Rng;

use crate::ledger::{record_value, Ledger};
use crate::WireClient;

/// One writer's settings.
#[derive(Debug, Clone)]
pub struct Writer {
    pub addr: SocketAddr,
    pub topic: String,
    pub partition: u32,
    pub seed: u64,
    /// Values carry up to this many filler bytes (random per value).
    pub filler_max: usize,
    pub connect_timeout: Duration,
    /// Acknowledgements that arrive after `stop` was set are not counted (a power cut:
    /// only answers given before the cut promise anything).
    pub count_only_before_stop: bool,
}

impl Writer {
    /// Runs until `stop` is set or the connection fails; the number of refused produces.
    /// `seq` hands out the values' sequence numbers (shared by all writers of a run).
    pub fn run(&self, stop: &AtomicBool, ledger: &Mutex<Ledger>, seq: &AtomicU64) -> u64 {
        let mut rng = crate::profile::rng(self.seed);
        let Ok(mut client) = WireClient::connect(self.addr, self.connect_timeout) else { return 0 };
        let mut refusals = 0;
        while !stop.load(Ordering::SeqCst) {
            let count = rng.gen_range(1..=8u64);
            let first = seq.fetch_add(count, Ordering::Relaxed);
            let values: Vec<Vec<u8>> = (first..first + count)
                .map(|s| record_value(self.partition, s, rng.gen_range(0..self.filler_max)))
                .collect();
            lock(ledger).record_sent(self.partition, &values);
            match client.produce_values(&self.topic, self.partition, &values) {
                Ok(Ok(_)) if self.count_only_before_stop && stop.load(Ordering::SeqCst) => break,
                Ok(Ok(base_offset)) => {
                    if let Err(v) = lock(ledger).record_ack(self.partition, base_offset, &values) {
                        panic!("node acknowledged a reused offset: {v}");
                    }
                }
                Ok(Err(_refused)) => refusals += 1,
                Err(_) => break,
            }
        }
        refusals
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}
