//! A Kafka fetch answer whose records never pass through user space.
//!
//! Kafka puts each partition's records in the middle of the response body (a length, the
//! bytes, then more fields). The codec crate encodes a whole message from owned values, so
//! the records are handed to it as *markers*: one unique 16-byte stand-in per partition with
//! data. The encoded body is then cut at each marker: the bytes before it (minus the
//! marker's length prefix) go out as they are, the real length prefix is written in the
//! encoding the version uses (`int32` up to v11, an unsigned varint of `len + 1` from v12,
//! the flexible versions), and the partition's file ranges follow, sent with `sendfile`.
//! Each marker must be found exactly once and in order, else nothing is sent (an internal
//! error closes the connection): a marker's 8 random bytes, drawn once per process, make a
//! clash with a topic name or any other field practically impossible, and the check makes
//! it harmless.

use std::sync::OnceLock;

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::FetchResponse;
use kafka_protocol::protocol::Encodable;

use super::Piece;
use crate::log::ReadChunk;

/// Bytes of one marker.
pub const MARKER_LEN: usize = 16;
/// The first version with flexible (compact) encodings.
const FLEXIBLE_FROM: i16 = 12;

fn marker_salt() -> &'static [u8; 8] {
    static SALT: OnceLock<[u8; 8]> = OnceLock::new();
    SALT.get_or_init(|| {
        let mut salt = [0u8; 8];
        // A failed draw only makes the markers predictable, not wrong (see the module doc).
        let _ = getrandom::getrandom(&mut salt);
        salt
    })
}

/// The stand-in for the `index`-th partition with records.
pub fn marker(index: u32) -> Bytes {
    let mut m = BytesMut::with_capacity(MARKER_LEN);
    m.put_slice(marker_salt());
    m.put_slice(b"SR");
    m.put_u16(0x4B46);
    m.put_u32(index);
    m.freeze()
}

/// Encodes `response` (in which the partitions with data carry `marker(0)`,
/// `marker(1)`, ... as their records, in body order) and splices in `records[i]` for
/// marker `i`, each `(chunks, len)`.
pub fn encode(
    response: &FetchResponse,
    version: i16,
    records: Vec<(Vec<ReadChunk>, usize)>,
) -> Result<Vec<Piece>, String> {
    let mut body = BytesMut::new();
    response.encode(&mut body, version).map_err(|e| format!("encoding a fetch response v{version}: {e}"))?;
    let body = body.freeze();
    let flexible = version >= FLEXIBLE_FROM;
    // The prefix the codec wrote for a 16-byte marker.
    let marker_prefix = length_prefix(MARKER_LEN, flexible);
    let mut pieces = Vec::with_capacity(records.len() * 3 + 1);
    let mut cursor = 0usize;
    for (index, (chunks, len)) in records.into_iter().enumerate() {
        let m = marker(index as u32);
        let at = find(&body[cursor..], &m)
            .map(|p| p + cursor)
            .ok_or_else(|| format!("fetch response v{version}: records marker {index} not found"))?;
        let prefix_at = at
            .checked_sub(marker_prefix.len())
            .filter(|&p| p >= cursor && body[p..at] == marker_prefix[..])
            .ok_or_else(|| format!("fetch response v{version}: records marker {index} without its length"))?;
        pieces.push(Piece::Bytes(body.slice(cursor..prefix_at)));
        pieces.push(Piece::Bytes(Bytes::from(length_prefix(len, flexible))));
        pieces.extend(chunks.into_iter().map(Piece::Chunk));
        cursor = at + MARKER_LEN;
    }
    if find(&body[cursor..], &marker_salt()[..]).is_some() {
        return Err(format!("fetch response v{version}: a records marker is left over"));
    }
    pieces.push(Piece::Bytes(body.slice(cursor..)));
    Ok(pieces)
}

/// How the version encodes a records field of `len` bytes: `int32` length, or (flexible)
/// the unsigned varint of `len + 1`.
fn length_prefix(len: usize, flexible: bool) -> Vec<u8> {
    if !flexible {
        return (len as i32).to_be_bytes().to_vec();
    }
    let mut v = len as u64 + 1;
    let mut out = Vec::with_capacity(5);
    loop {
        let byte = (v & 0x7f) as u8;
        v >>= 7;
        if v == 0 {
            out.push(byte);
            return out;
        }
        out.push(byte | 0x80);
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::messages::fetch_response::{FetchableTopicResponse, PartitionData};
    use kafka_protocol::messages::TopicName;
    use kafka_protocol::protocol::{Decodable, StrBytes};

    fn response(parts: &[Option<Bytes>]) -> FetchResponse {
        let partitions = parts
            .iter()
            .enumerate()
            .map(|(i, records)| {
                let mut p = PartitionData::default();
                p.partition_index = i as i32;
                p.high_watermark = 1000 + i as i64;
                p.records = records.clone();
                p
            })
            .collect();
        let mut topic = FetchableTopicResponse::default();
        topic.topic = TopicName(StrBytes::from_static_str("t"));
        topic.partitions = partitions;
        let mut r = FetchResponse::default();
        r.responses = vec![topic];
        r
    }

    /// The spliced pieces read back, by the codec, as the response with the real records.
    #[test]
    fn spliced_answers_decode_as_if_encoded_whole() {
        let a = Bytes::from(vec![7u8; 200]);
        let b = Bytes::from(vec![9u8; 3]);
        for version in 4..=12 {
            let with_markers = response(&[Some(marker(0)), Some(Bytes::new()), Some(marker(1))]);
            let records =
                vec![(vec![ReadChunk::Memory(a.clone())], a.len()), (vec![ReadChunk::Memory(b.clone())], b.len())];
            let pieces = encode(&with_markers, version, records).unwrap();
            let mut wire = BytesMut::new();
            for piece in pieces {
                match piece {
                    Piece::Bytes(bytes) | Piece::Chunk(ReadChunk::Memory(bytes)) => wire.put_slice(&bytes),
                    Piece::Chunk(ReadChunk::File { .. } | ReadChunk::Shared { .. }) => unreachable!(),
                }
            }
            let decoded = FetchResponse::decode(&mut wire.freeze(), version).unwrap();
            assert_eq!(decoded, response(&[Some(a.clone()), Some(Bytes::new()), Some(b.clone())]), "v{version}");
        }
    }

    #[test]
    fn a_missing_marker_sends_nothing() {
        let without = response(&[Some(Bytes::from_static(b"not a marker"))]);
        let records = vec![(Vec::new(), 0)];
        assert!(encode(&without, 12, records).is_err());
        let extra = response(&[Some(marker(0)), Some(marker(1))]);
        assert!(encode(&extra, 12, vec![(Vec::new(), 0)]).is_err(), "an unspliced marker must not go out");
    }

    /// Spliced bytes equal the codec's own encoding of the same response, at lengths
    /// whose prefixes take one to four varint bytes.
    #[test]
    fn length_prefixes_match_the_codec() {
        for version in [11, 12] {
            for len in [1usize, 126, 127, 128, 16_383, 16_384, (1 << 21) + 5] {
                let data = Bytes::from(vec![3u8; len]);
                let mut whole = BytesMut::new();
                response(&[Some(data.clone())]).encode(&mut whole, version).unwrap();
                let pieces = encode(&response(&[Some(marker(0))]), version, vec![(Vec::new(), len)]).unwrap();
                // before the records, their length prefix, after them (no chunks given)
                let [Piece::Bytes(before), Piece::Bytes(prefix), Piece::Bytes(after)] = &pieces[..] else {
                    panic!("three pieces expected");
                };
                let spliced = [&before[..], &prefix[..], &after[..]].concat();
                let cut = before.len() + prefix.len();
                // The codec's whole encoding = the spliced bytes with the records inserted.
                assert_eq!(whole.len(), spliced.len() + len, "v{version} len {len}");
                assert_eq!(&whole[cut..cut + len], &data[..]);
                assert_eq!(&whole[..cut], &spliced[..cut], "v{version} len {len}");
                assert_eq!(&whole[cut + len..], &spliced[cut..], "v{version} len {len}");
            }
        }
    }
}
