//! TLS on a real node (`--tls-cert`/`--tls-key`/`--tls-client-ca`), over real sockets:
//! certificates made here with rcgen (a CA, a server certificate for IP 127.0.0.1, client
//! certificates). Produce and a fetch much larger than the node's TLS copy buffer with the
//! Rust client; a plaintext client refused while the node keeps serving; mutual TLS; a
//! SIGHUP certificate reload that keeps open connections; kcat over SSL on the Kafka port;
//! the CLI's `--tls-ca`; the admin HTTP over https; bad certificate files at start; kcat
//! over SASL_SSL with PLAIN and SCRAM.

mod common;
mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use rustls_pki_types::{CertificateDer, ServerName};
use strand_client::{
    Admin, Client, ClientConfig, ClientTls, Consumer, ConsumerConfig, Producer, ProducerConfig, ProducerRecord, SeekTo,
};
use strand_wire::codec::{decode_response, request_frame};
use strand_wire::frame::FramePrefix;
use strand_wire::msg::{HandshakeRequest, Request, RequestHeader, Response, PROTOCOL_VERSION};
use support::{node_binary, Node};

/// A CA and certificates it signs, as PEM files in a temp dir.
struct Pki {
    dir: tempfile::TempDir,
    ca: rcgen::Issuer<'static, rcgen::KeyPair>,
}

impl Pki {
    fn new() -> Pki {
        let dir = tempfile::tempdir().unwrap();
        let ca = Pki::ca(&dir.path().join("ca.pem"), "strand test CA");
        let pki = Pki { dir, ca };
        pki.server("server", "strand node one");
        pki.client("client", &pki.ca);
        pki
    }

    /// A self-signed CA whose certificate is written to `path`.
    fn ca(path: &Path, name: &str) -> rcgen::Issuer<'static, rcgen::KeyPair> {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params.distinguished_name.push(rcgen::DnType::CommonName, name);
        params.key_usages = vec![rcgen::KeyUsagePurpose::KeyCertSign, rcgen::KeyUsagePurpose::CrlSign];
        std::fs::write(path, params.self_signed(&key).unwrap().pem()).unwrap();
        rcgen::Issuer::new(params, key)
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn arg(&self, name: &str) -> String {
        self.path(name).display().to_string()
    }

    /// Writes `NAME.pem`/`NAME-key.pem`: a server certificate for 127.0.0.1; returns its DER.
    fn server(&self, name: &str, common_name: &str) -> CertificateDer<'static> {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(vec!["127.0.0.1".to_string()]).unwrap();
        params.distinguished_name.push(rcgen::DnType::CommonName, common_name);
        params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
        let cert = params.signed_by(&key, &self.ca).unwrap();
        std::fs::write(self.path(&format!("{name}.pem")), cert.pem()).unwrap();
        std::fs::write(self.path(&format!("{name}-key.pem")), key.serialize_pem()).unwrap();
        cert.der().clone()
    }

    /// Writes `NAME.pem`/`NAME-key.pem`: a client certificate signed by `issuer`.
    fn client(&self, name: &str, issuer: &rcgen::Issuer<'static, rcgen::KeyPair>) {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name.push(rcgen::DnType::CommonName, name);
        params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
        let cert = params.signed_by(&key, issuer).unwrap();
        std::fs::write(self.path(&format!("{name}.pem")), cert.pem()).unwrap();
        std::fs::write(self.path(&format!("{name}-key.pem")), key.serialize_pem()).unwrap();
    }

    /// Node flags serving `server.pem`.
    fn node_flags(&self) -> Vec<String> {
        vec!["--tls-cert".into(), self.arg("server.pem"), "--tls-key".into(), self.arg("server-key.pem")]
    }

    /// Client TLS trusting the CA, with the client certificate `NAME` when given.
    fn client_tls(&self, client: Option<&str>) -> ClientTls {
        let pair = client.map(|n| (self.path(&format!("{n}.pem")), self.path(&format!("{n}-key.pem"))));
        ClientTls::from_files(&self.path("ca.pem"), pair.as_ref().map(|(c, k)| (c.as_path(), k.as_path()))).unwrap()
    }
}

fn start(pki: &Pki, extra: &[&str]) -> Node {
    let mut flags = pki.node_flags();
    flags.extend(extra.iter().map(|s| s.to_string()));
    Node::start_with_flags(2, &flags.iter().map(String::as_str).collect::<Vec<_>>())
}

async fn tls_client(node: &Node, tls: ClientTls) -> strand_client::Result<Client> {
    Client::connect(ClientConfig {
        tls: Some(tls),
        connect_timeout: Duration::from_secs(5),
        ..ClientConfig::new(node.public.clone())
    })
    .await
}

/// A blocking TLS connection to `addr` made with rustls directly (so the test sees the
/// certificate the node served), speaking the native protocol.
struct RawTls {
    stream: rustls::StreamOwned<rustls::ClientConnection, TcpStream>,
    next_cid: u64,
}

impl RawTls {
    fn connect(addr: &str, tls: &ClientTls) -> std::io::Result<RawTls> {
        let tcp = TcpStream::connect(addr)?;
        tcp.set_read_timeout(Some(Duration::from_secs(10)))?;
        let name = ServerName::IpAddress(tcp.peer_addr()?.ip().into());
        let conn = rustls::ClientConnection::new(tls.config.clone(), name).map_err(std::io::Error::other)?;
        let mut stream = rustls::StreamOwned::new(conn, tcp);
        while stream.conn.is_handshaking() {
            stream.conn.complete_io(&mut stream.sock)?;
        }
        Ok(RawTls { stream, next_cid: 1 })
    }

    /// The leaf certificate the node presented.
    fn served(&self) -> CertificateDer<'static> {
        self.stream.conn.peer_certificates().expect("a server certificate")[0].clone().into_owned()
    }

    /// A native Handshake request and its answer.
    fn hello(&mut self) -> std::io::Result<Response> {
        let cid = self.next_cid;
        self.next_cid += 1;
        let hello = HandshakeRequest { protocol_version: PROTOCOL_VERSION, client_id: "raw-tls".into() };
        let mut out = BytesMut::new();
        request_frame(&mut out, &RequestHeader { correlation_id: cid, request: Request::Handshake(hello) }, &[]);
        self.stream.write_all(&out)?;
        self.stream.flush()?;
        let mut prefix = [0u8; 8];
        self.stream.read_exact(&mut prefix)?;
        let prefix = FramePrefix::parse(&prefix, usize::MAX).expect("valid response prefix");
        let mut rest = vec![0u8; prefix.header_len as usize + prefix.payload_len()];
        self.stream.read_exact(&mut rest)?;
        let header = decode_response(&rest[..prefix.header_len as usize]).expect("valid response header");
        assert_eq!(header.correlation_id, cid);
        Ok(header.response)
    }
}

/// `GET path` over https on the admin port: (status, body).
fn https_get(addr: &str, tls: &ClientTls, path: &str) -> (u16, String) {
    let tcp = TcpStream::connect(addr).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let name = ServerName::IpAddress(tcp.peer_addr().unwrap().ip().into());
    let conn = rustls::ClientConnection::new(tls.config.clone(), name).unwrap();
    let mut stream = rustls::StreamOwned::new(conn, tcp);
    write!(stream, "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").unwrap();
    let mut raw = Vec::new();
    // tiny_http may close without close_notify: what was read before that is the answer.
    if let Err(e) = stream.read_to_end(&mut raw) {
        assert_eq!(e.kind(), std::io::ErrorKind::UnexpectedEof, "https GET {path}: {e}");
    }
    let text = String::from_utf8_lossy(&raw).to_string();
    let status = text.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    (status, text.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default())
}

/// A counter's value summed over shards in a Prometheus text.
fn counter(metrics: &str, name: &str) -> u64 {
    metrics
        .lines()
        .filter(|l| l.starts_with(name) && l[name.len()..].starts_with(['{', ' ']))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}

/// A record value whose every byte depends on its index and position (a swapped or
/// shifted piece shows).
fn value(i: usize, len: usize) -> Vec<u8> {
    (0..len).map(|j| ((i * 7919 + j * 31) % 251) as u8).collect()
}

async fn read_all(client: &Client, topic: &str, count: usize) -> Vec<Bytes> {
    let mut consumer = Consumer::new(client.clone(), ConsumerConfig::default());
    consumer.assign(topic, 0).await.expect("assign");
    consumer.seek(topic, 0, SeekTo::Earliest).await.expect("seek");
    let mut out = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while out.len() < count {
        assert!(Instant::now() < deadline, "only {} of {count} records arrived", out.len());
        for r in consumer.poll(Duration::from_secs(2)).await.expect("poll") {
            out.push(r.value.expect("a value"));
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn produce_and_a_large_fetch_go_over_tls_intact() {
    let pki = Pki::new();
    let node = start(&pki, &[]);
    let client = tls_client(&node, pki.client_tls(None)).await.expect("TLS client connects");
    Admin::new(client.clone()).create_topic("secure", 1, 1).await.expect("create");
    // 6 MiB in 1 partition: one fetch answer holds a file range of several TLS copy pieces
    // (256 KiB each), cut at odd offsets (records are 40 000 bytes).
    let (count, len) = (160usize, 40_000usize);
    let producer = Producer::new(client.clone(), ProducerConfig::default()).await.expect("producer");
    let mut deliveries = Vec::new();
    for i in 0..count {
        deliveries.push(producer.send(ProducerRecord::new("secure", value(i, len))).await.expect("send"));
    }
    producer.flush().await.expect("flush");
    for d in deliveries {
        d.await.expect("delivered");
    }
    // Through the owner shard's port and through the public port (another shard's file).
    for use_shard_ports in [true, false] {
        let reader = Client::connect(ClientConfig {
            tls: Some(pki.client_tls(None)),
            use_shard_ports,
            ..ClientConfig::new(node.public.clone())
        })
        .await
        .expect("reader connects");
        let got = read_all(&reader, "secure", count).await;
        assert_eq!(got.len(), count);
        for (i, v) in got.iter().enumerate() {
            assert!(v[..] == value(i, len)[..], "record {i} differs after TLS (shard ports: {use_shard_ports})");
        }
    }
    let (status, metrics) = https_get(&node.admin, &pki.client_tls(None), "/metrics");
    assert_eq!(status, 200);
    assert_eq!(counter(&metrics, "strand_bytes_out_zero_copy_total"), 0, "sendfile under TLS would send plaintext");
    let copied = counter(&metrics, "strand_bytes_out_copied_total");
    assert!(copied >= 2 * (count * len) as u64, "TLS-copied bytes are counted: {copied}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plaintext_client_on_a_tls_port_is_refused_and_the_node_keeps_serving() {
    let pki = Pki::new();
    let node = start(&pki, &[]);
    // Connects and never says anything: closed after the handshake timeout (10 s).
    let mut silent = TcpStream::connect(&node.public).unwrap();
    let silent_since = Instant::now();
    // A native client speaking plaintext to every TLS port: refused, closed.
    let kafka_port = node.kafka.clone();
    let shard = format!("127.0.0.1:{}", node.shard_ports[0]);
    for addr in [&node.public, &shard, &kafka_port] {
        let mut plain = TcpStream::connect(addr.as_str()).unwrap();
        plain.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut out = BytesMut::new();
        let hello = HandshakeRequest { protocol_version: PROTOCOL_VERSION, client_id: "plain".into() };
        request_frame(&mut out, &RequestHeader { correlation_id: 1, request: Request::Handshake(hello) }, &[]);
        plain.write_all(&out).unwrap();
        let mut answer = Vec::new();
        let _ = plain.read_to_end(&mut answer);
        // What comes back, if anything, is a TLS alert (content type 21), never an answer.
        assert!(answer.is_empty() || answer[0] == 21, "{addr}: plaintext got {answer:?}");
    }
    let plain_client = Client::connect(ClientConfig {
        connect_timeout: Duration::from_secs(3),
        request_timeout: Duration::from_secs(3),
        ..ClientConfig::new(node.public.clone())
    })
    .await;
    assert!(plain_client.is_err(), "a plaintext Rust client must not get through");
    // The node still serves TLS clients.
    let client = tls_client(&node, pki.client_tls(None)).await.expect("TLS client connects");
    Admin::new(client.clone()).create_topic("after", 1, 1).await.expect("create after the refusals");
    // A client trusting another CA refuses the node's certificate.
    let other = tempfile::tempdir().unwrap();
    Pki::ca(&other.path().join("ca.pem"), "another CA");
    let stranger = ClientTls::from_files(&other.path().join("ca.pem"), None).unwrap();
    assert!(tls_client(&node, stranger).await.is_err(), "a certificate from an untrusted CA was accepted");
    // The silent client is closed once the handshake timeout passes.
    silent.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let mut byte = [0u8; 1];
    let closed = silent.read(&mut byte);
    assert!(matches!(closed, Ok(0)) || closed.is_err(), "the silent client got {closed:?}");
    let waited = silent_since.elapsed();
    assert!(waited >= Duration::from_secs(8) && waited < Duration::from_secs(20), "closed after {waited:?}");
    let (_, metrics) = https_get(&node.admin, &pki.client_tls(None), "/metrics");
    // 3 plaintext natives, the plaintext Rust client, the stranger, the silent one.
    let failed = counter(&metrics, "strand_tls_handshakes_failed_total");
    assert!(failed >= 5, "failed handshakes counted: {failed}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutual_tls_requires_a_client_certificate_from_the_ca() {
    let pki = Pki::new();
    let node = start(&pki, &["--tls-client-ca", &pki.arg("ca.pem")]);
    assert!(tls_client(&node, pki.client_tls(None)).await.is_err(), "no client certificate, yet accepted");
    let cli = common::cli::strand(&node.public, &["--tls-ca", &pki.arg("ca.pem"), "topic", "list"], None);
    let said = String::from_utf8_lossy(&cli.stderr).trim().to_string();
    assert!(!cli.status.success() && said.contains("give --tls-cert and --tls-key"), "{said}");
    let with_cert = ["--tls-ca", &pki.arg("ca.pem"), "--tls-cert", &pki.arg("client.pem"), "--tls-key"];
    let listed = common::cli::strand(
        &node.public,
        &[&with_cert[..], &[&pki.arg("client-key.pem"), "topic", "list"]].concat(),
        None,
    );
    common::cli::ok(&listed);
    let rogue = Pki::ca(&pki.path("rogue-ca.pem"), "rogue CA");
    pki.client("intruder", &rogue);
    assert!(
        tls_client(&node, pki.client_tls(Some("intruder"))).await.is_err(),
        "a client certificate of another CA was accepted"
    );
    let client = tls_client(&node, pki.client_tls(Some("client"))).await.expect("a trusted client certificate");
    Admin::new(client.clone()).create_topic("mutual", 1, 1).await.expect("create");
    let producer = Producer::new(client.clone(), ProducerConfig::default()).await.expect("producer");
    producer.send(ProducerRecord::new("mutual", "hello")).await.expect("send").await.expect("delivered");
    assert_eq!(read_all(&client, "mutual", 1).await, vec![Bytes::from_static(b"hello")]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reloads_the_certificate_for_new_connections_only() {
    let pki = Pki::new();
    let first = std::fs::read(pki.path("server.pem")).unwrap();
    let node = start(&pki, &[]);
    let tls = pki.client_tls(None);
    let mut before = RawTls::connect(&node.public, &tls).unwrap();
    let first_der = before.served();
    assert!(matches!(before.hello().unwrap(), Response::Handshake(_)));
    // A new certificate (new key, new name) in the same files, then SIGHUP.
    let second_der = pki.server("server", "strand node one, renewed");
    assert_ne!(first_der, second_der);
    assert_ne!(std::fs::read(pki.path("server.pem")).unwrap(), first);
    node.signal("HUP");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let fresh = RawTls::connect(&node.public, &tls).unwrap();
        if fresh.served() == second_der {
            break;
        }
        assert_eq!(fresh.served(), first_der);
        assert!(Instant::now() < deadline, "new connections never got the reloaded certificate");
        std::thread::sleep(Duration::from_millis(50));
    }
    // The connection opened before the reload goes on, with its certificate.
    assert!(matches!(before.hello().unwrap(), Response::Handshake(_)), "an open connection broke at reload");
    assert_eq!(before.served(), first_der);
    // A broken certificate file: the reload fails, the node keeps serving the second one.
    std::fs::write(pki.path("server.pem"), "not a certificate").unwrap();
    node.signal("HUP");
    std::thread::sleep(Duration::from_millis(500));
    let mut after = RawTls::connect(&node.public, &tls).unwrap();
    assert_eq!(after.served(), second_der, "a failed reload must keep the last good certificate");
    assert!(matches!(after.hello().unwrap(), Response::Handshake(_)));
    assert!(matches!(before.hello().unwrap(), Response::Handshake(_)));
}

#[test]
fn kcat_produces_and_consumes_over_ssl_on_the_kafka_port() {
    let pki = Pki::new();
    let node = start(&pki, &[]);
    let ca = format!("ssl.ca.location={}", pki.arg("ca.pem"));
    let kcat = |args: &[&str], stdin: &[u8]| {
        let mut child = Command::new("kcat")
            .args(["-b", &node.kafka, "-X", "security.protocol=SSL", "-X", &ca])
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("kcat is installed (Debian package kcat)");
        child.stdin.take().unwrap().write_all(stdin).unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "kcat {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap()
    };
    let create = ["--tls-ca", &pki.arg("ca.pem"), "topic", "create", "kssl", "--partitions", "1"];
    common::cli::ok(&common::cli::strand(&node.public, &create, None));
    kcat(&["-P", "-t", "kssl", "-K", ":"], b"k1:one\nk2:two\nk3:three\n");
    let read = kcat(&["-C", "-t", "kssl", "-o", "beginning", "-e", "-f", "%o %k %s\n"], b"");
    assert_eq!(read, "0 k1 one\n1 k2 two\n2 k3 three\n");
}

#[test]
fn the_cli_speaks_tls_with_tls_ca() {
    use common::cli::{ok, strand};
    let pki = Pki::new();
    let node = start(&pki, &[]);
    let ca = pki.arg("ca.pem");
    ok(&strand(&node.public, &["--tls-ca", &ca, "topic", "create", "clitls", "--partitions", "1"], None));
    ok(&strand(&node.public, &["--tls-ca", &ca, "produce", "clitls"], Some(b"alpha\nbeta\n")));
    let out =
        ok(&strand(&node.public, &["--tls-ca", &ca, "consume", "clitls", "--from-beginning", "--count", "2"], None));
    assert_eq!(out, "alpha\nbeta\n");
    // Without --tls-ca the CLI cannot talk to the TLS port, and says so in one line.
    let plain = strand(&node.public, &["topic", "list"], None);
    assert!(!plain.status.success());
    let said = String::from_utf8_lossy(&plain.stderr).trim().to_string();
    assert_eq!(said.lines().count(), 1, "{said}");
    assert!(said.contains("give --tls-ca"), "{said}");
}

#[test]
fn the_admin_http_speaks_https() {
    let pki = Pki::new();
    let node = start(&pki, &[]);
    let (status, body) = https_get(&node.admin, &pki.client_tls(None), "/health");
    assert_eq!(status, 200, "{body}");
    let (status, metrics) = https_get(&node.admin, &pki.client_tls(None), "/metrics");
    assert_eq!(status, 200);
    assert!(metrics.contains("strand_tls_handshakes_failed_total"), "{metrics}");
    // Plain HTTP gets no answer.
    let mut plain = TcpStream::connect(&node.admin).unwrap();
    plain.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    plain.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").unwrap();
    let mut text = Vec::new();
    let _ = plain.read_to_end(&mut text);
    assert!(!text.starts_with(b"HTTP/1.1 200"), "plain HTTP was answered on the HTTPS admin port");
}

#[test]
fn bad_or_half_given_tls_files_stop_the_node_with_one_line() {
    let pki = Pki::new();
    let dir = tempfile::tempdir().unwrap();
    let run = |tls: &[&str]| {
        let out = Command::new(node_binary())
            .arg("--data-dir")
            .arg(dir.path())
            .args(["--listen", "127.0.0.1:0", "--admin", "127.0.0.1:0", "--kafka-listen", "off"])
            .args(["--shard-port-base", "0", "--shards", "1"])
            .args(tls)
            .env("RUST_LOG", "off")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .output()
            .expect("run strand-node");
        (out.status.code(), String::from_utf8_lossy(&out.stderr).trim().to_string())
    };
    let missing = pki.arg("missing.pem");
    let (code, err) = run(&["--tls-cert", &missing, "--tls-key", &pki.arg("server-key.pem")]);
    assert_eq!(code, Some(78), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("missing.pem") && err.contains("no such file"), "{err}");
    let (code, err) = run(&["--tls-cert", &pki.arg("server.pem"), "--tls-key", &pki.arg("client-key.pem")]);
    assert_eq!(code, Some(78), "{err}");
    assert!(err.contains("do not go together"), "{err}");
    let (code, err) = run(&["--tls-cert", &pki.arg("server.pem")]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("--tls-cert needs --tls-key"), "{err}");
}

/// SASL over TLS on the Kafka port (`SASL_SSL`): PLAIN, refused on a plaintext connection,
/// is accepted here (the session knows its connection is TLS), SCRAM-SHA-512 too, and a
/// wrong PLAIN password is refused.
#[test]
fn kcat_sasl_ssl_with_plain_and_scram() {
    use common::cli::{ok, strand};
    let pki = Pki::new();
    let node = start(&pki, &[]);
    let ca = pki.arg("ca.pem");
    ok(&strand(&node.public, &["--tls-ca", &ca, "topic", "create", "sasl", "--partitions", "1"], None));
    let user = Command::new(support::cli_binary())
        .args(["--bootstrap", &node.public, "--tls-ca", &ca, "user", "create", "alice"])
        .env("STRAND_NEW_PASSWORD", "alice-pw")
        .output()
        .unwrap();
    assert!(user.status.success(), "{}", String::from_utf8_lossy(&user.stderr));
    let ca_location = format!("ssl.ca.location={ca}");
    let kcat = |mechanism: &str, password: &str, args: &[&str], stdin: &[u8]| {
        let mut child = Command::new("kcat")
            .args(["-b", &node.kafka, "-X", "security.protocol=SASL_SSL", "-X", &ca_location])
            .args(["-X", &format!("sasl.mechanisms={mechanism}"), "-X", "sasl.username=alice"])
            .args(["-X", &format!("sasl.password={password}")])
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("kcat is installed (Debian package kcat)");
        child.stdin.take().unwrap().write_all(stdin).unwrap();
        child.wait_with_output().unwrap()
    };
    let out = kcat("PLAIN", "alice-pw", &["-P", "-t", "sasl"], b"over-tls\n");
    assert!(out.status.success(), "PLAIN over TLS: {}", String::from_utf8_lossy(&out.stderr));
    let out = kcat("SCRAM-SHA-512", "alice-pw", &["-C", "-t", "sasl", "-o", "beginning", "-e"], b"");
    assert!(out.status.success(), "SCRAM over TLS: {}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "over-tls\n");
    let out = kcat("PLAIN", "wrong", &["-L", "-m", "3"], b"");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("invalid user name or password"));
}
