//! One handler per Kafka API: decode the request with the codec crate, ask the node the
//! same question a native request asks (`Shard::dispatch`), encode the answer.
//!
//! Every field is checked before it reaches the node: negative partitions, offsets, sizes
//! and timeouts, unknown acks, requests that name topics by id only, transactions and
//! manual replica assignments are answered with the Kafka error a broker would give, per
//! partition or per topic, never with a panic. A body that does not decode closes the
//! connection (`Err`), as on a Kafka broker.

use std::rc::Rc;

use bytes::Bytes;
use kafka_protocol::messages::api_versions_response::ApiVersion;
use kafka_protocol::messages::create_topics_response::CreatableTopicResult;
use kafka_protocol::messages::delete_topics_response::DeletableTopicResult;
use kafka_protocol::messages::fetch_response::{FetchableTopicResponse, PartitionData};
use kafka_protocol::messages::list_offsets_response::{ListOffsetsPartitionResponse, ListOffsetsTopicResponse};
use kafka_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use kafka_protocol::messages::produce_response::{PartitionProduceResponse, TopicProduceResponse};
use kafka_protocol::messages::{
    ApiKey, ApiVersionsRequest, ApiVersionsResponse, BrokerId, CreateTopicsRequest, CreateTopicsResponse,
    DeleteTopicsRequest, DeleteTopicsResponse, FetchRequest, FetchResponse, InitProducerIdRequest,
    InitProducerIdResponse, ListOffsetsRequest, ListOffsetsResponse, MetadataRequest, MetadataResponse, ProduceRequest,
    ProduceResponse, ProducerId, TopicName,
};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use strand_wire::msg::{self as native, Acks, OffsetSpec, Request, RequestHeader, Response};
use strand_wire::ErrorCode;

use super::codes::{kafka as code, to_kafka, SUPPORTED};
use super::{admin, fetch, groups, Incoming, Piece};
use crate::quota::{ConnQuota, Direction};
use crate::security;
use crate::shard::dispatch::Reply;
use crate::shard::Shard;
use strand_core::auth::acl::Operation;

/// What a handler gives back: the response body, or nothing (a produce with `acks = 0`).
pub(super) type Answer = Result<Option<Vec<Piece>>, String>;

/// The cluster id clients see (Metadata, DescribeCluster).
pub(super) const CLUSTER_ID: &str = "strand";

/// Kafka's "earliest" and "latest" ListOffsets timestamps.
const EARLIEST: i64 = -2;
const LATEST: i64 = -1;

pub(super) async fn handle(shard: &Ctx, req: Incoming) -> Answer {
    let Incoming { api, version, header, mut body } = req;
    let cid = header.correlation_id;
    match api {
        ApiKey::ApiVersions => api_versions(version, &mut body),
        ApiKey::Metadata => metadata(shard, cid, version, decode(&mut body, version)?).await,
        ApiKey::Produce => {
            // Charged by the request's size, as Kafka does; the answer carries the throttle.
            let throttle_ms = shard.quota.charge(Direction::Produce, body.len() as u64);
            produce(shard, cid, version, decode(&mut body, version)?, throttle_ms).await
        }
        ApiKey::Fetch => kafka_fetch(shard, cid, version, decode(&mut body, version)?).await,
        ApiKey::ListOffsets => list_offsets(shard, cid, version, decode(&mut body, version)?).await,
        ApiKey::CreateTopics => create_topics(shard, cid, version, decode(&mut body, version)?).await,
        ApiKey::InitProducerId => init_producer_id(shard, cid, version, decode(&mut body, version)?).await,
        ApiKey::DeleteTopics => delete_topics(shard, cid, version, decode(&mut body, version)?).await,
        ApiKey::CreatePartitions => admin::create_partitions(shard, cid, version, decode(&mut body, version)?).await,
        ApiKey::DescribeConfigs => admin::describe_configs(shard, cid, version, decode(&mut body, version)?).await,
        ApiKey::AlterConfigs => admin::alter_configs(shard, cid, version, decode(&mut body, version)?).await,
        ApiKey::IncrementalAlterConfigs => {
            admin::incremental_alter_configs(shard, cid, version, decode(&mut body, version)?).await
        }
        ApiKey::DescribeCluster => admin::describe_cluster(shard, version, decode(&mut body, version)?),
        ApiKey::FindCoordinator => groups::find_coordinator(shard, version, decode(&mut body, version)?).await,
        ApiKey::JoinGroup => {
            let client_id = header.client_id.as_ref().map_or("", |c| c.as_str());
            groups::join_group(shard, client_id, version, decode(&mut body, version)?).await
        }
        ApiKey::SyncGroup => groups::sync_group(shard, version, decode(&mut body, version)?).await,
        ApiKey::Heartbeat => groups::heartbeat(shard, version, decode(&mut body, version)?).await,
        ApiKey::LeaveGroup => groups::leave_group(shard, version, decode(&mut body, version)?).await,
        ApiKey::OffsetCommit => groups::offset_commit(shard, version, decode(&mut body, version)?).await,
        ApiKey::OffsetFetch => groups::offset_fetch(shard, version, decode(&mut body, version)?).await,
        ApiKey::ListGroups => groups::list_groups(shard, version, decode(&mut body, version)?).await,
        ApiKey::DescribeGroups => groups::describe_groups(shard, version, decode(&mut body, version)?).await,
        ApiKey::DeleteGroups => groups::delete_groups(shard, version, decode(&mut body, version)?).await,
        other => Err(format!("kafka: {other:?} is not served (parse_request lets only SUPPORTED through)")),
    }
}

/// Decodes a request body. Bytes after the body are ignored, as a Kafka broker ignores
/// them: librdkafka 2.x sends three after a Metadata v12 request, for one.
fn decode<T: Decodable>(body: &mut Bytes, version: i16) -> Result<T, String> {
    let message = T::decode(body, version).map_err(|e| format!("kafka: v{version} request does not decode: {e}"))?;
    if !body.is_empty() {
        tracing::debug!(version, trailing = body.len(), "kafka: bytes after a request body ignored");
    }
    Ok(message)
}

/// Per-partition answers collected in request order, each tagged with its topic's index in
/// the request, regrouped into one list per topic (a response lists partitions per topic).
pub(super) fn per_topic<A>(topics: usize, answers: impl IntoIterator<Item = (usize, A)>) -> Vec<Vec<A>> {
    let mut out: Vec<Vec<A>> = (0..topics).map(|_| Vec::new()).collect();
    for (t, answer) in answers {
        out[t].push(answer);
    }
    out
}

pub(super) fn encoded<T: Encodable>(message: &T, version: i16) -> Answer {
    let mut buf = bytes::BytesMut::new();
    message.encode(&mut buf, version).map_err(|e| format!("kafka: encoding a v{version} response: {e}"))?;
    Ok(Some(vec![Piece::Bytes(buf.freeze())]))
}

/// Asks the node, as a native request would.
/// Asks the node, as a native request would, with the connection's rights: a request
/// the principal may not make is answered with the refusal (per call, so per partition
/// for produce and per topic for topic admin), and listings are filtered.
pub(super) async fn ask(shard: &Ctx, cid: i32, request: Request, payload: Bytes) -> Option<Reply> {
    let cid = cid as u32 as u64;
    if let Err(refused) = security::native::authorize(&shard.shared.security, &shard.access, &request) {
        shard.metrics.authorization_denied.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        return Some(Reply::error(cid, refused.code, refused.message));
    }
    let all_topics = matches!(&request, Request::Metadata(m) if m.topics.is_empty());
    let mut reply = shard.dispatch(RequestHeader { correlation_id: cid, request }, payload).await?;
    security::native::filter_answer(shard, &shard.access, all_topics, &mut reply);
    Some(reply)
}

/// A Kafka request's shard and the connection's rights (`crate::security`). Derefs to
/// the shard, so handlers use it as one.
pub(crate) struct Ctx {
    pub shard: Rc<Shard>,
    pub access: security::Access,
    /// The connection's quota meters (charged by Produce and Fetch).
    pub quota: Rc<ConnQuota>,
}

impl std::ops::Deref for Ctx {
    type Target = Rc<Shard>;

    fn deref(&self) -> &Rc<Shard> {
        &self.shard
    }
}

/// `operation` on topic `name` for this request's principal, as a Kafka error code.
pub(super) fn topic_refused(shard: &Ctx, operation: Operation, name: &str) -> Option<i16> {
    let refused = shard.access.topic(&shard.shared.security, operation, name).err()?;
    shard.metrics.authorization_denied.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    Some(to_kafka(refused.code))
}

/// `operation` on group `name`, as a Kafka error code.
pub(super) fn group_refused(shard: &Ctx, operation: Operation, name: &str) -> Option<i16> {
    let refused = shard.access.group(&shard.shared.security, operation, name).err()?;
    shard.metrics.authorization_denied.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    Some(to_kafka(refused.code))
}

fn name(topic: &TopicName) -> String {
    topic.0.as_str().to_string()
}

pub(super) fn topic_name(name: &str) -> TopicName {
    TopicName(StrBytes::from_string(name.to_string()))
}

pub(super) fn message(text: impl Into<String>) -> Option<StrBytes> {
    Some(StrBytes::from_string(text.into()))
}

/// The advertised versions, as an ApiVersions response lists them.
fn api_keys() -> Vec<ApiVersion> {
    SUPPORTED
        .iter()
        .map(|&(api, min, max)| {
            let mut v = ApiVersion::default();
            v.api_key = api as i16;
            v.min_version = min;
            v.max_version = max;
            v
        })
        .collect()
}

fn api_versions(version: i16, body: &mut Bytes) -> Answer {
    let mut response = ApiVersionsResponse::default();
    response.api_keys = api_keys();
    // KIP-511: a v3+ request that does not parse is answered, with INVALID_REQUEST.
    if decode::<ApiVersionsRequest>(body, version).is_err() {
        response.error_code = code::INVALID_REQUEST;
    }
    encoded(&response, version)
}

/// The body that answers an ApiVersions request of a version this node does not speak:
/// v0, `UNSUPPORTED_VERSION`, and the versions it does speak (KIP-511).
pub(super) fn api_versions_unsupported() -> Bytes {
    let mut response = ApiVersionsResponse::default();
    response.error_code = code::UNSUPPORTED_VERSION;
    response.api_keys = api_keys();
    let mut buf = bytes::BytesMut::new();
    // v0 of a response built from defaults and a static table always encodes.
    response.encode(&mut buf, 0).expect("ApiVersions v0 encodes");
    buf.freeze()
}

/// This node's and (in cluster mode) its live peers' Kafka addresses, by node id.
pub(super) fn brokers(shard: &Shard) -> Vec<MetadataResponseBroker> {
    let broker = |id: u32, host: &str, port: u16| {
        let mut b = MetadataResponseBroker::default();
        b.node_id = BrokerId(id as i32);
        b.host = StrBytes::from_string(host.to_string());
        b.port = i32::from(port);
        b
    };
    let config = &shard.shared.config;
    let own = shard.shared.ports.get().and_then(|p| p.kafka).unwrap_or(0);
    let mut out = vec![broker(config.node_id, &config.advertise_host, own)];
    if let Some(cluster) = shard.cluster() {
        let view = cluster.control.latest();
        for n in view.nodes.values().filter(|n| n.node_id != config.node_id && n.kafka_port != 0) {
            out.push(broker(n.node_id, &n.host, n.kafka_port));
        }
    }
    out
}

/// The controller clients see: the node holding the cluster's controller election, or
/// this node on its own.
pub(super) fn controller_id(shard: &Shard) -> BrokerId {
    let own = shard.shared.config.node_id;
    let elected = shard.cluster().and_then(|c| c.control.latest().controller);
    BrokerId(elected.unwrap_or(own) as i32)
}

async fn metadata(shard: &Ctx, cid: i32, version: i16, req: MetadataRequest) -> Answer {
    // v0: an empty list means every topic; v1+: null means every topic, empty means none.
    let (asked, by_id_only): (Option<Vec<String>>, usize) = match &req.topics {
        None => (None, 0),
        Some(topics) if topics.is_empty() && version == 0 => (None, 0),
        Some(topics) => {
            let names: Vec<String> = topics.iter().filter_map(|t| t.name.as_ref().map(name)).collect();
            let by_id = topics.len() - names.len();
            (Some(names), by_id)
        }
    };
    let mut response = MetadataResponse::default();
    response.brokers = brokers(shard);
    response.cluster_id = message(CLUSTER_ID);
    response.controller_id = controller_id(shard);
    let want_any = asked.as_ref().is_none_or(|names| !names.is_empty());
    if want_any {
        let request = Request::Metadata(native::MetadataRequest { topics: asked.clone().unwrap_or_default() });
        let reply = ask(shard, cid, request, Bytes::new()).await;
        let Some(Reply { header, .. }) = reply else { return Err("kafka: metadata went unanswered".into()) };
        let Response::Metadata(m) = header.response else {
            return Err(format!("kafka: metadata failed: {:?} {:?}", header.error, header.message));
        };
        response.topics = m.topics.iter().map(topic_metadata).collect();
    }
    for _ in 0..by_id_only {
        let mut t = MetadataResponseTopic::default();
        t.error_code = code::UNKNOWN_TOPIC_ID;
        response.topics.push(t);
    }
    encoded(&response, version)
}

fn topic_metadata(t: &native::TopicMetadata) -> MetadataResponseTopic {
    let mut topic = MetadataResponseTopic::default();
    topic.name = Some(topic_name(&t.name));
    topic.error_code = to_kafka(t.error);
    topic.is_internal = crate::topic::is_internal_topic(&t.name);
    topic.partitions = t
        .partitions
        .iter()
        .map(|p| {
            let mut m = MetadataResponsePartition::default();
            m.partition_index = p.partition as i32;
            m.error_code = to_kafka(p.error);
            m.leader_id = BrokerId(if p.error == ErrorCode::None { p.leader_node as i32 } else { -1 });
            m.leader_epoch = i32::try_from(p.epoch).unwrap_or(i32::MAX);
            m.replica_nodes = p.replicas.iter().map(|&r| BrokerId(r as i32)).collect();
            m.isr_nodes = m.replica_nodes.clone();
            m
        })
        .collect();
    topic
}

async fn produce(shard: &Ctx, cid: i32, version: i16, req: ProduceRequest, throttle_ms: u32) -> Answer {
    let acks = match req.acks {
        0 => Some(Acks::None),
        1 => Some(Acks::Leader),
        -1 => Some(Acks::All),
        _ => None,
    };
    let refusal = match (&req.transactional_id, acks) {
        (Some(_), _) => Some((code::INVALID_REQUEST, "transactions are not supported by this node")),
        (None, None) => Some((code::INVALID_REQUIRED_ACKS, "acks must be 0, 1 or -1")),
        _ => None,
    };
    let timeout_ms = u32::try_from(req.timeout_ms).unwrap_or(0);
    // One native produce per partition, all polled once in request order before any waits
    // (`join_all`), so this request's batches take their offsets before the next request's.
    let mut slots: Vec<(usize, PartitionProduceResponse)> = Vec::new();
    let mut asks = Vec::new();
    for (t, topic) in req.topic_data.iter().enumerate() {
        for part in &topic.partition_data {
            let mut r = PartitionProduceResponse::default();
            r.index = part.index;
            r.base_offset = -1;
            r.log_append_time_ms = -1;
            r.log_start_offset = -1;
            let records = part.records.clone().unwrap_or_default();
            let problem = match (refusal, u32::try_from(part.index), u32::try_from(records.len())) {
                (Some(refused), _, _) => Some(refused),
                (None, Err(_), _) => Some((code::UNKNOWN_TOPIC_OR_PARTITION, "negative partition")),
                (None, _, Ok(0)) => Some((code::CORRUPT_MESSAGE, "no records")),
                (None, _, Err(_)) => Some((code::MESSAGE_TOO_LARGE, "records too large")),
                _ => None,
            };
            if let Some((error, text)) = problem {
                r.error_code = error;
                r.error_message = message(text);
                slots.push((t, r));
                continue;
            }
            let request = Request::Produce(native::ProduceRequest {
                acks: acks.unwrap_or_default(),
                timeout_ms,
                partitions: vec![native::ProducePartition {
                    topic: name(&topic.name),
                    partition: part.index as u32,
                    bytes_len: records.len() as u32,
                }],
            });
            let index = slots.len();
            slots.push((t, r));
            asks.push(async move { (index, ask(shard, cid, request, records).await) });
        }
    }
    for (index, reply) in crate::shard::join::join_all(asks).await {
        let r = &mut slots[index].1;
        let Some(Reply { header, .. }) = reply else { continue };
        match header.response {
            Response::Produce(p) => {
                if let Some(part) = p.partitions.first() {
                    r.error_code = to_kafka(part.error);
                    if matches!(part.error, ErrorCode::None | ErrorCode::DuplicateSequence) {
                        r.base_offset = part.base_offset as i64;
                        r.log_start_offset = part.log_start_offset as i64;
                    }
                    if part.error != ErrorCode::None {
                        r.error_message = header.message.map(StrBytes::from_string);
                    }
                }
            }
            _ => {
                r.error_code = to_kafka(header.error);
                r.error_message = header.message.map(StrBytes::from_string);
            }
        }
    }
    if acks == Some(Acks::None) && refusal.is_none() {
        return Ok(None);
    }
    let mut response = ProduceResponse::default();
    response.throttle_time_ms = i32::try_from(throttle_ms).unwrap_or(i32::MAX);
    response.responses = req
        .topic_data
        .iter()
        .zip(per_topic(req.topic_data.len(), slots))
        .map(|(topic, partitions)| {
            let mut out = TopicProduceResponse::default();
            out.name = topic.name.clone();
            out.partition_responses = partitions;
            out
        })
        .collect();
    encoded(&response, version)
}

/// An idempotent producer's identity: a fresh random producer id at the one epoch the node
/// issues, exactly as for a native producer. A request to bump the epoch of an id it holds
/// (v3+, KIP-360) gets a fresh id too, which Kafka allows and clients handle by starting
/// their sequences over. A transactional id is refused: transactions are out of scope.
async fn init_producer_id(shard: &Ctx, cid: i32, version: i16, req: InitProducerIdRequest) -> Answer {
    let mut response = InitProducerIdResponse::default();
    response.producer_id = ProducerId(-1);
    response.producer_epoch = -1;
    if req.transactional_id.is_some() {
        response.error_code = code::INVALID_REQUEST;
        return encoded(&response, version);
    }
    let reply = ask(shard, cid, Request::InitProducerId, Bytes::new()).await;
    match reply.map(|r| r.header) {
        Some(native::ResponseHeader { response: Response::InitProducerId(r), .. }) => {
            match (i64::try_from(r.producer_id), i16::try_from(r.producer_epoch)) {
                (Ok(id), Ok(epoch)) => (response.producer_id, response.producer_epoch) = (ProducerId(id), epoch),
                _ => response.error_code = code::UNKNOWN_SERVER_ERROR,
            }
        }
        Some(header) => response.error_code = to_kafka(header.error),
        None => response.error_code = code::UNKNOWN_SERVER_ERROR,
    }
    encoded(&response, version)
}

async fn kafka_fetch(shard: &Ctx, cid: i32, version: i16, req: FetchRequest) -> Answer {
    // Partitions the node is asked for, and the ones answered here without asking.
    let mut parts = Vec::new();
    let mut answers: Vec<(usize, PartitionData, Option<usize>)> = Vec::new();
    for (t, topic) in req.topics.iter().enumerate() {
        for p in &topic.partitions {
            let mut d = PartitionData::default();
            d.partition_index = p.partition;
            d.high_watermark = -1;
            d.last_stable_offset = -1;
            d.log_start_offset = -1;
            d.records = Some(Bytes::new());
            let known_name = topic.topic.0.as_str();
            let refused = topic_refused(shard, Operation::Read, known_name);
            match (u32::try_from(p.partition), u64::try_from(p.fetch_offset), known_name.is_empty()) {
                (_, _, true) => d.error_code = code::UNKNOWN_TOPIC_ID,
                _ if refused.is_some() => d.error_code = refused.unwrap_or(code::UNKNOWN_SERVER_ERROR),
                (Err(_), _, _) => d.error_code = code::UNKNOWN_TOPIC_OR_PARTITION,
                (_, Err(_), _) => d.error_code = code::OFFSET_OUT_OF_RANGE,
                (Ok(partition), Ok(offset), false) => {
                    answers.push((t, d, Some(parts.len())));
                    parts.push(native::FetchPartition {
                        topic: known_name.to_string(),
                        partition,
                        offset,
                        max_bytes: u32::try_from(p.partition_max_bytes).unwrap_or(0),
                    });
                    continue;
                }
            }
            answers.push((t, d, None));
        }
    }
    let mut fetched: Vec<(native::FetchPartitionResponse, Vec<crate::log::ReadChunk>)> = Vec::new();
    if !parts.is_empty() {
        let request = Request::Fetch(native::FetchRequest {
            max_wait_ms: u32::try_from(req.max_wait_ms).unwrap_or(0),
            min_bytes: u32::try_from(req.min_bytes).unwrap_or(0),
            max_bytes: u32::try_from(req.max_bytes).unwrap_or(0),
            partitions: parts,
        });
        let Some(Reply { header, payload }) = ask(shard, cid, request, Bytes::new()).await else {
            return Err("kafka: fetch went unanswered".into());
        };
        let Response::Fetch(f) = header.response else {
            return Err(format!("kafka: fetch failed: {:?} {:?}", header.error, header.message));
        };
        // The payload is every partition's chunks back to back; cut it by `bytes_len`.
        let mut chunks = payload.into_iter();
        for part in f.partitions {
            let mut mine = Vec::new();
            let mut need = part.bytes_len as usize;
            while need > 0 {
                let Some(chunk) = chunks.next() else {
                    return Err("kafka: fetch payload shorter than its parts".into());
                };
                need = need.checked_sub(chunk.len() as usize).ok_or("kafka: a fetch chunk spans two partitions")?;
                mine.push(chunk);
            }
            fetched.push((part, mine));
        }
    }
    let mut records = Vec::new();
    let mut fetched = fetched.into_iter();
    for (_, d, asked) in answers.iter_mut() {
        if asked.is_none() {
            continue;
        }
        let Some((part, chunks)) = fetched.next() else { return Err("kafka: fetch answered too few parts".into()) };
        d.error_code = to_kafka(part.error);
        if part.error == ErrorCode::None {
            d.high_watermark = part.high_watermark as i64;
            d.last_stable_offset = part.high_watermark as i64;
            d.log_start_offset = part.log_start_offset as i64;
            if part.bytes_len > 0 {
                d.records = Some(fetch::marker(records.len() as u32));
                records.push((chunks, part.bytes_len as usize));
            }
        }
    }
    let mut response = FetchResponse::default();
    let answered: usize = records.iter().map(|(_, len)| len).sum();
    let throttle_ms = shard.quota.charge(Direction::Fetch, answered as u64);
    response.throttle_time_ms = i32::try_from(throttle_ms).unwrap_or(i32::MAX);
    response.responses = req
        .topics
        .iter()
        .zip(per_topic(req.topics.len(), answers.into_iter().map(|(t, d, _)| (t, d))))
        .map(|(topic, partitions)| {
            let mut out = FetchableTopicResponse::default();
            out.topic = topic.topic.clone();
            out.topic_id = topic.topic_id;
            out.partitions = partitions;
            out
        })
        .collect();
    Ok(Some(fetch::encode(&response, version, records)?))
}

async fn list_offsets(shard: &Ctx, cid: i32, version: i16, req: ListOffsetsRequest) -> Answer {
    let mut asked = Vec::new();
    let mut answers: Vec<(usize, ListOffsetsPartitionResponse, Option<usize>)> = Vec::new();
    for (t, topic) in req.topics.iter().enumerate() {
        for p in &topic.partitions {
            let mut r = ListOffsetsPartitionResponse::default();
            r.partition_index = p.partition_index;
            r.timestamp = -1;
            r.offset = -1;
            r.leader_epoch = -1;
            let spec = match p.timestamp {
                EARLIEST => Some(OffsetSpec::Earliest),
                LATEST => Some(OffsetSpec::Latest),
                ts if ts >= 0 => Some(OffsetSpec::Timestamp(ts)),
                _ => None,
            };
            let refused = topic_refused(shard, Operation::Read, topic.name.0.as_str());
            match (u32::try_from(p.partition_index), spec) {
                _ if refused.is_some() => r.error_code = refused.unwrap_or(code::UNKNOWN_SERVER_ERROR),
                (Err(_), _) => r.error_code = code::UNKNOWN_TOPIC_OR_PARTITION,
                (_, None) => r.error_code = code::INVALID_REQUEST,
                (Ok(partition), Some(spec)) => {
                    answers.push((t, r, Some(asked.len())));
                    asked.push(native::ListOffsetsPartition { topic: name(&topic.name), partition, spec });
                    continue;
                }
            }
            answers.push((t, r, None));
        }
    }
    let specs: Vec<OffsetSpec> = asked.iter().map(|p| p.spec).collect();
    let mut found = Vec::new();
    if !asked.is_empty() {
        let request = Request::ListOffsets(native::ListOffsetsRequest { partitions: asked });
        let Some(Reply { header, .. }) = ask(shard, cid, request, Bytes::new()).await else {
            return Err("kafka: list offsets went unanswered".into());
        };
        match header.response {
            Response::ListOffsets(l) => found = l.partitions,
            _ => {
                for (_, r, asked) in answers.iter_mut() {
                    if asked.is_some() {
                        r.error_code = to_kafka(header.error);
                    }
                }
            }
        }
    }
    for (_, r, asked) in answers.iter_mut() {
        let (Some(i), Some(p)) = (*asked, asked.and_then(|i| found.get(i))) else { continue };
        r.error_code = to_kafka(p.error);
        if p.error != ErrorCode::None {
            continue;
        }
        // A timestamp no record reaches: Kafka answers offset and timestamp -1.
        let missed = matches!(specs[i], OffsetSpec::Timestamp(_)) && p.timestamp < 0;
        (r.offset, r.timestamp) = if missed { (-1, -1) } else { (p.offset as i64, p.timestamp) };
    }
    let mut response = ListOffsetsResponse::default();
    response.topics = req
        .topics
        .iter()
        .zip(per_topic(req.topics.len(), answers.into_iter().map(|(t, r, _)| (t, r))))
        .map(|(topic, partitions)| {
            let mut out = ListOffsetsTopicResponse::default();
            out.name = topic.name.clone();
            out.partitions = partitions;
            out
        })
        .collect();
    encoded(&response, version)
}

async fn create_topics(shard: &Ctx, cid: i32, version: i16, req: CreateTopicsRequest) -> Answer {
    let mut response = CreateTopicsResponse::default();
    for topic in &req.topics {
        let mut r = CreatableTopicResult::default();
        r.name = topic.name.clone();
        r.num_partitions = -1;
        r.replication_factor = -1;
        // Kafka's defaults for -1 (`num.partitions`, `default.replication.factor`): 1 each.
        let partitions = if topic.num_partitions == -1 { Some(1) } else { u32::try_from(topic.num_partitions).ok() };
        let rf = if topic.replication_factor == -1 { Some(1) } else { u16::try_from(topic.replication_factor).ok() };
        let configs: Option<Vec<(String, String)>> = topic
            .configs
            .iter()
            .map(|c| c.value.as_ref().map(|v| (super::admin::node_key(c.name.as_str()), v.as_str().to_string())))
            .collect();
        let refused = match (partitions, rf, configs.as_ref()) {
            _ if req.validate_only => Some((code::INVALID_REQUEST, "validate_only is not supported")),
            _ if !topic.assignments.is_empty() => {
                Some((code::INVALID_REPLICA_ASSIGNMENT, "manual replica assignment is not supported"))
            }
            (None, _, _) | (Some(0), _, _) => Some((code::INVALID_PARTITIONS, "partitions must be positive")),
            (_, None, _) | (_, Some(0), _) => {
                Some((code::INVALID_REPLICATION_FACTOR, "replication factor must be positive"))
            }
            (_, _, None) => Some((code::INVALID_CONFIG, "a config without a value")),
            _ => None,
        };
        if let Some((error, text)) = refused {
            r.error_code = error;
            r.error_message = message(text);
            response.topics.push(r);
            continue;
        }
        let (partitions, rf) = (partitions.unwrap_or(1), rf.unwrap_or(1));
        let request = Request::CreateTopic(native::CreateTopicRequest {
            name: name(&topic.name),
            partitions,
            replication_factor: rf,
            configs: configs.unwrap_or_default(),
        });
        match ask(shard, cid, request, Bytes::new()).await {
            Some(Reply { header, .. }) if header.error == ErrorCode::None => {
                r.num_partitions = partitions as i32;
                r.replication_factor = rf as i16;
            }
            Some(Reply { header, .. }) => {
                r.error_code = to_kafka(header.error);
                r.error_message = header.message.map(StrBytes::from_string);
            }
            None => r.error_code = code::UNKNOWN_SERVER_ERROR,
        }
        response.topics.push(r);
    }
    encoded(&response, version)
}

async fn delete_topics(shard: &Ctx, cid: i32, version: i16, req: DeleteTopicsRequest) -> Answer {
    let mut response = DeleteTopicsResponse::default();
    for topic in &req.topic_names {
        let mut r = DeletableTopicResult::default();
        r.name = Some(topic.clone());
        let request = Request::DeleteTopic(native::DeleteTopicRequest { name: name(topic) });
        match ask(shard, cid, request, Bytes::new()).await {
            Some(Reply { header, .. }) => {
                r.error_code = to_kafka(header.error);
                if header.error != ErrorCode::None {
                    r.error_message = header.message.map(StrBytes::from_string);
                }
            }
            None => r.error_code = code::UNKNOWN_SERVER_ERROR,
        }
        response.responses.push(r);
    }
    encoded(&response, version)
}
