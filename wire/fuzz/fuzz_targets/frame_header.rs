//! Frame decoder + header decoders over arbitrary bytes: whatever a peer sends,
//! framing and FlatBuffers decoding must return a value or an error, never panic,
//! over-read or allocate without bound.
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use strand_wire::codec;
use strand_wire::frame::FrameDecoder;

/// Small enough that the fuzzer reaches the limit checks, large enough for real headers.
const FRAME_LEN_MAX: usize = 64 * 1024;

fuzz_target!(|data: &[u8]| {
    // The raw bytes as a header on their own.
    let _ = codec::decode_request(data);
    let _ = codec::decode_response(data);

    // The bytes as a stream, split at a data-chosen point to exercise partial reads.
    let split = data.first().map_or(0, |b| usize::from(*b)).min(data.len());
    let mut decoder = FrameDecoder::new(FRAME_LEN_MAX);
    let mut buf = BytesMut::new();
    for chunk in [&data[..split], &data[split..]] {
        buf.extend_from_slice(chunk);
        loop {
            match decoder.decode(&mut buf) {
                Ok(Some(frame)) => {
                    assert!(frame.header.len() + frame.payload.len() + 8 <= FRAME_LEN_MAX);
                    if let Ok(req) = codec::decode_request(&frame.header) {
                        // A decoded header re-encodes to something that decodes the same.
                        let again = codec::decode_request(&codec::encode_request(&req));
                        assert_eq!(again.as_ref(), Ok(&req));
                    }
                    if let Ok(resp) = codec::decode_response(&frame.header) {
                        let again = codec::decode_response(&codec::encode_response(&resp));
                        assert_eq!(again.as_ref(), Ok(&resp));
                    }
                }
                Ok(None) => break,
                Err(_) => return,
            }
        }
    }
});
