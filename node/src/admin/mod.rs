//! Admin HTTP endpoint on a side thread (tiny_http): `/health`, `/metrics`
//! (Prometheus text), `/v1/topics` (JSON; internal `__` topics flagged
//! `"internal": true`), `/v1/groups` (JSON: every consumer group with state,
//! generation, members and assignment, and per partition committed offset, log
//! end and lag — from the snapshots coordinator and owner shards publish every
//! second, so values may lag the truth by about a second).
//!
//! Invariant: the admin thread only reads — metrics atomics, the published
//! partition snapshots and the registry (under its control-plane mutex); it never
//! touches a shard's state directly.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use serde::Serialize;
use tiny_http::{Header, Method, Response, Server};

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

fn serve(server: Server, shared: Arc<NodeShared>, stop: Arc<AtomicBool>) {
    while !stop.load(Ordering::Relaxed) {
        let request = match server.recv_timeout(Duration::from_millis(200)) {
            Ok(Some(r)) => r,
            Ok(None) => continue,
            Err(e) => {
                tracing::warn!(error = %e, "admin server receive failed");
                continue;
            }
        };
        let (status, content_type, body) = route(request.method(), request.url(), &shared);
        let header = Header::from_bytes("Content-Type", content_type).expect("static header is valid");
        let response = Response::from_string(body).with_status_code(status).with_header(header);
        if let Err(e) = request.respond(response) {
            tracing::debug!(error = %e, "admin response failed");
        }
    }
}

fn route(method: &Method, url: &str, shared: &NodeShared) -> (u16, &'static str, String) {
    const TEXT: &str = "text/plain; charset=utf-8";
    if *method != Method::Get {
        return (405, TEXT, "method not allowed\n".into());
    }
    match url.split('?').next().unwrap_or("") {
        "/health" if shared.metrics.serving.load(Ordering::Relaxed) => (200, TEXT, "ok\n".into()),
        "/health" => (503, TEXT, "not serving\n".into()),
        "/metrics" => (200, "text/plain; version=0.0.4", shared.metrics.render_prometheus()),
        "/v1/topics" => (200, "application/json", topics_json(shared)),
        "/v1/groups" => (200, "application/json", groups_json(shared)),
        _ => (404, TEXT, "not found\n".into()),
    }
}

#[derive(Serialize)]
struct TopicJson {
    name: String,
    partitions: u32,
    replication_factor: u16,
    internal: bool,
    offsets: Vec<PartitionJson>,
}

#[derive(Serialize)]
struct PartitionJson {
    partition: u32,
    log_start_offset: u64,
    log_end_offset: u64,
    size_bytes: u64,
}

fn topics_json(shared: &NodeShared) -> String {
    let gauges: Vec<_> = shared.metrics.shards.iter().flat_map(|m| m.partitions()).collect();
    // Node-local topics, plus in cluster mode the view's (this node's replicas' offsets).
    let mut configs: Vec<crate::topic::TopicConfig> = match shared.registry.lock() {
        Ok(reg) => reg.topics().values().cloned().collect(),
        Err(_) => Vec::new(),
    };
    if let Some(control) = &shared.control {
        configs.retain(|t| crate::topic::is_internal_topic(&t.name));
        configs.extend(control.latest().topics.values().filter(|t| !crate::topic::is_internal_topic(&t.name)).cloned());
    }
    let topics: Vec<TopicJson> = configs
        .iter()
        .map(|t| {
            let mut offsets: Vec<PartitionJson> = gauges
                .iter()
                .filter(|g| g.topic == t.name)
                .map(|g| PartitionJson {
                    partition: g.partition,
                    log_start_offset: g.log_start_offset,
                    log_end_offset: g.log_end_offset,
                    size_bytes: g.size_bytes,
                })
                .collect();
            offsets.sort_by_key(|p| p.partition);
            TopicJson {
                name: t.name.clone(),
                partitions: t.partitions,
                replication_factor: t.replication_factor,
                internal: crate::topic::is_internal_topic(&t.name),
                offsets,
            }
        })
        .collect();
    serde_json::to_string_pretty(&serde_json::json!({ "topics": topics })).unwrap_or_else(|_| "{}".into())
}

#[derive(Serialize)]
struct GroupJson {
    group_id: String,
    state: String,
    generation: u32,
    assignor: String,
    members: Vec<MemberJson>,
    partitions: Vec<GroupPartitionJson>,
}

#[derive(Serialize)]
struct MemberJson {
    member_id: String,
    client_id: String,
    assignment: Vec<TopicPartitionJson>,
}

#[derive(Serialize)]
struct TopicPartitionJson {
    topic: String,
    partition: u32,
}

#[derive(Serialize)]
struct GroupPartitionJson {
    topic: String,
    partition: u32,
    /// `null` when the group committed nothing for the partition.
    committed: Option<u64>,
    log_end_offset: u64,
    lag: u64,
}

fn groups_json(shared: &NodeShared) -> String {
    let groups: Vec<GroupJson> = shared
        .metrics
        .group_lags()
        .into_iter()
        .map(|(g, lags)| GroupJson {
            group_id: g.group_id,
            state: g.state,
            generation: g.generation,
            assignor: g.assignor,
            members: g
                .members
                .into_iter()
                .map(|m| MemberJson {
                    member_id: m.member_id,
                    client_id: m.client_id,
                    assignment: m
                        .assignment
                        .into_iter()
                        .map(|(topic, partition)| TopicPartitionJson { topic, partition })
                        .collect(),
                })
                .collect(),
            partitions: lags
                .into_iter()
                .map(|p| GroupPartitionJson {
                    topic: p.topic,
                    partition: p.partition,
                    committed: p.committed,
                    log_end_offset: p.log_end_offset,
                    lag: p.lag,
                })
                .collect(),
        })
        .collect();
    serde_json::to_string_pretty(&serde_json::json!({ "groups": groups })).unwrap_or_else(|_| "{}".into())
}
