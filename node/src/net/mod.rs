//! Listeners and connections. Architecture invariant: only this module touches
//! client sockets.
//!
//! Each shard accepts on its own shard port; shard 0 also accepts on the public port and
//! hands those connections round-robin to every shard (the ports are exclusive to this
//! process, see [`listen`]); both kinds of connection are served the same way — the dispatcher routes each partition
//! to its owner. Per connection, requests are read in order and handled
//! concurrently; responses go out in completion order (clients match correlation
//! ids), so a long-poll fetch never delays a produce ack. Each request is polled once
//! by the reader before the next frame is read, so produces of one connection reach
//! each partition's sequence check in arrival order (glommio's semaphores are not FIFO
//! and task scheduling is not a contract, so nothing else may be relied on).
//!
//! Bounds: at most `connections_max` connections per node, `inflight_per_connection`
//! requests and `connection_buffer_bytes` request bytes in flight per connection
//! (the reader stops reading when either is exhausted — TCP backpressure does the
//! rest), frames up to `frame_len_max`, and fetch answers up to
//! [`FETCH_RESPONSE_BYTES_PER_CONNECTION`] (each fetch reserves its `max_bytes` until its
//! answer is written: an answer holds its segment files open, and direct-mode tail-cache
//! bytes in memory, so without this a never-reading client would pin `inflight ×
//! max_bytes`; the Kafka port reserves the same way). Writes are
//! serialized by a per-connection lock so a zero-copy payload is never interleaved with
//! another response.
//!
//! Sources: each connection is admitted by its source IP ([`limits`]: a per-IP cap and
//! slots reserved for sources holding none), and closed once it has had no request in
//! flight and received no byte for `connections_max_idle_ms` (a long-poll fetch waiting
//! for data is a request in flight, so it is never idle).

pub mod kafka;
pub mod listen;
pub mod stream;
pub mod zerocopy;

use std::cell::Cell;
use std::os::fd::RawFd;
use std::rc::Rc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use futures_lite::io::{AsyncReadExt, AsyncWriteExt, ReadHalf, WriteHalf};
use glommio::net::{AcceptedTcpStream, TcpListener, TcpStream};
use glommio::sync::{RwLock, Semaphore};
use strand_wire::codec::{decode_request, encode_response, DecodeError};
use strand_wire::frame::{FrameDecoder, FrameError, FramePrefix};
use strand_wire::msg::{Request, RequestHeader};
use strand_wire::ErrorCode;
use tracing::{debug, info, warn};

use crate::log::ReadChunk;
use crate::quota::{ConnQuota, Direction};
use crate::shard::dispatch::Reply;
use crate::shard::Shard;

/// Bytes asked of the socket per read when no frame size is known yet.
const READ_CHUNK_LEN: usize = 64 * 1024;
/// Bytes asked when the buffer is empty (an idle connection waits here): `resize` zero-fills
/// what it asks for, so 10 000 idle connections must not each pin a 64 KiB buffer.
const IDLE_READ_LEN: usize = 4 * 1024;
/// Most bytes one socket read asks for.
const READ_LEN_MAX: usize = 256 * 1024;
/// Fetch-answer bytes one connection may have reserved (being read, queued or written).
pub const FETCH_RESPONSE_BYTES_PER_CONNECTION: u64 = 16 << 20;

type Writer = Rc<RwLock<WriteHalf<stream::Stream>>>;

/// Why a client connection was closed; logged, never sent (the client got its answer first
/// where there is one).
#[derive(Debug, thiserror::Error)]
enum ConnectionError {
    #[error("setting up the socket: {0}")]
    Socket(std::io::Error),
    /// The TLS handshake failed or timed out (logged and counted by `stream::open`).
    #[error("TLS handshake: {0}")]
    Handshake(String),
    #[error("{0}")]
    Refused(crate::sources::Refusal),
    #[error("framing error: {0}")]
    Framing(FrameError),
    /// A Kafka request the node cannot answer in the client's framing (see `kafka`).
    #[error("{0}")]
    Kafka(String),
    #[error("idle for {idle_ms} ms (connections_max_idle_ms)")]
    Idle { idle_ms: u128 },
    #[error("{0}")]
    Read(std::io::Error),
    #[error("{0}")]
    Write(WriteError),
    /// A response of an earlier request could not be written: the client is gone or stuck.
    #[error("a response could not be written")]
    Broken,
    /// A per-connection semaphore was closed under the reader.
    #[error("{0}")]
    Permit(glommio::GlommioError<()>),
    /// Authentication failed, or a request came before it with `--require-auth`.
    #[error("authentication: {0}")]
    Auth(String),
}

impl From<WriteError> for ConnectionError {
    fn from(e: WriteError) -> Self {
        ConnectionError::Write(e)
    }
}

/// Why a response could not be written (the reply may be half written).
#[derive(Debug, thiserror::Error)]
enum WriteError {
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// The connection's write lock was closed.
    #[error("{0}")]
    Lock(glommio::GlommioError<()>),
}

/// Connections shard 0 may have queued for one other shard before it serves the next
/// one itself (the target shard is busy: better a less even spread than a wait).
pub const HANDOFF_QUEUE_LEN: usize = 64;

/// The protocol a port speaks: Strand's own frames or Kafka's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    Native,
    Kafka,
}

impl Protocol {
    fn port_name(self) -> &'static str {
        match self {
            Protocol::Native => "public",
            Protocol::Kafka => "kafka",
        }
    }
}

/// A connection shard 0 accepted and hands to another shard, with its port's protocol.
pub type Handoff = (Protocol, AcceptedTcpStream);

/// Accepts on a shard's own port until shutdown begins.
pub async fn accept_loop(shard: Rc<Shard>, listener: TcpListener, kind: &'static str) {
    while let Some(accepted) = until_stopped(&shard, listener.accept()).await {
        match accepted {
            Ok(stream) => spawn_connection(&shard, stream),
            Err(e) => accept_failed(&shard, kind, e).await,
        }
    }
    debug!(shard = shard.id.0, kind, "listener stopped");
}

/// Shard 0: accepts on a node-wide port (the public or the Kafka port) until shutdown and
/// hands each connection to the next shard in turn (`handoff[s]` reaches shard `s`; its own
/// turn is served here).
pub async fn accept_public(
    shard: Rc<Shard>,
    listener: TcpListener,
    protocol: Protocol,
    handoff: Vec<flume::Sender<Handoff>>,
) {
    let mut turn = 0usize;
    while let Some(accepted) = until_stopped(&shard, listener.shared_accept()).await {
        let stream = match accepted {
            Ok(stream) => stream,
            Err(e) => {
                accept_failed(&shard, protocol.port_name(), e).await;
                continue;
            }
        };
        turn = (turn + 1) % handoff.len().max(1);
        let stream = match handoff.get(turn) {
            Some(target) if turn != usize::from(shard.id.0) => match target.try_send((protocol, stream)) {
                Ok(()) => continue,
                Err(flume::TrySendError::Full((_, s)) | flume::TrySendError::Disconnected((_, s))) => s,
            },
            _ => stream,
        };
        serve(&shard, protocol, stream.bind_to_executor());
    }
    debug!(shard = shard.id.0, port = protocol.port_name(), "listener stopped");
}

/// Every shard but 0: serves the connections shard 0 hands over, until shutdown.
pub async fn adopt_loop(shard: Rc<Shard>, handed: flume::Receiver<Handoff>) {
    while let Some(Ok((protocol, stream))) = until_stopped(&shard, handed.recv_async()).await {
        serve(&shard, protocol, stream.bind_to_executor());
    }
}

fn serve(shard: &Rc<Shard>, protocol: Protocol, stream: TcpStream) {
    match protocol {
        Protocol::Native => spawn_connection(shard, stream),
        Protocol::Kafka => kafka::spawn_connection(shard, stream),
    }
}

/// `future`'s output, or `None` once the shard begins stopping.
async fn until_stopped<T>(shard: &Shard, future: impl std::future::Future<Output = T>) -> Option<T> {
    let stop = shard.stop.listen();
    if shard.is_stopping() {
        return None;
    }
    futures_lite::future::or(async { Some(future.await) }, async {
        stop.await;
        None
    })
    .await
}

async fn accept_failed(shard: &Shard, kind: &'static str, e: glommio::GlommioError<()>) {
    warn!(shard = shard.id.0, kind, error = %e, "accept failed");
    glommio::timer::sleep(std::time::Duration::from_millis(10)).await;
}

/// Serves `stream` on this shard unless the node is at its connection limit.
fn spawn_connection(shard: &Rc<Shard>, stream: TcpStream) {
    spawn_counted(shard, stream, serve_connection);
}

/// Sets `stream` up ([`stream::open`]: the TLS handshake on a TLS node) and runs `serve`
/// for it as a task, counted against the node's connection limit (refused, and closed, at
/// the limit; the handshake counts as part of the connection).
fn spawn_counted<F, Fut>(shard: &Rc<Shard>, stream: TcpStream, serve: F)
where
    F: FnOnce(Rc<Shard>, stream::Conn) -> Fut + 'static,
    Fut: std::future::Future<Output = Result<(), ConnectionError>>,
{
    let limit = shard.shared.config.limits.connections_max;
    if shard.shared.connections.fetch_add(1, Relaxed) >= limit {
        shard.shared.connections.fetch_sub(1, Relaxed);
        shard.metrics.connections_refused.fetch_add(1, Relaxed);
        warn!(shard = shard.id.0, limit, "connection refused: connection limit reached");
        return;
    }
    let conn_shard = shard.clone();
    glommio::spawn_local(async move {
        conn_shard.metrics.connections.fetch_add(1, Relaxed);
        let peer = stream.peer_addr().map(|a| a.to_string()).unwrap_or_default();
        let served = match stream::open(&conn_shard, stream).await {
            Ok(conn) => serve(conn_shard.clone(), conn).await,
            Err(e) => Err(e),
        };
        match served {
            Ok(()) => debug!(shard = conn_shard.id.0, peer, "connection closed"),
            // Already counted and logged (rate-limited) by `stream::open`.
            Err(reason @ ConnectionError::Handshake(_)) => {
                debug!(shard = conn_shard.id.0, peer, %reason, "connection closed")
            }
            Err(reason) => info!(shard = conn_shard.id.0, peer, %reason, "connection closed"),
        }
        conn_shard.metrics.connections.fetch_sub(1, Relaxed);
        conn_shard.shared.connections.fetch_sub(1, Relaxed);
    })
    .detach();
}

/// Reads frames, polls each request once and spawns the rest of it as a task, until EOF, a framing error or shutdown.
async fn serve_connection(shard: Rc<Shard>, conn: stream::Conn) -> Result<(), ConnectionError> {
    let stream::Conn { stream, source, zero_copy: fd } = conn;
    let session = crate::security::Session::new(matches!(stream, stream::Stream::Tls(_)));
    let (mut reader, writer) = futures_lite::io::split(stream);
    let writer: Writer = Rc::new(RwLock::new(writer));
    let limits = shard.shared.config.limits;
    let _admission = match admit(&shard, source) {
        Ok(admission) => admission,
        Err(refusal) => {
            // Answered once (correlation id 0, as for a framing error) so the client sees why.
            let _ = write_reply(&shard, &writer, fd, Reply::error(0, ErrorCode::Throttled, refusal.to_string())).await;
            return Err(ConnectionError::Refused(refusal));
        }
    };
    let activity = Rc::new(Activity { last: Cell::new(Instant::now()), inflight: Cell::new(0) });
    let idle = Duration::from_millis(limits.connections_max_idle_ms);
    let inflight = Rc::new(Semaphore::new(u64::from(limits.inflight_per_connection)));
    let buffered = Rc::new(Semaphore::new(limits.connection_buffer_bytes));
    let answers = Rc::new(Semaphore::new(FETCH_RESPONSE_BYTES_PER_CONNECTION));
    let mut decoder = FrameDecoder::new(limits.frame_len_max as usize);
    let mut buf = BytesMut::with_capacity(READ_CHUNK_LEN);
    let peer = source.to_string();
    // Set when a response could not be written: the client is gone or stuck, so the
    // requests it still has queued (possibly megabytes) must not be served.
    let broken = Rc::new(Cell::new(false));
    let quota = Rc::new(ConnQuota::new(&shard.shared.quotas, crate::quota::ANONYMOUS));
    loop {
        if broken.get() {
            return Err(ConnectionError::Broken);
        }
        if !wait_unmuted(&shard, &quota).await {
            return Ok(());
        }
        let frame = match decoder.decode(&mut buf) {
            Ok(Some(frame)) => frame,
            Ok(None) => {
                if !read_more(&shard, &mut reader, &mut buf, &activity, idle).await? {
                    return Ok(());
                }
                continue;
            }
            Err(e) => {
                // The stream position is lost: answer once (correlation id unknown) and close.
                let code = match e {
                    strand_wire::frame::FrameError::TooLarge { .. } => ErrorCode::MessageTooLarge,
                    _ => ErrorCode::InvalidRequest,
                };
                let _ = write_reply(&shard, &writer, fd, Reply::error(0, code, e.to_string())).await;
                return Err(ConnectionError::Framing(e));
            }
        };
        let frame_len = (frame.header.len() + frame.payload.len()) as u64;
        let busy = InFlight::new(&activity);
        let slot = inflight.acquire_static_permit(1).await.map_err(ConnectionError::Permit)?;
        let bytes = buffered.acquire_static_permit(frame_len).await.map_err(ConnectionError::Permit)?;
        let header = match decode_request(&frame.header) {
            Ok(header) => header,
            Err(e) => {
                let cid = match e {
                    DecodeError::UnknownApi { correlation_id, .. } => correlation_id,
                    _ => 0,
                };
                debug!(shard = shard.id.0, error = %e, "bad request header");
                write_reply(&shard, &writer, fd, Reply::error(cid, e.code(), e.to_string())).await?;
                continue;
            }
        };
        let access = match crate::security::native::gate(&shard, &session, &peer, &header).await {
            crate::security::native::Gate::Pass(access) => access,
            crate::security::native::Gate::Answer(reply, close) => {
                let refused = close.then(|| reply.header.message.clone().unwrap_or_default());
                write_reply(&shard, &writer, fd, reply).await?;
                match refused {
                    Some(reason) => return Err(ConnectionError::Auth(reason)),
                    None => continue,
                }
            }
        };
        quota.follow(&shard.shared.quotas, session.principal());
        let answer_len = match &header.request {
            Request::Fetch(f) => u64::from(f.max_bytes).min(FETCH_RESPONSE_BYTES_PER_CONNECTION),
            _ => 0,
        };
        let answer = answers.acquire_static_permit(answer_len).await.map_err(ConnectionError::Permit)?;
        let (task_shard, task_writer, task_broken, task_quota) =
            (shard.clone(), writer.clone(), broken.clone(), quota.clone());
        let mut task = Box::pin(async move {
            if !task_broken.get() {
                let who = Principal { access, quota: task_quota };
                handle(task_shard, task_writer, fd, header, frame.payload, &task_broken, who).await;
            }
            drop((slot, bytes, answer, busy));
        });
        // The request runs up to its first await before the next frame is read: a produce
        // sequence-checks its batches and takes its offsets there (or queues its forward to the
        // owner shard), so requests of this connection are sequenced in arrival order. The rest
        // runs as its own task: responses complete in any order, fetches never wait on produces.
        if futures_lite::future::poll_once(&mut task).await.is_none() {
            glommio::spawn_local(task).detach();
        }
    }
}

async fn handle(
    shard: Rc<Shard>,
    writer: Writer,
    fd: Option<RawFd>,
    header: RequestHeader,
    payload: bytes::Bytes,
    broken: &Cell<bool>,
    who: Principal,
) {
    let Principal { access, quota } = who;
    let all_topics = matches!(&header.request, Request::Metadata(m) if m.topics.is_empty());
    let produced = matches!(header.request, Request::Produce(_)).then_some(payload.len() as u64);
    let fetch = matches!(header.request, Request::Fetch(_));
    let reply = shard.dispatch(header, payload).await;
    // Over-quota requests are served; the answer says how long to wait, and the reader
    // stops reading this connection for as long (see `crate::quota`).
    let throttle_ms = produced.map_or(0, |bytes| quota.charge(Direction::Produce, bytes));
    let Some(mut reply) = reply else { return };
    crate::security::native::filter_answer(&shard, &access, all_topics, &mut reply);
    reply.header.throttle_ms = if fetch {
        let bytes = reply.payload.iter().map(|c| u64::from(c.len())).sum();
        quota.charge(Direction::Fetch, bytes)
    } else {
        throttle_ms
    };
    if broken.get() {
        return;
    }
    if let Err(e) = write_reply(&shard, &writer, fd, reply).await {
        broken.set(true);
        // The reply may be half written: close so the client does not misparse the stream.
        debug!(shard = shard.id.0, error = %e, "write failed; closing connection");
        if let Ok(mut w) = writer.write().await {
            let _ = w.close().await;
        }
    }
}

/// Admits a connection from `source` (see [`limits`]), counting a refusal by its reason.
fn admit(shard: &Shard, source: std::net::IpAddr) -> Result<crate::sources::Admission, crate::sources::Refusal> {
    let config = &shard.shared.config.limits;
    let open = shard.shared.connections.load(Relaxed);
    let admitted = crate::sources::SourceTable::admit(&shard.shared.connection_sources, source, open, config);
    if let Err(refusal) = &admitted {
        let counter = match refusal {
            crate::sources::Refusal::PerIp { .. } => &shard.metrics.connections_refused_per_ip,
            crate::sources::Refusal::Reserved { .. } => &shard.metrics.connections_refused_reserved,
        };
        // Logged at the 1st, 2nd, 4th, 8th... refusal of a kind: a flood cannot flood the log.
        let refused = counter.fetch_add(1, Relaxed) + 1;
        if refused.is_power_of_two() {
            warn!(shard = shard.id.0, %refusal, refused, "connection refused (logged at powers of two)");
        }
    }
    admitted
}

/// Who sent a request: what its principal may do and the meters it is charged to.
struct Principal {
    access: crate::security::Access,
    quota: Rc<ConnQuota>,
}

/// Waits out the connection's quota throttle before its next request is read; `false` at
/// shutdown.
async fn wait_unmuted(shard: &Shard, quota: &ConnQuota) -> bool {
    let muted = quota.muted_for();
    if muted.is_zero() {
        return true;
    }
    shard.metrics.quota_throttled.fetch_add(1, Relaxed);
    let stop = shard.stop.listen();
    if shard.is_stopping() {
        return false;
    }
    futures_lite::future::or(
        async {
            glommio::timer::sleep(muted).await;
            true
        },
        async {
            stop.await;
            false
        },
    )
    .await
}

/// What makes a connection busy: requests in flight (being handled or written) and when
/// it last received bytes or finished a request.
struct Activity {
    last: Cell<Instant>,
    inflight: Cell<u32>,
}

/// One request in flight on a connection; dropping it marks the connection active now.
struct InFlight(Rc<Activity>);

impl InFlight {
    fn new(activity: &Rc<Activity>) -> Self {
        activity.inflight.set(activity.inflight.get() + 1);
        InFlight(activity.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        let activity = &self.0;
        assert!(activity.inflight.get() > 0, "in-flight count underflow");
        activity.inflight.set(activity.inflight.get() - 1);
        activity.last.set(Instant::now());
    }
}

/// Completes once the connection has had nothing in flight and no bytes for `idle`.
async fn idle_expired(activity: &Activity, idle: Duration) {
    loop {
        let deadline = activity.last.get() + idle;
        let now = Instant::now();
        if now >= deadline && activity.inflight.get() == 0 {
            return;
        }
        // Busy past the deadline: look again after another `idle` (completion resets `last`).
        let wait = if now >= deadline { idle } else { deadline - now };
        glommio::timer::sleep(wait).await;
    }
}

/// What ended a wait for bytes.
enum Wake {
    Read(std::io::Result<usize>),
    Stop,
    Idle,
}

/// Reads more bytes into `buf`; `false` at EOF or shutdown, an error when the connection
/// stayed idle for `idle`.
async fn read_more(
    shard: &Shard,
    reader: &mut ReadHalf<stream::Stream>,
    buf: &mut BytesMut,
    activity: &Activity,
    idle: Duration,
) -> Result<bool, ConnectionError> {
    let start = buf.len();
    // The bytes read into are zeroed first: ask for at most READ_LEN_MAX at a time, not the
    // whole spare capacity a large frame reserved (that was zeroed again on every read).
    let want = if start == 0 {
        IDLE_READ_LEN
    } else {
        buf.capacity().saturating_sub(start).clamp(READ_CHUNK_LEN, READ_LEN_MAX)
    };
    buf.resize(start + want, 0);
    let stop = shard.stop.listen();
    if shard.is_stopping() {
        return Ok(false);
    }
    let read = futures_lite::future::or(
        async { Wake::Read(reader.read(&mut buf[start..]).await) },
        futures_lite::future::or(
            async {
                stop.await;
                Wake::Stop
            },
            async {
                idle_expired(activity, idle).await;
                Wake::Idle
            },
        ),
    )
    .await;
    match read {
        Wake::Stop => {
            buf.truncate(start);
            Ok(false)
        }
        Wake::Idle => {
            shard.metrics.connections_closed_idle.fetch_add(1, Relaxed);
            Err(ConnectionError::Idle { idle_ms: idle.as_millis() })
        }
        Wake::Read(Ok(n)) => {
            buf.truncate(start + n);
            activity.last.set(Instant::now());
            Ok(n > 0)
        }
        // A TLS client that closes without close_notify (most do): the frames say where
        // requests end, so a truncation cannot be misread; an end like plain TCP's EOF.
        Wake::Read(Err(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => Ok(false),
        Wake::Read(Err(e)) => Err(ConnectionError::Read(e)),
    }
}

/// Writes a whole response frame under the connection's write lock; file chunks go
/// zero-copy where the socket has room (see [`zerocopy`]) and `fd` is given (plain TCP).
async fn write_reply(shard: &Shard, writer: &Writer, fd: Option<RawFd>, reply: Reply) -> Result<(), WriteError> {
    let header = encode_response(&reply.header);
    let payload_len: usize = reply.payload.iter().map(|c| c.len() as usize).sum();
    let mut head = Vec::with_capacity(8 + header.len());
    head.extend_from_slice(&FramePrefix::new(header.len(), payload_len).to_bytes());
    head.extend_from_slice(&header);
    let mut w = writer.write().await.map_err(WriteError::Lock)?;
    w.write_all(&head).await?;
    for chunk in &reply.payload {
        write_chunk(shard, &mut w, fd, chunk).await?;
    }
    Ok(w.flush().await?)
}

/// Writes one chunk of a fetch answer (either protocol) to a connection whose write lock
/// the caller holds: memory as it is, file ranges zero-copy where the socket has room and
/// `fd` is given (plain TCP), else (TLS) read in bounded pieces and written through the
/// stream; counted in the shard's zero-copy and copied byte counters.
async fn write_chunk(
    shard: &Shard,
    w: &mut WriteHalf<stream::Stream>,
    fd: Option<RawFd>,
    chunk: &ReadChunk,
) -> std::io::Result<()> {
    let sent = match (chunk, fd) {
        (ReadChunk::Memory(bytes), _) => {
            w.write_all(bytes).await?;
            zerocopy::SentBytes { zero_copy: 0, copied: bytes.len() as u64 }
        }
        (ReadChunk::File { file, pos, len }, Some(fd)) => {
            w.flush().await?;
            zerocopy::send_file(w, fd, file, *pos, *len).await?
        }
        (ReadChunk::Shared { file, pos, len }, Some(fd)) => {
            w.flush().await?;
            zerocopy::send_shared(w, fd, file, *pos, *len).await?
        }
        (ReadChunk::File { file, pos, len }, None) => zerocopy::copy_file(w, file, *pos, *len).await?,
        (ReadChunk::Shared { file, pos, len }, None) => zerocopy::copy_shared(w, file, *pos, *len).await?,
    };
    shard.metrics.bytes_out_zero_copy.fetch_add(sent.zero_copy, Relaxed);
    shard.metrics.bytes_out_copied.fetch_add(sent.copied, Relaxed);
    Ok(())
}
