//! Fast failure detection, the shell: a shard reports a peer whose replication
//! connection was reset or closed ([`super::ControlHandle::report_suspect`]); this node's
//! control thread probes the peer's advertised ports and, when a port refuses the
//! connection (the process is gone), revokes the peer's lease in etcd. Its node record
//! and election key vanish at once, the watch shows the node gone and the controller
//! reconfigures its chains — without waiting a lease TTL. The decision rules (when to
//! probe, what convicts) are IO-free in `strand_core::suspicion`.
//!
//! Any node confirms, not only the controller: when the dead node *was* the controller,
//! nobody else would act until its election key expired with its lease. Revoking a lease
//! is idempotent, so several reporters of one death are harmless. A hung node (SIGSTOP)
//! or one behind a network partition still accepts or does not answer, so it is left to
//! its lease, and epoch fencing keeps holding for it.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use etcd_client::Client;
use strand_core::control::Incarnation;
use strand_core::suspicion::{Probe, Suspicions, Verdict, PROBE_GAP_MS_DEFAULT};
use tokio::sync::watch;

use super::keyspace::Keyspace;
use super::types::NodeRecord;

/// Longest one connection attempt of a probe may take; silence proves nothing.
const PROBE_TIMEOUT: Duration = Duration::from_millis(300);

/// This node's detector (cheap to clone: one per control thread).
#[derive(Clone)]
pub(super) struct Detector {
    client: Client,
    node_id: u32,
    snapshots: watch::Receiver<Arc<Keyspace>>,
    suspicions: Arc<Mutex<Suspicions>>,
    started: Instant,
}

impl Detector {
    pub fn new(client: Client, node_id: u32, snapshots: watch::Receiver<Arc<Keyspace>>) -> Detector {
        Detector {
            client,
            node_id,
            snapshots,
            suspicions: Arc::new(Mutex::new(Suspicions::new(PROBE_GAP_MS_DEFAULT))),
            started: Instant::now(),
        }
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    fn suspicions(&self) -> std::sync::MutexGuard<'_, Suspicions> {
        self.suspicions.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn record(&self, node: u32) -> Option<NodeRecord> {
        self.snapshots.borrow().nodes.get(&node).cloned()
    }

    /// `node` was reported by a shard of this node (`reason` for the log). Starts a probe
    /// unless one is running or ran just now; returns at once.
    pub fn report(&self, node: u32, reason: &'static str) {
        if node == self.node_id {
            return;
        }
        let Some(record) = self.record(node) else { return };
        let incarnation = Incarnation(record.incarnation);
        let now = self.now_ms();
        let start = {
            let mut suspicions = self.suspicions();
            suspicions.expire(now);
            suspicions.report(now, node, incarnation)
        };
        if !start {
            return;
        }
        tracing::info!(node, reason, "peer suspected; probing its ports");
        let detector = self.clone();
        tokio::spawn(async move { detector.confirm(record).await });
    }

    /// Probes until the core convicts or clears the suspect (rechecks included).
    async fn confirm(mut self, record: NodeRecord) {
        let node = record.node_id;
        let (verdict, results) = loop {
            let results = probe(&record).await;
            let current = self.record(node).map(|r| Incarnation(r.incarnation));
            let now = self.now_ms();
            let verdict = self.suspicions().probed(now, node, &results, current);
            match verdict {
                Verdict::Recheck(after_ms) => tokio::time::sleep(Duration::from_millis(after_ms)).await,
                done => break (done, results),
            }
        };
        match verdict {
            Verdict::Down(incarnation) => {
                let revoke = self.client.lease_revoke(incarnation.0);
                match tokio::time::timeout(super::runtime::REQUEST_TIMEOUT, revoke).await {
                    Ok(Ok(_)) => tracing::warn!(
                        node,
                        incarnation = format_args!("{:x}", incarnation.0),
                        "peer confirmed down (its port refused a connection); its lease is revoked"
                    ),
                    // Already revoked by another reporter, or expired: same outcome.
                    Ok(Err(e)) => tracing::info!(node, error = %e, "revoking a dead peer's lease failed"),
                    Err(_) => tracing::warn!(node, "revoking a dead peer's lease timed out (it expires by itself)"),
                }
            }
            Verdict::Alive => tracing::info!(node, "suspected peer answers on every port; left alone"),
            Verdict::Unknown | Verdict::Recheck(_) => {
                tracing::info!(node, ?results, "probes of a suspected peer proved nothing; its lease decides")
            }
        }
    }
}

/// One connection attempt per advertised port (public and replication), in parallel.
async fn probe(record: &NodeRecord) -> Vec<Probe> {
    let mut ports = vec![record.port];
    ports.extend(record.replication_ports.iter().copied());
    let mut attempts = tokio::task::JoinSet::new();
    for port in ports {
        let host = record.host.clone();
        attempts.spawn(async move { probe_port(&host, port).await });
    }
    let mut results = Vec::new();
    while let Some(done) = attempts.join_next().await {
        results.push(done.unwrap_or(Probe::NoAnswer));
    }
    results
}

async fn probe_port(host: &str, port: u16) -> Probe {
    match tokio::time::timeout(PROBE_TIMEOUT, tokio::net::TcpStream::connect((host, port))).await {
        Ok(Ok(_)) => Probe::Accepted,
        Ok(Err(e)) if e.kind() == std::io::ErrorKind::ConnectionRefused => Probe::Refused,
        Ok(Err(_)) | Err(_) => Probe::NoAnswer,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(port: u16, replication: Vec<u16>) -> NodeRecord {
        NodeRecord {
            node_id: 2,
            host: "127.0.0.1".into(),
            port,
            shard_ports: vec![],
            replication_ports: replication,
            admin_port: 0,
            kafka_port: 0,
            incarnation: 1,
            token: String::new(),
        }
    }

    #[tokio::test]
    async fn a_closed_port_is_refused_and_a_listening_one_accepted() {
        let listening = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let open = listening.local_addr().expect("addr").port();
        let closed = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
            l.local_addr().expect("addr").port()
        };
        assert_eq!(probe(&record(open, vec![open])).await, vec![Probe::Accepted, Probe::Accepted]);
        let mixed = probe(&record(open, vec![closed])).await;
        assert!(mixed.contains(&Probe::Refused) && mixed.contains(&Probe::Accepted), "{mixed:?}");
    }
}
