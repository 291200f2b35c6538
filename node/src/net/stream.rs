//! A client connection's byte stream: plain TCP, or TLS over TCP (`--tls-cert`), and the
//! setup every accepted socket goes through before a protocol serves it.
//!
//! Under TLS the kernel cannot move file bytes to the socket (the bytes must be encrypted
//! in user space; this node does not use kernel TLS offload), so [`Conn::zero_copy`] is
//! `None` and fetch answers are copied through a bounded buffer (`zerocopy::copy_file`).
//!
//! The TLS handshake has [`HANDSHAKE_TIMEOUT`]: a client that connects and never finishes
//! it (or speaks plaintext to a TLS port) is closed, counted in
//! `strand_tls_handshakes_failed_total` and logged at debug (warn at the 1st, 2nd, 4th,
//! 8th... failure), so it holds a connection slot for at most that long and cannot flood
//! the log.

use std::io;
use std::net::IpAddr;
use std::os::fd::{AsRawFd, RawFd};
use std::pin::Pin;
use std::sync::atomic::Ordering::Relaxed;
use std::task::{Context, Poll};
use std::time::Duration;

use futures_lite::io::{AsyncRead, AsyncWrite};
use glommio::net::TcpStream;
use tracing::{debug, warn};

use super::{zerocopy, ConnectionError};
use crate::shard::Shard;

/// Longest a client may take to finish the TLS handshake after connecting.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// The bytes of one connection, plain or encrypted.
pub enum Stream {
    Plain(TcpStream),
    Tls(Box<futures_rustls::server::TlsStream<TcpStream>>),
}

/// An accepted client connection, set up and (under TLS) past its handshake.
pub struct Conn {
    pub stream: Stream,
    /// The client's address (admission by source).
    pub source: IpAddr,
    /// The socket for `sendfile`, when file bytes may go to it unchanged (plain TCP only).
    pub zero_copy: Option<RawFd>,
}

/// Sets the socket up (no delay, non-blocking for `sendfile`, the write stall limit) and,
/// when the node speaks TLS, runs the handshake with the config current now (a SIGHUP
/// reload affects only connections accepted after it).
pub(super) async fn open(shard: &Shard, stream: TcpStream) -> Result<Conn, ConnectionError> {
    stream.set_nodelay(true).map_err(|e| ConnectionError::Socket(e.into()))?;
    let fd = stream.as_raw_fd();
    zerocopy::make_nonblocking(fd).map_err(ConnectionError::Socket)?;
    stream.set_write_timeout(Some(zerocopy::SEND_STALL_MAX)).map_err(|e| ConnectionError::Socket(e.into()))?;
    let source = stream.peer_addr().map_err(|e| ConnectionError::Socket(e.into()))?.ip();
    let Some(tls) = &shard.shared.tls else {
        return Ok(Conn { stream: Stream::Plain(stream), source, zero_copy: Some(fd) });
    };
    let acceptor = futures_rustls::TlsAcceptor::from(tls.config());
    let handshake = async { Some(acceptor.accept(stream).await) };
    let timeout = async {
        glommio::timer::sleep(HANDSHAKE_TIMEOUT).await;
        None
    };
    let failed = match super::until_stopped(shard, futures_lite::future::or(handshake, timeout)).await {
        Some(Some(Ok(tls))) => return Ok(Conn { stream: Stream::Tls(Box::new(tls)), source, zero_copy: None }),
        Some(Some(Err(e))) => e.to_string(),
        Some(None) => format!("no TLS handshake within {} s", HANDSHAKE_TIMEOUT.as_secs()),
        // Not the client's failure: not counted.
        None => return Err(ConnectionError::Handshake("the node is shutting down".to_string())),
    };
    let count = shard.metrics.tls_handshakes_failed.fetch_add(1, Relaxed) + 1;
    if count.is_power_of_two() {
        warn!(shard = shard.id.0, %source, reason = %failed, failures = count, "TLS handshake failed (logged at powers of two)");
    } else {
        debug!(shard = shard.id.0, %source, reason = %failed, "TLS handshake failed");
    }
    Err(ConnectionError::Handshake(failed))
}

impl AsyncRead for Stream {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_flush(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_close(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_close(cx),
        }
    }
}
