//! The Kafka request path over arbitrary bytes: what the node's Kafka listener does with a
//! frame (node/src/net/kafka): API key and version from the first four bytes, the request
//! header of that version, then the body decoder of that API and version — here for every
//! API the codec knows, not only the ones the node advertises. Each must return a value or
//! an error: never panic, never allocate from a count the bytes cannot hold (the vendored
//! codec's fix, third_party/README.md).
#![no_main]

use bytes::Bytes;
use kafka_protocol::messages::{ApiKey, RequestHeader, RequestKind};
use kafka_protocol::protocol::Decodable;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if data.len() < 8 {
        return;
    }
    let key = i16::from_be_bytes([data[0], data[1]]);
    let version = i16::from_be_bytes([data[2], data[3]]);
    let Ok(api) = ApiKey::try_from(key) else { return };
    let mut frame = Bytes::copy_from_slice(data);
    if RequestHeader::decode(&mut frame, api.request_header_version(version)).is_err() {
        return;
    }
    let _ = RequestKind::decode(api, &mut frame, version);
});
