//! Hostile and broken clients against a live node: a seeded fuzz campaign over the network
//! port (random bytes, mutated headers and payloads, truncated frames, oversized length
//! prefixes, unknown APIs, from many connections), slowloris connections, 10 000 idle
//! connections, and consumers that never read their socket.
//!
//! Throughout, a [`Canary`] must keep getting produce+fetch served, the node's RSS must stay
//! under [`RSS_BOUND_KIB`], and the node must neither exit nor panic.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use rand::Rng;
use strand_reliability::client::batch_of;
use strand_reliability::monitor::{Canary, RssMonitor};
use strand_reliability::profile::{self, write_result};
use strand_reliability::{NodeProcess, Profile, WireClient};
use strand_wire::codec::{decode_request, encode_request, request_frame, DecodeError};
use strand_wire::frame::FramePrefix;
use strand_wire::msg::*;

/// The node's resident memory must stay below this, whatever the clients do.
const RSS_BOUND_KIB: u64 = 512 * 1024;
const TIMEOUT: Duration = Duration::from_secs(10);

/// A node under attack, with its observers.
struct Arena {
    _dir: tempfile::TempDir,
    node: NodeProcess,
    canary: Canary,
    rss: RssMonitor,
}

impl Arena {
    fn start() -> Arena {
        let dir = tempfile::tempdir().expect("temp dir");
        let node = NodeProcess::start(dir.path(), &["--shards", "2"]).expect("start node");
        let canary = Canary::start(node.public, "canary").expect("canary");
        let rss = RssMonitor::start(node.pid(), Duration::from_millis(100));
        assert!(canary.wait_progress(3, TIMEOUT), "canary not served before the attack");
        Arena { _dir: dir, node, canary, rss }
    }

    /// The canary must make progress now, while the attack is on.
    fn assert_serving(&mut self, phase: &str) {
        assert!(self.node.is_running(), "{phase}: node exited; log:\n{}", self.node.log_tail(30));
        let started = Instant::now();
        assert!(
            self.canary.wait_progress(5, TIMEOUT),
            "{phase}: the well-behaved client was not served; failures {:?}",
            self.canary.failures()
        );
        println!("{phase}: canary served 5 round trips in {:?}", started.elapsed());
        let rss = self.rss.max_kib();
        assert!(rss < RSS_BOUND_KIB, "{phase}: node RSS reached {rss} KiB (bound {RSS_BOUND_KIB} KiB)");
    }

    /// Final checks; returns the JSON summary of the run.
    fn finish(mut self, phase: &str) -> serde_json::Value {
        self.assert_serving(phase);
        let rss = self.rss.stop();
        let canary = self.canary.stop().expect("canary read back");
        assert!(self.node.is_running(), "{phase}: node exited");
        assert_eq!(self.node.panic_line(), None, "{phase}: node panicked");
        assert!(canary.failures.is_empty(), "{phase}: canary failures: {:?}", canary.failures);
        assert!(canary.verified.acked_checked >= 10, "{phase}: canary verified only {:?}", canary.verified);
        assert!(rss.max_kib < RSS_BOUND_KIB, "{phase}: RSS {} KiB", rss.max_kib);
        println!(
            "{phase}: node RSS max {} KiB over {} samples; canary {} round trips, p50 {:?}, p99 {:?}, max {:?}, {} records verified",
            rss.max_kib, rss.samples, canary.round_trips, canary.latency.p50, canary.latency.p99, canary.latency.max,
            canary.verified.acked_checked
        );
        serde_json::json!({
            "rss_max_kib": rss.max_kib, "rss_samples": rss.samples, "canary_round_trips": canary.round_trips,
            "canary_latency": canary.latency.to_json(), "canary_records_verified": canary.verified.acked_checked,
        })
    }
}

/// Valid requests the fuzzer starts from (then mutates).
fn templates() -> Vec<(Request, Vec<u8>)> {
    let batch = batch_of(&[b"fuzz-value".to_vec(), vec![7u8; 300]]).to_vec();
    let produce = |partition, len: usize| {
        Request::Produce(ProduceRequest {
            acks: Acks::Leader,
            timeout_ms: 1000,
            partitions: vec![ProducePartition { topic: "fuzz".into(), partition, bytes_len: len as u32 }],
        })
    };
    let fetch = Request::Fetch(FetchRequest {
        max_wait_ms: 10,
        min_bytes: 1,
        max_bytes: 1 << 16,
        partitions: vec![FetchPartition { topic: "fuzz".into(), partition: 0, offset: 0, max_bytes: 1 << 16 }],
    });
    vec![
        (produce(0, batch.len()), batch.clone()),
        (produce(1, batch.len()), batch),
        (fetch, Vec::new()),
        (Request::Metadata(MetadataRequest { topics: vec!["fuzz".into()] }), Vec::new()),
        (Request::ListTopics, Vec::new()),
        (Request::Handshake(HandshakeRequest { protocol_version: 1, client_id: "fuzz".into() }), Vec::new()),
        (
            Request::CreateTopic(CreateTopicRequest {
                name: "fz".into(),
                partitions: 1,
                replication_factor: 1,
                configs: Vec::new(),
            }),
            Vec::new(),
        ),
        (Request::ListGroups, Vec::new()),
    ]
}

/// A byte position and value that turn a valid header into an unknown API, found by probing
/// the decoder (so the fuzzer does not depend on the FlatBuffers layout).
fn unknown_api_mutation(header: &[u8]) -> Option<(usize, u8)> {
    (0..header.len()).find_map(|i| {
        (100..=250u8).step_by(50).find_map(|v| {
            let mut h = header.to_vec();
            h[i] = v;
            matches!(decode_request(&h), Err(DecodeError::UnknownApi { .. })).then_some((i, v))
        })
    })
}

#[derive(Default)]
struct FuzzCounts {
    frames: AtomicU64,
    bytes: AtomicU64,
    responses: AtomicU64,
    closed_by_node: AtomicU64,
}

/// One fuzz frame of a random kind.
fn fuzz_frame(
    rng: &mut profile::SeedRng,
    templates: &[(Request, Vec<u8>)],
    unknown: Option<(usize, u8)>,
) -> (Vec<u8>, bool) {
    let (request, payload) = &templates[rng.gen_range(0..templates.len())];
    let header = encode_request(&RequestHeader { correlation_id: rng.gen(), request: request.clone() });
    let frame = |h: &[u8], p: &[u8]| {
        let mut out = FramePrefix::new(h.len(), p.len()).to_bytes().to_vec();
        out.extend_from_slice(h);
        out.extend_from_slice(p);
        out
    };
    let mutate = |rng: &mut profile::SeedRng, bytes: &mut Vec<u8>| {
        for _ in 0..rng.gen_range(1..=4) {
            let i = rng.gen_range(0..bytes.len());
            bytes[i] = rng.gen();
        }
    };
    // The bool says whether the stream stays framed (so later frames on it still make sense).
    // Kinds 0, 3 and 4 desynchronize the stream and end the connection: keep them rarer.
    let kind = match rng.gen_range(0..20) {
        k @ 0..=4 => k,
        k => 5 + k % 3,
    };
    match kind {
        0 => ((0..rng.gen_range(1..512)).map(|_| rng.gen()).collect(), false),
        1 => {
            let mut h = header.clone();
            mutate(rng, &mut h);
            (frame(&h, payload), true)
        }
        2 if !payload.is_empty() => {
            let mut p = payload.clone();
            mutate(rng, &mut p);
            (frame(&header, &p), true)
        }
        3 => {
            let full = frame(&header, payload);
            (full[..rng.gen_range(1..full.len())].to_vec(), false)
        }
        4 => {
            let prefix =
                FramePrefix { total_len: rng.gen_range(1 << 23..=u32::MAX), header_len: rng.gen_range(1..4096) };
            (prefix.to_bytes().to_vec(), false)
        }
        5 | 6 => {
            let mut h = header.clone();
            if let Some((i, v)) = unknown.filter(|&(i, _)| i < h.len()) {
                h[i] = v;
            }
            (frame(&h, payload), true)
        }
        _ => (frame(&header, payload), true),
    }
}

/// One fuzz connection: frames until one desynchronizes the stream, then drain replies.
fn fuzz_connection(addr: SocketAddr, seed: u64, frames_max: u32, counts: &FuzzCounts) {
    let mut rng = profile::rng(seed);
    let templates = templates();
    let unknown = unknown_api_mutation(&encode_request(&RequestHeader {
        correlation_id: 1,
        request: Request::Metadata(MetadataRequest { topics: vec!["fuzz".into()] }),
    }));
    let Ok(mut stream) = TcpStream::connect_timeout(&addr, TIMEOUT) else { return };
    let _ = stream.set_write_timeout(Some(Duration::from_secs(2)));
    for _ in 0..frames_max {
        let (bytes, framed) = fuzz_frame(&mut rng, &templates, unknown);
        if stream.write_all(&bytes).is_err() {
            counts.closed_by_node.fetch_add(1, Ordering::Relaxed);
            return;
        }
        counts.frames.fetch_add(1, Ordering::Relaxed);
        counts.bytes.fetch_add(bytes.len() as u64, Ordering::Relaxed);
        if !framed {
            break;
        }
    }
    let _ = stream.shutdown(Shutdown::Write);
    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
    while let Ok((_, _)) = strand_reliability::client::read_response(&mut stream) {
        counts.responses.fetch_add(1, Ordering::Relaxed);
    }
}

#[test]
fn fuzz_campaign_over_the_network_port() {
    let profile = Profile::from_env();
    let seed = profile::seed("fuzz_campaign");
    let (connections, frames_max) = profile.pick((600u64, 40u32), (30_000, 200));
    let mut arena = Arena::start();
    WireClient::connect(arena.node.public, TIMEOUT).and_then(|mut c| c.create_topic("fuzz", 2)).expect("topic");
    let counts = Arc::new(FuzzCounts::default());
    let started = Instant::now();
    let threads: Vec<_> = (0..4u64)
        .map(|t| {
            let (addr, counts) = (arena.node.public, counts.clone());
            std::thread::spawn(move || {
                for c in (t..connections).step_by(4) {
                    fuzz_connection(addr, seed ^ c.wrapping_mul(0x9e37_79b9_7f4a_7c15), frames_max, &counts);
                }
            })
        })
        .collect();
    for t in threads {
        t.join().expect("fuzz thread");
    }
    let frames = counts.frames.load(Ordering::Relaxed);
    println!(
        "fuzz_campaign: seed {seed}: {connections} connections, {frames} frames ({} bytes) in {:?}; {} responses, {} writes refused by a closed connection",
        counts.bytes.load(Ordering::Relaxed),
        started.elapsed(),
        counts.responses.load(Ordering::Relaxed),
        counts.closed_by_node.load(Ordering::Relaxed)
    );
    assert!(frames >= connections, "the campaign sent too little to mean anything");
    assert!(counts.responses.load(Ordering::Relaxed) > 0, "the node answered nothing: the fuzzer is not reaching it");
    arena.assert_serving("fuzz campaign");
    let mut summary = arena.finish("fuzz campaign");
    summary["seed"] = seed.into();
    summary["connections"] = connections.into();
    summary["frames"] = frames.into();
    summary["responses"] = counts.responses.load(Ordering::Relaxed).into();
    write_result("fuzz_campaign", &summary);
}

#[test]
fn slowloris_connections_do_not_starve_others() {
    let mut arena = Arena::start();
    let addr = arena.node.public;
    let dribblers: Vec<_> = (0..16u64)
        .map(|i| {
            std::thread::spawn(move || {
                let mut stream = TcpStream::connect_timeout(&addr, TIMEOUT).expect("connect");
                stream.set_read_timeout(Some(TIMEOUT)).expect("timeout");
                let mut frame = BytesMut::new();
                request_frame(
                    &mut frame,
                    &RequestHeader { correlation_id: 1000 + i, request: Request::ListTopics },
                    &[],
                );
                for byte in frame.iter() {
                    stream.write_all(&[*byte]).expect("dribble");
                    std::thread::sleep(Duration::from_millis(100));
                }
                let (header, _) =
                    strand_reliability::client::read_response(&mut stream).expect("slow request answered");
                assert_eq!(header.correlation_id, 1000 + i);
                frame.len()
            })
        })
        .collect();
    // A connection that stalls forever half-way through a frame must not hurt either.
    let mut stalled = TcpStream::connect_timeout(&addr, TIMEOUT).expect("connect");
    stalled.write_all(&FramePrefix::new(100, 0).to_bytes()[..6]).expect("half a prefix");
    std::thread::sleep(Duration::from_secs(1));
    arena.assert_serving("slowloris (during)");
    let lens: Vec<usize> = dribblers.into_iter().map(|d| d.join().expect("dribbler")).collect();
    println!("slowloris: 16 connections dribbled frames of {lens:?} bytes at 1 byte / 100 ms; all answered");
    let summary = arena.finish("slowloris");
    write_result("slowloris", &summary);
    drop(stalled);
}

/// Raises the soft open-files limit of this process towards `want` with prlimit(1); the soft limit after.
fn raise_nofile(want: u64) -> u64 {
    let pid = std::process::id().to_string();
    let read = || {
        let out =
            std::process::Command::new("prlimit").args(["--pid", &pid, "--nofile", "--raw", "--noheadings"]).output();
        out.ok().and_then(|o| {
            let text = String::from_utf8_lossy(&o.stdout).to_string();
            let fields: Vec<u64> = text.split_whitespace().filter_map(|f| f.parse().ok()).collect();
            (fields.len() >= 2).then(|| (fields[0], fields[1]))
        })
    };
    let Some((soft, hard)) = read() else { return 1024 };
    if soft < want {
        let target = want.min(hard);
        let _ =
            std::process::Command::new("prlimit").args(["--pid", &pid, &format!("--nofile={target}:{hard}")]).status();
    }
    read().map_or(soft, |(soft, _)| soft)
}

#[test]
fn ten_thousand_idle_connections() {
    const LIMIT: u64 = 10_000; // the node's default connections_max
    const PER_IP: u64 = 1_000; // the node's default connections_per_ip_max
    let excess = 100u64;
    let soft = raise_nofile(LIMIT + excess + 512);
    let idle = (LIMIT + excess).min(soft.saturating_sub(512));
    if idle < LIMIT + excess {
        println!(
            "idle connections: open-files limit {soft} allows only {idle} connections (wanted {})",
            LIMIT + excess
        );
    }
    let mut arena = Arena::start();
    let started = Instant::now();
    let mut sockets = Vec::with_capacity(idle as usize);
    for _ in 0..idle {
        match TcpStream::connect_timeout(&arena.node.public, TIMEOUT) {
            Ok(s) => sockets.push(s),
            Err(e) => panic!("connect #{} failed: {e}", sockets.len()),
        }
    }
    println!("idle connections: {} connected in {:?}", sockets.len(), started.elapsed());
    std::thread::sleep(Duration::from_secs(2));
    arena.assert_serving("10k idle connections");
    let refused = sockets.iter().filter(|s| closed_by_peer(s)).count() as u64;
    // Every connection comes from 127.0.0.1, the canary's too: that one source may hold
    // connections_per_ip_max of them, so the node's other slots stay free for other sources.
    let held = idle - refused;
    println!("idle connections: {refused} of {idle} closed by the node, {held} held (per-IP cap {PER_IP})");
    assert!(held <= PER_IP, "one source holds {held} connections, past connections_per_ip_max {PER_IP}");
    assert!(held + 50 >= PER_IP.min(idle), "node closed {refused} idle connections, far more than its per-IP cap asks");
    drop(sockets);
    std::thread::sleep(Duration::from_secs(1));
    let mut summary = arena.finish("10k idle connections (after close)");
    summary["idle_connections"] = idle.into();
    summary["refused"] = refused.into();
    write_result("idle_connections", &summary);
}

/// Whether the node closed (or reset) this socket, after at most its refusal frame.
fn closed_by_peer(mut stream: &TcpStream) -> bool {
    let _ = stream.set_nonblocking(true);
    let mut buf = [0u8; 512];
    let mut received = 0;
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return true,
            Ok(n) => {
                received += n;
                assert!(received <= 4096, "an idle connection was sent {received} bytes: more than a refusal");
            }
            Err(e) => return e.kind() != std::io::ErrorKind::WouldBlock,
        }
    }
}

/// 32 batches of 4 × 64 KiB in topic "bulk", so every fetch answer is a 1 MiB sendfile.
fn preload_bulk(addr: SocketAddr) {
    let mut client = WireClient::connect(addr, TIMEOUT).expect("connect");
    client.create_topic("bulk", 1).expect("topic");
    for i in 0..32u64 {
        let values: Vec<Vec<u8>> = (0..4).map(|r| vec![b'a' + (i % 26) as u8 + r as u8; 64 * 1024]).collect();
        client.produce_values("bulk", 0, &values).expect("preload").expect("accepted");
    }
}

/// Never-reading consumers: the node stops reading their requests (TCP backpressure), its
/// memory stays bounded, it stays up, and once they disconnect it serves again.
#[test]
fn never_reading_consumers_are_backpressured_and_bounded() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut node = NodeProcess::start(dir.path(), &["--shards", "2"]).expect("start node");
    let rss = RssMonitor::start(node.pid(), Duration::from_millis(100));
    preload_bulk(node.public);
    let stuck = stuck_consumers(node.public, 8);
    let sent: Vec<u64> = stuck.iter().map(|(_, n)| *n).collect();
    println!("never-reading consumers: fetch requests written before the node stopped reading: {sent:?}");
    assert!(sent.iter().all(|&n| n < FETCHES_MAX), "the node kept reading requests it could not answer: {sent:?}");
    std::thread::sleep(Duration::from_secs(2));
    assert!(node.is_running(), "node exited; log:\n{}", node.log_tail(30));
    drop(stuck);
    // After they leave, a fresh client must be served (bounded by the node's 30 s send-stall limit).
    let left = Instant::now();
    let deadline = left + Duration::from_secs(45);
    let recovered = loop {
        let attempt = WireClient::connect(node.public, TIMEOUT).and_then(|mut c| c.fetch("bulk", 0, 0, 0));
        if attempt.is_ok() {
            break left.elapsed();
        }
        assert!(Instant::now() < deadline, "node did not serve again after the stuck consumers left");
    };
    let rss = rss.stop();
    assert!(rss.max_kib < RSS_BOUND_KIB, "node RSS reached {} KiB", rss.max_kib);
    assert_eq!(node.panic_line(), None, "node panicked");
    println!(
        "never-reading consumers: RSS max {} KiB; a fresh client served {recovered:?} after they left",
        rss.max_kib
    );
    write_result(
        "never_reading_consumers",
        &serde_json::json!({ "requests_before_backpressure": sent, "rss_max_kib": rss.max_kib }),
    );
}

/// The stricter promise: other clients keep being served, with no stall, while and after
/// never-reading consumers hold fetch answers (the node's sends to them wait on io_uring
/// poll, not on a shared blocking thread).
#[test]
fn never_reading_consumers_do_not_stall_others() {
    let mut arena = Arena::start();
    preload_bulk(arena.node.public);
    let stuck = stuck_consumers(arena.node.public, 8);
    std::thread::sleep(Duration::from_secs(2));
    arena.assert_serving("never-reading consumers");
    drop(stuck);
    arena.finish("never-reading consumers (after close)");
}

/// `count` never-reading consumers filled in parallel.
fn stuck_consumers(addr: SocketAddr, count: usize) -> Vec<(TcpStream, u64)> {
    let threads: Vec<_> = (0..count).map(|_| std::thread::spawn(move || write_fetches_until_blocked(addr))).collect();
    threads.into_iter().map(|t| t.join().expect("stuck consumer")).collect()
}

/// Cap on fetch requests one never-reading consumer writes (about 10 MB of frames).
const FETCHES_MAX: u64 = 100_000;

/// Writes 1 MiB fetch requests without ever reading, until a write blocks for 2 s (the node
/// stopped reading: backpressure) or [`FETCHES_MAX`]; the socket and the requests written.
fn write_fetches_until_blocked(addr: SocketAddr) -> (TcpStream, u64) {
    let mut stream = TcpStream::connect_timeout(&addr, TIMEOUT).expect("connect");
    stream.set_write_timeout(Some(Duration::from_secs(2))).expect("timeout");
    let mut sent = 0u64;
    while sent < FETCHES_MAX {
        let request = Request::Fetch(FetchRequest {
            max_wait_ms: 0,
            min_bytes: 1,
            max_bytes: 1 << 20,
            partitions: vec![FetchPartition { topic: "bulk".into(), partition: 0, offset: 0, max_bytes: 1 << 20 }],
        });
        let mut frame = BytesMut::new();
        request_frame(&mut frame, &RequestHeader { correlation_id: sent, request }, &[]);
        if stream.write_all(&frame).is_err() {
            break;
        }
        sent += 1;
    }
    (stream, sent)
}
