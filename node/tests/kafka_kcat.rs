//! kcat (Debian `kcat`, librdkafka) against the real binary: metadata, keyed produce in every
//! compression codec librdkafka writes, consume from the beginning, and records crossing
//! between the two protocols — written by kcat and read by the native client, written by
//! the native client and read by kcat.

mod common;

use std::io::Write;
use std::net::SocketAddr;
use std::process::{Command, Output, Stdio};

use common::kafka::{topic, KafkaConn};
use common::{batch, Node};
use kafka_protocol::messages::create_topics_request::CreatableTopic;
use kafka_protocol::messages::offset_fetch_request::OffsetFetchRequestTopic;
use kafka_protocol::messages::{
    ApiKey, CreateTopicsRequest, CreateTopicsResponse, GroupId, OffsetFetchRequest, OffsetFetchResponse,
};
use kafka_protocol::protocol::StrBytes;
use strand_wire::batch::{decompress, BatchIter, RecordIter};
use strand_wire::ErrorCode;

fn kcat(broker: SocketAddr, args: &[&str], stdin: &[u8]) -> Output {
    let mut child = Command::new("kcat")
        .arg("-b")
        .arg(broker.to_string())
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("kcat is installed (Debian package kcat; test.sh and .ci/run install it)");
    child.stdin.take().unwrap().write_all(stdin).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "kcat {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    out
}

fn create(kafka: SocketAddr, name: &str, partitions: i32) {
    let mut t = CreatableTopic::default();
    t.name = topic(name);
    t.num_partitions = partitions;
    t.replication_factor = 1;
    let mut req = CreateTopicsRequest::default();
    req.topics = vec![t];
    let resp: CreateTopicsResponse = KafkaConn::connect(kafka).call(ApiKey::CreateTopics, 5, &req);
    assert_eq!(resp.topics[0].error_code, 0, "{:?}", resp.topics[0].error_message);
}

/// A record's key and value (either may be null).
type KeyValue = (Option<Vec<u8>>, Option<Vec<u8>>);

/// Every record of one partition read with the native protocol: (key, value) in offset order.
fn native_records(node: &Node, name: &str, partition: u32) -> Vec<KeyValue> {
    let mut client = node.client();
    let mut out = Vec::new();
    let mut offset = 0;
    loop {
        let (p, bytes) = client.fetch(name, partition, offset, 0);
        assert_eq!(p.error, ErrorCode::None);
        if bytes.is_empty() {
            return out;
        }
        for b in BatchIter::new(&bytes) {
            let b = b.expect("a valid stored batch");
            let section = decompress(b.header().compression(), b.records_section(), 64 << 20).expect("contents");
            for (i, r) in RecordIter::new(&section, b.header().record_count).enumerate() {
                let r = r.expect("a valid record");
                if b.header().base_offset + i as u64 >= offset {
                    out.push((r.key.map(<[u8]>::to_vec), r.value.map(<[u8]>::to_vec)));
                }
            }
            offset = b.header().next_offset();
        }
    }
}

#[test]
fn kcat_lists_produces_in_every_codec_and_consumes_across_protocols() {
    let dir = tempfile::tempdir().unwrap();
    let node = Node::start(dir.path(), 2, &[]);
    let kafka = node.kafka.expect("Kafka port");
    create(kafka, "events", 2);

    let meta = String::from_utf8(kcat(kafka, &["-L", "-J"], b"").stdout).unwrap();
    assert!(meta.contains("\"topic\":\"events\""), "{meta}");
    assert!(
        meta.contains(&format!("\"port\":{}", kafka.port())) || meta.contains(&format!(":{}", kafka.port())),
        "{meta}"
    );

    // Keyed produce to partition 0, one kcat run per codec librdkafka writes.
    let codecs = ["none", "gzip", "snappy", "lz4", "zstd"];
    let mut expected = Vec::new();
    for codec in codecs {
        let lines: Vec<String> = (0..50).map(|i| format!("{codec}-k{i}:{codec}-v{i}")).collect();
        let input = lines.join("\n") + "\n";
        kcat(kafka, &["-P", "-t", "events", "-p", "0", "-K", ":", "-z", codec, "-X", "linger.ms=20"], input.as_bytes());
        expected.extend(
            (0..50).map(|i| (Some(format!("{codec}-k{i}").into_bytes()), Some(format!("{codec}-v{i}").into_bytes()))),
        );
    }
    assert_eq!(native_records(&node, "events", 0), expected, "kcat's records, read natively");

    // Records written natively, read by kcat from the beginning.
    let mut client = node.client();
    client.produce("events", 1, &batch(&[b"native-1", b"native-2"], 1_700_000_000_000));
    client.produce("events", 1, &batch(&[b"native-3"], 1_700_000_000_001));
    let out = kcat(kafka, &["-C", "-t", "events", "-p", "1", "-o", "beginning", "-e", "-f", "%o %s\n"], b"");
    assert_eq!(String::from_utf8(out.stdout).unwrap(), "0 native-1\n1 native-2\n2 native-3\n");

    // And kcat reads its own keyed records back, offsets and keys intact.
    let out = kcat(kafka, &["-C", "-t", "events", "-p", "0", "-o", "248", "-e", "-f", "%o %k=%s\n"], b"");
    assert_eq!(String::from_utf8(out.stdout).unwrap(), "248 zstd-k48=zstd-v48\n249 zstd-k49=zstd-v49\n");

    // A balanced consumer group (-G): kcat joins, is assigned both partitions, reads
    // everything and commits; the committed offsets are the log ends.
    let out = kcat(kafka, &["-G", "kcat-group", "events", "-o", "beginning", "-e", "-f", "%p %o\n"], b"");
    let read = String::from_utf8(out.stdout).unwrap();
    assert_eq!(read.lines().count(), 250 + 3, "every record once: {read}");
    let mut t = OffsetFetchRequestTopic::default();
    t.name = topic("events");
    t.partition_indexes = vec![0, 1];
    let mut req = OffsetFetchRequest::default();
    req.group_id = GroupId(StrBytes::from_static_str("kcat-group"));
    req.topics = Some(vec![t]);
    let committed: OffsetFetchResponse = KafkaConn::connect(kafka).call(ApiKey::OffsetFetch, 5, &req);
    let offsets: Vec<(i32, i64)> =
        committed.topics[0].partitions.iter().map(|p| (p.partition_index, p.committed_offset)).collect();
    assert_eq!(offsets, vec![(0, 250), (1, 3)], "kcat's commits");

    // A tombstone (null value, -Z) is stored and read back as null.
    kcat(kafka, &["-P", "-t", "events", "-p", "1", "-K", ":", "-Z"], b"gone:\n");
    let last = native_records(&node, "events", 1).pop().unwrap();
    assert_eq!(last, (Some(b"gone".to_vec()), None));
}
