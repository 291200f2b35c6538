//! The console's cluster view: the nodes of the control plane's latest view, each with
//! the numbers its own admin API gives (`/v1/node` on the `admin_port` every node
//! publishes in its registration), fetched in parallel with a short timeout when a page
//! is built, so one console shows every node and says which peer did not answer.
//!
//! A node that holds a chain but has no live registration is listed as down.

use std::collections::BTreeSet;
use std::time::Duration;

use super::model::{NodeRow, NodeStats};
use crate::control::ClusterView;

/// How long a page waits for one peer's `/v1/node` (peers are asked in parallel).
pub const PEER_TIMEOUT: Duration = Duration::from_secs(1);
/// Largest `/v1/node` answer read from a peer.
pub const PEER_BODY_BYTES_MAX: usize = 256 * 1024;
/// Peers asked per page; the rest are listed without their numbers.
pub const PEERS_ASKED_MAX: usize = 64;

/// The overview's node rows: this node (with `mine`), every registered peer (asked
/// through `peer`), and every chain member without a registration (down).
pub fn node_rows(
    view: &ClusterView,
    this_node: u32,
    mine: NodeStats,
    peer: &(dyn Fn(&str, u16) -> Result<NodeStats, String> + Sync),
) -> Vec<NodeRow> {
    let asked: Vec<(u32, Result<NodeStats, String>)> = std::thread::scope(|scope| {
        let handles: Vec<_> = view
            .nodes
            .values()
            .filter(|n| n.node_id != this_node)
            .take(PEERS_ASKED_MAX)
            .map(|n| {
                let answer = scope.spawn(move || match n.admin_port {
                    0 => Err("published no admin port (an older node)".to_string()),
                    port => peer(&n.host, port),
                });
                (n.node_id, answer)
            })
            .collect();
        handles
            .into_iter()
            .map(|(id, h)| (id, h.join().unwrap_or_else(|_| Err("the request thread panicked".into()))))
            .collect()
    });
    let mut asked = asked.into_iter().collect::<std::collections::BTreeMap<_, _>>();
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
    let in_chains: BTreeSet<u32> =
        view.chains.values().flat_map(|c| c.members.iter().copied().chain(c.learner)).collect();
    for id in in_chains.into_iter().filter(|id| !view.nodes.contains_key(id)) {
        rows.push(NodeRow {
            node_id: Some(id),
            address: String::new(),
            up: false,
            this_node: false,
            stats: None,
            error: Some("down: no live registration".into()),
        });
    }
    rows.sort_by_key(|r| r.node_id);
    rows
}

/// Asks the peer at `host:port` for its `/v1/node`.
pub fn fetch_node_stats(host: &str, port: u16) -> Result<NodeStats, String> {
    let url = format!("http://{host}:{port}/v1/node");
    use std::io::Read as _;
    let response =
        minreq::get(&url).with_timeout(PEER_TIMEOUT.as_secs()).send_lazy().map_err(|e| format!("GET {url}: {e}"))?;
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
