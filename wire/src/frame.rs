//! Frame codec. Every frame is
//!
//! ```text
//! u32 LE total_len | u32 LE header_len | header (header_len bytes) | payload
//! ```
//!
//! where `total_len` counts everything after itself, so the payload is
//! `total_len - 4 - header_len` bytes. The header is a FlatBuffers
//! `Request`/`Response`; the payload is raw record-batch bytes.

use bytes::{Buf, BufMut, Bytes, BytesMut};

/// Bytes before the header: `total_len` and `header_len`.
pub const FRAME_PREFIX_LEN: usize = 8;
/// Default largest frame (`total_len + 4`) a peer accepts.
pub const FRAME_LEN_MAX_DEFAULT: usize = 8 * 1024 * 1024;
/// Largest header a peer accepts, whatever the frame limit.
pub const HEADER_LEN_MAX: usize = 1024 * 1024;

/// Why a byte stream cannot be framed. Any of these ends the connection:
/// the stream position is lost.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// The frame is larger than the configured limit.
    #[error("frame of {len} bytes exceeds limit {max}")]
    TooLarge { len: usize, max: usize },
    /// `header_len` does not fit in `total_len`, or is empty or over [`HEADER_LEN_MAX`].
    #[error("frame header length {header_len} invalid for total length {total_len}")]
    BadHeaderLen { total_len: u32, header_len: u32 },
}

/// The two length fields at the start of a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FramePrefix {
    pub total_len: u32,
    pub header_len: u32,
}

impl FramePrefix {
    /// The prefix for a frame with these header and payload sizes.
    pub fn new(header_len: usize, payload_len: usize) -> Self {
        let total = 4 + header_len + payload_len;
        assert!(total <= u32::MAX as usize, "frame length overflows u32");
        FramePrefix { total_len: total as u32, header_len: header_len as u32 }
    }

    /// Parses and checks a prefix against `frame_len_max`.
    pub fn parse(buf: &[u8; FRAME_PREFIX_LEN], frame_len_max: usize) -> Result<Self, FrameError> {
        let total_len = u32::from_le_bytes([buf[0], buf[1], buf[2], buf[3]]);
        let header_len = u32::from_le_bytes([buf[4], buf[5], buf[6], buf[7]]);
        let frame_len = total_len as usize + 4;
        if frame_len > frame_len_max {
            return Err(FrameError::TooLarge { len: frame_len, max: frame_len_max });
        }
        if header_len == 0 || header_len as usize > HEADER_LEN_MAX || u64::from(header_len) + 4 > u64::from(total_len) {
            return Err(FrameError::BadHeaderLen { total_len, header_len });
        }
        Ok(FramePrefix { total_len, header_len })
    }

    /// Payload bytes after the header.
    pub fn payload_len(&self) -> usize {
        self.total_len as usize - 4 - self.header_len as usize
    }

    /// Whole frame size including the prefix.
    pub fn frame_len(&self) -> usize {
        self.total_len as usize + 4
    }

    /// The eight prefix bytes.
    pub fn to_bytes(self) -> [u8; FRAME_PREFIX_LEN] {
        let mut out = [0u8; FRAME_PREFIX_LEN];
        out[..4].copy_from_slice(&self.total_len.to_le_bytes());
        out[4..].copy_from_slice(&self.header_len.to_le_bytes());
        out
    }
}

/// A whole frame split into its header and payload (both zero-copy views).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    pub header: Bytes,
    pub payload: Bytes,
}

/// Appends a whole frame to `out`.
pub fn write_frame(out: &mut BytesMut, header: &[u8], payload: &[u8]) {
    let prefix = FramePrefix::new(header.len(), payload.len());
    out.reserve(prefix.frame_len());
    out.put_slice(&prefix.to_bytes());
    out.put_slice(header);
    out.put_slice(payload);
}

/// Payloads of at least this many bytes are decoded into an allocation of their own
/// (see [`FrameDecoder::decode`]); smaller ones share the read buffer's.
pub const PAYLOAD_OWN_BUFFER_MIN: usize = 64 * 1024;

/// Incremental decoder: feed it whatever the socket returned, take whole frames out.
#[derive(Debug, Clone)]
pub struct FrameDecoder {
    frame_len_max: usize,
}

impl FrameDecoder {
    /// A decoder that rejects frames over `frame_len_max` bytes.
    pub fn new(frame_len_max: usize) -> Self {
        assert!(frame_len_max > FRAME_PREFIX_LEN);
        FrameDecoder { frame_len_max }
    }

    /// The prefix of the next frame in `buf`, if its 8 bytes have arrived.
    pub fn peek(&self, buf: &[u8]) -> Result<Option<FramePrefix>, FrameError> {
        match buf.first_chunk::<FRAME_PREFIX_LEN>() {
            None => Ok(None),
            Some(prefix) => FramePrefix::parse(prefix, self.frame_len_max).map(Some),
        }
    }

    /// Takes the next whole frame off the front of `buf`, or `None` if more bytes are needed.
    /// After an error the stream is unusable.
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Frame>, FrameError> {
        let Some(prefix) = self.peek(buf)? else { return Ok(None) };
        if buf.len() < prefix.frame_len() {
            // Reserve once for the whole frame so the reads that follow do not reallocate.
            buf.reserve(prefix.frame_len() - buf.len());
            return Ok(None);
        }
        buf.advance(FRAME_PREFIX_LEN);
        if prefix.payload_len() < PAYLOAD_OWN_BUFFER_MIN {
            let header = buf.split_to(prefix.header_len as usize).freeze();
            let payload = buf.split_to(prefix.payload_len()).freeze();
            return Ok(Some(Frame { header, payload }));
        }
        // A large payload leaves with the read buffer's allocation to itself: the header and
        // the bytes after the frame (at most one read's worth) are copied out instead, so the
        // receiver can take the payload over without copying it (`Bytes::try_into_mut`).
        let header = Bytes::copy_from_slice(&buf[..prefix.header_len as usize]);
        buf.advance(prefix.header_len as usize);
        let payload = buf.split_to(prefix.payload_len()).freeze();
        let mut rest = BytesMut::with_capacity(buf.len().max(PAYLOAD_OWN_BUFFER_MIN));
        rest.extend_from_slice(buf);
        *buf = rest;
        Ok(Some(Frame { header, payload }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_large_payload_owns_its_allocation_and_the_rest_stays_buffered() {
        let big = vec![7u8; PAYLOAD_OWN_BUFFER_MIN];
        let mut out = BytesMut::new();
        write_frame(&mut out, b"hdr", &big);
        write_frame(&mut out, b"next", b"small");
        out.extend_from_slice(&[1, 2, 3]); // part of a third frame's prefix
        let mut dec = FrameDecoder::new(1 << 20);
        let f1 = dec.decode(&mut out).unwrap().unwrap();
        assert_eq!((&f1.header[..], f1.payload.len()), (&b"hdr"[..], big.len()));
        let payload = f1.payload.try_into_mut().expect("nothing else holds the large payload's allocation");
        assert_eq!(&payload[..], &big[..]);
        let f2 = dec.decode(&mut out).unwrap().unwrap();
        assert_eq!((&f2.header[..], &f2.payload[..]), (&b"next"[..], &b"small"[..]));
        assert_eq!(dec.decode(&mut out).unwrap(), None);
        assert_eq!(&out[..], &[1, 2, 3]);
    }

    #[test]
    fn round_trip_and_limits() {
        let mut out = BytesMut::new();
        write_frame(&mut out, b"hdr", b"payload");
        write_frame(&mut out, b"h2", b"");
        let mut dec = FrameDecoder::new(64);
        let f1 = dec.decode(&mut out).unwrap().unwrap();
        assert_eq!((&f1.header[..], &f1.payload[..]), (&b"hdr"[..], &b"payload"[..]));
        let f2 = dec.decode(&mut out).unwrap().unwrap();
        assert_eq!((&f2.header[..], &f2.payload[..]), (&b"h2"[..], &b""[..]));
        assert_eq!(dec.decode(&mut out).unwrap(), None);

        let mut big = BytesMut::new();
        write_frame(&mut big, &[0u8; 60], b"");
        assert!(matches!(dec.decode(&mut big), Err(FrameError::TooLarge { .. })));
        let mut bad = BytesMut::from(&FramePrefix { total_len: 6, header_len: 3 }.to_bytes()[..]);
        assert!(matches!(dec.decode(&mut bad), Err(FrameError::BadHeaderLen { .. })));
        let mut empty_header = BytesMut::from(&FramePrefix { total_len: 4, header_len: 0 }.to_bytes()[..]);
        assert!(matches!(dec.decode(&mut empty_header), Err(FrameError::BadHeaderLen { .. })));
    }
}
