//! Routing decisions (IO-free): which node and port a partition request goes to,
//! given the cached cluster metadata.
//!
//! - Produces (and, by default, reads) go to the partition's chain head:
//!   `leader_node`'s host and `shard_ports[leader_shard]` (the owner shard's fast-path
//!   port), or the node's public port when it advertises no shard ports.
//! - With [`ReadPreference::Nearest`], fetch and list-offsets go to a replica "near" the
//!   client: the bootstrap node itself if it is in the chain, else the first chain member
//!   on the bootstrap's host, else the head. Every member serves committed data only
//!   (CRAQ-style), so any member's answer is correct; a lagging one is just later.
//!
//! Invariant: a route always names a node of the metadata; `None` means "unknown node",
//! and the caller goes through the bootstrap (which forwards) instead.

use std::collections::HashMap;

use strand_wire::msg::{NodeInfo, PartitionMetadata};

/// Which replica serves a client's reads (fetch, list offsets).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ReadPreference {
    /// The chain head (also the only choice for produces).
    #[default]
    Leader,
    /// The bootstrap node if it holds a replica, else a replica on the bootstrap's host,
    /// else the head.
    Nearest,
}

/// Where the client is "near": the node it bootstrapped from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Near {
    /// Node id the bootstrap answered in its handshake.
    pub node_id: Option<u32>,
    /// Host (IP or name) of the bootstrap address.
    pub host: String,
}

/// A chosen destination.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    pub node_id: u32,
    pub host: String,
    pub port: u16,
}

impl Route {
    /// `host:port`.
    pub fn addr(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }
}

const FNV_OFFSET_BASIS: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

/// The shard owning `partition` of `topic` on a node with `shard_count` shards. Mirrors
/// `strand_core::placement::owner_shard` (frozen FNV-1a placement; a test compares them).
pub fn owner_shard(topic: &str, partition: u32, shard_count: u16) -> u16 {
    if shard_count == 0 {
        return 0;
    }
    let hash = topic.as_bytes().iter().fold(FNV_OFFSET_BASIS, |h, b| (h ^ u64::from(*b)).wrapping_mul(FNV_PRIME));
    (hash.wrapping_add(u64::from(partition)) % u64::from(shard_count)) as u16
}

/// The offsets partition of `group_id` (its coordinator is that partition's head).
/// Mirrors `strand_core::placement::group_partition` (FNV-1a of the id mod the count).
pub fn group_partition(group_id: &str, partition_count: u32) -> u32 {
    if partition_count == 0 {
        return 0;
    }
    let hash = group_id.as_bytes().iter().fold(FNV_OFFSET_BASIS, |h, b| (h ^ u64::from(*b)).wrapping_mul(FNV_PRIME));
    (hash % u64::from(partition_count)) as u32
}

fn to_node(node: &NodeInfo, shard: u16, use_shard_ports: bool) -> Route {
    let port = match node.shard_ports.get(usize::from(shard)) {
        Some(&port) if use_shard_ports && port != 0 => port,
        _ => node.port,
    };
    Route { node_id: node.node_id, host: node.host.clone(), port }
}

/// The chain head's owner-shard port (or public port).
pub fn leader_route(nodes: &HashMap<u32, NodeInfo>, part: &PartitionMetadata, use_shard_ports: bool) -> Option<Route> {
    nodes.get(&part.leader_node).map(|node| to_node(node, part.leader_shard, use_shard_ports))
}

/// The route of a read of `topic`/`part` under `preference`.
pub fn read_route(
    nodes: &HashMap<u32, NodeInfo>,
    topic: &str,
    part: &PartitionMetadata,
    preference: ReadPreference,
    near: &Near,
    use_shard_ports: bool,
) -> Option<Route> {
    if preference == ReadPreference::Leader {
        return leader_route(nodes, part, use_shard_ports);
    }
    let member = |id: u32| part.replicas.contains(&id).then(|| nodes.get(&id)).flatten();
    let chosen = near
        .node_id
        .and_then(member)
        .or_else(|| part.replicas.iter().filter_map(|&id| member(id)).find(|n| n.host == near.host));
    match chosen {
        Some(node) if node.node_id == part.leader_node => leader_route(nodes, part, use_shard_ports),
        Some(node) => {
            let shards = u16::try_from(node.shard_ports.len()).unwrap_or(u16::MAX);
            Some(to_node(node, owner_shard(topic, part.partition, shards), use_shard_ports))
        }
        None => leader_route(nodes, part, use_shard_ports),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use strand_wire::ErrorCode;

    fn node(id: u32, host: &str, port: u16, shards: &[u16]) -> (u32, NodeInfo) {
        (id, NodeInfo { node_id: id, host: host.to_string(), port, shard_ports: shards.to_vec() })
    }

    fn part(leader: u32, shard: u16, replicas: &[u32]) -> PartitionMetadata {
        PartitionMetadata {
            partition: 3,
            error: ErrorCode::None,
            leader_node: leader,
            leader_shard: shard,
            replicas: replicas.to_vec(),
            epoch: 7,
            log_start_offset: 0,
            log_end_offset: 0,
            commit_offset: 0,
            preferred_leader: 0,
        }
    }

    fn cluster() -> HashMap<u32, NodeInfo> {
        [
            node(1, "10.0.0.1", 7070, &[7100, 7101]),
            node(2, "10.0.0.2", 7070, &[7100, 7101, 7102]),
            node(3, "10.0.0.3", 7070, &[]),
        ]
        .into_iter()
        .collect()
    }

    #[test]
    fn produce_goes_to_the_heads_owner_shard_port_or_its_public_port() {
        let nodes = cluster();
        let r = leader_route(&nodes, &part(2, 1, &[2, 1, 3]), true).expect("route");
        assert_eq!(r, Route { node_id: 2, host: "10.0.0.2".into(), port: 7101 });
        assert_eq!(leader_route(&nodes, &part(2, 1, &[2, 1, 3]), false).expect("route").port, 7070);
        // No shard ports advertised, or a shard index beyond them: the public port.
        assert_eq!(leader_route(&nodes, &part(3, 0, &[3]), true).expect("route").port, 7070);
        assert_eq!(leader_route(&nodes, &part(1, 5, &[1]), true).expect("route").port, 7070);
        assert_eq!(leader_route(&nodes, &part(9, 0, &[9]), true), None, "unknown head");
    }

    #[test]
    fn nearest_prefers_the_bootstrap_replica_then_same_host_then_head() {
        let nodes = cluster();
        let p = part(2, 1, &[2, 1, 3]);
        let near1 = Near { node_id: Some(1), host: "10.0.0.1".into() };
        let r = read_route(&nodes, "t", &p, ReadPreference::Nearest, &near1, true).expect("route");
        let shard = owner_shard("t", 3, 2);
        assert_eq!(r, Route { node_id: 1, host: "10.0.0.1".into(), port: 7100 + shard });
        // Leader preference ignores nearness.
        let r = read_route(&nodes, "t", &p, ReadPreference::Leader, &near1, true).expect("route");
        assert_eq!((r.node_id, r.port), (2, 7101));
        // The bootstrap is the head: the head's own shard (not recomputed).
        let near2 = Near { node_id: Some(2), host: "10.0.0.2".into() };
        assert_eq!(read_route(&nodes, "t", &p, ReadPreference::Nearest, &near2, true).expect("r").port, 7101);
        // Bootstrap not a member (or unknown id): a member on the same host.
        let near_host = Near { node_id: Some(9), host: "10.0.0.3".into() };
        let r = read_route(&nodes, "t", &p, ReadPreference::Nearest, &near_host, true).expect("route");
        assert_eq!((r.node_id, r.port), (3, 7070));
        // Nothing near: the head.
        let far = Near { node_id: None, host: "192.168.1.1".into() };
        let r = read_route(&nodes, "t", &p, ReadPreference::Nearest, &far, true).expect("route");
        assert_eq!((r.node_id, r.port), (2, 7101));
        // A near node that is not in this partition's chain is not used.
        let p2 = part(2, 1, &[2, 3]);
        let r = read_route(&nodes, "t", &p2, ReadPreference::Nearest, &near1, true).expect("route");
        assert_eq!(r.node_id, 2);
    }

    #[test]
    fn owner_shard_matches_the_nodes_frozen_placement() {
        // The vectors of `strand_core::placement`'s frozen `stable_values` test.
        const FNV_A: u64 = 0xaf63_dc4c_8601_ec8c;
        for shards in 1u16..=8 {
            for partition in [0u32, 1, 5, 1000] {
                let expected = FNV_A.wrapping_add(u64::from(partition)) % u64::from(shards);
                assert_eq!(u64::from(owner_shard("a", partition, shards)), expected);
            }
        }
        assert_eq!(owner_shard("orders", 0, 1), 0);
        assert_eq!(owner_shard("", 0, 3), (FNV_OFFSET_BASIS % 3) as u16);
    }
}
