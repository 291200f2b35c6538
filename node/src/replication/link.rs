//! Replication transport on one shard: persistent, pipelined outbound connections to
//! peer shards ([`LinkPool`], one per socket address, shared by the shard's replicas),
//! each replica's address book ([`Peers`]) and the inbound accept loop ([`serve`]).
//!
//! With cluster TLS on ([`super::tls`]) every connection is mutual TLS first: a peer
//! without a certificate of the cluster's CA is refused before any replication byte.
//! Every connection then starts with a mutual challenge-response over the cluster secret
//! ([`super::auth`]): the inbound side learns which node it talks to and the link side
//! that it reached a holder of the secret. After it, every chain message is a one-way
//! request frame; nothing is answered on the same connection, so a link only writes
//! and an inbound connection only reads. Loss is the chain core's business (go-back-N
//! retransmission): a link drops frames when its bounded queue is full or its
//! connection breaks, then reconnects. Invariants: frames of one link leave in the
//! order they were queued; no inbound frame is decoded before the handshake proved its
//! sender, and every frame is handed on with that proven sender; at most
//! [`InboundLimits::connections_max`] inbound connections are open per listener.

use bytes::{Bytes, BytesMut};
use futures_lite::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use glommio::net::{TcpListener, TcpStream};
use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;
use strand_core::chain::NodeId;
use strand_wire::frame::{FrameDecoder, FrameError};
use tracing::{debug, info, warn};

use super::auth::{self, LinkAuth};
use crate::metrics::ShardMetrics;

/// Frames one link queues before it drops new ones (the core retransmits them).
pub const LINK_QUEUE_FRAMES_MAX: usize = 1024;
/// Bytes written to the socket in one call at most (frames are coalesced up to this).
pub const LINK_WRITE_BYTES_MAX: usize = 4 * 1024 * 1024;
/// Largest replication frame accepted (an append is at most 1 MiB of batches plus header).
pub const REPLICATION_FRAME_LEN_MAX: usize = 8 * 1024 * 1024;
/// Pause between connection attempts to an unreachable peer.
pub const RECONNECT_DELAY_MS: u64 = 50;
/// Default inbound replication connections per listener (`replication_connections_max`).
pub const REPLICATION_CONNECTIONS_MAX_DEFAULT: u32 = 256;
/// Default time an inbound connection has to complete the handshake
/// (`replication_handshake_timeout_ms`); the link side waits as long for the answer.
pub const REPLICATION_HANDSHAKE_TIMEOUT_MS_DEFAULT: u64 = 5_000;

/// A replication connection's bytes: plain TCP or TLS over it.
trait Io: AsyncRead + AsyncWrite + Unpin {}
impl<T: AsyncRead + AsyncWrite + Unpin> Io for T {}
type LinkStream = Box<dyn Io>;

/// Why a replication handshake failed, on either side.
#[derive(Debug, thiserror::Error)]
enum HandshakeError {
    /// The socket failed at `step` (e.g. "reading the hello").
    #[error("{step}: {source}")]
    Io { step: &'static str, source: std::io::Error },
    #[error(transparent)]
    Auth(#[from] auth::AuthError),
    #[error("no handshake within {limit_ms} ms")]
    Timeout { limit_ms: u128 },
    /// The TLS handshake failed (no or a foreign certificate, plaintext peer...).
    #[error("TLS: {0}")]
    Tls(std::io::Error),
}

/// Why an inbound replication connection was closed.
#[derive(Debug, thiserror::Error)]
enum InboundError {
    #[error("setting up the socket: {0}")]
    Socket(std::io::Error),
    #[error("handshake failed: {0}")]
    Handshake(HandshakeError),
    #[error(transparent)]
    Frame(#[from] FrameError),
    #[error(transparent)]
    Read(std::io::Error),
}

/// Maps a socket error at `step` of a handshake.
fn failed_at(step: &'static str) -> impl FnOnce(std::io::Error) -> HandshakeError {
    move |source| HandshakeError::Io { step, source }
}

/// Bounds of one replication listener.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InboundLimits {
    /// Open inbound connections (handshaking or authenticated); more are closed at once.
    pub connections_max: u32,
    /// A connection that has not proven its sender by then is closed.
    pub handshake_timeout_ms: u64,
}

impl Default for InboundLimits {
    fn default() -> Self {
        InboundLimits {
            connections_max: REPLICATION_CONNECTIONS_MAX_DEFAULT,
            handshake_timeout_ms: REPLICATION_HANDSHAKE_TIMEOUT_MS_DEFAULT,
        }
    }
}

/// Everything the inbound side of one shard needs besides the listener.
pub struct Inbound {
    pub auth: LinkAuth,
    pub limits: InboundLimits,
    /// Counts refused and unauthenticated connections.
    pub metrics: Arc<ShardMetrics>,
    /// Called with the proven sender when its authenticated connection ends (closed or
    /// reset): the peer may have died, so the node probes it (fast failure detection).
    pub on_peer_lost: Option<Rc<dyn Fn(NodeId, &'static str)>>,
}

/// The frame handler of [`serve`]: (proven sender, header bytes, payload).
pub type FrameHandler = Rc<dyn Fn(NodeId, Bytes, Bytes)>;

/// Outbound links of one shard, one per peer socket address, shared by every replica of
/// the shard (partitions replicating to the same peer shard share one connection).
pub struct LinkPool {
    auth: LinkAuth,
    links: RefCell<HashMap<SocketAddr, flume::Sender<Bytes>>>,
}

impl LinkPool {
    /// An empty pool whose links prove they come from `auth`'s node.
    pub fn new(auth: LinkAuth) -> Rc<LinkPool> {
        Rc::new(LinkPool { auth, links: RefCell::new(HashMap::new()) })
    }

    /// Queues `frame` on the link to `addr` (opened lazily). False when dropped (queue full).
    pub fn send(&self, addr: SocketAddr, frame: Bytes) -> bool {
        let mut links = self.links.borrow_mut();
        let link = links.entry(addr).or_insert_with(|| {
            let (tx, rx) = flume::bounded(LINK_QUEUE_FRAMES_MAX);
            glommio::spawn_local(run_link(addr, rx, self.auth.clone())).detach();
            tx
        });
        link.try_send(frame).is_ok()
    }

    /// Closes the link to `addr` (its task ends once its queue drained).
    pub fn close(&self, addr: SocketAddr) {
        self.links.borrow_mut().remove(&addr);
    }
}

/// One replica's address book: where each peer node's copy of this partition lives
/// (its owner shard's replication listener), sending over a [`LinkPool`] — or, in the
/// replica simulator, handing every frame to its network ([`Peers::sim`]).
pub struct Peers {
    addrs: RefCell<HashMap<NodeId, SocketAddr>>,
    route: Route,
}

/// Where [`Peers::send`] hands a frame.
enum Route {
    /// Queued on the link to the peer's address.
    Links(Rc<LinkPool>),
    /// The replica simulator's network: the encoded frame as the link would write it.
    #[cfg(feature = "sim")]
    Sim(SimSink),
}

/// The replica simulator's frame sink: (to, frame) → whether it was taken.
#[cfg(feature = "sim")]
pub type SimSink = Rc<dyn Fn(NodeId, Bytes) -> bool>;

impl Peers {
    /// Peers at the given replication addresses, with a pool of their own.
    pub fn new(auth: LinkAuth, addrs: HashMap<NodeId, SocketAddr>) -> Rc<Peers> {
        Peers::with_pool(LinkPool::new(auth), addrs)
    }

    /// Peers at the given addresses, sending over a shard's shared `pool`.
    pub fn with_pool(pool: Rc<LinkPool>, addrs: HashMap<NodeId, SocketAddr>) -> Rc<Peers> {
        Rc::new(Peers { addrs: RefCell::new(addrs), route: Route::Links(pool) })
    }

    /// Peers reached through the simulator's `sink`: every frame goes to it, encoded
    /// exactly as a link would write it (length prefix, header, payload).
    #[cfg(feature = "sim")]
    pub fn sim(sink: SimSink) -> Rc<Peers> {
        Rc::new(Peers { addrs: RefCell::new(HashMap::new()), route: Route::Sim(sink) })
    }

    /// Sets (or changes) a peer's address; the link to an old address is closed (a
    /// restarted peer may listen on a new port).
    pub fn set_addr(&self, node: NodeId, addr: SocketAddr) {
        let old = self.addrs.borrow_mut().insert(node, addr);
        if let (Some(old), Route::Links(pool)) = (old.filter(|old| *old != addr), &self.route) {
            pool.close(old);
        }
    }

    /// Queues `frame` for `to`. False when it was dropped (unknown peer or full queue).
    pub fn send(&self, to: NodeId, frame: Bytes) -> bool {
        match &self.route {
            Route::Links(pool) => {
                let Some(addr) = self.addrs.borrow().get(&to).copied() else {
                    warn!(node = to.0, "no address for replication peer");
                    return false;
                };
                pool.send(addr, frame)
            }
            #[cfg(feature = "sim")]
            Route::Sim(sink) => sink(to, frame),
        }
    }
}

/// Frames of at least this size are written as they are, not copied into the
/// coalescing buffer (one more syscall per large frame instead of one more copy).
pub const LINK_COALESCE_BYTES_MAX: usize = 16 * 1024;

/// Writes queued frames to `addr` until every sender of the queue is gone. Small frames
/// (acks, heartbeats) are coalesced into one write; large ones are written in place.
async fn run_link(addr: SocketAddr, rx: flume::Receiver<Bytes>, auth: LinkAuth) {
    let mut stream: Option<LinkStream> = None;
    let mut out = BytesMut::new();
    let mut frames: Vec<Bytes> = Vec::new();
    while let Ok(frame) = rx.recv_async().await {
        let mut queued = frame.len();
        frames.push(frame);
        while queued < LINK_WRITE_BYTES_MAX {
            match rx.try_recv() {
                Ok(more) => {
                    queued += more.len();
                    frames.push(more);
                }
                Err(_) => break,
            }
        }
        if stream.is_none() {
            stream = connect(addr, &auth).await;
        }
        let Some(conn) = stream.as_mut() else {
            frames.clear();
            glommio::timer::sleep(Duration::from_millis(RECONNECT_DELAY_MS)).await;
            continue;
        };
        if let Err(e) = write_frames(conn, &frames, &mut out).await {
            info!(%addr, error = %e, "replication link broke; reconnecting");
            stream = None;
        }
        frames.clear();
        out.clear();
    }
    debug!(%addr, "replication link closed");
}

/// Writes `frames` in order: runs of small ones through `out`, large ones directly.
async fn write_frames(conn: &mut LinkStream, frames: &[Bytes], out: &mut BytesMut) -> std::io::Result<()> {
    for frame in frames.iter() {
        if frame.len() < LINK_COALESCE_BYTES_MAX {
            out.extend_from_slice(frame);
            continue;
        }
        if !out.is_empty() {
            conn.write_all(out).await?;
            out.clear();
        }
        conn.write_all(frame).await?;
    }
    if !out.is_empty() {
        conn.write_all(out).await?;
    }
    Ok(())
}

/// Connects and runs the link side of the handshake; `None` when either failed.
async fn connect(addr: SocketAddr, auth: &LinkAuth) -> Option<LinkStream> {
    let stream = match TcpStream::connect(addr).await {
        Ok(s) => s,
        Err(e) => {
            debug!(%addr, error = %e, "replication connect failed");
            return None;
        }
    };
    if let Err(e) = stream.set_nodelay(true) {
        warn!(%addr, error = %e, "set_nodelay failed on replication link");
    }
    let timeout = Duration::from_millis(REPLICATION_HANDSHAKE_TIMEOUT_MS_DEFAULT);
    let handshake = async {
        let mut stream: LinkStream = match auth.tls() {
            None => Box::new(stream),
            Some(tls) => {
                let tls_stream = tls.connector().connect(super::tls::server_name(addr), stream).await;
                Box::new(tls_stream.map_err(HandshakeError::Tls)?)
            }
        };
        link_handshake(&mut stream, auth).await?;
        Ok(stream)
    };
    match within(timeout, handshake).await {
        Ok(stream) => Some(stream),
        Err(reason) => {
            warn!(
                %addr,
                %reason,
                "replication handshake failed (are the cluster secret and the cluster TLS files right on every node?)"
            );
            None
        }
    }
}

/// The link side: read the challenge, prove ourselves, check the listener's proof.
async fn link_handshake(stream: &mut LinkStream, auth: &LinkAuth) -> Result<(), HandshakeError> {
    let mut challenge = [0u8; auth::CHALLENGE_LEN];
    stream.read_exact(&mut challenge).await.map_err(failed_at("reading the challenge"))?;
    let (hello, expected) = auth.answer(&challenge)?;
    stream.write_all(&hello).await.map_err(failed_at("writing the hello"))?;
    let mut proof = [0u8; auth::PROOF_LEN];
    stream.read_exact(&mut proof).await.map_err(failed_at("reading the listener's proof"))?;
    Ok(expected.verify(&proof)?)
}

/// `fut`'s result, or an error once `limit` passed.
async fn within<T>(limit: Duration, fut: impl Future<Output = Result<T, HandshakeError>>) -> Result<T, HandshakeError> {
    let timer = async {
        glommio::timer::sleep(limit).await;
        Err(HandshakeError::Timeout { limit_ms: limit.as_millis() })
    };
    futures_lite::future::or(fut, timer).await
}

/// Decrements the listener's open-connection count when a connection ends.
struct OpenSlot(Rc<Cell<u32>>);

impl Drop for OpenSlot {
    fn drop(&mut self) {
        self.0.set(self.0.get().saturating_sub(1));
    }
}

/// Accepts replication connections: past [`InboundLimits::connections_max`] a
/// connection is closed at once (counted); otherwise it must complete the handshake
/// within the timeout, after which every decoded frame goes to `on_frame` with the
/// proven sender. Runs until the listener fails.
pub async fn serve(listener: TcpListener, on_frame: FrameHandler, inbound: Inbound) {
    let inbound = Rc::new(inbound);
    let open = Rc::new(Cell::new(0u32));
    loop {
        let stream = match listener.accept().await {
            Ok(s) => s,
            Err(e) => {
                warn!(error = %e, "replication accept failed");
                glommio::timer::sleep(Duration::from_millis(RECONNECT_DELAY_MS)).await;
                continue;
            }
        };
        if open.get() >= inbound.limits.connections_max {
            let refused = inbound.metrics.replication_connections_refused.fetch_add(1, Relaxed) + 1;
            if refused.is_power_of_two() {
                warn!(
                    limit = inbound.limits.connections_max,
                    refused_total = refused,
                    "replication connection refused: replication_connections_max reached"
                );
            }
            drop(stream);
            continue;
        }
        open.set(open.get() + 1);
        let slot = OpenSlot(open.clone());
        let (on_frame, inbound) = (on_frame.clone(), inbound.clone());
        glommio::spawn_local(async move {
            let _slot = slot;
            if let Err(reason) = serve_connection(stream, on_frame, &inbound).await {
                info!(%reason, "replication connection closed");
            }
        })
        .detach();
    }
}

async fn serve_connection(stream: TcpStream, on_frame: FrameHandler, inbound: &Inbound) -> Result<(), InboundError> {
    stream.set_nodelay(true).map_err(|e| InboundError::Socket(e.into()))?;
    let timeout = Duration::from_millis(inbound.limits.handshake_timeout_ms);
    // TLS (when on) and the secret handshake share one deadline: a peer that stalls in
    // either holds its slot for at most `replication_handshake_timeout_ms`.
    let handshake = async {
        let mut stream: LinkStream = match inbound.auth.tls() {
            None => Box::new(stream),
            Some(tls) => Box::new(tls.acceptor().accept(stream).await.map_err(HandshakeError::Tls)?),
        };
        let peer = listener_handshake(&mut stream, &inbound.auth).await?;
        Ok((peer, stream))
    };
    let (peer, stream) = match within(timeout, handshake).await {
        Ok(done) => done,
        Err(reason) => {
            inbound.metrics.replication_handshakes_failed.fetch_add(1, Relaxed);
            return Err(InboundError::Handshake(reason));
        }
    };
    debug!(peer = peer.0, "replication connection authenticated");
    let outcome = read_frames(stream, peer, on_frame).await;
    let reason = if outcome.is_ok() { "replication connection closed" } else { "replication connection broke" };
    info!(peer = peer.0, reason, "inbound replication connection ended");
    if let Some(report) = &inbound.on_peer_lost {
        report(peer, reason);
    }
    outcome
}

/// The listener side: send a challenge, check the hello, prove ourselves; the sender.
async fn listener_handshake(stream: &mut LinkStream, auth: &LinkAuth) -> Result<NodeId, HandshakeError> {
    let challenge = auth::Challenge::new()?;
    stream.write_all(&challenge.bytes()).await.map_err(failed_at("writing the challenge"))?;
    let mut hello = [0u8; auth::HELLO_LEN];
    stream.read_exact(&mut hello).await.map_err(failed_at("reading the hello"))?;
    let (peer, proof) = auth.check_hello(&challenge, &hello)?;
    stream.write_all(&proof).await.map_err(failed_at("writing the proof"))?;
    Ok(peer)
}

async fn read_frames(mut stream: LinkStream, peer: NodeId, on_frame: FrameHandler) -> Result<(), InboundError> {
    let mut decoder = FrameDecoder::new(REPLICATION_FRAME_LEN_MAX);
    let mut buf = BytesMut::with_capacity(64 * 1024);
    let mut chunk = vec![0u8; 64 * 1024];
    loop {
        while let Some(frame) = decoder.decode(&mut buf)? {
            on_frame(peer, frame.header, frame.payload);
        }
        let n = stream.read(&mut chunk).await.map_err(InboundError::Read)?;
        if n == 0 {
            return Ok(());
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}
