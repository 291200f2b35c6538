//! The Kafka-protocol listener (`--kafka-listen`): any Kafka client talks to the node here.
//!
//! Every request and response is decoded and encoded by the `kafka-protocol` crate
//! (generated from Kafka's own message specs; see `third_party/README.md` for the copy's
//! one fix). A request is translated into the node's own request type and answered by the
//! same `Shard::dispatch` as a native request, so both protocols share one produce and one
//! fetch path, the same limits, and the same records: the stored batch format is Kafka's
//! RecordBatch v2. A fetch answer's records go from the segment files to the socket with
//! `sendfile`, never through user space (see [`fetch`]).
//!
//! Per connection, as on a Kafka broker: requests are read in order and each is polled once
//! before the next frame is read (so a connection's produces reach each partition in the
//! order sent), handled concurrently, and answered **in request order** — Kafka clients
//! match a response to the oldest request in flight, so a long-poll fetch holds back the
//! answers behind it on its connection, exactly as a Kafka broker does.
//!
//! Hostile input: a frame larger than `frame_len_max` or with a negative size, an unknown
//! API key, an unsupported version (except ApiVersions, which is answered with the versions
//! this node speaks, as KIP-511 asks) or a body that does not decode closes the connection
//! (logged with its reason); nothing a client sends can panic the node or make it allocate
//! more than the frame it is allowed to send. Connection limits, admission by source and
//! idle closing are the native listener's (`super`).

mod admin;
mod apis;
mod codes;
pub(crate) mod fetch;
mod groups;
mod sasl;

use std::cell::Cell;
use std::os::fd::RawFd;
use std::rc::Rc;
use std::time::{Duration, Instant};

use bytes::{Buf, Bytes, BytesMut};
use futures_lite::io::AsyncWriteExt;
use glommio::net::TcpStream;

use super::stream::Conn;
use glommio::sync::{RwLock, Semaphore};
use kafka_protocol::messages::{ApiKey, RequestHeader, ResponseHeader};
use kafka_protocol::protocol::{Decodable, Encodable};
use tracing::debug;

use super::{Activity, ConnectionError, InFlight, Writer};
use crate::log::ReadChunk;
use crate::notify::LocalNotify;
use crate::shard::Shard;

pub use codes::SUPPORTED;

/// Bytes of a request frame's size prefix.
const SIZE_LEN: usize = 4;
/// Bytes a request (after its size) needs before its header can be looked at: API key,
/// version, correlation id.
const HEADER_MIN: usize = 8;

/// One part of a response body: bytes, or a range of a segment file to send zero-copy.
pub(crate) enum Piece {
    Bytes(Bytes),
    Chunk(ReadChunk),
}

impl Piece {
    fn len(&self) -> usize {
        match self {
            Piece::Bytes(b) => b.len(),
            Piece::Chunk(c) => c.len() as usize,
        }
    }
}

/// A decoded request, ready for its handler.
#[derive(Debug)]
pub(crate) struct Incoming {
    pub api: ApiKey,
    pub version: i16,
    pub header: RequestHeader,
    /// The request body after the header (the handler decodes it).
    pub body: Bytes,
}

/// Serves a Kafka-protocol connection on this shard unless the node is at its limit.
pub(super) fn spawn_connection(shard: &Rc<Shard>, stream: TcpStream) {
    super::spawn_counted(shard, stream, serve_connection);
}

/// Responses leave in request order: request `n` writes once `next == n`.
struct Turns {
    next: Cell<u64>,
    moved: Rc<LocalNotify>,
}

impl Turns {
    async fn wait(&self, seq: u64) {
        loop {
            let moved = self.moved.listen();
            if self.next.get() == seq {
                return;
            }
            moved.await;
        }
    }

    fn done(&self, seq: u64) {
        debug_assert_eq!(self.next.get(), seq, "a response left out of turn");
        self.next.set(seq + 1);
        self.moved.notify_all();
    }
}

async fn serve_connection(shard: Rc<Shard>, conn: Conn) -> Result<(), ConnectionError> {
    let Conn { stream, source, zero_copy: fd } = conn;
    let session = crate::security::Session::new(matches!(stream, super::stream::Stream::Tls(_)));
    let (mut reader, writer) = futures_lite::io::split(stream);
    let writer: Writer = Rc::new(RwLock::new(writer));
    // Kafka has no frame to say why before a request arrives: a refused source is closed.
    let _admission = super::admit(&shard, source).map_err(ConnectionError::Refused)?;
    let limits = shard.shared.config.limits;
    let activity = Rc::new(Activity { last: Cell::new(Instant::now()), inflight: Cell::new(0) });
    let idle = Duration::from_millis(limits.connections_max_idle_ms);
    let inflight = Rc::new(Semaphore::new(u64::from(limits.inflight_per_connection)));
    let buffered = Rc::new(Semaphore::new(limits.connection_buffer_bytes));
    // As on the native port: each fetch reserves its answer's bytes until they are written,
    // so a client that pipelines fetches and never reads cannot pin more than this.
    let answers = Rc::new(Semaphore::new(super::FETCH_RESPONSE_BYTES_PER_CONNECTION));
    let turns = Rc::new(Turns { next: Cell::new(0), moved: Rc::default() });
    let broken = Rc::new(Cell::new(false));
    let mut buf = BytesMut::with_capacity(super::READ_CHUNK_LEN);
    let mut seq = 0u64;
    let quota = Rc::new(crate::quota::ConnQuota::new(&shard.shared.quotas, crate::quota::ANONYMOUS));
    let peer = source.to_string();
    loop {
        if broken.get() {
            return Err(ConnectionError::Broken);
        }
        if !super::wait_unmuted(&shard, &quota).await {
            return Ok(());
        }
        let frame = match next_frame(&mut buf, limits.frame_len_max as usize)? {
            Some(frame) => frame,
            None => {
                if !super::read_more(&shard, &mut reader, &mut buf, &activity, idle).await? {
                    return Ok(());
                }
                continue;
            }
        };
        let busy = InFlight::new(&activity);
        let slot = inflight.acquire_static_permit(1).await.map_err(ConnectionError::Permit)?;
        let bytes = buffered.acquire_static_permit(frame.len() as u64).await.map_err(ConnectionError::Permit)?;
        let incoming = match parse_request(frame) {
            Ok(incoming) => incoming,
            Err(Refused::Close(reason)) => return Err(ConnectionError::Kafka(reason)),
            Err(Refused::Answer { correlation_id, body }) => {
                // An ApiVersions of a version this node does not speak: answered in v0 with
                // the versions it does speak, as a Kafka broker does (KIP-511).
                let (task_turns, task_writer, task_shard) = (turns.clone(), writer.clone(), shard.clone());
                let this = seq;
                seq += 1;
                let header = ResponseHeader::default().with_correlation_id(correlation_id);
                glommio::spawn_local(async move {
                    task_turns.wait(this).await;
                    let _ = write_response(&task_shard, &task_writer, fd, &header, 0, vec![Piece::Bytes(body)]).await;
                    task_turns.done(this);
                    drop((slot, bytes, busy));
                })
                .detach();
                continue;
            }
        };
        let correlation_id = incoming.header.correlation_id;
        let response_version = incoming.api.response_header_version(incoming.version);
        let answer_len = match incoming.api {
            ApiKey::Fetch => u64::from(fetch_max_bytes(&incoming.body)).min(super::FETCH_RESPONSE_BYTES_PER_CONNECTION),
            _ => 0,
        };
        // The auth gate (`sasl`): SASL steps are answered here, in order; before
        // authentication with --require-auth nothing else passes.
        let (request, close_after) = match sasl::gate(&shard, &session, &peer, incoming) {
            sasl::Gate::Pass(access, incoming) => (Ok((access, incoming)), None),
            sasl::Gate::Answer(answer, close) => (Err(answer), close),
            sasl::Gate::Close(reason) => return Err(ConnectionError::Auth(reason)),
        };
        let reserved = answers.acquire_static_permit(answer_len).await.map_err(ConnectionError::Permit)?;
        let this = seq;
        seq += 1;
        quota.follow(&shard.shared.quotas, session.principal());
        let (task_shard, task_writer, task_turns, task_broken, task_quota) =
            (shard.clone(), writer.clone(), turns.clone(), broken.clone(), quota.clone());
        let closing = close_after.is_some();
        let mut task = Box::pin(async move {
            let answer = match request {
                _ if task_broken.get() => Ok(None),
                Err(early) => early,
                Ok((access, incoming)) => {
                    let ctx = apis::Ctx { shard: task_shard.clone(), access, quota: task_quota };
                    apis::handle(&ctx, incoming).await
                }
            };
            task_turns.wait(this).await;
            match answer {
                _ if task_broken.get() => {}
                Ok(None) => {}
                Ok(Some(pieces)) => {
                    let header = ResponseHeader::default().with_correlation_id(correlation_id);
                    if let Err(e) =
                        write_response(&task_shard, &task_writer, fd, &header, response_version, pieces).await
                    {
                        debug!(shard = task_shard.id.0, error = %e, "kafka: write failed; closing connection");
                        close(&task_writer, &task_broken).await;
                    }
                }
                Err(reason) => {
                    debug!(shard = task_shard.id.0, %reason, "kafka: request refused; closing connection");
                    close(&task_writer, &task_broken).await;
                }
            }
            if closing {
                close(&task_writer, &task_broken).await;
            }
            task_turns.done(this);
            drop((slot, bytes, reserved, busy));
        });
        // As on the native port: the request runs to its first await before the next frame
        // is read, so a produce takes its offsets in arrival order.
        if futures_lite::future::poll_once(&mut task).await.is_none() {
            glommio::spawn_local(task).detach();
        }
        if let Some(reason) = close_after {
            return Err(ConnectionError::Auth(reason));
        }
    }
}

/// Marks the connection broken and closes its write side, so the client sees the end
/// rather than a half-written stream.
async fn close(writer: &Writer, broken: &Cell<bool>) {
    broken.set(true);
    if let Ok(mut w) = writer.write().await {
        let _ = w.close().await;
    }
}

/// The next whole request frame (without its size prefix), or `None` when more bytes are
/// needed (`buf` then has room reserved for the rest of the frame).
fn next_frame(buf: &mut BytesMut, frame_len_max: usize) -> Result<Option<Bytes>, ConnectionError> {
    if buf.len() < SIZE_LEN {
        return Ok(None);
    }
    let size = i32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]);
    let Ok(size) = usize::try_from(size) else {
        return Err(ConnectionError::Kafka(format!("kafka: negative frame size {size}")));
    };
    if size + SIZE_LEN > frame_len_max {
        return Err(ConnectionError::Kafka(format!(
            "kafka: a {}-byte frame exceeds frame_len_max ({frame_len_max} bytes)",
            size + SIZE_LEN
        )));
    }
    if buf.len() < SIZE_LEN + size {
        buf.reserve(SIZE_LEN + size - buf.len());
        return Ok(None);
    }
    buf.advance(SIZE_LEN);
    Ok(Some(buf.split_to(size).freeze()))
}

/// A Fetch request's response `max_bytes` (0 if the body is too short to hold it): the
/// fourth `int32` of the body in every version this node speaks (4–12: replica id, max
/// wait, min bytes, max bytes; the cluster id of v12+ is a tagged field at the end).
fn fetch_max_bytes(body: &[u8]) -> u32 {
    body.get(12..16).map_or(0, |b| i32::from_be_bytes([b[0], b[1], b[2], b[3]]).max(0) as u32)
}

/// Why a frame is not handed to a handler.
#[derive(Debug)]
enum Refused {
    /// The connection is closed, for this reason (logged).
    Close(String),
    /// Answer with this body (response header v0) and go on.
    Answer { correlation_id: i32, body: Bytes },
}

/// Splits a frame into its API, version, header and body, checking the API and version
/// against what this node speaks.
fn parse_request(mut frame: Bytes) -> Result<Incoming, Refused> {
    if frame.len() < HEADER_MIN {
        return Err(Refused::Close(format!("kafka: a {}-byte request has no room for a header", frame.len())));
    }
    let key = i16::from_be_bytes([frame[0], frame[1]]);
    let version = i16::from_be_bytes([frame[2], frame[3]]);
    let correlation_id = i32::from_be_bytes([frame[4], frame[5], frame[6], frame[7]]);
    let Ok(api) = ApiKey::try_from(key) else {
        return Err(Refused::Close(format!("kafka: unknown API key {key}")));
    };
    match codes::versions(api) {
        Some((min, max)) if (min..=max).contains(&version) => {}
        _ if api == ApiKey::ApiVersions => {
            return Err(Refused::Answer { correlation_id, body: apis::api_versions_unsupported() });
        }
        Some((min, max)) => {
            return Err(Refused::Close(format!(
                "kafka: {api:?} version {version} is not supported (this node speaks {min}..={max})"
            )));
        }
        None => return Err(Refused::Close(format!("kafka: {api:?} is not supported by this node"))),
    }
    let header = RequestHeader::decode(&mut frame, api.request_header_version(version))
        .map_err(|e| Refused::Close(format!("kafka: {api:?} v{version}: bad request header: {e}")))?;
    Ok(Incoming { api, version, header, body: frame })
}

/// Writes one response — size, header, body pieces — under the connection's write lock;
/// file chunks go zero-copy where the socket has room and `fd` is given (plain TCP).
async fn write_response(
    shard: &Shard,
    writer: &Writer,
    fd: Option<RawFd>,
    header: &ResponseHeader,
    header_version: i16,
    pieces: Vec<Piece>,
) -> Result<(), super::WriteError> {
    let mut head = BytesMut::with_capacity(16);
    head.extend_from_slice(&[0; SIZE_LEN]);
    header
        .encode(&mut head, header_version)
        .map_err(|e| super::WriteError::Io(std::io::Error::other(e.to_string())))?;
    let total = head.len() - SIZE_LEN + pieces.iter().map(Piece::len).sum::<usize>();
    let size = i32::try_from(total)
        .map_err(|_| super::WriteError::Io(std::io::Error::other(format!("a {total}-byte response"))))?;
    head[..SIZE_LEN].copy_from_slice(&size.to_be_bytes());
    let mut w = writer.write().await.map_err(super::WriteError::Lock)?;
    w.write_all(&head).await?;
    for piece in &pieces {
        match piece {
            Piece::Bytes(bytes) => w.write_all(bytes).await?,
            Piece::Chunk(chunk) => super::write_chunk(shard, &mut w, fd, chunk).await?,
        }
    }
    Ok(w.flush().await?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame_of(body: &[u8]) -> BytesMut {
        let mut buf = BytesMut::new();
        buf.extend_from_slice(&(body.len() as i32).to_be_bytes());
        buf.extend_from_slice(body);
        buf
    }

    #[test]
    fn frames_are_cut_at_their_size_and_bounded() {
        let mut buf = frame_of(b"abc");
        buf.extend_from_slice(&[0, 0]);
        assert_eq!(next_frame(&mut buf, 1024).unwrap().unwrap(), Bytes::from_static(b"abc"));
        assert!(next_frame(&mut buf, 1024).unwrap().is_none(), "half a size prefix is not a frame");
        let mut big = frame_of(&[0; 100]);
        assert!(next_frame(&mut big, 64).is_err());
        let mut negative = BytesMut::from(&(-1i32).to_be_bytes()[..]);
        assert!(next_frame(&mut negative, 64).is_err());
    }

    #[test]
    fn unknown_apis_and_versions_close_and_api_versions_is_answered() {
        let header = |key: i16, version: i16| {
            let mut b = Vec::new();
            b.extend_from_slice(&key.to_be_bytes());
            b.extend_from_slice(&version.to_be_bytes());
            b.extend_from_slice(&7i32.to_be_bytes());
            b.extend_from_slice(&(-1i16).to_be_bytes()); // null client id
            Bytes::from(b)
        };
        assert!(matches!(parse_request(header(9999, 0)), Err(Refused::Close(_))));
        assert!(matches!(parse_request(header(0, 1)), Err(Refused::Close(_))), "Produce v1 predates RecordBatch v2");
        match parse_request(header(18, 99)) {
            Err(Refused::Answer { correlation_id: 7, body }) => assert!(!body.is_empty()),
            other => panic!("ApiVersions v99 must be answered, got {other:?}"),
        }
        let ok = parse_request(header(18, 0)).expect("ApiVersions v0");
        assert_eq!((ok.api, ok.version, ok.header.correlation_id), (ApiKey::ApiVersions, 0, 7));
        assert!(matches!(parse_request(Bytes::from_static(&[0, 18, 0])), Err(Refused::Close(_))));
    }

    #[test]
    fn fetch_max_bytes_is_where_the_codec_puts_it() {
        let (_, min, max) = *SUPPORTED.iter().find(|(api, _, _)| *api == ApiKey::Fetch).unwrap();
        for version in min..=max {
            let mut req = kafka_protocol::messages::FetchRequest::default();
            req.max_bytes = 0x0123_4567;
            req.max_wait_ms = 77;
            let mut body = BytesMut::new();
            req.encode(&mut body, version).unwrap();
            assert_eq!(fetch_max_bytes(&body), 0x0123_4567, "v{version}");
        }
        assert_eq!(fetch_max_bytes(&[0; 5]), 0);
    }

    /// A request frame for `api` v`version`: a header, then `body` as the request's bytes.
    fn frame(api: ApiKey, version: i16, body: &[u8]) -> Bytes {
        let mut header = RequestHeader::default();
        header.request_api_key = api as i16;
        header.request_api_version = version;
        header.correlation_id = 1;
        let mut buf = BytesMut::new();
        header.encode(&mut buf, api.request_header_version(version)).unwrap();
        buf.extend_from_slice(body);
        buf.freeze()
    }

    proptest::proptest! {
        /// Whatever follows a valid header of an advertised API and version, and whatever a
        /// whole frame holds, the request path (header parse, then the body decoder of that
        /// API and version) returns a result, never panics, never aborts on a huge count.
        #[test]
        fn any_bytes_through_the_request_decoders(
            pick in 0usize..SUPPORTED.len(),
            version_pick in 0i16..64,
            body in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..512),
            raw in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..64),
        ) {
            let (api, min, max) = SUPPORTED[pick];
            let version = min + version_pick % (max - min + 1);
            for frame in [frame(api, version, &body), Bytes::from(raw.clone())] {
                if let Ok(incoming) = parse_request(frame) {
                    let mut body = incoming.body;
                    let _ = kafka_protocol::messages::RequestKind::decode(incoming.api, &mut body, incoming.version);
                }
            }
        }
    }
}
