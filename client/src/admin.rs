//! [`Admin`]: topic management (create, delete, list, describe, config changes, adding
//! partitions) and consumer-group administration (list, describe with lag, offsets
//! commits for an Empty group, delete) through the bootstrap node. It keeps no state
//! of its own beyond the [`Client`]; creating or deleting a topic drops that topic's
//! cached metadata.
//!
//! [`Admin::describe_topic_replicas`] asks every chain member's node directly, because a
//! node reports log end and commit offset of its own replica only; lag of a replica =
//! head's log end − that replica's log end.

use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

pub use strand_wire::msg::TopicConfigValue;
use strand_wire::msg::{
    AclEntry, AlterAclRequest, AlterTopicConfigRequest, AlterUserRequest, CommittedOffset, CreatePartitionsRequest,
    CreateTopicRequest, CreateTopicResponse, DeleteGroupRequest, DeleteTopicRequest, DescribeGroupRequest,
    MetadataRequest, OffsetCommitRequest, OffsetSpec, PartitionMetadata, Request, Response, TopicMetadata,
    TopicSummary, UserInfo,
};
pub use strand_wire::msg::{DescribeGroupResponse, GroupMemberInfo, GroupPartitionLag, GroupSummary};
use strand_wire::ErrorCode;

use crate::client::Client;
use crate::error::{ClientError, Result};

/// `committed` value of a [`GroupPartitionLag`] for a partition with nothing committed.
pub const COMMITTED_NONE: u64 = u64::MAX;

/// Longest a describe waits for one replica's node.
const REPLICA_QUERY_TIMEOUT_MAX: Duration = Duration::from_secs(2);

/// One replica of a partition, as its own node reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplicaState {
    pub node_id: u32,
    /// Chain position: `head`, `middle` or `tail` (a chain of one member is `head`).
    pub role: &'static str,
    /// The node's own log end for this partition (`None`: not reported, see `error`).
    pub log_end_offset: Option<u64>,
    /// The node's own commit offset for this partition.
    pub commit_offset: Option<u64>,
    /// Head's log end − this replica's log end (0 for the head).
    pub lag: Option<u64>,
    /// Why the node's values are missing (unreachable, error code).
    pub error: Option<String>,
}

/// A partition's chain with each member's progress.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionDescription {
    pub partition: u32,
    pub leader_node: u32,
    pub leader_shard: u16,
    /// Members, head first.
    pub chain: Vec<u32>,
    pub epoch: u64,
    /// The head's commit offset (what consumers can read), if the head answered.
    pub commit_offset: Option<u64>,
    pub log_start_offset: Option<u64>,
    /// The head's log end, if the head answered.
    pub log_end_offset: Option<u64>,
    /// One entry per chain member, in chain order.
    pub replicas: Vec<ReplicaState>,
    /// The node the controller moves the head back to once it is a healthy member
    /// (preferred-head rebalancing); `None` when the cluster names none.
    pub preferred_leader: Option<u32>,
}

/// Result of [`Admin::describe_topic_replicas`], partitions sorted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicDescription {
    pub name: String,
    pub partitions: Vec<PartitionDescription>,
}

/// What one node answered about a topic: its metadata, or why it could not be asked.
pub type NodeReport = std::result::Result<TopicMetadata, String>;

/// Combines the cluster's view of `topic` (chains, epochs) with each member node's own
/// report (`reports[node_id]`) into per-replica progress. IO-free.
pub fn describe_partitions(topic: &TopicMetadata, reports: &HashMap<u32, NodeReport>) -> Vec<PartitionDescription> {
    let mut out: Vec<PartitionDescription> =
        topic.partitions.iter().map(|p| describe_one(&topic.name, p, reports)).collect();
    out.sort_by_key(|p| p.partition);
    out
}

fn describe_one(name: &str, p: &PartitionMetadata, reports: &HashMap<u32, NodeReport>) -> PartitionDescription {
    let local = |node: u32| -> std::result::Result<&PartitionMetadata, String> {
        let topic = reports.get(&node).ok_or_else(|| "not asked".to_string())?.as_ref().map_err(Clone::clone)?;
        if topic.error != ErrorCode::None {
            return Err(topic.error.name().to_string());
        }
        let part = topic.partitions.iter().find(|q| q.partition == p.partition);
        let part = part.ok_or_else(|| format!("{name}/{} not reported", p.partition))?;
        match part.error {
            ErrorCode::None => Ok(part),
            code => Err(code.name().to_string()),
        }
    };
    let head = p.replicas.first().copied().unwrap_or(p.leader_node);
    let head_local = local(head).ok();
    let head_end = head_local.map(|h| h.log_end_offset);
    let last = p.replicas.len().saturating_sub(1);
    let replicas = p
        .replicas
        .iter()
        .enumerate()
        .map(|(i, &node_id)| {
            let role = match i {
                0 => "head",
                i if i == last => "tail",
                _ => "middle",
            };
            match local(node_id) {
                Ok(r) => ReplicaState {
                    node_id,
                    role,
                    log_end_offset: Some(r.log_end_offset),
                    commit_offset: Some(r.commit_offset),
                    lag: head_end.map(|h| h.saturating_sub(r.log_end_offset)),
                    error: None,
                },
                Err(e) => {
                    ReplicaState { node_id, role, log_end_offset: None, commit_offset: None, lag: None, error: Some(e) }
                }
            }
        })
        .collect();
    PartitionDescription {
        partition: p.partition,
        leader_node: p.leader_node,
        leader_shard: p.leader_shard,
        chain: p.replicas.clone(),
        epoch: p.epoch,
        commit_offset: head_local.map(|h| h.commit_offset),
        log_start_offset: head_local.map(|h| h.log_start_offset),
        log_end_offset: head_end,
        replicas,
        preferred_leader: (p.preferred_leader != 0).then_some(p.preferred_leader),
    }
}

/// Topic administration and group inspection.
#[derive(Debug, Clone)]
pub struct Admin {
    client: Client,
}

impl Admin {
    /// An admin handle on `client`.
    pub fn new(client: Client) -> Self {
        Admin { client }
    }

    /// Creates `name` with `partitions` partitions and `replication_factor` replicas each.
    pub async fn create_topic(
        &self,
        name: &str,
        partitions: u32,
        replication_factor: u16,
    ) -> Result<CreateTopicResponse> {
        self.create_topic_with_configs(name, partitions, replication_factor, Vec::new()).await
    }

    /// Like [`Admin::create_topic`] with per-topic config overrides (e.g. `retention_ms`).
    pub async fn create_topic_with_configs(
        &self,
        name: &str,
        partitions: u32,
        replication_factor: u16,
        configs: Vec<(String, String)>,
    ) -> Result<CreateTopicResponse> {
        let request = Request::CreateTopic(CreateTopicRequest {
            name: name.to_string(),
            partitions,
            replication_factor,
            configs,
        });
        let (header, _) = self.client.call_bootstrap(request, &[]).await?;
        self.client.forget_topic(name);
        match header.response {
            Response::CreateTopic(r) => Ok(r),
            // A node may answer plain success with no body.
            Response::Empty => Ok(CreateTopicResponse { name: name.to_string(), partitions }),
            _ => Err(ClientError::UnexpectedResponse("create topic")),
        }
    }

    /// Deletes `name` and its data.
    pub async fn delete_topic(&self, name: &str) -> Result<()> {
        let request = Request::DeleteTopic(DeleteTopicRequest { name: name.to_string() });
        self.client.call_bootstrap(request, &[]).await?;
        self.client.forget_topic(name);
        Ok(())
    }

    /// Changes `name`'s config overrides: `set` added or replaced, `delete` back to the
    /// node default. The node validates them like a create and applies them to the open
    /// partitions (single node; a cluster refuses for now).
    pub async fn alter_topic_config(&self, name: &str, set: Vec<(String, String)>, delete: Vec<String>) -> Result<()> {
        let request = Request::AlterTopicConfig(AlterTopicConfigRequest { name: name.to_string(), set, delete });
        self.client.call_bootstrap(request, &[]).await?;
        Ok(())
    }

    /// Grows `name` to `partitions` partitions in total (Kafka's `--partitions`); the count
    /// only grows. Drops the topic's cached metadata so this client sees them at once
    /// (others within `metadata_max_age`).
    pub async fn create_partitions(&self, name: &str, partitions: u32) -> Result<u32> {
        let request = Request::CreatePartitions(CreatePartitionsRequest { name: name.to_string(), partitions });
        let (header, _) = self.client.call_bootstrap(request, &[]).await?;
        self.client.invalidate_topic(name);
        match header.response {
            Response::CreateTopic(r) => Ok(r.partitions),
            _ => Err(ClientError::UnexpectedResponse("create partitions")),
        }
    }

    /// The offset of `topic`/`partition` matching `spec` (earliest, latest, timestamp).
    pub async fn list_offset(&self, topic: &str, partition: u32, spec: OffsetSpec) -> Result<u64> {
        self.client.list_offset(topic, partition, spec).await
    }

    /// Commits `offsets` for `group_id` as no member (a standalone commit: empty member id,
    /// generation 0). The coordinator accepts it only while the group has no members
    /// (`UNKNOWN_MEMBER` otherwise), like Kafka's admin offset reset.
    pub async fn commit_group_offsets(&self, group_id: &str, offsets: Vec<CommittedOffset>) -> Result<()> {
        let request = Request::OffsetCommit(OffsetCommitRequest {
            group_id: group_id.to_string(),
            generation: 0,
            member_id: String::new(),
            offsets,
        });
        let coordinator = crate::group::Coordinator::new(group_id);
        coordinator.call(&self.client, request, self.client.config().request_timeout).await?;
        Ok(())
    }

    /// Deletes an Empty group's committed offsets (the group is then gone, and a new member
    /// starts from its `auto.offset.reset`). Refused with `NON_EMPTY_GROUP` while it has
    /// members, `GROUP_ID_NOT_FOUND` if it does not exist.
    pub async fn delete_group(&self, group_id: &str) -> Result<()> {
        let request = Request::DeleteGroup(DeleteGroupRequest { group_id: group_id.to_string() });
        let coordinator = crate::group::Coordinator::new(group_id);
        coordinator.call(&self.client, request, self.client.config().request_timeout).await?;
        Ok(())
    }

    /// Creates `name` (or replaces its password): the verifiers are derived here, so the
    /// password never leaves this process. Needs cluster admin on a node with auth on.
    pub async fn create_user(&self, name: &str, password: &str) -> Result<()> {
        let credentials = crate::auth::derive_credentials(password)?;
        let request = Request::AlterUser(AlterUserRequest::Upsert { name: name.to_string(), credentials });
        self.client.call_bootstrap(request, &[]).await?;
        Ok(())
    }

    /// Deletes `name` and its ACL entries.
    pub async fn delete_user(&self, name: &str) -> Result<()> {
        let request = Request::AlterUser(AlterUserRequest::Delete { name: name.to_string() });
        self.client.call_bootstrap(request, &[]).await?;
        Ok(())
    }

    /// Every user, with its SCRAM mechanisms (never a secret), sorted by name.
    pub async fn list_users(&self) -> Result<Vec<UserInfo>> {
        let (header, _) = self.client.call_bootstrap(Request::ListUsers, &[]).await?;
        let Response::ListUsers(list) = header.response else {
            return Err(ClientError::UnexpectedResponse("list users"));
        };
        Ok(list.users)
    }

    /// Adds (`add`) or removes one ACL entry.
    pub async fn alter_acl(&self, add: bool, entry: AclEntry) -> Result<()> {
        self.client.call_bootstrap(Request::AlterAcl(AlterAclRequest { add, entry }), &[]).await?;
        Ok(())
    }

    /// Every ACL entry.
    pub async fn list_acls(&self) -> Result<Vec<AclEntry>> {
        let (header, _) = self.client.call_bootstrap(Request::ListAcls, &[]).await?;
        let Response::ListAcls(list) = header.response else {
            return Err(ClientError::UnexpectedResponse("list ACLs"));
        };
        Ok(list.entries)
    }

    /// Every topic with its partition count and replication factor, sorted by name.
    pub async fn list_topics(&self) -> Result<Vec<TopicSummary>> {
        let (header, _) = self.client.call_bootstrap(Request::ListTopics, &[]).await?;
        let Response::ListTopics(mut list) = header.response else {
            return Err(ClientError::UnexpectedResponse("list topics"));
        };
        list.topics.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(list.topics)
    }

    /// Fresh metadata of `name`: partitions with owner, chain, offsets.
    pub async fn describe_topic(&self, name: &str) -> Result<TopicMetadata> {
        self.client.invalidate_topic(name);
        let mut topic = self.client.topic_metadata(name).await?;
        topic.partitions.sort_by_key(|p| p.partition);
        Ok(topic)
    }

    /// Fresh chains of `name` plus each member's own log end, commit offset and lag,
    /// asked of every member node directly (concurrently, at most 2 s each). A member
    /// that cannot be asked is reported with `error` set, not as a failure.
    pub async fn describe_topic_replicas(&self, name: &str) -> Result<TopicDescription> {
        let topic = self.describe_topic(name).await?;
        let nodes: BTreeSet<u32> = topic.partitions.iter().flat_map(|p| p.replicas.iter().copied()).collect();
        let timeout = self.client.config().metadata_timeout.min(REPLICA_QUERY_TIMEOUT_MAX);
        let tasks: Vec<_> = nodes
            .into_iter()
            .map(|node| {
                let client = self.client.clone();
                let request = Request::Metadata(MetadataRequest { topics: vec![name.to_string()] });
                let name = name.to_string();
                tokio::spawn(async move {
                    let report = match client.call_node_timeout(node, request, timeout).await {
                        Ok((header, _)) => match header.response {
                            Response::Metadata(m) => {
                                m.topics.into_iter().find(|t| t.name == name).ok_or_else(|| "topic not reported".into())
                            }
                            _ => Err("unexpected response".to_string()),
                        },
                        Err(e) => Err(e.to_string()),
                    };
                    (node, report)
                })
            })
            .collect();
        let mut reports = HashMap::new();
        for task in tasks {
            if let Ok((node, report)) = task.await {
                reports.insert(node, report);
            }
        }
        Ok(TopicDescription { name: topic.name.clone(), partitions: describe_partitions(&topic, &reports) })
    }

    /// Every consumer group the node knows (from all its coordinator shards), sorted by id.
    /// In a cluster (metadata names more than one node) every node is asked — each lists
    /// the groups it coordinates — and the answers are merged; unreachable nodes are
    /// skipped (their groups move to the new heads), all unreachable is an error.
    pub async fn list_groups(&self) -> Result<Vec<GroupSummary>> {
        let nodes = self.client.fetch_metadata(&[]).await?.nodes;
        if nodes.len() > 1 {
            return self.list_groups_of(nodes.iter().map(|n| n.node_id)).await;
        }
        let call = || self.client.call_bootstrap(Request::ListGroups, &[]);
        let (header, _) = self.client.retry_idempotent(call).await?;
        let Response::ListGroups(mut list) = header.response else {
            return Err(ClientError::UnexpectedResponse("list groups"));
        };
        list.groups.sort_by(|a, b| a.group_id.cmp(&b.group_id));
        Ok(list.groups)
    }

    async fn list_groups_of(&self, nodes: impl Iterator<Item = u32>) -> Result<Vec<GroupSummary>> {
        let timeout = self.client.config().request_timeout;
        let mut merged: std::collections::BTreeMap<String, GroupSummary> = Default::default();
        let (mut answered, mut last_error) = (false, None);
        for node in nodes {
            match self.client.call_node_timeout(node, Request::ListGroups, timeout).await {
                Ok((header, _)) => {
                    let Response::ListGroups(list) = header.response else {
                        return Err(ClientError::UnexpectedResponse("list groups"));
                    };
                    answered = true;
                    for group in list.groups {
                        // A group seen twice (mid-move): keep the view with more members.
                        let keep = merged.get(&group.group_id).is_none_or(|g| g.member_count < group.member_count);
                        if keep {
                            merged.insert(group.group_id.clone(), group);
                        }
                    }
                }
                Err(e) => last_error = Some(e),
            }
        }
        match (answered, last_error) {
            (false, Some(e)) => Err(e),
            _ => Ok(merged.into_values().collect()),
        }
    }

    /// State, generation, members with their assignments, and per partition the
    /// committed offset ([`COMMITTED_NONE`] if none), log end and lag. An unknown group
    /// is answered with state `Dead` and no members. Members and partitions are sorted.
    pub async fn describe_group(&self, group_id: &str) -> Result<DescribeGroupResponse> {
        let request = Request::DescribeGroup(DescribeGroupRequest { group_id: group_id.to_string() });
        let coordinator = crate::group::Coordinator::new(group_id);
        let timeout = self.client.config().request_timeout;
        let call = || coordinator.call(&self.client, request.clone(), timeout);
        let (header, _) = self.client.retry_idempotent(call).await?;
        let Response::DescribeGroup(mut group) = header.response else {
            return Err(ClientError::UnexpectedResponse("describe group"));
        };
        group.members.sort_by(|a, b| a.member_id.cmp(&b.member_id));
        for member in &mut group.members {
            member.assignment.sort();
        }
        group.partitions.sort_by(|a, b| (&a.topic, a.partition).cmp(&(&b.topic, b.partition)));
        Ok(group)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn part(partition: u32, replicas: &[u32], log_end: u64, commit: u64) -> PartitionMetadata {
        PartitionMetadata {
            partition,
            error: ErrorCode::None,
            leader_node: replicas.first().copied().unwrap_or(0),
            leader_shard: 1,
            replicas: replicas.to_vec(),
            epoch: 5,
            log_start_offset: 0,
            log_end_offset: log_end,
            commit_offset: commit,
            preferred_leader: 0,
        }
    }

    fn topic(partitions: Vec<PartitionMetadata>) -> TopicMetadata {
        TopicMetadata { name: "t".to_string(), error: ErrorCode::None, partitions }
    }

    #[test]
    fn lag_is_head_log_end_minus_each_replicas_own_log_end() {
        // The cluster view (from the bootstrap, here node 3: its local offsets).
        let cluster = topic(vec![part(1, &[2, 1], 0, 0), part(0, &[1, 2, 3], 90, 90)]);
        let mut reports: HashMap<u32, NodeReport> = HashMap::new();
        reports.insert(1, Ok(topic(vec![part(0, &[1, 2, 3], 120, 100), part(1, &[2, 1], 40, 40)])));
        reports.insert(2, Ok(topic(vec![part(0, &[1, 2, 3], 110, 100), part(1, &[2, 1], 50, 40)])));
        reports.insert(3, Ok(topic(vec![part(0, &[1, 2, 3], 90, 90)])));
        let d = describe_partitions(&cluster, &reports);
        assert_eq!(d.iter().map(|p| p.partition).collect::<Vec<_>>(), vec![0, 1], "sorted");
        let p0 = &d[0];
        assert_eq!(
            (p0.chain.clone(), p0.epoch, p0.commit_offset, p0.log_end_offset),
            (vec![1, 2, 3], 5, Some(100), Some(120))
        );
        let rows: Vec<(u32, &str, Option<u64>, Option<u64>)> =
            p0.replicas.iter().map(|r| (r.node_id, r.role, r.log_end_offset, r.lag)).collect();
        assert_eq!(
            rows,
            vec![(1, "head", Some(120), Some(0)), (2, "middle", Some(110), Some(10)), (3, "tail", Some(90), Some(30))]
        );
        let p1 = &d[1];
        assert_eq!(p1.log_end_offset, Some(50), "head of partition 1 is node 2");
        assert_eq!(
            p1.replicas.iter().map(|r| (r.role, r.lag)).collect::<Vec<_>>(),
            vec![("head", Some(0)), ("tail", Some(10))]
        );
    }

    #[test]
    fn unreachable_or_silent_members_are_reported_not_fatal() {
        let cluster = topic(vec![part(0, &[1, 2, 3], 0, 0), part(1, &[4], 0, 0)]);
        let mut reports: HashMap<u32, NodeReport> = HashMap::new();
        reports.insert(1, Err("cannot connect".to_string()));
        reports.insert(2, Ok(topic(vec![part(0, &[1, 2, 3], 7, 7)])));
        reports.insert(3, Ok(TopicMetadata { name: "t".into(), error: ErrorCode::UnknownTopic, partitions: vec![] }));
        let d = describe_partitions(&cluster, &reports);
        let p0 = &d[0];
        assert_eq!((p0.commit_offset, p0.log_end_offset), (None, None), "head unreachable");
        assert_eq!(p0.replicas[0].error.as_deref(), Some("cannot connect"));
        assert_eq!((p0.replicas[1].log_end_offset, p0.replicas[1].lag), (Some(7), None), "no head, no lag");
        assert_eq!(p0.replicas[2].error.as_deref(), Some("UNKNOWN_TOPIC"));
        assert_eq!(d[1].replicas[0].role, "head", "a chain of one is its head");
        assert_eq!(d[1].replicas[0].error.as_deref(), Some("not asked"));
    }
}
