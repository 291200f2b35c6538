//! Hostile peers on the replication port, against real `strand-node` processes and a
//! real etcd on 127.0.0.1 (issue #15): a raw TCP client that sends well-formed
//! `ReplicaAck`/`ReplicaAppend` frames (built with `strand_wire`'s encoders, naming a
//! real chain member as sender) is refused — an `acks=all` produce is not acknowledged
//! early and forged records are never served; the replication port holds its own
//! connection bound; a second process with a live `--node-id` is refused at start while
//! a restart of the same node after SIGKILL still works; with `--cluster-tls-*` (issue #20)
//! links are mutual TLS and the replication port refuses peers without a cluster certificate.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use common::etcd::Etcd;
use common::{batch, Client, Node};
use strand_wire::batch::{stamp_base_offset, BatchIter};
use strand_wire::codec::request_frame;
use strand_wire::msg::*;
use strand_wire::ErrorCode;

const TOPIC: &str = "hostile";
/// Long enough that SIGSTOPped followers keep their leases for the whole test.
const TTL_S: &str = "20";

/// A port that was free a moment ago.
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("free port")
}

/// A cluster node with one shard and a known replication port.
struct Member {
    node: Node,
    id: u32,
    replication: SocketAddr,
}

fn start_member(dir: &Path, id: u32, etcd: &Etcd, extra: &[&str]) -> Member {
    let port = free_port();
    let (id_text, url, base) = (id.to_string(), etcd.endpoint(), port.to_string());
    let mut flags = vec!["--node-id", &id_text, "--etcd", &url, "--lease-ttl-s", TTL_S];
    flags.extend(["--replication-port-base", &base]);
    flags.extend(extra);
    let node = Node::start(dir, 1, &flags);
    Member { node, id, replication: SocketAddr::from(([127, 0, 0, 1], port)) }
}

fn three_members(dir: &Path, etcd: &Etcd) -> Vec<Member> {
    (1..=3u32).map(|id| start_member(&dir.join(format!("n{id}")), id, etcd, &[])).collect()
}

/// Creates the RF=3 topic and returns its partition as metadata shows it (chain head first).
fn create_topic(members: &[Member]) -> PartitionMetadata {
    let create = Request::CreateTopic(CreateTopicRequest {
        name: TOPIC.into(),
        partitions: 1,
        replication_factor: 3,
        configs: Vec::new(),
    });
    // Right after start a node may not have seen every member's registration yet.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let header = loop {
        let (header, _) = members[0].node.client().call(create.clone(), &[]);
        if header.error != ErrorCode::NotEnoughReplicas || std::time::Instant::now() > deadline {
            break header;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(header.error, ErrorCode::None, "create: {:?}", header.message);
    let (header, _) =
        members[0].node.client().call(Request::Metadata(MetadataRequest { topics: vec![TOPIC.into()] }), &[]);
    let Response::Metadata(meta) = header.response else { panic!("not metadata") };
    let part = meta.topics[0].partitions[0].clone();
    assert_eq!(part.replicas.len(), 3, "chain {part:?}");
    part
}

fn member(members: &[Member], id: u32) -> &Member {
    members.iter().find(|m| m.id == id).expect("member")
}

fn produce_request(bytes: &[u8], timeout_ms: u32) -> Request {
    Request::Produce(ProduceRequest {
        acks: Acks::All,
        timeout_ms,
        partitions: vec![ProducePartition { topic: TOPIC.into(), partition: 0, bytes_len: bytes.len() as u32 }],
    })
}

fn produce_answer(header: &ResponseHeader) -> ProducePartitionResponse {
    match &header.response {
        Response::Produce(r) => r.partitions[0].clone(),
        other => panic!("not a produce response: {other:?} ({:?})", header.message),
    }
}

/// acks=all produce, retried (bounded) while the chain starts; the base offset.
fn produce_ok(client: &mut Client, bytes: &[u8]) -> u64 {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let (header, _) = client.call(produce_request(bytes, 10_000), bytes);
        let answer = produce_answer(&header);
        if answer.error == ErrorCode::None {
            return answer.base_offset;
        }
        assert!(Instant::now() < deadline, "produce kept failing: {:?} {:?}", answer.error, header.message);
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Offsets of the records one node serves from `from` on (one fetch, no wait).
fn served_from(node: &Node, from: u64) -> Vec<Vec<u8>> {
    let (p, bytes) = node.client().fetch(TOPIC, 0, from, 0);
    assert_eq!(p.error, ErrorCode::None);
    let mut values = Vec::new();
    for b in BatchIter::new(&bytes) {
        for r in b.expect("valid batch").records() {
            values.push(r.expect("record").value.expect("not a tombstone").to_vec());
        }
    }
    values
}

/// Waits until `node` serves everything below `end`.
fn wait_served(node: &Node, end: u64) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while node.client().fetch(TOPIC, 0, 0, 0).0.high_watermark < end {
        assert!(Instant::now() < deadline, "replica did not reach {end}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn frame(request: Request, payload: &[u8]) -> BytesMut {
    let mut out = BytesMut::new();
    request_frame(&mut out, &RequestHeader { correlation_id: 7, request }, payload);
    out
}

/// Whether the peer closed `stream` within `within` (EOF or reset), reading and
/// discarding whatever it sends first.
fn closed_within(stream: &mut TcpStream, within: Duration) -> bool {
    let deadline = Instant::now() + within;
    let mut buf = [0u8; 256];
    while Instant::now() < deadline {
        stream.set_read_timeout(Some(Duration::from_millis(100))).unwrap();
        match stream.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => {}
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {}
            Err(_) => return true,
        }
    }
    false
}

fn signal(node: &Node, signal: libc::c_int) {
    // SAFETY: plain kill(2) on our own child's pid.
    unsafe { libc::kill(node.child.id() as libc::pid_t, signal) };
}

#[test]
fn forged_replica_ack_does_not_acknowledge_a_produce_early() {
    let tmp = tempfile::tempdir().unwrap();
    let etcd = Etcd::start();
    let members = three_members(tmp.path(), &etcd);
    let part = create_topic(&members);
    let (head, middle, tail) =
        (member(&members, part.replicas[0]), member(&members, part.replicas[1]), member(&members, part.replicas[2]));
    let warm = batch(&[b"warm"], 1_000);
    let end = produce_ok(&mut head.node.client(), &warm) + 1;

    // Both followers stop: nothing can acknowledge the next produce but a forger.
    signal(&middle.node, libc::SIGSTOP);
    signal(&tail.node, libc::SIGSTOP);
    let bytes = batch(&[b"needs-all"], 2_000);
    let mut producer = head.node.client();
    producer.send(produce_request(&bytes, 20_000), &bytes);
    let started = Instant::now();

    // The forger claims to be the middle node and reports the new record durable.
    let ack = Request::ReplicaAck(ReplicaAckRequest {
        topic: TOPIC.into(),
        partition: 0,
        epoch: part.epoch,
        durable_offset: end + 1,
        from_node: middle.id,
        error: ErrorCode::None,
        log_end_offset: end + 1,
        log_end_epoch: part.epoch,
        durable_epoch: part.epoch,
    });
    let mut forger = TcpStream::connect(head.replication).unwrap();
    let forged = frame(ack, &[]);
    let mut refused = false;
    while started.elapsed() < Duration::from_millis(1_500) {
        if forger.write_all(&forged).is_err() {
            refused = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    refused = refused || closed_within(&mut forger, Duration::from_secs(6));

    // Not answered while the followers are stopped…
    producer.stream.set_read_timeout(Some(Duration::from_millis(500))).unwrap();
    let mut probe = [0u8; 1];
    if producer.stream.peek(&mut probe).is_ok() {
        let (header, _) = producer.recv();
        let answer = produce_answer(&header);
        panic!(
            "acks=all produce answered {:?} at offset {} while both followers were stopped (forged ReplicaAck accepted)",
            answer.error, answer.base_offset
        );
    }
    assert!(refused, "the head kept the unauthenticated replication connection open");

    // …and answered once they resume.
    signal(&middle.node, libc::SIGCONT);
    signal(&tail.node, libc::SIGCONT);
    producer.stream.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let (header, _) = producer.recv();
    let answer = produce_answer(&header);
    assert_eq!(answer.error, ErrorCode::None, "{:?}", header.message);
    assert_eq!(answer.base_offset, end);
}

#[test]
fn forged_replica_append_is_never_served_by_the_tail() {
    let tmp = tempfile::tempdir().unwrap();
    let etcd = Etcd::start();
    let members = three_members(tmp.path(), &etcd);
    let part = create_topic(&members);
    let (head, middle, tail) =
        (member(&members, part.replicas[0]), member(&members, part.replicas[1]), member(&members, part.replicas[2]));
    let mut producer = head.node.client();
    let mut end = 0;
    for i in 0..3u8 {
        end = produce_ok(&mut producer, &batch(&[&[b'r', b'0' + i]], 1_000)) + 1;
    }
    wait_served(&tail.node, end);

    // A well-formed append continuing the tail's log, claiming to come from its predecessor.
    let mut forged = BytesMut::from(&batch(&[b"FORGED"], 3_000)[..]);
    stamp_base_offset(&mut forged, end);
    let append = Request::ReplicaAppend(ReplicaAppendRequest {
        topic: TOPIC.into(),
        partition: 0,
        epoch: part.epoch,
        start_offset: end,
        commit_offset: end + 1,
        bytes_len: forged.len() as u32,
        from_node: middle.id,
        prev_offset: end,
        prev_epoch: part.epoch,
        batch_epochs: vec![part.epoch],
    });
    let mut forger = TcpStream::connect(tail.replication).unwrap();
    let _ = forger.write_all(&frame(append, &forged));
    let refused = closed_within(&mut forger, Duration::from_secs(6));

    let deadline = Instant::now() + Duration::from_secs(2);
    while Instant::now() < deadline {
        let served = served_from(&tail.node, end);
        assert!(served.is_empty(), "the tail serves forged records: {served:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(refused, "the tail kept the unauthenticated replication connection open");
    // The real chain still works and the record at `end` is the real one.
    let next = produce_ok(&mut producer, &batch(&[b"real"], 4_000));
    assert_eq!(next, end);
    wait_served(&tail.node, end + 1);
    assert_eq!(served_from(&tail.node, end), vec![b"real".to_vec()]);
}

/// The node's default bound on replication connections (`replication_connections_max`).
const REPLICATION_CONNECTIONS_MAX_DEFAULT: usize = 256;

fn metric(node: &Node, name: &str) -> u64 {
    let (_, body) = node.admin_get("/metrics");
    body.lines()
        .find(|l| l.starts_with(name) && l[name.len()..].starts_with([' ', '{']))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

#[test]
fn replication_port_holds_its_own_connection_bound() {
    let tmp = tempfile::tempdir().unwrap();
    let etcd = Etcd::start();
    let one = start_member(&tmp.path().join("n1"), 1, &etcd, &[]);
    // Fill the bound with silent connections (they sit in the handshake).
    let mut held: Vec<TcpStream> = (0..REPLICATION_CONNECTIONS_MAX_DEFAULT)
        .map(|_| TcpStream::connect(one.replication).expect("connect within the bound"))
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    // Past the bound: closed at once and counted.
    let mut extra: Vec<TcpStream> = (0..20).map(|_| TcpStream::connect(one.replication).unwrap()).collect();
    for (i, stream) in extra.iter_mut().enumerate() {
        assert!(
            closed_within(stream, Duration::from_secs(2)),
            "connection {} past the bound of {REPLICATION_CONNECTIONS_MAX_DEFAULT} was kept open",
            REPLICATION_CONNECTIONS_MAX_DEFAULT + i + 1
        );
    }
    assert!(metric(&one.node, "strand_replication_connections_refused_total") >= 20);
    // A silent connection inside the bound is closed by the handshake timeout.
    assert!(closed_within(&mut held[0], Duration::from_secs(15)), "a silent connection outlived the handshake timeout");
    held.clear();
    // Once they are gone, a connection inside the bound is accepted again (gets the challenge).
    std::thread::sleep(Duration::from_millis(500));
    let mut again = TcpStream::connect(one.replication).unwrap();
    again.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut challenge = [0u8; 8];
    again.read_exact(&mut challenge).expect("a challenge after the bound freed up");
}

/// Starts a node expected to be refused; its exit status and stderr (kills it and fails
/// the test if it is still running after `within`).
fn run_refused(dir: &Path, id: u32, etcd: &Etcd, within: Duration) -> (std::process::ExitStatus, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_strand-node"))
        .args([
            "--data-dir",
            dir.to_str().unwrap(),
            "--listen",
            "127.0.0.1:0",
            "--admin",
            "127.0.0.1:0",
            "--kafka-listen",
            "127.0.0.1:0",
        ])
        .args(["--shards", "1", "--shard-port-base", "0", "--replication-port-base", "0"])
        .args(["--node-id", &id.to_string(), "--etcd", &etcd.endpoint(), "--lease-ttl-s", TTL_S])
        .env("RUST_LOG", "info,glommio=error")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn strand-node");
    let deadline = Instant::now() + within;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            let mut text = String::new();
            child.stderr.take().unwrap().read_to_string(&mut text).unwrap();
            return (status, text);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            let mut text = String::new();
            child.stderr.take().unwrap().read_to_string(&mut text).unwrap();
            panic!("a second node with id {id} started and is running (registration taken over):\n{text}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn registered_port(node: &Node, id: u32) -> Option<u16> {
    let (header, _) = node.client().call(Request::Metadata(MetadataRequest { topics: Vec::new() }), &[]);
    let Response::Metadata(meta) = header.response else { panic!("not metadata") };
    meta.nodes.iter().find(|n| n.node_id == id).map(|n| n.port)
}

#[test]
fn duplicate_node_id_is_refused_while_a_restart_after_sigkill_works() {
    let tmp = tempfile::tempdir().unwrap();
    let etcd = Etcd::start();
    let real_dir = tmp.path().join("real");
    let mut real = start_member(&real_dir, 2, &etcd, &[]);
    let witness = start_member(&tmp.path().join("witness"), 3, &etcd, &[]);

    let (status, stderr) = run_refused(&tmp.path().join("impostor"), 2, &etcd, Duration::from_secs(20));
    assert_eq!(status.code(), Some(78), "exit status {status:?}; stderr:\n{stderr}");
    let line = format!("strand-node: node id 2 is already registered by 127.0.0.1:{}", real.node.public.port());
    assert!(stderr.contains(&line), "no {line:?} in:\n{stderr}");
    // The real node keeps its registration.
    assert_eq!(registered_port(&witness.node, 2), Some(real.node.public.port()));

    // SIGKILL, then a restart on the same data dir long before the lease expires.
    real.node.signal_and_wait(libc::SIGKILL, Duration::from_secs(10));
    let started = Instant::now();
    let back = start_member(&real_dir, 2, &etcd, &[]);
    assert!(started.elapsed() < Duration::from_secs(20), "the restart waited for the lease TTL");
    let deadline = Instant::now() + Duration::from_secs(10);
    while registered_port(&witness.node, 2) != Some(back.node.public.port()) {
        assert!(Instant::now() < deadline, "the restarted node is not registered");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Runs the link side of the replication handshake as node `id` with `secret` on a raw
/// socket; whether the listener proved itself back.
fn handshake(stream: &mut TcpStream, id: u32, secret: &[u8]) -> bool {
    use strand_node::replication::auth::{LinkAuth, CHALLENGE_LEN, PROOF_LEN};
    stream.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut challenge = [0u8; CHALLENGE_LEN];
    stream.read_exact(&mut challenge).expect("challenge");
    let (hello, expected) =
        LinkAuth::new(strand_core::chain::NodeId(id), secret).answer(&challenge).expect("valid challenge");
    stream.write_all(&hello).unwrap();
    let mut proof = [0u8; PROOF_LEN];
    stream.read_exact(&mut proof).is_ok() && expected.verify(&proof).is_ok()
}

#[test]
fn secret_holders_that_are_not_the_expected_neighbour_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let etcd = Etcd::start();
    let secret = b"a-shared-secret-of-this-cluster\n";
    let secret_file = tmp.path().join("cluster-secret");
    std::fs::write(&secret_file, secret).unwrap();
    let flags = ["--cluster-secret-file", secret_file.to_str().unwrap()];
    let members: Vec<Member> =
        (1..=3u32).map(|id| start_member(&tmp.path().join(format!("n{id}")), id, &etcd, &flags)).collect();
    let part = create_topic(&members);
    let (head, middle, tail) =
        (member(&members, part.replicas[0]), member(&members, part.replicas[1]), member(&members, part.replicas[2]));
    let end = produce_ok(&mut head.node.client(), &batch(&[b"warm"], 1_000)) + 1;

    // A wrong secret gets no proof back and is closed.
    let mut outsider = TcpStream::connect(head.replication).unwrap();
    assert!(!handshake(&mut outsider, tail.id, b"not-the-cluster-secret"), "the head proved itself to a wrong secret");
    assert!(metric(&head.node, "strand_replication_handshakes_failed_total") >= 1);

    signal(&middle.node, libc::SIGSTOP);
    signal(&tail.node, libc::SIGSTOP);
    let bytes = batch(&[b"needs-all"], 2_000);
    let mut producer = head.node.client();
    producer.send(produce_request(&bytes, 20_000), &bytes);

    // The tail holds the secret but is not the head's successor; as itself its acks are
    // refused by the chain core, and naming the middle node is refused as an impostor.
    let mut insider = TcpStream::connect(head.replication).unwrap();
    assert!(handshake(&mut insider, tail.id, &secret[..secret.len() - 1]), "the tail's secret is the cluster's");
    let ack = |from_node| {
        frame(
            Request::ReplicaAck(ReplicaAckRequest {
                topic: TOPIC.into(),
                partition: 0,
                epoch: part.epoch,
                durable_offset: end + 1,
                from_node,
                error: ErrorCode::None,
                log_end_offset: end + 1,
                log_end_epoch: part.epoch,
                durable_epoch: part.epoch,
            }),
            &[],
        )
    };
    let started = Instant::now();
    while started.elapsed() < Duration::from_millis(1_500) {
        insider.write_all(&ack(tail.id)).unwrap();
        insider.write_all(&ack(middle.id)).unwrap();
        std::thread::sleep(Duration::from_millis(50));
    }
    producer.stream.set_read_timeout(Some(Duration::from_millis(500))).unwrap();
    let mut probe = [0u8; 1];
    if producer.stream.peek(&mut probe).is_ok() {
        let (header, _) = producer.recv();
        let answer = produce_answer(&header);
        panic!(
            "acks=all produce answered {:?} at offset {} while both followers were stopped (acks from a non-neighbour accepted)",
            answer.error, answer.base_offset
        );
    }
    signal(&middle.node, libc::SIGCONT);
    signal(&tail.node, libc::SIGCONT);
    producer.stream.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let (header, _) = producer.recv();
    assert_eq!(produce_answer(&header).error, ErrorCode::None, "{:?}", header.message);
}

/// A CA and the certificates it signs, as PEM files in `dir` (made with rcgen).
struct Ca {
    issuer: rcgen::Issuer<'static, rcgen::KeyPair>,
}

impl Ca {
    fn new(dir: &Path, name: &str) -> Ca {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params.distinguished_name.push(rcgen::DnType::CommonName, name);
        std::fs::write(dir.join(format!("{name}.pem")), params.self_signed(&key).unwrap().pem()).unwrap();
        Ca { issuer: rcgen::Issuer::new(params, key) }
    }

    /// A node certificate for 127.0.0.1, usable on both ends of a link: (cert, key) paths.
    fn node_cert(&self, dir: &Path, name: &str) -> (String, String) {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(vec!["127.0.0.1".to_string()]).unwrap();
        params.distinguished_name.push(rcgen::DnType::CommonName, name);
        params.extended_key_usages =
            vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth, rcgen::ExtendedKeyUsagePurpose::ClientAuth];
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        let (cert_path, key_path) = (dir.join(format!("{name}.pem")), dir.join(format!("{name}.key")));
        std::fs::write(&cert_path, cert.pem()).unwrap();
        std::fs::write(&key_path, key.serialize_pem()).unwrap();
        (cert_path.to_str().unwrap().to_string(), key_path.to_str().unwrap().to_string())
    }
}

/// Connects to `to` with TLS trusting `ca` (a PEM path), presenting `client` (cert, key)
/// if given; whether the node kept the session up long enough to read 1 byte back after a
/// write (a refused client certificate shows as an alert or EOF on that read).
fn tls_session_survives(to: SocketAddr, ca: &Path, client: Option<(&str, &str)>) -> bool {
    use rustls_pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_pki_types::CertificateDer::pem_file_iter(ca).unwrap() {
        roots.add(cert.unwrap()).unwrap();
    }
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider).with_safe_default_protocol_versions().unwrap();
    let builder = builder.with_root_certificates(roots);
    let config = match client {
        None => builder.with_no_client_auth(),
        Some((cert, key)) => {
            let chain = rustls_pki_types::CertificateDer::pem_file_iter(cert).unwrap().map(Result::unwrap).collect();
            let key = rustls_pki_types::PrivateKeyDer::from_pem_file(key).unwrap();
            builder.with_client_auth_cert(chain, key).unwrap()
        }
    };
    let name = rustls_pki_types::ServerName::IpAddress(to.ip().into());
    let conn = rustls::ClientConnection::new(std::sync::Arc::new(config), name).unwrap();
    let sock = TcpStream::connect(to).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut tls = rustls::StreamOwned::new(conn, sock);
    // The listener speaks first after the handshake (its challenge): a session it accepted
    // yields bytes; a refused one an error or EOF.
    if tls.write_all(b"x").is_err() {
        return false;
    }
    let mut byte = [0u8; 1];
    matches!(tls.read(&mut byte), Ok(1))
}

/// Mutual TLS on replication links (issue #20, "a chain link from a node without the
/// cluster's certificate is refused"): three nodes with certificates of one cluster CA
/// replicate an `acks=all` produce over TLS; the replication port refuses a plaintext
/// peer, a TLS peer without a certificate and one whose certificate another CA signed
/// (each counted as a failed handshake), while a peer with a cluster certificate gets as
/// far as the listener's challenge (and would still need the cluster secret).
#[test]
fn replication_links_in_mutual_tls_refuse_strangers() {
    let tmp = tempfile::tempdir().unwrap();
    let pki = tmp.path().join("pki");
    std::fs::create_dir(&pki).unwrap();
    let cluster = Ca::new(&pki, "cluster-ca");
    let stranger_ca = Ca::new(&pki, "stranger-ca");
    let ca_path = pki.join("cluster-ca.pem");
    let etcd = Etcd::start();
    let members: Vec<Member> = (1..=3u32)
        .map(|id| {
            let (cert, key) = cluster.node_cert(&pki, &format!("node{id}"));
            let flags =
                ["--cluster-tls-cert", &cert, "--cluster-tls-key", &key, "--cluster-tls-ca", ca_path.to_str().unwrap()];
            start_member(&tmp.path().join(format!("n{id}")), id, &etcd, &flags)
        })
        .collect();
    let part = create_topic(&members);
    let head = member(&members, part.replicas[0]);
    let tail = member(&members, part.replicas[2]);
    let end = produce_ok(&mut head.node.client(), &batch(&[b"over-tls"], 1_000)) + 1;
    wait_served(&tail.node, end);

    let failed_before = metric(&tail.node, "strand_replication_handshakes_failed_total");
    // A plaintext peer: its bytes are not a TLS hello, the connection is closed.
    let mut plain = TcpStream::connect(tail.replication).unwrap();
    let _ = plain.write_all(&frame(produce_request(b"x", 1), &[]));
    assert!(closed_within(&mut plain, Duration::from_secs(6)), "a plaintext peer was kept");
    // TLS without a client certificate, and with a certificate of another CA.
    assert!(!tls_session_survives(tail.replication, &ca_path, None), "a peer without a certificate was accepted");
    let (cert, key) = stranger_ca.node_cert(&pki, "stranger");
    assert!(
        !tls_session_survives(tail.replication, &ca_path, Some((&cert, &key))),
        "a peer with a foreign CA's certificate was accepted"
    );
    // A peer with a cluster certificate reaches the listener's challenge.
    let (cert, key) = cluster.node_cert(&pki, "member4");
    assert!(tls_session_survives(tail.replication, &ca_path, Some((&cert, &key))), "a cluster certificate was refused");
    let deadline = Instant::now() + Duration::from_secs(10);
    while metric(&tail.node, "strand_replication_handshakes_failed_total") < failed_before + 3 {
        assert!(Instant::now() < deadline, "the three refusals were not counted");
        std::thread::sleep(Duration::from_millis(100));
    }
    // The chain still works.
    let end = produce_ok(&mut head.node.client(), &batch(&[b"still"], 2_000)) + 1;
    wait_served(&tail.node, end);
}
