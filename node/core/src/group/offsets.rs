//! Committed offsets of one group: per partition the durable value (persisted to
//! `__consumer_offsets`, or replayed from it) and the commits still being persisted.
//!
//! Every value carries a coordinator-wide sequence number taken when the commit was
//! accepted; the newest sequence wins, so persists that complete out of order cannot
//! roll an offset back. The *visible* value (what offset fetches answer) is the newest
//! of durable and pending: a consumer taking a partition over right after a rebalance
//! must see the previous owner's last accepted commit, even before it is durable. If
//! that persist then fails, the visible value falls back to the durable one; a
//! consumer that already read the pending value only re-reads less, never skips.
//!
//! The table counts the bytes it holds ([`OffsetTable::bytes`]: per value held, durable
//! or pending, the topic and metadata lengths plus [`ENTRY_OVERHEAD_BYTES`]) so the
//! coordinator can bound the state of all its groups.

use std::collections::BTreeMap;

use strand_wire::msg::TopicPartition;

/// Bytes counted per value held on top of its topic and metadata: the map node, the
/// slot and the fixed fields (an estimate, on the high side).
pub(crate) const ENTRY_OVERHEAD_BYTES: u64 = 128;

/// What holding `committed` for a partition of `topic` costs in [`OffsetTable::bytes`].
pub(crate) fn entry_bytes(topic: &str, metadata: &str) -> u64 {
    (topic.len() + metadata.len()) as u64 + ENTRY_OVERHEAD_BYTES
}

/// One accepted commit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Committed {
    pub offset: u64,
    pub metadata: String,
    /// Coordinator clock at the commit (kept so a snapshot restates it as committed).
    pub commit_ms: u64,
    /// Coordinator-wide acceptance order.
    pub seq: u64,
}

#[derive(Debug, Default)]
struct Slot {
    durable: Option<Committed>,
    /// Accepted, not yet reported persisted; bounded by the coordinator's persist bound.
    pending: Vec<Committed>,
}

impl Slot {
    fn visible(&self) -> Option<&Committed> {
        self.pending.iter().chain(self.durable.iter()).max_by_key(|c| c.seq)
    }
}

/// The offsets table of one group.
#[derive(Debug, Default)]
pub(crate) struct OffsetTable {
    slots: BTreeMap<TopicPartition, Slot>,
    /// Sum of [`entry_bytes`] over every value held (durable and pending).
    bytes: u64,
}

impl OffsetTable {
    /// Records an accepted commit whose persist is in flight.
    pub fn stage(&mut self, tp: TopicPartition, committed: Committed) {
        self.bytes += entry_bytes(&tp.topic, &committed.metadata);
        self.slots.entry(tp).or_default().pending.push(committed);
    }

    /// Bytes this table holds (see the module doc).
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Forgets everything held for `tp` (its offsets expired).
    pub fn remove(&mut self, tp: &TopicPartition) {
        if let Some(slot) = self.slots.remove(tp) {
            for c in slot.pending.iter().chain(slot.durable.iter()) {
                self.bytes -= entry_bytes(&tp.topic, &c.metadata);
            }
        }
    }

    /// Every partition held (durable or pending), in order.
    pub fn partitions(&self) -> impl Iterator<Item = &TopicPartition> {
        self.slots.keys()
    }

    /// The persist of commit `seq` of `tp` finished: durable if `ok`, dropped otherwise.
    pub fn finish(&mut self, tp: &TopicPartition, seq: u64, ok: bool) {
        let Some(slot) = self.slots.get_mut(tp) else { return };
        let Some(index) = slot.pending.iter().position(|c| c.seq == seq) else { return };
        let committed = slot.pending.swap_remove(index);
        let dropped = if ok && slot.durable.as_ref().is_none_or(|d| d.seq < committed.seq) {
            slot.durable.replace(committed)
        } else {
            Some(committed)
        };
        if let Some(dropped) = dropped {
            self.bytes -= entry_bytes(&tp.topic, &dropped.metadata);
        }
        if slot.durable.is_none() && slot.pending.is_empty() {
            self.slots.remove(tp);
        }
    }

    /// A durable value replayed from the offsets partition (later replays win).
    pub fn load(&mut self, tp: TopicPartition, committed: Committed) {
        let cost = entry_bytes(&tp.topic, &committed.metadata);
        let slot = self.slots.entry(tp.clone()).or_default();
        if slot.durable.as_ref().is_none_or(|d| d.seq < committed.seq) {
            self.bytes += cost;
            if let Some(old) = slot.durable.replace(committed) {
                self.bytes -= entry_bytes(&tp.topic, &old.metadata);
            }
        }
    }

    /// The value an offset fetch answers for `tp`.
    pub fn visible(&self, tp: &TopicPartition) -> Option<&Committed> {
        self.slots.get(tp).and_then(Slot::visible)
    }

    /// Every partition with a visible value, in order.
    pub fn visible_all(&self) -> impl Iterator<Item = (&TopicPartition, &Committed)> {
        self.slots.iter().filter_map(|(tp, slot)| slot.visible().map(|c| (tp, c)))
    }

    /// Every partition with a durable value, in order.
    pub fn durable_all(&self) -> impl Iterator<Item = (&TopicPartition, &Committed)> {
        self.slots.iter().filter_map(|(tp, slot)| slot.durable.as_ref().map(|c| (tp, c)))
    }

    /// True when nothing is committed or in flight.
    pub fn is_empty(&self) -> bool {
        assert!(!self.slots.is_empty() || self.bytes == 0, "an empty table holds no bytes");
        self.slots.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tp() -> TopicPartition {
        TopicPartition { topic: "t".into(), partition: 0 }
    }

    fn c(offset: u64, seq: u64) -> Committed {
        Committed { offset, metadata: String::new(), commit_ms: 0, seq }
    }

    #[test]
    fn pending_is_visible_then_durable() {
        let mut table = OffsetTable::default();
        table.stage(tp(), c(10, 1));
        assert_eq!(table.visible(&tp()).map(|c| c.offset), Some(10));
        assert_eq!(table.durable_all().count(), 0);
        table.finish(&tp(), 1, true);
        assert_eq!(table.durable_all().map(|(_, c)| c.offset).collect::<Vec<_>>(), vec![10]);
    }

    #[test]
    fn out_of_order_completion_keeps_newest() {
        let mut table = OffsetTable::default();
        table.stage(tp(), c(10, 1));
        table.stage(tp(), c(20, 2));
        table.finish(&tp(), 2, true);
        table.finish(&tp(), 1, true);
        assert_eq!(table.visible(&tp()).map(|c| c.offset), Some(20));
        assert_eq!(table.durable_all().map(|(_, c)| c.offset).collect::<Vec<_>>(), vec![20]);
    }

    #[test]
    fn failed_persist_falls_back_and_empty_slot_disappears() {
        let mut table = OffsetTable::default();
        table.load(tp(), c(5, 1));
        table.stage(tp(), c(10, 2));
        table.finish(&tp(), 2, false);
        assert_eq!(table.visible(&tp()).map(|c| c.offset), Some(5));
        let mut other = OffsetTable::default();
        other.stage(tp(), c(10, 3));
        other.finish(&tp(), 3, false);
        assert!(other.is_empty());
    }

    #[test]
    fn bytes_follow_what_is_held() {
        let mut table = OffsetTable::default();
        let one = entry_bytes("t", "");
        table.load(tp(), c(5, 1));
        assert_eq!(table.bytes(), one);
        table.stage(tp(), c(10, 2));
        assert_eq!(table.bytes(), 2 * one);
        table.finish(&tp(), 2, true);
        assert_eq!(table.bytes(), one, "the durable value replaced the old one");
        table.stage(tp(), c(11, 3));
        table.finish(&tp(), 3, false);
        assert_eq!(table.bytes(), one, "a failed persist drops its value");
        table.remove(&tp());
        assert_eq!(table.bytes(), 0);
        assert!(table.is_empty());
    }
}
