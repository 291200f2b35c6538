//! Producer ids against the real binary (issue #15, "producer ids are `(now_ms << 16) + n`:
//! a client pre-fences the next producers with epoch 65535; the next CLI producer fails
//! INVALID_PRODUCER_EPOCH"): ids are random positive i64 values, not a sequence; a produce
//! with an epoch the node never issued is refused and stores nothing, so the producer that
//! is given the id next works; and an idempotent producer still deduplicates across a
//! restart.

mod common;

use std::collections::HashSet;

use common::{Client, Node};
use strand_wire::batch::BatchBuilder;
use strand_wire::msg::*;
use strand_wire::ErrorCode;

fn init_producer_id(c: &mut Client) -> (i64, i16) {
    let (h, _) = c.call(Request::InitProducerId, &[]);
    assert_eq!(h.error, ErrorCode::None, "{:?}", h.message);
    let Response::InitProducerId(r) = h.response else { panic!("not an InitProducerId response") };
    (i64::try_from(r.producer_id).expect("positive as i64"), i16::try_from(r.producer_epoch).expect("epoch fits i16"))
}

fn batch(id: i64, epoch: i16, seq: i32, value: &[u8]) -> bytes::Bytes {
    let mut b = BatchBuilder::new().producer(id, epoch, seq);
    b.push(1_700_000_000_000, None, Some(value), &[]);
    b.finish()
}

/// Produces one payload; the partition's code and the response message.
fn produce(c: &mut Client, payload: &[u8]) -> (ErrorCode, Option<String>) {
    let req = Request::Produce(ProduceRequest {
        acks: Acks::Leader,
        timeout_ms: 10_000,
        partitions: vec![ProducePartition { topic: "t".into(), partition: 0, bytes_len: payload.len() as u32 }],
    });
    let (h, _) = c.call(req, payload);
    match h.response {
        Response::Produce(r) => (r.partitions[0].error, h.message),
        _ => (h.error, h.message),
    }
}

#[test]
fn producer_ids_are_random_positive_and_distinct() {
    let dir = tempfile::tempdir().unwrap();
    let node = Node::start(dir.path(), 2, &[]);
    let mut c = node.client();
    let ids: Vec<i64> = (0..64)
        .map(|_| init_producer_id(&mut c))
        .map(|(id, epoch)| {
            assert_eq!(epoch, 0);
            id
        })
        .collect();
    assert_eq!(ids.iter().collect::<HashSet<_>>().len(), ids.len(), "distinct: {ids:?}");
    assert!(ids.iter().all(|id| *id > 0), "positive: {ids:?}");
    let steps: HashSet<i128> = ids.windows(2).map(|w| i128::from(w[1]) - i128::from(w[0])).collect();
    assert!(steps.len() > ids.len() / 2, "ids follow a pattern (steps {steps:?}): {ids:?}");
    // 64 random 63-bit ids: all of them sharing the top 16 bits (same millisecond era) is
    // a 2^-1000 event; a counter or a clock shifts into exactly that.
    let tops: HashSet<i64> = ids.iter().map(|id| id >> 47).collect();
    assert!(tops.len() > 1, "ids share their high bits: {ids:?}");
}

#[test]
fn forged_epochs_are_refused_and_cannot_fence_the_next_producer() {
    let dir = tempfile::tempdir().unwrap();
    let mut node = Node::start(dir.path(), 1, &[]);
    let mut c = node.client();
    assert_eq!(c.create_topic("t", 1).error, ErrorCode::None);
    // The attacker takes an id and forges the ones it expects next at epoch 32767 (i16::MAX).
    let (own, _) = init_producer_id(&mut c);
    for guess in (own.saturating_sub(2)..own.saturating_add(64)).filter(|g| *g != 0) {
        let (code, message) = produce(&mut c, &batch(guess, i16::MAX, 0, b"forged"));
        assert_eq!(code, ErrorCode::InvalidProducerEpoch, "forged epoch for id {guess} accepted");
        let message = message.unwrap_or_default();
        assert!(message.contains("32767 was never issued"), "{message}");
    }
    // The next producer works, from its first batch on.
    let mut victim = node.client();
    let (id, epoch) = init_producer_id(&mut victim);
    assert_eq!(produce(&mut victim, &batch(id, epoch, 0, b"v0")).0, ErrorCode::None);
    // Even knowing the victim's id, a forged epoch is refused and does not fence it.
    assert_eq!(produce(&mut c, &batch(id, i16::MAX, 0, b"forged")).0, ErrorCode::InvalidProducerEpoch);
    assert_eq!(produce(&mut victim, &batch(id, epoch, 1, b"v1")).0, ErrorCode::None);
    assert_eq!(c.read_all("t", 0), vec![b"v0".to_vec(), b"v1".to_vec()], "nothing forged stored");

    // Across a restart the producer table is rebuilt from the log: a retry is a duplicate,
    // the next sequence is appended.
    drop((c, victim));
    let _ = node.child.kill();
    let _ = node.child.wait();
    node = Node::start(dir.path(), 1, &[]);
    let mut again = node.client();
    assert_eq!(produce(&mut again, &batch(id, epoch, 1, b"v1")).0, ErrorCode::DuplicateSequence);
    assert_eq!(produce(&mut again, &batch(id, epoch, 2, b"v2")).0, ErrorCode::None);
    assert_eq!(again.read_all("t", 0), vec![b"v0".to_vec(), b"v1".to_vec(), b"v2".to_vec()]);
}
