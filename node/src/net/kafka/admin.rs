//! Kafka's admin APIs beyond topic create/delete: CreatePartitions, DescribeConfigs,
//! AlterConfigs, IncrementalAlterConfigs and DescribeCluster, answered from the node's own
//! topic admin (the same calls `strand topic` makes).
//!
//! Topic configs travel under Kafka's names (`retention.ms`, `retention.bytes`,
//! `segment.bytes`, `segment.ms`); the node's own names (`retention_ms`, ...) are accepted
//! too. Any other key is refused by the node with `INVALID_CONFIG`, naming the known ones —
//! so, for example, `cleanup.policy=compact` is refused rather than silently ignored.

use bytes::Bytes;
use kafka_protocol::messages::create_partitions_response::CreatePartitionsTopicResult;
use kafka_protocol::messages::describe_cluster_response::DescribeClusterBroker;
use kafka_protocol::messages::describe_configs_response::{DescribeConfigsResourceResult, DescribeConfigsResult};
use kafka_protocol::messages::{
    alter_configs_response, incremental_alter_configs_response, AlterConfigsRequest, AlterConfigsResponse,
    CreatePartitionsRequest, CreatePartitionsResponse, DescribeClusterRequest, DescribeClusterResponse,
    DescribeConfigsRequest, DescribeConfigsResponse, IncrementalAlterConfigsRequest, IncrementalAlterConfigsResponse,
};
use kafka_protocol::protocol::StrBytes;
use strand_wire::msg::{self as native, Request, Response, TopicSummary};
use strand_wire::ErrorCode;

use super::apis::{ask, encoded, message, Answer, Ctx};
use super::codes::{kafka as code, to_kafka};
use crate::shard::dispatch::Reply;
use crate::shard::Shard;

/// Kafka's `ConfigResource.Type` of a topic and of a broker.
const RESOURCE_TOPIC: i8 = 2;
const RESOURCE_BROKER: i8 = 4;
/// Kafka's `ConfigSource`: a per-topic override, and a default.
const SOURCE_TOPIC_CONFIG: i8 = 1;
const SOURCE_DEFAULT: i8 = 5;
/// IncrementalAlterConfigs operations.
const OP_SET: i8 = 0;
const OP_DELETE: i8 = 1;

/// The node's name of a topic config given under Kafka's name (or already the node's).
pub(super) fn node_key(key: &str) -> String {
    match key {
        "retention.ms" | "retention.bytes" | "segment.bytes" | "segment.ms" => key.replace('.', "_"),
        other => other.to_string(),
    }
}

/// Kafka's name of a node topic config.
fn kafka_key(key: &str) -> String {
    key.replace('_', ".")
}

/// Every topic the node has, with its effective configs.
async fn topics(shard: &Ctx, cid: i32) -> Result<Vec<TopicSummary>, (i16, String)> {
    match ask(shard, cid, Request::ListTopics, Bytes::new()).await {
        Some(Reply { header, .. }) => match header.response {
            Response::ListTopics(l) => Ok(l.topics),
            _ => Err((to_kafka(header.error), header.message.unwrap_or_default())),
        },
        None => Err((code::UNKNOWN_SERVER_ERROR, "no answer".into())),
    }
}

/// The error code and message of a native admin answer.
fn outcome(reply: Option<Reply>) -> (i16, Option<StrBytes>) {
    match reply {
        Some(Reply { header, .. }) if header.error == ErrorCode::None => (code::NONE, None),
        Some(Reply { header, .. }) => (to_kafka(header.error), header.message.map(StrBytes::from_string)),
        None => (code::UNKNOWN_SERVER_ERROR, message("no answer")),
    }
}

pub(super) async fn create_partitions(shard: &Ctx, cid: i32, version: i16, req: CreatePartitionsRequest) -> Answer {
    let mut response = CreatePartitionsResponse::default();
    for topic in &req.topics {
        let mut r = CreatePartitionsTopicResult::default();
        r.name = topic.name.clone();
        let refused = match u32::try_from(topic.count) {
            _ if req.validate_only => Some((code::INVALID_REQUEST, "validate_only is not supported")),
            _ if topic.assignments.as_ref().is_some_and(|a| !a.is_empty()) => {
                Some((code::INVALID_REPLICA_ASSIGNMENT, "manual replica assignment is not supported"))
            }
            Err(_) | Ok(0) => Some((code::INVALID_PARTITIONS, "the partition count must be positive")),
            Ok(_) => None,
        };
        if let Some((error, text)) = refused {
            (r.error_code, r.error_message) = (error, message(text));
        } else {
            let request = Request::CreatePartitions(native::CreatePartitionsRequest {
                name: topic.name.0.as_str().to_string(),
                partitions: topic.count as u32,
            });
            (r.error_code, r.error_message) = outcome(ask(shard, cid, request, Bytes::new()).await);
            if r.error_code == code::INVALID_CONFIG {
                r.error_code = code::INVALID_PARTITIONS;
            }
        }
        response.results.push(r);
    }
    encoded(&response, version)
}

pub(super) async fn describe_configs(shard: &Ctx, cid: i32, version: i16, req: DescribeConfigsRequest) -> Answer {
    let known = if req.resources.iter().any(|r| r.resource_type == RESOURCE_TOPIC) {
        Some(topics(shard, cid).await)
    } else {
        None
    };
    let node_id = shard.shared.config.node_id.to_string();
    let mut response = DescribeConfigsResponse::default();
    for resource in &req.resources {
        let mut r = DescribeConfigsResult::default();
        r.resource_type = resource.resource_type;
        r.resource_name = resource.resource_name.clone();
        let name = resource.resource_name.as_str();
        let wanted = |key: &str| {
            resource.configuration_keys.as_ref().is_none_or(|keys| keys.iter().any(|k| node_key(k.as_str()) == key))
        };
        match (resource.resource_type, &known) {
            (RESOURCE_TOPIC, Some(Ok(topics))) => match topics.iter().find(|t| t.name == name) {
                Some(topic) => {
                    r.configs = topic
                        .configs
                        .iter()
                        .filter(|c| wanted(&c.key))
                        .map(|c| {
                            let mut entry = DescribeConfigsResourceResult::default();
                            entry.name = StrBytes::from_string(kafka_key(&c.key));
                            entry.value = Some(StrBytes::from_string(c.value.clone()));
                            entry.config_source = if c.is_override { SOURCE_TOPIC_CONFIG } else { SOURCE_DEFAULT };
                            entry
                        })
                        .collect();
                }
                None => (r.error_code, r.error_message) = (code::UNKNOWN_TOPIC_OR_PARTITION, message("no such topic")),
            },
            (RESOURCE_TOPIC, Some(Err((error, text)))) => {
                (r.error_code, r.error_message) = (*error, message(text.clone()))
            }
            // The node's own settings are not exposed as Kafka broker configs (yet): an
            // empty list, not an error, so admin tools that describe the broker go on.
            (RESOURCE_BROKER, _) if name == node_id || name.is_empty() => {}
            (RESOURCE_BROKER, _) => {
                (r.error_code, r.error_message) = (code::INVALID_REQUEST, message("not this broker"))
            }
            _ => (r.error_code, r.error_message) = (code::INVALID_REQUEST, message("unsupported resource type")),
        }
        response.results.push(r);
    }
    encoded(&response, version)
}

/// One topic's config change: set these, delete those (node names).
struct Change {
    set: Vec<(String, String)>,
    delete: Vec<String>,
}

async fn alter_topic(shard: &Ctx, cid: i32, name: &str, change: Change) -> (i16, Option<StrBytes>) {
    let request = Request::AlterTopicConfig(native::AlterTopicConfigRequest {
        name: name.to_string(),
        set: change.set,
        delete: change.delete,
    });
    outcome(ask(shard, cid, request, Bytes::new()).await)
}

/// Checks a resource of an alter request; `Err` is the error to answer for it.
fn alterable(resource_type: i8, validate_only: bool) -> Result<(), (i16, Option<StrBytes>)> {
    if validate_only {
        return Err((code::INVALID_REQUEST, message("validate_only is not supported")));
    }
    if resource_type != RESOURCE_TOPIC {
        return Err((code::INVALID_REQUEST, message("only topic configs can be altered")));
    }
    Ok(())
}

/// AlterConfigs replaces a topic's whole set of overrides: the given keys are set, every
/// other override is deleted (back to the node's default), as in Kafka.
pub(super) async fn alter_configs(shard: &Ctx, cid: i32, version: i16, req: AlterConfigsRequest) -> Answer {
    let current = topics(shard, cid).await;
    let mut response = AlterConfigsResponse::default();
    for resource in &req.resources {
        let mut r = alter_configs_response::AlterConfigsResourceResponse::default();
        r.resource_type = resource.resource_type;
        r.resource_name = resource.resource_name.clone();
        let name = resource.resource_name.as_str();
        let set: Option<Vec<(String, String)>> = resource
            .configs
            .iter()
            .map(|c| c.value.as_ref().map(|v| (node_key(c.name.as_str()), v.as_str().to_string())))
            .collect();
        (r.error_code, r.error_message) = match (alterable(resource.resource_type, req.validate_only), set, &current) {
            (Err(refused), _, _) => refused,
            (_, None, _) => (code::INVALID_CONFIG, message("a config without a value")),
            (_, _, Err((error, text))) => (*error, message(text.clone())),
            (Ok(()), Some(set), Ok(topics)) => match topics.iter().find(|t| t.name == name) {
                None => (code::UNKNOWN_TOPIC_OR_PARTITION, message("no such topic")),
                Some(topic) => {
                    let delete = topic
                        .configs
                        .iter()
                        .filter(|c| c.is_override && !set.iter().any(|(k, _)| *k == c.key))
                        .map(|c| c.key.clone())
                        .collect();
                    alter_topic(shard, cid, name, Change { set, delete }).await
                }
            },
        };
        response.responses.push(r);
    }
    encoded(&response, version)
}

/// IncrementalAlterConfigs: SET and DELETE per key (APPEND/SUBTRACT apply to list configs,
/// which the node has none of).
pub(super) async fn incremental_alter_configs(
    shard: &Ctx,
    cid: i32,
    version: i16,
    req: IncrementalAlterConfigsRequest,
) -> Answer {
    let mut response = IncrementalAlterConfigsResponse::default();
    for resource in &req.resources {
        let mut r = incremental_alter_configs_response::AlterConfigsResourceResponse::default();
        r.resource_type = resource.resource_type;
        r.resource_name = resource.resource_name.clone();
        let mut change = Change { set: Vec::new(), delete: Vec::new() };
        let mut bad = None;
        for c in &resource.configs {
            let key = node_key(c.name.as_str());
            match (c.config_operation, &c.value) {
                (OP_SET, Some(v)) => change.set.push((key, v.as_str().to_string())),
                (OP_DELETE, _) => change.delete.push(key),
                (OP_SET, None) => bad = Some((code::INVALID_CONFIG, message(format!("{key}: SET without a value")))),
                (op, _) => bad = Some((code::INVALID_REQUEST, message(format!("{key}: operation {op} not supported")))),
            }
        }
        (r.error_code, r.error_message) = match (alterable(resource.resource_type, req.validate_only), bad) {
            (Err(refused), _) | (_, Some(refused)) => refused,
            (Ok(()), None) => alter_topic(shard, cid, resource.resource_name.as_str(), change).await,
        };
        response.responses.push(r);
    }
    encoded(&response, version)
}

pub(super) fn describe_cluster(shard: &Shard, version: i16, req: DescribeClusterRequest) -> Answer {
    let mut response = DescribeClusterResponse::default();
    // Endpoint type 1 = brokers (v1+); the node has no separate controller endpoints.
    if req.endpoint_type != 1 && version >= 1 {
        response.error_code = code::INVALID_REQUEST;
        response.error_message = message("only broker endpoints (type 1) are served");
        return encoded(&response, version);
    }
    response.endpoint_type = 1;
    response.cluster_id = StrBytes::from_static_str(super::apis::CLUSTER_ID);
    response.controller_id = super::apis::controller_id(shard);
    response.brokers = super::apis::brokers(shard)
        .into_iter()
        .map(|b| {
            let mut d = DescribeClusterBroker::default();
            d.broker_id = b.node_id;
            d.host = b.host;
            d.port = b.port;
            d
        })
        .collect();
    encoded(&response, version)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kafka_config_names_map_to_the_nodes_and_back() {
        for key in crate::topic::TOPIC_CONFIG_KEYS {
            assert_eq!(node_key(&kafka_key(key)), key);
            assert_eq!(node_key(key), key, "the node's own names pass");
        }
        assert_eq!(node_key("cleanup.policy"), "cleanup.policy", "unknown keys reach the node, which refuses them");
    }
}
