//! Zero-copy send of segment-file bytes to a socket.
//!
//! Design choice (DESIGN §5: cold data must not stall the reactor): the copy is
//! done by `sendfile(2)` — the kernel moves page-cache pages to the socket with no
//! user-space copy — and runs on the shard's glommio blocking thread
//! (`spawn_blocking`), so a page-cache miss blocks that helper thread, never the
//! reactor. The reactor only pays a hand-off per chunk. The socket and file
//! descriptors are `dup`ed for the helper, so the call stays memory- and fd-safe
//! even if the connection task is dropped mid-send.
//!
//! Invariant: the caller holds the connection's write lock for the whole call, so
//! no other bytes interleave with a spliced payload; a short or failed send is an
//! error that must close the connection (the frame on the wire is incomplete).

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::time::{Duration, Instant};

/// How long a send may make no progress (slow or stuck reader) before it fails.
pub const SEND_STALL_MAX: Duration = Duration::from_secs(30);
/// Kernel send timeout set on sockets, so a stuck reader turns into EAGAIN slices.
const SOCKET_SEND_TIMEOUT: Duration = Duration::from_secs(1);

fn dup(fd: RawFd) -> io::Result<OwnedFd> {
    // SAFETY: dup only reads the descriptor number; an invalid one yields EBADF.
    let new = unsafe { libc::dup(fd) };
    if new < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `new` is a fresh descriptor this process owns and nobody else holds.
    Ok(unsafe { OwnedFd::from_raw_fd(new) })
}

/// Sets `SO_SNDTIMEO` so a blocking `sendfile` on a stalled socket returns periodically.
pub fn set_send_timeout(socket: RawFd) -> io::Result<()> {
    let tv = libc::timeval { tv_sec: SOCKET_SEND_TIMEOUT.as_secs() as libc::time_t, tv_usec: 0 };
    // SAFETY: `tv` is a valid timeval for the duration of the call and its size is passed.
    let rc = unsafe {
        libc::setsockopt(
            socket,
            libc::SOL_SOCKET,
            libc::SO_SNDTIMEO,
            (&tv as *const libc::timeval).cast(),
            std::mem::size_of::<libc::timeval>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Sends `len` bytes of `file` from `pos` to `socket` without user-space copies,
/// on the blocking thread pool. Returns when all bytes were sent.
pub async fn send_file(socket: RawFd, file: RawFd, pos: u64, len: u32) -> io::Result<()> {
    if len == 0 {
        return Ok(());
    }
    let socket = dup(socket)?;
    let file = dup(file)?;
    glommio::executor().spawn_blocking(move || sendfile_all(&socket, &file, pos, len)).await
}

fn sendfile_all(socket: &OwnedFd, file: &OwnedFd, pos: u64, len: u32) -> io::Result<()> {
    let mut offset = pos as libc::off_t;
    let end = pos + u64::from(len);
    let mut last_progress = Instant::now();
    while (offset as u64) < end {
        let left = (end - offset as u64) as usize;
        // SAFETY: both descriptors are owned and open for the call; `offset` is a valid
        // pointer the kernel advances by the bytes sent.
        let sent = unsafe { libc::sendfile(socket.as_raw_fd(), file.as_raw_fd(), &mut offset, left) };
        if sent > 0 {
            last_progress = Instant::now();
            continue;
        }
        if sent == 0 {
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "segment file shorter than the fetch chunk"));
        }
        let err = io::Error::last_os_error();
        match err.kind() {
            io::ErrorKind::Interrupted => {}
            io::ErrorKind::WouldBlock if last_progress.elapsed() < SEND_STALL_MAX => {
                // SO_SNDTIMEO expired, or the socket is non-blocking: wait for room.
                let mut pfd = libc::pollfd { fd: socket.as_raw_fd(), events: libc::POLLOUT, revents: 0 };
                // SAFETY: one valid pollfd, count 1.
                unsafe { libc::poll(&mut pfd, 1, SOCKET_SEND_TIMEOUT.as_millis() as libc::c_int) };
            }
            _ => return Err(err),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};

    #[test]
    fn sends_a_file_range_to_a_socket() {
        let mut file = tempfile::tempfile().unwrap();
        let data: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
        file.write_all(&data).unwrap();
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let mut client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (server, _) = listener.accept().unwrap();
        set_send_timeout(server.as_raw_fd()).unwrap();
        let socket = dup(server.as_raw_fd()).unwrap();
        let file_fd = dup(file.as_raw_fd()).unwrap();
        let reader = std::thread::spawn(move || {
            let mut got = vec![0u8; 150_000];
            client.read_exact(&mut got).unwrap();
            got
        });
        sendfile_all(&socket, &file_fd, 1_000, 150_000).unwrap();
        assert_eq!(reader.join().unwrap(), &data[1_000..151_000]);
        let short = sendfile_all(&socket, &file_fd, 199_990, 100).unwrap_err();
        assert_eq!(short.kind(), io::ErrorKind::UnexpectedEof);
    }
}
