//! The harness's Kafka-protocol client (`--protocol kafka`): just enough of a Kafka client
//! to drive the same workloads through any Kafka-API system — Strand's Kafka port, Kafka,
//! Redpanda — with the same batches, pacing and measurements as the native mode.
//!
//! Codecs are the `kafka-protocol` crate's. A connection pipelines requests: Kafka brokers
//! answer a connection's requests in order, so replies are matched to a FIFO of waiters and
//! a reply whose correlation id is not the oldest one waiting fails the connection. Produce
//! and fetch use fixed versions every current broker speaks (Produce 9, Fetch 12, Metadata 12,
//! CreateTopics 5), so no ApiVersions round trip is needed.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::create_topics_request::CreatableTopic;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{
    ApiKey, BrokerId, CreateTopicsRequest, CreateTopicsResponse, FetchRequest, FetchResponse, MetadataRequest,
    MetadataResponse, ProduceRequest, ProduceResponse, RequestHeader, ResponseHeader, TopicName,
};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::OwnedWriteHalf;
use tokio::net::TcpStream;
use tokio::sync::oneshot;

pub const PRODUCE_VERSION: i16 = 9;
pub const FETCH_VERSION: i16 = 12;
const METADATA_VERSION: i16 = 12;
const CREATE_TOPICS_VERSION: i16 = 5;
/// Largest response frame the client reads.
const RESPONSE_LEN_MAX: usize = 256 << 20;
/// Kafka's TOPIC_ALREADY_EXISTS.
const TOPIC_ALREADY_EXISTS: i16 = 36;

/// Why a Kafka request failed.
#[derive(Debug, thiserror::Error)]
pub enum KafkaError {
    #[error("kafka connection {addr}: {source}")]
    Io { addr: SocketAddr, source: std::io::Error },
    #[error("kafka: {0}")]
    Protocol(String),
    #[error("kafka: connection closed before the reply")]
    Closed,
}

type Waiters = Arc<Mutex<VecDeque<(i32, i16, ApiKey, oneshot::Sender<Result<Bytes, KafkaError>>)>>>;

/// One pipelined connection.
pub struct KafkaConn {
    addr: SocketAddr,
    writer: tokio::sync::Mutex<(OwnedWriteHalf, i32)>,
    waiters: Waiters,
}

/// A reply still on its way.
pub struct Pending(oneshot::Receiver<Result<Bytes, KafkaError>>);

impl Pending {
    /// The response body (after its header).
    pub async fn body(self) -> Result<Bytes, KafkaError> {
        self.0.await.map_err(|_| KafkaError::Closed)?
    }
}

impl KafkaConn {
    pub async fn connect(addr: SocketAddr) -> Result<Arc<KafkaConn>, KafkaError> {
        let stream = TcpStream::connect(addr).await.map_err(|source| KafkaError::Io { addr, source })?;
        stream.set_nodelay(true).map_err(|source| KafkaError::Io { addr, source })?;
        let (mut reader, writer) = stream.into_split();
        let waiters: Waiters = Arc::default();
        let conn = Arc::new(KafkaConn { addr, writer: tokio::sync::Mutex::new((writer, 1)), waiters: waiters.clone() });
        tokio::spawn(async move {
            let failure = read_replies(&mut reader, &waiters).await;
            let drained: Vec<_> = waiters.lock().map(|mut w| w.drain(..).collect()).unwrap_or_default();
            for (_, _, _, tx) in drained {
                let _ = tx.send(Err(KafkaError::Protocol(failure.clone())));
            }
        });
        Ok(conn)
    }

    /// Sends `request`; `None` when no reply will come (a produce with `acks = 0`).
    pub async fn send<R: Encodable>(
        &self,
        api: ApiKey,
        version: i16,
        request: &R,
        expect_reply: bool,
    ) -> Result<Option<Pending>, KafkaError> {
        let mut guard = self.writer.lock().await;
        let (writer, next_id) = &mut *guard;
        let id = *next_id;
        *next_id = next_id.wrapping_add(1);
        let mut header = RequestHeader::default();
        header.request_api_key = api as i16;
        header.request_api_version = version;
        header.correlation_id = id;
        header.client_id = Some(StrBytes::from_static_str("strand-bench"));
        let mut frame = BytesMut::with_capacity(256);
        frame.extend_from_slice(&[0; 4]);
        header
            .encode(&mut frame, api.request_header_version(version))
            .map_err(|e| KafkaError::Protocol(format!("encoding a {api:?} header: {e}")))?;
        request
            .encode(&mut frame, version)
            .map_err(|e| KafkaError::Protocol(format!("encoding {api:?} v{version}: {e}")))?;
        let size = (frame.len() - 4) as i32;
        frame[..4].copy_from_slice(&size.to_be_bytes());
        let pending = expect_reply.then(|| {
            let (tx, rx) = oneshot::channel();
            if let Ok(mut w) = self.waiters.lock() {
                w.push_back((id, version, api, tx));
            }
            Pending(rx)
        });
        writer.write_all(&frame).await.map_err(|source| KafkaError::Io { addr: self.addr, source })?;
        Ok(pending)
    }

    /// Sends `request` and waits for its reply.
    pub async fn call<R: Encodable, A: Decodable>(
        &self,
        api: ApiKey,
        version: i16,
        request: &R,
    ) -> Result<A, KafkaError> {
        decode(self.call_raw(api, version, request).await?, version)
    }

    /// Sends `request` and waits for its reply's body, undecoded.
    pub async fn call_raw<R: Encodable>(&self, api: ApiKey, version: i16, request: &R) -> Result<Bytes, KafkaError> {
        let pending = self.send(api, version, request, true).await?.ok_or(KafkaError::Closed)?;
        pending.body().await
    }
}

/// Decodes a response body of `version`.
pub fn decode<A: Decodable>(mut body: Bytes, version: i16) -> Result<A, KafkaError> {
    A::decode(&mut body, version).map_err(|e| KafkaError::Protocol(format!("response does not decode: {e}")))
}

async fn read_replies(reader: &mut tokio::net::tcp::OwnedReadHalf, waiters: &Waiters) -> String {
    loop {
        let mut size = [0u8; 4];
        if let Err(e) = reader.read_exact(&mut size).await {
            return format!("reading a reply: {e}");
        }
        let size = i32::from_be_bytes(size);
        let Ok(len) =
            usize::try_from(size).map_err(|_| ()).and_then(|l| (l <= RESPONSE_LEN_MAX).then_some(l).ok_or(()))
        else {
            return format!("reply of {size} bytes");
        };
        // Read into spare capacity (not a zeroed buffer): a fetch answer is megabytes.
        let mut body = BytesMut::with_capacity(len);
        while body.len() < len {
            match reader.read_buf(&mut body).await {
                Ok(0) => return "connection closed in a reply".to_string(),
                Ok(_) => {}
                Err(e) => return format!("reading a reply: {e}"),
            }
        }
        let mut body = body.freeze();
        let Some((id, version, api, tx)) = waiters.lock().ok().and_then(|mut w| w.pop_front()) else {
            return "a reply nobody waits for".to_string();
        };
        let header = match ResponseHeader::decode(&mut body, api.response_header_version(version)) {
            Ok(h) => h,
            Err(e) => return format!("reply header: {e}"),
        };
        if header.correlation_id != id {
            let _ = tx.send(Err(KafkaError::Protocol(format!("reply {} out of order", header.correlation_id))));
            return format!("reply {} arrived while {id} was the oldest request", header.correlation_id);
        }
        let _ = tx.send(Ok(body));
    }
}

/// A Kafka client: bootstrap, partition leaders, one connection per broker.
pub struct KafkaClient {
    bootstrap: SocketAddr,
    leaders: Mutex<HashMap<(String, u32), SocketAddr>>,
    conns: tokio::sync::Mutex<HashMap<SocketAddr, Arc<KafkaConn>>>,
}

impl KafkaClient {
    pub fn new(bootstrap: SocketAddr) -> KafkaClient {
        KafkaClient { bootstrap, leaders: Mutex::default(), conns: tokio::sync::Mutex::default() }
    }

    /// The (shared) connection to `addr`.
    pub async fn connection(&self, addr: SocketAddr) -> Result<Arc<KafkaConn>, KafkaError> {
        let mut conns = self.conns.lock().await;
        if let Some(c) = conns.get(&addr) {
            return Ok(c.clone());
        }
        let c = KafkaConn::connect(addr).await?;
        conns.insert(addr, c.clone());
        Ok(c)
    }

    /// A connection of its own to `addr` (a producer lane or consumer that must not queue
    /// behind another's long poll).
    pub async fn dedicated(&self, addr: SocketAddr) -> Result<Arc<KafkaConn>, KafkaError> {
        KafkaConn::connect(addr).await
    }

    /// Creates `name`; an existing topic is fine.
    pub async fn create_topic(&self, name: &str, partitions: u32, replication: u16) -> Result<(), KafkaError> {
        let mut t = CreatableTopic::default();
        t.name = topic_name(name);
        t.num_partitions = partitions as i32;
        t.replication_factor = replication as i16;
        let mut req = CreateTopicsRequest::default();
        req.topics = vec![t];
        req.timeout_ms = 30_000;
        let conn = self.connection(self.bootstrap).await?;
        let resp: CreateTopicsResponse = conn.call(ApiKey::CreateTopics, CREATE_TOPICS_VERSION, &req).await?;
        match resp.topics.first() {
            Some(t) if t.error_code == 0 || t.error_code == TOPIC_ALREADY_EXISTS => Ok(()),
            Some(t) => {
                Err(KafkaError::Protocol(format!("create topic {name}: error {} {:?}", t.error_code, t.error_message)))
            }
            None => Err(KafkaError::Protocol(format!("create topic {name}: no answer"))),
        }
    }

    /// The leader's address of `topic`/`partition`, from Metadata (retried while the
    /// topic's partitions have no leader yet).
    pub async fn leader(&self, topic: &str, partition: u32) -> Result<SocketAddr, KafkaError> {
        if let Some(addr) = self.leaders.lock().ok().and_then(|l| l.get(&(topic.to_string(), partition)).copied()) {
            return Ok(addr);
        }
        for _ in 0..100 {
            self.refresh(topic).await?;
            if let Some(addr) = self.leaders.lock().ok().and_then(|l| l.get(&(topic.to_string(), partition)).copied()) {
                return Ok(addr);
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        Err(KafkaError::Protocol(format!("{topic}/{partition} has no leader")))
    }

    async fn refresh(&self, topic: &str) -> Result<(), KafkaError> {
        let mut want = kafka_protocol::messages::metadata_request::MetadataRequestTopic::default();
        want.name = Some(topic_name(topic));
        let mut req = MetadataRequest::default();
        req.topics = Some(vec![want]);
        let conn = self.connection(self.bootstrap).await?;
        let meta: MetadataResponse = conn.call(ApiKey::Metadata, METADATA_VERSION, &req).await?;
        let brokers: HashMap<BrokerId, SocketAddr> = meta
            .brokers
            .iter()
            .filter_map(|b| {
                let addr = format!("{}:{}", b.host.as_str(), b.port);
                std::net::ToSocketAddrs::to_socket_addrs(&addr).ok()?.next().map(|a| (b.node_id, a))
            })
            .collect();
        let mut leaders = self.leaders.lock().map_err(|_| KafkaError::Protocol("poisoned".into()))?;
        for t in &meta.topics {
            let Some(name) = &t.name else { continue };
            for p in t.partitions.iter().filter(|p| p.error_code == 0) {
                if let (Some(addr), Ok(partition)) = (brokers.get(&p.leader_id), u32::try_from(p.partition_index)) {
                    leaders.insert((name.0.as_str().to_string(), partition), *addr);
                }
            }
        }
        Ok(())
    }
}

pub fn topic_name(name: &str) -> TopicName {
    TopicName(StrBytes::from_string(name.to_string()))
}

/// A produce request of one batch to one partition.
pub fn produce_request(topic: &str, partition: u32, acks: i16, timeout_ms: i32, batch: Bytes) -> ProduceRequest {
    let mut p = PartitionProduceData::default();
    p.index = partition as i32;
    p.records = Some(batch);
    let mut t = TopicProduceData::default();
    t.name = topic_name(topic);
    t.partition_data = vec![p];
    let mut req = ProduceRequest::default();
    req.acks = acks;
    req.timeout_ms = timeout_ms;
    req.topic_data = vec![t];
    req
}

/// The first partition error of a produce response, if any.
pub fn produce_error(body: Bytes) -> Result<(), String> {
    let resp: ProduceResponse = decode(body, PRODUCE_VERSION).map_err(|e| e.to_string())?;
    for t in &resp.responses {
        if let Some(p) = t.partition_responses.iter().find(|p| p.error_code != 0) {
            return Err(format!(
                "produce {}/{}: kafka error {} {:?}",
                t.name.0.as_str(),
                p.index,
                p.error_code,
                p.error_message
            ));
        }
    }
    Ok(())
}

/// A fetch of `parts` at `offsets`.
pub fn fetch_request(
    parts: &[(String, u32)],
    offsets: &[u64],
    max_wait_ms: i32,
    partition_max: i32,
    max_bytes: i32,
) -> FetchRequest {
    let mut req = FetchRequest::default();
    req.replica_id = BrokerId(-1);
    req.max_wait_ms = max_wait_ms;
    req.min_bytes = 1;
    req.max_bytes = max_bytes;
    req.session_epoch = -1;
    for ((topic, partition), &offset) in parts.iter().zip(offsets) {
        let mut p = FetchPartition::default();
        p.partition = *partition as i32;
        p.fetch_offset = offset as i64;
        p.partition_max_bytes = partition_max;
        p.log_start_offset = -1;
        let mut t = FetchTopic::default();
        t.topic = topic_name(topic);
        t.partitions = vec![p];
        req.topics.push(t);
    }
    req
}

/// A fetch response's partitions as (topic, partition, error, records).
pub fn fetch_parts(body: Bytes) -> Result<Vec<(String, u32, i16, Bytes)>, String> {
    let resp: FetchResponse = decode(body, FETCH_VERSION).map_err(|e| e.to_string())?;
    if resp.error_code != 0 {
        return Err(format!("fetch: kafka error {}", resp.error_code));
    }
    let mut out = Vec::new();
    for t in resp.responses {
        let name = t.topic.0.as_str().to_string();
        for p in t.partitions {
            let records = p.records.unwrap_or_default();
            out.push((name.clone(), p.partition_index.max(0) as u32, p.error_code, records));
        }
    }
    Ok(out)
}
