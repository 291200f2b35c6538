//! This node's membership: a lease with the node record attached (incarnation = lease
//! id), kept alive every TTL/3. When the lease is lost — etcd answered TTL 0, e.g. after
//! the process was paused (SIGSTOP) longer than the TTL, or no keep-alive got through
//! for a whole TTL — the node registers again under a new lease: a new incarnation, which
//! the controller re-admits only as a learner with an epoch bump.
//!
//! Every lease change is published on a watch channel (`None` while re-registering) so
//! the controller task drops leadership tied to the old lease; the old lease is then
//! revoked (best effort) so its election key does not block the next election.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use etcd_client::{Client, PutOptions};
use tokio::sync::watch;

use super::handle::Shared;
use super::keyspace::keys;
use super::types::NodeRecord;

/// Pause between failed re-registration attempts.
const RETRY_PAUSE: Duration = Duration::from_millis(500);

/// Grants a lease and puts the node record attached to it; the lease id.
pub(super) async fn register_once(
    client: &mut Client,
    prefix: &str,
    record: &NodeRecord,
    ttl_s: i64,
) -> Result<i64, etcd_client::Error> {
    let lease = client.lease_grant(ttl_s, None).await?.id();
    let record = NodeRecord { incarnation: lease, ..record.clone() };
    let value = serde_json::to_vec(&record).unwrap_or_default();
    let put = client.put(keys::node(prefix, record.node_id), value, Some(PutOptions::new().with_lease(lease))).await;
    if let Err(e) = put {
        let _ = client.lease_revoke(lease).await;
        return Err(e);
    }
    Ok(lease)
}

/// The keep-alive / re-registration task.
pub(super) struct Session {
    pub client: Client,
    pub prefix: String,
    pub record: NodeRecord,
    pub ttl_s: i64,
    pub shared: Arc<Shared>,
    pub leases: watch::Sender<Option<i64>>,
}

impl Session {
    pub async fn run(mut self, mut lease: i64) {
        loop {
            self.keep_alive(lease).await;
            tracing::warn!(incarnation = format_args!("{lease:x}"), "lease lost; registering again under a new lease");
            self.leases.send_replace(None);
            let old = lease;
            lease = self.register_again().await;
            // The old lease may still exist (e.g. etcd restarted and restored it): revoke it
            // so what is still attached to it — this node's election key — goes now, not a
            // TTL later (until then no controller could be elected). Its node record is
            // already attached to the new lease. Best effort: it expires anyway.
            let revoke = self.client.lease_revoke(old);
            if let Ok(Ok(_)) = tokio::time::timeout(super::runtime::REQUEST_TIMEOUT, revoke).await {
                tracing::info!(incarnation = format_args!("{old:x}"), "old lease revoked");
            }
            self.shared.incarnation.store(lease, Ordering::Relaxed);
            tracing::info!(node = self.record.node_id, incarnation = format_args!("{lease:x}"), "registered again");
            self.leases.send_replace(Some(lease));
        }
    }

    fn ttl(&self) -> Duration {
        Duration::from_secs(u64::try_from(self.ttl_s).unwrap_or(1))
    }

    /// Returns when the lease is lost.
    async fn keep_alive(&mut self, lease: i64) {
        let period = self.ttl() / 3;
        let mut last_ok = Instant::now();
        while last_ok.elapsed() < self.ttl() {
            let Ok(Ok((mut keeper, mut stream))) =
                tokio::time::timeout(period, self.client.lease_keep_alive(lease)).await
            else {
                tokio::time::sleep(period / 4).await;
                continue;
            };
            loop {
                let beat = async {
                    keeper.keep_alive().await?;
                    stream.message().await
                };
                match tokio::time::timeout(period, beat).await {
                    Ok(Ok(Some(response))) if response.ttl() > 0 => last_ok = Instant::now(),
                    // etcd says the lease is gone (expired or revoked).
                    Ok(Ok(Some(_))) => return,
                    // Broken stream or silence: reopen it while the TTL may still hold.
                    _ => break,
                }
                tokio::time::sleep(period).await;
            }
        }
    }

    async fn register_again(&mut self) -> i64 {
        loop {
            let attempt = register_once(&mut self.client, &self.prefix, &self.record, self.ttl_s);
            match tokio::time::timeout(super::runtime::REQUEST_TIMEOUT, attempt).await {
                Ok(Ok(lease)) => return lease,
                Ok(Err(e)) => tracing::warn!(error = %e, "re-registration failed; retrying"),
                Err(_) => tracing::warn!("re-registration timed out; retrying"),
            }
            tokio::time::sleep(RETRY_PAUSE).await;
        }
    }
}
