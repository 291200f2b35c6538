//! Idempotent-producer state survives a node restart: the owner rebuilds its sequence
//! table from the log tail, so a retry that crosses a restart (clean or SIGKILL) is
//! answered `DUPLICATE_SEQUENCE` with the original offset and nothing is appended twice.

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::Node;
use strand_wire::batch::BatchBuilder;
use strand_wire::ErrorCode;

/// A batch of `values` from producer `id` (epoch 0) starting at sequence `seq`.
fn idempotent(id: i64, seq: i32, values: &[&[u8]]) -> Bytes {
    let mut b = BatchBuilder::new().producer(id, 0, seq);
    for v in values {
        b.push(1_700_000_000_000, None, Some(v), &[]);
    }
    b.finish()
}

/// Produces the history both restarts check: producer 7 wrote 7 batches (only the last 5
/// are remembered), producer 9 one, with plain batches between.
fn write_history(node: &Node) -> Vec<(Bytes, u64)> {
    let mut c = node.client();
    assert_eq!(c.create_topic("idem", 2).error, ErrorCode::None);
    let mut sent = Vec::new();
    for i in 0..7i32 {
        let batch = idempotent(7, i * 2, &[format!("p7-{i}a").as_bytes(), format!("p7-{i}b").as_bytes()]);
        let r = c.produce("idem", 1, &batch);
        assert_eq!(r.error, ErrorCode::None);
        sent.push((batch, r.base_offset));
        assert_eq!(c.produce("idem", 1, &common::batch1(b"plain")).error, ErrorCode::None);
    }
    let batch = idempotent(9, 0, &[b"p9-0"]);
    let r = c.produce("idem", 1, &batch);
    assert_eq!(r.error, ErrorCode::None);
    sent.push((batch, r.base_offset));
    sent
}

/// After a restart: retries are duplicates with their original offsets, the log is unchanged,
/// and the sequence continues where it stopped.
fn check_after_restart(node: &Node, sent: &[(Bytes, u64)], phase: &str) {
    let mut c = node.client();
    let before = c.read_all("idem", 1);
    assert_eq!(before.len(), 7 * 3 + 1, "{phase}: log lost records");
    for (batch, base_offset) in &sent[2..] {
        let r = c.produce("idem", 1, batch);
        assert_eq!(r.error, ErrorCode::DuplicateSequence, "{phase}: retry of the batch at {base_offset} appended");
        assert_eq!(r.base_offset, *base_offset, "{phase}: duplicate must answer the original offset");
    }
    let gap = c.produce("idem", 1, &idempotent(7, 40, &[b"gap"]));
    assert_eq!(gap.error, ErrorCode::OutOfOrderSequence, "{phase}: sequence state not recovered");
    assert_eq!(c.read_all("idem", 1), before, "{phase}: a retry changed the log");
}

#[test]
fn idempotent_retries_across_clean_and_unclean_restarts_are_duplicates() {
    let dir = tempfile::tempdir().unwrap();
    let mut node = Node::start(dir.path(), 2, &["--fsync", "always"]);
    let sent = write_history(&node);
    let status = node.signal_and_wait(libc::SIGTERM, Duration::from_secs(20));
    assert!(status.success(), "clean shutdown failed: {status:?}");

    let mut node = Node::start(dir.path(), 2, &["--fsync", "always"]);
    check_after_restart(&node, &sent, "after SIGTERM");
    let mut c = node.client();
    let next = c.produce("idem", 1, &idempotent(7, 14, &[b"p7-7"]));
    assert_eq!(next.error, ErrorCode::None, "the next sequence must be accepted");
    let mut sent = sent;
    sent.push((idempotent(7, 14, &[b"p7-7"]), next.base_offset));
    node.signal_and_wait(libc::SIGKILL, Duration::from_secs(10));

    let node = Node::start(dir.path(), 2, &["--fsync", "always"]);
    let mut c = node.client();
    let r = c.produce("idem", 1, &sent[sent.len() - 1].0);
    assert_eq!(r.error, ErrorCode::DuplicateSequence, "after SIGKILL: the last acked batch was appended again");
    assert_eq!(r.base_offset, next.base_offset);
    assert!(c.produce("idem", 1, &sent[0].0).error != ErrorCode::None, "an old batch beyond the window");
    let records = c.read_all("idem", 1);
    assert_eq!(records.len(), 7 * 3 + 2, "after SIGKILL: records lost or duplicated");
    assert_eq!(records.last().map(Vec::as_slice), Some(&b"p7-7"[..]));
}
