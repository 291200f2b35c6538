//! Hostile and broken input: garbage frames, oversized frames, undecodable
//! headers, unknown APIs and partitions, corrupt batches. The node answers or
//! closes the connection, never crashes, and stores nothing it refused.

mod common;

use common::{batch1, Client, Node};
use std::io::Write;
use strand_wire::frame::FramePrefix;
use strand_wire::msg::*;
use strand_wire::ErrorCode;

fn produce_code(c: &mut Client, topic: &str, partition: u32, payload: &[u8]) -> ErrorCode {
    let req = Request::Produce(ProduceRequest {
        acks: Acks::Leader,
        timeout_ms: 1000,
        partitions: vec![ProducePartition { topic: topic.into(), partition, bytes_len: payload.len() as u32 }],
    });
    let (h, _) = c.call(req, payload);
    match h.response {
        Response::Produce(r) => r.partitions[0].error,
        _ => h.error,
    }
}

#[test]
fn bad_input_is_answered_or_disconnected_never_fatal() {
    let dir = tempfile::tempdir().unwrap();
    let node = Node::start(dir.path(), 2, &["--config", &write_config(dir.path())]);
    let mut c = node.client();
    assert_eq!(c.create_topic("t", 2).error, ErrorCode::None);

    // Garbage prefix: header_len 0 → error frame then close.
    let mut g = node.client();
    g.stream.write_all(&[4, 0, 0, 0, 0, 0, 0, 0]).unwrap();
    let (h, _) = g.recv();
    assert_eq!(h.error, ErrorCode::InvalidRequest);
    assert!(g.try_recv().is_err(), "connection closed after a framing error");

    // Oversized frame (limit 64 KiB from the config file).
    let mut big = node.client();
    big.stream.write_all(&FramePrefix { total_len: 1 << 20, header_len: 10 }.to_bytes()).unwrap();
    let (h, _) = big.recv();
    assert_eq!(h.error, ErrorCode::MessageTooLarge);
    assert!(big.try_recv().is_err());

    // A header that is not a FlatBuffers request: answered, connection stays usable.
    let mut bad = node.client();
    let junk = b"this is not a flatbuffer";
    bad.stream.write_all(&FramePrefix::new(junk.len(), 0).to_bytes()).unwrap();
    bad.stream.write_all(junk).unwrap();
    let (h, _) = bad.recv();
    assert_eq!(h.error, ErrorCode::InvalidRequest);
    assert_eq!(bad.create_topic("t2", 1).error, ErrorCode::None);

    // Unsupported API (replication is another issue).
    let ack = ReplicaAckRequest {
        topic: "t".into(),
        partition: 0,
        epoch: 1,
        durable_offset: 0,
        from_node: 0,
        error: strand_wire::ErrorCode::None,
        log_end_offset: 0,
        log_end_epoch: 0,
        durable_epoch: 0,
    };
    let (h, _) = c.call(Request::ReplicaAck(ack), &[]);
    assert_eq!(h.error, ErrorCode::UnknownApi);

    // Unknown topic / partition.
    assert_eq!(produce_code(&mut c, "nope", 0, &batch1(b"x")), ErrorCode::UnknownTopic);
    assert_eq!(produce_code(&mut c, "t", 7, &batch1(b"x")), ErrorCode::UnknownPartition);

    // Corrupt batch: flipped byte under the CRC, and a truncated batch.
    let mut corrupt = batch1(b"valid?").to_vec();
    let last = corrupt.len() - 1;
    corrupt[last] ^= 0xff;
    assert_eq!(produce_code(&mut c, "t", 0, &corrupt), ErrorCode::CorruptBatch);
    let good = batch1(b"ok");
    assert_eq!(produce_code(&mut c, "t", 0, &good[..good.len() - 3]), ErrorCode::CorruptBatch);
    // Declared lengths that do not match the payload.
    let req = Request::Produce(ProduceRequest {
        acks: Acks::Leader,
        timeout_ms: 1000,
        partitions: vec![ProducePartition { topic: "t".into(), partition: 0, bytes_len: 5 }],
    });
    assert_eq!(c.call(req, &good).0.error, ErrorCode::InvalidRequest);

    // Nothing refused was stored; the node still serves.
    assert_eq!(c.read_all("t", 0), Vec::<Vec<u8>>::new());
    assert_eq!(c.produce("t", 0, &batch1(b"fine")).base_offset, 0);
    assert_eq!(c.read_all("t", 0), vec![b"fine".to_vec()]);
    assert_eq!(node.admin_get("/health").0, 200);
}

#[test]
fn idempotent_retry_is_deduplicated() {
    let dir = tempfile::tempdir().unwrap();
    let node = Node::start(dir.path(), 1, &[]);
    let mut c = node.client();
    assert_eq!(c.create_topic("idem", 1).error, ErrorCode::None);
    let (h, _) = c.call(Request::InitProducerId, &[]);
    let Response::InitProducerId(pid) = h.response else { panic!("init producer id") };
    let (id, epoch) = (i64::try_from(pid.producer_id).unwrap(), i16::try_from(pid.producer_epoch).unwrap());
    let mk = |seq: i32, v: &[u8]| {
        let mut b = strand_wire::batch::BatchBuilder::new().producer(id, epoch, seq);
        b.push(1, None, Some(v), &[]);
        b.finish()
    };
    assert_eq!(produce_code(&mut c, "idem", 0, &mk(0, b"a")), ErrorCode::None);
    assert_eq!(produce_code(&mut c, "idem", 0, &mk(1, b"b")), ErrorCode::None);
    assert_eq!(produce_code(&mut c, "idem", 0, &mk(0, b"a")), ErrorCode::DuplicateSequence);
    assert_eq!(produce_code(&mut c, "idem", 0, &mk(5, b"gap")), ErrorCode::OutOfOrderSequence);
    assert_eq!(c.read_all("idem", 0), vec![b"a".to_vec(), b"b".to_vec()]);
}

fn write_config(dir: &std::path::Path) -> String {
    let path = dir.join("strand.toml");
    std::fs::write(&path, "frame_len_max = 65536\ninflight_per_connection = 4\n").unwrap();
    path.to_str().unwrap().to_string()
}
