//! [`Admin`]: topic management (create, delete, list, describe) through the
//! bootstrap node. It keeps no state of its own beyond the [`Client`]; creating
//! or deleting a topic drops that topic's cached metadata.

use strand_wire::msg::{
    CreateTopicRequest, CreateTopicResponse, DeleteTopicRequest, Request, Response, TopicMetadata, TopicSummary,
};

use crate::client::Client;
use crate::error::{ClientError, Result};

/// Topic administration.
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
}
