//! [`WireClient`]: a small blocking client over `std::net::TcpStream` and the
//! `strand-wire` codec. The harness uses its own client instead of `strand-client` so that
//! it controls exactly what is on the wire: one request at a time, no retries, no
//! reconnects — an acknowledgement it records is exactly one produce the node answered.
//!
//! Invariant: every fetched batch is validated (CRC and structure) before a record of it is
//! returned; bad bytes from the node surface as [`HarnessError::CorruptFetch`], never as data.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use strand_wire::batch::{BatchBuilder, BatchIter};
use strand_wire::codec::{decode_response, request_frame};
use strand_wire::frame::{FramePrefix, FRAME_LEN_MAX_DEFAULT, FRAME_PREFIX_LEN};
use strand_wire::msg::{
    Acks, CreateTopicRequest, FetchPartition, FetchPartitionResponse, FetchRequest, ProducePartition,
    ProducePartitionResponse, ProduceRequest, Request, RequestHeader, Response, ResponseHeader,
};
use strand_wire::ErrorCode;

use crate::error::HarnessError;

/// Bytes asked per partition fetch.
const FETCH_BYTES_MAX: u32 = 1 << 20;

/// One record as read back from the node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredRecord {
    pub offset: u64,
    pub value: Vec<u8>,
}

/// A blocking request/response connection to one node port.
pub struct WireClient {
    stream: TcpStream,
    correlation_next: u64,
}

impl WireClient {
    /// Connects with TCP_NODELAY and `timeout` as connect, read and write timeout.
    pub fn connect(addr: SocketAddr, timeout: Duration) -> Result<WireClient, HarnessError> {
        let stream = TcpStream::connect_timeout(&addr, timeout)?;
        stream.set_nodelay(true)?;
        stream.set_read_timeout(Some(timeout))?;
        stream.set_write_timeout(Some(timeout))?;
        Ok(WireClient { stream, correlation_next: 1 })
    }

    /// Sends one request and waits for its response.
    pub fn call(&mut self, request: Request, payload: &[u8]) -> Result<(ResponseHeader, Bytes), HarnessError> {
        let correlation_id = self.correlation_next;
        self.correlation_next += 1;
        let mut out = BytesMut::new();
        request_frame(&mut out, &RequestHeader { correlation_id, request }, payload);
        self.stream.write_all(&out)?;
        let (header, payload) = read_response(&mut self.stream)?;
        if header.correlation_id != correlation_id {
            return Err(HarnessError::Unexpected(format!(
                "correlation id {} answered request {correlation_id}",
                header.correlation_id
            )));
        }
        Ok((header, payload))
    }

    /// Creates a topic; `Ok` also when it exists already.
    pub fn create_topic(&mut self, name: &str, partitions: u32) -> Result<(), HarnessError> {
        let request = Request::CreateTopic(CreateTopicRequest {
            name: name.into(),
            partitions,
            replication_factor: 1,
            configs: Vec::new(),
        });
        let (header, _) = self.call(request, &[])?;
        match header.error {
            ErrorCode::None | ErrorCode::TopicAlreadyExists => Ok(()),
            code => Err(server(code, header.message)),
        }
    }

    /// Produces raw batch bytes to one partition with `acks`; the partition's response
    /// (its `error` may be non-`None`: the caller decides what a refusal means).
    pub fn produce(
        &mut self,
        topic: &str,
        partition: u32,
        acks: Acks,
        batch: &[u8],
    ) -> Result<ProducePartitionResponse, HarnessError> {
        let request = Request::Produce(ProduceRequest {
            acks,
            timeout_ms: 10_000,
            partitions: vec![ProducePartition { topic: topic.into(), partition, bytes_len: batch.len() as u32 }],
        });
        let (header, _) = self.call(request, batch)?;
        if header.error != ErrorCode::None {
            return Err(server(header.error, header.message));
        }
        match header.response {
            Response::Produce(mut r) if r.partitions.len() == 1 => Ok(r.partitions.remove(0)),
            other => Err(HarnessError::Unexpected(format!("produce answered with {other:?}"))),
        }
    }

    /// Produces `values` as one batch with acks=leader; the base offset, or the partition's error code.
    pub fn produce_values(
        &mut self,
        topic: &str,
        partition: u32,
        values: &[Vec<u8>],
    ) -> Result<Result<u64, ErrorCode>, HarnessError> {
        let response = self.produce(topic, partition, Acks::Leader, &batch_of(values))?;
        Ok(match response.error {
            ErrorCode::None => Ok(response.base_offset),
            code => Err(code),
        })
    }

    /// One fetch of `partition` from `offset`; the partition response and its batch bytes.
    pub fn fetch(
        &mut self,
        topic: &str,
        partition: u32,
        offset: u64,
        max_wait_ms: u32,
    ) -> Result<(FetchPartitionResponse, Bytes), HarnessError> {
        let request = Request::Fetch(FetchRequest {
            max_wait_ms,
            min_bytes: 1,
            max_bytes: FETCH_BYTES_MAX,
            partitions: vec![FetchPartition { topic: topic.into(), partition, offset, max_bytes: FETCH_BYTES_MAX }],
        });
        let (header, payload) = self.call(request, &[])?;
        if header.error != ErrorCode::None {
            return Err(server(header.error, header.message));
        }
        match header.response {
            Response::Fetch(mut r) if r.partitions.len() == 1 => {
                let p = r.partitions.remove(0);
                if p.bytes_len as usize != payload.len() {
                    return Err(HarnessError::Protocol(format!(
                        "{} payload bytes, {} declared",
                        payload.len(),
                        p.bytes_len
                    )));
                }
                Ok((p, payload))
            }
            other => Err(HarnessError::Unexpected(format!("fetch answered with {other:?}"))),
        }
    }

    /// Reads `partition` from `from` to its log end; every record, validated, in order.
    /// A partition-level error (e.g. `CORRUPT_STORAGE`) is returned as `Server`.
    pub fn read_partition(
        &mut self,
        topic: &str,
        partition: u32,
        from: u64,
    ) -> Result<Vec<StoredRecord>, HarnessError> {
        let mut records = Vec::new();
        let mut offset = from;
        loop {
            let (p, bytes) = self.fetch(topic, partition, offset, 0)?;
            if p.error != ErrorCode::None {
                return Err(server(p.error, Some(format!("fetch of partition {partition} at offset {offset}"))));
            }
            if bytes.is_empty() {
                return Ok(records);
            }
            let next = decode_batches(partition, offset, &bytes, &mut records)?;
            if next <= offset {
                return Err(HarnessError::CorruptFetch { partition, offset, reason: "fetch made no progress".into() });
            }
            offset = next;
        }
    }
}

/// Appends the records of `bytes` (whole batches starting at `offset`) to `out`; the next offset.
pub fn decode_batches(
    partition: u32,
    offset: u64,
    bytes: &[u8],
    out: &mut Vec<StoredRecord>,
) -> Result<u64, HarnessError> {
    let corrupt = |at: u64, reason: String| HarnessError::CorruptFetch { partition, offset: at, reason };
    let mut next = offset;
    for batch in BatchIter::new(bytes) {
        let batch = batch.map_err(|e| corrupt(next, e.to_string()))?;
        let header = batch.header();
        // A fetch may start inside a batch: the node returns the whole batch containing `offset`.
        for (i, record) in batch.records().enumerate() {
            let record = record.map_err(|e| corrupt(header.base_offset, e.to_string()))?;
            let record_offset = header.base_offset + i as u64;
            if record_offset >= next {
                out.push(StoredRecord {
                    offset: record_offset,
                    value: record.value.expect("not a tombstone").to_vec(),
                });
            }
        }
        next = next.max(header.next_offset());
    }
    Ok(next)
}

/// One uncompressed batch holding `values`.
pub fn batch_of(values: &[Vec<u8>]) -> Bytes {
    let mut builder = BatchBuilder::new();
    for value in values {
        builder.push(1_700_000_000_000, None, Some(value), &[]);
    }
    builder.finish()
}

/// One uncompressed batch holding `values` from idempotent producer `producer_id` (epoch 0,
/// the one InitProducerId issues), first sequence `base_sequence`.
pub fn producer_batch_of(values: &[Vec<u8>], producer_id: i64, base_sequence: i32) -> Bytes {
    let mut builder = BatchBuilder::new().producer(producer_id, 0, base_sequence);
    for value in values {
        builder.push(1_700_000_000_000, None, Some(value), &[]);
    }
    builder.finish()
}

/// Reads one response frame from `stream`.
pub fn read_response(stream: &mut TcpStream) -> Result<(ResponseHeader, Bytes), HarnessError> {
    let mut prefix = [0u8; FRAME_PREFIX_LEN];
    stream.read_exact(&mut prefix)?;
    let prefix = FramePrefix::parse(&prefix, FRAME_LEN_MAX_DEFAULT * 2)
        .map_err(|e| HarnessError::Protocol(format!("response prefix: {e}")))?;
    let mut header = vec![0u8; prefix.header_len as usize];
    stream.read_exact(&mut header)?;
    let mut payload = vec![0u8; prefix.payload_len()];
    stream.read_exact(&mut payload)?;
    let header = decode_response(&header).map_err(|e| HarnessError::Protocol(format!("response header: {e}")))?;
    Ok((header, Bytes::from(payload)))
}

fn server(code: ErrorCode, message: Option<String>) -> HarnessError {
    HarnessError::Server { code, message: message.unwrap_or_default() }
}
