//! Kafka's classic consumer-group APIs, served by the node's group coordinator (the same
//! one native clients use, see `crate::groups`): FindCoordinator, JoinGroup, SyncGroup,
//! Heartbeat, LeaveGroup, OffsetCommit, OffsetFetch, ListGroups, DescribeGroups and
//! DeleteGroups.
//!
//! A Kafka member joins in the coordinator's *Kafka mode* (client-side assignment: the
//! coordinator picks a protocol, elects a leader, hands it every member's metadata and
//! relays its assignments); a group is Kafka or native according to its first member, and
//! a member of the other kind is refused `INCONSISTENT_GROUP_PROTOCOL`. Committed offsets
//! go to the same `__consumer_offsets` records as native ones.
//!
//! Every field is hostile: group ids, member ids, protocol lists, metadata and assignment
//! sizes are bounded by the coordinator (`strand_core::group`'s limits); negative
//! timeouts, partitions, offsets and generations are refused here with the error a Kafka
//! broker gives; static membership (`group_instance_id`) is refused, as the node does not
//! keep it.

use bytes::Bytes;
use kafka_protocol::messages::delete_groups_response::DeletableGroupResult;
use kafka_protocol::messages::describe_groups_response::{DescribedGroup, DescribedGroupMember};
use kafka_protocol::messages::find_coordinator_response::Coordinator;
use kafka_protocol::messages::join_group_response::JoinGroupResponseMember;
use kafka_protocol::messages::leave_group_response::MemberResponse;
use kafka_protocol::messages::list_groups_response::ListedGroup;
use kafka_protocol::messages::offset_commit_response::{OffsetCommitResponsePartition, OffsetCommitResponseTopic};
use kafka_protocol::messages::offset_fetch_response::{
    OffsetFetchResponseGroup, OffsetFetchResponsePartition, OffsetFetchResponsePartitions, OffsetFetchResponseTopic,
    OffsetFetchResponseTopics,
};
use kafka_protocol::messages::{
    BrokerId, ConsumerProtocolSubscription, DeleteGroupsRequest, DeleteGroupsResponse, DescribeGroupsRequest,
    DescribeGroupsResponse, FindCoordinatorRequest, FindCoordinatorResponse, GroupId, HeartbeatRequest,
    HeartbeatResponse, JoinGroupRequest, JoinGroupResponse, LeaveGroupRequest, LeaveGroupResponse, ListGroupsRequest,
    ListGroupsResponse, OffsetCommitRequest, OffsetCommitResponse, OffsetFetchRequest, OffsetFetchResponse,
    SyncGroupRequest, SyncGroupResponse,
};
use kafka_protocol::protocol::{Decodable, StrBytes};
use strand_core::group::{JoinInput, KafkaJoin, KafkaProtocol, KafkaSyncInput, GROUP_ID_LEN_MAX};
use strand_wire::msg::{self as native, Assignor, CommittedOffset, Request, Response, TopicPartition};
use strand_wire::ErrorCode;

use super::apis::{encoded, group_refused, message, topic_refused, Answer, Ctx};
use super::codes::{kafka as code, to_kafka};
use crate::control::ChainRecord;
use crate::groups::{coordinator_of, GroupCall, GroupReply, KafkaAnswer, OFFSETS_TOPIC};
use crate::shard::Shard;
use strand_core::auth::acl::Operation;

/// Groups one FindCoordinator, DescribeGroups, DeleteGroups or OffsetFetch (v8) request
/// may name; more is refused whole (`INVALID_REQUEST`).
pub const GROUPS_PER_REQUEST_MAX: usize = 1000;
/// Kafka's protocol type for consumers: its metadata is a `ConsumerProtocolSubscription`.
const CONSUMER: &str = "consumer";

fn group_name(id: &GroupId) -> String {
    id.0.as_str().to_string()
}

fn text(s: &str) -> StrBytes {
    StrBytes::from_string(s.to_string())
}

fn kafka_code(reply: &GroupReply) -> i16 {
    to_kafka(reply.error)
}

/// FindCoordinator v0-4 (key type 0, groups; v4 batches keys). The coordinator is this
/// node, or in cluster mode the head of the group's `__consumer_offsets` partition.
pub(super) async fn find_coordinator(shard: &Ctx, version: i16, req: FindCoordinatorRequest) -> Answer {
    let keys: Vec<StrBytes> = if version >= 4 { req.coordinator_keys.clone() } else { vec![req.key.clone()] };
    let mut response = FindCoordinatorResponse::default();
    if keys.len() > GROUPS_PER_REQUEST_MAX {
        return Err(format!("kafka: FindCoordinator names {} keys (at most {GROUPS_PER_REQUEST_MAX})", keys.len()));
    }
    for key in keys {
        let mut c = Coordinator::default();
        c.key = key.clone();
        c.node_id = BrokerId(-1);
        c.port = -1;
        let found = match req.key_type {
            0 => match group_refused(shard, Operation::Describe, key.as_str()) {
                Some(refused) => Err((refused, "not authorized: describe on this group is missing")),
                None => locate(shard, key.as_str()),
            },
            _ => Err((code::INVALID_REQUEST, "only group coordinators (key type 0): this node has no transactions")),
        };
        match found {
            Ok((node, host, port)) => {
                (c.node_id, c.host, c.port) = (BrokerId(node as i32), text(&host), i32::from(port))
            }
            Err((error, why)) => (c.error_code, c.error_message) = (error, message(why)),
        }
        response.coordinators.push(c);
    }
    if version < 4 {
        let c = response.coordinators.pop().unwrap_or_default();
        (response.error_code, response.error_message) = (c.error_code, c.error_message);
        (response.node_id, response.host, response.port) = (c.node_id, c.host, c.port);
    }
    encoded(&response, version)
}

/// The Kafka address of the coordinator of `group`: `(node id, host, port)`.
fn locate(shard: &Shard, group: &str) -> Result<(u32, String, u16), (i16, &'static str)> {
    if group.is_empty() || group.len() > GROUP_ID_LEN_MAX {
        return Err((code::INVALID_GROUP_ID, "empty or overlong group id"));
    }
    let config = &shard.shared.config;
    let own_port = shard.shared.ports.get().and_then(|p| p.kafka).unwrap_or(0);
    let Some(cluster) = shard.cluster() else { return Ok((config.node_id, config.advertise_host.clone(), own_port)) };
    let view = cluster.control.latest();
    if !view.topics.contains_key(OFFSETS_TOPIC) {
        // The first group request creates it (see `shard/groups/cluster.rs`); until then
        // this node answers and refuses with COORDINATOR_NOT_AVAILABLE, which clients retry.
        return Ok((config.node_id, config.advertise_host.clone(), own_port));
    }
    let (partition, _) = coordinator_of(group, shard.groups.offsets_partitions(), shard.shard_count());
    let head = view.chain(OFFSETS_TOPIC, partition).and_then(ChainRecord::head);
    let node = head.and_then(|h| view.nodes.get(&h));
    match node {
        Some(n) if n.kafka_port != 0 => Ok((n.node_id, n.host.clone(), n.kafka_port)),
        Some(_) => Err((code::COORDINATOR_NOT_AVAILABLE, "the coordinator node has no Kafka listener")),
        None => Err((code::COORDINATOR_NOT_AVAILABLE, "the group's offsets partition has no head yet")),
    }
}

/// Topics of a consumer's subscription metadata (`ConsumerProtocolSubscription`, any
/// version); nothing for other protocol types or metadata that does not decode.
fn subscribed_topics(protocol_type: &str, metadata: &Bytes) -> Vec<String> {
    if protocol_type != CONSUMER {
        return Vec::new();
    }
    let mut buf = metadata.clone();
    if buf.len() < 2 {
        return Vec::new();
    }
    let version = i16::from_be_bytes([buf[0], buf[1]]);
    let _ = bytes::Buf::get_i16(&mut buf);
    // Newer versions only add fields at the end: read them as the newest one known.
    let version = version.clamp(0, 3);
    match ConsumerProtocolSubscription::decode(&mut buf, version) {
        Ok(s) => {
            s.topics.iter().map(|t| t.as_str().to_string()).take(strand_core::group::TOPICS_PER_MEMBER_MAX).collect()
        }
        Err(_) => Vec::new(),
    }
}

/// JoinGroup v0-9 (v4+: a first join gets MEMBER_ID_REQUIRED and a member id).
pub(super) async fn join_group(shard: &Ctx, client_id: &str, version: i16, req: JoinGroupRequest) -> Answer {
    let mut response = JoinGroupResponse::default();
    response.generation_id = -1;
    response.member_id = req.member_id.clone();
    if let Some(refused) = group_refused(shard, Operation::Read, req.group_id.0.as_str()) {
        response.error_code = refused;
        return encoded(&response, version);
    }
    let session = u32::try_from(req.session_timeout_ms);
    // v0 has no rebalance timeout: Kafka uses the session timeout.
    let rebalance = if version == 0 { session } else { u32::try_from(req.rebalance_timeout_ms) };
    let (Ok(session_timeout_ms), Ok(rebalance_timeout_ms)) = (session, rebalance) else {
        response.error_code = code::INVALID_SESSION_TIMEOUT;
        return encoded(&response, version);
    };
    if req.group_instance_id.is_some() {
        response.error_code = code::INVALID_REQUEST;
        return encoded(&response, version);
    }
    let protocol_type = req.protocol_type.as_str().to_string();
    let topics = req.protocols.first().map(|p| subscribed_topics(&protocol_type, &p.metadata)).unwrap_or_default();
    let protocols = req
        .protocols
        .iter()
        .map(|p| KafkaProtocol { name: p.name.as_str().to_string(), metadata: p.metadata.to_vec() })
        .collect();
    let input = JoinInput {
        group_id: group_name(&req.group_id),
        member_id: req.member_id.as_str().to_string(),
        client_id: client_id.chars().take(strand_core::group::CLIENT_ID_LEN_MAX).collect(),
        session_timeout_ms,
        rebalance_timeout_ms,
        topics,
        assignor: Assignor::Range,
        kafka: Some(KafkaJoin { protocol_type: protocol_type.clone(), protocols, member_id_required: version >= 4 }),
    };
    let reply = shard.group_call(GroupCall::KafkaJoin(input)).await;
    response.error_code = kafka_code(&reply);
    match reply.kafka {
        Some(KafkaAnswer::Join(joined)) => {
            response.generation_id = i32::try_from(joined.generation).unwrap_or(i32::MAX);
            response.protocol_type = Some(text(&protocol_type));
            response.protocol_name = joined.protocol.as_deref().map(text);
            response.leader = text(&joined.leader_member_id);
            response.member_id = text(&joined.member_id);
            response.members = joined
                .member_metadata
                .into_iter()
                .map(|(id, metadata)| {
                    let mut m = JoinGroupResponseMember::default();
                    m.member_id = text(&id);
                    m.metadata = Bytes::from(metadata);
                    m
                })
                .collect();
        }
        Some(KafkaAnswer::MemberId(member_id)) => response.member_id = text(&member_id),
        _ => {}
    }
    encoded(&response, version)
}

/// A generation from the wire: Kafka's -1 ("none") and other negatives read as 0, which
/// no group has (generations start at 1).
fn generation(id: i32) -> u32 {
    u32::try_from(id).unwrap_or(0)
}

/// SyncGroup v0-5: the leader's assignments are relayed; a follower's sync waits for them.
pub(super) async fn sync_group(shard: &Ctx, version: i16, req: SyncGroupRequest) -> Answer {
    let mut response = SyncGroupResponse::default();
    if let Some(refused) = group_refused(shard, Operation::Read, req.group_id.0.as_str()) {
        response.error_code = refused;
        return encoded(&response, version);
    }
    if req.group_instance_id.is_some() {
        response.error_code = code::INVALID_REQUEST;
        return encoded(&response, version);
    }
    let input = KafkaSyncInput {
        group_id: group_name(&req.group_id),
        generation: generation(req.generation_id),
        member_id: req.member_id.as_str().to_string(),
        assignments: req
            .assignments
            .iter()
            .map(|a| (a.member_id.as_str().to_string(), a.assignment.to_vec()))
            .collect(),
    };
    let reply = shard.group_call(GroupCall::KafkaSync(input)).await;
    response.error_code = kafka_code(&reply);
    if let Some(KafkaAnswer::Sync(assignment)) = reply.kafka {
        response.protocol_type = req.protocol_type.clone();
        response.protocol_name = req.protocol_name.clone();
        response.assignment = Bytes::from(assignment);
    }
    encoded(&response, version)
}

/// Heartbeat v0-4.
pub(super) async fn heartbeat(shard: &Ctx, version: i16, req: HeartbeatRequest) -> Answer {
    if let Some(refused) = group_refused(shard, Operation::Read, req.group_id.0.as_str()) {
        let mut response = HeartbeatResponse::default();
        response.error_code = refused;
        return encoded(&response, version);
    }
    let request = Request::Heartbeat(native::HeartbeatRequest {
        group_id: group_name(&req.group_id),
        generation: generation(req.generation_id),
        member_id: req.member_id.as_str().to_string(),
    });
    let reply = shard.group_call(GroupCall::Native(request)).await;
    let mut response = HeartbeatResponse::default();
    response.error_code = kafka_code(&reply);
    encoded(&response, version)
}

/// LeaveGroup v0-5 (v3+: a batch of members, each answered).
pub(super) async fn leave_group(shard: &Ctx, version: i16, req: LeaveGroupRequest) -> Answer {
    let group_id = group_name(&req.group_id);
    let mut response = LeaveGroupResponse::default();
    if let Some(refused) = group_refused(shard, Operation::Read, &group_id) {
        response.error_code = refused;
        return encoded(&response, version);
    }
    if version < 3 {
        let reply = leave(shard, &group_id, req.member_id.as_str()).await;
        response.error_code = kafka_code(&reply);
        return encoded(&response, version);
    }
    if req.members.len() > strand_core::group::MEMBERS_PER_GROUP_MAX {
        return Err(format!("kafka: LeaveGroup names {} members", req.members.len()));
    }
    for member in &req.members {
        let mut r = MemberResponse::default();
        r.member_id = member.member_id.clone();
        r.group_instance_id = member.group_instance_id.clone();
        r.error_code = match member.group_instance_id {
            Some(_) => code::UNKNOWN_MEMBER_ID, // static members: none exist here
            None => kafka_code(&leave(shard, &group_id, member.member_id.as_str()).await),
        };
        response.members.push(r);
    }
    encoded(&response, version)
}

async fn leave(shard: &Ctx, group_id: &str, member_id: &str) -> GroupReply {
    let request =
        Request::LeaveGroup(native::LeaveGroupRequest { group_id: group_id.to_string(), member_id: member_id.into() });
    shard.group_call(GroupCall::Native(request)).await
}

/// OffsetCommit v2-8. Generation -1 with an empty member id is a standalone commit (a
/// consumer that assigns itself partitions), as on a Kafka broker.
pub(super) async fn offset_commit(shard: &Ctx, version: i16, req: OffsetCommitRequest) -> Answer {
    let mut offsets = Vec::new();
    let mut answers: Vec<(usize, OffsetCommitResponsePartition, bool)> = Vec::new();
    for (t, topic) in req.topics.iter().enumerate() {
        for p in &topic.partitions {
            let mut r = OffsetCommitResponsePartition::default();
            r.partition_index = p.partition_index;
            let (Ok(partition), Ok(offset)) = (u32::try_from(p.partition_index), u64::try_from(p.committed_offset))
            else {
                r.error_code = code::INVALID_COMMIT_OFFSET_SIZE;
                answers.push((t, r, false));
                continue;
            };
            let metadata = p.committed_metadata.as_ref().map(|m| m.as_str().to_string()).unwrap_or_default();
            offsets.push(CommittedOffset { topic: topic.name.0.as_str().to_string(), partition, offset, metadata });
            answers.push((t, r, true));
        }
    }
    // A commit needs read on the group and on every topic it names; it lands or is
    // refused whole.
    let refused = group_refused(shard, Operation::Read, req.group_id.0.as_str())
        .or_else(|| offsets.iter().find_map(|o| topic_refused(shard, Operation::Read, &o.topic)));
    let error = if let Some(refused) = refused {
        refused
    } else if req.group_instance_id.is_some() {
        code::INVALID_REQUEST
    } else if offsets.is_empty() {
        code::NONE
    } else {
        let request = Request::OffsetCommit(native::OffsetCommitRequest {
            group_id: group_name(&req.group_id),
            generation: generation(req.generation_id_or_member_epoch),
            member_id: req.member_id.as_str().to_string(),
            offsets,
        });
        kafka_code(&shard.group_call(GroupCall::Native(request)).await)
    };
    // One commit is one record batch: it lands or is refused whole.
    for (_, r, asked) in answers.iter_mut() {
        if *asked {
            r.error_code = error;
        }
    }
    let mut response = OffsetCommitResponse::default();
    response.topics = req
        .topics
        .iter()
        .zip(super::apis::per_topic(req.topics.len(), answers.into_iter().map(|(t, r, _)| (t, r))))
        .map(|(topic, partitions)| {
            let mut out = OffsetCommitResponseTopic::default();
            out.name = topic.name.clone();
            out.partitions = partitions;
            out
        })
        .collect();
    encoded(&response, version)
}

/// Committed offsets by topic: `(topic, [(partition, offset or -1, metadata)])`.
type TopicOffsets = Vec<(String, Vec<(i32, i64, String)>)>;

/// One group's committed offsets: `partitions` (`None`: all it has), each with its
/// offset or -1, and the group's error.
async fn fetch_offsets(
    shard: &Ctx,
    group_id: String,
    partitions: Option<Vec<(String, Vec<i32>)>>,
) -> (i16, TopicOffsets) {
    if let Some(refused) = group_refused(shard, Operation::Read, &group_id) {
        return (refused, Vec::new());
    }
    let asked: Vec<TopicPartition> = partitions
        .iter()
        .flatten()
        .flat_map(|(topic, ps)| {
            ps.iter()
                .filter_map(|p| u32::try_from(*p).ok())
                .map(|partition| TopicPartition { topic: topic.clone(), partition })
        })
        .collect();
    let request = Request::OffsetFetch(native::OffsetFetchRequest { group_id, partitions: asked });
    let reply = shard.group_call(GroupCall::Native(request)).await;
    let mut found = match reply.response {
        Response::OffsetFetch(r) if reply.error == ErrorCode::None => r.offsets,
        _ => return (kafka_code(&reply), Vec::new()),
    };
    // Offsets of topics the principal may not read are left out (read as "none committed").
    found.retain(|c| topic_refused(shard, Operation::Read, &c.topic).is_none());
    let committed = |topic: &str, p: i32| {
        found
            .iter()
            .find(|c| c.topic == topic && i64::from(c.partition) == i64::from(p))
            .map_or((p, -1, String::new()), |c| (p, i64::try_from(c.offset).unwrap_or(i64::MAX), c.metadata.clone()))
    };
    let out = match partitions {
        Some(topics) => topics
            .into_iter()
            .map(|(topic, ps)| {
                let parts = ps.iter().map(|p| committed(&topic, *p)).collect();
                (topic, parts)
            })
            .collect(),
        None => {
            let mut by_topic: TopicOffsets = Vec::new();
            for c in &found {
                let entry = (c.partition as i32, i64::try_from(c.offset).unwrap_or(i64::MAX), c.metadata.clone());
                match by_topic.iter_mut().find(|(t, _)| *t == c.topic) {
                    Some((_, parts)) => parts.push(entry),
                    None => by_topic.push((c.topic.clone(), vec![entry])),
                }
            }
            by_topic
        }
    };
    (code::NONE, out)
}

/// OffsetFetch v1-8 (v8: several groups per request).
pub(super) async fn offset_fetch(shard: &Ctx, version: i16, req: OffsetFetchRequest) -> Answer {
    let mut response = OffsetFetchResponse::default();
    if version < 8 {
        let topics = req.topics.as_ref().map(|ts| {
            ts.iter().map(|t| (t.name.0.as_str().to_string(), t.partition_indexes.clone())).collect::<Vec<_>>()
        });
        let (error, found) = fetch_offsets(shard, group_name(&req.group_id), topics).await;
        response.error_code = error;
        response.topics = found
            .into_iter()
            .map(|(topic, parts)| {
                let mut t = OffsetFetchResponseTopic::default();
                t.name = super::apis::topic_name(&topic);
                t.partitions = parts
                    .into_iter()
                    .map(|(p, offset, metadata)| {
                        let mut r = OffsetFetchResponsePartition::default();
                        r.partition_index = p;
                        r.committed_offset = offset;
                        r.committed_leader_epoch = -1;
                        r.metadata = Some(text(&metadata));
                        r.error_code = error;
                        r
                    })
                    .collect();
                t
            })
            .collect();
        return encoded(&response, version);
    }
    if req.groups.len() > GROUPS_PER_REQUEST_MAX {
        return Err(format!("kafka: OffsetFetch names {} groups", req.groups.len()));
    }
    for group in &req.groups {
        let topics = group.topics.as_ref().map(|ts| {
            ts.iter().map(|t| (t.name.0.as_str().to_string(), t.partition_indexes.clone())).collect::<Vec<_>>()
        });
        let (error, found) = fetch_offsets(shard, group_name(&group.group_id), topics).await;
        let mut g = OffsetFetchResponseGroup::default();
        g.group_id = group.group_id.clone();
        g.error_code = error;
        g.topics = found
            .into_iter()
            .map(|(topic, parts)| {
                let mut t = OffsetFetchResponseTopics::default();
                t.name = super::apis::topic_name(&topic);
                t.partitions = parts
                    .into_iter()
                    .map(|(p, offset, metadata)| {
                        let mut r = OffsetFetchResponsePartitions::default();
                        r.partition_index = p;
                        r.committed_offset = offset;
                        r.committed_leader_epoch = -1;
                        r.metadata = Some(text(&metadata));
                        r
                    })
                    .collect();
                t
            })
            .collect();
        response.groups.push(g);
    }
    encoded(&response, version)
}

/// ListGroups v0-4 (v4: filter by state). Native groups list with protocol type "" as
/// Kafka lists groups of other kinds.
pub(super) async fn list_groups(shard: &Ctx, version: i16, req: ListGroupsRequest) -> Answer {
    let reply = shard.group_call(GroupCall::Native(Request::ListGroups)).await;
    let mut response = ListGroupsResponse::default();
    response.error_code = kafka_code(&reply);
    if let Response::ListGroups(list) = reply.response {
        let wanted =
            |state: &str| req.states_filter.is_empty() || req.states_filter.iter().any(|s| s.as_str() == state);
        let describable = |id: &str| {
            let target = strand_core::auth::acl::Target::Named(strand_core::auth::acl::Kind::Group, id);
            shard.access.check(&shard.shared.security, Operation::Describe, target).is_ok()
        };
        for g in list.groups.into_iter().filter(|g| wanted(&g.state) && describable(&g.group_id)) {
            // The native listing has no protocol type: ask each group's coordinator.
            let described = shard.group_call(GroupCall::KafkaDescribe(g.group_id.clone())).await;
            let protocol_type = match described.kafka {
                Some(KafkaAnswer::Describe(Some(view))) => view.protocol_type.unwrap_or_default(),
                _ => String::new(),
            };
            let mut l = ListedGroup::default();
            l.group_id = GroupId(text(&g.group_id));
            l.protocol_type = text(&protocol_type);
            l.group_state = text(&g.state);
            l.group_type = text("classic");
            response.groups.push(l);
        }
    }
    encoded(&response, version)
}

/// DescribeGroups v0-5.
pub(super) async fn describe_groups(shard: &Ctx, version: i16, req: DescribeGroupsRequest) -> Answer {
    if req.groups.len() > GROUPS_PER_REQUEST_MAX {
        return Err(format!("kafka: DescribeGroups names {} groups", req.groups.len()));
    }
    let mut response = DescribeGroupsResponse::default();
    for id in &req.groups {
        let mut d = DescribedGroup::default();
        d.group_id = id.clone();
        d.group_state = text("Dead");
        d.authorized_operations = i32::MIN; // Kafka's "not asked / not known"
        if let Some(refused) = group_refused(shard, Operation::Describe, id.0.as_str()) {
            d.error_code = refused;
            response.groups.push(d);
            continue;
        }
        let reply = shard.group_call(GroupCall::KafkaDescribe(group_name(id))).await;
        d.error_code = kafka_code(&reply);
        if let Some(KafkaAnswer::Describe(Some(view))) = reply.kafka {
            d.group_state = text(view.state.name());
            d.protocol_type = text(view.protocol_type.as_deref().unwrap_or(""));
            d.protocol_data = text(view.protocol.as_deref().unwrap_or(""));
            d.members = view
                .members
                .into_iter()
                .map(|m| {
                    let mut out = DescribedGroupMember::default();
                    out.member_id = text(&m.member_id);
                    out.client_id = text(&m.client_id);
                    out.member_metadata = Bytes::from(m.protocol_metadata);
                    out.member_assignment = Bytes::from(m.kafka_assignment);
                    out
                })
                .collect();
        }
        response.groups.push(d);
    }
    encoded(&response, version)
}

/// DeleteGroups v0-2: each group must be Empty.
pub(super) async fn delete_groups(shard: &Ctx, version: i16, req: DeleteGroupsRequest) -> Answer {
    if req.groups_names.len() > GROUPS_PER_REQUEST_MAX {
        return Err(format!("kafka: DeleteGroups names {} groups", req.groups_names.len()));
    }
    let mut response = DeleteGroupsResponse::default();
    for id in &req.groups_names {
        let mut r = DeletableGroupResult::default();
        r.group_id = id.clone();
        if let Some(refused) = group_refused(shard, Operation::Admin, id.0.as_str()) {
            r.error_code = refused;
            response.results.push(r);
            continue;
        }
        let request = Request::DeleteGroup(native::DeleteGroupRequest { group_id: group_name(id) });
        let reply = shard.group_call(GroupCall::Native(request)).await;
        r.error_code = kafka_code(&reply);
        response.results.push(r);
    }
    encoded(&response, version)
}
