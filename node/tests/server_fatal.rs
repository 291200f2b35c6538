//! A storage failure stops the node: a real EIO from the filesystem under a partition log
//! (an ext4 image on a loop device, shut down with `EXT4_IOC_SHUTDOWN` — device-mapper is not
//! available on this VM) makes the next produce fail its write, and the node logs the
//! partition and the error and exits with status 74 instead of serving on half-alive.
//!
//! Needs root, `losetup`, `mkfs.ext4` and `mount`; otherwise the test prints why it skips.

mod common;

use std::time::{Duration, Instant};

use common::loopfs::{LoopFs, FATAL_STORAGE_EXIT};
use common::Node;
use strand_wire::msg::*;
use strand_wire::ErrorCode;

fn produce_request(batch: &[u8]) -> Request {
    Request::Produce(ProduceRequest {
        acks: Acks::Leader,
        timeout_ms: 10_000,
        partitions: vec![ProducePartition { topic: "t".into(), partition: 0, bytes_len: batch.len() as u32 }],
    })
}

#[test]
fn an_eio_from_the_partition_log_stops_the_node_with_a_clear_reason() {
    let dir = tempfile::tempdir().unwrap();
    let fs = match LoopFs::create(dir.path()) {
        Ok(fs) => fs,
        Err(reason) => {
            println!("SKIPPED: cannot make a loop-mounted ext4 to inject EIO: {reason}");
            return;
        }
    };
    let data = fs.mount.join("data");
    let mut node = Node::start(&data, 1, &["--fsync", "always", "--io-mode", "buffered"]);
    let mut client = node.shard_client(0);
    assert_eq!(client.create_topic("t", 1).error, ErrorCode::None);
    assert_eq!(client.produce("t", 0, &common::batch1(b"before")).error, ErrorCode::None);

    fs.shut_down();
    let started = Instant::now();
    let batch = common::batch1(b"after");
    client.send(produce_request(&batch), &batch);
    // The failed append is never acknowledged: the node exits before answering.
    if let Ok((header, _)) = client.try_recv() {
        let Response::Produce(r) = header.response else { panic!("unexpected answer {header:?}") };
        assert_ne!(r.partitions[0].error, ErrorCode::None, "a write to a shut-down filesystem was acknowledged");
    }
    let line = node.wait_for_line("storage failed", Duration::from_secs(10));
    assert!(line.contains("t/0"), "the reason names the partition: {line}");
    let status = loop {
        if let Some(status) = node.child.try_wait().unwrap() {
            break status;
        }
        assert!(started.elapsed() < Duration::from_secs(10), "the node kept running after EIO");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(status.code(), Some(FATAL_STORAGE_EXIT), "exit status {status:?}");
    println!("node exited {:?} after the EIO in {:?}", status.code(), started.elapsed());
}
