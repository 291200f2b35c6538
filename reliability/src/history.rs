//! The Jepsen-style log checker (issue 21 item 5), IO-free: a [`History`] of what the
//! clients did against a cluster — produces with their outcome, every record every consumer
//! read — and the [`FinalLog`] read from every replica after the faults healed;
//! [`check`] names every broken property as an [`Anomaly`].
//!
//! The properties (docs/RELIABILITY.md §1):
//! - no acknowledged record is lost: it is in the final log at its acknowledged offset
//!   ([`Anomaly::LostAck`]);
//! - no record is stored or read at two offsets ([`Anomaly::DuplicateInLog`],
//!   [`Anomaly::DuplicateRead`]);
//! - an idempotent producer's records are in the final log in its sequence order, with no
//!   record missing before one that is present ([`Anomaly::ReorderedIdempotent`]);
//! - every consumer read the same record at each offset ([`Anomaly::DivergentRead`]);
//! - no consumer read a record that is not in the final log at that offset
//!   ([`Anomaly::PhantomRead`]);
//! - nothing is stored that no producer sent ([`Anomaly::Unsent`]).
//!
//! Record values are unique (each carries its producer's sequence number), so a value
//! identifies its produce. Unacknowledged records may or may not be stored.
//!
//! The checker reports how much it compared ([`Compared`]), so a check over nothing cannot
//! pass silently.

use std::collections::{BTreeMap, HashMap};

use crate::client::StoredRecord;

/// One producer of a [`History`]: which partition it writes and whether it is idempotent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProducerInfo {
    pub partition: u32,
    pub idempotent: bool,
}

/// How a produce ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// A node acknowledged it: its records are at `base_offset..`.
    Acked { base_offset: u64 },
    /// Never acknowledged (refused, timed out, or in flight at the end): fate unknown.
    Unknown,
}

/// One produce (one batch; for an idempotent producer, one sequence number, however many
/// times it was sent).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Produce {
    pub producer: u32,
    pub values: Vec<Vec<u8>>,
    pub outcome: Outcome,
}

/// One record one consumer read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Read {
    pub consumer: u32,
    pub partition: u32,
    pub offset: u64,
    pub value: Vec<u8>,
}

/// Everything the clients did.
#[derive(Debug, Clone, Default)]
pub struct History {
    pub producers: BTreeMap<u32, ProducerInfo>,
    /// Produces; those of one producer in the order it invoked them (its sequence order).
    pub produces: Vec<Produce>,
    /// Reads, in the order each consumer made them.
    pub reads: Vec<Read>,
}

/// The log of every partition after healing (identical on every replica), by partition.
pub type FinalLog = BTreeMap<u32, Vec<StoredRecord>>;

/// A broken property, with what is needed to find the record.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Anomaly {
    #[error("partition {partition} offset {offset}: acknowledged {value} is lost (final log has {found})")]
    LostAck { partition: u32, offset: u64, value: String, found: String },
    #[error("partition {partition}: {value} is stored at offsets {first} and {second}")]
    DuplicateInLog { partition: u32, value: String, first: u64, second: u64 },
    #[error("consumer {consumer}, partition {partition}: read {value} at offsets {first} and {second}")]
    DuplicateRead { consumer: u32, partition: u32, value: String, first: u64, second: u64 },
    #[error(
        "producer {producer} (idempotent), partition {partition}: {later} (at offset {later_offset}) follows \
         {earlier} (at {earlier_offset:?}) in its sequence but the log does not keep that order"
    )]
    ReorderedIdempotent {
        producer: u32,
        partition: u32,
        earlier: String,
        /// `None`: the earlier record is not in the final log at all.
        earlier_offset: Option<u64>,
        later: String,
        later_offset: u64,
    },
    #[error("partition {partition} offset {offset}: consumers read different records: {reads:?}")]
    DivergentRead { partition: u32, offset: u64, reads: Vec<(u32, String)> },
    #[error("consumer {consumer}, partition {partition} offset {offset}: read {value}, the final log has {found}")]
    PhantomRead { consumer: u32, partition: u32, offset: u64, value: String, found: String },
    #[error("partition {partition} offset {offset}: {value} was never sent")]
    Unsent { partition: u32, offset: u64, value: String },
}

/// What [`check`] compared.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Compared {
    /// Acknowledged records looked up in the final log.
    pub acked_records: u64,
    /// Records of idempotent producers whose order was checked.
    pub idempotent_records: u64,
    /// Consumer reads compared with the final log and with each other.
    pub reads: u64,
    /// Records in the final log (all partitions).
    pub final_records: u64,
}

/// Every anomaly in `history` against `final_log` (empty: all properties hold).
pub fn check(history: &History, final_log: &FinalLog) -> Vec<Anomaly> {
    check_counted(history, final_log).0
}

/// [`check`], with how much it compared.
pub fn check_counted(history: &History, final_log: &FinalLog) -> (Vec<Anomaly>, Compared) {
    let index = Index::of(final_log);
    let mut anomalies = Vec::new();
    let mut compared =
        Compared { final_records: final_log.values().map(|l| l.len() as u64).sum(), ..Compared::default() };
    check_final_log(history, final_log, &mut anomalies);
    compared.acked_records = check_acks(history, &index, &mut anomalies);
    compared.idempotent_records = check_idempotent_order(history, &index, &mut anomalies);
    compared.reads = check_reads(history, &index, &mut anomalies);
    (anomalies, compared)
}

/// The final log by (partition, offset) and by (partition, value).
struct Index<'a> {
    at: HashMap<(u32, u64), &'a [u8]>,
    offset_of: HashMap<(u32, &'a [u8]), u64>,
}

impl<'a> Index<'a> {
    fn of(final_log: &'a FinalLog) -> Index<'a> {
        let mut index = Index { at: HashMap::new(), offset_of: HashMap::new() };
        for (&partition, records) in final_log {
            for r in records {
                index.at.insert((partition, r.offset), &r.value);
                // The first offset of a duplicated value (reported by `check_final_log`).
                index.offset_of.entry((partition, &r.value)).or_insert(r.offset);
            }
        }
        index
    }

    fn found(&self, partition: u32, offset: u64) -> String {
        self.at.get(&(partition, offset)).map_or_else(|| "nothing".to_string(), |v| show(v))
    }
}

/// A record value for messages: its id (the values' filler is noise).
fn show(value: &[u8]) -> String {
    String::from_utf8_lossy(&value[..value.len().min(24)]).into_owned()
}

/// DuplicateInLog and Unsent: each stored value once, and sent by someone.
fn check_final_log(history: &History, final_log: &FinalLog, anomalies: &mut Vec<Anomaly>) {
    let mut sent: HashMap<u32, std::collections::HashSet<&[u8]>> = HashMap::new();
    for produce in &history.produces {
        let Some(info) = history.producers.get(&produce.producer) else { continue };
        sent.entry(info.partition).or_default().extend(produce.values.iter().map(Vec::as_slice));
    }
    for (&partition, records) in final_log {
        let mut first_at: HashMap<&[u8], u64> = HashMap::new();
        for r in records {
            if let Some(&first) = first_at.get(r.value.as_slice()) {
                let value = show(&r.value);
                anomalies.push(Anomaly::DuplicateInLog { partition, value, first, second: r.offset });
            } else {
                first_at.insert(&r.value, r.offset);
            }
            if !sent.get(&partition).is_some_and(|s| s.contains(r.value.as_slice())) {
                anomalies.push(Anomaly::Unsent { partition, offset: r.offset, value: show(&r.value) });
            }
        }
    }
}

/// LostAck: every acknowledged record at its offset. The records checked.
fn check_acks(history: &History, index: &Index, anomalies: &mut Vec<Anomaly>) -> u64 {
    let mut checked = 0;
    for produce in &history.produces {
        let (Outcome::Acked { base_offset }, Some(info)) = (produce.outcome, history.producers.get(&produce.producer))
        else {
            continue;
        };
        let partition = info.partition;
        for (i, value) in produce.values.iter().enumerate() {
            let offset = base_offset + i as u64;
            checked += 1;
            if index.at.get(&(partition, offset)) != Some(&value.as_slice()) {
                let found = index.found(partition, offset);
                anomalies.push(Anomaly::LostAck { partition, offset, value: show(value), found });
            }
        }
    }
    checked
}

/// ReorderedIdempotent: an idempotent producer's stored records at increasing offsets in
/// its sequence order, and none stored after one of its records that is missing. The
/// records checked.
fn check_idempotent_order(history: &History, index: &Index, anomalies: &mut Vec<Anomaly>) -> u64 {
    let mut checked = 0;
    for (&producer, info) in history.producers.iter().filter(|(_, i)| i.idempotent) {
        let partition = info.partition;
        let values = history.produces.iter().filter(|p| p.producer == producer).flat_map(|p| &p.values);
        // The previous record in sequence order and where it is stored (None: it is not).
        let mut previous: Option<(&[u8], Option<u64>)> = None;
        for value in values {
            checked += 1;
            let offset = index.offset_of.get(&(partition, value.as_slice())).copied();
            if let (Some((earlier, earlier_offset)), Some(later_offset)) = (previous, offset) {
                if earlier_offset.is_none_or(|e| e >= later_offset) {
                    anomalies.push(Anomaly::ReorderedIdempotent {
                        producer,
                        partition,
                        earlier: show(earlier),
                        earlier_offset,
                        later: show(value),
                        later_offset,
                    });
                }
            }
            previous = Some((value, offset));
        }
    }
    checked
}

/// The distinct values read at one offset, each with the first consumer that read it.
type ValuesRead<'a> = Vec<(u32, &'a [u8])>;

/// PhantomRead, DivergentRead and DuplicateRead. The reads checked.
fn check_reads(history: &History, index: &Index, anomalies: &mut Vec<Anomaly>) -> u64 {
    // Per (partition, offset): each distinct value read there, with the first consumer that read it.
    let mut at: BTreeMap<(u32, u64), ValuesRead> = BTreeMap::new();
    // Per (consumer, partition, value): the first offset the consumer read it at.
    let mut offset_read: HashMap<(u32, u32, &[u8]), u64> = HashMap::new();
    for read in &history.reads {
        let (consumer, partition, offset) = (read.consumer, read.partition, read.offset);
        if index.at.get(&(partition, offset)) != Some(&read.value.as_slice()) {
            let (value, found) = (show(&read.value), index.found(partition, offset));
            anomalies.push(Anomaly::PhantomRead { consumer, partition, offset, value, found });
        }
        let seen = at.entry((partition, offset)).or_default();
        if !seen.iter().any(|(_, v)| *v == read.value.as_slice()) {
            seen.push((consumer, &read.value));
        }
        match offset_read.get(&(consumer, partition, read.value.as_slice())) {
            Some(&first) if first != offset => {
                let value = show(&read.value);
                anomalies.push(Anomaly::DuplicateRead { consumer, partition, value, first, second: offset });
            }
            Some(_) => {}
            None => drop(offset_read.insert((consumer, partition, &read.value), offset)),
        }
    }
    for ((partition, offset), seen) in at.into_iter().filter(|(_, seen)| seen.len() > 1) {
        let reads = seen.into_iter().map(|(c, v)| (c, show(v))).collect();
        anomalies.push(Anomaly::DivergentRead { partition, offset, reads });
    }
    history.reads.len() as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Producer 1 (plain) and 2 (idempotent) on partition 0.
    fn history() -> History {
        let producers = BTreeMap::from([
            (1, ProducerInfo { partition: 0, idempotent: false }),
            (2, ProducerInfo { partition: 0, idempotent: true }),
        ]);
        let produce = |producer, values: &[&str], outcome| Produce {
            producer,
            values: values.iter().map(|v| v.as_bytes().to_vec()).collect(),
            outcome,
        };
        let produces = vec![
            produce(1, &["a0", "a1"], Outcome::Acked { base_offset: 0 }),
            produce(2, &["i0"], Outcome::Acked { base_offset: 2 }),
            produce(1, &["a2"], Outcome::Unknown),
            produce(2, &["i1", "i2"], Outcome::Acked { base_offset: 3 }),
            produce(2, &["i3"], Outcome::Unknown),
        ];
        let mut reads = Vec::new();
        for consumer in [7, 8] {
            for (offset, value) in ["a0", "a1", "i0", "i1"].iter().enumerate() {
                reads.push(Read { consumer, partition: 0, offset: offset as u64, value: value.as_bytes().to_vec() });
            }
        }
        History { producers, produces, reads }
    }

    fn final_log(values: &[&str]) -> FinalLog {
        let records = values.iter().enumerate();
        BTreeMap::from([(
            0,
            records.map(|(i, v)| StoredRecord { offset: i as u64, value: v.as_bytes().to_vec() }).collect(),
        )])
    }

    /// The anomalies of `history` against `log` (a clean history has none).
    fn anomalies(history: &History, log: &[&str]) -> Vec<Anomaly> {
        check(history, &final_log(log))
    }

    const CLEAN: &[&str] = &["a0", "a1", "i0", "i1", "i2", "a2"];

    #[test]
    fn a_clean_history_passes_and_everything_is_counted() {
        let (found, compared) = check_counted(&history(), &final_log(CLEAN));
        assert_eq!(found, vec![]);
        let expected = Compared { acked_records: 5, idempotent_records: 4, reads: 8, final_records: 6 };
        assert_eq!(compared, expected);
        // Unacknowledged records may be missing.
        assert_eq!(anomalies(&history(), &["a0", "a1", "i0", "i1", "i2"]), vec![]);
    }

    #[test]
    fn a_lost_acknowledged_record_is_caught() {
        let found = anomalies(&history(), &["a0", "a1", "i0", "i1"]);
        assert!(found.iter().any(|a| matches!(a, Anomaly::LostAck { offset: 4, found, .. } if found == "nothing")));
        // At the wrong offset is lost too.
        let moved = anomalies(&history(), &["a1", "a0", "i0", "i1", "i2"]);
        assert!(moved.contains(&Anomaly::LostAck { partition: 0, offset: 0, value: "a0".into(), found: "a1".into() }));
    }

    #[test]
    fn a_value_stored_twice_is_caught() {
        let found = anomalies(&history(), &["a0", "a1", "i0", "i1", "i2", "a1"]);
        assert_eq!(found, vec![Anomaly::DuplicateInLog { partition: 0, value: "a1".into(), first: 1, second: 5 }]);
    }

    #[test]
    fn an_idempotent_producer_out_of_order_or_with_a_hole_is_caught() {
        // i3 (unacknowledged) stored before i2: reordered (and i2 lost).
        let swapped = anomalies(&history(), &["a0", "a1", "i0", "i1", "i3", "i2"]);
        let reordered = |a: &Anomaly| {
            matches!(a, Anomaly::ReorderedIdempotent { producer: 2, earlier_offset: Some(5), later_offset: 4, .. })
        };
        assert!(swapped.iter().any(reordered), "{swapped:?}");
        // Unacknowledged records of a plain producer may land anywhere; an idempotent
        // producer's record after a missing earlier one may not (a hole in its sequence).
        let mut h = history();
        h.produces[3].outcome = Outcome::Unknown;
        let hole = anomalies(&h, &["a0", "a1", "i0", "i1", "i3"]);
        assert_eq!(hole.len(), 1, "{hole:?}");
        assert!(matches!(&hole[0], Anomaly::ReorderedIdempotent { earlier_offset: None, later_offset: 4, .. }));
    }

    #[test]
    fn consumers_reading_different_records_at_one_offset_are_caught() {
        let mut h = history();
        h.reads[5].value = b"zz".to_vec(); // consumer 8 at offset 1
        let found = anomalies(&h, CLEAN);
        let divergent =
            Anomaly::DivergentRead { partition: 0, offset: 1, reads: vec![(7, "a1".into()), (8, "zz".into())] };
        assert!(found.contains(&divergent), "{found:?}");
    }

    #[test]
    fn a_read_that_is_not_in_the_final_log_is_caught() {
        // Both consumers read a record the final log does not have at that offset.
        let found = anomalies(&history(), &["a0", "a1", "i0", "i2", "i1"]);
        let phantom =
            |c| Anomaly::PhantomRead { consumer: c, partition: 0, offset: 3, value: "i1".into(), found: "i2".into() };
        assert!(found.contains(&phantom(7)) && found.contains(&phantom(8)), "{found:?}");
        // A read past the end of the final log.
        let mut h = history();
        h.reads.push(Read { consumer: 7, partition: 0, offset: 6, value: b"a2".to_vec() });
        let beyond = anomalies(&h, CLEAN);
        assert!(beyond
            .iter()
            .any(|a| matches!(a, Anomaly::PhantomRead { offset: 6, found, .. } if found == "nothing")));
    }

    #[test]
    fn a_record_read_at_two_offsets_is_caught() {
        let mut h = history();
        h.reads.push(Read { consumer: 8, partition: 0, offset: 4, value: b"i0".to_vec() });
        let found = anomalies(&h, CLEAN);
        let twice = Anomaly::DuplicateRead { consumer: 8, partition: 0, value: "i0".into(), first: 2, second: 4 };
        assert!(found.contains(&twice), "{found:?}");
    }

    #[test]
    fn a_stored_value_nobody_sent_is_caught() {
        let found = anomalies(&history(), &["a0", "a1", "i0", "i1", "i2", "x9"]);
        assert_eq!(found, vec![Anomaly::Unsent { partition: 0, offset: 5, value: "x9".into() }]);
    }
}
