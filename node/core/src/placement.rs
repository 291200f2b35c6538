//! Partition placement: which shard of a node owns `(topic, partition)`.
//!
//! Invariant: the mapping is a pure function of its inputs and stable across
//! builds, platforms and restarts (FNV-1a, never `std`'s randomly keyed hasher),
//! because a shard finds its partitions' directories by it after a restart and
//! clients cache it through metadata. Consecutive partitions of one topic land
//! on consecutive shards, so a topic with `P >= shards` partitions spreads evenly.

/// Index of a shard (one glommio executor) on a node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ShardId(pub u16);

/// Most shards a node runs; `u16` shard ids leave room, this keeps tables small.
pub const SHARD_COUNT_MAX: u16 = 256;

const FNV_OFFSET_BASIS: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

/// FNV-1a over `bytes`.
pub fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(FNV_OFFSET_BASIS, |hash, b| (hash ^ u64::from(*b)).wrapping_mul(FNV_PRIME))
}

/// The shard that owns `partition` of `topic` on a node with `shard_count` shards.
pub fn owner_shard(topic: &str, partition: u32, shard_count: u16) -> ShardId {
    assert!(shard_count > 0, "a node has at least one shard");
    assert!(shard_count <= SHARD_COUNT_MAX);
    let slot = fnv1a(topic.as_bytes()).wrapping_add(u64::from(partition));
    ShardId((slot % u64::from(shard_count)) as u16)
}

/// The partition of the internal offsets topic that holds `group_id`'s commits, for an
/// offsets topic of `partition_count` partitions. The group's coordinator is the owner
/// shard of that partition ([`owner_shard`]), so a coordinator always appends to a
/// partition it owns — also after a restart with a different shard count, because the
/// offsets topic keeps the partition count it was created with.
pub fn group_partition(group_id: &str, partition_count: u32) -> u32 {
    assert!(partition_count > 0, "the offsets topic has at least one partition");
    (fnv1a(group_id.as_bytes()) % u64::from(partition_count)) as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stable_values() {
        // Frozen: changing these moves partitions between shards on upgrade.
        assert_eq!(fnv1a(b""), FNV_OFFSET_BASIS);
        assert_eq!(fnv1a(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(owner_shard("orders", 0, 1), ShardId(0));
        let first = owner_shard("orders", 0, 7);
        assert_eq!(first.0 as u64, fnv1a(b"orders") % 7);
    }

    #[test]
    fn partitions_of_a_topic_spread_evenly() {
        for shards in 1..=8u16 {
            let mut per_shard = vec![0u32; usize::from(shards)];
            for p in 0..(u32::from(shards) * 10) {
                let s = owner_shard("events", p, shards);
                assert!(s.0 < shards);
                per_shard[usize::from(s.0)] += 1;
            }
            assert!(per_shard.iter().all(|n| *n == 10), "{shards} shards: {per_shard:?}");
        }
    }

    #[test]
    fn group_partition_is_stable_and_spread() {
        // Frozen like `stable_values`: moving a group loses its committed offsets.
        assert_eq!(group_partition("g", 1), 0);
        assert_eq!(u64::from(group_partition("orders-app", 7)), fnv1a(b"orders-app") % 7);
        let mut per_partition = [0u32; 4];
        for g in 0..400 {
            per_partition[group_partition(&format!("group-{g}"), 4) as usize] += 1;
        }
        assert!(per_partition.iter().all(|n| *n > 50), "{per_partition:?}");
    }

    #[test]
    fn deterministic() {
        for p in 0..100 {
            assert_eq!(owner_shard("t", p, 3), owner_shard("t", p, 3));
        }
    }
}
