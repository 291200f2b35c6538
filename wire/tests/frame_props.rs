//! Property tests of the frame codec: however the byte stream is cut into reads,
//! the decoder yields the same frames.

use bytes::BytesMut;
use proptest::prelude::*;
use strand_wire::frame::{write_frame, Frame, FrameDecoder, FrameError, FramePrefix};

const FRAME_LEN_MAX: usize = 4096;

/// `(header, payload)` of each frame.
type Frames = Vec<(Vec<u8>, Vec<u8>)>;

fn frames() -> impl Strategy<Value = Frames> {
    let header = prop::collection::vec(any::<u8>(), 1..48);
    let payload = prop::collection::vec(any::<u8>(), 0..64);
    prop::collection::vec((header, payload), 1..5)
}

fn encode(frames: &[(Vec<u8>, Vec<u8>)]) -> Vec<u8> {
    let mut out = BytesMut::new();
    for (h, p) in frames {
        write_frame(&mut out, h, p);
    }
    out.to_vec()
}

/// Feeds `chunks` one by one, draining every whole frame after each.
fn feed(chunks: &[&[u8]]) -> Result<(Frames, usize), FrameError> {
    let mut decoder = FrameDecoder::new(FRAME_LEN_MAX);
    let mut buf = BytesMut::new();
    let mut out = Vec::new();
    for chunk in chunks {
        buf.extend_from_slice(chunk);
        while let Some(Frame { header, payload }) = decoder.decode(&mut buf)? {
            out.push((header.to_vec(), payload.to_vec()));
        }
    }
    Ok((out, buf.len()))
}

proptest! {
    #[test]
    fn split_at_every_boundary_decodes_the_same(frames in frames()) {
        let bytes = encode(&frames);
        for cut in 0..=bytes.len() {
            let (got, left) = feed(&[&bytes[..cut], &bytes[cut..]]).expect("valid stream");
            prop_assert_eq!(&got, &frames, "cut at {}", cut);
            prop_assert_eq!(left, 0);
        }
        let one_by_one: Vec<&[u8]> = bytes.chunks(1).collect();
        let (got, left) = feed(&one_by_one).expect("valid stream");
        prop_assert_eq!(&got, &frames);
        prop_assert_eq!(left, 0);
    }

    /// A stream cut short yields the whole frames before the cut and keeps the rest buffered.
    #[test]
    fn partial_tail_stays_buffered(frames in frames(), cut in any::<prop::sample::Index>()) {
        let bytes = encode(&frames);
        let cut = cut.index(bytes.len());
        let (got, left) = feed(&[&bytes[..cut]]).expect("valid prefix");
        prop_assert!(got.len() < frames.len());
        prop_assert_eq!(&got[..], &frames[..got.len()]);
        let consumed: usize = got.iter().map(|(h, p)| 8 + h.len() + p.len()).sum();
        prop_assert_eq!(consumed + left, cut);
    }

    /// Arbitrary bytes either frame, wait, or error: never panic.
    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
        let _ = feed(&[&bytes]);
    }
}

#[test]
fn limit_is_inclusive_and_checked_before_the_body_arrives() {
    let mut decoder = FrameDecoder::new(FRAME_LEN_MAX);
    let at_limit = FramePrefix::new(8, FRAME_LEN_MAX - 8 - 8);
    assert_eq!(at_limit.frame_len(), FRAME_LEN_MAX);
    let mut buf = BytesMut::from(&at_limit.to_bytes()[..]);
    assert_eq!(decoder.decode(&mut buf), Ok(None));
    let over = FramePrefix::new(8, FRAME_LEN_MAX - 8 - 8 + 1);
    let mut buf = BytesMut::from(&over.to_bytes()[..]);
    assert_eq!(decoder.decode(&mut buf), Err(FrameError::TooLarge { len: FRAME_LEN_MAX + 1, max: FRAME_LEN_MAX }));
}
