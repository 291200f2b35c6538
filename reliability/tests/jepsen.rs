//! Jepsen-style log checking (issue 21 item 5): producers (`acks=all`; one idempotent lane
//! and one plain lane per partition) and two consumers reading along from offset 0 run
//! against three `strand-node` processes and etcd, while a seeded nemesis SIGKILLs and
//! restarts nodes, SIGSTOPs them (sometimes past the lease TTL), and SIGKILLs/restarts or
//! SIGSTOPs etcd, one fault at a time. Afterwards everything runs again, the cluster
//! settles, the consumers read to the end, every replica is read (they must be identical),
//! and the IO-free checker (`strand_reliability::history::check`) looks for lost
//! acknowledgements, records at two offsets, idempotent producers out of order, consumers
//! that disagree and reads of records not in the final log.
//!
//! The seed fixes the fault schedule (kinds, victims, durations, gaps); the load around it
//! is timing-dependent, so a replay repeats the faults, not every interleaving. On failure
//! the anomalies, the seed and the replay line are printed.
//!
//! Quick profile: 8 faults. Long (`STRAND_RELIABILITY=long`): 60. The checker is then
//! shown to catch three bugs injected into this run's real data (a dropped acknowledged
//! record, two swapped reads, two swapped idempotent records);
//! `STRAND_JEPSEN_TAMPER=drop-ack|swap-reads|swap-idempotent` injects one into the test's
//! own check, which must then fail.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use strand_reliability::cluster::{
    converged_logs, verify_replicas, AckProducer, Cluster, ClusterConfig, ConvergedLogs, ProducerLog, ProducerSettings,
};
use strand_reliability::history::{check_counted, Anomaly, FinalLog};
use strand_reliability::jepsen::{history_of, inject, ConsumerLog, Nemesis, ReadAlong, Tamper};
use strand_reliability::profile::{self, write_result};
use strand_reliability::Profile;

const TOPIC: &str = "jepsen";
const PARTITIONS: u32 = 2;
const CONSUMERS: u32 = 2;
/// Longest the cluster may take after the last fault to have full chains again.
const SETTLE_MAX: Duration = Duration::from_secs(40);
/// Records acknowledged before the first fault and after healing.
const ACKS_AROUND: usize = 40;

struct Run {
    seed: u64,
    replay: String,
}

impl Run {
    fn fail(&self, cluster: &Cluster, what: &str) -> ! {
        panic!("{what}\n{}\nseed {}; replay: {}", cluster.logs(40), self.seed, self.replay);
    }
}

#[test]
fn jepsen_producers_and_consumers_under_node_and_etcd_faults() {
    let profile = Profile::from_env();
    let faults = profile.pick(8, 60);
    let seed = profile::seed("jepsen");
    let replay = profile::replay_command(seed);
    println!("jepsen: replay with: {replay}");
    let run = Run { seed, replay };
    let started = Instant::now();

    let mut cluster = Cluster::start(ClusterConfig::default()).unwrap_or_else(|e| panic!("cluster start: {e}"));
    if let Err(e) = cluster.create_topic(TOPIC, PARTITIONS, 3) {
        run.fail(&cluster, &format!("create topic: {e}"));
    }
    println!("jepsen: cluster and topic ready after {:.1} s", started.elapsed().as_secs_f64());
    let settings = ProducerSettings { lanes: 2, idempotent_lanes: 1, ..ProducerSettings::new(TOPIC, PARTITIONS) };
    let producer = AckProducer::start(&cluster, settings.clone());
    let consumers: Vec<ReadAlong> =
        (0..CONSUMERS).map(|c| ReadAlong::start(c, cluster.addrs(), TOPIC, PARTITIONS)).collect();
    if !producer.wait_more_acks(ACKS_AROUND, Duration::from_secs(20)) {
        run.fail(&cluster, &format!("no load before the faults: {:?}", producer.snapshot().failure_kinds));
    }
    println!("jepsen: cluster up and loaded after {:.1} s", started.elapsed().as_secs_f64());
    let injected = inject_faults(&run, &mut cluster, faults, started);
    let faults_done = started.elapsed();

    // Heal: every process runs (each fault healed itself); wait for full chains and load.
    wait_full_chains(&run, &cluster);
    if !producer.wait_more_acks(ACKS_AROUND, Duration::from_secs(20)) {
        run.fail(&cluster, &format!("no load after healing: {:?}", producer.snapshot().failure_kinds));
    }
    let log = producer.stop();
    let converged = read_every_replica(&run, &cluster);
    let final_log: FinalLog = converged.iter().map(|(&p, (_, records))| (p, records.clone())).collect();
    let consumer_logs = read_to_the_end(&run, &cluster, consumers, &final_log);

    let mut history = history_of(&settings, &log, &consumer_logs);
    let mut checked_log = final_log.clone();
    if let Some(tamper) = Tamper::from_env() {
        let what = tamper.apply(&mut history, &mut checked_log);
        println!("jepsen: STRAND_JEPSEN_TAMPER: {}", what.unwrap_or_else(|| "nothing to tamper with".into()));
    }
    let (anomalies, compared) = check_counted(&history, &checked_log);
    // Epoch = chain reconfigurations since the topic was created: evidence the faults bit.
    let epochs: Vec<(u32, u64)> =
        (0..PARTITIONS).filter_map(|p| cluster.chain(TOPIC, p).ok().map(|m| (p, m.epoch))).collect();
    println!(
        "jepsen: {} s ({:.1} s of faults), faults {injected:?}, chain epochs at the end {epochs:?}",
        started.elapsed().as_secs(),
        faults_done.as_secs_f64()
    );
    let replicas: Vec<(u32, Vec<u32>, usize)> = converged.iter().map(|(&p, (n, r))| (p, n.clone(), r.len())).collect();
    println!("jepsen: final logs (partition, replicas read, records) {replicas:?}; compared {compared:?}");
    println!("jepsen: {}", producer_summary(&log));
    println!("jepsen: consumers {}", consumer_summary(&consumer_logs));
    fail_on_anomalies(&run, &cluster, &anomalies);
    let lanes_stopped: Vec<&String> =
        log.failure_kinds.keys().filter(|k| k.starts_with("idempotent lane stopped")).collect();
    if !lanes_stopped.is_empty() {
        run.fail(&cluster, &format!("an idempotent producer was refused for good: {lanes_stopped:?}"));
    }
    let vacuous = compared.acked_records == 0 || compared.idempotent_records == 0 || compared.reads == 0;
    assert!(!vacuous, "the check compared nothing of some kind: {compared:?} (seed {seed})");

    // A second opinion on the same end state: the ledger checker (offsets contiguous,
    // lane ack order) over the running replicas.
    if let Err(e) = verify_replicas(&cluster, &log, TOPIC, PARTITIONS, Duration::from_secs(10)) {
        run.fail(&cluster, &format!("end state: {e}"));
    }
    checker_catches_injected_bugs(&run, &history, &final_log);
    if let Some((id, line)) = cluster.panic_line() {
        run.fail(&cluster, &format!("node {id} panicked: {line}"));
    }
    write_result(
        "jepsen",
        &serde_json::json!({
            "seed": seed, "faults": injected, "acked_records": log.acked_records(), "failed_produces": log.failures,
            "idempotent_resends": log.resends, "duplicate_acks": log.duplicate_acks,
            "compared": format!("{compared:?}"), "secs": started.elapsed().as_secs_f64(),
        }),
    );
}

/// Prints the anomalies (the first 20) and fails the run if there are any.
fn fail_on_anomalies(run: &Run, cluster: &Cluster, anomalies: &[Anomaly]) {
    let Some(first) = anomalies.first() else { return };
    for a in anomalies.iter().take(20) {
        println!("jepsen: ANOMALY {a}");
    }
    run.fail(cluster, &format!("{} anomalies, the first: {first}", anomalies.len()));
}

/// Runs `faults` faults of the seeded schedule, one at a time; how many of each kind.
fn inject_faults(run: &Run, cluster: &mut Cluster, faults: u32, started: Instant) -> BTreeMap<&'static str, u32> {
    let mut nemesis = Nemesis::new(run.seed, cluster.node_ids());
    let mut injected = BTreeMap::new();
    for i in 0..faults {
        let (quiet, fault) = nemesis.next_fault();
        std::thread::sleep(quiet);
        println!("jepsen: fault {i} at {:.1} s: {fault:?}", started.elapsed().as_secs_f64());
        if let Err(e) = inject(cluster, fault) {
            run.fail(cluster, &format!("fault {i} ({fault:?}) did not heal: {e}"));
        }
        *injected.entry(fault.kind()).or_default() += 1;
    }
    injected
}

fn wait_full_chains(run: &Run, cluster: &Cluster) {
    for p in 0..PARTITIONS {
        if let Err(e) = cluster.wait_chain(TOPIC, p, SETTLE_MAX, |m| m.replicas.len() == 3) {
            run.fail(cluster, &format!("partition {p} has no full chain {SETTLE_MAX:?} after the last fault: {e}"));
        }
    }
}

/// The final log of every partition, read from all three replicas (identical). A chain
/// may still shrink and grow again right after healing (a lease lost during the last
/// fault expires late): read again until every partition was read from three members.
fn read_every_replica(run: &Run, cluster: &Cluster) -> ConvergedLogs {
    let deadline = Instant::now() + SETTLE_MAX;
    loop {
        wait_full_chains(run, cluster);
        let converged = converged_logs(cluster, TOPIC, PARTITIONS, Duration::from_secs(30))
            .unwrap_or_else(|e| run.fail(cluster, &format!("replicas differ after healing: {e}")));
        if converged.values().all(|(replicas, _)| replicas.len() == 3) {
            return converged;
        }
        let read_from: Vec<(u32, Vec<u32>)> = converged.iter().map(|(&p, (r, _))| (p, r.clone())).collect();
        if Instant::now() > deadline {
            run.fail(cluster, &format!("never read every partition from three replicas: last {read_from:?}"));
        }
        println!("jepsen: final read from {read_from:?} only; again");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Waits until every consumer has read every partition to its final end; their logs.
fn read_to_the_end(run: &Run, cluster: &Cluster, consumers: Vec<ReadAlong>, final_log: &FinalLog) -> Vec<ConsumerLog> {
    let ends: BTreeMap<u32, u64> = final_log.iter().map(|(&p, r)| (p, r.last().map_or(0, |r| r.offset + 1))).collect();
    let deadline = Instant::now() + Duration::from_secs(30);
    for (c, consumer) in consumers.iter().enumerate() {
        while consumer.next_offsets().iter().any(|(p, next)| next < &ends[p]) {
            if Instant::now() > deadline {
                run.fail(
                    cluster,
                    &format!("consumer {c} is at {:?}, the logs end at {ends:?}", consumer.next_offsets()),
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    consumers.into_iter().map(ReadAlong::stop).collect()
}

fn producer_summary(log: &ProducerLog) -> String {
    format!(
        "{} records acknowledged, {} produces failed {:?}, {} idempotent resends ({} answered DUPLICATE_SEQUENCE)",
        log.acked_records(),
        log.failures,
        log.failure_kinds,
        log.resends,
        log.duplicate_acks
    )
}

fn consumer_summary(logs: &[ConsumerLog]) -> String {
    let line = |c: &ConsumerLog| {
        format!(
            "{}: {} reads, {} fetches, {} switches {:?}",
            c.consumer,
            c.reads.len(),
            c.fetches,
            c.switches,
            c.failure_kinds
        )
    };
    logs.iter().map(line).collect::<Vec<_>>().join("; ")
}

/// The checker on this run's real data with a bug injected: each must be reported.
fn checker_catches_injected_bugs(run: &Run, history: &strand_reliability::history::History, final_log: &FinalLog) {
    for tamper in Tamper::ALL {
        let (mut history, mut final_log) = (history.clone(), final_log.clone());
        let what = tamper.apply(&mut history, &mut final_log);
        let what = what.unwrap_or_else(|| panic!("{tamper:?}: nothing to tamper with (seed {})", run.seed));
        let (anomalies, _) = check_counted(&history, &final_log);
        let caught = anomalies.iter().find(|a| tamper.expected(a));
        let caught =
            caught.unwrap_or_else(|| panic!("{tamper:?} ({what}) went unnoticed: {anomalies:?} (seed {})", run.seed));
        println!("jepsen: injected {tamper:?} ({what}): caught, {} anomalies, e.g. {caught}", anomalies.len());
    }
}
