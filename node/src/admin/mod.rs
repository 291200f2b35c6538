//! Admin HTTP endpoint on a side thread (tiny_http): `/health`, `/metrics`
//! (Prometheus text), `/v1/topics` (JSON; internal `__` topics flagged
//! `"internal": true`), `/v1/groups` (JSON: every consumer group with state,
//! generation, members and assignment, and per partition committed offset, log
//! end and lag — from the snapshots coordinator and owner shards publish every
//! second, so values may lag the truth by about a second), `/v1/groups/{id}` (one
//! group with its lag over the last hour), `/v1/node` and `/v1/overview`, and the
//! web console on `/`, `/topics`, `/topics/{name}`, `/groups`, `/groups/{id}` and
//! `/node`: HTML pages rendered from the same structs as the JSON (see `model`).
//!
//! Invariant: the admin thread only reads — metrics atomics, the published
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
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use percent_encoding::percent_decode_str;
use tiny_http::{Header, Method, Response, Server};

use self::html::Nav;
use self::sampler::Sampler;
use crate::hostcheck::Severity;

use crate::shard::NodeShared;

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
        let server = Server::from_listener(listener, None).map_err(|e| AdminError { addr, reason: e.to_string() })?;
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

/// The admin thread's own state: the console's history and the host checks' warnings.
pub struct Console {
    pub sampler: Sampler,
    pub warnings: Vec<String>,
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
        Console { sampler, warnings }
    }
}

fn serve(server: Server, shared: Arc<NodeShared>, stop: Arc<AtomicBool>) {
    let mut console = Console::start(&shared);
    while !stop.load(Ordering::Relaxed) {
        console.sampler.tick(&shared.metrics, Instant::now());
        let request = match server.recv_timeout(Duration::from_millis(200)) {
            Ok(Some(r)) => r,
            Ok(None) => continue,
            Err(e) => {
                tracing::warn!(error = %e, "admin server receive failed");
                continue;
            }
        };
        let (status, content_type, body) = route(request.method(), request.url(), &shared, &console);
        let header = Header::from_bytes("Content-Type", content_type).expect("static header is valid");
        let response = Response::from_string(body).with_status_code(status).with_header(header);
        if let Err(e) = request.respond(response) {
            tracing::debug!(error = %e, "admin response failed");
        }
    }
}

const TEXT: &str = "text/plain; charset=utf-8";
const HTML: &str = "text/html; charset=utf-8";
const JSON: &str = "application/json";

/// Answers one request: `(status, content type, body)`.
pub fn route(method: &Method, url: &str, shared: &NodeShared, console: &Console) -> (u16, &'static str, String) {
    if *method != Method::Get {
        return (405, TEXT, "method not allowed\n".into());
    }
    let started = Instant::now();
    let path = url.split('?').next().unwrap_or("");
    let sampler = &console.sampler;
    match path {
        "/health" if shared.metrics.serving.load(Ordering::Relaxed) => (200, TEXT, "ok\n".into()),
        "/health" => (503, TEXT, "not serving\n".into()),
        "/metrics" => (200, "text/plain; version=0.0.4", shared.metrics.render_prometheus()),
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
            let body = html::groups(&model::groups(shared, sampler, false));
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
    let json_wanted = path.starts_with("/v1/");
    let sampler = &console.sampler;
    if kind == "topics" {
        let Some(t) = model::topics(shared, sampler).into_iter().find(|t| t.name == name) else {
            return (404, TEXT, format!("no topic {name:?}\n"));
        };
        if json_wanted {
            return (200, JSON, to_json(&t));
        }
        let title = format!("Topic {}", t.name);
        return (200, HTML, html::page(&title, Nav::Topics, &html::topic(&t), started));
    }
    let Some(g) = model::groups(shared, sampler, true).into_iter().find(|g| g.group_id == name) else {
        return (404, TEXT, format!("no consumer group {name:?} on this node\n"));
    };
    if json_wanted {
        return (200, JSON, to_json(&g));
    }
    let title = format!("Consumer group {}", g.group_id);
    (200, HTML, html::page(&title, Nav::Groups, &html::group(&g), started))
}

fn overview(shared: &NodeShared, console: &Console) -> model::Overview {
    model::overview(shared, &console.sampler, &console.warnings, &cluster::fetch_node_stats)
}

fn json<T: serde::Serialize>(key: &str, value: &T) -> String {
    to_json(&serde_json::json!({ key: value }))
}

fn to_json<T: serde::Serialize>(value: &T) -> String {
    serde_json::to_string_pretty(value).unwrap_or_else(|_| "{}".into())
}
