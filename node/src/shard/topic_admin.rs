//! Topic changes after create: AlterTopicConfig (overrides validated like a create,
//! persisted, then applied to the open partitions' roll and retention limits) and
//! CreatePartitions (the topic grows). On a single node the registry holds the
//! definition: caps checked, the new partitions opened on their owners, the count
//! persisted, then published. In cluster mode the definition lives in etcd: the control
//! plane rewrites it, the controller places the new partitions' chains, and every
//! node's reconcile opens its replicas and applies changed configs.

use std::rc::Rc;
use std::time::{Duration, Instant};

use strand_wire::msg::{AlterTopicConfigRequest, CreatePartitionsRequest, CreateTopicResponse, Response};
use strand_wire::ErrorCode;

use super::dispatch::{poisoned, Reply};
use super::forward::ShardCall;
use super::Shard;
use crate::control::TopicChange;
use crate::topic::{TopicConfig, TOPIC_CONFIG_CHANGES_MAX};

/// Longest a change waits for this shard to see it in the cluster view.
const CLUSTER_VISIBLE_WAIT: Duration = Duration::from_secs(5);

impl Shard {
    /// Changes a topic's config overrides and applies them to its open partitions.
    pub(super) async fn alter_topic_config(self: &Rc<Self>, cid: u64, r: AlterTopicConfigRequest) -> Reply {
        let changes = r.set.len() + r.delete.len();
        if changes == 0 || changes > TOPIC_CONFIG_CHANGES_MAX {
            let message =
                format!("a config change sets or deletes 1 to {TOPIC_CONFIG_CHANGES_MAX} keys, not {changes}");
            return Reply::error(cid, ErrorCode::InvalidConfig, message);
        }
        if self.cluster().is_some() {
            let change = TopicChange::Configs { set: r.set, delete: r.delete };
            return match self.cluster_alter_topic(&r.name, change).await {
                Ok(_) => Reply::new(cid, Response::Empty),
                Err((code, message)) => Reply::error(cid, code, message),
            };
        }
        let shared = self.shared.clone();
        let name = r.name.clone();
        let altered = glommio::executor()
            .spawn_blocking(move || {
                let mut reg = shared.registry.lock().map_err(|_| poisoned())?;
                reg.alter_configs(&name, &r.set, &r.delete).map_err(|e| (e.code(), e.to_string()))
            })
            .await;
        let topic = match altered {
            Ok(topic) => topic,
            Err((code, message)) => return Reply::error(cid, code, message),
        };
        if let Err(e) = self.broadcast(|| ShardCall::TopicConfigChanged(topic.clone())).await {
            let message = format!("config of {} stored but not applied everywhere (applies at restart): {e}", r.name);
            return Reply::error(cid, ErrorCode::StorageError, message);
        }
        tracing::info!(topic = %r.name, configs = ?topic.configs, "topic config changed");
        Reply::new(cid, Response::Empty)
    }

    /// Grows a topic to `r.partitions` partitions in total.
    pub(super) async fn create_partitions(self: &Rc<Self>, cid: u64, r: CreatePartitionsRequest) -> Reply {
        if self.cluster().is_some() {
            return match self.cluster_alter_topic(&r.name, TopicChange::Partitions(r.partitions)).await {
                Ok(t) => Reply::new(
                    cid,
                    Response::CreateTopic(CreateTopicResponse { name: r.name, partitions: t.partitions }),
                ),
                Err((code, message)) => Reply::error(cid, code, message),
            };
        }
        let (shared, name, count) = (self.shared.clone(), r.name.clone(), r.partitions);
        let checked = glommio::executor()
            .spawn_blocking(move || {
                let limits = shared.config.admission;
                let fds = super::admission::FdBudget::measure(limits.open_files_reserved);
                let reg = shared.registry.lock().map_err(|_| poisoned())?;
                reg.check_grow(&name, count, &limits, fds).map_err(|e| (e.code(), e.to_string()))
            })
            .await;
        let grown = match checked {
            Ok(topic) => topic,
            Err((code, message)) => return Reply::error(cid, code, message),
        };
        match self.grow_topic(&grown).await {
            Ok(()) => {
                tracing::info!(topic = %r.name, partitions = r.partitions, "topic partitions added");
                Reply::new(cid, Response::CreateTopic(CreateTopicResponse { name: r.name, partitions: r.partitions }))
            }
            Err((code, message)) => Reply::error(cid, code, message),
        }
    }

    /// A topic change through the control plane; returns once this shard serves the new
    /// definition (its reconcile applied it), or after a bounded wait.
    async fn cluster_alter_topic(&self, name: &str, change: TopicChange) -> Result<TopicConfig, (ErrorCode, String)> {
        let Some(cluster) = self.cluster() else { return Err((ErrorCode::Unknown, "not in cluster mode".into())) };
        let new = cluster.control.alter_topic(name, change).await.map_err(|e| (e.code(), e.to_string()))?;
        let deadline = Instant::now() + CLUSTER_VISIBLE_WAIT;
        while cluster.topics().iter().all(|t| t != &new) && Instant::now() < deadline {
            glommio::timer::sleep(Duration::from_millis(10)).await;
        }
        tracing::info!(topic = %name, partitions = new.partitions, configs = ?new.configs, "cluster topic changed");
        Ok(new)
    }

    /// Opens the new partitions on their owners (unpublished), persists the count, then
    /// publishes it. A failure before the persist leaves the topic at its old count (new
    /// partitions opened so far stay open unpublished and are reused by a retry).
    async fn grow_topic(self: &Rc<Self>, grown: &TopicConfig) -> Result<(), (ErrorCode, String)> {
        if let Err(e) = self.broadcast(|| ShardCall::TopicPrepare(grown.clone())).await {
            let message = format!("partitions of {} not added, they could not be opened: {e}", grown.name);
            return Err((ErrorCode::StorageError, message));
        }
        let (shared, name, count) = (self.shared.clone(), grown.name.clone(), grown.partitions);
        let stored = glommio::executor()
            .spawn_blocking(move || {
                let mut reg = shared.registry.lock().map_err(|_| poisoned())?;
                reg.grow(&name, count).map_err(|e| (e.code(), e.to_string()))
            })
            .await?;
        self.broadcast(|| ShardCall::TopicCreated(stored.clone()))
            .await
            .map_err(|e| (ErrorCode::StorageError, e.to_string()))
    }
}
