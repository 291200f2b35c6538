//! The sans-IO protocol core of one connection: it turns requests into frame
//! bytes, takes whatever bytes the socket produced, and hands back decoded
//! responses matched to the correlation ids it issued. It never touches a
//! socket and never reads a clock: the shell passes `now` in and asks
//! [`ConnCore::poll_timeout`] when to call [`ConnCore::handle_timeout`].
//!
//! Invariants: correlation ids are issued strictly increasing and never
//! reused on one connection; a response is delivered at most once, only for an
//! id that is still pending (late responses to timed-out or fire-and-forget
//! requests are dropped and counted); a framing or header-decoding error poisons
//! the connection, because the position in the byte stream is lost.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use strand_wire::codec::{decode_response, try_encode_request, DecodeError, EncodeError};
use strand_wire::frame::{write_frame, FrameDecoder, FrameError};
use strand_wire::msg::{Request, RequestHeader, ResponseHeader};

/// Why the byte stream of a connection is unusable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProtoError {
    /// The node sent bytes that do not frame.
    #[error("bad frame from node: {0}")]
    Frame(#[from] FrameError),
    /// A response header failed verification.
    #[error("bad response header: {0}")]
    Decode(#[from] DecodeError),
}

/// What became of one pending request.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// The response arrived: its decoded header and its raw payload.
    Response(ResponseHeader, Bytes),
    /// No response arrived before the request's deadline.
    TimedOut,
}

/// An event for the shell: the outcome of the request with `correlation_id`.
#[derive(Debug, Clone, PartialEq)]
pub struct Completion {
    pub correlation_id: u64,
    pub outcome: Outcome,
}

/// Protocol state of one client connection.
#[derive(Debug)]
pub struct ConnCore {
    decoder: FrameDecoder,
    read_buf: BytesMut,
    correlation_id_next: u64,
    /// Pending requests: correlation id → deadline.
    pending: HashMap<u64, Instant>,
    /// Deadlines ordered for `poll_timeout`; entries of already answered ids are skipped lazily.
    deadlines: BTreeMap<(Instant, u64), ()>,
    completions: VecDeque<Completion>,
    responses_unmatched_count: u64,
    poisoned: Option<ProtoError>,
}

impl ConnCore {
    /// A core that accepts response frames of at most `frame_len_max` bytes.
    pub fn new(frame_len_max: usize) -> Self {
        ConnCore {
            decoder: FrameDecoder::new(frame_len_max),
            read_buf: BytesMut::with_capacity(64 * 1024),
            correlation_id_next: 1,
            pending: HashMap::new(),
            deadlines: BTreeMap::new(),
            completions: VecDeque::new(),
            responses_unmatched_count: 0,
            poisoned: None,
        }
    }

    /// Encodes `request` with `payload` into `out` and returns its correlation id. When
    /// `expect_response` is false (produce with `acks = none`) nothing is tracked. A request
    /// the node's decoder would refuse (a list or string over the wire limits) is an error
    /// here, and `out` is left untouched.
    pub fn encode_request(
        &mut self,
        now: Instant,
        timeout: Duration,
        request: Request,
        payload: &[u8],
        expect_response: bool,
        out: &mut BytesMut,
    ) -> Result<u64, EncodeError> {
        let correlation_id = self.correlation_id_next;
        let header = try_encode_request(&RequestHeader { correlation_id, request })?;
        self.correlation_id_next += 1;
        write_frame(out, &header, payload);
        if expect_response {
            let deadline = now + timeout;
            self.pending.insert(correlation_id, deadline);
            self.deadlines.insert((deadline, correlation_id), ());
        }
        Ok(correlation_id)
    }

    /// Forgets a pending request (its caller gave up); a later response to it is dropped.
    pub fn cancel(&mut self, correlation_id: u64) {
        if let Some(deadline) = self.pending.remove(&correlation_id) {
            self.deadlines.remove(&(deadline, correlation_id));
        }
    }

    /// Feeds bytes read from the socket. Whole frames become completions.
    pub fn handle_bytes(&mut self, bytes: &[u8]) -> Result<(), ProtoError> {
        if let Some(e) = &self.poisoned {
            return Err(e.clone());
        }
        self.read_buf.extend_from_slice(bytes);
        self.drain_frames().inspect_err(|e| self.poisoned = Some(e.clone()))
    }

    /// The buffer the shell may read into directly (then call [`ConnCore::handle_read`]).
    pub fn read_buf(&mut self) -> &mut BytesMut {
        &mut self.read_buf
    }

    /// Processes bytes the shell appended to [`ConnCore::read_buf`] itself.
    pub fn handle_read(&mut self) -> Result<(), ProtoError> {
        if let Some(e) = &self.poisoned {
            return Err(e.clone());
        }
        self.drain_frames().inspect_err(|e| self.poisoned = Some(e.clone()))
    }

    fn drain_frames(&mut self) -> Result<(), ProtoError> {
        while let Some(frame) = self.decoder.decode(&mut self.read_buf)? {
            let header = decode_response(&frame.header)?;
            let correlation_id = header.correlation_id;
            match self.pending.remove(&correlation_id) {
                Some(deadline) => {
                    self.deadlines.remove(&(deadline, correlation_id));
                    let outcome = Outcome::Response(header, frame.payload);
                    self.completions.push_back(Completion { correlation_id, outcome });
                }
                None => self.responses_unmatched_count += 1,
            }
        }
        Ok(())
    }

    /// Expires every pending request whose deadline is at or before `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        while let Some((&(deadline, correlation_id), _)) = self.deadlines.first_key_value() {
            if deadline > now {
                break;
            }
            self.deadlines.remove(&(deadline, correlation_id));
            self.pending.remove(&correlation_id);
            self.completions.push_back(Completion { correlation_id, outcome: Outcome::TimedOut });
        }
    }

    /// The earliest deadline of a pending request, if any.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.deadlines.first_key_value().map(|(&(deadline, _), _)| deadline)
    }

    /// The next completed request, in the order responses arrived or deadlines passed.
    pub fn poll_completion(&mut self) -> Option<Completion> {
        self.completions.pop_front()
    }

    /// Ids still waiting for a response (e.g. to fail them when the socket closes).
    pub fn take_pending(&mut self) -> Vec<u64> {
        self.deadlines.clear();
        let mut ids: Vec<u64> = self.pending.drain().map(|(id, _)| id).collect();
        ids.sort_unstable();
        ids
    }

    /// Number of requests waiting for a response.
    pub fn pending_count(&self) -> usize {
        self.pending.len()
    }

    /// Responses that matched no pending request (late or unsolicited).
    pub fn responses_unmatched_count(&self) -> u64 {
        self.responses_unmatched_count
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use strand_wire::codec::encode_response;
    use strand_wire::msg::{MetadataRequest, Response};
    use strand_wire::ErrorCode;

    const TIMEOUT: Duration = Duration::from_millis(10);

    fn response_frame(out: &mut BytesMut, correlation_id: u64, payload: &[u8]) {
        let header = ResponseHeader {
            correlation_id,
            error: ErrorCode::None,
            message: None,
            response: Response::Empty,
            throttle_ms: 0,
        };
        write_frame(out, &encode_response(&header), payload);
    }

    fn request(core: &mut ConnCore, now: Instant, expect: bool) -> u64 {
        let mut out = BytesMut::new();
        let id = core
            .encode_request(now, TIMEOUT, Request::Metadata(MetadataRequest { topics: vec![] }), b"", expect, &mut out)
            .expect("a small request encodes");
        assert!(!out.is_empty());
        id
    }

    fn drain(core: &mut ConnCore) -> Vec<(u64, Option<Bytes>)> {
        std::iter::from_fn(|| core.poll_completion())
            .map(|c| match c.outcome {
                Outcome::Response(h, payload) => {
                    assert_eq!(h.correlation_id, c.correlation_id);
                    (c.correlation_id, Some(payload))
                }
                Outcome::TimedOut => (c.correlation_id, None),
            })
            .collect()
    }

    /// A request the node would refuse to decode is refused before anything is written,
    /// and the correlation id is not used up.
    #[test]
    fn over_limit_request_is_refused_locally() {
        let mut core = ConnCore::new(1 << 20);
        let topics = (0..=strand_wire::codec::limits::LIST_LEN_MAX).map(|i| format!("t{i}")).collect();
        let mut out = BytesMut::new();
        let big = Request::Metadata(MetadataRequest { topics });
        let err = core.encode_request(Instant::now(), TIMEOUT, big, b"", true, &mut out);
        assert!(matches!(err, Err(EncodeError::OverLimit(_))), "{err:?}");
        assert!(out.is_empty());
        assert_eq!(request(&mut core, Instant::now(), true), 1, "the refused request used no id");
    }

    #[test]
    fn out_of_order_responses_fed_byte_by_byte_match_their_requests() {
        let now = Instant::now();
        let mut core = ConnCore::new(1 << 20);
        let ids: Vec<u64> = (0..3).map(|_| request(&mut core, now, true)).collect();
        assert_eq!(ids, vec![1, 2, 3]);
        let mut wire = BytesMut::new();
        for &id in &[3u64, 1, 2] {
            response_frame(&mut wire, id, format!("payload-{id}").as_bytes());
        }
        for byte in wire.iter() {
            core.handle_bytes(&[*byte]).expect("valid stream");
        }
        let got = drain(&mut core);
        let expect: Vec<(u64, Option<Bytes>)> =
            [3u64, 1, 2].iter().map(|id| (*id, Some(Bytes::from(format!("payload-{id}"))))).collect();
        assert_eq!(got, expect);
        assert_eq!(core.pending_count(), 0);
        assert_eq!(core.responses_unmatched_count(), 0);
    }

    #[test]
    fn deadlines_expire_in_order_and_late_responses_are_dropped() {
        let t0 = Instant::now();
        let mut core = ConnCore::new(1 << 20);
        let first = request(&mut core, t0, true);
        let second = request(&mut core, t0 + Duration::from_millis(5), true);
        assert_eq!(core.poll_timeout(), Some(t0 + TIMEOUT));
        core.handle_timeout(t0 + TIMEOUT - Duration::from_millis(1));
        assert!(drain(&mut core).is_empty());
        core.handle_timeout(t0 + TIMEOUT);
        assert_eq!(drain(&mut core), vec![(first, None)]);
        assert_eq!(core.poll_timeout(), Some(t0 + Duration::from_millis(15)));
        let mut wire = BytesMut::new();
        response_frame(&mut wire, first, b"late");
        response_frame(&mut wire, second, b"on time");
        core.handle_bytes(&wire).expect("valid stream");
        assert_eq!(drain(&mut core), vec![(second, Some(Bytes::from_static(b"on time")))]);
        assert_eq!(core.responses_unmatched_count(), 1);
        assert_eq!(core.poll_timeout(), None);
    }

    #[test]
    fn oneway_and_cancelled_requests_are_not_tracked() {
        let now = Instant::now();
        let mut core = ConnCore::new(1 << 20);
        let oneway = request(&mut core, now, false);
        let cancelled = request(&mut core, now, true);
        core.cancel(cancelled);
        assert_eq!(core.pending_count(), 0);
        assert_eq!(core.poll_timeout(), None);
        let mut wire = BytesMut::new();
        response_frame(&mut wire, oneway, b"");
        response_frame(&mut wire, cancelled, b"");
        core.handle_bytes(&wire).expect("valid stream");
        assert!(drain(&mut core).is_empty());
        assert_eq!(core.responses_unmatched_count(), 2);
    }

    #[test]
    fn garbage_poisons_the_connection() {
        let mut core = ConnCore::new(1 << 20);
        request(&mut core, Instant::now(), true);
        let mut wire = BytesMut::new();
        write_frame(&mut wire, b"not a flatbuffer", b"");
        assert!(matches!(core.handle_bytes(&wire), Err(ProtoError::Decode(_))));
        assert!(core.handle_bytes(&[]).is_err(), "a poisoned core stays poisoned");
        let mut core = ConnCore::new(64);
        let huge = (1u32 << 20).to_le_bytes();
        assert!(matches!(core.handle_bytes(&[huge, 4u32.to_le_bytes()].concat()), Err(ProtoError::Frame(_))));
        assert_eq!(core.take_pending(), Vec::<u64>::new());
    }
}
