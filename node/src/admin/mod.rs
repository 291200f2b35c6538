//! Admin HTTP endpoint on a side thread (tiny_http): `/health`, `/metrics`
//! (Prometheus text), `/v1/topics` (JSON; internal `__` topics flagged
//! `"internal": true`), `/v1/groups` (JSON: every consumer group with state,
//! generation, members and assignment, and per partition committed offset, log
//! end and lag — from the snapshots coordinator and owner shards publish every
//! second, so values may lag the truth by about a second), `/v1/groups/{id}` (one
//! group with its lag over the last hour), `/v1/topics/{name}`, `/v1/node` and
//! `/v1/overview`, and the web console on `/`, `/topics`, `/topics/{name}`, `/groups`,
//! `/groups/{id}` and `/node`: HTML pages rendered from the same structs as the JSON
//! (see `model`). The `/v1/...` endpoints answer for this node (the overview's node
//! table aside); in cluster mode the group and topic pages merge in the peers' answers.
//!
//! Requests are answered by [`ADMIN_WORKERS`] threads sharing one listener; `/health` and
//! `/metrics` never wait for the console's lock, so a cluster page waiting on a dead peer
//! does not delay them.
//!
//! Invariant: the admin threads only read — metrics atomics, the published
//! partition snapshots and the registry (under its control-plane mutex); it never
//! touches a shard's state directly. It also keeps the console's bounded history
//! (`sampler`), sampled between requests, and asks peers for their `/v1/node`
//! (`cluster`) while it builds an overview in cluster mode.

pub mod cluster;
pub mod html;
pub mod model;
pub mod process;
pub mod sampler;
pub mod svg;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use percent_encoding::percent_decode_str;
use tiny_http::{Header, Method, Response, Server};

use self::html::Nav;
use self::sampler::Sampler;
use crate::hostcheck::Severity;

use crate::shard::NodeShared;

/// The admin HTTPS certificate and key for tiny_http (its own rustls; no client
/// certificates, and the files as they were at start: SIGHUP reloads only the client ports).
/// tiny_http takes PEM bytes and reads only PKCS#8 and RSA keys (it panics on others), so
/// the key's kind is checked here first.
fn ssl_config(files: &crate::tls::TlsFiles) -> Result<tiny_http::SslConfig, String> {
    use rustls_pki_types::PrivateKeyDer;
    match crate::tls::load_key(&files.key).map_err(|e| e.to_string())? {
        PrivateKeyDer::Pkcs8(_) | PrivateKeyDer::Pkcs1(_) => {}
        _ => {
            return Err(format!(
                "TLS key {}: the admin HTTPS needs a PKCS#8 or RSA key (convert with `openssl pkcs8 -topk8 -nocrypt`)",
                files.key.display()
            ))
        }
    }
    let read = |path: &std::path::Path| std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()));
    Ok(tiny_http::SslConfig { certificate: read(&files.cert)?, private_key: read(&files.key)? })
}

/// A running admin server.
pub struct AdminServer {
    pub addr: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

/// Why the admin server could not start.
#[derive(Debug, thiserror::Error)]
#[error("admin HTTP on {addr}: {reason}")]
pub struct AdminError {
    addr: SocketAddr,
    reason: String,
}

impl AdminServer {
    /// Serves on `listener` (bound exclusively by the node, see `net::listen`) on a new
    /// thread.
    pub fn start(listener: std::net::TcpListener, shared: Arc<NodeShared>) -> Result<Self, AdminError> {
        let addr = listener
            .local_addr()
            .map_err(|e| AdminError { addr: SocketAddr::from(([0, 0, 0, 0], 0)), reason: e.to_string() })?;
        if let Some(control) = &shared.control {
            let _ = cluster::PEER_SECRET.set(control.cluster_secret().to_vec());
        }
        let ssl = match &shared.tls {
            Some(tls) => Some(ssl_config(tls.files()).map_err(|reason| AdminError { addr, reason })?),
            None => None,
        };
        let server = Server::from_listener(listener, ssl).map_err(|e| AdminError { addr, reason: e.to_string() })?;
        let bound =
            server.server_addr().to_ip().ok_or_else(|| AdminError { addr, reason: "not an IP socket".into() })?;
        let stop = Arc::new(AtomicBool::new(false));
        let thread_stop = stop.clone();
        let thread = std::thread::Builder::new()
            .name("strand-admin".into())
            .spawn(move || serve(server, shared, thread_stop))
            .map_err(|e| AdminError { addr, reason: e.to_string() })?;
        Ok(AdminServer { addr: bound, stop, thread: Some(thread) })
    }

    /// Stops the thread and waits for it.
    pub fn stop(mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The admin thread's own state: the console's history, the host checks' warnings and
/// the cluster nodes it saw registered.
pub struct Console {
    pub sampler: Sampler,
    pub warnings: Vec<String>,
    pub seen_nodes: std::collections::BTreeMap<u32, String>,
}

impl Console {
    /// Runs the host checks once more (their warnings are shown on the overview) and
    /// takes the first sample.
    pub fn start(shared: &NodeShared) -> Console {
        let warnings = crate::hostcheck::run(&shared.config)
            .into_iter()
            .filter(|f| f.severity != Severity::Pass)
            .map(|f| format!("{}: {}", f.name, f.detail))
            .collect();
        let mut sampler = Sampler::default();
        sampler.sample(&shared.metrics, Instant::now());
        Console { sampler, warnings, seen_nodes: Default::default() }
    }

    /// Samples when due and remembers the cluster's registered nodes.
    pub fn tick(&mut self, shared: &NodeShared) {
        self.sampler.tick(&shared.metrics, Instant::now());
        if let Some(control) = &shared.control {
            cluster::remember_nodes(&control.latest(), &mut self.seen_nodes);
        }
    }
}

/// Threads answering admin requests. `/health` and `/metrics` never wait for the console:
/// while one worker builds a cluster page (up to [`cluster::PEER_TIMEOUT`] per unanswered
/// peer), the others answer health checks and scrapes.
const ADMIN_WORKERS: usize = 3;

fn serve(server: Server, shared: Arc<NodeShared>, stop: Arc<AtomicBool>) {
    let (server, console) = (Arc::new(server), Arc::new(Mutex::new(Console::start(&shared))));
    let workers: Vec<JoinHandle<()>> = (1..ADMIN_WORKERS)
        .filter_map(|i| {
            let (server, shared, stop, console) = (server.clone(), shared.clone(), stop.clone(), console.clone());
            let spawned = std::thread::Builder::new()
                .name(format!("strand-admin-{i}"))
                .spawn(move || serve_requests(&server, &shared, &stop, &console));
            spawned.map_err(|e| tracing::warn!(error = %e, "admin worker thread not started")).ok()
        })
        .collect();
    serve_requests(&server, &shared, &stop, &console);
    for w in workers {
        let _ = w.join();
    }
}

/// One worker: samples for the console when it is free, answers requests until `stop`.
fn serve_requests(server: &Server, shared: &NodeShared, stop: &AtomicBool, console: &Mutex<Console>) {
    while !stop.load(Ordering::Relaxed) {
        if let Ok(mut c) = console.try_lock() {
            c.tick(shared);
        }
        let request = match server.recv_timeout(Duration::from_millis(200)) {
            Ok(Some(r)) => r,
            Ok(None) => continue,
            Err(e) => {
                tracing::warn!(error = %e, "admin server receive failed");
                continue;
            }
        };
        let (status, content_type, body) = match route_fast(request.method(), request.url(), shared) {
            Some(answer) => answer,
            None => match authorized(&request, &shared.security) {
                Ok(()) => {
                    let console = console.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
                    route(request.method(), request.url(), shared, &console)
                }
                Err(refused) => refused,
            },
        };
        let header = Header::from_bytes("Content-Type", content_type).expect("static header is valid");
        let mut response = Response::from_string(body).with_status_code(status).with_header(header);
        if status == 401 {
            let challenge = Header::from_bytes("WWW-Authenticate", "Basic realm=\"strand\", charset=\"UTF-8\"")
                .expect("static header is valid");
            response = response.with_header(challenge);
        }
        if let Err(e) = request.respond(response) {
            tracing::debug!(error = %e, "admin response failed");
        }
    }
}

/// With `--require-auth`, everything but `/health` and `/metrics` (scrapers present no
/// credentials) shows data, so it needs HTTP Basic credentials of a user allowed to
/// describe the cluster (superusers are): 401 without or with wrong ones, 403 for a user
/// without that permission. The password is checked against the user's SCRAM verifier as
/// SASL PLAIN checks it; it is never logged. Over plain HTTP it crosses the network as it
/// is: give the node `--tls-cert` (the admin port then speaks https) or keep `--admin` on
/// loopback.
fn authorized(
    request: &tiny_http::Request,
    security: &crate::security::Security,
) -> Result<(), (u16, &'static str, String)> {
    use base64::Engine;
    use strand_core::auth::acl::{Operation, Target};
    if !security.require_auth {
        return Ok(());
    }
    // A peer's console asking for its part of a cluster page proves the cluster secret.
    let peer = request.headers().iter().find(|h| h.field.equiv(cluster::PEER_HEADER));
    if peer.is_some_and(|h| cluster::peer_proof_ok(request.url(), h.value.as_str())) {
        return Ok(());
    }
    let unauthorized = || (401, TEXT, "authentication required: HTTP Basic credentials of a Strand user\n".to_string());
    let basic = request
        .headers()
        .iter()
        .find(|h| h.field.equiv("Authorization"))
        .and_then(|h| h.value.as_str().strip_prefix("Basic "))
        .and_then(|b64| base64::engine::general_purpose::STANDARD.decode(b64.trim()).ok())
        .ok_or_else(unauthorized)?;
    let colon = basic.iter().position(|&b| b == b':').ok_or_else(unauthorized)?;
    // SASL PLAIN's message: no authzid, user, password.
    let mut plain = Vec::with_capacity(basic.len() + 2);
    plain.push(0);
    plain.extend_from_slice(&basic[..colon]);
    plain.push(0);
    plain.extend_from_slice(&basic[colon + 1..]);
    let user = security.read(|t| strand_core::auth::plain::verify(&plain, t)).map_err(|e| {
        tracing::debug!(reason = %e, "admin HTTP: credentials refused");
        unauthorized()
    })?;
    let allowed = security.read(|t| {
        let superuser = t.users.get(&user).is_some_and(|u| u.superuser);
        t.acls.check(&user, superuser, Operation::Describe, Target::Cluster).is_ok()
    });
    if !allowed {
        return Err((403, TEXT, format!("user {user} may not describe the cluster (ACL describe on the cluster)\n")));
    }
    Ok(())
}

const TEXT: &str = "text/plain; charset=utf-8";
const HTML: &str = "text/html; charset=utf-8";
const JSON: &str = "application/json";

/// `/health` and `/metrics`, which need no console state; `None` for everything else.
fn route_fast(method: &Method, url: &str, shared: &NodeShared) -> Option<(u16, &'static str, String)> {
    if *method != Method::Get {
        return None;
    }
    match url.split('?').next().unwrap_or("") {
        "/health" if shared.metrics.serving.load(Ordering::Relaxed) => Some((200, TEXT, "ok\n".into())),
        "/health" => Some((503, TEXT, "not serving\n".into())),
        "/metrics" => {
            let body = shared.metrics.render_prometheus() + &model::node_gauges_prometheus(shared);
            Some((200, "text/plain; version=0.0.4", body))
        }
        _ => None,
    }
}

/// Answers one request: `(status, content type, body)`.
pub fn route(method: &Method, url: &str, shared: &NodeShared, console: &Console) -> (u16, &'static str, String) {
    if *method != Method::Get {
        return (405, TEXT, "method not allowed\n".into());
    }
    if let Some(answer) = route_fast(method, url, shared) {
        return answer;
    }
    let started = Instant::now();
    let path = url.split('?').next().unwrap_or("");
    let sampler = &console.sampler;
    match path {
        "/v1/topics" => (200, JSON, json("topics", &model::topics(shared, sampler))),
        "/v1/groups" => (200, JSON, json("groups", &model::groups(shared, sampler, false))),
        "/v1/node" => (200, JSON, to_json(&model::node_stats(shared, sampler, &console.warnings))),
        "/v1/overview" => (200, JSON, to_json(&overview(shared, console))),
        "/" => {
            let body = html::overview(&overview(shared, console));
            (200, HTML, html::page("Overview", Nav::Overview, &body, started))
        }
        "/topics" => {
            (200, HTML, html::page("Topics", Nav::Topics, &html::topics(&model::topics(shared, sampler)), started))
        }
        "/groups" => {
            let ask = |host: &str, port| cluster::fetch_json(host, port, "/v1/groups");
            let (groups, unanswered) = model::cluster_groups(shared, sampler, &ask);
            let body = html::groups(&groups, &unanswered);
            (200, HTML, html::page("Consumer groups", Nav::Groups, &body, started))
        }
        "/node" => {
            let body = html::node(&model::node_stats(shared, sampler, &console.warnings));
            (200, HTML, html::page("Node", Nav::Node, &body, started))
        }
        _ => route_named(path, shared, console, started),
    }
}

/// The pages and endpoints of one named topic or group.
fn route_named(path: &str, shared: &NodeShared, console: &Console, started: Instant) -> (u16, &'static str, String) {
    let not_found = (404, TEXT, "not found\n".to_string());
    let (kind, encoded) = match path.strip_prefix("/v1/").unwrap_or(path).trim_start_matches('/').split_once('/') {
        Some((kind @ ("topics" | "groups"), name)) if !name.is_empty() => (kind, name),
        _ => return not_found,
    };
    let Ok(name) = percent_decode_str(encoded).decode_utf8() else {
        return (400, TEXT, format!("{kind}: the name in {path:?} is not percent-encoded UTF-8\n"));
    };
    // JSON answers for this node only; pages merge in the peers' JSON (so peers never ask
    // each other in a loop).
    let json_wanted = path.starts_with("/v1/");
    let sampler = &console.sampler;
    let peer_path = format!("/v1/{kind}/{}", html::link_segment(&name));
    if kind == "topics" {
        let found = if json_wanted {
            model::topics(shared, sampler).into_iter().find(|t| t.name == name).map(|t| (t, Vec::new()))
        } else {
            let ask = |host: &str, port| cluster::fetch_json(host, port, &peer_path);
            model::cluster_topic(shared, sampler, &name, &ask)
        };
        let Some((t, unanswered)) = found else {
            return (404, TEXT, format!("no topic {name:?}\n"));
        };
        if json_wanted {
            return (200, JSON, to_json(&t));
        }
        let title = format!("Topic {}", t.name);
        return (200, HTML, html::page(&title, Nav::Topics, &html::topic(&t, &unanswered), started));
    }
    let found = if json_wanted {
        model::groups(shared, sampler, true).into_iter().find(|g| g.group_id == name)
    } else {
        let ask = |host: &str, port| cluster::fetch_json(host, port, &peer_path);
        model::cluster_group(shared, sampler, &name, &ask)
    };
    let Some(g) = found else {
        return (404, TEXT, format!("no consumer group {name:?}\n"));
    };
    if json_wanted {
        return (200, JSON, to_json(&g));
    }
    let title = format!("Consumer group {}", g.group_id);
    (200, HTML, html::page(&title, Nav::Groups, &html::group(&g), started))
}

fn overview(shared: &NodeShared, console: &Console) -> model::Overview {
    let groups = |host: &str, port| cluster::fetch_json(host, port, "/v1/groups");
    let peers = model::Peers { node: &cluster::fetch_node_stats, groups: &groups };
    model::overview(shared, &console.sampler, &console.warnings, &console.seen_nodes, &peers)
}

fn json<T: serde::Serialize>(key: &str, value: &T) -> String {
    to_json(&serde_json::json!({ key: value }))
}

fn to_json<T: serde::Serialize>(value: &T) -> String {
    serde_json::to_string_pretty(value).unwrap_or_else(|_| "{}".into())
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicU32;
    use std::sync::{Mutex, OnceLock};

    use clap::Parser as _;

    use super::*;
    use crate::config::{Cli, NodeConfig};
    use crate::metrics::{GroupGauge, GroupPartitionGauge, NodeMetrics, PartitionGauge};
    use crate::shard::registry::TopicRegistry;
    use crate::topic::TopicConfig;

    const HOSTILE: &str = "<script>alert(1)</script>";
    const WIDE_PARTITIONS: u32 = 1000;

    /// A node's shared state with no shards running: a 1 000-partition topic and a
    /// group with a hostile name, published as the shards would.
    fn shared(dir: &std::path::Path) -> NodeShared {
        let cli = Cli::parse_from(["strand-node", "--data-dir", dir.to_str().unwrap(), "--shards", "1"]);
        let config = NodeConfig::from_cli(cli).unwrap();
        let mut registry = TopicRegistry::load(dir).unwrap();
        let topic = TopicConfig {
            name: "wide".into(),
            partitions: WIDE_PARTITIONS,
            replication_factor: 1,
            configs: [("retention_ms".to_string(), "3600000".to_string())].into(),
        };
        registry.create(topic).unwrap();
        let metrics = NodeMetrics::new(1, 100);
        let gauge = |p| PartitionGauge {
            topic: "wide".into(),
            partition: p,
            log_start_offset: 0,
            log_end_offset: u64::from(p) * 10,
            size_bytes: 4096,
            set_aside_bytes: 0,
            bytes_read: u64::from(p) * 100,
            replica: None,
        };
        metrics.shards[0].publish_partitions((0..WIDE_PARTITIONS).map(gauge).collect());
        let committed = |p| GroupPartitionGauge { topic: "wide".into(), partition: p, committed: Some(u64::from(p)) };
        metrics.shards[0].publish_groups(vec![GroupGauge {
            group_id: HOSTILE.into(),
            state: "Empty".into(),
            generation: 0,
            assignor: "range".into(),
            members: Vec::new(),
            partitions: (0..WIDE_PARTITIONS).map(committed).collect(),
        }]);
        NodeShared {
            metrics: Arc::new(metrics),
            registry: Mutex::new(registry),
            inboxes: Vec::new(),
            group_inboxes: Vec::new(),
            ports: OnceLock::new(),
            connections: AtomicU32::new(0),
            connection_sources: Arc::default(),
            producer_ids: Default::default(),
            quotas: crate::quota::QuotaRegistry::with_users(config.quotas, config.quota_users.clone()),
            security: crate::security::Security::open(dir.to_path_buf(), false, None, None).unwrap(),
            config,
            control: None,
            tls: None,
            cluster_tls: None,
        }
    }

    fn get(shared: &NodeShared, console: &Console, url: &str) -> (u16, &'static str, String) {
        route(&Method::Get, url, shared, console)
    }

    #[test]
    fn json_and_html_handlers() {
        let dir = tempfile::tempdir().unwrap();
        let shared = shared(dir.path());
        let console = Console {
            sampler: Sampler::default(),
            warnings: vec!["nofile: <low>".into()],
            seen_nodes: Default::default(),
        };
        // Lag of partition p is 10p - p = 9p; the total over 0..1000 is 9 * 999 * 1000 / 2.
        let total_lag = 9 * 999 * 1000 / 2;
        let (status, kind, body) = get(&shared, &console, "/v1/groups");
        assert_eq!((status, kind), (200, JSON));
        let groups: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(groups["groups"][0]["group_id"], HOSTILE);
        assert_eq!(groups["groups"][0]["total_lag"], total_lag);
        assert_eq!(groups["groups"][0]["partitions"][7]["lag"], 63);
        let overview: serde_json::Value = serde_json::from_str(&get(&shared, &console, "/v1/overview").2).unwrap();
        assert_eq!((overview["topics"].clone(), overview["partitions"].clone()), (1.into(), 1000.into()));
        assert_eq!(overview["nodes"][0]["stats"]["warnings"][0], "nofile: <low>");
        let topic: serde_json::Value = serde_json::from_str(&get(&shared, &console, "/v1/topics/wide").2).unwrap();
        assert_eq!(topic["offsets"].as_array().unwrap().len(), 1000);
        assert_eq!(topic["configs"]["retention_ms"], "3600000");
        assert_eq!(topic["effective"]["retention_ms"], 3_600_000);

        let encoded = html::link_segment(HOSTILE);
        for url in ["/", "/topics", "/topics/wide", "/groups", &format!("/groups/{encoded}"), "/node"] {
            let (status, kind, page) = get(&shared, &console, url);
            assert_eq!((status, kind), (200, HTML), "{url}");
            assert!(!page.contains("<script>alert") && !page.contains("<low>"), "{url}");
        }
        let (_, _, group) = get(&shared, &console, &format!("/groups/{encoded}"));
        assert!(group.contains(&format!("<b id=\"total-lag\">{total_lag}</b>")), "{group}");
        assert!(group.contains("<td class=\"n lag\">63</td>"), "{group}");
        assert!(get(&shared, &console, "/").2.contains("nofile: &lt;low&gt;"));
        assert_eq!(get(&shared, &console, "/topics/nope").0, 404);
        assert_eq!(get(&shared, &console, "/v1/groups/nope").0, 404);
        assert_eq!(get(&shared, &console, "/groups/%FF%FE").0, 400);
        assert_eq!(route(&Method::Post, "/", &shared, &console).0, 405);
    }

    /// The server-side cost of the pages with 1 000 partitions (printed, not asserted:
    /// the docs quote it).
    #[test]
    fn render_time_with_1000_partitions() {
        let dir = tempfile::tempdir().unwrap();
        let shared = shared(dir.path());
        let console = Console { sampler: Sampler::default(), warnings: Vec::new(), seen_nodes: Default::default() };
        let group = format!("/groups/{}", html::link_segment(HOSTILE));
        for url in ["/", "/topics", "/topics/wide", group.as_str(), "/node", "/v1/topics"] {
            let mut times: Vec<Duration> = (0..5)
                .map(|_| {
                    let started = Instant::now();
                    assert_eq!(get(&shared, &console, url).0, 200);
                    started.elapsed()
                })
                .collect();
            times.sort();
            println!("render {url} with {WIDE_PARTITIONS} partitions: median {:?}", times[2]);
        }
    }
}
