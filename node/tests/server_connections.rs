//! Connection bounds by source against the real binary (issue #15, "10 100 idle
//! connections: every other client refused while they are held"): an idle connection is
//! closed after `connections_max_idle_ms` while a long-poll fetch in flight is not idle; one
//! source IP holds at most `connections_per_ip_max` connections, so while it holds its cap
//! another source (127.0.0.2, which Linux routes to `lo`) is still served; the last
//! `connections_reserved` slots go only to sources holding none.

mod common;

use std::io::{ErrorKind, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpStream};
use std::os::fd::FromRawFd;
use std::path::Path;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use common::Node;
use strand_wire::codec::{decode_response, request_frame};
use strand_wire::frame::FramePrefix;
use strand_wire::msg::*;
use strand_wire::ErrorCode;

const IDLE_MS: u64 = 1_000;

/// A node with 8 connection slots, 4 per source, 2 reserved, and a 1 s idle timeout.
fn start(dir: &Path) -> Node {
    let config = dir.join("strand.toml");
    let text = format!(
        "connections_max = 8\nconnections_per_ip_max = 4\nconnections_reserved = 2\nconnections_max_idle_ms = {IDLE_MS}\n"
    );
    std::fs::write(&config, text).unwrap();
    Node::start(&dir.join("data"), 1, &["--config", config.to_str().unwrap()])
}

/// A TCP connection to `to` from the local address `from` (any 127/8 address is on `lo`).
fn connect_from(from: Ipv4Addr, to: SocketAddr) -> TcpStream {
    let SocketAddr::V4(to) = to else { panic!("the node listens on IPv4") };
    let sockaddr = |a: SocketAddrV4| libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: a.port().to_be(),
        sin_addr: libc::in_addr { s_addr: u32::from(*a.ip()).to_be() },
        sin_zero: [0; 8],
    };
    let len = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
    let (local, remote) = (sockaddr(SocketAddrV4::new(from, 0)), sockaddr(to));
    // SAFETY: plain socket(2); the fd is checked and owned by the TcpStream below.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0) };
    assert!(fd >= 0, "socket: {}", std::io::Error::last_os_error());
    // SAFETY: `fd` is a socket we own; `stream` closes it on every path from here on.
    let stream = unsafe { TcpStream::from_raw_fd(fd) };
    // SAFETY: `local` and `remote` are valid sockaddr_in values of `len` bytes.
    let bound = unsafe { libc::bind(fd, std::ptr::addr_of!(local).cast(), len) };
    assert_eq!(bound, 0, "bind {from}: {}", std::io::Error::last_os_error());
    // SAFETY: as above.
    let connected = unsafe { libc::connect(fd, std::ptr::addr_of!(remote).cast(), len) };
    assert_eq!(connected, 0, "connect {to} from {from}: {}", std::io::Error::last_os_error());
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    stream
}

fn send(stream: &mut TcpStream, cid: u64, request: Request) {
    let mut out = BytesMut::new();
    request_frame(&mut out, &RequestHeader { correlation_id: cid, request }, &[]);
    stream.write_all(&out).unwrap();
}

/// The next response frame, or `None` when the node closed the connection.
fn recv(stream: &mut TcpStream) -> Option<ResponseHeader> {
    let mut prefix = [0u8; 8];
    match stream.read_exact(&mut prefix) {
        Ok(()) => {}
        Err(e) if matches!(e.kind(), ErrorKind::UnexpectedEof | ErrorKind::ConnectionReset) => return None,
        Err(e) => panic!("no response and no close: {e}"),
    }
    let prefix = FramePrefix::parse(&prefix, usize::MAX).expect("valid response prefix");
    let mut rest = vec![0u8; prefix.header_len as usize + prefix.payload_len()];
    stream.read_exact(&mut rest).unwrap();
    Some(decode_response(&rest[..prefix.header_len as usize]).expect("valid response header"))
}

/// Whether the node serves this connection: a ListTopics is answered.
fn served(stream: &mut TcpStream) -> bool {
    send(stream, 1, Request::ListTopics);
    match recv(stream) {
        Some(h) if h.correlation_id == 1 => true,
        Some(h) => {
            assert_eq!((h.correlation_id, h.error), (0, ErrorCode::Throttled), "a refusal: {:?}", h.message);
            assert_eq!(recv(stream).map(|h| h.correlation_id), None, "closed after the refusal");
            false
        }
        None => false,
    }
}

/// The refusal frame a refused connection gets before it is closed: its message.
fn refusal(stream: &mut TcpStream) -> String {
    let h = recv(stream).expect("a refused connection is told why");
    assert_eq!((h.correlation_id, h.error), (0, ErrorCode::Throttled), "{:?}", h.message);
    assert_eq!(recv(stream).map(|h| h.correlation_id), None, "closed after the refusal");
    h.message.unwrap_or_default()
}

fn metric(node: &Node, name: &str) -> u64 {
    let (status, body) = node.admin_get("/metrics");
    assert_eq!(status, 200);
    let prefix = format!("{name}{{shard=\"0\"}} ");
    body.lines().find_map(|l| l.strip_prefix(&prefix)).unwrap_or_else(|| panic!("{name} missing")).parse().unwrap()
}

const A: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 1);
const B: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 2);

#[test]
fn one_source_cannot_take_every_connection() {
    let dir = tempfile::tempdir().unwrap();
    let node = start(dir.path());
    // Source A tries to take all 8 slots: it gets its 4, the rest are refused with the reason.
    let mut held: Vec<TcpStream> = Vec::new();
    for _ in 0..4 {
        let mut s = connect_from(A, node.public);
        assert!(served(&mut s), "A's connection {} is within its cap", held.len() + 1);
        held.push(s);
    }
    for _ in 0..4 {
        let message = refusal(&mut connect_from(A, node.public));
        assert!(message.contains("connections_per_ip_max is 4"), "{message}");
        assert!(message.contains("holds 4"), "{message}");
    }
    // While A holds its cap, source B is served: it creates a topic, produces and reads back.
    let mut b = connect_from(B, node.public);
    let create = CreateTopicRequest { name: "t".into(), partitions: 1, replication_factor: 1, configs: Vec::new() };
    send(&mut b, 5, Request::CreateTopic(create));
    let created = recv(&mut b).expect("B is served");
    assert_eq!((created.correlation_id, created.error), (5, ErrorCode::None), "{:?}", created.message);
    assert!(served(&mut b));
    assert!(metric(&node, "strand_connections_refused_per_ip_total") >= 4);
    // Every held connection of A is still served: the refusals touched none of them.
    for s in &mut held {
        assert!(served(s));
    }
}

#[test]
fn reserved_slots_go_to_sources_holding_none() {
    let dir = tempfile::tempdir().unwrap();
    let node = start(dir.path());
    let mut held: Vec<TcpStream> = Vec::new();
    for from in [A, A, A, A, B, B] {
        let mut s = connect_from(from, node.public);
        assert!(served(&mut s), "within the unreserved 6");
        held.push(s);
    }
    // 6 of 8 open: B (holding 2) may not take a reserved slot ...
    let message = refusal(&mut connect_from(B, node.public));
    assert!(message.contains("connections_reserved"), "{message}");
    // ... but sources holding none may, up to connections_max.
    for from in [Ipv4Addr::new(127, 0, 0, 3), Ipv4Addr::new(127, 0, 0, 4)] {
        let mut s = connect_from(from, node.public);
        assert!(served(&mut s), "{from} holds none: a reserved slot");
        held.push(s);
    }
    assert!(!served(&mut connect_from(Ipv4Addr::new(127, 0, 0, 5), node.public)), "connections_max reached");
    assert_eq!(metric(&node, "strand_connections_refused_reserved_total"), 1);
    // A slot given back is usable again.
    drop(held.pop());
    let deadline = Instant::now() + Duration::from_secs(10);
    while !served(&mut connect_from(Ipv4Addr::new(127, 0, 0, 5), node.public)) {
        assert!(Instant::now() < deadline, "a closed connection's slot never came back");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn idle_connections_are_closed_but_long_polls_are_not() {
    let dir = tempfile::tempdir().unwrap();
    let node = start(dir.path());
    let mut setup = node.client();
    assert_eq!(setup.create_topic("t", 1).error, ErrorCode::None);
    drop(setup);

    let mut idle = connect_from(A, node.public);
    assert!(served(&mut idle));
    // A long-poll fetch that waits three idle timeouts for data that never comes.
    let mut polling = connect_from(A, node.public);
    let wait_ms = 3 * IDLE_MS as u32;
    let fetch = FetchRequest {
        max_wait_ms: wait_ms,
        min_bytes: 1,
        max_bytes: 1 << 20,
        partitions: vec![FetchPartition { topic: "t".into(), partition: 0, offset: 0, max_bytes: 1 << 20 }],
    };
    let started = Instant::now();
    send(&mut polling, 7, Request::Fetch(fetch));
    // A connection sending a request every half timeout stays open all along.
    let mut chatty = connect_from(A, node.public);
    while started.elapsed() < Duration::from_millis(2 * IDLE_MS) {
        assert!(served(&mut chatty), "an active connection was closed");
        std::thread::sleep(Duration::from_millis(IDLE_MS / 2));
    }
    let answer = recv(&mut polling).expect("the long poll is answered, not cut off as idle");
    assert_eq!((answer.correlation_id, answer.error), (7, ErrorCode::None), "{:?}", answer.message);
    assert!(started.elapsed() >= Duration::from_millis(u64::from(wait_ms) - 100), "the fetch waited");
    // The connection that sent nothing for longer than the timeout was closed without a word.
    assert_eq!(recv(&mut idle).map(|h| h.correlation_id), None, "idle connection still open");
    assert!(metric(&node, "strand_connections_closed_idle_total") >= 1);
    assert!(served(&mut connect_from(A, node.public)), "closing idle connections gave their slots back");
}

/// Byte-rate quotas (issue #20, "a quota visibly throttles a producer"): with a 256 KiB/s
/// produce quota, 1 MiB produced as fast as the answers come back takes at least the time
/// the quota allows after its one-second burst, the answers over the quota say how long to
/// wait, and fetches are metered by their answer bytes the same way. Only a lower bound on
/// time is asserted: the quota can only slow the client down, however slow the machine.
#[test]
fn quotas_throttle_producers_and_consumers_and_say_for_how_long() {
    const KIB: u64 = 1024;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("strand.toml");
    std::fs::write(&config, "quota_produce_bytes_per_sec = \"256KiB\"\nquota_fetch_bytes_per_sec = \"512KiB\"\n")
        .unwrap();
    let node = Node::start(&dir.path().join("data"), 1, &["--config", config.to_str().unwrap()]);
    let mut client = node.client();
    assert_eq!(client.create_topic("q", 1).error, ErrorCode::None);

    let value = vec![7u8; 64 * KIB as usize];
    let batch = common::batch1(&value);
    let started = Instant::now();
    let mut throttled = Vec::new();
    for _ in 0..16 {
        let request = Request::Produce(ProduceRequest {
            acks: Acks::Leader,
            timeout_ms: 10_000,
            partitions: vec![ProducePartition { topic: "q".into(), partition: 0, bytes_len: batch.len() as u32 }],
        });
        let (header, _) = client.call(request, &batch);
        assert_eq!(header.error, ErrorCode::None, "{:?}", header.message);
        throttled.push(header.throttle_ms);
    }
    let took = started.elapsed();
    // 1 MiB at 256 KiB/s after a 256 KiB burst; the last answer's wait is never served.
    let floor = Duration::from_secs_f64((1024.0 - 256.0 - 64.0) / 256.0 * 0.95);
    assert!(took >= floor, "16 × 64 KiB took {took:?}, under the quota's {floor:?}");
    assert_eq!(throttled[..3], [0, 0, 0], "the burst is free: {throttled:?}");
    assert!(throttled[4..].iter().all(|&ms| ms > 0), "every answer past the burst says to wait: {throttled:?}");
    assert!(throttled.iter().all(|&ms| ms <= 1_000), "no answer asks for more than its debt: {throttled:?}");

    // Fetches: 1 MiB back in 128 KiB answers at 512 KiB/s after a 512 KiB burst.
    let started = Instant::now();
    let (mut offset, mut fetched, mut fetch_throttled) = (0, 0u64, Vec::new());
    while fetched < 16 * 64 * KIB {
        let fetch = FetchRequest {
            max_wait_ms: 0,
            min_bytes: 1,
            max_bytes: 128 * KIB as u32,
            partitions: vec![FetchPartition { topic: "q".into(), partition: 0, offset, max_bytes: 128 * KIB as u32 }],
        };
        let (header, payload) = client.call(Request::Fetch(fetch), &[]);
        assert_eq!(header.error, ErrorCode::None, "{:?}", header.message);
        let Response::Fetch(r) = header.response else { panic!("not a fetch answer") };
        let part = &r.partitions[0];
        assert!(part.bytes_len > 0, "the backlog is there");
        // One record per batch: the batches fetched are the offsets to move on by.
        let batches = u64::from(part.bytes_len) / batch.len() as u64;
        assert_eq!(payload.len(), part.bytes_len as usize);
        assert_eq!(u64::from(part.bytes_len), batches * batch.len() as u64, "whole batches");
        offset += batches;
        fetched += batches * 64 * KIB;
        fetch_throttled.push(header.throttle_ms);
    }
    assert!(fetch_throttled.iter().any(|&ms| ms > 0), "fetches past the burst are throttled: {fetch_throttled:?}");
    assert!(started.elapsed() >= Duration::from_millis(400), "fetching 1 MiB took {:?}", started.elapsed());
    assert!(metric(&node, "strand_quota_throttled_total") >= 1);
}
