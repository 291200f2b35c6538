//! Replication transport on one shard: persistent, pipelined outbound connections to
//! peer nodes ([`Peers`]) and the inbound accept loop ([`serve`]).
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

/// The addresses of the other nodes and one lazily opened link to each.
pub struct Peers {
    addrs: RefCell<HashMap<NodeId, SocketAddr>>,
    links: RefCell<HashMap<NodeId, flume::Sender<Bytes>>>,
}

impl Peers {
    /// Peers at the given replication addresses.
    pub fn new(addrs: HashMap<NodeId, SocketAddr>) -> Rc<Peers> {
        Rc::new(Peers { addrs: RefCell::new(addrs), links: RefCell::new(HashMap::new()) })
    }

    /// Sets (or changes) a peer's address; an open link to the old address is closed.
    pub fn set_addr(&self, node: NodeId, addr: SocketAddr) {
        if self.addrs.borrow_mut().insert(node, addr) != Some(addr) {
            self.links.borrow_mut().remove(&node);
        }
    }

    /// Queues `frame` for `to`. False when it was dropped (unknown peer or full queue).
    pub fn send(&self, to: NodeId, frame: Bytes) -> bool {
        let Some(addr) = self.addrs.borrow().get(&to).copied() else {
            warn!(node = to.0, "no address for replication peer");
            return false;
        };
        let mut links = self.links.borrow_mut();
        let link = links.entry(to).or_insert_with(|| {
            let (tx, rx) = flume::bounded(LINK_QUEUE_FRAMES_MAX);
            glommio::spawn_local(run_link(addr, rx)).detach();
            tx
        });
        link.try_send(frame).is_ok()
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
