//! Cluster mode's admin answers on a shard: topic create/delete through the control plane,
//! topic listing and metadata from the cluster view, and where a refused produce should go.
//! (Produce, fetch and list-offsets take the one data path of `crate::partition` in both
//! modes.)
//!
//! Every function here is reached only when `Shard::cluster` is `Some`.

use std::rc::Rc;
use std::time::{Duration, Instant};

use strand_wire::msg::*;
use strand_wire::ErrorCode;

use super::dispatch::Reply;
use super::forward::{ShardAnswer, ShardCall};
use super::Shard;
use crate::control::ClusterView;
use crate::partition::PartitionOffsets;
use crate::topic::{is_internal_topic, TopicConfig};

/// Longest a CreateTopic waits for this shard to learn the new topic from the view.
const CREATE_VISIBLE_WAIT: Duration = Duration::from_secs(5);

impl Shard {
    /// A `NotOwner` produce answer's message: where each refused partition's head is.
    pub(crate) fn not_owner_note(&self, partitions: &[ProducePartitionResponse]) -> Option<String> {
        let cluster = self.cluster()?;
        let notes: Vec<String> = partitions
            .iter()
            .filter(|p| p.error == ErrorCode::NotOwner)
            .map(|p| cluster.head_note(&p.topic, p.partition))
            .collect();
        (!notes.is_empty()).then(|| notes.join("; "))
    }

    /// CreateTopic through the control plane; answered once this shard serves the topic.
    pub(crate) async fn cluster_create_topic(&self, cid: u64, topic: TopicConfig) -> Reply {
        let Some(cluster) = self.cluster() else { return Reply::error(cid, ErrorCode::Unknown, "not in cluster mode") };
        let (name, partitions) = (topic.name.clone(), topic.partitions);
        if let Err(e) = cluster.control.create_topic(topic).await {
            return Reply::error(cid, e.code(), e.to_string());
        }
        let deadline = Instant::now() + CREATE_VISIBLE_WAIT;
        while self.topic_partitions(&name).is_none() && Instant::now() < deadline {
            glommio::timer::sleep(Duration::from_millis(10)).await;
        }
        tracing::info!(topic = %name, partitions, "cluster topic created");
        Reply::new(cid, Response::CreateTopic(CreateTopicResponse { name, partitions }))
    }

    /// DeleteTopic through the control plane (every node's reconcile deletes its replicas).
    pub(crate) async fn cluster_delete_topic(&self, cid: u64, name: &str) -> Reply {
        let Some(cluster) = self.cluster() else { return Reply::error(cid, ErrorCode::Unknown, "not in cluster mode") };
        match cluster.control.delete_topic(name).await {
            Ok(()) => Reply::new(cid, Response::Empty),
            Err(e) => Reply::error(cid, e.code(), e.to_string()),
        }
    }

    /// ListTopics from the cluster view.
    pub(crate) fn cluster_list_topics(&self, cid: u64) -> Reply {
        let Some(cluster) = self.cluster() else { return Reply::error(cid, ErrorCode::Unknown, "not in cluster mode") };
        let view = cluster.control.latest();
        let topics = view
            .topics
            .values()
            .filter(|t| !is_internal_topic(&t.name))
            .map(|t| TopicSummary {
                name: t.name.clone(),
                partitions: t.partitions,
                replication_factor: t.replication_factor,
                configs: crate::topic::effective_configs(&self.shared.config.log, &t.name, &t.configs),
            })
            .collect();
        Reply::new(cid, Response::ListTopics(ListTopicsResponse { topics }))
    }

    /// Metadata from the cluster view: every registered node, each partition's chain
    /// (head = leader), this node's local replica offsets.
    pub(crate) async fn cluster_metadata(self: &Rc<Self>, cid: u64, r: MetadataRequest) -> Reply {
        let Some(cluster) = self.cluster() else { return Reply::error(cid, ErrorCode::Unknown, "not in cluster mode") };
        let view = cluster.control.latest();
        let nodes = view
            .nodes
            .values()
            .map(|n| NodeInfo {
                node_id: n.node_id,
                host: n.host.clone(),
                port: n.port,
                shard_ports: n.shard_ports.clone(),
            })
            .collect();
        let names: Vec<String> = if r.topics.is_empty() {
            view.topics.keys().filter(|n| !is_internal_topic(n)).cloned().collect()
        } else {
            r.topics
        };
        let mut topics = Vec::with_capacity(names.len());
        for name in names {
            // Internal topics only by name; the offsets topic's heads are the group coordinators.
            let visible = !is_internal_topic(&name) || name == crate::groups::OFFSETS_TOPIC;
            let Some(config) = view.topics.get(&name).filter(|_| visible) else {
                topics.push(TopicMetadata { name, error: ErrorCode::UnknownTopic, partitions: Vec::new() });
                continue;
            };
            let mut partitions = Vec::with_capacity(config.partitions as usize);
            for p in 0..config.partitions {
                partitions.push(self.chain_metadata(&view, &name, p).await);
            }
            topics.push(TopicMetadata { name, error: ErrorCode::None, partitions });
        }
        Reply::new(cid, Response::Metadata(MetadataResponse { nodes, topics }))
    }

    async fn chain_metadata(self: &Rc<Self>, view: &ClusterView, topic: &str, partition: u32) -> PartitionMetadata {
        let mut m = PartitionMetadata {
            partition,
            error: ErrorCode::None,
            leader_node: 0,
            leader_shard: 0,
            replicas: Vec::new(),
            epoch: 0,
            log_start_offset: 0,
            log_end_offset: 0,
            commit_offset: 0,
            preferred_leader: 0,
        };
        let Some(chain) = view.chain(topic, partition) else {
            m.error = ErrorCode::NotEnoughReplicas;
            return m;
        };
        let head = chain.head().unwrap_or(0);
        m.leader_node = head;
        m.leader_shard = view.nodes.get(&head).map_or(0, |n| n.owner_shard(topic, partition).0);
        m.replicas.clone_from(&chain.members);
        m.epoch = chain.epoch;
        m.preferred_leader = chain.preferred.unwrap_or(0);
        if !view.nodes.contains_key(&head) {
            m.error = ErrorCode::NotEnoughReplicas;
        }
        let owner = self.owner(topic, partition).0;
        let key = vec![(topic.to_string(), partition)];
        let local = if owner == self.id.0 {
            self.partition(topic, partition).map(|part| part.offsets())
        } else {
            match self.forward(owner, ShardCall::Offsets(key)).await {
                Ok(ShardAnswer::Offsets(mut o)) if o.len() == 1 => o.remove(0),
                _ => Err(ErrorCode::ShuttingDown),
            }
        };
        if let Ok(PartitionOffsets { log_start, log_end, commit, .. }) = local {
            (m.log_start_offset, m.log_end_offset, m.commit_offset) = (log_start.0, log_end.0, commit.0);
        }
        m
    }
}
