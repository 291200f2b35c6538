//! The console's cluster view: the nodes of the control plane's latest view, each with
//! the numbers its own admin API gives (`/v1/node` on the `admin_port` every node
//! publishes in its registration), fetched in parallel with a short timeout when a page
//! is built, so one console shows every node and says which peer did not answer.
//!
//! A node without a live registration is listed as down when this console saw it
//! registered before (the admin thread remembers up to [`NODES_REMEMBERED_MAX`] nodes
//! until it restarts) or when a chain still names it.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use super::model::{NodeRow, NodeStats};
use crate::control::ClusterView;

/// How long a page waits for one peer's `/v1/node` (peers are asked in parallel).
pub const PEER_TIMEOUT: Duration = Duration::from_secs(1);
/// Largest `/v1/node` answer read from a peer.
pub const PEER_BODY_BYTES_MAX: usize = 256 * 1024;
/// Peers asked per page; the rest are listed without their numbers.
pub const PEERS_ASKED_MAX: usize = 64;
/// Nodes the console remembers having seen registered (to list them as down later).
pub const NODES_REMEMBERED_MAX: usize = 1024;

/// Adds the view's nodes to `seen` (node id → public address), up to
/// [`NODES_REMEMBERED_MAX`].
pub fn remember_nodes(view: &ClusterView, seen: &mut BTreeMap<u32, String>) {
    for n in view.nodes.values() {
        if seen.len() < NODES_REMEMBERED_MAX || seen.contains_key(&n.node_id) {
            seen.insert(n.node_id, format!("{}:{}", n.host, n.port));
        }
    }
}

/// The overview's node rows: this node (with `mine`), every registered peer (asked
/// through `peer`), and every node in `seen` or in a chain without a registration (down).
pub fn node_rows(
    view: &ClusterView,
    seen: &BTreeMap<u32, String>,
    this_node: u32,
    mine: NodeStats,
    peer: &(dyn Fn(&str, u16) -> Result<NodeStats, String> + Sync),
) -> Vec<NodeRow> {
    let mut asked = ask_peers(view, this_node, peer);
    let mut rows: Vec<NodeRow> = view
        .nodes
        .values()
        .map(|n| {
            let address = format!("{}:{}", n.host, n.port);
            let (stats, error) = if n.node_id == this_node {
                (Some(mine.clone()), None)
            } else {
                match asked.remove(&n.node_id) {
                    Some(Ok(stats)) => (Some(stats), None),
                    Some(Err(e)) => (None, Some(format!("unreachable: {e}"))),
                    None => (None, Some(format!("not asked (more than {PEERS_ASKED_MAX} peers)"))),
                }
            };
            NodeRow { node_id: Some(n.node_id), address, up: true, this_node: n.node_id == this_node, stats, error }
        })
        .collect();
    let mut missing: BTreeSet<u32> =
        view.chains.values().flat_map(|c| c.members.iter().copied().chain(c.learner)).collect();
    missing.extend(seen.keys());
    for id in missing.into_iter().filter(|id| !view.nodes.contains_key(id)) {
        rows.push(NodeRow {
            node_id: Some(id),
            address: seen.get(&id).cloned().unwrap_or_default(),
            up: false,
            this_node: false,
            stats: None,
            error: Some("down: no live registration".into()),
        });
    }
    rows.sort_by_key(|r| r.node_id);
    rows
}

/// Asks every registered peer but `this_node` (at most [`PEERS_ASKED_MAX`]) through
/// `ask` (host, admin port), each on its own scoped thread; answers by node id.
pub fn ask_peers<T: Send>(
    view: &ClusterView,
    this_node: u32,
    ask: &(dyn Fn(&str, u16) -> Result<T, String> + Sync),
) -> BTreeMap<u32, Result<T, String>> {
    std::thread::scope(|scope| {
        let handles: Vec<_> = view
            .nodes
            .values()
            .filter(|n| n.node_id != this_node)
            .take(PEERS_ASKED_MAX)
            .map(|n| {
                let answer = scope.spawn(move || match n.admin_port {
                    0 => Err("published no admin port (an older node)".to_string()),
                    port => ask(&n.host, port),
                });
                (n.node_id, answer)
            })
            .collect();
        handles
            .into_iter()
            .map(|(id, h)| (id, h.join().unwrap_or_else(|_| Err("the request thread panicked".into()))))
            .collect()
    })
}

/// Asks the peer at `host:port` for its `/v1/node`.
pub fn fetch_node_stats(host: &str, port: u16) -> Result<NodeStats, String> {
    fetch_json(host, port, "/v1/node")
}

/// The cluster secret, once the admin server of a cluster node starts: its peer requests
/// carry [`PEER_HEADER`] so a peer with `--require-auth` answers them (see [`peer_proof`]).
pub static PEER_SECRET: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();

/// The header a node's console request to a peer's admin port carries.
pub const PEER_HEADER: &str = "X-Strand-Peer";
/// Seconds one peer proof stays valid (it names its window; the current and the previous
/// window are accepted, so a captured header replays for at most two windows, and only for
/// its own path).
const PEER_PROOF_WINDOW_S: u64 = 30;

/// `hex(HMAC-SHA256(secret, "strand-admin-peer" ‖ window ‖ path))` for the window `now`
/// falls in (`back` windows earlier).
pub fn peer_proof(secret: &[u8], path: &str, back: u64) -> String {
    use hmac::Mac;
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let window = (now / PEER_PROOF_WINDOW_S).saturating_sub(back);
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(secret).expect("HMAC takes keys of any length");
    mac.update(b"strand-admin-peer");
    mac.update(&window.to_le_bytes());
    mac.update(path.as_bytes());
    mac.finalize().into_bytes().iter().map(|b| format!("{b:02x}")).collect()
}

/// Whether `proof` is this cluster's proof for `path` now.
pub fn peer_proof_ok(path: &str, proof: &str) -> bool {
    let Some(secret) = PEER_SECRET.get() else { return false };
    // Compared through the MAC (constant time) by recomputing: cheap, two windows.
    (0..2).any(|back| {
        let want = peer_proof(secret, path, back);
        want.len() == proof.len() && want.bytes().zip(proof.bytes()).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0
    })
}

/// GETs `path` (already percent-encoded) from the peer's admin port and parses the JSON.
pub fn fetch_json<T: serde::de::DeserializeOwned>(host: &str, port: u16, path: &str) -> Result<T, String> {
    use std::io::Read as _;
    let url = format!("http://{host}:{port}{path}");
    let mut request = minreq::get(&url).with_timeout(PEER_TIMEOUT.as_secs());
    if let Some(secret) = PEER_SECRET.get() {
        request = request.with_header(PEER_HEADER, peer_proof(secret, path, 0));
    }
    let response = request.send_lazy().map_err(|e| format!("GET {url}: {e}"))?;
    if response.status_code != 200 {
        return Err(format!("GET {url}: HTTP {}", response.status_code));
    }
    let mut body = Vec::new();
    let limit = u64::try_from(PEER_BODY_BYTES_MAX).unwrap_or(u64::MAX) + 1;
    std::io::Read::take(response, limit).read_to_end(&mut body).map_err(|e| format!("GET {url}: {e}"))?;
    if body.len() > PEER_BODY_BYTES_MAX {
        return Err(format!("GET {url}: answer longer than {PEER_BODY_BYTES_MAX} bytes"));
    }
    serde_json::from_slice(&body).map_err(|e| format!("GET {url}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peer_proofs_bind_the_secret_and_the_path() {
        let _ = PEER_SECRET.set(b"0123456789abcdef0123".to_vec());
        let secret = PEER_SECRET.get().unwrap();
        let proof = peer_proof(secret, "/v1/node", 0);
        assert!(peer_proof_ok("/v1/node", &proof));
        assert!(peer_proof_ok("/v1/node", &peer_proof(secret, "/v1/node", 1)), "the previous window still counts");
        assert!(!peer_proof_ok("/v1/node", &peer_proof(secret, "/v1/node", 2)), "older ones do not");
        assert!(!peer_proof_ok("/v1/groups", &proof), "a proof is for its own path");
        assert!(!peer_proof_ok("/v1/node", &peer_proof(b"another secret", "/v1/node", 0)));
        assert!(!peer_proof_ok("/v1/node", ""));
    }
    use crate::control::{ChainRecord, NodeRecord};

    fn record(node_id: u32, admin_port: u16) -> NodeRecord {
        NodeRecord {
            node_id,
            host: "127.0.0.1".into(),
            port: 7000 + node_id as u16,
            shard_ports: vec![],
            replication_ports: vec![1],
            admin_port,
            kafka_port: 0,
            incarnation: 1,
            token: String::new(),
        }
    }

    #[test]
    fn rows_say_which_peer_answered_which_did_not_and_which_is_down() {
        let mut view = ClusterView::default();
        for (id, admin) in [(1, 9001), (2, 9002), (3, 0)] {
            view.nodes.insert(id, record(id, admin));
        }
        let chain = ChainRecord {
            epoch: 3,
            members: vec![1, 4],
            learner: None,
            incarnations: Default::default(),
            preferred: None,
        };
        view.chains.insert(("t".into(), 0), chain);
        let seen: BTreeMap<u32, String> = [(5, "10.0.0.5:7070".to_string())].into();
        let peer = |_: &str, port: u16| match port {
            9002 => Ok(NodeStats { node_id: Some(2), ..Default::default() }),
            _ => Err("connection refused".to_string()),
        };
        let mine = NodeStats { node_id: Some(1), ..Default::default() };
        let rows = node_rows(&view, &seen, 1, mine, &peer);
        let summary: Vec<(Option<u32>, bool, bool, Option<&str>)> =
            rows.iter().map(|r| (r.node_id, r.up, r.stats.is_some(), r.error.as_deref())).collect();
        assert_eq!(
            summary,
            vec![
                (Some(1), true, true, None),
                (Some(2), true, true, None),
                (Some(3), true, false, Some("unreachable: published no admin port (an older node)")),
                (Some(4), false, false, Some("down: no live registration")),
                (Some(5), false, false, Some("down: no live registration")),
            ]
        );
        assert_eq!(rows[4].address, "10.0.0.5:7070");
        let mut remembered = BTreeMap::new();
        remember_nodes(&view, &mut remembered);
        assert_eq!(remembered.keys().copied().collect::<Vec<_>>(), vec![1, 2, 3]);
    }
}
