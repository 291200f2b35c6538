//! Test harness for the node's integration tests: starts the real `strand-node`
//! binary on 127.0.0.1 ephemeral ports in a temp data dir (SIGKILLed on drop, even
//! when a test panics) and drives it with a small blocking client over
//! `std::net::TcpStream` and the `strand-wire` codec.
#![allow(dead_code, reason = "each test binary uses a different part of the harness")]

pub mod etcd;
pub mod kafka;
pub mod loopfs;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use strand_wire::batch::{BatchBuilder, BatchIter};
use strand_wire::codec::{decode_response, request_frame};
use strand_wire::frame::FramePrefix;
use strand_wire::msg::*;
use strand_wire::ErrorCode;

/// A running node process.
pub struct Node {
    pub child: Child,
    pub public: SocketAddr,
    pub admin: SocketAddr,
    pub shard_ports: Vec<u16>,
    /// The Kafka-protocol port (`None` when started with `--kafka-listen off`).
    pub kafka: Option<SocketAddr>,
    pub data_dir: PathBuf,
    stderr_lines: mpsc::Receiver<String>,
    /// Every stderr line so far (for tests that grep the whole log).
    pub log: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

impl Node {
    /// Starts a node with `shards` shards on `data_dir` plus `extra` flags, and waits until it listens.
    pub fn start(data_dir: &Path, shards: u16, extra: &[&str]) -> Node {
        Node::launch(None, data_dir, shards, extra, &[])
    }

    /// Like [`Node::start`], with extra environment variables for the process.
    pub fn start_env(data_dir: &Path, shards: u16, extra: &[&str], env: &[(&str, &str)]) -> Node {
        Node::launch(None, data_dir, shards, extra, env)
    }

    /// Like [`Node::start`], with the process's working directory `cwd` (a relative
    /// `data_dir` is passed as given, so the node resolves it against `cwd`).
    pub fn start_in(cwd: &Path, data_dir: &Path, shards: u16, extra: &[&str]) -> Node {
        Node::launch(Some(cwd), data_dir, shards, extra, &[])
    }

    fn launch(cwd: Option<&Path>, data_dir: &Path, shards: u16, extra: &[&str], env: &[(&str, &str)]) -> Node {
        let mut command = Command::new(env!("CARGO_BIN_EXE_strand-node"));
        if let Some(cwd) = cwd {
            command.current_dir(cwd);
        }
        let mut child = command
            .args([
                "--data-dir",
                data_dir.to_str().unwrap(),
                "--listen",
                "127.0.0.1:0",
                "--admin",
                "127.0.0.1:0",
                "--kafka-listen",
                "127.0.0.1:0",
            ])
            .args(["--shards", &shards.to_string(), "--shard-port-base", "0"])
            .args(extra)
            .envs(env.iter().copied())
            .env("RUST_LOG", "info,glommio=error")
            .stderr(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .expect("spawn strand-node");
        let stderr = child.stderr.take().unwrap();
        let (tx, rx) = mpsc::channel();
        let log = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let log_writer = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                eprintln!("[node] {line}");
                log_writer.lock().unwrap().push(line.clone());
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut node = Node {
            child,
            public: "127.0.0.1:1".parse().unwrap(),
            admin: "127.0.0.1:1".parse().unwrap(),
            kafka: None,
            shard_ports: Vec::new(),
            data_dir: cwd.map_or_else(|| data_dir.to_path_buf(), |cwd| cwd.join(data_dir)),
            stderr_lines: rx,
            log,
        };
        let line = node.wait_for_line("strand-node listening:", Duration::from_secs(30));
        node.parse_listening(&line);
        node
    }

    fn parse_listening(&mut self, line: &str) {
        let rest = &line[line.find("strand-node listening:").unwrap()..];
        for field in rest.split_whitespace() {
            if let Some(v) = field.strip_prefix("public=") {
                self.public = v.parse().unwrap();
            } else if let Some(v) = field.strip_prefix("admin=") {
                self.admin = v.parse().unwrap();
            } else if let Some(v) = field.strip_prefix("kafka=") {
                self.kafka = v.parse().ok();
            } else if let Some(v) = field.strip_prefix("shards=") {
                self.shard_ports = v.split(',').map(|p| p.parse().unwrap()).collect();
            }
        }
        assert_ne!(self.public.port(), 1, "no public port in {line:?}");
    }

    /// Waits for a stderr line containing `needle`; panics on timeout or exit.
    pub fn wait_for_line(&mut self, needle: &str, timeout: Duration) -> String {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match self.stderr_lines.recv_timeout(left.max(Duration::from_millis(1))) {
                Ok(line) if line.contains(needle) => return line,
                Ok(_) => {}
                Err(_) => panic!("node did not log {needle:?} in {timeout:?} (status {:?})", self.child.try_wait()),
            }
        }
    }

    /// A client on the public port.
    pub fn client(&self) -> Client {
        Client::connect(self.public)
    }

    /// A client on shard `s`'s port.
    pub fn shard_client(&self, s: usize) -> Client {
        Client::connect(SocketAddr::new(self.public.ip(), self.shard_ports[s]))
    }

    /// Sends `signal` and waits (bounded) for exit.
    pub fn signal_and_wait(&mut self, signal: libc::c_int, timeout: Duration) -> std::process::ExitStatus {
        // SAFETY: plain kill(2) on our own child's pid.
        unsafe { libc::kill(self.child.id() as libc::pid_t, signal) };
        let deadline = std::time::Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(std::time::Instant::now() < deadline, "node did not exit after signal {signal}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// An HTTP GET on the admin port: (status, body).
    pub fn admin_get(&self, path: &str) -> (u16, String) {
        let mut s = TcpStream::connect(self.admin).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        write!(s, "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").unwrap();
        let mut text = String::new();
        s.read_to_string(&mut text).unwrap();
        let status = text.split_whitespace().nth(1).unwrap().parse().unwrap();
        let body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default();
        (status, body)
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A blocking request/response client.
pub struct Client {
    pub stream: TcpStream,
    next_cid: u64,
}

impl Client {
    pub fn connect(addr: SocketAddr) -> Client {
        let stream = TcpStream::connect(addr).unwrap();
        stream.set_nodelay(true).unwrap();
        stream.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        Client { stream, next_cid: 1 }
    }

    /// Like [`Client::connect`], but a refused connection (a dead node) is an error.
    pub fn try_connect(addr: SocketAddr) -> std::io::Result<Client> {
        let stream = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
        stream.set_nodelay(true)?;
        stream.set_read_timeout(Some(Duration::from_secs(30)))?;
        Ok(Client { stream, next_cid: 1 })
    }

    /// Sends and waits for the answer; a broken connection is an error, not a panic.
    pub fn try_call(&mut self, request: Request, payload: &[u8]) -> std::io::Result<(ResponseHeader, Bytes)> {
        let cid = self.next_cid;
        self.next_cid += 1;
        let mut out = BytesMut::new();
        request_frame(&mut out, &RequestHeader { correlation_id: cid, request }, payload);
        self.stream.write_all(&out)?;
        let (header, payload) = self.try_recv()?;
        assert_eq!(header.correlation_id, cid);
        Ok((header, payload))
    }

    /// Sends a request frame without waiting; returns its correlation id.
    pub fn send(&mut self, request: Request, payload: &[u8]) -> u64 {
        let cid = self.next_cid;
        self.next_cid += 1;
        let mut out = BytesMut::new();
        request_frame(&mut out, &RequestHeader { correlation_id: cid, request }, payload);
        self.stream.write_all(&out).unwrap();
        cid
    }

    /// Reads one response frame.
    pub fn recv(&mut self) -> (ResponseHeader, Bytes) {
        self.try_recv().expect("response")
    }

    /// Reads one response frame, or the IO error (e.g. the node closed the connection).
    pub fn try_recv(&mut self) -> std::io::Result<(ResponseHeader, Bytes)> {
        let mut prefix = [0u8; 8];
        self.stream.read_exact(&mut prefix)?;
        let prefix = FramePrefix::parse(&prefix, usize::MAX).expect("valid response prefix");
        let mut header = vec![0u8; prefix.header_len as usize];
        self.stream.read_exact(&mut header)?;
        let mut payload = vec![0u8; prefix.payload_len()];
        self.stream.read_exact(&mut payload)?;
        Ok((decode_response(&header).expect("valid response header"), Bytes::from(payload)))
    }

    /// Sends and waits for the matching response.
    pub fn call(&mut self, request: Request, payload: &[u8]) -> (ResponseHeader, Bytes) {
        let cid = self.send(request, payload);
        let (header, payload) = self.recv();
        assert_eq!(header.correlation_id, cid);
        (header, payload)
    }

    pub fn create_topic(&mut self, name: &str, partitions: u32) -> ResponseHeader {
        self.create_replicated_topic(name, partitions, 1)
    }

    /// CreateTopic with `replication_factor` replicas per partition (cluster mode).
    pub fn create_replicated_topic(&mut self, name: &str, partitions: u32, replication_factor: u16) -> ResponseHeader {
        let request = Request::CreateTopic(CreateTopicRequest {
            name: name.into(),
            partitions,
            replication_factor,
            configs: Vec::new(),
        });
        self.call(request, &[]).0
    }

    /// Produces `batch` bytes to one partition; the partition response.
    pub fn produce(&mut self, topic: &str, partition: u32, batch: &[u8]) -> ProducePartitionResponse {
        let request = Request::Produce(ProduceRequest {
            acks: Acks::Leader,
            timeout_ms: 10_000,
            partitions: vec![ProducePartition { topic: topic.into(), partition, bytes_len: batch.len() as u32 }],
        });
        let (header, _) = self.call(request, batch);
        assert_eq!(header.error, ErrorCode::None, "{:?}", header.message);
        match header.response {
            Response::Produce(mut r) => r.partitions.remove(0),
            other => panic!("not a produce response: {other:?}"),
        }
    }

    /// Fetches one partition; (response, batch bytes).
    pub fn fetch(&mut self, topic: &str, partition: u32, offset: u64, wait_ms: u32) -> (FetchPartitionResponse, Bytes) {
        let request = Request::Fetch(FetchRequest {
            max_wait_ms: wait_ms,
            min_bytes: 1,
            max_bytes: 4 << 20,
            partitions: vec![FetchPartition { topic: topic.into(), partition, offset, max_bytes: 4 << 20 }],
        });
        let (header, payload) = self.call(request, &[]);
        assert_eq!(header.error, ErrorCode::None, "{:?}", header.message);
        match header.response {
            Response::Fetch(mut r) => {
                let p = r.partitions.remove(0);
                assert_eq!(p.bytes_len as usize, payload.len());
                (p, payload)
            }
            other => panic!("not a fetch response: {other:?}"),
        }
    }

    /// Reads a whole partition from `offset` to its end; the record values in order.
    pub fn read_all(&mut self, topic: &str, partition: u32) -> Vec<Vec<u8>> {
        let mut values = Vec::new();
        let mut offset = 0;
        loop {
            let (p, bytes) = self.fetch(topic, partition, offset, 0);
            assert_eq!(p.error, ErrorCode::None);
            if bytes.is_empty() {
                return values;
            }
            for batch in BatchIter::new(&bytes) {
                let batch = batch.expect("fetched batch valid");
                assert_eq!(batch.header().base_offset, offset, "offsets contiguous");
                for record in batch.records() {
                    values.push(record.unwrap().value.expect("not a tombstone").to_vec());
                }
                offset = batch.header().next_offset();
            }
        }
    }
}

/// A batch of `values` with timestamps `ts`.
pub fn batch(values: &[&[u8]], ts: i64) -> Bytes {
    let mut b = BatchBuilder::new();
    for v in values {
        b.push(ts, None, Some(v), &[]);
    }
    b.finish()
}

/// A batch of one value.
pub fn batch1(value: &[u8]) -> Bytes {
    batch(&[value], 1_700_000_000_000)
}
