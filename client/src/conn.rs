//! The tokio shell around [`crate::proto::ConnCore`]: one TCP connection to a
//! node port, with TCP_NODELAY on, a writer task fed through a bounded channel
//! (so senders feel backpressure) and a reader task that feeds the core and
//! wakes each caller when its response (or its timeout) arrives.
//!
//! Concurrency: the core and the waiter table live under one `std` mutex that
//! is never held across an `.await`. Only the reader task touches the read
//! buffer; it takes it out of the core while it waits on the socket. Once a
//! connection is closed (socket error, node closed it, protocol error or
//! [`Connection::abort`]) it stays closed and every waiter is failed with
//! [`ClientError::Disconnected`]; the pool then opens a new one.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use strand_wire::msg::{Request, ResponseHeader};
use strand_wire::ErrorCode;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::Instant;

use crate::error::{ClientError, Result};
use crate::proto::{ConnCore, Outcome};

/// Frames queued for the writer task at most; `send` waits beyond this.
const WRITE_QUEUE_FRAMES_MAX: usize = 64;
/// Longest the reader sleeps before re-checking deadlines.
const TIMER_TICK_MAX: Duration = Duration::from_millis(100);
/// Bytes the reader asks for at least per read.
const READ_CHUNK_MIN: usize = 64 * 1024;

/// A response: the decoded header (top-level error already checked) and the payload.
pub type Reply = (ResponseHeader, Bytes);

type Waiter = oneshot::Sender<Result<Reply>>;

/// A pending response, awaited with [`PendingReply::wait`].
#[derive(Debug)]
pub struct PendingReply {
    rx: oneshot::Receiver<Result<Reply>>,
    addr: SocketAddr,
}

impl PendingReply {
    /// Waits for the response. A top-level error code becomes [`ClientError::Server`].
    pub async fn wait(self) -> Result<Reply> {
        let reply = self.rx.await.map_err(|_| ClientError::Disconnected {
            addr: self.addr,
            reason: "connection task ended".to_string(),
        })??;
        if reply.0.error != ErrorCode::None {
            return Err(ClientError::server(reply.0.error, reply.0.message.clone()));
        }
        Ok(reply)
    }
}

struct State {
    core: ConnCore,
    waiters: HashMap<u64, Waiter>,
    closed: Option<String>,
}

struct Shared {
    addr: SocketAddr,
    state: Mutex<State>,
    write_tx: mpsc::Sender<Bytes>,
    shutdown: watch::Sender<bool>,
    request_timeout: Duration,
}

/// One open connection to a node port. Cheap to share behind an `Arc`.
pub struct Connection {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection").field("addr", &self.shared.addr).finish()
    }
}

impl Connection {
    /// Connects to `addr` (TCP_NODELAY on; with `tls`, the TLS handshake within
    /// `connect_timeout` too) and starts the reader and writer tasks.
    pub async fn open(
        addr: SocketAddr,
        connect_timeout: Duration,
        request_timeout: Duration,
        frame_len_max: usize,
        tls: Option<&crate::tls::ClientTls>,
    ) -> Result<Self> {
        let connect_err = |reason: String| ClientError::Connect { addr, reason };
        let deadline = Instant::now() + connect_timeout;
        let stream = tokio::time::timeout_at(deadline, TcpStream::connect(addr))
            .await
            .map_err(|_| connect_err("connect timed out".to_string()))?
            .map_err(|e| connect_err(e.to_string()))?;
        stream.set_nodelay(true).map_err(|e| connect_err(e.to_string()))?;
        let (write_tx, write_rx) = mpsc::channel(WRITE_QUEUE_FRAMES_MAX);
        let (shutdown, shutdown_rx) = watch::channel(false);
        let state = State { core: ConnCore::new(frame_len_max), waiters: HashMap::new(), closed: None };
        let shared = Arc::new(Shared { addr, state: Mutex::new(state), write_tx, shutdown, request_timeout });
        match tls {
            None => {
                let (read_half, write_half) = stream.into_split();
                tokio::spawn(write_loop(shared.clone(), write_half, write_rx, shutdown_rx.clone()));
                tokio::spawn(read_loop(shared.clone(), read_half, shutdown_rx));
            }
            Some(tls) => {
                let connector = tokio_rustls::TlsConnector::from(tls.config.clone());
                let name = tls.server_name_for(addr)?;
                let stream = tokio::time::timeout_at(deadline, connector.connect(name, stream))
                    .await
                    .map_err(|_| connect_err("TLS handshake timed out".to_string()))?
                    .map_err(|e| connect_err(format!("TLS handshake: {e}")))?;
                let (read_half, write_half) = tokio::io::split(stream);
                tokio::spawn(write_loop(shared.clone(), write_half, write_rx, shutdown_rx.clone()));
                tokio::spawn(read_loop(shared.clone(), read_half, shutdown_rx));
            }
        }
        Ok(Connection { shared })
    }

    /// The peer address.
    pub fn addr(&self) -> SocketAddr {
        self.shared.addr
    }

    /// Whether the connection is closed for good.
    pub fn is_closed(&self) -> bool {
        lock(&self.shared.state).closed.is_some()
    }

    /// Queues a request; the returned [`PendingReply`] resolves with its response.
    /// Requests sent by one task reach the node in the order they were sent.
    pub async fn send(&self, request: Request, payload: &[u8]) -> Result<PendingReply> {
        self.send_timeout(request, payload, self.shared.request_timeout).await
    }

    /// Like [`Connection::send`] with its own deadline instead of the connection's request
    /// timeout (a parked `JoinGroup` may legitimately wait a whole rebalance timeout).
    pub async fn send_timeout(&self, request: Request, payload: &[u8], timeout: Duration) -> Result<PendingReply> {
        let (tx, rx) = oneshot::channel();
        let frame = self.encode(request, payload, timeout, Some(tx))?;
        self.queue(frame).await?;
        Ok(PendingReply { rx, addr: self.shared.addr })
    }

    /// Sends a request that gets no response (produce with `acks = none`).
    pub async fn send_oneway(&self, request: Request, payload: &[u8]) -> Result<()> {
        let frame = self.encode(request, payload, self.shared.request_timeout, None)?;
        self.queue(frame).await
    }

    /// Sends a request and waits for its response.
    pub async fn call(&self, request: Request, payload: &[u8]) -> Result<Reply> {
        self.send(request, payload).await?.wait().await
    }

    /// Closes the connection now, failing every outstanding request. Test hook for
    /// "the connection dropped after the request was sent, before the ack".
    pub fn abort(&self) {
        close(&self.shared, "aborted by client".to_string());
    }

    fn encode(&self, request: Request, payload: &[u8], timeout: Duration, waiter: Option<Waiter>) -> Result<Bytes> {
        let mut state = lock(&self.shared.state);
        if let Some(reason) = &state.closed {
            return Err(ClientError::Disconnected { addr: self.shared.addr, reason: reason.clone() });
        }
        let mut out = BytesMut::new();
        let now = Instant::now().into_std();
        let expect = waiter.is_some();
        let id = state
            .core
            .encode_request(now, timeout, request, payload, expect, &mut out)
            .map_err(|e| ClientError::RequestOverLimit(e.to_string()))?;
        if let Some(waiter) = waiter {
            state.waiters.insert(id, waiter);
        }
        Ok(out.freeze())
    }

    async fn queue(&self, frame: Bytes) -> Result<()> {
        self.shared
            .write_tx
            .send(frame)
            .await
            .map_err(|_| ClientError::Disconnected { addr: self.shared.addr, reason: "writer stopped".to_string() })
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        close(&self.shared, "connection dropped".to_string());
    }
}

fn lock(state: &Mutex<State>) -> MutexGuard<'_, State> {
    // A panic while holding this lock would be a client bug; the state stays usable.
    state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Marks the connection closed (first reason wins) and fails every waiter.
fn close(shared: &Shared, reason: String) {
    let waiters: Vec<Waiter> = {
        let mut state = lock(&shared.state);
        if state.closed.is_none() {
            state.closed = Some(reason.clone());
        }
        state.core.take_pending();
        state.waiters.drain().map(|(_, w)| w).collect()
    };
    for waiter in waiters {
        let _ = waiter.send(Err(ClientError::Disconnected { addr: shared.addr, reason: reason.clone() }));
    }
    let _ = shared.shutdown.send(true);
}

async fn write_loop<W: AsyncWrite + Unpin>(
    shared: Arc<Shared>,
    mut sock: W,
    mut rx: mpsc::Receiver<Bytes>,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        let frame = tokio::select! {
            frame = rx.recv() => frame,
            _ = shutdown.wait_for(|stop| *stop) => None,
        };
        let Some(frame) = frame else { break };
        // A TLS stream holds written bytes until flushed (a no-op on plain TCP).
        let written = match sock.write_all(&frame).await {
            Ok(()) if rx.is_empty() => sock.flush().await,
            other => other,
        };
        if let Err(e) = written {
            close(&shared, format!("write failed: {e}"));
            break;
        }
    }
    let _ = sock.shutdown().await;
}

async fn read_loop<R: AsyncRead + Unpin>(shared: Arc<Shared>, mut sock: R, mut shutdown: watch::Receiver<bool>) {
    let reason = loop {
        let (mut buf, deadline) = {
            let mut state = lock(&shared.state);
            let deadline = state.core.poll_timeout().map(Instant::from_std);
            (std::mem::take(state.core.read_buf()), deadline)
        };
        buf.reserve(READ_CHUNK_MIN);
        let tick = Instant::now() + TIMER_TICK_MAX;
        let wake = deadline.map_or(tick, |d| d.min(tick));
        let read = tokio::select! {
            r = sock.read_buf(&mut buf) => Some(r),
            _ = tokio::time::sleep_until(wake) => None,
            _ = shutdown.wait_for(|stop| *stop) => break "closed".to_string(),
        };
        let result = {
            let mut state = lock(&shared.state);
            *state.core.read_buf() = buf;
            match read {
                Some(Ok(0)) => Err("closed by node".to_string()),
                Some(Err(e)) => Err(format!("read failed: {e}")),
                Some(Ok(_)) => state.core.handle_read().map_err(|e| e.to_string()),
                None => Ok(()),
            }
        };
        if let Err(reason) = result {
            break reason;
        }
        dispatch(&shared);
    };
    close(&shared, reason);
}

/// Expires overdue requests and hands every completion to its waiter.
fn dispatch(shared: &Shared) {
    let mut ready = Vec::new();
    {
        let mut state = lock(&shared.state);
        state.core.handle_timeout(Instant::now().into_std());
        while let Some(done) = state.core.poll_completion() {
            if let Some(waiter) = state.waiters.remove(&done.correlation_id) {
                ready.push((waiter, done.outcome));
            }
        }
    }
    for (waiter, outcome) in ready {
        let result = match outcome {
            Outcome::Response(header, payload) => Ok((header, payload)),
            Outcome::TimedOut => Err(ClientError::Timeout),
        };
        let _ = waiter.send(result);
    }
}
