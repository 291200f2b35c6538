//! Restarts: topics and data survive a graceful restart; after a SIGKILL in the
//! middle of producing with `--fsync always`, every acknowledged record is present,
//! in order, after restart.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::{batch1, Client, Node};
use strand_wire::msg::*;
use strand_wire::ErrorCode;

#[test]
fn topics_and_data_survive_restart() {
    let dir = tempfile::tempdir().unwrap();
    let mut node = Node::start(dir.path(), 2, &[]);
    let mut c = node.client();
    assert_eq!(c.create_topic("keep", 3).error, ErrorCode::None);
    assert_eq!(c.create_topic("gone", 1).error, ErrorCode::None);
    for p in 0..3 {
        for i in 0..5 {
            c.produce("keep", p, &batch1(format!("{p}:{i}").as_bytes()));
        }
    }
    let (h, _) = c.call(Request::DeleteTopic(DeleteTopicRequest { name: "gone".into() }), &[]);
    assert_eq!(h.error, ErrorCode::None);
    assert!(!dir.path().join("topics/gone").exists());
    assert!(node.signal_and_wait(libc::SIGTERM, Duration::from_secs(20)).success());
    drop(node);

    let node = Node::start(dir.path(), 2, &[]);
    let mut c = node.client();
    let (h, _) = c.call(Request::ListTopics, &[]);
    let Response::ListTopics(list) = h.response else { panic!("list") };
    let names: Vec<_> = list.topics.iter().map(|t| (t.name.as_str(), t.partitions)).collect();
    assert_eq!(names, vec![("keep", 3)]);
    for p in 0..3 {
        let expected: Vec<Vec<u8>> = (0..5).map(|i| format!("{p}:{i}").into_bytes()).collect();
        assert_eq!(c.read_all("keep", p), expected);
    }
    assert_eq!(c.produce("keep", 0, &batch1(b"after")).base_offset, 5);
}

#[test]
fn sigkill_during_produce_loses_no_acknowledged_record() {
    let dir = tempfile::tempdir().unwrap();
    let mut node = Node::start(dir.path(), 2, &["--fsync", "always"]);
    assert_eq!(node.client().create_topic("crash", 2).error, ErrorCode::None);
    let stop = Arc::new(AtomicBool::new(false));
    let producers: Vec<_> = (0..2u32)
        .map(|p| {
            let (addr, stop) = (node.public, stop.clone());
            std::thread::spawn(move || {
                let mut c = Client::connect(addr);
                let mut acked = Vec::new();
                for i in 0u64.. {
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                    let value = format!("{p}-{i}");
                    let b = batch1(value.as_bytes());
                    let req = Request::Produce(ProduceRequest {
                        acks: Acks::Leader,
                        timeout_ms: 5000,
                        partitions: vec![ProducePartition {
                            topic: "crash".into(),
                            partition: p,
                            bytes_len: b.len() as u32,
                        }],
                    });
                    c.send(req, &b);
                    match c.try_recv() {
                        Ok((h, _)) => match h.response {
                            Response::Produce(r) if r.partitions[0].error == ErrorCode::None => acked.push(value),
                            _ => break,
                        },
                        Err(_) => break,
                    }
                }
                acked
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(700));
    node.signal_and_wait(libc::SIGKILL, Duration::from_secs(10));
    stop.store(true, Ordering::Relaxed);
    let acked: Vec<Vec<String>> = producers.into_iter().map(|t| t.join().unwrap()).collect();
    drop(node);

    let node = Node::start(dir.path(), 2, &["--fsync", "always"]);
    let mut c = node.client();
    for (p, acked) in acked.iter().enumerate() {
        assert!(acked.len() > 10, "partition {p}: only {} acks before the kill", acked.len());
        let stored: Vec<String> =
            c.read_all("crash", p as u32).into_iter().map(|v| String::from_utf8(v).unwrap()).collect();
        assert!(stored.len() >= acked.len(), "partition {p}: {} stored < {} acked", stored.len(), acked.len());
        assert_eq!(&stored[..acked.len()], &acked[..], "partition {p}: acked records present and in order");
    }
}
