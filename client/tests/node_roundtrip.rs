//! Client against a real `strand-node`: admin, per-partition ordering, compression
//! round trip (every codec, tombstones), seeks, and idempotent retries across forced disconnects.

mod support;

use std::collections::HashMap;
use std::time::Duration;

use bytes::Bytes;
use futures_lite::StreamExt;
use strand_client::{
    Acks, Admin, Client, Compression, Consumer, ConsumerConfig, ConsumerRecord, Producer, ProducerConfig,
    ProducerRecord, SeekTo,
};
use support::Node;

/// Reads until `count` records arrived (or fails after `deadline`).
async fn read_n(consumer: &mut Consumer, count: usize) -> Vec<ConsumerRecord> {
    let mut out = Vec::with_capacity(count);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while out.len() < count {
        assert!(tokio::time::Instant::now() < deadline, "only {} of {count} records arrived", out.len());
        out.extend(consumer.poll(Duration::from_secs(2)).await.expect("poll"));
    }
    out
}

async fn consumer_from_start(client: &Client, topic: &str, partitions: u32) -> Consumer {
    let mut consumer = Consumer::new(client.clone(), ConsumerConfig::default());
    for p in 0..partitions {
        consumer.assign(topic, p).await.expect("assign");
        consumer.seek(topic, p, SeekTo::Earliest).await.expect("seek");
    }
    consumer
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_create_list_describe_delete() {
    let node = Node::start(2);
    let client = node.client().await;
    let admin = Admin::new(client.clone());
    admin.create_topic("alpha", 3, 1).await.expect("create");
    let dup = admin.create_topic("alpha", 3, 1).await.unwrap_err();
    assert_eq!(dup.code(), strand_wire::ErrorCode::TopicAlreadyExists);
    let topics = admin.list_topics().await.expect("list");
    assert_eq!(topics.iter().map(|t| (t.name.as_str(), t.partitions)).collect::<Vec<_>>(), vec![("alpha", 3)]);
    let described = admin.describe_topic("alpha").await.expect("describe");
    assert_eq!(described.partitions.iter().map(|p| p.partition).collect::<Vec<_>>(), vec![0, 1, 2]);
    admin.delete_topic("alpha").await.expect("delete");
    assert!(admin.list_topics().await.expect("list").is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keyed_records_keep_per_partition_order() {
    let node = Node::start(2);
    let client = node.create_topic("orders", 4).await;
    let producer = Producer::new(client.clone(), ProducerConfig { batch_size: 4096, ..Default::default() })
        .await
        .expect("producer");
    let mut deliveries = Vec::new();
    for i in 0..4000u32 {
        let key = format!("key-{}", i % 16);
        let record = ProducerRecord::new("orders", format!("{key}:{i}")).key(key);
        deliveries.push(producer.send(record).await.expect("send"));
    }
    producer.flush().await.expect("flush");
    let mut last_offset: HashMap<u32, u64> = HashMap::new();
    for d in deliveries {
        let meta = d.await.expect("delivered");
        let offset = meta.offset.expect("acks=leader gives offsets");
        if let Some(prev) = last_offset.insert(meta.partition, offset) {
            assert!(offset > prev, "offsets grow within a partition in send order");
        }
    }
    let mut consumer = consumer_from_start(&client, "orders", 4).await;
    let records = read_n(&mut consumer, 4000).await;
    let mut seen_per_key: HashMap<Bytes, u32> = HashMap::new();
    for r in &records {
        let text = String::from_utf8(r.value.clone().expect("not a tombstone").to_vec()).expect("utf8");
        let (key, seq) = text.split_once(':').expect("key:seq");
        assert_eq!(r.key.as_deref(), Some(key.as_bytes()));
        let seq: u32 = seq.parse().expect("seq");
        if let Some(prev) = seen_per_key.insert(r.key.clone().expect("key"), seq) {
            assert!(seq > prev, "key {key}: {seq} after {prev}");
        }
    }
    assert_eq!(records.len(), 4000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compressed_batches_round_trip_through_the_node() {
    let node = Node::start(2);
    let client = node.create_topic("packed", 1).await;
    let codecs = [Compression::Gzip, Compression::Snappy, Compression::Lz4, Compression::Zstd, Compression::None];
    for (i, codec) in codecs.into_iter().enumerate() {
        let config = ProducerConfig { compression: codec, linger: Duration::from_millis(20), ..Default::default() };
        let producer = Producer::new(client.clone(), config).await.expect("producer");
        for j in 0..500 {
            // Every 50th record is a tombstone (a null value), inside compressed batches too.
            let record = if j % 50 == 49 {
                ProducerRecord::tombstone("packed", format!("key {j}"))
            } else {
                ProducerRecord::new("packed", format!("codec {i} record {j} {}", "payload ".repeat(20)))
            };
            producer.send(record.partition(0)).await.expect("send");
        }
        producer.flush().await.expect("flush");
    }
    let mut consumer = consumer_from_start(&client, "packed", 1).await;
    let records = read_n(&mut consumer, 2500).await;
    for (n, r) in records.iter().enumerate() {
        assert_eq!(r.offset, n as u64);
        if n % 50 == 49 {
            assert_eq!((r.key.clone(), r.value.clone()), (Some(Bytes::from(format!("key {}", n % 500))), None));
            continue;
        }
        let expect = format!("codec {} record {} {}", n / 500, n % 500, "payload ".repeat(20));
        assert_eq!(r.value, Some(Bytes::from(expect)));
    }
    let latest = consumer.seek("packed", 0, SeekTo::Latest).await.expect("seek latest");
    assert_eq!(latest, 2500);
    consumer.seek("packed", 0, SeekTo::Offset(1234)).await.expect("seek offset");
    let again = read_n(&mut consumer, 1).await;
    assert_eq!(again[0].offset, 1234, "records below the sought offset are skipped");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idempotent_retries_across_forced_disconnects_leave_no_duplicates_or_gaps() {
    let node = Node::start(2);
    let client = node.create_topic("exactly", 2).await;
    let idempotence = std::env::var_os("STRAND_TEST_BREAK_IDEMPOTENCE").is_none();
    let config =
        ProducerConfig { batch_size: 2048, linger: Duration::from_millis(1), idempotence, ..Default::default() };
    let producer = Producer::new(client.clone(), config).await.expect("producer");
    assert_eq!(producer.identity().is_some(), idempotence, "idempotent producer got an id");
    const TOTAL: u32 = 20_000;
    let killer_client = client.clone();
    let killer = tokio::spawn(async move {
        let mut kills = 0u32;
        for _ in 0..40 {
            tokio::time::sleep(Duration::from_millis(15)).await;
            killer_client.abort_connections();
            kills += 1;
        }
        kills
    });
    let mut deliveries = Vec::new();
    for i in 0..TOTAL {
        let record = ProducerRecord::new("exactly", format!("{i}")).partition(i % 2);
        deliveries.push(producer.send(record).await.expect("send"));
    }
    producer.flush().await.expect("flush");
    assert!(killer.await.expect("killer") > 0);
    assert!(producer.retry_count() > 0, "the disconnects hit batches in flight");
    for d in deliveries {
        d.await.expect("every record is delivered despite disconnects");
    }
    let mut consumer = consumer_from_start(&client, "exactly", 2).await;
    let records = read_n(&mut consumer, TOTAL as usize).await;
    let extra = consumer.poll(Duration::from_millis(700)).await.expect("poll");
    assert!(extra.is_empty(), "{} duplicate records", extra.len());
    for p in 0..2u32 {
        let values: Vec<u32> = records
            .iter()
            .filter(|r| r.partition == p)
            .map(|r| {
                std::str::from_utf8(r.value.as_deref().expect("not a tombstone"))
                    .expect("utf8")
                    .parse()
                    .expect("number")
            })
            .collect();
        let expect: Vec<u32> = (0..TOTAL).filter(|i| i % 2 == p).collect();
        assert_eq!(values, expect, "partition {p}: exactly once, in order");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acks_none_and_backpressure() {
    let node = Node::start(1);
    let client = node.create_topic("fire", 1).await;
    let config = ProducerConfig {
        acks: Acks::None,
        idempotence: false,
        batch_size: 1024,
        buffer_bytes_max: 4096,
        ..Default::default()
    };
    let producer = Producer::new(client.clone(), config).await.expect("producer");
    let too_big = producer.send(ProducerRecord::new("fire", vec![0u8; 8192])).await.unwrap_err();
    assert!(matches!(too_big, strand_client::ClientError::RecordTooLarge { .. }));
    for i in 0..2000 {
        let meta = producer.send(ProducerRecord::new("fire", format!("{i}"))).await.expect("send");
        if i % 500 == 0 {
            assert_eq!(meta.await.expect("sent").offset, None);
        }
    }
    producer.flush().await.expect("flush");
    let mut consumer = consumer_from_start(&client, "fire", 1).await;
    let records = read_n(&mut consumer, 2000).await;
    assert_eq!(records.last().and_then(|r| r.value.clone()), Some(Bytes::from("1999")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seek_by_timestamp_finds_the_first_record_at_or_after_it() {
    let node = Node::start(1);
    let client = node.create_topic("timed", 1).await;
    let producer = Producer::new(client.clone(), ProducerConfig::default()).await.expect("producer");
    for (i, ts) in [1_000i64, 2_000, 3_000, 4_000].into_iter().enumerate() {
        let record = ProducerRecord::new("timed", format!("r{i}")).timestamp(ts);
        producer.send(record).await.expect("send").await.expect("delivered");
    }
    let mut consumer = Consumer::new(client, ConsumerConfig::default());
    consumer.assign("timed", 0).await.expect("assign");
    assert_eq!(consumer.seek("timed", 0, SeekTo::Timestamp(2_500)).await.expect("seek"), 2);
    let records = read_n(&mut consumer, 2).await;
    assert_eq!(records.iter().map(|r| (r.offset, r.timestamp)).collect::<Vec<_>>(), vec![(2, 3_000), (3, 4_000)]);
    assert_eq!(consumer.seek("timed", 0, SeekTo::Earliest).await.expect("seek"), 0);
    let stream = consumer.into_stream();
    let values: Vec<Option<Bytes>> = stream.take(4).map(|r| r.expect("record").value).collect().await;
    assert_eq!(values, ["r0", "r1", "r2", "r3"].map(|v| Some(Bytes::from(v))));
}
