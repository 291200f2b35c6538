//! The IO side of the Jepsen-style test (`reliability/tests/jepsen.rs`): consumers that
//! read along from offset 0 through any replica that answers and record every read
//! ([`ReadAlong`]), the nemesis that picks faults on a seeded schedule ([`Nemesis`]) and
//! injects them ([`inject`]), the conversion of what the clients did into a
//! [`History`] ([`history_of`]), and deliberate damage to a real history or final log
//! ([`Tamper`]) to show the checker catches it.
//!
//! Invariants: a consumer records only records from fetches that answered with no error and
//! whose batches all validated (CRC); it never skips an offset (the next fetch starts where
//! the last one ended, whichever replica answers it); every fault is healed before the next
//! one starts (one fault at a time, so the cluster always has a majority of its pieces).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use rand::Rng;
use strand_wire::ErrorCode;

use crate::client::{decode_batches, StoredRecord, WireClient};
use crate::cluster::{Cluster, ProducerLog, ProducerSettings, SharedAddrs, LEASE_TTL_S};
use crate::error::HarnessError;
use crate::history::{Anomaly, FinalLog, History, Outcome, Produce, ProducerInfo, Read};

/// Longest a consumer waits for one connect or answer (a SIGSTOPped node never answers).
const CONSUMER_TIMEOUT: Duration = Duration::from_millis(1000);
/// `max_wait_ms` of a consumer's fetch: it long-polls at the log end instead of spinning.
const FETCH_WAIT_MS: u32 = 50;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Holders never panic mid-update; keep the data if one did.
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

// ---------------------------------------------------------------------------------------
// consumers

/// What one [`ReadAlong`] consumer did.
#[derive(Debug, Clone, Default)]
pub struct ConsumerLog {
    pub consumer: u32,
    /// Every record read, in read order.
    pub reads: Vec<Read>,
    /// Fetches answered with records.
    pub fetches: u64,
    /// Times the consumer moved to another replica (after an error or a timeout).
    pub switches: u64,
    /// Failed fetches by kind (error code name, `connection`, `corrupt batch`).
    pub failure_kinds: BTreeMap<String, u64>,
}

/// A consumer reading every partition of a topic from offset 0, following the log end: it
/// fetches from one replica until that fails (error code, timeout, lost connection), then
/// moves to the next node of the address map and continues at the same offset — what a
/// client reading from replicas does. Odd-numbered consumers also hop to the next replica
/// after every fetch that returned records, so consecutive reads come from different
/// replicas.
pub struct ReadAlong {
    stop: Arc<AtomicBool>,
    next: Arc<Mutex<BTreeMap<u32, u64>>>,
    thread: std::thread::JoinHandle<ConsumerLog>,
}

impl ReadAlong {
    /// Starts consumer `consumer` (it begins with the `consumer`-th node, so consumers spread).
    pub fn start(consumer: u32, addrs: SharedAddrs, topic: &str, partitions: u32) -> ReadAlong {
        let stop = Arc::new(AtomicBool::new(false));
        let next = Arc::new(Mutex::new((0..partitions).map(|p| (p, 0)).collect()));
        let (flag, progress, topic) = (stop.clone(), next.clone(), topic.to_string());
        let thread = std::thread::spawn(move || {
            let mut reader =
                Reader { consumer, topic, addrs, next: progress, conns: BTreeMap::new(), log: ConsumerLog::default() };
            reader.log.consumer = consumer;
            reader.run(partitions, &flag);
            reader.log
        });
        ReadAlong { stop, next, thread }
    }

    /// The next offset this consumer will read, per partition.
    pub fn next_offsets(&self) -> BTreeMap<u32, u64> {
        lock(&self.next).clone()
    }

    /// Stops the consumer; what it read.
    pub fn stop(self) -> ConsumerLog {
        self.stop.store(true, Ordering::SeqCst);
        self.thread.join().unwrap_or_default()
    }
}

struct Reader {
    consumer: u32,
    topic: String,
    addrs: SharedAddrs,
    next: Arc<Mutex<BTreeMap<u32, u64>>>,
    /// Open connections by node id, with the address they were opened to.
    conns: BTreeMap<u32, (SocketAddr, WireClient)>,
    log: ConsumerLog,
}

impl Reader {
    fn run(&mut self, partitions: u32, stop: &AtomicBool) {
        // The replica each partition is read from, as an index into the sorted node list.
        let mut replica: Vec<usize> = (0..partitions).map(|p| (self.consumer + p) as usize).collect();
        while !stop.load(Ordering::SeqCst) {
            let nodes: Vec<(u32, SocketAddr)> = lock(&self.addrs).iter().map(|(&id, &a)| (id, a)).collect();
            if nodes.is_empty() {
                std::thread::sleep(Duration::from_millis(20));
                continue;
            }
            for (p, pick) in replica.iter_mut().enumerate() {
                let (node, addr) = nodes[*pick % nodes.len()];
                match self.fetch_once(node, addr, p as u32) {
                    Ok(read) if read && self.consumer % 2 == 1 => *pick = (*pick + 1) % nodes.len(),
                    Ok(_) => {}
                    Err(kind) => {
                        *self.log.failure_kinds.entry(kind).or_default() += 1;
                        *pick = (*pick + 1) % nodes.len();
                        self.log.switches += 1;
                    }
                }
            }
        }
    }

    /// One fetch of partition `p` from `node`: whether it returned records; `Err(kind)` when
    /// the replica did not serve.
    fn fetch_once(&mut self, node: u32, addr: SocketAddr, p: u32) -> Result<bool, String> {
        if self.conns.get(&node).is_none_or(|(a, _)| *a != addr) {
            let conn = WireClient::connect(addr, CONSUMER_TIMEOUT).map_err(|_| "connect".to_string())?;
            self.conns.insert(node, (addr, conn));
        }
        let from = lock(&self.next).get(&p).copied().unwrap_or(0);
        let Some((_, conn)) = self.conns.get_mut(&node) else { return Err("connect".into()) };
        let (response, bytes) = match conn.fetch(&self.topic, p, from, FETCH_WAIT_MS) {
            Ok(answer) => answer,
            Err(e) => {
                if e.server_code().is_none() {
                    self.conns.remove(&node);
                }
                return Err(e.server_code().map_or_else(|| "connection".to_string(), |c| c.name().to_string()));
            }
        };
        if response.error != ErrorCode::None {
            return Err(response.error.name().to_string());
        }
        let mut records: Vec<StoredRecord> = Vec::new();
        let next = decode_batches(p, from, &bytes, &mut records).map_err(|_| "corrupt batch".to_string())?;
        if records.is_empty() {
            return Ok(false);
        }
        self.log.fetches += 1;
        let consumer = self.consumer;
        let reads = records.into_iter().map(|r| Read { consumer, partition: p, offset: r.offset, value: r.value });
        self.log.reads.extend(reads);
        lock(&self.next).insert(p, next);
        Ok(true)
    }
}

// ---------------------------------------------------------------------------------------
// the nemesis

/// One fault, healed by [`inject`] before it returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// SIGKILL node `node`, leave it down for `down`, restart it on its data dir.
    KillNode { node: u32, down: Duration },
    /// SIGSTOP node `node` for `paused` (past the lease TTL it loses its lease), then SIGCONT.
    PauseNode { node: u32, paused: Duration },
    /// SIGKILL etcd, leave it down for `down`, restart it on its ports and data.
    KillEtcd { down: Duration },
    /// SIGSTOP etcd for `paused`, then SIGCONT.
    PauseEtcd { paused: Duration },
}

impl Fault {
    /// A short name for counts: `kill-node`, `pause-node`, `kill-etcd`, `pause-etcd`.
    pub fn kind(self) -> &'static str {
        match self {
            Fault::KillNode { .. } => "kill-node",
            Fault::PauseNode { .. } => "pause-node",
            Fault::KillEtcd { .. } => "kill-etcd",
            Fault::PauseEtcd { .. } => "pause-etcd",
        }
    }
}

/// The seeded fault schedule: a pure function of the seed and the node ids.
pub struct Nemesis {
    rng: crate::profile::SeedRng,
    nodes: Vec<u32>,
}

impl Nemesis {
    pub fn new(seed: u64, nodes: Vec<u32>) -> Nemesis {
        assert!(!nodes.is_empty(), "a nemesis needs nodes to hit");
        Nemesis { rng: crate::profile::rng(seed), nodes }
    }

    /// The quiet time before the next fault, and the fault.
    pub fn next_fault(&mut self) -> (Duration, Fault) {
        let quiet = Duration::from_millis(self.rng.gen_range(300..1500));
        let node = self.nodes[self.rng.gen_range(0..self.nodes.len())];
        let ttl_ms = LEASE_TTL_S * 1000;
        let fault = match self.rng.gen_range(0..100) {
            0..35 => Fault::KillNode { node, down: Duration::from_millis(self.rng.gen_range(0..1500)) },
            // Up to twice the lease TTL: some pauses end in time, some lose the lease.
            35..65 => Fault::PauseNode { node, paused: Duration::from_millis(self.rng.gen_range(200..2 * ttl_ms)) },
            65..85 => Fault::KillEtcd { down: Duration::from_millis(self.rng.gen_range(100..2000)) },
            _ => Fault::PauseEtcd { paused: Duration::from_millis(self.rng.gen_range(200..ttl_ms + 1000)) },
        };
        (quiet, fault)
    }
}

/// Injects `fault` into `cluster` and heals it: when this returns, every process runs.
pub fn inject(cluster: &mut Cluster, fault: Fault) -> Result<(), HarnessError> {
    match fault {
        Fault::KillNode { node, down } => {
            cluster.kill(node)?;
            std::thread::sleep(down);
            cluster.restart(node)
        }
        Fault::PauseNode { node, paused } => {
            cluster.pause(node)?;
            std::thread::sleep(paused);
            cluster.resume(node)
        }
        Fault::KillEtcd { down } => {
            cluster.etcd_mut().kill();
            std::thread::sleep(down);
            cluster.etcd_mut().restart()
        }
        Fault::PauseEtcd { paused } => {
            cluster.etcd().pause()?;
            std::thread::sleep(paused);
            cluster.etcd().resume()
        }
    }
}

// ---------------------------------------------------------------------------------------
// the history

/// The producer id in a [`History`] of `lane` of `partition` under `settings`.
pub fn producer_of(settings: &ProducerSettings, partition: u32, lane: u32) -> u32 {
    partition * settings.lanes.max(1) + lane
}

/// What the producers and consumers did, as a [`History`]: every lane of `settings` is a
/// producer (idempotent if `settings` says so); its acknowledged produces in the order they
/// were answered (a lane's order), then its unacknowledged ones.
pub fn history_of(settings: &ProducerSettings, log: &ProducerLog, consumers: &[ConsumerLog]) -> History {
    let mut history = History::default();
    for partition in 0..settings.partitions {
        for lane in 0..settings.lanes.max(1) {
            let idempotent = lane < settings.idempotent_lanes;
            history.producers.insert(producer_of(settings, partition, lane), ProducerInfo { partition, idempotent });
        }
    }
    for ack in log.acks.iter().chain(&log.side_acks) {
        history.produces.push(Produce {
            producer: producer_of(settings, ack.partition, ack.lane),
            values: ack.values.clone(),
            outcome: Outcome::Acked { base_offset: ack.base_offset },
        });
    }
    for (partition, lane, values) in &log.unacked {
        let producer = producer_of(settings, *partition, *lane);
        history.produces.push(Produce { producer, values: values.clone(), outcome: Outcome::Unknown });
    }
    history.reads = consumers.iter().flat_map(|c| c.reads.iter().cloned()).collect();
    history
}

// ---------------------------------------------------------------------------------------
// deliberate damage

/// A bug injected into a real run's data, to show the checker catches it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tamper {
    /// Drop one acknowledged record (the middle one of partition 0) from the final log:
    /// a replica that lost an acknowledged write. Expected: [`Anomaly::LostAck`].
    DropAckedRecord,
    /// Swap the values of two consecutive reads of the first consumer: a replica serving
    /// records out of place. Expected: [`Anomaly::PhantomRead`].
    SwapConsumerReads,
    /// Swap two adjacent records of an idempotent producer in the final log: a retry
    /// appended after a later batch. Expected: [`Anomaly::ReorderedIdempotent`].
    SwapIdempotentRecords,
}

impl Tamper {
    pub const ALL: [Tamper; 3] = [Tamper::DropAckedRecord, Tamper::SwapConsumerReads, Tamper::SwapIdempotentRecords];

    /// `STRAND_JEPSEN_TAMPER` (`drop-ack`, `swap-reads`, `swap-idempotent`): a bug to inject
    /// into the test's own check, to watch it fail with its seed and replay line.
    pub fn from_env() -> Option<Tamper> {
        match std::env::var("STRAND_JEPSEN_TAMPER").ok()?.as_str() {
            "drop-ack" => Some(Tamper::DropAckedRecord),
            "swap-reads" => Some(Tamper::SwapConsumerReads),
            "swap-idempotent" => Some(Tamper::SwapIdempotentRecords),
            _ => None,
        }
    }

    /// Damages `history` or `final_log` in place; a description of the damage, or `None`
    /// when the run has nothing to damage that way (e.g. no idempotent records).
    pub fn apply(self, history: &mut History, final_log: &mut FinalLog) -> Option<String> {
        match self {
            Tamper::DropAckedRecord => {
                let acked = acked_offsets(history, 0);
                let offset = *acked.get(acked.len() / 2)?;
                let log = final_log.get_mut(&0)?;
                let at = log.iter().position(|r| r.offset == offset)?;
                log.remove(at);
                Some(format!("dropped the acknowledged record at partition 0 offset {offset} from the final log"))
            }
            Tamper::SwapConsumerReads => {
                let consumer = history.reads.first()?.consumer;
                let mine: Vec<usize> =
                    (0..history.reads.len()).filter(|&i| history.reads[i].consumer == consumer).collect();
                let (a, b) = (*mine.get(mine.len() / 2)?, *mine.get(mine.len() / 2 + 1)?);
                let value_a = std::mem::take(&mut history.reads[a].value);
                history.reads[a].value = std::mem::replace(&mut history.reads[b].value, value_a);
                let (p, o) = (history.reads[a].partition, history.reads[a].offset);
                Some(format!("swapped consumer {consumer}'s reads at partition {p} offset {o} and the next"))
            }
            Tamper::SwapIdempotentRecords => {
                let (partition, at) = adjacent_idempotent_records(history, final_log)?;
                let log = final_log.get_mut(&partition)?;
                let value_a = std::mem::take(&mut log[at].value);
                log[at].value = std::mem::replace(&mut log[at + 1].value, value_a);
                let offset = log[at].offset;
                Some(format!("swapped the idempotent records at partition {partition} offsets {offset} and the next"))
            }
        }
    }

    /// Whether `anomaly` is the one this damage must cause.
    pub fn expected(self, anomaly: &Anomaly) -> bool {
        match self {
            Tamper::DropAckedRecord => matches!(anomaly, Anomaly::LostAck { .. }),
            Tamper::SwapConsumerReads => matches!(anomaly, Anomaly::PhantomRead { .. }),
            Tamper::SwapIdempotentRecords => matches!(anomaly, Anomaly::ReorderedIdempotent { .. }),
        }
    }
}

/// Acknowledged offsets of `partition`, ascending.
fn acked_offsets(history: &History, partition: u32) -> Vec<u64> {
    let mut offsets: Vec<u64> = history
        .produces
        .iter()
        .filter(|p| history.producers.get(&p.producer).is_some_and(|i| i.partition == partition))
        .filter_map(|p| match p.outcome {
            Outcome::Acked { base_offset } => {
                Some((base_offset..base_offset + p.values.len() as u64).collect::<Vec<_>>())
            }
            Outcome::Unknown => None,
        })
        .flatten()
        .collect();
    offsets.sort_unstable();
    offsets
}

/// A (partition, index) where the final log holds two records of one idempotent producer
/// next to each other (the middle such place).
fn adjacent_idempotent_records(history: &History, final_log: &FinalLog) -> Option<(u32, usize)> {
    let owner: std::collections::HashMap<&[u8], u32> = history
        .produces
        .iter()
        .filter(|p| history.producers.get(&p.producer).is_some_and(|i| i.idempotent))
        .flat_map(|p| p.values.iter().map(move |v| (v.as_slice(), p.producer)))
        .collect();
    let mut places = Vec::new();
    for (&partition, log) in final_log {
        for (i, pair) in log.windows(2).enumerate() {
            let (a, b) = (owner.get(pair[0].value.as_slice()), owner.get(pair[1].value.as_slice()));
            if a.is_some() && a == b {
                places.push((partition, i));
            }
        }
    }
    places.get(places.len() / 2).copied()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::Ack;
    use std::time::Instant;

    #[test]
    fn the_fault_schedule_is_a_function_of_the_seed_and_covers_every_kind() {
        let draw = |seed| {
            let mut nemesis = Nemesis::new(seed, vec![1, 2, 3]);
            (0..200).map(|_| nemesis.next_fault()).collect::<Vec<_>>()
        };
        assert_eq!(draw(7), draw(7));
        assert_ne!(draw(7), draw(8));
        let faults = draw(7);
        for kind in ["kill-node", "pause-node", "kill-etcd", "pause-etcd"] {
            assert!(faults.iter().any(|(_, f)| f.kind() == kind), "no {kind} in 200 faults");
        }
        let ttl = Duration::from_secs(LEASE_TTL_S);
        let pauses = faults.iter().filter_map(|(_, f)| match f {
            Fault::PauseNode { paused, .. } => Some(*paused),
            _ => None,
        });
        let (short, long): (Vec<Duration>, Vec<Duration>) = pauses.partition(|p| *p < ttl);
        assert!(!short.is_empty() && !long.is_empty(), "node pauses must fall on both sides of the lease TTL");
    }

    #[test]
    fn lanes_become_producers_with_acks_in_lane_order_then_the_unacknowledged() {
        let settings = ProducerSettings { lanes: 2, idempotent_lanes: 1, ..ProducerSettings::new("t", 2) };
        let now = Instant::now();
        let ack = |partition, lane, base_offset, value: &str| Ack {
            partition,
            lane,
            base_offset,
            values: vec![value.as_bytes().to_vec()],
            node: 1,
            sent_at: now,
            acked_at: now,
        };
        let log = ProducerLog {
            acks: vec![ack(1, 0, 0, "x0"), ack(1, 1, 1, "y0"), ack(1, 0, 2, "x1")],
            unacked: vec![(1, 0, vec![b"x2".to_vec()])],
            ..ProducerLog::default()
        };
        let history = history_of(&settings, &log, &[]);
        assert_eq!(history.producers.len(), 4);
        assert_eq!(history.producers[&2], ProducerInfo { partition: 1, idempotent: true });
        assert_eq!(history.producers[&3], ProducerInfo { partition: 1, idempotent: false });
        let of_2: Vec<(&[u8], Outcome)> =
            history.produces.iter().filter(|p| p.producer == 2).map(|p| (p.values[0].as_slice(), p.outcome)).collect();
        let expected: Vec<(&[u8], Outcome)> = vec![
            (b"x0", Outcome::Acked { base_offset: 0 }),
            (b"x1", Outcome::Acked { base_offset: 2 }),
            (b"x2", Outcome::Unknown),
        ];
        assert_eq!(of_2, expected);
    }
}
