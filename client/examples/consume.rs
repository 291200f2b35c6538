//! Reads a topic from the beginning and prints each record as `partition/offset key=value`,
//! stopping after one second without new data.
//!
//! `cargo run -p strand-client --example consume -- [BOOTSTRAP] [TOPIC]`
//! (defaults: 127.0.0.1:7070, `example`).

use std::time::Duration;

use strand_client::{Client, ClientConfig, Consumer, ConsumerConfig, SeekTo};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let bootstrap = args.next().unwrap_or_else(|| "127.0.0.1:7070".to_string());
    let topic = args.next().unwrap_or_else(|| "example".to_string());

    let client = Client::connect(ClientConfig::new(bootstrap)).await?;
    let mut consumer = Consumer::new(client.clone(), ConsumerConfig::default());
    for partition in 0..client.partition_count(&topic).await? {
        consumer.assign(&topic, partition).await?;
        consumer.seek(&topic, partition, SeekTo::Earliest).await?;
    }
    let mut total = 0u64;
    loop {
        // While this batch is printed, the next fetch of its partition is already in flight.
        let records = consumer.poll(Duration::from_secs(1)).await?;
        if records.is_empty() {
            break;
        }
        for r in &records {
            let key = r.key.as_deref().map(String::from_utf8_lossy).unwrap_or_default();
            println!(
                "{}/{} {key}={}",
                r.partition,
                r.offset,
                String::from_utf8_lossy(r.value.as_deref().unwrap_or(b"null"))
            );
        }
        total += records.len() as u64;
    }
    eprintln!("{total} records");
    Ok(())
}
