//! Authentication and authorization against the real binary (issue 20): SASL SCRAM on the
//! native port (with the SCRAM client of `strand_core`'s tests) and on the Kafka port
//! (kcat with SCRAM-SHA-256, confluent-kafka with SCRAM-SHA-512), `--require-auth`
//! refusing requests before authentication, a read-only user refused a produce with the
//! missing permission named, users surviving a restart, a missing superuser password
//! refused at start, the password never in the node's log or `/v1/*`, and (cluster mode)
//! users and ACLs kept in etcd so every node knows every user.

mod common;

use std::io::Write;
use std::net::SocketAddr;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use common::etcd::Etcd;
use common::kafka::KafkaConn;
use common::{batch1, Client, Node};
use kafka_protocol::messages::{
    ApiKey, MetadataRequest as KafkaMetadataRequest, SaslAuthenticateRequest, SaslAuthenticateResponse,
    SaslHandshakeRequest, SaslHandshakeResponse,
};
use kafka_protocol::protocol::StrBytes;
use strand_core::auth::scram::test_client;
use strand_core::auth::ScramMechanism;
use strand_wire::msg::*;
use strand_wire::ErrorCode;

const PASSWORD: &str = "S3cret-Pw-4711";
const READER_PASSWORD: &str = "Reader-Pw-0815";

fn start(dir: &std::path::Path) -> Node {
    let args = ["--require-auth", "--superuser", "admin"];
    Node::start_env(dir, 2, &args, &[("STRAND_SUPERUSER_PASSWORD", PASSWORD)])
}

/// A native SCRAM exchange on `client`: the final response header (error or success).
fn authenticate(client: &mut Client, m: ScramMechanism, user: &str, password: &str) -> ResponseHeader {
    let step = |bytes: &[u8]| {
        Request::Authenticate(AuthenticateRequest { mechanism: m.name().to_string(), auth_bytes: bytes.to_vec() })
    };
    let first = test_client::first(user, "cNonce123");
    let (header, _) = client.call(step(first.as_bytes()), &[]);
    let Response::Authenticate(challenge) = header.response else { return header };
    let server_first = String::from_utf8(challenge.auth_bytes).unwrap();
    let (last, expected) = test_client::finish(m, password, &first, &server_first);
    let (header, _) = client.call(step(last.as_bytes()), &[]);
    if let Response::Authenticate(done) = &header.response {
        assert_eq!(done.auth_bytes, expected.as_bytes(), "the node proves it holds the verifier");
        assert_eq!(done.principal, user);
    }
    header
}

fn signed_in(node: &Node, user: &str, password: &str) -> Client {
    let mut client = node.client();
    let header = authenticate(&mut client, ScramMechanism::Sha256, user, password);
    assert_eq!(header.error, ErrorCode::None, "{:?}", header.message);
    client
}

fn kcat(broker: SocketAddr, sasl: &[&str], args: &[&str], stdin: &[u8]) -> Output {
    let mut child = Command::new("kcat")
        .arg("-b")
        .arg(broker.to_string())
        .args(sasl)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("kcat is installed (Debian package kcat)");
    child.stdin.take().unwrap().write_all(stdin).unwrap();
    child.wait_with_output().unwrap()
}

fn sasl<'a>(mechanism: &'a str, user: &'a str, password: &'a str) -> Vec<String> {
    ["security.protocol=SASL_PLAINTEXT", &format!("sasl.mechanisms={mechanism}"), &format!("sasl.username={user}")]
        .into_iter()
        .map(String::from)
        .chain([format!("sasl.password={password}")])
        .flat_map(|kv| ["-X".to_string(), kv])
        .collect()
}

fn refs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

/// A user with verifiers for both mechanisms, created over the native port by `admin`.
fn create_user(admin: &mut Client, name: &str, password: &str) {
    let credentials = strand_core::auth::derive_user(password, 4096, b"salt-for-256", b"salt-for-512")
        .unwrap()
        .into_iter()
        .map(|c| ScramCredentialEntry {
            mechanism: c.mechanism.name().to_string(),
            salt: c.salt,
            iterations: c.iterations,
            stored_key: c.stored_key,
            server_key: c.server_key,
        })
        .collect();
    let (h, _) = admin.call(Request::AlterUser(AlterUserRequest::Upsert { name: name.into(), credentials }), &[]);
    assert_eq!(h.error, ErrorCode::None, "{:?}", h.message);
}

/// Adds (or removes) the ACL entry granting `principal` `operation` on `resource` `name`
/// (a prefix when `prefix`); asserts the node accepted it.
fn alter_acl(
    admin: &mut Client,
    add: bool,
    principal: &str,
    resource: AclResource,
    name: &str,
    prefix: bool,
    operation: AclOperation,
) {
    let entry = AclEntry { principal: principal.into(), resource, name: name.into(), prefix, operation };
    let (h, _) = admin.call(Request::AlterAcl(AlterAclRequest { add, entry }), &[]);
    assert_eq!(h.error, ErrorCode::None, "{:?}", h.message);
}

#[test]
fn scram_on_both_protocols_refuses_strangers_and_keeps_secrets_out_of_logs() {
    let dir = tempfile::tempdir().unwrap();
    let node = start(dir.path());
    let kafka = node.kafka.expect("Kafka port");

    // Native, no authentication: the first request is refused and the connection closed.
    let mut stranger = node.client();
    let (h, _) = stranger.call(
        Request::Produce(ProduceRequest {
            acks: Acks::Leader,
            timeout_ms: 1000,
            partitions: vec![ProducePartition { topic: "t".into(), partition: 0, bytes_len: 0 }],
        }),
        &[],
    );
    assert_eq!(h.error, ErrorCode::AuthenticationRequired, "{:?}", h.message);
    assert!(stranger.try_call(Request::ListTopics, &[]).is_err(), "closed after the refusal");

    // Wrong password and unknown user: the same generic refusal.
    for (user, password) in [("admin", "wrong"), ("nobody", PASSWORD)] {
        let mut client = node.client();
        let h = authenticate(&mut client, ScramMechanism::Sha512, user, password);
        assert_eq!(h.error, ErrorCode::AuthenticationFailed);
        assert_eq!(h.message.as_deref(), Some("authentication failed: invalid user name or password"));
    }
    let mut admin = signed_in(&node, "admin", PASSWORD);
    assert_eq!(admin.create_topic("t", 2).error, ErrorCode::None);

    // kcat (librdkafka) with SCRAM-SHA-256: produce, then consume.
    let good = sasl("SCRAM-SHA-256", "admin", PASSWORD);
    let out = kcat(kafka, &refs(&good), &["-P", "-t", "t", "-p", "0"], b"one\ntwo\n");
    assert!(out.status.success(), "kcat produce: {}", String::from_utf8_lossy(&out.stderr));
    let out = kcat(kafka, &refs(&good), &["-C", "-t", "t", "-p", "0", "-e", "-o", "beginning"], b"");
    assert!(out.status.success(), "kcat consume: {}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "one\ntwo\n");

    // kcat with a wrong password, and without SASL: no metadata.
    let bad = sasl("SCRAM-SHA-256", "admin", "not-the-password");
    let out = kcat(kafka, &refs(&bad), &["-L", "-m", "3"], b"");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("invalid user name or password"));
    let out = kcat(kafka, &[], &["-L", "-m", "3"], b"");
    assert!(!out.status.success(), "an unauthenticated Kafka client gets nothing");

    // confluent-kafka (librdkafka 2.x in its wheel) with SCRAM-SHA-512.
    let script = format!(
        r#"
import sys
from confluent_kafka import Producer, Consumer
conf = {{"bootstrap.servers": "{kafka}", "security.protocol": "SASL_PLAINTEXT",
        "sasl.mechanisms": "SCRAM-SHA-512", "sasl.username": "admin", "sasl.password": "{PASSWORD}"}}
p = Producer(conf)
p.produce("t", b"from-python", partition=1)
assert p.flush(15) == 0, "not delivered"
c = Consumer(dict(conf, **{{"group.id": "py", "auto.offset.reset": "earliest"}}))
c.subscribe(["t"])
seen = []
for _ in range(60):
    m = c.poll(0.5)
    if m is not None and m.error() is None:
        seen.append(m.value())
    if b"from-python" in seen:
        break
c.close()
assert b"from-python" in seen, seen
print("ok scram-sha-512")
"#
    );
    let out = Command::new("python3").arg("-c").arg(&script).output().expect("python3 with confluent-kafka");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("ok scram-sha-512"), "python: {stdout}\n{}", String::from_utf8_lossy(&out.stderr));

    // The password is nowhere in the log or the admin API.
    std::thread::sleep(Duration::from_millis(200));
    let log = node.log.lock().unwrap().join("\n");
    assert!(log.contains("authentication failed"), "failures are logged");
    for secret in [PASSWORD, "not-the-password", "wrong"] {
        assert!(!log.contains(secret), "{secret:?} in the node's log");
    }
    for path in ["/v1/topics", "/v1/groups", "/v1/node", "/v1/overview"] {
        assert_eq!(node.admin_get(path).0, 401, "{path} without credentials");
        let (status, body) = admin_get_as(&node, path, "admin", PASSWORD);
        assert_eq!(status, 200, "{path}");
        assert!(!body.contains(PASSWORD) && !body.contains("stored_key"), "a secret in {path}");
        assert_eq!(admin_get_as(&node, path, "admin", "wrong").0, 401, "{path} with a wrong password");
    }
    // Scrapers present no credentials: /health and /metrics stay open.
    assert_eq!(node.admin_get("/health").0, 200);
    assert_eq!(node.admin_get("/metrics").0, 200);
    let log = node.log.lock().unwrap().join("\n");
    assert!(!log.contains(PASSWORD), "the admin HTTP logs no password");
    let (_, metrics) = node.admin_get("/metrics");
    let failures: u64 = metrics
        .lines()
        .filter(|l| l.starts_with("strand_auth_failures_total{"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum();
    assert!(failures >= 3, "failed authentications are counted: {failures}");
}

#[test]
fn a_read_only_user_consumes_and_is_refused_a_produce_with_the_permission_named() {
    let dir = tempfile::tempdir().unwrap();
    let node = start(dir.path());
    let kafka = node.kafka.expect("Kafka port");
    let mut admin = signed_in(&node, "admin", PASSWORD);
    assert_eq!(admin.create_topic("orders", 1).error, ErrorCode::None);
    assert_eq!(admin.create_topic("secret", 1).error, ErrorCode::None);
    assert_eq!(admin.produce("orders", 0, &batch1(b"first")).error, ErrorCode::None);
    create_user(&mut admin, "reader", READER_PASSWORD);
    alter_acl(&mut admin, true, "reader", AclResource::Topic, "ord", true, AclOperation::Read);

    // The admin HTTP: the reader's credentials are good, but it may not describe the cluster.
    let (status, body) = admin_get_as(&node, "/v1/topics", "reader", READER_PASSWORD);
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("describe the cluster"), "{body}");
    alter_acl(&mut admin, true, "reader", AclResource::Cluster, "", false, AclOperation::Describe);
    assert_eq!(
        admin_get_as(&node, "/v1/topics", "reader", READER_PASSWORD).0,
        200,
        "describe on the cluster is enough"
    );
    alter_acl(&mut admin, false, "reader", AclResource::Cluster, "", false, AclOperation::Describe);

    // Native: reads, cannot write, cannot see or read the other topic, cannot manage users.
    let mut reader = signed_in(&node, "reader", READER_PASSWORD);
    assert_eq!(reader.read_all("orders", 0), vec![b"first".to_vec()]);
    let (h, _) = reader.call(
        Request::Produce(ProduceRequest {
            acks: Acks::Leader,
            timeout_ms: 1000,
            partitions: vec![ProducePartition {
                topic: "orders".into(),
                partition: 0,
                bytes_len: batch1(b"x").len() as u32,
            }],
        }),
        &batch1(b"x"),
    );
    assert_eq!(h.error, ErrorCode::TopicAuthorizationFailed);
    assert_eq!(h.message.as_deref(), Some("not authorized: user reader lacks write on topic orders"));
    let (h, _) = reader.call(Request::ListTopics, &[]);
    let Response::ListTopics(list) = h.response else { panic!("{h:?}") };
    assert_eq!(
        list.topics.iter().map(|t| t.name.as_str()).collect::<Vec<_>>(),
        ["orders"],
        "only what it may describe"
    );
    let (h, _) = reader.call(Request::ListUsers, &[]);
    assert_eq!(h.error, ErrorCode::ClusterAuthorizationFailed);
    let join = Request::JoinGroup(JoinGroupRequest {
        group_id: "readers".into(),
        member_id: String::new(),
        client_id: "test".into(),
        session_timeout_ms: 10_000,
        rebalance_timeout_ms: 10_000,
        topics: vec!["orders".into()],
        assignor: Assignor::Range,
    });
    let (h, _) = reader.call(join, &[]);
    assert_eq!(h.error, ErrorCode::GroupAuthorizationFailed, "no ACL on the group");
    assert_eq!(h.message.as_deref(), Some("not authorized: user reader lacks read on group readers"));

    // Kafka (kcat): consumes, and a produce fails with Kafka's TOPIC_AUTHORIZATION_FAILED.
    let creds = sasl("SCRAM-SHA-256", "reader", READER_PASSWORD);
    let out = kcat(kafka, &refs(&creds), &["-C", "-t", "orders", "-p", "0", "-e", "-o", "beginning"], b"");
    assert!(out.status.success(), "kcat consume: {}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "first\n");
    let out = kcat(kafka, &refs(&creds), &["-P", "-t", "orders", "-p", "0"], b"nope\n");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("Topic authorization failed"), "kcat produce as reader: {stderr}");
    assert_eq!(admin.read_all("orders", 0), vec![b"first".to_vec()], "nothing was written");

    // With read on a group prefix, a confluent-kafka consumer group of the reader works
    // end to end (FindCoordinator, Join, Sync, Heartbeat, OffsetCommit, OffsetFetch).
    alter_acl(&mut admin, true, "reader", AclResource::Group, "readers", true, AclOperation::Read);
    let script = format!(
        r#"
from confluent_kafka import Consumer, TopicPartition
c = Consumer({{"bootstrap.servers": "{kafka}", "security.protocol": "SASL_PLAINTEXT",
              "sasl.mechanisms": "SCRAM-SHA-256", "sasl.username": "reader", "sasl.password": "{READER_PASSWORD}",
              "group.id": "readers-1", "auto.offset.reset": "earliest", "enable.auto.commit": False}})
c.subscribe(["orders"])
got = None
for _ in range(60):
    m = c.poll(0.5)
    if m is not None and m.error() is None:
        got = m
        break
assert got is not None and got.value() == b"first", got
c.commit(message=got, asynchronous=False)
committed = c.committed([TopicPartition("orders", 0)], timeout=10)
assert committed[0].offset == 1, committed
c.close()
print("ok reader group")
"#
    );
    let out = Command::new("python3").arg("-c").arg(&script).output().expect("python3 with confluent-kafka");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("ok reader group"), "python: {stdout}\n{}", String::from_utf8_lossy(&out.stderr));

    // Kafka, by hand: Metadata for all topics lists only what the reader may describe, a
    // named one it may not is TOPIC_AUTHORIZATION_FAILED (29), and CreateTopics is refused.
    let mut conn = kafka_signed_in(kafka, "reader", READER_PASSWORD);
    let mut all = KafkaMetadataRequest::default();
    all.topics = None;
    let meta: kafka_protocol::messages::MetadataResponse = conn.call(ApiKey::Metadata, 12, &all);
    let names: Vec<String> = meta.topics.iter().filter_map(|t| t.name.as_ref().map(|n| n.0.to_string())).collect();
    assert_eq!(names, ["orders"]);
    let mut named = KafkaMetadataRequest::default();
    let mut secret = kafka_protocol::messages::metadata_request::MetadataRequestTopic::default();
    secret.name = Some(common::kafka::topic("secret"));
    named.topics = Some(vec![secret]);
    let meta: kafka_protocol::messages::MetadataResponse = conn.call(ApiKey::Metadata, 12, &named);
    assert_eq!(meta.topics[0].error_code, 29);
    let mut create = kafka_protocol::messages::CreateTopicsRequest::default();
    let mut t = kafka_protocol::messages::create_topics_request::CreatableTopic::default();
    t.name = common::kafka::topic("mine");
    t.num_partitions = 1;
    t.replication_factor = 1;
    create.topics = vec![t];
    let created: kafka_protocol::messages::CreateTopicsResponse = conn.call(ApiKey::CreateTopics, 5, &create);
    assert_eq!(created.topics[0].error_code, 29, "{:?}", created.topics[0].error_message);
}

/// A Kafka connection authenticated with SCRAM-SHA-256 by hand (SaslHandshake v1,
/// SaslAuthenticate v2).
fn kafka_signed_in(kafka: SocketAddr, user: &str, password: &str) -> KafkaConn {
    let mut conn = KafkaConn::connect(kafka);
    let mut hello = SaslHandshakeRequest::default();
    hello.mechanism = StrBytes::from_static_str("SCRAM-SHA-256");
    let resp: SaslHandshakeResponse = conn.call(ApiKey::SaslHandshake, 1, &hello);
    assert_eq!(resp.error_code, 0);
    let first = test_client::first(user, "kNonce42");
    let mut step = SaslAuthenticateRequest::default();
    step.auth_bytes = bytes::Bytes::from(first.clone());
    let resp: SaslAuthenticateResponse = conn.call(ApiKey::SaslAuthenticate, 2, &step);
    assert_eq!(resp.error_code, 0, "{:?}", resp.error_message);
    let server_first = String::from_utf8(resp.auth_bytes.to_vec()).unwrap();
    let (last, expected) = test_client::finish(ScramMechanism::Sha256, password, &first, &server_first);
    step.auth_bytes = bytes::Bytes::from(last);
    let resp: SaslAuthenticateResponse = conn.call(ApiKey::SaslAuthenticate, 2, &step);
    assert_eq!(resp.error_code, 0, "{:?}", resp.error_message);
    assert_eq!(resp.auth_bytes, expected.as_bytes());
    conn
}

#[test]
fn users_survive_a_restart_and_a_superuser_needs_its_password() {
    let dir = tempfile::tempdir().unwrap();
    {
        let mut node = start(dir.path());
        let mut admin = signed_in(&node, "admin", PASSWORD);
        create_user(&mut admin, "reader", READER_PASSWORD);
        node.signal_and_wait(libc::SIGTERM, Duration::from_secs(20));
    }
    // No --superuser, no password in the environment: both users are still there.
    let node = Node::start(dir.path(), 1, &["--require-auth"]);
    signed_in(&node, "admin", PASSWORD);
    signed_in(&node, "reader", READER_PASSWORD);
    drop(node);

    // A new superuser without STRAND_SUPERUSER_PASSWORD: one line, exit 78.
    let fresh = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_strand-node"))
        .args(["--data-dir", fresh.path().to_str().unwrap(), "--listen", "127.0.0.1:0", "--admin", "127.0.0.1:0"])
        .args(["--kafka-listen", "off", "--shards", "1", "--shard-port-base", "0", "--superuser", "root"])
        .env_remove("STRAND_SUPERUSER_PASSWORD")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(78));
    let stderr = String::from_utf8_lossy(&out.stderr);
    let line = "strand-node: --superuser root needs its password in the STRAND_SUPERUSER_PASSWORD environment variable";
    assert!(stderr.lines().any(|l| l == line), "{stderr}");
}

#[test]
fn in_cluster_mode_every_node_knows_every_user_and_acl() {
    let etcd = Etcd::start();
    let url = etcd.endpoint();
    let dirs: Vec<_> = (0..2).map(|_| tempfile::tempdir().unwrap()).collect();
    let nodes: Vec<Node> = dirs
        .iter()
        .enumerate()
        .map(|(i, dir)| {
            let id = (i + 1).to_string();
            let flags = ["--node-id", &id, "--etcd", &url, "--lease-ttl-s", "2", "--replication-port-base", "0"];
            let flags: Vec<&str> = flags.into_iter().chain(["--require-auth", "--superuser", "admin"]).collect();
            // Both nodes try to create the superuser: one writes it, the other finds it.
            Node::start_env(dir.path(), 1, &flags, &[("STRAND_SUPERUSER_PASSWORD", PASSWORD)])
        })
        .collect();
    let mut admin = signed_in(&nodes[0], "admin", PASSWORD);
    signed_in(&nodes[1], "admin", PASSWORD);
    create_user(&mut admin, "reader", READER_PASSWORD);
    alter_acl(&mut admin, true, "reader", AclResource::Cluster, "", false, AclOperation::Admin);

    // The other node follows etcd: the user and its ACL arrive there within a moment.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let mut on_other = loop {
        let mut client = nodes[1].client();
        if authenticate(&mut client, ScramMechanism::Sha512, "reader", READER_PASSWORD).error == ErrorCode::None {
            break client;
        }
        assert!(std::time::Instant::now() < deadline, "the user never reached node 2");
        std::thread::sleep(Duration::from_millis(100));
    };
    let (h, _) = on_other.call(Request::ListUsers, &[]);
    let Response::ListUsers(list) = h.response else { panic!("{h:?}") };
    let names: Vec<&str> = list.users.iter().map(|u| u.name.as_str()).collect();
    assert_eq!(names, ["admin", "reader"], "cluster admin via the ACL written on node 1");
    assert!(!dirs[0].path().join("security.dat").exists(), "cluster mode keeps users in etcd, not the data dir");
}

#[test]
fn kafka_sasl_refusals_are_answered_then_closed() {
    let dir = tempfile::tempdir().unwrap();
    let node = start(dir.path());
    let kafka = node.kafka.expect("Kafka port");
    let handshake = |version: i16, mechanism: &'static str| {
        let mut conn = KafkaConn::connect(kafka);
        let mut req = SaslHandshakeRequest::default();
        req.mechanism = StrBytes::from_static_str(mechanism);
        let resp: SaslHandshakeResponse = conn.call(ApiKey::SaslHandshake, version, &req);
        (conn, resp)
    };
    let offered: Vec<String> = ["SCRAM-SHA-256", "SCRAM-SHA-512", "PLAIN"].map(String::from).to_vec();

    // An unknown mechanism: UNSUPPORTED_SASL_MECHANISM (33) with the list, then closed.
    let (mut conn, resp) = handshake(1, "GSSAPI");
    assert_eq!(resp.error_code, 33);
    assert_eq!(resp.mechanisms.iter().map(|m| m.to_string()).collect::<Vec<_>>(), offered);
    assert!(conn.is_closed());
    // v0 (unframed tokens after it) is refused: ILLEGAL_SASL_STATE (34).
    let (mut conn, resp) = handshake(0, "SCRAM-SHA-256");
    assert_eq!(resp.error_code, 34);
    assert!(conn.is_closed());
    // PLAIN without TLS: the handshake is fine, the password is refused unread.
    let (mut conn, resp) = handshake(1, "PLAIN");
    assert_eq!(resp.error_code, 0);
    let mut auth = SaslAuthenticateRequest::default();
    auth.auth_bytes = bytes::Bytes::from(format!("\0admin\0{PASSWORD}"));
    let resp: SaslAuthenticateResponse = conn.call(ApiKey::SaslAuthenticate, 2, &auth);
    assert_eq!(resp.error_code, 58, "SASL_AUTHENTICATION_FAILED");
    let text = resp.error_message.map(|m| m.to_string()).unwrap_or_default();
    assert_eq!(text, "authentication failed: PLAIN is only allowed on a TLS connection");
    assert!(conn.is_closed());
    // Garbage as the first SCRAM message: a clear failure, no panic, closed.
    let (mut conn, _) = handshake(1, "SCRAM-SHA-512");
    auth.auth_bytes = bytes::Bytes::from_static(b"\xff\x00garbage,,,=");
    let resp: SaslAuthenticateResponse = conn.call(ApiKey::SaslAuthenticate, 1, &auth);
    assert_eq!(resp.error_code, 58);
    assert!(conn.is_closed());
    // A request before authentication closes the connection unanswered, as Kafka does.
    let mut conn = KafkaConn::connect(kafka);
    conn.send(ApiKey::Metadata, 12, &KafkaMetadataRequest::default());
    assert!(conn.read_frame().is_none() && conn.is_closed());
    std::thread::sleep(Duration::from_millis(100));
    assert!(!node.log.lock().unwrap().join("\n").contains(PASSWORD), "a PLAIN password is never logged");
}

/// An admin HTTP GET with Basic credentials: (status, body).
fn admin_get_as(node: &Node, path: &str, user: &str, password: &str) -> (u16, String) {
    use base64::Engine;
    use std::io::Read;
    let basic = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
    let mut s = std::net::TcpStream::connect(node.admin).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(s, "GET {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Basic {basic}\r\nConnection: close\r\n\r\n").unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    let status = text.split_whitespace().nth(1).unwrap().parse().unwrap();
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default();
    (status, body)
}
