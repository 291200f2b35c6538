//! Server-side partition assignors (pure functions). Both are deterministic: members
//! are taken in member-id order and topics/partitions in name/number order, so the
//! same inputs always give the same assignment.
//!
//! Invariant: every partition of every topic that at least one member subscribes to
//! (and whose partition count is known) goes to exactly one member subscribed to that
//! topic; every member appears in the result, possibly with nothing.

use std::collections::{BTreeMap, BTreeSet};

use strand_wire::msg::{Assignor, TopicPartition};

/// Assigns the partitions of the subscribed topics to `members` (member id → subscribed
/// topics). `partition_counts` gives each topic's partition count; a topic missing from
/// it has no partitions (yet).
///
/// - [`Assignor::Range`]: per topic, the subscribed members in id order get contiguous
///   ranges; the first `count % members` get one partition more.
/// - [`Assignor::RoundRobin`]: all `(topic, partition)` in order are dealt one by one
///   over the members in id order, skipping members not subscribed to the topic.
pub fn assign(
    assignor: Assignor,
    members: &BTreeMap<String, BTreeSet<String>>,
    partition_counts: &BTreeMap<String, u32>,
) -> BTreeMap<String, Vec<TopicPartition>> {
    let mut out: BTreeMap<String, Vec<TopicPartition>> = members.keys().map(|m| (m.clone(), Vec::new())).collect();
    let topics: BTreeSet<&String> = members.values().flatten().collect();
    match assignor {
        Assignor::Range => assign_range(&topics, members, partition_counts, &mut out),
        Assignor::RoundRobin => assign_round_robin(&topics, members, partition_counts, &mut out),
    }
    out
}

fn assign_range(
    topics: &BTreeSet<&String>,
    members: &BTreeMap<String, BTreeSet<String>>,
    partition_counts: &BTreeMap<String, u32>,
    out: &mut BTreeMap<String, Vec<TopicPartition>>,
) {
    for topic in topics {
        let count = partition_counts.get(*topic).copied().unwrap_or(0);
        let subscribers: Vec<&String> = members.iter().filter(|(_, t)| t.contains(*topic)).map(|(m, _)| m).collect();
        // `topics` only holds topics some member subscribes to.
        assert!(!subscribers.is_empty());
        let member_count = subscribers.len() as u32;
        let (each, extra) = (count / member_count, count % member_count);
        let mut next = 0u32;
        for (index, member) in subscribers.iter().enumerate() {
            let take = each + u32::from((index as u32) < extra);
            let owned = out.get_mut(*member).expect("every member has an entry");
            owned.extend((next..next + take).map(|partition| TopicPartition { topic: (*topic).clone(), partition }));
            next += take;
        }
        assert_eq!(next, count);
    }
}

fn assign_round_robin(
    topics: &BTreeSet<&String>,
    members: &BTreeMap<String, BTreeSet<String>>,
    partition_counts: &BTreeMap<String, u32>,
    out: &mut BTreeMap<String, Vec<TopicPartition>>,
) {
    let order: Vec<(&String, &BTreeSet<String>)> = members.iter().collect();
    let mut cursor = 0usize;
    for topic in topics {
        let count = partition_counts.get(*topic).copied().unwrap_or(0);
        for partition in 0..count {
            // Some member subscribes to `topic`, so this loop ends within one lap.
            let mut steps = 0usize;
            while !order[cursor % order.len()].1.contains(*topic) {
                cursor += 1;
                steps += 1;
                assert!(steps <= order.len());
            }
            let member = order[cursor % order.len()].0;
            let owned = out.get_mut(member).expect("every member has an entry");
            owned.push(TopicPartition { topic: (*topic).clone(), partition });
            cursor += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `members`: (id, topics); `counts`: (topic, partitions); `expect`: per member in
    /// id order, "topic-partition" strings.
    fn check(assignor: Assignor, members: &[(&str, &[&str])], counts: &[(&str, u32)], expect: &[(&str, &[&str])]) {
        let members: BTreeMap<String, BTreeSet<String>> =
            members.iter().map(|(m, t)| (m.to_string(), t.iter().map(|s| s.to_string()).collect())).collect();
        let counts: BTreeMap<String, u32> = counts.iter().map(|(t, c)| (t.to_string(), *c)).collect();
        let got = assign(assignor, &members, &counts);
        let got: Vec<(String, Vec<String>)> = got
            .into_iter()
            .map(|(m, tps)| (m, tps.iter().map(|tp| format!("{}-{}", tp.topic, tp.partition)).collect()))
            .collect();
        let expect: Vec<(String, Vec<String>)> =
            expect.iter().map(|(m, tps)| (m.to_string(), tps.iter().map(|s| s.to_string()).collect())).collect();
        assert_eq!(got, expect, "{assignor:?}");
    }

    #[test]
    fn partition_count_bounds_parallelism() {
        for assignor in [Assignor::Range, Assignor::RoundRobin] {
            let t: &[&str] = &["t"];
            check(assignor, &[("a", t)], &[("t", 4)], &[("a", &["t-0", "t-1", "t-2", "t-3"])]);
            let two: &[(&str, &[&str])] = &[("a", t), ("b", t)];
            let four: &[(&str, &[&str])] = &[("a", t), ("b", t), ("c", t), ("d", t)];
            let five: &[(&str, &[&str])] = &[("a", t), ("b", t), ("c", t), ("d", t), ("e", t)];
            let one_each: &[(&str, &[&str])] = &[("a", &["t-0"]), ("b", &["t-1"]), ("c", &["t-2"]), ("d", &["t-3"])];
            let mut with_idle = one_each.to_vec();
            with_idle.push(("e", &[]));
            check(assignor, four, &[("t", 4)], one_each);
            check(assignor, five, &[("t", 4)], &with_idle);
            if assignor == Assignor::Range {
                check(assignor, two, &[("t", 4)], &[("a", &["t-0", "t-1"]), ("b", &["t-2", "t-3"])]);
            } else {
                check(assignor, two, &[("t", 4)], &[("a", &["t-0", "t-2"]), ("b", &["t-1", "t-3"])]);
            }
        }
    }

    #[test]
    fn range_per_topic_extra_goes_to_first_members() {
        let both: &[&str] = &["t", "u"];
        check(
            Assignor::Range,
            &[("a", both), ("b", both)],
            &[("t", 3), ("u", 3)],
            &[("a", &["t-0", "t-1", "u-0", "u-1"]), ("b", &["t-2", "u-2"])],
        );
    }

    #[test]
    fn round_robin_spreads_across_topics_and_skips_unsubscribed() {
        let both: &[&str] = &["t", "u"];
        check(
            Assignor::RoundRobin,
            &[("a", both), ("b", both)],
            &[("t", 3), ("u", 3)],
            &[("a", &["t-0", "t-2", "u-1"]), ("b", &["t-1", "u-0", "u-2"])],
        );
        check(
            Assignor::RoundRobin,
            &[("a", &["t"]), ("b", both), ("c", &["u"])],
            &[("t", 2), ("u", 3)],
            &[("a", &["t-0"]), ("b", &["t-1", "u-1"]), ("c", &["u-0", "u-2"])],
        );
    }

    #[test]
    fn unknown_topics_and_empty_groups_assign_nothing() {
        check(Assignor::Range, &[("a", &["missing"])], &[], &[("a", &[])]);
        check(Assignor::RoundRobin, &[("a", &["t"])], &[("t", 0)], &[("a", &[])]);
        check(Assignor::Range, &[], &[("t", 4)], &[]);
    }
}
