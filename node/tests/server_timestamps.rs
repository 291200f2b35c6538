//! Batch timestamp bounds against the real binary (issue #15, "negative or `i64::MAX`
//! timestamps: accepted and served"): a batch stamped `i64::MAX`, more than
//! `message_timestamp_after_max_ms` ahead, more than `message_timestamp_before_max_ms`
//! behind, or negative other than -1 (no timestamp) is refused with INVALID_REQUEST and a
//! message naming the bound, and nothing of it is stored or served; timestamps at the
//! bounds and -1 are accepted.

mod common;

use common::{batch, Client, Node};
use strand_wire::msg::*;
use strand_wire::ErrorCode;

fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64
}

/// Produces one payload to `t/0`; the partition's code and the response message.
fn produce(c: &mut Client, payload: &[u8]) -> (ErrorCode, String) {
    let req = Request::Produce(ProduceRequest {
        acks: Acks::Leader,
        timeout_ms: 10_000,
        partitions: vec![ProducePartition { topic: "t".into(), partition: 0, bytes_len: payload.len() as u32 }],
    });
    let (h, _) = c.call(req, payload);
    match h.response {
        Response::Produce(r) => (r.partitions[0].error, h.message.unwrap_or_default()),
        _ => (h.error, h.message.unwrap_or_default()),
    }
}

#[test]
fn out_of_bounds_timestamps_are_refused_and_nothing_is_stored() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("strand.toml");
    let hour = 3_600_000i64;
    let day = 24 * hour;
    let text = format!("message_timestamp_after_max_ms = {hour}\nmessage_timestamp_before_max_ms = {day}\n");
    std::fs::write(&config, text).unwrap();
    let node = Node::start(&dir.path().join("data"), 1, &["--config", config.to_str().unwrap()]);
    let mut c = node.client();
    assert_eq!(c.create_topic("t", 1).error, ErrorCode::None);

    let now = now_ms();
    // Margins of a minute on the accepted side, so the clocks' progress cannot matter.
    let refused: [(i64, &str); 5] = [
        (i64::MAX, "message_timestamp_after_max_ms = 3600000"),
        (now + hour + 60_000, "message_timestamp_after_max_ms = 3600000"),
        (now - day - 60_000, "message_timestamp_before_max_ms = 86400000"),
        (-2, "negative and not -1"),
        (i64::MIN, "negative and not -1"),
    ];
    for (ts, bound) in refused {
        let (code, message) = produce(&mut c, &batch(&[b"bad"], ts));
        assert_eq!(code, ErrorCode::InvalidRequest, "timestamp {ts} accepted");
        assert!(message.contains(bound) && message.contains(&ts.to_string()), "{ts}: {message}");
    }
    assert_eq!(c.read_all("t", 0), Vec::<Vec<u8>>::new(), "refused batches stored");
    let accepted = [now + hour - 60_000, now - day + 60_000, now, -1];
    for (i, ts) in accepted.iter().enumerate() {
        let (code, message) = produce(&mut c, &batch(&[format!("ok{i}").as_bytes()], *ts));
        assert_eq!(code, ErrorCode::None, "timestamp {ts} refused: {message}");
    }
    let values: Vec<Vec<u8>> = (0..accepted.len()).map(|i| format!("ok{i}").into_bytes()).collect();
    assert_eq!(c.read_all("t", 0), values);
}

#[test]
fn defaults_refuse_the_far_future_but_not_the_past() {
    let dir = tempfile::tempdir().unwrap();
    let node = Node::start(dir.path(), 1, &[]);
    let mut c = node.client();
    assert_eq!(c.create_topic("t", 1).error, ErrorCode::None);
    let (code, message) = produce(&mut c, &batch(&[b"max"], i64::MAX));
    assert_eq!(code, ErrorCode::InvalidRequest, "{message}");
    assert!(message.contains("message_timestamp_after_max_ms = 3600000"), "{message}");
    assert_eq!(produce(&mut c, &batch(&[b"epoch"], 0)).0, ErrorCode::None, "any age by default");
    assert_eq!(produce(&mut c, &batch(&[b"none"], -1)).0, ErrorCode::None);
    assert_eq!(c.read_all("t", 0), vec![b"epoch".to_vec(), b"none".to_vec()]);
}
