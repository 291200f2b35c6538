//! Follows the `{prefix}/` keyspace: watches from the last applied revision + 1, applies
//! each response's events to the [`Keyspace`], publishes the shards' view (only when it
//! changed) and the controller's snapshot. When the watch breaks (stream error or end,
//! cancellation, compaction) it reads the whole keyspace again and re-watches from there,
//! so no change is ever missed for longer than one re-read.

use std::sync::Arc;
use std::time::Duration;

use etcd_client::{Client, EventType, WatchOptions};
use tokio::sync::watch;

use super::handle::Shared;
use super::keyspace::Keyspace;
use super::runtime::{kv_of, read_all};

/// Pause before re-reading after a broken watch.
const REWATCH_PAUSE: Duration = Duration::from_millis(200);

pub(super) async fn run(
    mut client: Client,
    mut keyspace: Keyspace,
    snapshots: watch::Sender<Arc<Keyspace>>,
    shared: Arc<Shared>,
) {
    let prefix = keyspace_prefix(&keyspace);
    loop {
        let error = follow(&mut client, &prefix, &mut keyspace, &snapshots, &shared).await;
        tracing::warn!(error, "etcd watch broke; reading the keyspace again");
        loop {
            tokio::time::sleep(REWATCH_PAUSE).await;
            match tokio::time::timeout(super::runtime::REQUEST_TIMEOUT, read_all(&mut client, &prefix)).await {
                Ok(Ok(fresh)) => {
                    keyspace = fresh;
                    publish(&keyspace, &snapshots, &shared);
                    break;
                }
                Ok(Err(e)) => tracing::warn!(error = %e, "re-reading the keyspace failed; retrying"),
                Err(_) => tracing::warn!("re-reading the keyspace timed out; retrying"),
            }
        }
    }
}

fn keyspace_prefix(keyspace: &Keyspace) -> String {
    keyspace.prefix().to_string()
}

/// Follows one watch stream; returns why it ended.
async fn follow(
    client: &mut Client,
    prefix: &str,
    keyspace: &mut Keyspace,
    snapshots: &watch::Sender<Arc<Keyspace>>,
    shared: &Shared,
) -> String {
    let options = WatchOptions::new().with_prefix().with_start_revision(keyspace.revision + 1);
    let mut stream = match client.watch(format!("{prefix}/"), Some(options)).await {
        Ok(stream) => stream,
        Err(e) => return e.to_string(),
    };
    loop {
        let response = match stream.message().await {
            Ok(Some(response)) => response,
            Ok(None) => return "stream ended".into(),
            Err(e) => return e.to_string(),
        };
        if response.canceled() {
            let reason = response.cancel_reason();
            return format!("watch canceled: {reason} (compact revision {})", response.compact_revision());
        }
        for event in response.events() {
            let Some(kv) = event.kv() else { continue };
            match event.event_type() {
                EventType::Put => keyspace.put(kv_of(kv)),
                EventType::Delete => keyspace.delete(kv.key()),
            }
        }
        if let Some(header) = response.header() {
            keyspace.revision = keyspace.revision.max(header.revision());
        }
        if !response.events().is_empty() {
            publish(keyspace, snapshots, shared);
        }
    }
}

/// Hands the shards a new view if it differs from the last one in more than the revision
/// (in-sync reports are no business of theirs; of the election only who holds it), then the controller
/// its snapshot — in that order, so whoever waits on the snapshot (CreateTopic) then
/// finds the shards' view at least as new.
fn publish(keyspace: &Keyspace, snapshots: &watch::Sender<Arc<Keyspace>>, shared: &Shared) {
    let view = keyspace.view();
    let latest = match shared.latest.lock() {
        Ok(latest) => latest.clone(),
        Err(poisoned) => poisoned.into_inner().clone(),
    };
    let same = latest.nodes == view.nodes
        && latest.topics == view.topics
        && latest.chains == view.chains
        && latest.controller == view.controller
        && latest.security == view.security;
    if !same {
        shared.publish(view);
    }
    snapshots.send_replace(Arc::new(keyspace.clone()));
}
