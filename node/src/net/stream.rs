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
    Tls(Box<futures_rustls::server::TlsStream<Coalesce<TcpStream>>>),
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
    let handshake = async {
        match acceptor.accept(Coalesce::new(stream)).into_fallible().await {
            Ok(tls) => Some(Ok(tls)),
            Err((e, mut io)) => {
                // The alert rustls wrote (e.g. "certificate required") is gathered in the
                // transport: send it, so the client learns why, before the socket closes.
                let _ = futures_lite::future::or(futures_lite::io::AsyncWriteExt::flush(&mut io), async {
                    glommio::timer::sleep(ALERT_FLUSH_WAIT).await;
                    Ok(())
                })
                .await;
                Some(Err(e))
            }
        }
    };
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

/// Longest a failed handshake waits to send its alert.
const ALERT_FLUSH_WAIT: Duration = Duration::from_millis(100);

/// Bytes gathered before one socket write under TLS.
const COALESCE_BYTES: usize = 256 * 1024;
/// A gathering buffer larger than this is freed once flushed (an idle connection keeps none).
const COALESCE_KEEP_BYTES: usize = 16 * 1024;

/// The socket beneath a TLS session: rustls writes one TLS record (at most ~16 KiB) per
/// write, and each socket write is an io_uring round trip on the shard; gathering records
/// up to [`COALESCE_BYTES`] and writing them at once cut a TLS fetch's socket writes by
/// ~16×. Correct because rustls flushes its transport after every handshake flight and
/// the connection flushes after every response (`write_reply`, `write_response`): nothing
/// written stays here past a flush.
pub struct Coalesce<S> {
    inner: S,
    buf: Vec<u8>,
    /// Bytes of `buf` already written to `inner`.
    sent: usize,
}

impl<S> Coalesce<S> {
    pub fn new(inner: S) -> Self {
        Coalesce { inner, buf: Vec::new(), sent: 0 }
    }
}

impl<S: AsyncWrite + Unpin> Coalesce<S> {
    /// Writes out everything gathered.
    fn poll_drain(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.sent < self.buf.len() {
            match Pin::new(&mut self.inner).poll_write(cx, &self.buf[self.sent..]) {
                Poll::Ready(Ok(0)) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                Poll::Ready(Ok(n)) => self.sent += n,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => return Poll::Pending,
            }
        }
        self.sent = 0;
        if self.buf.capacity() > COALESCE_KEEP_BYTES {
            self.buf = Vec::new();
        } else {
            self.buf.clear();
        }
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Coalesce<S> {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Coalesce<S> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.buf.len() >= COALESCE_BYTES {
            if let Poll::Ready(Err(e)) = this.poll_drain(cx) {
                return Poll::Ready(Err(e));
            }
            if !this.buf.is_empty() {
                return Poll::Pending;
            }
        }
        let n = buf.len().min(COALESCE_BYTES - this.buf.len());
        this.buf.extend_from_slice(&buf[..n]);
        Poll::Ready(Ok(n))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        std::task::ready!(this.poll_drain(cx))?;
        Pin::new(&mut this.inner).poll_flush(cx)
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        std::task::ready!(this.poll_drain(cx))?;
        Pin::new(&mut this.inner).poll_close(cx)
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use futures_lite::io::AsyncWriteExt;

    /// A sink that records each write it gets.
    #[derive(Default)]
    struct Writes(Vec<usize>, Vec<u8>);

    impl AsyncRead for Writes {
        fn poll_read(self: Pin<&mut Self>, _: &mut Context<'_>, _: &mut [u8]) -> Poll<io::Result<usize>> {
            Poll::Ready(Ok(0))
        }
    }

    impl AsyncWrite for Writes {
        fn poll_write(self: Pin<&mut Self>, _: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
            let this = self.get_mut();
            this.0.push(buf.len());
            this.1.extend_from_slice(buf);
            Poll::Ready(Ok(buf.len()))
        }
        fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
        fn poll_close(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
    }

    #[test]
    fn records_are_gathered_until_full_or_flushed() {
        futures_lite::future::block_on(async {
            let mut c = Coalesce::new(Writes::default());
            let record: Vec<u8> = (0..16_400u32).map(|i| i as u8).collect();
            for _ in 0..40 {
                c.write_all(&record).await.unwrap();
            }
            // 40 records of ~16 KiB: whole 256 KiB writes, the rest waits for the flush.
            assert!(c.inner.0.iter().all(|&n| n == COALESCE_BYTES), "{:?}", c.inner.0);
            assert_eq!(c.inner.0.len(), 40 * record.len() / COALESCE_BYTES);
            c.flush().await.unwrap();
            let want: Vec<u8> = std::iter::repeat_n(record.iter().copied(), 40).flatten().collect();
            assert!(c.inner.1 == want, "bytes differ or were reordered");
            assert!(c.buf.capacity() <= COALESCE_KEEP_BYTES, "the large buffer is freed once flushed");
            c.write_all(b"ack").await.unwrap();
            assert_eq!(c.inner.1.len(), want.len(), "a small answer waits for its flush");
            c.close().await.unwrap();
            assert!(c.inner.1.ends_with(b"ack"), "close flushes");
        });
    }
}
