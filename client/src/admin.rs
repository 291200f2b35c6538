//! [`Admin`]: topic management (create, delete, list, describe) and consumer-group
//! inspection (list, describe with lag) through the bootstrap node. It keeps no state
//! of its own beyond the [`Client`]; creating or deleting a topic drops that topic's
//! cached metadata.

use strand_wire::msg::{
    CreateTopicRequest, CreateTopicResponse, DeleteTopicRequest, DescribeGroupRequest, Request, Response,
    TopicMetadata, TopicSummary,
};
pub use strand_wire::msg::{DescribeGroupResponse, GroupMemberInfo, GroupPartitionLag, GroupSummary};

use crate::client::Client;
use crate::error::{ClientError, Result};

/// `committed` value of a [`GroupPartitionLag`] for a partition with nothing committed.
pub const COMMITTED_NONE: u64 = u64::MAX;

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
        self.client.invalidate_topic(name);
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
        self.client.invalidate_topic(name);
        Ok(())
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

    /// Every consumer group the node knows (from all its coordinator shards), sorted by id.
    pub async fn list_groups(&self) -> Result<Vec<GroupSummary>> {
        let call = || self.client.call_bootstrap(Request::ListGroups, &[]);
        let (header, _) = self.client.retry_idempotent(call).await?;
        let Response::ListGroups(mut list) = header.response else {
            return Err(ClientError::UnexpectedResponse("list groups"));
        };
        list.groups.sort_by(|a, b| a.group_id.cmp(&b.group_id));
        Ok(list.groups)
    }

    /// State, generation, members with their assignments, and per partition the
    /// committed offset ([`COMMITTED_NONE`] if none), log end and lag. An unknown group
    /// is answered with state `Dead` and no members. Members and partitions are sorted.
    pub async fn describe_group(&self, group_id: &str) -> Result<DescribeGroupResponse> {
        let request = Request::DescribeGroup(DescribeGroupRequest { group_id: group_id.to_string() });
        let (header, _) = self.client.retry_idempotent(|| self.client.call_bootstrap(request.clone(), &[])).await?;
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
