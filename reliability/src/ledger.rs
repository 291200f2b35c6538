//! The acknowledgement ledger and its checker: what the writers sent, what the node
//! acknowledged (partition, offset, value), and what it has been seen to store. After a
//! crash and restart, [`Ledger::verify`] compares a partition's log with the ledger.
//!
//! The promises checked (DESIGN §4, docs/RELIABILITY.md):
//! - every acknowledged record is present, at its acknowledged offset, with its value;
//! - no value is stored twice (every value is unique: it carries a sequence number);
//! - offsets are contiguous and never reused: once a record has been seen at an offset
//!   (acknowledged or not), every later read finds the same record there;
//! - nothing is stored that no writer sent.
//!
//! Unacknowledged records may or may not be present; once seen, they join the known log.
//! Every check reports how much it compared, so a check over nothing cannot pass silently.

use std::collections::{BTreeMap, HashMap, HashSet};

use crate::client::StoredRecord;

/// A broken guarantee, with enough context to find the record.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Violation {
    /// An acknowledged (or previously seen) record is not in the log.
    #[error("partition {partition}: record at offset {offset} ({value}) is missing; log ends at {log_end}")]
    Missing { partition: u32, offset: u64, value: String, log_end: u64 },
    /// A different record sits at an offset that was acknowledged or seen before.
    #[error("partition {partition}: offset {offset} reused: expected {expected}, found {found}")]
    OffsetReused { partition: u32, offset: u64, expected: String, found: String },
    /// The same value is stored at two offsets.
    #[error("partition {partition}: {value} stored twice, at offsets {first} and {second}")]
    Duplicate { partition: u32, value: String, first: u64, second: u64 },
    /// The log's offsets are not contiguous.
    #[error("partition {partition}: expected offset {expected}, found {found}")]
    OffsetGap { partition: u32, expected: u64, found: u64 },
    /// The log holds a value no writer sent.
    #[error("partition {partition}: offset {offset} holds a value never sent: {value}")]
    Unknown { partition: u32, offset: u64, value: String },
}

/// What one verification compared.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct VerifyReport {
    /// Stored records examined.
    pub records_checked: u64,
    /// Acknowledged records found at their offsets.
    pub acked_checked: u64,
    /// Records seen for the first time that were never acknowledged (in flight at a crash).
    pub unacked_new: u64,
    /// Log end offset of the partition.
    pub log_end: u64,
}

#[derive(Debug, Clone)]
struct Known {
    value: Vec<u8>,
    acked: bool,
}

#[derive(Debug, Clone, Default)]
struct PartitionLedger {
    known: BTreeMap<u64, Known>,
    offset_by_value: HashMap<Vec<u8>, u64>,
    sent: HashSet<Vec<u8>>,
    acked: u64,
    verified_end: u64,
}

/// Per-partition record of sent, acknowledged and seen records.
#[derive(Debug, Clone)]
pub struct Ledger {
    partitions: Vec<PartitionLedger>,
}

/// The value of record `seq` for `partition`: unique, self-describing, `filler_len` bytes longer.
pub fn record_value(partition: u32, seq: u64, filler_len: usize) -> Vec<u8> {
    let mut value = format!("p{partition}/s{seq:012}/").into_bytes();
    value.extend(std::iter::repeat_n(b'a' + (seq % 26) as u8, filler_len));
    value
}

impl Ledger {
    /// An empty ledger for partitions `0..partitions`.
    pub fn new(partitions: u32) -> Ledger {
        Ledger { partitions: vec![PartitionLedger::default(); partitions as usize] }
    }

    /// Notes values about to be sent (so a stored value can be told from garbage).
    pub fn record_sent(&mut self, partition: u32, values: &[Vec<u8>]) {
        let p = &mut self.partitions[partition as usize];
        p.sent.extend(values.iter().cloned());
    }

    /// Notes an acknowledgement of `values` at `base_offset..`. Fails if the node acknowledged
    /// an offset already known to hold another record.
    pub fn record_ack(&mut self, partition: u32, base_offset: u64, values: &[Vec<u8>]) -> Result<(), Violation> {
        let p = &mut self.partitions[partition as usize];
        for (i, value) in values.iter().enumerate() {
            let offset = base_offset + i as u64;
            match p.known.get_mut(&offset) {
                Some(known) if known.value != *value => {
                    return Err(Violation::OffsetReused {
                        partition,
                        offset,
                        expected: show(&known.value),
                        found: show(value),
                    });
                }
                Some(known) => {
                    if !known.acked {
                        known.acked = true;
                        p.acked += 1;
                    }
                }
                None => {
                    p.known.insert(offset, Known { value: value.clone(), acked: true });
                    p.acked += 1;
                }
            }
        }
        Ok(())
    }

    /// Acknowledged records of all partitions.
    pub fn acked_count(&self) -> u64 {
        self.partitions.iter().map(|p| p.acked).sum()
    }

    /// One past the highest offset known in `partition` (0 if none).
    pub fn known_end(&self, partition: u32) -> u64 {
        self.partitions[partition as usize].known.keys().next_back().map_or(0, |o| o + 1)
    }

    /// The log end offset found by the last successful [`Ledger::verify`] of `partition`: an
    /// incremental check may start there, as everything before it was checked.
    pub fn verified_end(&self, partition: u32) -> u64 {
        self.partitions[partition as usize].verified_end
    }

    /// Checks `stored` — the partition's log read from offset `from` to its end — against
    /// the ledger; on success every stored record joins the known log.
    pub fn verify(&mut self, partition: u32, from: u64, stored: &[StoredRecord]) -> Result<VerifyReport, Violation> {
        let p = &self.partitions[partition as usize];
        let mut report = VerifyReport { log_end: from + stored.len() as u64, ..VerifyReport::default() };
        let mut seen_here: HashMap<&[u8], u64> = HashMap::with_capacity(stored.len());
        for (i, record) in stored.iter().enumerate() {
            let expected = from + i as u64;
            if record.offset != expected {
                return Err(Violation::OffsetGap { partition, expected, found: record.offset });
            }
            check_record(partition, p, record, &mut seen_here, &mut report)?;
        }
        if let Some((&offset, known)) = p.known.range(report.log_end..).next() {
            return Err(Violation::Missing { partition, offset, value: show(&known.value), log_end: report.log_end });
        }
        let p = &mut self.partitions[partition as usize];
        for record in stored {
            p.known.entry(record.offset).or_insert_with(|| Known { value: record.value.clone(), acked: false });
            p.offset_by_value.insert(record.value.clone(), record.offset);
        }
        p.verified_end = report.log_end;
        Ok(report)
    }
}

fn check_record<'a>(
    partition: u32,
    p: &PartitionLedger,
    record: &'a StoredRecord,
    seen_here: &mut HashMap<&'a [u8], u64>,
    report: &mut VerifyReport,
) -> Result<(), Violation> {
    let offset = record.offset;
    if !p.sent.contains(&record.value) {
        return Err(Violation::Unknown { partition, offset, value: show(&record.value) });
    }
    let earlier = seen_here.insert(&record.value, offset).or(p.offset_by_value.get(&record.value).copied());
    if let Some(first) = earlier.filter(|&first| first != offset) {
        return Err(Violation::Duplicate { partition, value: show(&record.value), first, second: offset });
    }
    match p.known.get(&offset) {
        Some(known) if known.value != record.value => {
            Err(Violation::OffsetReused { partition, offset, expected: show(&known.value), found: show(&record.value) })
        }
        Some(known) => {
            report.records_checked += 1;
            report.acked_checked += u64::from(known.acked);
            Ok(())
        }
        None => {
            report.records_checked += 1;
            report.unacked_new += 1;
            Ok(())
        }
    }
}

/// A value for messages: its first 40 bytes, lossily as text.
fn show(value: &[u8]) -> String {
    String::from_utf8_lossy(&value[..value.len().min(40)]).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(offset: u64, value: &[u8]) -> StoredRecord {
        StoredRecord { offset, value: value.to_vec() }
    }

    /// A ledger with five acked records `v0..v4` at offsets 0..5 and one unacked `v5`; the log.
    fn setup() -> (Ledger, Vec<StoredRecord>) {
        let mut ledger = Ledger::new(1);
        let values: Vec<Vec<u8>> = (0..6).map(|i| record_value(0, i, 3)).collect();
        ledger.record_sent(0, &values);
        ledger.record_ack(0, 0, &values[..2]).unwrap();
        ledger.record_ack(0, 2, &values[2..5]).unwrap();
        let log = values.iter().enumerate().map(|(i, v)| rec(i as u64, v)).collect();
        (ledger, log)
    }

    #[test]
    fn a_faithful_log_passes_and_reports_what_it_compared() {
        let (mut ledger, log) = setup();
        let report = ledger.verify(0, 0, &log).unwrap();
        assert_eq!(report, VerifyReport { records_checked: 6, acked_checked: 5, unacked_new: 1, log_end: 6 });
        // The unacked record is known now: a second pass sees it as checked, not new.
        assert_eq!(ledger.verify(0, 0, &log).unwrap().unacked_new, 0);
        assert_eq!(ledger.acked_count(), 5);
    }

    #[test]
    fn an_unacked_tail_may_be_lost_before_it_was_seen() {
        let (mut ledger, log) = setup();
        assert_eq!(ledger.verify(0, 0, &log[..5]).unwrap().log_end, 5);
    }

    #[test]
    fn a_dropped_acked_record_is_caught() {
        let (mut ledger, mut log) = setup();
        log.truncate(4);
        assert!(matches!(ledger.verify(0, 0, &log), Err(Violation::Missing { offset: 4, .. })));
        let (mut ledger, mut log) = setup();
        log.remove(1);
        assert!(matches!(ledger.verify(0, 0, &log), Err(Violation::OffsetGap { expected: 1, found: 2, .. })));
    }

    #[test]
    fn a_seen_record_may_not_disappear_later() {
        let (mut ledger, log) = setup();
        ledger.verify(0, 0, &log).unwrap();
        assert!(matches!(ledger.verify(0, 0, &log[..5]), Err(Violation::Missing { offset: 5, .. })));
    }

    #[test]
    fn duplicates_reuse_and_garbage_are_caught() {
        let (mut ledger, mut log) = setup();
        log.push(rec(6, &log[2].value.clone()));
        assert!(matches!(ledger.verify(0, 0, &log), Err(Violation::Duplicate { first: 2, second: 6, .. })));

        let (mut ledger, mut log) = setup();
        log.swap(0, 1);
        log[0].offset = 0;
        log[1].offset = 1;
        assert!(matches!(ledger.verify(0, 0, &log), Err(Violation::OffsetReused { offset: 0, .. })));

        let (mut ledger, mut log) = setup();
        log[5].value = b"garbage".to_vec();
        assert!(matches!(ledger.verify(0, 0, &log), Err(Violation::Unknown { offset: 5, .. })));
    }

    #[test]
    fn an_ack_for_a_known_offset_with_another_value_is_reuse() {
        let (mut ledger, log) = setup();
        ledger.verify(0, 0, &log).unwrap();
        let other = record_value(0, 99, 0);
        ledger.record_sent(0, std::slice::from_ref(&other));
        assert!(matches!(ledger.record_ack(0, 5, &[other]), Err(Violation::OffsetReused { offset: 5, .. })));
        assert!(ledger.record_ack(0, 5, &[log[5].value.clone()]).is_ok());
    }

    #[test]
    fn incremental_verification_checks_only_the_tail_but_still_finds_duplicates() {
        let (mut ledger, log) = setup();
        ledger.verify(0, 0, &log).unwrap();
        let tail = log[3..].to_vec();
        assert_eq!(ledger.verify(0, 3, &tail).unwrap().records_checked, 3);
        let dup = vec![rec(6, &log[0].value)];
        assert!(matches!(ledger.verify(0, 6, &dup), Err(Violation::Duplicate { first: 0, second: 6, .. })));
    }
}
