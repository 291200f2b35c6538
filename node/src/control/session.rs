//! This node's membership: a lease with the node record attached (incarnation = lease
//! id), kept alive every TTL/3. When the lease is lost — etcd answered TTL 0, e.g. after
//! the process was paused (SIGSTOP) longer than the TTL, or no keep-alive got through
//! for a whole TTL — the node registers again under a new lease: a new incarnation, which
//! the controller re-admits only as a learner with an epoch bump.
//!
//! Registration refuses to take over a live record of the same node id from another
//! process: the record is attached to a lease, so while it exists its holder is alive
//! (or died less than a TTL ago). Only a record carrying this data dir's token — the
//! same node restarting before its old lease expired — is replaced; the put is guarded
//! by the record's revision, so two processes racing for one id cannot both win.
//!
//! Every lease change is published on a watch channel (`None` while re-registering) so
//! the controller task drops leadership tied to the old lease; the old lease is then
//! revoked (best effort) so its election key does not block the next election.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use etcd_client::{Client, Compare, CompareOp, PutOptions, Txn, TxnOp};
use tokio::sync::watch;

use super::handle::{ControlError, Shared};
use super::keyspace::keys;
use super::types::NodeRecord;

/// Pause between failed re-registration attempts.
const RETRY_PAUSE: Duration = Duration::from_millis(500);

/// Grants a lease and puts the node record attached to it, unless another process
/// holds this node id (see the module doc); the lease id.
pub(super) async fn register_once(
    client: &mut Client,
    prefix: &str,
    record: &NodeRecord,
    ttl_s: i64,
) -> Result<i64, ControlError> {
    let etcd = |e: etcd_client::Error| ControlError::Etcd(e.to_string());
    let key = keys::node(prefix, record.node_id);
    let current = client.get(key.clone(), None).await.map_err(etcd)?;
    let guard = match current.kvs().first() {
        Some(kv) => {
            check_holder(record, kv.value())?;
            Compare::mod_revision(key.clone(), CompareOp::Equal, kv.mod_revision())
        }
        None => Compare::create_revision(key.clone(), CompareOp::Equal, 0),
    };
    let lease = client.lease_grant(ttl_s, None).await.map_err(etcd)?.id();
    let record = NodeRecord { incarnation: lease, ..record.clone() };
    let value = serde_json::to_vec(&record).unwrap_or_default();
    let txn = Txn::new().when([guard]).and_then([TxnOp::put(key, value, Some(PutOptions::new().with_lease(lease)))]);
    let outcome = match client.txn(txn).await {
        Ok(response) if response.succeeded() => return Ok(lease),
        Ok(_) => ControlError::NodeIdTaken {
            node: record.node_id,
            holder: "another process registering at the same moment".into(),
        },
        Err(e) => etcd(e),
    };
    let _ = client.lease_revoke(lease).await;
    Err(outcome)
}

/// Ok when the live record `value` of our node id may be replaced by `record`: it
/// carries our data dir's token (we are that node, restarted).
fn check_holder(record: &NodeRecord, value: &[u8]) -> Result<(), ControlError> {
    let holder = serde_json::from_slice::<NodeRecord>(value).ok();
    match holder {
        Some(h) if !record.token.is_empty() && h.token == record.token => Ok(()),
        Some(h) => Err(ControlError::NodeIdTaken { node: record.node_id, holder: format!("{}:{}", h.host, h.port) }),
        None => Err(ControlError::NodeIdTaken { node: record.node_id, holder: "an unreadable node record".into() }),
    }
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
                Ok(Err(e @ ControlError::NodeIdTaken { .. })) => {
                    tracing::error!(error = %e, "re-registration refused; this node serves nothing until it gets its id back")
                }
                Ok(Err(e)) => tracing::warn!(error = %e, "re-registration failed; retrying"),
                Err(_) => tracing::warn!("re-registration timed out; retrying"),
            }
            tokio::time::sleep(RETRY_PAUSE).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(token: &str, port: u16) -> NodeRecord {
        NodeRecord {
            node_id: 2,
            host: "127.0.0.1".into(),
            port,
            shard_ports: vec![],
            replication_ports: vec![],
            admin_port: 0,
            kafka_port: 0,
            incarnation: 0,
            token: token.into(),
        }
    }

    #[test]
    fn only_the_same_data_dir_token_replaces_a_live_record() {
        let live = serde_json::to_vec(&record("aaaa", 7020)).unwrap();
        assert_eq!(check_holder(&record("aaaa", 7030), &live), Ok(()));
        let taken = check_holder(&record("bbbb", 7030), &live).unwrap_err();
        assert_eq!(taken, ControlError::NodeIdTaken { node: 2, holder: "127.0.0.1:7020".into() });
        assert!(taken.to_string().starts_with("node id 2 is already registered by 127.0.0.1:7020 (lease live)"));
        // No token never matches (a record from before tokens, or a tokenless caller).
        let old = serde_json::to_vec(&record("", 7020)).unwrap();
        assert!(check_holder(&record("", 7030), &old).is_err());
        assert!(check_holder(&record("aaaa", 7030), b"not json").is_err());
    }
}
