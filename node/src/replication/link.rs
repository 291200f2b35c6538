//! Replication transport on one shard: persistent, pipelined outbound connections to
//! peer shards ([`LinkPool`], one per socket address, shared by the shard's replicas),
//! each replica's address book ([`Peers`]) and the inbound accept loop ([`serve`]).
//!
//! Every chain message is a one-way request frame; nothing is answered on the same
//! connection, so a link only writes and an inbound connection only reads. Loss is
//! the chain core's business (go-back-N retransmission): a link drops frames when its
//! bounded queue is full or its connection breaks, then reconnects. Invariant: frames
//! of one link leave in the order they were queued.

use bytes::{Bytes, BytesMut};
use futures_lite::{AsyncReadExt, AsyncWriteExt};
use glommio::net::{TcpListener, TcpStream};
use std::cell::RefCell;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::Duration;
use strand_core::chain::NodeId;
use strand_wire::frame::FrameDecoder;
use tracing::{debug, info, warn};

/// Frames one link queues before it drops new ones (the core retransmits them).
pub const LINK_QUEUE_FRAMES_MAX: usize = 1024;
/// Bytes written to the socket in one call at most (frames are coalesced up to this).
pub const LINK_WRITE_BYTES_MAX: usize = 4 * 1024 * 1024;
/// Largest replication frame accepted (an append is at most 1 MiB of batches plus header).
pub const REPLICATION_FRAME_LEN_MAX: usize = 8 * 1024 * 1024;
/// Pause between connection attempts to an unreachable peer.
pub const RECONNECT_DELAY_MS: u64 = 50;

/// Outbound links of one shard, one per peer socket address, shared by every replica of
/// the shard (partitions replicating to the same peer shard share one connection).
#[derive(Default)]
pub struct LinkPool {
    links: RefCell<HashMap<SocketAddr, flume::Sender<Bytes>>>,
}

impl LinkPool {
    /// An empty pool.
    pub fn new() -> Rc<LinkPool> {
        Rc::new(LinkPool::default())
    }

    /// Queues `frame` on the link to `addr` (opened lazily). False when dropped (queue full).
    pub fn send(&self, addr: SocketAddr, frame: Bytes) -> bool {
        let mut links = self.links.borrow_mut();
        let link = links.entry(addr).or_insert_with(|| {
            let (tx, rx) = flume::bounded(LINK_QUEUE_FRAMES_MAX);
            glommio::spawn_local(run_link(addr, rx)).detach();
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
/// (its owner shard's replication listener), sending over a [`LinkPool`].
pub struct Peers {
    addrs: RefCell<HashMap<NodeId, SocketAddr>>,
    pool: Rc<LinkPool>,
}

impl Peers {
    /// Peers at the given replication addresses, with a pool of their own.
    pub fn new(addrs: HashMap<NodeId, SocketAddr>) -> Rc<Peers> {
        Peers::with_pool(LinkPool::new(), addrs)
    }

    /// Peers at the given addresses, sending over a shard's shared `pool`.
    pub fn with_pool(pool: Rc<LinkPool>, addrs: HashMap<NodeId, SocketAddr>) -> Rc<Peers> {
        Rc::new(Peers { addrs: RefCell::new(addrs), pool })
    }

    /// Sets (or changes) a peer's address; the link to an old address is closed (a
    /// restarted peer may listen on a new port).
    pub fn set_addr(&self, node: NodeId, addr: SocketAddr) {
        let old = self.addrs.borrow_mut().insert(node, addr);
        if let Some(old) = old.filter(|old| *old != addr) {
            self.pool.close(old);
        }
    }

    /// Queues `frame` for `to`. False when it was dropped (unknown peer or full queue).
    pub fn send(&self, to: NodeId, frame: Bytes) -> bool {
        let Some(addr) = self.addrs.borrow().get(&to).copied() else {
            warn!(node = to.0, "no address for replication peer");
            return false;
        };
        self.pool.send(addr, frame)
    }
}

/// Writes queued frames to `addr` until every sender of the queue is gone.
async fn run_link(addr: SocketAddr, rx: flume::Receiver<Bytes>) {
    let mut stream: Option<TcpStream> = None;
    let mut out = BytesMut::new();
    while let Ok(frame) = rx.recv_async().await {
        out.extend_from_slice(&frame);
        while out.len() < LINK_WRITE_BYTES_MAX {
            match rx.try_recv() {
                Ok(more) => out.extend_from_slice(&more),
                Err(_) => break,
            }
        }
        if stream.is_none() {
            stream = connect(addr).await;
        }
        let Some(conn) = stream.as_mut() else {
            out.clear();
            glommio::timer::sleep(Duration::from_millis(RECONNECT_DELAY_MS)).await;
            continue;
        };
        if let Err(e) = conn.write_all(&out).await {
            info!(%addr, error = %e, "replication link broke; reconnecting");
            stream = None;
        }
        out.clear();
    }
    debug!(%addr, "replication link closed");
}

async fn connect(addr: SocketAddr) -> Option<TcpStream> {
    match TcpStream::connect(addr).await {
        Ok(s) => {
            if let Err(e) = s.set_nodelay(true) {
                warn!(%addr, error = %e, "set_nodelay failed on replication link");
            }
            Some(s)
        }
        Err(e) => {
            debug!(%addr, error = %e, "replication connect failed");
            None
        }
    }
}

/// Accepts replication connections and hands every decoded frame (header bytes,
/// payload) to `on_frame`. Runs until the listener fails.
pub async fn serve(listener: TcpListener, on_frame: Rc<dyn Fn(Bytes, Bytes)>) {
    loop {
        let stream = match listener.accept().await {
            Ok(s) => s,
            Err(e) => {
                warn!(error = %e, "replication accept failed");
                glommio::timer::sleep(Duration::from_millis(RECONNECT_DELAY_MS)).await;
                continue;
            }
        };
        let on_frame = on_frame.clone();
        glommio::spawn_local(async move {
            if let Err(reason) = read_frames(stream, on_frame).await {
                info!(%reason, "replication connection closed");
            }
        })
        .detach();
    }
}

async fn read_frames(mut stream: TcpStream, on_frame: Rc<dyn Fn(Bytes, Bytes)>) -> Result<(), String> {
    stream.set_nodelay(true).map_err(|e| e.to_string())?;
    let mut decoder = FrameDecoder::new(REPLICATION_FRAME_LEN_MAX);
    let mut buf = BytesMut::with_capacity(64 * 1024);
    let mut chunk = vec![0u8; 64 * 1024];
    loop {
        while let Some(frame) = decoder.decode(&mut buf).map_err(|e| e.to_string())? {
            on_frame(frame.header, frame.payload);
        }
        let n = stream.read(&mut chunk).await.map_err(|e| e.to_string())?;
        if n == 0 {
            return Ok(());
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}
