//! `Producers` as a chain head uses it (valid for one epoch) against a real partition log:
//! refused until rebuilt for the head's epoch; the rebuild reads producer id / epoch /
//! sequence back from the batch headers — including a batch the chain had taken but whose
//! local append had not even started when the rebuild began — so a resend of any of the
//! last 5 batches of a producer is a duplicate at its original offset, the next sequence
//! is appended, a gap is out of order and an older producer epoch is refused; a table
//! whose replica stopped being head during the rebuild is not installed, and a new epoch
//! needs a new rebuild.

mod log_util;

use bytes::{Bytes, BytesMut};
use log_util::{config, run};
use strand_core::producer::ProducerBatch;
use strand_node::log::{FsyncPolicy, IoMode, PartitionLog};
use strand_node::partition::producers::{Producers, HEAD_REBUILD_WAIT};
use strand_wire::batch::BatchBuilder;
use strand_wire::ErrorCode;

/// One batch of `records` records of producer `id` at `epoch`, first sequence `seq`.
fn idempotent(id: i64, epoch: i16, seq: i32, records: u32) -> Bytes {
    let mut b = BatchBuilder::new();
    if id != 0 {
        b = b.producer(id, epoch, seq);
    }
    for r in 0..records {
        b.push(1_000 + i64::from(r), None, Some(format!("{id}-{seq}-{r}").as_bytes()), &[]);
    }
    b.finish()
}

fn fields(id: i64, epoch: i16, seq: i32, records: u32) -> ProducerBatch {
    ProducerBatch { producer_id: id, producer_epoch: epoch, base_sequence: seq, record_count: records }
}

/// Appends `bytes`, returns its base offset.
async fn append(log: &PartitionLog, bytes: Bytes) -> u64 {
    log.append(BytesMut::from(&bytes[..])).await.expect("append").base_offset
}

#[test]
fn head_table_is_rebuilt_from_the_log_and_deduplicates() {
    run(|| async {
        let dir = tempfile::tempdir().expect("temp dir");
        let log = std::rc::Rc::new(
            PartitionLog::open(dir.path(), config(IoMode::Buffered, FsyncPolicy::Always)).await.expect("open"),
        );
        // Producer 7 (epoch 0): 8 batches of 2 records; producer 9 and plain batches between.
        let mut offsets = Vec::new();
        for i in 0..8i32 {
            offsets.push(append(&log, idempotent(7, 0, i * 2, 2)).await);
            append(&log, idempotent(0, 0, 0, 1)).await;
        }
        let nine = append(&log, idempotent(9, 3, 0, 4)).await;

        let head = Producers::new();
        let refused = head.check(1, &[fields(7, 0, 16, 2)]).expect_err("not rebuilt yet");
        assert_eq!(refused.code, ErrorCode::Throttled);
        assert!(head.begin_rebuild(1));
        assert!(!head.begin_rebuild(1), "one rebuild per epoch at a time");

        // The chain core took producer 7's next batch (seq 16) before the log reserved it:
        // the rebuild's end includes it and must wait until it is written.
        let taken_end = log.log_end_offset() + 2;
        let late = log.clone();
        let in_flight = glommio::spawn_local(async move {
            glommio::timer::sleep(std::time::Duration::from_millis(50)).await;
            append(&late, idempotent(7, 0, 16, 2)).await
        });
        head.rebuild(&log, 1, taken_end, Some(HEAD_REBUILD_WAIT), || true).await;
        let late_offset = in_flight.await;
        assert_eq!(late_offset + 2, taken_end);
        assert!(head.valid_for(1) && !head.valid_for(2));

        let dup = |b: ProducerBatch| head.check(1, &[b]).expect("checked");
        assert_eq!(dup(fields(7, 0, 16, 2)), Some(late_offset), "the in-flight batch was waited for");
        assert_eq!(dup(fields(7, 0, 8, 2)), Some(offsets[4]), "the 5th newest batch is remembered");
        assert_eq!(dup(fields(9, 3, 0, 4)), Some(nine));
        assert_eq!(dup(fields(7, 0, 18, 2)), None, "the next sequence is appended");
        assert_eq!(head.check(1, &[fields(7, 0, 6, 2)]).expect_err("forgotten").code, ErrorCode::OutOfOrderSequence);
        assert_eq!(head.check(1, &[fields(7, 0, 22, 2)]).expect_err("gap").code, ErrorCode::OutOfOrderSequence);
        assert_eq!(head.check(1, &[fields(9, 2, 4, 1)]).expect_err("old").code, ErrorCode::InvalidProducerEpoch);

        // Entries made at the core's offsets; only batches the core took are entered.
        let batches = [fields(7, 0, 18, 2), fields(7, 0, 20, 2)];
        head.enter(&batches, taken_end, taken_end + 2);
        assert_eq!(dup(fields(7, 0, 18, 2)), Some(taken_end));
        assert_eq!(dup(fields(7, 0, 20, 2)), None, "not taken, not entered");

        // A new epoch needs a rebuild; one whose replica is no longer head installs nothing.
        assert_eq!(head.check(2, &[fields(7, 0, 20, 2)]).expect_err("new epoch").code, ErrorCode::Throttled);
        assert!(head.begin_rebuild(2));
        head.rebuild(&log, 2, log.log_end_offset(), Some(HEAD_REBUILD_WAIT), || false).await;
        assert!(!head.valid_for(2) && !head.valid_for(1));
        let fresh = Producers::new();
        fresh.install_empty(5);
        assert_eq!(fresh.check(5, &[fields(7, 0, 16, 2)]).expect("valid at once"), None);
        assert!(head.begin_rebuild(2), "a failed rebuild can be started again");
        head.rebuild(&log, 2, log.log_end_offset(), Some(HEAD_REBUILD_WAIT), || true).await;
        assert_eq!(head.check(2, &[fields(7, 0, 16, 2)]).expect("rebuilt"), Some(late_offset));
    });
}
