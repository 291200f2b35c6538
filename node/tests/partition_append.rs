//! `Partition::append` on a local partition: the ordering step is synchronous (offsets and
//! the producer-table entry are taken when `append` returns, before anything is awaited),
//! durability is awaited separately, a duplicate of an append still in flight is answered
//! with the original's offset once it is stored, and a refused append takes no offsets.

mod log_util;

use bytes::Bytes;
use log_util::{config, run};
use strand_core::chain::Offset;
use strand_node::log::{FsyncPolicy, IoMode, PartitionLog};
use strand_node::partition::Partition;
use strand_wire::batch::BatchBuilder;
use strand_wire::msg::Acks;
use strand_wire::ErrorCode;

fn batch(producer: Option<(i64, i32)>, records: u32) -> Bytes {
    let mut b = BatchBuilder::new();
    if let Some((id, seq)) = producer {
        b = b.producer(id, 0, seq);
    }
    for r in 0..records {
        b.push(1_000 + i64::from(r), None, Some(b"value"), &[]);
    }
    b.finish()
}

#[test]
fn appends_are_ordered_when_made_and_answered_when_durable() {
    run(|| async {
        let dir = tempfile::tempdir().expect("temp dir");
        let log = PartitionLog::open(dir.path(), config(IoMode::Buffered, FsyncPolicy::Always)).await.expect("open");
        let part = Partition::open_local("t".into(), 0, log).await;

        // Three appends made back to back; nothing awaited yet, offsets already taken.
        let first = part.append(batch(Some((7, 0)), 3), Acks::Leader);
        let second = part.append(batch(None, 2), Acks::Leader);
        let retry = part.append(batch(Some((7, 0)), 3), Acks::Leader);
        assert_eq!(part.log().log_end_offset(), 5, "offsets are reserved by `append` itself");

        // Answered in any order: the retry (polled first) waits for its original to be
        // stored, then names its offset. Durability is driven by the appends being awaited.
        let (retry, (second, first)) =
            futures_lite::future::zip(retry.outcome(), futures_lite::future::zip(second.outcome(), first.outcome()))
                .await;
        let (retry, second, first) = (retry.expect("duplicate"), second.expect("second"), first.expect("first"));
        assert_eq!((retry.code, retry.base_offset), (ErrorCode::DuplicateSequence, Offset(0)));
        assert_eq!((first.code, first.base_offset, first.record_count), (ErrorCode::None, Offset(0), 3));
        assert_eq!((second.code, second.base_offset, second.record_count), (ErrorCode::None, Offset(3), 2));
        assert_eq!(part.readable_end(), Offset(5));

        // A refused append (a corrupt batch) takes no offsets and leaves the table alone.
        let mut corrupt = batch(Some((7, 3)), 1).to_vec();
        let last = corrupt.len() - 1;
        corrupt[last] ^= 0xff;
        let refused = part.append(Bytes::from(corrupt), Acks::Leader).outcome().await.expect_err("corrupt");
        assert_eq!(refused.code, ErrorCode::CorruptBatch);
        assert_eq!(part.log().log_end_offset(), 5);
        let next = part.append(batch(Some((7, 3)), 1), Acks::Leader).outcome().await.expect("next in sequence");
        assert_eq!((next.code, next.base_offset), (ErrorCode::None, Offset(5)));
        let read = part.read(Offset(0), 1 << 20).await.expect("read");
        assert_eq!((read.readable_end, read.bytes_len > 0), (Offset(6), true));
    });
}
