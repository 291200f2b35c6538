//! The Kafka-protocol listener against the real binary, driven by a blocking client built
//! on the same `kafka-protocol` codecs a Kafka client's messages follow: version
//! negotiation, topic admin, metadata, produce and fetch of the same bytes, offsets, every
//! refusal per partition, and hostile frames (each closes only its own connection).

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::kafka::{topic, KafkaConn};
use common::{batch, Node};
use kafka_protocol::messages::create_topics_request::CreatableTopic;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;
use strand_wire::batch::{Batch, BatchIter};

const TOPIC: &str = "kt";

/// A metric's value summed over its series (e.g. per shard) in the node's `/metrics`.
fn metric_sum(node: &Node, name: &str) -> u64 {
    let (_, metrics) = node.admin_get("/metrics");
    metrics
        .lines()
        .filter(|l| l.starts_with(name) && l[name.len()..].starts_with([' ', '{']))
        .filter_map(|l| l.split_whitespace().last()?.parse::<f64>().ok())
        .sum::<f64>() as u64
}

fn create(conn: &mut KafkaConn, name: &str, partitions: i32) -> CreateTopicsResponse {
    let mut t = CreatableTopic::default();
    t.name = topic(name);
    t.num_partitions = partitions;
    t.replication_factor = -1;
    let mut req = CreateTopicsRequest::default();
    req.topics = vec![t];
    req.timeout_ms = 10_000;
    conn.call(ApiKey::CreateTopics, 5, &req)
}

fn produce_request(acks: i16, parts: &[(&str, i32, Option<Bytes>)]) -> ProduceRequest {
    let mut req = ProduceRequest::default();
    req.acks = acks;
    req.timeout_ms = 10_000;
    for (name, partition, records) in parts {
        let mut p = PartitionProduceData::default();
        p.index = *partition;
        p.records = records.clone();
        let mut t = TopicProduceData::default();
        t.name = topic(name);
        t.partition_data = vec![p];
        req.topic_data.push(t);
    }
    req
}

fn fetch_request(parts: &[(&str, i32, i64)], max_wait_ms: i32) -> FetchRequest {
    let mut req = FetchRequest::default();
    req.replica_id = BrokerId(-1);
    req.max_wait_ms = max_wait_ms;
    req.min_bytes = 1;
    req.max_bytes = 16 << 20;
    req.session_epoch = -1;
    for (name, partition, offset) in parts {
        let mut p = FetchPartition::default();
        p.partition = *partition;
        p.fetch_offset = *offset;
        p.partition_max_bytes = 1 << 20;
        let mut t = FetchTopic::default();
        t.topic = topic(name);
        t.partitions = vec![p];
        req.topics.push(t);
    }
    req
}

fn list_offsets(conn: &mut KafkaConn, partition: i32, timestamp: i64) -> (i16, i64, i64) {
    let mut p = ListOffsetsPartition::default();
    p.partition_index = partition;
    p.timestamp = timestamp;
    let mut t = ListOffsetsTopic::default();
    t.name = topic(TOPIC);
    t.partitions = vec![p];
    let mut req = ListOffsetsRequest::default();
    req.replica_id = BrokerId(-1);
    req.topics = vec![t];
    let resp: ListOffsetsResponse = conn.call(ApiKey::ListOffsets, 6, &req);
    let p = &resp.topics[0].partitions[0];
    (p.error_code, p.offset, p.timestamp)
}

#[test]
fn a_kafka_client_negotiates_creates_produces_and_fetches_the_same_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let node = Node::start(dir.path(), 2, &[]);
    let kafka = node.kafka.expect("the node listens for Kafka clients");
    let mut conn = KafkaConn::connect(kafka);

    // ApiVersions lists what the node speaks; a version it does not speak is answered in v0.
    let versions: ApiVersionsResponse = conn.call(ApiKey::ApiVersions, 3, &ApiVersionsRequest::default());
    assert_eq!(versions.error_code, 0);
    let produce = versions.api_keys.iter().find(|k| k.api_key == ApiKey::Produce as i16).expect("Produce advertised");
    assert_eq!((produce.min_version, produce.max_version), (3, 9));
    // (a request of a future version: API key 18, version 99, correlation id 1000, null client id)
    conn.send_raw(&[0, 18, 0, 99, 0, 0, 0x03, 0xe8, 0xff, 0xff, 0]);
    let v0: ApiVersionsResponse = conn.receive(ApiKey::ApiVersions, 0, 1000);
    assert_eq!(v0.error_code, 35, "UNSUPPORTED_VERSION");
    assert_eq!(v0.api_keys.len(), versions.api_keys.len());

    // Topic admin: create, a second create is refused, bad counts are refused per topic.
    let created = create(&mut conn, TOPIC, 3);
    assert_eq!((created.topics[0].error_code, created.topics[0].num_partitions), (0, 3));
    assert_eq!(create(&mut conn, TOPIC, 3).topics[0].error_code, 36, "TOPIC_ALREADY_EXISTS");
    assert_eq!(create(&mut conn, "zero", 0).topics[0].error_code, 37, "INVALID_PARTITIONS");

    // Metadata: this node as the one broker, at its Kafka port; the topic and its leaders.
    let mut want = MetadataRequestTopic::default();
    want.name = Some(topic(TOPIC));
    let mut req = MetadataRequest::default();
    req.topics = Some(vec![want]);
    let meta: MetadataResponse = conn.call(ApiKey::Metadata, 12, &req);
    assert_eq!(meta.brokers.len(), 1);
    assert_eq!((meta.brokers[0].host.as_str(), meta.brokers[0].port), ("127.0.0.1", i32::from(kafka.port())));
    assert_eq!(meta.topics[0].error_code, 0);
    assert_eq!(meta.topics[0].partitions.len(), 3);
    assert!(meta.topics[0].partitions.iter().all(|p| p.leader_id == meta.brokers[0].node_id));
    let mut every = MetadataRequest::default();
    every.topics = None;
    let all: MetadataResponse = conn.call(ApiKey::Metadata, 1, &every);
    assert!(all.topics.iter().any(|t| t.name.as_ref().map(|n| n.0.as_str()) == Some(TOPIC)));
    let none: MetadataResponse = conn.call(ApiKey::Metadata, 1, &MetadataRequest::default());
    assert!(none.topics.is_empty(), "an empty list asks for no topic (v1+)");

    // Produce two batches to partition 1 (one request), then one more; offsets follow on.
    let first = batch(&[b"a", b"b"], 1_700_000_000_000);
    let second = batch(&[b"c"], 1_700_000_000_500);
    let resp: ProduceResponse = conn.call(ApiKey::Produce, 9, &produce_request(-1, &[(TOPIC, 1, Some(first.clone()))]));
    let p = &resp.responses[0].partition_responses[0];
    assert_eq!((p.error_code, p.base_offset), (0, 0), "{:?}", p.error_message);
    let resp: ProduceResponse = conn.call(ApiKey::Produce, 3, &produce_request(1, &[(TOPIC, 1, Some(second.clone()))]));
    assert_eq!(resp.responses[0].partition_responses[0].base_offset, 2);

    // Fetch answers the stored batches, byte for byte (offsets stamped), in every version.
    for version in [4, 11, 12] {
        let fetched: FetchResponse = conn.call(ApiKey::Fetch, version, &fetch_request(&[(TOPIC, 1, 0)], 0));
        let part = &fetched.responses[0].partitions[0];
        let log_start = if version >= 5 { 0 } else { -1 }; // (a v5 field)
        assert_eq!((part.error_code, part.high_watermark, part.log_start_offset), (0, 3, log_start), "v{version}");
        let records = part.records.clone().expect("records");
        let batches: Vec<Batch> = BatchIter::new(&records).map(|b| b.expect("valid batch")).collect();
        assert_eq!(batches.len(), 2, "v{version}");
        assert_eq!(batches[0].header().base_offset, 0);
        assert_eq!(batches[1].header().base_offset, 2);
        assert_eq!(&batches[0].as_bytes()[8..], &first[8..], "stored as sent, beyond the stamped offset");
    }

    // A long poll waits for a produce on another connection, then answers it.
    let mut waiter = KafkaConn::connect(kafka);
    let id = waiter.send(ApiKey::Fetch, 12, &fetch_request(&[(TOPIC, 2, 0)], 10_000));
    std::thread::sleep(Duration::from_millis(200));
    let _: ProduceResponse = conn.call(ApiKey::Produce, 9, &produce_request(1, &[(TOPIC, 2, Some(batch(&[b"x"], 1)))]));
    let woken: FetchResponse = waiter.receive(ApiKey::Fetch, 12, id);
    assert_eq!(woken.responses[0].partitions[0].high_watermark, 1);

    // Offsets: earliest, latest, by timestamp (a timestamp past every record finds nothing).
    assert_eq!(list_offsets(&mut conn, 1, -2), (0, 0, -1));
    assert_eq!(list_offsets(&mut conn, 1, -1), (0, 3, -1));
    assert_eq!(list_offsets(&mut conn, 1, 1_700_000_000_400), (0, 2, 1_700_000_000_500));
    assert_eq!(list_offsets(&mut conn, 1, 1_800_000_000_000), (0, -1, -1));
    assert_eq!(list_offsets(&mut conn, 1, -7).0, 42, "INVALID_REQUEST");

    // Fetch data goes out zero-copy, from the segment files, whichever shard the Kafka
    // connection lives on: two fresh connections land on both shards (handed round-robin),
    // so one of them fetches partition 1 from the other shard.
    let copied_before = metric_sum(&node, "strand_bytes_out_copied_total");
    let zero_copy_before = metric_sum(&node, "strand_bytes_out_zero_copy_total");
    for _ in 0..2 {
        let mut fresh = KafkaConn::connect(kafka);
        let fetched: FetchResponse = fresh.call(ApiKey::Fetch, 12, &fetch_request(&[(TOPIC, 1, 0)], 0));
        assert_eq!(
            fetched.responses[0].partitions[0].records.as_ref().map(Bytes::len),
            Some(first.len() + second.len())
        );
    }
    std::thread::sleep(Duration::from_millis(1200)); // (metrics are published once a second)
    assert_eq!(metric_sum(&node, "strand_bytes_out_copied_total"), copied_before, "nothing copied");
    assert!(metric_sum(&node, "strand_bytes_out_zero_copy_total") >= zero_copy_before + 2 * first.len() as u64);

    // acks=0 is not answered: the next answer on the connection is the next request's.
    let id = conn.send(ApiKey::Produce, 9, &produce_request(0, &[(TOPIC, 0, Some(batch(&[b"q"], 1)))]));
    let next = conn.send(ApiKey::Metadata, 12, &MetadataRequest::default());
    let _: MetadataResponse = conn.receive(ApiKey::Metadata, 12, next);
    assert!(next > id);
    assert_eq!(list_offsets(&mut conn, 0, -1), (0, 1, -1), "the unanswered produce was stored");
}

#[test]
fn bad_fields_are_refused_per_partition_and_the_connection_stays() {
    let dir = tempfile::tempdir().unwrap();
    let node = Node::start(dir.path(), 1, &[]);
    let mut conn = KafkaConn::connect(node.kafka.unwrap());
    assert_eq!(create(&mut conn, TOPIC, 1).topics[0].error_code, 0);
    let good = Some(batch(&[b"v"], 1));
    let req = produce_request(
        -1,
        &[
            (TOPIC, 0, good.clone()),
            (TOPIC, -1, good.clone()),
            (TOPIC, 7, good.clone()),
            ("missing", 0, good.clone()),
            (TOPIC, 0, None),
            (TOPIC, 0, Some(Bytes::from_static(b"not a record batch at all, not even close to one"))),
        ],
    );
    let resp: ProduceResponse = conn.call(ApiKey::Produce, 9, &req);
    let codes: Vec<i16> = resp.responses.iter().map(|t| t.partition_responses[0].error_code).collect();
    assert_eq!(codes, vec![0, 3, 3, 3, 2, 2], "ok, negative, absent partition, absent topic, null, garbage");

    let bad_acks: ProduceResponse = conn.call(ApiKey::Produce, 9, &produce_request(2, &[(TOPIC, 0, good)]));
    assert_eq!(bad_acks.responses[0].partition_responses[0].error_code, 21, "INVALID_REQUIRED_ACKS");

    let fetched: FetchResponse =
        conn.call(ApiKey::Fetch, 12, &fetch_request(&[(TOPIC, 0, 99), (TOPIC, 0, -5), ("missing", 0, 0)], 0));
    let codes: Vec<i16> = fetched.responses.iter().map(|t| t.partitions[0].error_code).collect();
    assert_eq!(codes, vec![1, 1, 3], "past the end, negative offset, absent topic");
    assert_eq!(list_offsets(&mut conn, 0, -1), (0, 1, -1), "only the good batch was stored");
}

#[test]
fn hostile_frames_close_their_connection_and_the_node_serves_on() {
    let dir = tempfile::tempdir().unwrap();
    let node = Node::start(dir.path(), 1, &[]);
    let kafka = node.kafka.unwrap();
    let alive = |why: &str| {
        let mut conn = KafkaConn::connect(kafka);
        let v: ApiVersionsResponse = conn.call(ApiKey::ApiVersions, 3, &ApiVersionsRequest::default());
        assert_eq!(v.error_code, 0, "after {why}");
    };
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("an unknown API key", vec![0x7f, 0x00, 0, 0, 0, 0, 0, 1, 0xff, 0xff]),
        ("Produce v1 (before RecordBatch v2)", vec![0, 0, 0, 1, 0, 0, 0, 1, 0xff, 0xff]),
        ("a header cut short", vec![0, 3, 0]),
        // Metadata v0 whose topic array claims i32::MAX entries in five bytes: the codec's
        // upstream release asks for ~100 GiB before decoding one, and the process aborts.
        ("an array-count bomb", vec![0, 3, 0, 0, 0, 0, 0, 1, 0xff, 0xff, 0x7f, 0xff, 0xff, 0xff, 0xb6]),
        ("a body that does not decode", vec![0, 3, 0, 1, 0, 0, 0, 1, 0xff, 0xff, 0x00]),
    ];
    for (what, body) in cases {
        let mut conn = KafkaConn::connect(kafka);
        conn.send_raw(&body);
        assert!(conn.read_frame().is_none(), "{what}: answered instead of closed");
        assert!(conn.is_closed(), "{what}");
        alive(what);
    }
    // A frame larger than frame_len_max, and a negative size: closed before any body is read.
    for size in [i32::MAX, -1] {
        use std::io::Write;
        let mut raw = std::net::TcpStream::connect(kafka).unwrap();
        raw.write_all(&size.to_be_bytes()).unwrap();
        raw.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut byte = [0u8; 1];
        let read = std::io::Read::read(&mut raw, &mut byte);
        assert!(
            matches!(read, Ok(0)) || read.as_ref().is_err_and(|e| e.kind() == std::io::ErrorKind::ConnectionReset),
            "size {size}: {read:?}"
        );
        alive("an oversized frame");
    }
}

fn describe_topic_configs(conn: &mut KafkaConn, name: &str) -> Vec<(String, String, i8)> {
    let mut r = describe_configs_request::DescribeConfigsResource::default();
    r.resource_type = 2;
    r.resource_name = StrBytes::from_string(name.to_string());
    r.configuration_keys = None;
    let mut req = DescribeConfigsRequest::default();
    req.resources = vec![r];
    let resp: DescribeConfigsResponse = conn.call(ApiKey::DescribeConfigs, 4, &req);
    assert_eq!(resp.results[0].error_code, 0, "{:?}", resp.results[0].error_message);
    let mut out: Vec<(String, String, i8)> = resp.results[0]
        .configs
        .iter()
        .map(|c| (c.name.as_str().to_string(), c.value.as_ref().unwrap().as_str().to_string(), c.config_source))
        .collect();
    out.sort();
    out
}

fn incremental(conn: &mut KafkaConn, name: &str, ops: &[(&str, i8, Option<&str>)]) -> i16 {
    let mut r = incremental_alter_configs_request::AlterConfigsResource::default();
    r.resource_type = 2;
    r.resource_name = StrBytes::from_string(name.to_string());
    r.configs = ops
        .iter()
        .map(|(key, op, value)| {
            let mut c = incremental_alter_configs_request::AlterableConfig::default();
            c.name = StrBytes::from_string(key.to_string());
            c.config_operation = *op;
            c.value = value.map(|v| StrBytes::from_string(v.to_string()));
            c
        })
        .collect();
    let mut req = IncrementalAlterConfigsRequest::default();
    req.resources = vec![r];
    let resp: IncrementalAlterConfigsResponse = conn.call(ApiKey::IncrementalAlterConfigs, 1, &req);
    resp.responses[0].error_code
}

#[test]
fn admin_apis_describe_and_alter_configs_and_grow_topics() {
    let dir = tempfile::tempdir().unwrap();
    let node = Node::start(dir.path(), 2, &[]);
    let kafka = node.kafka.unwrap();
    let mut conn = KafkaConn::connect(kafka);

    // Created with a config under Kafka's name; described under Kafka's names.
    let mut t = CreatableTopic::default();
    t.name = topic("cfg");
    t.num_partitions = 2;
    t.replication_factor = -1;
    let mut c = create_topics_request::CreatableTopicConfig::default();
    c.name = StrBytes::from_static_str("retention.ms");
    c.value = Some(StrBytes::from_static_str("86400000"));
    t.configs = vec![c];
    let mut req = CreateTopicsRequest::default();
    req.topics = vec![t];
    let created: CreateTopicsResponse = conn.call(ApiKey::CreateTopics, 5, &req);
    assert_eq!(created.topics[0].error_code, 0, "{:?}", created.topics[0].error_message);
    let described = describe_topic_configs(&mut conn, "cfg");
    assert!(described.contains(&("retention.ms".into(), "86400000".into(), 1)), "{described:?}");
    assert!(described.iter().any(|(k, _, source)| k == "segment.bytes" && *source == 5), "{described:?}");

    // Incremental: set one, delete another; an unknown key is refused and changes nothing.
    assert_eq!(
        incremental(&mut conn, "cfg", &[("retention.bytes", 0, Some("1073741824")), ("retention.ms", 1, None)]),
        0
    );
    let described = describe_topic_configs(&mut conn, "cfg");
    assert!(described.contains(&("retention.bytes".into(), "1073741824".into(), 1)), "{described:?}");
    assert!(described.iter().any(|(k, _, source)| k == "retention.ms" && *source == 5), "{described:?}");
    assert_eq!(incremental(&mut conn, "cfg", &[("cleanup.policy", 0, Some("compact"))]), 40, "INVALID_CONFIG");
    assert_eq!(incremental(&mut conn, "missing", &[("retention.ms", 0, Some("100000"))]), 3);

    // AlterConfigs replaces the whole set: retention.bytes goes back to the default.
    let mut r = alter_configs_request::AlterConfigsResource::default();
    r.resource_type = 2;
    r.resource_name = StrBytes::from_static_str("cfg");
    let mut set = alter_configs_request::AlterableConfig::default();
    set.name = StrBytes::from_static_str("segment.ms");
    set.value = Some(StrBytes::from_static_str("3600000"));
    r.configs = vec![set];
    let mut req = AlterConfigsRequest::default();
    req.resources = vec![r];
    let altered: AlterConfigsResponse = conn.call(ApiKey::AlterConfigs, 2, &req);
    assert_eq!(altered.responses[0].error_code, 0, "{:?}", altered.responses[0].error_message);
    let described = describe_topic_configs(&mut conn, "cfg");
    assert!(described.contains(&("segment.ms".into(), "3600000".into(), 1)), "{described:?}");
    assert!(described.iter().any(|(k, _, source)| k == "retention.bytes" && *source == 5), "{described:?}");

    // CreatePartitions grows the topic; shrinking is refused.
    let grow = |conn: &mut KafkaConn, count: i32| {
        let mut t = create_partitions_request::CreatePartitionsTopic::default();
        t.name = topic("cfg");
        t.count = count;
        t.assignments = None;
        let mut req = CreatePartitionsRequest::default();
        req.topics = vec![t];
        req.timeout_ms = 10_000;
        let resp: CreatePartitionsResponse = conn.call(ApiKey::CreatePartitions, 3, &req);
        resp.results[0].error_code
    };
    assert_eq!(grow(&mut conn, 5), 0);
    assert_eq!(grow(&mut conn, 3), 37, "INVALID_PARTITIONS");
    let mut want = MetadataRequestTopic::default();
    want.name = Some(topic("cfg"));
    let mut req = MetadataRequest::default();
    req.topics = Some(vec![want]);
    let meta: MetadataResponse = conn.call(ApiKey::Metadata, 12, &req);
    assert_eq!(meta.topics[0].partitions.len(), 5);

    // DescribeCluster: this node, at its Kafka port.
    let mut req = DescribeClusterRequest::default();
    req.endpoint_type = 1;
    let cluster: DescribeClusterResponse = conn.call(ApiKey::DescribeCluster, 1, &req);
    assert_eq!((cluster.error_code, cluster.cluster_id.as_str()), (0, "strand"));
    assert_eq!(cluster.brokers.len(), 1);
    assert_eq!(cluster.brokers[0].port, i32::from(kafka.port()));
}
