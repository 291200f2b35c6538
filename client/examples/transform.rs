//! Consume-transform-produce: derives a new feed from an existing one. Every record of
//! `SOURCE` is upper-cased and written to `SOURCE.upper` with the same key (so per-key
//! order carries over), until one second passes without new input.
//!
//! `cargo run -p strand-client --example transform -- [BOOTSTRAP] [SOURCE]`
//! (defaults: 127.0.0.1:7070, `example`).

use std::time::Duration;

use bytes::Bytes;
use strand_client::{
    Admin, Client, ClientConfig, Compression, Consumer, ConsumerConfig, ErrorCode, Producer, ProducerConfig,
    ProducerRecord, SeekTo,
};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let bootstrap = args.next().unwrap_or_else(|| "127.0.0.1:7070".to_string());
    let source = args.next().unwrap_or_else(|| "example".to_string());
    let sink = format!("{source}.upper");

    let client = Client::connect(ClientConfig::new(bootstrap)).await?;
    let partitions = client.partition_count(&source).await?;
    if let Err(e) = Admin::new(client.clone()).create_topic(&sink, partitions, 1).await {
        if e.code() != ErrorCode::TopicAlreadyExists {
            return Err(e.into());
        }
    }
    let mut consumer = Consumer::new(client.clone(), ConsumerConfig::default());
    for partition in 0..partitions {
        consumer.assign(&source, partition).await?;
        consumer.seek(&source, partition, SeekTo::Earliest).await?;
    }
    let config = ProducerConfig { compression: Compression::Lz4, ..ProducerConfig::default() };
    let producer = Producer::new(client, config).await?;
    let mut deliveries = Vec::new();
    loop {
        let records = consumer.poll(Duration::from_secs(1)).await?;
        if records.is_empty() {
            break;
        }
        for r in records {
            let mut out = ProducerRecord::new(
                sink.clone(),
                Bytes::from(r.value.as_deref().unwrap_or_default().to_ascii_uppercase()),
            );
            out.key = r.key;
            // Keyless input keeps its partition so its order carries over too.
            if out.key.is_none() {
                out.partition = Some(r.partition);
            }
            deliveries.push(producer.send(out).await?);
        }
    }
    producer.flush().await?;
    let count = deliveries.len();
    for delivery in deliveries {
        delivery.await?;
    }
    eprintln!("derived {count} records into {sink}");
    Ok(())
}
