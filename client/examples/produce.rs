//! Produces N keyed records to a topic and prints throughput and the last offset.
//!
//! `cargo run -p strand-client --example produce -- [BOOTSTRAP] [TOPIC] [COUNT]`
//! (defaults: 127.0.0.1:7070, `example`, 100000). Creates the topic (4 partitions)
//! if it does not exist.

use std::time::Instant;

use strand_client::{Admin, Client, ClientConfig, ErrorCode, Producer, ProducerConfig, ProducerRecord};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let bootstrap = args.next().unwrap_or_else(|| "127.0.0.1:7070".to_string());
    let topic = args.next().unwrap_or_else(|| "example".to_string());
    let count: u64 = args.next().map_or(Ok(100_000), |s| s.parse())?;

    let client = Client::connect(ClientConfig::new(bootstrap)).await?;
    if let Err(e) = Admin::new(client.clone()).create_topic(&topic, 4, 1).await {
        if e.code() != ErrorCode::TopicAlreadyExists {
            return Err(e.into());
        }
    }
    let producer = Producer::new(client, ProducerConfig::default()).await?;
    let start = Instant::now();
    let mut last = None;
    for i in 0..count {
        let record = ProducerRecord::new(topic.clone(), format!("message {i}")).key(format!("user-{}", i % 100));
        last = Some(producer.send(record).await?);
    }
    producer.flush().await?;
    if let Some(delivery) = last {
        let meta = delivery.await?;
        println!("last record: partition {} offset {:?}", meta.partition, meta.offset);
    }
    let secs = start.elapsed().as_secs_f64();
    println!("{count} records in {secs:.3} s ({:.0} records/s)", count as f64 / secs);
    Ok(())
}
