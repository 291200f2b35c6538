//! The console in cluster mode (a real etcd, two real nodes): node 1's overview lists
//! both nodes with each one's own numbers (node 2's fetched from its admin port, which
//! it publishes in its registration), an RF=2 topic's partition shows its chain and
//! epoch, node 1's pages merge in the partitions and groups only node 2 holds; once
//! node 2 stops, node 1's overview lists it as down and the topic's partition as
//! under-replicated.

mod common;
#[path = "common/groups.rs"]
mod groups;

use std::path::Path;
use std::time::{Duration, Instant};

use common::etcd::Etcd;
use common::Node;
use strand_wire::msg::*;
use strand_wire::ErrorCode;

const TOPIC: &str = "mirrored";
const WAIT: Duration = Duration::from_secs(30);

fn start_node(dir: &Path, id: u32, etcd: &Etcd) -> Node {
    let id = id.to_string();
    let url = etcd.endpoint();
    let flags = ["--node-id", &id, "--etcd", &url, "--lease-ttl-s", "2", "--replication-port-base", "0"];
    Node::start(dir, 1, &flags)
}

/// An HTTP/1.0 GET (tiny_http chunks large HTTP/1.1 answers).
fn get_json(node: &Node, path: &str) -> serde_json::Value {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(node.admin).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(s, "GET {path} HTTP/1.0\r\nHost: x\r\n\r\n").unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or_default();
    serde_json::from_str(body).unwrap_or_else(|e| panic!("GET {path}: {e}: {text}"))
}

fn wait_for(what: &str, mut check: impl FnMut() -> Option<serde_json::Value>) -> serde_json::Value {
    let deadline = Instant::now() + WAIT;
    loop {
        if let Some(v) = check() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn overview_shows_peers_chains_and_a_down_node() {
    let tmp = tempfile::tempdir().unwrap();
    let etcd = Etcd::start();
    let first = start_node(&tmp.path().join("n1"), 1, &etcd);
    let mut second = start_node(&tmp.path().join("n2"), 2, &etcd);
    let create = Request::CreateTopic(CreateTopicRequest {
        name: TOPIC.into(),
        partitions: 1,
        replication_factor: 2,
        configs: Vec::new(),
    });
    let (header, _) = first.client().call(create, &[]);
    assert_eq!(header.error, ErrorCode::None, "create: {:?}", header.message);

    let overview = wait_for("both nodes with their stats and a full chain", || {
        let o = get_json(&first, "/v1/overview");
        let nodes = o["nodes"].as_array()?;
        let answered = nodes.iter().filter(|n| n["up"] == true && n["stats"]["shards"] == 1).count();
        (answered == 2 && o["under_replicated"].as_array()?.is_empty()).then_some(o)
    });
    assert_eq!(overview["cluster"], true);
    let peer = &overview["nodes"][1];
    assert_eq!((peer["node_id"].clone(), peer["this_node"].clone()), (2.into(), false.into()), "{overview}");
    assert_eq!(peer["stats"]["node_id"], 2, "node 2's own /v1/node: {overview}");
    assert!(overview["nodes"][0]["stats"]["controller"].is_boolean(), "{overview}");
    let topic = wait_for("node 1's replica published with its chain", || {
        let t = get_json(&first, &format!("/v1/topics/{TOPIC}"));
        (t["offsets"][0]["chain"].as_array().map_or(0, |c| c.len()) == 2).then_some(t)
    });
    let partition = &topic["offsets"][0];
    let mut chain: Vec<u64> = partition["chain"].as_array().unwrap().iter().map(|n| n.as_u64().unwrap()).collect();
    chain.sort();
    assert_eq!(chain, vec![1, 2], "{topic}");
    assert!(partition["epoch"].as_u64().is_some_and(|e| e >= 1), "{topic}");

    pages_merge_what_the_peer_holds(&first, &second);
    health_does_not_wait_for_a_silent_peer(&first, &second);

    second.signal_and_wait(libc::SIGKILL, Duration::from_secs(10));
    let overview = wait_for("node 2 down and the partition under-replicated", || {
        let o = get_json(&first, "/v1/overview");
        let down = o["nodes"].as_array()?.iter().any(|n| n["node_id"] == 2 && n["up"] == false);
        let under = o["under_replicated"].as_array()?.iter().any(|u| u["topic"] == TOPIC);
        (down && under).then_some(o)
    });
    assert!(overview["nodes"][1]["error"].as_str().is_some_and(|e| e.contains("down")), "{overview}");
    let (status, page) = first.admin_get("/");
    assert_eq!(status, 200);
    assert!(page.contains("<span class=\"down\">down</span>"), "{page}");
}

/// With node 2 paused (SIGSTOP: its admin port accepts but never answers), node 1's overview
/// waits for node 2's numbers until the peer timeout; `/health` and `/metrics` asked
/// meanwhile are answered before the overview is (they never wait for the console).
fn health_does_not_wait_for_a_silent_peer(first: &Node, second: &Node) {
    let pid = second.child.id() as libc::pid_t;
    // SAFETY: kill(2) with a pid this test spawned; no memory is involved.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGSTOP) }, 0);
    let admin = first.admin;
    let started = Instant::now();
    let overview = std::thread::spawn(move || {
        let _ = http_get(admin, "/");
        started.elapsed()
    });
    std::thread::sleep(Duration::from_millis(100));
    let health = http_get(first.admin, "/health");
    let health_at = started.elapsed();
    let metrics = http_get(first.admin, "/metrics");
    let metrics_at = started.elapsed();
    let overview_at = overview.join().unwrap();
    // SAFETY: as above.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGCONT) }, 0);
    assert!(health.contains("ok"), "{health}");
    assert!(metrics.contains("strand_requests_total"), "{metrics}");
    assert!(
        overview_at >= Duration::from_millis(500),
        "the overview did not wait for the paused peer ({overview_at:?})"
    );
    assert!(
        health_at < overview_at && metrics_at < overview_at,
        "health at {health_at:?} and metrics at {metrics_at:?} waited for the overview ({overview_at:?})"
    );
}

/// The whole answer of an HTTP/1.0 GET.
fn http_get(addr: std::net::SocketAddr, path: &str) -> String {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(s, "GET {path} HTTP/1.0\r\nHost: x\r\n\r\n").unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    text
}

/// An RF=1 topic spread over both nodes and a group coordinated by node 2: node 1's
/// `/v1/...` answer for node 1 only, its pages show everything.
fn pages_merge_what_the_peer_holds(first: &Node, second: &Node) {
    let create = Request::CreateTopic(CreateTopicRequest {
        name: "spread".into(),
        partitions: 4,
        replication_factor: 1,
        configs: Vec::new(),
    });
    let (header, _) = first.client().call(create, &[]);
    assert_eq!(header.error, ErrorCode::None, "create: {:?}", header.message);
    let held = |node: &Node| get_json(node, "/v1/topics/spread")["offsets"].as_array().map_or(0, |o| o.len());
    wait_for("both nodes publish their spread partitions", || (held(first) + held(second) == 4).then_some(0.into()));
    assert!(held(first) < 4, "placement put every partition on node 1: nothing to merge");
    let (_, page) = first.admin_get("/topics/spread");
    assert_eq!(page.matches("<tr><td class=\"n\">").count(), 4, "all four partitions on node 1's page: {page}");

    // A standalone commit lands only on the group's coordinator (the head of the group's
    // offsets partition, created on first use): find a group node 2 coordinates.
    let mut c = second.client();
    let group = wait_for("a group coordinated by node 2", || {
        let found = (0..64)
            .map(|i| format!("remote-{i}"))
            .find(|g| groups::commit(&mut c, g, 0, "", &[("spread", 0, 0)]) == ErrorCode::None);
        found.map(serde_json::Value::from)
    });
    let group = group.as_str().unwrap().to_string();
    let listed = |node: &Node| get_json(node, "/v1/groups")["groups"].as_array().cloned().unwrap_or_default();
    wait_for("node 2 publishes the group", || {
        listed(second).iter().any(|g| g["group_id"] == group.as_str()).then_some(0.into())
    });
    assert!(!listed(first).iter().any(|g| g["group_id"] == group.as_str()), "node 1 does not coordinate {group}");
    let (_, page) = first.admin_get("/groups");
    assert!(page.contains(&format!(">{group}</a>")), "node 1's group page lists node 2's group: {page}");
    let (status, page) = first.admin_get(&format!("/groups/{group}"));
    assert_eq!(status, 200, "{page}");
    let overview = get_json(first, "/v1/overview");
    assert!(overview["most_lag"].as_array().unwrap().iter().any(|g| g["group_id"] == group.as_str()), "{overview}");
}
