//! Kafka's classic consumer-group protocol against the real binary: FindCoordinator, the
//! MEMBER_ID_REQUIRED round trip, two members in one generation (the leader gets every
//! member's metadata and its assignments are relayed through SyncGroup), heartbeats, a
//! third join's rebalance, LeaveGroup, OffsetCommit/OffsetFetch, a stale generation's
//! commit refused, ListGroups/DescribeGroups, DeleteGroups, offsets across SIGKILL, and a
//! native and a Kafka group under one name refusing each other.

mod common;

use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use common::kafka::{topic, KafkaConn};
use common::Node;
use kafka_protocol::messages::join_group_request::JoinGroupRequestProtocol;
use kafka_protocol::messages::leave_group_request::MemberIdentity;
use kafka_protocol::messages::offset_commit_request::{OffsetCommitRequestPartition, OffsetCommitRequestTopic};
use kafka_protocol::messages::offset_fetch_request::{OffsetFetchRequestGroup, OffsetFetchRequestTopics};
use kafka_protocol::messages::sync_group_request::SyncGroupRequestAssignment;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;
use strand_wire::msg::{JoinGroupRequest as NativeJoin, Request};
use strand_wire::ErrorCode;

const GROUP: &str = "kgroup";
const TOPIC: &str = "kg";

fn s(text: &str) -> StrBytes {
    StrBytes::from_string(text.to_string())
}

/// A consumer's subscription metadata (ConsumerProtocolSubscription v0: version, topics,
/// null user data).
fn subscription(topics: &[&str]) -> Bytes {
    let mut b = BytesMut::new();
    b.put_i16(0);
    b.put_i32(topics.len() as i32);
    for t in topics {
        b.put_i16(t.len() as i16);
        b.put_slice(t.as_bytes());
    }
    b.put_i32(-1);
    b.freeze()
}

fn join_request(group: &str, member_id: &str) -> JoinGroupRequest {
    let mut p = JoinGroupRequestProtocol::default();
    p.name = s("range");
    p.metadata = subscription(&[TOPIC]);
    let mut req = JoinGroupRequest::default();
    req.group_id = GroupId(s(group));
    req.session_timeout_ms = 10_000;
    req.rebalance_timeout_ms = 10_000;
    req.member_id = s(member_id);
    req.protocol_type = s("consumer");
    req.protocols = vec![p];
    req
}

/// JoinGroup v5 without a member id: MEMBER_ID_REQUIRED and the id to rejoin with.
fn member_id(conn: &mut KafkaConn, group: &str) -> String {
    let first: JoinGroupResponse = conn.call(ApiKey::JoinGroup, 5, &join_request(group, ""));
    assert_eq!(first.error_code, 79, "MEMBER_ID_REQUIRED");
    assert!(!first.member_id.is_empty());
    first.member_id.to_string()
}

fn sync_request(generation: i32, member: &str, assignments: &[(&str, &[u8])]) -> SyncGroupRequest {
    let mut req = SyncGroupRequest::default();
    req.group_id = GroupId(s(GROUP));
    req.generation_id = generation;
    req.member_id = s(member);
    req.protocol_type = Some(s("consumer"));
    req.protocol_name = Some(s("range"));
    req.assignments = assignments
        .iter()
        .map(|(id, bytes)| {
            let mut a = SyncGroupRequestAssignment::default();
            a.member_id = s(id);
            a.assignment = Bytes::copy_from_slice(bytes);
            a
        })
        .collect();
    req
}

fn heartbeat(conn: &mut KafkaConn, generation: i32, member: &str) -> i16 {
    let mut req = HeartbeatRequest::default();
    req.group_id = GroupId(s(GROUP));
    req.generation_id = generation;
    req.member_id = s(member);
    let resp: HeartbeatResponse = conn.call(ApiKey::Heartbeat, 4, &req);
    resp.error_code
}

/// Heartbeats until the group says REBALANCE_IN_PROGRESS (a join on another connection
/// reaches the coordinator a moment later); panics after 10 s.
fn wait_rebalance(conn: &mut KafkaConn, generation: i32, member: &str) {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while heartbeat(conn, generation, member) != 27 {
        assert!(std::time::Instant::now() < deadline, "no REBALANCE_IN_PROGRESS for {member}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn commit(conn: &mut KafkaConn, group: &str, generation: i32, member: &str, offsets: &[(i32, i64)]) -> Vec<i16> {
    let mut t = OffsetCommitRequestTopic::default();
    t.name = topic(TOPIC);
    for (partition, offset) in offsets {
        let mut p = OffsetCommitRequestPartition::default();
        p.partition_index = *partition;
        p.committed_offset = *offset;
        p.committed_leader_epoch = -1;
        p.committed_metadata = Some(s("m"));
        t.partitions.push(p);
    }
    let mut req = OffsetCommitRequest::default();
    req.group_id = GroupId(s(group));
    req.generation_id_or_member_epoch = generation;
    req.member_id = s(member);
    req.retention_time_ms = -1;
    req.topics = vec![t];
    let resp: OffsetCommitResponse = conn.call(ApiKey::OffsetCommit, 8, &req);
    resp.topics[0].partitions.iter().map(|p| p.error_code).collect()
}

/// OffsetFetch v8 of `partitions` of the topic: `(partition, offset)` (-1: none).
fn fetch(conn: &mut KafkaConn, group: &str, partitions: &[i32]) -> Vec<(i32, i64)> {
    let mut t = OffsetFetchRequestTopics::default();
    t.name = topic(TOPIC);
    t.partition_indexes = partitions.to_vec();
    let mut g = OffsetFetchRequestGroup::default();
    g.group_id = GroupId(s(group));
    g.topics = Some(vec![t]);
    let mut req = OffsetFetchRequest::default();
    req.groups = vec![g];
    let resp: OffsetFetchResponse = conn.call(ApiKey::OffsetFetch, 8, &req);
    assert_eq!(resp.groups[0].error_code, 0);
    resp.groups[0]
        .topics
        .iter()
        .flat_map(|t| t.partitions.iter().map(|p| (p.partition_index, p.committed_offset)))
        .collect()
}

fn describe(conn: &mut KafkaConn, group: &str) -> describe_groups_response::DescribedGroup {
    let mut req = DescribeGroupsRequest::default();
    req.groups = vec![GroupId(s(group))];
    let resp: DescribeGroupsResponse = conn.call(ApiKey::DescribeGroups, 5, &req);
    resp.groups.into_iter().next().unwrap()
}

#[test]
fn two_kafka_members_share_a_generation_relay_assignments_commit_and_leave() {
    let dir = tempfile::tempdir().unwrap();
    let node = Node::start(dir.path(), 2, &[]);
    let kafka = node.kafka.unwrap();
    assert_eq!(node.client().create_topic(TOPIC, 4).error, ErrorCode::None);
    let mut admin = KafkaConn::connect(kafka);

    // FindCoordinator: this node's Kafka address, one key (v1) or batched (v4).
    let mut find = FindCoordinatorRequest::default();
    find.key = s(GROUP);
    let one: FindCoordinatorResponse = admin.call(ApiKey::FindCoordinator, 1, &find);
    assert_eq!((one.error_code, one.host.as_str(), one.port), (0, "127.0.0.1", i32::from(kafka.port())));
    find.key = StrBytes::default();
    find.coordinator_keys = vec![s(GROUP), s("")];
    let batched: FindCoordinatorResponse = admin.call(ApiKey::FindCoordinator, 4, &find);
    assert_eq!(batched.coordinators[0].port, i32::from(kafka.port()));
    assert_eq!(batched.coordinators[1].error_code, 24, "INVALID_GROUP_ID");

    // A joins alone: generation 1, A leads; its sync makes the group Stable.
    let (mut a, mut b) = (KafkaConn::connect(kafka), KafkaConn::connect(kafka));
    let id_a = member_id(&mut a, GROUP);
    let joined: JoinGroupResponse = a.call(ApiKey::JoinGroup, 5, &join_request(GROUP, &id_a));
    assert_eq!((joined.error_code, joined.generation_id, joined.leader.as_str()), (0, 1, id_a.as_str()));
    let synced: SyncGroupResponse = a.call(ApiKey::SyncGroup, 5, &sync_request(1, &id_a, &[(&id_a, b"all")]));
    assert_eq!((synced.error_code, &synced.assignment[..]), (0, &b"all"[..]));

    // B joins: the group rebalances; A learns it from its heartbeat and rejoins.
    let id_b = member_id(&mut b, GROUP);
    let b_join = b.send(ApiKey::JoinGroup, 5, &join_request(GROUP, &id_b));
    wait_rebalance(&mut a, 1, &id_a);
    let a_joined: JoinGroupResponse = a.call(ApiKey::JoinGroup, 5, &join_request(GROUP, &id_a));
    let b_joined: JoinGroupResponse = b.receive(ApiKey::JoinGroup, 5, b_join);
    assert_eq!((a_joined.error_code, b_joined.error_code), (0, 0));
    assert_eq!((a_joined.generation_id, b_joined.generation_id), (2, 2));
    assert_eq!(a_joined.leader.as_str(), id_a, "the leader stays leader");
    assert_eq!(a_joined.protocol_name.as_ref().map(|p| p.as_str()), Some("range"));
    let mut metadata: Vec<(String, Bytes)> =
        a_joined.members.iter().map(|m| (m.member_id.to_string(), m.metadata.clone())).collect();
    metadata.sort();
    let mut expect = vec![(id_a.clone(), subscription(&[TOPIC])), (id_b.clone(), subscription(&[TOPIC]))];
    expect.sort();
    assert_eq!(metadata, expect, "the leader gets every member's metadata");
    assert!(b_joined.members.is_empty(), "a follower gets none");

    // B's sync waits for the leader's; then each gets exactly its own assignment.
    let b_sync = b.send(ApiKey::SyncGroup, 5, &sync_request(2, &id_b, &[]));
    let a_synced: SyncGroupResponse =
        a.call(ApiKey::SyncGroup, 5, &sync_request(2, &id_a, &[(&id_a, b"a:0,1"), (&id_b, b"b:2,3")]));
    let b_synced: SyncGroupResponse = b.receive(ApiKey::SyncGroup, 5, b_sync);
    assert_eq!((a_synced.error_code, &a_synced.assignment[..]), (0, &b"a:0,1"[..]));
    assert_eq!((b_synced.error_code, &b_synced.assignment[..]), (0, &b"b:2,3"[..]));
    assert_eq!((heartbeat(&mut a, 2, &id_a), heartbeat(&mut b, 2, &id_b)), (0, 0));

    // Commits of the current generation land (any partition: no server-side ownership);
    // a stale generation's are refused; OffsetFetch v8 and v5 read them back.
    assert_eq!(commit(&mut a, GROUP, 2, &id_a, &[(0, 10), (3, 30)]), vec![0, 0]);
    assert_eq!(commit(&mut b, GROUP, 1, &id_b, &[(2, 99)]), vec![22], "ILLEGAL_GENERATION");
    assert_eq!(commit(&mut b, GROUP, 2, "intruder", &[(2, 99)]), vec![25], "UNKNOWN_MEMBER_ID");
    assert_eq!(fetch(&mut admin, GROUP, &[0, 2, 3]), vec![(0, 10), (2, -1), (3, 30)]);
    let mut old = OffsetFetchRequest::default();
    old.group_id = GroupId(s(GROUP));
    old.topics = None;
    let all: OffsetFetchResponse = admin.call(ApiKey::OffsetFetch, 5, &old);
    assert_eq!(all.topics[0].partitions.len(), 2, "v5, all committed partitions");

    // ListGroups and DescribeGroups show the group as Kafka sees it.
    let listed: ListGroupsResponse = admin.call(ApiKey::ListGroups, 4, &ListGroupsRequest::default());
    let g = listed.groups.iter().find(|g| g.group_id.as_str() == GROUP).expect("listed");
    assert_eq!((g.protocol_type.as_str(), g.group_state.as_str()), ("consumer", "Stable"));
    let d = describe(&mut admin, GROUP);
    assert_eq!((d.error_code, d.group_state.as_str(), d.protocol_type.as_str()), (0, "Stable", "consumer"));
    assert_eq!(d.protocol_data.as_str(), "range");
    let mut assigned: Vec<(String, Bytes)> =
        d.members.iter().map(|m| (m.member_id.to_string(), m.member_assignment.clone())).collect();
    assigned.sort();
    assert!(assigned.contains(&(id_b.clone(), Bytes::from_static(b"b:2,3"))));
    // `/v1/groups` (refreshed every second): the group, named by its protocol.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let (status, body) = node.admin_get("/v1/groups");
        assert_eq!(status, 200);
        if body.contains(GROUP) && body.contains("consumer/range") {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "/v1/groups never showed the Kafka group: {body}");
        std::thread::sleep(Duration::from_millis(100));
    }

    // A third member's join starts a rebalance; the others' heartbeats say so.
    let mut c = KafkaConn::connect(kafka);
    let id_c = member_id(&mut c, GROUP);
    let c_join = c.send(ApiKey::JoinGroup, 5, &join_request(GROUP, &id_c));
    wait_rebalance(&mut b, 2, &id_b);

    // A and B leave (one v5 request): C's parked join completes generation 3 alone.
    let mut leave = LeaveGroupRequest::default();
    leave.group_id = GroupId(s(GROUP));
    leave.members = [&id_a, &id_b]
        .iter()
        .map(|id| {
            let mut m = MemberIdentity::default();
            m.member_id = s(id);
            m
        })
        .collect();
    let left: LeaveGroupResponse = admin.call(ApiKey::LeaveGroup, 5, &leave);
    assert_eq!(left.members.iter().map(|m| m.error_code).collect::<Vec<_>>(), vec![0, 0]);
    let c_joined: JoinGroupResponse = c.receive(ApiKey::JoinGroup, 5, c_join);
    assert_eq!((c_joined.error_code, c_joined.generation_id, c_joined.leader.as_str()), (0, 3, id_c.as_str()));
    let mut leave_c = LeaveGroupRequest::default();
    leave_c.group_id = GroupId(s(GROUP));
    leave_c.member_id = s(&id_c);
    let left: LeaveGroupResponse = c.call(ApiKey::LeaveGroup, 1, &leave_c);
    assert_eq!(left.error_code, 0);

    // The Empty group (offsets only) is deleted; then it is Dead.
    let mut delete = DeleteGroupsRequest::default();
    delete.groups_names = vec![GroupId(s(GROUP)), GroupId(s("never-was"))];
    let deleted: DeleteGroupsResponse = admin.call(ApiKey::DeleteGroups, 2, &delete);
    assert_eq!(deleted.results.iter().map(|r| r.error_code).collect::<Vec<_>>(), vec![0, 69]);
    assert_eq!(describe(&mut admin, GROUP).group_state.as_str(), "Dead");
    assert_eq!(fetch(&mut admin, GROUP, &[0]), vec![(0, -1)]);
}

#[test]
fn kafka_group_offsets_survive_sigkill() {
    let dir = tempfile::tempdir().unwrap();
    let mut node = Node::start(dir.path(), 2, &["--fsync", "always"]);
    assert_eq!(node.client().create_topic(TOPIC, 2).error, ErrorCode::None);
    let mut conn = KafkaConn::connect(node.kafka.unwrap());
    // JoinGroup v3: no member-id round trip.
    let joined: JoinGroupResponse = conn.call(ApiKey::JoinGroup, 3, &join_request("durable", ""));
    assert_eq!(joined.error_code, 0);
    let id = joined.member_id.to_string();
    let synced: SyncGroupResponse = conn.call(ApiKey::SyncGroup, 3, &{
        let mut r = sync_request(joined.generation_id, &id, &[(&id, b"x")]);
        r.group_id = GroupId(s("durable"));
        r
    });
    assert_eq!(synced.error_code, 0);
    assert_eq!(commit(&mut conn, "durable", joined.generation_id, &id, &[(0, 7), (1, 8)]), vec![0, 0]);
    node.signal_and_wait(libc::SIGKILL, Duration::from_secs(10));
    drop(node);

    let node = Node::start(dir.path(), 2, &["--fsync", "always"]);
    let mut conn = KafkaConn::connect(node.kafka.unwrap());
    assert_eq!(fetch(&mut conn, "durable", &[0, 1]), vec![(0, 7), (1, 8)]);
}

#[test]
fn a_native_and_a_kafka_group_of_one_name_refuse_each_other() {
    let dir = tempfile::tempdir().unwrap();
    let node = Node::start(dir.path(), 2, &[]);
    assert_eq!(node.client().create_topic(TOPIC, 2).error, ErrorCode::None);
    let mut conn = KafkaConn::connect(node.kafka.unwrap());
    let joined: JoinGroupResponse = conn.call(ApiKey::JoinGroup, 3, &join_request("kafka-first", ""));
    assert_eq!(joined.error_code, 0);

    // A native member joining the Kafka group is refused, and the reverse.
    let native = |group: &str| {
        Request::JoinGroup(NativeJoin {
            group_id: group.into(),
            member_id: String::new(),
            client_id: "native".into(),
            session_timeout_ms: 10_000,
            rebalance_timeout_ms: 10_000,
            topics: vec![TOPIC.into()],
            assignor: Default::default(),
        })
    };
    let (header, _) = node.client().call(native("kafka-first"), &[]);
    assert_eq!(header.error, ErrorCode::InconsistentGroupProtocol);
    let (header, _) = node.client().call(native("native-first"), &[]);
    assert_eq!(header.error, ErrorCode::None);
    let refused: JoinGroupResponse = conn.call(ApiKey::JoinGroup, 3, &join_request("native-first", ""));
    assert_eq!(refused.error_code, 23, "INCONSISTENT_GROUP_PROTOCOL");
    // A Kafka sync or a native one to a group of the other kind is refused too.
    let mut sync = sync_request(1, "x", &[]);
    sync.group_id = GroupId(s("native-first"));
    let resp: SyncGroupResponse = conn.call(ApiKey::SyncGroup, 5, &sync);
    assert_ne!(resp.error_code, 0);
}
